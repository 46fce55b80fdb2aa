//! `spanstore ingest` and `spanstore export`: every input format, gzip, stdin, rejected
//! lines, `--strict`, malformed payloads, export filters, and ingest → export → ingest
//! giving the same stored spans (a property test over arbitrary spans).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use proptest::prelude::*;
use spanstore_engine::{
    AnyValue, Event, KeyValue, Link, Options, Resource, Scope, Span, SpanBatch, SpanId, SpanKind, StatusCode, Store,
    TraceId,
};
use spanstore_ingest::{otlp, otlp_json};

const T0: u64 = 1_795_698_000_000_000_000; // 2026-11-26T13:00:00Z

/// Runs the binary with `stdin` as its input.
fn run(data: &Path, args: &[&str], stdin: &[u8]) -> (i32, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_spanstore"))
        .arg("--data")
        .arg(data)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    let bytes = stdin.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(&bytes);
    });
    let output = child.wait_with_output().unwrap();
    writer.join().unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Every span of a store, in a canonical order.
fn stored(data: &Path) -> Vec<Span> {
    if !data.exists() {
        return Vec::new();
    }
    let store = Store::open_read_only(data, Options::default()).unwrap();
    sorted(store.snapshot().spans().unwrap())
}

fn sorted(mut spans: Vec<Span>) -> Vec<Span> {
    spans.sort_by_cached_key(|s| format!("{s:?}"));
    spans
}

/// A few spans with every kind of field set: two resources, scopes with attributes,
/// nested values, events, links.
fn sample(trace: u8, count: u64) -> Vec<Span> {
    (0..count)
        .map(|i| Span {
            trace_id: TraceId([trace; 16]),
            span_id: SpanId((u64::from(trace) << 32 | (i + 1)).to_be_bytes()),
            parent_span_id: (i > 0).then(|| SpanId((u64::from(trace) << 32 | 1).to_be_bytes())),
            trace_state: if i % 2 == 0 { "k=v".into() } else { String::new() },
            name: format!("op-{}", i % 3),
            kind: SpanKind::ALL[(i % 6) as usize],
            start_unix_nano: T0 + u64::from(trace) * 1_000_000_000 + i * 1000,
            duration_ns: 500 + i,
            status_code: if i % 5 == 0 { StatusCode::Error } else { StatusCode::Ok },
            status_message: if i % 5 == 0 { "boom".into() } else { String::new() },
            flags: 0x301,
            resource: Resource {
                attributes: vec![
                    KeyValue::new("service.name", if i % 2 == 0 { "checkout" } else { "cart" }),
                    KeyValue::new("cloud.region", "eu-west-1"),
                ],
                dropped_attributes_count: 0,
                schema_url: "https://opentelemetry.io/schemas/1.26.0".into(),
            },
            scope: Scope { name: "lib".into(), version: "1.0".into(), ..Scope::default() },
            attributes: vec![
                KeyValue::new("i", i as i64),
                KeyValue::new("f", -0.0),
                KeyValue::new("nan", f64::NAN),
                KeyValue::new("b", i % 2 == 0),
                KeyValue { key: "bytes".into(), value: AnyValue::Bytes(vec![0, 1, 255]) },
                KeyValue { key: "empty".into(), value: AnyValue::Empty },
                KeyValue {
                    key: "nested".into(),
                    value: AnyValue::Array(vec![
                        AnyValue::Int(1),
                        AnyValue::Str("x".into()),
                        AnyValue::Map(vec![KeyValue::new("k", true)]),
                    ]),
                },
            ],
            events: vec![Event {
                time_unix_nano: T0 + i,
                name: "exception".into(),
                attributes: vec![KeyValue::new("exception.type", "E")],
                dropped_attributes_count: 1,
            }],
            links: vec![Link {
                trace_id: TraceId([9; 16]),
                span_id: SpanId([9; 8]),
                trace_state: "a=b".into(),
                attributes: vec![KeyValue::new("l", 1i64)],
                dropped_attributes_count: 0,
                flags: 1,
            }],
            ..Span::default()
        })
        .collect()
}

