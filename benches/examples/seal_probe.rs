//! Quick probe: seal N generated spans into one segment; print build time (wall and
//! CPU), bytes per column, and the time to compact two halves column-wise.
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
    let start = Instant::now();
    let id = segment.spans(&[12345]).expect("span")[0].trace_id;
    let rows = segment.trace_rows(&id).expect("trace");
    let spans = segment.spans(&rows).expect("spans");
    println!("trace lookup: {} spans in {:?}", spans.len(), start.elapsed());
}
