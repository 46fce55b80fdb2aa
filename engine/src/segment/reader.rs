//! Reads a segment: checks the header, trailer and directory at open (cheap: no block
//! is touched), then decodes blocks, dictionaries and indexes on demand, checking each
//! chunk's checksum and bounds before use.
#![deny(clippy::unwrap_used, clippy::indexing_slicing)]

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use roaring::RoaringBitmap;

use super::cache::{BitmapCache, ColumnBitmaps};
use super::encoding::{decode_bools, decode_ints, decode_strings, decode_strings_arena, unpack, StrArena};
use super::value_index::ValueIndex;
use super::writer::{decode_any, utf8};
use super::{
    bloom_positions, unsortable_int, AttrScope, ChunkRef, ColumnKind, ColumnMeta, Directory, Intrinsic, Storage,
    ValueType, BLOCK_ROWS, MAX_DIRECTORY_BYTES, SEGMENT_HEADER_SIZE, SEGMENT_MAGIC, SEGMENT_TRAILER_SIZE,
    SEGMENT_VERSION,
};
use crate::codec::Reader;
use crate::error::{DecodeError, EngineError, Result};
use crate::mmap::FileBytes;
use crate::model::{AnyValue, Event, KeyValue, Link, Resource, Scope, Span, SpanId, SpanKind, StatusCode, TraceId};

/// Which rows of a block have a value.
#[derive(Clone, Debug)]
pub enum Presence {
    /// Every row.
    All,
    /// No row.
    None,
    /// For each row of the block, the index of its value, or `u32::MAX`.
    Sparse(Vec<u32>),
}

/// The decoded values of one block of one column, dense over present rows.
#[derive(Clone, Debug)]
pub enum BlockValues {
    /// 16-byte values.
    Fixed16(Vec<[u8; 16]>),
    /// 8-byte values.
    Fixed8(Vec<[u8; 8]>),
    /// Integers in stored form (`sortable_int` for int attributes).
    Ints(Vec<u64>),
    /// f64 bits.
    Doubles(Vec<u64>),
    /// Booleans.
    Bools(Vec<bool>),
    /// Dictionary codes.
    Codes(Vec<u32>),
    /// Strings, in one arena.
    Strings(StrArena),
    /// Byte strings: ends into `bytes`.
    Blobs {
        /// End offset of each value.
        ends: Vec<u32>,
        /// The concatenated values.
        bytes: Vec<u8>,
    },
}

/// One decoded block.
#[derive(Clone, Debug)]
pub struct DecodedBlock {
    /// Rows in the block.
    pub row_count: usize,
    /// Which have values.
    pub presence: Presence,
    /// The values.
    pub values: BlockValues,
}

impl DecodedBlock {
    /// Index into `values` of block-local row `row`, if it has a value.
    pub fn value_index(&self, row: usize) -> Option<usize> {
        if row >= self.row_count {
            return None;
        }
        match &self.presence {
            Presence::All => Some(row),
            Presence::None => None,
            Presence::Sparse(map) => map.get(row).copied().filter(|&i| i != u32::MAX).map(|i| i as usize),
        }
    }

    /// The blob at block-local row `row`.
    pub fn blob(&self, row: usize) -> Option<&[u8]> {
        let index = self.value_index(row)?;
        match &self.values {
            BlockValues::Blobs { ends, bytes } => {
                let start = if index == 0 { 0 } else { *ends.get(index - 1)? as usize };
                bytes.get(start..*ends.get(index)? as usize)
            }
            _ => None,
        }
    }

    /// The integer at block-local row `row` (stored form).
    pub fn int(&self, row: usize) -> Option<u64> {
        match &self.values {
            BlockValues::Ints(v) => v.get(self.value_index(row)?).copied(),
            _ => None,
        }
    }
}

/// An open segment.
pub struct Segment {
    path: PathBuf,
    file_number: u64,
    /// The format version from the header (1, 2 or 3).
    version: u16,
    bytes: Arc<dyn FileBytes>,
    directory: Directory,
    columns: HashMap<ColumnKind, usize>,
    dictionaries: Vec<OnceLock<Arc<Vec<String>>>>,
    scopes: OnceLock<Arc<Vec<Scope>>>,
    /// The trace bloom filter's bit count once its chunk passed its checksum (checked
    /// on first use, then read in place), or why it did not.
    bloom: OnceLock<std::result::Result<u64, String>>,
    /// Parsed bitmap tables, per column.
    bitmap_cache: BitmapCache,
    /// Per column, whether its value index passed its checksum (checked on first use,
    /// then read in place: a 4M-row index is megabytes, and checking it on every
    /// lookup made one equality lookup cost a CRC of every segment's whole index).
    value_index_checked: Vec<OnceLock<std::result::Result<(), String>>>,
}

impl std::fmt::Debug for Segment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Segment").field("path", &self.path).field("rows", &self.directory.row_count).finish()
    }
}