fn json_line(spans: &[Span]) -> Vec<u8> {
    let mut out = Vec::new();
    otlp_json::encode_json(&SpanBatch::from_spans(spans), &mut out);
    out.push(b'\n');
    out
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

fn framed(requests: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    for body in requests {
        out.extend_from_slice(&(body.len() as u32).to_be_bytes());
        out.extend_from_slice(body);
    }
    out
}

/// What a store holds after `spans` went in through any lossless path.
fn expected(spans: &[Span]) -> Vec<Span> {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Options::default()).unwrap();
    store.append(SpanBatch::from_spans(spans)).unwrap();
    store.close().unwrap();
    stored(dir.path())
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

#[test]
fn ingest_reads_every_otlp_shape_plain_and_gzipped() {
    let dir = tempfile::tempdir().unwrap();
    let a = sample(1, 40);
    let b = sample(2, 300);
    let c = sample(3, 7);
    let all: Vec<Span> = a.iter().chain(&b).chain(&c).cloned().collect();
    let want = expected(&all);
    let lines = [json_line(&a), json_line(&b), b"\n".to_vec(), json_line(&c)].concat();
    let mut whole = Vec::new();
    otlp_json::encode_json(&SpanBatch::from_spans(&all), &mut whole);
    let requests: Vec<Vec<u8>> =
        [&a, &b, &c].iter().map(|s| otlp::encode_protobuf(&SpanBatch::from_spans(s.iter()))).collect();
    let single = otlp::encode_protobuf(&SpanBatch::from_spans(&all));
    let inputs: Vec<(&str, Vec<u8>)> = vec![
        ("lines.jsonl", lines.clone()),
        ("lines.json", lines.clone()),
        ("whole.json", whole.clone()),
        ("one.pb", single.clone()),
        ("framed.pb", framed(&requests)),
        ("framed.bin", framed(&requests)),
        ("lines.jsonl.gz", gzip(&lines)),
        ("whole.json.gz", gzip(&whole)),
        ("one.pb.gz", gzip(&single)),
        ("framed.gz", gzip(&framed(&requests))),
    ];
    for (name, bytes) in inputs {
        let path = write(dir.path(), name, &bytes);
        let data = dir.path().join(format!("store-{name}"));
        let (code, out, err) = run(&data, &["ingest", path.to_str().unwrap()], b"");
        assert_eq!(code, 0, "{name}: {out}{err}");
        assert!(out.contains("ingested 347 spans"), "{name}: {out}");
        assert!(out.contains("rejected 0 payloads"), "{name}: {out}");
        assert_eq!(stored(&data), want, "{name}");
        // Closing sealed everything: no span is left only in the log.
        let store = Store::open_read_only(&data, Options::default()).unwrap();
        assert_eq!(store.snapshot().sealed_span_count(), 347, "{name}");
    }
}

#[test]
fn ingest_reads_stdin_and_format_overrides_detection() {
    let dir = tempfile::tempdir().unwrap();
    let spans = sample(4, 20);
    let want = expected(&spans);
    let data = dir.path().join("a");
    let (code, out, err) = run(&data, &["ingest", "-"], &gzip(&json_line(&spans)));
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(stored(&data), want);

    let data = dir.path().join("b");
    let body = framed(&[otlp::encode_protobuf(&SpanBatch::from_spans(&spans))]);
    let (code, out, err) = run(&data, &["ingest", "-"], &body);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(stored(&data), want);

    // A protobuf file named .json: detection alone would be wrong about nothing here
    // (content wins), and --format says it outright.
    let path = write(dir.path(), "odd.json", &otlp::encode_protobuf(&SpanBatch::from_spans(&spans)));
    let data = dir.path().join("c");
    let (code, out, err) = run(&data, &["ingest", "--format", "otlp-protobuf", path.to_str().unwrap()], b"");
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(stored(&data), want);
    // The wrong --format rejects the file, naming it.
    let data = dir.path().join("d");
    let (code, _, err) = run(&data, &["ingest", "--format", "zipkin", path.to_str().unwrap()], b"");
    assert_eq!(code, 1);
    assert!(err.contains("odd.json: "), "{err}");
    assert!(stored(&data).is_empty());
}

#[test]
fn ingest_reads_zipkin_json() {
    let dir = tempfile::tempdir().unwrap();
    let body = br#"[
      {"traceId":"4bf92f3577b34da6a3ce929d0e0e4736","id":"00f067aa0ba902b7","name":"get /api",
       "timestamp":1795698000000000,"duration":1500,"kind":"SERVER",
       "localEndpoint":{"serviceName":"frontend","ipv4":"10.0.0.1"},
       "tags":{"http.method":"GET","error":"timeout"},
       "annotations":[{"timestamp":1795698000000100,"value":"retry"}]},
      {"traceId":"4bf92f3577b34da6a3ce929d0e0e4736","id":"00f067aa0ba902b8","parentId":"00f067aa0ba902b7",
       "name":"select","timestamp":1795698000000200,"duration":700,"kind":"CLIENT",
       "localEndpoint":{"serviceName":"frontend"}}
    ]"#;
    let path = write(dir.path(), "zipkin.json", body);
    let data = dir.path().join("store");
    let (code, out, err) = run(&data, &["ingest", path.to_str().unwrap()], b"");
    assert_eq!(code, 0, "{out}{err}");
    let spans = stored(&data);
    assert_eq!(spans.len(), 2);
    let root = spans.iter().find(|s| s.name == "get /api").unwrap();
    assert_eq!(root.service(), Some("frontend"));
    assert_eq!(root.kind, SpanKind::Server);
    assert_eq!(root.status_code, StatusCode::Error);
    assert_eq!(root.duration_ns, 1_500_000);
    assert_eq!(root.events.len(), 1);
}

