//! Read-side caches of a segment: each column's bitmap table, checksummed and
//! deserialized once per open segment and then shared as an `Arc` (bounded
//! process-wide), and a thread-local zstd decompression context reused for every chunk
//! a thread inflates.
//!
//! A cache lives inside its [`super::reader::Segment`], so it can only ever serve that
//! segment's bytes; it is dropped (and its bytes released from the global bound) with
//! the segment.
#![deny(clippy::unwrap_used, clippy::indexing_slicing)]

use std::cell::RefCell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use roaring::RoaringBitmap;

/// Most bytes (stored size of the bitmap tables) the bitmap caches of every open
/// segment hold together; past it tables are parsed per use and not kept.
pub const BITMAP_CACHE_BYTES_MAX: usize = 512 << 20;

/// Bytes currently charged by every [`BitmapCache`] of the process.
static CACHED_BYTES: AtomicUsize = AtomicUsize::new(0);

/// Every value bitmap of one column: keys (dictionary codes for strings, stored values
/// for ints and bools) in ascending order, each with its rows.
#[derive(Debug, Default, Clone)]
pub struct ColumnBitmaps {
    keys: Vec<u64>,
    bitmaps: Vec<RoaringBitmap>,
}

impl ColumnBitmaps {
    /// From (key, bitmap) pairs with keys ascending (as a bitmap table stores them).
    pub fn new(pairs: Vec<(u64, RoaringBitmap)>) -> ColumnBitmaps {
        let (keys, bitmaps) = pairs.into_iter().unzip();
        ColumnBitmaps { keys, bitmaps }
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// True when the column has no bitmap.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The keys, ascending.
    pub fn keys(&self) -> &[u64] {
        &self.keys
    }

    /// The rows holding `key`, if any row does.
    pub fn get(&self, key: u64) -> Option<&RoaringBitmap> {
        self.keys.binary_search(&key).ok().and_then(|i| self.bitmaps.get(i))
    }

    /// Every (key, rows), keys ascending.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (u64, &RoaringBitmap)> + '_ {
        self.keys.iter().copied().zip(self.bitmaps.iter())
    }

    /// Bytes the parsed bitmaps take in memory (roughly their serialized size).
    pub fn memory_bytes(&self) -> usize {
        self.keys.len() * 8 + self.bitmaps.iter().map(|b| b.serialized_size()).sum::<usize>()
    }
}

/// One open segment's parsed bitmap tables, a slot per column.
pub(crate) struct BitmapCache {
    slots: Vec<OnceLock<Arc<ColumnBitmaps>>>,
    /// Bytes this cache charged to [`CACHED_BYTES`] (released on drop).
    charged: AtomicUsize,
}

impl BitmapCache {
    /// An empty cache for a segment of `columns` columns.
    pub(crate) fn new(columns: usize) -> BitmapCache {
        BitmapCache { slots: (0..columns).map(|_| OnceLock::new()).collect(), charged: AtomicUsize::new(0) }
    }

    /// The parsed bitmaps of `column`: cached, or parsed by `load` and cached when the
    /// global bound leaves room for `bytes` more.
    pub(crate) fn get_or_load<E>(
        &self,
        column: usize,
        bytes: usize,
        load: impl FnOnce() -> Result<ColumnBitmaps, E>,
    ) -> Result<Arc<ColumnBitmaps>, E> {
        let Some(slot) = self.slots.get(column) else { return load().map(Arc::new) };
        if let Some(cached) = slot.get() {
            return Ok(cached.clone());
        }
        let parsed = Arc::new(load()?);
        if reserve(bytes) {
            if slot.set(parsed.clone()).is_ok() {
                self.charged.fetch_add(bytes, Ordering::Relaxed);
            } else {
                // Another thread filled the slot first; its charge stands.
                CACHED_BYTES.fetch_sub(bytes, Ordering::Relaxed);
            }
        }
        Ok(parsed)
    }

    /// Columns whose bitmaps are cached (for tests).
    #[cfg(test)]
    pub(crate) fn cached_columns(&self) -> usize {
        self.slots.iter().filter(|s| s.get().is_some()).count()
    }
}

impl Drop for BitmapCache {
    fn drop(&mut self) {
        CACHED_BYTES.fetch_sub(*self.charged.get_mut(), Ordering::Relaxed);
    }
}

/// Charges `bytes` to the global bound if they fit.
fn reserve(bytes: usize) -> bool {
    CACHED_BYTES
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |current| {
            current.checked_add(bytes).filter(|&total| total <= BITMAP_CACHE_BYTES_MAX)
        })
        .is_ok()
}

thread_local! {
    /// This thread's zstd decompression context, created on first use.
    static DECOMPRESSOR: RefCell<Option<zstd::bulk::Decompressor<'static>>> = const { RefCell::new(None) };
}

