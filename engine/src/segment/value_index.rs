//! The paged value index of a high-cardinality string column (segment format 2): which
//! blocks may hold a value, found by reading one page of bit-packed (hash, block) pairs.
//!
//! Format 1 stored a `hash u32 | row u32` pair per row, 8 bytes each. Format 2 stores
//! each distinct (hash, block) pair once, sorted, in pages of [`PAGE_ENTRIES`] entries:
//! a page directory of first hashes finds the page, the page stores hash deltas and
//! block numbers bit-packed. A lookup then decodes each candidate block and compares
//! the stored values, which it had to do anyway (a block is one zstd frame), so rows
//! need not be stored and a short hash costs only the rare extra block.
#![deny(clippy::unwrap_used, clippy::indexing_slicing)]

use super::encoding::{bit_width, pack, unpack};
use crate::codec::{Reader, Writer};
use crate::error::DecodeError;

/// Entries per page written (the last page may hold fewer).
pub const PAGE_ENTRIES: usize = 128;
/// Largest page size a reader accepts.
pub const PAGE_ENTRIES_MAX: usize = 4096;
/// Hash bits kept beyond the bits of the distinct-value count: about one value in
/// 2^10 shares a lookup's hash by chance and costs a needless block decode.
pub const EXTRA_HASH_BITS: u8 = 10;
/// Bytes of the fixed header: hash bits, block bits, page entries, entry count, page count.
const HEADER_BYTES: usize = 12;
/// Bytes of one page directory entry: first hash, end offset.
const DIRECTORY_ENTRY_BYTES: usize = 8;

/// Hash bits kept for a column of about `distinct` distinct values.
pub fn hash_bits_for(distinct: u64) -> u8 {
    (bit_width(distinct) + EXTRA_HASH_BITS).clamp(1, 32)
}

/// Encodes the index of `(hash32, block)` pairs (`hash32` the full 32-bit value hash)
/// for a column of `block_count` blocks, keeping the top `hash_bits` bits of each hash.
pub fn encode(pairs: impl Iterator<Item = (u32, u32)>, block_count: usize, hash_bits: u8) -> Vec<u8> {
    let hash_bits = hash_bits.clamp(1, 32);
    let block_bits = bit_width(block_count.saturating_sub(1) as u64);
    let shift = 32 - u32::from(hash_bits);
    let mut entries: Vec<(u32, u32)> = pairs.map(|(hash, block)| (hash >> shift, block)).collect();
    entries.sort_unstable();
    entries.dedup();
    let page_count = entries.len().div_ceil(PAGE_ENTRIES);
    let mut pages = Writer::with_capacity(entries.len() * 3 + page_count * 2);
    let mut directory = Writer::with_capacity(page_count * DIRECTORY_ENTRY_BYTES);
    let mut deltas = Vec::with_capacity(PAGE_ENTRIES);
    let mut blocks = Vec::with_capacity(PAGE_ENTRIES);
    for page in entries.chunks(PAGE_ENTRIES) {
        let first = page.first().map_or(0, |e| e.0);
        deltas.clear();
        blocks.clear();
        let mut previous = first;
        for &(hash, block) in page {
            deltas.push(u64::from(hash - previous));
            blocks.push(u64::from(block));
            previous = hash;
        }
        let width = bit_width(deltas.iter().copied().max().unwrap_or(0));
        pages.u8(width);
        pack(&mut pages, deltas.get(1..).unwrap_or_default(), width);
        pack(&mut pages, &blocks, block_bits);
        directory.u32(first);
        directory.u32(pages.buf.len() as u32);
    }
    let mut out = Writer::with_capacity(HEADER_BYTES + directory.buf.len() + pages.buf.len());
    out.u8(hash_bits);
    out.u8(block_bits);
    out.u16(PAGE_ENTRIES as u16);
    out.u32(entries.len() as u32);
    out.u32(page_count as u32);
    out.bytes(&directory.buf);
    out.bytes(&pages.buf);
    out.buf
}

/// A value index read in place from its chunk.
#[derive(Debug)]
pub struct ValueIndex<'a> {
    hash_bits: u8,
    block_bits: u8,
    page_entries: usize,
    entry_count: usize,
    directory: &'a [u8],
    pages: &'a [u8],
    /// Offset of the pages within the chunk, for errors.
    pages_at: usize,
}

