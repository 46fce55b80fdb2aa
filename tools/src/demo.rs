//! `spanstore demo`: generates a realistic serverless data set into a directory, ingests
//! it, and tells its story with a short tour of queries (DESIGN.md §1.1).
//!
//! Everything it shows is computed from the data it has just written: the planted
//! anomalies of the workload (docs/WORKLOAD.md) are found by the queries, not printed
//! from constants.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use spanstore_engine::{Options, Store, SyncPolicy};
use spanstore_query::{ExecOptions, QueryResult};
use spanstore_workload as workload;

use crate::format;
use crate::CommandResult;

/// What `spanstore demo` was asked for.
#[derive(Debug, Clone)]
pub struct DemoArgs {
    /// How many spans to generate.
    pub spans: u64,
    /// Seed of the workload.
    pub seed: u64,
    /// Where to write the data; a fresh directory under the system's temporary directory
    /// when absent.
    pub dir: Option<PathBuf>,
}

/// Runs the demo, printing to `out`.
pub fn run(args: &DemoArgs, out: &mut impl Write) -> CommandResult {
    let dir = match &args.dir {
        Some(dir) => dir.clone(),
        None => fresh_temp_dir()?,
    };
    if dir.exists() && std::fs::read_dir(&dir)?.next().is_some() {
        return Err(format!("{}: directory is not empty; the demo writes into a new directory", dir.display()).into());
    }
    let started = Instant::now();
    writeln!(
        out,
        "spanstore demo: {} serverless spans (seed {}) into {}",
        group(args.spans),
        args.seed,
        dir.display()
    )?;
    writeln!(out)?;
    out.flush()?;
    let load = load(&dir, args)?;
    writeln!(
        out,
        "ingested {} spans in {:.1} s ({} spans/s), sealed into {} segments: {:.1} MB on disk, {:.1} bytes per span",
        group(load.spans),
        load.seconds,
        group((load.spans as f64 / load.seconds.max(1e-9)) as u64),
        load.segments,
        load.bytes as f64 / 1e6,
        load.bytes as f64 / load.spans.max(1) as f64
    )?;
    writeln!(out)?;

    let store = Store::open_read_only(&dir, Options::default())?;
    let snapshot = store.snapshot();
    let mut tour = Tour { snapshot: &snapshot, data: &dir, out };
    tour.step(
        "1. Traffic by service: how many spans each service reported, and how slow its slowest are.",
        "SELECT count(*), percentile(duration, 50, 99) FROM spans FACET service",
    )?;
    tour.step(
        "2. Is anything failing? DynamoDB PutItem error rate by availability zone and subnet, worst first.",
        "SELECT filter(count(*), WHERE status = 'error') / count(*) AS error_rate, count(*) FROM spans \
         WHERE name = 'DynamoDB.PutItem' FACET resource.cloud.availability_zone, resource.net.subnet.id \
         ORDER BY error_rate DESC LIMIT 5",
    )?;
    tour.step(
        "3. When? The same error rate as a time series, hour by hour: one subnet spikes for two hours.",
        "SELECT filter(count(*), WHERE status = 'error') / count(*) AS error_rate FROM spans \
         WHERE name = 'DynamoDB.PutItem' FACET resource.cloud.availability_zone, resource.net.subnet.id \
         TIMESERIES 1 hour LIMIT 4",
    )?;
    tour.step(
        "4. Cold starts: latency percentiles of the functions' cold-start invocations.",
        "SELECT count(*), percentile(duration, 50, 95, 99) FROM spans WHERE faas.coldstart = true \
         FACET faas.name LIMIT 5",
    )?;
    let slowest = tour.step(
        "5. Which route got slower? p50 of the function invocations per route and function version, slowest first.",
        "SELECT percentile(duration, 50) AS p50, count(*) FROM spans \
         WHERE kind = 'server' AND resource.faas.version IS NOT NULL \
         FACET http.route, resource.faas.version ORDER BY p50 DESC LIMIT 3",
    )?;
    if let Some(route) = slowest.rows.first().and_then(|row| row.first()).map(|v| v.to_text(false)) {
        tour.step(
            "   Drill down: that route on each deployed version. One version is several times slower.",
            &format!(
                "SELECT percentile(duration, 50, 99), count(*) FROM spans WHERE kind = 'server' \
                 AND resource.faas.version IS NOT NULL AND http.route = '{}' FACET resource.faas.version",
                route.replace('\'', "''")
            ),
        )?;
    }
    let failed = tour.query(&format!(
        "SELECT trace_id FROM spans WHERE name = 'DynamoDB.PutItem' AND status = 'error' \
         AND resource.net.subnet.id = '{}' LIMIT 1",
        workload::ANOMALY_SUBNET
    ))?;
    if let Some(id) = failed.rows.first().and_then(|row| row.first()).map(|v| v.to_text(false)) {
        tour.trace("6. One failed PutItem from that subnet, as the whole trace it belongs to.", &id)?;
    }
    tour.step(
        "7. How the engine answered: EXPLAIN shows segments pruned and which predicates the bitmap and value \
         indexes answered.",
        &format!(
            "EXPLAIN SELECT count(*) FROM spans WHERE name = 'DynamoDB.PutItem' AND status = 'error' \
             AND resource.net.subnet.id = '{}' FACET faas.name",
            workload::ANOMALY_SUBNET
        ),
    )?;
    drop(snapshot);
    drop(store);
    writeln!(out, "demo finished in {:.1} s. Explore the same data yourself:", started.elapsed().as_secs_f64())?;
    writeln!(out)?;
    writeln!(out, "    cargo run --release -- --data {} shell", dir.display())?;
    writeln!(out)?;
    writeln!(out, "(the directory stays until you remove it; docs/QUERY.md has the whole language)")?;
    Ok(0)
}

