//! Little-endian and LEB128 primitives for every on-disk encoding, with bounds-checked reads.
//!
//! Everything read from disk goes through [`Reader`], whose every method returns a
//! [`DecodeError`] carrying the offset instead of panicking or reading out of bounds.
#![deny(clippy::unwrap_used, clippy::indexing_slicing)]

use crate::error::DecodeError;

/// Appends encoded values to a byte vector.
#[derive(Default, Debug)]
pub struct Writer {
    /// The bytes written so far.
    pub buf: Vec<u8>,
}

impl Writer {
    /// An empty writer with room for `capacity` bytes.
    pub fn with_capacity(capacity: usize) -> Self {
        Writer { buf: Vec::with_capacity(capacity) }
    }

    /// One byte.
    #[inline]
    pub fn u8(&mut self, value: u8) {
        self.buf.push(value);
    }

    /// Little-endian u16.
    #[inline]
    pub fn u16(&mut self, value: u16) {
        self.buf.extend_from_slice(&value.to_le_bytes());
    }

    /// Little-endian u32.
    #[inline]
    pub fn u32(&mut self, value: u32) {
        self.buf.extend_from_slice(&value.to_le_bytes());
    }

    /// Little-endian u64.
    #[inline]
    pub fn u64(&mut self, value: u64) {
        self.buf.extend_from_slice(&value.to_le_bytes());
    }

    /// Unsigned LEB128.
    #[inline]
    pub fn varint(&mut self, value: u64) {
        // Values below 2^21 (string offsets and lengths, counts, ends) take one capacity
        // check and one fixed-size store instead of a push per byte; with the rare long
        // values out of line, this stays small enough to inline (a third off encoding).
        if value < 1 << 7 {
            self.buf.push(value as u8);
        } else if value < 1 << 14 {
            self.buf.extend_from_slice(&[(value as u8) | 0x80, (value >> 7) as u8]);
        } else if value < 1 << 21 {
            self.buf.extend_from_slice(&[(value as u8) | 0x80, ((value >> 7) as u8) | 0x80, (value >> 14) as u8]);
        } else {
            self.varint_long(value);
        }
    }

    #[cold]
    fn varint_long(&mut self, mut value: u64) {
        while value >= 0x80 {
            self.buf.push((value as u8) | 0x80);
            value >>= 7;
        }
        self.buf.push(value as u8);
    }

    /// Zig-zag signed LEB128.
    #[inline]
    pub fn varint_signed(&mut self, value: i64) {
        self.varint(((value << 1) ^ (value >> 63)) as u64);
    }

    /// Raw bytes.
    #[inline]
    pub fn bytes(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Length-prefixed (varint) bytes.
    #[inline]
    pub fn len_bytes(&mut self, bytes: &[u8]) {
        self.varint(bytes.len() as u64);
        self.buf.extend_from_slice(bytes);
    }
}

/// Reads encoded values from a byte slice; every read is bounds-checked.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// A reader at the start of `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    /// Current offset within the buffer.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// Bytes not yet read.
    pub fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    /// True when every byte was read.
    pub fn is_empty(&self) -> bool {
        self.remaining() == 0
    }

    /// An error at the current position.
    pub fn error(&self, reason: impl Into<String>) -> DecodeError {
        DecodeError::new(self.pos, reason)
    }

