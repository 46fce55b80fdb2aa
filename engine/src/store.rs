//! `Store`: opens a data directory (recovering the log and the segments), appends
//! batches, seals the memtable into segments, compacts them, applies retention, hands
//! out snapshots, and closes cleanly.
//!
//! Directory layout: `LOCK` (held by the one writer), `MANIFEST-<n>` (the live files),
//! `log-<n>.sslog` (the span log), `seg-<n>.sseg` (sealed segments). Read-only opens
//! never create, lock, truncate or remove anything.
//!
//! **Invariants:** a segment file is durable (fsynced, renamed, directory fsynced)
//! before a manifest names it; a log file is removed only after a durable manifest puts
//! it below the log floor; a segment file is removed only after a durable manifest
//! stops naming it. Every span is in exactly one of: a live segment, or a log record
//! above the manifest's sealed sequence.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use parking_lot::{Condvar, Mutex, RwLock};

use crate::batch::SpanBatch;
use crate::error::{EngineError, Result};
use crate::fs::{read_all, Fs, LockGuard, RealFs};
use crate::log::writer::{LogLocation, LogWriter, SyncPolicy, WriterStats, Written};
use crate::log::{self, Damage};
use crate::manifest::{self, Manifest, SegmentEntry};
use crate::memtable::Memtable;
use crate::model::{Span, TraceId};
use crate::segment::reader::Segment;
use crate::segment::writer::{build_segment, merge_segments};
use crate::segment::{parse_segment_file_name, segment_file_name};
use crate::snapshot::{SegmentHandle, Snapshot};

/// Name of the writer's lock file.
pub const LOCK_FILE_NAME: &str = "LOCK";

/// How a store is opened.
#[derive(Clone)]
pub struct Options {
    /// When appends become durable.
    pub sync: SyncPolicy,
    /// A log file is closed and a new one started past this size.
    pub log_file_size_bytes_target: u64,
    /// Memory the memtable keeps resident before reading older batches back from the log.
    pub memtable_size_bytes_max: usize,
    /// Compress log records with zstd (at `log::LOG_ZSTD_LEVEL`).
    pub compress_log: bool,
    /// Seal the memtable into a segment once it holds this many spans.
    pub seal_span_count: usize,
    /// ... or this many bytes of batches.
    pub seal_size_bytes: usize,
    /// ... or when its oldest batch is this old.
    pub seal_age: Duration,
    /// Seal everything on `close`, so nothing stays only in the log.
    pub seal_on_close: bool,
    /// Run sealing, compaction and retention on a background thread.
    pub background_maintenance: bool,
    /// Compaction merges consecutive segments smaller than this into segments of up to
    /// this many rows.
    pub compaction_rows_target: usize,
    /// Drop whole sealed segments whose newest span started longer ago than this.
    /// `None` (the default) keeps everything forever.
    pub retention: Option<Duration>,
    /// The file system (the real one, or `MemFs` in tests).
    pub fs: Arc<dyn Fs>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            sync: SyncPolicy::Always,
            log_file_size_bytes_target: 64 << 20,
            memtable_size_bytes_max: 256 << 20,
            compress_log: true,
            seal_span_count: 1_000_000,
            seal_size_bytes: 256 << 20,
            seal_age: Duration::from_secs(300),
            seal_on_close: true,
            background_maintenance: true,
            compaction_rows_target: 4_000_000,
            retention: None,
            fs: Arc::new(RealFs),
        }
    }
}

impl std::fmt::Debug for Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Options")
            .field("sync", &self.sync)
            .field("log_file_size_bytes_target", &self.log_file_size_bytes_target)
            .field("memtable_size_bytes_max", &self.memtable_size_bytes_max)
            .field("compress_log", &self.compress_log)
            .field("seal_span_count", &self.seal_span_count)
            .field("seal_size_bytes", &self.seal_size_bytes)
            .field("seal_age", &self.seal_age)
            .field("seal_on_close", &self.seal_on_close)
            .field("background_maintenance", &self.background_maintenance)
            .field("compaction_rows_target", &self.compaction_rows_target)
            .field("retention", &self.retention)
            .finish_non_exhaustive()
    }
}

/// What opening a store found and did.
#[derive(Debug, Default, Clone)]
pub struct RecoveryReport {
    /// Records replayed from the log.
    pub records_replayed: u64,
    /// Spans replayed from the log.
    pub spans_replayed: u64,
    /// Log files read.
    pub log_files: u64,
    /// Segments opened.
    pub segments: u64,
    /// Damage in the middle of the log: each costs the batches it touches; segments
    /// that could not be opened.
    pub damage: Vec<Damage>,
    /// Torn tails: bytes after the last whole record of the newest log file, left by a
    /// crash during a write (cut off by a writer; ignored by a read-only open).
    pub torn_tails: Vec<Damage>,
    /// Manifest versions that did not read back whole (an older one was used, or the
    /// manifest was rebuilt from the segment footers and the log).
    pub manifest_damage: Vec<String>,
    /// Temporary files, orphan segments and retired logs left by a crash and removed.
    pub removed_files: Vec<PathBuf>,
}

impl RecoveryReport {
    /// True when nothing was damaged (a torn tail is not damage: it is what a crash
    /// during a write leaves).
    pub fn is_clean(&self) -> bool {
        self.damage.is_empty() && self.manifest_damage.is_empty()
    }
}

