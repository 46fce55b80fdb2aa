//! Property tests: arbitrary spans survive OTLP/JSON and protobuf round trips, and
//! arbitrary bytes never make a decoder panic.

use proptest::prelude::*;
use spanstore_engine::{
    AnyValue, Event, KeyValue, Link, Resource, Scope, Span, SpanBatch, SpanId, SpanKind, StatusCode, TraceId,
};
use spanstore_ingest::{detect, otlp, otlp_json, zipkin};

/// Attribute values nested up to four levels, with every float bit pattern (or only
/// the canonical NaN, for JSON, whose text form has no NaN payloads).
fn any_value(any_nan: bool) -> impl Strategy<Value = AnyValue> {
    let double = any::<u64>().prop_map(move |bits| {
        let value = f64::from_bits(bits);
        AnyValue::Double(if value.is_nan() && !any_nan { f64::NAN } else { value })
    });
    let leaf = prop_oneof![
        Just(AnyValue::Empty),
        ".{0,12}".prop_map(AnyValue::Str),
        any::<i64>().prop_map(AnyValue::Int),
        double,
        prop_oneof![Just(-0.0), Just(f64::NAN), Just(f64::INFINITY), Just(f64::NEG_INFINITY), Just(1e300)]
            .prop_map(AnyValue::Double),
        any::<bool>().prop_map(AnyValue::Bool),
        proptest::collection::vec(any::<u8>(), 0..10).prop_map(AnyValue::Bytes),
    ];
    leaf.prop_recursive(4, 24, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(AnyValue::Array),
            proptest::collection::vec(("[a-z.]{0,6}", inner), 0..4).prop_map(|pairs| AnyValue::Map(
                pairs.into_iter().map(|(key, value)| KeyValue { key, value }).collect()
            )),
        ]
    })
}

fn attrs(any_nan: bool) -> impl Strategy<Value = Vec<KeyValue>> {
    proptest::collection::vec(("\\PC{0,10}", any_value(any_nan)), 0..4)
        .prop_map(|pairs| pairs.into_iter().map(|(key, value)| KeyValue { key, value }).collect())
}

fn nonzero_trace_id() -> impl Strategy<Value = TraceId> {
    any::<[u8; 16]>().prop_filter("non-zero", |b| b.iter().any(|&x| x != 0)).prop_map(TraceId)
}

fn nonzero_span_id() -> impl Strategy<Value = SpanId> {
    any::<[u8; 8]>().prop_filter("non-zero", |b| b.iter().any(|&x| x != 0)).prop_map(SpanId)
}

/// A few resources and scopes to pick from, so groups are shared and interleaved.
fn resource(any_nan: bool) -> impl Strategy<Value = Resource> {
    (attrs(any_nan), any::<u32>(), "[a-z:/.]{0,12}").prop_map(|(attributes, dropped_attributes_count, schema_url)| {
        Resource { attributes, dropped_attributes_count, schema_url }
    })
}

fn scope(any_nan: bool) -> impl Strategy<Value = Scope> {
    ("\\PC{0,8}", "[0-9.]{0,5}", attrs(any_nan), any::<u32>(), "[a-z:/.]{0,12}").prop_map(
        |(name, version, attributes, dropped_attributes_count, schema_url)| Scope {
            name,
            version,
            attributes,
            dropped_attributes_count,
            schema_url,
        },
    )
}

fn event(any_nan: bool) -> impl Strategy<Value = Event> {
    (any::<u64>(), "\\PC{0,8}", attrs(any_nan), any::<u32>()).prop_map(
        |(time_unix_nano, name, attributes, dropped_attributes_count)| Event {
            time_unix_nano,
            name,
            attributes,
            dropped_attributes_count,
        },
    )
}

fn link(any_nan: bool) -> impl Strategy<Value = Link> {
    (any::<[u8; 16]>(), any::<[u8; 8]>(), "[a-z0-9=,]{0,10}", attrs(any_nan), any::<u32>(), any::<u32>()).prop_map(
        |(trace_id, span_id, trace_state, attributes, dropped_attributes_count, flags)| Link {
            trace_id: TraceId(trace_id),
            span_id: SpanId(span_id),
            trace_state,
            attributes,
            dropped_attributes_count,
            flags,
        },
    )
}

fn span(resources: Vec<Resource>, scopes: Vec<Scope>, any_nan: bool) -> impl Strategy<Value = Span> {
    let ids = (nonzero_trace_id(), nonzero_span_id(), proptest::option::of(nonzero_span_id()));
    let fixed = (
        "[a-z0-9=,]{0,10}",
        "\\PC{0,12}",
        0..6u8,
        any::<u64>(),
        any::<u64>(),
        0..3u8,
        "\\PC{0,8}",
        any::<u32>(),
        (any::<u32>(), any::<u32>(), any::<u32>()),
    );
    let lists = (
        attrs(any_nan),
        proptest::collection::vec(event(any_nan), 0..3),
        proptest::collection::vec(link(any_nan), 0..3),
        0..resources.len(),
        0..scopes.len(),
    );
    (ids, fixed, lists).prop_map(move |(ids, fixed, lists)| {
        let (trace_id, span_id, parent_span_id) = ids;
        let (trace_state, name, kind, start, duration, status, status_message, flags, dropped) = fixed;
        let (attributes, events, links, resource_index, scope_index) = lists;
        Span {
            trace_id,
            span_id,
            parent_span_id,
            trace_state,
            name,
            kind: SpanKind::from_code(kind).unwrap_or_default(),
            start_unix_nano: start,
            // OTLP carries the end, so start + duration must fit in a u64.
            duration_ns: duration % (u64::MAX - start).saturating_add(1).max(1),
            status_code: StatusCode::from_code(status).unwrap_or_default(),
            status_message,
            flags,
            resource: resources[resource_index].clone(),
            scope: scopes[scope_index].clone(),
            attributes,
            dropped_attributes_count: dropped.0,
            events,
            dropped_events_count: dropped.1,
            links,
            dropped_links_count: dropped.2,
        }
    })
}

