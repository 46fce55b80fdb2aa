//! Shared helpers of the integration tests: a seeded RNG, spans derived from (batch
//! number, index) so a reader can tell whether a batch came back whole and unique, checks
//! of snapshots against what was appended, a file system that loses power at a chosen
//! operation, and re-executing this test binary as a child process.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use spanstore_engine::fs::{Fs, LockGuard, MemFs, ReadFile, WriteFile};
use spanstore_engine::{
    AnyValue, Event, KeyValue, Link, Resource, Scope, Snapshot, Span, SpanBatch, SpanId, SpanKind, StatusCode, TraceId,
};

// ----- a tiny deterministic RNG -------------------------------------------------------------

/// xorshift64*, seeded through splitmix64 so that nearby seeds diverge at once.
#[derive(Clone, Debug)]
pub struct Rng(u64);

/// splitmix64's finalizer: a cheap, well-mixed hash of a `u64`.
pub fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

impl Rng {
    /// A generator for `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(mix(seed) | 1)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next_u64() % n
        }
    }

    /// Uniform in `low..=high`.
    pub fn range(&mut self, low: u64, high: u64) -> u64 {
        low + self.below(high - low + 1)
    }

    /// True with probability `percent`/100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// Seeds to run: `SPANSTORE_IT_SEED` alone when set (to replay a failure), else `count`
/// seeds starting at `first`.
pub fn seeds(first: u64, count: u64) -> Vec<u64> {
    match std::env::var("SPANSTORE_IT_SEED") {
        Ok(text) => vec![text.trim().parse().expect("SPANSTORE_IT_SEED is a number")],
        Err(_) => (first..first + count).collect(),
    }
}

/// Runs `run(seed)` for each seed; a failure names the seed and how to replay it.
pub fn for_each_seed(test: &str, seeds: &[u64], run: impl Fn(u64)) {
    for &seed in seeds {
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(seed)));
        if let Err(payload) = outcome {
            let message = payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_default();
            panic!(
                "{test} failed for seed {seed} (replay: SPANSTORE_IT_SEED={seed} cargo test -p \
                 spanstore-engine --test it {test}): {message}"
            );
        }
    }
}

// ----- spans derived from (batch, index) ----------------------------------------------------

const START_BASE_NS: u64 = 1_764_000_000_000_000_000;

/// The span id of span `index` of batch `batch` (never zero).
pub fn span_id(batch: u64, index: u32) -> SpanId {
    let mut id = [0u8; 8];
    id[..4].copy_from_slice(&(batch as u32).to_be_bytes());
    id[4..].copy_from_slice(&(index + 1).to_be_bytes());
    SpanId(id)
}

/// The trace id of span `index` of batch `batch`: four spans share a trace.
pub fn trace_id(batch: u64, index: u32) -> TraceId {
    let mut id = [0u8; 16];
    id[..8].copy_from_slice(&batch.to_be_bytes());
    id[8..12].copy_from_slice(&(index / 4).to_be_bytes());
    id[12..].copy_from_slice(b"sstr");
    TraceId(id)
}

fn pseudo_random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut rng = Rng::new(seed);
    (0..len).map(|_| rng.next_u64() as u8).collect()
}

