//! The fast path of the OTLP/JSON decoder: a scanner for the JSON that OTLP exporters
//! write, driving the same [`Decoder`] as the serde path.
//!
//! It takes only a strict subset of JSON and of the OTLP/JSON mapping: messages as
//! objects with known keys, each at most once; strings without escapes or control
//! characters; integers in their plain forms; attribute values that are strings,
//! integers, doubles with a fraction or exponent (or `"NaN"`, `"Infinity"`,
//! `"-Infinity"`), booleans or empty. Anything else — including every malformed
//! payload — makes it give up (`None`), and the caller decodes the payload again with
//! the serde path, which names the error exactly. So for the payloads it finishes, it
//! must build what the serde path builds; the differential tests check that.
#![deny(clippy::unwrap_used, clippy::indexing_slicing)]

use std::borrow::Cow;

use spanstore_engine::{SpanBatch, ValueRef};

use super::{
    enum_from_name, finish_event, finish_link, Decoder, Enum, EventReader, JsonStatus, LinkReader, SpanText, Text,
};

/// Decodes `text` into the decoder's batch; `None` when the payload needs the serde path.
pub(super) fn decode<'de>(text: &'de str, d: &mut Decoder<'_, 'de>) -> Option<()> {
    let mut s = Scan { bytes: text.as_bytes(), text, pos: 0 };
    let mut seen = 0u32;
    s.object(|s, key| match key {
        "resourceSpans" | "resource_spans" => {
            once(&mut seen, 0)?;
            s.array(|s, index| resource_spans(s, d, index))
        }
        _ => None,
    })?;
    s.skip_whitespace();
    (s.pos == s.bytes.len()).then_some(())
}

/// Marks field `bit` seen; `None` (give up) when it was seen before.
fn once(seen: &mut u32, bit: u32) -> Option<()> {
    let mask = 1u32 << bit;
    if *seen & mask != 0 {
        return None;
    }
    *seen |= mask;
    Some(())
}

fn text(value: &str) -> Text<'_> {
    Text(Cow::Borrowed(value))
}

struct Scan<'de> {
    bytes: &'de [u8],
    text: &'de str,
    pos: usize,
}

impl<'de> Scan<'de> {
    fn skip_whitespace(&mut self) {
        while let Some(b' ' | b'\n' | b'\t' | b'\r') = self.bytes.get(self.pos) {
            self.pos += 1;
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.skip_whitespace();
        self.bytes.get(self.pos).copied()
    }

    fn eat(&mut self, byte: u8) -> Option<()> {
        (self.peek()? == byte).then(|| self.pos += 1)
    }

    /// A string without escapes or control characters, borrowed.
    fn string(&mut self) -> Option<&'de str> {
        self.eat(b'"')?;
        let start = self.pos;
        let rest = self.bytes.get(start..)?;
        let len = find_quote_escape_or_control(rest)?;
        if rest.get(len) != Some(&b'"') {
            return None;
        }
        self.pos = start + len + 1;
        self.text.get(start..start + len)
    }