impl Segment {
    /// Opens a segment from its bytes: checks header, trailer and directory checksum.
    pub fn open(path: &Path, bytes: Arc<dyn FileBytes>) -> Result<Segment> {
        let data = bytes.bytes();
        let corrupt = |offset: u64, reason: String| EngineError::corrupt(path, offset, reason);
        let mut r = Reader::new(data);
        let magic = r.fixed::<4>("segment magic").map_err(|e| EngineError::from_decode(path, 0, e))?;
        if magic != SEGMENT_MAGIC {
            return Err(corrupt(0, format!("bad magic {magic:02x?}, expected \"SSEG\"")));
        }
        let version = r.u16("segment version").map_err(|e| EngineError::from_decode(path, 0, e))?;
        if version == 0 || version > SEGMENT_VERSION {
            return Err(EngineError::UnsupportedVersion {
                path: path.to_path_buf(),
                found: version,
                newest: SEGMENT_VERSION,
            });
        }
        let _reserved = r.u16("segment header").map_err(|e| EngineError::from_decode(path, 0, e))?;
        let file_number = r.u64("segment file number").map_err(|e| EngineError::from_decode(path, 0, e))?;
        if data.len() < SEGMENT_HEADER_SIZE + SEGMENT_TRAILER_SIZE {
            return Err(corrupt(data.len() as u64, "file too short for a segment trailer".into()));
        }
        let trailer_at = data.len() - SEGMENT_TRAILER_SIZE;
        let mut t = Reader::new(data.get(trailer_at..).unwrap_or_default());
        let trailer_error = |e: DecodeError| EngineError::from_decode(path, trailer_at as u64, e);
        let directory_offset = t.u64("directory offset").map_err(trailer_error)?;
        let directory_len = t.u32("directory length").map_err(trailer_error)? as usize;
        let directory_crc = t.u32("directory crc").map_err(trailer_error)?;
        let end_magic = t.fixed::<4>("trailer magic").map_err(trailer_error)?;
        if end_magic != SEGMENT_MAGIC {
            return Err(corrupt(trailer_at as u64 + 16, "bad trailer magic (a truncated segment?)".into()));
        }
        let directory_start = usize::try_from(directory_offset).unwrap_or(usize::MAX);
        if directory_len > MAX_DIRECTORY_BYTES
            || directory_start < SEGMENT_HEADER_SIZE
            || directory_start.checked_add(directory_len) != Some(trailer_at)
        {
            return Err(corrupt(
                trailer_at as u64,
                format!("directory at {directory_offset}+{directory_len} does not end at the trailer ({trailer_at})"),
            ));
        }
        let directory_bytes = data.get(directory_start..trailer_at).unwrap_or_default();
        if crc32fast::hash(directory_bytes) != directory_crc {
            return Err(corrupt(directory_offset, "directory checksum mismatch".into()));
        }
        let directory =
            Directory::decode(directory_bytes).map_err(|e| EngineError::from_decode(path, directory_offset, e))?;
        for c in &directory.columns {
            let chunks = c.blocks.iter().map(|b| b.chunk).chain(c.dictionary).chain(c.bitmaps).chain(c.value_index);
            for chunk in chunks.chain([directory.trace_bloom, directory.scopes]) {
                if chunk.offset < SEGMENT_HEADER_SIZE as u64 || chunk.offset + u64::from(chunk.len) > directory_offset {
                    return Err(corrupt(
                        directory_offset,
                        format!("chunk at {}+{} lies outside the data area", chunk.offset, chunk.len),
                    ));
                }
            }
        }
        let mut columns = HashMap::new();
        for (i, c) in directory.columns.iter().enumerate() {
            columns.insert(c.kind.clone(), i);
        }
        for intrinsic in Intrinsic::ALL {
            if columns.get(&ColumnKind::Intrinsic(intrinsic)) != Some(&(intrinsic as usize)) {
                return Err(corrupt(
                    directory_offset,
                    format!("intrinsic column {} missing or out of place", intrinsic.as_str()),
                ));
            }
        }
        let dictionaries = (0..directory.columns.len()).map(|_| OnceLock::new()).collect();
        let bitmap_cache = BitmapCache::new(directory.columns.len());
        let value_index_checked = (0..directory.columns.len()).map(|_| OnceLock::new()).collect();
        Ok(Segment {
            path: path.to_path_buf(),
            file_number,
            version,
            bytes,
            directory,
            columns,
            dictionaries,
            scopes: OnceLock::new(),
            bloom: OnceLock::new(),
            bitmap_cache,
            value_index_checked,
        })
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file number from the header.
    pub fn file_number(&self) -> u64 {
        self.file_number
    }

    /// The directory.
    pub fn directory(&self) -> &Directory {
        &self.directory
    }

    /// Rows.
    pub fn row_count(&self) -> usize {
        self.directory.row_count as usize
    }

    /// Bytes of the file.
    pub fn size_bytes(&self) -> u64 {
        self.bytes.bytes().len() as u64
    }

    /// Index of a column, if the segment has it.
    pub fn column(&self, kind: &ColumnKind) -> Option<usize> {
        self.columns.get(kind).copied()
    }

    /// Index of an attribute column.
    pub fn attr_column(&self, scope: AttrScope, key: &str, value_type: ValueType) -> Option<usize> {
        self.column(&ColumnKind::Attr { scope, key: key.to_owned(), value_type })
    }

    /// Metadata of column `column`.
    pub fn column_meta(&self, column: usize) -> Result<&ColumnMeta> {
        self.directory.columns.get(column).ok_or_else(|| EngineError::Internal(format!("column {column} out of range")))
    }

    /// The bytes of column `column`'s value index `chunk`: stored raw, so after the
    /// first lookup has checked its CRC they are read in place; a compressed one (no
    /// writer makes one) goes through `chunk` every time.
    fn value_index_bytes(&self, column: usize, chunk: ChunkRef) -> Result<Cow<'_, [u8]>> {
        let Some(checked) = self.value_index_checked.get(column) else { return self.chunk(chunk) };
        if chunk.raw_len != 0 {
            return self.chunk(chunk);
        }
        let outcome = checked.get_or_init(|| {
            self.chunk(chunk).map(|_| ()).map_err(|e| match e {
                EngineError::Corrupt { reason, .. } => format!("value index: {reason}"),
                other => other.to_string(),
            })
        });
        if let Err(reason) = outcome {
            return Err(EngineError::corrupt(&self.path, chunk.offset, reason.clone()));
        }
        Ok(Cow::Borrowed(self.stored(chunk)?))
    }

    /// The stored bytes of `chunk`, unchecked.
    fn stored(&self, chunk: ChunkRef) -> Result<&[u8]> {
        let start = chunk.offset as usize;
        self.bytes
            .bytes()
            .get(start..start + chunk.len as usize)
            .ok_or_else(|| EngineError::corrupt(&self.path, chunk.offset, "chunk past the end of the file"))
    }

