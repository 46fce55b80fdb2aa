//! `SpanBatch`: a columnar batch of spans, the unit of `append`, of a log record and of the memtable.
//!
//! A batch keeps one column per span field and one string arena, so a decoder fills it
//! with amortised vector pushes instead of an allocation per field. Resources and scopes
//! are stored once per batch (as OTLP groups them) and spans point at their scope.
//! Attribute lists of each owner kind (resource, scope, span, event, link) live in one
//! vector per kind; an owner's list is the range between the previous owner's end and its
//! own, which holds because a builder only ever appends to the newest owner.
//!
//! Nested values (arrays and maps) live in `nested`, always *after* the slot that points
//! at them, so a decoder of untrusted bytes can check them for cycles in one pass.
#![deny(clippy::unwrap_used, clippy::indexing_slicing)]

use crate::codec::{Reader, Writer};
use crate::error::DecodeError;
use crate::model::{AnyValue, Event, KeyValue, Link, Resource, Scope, Span, SpanId, SpanKind, StatusCode, TraceId};

/// Deepest nesting of arrays and maps a batch accepts (OTLP sets no limit; protobuf
/// decoders commonly stop at 100). Checked on decode so recursion stays bounded.
pub const MAX_NESTING_DEPTH: usize = 64;

/// Most spans one batch may hold: a stated maximum checked before any allocation.
pub const MAX_SPANS_PER_BATCH: usize = 1 << 22;

/// A string or byte range in a batch arena.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StrRef {
    start: u32,
    len: u32,
}

impl StrRef {
    fn range(self) -> std::ops::Range<usize> {
        let start = self.start as usize;
        start..start + self.len as usize
    }
}

/// A stored attribute value. Arrays and maps point at a range of `nested`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Value {
    #[default]
    Empty,
    Str(StrRef),
    Int(i64),
    /// The float's bits, so that equality is bitwise (NaN equals itself).
    Double(u64),
    Bool(bool),
    Bytes(StrRef),
    Array {
        first: u32,
        len: u32,
    },
    Map {
        first: u32,
        len: u32,
    },
}

/// A stored key-value pair; array items use an empty key.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct Attr {
    key: StrRef,
    value: Value,
}

/// A borrowed attribute value, as decoders hand them in and readers get them out.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ValueRef<'a> {
    /// The empty value.
    Empty,
    /// A string.
    Str(&'a str),
    /// An int64.
    Int(i64),
    /// A float64.
    Double(f64),
    /// A bool.
    Bool(bool),
    /// Bytes.
    Bytes(&'a [u8]),
    /// An array, given as owned values (nested values are rare).
    Array(&'a [AnyValue]),
    /// A map, given as owned pairs.
    Map(&'a [KeyValue]),
}

impl<'a> From<&'a AnyValue> for ValueRef<'a> {
    fn from(value: &'a AnyValue) -> Self {
        match value {
            AnyValue::Empty => ValueRef::Empty,
            AnyValue::Str(s) => ValueRef::Str(s),
            AnyValue::Int(i) => ValueRef::Int(*i),
            AnyValue::Double(d) => ValueRef::Double(*d),
            AnyValue::Bool(b) => ValueRef::Bool(*b),
            AnyValue::Bytes(b) => ValueRef::Bytes(b),
            AnyValue::Array(items) => ValueRef::Array(items),
            AnyValue::Map(pairs) => ValueRef::Map(pairs),
        }
    }
}

/// The fixed fields of one span, as a decoder hands them to [`SpanBatch::push_span`].
#[derive(Clone, Copy, Debug, Default)]
pub struct SpanFields<'a> {
    /// Trace id.
    pub trace_id: TraceId,
    /// Span id.
    pub span_id: SpanId,
    /// Parent span id; `None` (or the zero id) for a root.
    pub parent_span_id: Option<SpanId>,
    /// W3C trace state.
    pub trace_state: &'a str,
    /// Name.
    pub name: &'a str,
    /// Kind.
    pub kind: SpanKind,
    /// Start, ns since the epoch.
    pub start_unix_nano: u64,
    /// Duration, ns.
    pub duration_ns: u64,
    /// Status code.
    pub status_code: StatusCode,
    /// Status message.
    pub status_message: &'a str,
    /// Flags.
    pub flags: u32,
    /// Dropped attribute count.
    pub dropped_attributes_count: u32,
    /// Dropped event count.
    pub dropped_events_count: u32,
    /// Dropped link count.
    pub dropped_links_count: u32,
}

#[derive(Clone, Debug, Default, PartialEq)]
struct ResourceRow {
    schema_url: StrRef,
    dropped_attributes_count: u32,
    attrs_end: u32,
}

#[derive(Clone, Debug, Default, PartialEq)]
struct ScopeRow {
    resource: u32,
    name: StrRef,
    version: StrRef,
    schema_url: StrRef,
    dropped_attributes_count: u32,
    attrs_end: u32,
}

#[derive(Clone, Debug, Default, PartialEq)]
struct EventRow {
    time_unix_nano: u64,
    name: StrRef,
    dropped_attributes_count: u32,
    attrs_end: u32,
}

#[derive(Clone, Debug, Default, PartialEq)]
struct LinkRow {
    trace_id: TraceId,
    span_id: SpanId,
    trace_state: StrRef,
    flags: u32,
    dropped_attributes_count: u32,
    attrs_end: u32,
}

/// The span columns of a batch: entry `i` of every vector belongs to span `i`.
#[derive(Clone, Debug, Default, PartialEq)]
struct SpanColumns {
    trace_id: Vec<TraceId>,
    span_id: Vec<SpanId>,
    /// The zero id means "no parent", as in OTLP.
    parent_span_id: Vec<SpanId>,
    trace_state: Vec<StrRef>,
    name: Vec<StrRef>,
    kind: Vec<SpanKind>,
    start_unix_nano: Vec<u64>,
    duration_ns: Vec<u64>,
    status_code: Vec<StatusCode>,
    status_message: Vec<StrRef>,
    flags: Vec<u32>,
    scope: Vec<u32>,
    dropped_attributes_count: Vec<u32>,
    dropped_events_count: Vec<u32>,
    dropped_links_count: Vec<u32>,
    attrs_end: Vec<u32>,
    events_end: Vec<u32>,
    links_end: Vec<u32>,
}

/// The sizes of a batch's lists at one point of building, for [`SpanBatch::rollback`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BuildMark {
    strings: usize,
    bytes: usize,
    nested: usize,
    resources: usize,
    resource_attrs: usize,
    scopes: usize,
    scope_attrs: usize,
    spans: usize,
    span_attrs: usize,
    events: usize,
    event_attrs: usize,
    links: usize,
    link_attrs: usize,
}

/// A columnar batch of spans with their resources and scopes.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SpanBatch {
    strings: String,
    bytes: Vec<u8>,
    nested: Vec<Attr>,
    resources: Vec<ResourceRow>,
    resource_attrs: Vec<Attr>,
    scopes: Vec<ScopeRow>,
    scope_attrs: Vec<Attr>,
    spans: SpanColumns,
    span_attrs: Vec<Attr>,
    events: Vec<EventRow>,
    event_attrs: Vec<Attr>,
    links: Vec<LinkRow>,
    link_attrs: Vec<Attr>,
    cache: StrCache,
}

/// Slots of the builder's string cache at first use, and at most (powers of two).
const STR_CACHE_SLOTS_MIN: usize = 64;
const STR_CACHE_SLOTS_MAX: usize = 1024;
/// Longest attribute key, and longest other string, the builder looks up in its cache:
/// keys repeat whatever their length, while long values (URLs, statements) rarely do.
const STR_CACHE_KEY_LEN_MAX: usize = 128;
const STR_CACHE_VALUE_LEN_MAX: usize = 32;

const _: () = assert!(STR_CACHE_SLOTS_MIN.is_power_of_two());
const _: () = assert!(STR_CACHE_SLOTS_MAX.is_power_of_two());

/// The builder's cache of strings already in the arena: a direct-mapped table from a
/// hash of the text to its reference. Attribute keys, span names and low-cardinality
/// values (`http.route`, `GET`, service names) are then stored once per batch instead
/// of once per use, which makes the arena, the log record and the memtable smaller and
/// the record cheaper to compress. Unique values (request ids) just pass through.
///
/// It is build-time state, not part of the batch's value: equality ignores it, decoding
/// leaves it empty, and a batch built without it is equally valid. The format has
/// always allowed several references to one range of the arena.
#[derive(Clone, Default)]
struct StrCache {
    /// `(hash, reference)`; a zero-length reference marks an empty slot.
    slots: Vec<(u64, StrRef)>,
    /// Strings inserted since the table last grew.
    inserted: usize,
}

impl PartialEq for StrCache {
    fn eq(&self, _other: &Self) -> bool {
        true
    }
}

impl std::fmt::Debug for StrCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "StrCache({} slots)", self.slots.len())
    }
}

impl StrCache {
    fn slot(&self, hash: u64) -> usize {
        // The high bits are the best mixed by the multiply in `str_hash`.
        (hash >> 40) as usize & self.slots.len().wrapping_sub(1)
    }

    fn get(&self, hash: u64) -> Option<StrRef> {
        self.slots.get(self.slot(hash)).filter(|(h, r)| *h == hash && r.len != 0).map(|&(_, r)| r)
    }

    fn insert(&mut self, hash: u64, r: StrRef) {
        // Grow (and forget) once the table has seen twice as many strings as it has
        // slots, so a batch of a few spans keeps a small table and a big one a big one.
        if self.slots.is_empty() || (self.inserted >= 2 * self.slots.len() && self.slots.len() < STR_CACHE_SLOTS_MAX) {
            let len = (self.slots.len() * 4).clamp(STR_CACHE_SLOTS_MIN, STR_CACHE_SLOTS_MAX);
            self.slots.clear();
            self.slots.resize(len, (0, StrRef::default()));
            self.inserted = 0;
        }
        let slot = self.slot(hash);
        if let Some(entry) = self.slots.get_mut(slot) {
            *entry = (hash, r);
        }
        self.inserted += 1;
    }
}

/// A fast hash of a short string for [`StrCache`] (FxHash-style; equal hashes are
/// confirmed by comparing the text).
fn str_hash(text: &[u8]) -> u64 {
    const K: u64 = 0x517c_c1b7_2722_0a95;
    let mut hash = (text.len() as u64).wrapping_mul(K);
    let mut chunks = text.chunks_exact(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        hash = (hash.rotate_left(5) ^ u64::from_le_bytes(word)).wrapping_mul(K);
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut word = [0u8; 8];
        for (slot, &byte) in word.iter_mut().zip(rest) {
            *slot = byte;
        }
        hash = (hash.rotate_left(5) ^ u64::from_le_bytes(word)).wrapping_mul(K);
    }
    hash
}

/// Which attribute list a push goes to.
#[derive(Clone, Copy)]
enum Owner {
    Resource,
    Scope,
    Span,
    Event,
    Link,
}

