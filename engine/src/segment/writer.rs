//! Builds a segment file from rows pushed in their final order.
//!
//! Columns are discovered from the data: every (scope, key, type) of a scalar attribute
//! becomes a sparse column; everything without a column of its own (events, links,
//! nested values, scopes, trace state, flags, dropped counts, attribute order) goes into
//! the per-row `rest` blob, so a span comes back out exactly as it went in.
#![deny(clippy::unwrap_used, clippy::indexing_slicing)]

use std::collections::HashMap;

use roaring::RoaringBitmap;
use rustc_hash::FxHashMap;

use super::encoding::{encode_bools, encode_ints, encode_strings, pack};
use super::value_index::hash_bits_for;
use super::{
    bloom_positions, sortable_double, sortable_int, stable_hash, AttrScope, BlockMeta, ChunkRef, ColumnKind,
    ColumnMeta, Directory, Intrinsic, Storage, ValueType, BITMAP_CARDINALITY_MAX, BLOCK_ROWS, BLOOM_BITS_PER_KEY,
    SEGMENT_HEADER_SIZE, SEGMENT_MAGIC, SEGMENT_VERSION,
};
use crate::batch::{Attrs, SpanBatch, ValueView};
use crate::codec::Writer;
use crate::model::AnyValue;

mod merge;
pub use merge::merge_segments;

/// Values seen before a column decides whether to intern its strings.
const INTERN_PROBE_VALUES: usize = 4096;

/// Strings of one column: interned while they repeat, kept plain (one arena, no
/// hashing) once the first values show a column of mostly distinct ids.
#[derive(Default)]
struct StrValues {
    ids: FxHashMap<Box<str>, u32>,
    distinct: Vec<Box<str>>,
    codes: Vec<u32>,
    /// Plain mode: all values concatenated, with their ends.
    plain: Option<(String, Vec<u32>)>,
    /// Codes by the address and length of a value in the current batch's arena: a
    /// batch stores a repeated short string once, so most values hit here without
    /// hashing their bytes. Valid only while that batch is borrowed (cleared by
    /// `SegmentBuilder::push_batch` at its end).
    by_address: FxHashMap<(usize, usize), u32>,
}

impl StrValues {
    /// Pushes a value that lives in the batch being pushed (see `by_address`).
    fn push_batch_value(&mut self, value: &str) {
        if self.plain.is_some() {
            return self.push(value);
        }
        let address = (value.as_ptr() as usize, value.len());
        if let Some(&code) = self.by_address.get(&address) {
            self.codes.push(code);
            return;
        }
        self.push(value);
        if self.plain.is_none() {
            if let Some(&code) = self.codes.last() {
                self.by_address.insert(address, code);
            }
        }
    }

    /// Pushes value `input_code` of another segment's dictionary: `remap` holds this
    /// column's code for each input code already met (`u32::MAX` for none yet).
    fn push_mapped(&mut self, input_code: u32, value: &str, remap: &mut [u32]) {
        if self.plain.is_some() {
            return self.push(value);
        }
        if let Some(&code) = remap.get(input_code as usize).filter(|&&c| c != u32::MAX) {
            self.codes.push(code);
            self.check_plain();
            return;
        }
        self.push(value);
        if self.plain.is_none() {
            if let (Some(&code), Some(slot)) = (self.codes.last(), remap.get_mut(input_code as usize)) {
                *slot = code;
            }
        }
    }

    fn push(&mut self, value: &str) {
        if let Some((arena, ends)) = &mut self.plain {
            arena.push_str(value);
            ends.push(arena.len() as u32);
            return;
        }
        let code = match self.ids.get(value) {
            Some(&code) => code,
            None => {
                let code = self.distinct.len() as u32;
                self.ids.insert(value.into(), code);
                self.distinct.push(value.into());
                code
            }
        };
        self.codes.push(code);
        self.check_plain();
    }

    /// After the first `INTERN_PROBE_VALUES` values, switches a column of mostly
    /// distinct values to plain storage.
    fn check_plain(&mut self) {
        if self.codes.len() == INTERN_PROBE_VALUES && self.distinct.len() * 4 > self.codes.len() * 3 {
            // Mostly distinct: switch to plain storage and stop hashing.
            let mut arena = String::new();
            let mut ends = Vec::new();
            for &c in &self.codes {
                arena.push_str(self.distinct.get(c as usize).map(|s| &**s).unwrap_or(""));
                ends.push(arena.len() as u32);
            }
            self.plain = Some((arena, ends));
            self.ids = FxHashMap::default();
            self.distinct = Vec::new();
            self.codes = Vec::new();
            self.by_address = FxHashMap::default();
        }
    }

    fn len(&self) -> usize {
        match &self.plain {
            Some((_, ends)) => ends.len(),
            None => self.codes.len(),
        }
    }
}

enum Values {
    Str(StrValues),
    /// Order-preserving u64 forms (see `sortable_int`) for ints; raw for intrinsics.
    Int(Vec<u64>),
    /// f64 bits.
    Double(Vec<u64>),
    Bool(Vec<bool>),
}

/// A sparse column being built: the rows that have a value, and the values.
struct ColumnBuilder {
    kind: ColumnKind,
    rows: Vec<u32>,
    values: Values,
}

impl ColumnBuilder {
    fn new(kind: ColumnKind, values: Values) -> Self {
        ColumnBuilder { kind, rows: Vec::new(), values }
    }
}

/// Assigns attribute columns to (scope, type, key) in the order first met, and tracks
/// which columns already hold a value of the current row (a repeat is kept inline).
///
/// The rest blob's side and the attribute-value side of a builder each run one over
/// the same rows in the same order, so they agree on every column number without
/// sharing state, and `build_segment` can run them on two threads.
#[derive(Default)]
struct ColumnRegistry {
    index: FxHashMap<(AttrScope, ValueType), FxHashMap<Box<str>, usize>>,
    kinds: Vec<ColumnKind>,
    last_row: Vec<u32>,
    /// Column by (key address, key length, scope and type) in the batch being pushed:
    /// a batch stores each key once, so most lookups skip hashing the key's bytes.
    /// Cleared at the end of every batch (addresses mean something only while that
    /// batch is borrowed).
    by_address: FxHashMap<(usize, usize, u8), usize>,
}

impl ColumnRegistry {
    /// The column of (scope, type, key), created when first met.
    fn column(&mut self, scope: AttrScope, value_type: ValueType, key: &str) -> usize {
        let by_key = self.index.entry((scope, value_type)).or_default();
        if let Some(&column) = by_key.get(key) {
            return column;
        }
        let column = self.kinds.len();
        self.kinds.push(ColumnKind::Attr { scope, key: key.to_owned(), value_type });
        self.last_row.push(u32::MAX);
        by_key.insert(key.into(), column);
        column
    }

    /// The column of a scalar attribute of row `row`, and whether it is the first value
    /// of that column in the row. `by_address` is used only when `in_batch`.
    fn claim(&mut self, scope: AttrScope, value_type: ValueType, key: &str, row: u32, in_batch: bool) -> (usize, bool) {
        let address = (key.as_ptr() as usize, key.len(), ((scope as u8) << 4) | value_type as u8);
        let cached = if in_batch { self.by_address.get(&address).copied() } else { None };
        let column = match cached {
            Some(column) => column,
            None => {
                let column = self.column(scope, value_type, key);
                if in_batch {
                    self.by_address.insert(address, column);
                }
                column
            }
        };
        let first = match self.last_row.get_mut(column) {
            Some(last) if *last != row => {
                *last = row;
                true
            }
            _ => false,
        };
        (column, first)
    }
}

