//! What the decoders share: id and enum checks, the nesting bound, the rejection tally
//! and the grouping of owned spans by resource and scope for the encoders.
#![deny(clippy::unwrap_used, clippy::indexing_slicing)]

use spanstore_engine::batch::MAX_NESTING_DEPTH;
use spanstore_engine::{AnyValue, Resource, Scope, Span, SpanBatch, SpanId, SpanKind, StatusCode, TraceId};

use crate::{Decoded, IngestError};

/// Counts rejected spans and keeps the reason of the first.
#[derive(Debug, Default)]
pub(crate) struct Rejections {
    pub(crate) count: u64,
    pub(crate) first: Option<String>,
}

impl Rejections {
    /// Counts one rejected span; `reason` is only built for the first.
    pub(crate) fn reject(&mut self, reason: impl FnOnce() -> String) {
        self.count += 1;
        if self.first.is_none() {
            self.first = Some(reason());
        }
    }

    /// `count` spans all rejected for one reason.
    pub(crate) fn all(count: u64, reason: String) -> Self {
        Rejections { count, first: (count > 0).then_some(reason) }
    }

    /// Adds the rejections of a later part of the payload.
    pub(crate) fn absorb(&mut self, later: Rejections) {
        self.count += later.count;
        if self.first.is_none() {
            self.first = later.first;
        }
    }

    /// The decoder's result, after checking the batch limits `append` places: a
    /// payload too big for one batch is refused whole.
    pub(crate) fn finish(self, batch: SpanBatch) -> Result<Decoded, IngestError> {
        batch.check_limits().map_err(IngestError::BatchLimit)?;
        Ok(Decoded { batch, rejected_spans: self.count, first_rejection: self.first })
    }
}

/// A trace id from its 16 bytes; wrong lengths and the all-zero id are invalid.
pub(crate) fn trace_id_from_bytes(bytes: &[u8]) -> Result<TraceId, String> {
    let id = TraceId(<[u8; 16]>::try_from(bytes).map_err(|_| format!("expected 16 bytes, found {}", bytes.len()))?);
    if id.is_zero() {
        return Err("all-zero trace id".into());
    }
    Ok(id)
}

/// A span id from its 8 bytes; wrong lengths and the all-zero id are invalid.
pub(crate) fn span_id_from_bytes(bytes: &[u8]) -> Result<SpanId, String> {
    let id = SpanId(<[u8; 8]>::try_from(bytes).map_err(|_| format!("expected 8 bytes, found {}", bytes.len()))?);
    if id.is_zero() {
        return Err("all-zero span id".into());
    }
    Ok(id)
}

/// A parent span id: empty (or all-zero, which OTLP also reads as absent) is none.
pub(crate) fn parent_id_from_bytes(bytes: &[u8]) -> Result<Option<SpanId>, String> {
    if bytes.is_empty() {
        return Ok(None);
    }
    let id = SpanId(<[u8; 8]>::try_from(bytes).map_err(|_| format!("expected 8 bytes, found {}", bytes.len()))?);
    Ok(Some(id).filter(|id| !id.is_zero()))
}

fn hex_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// `N` bytes from exactly `2 * N` hex digits of either case.
pub(crate) fn hex_bytes<const N: usize>(text: &str) -> Result<[u8; N], String> {
    let digits = text.as_bytes();
    if digits.len() != 2 * N {
        return Err(format!("expected {} hex digits, found {}", 2 * N, text.chars().count()));
    }
    let mut out = [0u8; N];
    for (index, (slot, pair)) in out.iter_mut().zip(digits.chunks_exact(2)).enumerate() {
        let (&high, &low) = (pair.first().unwrap_or(&0), pair.get(1).unwrap_or(&0));
        let digit = |c: u8, position: usize| {
            hex_value(c).ok_or_else(|| match text.get(position..).and_then(|rest| rest.chars().next()) {
                Some(found) => format!("invalid hex digit {found:?} at position {position}"),
                None => format!("invalid hex digit at position {position}"),
            })
        };
        *slot = (digit(high, 2 * index)? << 4) | digit(low, 2 * index + 1)?;
    }
    Ok(out)
}

/// A trace id from 32 hex digits; the all-zero id is invalid.
pub(crate) fn trace_id_from_hex(text: &str) -> Result<TraceId, String> {
    let id = TraceId(hex_bytes::<16>(text)?);
    if id.is_zero() {
        return Err("all-zero trace id".into());
    }
    Ok(id)
}

/// A span id from 16 hex digits; the all-zero id is invalid.
pub(crate) fn span_id_from_hex(text: &str) -> Result<SpanId, String> {
    let id = SpanId(hex_bytes::<8>(text)?);
    if id.is_zero() {
        return Err("all-zero span id".into());
    }
    Ok(id)
}