fn range_of(ends: impl Fn(usize) -> Option<u32>, index: usize) -> std::ops::Range<usize> {
    let start = if index == 0 { 0 } else { ends(index - 1).unwrap_or(0) as usize };
    let end = ends(index).unwrap_or(0) as usize;
    start..end.max(start)
}

impl SpanBatch {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of spans.
    pub fn len(&self) -> usize {
        self.spans.trace_id.len()
    }

    /// True when the batch holds no span.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Approximate heap bytes held, for memory accounting.
    pub fn memory_size_bytes(&self) -> usize {
        use std::mem::size_of;
        let s = &self.spans;
        self.strings.capacity()
            + self.bytes.capacity()
            + (self.nested.capacity()
                + self.resource_attrs.capacity()
                + self.scope_attrs.capacity()
                + self.span_attrs.capacity()
                + self.event_attrs.capacity()
                + self.link_attrs.capacity())
                * size_of::<Attr>()
            + self.resources.capacity() * size_of::<ResourceRow>()
            + self.scopes.capacity() * size_of::<ScopeRow>()
            + self.events.capacity() * size_of::<EventRow>()
            + self.links.capacity() * size_of::<LinkRow>()
            + s.trace_id.capacity() * (16 + 8 + 8 + 8 + 8 + 8 + 8 + 8 + 2 + 4 * 8)
            + self.cache.slots.capacity() * size_of::<(u64, StrRef)>()
    }

    /// Gives back the spare capacity of every vector (each grew by doubling, so up to
    /// half of it can be spare) and drops the builder's string cache: for a batch that
    /// is done growing and will be kept a while. Costs a reallocation per vector; the
    /// batch stays the same value and can still grow.
    pub fn shrink_to_fit(&mut self) {
        self.strings.shrink_to_fit();
        self.bytes.shrink_to_fit();
        for list in [
            &mut self.nested,
            &mut self.resource_attrs,
            &mut self.scope_attrs,
            &mut self.span_attrs,
            &mut self.event_attrs,
            &mut self.link_attrs,
        ] {
            list.shrink_to_fit();
        }
        self.resources.shrink_to_fit();
        self.scopes.shrink_to_fit();
        self.events.shrink_to_fit();
        self.links.shrink_to_fit();
        let s = &mut self.spans;
        s.trace_id.shrink_to_fit();
        s.span_id.shrink_to_fit();
        s.parent_span_id.shrink_to_fit();
        for refs in [&mut s.trace_state, &mut s.name, &mut s.status_message] {
            refs.shrink_to_fit();
        }
        s.kind.shrink_to_fit();
        s.start_unix_nano.shrink_to_fit();
        s.duration_ns.shrink_to_fit();
        s.status_code.shrink_to_fit();
        for column in [
            &mut s.flags,
            &mut s.scope,
            &mut s.dropped_attributes_count,
            &mut s.dropped_events_count,
            &mut s.dropped_links_count,
            &mut s.attrs_end,
            &mut s.events_end,
            &mut s.links_end,
        ] {
            column.shrink_to_fit();
        }
        self.cache = StrCache::default();
    }

    // ----- building -------------------------------------------------------------------

    /// Stores `text` once per batch when it is short enough to be worth looking up
    /// (see [`StrCache`]); an empty string needs no bytes at all.
    fn push_str(&mut self, text: &str) -> StrRef {
        self.push_str_cached(text, STR_CACHE_VALUE_LEN_MAX)
    }

    fn push_key(&mut self, text: &str) -> StrRef {
        self.push_str_cached(text, STR_CACHE_KEY_LEN_MAX)
    }

    fn push_str_cached(&mut self, text: &str, len_max: usize) -> StrRef {
        if text.is_empty() {
            return StrRef::default();
        }
        if text.len() > len_max {
            return self.push_str_uncached(text);
        }
        let hash = str_hash(text.as_bytes());
        if let Some(found) = self.cache.get(hash) {
            if self.strings.get(found.range()) == Some(text) {
                return found;
            }
        }
        let stored = self.push_str_uncached(text);
        self.cache.insert(hash, stored);
        stored
    }

    fn push_str_uncached(&mut self, text: &str) -> StrRef {
        // Arenas are capped at u32::MAX bytes; `append` rejects batches that approach it
        // (see `check_limits`), so a saturated reference never reaches disk.
        let start = u32::try_from(self.strings.len()).unwrap_or(u32::MAX);
        self.strings.push_str(text);
        StrRef { start, len: u32::try_from(text.len()).unwrap_or(u32::MAX) }
    }

    fn push_bytes(&mut self, data: &[u8]) -> StrRef {
        let start = u32::try_from(self.bytes.len()).unwrap_or(u32::MAX);
        self.bytes.extend_from_slice(data);
        StrRef { start, len: u32::try_from(data.len()).unwrap_or(u32::MAX) }
    }

    fn store_value(&mut self, value: ValueRef<'_>) -> Value {
        match value {
            ValueRef::Empty => Value::Empty,
            ValueRef::Str(s) => Value::Str(self.push_str(s)),
            ValueRef::Int(i) => Value::Int(i),
            ValueRef::Double(d) => Value::Double(d.to_bits()),
            ValueRef::Bool(b) => Value::Bool(b),
            ValueRef::Bytes(b) => Value::Bytes(self.push_bytes(b)),
            ValueRef::Array(items) => {
                let first = self.nested.len();
                self.nested.resize(first + items.len(), Attr::default());
                for (offset, item) in items.iter().enumerate() {
                    let stored = self.store_value(item.into());
                    if let Some(slot) = self.nested.get_mut(first + offset) {
                        slot.value = stored;
                    }
                }
                Value::Array { first: first as u32, len: items.len() as u32 }
            }
            ValueRef::Map(pairs) => {
                let first = self.nested.len();
                self.nested.resize(first + pairs.len(), Attr::default());
                for (offset, pair) in pairs.iter().enumerate() {
                    let key = self.push_key(&pair.key);
                    let stored = self.store_value((&pair.value).into());
                    if let Some(slot) = self.nested.get_mut(first + offset) {
                        *slot = Attr { key, value: stored };
                    }
                }
                Value::Map { first: first as u32, len: pairs.len() as u32 }
            }
        }
    }

    fn push_attr(&mut self, owner: Owner, key: &str, value: ValueRef<'_>) {
        let key = self.push_key(key);
        let value = self.store_value(value);
        let attr = Attr { key, value };
        let (list, end) = match owner {
            Owner::Resource => (&mut self.resource_attrs, self.resources.last_mut().map(|r| &mut r.attrs_end)),
            Owner::Scope => (&mut self.scope_attrs, self.scopes.last_mut().map(|r| &mut r.attrs_end)),
            Owner::Span => (&mut self.span_attrs, self.spans.attrs_end.last_mut()),
            Owner::Event => (&mut self.event_attrs, self.events.last_mut().map(|r| &mut r.attrs_end)),
            Owner::Link => (&mut self.link_attrs, self.links.last_mut().map(|r| &mut r.attrs_end)),
        };
        // An attribute pushed before its owner exists has nowhere to go; builders call
        // the `begin_*`/`push_*` methods first, which `debug_assert` checks.
        debug_assert!(end.is_some(), "attribute pushed before its owner");
        if let Some(end) = end {
            list.push(attr);
            *end = list.len() as u32;
        }
    }

    /// Starts a new resource; following `resource_attr` calls add to it.
    pub fn begin_resource(&mut self, schema_url: &str, dropped_attributes_count: u32) {
        let schema_url = self.push_str(schema_url);
        self.resources.push(ResourceRow {
            schema_url,
            dropped_attributes_count,
            attrs_end: self.resource_attrs.len() as u32,
        });
    }

    /// Adds an attribute to the newest resource.
    pub fn resource_attr(&mut self, key: &str, value: ValueRef<'_>) {
        self.push_attr(Owner::Resource, key, value);
    }

    /// Starts a new scope under the newest resource (one is created if there is none).
    pub fn begin_scope(&mut self, name: &str, version: &str, schema_url: &str, dropped_attributes_count: u32) {
        if self.resources.is_empty() {
            self.begin_resource("", 0);
        }
        let resource = (self.resources.len() - 1) as u32;
        let name = self.push_str(name);
        let version = self.push_str(version);
        let schema_url = self.push_str(schema_url);
        self.scopes.push(ScopeRow {
            resource,
            name,
            version,
            schema_url,
            dropped_attributes_count,
            attrs_end: self.scope_attrs.len() as u32,
        });
    }

    /// Adds an attribute to the newest scope.
    pub fn scope_attr(&mut self, key: &str, value: ValueRef<'_>) {
        self.push_attr(Owner::Scope, key, value);
    }

    /// Adds a span under the newest scope (one is created if there is none); following
    /// `span_attr`, `push_event` and `push_link` calls add to it.
    pub fn push_span(&mut self, fields: &SpanFields<'_>) {
        if self.scopes.is_empty() {
            self.begin_scope("", "", "", 0);
        }
        let scope = (self.scopes.len() - 1) as u32;
        let trace_state = self.push_str(fields.trace_state);
        let name = self.push_str(fields.name);
        let status_message = self.push_str(fields.status_message);
        let s = &mut self.spans;
        s.trace_id.push(fields.trace_id);
        s.span_id.push(fields.span_id);
        s.parent_span_id.push(fields.parent_span_id.unwrap_or_default());
        s.trace_state.push(trace_state);
        s.name.push(name);
        s.kind.push(fields.kind);
        s.start_unix_nano.push(fields.start_unix_nano);
        s.duration_ns.push(fields.duration_ns);
        s.status_code.push(fields.status_code);
        s.status_message.push(status_message);
        s.flags.push(fields.flags);
        s.scope.push(scope);
        s.dropped_attributes_count.push(fields.dropped_attributes_count);
        s.dropped_events_count.push(fields.dropped_events_count);
        s.dropped_links_count.push(fields.dropped_links_count);
        s.attrs_end.push(self.span_attrs.len() as u32);
        s.events_end.push(self.events.len() as u32);
        s.links_end.push(self.links.len() as u32);
    }

    /// Adds an attribute to the newest span.
    pub fn span_attr(&mut self, key: &str, value: ValueRef<'_>) {
        self.push_attr(Owner::Span, key, value);
    }

    /// Adds an event to the newest span; following `event_attr` calls add to it.
    pub fn push_event(&mut self, time_unix_nano: u64, name: &str, dropped_attributes_count: u32) {
        let name = self.push_str(name);
        self.events.push(EventRow {
            time_unix_nano,
            name,
            dropped_attributes_count,
            attrs_end: self.event_attrs.len() as u32,
        });
        if let Some(end) = self.spans.events_end.last_mut() {
            *end = self.events.len() as u32;
        }
    }

    /// Adds an attribute to the newest event.
    pub fn event_attr(&mut self, key: &str, value: ValueRef<'_>) {
        self.push_attr(Owner::Event, key, value);
    }

