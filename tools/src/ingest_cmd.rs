//! `spanstore ingest FILE...`: reads OTLP/JSON, OTLP protobuf or Zipkin JSON files (or
//! stdin), gzip-compressed or not, decodes them on every core and appends the spans.
//!
//! The pipeline: this thread reads each input in order and cuts it into units of whole
//! payloads (about [`UNIT_BYTES`] of JSON lines, of length-delimited protobuf requests,
//! or one whole-file payload) that go through a bounded channel to worker threads. A
//! worker decodes every payload of a unit, then appends what it accepted with
//! `Store::append`; several workers appending at once share fsyncs (group commit), and
//! each compresses its own log records. Memory stays bounded whatever the input size:
//! at most the channel's units plus one unit per worker are alive, and gzip inflates
//! as a stream.
//!
//! **Invariant:** a payload (one line, one request, one whole file) is appended whole
//! or rejected whole: one invalid span rejects its line, named `file:line: reason`.
//! Payloads of fewer than [`SMALL_BATCH_SPANS`] spans are merged into one append (each
//! still whole, since an append is), so that small lines do not cost an fsync each.
//! Under `--strict`, units commit in input order and nothing after the first rejected
//! payload is appended.
//!
//! Protobuf files come in two shapes, told apart by their first byte: one
//! `ExportTraceServiceRequest` (the body of an OTLP/HTTP request; its first byte is
//! `0x0a`, field 1 `resource_spans`), or a stream of requests each preceded by its
//! length as a 4-byte big-endian integer — the OpenTelemetry Collector file exporter's
//! `format: proto` — whose first byte is 0 for any request under 16 MiB.

use std::io::{BufRead, BufReader, IsTerminal, Read, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use spanstore_engine::{Options, Span, SpanBatch, Store};
use spanstore_ingest::detect::{self, Format};

use crate::CommandResult;

/// Bytes of input per unit of work (whole payloads; a unit holds at least one).
const UNIT_BYTES: usize = 4 << 20;
/// The longest line of an OTLP/JSON-lines file; a longer one is rejected (and skipped
/// without being held in memory).
const LINE_BYTES_MAX: u64 = 256 << 20;
/// The largest request of a length-delimited protobuf stream.
const FRAME_BYTES_MAX: u32 = 256 << 20;
/// The largest whole-file payload (an OTLP/JSON object, a Zipkin array, one protobuf
/// request): it has to be held in memory to be decoded.
const WHOLE_BYTES_MAX: u64 = 1 << 30;
/// Payloads with fewer spans than this are merged with their neighbours into one append.
const SMALL_BATCH_SPANS: usize = 256;
/// Spans of merged small payloads per append.
const MERGED_BATCH_SPANS: usize = 4096;

/// The formats `--format` names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum FormatArg {
    /// One OTLP/JSON ExportTraceServiceRequest per line (`.jsonl`).
    OtlpJsonl,
    /// One OTLP/JSON ExportTraceServiceRequest for the whole file.
    OtlpJson,
    /// OTLP protobuf: one request, or length-delimited requests (4-byte big-endian
    /// lengths, as the Collector's file exporter writes).
    OtlpProtobuf,
    /// A JSON array of Zipkin v2 spans.
    Zipkin,
}

impl FormatArg {
    fn format(self) -> Format {
        match self {
            FormatArg::OtlpJsonl => Format::OtlpJsonLines,
            FormatArg::OtlpJson => Format::OtlpJson,
            FormatArg::OtlpProtobuf => Format::OtlpProtobuf,
            FormatArg::Zipkin => Format::ZipkinJson,
        }
    }
}

