//! The manifest: which files are live, written atomically (new file, fsync, rename, fsync
//! the directory) and checksummed; the previous version is kept as a fallback.
//!
//! **Invariant:** a file not named by the newest valid manifest (or, for log files, not at
//! or above its log floor) is not part of the store, whatever else is in the directory.
#![deny(clippy::unwrap_used, clippy::indexing_slicing)]

use std::path::{Path, PathBuf};

use crate::codec::{Reader, Writer};
use crate::error::{DecodeError, EngineError, Result};
use crate::fs::{read_all, Fs};

/// Magic at the start of every manifest file.
pub const MANIFEST_MAGIC: [u8; 4] = *b"SSMF";
/// Newest manifest format version.
pub const MANIFEST_VERSION: u16 = 1;
/// Largest manifest body accepted (a stated maximum, checked before use).
pub const MAX_MANIFEST_BYTES: usize = 256 << 20;
const HEADER_SIZE: usize = 12;

/// A sealed segment named by the manifest.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct SegmentEntry {
    /// File number of the segment.
    pub file_number: u64,
    /// Spans in it.
    pub span_count: u64,
    /// Earliest span start, ns.
    pub min_start_unix_nano: u64,
    /// Latest span start, ns.
    pub max_start_unix_nano: u64,
    /// Lowest log sequence whose spans it holds.
    pub min_sequence: u64,
    /// Highest log sequence whose spans it holds.
    pub max_sequence: u64,
}

/// The contents of one manifest version.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Manifest {
    /// Version number of this manifest (its file name).
    pub number: u64,
    /// No file of the store has a number at or above this (logs may go beyond it; the
    /// directory listing gives the rest).
    pub next_file_number: u64,
    /// Log files numbered below this are retired: their records are all in segments.
    pub log_floor: u64,
    /// Every record with a sequence at or below this is in a sealed segment; replay skips
    /// such records, so a crash between sealing and retiring a log cannot double a span.
    pub sealed_sequence: u64,
    /// Live segments.
    pub segments: Vec<SegmentEntry>,
}

/// The file name of manifest version `number`.
pub fn manifest_file_name(number: u64) -> String {
    format!("MANIFEST-{number:010}")
}

/// The version number of a manifest file, if `name` is one.
pub fn parse_manifest_file_name(name: &str) -> Option<u64> {
    name.strip_prefix("MANIFEST-")?.parse().ok()
}

impl Manifest {
    /// Encodes the manifest file, header and checksum included.
    pub fn encode(&self) -> Vec<u8> {
        let mut body = Writer::default();
        body.u64(self.number);
        body.u64(self.next_file_number);
        body.u64(self.log_floor);
        body.u64(self.sealed_sequence);
        body.varint(self.segments.len() as u64);
        for s in &self.segments {
            body.u64(s.file_number);
            body.u64(s.span_count);
            body.u64(s.min_start_unix_nano);
            body.u64(s.max_start_unix_nano);
            body.u64(s.min_sequence);
            body.u64(s.max_sequence);
        }
        let mut out = Writer::with_capacity(body.buf.len() + HEADER_SIZE + 4);
        out.bytes(&MANIFEST_MAGIC);
        out.u16(MANIFEST_VERSION);
        out.u16(0);
        out.u32(body.buf.len() as u32);
        out.bytes(&body.buf);
        let crc = crc32fast::hash(&out.buf);
        out.u32(crc);
        out.buf
    }

    /// Decodes and checks a whole manifest file.
    pub fn decode(path: &Path, bytes: &[u8]) -> Result<Manifest> {
        let corrupt = |e: DecodeError| EngineError::from_decode(path, 0, e);
        let mut r = Reader::new(bytes);
        let magic = r.fixed::<4>("manifest magic").map_err(corrupt)?;
        if magic != MANIFEST_MAGIC {
            return Err(EngineError::corrupt(path, 0, format!("bad magic {magic:02x?}, expected \"SSMF\"")));
        }
        let version = r.u16("manifest version").map_err(corrupt)?;
        if version == 0 || version > MANIFEST_VERSION {
            return Err(EngineError::UnsupportedVersion {
                path: path.to_path_buf(),
                found: version,
                newest: MANIFEST_VERSION,
            });
        }
        let _reserved = r.u16("manifest header").map_err(corrupt)?;
        let body_len = r.u32("manifest body length").map_err(corrupt)? as usize;
        if body_len > MAX_MANIFEST_BYTES || body_len.saturating_add(HEADER_SIZE + 4) != bytes.len() {
            return Err(EngineError::corrupt(
                path,
                8,
                format!("body length {body_len} does not match a file of {} bytes", bytes.len()),
            ));
        }
        let covered = bytes.get(..HEADER_SIZE + body_len).unwrap_or_default();
        let body = r.take(body_len, "manifest body").map_err(corrupt)?;
        let crc = r.u32("manifest checksum").map_err(corrupt)?;
        if crc32fast::hash(covered) != crc {
            return Err(EngineError::corrupt(path, (HEADER_SIZE + body_len) as u64, "manifest checksum mismatch"));
        }
        let body_error = |e: DecodeError| EngineError::from_decode(path, HEADER_SIZE as u64, e);
        let mut r = Reader::new(body);
        let number = r.u64("manifest number").map_err(body_error)?;
        let next_file_number = r.u64("next file number").map_err(body_error)?;
        let log_floor = r.u64("log floor").map_err(body_error)?;
        let sealed_sequence = r.u64("sealed sequence").map_err(body_error)?;
        let count = r.count("segment count", r.remaining() / 48).map_err(body_error)?;
        let mut segments = Vec::with_capacity(count);
        for _ in 0..count {
            segments.push(SegmentEntry {
                file_number: r.u64("segment file number").map_err(body_error)?,
                span_count: r.u64("segment span count").map_err(body_error)?,
                min_start_unix_nano: r.u64("segment min start").map_err(body_error)?,
                max_start_unix_nano: r.u64("segment max start").map_err(body_error)?,
                min_sequence: r.u64("segment min sequence").map_err(body_error)?,
                max_sequence: r.u64("segment max sequence").map_err(body_error)?,
            });
        }
        r.finish("manifest body").map_err(body_error)?;
        Ok(Manifest { number, next_file_number, log_floor, sealed_sequence, segments })
    }
}