/// Span `index` of a batch of `len` spans numbered `batch`. Every field depends on the
/// three numbers, and the span carries them as its first three attributes (`it.batch`,
/// `it.index`, `it.len`), so a reader can tell which span it holds and whether its batch
/// is whole. Attribute values cover every type, nesting, NaN and -0.0; spans have events,
/// links, several resources and scopes per batch, and incompressible bytes so records
/// of large batches span several log blocks even when compressed.
pub fn span(batch: u64, index: u32, len: u32) -> Span {
    let h = mix(batch.wrapping_mul(0x1_0000_0001) ^ u64::from(index));
    let start = START_BASE_NS + batch * 1_000_000 + u64::from(index) * 1_000;
    let float = match index % 5 {
        0 => f64::NAN,
        1 => -0.0,
        2 => f64::INFINITY,
        _ => (h % 1_000_000) as f64 / 7.0,
    };
    let mut attributes = vec![
        KeyValue::new("it.batch", batch as i64),
        KeyValue::new("it.index", i64::from(index)),
        KeyValue::new("it.len", i64::from(len)),
        KeyValue::new("http.route", format!("/r/{}", h % 17)),
        KeyValue::new("it.text", format!("ünïcödé-{}-{}", batch, index)),
        KeyValue::new("it.int", (h as i64) >> (h % 64)),
        KeyValue::new("it.float", float),
        KeyValue::new("it.bool", h & 1 == 1),
        KeyValue { key: "it.bytes".into(), value: AnyValue::Bytes(pseudo_random_bytes(h, (h % 97) as usize)) },
        KeyValue { key: "it.empty".into(), value: AnyValue::Empty },
    ];
    if index.is_multiple_of(3) {
        attributes.push(KeyValue {
            key: "it.array".into(),
            value: AnyValue::Array(vec![
                AnyValue::Str(format!("a{index}")),
                AnyValue::Int(-(i64::from(index))),
                AnyValue::Double(1.5),
                AnyValue::Bool(false),
                AnyValue::Array(vec![AnyValue::Int(batch as i64), AnyValue::Empty]),
                AnyValue::Map(vec![KeyValue::new("inner", "x")]),
            ]),
        });
    }
    if index % 4 == 1 {
        attributes.push(KeyValue {
            key: "it.map".into(),
            value: AnyValue::Map(vec![
                KeyValue::new("a", i64::from(index)),
                KeyValue { key: "b".into(), value: AnyValue::Map(vec![KeyValue::new("c", f64::NEG_INFINITY)]) },
                // Duplicate keys are preserved, in order.
                KeyValue::new("a", "again"),
            ]),
        });
    }
    let events = (0..index % 3)
        .map(|k| Event {
            time_unix_nano: start + u64::from(k) * 10,
            name: format!("event-{k}"),
            attributes: vec![
                KeyValue::new("event.k", i64::from(k)),
                KeyValue::new("event.msg", format!("b{batch} i{index}")),
            ],
            dropped_attributes_count: k,
        })
        .collect();
    let links = (0..index % 2)
        .map(|_| Link {
            trace_id: trace_id(batch.wrapping_add(1), index),
            span_id: span_id(batch.wrapping_add(1), index),
            trace_state: "vendor=link".into(),
            attributes: vec![KeyValue::new("link.kind", "follows")],
            dropped_attributes_count: 1,
            flags: 0x101,
        })
        .collect();
    let status_code = StatusCode::ALL[(h % 3) as usize];
    Span {
        trace_id: trace_id(batch, index),
        span_id: span_id(batch, index),
        parent_span_id: (!index.is_multiple_of(4)).then(|| span_id(batch, index - index % 4)),
        trace_state: if index.is_multiple_of(2) { String::new() } else { format!("k=v{batch}") },
        name: format!("op-{}", index % 7),
        kind: SpanKind::ALL[((batch + u64::from(index)) % 6) as usize],
        start_unix_nano: start,
        duration_ns: h % 1_000_000_000,
        status_code,
        status_message: if status_code == StatusCode::Error {
            format!("failed {batch}/{index}")
        } else {
            String::new()
        },
        flags: (h % 4) as u32,
        resource: Resource {
            attributes: vec![
                KeyValue::new("service.name", format!("svc-{}", batch % 5)),
                KeyValue::new("cloud.region", "eu-west-1"),
                KeyValue::new("res.group", i64::from(index / 8)),
            ],
            dropped_attributes_count: (batch % 2) as u32,
            schema_url: "https://opentelemetry.io/schemas/1.24.0".into(),
        },
        scope: Scope {
            name: "it.scope".into(),
            version: format!("1.{}", index / 16),
            attributes: vec![KeyValue::new("scope.flag", true)],
            dropped_attributes_count: 0,
            schema_url: String::new(),
        },
        attributes,
        dropped_attributes_count: index % 2,
        events,
        dropped_events_count: index % 3,
        links,
        dropped_links_count: 0,
    }
}

/// The spans of batch `batch` holding `len` spans.
pub fn spans(batch: u64, len: u32) -> Vec<Span> {
    (0..len).map(|index| span(batch, index, len)).collect()
}

