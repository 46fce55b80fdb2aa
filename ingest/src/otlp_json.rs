//! OTLP/JSON: the JSON encoding of `ExportTraceServiceRequest`
//! (<https://opentelemetry.io/docs/specs/otlp/#json-protobuf-encoding>), both ways.
//!
//! Decoding follows the proto3 JSON mapping with OTLP's exceptions: keys in
//! lowerCamelCase (the original snake_case names are accepted too), trace and span ids
//! as hex (either case in, lowercase out), 64-bit integers as decimal strings (numbers
//! are accepted too), enums as integers (their names are accepted too), doubles as
//! numbers or the strings `"NaN"`, `"Infinity"`, `"-Infinity"`, bytes as base64,
//! `null` as the default value, and unknown fields ignored. The typed serde model
//! borrows every string it can from the input, and the spans go straight into a
//! [`SpanBatch`].
//!
//! Encoding writes one request object, grouped by resource and scope, losslessly for
//! everything the span model holds: doubles are written in their shortest round-trip
//! form (so `-0.0` stays `-0.0`), non-finite doubles as the strings above, empty
//! values as `{}`.
#![deny(clippy::unwrap_used, clippy::indexing_slicing)]

use std::borrow::Cow;
use std::fmt;
use std::io::Write as _;

use base64::Engine as _;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use spanstore_engine::batch::{Attrs, ValueShape, ValueView, MAX_NESTING_DEPTH};
use spanstore_engine::{AnyValue, KeyValue, Span, SpanBatch, SpanFields, SpanId, TraceId, ValueRef};

use crate::common::{self, Rejections};
use crate::{Decoded, IngestError};

const FORMAT: &str = "OTLP/JSON";

/// Decodes one OTLP/JSON `ExportTraceServiceRequest` object. JSON that is not one is
/// an error; invalid spans inside a well-formed request are left out and counted.
pub fn decode_json(bytes: &[u8]) -> Result<Decoded, IngestError> {
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

/// The payload as text. Checking UTF-8 once up front is much cheaper than serde_json's
/// check of every string it borrows from a byte slice.
pub(crate) fn utf8<'a>(bytes: &'a [u8], format: &'static str) -> Result<&'a str, IngestError> {
    std::str::from_utf8(bytes)
        .map_err(|e| IngestError::Json { format, reason: format!("invalid UTF-8 at byte {}", e.valid_up_to()) })
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

// ----- the serde model -----------------------------------------------------------------

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

#[derive(Deserialize)]
struct JsonStatus<'a> {
    #[serde(borrow, default)]
    message: Text<'a>,
    #[serde(default)]
    code: Enum,
}

#[derive(Deserialize)]
struct JsonKeyValue<'a> {
    #[serde(borrow, default)]
    key: Text<'a>,
    #[serde(borrow, default)]
    value: Value<'a>,
}

impl JsonKeyValue<'_> {
    fn value_ref(&self) -> ValueRef<'_> {
        match &self.value {
            Value::Str(s) => ValueRef::Str(s),
            Value::Bytes(b) => ValueRef::Bytes(b),
            Value::Owned(value) => value.into(),
        }
    }
}

/// A string that borrows from the input when it has no escapes; `null` is empty.
#[derive(Default)]
pub(crate) struct Text<'a>(pub(crate) Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TextVisitor;
        impl<'de> Visitor<'de> for TextVisitor {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(v)))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Text::default())
            }
        }
        deserializer.deserialize_any(TextVisitor)
    }
}

/// Parses an unsigned integer given as a JSON number or a decimal string.
fn parse_unsigned<E: de::Error>(text: &str, max: u64) -> Result<u64, E> {
    text.parse::<u64>()
        .ok()
        .filter(|&v| v <= max)
        .ok_or_else(|| E::custom(format_args!("expected an integer from 0 to {max}, found {text:?}")))
}

macro_rules! unsigned_field {
    ($name:ident, $ty:ty, $doc:expr) => {
        #[doc = $doc]
        #[derive(Default, Clone, Copy)]
        pub(crate) struct $name(pub(crate) $ty);

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                struct V;
                impl<'de> Visitor<'de> for V {
                    type Value = $name;
                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        write!(f, "an integer from 0 to {} as a number or a decimal string", <$ty>::MAX)
                    }
                    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                        <$ty>::try_from(v).map($name).map_err(|_| E::invalid_value(de::Unexpected::Unsigned(v), &self))
                    }
                    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                        <$ty>::try_from(v).map($name).map_err(|_| E::invalid_value(de::Unexpected::Signed(v), &self))
                    }
                    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                        let value = parse_unsigned::<E>(v, u64::from(<$ty>::MAX))?;
                        <$ty>::try_from(value).map($name).map_err(|_| E::invalid_value(de::Unexpected::Str(v), &self))
                    }
                    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                        Ok($name(0))
                    }
                }
                deserializer.deserialize_any(V)
            }
        }
    };
}

