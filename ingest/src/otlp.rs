//! OTLP protobuf: `ExportTraceServiceRequest` (the `opentelemetry-proto` crate's prost
//! types) decoded straight into a columnar [`SpanBatch`], and encoded back.
//!
//! Every field of the message is kept except `Resource.entity_refs` (development
//! status, which the span model has no place for) and the profiles-only
//! `string_value_strindex` / `key_strindex`, which OTLP tells trace receivers to read as
//! absent. A span is rejected on its own (counted in [`Decoded`]) for an id of the wrong
//! length, an all-zero trace or span id, an unknown kind or status code, an end before
//! its start, a link id of the wrong length, or values nested deeper than a batch holds.
#![deny(clippy::unwrap_used, clippy::indexing_slicing)]

mod wire;

use bytes::Bytes;
use opentelemetry_proto::tonic::common::v1 as pb_common;
use opentelemetry_proto::tonic::resource::v1 as pb_resource;
use opentelemetry_proto::tonic::trace::v1 as pb_trace;
use prost::Message;
use spanstore_engine::{AnyValue, KeyValue, Span, SpanBatch, SpanFields, ValueRef};

pub use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;

use crate::common::{self, Rejections};
use crate::{Decoded, IngestError};

/// Decodes a protobuf `ExportTraceServiceRequest`. Bytes that are not one are an error;
/// invalid spans inside a well-formed request are left out and counted.
pub fn decode_protobuf(bytes: &[u8]) -> Result<Decoded, IngestError> {
    decode_protobuf_bytes(Bytes::copy_from_slice(bytes))
}

/// [`decode_protobuf`] of a shared buffer (an HTTP body, say), which the decoded
/// strings borrow from instead of being copied one by one.
///
/// The fast path reads the request with prost types whose strings share `bytes` and
/// builds the batch from them ([`wire`]); a request it cannot finish (not protobuf, or
/// a string that is not UTF-8) is decoded again with the `opentelemetry-proto` types,
/// whose result and error message are the answer.
pub fn decode_protobuf_bytes(bytes: Bytes) -> Result<Decoded, IngestError> {
    decode_fast(bytes)
}

/// The fast path: prost types whose strings share `bytes`, the generated types when
/// it cannot finish.
///
/// The shared-buffer types declare strings as `bytes`, so prost does not check them
/// as it reads; the builder checks every string the decoded tree holds. A string the
/// tree does not hold (a field given twice, whose first value is overwritten, or an
/// unknown field) would go unchecked, while the generated types refuse the request if
/// it is not UTF-8. So the fast path keeps its answer only when re-encoding the tree
/// gives exactly as many bytes as came in ([`wire::lost_nothing`]): re-encoding is
/// never longer than its input, and any value the tree dropped makes it shorter.
fn decode_fast(bytes: Bytes) -> Result<Decoded, IngestError> {
    if let Ok(request) = wire::ExportTraceServiceRequest::decode(bytes.clone()) {
        if wire::lost_nothing(&request, bytes.len()) {
            if let Some((batch, rejections)) = wire::build(&request) {
                return rejections.finish(batch);
            }
        }
    }
    decode_generated(&bytes)
}

/// [`decode_protobuf`] with the `opentelemetry-proto` types only: the reference the
/// fast path is checked against (by the tests and the `otlp_protobuf` fuzz target).
#[doc(hidden)]
pub fn decode_protobuf_generated(bytes: &[u8]) -> Result<Decoded, IngestError> {
    decode_generated(bytes)
}

/// The decoder with the `opentelemetry-proto` types: prost's owned message tree, then
/// the batch.
fn decode_generated(bytes: &[u8]) -> Result<Decoded, IngestError> {
    let request =
        ExportTraceServiceRequest::decode(bytes).map_err(|e| IngestError::Protobuf(shorten(e.to_string())))?;
    let (batch, rejections) = build(&request);
    rejections.finish(batch)
}

/// prost names every message on the path to the failure, innermost first: for deep
/// nesting that is a hundred segments. Keep the innermost few and the outermost few.
fn shorten(message: String) -> String {
    const KEEP: usize = 4;
    let parts: Vec<&str> = message.split(": ").collect();
    if parts.len() <= 2 * KEEP + 1 {
        return message;
    }
    let head = parts.get(..KEEP).unwrap_or_default().join(": ");
    let tail = parts.get(parts.len() - KEEP..).unwrap_or_default().join(": ");
    format!("{head}: ({} more): {tail}", parts.len() - 2 * KEEP)
}

