//! OTLP/JSON: the JSON encoding of `ExportTraceServiceRequest`
//! (<https://opentelemetry.io/docs/specs/otlp/#json-protobuf-encoding>), both ways.
//!
//! Decoding follows the proto3 JSON mapping with OTLP's exceptions: keys in
//! lowerCamelCase (the original snake_case names are accepted too), trace and span ids
//! as hex (either case in, lowercase out), 64-bit integers as decimal strings (numbers
//! are accepted too), enums as integers (their names are accepted too), doubles as
//! numbers or the strings `"NaN"`, `"Infinity"`, `"-Infinity"`, bytes as base64,
//! `null` as the default value, and unknown fields ignored. Decoding is one pass
//! straight into a [`SpanBatch`], borrowing every string it can from the input: the
//! fast path ([`fast`]) scans the JSON exporters write; anything else, malformed
//! payloads included, goes through serde (readers that push as they read, with
//! serde_json's errors), which takes every form above.
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
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use spanstore_engine::batch::{Attrs, BuildMark, ValueShape, ValueView, MAX_NESTING_DEPTH};
use spanstore_engine::{AnyValue, KeyValue, Span, SpanBatch, SpanFields, SpanId, TraceId, ValueRef};

use crate::common::{self, Rejections};
use crate::{Decoded, IngestError};

pub(crate) const FORMAT: &str = "OTLP/JSON";

mod fast;
// ----- decoding ------------------------------------------------------------------------

/// Decodes one OTLP/JSON `ExportTraceServiceRequest` object. JSON that is not one is
/// an error; invalid spans inside a well-formed request are left out and counted.
///
/// The request is read in one pass, straight into the batch: strings are borrowed from
/// the input, and a span's attributes, events and links go into the batch as they are
/// read (a rejected span is rolled back). Fields may come in any order; a message given
/// as an array is read by position, as serde's derived structs read it.
pub fn decode_json(bytes: &[u8]) -> Result<Decoded, IngestError> {
    let text = utf8(bytes, FORMAT)?;
    let mut batch = SpanBatch::new();
    let mut decoder = Decoder::new(&mut batch);
    if fast::decode(text, &mut decoder).is_some() {
        let rejections = std::mem::take(&mut decoder.rejections);
        return rejections.finish(batch);
    }
    // Not a payload the fast path takes (or not well formed): start again with serde.
    let mut batch = SpanBatch::new();
    let mut decoder = Decoder::new(&mut batch);
    let mut deserializer = serde_json::Deserializer::from_str(text);
    MessageSeed(RequestReader { d: &mut decoder })
        .deserialize(&mut deserializer)
        .and_then(|_| deserializer.end())
        .map_err(|e| IngestError::json(FORMAT, e))?;
    let rejections = std::mem::take(&mut decoder.rejections);
    rejections.finish(batch)
}

/// What is known of the resource or the scope being read.
#[derive(Default)]
struct Group<'de> {
    /// The batch before the group's first push, to take the group out again.
    mark: BuildMark,
    /// True once the group has a row in the batch.
    begun: bool,
    /// True when a header field came after the row was pushed, so it is set again.
    late: bool,
    name: Text<'de>,
    version: Text<'de>,
    schema_url: Text<'de>,
    dropped_attributes_count: u32,
    /// Why every span of the group is rejected (attributes nested too deep).
    problem: Option<String>,
    /// Spans read in the group, and how many of them are in the batch.
    spans_seen: u64,
    spans_accepted: u64,
    /// The group's rejected spans (replaced by `problem` when there is one).
    tally: Rejections,
}

impl Group<'_> {
    fn new(mark: BuildMark) -> Self {
        Group { mark, ..Group::default() }
    }
}

/// The state of one decode: the batch, the rejections so far, and the resource and
/// scope being read.
struct Decoder<'b, 'de> {
    batch: &'b mut SpanBatch,
    rejections: Rejections,
    resource_index: usize,
    resource: Group<'de>,
    scope_index: usize,
    scope: Group<'de>,
}

impl<'b, 'de> Decoder<'b, 'de> {
    fn new(batch: &'b mut SpanBatch) -> Self {
        Decoder {
            batch,
            rejections: Rejections::default(),
            resource_index: 0,
            resource: Group::default(),
            scope_index: 0,
            scope: Group::default(),
        }
    }

    fn start_resource(&mut self, index: usize) {
        self.resource_index = index;
        self.resource = Group::new(self.batch.mark());
    }

    fn begin_resource(&mut self) {
        if !self.resource.begun {
            self.batch.begin_resource(&self.resource.schema_url.0, self.resource.dropped_attributes_count);
            self.resource.begun = true;
        }
    }

    /// Ends a resource: a resource whose attributes nest too deep rejects every span in
    /// it, and one without accepted spans leaves nothing in the batch.
    fn end_resource(&mut self) {
        let mut group = std::mem::take(&mut self.resource);
        if let Some(problem) = group.problem.take() {
            self.batch.rollback(group.mark);
            group.tally = Rejections::all(group.spans_seen, problem);
        } else if group.spans_accepted == 0 {
            self.batch.rollback(group.mark);
        } else if group.late {
            self.batch.set_resource_header(&group.schema_url.0, group.dropped_attributes_count);
        }
        self.rejections.absorb(group.tally);
    }

    fn start_scope(&mut self, index: usize) {
        self.scope_index = index;
        self.scope = Group::new(self.batch.mark());
    }

    fn begin_scope(&mut self) {
        self.begin_resource();
        if !self.scope.begun {
            let s = &self.scope;
            self.batch.begin_scope(&s.name.0, &s.version.0, &s.schema_url.0, s.dropped_attributes_count);
            self.scope.begun = true;
        }
    }

    /// Ends a scope, as [`end_resource`](Self::end_resource) ends a resource; a problem
    /// of the resource known by now takes precedence, as it would for each span.
    fn end_scope(&mut self) {
        let mut group = std::mem::take(&mut self.scope);
        let problem = self.resource.problem.clone().or(group.problem.take());
        if let Some(problem) = problem {
            self.batch.rollback(group.mark);
            group.tally = Rejections::all(group.spans_seen, problem);
            group.spans_accepted = 0;
        } else if group.spans_accepted == 0 {
            self.batch.rollback(group.mark);
        } else if group.late {
            let g = &group;
            self.batch.set_scope_header(&g.name.0, &g.version.0, &g.schema_url.0, g.dropped_attributes_count);
        }
        self.resource.spans_seen += group.spans_seen;
        self.resource.spans_accepted += group.spans_accepted;
        self.resource.tally.absorb(group.tally);
    }

