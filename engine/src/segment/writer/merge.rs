//! Compaction without materializing spans: segments are read column by column into a
//! `SegmentBuilder` (dictionary codes remapped through a per-column table, attribute
//! column numbers and scope indexes rewritten in the rest blobs, everything else copied
//! as stored), and `finish` sorts the union and rebuilds every dictionary, bitmap and
//! index, exactly as for sealing.
#![deny(clippy::unwrap_used, clippy::indexing_slicing)]

use super::{ColumnBuilder, SegmentBuilder, Values, REST_INLINE};
use crate::codec::{Reader, Writer};
use crate::error::{DecodeError, EngineError, Result};
use crate::segment::reader::{BlockValues, DecodedBlock, Segment};
use crate::segment::{ColumnKind, Intrinsic, Storage, BLOCK_ROWS, MAX_SEGMENT_ROWS};

/// Merges `inputs` into the bytes of one segment numbered `file_number`. The spans are
/// those of the inputs, sorted as `build_segment` sorts them (ties keep input order).
pub fn merge_segments(inputs: &[&Segment], file_number: u64, sequences: Option<(u64, u64)>) -> Result<Vec<u8>> {
    let mut builder = SegmentBuilder::new();
    if let Some((min, max)) = sequences {
        builder.note_sequences(min, max);
    }
    for segment in inputs {
        builder.push_segment(segment)?;
    }
    Ok(builder.finish(file_number))
}

fn corrupt(segment: &Segment, reason: impl Into<String>) -> EngineError {
    EngineError::corrupt(segment.path(), 0, reason)
}

/// Values of a block by block-local row: `(row, index into the values)` for each row
/// that has one.
fn present(block: &DecodedBlock) -> impl Iterator<Item = (usize, usize)> + '_ {
    (0..block.row_count).filter_map(|row| block.value_index(row).map(|index| (row, index)))
}