/// Arguments of `spanstore ingest`.
#[derive(clap::Args, Debug)]
pub struct IngestArgs {
    /// Files to read (`-` for stdin): OTLP/JSON (one request per line, or one for the
    /// whole file), OTLP protobuf (one request, or 4-byte big-endian length-delimited
    /// requests), Zipkin v2 JSON; any of them gzip-compressed.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// The format of every input, instead of detecting it from the content and name.
    #[arg(long, value_enum)]
    pub format: Option<FormatArg>,
    /// Stop at the first rejected line: nothing after it is ingested.
    #[arg(long)]
    pub strict: bool,
    /// Decoding threads (default: two per core, so that decoding continues while
    /// other threads wait for an fsync).
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
}

/// Where a payload came from, for messages.
#[derive(Clone, Copy, Debug)]
enum Place {
    /// The whole input.
    Whole,
    /// A 1-based line.
    Line(u64),
    /// A 1-based request of a length-delimited stream, and its byte offset.
    Frame(u64, u64),
}

/// How a unit's bytes are cut into payloads.
#[derive(Clone, Debug)]
enum UnitKind {
    /// OTLP/JSON requests, one per line: the first line's number, and where each line
    /// ends in the bytes (found by the reader's search for newlines, so workers need not
    /// scan again).
    JsonLines { first_line: u64, ends: Vec<usize> },
    /// Length-delimited protobuf requests; `first` is the first request's number and
    /// byte offset.
    Frames { first_frame: u64, first_offset: u64 },
    /// One payload.
    Whole(Format),
    /// The reader found the input bad here (unreadable, a line too long, a truncated
    /// request); reported in input order like a decoder's rejection.
    Rejected { place: Place, reason: String },
}

struct Unit {
    /// Position in the order of all units, for `--strict`.
    sequence: u64,
    input: Arc<str>,
    kind: UnitKind,
    bytes: Vec<u8>,
}

/// Counters shared by the reader, the workers and the progress bar.
#[derive(Default)]
struct Counters {
    spans: AtomicU64,
    payloads: AtomicU64,
    rejected_payloads: AtomicU64,
    rejected_spans: AtomicU64,
    raw_bytes: AtomicU64,
}

/// Prints rejections above the progress bar (or straight to stderr without one).
struct Reporter {
    bar: ProgressBar,
}

impl Reporter {
    fn say(&self, message: &str) {
        if self.bar.is_hidden() {
            eprintln!("{message}");
        } else {
            self.bar.println(message);
        }
    }
}

/// What the workers share.
struct Shared {
    store: Store,
    strict: bool,
    counters: Counters,
    reporter: Reporter,
    /// Set by `--strict` at the first rejection, and by a failed append.
    stop: AtomicBool,
    /// Under `--strict`, the sequence of the unit whose turn it is to commit.
    turn: Mutex<u64>,
    turn_changed: Condvar,
    /// The first error appending (I/O, a closed store): it ends the run.
    fatal: Mutex<Option<String>>,
    /// Unit buffers the workers are done with, for the reader to fill again.
    spare: Mutex<Vec<Vec<u8>>>,
}

impl Shared {
    /// An empty unit buffer: a spare one when there is one. Reusing the buffers (at most
    /// as many as units in flight) spares the kernel faulting in and zeroing 4 MiB of
    /// fresh pages per unit, which `perf` showed as about 5 % of an OTLP/JSON ingest.
    fn unit_buffer(&self) -> Vec<u8> {
        let spare = self.spare.lock().unwrap_or_else(|e| e.into_inner()).pop();
        spare.unwrap_or_else(|| Vec::with_capacity(UNIT_BYTES + (64 << 10)))
    }

    /// Hands a unit's buffer back once its payloads are decoded and committed.
    fn recycle(&self, mut bytes: Vec<u8>, limit: usize) {
        bytes.clear();
        let mut spare = self.spare.lock().unwrap_or_else(|e| e.into_inner());
        // Only buffers of the usual size: a whole-file unit may be far larger.
        if spare.len() < limit && bytes.capacity() <= 2 * UNIT_BYTES {
            spare.push(bytes);
        }
    }

