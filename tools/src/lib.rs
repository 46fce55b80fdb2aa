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

mod format;

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

#[derive(Subcommand, Debug)]
enum Command {
    /// Describe the data directory: files, records, spans, time ranges, bytes per span.
    Inspect,
    /// Read every byte of the log and manifest, check every checksum, report damage
    /// precisely; exit 1 on damage.
    Verify,
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
        Command::Verify => verify_command(&data, &mut out),
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
        writeln!(
            out,
            "damaged: {} problems in {files} files ({} bytes read)",
            report.damage.len(),
            report.bytes_read
        )?;
        Ok(1)
    }
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
    let spans = report.live_spans();
    writeln!(out, "spans: {spans} in the log ({log_bytes} bytes)")?;
    if spans > 0 {
        writeln!(out, "log bytes per span: {:.1}", log_bytes as f64 / spans as f64)?;
    }
    for note in &report.notes {
        writeln!(out, "note: {note}")?;
    }
    for damage in &report.damage {
        writeln!(out, "damage: {damage}")?;
    }
    Ok(if report.is_clean() { 0 } else { 1 })
}