    /// `{ "key": value, ... }`, calling `field` with each key; the value is its to read.
    fn object(&mut self, mut field: impl FnMut(&mut Self, &'de str) -> Option<()>) -> Option<()> {
        self.eat(b'{')?;
        if self.peek()? == b'}' {
            self.pos += 1;
            return Some(());
        }
        loop {
            let key = self.string()?;
            self.eat(b':')?;
            field(self, key)?;
            match self.peek()? {
                b',' => self.pos += 1,
                b'}' => {
                    self.pos += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    /// `[ item, ... ]`, calling `item` with each index.
    fn array(&mut self, mut item: impl FnMut(&mut Self, usize) -> Option<()>) -> Option<()> {
        self.eat(b'[')?;
        if self.peek()? == b']' {
            self.pos += 1;
            return Some(());
        }
        let mut index = 0;
        loop {
            item(self, index)?;
            index += 1;
            match self.peek()? {
                b',' => self.pos += 1,
                b']' => {
                    self.pos += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    /// The digits of a JSON integer (`-?(0|[1-9][0-9]*)` not followed by a fraction or
    /// an exponent), as text.
    fn json_integer(&mut self) -> Option<&'de str> {
        self.skip_whitespace();
        let start = self.pos;
        if self.bytes.get(self.pos) == Some(&b'-') {
            self.pos += 1;
        }
        let digits_start = self.pos;
        while self.bytes.get(self.pos).is_some_and(u8::is_ascii_digit) {
            self.pos += 1;
        }
        let digits = self.pos - digits_start;
        if digits == 0 || (digits > 1 && self.bytes.get(digits_start) == Some(&b'0')) {
            return None;
        }
        if matches!(self.bytes.get(self.pos), Some(b'.' | b'e' | b'E')) {
            return None;
        }
        self.text.get(start..self.pos)
    }

    /// A uint32/uint64 field: a decimal string of digits or a JSON integer, at most `max`.
    fn unsigned(&mut self, max: u64) -> Option<u64> {
        let digits = if self.peek()? == b'"' { self.string()? } else { self.json_integer()? };
        if digits.is_empty() {
            return None;
        }
        // As `u64::from_str` reads digits (leading zeros included), without its sign.
        let mut value: u64 = 0;
        for byte in digits.bytes() {
            let digit = byte.wrapping_sub(b'0');
            if digit > 9 {
                return None;
            }
            value = value.checked_mul(10)?.checked_add(u64::from(digit))?;
        }
        (value <= max).then_some(value)
    }

    /// An int64 value: a decimal string (`-?[0-9]+`) or a JSON integer.
    fn int64(&mut self) -> Option<i64> {
        let digits = if self.peek()? == b'"' { self.string()? } else { self.json_integer()? };
        let unsigned = digits.strip_prefix('-').unwrap_or(digits);
        if unsigned.is_empty() || unsigned.len() > 19 || !unsigned.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        digits.parse::<i64>().ok()
    }

    /// A double value: `"NaN"`, `"Infinity"`, `"-Infinity"`, or a JSON number with a
    /// fraction or an exponent (integers, whose conversion has its own rules, give up).
    fn double(&mut self) -> Option<f64> {
        if self.peek()? == b'"' {
            return match self.string()? {
                "NaN" => Some(f64::NAN),
                "Infinity" => Some(f64::INFINITY),
                "-Infinity" => Some(f64::NEG_INFINITY),
                _ => None,
            };
        }
        let start = self.pos;
        if self.bytes.get(self.pos) == Some(&b'-') {
            self.pos += 1;
        }
        let digits = self.count_digits();
        if digits == 0 || (digits > 1 && self.bytes.get(self.pos - digits) == Some(&b'0')) {
            return None;
        }
        let mut fraction_or_exponent = false;
        if self.bytes.get(self.pos) == Some(&b'.') {
            self.pos += 1;
            if self.count_digits() == 0 {
                return None;
            }
            fraction_or_exponent = true;
        }
        if let Some(b'e' | b'E') = self.bytes.get(self.pos) {
            self.pos += 1;
            if let Some(b'+' | b'-') = self.bytes.get(self.pos) {
                self.pos += 1;
            }
            // Long exponents are where parsers differ on range errors: give up.
            let exponent = self.count_digits();
            if exponent == 0 || exponent > 3 {
                return None;
            }
            fraction_or_exponent = true;
        }
        if !fraction_or_exponent {
            return None;
        }
        let value = self.text.get(start..self.pos)?.parse::<f64>().ok()?;
        value.is_finite().then_some(value)
    }

    fn count_digits(&mut self) -> usize {
        let start = self.pos;
        while self.bytes.get(self.pos).is_some_and(u8::is_ascii_digit) {
            self.pos += 1;
        }
        self.pos - start
    }

    fn boolean(&mut self) -> Option<bool> {
        self.skip_whitespace();
        let rest = self.bytes.get(self.pos..)?;
        if rest.starts_with(b"true") {
            self.pos += 4;
            Some(true)
        } else if rest.starts_with(b"false") {
            self.pos += 5;
            Some(false)
        } else {
            None
        }
    }

    /// An enum field: a non-negative JSON integer or a name (or number) in a string.
    fn enumeration(&mut self) -> Option<Enum> {
        if self.peek()? == b'"' {
            return enum_from_name(self.string()?).map(Enum);
        }
        let digits = self.json_integer()?;
        if digits.starts_with('-') || digits.len() > 18 {
            return None;
        }
        digits.parse::<i64>().ok().map(Enum)
    }
}

/// The index of the first `"`, `\\` or control character in `bytes`, eight bytes at a
/// time (the lowest flagged byte of each word is exact; higher ones may be false).
fn find_quote_escape_or_control(bytes: &[u8]) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let mut offset = 0;
    let mut words = bytes.chunks_exact(8);
    for chunk in &mut words {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let word = u64::from_le_bytes(word);
        let quote = word ^ (ONES * u64::from(b'"'));
        let backslash = word ^ (ONES * u64::from(b'\\'));
        let found = (quote.wrapping_sub(ONES) & !quote)
            | (backslash.wrapping_sub(ONES) & !backslash)
            | (word.wrapping_sub(ONES * 0x20) & !word);
        let found = found & HIGH;
        if found != 0 {
            return Some(offset + (found.trailing_zeros() / 8) as usize);
        }
        offset += 8;
    }
    words.remainder().iter().position(|&b| b == b'"' || b == b'\\' || b < 0x20).map(|index| offset + index)
}

fn resource_spans<'de>(s: &mut Scan<'de>, d: &mut Decoder<'_, 'de>, index: usize) -> Option<()> {
    d.start_resource(index);
    let mut seen = 0u32;
    s.object(|s, key| match key {
        "resource" => {
            once(&mut seen, 0)?;
            resource(s, d)
        }
        "scopeSpans" | "scope_spans" => {
            once(&mut seen, 1)?;
            d.begin_resource();
            s.array(|s, index| scope_spans(s, d, index))
        }
        "schemaUrl" | "schema_url" => {
            once(&mut seen, 2)?;
            d.resource.schema_url = text(s.string()?);
            d.resource.late |= d.resource.begun;
            Some(())
        }
        _ => None,
    })?;
    d.end_resource();
    Some(())
}

fn resource<'de>(s: &mut Scan<'de>, d: &mut Decoder<'_, 'de>) -> Option<()> {
    let mut seen = 0u32;
    s.object(|s, key| match key {
        "attributes" => {
            once(&mut seen, 0)?;
            d.begin_resource();
            attributes(s, d.batch, Owner::Resource)
        }
        "droppedAttributesCount" | "dropped_attributes_count" => {
            once(&mut seen, 1)?;
            d.resource.dropped_attributes_count = u32::try_from(s.unsigned(u64::from(u32::MAX))?).ok()?;
            d.resource.late |= d.resource.begun;
            Some(())
        }
        _ => None,
    })
}

fn scope_spans<'de>(s: &mut Scan<'de>, d: &mut Decoder<'_, 'de>, index: usize) -> Option<()> {
    d.start_scope(index);
    let mut seen = 0u32;
    s.object(|s, key| match key {
        "scope" => {
            once(&mut seen, 0)?;
            scope(s, d)
        }
        "spans" => {
            once(&mut seen, 1)?;
            d.begin_scope();
            s.array(|s, index| span(s, d, index))
        }
        "schemaUrl" | "schema_url" => {
            once(&mut seen, 2)?;
            d.scope.schema_url = text(s.string()?);
            d.scope.late |= d.scope.begun;
            Some(())
        }
        _ => None,
    })?;
    d.end_scope();
    Some(())
}

fn scope<'de>(s: &mut Scan<'de>, d: &mut Decoder<'_, 'de>) -> Option<()> {
    let mut seen = 0u32;
    s.object(|s, key| {
        match key {
            "name" => {
                once(&mut seen, 0)?;
                d.scope.name = text(s.string()?);
            }
            "version" => {
                once(&mut seen, 1)?;
                d.scope.version = text(s.string()?);
            }
            "attributes" => {
                once(&mut seen, 2)?;
                d.begin_scope();
                return attributes(s, d.batch, Owner::Scope);
            }
            "droppedAttributesCount" | "dropped_attributes_count" => {
                once(&mut seen, 3)?;
                d.scope.dropped_attributes_count = u32::try_from(s.unsigned(u64::from(u32::MAX))?).ok()?;
            }
            _ => return None,
        }
        d.scope.late |= d.scope.begun;
        Some(())
    })
}

fn span<'de>(s: &mut Scan<'de>, d: &mut Decoder<'_, 'de>, index: usize) -> Option<()> {
    let mark = d.batch.mark();
    let mut span = SpanText::default();
    let mut seen = 0u32;
    let batch = &mut *d.batch;
    let u32_max = u64::from(u32::MAX);
    s.object(|s, key| {
        let t = &mut span;
        match key {
            "traceId" | "trace_id" => {
                once(&mut seen, 0)?;
                t.trace_id = text(s.string()?);
            }
            "spanId" | "span_id" => {
                once(&mut seen, 1)?;
                t.span_id = text(s.string()?);
            }
            "traceState" | "trace_state" => {
                once(&mut seen, 2)?;
                t.trace_state = text(s.string()?);
            }
            "parentSpanId" | "parent_span_id" => {
                once(&mut seen, 3)?;
                t.parent_span_id = text(s.string()?);
            }
            "flags" => {
                once(&mut seen, 4)?;
                t.flags = u32::try_from(s.unsigned(u32_max)?).ok()?;
            }
            "name" => {
                once(&mut seen, 5)?;
                t.name = text(s.string()?);
            }
            "kind" => {
                once(&mut seen, 6)?;
                t.kind = s.enumeration()?.0;
            }
            "startTimeUnixNano" | "start_time_unix_nano" => {
                once(&mut seen, 7)?;
                t.start_time_unix_nano = s.unsigned(u64::MAX)?;
            }
            "endTimeUnixNano" | "end_time_unix_nano" => {
                once(&mut seen, 8)?;
                t.end_time_unix_nano = s.unsigned(u64::MAX)?;
            }
            "attributes" => {
                once(&mut seen, 9)?;
                attributes(s, batch, Owner::Span)?;
            }
            "droppedAttributesCount" | "dropped_attributes_count" => {
                once(&mut seen, 10)?;
                t.dropped_attributes_count = u32::try_from(s.unsigned(u32_max)?).ok()?;
            }
            "events" => {
                once(&mut seen, 11)?;
                s.array(|s, _| event(s, batch, t))?;
            }
            "droppedEventsCount" | "dropped_events_count" => {
                once(&mut seen, 12)?;
                t.dropped_events_count = u32::try_from(s.unsigned(u32_max)?).ok()?;
            }
            "links" => {
                once(&mut seen, 13)?;
                s.array(|s, _| link(s, batch, t))?;
            }
            "droppedLinksCount" | "dropped_links_count" => {
                once(&mut seen, 14)?;
                t.dropped_links_count = u32::try_from(s.unsigned(u32_max)?).ok()?;
            }
            "status" => {
                once(&mut seen, 15)?;
                t.status = Some(status(s)?);
            }
            _ => return None,
        }
        Some(())
    })?;
    d.end_span(span, mark, index);
    Some(())
}

fn status<'de>(s: &mut Scan<'de>) -> Option<JsonStatus<'de>> {
    let mut status = JsonStatus { message: Text::default(), code: Enum(0) };
    let mut seen = 0u32;
    s.object(|s, key| {
        match key {
            "message" => {
                once(&mut seen, 0)?;
                status.message = text(s.string()?);
            }
            "code" => {
                once(&mut seen, 1)?;
                status.code = s.enumeration()?;
            }
            _ => return None,
        }
        Some(())
    })?;
    Some(status)
}

