//! Fuzz target: `log::decode_record` on arbitrary bytes (a reassembled record payload).
//!
//! Must never panic; on success the batch validates, reads back in full, and encodes
//! to a record (raw and zstd) that decodes to the same sequence and batch.
#![no_main]

use libfuzzer_sys::fuzz_target;
use spanstore_engine::log;

fuzz_target!(|data: &[u8]| {
    let Ok(record) = log::decode_record(data) else {
        return;
    };
    record.batch.validate().unwrap();
    let spans = record.batch.to_spans();
    assert_eq!(spans.len(), record.batch.len());
    for compress in [false, true] {
        let payload = log::encode_record(record.sequence, &record.batch, compress);
        let again = log::decode_record(&payload).unwrap();
        assert_eq!(again.sequence, record.sequence);
        assert_eq!(again.batch, record.batch);
    }
});
