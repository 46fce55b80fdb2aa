//! Zipkin v2 JSON: an array of spans (<https://zipkin.io/zipkin-api/#/default/post_spans>)
//! decoded into a [`SpanBatch`], mapped as OpenTelemetry's Zipkin exporter maps spans
//! the other way (<https://opentelemetry.io/docs/specs/otel/trace/sdk_exporters/zipkin/>).
//!
//! - `traceId` (16 or 32 hex digits; 16 are left-padded with zeros to 128 bits), `id`,
//!   `parentId`, `name` become the span's ids and name.
//! - `kind` `CLIENT`/`SERVER`/`PRODUCER`/`CONSUMER` become those kinds; no kind is
//!   `internal` (the exporter leaves the kind out for internal spans).
//! - `timestamp` and `duration` (microseconds) become start and duration in
//!   nanoseconds; a span without a timestamp (an incomplete span) is rejected.
//! - `localEndpoint` becomes the resource: spans with equal local endpoints share one.
//!   `serviceName` is `service.name`; `ipv4` (else `ipv6`) is `network.local.address`,
//!   `port` is `network.local.port`; with both addresses the IPv6 one is
//!   `zipkin.local_endpoint.ipv6`.
//! - `remoteEndpoint` becomes span attributes: `serviceName` is `peer.service`, `ipv4`
//!   (else `ipv6`) `network.peer.address`, `port` `network.peer.port` (int); with both
//!   addresses the IPv6 one is `zipkin.remote_endpoint.ipv6`.
//! - `tags` become string attributes, in order, except: `otel.status_code`
//!   (`OK`/`ERROR`/`UNSET`) and `otel.status_description` set the status; `error` sets
//!   status error (unless `otel.status_code` says otherwise) with the tag's value as the
//!   message when there is no `otel.status_description`; `otel.scope.name` /
//!   `otel.scope.version` (and the older `otel.library.name` / `otel.library.version`)
//!   name the instrumentation scope. An `otel.status_code` of another value stays an
//!   attribute.
//! - `annotations` become events: `timestamp` (microseconds) and `value` as the name.
//! - `shared` and `debug`, when present, become bool attributes `zipkin.shared` and
//!   `zipkin.debug`.
//!
//! Zipkin has no trace state, flags, links or dropped counts: they are empty or zero.
#![deny(clippy::unwrap_used, clippy::indexing_slicing)]

use std::collections::HashMap;
use std::fmt;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use spanstore_engine::{SpanBatch, SpanFields, SpanId, SpanKind, StatusCode, TraceId, ValueRef};

use crate::common::{self, Rejections};
use crate::otlp_json::{Text, Uint32, Uint64};
use crate::{Decoded, IngestError};

const FORMAT: &str = "Zipkin JSON";

#[derive(Deserialize)]
struct ZipkinSpan<'a> {
    #[serde(borrow, default, rename = "traceId")]
    trace_id: Text<'a>,
    #[serde(borrow, default)]
    id: Text<'a>,
    #[serde(borrow, default, rename = "parentId")]
    parent_id: Text<'a>,
    #[serde(borrow, default)]
    name: Text<'a>,
    #[serde(borrow, default)]
    kind: Text<'a>,
    #[serde(default)]
    timestamp: Option<Uint64>,
    #[serde(default)]
    duration: Option<Uint64>,
    #[serde(borrow, default, rename = "localEndpoint")]
    local_endpoint: Option<Endpoint<'a>>,
    #[serde(borrow, default, rename = "remoteEndpoint")]
    remote_endpoint: Option<Endpoint<'a>>,
    #[serde(borrow, default)]
    annotations: Option<Vec<Annotation<'a>>>,
    #[serde(borrow, default)]
    tags: Tags<'a>,
    #[serde(default)]
    debug: Option<bool>,
    #[serde(default)]
    shared: Option<bool>,
}

#[derive(Deserialize, Default)]
struct Endpoint<'a> {
    #[serde(borrow, default, rename = "serviceName")]
    service_name: Text<'a>,
    #[serde(borrow, default)]
    ipv4: Text<'a>,
    #[serde(borrow, default)]
    ipv6: Text<'a>,
    #[serde(default)]
    port: Option<Uint32>,
}

#[derive(Deserialize)]
struct Annotation<'a> {
    #[serde(default)]
    timestamp: Uint64,
    #[serde(borrow, default)]
    value: Text<'a>,
}

/// Tags in their order; values must be strings, as in Zipkin's model.
#[derive(Default)]
struct Tags<'a>(Vec<(Text<'a>, Text<'a>)>);

impl<'de: 'a, 'a> Deserialize<'de> for Tags<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Tags<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object of string tags")
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Tags::default())
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut tags = Vec::with_capacity(map.size_hint().unwrap_or(0).min(64));
                while let Some(key) = map.next_key::<Text<'de>>()? {
                    tags.push((key, map.next_value::<Text<'de>>()?));
                }
                Ok(Tags(tags))
            }
        }
        deserializer.deserialize_any(V)
    }
}

