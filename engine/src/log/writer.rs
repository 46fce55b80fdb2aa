//! The log writer: group commit of concurrent appends into the active log file.
//!
//! Appenders encode their records in parallel, then queue them. The first appender to
//! find no leader becomes the leader: it takes the whole queue, writes it with one
//! `write` call, syncs once (under `SyncPolicy::Always`), hands the batches to the
//! memtable in sequence order, and wakes everyone whose record it wrote. Appenders that
//! queued meanwhile form the next group, so one fsync covers many appends.
//!
//! **Invariant:** records reach the file, and the memtable, in sequence order, and an
//! `append` returns `Ok` only after its record is written (and synced under `Always`).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Condvar, Mutex};

use super::{file_header, frame_record, log_file_name, LOG_HEADER_SIZE};
use crate::batch::SpanBatch;
use crate::error::{EngineError, Result};
use crate::fs::{Fs, WriteFile};

/// When appended records are made durable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum SyncPolicy {
    /// fsync before `append` returns (group commit shares one fsync among concurrent
    /// appenders). A crash loses nothing acknowledged.
    #[default]
    Always,
    /// fsync in the background at this interval; a power loss can lose the last
    /// interval of acknowledged appends (a process crash loses nothing).
    Interval(Duration),
    /// Never fsync an append (the OS writes back when it likes); for bulk loads and
    /// tests. Log files are still synced when they are started and when they are
    /// finished, so that `flush` (which syncs the active file) covers every append.
    None,
}

impl std::str::FromStr for SyncPolicy {
    type Err = String;

    /// `always`, `none` or `interval:MS` (the form the command-line flags take).
    fn from_str(text: &str) -> std::result::Result<SyncPolicy, String> {
        match text {
            "always" => Ok(SyncPolicy::Always),
            "none" => Ok(SyncPolicy::None),
            _ => {
                let ms = text
                    .strip_prefix("interval:")
                    .ok_or_else(|| format!("expected always, none or interval:MS, found {text:?}"))?;
                let ms: u64 = ms.parse().map_err(|e| format!("interval milliseconds {ms:?}: {e}"))?;
                Ok(SyncPolicy::Interval(Duration::from_millis(ms)))
            }
        }
    }
}

/// Where a record lies in the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogLocation {
    /// Log file number.
    pub file_number: u64,
    /// Offset of the record's first fragment.
    pub start: u64,
    /// Offset just past its last fragment.
    pub end: u64,
}

/// A record written by the leader, handed to the writer's owner in sequence order.
pub struct Written {
    /// Sequence number.
    pub sequence: u64,
    /// The batch.
    pub batch: Arc<SpanBatch>,
    /// Where it lies.
    pub location: LogLocation,
}

/// Receives written records, in sequence order, before their appenders are woken.
pub trait Sink: Send + Sync {
    /// Called by the leader with each group, in order; `new_file` is set when the group
    /// starts a new log file (its number and a way to read it back).
    fn written(&self, records: Vec<Written>);
    /// Called when a new log file is started.
    fn new_file(&self, file_number: u64, path: &Path);
}

struct Pending {
    sequence: u64,
    payload: Vec<u8>,
    batch: Arc<SpanBatch>,
}

struct Queue {
    pending: Vec<Pending>,
    next_sequence: u64,
    /// Every sequence at or below this is written (and synced, under `Always`).
    done_sequence: u64,
    leader_active: bool,
    /// Set by a failed write; every later append fails with it.
    failed: Option<String>,
}

struct ActiveFile {
    number: u64,
    path: PathBuf,
    file: Arc<dyn WriteFile>,
    offset: u64,
    /// Bytes written since the last sync.
    dirty: bool,
}

/// Statistics of the writer, for benchmarks and `inspect`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WriterStats {
    /// Groups written (one write call each).
    pub groups: u64,
    /// fsyncs of log files.
    pub syncs: u64,
    /// Records written.
    pub records: u64,
    /// Bytes written, framing included.
    pub bytes: u64,
}

/// The single writer of a store's log.
pub struct LogWriter {
    fs: Arc<dyn Fs>,
    dir: PathBuf,
    policy: SyncPolicy,
    file_size_bytes_target: u64,
    queue: Mutex<Queue>,
    woken: Condvar,
    active: Mutex<ActiveFile>,
    next_file_number: Mutex<u64>,
    stats: Mutex<WriterStats>,
    sink: Arc<dyn Sink>,
}

