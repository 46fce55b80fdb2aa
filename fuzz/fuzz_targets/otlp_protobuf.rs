//! Fuzz target: `otlp::decode_protobuf` on arbitrary bytes.
//!
//! Must never panic; on success the batch validates, and encoding it back and decoding
//! again gives the same spans (regrouped by resource and scope, so compared as sets).
//! The answer (spans, rejections or error) is the one the `opentelemetry-proto` types
//! alone give: the shared-buffer fast path must never accept or refuse differently.
#![no_main]

use libfuzzer_sys::fuzz_target;
use spanstore_engine::Span;
use spanstore_ingest::otlp;

fn sorted(spans: Vec<Span>) -> Vec<String> {
    let mut keys: Vec<String> = spans.iter().map(|s| format!("{s:?}")).collect();
    keys.sort();
    keys
}

fn outcome(result: &Result<spanstore_ingest::Decoded, spanstore_ingest::IngestError>) -> String {
    match result {
        Ok(decoded) => format!("{:?} {} {:?}", decoded.batch.to_spans(), decoded.rejected_spans, decoded.first_rejection),
        Err(e) => e.to_string(),
    }
}

fuzz_target!(|data: &[u8]| {
    let result = otlp::decode_protobuf(data);
    assert_eq!(outcome(&result), outcome(&otlp::decode_protobuf_generated(data)));
    let Ok(decoded) = result else {
        return;
    };
    decoded.batch.validate().unwrap();
    assert_eq!(decoded.rejected_spans > 0, decoded.first_rejection.is_some());
    let again = otlp::decode_protobuf(&otlp::encode_protobuf(&decoded.batch)).unwrap();
    assert_eq!(again.rejected_spans, 0);
    assert_eq!(sorted(again.batch.to_spans()), sorted(decoded.batch.to_spans()));
});
