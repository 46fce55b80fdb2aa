//! OTLP protobuf and OTLP/JSON: every field kept, invalid spans rejected one by one,
//! the JSON forms receivers must accept.

use opentelemetry_proto::tonic::common::v1::{
    any_value, AnyValue as PbAnyValue, InstrumentationScope, KeyValue as PbKv,
};
use opentelemetry_proto::tonic::resource::v1::Resource as PbResource;
use opentelemetry_proto::tonic::trace::v1::{span, ResourceSpans, ScopeSpans, Span as PbSpan, Status};
use prost::Message;
use spanstore_engine::{AnyValue, KeyValue, SpanKind, StatusCode};
use spanstore_ingest::otlp::{self, ExportTraceServiceRequest};
use spanstore_ingest::otlp_json;

fn kv(key: &str, value: any_value::Value) -> PbKv {
    PbKv { key: key.into(), value: Some(PbAnyValue { value: Some(value) }), key_strindex: 0 }
}

fn pb_span(trace_byte: u8, span_byte: u8) -> PbSpan {
    PbSpan {
        trace_id: vec![trace_byte; 16],
        span_id: vec![span_byte; 8],
        name: "op".into(),
        kind: 2,
        start_time_unix_nano: 1_000,
        end_time_unix_nano: 3_500,
        ..PbSpan::default()
    }
}

fn request(spans: Vec<PbSpan>) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(PbResource {
                attributes: vec![kv("service.name", any_value::Value::StringValue("checkout".into()))],
                dropped_attributes_count: 3,
                entity_refs: vec![],
            }),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: "io.lib".into(),
                    version: "1.2".into(),
                    attributes: vec![kv("scope.attr", any_value::Value::BoolValue(true))],
                    dropped_attributes_count: 4,
                }),
                spans,
                schema_url: "https://scope".into(),
            }],
            schema_url: "https://resource".into(),
        }],
    }
}

#[test]
fn protobuf_keeps_every_field() {
    let mut full = pb_span(0xab, 0xcd);
    full.parent_span_id = vec![0x11; 8];
    full.trace_state = "a=1,b=2".into();
    full.flags = 0x301;
    full.kind = 5;
    full.attributes = vec![
        kv("s", any_value::Value::StringValue("x".into())),
        kv("i", any_value::Value::IntValue(-7)),
        kv("d", any_value::Value::DoubleValue(-0.0)),
        kv("b", any_value::Value::BytesValue(vec![0, 255])),
        kv(
            "a",
            any_value::Value::ArrayValue(opentelemetry_proto::tonic::common::v1::ArrayValue {
                values: vec![PbAnyValue { value: None }, PbAnyValue { value: Some(any_value::Value::IntValue(1)) }],
            }),
        ),
        kv("strindex", any_value::Value::StringValueStrindex(3)),
        PbKv { key: "none".into(), value: None, key_strindex: 0 },
    ];
    full.dropped_attributes_count = 1;
    full.events = vec![span::Event {
        time_unix_nano: 2_000,
        name: "exception".into(),
        attributes: vec![kv("exception.type", any_value::Value::StringValue("E".into()))],
        dropped_attributes_count: 2,
    }];
    full.dropped_events_count = 3;
    full.links = vec![span::Link {
        trace_id: vec![0x22; 16],
        span_id: vec![0x33; 8],
        trace_state: "k=v".into(),
        attributes: vec![kv("l", any_value::Value::IntValue(9))],
        dropped_attributes_count: 5,
        flags: 0x100,
    }];
    full.dropped_links_count = 6;
    full.status = Some(Status { message: "boom".into(), code: 2 });
    let bytes = request(vec![full]).encode_to_vec();
    let decoded = otlp::decode_protobuf(&bytes).unwrap();
    assert_eq!(decoded.rejected_spans, 0);
    let spans = decoded.batch.to_spans();
    let s = &spans[0];
    assert_eq!(s.trace_id.to_hex(), "abababababababababababababababab");
    assert_eq!(s.span_id.to_hex(), "cdcdcdcdcdcdcdcd");
    assert_eq!(s.parent_span_id.unwrap().to_hex(), "1111111111111111");
    assert_eq!((s.trace_state.as_str(), s.flags, s.kind), ("a=1,b=2", 0x301, SpanKind::Consumer));
    assert_eq!((s.start_unix_nano, s.duration_ns), (1_000, 2_500));
    assert_eq!((s.status_code, s.status_message.as_str()), (StatusCode::Error, "boom"));
    assert_eq!((s.dropped_attributes_count, s.dropped_events_count, s.dropped_links_count), (1, 3, 6));
    assert_eq!(s.resource.attributes, vec![KeyValue::new("service.name", "checkout")]);
    assert_eq!((s.resource.dropped_attributes_count, s.resource.schema_url.as_str()), (3, "https://resource"));
    assert_eq!((s.scope.name.as_str(), s.scope.version.as_str()), ("io.lib", "1.2"));
    assert_eq!((s.scope.dropped_attributes_count, s.scope.schema_url.as_str()), (4, "https://scope"));
    assert_eq!(s.scope.attributes, vec![KeyValue::new("scope.attr", true)]);
    let values: Vec<&AnyValue> = s.attributes.iter().map(|kv| &kv.value).collect();
    assert_eq!(values[2], &AnyValue::Double(-0.0));
    assert_eq!(values[3], &AnyValue::Bytes(vec![0, 255]));
    assert_eq!(values[4], &AnyValue::Array(vec![AnyValue::Empty, AnyValue::Int(1)]));
    assert_eq!(values[5], &AnyValue::Empty, "profiles-only string_value_strindex reads as absent");
    assert_eq!(values[6], &AnyValue::Empty);
    assert_eq!(s.events[0].name, "exception");
    assert_eq!((s.events[0].time_unix_nano, s.events[0].dropped_attributes_count), (2_000, 2));
    let link = &s.links[0];
    assert_eq!((link.trace_state.as_str(), link.flags, link.dropped_attributes_count), ("k=v", 0x100, 5));
    assert_eq!(link.attributes, vec![KeyValue::new("l", 9i64)]);

    // And back out: encode_request groups and keeps every field.
    let again = otlp::encode_protobuf(&decoded.batch);
    assert_eq!(otlp::decode_protobuf(&again).unwrap().batch.to_spans(), spans);
}