/// A parent span id from hex: empty (or all zeros) is none.
pub(crate) fn parent_id_from_hex(text: &str) -> Result<Option<SpanId>, String> {
    if text.is_empty() {
        return Ok(None);
    }
    Ok(Some(SpanId(hex_bytes::<8>(text)?)).filter(|id| !id.is_zero()))
}

/// The span kind of an OTLP enum number.
pub(crate) fn kind_from_code(code: i64) -> Result<SpanKind, String> {
    u8::try_from(code).ok().and_then(SpanKind::from_code).ok_or_else(|| format!("unknown span kind {code}"))
}

/// The status code of an OTLP enum number.
pub(crate) fn status_from_code(code: i64) -> Result<StatusCode, String> {
    u8::try_from(code).ok().and_then(StatusCode::from_code).ok_or_else(|| format!("unknown status code {code}"))
}

/// The duration of a span from its start and end; an end before the start is invalid.
pub(crate) fn duration_ns(start_unix_nano: u64, end_unix_nano: u64) -> Result<u64, String> {
    end_unix_nano
        .checked_sub(start_unix_nano)
        .ok_or_else(|| format!("endTimeUnixNano {end_unix_nano} is before startTimeUnixNano {start_unix_nano}"))
}

/// Checks that arrays and maps nest no deeper than a batch holds
/// ([`MAX_NESTING_DEPTH`]); `depth` is the nesting of `value` itself.
pub(crate) fn check_depth(value: &AnyValue, depth: usize) -> Result<(), String> {
    match value {
        AnyValue::Array(items) => {
            if depth + 1 > MAX_NESTING_DEPTH {
                return Err(format!("values nested deeper than {MAX_NESTING_DEPTH}"));
            }
            items.iter().try_for_each(|item| check_depth(item, depth + 1))
        }
        AnyValue::Map(pairs) => {
            if depth + 1 > MAX_NESTING_DEPTH {
                return Err(format!("values nested deeper than {MAX_NESTING_DEPTH}"));
            }
            pairs.iter().try_for_each(|pair| check_depth(&pair.value, depth + 1))
        }
        _ => Ok(()),
    }
}

/// The spans of one scope within a [`ResourceGroup`].
pub(crate) struct ScopeGroup<'a> {
    pub(crate) scope: &'a Scope,
    pub(crate) spans: Vec<&'a Span>,
}

/// Spans that share a resource, by scope.
pub(crate) struct ResourceGroup<'a> {
    pub(crate) resource: &'a Resource,
    pub(crate) scopes: Vec<ScopeGroup<'a>>,
}

/// Most groups searched for an equal resource or scope before starting a new group:
/// regrouping is a nicety, and payloads with thousands of resources should not cost a
/// quadratic search.
const GROUP_SEARCH_MAX: usize = 64;

/// Groups spans by equal resource, then by equal scope, in order of first appearance.
pub(crate) fn group_spans(spans: &[Span]) -> Vec<ResourceGroup<'_>> {
    let mut groups: Vec<ResourceGroup<'_>> = Vec::new();
    for span in spans {
        let found = groups.iter().rev().take(GROUP_SEARCH_MAX).position(|g| *g.resource == span.resource);
        let group_index = match found {
            Some(from_end) => groups.len() - 1 - from_end,
            None => {
                groups.push(ResourceGroup { resource: &span.resource, scopes: Vec::new() });
                groups.len() - 1
            }
        };
        let Some(group) = groups.get_mut(group_index) else { continue };
        let found = group.scopes.iter().rev().take(GROUP_SEARCH_MAX).position(|s| *s.scope == span.scope);
        match found {
            Some(from_end) => {
                let index = group.scopes.len() - 1 - from_end;
                if let Some(scope) = group.scopes.get_mut(index) {
                    scope.spans.push(span);
                }
            }
            None => group.scopes.push(ScopeGroup { scope: &span.scope, spans: vec![span] }),
        }
    }
    groups
}

/// The rows of one scope within a [`RowGroup`]; `rows[0]` carries the scope.
pub(crate) struct RowScopeGroup {
    scope: usize,
    pub(crate) rows: Vec<usize>,
}

/// Rows of a batch that share a resource, by scope; `first_row` carries the resource.
pub(crate) struct RowGroup {
    resource: usize,
    pub(crate) first_row: usize,
    pub(crate) scopes: Vec<RowScopeGroup>,
}

/// Owned copies of a batch's resources or scopes, made only when two different
/// indices must be compared by value.
struct Owned<T>(Vec<Option<T>>);

