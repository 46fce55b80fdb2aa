//! Fuzz target: `spanstore_ingest::tracecontext::TraceParent::parse` on arbitrary text
//! (invalid UTF-8 is replaced).
//!
//! Must never panic; an error points inside the header; a header that parses formats back
//! as its first 55 characters (after surrounding whitespace), which parse to the same
//! fields.
#![no_main]

use libfuzzer_sys::fuzz_target;
use spanstore_ingest::tracecontext::TraceParent;

fuzz_target!(|data: &[u8]| {
    let header = String::from_utf8_lossy(data);
    match TraceParent::parse(&header) {
        Ok(parsed) => {
            assert_ne!(parsed.version, 0xff);
            assert!(!parsed.trace_id.is_zero() && !parsed.parent_id.is_zero());
            let printed = parsed.to_header();
            let value = header.trim_matches([' ', '\t']);
            assert_eq!(value.get(..55), Some(printed.as_str()), "{header:?}");
            if parsed.version == 0 {
                assert_eq!(value, printed);
            }
            assert_eq!(TraceParent::parse(&printed), Ok(parsed));
        }
        Err(error) => {
            assert!(error.position() <= header.chars().count(), "{header:?}: {error}");
            let message = error.to_string();
            assert!(message.starts_with("traceparent at position ") && !message.ends_with('.'), "{message}");
        }
    }
});