/// A directory under the system's temporary directory that does not exist yet.
fn fresh_temp_dir() -> std::io::Result<PathBuf> {
    let base = std::env::temp_dir();
    let stamp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    for attempt in 0..1000u32 {
        let dir = base.join(format!("spanstore-demo-{stamp}-{}-{attempt}", std::process::id()));
        match std::fs::create_dir(&dir) {
            Ok(()) => return Ok(dir),
            Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(err) => return Err(err),
        }
    }
    Err(std::io::Error::other(format!("no free demo directory name under {}", base.display())))
}

/// What loading the data set took.
struct Load {
    spans: u64,
    seconds: f64,
    segments: usize,
    bytes: u64,
}

/// Generates the workload on every core and appends it on this thread, with a progress bar
/// on a terminal; closes the store so that everything is sealed into segments.
fn load(dir: &Path, args: &DemoArgs) -> Result<Load, Box<dyn std::error::Error>> {
    // The data is regenerated from the seed if lost, so the demo does not fsync every
    // batch; close() syncs everything before it returns.
    let options = Options { sync: SyncPolicy::None, ..Options::default() };
    let store = Store::open(dir, options)?;
    let started = Instant::now();
    let progress = Progress::new(args.spans);
    // A whole day, so the diurnal curve and the two-hour anomaly in its middle show.
    let config = workload::Config::with_hours(workload::DEFAULT_START_UNIX_NANO, DEMO_HOURS);
    let data_set = workload::Workload::new(args.seed, args.spans, config);
    let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let mut appended = 0u64;
    data_set.for_each_batch(threads, |batch| {
        appended += batch.len() as u64;
        store.append(batch)?;
        progress.set(appended);
        Ok::<(), spanstore_engine::EngineError>(())
    })?;
    progress.finish("sealing the last segment");
    store.close()?;
    let seconds = started.elapsed().as_secs_f64();
    let report = spanstore_engine::verify::verify(&spanstore_engine::fs::RealFs, dir)?;
    let segments = report.files.iter().filter(|f| f.kind == spanstore_engine::verify::FileKind::Segment).count();
    let bytes = report.files.iter().filter(|f| !f.retired).map(|f| f.bytes).sum();
    progress.clear();
    Ok(Load { spans: appended, seconds, segments, bytes })
}

/// Hours of generated time the demo's spans cover.
const DEMO_HOURS: f64 = 24.0;

/// A progress bar on a terminal; nothing otherwise.
struct Progress {
    bar: Option<indicatif::ProgressBar>,
}

impl Progress {
    fn new(total: u64) -> Progress {
        if !std::io::stderr().is_terminal() {
            return Progress { bar: None };
        }
        let bar = indicatif::ProgressBar::new(total);
        let style = indicatif::ProgressStyle::with_template(
            "{spinner} generating and ingesting [{bar:40}] {human_pos}/{human_len} spans ({per_sec}, {eta} left)",
        )
        .map(|style| style.progress_chars("=> "));
        if let Ok(style) = style {
            bar.set_style(style);
        }
        bar.enable_steady_tick(Duration::from_millis(100));
        Progress { bar: Some(bar) }
    }

    fn set(&self, position: u64) {
        if let Some(bar) = &self.bar {
            bar.set_position(position);
        }
    }

    fn finish(&self, message: &str) {
        if let Some(bar) = &self.bar {
            bar.set_message(message.to_owned());
            if let Ok(style) = indicatif::ProgressStyle::with_template("{spinner} {msg}") {
                bar.set_style(style);
            }
        }
    }

