//! Quick probe: seal N generated spans into one segment; print build time (wall and
//! CPU), bytes per column, and the time to compact two halves column-wise (MERGE=1), and
//! the decoding speed of `start` and `duration` blocks (DECODE=1).
use std::time::Instant;

/// User and system CPU seconds of this process so far, all threads, from
/// /proc/self/stat (USER_HZ = 100 ticks a second). On a shared machine the process may
/// get far less than its cores, so CPU time is the steadier measure.
fn cpu_seconds() -> f64 {
    let Ok(text) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    let after = text.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |index: usize| fields.get(index).and_then(|f| f.parse::<u64>().ok()).unwrap_or(0);
    (ticks(11) + ticks(12)) as f64 / 100.0
}

use spanstore_engine::segment::reader::{column_name, Segment};
use spanstore_engine::segment::writer::build_segment;

fn main() {
    let spans: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(1_000_000);
    let batches = spanstore_benches::batches(7, spans / 1000, 1000);
    let refs: Vec<_> = batches.iter().collect();
    if std::env::var("UNSORTED").is_ok() {
        let start = Instant::now();
        let mut builder = spanstore_engine::segment::writer::SegmentBuilder::new();
        for b in &batches {
            for row in 0..b.len() {
                builder.push(b, row);
            }
        }
        let pushed = start.elapsed();
        let bytes = builder.finish(1);
        println!("unsorted: push {:?}, total {:?}, {} bytes", pushed, start.elapsed(), bytes.len());
    }
    let start = Instant::now();
    let cpu = cpu_seconds();
    let bytes = build_segment(&refs, 1, None);
    let elapsed = start.elapsed();
    let cpu = cpu_seconds() - cpu;
    println!(
        "{spans} spans: built in {:.2}s ({:.0} spans/s), {:.2} CPU-s ({:.0} spans per CPU-second), {} bytes, {:.1} bytes/span",
        elapsed.as_secs_f64(),
        spans as f64 / elapsed.as_secs_f64(),
        cpu,
        spans as f64 / cpu.max(0.01),
        bytes.len(),
        bytes.len() as f64 / spans as f64
    );
    if std::env::var("MERGE").is_ok() {
        // Compaction of two halves, each sealed on its own.
        let half = refs.len() / 2;
        let (front, back) = refs.split_at(half);
        let parts: Vec<Segment> = [front, back]
            .iter()
            .map(|part| {
                let bytes = build_segment(part, 1, None);
                Segment::open(std::path::Path::new("part"), std::sync::Arc::new(bytes)).expect("open part")
            })
            .collect();
        let inputs: Vec<&Segment> = parts.iter().collect();
        let start = Instant::now();
        let cpu = cpu_seconds();
        let merged = spanstore_engine::segment::writer::merge_segments(&inputs, 2, None).expect("merge");
        let elapsed = start.elapsed();
        let cpu = cpu_seconds() - cpu;
        println!(
            "merge of two halves: {:.2}s ({:.0} spans/s), {:.2} CPU-s ({:.0} spans per CPU-second), {} bytes",
            elapsed.as_secs_f64(),
            spans as f64 / elapsed.as_secs_f64(),
            cpu,
            spans as f64 / cpu.max(0.01),
            merged.len()
        );
    }
    let segment = Segment::open(std::path::Path::new("probe"), std::sync::Arc::new(bytes)).expect("open");
    let mut columns: Vec<(String, u64)> = segment
        .directory()
        .columns
        .iter()
        .map(|c| {
            let bytes: u64 = c.blocks.iter().map(|b| u64::from(b.chunk.len)).sum::<u64>()
                + c.dictionary.map(|d| u64::from(d.len)).unwrap_or(0)
                + c.bitmaps.map(|d| u64::from(d.len)).unwrap_or(0)
                + c.value_index.map(|d| u64::from(d.len)).unwrap_or(0);
            (column_name(&c.kind), bytes)
        })
        .collect();
    columns.sort_by_key(|c| std::cmp::Reverse(c.1));
    for (name, bytes) in columns.iter().take(40) {
        println!("{:>10.2} B/span  {name}", *bytes as f64 / spans as f64);
    }
    if std::env::var("DECODE").is_ok() {
        decode_speeds(&segment);
    }
    let start = Instant::now();
    let id = segment.spans(&[12345]).expect("span")[0].trace_id;
    let rows = segment.trace_rows(&id).expect("trace");
    let spans = segment.spans(&rows).expect("spans");
    println!("trace lookup: {} spans in {:?}", spans.len(), start.elapsed());
}

/// Decoding speed of the `start` and `duration` blocks as stored, against the same
/// values in the format-1 encodings (frame of reference or delta), best of 15 passes,
/// decoding only (no zstd, no checksum).
fn decode_speeds(segment: &Segment) {
    use spanstore_engine::codec::{Reader, Writer};
    use spanstore_engine::segment::encoding::{decode_ints, encode_ints};
    use spanstore_engine::segment::reader::BlockValues;
    use spanstore_engine::segment::{trace_runs, varwidth, Intrinsic};
    let blocks = segment.directory().columns[Intrinsic::Start as usize].blocks.len();
    for column in [Intrinsic::Start, Intrinsic::Duration] {
        let (mut stored, mut old) = (Vec::new(), Vec::new());
        let mut rows = 0usize;
        for b in 0..blocks {
            let BlockValues::Ints(values) = segment.read_block(column as usize, b).expect("block").values else {
                return;
            };
            let BlockValues::Fixed16(ids) = segment.read_block(Intrinsic::TraceId as usize, b).expect("ids").values
            else {
                return;
            };
            let is_head: Vec<bool> = (0..ids.len()).map(|i| i == 0 || ids[i] != ids[i - 1]).collect();
            let mut now = Writer::default();
            match column {
                Intrinsic::Start => trace_runs::encode_best(&mut now, &values, &is_head),
                _ => varwidth::encode_best(&mut now, &values),
            }
            let mut then = Writer::default();
            encode_ints(&mut then, &values);
            rows += values.len();
            stored.push((now.buf, values.len()));
            old.push((then.buf, values.len()));
        }
        let time = |encoded: &[(Vec<u8>, usize)]| {
            (0..15)
                .map(|_| {
                    let start = Instant::now();
                    for (bytes, count) in encoded {
                        std::hint::black_box(decode_ints(&mut Reader::new(bytes), *count).expect("decode"));
                    }
                    start.elapsed().as_secs_f64()
                })
                .fold(f64::MAX, f64::min)
        };
        let size = |encoded: &[(Vec<u8>, usize)]| encoded.iter().map(|e| e.0.len()).sum::<usize>() as f64 / rows as f64;
        println!(
            "{:?} decode: {:.2} ns/row at {:.2} B/row; format-1 encoding {:.2} ns/row at {:.2} B/row (before zstd)",
            column,
            time(&stored) * 1e9 / rows as f64,
            size(&stored),
            time(&old) * 1e9 / rows as f64,
            size(&old)
        );
    }
}