    /// Adds a link to the newest span; following `link_attr` calls add to it.
    pub fn push_link(
        &mut self,
        trace_id: TraceId,
        span_id: SpanId,
        trace_state: &str,
        flags: u32,
        dropped_attributes_count: u32,
    ) {
        let trace_state = self.push_str(trace_state);
        self.links.push(LinkRow {
            trace_id,
            span_id,
            trace_state,
            flags,
            dropped_attributes_count,
            attrs_end: self.link_attrs.len() as u32,
        });
        if let Some(end) = self.spans.links_end.last_mut() {
            *end = self.links.len() as u32;
        }
    }

    /// Adds an attribute to the newest link.
    pub fn link_attr(&mut self, key: &str, value: ValueRef<'_>) {
        self.push_attr(Owner::Link, key, value);
    }

    // ----- building in any order: pending span parts, late headers, rollback ----------
    //
    // A streaming decoder meets a span's attributes, events and links before it knows
    // whether the span is valid, and a resource's or scope's schema URL after their
    // spans. These methods let it push as it reads: parts pushed with `next_span_*`
    // belong to the span that the next `push_span` adds (a span's lists are the ranges
    // since the previous span's ends), headers can be set after the fact, and
    // `rollback` takes out everything pushed since a `mark`. After `next_span_*` calls,
    // the builder must call `push_span` or `rollback` before anything else.

    /// The current size of every list, to [`rollback`](Self::rollback) to.
    pub fn mark(&self) -> BuildMark {
        BuildMark {
            strings: self.strings.len(),
            bytes: self.bytes.len(),
            nested: self.nested.len(),
            resources: self.resources.len(),
            resource_attrs: self.resource_attrs.len(),
            scopes: self.scopes.len(),
            scope_attrs: self.scope_attrs.len(),
            spans: self.len(),
            span_attrs: self.span_attrs.len(),
            events: self.events.len(),
            event_attrs: self.event_attrs.len(),
            links: self.links.len(),
            link_attrs: self.link_attrs.len(),
        }
    }

    /// Takes out everything pushed since `mark` was taken, so the batch is the value it
    /// was then. A mark is valid until a rollback to an earlier mark; the string cache
    /// may keep references past the end of the arena, which lookups check anyway.
    pub fn rollback(&mut self, mark: BuildMark) {
        if self.strings.is_char_boundary(mark.strings) {
            self.strings.truncate(mark.strings);
        }
        self.bytes.truncate(mark.bytes);
        self.nested.truncate(mark.nested);
        self.resources.truncate(mark.resources);
        self.resource_attrs.truncate(mark.resource_attrs);
        self.scopes.truncate(mark.scopes);
        self.scope_attrs.truncate(mark.scope_attrs);
        self.span_attrs.truncate(mark.span_attrs);
        self.events.truncate(mark.events);
        self.event_attrs.truncate(mark.event_attrs);
        self.links.truncate(mark.links);
        self.link_attrs.truncate(mark.link_attrs);
        let s = &mut self.spans;
        let n = mark.spans;
        s.trace_id.truncate(n);
        s.span_id.truncate(n);
        s.parent_span_id.truncate(n);
        s.trace_state.truncate(n);
        s.name.truncate(n);
        s.kind.truncate(n);
        s.start_unix_nano.truncate(n);
        s.duration_ns.truncate(n);
        s.status_code.truncate(n);
        s.status_message.truncate(n);
        for column in [
            &mut s.flags,
            &mut s.scope,
            &mut s.dropped_attributes_count,
            &mut s.dropped_events_count,
            &mut s.dropped_links_count,
            &mut s.attrs_end,
            &mut s.events_end,
            &mut s.links_end,
        ] {
            column.truncate(n);
        }
        // The newest owners' ends may have moved past what is left of their lists.
        let clamp = |end: &mut u32, len: usize| *end = (*end).min(len as u32);
        if let Some(r) = self.resources.last_mut() {
            clamp(&mut r.attrs_end, self.resource_attrs.len());
        }
        if let Some(r) = self.scopes.last_mut() {
            clamp(&mut r.attrs_end, self.scope_attrs.len());
        }
        if let Some(r) = self.events.last_mut() {
            clamp(&mut r.attrs_end, self.event_attrs.len());
        }
        if let Some(r) = self.links.last_mut() {
            clamp(&mut r.attrs_end, self.link_attrs.len());
        }
        if let Some(end) = s.attrs_end.last_mut() {
            clamp(end, self.span_attrs.len());
        }
        if let Some(end) = s.events_end.last_mut() {
            clamp(end, self.events.len());
        }
        if let Some(end) = s.links_end.last_mut() {
            clamp(end, self.links.len());
        }
    }

    /// Adds an attribute to the span that the next [`push_span`](Self::push_span) adds.
    pub fn next_span_attr(&mut self, key: &str, value: ValueRef<'_>) {
        let key = self.push_key(key);
        let value = self.store_value(value);
        self.span_attrs.push(Attr { key, value });
    }

    /// Adds an event to the span that the next `push_span` adds; following
    /// `event_attr` calls add to the event.
    pub fn next_span_event(&mut self, time_unix_nano: u64, name: &str, dropped_attributes_count: u32) {
        let name = self.push_str(name);
        self.events.push(EventRow {
            time_unix_nano,
            name,
            dropped_attributes_count,
            attrs_end: self.event_attrs.len() as u32,
        });
    }

    /// Adds a link to the span that the next `push_span` adds; following `link_attr`
    /// calls add to the link.
    pub fn next_span_link(
        &mut self,
        trace_id: TraceId,
        span_id: SpanId,
        trace_state: &str,
        flags: u32,
        dropped_attributes_count: u32,
    ) {
        let trace_state = self.push_str(trace_state);
        self.links.push(LinkRow {
            trace_id,
            span_id,
            trace_state,
            flags,
            dropped_attributes_count,
            attrs_end: self.link_attrs.len() as u32,
        });
    }

    /// Sets the fields of the newest event (for fields read after its attributes).
    pub fn set_event_fields(&mut self, time_unix_nano: u64, name: &str, dropped_attributes_count: u32) {
        let name = self.push_str(name);
        if let Some(event) = self.events.last_mut() {
            event.time_unix_nano = time_unix_nano;
            event.name = name;
            event.dropped_attributes_count = dropped_attributes_count;
        }
    }

    /// Sets the fields of the newest link (for fields read after its attributes).
    pub fn set_link_fields(
        &mut self,
        trace_id: TraceId,
        span_id: SpanId,
        trace_state: &str,
        flags: u32,
        dropped_attributes_count: u32,
    ) {
        let trace_state = self.push_str(trace_state);
        if let Some(link) = self.links.last_mut() {
            link.trace_id = trace_id;
            link.span_id = span_id;
            link.trace_state = trace_state;
            link.flags = flags;
            link.dropped_attributes_count = dropped_attributes_count;
        }
    }

    /// Sets the schema URL and dropped count of the newest resource (read after it began).
    pub fn set_resource_header(&mut self, schema_url: &str, dropped_attributes_count: u32) {
        let schema_url = self.push_str(schema_url);
        if let Some(resource) = self.resources.last_mut() {
            resource.schema_url = schema_url;
            resource.dropped_attributes_count = dropped_attributes_count;
        }
    }

    /// Sets the name, version, schema URL and dropped count of the newest scope.
    pub fn set_scope_header(&mut self, name: &str, version: &str, schema_url: &str, dropped_attributes_count: u32) {
        let name = self.push_str(name);
        let version = self.push_str(version);
        let schema_url = self.push_str(schema_url);
        if let Some(scope) = self.scopes.last_mut() {
            scope.name = name;
            scope.version = version;
            scope.schema_url = schema_url;
            scope.dropped_attributes_count = dropped_attributes_count;
        }
    }