/// What `append` did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AppendReceipt {
    /// Sequence number of the batch's log record; `None` for an empty batch, which
    /// writes nothing.
    pub sequence: Option<u64>,
    /// Spans appended.
    pub span_count: usize,
}

/// What one maintenance step did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MaintenanceReport {
    /// Segments written by sealing.
    pub sealed: Vec<SegmentEntry>,
    /// Segments merged away by compaction, and what replaced them.
    pub compacted: Vec<(Vec<u64>, SegmentEntry)>,
    /// Segments dropped by retention.
    pub dropped: Vec<SegmentEntry>,
}

struct Background {
    stop: Arc<(Mutex<bool>, Condvar)>,
    threads: Vec<JoinHandle<()>>,
}

type Segments = Arc<Vec<Arc<SegmentHandle>>>;

struct Inner {
    dir: PathBuf,
    options: Options,
    memtable: Arc<Memtable>,
    writer: Option<Arc<LogWriter>>,
    manifest: Mutex<Manifest>,
    /// The live segments; swapped together with trimming the memtable.
    segments: RwLock<Segments>,
    /// Serializes sealing, compaction and retention (each rewrites the manifest).
    maintenance: Mutex<()>,
    /// Wakes the maintenance thread.
    wake: Arc<(Mutex<bool>, Condvar)>,
    report: RecoveryReport,
    lock: Mutex<Option<Box<dyn LockGuard>>>,
    background: Mutex<Option<Background>>,
    closed: AtomicBool,
}

/// A span store over one data directory. `Send + Sync`: share it with an `Arc`.
pub struct Store {
    inner: Arc<Inner>,
}

const _: () = {
    const fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Store>();
    assert_send_sync::<Snapshot>();
};

fn open_segment(fs: &dyn Fs, dir: &Path, entry: &SegmentEntry) -> Result<SegmentHandle> {
    let path = dir.join(segment_file_name(entry.file_number));
    let bytes = fs.map_sealed(&path).map_err(|e| EngineError::io(&path, "open segment", e))?;
    let segment = Segment::open(&path, bytes)?;
    if segment.file_number() != entry.file_number {
        return Err(EngineError::corrupt(
            &path,
            8,
            format!("header names segment {}, the manifest says {}", segment.file_number(), entry.file_number),
        ));
    }
    if segment.row_count() as u64 != entry.span_count {
        return Err(EngineError::corrupt(
            &path,
            0,
            format!("segment holds {} rows, the manifest says {}", segment.row_count(), entry.span_count),
        ));
    }
    Ok(SegmentHandle { entry: entry.clone(), segment })
}

/// Rebuilds the segment list from the segment files' footers when no manifest reads
/// back whole (or the one that does is stale): every segment that opens, minus those
/// whose sequence range another covers (the inputs of a compaction whose output exists).
fn rebuild_segments(fs: &dyn Fs, dir: &Path, names: &[String], report: &mut RecoveryReport) -> Vec<SegmentEntry> {
    let mut found: Vec<SegmentEntry> = Vec::new();
    for name in names {
        let Some(number) = parse_segment_file_name(name) else { continue };
        let path = dir.join(name);
        match fs
            .map_sealed(&path)
            .map_err(|e| EngineError::io(&path, "open segment", e))
            .and_then(|b| Segment::open(&path, b))
        {
            Ok(segment) => {
                let d = segment.directory();
                found.push(SegmentEntry {
                    file_number: number,
                    span_count: d.row_count,
                    min_start_unix_nano: d.min_start_unix_nano,
                    max_start_unix_nano: d.max_start_unix_nano,
                    min_sequence: d.min_sequence,
                    max_sequence: d.max_sequence,
                });
            }
            Err(err) => report.manifest_damage.push(format!("rebuilding the manifest: {err}")),
        }
    }
    let covered = |s: &SegmentEntry, all: &[SegmentEntry]| {
        all.iter().any(|o| {
            o.file_number != s.file_number
                && o.min_sequence <= s.min_sequence
                && o.max_sequence >= s.max_sequence
                && (o.max_sequence - o.min_sequence > s.max_sequence - s.min_sequence || o.file_number > s.file_number)
        })
    };
    let kept: Vec<SegmentEntry> = found.iter().filter(|s| !covered(s, &found)).cloned().collect();
    let mut kept = kept;
    kept.sort_by_key(|s| s.min_sequence);
    kept
}

impl Store {
    /// Opens (creating if needed) the store in `dir` as its one writer: takes the lock,
    /// recovers the log (cutting a torn tail), opens the segments, removes what a crash
    /// left behind, and starts a new log file.
    pub fn open(dir: impl AsRef<Path>, options: Options) -> Result<Store> {
        Self::open_inner(dir.as_ref(), options, false)
    }

