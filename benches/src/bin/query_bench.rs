//! Times SpanQL queries in-process over one read-only snapshot, as the comparison script
//! (`benches/compare/compare.py`) times DuckDB and chDB in-process: each query runs once
//! to warm up, then `--runs` times; one JSON object per query is printed with the
//! median and every run in milliseconds, and the result as `spanstore query --format
//! json` gives it.
//!
//! `cargo run --release -p spanstore-benches --bin query_bench -- --data DIR --queries FILE`
//!
//! FILE holds one query per line; blank lines and lines starting with `#` are skipped.

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use clap::Parser;
use spanstore_engine::{Options, Store};

#[derive(Parser, Debug)]
struct Args {
    /// Data directory, opened read-only.
    #[arg(long)]
    data: PathBuf,
    /// File of queries, one per line.
    #[arg(long)]
    queries: PathBuf,
    /// Timed runs per query after one warm-up run.
    #[arg(long, default_value_t = 5)]
    runs: usize,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let text = std::fs::read_to_string(&args.queries)?;
    let store = Store::open_read_only(&args.data, Options::default())?;
    let snapshot = store.snapshot();
    let now_unix_nano = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0);
    let options = spanstore_query::ExecOptions { now_unix_nano, cancel: None, ..Default::default() };
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    for (line_index, query) in text.lines().enumerate() {
        let query = query.trim();
        if query.is_empty() || query.starts_with('#') {
            continue;
        }
        let statement = spanstore_query::parse(query).map_err(|e| format!("line {}: {e}", line_index + 1))?;
        let mut result = spanstore_query::execute(&snapshot, &statement, &options)?;
        let mut runs_ms = Vec::with_capacity(args.runs);
        for _ in 0..args.runs {
            let started = Instant::now();
            result = spanstore_query::execute(&snapshot, &statement, &options)?;
            runs_ms.push(started.elapsed().as_secs_f64() * 1e3);
        }
        let mut sorted = runs_ms.clone();
        sorted.sort_by(f64::total_cmp);
        let median = sorted.get(sorted.len() / 2).copied().unwrap_or(0.0);
        let runs: Vec<String> = runs_ms.iter().map(|ms| format!("{ms:.3}")).collect();
        writeln!(
            out,
            "{{\"line\":{},\"median_ms\":{median:.3},\"runs_ms\":[{}],\"result\":{}}}",
            line_index + 1,
            runs.join(","),
            result.to_json()
        )?;
    }
    Ok(())
}