#[test]
fn invalid_spans_are_rejected_one_by_one() {
    let cases: Vec<(PbSpan, &str)> = vec![
        (PbSpan { trace_id: vec![1; 15], ..pb_span(1, 1) }, "traceId: expected 16 bytes, found 15"),
        (pb_span(0, 1), "traceId: all-zero trace id"),
        (PbSpan { span_id: vec![], ..pb_span(1, 1) }, "spanId: expected 8 bytes, found 0"),
        (pb_span(1, 0), "spanId: all-zero span id"),
        (PbSpan { parent_span_id: vec![1; 4], ..pb_span(1, 1) }, "parentSpanId: expected 8 bytes, found 4"),
        (PbSpan { kind: 6, ..pb_span(1, 1) }, "kind: unknown span kind 6"),
        (
            PbSpan { status: Some(Status { message: String::new(), code: 3 }), ..pb_span(1, 1) },
            "status.code: unknown status code 3",
        ),
        (PbSpan { end_time_unix_nano: 999, ..pb_span(1, 1) }, "endTimeUnixNano 999 is before startTimeUnixNano 1000"),
        (
            PbSpan {
                links: vec![span::Link { trace_id: vec![1; 3], span_id: vec![1; 8], ..Default::default() }],
                ..pb_span(1, 1)
            },
            "links[0].traceId: expected 16 bytes, found 3",
        ),
    ];
    for (bad, reason) in cases {
        let request = request(vec![pb_span(7, 7), bad, pb_span(8, 8)]);
        let decoded = otlp::decode_protobuf(&request.encode_to_vec()).unwrap();
        assert_eq!(decoded.rejected_spans, 1, "{reason}");
        assert_eq!(
            decoded.first_rejection.as_deref(),
            Some(format!("resourceSpans[0].scopeSpans[0].spans[1].{reason}").as_str())
        );
        assert_eq!(decoded.batch.len(), 2);
        let from_request = otlp::decode_request(&request);
        assert_eq!((from_request.batch.len(), from_request.rejected_spans), (2, 1));
    }
    // An empty parent id, and an all-zero one, are a root.
    let root = PbSpan { parent_span_id: vec![0; 8], ..pb_span(1, 1) };
    let decoded = otlp::decode_request(&request(vec![root]));
    assert_eq!(decoded.batch.parent_span_id(0), None);
}

#[test]
fn resource_with_only_rejected_spans_leaves_no_trace() {
    let decoded = otlp::decode_request(&request(vec![pb_span(0, 1)]));
    assert_eq!((decoded.batch.len(), decoded.rejected_spans), (0, 1));
    assert_eq!(decoded.batch, spanstore_engine::SpanBatch::new());
}

#[test]
fn malformed_protobuf_is_an_error() {
    let bytes = request(vec![pb_span(1, 1)]).encode_to_vec();
    let err = otlp::decode_protobuf(&bytes[..bytes.len() - 3]).unwrap_err();
    assert!(err.to_string().starts_with("not an OTLP protobuf ExportTraceServiceRequest: "), "{err}");
    assert!(!err.is_too_large());
}

const JSON_SPAN: &str = r#"{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"api"}}]},
"scopeSpans":[{"scope":{"name":"lib"},"spans":[SPANS]}]}]}"#;

fn json_with(spans: &str) -> Vec<u8> {
    JSON_SPAN.replace("SPANS", spans).into_bytes()
}