/// The attribute-value side of a builder: one sparse column per (scope, key, type).
#[derive(Default)]
struct AttrColumns {
    registry: ColumnRegistry,
    columns: Vec<ColumnBuilder>,
    row_count: u32,
}

impl AttrColumns {
    fn push_batch(&mut self, batch: &SpanBatch) {
        for row in 0..batch.len() {
            self.push_row(batch, row, true);
        }
        self.end_batch();
    }

    fn end_batch(&mut self) {
        self.registry.by_address.clear();
        for column in &mut self.columns {
            if let Values::Str(values) = &mut column.values {
                values.by_address.clear();
            }
        }
    }

    /// Column `index` of the registry, creating the columns up to it.
    fn column_mut(&mut self, index: usize) -> Option<&mut ColumnBuilder> {
        while self.columns.len() <= index {
            let kind = self.registry.kinds.get(self.columns.len())?;
            let values = match kind {
                ColumnKind::Attr { value_type: ValueType::Int, .. } => Values::Int(Vec::new()),
                ColumnKind::Attr { value_type: ValueType::Double, .. } => Values::Double(Vec::new()),
                ColumnKind::Attr { value_type: ValueType::Bool, .. } => Values::Bool(Vec::new()),
                _ => Values::Str(StrValues::default()),
            };
            self.columns.push(ColumnBuilder::new(kind.clone(), values));
        }
        self.columns.get_mut(index)
    }

    fn push_row(&mut self, batch: &SpanBatch, row: usize, in_batch: bool) {
        let index = self.row_count;
        self.row_count += 1;
        for (scope, attrs) in
            [(AttrScope::Span, batch.span_attributes(row)), (AttrScope::Resource, batch.resource_attributes(row))]
        {
            for (key, value) in attrs.iter() {
                let Some(typed) = value.scalar() else { continue };
                let (column_index, first) = self.registry.claim(scope, typed.value_type(), key, index, in_batch);
                if !first {
                    continue;
                }
                let Some(column) = self.column_mut(column_index) else { continue };
                column.rows.push(index);
                match (&mut column.values, typed) {
                    (Values::Str(v), Scalar::Str(s)) if in_batch => v.push_batch_value(s),
                    (Values::Str(v), Scalar::Str(s)) => v.push(s),
                    (Values::Int(v), Scalar::Int(i)) => v.push(sortable_int(i)),
                    (Values::Double(v), Scalar::Double(d)) => v.push(d.to_bits()),
                    (Values::Bool(v), Scalar::Bool(b)) => v.push(b),
                    _ => {}
                }
            }
        }
    }
}

/// Accumulates rows, then writes a segment.
pub struct SegmentBuilder {
    row_count: u32,
    trace_ids: Vec<[u8; 16]>,
    span_ids: Vec<[u8; 8]>,
    parents: Vec<[u8; 8]>,
    name: ColumnBuilder,
    kind: Vec<u64>,
    start: Vec<u64>,
    duration: Vec<u64>,
    status: Vec<u64>,
    status_message: ColumnBuilder,
    rest: Vec<u8>,
    rest_ends: Vec<u32>,
    /// The rest blob's view of the attribute columns (numbers and repeats).
    layout: ColumnRegistry,
    attrs: AttrColumns,
    scopes: FxHashMap<Vec<u8>, u32>,
    scope_list: Vec<Vec<u8>>,
    /// Segment scope index of a batch scope index, for the batch being pushed, so a
    /// batch's scope is encoded once, not once per row. Cleared after every batch.
    scope_cache: FxHashMap<usize, u32>,
    rest_buffer: Writer,
    min_sequence: u64,
    max_sequence: u64,
}

impl Default for SegmentBuilder {
    fn default() -> Self {
        Self::new()
    }
}

const REST_INLINE: u64 = 1;

/// An attribute kept whole in the rest blob: the inline code, its key and its value.
fn write_inline(rest: &mut Writer, key: &str, value: &ValueView<'_>) {
    rest.varint(REST_INLINE);
    rest.len_bytes(key.as_bytes());
    encode_any(rest, &value.to_any());
}

impl SegmentBuilder {
    /// An empty builder.
    pub fn new() -> Self {
        SegmentBuilder {
            row_count: 0,
            trace_ids: Vec::new(),
            span_ids: Vec::new(),
            parents: Vec::new(),
            name: ColumnBuilder::new(ColumnKind::Intrinsic(Intrinsic::Name), Values::Str(StrValues::default())),
            kind: Vec::new(),
            start: Vec::new(),
            duration: Vec::new(),
            status: Vec::new(),
            status_message: ColumnBuilder::new(
                ColumnKind::Intrinsic(Intrinsic::StatusMessage),
                Values::Str(StrValues::default()),
            ),
            rest: Vec::new(),
            rest_ends: Vec::new(),
            layout: ColumnRegistry::default(),
            attrs: AttrColumns::default(),
            scopes: FxHashMap::default(),
            scope_list: Vec::new(),
            scope_cache: FxHashMap::default(),
            rest_buffer: Writer::default(),
            min_sequence: u64::MAX,
            max_sequence: 0,
        }
    }

    /// Rows pushed so far.
    pub fn row_count(&self) -> usize {
        self.row_count as usize
    }

    /// Records that spans of log sequences `min..=max` are in this segment.
    pub fn note_sequences(&mut self, min: u64, max: u64) {
        self.min_sequence = self.min_sequence.min(min);
        self.max_sequence = self.max_sequence.max(max);
    }

    /// Adds every row of `batch` (`finish` sorts). Faster than `push` per row: keys and
    /// repeated values are looked up by their address in the batch's arena.
    pub fn push_batch(&mut self, batch: &SpanBatch) {
        self.push_core_batch(batch);
        self.attrs.push_batch(batch);
    }

    /// Adds row `row` of `batch`, in any order (`finish` sorts).
    pub fn push(&mut self, batch: &SpanBatch, row: usize) {
        self.push_core_row(batch, row, false);
        self.scope_cache.clear();
        self.attrs.push_row(batch, row, false);
    }

    /// The rest blob and intrinsic side of `push_batch`.
    fn push_core_batch(&mut self, batch: &SpanBatch) {
        for row in 0..batch.len() {
            self.push_core_row(batch, row, true);
        }
        self.scope_cache.clear();
        self.layout.by_address.clear();
        for column in [&mut self.name, &mut self.status_message] {
            if let Values::Str(values) = &mut column.values {
                values.by_address.clear();
            }
        }
    }

