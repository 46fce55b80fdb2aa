//! Fuzz target: `zipkin::decode_zipkin_json` on arbitrary bytes.
//!
//! Must never panic; on success the batch validates and every span has valid ids, and
//! the spans survive an OTLP/JSON round trip.
#![no_main]

use libfuzzer_sys::fuzz_target;
use spanstore_ingest::{otlp_json, zipkin};

fuzz_target!(|data: &[u8]| {
    let Ok(decoded) = zipkin::decode_zipkin_json(data) else {
        return;
    };
    decoded.batch.validate().unwrap();
    assert_eq!(decoded.rejected_spans > 0, decoded.first_rejection.is_some());
    let spans = decoded.batch.to_spans();
    for span in &spans {
        assert!(!span.trace_id.is_zero() && !span.span_id.is_zero());
    }
    let mut out = Vec::new();
    otlp_json::encode_json(&decoded.batch, &mut out);
    assert_eq!(otlp_json::decode_json(&out).unwrap().batch.len(), spans.len());
});
