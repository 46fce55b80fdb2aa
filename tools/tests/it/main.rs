//! Integration tests of the `spanstore` binary: runs it as a user would.

mod demo;
mod gen;
mod ingest;
mod serve;
mod tracecontext;

use std::path::Path;
use std::process::Command;

use spanstore_engine::{AnyValue, KeyValue, Options, Span, SpanBatch, SpanId, Store, TraceId};

fn spanstore(data: &Path, args: &[&str]) -> (i32, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_spanstore")).arg("--data").arg(data).args(args).output().unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn fill(dir: &Path, batches: u64, seal_on_close: bool) {
    let options = Options { seal_on_close, ..Options::default() };
    let store = Store::open(dir, options).unwrap();
    for b in 0..batches {
        let spans: Vec<Span> = (0..50u64)
            .map(|i| Span {
                trace_id: TraceId([b as u8; 16]),
                span_id: SpanId((b * 1000 + i + 1).to_le_bytes()),
                name: format!("op-{i}"),
                start_unix_nano: 1_795_698_000_000_000_000 + b * 1_000_000 + i,
                duration_ns: 1000 + i,
                attributes: vec![KeyValue::new("k", AnyValue::Int(i as i64))],
                ..Span::default()
            })
            .collect();
        store.append(SpanBatch::from_spans(&spans)).unwrap();
    }
    store.close().unwrap();
}

#[test]
fn verify_passes_a_clean_store_and_names_damage() {
    let dir = tempfile::tempdir().unwrap();
    fill(dir.path(), 20, false);
    let (code, out, err) = spanstore(dir.path(), &["verify"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("every checksum matches"), "{out}");

    // Flip a bit in the middle of the first log file: verify names the file and offset.
    let log = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "sslog"))
        .unwrap();
    let mut bytes = std::fs::read(&log).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    std::fs::write(&log, &bytes).unwrap();
    let (code, out, _) = spanstore(dir.path(), &["verify"]);
    assert_eq!(code, 1, "{out}");
    let damage = out.lines().find(|l| l.starts_with("damage: ")).unwrap();
    assert!(damage.contains(&log.display().to_string()), "{damage}");
    assert!(damage.contains("corrupt at byte "), "{damage}");
}

#[test]
fn inspect_counts_spans_and_data_dir_comes_from_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    fill(dir.path(), 3, true);
    let output = Command::new(env!("CARGO_BIN_EXE_spanstore"))
        .arg("inspect")
        .env("SPANSTORE_DATA", dir.path())
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{out}");
    assert!(out.contains("spans: 150 (150 sealed in segments, 0 only in the log)"), "{out}");
    assert!(out.contains("segment bytes per span: "), "{out}");
    assert!(out.contains("(bitmap indexes)"), "{out}");
    assert!(out.contains("2026-11-26T13:00:00.000000000Z"), "{out}");
}

#[test]
fn data_flag_works_after_the_subcommand_and_missing_dirs_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope");
    let output =
        Command::new(env!("CARGO_BIN_EXE_spanstore")).args(["verify", "--data"]).arg(&missing).output().unwrap();
    assert_eq!(output.status.code(), Some(1));
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(err.contains("no spanstore data directory here"), "{err}");
}

#[test]
fn verify_names_a_damaged_segment_block() {
    let dir = tempfile::tempdir().unwrap();
    fill(dir.path(), 20, true);
    let (code, out, _) = spanstore(dir.path(), &["verify"]);
    assert_eq!(code, 0, "{out}");
    let segment = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "sseg"))
        .unwrap();
    let mut bytes = std::fs::read(&segment).unwrap();
    // Byte 40 lies in the first column block (the header is 16 bytes).
    bytes[40] ^= 0x01;
    std::fs::write(&segment, &bytes).unwrap();
    let (code, out, _) = spanstore(dir.path(), &["verify"]);
    assert_eq!(code, 1, "{out}");
    let damage = out.lines().find(|l| l.starts_with("damage: ")).unwrap();
    assert!(damage.contains(&segment.display().to_string()), "{damage}");
    assert!(damage.contains("checksum mismatch"), "{damage}");
}