/// Converts an already-decoded request (from the gRPC server). Invalid spans are left
/// out and counted, never an error; a request too big for one batch has every span
/// rejected with the reason.
pub fn decode_request(request: &ExportTraceServiceRequest) -> Decoded {
    let (batch, rejections) = build(request);
    match batch.check_limits() {
        Ok(()) => Decoded { batch, rejected_spans: rejections.count, first_rejection: rejections.first },
        Err(reason) => Decoded {
            rejected_spans: batch.len() as u64 + rejections.count,
            first_rejection: Some(format!("request too large for one batch: {reason}")),
            batch: SpanBatch::new(),
        },
    }
}

fn build(request: &ExportTraceServiceRequest) -> (SpanBatch, Rejections) {
    let mut batch = SpanBatch::new();
    let mut rejections = Rejections::default();
    for (resource_index, resource_spans) in request.resource_spans.iter().enumerate() {
        let resource = resource_spans.resource.as_ref();
        let resource_attrs = resource.map(|r| r.attributes.as_slice()).unwrap_or_default();
        let resource_problem =
            check_attrs(resource_attrs).err().map(|e| format!("resourceSpans[{resource_index}].resource.{e}"));
        let mut resource_open = false;
        for (scope_index, scope_spans) in resource_spans.scope_spans.iter().enumerate() {
            let scope = scope_spans.scope.as_ref();
            let scope_attrs = scope.map(|s| s.attributes.as_slice()).unwrap_or_default();
            let scope_problem = check_attrs(scope_attrs)
                .err()
                .map(|e| format!("resourceSpans[{resource_index}].scopeSpans[{scope_index}].scope.{e}"));
            let mut scope_open = false;
            for (span_index, span) in scope_spans.spans.iter().enumerate() {
                let checked = match resource_problem.as_ref().or(scope_problem.as_ref()) {
                    Some(problem) => Err(problem.clone()),
                    None => check_span(span).map_err(|e| {
                        format!("resourceSpans[{resource_index}].scopeSpans[{scope_index}].spans[{span_index}].{e}")
                    }),
                };
                let fields = match checked {
                    Ok(fields) => fields,
                    Err(reason) => {
                        rejections.reject(|| reason);
                        continue;
                    }
                };
                if !resource_open {
                    begin_resource(&mut batch, resource_spans, resource);
                    resource_open = true;
                }
                if !scope_open {
                    begin_scope(&mut batch, scope_spans, scope);
                    scope_open = true;
                }
                push_span(&mut batch, span, &fields);
            }
        }
    }
    (batch, rejections)
}

fn begin_resource(
    batch: &mut SpanBatch,
    resource_spans: &pb_trace::ResourceSpans,
    resource: Option<&pb_resource::Resource>,
) {
    batch.begin_resource(&resource_spans.schema_url, resource.map(|r| r.dropped_attributes_count).unwrap_or(0));
    for kv in resource.map(|r| r.attributes.as_slice()).unwrap_or_default() {
        with_value(kv, |key, value| batch.resource_attr(key, value));
    }
}

fn begin_scope(
    batch: &mut SpanBatch,
    scope_spans: &pb_trace::ScopeSpans,
    scope: Option<&pb_common::InstrumentationScope>,
) {
    let (name, version, dropped) =
        scope.map(|s| (s.name.as_str(), s.version.as_str(), s.dropped_attributes_count)).unwrap_or(("", "", 0));
    batch.begin_scope(name, version, &scope_spans.schema_url, dropped);
    for kv in scope.map(|s| s.attributes.as_slice()).unwrap_or_default() {
        with_value(kv, |key, value| batch.scope_attr(key, value));
    }
}

