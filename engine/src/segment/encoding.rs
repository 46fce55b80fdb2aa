//! Column value encodings of segment blocks: bit-packing, frame-of-reference, delta,
//! plain and id-shaped strings, with bounds-checked decoders.
//!
//! Written by hand rather than taken from a crate because the segment needs exactly
//! these few codecs over its own block layout, each decoder must return a located
//! error on any input, and the hot loops are short enough to keep simple.
#![deny(clippy::unwrap_used, clippy::indexing_slicing)]

use crate::codec::{Reader, Writer};
use crate::error::DecodeError;

/// Bits needed to represent `value`.
pub fn bit_width(value: u64) -> u8 {
    (64 - value.leading_zeros()) as u8
}

/// Packs `values` at `width` bits each, little-endian bit order.
pub fn pack(out: &mut Writer, values: &[u64], width: u8) {
    if width == 0 {
        return;
    }
    let mut acc: u128 = 0;
    let mut bits: u32 = 0;
    for &v in values {
        acc |= u128::from(v) << bits;
        bits += u32::from(width);
        while bits >= 8 {
            out.u8(acc as u8);
            acc >>= 8;
            bits -= 8;
        }
    }
    if bits > 0 {
        out.u8(acc as u8);
    }
}

/// Unpacks `count` values of `width` bits.
pub fn unpack(r: &mut Reader<'_>, count: usize, width: u8) -> Result<Vec<u64>, DecodeError> {
    if width > 64 {
        return Err(r.error(format!("bit width {width} exceeds 64")));
    }
    if width == 0 {
        return Ok(vec![0; count]);
    }
    let total_bits = count.checked_mul(usize::from(width)).ok_or_else(|| r.error("packed size overflows"))?;
    let bytes = r.take(total_bits.div_ceil(8), "packed values")?;
    let mut out = Vec::with_capacity(count);
    let mut done = 0;
    if width <= 56 {
        // Each value lies within the 8 bytes from its first byte: one unaligned load,
        // a shift and a mask, while 8 bytes remain (the byte loop below does the tail).
        let w = usize::from(width);
        let mask = (1u64 << width) - 1;
        while done < count {
            let bit = done * w;
            let Some(window) = bytes.get(bit / 8..bit / 8 + 8) else { break };
            out.push((le_u64(window) >> (bit % 8)) & mask);
            done += 1;
        }
    }
    let mask: u128 = if width == 64 { u128::from(u64::MAX) } else { (1u128 << width) - 1 };
    let mut acc: u128 = 0;
    let mut bits: u32 = 0;
    let start_bit = done * usize::from(width);
    // The tail starts on a byte boundary only when its first bit does; skip the bits
    // of the first byte already taken.
    let mut iter = bytes.get(start_bit / 8..).unwrap_or_default().iter();
    if start_bit % 8 != 0 {
        acc = u128::from(iter.next().copied().unwrap_or(0) >> (start_bit % 8));
        bits = 8 - (start_bit % 8) as u32;
    }
    for _ in done..count {
        while bits < u32::from(width) {
            let byte = iter.next().copied().unwrap_or(0);
            acc |= u128::from(byte) << bits;
            bits += 8;
        }
        out.push((acc & mask) as u64);
        acc >>= width;
        bits -= u32::from(width);
    }
    Ok(out)
}

/// The little-endian `u64` of the first 8 bytes of `window` (which holds at least 8).
#[inline]
pub(crate) fn le_u64(window: &[u8]) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(window.get(..8).unwrap_or(&[0; 8]));
    u64::from_le_bytes(word)
}

const INTS_FOR: u8 = 0;
const INTS_DELTA: u8 = 1;

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

