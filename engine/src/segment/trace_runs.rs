//! The "trace runs" integer encoding of `start` blocks (segment format 2): the first
//! start of each run of rows of one trace against a frame of reference, the other rows
//! as offsets from their run's first start.
//!
//! Rows are sorted by (trace id, start), so within a trace's run starts never decrease
//! and offsets are small and non-negative, while the run heads, in trace id order, are
//! spread over the segment's whole time range. A block's first row always starts a run,
//! so a block decodes without reading any other block or column.
#![deny(clippy::unwrap_used, clippy::indexing_slicing)]

use super::encoding::{bit_width, pack, unpack};
use super::varwidth;
use crate::codec::{Reader, Writer};
use crate::error::DecodeError;

/// The integer encoding tag of trace runs (0 is frame of reference, 1 delta, 3 exact widths).
pub const TAG: u8 = 2;

/// Writes a block of starts in whichever is smallest: trace runs, or what
/// [`varwidth::encode_best`] picks (frame of reference, delta or exact widths).
pub fn encode_best(out: &mut Writer, values: &[u64], is_head: &[bool]) {
    let mut plain = Writer::with_capacity(values.len() * 8 + 16);
    varwidth::encode_best(&mut plain, values);
    match encoded_bits(values, is_head) {
        Some(bits) if bits.div_ceil(8) + 1 < plain.buf.len() => {
            out.u8(TAG);
            encode(out, values, is_head);
        }
        _ => out.bytes(&plain.buf),
    }
}

/// Bits of a trace-runs block: those of its bit-packed fields plus the fixed bytes
/// (base, two widths); `None` when a row starts before its run's head (not sorted).
pub fn encoded_bits(values: &[u64], is_head: &[bool]) -> Option<usize> {
    let (heads, offsets) = split(values, is_head)?;
    let base = heads.iter().copied().min().unwrap_or(0);
    let head_width = bit_width(heads.iter().map(|h| h - base).max().unwrap_or(0));
    Some(
        values.len().div_ceil(8) * 8
            + (heads.len() * usize::from(head_width)).div_ceil(8) * 8
            + varwidth::encoded_bits(&offsets)
            + 72,
    )
}

/// Heads, and each other row's offset from its run's head, or `None` if a row lies
/// before its head or the first row is not a head.
fn split(values: &[u64], is_head: &[bool]) -> Option<(Vec<u64>, Vec<u64>)> {
    if values.len() != is_head.len() || is_head.first() == Some(&false) {
        return None;
    }
    let mut heads = Vec::new();
    let mut offsets = Vec::with_capacity(values.len());
    let mut head = 0u64;
    for (&v, &starts_run) in values.iter().zip(is_head) {
        if starts_run {
            head = v;
            heads.push(v);
        } else {
            offsets.push(v.checked_sub(head)?);
        }
    }
    Some((heads, offsets))
}

/// Writes `values` as trace runs (after the encoding tag, which the caller writes):
/// base <u64> | a head bit per row, bit-packed | head width <u8> | (head − base)
/// bit-packed per head | offsets from the run's head in exact widths ([`varwidth`]);
/// `is_head[i]` says row `i` starts a run. The caller checked [`encoded_bits`] is
/// `Some`; rows out of order are written as heads, which keeps the encoding exact.
pub fn encode(out: &mut Writer, values: &[u64], is_head: &[bool]) {
    let mut heads_bits = Vec::with_capacity(values.len());
    let mut heads = Vec::new();
    let mut offsets = Vec::with_capacity(values.len());
    let mut head = 0u64;
    for (i, &v) in values.iter().enumerate() {
        let starts_run = i == 0 || is_head.get(i) != Some(&false) || v < head;
        heads_bits.push(u64::from(starts_run));
        if starts_run {
            head = v;
            heads.push(v);
        } else {
            offsets.push(v - head);
        }
    }
    let base = heads.iter().copied().min().unwrap_or(0);
    for h in &mut heads {
        *h -= base;
    }
    out.u64(base);
    pack(out, &heads_bits, 1);
    let head_width = bit_width(heads.iter().copied().max().unwrap_or(0));
    out.u8(head_width);
    pack(out, &heads, head_width);
    varwidth::encode(out, &offsets);
}