    /// Builds a batch from owned spans, sharing a resource and scope between consecutive
    /// spans that carry equal ones.
    pub fn from_spans<'a>(spans: impl IntoIterator<Item = &'a Span>) -> SpanBatch {
        let mut batch = SpanBatch::new();
        let mut previous: Option<&Span> = None;
        for span in spans {
            let same_resource = previous.is_some_and(|p| p.resource == span.resource);
            let same_scope = same_resource && previous.is_some_and(|p| p.scope == span.scope);
            if !same_resource {
                batch.begin_resource(&span.resource.schema_url, span.resource.dropped_attributes_count);
                for kv in &span.resource.attributes {
                    batch.resource_attr(&kv.key, (&kv.value).into());
                }
            }
            if !same_scope {
                let scope = &span.scope;
                batch.begin_scope(&scope.name, &scope.version, &scope.schema_url, scope.dropped_attributes_count);
                for kv in &scope.attributes {
                    batch.scope_attr(&kv.key, (&kv.value).into());
                }
            }
            batch.push_owned_span(span);
            previous = Some(span);
        }
        batch
    }

    /// Pushes one owned span (fields, attributes, events, links) under the newest scope.
    pub fn push_owned_span(&mut self, span: &Span) {
        self.push_span(&SpanFields {
            trace_id: span.trace_id,
            span_id: span.span_id,
            parent_span_id: span.parent_span_id,
            trace_state: &span.trace_state,
            name: &span.name,
            kind: span.kind,
            start_unix_nano: span.start_unix_nano,
            duration_ns: span.duration_ns,
            status_code: span.status_code,
            status_message: &span.status_message,
            flags: span.flags,
            dropped_attributes_count: span.dropped_attributes_count,
            dropped_events_count: span.dropped_events_count,
            dropped_links_count: span.dropped_links_count,
        });
        for kv in &span.attributes {
            self.span_attr(&kv.key, (&kv.value).into());
        }
        for event in &span.events {
            self.push_event(event.time_unix_nano, &event.name, event.dropped_attributes_count);
            for kv in &event.attributes {
                self.event_attr(&kv.key, (&kv.value).into());
            }
        }
        for link in &span.links {
            self.push_link(link.trace_id, link.span_id, &link.trace_state, link.flags, link.dropped_attributes_count);
            for kv in &link.attributes {
                self.link_attr(&kv.key, (&kv.value).into());
            }
        }
    }

    /// Checks the limits `append` places on a batch: arenas and lists must stay
    /// addressable by the 32-bit references the format uses.
    pub fn check_limits(&self) -> Result<(), String> {
        let limit = u32::MAX as usize / 2;
        if self.len() > MAX_SPANS_PER_BATCH {
            return Err(format!("{} spans, more than the limit of {MAX_SPANS_PER_BATCH}", self.len()));
        }
        if self.strings.len() > limit || self.bytes.len() > limit {
            return Err("string or byte data above 2 GiB".into());
        }
        if self.nested.len() > limit || self.span_attrs.len() > limit {
            return Err("too many attributes".into());
        }
        Ok(())
    }

    // ----- reading --------------------------------------------------------------------

    fn str_at(&self, r: StrRef) -> &str {
        // `validate` (run on every decoded batch) checks every reference lands on char
        // boundaries inside the arena; built batches make them so by construction.
        self.strings.get(r.range()).unwrap_or_default()
    }

    fn bytes_at(&self, r: StrRef) -> &[u8] {
        self.bytes.get(r.range()).unwrap_or_default()
    }

    fn value_ref(&self, value: &Value) -> ValueView<'_> {
        ValueView { batch: self, value: *value }
    }

    fn attrs_view<'b>(&'b self, list: &'b [Attr], range: std::ops::Range<usize>) -> Attrs<'b> {
        Attrs { batch: self, attrs: list.get(range).unwrap_or_default() }
    }

    /// Trace id of span `row`.
    pub fn trace_id(&self, row: usize) -> TraceId {
        self.spans.trace_id.get(row).copied().unwrap_or_default()
    }

    /// The trace id column.
    pub fn trace_ids(&self) -> &[TraceId] {
        &self.spans.trace_id
    }

    /// Span id of span `row`.
    pub fn span_id(&self, row: usize) -> SpanId {
        self.spans.span_id.get(row).copied().unwrap_or_default()
    }

    /// Parent span id of span `row`, `None` for a root.
    pub fn parent_span_id(&self, row: usize) -> Option<SpanId> {
        self.spans.parent_span_id.get(row).copied().filter(|id| !id.is_zero())
    }

    /// Name of span `row`.
    pub fn name(&self, row: usize) -> &str {
        self.spans.name.get(row).map(|&r| self.str_at(r)).unwrap_or_default()
    }

    /// Trace state of span `row`.
    pub fn trace_state(&self, row: usize) -> &str {
        self.spans.trace_state.get(row).map(|&r| self.str_at(r)).unwrap_or_default()
    }

    /// Kind of span `row`.
    pub fn kind(&self, row: usize) -> SpanKind {
        self.spans.kind.get(row).copied().unwrap_or_default()
    }

    /// Start of span `row`, ns since the epoch.
    pub fn start_unix_nano(&self, row: usize) -> u64 {
        self.spans.start_unix_nano.get(row).copied().unwrap_or_default()
    }

    /// The start column.
    pub fn start_column(&self) -> &[u64] {
        &self.spans.start_unix_nano
    }

    /// Duration of span `row`, ns.
    pub fn duration_ns(&self, row: usize) -> u64 {
        self.spans.duration_ns.get(row).copied().unwrap_or_default()
    }

    /// Status of span `row`.
    pub fn status_code(&self, row: usize) -> StatusCode {
        self.spans.status_code.get(row).copied().unwrap_or_default()
    }

    /// Status message of span `row`.
    pub fn status_message(&self, row: usize) -> &str {
        self.spans.status_message.get(row).map(|&r| self.str_at(r)).unwrap_or_default()
    }

    /// Flags of span `row`.
    pub fn flags(&self, row: usize) -> u32 {
        self.spans.flags.get(row).copied().unwrap_or_default()
    }

    fn scope_index(&self, row: usize) -> usize {
        self.spans.scope.get(row).copied().unwrap_or_default() as usize
    }

    fn resource_index(&self, row: usize) -> usize {
        self.scopes.get(self.scope_index(row)).map(|s| s.resource as usize).unwrap_or_default()
    }

    /// Span attributes of span `row`.
    pub fn span_attributes(&self, row: usize) -> Attrs<'_> {
        let range = range_of(|i| self.spans.attrs_end.get(i).copied(), row);
        self.attrs_view(&self.span_attrs, range)
    }

    /// Resource attributes of span `row`.
    pub fn resource_attributes(&self, row: usize) -> Attrs<'_> {
        let index = self.resource_index(row);
        let range = range_of(|i| self.resources.get(i).map(|r| r.attrs_end), index);
        self.attrs_view(&self.resource_attrs, range)
    }

    /// The service name of span `row` (`service.name` resource attribute), if a string.
    pub fn service(&self, row: usize) -> Option<&str> {
        self.resource_attributes(row).get("service.name").and_then(|v| v.as_str())
    }

    /// Materializes span `row` as an owned [`Span`].
    pub fn to_span(&self, row: usize) -> Span {
        let resource_index = self.resource_index(row);
        let resource_row = self.resources.get(resource_index).cloned().unwrap_or_default();
        let scope_index = self.scope_index(row);
        let scope_row = self.scopes.get(scope_index).cloned().unwrap_or_default();
        let scope_range = range_of(|i| self.scopes.get(i).map(|r| r.attrs_end), scope_index);
        let events = range_of(|i| self.spans.events_end.get(i).copied(), row)
            .map(|e| {
                let event = self.events.get(e).cloned().unwrap_or_default();
                let range = range_of(|i| self.events.get(i).map(|r| r.attrs_end), e);
                Event {
                    time_unix_nano: event.time_unix_nano,
                    name: self.str_at(event.name).to_owned(),
                    attributes: self.attrs_view(&self.event_attrs, range).to_owned(),
                    dropped_attributes_count: event.dropped_attributes_count,
                }
            })
            .collect();
        let links = range_of(|i| self.spans.links_end.get(i).copied(), row)
            .map(|l| {
                let link = self.links.get(l).cloned().unwrap_or_default();
                let range = range_of(|i| self.links.get(i).map(|r| r.attrs_end), l);
                Link {
                    trace_id: link.trace_id,
                    span_id: link.span_id,
                    trace_state: self.str_at(link.trace_state).to_owned(),
                    attributes: self.attrs_view(&self.link_attrs, range).to_owned(),
                    dropped_attributes_count: link.dropped_attributes_count,
                    flags: link.flags,
                }
            })
            .collect();
        Span {
            trace_id: self.trace_id(row),
            span_id: self.span_id(row),
            parent_span_id: self.parent_span_id(row),
            trace_state: self.trace_state(row).to_owned(),
            name: self.name(row).to_owned(),
            kind: self.kind(row),
            start_unix_nano: self.start_unix_nano(row),
            duration_ns: self.duration_ns(row),
            status_code: self.status_code(row),
            status_message: self.status_message(row).to_owned(),
            flags: self.flags(row),
            resource: Resource {
                attributes: self.resource_attributes(row).to_owned(),
                dropped_attributes_count: resource_row.dropped_attributes_count,
                schema_url: self.str_at(resource_row.schema_url).to_owned(),
            },
            scope: Scope {
                name: self.str_at(scope_row.name).to_owned(),
                version: self.str_at(scope_row.version).to_owned(),
                attributes: self.attrs_view(&self.scope_attrs, scope_range).to_owned(),
                dropped_attributes_count: scope_row.dropped_attributes_count,
                schema_url: self.str_at(scope_row.schema_url).to_owned(),
            },
            attributes: self.span_attributes(row).to_owned(),
            dropped_attributes_count: self.spans.dropped_attributes_count.get(row).copied().unwrap_or_default(),
            events,
            dropped_events_count: self.spans.dropped_events_count.get(row).copied().unwrap_or_default(),
            links,
            dropped_links_count: self.spans.dropped_links_count.get(row).copied().unwrap_or_default(),
        }
    }

    /// All spans as owned rows.
    pub fn to_spans(&self) -> Vec<Span> {
        (0..self.len()).map(|row| self.to_span(row)).collect()
    }

    // ----- encoding -------------------------------------------------------------------

    /// About the size of [`encode`](Self::encode)'s output (typically a little more),
    /// to size buffers once instead of growing them.
    pub fn encoded_size_hint(&self) -> usize {
        let attrs = self.nested.len()
            + self.resource_attrs.len()
            + self.scope_attrs.len()
            + self.span_attrs.len()
            + self.event_attrs.len()
            + self.link_attrs.len();
        64 + self.strings.len()
            + self.bytes.len()
            + attrs * 12
            + self.len() * 80
            + self.resources.len() * 16
            + self.scopes.len() * 32
            + self.events.len() * 24
            + self.links.len() * 48
    }

    /// Encodes the batch (format in docs/FORMAT.md, "batch body").
    pub fn encode(&self, w: &mut Writer) {
        w.len_bytes(self.strings.as_bytes());
        w.len_bytes(&self.bytes);
        encode_attrs(w, &self.nested);
        w.varint(self.resources.len() as u64);
        for r in &self.resources {
            put_ref(w, r.schema_url);
            w.varint(u64::from(r.dropped_attributes_count));
            w.varint(u64::from(r.attrs_end));
        }
        encode_attrs(w, &self.resource_attrs);
        w.varint(self.scopes.len() as u64);
        for s in &self.scopes {
            w.varint(u64::from(s.resource));
            put_ref(w, s.name);
            put_ref(w, s.version);
            put_ref(w, s.schema_url);
            w.varint(u64::from(s.dropped_attributes_count));
            w.varint(u64::from(s.attrs_end));
        }
        encode_attrs(w, &self.scope_attrs);
        let s = &self.spans;
        w.varint(s.trace_id.len() as u64);
        for id in &s.trace_id {
            w.bytes(&id.0);
        }
        for id in &s.span_id {
            w.bytes(&id.0);
        }
        for id in &s.parent_span_id {
            w.bytes(&id.0);
        }
        for &r in &s.trace_state {
            put_ref(w, r);
        }
        for &r in &s.name {
            put_ref(w, r);
        }
        for &k in &s.kind {
            w.u8(k as u8);
        }
        let mut previous = 0u64;
        for &t in &s.start_unix_nano {
            w.varint_signed(t.wrapping_sub(previous) as i64);
            previous = t;
        }
        for &d in &s.duration_ns {
            w.varint(d);
        }
        for &c in &s.status_code {
            w.u8(c as u8);
        }
        for &r in &s.status_message {
            put_ref(w, r);
        }
        for column in [
            &s.flags,
            &s.scope,
            &s.dropped_attributes_count,
            &s.dropped_events_count,
            &s.dropped_links_count,
            &s.attrs_end,
            &s.events_end,
            &s.links_end,
        ] {
            for &v in column {
                w.varint(u64::from(v));
            }
        }
        encode_attrs(w, &self.span_attrs);
        w.varint(self.events.len() as u64);
        for e in &self.events {
            w.u64(e.time_unix_nano);
            put_ref(w, e.name);
            w.varint(u64::from(e.dropped_attributes_count));
            w.varint(u64::from(e.attrs_end));
        }
        encode_attrs(w, &self.event_attrs);
        w.varint(self.links.len() as u64);
        for l in &self.links {
            w.bytes(&l.trace_id.0);
            w.bytes(&l.span_id.0);
            put_ref(w, l.trace_state);
            w.varint(u64::from(l.flags));
            w.varint(u64::from(l.dropped_attributes_count));
            w.varint(u64::from(l.attrs_end));
        }
        encode_attrs(w, &self.link_attrs);
    }

    /// Decodes a batch body and validates every reference in it.
    pub fn decode(buf: &[u8]) -> Result<SpanBatch, DecodeError> {
        let r = &mut Reader::new(buf);
        let strings = std::str::from_utf8(r.len_bytes("string arena")?)
            .map_err(|e| DecodeError::new(e.valid_up_to(), "string arena is not valid UTF-8"))?
            .to_owned();
        let bytes = r.len_bytes("byte arena")?.to_vec();
        let nested = decode_attrs(r, "nested values")?;
        let count = r.count("resource count", r.remaining())?;
        let mut resources = Vec::with_capacity(count);
        for _ in 0..count {
            resources.push(ResourceRow {
                schema_url: get_ref(r)?,
                dropped_attributes_count: r.varint_u32("dropped count")?,
                attrs_end: r.varint_u32("attribute end")?,
            });
        }
        let resource_attrs = decode_attrs(r, "resource attributes")?;
        let count = r.count("scope count", r.remaining())?;
        let mut scopes = Vec::with_capacity(count);
        for _ in 0..count {
            scopes.push(ScopeRow {
                resource: r.varint_u32("scope resource")?,
                name: get_ref(r)?,
                version: get_ref(r)?,
                schema_url: get_ref(r)?,
                dropped_attributes_count: r.varint_u32("dropped count")?,
                attrs_end: r.varint_u32("attribute end")?,
            });
        }
        let scope_attrs = decode_attrs(r, "scope attributes")?;
        // Each span takes at least 34 bytes (ids alone), so this bounds the allocation.
        let n = r.count("span count", (r.remaining() / 34).min(MAX_SPANS_PER_BATCH))?;
        let trace_id: Vec<_> = (0..n).map(|_| r.fixed::<16>("trace id").map(TraceId)).collect::<Result<_, _>>()?;
        let span_id: Vec<_> = (0..n).map(|_| r.fixed::<8>("span id").map(SpanId)).collect::<Result<_, _>>()?;
        let parent_span_id: Vec<_> =
            (0..n).map(|_| r.fixed::<8>("parent span id").map(SpanId)).collect::<Result<_, _>>()?;
        let trace_state: Vec<_> = (0..n).map(|_| get_ref(r)).collect::<Result<_, _>>()?;
        let name: Vec<_> = (0..n).map(|_| get_ref(r)).collect::<Result<_, _>>()?;
        let kind: Vec<_> = (0..n)
            .map(|_| {
                let at = r.position();
                let code = r.u8("span kind")?;
                SpanKind::from_code(code).ok_or_else(|| DecodeError::new(at, format!("span kind {code} is not 0..=5")))
            })
            .collect::<Result<_, _>>()?;
        let mut previous = 0u64;
        let start_unix_nano: Vec<_> = (0..n)
            .map(|_| {
                let delta = r.varint_signed("start delta")?;
                previous = previous.wrapping_add(delta as u64);
                Ok(previous)
            })
            .collect::<Result<_, DecodeError>>()?;
        let duration_ns: Vec<_> = (0..n).map(|_| r.varint("duration")).collect::<Result<_, _>>()?;
        let status_code: Vec<_> = (0..n)
            .map(|_| {
                let at = r.position();
                let code = r.u8("status code")?;
                StatusCode::from_code(code)
                    .ok_or_else(|| DecodeError::new(at, format!("status code {code} is not 0..=2")))
            })
            .collect::<Result<_, _>>()?;
        let status_message: Vec<_> = (0..n).map(|_| get_ref(r)).collect::<Result<_, _>>()?;
        let mut u32_column = |what: &str| (0..n).map(|_| r.varint_u32(what)).collect::<Result<Vec<u32>, _>>();
        let flags = u32_column("flags")?;
        let scope = u32_column("span scope")?;
        let dropped_attributes_count = u32_column("dropped attributes")?;
        let dropped_events_count = u32_column("dropped events")?;
        let dropped_links_count = u32_column("dropped links")?;
        let attrs_end = u32_column("attribute end")?;
        let events_end = u32_column("event end")?;
        let links_end = u32_column("link end")?;
        let s = SpanColumns {
            trace_id,
            span_id,
            parent_span_id,
            trace_state,
            name,
            kind,
            start_unix_nano,
            duration_ns,
            status_code,
            status_message,
            flags,
            scope,
            dropped_attributes_count,
            dropped_events_count,
            dropped_links_count,
            attrs_end,
            events_end,
            links_end,
        };
        let span_attrs = decode_attrs(r, "span attributes")?;
        let count = r.count("event count", r.remaining())?;
        let mut events = Vec::with_capacity(count);
        for _ in 0..count {
            events.push(EventRow {
                time_unix_nano: r.u64("event time")?,
                name: get_ref(r)?,
                dropped_attributes_count: r.varint_u32("dropped count")?,
                attrs_end: r.varint_u32("attribute end")?,
            });
        }
        let event_attrs = decode_attrs(r, "event attributes")?;
        let count = r.count("link count", r.remaining() / 24)?;
        let mut links = Vec::with_capacity(count);
        for _ in 0..count {
            links.push(LinkRow {
                trace_id: TraceId(r.fixed::<16>("link trace id")?),
                span_id: SpanId(r.fixed::<8>("link span id")?),
                trace_state: get_ref(r)?,
                flags: r.varint_u32("link flags")?,
                dropped_attributes_count: r.varint_u32("dropped count")?,
                attrs_end: r.varint_u32("attribute end")?,
            });
        }
        let link_attrs = decode_attrs(r, "link attributes")?;
        r.finish("batch")?;
        let batch = SpanBatch {
            strings,
            bytes,
            nested,
            resources,
            resource_attrs,
            scopes,
            scope_attrs,
            spans: s,
            span_attrs,
            events,
            event_attrs,
            links,
            link_attrs,
            cache: StrCache::default(),
        };
        batch.validate().map_err(|reason| DecodeError::new(buf.len(), reason))?;
        Ok(batch)
    }

    /// Checks every internal invariant: references inside the arenas on char
    /// boundaries, ends monotone and inside their lists, indexes in range, nested values
    /// pointing forward, claimed once and no deeper than [`MAX_NESTING_DEPTH`].
    pub fn validate(&self) -> Result<(), String> {
        let check_ends = |what: &str, ends: &mut dyn Iterator<Item = u32>, list_len: usize| -> Result<(), String> {
            let mut previous = 0u32;
            for end in ends {
                if end < previous || end as usize > list_len {
                    return Err(format!("{what}: end {end} out of order or past {list_len}"));
                }
                previous = end;
            }
            Ok(())
        };
        let s = &self.spans;
        let n = s.trace_id.len();
        for (what, len) in [
            ("span ids", s.span_id.len()),
            ("parent ids", s.parent_span_id.len()),
            ("trace states", s.trace_state.len()),
            ("names", s.name.len()),
            ("kinds", s.kind.len()),
            ("starts", s.start_unix_nano.len()),
            ("durations", s.duration_ns.len()),
            ("statuses", s.status_code.len()),
            ("status messages", s.status_message.len()),
            ("flags", s.flags.len()),
            ("scopes", s.scope.len()),
            ("dropped attributes", s.dropped_attributes_count.len()),
            ("dropped events", s.dropped_events_count.len()),
            ("dropped links", s.dropped_links_count.len()),
            ("attribute ends", s.attrs_end.len()),
            ("event ends", s.events_end.len()),
            ("link ends", s.links_end.len()),
        ] {
            if len != n {
                return Err(format!("span column {what} has {len} entries, expected {n}"));
            }
        }
        check_ends("resource attributes", &mut self.resources.iter().map(|r| r.attrs_end), self.resource_attrs.len())?;
        check_ends("scope attributes", &mut self.scopes.iter().map(|r| r.attrs_end), self.scope_attrs.len())?;
        check_ends("span attributes", &mut s.attrs_end.iter().copied(), self.span_attrs.len())?;
        check_ends("span events", &mut s.events_end.iter().copied(), self.events.len())?;
        check_ends("span links", &mut s.links_end.iter().copied(), self.links.len())?;
        check_ends("event attributes", &mut self.events.iter().map(|r| r.attrs_end), self.event_attrs.len())?;
        check_ends("link attributes", &mut self.links.iter().map(|r| r.attrs_end), self.link_attrs.len())?;
        // Every attribute of every list must be reachable from its owner, so the last
        // owner must end exactly at the list's end.
        for (what, last, len) in [
            ("resource attributes", self.resources.last().map(|r| r.attrs_end), self.resource_attrs.len()),
            ("scope attributes", self.scopes.last().map(|r| r.attrs_end), self.scope_attrs.len()),
            ("span attributes", s.attrs_end.last().copied(), self.span_attrs.len()),
            ("events", s.events_end.last().copied(), self.events.len()),
            ("links", s.links_end.last().copied(), self.links.len()),
            ("event attributes", self.events.last().map(|r| r.attrs_end), self.event_attrs.len()),
            ("link attributes", self.links.last().map(|r| r.attrs_end), self.link_attrs.len()),
        ] {
            if last.unwrap_or(0) as usize != len {
                return Err(format!("{what}: {len} entries but owners cover {}", last.unwrap_or(0)));
            }
        }
        if let Some(bad) = self.scopes.iter().find(|sc| sc.resource as usize >= self.resources.len()) {
            return Err(format!("scope points at resource {} of {}", bad.resource, self.resources.len()));
        }
        if let Some(bad) = s.scope.iter().find(|&&sc| sc as usize >= self.scopes.len()) {
            return Err(format!("span points at scope {bad} of {}", self.scopes.len()));
        }
        let check_str = |r: StrRef| -> Result<(), String> {
            if self.strings.get(r.range()).is_none() {
                return Err(format!(
                    "string {}+{} outside the arena of {} bytes or off a char boundary",
                    r.start,
                    r.len,
                    self.strings.len()
                ));
            }
            Ok(())
        };
        for &r in s.trace_state.iter().chain(&s.name).chain(&s.status_message) {
            check_str(r)?;
        }
        for r in &self.resources {
            check_str(r.schema_url)?;
        }
        for sc in &self.scopes {
            check_str(sc.name)?;
            check_str(sc.version)?;
            check_str(sc.schema_url)?;
        }
        for e in &self.events {
            check_str(e.name)?;
        }
        for l in &self.links {
            check_str(l.trace_state)?;
        }
        // Nested values: `depth[i]` is the nesting depth of nested entry i, 0 while no
        // parent has claimed it.
        let mut depth = vec![0u8; self.nested.len()];
        for attr in self
            .resource_attrs
            .iter()
            .chain(&self.scope_attrs)
            .chain(&self.span_attrs)
            .chain(&self.event_attrs)
            .chain(&self.link_attrs)
        {
            check_str(attr.key)?;
            self.check_value(&attr.value, 0, None, &mut depth)?;
        }
        for (index, attr) in self.nested.iter().enumerate() {
            check_str(attr.key)?;
            // Entries are visited in index order and children point forward, so an
            // entry's depth is final by the time it is visited.
            let own_depth = depth.get(index).copied().unwrap_or(0);
            if own_depth == 0 {
                return Err(format!("nested entry {index} belongs to no value"));
            }
            self.check_value(&attr.value, usize::from(own_depth), Some(index), &mut depth)?;
        }
        Ok(())
    }

    fn check_value(
        &self,
        value: &Value,
        own_depth: usize,
        own_index: Option<usize>,
        depth: &mut [u8],
    ) -> Result<(), String> {
        match *value {
            Value::Str(r) => {
                if self.strings.get(r.range()).is_none() {
                    return Err(format!("string {}+{} outside the arena or off a char boundary", r.start, r.len));
                }
                Ok(())
            }
            Value::Bytes(r) => {
                if self.bytes.get(r.range()).is_none() {
                    return Err(format!("bytes {}+{} outside the arena", r.start, r.len));
                }
                Ok(())
            }
            Value::Array { first, len } | Value::Map { first, len } => {
                let first = first as usize;
                if own_index.is_some_and(|own| first <= own) {
                    return Err(format!("nested value at {first} does not point forward"));
                }
                if own_depth + 1 > MAX_NESTING_DEPTH {
                    return Err(format!("values nested deeper than {MAX_NESTING_DEPTH}"));
                }
                let nested_count = depth.len();
                let end = first.checked_add(len as usize).filter(|&end| end <= nested_count);
                let Some(slots) = end.and_then(|end| depth.get_mut(first..end)) else {
                    return Err(format!("nested range {first}+{len} past {nested_count} entries"));
                };
                for slot in slots {
                    if *slot != 0 {
                        return Err(format!("nested entry claimed twice near {first}"));
                    }
                    *slot = (own_depth + 1) as u8;
                }
                Ok(())
            }
            Value::Empty | Value::Int(_) | Value::Double(_) | Value::Bool(_) => Ok(()),
        }
    }
}