/// Encodes integers (as u64 bit patterns) with whichever of frame-of-reference or
/// delta bit-packing is smaller for this block.
pub fn encode_ints(out: &mut Writer, values: &[u64]) {
    let min = values.iter().copied().min().unwrap_or(0);
    let max = values.iter().copied().max().unwrap_or(0);
    let for_width = bit_width(max - min);
    let mut deltas = Vec::with_capacity(values.len());
    let mut previous = values.first().copied().unwrap_or(0);
    for &v in values.iter().skip(1) {
        deltas.push(zigzag(v.wrapping_sub(previous) as i64));
        previous = v;
    }
    let delta_width = bit_width(deltas.iter().copied().max().unwrap_or(0));
    if values.len() > 1 && (delta_width as usize) * (values.len() - 1) + 64 < (for_width as usize) * values.len() {
        out.u8(INTS_DELTA);
        out.u64(values.first().copied().unwrap_or(0));
        out.u8(delta_width);
        pack(out, &deltas, delta_width);
    } else {
        out.u8(INTS_FOR);
        out.u64(min);
        out.u8(for_width);
        let offsets: Vec<u64> = values.iter().map(|&v| v - min).collect();
        pack(out, &offsets, for_width);
    }
}

/// Decodes `count` integers written by [`encode_ints`].
pub fn decode_ints(r: &mut Reader<'_>, count: usize) -> Result<Vec<u64>, DecodeError> {
    let at = r.position();
    match r.u8("int encoding")? {
        INTS_FOR => {
            let min = r.u64("frame of reference")?;
            let width = r.u8("bit width")?;
            let mut values = unpack(r, count, width)?;
            for v in &mut values {
                *v = v.wrapping_add(min);
            }
            Ok(values)
        }
        INTS_DELTA => {
            let first = r.u64("first value")?;
            let width = r.u8("bit width")?;
            let deltas = unpack(r, count.saturating_sub(1), width)?;
            let mut values = Vec::with_capacity(count);
            if count > 0 {
                values.push(first);
            }
            let mut previous = first;
            for d in deltas {
                previous = previous.wrapping_add(unzigzag(d) as u64);
                values.push(previous);
            }
            Ok(values)
        }
        super::trace_runs::TAG => super::trace_runs::decode(r, count),
        super::varwidth::TAG => super::varwidth::decode_with_reference(r, count),
        other => Err(DecodeError::new(at, format!("unknown int encoding {other}"))),
    }
}

const STR_PLAIN: u8 = 0;
const STR_HEX32: u8 = 1;
const STR_UUID: u8 = 2;
const STR_SHAPED: u8 = 3;

/// Per-value shapes of `STR_SHAPED`.
const SHAPE_PLAIN: u64 = 0;
const SHAPE_UUID: u64 = 1;
const SHAPE_LOWER_HEX: u64 = 2;
const SHAPE_UPPER_HEX: u64 = 3;

/// Hex digit classes: the digit's value in the low 4 bits, plus a flag for a lowercase
/// letter, an uppercase letter, or a byte that is no hex digit.
const HEX_LOWER_LETTER: u8 = 0x10;
const HEX_UPPER_LETTER: u8 = 0x20;
const HEX_INVALID: u8 = 0x40;

/// The class of one byte as a hex digit (see the flags above).
#[inline]
const fn hex_class(c: u8) -> u8 {
    match c {
        b'0'..=b'9' => c - b'0',
        b'a'..=b'f' => (c - b'a' + 10) | HEX_LOWER_LETTER,
        b'A'..=b'F' => (c - b'A' + 10) | HEX_UPPER_LETTER,
        _ => HEX_INVALID,
    }
}

/// Decodes hex digits (an even count, at most 64) into `out`, returning the byte count
/// and the union of the digits' class flags (letters of either case, invalid bytes).
#[inline]
fn decode_hex_pairs(digits: &[u8], out: &mut [u8; 32]) -> (usize, u8) {
    let mut flags = 0u8;
    let mut n = 0usize;
    for (slot, pair) in out.iter_mut().zip(digits.chunks_exact(2)) {
        let (Some(&high), Some(&low)) = (pair.first(), pair.get(1)) else { break };
        let high = hex_class(high);
        let low = hex_class(low);
        flags |= high | low;
        *slot = ((high & 0x0f) << 4) | (low & 0x0f);
        n += 1;
    }
    (n, flags & 0xf0)
}