fn spans(any_nan: bool) -> impl Strategy<Value = Vec<Span>> {
    (proptest::collection::vec(resource(any_nan), 1..3), proptest::collection::vec(scope(any_nan), 1..3))
        .prop_flat_map(move |(resources, scopes)| proptest::collection::vec(span(resources, scopes, any_nan), 0..6))
}

/// Spans in a canonical order: the encoders regroup by resource and scope.
fn sorted(mut spans: Vec<Span>) -> Vec<Span> {
    spans.sort_by_key(|s| (s.trace_id, s.span_id, s.start_unix_nano));
    spans
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn json_round_trip(spans in spans(false)) {
        let batch = SpanBatch::from_spans(&spans);
        let mut out = Vec::new();
        otlp_json::encode_json(&batch, &mut out);
        let decoded = otlp_json::decode_json(&out).map_err(|e| TestCaseError::fail(format!("{e}: {}", String::from_utf8_lossy(&out))))?;
        prop_assert_eq!(decoded.rejected_spans, 0, "{:?}", decoded.first_rejection);
        prop_assert_eq!(sorted(decoded.batch.to_spans()), sorted(spans.clone()));
        let mut again = Vec::new();
        otlp_json::encode_json_spans(&spans, &mut again);
        prop_assert_eq!(again, out);
    }

    #[test]
    fn protobuf_round_trip(spans in spans(true)) {
        let batch = SpanBatch::from_spans(&spans);
        let bytes = otlp::encode_protobuf(&batch);
        let decoded = otlp::decode_protobuf(&bytes).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(decoded.rejected_spans, 0, "{:?}", decoded.first_rejection);
        prop_assert_eq!(sorted(decoded.batch.to_spans()), sorted(spans.clone()));
        let request = otlp::encode_request(&batch);
        prop_assert_eq!(sorted(otlp::decode_request(&request).batch.to_spans()), sorted(spans));
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = otlp::decode_protobuf(&bytes);
        let _ = otlp_json::decode_json(&bytes);
        let _ = zipkin::decode_zipkin_json(&bytes);
        let _ = detect::detect(&bytes, Some("x.json"));
        let _ = detect::gunzip_bounded(&bytes, 1 << 16);
    }

    #[test]
    fn json_shaped_garbage_never_panics(text in "[\\[\\]{}\",:0-9a-zA-Z \\-.]{0,200}") {
        let _ = otlp_json::decode_json(text.as_bytes());
        let _ = zipkin::decode_zipkin_json(text.as_bytes());
    }

    #[test]
    fn mutated_payloads_never_panic(spans in spans(true), flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..4)) {
        let batch = SpanBatch::from_spans(&spans);
        let mut bytes = otlp::encode_protobuf(&batch);
        let mut json = Vec::new();
        otlp_json::encode_json(&batch, &mut json);
        for (at, byte) in flips {
            if !bytes.is_empty() {
                let at = at % bytes.len();
                bytes[at] ^= byte;
            }
            let at = at % json.len();
            json[at] = byte;
        }
        let _ = otlp::decode_protobuf(&bytes);
        let _ = otlp_json::decode_json(&json);
    }
}

#[test]
fn json_keeps_negative_zero_and_non_finite_doubles() {
    let mut span = Span { trace_id: TraceId([1; 16]), span_id: SpanId([2; 8]), ..Span::default() };
    span.attributes = vec![
        KeyValue::new("negative zero", -0.0),
        KeyValue::new("nan", f64::NAN),
        KeyValue::new("inf", f64::INFINITY),
        KeyValue::new("-inf", f64::NEG_INFINITY),
        KeyValue::new("tiny", 5e-324),
        KeyValue::new("max", f64::MAX),
        KeyValue { key: "empty".into(), value: AnyValue::Empty },
    ];
    let mut out = Vec::new();
    otlp_json::encode_json_spans(std::slice::from_ref(&span), &mut out);
    let text = String::from_utf8(out.clone()).unwrap();
    assert!(text.contains(r#"{"doubleValue":-0.0}"#), "{text}");
    assert!(text.contains(r#"{"doubleValue":"NaN"}"#), "{text}");
    assert!(text.contains(r#"{"doubleValue":"-Infinity"}"#), "{text}");
    assert!(text.contains(r#"{"key":"empty","value":{}}"#), "{text}");
    let decoded = otlp_json::decode_json(&out).unwrap();
    assert_eq!(decoded.batch.to_spans(), vec![span]);
}
