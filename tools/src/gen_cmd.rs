//! `spanstore gen`: writes the serverless workload (docs/WORKLOAD.md) as OTLP/JSON lines,
//! one `ExportTraceServiceRequest` of about 1,000 spans per line.
//!
//! The spans come from [`spanstore_workload::Workload`]: fixed chunks of spans, each with
//! its own seed and its own slice of the time range, generated and encoded on every core
//! and written in chunk order, so the output is the same bytes for the same arguments
//! whatever the thread count, and memory stays bounded (a few chunks in flight) whatever
//! the size.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use spanstore_workload::{Config, Workload, CHUNK_SPANS, DEFAULT_HOURS, DEFAULT_START_UNIX_NANO};

use crate::CommandResult;

/// The latest end of the data: what signed 64-bit nanoseconds hold (2262-04-11).
const END_UNIX_NANO_MAX: u64 = i64::MAX as u64;

/// Arguments of `spanstore gen`.
#[derive(clap::Args, Debug)]
pub struct GenArgs {
    /// How many spans to write.
    #[arg(long, value_name = "N", default_value_t = 1_000_000)]
    pub spans: u64,
    /// Seed of the workload: the same arguments give the same bytes.
    #[arg(long, value_name = "S", default_value_t = 1)]
    pub seed: u64,
    /// Start of the data, RFC 3339 (default 2026-11-26T00:00:00Z).
    #[arg(long, value_name = "TIME", value_parser = parse_start)]
    pub start: Option<u64>,
    /// Length of the time range in hours; the request rate follows a day curve over it
    /// and the PutItem anomaly sits in its middle two hours.
    #[arg(long, value_name = "H", default_value_t = DEFAULT_HOURS, value_parser = parse_hours)]
    pub hours: f64,
    /// Where to write: a file, or `-` for stdout.
    #[arg(long, value_name = "FILE", default_value = "-")]
    pub out: PathBuf,
    /// Generating threads (default: one per core); the output does not depend on it.
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
}

fn parse_start(text: &str) -> Result<u64, String> {
    let nanos = spanstore_query::parse_rfc3339(text).map_err(|err| err.to_string())?;
    u64::try_from(nanos).map_err(|_| format!("{text}: the start must not be before 1970-01-01T00:00:00Z"))
}

fn parse_hours(text: &str) -> Result<f64, String> {
    let hours: f64 = text.parse().map_err(|_| format!("{text}: expected a number of hours, such as 24 or 0.5"))?;
    if !(hours.is_finite() && hours > 0.0) {
        return Err(format!("{text}: the number of hours must be above zero"));
    }
    Ok(hours)
}

/// Runs `spanstore gen`; a summary goes to stderr when writing to a file.
pub fn run(args: &GenArgs) -> CommandResult {
    let start = args.start.unwrap_or(DEFAULT_START_UNIX_NANO);
    let config = Config::with_hours(start, args.hours);
    if config.duration_ns == 0 || start.checked_add(config.duration_ns).is_none_or(|end| end > END_UNIX_NANO_MAX) {
        return Err(format!(
            "--hours {}: the data would end after 2262-04-11, the last time spans can have",
            args.hours
        )
        .into());
    }
    let workload = Workload::new(args.seed, args.spans, config);
    let threads = args.threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())).max(1);
    let to_stdout = args.out.as_os_str() == "-";
    let mut output: Box<dyn Write> = if to_stdout {
        Box::new(std::io::stdout().lock())
    } else {
        let file = std::fs::File::create(&args.out).map_err(|err| format!("{}: {err}", args.out.display()))?;
        Box::new(file)
    };
    let progress = Progress::new(args.spans, !to_stdout);
    let started = Instant::now();
    let (mut lines, mut bytes, mut spans) = (0u64, 0u64, 0u64);
    let result = workload.generate(
        threads,
        |_, batches| {
            let mut text = Vec::with_capacity(CHUNK_SPANS as usize * 700);
            let mut chunk_spans = 0;
            for batch in &batches {
                spanstore_ingest::otlp_json::encode_json(batch, &mut text);
                text.push(b'\n');
                chunk_spans += batch.len() as u64;
            }
            (text, batches.len() as u64, chunk_spans)
        },
        |(text, chunk_lines, chunk_spans)| {
            output.write_all(&text)?;
            lines += chunk_lines;
            bytes += text.len() as u64;
            spans += chunk_spans;
            progress.set(spans);
            Ok::<(), std::io::Error>(())
        },
    );
    let result = result.and_then(|()| output.flush());
    progress.clear();
    match result {
        Ok(()) => {}
        // The reader went away (`spanstore gen | head`): stop quietly.
        Err(err) if err.kind() == std::io::ErrorKind::BrokenPipe => return Ok(0),
        Err(err) if to_stdout => return Err(format!("stdout: {err}").into()),
        Err(err) => return Err(format!("{}: {err}", args.out.display()).into()),
    }
    if !to_stdout {
        let seconds = started.elapsed().as_secs_f64();
        eprintln!(
            "wrote {spans} spans in {lines} lines, {bytes} bytes ({:.1} bytes per span) to {} in {seconds:.1} s \
             ({:.0} spans/s, {threads} threads)",
            bytes as f64 / spans.max(1) as f64,
            args.out.display(),
            spans as f64 / seconds.max(1e-9),
        );
    }
    Ok(0)
}

/// A progress bar on stderr when it is a terminal and the output is a file.
struct Progress {
    bar: Option<indicatif::ProgressBar>,
}

impl Progress {
    fn new(total: u64, wanted: bool) -> Progress {
        if !wanted || !std::io::stderr().is_terminal() {
            return Progress { bar: None };
        }
        let bar = indicatif::ProgressBar::new(total);
        if let Ok(style) = indicatif::ProgressStyle::with_template(
            "{spinner} [{bar:40}] {human_pos}/{human_len} spans ({per_sec}, {eta} left)",
        ) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.enable_steady_tick(Duration::from_millis(100));
        Progress { bar: Some(bar) }
    }

    fn set(&self, position: u64) {
        if let Some(bar) = &self.bar {
            bar.set_position(position);
        }
    }

    fn clear(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