impl<T: PartialEq> Owned<T> {
    fn equal(&mut self, a: (usize, usize), b: (usize, usize), make: impl Fn(usize) -> T) -> bool {
        if a.0 == b.0 {
            return true;
        }
        for (index, row) in [a, b] {
            if self.0.len() <= index {
                self.0.resize_with(index + 1, || None);
            }
            if let Some(slot @ None) = self.0.get_mut(index) {
                *slot = Some(make(row));
            }
        }
        matches!((self.0.get(a.0), self.0.get(b.0)), (Some(Some(x)), Some(Some(y))) if x == y)
    }
}

/// Groups the rows of a batch exactly as [`group_spans`] groups its owned spans (by
/// equal resource, then equal scope, in order of first appearance, searching the last
/// [`GROUP_SEARCH_MAX`] groups), without building the spans: rows that share a stored
/// resource or scope are equal without a look at their contents.
pub(crate) fn group_rows(batch: &SpanBatch) -> Vec<RowGroup> {
    let owned_resource = |row: usize| {
        let (dropped_attributes_count, schema_url) = batch.resource_meta(row);
        Resource {
            attributes: batch.resource_attributes(row).to_owned(),
            dropped_attributes_count,
            schema_url: schema_url.to_owned(),
        }
    };
    let owned_scope = |row: usize| {
        let scope = batch.scope_view(row);
        Scope {
            name: scope.name.to_owned(),
            version: scope.version.to_owned(),
            attributes: scope.attributes.to_owned(),
            dropped_attributes_count: scope.dropped_attributes_count,
            schema_url: scope.schema_url.to_owned(),
        }
    };
    let mut resources = Owned(Vec::new());
    let mut scopes = Owned(Vec::new());
    let mut groups: Vec<RowGroup> = Vec::new();
    for row in 0..batch.len() {
        let resource = (batch.resource_of(row), row);
        let found = groups
            .iter()
            .rev()
            .take(GROUP_SEARCH_MAX)
            .position(|g| resources.equal((g.resource, g.first_row), resource, owned_resource));
        let group_index = match found {
            Some(from_end) => groups.len() - 1 - from_end,
            None => {
                groups.push(RowGroup { resource: resource.0, first_row: row, scopes: Vec::new() });
                groups.len() - 1
            }
        };
        let Some(group) = groups.get_mut(group_index) else { continue };
        let scope = (batch.scope_of(row), row);
        let found = group.scopes.iter().rev().take(GROUP_SEARCH_MAX).position(|s| {
            let first = s.rows.first().copied().unwrap_or_default();
            scopes.equal((s.scope, first), scope, owned_scope)
        });
        match found {
            Some(from_end) => {
                let index = group.scopes.len() - 1 - from_end;
                if let Some(scope_group) = group.scopes.get_mut(index) {
                    scope_group.rows.push(row);
                }
            }
            None => group.scopes.push(RowScopeGroup { scope: scope.0, rows: vec![row] }),
        }
    }
    groups
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn hex_ids_name_the_problem() {
        assert_eq!(trace_id_from_hex("abc").unwrap_err(), "expected 32 hex digits, found 3");
        assert_eq!(span_id_from_hex("00f067aa0ba902bz").unwrap_err(), "invalid hex digit 'z' at position 15");
        assert_eq!(span_id_from_hex("0000000000000000").unwrap_err(), "all-zero span id");
        assert_eq!(span_id_from_hex("00F067AA0BA902B7").unwrap().to_hex(), "00f067aa0ba902b7");
        assert_eq!(span_id_from_hex("ééééééé\u{0}\u{0}").unwrap_err(), "invalid hex digit 'é' at position 0");
        assert_eq!(span_id_from_hex("0é").unwrap_err(), "expected 16 hex digits, found 2");
        assert_eq!(parent_id_from_hex("").unwrap(), None);
        assert_eq!(parent_id_from_hex("0000000000000000").unwrap(), None);
    }

    #[test]
    fn codes_and_durations() {
        assert_eq!(kind_from_code(5).unwrap(), SpanKind::Consumer);
        assert_eq!(kind_from_code(6).unwrap_err(), "unknown span kind 6");
        assert_eq!(kind_from_code(-1).unwrap_err(), "unknown span kind -1");
        assert_eq!(status_from_code(3).unwrap_err(), "unknown status code 3");
        assert_eq!(duration_ns(5, 7).unwrap(), 2);
        assert!(duration_ns(7, 5).unwrap_err().contains("before"));
    }

    #[test]
    fn depth_is_bounded() {
        let mut value = AnyValue::Int(1);
        for _ in 0..MAX_NESTING_DEPTH {
            value = AnyValue::Array(vec![value]);
        }
        check_depth(&value, 0).unwrap();
        let deeper = AnyValue::Array(vec![value]);
        assert!(check_depth(&deeper, 0).is_err());
    }
}
