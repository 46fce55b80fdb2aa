//! The typed-model OTLP/JSON decoder that `otlp_json::decode_json` replaced: serde's
//! derived structs first, then the batch. Kept for tests only, as the reference the
//! streaming decoder must agree with (results, rejections and error messages).
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use serde::Deserialize;
use spanstore_engine::{SpanBatch, SpanFields, SpanId, TraceId};

use crate::common::{self, Rejections};
use crate::otlp_json::{utf8, Enum, JsonKeyValue, JsonStatus, Text, Uint32, Uint64, Value, FORMAT};
use crate::{Decoded, IngestError};

/// Decodes one OTLP/JSON `ExportTraceServiceRequest` object. JSON that is not one is
/// an error; invalid spans inside a well-formed request are left out and counted.
pub(crate) fn decode_json(bytes: &[u8]) -> Result<Decoded, IngestError> {
    let request: Request<'_> = serde_json::from_str(utf8(bytes, FORMAT)?).map_err(|e| IngestError::json(FORMAT, e))?;
    let mut batch = SpanBatch::new();
    let mut rejections = Rejections::default();
    for (resource_index, resource_spans) in request.resource_spans.iter().flatten().enumerate() {
        let resource = resource_spans.resource.as_ref();
        let resource_attrs = resource.and_then(|r| r.attributes.as_deref()).unwrap_or_default();
        let resource_problem =
            check_attrs(resource_attrs).err().map(|e| format!("resourceSpans[{resource_index}].resource.{e}"));
        let mut resource_open = false;
        for (scope_index, scope_spans) in resource_spans.scope_spans.iter().flatten().enumerate() {
            let scope = scope_spans.scope.as_ref();
            let scope_attrs = scope.and_then(|s| s.attributes.as_deref()).unwrap_or_default();
            let scope_problem = check_attrs(scope_attrs)
                .err()
                .map(|e| format!("resourceSpans[{resource_index}].scopeSpans[{scope_index}].scope.{e}"));
            let mut scope_open = false;
            for (span_index, span) in scope_spans.spans.iter().flatten().enumerate() {
                let checked = match resource_problem.as_ref().or(scope_problem.as_ref()) {
                    Some(problem) => Err(problem.clone()),
                    None => check_span(span).map_err(|e| {
                        format!("resourceSpans[{resource_index}].scopeSpans[{scope_index}].spans[{span_index}].{e}")
                    }),
                };
                let (fields, links) = match checked {
                    Ok(checked) => checked,
                    Err(reason) => {
                        rejections.reject(|| reason);
                        continue;
                    }
                };
                if !resource_open {
                    let dropped = resource.map(|r| r.dropped_attributes_count.0).unwrap_or(0);
                    batch.begin_resource(&resource_spans.schema_url.0, dropped);
                    for kv in resource_attrs {
                        batch.resource_attr(&kv.key.0, kv.value_ref());
                    }
                    resource_open = true;
                }
                if !scope_open {
                    let (name, version, dropped) = scope
                        .map(|s| (s.name.0.as_ref(), s.version.0.as_ref(), s.dropped_attributes_count.0))
                        .unwrap_or(("", "", 0));
                    batch.begin_scope(name, version, &scope_spans.schema_url.0, dropped);
                    for kv in scope_attrs {
                        batch.scope_attr(&kv.key.0, kv.value_ref());
                    }
                    scope_open = true;
                }
                batch.push_span(&fields);
                for kv in span.attributes.iter().flatten() {
                    batch.span_attr(&kv.key.0, kv.value_ref());
                }
                for event in span.events.iter().flatten() {
                    batch.push_event(event.time_unix_nano.0, &event.name.0, event.dropped_attributes_count.0);
                    for kv in event.attributes.iter().flatten() {
                        batch.event_attr(&kv.key.0, kv.value_ref());
                    }
                }
                for (link, (trace_id, span_id)) in span.links.iter().flatten().zip(links) {
                    batch.push_link(
                        trace_id,
                        span_id,
                        &link.trace_state.0,
                        link.flags.0,
                        link.dropped_attributes_count.0,
                    );
                    for kv in link.attributes.iter().flatten() {
                        batch.link_attr(&kv.key.0, kv.value_ref());
                    }
                }
            }
        }
    }
    rejections.finish(batch)
}