/// Accessors used when rows move into segments.
impl SpanBatch {
    /// Dropped attribute, event and link counts of span `row`.
    pub fn dropped_counts(&self, row: usize) -> (u32, u32, u32) {
        let s = &self.spans;
        (
            s.dropped_attributes_count.get(row).copied().unwrap_or_default(),
            s.dropped_events_count.get(row).copied().unwrap_or_default(),
            s.dropped_links_count.get(row).copied().unwrap_or_default(),
        )
    }

    /// Index of span `row`'s scope within this batch.
    pub fn scope_of(&self, row: usize) -> usize {
        self.scope_index(row)
    }

    /// The resource's dropped attribute count and schema url of span `row`.
    pub fn resource_meta(&self, row: usize) -> (u32, &str) {
        let resource = self.resources.get(self.resource_index(row));
        (
            resource.map(|r| r.dropped_attributes_count).unwrap_or_default(),
            resource.map(|r| self.str_at(r.schema_url)).unwrap_or_default(),
        )
    }

    /// The instrumentation scope of span `row`, encoded (name, version, schema url,
    /// dropped count, attributes), so equal scopes have equal bytes.
    pub fn scope_encoded(&self, row: usize) -> Vec<u8> {
        let index = self.scope_index(row);
        let mut w = Writer::with_capacity(64);
        if let Some(scope) = self.scopes.get(index) {
            w.len_bytes(self.str_at(scope.name).as_bytes());
            w.len_bytes(self.str_at(scope.version).as_bytes());
            w.len_bytes(self.str_at(scope.schema_url).as_bytes());
            w.varint(u64::from(scope.dropped_attributes_count));
            let range = range_of(|i| self.scopes.get(i).map(|r| r.attrs_end), index);
            encode_inline_attrs(&mut w, self.attrs_view(&self.scope_attrs, range));
        } else {
            w.len_bytes(b"");
            w.len_bytes(b"");
            w.len_bytes(b"");
            w.varint(0);
            w.varint(0);
        }
        w.buf
    }