/// Decodes `count` values written by [`encode`] (the tag already read).
pub fn decode(r: &mut Reader<'_>, count: usize) -> Result<Vec<u64>, DecodeError> {
    let base = r.u64("trace runs base")?;
    let at = r.position();
    let head_bits = r.take(count.div_ceil(8), "head bits")?;
    let is_head = |row: usize| head_bits.get(row / 8).is_some_and(|b| b & (1 << (row % 8)) != 0);
    if count > 0 && !is_head(0) {
        return Err(DecodeError::new(at, "a trace-runs block must start with a run"));
    }
    let head_count = (0..count).filter(|&row| is_head(row)).count();
    let head_width = r.u8("head width")?;
    let heads = unpack(r, head_count, head_width)?;
    let offsets = varwidth::decode(r, count - head_count)?;
    let mut values = Vec::with_capacity(count);
    let (mut heads, mut offsets) = (heads.into_iter(), offsets.into_iter());
    let mut head = 0u64;
    for row in 0..count {
        if is_head(row) {
            head = base.wrapping_add(heads.next().unwrap_or(0));
            values.push(head);
        } else {
            values.push(head.wrapping_add(offsets.next().unwrap_or(0)));
        }
    }
    Ok(values)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn round_trip(values: &[u64], is_head: &[bool]) -> Vec<u64> {
        let mut w = Writer::default();
        encode(&mut w, values, is_head);
        let mut r = Reader::new(&w.buf);
        let got = decode(&mut r, values.len()).unwrap();
        r.finish("block").unwrap();
        got
    }

    proptest! {
        #[test]
        fn sorted_runs_round_trip(
            runs in proptest::collection::vec((any::<u64>(), proptest::collection::vec(0u64..1 << 40, 0..12)), 1..60),
        ) {
            let mut values = Vec::new();
            let mut is_head = Vec::new();
            for (head, gaps) in runs {
                let mut v = head;
                values.push(v);
                is_head.push(true);
                for gap in gaps {
                    v = v.saturating_add(gap);
                    values.push(v);
                    is_head.push(false);
                }
            }
            prop_assert!(encoded_bits(&values, &is_head).is_some());
            prop_assert_eq!(round_trip(&values, &is_head), values);
        }

        #[test]
        fn any_values_and_flags_round_trip(
            values in proptest::collection::vec(any::<u64>(), 0..200),
            flags in proptest::collection::vec(any::<bool>(), 200),
        ) {
            let is_head = &flags[..values.len()];
            prop_assert_eq!(round_trip(&values, is_head), values);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200), count in 0usize..300) {
            let _ = decode(&mut Reader::new(&bytes), count);
        }
    }

    #[test]
    fn a_block_not_starting_a_run_is_refused() {
        let mut w = Writer::default();
        w.u64(0);
        pack(&mut w, &[0, 1], 1);
        w.u8(0);
        varwidth::encode(&mut w, &[0]);
        assert!(decode(&mut Reader::new(&w.buf), 2).is_err());
    }

    #[test]
    fn trace_shaped_starts_choose_runs_and_decode_through_decode_ints() {
        // Runs of 4 spans: heads spread over ~15 minutes, offsets of a few ms.
        let mut values = Vec::new();
        let mut is_head = Vec::new();
        for run in 0..2000u64 {
            let head = 1_795_698_000_000_000_000 + run.wrapping_mul(0x9e37_79b9_7f4a_7c15) % 900_000_000_000;
            for i in 0..4u64 {
                values.push(head + i * (1_000_000 + run * 7919 % 3_000_000));
                is_head.push(i == 0);
            }
        }
        let mut w = Writer::default();
        encode_best(&mut w, &values, &is_head);
        assert_eq!(w.buf.first(), Some(&TAG));
        let mut plain = Writer::default();
        varwidth::encode_best(&mut plain, &values);
        assert!(w.buf.len() * 10 < plain.buf.len() * 8, "{} vs {}", w.buf.len(), plain.buf.len());
        let mut r = Reader::new(&w.buf);
        assert_eq!(crate::segment::encoding::decode_ints(&mut r, values.len()).unwrap(), values);
        r.finish("block").unwrap();
    }
}