    fn push_core_row(&mut self, batch: &SpanBatch, row: usize, in_batch: bool) {
        let index = self.row_count;
        self.row_count += 1;
        let trace_id = batch.trace_id(row);
        self.trace_ids.push(trace_id.0);
        self.span_ids.push(batch.span_id(row).0);
        self.parents.push(batch.parent_span_id(row).map(|p| p.0).unwrap_or_default());
        if let Values::Str(values) = &mut self.name.values {
            if in_batch {
                values.push_batch_value(batch.name(row));
            } else {
                values.push(batch.name(row));
            }
        }
        self.name.rows.push(index);
        self.kind.push(batch.kind(row) as u64);
        self.start.push(batch.start_unix_nano(row));
        self.duration.push(batch.duration_ns(row));
        self.status.push(batch.status_code(row) as u64);
        let message = batch.status_message(row);
        if !message.is_empty() {
            if let Values::Str(values) = &mut self.status_message.values {
                values.push(message);
            }
            self.status_message.rows.push(index);
        }
        let mut rest = std::mem::take(&mut self.rest_buffer);
        rest.buf.clear();
        rest.varint(u64::from(batch.flags(row)));
        rest.len_bytes(batch.trace_state(row).as_bytes());
        let (dropped_attributes, dropped_events, dropped_links) = batch.dropped_counts(row);
        rest.varint(u64::from(dropped_attributes));
        rest.varint(u64::from(dropped_events));
        rest.varint(u64::from(dropped_links));
        let scope_index = match self.scope_cache.get(&batch.scope_of(row)) {
            Some(&i) => i,
            None => {
                let scope = batch.scope_encoded(row);
                let i = match self.scopes.get(&scope) {
                    Some(&i) => i,
                    None => {
                        let i = self.scope_list.len() as u32;
                        self.scopes.insert(scope.clone(), i);
                        self.scope_list.push(scope);
                        i
                    }
                };
                self.scope_cache.insert(batch.scope_of(row), i);
                i
            }
        };
        rest.varint(u64::from(scope_index));
        let (resource_dropped, resource_schema) = batch.resource_meta(row);
        rest.varint(u64::from(resource_dropped));
        rest.len_bytes(resource_schema.as_bytes());
        self.push_layout(&mut rest, AttrScope::Span, batch.span_attributes(row), index, in_batch);
        self.push_layout(&mut rest, AttrScope::Resource, batch.resource_attributes(row), index, in_batch);
        let start = batch.start_unix_nano(row);
        batch.encode_events_and_links(row, start, &mut rest);
        self.rest.extend_from_slice(&rest.buf);
        self.rest_ends.push(self.rest.len() as u32);
        self.rest_buffer = rest;
    }

    /// Writes an attribute list's layout into the rest blob: a column code per scalar
    /// that has a column at this row, the whole attribute for everything else.
    fn push_layout(&mut self, rest: &mut Writer, scope: AttrScope, attrs: Attrs<'_>, row: u32, in_batch: bool) {
        rest.varint(attrs.len() as u64);
        for (key, value) in attrs.iter() {
            let Some(typed) = value.scalar() else {
                write_inline(rest, key, &value);
                continue;
            };
            let (column_index, first) = self.layout.claim(scope, typed.value_type(), key, row, in_batch);
            if first {
                rest.varint((column_index as u64 + 1) << 1);
            } else {
                // A repeated key of the same type in one span: the column holds one
                // value per row, so the repeat is kept inline.
                write_inline(rest, key, &value);
            }
        }
    }

    /// The sorted row order: each trace's rows together, sorted by (start, span id,
    /// arrival), and traces in order of their first start (ties by trace id). Rows of a
    /// trace stay adjacent (trace lookups read one block or two; parents are row
    /// distances), and `start` rises along the segment, so each block's zone map covers
    /// seconds rather than the segment's whole time range: TIMESERIES and SINCE/UNTIL
    /// decide most blocks from the zone map alone (docs/ARCHITECTURE.md, "Row order").
    fn row_order(&self) -> Vec<u32> {
        // Integer keys (a trace id as a big-endian u128 compares like its bytes), so the
        // sorts never call memcmp.
        let mut keys: Vec<(u128, u64, u64, u32)> = (0..self.row_count)
            .map(|i| {
                let at = i as usize;
                (
                    u128::from_be_bytes(self.trace_ids.get(at).copied().unwrap_or_default()),
                    self.start.get(at).copied().unwrap_or_default(),
                    u64::from_be_bytes(self.span_ids.get(at).copied().unwrap_or_default()),
                    i,
                )
            })
            .collect();
        keys.sort_unstable();
        // Runs of one trace: (first start, trace id, first key, end key); the first
        // start is the run's first key's, as keys sort by start within a trace.
        let mut runs: Vec<(u64, u128, u32, u32)> = Vec::new();
        let mut at = 0usize;
        while let Some(&(trace, start, _, _)) = keys.get(at) {
            let len = keys.get(at..).unwrap_or_default().iter().take_while(|k| k.0 == trace).count();
            runs.push((start, trace, at as u32, (at + len) as u32));
            at += len;
        }
        runs.sort_unstable();
        let mut order = Vec::with_capacity(keys.len());
        for &(_, _, begin, end) in &runs {
            order.extend(keys.get(begin as usize..end as usize).unwrap_or_default().iter().map(|k| k.3));
        }
        order
    }

    /// Writes the segment file's bytes for file number `file_number`.
    ///
    /// Rows are pushed in whatever order they arrive (reading batches front to back
    /// keeps memory access sequential); here they are sorted by (the trace's first
    /// start, trace id, start, span id, arrival) by permuting the compact column arrays,
    /// and the columns are encoded on two threads.
    pub fn finish(mut self, file_number: u64) -> Vec<u8> {
        let rows = self.row_count as usize;
        let order = self.row_order();
        let mut inverse = vec![0u32; rows];
        for (new, &old) in order.iter().enumerate() {
            if let Some(slot) = inverse.get_mut(old as usize) {
                *slot = new as u32;
            }
        }
        let gather =
            |v: &[u64]| -> Vec<u64> { order.iter().map(|&i| v.get(i as usize).copied().unwrap_or_default()).collect() };
        self.trace_ids = order.iter().map(|&i| self.trace_ids.get(i as usize).copied().unwrap_or_default()).collect();
        self.span_ids = order.iter().map(|&i| self.span_ids.get(i as usize).copied().unwrap_or_default()).collect();
        self.parents = order.iter().map(|&i| self.parents.get(i as usize).copied().unwrap_or_default()).collect();
        self.kind = gather(&self.kind);
        self.start = gather(&self.start);
        self.duration = gather(&self.duration);
        self.status = gather(&self.status);
        let mut rest = Vec::with_capacity(self.rest.len());
        let mut rest_ends = Vec::with_capacity(rows);
        for &i in &order {
            let i = i as usize;
            let begin = if i == 0 { 0 } else { self.rest_ends.get(i - 1).copied().unwrap_or(0) as usize };
            let end = self.rest_ends.get(i).copied().unwrap_or(0) as usize;
            rest.extend_from_slice(self.rest.get(begin..end).unwrap_or_default());
            rest_ends.push(rest.len() as u32);
        }
        self.rest = rest;
        self.rest_ends = rest_ends;

        let mut out = Writer::with_capacity(rows * 48 + 4096);
        out.bytes(&SEGMENT_MAGIC);
        out.u16(SEGMENT_VERSION);
        out.u16(0);
        out.u64(file_number);
        debug_assert_eq!(out.buf.len(), SEGMENT_HEADER_SIZE);
        let all_rows: Vec<u32> = (0..self.row_count).collect();
        let (codes, external_rows, external_ids) = parent_codes(&self.trace_ids, &self.span_ids, &self.parents);

        // Every column encodes into its own buffer; buffers are then laid out in order
        // and their chunk offsets shifted into place.
        let SegmentBuilder {
            trace_ids,
            span_ids,
            name,
            kind,
            start,
            duration,
            status,
            status_message,
            rest,
            rest_ends,
            attrs,
            layout,
            scope_list,
            min_sequence,
            max_sequence,
            ..
        } = self;
        let all = &all_rows;
        // Each column job renumbers its own rows into the sorted order first.
        let inverse = &inverse;
        let order = &order;
        let mut jobs: Vec<Job<'_>> = vec![
            job(|w| write_trace_ids(w, &trace_ids, rows)),
            job(|w| write_fixed(w, Intrinsic::SpanId, &span_ids, rows)),
            job(|w| write_ints(w, ColumnKind::Intrinsic(Intrinsic::ParentCode), all, &codes, rows, false)),
            job(|w| write_sparse_fixed(w, Intrinsic::ParentId, &external_rows, &external_ids, rows)),
            job(move |w| write_column(w, name.permuted(order, inverse), rows)),
            job(|w| write_ints(w, ColumnKind::Intrinsic(Intrinsic::Kind), all, &kind, rows, true)),
            job(|w| write_starts(w, &start, rows)),
            job(|w| write_ints(w, ColumnKind::Intrinsic(Intrinsic::Duration), all, &duration, rows, false)),
            job(|w| write_ints(w, ColumnKind::Intrinsic(Intrinsic::Status), all, &status, rows, true)),
            job(move |w| write_column(w, status_message.permuted(order, inverse), rows)),
            job(|w| write_blobs(w, &rest, &rest_ends, rows)),
        ];
        debug_assert_eq!(attrs.columns.len(), layout.kinds.len());
        for column in attrs.columns {
            jobs.push(job(move |w| write_column(w, column.permuted(order, inverse), rows)));
        }
        let results = run_jobs(jobs);
        let mut columns = Vec::with_capacity(results.len());
        for (buffer, mut meta) in results {
            let base = out.buf.len() as u64;
            meta.shift(base);
            out.bytes(&buffer.buf);
            columns.push(meta);
        }

