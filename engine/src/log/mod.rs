//! The span log: append-only files of CRC-framed batch records (format in docs/FORMAT.md).
//!
//! A log file is a 16-byte header followed by 32 KiB blocks, as in LevelDB: a record is
//! cut into fragments that never cross a block boundary, so after a damaged fragment the
//! reader resumes at the next block and loses only the records that touch the damage.
//! Each fragment's CRC-32 covers its length and type as well as its payload, so a flipped
//! length bit reads as damage, not as a short record.
//!
//! **Invariant:** the log never rewrites a byte it wrote; the writer's only other change
//! is cutting a torn tail (bytes after the last whole record of the newest file) on open.
#![deny(clippy::unwrap_used, clippy::indexing_slicing)]

pub mod writer;

use std::path::{Path, PathBuf};

use crate::batch::SpanBatch;
use crate::codec::{Reader, Writer};
use crate::error::{DecodeError, EngineError};
use crate::fs::ReadFile;
use writer::LogLocation;

/// Magic at the start of every log file.
pub const LOG_MAGIC: [u8; 4] = *b"SSLG";
/// Newest log format version this build writes and reads.
pub const LOG_VERSION: u16 = 1;
/// Bytes of the file header: magic, version, reserved, file number.
pub const LOG_HEADER_SIZE: usize = 16;
/// Block size; fragments never cross a block boundary.
pub const BLOCK_SIZE: usize = 32 * 1024;
/// Bytes of a fragment header: crc u32, length u16, type u8.
pub const FRAGMENT_HEADER_SIZE: usize = 7;
/// Largest record payload the reader accepts (a stated maximum, checked before use).
pub const MAX_RECORD_BYTES: usize = 1 << 30;
/// Bytes of a record header: sequence u64, span count u32, codec u8, raw length u32.
pub const RECORD_HEADER_SIZE: usize = 17;

const _: () = assert!(BLOCK_SIZE.is_power_of_two());
const _: () = assert!(BLOCK_SIZE - FRAGMENT_HEADER_SIZE <= u16::MAX as usize);
const _: () = assert!(LOG_HEADER_SIZE + FRAGMENT_HEADER_SIZE < BLOCK_SIZE);

/// Fragment types.
const FULL: u8 = 1;
const FIRST: u8 = 2;
const MIDDLE: u8 = 3;
const LAST: u8 = 4;

/// Record body codecs.
const CODEC_RAW: u8 = 0;
const CODEC_ZSTD: u8 = 1;

/// The file name of log file `number`.
pub fn log_file_name(number: u64) -> String {
    format!("log-{number:010}.sslog")
}

/// The number of a log file, if `name` is one.
pub fn parse_log_file_name(name: &str) -> Option<u64> {
    name.strip_prefix("log-")?.strip_suffix(".sslog")?.parse().ok()
}

/// The 16-byte header of log file `number`.
pub fn file_header(number: u64) -> [u8; LOG_HEADER_SIZE] {
    let mut w = Writer::with_capacity(LOG_HEADER_SIZE);
    w.bytes(&LOG_MAGIC);
    w.u16(LOG_VERSION);
    w.u16(0);
    w.u64(number);
    let mut header = [0u8; LOG_HEADER_SIZE];
    header.copy_from_slice(&w.buf);
    header
}

/// zstd level of compressed log records. A log record lives only until its spans are
/// sealed into a segment, so speed matters more than ratio: on generated serverless
/// batches level -3 compresses about twice as fast as level 1 for 17% more bytes
/// (76 against 65 bytes per span), which makes appends about a quarter cheaper in CPU
/// (docs/PERFORMANCE.md). Any level decodes the same, so this is not a format change.
pub const LOG_ZSTD_LEVEL: i32 = -3;

/// Scratch buffers above this size are not kept between records, so that one huge batch
/// does not pin its memory in every appending thread.
const SCRATCH_KEEP_BYTES_MAX: usize = 16 << 20;

