//! Zipkin v2 JSON: the mapping onto the span model, and rejections.

use spanstore_engine::{AnyValue, KeyValue, SpanKind, StatusCode};
use spanstore_ingest::zipkin::decode_zipkin_json;

const SPANS: &str = r#"[
  {"traceId":"5af7183fb1d4cf5f","id":"352bff9a74ca9ad2","parentId":"6b221d5bc9e6496c","name":"get /api",
   "kind":"SERVER","timestamp":1556604172355737,"duration":1431,"debug":true,
   "localEndpoint":{"serviceName":"backend","ipv4":"192.168.99.1","port":3306},
   "remoteEndpoint":{"serviceName":"frontend","ipv4":"172.19.0.3","ipv6":"::1","port":58648},
   "annotations":[{"timestamp":1556604172355800,"value":"wr"}],
   "tags":{"http.method":"GET","http.path":"/api","error":"500 from upstream","otel.scope.name":"brave","otel.scope.version":"5.13"}},
  {"traceId":"463ac35c9f6413ad48485a3953bb6124","id":"a2fb4a1d1a96d312","name":"query","kind":"CLIENT",
   "timestamp":1556604172355900,"duration":10,"shared":false,
   "localEndpoint":{"serviceName":"frontend"},
   "tags":{"otel.status_code":"OK","otel.status_description":"fine","error":"ignored message"}},
  {"traceId":"463ac35c9f6413ad48485a3953bb6124","id":"b2fb4a1d1a96d312","timestamp":1556604172356000,
   "localEndpoint":{"serviceName":"backend","ipv4":"192.168.99.1","port":3306}}
]"#;

#[test]
fn maps_zipkin_onto_the_span_model() {
    let decoded = decode_zipkin_json(SPANS.as_bytes()).unwrap();
    assert_eq!(decoded.rejected_spans, 0, "{:?}", decoded.first_rejection);
    let spans = decoded.batch.to_spans();
    // Grouped by local endpoint: both backend spans first, then the frontend one.
    let names: Vec<&str> = spans.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["get /api", "", "query"]);

    let server = &spans[0];
    assert_eq!(server.trace_id.to_hex(), "00000000000000005af7183fb1d4cf5f");
    assert_eq!(server.span_id.to_hex(), "352bff9a74ca9ad2");
    assert_eq!(server.parent_span_id.unwrap().to_hex(), "6b221d5bc9e6496c");
    assert_eq!(server.kind, SpanKind::Server);
    assert_eq!((server.start_unix_nano, server.duration_ns), (1_556_604_172_355_737_000, 1_431_000));
    assert_eq!((server.status_code, server.status_message.as_str()), (StatusCode::Error, "500 from upstream"));
    assert_eq!((server.scope.name.as_str(), server.scope.version.as_str()), ("brave", "5.13"));
    assert_eq!(
        server.resource.attributes,
        vec![
            KeyValue::new("service.name", "backend"),
            KeyValue::new("network.local.address", "192.168.99.1"),
            KeyValue::new("network.local.port", 3306i64),
        ]
    );
    assert_eq!(
        server.attributes,
        vec![
            KeyValue::new("http.method", "GET"),
            KeyValue::new("http.path", "/api"),
            KeyValue::new("peer.service", "frontend"),
            KeyValue::new("network.peer.address", "172.19.0.3"),
            KeyValue::new("zipkin.remote_endpoint.ipv6", "::1"),
            KeyValue::new("network.peer.port", 58648i64),
            KeyValue::new("zipkin.debug", true),
        ]
    );
    assert_eq!(server.events.len(), 1);
    assert_eq!((server.events[0].time_unix_nano, server.events[0].name.as_str()), (1_556_604_172_355_800_000, "wr"));

    let bare = &spans[1];
    assert_eq!(bare.kind, SpanKind::Internal, "no kind is internal");
    assert_eq!((bare.duration_ns, bare.parent_span_id), (0, None));
    assert_eq!(bare.resource, server.resource, "same local endpoint, same resource");

    let client = &spans[2];
    assert_eq!(client.trace_id.to_hex(), "463ac35c9f6413ad48485a3953bb6124");
    assert_eq!(client.kind, SpanKind::Client);
    assert_eq!((client.status_code, client.status_message.as_str()), (StatusCode::Ok, "fine"));
    assert_eq!(client.attributes, vec![KeyValue::new("zipkin.shared", false)]);
    assert_eq!(client.resource.attributes, vec![KeyValue::new("service.name", "frontend")]);
    assert!(client.attributes.iter().all(|kv| kv.value != AnyValue::Empty));
}

#[test]
fn invalid_zipkin_spans_are_rejected_with_the_place() {
    let good = r#"{"traceId":"5af7183fb1d4cf5f","id":"352bff9a74ca9ad2","timestamp":1}"#;
    let cases = [
        (
            r#"{"traceId":"5af7183fb1d4cf5","id":"352bff9a74ca9ad2","timestamp":1}"#,
            "traceId: expected 16 or 32 hex digits",
        ),
        (r#"{"traceId":"0000000000000000","id":"352bff9a74ca9ad2","timestamp":1}"#, "traceId: all-zero trace id"),
        (
            r#"{"traceId":"5af7183fb1d4cf5f","id":"352bff9a74ca9adx","timestamp":1}"#,
            "id: invalid hex digit 'x' at position 15",
        ),
        (r#"{"traceId":"5af7183fb1d4cf5f","id":"352bff9a74ca9ad2"}"#, "timestamp: missing (an incomplete span)"),
        (
            r#"{"traceId":"5af7183fb1d4cf5f","id":"352bff9a74ca9ad2","timestamp":1,"kind":"SIDEWAYS"}"#,
            "kind: unknown Zipkin kind \"SIDEWAYS\"",
        ),
        (
            r#"{"traceId":"5af7183fb1d4cf5f","id":"352bff9a74ca9ad2","timestamp":18446744073709552}"#,
            "timestamp: 18446744073709552 microseconds",
        ),
    ];
    for (bad, reason) in cases {
        let decoded = decode_zipkin_json(format!("[{good},{bad}]").as_bytes()).unwrap();
        assert_eq!((decoded.batch.len(), decoded.rejected_spans), (1, 1), "{bad}");
        let first = decoded.first_rejection.unwrap();
        assert!(first.starts_with(&format!("[1].{reason}")), "{first}");
    }
}

#[test]
fn malformed_zipkin_is_an_error() {
    for (bad, expected) in [
        (&b"{\"traceId\":\"1\"}"[..], "Zipkin JSON: invalid type: map, expected a sequence at line 1 column 0"),
        (
            b"[{\"traceId\":\"5af7183fb1d4cf5f\",\"tags\":{\"n\":1}}]",
            "Zipkin JSON: invalid type: integer `1`, expected a string at line 1 column 44",
        ),
        (b"[{\"traceId\":\"5af7183fb1d4cf5f\"", "Zipkin JSON: EOF while parsing an object at line 1 column 30"),
        (b"[{\"name\":\"\xff\"}]", "Zipkin JSON: invalid UTF-8 at byte 10"),
    ] {
        let err = decode_zipkin_json(bad).unwrap_err();
        assert_eq!(err.to_string(), expected);
    }
    assert_eq!(decode_zipkin_json(b"[]").unwrap().batch.len(), 0);
}
