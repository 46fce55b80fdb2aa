//! Measures generation speed of a Workload without encoding (a quick check, not a bench).
fn main() {
    let spans: u64 = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(2_000_000);
    let threads: usize = std::env::args().nth(2).and_then(|s| s.parse().ok()).unwrap_or(1);
    let workload = spanstore_workload::Workload::new(1, spans, spanstore_workload::Config::default());
    let started = std::time::Instant::now();
    let mut total = 0usize;
    workload
        .for_each_batch(threads, |batch| {
            total += batch.len();
            Ok::<(), ()>(())
        })
        .ok();
    let seconds = started.elapsed().as_secs_f64();
    println!("{total} spans in {seconds:.2} s: {:.0} spans/s", total as f64 / seconds);
}