    /// Checks a span read since `mark` and pushes it, or takes it out again.
    fn end_span(&mut self, span: SpanText<'de>, mark: BuildMark, index: usize) {
        self.scope.spans_seen += 1;
        if self.resource.problem.is_some() || self.scope.problem.is_some() {
            // `end_scope` rejects every span of the scope with the problem.
            self.batch.rollback(mark);
            return;
        }
        match span.check() {
            Ok(fields) => {
                self.batch.push_span(&fields);
                self.scope.spans_accepted += 1;
            }
            Err(reason) => {
                self.batch.rollback(mark);
                let (resource, scope) = (self.resource_index, self.scope_index);
                self.scope
                    .tally
                    .reject(|| format!("resourceSpans[{resource}].scopeSpans[{scope}].spans[{index}].{reason}"));
            }
        }
    }
}

/// The fixed fields of a span as read, and the first problems found in its lists.
#[derive(Default)]
struct SpanText<'de> {
    trace_id: Text<'de>,
    span_id: Text<'de>,
    trace_state: Text<'de>,
    parent_span_id: Text<'de>,
    flags: u32,
    name: Text<'de>,
    kind: i64,
    start_time_unix_nano: u64,
    end_time_unix_nano: u64,
    dropped_attributes_count: u32,
    dropped_events_count: u32,
    dropped_links_count: u32,
    status: Option<JsonStatus<'de>>,
    attributes_problem: Option<String>,
    events_problem: Option<String>,
    links_problem: Option<String>,
    events_read: usize,
    links_read: usize,
}

impl SpanText<'_> {
    /// Everything that can make a span invalid, in the order the checks name it.
    fn check(&self) -> Result<SpanFields<'_>, String> {
        let trace_id = common::trace_id_from_hex(&self.trace_id.0).map_err(|e| format!("traceId: {e}"))?;
        let span_id = common::span_id_from_hex(&self.span_id.0).map_err(|e| format!("spanId: {e}"))?;
        let parent_span_id =
            common::parent_id_from_hex(&self.parent_span_id.0).map_err(|e| format!("parentSpanId: {e}"))?;
        let kind = common::kind_from_code(self.kind).map_err(|e| format!("kind: {e}"))?;
        let status = self.status.as_ref();
        let status_code =
            common::status_from_code(status.map(|s| s.code.0).unwrap_or(0)).map_err(|e| format!("status.code: {e}"))?;
        let duration_ns = common::duration_ns(self.start_time_unix_nano, self.end_time_unix_nano)?;
        if let Some(problem) = self.attributes_problem.as_ref().or(self.events_problem.as_ref()) {
            return Err(problem.clone());
        }
        if let Some(problem) = &self.links_problem {
            return Err(problem.clone());
        }
        Ok(SpanFields {
            trace_id,
            span_id,
            parent_span_id,
            trace_state: &self.trace_state.0,
            name: &self.name.0,
            kind,
            start_unix_nano: self.start_time_unix_nano,
            duration_ns,
            status_code,
            status_message: status.map(|s| s.message.0.as_ref()).unwrap_or(""),
            flags: self.flags,
            dropped_attributes_count: self.dropped_attributes_count,
            dropped_events_count: self.dropped_events_count,
            dropped_links_count: self.dropped_links_count,
        })
    }
}

// ----- reading messages field by field -------------------------------------------------

/// Where a message's field values come from: an object's values (by name) or an
/// array's elements (by position).
trait FieldValues<'de> {
    type Error: de::Error;
    /// The field's value, or `None` when an array has no more elements.
    fn value<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>, Self::Error>;
}

struct ObjectValues<'a, A>(&'a mut A);

impl<'de, A: MapAccess<'de>> FieldValues<'de> for ObjectValues<'_, A> {
    type Error = A::Error;
    fn value<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>, A::Error> {
        self.0.next_value_seed(seed).map(Some)
    }
}

struct ArrayValues<'a, A>(&'a mut A);

impl<'de, A: SeqAccess<'de>> FieldValues<'de> for ArrayValues<'_, A> {
    type Error = A::Error;
    fn value<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>, A::Error> {
        self.0.next_element_seed(seed)
    }
}

/// One OTLP message, read into the decoder as its fields arrive.
trait MessageReader<'de>: Sized {
    /// The message's name in "expected struct ..." errors.
    const NAME: &'static str;
    /// Field names (lowerCamelCase), in the order an array gives them.
    const FIELDS: &'static [&'static str];
    /// The field a key names, in lowerCamelCase or the original snake_case.
    fn field(key: &str) -> Option<usize>;
    /// Reads the value of field `index`; false when there was none (an array ended).
    fn read<F: FieldValues<'de>>(&mut self, index: usize, values: &mut F) -> Result<bool, F::Error>;
}

/// Reads a message (an object, or an array by position) and gives the reader back.
struct MessageSeed<M>(M);

impl<'de, M: MessageReader<'de>> DeserializeSeed<'de> for MessageSeed<M> {
    type Value = M;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<M, D::Error> {
        deserializer.deserialize_struct(M::NAME, M::FIELDS, MessageVisitor(self.0))
    }
}

struct MessageVisitor<M>(M);

impl<'de, M: MessageReader<'de>> Visitor<'de> for MessageVisitor<M> {
    type Value = M;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "struct {}", M::NAME)
    }
    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<M, A::Error> {
        let mut seen: u32 = 0;
        while let Some(key) = map.next_key::<Text<'de>>()? {
            match M::field(&key.0) {
                Some(index) => {
                    let bit = 1u32 << index;
                    if seen & bit != 0 {
                        return Err(de::Error::duplicate_field(M::FIELDS.get(index).copied().unwrap_or("")));
                    }
                    seen |= bit;
                    self.0.read(index, &mut ObjectValues(&mut map))?;
                }
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(self.0)
    }
    fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<M, A::Error> {
        for index in 0..M::FIELDS.len() {
            if !self.0.read(index, &mut ArrayValues(&mut seq))? {
                break;
            }
        }
        Ok(self.0)
    }
}