fn event<'de>(s: &mut Scan<'de>, batch: &mut SpanBatch, span: &mut SpanText<'de>) -> Option<()> {
    let mut event = EventReader::new(batch);
    let mut seen = 0u32;
    s.object(|s, key| {
        match key {
            "timeUnixNano" | "time_unix_nano" => {
                once(&mut seen, 0)?;
                event.time_unix_nano = s.unsigned(u64::MAX)?;
            }
            "name" => {
                once(&mut seen, 1)?;
                event.name = text(s.string()?);
            }
            "attributes" => {
                once(&mut seen, 2)?;
                if !event.pushed {
                    event.batch.next_span_event(event.time_unix_nano, &event.name.0, event.dropped_attributes_count);
                    event.pushed = true;
                }
                return attributes(s, event.batch, Owner::Event);
            }
            "droppedAttributesCount" | "dropped_attributes_count" => {
                once(&mut seen, 3)?;
                event.dropped_attributes_count = u32::try_from(s.unsigned(u64::from(u32::MAX))?).ok()?;
            }
            _ => return None,
        }
        event.late |= event.pushed;
        Some(())
    })?;
    finish_event(event, span);
    Some(())
}

fn link<'de>(s: &mut Scan<'de>, batch: &mut SpanBatch, span: &mut SpanText<'de>) -> Option<()> {
    let mut link = LinkReader::new(batch);
    let mut seen = 0u32;
    s.object(|s, key| {
        match key {
            "traceId" | "trace_id" => {
                once(&mut seen, 0)?;
                link.trace_id = text(s.string()?);
            }
            "spanId" | "span_id" => {
                once(&mut seen, 1)?;
                link.span_id = text(s.string()?);
            }
            "traceState" | "trace_state" => {
                once(&mut seen, 2)?;
                link.trace_state = text(s.string()?);
            }
            "attributes" => {
                once(&mut seen, 3)?;
                if !link.pushed {
                    link.push_row();
                }
                return attributes(s, link.batch, Owner::Link);
            }
            "droppedAttributesCount" | "dropped_attributes_count" => {
                once(&mut seen, 4)?;
                link.dropped_attributes_count = u32::try_from(s.unsigned(u64::from(u32::MAX))?).ok()?;
            }
            "flags" => {
                once(&mut seen, 5)?;
                link.flags = u32::try_from(s.unsigned(u64::from(u32::MAX))?).ok()?;
            }
            _ => return None,
        }
        link.late |= link.pushed;
        Some(())
    })?;
    finish_link(link, span);
    Some(())
}