unsigned_field!(Uint64, u64, "A uint64 / fixed64 field: a decimal string or a number.");
unsigned_field!(Uint32, u32, "A uint32 / fixed32 field: a number or a decimal string.");

/// An enum field: its number (as a number or a string) or its proto name.
#[derive(Default, Clone, Copy)]
struct Enum(i64);

fn enum_from_name(name: &str) -> Option<i64> {
    let code = match name {
        "SPAN_KIND_UNSPECIFIED" | "STATUS_CODE_UNSET" => 0,
        "SPAN_KIND_INTERNAL" | "STATUS_CODE_OK" => 1,
        "SPAN_KIND_SERVER" | "STATUS_CODE_ERROR" => 2,
        "SPAN_KIND_CLIENT" => 3,
        "SPAN_KIND_PRODUCER" => 4,
        "SPAN_KIND_CONSUMER" => 5,
        _ => return name.parse().ok(),
    };
    Some(code)
}

impl<'de> Deserialize<'de> for Enum {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Enum;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an enum number or name")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                // Out-of-range numbers are kept as an invalid code so the span is rejected.
                Ok(Enum(i64::try_from(v).unwrap_or(i64::MAX)))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Ok(Enum(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                enum_from_name(v).map(Enum).ok_or_else(|| E::invalid_value(de::Unexpected::Str(v), &self))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Enum(0))
            }
        }
        deserializer.deserialize_any(V)
    }
}

/// An attribute value: strings and bytes kept apart for the hot path (borrowed where
/// possible), everything else in the model's owned form.
enum Value<'a> {
    Str(Cow<'a, str>),
    Bytes(Vec<u8>),
    Owned(AnyValue),
}

impl Default for Value<'_> {
    fn default() -> Self {
        Value::Owned(AnyValue::Empty)
    }
}

impl Value<'_> {
    fn into_owned(self) -> AnyValue {
        match self {
            Value::Str(s) => AnyValue::Str(s.into_owned()),
            Value::Bytes(b) => AnyValue::Bytes(b),
            Value::Owned(value) => value,
        }
    }
}

#[derive(Clone, Copy)]
enum ValueField {
    Str,
    Bool,
    Int,
    Double,
    Array,
    Kvlist,
    Bytes,
    Other,
}

fn value_field(key: &str) -> ValueField {
    match key {
        "stringValue" | "string_value" => ValueField::Str,
        "boolValue" | "bool_value" => ValueField::Bool,
        "intValue" | "int_value" => ValueField::Int,
        "doubleValue" | "double_value" => ValueField::Double,
        "arrayValue" | "array_value" => ValueField::Array,
        "kvlistValue" | "kvlist_value" => ValueField::Kvlist,
        "bytesValue" | "bytes_value" => ValueField::Bytes,
        _ => ValueField::Other,
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Value<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Value<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an AnyValue object")
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Value::default())
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                // A oneof: when several fields are set, the last one wins, as in protobuf.
                let mut value = Value::default();
                while let Some(key) = map.next_key::<Text<'de>>()? {
                    value = match value_field(&key.0) {
                        ValueField::Str => Value::Str(map.next_value::<Text<'de>>()?.0),
                        ValueField::Bool => Value::Owned(match map.next_value::<Option<bool>>()? {
                            Some(b) => AnyValue::Bool(b),
                            None => AnyValue::Bool(false),
                        }),
                        ValueField::Int => Value::Owned(AnyValue::Int(map.next_value::<Int64>()?.0)),
                        ValueField::Double => Value::Owned(AnyValue::Double(map.next_value::<Double>()?.0)),
                        ValueField::Bytes => Value::Bytes(map.next_value::<Base64>()?.0),
                        ValueField::Array => Value::Owned(AnyValue::Array(map.next_value::<ArrayValue>()?.0)),
                        ValueField::Kvlist => Value::Owned(AnyValue::Map(map.next_value::<KvlistValue>()?.0)),
                        ValueField::Other => {
                            map.next_value::<IgnoredAny>()?;
                            continue;
                        }
                    };
                }
                Ok(value)
            }
        }
        deserializer.deserialize_any(V)
    }
}

/// An int64 field: a decimal string or a number.
struct Int64(i64);

impl<'de> Deserialize<'de> for Int64 {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Int64;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an int64 as a decimal string or a number")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Ok(Int64(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                i64::try_from(v).map(Int64).map_err(|_| E::invalid_value(de::Unexpected::Unsigned(v), &self))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                v.parse().map(Int64).map_err(|_| E::invalid_value(de::Unexpected::Str(v), &self))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Int64(0))
            }
        }
        deserializer.deserialize_any(V)
    }
}