    fn reject(&self, input: &str, place: Place, reason: &str, spans: u64) {
        self.counters.rejected_payloads.fetch_add(1, Ordering::Relaxed);
        self.counters.rejected_spans.fetch_add(spans, Ordering::Relaxed);
        let message = match place {
            Place::Whole => format!("{input}: {reason}"),
            Place::Line(line) => format!("{input}:{line}: {reason}"),
            Place::Frame(index, offset) => format!("{input}: request {index} at byte {offset}: {reason}"),
        };
        self.reporter.say(&message);
        if self.strict {
            self.stop.store(true, Ordering::Release);
        }
    }

    fn fail(&self, message: String) {
        let mut fatal = self.fatal.lock().unwrap_or_else(|e| e.into_inner());
        if fatal.is_none() {
            *fatal = Some(message);
        }
        self.stop.store(true, Ordering::Release);
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }
}

/// Runs `spanstore ingest`.
pub fn run(data: &std::path::Path, args: &IngestArgs, out: &mut impl Write) -> CommandResult {
    let started = Instant::now();
    let cpu_started = cpu_seconds();
    let store = Store::open(data, Options::default())?;
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
    let threads = args.threads.unwrap_or(cores * 2).clamp(1, 256);
    let total_bytes: Option<u64> = args
        .files
        .iter()
        .map(|path| if is_stdin(path) { None } else { std::fs::metadata(path).ok().map(|m| m.len()) })
        .sum();
    let bar = progress_bar(total_bytes);
    let shared = Shared {
        store,
        strict: args.strict,
        counters: Counters::default(),
        reporter: Reporter { bar: bar.clone() },
        stop: AtomicBool::new(false),
        turn: Mutex::new(0),
        turn_changed: Condvar::new(),
        fatal: Mutex::new(None),
        spare: Mutex::new(Vec::new()),
    };
    let (sender, receiver) = sync_channel::<Unit>(threads * 2);
    let receiver = Mutex::new(receiver);
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| worker(&shared, &receiver, threads * 2 + 2));
        }
        let mut reader = Reader { shared: &shared, halted: false, sender, sequence: 0, bar: &bar, started };
        for path in &args.files {
            if shared.stopped() || reader.halted {
                break;
            }
            reader.input(path, args.format.map(FormatArg::format));
        }
        // Dropping the sender ends the workers once they have drained the channel.
        drop(reader);
    });
    bar.finish_and_clear();
    let ingest_seconds = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds().zip(cpu_started).map(|(end, start)| end - start);
    let Shared { store, counters, fatal, .. } = shared;
    let fatal = fatal.into_inner().unwrap_or_else(|e| e.into_inner());
    let spans = counters.spans.load(Ordering::Relaxed);
    let bytes = counters.raw_bytes.load(Ordering::Relaxed);
    let rejected = counters.rejected_payloads.load(Ordering::Relaxed);
    let rejected_spans = counters.rejected_spans.load(Ordering::Relaxed);
    let payloads = counters.payloads.load(Ordering::Relaxed);
    // Close seals the memtable into segments, so nothing stays only in the log.
    let closing = Instant::now();
    store.close()?;
    let close_seconds = closing.elapsed().as_secs_f64();
    if let Some(message) = fatal {
        return Err(message.into());
    }
    let rate = |n: f64| if ingest_seconds > 0.0 { n / ingest_seconds } else { 0.0 };
    writeln!(
        out,
        "ingested {spans} spans from {payloads} payloads, {bytes} bytes in {ingest_seconds:.3} s: {:.0} spans/s, {:.1} MB/s",
        rate(spans as f64),
        rate(bytes as f64) / 1e6
    )?;
    if let Some(cpu) = cpu.filter(|&c| c > 0.0) {
        writeln!(out, "cpu {cpu:.3} s: {:.0} spans per cpu-second", spans as f64 / cpu)?;
    }
    writeln!(out, "rejected {rejected} payloads ({rejected_spans} spans)")?;
    writeln!(out, "sealed and closed in {close_seconds:.3} s")?;
    Ok(if rejected > 0 { 1 } else { 0 })
}

