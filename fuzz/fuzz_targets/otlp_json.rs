//! Fuzz target: `otlp_json::decode_json` on arbitrary bytes.
//!
//! Must never panic; on success the batch validates, and `encode_json` then
//! `decode_json` gives the same spans (regrouped, so compared as sets).
#![no_main]

use libfuzzer_sys::fuzz_target;
use spanstore_engine::Span;
use spanstore_ingest::otlp_json;

fn sorted(spans: Vec<Span>) -> Vec<String> {
    let mut keys: Vec<String> = spans.iter().map(|s| format!("{s:?}")).collect();
    keys.sort();
    keys
}

fuzz_target!(|data: &[u8]| {
    let Ok(decoded) = otlp_json::decode_json(data) else {
        return;
    };
    decoded.batch.validate().unwrap();
    assert_eq!(decoded.rejected_spans > 0, decoded.first_rejection.is_some());
    let mut out = Vec::new();
    otlp_json::encode_json(&decoded.batch, &mut out);
    let again = otlp_json::decode_json(&out).unwrap();
    assert_eq!(again.rejected_spans, 0);
    assert_eq!(sorted(again.batch.to_spans()), sorted(decoded.batch.to_spans()));
});
