//! The memtable: every batch in the log that is not yet in a sealed segment, in sequence
//! order, readable by snapshots as columnar [`SpanBatch`]es.
//!
//! Memory is bounded: past `size_bytes_max`, the oldest batches are evicted from memory
//! and read back from the log (which keeps them until they are sealed) when a snapshot
//! needs them. Until segments exist the log is the store, so this keeps a long-running
//! writer's memory flat however much it ingests.
//!
//! **Invariant:** entries are in strictly increasing sequence order, and each entry's
//! batch is either resident or readable at its log location.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::RwLock;

use crate::batch::SpanBatch;
use crate::error::{EngineError, Result};
use crate::fs::{Fs, ReadFile};
use crate::log::writer::{LogLocation, Sink, Written};
use crate::segment::reader::Segment;
use crate::segment::writer::build_segment;

/// One batch of the memtable.
#[derive(Clone)]
pub struct MemEntry {
    /// Sequence number of the batch's log record.
    pub sequence: u64,
    /// Spans in the batch.
    pub span_count: u32,
    /// Earliest span start in the batch, ns.
    pub min_start_unix_nano: u64,
    /// Latest span start in the batch, ns.
    pub max_start_unix_nano: u64,
    /// Where the record lies in the log.
    pub location: LogLocation,
    /// The batch, while resident.
    batch: Option<Arc<SpanBatch>>,
    memory_bytes: usize,
}

/// A log file the memtable may read evicted batches back from.
#[derive(Clone)]
pub(crate) struct LogFileRef {
    pub(crate) path: PathBuf,
    pub(crate) file: Arc<dyn ReadFile>,
}

struct Inner {
    entries: Vec<MemEntry>,
    /// Bytes of all batches, resident or not (the sealing trigger).
    total_bytes: usize,
    /// When the oldest entry arrived.
    oldest_arrival: Option<std::time::Instant>,
    /// Entries below this index are evicted.
    evicted_below: usize,
    resident_bytes: usize,
    span_count: u64,
    files: BTreeMap<u64, LogFileRef>,
}

/// Spans per in-memory segment that queries read the memtable through.
pub const MEM_CHUNK_SPANS: u32 = 8192;

/// In-memory segments of memtable chunks, keyed by their first and last sequence.
type ChunkCache = Arc<parking_lot::Mutex<HashMap<(u64, u64), Arc<Segment>>>>;

/// The memtable.
pub struct Memtable {
    fs: Arc<dyn Fs>,
    size_bytes_max: usize,
    inner: RwLock<Inner>,
    chunks: ChunkCache,
}

impl Memtable {
    /// An empty memtable that keeps at most about `size_bytes_max` bytes of batches.
    pub fn new(fs: Arc<dyn Fs>, size_bytes_max: usize) -> Memtable {
        Memtable {
            fs,
            size_bytes_max,
            inner: RwLock::new(Inner {
                entries: Vec::new(),
                total_bytes: 0,
                oldest_arrival: None,
                evicted_below: 0,
                resident_bytes: 0,
                span_count: 0,
                files: BTreeMap::new(),
            }),
            chunks: ChunkCache::default(),
        }
    }

    /// Registers a log file that entries may point into.
    pub fn add_file(&self, file_number: u64, path: &Path) -> Result<()> {
        let file = self.fs.open(path).map_err(|e| EngineError::io(path, "open log for reading", e))?;
        self.inner.write().files.insert(file_number, LogFileRef { path: path.to_path_buf(), file });
        Ok(())
    }

    /// Adds batches, which must come in increasing sequence order.
    pub fn insert(&self, records: Vec<Written>) {
        let mut inner = self.inner.write();
        for record in records {
            debug_assert!(inner.entries.last().is_none_or(|e| e.sequence < record.sequence));
            let starts = record.batch.start_column();
            let min = starts.iter().copied().min().unwrap_or(0);
            let max = starts.iter().copied().max().unwrap_or(0);
            let memory_bytes = record.batch.memory_size_bytes();
            inner.resident_bytes += memory_bytes;
            inner.total_bytes += memory_bytes;
            inner.span_count += record.batch.len() as u64;
            if inner.oldest_arrival.is_none() {
                inner.oldest_arrival = Some(std::time::Instant::now());
            }
            inner.entries.push(MemEntry {
                sequence: record.sequence,
                span_count: record.batch.len() as u32,
                min_start_unix_nano: min,
                max_start_unix_nano: max,
                location: record.location,
                batch: Some(record.batch),
                memory_bytes,
            });
        }
        // Evict the oldest batches past the bound. A snapshot that holds one keeps it
        // alive until the snapshot is dropped, which is what it promised.
        while inner.resident_bytes > self.size_bytes_max && inner.evicted_below < inner.entries.len() {
            let index = inner.evicted_below;
            let freed = match inner.entries.get_mut(index) {
                Some(entry) => {
                    entry.batch = None;
                    entry.memory_bytes
                }
                None => 0,
            };
            inner.resident_bytes -= freed;
            inner.evicted_below += 1;
        }
    }

    /// Bytes of every batch in the memtable, resident or read back on demand.
    pub fn total_bytes(&self) -> usize {
        self.inner.read().total_bytes
    }

    /// How long the oldest batch has waited to be sealed.
    pub fn oldest_age(&self) -> Option<std::time::Duration> {
        self.inner.read().oldest_arrival.map(|t| t.elapsed())
    }

