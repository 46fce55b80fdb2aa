//! One error type for the crate.

/// Why a payload could not be decoded; the message names what and where.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The payload is not well formed.
    #[error("{0}")]
    Malformed(String),
}