/// An optional message field: `null` reads as absent.
struct OptionalMessage<M>(M);

impl<'de, M: MessageReader<'de>> DeserializeSeed<'de> for OptionalMessage<M> {
    type Value = Option<M>;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Option<M>, D::Error> {
        deserializer.deserialize_option(OptionalMessageVisitor(self.0))
    }
}

struct OptionalMessageVisitor<M>(M);

impl<'de, M: MessageReader<'de>> Visitor<'de> for OptionalMessageVisitor<M> {
    type Value = Option<M>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("option")
    }
    fn visit_none<E: de::Error>(self) -> Result<Option<M>, E> {
        Ok(None)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Option<M>, E> {
        Ok(None)
    }
    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Option<M>, D::Error> {
        MessageSeed(self.0).deserialize(deserializer).map(Some)
    }
}

/// The elements of a repeated field, each read into the decoder.
trait Elements<'de> {
    /// Reads the next element; false at the end of the array.
    fn next<A: SeqAccess<'de>>(&mut self, seq: &mut A) -> Result<bool, A::Error>;
}

/// A repeated field: an array, or `null` for none.
struct OptionalList<E>(E);

impl<'de, E: Elements<'de>> DeserializeSeed<'de> for OptionalList<E> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_option(self)
    }
}

impl<'de, E: Elements<'de>> Visitor<'de> for OptionalList<E> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("option")
    }
    fn visit_none<Er: de::Error>(self) -> Result<(), Er> {
        Ok(())
    }
    fn visit_unit<Er: de::Error>(self) -> Result<(), Er> {
        Ok(())
    }
    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_seq(ListVisitor(self.0))
    }
}

struct ListVisitor<E>(E);

impl<'de, E: Elements<'de>> Visitor<'de> for ListVisitor<E> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a sequence")
    }
    fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<(), A::Error> {
        while self.0.next(&mut seq)? {}
        Ok(())
    }
}

/// Reads a plain field value.
fn plain<'de, T: Deserialize<'de>, F: FieldValues<'de>>(values: &mut F, slot: &mut T) -> Result<bool, F::Error> {
    match values.value(std::marker::PhantomData::<T>)? {
        Some(value) => {
            *slot = value;
            Ok(true)
        }
        None => Ok(false),
    }
}

/// Whose attributes a list holds.
#[derive(Clone, Copy)]
enum AttrOwner {
    Resource,
    Scope,
    /// The span that `push_span` adds next.
    Span,
    Event,
    Link,
}

/// An attribute list, pushed to its owner as read. Values nested deeper than a batch
/// holds are not pushed: the first is named in `problem`, and its owner is rejected.
struct AttrList<'a> {
    batch: &'a mut SpanBatch,
    owner: AttrOwner,
    index: usize,
    problem: &'a mut Option<String>,
}

impl<'de> Elements<'de> for AttrList<'_> {
    fn next<A: SeqAccess<'de>>(&mut self, seq: &mut A) -> Result<bool, A::Error> {
        let Some(kv) = seq.next_element::<JsonKeyValue<'de>>()? else {
            return Ok(false);
        };
        let index = self.index;
        self.index += 1;
        if let Value::Owned(value) = &kv.value {
            if let Err(e) = common::check_depth(value, 0) {
                if self.problem.is_none() {
                    *self.problem = Some(format!("attributes[{index}] ({:?}): {e}", kv.key.0));
                }
                return Ok(true);
            }
        }
        if self.problem.is_some() {
            return Ok(true);
        }
        let (key, value) = (&*kv.key.0, kv.value_ref());
        match self.owner {
            AttrOwner::Resource => self.batch.resource_attr(key, value),
            AttrOwner::Scope => self.batch.scope_attr(key, value),
            AttrOwner::Span => self.batch.next_span_attr(key, value),
            AttrOwner::Event => self.batch.event_attr(key, value),
            AttrOwner::Link => self.batch.link_attr(key, value),
        }
        Ok(true)
    }
}

/// Reads an attribute list field; the first problem in it goes to `problem`, after
/// `prefix` (called only then).
fn attr_field<'de, F: FieldValues<'de>>(
    values: &mut F,
    batch: &mut SpanBatch,
    owner: AttrOwner,
    problem: &mut Option<String>,
    prefix: impl FnOnce() -> String,
) -> Result<bool, F::Error> {
    let mut found = None;
    let read = values.value(OptionalList(AttrList { batch, owner, index: 0, problem: &mut found }))?;
    if let Some(found) = found {
        if problem.is_none() {
            *problem = Some(format!("{}{found}", prefix()));
        }
    }
    Ok(read.is_some())
}

struct RequestReader<'a, 'b, 'de> {
    d: &'a mut Decoder<'b, 'de>,
}

impl<'de> MessageReader<'de> for RequestReader<'_, '_, 'de> {
    const NAME: &'static str = "Request";
    const FIELDS: &'static [&'static str] = &["resourceSpans"];
    fn field(key: &str) -> Option<usize> {
        matches!(key, "resourceSpans" | "resource_spans").then_some(0)
    }
    fn read<F: FieldValues<'de>>(&mut self, _index: usize, values: &mut F) -> Result<bool, F::Error> {
        Ok(values.value(OptionalList(ResourceSpansList { d: &mut *self.d, index: 0 }))?.is_some())
    }
}

struct ResourceSpansList<'a, 'b, 'de> {
    d: &'a mut Decoder<'b, 'de>,
    index: usize,
}

impl<'de> Elements<'de> for ResourceSpansList<'_, '_, 'de> {
    fn next<A: SeqAccess<'de>>(&mut self, seq: &mut A) -> Result<bool, A::Error> {
        self.d.start_resource(self.index);
        if seq.next_element_seed(MessageSeed(ResourceSpansReader { d: &mut *self.d }))?.is_none() {
            return Ok(false);
        }
        self.d.end_resource();
        self.index += 1;
        Ok(true)
    }
}

struct ResourceSpansReader<'a, 'b, 'de> {
    d: &'a mut Decoder<'b, 'de>,
}