/// A double field: a number, or `"NaN"`, `"Infinity"`, `"-Infinity"` or a numeric
/// string, as proto3 JSON allows.
struct Double(f64);

impl<'de> Deserialize<'de> for Double {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Double;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number or \"NaN\", \"Infinity\", \"-Infinity\"")
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
                Ok(Double(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Ok(Double(v as f64))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(Double(v as f64))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                match v {
                    "NaN" => Ok(Double(f64::NAN)),
                    "Infinity" => Ok(Double(f64::INFINITY)),
                    "-Infinity" => Ok(Double(f64::NEG_INFINITY)),
                    // Rust also parses "inf" and "nan", which proto3 JSON does not allow.
                    _ if v.bytes().all(|c| c.is_ascii_digit() || matches!(c, b'-' | b'+' | b'.' | b'e' | b'E')) => {
                        v.parse().map(Double).map_err(|_| E::invalid_value(de::Unexpected::Str(v), &self))
                    }
                    _ => Err(E::invalid_value(de::Unexpected::Str(v), &self)),
                }
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Double(0.0))
            }
        }
        deserializer.deserialize_any(V)
    }
}

/// A bytes field: base64, standard or URL-safe alphabet, padded or not.
struct Base64(Vec<u8>);

pub(crate) fn decode_base64(text: &str) -> Option<Vec<u8>> {
    use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
    use base64::engine::DecodePaddingMode;
    const CONFIG: GeneralPurposeConfig =
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
    const STANDARD: GeneralPurpose = GeneralPurpose::new(&base64::alphabet::STANDARD, CONFIG);
    const URL_SAFE: GeneralPurpose = GeneralPurpose::new(&base64::alphabet::URL_SAFE, CONFIG);
    STANDARD.decode(text).or_else(|_| URL_SAFE.decode(text)).ok()
}

impl<'de> Deserialize<'de> for Base64 {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = Text::deserialize(deserializer)?;
        decode_base64(&text.0)
            .map(Base64)
            .ok_or_else(|| de::Error::custom(format_args!("bytesValue: invalid base64 {:?}", text.0)))
    }
}

/// `{"values": [AnyValue, ...]}`.
struct ArrayValue(Vec<AnyValue>);

/// `{"values": [KeyValue, ...]}`.
struct KvlistValue(Vec<KeyValue>);

struct OwnedValues<T>(Vec<T>);

impl<'de> Deserialize<'de> for OwnedValues<AnyValue> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = OwnedValues<AnyValue>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an array of AnyValue objects")
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(OwnedValues(Vec::new()))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
                while let Some(item) = seq.next_element::<Value<'de>>()? {
                    items.push(item.into_owned());
                }
                Ok(OwnedValues(items))
            }
        }
        deserializer.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for OwnedValues<KeyValue> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = OwnedValues<KeyValue>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an array of KeyValue objects")
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(OwnedValues(Vec::new()))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut pairs = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
                while let Some(kv) = seq.next_element::<JsonKeyValue<'de>>()? {
                    pairs.push(KeyValue { key: kv.key.0.into_owned(), value: kv.value.into_owned() });
                }
                Ok(OwnedValues(pairs))
            }
        }
        deserializer.deserialize_any(V)
    }
}

/// Reads `{"values": [...]}`, ignoring other keys; `null` is an empty list.
fn values_object<'de, D, T>(deserializer: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    OwnedValues<T>: Deserialize<'de>,
{
    struct V<T>(std::marker::PhantomData<T>);
    impl<'de, T> Visitor<'de> for V<T>
    where
        OwnedValues<T>: Deserialize<'de>,
    {
        type Value = Vec<T>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an object with \"values\"")
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(Vec::new())
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut values = Vec::new();
            while let Some(key) = map.next_key::<Text<'de>>()? {
                if key.0 == "values" {
                    values = map.next_value::<OwnedValues<T>>()?.0;
                } else {
                    map.next_value::<IgnoredAny>()?;
                }
            }
            Ok(values)
        }
    }
    deserializer.deserialize_any(V(std::marker::PhantomData))
}

impl<'de> Deserialize<'de> for ArrayValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        values_object(deserializer).map(ArrayValue)
    }
}

impl<'de> Deserialize<'de> for KvlistValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        values_object(deserializer).map(KvlistValue)
    }
}

// ----- encoding -------------------------------------------------------------------------