    fn chunk(&self, chunk: ChunkRef) -> Result<Cow<'_, [u8]>> {
        let stored = self.stored(chunk)?;
        if crc32fast::hash(stored) != chunk.crc {
            return Err(EngineError::corrupt(&self.path, chunk.offset, "chunk checksum mismatch"));
        }
        if chunk.raw_len == 0 {
            return Ok(Cow::Borrowed(stored));
        }
        let declared = zstd::zstd_safe::get_frame_content_size(stored).ok().flatten();
        if declared != Some(u64::from(chunk.raw_len)) {
            return Err(EngineError::corrupt(&self.path, chunk.offset, "zstd frame size does not match the directory"));
        }
        let raw = super::cache::decompress(stored, chunk.raw_len as usize)
            .map_err(|e| EngineError::corrupt(&self.path, chunk.offset, format!("zstd: {e}")))?;
        if raw.len() != chunk.raw_len as usize {
            return Err(EngineError::corrupt(&self.path, chunk.offset, "chunk inflates to the wrong length"));
        }
        Ok(Cow::Owned(raw))
    }

    /// Decodes block `block` of column `column`.
    pub fn read_block(&self, column: usize, block: usize) -> Result<DecodedBlock> {
        let meta = self.column_meta(column)?;
        let block_meta =
            meta.blocks.get(block).ok_or_else(|| EngineError::Internal(format!("block {block} out of range")))?;
        let row_count = (self.row_count() - block * BLOCK_ROWS).min(BLOCK_ROWS);
        let bytes = self.chunk(block_meta.chunk)?;
        let base = block_meta.chunk.offset;
        decode_block(&bytes, row_count, block_meta.present as usize, meta.storage).map_err(|e| {
            EngineError::corrupt(&self.path, base, format!("block {block} of column {}: {e}", column_name(&meta.kind)))
        })
    }

    /// The sorted dictionary of a dictionary column.
    pub fn dictionary(&self, column: usize) -> Result<Arc<Vec<String>>> {
        let slot = self
            .dictionaries
            .get(column)
            .ok_or_else(|| EngineError::Internal(format!("column {column} out of range")))?;
        if let Some(d) = slot.get() {
            return Ok(d.clone());
        }
        let meta = self.column_meta(column)?;
        let chunk = meta
            .dictionary
            .ok_or_else(|| EngineError::Internal(format!("column {} has no dictionary", column_name(&meta.kind))))?;
        let bytes = self.chunk(chunk)?;
        let mut r = Reader::new(&bytes);
        let values = (|| {
            let count = r.count("dictionary size", r.remaining())?;
            let values = decode_strings(&mut r, count)?;
            r.finish("dictionary")?;
            Ok::<_, DecodeError>(values)
        })()
        .map_err(|e| EngineError::from_decode(&self.path, chunk.offset, e))?;
        let values = Arc::new(values);
        let _ = slot.set(values.clone());
        Ok(values)
    }

    /// Dictionary code of `value` in a dictionary column.
    pub fn dictionary_code(&self, column: usize, value: &str) -> Result<Option<u32>> {
        let dictionary = self.dictionary(column)?;
        Ok(dictionary.binary_search_by(|v| v.as_str().cmp(value)).ok().map(|i| i as u32))
    }

    fn bitmap_table(&self, column: usize) -> Result<Option<(Cow<'_, [u8]>, u64)>> {
        let meta = self.column_meta(column)?;
        match meta.bitmaps {
            None => Ok(None),
            Some(chunk) => Ok(Some((self.chunk(chunk)?, chunk.offset))),
        }
    }

    /// Every (key, bitmap) of a column that has bitmaps (keys are dictionary codes for
    /// strings, stored values for ints and bools); `None` when it has none.
    pub fn bitmaps(&self, column: usize) -> Result<Option<Vec<(u64, RoaringBitmap)>>> {
        let Some((table, base)) = self.bitmap_table(column)? else { return Ok(None) };
        let parsed = parse_bitmap_table(&table).map_err(|e| EngineError::from_decode(&self.path, base, e))?;
        let mut out = Vec::with_capacity(parsed.keys.len());
        for (i, key) in parsed.keys.iter().enumerate() {
            out.push((*key, parsed.bitmap(i).map_err(|e| EngineError::from_decode(&self.path, base, e))?));
        }
        Ok(Some(out))
    }

    /// The bitmap of rows where a column with bitmaps holds `key`; `None` when the
    /// column has no bitmaps, an empty bitmap when no row holds it.
    pub fn bitmap(&self, column: usize, key: u64) -> Result<Option<RoaringBitmap>> {
        Ok(self.bitmap_set(column)?.map(|set| set.get(key).cloned().unwrap_or_default()))
    }

    /// Every value bitmap of a column that has them, parsed once per open segment and
    /// shared (see [`super::cache`]); `None` when the column has none.
    pub fn bitmap_set(&self, column: usize) -> Result<Option<Arc<ColumnBitmaps>>> {
        let meta = self.column_meta(column)?;
        let Some(chunk) = meta.bitmaps else { return Ok(None) };
        let stored = (chunk.raw_len.max(chunk.len)) as usize;
        self.bitmap_cache
            .get_or_load(column, stored, || Ok(ColumnBitmaps::new(self.bitmaps(column)?.unwrap_or_default())))
            .map(Some)
    }

    /// Columns whose parsed bitmaps this segment holds (for tests).
    #[cfg(test)]
    pub(crate) fn bitmap_cache_columns(&self) -> usize {
        self.bitmap_cache.cached_columns()
    }

    /// The values of block-local rows `rows` of block `block` of an integer, dictionary,
    /// boolean or double column, in stored form (dictionary codes, booleans as 0 or 1,
    /// doubles as bits), `None` where a row has no value. Only those rows' bits are
    /// unpacked (see [`super::selective`]).
    pub fn read_block_rows(&self, column: usize, block: usize, rows: &[u32]) -> Result<Vec<Option<u64>>> {
        let meta = self.column_meta(column)?;
        let block_meta =
            meta.blocks.get(block).ok_or_else(|| EngineError::Internal(format!("block {block} out of range")))?;
        let row_count = (self.row_count() - block * BLOCK_ROWS).min(BLOCK_ROWS);
        let bytes = self.chunk(block_meta.chunk)?;
        let corrupt = |e: DecodeError| {
            let name = column_name(&meta.kind);
            EngineError::corrupt(&self.path, block_meta.chunk.offset, format!("block {block} of column {name}: {e}"))
        };
        if let Some(values) =
            super::selective::decode_rows(&bytes, row_count, block_meta.present as usize, meta.storage, rows)
                .map_err(corrupt)?
        {
            return Ok(values);
        }
        let decoded = self.read_block(column, block)?;
        let value = |index: usize| -> Option<u64> {
            match &decoded.values {
                BlockValues::Ints(v) | BlockValues::Doubles(v) => v.get(index).copied(),
                BlockValues::Codes(v) => v.get(index).map(|&c| u64::from(c)),
                BlockValues::Bools(v) => v.get(index).map(|&b| u64::from(b)),
                _ => None,
            }
        };
        if !matches!(
            decoded.values,
            BlockValues::Ints(_) | BlockValues::Doubles(_) | BlockValues::Codes(_) | BlockValues::Bools(_)
        ) && !matches!(decoded.presence, Presence::None)
        {
            let name = column_name(&meta.kind);
            return Err(EngineError::Internal(format!("column {name} holds no integers, codes, booleans or doubles")));
        }
        Ok(rows.iter().map(|&row| decoded.value_index(row as usize).and_then(value)).collect())
    }

    /// Rows whose string column `column` equals `value`, answered from an index
    /// (bitmaps, or the value index with candidates checked); `None` when the column
    /// has neither.
    pub fn lookup_str(&self, column: usize, value: &str) -> Result<Option<RoaringBitmap>> {
        let meta = self.column_meta(column)?;
        if meta.bitmaps.is_some() {
            return match self.dictionary_code(column, value)? {
                Some(code) => self.bitmap(column, u64::from(code)),
                None => Ok(Some(RoaringBitmap::new())),
            };
        }
        let Some(chunk) = meta.value_index else { return Ok(None) };
        let index = self.value_index_bytes(column, chunk)?;
        if self.version >= 2 {
            return self.lookup_paged(column, &index, chunk.offset, value).map(Some);
        }
        if index.len() % 8 != 0 {
            return Err(EngineError::corrupt(&self.path, chunk.offset, "value index length is not a multiple of 8"));
        }
        let hash = super::writer::value_hash(value);
        let entries = index.len() / 8;
        let word = |at: usize| -> u32 {
            let mut k = [0u8; 4];
            if let Some(bytes) = index.get(at..at + 4) {
                k.copy_from_slice(bytes);
            }
            u32::from_le_bytes(k)
        };
        // First entry with this hash.
        let (mut low, mut high) = (0usize, entries);
        while low < high {
            let mid = (low + high) / 2;
            if word(mid * 8) < hash {
                low = mid + 1;
            } else {
                high = mid;
            }
        }
        let mut rows = RoaringBitmap::new();
        let mut i = low;
        while i < entries && word(i * 8) == hash {
            let row = word(i * 8 + 4);
            // Hashes collide: check the stored value.
            if self.string_at(column, row as usize)?.as_deref() == Some(value) {
                rows.insert(row);
            }
            i += 1;
        }
        Ok(Some(rows))
    }

    /// Rows of `column` holding `value`, from a format-2 paged value index: the blocks
    /// its page names, each decoded and scanned for the value.
    fn lookup_paged(&self, column: usize, index: &[u8], base: u64, value: &str) -> Result<RoaringBitmap> {
        let meta = self.column_meta(column)?;
        let code = match meta.storage {
            Storage::Dict => match self.dictionary_code(column, value)? {
                Some(code) => Some(code),
                None => return Ok(RoaringBitmap::new()),
            },
            _ => None,
        };
        let parsed =
            ValueIndex::parse(index, meta.blocks.len()).map_err(|e| EngineError::from_decode(&self.path, base, e))?;
        let blocks = parsed
            .candidate_blocks(super::writer::value_hash(value))
            .map_err(|e| EngineError::from_decode(&self.path, base, e))?;
        let mut rows = RoaringBitmap::new();
        for block in blocks {
            if block as usize >= meta.blocks.len() {
                return Err(EngineError::corrupt(
                    &self.path,
                    base,
                    format!("value index names block {block}, past the end"),
                ));
            }
            let decoded = self.read_block(column, block as usize)?;
            let first_row = block as usize * BLOCK_ROWS;
            for local in 0..decoded.row_count {
                let Some(i) = decoded.value_index(local) else { continue };
                let matches = match (&decoded.values, code) {
                    (BlockValues::Codes(codes), Some(code)) => codes.get(i) == Some(&code),
                    (BlockValues::Strings(strings), None) => strings.get(i) == Some(value),
                    _ => false,
                };
                if matches {
                    rows.insert((first_row + local) as u32);
                }
            }
        }
        Ok(rows)
    }

    /// The string at `row` of a string column (dictionary or plain).
    pub fn string_at(&self, column: usize, row: usize) -> Result<Option<String>> {
        let block = self.read_block(column, row / BLOCK_ROWS)?;
        let local = row % BLOCK_ROWS;
        let Some(index) = block.value_index(local) else { return Ok(None) };
        match &block.values {
            BlockValues::Codes(codes) => {
                let dictionary = self.dictionary(column)?;
                Ok(codes.get(index).and_then(|&c| dictionary.get(c as usize)).cloned())
            }
            BlockValues::Strings(values) => Ok(values.get(index).map(str::to_owned)),
            _ => Ok(None),
        }
    }

    /// False when the segment certainly holds no span of `trace_id` (bloom filter).
    pub fn may_contain_trace(&self, trace_id: &TraceId) -> Result<bool> {
        let chunk = self.directory.trace_bloom;
        let checked = self.bloom.get_or_init(|| {
            if chunk.raw_len != 0 {
                return Err("the bloom filter must be stored uncompressed".into());
            }
            let bytes = self.chunk(chunk).map_err(|e| match e {
                EngineError::Corrupt { reason, .. } => format!("trace bloom filter: {reason}"),
                other => other.to_string(),
            })?;
            let mut r = Reader::new(&bytes);
            let bits = r.u64("bloom bits").map_err(|e| e.to_string())?;
            if bits == 0 || bits.div_ceil(8) != r.remaining() as u64 {
                return Err("bloom filter size mismatch".into());
            }
            Ok(bits)
        });
        let bits = match checked {
            Ok(bits) => *bits,
            Err(reason) => return Err(EngineError::corrupt(&self.path, chunk.offset, reason.clone())),
        };
        let start = chunk.offset as usize + 8;
        let filter = self.bytes.bytes().get(start..chunk.offset as usize + chunk.len as usize).unwrap_or_default();
        Ok(bloom_positions(&trace_id.0, bits)
            .all(|bit| filter.get((bit / 8) as usize).is_some_and(|byte| byte & (1 << (bit % 8)) != 0)))
    }

    /// Rows holding spans of `trace_id` (a trace's rows are adjacent): the bloom
    /// filter, then the trace id column's value index (format 3, rows in time order)
    /// or its zone maps (formats 1 and 2, rows in trace id order), then one block or
    /// two, scanned for the id.
    pub fn trace_rows(&self, trace_id: &TraceId) -> Result<Vec<u32>> {
        if !self.may_contain_trace(trace_id)? {
            return Ok(Vec::new());
        }
        let column = Intrinsic::TraceId as usize;
        let meta = self.column_meta(column)?;
        let blocks: Vec<usize> = match meta.value_index.filter(|_| self.version >= 3) {
            Some(chunk) => {
                let index = self.value_index_bytes(column, chunk)?;
                let parsed = ValueIndex::parse(&index, meta.blocks.len())
                    .map_err(|e| EngineError::from_decode(&self.path, chunk.offset, e))?;
                let found = parsed
                    .candidate_blocks(super::writer::trace_hash(&trace_id.0))
                    .map_err(|e| EngineError::from_decode(&self.path, chunk.offset, e))?;
                let mut blocks = Vec::with_capacity(found.len());
                for block in found {
                    if block as usize >= meta.blocks.len() {
                        let reason = format!("trace index names block {block}, past the end");
                        return Err(EngineError::corrupt(&self.path, chunk.offset, reason));
                    }
                    blocks.push(block as usize);
                }
                blocks
            }
            None => {
                let mut prefix = [0u8; 8];
                prefix.copy_from_slice(trace_id.0.get(..8).unwrap_or(&[0; 8]));
                let key = u64::from_be_bytes(prefix);
                (0..meta.blocks.len())
                    .filter(|&b| meta.blocks.get(b).is_some_and(|m| m.present > 0 && key >= m.min && key <= m.max))
                    .collect()
            }
        };
        let mut rows = Vec::new();
        for b in blocks {
            let block = self.read_block(column, b)?;
            if let BlockValues::Fixed16(ids) = &block.values {
                for (i, id) in ids.iter().enumerate() {
                    if *id == trace_id.0 {
                        rows.push((b * BLOCK_ROWS + i) as u32);
                    }
                }
            }
        }
        Ok(rows)
    }

    /// The instrumentation scopes referenced by rest blobs.
    fn scopes(&self) -> Result<Arc<Vec<Scope>>> {
        if let Some(s) = self.scopes.get() {
            return Ok(s.clone());
        }
        let chunk = self.directory.scopes;
        let bytes = self.chunk(chunk)?;
        let scopes = decode_scopes(&bytes).map_err(|e| EngineError::from_decode(&self.path, chunk.offset, e))?;
        let scopes = Arc::new(scopes);
        let _ = self.scopes.set(scopes.clone());
        Ok(scopes)
    }

    /// The scope table as stored: each scope's encoded bytes, in index order (for
    /// compaction, which copies scopes without decoding them).
    pub(crate) fn scope_bytes(&self) -> Result<Vec<Vec<u8>>> {
        let chunk = self.directory.scopes;
        let bytes = self.chunk(chunk)?;
        let mut r = Reader::new(&bytes);
        let scopes = (|| {
            let count = r.count("scope count", r.remaining())?;
            let mut scopes = Vec::with_capacity(count);
            for _ in 0..count {
                scopes.push(r.len_bytes("scope")?.to_vec());
            }
            r.finish("scopes")?;
            Ok::<_, DecodeError>(scopes)
        })()
        .map_err(|e| EngineError::from_decode(&self.path, chunk.offset, e))?;
        // Decoding checks every scope, so a damaged one is refused here, not copied.
        self.scopes()?;
        Ok(scopes)
    }

    /// Materializes rows as owned spans (in the order given).
    pub fn spans(&self, rows: &[u32]) -> Result<Vec<Span>> {
        let mut reader = RowReader { segment: self, blocks: HashMap::new() };
        rows.iter().map(|&row| reader.span(row as usize)).collect()
    }

    /// Reads and checks every chunk: block checksums and decoding, dictionaries,
    /// bitmaps, value indexes, bloom filter and scopes. Returns each problem found.
    pub fn verify(&self) -> Vec<EngineError> {
        let mut problems = Vec::new();
        for (c, meta) in self.directory.columns.iter().enumerate() {
            for b in 0..meta.blocks.len() {
                if let Err(e) = self.read_block(c, b) {
                    problems.push(e);
                }
            }
            if meta.dictionary.is_some() {
                if let Err(e) = self.dictionary(c) {
                    problems.push(e);
                }
            }
            if let Err(e) = self.bitmaps(c) {
                problems.push(e);
            }
            if let Some(chunk) = meta.value_index {
                match self.chunk(chunk) {
                    Ok(bytes) if self.version >= 2 => {
                        let blocks = meta.blocks.len();
                        if let Err(e) = ValueIndex::parse(&bytes, blocks).and_then(|index| index.validate(blocks)) {
                            problems.push(EngineError::from_decode(&self.path, chunk.offset, e));
                        }
                    }
                    Ok(bytes) if bytes.len() % 8 != 0 => problems.push(EngineError::corrupt(
                        &self.path,
                        chunk.offset,
                        "value index length is not a multiple of 8",
                    )),
                    Ok(_) => {}
                    Err(e) => problems.push(e),
                }
            }
        }
        if let Err(e) = self.may_contain_trace(&TraceId::default()) {
            problems.push(e);
        }
        if let Err(e) = self.scopes() {
            problems.push(e);
        }
        problems
    }
}