impl<'de> MessageReader<'de> for ResourceSpansReader<'_, '_, 'de> {
    const NAME: &'static str = "ResourceSpans";
    const FIELDS: &'static [&'static str] = &["resource", "scopeSpans", "schemaUrl"];
    fn field(key: &str) -> Option<usize> {
        match key {
            "resource" => Some(0),
            "scopeSpans" | "scope_spans" => Some(1),
            "schemaUrl" | "schema_url" => Some(2),
            _ => None,
        }
    }
    fn read<F: FieldValues<'de>>(&mut self, index: usize, values: &mut F) -> Result<bool, F::Error> {
        let d = &mut *self.d;
        match index {
            0 => Ok(values.value(OptionalMessage(ResourceReader { d }))?.is_some()),
            1 => {
                d.begin_resource();
                Ok(values.value(OptionalList(ScopeSpansList { d, index: 0 }))?.is_some())
            }
            _ => {
                let read = plain(values, &mut d.resource.schema_url)?;
                d.resource.late |= d.resource.begun;
                Ok(read)
            }
        }
    }
}

struct ResourceReader<'a, 'b, 'de> {
    d: &'a mut Decoder<'b, 'de>,
}

impl<'de> MessageReader<'de> for ResourceReader<'_, '_, 'de> {
    const NAME: &'static str = "JsonResource";
    const FIELDS: &'static [&'static str] = &["attributes", "droppedAttributesCount"];
    fn field(key: &str) -> Option<usize> {
        match key {
            "attributes" => Some(0),
            "droppedAttributesCount" | "dropped_attributes_count" => Some(1),
            _ => None,
        }
    }
    fn read<F: FieldValues<'de>>(&mut self, index: usize, values: &mut F) -> Result<bool, F::Error> {
        let d = &mut *self.d;
        if index == 0 {
            d.begin_resource();
            let resource_index = d.resource_index;
            return attr_field(values, d.batch, AttrOwner::Resource, &mut d.resource.problem, || {
                format!("resourceSpans[{resource_index}].resource.")
            });
        }
        let mut dropped = Uint32(0);
        let read = plain(values, &mut dropped)?;
        d.resource.dropped_attributes_count = dropped.0;
        d.resource.late |= d.resource.begun;
        Ok(read)
    }
}

struct ScopeSpansList<'a, 'b, 'de> {
    d: &'a mut Decoder<'b, 'de>,
    index: usize,
}

impl<'de> Elements<'de> for ScopeSpansList<'_, '_, 'de> {
    fn next<A: SeqAccess<'de>>(&mut self, seq: &mut A) -> Result<bool, A::Error> {
        self.d.start_scope(self.index);
        if seq.next_element_seed(MessageSeed(ScopeSpansReader { d: &mut *self.d }))?.is_none() {
            return Ok(false);
        }
        self.d.end_scope();
        self.index += 1;
        Ok(true)
    }
}

struct ScopeSpansReader<'a, 'b, 'de> {
    d: &'a mut Decoder<'b, 'de>,
}

impl<'de> MessageReader<'de> for ScopeSpansReader<'_, '_, 'de> {
    const NAME: &'static str = "ScopeSpans";
    const FIELDS: &'static [&'static str] = &["scope", "spans", "schemaUrl"];
    fn field(key: &str) -> Option<usize> {
        match key {
            "scope" => Some(0),
            "spans" => Some(1),
            "schemaUrl" | "schema_url" => Some(2),
            _ => None,
        }
    }
    fn read<F: FieldValues<'de>>(&mut self, index: usize, values: &mut F) -> Result<bool, F::Error> {
        let d = &mut *self.d;
        match index {
            0 => Ok(values.value(OptionalMessage(ScopeReader { d }))?.is_some()),
            1 => {
                d.begin_scope();
                Ok(values.value(OptionalList(SpanList { d, index: 0 }))?.is_some())
            }
            _ => {
                let read = plain(values, &mut d.scope.schema_url)?;
                d.scope.late |= d.scope.begun;
                Ok(read)
            }
        }
    }
}

struct ScopeReader<'a, 'b, 'de> {
    d: &'a mut Decoder<'b, 'de>,
}

impl<'de> MessageReader<'de> for ScopeReader<'_, '_, 'de> {
    const NAME: &'static str = "JsonScope";
    const FIELDS: &'static [&'static str] = &["name", "version", "attributes", "droppedAttributesCount"];
    fn field(key: &str) -> Option<usize> {
        match key {
            "name" => Some(0),
            "version" => Some(1),
            "attributes" => Some(2),
            "droppedAttributesCount" | "dropped_attributes_count" => Some(3),
            _ => None,
        }
    }
    fn read<F: FieldValues<'de>>(&mut self, index: usize, values: &mut F) -> Result<bool, F::Error> {
        let d = &mut *self.d;
        let read = match index {
            0 => plain(values, &mut d.scope.name)?,
            1 => plain(values, &mut d.scope.version)?,
            2 => {
                d.begin_scope();
                let (resource_index, scope_index) = (d.resource_index, d.scope_index);
                return attr_field(values, d.batch, AttrOwner::Scope, &mut d.scope.problem, || {
                    format!("resourceSpans[{resource_index}].scopeSpans[{scope_index}].scope.")
                });
            }
            _ => {
                let mut dropped = Uint32(0);
                let read = plain(values, &mut dropped)?;
                d.scope.dropped_attributes_count = dropped.0;
                read
            }
        };
        d.scope.late |= d.scope.begun;
        Ok(read)
    }
}

struct SpanList<'a, 'b, 'de> {
    d: &'a mut Decoder<'b, 'de>,
    index: usize,
}

impl<'de> Elements<'de> for SpanList<'_, '_, 'de> {
    fn next<A: SeqAccess<'de>>(&mut self, seq: &mut A) -> Result<bool, A::Error> {
        let mark = self.d.batch.mark();
        let reader = SpanReader { batch: &mut *self.d.batch, span: SpanText::default() };
        let Some(reader) = seq.next_element_seed(MessageSeed(reader))? else {
            return Ok(false);
        };
        let span = reader.span;
        self.d.end_span(span, mark, self.index);
        self.index += 1;
        Ok(true)
    }
}

struct SpanReader<'a, 'de> {
    batch: &'a mut SpanBatch,
    span: SpanText<'de>,
}