/// Writes the batch as one OTLP/JSON `ExportTraceServiceRequest` object (no newline),
/// grouped by resource and scope.
///
/// It writes straight from the batch's columns, byte for byte what
/// [`encode_json_spans`] writes for [`SpanBatch::to_spans`], without building them.
pub fn encode_json(batch: &SpanBatch, out: &mut Vec<u8>) {
    out.extend_from_slice(b"{\"resourceSpans\":[");
    for (resource_index, group) in common::group_rows(batch).iter().enumerate() {
        if resource_index > 0 {
            out.push(b',');
        }
        let (resource_dropped, resource_schema_url) = batch.resource_meta(group.first_row);
        out.extend_from_slice(b"{\"resource\":{\"attributes\":");
        write_attrs_view(out, batch.resource_attributes(group.first_row), 0);
        write_u32_field(out, "droppedAttributesCount", resource_dropped);
        out.extend_from_slice(b"},\"scopeSpans\":[");
        for (scope_index, scope_group) in group.scopes.iter().enumerate() {
            if scope_index > 0 {
                out.push(b',');
            }
            let scope = batch.scope_view(scope_group.rows.first().copied().unwrap_or_default());
            out.extend_from_slice(b"{\"scope\":{\"name\":");
            write_str(out, scope.name);
            out.extend_from_slice(b",\"version\":");
            write_str(out, scope.version);
            out.extend_from_slice(b",\"attributes\":");
            write_attrs_view(out, scope.attributes, 0);
            write_u32_field(out, "droppedAttributesCount", scope.dropped_attributes_count);
            out.extend_from_slice(b"},\"spans\":[");
            for (span_index, &row) in scope_group.rows.iter().enumerate() {
                if span_index > 0 {
                    out.push(b',');
                }
                write_row(out, batch, row);
            }
            out.push(b']');
            write_str_field(out, "schemaUrl", scope.schema_url);
            out.push(b'}');
        }
        out.push(b']');
        write_str_field(out, "schemaUrl", resource_schema_url);
        out.push(b'}');
    }
    out.extend_from_slice(b"]}");
}

/// One span of the batch, as [`write_span`] writes its owned form.
fn write_row(out: &mut Vec<u8>, batch: &SpanBatch, row: usize) {
    out.extend_from_slice(b"{\"traceId\":\"");
    write_hex(out, &batch.trace_id(row).0);
    out.extend_from_slice(b"\",\"spanId\":\"");
    write_hex(out, &batch.span_id(row).0);
    out.push(b'"');
    if let Some(parent) = batch.parent_span_id(row) {
        out.extend_from_slice(b",\"parentSpanId\":\"");
        write_hex(out, &parent.0);
        out.push(b'"');
    }
    write_str_field(out, "traceState", batch.trace_state(row));
    write_u32_field(out, "flags", batch.flags(row));
    out.extend_from_slice(b",\"name\":");
    write_str(out, batch.name(row));
    out.extend_from_slice(b",\"kind\":");
    write_u64(out, u64::from(batch.kind(row) as u8));
    let start = batch.start_unix_nano(row);
    out.extend_from_slice(b",\"startTimeUnixNano\":\"");
    write_u64(out, start);
    out.extend_from_slice(b"\",\"endTimeUnixNano\":\"");
    // As `Span::end_unix_nano`: a start near u64::MAX with a long duration saturates.
    write_u64(out, start.saturating_add(batch.duration_ns(row)));
    out.extend_from_slice(b"\",\"attributes\":");
    write_attrs_view(out, batch.span_attributes(row), 0);
    let (dropped_attributes, dropped_events, dropped_links) = batch.dropped_counts(row);
    write_u32_field(out, "droppedAttributesCount", dropped_attributes);
    let events = batch.events(row);
    if events.len() > 0 {
        out.extend_from_slice(b",\"events\":[");
        for (index, event) in events.enumerate() {
            if index > 0 {
                out.push(b',');
            }
            out.extend_from_slice(b"{\"timeUnixNano\":\"");
            write_u64(out, event.time_unix_nano);
            out.extend_from_slice(b"\",\"name\":");
            write_str(out, event.name);
            out.extend_from_slice(b",\"attributes\":");
            write_attrs_view(out, event.attributes, 0);
            write_u32_field(out, "droppedAttributesCount", event.dropped_attributes_count);
            out.push(b'}');
        }
        out.push(b']');
    }
    write_u32_field(out, "droppedEventsCount", dropped_events);
    let links = batch.links(row);
    if links.len() > 0 {
        out.extend_from_slice(b",\"links\":[");
        for (index, link) in links.enumerate() {
            if index > 0 {
                out.push(b',');
            }
            out.extend_from_slice(b"{\"traceId\":\"");
            write_hex(out, &link.trace_id.0);
            out.extend_from_slice(b"\",\"spanId\":\"");
            write_hex(out, &link.span_id.0);
            out.push(b'"');
            write_str_field(out, "traceState", link.trace_state);
            out.extend_from_slice(b",\"attributes\":");
            write_attrs_view(out, link.attributes, 0);
            write_u32_field(out, "droppedAttributesCount", link.dropped_attributes_count);
            write_u32_field(out, "flags", link.flags);
            out.push(b'}');
        }
        out.push(b']');
    }
    write_u32_field(out, "droppedLinksCount", dropped_links);
    write_status(out, batch.status_code(row) as u8, batch.status_message(row));
    out.push(b'}');
}

