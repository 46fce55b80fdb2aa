//! "Exact widths" integer packing (segment format 2): each value stored in its own bit
//! width, the widths as small bit-packed codes, for heavy-tailed values (durations,
//! start offsets within a trace) where packing all at the block's largest width wastes
//! several bits per value.
#![deny(clippy::unwrap_used, clippy::indexing_slicing)]

use super::encoding::{bit_width, encode_ints, pack, unpack};
use crate::codec::{Reader, Writer};
use crate::error::DecodeError;

/// The integer encoding tag of a frame of reference followed by exact widths.
pub const TAG: u8 = 3;

/// Writes a block of integers in whichever is smaller: the frame of reference or delta
/// encoding [`encode_ints`] picks, or a frame of reference with exact widths.
pub fn encode_best(out: &mut Writer, values: &[u64]) {
    let mut plain = Writer::with_capacity(values.len() * 8 + 16);
    encode_ints(&mut plain, values);
    let min = values.iter().copied().min().unwrap_or(0);
    if 9 + bits_of(values.iter().map(|&v| v - min), values.len()) / 8 < plain.buf.len() {
        let offsets: Vec<u64> = values.iter().map(|&v| v - min).collect();
        out.u8(TAG);
        out.u64(min);
        encode(out, &offsets);
    } else {
        out.bytes(&plain.buf);
    }
}

/// Decodes `count` integers of encoding [`TAG`] (the tag already read): a frame of
/// reference `min <u64>`, then exact widths of `value − min`.
pub fn decode_with_reference(r: &mut Reader<'_>, count: usize) -> Result<Vec<u64>, DecodeError> {
    let min = r.u64("frame of reference")?;
    let mut values = decode(r, count)?;
    for v in &mut values {
        *v = v.wrapping_add(min);
    }
    Ok(values)
}

/// Bits of a value's payload: its width less the implicit leading one bit.
fn payload_bits(value: u64) -> u32 {
    u32::from(bit_width(value)).saturating_sub(1)
}

/// Bits [`encode`] writes for `values`, rounded up to whole bytes, including its two
/// width bytes.
pub fn encoded_bits(values: &[u64]) -> usize {
    bits_of(values.iter().copied(), values.len())
}

/// [`encoded_bits`] of `count` values, in one pass.
fn bits_of(values: impl Iterator<Item = u64>, count: usize) -> usize {
    let (mut low, mut high, mut payload) = (64u8, 0u8, 0usize);
    for v in values {
        let width = bit_width(v);
        low = low.min(width);
        high = high.max(width);
        payload += usize::from(width.saturating_sub(1));
    }
    let code_width = usize::from(bit_width(u64::from(high.saturating_sub(low))));
    16 + (count * code_width).div_ceil(8) * 8 + payload.div_ceil(8) * 8
}

fn width_range(values: &[u64]) -> (u8, u8) {
    let low = values.iter().map(|&v| bit_width(v)).min().unwrap_or(0);
    let high = values.iter().map(|&v| bit_width(v)).max().unwrap_or(0);
    (low, high)
}

/// Writes `values`: low width <u8> | code width <u8> | (width − low) per value,
/// bit-packed at the code width | each value's bits below its leading one, at its
/// width − 1 bits, concatenated least significant bit first (zero-padded to a byte).
pub fn encode(out: &mut Writer, values: &[u64]) {
    let (low, high) = width_range(values);
    let code_width = bit_width(u64::from(high - low));
    out.u8(low);
    out.u8(code_width);
    let codes: Vec<u64> = values.iter().map(|&v| u64::from(bit_width(v) - low)).collect();
    pack(out, &codes, code_width);
    // Payloads accumulate in 128 bits and leave 8 bytes at a time.
    let mut acc: u128 = 0;
    let mut bits: u32 = 0;
    for &v in values {
        let width = payload_bits(v);
        if width == 0 {
            continue;
        }
        let payload = v & (u64::MAX >> (64 - width));
        acc |= u128::from(payload) << bits;
        bits += width;
        if bits >= 64 {
            out.bytes(&(acc as u64).to_le_bytes());
            acc >>= 64;
            bits -= 64;
        }
    }
    while bits > 0 {
        out.u8(acc as u8);
        acc >>= 8;
        bits = bits.saturating_sub(8);
    }
}

