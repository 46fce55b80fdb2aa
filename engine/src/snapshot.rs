//! `Snapshot`: a consistent, immutable view of a store, taken without blocking writers.
//!
//! A snapshot holds the memtable's entries as they were when it was taken (batches are
//! shared `Arc`s, so taking one copies pointers, never spans). Later appends are not in
//! it; everything in it stays readable for as long as it lives.

use std::sync::Arc;

use crate::batch::SpanBatch;
use crate::error::Result;
use crate::memtable::MemView;
use crate::model::{Span, TraceId};

/// A consistent view of the store.
#[derive(Clone)]
pub struct Snapshot {
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
    pub(crate) fn new(mem: MemView) -> Snapshot {
        Snapshot { mem }
    }

    /// Spans in the snapshot.
    pub fn span_count(&self) -> u64 {
        self.mem.span_count()
    }

    /// Batches in the snapshot.
    pub fn batch_count(&self) -> usize {
        self.mem.entries().len()
    }

    /// The highest sequence number in the snapshot.
    pub fn last_sequence(&self) -> Option<u64> {
        self.mem.entries().last().map(|e| e.sequence)
    }

    /// Earliest and latest span start in the snapshot, ns.
    pub fn time_range(&self) -> Option<(u64, u64)> {
        let entries = self.mem.entries();
        let min = entries.iter().map(|e| e.min_start_unix_nano).min()?;
        let max = entries.iter().map(|e| e.max_start_unix_nano).max()?;
        Some((min, max))
    }

    /// Every batch, in sequence order; batches evicted from memory are read back from the
    /// log, so an item can be an error naming a damaged file.
    pub fn batches(&self) -> impl Iterator<Item = Result<SnapshotBatch>> + '_ {
        self.mem.entries().iter().map(move |entry| {
            Ok(SnapshotBatch {
                sequence: entry.sequence,
                batch: self.mem.batch(entry)?,
            })
        })
    }

    /// Batches whose span starts may fall in `[since, until)`, in sequence order.
    pub fn batches_in(
        &self,
        since: u64,
        until: u64,
    ) -> impl Iterator<Item = Result<SnapshotBatch>> + '_ {
        self.mem
            .entries()
            .iter()
            .filter(move |e| e.max_start_unix_nano >= since && e.min_start_unix_nano < until)
            .map(move |entry| {
                Ok(SnapshotBatch {
                    sequence: entry.sequence,
                    batch: self.mem.batch(entry)?,
                })
            })
    }

    /// Every span as an owned row, in sequence order.
    pub fn spans(&self) -> Result<Vec<Span>> {
        let mut spans = Vec::with_capacity(usize::try_from(self.span_count()).unwrap_or(0));
        for item in self.batches() {
            spans.extend(item?.batch.to_spans());
        }
        Ok(spans)
    }

    /// Every span of one trace, ordered by start time.
    pub fn trace(&self, trace_id: TraceId) -> Result<Vec<Span>> {
        let mut spans = Vec::new();
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