    fn clear(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// Runs and prints the tour's queries against one snapshot.
struct Tour<'a, W: Write> {
    snapshot: &'a spanstore_engine::Snapshot,
    data: &'a Path,
    out: &'a mut W,
}

impl<W: Write> Tour<'_, W> {
    fn query(&self, text: &str) -> Result<QueryResult, Box<dyn std::error::Error>> {
        let statement = spanstore_query::parse(text)?;
        let options = ExecOptions { now_unix_nano: crate::now_unix_nano(), cancel: None, ..Default::default() };
        Ok(spanstore_query::execute(self.snapshot, &statement, &options)?)
    }

    fn step(&mut self, story: &str, text: &str) -> Result<QueryResult, Box<dyn std::error::Error>> {
        let started = Instant::now();
        let result = self.query(text)?;
        let elapsed = started.elapsed();
        writeln!(self.out, "{story}")?;
        writeln!(self.out, "$ spanstore query \"{text}\"")?;
        if result.timeseries {
            print_series(&result, self.out)?;
        } else {
            format::print_result_width(&result, 160, self.out)?;
        }
        writeln!(self.out, "({:.1} ms)", elapsed.as_secs_f64() * 1e3)?;
        writeln!(self.out)?;
        Ok(result)
    }

    fn trace(&mut self, story: &str, id: &str) -> CommandResult {
        let trace_id = spanstore_engine::TraceId::from_hex(id)?;
        let started = Instant::now();
        let spans = self.snapshot.trace(trace_id)?;
        let elapsed = started.elapsed();
        writeln!(self.out, "{story}")?;
        writeln!(self.out, "$ spanstore --data {} trace {id}", self.data.display())?;
        format::print_trace(&spans, self.out)?;
        writeln!(self.out, "({:.1} ms)", elapsed.as_secs_f64() * 1e3)?;
        writeln!(self.out)?;
        Ok(0)
    }
}

/// A TIMESERIES result as one line per series: its facet values, then per aggregate a
/// sparkline over the buckets and the peak with the bucket it fell in. The full table is
/// what `spanstore query` prints; the tour wants the shape at a glance.
fn print_series(result: &QueryResult, out: &mut impl Write) -> std::io::Result<()> {
    let facets = result.facet_count;
    let aggregates: Vec<&String> = result.columns.iter().skip(1 + facets).collect();
    /// One bucket: its start as text, and the aggregate values.
    type Point = (String, Vec<f64>);
    let mut series: Vec<(Vec<String>, Vec<Point>)> = Vec::new();
    for row in &result.rows {
        let key: Vec<String> = row.iter().skip(1).take(facets).map(|v| v.to_text(true)).collect();
        let stamp = row.first().map(|v| v.to_text(true)).unwrap_or_default();
        let values: Vec<f64> = row.iter().skip(1 + facets).map(|v| v.as_f64().unwrap_or(0.0)).collect();
        match series.iter_mut().find(|(k, _)| *k == key) {
            Some((_, points)) => points.push((stamp, values)),
            None => series.push((key, vec![(stamp, values)])),
        }
    }
    let (first, last) = match series.first() {
        Some((_, points)) => (
            points.first().map(|p| p.0.clone()).unwrap_or_default(),
            points.last().map(|p| p.0.clone()).unwrap_or_default(),
        ),
        None => (String::new(), String::new()),
    };
    let mut header: Vec<String> = result.columns.iter().skip(1).take(facets).cloned().collect();
    for name in &aggregates {
        header.push(format!("{name} over time"));
        header.push("peak".to_owned());
        header.push("at".to_owned());
    }
    let header: Vec<&str> = header.iter().map(String::as_str).collect();
    let mut table = format::Table::new(&header);
    for (key, points) in &series {
        let mut cells = key.clone();
        for c in 0..aggregates.len() {
            let column: Vec<f64> = points.iter().map(|p| p.1.get(c).copied().unwrap_or(0.0)).collect();
            let peak = points.iter().map(|p| (p.1.get(c).copied().unwrap_or(0.0), &p.0)).fold(
                None::<(f64, &String)>,
                |best, (v, at)| match best {
                    Some((b, _)) if b >= v => best,
                    _ => Some((v, at)),
                },
            );
            cells.push(format::sparkline(&column));
            cells.push(peak.map(|(v, _)| format!("{v:.4}")).unwrap_or_default());
            cells.push(peak.map(|(_, at)| at.get(11..16).unwrap_or(at).to_owned()).unwrap_or_default());
        }
        table.row(cells);
    }
    table.print(out)?;
    writeln!(out, "({} series, {} to {})", series.len(), first, last)
}

/// `1234567` as `1,234,567`.
fn group(n: u64) -> String {
    let digits = n.to_string();
    let mut grouped = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            grouped.push(',');
        }
        grouped.push(c);
    }
    grouped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_thousands() {
        assert_eq!(group(0), "0");
        assert_eq!(group(999), "999");
        assert_eq!(group(1000), "1,000");
        assert_eq!(group(2_000_000), "2,000,000");
        assert_eq!(group(12_345_678), "12,345,678");
    }
}