#[test]
fn query_prints_json_csv_and_tables_and_explains_syntax_errors() {
    let dir = tempfile::tempdir().unwrap();
    fill(dir.path(), 3, true);
    let (code, out, err) =
        spanstore(dir.path(), &["query", "SELECT count(*) FROM spans WHERE k >= 48 FACET name", "--format", "json"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.trim(), r#"{"columns":["name","count(*)"],"rows":[["op-48",3],["op-49",3]]}"#);
    let (code, out, _) =
        spanstore(dir.path(), &["query", "SELECT count(*), max(duration) FROM spans", "--format", "csv"]);
    assert_eq!(code, 0);
    assert_eq!(out, "count(*),max(duration)\n150,1049\n");
    let (code, out, _) = spanstore(dir.path(), &["query", "SELECT max(duration) FROM spans FACET name LIMIT 1"]);
    assert_eq!(code, 0);
    assert!(out.contains("op-49  1.0µs"), "{out}");
    let (code, _, err) = spanstore(dir.path(), &["query", "SELECT count(*) FROM spans FACET , name"]);
    assert_eq!(code, 2);
    assert!(err.contains("line 1, column 34: expected a field after FACET, found ','"), "{err}");
    assert!(err.contains("                                 ^"), "{err}");
}

#[test]
fn trace_prints_the_tree() {
    let dir = tempfile::tempdir().unwrap();
    fill(dir.path(), 2, true);
    let id = TraceId([1; 16]).to_hex();
    let (code, out, err) = spanstore(dir.path(), &["trace", &id]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with(&format!("trace {id} — 50 spans")), "{out}");
    assert_eq!(out.lines().count(), 51, "{out}");
    let (code, _, err) = spanstore(dir.path(), &["trace", "xyz"]);
    assert_eq!(code, 1);
    assert!(err.contains("trace id: expected 32 hex digits, found 3"), "{err}");
}

/// Drives `spanstore shell` as a person would, under a pseudo-terminal (`script` gives
/// it one): commands, a multi-line query, an error, timing, history.
#[test]
fn shell_works_under_a_pseudo_terminal() {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().unwrap();
    fill(dir.path(), 3, true);
    let history = dir.path().join("history");
    let command = format!("{} --data {} shell", env!("CARGO_BIN_EXE_spanstore"), dir.path().display());
    let mut child = Command::new("script")
        .args(["-qfec", &command, "/dev/null"])
        .env("SPANSTORE_HISTORY", &history)
        .env("COLUMNS", "100")
        .env("TERM", "dumb")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    for line in [
        ".help",
        ".schema",
        ".timing on",
        "SELECT count(*)",
        "  FROM spans FACET name LIMIT 2;",
        "SELECT count(*) FROM spans FACET , name;",
        ".quit",
    ] {
        stdin.write_all(line.as_bytes()).unwrap();
        stdin.write_all(b"\r").unwrap();
        stdin.flush().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(150));
    }
    let mut out = String::new();
    child.stdout.take().unwrap().read_to_string(&mut out).unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "{out}");
    assert!(out.contains("spanstore shell on"), "{out}");
    assert!(out.contains("Type a SpanQL query ending with ';'"), "{out}");
    assert!(out.contains("span.k"), "{out}");
    assert!(out.contains("timing on"), "{out}");
    assert!(out.contains("name   count(*)") || out.contains("name  count(*)"), "{out}");
    assert!(out.contains("(2 rows)"), "{out}");
    assert!(out.contains("error: line 1, column 34: expected a field after FACET, found ','"), "{out}");
    assert!(out.contains("time: "), "{out}");
    let saved = std::fs::read_to_string(&history).unwrap();
    assert!(saved.contains("FROM spans FACET name LIMIT 2;"), "{saved}");
}