impl LogWriter {
    /// Starts a new log file numbered `file_number` in `dir`; records get sequence
    /// numbers from `next_sequence` on.
    pub fn create(
        fs: Arc<dyn Fs>,
        dir: &Path,
        file_number: u64,
        next_sequence: u64,
        policy: SyncPolicy,
        file_size_bytes_target: u64,
        sink: Arc<dyn Sink>,
    ) -> Result<LogWriter> {
        let active = start_file(fs.as_ref(), dir, file_number)?;
        sink.new_file(file_number, &active.path);
        Ok(LogWriter {
            fs,
            dir: dir.to_path_buf(),
            policy,
            file_size_bytes_target,
            queue: Mutex::new(Queue {
                pending: Vec::new(),
                next_sequence,
                done_sequence: next_sequence.saturating_sub(1),
                leader_active: false,
                failed: None,
            }),
            woken: Condvar::new(),
            active: Mutex::new(active),
            next_file_number: Mutex::new(file_number + 1),
            stats: Mutex::new(WriterStats::default()),
            sink,
        })
    }

    /// The number the next new file (log or other) gets; the writer takes numbers from
    /// this shared counter.
    pub fn next_file_number(&self) -> u64 {
        *self.next_file_number.lock()
    }

    /// Takes a file number for a new file (a segment) from the shared counter.
    pub fn allocate_file_number(&self) -> Result<u64> {
        let mut next = self.next_file_number.lock();
        let number = *next;
        *next = number
            .checked_add(1)
            .ok_or_else(|| EngineError::Closed { reason: "file numbers exhausted (u64::MAX reached)".into() })?;
        Ok(number)
    }

    /// Counters since open.
    pub fn stats(&self) -> WriterStats {
        *self.stats.lock()
    }

    /// Appends one encoded record (from [`super::encode_record`]); returns its sequence
    /// number once it is written (and synced under `Always`). The payload's first eight
    /// bytes are overwritten with the sequence number, assigned here in queue order so
    /// the queue never has a gap.
    pub fn append(&self, batch: Arc<SpanBatch>, mut payload: Vec<u8>) -> Result<u64> {
        let mut queue = self.queue.lock();
        if let Some(reason) = &queue.failed {
            return Err(EngineError::Closed { reason: reason.clone() });
        }
        let sequence = queue.next_sequence;
        // u64::MAX is never handed out (a recovered store may start just below it):
        // wrapping would reuse numbers that replay skips as already seen.
        if sequence == u64::MAX {
            return Err(EngineError::Closed { reason: "log sequence numbers exhausted".into() });
        }
        queue.next_sequence += 1;
        match payload.get_mut(..8) {
            Some(head) => head.copy_from_slice(&sequence.to_le_bytes()),
            None => return Err(EngineError::Internal("record payload shorter than its header".into())),
        }
        queue.pending.push(Pending { sequence, payload, batch });
        loop {
            if queue.done_sequence >= sequence {
                return Ok(sequence);
            }
            if let Some(reason) = &queue.failed {
                return Err(EngineError::Closed { reason: reason.clone() });
            }
            if !queue.leader_active {
                queue.leader_active = true;
                let group = std::mem::take(&mut queue.pending);
                drop(queue);
                let last = group.last().map(|p| p.sequence);
                let outcome = self.write_group(group);
                queue = self.queue.lock();
                queue.leader_active = false;
                match outcome {
                    Ok(()) => {
                        if let Some(last) = last {
                            queue.done_sequence = last;
                        }
                    }
                    Err(err) => {
                        queue.failed = Some(format!("log write failed: {err}"));
                    }
                }
                self.woken.notify_all();
                continue;
            }
            self.woken.wait(&mut queue);
        }
    }

    /// Stops accepting appends (appends after this fail with `reason`).
    pub fn stop(&self, reason: &str) {
        let mut queue = self.queue.lock();
        if queue.failed.is_none() {
            queue.failed = Some(reason.to_owned());
        }
    }

