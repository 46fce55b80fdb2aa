//! Quick probe: seal N generated spans into one segment; print build time and bytes.
use std::time::Instant;

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
    let bytes = build_segment(&refs, 1, None);
    let elapsed = start.elapsed();
    println!(
        "{spans} spans: built in {:.2}s ({:.0} spans/s), {} bytes, {:.1} bytes/span",
        elapsed.as_secs_f64(),
        spans as f64 / elapsed.as_secs_f64(),
        bytes.len(),
        bytes.len() as f64 / spans as f64
    );
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