/// Inflates one zstd frame of at most `capacity` bytes with this thread's reused
/// decompression context (a fresh context costs about as much as a small block).
pub(crate) fn decompress(data: &[u8], capacity: usize) -> std::io::Result<Vec<u8>> {
    DECOMPRESSOR.with(|cell| {
        let Ok(mut slot) = cell.try_borrow_mut() else { return zstd::bulk::decompress(data, capacity) };
        if slot.is_none() {
            *slot = Some(zstd::bulk::Decompressor::new()?);
        }
        match slot.as_mut() {
            Some(decompressor) => decompressor.decompress(data, capacity),
            None => zstd::bulk::decompress(data, capacity),
        }
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn column_bitmaps_find_keys_in_order() {
        let a: RoaringBitmap = [1u32, 5].into_iter().collect();
        let b: RoaringBitmap = [2u32].into_iter().collect();
        let set = ColumnBitmaps::new(vec![(3, a.clone()), (9, b.clone())]);
        assert_eq!(set.len(), 2);
        assert_eq!(set.get(3), Some(&a));
        assert_eq!(set.get(9), Some(&b));
        assert_eq!(set.get(4), None);
        assert_eq!(set.iter().map(|(k, _)| k).collect::<Vec<_>>(), vec![3, 9]);
    }

    #[test]
    fn cache_loads_once_per_column() {
        let cache = BitmapCache::new(2);
        let mut loads = 0;
        for _ in 0..3 {
            let got = cache
                .get_or_load(1, 100, || {
                    loads += 1;
                    Ok::<_, ()>(ColumnBitmaps::new(vec![(7, [4u32].into_iter().collect())]))
                })
                .unwrap();
            assert!(got.get(7).unwrap().contains(4));
        }
        assert_eq!(loads, 1);
        assert_eq!(cache.cached_columns(), 1);
        // A column out of range is parsed, never cached.
        assert!(cache.get_or_load(5, 10, || Ok::<_, ()>(ColumnBitmaps::default())).unwrap().is_empty());
        assert!(cache.get_or_load(0, 10, || Err::<ColumnBitmaps, _>("bad")).is_err());
        assert_eq!(cache.cached_columns(), 1);
    }

    #[test]
    fn a_table_larger_than_the_bound_is_not_kept() {
        let cache = BitmapCache::new(1);
        let mut loads = 0;
        for _ in 0..2 {
            cache
                .get_or_load(0, BITMAP_CACHE_BYTES_MAX + 1, || {
                    loads += 1;
                    Ok::<_, ()>(ColumnBitmaps::default())
                })
                .unwrap();
        }
        assert_eq!(loads, 2);
        assert_eq!(cache.cached_columns(), 0);
    }

    #[test]
    fn reused_context_inflates_frame_after_frame() {
        for n in [0usize, 1, 1000, 70_000] {
            let raw: Vec<u8> = (0..n).map(|i| (i * 7 % 251) as u8).collect();
            let frame = zstd::bulk::compress(&raw, 3).unwrap();
            assert_eq!(decompress(&frame, n).unwrap(), raw);
        }
        assert!(decompress(b"not a zstd frame", 100).is_err());
        let raw = vec![9u8; 500];
        assert_eq!(decompress(&zstd::bulk::compress(&raw, 3).unwrap(), 500).unwrap(), raw);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod segment_tests {
    use std::path::Path;
    use std::sync::Arc;

    use super::super::reader::Segment;
    use super::super::writer::build_segment;
    use super::super::{sortable_int, AttrScope, ValueType};
    use crate::batch::SpanBatch;
    use crate::model::{AnyValue, KeyValue, Span, SpanId, TraceId};

    fn segment(offset: i64, n: usize) -> Segment {
        let spans: Vec<Span> = (0..n)
            .map(|i| Span {
                trace_id: TraceId((i as u128 + 1).to_be_bytes()),
                span_id: SpanId((i as u64 + 1).to_le_bytes()),
                name: format!("op-{}", (i as i64 + offset) % 5),
                attributes: vec![KeyValue::new("code", AnyValue::Int(offset + (i % 4) as i64))],
                ..Span::default()
            })
            .collect();
        let batch = SpanBatch::from_spans(&spans);
        Segment::open(Path::new("seg"), Arc::new(build_segment(&[&batch], 1, None))).unwrap()
    }

    #[test]
    fn each_segment_serves_only_its_own_bitmaps() {
        // Same column numbers, different contents: interleaved reads of both (and of a
        // segment opened after another was dropped) must each match an uncached parse.
        let a = segment(0, 300);
        let b = segment(100, 1000);
        for _ in 0..2 {
            for s in [&a, &b] {
                for column in 0..s.directory().columns.len() {
                    let uncached = s.bitmaps(column).unwrap();
                    let cached = s.bitmap_set(column).unwrap();
                    assert_eq!(cached.is_some(), uncached.is_some());
                    if let (Some(cached), Some(uncached)) = (cached, uncached) {
                        let pairs: Vec<_> = cached.iter().map(|(k, b)| (k, b.clone())).collect();
                        assert_eq!(pairs, uncached);
                    }
                }
            }
        }
        let code_a = a.attr_column(AttrScope::Span, "code", ValueType::Int).unwrap();
        let code_b = b.attr_column(AttrScope::Span, "code", ValueType::Int).unwrap();
        assert_eq!(code_a, code_b);
        assert_eq!(a.bitmap(code_a, sortable_int(1)).unwrap().unwrap().len(), 75);
        assert!(b.bitmap(code_b, sortable_int(1)).unwrap().unwrap().is_empty());
        assert_eq!(b.bitmap(code_b, sortable_int(101)).unwrap().unwrap().len(), 250);
        drop(a);
        let c = segment(200, 40);
        assert!(c.bitmap(code_a, sortable_int(1)).unwrap().unwrap().is_empty());
        assert_eq!(c.bitmap(code_a, sortable_int(201)).unwrap().unwrap().len(), 10);
        assert!(b.bitmap_cache_columns() > 0);
    }
}
