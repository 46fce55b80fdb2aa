//! Fuzz target: `spanstore_query::parse` on arbitrary text (invalid UTF-8 is replaced).
//!
//! Must never panic; an error must point inside the text; a statement that parses must
//! print as canonical SpanQL that parses back to the same statement and prints the same.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    match spanstore_query::parse(&text) {
        Ok(statement) => {
            let printed = statement.to_string();
            let again = spanstore_query::parse(&printed)
                .unwrap_or_else(|error| panic!("{text:?} printed as {printed:?}, which fails: {error}"));
            assert_eq!(again, statement, "{text:?} printed as {printed:?}");
            assert_eq!(again.to_string(), printed);
        }
        Err(error) => {
            let position = error.position().expect("a parse error has a position");
            assert!(position.offset <= text.len() && text.is_char_boundary(position.offset));
            assert!(position.line >= 1 && position.column >= 1);
            assert!(error.caret(&text).is_some());
            let message = error.to_string();
            assert!(!message.ends_with('.'), "{message}");
        }
    }
});