/// Batch `batch` of `len` spans, built with `SpanBatch::from_spans`.
pub fn batch(batch: u64, len: u32) -> SpanBatch {
    SpanBatch::from_spans(&spans(batch, len))
}

fn int_attribute(span: &Span, key: &str) -> Option<i64> {
    span.attributes.iter().find(|kv| kv.key == key).and_then(|kv| match kv.value {
        AnyValue::Int(value) => Some(value),
        _ => None,
    })
}

/// The (batch, index, len) a span says it is.
pub fn identify(span: &Span) -> Option<(u64, u32, u32)> {
    Some((
        u64::try_from(int_attribute(span, "it.batch")?).ok()?,
        u32::try_from(int_attribute(span, "it.index")?).ok()?,
        u32::try_from(int_attribute(span, "it.len")?).ok()?,
    ))
}

/// Names of the fields in which `got` and `want` differ.
pub fn differing_fields(got: &Span, want: &Span) -> Vec<&'static str> {
    let mut fields = Vec::new();
    let mut check = |differs: bool, name: &'static str| {
        if differs {
            fields.push(name);
        }
    };
    check(got.trace_id != want.trace_id, "trace_id");
    check(got.span_id != want.span_id, "span_id");
    check(got.parent_span_id != want.parent_span_id, "parent_span_id");
    check(got.trace_state != want.trace_state, "trace_state");
    check(got.name != want.name, "name");
    check(got.kind != want.kind, "kind");
    check(got.start_unix_nano != want.start_unix_nano, "start_unix_nano");
    check(got.duration_ns != want.duration_ns, "duration_ns");
    check(got.status_code != want.status_code, "status_code");
    check(got.status_message != want.status_message, "status_message");
    check(got.flags != want.flags, "flags");
    check(got.resource != want.resource, "resource");
    check(got.scope != want.scope, "scope");
    check(got.attributes != want.attributes, "attributes");
    check(got.dropped_attributes_count != want.dropped_attributes_count, "dropped_attributes_count");
    check(got.events != want.events, "events");
    check(got.dropped_events_count != want.dropped_events_count, "dropped_events_count");
    check(got.links != want.links, "links");
    check(got.dropped_links_count != want.dropped_links_count, "dropped_links_count");
    fields
}

/// Asserts two span lists are equal, naming the first differing span and its fields.
pub fn assert_spans_equal(got: &[Span], want: &[Span]) {
    assert_eq!(got.len(), want.len(), "span count");
    for (row, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(g == w, "span {row} differs in {:?}:\n got {g:?}\nwant {w:?}", differing_fields(g, w));
    }
}

/// Checks, from their ids and identifying attributes only, that a stored batch holds
/// spans 0 to len-1 of one appended batch, in order; returns (batch, len). Much cheaper
/// than [`check_batch`], for views read many times over.
pub fn check_batch_ids(stored: &SpanBatch) -> Result<(u64, u32), String> {
    let attribute = |row: usize, key: &str| {
        stored
            .span_attributes(row)
            .get(key)
            .and_then(|value| value.as_int())
            .ok_or_else(|| format!("span {row} has no integer {key}"))
    };
    if stored.is_empty() {
        return Err("an empty batch was stored".into());
    }
    let batch = attribute(0, "it.batch")? as u64;
    let len = attribute(0, "it.len")? as u32;
    if stored.len() != len as usize {
        return Err(format!("batch {batch} holds {} spans, was appended with {len}", stored.len()));
    }
    for row in 0..stored.len() {
        let index = row as u32;
        let ids = (
            attribute(row, "it.batch")? as u64,
            attribute(row, "it.index")? as u32,
            attribute(row, "it.len")? as u32,
            stored.span_id(row),
            stored.trace_id(row),
        );
        if ids != (batch, index, len, span_id(batch, index), trace_id(batch, index)) {
            return Err(format!("batch {batch} row {row} holds {ids:?}"));
        }
    }
    Ok((batch, len))
}

