//! Every example in docs/QUERY.md parses and runs.

use crate::{spans, store};
use spanstore_query::{execute, parse, ExecOptions};

/// The statements of every ```sql block: a line starting at column 0 begins a
/// statement, indented lines continue it, `--` comments are dropped.
fn examples() -> Vec<String> {
    let text = include_str!("../../../docs/QUERY.md");
    let mut out = Vec::new();
    let mut in_sql = false;
    for line in text.lines() {
        if line.starts_with("```") {
            in_sql = line.trim() == "```sql";
            continue;
        }
        if !in_sql {
            continue;
        }
        let code = match line.find("--") {
            Some(i) if !line[..i].contains('\'') || line[..i].matches('\'').count() % 2 == 0 => &line[..i],
            _ => line,
        };
        if code.trim().is_empty() {
            continue;
        }
        if code.starts_with(char::is_whitespace) {
            if let Some(last) = out.last_mut() {
                let last: &mut String = last;
                last.push('\n');
                last.push_str(code);
            }
        } else {
            out.push(code.to_string());
        }
    }
    out
}

#[test]
fn every_example_in_the_language_reference_runs() {
    let spans = spans(9, 500);
    let store = store(&spans);
    let examples = examples();
    assert!(examples.len() >= 30, "found only {} examples", examples.len());
    let mut failures = Vec::new();
    for example in &examples {
        let outcome = parse(example).map_err(|e| e.to_string()).and_then(|statement| {
            execute(
                &store.snapshot(),
                &statement,
                &ExecOptions { now_unix_nano: 1_795_700_000_000_000_000, cancel: None, ..Default::default() },
            )
            .map_err(|e| e.to_string())
        });
        if let Err(err) = outcome {
            failures.push(format!("{example}\n  -> {err}"));
        }
    }
    assert!(failures.is_empty(), "{} of {} examples fail:\n{}", failures.len(), examples.len(), failures.join("\n"));
}