impl<'de> MessageReader<'de> for SpanReader<'_, 'de> {
    const NAME: &'static str = "JsonSpan";
    const FIELDS: &'static [&'static str] = &[
        "traceId",
        "spanId",
        "traceState",
        "parentSpanId",
        "flags",
        "name",
        "kind",
        "startTimeUnixNano",
        "endTimeUnixNano",
        "attributes",
        "droppedAttributesCount",
        "events",
        "droppedEventsCount",
        "links",
        "droppedLinksCount",
        "status",
    ];
    fn field(key: &str) -> Option<usize> {
        Some(match key {
            "traceId" | "trace_id" => 0,
            "spanId" | "span_id" => 1,
            "traceState" | "trace_state" => 2,
            "parentSpanId" | "parent_span_id" => 3,
            "flags" => 4,
            "name" => 5,
            "kind" => 6,
            "startTimeUnixNano" | "start_time_unix_nano" => 7,
            "endTimeUnixNano" | "end_time_unix_nano" => 8,
            "attributes" => 9,
            "droppedAttributesCount" | "dropped_attributes_count" => 10,
            "events" => 11,
            "droppedEventsCount" | "dropped_events_count" => 12,
            "links" => 13,
            "droppedLinksCount" | "dropped_links_count" => 14,
            "status" => 15,
            _ => return None,
        })
    }
    fn read<F: FieldValues<'de>>(&mut self, index: usize, values: &mut F) -> Result<bool, F::Error> {
        let s = &mut self.span;
        let mut number = Uint32(0);
        let read = match index {
            0 => plain(values, &mut s.trace_id)?,
            1 => plain(values, &mut s.span_id)?,
            2 => plain(values, &mut s.trace_state)?,
            3 => plain(values, &mut s.parent_span_id)?,
            4 => {
                let read = plain(values, &mut number)?;
                s.flags = number.0;
                read
            }
            5 => plain(values, &mut s.name)?,
            6 => {
                let mut kind = Enum(0);
                let read = plain(values, &mut kind)?;
                s.kind = kind.0;
                read
            }
            7 | 8 => {
                let mut time = Uint64(0);
                let read = plain(values, &mut time)?;
                *(if index == 7 { &mut s.start_time_unix_nano } else { &mut s.end_time_unix_nano }) = time.0;
                read
            }
            9 => attr_field(values, self.batch, AttrOwner::Span, &mut s.attributes_problem, String::new)?,
            11 => values.value(OptionalList(EventList { batch: &mut *self.batch, span: s }))?.is_some(),
            13 => values.value(OptionalList(LinkList { batch: &mut *self.batch, span: s }))?.is_some(),
            10 | 12 | 14 => {
                let read = plain(values, &mut number)?;
                *(match index {
                    10 => &mut s.dropped_attributes_count,
                    12 => &mut s.dropped_events_count,
                    _ => &mut s.dropped_links_count,
                }) = number.0;
                read
            }
            _ => plain(values, &mut s.status)?,
        };
        Ok(read)
    }
}

struct EventList<'a, 'de> {
    batch: &'a mut SpanBatch,
    span: &'a mut SpanText<'de>,
}

impl<'de> Elements<'de> for EventList<'_, 'de> {
    fn next<A: SeqAccess<'de>>(&mut self, seq: &mut A) -> Result<bool, A::Error> {
        let reader = EventReader::new(&mut *self.batch);
        let Some(event) = seq.next_element_seed(MessageSeed(reader))? else {
            return Ok(false);
        };
        finish_event(event, self.span);
        Ok(true)
    }
}

/// Pushes an event (or sets its late fields) and notes its problem for the span.
fn finish_event(event: EventReader<'_, '_>, span: &mut SpanText<'_>) {
    let index = span.events_read;
    span.events_read += 1;
    let (time, dropped) = (event.time_unix_nano, event.dropped_attributes_count);
    if !event.pushed {
        event.batch.next_span_event(time, &event.name.0, dropped);
    } else if event.late {
        event.batch.set_event_fields(time, &event.name.0, dropped);
    }
    if let (Some(problem), None) = (event.problem, &span.events_problem) {
        span.events_problem = Some(format!("events[{index}].{problem}"));
    }
}

/// An event: its row goes in when its attributes start (or at its end), so that its
/// attributes can follow it.
struct EventReader<'a, 'de> {
    batch: &'a mut SpanBatch,
    time_unix_nano: u64,
    name: Text<'de>,
    dropped_attributes_count: u32,
    pushed: bool,
    late: bool,
    problem: Option<String>,
}

impl<'a> EventReader<'a, '_> {
    fn new(batch: &'a mut SpanBatch) -> Self {
        EventReader {
            batch,
            time_unix_nano: 0,
            name: Text::default(),
            dropped_attributes_count: 0,
            pushed: false,
            late: false,
            problem: None,
        }
    }
}

impl<'de> MessageReader<'de> for EventReader<'_, 'de> {
    const NAME: &'static str = "JsonEvent";
    const FIELDS: &'static [&'static str] = &["timeUnixNano", "name", "attributes", "droppedAttributesCount"];
    fn field(key: &str) -> Option<usize> {
        match key {
            "timeUnixNano" | "time_unix_nano" => Some(0),
            "name" => Some(1),
            "attributes" => Some(2),
            "droppedAttributesCount" | "dropped_attributes_count" => Some(3),
            _ => None,
        }
    }
    fn read<F: FieldValues<'de>>(&mut self, index: usize, values: &mut F) -> Result<bool, F::Error> {
        let read = match index {
            0 => {
                let mut time = Uint64(0);
                let read = plain(values, &mut time)?;
                self.time_unix_nano = time.0;
                read
            }
            1 => plain(values, &mut self.name)?,
            2 => {
                if !self.pushed {
                    self.batch.next_span_event(self.time_unix_nano, &self.name.0, self.dropped_attributes_count);
                    self.pushed = true;
                }
                return attr_field(values, self.batch, AttrOwner::Event, &mut self.problem, String::new);
            }
            _ => {
                let mut dropped = Uint32(0);
                let read = plain(values, &mut dropped)?;
                self.dropped_attributes_count = dropped.0;
                read
            }
        };
        self.late |= self.pushed;
        Ok(read)
    }
}

