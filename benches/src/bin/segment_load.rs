//! Issue-3 measurements on the benchmark workload: ingest N spans, seal and compact,
//! then report bytes per span on disk, sealing throughput, open time, idle memory,
//! trace-lookup latency (no time window) and high-cardinality equality lookups.
//! Optionally writes the same spans as flattened JSON lines for the Parquet
//! comparison (`benches/compare/parquet_size.py`).
//!
//! `cargo run --release -p spanstore-benches --bin segment_load -- --spans 2000000`

use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Parser;
use spanstore_engine::{AnyValue, Options, Span, Store, SyncPolicy, TraceId};

#[derive(Parser, Debug)]
struct Args {
    /// Spans to generate and store.
    #[arg(long, default_value_t = 2_000_000)]
    spans: usize,
    /// Spans per appended batch.
    #[arg(long, default_value_t = 1000)]
    batch_spans: usize,
    /// Data directory (default: a temporary directory, removed at the end).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Also write the spans as flattened JSON lines here (for the Parquet comparison).
    #[arg(long)]
    jsonl: Option<PathBuf>,
    /// Seed of the workload.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Store nothing: measure open, memory and lookups on the directory `--dir` already
    /// holds (trace and request ids are sampled from its segments).
    #[arg(long, requires = "dir")]
    existing: bool,
}

fn rss_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with(field)).and_then(|l| l.split_whitespace().nth(1)?.parse().ok()))
        .unwrap_or(0)
}

fn dir_bytes(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| entries.filter_map(|e| e.ok()?.metadata().ok()).map(|m| m.len()).sum())
        .unwrap_or(0)
}

/// User and system CPU seconds of this process so far, all threads, from
/// /proc/self/stat (USER_HZ = 100 ticks a second).
fn cpu_seconds() -> f64 {
    let Ok(text) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    let after = text.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |index: usize| fields.get(index).and_then(|f| f.parse::<u64>().ok()).unwrap_or(0);
    (ticks(11) + ticks(12)) as f64 / 100.0
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted.get(((sorted.len().saturating_sub(1)) as f64 * p).round() as usize).copied().unwrap_or_default()
}

fn json_value(out: &mut String, value: &AnyValue) {
    match value {
        AnyValue::Str(s) => out.push_str(&format!("{s:?}")),
        AnyValue::Int(i) => out.push_str(&i.to_string()),
        AnyValue::Double(d) if d.is_finite() => out.push_str(&d.to_string()),
        AnyValue::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        _ => out.push_str("null"),
    }
}

/// One span as a flat JSON object: one column per field and attribute key.
fn flat_json(span: &Span) -> String {
    let mut out = format!(
        "{{\"trace_id\":\"{}\",\"span_id\":\"{}\",\"parent_span_id\":{},\"name\":{:?},\"kind\":{},\"start\":{},\"end\":{},\"status\":{},\"status_message\":{:?}",
        span.trace_id,
        span.span_id,
        span.parent_span_id.map(|p| format!("\"{p}\"")).unwrap_or_else(|| "null".into()),
        span.name,
        span.kind as u8,
        span.start_unix_nano,
        span.end_unix_nano(),
        span.status_code as u8,
        span.status_message
    );
    for (prefix, attributes) in [("", &span.attributes), ("resource.", &span.resource.attributes)] {
        for kv in attributes {
            out.push_str(&format!(",\"{prefix}{}\":", kv.key));
            json_value(&mut out, &kv.value);
        }
    }
    out.push('}');
    out
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let temp = tempfile::tempdir()?;
    let dir = args.dir.clone().unwrap_or_else(|| temp.path().join("data"));
    let options = Options { sync: SyncPolicy::None, background_maintenance: false, ..Options::default() };
    if args.existing {
        return measure_lookups(&dir, options, Vec::new(), Vec::new());
    }
    let mut generator = spanstore_benches::Generator::new(args.seed);
    let mut jsonl = match &args.jsonl {
        Some(path) => Some(std::io::BufWriter::new(std::fs::File::create(path)?)),
        None => None,
    };
    let store = Store::open(&dir, options.clone())?;
    let mut probes: Vec<TraceId> = Vec::new();
    let mut request_ids: Vec<String> = Vec::new();
    let (mut append_time, mut seal_time) = (Duration::ZERO, Duration::ZERO);
    let mut seal_cpu = 0.0f64;
    let mut appended = 0usize;
    let mut sealed_spans = 0u64;
    while appended < args.spans {
        let batch = generator.next_batch(args.batch_spans.min(args.spans - appended));
        if appended % 200_000 < args.batch_spans {
            probes.push(batch.trace_id(batch.len() / 2));
            request_ids.extend(request_id(&batch.to_span(batch.len() / 3)));
        }
        if let Some(out) = jsonl.as_mut() {
            for span in batch.to_spans() {
                writeln!(out, "{}", flat_json(&span))?;
            }
        }
        appended += batch.len();
        let started = Instant::now();
        store.append(batch)?;
        append_time += started.elapsed();
        // Seal when the memtable (not the whole store) holds a segment's worth.
        let snapshot = store.snapshot();
        if snapshot.span_count() - snapshot.sealed_span_count() >= options.seal_span_count as u64 {
            let started = Instant::now();
            let cpu = cpu_seconds();
            if let Some(entry) = store.seal_now()? {
                sealed_spans += entry.span_count;
            }
            seal_time += started.elapsed();
            seal_cpu += cpu_seconds() - cpu;
        }
    }
    let started = Instant::now();
    let cpu = cpu_seconds();
    if let Some(entry) = store.seal_now()? {
        sealed_spans += entry.span_count;
    }
    seal_time += started.elapsed();
    seal_cpu += cpu_seconds() - cpu;
    let before_compaction = dir_bytes(&dir);
    let started = Instant::now();
    let cpu = cpu_seconds();
    let report = store.compact_now()?;
    let compact_time = started.elapsed();
    let compact_cpu = cpu_seconds() - cpu;
    store.close()?;
    let after = dir_bytes(&dir);
    println!("spans: {appended}");
    println!("append (sync none): {:.0} spans/s", appended as f64 / append_time.as_secs_f64());
    println!(
        "sealing: {sealed_spans} spans in {:.1} s = {:.0} spans/s; {:.1} CPU-s = {:.0} spans per CPU-second",
        seal_time.as_secs_f64(),
        sealed_spans as f64 / seal_time.as_secs_f64(),
        seal_cpu,
        sealed_spans as f64 / seal_cpu.max(0.01)
    );
    let compacted = report.compacted.iter().map(|(_, e)| e.span_count).sum::<u64>() as f64;
    println!(
        "compaction: {} merges in {:.1} s ({:.0} spans/s); {:.1} CPU-s = {:.0} spans per CPU-second",
        report.compacted.len(),
        compact_time.as_secs_f64(),
        compacted / compact_time.as_secs_f64().max(1e-9),
        compact_cpu,
        compacted / compact_cpu.max(0.01)
    );
    println!(
        "directory: {before_compaction} bytes before compaction, {after} after = {:.1} bytes/span",
        after as f64 / appended as f64
    );
    measure_lookups(&dir, options, probes, request_ids)
}

