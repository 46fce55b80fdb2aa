//! Query latency on a directory built by `segment_load --dir`: opens it read-only and
//! runs each query of a fixed set (the issue-4 speed targets and a few others) several
//! times, printing the median and the best wall time of each.
//!
//! `cargo run --release -p spanstore-benches --bin query_load -- --dir /path/to/data`

use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Parser;
use spanstore_engine::{Options, Store};
use spanstore_query::{execute, parse, ExecOptions};

#[derive(Parser, Debug)]
struct Args {
    /// Data directory written by `segment_load --dir`.
    #[arg(long)]
    dir: PathBuf,
    /// Runs of each query (the median is reported).
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Run only the queries whose text contains this.
    #[arg(long)]
    only: Option<String>,
    /// Print the EXPLAIN output of each query once.
    #[arg(long)]
    explain: bool,
    /// Worker threads (0: one per core).
    #[arg(long, default_value_t = 0)]
    threads: usize,
}

/// The queries: the three issue-4 targets first, then others, then the five queries of
/// the DuckDB comparison (benches/compare/compare.py, same text) that were slower there.
fn queries(since: i64) -> Vec<String> {
    let day = 86_400_000_000_000i64;
    let minute = 60_000_000_000i64;
    // As compare.py: two hours from half an hour past the first minute.
    let window_start = since + 30 * minute;
    let window_end = window_start + 120 * minute;
    vec![
        "SELECT count(*) FROM spans WHERE service = 'orders' FACET name".into(),
        format!(
            "SELECT count(*) FROM spans WHERE service = 'orders' AND kind = 'server' SINCE {since} UNTIL {} TIMESERIES 1 minute",
            since + day
        ),
        "SELECT percentile(duration, 50, 95, 99) FROM spans WHERE faas.coldstart = true FACET faas.name".into(),
        "SELECT count(*) FROM spans FACET service".into(),
        "SELECT count(*) FROM spans WHERE status = 'error' FACET service".into(),
        "SELECT count(*), avg(duration) FROM spans FACET name".into(),
        "SELECT count(*) FROM spans FACET http.route".into(),
        "SELECT count(*) FROM spans FACET enduser.id".into(),
        "SELECT count(*) FROM spans".into(),
        "SELECT count(*) FROM spans WHERE status = 'error' AND http.route IS NOT NULL FACET http.route LIMIT 10".into(),
        format!(
            "SELECT count(*) FROM spans WHERE service = 'orders' AND status = 'error' SINCE {window_start} UNTIL {window_end} TIMESERIES 1 minute"
        ),
        "SELECT uniq(enduser.id) FROM spans FACET resource.cloud.region LIMIT MAX".into(),
        "SELECT avg(duration), max(duration) FROM spans WHERE http.response.status_code >= 500 FACET http.route LIMIT MAX"
            .into(),
        "SELECT filter(count(*), WHERE status = 'error') / count(*) AS error_rate FROM spans WHERE name = 'DynamoDB.PutItem' FACET resource.cloud.availability_zone, resource.net.subnet.id ORDER BY error_rate DESC LIMIT MAX".into(),
    ]
}

/// CPU time of the process so far (user + system, every thread), in seconds; 10 ms
/// resolution. Under a loaded machine this tells more than wall time.
fn cpu_seconds() -> f64 {
    let Ok(text) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // Fields after the parenthesised command name; utime and stime are fields 14, 15.
    let after = text.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |index: usize| fields.get(index).and_then(|f| f.parse::<u64>().ok()).unwrap_or(0);
    (ticks(11) + ticks(12)) as f64 / 100.0
}

/// A hash of a result's cells as text, to compare answers between builds.
fn answer_digest(rows: &[Vec<spanstore_query::Value>]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    for row in rows {
        for cell in row {
            cell.to_text(true).hash(&mut hasher);
        }
    }
    hasher.finish()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let store = Store::open_read_only(&args.dir, Options::default())?;
    let snapshot = store.snapshot();
    let since = snapshot.time_range().map(|(lo, _)| lo as i64).unwrap_or(0);
    let since = since - since.rem_euclid(60_000_000_000);
    println!("{} spans in {} segments", snapshot.span_count(), snapshot.segments().len());
    let options = ExecOptions { threads: args.threads, ..ExecOptions::default() };
    for text in queries(since) {
        if args.only.as_deref().is_some_and(|o| !text.contains(o)) {
            continue;
        }
        let statement = parse(&text)?;
        let mut times: Vec<Duration> = Vec::new();
        let mut rows = 0;
        let mut digest = 0u64;
        let cpu_started = cpu_seconds();
        for _ in 0..args.runs.max(1) {
            let started = Instant::now();
            let result = execute(&snapshot, &statement, &options)?;
            times.push(started.elapsed());
            rows = result.rows.len();
            digest = answer_digest(&result.rows);
        }
        let cpu_per_run = (cpu_seconds() - cpu_started) / args.runs.max(1) as f64;
        times.sort();
        let median = times.get(times.len() / 2).copied().unwrap_or_default();
        let best = times.first().copied().unwrap_or_default();
        println!(
            "{:>9.2} ms median {:>9.2} ms best {:>8.0} ms CPU/run {rows:>6} rows {digest:016x}  {text}",
            median.as_secs_f64() * 1e3,
            best.as_secs_f64() * 1e3,
            cpu_per_run * 1e3
        );
        if args.explain {
            let explained = execute(&snapshot, &parse(&format!("EXPLAIN {text}"))?, &options)?;
            for row in explained.rows.iter().take(12) {
                let cells: Vec<String> = row.iter().map(|v| v.to_text(true)).collect();
                println!("    {}", cells.join("  "));
            }
        }
    }
    Ok(())
}