/// Human name of a column.
pub fn column_name(kind: &ColumnKind) -> String {
    match kind {
        ColumnKind::Intrinsic(i) => i.as_str().to_owned(),
        ColumnKind::Attr { scope, key, value_type } => {
            let scope = match scope {
                AttrScope::Span => "span",
                AttrScope::Resource => "resource",
            };
            format!("{scope}.{key} ({})", value_type.as_str())
        }
    }
}

struct BitmapTable<'a> {
    keys: Vec<u64>,
    offsets: Vec<u32>,
    data: &'a [u8],
}

impl BitmapTable<'_> {
    fn bitmap(&self, i: usize) -> Result<RoaringBitmap, DecodeError> {
        let (Some(&start), Some(&end)) = (self.offsets.get(i), self.offsets.get(i + 1)) else {
            return Err(DecodeError::new(0, "bitmap index out of range"));
        };
        let bytes = self
            .data
            .get(start as usize..end as usize)
            .ok_or_else(|| DecodeError::new(0, format!("bitmap {i} at {start}..{end} out of bounds")))?;
        RoaringBitmap::deserialize_from(bytes).map_err(|e| DecodeError::new(0, format!("bitmap {i}: {e}")))
    }
}

fn parse_bitmap_table(bytes: &[u8]) -> Result<BitmapTable<'_>, DecodeError> {
    let mut r = Reader::new(bytes);
    let count = r.u32("bitmap count")? as usize;
    if count > r.remaining() / 12 {
        return Err(r.error(format!("{count} bitmaps cannot fit")));
    }
    let mut keys = Vec::with_capacity(count);
    for _ in 0..count {
        keys.push(r.u64("bitmap key")?);
    }
    if keys.windows(2).any(|w| matches!(w, [a, b] if a >= b)) {
        return Err(r.error("bitmap keys not sorted"));
    }
    let mut offsets = Vec::with_capacity(count + 1);
    for _ in 0..=count {
        offsets.push(r.u32("bitmap offset")?);
    }
    let data = r.take(r.remaining(), "bitmaps")?;
    if offsets.windows(2).any(|w| matches!(w, [a, b] if a > b))
        || offsets.last().is_some_and(|&l| l as usize != data.len())
    {
        return Err(DecodeError::new(0, "bitmap offsets out of order or not covering the data"));
    }
    Ok(BitmapTable { keys, offsets, data })
}