#[test]
fn a_bad_line_is_rejected_whole_and_the_rest_is_ingested() {
    let dir = tempfile::tempdir().unwrap();
    let a = sample(5, 10);
    let c = sample(6, 400);
    let d = sample(7, 3);
    // Line 2 is not JSON; line 3 has one span with a 31-digit trace id, so its other,
    // valid spans are rejected with it.
    let mut bad_span = String::from_utf8(json_line(&sample(8, 3))).unwrap();
    bad_span = bad_span.replacen(&TraceId([8; 16]).to_hex(), &TraceId([8; 16]).to_hex()[1..], 1);
    let text =
        [json_line(&a), b"{\"resourceSpans\": [\n".to_vec(), bad_span.into_bytes(), json_line(&c), json_line(&d)]
            .concat();
    let path = write(dir.path(), "mixed.jsonl", &text);
    let name = path.to_str().unwrap();

    let data = dir.path().join("store");
    let (code, out, err) = run(&data, &["ingest", name], b"");
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains(&format!("{name}:2: ")), "{err}");
    assert!(err.contains(&format!("{name}:3: ")), "{err}");
    assert_eq!(err.lines().count(), 2, "{err}");
    assert!(out.contains("rejected 2 payloads (3 spans)"), "{out}");
    let want = expected(&[a.clone(), c.clone(), d].concat());
    assert_eq!(stored(&data), want);

    // --strict stops at line 2: line 1 is in, nothing after it.
    let data = dir.path().join("strict");
    let (code, out, err) = run(&data, &["ingest", "--strict", name], b"");
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains(&format!("{name}:2: ")), "{err}");
    assert!(!err.contains(&format!("{name}:3: ")), "{err}");
    assert_eq!(stored(&data), expected(&a));

    // --strict over several files: the second file is never read.
    let good = write(dir.path(), "good.jsonl", &json_line(&c));
    let data = dir.path().join("strict2");
    let (code, _, err) = run(&data, &["ingest", "--strict", name, good.to_str().unwrap()], b"");
    assert_eq!(code, 1, "{err}");
    assert_eq!(stored(&data), expected(&a));
    // Without it, the second file is ingested after the first's rejections.
    let data = dir.path().join("both");
    let (code, _, _) = run(&data, &["ingest", good.to_str().unwrap(), name, "no-such-file"], b"");
    assert_eq!(code, 1);
    assert_eq!(stored(&data).len(), 400 + 10 + 400 + 3);
}