/// `,"status":{...}` unless both the code and the message are the defaults.
fn write_status(out: &mut Vec<u8>, code: u8, message: &str) {
    if code != 0 || !message.is_empty() {
        out.extend_from_slice(b",\"status\":{");
        if !message.is_empty() {
            out.extend_from_slice(b"\"message\":");
            write_str(out, message);
            if code != 0 {
                out.push(b',');
            }
        }
        if code != 0 {
            out.extend_from_slice(b"\"code\":");
            write_u64(out, u64::from(code));
        }
        out.push(b'}');
    }
}

/// Attributes borrowed from a batch, as [`write_attrs`] writes owned ones; `depth` is
/// the nesting of the list's values.
fn write_attrs_view(out: &mut Vec<u8>, attrs: Attrs<'_>, depth: usize) {
    out.push(b'[');
    for (index, (key, value)) in attrs.iter().enumerate() {
        if index > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"key\":");
        write_str(out, key);
        out.extend_from_slice(b",\"value\":");
        write_value_view(out, value, depth);
        out.push(b'}');
    }
    out.push(b']');
}

/// A value borrowed from a batch, as [`write_value`] writes its owned form (which
/// `ValueView::to_any` cuts to empty below [`MAX_NESTING_DEPTH`] levels).
fn write_value_view(out: &mut Vec<u8>, value: ValueView<'_>, depth: usize) {
    if depth > MAX_NESTING_DEPTH {
        out.extend_from_slice(b"{}");
        return;
    }
    match value.shape() {
        ValueShape::Empty => out.extend_from_slice(b"{}"),
        ValueShape::Str(s) => {
            out.extend_from_slice(b"{\"stringValue\":");
            write_str(out, s);
            out.push(b'}');
        }
        ValueShape::Int(i) => {
            out.extend_from_slice(b"{\"intValue\":\"");
            if i < 0 {
                out.push(b'-');
            }
            write_u64(out, i.unsigned_abs());
            out.extend_from_slice(b"\"}");
        }
        ValueShape::Double(d) => {
            out.extend_from_slice(b"{\"doubleValue\":");
            write_double(out, d);
            out.push(b'}');
        }
        ValueShape::Bool(b) => {
            out.extend_from_slice(if b { b"{\"boolValue\":true}" } else { b"{\"boolValue\":false}" });
        }
        ValueShape::Bytes(bytes) => write_bytes_value(out, bytes),
        ValueShape::Array(items) => {
            out.extend_from_slice(b"{\"arrayValue\":{\"values\":[");
            for (index, (_, item)) in items.iter().enumerate() {
                if index > 0 {
                    out.push(b',');
                }
                write_value_view(out, item, depth + 1);
            }
            out.extend_from_slice(b"]}}");
        }
        ValueShape::Map(pairs) => {
            out.extend_from_slice(b"{\"kvlistValue\":{\"values\":");
            write_attrs_view(out, pairs, depth + 1);
            out.extend_from_slice(b"}}");
        }
    }
}

/// A decimal number, without going through `fmt`.
fn write_u64(out: &mut Vec<u8>, mut value: u64) {
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    loop {
        start -= 1;
        if let Some(slot) = digits.get_mut(start) {
            *slot = b'0' + (value % 10) as u8;
        }
        value /= 10;
        if value == 0 || start == 0 {
            break;
        }
    }
    out.extend_from_slice(digits.get(start..).unwrap_or_default());
}

/// Writes owned spans as one OTLP/JSON `ExportTraceServiceRequest` object (no
/// newline), grouped by resource and scope.
pub fn encode_json_spans(spans: &[Span], out: &mut Vec<u8>) {
    out.extend_from_slice(b"{\"resourceSpans\":[");
    for (resource_index, group) in common::group_spans(spans).iter().enumerate() {
        if resource_index > 0 {
            out.push(b',');
        }
        let resource = group.resource;
        out.extend_from_slice(b"{\"resource\":{\"attributes\":");
        write_attrs(out, &resource.attributes);
        write_u32_field(out, "droppedAttributesCount", resource.dropped_attributes_count);
        out.extend_from_slice(b"},\"scopeSpans\":[");
        for (scope_index, scope_group) in group.scopes.iter().enumerate() {
            if scope_index > 0 {
                out.push(b',');
            }
            let scope = scope_group.scope;
            out.extend_from_slice(b"{\"scope\":{\"name\":");
            write_str(out, &scope.name);
            out.extend_from_slice(b",\"version\":");
            write_str(out, &scope.version);
            out.extend_from_slice(b",\"attributes\":");
            write_attrs(out, &scope.attributes);
            write_u32_field(out, "droppedAttributesCount", scope.dropped_attributes_count);
            out.extend_from_slice(b"},\"spans\":[");
            for (span_index, span) in scope_group.spans.iter().enumerate() {
                if span_index > 0 {
                    out.push(b',');
                }
                write_span(out, span);
            }
            out.push(b']');
            write_str_field(out, "schemaUrl", &scope.schema_url);
            out.push(b'}');
        }
        out.push(b']');
        write_str_field(out, "schemaUrl", &resource.schema_url);
        out.push(b'}');
    }
    out.extend_from_slice(b"]}");
}