    fn write_group(&self, group: Vec<Pending>) -> Result<()> {
        let mut active = self.active.lock();
        if active.offset >= self.file_size_bytes_target {
            self.rotate(&mut active)?;
        }
        let total: usize = group.iter().map(|p| p.payload.len() + p.payload.len() / 4096 * 8 + 16).sum();
        let mut buf = Vec::with_capacity(total);
        let mut offset = active.offset;
        let mut written = Vec::with_capacity(group.len());
        for pending in group {
            let start = offset + padding_before(offset);
            offset = frame_record(&mut buf, offset, &pending.payload);
            written.push(Written {
                sequence: pending.sequence,
                batch: pending.batch,
                location: LogLocation { file_number: active.number, start, end: offset },
            });
        }
        active.file.append(&buf).map_err(|e| EngineError::io(&active.path, "append to log", e))?;
        active.offset = offset;
        active.dirty = true;
        let synced = self.policy == SyncPolicy::Always;
        if synced {
            active.file.sync().map_err(|e| EngineError::io(&active.path, "fsync log", e))?;
            active.dirty = false;
        }
        drop(active);
        {
            let mut stats = self.stats.lock();
            stats.groups += 1;
            stats.records += written.len() as u64;
            stats.bytes += buf.len() as u64;
            stats.syncs += u64::from(synced);
        }
        self.sink.written(written);
        Ok(())
    }

    /// Closes the active log file and starts a new one if the active one holds any
    /// record; returns the number of the file that is active afterwards. Sealing calls
    /// this when every record is sealed, so the old file can retire at once.
    pub fn rotate_if_used(&self) -> Result<u64> {
        let mut active = self.active.lock();
        if active.offset > LOG_HEADER_SIZE as u64 {
            self.rotate(&mut active)?;
        }
        Ok(active.number)
    }

    fn rotate(&self, active: &mut ActiveFile) -> Result<()> {
        // Under every policy: `sync` (and so `flush`) reaches only the active file.
        active.file.sync().map_err(|e| EngineError::io(&active.path, "fsync log", e))?;
        self.stats.lock().syncs += 1;
        let number = self.allocate_file_number()?;
        *active = start_file(self.fs.as_ref(), &self.dir, number)?;
        self.sink.new_file(number, &active.path);
        Ok(())
    }

    /// Makes everything written so far durable.
    pub fn sync(&self) -> Result<()> {
        let (file, path) = {
            let mut active = self.active.lock();
            if !active.dirty {
                return Ok(());
            }
            active.dirty = false;
            (active.file.clone(), active.path.clone())
        };
        file.sync().map_err(|e| EngineError::io(&path, "fsync log", e))?;
        self.stats.lock().syncs += 1;
        Ok(())
    }

    /// Number and size of the active log file.
    pub fn active_file(&self) -> (u64, u64) {
        let active = self.active.lock();
        (active.number, active.offset)
    }
}

/// Bytes of block padding the framer puts before a record starting at `offset`.
fn padding_before(offset: u64) -> u64 {
    let left = super::BLOCK_SIZE as u64 - offset % super::BLOCK_SIZE as u64;
    if left < super::FRAGMENT_HEADER_SIZE as u64 {
        left
    } else {
        0
    }
}

/// Creates log file `number` with its header; under every policy the header and the
/// directory entry are made durable before the first record can be acknowledged (or
/// flushed), so a power loss never drops a file that holds durable records.
fn start_file(fs: &dyn Fs, dir: &Path, number: u64) -> Result<ActiveFile> {
    let path = dir.join(log_file_name(number));
    let file = fs.create(&path).map_err(|e| EngineError::io(&path, "create log file", e))?;
    file.append(&file_header(number)).map_err(|e| EngineError::io(&path, "write log header", e))?;
    file.sync().map_err(|e| EngineError::io(&path, "fsync log", e))?;
    fs.sync_dir(dir).map_err(|e| EngineError::io(dir, "fsync directory", e))?;
    Ok(ActiveFile { number, path, file, offset: LOG_HEADER_SIZE as u64, dirty: false })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn sync_policies_parse_from_their_flag_form() {
        assert_eq!("always".parse(), Ok(SyncPolicy::Always));
        assert_eq!("none".parse(), Ok(SyncPolicy::None));
        assert_eq!("interval:10".parse(), Ok(SyncPolicy::Interval(Duration::from_millis(10))));
        assert!("interval:x".parse::<SyncPolicy>().unwrap_err().contains("interval milliseconds"));
        assert!("sometimes".parse::<SyncPolicy>().unwrap_err().contains("expected always, none or interval:MS"));
    }
}