        // Trace bloom filter over distinct trace ids.
        let mut distinct_traces = trace_ids.clone();
        distinct_traces.dedup();
        let bits = (distinct_traces.len() * BLOOM_BITS_PER_KEY).max(64) as u64;
        let mut bloom = vec![0u8; bits.div_ceil(8) as usize];
        for id in &distinct_traces {
            for bit in bloom_positions(id, bits) {
                if let Some(byte) = bloom.get_mut((bit / 8) as usize) {
                    *byte |= 1 << (bit % 8);
                }
            }
        }
        let mut bloom_bytes = Writer::with_capacity(bloom.len() + 8);
        bloom_bytes.u64(bits);
        bloom_bytes.bytes(&bloom);
        let trace_bloom = write_chunk(&mut out, &bloom_bytes.buf, false);
        let mut scopes = Writer::default();
        scopes.varint(scope_list.len() as u64);
        for s in &scope_list {
            scopes.len_bytes(s);
        }
        let scopes = write_chunk(&mut out, &scopes.buf, true);

        let directory = Directory {
            row_count: rows as u64,
            min_start_unix_nano: start.iter().copied().min().unwrap_or(0),
            max_start_unix_nano: start.iter().copied().max().unwrap_or(0),
            min_sequence: if min_sequence == u64::MAX { 0 } else { min_sequence },
            max_sequence,
            trace_bloom,
            scopes,
            columns,
        };
        let encoded = directory.encode();
        let offset = out.buf.len() as u64;
        out.bytes(&encoded);
        out.u64(offset);
        out.u32(encoded.len() as u32);
        out.u32(crc32fast::hash(&encoded));
        out.bytes(&SEGMENT_MAGIC);
        out.buf
    }
}

type Job<'a> = Box<dyn FnOnce() -> (Writer, ColumnMeta) + Send + 'a>;

/// A column-encoding job writing into its own buffer.
fn job<'a>(encode: impl FnOnce(&mut Writer) -> ColumnMeta + Send + 'a) -> Job<'a> {
    Box::new(move || {
        let mut w = Writer::default();
        let meta = encode(&mut w);
        (w, meta)
    })
}

/// Runs jobs on two threads (this one and one more), returning results in job order.
fn run_jobs<'a, T: Send>(jobs: Vec<Box<dyn FnOnce() -> T + Send + 'a>>) -> Vec<T> {
    let count = jobs.len();
    let queue = parking_lot::Mutex::new(jobs.into_iter().enumerate().collect::<Vec<_>>());
    let results = parking_lot::Mutex::new((0..count).map(|_| None).collect::<Vec<Option<T>>>());
    let work = || loop {
        // Take from the front so the big intrinsic columns start first.
        let job = {
            let mut queue = queue.lock();
            if queue.is_empty() {
                None
            } else {
                Some(queue.remove(0))
            }
        };
        let Some((index, job)) = job else { break };
        let result = job();
        if let Some(slot) = results.lock().get_mut(index) {
            *slot = Some(result);
        }
    };
    std::thread::scope(|scope| {
        let helper = scope.spawn(work);
        work();
        // A panicking job is a bug; its slot stays empty and is skipped below.
        let _ = helper.join();
    });
    results.into_inner().into_iter().flatten().collect()
}

impl ColumnMeta {
    /// Moves every chunk reference by `base` bytes.
    fn shift(&mut self, base: u64) {
        for block in &mut self.blocks {
            block.chunk.offset += base;
        }
        for chunk in [&mut self.dictionary, &mut self.bitmaps, &mut self.value_index].into_iter().flatten() {
            chunk.offset += base;
        }
    }
}

impl ColumnBuilder {
    fn permuted(mut self, order: &[u32], inverse: &[u32]) -> Self {
        self.permute(order, inverse);
        self
    }

    /// Renumbers rows through `inverse` (old row to new row; `order` is its inverse)
    /// and reorders the values to match, so rows stay increasing.
    fn permute(&mut self, order: &[u32], inverse: &[u32]) {
        let order: Vec<usize> = if self.rows.len() == inverse.len() {
            // Every row has a value (rows are 0..n, as for resource attributes and
            // names): value i belongs to old row i, so the new order is `order` itself.
            order.iter().map(|&old| old as usize).collect()
        } else if self.rows.len() * 8 >= inverse.len() {
            // Dense: scatter each value's index to its new row, then read the rows in
            // order (linear, no sort).
            let mut slots = vec![u32::MAX; inverse.len()];
            for (index, &row) in self.rows.iter().enumerate() {
                if let Some(slot) = inverse.get(row as usize).and_then(|&new| slots.get_mut(new as usize)) {
                    *slot = index as u32;
                }
            }
            let mut rows = Vec::with_capacity(self.rows.len());
            let mut order = Vec::with_capacity(self.rows.len());
            for (new, &index) in slots.iter().enumerate() {
                if index != u32::MAX {
                    rows.push(new as u32);
                    order.push(index as usize);
                }
            }
            self.rows = rows;
            order
        } else {
            let mut pairs: Vec<u64> = self
                .rows
                .iter()
                .enumerate()
                .map(|(index, &row)| (u64::from(inverse.get(row as usize).copied().unwrap_or(0)) << 32) | index as u64)
                .collect();
            pairs.sort_unstable();
            self.rows = pairs.iter().map(|p| (p >> 32) as u32).collect();
            pairs.iter().map(|p| (p & 0xffff_ffff) as usize).collect()
        };
        fn reorder<T: Copy + Default>(values: &[T], order: &[usize]) -> Vec<T> {
            order.iter().map(|&i| values.get(i).copied().unwrap_or_default()).collect()
        }
        match &mut self.values {
            Values::Int(v) | Values::Double(v) => *v = reorder(v, &order),
            Values::Bool(v) => *v = reorder(v, &order),
            Values::Str(strings) => match &mut strings.plain {
                Some((arena, ends)) => {
                    let mut new_arena = String::with_capacity(arena.len());
                    let mut new_ends = Vec::with_capacity(ends.len());
                    for &i in &order {
                        let begin = if i == 0 { 0 } else { ends.get(i - 1).copied().unwrap_or(0) as usize };
                        let end = ends.get(i).copied().unwrap_or(0) as usize;
                        new_arena.push_str(arena.get(begin..end).unwrap_or(""));
                        new_ends.push(new_arena.len() as u32);
                    }
                    *arena = new_arena;
                    *ends = new_ends;
                }
                None => strings.codes = reorder(&strings.codes, &order),
            },
        }
    }
}

