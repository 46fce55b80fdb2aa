//! The `spanstore` command-line tool, as a library so that integration tests can drive it:
//! argument parsing, printing and exit codes; everything else lives in the engine.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

use std::ffi::OsString;
use std::io::Write;
use std::path::PathBuf;

use clap::{Parser, Subcommand};
use spanstore_engine::fs::RealFs;
use spanstore_engine::verify::{self, FileKind};

mod demo;
mod export_cmd;
mod format;
mod gen_cmd;
mod ingest_cmd;
mod serve;
mod shell;
mod tracecontext_cmd;

/// The README's examples, compiled and run as doc tests (this crate sees every library
/// the README uses).
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;

/// Where the data directory is when neither `--data` nor `$SPANSTORE_DATA` says.
pub const DEFAULT_DATA_DIR: &str = "./spanstore-data";

#[derive(Parser, Debug)]
#[command(name = "spanstore", version, about = "A storage engine for distributed traces and time series")]
struct Cli {
    /// Data directory (default: $SPANSTORE_DATA, else ./spanstore-data).
    #[arg(long, global = true, env = "SPANSTORE_DATA", value_name = "DIR")]
    data: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum OutputFormat {
    Table,
    Json,
    Csv,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Read OTLP/JSON, OTLP protobuf or Zipkin JSON files (gzip too; `-` for stdin) and
    /// store their spans; a bad line is rejected whole as `file:line: reason`.
    Ingest(ingest_cmd::IngestArgs),
    /// Write spans back out as OTLP/JSON, one ExportTraceServiceRequest per line.
    Export(export_cmd::ExportArgs),
    /// Write the serverless workload (docs/WORKLOAD.md) as OTLP/JSON lines, deterministic
    /// for a seed: `spanstore gen --spans 1000000 --seed 1 | spanstore ingest -`.
    Gen(gen_cmd::GenArgs),
    /// Run one SpanQL query (see docs/QUERY.md).
    Query {
        /// The query, e.g. "SELECT count(*) FROM spans FACET service".
        query: String,
        /// Output format.
        #[arg(long, value_enum, default_value = "table")]
        format: OutputFormat,
    },
    /// An interactive SpanQL shell (history, multi-line input ending at ';', tab
    /// completion, .help, .schema, .timing).
    Shell,
    /// Show one trace as an indented tree with a waterfall.
    Trace {
        /// The trace id: 32 hex digits, or an AWS X-Ray trace id (1-5759e988-bd862e3fe1be46a994272793).
        id: String,
    },
    /// Check a W3C `traceparent` header and print it as one JSON object; exit 1 if invalid.
    Traceparent(tracecontext_cmd::HeaderArgs),
    /// Check a W3C `tracestate` header and print its members as one JSON object; exit 1 if
    /// invalid.
    Tracestate(tracecontext_cmd::HeaderArgs),
    /// Describe the data directory: segments, rows, time ranges, bytes per column and
    /// per span, index sizes.
    Inspect,
    /// Seal the memtable and merge small segments now (it also runs in the background).
    Compact,
    /// Read every byte of the log, manifest and segments, check every checksum, report
    /// damage precisely; exit 1 on damage.
    Verify,
    /// Receive spans over OTLP/HTTP, OTLP/gRPC and Zipkin and answer the query API
    /// (see docs/SERVE.md); SIGTERM/SIGINT stops it cleanly.
    Serve(serve::ServeArgs),
    /// Generate a realistic serverless data set into a new directory, ingest it and show
    /// what the engine finds in it.
    Demo {
        /// How many spans to generate.
        #[arg(long, default_value_t = 2_000_000)]
        spans: u64,
        /// Seed of the workload (the same seed gives the same data).
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Write the data here (a new or empty directory) instead of a fresh temporary one.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
}

/// Runs the tool with `args` (the program name first); returns the exit code.
pub fn run(args: impl IntoIterator<Item = OsString>) -> i32 {
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(err) => {
            let _ = err.print();
            return if err.use_stderr() { 2 } else { 0 };
        }
    };
    let data = cli.data.unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let result = match cli.command {
        Command::Inspect => inspect(&data, &mut out),
        Command::Ingest(args) => ingest_cmd::run(&data, &args, &mut out),
        Command::Gen(args) => gen_cmd::run(&args),
        Command::Export(args) => export_cmd::run(&data, &args),
        Command::Query { query, format } => query_command(&data, &query, format, &mut out),
        Command::Trace { id } => trace_command(&data, &id, &mut out),
        Command::Traceparent(args) => tracecontext_cmd::traceparent(&args.header, &mut out),
        Command::Tracestate(args) => tracecontext_cmd::tracestate(&args.header, &mut out),
        Command::Shell => shell::run(&data, &mut out),
        Command::Verify => verify_command(&data, &mut out),
        Command::Compact => compact(&data, &mut out),
        Command::Serve(args) => serve::run(&data, args),
        Command::Demo { spans, seed, dir } => demo::run(&demo::DemoArgs { spans, seed, dir }, &mut out),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            let _ = out.flush();
            eprintln!("spanstore: {err}");
            1
        }
    }
}