fn decode_block(bytes: &[u8], row_count: usize, present: usize, storage: Storage) -> Result<DecodedBlock, DecodeError> {
    let mut r = Reader::new(bytes);
    let at = r.position();
    let presence = match r.u8("presence")? {
        0 => {
            if present != row_count {
                return Err(DecodeError::new(at, "block says every row is present, directory disagrees"));
            }
            Presence::All
        }
        1 => Presence::None,
        2 => {
            let bits = r.take(row_count.div_ceil(8), "presence bits")?;
            let mut map = Vec::with_capacity(row_count);
            let mut next = 0u32;
            for row in 0..row_count {
                if bits.get(row / 8).is_some_and(|b| b & (1 << (row % 8)) != 0) {
                    map.push(next);
                    next += 1;
                } else {
                    map.push(u32::MAX);
                }
            }
            if next as usize != present {
                return Err(DecodeError::new(at, format!("{next} rows present, directory says {present}")));
            }
            Presence::Sparse(map)
        }
        other => return Err(DecodeError::new(at, format!("unknown presence {other}"))),
    };
    let count = match presence {
        Presence::None => 0,
        _ => present,
    };
    if matches!(presence, Presence::None) {
        r.finish("block")?;
        return Ok(DecodedBlock { row_count, presence, values: BlockValues::Ints(Vec::new()) });
    }
    let values = match storage {
        Storage::Fixed16 => {
            let bytes = r.take(count.checked_mul(16).ok_or_else(|| r.error("overflow"))?, "16-byte values")?;
            BlockValues::Fixed16(
                bytes
                    .chunks_exact(16)
                    .map(|c| {
                        let mut v = [0u8; 16];
                        v.copy_from_slice(c);
                        v
                    })
                    .collect(),
            )
        }
        Storage::Fixed8 => {
            let bytes = r.take(count.checked_mul(8).ok_or_else(|| r.error("overflow"))?, "8-byte values")?;
            BlockValues::Fixed8(
                bytes
                    .chunks_exact(8)
                    .map(|c| {
                        let mut v = [0u8; 8];
                        v.copy_from_slice(c);
                        v
                    })
                    .collect(),
            )
        }
        Storage::Ints => BlockValues::Ints(decode_ints(&mut r, count)?),
        Storage::Doubles => {
            let mut values = Vec::with_capacity(count.min(r.remaining() / 8));
            for _ in 0..count {
                values.push(r.u64("double")?);
            }
            BlockValues::Doubles(values)
        }
        Storage::Bools => BlockValues::Bools(decode_bools(&mut r, count)?),
        Storage::Dict => {
            let width = r.u8("code width")?;
            if width > 32 {
                return Err(r.error(format!("code width {width} exceeds 32")));
            }
            BlockValues::Codes(unpack(&mut r, count, width)?.into_iter().map(|c| c as u32).collect())
        }
        Storage::Strings => BlockValues::Strings(decode_strings_arena(&mut r, count)?),
        Storage::Blob => {
            let mut ends = Vec::with_capacity(count.min(r.remaining()));
            let mut total = 0usize;
            for _ in 0..count {
                total = total
                    .checked_add(r.count("blob length", r.remaining())?)
                    .filter(|&t| t <= u32::MAX as usize)
                    .ok_or_else(|| r.error("blob lengths overflow"))?;
                ends.push(total as u32);
            }
            let bytes = r.take(total, "blob bytes")?.to_vec();
            BlockValues::Blobs { ends, bytes }
        }
    };
    r.finish("block")?;
    Ok(DecodedBlock { row_count, presence, values })
}