/// Parent codes: 0 none, 1 external (the id is in the sparse `ParentId` column), and
/// `2 + zigzag(parent_row - row)` when the parent is a row of the same trace.
fn parent_codes(
    trace_ids: &[[u8; 16]],
    span_ids: &[[u8; 8]],
    parents: &[[u8; 8]],
) -> (Vec<u64>, Vec<u32>, Vec<[u8; 8]>) {
    let mut codes = Vec::with_capacity(parents.len());
    let mut external_rows = Vec::new();
    let mut external_ids = Vec::new();
    let mut run_start = 0usize;
    while run_start < trace_ids.len() {
        let trace = trace_ids.get(run_start).copied().unwrap_or_default();
        let run_end =
            run_start + trace_ids.get(run_start..).unwrap_or_default().iter().take_while(|t| **t == trace).count();
        let run_spans = span_ids.get(run_start..run_end).unwrap_or_default();
        let lookup: Option<HashMap<[u8; 8], usize>> = (run_spans.len() > 16).then(|| {
            let mut map = HashMap::with_capacity(run_spans.len());
            for (i, id) in run_spans.iter().enumerate() {
                map.entry(*id).or_insert(i);
            }
            map
        });
        for row in run_start..run_end {
            let parent = parents.get(row).copied().unwrap_or_default();
            if parent == [0u8; 8] {
                codes.push(0);
                continue;
            }
            let found = match &lookup {
                Some(map) => map.get(&parent).copied(),
                None => run_spans.iter().position(|id| *id == parent),
            };
            match found {
                Some(offset) => {
                    let delta = (run_start + offset) as i64 - row as i64;
                    codes.push(2 + (((delta << 1) ^ (delta >> 63)) as u64));
                }
                None => {
                    codes.push(1);
                    external_rows.push(row as u32);
                    external_ids.push(parent);
                }
            }
        }
        run_start = run_end;
    }
    (codes, external_rows, external_ids)
}

/// zstd level of segment chunks.
const CHUNK_ZSTD_LEVEL: i32 = 3;