fn write_span(out: &mut Vec<u8>, span: &Span) {
    out.extend_from_slice(b"{\"traceId\":\"");
    write_hex(out, &span.trace_id.0);
    out.extend_from_slice(b"\",\"spanId\":\"");
    write_hex(out, &span.span_id.0);
    out.push(b'"');
    if let Some(parent) = span.parent_span_id {
        out.extend_from_slice(b",\"parentSpanId\":\"");
        write_hex(out, &parent.0);
        out.push(b'"');
    }
    write_str_field(out, "traceState", &span.trace_state);
    write_u32_field(out, "flags", span.flags);
    out.extend_from_slice(b",\"name\":");
    write_str(out, &span.name);
    let _ = write!(out, ",\"kind\":{}", span.kind as u8);
    // A start near u64::MAX with a long duration has no OTLP form; the end saturates.
    let _ = write!(
        out,
        ",\"startTimeUnixNano\":\"{}\",\"endTimeUnixNano\":\"{}\"",
        span.start_unix_nano,
        span.end_unix_nano()
    );
    out.extend_from_slice(b",\"attributes\":");
    write_attrs(out, &span.attributes);
    write_u32_field(out, "droppedAttributesCount", span.dropped_attributes_count);
    if !span.events.is_empty() {
        out.extend_from_slice(b",\"events\":[");
        for (index, event) in span.events.iter().enumerate() {
            if index > 0 {
                out.push(b',');
            }
            let _ = write!(out, "{{\"timeUnixNano\":\"{}\",\"name\":", event.time_unix_nano);
            write_str(out, &event.name);
            out.extend_from_slice(b",\"attributes\":");
            write_attrs(out, &event.attributes);
            write_u32_field(out, "droppedAttributesCount", event.dropped_attributes_count);
            out.push(b'}');
        }
        out.push(b']');
    }
    write_u32_field(out, "droppedEventsCount", span.dropped_events_count);
    if !span.links.is_empty() {
        out.extend_from_slice(b",\"links\":[");
        for (index, link) in span.links.iter().enumerate() {
            if index > 0 {
                out.push(b',');
            }
            out.extend_from_slice(b"{\"traceId\":\"");
            write_hex(out, &link.trace_id.0);
            out.extend_from_slice(b"\",\"spanId\":\"");
            write_hex(out, &link.span_id.0);
            out.push(b'"');
            write_str_field(out, "traceState", &link.trace_state);
            out.extend_from_slice(b",\"attributes\":");
            write_attrs(out, &link.attributes);
            write_u32_field(out, "droppedAttributesCount", link.dropped_attributes_count);
            write_u32_field(out, "flags", link.flags);
            out.push(b'}');
        }
        out.push(b']');
    }
    write_u32_field(out, "droppedLinksCount", span.dropped_links_count);
    write_status(out, span.status_code as u8, &span.status_message);
    out.push(b'}');
}

/// `,"name":value` for a non-zero count (zero is the default and left out).
fn write_u32_field(out: &mut Vec<u8>, name: &str, value: u32) {
    if value != 0 {
        out.extend_from_slice(b",\"");
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b"\":");
        write_u64(out, u64::from(value));
    }
}

/// `,"name":"text"` for a non-empty string (empty is the default and left out).
fn write_str_field(out: &mut Vec<u8>, name: &str, text: &str) {
    if !text.is_empty() {
        out.extend_from_slice(b",\"");
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b"\":");
        write_str(out, text);
    }
}

fn write_attrs(out: &mut Vec<u8>, attrs: &[KeyValue]) {
    out.push(b'[');
    for (index, kv) in attrs.iter().enumerate() {
        if index > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"key\":");
        write_str(out, &kv.key);
        out.extend_from_slice(b",\"value\":");
        write_value(out, &kv.value);
        out.push(b'}');
    }
    out.push(b']');
}