/// User plus system CPU time of this process so far (Linux; `None` elsewhere), so that
/// the summary can say how much of the machine the ingest used.
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    let fields: Vec<&str> = rest.split(' ').collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    // The kernel reports in USER_HZ, 100 on every Linux architecture spanstore targets.
    Some(ticks / 100.0)
}

fn is_stdin(path: &std::path::Path) -> bool {
    path.as_os_str() == "-"
}

fn progress_bar(total_bytes: Option<u64>) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let (bar, template) = match total_bytes {
        Some(total) => (
            ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr()),
            "{prefix} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} {bytes_per_sec} {msg} ETA {eta}",
        ),
        None => (
            ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr()),
            "{prefix} {spinner} [{elapsed_precise}] {bytes} {bytes_per_sec} {msg}",
        ),
    };
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style);
    }
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

/// Counts the bytes read from the file itself (before any gunzip), for the progress bar.
struct Counting<R> {
    inner: R,
    count: Arc<AtomicU64>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

struct Reader<'a> {
    shared: &'a Shared,
    /// Set once the reader queued a rejection under `--strict`: nothing more is read.
    halted: bool,
    sender: std::sync::mpsc::SyncSender<Unit>,
    sequence: u64,
    bar: &'a ProgressBar,
    started: Instant,
}

/// How reading an input ended early.
enum Stop {
    /// The input is bad from here on; the message says why (it is reported).
    Bad(Place, String),
    /// The workers are gone or `--strict` stopped the run.
    Stopped,
}

