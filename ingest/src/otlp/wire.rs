//! The fast path of the protobuf decoder: prost message types of the same schema as
//! the `opentelemetry-proto` ones, with every string and bytes field a `bytes::Bytes`
//! that shares the request's buffer (no allocation, copy or free per string), built
//! straight into a [`SpanBatch`].
//!
//! A string field is declared as `bytes` here (the same wire type), so prost does not
//! check its UTF-8: the builder checks every string it reads, including those of
//! rejected spans and of fields it does not keep. When a check fails — or prost
//! refuses the bytes — the caller decodes again with the `opentelemetry-proto` types,
//! whose error is then the answer. Everything else (wire types, recursion limit, the
//! rejection rules and their messages) is what the `opentelemetry-proto` path does.
#![deny(clippy::unwrap_used, clippy::indexing_slicing)]

use bytes::Bytes;
use spanstore_engine::batch::MAX_NESTING_DEPTH;
use spanstore_engine::{AnyValue, KeyValue as OwnedKeyValue, SpanBatch, SpanFields, SpanId, TraceId, ValueRef};

use crate::common::{self, Rejections};

#[derive(Clone, PartialEq, prost::Message)]
pub(super) struct ExportTraceServiceRequest {
    #[prost(message, repeated, tag = "1")]
    resource_spans: Vec<ResourceSpans>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct ResourceSpans {
    #[prost(message, optional, tag = "1")]
    resource: Option<Resource>,
    #[prost(message, repeated, tag = "2")]
    scope_spans: Vec<ScopeSpans>,
    #[prost(bytes = "bytes", tag = "3")]
    schema_url: Bytes,
}

#[derive(Clone, PartialEq, prost::Message)]
struct Resource {
    #[prost(message, repeated, tag = "1")]
    attributes: Vec<KeyValue>,
    #[prost(uint32, tag = "2")]
    dropped_attributes_count: u32,
    /// Read (so that it is checked as the other path checks it), not kept.
    #[prost(message, repeated, tag = "3")]
    entity_refs: Vec<EntityRef>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct EntityRef {
    #[prost(bytes = "bytes", tag = "1")]
    schema_url: Bytes,
    #[prost(bytes = "bytes", tag = "2")]
    r#type: Bytes,
    #[prost(bytes = "bytes", repeated, tag = "3")]
    id_keys: Vec<Bytes>,
    #[prost(bytes = "bytes", repeated, tag = "4")]
    description_keys: Vec<Bytes>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct ScopeSpans {
    #[prost(message, optional, tag = "1")]
    scope: Option<InstrumentationScope>,
    #[prost(message, repeated, tag = "2")]
    spans: Vec<Span>,
    #[prost(bytes = "bytes", tag = "3")]
    schema_url: Bytes,
}

#[derive(Clone, PartialEq, prost::Message)]
struct InstrumentationScope {
    #[prost(bytes = "bytes", tag = "1")]
    name: Bytes,
    #[prost(bytes = "bytes", tag = "2")]
    version: Bytes,
    #[prost(message, repeated, tag = "3")]
    attributes: Vec<KeyValue>,
    #[prost(uint32, tag = "4")]
    dropped_attributes_count: u32,
}

#[derive(Clone, PartialEq, prost::Message)]
struct Span {
    #[prost(bytes = "bytes", tag = "1")]
    trace_id: Bytes,
    #[prost(bytes = "bytes", tag = "2")]
    span_id: Bytes,
    #[prost(bytes = "bytes", tag = "3")]
    trace_state: Bytes,
    #[prost(bytes = "bytes", tag = "4")]
    parent_span_id: Bytes,
    #[prost(fixed32, tag = "16")]
    flags: u32,
    #[prost(bytes = "bytes", tag = "5")]
    name: Bytes,
    /// `int32` on the wire, read as the raw varint (see [`lost_nothing`]).
    #[prost(uint64, tag = "6")]
    kind: u64,
    #[prost(fixed64, tag = "7")]
    start_time_unix_nano: u64,
    #[prost(fixed64, tag = "8")]
    end_time_unix_nano: u64,
    #[prost(message, repeated, tag = "9")]
    attributes: Vec<KeyValue>,
    #[prost(uint32, tag = "10")]
    dropped_attributes_count: u32,
    #[prost(message, repeated, tag = "11")]
    events: Vec<Event>,
    #[prost(uint32, tag = "12")]
    dropped_events_count: u32,
    #[prost(message, repeated, tag = "13")]
    links: Vec<Link>,
    #[prost(uint32, tag = "14")]
    dropped_links_count: u32,
    #[prost(message, optional, tag = "15")]
    status: Option<Status>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct Event {
    #[prost(fixed64, tag = "1")]
    time_unix_nano: u64,
    #[prost(bytes = "bytes", tag = "2")]
    name: Bytes,
    #[prost(message, repeated, tag = "3")]
    attributes: Vec<KeyValue>,
    #[prost(uint32, tag = "4")]
    dropped_attributes_count: u32,
}

#[derive(Clone, PartialEq, prost::Message)]
struct Link {
    #[prost(bytes = "bytes", tag = "1")]
    trace_id: Bytes,
    #[prost(bytes = "bytes", tag = "2")]
    span_id: Bytes,
    #[prost(bytes = "bytes", tag = "3")]
    trace_state: Bytes,
    #[prost(message, repeated, tag = "4")]
    attributes: Vec<KeyValue>,
    #[prost(uint32, tag = "5")]
    dropped_attributes_count: u32,
    #[prost(fixed32, tag = "6")]
    flags: u32,
}

#[derive(Clone, PartialEq, prost::Message)]
struct Status {
    #[prost(bytes = "bytes", tag = "2")]
    message: Bytes,
    /// `int32` on the wire, read as the raw varint (see [`lost_nothing`]).
    #[prost(uint64, tag = "3")]
    code: u64,
}

#[derive(Clone, PartialEq, prost::Message)]
struct KeyValue {
    #[prost(bytes = "bytes", tag = "1")]
    key: Bytes,
    #[prost(message, optional, tag = "2")]
    value: Option<AnyValueMessage>,
    /// `int32` on the wire, read as the raw varint (see [`lost_nothing`]).
    #[prost(uint64, tag = "3")]
    key_strindex: u64,
}

#[derive(Clone, PartialEq, prost::Message)]
struct AnyValueMessage {
    #[prost(oneof = "Value", tags = "1, 2, 3, 4, 5, 6, 7, 8")]
    value: Option<Value>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
enum Value {
    #[prost(bytes = "bytes", tag = "1")]
    Str(Bytes),
    #[prost(bool, tag = "2")]
    Bool(bool),
    #[prost(int64, tag = "3")]
    Int(i64),
    #[prost(double, tag = "4")]
    Double(f64),
    #[prost(message, tag = "5")]
    Array(ArrayValue),
    #[prost(message, tag = "6")]
    Kvlist(KeyValueList),
    #[prost(bytes = "bytes", tag = "7")]
    Bytes(Bytes),
    /// `int32` on the wire, read as the raw varint (see [`lost_nothing`]).
    #[prost(uint64, tag = "8")]
    Strindex(u64),
}

#[derive(Clone, PartialEq, prost::Message)]
struct ArrayValue {
    #[prost(message, repeated, tag = "1")]
    values: Vec<AnyValueMessage>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct KeyValueList {
    #[prost(message, repeated, tag = "1")]
    values: Vec<KeyValue>,
}

/// Whether `request`, decoded from `input_len` bytes, holds every value those bytes
/// gave, so that checking the strings of the tree checks every string of the input.
///
/// prost's canonical encoding of a decoded tree is never longer than the bytes it came
/// from: varints are minimal, default values and unknown fields are left out, a message
/// given twice is merged under one header. The `int32` fields are read as raw `uint64`
/// varints so that this holds for them too (prost writes a negative `int32` in ten
/// bytes, while an input may give it in five); the builder truncates them as prost's
/// `int32` does. A string or message the tree dropped (overwritten by a later one, or
/// an unknown field) leaves the re-encoding shorter than the input, so equal lengths
/// mean nothing was dropped. Inputs that are merely not canonical (explicit defaults,
/// long varints) also come out shorter: they take the generated types' path, which is
/// slower but gives the same answer.
pub(super) fn lost_nothing(request: &ExportTraceServiceRequest, input_len: usize) -> bool {
    prost::Message::encoded_len(request) == input_len
}

/// Marks a string that is not UTF-8: the other path names the error.
struct NotUtf8;

fn text(bytes: &Bytes) -> Result<&str, NotUtf8> {
    std::str::from_utf8(bytes).map_err(|_| NotUtf8)
}

/// Checks the nesting of attribute values (as the other path does) and the UTF-8 of
/// every string in them.
fn check_attrs(attrs: &[KeyValue]) -> Result<Result<(), String>, NotUtf8> {
    let mut problem = Ok(());
    for (index, kv) in attrs.iter().enumerate() {
        let key = text(&kv.key)?;
        if let Some(value) = &kv.value {
            if let Err(e) = check_value(value, 0)? {
                if problem.is_ok() {
                    problem = Err(format!("attributes[{index}] ({key:?}): {e}"));
                }
            }
        }
    }
    Ok(problem)
}

fn check_value(value: &AnyValueMessage, depth: usize) -> Result<Result<(), String>, NotUtf8> {
    let too_deep = || format!("values nested deeper than {MAX_NESTING_DEPTH}");
    let mut problem = Ok(());
    match &value.value {
        Some(Value::Str(s)) => {
            text(s)?;
        }
        Some(Value::Array(array)) => {
            if depth + 1 > MAX_NESTING_DEPTH {
                problem = Err(too_deep());
            }
            for item in &array.values {
                let inner = check_value(item, depth + 1)?;
                if problem.is_ok() {
                    problem = inner;
                }
            }
        }
        Some(Value::Kvlist(list)) => {
            if depth + 1 > MAX_NESTING_DEPTH {
                problem = Err(too_deep());
            }
            for kv in &list.values {
                text(&kv.key)?;
                if let Some(item) = &kv.value {
                    let inner = check_value(item, depth + 1)?;
                    if problem.is_ok() {
                        problem = inner;
                    }
                }
            }
        }
        _ => {}
    }
    Ok(problem)
}

/// Checks the UTF-8 of every string of a span (one that is not pushed).
fn check_span_text(span: &Span) -> Result<(), NotUtf8> {
    text(&span.trace_state)?;
    text(&span.name)?;
    if let Some(status) = &span.status {
        text(&status.message)?;
    }
    check_attrs(&span.attributes)?.ok();
    for event in &span.events {
        text(&event.name)?;
        check_attrs(&event.attributes)?.ok();
    }
    for link in &span.links {
        text(&link.trace_state)?;
        check_attrs(&link.attributes)?.ok();
    }
    Ok(())
}

/// Builds the batch, or `None` when a string is not UTF-8.
pub(super) fn build(request: &ExportTraceServiceRequest) -> Option<(SpanBatch, Rejections)> {
    build_checked(request).ok()
}

fn build_checked(request: &ExportTraceServiceRequest) -> Result<(SpanBatch, Rejections), NotUtf8> {
    let mut batch = SpanBatch::new();
    let mut rejections = Rejections::default();
    for (resource_index, resource_spans) in request.resource_spans.iter().enumerate() {
        let resource = resource_spans.resource.as_ref();
        let resource_attrs = resource.map(|r| r.attributes.as_slice()).unwrap_or_default();
        let resource_schema_url = text(&resource_spans.schema_url)?;
        for entity in resource.map(|r| r.entity_refs.as_slice()).unwrap_or_default() {
            text(&entity.schema_url)?;
            text(&entity.r#type)?;
            for key in entity.id_keys.iter().chain(&entity.description_keys) {
                text(key)?;
            }
        }
        let resource_problem =
            check_attrs(resource_attrs)?.err().map(|e| format!("resourceSpans[{resource_index}].resource.{e}"));
        let mut resource_open = false;
        for (scope_index, scope_spans) in resource_spans.scope_spans.iter().enumerate() {
            let scope = scope_spans.scope.as_ref();
            let scope_attrs = scope.map(|s| s.attributes.as_slice()).unwrap_or_default();
            let scope_schema_url = text(&scope_spans.schema_url)?;
            let (name, version) = match scope {
                Some(s) => (text(&s.name)?, text(&s.version)?),
                None => ("", ""),
            };
            let scope_problem = check_attrs(scope_attrs)?
                .err()
                .map(|e| format!("resourceSpans[{resource_index}].scopeSpans[{scope_index}].scope.{e}"));
            let mut scope_open = false;
            for (span_index, span) in scope_spans.spans.iter().enumerate() {
                let checked = match resource_problem.as_ref().or(scope_problem.as_ref()) {
                    Some(problem) => Err(problem.clone()),
                    None => check_span(span)?.map_err(|e| {
                        format!("resourceSpans[{resource_index}].scopeSpans[{scope_index}].spans[{span_index}].{e}")
                    }),
                };
                let fields = match checked {
                    Ok(fields) => fields,
                    Err(reason) => {
                        check_span_text(span)?;
                        rejections.reject(|| reason);
                        continue;
                    }
                };
                if !resource_open {
                    let dropped = resource.map(|r| r.dropped_attributes_count).unwrap_or(0);
                    batch.begin_resource(resource_schema_url, dropped);
                    for kv in resource_attrs {
                        push_attr(&mut batch, kv, SpanBatch::resource_attr)?;
                    }
                    resource_open = true;
                }
                if !scope_open {
                    let dropped = scope.map(|s| s.dropped_attributes_count).unwrap_or(0);
                    batch.begin_scope(name, version, scope_schema_url, dropped);
                    for kv in scope_attrs {
                        push_attr(&mut batch, kv, SpanBatch::scope_attr)?;
                    }
                    scope_open = true;
                }
                push_span(&mut batch, span, &fields)?;
            }
        }
    }
    Ok((batch, rejections))
}

/// The checks of the other path, in its order; strings of the fixed fields are
/// checked for UTF-8 here too, since they go into the fields.
fn check_span(span: &Span) -> Result<Result<SpanFields<'_>, String>, NotUtf8> {
    let trace_state = text(&span.trace_state)?;
    let name = text(&span.name)?;
    let status_message = match &span.status {
        Some(status) => text(&status.message)?,
        None => "",
    };
    Ok((|| {
        let trace_id = common::trace_id_from_bytes(&span.trace_id).map_err(|e| format!("traceId: {e}"))?;
        let span_id = common::span_id_from_bytes(&span.span_id).map_err(|e| format!("spanId: {e}"))?;
        let parent_span_id =
            common::parent_id_from_bytes(&span.parent_span_id).map_err(|e| format!("parentSpanId: {e}"))?;
        let kind = common::kind_from_code(i64::from(span.kind as i32)).map_err(|e| format!("kind: {e}"))?;
        let status_code = common::status_from_code(i64::from(span.status.as_ref().map(|s| s.code as i32).unwrap_or(0)))
            .map_err(|e| format!("status.code: {e}"))?;
        let duration_ns = common::duration_ns(span.start_time_unix_nano, span.end_time_unix_nano)?;
        Ok(SpanFields {
            trace_id,
            span_id,
            parent_span_id,
            trace_state,
            name,
            kind,
            start_unix_nano: span.start_time_unix_nano,
            duration_ns,
            status_code,
            status_message,
            flags: span.flags,
            dropped_attributes_count: span.dropped_attributes_count,
            dropped_events_count: span.dropped_events_count,
            dropped_links_count: span.dropped_links_count,
        })
    })()
    .and_then(|fields| {
        // Nesting, then link id lengths, in the other path's order.
        check_lists(span).map(|()| fields)
    }))
}

/// The list checks of a span: attribute nesting, events, then links.
fn check_lists(span: &Span) -> Result<(), String> {
    nesting(&span.attributes)?;
    for (index, event) in span.events.iter().enumerate() {
        nesting(&event.attributes).map_err(|e| format!("events[{index}].{e}"))?;
    }
    for (index, link) in span.links.iter().enumerate() {
        if link.trace_id.len() != 16 {
            return Err(format!("links[{index}].traceId: expected 16 bytes, found {}", link.trace_id.len()));
        }
        if link.span_id.len() != 8 {
            return Err(format!("links[{index}].spanId: expected 8 bytes, found {}", link.span_id.len()));
        }
        nesting(&link.attributes).map_err(|e| format!("links[{index}].{e}"))?;
    }
    Ok(())
}

/// Only the nesting check of [`check_attrs`], for lists whose UTF-8 is checked as they
/// are pushed (or by [`check_span_text`]); nested values are rare, so this is cheap.
fn nesting(attrs: &[KeyValue]) -> Result<(), String> {
    for (index, kv) in attrs.iter().enumerate() {
        if let Some(value) = &kv.value {
            if let Some(Value::Array(_) | Value::Kvlist(_)) = &value.value {
                // A key that is not UTF-8 is caught when the span is pushed or checked.
                let key = String::from_utf8_lossy(&kv.key);
                depth_only(value, 0).map_err(|e| format!("attributes[{index}] ({key:?}): {e}"))?;
            }
        }
    }
    Ok(())
}

fn depth_only(value: &AnyValueMessage, depth: usize) -> Result<(), String> {
    match &value.value {
        Some(Value::Array(array)) => {
            if depth + 1 > MAX_NESTING_DEPTH {
                return Err(format!("values nested deeper than {MAX_NESTING_DEPTH}"));
            }
            array.values.iter().try_for_each(|item| depth_only(item, depth + 1))
        }
        Some(Value::Kvlist(list)) => {
            if depth + 1 > MAX_NESTING_DEPTH {
                return Err(format!("values nested deeper than {MAX_NESTING_DEPTH}"));
            }
            list.values.iter().filter_map(|kv| kv.value.as_ref()).try_for_each(|item| depth_only(item, depth + 1))
        }
        _ => Ok(()),
    }
}

fn push_span(batch: &mut SpanBatch, span: &Span, fields: &SpanFields<'_>) -> Result<(), NotUtf8> {
    batch.push_span(fields);
    for kv in &span.attributes {
        push_attr(batch, kv, SpanBatch::span_attr)?;
    }
    for event in &span.events {
        batch.push_event(event.time_unix_nano, text(&event.name)?, event.dropped_attributes_count);
        for kv in &event.attributes {
            push_attr(batch, kv, SpanBatch::event_attr)?;
        }
    }
    for link in &span.links {
        // `check_lists` checked both lengths.
        let trace_id = TraceId(<[u8; 16]>::try_from(link.trace_id.as_ref()).unwrap_or_default());
        let span_id = SpanId(<[u8; 8]>::try_from(link.span_id.as_ref()).unwrap_or_default());
        batch.push_link(trace_id, span_id, text(&link.trace_state)?, link.flags, link.dropped_attributes_count);
        for kv in &link.attributes {
            push_attr(batch, kv, SpanBatch::link_attr)?;
        }
    }
    Ok(())
}

/// Pushes one attribute with `push`; scalars borrowed, arrays and maps (rare) owned.
fn push_attr(
    batch: &mut SpanBatch,
    kv: &KeyValue,
    push: impl FnOnce(&mut SpanBatch, &str, ValueRef<'_>),
) -> Result<(), NotUtf8> {
    let key = text(&kv.key)?;
    match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
        None | Some(Value::Strindex(_)) => push(batch, key, ValueRef::Empty),
        Some(Value::Str(s)) => push(batch, key, ValueRef::Str(text(s)?)),
        Some(Value::Bool(b)) => push(batch, key, ValueRef::Bool(*b)),
        Some(Value::Int(i)) => push(batch, key, ValueRef::Int(*i)),
        Some(Value::Double(d)) => push(batch, key, ValueRef::Double(*d)),
        Some(Value::Bytes(b)) => push(batch, key, ValueRef::Bytes(b)),
        Some(Value::Array(array)) => {
            let items = array.values.iter().map(owned_value).collect::<Result<Vec<_>, _>>()?;
            push(batch, key, ValueRef::Array(&items));
        }
        Some(Value::Kvlist(list)) => {
            let pairs = list.values.iter().map(owned_pair).collect::<Result<Vec<_>, _>>()?;
            push(batch, key, ValueRef::Map(&pairs));
        }
    }
    Ok(())
}

fn owned_pair(kv: &KeyValue) -> Result<OwnedKeyValue, NotUtf8> {
    let value = match &kv.value {
        Some(value) => owned_value(value)?,
        None => AnyValue::Empty,
    };
    Ok(OwnedKeyValue { key: text(&kv.key)?.to_owned(), value })
}

/// The owned form of a value; recursion is bounded by the nesting check.
fn owned_value(value: &AnyValueMessage) -> Result<AnyValue, NotUtf8> {
    Ok(match &value.value {
        None | Some(Value::Strindex(_)) => AnyValue::Empty,
        Some(Value::Str(s)) => AnyValue::Str(text(s)?.to_owned()),
        Some(Value::Bool(b)) => AnyValue::Bool(*b),
        Some(Value::Int(i)) => AnyValue::Int(*i),
        Some(Value::Double(d)) => AnyValue::Double(*d),
        Some(Value::Bytes(b)) => AnyValue::Bytes(b.to_vec()),
        Some(Value::Array(array)) => {
            AnyValue::Array(array.values.iter().map(owned_value).collect::<Result<Vec<_>, _>>()?)
        }
        Some(Value::Kvlist(list)) => AnyValue::Map(list.values.iter().map(owned_pair).collect::<Result<Vec<_>, _>>()?),
    })
}