type CheckedSpan<'a> = (SpanFields<'a>, Vec<(TraceId, SpanId)>);

/// Checks everything that can make a span invalid before any of it is pushed.
fn check_span<'a>(span: &'a JsonSpan<'_>) -> Result<CheckedSpan<'a>, String> {
    let trace_id = common::trace_id_from_hex(&span.trace_id.0).map_err(|e| format!("traceId: {e}"))?;
    let span_id = common::span_id_from_hex(&span.span_id.0).map_err(|e| format!("spanId: {e}"))?;
    let parent_span_id =
        common::parent_id_from_hex(&span.parent_span_id.0).map_err(|e| format!("parentSpanId: {e}"))?;
    let kind = common::kind_from_code(span.kind.0).map_err(|e| format!("kind: {e}"))?;
    let status = span.status.as_ref();
    let status_code =
        common::status_from_code(status.map(|s| s.code.0).unwrap_or(0)).map_err(|e| format!("status.code: {e}"))?;
    let duration_ns = common::duration_ns(span.start_time_unix_nano.0, span.end_time_unix_nano.0)?;
    check_attrs(span.attributes.as_deref().unwrap_or_default())?;
    for (index, event) in span.events.iter().flatten().enumerate() {
        check_attrs(event.attributes.as_deref().unwrap_or_default()).map_err(|e| format!("events[{index}].{e}"))?;
    }
    let mut links = Vec::new();
    for (index, link) in span.links.iter().flatten().enumerate() {
        // Link ids are stored as given (all-zero included); only their form is checked.
        let trace_id = common::hex_bytes::<16>(&link.trace_id.0).map_err(|e| format!("links[{index}].traceId: {e}"))?;
        let span_id = common::hex_bytes::<8>(&link.span_id.0).map_err(|e| format!("links[{index}].spanId: {e}"))?;
        check_attrs(link.attributes.as_deref().unwrap_or_default()).map_err(|e| format!("links[{index}].{e}"))?;
        links.push((TraceId(trace_id), SpanId(span_id)));
    }
    let fields = SpanFields {
        trace_id,
        span_id,
        parent_span_id,
        trace_state: &span.trace_state.0,
        name: &span.name.0,
        kind,
        start_unix_nano: span.start_time_unix_nano.0,
        duration_ns,
        status_code,
        status_message: status.map(|s| s.message.0.as_ref()).unwrap_or(""),
        flags: span.flags.0,
        dropped_attributes_count: span.dropped_attributes_count.0,
        dropped_events_count: span.dropped_events_count.0,
        dropped_links_count: span.dropped_links_count.0,
    };
    Ok((fields, links))
}

fn check_attrs(attrs: &[JsonKeyValue<'_>]) -> Result<(), String> {
    for (index, kv) in attrs.iter().enumerate() {
        if let Value::Owned(value) = &kv.value {
            common::check_depth(value, 0).map_err(|e| format!("attributes[{index}] ({:?}): {e}", kv.key.0))?;
        }
    }
    Ok(())
}

#[derive(Deserialize)]
struct Request<'a> {
    #[serde(borrow, default, rename = "resourceSpans", alias = "resource_spans")]
    resource_spans: Option<Vec<ResourceSpans<'a>>>,
}

#[derive(Deserialize)]
struct ResourceSpans<'a> {
    #[serde(borrow, default)]
    resource: Option<JsonResource<'a>>,
    #[serde(borrow, default, rename = "scopeSpans", alias = "scope_spans")]
    scope_spans: Option<Vec<ScopeSpans<'a>>>,
    #[serde(borrow, default, rename = "schemaUrl", alias = "schema_url")]
    schema_url: Text<'a>,
}