impl Reader<'_> {
    fn input(&mut self, path: &std::path::Path, forced: Option<Format>) {
        let name: Arc<str> = if is_stdin(path) { "<stdin>".into() } else { path.display().to_string().into() };
        self.bar.set_prefix(name.to_string());
        let count = Arc::new(AtomicU64::new(0));
        let raw: Box<dyn Read + Send> = if is_stdin(path) {
            Box::new(std::io::stdin())
        } else {
            match std::fs::File::open(path) {
                Ok(file) => Box::new(file),
                Err(err) => return self.reject(&name, Place::Whole, format!("cannot open: {err}")),
            }
        };
        let before = self.shared.counters.raw_bytes.load(Ordering::Relaxed);
        let result = self.read_input(&name, path, forced, Counting { inner: raw, count: count.clone() });
        // Whatever happened, count what was read.
        self.shared.counters.raw_bytes.store(before + count.load(Ordering::Relaxed), Ordering::Relaxed);
        self.bar.set_position(before + count.load(Ordering::Relaxed));
        match result {
            Ok(()) | Err(Stop::Stopped) => {}
            Err(Stop::Bad(place, reason)) => self.reject(&name, place, reason),
        }
    }

    /// Queues a rejection found while reading, so that it is reported in input order.
    fn reject(&mut self, name: &Arc<str>, place: Place, reason: String) {
        let _ = self.send(name, UnitKind::Rejected { place, reason }, Vec::new());
        if self.shared.strict {
            self.halted = true;
        }
    }

    fn read_input(
        &mut self,
        name: &Arc<str>,
        path: &std::path::Path,
        forced: Option<Format>,
        raw: Counting<Box<dyn Read + Send>>,
    ) -> Result<(), Stop> {
        let count = raw.count.clone();
        let mut raw = BufReader::with_capacity(1 << 20, raw);
        let head = raw.fill_buf().map_err(|e| Stop::Bad(Place::Whole, format!("cannot read: {e}")))?;
        if head.is_empty() {
            return Ok(());
        }
        let mut reader: Box<dyn BufRead + Send> = if detect::is_gzip(head) {
            Box::new(BufReader::with_capacity(1 << 20, flate2::bufread::MultiGzDecoder::new(raw)))
        } else {
            Box::new(raw)
        };
        let head = reader.fill_buf().map_err(|e| Stop::Bad(Place::Whole, format!("cannot read: {e}")))?;
        let file_name = if is_stdin(path) { None } else { path.file_name().and_then(|n| n.to_str()) };
        let detected = forced
            .or_else(|| detect::detect(head, file_name))
            .or_else(|| looks_framed(head).then_some(Format::OtlpProtobuf));
        let mut format = match detected {
            Some(format) => format,
            None if head.is_empty() => return Ok(()),
            None => {
                return Err(Stop::Bad(
                    Place::Whole,
                    "cannot tell the format (expected OTLP/JSON, OTLP protobuf or Zipkin JSON; try --format)".into(),
                ))
            }
        };
        let framed = format == Format::OtlpProtobuf && head.first().is_some_and(|&b| b != 0x0a);
        if format == Format::OtlpJson && forced.is_none() {
            // Detection saw one object, or a first line longer than the head: read the
            // first line to tell a JSON-lines file of long lines from one object.
            let mut first = Vec::new();
            (&mut reader)
                .take(LINE_BYTES_MAX)
                .read_until(b'\n', &mut first)
                .map_err(|e| Stop::Bad(Place::Line(1), format!("cannot read: {e}")))?;
            let more = reader
                .fill_buf()
                .map_err(|e| Stop::Bad(Place::Whole, format!("cannot read: {e}")))?
                .iter()
                .any(|b| !b.is_ascii_whitespace());
            let text = first.trim_ascii();
            if more && text.starts_with(b"{") && text.ends_with(b"}") {
                format = Format::OtlpJsonLines;
            }
            reader = Box::new(std::io::Cursor::new(first).chain(reader));
        }
        let progress = |this: &Self| this.progress(&count);
        match format {
            Format::OtlpJsonLines => self.json_lines(name, &mut reader, progress),
            Format::OtlpProtobuf if framed => self.frames(name, &mut reader, progress),
            whole => {
                let mut bytes = Vec::new();
                let read = (&mut reader)
                    .take(WHOLE_BYTES_MAX + 1)
                    .read_to_end(&mut bytes)
                    .map_err(|e| Stop::Bad(Place::Whole, format!("cannot read: {e}")))?;
                if read as u64 > WHOLE_BYTES_MAX {
                    return Err(Stop::Bad(
                        Place::Whole,
                        format!(
                            "a whole-file payload larger than {WHOLE_BYTES_MAX} bytes (write one request per line, \
                             or length-delimited protobuf)"
                        ),
                    ));
                }
                self.send(name, UnitKind::Whole(whole), bytes)?;
                progress(self);
                Ok(())
            }
        }
    }

    fn progress(&self, count: &AtomicU64) {
        let bytes = self.shared.counters.raw_bytes.load(Ordering::Relaxed) + count.load(Ordering::Relaxed);
        self.bar.set_position(bytes);
        if !self.bar.is_hidden() {
            let spans = self.shared.counters.spans.load(Ordering::Relaxed);
            let seconds = self.started.elapsed().as_secs_f64().max(1e-9);
            self.bar.set_message(format!("{spans} spans, {:.0} spans/s", spans as f64 / seconds));
        }
    }

    /// Sends the whole payloads read before a problem, then hands the problem back.
    fn flush_then(&mut self, name: &Arc<str>, kind: UnitKind, unit: Vec<u8>, problem: Stop) -> Stop {
        if unit.is_empty() {
            return problem;
        }
        match self.send(name, kind, unit) {
            Ok(()) => problem,
            Err(stopped) => stopped,
        }
    }

    fn send(&mut self, input: &Arc<str>, kind: UnitKind, bytes: Vec<u8>) -> Result<(), Stop> {
        if self.shared.stopped() || self.halted {
            return Err(Stop::Stopped);
        }
        let unit = Unit { sequence: self.sequence, input: input.clone(), kind, bytes };
        self.sequence += 1;
        self.sender.send(unit).map_err(|_| Stop::Stopped)
    }

    fn json_lines(
        &mut self,
        name: &Arc<str>,
        reader: &mut Box<dyn BufRead + Send>,
        progress: impl Fn(&Self),
    ) -> Result<(), Stop> {
        let mut line_number = 0u64;
        let mut unit = self.shared.unit_buffer();
        let mut unit_first_line = 1u64;
        let mut ends: Vec<usize> = Vec::new();
        loop {
            let start = unit.len();
            let read = match (&mut *reader).take(LINE_BYTES_MAX).read_until(b'\n', &mut unit) {
                Ok(read) => read,
                Err(e) => {
                    // The whole lines before the damage are still ingested.
                    unit.truncate(start);
                    let bad = Stop::Bad(Place::Line(line_number + 1), format!("cannot read: {e}"));
                    let kind = UnitKind::JsonLines { first_line: unit_first_line, ends };
                    return Err(self.flush_then(name, kind, unit, bad));
                }
            };
            if read == 0 {
                break;
            }
            line_number += 1;
            if read as u64 >= LINE_BYTES_MAX && unit.last() != Some(&b'\n') {
                // Too long: drop what was read and skip to the end of the line.
                unit.truncate(start);
                skip_line(reader).map_err(|e| Stop::Bad(Place::Line(line_number), format!("cannot read: {e}")))?;
                // The unit so far ends before this line: send it first, so that line
                // numbers stay right and the rejection comes in order.
                if !unit.is_empty() {
                    let bytes = std::mem::replace(&mut unit, self.shared.unit_buffer());
                    let kind = UnitKind::JsonLines { first_line: unit_first_line, ends: std::mem::take(&mut ends) };
                    self.send(name, kind, bytes)?;
                }
                self.reject(name, Place::Line(line_number), format!("longer than {LINE_BYTES_MAX} bytes"));
                if self.halted {
                    return Err(Stop::Stopped);
                }
                unit_first_line = line_number + 1;
                continue;
            }
            ends.push(unit.len());
            if unit.len() >= UNIT_BYTES {
                let bytes = std::mem::replace(&mut unit, self.shared.unit_buffer());
                let kind = UnitKind::JsonLines { first_line: unit_first_line, ends: std::mem::take(&mut ends) };
                self.send(name, kind, bytes)?;
                unit_first_line = line_number + 1;
                progress(self);
            }
        }
        if !unit.is_empty() {
            self.send(name, UnitKind::JsonLines { first_line: unit_first_line, ends }, unit)?;
        }
        progress(self);
        Ok(())
    }

    fn frames(
        &mut self,
        name: &Arc<str>,
        reader: &mut Box<dyn BufRead + Send>,
        progress: impl Fn(&Self),
    ) -> Result<(), Stop> {
        let mut frame_number = 0u64;
        let mut offset = 0u64;
        let mut unit = self.shared.unit_buffer();
        let (mut unit_first_frame, mut unit_first_offset) = (1u64, 0u64);
        loop {
            let mut prefix = [0u8; 4];
            let kind = UnitKind::Frames { first_frame: unit_first_frame, first_offset: unit_first_offset };
            let got = match read_full(reader, &mut prefix) {
                Ok(got) => got,
                Err(e) => {
                    let bad = Stop::Bad(Place::Frame(frame_number + 1, offset), format!("cannot read: {e}"));
                    return Err(self.flush_then(name, kind, unit, bad));
                }
            };
            if got == 0 {
                break;
            }
            frame_number += 1;
            let place = Place::Frame(frame_number, offset);
            if got < 4 {
                let bad = Stop::Bad(place, format!("truncated length prefix ({got} of 4 bytes)"));
                return Err(self.flush_then(name, kind, unit, bad));
            }
            let len = u32::from_be_bytes(prefix);
            if len > FRAME_BYTES_MAX {
                let bad = Stop::Bad(
                    place,
                    format!(
                        "length prefix {len} is larger than {FRAME_BYTES_MAX} bytes (not a length-delimited stream?)"
                    ),
                );
                return Err(self.flush_then(name, kind, unit, bad));
            }
            let start = unit.len();
            unit.extend_from_slice(&prefix);
            let body = (&mut **reader).take(u64::from(len)).read_to_end(&mut unit);
            if !matches!(body, Ok(n) if n == len as usize) {
                unit.truncate(start);
                let reason = match body {
                    Ok(n) => format!("truncated: {n} of {len} bytes"),
                    Err(e) => format!("cannot read: {e}"),
                };
                return Err(self.flush_then(name, kind, unit, Stop::Bad(place, reason)));
            }
            offset += 4 + u64::from(len);
            if unit.len() >= UNIT_BYTES {
                let bytes = std::mem::replace(&mut unit, self.shared.unit_buffer());
                self.send(
                    name,
                    UnitKind::Frames { first_frame: unit_first_frame, first_offset: unit_first_offset },
                    bytes,
                )?;
                unit_first_frame = frame_number + 1;
                unit_first_offset = offset;
                progress(self);
            }
        }
        if !unit.is_empty() {
            self.send(name, UnitKind::Frames { first_frame: unit_first_frame, first_offset: unit_first_offset }, unit)?;
        }
        progress(self);
        Ok(())
    }
}