/// The shape of `s` and, for an id shape, its bytes in `out[..n]`: a lowercase UUID
/// (`8-4-4-4-12`), else an even number (2..=64) of hex digits, all lowercase or all
/// uppercase where they are letters, else plain. One pass, no allocation.
fn classify(s: &str, out: &mut [u8; 32]) -> (u64, usize) {
    let b = s.as_bytes();
    if let Ok(uuid) = <&[u8; 36]>::try_from(b) {
        if uuid[8] == b'-' && uuid[13] == b'-' && uuid[18] == b'-' && uuid[23] == b'-' {
            let mut digits = [0u8; 32];
            digits[..8].copy_from_slice(&uuid[..8]);
            digits[8..12].copy_from_slice(&uuid[9..13]);
            digits[12..16].copy_from_slice(&uuid[14..18]);
            digits[16..20].copy_from_slice(&uuid[19..23]);
            digits[20..].copy_from_slice(&uuid[24..]);
            let (n, flags) = decode_hex_pairs(&digits, out);
            if n == 16 && flags & (HEX_INVALID | HEX_UPPER_LETTER) == 0 {
                return (SHAPE_UUID, 16);
            }
            return (SHAPE_PLAIN, 0);
        }
    }
    if b.is_empty() || !b.len().is_multiple_of(2) || b.len() > 64 {
        return (SHAPE_PLAIN, 0);
    }
    let (n, flags) = decode_hex_pairs(b, out);
    if flags & HEX_INVALID != 0 || n * 2 != b.len() {
        (SHAPE_PLAIN, 0)
    } else if flags & HEX_UPPER_LETTER == 0 {
        (SHAPE_LOWER_HEX, n)
    } else if flags & HEX_LOWER_LETTER == 0 {
        (SHAPE_UPPER_HEX, n)
    } else {
        (SHAPE_PLAIN, 0)
    }
}

/// Encodes strings, choosing the block-wide form from the values' shapes.
pub fn encode_strings(out: &mut Writer, values: &[&str]) {
    // One pass finds each value's shape and id bytes; the block-wide forms follow from
    // the shapes.
    let mut scratch = [0u8; 32];
    let mut shapes: Vec<u64> = Vec::with_capacity(values.len());
    let mut ids: Vec<u8> = Vec::new();
    let mut id_ends: Vec<u32> = Vec::new();
    for s in values {
        let (shape, n) = classify(s, &mut scratch);
        shapes.push(shape);
        if shape != SHAPE_PLAIN {
            ids.extend_from_slice(scratch.get(..n).unwrap_or_default());
        }
        id_ends.push(ids.len() as u32);
    }
    if !values.is_empty() && shapes.iter().all(|&shape| shape == SHAPE_UUID) {
        out.u8(STR_UUID);
        out.bytes(&ids);
        return;
    }
    if !values.is_empty()
        && values.iter().all(|s| s.len() == 32)
        && shapes.iter().all(|&shape| shape == SHAPE_LOWER_HEX)
    {
        out.u8(STR_HEX32);
        out.bytes(&ids);
        return;
    }
    if shapes.iter().any(|&shape| shape != SHAPE_PLAIN) {
        out.u8(STR_SHAPED);
        pack(out, &shapes, 2);
        let mut previous = 0usize;
        for ((s, &shape), &end) in values.iter().zip(&shapes).zip(&id_ends) {
            let bytes = ids.get(previous..end as usize).unwrap_or_default();
            previous = end as usize;
            match shape {
                SHAPE_UUID => out.bytes(bytes),
                SHAPE_LOWER_HEX | SHAPE_UPPER_HEX => {
                    out.u8(bytes.len() as u8);
                    out.bytes(bytes);
                }
                _ => out.len_bytes(s.as_bytes()),
            }
        }
        return;
    }
    out.u8(STR_PLAIN);
    for s in values {
        out.varint(s.len() as u64);
    }
    for s in values {
        out.bytes(s.as_bytes());
    }
}

/// Strings decoded into one arena: value `i` is `arena[ends[i-1]..ends[i]]`. A block of
/// ids decodes with two allocations instead of one per value.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StrArena {
    arena: String,
    ends: Vec<u32>,
}

impl StrArena {
    /// Number of strings.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// String `index`.
    pub fn get(&self, index: usize) -> Option<&str> {
        let start = if index == 0 { 0 } else { *self.ends.get(index - 1)? as usize };
        self.arena.get(start..*self.ends.get(index)? as usize)
    }