fn decode_scopes(bytes: &[u8]) -> Result<Vec<Scope>, DecodeError> {
    let mut r = Reader::new(bytes);
    let count = r.count("scope count", r.remaining())?;
    let mut scopes = Vec::with_capacity(count);
    for _ in 0..count {
        let encoded = r.len_bytes("scope")?;
        let mut s = Reader::new(encoded);
        let name = utf8(&mut s, "scope name")?;
        let version = utf8(&mut s, "scope version")?;
        let schema_url = utf8(&mut s, "scope schema url")?;
        let dropped_attributes_count = s.varint_u32("scope dropped count")?;
        let attributes = decode_inline_attrs(&mut s)?;
        s.finish("scope")?;
        scopes.push(Scope { name, version, attributes, dropped_attributes_count, schema_url });
    }
    r.finish("scopes")?;
    Ok(scopes)
}

fn decode_inline_attrs(r: &mut Reader<'_>) -> Result<Vec<KeyValue>, DecodeError> {
    let n = r.count("attribute count", r.remaining() / 2)?;
    let mut attrs = Vec::with_capacity(n);
    for _ in 0..n {
        let key = utf8(r, "attribute key")?;
        attrs.push(KeyValue { key, value: decode_any(r, 0)? });
    }
    Ok(attrs)
}

