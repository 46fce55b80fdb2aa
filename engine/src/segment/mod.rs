//! Sealed segments: immutable, columnar, compressed, memory-mapped files of spans with
//! bitmap, value and trace-id indexes (format in docs/FORMAT.md).
//!
//! A segment holds rows sorted by (trace id, start): a trace's spans are adjacent, so a
//! trace lookup decodes one block per column, trace ids compress to one copy per trace
//! and parents are stored as row distances. Columns are split into blocks of
//! [`BLOCK_ROWS`] rows, each with its own checksum and min/max zone map.
//!
//! **Invariant:** a segment file is written once under a temporary name, fsynced and
//! renamed into place before the manifest names it, and never opened for writing again.
#![deny(clippy::unwrap_used, clippy::indexing_slicing)]

pub mod cache;
pub mod encoding;
pub mod reader;
pub mod selective;
pub mod trace_runs;
pub mod value_index;
pub mod varwidth;
pub mod writer;

use crate::codec::{Reader, Writer};
use crate::error::DecodeError;

/// Magic at the start and end of every segment file.
pub const SEGMENT_MAGIC: [u8; 4] = *b"SSEG";
/// Newest segment format version.
pub const SEGMENT_VERSION: u16 = 3;
/// Bytes of the file header: magic, version, reserved, file number.
pub const SEGMENT_HEADER_SIZE: usize = 16;
/// Bytes of the trailer: directory offset u64, length u32, crc u32, magic.
pub const SEGMENT_TRAILER_SIZE: usize = 20;
/// Rows per block. Small enough that a point lookup (a trace, a request id) decodes
/// little; large enough that zstd and bit-packing work well.
pub const BLOCK_ROWS: usize = 8192;
/// Most distinct values a column may have and still get a bitmap per value.
pub const BITMAP_CARDINALITY_MAX: usize = 4096;
/// Largest segment directory a reader accepts.
pub const MAX_DIRECTORY_BYTES: usize = 1 << 30;
/// Most rows a segment may hold (row numbers are u32 in bitmaps).
pub const MAX_SEGMENT_ROWS: usize = u32::MAX as usize;

const _: () = assert!(BLOCK_ROWS.is_power_of_two());

/// The file name of segment `number`.
pub fn segment_file_name(number: u64) -> String {
    format!("seg-{number:010}.sseg")
}

/// The number of a segment file, if `name` is one.
pub fn parse_segment_file_name(name: &str) -> Option<u64> {
    name.strip_prefix("seg-")?.strip_suffix(".sseg")?.parse().ok()
}

/// Which attributes a column holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AttrScope {
    /// Span attributes.
    Span = 0,
    /// Resource attributes.
    Resource = 1,
}

/// The type of a scalar attribute column.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ValueType {
    /// Strings.
    Str = 0,
    /// 64-bit signed integers.
    Int = 1,
    /// 64-bit floats.
    Double = 2,
    /// Booleans.
    Bool = 3,
}

impl ValueType {
    fn from_code(code: u8) -> Option<ValueType> {
        [ValueType::Str, ValueType::Int, ValueType::Double, ValueType::Bool].get(usize::from(code)).copied()
    }

    /// Lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            ValueType::Str => "string",
            ValueType::Int => "int",
            ValueType::Double => "double",
            ValueType::Bool => "bool",
        }
    }
}

/// The span fields stored as their own columns.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Intrinsic {
    /// 16-byte trace ids.
    TraceId = 0,
    /// 8-byte span ids.
    SpanId = 1,
    /// Parent as a row distance: 0 none, 1 external (see `ParentId`), d + 1 for the
    /// row `d` rows earlier.
    ParentCode = 2,
    /// Parent ids not found in the segment's own rows (sparse).
    ParentId = 3,
    /// Span name.
    Name = 4,
    /// Span kind code.
    Kind = 5,
    /// Start, ns since the epoch.
    Start = 6,
    /// Duration, ns.
    Duration = 7,
    /// Status code.
    Status = 8,
    /// Status message (sparse).
    StatusMessage = 9,
    /// Everything else, per row, losslessly (see `writer::encode_rest`).
    Rest = 10,
}