#[test]
fn malformed_inputs_are_clear_errors_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("store");
    let base = sample(9, 25);
    let base_file = write(dir.path(), "base.jsonl", &json_line(&base));
    let (code, _, _) = run(&data, &["ingest", base_file.to_str().unwrap()], b"");
    assert_eq!(code, 0);
    let before = stored(&data);

    let good = otlp::encode_protobuf(&SpanBatch::from_spans(&sample(10, 5)));
    let mut cases: Vec<(String, Vec<u8>)> = vec![
        ("wrong-types.json".into(), br#"{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": 7}]}]}]}"#.to_vec()),
        (
            "short-id.json".into(),
            br#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"4bf92f3577b34da6a3ce929d0e0e473","spanId":"00f067aa0ba902b7","name":"x"}]}]}]}"#.to_vec(),
        ),
        (
            "zero-id.json".into(),
            br#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"00000000000000000000000000000000","spanId":"00f067aa0ba902b7","name":"x"}]}]}]}"#.to_vec(),
        ),
        (
            "non-hex.json".into(),
            br#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"zbf92f3577b34da6a3ce929d0e0e4736","spanId":"00f067aa0ba902b7","name":"x"}]}]}]}"#.to_vec(),
        ),
        ("invalid-utf8.json".into(), b"{\"resourceSpans\":[{\"resource\":{\"attributes\":[{\"key\":\"\xff\"}]}}]}".to_vec()),
        ("truncated.pb".into(), good[..good.len() / 2].to_vec()),
        ("truncated-frame.pb".into(), framed(std::slice::from_ref(&good))[..good.len() / 2].to_vec()),
        ("deep.json".into(), {
            let mut text = String::from(r#"{"resourceSpans":[{"resource":{"attributes":[{"key":"k","value":"#);
            for _ in 0..5000 {
                text.push_str(r#"{"arrayValue":{"values":["#);
            }
            text.into_bytes()
        }),
        ("garbage.bin".into(), vec![0xde, 0xad, 0xbe, 0xef, 0x01, 0x02]),
        ("truncated.gz".into(), gzip(&json_line(&sample(11, 50)))[..40].to_vec()),
        ("zipkin-wrong.json".into(), br#"[{"traceId": 12}]"#.to_vec()),
    ];
    // The codec engineer's corpus of malformed payloads, when present.
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("../ingest/tests/corpus");
    if let Ok(entries) = std::fs::read_dir(&corpus) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let is_bad = name.starts_with("bad") || entry.path().components().any(|c| c.as_os_str() == "bad");
            if entry.path().is_file() && is_bad {
                cases.push((format!("corpus-{name}"), std::fs::read(entry.path()).unwrap()));
            }
        }
    }
    for (name, bytes) in &cases {
        let path = write(dir.path(), name, bytes);
        let (code, out, err) = run(&data, &["ingest", path.to_str().unwrap()], b"");
        assert_eq!(code, 1, "{name}: {out}{err}");
        let message = err.lines().next().unwrap_or_default();
        assert!(message.starts_with(path.to_str().unwrap()), "{name}: {err}");
        assert!(message.len() > path.to_str().unwrap().len() + 3, "{name}: {err}");
        assert!(!err.contains("panicked"), "{name}: {err}");
        assert_eq!(stored(&data), before, "{name}");
    }
}

#[test]
fn export_filters_by_predicate_and_time_and_streams_otlp_json_lines() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("store");
    // Sealed segments (the first two batches, closed) and memtable spans (the last,
    // appended without sealing).
    let store = Store::open(&data, Options::default()).unwrap();
    let sealed: Vec<Span> = [sample(1, 1500), sample(2, 700)].concat();
    store.append(SpanBatch::from_spans(&sealed)).unwrap();
    store.close().unwrap();
    let store = Store::open(&data, Options { seal_on_close: false, ..Options::default() }).unwrap();
    let live = sample(3, 90);
    store.append(SpanBatch::from_spans(&live)).unwrap();
    store.close().unwrap();
    let all = stored(&data);
    assert_eq!(all.len(), 2290);

    let export = |args: &[&str]| -> Vec<Span> {
        let (code, out, err) = run(&data, &[&["export"], args].concat(), b"");
        assert_eq!(code, 0, "{err}");
        let mut spans = Vec::new();
        for line in out.lines() {
            let decoded = otlp_json::decode_json(line.as_bytes()).unwrap();
            assert_eq!(decoded.rejected_spans, 0);
            assert!(decoded.batch.len() <= 1000);
            spans.extend(decoded.batch.to_spans());
        }
        sorted(spans)
    };
    assert_eq!(export(&[]), all);
    let keep = |f: &dyn Fn(&Span) -> bool| -> Vec<Span> { all.iter().filter(|s| f(s)).cloned().collect() };
    assert_eq!(
        export(&["--where", "service = 'cart' AND status = 'error'"]),
        keep(&|s| s.service() == Some("cart") && s.status_code == StatusCode::Error)
    );
    assert_eq!(
        export(&["--where", "i >= 600 OR name LIKE '%-2'"]),
        keep(&|s| {
            matches!(s.attributes.first().map(|a| &a.value), Some(AnyValue::Int(i)) if *i >= 600)
                || s.name.ends_with("-2")
        })
    );
    let since = T0 + 2_000_000_000 + 100 * 1000;
    let until = T0 + 3_000_000_000 + 50 * 1000;
    let in_range = keep(&|s| s.start_unix_nano >= since && s.start_unix_nano < until);
    assert_eq!(in_range.len(), 600 + 50);
    assert_eq!(export(&["--since", &since.to_string(), "--until", &until.to_string()]), in_range);
    assert_eq!(
        export(&["--since", "2026-11-26T13:00:02.0001Z", "--until", &until.to_string(), "--where", "kind = 'server'"]),
        keep(&|s| s.start_unix_nano >= since && s.start_unix_nano < until && s.kind == SpanKind::Server)
    );
    assert!(export(&["--since", "1 hour ago"]).is_empty());

    // --out writes the same lines to a file.
    let out = dir.path().join("out.jsonl");
    let (code, _, err) = run(&data, &["export", "--where", "name = 'op-1'", "--out", out.to_str().unwrap()], b"");
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("exported 763 spans"), "{err}");
    let copy = dir.path().join("copy");
    let (code, _, err) = run(&copy, &["ingest", out.to_str().unwrap()], b"");
    assert_eq!(code, 0, "{err}");
    assert_eq!(stored(&copy), keep(&|s| s.name == "op-1"));

    // Bad flags are usage errors naming the flag and the place.
    let (code, _, err) = run(&data, &["export", "--where", "name = "], b"");
    assert_eq!(code, 2);
    assert!(err.contains("--where: line 1, column 8: "), "{err}");
    let (code, _, err) = run(&data, &["export", "--since", "2026-13-01T00:00:00Z"], b"");
    assert_eq!(code, 2);
    assert!(err.contains("--since: invalid RFC 3339 timestamp"), "{err}");
}