    /// Opens the store in `dir` read-only: no lock, and no file is created, changed or
    /// removed. Sees the sealed segments and every whole log record present at open;
    /// any number of read-only opens may run beside the writer.
    pub fn open_read_only(dir: impl AsRef<Path>, options: Options) -> Result<Store> {
        // The writer may remove a segment file (compaction, retention) between our
        // reading the manifest and opening the file; a newer manifest then exists.
        let mut attempt = 0;
        loop {
            match Self::open_inner(dir.as_ref(), options.clone(), true) {
                Err(EngineError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound && attempt < 5 => {
                    attempt += 1;
                    std::thread::sleep(Duration::from_millis(10 << attempt));
                }
                other => return other,
            }
        }
    }

    fn open_inner(dir: &Path, options: Options, read_only: bool) -> Result<Store> {
        if options.log_file_size_bytes_target < 4096 {
            return Err(EngineError::InvalidOption {
                name: "log_file_size_bytes_target",
                reason: "must be at least 4096".into(),
            });
        }
        if options.seal_span_count == 0 || options.compaction_rows_target == 0 {
            return Err(EngineError::InvalidOption {
                name: "seal_span_count",
                reason: "seal_span_count and compaction_rows_target must be positive".into(),
            });
        }
        let fs = options.fs.clone();
        let mut lock = None;
        if read_only {
            if !fs.dir_exists(dir) {
                return Err(EngineError::NotAStore { path: dir.to_path_buf() });
            }
        } else {
            fs.create_dir_all(dir).map_err(|e| EngineError::io(dir, "create directory", e))?;
            let lock_path = dir.join(LOCK_FILE_NAME);
            lock = Some(
                fs.try_lock(&lock_path)
                    .map_err(|e| EngineError::io(&lock_path, "lock", e))?
                    .ok_or(EngineError::Locked { path: lock_path })?,
            );
        }
        let mut report = RecoveryReport::default();
        let mut names = fs.list(dir).map_err(|e| EngineError::io(dir, "list directory", e))?;
        if !read_only {
            names.retain(|name| {
                if !name.ends_with(".tmp") {
                    return true;
                }
                let path = dir.join(name);
                if fs.remove(&path).is_ok() {
                    report.removed_files.push(path);
                }
                false
            });
        }
        let loaded = manifest::load(fs.as_ref(), dir, &names);
        if read_only {
            // A manifest listed a moment ago and gone now was replaced by the writer:
            // start over (the caller retries) rather than call it damage.
            let vanished = loaded.damaged.iter().find_map(|e| match e {
                EngineError::Io { path, source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
                    Some(path.clone())
                }
                _ => None,
            });
            if let Some(path) = vanished {
                return Err(EngineError::io(path, "read manifest", std::io::Error::from(std::io::ErrorKind::NotFound)));
            }
        }
        report.manifest_damage = loaded.damaged.iter().map(ToString::to_string).collect();
        let mut logs: Vec<(u64, PathBuf)> =
            names.iter().filter_map(|name| log::parse_log_file_name(name).map(|n| (n, dir.join(name)))).collect();
        logs.sort();
        let has_segments = names.iter().any(|n| parse_segment_file_name(n).is_some());
        let newest_manifest_number = loaded.files.last().map(|(n, _)| *n).unwrap_or(0);
        // An older version standing in for a damaged newer one describes the store only if
        // it names exactly the segment files present: otherwise the newer one merged,
        // sealed or dropped segments (and may have retired the logs behind them), and
        // using the older one would lose them; only the segment footers tell.
        let matches_segment_files = |manifest: &Manifest| {
            let present: std::collections::BTreeSet<u64> =
                names.iter().filter_map(|n| parse_segment_file_name(n)).collect();
            manifest.segments.len() == present.len()
                && manifest.segments.iter().all(|s| present.contains(&s.file_number))
        };
        let (mut manifest, manifest_is_new) = match loaded.manifest {
            Some(manifest) if loaded.damaged.is_empty() || matches_segment_files(&manifest) => {
                (manifest, !loaded.damaged.is_empty())
            }
            None if logs.is_empty() && loaded.files.is_empty() && !has_segments => {
                if read_only {
                    return Err(EngineError::NotAStore { path: dir.to_path_buf() });
                }
                (Manifest::default(), true)
            }
            _ => {
                // No manifest reads back whole (or the one that does is stale): rebuild it
                // from the segment footers and the log files present.
                let segments = rebuild_segments(fs.as_ref(), dir, &names, &mut report);
                let sealed_sequence = segments.iter().map(|s| s.max_sequence).max().unwrap_or(0);
                let manifest = Manifest {
                    log_floor: logs.first().map(|(n, _)| *n).unwrap_or(0),
                    sealed_sequence,
                    segments,
                    ..Manifest::default()
                };
                (manifest, true)
            }
        };
        let mut handles = Vec::with_capacity(manifest.segments.len());
        for entry in &manifest.segments {
            match open_segment(fs.as_ref(), dir, entry) {
                Ok(handle) => handles.push(Arc::new(handle)),
                Err(err)
                    if read_only
                        && matches!(&err, EngineError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound) =>
                {
                    return Err(err);
                }
                // A segment from a newer format is not damage: this build cannot read it,
                // and opening without it would answer queries without its spans.
                Err(err @ EngineError::UnsupportedVersion { .. }) => return Err(err),
                Err(err) => report.damage.push(Damage {
                    path: dir.join(segment_file_name(entry.file_number)),
                    offset: 0,
                    reason: err.to_string(),
                }),
            }
        }
        report.segments = handles.len() as u64;
        let memtable = Arc::new(Memtable::new(fs.clone(), options.memtable_size_bytes_max));
        let mut last_sequence = manifest.sealed_sequence;
        let live_logs: Vec<&(u64, PathBuf)> = logs.iter().filter(|(n, _)| *n >= manifest.log_floor).collect();
        for (index, (number, path)) in live_logs.iter().enumerate() {
            let newest = index + 1 == live_logs.len();
            replay_file(fs.as_ref(), &memtable, *number, path, newest, read_only, &mut last_sequence, &mut report)?;
        }
        let max_file = logs
            .iter()
            .map(|(n, _)| *n)
            .chain(names.iter().filter_map(|n| parse_segment_file_name(n)))
            .max()
            .unwrap_or(0);
        // The writer's new log file must be at or above the log floor (which a manifest
        // may put past its next file number), or a reopen would skip what it holds.
        let next_file_number = manifest.next_file_number.max(max_file.saturating_add(1)).max(manifest.log_floor).max(1);
        let mut writer = None;
        if !read_only {
            // Numbers at u64::MAX leave none to hand out; wrapping would reuse them.
            let exhausted = |what: &str| EngineError::corrupt(dir, 0, format!("{what} exhausted (u64::MAX reached)"));
            if next_file_number == u64::MAX {
                return Err(exhausted("file numbers"));
            }
            let next_sequence = last_sequence.checked_add(1).ok_or_else(|| exhausted("log sequence numbers"))?;
            // What a crash left: retired logs and segments no manifest names.
            for (number, path) in &logs {
                if *number < manifest.log_floor && fs.remove(path).is_ok() {
                    report.removed_files.push(path.clone());
                }
            }
            for name in &names {
                if let Some(number) = parse_segment_file_name(name) {
                    if !manifest.segments.iter().any(|s| s.file_number == number) {
                        let path = dir.join(name);
                        if fs.remove(&path).is_ok() {
                            report.removed_files.push(path);
                        }
                    }
                }
            }
            if manifest_is_new {
                manifest.number = newest_manifest_number + 1;
                manifest.next_file_number = next_file_number;
                manifest::store(fs.as_ref(), dir, &manifest, &loaded.files)?;
            }
            let log_writer = LogWriter::create(
                fs.clone(),
                dir,
                next_file_number,
                next_sequence,
                options.sync,
                options.log_file_size_bytes_target,
                memtable.clone(),
            )?;
            writer = Some(Arc::new(log_writer));
        }
        let inner = Arc::new(Inner {
            dir: dir.to_path_buf(),
            options,
            memtable,
            writer,
            manifest: Mutex::new(manifest),
            segments: RwLock::new(Arc::new(handles)),
            maintenance: Mutex::new(()),
            wake: Arc::new((Mutex::new(false), Condvar::new())),
            report,
            lock: Mutex::new(lock),
            background: Mutex::new(None),
            closed: AtomicBool::new(false),
        });
        if let Some(writer) = &inner.writer {
            let stop = Arc::new((Mutex::new(false), Condvar::new()));
            let mut threads = Vec::new();
            if let SyncPolicy::Interval(interval) = inner.options.sync {
                let writer = writer.clone();
                let stop = stop.clone();
                threads.push(spawn("spanstore-log-sync", move || {
                    run_every(&stop, interval, || {
                        if let Err(err) = writer.sync() {
                            tracing::error!("background log sync: {err}");
                        }
                    })
                })?);
            }
            if inner.options.background_maintenance {
                let weak = Arc::downgrade(&inner);
                let wake = inner.wake.clone();
                threads.push(spawn("spanstore-maintenance", move || maintenance_loop(&weak, &wake))?);
            }
            *inner.background.lock() = Some(Background { stop, threads });
        }
        for damage in &inner.report.damage {
            tracing::warn!("damage: {damage}");
        }
        for damage in &inner.report.manifest_damage {
            tracing::warn!("manifest damage: {damage}");
        }
        Ok(Store { inner })
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// True for a read-only open.
    pub fn is_read_only(&self) -> bool {
        self.inner.writer.is_none()
    }

    /// What recovery at open found.
    pub fn recovery_report(&self) -> &RecoveryReport {
        &self.inner.report
    }

    /// Appends a batch: stored whole or not at all. Under `SyncPolicy::Always` it is
    /// durable when this returns; it is visible to every snapshot taken after.
    pub fn append(&self, batch: SpanBatch) -> Result<AppendReceipt> {
        let writer = self.inner.writer.as_ref().ok_or(EngineError::ReadOnly)?;
        if self.inner.closed.load(Ordering::Acquire) {
            return Err(EngineError::Closed { reason: "close was called".into() });
        }
        batch.check_limits().map_err(EngineError::InvalidBatch)?;
        let span_count = batch.len();
        if span_count == 0 {
            return Ok(AppendReceipt { sequence: None, span_count });
        }
        let payload = log::encode_record(0, &batch, self.inner.options.compress_log);
        let sequence = writer.append(Arc::new(batch), payload)?;
        if self.inner.should_seal() {
            let (flag, condvar) = &*self.inner.wake;
            *flag.lock() = true;
            condvar.notify_one();
        }
        Ok(AppendReceipt { sequence: Some(sequence), span_count })
    }

    /// Makes every append that returned durable, whatever the sync policy.
    pub fn flush(&self) -> Result<()> {
        match &self.inner.writer {
            Some(writer) => writer.sync(),
            None => Ok(()),
        }
    }

    /// A consistent, immutable view of everything appended so far.
    pub fn snapshot(&self) -> Snapshot {
        self.inner.snapshot()
    }

    /// Every span of one trace, by start time.
    pub fn trace(&self, trace_id: TraceId) -> Result<Vec<Span>> {
        self.snapshot().trace(trace_id)
    }

    /// Log writer counters (groups, syncs, records, bytes); zero for a read-only store.
    pub fn writer_stats(&self) -> WriterStats {
        self.inner.writer.as_ref().map(|w| w.stats()).unwrap_or_default()
    }

    /// Bytes of batches the memtable holds in memory.
    pub fn memtable_resident_bytes(&self) -> usize {
        self.inner.memtable.resident_bytes()
    }

    /// The manifest in force.
    pub fn manifest(&self) -> Manifest {
        self.inner.manifest.lock().clone()
    }

    /// Seals everything in the memtable into a segment now.
    pub fn seal_now(&self) -> Result<Option<SegmentEntry>> {
        self.inner.seal()
    }

    /// Merges small segments now (what `spanstore compact` runs); returns what merged.
    pub fn compact_now(&self) -> Result<MaintenanceReport> {
        let mut report = MaintenanceReport::default();
        if let Some(entry) = self.inner.seal()? {
            report.sealed.push(entry);
        }
        while let Some(merge) = self.inner.compact_once()? {
            report.compacted.push(merge);
        }
        Ok(report)
    }

    /// Drops segments older than the retention limit as of `now`.
    pub fn apply_retention(&self, now: SystemTime) -> Result<Vec<SegmentEntry>> {
        self.inner.apply_retention(now)
    }

    /// Flushes, seals (unless `seal_on_close` is off), stops accepting appends and
    /// background work, and releases the directory lock.
    pub fn close(self) -> Result<()> {
        self.inner.shutdown()
    }
}

fn spawn(name: &str, body: impl FnOnce() + Send + 'static) -> Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name(name.into())
        .spawn(body)
        .map_err(|e| EngineError::io(PathBuf::new(), "start a background thread", e))
}

fn run_every(stop: &(Mutex<bool>, Condvar), interval: Duration, mut work: impl FnMut()) {
    let (stopped, wake) = stop;
    let mut guard = stopped.lock();
    while !*guard {
        wake.wait_for(&mut guard, interval);
        if *guard {
            break;
        }
        drop(guard);
        work();
        guard = stopped.lock();
    }
}

/// Seals when the memtable is full or old, then compacts, then applies retention;
/// sleeps until woken by an append or a second passes.
fn maintenance_loop(inner: &std::sync::Weak<Inner>, wake: &(Mutex<bool>, Condvar)) {
    loop {
        {
            let (flag, condvar) = wake;
            let mut woken = flag.lock();
            if !*woken {
                condvar.wait_for(&mut woken, Duration::from_secs(1));
            }
            *woken = false;
        }
        let Some(inner) = inner.upgrade() else { return };
        if inner.closed.load(Ordering::Acquire) {
            return;
        }
        let work = || -> Result<()> {
            if inner.should_seal() {
                inner.seal()?;
            }
            // One merge per round, so sealing is never starved by compaction.
            inner.compact_once()?;
            if inner.options.retention.is_some() {
                inner.apply_retention(SystemTime::now())?;
            }
            Ok(())
        };
        if let Err(err) = work() {
            tracing::error!("background maintenance: {err}");
            // Back off so a persistent failure (a full disk) does not spin.
            std::thread::sleep(Duration::from_secs(1));
        }
    }
}

impl Inner {
    fn snapshot(&self) -> Snapshot {
        // The segment list and the memtable view are taken under the same lock that
        // sealing holds while it swaps one and trims the other.
        let segments = self.segments.read();
        Snapshot::new(segments.clone(), self.memtable.view())
    }

    fn should_seal(&self) -> bool {
        let spans = self.memtable.span_count() as usize;
        spans >= self.options.seal_span_count
            || self.memtable.total_bytes() >= self.options.seal_size_bytes
            || (spans > 0 && self.memtable.oldest_age().is_some_and(|age| age >= self.options.seal_age))
    }

    /// Writes a segment file durably under its final name: temporary file, fsync,
    /// rename, fsync of the directory.
    fn write_segment_file(&self, number: u64, bytes: &[u8]) -> Result<()> {
        let fs = self.options.fs.as_ref();
        let path = self.dir.join(segment_file_name(number));
        let temp = self.dir.join(format!("{}.tmp", segment_file_name(number)));
        let file = fs.create(&temp).map_err(|e| EngineError::io(&temp, "create segment", e))?;
        file.append(bytes).map_err(|e| EngineError::io(&temp, "write segment", e))?;
        file.sync().map_err(|e| EngineError::io(&temp, "fsync segment", e))?;
        fs.rename(&temp, &path).map_err(|e| EngineError::io(&path, "rename segment", e))?;
        fs.sync_dir(&self.dir).map_err(|e| EngineError::io(&self.dir, "fsync directory", e))
    }

    fn store_manifest(&self, manifest: &mut Manifest, writer: &LogWriter) -> Result<()> {
        let fs = self.options.fs.as_ref();
        manifest.number += 1;
        manifest.next_file_number = writer.next_file_number();
        let names = fs.list(&self.dir).map_err(|e| EngineError::io(&self.dir, "list directory", e))?;
        let existing: Vec<(u64, PathBuf)> =
            names.iter().filter_map(|n| manifest::parse_manifest_file_name(n).map(|v| (v, self.dir.join(n)))).collect();
        manifest::store(fs, &self.dir, manifest, &existing)
    }

    fn seal(&self) -> Result<Option<SegmentEntry>> {
        let Some(writer) = self.writer.as_ref() else { return Ok(None) };
        let _maintenance = self.maintenance.lock();
        let view = self.memtable.view();
        let (Some(first), Some(last)) = (view.entries().first(), view.entries().last()) else {
            return Ok(None);
        };
        let (first_sequence, last_sequence) = (first.sequence, last.sequence);
        let mut batches = Vec::with_capacity(view.entries().len());
        for entry in view.entries() {
            batches.push(view.batch(entry)?);
        }
        let refs: Vec<&SpanBatch> = batches.iter().map(|b| b.as_ref()).collect();
        let number = writer.allocate_file_number()?;
        let bytes = build_segment(&refs, number, Some((first_sequence, last_sequence)));
        drop(refs);
        drop(batches);
        self.write_segment_file(number, &bytes)?;
        drop(bytes);
        let handle = open_segment(
            self.options.fs.as_ref(),
            &self.dir,
            &SegmentEntry {
                file_number: number,
                span_count: view.entries().iter().map(|e| u64::from(e.span_count)).sum(),
                min_start_unix_nano: view.entries().iter().map(|e| e.min_start_unix_nano).min().unwrap_or(0),
                max_start_unix_nano: view.entries().iter().map(|e| e.max_start_unix_nano).max().unwrap_or(0),
                min_sequence: first_sequence,
                max_sequence: last_sequence,
            },
        )?;
        let entry = handle.entry.clone();
        // Logs below the file of the first unsealed record retire; if every record is
        // sealed, everything below the active file does.
        // When every record is sealed, start a new log file first so that the whole of
        // the old one retires now rather than after it fills up; a record appended
        // meanwhile shows up in `file_after` and keeps its file live.
        let active = match self.memtable.file_after(last_sequence) {
            Some(_) => writer.active_file().0,
            None => writer.rotate_if_used()?,
        };
        let log_floor = self.memtable.file_after(last_sequence).unwrap_or(active).min(active);
        let old_floor;
        {
            let mut manifest = self.manifest.lock();
            let mut next = manifest.clone();
            next.segments.push(entry.clone());
            next.sealed_sequence = last_sequence;
            old_floor = next.log_floor;
            next.log_floor = log_floor.max(next.log_floor);
            self.store_manifest(&mut next, writer)?;
            *manifest = next;
        }
        {
            let mut segments = self.segments.write();
            let mut list: Vec<Arc<SegmentHandle>> = segments.as_ref().clone();
            list.push(Arc::new(handle));
            *segments = Arc::new(list);
            self.memtable.remove_through(last_sequence, log_floor);
        }
        self.remove_logs_below(old_floor, log_floor);
        tracing::info!(
            "sealed {} spans (sequences {first_sequence}..={last_sequence}) into {}",
            entry.span_count,
            segment_file_name(number)
        );
        Ok(Some(entry))
    }

    fn remove_logs_below(&self, old_floor: u64, floor: u64) {
        let fs = self.options.fs.as_ref();
        let Ok(names) = fs.list(&self.dir) else { return };
        for name in names {
            if let Some(number) = log::parse_log_file_name(&name) {
                if number < floor && number >= old_floor.min(floor) {
                    // Best effort: a leftover retired log is removed at the next open.
                    let _ = fs.remove(&self.dir.join(&name));
                }
            }
        }
    }

    /// Merges one run of consecutive small segments, if there is one.
    fn compact_once(&self) -> Result<Option<(Vec<u64>, SegmentEntry)>> {
        let Some(writer) = self.writer.as_ref() else { return Ok(None) };
        let _maintenance = self.maintenance.lock();
        let current = self.segments.read().clone();
        let target = self.options.compaction_rows_target as u64;
        // Runs of consecutive segments (in sequence order, so merged ranges stay
        // contiguous) each smaller than half the target, up to the target in total.
        let mut best: Option<std::ops::Range<usize>> = None;
        let mut start = 0;
        while start < current.len() {
            let mut end = start;
            let mut rows = 0u64;
            while let Some(handle) = current.get(end) {
                let n = handle.entry.span_count;
                if n * 2 > target || rows + n > target {
                    break;
                }
                rows += n;
                end += 1;
            }
            if end - start >= 2 {
                best = Some(start..end);
                break;
            }
            start = end.max(start + 1);
        }
        let Some(range) = best else { return Ok(None) };
        let inputs: Vec<Arc<SegmentHandle>> = current.get(range.clone()).unwrap_or_default().to_vec();
        // Merged column by column: no span is materialized (see `merge_segments`).
        let min_sequence = inputs.iter().map(|h| h.entry.min_sequence).min().unwrap_or(0);
        let max_sequence = inputs.iter().map(|h| h.entry.max_sequence).max().unwrap_or(0);
        let number = writer.allocate_file_number()?;
        let segments: Vec<&Segment> = inputs.iter().map(|h| &h.segment).collect();
        let bytes = merge_segments(&segments, number, Some((min_sequence, max_sequence)))?;
        drop(segments);
        self.write_segment_file(number, &bytes)?;
        drop(bytes);
        let entry = SegmentEntry {
            file_number: number,
            span_count: inputs.iter().map(|h| h.entry.span_count).sum(),
            min_start_unix_nano: inputs.iter().map(|h| h.entry.min_start_unix_nano).min().unwrap_or(0),
            max_start_unix_nano: inputs.iter().map(|h| h.entry.max_start_unix_nano).max().unwrap_or(0),
            min_sequence,
            max_sequence,
        };
        let handle = open_segment(self.options.fs.as_ref(), &self.dir, &entry)?;
        let merged: Vec<u64> = inputs.iter().map(|h| h.entry.file_number).collect();
        {
            let mut manifest = self.manifest.lock();
            let mut next = manifest.clone();
            let position = next.segments.iter().position(|s| merged.contains(&s.file_number)).unwrap_or(0);
            next.segments.retain(|s| !merged.contains(&s.file_number));
            next.segments.insert(position.min(next.segments.len()), entry.clone());
            self.store_manifest(&mut next, writer)?;
            *manifest = next;
        }
        {
            let mut segments = self.segments.write();
            let mut list: Vec<Arc<SegmentHandle>> =
                segments.iter().filter(|h| !merged.contains(&h.entry.file_number)).cloned().collect();
            let position = range.start.min(list.len());
            list.insert(position, Arc::new(handle));
            *segments = Arc::new(list);
        }
        // Snapshots in this process keep their maps; read-only processes that mapped
        // them keep theirs too (unlinking leaves a map intact), and a read-only open
        // racing this retries with the new manifest.
        for number in &merged {
            let _ = self.options.fs.remove(&self.dir.join(segment_file_name(*number)));
        }
        tracing::info!("compacted segments {merged:?} into {}", segment_file_name(number));
        Ok(Some((merged, entry)))
    }

    fn apply_retention(&self, now: SystemTime) -> Result<Vec<SegmentEntry>> {
        let (Some(writer), Some(limit)) = (self.writer.as_ref(), self.options.retention) else {
            return Ok(Vec::new());
        };
        let _maintenance = self.maintenance.lock();
        let Some(cutoff) = now.checked_sub(limit) else { return Ok(Vec::new()) };
        let cutoff = cutoff
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
            .unwrap_or(0);
        let dropped: Vec<SegmentEntry> =
            self.manifest.lock().segments.iter().filter(|s| s.max_start_unix_nano < cutoff).cloned().collect();
        if dropped.is_empty() {
            return Ok(dropped);
        }
        let numbers: Vec<u64> = dropped.iter().map(|s| s.file_number).collect();
        {
            let mut manifest = self.manifest.lock();
            let mut next = manifest.clone();
            next.segments.retain(|s| !numbers.contains(&s.file_number));
            self.store_manifest(&mut next, writer)?;
            *manifest = next;
        }
        {
            let mut segments = self.segments.write();
            let list: Vec<Arc<SegmentHandle>> =
                segments.iter().filter(|h| !numbers.contains(&h.entry.file_number)).cloned().collect();
            *segments = Arc::new(list);
        }
        for entry in &dropped {
            let _ = self.options.fs.remove(&self.dir.join(segment_file_name(entry.file_number)));
            tracing::warn!(
                "retention: dropped {} ({} spans, all started before the {} s limit)",
                segment_file_name(entry.file_number),
                entry.span_count,
                limit.as_secs()
            );
        }
        Ok(dropped)
    }

    fn shutdown(&self) -> Result<()> {
        if self.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        if let Some(background) = self.background.lock().take() {
            {
                let (stopped, wake) = &*background.stop;
                *stopped.lock() = true;
                wake.notify_all();
            }
            {
                let (flag, condvar) = &*self.wake;
                *flag.lock() = true;
                condvar.notify_all();
            }
            for thread in background.threads {
                if thread.thread().id() != std::thread::current().id() {
                    let _ = thread.join();
                }
            }
        }
        let result = match &self.writer {
            Some(writer) => {
                writer.stop("the store is closed");
                let synced = writer.sync();
                let sealed = if self.options.seal_on_close { self.seal().map(|_| ()) } else { Ok(()) };
                synced.and(sealed)
            }
            None => Ok(()),
        };
        self.lock.lock().take();
        result
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Err(err) = self.shutdown() {
            tracing::error!("closing the store: {err}");
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn replay_file(
    fs: &dyn Fs,
    memtable: &Memtable,
    number: u64,
    path: &Path,
    newest: bool,
    read_only: bool,
    last_sequence: &mut u64,
    report: &mut RecoveryReport,
) -> Result<()> {
    let file = fs.open(path).map_err(|e| EngineError::io(path, "open log", e))?;
    let bytes = read_all(file.as_ref()).map_err(|e| EngineError::io(path, "read log", e))?;
    report.log_files += 1;
    if let Err(err) = log::check_header(path, &bytes) {
        let damage = Damage { path: path.to_path_buf(), offset: 0, reason: err.to_string() };
        if newest && bytes.len() < log::LOG_HEADER_SIZE {
            // A crash between creating the file and syncing its header: nothing in it
            // was ever acknowledged. A writer removes it (its cut of this torn tail);
            // left in place, it would read as damage once newer files follow it.
            if !read_only {
                fs.remove(path).map_err(|e| EngineError::io(path, "remove torn log file", e))?;
            }
            report.torn_tails.push(damage);
        } else {
            report.damage.push(damage);
        }
        return Ok(());
    }
    memtable.add_file(number, path)?;
    report.damage.extend(log::header_damage(path, &bytes));
    let scan = log::scan(path, &bytes);
    report.damage.extend(scan.damage);
    if scan.torn {
        let first = scan.tail_damage.first().cloned().unwrap_or(Damage {
            path: path.to_path_buf(),
            offset: scan.valid_end,
            reason: "bytes after the last whole record".into(),
        });
        if newest {
            if !read_only {
                fs.truncate(path, scan.valid_end).map_err(|e| EngineError::io(path, "cut torn log tail", e))?;
            }
            report.torn_tails.push(first);
        } else {
            // Only the newest file can have been interrupted mid-write.
            report.damage.push(first);
        }
    }
    let mut records = Vec::with_capacity(scan.records.len());
    for scanned in scan.records {
        // The sequence is the payload's first eight bytes: records already sealed are
        // skipped without decoding their batches.
        let peeked = scanned.payload.get(..8).and_then(|b| <[u8; 8]>::try_from(b).ok()).map(u64::from_le_bytes);
        if peeked.is_some_and(|sequence| sequence <= *last_sequence) {
            continue;
        }
        match log::decode_record(&scanned.payload) {
            Ok(record) => {
                if record.sequence <= *last_sequence {
                    // Already sealed, or (never by this writer) written twice: keep one.
                    continue;
                }
                *last_sequence = record.sequence;
                report.records_replayed += 1;
                report.spans_replayed += record.batch.len() as u64;
                records.push(Written {
                    sequence: record.sequence,
                    batch: Arc::new(record.batch),
                    location: LogLocation { file_number: number, start: scanned.start, end: scanned.end },
                });
                if records.len() >= 256 {
                    memtable.insert(std::mem::take(&mut records));
                }
            }
            Err(err) => report.damage.push(Damage {
                path: path.to_path_buf(),
                offset: scanned.start,
                reason: format!("record does not decode: {err}"),
            }),
        }
    }
    memtable.insert(records);
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::fs::MemFs;

    fn mem_options(fs: &MemFs) -> Options {
        Options { fs: Arc::new(fs.clone()), ..Options::default() }
    }

    /// A store directory holding nothing but `manifest`.
    fn dir_with_manifest(manifest: Manifest) -> (MemFs, PathBuf) {
        let fs = MemFs::new();
        let dir = PathBuf::from("/store");
        fs.create_dir_all(&dir).unwrap();
        manifest::store(&fs, &dir, &manifest, &[]).unwrap();
        (fs, dir)
    }

    /// Found by fuzz/store_open: a manifest whose log floor lies past its next file
    /// number made the writer start its log below the floor, so after a crash the
    /// reopen skipped that log and lost an acknowledged append.
    #[test]
    fn the_writers_new_log_is_at_or_above_the_log_floor() {
        let (fs, dir) =
            dir_with_manifest(Manifest { number: 1, next_file_number: 1, log_floor: 100, ..Manifest::default() });
        let store = Store::open(&dir, mem_options(&fs)).unwrap();
        store.append(SpanBatch::from_spans(&[Span::default()])).unwrap();
        let after_power_loss = fs.crash(|_| 0);
        drop(store);
        let reopened = Store::open_read_only(&dir, mem_options(&after_power_loss)).unwrap();
        assert_eq!(reopened.snapshot().spans().unwrap().len(), 1);
    }

    /// Found with fuzz/store_open: a sequence or file number at u64::MAX overflowed
    /// when the writer took the next one (a panic, or in release a wrap to numbers that
    /// replay skips). The writer now refuses to open; readers still can.
    #[test]
    fn exhausted_numbers_refuse_a_writer_instead_of_wrapping() {
        for (manifest, what) in [
            (
                Manifest { number: 1, sealed_sequence: u64::MAX, ..Manifest::default() },
                "log sequence numbers exhausted",
            ),
            (Manifest { number: 1, next_file_number: u64::MAX, ..Manifest::default() }, "file numbers exhausted"),
        ] {
            let (fs, dir) = dir_with_manifest(manifest);
            let err = Store::open(&dir, mem_options(&fs)).err().unwrap();
            assert!(err.to_string().contains(what), "{err}");
            assert!(Store::open_read_only(&dir, mem_options(&fs)).is_ok());
        }
        // One number left: the writer opens, and the append that would take u64::MAX
        // fails instead of wrapping.
        let (fs, dir) = dir_with_manifest(Manifest { number: 1, sealed_sequence: u64::MAX - 1, ..Manifest::default() });
        let store = Store::open(&dir, mem_options(&fs)).unwrap();
        let err = store.append(SpanBatch::from_spans(&[Span::default()])).unwrap_err();
        assert!(err.to_string().contains("exhausted"), "{err}");
    }
}