/// Checks everything that can make a span invalid before any of it is pushed, so a
/// rejected span leaves no trace in the batch.
fn check_span(span: &pb_trace::Span) -> Result<SpanFields<'_>, String> {
    let trace_id = common::trace_id_from_bytes(&span.trace_id).map_err(|e| format!("traceId: {e}"))?;
    let span_id = common::span_id_from_bytes(&span.span_id).map_err(|e| format!("spanId: {e}"))?;
    let parent_span_id =
        common::parent_id_from_bytes(&span.parent_span_id).map_err(|e| format!("parentSpanId: {e}"))?;
    let kind = common::kind_from_code(i64::from(span.kind)).map_err(|e| format!("kind: {e}"))?;
    let status = span.status.as_ref();
    let status_code = common::status_from_code(i64::from(status.map(|s| s.code).unwrap_or(0)))
        .map_err(|e| format!("status.code: {e}"))?;
    let duration_ns = common::duration_ns(span.start_time_unix_nano, span.end_time_unix_nano)?;
    check_attrs(&span.attributes)?;
    for (index, event) in span.events.iter().enumerate() {
        check_attrs(&event.attributes).map_err(|e| format!("events[{index}].{e}"))?;
    }
    for (index, link) in span.links.iter().enumerate() {
        if link.trace_id.len() != 16 {
            return Err(format!("links[{index}].traceId: expected 16 bytes, found {}", link.trace_id.len()));
        }
        if link.span_id.len() != 8 {
            return Err(format!("links[{index}].spanId: expected 8 bytes, found {}", link.span_id.len()));
        }
        check_attrs(&link.attributes).map_err(|e| format!("links[{index}].{e}"))?;
    }
    Ok(SpanFields {
        trace_id,
        span_id,
        parent_span_id,
        trace_state: &span.trace_state,
        name: &span.name,
        kind,
        start_unix_nano: span.start_time_unix_nano,
        duration_ns,
        status_code,
        status_message: status.map(|s| s.message.as_str()).unwrap_or(""),
        flags: span.flags,
        dropped_attributes_count: span.dropped_attributes_count,
        dropped_events_count: span.dropped_events_count,
        dropped_links_count: span.dropped_links_count,
    })
}

fn push_span(batch: &mut SpanBatch, span: &pb_trace::Span, fields: &SpanFields<'_>) {
    batch.push_span(fields);
    for kv in &span.attributes {
        with_value(kv, |key, value| batch.span_attr(key, value));
    }
    for event in &span.events {
        batch.push_event(event.time_unix_nano, &event.name, event.dropped_attributes_count);
        for kv in &event.attributes {
            with_value(kv, |key, value| batch.event_attr(key, value));
        }
    }
    for link in &span.links {
        // `check_span` checked both lengths.
        let trace_id = spanstore_engine::TraceId(<[u8; 16]>::try_from(link.trace_id.as_slice()).unwrap_or_default());
        let span_id = spanstore_engine::SpanId(<[u8; 8]>::try_from(link.span_id.as_slice()).unwrap_or_default());
        batch.push_link(trace_id, span_id, &link.trace_state, link.flags, link.dropped_attributes_count);
        for kv in &link.attributes {
            with_value(kv, |key, value| batch.link_attr(key, value));
        }
    }
}

/// Checks that the attribute values nest no deeper than a batch holds.
fn check_attrs(attrs: &[pb_common::KeyValue]) -> Result<(), String> {
    for (index, kv) in attrs.iter().enumerate() {
        if let Some(value) = &kv.value {
            check_value_depth(value, 0).map_err(|e| format!("attributes[{index}] ({:?}): {e}", kv.key))?;
        }
    }
    Ok(())
}

fn check_value_depth(value: &pb_common::AnyValue, depth: usize) -> Result<(), String> {
    use pb_common::any_value::Value as V;
    let limit = spanstore_engine::batch::MAX_NESTING_DEPTH;
    match &value.value {
        Some(V::ArrayValue(array)) => {
            if depth + 1 > limit {
                return Err(format!("values nested deeper than {limit}"));
            }
            array.values.iter().try_for_each(|item| check_value_depth(item, depth + 1))
        }
        Some(V::KvlistValue(list)) => {
            if depth + 1 > limit {
                return Err(format!("values nested deeper than {limit}"));
            }
            list.values
                .iter()
                .filter_map(|kv| kv.value.as_ref())
                .try_for_each(|item| check_value_depth(item, depth + 1))
        }
        _ => Ok(()),
    }
}

