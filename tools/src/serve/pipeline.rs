//! The path every receiver shares: bounded gunzip, decode, append (durable when it
//! returns under sync `always`), and the count of what was kept and what was rejected.
//!
//! Runs on a blocking thread (`tokio::task::spawn_blocking`): decoding is CPU work and
//! `Store::append` waits for its group's fsync, so concurrent requests park here
//! together and share one fsync.

use spanstore_engine::Store;
use spanstore_ingest::{detect, otlp, otlp_json, zipkin, Decoded};

use super::ServeError;

/// Which decoder a request body goes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Wire {
    /// An OTLP `ExportTraceServiceRequest` in protobuf.
    OtlpProtobuf,
    /// The same message in OTLP/JSON.
    OtlpJson,
    /// A JSON array of Zipkin v2 spans.
    ZipkinJson,
}

/// What a request stored.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Accepted {
    /// Spans appended (durable).
    pub(crate) accepted_spans: usize,
    /// Spans left out because they were invalid (OTLP partial success).
    pub(crate) rejected_spans: u64,
    /// Why the first of them was rejected.
    pub(crate) first_rejection: Option<String>,
}

/// Inflates (if `gzip`) within `limit_bytes`, decodes and appends one request body.
///
/// Zipkin has no partial success, so there a rejected span refuses the whole body, as
/// `spanstore ingest` refuses a line.
pub(crate) fn ingest_body(
    store: &Store,
    wire: Wire,
    body: &[u8],
    gzip: bool,
    limit_bytes: usize,
) -> Result<Accepted, ServeError> {
    let inflated;
    let bytes = if gzip {
        inflated = detect::gunzip_bounded(body, limit_bytes).map_err(ServeError::from_ingest)?;
        inflated.as_slice()
    } else {
        body
    };
    let decoded = match wire {
        Wire::OtlpProtobuf => otlp::decode_protobuf(bytes),
        Wire::OtlpJson => otlp_json::decode_json(bytes),
        Wire::ZipkinJson => zipkin::decode_zipkin_json(bytes),
    }
    .map_err(ServeError::from_ingest)?;
    if wire == Wire::ZipkinJson && decoded.rejected_spans > 0 {
        let reason = decoded.first_rejection.unwrap_or_else(|| "an invalid span".to_owned());
        return Err(ServeError::Malformed(format!(
            "{} invalid spans, the batch is refused whole: {reason}",
            decoded.rejected_spans
        )));
    }
    append_decoded(store, decoded)
}

/// Appends what a decoder kept; returns once it is durable (sync `always`).
pub(crate) fn append_decoded(store: &Store, decoded: Decoded) -> Result<Accepted, ServeError> {
    let Decoded { batch, rejected_spans, first_rejection } = decoded;
    let receipt = store.append(batch).map_err(ServeError::Store)?;
    Ok(Accepted { accepted_spans: receipt.span_count, rejected_spans, first_rejection })
}