fn write_value(out: &mut Vec<u8>, value: &AnyValue) {
    match value {
        AnyValue::Empty => out.extend_from_slice(b"{}"),
        AnyValue::Str(s) => {
            out.extend_from_slice(b"{\"stringValue\":");
            write_str(out, s);
            out.push(b'}');
        }
        AnyValue::Int(i) => {
            let _ = write!(out, "{{\"intValue\":\"{i}\"}}");
        }
        AnyValue::Double(d) => {
            out.extend_from_slice(b"{\"doubleValue\":");
            write_double(out, *d);
            out.push(b'}');
        }
        AnyValue::Bool(b) => {
            let _ = write!(out, "{{\"boolValue\":{b}}}");
        }
        AnyValue::Bytes(bytes) => write_bytes_value(out, bytes),
        AnyValue::Array(items) => {
            out.extend_from_slice(b"{\"arrayValue\":{\"values\":[");
            for (index, item) in items.iter().enumerate() {
                if index > 0 {
                    out.push(b',');
                }
                write_value(out, item);
            }
            out.extend_from_slice(b"]}}");
        }
        AnyValue::Map(pairs) => {
            out.extend_from_slice(b"{\"kvlistValue\":{\"values\":");
            write_attrs(out, pairs);
            out.extend_from_slice(b"}}");
        }
    }
}

/// `{"bytesValue":"base64"}`.
fn write_bytes_value(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(b"{\"bytesValue\":\"");
    let start = out.len();
    out.resize(start + base64::encoded_len(bytes.len(), true).unwrap_or(0), 0);
    let written = out
        .get_mut(start..)
        .map(|slot| base64::engine::general_purpose::STANDARD.encode_slice(bytes, slot).unwrap_or(0))
        .unwrap_or(0);
    out.truncate(start + written);
    out.extend_from_slice(b"\"}");
}

/// A double in proto3 JSON: the shortest text that parses back to the same bits (Rust's
/// `Debug` form, which keeps `-0.0` and uses an exponent for very large and small
/// values), or one of the strings `"NaN"`, `"Infinity"`, `"-Infinity"`.
///
/// Every NaN is written as `"NaN"`, so a NaN's payload bits do not survive JSON: the
/// text form has no way to carry them. It comes back as the canonical quiet NaN.
fn write_double(out: &mut Vec<u8>, value: f64) {
    if value.is_nan() {
        out.extend_from_slice(b"\"NaN\"");
    } else if value == f64::INFINITY {
        out.extend_from_slice(b"\"Infinity\"");
    } else if value == f64::NEG_INFINITY {
        out.extend_from_slice(b"\"-Infinity\"");
    } else {
        let _ = write!(out, "{value:?}");
    }
}

fn write_hex(out: &mut Vec<u8>, bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for &byte in bytes {
        out.push(DIGITS.get(usize::from(byte >> 4)).copied().unwrap_or(b'0'));
        out.push(DIGITS.get(usize::from(byte & 0x0f)).copied().unwrap_or(b'0'));
    }
}

