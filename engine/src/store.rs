//! `Store`: opens a data directory (recovering the log), appends batches, hands out
//! snapshots, and closes cleanly.
//!
//! Directory layout: `LOCK` (held by the one writer), `MANIFEST-<n>` (the live files),
//! `log-<n>.sslog` (the span log). Read-only opens never create, lock, truncate or
//! remove anything.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use parking_lot::{Condvar, Mutex};

use crate::batch::SpanBatch;
use crate::error::{EngineError, Result};
use crate::fs::{read_all, Fs, LockGuard, RealFs};
use crate::log::writer::{LogLocation, LogWriter, SyncPolicy, WriterStats, Written};
use crate::log::{self, Damage};
use crate::manifest::{self, Manifest};
use crate::memtable::Memtable;
use crate::model::{Span, TraceId};
use crate::snapshot::Snapshot;

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
    /// Compress log records with zstd (level 1).
    pub compress_log: bool,
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
            fs: Arc::new(RealFs),
        }
    }
}

impl std::fmt::Debug for Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Options")
            .field("sync", &self.sync)
            .field(
                "log_file_size_bytes_target",
                &self.log_file_size_bytes_target,
            )
            .field("memtable_size_bytes_max", &self.memtable_size_bytes_max)
            .field("compress_log", &self.compress_log)
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
    /// Damage in the middle of the log: each costs the batches it touches.
    pub damage: Vec<Damage>,
    /// Torn tails: bytes after the last whole record of the newest log file, left by a
    /// crash during a write (cut off by a writer; ignored by a read-only open).
    pub torn_tails: Vec<Damage>,
    /// Manifest versions that did not read back whole (an older one was used).
    pub manifest_damage: Vec<String>,
    /// Temporary files left by a crash and removed.
    pub removed_temporary_files: Vec<PathBuf>,
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

struct Syncer {
    stop: Arc<(Mutex<bool>, Condvar)>,
    thread: JoinHandle<()>,
}

struct Inner {
    dir: PathBuf,
    options: Options,
    memtable: Arc<Memtable>,
    writer: Option<Arc<LogWriter>>,
    manifest: Mutex<Manifest>,
    report: RecoveryReport,
    lock: Mutex<Option<Box<dyn LockGuard>>>,
    syncer: Mutex<Option<Syncer>>,
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

impl Store {
    /// Opens (creating if needed) the store in `dir` as its one writer: takes the lock,
    /// recovers the log (cutting a torn tail), and starts a new log file.
    pub fn open(dir: impl AsRef<Path>, options: Options) -> Result<Store> {
        Self::open_inner(dir.as_ref(), options, false)
    }

    /// Opens the store in `dir` read-only: no lock, and no file is created, changed or
    /// removed. Sees every whole record present at open; any number of read-only opens
    /// may run beside the writer.
    pub fn open_read_only(dir: impl AsRef<Path>, options: Options) -> Result<Store> {
        Self::open_inner(dir.as_ref(), options, true)
    }

    fn open_inner(dir: &Path, options: Options, read_only: bool) -> Result<Store> {
        if options.log_file_size_bytes_target < 4096 {
            return Err(EngineError::InvalidOption {
                name: "log_file_size_bytes_target",
                reason: "must be at least 4096".into(),
            });
        }
        let fs = options.fs.clone();
        let mut lock = None;
        if read_only {
            if !fs.dir_exists(dir) {
                return Err(EngineError::NotAStore {
                    path: dir.to_path_buf(),
                });
            }
        } else {
            fs.create_dir_all(dir)
                .map_err(|e| EngineError::io(dir, "create directory", e))?;
            let lock_path = dir.join(LOCK_FILE_NAME);
            lock = Some(
                fs.try_lock(&lock_path)
                    .map_err(|e| EngineError::io(&lock_path, "lock", e))?
                    .ok_or(EngineError::Locked { path: lock_path })?,
            );
        }
        let mut report = RecoveryReport::default();
        let mut names = fs
            .list(dir)
            .map_err(|e| EngineError::io(dir, "list directory", e))?;
        if !read_only {
            names.retain(|name| {
                if !name.ends_with(".tmp") {
                    return true;
                }
                let path = dir.join(name);
                if fs.remove(&path).is_ok() {
                    report.removed_temporary_files.push(path);
                }
                false
            });
        }
        let loaded = manifest::load(fs.as_ref(), dir, &names);
        report.manifest_damage = loaded.damaged.iter().map(ToString::to_string).collect();
        let mut logs: Vec<(u64, PathBuf)> = names
            .iter()
            .filter_map(|name| log::parse_log_file_name(name).map(|n| (n, dir.join(name))))
            .collect();
        logs.sort();
        let newest_manifest_number = loaded.files.last().map(|(n, _)| *n).unwrap_or(0);
        let (mut manifest, manifest_is_new) = match loaded.manifest {
            Some(manifest) => (manifest, !loaded.damaged.is_empty()),
            None if logs.is_empty() && loaded.files.is_empty() => {
                if read_only {
                    return Err(EngineError::NotAStore {
                        path: dir.to_path_buf(),
                    });
                }
                (Manifest::default(), true)
            }
            None => {
                // Every manifest is damaged: rebuild from what the directory holds. With
                // no segments yet, that is every log file.
                let manifest = Manifest {
                    log_floor: logs.first().map(|(n, _)| *n).unwrap_or(0),
                    ..Manifest::default()
                };
                (manifest, true)
            }
        };
        let memtable = Arc::new(Memtable::new(fs.clone(), options.memtable_size_bytes_max));
        let mut last_sequence = manifest.sealed_sequence;
        let live_logs: Vec<&(u64, PathBuf)> = logs
            .iter()
            .filter(|(n, _)| *n >= manifest.log_floor)
            .collect();
        for (index, (number, path)) in live_logs.iter().enumerate() {
            let newest = index + 1 == live_logs.len();
            replay_file(
                fs.as_ref(),
                &memtable,
                *number,
                path,
                newest,
                read_only,
                &mut last_sequence,
                &mut report,
            )?;
        }
        let max_log = logs.last().map(|(n, _)| *n).unwrap_or(0);
        let next_file_number = manifest.next_file_number.max(max_log + 1).max(1);
        let mut writer = None;
        if !read_only {
            if manifest_is_new {
                manifest.number = newest_manifest_number + 1;
                manifest.next_file_number = next_file_number;
                manifest::store(fs.as_ref(), dir, &manifest, &loaded.files)?;
            }
            let log_writer = LogWriter::create(
                fs.clone(),
                dir,
                next_file_number,
                last_sequence + 1,
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
            report,
            lock: Mutex::new(lock),
            syncer: Mutex::new(None),
            closed: AtomicBool::new(false),
        });
        if let (SyncPolicy::Interval(interval), Some(writer)) = (inner.options.sync, &inner.writer)
        {
            *inner.syncer.lock() = Some(start_syncer(writer.clone(), interval));
        }
        if !inner.report.is_clean() {
            for damage in &inner.report.damage {
                tracing::warn!("log damage: {damage}");
            }
            for damage in &inner.report.manifest_damage {
                tracing::warn!("manifest damage: {damage}");
            }
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
            return Err(EngineError::Closed {
                reason: "close was called".into(),
            });
        }
        batch.check_limits().map_err(EngineError::InvalidBatch)?;
        let span_count = batch.len();
        if span_count == 0 {
            return Ok(AppendReceipt {
                sequence: None,
                span_count,
            });
        }
        let payload = log::encode_record(0, &batch, self.inner.options.compress_log);
        let sequence = writer.append(Arc::new(batch), payload)?;
        Ok(AppendReceipt {
            sequence: Some(sequence),
            span_count,
        })
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
        Snapshot::new(self.inner.memtable.view())
    }

