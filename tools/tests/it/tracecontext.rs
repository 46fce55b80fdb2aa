//! `spanstore traceparent`, `spanstore tracestate`, and finding spans by AWS X-Ray trace id.

use std::path::Path;
use std::process::Command;

use serde_json::{json, Value};
use spanstore_engine::{Options, Span, SpanBatch, SpanId, Store, TraceId};

/// Runs the binary without a data directory argument: the header commands need none.
fn run(args: &[&str]) -> (i32, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_spanstore")).args(args).output().unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Runs a header command and returns its exit code and its one line of JSON.
fn json_of(args: &[&str]) -> (i32, Value) {
    let (code, out, err) = run(args);
    assert!(err.is_empty(), "{args:?}: {err}");
    assert_eq!(out.lines().count(), 1, "{args:?}: one JSON object on one line, got {out:?}");
    let value: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: {e}: {out:?}"));
    (code, value)
}

const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

#[test]
fn traceparent_prints_the_fields_of_a_valid_header() {
    let (code, value) = json_of(&["traceparent", TRACEPARENT]);
    assert_eq!(code, 0);
    assert_eq!(
        value,
        json!({"valid": true, "version": "00", "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
               "parent_id": "00f067aa0ba902b7", "flags": "01", "sampled": true})
    );
    // The exact text, fields in the documented order.
    let (_, out, _) = run(&["traceparent", TRACEPARENT]);
    assert_eq!(
        out,
        "{\"valid\": true, \"version\": \"00\", \"trace_id\": \"4bf92f3577b34da6a3ce929d0e0e4736\", \
         \"parent_id\": \"00f067aa0ba902b7\", \"flags\": \"01\", \"sampled\": true}\n"
    );
    // Not sampled; a higher version with more fields; the header after `--`.
    let (code, value) = json_of(&["traceparent", "--", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"]);
    assert_eq!((code, &value["sampled"], &value["flags"]), (0, &json!(false), &json!("00")));
    let (code, value) = json_of(&[
        "traceparent",
        "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-09-what-the-future-will-be-like",
    ]);
    assert_eq!(
        (code, &value["version"], &value["flags"], &value["sampled"]),
        (0, &json!("cc"), &json!("09"), &json!(true))
    );
}

#[test]
fn traceparent_rejects_invalid_headers_with_exit_1() {
    let cases = [
        ("ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "traceparent at position 0: version ff is invalid"),
        (
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "traceparent at position 4: expected one of the trace-id's 32 lowercase hex digits, found 'B'",
        ),
        (
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "traceparent at position 3: the trace-id is all zeros, which is invalid",
        ),
        (
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "traceparent at position 36: the parent-id is all zeros, which is invalid",
        ),
        (
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "traceparent at position 55: expected the end of the header (version 00 is 55 characters), found '-'",
        ),
        ("", "traceparent at position 0: expected one of the version's 2 lowercase hex digits, found the end of the header"),
    ];
    for (header, error) in cases {
        let (code, value) = json_of(&["traceparent", "--", header]);
        assert_eq!(code, 1, "{header:?}");
        assert_eq!(value, json!({"valid": false, "error": error}), "{header:?}");
    }
}

#[test]
fn headers_starting_with_a_dash_go_after_double_dash() {
    let (code, value) = json_of(&["traceparent", "--", "-abc"]);
    assert_eq!(code, 1);
    assert_eq!(
        value["error"],
        json!("traceparent at position 0: expected one of the version's 2 lowercase hex digits, found '-'")
    );
    let (code, value) = json_of(&["tracestate", "--", "-a=1"]);
    assert_eq!(code, 1);
    assert_eq!(value["valid"], json!(false));
    // `--help` still asks for help, and a missing header is a usage error (exit 2).
    let (code, out, _) = run(&["traceparent", "--help"]);
    assert_eq!(code, 0);
    assert!(out.contains("Usage: spanstore traceparent"), "{out}");
    let (code, _, err) = run(&["tracestate"]);
    assert_eq!(code, 2);
    assert!(err.contains("<HEADER>"), "{err}");
}

#[test]
fn tracestate_prints_members_in_order() {
    let (code, value) = json_of(&["tracestate", "rojo=00f067aa0ba902b7, congo=t61rcWkgMzE,,tenant@sys= v"]);
    assert_eq!(code, 0);
    assert_eq!(
        value,
        json!({"valid": true, "members": [["rojo", "00f067aa0ba902b7"], ["congo", "t61rcWkgMzE"], ["tenant@sys", " v"]]})
    );
    let (_, out, _) = run(&["tracestate", "a=1,b=2"]);
    assert_eq!(out, "{\"valid\": true, \"members\": [[\"a\", \"1\"], [\"b\", \"2\"]]}\n");
    // An empty header is valid and has no members.
    let (code, value) = json_of(&["tracestate", ""]);
    assert_eq!((code, value), (0, json!({"valid": true, "members": []})));
}

#[test]
fn tracestate_rejects_invalid_headers_with_exit_1() {
    let thirty_three = (1..=33).map(|i| format!("k{i}=v")).collect::<Vec<_>>().join(",");
    let cases = [
        ("foo=1,foo=2".to_string(), "tracestate at position 6: key 'foo' appears a second time (first at position 0), duplicate keys are invalid"),
        ("FOO=1".to_string(), "tracestate at position 0: expected a key (starting with a lowercase letter or digit), found 'F'"),
        ("foo=bar=baz".to_string(), "tracestate at position 7: expected a value character (printable ASCII other than ',' and '='), found '='"),
        (thirty_three.clone(), "tracestate at position 183: list member 33 is one too many, at most 32 are allowed"),
    ];
    for (header, error) in cases {
        let (code, value) = json_of(&["tracestate", "--", &header]);
        assert_eq!(code, 1, "{header:?}");
        assert_eq!(value, json!({"valid": false, "error": error}), "{header:?}");
    }
}

fn store_with_xray_trace(dir: &Path) -> TraceId {
    let trace_id = TraceId::from_hex("5759e988bd862e3fe1be46a994272793").unwrap();
    let spans: Vec<Span> = (0..3u64)
        .map(|i| Span {
            trace_id: if i < 2 { trace_id } else { TraceId([7; 16]) },
            span_id: SpanId((i + 1).to_be_bytes()),
            name: format!("lambda-{i}"),
            start_unix_nano: 1_795_698_000_000_000_000 + i * 1_000,
            duration_ns: 500,
            ..Span::default()
        })
        .collect();
    let store = Store::open(dir, Options::default()).unwrap();
    store.append(SpanBatch::from_spans(&spans)).unwrap();
    store.close().unwrap();
    trace_id
}

#[test]
fn spans_are_found_by_their_xray_trace_id() {
    let dir = tempfile::tempdir().unwrap();
    let trace_id = store_with_xray_trace(dir.path());
    let data = dir.path().to_str().unwrap();
    let xray = "1-5759e988-bd862e3fe1be46a994272793";

    let (code, out, err) = run(&["--data", data, "trace", xray]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with(&format!("trace {trace_id} — 2 spans")), "{out}");

    let (code, out, err) = run(&["--data", data, "query", &format!("TRACE '{xray}'"), "--format", "csv"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("lambda-0") && out.contains("lambda-1") && !out.contains("lambda-2"), "{out}");

    let query = format!("SELECT count(*) FROM spans WHERE trace_id = '{xray}'");
    let (code, out, err) = run(&["--data", data, "query", &query, "--format", "csv"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.lines().last(), Some("2"), "{out}");

    // A malformed X-Ray id is an error naming where.
    let (code, _, err) = run(&["--data", data, "trace", "1-5759e988-bd862e3fe1be46a99427279"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("x-ray trace id at position 34: expected a lowercase hex digit of the 24-digit unique part, found the end of the id"),
        "{err}"
    );
}
