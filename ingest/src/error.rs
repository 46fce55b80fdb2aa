//! One error type for the crate.

/// Why a payload could not be decoded; the message names what and where.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The bytes are not a protobuf `ExportTraceServiceRequest` (truncated, a wrong wire
    /// type, invalid UTF-8 in a string field, nested too deep, ...). prost names the
    /// message and field where decoding stopped.
    #[error("not an OTLP protobuf ExportTraceServiceRequest: {0}")]
    Protobuf(String),
    /// The bytes are not JSON of the expected shape; serde_json's message names the line
    /// and column.
    #[error("{format}: {reason}")]
    Json {
        /// `OTLP/JSON` or `Zipkin JSON`.
        format: &'static str,
        /// What was wrong and where.
        reason: String,
    },
    /// A gzip body that does not inflate.
    #[error("gzip: {0}")]
    Gzip(String),
    /// A body whose inflated size passes the limit; inflation stopped at the limit.
    #[error("body is larger than {limit_bytes} bytes after decompression")]
    TooLarge {
        /// The limit that was passed.
        limit_bytes: usize,
    },
    /// A payload that decodes into more than one batch may hold
    /// ([`spanstore_engine::SpanBatch::check_limits`]).
    #[error("payload too large for one batch: {0}")]
    BatchLimit(String),
}

impl IngestError {
    /// True when the payload was refused for its size (HTTP 413), not its content.
    pub fn is_too_large(&self) -> bool {
        matches!(self, IngestError::TooLarge { .. } | IngestError::BatchLimit(_))
    }

    pub(crate) fn json(format: &'static str, error: serde_json::Error) -> IngestError {
        IngestError::Json { format, reason: error.to_string() }
    }
}