impl<'a> ValueIndex<'a> {
    /// Parses the header and bounds the directory of an index over `block_count` blocks.
    pub fn parse(bytes: &'a [u8], block_count: usize) -> Result<ValueIndex<'a>, DecodeError> {
        let mut r = Reader::new(bytes);
        let hash_bits = r.u8("value index hash bits")?;
        if !(1..=32).contains(&hash_bits) {
            return Err(DecodeError::new(0, format!("value index hash bits {hash_bits} not in 1..=32")));
        }
        let block_bits = r.u8("value index block bits")?;
        if block_bits != bit_width(block_count.saturating_sub(1) as u64) {
            return Err(DecodeError::new(
                1,
                format!("value index block bits {block_bits} do not fit {block_count} blocks"),
            ));
        }
        let page_entries = usize::from(r.u16("value index page entries")?);
        if !(1..=PAGE_ENTRIES_MAX).contains(&page_entries) {
            return Err(DecodeError::new(2, format!("value index page size {page_entries} not in 1..=4096")));
        }
        let entry_count = r.u32("value index entry count")? as usize;
        let page_count = r.u32("value index page count")? as usize;
        if page_count != entry_count.div_ceil(page_entries) {
            return Err(DecodeError::new(8, format!("{page_count} value index pages for {entry_count} entries")));
        }
        let directory_len = page_count.checked_mul(DIRECTORY_ENTRY_BYTES).ok_or_else(|| r.error("overflow"))?;
        let directory = r.take(directory_len, "value index page directory")?;
        let pages_at = r.position();
        let pages = r.take(r.remaining(), "value index pages")?;
        Ok(ValueIndex { hash_bits, block_bits, page_entries, entry_count, directory, pages, pages_at })
    }

    /// Pages.
    pub fn page_count(&self) -> usize {
        self.directory.len() / DIRECTORY_ENTRY_BYTES
    }

    fn directory_word(&self, page: usize, word: usize) -> u32 {
        let at = page * DIRECTORY_ENTRY_BYTES + word * 4;
        let mut k = [0u8; 4];
        if let Some(bytes) = self.directory.get(at..at + 4) {
            k.copy_from_slice(bytes);
        }
        u32::from_le_bytes(k)
    }

    /// The (hash, block) entries of page `page`, hashes at the index's width.
    pub fn page(&self, page: usize) -> Result<Vec<(u32, u32)>, DecodeError> {
        if page >= self.page_count() {
            return Err(DecodeError::new(self.pages_at, format!("value index page {page} does not exist")));
        }
        let first = self.directory_word(page, 0);
        let begin = if page == 0 { 0 } else { self.directory_word(page - 1, 1) as usize };
        let end = self.directory_word(page, 1) as usize;
        let at = self.pages_at + begin;
        let bytes = self
            .pages
            .get(begin..end)
            .ok_or_else(|| DecodeError::new(at, format!("value index page {page} at {begin}..{end} out of bounds")))?;
        let count =
            if page + 1 == self.page_count() { self.entry_count - page * self.page_entries } else { self.page_entries };
        let mut r = Reader::new(bytes);
        let located = |e: DecodeError| DecodeError { offset: (at as u64).saturating_add(e.offset), reason: e.reason };
        let width = r.u8("value index delta width").map_err(located)?;
        if width > self.hash_bits {
            return Err(DecodeError::new(at, format!("value index delta width {width} exceeds the hash bits")));
        }
        let deltas = unpack(&mut r, count.saturating_sub(1), width).map_err(located)?;
        let blocks = unpack(&mut r, count, self.block_bits).map_err(located)?;
        r.finish("value index page").map_err(located)?;
        let limit = if self.hash_bits == 32 { u64::from(u32::MAX) } else { (1u64 << self.hash_bits) - 1 };
        let mut hash = u64::from(first);
        let mut entries = Vec::with_capacity(count);
        for (i, block) in blocks.into_iter().enumerate() {
            if i > 0 {
                hash += deltas.get(i - 1).copied().unwrap_or(0);
            }
            if hash > limit {
                return Err(DecodeError::new(
                    at,
                    format!("value index page {page} hash exceeds {} bits", self.hash_bits),
                ));
            }
            entries.push((hash as u32, block as u32));
        }
        Ok(entries)
    }

    /// Blocks that may hold a value whose full 32-bit value hash is `hash32`, ascending.
    /// Reads the page directory and the one or two pages that can hold the hash.
    pub fn candidate_blocks(&self, hash32: u32) -> Result<Vec<u32>, DecodeError> {
        let hash = hash32 >> (32 - u32::from(self.hash_bits));
        let pages = self.page_count();
        // First page whose first hash is at least `hash`; the page before it may end
        // with entries of `hash` too.
        let (mut low, mut high) = (0usize, pages);
        while low < high {
            let mid = (low + high) / 2;
            if self.directory_word(mid, 0) < hash {
                low = mid + 1;
            } else {
                high = mid;
            }
        }
        let mut blocks = Vec::new();
        let mut page = low.saturating_sub(1);
        while page < pages && self.directory_word(page, 0) <= hash {
            for (h, block) in self.page(page)? {
                if h == hash {
                    blocks.push(block);
                }
            }
            page += 1;
        }
        blocks.sort_unstable();
        blocks.dedup();
        Ok(blocks)
    }

    /// Checks every page: entries strictly increasing across the whole index, block
    /// numbers below `block_count`, page ends increasing and the last one at the end.
    pub fn validate(&self, block_count: usize) -> Result<(), DecodeError> {
        let mut previous: Option<(u32, u32)> = None;
        let mut end = 0usize;
        for page in 0..self.page_count() {
            let page_end = self.directory_word(page, 1) as usize;
            if page_end < end {
                return Err(DecodeError::new(self.pages_at, format!("value index page {page} ends before it starts")));
            }
            end = page_end;
            for entry in self.page(page)? {
                if previous.is_some_and(|p| p >= entry) || entry.1 as usize >= block_count {
                    return Err(DecodeError::new(
                        self.pages_at,
                        format!("value index page {page}: entry {entry:?} out of order or past the blocks"),
                    ));
                }
                previous = Some(entry);
            }
        }
        if end != self.pages.len() {
            return Err(DecodeError::new(self.pages_at + end, "value index pages do not end at the chunk end"));
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn reference(pairs: &[(u32, u32)], hash_bits: u8, hash32: u32) -> Vec<u32> {
        let shift = 32 - u32::from(hash_bits);
        let mut blocks: Vec<u32> = pairs.iter().filter(|p| p.0 >> shift == hash32 >> shift).map(|p| p.1).collect();
        blocks.sort_unstable();
        blocks.dedup();
        blocks
    }

    proptest! {
        #[test]
        fn lookups_match_a_plain_scan(
            raw in proptest::collection::vec((any::<u32>(), 0u32..40), 0..700),
            repeats in proptest::collection::vec(any::<prop::sample::Index>(), 0..50),
            hash_bits in 1u8..=32,
            block_count in 1usize..=40,
        ) {
            let mut pairs: Vec<(u32, u32)> =
                raw.iter().map(|&(h, b)| (h, b % block_count as u32)).collect();
            // Repeated hashes, as duplicate values and collisions give.
            if !pairs.is_empty() {
                let extra: Vec<(u32, u32)> = repeats.iter().map(|i| pairs[i.index(pairs.len())]).map(|(h, b)| (h, (b + 1) % block_count as u32)).collect();
                pairs.extend(extra);
            }
            let bytes = encode(pairs.iter().copied(), block_count, hash_bits);
            let index = ValueIndex::parse(&bytes, block_count).unwrap();
            index.validate(block_count).unwrap();
            for &(hash, _) in pairs.iter().take(60) {
                prop_assert_eq!(index.candidate_blocks(hash).unwrap(), reference(&pairs, hash_bits, hash));
            }
            for probe in [0u32, u32::MAX, 0x8000_0000, 12345] {
                prop_assert_eq!(index.candidate_blocks(probe).unwrap(), reference(&pairs, hash_bits, probe));
            }
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300), block_count in 0usize..300, probe in any::<u32>()) {
            if let Ok(index) = ValueIndex::parse(&bytes, block_count) {
                let _ = index.validate(block_count);
                let _ = index.candidate_blocks(probe);
                for page in 0..index.page_count().min(8) {
                    let _ = index.page(page);
                }
            }
        }
    }

    #[test]
    fn many_entries_take_far_fewer_than_eight_bytes() {
        let count = 100_000u32;
        let pairs = (0..count).map(|i| (crate::segment::stable_hash(&i.to_le_bytes()) as u32, i / 8192));
        let bytes = encode(pairs, 13, hash_bits_for(u64::from(count)));
        assert!(bytes.len() < count as usize * 3, "{} bytes", bytes.len());
        let index = ValueIndex::parse(&bytes, 13).unwrap();
        index.validate(13).unwrap();
        let probe = crate::segment::stable_hash(&777u32.to_le_bytes()) as u32;
        assert!(index.candidate_blocks(probe).unwrap().contains(&0));
    }

    #[test]
    fn an_empty_index_finds_nothing() {
        let bytes = encode(std::iter::empty(), 1, 10);
        let index = ValueIndex::parse(&bytes, 1).unwrap();
        index.validate(1).unwrap();
        assert!(index.candidate_blocks(5).unwrap().is_empty());
    }
}