type CommandResult = Result<i32, Box<dyn std::error::Error>>;

fn verify_command(data: &std::path::Path, out: &mut impl Write) -> CommandResult {
    let report = verify::verify(&RealFs, data)?;
    for file in &report.files {
        writeln!(
            out,
            "{:<9} {:>12} bytes  {:>8} records  {:>10} spans  {}",
            file.kind.as_str(),
            file.bytes,
            file.records,
            file.spans,
            file.path.display()
        )?;
    }
    for note in &report.notes {
        writeln!(out, "note: {note}")?;
    }
    for damage in &report.damage {
        writeln!(out, "damage: {damage}")?;
    }
    let files = report.files.len();
    if report.is_clean() {
        writeln!(out, "ok: {files} files, {} bytes read, every checksum matches", report.bytes_read)?;
        Ok(0)
    } else {
        writeln!(out, "damaged: {} problems in {files} files ({} bytes read)", report.damage.len(), report.bytes_read)?;
        Ok(1)
    }
}

fn open_read_only(data: &std::path::Path) -> Result<spanstore_engine::Store, spanstore_engine::EngineError> {
    spanstore_engine::Store::open_read_only(data, spanstore_engine::Options::default())
}

fn now_unix_nano() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn query_command(data: &std::path::Path, text: &str, format: OutputFormat, out: &mut impl Write) -> CommandResult {
    let statement = match spanstore_query::parse(text) {
        Ok(statement) => statement,
        Err(err) => {
            eprintln!("spanstore: {err}");
            if let Some(caret) = err.caret(text) {
                eprintln!("{caret}");
            }
            return Ok(2);
        }
    };
    let store = open_read_only(data)?;
    let options = spanstore_query::ExecOptions { now_unix_nano: now_unix_nano(), cancel: None, ..Default::default() };
    let result = spanstore_query::execute(&store.snapshot(), &statement, &options)?;
    match format {
        OutputFormat::Json => writeln!(out, "{}", result.to_json())?,
        OutputFormat::Csv => write!(out, "{}", result.to_csv())?,
        OutputFormat::Table => format::print_result(&result, out)?,
    }
    Ok(0)
}

fn trace_command(data: &std::path::Path, id: &str, out: &mut impl Write) -> CommandResult {
    // An AWS X-Ray trace id maps to its W3C id as the OpenTelemetry X-Ray propagator maps it.
    let trace_id = if id.starts_with("1-") {
        spanstore_engine::TraceId::from_xray(id)?
    } else {
        spanstore_engine::TraceId::from_hex(id)?
    };
    let store = open_read_only(data)?;
    let spans = store.trace(trace_id)?;
    if spans.is_empty() {
        writeln!(out, "no spans of trace {trace_id}")?;
        return Ok(1);
    }
    format::print_trace(&spans, out)?;
    Ok(0)
}

fn compact(data: &std::path::Path, out: &mut impl Write) -> CommandResult {
    if !data.is_dir() {
        return Err(Box::new(spanstore_engine::EngineError::NotAStore { path: data.to_path_buf() }));
    }
    let options = spanstore_engine::Options { background_maintenance: false, ..Default::default() };
    let store = spanstore_engine::Store::open(data, options)?;
    let report = store.compact_now()?;
    for entry in &report.sealed {
        writeln!(out, "sealed {} spans into segment {}", entry.span_count, entry.file_number)?;
    }
    for (inputs, entry) in &report.compacted {
        writeln!(out, "merged segments {inputs:?} into segment {} ({} spans)", entry.file_number, entry.span_count)?;
    }
    let segments = store.manifest().segments.len();
    store.close()?;
    writeln!(out, "done: {segments} segments")?;
    Ok(0)
}

