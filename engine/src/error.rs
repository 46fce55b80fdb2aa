//! Error types of the engine crate: every file error names the file and the byte offset.

use std::path::PathBuf;

/// Errors from parsing model values (ids) given as text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModelError {
    /// The text has the wrong number of hex digits.
    #[error("{what}: expected {expected} hex digits, found {found}")]
    IdLength {
        /// Which id.
        what: &'static str,
        /// Expected number of digits.
        expected: usize,
        /// Number of characters found.
        found: usize,
    },
    /// A character is not a hex digit.
    #[error("{what}: invalid hex digit {found:?} at position {position}")]
    IdHex {
        /// Which id.
        what: &'static str,
        /// Zero-based character position.
        position: usize,
        /// The offending character.
        found: char,
    },
    /// The text is not an AWS X-Ray trace id (`1-5759e988-bd862e3fe1be46a994272793`).
    #[error("x-ray trace id at position {position}: expected {expected}, found {found}")]
    XRayId {
        /// Zero-based character position.
        position: usize,
        /// What the grammar allows there.
        expected: &'static str,
        /// What is there instead: a quoted character, "the end of the id" or "all zeros".
        found: String,
    },
}

/// Errors from decoding bytes (a log record payload, a manifest body) held in memory.
///
/// The offset is relative to the start of the buffer being decoded; file readers add the
/// file's path and the buffer's position in the file when they turn it into an
/// [`EngineError::Corrupt`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("at byte {offset}: {reason}")]
pub struct DecodeError {
    /// Offset within the decoded buffer.
    pub offset: u64,
    /// What was wrong.
    pub reason: String,
}

impl DecodeError {
    /// A decode error at `offset`.
    pub fn new(offset: usize, reason: impl Into<String>) -> Self {
        DecodeError { offset: offset as u64, reason: reason.into() }
    }
}

/// The engine's error type.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// An I/O operation on a file failed.
    #[error("{path}: {op}: {source}")]
    Io {
        /// File or directory involved.
        path: PathBuf,
        /// What was being done.
        op: &'static str,
        /// The underlying error.
        source: std::io::Error,
    },
    /// Bytes on disk are not what the format allows.
    #[error("{path}: corrupt at byte {offset}: {reason}")]
    Corrupt {
        /// The damaged file.
        path: PathBuf,
        /// Absolute byte offset in the file.
        offset: u64,
        /// What was wrong.
        reason: String,
    },
    /// A file was written by a newer format version.
    #[error("{path}: format version {found}, this build reads up to {newest}")]
    UnsupportedVersion {
        /// The file.
        path: PathBuf,
        /// Version found in the header.
        found: u16,
        /// Newest version this build reads.
        newest: u16,
    },
    /// Another process holds the writer lock of the directory.
    #[error("{path}: the data directory is locked by another writer; open it read-only or stop the other process")]
    Locked {
        /// The lock file.
        path: PathBuf,
    },
    /// The directory has no store in it (read-only opens never create one).
    #[error("{path}: no spanstore data directory here (no manifest found)")]
    NotAStore {
        /// The directory.
        path: PathBuf,
    },
    /// A write was attempted through a read-only store.
    #[error("the store is open read-only")]
    ReadOnly,
    /// The store was closed, or a fatal write error made it stop accepting writes.
    #[error("the store is closed: {reason}")]
    Closed {
        /// Why.
        reason: String,
    },
    /// A batch handed to `append` is malformed.
    #[error("invalid batch: {0}")]
    InvalidBatch(String),
    /// An option has a value the engine cannot use.
    #[error("invalid option {name}: {reason}")]
    InvalidOption {
        /// Option name.
        name: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// A bug in spanstore.
    #[error("internal error (a bug in spanstore): {0}")]
    Internal(String),
}

impl EngineError {
    /// Wraps an I/O error with the path and operation.
    pub fn io(path: impl Into<PathBuf>, op: &'static str, source: std::io::Error) -> Self {
        EngineError::Io { path: path.into(), op, source }
    }

    /// A corruption error at an absolute file offset.
    pub fn corrupt(path: impl Into<PathBuf>, offset: u64, reason: impl Into<String>) -> Self {
        EngineError::Corrupt { path: path.into(), offset, reason: reason.into() }
    }

    /// Turns a buffer-relative decode error into a file error, given where the buffer
    /// starts in the file.
    pub fn from_decode(path: impl Into<PathBuf>, base_offset: u64, err: DecodeError) -> Self {
        EngineError::Corrupt { path: path.into(), offset: base_offset.saturating_add(err.offset), reason: err.reason }
    }
}

/// Result alias for the engine.
pub type Result<T, E = EngineError> = std::result::Result<T, E>;