    /// Every string, owned.
    pub fn to_vec(&self) -> Vec<String> {
        (0..self.len()).filter_map(|i| self.get(i).map(str::to_owned)).collect()
    }

    fn push_str(&mut self, s: &str) {
        self.arena.push_str(s);
        self.ends.push(self.arena.len() as u32);
    }

    fn push_hex(&mut self, bytes: &[u8], upper: bool, uuid: bool) {
        let digits: &[u8; 16] = if upper { b"0123456789ABCDEF" } else { b"0123456789abcdef" };
        for (i, b) in bytes.iter().enumerate() {
            if uuid && matches!(i, 4 | 6 | 8 | 10) {
                self.arena.push('-');
            }
            self.arena.push(char::from(*digits.get(usize::from(b >> 4)).unwrap_or(&b'0')));
            self.arena.push(char::from(*digits.get(usize::from(b & 15)).unwrap_or(&b'0')));
        }
        self.ends.push(self.arena.len() as u32);
    }
}

/// Decodes `count` strings written by [`encode_strings`].
pub fn decode_strings(r: &mut Reader<'_>, count: usize) -> Result<Vec<String>, DecodeError> {
    Ok(decode_strings_arena(r, count)?.to_vec())
}

/// Decodes `count` strings written by [`encode_strings`] into one arena.
pub fn decode_strings_arena(r: &mut Reader<'_>, count: usize) -> Result<StrArena, DecodeError> {
    let at = r.position();
    let mut out = StrArena { arena: String::new(), ends: Vec::with_capacity(count.min(r.remaining())) };
    match r.u8("string encoding")? {
        tag @ (STR_HEX32 | STR_UUID) => {
            let bytes = r.take(count.checked_mul(16).ok_or_else(|| r.error("id count overflows"))?, "ids")?;
            out.arena.reserve(count * 36);
            for id in bytes.chunks_exact(16) {
                out.push_hex(id, false, tag == STR_UUID);
            }
        }
        STR_SHAPED => {
            let shapes = unpack(r, count, 2)?;
            for shape in shapes {
                let at = r.position();
                match shape {
                    SHAPE_UUID => out.push_hex(r.take(16, "uuid")?, false, true),
                    SHAPE_LOWER_HEX | SHAPE_UPPER_HEX => {
                        let len = usize::from(r.u8("hex length")?);
                        if len == 0 || len > 32 {
                            return Err(DecodeError::new(at, format!("hex id of {len} bytes")));
                        }
                        out.push_hex(r.take(len, "hex id")?, shape == SHAPE_UPPER_HEX, false);
                    }
                    _ => {
                        let bytes = r.len_bytes("string")?;
                        out.push_str(
                            std::str::from_utf8(bytes)
                                .map_err(|_| DecodeError::new(at, "string is not valid UTF-8"))?,
                        );
                    }
                }
            }
        }
        STR_PLAIN => {
            let mut lengths = Vec::with_capacity(count.min(r.remaining()));
            for _ in 0..count {
                lengths.push(r.count("string length", r.remaining())?);
            }
            for len in lengths {
                let at = r.position();
                let bytes = r.take(len, "string bytes")?;
                out.push_str(
                    std::str::from_utf8(bytes).map_err(|_| DecodeError::new(at, "string is not valid UTF-8"))?,
                );
            }
        }
        other => return Err(DecodeError::new(at, format!("unknown string encoding {other}"))),
    }
    if out.arena.len() > u32::MAX as usize {
        return Err(DecodeError::new(at, "strings longer than 4 GiB in one block"));
    }
    Ok(out)
}

/// Packs booleans as bits.
pub fn encode_bools(out: &mut Writer, values: &[bool]) {
    let bits: Vec<u64> = values.iter().map(|&b| u64::from(b)).collect();
    pack(out, &bits, 1);
}