/// Whose attributes a list holds.
#[derive(Clone, Copy)]
enum Owner {
    Resource,
    Scope,
    Span,
    Event,
    Link,
}

/// An attribute value the fast path takes.
enum Scalar<'de> {
    Empty,
    Str(&'de str),
    Int(i64),
    Double(f64),
    Bool(bool),
}

fn attributes<'de>(s: &mut Scan<'de>, batch: &mut SpanBatch, owner: Owner) -> Option<()> {
    s.array(|s, _| {
        let mut key = "";
        let mut value = Scalar::Empty;
        let mut seen = 0u32;
        s.object(|s, field| match field {
            "key" => {
                once(&mut seen, 0)?;
                key = s.string()?;
                Some(())
            }
            "value" => {
                once(&mut seen, 1)?;
                value = any_value(s)?;
                Some(())
            }
            _ => None,
        })?;
        let value = match value {
            Scalar::Empty => ValueRef::Empty,
            Scalar::Str(text) => ValueRef::Str(text),
            Scalar::Int(i) => ValueRef::Int(i),
            Scalar::Double(f) => ValueRef::Double(f),
            Scalar::Bool(b) => ValueRef::Bool(b),
        };
        match owner {
            Owner::Resource => batch.resource_attr(key, value),
            Owner::Scope => batch.scope_attr(key, value),
            Owner::Span => batch.next_span_attr(key, value),
            Owner::Event => batch.event_attr(key, value),
            Owner::Link => batch.link_attr(key, value),
        }
        Some(())
    })
}