/// The request id of a span, if it has one.
fn request_id(span: &Span) -> Option<String> {
    span.attributes.iter().find(|kv| kv.key == "aws.request_id").and_then(|kv| match &kv.value {
        AnyValue::Str(s) => Some(s.clone()),
        _ => None,
    })
}

/// Open time, idle memory, trace lookups and request-id equality on `dir`; with no
/// probes given, 60 rows spread over each segment supply them.
fn measure_lookups(
    dir: &std::path::Path,
    options: Options,
    mut probes: Vec<TraceId>,
    mut request_ids: Vec<String>,
) -> Result<(), Box<dyn std::error::Error>> {
    // Open time and idle memory.
    let rss_before = rss_kib("VmRSS:");
    let started = Instant::now();
    let store = Store::open_read_only(dir, options)?;
    let open_time = started.elapsed();
    let snapshot = store.snapshot();
    println!(
        "open (read-only): {:.1} ms, {} segments; idle RSS grew by {} KiB (to {} KiB)",
        open_time.as_secs_f64() * 1e3,
        snapshot.segments().len(),
        rss_kib("VmRSS:").saturating_sub(rss_before),
        rss_kib("VmRSS:")
    );

    if probes.is_empty() {
        for handle in snapshot.segments() {
            let segment = &handle.segment;
            let rows: Vec<u32> = (0..60).map(|i| (i * segment.row_count() / 60) as u32).collect();
            for span in segment.spans(&rows)? {
                probes.push(span.trace_id);
                if request_ids.len() < 12 * probes.len() / 60 {
                    request_ids.extend(request_id(&span));
                }
            }
        }
    }
    // Trace lookups with no time window.
    let mut times = Vec::new();
    for _ in 0..3 {
        for id in &probes {
            let started = Instant::now();
            let spans = snapshot.trace(*id)?;
            times.push(started.elapsed());
            if spans.is_empty() {
                return Err(format!("trace {id} not found").into());
            }
        }
    }
    times.sort();
    println!(
        "trace lookup ({} lookups): median {:.3} ms, p99 {:.3} ms",
        times.len(),
        percentile(&times, 0.5).as_secs_f64() * 1e3,
        percentile(&times, 0.99).as_secs_f64() * 1e3
    );

    // Equality on a high-cardinality attribute, through the query engine.
    let mut times = Vec::new();
    for id in &request_ids {
        let text = format!("SELECT count(*) FROM spans WHERE aws.request_id = '{id}'");
        let statement = spanstore_query::parse(&text)?;
        let started = Instant::now();
        let result = spanstore_query::execute(&snapshot, &statement, &spanstore_query::ExecOptions::default())?;
        times.push(started.elapsed());
        let count = result.rows.first().and_then(|r| r.first()).and_then(|v| v.as_f64()).unwrap_or(0.0);
        if count < 1.0 {
            return Err(format!("request id {id} not found").into());
        }
    }
    times.sort();
    println!(
        "aws.request_id equality ({} lookups): median {:.3} ms, p99 {:.3} ms",
        times.len(),
        percentile(&times, 0.5).as_secs_f64() * 1e3,
        percentile(&times, 0.99).as_secs_f64() * 1e3
    );
    println!(
        "peak RSS: {} KiB; after the lookups: {} KiB anonymous (heap), {} KiB mapped file pages",
        rss_kib("VmHWM:"),
        rss_kib("RssAnon:"),
        rss_kib("RssFile:")
    );
    Ok(())
}
