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
    let request = ExportTraceServiceRequest::decode(bytes).map_err(|e| IngestError::Protobuf(e.to_string()))?;
    let (batch, rejections) = build(&request);
    rejections.finish(batch)
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