/// Unpacks `count` booleans.
pub fn decode_bools(r: &mut Reader<'_>, count: usize) -> Result<Vec<bool>, DecodeError> {
    Ok(unpack(r, count, 1)?.into_iter().map(|b| b != 0).collect())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn packing_round_trips(values in proptest::collection::vec(any::<u64>(), 0..300), width in 0u8..=64) {
            let mask = if width == 64 { u64::MAX } else { (1u64 << width) - 1 };
            let values: Vec<u64> = values.iter().map(|v| v & mask).collect();
            let mut w = Writer::default();
            pack(&mut w, &values, width);
            let got = unpack(&mut Reader::new(&w.buf), values.len(), width).unwrap();
            prop_assert_eq!(got, values);
        }

        #[test]
        fn ints_round_trip(values in proptest::collection::vec(any::<u64>(), 0..300), base in any::<u64>(), small in any::<bool>()) {
            let values: Vec<u64> = if small { values.iter().enumerate().map(|(i, v)| base.wrapping_add(i as u64 * 1000 + v % 7)).collect() } else { values };
            let mut w = Writer::default();
            encode_ints(&mut w, &values);
            let mut r = Reader::new(&w.buf);
            prop_assert_eq!(decode_ints(&mut r, values.len()).unwrap(), values);
            prop_assert!(r.is_empty());
        }

        #[test]
        fn strings_round_trip(values in proptest::collection::vec(prop_oneof![".{0,20}", "[0-9a-fA-F]{0,12}", "[0-9A-F]{2,8}"], 0..50), ids in any::<bool>(), uuid in any::<bool>()) {
            let values: Vec<String> = if ids {
                values.iter().enumerate().map(|(i, _)| {
                    let hex = format!("{:032x}", (i as u128).wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c834));
                    if uuid { format!("{}-{}-{}-{}-{}", &hex[..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..]) } else { hex }
                }).collect()
            } else { values };
            let refs: Vec<&str> = values.iter().map(String::as_str).collect();
            let mut w = Writer::default();
            encode_strings(&mut w, &refs);
            let mut r = Reader::new(&w.buf);
            prop_assert_eq!(decode_strings(&mut r, values.len()).unwrap(), values);
        }

        #[test]
        fn near_id_strings_round_trip(values in proptest::collection::vec(prop_oneof![
            "[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}",
            "[0-9a-fA-F-]{34,38}",
            "[0-9a-fA-FgG]{1,66}",
        ], 0..40)) {
            let refs: Vec<&str> = values.iter().map(String::as_str).collect();
            let mut w = Writer::default();
            encode_strings(&mut w, &refs);
            prop_assert_eq!(decode_strings(&mut Reader::new(&w.buf), values.len()).unwrap(), values);
        }

        #[test]
        fn decoders_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200), count in 0usize..100) {
            let _ = decode_ints(&mut Reader::new(&bytes), count);
            let _ = decode_strings(&mut Reader::new(&bytes), count);
            let _ = decode_bools(&mut Reader::new(&bytes), count);
        }
    }

    #[test]
    fn mixed_id_shapes_round_trip_in_binary() {
        let values =
            ["f3b2a1c4-5d6e-4f70-8192-a3b4c5d6e7f8", "0A1B2C3D4E5F6071", "abcdef12", "plain text", "ABC", "", "0a1B"];
        let mut w = Writer::default();
        encode_strings(&mut w, &values);
        // tag, 2-bit shapes, uuid, upper hex, lower hex, then four plain strings.
        assert_eq!(w.buf.len(), 1 + 2 + 16 + 9 + 5 + 11 + 4 + 1 + 5);
        let got = decode_strings(&mut Reader::new(&w.buf), values.len()).unwrap();
        assert_eq!(got, values);
    }

    #[test]
    fn id_shaped_strings_take_sixteen_bytes_and_other_shapes_stay_plain() {
        let uuid = "f3b2a1c4-5d6e-4f70-8192-a3b4c5d6e7f8";
        let mut w = Writer::default();
        encode_strings(&mut w, &[uuid, uuid]);
        assert_eq!(w.buf.len(), 1 + 32);
        // Uppercase must round-trip exactly, so it is not id-shaped.
        let upper = uuid.to_uppercase();
        let mut w = Writer::default();
        encode_strings(&mut w, &[&upper]);
        assert_eq!(decode_strings(&mut Reader::new(&w.buf), 1).unwrap(), vec![upper]);
    }
}