impl Intrinsic {
    /// Every intrinsic column, in code order.
    pub const ALL: [Intrinsic; 11] = [
        Intrinsic::TraceId,
        Intrinsic::SpanId,
        Intrinsic::ParentCode,
        Intrinsic::ParentId,
        Intrinsic::Name,
        Intrinsic::Kind,
        Intrinsic::Start,
        Intrinsic::Duration,
        Intrinsic::Status,
        Intrinsic::StatusMessage,
        Intrinsic::Rest,
    ];

    fn from_code(code: u8) -> Option<Intrinsic> {
        Self::ALL.get(usize::from(code)).copied()
    }

    /// Lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Intrinsic::TraceId => "trace_id",
            Intrinsic::SpanId => "span_id",
            Intrinsic::ParentCode => "parent_code",
            Intrinsic::ParentId => "parent_span_id",
            Intrinsic::Name => "name",
            Intrinsic::Kind => "kind",
            Intrinsic::Start => "start",
            Intrinsic::Duration => "duration",
            Intrinsic::Status => "status",
            Intrinsic::StatusMessage => "status_message",
            Intrinsic::Rest => "rest",
        }
    }
}

/// What a column holds.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ColumnKind {
    /// A span field.
    Intrinsic(Intrinsic),
    /// A scalar attribute of one type.
    Attr {
        /// Span or resource attribute.
        scope: AttrScope,
        /// Key.
        key: String,
        /// Value type.
        value_type: ValueType,
    },
}

/// How a column's values are stored in its blocks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Storage {
    /// 16 bytes per value.
    Fixed16 = 0,
    /// 8 bytes per value.
    Fixed8 = 1,
    /// Integers (u64 bit patterns), frame-of-reference or delta bit-packed.
    Ints = 2,
    /// f64 bit patterns, 8 bytes each.
    Doubles = 3,
    /// One bit each.
    Bools = 4,
    /// Codes into the column's sorted dictionary, bit-packed.
    Dict = 5,
    /// Strings (plain, or 16 bytes each when id-shaped).
    Strings = 6,
    /// Opaque byte strings.
    Blob = 7,
}

impl Storage {
    fn from_code(code: u8) -> Option<Storage> {
        [
            Storage::Fixed16,
            Storage::Fixed8,
            Storage::Ints,
            Storage::Doubles,
            Storage::Bools,
            Storage::Dict,
            Storage::Strings,
            Storage::Blob,
        ]
        .get(usize::from(code))
        .copied()
    }
}

/// Where a chunk of bytes lies in a segment file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct ChunkRef {
    /// Offset in the file.
    pub offset: u64,
    /// Stored length.
    pub len: u32,
    /// Length after zstd decompression; 0 when stored uncompressed.
    pub raw_len: u32,
    /// CRC-32 of the stored bytes.
    pub crc: u32,
}

/// One block of one column.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct BlockMeta {
    /// The block's bytes.
    pub chunk: ChunkRef,
    /// Rows of the block that have a value.
    pub present: u32,
    /// Smallest value (order-preserving u64 form; see [`sortable_int`]).
    pub min: u64,
    /// Largest value.
    pub max: u64,
}

/// One column of a segment.
#[derive(Clone, Debug, PartialEq)]
pub struct ColumnMeta {
    /// What it holds.
    pub kind: ColumnKind,
    /// How.
    pub storage: Storage,
    /// Distinct values (exact for dictionary columns, else an estimate).
    pub cardinality: u64,
    /// Rows with a value.
    pub present: u64,
    /// The sorted dictionary (dictionary columns).
    pub dictionary: Option<ChunkRef>,
    /// Per-value bitmaps (low-cardinality columns).
    pub bitmaps: Option<ChunkRef>,
    /// Sorted (hash, row) pairs (high-cardinality string columns).
    pub value_index: Option<ChunkRef>,
    /// Blocks, one per [`BLOCK_ROWS`] rows.
    pub blocks: Vec<BlockMeta>,
}

/// The directory at the end of a segment.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Directory {
    /// Rows.
    pub row_count: u64,
    /// Earliest span start.
    pub min_start_unix_nano: u64,
    /// Latest span start.
    pub max_start_unix_nano: u64,
    /// Lowest log sequence whose spans are in this segment (0 when unknown).
    pub min_sequence: u64,
    /// Highest log sequence whose spans are in this segment.
    pub max_sequence: u64,
    /// Bloom filter over trace ids.
    pub trace_bloom: ChunkRef,
    /// Distinct instrumentation scopes, referenced from rest blobs.
    pub scopes: ChunkRef,
    /// Columns.
    pub columns: Vec<ColumnMeta>,
}

