//! `spanstore export`: spans back out as OTLP/JSON, one `ExportTraceServiceRequest` per
//! line, losslessly (what `ingest` reads back gives the same stored spans).
//!
//! It opens the directory read-only (so it works while a writer runs) and streams: one
//! sealed segment block ([`BLOCK_ROWS`] rows) or one memtable batch at a time is
//! materialized, filtered and written, never the whole store. Segments and blocks
//! whose start-time zone maps miss the `[since, until)` range are skipped unread; the
//! start column is read before any other to drop rows outside the range. The `--where`
//! predicate is SpanQL's, evaluated per span by the query crate's reference evaluator
//! (`eval_expr` over `field_of_span`), so it means exactly what it means in a query.

use std::io::{BufWriter, Write};
use std::path::PathBuf;

use spanstore_engine::segment::reader::{BlockValues, Segment};
use spanstore_engine::segment::{ColumnKind, Intrinsic, BLOCK_ROWS};
use spanstore_engine::Span;
use spanstore_query::exec::{eval_expr, field_of_span};
use spanstore_query::select::{parse_predicate, parse_time, SpanFilter};
use spanstore_query::Expr;

use crate::CommandResult;

/// Spans per output line (one `ExportTraceServiceRequest`) at most.
const LINE_SPANS_MAX: usize = 1000;

/// Arguments of `spanstore export`.
#[derive(clap::Args, Debug)]
pub struct ExportArgs {
    /// Only spans for which this SpanQL predicate is true, e.g.
    /// "service = 'checkout' AND duration > 250ms".
    #[arg(long = "where", value_name = "PRED")]
    pub predicate: Option<String>,
    /// Only spans that start at or after this time: RFC 3339, epoch nanoseconds, or
    /// "N units ago".
    #[arg(long, value_name = "T")]
    pub since: Option<String>,
    /// Only spans that start before this time.
    #[arg(long, value_name = "T")]
    pub until: Option<String>,
    /// Write here instead of to stdout.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

/// Runs `spanstore export`.
pub fn run(data: &std::path::Path, args: &ExportArgs) -> CommandResult {
    let filter = match parse_filter(args) {
        Ok(filter) => filter,
        Err(message) => {
            eprintln!("spanstore: {message}");
            return Ok(2);
        }
    };
    let store = crate::open_read_only(data)?;
    let snapshot = store.snapshot();
    let (since, until) = filter.time_range(crate::now_unix_nano());
    let mut exporter = Exporter {
        predicate: filter.predicate.as_ref(),
        since,
        until,
        pending: Vec::with_capacity(LINE_SPANS_MAX),
        line: Vec::new(),
        spans: 0,
        lines: 0,
    };
    let stdout = std::io::stdout();
    let mut writer: Box<dyn Write> = match &args.out {
        Some(path) => Box::new(BufWriter::with_capacity(
            1 << 20,
            std::fs::File::create(path).map_err(|e| format!("{}: cannot create: {e}", path.display()))?,
        )),
        None => Box::new(BufWriter::with_capacity(1 << 20, stdout.lock())),
    };
    if since < until {
        for handle in snapshot.segments() {
            let entry = &handle.entry;
            if handle.segment.row_count() == 0
                || entry.max_start_unix_nano < since
                || entry.min_start_unix_nano >= until
            {
                continue;
            }
            exporter.segment(&handle.segment, &mut writer)?;
        }
        for item in snapshot.batches_in(since, until) {
            let item = item?;
            for row in 0..item.batch.len() {
                let start = item.batch.start_unix_nano(row);
                if start >= since && start < until {
                    exporter.offer(item.batch.to_span(row), &mut writer)?;
                }
            }
        }
    }
    exporter.flush(&mut writer)?;
    writer.flush()?;
    drop(writer);
    if std::io::IsTerminal::is_terminal(&std::io::stderr()) || args.out.is_some() {
        eprintln!("exported {} spans in {} lines", exporter.spans, exporter.lines);
    }
    Ok(0)
}

/// Parses the flags; an error names the flag and, for `--where`, shows where.
fn parse_filter(args: &ExportArgs) -> Result<SpanFilter, String> {
    let predicate = match &args.predicate {
        Some(text) => Some(parse_predicate(text).map_err(|err| match err.caret(text) {
            Some(caret) => format!("--where: {err}\n{caret}"),
            None => format!("--where: {err}"),
        })?),
        None => None,
    };
    let time = |flag: &str, text: &Option<String>| {
        text.as_deref().map(parse_time).transpose().map_err(|err| format!("{flag}: {err}"))
    };
    Ok(SpanFilter { predicate, since: time("--since", &args.since)?, until: time("--until", &args.until)? })
}

struct Exporter<'a> {
    predicate: Option<&'a Expr>,
    since: u64,
    until: u64,
    pending: Vec<Span>,
    line: Vec<u8>,
    spans: u64,
    lines: u64,
}

impl Exporter<'_> {
    fn keeps(&self, span: &Span) -> bool {
        match self.predicate {
            Some(expr) => eval_expr(expr, &mut |field| field_of_span(span, field)) == Some(true),
            None => true,
        }
    }

    fn offer(&mut self, span: Span, out: &mut dyn Write) -> CommandResult {
        if self.keeps(&span) {
            self.pending.push(span);
            if self.pending.len() >= LINE_SPANS_MAX {
                self.flush(out)?;
            }
        }
        Ok(0)
    }

    fn flush(&mut self, out: &mut dyn Write) -> CommandResult {
        if self.pending.is_empty() {
            return Ok(0);
        }
        self.line.clear();
        spanstore_ingest::otlp_json::encode_json_spans(&self.pending, &mut self.line);
        self.line.push(b'\n');
        out.write_all(&self.line)?;
        self.spans += self.pending.len() as u64;
        self.lines += 1;
        self.pending.clear();
        Ok(0)
    }

    /// Exports the rows of one segment that start in range and pass the predicate, a
    /// block at a time.
    fn segment(&mut self, segment: &Segment, out: &mut dyn Write) -> CommandResult {
        let rows = segment.row_count();
        let start_column = segment.column(&ColumnKind::Intrinsic(Intrinsic::Start));
        let blocks = rows.div_ceil(BLOCK_ROWS);
        for block in 0..blocks {
            let first = block * BLOCK_ROWS;
            let end = (first + BLOCK_ROWS).min(rows);
            let mut selected: Vec<u32> = Vec::with_capacity(end - first);
            match start_column {
                Some(column) => {
                    let meta = segment.column_meta(column)?;
                    if let Some(zone) = meta.blocks.get(block) {
                        if zone.present > 0 && (zone.max < self.since || zone.min >= self.until) {
                            continue;
                        }
                    }
                    let decoded = segment.read_block(column, block)?;
                    match &decoded.values {
                        BlockValues::Ints(_) => {
                            for local in 0..end - first {
                                let start = decoded.int(local).unwrap_or(0);
                                if start >= self.since && start < self.until {
                                    selected.push((first + local) as u32);
                                }
                            }
                        }
                        // Not the expected shape: test each row's start after reading it.
                        _ => selected.extend((first..end).map(|r| r as u32)),
                    }
                }
                None => selected.extend((first..end).map(|r| r as u32)),
            }
            if selected.is_empty() {
                continue;
            }
            for span in segment.spans(&selected)? {
                if span.start_unix_nano >= self.since && span.start_unix_nano < self.until {
                    self.offer(span, out)?;
                }
            }
        }
        Ok(0)
    }
}