/// Per-thread state of [`encode_record`], reused from record to record: a zstd context
/// (creating one costs more than compressing a small record) and the buffer the body is
/// encoded into before compression (a fresh one is page-faulted in every time).
#[derive(Default)]
struct EncodeScratch {
    compressor: Option<zstd::bulk::Compressor<'static>>,
    body: Writer,
}

thread_local! {
    static ENCODE_SCRATCH: std::cell::RefCell<EncodeScratch> =
        std::cell::RefCell::new(EncodeScratch::default());
}

/// Writes a record header; codec and raw length can be changed later by
/// [`set_codec_and_raw_len`].
fn put_record_header(out: &mut Writer, sequence: u64, span_count: usize, codec: u8, raw_len: usize) {
    out.u64(sequence);
    out.u32(span_count as u32);
    out.u8(codec);
    out.u32(raw_len as u32);
}

/// Sets the codec and raw length fields of the record header at the start of `out`.
fn set_codec_and_raw_len(out: &mut [u8], codec: u8, raw_len: usize) {
    if let Some(field) = out.get_mut(12) {
        *field = codec;
    }
    if let Some(field) = out.get_mut(13..RECORD_HEADER_SIZE) {
        field.copy_from_slice(&(raw_len as u32).to_le_bytes());
    }
}

/// Encodes a record payload: header and the batch body, compressed with zstd when asked
/// and when that makes it smaller.
pub fn encode_record(sequence: u64, batch: &SpanBatch, compress: bool) -> Vec<u8> {
    let size_hint = batch.encoded_size_hint();
    if !compress {
        // Encode straight after the header: no intermediate buffer and no copy.
        let mut out = Writer::with_capacity(RECORD_HEADER_SIZE + size_hint);
        put_record_header(&mut out, sequence, batch.len(), CODEC_RAW, 0);
        batch.encode(&mut out);
        let raw_len = out.buf.len() - RECORD_HEADER_SIZE;
        set_codec_and_raw_len(&mut out.buf, CODEC_RAW, raw_len);
        return out.buf;
    }
    let encode = |scratch: &mut EncodeScratch| {
        let body = &mut scratch.body;
        body.buf.clear();
        body.buf.reserve(size_hint);
        batch.encode(body);
        let raw_len = body.buf.len();
        // Room for the body raw: a compressed body that would not fit is no smaller
        // than the raw one, and zstd then fails instead of writing it.
        let mut out = Writer::with_capacity(RECORD_HEADER_SIZE + raw_len);
        put_record_header(&mut out, sequence, batch.len(), CODEC_ZSTD, raw_len);
        if scratch.compressor.is_none() {
            scratch.compressor = zstd::bulk::Compressor::new(LOG_ZSTD_LEVEL).ok();
        }
        let compressed = scratch.compressor.as_mut().and_then(|compressor| {
            let mut cursor = std::io::Cursor::new(std::mem::take(&mut out.buf));
            cursor.set_position(RECORD_HEADER_SIZE as u64);
            let written = compressor.compress_to_buffer(&body.buf, &mut cursor);
            out.buf = cursor.into_inner();
            written.ok()
        });
        match compressed {
            Some(len) if len < raw_len => {}
            _ => {
                out.buf.truncate(RECORD_HEADER_SIZE);
                set_codec_and_raw_len(&mut out.buf, CODEC_RAW, raw_len);
                out.bytes(&body.buf);
            }
        }
        if body.buf.capacity() > SCRATCH_KEEP_BYTES_MAX {
            body.buf = Vec::new();
        }
        out.buf
    };
    // The thread-local is unavailable only while the thread is being torn down (or
    // if this were ever re-entered); a fresh scratch does the same work then.
    ENCODE_SCRATCH
        .try_with(|cell| match cell.try_borrow_mut() {
            Ok(mut scratch) => encode(&mut scratch),
            Err(_) => encode(&mut EncodeScratch::default()),
        })
        .unwrap_or_else(|_| encode(&mut EncodeScratch::default()))
}

/// A decoded record.
#[derive(Debug)]
pub struct Record {
    /// Sequence number, increasing across the whole log.
    pub sequence: u64,
    /// The batch.
    pub batch: SpanBatch,
}

