//! Fuzz target: `SpanBatch::decode` on arbitrary bytes (a batch body).
//!
//! Must never panic; on success the batch validates, reads back in full, re-encodes to
//! bytes that decode to the same batch, and its spans rebuild a batch with the same
//! spans.
#![no_main]

use libfuzzer_sys::fuzz_target;
use spanstore_engine::codec::Writer;
use spanstore_engine::SpanBatch;

fuzz_target!(|data: &[u8]| {
    let Ok(batch) = SpanBatch::decode(data) else {
        return;
    };
    batch.validate().unwrap();
    let spans = batch.to_spans();
    assert_eq!(spans.len(), batch.len());
    for row in 0..batch.len() {
        let _ = batch.service(row);
        let _ = batch.span_attributes(row).to_owned();
    }

    let mut writer = Writer::default();
    batch.encode(&mut writer);
    let again = SpanBatch::decode(&writer.buf).unwrap();
    assert_eq!(again, batch);

    let rebuilt = SpanBatch::from_spans(&spans);
    rebuilt.validate().unwrap();
    assert_eq!(rebuilt.to_spans(), spans);
});