/// `{"stringValue": ...}` and the other scalar forms, or `{}`; one field at most.
fn any_value<'de>(s: &mut Scan<'de>) -> Option<Scalar<'de>> {
    let mut value = Scalar::Empty;
    let mut fields = 0u32;
    s.object(|s, key| {
        fields += 1;
        if fields > 1 {
            return None;
        }
        value = match key {
            "stringValue" | "string_value" => Scalar::Str(s.string()?),
            "intValue" | "int_value" => Scalar::Int(s.int64()?),
            "doubleValue" | "double_value" => Scalar::Double(s.double()?),
            "boolValue" | "bool_value" => Scalar::Bool(s.boolean()?),
            _ => return None,
        };
        Some(())
    })?;
    Some(value)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::otlp_json::{encode_json, encode_json_spans};
    use spanstore_engine::{AnyValue, KeyValue, Span, SpanId, TraceId};

    fn fast(text: &str) -> Option<(Vec<Span>, u64, Option<String>)> {
        let mut batch = SpanBatch::new();
        let mut decoder = Decoder::new(&mut batch);
        decode(text, &mut decoder)?;
        let rejections = std::mem::take(&mut decoder.rejections);
        let decoded = rejections.finish(batch).unwrap();
        decoded.batch.validate().unwrap();
        Some((decoded.batch.to_spans(), decoded.rejected_spans, decoded.first_rejection))
    }

    fn reference(text: &str) -> (Vec<Span>, u64, Option<String>) {
        let decoded = crate::otlp_json_reference::decode_json(text.as_bytes()).unwrap();
        (decoded.batch.to_spans(), decoded.rejected_spans, decoded.first_rejection)
    }

    /// What exporters write (here: `encode_json` of the workload) takes the fast path,
    /// and gives what the typed model gave.
    #[test]
    fn workload_takes_the_fast_path() {
        for seed in [2, 3] {
            for batch in spanstore_workload::batches(seed, 2, 900) {
                let mut out = Vec::new();
                encode_json(&batch, &mut out);
                let text = String::from_utf8(out).unwrap();
                assert!(fast(&text).unwrap() == reference(&text), "seed {seed}");
            }
        }
    }

    #[test]
    fn scalars_events_links_and_rejections_take_the_fast_path() {
        let mut span = Span { trace_id: TraceId([1; 16]), span_id: SpanId([2; 8]), ..Span::default() };
        span.attributes = vec![
            KeyValue::new("d", 1.5e-7),
            KeyValue::new("nan", f64::NAN),
            KeyValue::new("i", -42i64),
            KeyValue::new("b", false),
            KeyValue { key: "e".into(), value: AnyValue::Empty },
        ];
        span.events = vec![spanstore_engine::Event { time_unix_nano: 3, name: "ev".into(), ..Default::default() }];
        span.links = vec![spanstore_engine::Link {
            trace_id: TraceId([0; 16]),
            span_id: SpanId([5; 8]),
            attributes: vec![KeyValue::new("k", "v")],
            ..Default::default()
        }];
        let mut out = Vec::new();
        encode_json_spans(std::slice::from_ref(&span), &mut out);
        let text = String::from_utf8(out).unwrap();
        let (spans, rejected, _) = fast(&text).unwrap();
        assert_eq!(rejected, 0);
        assert_eq!(format!("{spans:?}"), format!("{:?}", vec![span]));
        // A rejected span is counted with the serde path's message.
        let bad = text.replace("01010101010101010101010101010101", "0101");
        assert_eq!(fast(&bad).unwrap(), reference(&bad));
        assert_eq!(fast(&bad).unwrap().1, 1);
    }

    #[test]
    fn the_word_scan_finds_what_the_byte_scan_finds() {
        let naive = |bytes: &[u8]| bytes.iter().position(|&b| b == b'"' || b == b'\\' || b < 0x20);
        let mut text: Vec<u8> = (0u8..=255).cycle().take(700).collect();
        for start in 0..text.len() {
            assert_eq!(find_quote_escape_or_control(&text[start..]), naive(&text[start..]), "{start}");
        }
        text.retain(|&b| b != b'"' && b != b'\\' && b >= 0x20);
        for special in [b'"', b'\\', 0x1f, 0] {
            for at in 0..40 {
                let mut bytes = text[..40].to_vec();
                bytes[at] = special;
                assert_eq!(find_quote_escape_or_control(&bytes), Some(at));
                bytes[at..].iter_mut().for_each(|b| *b = special);
                assert_eq!(find_quote_escape_or_control(&bytes), Some(at));
            }
        }
        assert_eq!(find_quote_escape_or_control(&text[..40]), None);
    }

    #[test]
    fn what_it_does_not_take_goes_to_the_serde_path() {
        let span = r#"{"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174"}"#;
        let wrap = |s: &str| format!(r#"{{"resourceSpans":[{{"scopeSpans":[{{"spans":[{s}]}}]}}]}}"#);
        assert!(fast(&wrap(span)).is_some());
        for odd in [
            r#"{"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174","name":"a\"b"}"#,
            r#"{"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174","futureField":1}"#,
            r#"{"traceId":"5b8efff798038103d269b633813fc60c","traceId":"5b8efff798038103d269b633813fc60c"}"#,
            r#"{"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174","name":null}"#,
            r#"{"traceId":"5b8efff798038103d269b633813fc60c","flags":-1}"#,
            r#"{"traceId":"5b8efff798038103d269b633813fc60c","flags":01}"#,
            r#"{"traceId":"5b8efff798038103d269b633813fc60c","flags":"4294967296"}"#,
            r#"{"attributes":[{"key":"x","value":{"arrayValue":{"values":[]}}}]}"#,
            r#"{"attributes":[{"key":"x","value":{"doubleValue":2}}]}"#,
            r#"{"attributes":[{"key":"x","value":{"doubleValue":1e400}}]}"#,
            r#"{"attributes":[{"key":"x","value":{"stringValue":"a","intValue":"1"}}]}"#,
            r#"["5b8efff798038103d269b633813fc60c"]"#,
        ] {
            assert!(fast(&wrap(odd)).is_none(), "{odd}");
        }
        assert!(fast(&format!("{} x", wrap(span))).is_none());
        assert!(fast(&format!("{},", wrap(span))).is_none());
        assert!(fast(&wrap(span).replace("}]}]}]}", "}]}]}]")).is_none());
    }
}