/// Decodes a record payload (header, then the possibly compressed batch body).
pub fn decode_record(payload: &[u8]) -> Result<Record, DecodeError> {
    let mut r = Reader::new(payload);
    let sequence = r.u64("record sequence")?;
    let span_count = r.u32("record span count")?;
    let codec_at = r.position();
    let codec = r.u8("record codec")?;
    let raw_len = r.u32("record raw length")? as usize;
    if raw_len > MAX_RECORD_BYTES {
        return Err(DecodeError::new(
            codec_at + 1,
            format!("record body of {raw_len} bytes exceeds {MAX_RECORD_BYTES}"),
        ));
    }
    let body_at = r.position();
    let body = r.take(r.remaining(), "record body")?;
    let batch = match codec {
        CODEC_RAW => {
            if body.len() != raw_len {
                return Err(DecodeError::new(
                    body_at,
                    format!("record body is {} bytes, header says {raw_len}", body.len()),
                ));
            }
            SpanBatch::decode(body)
        }
        CODEC_ZSTD => {
            // Check the size the frame itself declares before reserving `raw_len` bytes,
            // so a damaged header cannot make the reader allocate a gigabyte.
            let declared = zstd::zstd_safe::get_frame_content_size(body).ok().flatten();
            if declared != Some(raw_len as u64) {
                return Err(DecodeError::new(
                    body_at,
                    format!("zstd frame declares {declared:?} bytes, header says {raw_len}"),
                ));
            }
            let raw = zstd::bulk::decompress(body, raw_len)
                .map_err(|e| DecodeError::new(body_at, format!("zstd body: {e}")))?;
            if raw.len() != raw_len {
                return Err(DecodeError::new(
                    body_at,
                    format!("record body inflates to {} bytes, header says {raw_len}", raw.len()),
                ));
            }
            SpanBatch::decode(&raw)
        }
        other => return Err(DecodeError::new(codec_at, format!("unknown record codec {other}"))),
    }
    .map_err(|e| DecodeError::new(body_at, format!("batch: {e}")))?;
    if batch.len() != span_count as usize {
        return Err(DecodeError::new(8, format!("record says {span_count} spans, batch holds {}", batch.len())));
    }
    Ok(Record { sequence, batch })
}

/// Frames `payload` as fragments starting at absolute file offset `offset`, appending
/// them (and any block padding) to `out`; returns the offset after the record.
pub fn frame_record(out: &mut Vec<u8>, mut offset: u64, payload: &[u8]) -> u64 {
    let mut rest = payload;
    let mut first = true;
    loop {
        let left = BLOCK_SIZE - (offset as usize % BLOCK_SIZE);
        if left < FRAGMENT_HEADER_SIZE {
            out.resize(out.len() + left, 0);
            offset += left as u64;
            continue;
        }
        let take = rest.len().min(left - FRAGMENT_HEADER_SIZE);
        let (chunk, tail) = rest.split_at(take);
        let last = tail.is_empty();
        let kind = match (first, last) {
            (true, true) => FULL,
            (true, false) => FIRST,
            (false, true) => LAST,
            (false, false) => MIDDLE,
        };
        let len = (take as u16).to_le_bytes();
        let mut hasher = crc32fast::Hasher::new();
        hasher.update(&len);
        hasher.update(&[kind]);
        hasher.update(chunk);
        out.extend_from_slice(&hasher.finalize().to_le_bytes());
        out.extend_from_slice(&len);
        out.push(kind);
        out.extend_from_slice(chunk);
        offset += (FRAGMENT_HEADER_SIZE + take) as u64;
        rest = tail;
        first = false;
        if last {
            return offset;
        }
    }
}

/// A whole record found by [`scan`]: its payload and where its fragments lie.
#[derive(Debug, Clone)]
pub struct ScannedRecord {
    /// Offset of the record's first fragment header.
    pub start: u64,
    /// Offset just past the record's last fragment.
    pub end: u64,
    /// The reassembled payload.
    pub payload: Vec<u8>,
}

/// One damaged place found by [`scan`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damage {
    /// The file.
    pub path: PathBuf,
    /// Absolute offset of the damage.
    pub offset: u64,
    /// What was wrong.
    pub reason: String,
}