/// Reads whole rows, keeping decoded blocks for rows that share them.
struct RowReader<'s> {
    segment: &'s Segment,
    blocks: HashMap<(usize, usize), Arc<DecodedBlock>>,
}

impl RowReader<'_> {
    fn block(&mut self, column: usize, row: usize) -> Result<Arc<DecodedBlock>> {
        let key = (column, row / BLOCK_ROWS);
        if let Some(b) = self.blocks.get(&key) {
            return Ok(b.clone());
        }
        let block = Arc::new(self.segment.read_block(column, key.1)?);
        self.blocks.insert(key, block.clone());
        Ok(block)
    }

    fn corrupt(&self, row: usize, reason: impl Into<String>) -> EngineError {
        let reason = reason.into();
        EngineError::corrupt(&self.segment.path, 0, format!("row {row}: {reason}"))
    }

    fn fixed16(&mut self, column: usize, row: usize) -> Result<Option<[u8; 16]>> {
        let block = self.block(column, row)?;
        Ok(match (&block.values, block.value_index(row % BLOCK_ROWS)) {
            (BlockValues::Fixed16(v), Some(i)) => v.get(i).copied(),
            _ => None,
        })
    }

    fn fixed8(&mut self, column: usize, row: usize) -> Result<Option<[u8; 8]>> {
        let block = self.block(column, row)?;
        Ok(match (&block.values, block.value_index(row % BLOCK_ROWS)) {
            (BlockValues::Fixed8(v), Some(i)) => v.get(i).copied(),
            _ => None,
        })
    }

    fn int(&mut self, column: usize, row: usize) -> Result<Option<u64>> {
        Ok(self.block(column, row)?.int(row % BLOCK_ROWS))
    }

    fn string(&mut self, column: usize, row: usize) -> Result<Option<String>> {
        let block = self.block(column, row)?;
        let Some(index) = block.value_index(row % BLOCK_ROWS) else { return Ok(None) };
        match &block.values {
            BlockValues::Codes(codes) => {
                let dictionary = self.segment.dictionary(column)?;
                Ok(codes.get(index).and_then(|&c| dictionary.get(c as usize)).cloned())
            }
            BlockValues::Strings(values) => Ok(values.get(index).map(str::to_owned)),
            _ => Ok(None),
        }
    }

    fn attr_value(&mut self, column: usize, row: usize) -> Result<Option<AnyValue>> {
        let meta = self.segment.column_meta(column)?;
        let ColumnKind::Attr { value_type, .. } = meta.kind else {
            return Err(self.corrupt(row, "attribute layout points at an intrinsic column"));
        };
        let block = self.block(column, row)?;
        let Some(index) = block.value_index(row % BLOCK_ROWS) else { return Ok(None) };
        Ok(match (value_type, &block.values) {
            (ValueType::Str, _) => self.string(column, row)?.map(AnyValue::Str),
            (ValueType::Int, BlockValues::Ints(v)) => v.get(index).map(|&x| AnyValue::Int(unsortable_int(x))),
            (ValueType::Double, BlockValues::Doubles(v)) => v.get(index).map(|&x| AnyValue::Double(f64::from_bits(x))),
            (ValueType::Bool, BlockValues::Bools(v)) => v.get(index).map(|&x| AnyValue::Bool(x)),
            _ => None,
        })
    }

    fn layout(&mut self, r: &mut Reader<'_>, row: usize) -> Result<Vec<KeyValue>> {
        let n = r.count("attribute count", r.remaining()).map_err(|e| self.corrupt(row, e.to_string()))?;
        let mut attrs = Vec::with_capacity(n);
        for _ in 0..n {
            let code = r.varint("attribute layout").map_err(|e| self.corrupt(row, e.to_string()))?;
            if code & 1 == 1 {
                let key = utf8(r, "attribute key").map_err(|e| self.corrupt(row, e.to_string()))?;
                let value = decode_any(r, 0).map_err(|e| self.corrupt(row, e.to_string()))?;
                attrs.push(KeyValue { key, value });
                continue;
            }
            let column = usize::try_from((code >> 1).saturating_sub(1))
                .ok()
                .and_then(|i| i.checked_add(Intrinsic::ALL.len()))
                .ok_or_else(|| self.corrupt(row, "attribute column out of range"))?;
            let meta = self.segment.column_meta(column)?;
            let ColumnKind::Attr { key, .. } = &meta.kind else {
                return Err(self.corrupt(row, "attribute layout points at an intrinsic column"));
            };
            let key = key.clone();
            let value = self
                .attr_value(column, row)?
                .ok_or_else(|| self.corrupt(row, format!("attribute {key} has no value in its column")))?;
            attrs.push(KeyValue { key, value });
        }
        Ok(attrs)
    }

    fn span(&mut self, row: usize) -> Result<Span> {
        if row >= self.segment.row_count() {
            return Err(EngineError::Internal(format!("row {row} out of range")));
        }
        let trace_id = TraceId(self.fixed16(Intrinsic::TraceId as usize, row)?.unwrap_or_default());
        let span_id = SpanId(self.fixed8(Intrinsic::SpanId as usize, row)?.unwrap_or_default());
        let parent_code = self.int(Intrinsic::ParentCode as usize, row)?.unwrap_or(0);
        let parent_span_id = match parent_code {
            0 => None,
            1 => Some(SpanId(
                self.fixed8(Intrinsic::ParentId as usize, row)?
                    .ok_or_else(|| self.corrupt(row, "external parent missing"))?,
            )),
            code => {
                let z = code - 2;
                let delta = ((z >> 1) as i64) ^ -((z & 1) as i64);
                let parent_row = usize::try_from(row as i64 + delta)
                    .ok()
                    .filter(|&p| p < self.segment.row_count())
                    .ok_or_else(|| self.corrupt(row, "parent row out of range"))?;
                Some(SpanId(self.fixed8(Intrinsic::SpanId as usize, parent_row)?.unwrap_or_default()))
            }
        };
        let name = self.string(Intrinsic::Name as usize, row)?.unwrap_or_default();
        let kind = self
            .int(Intrinsic::Kind as usize, row)?
            .and_then(|k| u8::try_from(k).ok())
            .and_then(SpanKind::from_code)
            .ok_or_else(|| self.corrupt(row, "bad span kind"))?;
        let start_unix_nano = self.int(Intrinsic::Start as usize, row)?.unwrap_or(0);
        let duration_ns = self.int(Intrinsic::Duration as usize, row)?.unwrap_or(0);
        let status_code = self
            .int(Intrinsic::Status as usize, row)?
            .and_then(|k| u8::try_from(k).ok())
            .and_then(StatusCode::from_code)
            .ok_or_else(|| self.corrupt(row, "bad status code"))?;
        let status_message = self.string(Intrinsic::StatusMessage as usize, row)?.unwrap_or_default();
        let rest_block = self.block(Intrinsic::Rest as usize, row)?;
        let blob = rest_block.blob(row % BLOCK_ROWS).ok_or_else(|| self.corrupt(row, "rest blob missing"))?.to_vec();
        let r = &mut Reader::new(&blob);
        let err = |e: DecodeError| e.to_string();
        let flags = r.varint_u32("flags").map_err(err).map_err(|e| self.corrupt(row, e))?;
        let trace_state = utf8(r, "trace state").map_err(err).map_err(|e| self.corrupt(row, e))?;
        let dropped_attributes_count = r.varint_u32("dropped").map_err(err).map_err(|e| self.corrupt(row, e))?;
        let dropped_events_count = r.varint_u32("dropped").map_err(err).map_err(|e| self.corrupt(row, e))?;
        let dropped_links_count = r.varint_u32("dropped").map_err(err).map_err(|e| self.corrupt(row, e))?;
        let scope_index = r.count("scope", usize::MAX).map_err(err).map_err(|e| self.corrupt(row, e))?;
        let scope =
            self.segment.scopes()?.get(scope_index).cloned().ok_or_else(|| self.corrupt(row, "scope out of range"))?;
        let resource_dropped = r.varint_u32("dropped").map_err(err).map_err(|e| self.corrupt(row, e))?;
        let resource_schema = utf8(r, "schema url").map_err(err).map_err(|e| self.corrupt(row, e))?;
        let attributes = self.layout(r, row)?;
        let resource_attributes = self.layout(r, row)?;
        let events_and_links =
            decode_events_and_links(r, start_unix_nano).map_err(|e| self.corrupt(row, e.to_string()))?;
        r.finish("rest").map_err(|e| self.corrupt(row, e.to_string()))?;
        let (events, links) = events_and_links;
        Ok(Span {
            trace_id,
            span_id,
            parent_span_id,
            trace_state,
            name,
            kind,
            start_unix_nano,
            duration_ns,
            status_code,
            status_message,
            flags,
            resource: Resource {
                attributes: resource_attributes,
                dropped_attributes_count: resource_dropped,
                schema_url: resource_schema,
            },
            scope,
            attributes,
            dropped_attributes_count,
            events,
            dropped_events_count,
            links,
            dropped_links_count,
        })
    }
}