/// A JSON string literal: quotes, backslashes and control characters escaped, the rest
/// (UTF-8) as is.
pub(crate) fn write_str(out: &mut Vec<u8>, text: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    let bytes = text.as_bytes();
    let mut start = 0;
    for (index, &byte) in bytes.iter().enumerate() {
        let escape: &[u8] = match byte {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0..=0x1f => b"",
            _ => continue,
        };
        out.extend_from_slice(bytes.get(start..index).unwrap_or_default());
        if escape.is_empty() {
            out.extend_from_slice(b"\\u00");
            out.push(HEX.get(usize::from(byte >> 4)).copied().unwrap_or(b'0'));
            out.push(HEX.get(usize::from(byte & 0x0f)).copied().unwrap_or(b'0'));
        } else {
            out.extend_from_slice(escape);
        }
        start = index + 1;
    }
    out.extend_from_slice(bytes.get(start..).unwrap_or_default());
    out.push(b'"');
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use spanstore_engine::{Event, Link, Resource, Scope, SpanKind, StatusCode};

    /// What `encode_json` wrote before it read the columns: through owned spans.
    fn through_spans(batch: &SpanBatch) -> Vec<u8> {
        let mut out = Vec::new();
        encode_json_spans(&batch.to_spans(), &mut out);
        out
    }

    fn columnar(batch: &SpanBatch) -> Vec<u8> {
        let mut out = Vec::new();
        encode_json(batch, &mut out);
        out
    }

    #[test]
    fn workload_batches_encode_as_through_owned_spans() {
        for seed in [1, 7, 42] {
            for batch in spanstore_workload::batches(seed, 3, 1500) {
                let out = columnar(&batch);
                assert_eq!(String::from_utf8(out).unwrap(), String::from_utf8(through_spans(&batch)).unwrap());
            }
        }
        // The batches `spanstore gen` writes.
        let workload = spanstore_workload::Workload::new(3, 4000, spanstore_workload::Config::default());
        for chunk in 0..workload.chunk_count() {
            for batch in workload.chunk(chunk) {
                assert!(!batch.is_empty());
                assert_eq!(columnar(&batch), through_spans(&batch));
            }
        }
    }

    #[test]
    fn edge_values_encode_as_through_owned_spans() {
        let resource = |name: &str| Resource {
            attributes: vec![KeyValue::new("service.name", name)],
            dropped_attributes_count: 2,
            schema_url: "https://schema/\"r\"".into(),
        };
        let mut nested = AnyValue::Int(i64::MIN);
        for depth in 0..8 {
            nested = if depth % 2 == 0 {
                AnyValue::Array(vec![nested, AnyValue::Double(-0.0), AnyValue::Empty])
            } else {
                AnyValue::Map(vec![KeyValue { key: "k\n".into(), value: nested }])
            };
        }
        let attributes = vec![
            KeyValue { key: "nested".into(), value: nested },
            KeyValue { key: "max".into(), value: AnyValue::Int(i64::MAX) },
            KeyValue { key: "zero".into(), value: AnyValue::Int(0) },
            KeyValue { key: "nan".into(), value: AnyValue::Double(f64::NAN) },
            KeyValue { key: "big".into(), value: AnyValue::Double(1e300) },
            KeyValue { key: "yes".into(), value: AnyValue::Bool(true) },
            KeyValue { key: "no".into(), value: AnyValue::Bool(false) },
            KeyValue { key: "bytes".into(), value: AnyValue::Bytes(vec![0, 255, 7]) },
            KeyValue { key: "\u{1}ctl".into(), value: AnyValue::Str("tab\there \u{7f} é".into()) },
        ];
        let span = |id: u8, service: &str, scope: &str| Span {
            trace_id: TraceId([id; 16]),
            span_id: SpanId([id; 8]),
            parent_span_id: id.is_multiple_of(2).then_some(SpanId([9; 8])),
            trace_state: if id.is_multiple_of(3) { "a=b".into() } else { String::new() },
            name: format!("op {id}"),
            kind: SpanKind::Server,
            start_unix_nano: if id == 3 { u64::MAX - 1 } else { u64::from(id) * 1_000 },
            duration_ns: 10_000,
            status_code: if id.is_multiple_of(2) { StatusCode::Error } else { StatusCode::Unset },
            status_message: if id.is_multiple_of(3) { "bad".into() } else { String::new() },
            flags: u32::from(id),
            resource: resource(service),
            scope: Scope { name: scope.into(), version: "1.0".into(), ..Scope::default() },
            attributes: attributes.clone(),
            dropped_attributes_count: u32::from(id),
            events: vec![
                Event {
                    time_unix_nano: 5,
                    name: "ev".into(),
                    attributes: attributes.clone(),
                    dropped_attributes_count: u32::MAX,
                };
                usize::from(id % 3)
            ],
            dropped_events_count: 1,
            links: vec![
                Link {
                    trace_id: TraceId([0; 16]),
                    span_id: SpanId([1; 8]),
                    trace_state: "x=y".into(),
                    attributes: attributes.clone(),
                    dropped_attributes_count: 0,
                    flags: 3,
                };
                usize::from(id % 2)
            ],
            dropped_links_count: 0,
        };
        // Resources and scopes that come back after others: stored again in the
        // batch, yet grouped with their first appearance.
        let spans = vec![
            span(1, "a", "s1"),
            span(2, "b", "s1"),
            span(3, "a", "s2"),
            span(4, "a", "s1"),
            span(5, "b", "s1"),
            span(6, "c", "s1"),
        ];
        let batch = SpanBatch::from_spans(&spans);
        let out = columnar(&batch);
        assert_eq!(String::from_utf8(out.clone()).unwrap(), String::from_utf8(through_spans(&batch)).unwrap());
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text.matches("\"resource\":").count(), 3, "{text}");
        assert!(text.contains("\"intValue\":\"-9223372036854775808\""), "{text}");
        assert!(text.contains("\"endTimeUnixNano\":\"18446744073709551615\""), "{text}");
        let decoded = decode_json(text.as_bytes()).unwrap();
        assert_eq!(decoded.batch.len(), spans.len());
    }

    #[test]
    fn decimals_are_written_whole() {
        for value in [0, 1, 9, 10, 99, 100, 12_345, u64::from(u32::MAX), u64::MAX - 1, u64::MAX] {
            let mut out = Vec::new();
            write_u64(&mut out, value);
            assert_eq!(out, value.to_string().into_bytes());
        }
    }
}