    /// The next `len` bytes.
    #[inline]
    pub fn take(&mut self, len: usize, what: &str) -> Result<&'a [u8], DecodeError> {
        let end = self
            .pos
            .checked_add(len)
            .filter(|&end| end <= self.buf.len())
            .ok_or_else(|| self.error(format!("{what}: needs {len} bytes, only {} left", self.remaining())))?;
        let bytes = self.buf.get(self.pos..end).ok_or_else(|| self.error(format!("{what}: out of bounds")))?;
        self.pos = end;
        Ok(bytes)
    }

    #[inline]
    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], DecodeError> {
        let bytes = self.take(N, what)?;
        let mut out = [0u8; N];
        out.copy_from_slice(bytes);
        Ok(out)
    }

    /// One byte.
    #[inline]
    pub fn u8(&mut self, what: &str) -> Result<u8, DecodeError> {
        Ok(u8::from_le_bytes(self.array::<1>(what)?))
    }

    /// Little-endian u16.
    #[inline]
    pub fn u16(&mut self, what: &str) -> Result<u16, DecodeError> {
        Ok(u16::from_le_bytes(self.array::<2>(what)?))
    }

    /// Little-endian u32.
    #[inline]
    pub fn u32(&mut self, what: &str) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(self.array::<4>(what)?))
    }

    /// Little-endian u64.
    #[inline]
    pub fn u64(&mut self, what: &str) -> Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(self.array::<8>(what)?))
    }

    /// A fixed-size byte array.
    #[inline]
    pub fn fixed<const N: usize>(&mut self, what: &str) -> Result<[u8; N], DecodeError> {
        self.array::<N>(what)
    }

    /// Unsigned LEB128 of at most 10 bytes that fits in a u64.
    #[inline]
    pub fn varint(&mut self, what: &str) -> Result<u64, DecodeError> {
        let start = self.pos;
        let mut value: u64 = 0;
        for shift in (0..70).step_by(7) {
            let byte = *self
                .buf
                .get(self.pos)
                .ok_or_else(|| DecodeError::new(start, format!("{what}: varint runs past the end")))?;
            self.pos += 1;
            let low = u64::from(byte & 0x7f);
            if shift == 63 && low > 1 {
                return Err(DecodeError::new(start, format!("{what}: varint overflows u64")));
            }
            value |= low << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(DecodeError::new(start, format!("{what}: varint longer than 10 bytes")))
    }

    /// Zig-zag signed LEB128.
    #[inline]
    pub fn varint_signed(&mut self, what: &str) -> Result<i64, DecodeError> {
        let raw = self.varint(what)?;
        Ok(((raw >> 1) as i64) ^ -((raw & 1) as i64))
    }

    /// A varint that must fit in u32.
    #[inline]
    pub fn varint_u32(&mut self, what: &str) -> Result<u32, DecodeError> {
        let start = self.pos;
        let value = self.varint(what)?;
        u32::try_from(value).map_err(|_| DecodeError::new(start, format!("{what}: {value} does not fit in 32 bits")))
    }

    /// A varint count that must not exceed `max` (a stated maximum, checked before use).
    #[inline]
    pub fn count(&mut self, what: &str, max: usize) -> Result<usize, DecodeError> {
        let start = self.pos;
        let value = self.varint(what)?;
        usize::try_from(value)
            .ok()
            .filter(|&count| count <= max)
            .ok_or_else(|| DecodeError::new(start, format!("{what}: {value} exceeds the limit of {max}")))
    }

    /// Length-prefixed bytes.
    #[inline]
    pub fn len_bytes(&mut self, what: &str) -> Result<&'a [u8], DecodeError> {
        let len = self.count(what, self.remaining())?;
        self.take(len, what)
    }

    /// Fails unless every byte was consumed.
    pub fn finish(&self, what: &str) -> Result<(), DecodeError> {
        if self.is_empty() {
            Ok(())
        } else {
            Err(self.error(format!("{what}: {} trailing bytes", self.remaining())))
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn varints_round_trip(values in proptest::collection::vec(any::<u64>(), 0..50),
                              signed in proptest::collection::vec(any::<i64>(), 0..50)) {
            let mut writer = Writer::default();
            for &v in &values { writer.varint(v); }
            for &v in &signed { writer.varint_signed(v); }
            let mut reader = Reader::new(&writer.buf);
            for &v in &values { prop_assert_eq!(reader.varint("v").unwrap(), v); }
            for &v in &signed { prop_assert_eq!(reader.varint_signed("v").unwrap(), v); }
            prop_assert!(reader.finish("end").is_ok());
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let mut reader = Reader::new(&bytes);
            while !reader.is_empty() {
                if reader.varint("v").is_err() { break; }
            }
            let mut reader = Reader::new(&bytes);
            let _ = reader.len_bytes("b");
            let _ = reader.u64("x");
        }
    }

    #[test]
    fn overlong_varint_is_an_error() {
        let bytes = [0xffu8; 11];
        let err = Reader::new(&bytes).varint("count").unwrap_err();
        assert!(err.reason.contains("overflows"), "{err}");
        let err = Reader::new(&[0x80]).varint("count").unwrap_err();
        assert_eq!(err.to_string(), "at byte 0: count: varint runs past the end");
    }

    #[test]
    fn count_checks_the_stated_maximum() {
        let mut writer = Writer::default();
        writer.varint(1000);
        let err = Reader::new(&writer.buf).count("spans", 10).unwrap_err();
        assert_eq!(err.to_string(), "at byte 0: spans: 1000 exceeds the limit of 10");
    }
}