/// True when `head` starts like the Collector file exporter's length-delimited
/// protobuf: a 4-byte big-endian length below 16 MiB, then a request (field 1), or an
/// empty request.
fn looks_framed(head: &[u8]) -> bool {
    matches!((head.get(..4), head.get(4)), (Some([0, 0, 0, 0]), _) | (Some([0, _, _, _]), Some(0x0a)))
}

/// Reads until `buf` is full or the input ends; returns how many bytes were read.
fn read_full(reader: &mut dyn BufRead, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        let Some(rest) = buf.get_mut(filled..) else { break };
        match reader.read(rest) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Skips the rest of a line without keeping it.
fn skip_line(reader: &mut dyn BufRead) -> std::io::Result<()> {
    loop {
        let buf = reader.fill_buf()?;
        if buf.is_empty() {
            return Ok(());
        }
        match buf.iter().position(|&b| b == b'\n') {
            Some(i) => {
                reader.consume(i + 1);
                return Ok(());
            }
            None => {
                let n = buf.len();
                reader.consume(n);
            }
        }
    }
}

/// What decoding one payload gave.
enum Outcome {
    Accepted(Box<SpanBatch>),
    Rejected { place: Place, reason: String, spans: u64 },
}

/// Decodes and commits units until the reader is done; `spare_limit` bounds the
/// buffers kept for reuse (the units that can be in flight at once).
fn worker(shared: &Shared, receiver: &Mutex<Receiver<Unit>>, spare_limit: usize) {
    loop {
        let unit = {
            let receiver = receiver.lock().unwrap_or_else(|e| e.into_inner());
            match receiver.recv() {
                Ok(unit) => unit,
                Err(_) => return,
            }
        };
        let outcomes = if shared.stopped() { Vec::new() } else { decode_unit(&unit) };
        if shared.strict {
            commit_in_turn(shared, &unit, outcomes);
        } else {
            commit(shared, &unit, outcomes);
        }
        shared.recycle(unit.bytes, spare_limit);
    }
}

fn decode_unit(unit: &Unit) -> Vec<Outcome> {
    if let UnitKind::Rejected { place, reason } = &unit.kind {
        return vec![Outcome::Rejected { place: *place, reason: reason.clone(), spans: 0 }];
    }
    let mut outcomes = Vec::new();
    let mut decode_one = |place: Place, payload: &[u8], format: Format| {
        let outcome = match detect::decode(format, payload) {
            Ok(decoded) if decoded.rejected_spans == 0 => Outcome::Accepted(Box::new(decoded.batch)),
            Ok(decoded) => Outcome::Rejected {
                place,
                reason: decoded.first_rejection.unwrap_or_else(|| "an invalid span".into()),
                spans: decoded.rejected_spans + decoded.batch.len() as u64,
            },
            Err(err) => Outcome::Rejected { place, reason: err.to_string(), spans: 0 },
        };
        outcomes.push(outcome);
    };
    match &unit.kind {
        UnitKind::JsonLines { first_line, ends } => {
            let mut start = 0;
            for (index, &end) in ends.iter().enumerate() {
                let line = unit.bytes.get(start..end).unwrap_or_default();
                start = end;
                let line = line.strip_suffix(b"\n").unwrap_or(line);
                let line = line.strip_suffix(b"\r").unwrap_or(line);
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                decode_one(Place::Line(first_line + index as u64), line, Format::OtlpJson);
            }
        }
        UnitKind::Frames { first_frame, first_offset } => {
            let mut rest = unit.bytes.as_slice();
            let (mut frame, mut offset) = (*first_frame, *first_offset);
            // The reader checked every prefix and length, so this only walks them.
            while let (Some(prefix), Some(tail)) = (rest.get(..4), rest.get(4..)) {
                let Ok(prefix) = <[u8; 4]>::try_from(prefix) else { break };
                let len = u32::from_be_bytes(prefix) as usize;
                let Some(body) = tail.get(..len) else { break };
                decode_one(Place::Frame(frame, offset), body, Format::OtlpProtobuf);
                rest = tail.get(len..).unwrap_or_default();
                frame += 1;
                offset += 4 + len as u64;
            }
        }
        UnitKind::Whole(format) => decode_one(Place::Whole, &unit.bytes, *format),
        UnitKind::Rejected { .. } => {}
    }
    outcomes
}

/// Under `--strict`: waits for the unit's turn so that units commit in input order.
fn commit_in_turn(shared: &Shared, unit: &Unit, outcomes: Vec<Outcome>) {
    let mut turn = shared.turn.lock().unwrap_or_else(|e| e.into_inner());
    while *turn != unit.sequence {
        turn = shared.turn_changed.wait(turn).unwrap_or_else(|e| e.into_inner());
    }
    if !shared.stopped() {
        commit(shared, unit, outcomes);
    }
    *turn += 1;
    shared.turn_changed.notify_all();
}

/// Appends the accepted payloads of a unit and reports the rejected ones.
fn commit(shared: &Shared, unit: &Unit, outcomes: Vec<Outcome>) {
    let mut small: Vec<Span> = Vec::new();
    let mut small_payloads = 0u64;
    let append = |batch: SpanBatch, payloads: u64| {
        let spans = batch.len() as u64;
        match shared.store.append(batch) {
            Ok(_) => {
                shared.counters.spans.fetch_add(spans, Ordering::Relaxed);
                shared.counters.payloads.fetch_add(payloads, Ordering::Relaxed);
            }
            Err(spanstore_engine::EngineError::InvalidBatch(reason)) => {
                shared.reject(&unit.input, Place::Whole, &format!("a payload too large to store: {reason}"), spans)
            }
            Err(err) => shared.fail(format!("{}: {err}", unit.input)),
        }
    };
    for outcome in outcomes {
        if shared.stopped() {
            break;
        }
        match outcome {
            Outcome::Accepted(batch) if batch.len() < SMALL_BATCH_SPANS => {
                small.extend(batch.to_spans());
                small_payloads += 1;
                if small.len() >= MERGED_BATCH_SPANS {
                    append(SpanBatch::from_spans(&small), small_payloads);
                    small.clear();
                    small_payloads = 0;
                }
            }
            Outcome::Accepted(batch) => append(*batch, 1),
            Outcome::Rejected { place, reason, spans } => {
                if shared.strict && !small.is_empty() {
                    // Everything before the first rejection is ingested.
                    append(SpanBatch::from_spans(&small), small_payloads);
                    small.clear();
                    small_payloads = 0;
                }
                shared.reject(&unit.input, place, &reason, spans);
            }
        }
    }
    if !small.is_empty() && !shared.stopped() {
        append(SpanBatch::from_spans(&small), small_payloads);
    }
}
