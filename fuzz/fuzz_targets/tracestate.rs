//! Fuzz target: `spanstore_ingest::tracecontext::TraceState::parse` on arbitrary text
//! (invalid UTF-8 is replaced).
//!
//! Must never panic; an error points inside the header; a header that parses has at most
//! 32 members with distinct keys and values within the grammar's limits, and formats to a
//! header that parses to the same members.
#![no_main]

use libfuzzer_sys::fuzz_target;
use spanstore_ingest::tracecontext::TraceState;

fuzz_target!(|data: &[u8]| {
    let header = String::from_utf8_lossy(data);
    match TraceState::parse(&header) {
        Ok(parsed) => {
            assert!(parsed.members.len() <= TraceState::MAX_MEMBERS);
            for (index, (key, value)) in parsed.members.iter().enumerate() {
                assert!(!key.is_empty() && key.len() <= TraceState::MAX_KEY_LENGTH, "{key:?}");
                assert!(!value.is_empty() && value.len() <= TraceState::MAX_VALUE_LENGTH, "{value:?}");
                assert!(!value.ends_with(' '), "{value:?}");
                assert!(parsed.members.iter().skip(index + 1).all(|(other, _)| other != key), "{key:?}");
            }
            assert_eq!(TraceState::parse(&parsed.to_header()), Ok(parsed));
        }
        Err(error) => {
            assert!(error.position() <= header.chars().count(), "{header:?}: {error}");
            let message = error.to_string();
            assert!(message.starts_with("tracestate at position ") && !message.ends_with('.'), "{message}");
        }
    }
});