/// Decodes `count` values written by [`encode`].
pub fn decode(r: &mut Reader<'_>, count: usize) -> Result<Vec<u64>, DecodeError> {
    let at = r.position();
    let low = r.u8("low width")?;
    let code_width = r.u8("width code width")?;
    if low > 64 || code_width > 7 {
        return Err(DecodeError::new(
            at,
            format!("exact widths: low width {low} or code width {code_width} too large"),
        ));
    }
    let codes = unpack(r, count, code_width)?;
    let mut total_bits = 0usize;
    for &code in &codes {
        let width = u64::from(low) + code;
        if width > 64 {
            return Err(DecodeError::new(at, format!("exact widths: a value width of {width} exceeds 64")));
        }
        total_bits += (width as usize).saturating_sub(1);
    }
    let bytes = r.take(total_bits.div_ceil(8), "exact-width values")?;
    // Read each payload from a 16-byte little-endian window of a zero-padded copy: a
    // payload is at most 63 bits and starts at most 7 bits into its first byte.
    let mut padded = Vec::with_capacity(bytes.len() + 16);
    padded.extend_from_slice(bytes);
    padded.resize(bytes.len() + 16, 0);
    let mut position = 0usize;
    let mut values = Vec::with_capacity(count);
    for code in codes {
        let width = u32::from(low) + code as u32;
        if width <= 1 {
            values.push(u64::from(width));
            continue;
        }
        let payload_width = width - 1;
        let byte = position / 8;
        let window: [u8; 16] = padded.get(byte..byte + 16).and_then(|w| w.try_into().ok()).unwrap_or([0; 16]);
        let payload = (u128::from_le_bytes(window) >> (position % 8)) as u64 & (u64::MAX >> (64 - payload_width));
        position += payload_width as usize;
        values.push(payload | (1u64 << payload_width));
    }
    Ok(values)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn blocks_round_trip_through_decode_ints(values in proptest::collection::vec(prop_oneof![any::<u64>(), 1u64 << 40..(1 << 40) + (1 << 30), 0u64..4], 0..300)) {
            let mut w = Writer::default();
            encode_best(&mut w, &values);
            let mut r = Reader::new(&w.buf);
            prop_assert_eq!(crate::segment::encoding::decode_ints(&mut r, values.len()).unwrap(), values);
            r.finish("block").unwrap();
        }

        #[test]
        fn values_round_trip(values in proptest::collection::vec(prop_oneof![any::<u64>(), 0u64..1 << 30, 0u64..4], 0..300)) {
            let mut w = Writer::default();
            encode(&mut w, &values);
            prop_assert_eq!(w.buf.len() * 8, encoded_bits(&values));
            let mut r = Reader::new(&w.buf);
            prop_assert_eq!(decode(&mut r, values.len()).unwrap(), values);
            r.finish("values").unwrap();
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200), count in 0usize..300) {
            let _ = decode(&mut Reader::new(&bytes), count);
        }
    }

    #[test]
    fn heavy_tailed_values_choose_exact_widths_and_take_fewer_bytes() {
        // Mostly ~2^20, one value near 2^31: packing at the largest width wastes bits.
        let values: Vec<u64> = (0..4096u64).map(|i| if i == 7 { 3 << 30 } else { (1 << 20) + i * 97 % 1000 }).collect();
        let mut plain = Writer::default();
        encode_ints(&mut plain, &values);
        let mut best = Writer::default();
        encode_best(&mut best, &values);
        assert_eq!(best.buf.first(), Some(&TAG));
        assert!(best.buf.len() * 10 < plain.buf.len() * 7, "{} vs {}", best.buf.len(), plain.buf.len());
        let mut r = Reader::new(&best.buf);
        assert_eq!(crate::segment::encoding::decode_ints(&mut r, values.len()).unwrap(), values);
    }
}