    /// The log file holding the first batch after `sequence`, if any is here.
    pub fn file_after(&self, sequence: u64) -> Option<u64> {
        let inner = self.inner.read();
        let index = inner.entries.partition_point(|e| e.sequence <= sequence);
        inner.entries.get(index).map(|e| e.location.file_number)
    }

    /// Drops every batch at or below `sequence` (they are sealed into a segment) and
    /// the read handles of log files below `log_floor`.
    pub fn remove_through(&self, sequence: u64, log_floor: u64) {
        let mut inner = self.inner.write();
        let index = inner.entries.partition_point(|e| e.sequence <= sequence);
        let removed: Vec<MemEntry> = inner.entries.drain(..index).collect();
        for entry in &removed {
            inner.total_bytes = inner.total_bytes.saturating_sub(entry.memory_bytes);
            inner.span_count = inner.span_count.saturating_sub(u64::from(entry.span_count));
            if entry.batch.is_some() {
                inner.resident_bytes = inner.resident_bytes.saturating_sub(entry.memory_bytes);
            }
        }
        inner.evicted_below = inner.evicted_below.saturating_sub(index);
        inner.oldest_arrival = if inner.entries.is_empty() { None } else { Some(std::time::Instant::now()) };
        inner.files.retain(|&number, _| number >= log_floor);
        self.chunks.lock().retain(|&(first, _), _| first > sequence);
    }

    /// Bytes of batches held in memory.
    pub fn resident_bytes(&self) -> usize {
        self.inner.read().resident_bytes
    }

    /// Spans in the memtable.
    pub fn span_count(&self) -> u64 {
        self.inner.read().span_count
    }

    /// The highest sequence number in the memtable.
    pub fn last_sequence(&self) -> Option<u64> {
        self.inner.read().entries.last().map(|e| e.sequence)
    }

    /// A consistent, immutable view of the memtable as it is now.
    pub fn view(&self) -> MemView {
        let inner = self.inner.read();
        MemView {
            entries: Arc::from(inner.entries.as_slice()),
            files: Arc::new(inner.files.clone()),
            span_count: inner.span_count,
            chunks: self.chunks.clone(),
        }
    }
}

impl Sink for Memtable {
    fn written(&self, records: Vec<Written>) {
        self.insert(records);
    }

    fn new_file(&self, file_number: u64, path: &Path) {
        // A log file that cannot be opened for reading makes its evicted batches
        // unreadable; that surfaces as an error from the snapshot that needs them.
        if let Err(err) = self.add_file(file_number, path) {
            tracing::warn!("{err}");
        }
    }
}

/// An immutable view of the memtable, taken by a snapshot.
#[derive(Clone)]
pub struct MemView {
    entries: Arc<[MemEntry]>,
    files: Arc<BTreeMap<u64, LogFileRef>>,
    span_count: u64,
    chunks: ChunkCache,
}

impl MemView {
    /// The entries, in sequence order.
    pub fn entries(&self) -> &[MemEntry] {
        &self.entries
    }

    /// Spans in the view.
    pub fn span_count(&self) -> u64 {
        self.span_count
    }

    /// The memtable as in-memory segments of about [`MEM_CHUNK_SPANS`] spans each, so
    /// queries read it through the same interface as sealed segments. A chunk is built
    /// once and cached until its spans are sealed; only the newest, still growing chunk
    /// is rebuilt as appends arrive.
    pub fn segments(&self) -> Result<Vec<Arc<Segment>>> {
        let mut out = Vec::new();
        let mut chunk_start = 0usize;
        let mut spans = 0u32;
        let entries = &self.entries;
        for (i, entry) in entries.iter().enumerate() {
            spans = spans.saturating_add(entry.span_count);
            if spans < MEM_CHUNK_SPANS && i + 1 < entries.len() {
                continue;
            }
            let chunk = entries.get(chunk_start..=i).unwrap_or_default();
            let (Some(first), Some(last)) = (chunk.first(), chunk.last()) else { continue };
            let key = (first.sequence, last.sequence);
            let cached = self.chunks.lock().get(&key).cloned();
            let segment = match cached {
                Some(segment) => segment,
                None => {
                    let batches = chunk.iter().map(|e| self.batch(e)).collect::<Result<Vec<_>>>()?;
                    let refs: Vec<&SpanBatch> = batches.iter().map(|b| b.as_ref()).collect();
                    let bytes = build_segment(&refs, 0, Some(key));
                    let segment = Arc::new(Segment::open(Path::new("memtable"), Arc::new(bytes))?);
                    let mut cache = self.chunks.lock();
                    // A growing chunk replaces its shorter self.
                    cache.retain(|&(f, _), _| f != key.0);
                    cache.insert(key, segment.clone());
                    segment
                }
            };
            out.push(segment);
            chunk_start = i + 1;
            spans = 0;
        }
        Ok(out)
    }

    /// The batch of `entry`: resident, or read back from the log.
    pub fn batch(&self, entry: &MemEntry) -> Result<Arc<SpanBatch>> {
        if let Some(batch) = &entry.batch {
            return Ok(batch.clone());
        }
        let location = entry.location;
        let file = self.files.get(&location.file_number).ok_or_else(|| {
            EngineError::Internal(format!(
                "log file {} of sequence {} is not open",
                location.file_number, entry.sequence
            ))
        })?;
        let record = crate::log::read_record(file.file.as_ref(), &file.path, location)?;
        if record.sequence != entry.sequence {
            return Err(EngineError::corrupt(
                &file.path,
                location.start,
                format!("record holds sequence {}, expected {}", record.sequence, entry.sequence),
            ));
        }
        Ok(Arc::new(record.batch))
    }
}