thread_local! {
    /// A compression context and output buffer per encoding thread: creating a zstd
    /// context per chunk cost more than compressing a small block.
    static CHUNK_COMPRESSOR: std::cell::RefCell<Option<(zstd::bulk::Compressor<'static>, Vec<u8>)>> =
        const { std::cell::RefCell::new(None) };
}

/// Writes `bytes` as a chunk, compressed with zstd when asked and when that saves at
/// least an eighth.
fn write_chunk(out: &mut Writer, bytes: &[u8], compress: bool) -> ChunkRef {
    let offset = out.buf.len() as u64;
    if compress && bytes.len() > 64 {
        let stored = CHUNK_COMPRESSOR.with(|cell| {
            let mut cell = cell.borrow_mut();
            if cell.is_none() {
                *cell = zstd::bulk::Compressor::new(CHUNK_ZSTD_LEVEL).ok().map(|c| (c, Vec::new()));
            }
            let (compressor, scratch) = cell.as_mut()?;
            scratch.clear();
            scratch.reserve(zstd::zstd_safe::compress_bound(bytes.len()));
            let len = compressor.compress_to_buffer(bytes, scratch).ok()?;
            if len < bytes.len() - bytes.len() / 8 {
                let compressed = scratch.get(..len)?;
                out.bytes(compressed);
                Some(ChunkRef {
                    offset,
                    len: len as u32,
                    raw_len: bytes.len() as u32,
                    crc: crc32fast::hash(compressed),
                })
            } else {
                None
            }
        });
        if let Some(chunk) = stored {
            return chunk;
        }
    }
    out.bytes(bytes);
    ChunkRef { offset, len: bytes.len() as u32, raw_len: 0, crc: crc32fast::hash(bytes) }
}

/// Splits the present rows of a column by block: for block `b`, the range of indexes
/// into `rows` whose row falls in it.
fn block_ranges(rows: &[u32], row_count: usize) -> Vec<std::ops::Range<usize>> {
    let blocks = row_count.div_ceil(BLOCK_ROWS);
    let mut ranges = Vec::with_capacity(blocks);
    let mut start = 0usize;
    for b in 0..blocks {
        let limit = ((b + 1) * BLOCK_ROWS) as u32;
        let end = start + rows.get(start..).unwrap_or_default().iter().take_while(|&&r| r < limit).count();
        ranges.push(start..end);
        start = end;
    }
    ranges
}

/// Writes the presence header of a block: all, none, or a bitset of its rows.
fn write_presence(w: &mut Writer, rows: &[u32], block: usize, row_count: usize) {
    let block_len = (row_count - block * BLOCK_ROWS).min(BLOCK_ROWS);
    if rows.len() == block_len {
        w.u8(0);
    } else if rows.is_empty() {
        w.u8(1);
    } else {
        w.u8(2);
        let mut bits = vec![0u8; block_len.div_ceil(8)];
        for &r in rows {
            let local = r as usize - block * BLOCK_ROWS;
            if let Some(byte) = bits.get_mut(local / 8) {
                *byte |= 1 << (local % 8);
            }
        }
        w.bytes(&bits);
    }
}

fn write_blocks(
    out: &mut Writer,
    rows: &[u32],
    row_count: usize,
    mut encode: impl FnMut(&mut Writer, std::ops::Range<usize>) -> (u64, u64),
) -> Vec<BlockMeta> {
    let mut blocks = Vec::new();
    for (b, range) in block_ranges(rows, row_count).into_iter().enumerate() {
        let block_rows = rows.get(range.clone()).unwrap_or_default();
        let mut w = Writer::with_capacity(block_rows.len() * 4 + 16);
        write_presence(&mut w, block_rows, b, row_count);
        let (min, max) = if block_rows.is_empty() { (0, 0) } else { encode(&mut w, range) };
        let chunk = write_chunk(out, &w.buf, true);
        blocks.push(BlockMeta { chunk, present: block_rows.len() as u32, min, max });
    }
    blocks
}

fn write_fixed<const N: usize>(out: &mut Writer, intrinsic: Intrinsic, values: &[[u8; N]], rows: usize) -> ColumnMeta {
    let all: Vec<u32> = (0..rows as u32).collect();
    write_sparse_fixed(out, intrinsic, &all, values, rows)
}

/// The trace id column, with a value index of (trace hash, block) pairs: rows are in
/// time order, not trace id order, so the zone maps cannot find a trace's block.
fn write_trace_ids(out: &mut Writer, trace_ids: &[[u8; 16]], rows: usize) -> ColumnMeta {
    let mut meta = write_fixed(out, Intrinsic::TraceId, trace_ids, rows);
    let mut pairs: Vec<(u32, u32)> = Vec::new();
    let mut last: Option<(&[u8; 16], u32)> = None;
    for (row, id) in trace_ids.iter().enumerate() {
        let block = (row / BLOCK_ROWS) as u32;
        if last != Some((id, block)) {
            pairs.push((trace_hash(id), block));
            last = Some((id, block));
        }
    }
    let distinct = trace_ids.chunk_by(|a, b| a == b).count() as u64;
    meta.cardinality = distinct;
    let bytes = super::value_index::encode(pairs.into_iter(), rows.div_ceil(BLOCK_ROWS), hash_bits_for(distinct));
    meta.value_index = Some(write_chunk(out, &bytes, false));
    meta
}

/// The value index's hash of a trace id: the top 32 bits of [`stable_hash`].
pub(crate) fn trace_hash(id: &[u8; 16]) -> u32 {
    (stable_hash(id) >> 32) as u32
}

fn fixed_key<const N: usize>(v: &[u8; N]) -> u64 {
    let mut key = [0u8; 8];
    for (slot, byte) in key.iter_mut().zip(v.iter()) {
        *slot = *byte;
    }
    u64::from_be_bytes(key)
}

fn write_sparse_fixed<const N: usize>(
    out: &mut Writer,
    intrinsic: Intrinsic,
    rows: &[u32],
    values: &[[u8; N]],
    row_count: usize,
) -> ColumnMeta {
    let blocks = write_blocks(out, rows, row_count, |w, range| {
        let slice = values.get(range).unwrap_or_default();
        for v in slice {
            w.bytes(v);
        }
        let min = slice.iter().map(fixed_key).min().unwrap_or(0);
        let max = slice.iter().map(fixed_key).max().unwrap_or(0);
        (min, max)
    });
    ColumnMeta {
        kind: ColumnKind::Intrinsic(intrinsic),
        storage: if N == 16 { Storage::Fixed16 } else { Storage::Fixed8 },
        cardinality: rows.len() as u64,
        present: rows.len() as u64,
        dictionary: None,
        bitmaps: None,
        value_index: None,
        blocks,
    }
}

fn write_ints(
    out: &mut Writer,
    kind: ColumnKind,
    rows: &[u32],
    values: &[u64],
    row_count: usize,
    index: bool,
) -> ColumnMeta {
    let blocks = write_blocks(out, rows, row_count, |w, range| {
        let slice = values.get(range).unwrap_or_default();
        // Frame of reference or delta, not exact widths (`varwidth.rs`): exact widths
        // saved 0.3 bytes/span on `duration` but cannot be read at a few selected rows
        // without decoding the whole block, which made a percentile over 100M spans
        // 3x slower (docs/PERFORMANCE.md, "Segment format 2"). Readers accept both.
        encode_ints(w, slice);
        (slice.iter().copied().min().unwrap_or(0), slice.iter().copied().max().unwrap_or(0))
    });
    let bitmaps = if index { value_bitmaps(out, rows, values) } else { None };
    let cardinality = match &bitmaps {
        Some((count, _)) => *count,
        None => estimate_distinct(values),
    };
    ColumnMeta {
        kind,
        storage: Storage::Ints,
        cardinality,
        present: rows.len() as u64,
        dictionary: None,
        bitmaps: bitmaps.map(|(_, chunk)| chunk),
        value_index: None,
        blocks,
    }
}

/// The `start` column (every row present), each block in frame of reference or delta.
/// Trace runs (`trace_runs.rs`: offsets from the first start of each trace's run of
/// rows) take 1.2 bytes/span less but cannot be read at a few selected rows without
/// decoding the whole block, which made TIMESERIES over 100M spans 3x slower
/// (docs/PERFORMANCE.md, "Segment format 2"); readers accept both.
fn write_starts(out: &mut Writer, starts: &[u64], row_count: usize) -> ColumnMeta {
    let all: Vec<u32> = (0..row_count as u32).collect();
    let blocks = write_blocks(out, &all, row_count, |w, range| {
        let slice = starts.get(range).unwrap_or_default();
        encode_ints(w, slice);
        (slice.iter().copied().min().unwrap_or(0), slice.iter().copied().max().unwrap_or(0))
    });
    ColumnMeta {
        kind: ColumnKind::Intrinsic(Intrinsic::Start),
        storage: Storage::Ints,
        cardinality: estimate_distinct(starts),
        present: row_count as u64,
        dictionary: None,
        bitmaps: None,
        value_index: None,
        blocks,
    }
}

/// Distinct values, counted exactly up to the bitmap bound and estimated past it.
fn estimate_distinct(values: &[u64]) -> u64 {
    let mut seen = rustc_hash::FxHashSet::default();
    let step = (values.len() / 65_536).max(1);
    for v in values.iter().step_by(step) {
        seen.insert(*v);
    }
    (seen.len() * step) as u64
}

/// Bitmaps per distinct value when there are at most `BITMAP_CARDINALITY_MAX` of them.
fn value_bitmaps(out: &mut Writer, rows: &[u32], keys: &[u64]) -> Option<(u64, ChunkRef)> {
    // Small keys (dictionary codes, booleans, kinds, status codes) index a vector
    // directly; others go through a hash map.
    let mut dense: Vec<Vec<u32>> = Vec::new();
    let mut by_key: FxHashMap<u64, Vec<u32>> = FxHashMap::default();
    let mut distinct = 0usize;
    for (&row, &key) in rows.iter().zip(keys) {
        if key < BITMAP_CARDINALITY_MAX as u64 {
            let at = key as usize;
            if at >= dense.len() {
                dense.resize_with(at + 1, Vec::new);
            }
            if let Some(list) = dense.get_mut(at) {
                if list.is_empty() {
                    distinct += 1;
                }
                list.push(row);
            }
        } else {
            match by_key.get_mut(&key) {
                Some(list) => list.push(row),
                None => {
                    distinct += 1;
                    by_key.insert(key, vec![row]);
                }
            }
        }
        if distinct > BITMAP_CARDINALITY_MAX {
            return None;
        }
    }
    // Rows were pushed in increasing order, so each list is sorted.
    let mut maps: Vec<(u64, RoaringBitmap)> = Vec::with_capacity(distinct);
    for (key, list) in dense.into_iter().enumerate() {
        if !list.is_empty() {
            maps.push((key as u64, RoaringBitmap::from_sorted_iter(list).unwrap_or_default()));
        }
    }
    let mut large: Vec<(u64, Vec<u32>)> = by_key.into_iter().collect();
    large.sort_unstable_by_key(|(key, _)| *key);
    for (key, list) in large {
        maps.push((key, RoaringBitmap::from_sorted_iter(list).unwrap_or_default()));
    }
    Some((maps.len() as u64, write_bitmap_chunk(out, &maps)))
}

/// Layout: count u32, keys u64 × count, offsets u32 × (count + 1) relative to the
/// first bitmap, then the serialized roaring bitmaps. Stored uncompressed so that one
/// bitmap can be read without touching the others.
fn write_bitmap_chunk(out: &mut Writer, maps: &[(u64, RoaringBitmap)]) -> ChunkRef {
    debug_assert!(maps.windows(2).all(|w| matches!(w, [a, b] if a.0 < b.0)));
    let mut w = Writer::default();
    w.u32(maps.len() as u32);
    for (key, _) in maps {
        w.u64(*key);
    }
    let mut serialized = Vec::new();
    let mut offsets = vec![0u32];
    for (_, map) in maps {
        // Serializing into a Vec cannot fail.
        let _ = map.serialize_into(&mut serialized);
        offsets.push(serialized.len() as u32);
    }
    for o in offsets {
        w.u32(o);
    }
    w.bytes(&serialized);
    write_chunk(out, &w.buf, false)
}

fn write_column(out: &mut Writer, column: ColumnBuilder, row_count: usize) -> ColumnMeta {
    let ColumnBuilder { kind, rows, values } = column;
    match values {
        Values::Int(values) => write_ints(out, kind, &rows, &values, row_count, true),
        Values::Double(bits) => {
            let blocks = write_blocks(out, &rows, row_count, |w, range| {
                let slice = bits.get(range).unwrap_or_default();
                for v in slice {
                    w.u64(*v);
                }
                let keys = slice.iter().map(|b| sortable_double(f64::from_bits(*b)));
                let min = keys.clone().min().unwrap_or(0);
                (min, keys.max().unwrap_or(0))
            });
            ColumnMeta {
                kind,
                storage: Storage::Doubles,
                cardinality: estimate_distinct(&bits),
                present: rows.len() as u64,
                dictionary: None,
                bitmaps: None,
                value_index: None,
                blocks,
            }
        }
        Values::Bool(values) => {
            let blocks = write_blocks(out, &rows, row_count, |w, range| {
                let slice = values.get(range).unwrap_or_default();
                encode_bools(w, slice);
                let any_true = slice.iter().any(|&b| b);
                let all_true = slice.iter().all(|&b| b);
                (u64::from(all_true), u64::from(any_true))
            });
            let keys: Vec<u64> = values.iter().map(|&b| u64::from(b)).collect();
            let bitmaps = value_bitmaps(out, &rows, &keys);
            ColumnMeta {
                kind,
                storage: Storage::Bools,
                cardinality: bitmaps.as_ref().map(|(n, _)| *n).unwrap_or(2),
                present: rows.len() as u64,
                dictionary: None,
                bitmaps: bitmaps.map(|(_, c)| c),
                value_index: None,
                blocks,
            }
        }
        Values::Str(values) => write_strings(out, kind, &rows, values, row_count),
    }
}

fn write_strings(out: &mut Writer, kind: ColumnKind, rows: &[u32], values: StrValues, row_count: usize) -> ColumnMeta {
    debug_assert_eq!(values.len(), rows.len());
    if let Some((arena, ends)) = &values.plain {
        let mut strings = Vec::with_capacity(ends.len());
        let mut start = 0usize;
        for &end in ends {
            strings.push(arena.get(start..end as usize).unwrap_or(""));
            start = end as usize;
        }
        return write_plain_strings(out, kind, rows, &strings, row_count, estimate_distinct_strings(&strings));
    }
    let distinct = values.distinct.len();
    let use_dictionary = distinct <= BITMAP_CARDINALITY_MAX || distinct * 2 <= rows.len();
    if use_dictionary {
        // Sort the dictionary so that code order is string order (zone maps and range
        // predicates work on codes), and remap the codes.
        let mut order: Vec<u32> = (0..distinct as u32).collect();
        order.sort_by(|&a, &b| values.distinct.get(a as usize).cmp(&values.distinct.get(b as usize)));
        let mut remap = vec![0u32; distinct];
        for (new, &old) in order.iter().enumerate() {
            if let Some(slot) = remap.get_mut(old as usize) {
                *slot = new as u32;
            }
        }
        let codes: Vec<u64> =
            values.codes.iter().map(|&c| u64::from(remap.get(c as usize).copied().unwrap_or(0))).collect();
        let sorted: Vec<&str> = order.iter().filter_map(|&i| values.distinct.get(i as usize)).map(|s| &**s).collect();
        let mut dict = Writer::default();
        dict.varint(sorted.len() as u64);
        encode_strings(&mut dict, &sorted);
        let dictionary = write_chunk(out, &dict.buf, true);
        let width = super::encoding::bit_width(distinct.saturating_sub(1) as u64);
        let blocks = write_blocks(out, rows, row_count, |w, range| {
            let slice = codes.get(range).unwrap_or_default();
            w.u8(width);
            pack(w, slice, width);
            (slice.iter().copied().min().unwrap_or(0), slice.iter().copied().max().unwrap_or(0))
        });
        let bitmaps =
            if distinct <= BITMAP_CARDINALITY_MAX { value_bitmaps(out, rows, &codes).map(|(_, c)| c) } else { None };
        let value_index = if bitmaps.is_none() {
            // Hash each distinct value once, then index its rows by code.
            let hashes: Vec<u32> = sorted.iter().map(|v| value_hash(v)).collect();
            let pairs = codes.iter().map(|&c| hashes.get(c as usize).copied().unwrap_or(0));
            Some(write_value_index(out, rows, pairs, row_count, distinct as u64))
        } else {
            None
        };
        ColumnMeta {
            kind,
            storage: Storage::Dict,
            cardinality: distinct as u64,
            present: rows.len() as u64,
            dictionary: Some(dictionary),
            bitmaps,
            value_index,
            blocks,
        }
    } else {
        let strings: Vec<&str> =
            values.codes.iter().map(|&c| values.distinct.get(c as usize).map(|s| &**s).unwrap_or("")).collect();
        write_plain_strings(out, kind, rows, &strings, row_count, distinct as u64)
    }
}

fn estimate_distinct_strings(strings: &[&str]) -> u64 {
    let step = (strings.len() / 65_536).max(1);
    let sample: rustc_hash::FxHashSet<&str> = strings.iter().step_by(step).copied().collect();
    (sample.len() * step) as u64
}

fn write_plain_strings(
    out: &mut Writer,
    kind: ColumnKind,
    rows: &[u32],
    strings: &[&str],
    row_count: usize,
    cardinality: u64,
) -> ColumnMeta {
    let blocks = write_blocks(out, rows, row_count, |w, range| {
        encode_strings(w, strings.get(range).unwrap_or_default());
        (0, 0)
    });
    let hashes = strings.iter().map(|v| value_hash(v));
    let value_index = Some(write_value_index(out, rows, hashes, row_count, cardinality));
    ColumnMeta {
        kind,
        storage: Storage::Strings,
        cardinality,
        present: rows.len() as u64,
        dictionary: None,
        bitmaps: None,
        value_index,
        blocks,
    }
}

/// The paged value index (`value_index.rs`) of the rows' value hashes: each distinct
/// (hash, block) pair once, stored uncompressed so a lookup reads one page in place.
/// Candidate blocks are checked against the stored values, so a short hash costs only
/// the rare extra block.
fn write_value_index(
    out: &mut Writer,
    rows: &[u32],
    hashes: impl Iterator<Item = u32>,
    row_count: usize,
    distinct: u64,
) -> ChunkRef {
    let pairs = hashes.zip(rows).map(|(hash, &row)| (hash, row / BLOCK_ROWS as u32));
    let bytes = super::value_index::encode(pairs, row_count.div_ceil(BLOCK_ROWS), hash_bits_for(distinct));
    write_chunk(out, &bytes, false)
}

/// The value index's hash of a string: the top 32 bits of [`stable_hash`].
pub(crate) fn value_hash(value: &str) -> u32 {
    (stable_hash(value.as_bytes()) >> 32) as u32
}

fn write_blobs(out: &mut Writer, bytes: &[u8], ends: &[u32], row_count: usize) -> ColumnMeta {
    let all: Vec<u32> = (0..row_count as u32).collect();
    let blocks = write_blocks(out, &all, row_count, |w, range| {
        let start_index = range.start;
        let first = if start_index == 0 { 0 } else { ends.get(start_index - 1).copied().unwrap_or(0) as usize };
        let mut previous = first;
        for &end in ends.get(range.clone()).unwrap_or_default() {
            w.varint((end as usize - previous) as u64);
            previous = end as usize;
        }
        w.bytes(bytes.get(first..previous).unwrap_or_default());
        (0, 0)
    });
    ColumnMeta {
        kind: ColumnKind::Intrinsic(Intrinsic::Rest),
        storage: Storage::Blob,
        cardinality: 0,
        present: row_count as u64,
        dictionary: None,
        bitmaps: None,
        value_index: None,
        blocks,
    }
}

/// A scalar attribute value, borrowed.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Scalar<'a> {
    Str(&'a str),
    Int(i64),
    Double(f64),
    Bool(bool),
}

impl Scalar<'_> {
    fn value_type(&self) -> ValueType {
        match self {
            Scalar::Str(_) => ValueType::Str,
            Scalar::Int(_) => ValueType::Int,
            Scalar::Double(_) => ValueType::Double,
            Scalar::Bool(_) => ValueType::Bool,
        }
    }
}