/// Checks that a stored batch is one whole appended batch, every field of every span
/// equal; returns (batch, len).
pub fn check_batch(stored: &SpanBatch) -> Result<(u64, u32), String> {
    let spans = stored.to_spans();
    let first = spans.first().ok_or("an empty batch was stored")?;
    let (batch, _, len) = identify(first).ok_or_else(|| format!("span {first:?} is not a test span"))?;
    if spans.len() != len as usize {
        return Err(format!("batch {batch} holds {} spans, was appended with {len}", spans.len()));
    }
    for (index, got) in spans.iter().enumerate() {
        let want = span(batch, index as u32, len);
        if *got != want {
            return Err(format!(
                "batch {batch} span {index} differs in {:?}: got {got:?}",
                differing_fields(got, &want)
            ));
        }
    }
    Ok((batch, len))
}

/// One batch as a snapshot holds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Seen {
    /// Sequence number of its log record; 0 for a batch sealed into a segment, where
    /// sequence numbers are no longer kept.
    pub sequence: u64,
    /// Batch number (from its spans).
    pub batch: u64,
    /// Spans in it.
    pub len: u32,
}

/// Reads every batch of a snapshot, checking each is whole and that sequences increase.
/// Batches sealed into segments (which keep neither batch boundaries nor sequence
/// numbers) come first, by batch number, with sequence 0; each must still be whole.
pub fn read_snapshot(snapshot: &Snapshot) -> Result<Vec<Seen>, String> {
    read_snapshot_checked(snapshot, true)
}

/// [`read_snapshot`] checking spans by their ids only (see [`check_batch_ids`]).
pub fn read_snapshot_ids(snapshot: &Snapshot) -> Result<Vec<Seen>, String> {
    read_snapshot_checked(snapshot, false)
}

fn read_snapshot_checked(snapshot: &Snapshot, every_field: bool) -> Result<Vec<Seen>, String> {
    let memtable = read_memtable_batches(snapshot, every_field)?;
    let memtable_span_count: u64 = memtable.iter().map(|s| u64::from(s.len)).sum();
    let total = snapshot.span_count();
    if total < memtable_span_count {
        return Err(format!("snapshot says {total} spans, its batches hold {memtable_span_count}"));
    }
    let mut seen = Vec::with_capacity(memtable.len());
    if total > memtable_span_count {
        let spans = snapshot.spans().map_err(|e| format!("reading spans: {e}"))?;
        if spans.len() as u64 != total {
            return Err(format!("snapshot says {total} spans, spans() returned {}", spans.len()));
        }
        let sealed = (total - memtable_span_count) as usize;
        let mut by_batch: BTreeMap<u64, Vec<&Span>> = BTreeMap::new();
        for span in &spans[..sealed] {
            let (batch, _, _) = identify(span).ok_or_else(|| format!("span {span:?} is not a test span"))?;
            by_batch.entry(batch).or_default().push(span);
        }
        for (batch, mut rows) in by_batch {
            let (_, _, len) = identify(rows[0]).unwrap_or_default();
            rows.sort_by_key(|s| identify(s).map(|(_, index, _)| index));
            if rows.len() != len as usize {
                return Err(format!("sealed batch {batch} holds {} spans, was appended with {len}", rows.len()));
            }
            for (index, got) in rows.into_iter().enumerate() {
                if identify(got) != Some((batch, index as u32, len)) {
                    return Err(format!("sealed batch {batch} lacks span {index}"));
                }
                if !every_field {
                    continue;
                }
                let want = span(batch, index as u32, len);
                if *got != want {
                    return Err(format!(
                        "sealed batch {batch} span {index} differs in {:?}: got {got:?}",
                        differing_fields(got, &want)
                    ));
                }
            }
            seen.push(Seen { sequence: 0, batch, len });
        }
    }
    seen.extend(memtable);
    Ok(seen)
}

/// Reads the memtable batches of a snapshot, each checked whole, in sequence order.
fn read_memtable_batches(snapshot: &Snapshot, every_field: bool) -> Result<Vec<Seen>, String> {
    let mut seen: Vec<Seen> = Vec::with_capacity(snapshot.batch_count());
    for item in snapshot.batches() {
        let item = item.map_err(|e| format!("reading a batch: {e}"))?;
        let (batch, len) = if every_field { check_batch(&item.batch)? } else { check_batch_ids(&item.batch)? };
        if let Some(previous) = seen.last() {
            if previous.sequence >= item.sequence {
                return Err(format!("sequence {} after {}", item.sequence, previous.sequence));
            }
        }
        seen.push(Seen { sequence: item.sequence, batch, len });
    }
    Ok(seen)
}