impl SegmentBuilder {
    /// Appends every row of `segment` (`finish` sorts).
    pub(crate) fn push_segment(&mut self, segment: &Segment) -> Result<()> {
        let rows = segment.row_count();
        let base = self.row_count as usize;
        if base.checked_add(rows).is_none_or(|total| total > MAX_SEGMENT_ROWS) {
            return Err(EngineError::Internal(format!("merging {rows} rows into {base} exceeds a segment")));
        }
        let directory = segment.directory();
        let intrinsics = Intrinsic::ALL.len();
        // Input attribute column i (0-based) → this builder's column. Both registries
        // see the same calls, so they agree (see `ColumnRegistry`).
        let mut column_map: Vec<usize> = Vec::new();
        for meta in directory.columns.iter().skip(intrinsics) {
            let ColumnKind::Attr { scope, key, value_type } = &meta.kind else {
                return Err(corrupt(segment, "an intrinsic column among the attribute columns"));
            };
            let column = self.layout.column(*scope, *value_type, key);
            let other = self.attrs.registry.column(*scope, *value_type, key);
            debug_assert_eq!(column, other);
            column_map.push(column);
        }
        let mut scope_map: Vec<u32> = Vec::new();
        for scope in segment.scope_bytes()? {
            let index = match self.scopes.get(&scope) {
                Some(&i) => i,
                None => {
                    let i = self.scope_list.len() as u32;
                    self.scopes.insert(scope.clone(), i);
                    self.scope_list.push(scope);
                    i
                }
            };
            scope_map.push(index);
        }

        // Span ids of the whole segment: a parent stored as a row distance may lie in
        // another block.
        let blocks = rows.div_ceil(BLOCK_ROWS);
        let mut span_ids: Vec<[u8; 8]> = Vec::with_capacity(rows);
        for block in 0..blocks {
            match segment.read_block(Intrinsic::SpanId as usize, block)?.values {
                BlockValues::Fixed8(values) => span_ids.extend(values),
                _ => return Err(corrupt(segment, "span id block of the wrong kind")),
            }
        }
        if span_ids.len() != rows {
            return Err(corrupt(segment, "span id column does not cover every row"));
        }
        self.span_ids.extend_from_slice(&span_ids);

        // Remap tables of dictionary columns: input code → this builder's code.
        let mut remaps: Vec<Vec<u32>> = vec![Vec::new(); directory.columns.len()];
        for (column, meta) in directory.columns.iter().enumerate() {
            if meta.storage == Storage::Dict {
                if let Some(remap) = remaps.get_mut(column) {
                    *remap = vec![u32::MAX; segment.dictionary(column)?.len()];
                }
            }
        }

        let mut rest = Writer::default();
        for block in 0..blocks {
            let first_row = block * BLOCK_ROWS;
            let block_rows = (rows - first_row).min(BLOCK_ROWS);
            let row_base = (base + first_row) as u32;
            // Dense intrinsics.
            match segment.read_block(Intrinsic::TraceId as usize, block)?.values {
                BlockValues::Fixed16(values) if values.len() == block_rows => self.trace_ids.extend(values),
                _ => return Err(corrupt(segment, "trace id block of the wrong kind or length")),
            }
            for (intrinsic, target) in [
                (Intrinsic::Kind, &mut self.kind),
                (Intrinsic::Start, &mut self.start),
                (Intrinsic::Duration, &mut self.duration),
                (Intrinsic::Status, &mut self.status),
            ] {
                match segment.read_block(intrinsic as usize, block)?.values {
                    BlockValues::Ints(values) if values.len() == block_rows => target.extend(values),
                    _ => return Err(corrupt(segment, format!("{} block of the wrong kind", intrinsic.as_str()))),
                }
            }
            // Parents: resolved to ids, as a batch holds them.
            let codes = segment.read_block(Intrinsic::ParentCode as usize, block)?;
            let external = segment.read_block(Intrinsic::ParentId as usize, block)?;
            for local in 0..block_rows {
                let row = first_row + local;
                let parent = match codes.int(local) {
                    Some(0) => [0u8; 8],
                    Some(1) => match (&external.values, external.value_index(local)) {
                        (BlockValues::Fixed8(ids), Some(i)) => {
                            ids.get(i).copied().ok_or_else(|| corrupt(segment, "external parent missing"))?
                        }
                        _ => return Err(corrupt(segment, format!("row {row}: external parent missing"))),
                    },
                    Some(code) => {
                        let z = code - 2;
                        let delta = ((z >> 1) as i64) ^ -((z & 1) as i64);
                        usize::try_from(row as i64 + delta)
                            .ok()
                            .and_then(|p| span_ids.get(p))
                            .copied()
                            .ok_or_else(|| corrupt(segment, format!("row {row}: parent row out of range")))?
                    }
                    None => return Err(corrupt(segment, format!("row {row}: parent code missing"))),
                };
                self.parents.push(parent);
            }
            // Strings of the intrinsic columns.
            for (intrinsic, target) in
                [(Intrinsic::Name, &mut self.name), (Intrinsic::StatusMessage, &mut self.status_message)]
            {
                let column = intrinsic as usize;
                let remap = remaps.get_mut(column).map(std::mem::take).unwrap_or_default();
                let remap = push_column_block(segment, column, block, row_base, target, remap)?;
                if let Some(slot) = remaps.get_mut(column) {
                    *slot = remap;
                }
            }
            // Attribute columns.
            for (i, &output) in column_map.iter().enumerate() {
                let column = intrinsics + i;
                let Some(target) = self.attrs.column_mut(output) else {
                    return Err(EngineError::Internal(format!("attribute column {output} missing")));
                };
                let remap = remaps.get_mut(column).map(std::mem::take).unwrap_or_default();
                let remap = push_column_block(segment, column, block, row_base, target, remap)?;
                if let Some(slot) = remaps.get_mut(column) {
                    *slot = remap;
                }
            }
            // Rest blobs, with attribute column numbers and the scope index rewritten.
            let blobs = segment.read_block(Intrinsic::Rest as usize, block)?;
            for local in 0..block_rows {
                let row = first_row + local;
                let blob =
                    blobs.blob(local).ok_or_else(|| corrupt(segment, format!("row {row}: rest blob missing")))?;
                rest.buf.clear();
                rewrite_rest(blob, &scope_map, &column_map, &mut rest)
                    .map_err(|e| corrupt(segment, format!("row {row}: rest blob: {e}")))?;
                self.rest.extend_from_slice(&rest.buf);
                self.rest_ends.push(self.rest.len() as u32);
            }
        }
        self.row_count = (base + rows) as u32;
        self.attrs.row_count = self.row_count;
        Ok(())
    }
}