    /// Encodes the events and links of span `row` (times relative to `start`).
    pub fn encode_events_and_links(&self, row: usize, start: u64, w: &mut Writer) {
        let events = range_of(|i| self.spans.events_end.get(i).copied(), row);
        w.varint(events.len() as u64);
        for e in events {
            let Some(event) = self.events.get(e) else { continue };
            w.varint_signed(event.time_unix_nano.wrapping_sub(start) as i64);
            w.len_bytes(self.str_at(event.name).as_bytes());
            w.varint(u64::from(event.dropped_attributes_count));
            let range = range_of(|i| self.events.get(i).map(|r| r.attrs_end), e);
            encode_inline_attrs(w, self.attrs_view(&self.event_attrs, range));
        }
        let links = range_of(|i| self.spans.links_end.get(i).copied(), row);
        w.varint(links.len() as u64);
        for l in links {
            let Some(link) = self.links.get(l) else { continue };
            w.bytes(&link.trace_id.0);
            w.bytes(&link.span_id.0);
            w.len_bytes(self.str_at(link.trace_state).as_bytes());
            w.varint(u64::from(link.flags));
            w.varint(u64::from(link.dropped_attributes_count));
            let range = range_of(|i| self.links.get(i).map(|r| r.attrs_end), l);
            encode_inline_attrs(w, self.attrs_view(&self.link_attrs, range));
        }
    }
}

/// Zero-copy views of one span's resource, scope, events and links, for encoders that
/// write straight from the columns instead of through [`SpanBatch::to_span`].
impl SpanBatch {
    /// Index of span `row`'s resource within this batch; rows of one resource share it.
    pub fn resource_of(&self, row: usize) -> usize {
        self.resource_index(row)
    }

    /// The instrumentation scope of span `row`.
    pub fn scope_view(&self, row: usize) -> ScopeView<'_> {
        let index = self.scope_index(row);
        let scope = self.scopes.get(index).cloned().unwrap_or_default();
        let range = range_of(|i| self.scopes.get(i).map(|r| r.attrs_end), index);
        ScopeView {
            name: self.str_at(scope.name),
            version: self.str_at(scope.version),
            schema_url: self.str_at(scope.schema_url),
            dropped_attributes_count: scope.dropped_attributes_count,
            attributes: self.attrs_view(&self.scope_attrs, range),
        }
    }

    /// The events of span `row`, in order.
    pub fn events(&self, row: usize) -> impl ExactSizeIterator<Item = EventView<'_>> + '_ {
        range_of(|i| self.spans.events_end.get(i).copied(), row).map(move |e| {
            let event = self.events.get(e).cloned().unwrap_or_default();
            let range = range_of(|i| self.events.get(i).map(|r| r.attrs_end), e);
            EventView {
                time_unix_nano: event.time_unix_nano,
                name: self.str_at(event.name),
                dropped_attributes_count: event.dropped_attributes_count,
                attributes: self.attrs_view(&self.event_attrs, range),
            }
        })
    }

    /// The links of span `row`, in order.
    pub fn links(&self, row: usize) -> impl ExactSizeIterator<Item = LinkView<'_>> + '_ {
        range_of(|i| self.spans.links_end.get(i).copied(), row).map(move |l| {
            let link = self.links.get(l).cloned().unwrap_or_default();
            let range = range_of(|i| self.links.get(i).map(|r| r.attrs_end), l);
            LinkView {
                trace_id: link.trace_id,
                span_id: link.span_id,
                trace_state: self.str_at(link.trace_state),
                flags: link.flags,
                dropped_attributes_count: link.dropped_attributes_count,
                attributes: self.attrs_view(&self.link_attrs, range),
            }
        })
    }
}

/// A borrowed instrumentation scope of a batch.
#[derive(Clone, Copy)]
pub struct ScopeView<'b> {
    /// Scope name.
    pub name: &'b str,
    /// Scope version.
    pub version: &'b str,
    /// Schema url.
    pub schema_url: &'b str,
    /// Attributes the producer dropped.
    pub dropped_attributes_count: u32,
    /// Scope attributes.
    pub attributes: Attrs<'b>,
}

/// A borrowed span event of a batch.
#[derive(Clone, Copy)]
pub struct EventView<'b> {
    /// Time, ns since the epoch.
    pub time_unix_nano: u64,
    /// Event name.
    pub name: &'b str,
    /// Attributes the producer dropped.
    pub dropped_attributes_count: u32,
    /// Event attributes.
    pub attributes: Attrs<'b>,
}

/// A borrowed span link of a batch.
#[derive(Clone, Copy)]
pub struct LinkView<'b> {
    /// Linked trace id (stored as given, all-zero included).
    pub trace_id: TraceId,
    /// Linked span id.
    pub span_id: SpanId,
    /// Trace state.
    pub trace_state: &'b str,
    /// Link flags.
    pub flags: u32,
    /// Attributes the producer dropped.
    pub dropped_attributes_count: u32,
    /// Link attributes.
    pub attributes: Attrs<'b>,
}

/// Attributes written whole (key and value) into a segment's rest blob.
fn encode_inline_attrs(w: &mut Writer, attrs: Attrs<'_>) {
    w.varint(attrs.len() as u64);
    for (key, value) in attrs.iter() {
        w.len_bytes(key.as_bytes());
        crate::segment::writer::encode_any(w, &value.to_any());
    }
}

#[inline]
fn put_ref(w: &mut Writer, r: StrRef) {
    w.varint(u64::from(r.start));
    w.varint(u64::from(r.len));
}

fn get_ref(r: &mut Reader<'_>) -> Result<StrRef, DecodeError> {
    Ok(StrRef { start: r.varint_u32("string offset")?, len: r.varint_u32("string length")? })
}

const TAG_EMPTY: u8 = 0;
const TAG_STR: u8 = 1;
const TAG_INT: u8 = 2;
const TAG_DOUBLE: u8 = 3;
const TAG_BOOL_FALSE: u8 = 4;
const TAG_BOOL_TRUE: u8 = 5;
const TAG_BYTES: u8 = 6;
const TAG_ARRAY: u8 = 7;
const TAG_MAP: u8 = 8;

fn encode_attrs(w: &mut Writer, attrs: &[Attr]) {
    w.varint(attrs.len() as u64);
    for attr in attrs {
        put_ref(w, attr.key);
        match attr.value {
            Value::Empty => w.u8(TAG_EMPTY),
            Value::Str(r) => {
                w.u8(TAG_STR);
                put_ref(w, r);
            }
            Value::Int(i) => {
                w.u8(TAG_INT);
                w.varint_signed(i);
            }
            Value::Double(d) => {
                w.u8(TAG_DOUBLE);
                w.u64(d);
            }
            Value::Bool(b) => w.u8(if b { TAG_BOOL_TRUE } else { TAG_BOOL_FALSE }),
            Value::Bytes(r) => {
                w.u8(TAG_BYTES);
                put_ref(w, r);
            }
            Value::Array { first, len } => {
                w.u8(TAG_ARRAY);
                w.varint(u64::from(first));
                w.varint(u64::from(len));
            }
            Value::Map { first, len } => {
                w.u8(TAG_MAP);
                w.varint(u64::from(first));
                w.varint(u64::from(len));
            }
        }
    }
}