/// Checks that `seen` holds every batch of `must` (batch number to span count) exactly
/// once and whole, and nothing but batches of `must` or `may`.
pub fn check_exactly_once(seen: &[Seen], must: &BTreeMap<u64, u32>, may: &BTreeSet<u64>) -> Result<(), String> {
    let mut found = BTreeMap::new();
    for s in seen {
        if found.insert(s.batch, s.len).is_some() {
            return Err(format!("batch {} appears twice", s.batch));
        }
        match must.get(&s.batch) {
            Some(&len) if len != s.len => {
                return Err(format!("batch {} holds {} spans, {len} were appended", s.batch, s.len))
            }
            Some(_) => {}
            None if may.contains(&s.batch) => {}
            None => return Err(format!("batch {} was never appended", s.batch)),
        }
    }
    let missing: Vec<u64> = must.keys().filter(|b| !found.contains_key(b)).copied().collect();
    if !missing.is_empty() {
        return Err(format!(
            "{} acknowledged batches missing, first {:?}",
            missing.len(),
            &missing[..missing.len().min(10)]
        ));
    }
    Ok(())
}

/// Batch numbers in the order a snapshot holds them.
pub fn batch_numbers(seen: &[Seen]) -> Vec<u64> {
    seen.iter().map(|s| s.batch).collect()
}

/// (batch number, span count) in the order a snapshot holds them: what two views must
/// agree on even when one of them finds the batches sealed into segments.
pub fn batches_of(seen: &[Seen]) -> Vec<(u64, u32)> {
    seen.iter().map(|s| (s.batch, s.len)).collect()
}

// ----- files ---------------------------------------------------------------------------------

/// Every regular file under `dir` (not recursing), with its bytes.
pub fn dir_contents(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut files = BTreeMap::new();
    for entry in std::fs::read_dir(dir).expect("list directory") {
        let entry = entry.expect("directory entry");
        if entry.file_type().expect("file type").is_file() {
            let name = entry.file_name().into_string().expect("utf-8 name");
            files.insert(name, std::fs::read(entry.path()).expect("read file"));
        }
    }
    files
}

/// Every file of a `MemFs` directory, with its bytes.
pub fn mem_dir_contents(fs: &MemFs, dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fs.list(dir)
        .expect("list directory")
        .into_iter()
        .map(|name| {
            let bytes = fs.contents(&dir.join(&name)).expect("read file");
            (name, bytes)
        })
        .collect()
}

/// Log file paths of a directory listing, oldest first.
pub fn log_files(names: impl IntoIterator<Item = String>, dir: &Path) -> Vec<PathBuf> {
    let mut logs: Vec<(u64, PathBuf)> = names
        .into_iter()
        .filter_map(|name| spanstore_engine::log::parse_log_file_name(&name).map(|n| (n, dir.join(name))))
        .collect();
    logs.sort();
    logs.into_iter().map(|(_, path)| path).collect()
}

// ----- a file system that loses power at a chosen operation ----------------------------------

struct CrashState {
    /// Mutating operations done so far.
    operations: u64,
    /// The operation at which power is lost (it is not performed).
    crash_at: u64,
    /// What the disk held when power was lost.
    image: Option<MemFs>,
    rng: Rng,
}

struct CrashShared {
    fs: MemFs,
    state: Mutex<CrashState>,
}

impl CrashShared {
    /// Performs one mutating operation, or loses power instead when its turn has come.
    /// The state lock is held across the operation so that the image is taken between
    /// whole operations, even with several threads writing.
    fn step<T>(&self, operation: impl FnOnce() -> io::Result<T>) -> io::Result<T> {
        let mut state = self.state.lock().expect("crash state");
        if state.image.is_some() {
            return Err(io::Error::other("simulated power loss"));
        }
        state.operations += 1;
        if state.operations == state.crash_at {
            let mut rng = state.rng.clone();
            state.image = Some(self.fs.crash(|unsynced| torn_length(&mut rng, unsynced)));
            return Err(io::Error::other("simulated power loss"));
        }
        operation()
    }
}