/// Calls `push` with the key and value of `kv`; scalars are handed in borrowed, arrays
/// and maps (rare) as owned values.
fn with_value(kv: &pb_common::KeyValue, push: impl FnOnce(&str, ValueRef<'_>)) {
    use pb_common::any_value::Value as V;
    match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
        None | Some(V::StringValueStrindex(_)) => push(&kv.key, ValueRef::Empty),
        Some(V::StringValue(s)) => push(&kv.key, ValueRef::Str(s)),
        Some(V::BoolValue(b)) => push(&kv.key, ValueRef::Bool(*b)),
        Some(V::IntValue(i)) => push(&kv.key, ValueRef::Int(*i)),
        Some(V::DoubleValue(d)) => push(&kv.key, ValueRef::Double(*d)),
        Some(V::BytesValue(b)) => push(&kv.key, ValueRef::Bytes(b)),
        Some(V::ArrayValue(array)) => {
            let items: Vec<AnyValue> = array.values.iter().map(owned_value).collect();
            push(&kv.key, ValueRef::Array(&items));
        }
        Some(V::KvlistValue(list)) => {
            let pairs: Vec<KeyValue> = list.values.iter().map(owned_pair).collect();
            push(&kv.key, ValueRef::Map(&pairs));
        }
    }
}

fn owned_pair(kv: &pb_common::KeyValue) -> KeyValue {
    KeyValue { key: kv.key.clone(), value: kv.value.as_ref().map(owned_value).unwrap_or_default() }
}

/// The owned form of a protobuf value; recursion is bounded by `check_attrs`.
fn owned_value(value: &pb_common::AnyValue) -> AnyValue {
    use pb_common::any_value::Value as V;
    match &value.value {
        None | Some(V::StringValueStrindex(_)) => AnyValue::Empty,
        Some(V::StringValue(s)) => AnyValue::Str(s.clone()),
        Some(V::BoolValue(b)) => AnyValue::Bool(*b),
        Some(V::IntValue(i)) => AnyValue::Int(*i),
        Some(V::DoubleValue(d)) => AnyValue::Double(*d),
        Some(V::BytesValue(b)) => AnyValue::Bytes(b.clone()),
        Some(V::ArrayValue(array)) => AnyValue::Array(array.values.iter().map(owned_value).collect()),
        Some(V::KvlistValue(list)) => AnyValue::Map(list.values.iter().map(owned_pair).collect()),
    }
}

// ----- encoding -------------------------------------------------------------------------

/// The batch as one request, grouped by resource and scope.
pub fn encode_request(batch: &SpanBatch) -> ExportTraceServiceRequest {
    encode_request_spans(&batch.to_spans())
}

/// Owned spans as one request, grouped by resource and scope.
pub fn encode_request_spans(spans: &[Span]) -> ExportTraceServiceRequest {
    let resource_spans = common::group_spans(spans)
        .into_iter()
        .map(|group| pb_trace::ResourceSpans {
            resource: Some(pb_resource::Resource {
                attributes: pb_attrs(&group.resource.attributes),
                dropped_attributes_count: group.resource.dropped_attributes_count,
                entity_refs: Vec::new(),
            }),
            scope_spans: group
                .scopes
                .into_iter()
                .map(|scope_group| pb_trace::ScopeSpans {
                    scope: Some(pb_common::InstrumentationScope {
                        name: scope_group.scope.name.clone(),
                        version: scope_group.scope.version.clone(),
                        attributes: pb_attrs(&scope_group.scope.attributes),
                        dropped_attributes_count: scope_group.scope.dropped_attributes_count,
                    }),
                    spans: scope_group.spans.into_iter().map(pb_span).collect(),
                    schema_url: scope_group.scope.schema_url.clone(),
                })
                .collect(),
            schema_url: group.resource.schema_url.clone(),
        })
        .collect();
    ExportTraceServiceRequest { resource_spans }
}

/// The batch as one protobuf-encoded request, grouped by resource and scope.
pub fn encode_protobuf(batch: &SpanBatch) -> Vec<u8> {
    encode_request(batch).encode_to_vec()
}