impl<'b> ValueView<'b> {
    /// The value as a scalar, if it is a string, int, double or bool.
    pub(crate) fn scalar(&self) -> Option<Scalar<'b>> {
        if let Some(s) = self.as_str() {
            return Some(Scalar::Str(s));
        }
        if let Some(i) = self.as_int() {
            return Some(Scalar::Int(i));
        }
        if let Some(d) = self.as_double() {
            return Some(Scalar::Double(d));
        }
        self.as_bool().map(Scalar::Bool)
    }
}

const ANY_EMPTY: u8 = 0;
const ANY_STR: u8 = 1;
const ANY_INT: u8 = 2;
const ANY_DOUBLE: u8 = 3;
const ANY_BOOL: u8 = 4;
const ANY_BYTES: u8 = 5;
const ANY_ARRAY: u8 = 6;
const ANY_MAP: u8 = 7;

/// Encodes an `AnyValue` recursively (used inside rest blobs).
pub(crate) fn encode_any(w: &mut Writer, value: &AnyValue) {
    match value {
        AnyValue::Empty => w.u8(ANY_EMPTY),
        AnyValue::Str(s) => {
            w.u8(ANY_STR);
            w.len_bytes(s.as_bytes());
        }
        AnyValue::Int(i) => {
            w.u8(ANY_INT);
            w.varint_signed(*i);
        }
        AnyValue::Double(d) => {
            w.u8(ANY_DOUBLE);
            w.u64(d.to_bits());
        }
        AnyValue::Bool(b) => {
            w.u8(ANY_BOOL);
            w.u8(u8::from(*b));
        }
        AnyValue::Bytes(b) => {
            w.u8(ANY_BYTES);
            w.len_bytes(b);
        }
        AnyValue::Array(items) => {
            w.u8(ANY_ARRAY);
            w.varint(items.len() as u64);
            for item in items {
                encode_any(w, item);
            }
        }
        AnyValue::Map(pairs) => {
            w.u8(ANY_MAP);
            w.varint(pairs.len() as u64);
            for kv in pairs {
                w.len_bytes(kv.key.as_bytes());
                encode_any(w, &kv.value);
            }
        }
    }
}