/// What loading the manifest found.
#[derive(Debug, Default)]
pub struct Loaded {
    /// The newest valid manifest, if any.
    pub manifest: Option<Manifest>,
    /// Manifest files found damaged (newer than the one used).
    pub damaged: Vec<EngineError>,
    /// Every manifest file name present.
    pub files: Vec<(u64, PathBuf)>,
}

/// Finds the newest manifest that reads back whole; damaged newer ones are reported.
pub fn load(fs: &dyn Fs, dir: &Path, names: &[String]) -> Loaded {
    let mut files: Vec<(u64, PathBuf)> =
        names.iter().filter_map(|name| parse_manifest_file_name(name).map(|n| (n, dir.join(name)))).collect();
    files.sort();
    let mut loaded = Loaded::default();
    for (_, path) in files.iter().rev() {
        let bytes = match fs.open(path).and_then(|f| read_all(f.as_ref())) {
            Ok(bytes) => bytes,
            Err(e) => {
                loaded.damaged.push(EngineError::io(path, "read manifest", e));
                continue;
            }
        };
        match Manifest::decode(path, &bytes) {
            Ok(manifest) => {
                loaded.manifest = Some(manifest);
                break;
            }
            Err(e) => loaded.damaged.push(e),
        }
    }
    loaded.files = files;
    loaded
}

/// Writes `manifest` atomically as version `manifest.number`: temporary file, fsync,
/// rename, fsync the directory. Then removes versions older than the previous one.
pub fn store(fs: &dyn Fs, dir: &Path, manifest: &Manifest, existing: &[(u64, PathBuf)]) -> Result<()> {
    let name = manifest_file_name(manifest.number);
    let path = dir.join(&name);
    let temp = dir.join(format!("{name}.tmp"));
    let bytes = manifest.encode();
    let file = fs.create(&temp).map_err(|e| EngineError::io(&temp, "create manifest", e))?;
    file.append(&bytes).map_err(|e| EngineError::io(&temp, "write manifest", e))?;
    file.sync().map_err(|e| EngineError::io(&temp, "fsync manifest", e))?;
    fs.rename(&temp, &path).map_err(|e| EngineError::io(&path, "rename manifest", e))?;
    fs.sync_dir(dir).map_err(|e| EngineError::io(dir, "fsync directory", e))?;
    for (number, old) in existing {
        if number.saturating_add(1) < manifest.number {
            // Best effort: a leftover old version is harmless (the newest valid wins).
            let _ = fs.remove(old);
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::fs::MemFs;

    fn sample() -> Manifest {
        Manifest {
            number: 7,
            next_file_number: 42,
            log_floor: 3,
            sealed_sequence: 1000,
            segments: vec![SegmentEntry {
                file_number: 5,
                span_count: 10,
                min_start_unix_nano: 1,
                max_start_unix_nano: 2,
                min_sequence: 3,
                max_sequence: 4,
            }],
        }
    }

    #[test]
    fn round_trips() {
        let m = sample();
        assert_eq!(Manifest::decode(Path::new("m"), &m.encode()).unwrap(), m);
    }

    #[test]
    fn every_flipped_bit_and_truncation_is_an_error() {
        let bytes = sample().encode();
        for index in 0..bytes.len() * 8 {
            let mut damaged = bytes.clone();
            damaged[index / 8] ^= 1 << (index % 8);
            let err = Manifest::decode(Path::new("m"), &damaged).unwrap_err();
            assert!(err.to_string().starts_with("m: "), "{err}");
        }
        for len in 0..bytes.len() {
            assert!(Manifest::decode(Path::new("m"), &bytes[..len]).is_err());
        }
    }

    #[test]
    fn newer_version_is_refused_with_its_number() {
        let mut bytes = sample().encode();
        bytes[4] = 9;
        let err = Manifest::decode(Path::new("m"), &bytes).unwrap_err();
        assert_eq!(err.to_string(), "m: format version 9, this build reads up to 1");
    }

    #[test]
    fn damaged_newest_falls_back_to_previous() {
        let fs = MemFs::new();
        let dir = Path::new("/s");
        fs.create_dir_all(dir).unwrap();
        let mut m = sample();
        store(&fs, dir, &m, &[]).unwrap();
        m.number = 8;
        m.sealed_sequence = 2000;
        store(&fs, dir, &m, &[]).unwrap();
        fs.flip_bit(&dir.join(manifest_file_name(8)), 20, 3).unwrap();
        let names = fs.list(dir).unwrap();
        let loaded = load(&fs, dir, &names);
        assert_eq!(loaded.manifest.unwrap().number, 7);
        assert_eq!(loaded.damaged.len(), 1);
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200)) {
            let _ = Manifest::decode(Path::new("m"), &bytes);
        }
    }
}