#[derive(Deserialize)]
struct JsonResource<'a> {
    #[serde(borrow, default)]
    attributes: Option<Vec<JsonKeyValue<'a>>>,
    #[serde(default, rename = "droppedAttributesCount", alias = "dropped_attributes_count")]
    dropped_attributes_count: Uint32,
}

#[derive(Deserialize)]
struct ScopeSpans<'a> {
    #[serde(borrow, default)]
    scope: Option<JsonScope<'a>>,
    #[serde(borrow, default)]
    spans: Option<Vec<JsonSpan<'a>>>,
    #[serde(borrow, default, rename = "schemaUrl", alias = "schema_url")]
    schema_url: Text<'a>,
}

#[derive(Deserialize)]
struct JsonScope<'a> {
    #[serde(borrow, default)]
    name: Text<'a>,
    #[serde(borrow, default)]
    version: Text<'a>,
    #[serde(borrow, default)]
    attributes: Option<Vec<JsonKeyValue<'a>>>,
    #[serde(default, rename = "droppedAttributesCount", alias = "dropped_attributes_count")]
    dropped_attributes_count: Uint32,
}

#[derive(Deserialize)]
struct JsonSpan<'a> {
    #[serde(borrow, default, rename = "traceId", alias = "trace_id")]
    trace_id: Text<'a>,
    #[serde(borrow, default, rename = "spanId", alias = "span_id")]
    span_id: Text<'a>,
    #[serde(borrow, default, rename = "traceState", alias = "trace_state")]
    trace_state: Text<'a>,
    #[serde(borrow, default, rename = "parentSpanId", alias = "parent_span_id")]
    parent_span_id: Text<'a>,
    #[serde(default)]
    flags: Uint32,
    #[serde(borrow, default)]
    name: Text<'a>,
    #[serde(default)]
    kind: Enum,
    #[serde(default, rename = "startTimeUnixNano", alias = "start_time_unix_nano")]
    start_time_unix_nano: Uint64,
    #[serde(default, rename = "endTimeUnixNano", alias = "end_time_unix_nano")]
    end_time_unix_nano: Uint64,
    #[serde(borrow, default)]
    attributes: Option<Vec<JsonKeyValue<'a>>>,
    #[serde(default, rename = "droppedAttributesCount", alias = "dropped_attributes_count")]
    dropped_attributes_count: Uint32,
    #[serde(borrow, default)]
    events: Option<Vec<JsonEvent<'a>>>,
    #[serde(default, rename = "droppedEventsCount", alias = "dropped_events_count")]
    dropped_events_count: Uint32,
    #[serde(borrow, default)]
    links: Option<Vec<JsonLink<'a>>>,
    #[serde(default, rename = "droppedLinksCount", alias = "dropped_links_count")]
    dropped_links_count: Uint32,
    #[serde(borrow, default)]
    status: Option<JsonStatus<'a>>,
}

#[derive(Deserialize)]
struct JsonEvent<'a> {
    #[serde(default, rename = "timeUnixNano", alias = "time_unix_nano")]
    time_unix_nano: Uint64,
    #[serde(borrow, default)]
    name: Text<'a>,
    #[serde(borrow, default)]
    attributes: Option<Vec<JsonKeyValue<'a>>>,
    #[serde(default, rename = "droppedAttributesCount", alias = "dropped_attributes_count")]
    dropped_attributes_count: Uint32,
}

#[derive(Deserialize)]
struct JsonLink<'a> {
    #[serde(borrow, default, rename = "traceId", alias = "trace_id")]
    trace_id: Text<'a>,
    #[serde(borrow, default, rename = "spanId", alias = "span_id")]
    span_id: Text<'a>,
    #[serde(borrow, default, rename = "traceState", alias = "trace_state")]
    trace_state: Text<'a>,
    #[serde(borrow, default)]
    attributes: Option<Vec<JsonKeyValue<'a>>>,
    #[serde(default, rename = "droppedAttributesCount", alias = "dropped_attributes_count")]
    dropped_attributes_count: Uint32,
    #[serde(default)]
    flags: Uint32,
}
