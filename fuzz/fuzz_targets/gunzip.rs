//! Fuzz target: `detect::gunzip_bounded` and `detect::detect` on arbitrary bytes.
//!
//! Must never panic, never return more than the limit, and refuse (as too large, not as
//! a gzip error) exactly when the inflated size passes it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use spanstore_ingest::detect;

const LIMIT_BYTES: usize = 1 << 16;

fuzz_target!(|data: &[u8]| {
    let _ = detect::detect(data, Some("spans.json.gz"));
    match detect::gunzip_bounded(data, LIMIT_BYTES) {
        Ok(inflated) => {
            assert!(inflated.len() <= LIMIT_BYTES);
            if let Some(format) = detect::detect(&inflated, None) {
                let _ = detect::decode(format, &inflated);
            }
            // A larger limit gives the same bytes.
            assert_eq!(detect::gunzip_bounded(data, LIMIT_BYTES * 2).unwrap(), inflated);
        }
        Err(e) if e.is_too_large() => {
            let more = detect::gunzip_bounded(data, LIMIT_BYTES * 4);
            assert!(more.map(|b| b.len() > LIMIT_BYTES).unwrap_or(true));
        }
        Err(_) => {}
    }
});