/// Decodes what [`encode_any`] wrote, refusing nesting deeper than the batch limit.
pub(crate) fn decode_any(
    r: &mut crate::codec::Reader<'_>,
    depth: usize,
) -> Result<AnyValue, crate::error::DecodeError> {
    if depth > crate::batch::MAX_NESTING_DEPTH {
        return Err(r.error("values nested too deep"));
    }
    let at = r.position();
    Ok(match r.u8("value tag")? {
        ANY_EMPTY => AnyValue::Empty,
        ANY_STR => AnyValue::Str(utf8(r, "string value")?),
        ANY_INT => AnyValue::Int(r.varint_signed("int value")?),
        ANY_DOUBLE => AnyValue::Double(f64::from_bits(r.u64("double value")?)),
        ANY_BOOL => AnyValue::Bool(r.u8("bool value")? != 0),
        ANY_BYTES => AnyValue::Bytes(r.len_bytes("bytes value")?.to_vec()),
        ANY_ARRAY => {
            let n = r.count("array length", r.remaining())?;
            let mut items = Vec::with_capacity(n);
            for _ in 0..n {
                items.push(decode_any(r, depth + 1)?);
            }
            AnyValue::Array(items)
        }
        ANY_MAP => {
            let n = r.count("map length", r.remaining() / 2)?;
            let mut pairs = Vec::with_capacity(n);
            for _ in 0..n {
                let key = utf8(r, "map key")?;
                pairs.push(crate::model::KeyValue { key, value: decode_any(r, depth + 1)? });
            }
            AnyValue::Map(pairs)
        }
        other => return Err(crate::error::DecodeError::new(at, format!("unknown value tag {other}"))),
    })
}

pub(crate) fn utf8(r: &mut crate::codec::Reader<'_>, what: &str) -> Result<String, crate::error::DecodeError> {
    let at = r.position();
    let bytes = r.len_bytes(what)?;
    std::str::from_utf8(bytes)
        .map(str::to_owned)
        .map_err(|_| crate::error::DecodeError::new(at, format!("{what} is not valid UTF-8")))
}

/// Builds a segment from batches: rows sorted by (trace id, start, span id), then the
/// batch order, so the result is deterministic.
pub fn build_segment(batches: &[&SpanBatch], file_number: u64, sequences: Option<(u64, u64)>) -> Vec<u8> {
    let mut builder = SegmentBuilder::new();
    if let Some((min, max)) = sequences {
        builder.note_sequences(min, max);
    }
    // The attribute values go on a second thread; both sides walk the same rows in the
    // same order, so their column numbers agree (see `ColumnRegistry`).
    let mut attrs = std::mem::take(&mut builder.attrs);
    std::thread::scope(|scope| {
        let helper = scope.spawn(move || {
            for batch in batches {
                attrs.push_batch(batch);
            }
            attrs
        });
        for batch in batches {
            builder.push_core_batch(batch);
        }
        match helper.join() {
            Ok(attrs) => builder.attrs = attrs,
            Err(payload) => std::panic::resume_unwind(payload),
        }
    });
    builder.finish(file_number)
}