    /// Every span of one trace, by start time.
    pub fn trace(&self, trace_id: TraceId) -> Result<Vec<Span>> {
        self.snapshot().trace(trace_id)
    }

    /// Log writer counters (groups, syncs, records, bytes); zero for a read-only store.
    pub fn writer_stats(&self) -> WriterStats {
        self.inner
            .writer
            .as_ref()
            .map(|w| w.stats())
            .unwrap_or_default()
    }

    /// Bytes of batches the memtable holds in memory.
    pub fn memtable_resident_bytes(&self) -> usize {
        self.inner.memtable.resident_bytes()
    }

    /// The manifest in force.
    pub fn manifest(&self) -> Manifest {
        self.inner.manifest.lock().clone()
    }

    /// Flushes, stops accepting appends and releases the directory lock.
    pub fn close(self) -> Result<()> {
        self.inner.shutdown()
    }
}

impl Inner {
    fn shutdown(&self) -> Result<()> {
        if self.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        if let Some(syncer) = self.syncer.lock().take() {
            {
                let (stopped, wake) = &*syncer.stop;
                *stopped.lock() = true;
                wake.notify_all();
            }
            let _ = syncer.thread.join();
        }
        let result = match &self.writer {
            Some(writer) => {
                let result = writer.sync();
                writer.stop("the store is closed");
                result
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

fn start_syncer(writer: Arc<LogWriter>, interval: Duration) -> Syncer {
    let stop = Arc::new((Mutex::new(false), Condvar::new()));
    let thread_stop = stop.clone();
    let thread = std::thread::Builder::new()
        .name("spanstore-log-sync".into())
        .spawn(move || {
            let (stopped, wake) = &*thread_stop;
            let mut guard = stopped.lock();
            while !*guard {
                wake.wait_for(&mut guard, interval);
                if *guard {
                    break;
                }
                drop(guard);
                if let Err(err) = writer.sync() {
                    tracing::error!("background log sync: {err}");
                }
                guard = stopped.lock();
            }
        });
    match thread {
        Ok(thread) => Syncer { stop, thread },
        // Without a thread there is no background sync; fall back to a thread that
        // does nothing so shutdown stays uniform. Spawning fails only when the OS is
        // out of threads, and `flush` and `close` still sync.
        Err(err) => {
            tracing::error!("cannot start the log sync thread: {err}");
            Syncer {
                stop,
                thread: std::thread::spawn(|| {}),
            }
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
    let file = fs
        .open(path)
        .map_err(|e| EngineError::io(path, "open log", e))?;
    let bytes = read_all(file.as_ref()).map_err(|e| EngineError::io(path, "read log", e))?;
    report.log_files += 1;
    if let Err(err) = log::check_header(path, &bytes) {
        let damage = Damage {
            path: path.to_path_buf(),
            offset: 0,
            reason: err.to_string(),
        };
        if newest && bytes.len() < log::LOG_HEADER_SIZE {
            // A crash between creating the file and syncing its header: nothing in it
            // was ever acknowledged.
            report.torn_tails.push(damage);
        } else {
            report.damage.push(damage);
        }
        return Ok(());
    }
    memtable.add_file(number, path)?;
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
                fs.truncate(path, scan.valid_end)
                    .map_err(|e| EngineError::io(path, "cut torn log tail", e))?;
            }
            report.torn_tails.push(first);
        } else {
            // Only the newest file can have been interrupted mid-write.
            report.damage.push(first);
        }
    }
    let mut records = Vec::with_capacity(scan.records.len());
    for scanned in scan.records {
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
                    location: LogLocation {
                        file_number: number,
                        start: scanned.start,
                        end: scanned.end,
                    },
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