fn pb_span(span: &Span) -> pb_trace::Span {
    pb_trace::Span {
        trace_id: span.trace_id.0.to_vec(),
        span_id: span.span_id.0.to_vec(),
        trace_state: span.trace_state.clone(),
        parent_span_id: span.parent_span_id.map(|id| id.0.to_vec()).unwrap_or_default(),
        flags: span.flags,
        name: span.name.clone(),
        kind: span.kind as i32,
        start_time_unix_nano: span.start_unix_nano,
        // A start near u64::MAX with a long duration has no OTLP form; the end saturates.
        end_time_unix_nano: span.end_unix_nano(),
        attributes: pb_attrs(&span.attributes),
        dropped_attributes_count: span.dropped_attributes_count,
        events: span
            .events
            .iter()
            .map(|event| pb_trace::span::Event {
                time_unix_nano: event.time_unix_nano,
                name: event.name.clone(),
                attributes: pb_attrs(&event.attributes),
                dropped_attributes_count: event.dropped_attributes_count,
            })
            .collect(),
        dropped_events_count: span.dropped_events_count,
        links: span
            .links
            .iter()
            .map(|link| pb_trace::span::Link {
                trace_id: link.trace_id.0.to_vec(),
                span_id: link.span_id.0.to_vec(),
                trace_state: link.trace_state.clone(),
                attributes: pb_attrs(&link.attributes),
                dropped_attributes_count: link.dropped_attributes_count,
                flags: link.flags,
            })
            .collect(),
        dropped_links_count: span.dropped_links_count,
        status: Some(pb_trace::Status { message: span.status_message.clone(), code: span.status_code as i32 })
            .filter(|s| s.code != 0 || !s.message.is_empty()),
    }
}

fn pb_attrs(attrs: &[KeyValue]) -> Vec<pb_common::KeyValue> {
    attrs.iter().map(pb_pair).collect()
}

fn pb_pair(kv: &KeyValue) -> pb_common::KeyValue {
    pb_common::KeyValue { key: kv.key.clone(), value: Some(pb_value(&kv.value)), key_strindex: 0 }
}