impl std::fmt::Display for Damage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: corrupt at byte {}: {}", self.path.display(), self.offset, self.reason)
    }
}

/// What [`scan`] found in one log file.
#[derive(Debug, Default)]
pub struct Scan {
    /// Whole records whose fragments all passed their checksums, in file order.
    pub records: Vec<ScannedRecord>,
    /// Damage before the end of the last whole record: records lost in the middle.
    pub damage: Vec<Damage>,
    /// Problems after the last whole record when they look like an interrupted write.
    pub tail_damage: Vec<Damage>,
    /// True when bytes after the last whole record are a torn tail: an interrupted
    /// write with no intact fragment after it. A writer cuts a torn tail of the newest
    /// file; anything else after the last whole record is reported as damage.
    pub torn: bool,
    /// Offset just past the last whole record (or the header): where a torn tail starts.
    pub valid_end: u64,
    /// Length of the scanned bytes.
    pub len: u64,
}

/// Checks a log file header; returns the file number.
pub fn check_header(path: &Path, bytes: &[u8]) -> Result<u64, crate::EngineError> {
    let mut r = Reader::new(bytes);
    let magic = r.fixed::<4>("log header").map_err(|e| crate::EngineError::from_decode(path, 0, e))?;
    if magic != LOG_MAGIC {
        return Err(crate::EngineError::corrupt(path, 0, format!("bad magic {magic:02x?}, expected \"SSLG\"")));
    }
    let version = r.u16("log version").map_err(|e| crate::EngineError::from_decode(path, 0, e))?;
    if version == 0 || version > LOG_VERSION {
        return Err(crate::EngineError::UnsupportedVersion {
            path: path.to_path_buf(),
            found: version,
            newest: LOG_VERSION,
        });
    }
    let _reserved = r.u16("log header").map_err(|e| crate::EngineError::from_decode(path, 0, e))?;
    r.u64("log file number").map_err(|e| crate::EngineError::from_decode(path, 0, e))
}

/// Damage in the parts of a log header that do not stop the file from being read: the
/// reserved bytes must be zero and the file number must match the file's name. Such a
/// flip is reported, and the records are still read (they carry their own checksums).
pub fn header_damage(path: &Path, bytes: &[u8]) -> Option<Damage> {
    let damage = |offset: u64, reason: String| Damage { path: path.to_path_buf(), offset, reason };
    let reserved = u16::from_le_bytes([*bytes.get(6)?, *bytes.get(7)?]);
    if reserved != 0 {
        return Some(damage(6, format!("reserved header bytes hold {reserved}, expected 0")));
    }
    let mut number = [0u8; 8];
    number.copy_from_slice(bytes.get(8..16)?);
    let number = u64::from_le_bytes(number);
    let named = path.file_name().and_then(|n| n.to_str()).and_then(parse_log_file_name)?;
    (named != number).then(|| damage(8, format!("header names log file {number}, the file name says {named}")))
}