fn decode_events_and_links(r: &mut Reader<'_>, start: u64) -> Result<(Vec<Event>, Vec<Link>), DecodeError> {
    let n = r.count("event count", r.remaining())?;
    let mut events = Vec::with_capacity(n);
    for _ in 0..n {
        let delta = r.varint_signed("event time")?;
        let name = utf8(r, "event name")?;
        let dropped_attributes_count = r.varint_u32("dropped")?;
        let attributes = decode_inline_attrs(r)?;
        events.push(Event {
            time_unix_nano: start.wrapping_add(delta as u64),
            name,
            attributes,
            dropped_attributes_count,
        });
    }
    let n = r.count("link count", r.remaining() / 24)?;
    let mut links = Vec::with_capacity(n);
    for _ in 0..n {
        let trace_id = TraceId(r.fixed::<16>("link trace id")?);
        let span_id = SpanId(r.fixed::<8>("link span id")?);
        let trace_state = utf8(r, "link trace state")?;
        let flags = r.varint_u32("link flags")?;
        let dropped_attributes_count = r.varint_u32("dropped")?;
        let attributes = decode_inline_attrs(r)?;
        links.push(Link { trace_id, span_id, trace_state, attributes, dropped_attributes_count, flags });
    }
    Ok((events, links))
}