// ----- lossless round trip over arbitrary spans ----------------------------------------------

fn any_value(depth: u32) -> BoxedStrategy<AnyValue> {
    let leaf = prop_oneof![
        Just(AnyValue::Empty),
        ".{0,8}".prop_map(AnyValue::Str),
        any::<i64>().prop_map(AnyValue::Int),
        prop_oneof![any::<f64>(), Just(f64::NAN), Just(-0.0), Just(f64::INFINITY), Just(f64::NEG_INFINITY),]
            // OTLP/JSON writes every NaN as "NaN": a NaN's sign and payload bits do not
            // survive it, so the canonical NaN stands for them all.
            .prop_map(|d| AnyValue::Double(if d.is_nan() { f64::NAN } else { d })),
        any::<bool>().prop_map(AnyValue::Bool),
        proptest::collection::vec(any::<u8>(), 0..6).prop_map(AnyValue::Bytes),
    ];
    if depth == 0 {
        return leaf.boxed();
    }
    prop_oneof![
        4 => leaf,
        1 => proptest::collection::vec(any_value(depth - 1), 0..3).prop_map(AnyValue::Array),
        1 => proptest::collection::vec(key_value(depth - 1), 0..3).prop_map(AnyValue::Map),
    ]
    .boxed()
}

fn key_value(depth: u32) -> impl Strategy<Value = KeyValue> {
    ("[a-z.]{0,6}", any_value(depth)).prop_map(|(key, value)| KeyValue { key, value })
}

fn attrs() -> impl Strategy<Value = Vec<KeyValue>> {
    proptest::collection::vec(key_value(2), 0..4)
}

fn nonzero_id<const N: usize>() -> impl Strategy<Value = [u8; N]> {
    proptest::array::uniform::<_, N>(any::<u8>()).prop_map(|mut id| {
        if id.iter().all(|&b| b == 0) {
            id[0] = 1;
        }
        id
    })
}

prop_compose! {
    fn arb_resource()(attributes in attrs(), dropped in 0u32..3, schema_url in "[a-z:/.]{0,10}") -> Resource {
        Resource { attributes, dropped_attributes_count: dropped, schema_url }
    }
}

prop_compose! {
    fn arb_scope()(name in ".{0,6}", version in "[0-9.]{0,4}", attributes in attrs(), dropped in 0u32..3,
                   schema_url in "[a-z:/.]{0,6}") -> Scope {
        Scope { name, version, attributes, dropped_attributes_count: dropped, schema_url }
    }
}

prop_compose! {
    fn arb_event()(time in any::<u64>(), name in ".{0,6}", attributes in attrs(), dropped in 0u32..3) -> Event {
        Event { time_unix_nano: time, name, attributes, dropped_attributes_count: dropped }
    }
}

