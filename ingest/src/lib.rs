//! Wire formats of spanstore: what receivers decode and `export` writes.
//!
//! - [`otlp`]: OTLP `ExportTraceServiceRequest` in protobuf (the `opentelemetry-proto`
//!   crate's generated prost types) decoded straight into a columnar [`SpanBatch`], and
//!   encoded back.
//! - [`otlp_json`]: the OTLP/JSON encoding of the same message, both ways.
//! - [`zipkin`]: Zipkin v2 JSON spans.
//! - [`detect`]: format detection and bounded gzip inflation for `ingest` and `serve`.
//! - [`tracecontext`]: W3C Trace Context `traceparent` / `tracestate`.
//! - [`xray`]: AWS X-Ray trace ids and their W3C form.
//!
//! [`SpanBatch`]: spanstore_engine::SpanBatch
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod common;
pub mod detect;
pub mod error;
pub mod otlp;
pub mod otlp_json;
#[cfg(test)]
mod otlp_json_reference;
pub mod tracecontext;
pub mod xray;
pub mod zipkin;

pub use error::IngestError;

use spanstore_engine::SpanBatch;

/// What a decoder made of one payload (one OTLP request, one OTLP/JSON line, one Zipkin
/// array).
///
/// A payload that is not well formed is an error and nothing of it is kept. A
/// well-formed payload may still carry individually invalid spans (an id of the wrong
/// length, an all-zero id): those are left out and counted here, as OTLP's partial
/// success reports them. `spanstore ingest` rejects a line whole if any span of it was
/// rejected; `serve` stores the rest and answers with a partial success.
#[derive(Debug, Default)]
pub struct Decoded {
    /// Every accepted span, grouped by resource and scope as the payload grouped them.
    pub batch: SpanBatch,
    /// How many spans were left out because they were invalid.
    pub rejected_spans: u64,
    /// Why the first rejected span was rejected, naming where it was in the payload.
    pub first_rejection: Option<String>,
}