#[test]
fn json_accepts_what_receivers_must() {
    // snake_case names, numbers for int64, enum names, uppercase hex, null, unknown
    // fields, URL-safe unpadded base64, numeric strings for doubles.
    let span = r#"{"trace_id":"5B8EFFF798038103D269B633813FC60C","span_id":"EEE19B7EC3C1B174","parent_span_id":"",
      "name":"GET /","kind":"SPAN_KIND_SERVER","start_time_unix_nano":1700000000000000000,"end_time_unix_nano":"1700000000000000100",
      "attributes":[{"key":"i","value":{"int_value":42}},{"key":"d","value":{"doubleValue":"1.5"}},{"key":"b","value":{"bytesValue":"_-8"}},
        {"key":"n","value":null},{"key":"m","value":{"kvlistValue":{"values":[{"key":"k","value":{"boolValue":true}}]}}}],
      "status":{"code":"STATUS_CODE_OK","message":null},"futureField":{"x":[1,2,{"y":null}]},"events":null,"droppedLinksCount":"2"}"#;
    let decoded = otlp_json::decode_json(&json_with(span)).unwrap();
    assert_eq!(decoded.rejected_spans, 0, "{:?}", decoded.first_rejection);
    let s = &decoded.batch.to_spans()[0];
    assert_eq!(s.trace_id.to_hex(), "5b8efff798038103d269b633813fc60c");
    assert_eq!(s.parent_span_id, None);
    assert_eq!(
        (s.kind, s.status_code, s.duration_ns, s.dropped_links_count),
        (SpanKind::Server, StatusCode::Ok, 100, 2)
    );
    assert_eq!(s.attributes[0].value, AnyValue::Int(42));
    assert_eq!(s.attributes[1].value, AnyValue::Double(1.5));
    assert_eq!(s.attributes[2].value, AnyValue::Bytes(vec![0xff, 0xef]));
    assert_eq!(s.attributes[3].value, AnyValue::Empty);
    assert_eq!(s.attributes[4].value, AnyValue::Map(vec![KeyValue::new("k", true)]));
}

#[test]
fn json_rejections_name_the_place() {
    let good = r#"{"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174","startTimeUnixNano":"1","endTimeUnixNano":"2"}"#;
    let cases = [
        (
            r#"{"traceId":"5b8efff798038103d269b633813fc60","spanId":"eee19b7ec3c1b174"}"#,
            "traceId: expected 32 hex digits, found 31",
        ),
        (
            r#"{"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b17z"}"#,
            "spanId: invalid hex digit 'z' at position 15",
        ),
        (r#"{"spanId":"eee19b7ec3c1b174"}"#, "traceId: expected 32 hex digits, found 0"),
        (
            r#"{"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174","kind":9}"#,
            "kind: unknown span kind 9",
        ),
        (
            r#"{"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174","startTimeUnixNano":"5","endTimeUnixNano":"4"}"#,
            "endTimeUnixNano 4 is before startTimeUnixNano 5",
        ),
    ];
    for (bad, reason) in cases {
        let decoded = otlp_json::decode_json(&json_with(&format!("{good},{bad}"))).unwrap();
        assert_eq!(decoded.rejected_spans, 1);
        assert_eq!(decoded.batch.len(), 1);
        assert_eq!(decoded.first_rejection.unwrap(), format!("resourceSpans[0].scopeSpans[0].spans[1].{reason}"));
    }
}

#[test]
fn malformed_json_is_an_error_naming_line_and_column() {
    let err = otlp_json::decode_json(&json_with(r#"{"traceId":5}"#)).unwrap_err();
    assert_eq!(err.to_string(), "OTLP/JSON: invalid type: integer `5`, expected a string at line 2 column 59");
    let err = otlp_json::decode_json(b"[1,2]").unwrap_err();
    assert!(err.to_string().starts_with("OTLP/JSON: invalid type: integer `1`"), "{err}");
    let err =
        otlp_json::decode_json(&json_with(r#"{"attributes":[{"key":"x","value":{"intValue":"1.5"}}]}"#)).unwrap_err();
    assert!(err.to_string().contains("expected an int64"), "{err}");
    let err = otlp_json::decode_json(&json_with(r#"{"attributes":[{"key":"x","value":{"doubleValue":"inf"}}]}"#))
        .unwrap_err();
    assert!(err.to_string().contains("\"NaN\""), "{err}");
}

#[test]
fn huge_attribute_values_decode() {
    let big = "x".repeat(4 << 20);
    let span = format!(
        r#"{{"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174","attributes":[{{"key":"big","value":{{"stringValue":"{big}"}}}}]}}"#
    );
    let decoded = otlp_json::decode_json(&json_with(&span)).unwrap();
    assert_eq!(decoded.batch.span_attributes(0).get("big").unwrap().as_str().unwrap().len(), 4 << 20);
}