struct LinkList<'a, 'de> {
    batch: &'a mut SpanBatch,
    span: &'a mut SpanText<'de>,
}

impl<'de> Elements<'de> for LinkList<'_, 'de> {
    fn next<A: SeqAccess<'de>>(&mut self, seq: &mut A) -> Result<bool, A::Error> {
        let Some(link) = seq.next_element_seed(MessageSeed(LinkReader::new(&mut *self.batch)))? else {
            return Ok(false);
        };
        finish_link(link, self.span);
        Ok(true)
    }
}

/// Pushes a link (or sets its late fields) once its ids are checked, or notes why the
/// span is rejected.
fn finish_link(link: LinkReader<'_, '_>, span: &mut SpanText<'_>) {
    let index = span.links_read;
    span.links_read += 1;
    // Link ids are stored as given (all-zero included); only their form is checked.
    let ids = common::hex_bytes::<16>(&link.trace_id.0)
        .map_err(|e| format!("links[{index}].traceId: {e}"))
        .and_then(|trace_id| {
            let span_id = common::hex_bytes::<8>(&link.span_id.0).map_err(|e| format!("links[{index}].spanId: {e}"))?;
            Ok((TraceId(trace_id), SpanId(span_id)))
        })
        .and_then(|ids| match &link.problem {
            Some(problem) => Err(format!("links[{index}].{problem}")),
            None => Ok(ids),
        });
    match ids {
        Ok((trace_id, span_id)) => {
            let (state, flags, dropped) = (&link.trace_state.0, link.flags, link.dropped_attributes_count);
            if !link.pushed {
                link.batch.next_span_link(trace_id, span_id, state, flags, dropped);
            } else if link.late {
                link.batch.set_link_fields(trace_id, span_id, state, flags, dropped);
            }
        }
        Err(problem) => {
            // The span is rejected, so the link row (if pushed) goes with it.
            if span.links_problem.is_none() {
                span.links_problem = Some(problem);
            }
        }
    }
}

/// A link, pushed as [`EventReader`] pushes an event.
struct LinkReader<'a, 'de> {
    batch: &'a mut SpanBatch,
    trace_id: Text<'de>,
    span_id: Text<'de>,
    trace_state: Text<'de>,
    flags: u32,
    dropped_attributes_count: u32,
    pushed: bool,
    late: bool,
    problem: Option<String>,
}

impl<'a> LinkReader<'a, '_> {
    fn new(batch: &'a mut SpanBatch) -> Self {
        LinkReader {
            batch,
            trace_id: Text::default(),
            span_id: Text::default(),
            trace_state: Text::default(),
            flags: 0,
            dropped_attributes_count: 0,
            pushed: false,
            late: false,
            problem: None,
        }
    }
}

impl LinkReader<'_, '_> {
    /// Pushes the link's row so that its attributes can follow; ids still unread or
    /// invalid are set (or the span rejected) at the end.
    fn push_row(&mut self) {
        let trace_id = TraceId(common::hex_bytes::<16>(&self.trace_id.0).unwrap_or_default());
        let span_id = SpanId(common::hex_bytes::<8>(&self.span_id.0).unwrap_or_default());
        let (state, flags, dropped) = (&self.trace_state.0, self.flags, self.dropped_attributes_count);
        self.batch.next_span_link(trace_id, span_id, state, flags, dropped);
        self.pushed = true;
    }
}

impl<'de> MessageReader<'de> for LinkReader<'_, 'de> {
    const NAME: &'static str = "JsonLink";
    const FIELDS: &'static [&'static str] =
        &["traceId", "spanId", "traceState", "attributes", "droppedAttributesCount", "flags"];
    fn field(key: &str) -> Option<usize> {
        match key {
            "traceId" | "trace_id" => Some(0),
            "spanId" | "span_id" => Some(1),
            "traceState" | "trace_state" => Some(2),
            "attributes" => Some(3),
            "droppedAttributesCount" | "dropped_attributes_count" => Some(4),
            "flags" => Some(5),
            _ => None,
        }
    }
    fn read<F: FieldValues<'de>>(&mut self, index: usize, values: &mut F) -> Result<bool, F::Error> {
        let read = match index {
            0 => plain(values, &mut self.trace_id)?,
            1 => plain(values, &mut self.span_id)?,
            2 => plain(values, &mut self.trace_state)?,
            3 => {
                if !self.pushed {
                    self.push_row();
                }
                return attr_field(values, self.batch, AttrOwner::Link, &mut self.problem, String::new);
            }
            _ => {
                let mut number = Uint32(0);
                let read = plain(values, &mut number)?;
                if index == 4 {
                    self.dropped_attributes_count = number.0;
                } else {
                    self.flags = number.0;
                }
                read
            }
        };
        self.late |= self.pushed;
        Ok(read)
    }
}

/// The payload as text. Checking UTF-8 once up front is much cheaper than serde_json's
/// check of every string it borrows from a byte slice.
pub(crate) fn utf8<'a>(bytes: &'a [u8], format: &'static str) -> Result<&'a str, IngestError> {
    std::str::from_utf8(bytes)
        .map_err(|e| IngestError::Json { format, reason: format!("invalid UTF-8 at byte {}", e.valid_up_to()) })
}

// ----- the serde leaf types ------------------------------------------------------------

#[derive(Deserialize)]
pub(crate) struct JsonStatus<'a> {
    #[serde(borrow, default)]
    pub(crate) message: Text<'a>,
    #[serde(default)]
    pub(crate) code: Enum,
}

#[derive(Deserialize)]
pub(crate) struct JsonKeyValue<'a> {
    #[serde(borrow, default)]
    pub(crate) key: Text<'a>,
    #[serde(borrow, default)]
    pub(crate) value: Value<'a>,
}

impl JsonKeyValue<'_> {
    pub(crate) fn value_ref(&self) -> ValueRef<'_> {
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
pub(crate) struct Enum(pub(crate) i64);