prop_compose! {
    fn arb_link()(trace in nonzero_id::<16>(), span in nonzero_id::<8>(), state in "[a-z=,]{0,6}",
                  attributes in attrs(), dropped in 0u32..3, flags in any::<u32>()) -> Link {
        Link { trace_id: TraceId(trace), span_id: SpanId(span), trace_state: state, attributes,
               dropped_attributes_count: dropped, flags }
    }
}

prop_compose! {
    fn arb_span(resources: Vec<Resource>, scopes: Vec<Scope>)
        (trace in nonzero_id::<16>(), span in nonzero_id::<8>(), parent in proptest::option::of(nonzero_id::<8>()),
         trace_state in "[a-z=,]{0,6}", name in ".{0,10}", kind in 0usize..6, start in any::<u64>(),
         duration in any::<u64>(), status in 0u8..3, status_message in ".{0,6}", flags in any::<u32>(),
         resource in 0..resources.len(), scope in 0..scopes.len(), attributes in attrs(),
         dropped in (0u32..3, 0u32..3, 0u32..3),
         events in proptest::collection::vec(arb_event(), 0..3),
         links in proptest::collection::vec(arb_link(), 0..2)) -> Span {
        Span {
            trace_id: TraceId(trace), span_id: SpanId(span), parent_span_id: parent.map(SpanId), trace_state, name,
            kind: SpanKind::ALL[kind], start_unix_nano: start,
            // OTLP carries the end, a u64 too: a span that ends past it cannot be sent.
            duration_ns: duration.min(u64::MAX - start),
            status_code: StatusCode::from_code(status).unwrap(), status_message, flags,
            resource: resources[resource].clone(), scope: scopes[scope].clone(), attributes,
            dropped_attributes_count: dropped.0, events, dropped_events_count: dropped.1, links,
            dropped_links_count: dropped.2,
        }
    }
}

fn arb_spans() -> impl Strategy<Value = Vec<Span>> {
    (proptest::collection::vec(arb_resource(), 1..3), proptest::collection::vec(arb_scope(), 1..3))
        .prop_flat_map(|(resources, scopes)| proptest::collection::vec(arb_span(resources, scopes), 1..12))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Ingest → export → ingest keeps every field of every span.
    #[test]
    fn export_then_ingest_gives_the_same_stored_spans(batches in proptest::collection::vec(arb_spans(), 1..3)) {
        let dir = tempfile::tempdir().unwrap();
        let first = dir.path().join("first");
        let store = Store::open(&first, Options::default()).unwrap();
        for spans in &batches {
            store.append(SpanBatch::from_spans(spans)).unwrap();
        }
        store.close().unwrap();
        let exported = dir.path().join("export.jsonl");
        let args = |rest: &[&str]| -> Vec<std::ffi::OsString> {
            let mut all = vec!["spanstore".into(), "--data".into()];
            all.extend(rest.iter().map(|a| a.into()));
            all
        };
        let code = spanstore::run(args(&[first.to_str().unwrap(), "export", "--out", exported.to_str().unwrap()]));
        prop_assert_eq!(code, 0);
        let second = dir.path().join("second");
        let code = spanstore::run(args(&[second.to_str().unwrap(), "ingest", exported.to_str().unwrap()]));
        prop_assert_eq!(code, 0);
        let want = stored(&first);
        prop_assert_eq!(want.len(), batches.iter().map(Vec::len).sum::<usize>());
        prop_assert_eq!(stored(&second), want);
    }
}

#[test]
fn a_damaged_gzip_stream_keeps_the_whole_lines_before_the_damage() {
    let dir = tempfile::tempdir().unwrap();
    let lines: Vec<Vec<Span>> = (0..40u8).map(|t| sample(t + 1, 30)).collect();
    let text: Vec<u8> = lines.iter().flat_map(|spans| json_line(spans)).collect();
    let mut compressed = gzip(&text);
    compressed.truncate(compressed.len() * 2 / 3);
    let path = write(dir.path(), "cut.jsonl.gz", &compressed);
    let data = dir.path().join("store");
    let (code, out, err) = run(&data, &["ingest", path.to_str().unwrap()], b"");
    assert_eq!(code, 1, "{out}{err}");
    let name = path.to_str().unwrap();
    assert!(err.starts_with(&format!("{name}:")) && err.contains("cannot read"), "{err}");
    let kept = stored(&data);
    assert!(!kept.is_empty() && kept.len() < 40 * 30 && kept.len() % 30 == 0, "{}", kept.len());
    let whole_lines = kept.len() / 30;
    assert_eq!(kept, expected(&lines[..whole_lines].concat()));
}