/// Appends the present values of block `block` of input column `column` to `target`,
/// at rows `row_base + local row`. Returns the dictionary remap table, updated.
fn push_column_block(
    segment: &Segment,
    column: usize,
    block: usize,
    row_base: u32,
    target: &mut ColumnBuilder,
    mut remap: Vec<u32>,
) -> Result<Vec<u32>> {
    // A block with no value (a sparse attribute absent here) is not read at all.
    let meta = segment.column_meta(column)?;
    if meta.blocks.get(block).is_some_and(|b| b.present == 0) {
        return Ok(remap);
    }
    let decoded = segment.read_block(column, block)?;
    let mismatch = || corrupt(segment, format!("block {block} of column {column} does not match its type"));
    match (&mut target.values, &decoded.values) {
        (Values::Str(values), BlockValues::Codes(codes)) => {
            let dictionary = segment.dictionary(column)?;
            for (row, index) in present(&decoded) {
                let code = codes.get(index).copied().ok_or_else(mismatch)?;
                let value =
                    dictionary.get(code as usize).ok_or_else(|| corrupt(segment, "code past the dictionary"))?;
                values.push_mapped(code, value, &mut remap);
                target.rows.push(row_base + row as u32);
            }
        }
        (Values::Str(values), BlockValues::Strings(strings)) => {
            for (row, index) in present(&decoded) {
                values.push(strings.get(index).ok_or_else(mismatch)?);
                target.rows.push(row_base + row as u32);
            }
        }
        (Values::Int(values), BlockValues::Ints(stored)) | (Values::Double(values), BlockValues::Doubles(stored)) => {
            for (row, index) in present(&decoded) {
                values.push(stored.get(index).copied().ok_or_else(mismatch)?);
                target.rows.push(row_base + row as u32);
            }
        }
        (Values::Bool(values), BlockValues::Bools(stored)) => {
            for (row, index) in present(&decoded) {
                values.push(stored.get(index).copied().ok_or_else(mismatch)?);
                target.rows.push(row_base + row as u32);
            }
        }
        _ => return Err(mismatch()),
    }
    Ok(remap)
}

/// Copies a rest blob, mapping its scope index through `scope_map` and its attribute
/// column codes through `column_map`; inline attributes, events and links are copied
/// as stored.
fn rewrite_rest(blob: &[u8], scope_map: &[u32], column_map: &[usize], out: &mut Writer) -> Result<(), DecodeError> {
    let mut r = Reader::new(blob);
    out.varint(r.varint("flags")?);
    out.len_bytes(r.len_bytes("trace state")?);
    for _ in 0..3 {
        out.varint(r.varint("dropped count")?);
    }
    let scope = r.count("scope index", usize::MAX)?;
    let scope = scope_map.get(scope).copied().ok_or_else(|| r.error("scope index out of range"))?;
    out.varint(u64::from(scope));
    out.varint(r.varint("resource dropped count")?);
    out.len_bytes(r.len_bytes("resource schema url")?);
    for _ in 0..2 {
        let count = r.count("attribute count", r.remaining())?;
        out.varint(count as u64);
        for _ in 0..count {
            let code = r.varint("attribute layout")?;
            if code & 1 == 1 {
                let start = r.position();
                r.len_bytes("attribute key")?;
                super::decode_any(&mut r, 0)?;
                out.varint(REST_INLINE);
                out.bytes(blob.get(start..r.position()).unwrap_or_default());
                continue;
            }
            let column = usize::try_from((code >> 1).wrapping_sub(1)).ok().filter(|_| code >= 2);
            let mapped =
                column.and_then(|c| column_map.get(c)).ok_or_else(|| r.error("attribute column out of range"))?;
            out.varint((*mapped as u64 + 1) << 1);
        }
    }
    // Events and links: their times are relative to the span's start, which is
    // unchanged.
    out.bytes(blob.get(r.position()..).unwrap_or_default());
    Ok(())
}