fn decode_attrs(r: &mut Reader<'_>, what: &str) -> Result<Vec<Attr>, DecodeError> {
    // Each attribute takes at least 3 bytes (key offset, key length, tag).
    let count = r.count(what, r.remaining() / 3)?;
    let mut attrs = Vec::with_capacity(count);
    for _ in 0..count {
        let key = get_ref(r)?;
        let at = r.position();
        let value = match r.u8("value tag")? {
            TAG_EMPTY => Value::Empty,
            TAG_STR => Value::Str(get_ref(r)?),
            TAG_INT => Value::Int(r.varint_signed("int value")?),
            TAG_DOUBLE => Value::Double(r.u64("double value")?),
            TAG_BOOL_FALSE => Value::Bool(false),
            TAG_BOOL_TRUE => Value::Bool(true),
            TAG_BYTES => Value::Bytes(get_ref(r)?),
            TAG_ARRAY => Value::Array { first: r.varint_u32("array start")?, len: r.varint_u32("array length")? },
            TAG_MAP => Value::Map { first: r.varint_u32("map start")?, len: r.varint_u32("map length")? },
            tag => return Err(DecodeError::new(at, format!("{what}: unknown value tag {tag}"))),
        };
        attrs.push(Attr { key, value });
    }
    Ok(attrs)
}

/// A borrowed list of attributes of one owner.
#[derive(Clone, Copy)]
pub struct Attrs<'b> {
    batch: &'b SpanBatch,
    attrs: &'b [Attr],
}

impl<'b> Attrs<'b> {
    /// Number of attributes.
    pub fn len(&self) -> usize {
        self.attrs.len()
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.attrs.is_empty()
    }

    /// The pairs in order.
    pub fn iter(&self) -> impl Iterator<Item = (&'b str, ValueView<'b>)> + 'b {
        let batch = self.batch;
        self.attrs.iter().map(move |a| (batch.str_at(a.key), batch.value_ref(&a.value)))
    }

    /// The value of the first attribute named `key`.
    pub fn get(&self, key: &str) -> Option<ValueView<'b>> {
        let batch = self.batch;
        self.attrs.iter().find(|a| batch.str_at(a.key) == key).map(|a| batch.value_ref(&a.value))
    }

    /// Owned copies of the pairs.
    pub fn to_owned(&self) -> Vec<KeyValue> {
        self.iter().map(|(key, value)| KeyValue { key: key.to_owned(), value: value.to_any() }).collect()
    }
}

