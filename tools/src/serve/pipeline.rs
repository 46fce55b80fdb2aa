//! The path every receiver shares: bounded gunzip, decode, append (durable when it
//! returns under sync `always`), and the count of what was kept and what was rejected.
//!
//! Runs on a blocking thread (`tokio::task::spawn_blocking`): decoding is CPU work and
//! `Store::append` waits for its group's fsync, so concurrent requests park here
//! together and share one fsync.

use axum::body::Bytes;
use spanstore_engine::Store;
use spanstore_ingest::{detect, otlp, otlp_json, zipkin, Decoded};

use super::{Reservation, ServeError};

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
/// The inflated body and the decoded batch are added to `reservation` (which already
/// holds the body) as they appear, so a request that would pass the in-flight limit is
/// refused before it takes more memory.
///
/// Zipkin has no partial success, so there a rejected span refuses the whole body, as
/// `spanstore ingest` refuses a line.
pub(crate) fn ingest_body(
    store: &Store,
    wire: Wire,
    body: Bytes,
    gzip: bool,
    limit_bytes: usize,
    reservation: &mut Reservation,
) -> Result<Accepted, ServeError> {
    let bytes = if gzip {
        let inflated = detect::gunzip_bounded(&body, limit_bytes).map_err(ServeError::from_ingest)?;
        reservation.grow(inflated.len())?;
        Bytes::from(inflated)
    } else {
        body
    };
    let decoded = match wire {
        // The decoded strings share the body instead of being copied.
        Wire::OtlpProtobuf => otlp::decode_protobuf_bytes(bytes),
        Wire::OtlpJson => otlp_json::decode_json(&bytes),
        Wire::ZipkinJson => zipkin::decode_zipkin_json(&bytes),
    }
    .map_err(ServeError::from_ingest)?;
    reservation.grow(decoded.batch.memory_size_bytes())?;
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::serve::InFlight;
    use spanstore_engine::{Options, SpanBatch};

    /// A request that would pass the in-flight limit is refused before anything of it is
    /// stored, and taken once the bytes held by others are given back.
    #[test]
    fn a_request_over_the_in_flight_limit_is_refused_and_stores_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), Options::default()).unwrap();
        let batch = SpanBatch::from_spans(&spanstore_workload::batches(4, 1, 200)[0].to_spans());
        let body = otlp::encode_protobuf(&batch);
        let budget = InFlight::new(body.len() * 2);
        let mut other = budget.reservation();
        other.grow(body.len()).unwrap();

        let mut reservation = budget.reservation();
        reservation.grow(body.len() / 2).unwrap();
        let refused =
            ingest_body(&store, Wire::OtlpProtobuf, body.clone().into(), false, 1 << 20, &mut reservation).unwrap_err();
        assert!(matches!(refused, ServeError::Overloaded(_)), "{refused}");
        drop(reservation);
        assert_eq!(budget.used_bytes(), body.len());
        assert_eq!(store.snapshot().span_count(), 0);

        drop(other);
        let mut reservation = budget.reservation();
        reservation.grow(body.len()).unwrap();
        let accepted =
            ingest_body(&store, Wire::OtlpProtobuf, body.clone().into(), false, 1 << 20, &mut reservation).unwrap();
        assert_eq!(accepted.accepted_spans, batch.len());
        assert!(budget.used_bytes() > body.len(), "the decoded batch is held until the request ends");
        drop(reservation);
        assert_eq!(budget.used_bytes(), 0);
        assert_eq!(store.snapshot().span_count(), batch.len() as u64);
    }
}
