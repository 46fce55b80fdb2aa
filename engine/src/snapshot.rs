//! `Snapshot`: a consistent, immutable view of a store, taken without blocking writers.
//!
//! A snapshot holds the list of sealed segments and the memtable's entries as they
//! were when it was taken (segments and batches are shared `Arc`s, so taking one copies
//! pointers, never spans). Sealing swaps the segment list and trims the memtable under
//! one lock, so a span is in exactly one of the two in any snapshot. Later appends are
//! not in it; everything in it stays readable for as long as it lives (a segment file
//! removed by compaction stays mapped).

use std::sync::Arc;

use crate::batch::SpanBatch;
use crate::error::Result;
use crate::manifest::SegmentEntry;
use crate::memtable::MemView;
use crate::model::{Span, TraceId};
use crate::segment::reader::Segment;
use crate::segment::BLOCK_ROWS;

/// A sealed segment of a snapshot, with its manifest entry.
pub struct SegmentHandle {
    /// What the manifest says of it.
    pub entry: SegmentEntry,
    /// The open segment.
    pub segment: Segment,
}

enum PartSegment {
    Sealed(Arc<SegmentHandle>),
    Memtable(Arc<Segment>),
}

/// One part of a snapshot: a sealed segment or an in-memory segment of memtable spans.
/// Queries read every part through the same [`Segment`] interface: row counts, time
/// ranges, zone maps, bitmaps, value indexes, blocks decoded on demand.
pub struct Part {
    segment: PartSegment,
}

impl Part {
    /// The segment.
    pub fn segment(&self) -> &Segment {
        match &self.segment {
            PartSegment::Sealed(h) => &h.segment,
            PartSegment::Memtable(s) => s,
        }
    }

    /// True for a sealed segment file, false for memtable spans.
    pub fn is_sealed(&self) -> bool {
        matches!(self.segment, PartSegment::Sealed(_))
    }

    /// A short name: the segment file, or `memtable`.
    pub fn name(&self) -> String {
        match &self.segment {
            PartSegment::Sealed(h) => crate::segment::segment_file_name(h.entry.file_number),
            PartSegment::Memtable(_) => "memtable".to_owned(),
        }
    }
}

/// A consistent view of the store.
#[derive(Clone)]
pub struct Snapshot {
    segments: Arc<Vec<Arc<SegmentHandle>>>,
    mem: MemView,
}

/// One batch of a snapshot with its sequence number.
pub struct SnapshotBatch {
    /// Sequence number of the batch's log record.
    pub sequence: u64,
    /// The batch.
    pub batch: Arc<SpanBatch>,
}

impl Snapshot {
    pub(crate) fn new(segments: Arc<Vec<Arc<SegmentHandle>>>, mem: MemView) -> Snapshot {
        Snapshot { segments, mem }
    }

    /// Spans in the snapshot: sealed and in the memtable.
    pub fn span_count(&self) -> u64 {
        self.sealed_span_count() + self.mem.span_count()
    }

    /// Spans in sealed segments.
    pub fn sealed_span_count(&self) -> u64 {
        self.segments.iter().map(|s| s.segment.row_count() as u64).sum()
    }

    /// The sealed segments, oldest first.
    pub fn segments(&self) -> &[Arc<SegmentHandle>] {
        &self.segments
    }

    /// Everything in the snapshot as segments, for queries: the sealed segments, then
    /// the memtable as in-memory segments (see [`MemView::segments`]). Each span is in
    /// exactly one of them.
    pub fn parts(&self) -> Result<Vec<Part>> {
        let mut parts: Vec<Part> =
            self.segments.iter().map(|h| Part { segment: PartSegment::Sealed(h.clone()) }).collect();
        for segment in self.mem.segments()? {
            parts.push(Part { segment: PartSegment::Memtable(segment) });
        }
        Ok(parts)
    }

    /// Batches in the memtable part of the snapshot.
    pub fn batch_count(&self) -> usize {
        self.mem.entries().len()
    }

    /// The highest sequence number in the memtable part of the snapshot.
    pub fn last_sequence(&self) -> Option<u64> {
        self.mem.entries().last().map(|e| e.sequence)
    }

    /// Earliest and latest span start in the snapshot, ns.
    pub fn time_range(&self) -> Option<(u64, u64)> {
        let entries = self.mem.entries();
        let mem = entries.iter().map(|e| (e.min_start_unix_nano, e.max_start_unix_nano));
        let sealed = self
            .segments
            .iter()
            .filter(|s| s.segment.row_count() > 0)
            .map(|s| (s.entry.min_start_unix_nano, s.entry.max_start_unix_nano));
        let all: Vec<(u64, u64)> = mem.chain(sealed).collect();
        let min = all.iter().map(|r| r.0).min()?;
        let max = all.iter().map(|r| r.1).max()?;
        Some((min, max))
    }

    /// Every batch of the memtable part, in sequence order; batches evicted from memory
    /// are read back from the log, so an item can be an error naming a damaged file.
    pub fn batches(&self) -> impl Iterator<Item = Result<SnapshotBatch>> + '_ {
        self.mem
            .entries()
            .iter()
            .map(move |entry| Ok(SnapshotBatch { sequence: entry.sequence, batch: self.mem.batch(entry)? }))
    }

    /// Batches whose span starts may fall in `[since, until)`, in sequence order.
    pub fn batches_in(&self, since: u64, until: u64) -> impl Iterator<Item = Result<SnapshotBatch>> + '_ {
        self.mem
            .entries()
            .iter()
            .filter(move |e| e.max_start_unix_nano >= since && e.min_start_unix_nano < until)
            .map(move |entry| Ok(SnapshotBatch { sequence: entry.sequence, batch: self.mem.batch(entry)? }))
    }

    /// Every span as an owned row: sealed segments first (each in its row order), then
    /// the memtable in sequence order.
    pub fn spans(&self) -> Result<Vec<Span>> {
        let mut spans = Vec::with_capacity(usize::try_from(self.span_count()).unwrap_or(0));
        for handle in self.segments.iter() {
            let rows = handle.segment.row_count() as u32;
            let mut start = 0u32;
            while start < rows {
                let end = (start + BLOCK_ROWS as u32).min(rows);
                let chunk: Vec<u32> = (start..end).collect();
                spans.extend(handle.segment.spans(&chunk)?);
                start = end;
            }
        }
        for item in self.batches() {
            spans.extend(item?.batch.to_spans());
        }
        Ok(spans)
    }

    /// Every span of one trace, ordered by start time.
    pub fn trace(&self, trace_id: TraceId) -> Result<Vec<Span>> {
        let mut spans = Vec::new();
        for handle in self.segments.iter() {
            let rows = handle.segment.trace_rows(&trace_id)?;
            if !rows.is_empty() {
                spans.extend(handle.segment.spans(&rows)?);
            }
        }
        for item in self.batches() {
            let item = item?;
            for (row, id) in item.batch.trace_ids().iter().enumerate() {
                if *id == trace_id {
                    spans.push(item.batch.to_span(row));
                }
            }
        }
        spans.sort_by_key(|s| (s.start_unix_nano, s.span_id));
        Ok(spans)
    }
}