/// What checking a span found: its fields and where its status and scope came from.
struct Checked<'a> {
    fields: SpanFields<'a>,
    scope: (&'a str, &'a str),
}

/// Decodes a JSON array of Zipkin v2 spans. JSON that is not one is an error; invalid
/// spans are left out and counted.
pub fn decode_zipkin_json(bytes: &[u8]) -> Result<Decoded, IngestError> {
    let spans: Vec<ZipkinSpan<'_>> =
        serde_json::from_str(crate::otlp_json::utf8(bytes, FORMAT)?).map_err(|e| IngestError::json(FORMAT, e))?;
    let mut rejections = Rejections::default();
    // (resource group, scope group, span index), so spans can be grouped stably.
    let mut order: Vec<(usize, usize, usize)> = Vec::with_capacity(spans.len());
    let mut checked: Vec<Option<Checked<'_>>> = Vec::with_capacity(spans.len());
    let mut resources: HashMap<EndpointKey<'_>, usize> = HashMap::new();
    let mut resource_first: Vec<usize> = Vec::new();
    let mut scopes: HashMap<(usize, &str, &str), usize> = HashMap::new();
    for (index, span) in spans.iter().enumerate() {
        match check_span(span) {
            Ok(c) => {
                let key = EndpointKey::of(span.local_endpoint.as_ref());
                let next = resources.len();
                let resource = *resources.entry(key).or_insert(next);
                if resource == resource_first.len() {
                    resource_first.push(index);
                }
                let next = scopes.len();
                let scope = *scopes.entry((resource, c.scope.0, c.scope.1)).or_insert(next);
                order.push((resource, scope, index));
                checked.push(Some(c));
            }
            Err(reason) => {
                rejections.reject(|| format!("[{index}].{reason}"));
                checked.push(None);
            }
        }
    }
    order.sort_by_key(|&(resource, scope, index)| (resource, scope, index));

    let mut batch = SpanBatch::new();
    let mut current: Option<(usize, usize)> = None;
    for &(resource, scope, index) in &order {
        let (Some(span), Some(Some(c))) = (spans.get(index), checked.get(index)) else { continue };
        if current.map(|(r, _)| r) != Some(resource) {
            batch.begin_resource("", 0);
            if let Some(endpoint) = &span.local_endpoint {
                push_endpoint(endpoint, Side::Local, &mut |key, value| batch.resource_attr(key, value));
            }
        }
        if current != Some((resource, scope)) {
            batch.begin_scope(c.scope.0, c.scope.1, "", 0);
        }
        current = Some((resource, scope));
        batch.push_span(&c.fields);
        for (key, value) in &span.tags.0 {
            if !is_consumed_tag(&key.0, &value.0) {
                batch.span_attr(&key.0, ValueRef::Str(&value.0));
            }
        }
        if let Some(endpoint) = &span.remote_endpoint {
            push_endpoint(endpoint, Side::Remote, &mut |key, value| batch.span_attr(key, value));
        }
        if let Some(shared) = span.shared {
            batch.span_attr("zipkin.shared", ValueRef::Bool(shared));
        }
        if let Some(debug) = span.debug {
            batch.span_attr("zipkin.debug", ValueRef::Bool(debug));
        }
        for annotation in span.annotations.iter().flatten() {
            // `check_span` checked that every annotation time fits in nanoseconds.
            batch.push_event(annotation.timestamp.0.saturating_mul(1000), &annotation.value.0, 0);
        }
    }
    rejections.finish(batch)
}

/// The local endpoint as a grouping key.
#[derive(PartialEq, Eq, Hash)]
struct EndpointKey<'a> {
    service_name: &'a str,
    ipv4: &'a str,
    ipv6: &'a str,
    port: Option<u32>,
}

impl<'a> EndpointKey<'a> {
    fn of(endpoint: Option<&'a Endpoint<'a>>) -> Self {
        match endpoint {
            Some(e) => EndpointKey {
                service_name: &e.service_name.0,
                ipv4: &e.ipv4.0,
                ipv6: &e.ipv6.0,
                port: e.port.map(|p| p.0),
            },
            None => EndpointKey { service_name: "", ipv4: "", ipv6: "", port: None },
        }
    }
}

#[derive(Clone, Copy)]
enum Side {
    Local,
    Remote,
}

fn push_endpoint(endpoint: &Endpoint<'_>, side: Side, push: &mut dyn FnMut(&str, ValueRef<'_>)) {
    let (service, address, port, ipv6) = match side {
        Side::Local => ("service.name", "network.local.address", "network.local.port", "zipkin.local_endpoint.ipv6"),
        Side::Remote => ("peer.service", "network.peer.address", "network.peer.port", "zipkin.remote_endpoint.ipv6"),
    };
    if !endpoint.service_name.0.is_empty() {
        push(service, ValueRef::Str(&endpoint.service_name.0));
    }
    match (endpoint.ipv4.0.is_empty(), endpoint.ipv6.0.is_empty()) {
        (false, true) => push(address, ValueRef::Str(&endpoint.ipv4.0)),
        (true, false) => push(address, ValueRef::Str(&endpoint.ipv6.0)),
        (false, false) => {
            push(address, ValueRef::Str(&endpoint.ipv4.0));
            push(ipv6, ValueRef::Str(&endpoint.ipv6.0));
        }
        (true, true) => {}
    }
    if let Some(p) = endpoint.port {
        push(port, ValueRef::Int(i64::from(p.0)));
    }
}