/// What a [`ValueView`] holds, borrowed from the batch.
#[derive(Clone, Copy)]
pub enum ValueShape<'b> {
    /// The empty value.
    Empty,
    /// A string.
    Str(&'b str),
    /// An int64.
    Int(i64),
    /// A float64 (its bits as stored).
    Double(f64),
    /// A bool.
    Bool(bool),
    /// Bytes.
    Bytes(&'b [u8]),
    /// An array: the items are the values of these pairs (their keys are empty).
    Array(Attrs<'b>),
    /// A map.
    Map(Attrs<'b>),
}

/// A borrowed attribute value inside a batch.
#[derive(Clone, Copy)]
pub struct ValueView<'b> {
    batch: &'b SpanBatch,
    value: Value,
}

impl<'b> ValueView<'b> {
    /// The string, if this is a string value.
    pub fn as_str(&self) -> Option<&'b str> {
        match self.value {
            Value::Str(r) => Some(self.batch.str_at(r)),
            _ => None,
        }
    }

    /// The integer, if this is an int value.
    pub fn as_int(&self) -> Option<i64> {
        match self.value {
            Value::Int(i) => Some(i),
            _ => None,
        }
    }

    /// The float, if this is a double value.
    pub fn as_double(&self) -> Option<f64> {
        match self.value {
            Value::Double(bits) => Some(f64::from_bits(bits)),
            _ => None,
        }
    }

    /// The bool, if this is a bool value.
    pub fn as_bool(&self) -> Option<bool> {
        match self.value {
            Value::Bool(b) => Some(b),
            _ => None,
        }
    }

    /// The value, borrowed: strings and bytes from the arena, arrays and maps as
    /// [`Attrs`] over their items (array items have empty keys).
    pub fn shape(&self) -> ValueShape<'b> {
        let batch = self.batch;
        let nested = |first: u32, len: u32| {
            let first = first as usize;
            Attrs { batch, attrs: batch.nested.get(first..first + len as usize).unwrap_or_default() }
        };
        match self.value {
            Value::Empty => ValueShape::Empty,
            Value::Str(r) => ValueShape::Str(batch.str_at(r)),
            Value::Int(i) => ValueShape::Int(i),
            Value::Double(bits) => ValueShape::Double(f64::from_bits(bits)),
            Value::Bool(b) => ValueShape::Bool(b),
            Value::Bytes(r) => ValueShape::Bytes(batch.bytes_at(r)),
            Value::Array { first, len } => ValueShape::Array(nested(first, len)),
            Value::Map { first, len } => ValueShape::Map(nested(first, len)),
        }
    }

    /// The value as a borrowed scalar, or an owned-free view for nested ones.
    pub fn to_any(&self) -> AnyValue {
        self.to_any_at_depth(0)
    }

    fn to_any_at_depth(self, depth: usize) -> AnyValue {
        let batch = self.batch;
        // `validate` bounds nesting, so this recursion is bounded; the depth guard keeps
        // an unvalidated batch from recursing without end.
        if depth > MAX_NESTING_DEPTH {
            return AnyValue::Empty;
        }
        let nested = |first: u32, len: u32| -> &'b [Attr] {
            let first = first as usize;
            batch.nested.get(first..first + len as usize).unwrap_or_default()
        };
        match self.value {
            Value::Empty => AnyValue::Empty,
            Value::Str(r) => AnyValue::Str(batch.str_at(r).to_owned()),
            Value::Int(i) => AnyValue::Int(i),
            Value::Double(bits) => AnyValue::Double(f64::from_bits(bits)),
            Value::Bool(b) => AnyValue::Bool(b),
            Value::Bytes(r) => AnyValue::Bytes(batch.bytes_at(r).to_vec()),
            Value::Array { first, len } => AnyValue::Array(
                nested(first, len).iter().map(|a| batch.value_ref(&a.value).to_any_at_depth(depth + 1)).collect(),
            ),
            Value::Map { first, len } => AnyValue::Map(
                nested(first, len)
                    .iter()
                    .map(|a| KeyValue {
                        key: batch.str_at(a.key).to_owned(),
                        value: batch.value_ref(&a.value).to_any_at_depth(depth + 1),
                    })
                    .collect(),
            ),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Arbitrary attribute values, nested up to three levels, with every float bit
    /// pattern (NaN payloads, -0.0, infinities) and every kind of string.
    pub(crate) fn any_value() -> impl Strategy<Value = AnyValue> {
        let leaf = prop_oneof![
            Just(AnyValue::Empty),
            ".{0,12}".prop_map(AnyValue::Str),
            any::<i64>().prop_map(AnyValue::Int),
            any::<u64>().prop_map(|bits| AnyValue::Double(f64::from_bits(bits))),
            any::<bool>().prop_map(AnyValue::Bool),
            proptest::collection::vec(any::<u8>(), 0..8).prop_map(AnyValue::Bytes),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(AnyValue::Array),
                proptest::collection::vec(("[a-z.]{0,6}", inner).prop_map(|(k, v)| KeyValue::new(k, v)), 0..4)
                    .prop_map(AnyValue::Map),
            ]
        })
    }

    pub(crate) fn attributes() -> impl Strategy<Value = Vec<KeyValue>> {
        proptest::collection::vec(("[a-z._]{0,10}", any_value()).prop_map(|(k, v)| KeyValue::new(k, v)), 0..4)
    }

    fn trace_id() -> impl Strategy<Value = TraceId> {
        any::<[u8; 16]>().prop_map(TraceId)
    }

    fn span_id() -> impl Strategy<Value = SpanId> {
        any::<[u8; 8]>().prop_map(SpanId)
    }

    fn resource() -> impl Strategy<Value = Resource> {
        (attributes(), any::<u32>(), ".{0,5}").prop_map(|(attributes, dropped_attributes_count, schema_url)| Resource {
            attributes,
            dropped_attributes_count,
            schema_url,
        })
    }

    fn scope() -> impl Strategy<Value = Scope> {
        (".{0,5}", ".{0,5}", attributes(), any::<u32>(), ".{0,5}").prop_map(
            |(name, version, attributes, dropped_attributes_count, schema_url)| Scope {
                name,
                version,
                attributes,
                dropped_attributes_count,
                schema_url,
            },
        )
    }

    fn event() -> impl Strategy<Value = Event> {
        (any::<u64>(), ".{0,8}", attributes(), any::<u32>()).prop_map(
            |(time_unix_nano, name, attributes, dropped_attributes_count)| Event {
                time_unix_nano,
                name,
                attributes,
                dropped_attributes_count,
            },
        )
    }

    fn link() -> impl Strategy<Value = Link> {
        (trace_id(), span_id(), ".{0,8}", attributes(), any::<u32>(), any::<u32>()).prop_map(
            |(trace_id, span_id, trace_state, attributes, dropped_attributes_count, flags)| Link {
                trace_id,
                span_id,
                trace_state,
                attributes,
                dropped_attributes_count,
                flags,
            },
        )
    }

    /// Arbitrary spans covering every field of the model.
    pub(crate) fn any_span() -> impl Strategy<Value = Span> {
        (
            (
                trace_id(),
                span_id(),
                proptest::option::of(span_id().prop_filter("zero id means none", |id| !id.is_zero())),
            ),
            (".{0,8}", ".{0,12}", 0u8..6, any::<u64>(), any::<u64>(), 0u8..3, ".{0,8}", any::<u32>()),
            (resource(), scope(), attributes(), any::<u32>()),
            (
                proptest::collection::vec(event(), 0..3),
                any::<u32>(),
                proptest::collection::vec(link(), 0..3),
                any::<u32>(),
            ),
        )
            .prop_map(|(ids, fields, context, children)| {
                let (trace_id, span_id, parent_span_id) = ids;
                let (trace_state, name, kind, start_unix_nano, duration_ns, status, status_message, flags) = fields;
                let (resource, scope, attributes, dropped_attributes_count) = context;
                let (events, dropped_events_count, links, dropped_links_count) = children;
                Span {
                    trace_id,
                    span_id,
                    parent_span_id,
                    trace_state,
                    name,
                    kind: SpanKind::from_code(kind).unwrap(),
                    start_unix_nano,
                    duration_ns,
                    status_code: StatusCode::from_code(status).unwrap(),
                    status_message,
                    flags,
                    resource,
                    scope,
                    attributes,
                    dropped_attributes_count,
                    events,
                    dropped_events_count,
                    links,
                    dropped_links_count,
                }
            })
    }

    /// Spans where runs share resources and scopes, as real batches do.
    pub(crate) fn any_spans() -> impl Strategy<Value = Vec<Span>> {
        proptest::collection::vec((any_span(), 1usize..4), 0..6).prop_map(|groups| {
            let mut spans = Vec::new();
            for (span, repeat) in groups {
                for i in 0..repeat {
                    let mut copy = span.clone();
                    copy.span_id.0[0] = copy.span_id.0[0].wrapping_add(i as u8);
                    spans.push(copy);
                }
            }
            spans
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        #[test]
        fn spans_round_trip_through_a_batch(spans in any_spans()) {
            let batch = SpanBatch::from_spans(&spans);
            batch.validate().unwrap();
            prop_assert_eq!(batch.len(), spans.len());
            prop_assert_eq!(batch.to_spans(), spans);
        }

        /// Whatever was pushed after a mark (resources, scopes, pending span parts,
        /// spans), a rollback gives back the batch as it was, and spans pushed with
        /// pending parts read back as the spans they were built from.
        #[test]
        fn rollback_restores_the_batch_and_pending_parts_build_spans(
            first in any_spans(),
            later in any_spans(),
            pending in any_span(),
        ) {
            let mut batch = SpanBatch::from_spans(&first);
            let before = batch.clone();
            let mark = batch.mark();
            for span in &later {
                batch.begin_resource(&span.resource.schema_url, 1);
                batch.resource_attr("k", ValueRef::Str("v"));
                batch.begin_scope(&span.scope.name, "", "", 0);
                batch.push_owned_span(span);
            }
            // Parts of a span that is rejected, never pushed.
            for kv in &pending.attributes {
                batch.next_span_attr(&kv.key, (&kv.value).into());
            }
            batch.next_span_event(1, "e", 0);
            batch.event_attr("a", ValueRef::Int(1));
            batch.next_span_link(TraceId([1; 16]), SpanId([2; 8]), "", 0, 0);
            batch.rollback(mark);
            batch.validate().unwrap();
            prop_assert_eq!(&batch, &before);

            // The same parts, pushed before their span, make the span.
            batch.begin_resource(&pending.resource.schema_url, pending.resource.dropped_attributes_count);
            for kv in &pending.resource.attributes {
                batch.resource_attr(&kv.key, (&kv.value).into());
            }
            let scope = &pending.scope;
            batch.begin_scope("", "", "", 0);
            for kv in &scope.attributes {
                batch.scope_attr(&kv.key, (&kv.value).into());
            }
            for kv in &pending.attributes {
                batch.next_span_attr(&kv.key, (&kv.value).into());
            }
            for event in &pending.events {
                batch.next_span_event(0, "", 0);
                for kv in &event.attributes {
                    batch.event_attr(&kv.key, (&kv.value).into());
                }
                batch.set_event_fields(event.time_unix_nano, &event.name, event.dropped_attributes_count);
            }
            for link in &pending.links {
                batch.next_span_link(TraceId::default(), SpanId::default(), "", 0, 0);
                for kv in &link.attributes {
                    batch.link_attr(&kv.key, (&kv.value).into());
                }
                batch.set_link_fields(link.trace_id, link.span_id, &link.trace_state, link.flags, link.dropped_attributes_count);
            }
            batch.set_scope_header(&scope.name, &scope.version, &scope.schema_url, scope.dropped_attributes_count);
            batch.push_span(&SpanFields {
                trace_id: pending.trace_id,
                span_id: pending.span_id,
                parent_span_id: pending.parent_span_id,
                trace_state: &pending.trace_state,
                name: &pending.name,
                kind: pending.kind,
                start_unix_nano: pending.start_unix_nano,
                duration_ns: pending.duration_ns,
                status_code: pending.status_code,
                status_message: &pending.status_message,
                flags: pending.flags,
                dropped_attributes_count: pending.dropped_attributes_count,
                dropped_events_count: pending.dropped_events_count,
                dropped_links_count: pending.dropped_links_count,
            });
            batch.set_resource_header(&pending.resource.schema_url, pending.resource.dropped_attributes_count);
            batch.validate().unwrap();
            let mut expected = first.clone();
            expected.push(pending.clone());
            prop_assert_eq!(batch.to_spans(), expected);
        }

        #[test]
        fn batches_round_trip_through_encoding(spans in any_spans()) {
            let batch = SpanBatch::from_spans(&spans);
            let mut writer = Writer::default();
            batch.encode(&mut writer);
            let decoded = SpanBatch::decode(&writer.buf).unwrap();
            prop_assert_eq!(decoded.to_spans(), spans);
            prop_assert_eq!(decoded, batch);
        }

        #[test]
        fn row_views_agree_with_owned_spans(spans in any_spans()) {
            let batch = SpanBatch::from_spans(&spans);
            for (row, span) in spans.iter().enumerate() {
                let scope = batch.scope_view(row);
                prop_assert_eq!(scope.name, span.scope.name.as_str());
                prop_assert_eq!(scope.version, span.scope.version.as_str());
                prop_assert_eq!(scope.schema_url, span.scope.schema_url.as_str());
                prop_assert_eq!(scope.dropped_attributes_count, span.scope.dropped_attributes_count);
                prop_assert_eq!(&shaped(scope.attributes), &span.scope.attributes);
                let (dropped, schema_url) = batch.resource_meta(row);
                let resource = Resource {
                    attributes: shaped(batch.resource_attributes(row)),
                    dropped_attributes_count: dropped,
                    schema_url: schema_url.to_owned(),
                };
                prop_assert_eq!(&resource, &span.resource);
                let events: Vec<Event> = batch
                    .events(row)
                    .map(|e| Event {
                        time_unix_nano: e.time_unix_nano,
                        name: e.name.to_owned(),
                        attributes: shaped(e.attributes),
                        dropped_attributes_count: e.dropped_attributes_count,
                    })
                    .collect();
                prop_assert_eq!(&events, &span.events);
                let links: Vec<Link> = batch
                    .links(row)
                    .map(|l| Link {
                        trace_id: l.trace_id,
                        span_id: l.span_id,
                        trace_state: l.trace_state.to_owned(),
                        attributes: shaped(l.attributes),
                        dropped_attributes_count: l.dropped_attributes_count,
                        flags: l.flags,
                    })
                    .collect();
                prop_assert_eq!(&links, &span.links);
                if row > 0 {
                    let same = spans[row - 1].resource == span.resource;
                    prop_assert_eq!(batch.resource_of(row - 1) == batch.resource_of(row), same);
                }
            }
        }

        #[test]
        fn arbitrary_bytes_decode_to_an_error_or_a_valid_batch(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            if let Ok(batch) = SpanBatch::decode(&bytes) {
                batch.validate().unwrap();
                let _ = batch.to_spans();
            }
        }

        #[test]
        fn damaged_encodings_never_panic(spans in any_spans(), flips in proptest::collection::vec(any::<usize>(), 1..4)) {
            let batch = SpanBatch::from_spans(&spans);
            let mut writer = Writer::default();
            batch.encode(&mut writer);
            let mut bytes = writer.buf;
            if !bytes.is_empty() {
                for flip in flips {
                    let len = bytes.len();
                    bytes[flip % len] ^= 1 << (flip % 8);
                }
            }
            if let Ok(batch) = SpanBatch::decode(&bytes) {
                let _ = batch.to_spans();
            }
        }
    }

    /// Owned pairs rebuilt through [`ValueView::shape`] alone (not `to_any`).
    fn shaped(attrs: Attrs<'_>) -> Vec<KeyValue> {
        fn value(view: ValueView<'_>) -> AnyValue {
            match view.shape() {
                ValueShape::Empty => AnyValue::Empty,
                ValueShape::Str(s) => AnyValue::Str(s.to_owned()),
                ValueShape::Int(i) => AnyValue::Int(i),
                ValueShape::Double(d) => AnyValue::Double(d),
                ValueShape::Bool(b) => AnyValue::Bool(b),
                ValueShape::Bytes(b) => AnyValue::Bytes(b.to_vec()),
                ValueShape::Array(items) => AnyValue::Array(items.iter().map(|(_, v)| value(v)).collect()),
                ValueShape::Map(pairs) => AnyValue::Map(shaped(pairs)),
            }
        }
        attrs.iter().map(|(key, v)| KeyValue { key: key.to_owned(), value: value(v) }).collect()
    }

    #[test]
    fn repeated_strings_are_stored_once_per_batch() {
        let request_id = "f3b2a1c4-5d6e-4f70-8192-a3b4c5d6e7f8";
        let span = Span {
            name: "GET /orders".into(),
            attributes: vec![KeyValue::new("http.request.method", "GET"), KeyValue::new("aws.request_id", request_id)],
            ..Span::default()
        };
        let spans = vec![span; 3000];
        let mut batch = SpanBatch::from_spans(&spans);
        // The name, both keys and the short value once; the 36-byte id, longer than
        // the builder looks up, every time; empty strings take no bytes.
        let once = "GET /orders".len() + "http.request.method".len() + "GET".len() + "aws.request_id".len();
        assert_eq!(batch.strings.len(), once + 3000 * request_id.len());
        batch.validate().unwrap();
        assert_eq!(batch.to_spans(), spans);
        let mut writer = Writer::default();
        batch.encode(&mut writer);
        assert_eq!(SpanBatch::decode(&writer.buf).unwrap(), batch);
        let before = batch.memory_size_bytes();
        batch.shrink_to_fit();
        assert!(batch.memory_size_bytes() <= before);
        assert_eq!(batch.to_spans(), spans);
        // A shrunk batch has no cache but still grows correctly.
        batch.push_owned_span(&spans[0]);
        batch.validate().unwrap();
        assert_eq!(batch.to_span(3000), spans[0]);
    }

    #[test]
    fn values_nested_too_deep_are_refused_on_decode() {
        let mut value = AnyValue::Int(1);
        for _ in 0..MAX_NESTING_DEPTH + 1 {
            value = AnyValue::Array(vec![value]);
        }
        let span = Span { attributes: vec![KeyValue::new("deep", value)], ..Span::default() };
        let batch = SpanBatch::from_spans([&span]);
        let err = batch.validate().unwrap_err();
        assert!(err.contains("nested deeper"), "{err}");
        let mut writer = Writer::default();
        batch.encode(&mut writer);
        assert!(SpanBatch::decode(&writer.buf).is_err());
    }

    #[test]
    fn a_cycle_in_nested_values_is_refused() {
        let span = Span {
            attributes: vec![KeyValue::new("a", AnyValue::Array(vec![AnyValue::Array(vec![])]))],
            ..Span::default()
        };
        let mut batch = SpanBatch::from_spans([&span]);
        // Point the inner array back at itself.
        batch.nested[0].value = Value::Array { first: 0, len: 1 };
        assert!(batch.validate().unwrap_err().contains("point forward"));
    }
}