pub(crate) fn enum_from_name(name: &str) -> Option<i64> {
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
pub(crate) enum Value<'a> {
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

    // ----- the streaming decoder against the typed-model reference -------------------

    /// A JSON text tree, written with fields in the order given.
    #[derive(Clone, Debug)]
    enum Node {
        Obj(Vec<(String, Node)>),
        Arr(Vec<Node>),
        Raw(String),
    }

    impl Node {
        fn write(&self, out: &mut String) {
            match self {
                Node::Obj(fields) => {
                    out.push('{');
                    for (index, (key, value)) in fields.iter().enumerate() {
                        if index > 0 {
                            out.push(',');
                        }
                        let mut key_json = Vec::new();
                        write_str(&mut key_json, key);
                        out.push_str(std::str::from_utf8(&key_json).unwrap());
                        out.push(':');
                        value.write(out);
                    }
                    out.push('}');
                }
                Node::Arr(items) => {
                    out.push('[');
                    for (index, item) in items.iter().enumerate() {
                        if index > 0 {
                            out.push(',');
                        }
                        item.write(out);
                    }
                    out.push(']');
                }
                Node::Raw(text) => out.push_str(text),
            }
        }
    }

    use proptest::prelude::*;

    fn json_string(text: &str) -> Node {
        let mut out = Vec::new();
        write_str(&mut out, text);
        Node::Raw(String::from_utf8(out).unwrap())
    }

    /// A valid value for the field, rarely an invalid one.
    fn mostly(valid: BoxedStrategy<Node>, invalid: BoxedStrategy<Node>) -> BoxedStrategy<Node> {
        prop_oneof![400 => valid, 1 => invalid].boxed()
    }

    fn raw(text: &'static str) -> BoxedStrategy<Node> {
        Just(Node::Raw(text.into())).boxed()
    }

    fn hex(len: usize) -> BoxedStrategy<Node> {
        let valid = prop_oneof![
            80 => proptest::collection::vec(any::<u8>(), len).prop_map(|b| {
                json_string(&b.iter().map(|x| format!("{x:02x}")).collect::<String>())
            }),
            1 => Just(json_string(&"0".repeat(2 * len))),
            1 => "[0-9a-gA-G]{0,34}".prop_map(|s| json_string(&s)),
        ];
        mostly(valid.boxed(), prop_oneof![raw("null"), raw("5")].boxed())
    }

    fn number() -> BoxedStrategy<Node> {
        let valid = prop_oneof![
            2 => (0u64..1 << 31).prop_map(|n| json_string(&n.to_string())),
            1 => (0u64..100).prop_map(|n| Node::Raw(n.to_string())),
            1 => raw("null"),
        ];
        let invalid = prop_oneof![
            (1u64 << 32..1 << 40).prop_map(|n| json_string(&n.to_string())),
            Just(json_string("1.5")),
            raw("-1"),
        ];
        mostly(valid.boxed(), invalid.boxed())
    }

    /// A time: starts early and ends late, mostly.
    fn time(base: u64) -> BoxedStrategy<Node> {
        prop_oneof![30 => (base..base + 1000).prop_map(|n| json_string(&n.to_string())), 1 => number()].boxed()
    }

    fn text() -> BoxedStrategy<Node> {
        let valid = prop_oneof![
            6 => "\\PC{0,6}".prop_map(|s| json_string(&s)),
            1 => Just(json_string("a\\\"b")),
            1 => raw("\"esc\\u0041ped\""),
            1 => raw("null"),
        ];
        mostly(valid.boxed(), prop_oneof![raw("true"), raw("5")].boxed())
    }

    fn any_value() -> BoxedStrategy<Node> {
        let leaf = prop_oneof![
            30 => text().prop_map(|v| Node::Obj(vec![("stringValue".into(), v)])),
            20 => number().prop_map(|v| Node::Obj(vec![("intValue".into(), v)])),
            10 => mostly(prop_oneof![raw("\"NaN\""), raw("-0.0"), raw("1e300"), raw("2")].boxed(), raw("\"inf\""))
                .prop_map(|v| Node::Obj(vec![("doubleValue".into(), v)])),
            10 => mostly(prop_oneof![raw("true"), raw("null")].boxed(), raw("1"))
                .prop_map(|v| Node::Obj(vec![("boolValue".into(), v)])),
            10 => mostly(prop_oneof![raw("\"AQI=\""), raw("\"_-8\"")].boxed(), raw("\"*\""))
                .prop_map(|v| Node::Obj(vec![("bytes_value".into(), v)])),
            10 => Just(Node::Raw("{}".into())),
            10 => Just(Node::Raw("null".into())),
        ];
        let nested = leaf.prop_recursive(3, 12, 3, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..3).prop_map(|items| Node::Obj(vec![(
                    "arrayValue".into(),
                    Node::Obj(vec![("values".into(), Node::Arr(items))])
                )])),
                proptest::collection::vec(
                    inner.prop_map(|v| Node::Obj(vec![("key".into(), json_string("k")), ("value".into(), v)])),
                    0..3
                )
                .prop_map(|pairs| Node::Obj(vec![(
                    "kvlistValue".into(),
                    Node::Obj(vec![("values".into(), Node::Arr(pairs))])
                )])),
            ]
        });
        prop_oneof![
            4000 => nested,
            // Deeper than a batch holds: its owner is rejected.
            1 => Just({
                let mut value = Node::Raw("{}".into());
                for _ in 0..(MAX_NESTING_DEPTH + 1) {
                    value = Node::Obj(vec![("arrayValue".into(), Node::Obj(vec![("values".into(), Node::Arr(vec![value]))]))]);
                }
                value
            }),
        ]
        .boxed()
    }

    fn attributes() -> BoxedStrategy<Node> {
        let valid = prop_oneof![
            100 => proptest::collection::vec(("[a-c.]{0,3}", any_value()), 0..4).prop_map(|pairs| {
                Node::Arr(pairs.into_iter().map(|(k, v)| Node::Obj(vec![("key".into(), json_string(&k)), ("value".into(), v)])).collect())
            }),
            10 => Just(Node::Raw("null".into())),
        ];
        mostly(valid.boxed(), raw("{}"))
    }

    /// An object of some of `fields` (name, snake_case name, value), in a random order,
    /// sometimes with an unknown or a repeated field, sometimes as an array by position.
    fn message(fields: Vec<(&'static str, &'static str, BoxedStrategy<Node>)>) -> BoxedStrategy<Node> {
        let count = fields.len();
        let values: Vec<BoxedStrategy<(bool, bool, Node)>> = fields
            .iter()
            .map(|(_, _, value)| (proptest::bool::weighted(0.92), proptest::bool::weighted(0.1), value.clone()).boxed())
            .collect();
        let names: Vec<(&'static str, &'static str)> = fields.iter().map(|(a, b, _)| (*a, *b)).collect();
        let order = prop_oneof![
            // Mostly in declaration order, as encoders write it.
            2 => Just((0..count).collect::<Vec<usize>>()),
            1 => Just((0..count).collect::<Vec<usize>>()).prop_shuffle(),
        ];
        (values, (order, 0u16..600))
            .prop_map(move |(values, (order, shape))| {
                if shape == 0 {
                    // By position, as serde's derived structs accept.
                    let present = values.iter().take_while(|(present, _, _)| *present).count();
                    return Node::Arr(values.into_iter().take(present).map(|(_, _, v)| v).collect());
                }
                let mut out = Vec::new();
                for index in order {
                    let (present, snake, value) = &values[index];
                    if *present {
                        let (camel, snake_name) = names[index];
                        out.push((if *snake { snake_name } else { camel }.to_string(), value.clone()));
                    }
                }
                if shape == 1 {
                    out.push(("futureField".into(), Node::Raw("[1,{\"a\":null}]".into())));
                }
                if shape == 2 && !out.is_empty() {
                    let first = out[0].clone();
                    out.push(first);
                }
                Node::Obj(out)
            })
            .boxed()
    }

    fn event() -> BoxedStrategy<Node> {
        message(vec![
            ("timeUnixNano", "time_unix_nano", number()),
            ("name", "name", text()),
            ("attributes", "attributes", attributes()),
            ("droppedAttributesCount", "dropped_attributes_count", number()),
        ])
    }

    fn link() -> BoxedStrategy<Node> {
        message(vec![
            ("traceId", "trace_id", hex(16)),
            ("spanId", "span_id", hex(8)),
            ("traceState", "trace_state", text()),
            ("attributes", "attributes", attributes()),
            ("droppedAttributesCount", "dropped_attributes_count", number()),
            ("flags", "flags", number()),
        ])
    }

    fn list(item: BoxedStrategy<Node>, max: usize) -> BoxedStrategy<Node> {
        prop_oneof![20 => proptest::collection::vec(item, 1..max).prop_map(Node::Arr), 1 => raw("null"), 1 => raw("[]")]
            .boxed()
    }

    fn span() -> BoxedStrategy<Node> {
        let small = || {
            mostly(prop_oneof![40 => (0u8..3).prop_map(|k| Node::Raw(k.to_string())), 10 => Just(json_string("SPAN_KIND_SERVER")), 1 => raw("9")].boxed(), Just(json_string("x")).boxed()).boxed()
        };
        let status = message(vec![("message", "message", text()), ("code", "code", small())]);
        message(vec![
            ("traceId", "trace_id", hex(16)),
            ("spanId", "span_id", hex(8)),
            ("traceState", "trace_state", text()),
            ("parentSpanId", "parent_span_id", hex(8)),
            ("flags", "flags", number()),
            ("name", "name", text()),
            ("kind", "kind", small()),
            ("startTimeUnixNano", "start_time_unix_nano", time(0)),
            ("endTimeUnixNano", "end_time_unix_nano", time(1000)),
            ("attributes", "attributes", attributes()),
            ("droppedAttributesCount", "dropped_attributes_count", number()),
            ("events", "events", list(event(), 3)),
            ("droppedEventsCount", "dropped_events_count", number()),
            ("links", "links", list(link(), 3)),
            ("droppedLinksCount", "dropped_links_count", number()),
            ("status", "status", status),
        ])
    }

    fn request() -> BoxedStrategy<Node> {
        let scope = message(vec![
            ("name", "name", text()),
            ("version", "version", text()),
            ("attributes", "attributes", attributes()),
            ("droppedAttributesCount", "dropped_attributes_count", number()),
        ]);
        let scope_spans = message(vec![
            ("scope", "scope", scope),
            ("spans", "spans", list(span(), 4)),
            ("schemaUrl", "schema_url", text()),
        ]);
        let resource = message(vec![
            ("attributes", "attributes", attributes()),
            ("droppedAttributesCount", "dropped_attributes_count", number()),
        ]);
        let resource_spans = message(vec![
            ("resource", "resource", resource),
            ("scopeSpans", "scope_spans", list(scope_spans, 3)),
            ("schemaUrl", "schema_url", text()),
        ]);
        message(vec![("resourceSpans", "resource_spans", list(resource_spans, 3))])
    }

    /// The result of a decode in a comparable form.
    fn outcome(result: Result<Decoded, IngestError>) -> Result<(String, u64, Option<String>), String> {
        result
            .map(|decoded| {
                decoded.batch.validate().unwrap();
                (format!("{:?}", decoded.batch.to_spans()), decoded.rejected_spans, decoded.first_rejection)
            })
            .map_err(|e| e.to_string())
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        /// The streaming decoder gives what the typed model gave: the same spans, the
        /// same rejections and the same errors, whatever the field order and content.
        #[test]
        fn streaming_decoder_agrees_with_the_typed_model(request in request()) {
            let mut text = String::new();
            request.write(&mut text);
            let new = outcome(decode_json(text.as_bytes()));
            let reference = outcome(crate::otlp_json_reference::decode_json(text.as_bytes()));
            prop_assert_eq!(new, reference, "{}", text);
        }
    }

    /// Encoded batches of arbitrary spans (and of the workload): both decoders give
    /// back the spans that were encoded.
    #[test]
    fn streaming_decoder_agrees_on_encoded_batches() {
        for seed in [1, 5, 9] {
            for batch in spanstore_workload::batches(seed, 2, 700) {
                let out = columnar(&batch);
                let new = decode_json(&out).unwrap();
                let sorted = |mut spans: Vec<Span>| {
                    spans.sort_by_key(|s| (s.trace_id, s.span_id));
                    spans
                };
                assert!(sorted(new.batch.to_spans()) == sorted(batch.to_spans()), "seed {seed}");
                assert!(outcome(Ok(new)) == outcome(crate::otlp_json_reference::decode_json(&out)), "seed {seed}");
            }
        }
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