/// Scans the bytes of a log file (after its header was checked), finding every whole
/// record and every damaged place. Never fails and never panics, whatever the bytes.
pub fn scan(path: &Path, bytes: &[u8]) -> Scan {
    let mut scan =
        Scan { valid_end: LOG_HEADER_SIZE.min(bytes.len()) as u64, len: bytes.len() as u64, ..Scan::default() };
    let mut damage: Vec<Damage> = Vec::new();
    let mut note = |offset: usize, reason: &str| {
        damage.push(Damage { path: path.to_path_buf(), offset: offset as u64, reason: reason.to_owned() });
    };
    let mut in_progress: Option<(usize, Vec<u8>)> = None;
    let mut pos = LOG_HEADER_SIZE;
    while pos < bytes.len() {
        let block_left = BLOCK_SIZE - pos % BLOCK_SIZE;
        if block_left < FRAGMENT_HEADER_SIZE {
            // Padding written by the framer; its contents are not checked.
            pos += block_left;
            continue;
        }
        let Some(header) = bytes.get(pos..pos + FRAGMENT_HEADER_SIZE) else {
            note(pos, "fragment header cut short by the end of the file");
            break;
        };
        let mut r = Reader::new(header);
        let (Ok(crc), Ok(len), Ok(kind)) = (r.u32("crc"), r.u16("length"), r.u8("type")) else {
            note(pos, "unreadable fragment header");
            break;
        };
        let len = usize::from(len);
        if crc == 0 && len == 0 && kind == 0 {
            note(pos, "zeroed bytes where a fragment should start");
            if in_progress.take().is_some() {
                note(pos, "record missing its last fragment");
            }
            pos += block_left;
            continue;
        }
        if FRAGMENT_HEADER_SIZE + len > block_left {
            note(pos, &format!("fragment length {len} runs past its block"));
            in_progress = None;
            pos += block_left;
            continue;
        }
        let Some(chunk) = bytes.get(pos + FRAGMENT_HEADER_SIZE..pos + FRAGMENT_HEADER_SIZE + len) else {
            note(pos, "fragment cut short by the end of the file");
            break;
        };
        let mut hasher = crc32fast::Hasher::new();
        hasher.update(header.get(4..).unwrap_or_default());
        hasher.update(chunk);
        if hasher.finalize() != crc {
            note(pos, "fragment checksum mismatch");
            in_progress = None;
            pos += block_left;
            continue;
        }
        let end = pos + FRAGMENT_HEADER_SIZE + len;
        match kind {
            FULL | FIRST => {
                if let Some((start, _)) = in_progress.take() {
                    note(start, "record missing its last fragment");
                }
                if kind == FULL {
                    scan.records.push(ScannedRecord { start: pos as u64, end: end as u64, payload: chunk.to_vec() });
                    scan.valid_end = end as u64;
                } else {
                    in_progress = Some((pos, chunk.to_vec()));
                }
            }
            MIDDLE | LAST => match in_progress.as_mut() {
                None => note(pos, "fragment without the start of its record"),
                Some((start, payload)) => {
                    if payload.len() + chunk.len() > MAX_RECORD_BYTES {
                        note(*start, "record longer than the maximum");
                        in_progress = None;
                    } else {
                        payload.extend_from_slice(chunk);
                        if kind == LAST {
                            if let Some((start, payload)) = in_progress.take() {
                                scan.records.push(ScannedRecord { start: start as u64, end: end as u64, payload });
                                scan.valid_end = end as u64;
                            }
                        }
                    }
                }
            },
            other => {
                note(pos, &format!("unknown fragment type {other}"));
                in_progress = None;
                pos += block_left;
                continue;
            }
        }
        pos = end;
    }
    // A record whose fragments are all intact up to the end of the file is an
    // interrupted write: its own later fragments are no evidence of data written past it.
    let cut_record_start = in_progress.as_ref().map(|(start, _)| *start as u64);
    if let Some((start, _)) = in_progress {
        note(start, "record missing its last fragment");
    }
    let valid_end = scan.valid_end;
    let (tail, middle): (Vec<Damage>, Vec<Damage>) = damage.into_iter().partition(|d| d.offset >= valid_end);
    scan.damage = middle;
    // Bytes after the last whole record are a torn tail (an interrupted write) unless
    // an intact fragment lies somewhere after the damage: then data was written past
    // it, so it is damage in the middle that the block resync happened to skip over.
    // (The byte-by-byte search only classifies; records are loaded only from
    // fragments found by the block walk, so bytes inside a payload can never be
    // taken for a record.)
    let tail_start = tail.first().map(|d| d.offset).unwrap_or(valid_end);
    let search_from =
        if tail.len() == 1 && cut_record_start == Some(tail_start) { bytes.len() } else { tail_start as usize + 1 };
    let has_tail = !tail.is_empty() || valid_end < scan.len;
    if has_tail && intact_fragment_after(bytes, search_from) {
        scan.damage.extend(tail);
    } else {
        scan.torn = has_tail;
        scan.tail_damage = tail;
    }
    scan
}