fn pb_value(value: &AnyValue) -> pb_common::AnyValue {
    use pb_common::any_value::Value as V;
    let value = match value {
        AnyValue::Empty => None,
        AnyValue::Str(s) => Some(V::StringValue(s.clone())),
        AnyValue::Int(i) => Some(V::IntValue(*i)),
        AnyValue::Double(d) => Some(V::DoubleValue(*d)),
        AnyValue::Bool(b) => Some(V::BoolValue(*b)),
        AnyValue::Bytes(b) => Some(V::BytesValue(b.clone())),
        AnyValue::Array(items) => {
            Some(V::ArrayValue(pb_common::ArrayValue { values: items.iter().map(pb_value).collect() }))
        }
        AnyValue::Map(pairs) => Some(V::KvlistValue(pb_common::KeyValueList { values: pb_attrs(pairs) })),
    };
    pb_common::AnyValue { value }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use spanstore_engine::{Event, Link, SpanId, TraceId};

    /// A result in a comparable form (NaN-safe: spans by their debug text).
    fn outcome(result: Result<Decoded, IngestError>) -> Result<(String, u64, Option<String>), String> {
        result
            .map(|decoded| {
                decoded.batch.validate().unwrap();
                (format!("{:?}", decoded.batch.to_spans()), decoded.rejected_spans, decoded.first_rejection)
            })
            .map_err(|e| e.to_string())
    }

    /// Workload spans with every value form, events and links added to some.
    fn payload(seed: u64, spans: usize) -> Vec<u8> {
        let batch = &spanstore_workload::batches(seed, 1, spans)[0];
        let mut spans = batch.to_spans();
        for (index, span) in spans.iter_mut().enumerate() {
            if index % 3 == 0 {
                span.attributes.push(KeyValue {
                    key: "nested".into(),
                    value: AnyValue::Array(vec![
                        AnyValue::Map(vec![KeyValue::new("k", "v"), KeyValue::new("n", -1i64)]),
                        AnyValue::Bytes(vec![0, 255]),
                        AnyValue::Double(-0.0),
                        AnyValue::Empty,
                    ]),
                });
                span.events.push(Event { time_unix_nano: 9, name: "exception".into(), ..Event::default() });
                span.links.push(Link {
                    trace_id: TraceId([7; 16]),
                    span_id: SpanId([0; 8]),
                    attributes: vec![KeyValue::new("é", true)],
                    ..Link::default()
                });
            }
        }
        encode_protobuf(&SpanBatch::from_spans(&spans))
    }

    #[test]
    fn fast_path_decodes_what_the_generated_types_decode() {
        for seed in [1, 2, 3] {
            let bytes = payload(seed, 300);
            let fast = outcome(decode_protobuf(&bytes));
            assert!(fast.as_ref().is_ok_and(|(_, rejected, _)| *rejected == 0));
            assert!(fast == outcome(decode_generated(&bytes)), "seed {seed}");
            let request = wire::ExportTraceServiceRequest::decode(bytes.as_slice()).unwrap();
            // The fast path's answer is the one kept for what the encoder writes.
            assert!(wire::lost_nothing(&request, bytes.len()), "seed {seed}");
            assert!(wire::build(&request).is_some());
        }
    }

    #[test]
    fn invalid_utf8_gives_the_generated_types_error() {
        let mut span = Span { trace_id: TraceId([1; 16]), span_id: SpanId([2; 8]), ..Span::default() };
        span.name = "nameXX".into();
        let mut bytes = encode_protobuf(&SpanBatch::from_spans(std::slice::from_ref(&span)));
        let at = bytes.windows(6).position(|w| w == b"nameXX").unwrap();
        bytes[at + 4] = 0xff;
        let fast = decode_protobuf(&bytes).unwrap_err().to_string();
        assert_eq!(fast, decode_generated(&bytes).unwrap_err().to_string());
        assert!(fast.contains("invalid string value: data is not UTF-8 encoded"), "{fast}");
    }

    /// A length-delimited protobuf field, written by hand so that a test can give a
    /// field twice or a string that is not UTF-8.
    fn field(tag: u32, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        prost::encoding::encode_varint(u64::from(tag << 3 | 2), &mut out);
        prost::encoding::encode_varint(payload.len() as u64, &mut out);
        out.extend_from_slice(payload);
        out
    }

    /// A request of one span with `extra` appended to the span's fields.
    fn request_with_span_fields(extra: &[u8]) -> Vec<u8> {
        let mut span = [field(1, &[1; 16]), field(2, &[2; 8])].concat();
        span.extend_from_slice(extra);
        field(1, &field(2, &field(2, &span)))
    }

    #[test]
    fn a_string_that_a_later_value_overwrites_is_still_checked() {
        // The name given twice, the first not UTF-8: prost keeps the second.
        let name_twice = request_with_span_fields(&[field(5, b"\xff\xfe"), field(5, b"ok")].concat());
        // An attribute value given as a string that is not UTF-8, then as an int.
        let value = [field(1, b"\xff"), vec![3 << 3, 5]].concat();
        let attribute = [field(1, b"k"), field(2, &value)].concat();
        let oneof_twice = request_with_span_fields(&field(9, &attribute));
        // The status given twice, the first with a message that is not UTF-8.
        let status_twice =
            request_with_span_fields(&[field(15, &field(2, b"\xc3")), field(15, &field(2, b"fine"))].concat());
        for bytes in [name_twice, oneof_twice, status_twice] {
            let generated = outcome(decode_generated(&bytes));
            assert!(generated.as_ref().is_err_and(|e| e.contains("not UTF-8")), "{generated:?}");
            assert_eq!(outcome(decode_protobuf(&bytes)), generated);
        }
        // Given twice with both values valid, the request decodes, to the second.
        let valid_twice = request_with_span_fields(&[field(5, b"first"), field(5, b"second")].concat());
        let decoded = decode_protobuf(&valid_twice).unwrap();
        assert_eq!(decoded.batch.to_spans()[0].name, "second");
        assert_eq!(outcome(Ok(decoded)), outcome(decode_generated(&valid_twice)));
    }

    #[test]
    fn a_negative_enum_in_five_bytes_takes_the_same_path_as_in_ten() {
        for varint in [vec![0xff, 0xff, 0xff, 0xff, 0x0f], vec![0xff; 9].into_iter().chain([0x01]).collect()] {
            let kind = [vec![6 << 3], varint].concat();
            let bytes = request_with_span_fields(&[field(5, b"n"), kind].concat());
            let fast = outcome(decode_protobuf(&bytes));
            assert_eq!(fast, outcome(decode_generated(&bytes)));
            assert!(fast.as_ref().is_ok_and(|(_, rejected, _)| *rejected == 1), "{fast:?}");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

        /// Whatever the bytes (valid requests with a few bytes changed), the fast path
        /// gives the spans, rejections and errors the generated types give.
        #[test]
        fn fast_path_agrees_with_the_generated_types(
            seed in 0u64..50,
            flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..4),
        ) {
            let mut bytes = payload(seed, 12);
            for (at, byte) in flips {
                let at = at % bytes.len();
                bytes[at] ^= byte;
            }
            prop_assert_eq!(outcome(decode_protobuf(&bytes)), outcome(decode_generated(&bytes)));
        }
    }
}