/// Sorts spans into the row order a segment (format 3) stores them in: each trace's
/// spans together by (start, span id), traces by (first start, trace id); ties keep
/// the given order. The writer's own sort (`SegmentBuilder::row_order`) works on its
/// column arrays; this is the same order for whole spans (tests, tools).
pub fn sort_in_segment_order(spans: &mut Vec<crate::model::Span>) {
    spans.sort_by_key(|s| (s.trace_id, s.start_unix_nano, s.span_id));
    let mut runs: Vec<(u64, [u8; 16], Vec<crate::model::Span>)> = Vec::new();
    for span in spans.drain(..) {
        match runs.last_mut() {
            Some(run) if run.1 == span.trace_id.0 => run.2.push(span),
            _ => runs.push((span.start_unix_nano, span.trace_id.0, vec![span])),
        }
    }
    runs.sort_by_key(|r| (r.0, r.1));
    spans.extend(runs.into_iter().flat_map(|r| r.2));
}

/// Maps an i64 to a u64 with the same order.
pub fn sortable_int(v: i64) -> u64 {
    (v as u64) ^ (1 << 63)
}

/// Inverse of [`sortable_int`].
pub fn unsortable_int(v: u64) -> i64 {
    (v ^ (1 << 63)) as i64
}

/// Maps an f64 to a u64 whose order is IEEE total order.
pub fn sortable_double(v: f64) -> u64 {
    let bits = v.to_bits();
    if bits >> 63 == 1 {
        !bits
    } else {
        bits | (1 << 63)
    }
}

fn put_chunk(w: &mut Writer, c: &ChunkRef) {
    w.u64(c.offset);
    w.u32(c.len);
    w.u32(c.raw_len);
    w.u32(c.crc);
}

fn get_chunk(r: &mut Reader<'_>) -> Result<ChunkRef, DecodeError> {
    Ok(ChunkRef {
        offset: r.u64("chunk offset")?,
        len: r.u32("chunk length")?,
        raw_len: r.u32("chunk raw length")?,
        crc: r.u32("chunk crc")?,
    })
}

fn put_optional_chunk(w: &mut Writer, c: &Option<ChunkRef>) {
    match c {
        Some(c) => {
            w.u8(1);
            put_chunk(w, c);
        }
        None => w.u8(0),
    }
}

fn get_optional_chunk(r: &mut Reader<'_>) -> Result<Option<ChunkRef>, DecodeError> {
    let at = r.position();
    match r.u8("chunk presence")? {
        0 => Ok(None),
        1 => Ok(Some(get_chunk(r)?)),
        other => Err(DecodeError::new(at, format!("chunk presence {other} is not 0 or 1"))),
    }
}

