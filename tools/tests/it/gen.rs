//! `spanstore gen` as a user runs it: the same bytes for the same arguments whatever the
//! thread count, lines that decode as OTLP/JSON, the time range, the planted anomalies
//! found after `spanstore ingest`, and refused arguments.

use std::path::Path;
use std::process::{Command, Stdio};

use spanstore_workload as workload;

fn gen(args: &[&str]) -> (i32, Vec<u8>, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_spanstore")).arg("gen").args(args).output().unwrap();
    (output.status.code().unwrap_or(-1), output.stdout, String::from_utf8_lossy(&output.stderr).into_owned())
}

fn gen_file(dir: &Path, name: &str, args: &[&str]) -> Vec<u8> {
    let path = dir.join(name);
    let mut all = args.to_vec();
    let path_text = path.to_str().unwrap().to_owned();
    all.extend(["--out", &path_text]);
    let (code, _, err) = gen(&all);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains(" spans in "), "a summary on stderr: {err}");
    std::fs::read(path).unwrap()
}

#[test]
fn gen_writes_the_same_bytes_for_any_thread_count() {
    let dir = tempfile::tempdir().unwrap();
    // 45,000 spans: three chunks, so threads really interleave.
    let args = ["--spans", "45000", "--seed", "9", "--hours", "3"];
    let one = gen_file(dir.path(), "one.jsonl", &[&args[..], &["--threads", "1"]].concat());
    let three = gen_file(dir.path(), "three.jsonl", &[&args[..], &["--threads", "3"]].concat());
    assert!(one == three, "1 and 3 threads wrote different bytes");
    let (code, stdout, err) = gen(&args);
    assert_eq!(code, 0, "{err}");
    assert!(stdout == one, "stdout differs from the file");
    assert!(err.is_empty(), "nothing on stderr when writing to stdout: {err}");
    let other = gen_file(dir.path(), "other.jsonl", &["--spans", "45000", "--seed", "10", "--hours", "3"]);
    assert!(other != one, "another seed wrote the same bytes");
}

#[test]
fn gen_lines_decode_as_otlp_json_within_the_time_range() {
    let (code, stdout, err) =
        gen(&["--spans", "12345", "--seed", "4", "--start", "2026-03-01T06:00:00+01:00", "--hours", "2"]);
    assert_eq!(code, 0, "{err}");
    let start = spanstore_query::parse_rfc3339("2026-03-01T05:00:00Z").unwrap() as u64;
    let end = start + 2 * 3600 * 1_000_000_000;
    let text = String::from_utf8(stdout).unwrap();
    let mut spans = 0;
    let mut traces = std::collections::HashSet::new();
    let lines: Vec<&str> = text.lines().collect();
    for (index, line) in lines.iter().enumerate() {
        let decoded = spanstore_ingest::otlp_json::decode_json(line.as_bytes())
            .unwrap_or_else(|err| panic!("line {}: {err}", index + 1));
        assert_eq!(decoded.rejected_spans, 0, "line {}: {:?}", index + 1, decoded.first_rejection);
        let batch = decoded.batch;
        assert!(batch.len() >= workload::LINE_SPANS, "line {} has {} spans", index + 1, batch.len());
        assert!(batch.len() <= 3 * workload::LINE_SPANS, "line {} has {} spans", index + 1, batch.len());
        for row in 0..batch.len() {
            let t = batch.start_unix_nano(row);
            assert!((start..end).contains(&t) || batch.parent_span_id(row).is_some(), "a request at {t}");
            traces.insert(batch.trace_id(row));
        }
        // Grouped by resource: far fewer resources than spans.
        let json: serde_json::Value = serde_json::from_str(line).unwrap();
        let resources = json["resourceSpans"].as_array().unwrap().len();
        assert!(resources * 5 < batch.len(), "line {}: {resources} resources for {} spans", index + 1, batch.len());
        spans += batch.len();
    }
    assert_eq!(spans, 12345);
    assert!(traces.len() > 2000, "{} traces", traces.len());
}

#[test]
fn gen_then_ingest_shows_both_anomalies() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let file = dir.path().join("spans.jsonl");
    let file_text = file.to_str().unwrap();
    gen_file(dir.path(), "spans.jsonl", &["--spans", "150000", "--seed", "2", "--hours", "6"]);
    let output = Command::new(env!("CARGO_BIN_EXE_spanstore"))
        .arg("--data")
        .arg(&data)
        .args(["ingest", file_text])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let query = |text: &str| {
        let output = Command::new(env!("CARGO_BIN_EXE_spanstore"))
            .arg("--data")
            .arg(&data)
            .args(["query", "--format", "csv", text])
            .output()
            .unwrap();
        assert!(output.status.success(), "{text}: {}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8(output.stdout).unwrap()
    };
    assert_eq!(query("SELECT count(*) FROM spans").lines().nth(1), Some("150000"));

    // The subnet with the most failed PutItem calls is the planted one.
    let csv = query(
        "SELECT count(*) AS failed FROM spans WHERE name = 'DynamoDB.PutItem' AND status = 'error' \
         FACET cloud.availability_zone, net.subnet.id ORDER BY failed DESC LIMIT 2",
    );
    let first = csv.lines().nth(1).unwrap_or("");
    assert!(first.contains(workload::ANOMALY_SUBNET) && first.contains(workload::ANOMALY_ZONE), "{csv}");

    // The slow route's p50 by version: the new one about five times the old.
    let csv = query(&format!(
        "SELECT percentile(duration, 50) AS p50 FROM spans WHERE faas.name = '{}' AND http.route = '{}' \
         FACET faas.version ORDER BY p50 DESC",
        workload::SLOW_FUNCTION,
        workload::SLOW_ROUTE
    ));
    let rows: Vec<(String, f64)> = csv
        .lines()
        .skip(1)
        .map(|line| {
            let (version, p50) = line.split_once(',').unwrap();
            (version.to_owned(), p50.parse().unwrap_or_else(|_| panic!("{line}")))
        })
        .collect();
    assert_eq!(rows.len(), 2, "{csv}");
    assert_eq!(rows[0].0, workload::SLOW_VERSION, "{csv}");
    let ratio = rows[0].1 / rows[1].1;
    assert!((4.0..6.0).contains(&ratio), "{csv}");
}

#[test]
fn gen_refuses_bad_arguments() {
    for args in [
        &["--hours", "0"][..],
        &["--hours", "-1"],
        &["--hours", "lots"],
        &["--start", "2026-11-26T10:00:00"],
        &["--start", "1969-12-31T00:00:00Z"],
    ] {
        let (code, stdout, err) = gen(args);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(stdout.is_empty());
        assert!(err.contains(args[1]), "{args:?}: {err}");
    }
    let (code, _, err) = gen(&["--spans", "10", "--hours", "3000000"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("2262"), "{err}");
}