/// How many of `unsynced` bytes a crash keeps: none, all, or a random prefix.
pub fn torn_length(rng: &mut Rng, unsynced: usize) -> usize {
    match rng.below(4) {
        0 => 0,
        1 => unsynced,
        _ => rng.below(unsynced as u64 + 1) as usize,
    }
}

/// A `MemFs` that loses power just before its `crash_at`-th mutating operation (create,
/// append, sync, rename, remove, truncate, directory sync): from then on every mutating
/// operation fails, and [`CrashFs::image`] is what a reboot would find.
#[derive(Clone)]
pub struct CrashFs {
    shared: Arc<CrashShared>,
}

impl CrashFs {
    /// Wraps `fs`; power is lost at mutating operation `crash_at` (1-based).
    pub fn new(fs: MemFs, crash_at: u64, seed: u64) -> CrashFs {
        CrashFs {
            shared: Arc::new(CrashShared {
                fs,
                state: Mutex::new(CrashState { operations: 0, crash_at, image: None, rng: Rng::new(seed) }),
            }),
        }
    }

    /// True once power was lost.
    pub fn crashed(&self) -> bool {
        self.shared.state.lock().expect("crash state").image.is_some()
    }

    /// The disk after the power loss; when it has not happened, power is lost now.
    pub fn image(&self) -> MemFs {
        let mut state = self.shared.state.lock().expect("crash state");
        if state.image.is_none() {
            let mut rng = state.rng.clone();
            state.image = Some(self.shared.fs.crash(|unsynced| torn_length(&mut rng, unsynced)));
        }
        state.image.clone().expect("image")
    }
}

struct CrashWriteFile {
    shared: Arc<CrashShared>,
    file: Arc<dyn WriteFile>,
}

impl WriteFile for CrashWriteFile {
    fn append(&self, buf: &[u8]) -> io::Result<()> {
        self.shared.step(|| self.file.append(buf))
    }
    fn sync(&self) -> io::Result<()> {
        self.shared.step(|| self.file.sync())
    }
}

impl Fs for CrashFs {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        self.shared.step(|| self.shared.fs.create_dir_all(dir))
    }
    fn dir_exists(&self, dir: &Path) -> bool {
        self.shared.fs.dir_exists(dir)
    }
    fn create(&self, path: &Path) -> io::Result<Arc<dyn WriteFile>> {
        let file = self.shared.step(|| self.shared.fs.create(path))?;
        Ok(Arc::new(CrashWriteFile { shared: self.shared.clone(), file }))
    }
    fn open(&self, path: &Path) -> io::Result<Arc<dyn ReadFile>> {
        self.shared.fs.open(path)
    }
    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        self.shared.fs.list(dir)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.shared.step(|| self.shared.fs.rename(from, to))
    }
    fn remove(&self, path: &Path) -> io::Result<()> {
        self.shared.step(|| self.shared.fs.remove(path))
    }
    fn truncate(&self, path: &Path, len: u64) -> io::Result<()> {
        self.shared.step(|| self.shared.fs.truncate(path, len))
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        self.shared.step(|| self.shared.fs.sync_dir(dir))
    }
    fn try_lock(&self, path: &Path) -> io::Result<Option<Box<dyn LockGuard>>> {
        self.shared.fs.try_lock(path)
    }
    fn map_sealed(&self, path: &Path) -> io::Result<Arc<dyn spanstore_engine::mmap::FileBytes>> {
        self.shared.fs.map_sealed(path)
    }
}

// ----- child processes -----------------------------------------------------------------------

/// A command that runs one test of this binary, `name`, in a child process.
pub fn child_test(name: &str) -> std::process::Command {
    let exe = std::env::current_exe().expect("current test executable");
    let mut command = std::process::Command::new(exe);
    command.args(["--exact", name, "--nocapture", "--test-threads", "1"]);
    command
}
