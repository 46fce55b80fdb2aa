//! Fuzz target: `spanstore_ingest::xray::parse_xray_header` (`X-Amzn-Trace-Id`) and
//! `xray_to_trace_id` on arbitrary text (invalid UTF-8 is replaced).
//!
//! Must never panic; an error points inside the header; a header that parses formats to a
//! header that parses to the same fields; an X-Ray trace id that parses formats back to
//! itself (with its epoch zero-padded to 8 digits).
#![no_main]

use libfuzzer_sys::fuzz_target;
use spanstore_ingest::xray::{parse_xray_header, trace_id_to_xray, xray_to_trace_id};

fuzz_target!(|data: &[u8]| {
    let header = String::from_utf8_lossy(data);
    match parse_xray_header(&header) {
        Ok(parsed) => {
            assert!(!parsed.root.is_zero());
            assert_eq!(parse_xray_header(&parsed.to_header()), Ok(parsed));
        }
        Err(error) => {
            assert!(error.position() <= header.chars().count(), "{header:?}: {error}");
            let message = error.to_string();
            assert!(message.starts_with("x-amzn-trace-id at position ") && !message.ends_with('.'), "{message}");
        }
    }
    match xray_to_trace_id(&header) {
        Ok(id) => {
            let printed = trace_id_to_xray(id);
            assert_eq!(printed.len(), 35);
            assert!(printed.ends_with(header.get(header.len().saturating_sub(24)..).unwrap_or_default()));
            assert_eq!(xray_to_trace_id(&printed), Ok(id));
        }
        Err(error) => assert!(error.position() <= header.chars().count(), "{header:?}: {error}"),
    }
});