impl Directory {
    /// Encodes the directory.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::default();
        w.u64(self.row_count);
        w.u64(self.min_start_unix_nano);
        w.u64(self.max_start_unix_nano);
        w.u64(self.min_sequence);
        w.u64(self.max_sequence);
        put_chunk(&mut w, &self.trace_bloom);
        put_chunk(&mut w, &self.scopes);
        w.varint(self.columns.len() as u64);
        for c in &self.columns {
            match &c.kind {
                ColumnKind::Intrinsic(i) => {
                    w.u8(0);
                    w.u8(*i as u8);
                }
                ColumnKind::Attr { scope, key, value_type } => {
                    w.u8(1);
                    w.u8(*scope as u8);
                    w.len_bytes(key.as_bytes());
                    w.u8(*value_type as u8);
                }
            }
            w.u8(c.storage as u8);
            w.varint(c.cardinality);
            w.varint(c.present);
            put_optional_chunk(&mut w, &c.dictionary);
            put_optional_chunk(&mut w, &c.bitmaps);
            put_optional_chunk(&mut w, &c.value_index);
            w.varint(c.blocks.len() as u64);
            for b in &c.blocks {
                put_chunk(&mut w, &b.chunk);
                w.u32(b.present);
                w.u64(b.min);
                w.u64(b.max);
            }
        }
        w.buf
    }

    /// Decodes a directory, checking counts against what the bytes can hold.
    pub fn decode(buf: &[u8]) -> Result<Directory, DecodeError> {
        let r = &mut Reader::new(buf);
        let row_count = r.u64("row count")?;
        if row_count > MAX_SEGMENT_ROWS as u64 {
            return Err(r.error(format!("{row_count} rows exceed the limit of {MAX_SEGMENT_ROWS}")));
        }
        let block_count = (row_count as usize).div_ceil(BLOCK_ROWS);
        let min_start_unix_nano = r.u64("min start")?;
        let max_start_unix_nano = r.u64("max start")?;
        let min_sequence = r.u64("min sequence")?;
        let max_sequence = r.u64("max sequence")?;
        let trace_bloom = get_chunk(r)?;
        let scopes = get_chunk(r)?;
        let count = r.count("column count", r.remaining() / 8)?;
        let mut columns = Vec::with_capacity(count);
        for _ in 0..count {
            let at = r.position();
            let kind = match r.u8("column kind")? {
                0 => {
                    let code = r.u8("intrinsic")?;
                    ColumnKind::Intrinsic(
                        Intrinsic::from_code(code)
                            .ok_or_else(|| DecodeError::new(at, format!("unknown intrinsic {code}")))?,
                    )
                }
                1 => {
                    let scope = match r.u8("attribute scope")? {
                        0 => AttrScope::Span,
                        1 => AttrScope::Resource,
                        other => return Err(DecodeError::new(at, format!("unknown attribute scope {other}"))),
                    };
                    let key_at = r.position();
                    let key = std::str::from_utf8(r.len_bytes("attribute key")?)
                        .map_err(|_| DecodeError::new(key_at, "attribute key is not UTF-8"))?
                        .to_owned();
                    let code = r.u8("value type")?;
                    let value_type = ValueType::from_code(code)
                        .ok_or_else(|| DecodeError::new(at, format!("unknown value type {code}")))?;
                    ColumnKind::Attr { scope, key, value_type }
                }
                other => return Err(DecodeError::new(at, format!("unknown column kind {other}"))),
            };
            let code = r.u8("storage")?;
            let storage =
                Storage::from_code(code).ok_or_else(|| DecodeError::new(at, format!("unknown storage {code}")))?;
            let cardinality = r.varint("cardinality")?;
            let present = r.varint("present count")?;
            let dictionary = get_optional_chunk(r)?;
            let bitmaps = get_optional_chunk(r)?;
            let value_index = get_optional_chunk(r)?;
            let blocks_at = r.position();
            let blocks_len = r.count("block count", r.remaining() / 40)?;
            if blocks_len != block_count {
                return Err(DecodeError::new(
                    blocks_at,
                    format!("{blocks_len} blocks for {row_count} rows, expected {block_count}"),
                ));
            }
            let mut blocks = Vec::with_capacity(blocks_len);
            for _ in 0..blocks_len {
                blocks.push(BlockMeta {
                    chunk: get_chunk(r)?,
                    present: r.u32("block present count")?,
                    min: r.u64("block min")?,
                    max: r.u64("block max")?,
                });
            }
            columns.push(ColumnMeta { kind, storage, cardinality, present, dictionary, bitmaps, value_index, blocks });
        }
        r.finish("segment directory")?;
        Ok(Directory {
            row_count,
            min_start_unix_nano,
            max_start_unix_nano,
            min_sequence,
            max_sequence,
            trace_bloom,
            scopes,
            columns,
        })
    }
}

/// Hash used by value indexes and the trace bloom filter: FNV-1a 64 followed by a
/// splitmix finalizer. Stable across versions: it is part of the format.
pub fn stable_hash(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// Bits per trace in the bloom filter (about 1% false positives with 7 probes).
pub const BLOOM_BITS_PER_KEY: usize = 10;
/// Probes per key.
pub const BLOOM_PROBES: u32 = 7;

/// The bloom probe positions of a trace id in a filter of `bits` bits.
pub fn bloom_positions(trace_id: &[u8; 16], bits: u64) -> impl Iterator<Item = u64> {
    let h = stable_hash(trace_id);
    let delta = h.rotate_left(17) | 1;
    (0..u64::from(BLOOM_PROBES)).map(move |i| h.wrapping_add(i.wrapping_mul(delta)) % bits.max(1))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests;