/// True when a fragment whose checksum matches starts anywhere at or after `from`.
fn intact_fragment_after(bytes: &[u8], from: usize) -> bool {
    let mut pos = from.max(LOG_HEADER_SIZE);
    while pos + FRAGMENT_HEADER_SIZE <= bytes.len() {
        let block_left = BLOCK_SIZE - pos % BLOCK_SIZE;
        let header = bytes.get(pos..pos + FRAGMENT_HEADER_SIZE).unwrap_or_default();
        if let [c0, c1, c2, c3, l0, l1, kind] = *header {
            let len = usize::from(u16::from_le_bytes([l0, l1]));
            if (FULL..=LAST).contains(&kind) && FRAGMENT_HEADER_SIZE + len <= block_left {
                if let Some(chunk) = bytes.get(pos + FRAGMENT_HEADER_SIZE..pos + FRAGMENT_HEADER_SIZE + len) {
                    let mut hasher = crc32fast::Hasher::new();
                    hasher.update(&[l0, l1, kind]);
                    hasher.update(chunk);
                    if hasher.finalize() == u32::from_le_bytes([c0, c1, c2, c3]) {
                        return true;
                    }
                }
            }
        }
        pos += 1;
    }
    false
}

/// Reads back the record at `location` of a log file: its fragments, checksums checked,
/// reassembled and decoded.
pub fn read_record(file: &dyn ReadFile, path: &Path, location: LogLocation) -> Result<Record, EngineError> {
    let len = location
        .end
        .checked_sub(location.start)
        .and_then(|len| usize::try_from(len).ok())
        .filter(|&len| len <= MAX_RECORD_BYTES + MAX_RECORD_BYTES / 1024)
        .ok_or_else(|| EngineError::corrupt(path, location.start, "record location out of range"))?;
    let mut bytes = vec![0u8; len];
    let mut filled = 0;
    while filled < len {
        let rest = bytes.get_mut(filled..).unwrap_or_default();
        let n = file
            .read_at(location.start + filled as u64, rest)
            .map_err(|e| EngineError::io(path, "read log record", e))?;
        if n == 0 {
            return Err(EngineError::corrupt(path, location.start + filled as u64, "log ends inside a record"));
        }
        filled += n;
    }
    let mut payload = Vec::with_capacity(len);
    let mut pos = 0usize;
    loop {
        let offset = location.start + pos as u64;
        let block_left = BLOCK_SIZE - (offset as usize % BLOCK_SIZE);
        if block_left < FRAGMENT_HEADER_SIZE {
            pos += block_left;
            continue;
        }
        let header = bytes
            .get(pos..pos + FRAGMENT_HEADER_SIZE)
            .ok_or_else(|| EngineError::corrupt(path, offset, "record ends inside a fragment header"))?;
        let mut r = Reader::new(header);
        let crc = r.u32("crc").map_err(|e| EngineError::from_decode(path, offset, e))?;
        let fragment_len = usize::from(r.u16("length").map_err(|e| EngineError::from_decode(path, offset, e))?);
        let kind = r.u8("type").map_err(|e| EngineError::from_decode(path, offset, e))?;
        let chunk = bytes
            .get(pos + FRAGMENT_HEADER_SIZE..pos + FRAGMENT_HEADER_SIZE + fragment_len)
            .ok_or_else(|| EngineError::corrupt(path, offset, "fragment runs past its record"))?;
        let mut hasher = crc32fast::Hasher::new();
        hasher.update(header.get(4..).unwrap_or_default());
        hasher.update(chunk);
        if hasher.finalize() != crc {
            return Err(EngineError::corrupt(path, offset, "fragment checksum mismatch"));
        }
        let expected_first = pos == 0;
        match (kind, expected_first) {
            (FULL, true) | (FIRST, true) | (MIDDLE, false) | (LAST, false) => {}
            _ => return Err(EngineError::corrupt(path, offset, format!("unexpected fragment type {kind}"))),
        }
        payload.extend_from_slice(chunk);
        pos += FRAGMENT_HEADER_SIZE + fragment_len;
        if kind == FULL || kind == LAST {
            break;
        }
    }
    decode_record(&payload).map_err(|e| EngineError::corrupt(path, location.start, format!("record: {e}")))
}

#[cfg(test)]
mod tests;
