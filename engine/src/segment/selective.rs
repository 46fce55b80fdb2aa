//! Row-selective decoding of one block: the values of chosen rows of an integer,
//! dictionary-code, boolean or double block, unpacking only those rows' bits instead of
//! the whole block (a query that selects a few rows per block pays per selected row).
//!
//! The block layout is the one `reader::decode_block` reads (docs/FORMAT.md): a
//! presence byte (all, none, or a bit per row), then the values of present rows.
//! Bounds are checked as in the full decoder; trailing bytes are not (the chunk's
//! checksum already vouched for them).
#![deny(clippy::unwrap_used, clippy::indexing_slicing)]

use super::encoding::decode_ints;
use super::Storage;
use crate::codec::Reader;
use crate::error::DecodeError;

/// Tag of frame-of-reference integers (as written by `encoding::encode_ints`).
const INTS_FOR: u8 = 0;

/// Which present value a block-local row maps to.
enum RowMap<'a> {
    All,
    None,
    /// Presence bits and the count of present rows before each byte.
    Bits {
        bits: &'a [u8],
        before: Vec<u32>,
    },
}

impl RowMap<'_> {
    fn index(&self, row: usize) -> Option<usize> {
        match self {
            RowMap::All => Some(row),
            RowMap::None => None,
            RowMap::Bits { bits, before } => {
                let byte = *bits.get(row / 8)?;
                let bit = row % 8;
                if byte & (1 << bit) == 0 {
                    return None;
                }
                let below = (byte & ((1u8 << bit) - 1)).count_ones();
                Some(*before.get(row / 8)? as usize + below as usize)
            }
        }
    }
}

/// Packed values: `width` bits each, little-endian bit order.
struct Packed<'a> {
    bytes: &'a [u8],
    width: u8,
}

impl Packed<'_> {
    fn take<'a>(r: &mut Reader<'a>, count: usize, width: u8) -> Result<Packed<'a>, DecodeError> {
        if width > 64 {
            return Err(r.error(format!("bit width {width} exceeds 64")));
        }
        let total_bits = count.checked_mul(usize::from(width)).ok_or_else(|| r.error("packed size overflows"))?;
        Ok(Packed { bytes: r.take(total_bits.div_ceil(8), "packed values")?, width })
    }

    /// Value `index` (the caller keeps `index` below the packed count).
    fn get(&self, index: usize) -> u64 {
        if self.width == 0 {
            return 0;
        }
        let bit = index * usize::from(self.width);
        let first = bit / 8;
        if self.width <= 56 {
            if let Some(window) = self.bytes.get(first..first + 8) {
                return (super::encoding::le_u64(window) >> (bit % 8)) & ((1u64 << self.width) - 1);
            }
        }
        let mut acc: u128 = 0;
        for (i, &b) in self.bytes.iter().skip(first).take(9).enumerate() {
            acc |= u128::from(b) << (8 * i);
        }
        let mask: u128 = if self.width == 64 { u128::from(u64::MAX) } else { (1u128 << self.width) - 1 };
        ((acc >> (bit % 8)) & mask) as u64
    }
}