/// Tags that become the status or the scope instead of attributes.
fn is_consumed_tag(key: &str, value: &str) -> bool {
    match key {
        "otel.status_code" => status_from_otel(value).is_some(),
        "error"
        | "otel.status_description"
        | "otel.scope.name"
        | "otel.scope.version"
        | "otel.library.name"
        | "otel.library.version" => true,
        _ => false,
    }
}

fn status_from_otel(value: &str) -> Option<StatusCode> {
    match value {
        "OK" => Some(StatusCode::Ok),
        "ERROR" => Some(StatusCode::Error),
        "UNSET" => Some(StatusCode::Unset),
        _ => None,
    }
}

fn micros_to_nanos(micros: u64, what: &str) -> Result<u64, String> {
    micros.checked_mul(1000).ok_or_else(|| format!("{what}: {micros} microseconds is past the year 2554"))
}

fn check_span<'a>(span: &'a ZipkinSpan<'_>) -> Result<Checked<'a>, String> {
    let trace_text: &str = &span.trace_id.0;
    let trace_id = match trace_text.len() {
        16 => {
            let low = common::hex_bytes::<8>(trace_text).map_err(|e| format!("traceId: {e}"))?;
            let mut id = [0u8; 16];
            for (slot, byte) in id.iter_mut().skip(8).zip(low) {
                *slot = byte;
            }
            TraceId(id)
        }
        _ => TraceId(common::hex_bytes::<16>(trace_text).map_err(|_| {
            format!(
                "traceId: expected 16 or 32 hex digits, found {:?}",
                trace_text.chars().take(40).collect::<String>()
            )
        })?),
    };
    if trace_id.is_zero() {
        return Err("traceId: all-zero trace id".into());
    }
    let span_id: SpanId = common::span_id_from_hex(&span.id.0).map_err(|e| format!("id: {e}"))?;
    let parent_span_id = common::parent_id_from_hex(&span.parent_id.0).map_err(|e| format!("parentId: {e}"))?;
    let kind = match span.kind.0.as_ref() {
        "" => SpanKind::Internal,
        k if k.eq_ignore_ascii_case("CLIENT") => SpanKind::Client,
        k if k.eq_ignore_ascii_case("SERVER") => SpanKind::Server,
        k if k.eq_ignore_ascii_case("PRODUCER") => SpanKind::Producer,
        k if k.eq_ignore_ascii_case("CONSUMER") => SpanKind::Consumer,
        other => return Err(format!("kind: unknown Zipkin kind {other:?}")),
    };
    let Some(timestamp) = span.timestamp else {
        return Err("timestamp: missing (an incomplete span)".into());
    };
    let start_unix_nano = micros_to_nanos(timestamp.0, "timestamp")?;
    let duration_ns = micros_to_nanos(span.duration.map(|d| d.0).unwrap_or(0), "duration")?;
    if start_unix_nano.checked_add(duration_ns).is_none() {
        return Err("duration: the span ends past the year 2554".into());
    }
    for (index, annotation) in span.annotations.iter().flatten().enumerate() {
        micros_to_nanos(annotation.timestamp.0, &format!("annotations[{index}].timestamp"))?;
    }
    let mut status_code = StatusCode::Unset;
    let mut status_message: &str = "";
    let mut otel_code = None;
    let mut scope_name: Option<&str> = None;
    let mut scope_version: Option<&str> = None;
    for (key, value) in &span.tags.0 {
        let value: &str = &value.0;
        match key.0.as_ref() {
            "error" => {
                status_code = StatusCode::Error;
                if status_message.is_empty() {
                    status_message = value;
                }
            }
            "otel.status_code" => otel_code = status_from_otel(value).or(otel_code),
            "otel.status_description" => status_message = value,
            "otel.scope.name" => scope_name = Some(value),
            "otel.scope.version" => scope_version = Some(value),
            "otel.library.name" => scope_name = scope_name.or(Some(value)),
            "otel.library.version" => scope_version = scope_version.or(Some(value)),
            _ => {}
        }
    }
    // `otel.status_description` wins over the `error` tag's value, whatever their order.
    if let Some((_, description)) = span.tags.0.iter().rev().find(|(k, _)| k.0 == "otel.status_description") {
        status_message = &description.0;
    }
    if let Some(code) = otel_code {
        status_code = code;
    }
    Ok(Checked {
        fields: SpanFields {
            trace_id,
            span_id,
            parent_span_id,
            name: &span.name.0,
            kind,
            start_unix_nano,
            duration_ns,
            status_code,
            status_message,
            ..SpanFields::default()
        },
        scope: (scope_name.unwrap_or(""), scope_version.unwrap_or("")),
    })
}
