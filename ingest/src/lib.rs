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
