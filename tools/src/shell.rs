//! `spanstore shell`: an interactive SpanQL prompt with line editing (rustyline),
//! persistent history, multi-line input ending at `;`, tab completion of keywords,
//! fields and attribute keys, `.help`, `.schema`, `.timing on|off`, and tables that
//! fit the terminal with TIMESERIES sparklines.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use rustyline::completion::{Completer, Pair};
use rustyline::highlight::Highlighter;
use rustyline::hint::Hinter;
use rustyline::history::FileHistory;
use rustyline::validate::Validator;
use rustyline::{Context, Editor, Helper};
use spanstore_engine::segment::{AttrScope, ColumnKind};
use spanstore_engine::Store;

use crate::format;

/// Words completed besides the reserved words and functions the parser exports.
const EXTRA_WORDS: [&str; 14] = [
    "spans", "TRACE", "EXPLAIN", "MAX", "AUTO", "ASC", "DESC", "ago", "minutes", "hours", "days", "true", "false",
    "count(*)",
];

const INTRINSICS: [&str; 11] = [
    "trace_id",
    "span_id",
    "parent_span_id",
    "name",
    "kind",
    "status",
    "status_message",
    "service",
    "start",
    "end",
    "duration",
];

/// Attribute keys with their types and approximate cardinality, from segment
/// directories (no block is read).
pub struct Schema {
    /// (scope, key) → (types, distinct values, rows with a value).
    pub attributes: BTreeMap<(String, String), (Vec<&'static str>, u64, u64)>,
    /// Spans in the snapshot.
    pub spans: u64,
}

/// Reads the schema of a store.
pub fn schema(store: &Store) -> Result<Schema, Box<dyn std::error::Error>> {
    let snapshot = store.snapshot();
    let mut attributes: BTreeMap<(String, String), (Vec<&'static str>, u64, u64)> = BTreeMap::new();
    for part in snapshot.parts()? {
        for column in &part.segment().directory().columns {
            if let ColumnKind::Attr { scope, key, value_type } = &column.kind {
                let scope = match scope {
                    AttrScope::Span => "span",
                    AttrScope::Resource => "resource",
                };
                let entry = attributes.entry((scope.to_owned(), key.clone())).or_default();
                if !entry.0.contains(&value_type.as_str()) {
                    entry.0.push(value_type.as_str());
                }
                entry.1 = entry.1.max(column.cardinality);
                entry.2 += column.present;
            }
        }
    }
    Ok(Schema { attributes, spans: snapshot.span_count() })
}

struct ShellHelper {
    words: Vec<String>,
}

impl Completer for ShellHelper {
    type Candidate = Pair;

    fn complete(&self, line: &str, pos: usize, _: &Context<'_>) -> rustyline::Result<(usize, Vec<Pair>)> {
        let before = line.get(..pos).unwrap_or(line);
        let start = before.rfind(|c: char| c.is_whitespace() || c == '(' || c == ',').map(|i| i + 1).unwrap_or(0);
        let word = before.get(start..).unwrap_or("");
        if word.is_empty() {
            return Ok((pos, Vec::new()));
        }
        let lower = word.to_lowercase();
        let mut matches: Vec<Pair> = self
            .words
            .iter()
            .filter(|w| w.to_lowercase().starts_with(&lower))
            .map(|w| Pair { display: w.clone(), replacement: w.clone() })
            .collect();
        matches.dedup_by(|a, b| a.replacement == b.replacement);
        Ok((start, matches))
    }
}

impl Hinter for ShellHelper {
    type Hint = String;
}

impl Highlighter for ShellHelper {}

impl Validator for ShellHelper {}

impl Helper for ShellHelper {}

fn history_path() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("SPANSTORE_HISTORY") {
        return Some(PathBuf::from(path));
    }
    std::env::var_os("HOME").map(|home| Path::new(&home).join(".spanstore_history"))
}

fn terminal_width() -> usize {
    std::env::var("COLUMNS").ok().and_then(|c| c.parse().ok()).filter(|&w| w >= 20).unwrap_or(120)
}

const HELP: &str = "\
Type a SpanQL query ending with ';' (it may span lines), or a command:
  .help              this text
  .schema            fields and attribute keys, with types and approximate cardinality
  .timing on|off     show how long each query took
  .quit              leave (also Ctrl-D)
Examples:
  SELECT count(*) FROM spans FACET service;
  SELECT percentile(duration, 50, 95, 99) FROM spans WHERE faas.coldstart = true FACET faas.name;
  SELECT filter(count(*), WHERE status = 'error') / count(*) FROM spans FACET cloud.availability_zone TIMESERIES AUTO;
  TRACE '4bf92f3577b34da6a3ce929d0e0e4736';
Tab completes keywords, fields and attribute keys. The language: docs/QUERY.md.";

/// Runs the shell on the store in `data`; returns the exit code.
pub fn run(data: &Path, out: &mut impl Write) -> Result<i32, Box<dyn std::error::Error>> {
    let store = Store::open_read_only(data, spanstore_engine::Options::default())?;
    let mut schema_now = schema(&store)?;
    let mut words: Vec<String> = spanstore_query::parser::RESERVED
        .iter()
        .chain(EXTRA_WORDS.iter())
        .chain(INTRINSICS.iter())
        .map(|w| (*w).to_owned())
        .chain(spanstore_query::parser::FUNCTIONS.iter().map(|f| format!("{f}(")))
        .collect();
    for (scope, key) in schema_now.attributes.keys() {
        words.push(key.clone());
        words.push(format!("{scope}.{key}"));
    }
    words.sort();
    words.dedup();
    let mut editor: Editor<ShellHelper, FileHistory> = Editor::new()?;
    editor.set_helper(Some(ShellHelper { words }));
    let history = history_path();
    if let Some(path) = &history {
        // A missing history file is normal on first use.
        let _ = editor.load_history(path);
    }
    writeln!(
        out,
        "spanstore shell on {} ({} spans). .help for help, .quit to leave.",
        data.display(),
        schema_now.spans
    )?;
    let mut timing = false;
    let mut buffer = String::new();
    loop {
        let prompt = if buffer.is_empty() { "spanql> " } else { "   ...> " };
        let line = match editor.readline(prompt) {
            Ok(line) => line,
            Err(rustyline::error::ReadlineError::Interrupted) => {
                buffer.clear();
                continue;
            }
            Err(rustyline::error::ReadlineError::Eof) => break,
            Err(err) => return Err(Box::new(err)),
        };
        let trimmed = line.trim();
        if buffer.is_empty() && trimmed.starts_with('.') {
            let _ = editor.add_history_entry(trimmed);
            let mut parts = trimmed.split_whitespace();
            match (parts.next(), parts.next()) {
                (Some(".quit" | ".exit"), _) => break,
                (Some(".help"), _) => writeln!(out, "{HELP}")?,
                (Some(".timing"), Some("on")) => {
                    timing = true;
                    writeln!(out, "timing on")?;
                }
                (Some(".timing"), Some("off")) => {
                    timing = false;
                    writeln!(out, "timing off")?;
                }
                (Some(".schema"), _) => {
                    schema_now = schema(&store)?;
                    print_schema(&schema_now, out)?;
                }
                (Some(other), _) => writeln!(out, "unknown command {other}; .help lists the commands")?,
                (None, _) => {}
            }
            continue;
        }
        if trimmed.is_empty() && buffer.is_empty() {
            continue;
        }
        if !buffer.is_empty() {
            buffer.push('\n');
        }
        buffer.push_str(&line);
        if !trimmed.ends_with(';') {
            continue;
        }
        let text = std::mem::take(&mut buffer);
        let _ = editor.add_history_entry(text.as_str());
        let statement_text = text.trim().trim_end_matches(';');
        let started = Instant::now();
        match spanstore_query::parse(statement_text) {
            Err(err) => {
                writeln!(out, "error: {err}")?;
                if let Some(caret) = err.caret(statement_text) {
                    writeln!(out, "{caret}")?;
                }
            }
            Ok(statement) => {
                // Each query sees everything appended by a writer up to now.
                let store_now = Store::open_read_only(data, spanstore_engine::Options::default())?;
                let options = spanstore_query::ExecOptions {
                    now_unix_nano: crate::now_unix_nano(),
                    cancel: None,
                    ..Default::default()
                };
                match spanstore_query::execute(&store_now.snapshot(), &statement, &options) {
                    Ok(result) => format::print_result_width(&result, terminal_width(), out)?,
                    Err(err) => writeln!(out, "error: {err}")?,
                }
            }
        }
        if timing {
            writeln!(out, "time: {:.1} ms", started.elapsed().as_secs_f64() * 1e3)?;
        }
    }
    if let Some(path) = &history {
        let _ = editor.save_history(path);
    }
    Ok(0)
}

fn print_schema(schema: &Schema, out: &mut impl Write) -> std::io::Result<()> {
    let mut table = format::Table::new(&["field", "type", "distinct (approx)", "spans with it"]);
    for name in INTRINSICS {
        let kind = match name {
            "start" | "end" => "timestamp",
            "duration" => "duration",
            "trace_id" | "span_id" | "parent_span_id" => "id",
            "kind" | "status" => "enum",
            _ => "string",
        };
        table.row(vec![name.to_owned(), kind.to_owned(), String::new(), String::new()]);
    }
    for ((scope, key), (types, distinct, present)) in &schema.attributes {
        table.row(vec![format!("{scope}.{key}"), types.join("|"), distinct.to_string(), present.to_string()]);
    }
    table.print(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tab_completes_keywords_fields_and_attribute_keys() {
        let helper = ShellHelper {
            words: ["SELECT", "service", "http.route", "span.http.route", "percentile("].map(String::from).to_vec(),
        };
        let history = FileHistory::new();
        let context = Context::new(&history);
        let (start, pairs) = helper.complete("sel", 3, &context).unwrap();
        assert_eq!((start, pairs[0].replacement.as_str()), (0, "SELECT"));
        let line = "SELECT count(*) FROM spans FACET http.r";
        let (start, pairs) = helper.complete(line, line.len(), &context).unwrap();
        assert_eq!(start, line.len() - "http.r".len());
        assert_eq!(pairs.iter().map(|p| p.replacement.as_str()).collect::<Vec<_>>(), ["http.route"]);
        let line = "SELECT perc";
        let (_, pairs) = helper.complete(line, line.len(), &context).unwrap();
        assert_eq!(pairs[0].replacement, "percentile(");
        assert!(helper.complete("SELECT ", 7, &context).unwrap().1.is_empty());
    }
}