fn inspect(data: &std::path::Path, out: &mut impl Write) -> CommandResult {
    let report = verify::verify(&RealFs, data)?;
    writeln!(out, "data directory: {}", data.display())?;
    match &report.manifest {
        Some(m) => writeln!(
            out,
            "manifest: version {}, log floor {}, sealed sequence {}, {} segments",
            m.number,
            m.log_floor,
            m.sealed_sequence,
            m.segments.len()
        )?,
        None => writeln!(out, "manifest: none reads back whole")?,
    }
    let mut table = format::Table::new(&["file", "kind", "bytes", "records", "spans", "first start", "last start"]);
    let mut log_bytes = 0u64;
    for file in &report.files {
        if file.kind == FileKind::Log && !file.retired {
            log_bytes += file.bytes;
        }
        let name = file.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let (first, last) = match file.time_range {
            Some((a, b)) => (format::timestamp(a), format::timestamp(b)),
            None => (String::new(), String::new()),
        };
        let kind = if file.retired { "log (retired)" } else { file.kind.as_str() };
        table.row(vec![
            name,
            kind.to_owned(),
            file.bytes.to_string(),
            file.records.to_string(),
            file.spans.to_string(),
            first,
            last,
        ]);
    }
    table.print(out)?;
    let sealed = report.sealed_spans();
    let unsealed = report.live_spans();
    let segment_bytes: u64 =
        report.files.iter().filter(|f| f.kind == FileKind::Segment && !f.retired).map(|f| f.bytes).sum();
    let total_bytes: u64 = report.files.iter().filter(|f| !f.retired).map(|f| f.bytes).sum();
    writeln!(out, "spans: {} ({sealed} sealed in segments, {unsealed} only in the log)", sealed + unsealed)?;
    writeln!(out, "bytes: {total_bytes} on disk ({segment_bytes} in segments, {log_bytes} in live logs)")?;
    if sealed + unsealed > 0 {
        writeln!(out, "bytes per span: {:.1} on disk", total_bytes as f64 / (sealed + unsealed) as f64)?;
    }
    if sealed > 0 {
        writeln!(out, "segment bytes per span: {:.1}", segment_bytes as f64 / sealed as f64)?;
        // Columns across every live segment.
        let mut columns: std::collections::BTreeMap<String, (u64, u64, u64)> = std::collections::BTreeMap::new();
        let (mut dictionaries, mut bitmaps, mut value_indexes, mut blooms, mut other) = (0u64, 0u64, 0u64, 0u64, 0u64);
        for file in report.files.iter().filter(|f| !f.retired) {
            let Some(stats) = &file.segment else { continue };
            for (name, bytes, distinct, present) in &stats.columns {
                let entry = columns.entry(name.clone()).or_default();
                entry.0 += bytes;
                entry.1 = entry.1.max(*distinct);
                entry.2 += present;
            }
            dictionaries += stats.dictionary_bytes;
            bitmaps += stats.bitmap_bytes;
            value_indexes += stats.value_index_bytes;
            blooms += stats.bloom_bytes;
            other += stats.other_bytes;
        }
        let mut rows: Vec<(String, (u64, u64, u64))> = columns.into_iter().collect();
        rows.sort_by_key(|row| std::cmp::Reverse(row.1 .0));
        let mut table = format::Table::new(&["column", "bytes", "bytes/span", "rows", "distinct (max per segment)"]);
        for (name, (bytes, distinct, present)) in rows {
            table.row(vec![
                name,
                bytes.to_string(),
                format!("{:.2}", bytes as f64 / sealed as f64),
                present.to_string(),
                distinct.to_string(),
            ]);
        }
        for (name, bytes) in [
            ("(dictionaries)", dictionaries),
            ("(bitmap indexes)", bitmaps),
            ("(value indexes)", value_indexes),
            ("(trace bloom filters)", blooms),
            ("(directories, headers)", other),
        ] {
            table.row(vec![
                name.to_owned(),
                bytes.to_string(),
                format!("{:.2}", bytes as f64 / sealed as f64),
                String::new(),
                String::new(),
            ]);
        }
        table.print(out)?;
    }
    for note in &report.notes {
        writeln!(out, "note: {note}")?;
    }
    for damage in &report.damage {
        writeln!(out, "damage: {damage}")?;
    }
    Ok(if report.is_clean() { 0 } else { 1 })
}