/// The value of each of `rows` (block-local row numbers, any order, each below
/// `row_count`) in stored form — integers as stored, dictionary codes, booleans as 0
/// or 1, doubles as their bits — or `None` where the row has no value. `Ok(None)` when
/// the block's storage or encoding cannot be read selectively (the caller decodes it
/// whole).
pub fn decode_rows(
    bytes: &[u8],
    row_count: usize,
    present: usize,
    storage: Storage,
    rows: &[u32],
) -> Result<Option<Vec<Option<u64>>>, DecodeError> {
    if !matches!(storage, Storage::Ints | Storage::Dict | Storage::Bools | Storage::Doubles) {
        return Ok(None);
    }
    let mut r = Reader::new(bytes);
    let at = r.position();
    let map = match r.u8("presence")? {
        0 => {
            if present != row_count {
                return Err(DecodeError::new(at, "block says every row is present, directory disagrees"));
            }
            RowMap::All
        }
        1 => RowMap::None,
        2 => {
            let bits = r.take(row_count.div_ceil(8), "presence bits")?;
            let mut before = Vec::with_capacity(bits.len());
            let mut total = 0u32;
            for &b in bits {
                before.push(total);
                total += b.count_ones();
            }
            if total as usize != present {
                return Err(DecodeError::new(at, format!("{total} rows present, directory says {present}")));
            }
            RowMap::Bits { bits, before }
        }
        other => return Err(DecodeError::new(at, format!("unknown presence {other}"))),
    };
    if rows.iter().any(|&row| row as usize >= row_count) {
        return Err(DecodeError::new(at, format!("a selected row lies past the block's {row_count} rows")));
    }
    if matches!(map, RowMap::None) {
        return Ok(Some(vec![None; rows.len()]));
    }
    let count = present;
    let lookup = |get: &dyn Fn(usize) -> u64| -> Vec<Option<u64>> {
        rows.iter().map(|&row| map.index(row as usize).filter(|&i| i < count).map(get)).collect()
    };
    Ok(Some(match storage {
        Storage::Ints => {
            let mut peek = r.clone();
            if peek.u8("int encoding")? != INTS_FOR {
                // Delta-coded: each value needs the ones before it.
                let values = decode_ints(&mut r, count)?;
                return Ok(Some(lookup(&|i| values.get(i).copied().unwrap_or(0))));
            }
            let min = peek.u64("frame of reference")?;
            let width = peek.u8("bit width")?;
            let packed = Packed::take(&mut peek, count, width)?;
            lookup(&|i| packed.get(i).wrapping_add(min))
        }
        Storage::Dict => {
            let width = r.u8("code width")?;
            if width > 32 {
                return Err(r.error(format!("code width {width} exceeds 32")));
            }
            let packed = Packed::take(&mut r, count, width)?;
            lookup(&|i| packed.get(i))
        }
        Storage::Bools => {
            let packed = Packed::take(&mut r, count, 1)?;
            lookup(&|i| packed.get(i))
        }
        _ => {
            let values = r.take(count.checked_mul(8).ok_or_else(|| r.error("overflow"))?, "doubles")?;
            lookup(&|i| {
                let mut word = [0u8; 8];
                if let Some(b) = values.get(i * 8..i * 8 + 8) {
                    word.copy_from_slice(b);
                }
                u64::from_le_bytes(word)
            })
        }
    }))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use std::path::Path;
    use std::sync::Arc;

    use proptest::prelude::*;

    use super::super::reader::{BlockValues, Segment};
    use super::super::writer::build_segment;
    use super::super::BLOCK_ROWS;
    use super::*;
    use crate::batch::SpanBatch;
    use crate::model::{AnyValue, KeyValue, Resource, Span, SpanId, TraceId};

    /// One generated row: an int, a bool and a double attribute (each maybe absent), a
    /// name out of a few, and start/duration either smooth (delta-coded) or random.
    type Row = (Option<i64>, Option<bool>, Option<f64>, u8, u64, u64);

    fn spans(rows: &[Row], smooth: bool) -> Vec<Span> {
        rows.iter()
            .enumerate()
            .map(|(i, (int, flag, ratio, name, start, duration))| {
                let mut attributes = Vec::new();
                if let Some(v) = int {
                    attributes.push(KeyValue::new("n", AnyValue::Int(*v)));
                }
                if let Some(b) = flag {
                    attributes.push(KeyValue::new("flag", AnyValue::Bool(*b)));
                }
                if let Some(d) = ratio {
                    attributes.push(KeyValue::new("ratio", AnyValue::Double(*d)));
                }
                Span {
                    trace_id: TraceId((i as u128 + 1).to_be_bytes()),
                    span_id: SpanId((i as u64 + 1).to_le_bytes()),
                    name: format!("op-{}", name % 7),
                    start_unix_nano: if smooth { 1_700_000_000_000_000_000 + i as u64 * 997 } else { *start },
                    duration_ns: *duration,
                    attributes,
                    resource: Resource { attributes: vec![KeyValue::new("service.name", "s")], ..Default::default() },
                    ..Span::default()
                }
            })
            .collect()
    }

    fn row() -> impl Strategy<Value = Row> {
        (
            proptest::option::of(any::<i64>()),
            proptest::option::of(any::<bool>()),
            proptest::option::of(-1e9f64..1e9),
            any::<u8>(),
            any::<u64>(),
            0u64..5_000_000,
        )
    }

    /// Every numeric block of `segment`, read selectively at the rows where `mask`
    /// holds, against the full decoder.
    fn check(segment: &Segment, mask: &[bool]) {
        for column in 0..segment.directory().columns.len() {
            let meta = segment.column_meta(column).unwrap();
            for block in 0..meta.blocks.len() {
                let full = segment.read_block(column, block).unwrap();
                let numeric = matches!(
                    full.values,
                    BlockValues::Ints(_) | BlockValues::Doubles(_) | BlockValues::Codes(_) | BlockValues::Bools(_)
                );
                let rows: Vec<u32> = (0..full.row_count as u32)
                    .filter(|&r| mask.get(block * BLOCK_ROWS + r as usize).copied().unwrap_or(true))
                    .collect();
                let got = segment.read_block_rows(column, block, &rows);
                if !numeric {
                    continue;
                }
                let want: Vec<Option<u64>> = rows
                    .iter()
                    .map(|&r| {
                        let i = full.value_index(r as usize)?;
                        match &full.values {
                            BlockValues::Ints(v) | BlockValues::Doubles(v) => v.get(i).copied(),
                            BlockValues::Codes(v) => v.get(i).map(|&c| u64::from(c)),
                            BlockValues::Bools(v) => v.get(i).map(|&b| u64::from(b)),
                            _ => None,
                        }
                    })
                    .collect();
                assert_eq!(got.unwrap(), want, "column {column} block {block}");
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn selective_decoding_matches_full_decoding(
            rows in proptest::collection::vec(row(), 1..400),
            mask in proptest::collection::vec(any::<bool>(), 400),
            smooth in any::<bool>(),
        ) {
            let batch = SpanBatch::from_spans(&spans(&rows, smooth));
            let segment = Segment::open(Path::new("seg"), Arc::new(build_segment(&[&batch], 1, None))).unwrap();
            check(&segment, &mask);
        }

        #[test]
        fn selective_decoder_never_panics(
            bytes in proptest::collection::vec(any::<u8>(), 0..300),
            row_count in 0usize..200,
            present in 0usize..200,
            rows in proptest::collection::vec(0u32..220, 0..20),
            storage in prop_oneof![Just(Storage::Ints), Just(Storage::Dict), Just(Storage::Bools), Just(Storage::Doubles)],
        ) {
            let _ = decode_rows(&bytes, row_count, present, storage, &rows);
        }
    }

    #[test]
    fn selective_decoding_matches_across_several_blocks() {
        let rows: Vec<Row> = (0..2 * BLOCK_ROWS + 100)
            .map(|i| {
                let i = i as u64;
                let int = (!i.is_multiple_of(3)).then_some((i * 7919 % 1000) as i64 - 500);
                let flag = (!i.is_multiple_of(5)).then_some(i.is_multiple_of(2));
                let ratio = i.is_multiple_of(4).then_some(i as f64 / 3.0);
                (int, flag, ratio, (i % 11) as u8, i.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 4, i * 31 % 100_000)
            })
            .collect();
        let mask: Vec<bool> = (0..rows.len()).map(|i| i % 37 == 0 || i % 101 == 5).collect();
        for smooth in [false, true] {
            let batch = SpanBatch::from_spans(&spans(&rows, smooth));
            let segment = Segment::open(Path::new("seg"), Arc::new(build_segment(&[&batch], 1, None))).unwrap();
            check(&segment, &mask);
        }
    }

    #[test]
    fn rows_past_the_block_are_an_error_not_a_panic() {
        let rows: Vec<Row> = (0..10).map(|i| (Some(i), None, None, 1, i as u64, 5)).collect();
        let batch = SpanBatch::from_spans(&spans(&rows, true));
        let segment = Segment::open(Path::new("seg"), Arc::new(build_segment(&[&batch], 1, None))).unwrap();
        let duration = crate::segment::Intrinsic::Duration as usize;
        assert_eq!(segment.read_block_rows(duration, 0, &[0, 9]).unwrap(), vec![Some(5), Some(5)]);
        assert!(segment.read_block_rows(duration, 0, &[10]).is_err());
        assert!(segment.read_block_rows(duration, 1, &[0]).is_err());
    }
}
