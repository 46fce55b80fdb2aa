//! Backward compatibility: segments written by format version 1 (fixture
//! `fixtures/v1-seg.sseg`, written by the code of commit 4d6731a) and version 2
//! (`fixtures/v2-seg.sseg`, rows in trace id order, written by the code of commit
//! 9429bac) still open, verify, answer value-index and trace lookups and materialize
//! their spans, and compacting them writes the current version with the same answers.

use std::path::Path;
use std::sync::Arc;

use spanstore_engine::model::{AnyValue, KeyValue, Resource, Span, SpanId, TraceId};
use spanstore_engine::segment::reader::Segment;
use spanstore_engine::segment::writer::merge_segments;
use spanstore_engine::segment::{sort_in_segment_order, AttrScope, ValueType, SEGMENT_VERSION};

const V1_SEGMENT: &[u8] = include_bytes!("fixtures/v1-seg.sseg");
const V2_SEGMENT: &[u8] = include_bytes!("fixtures/v2-seg.sseg");

/// The spans the fixture was written from, in the fixture's row order.
fn fixture_spans() -> Vec<Span> {
    let mut spans = Vec::new();
    for i in 0..4400u64 {
        let mut trace_id = [0u8; 16];
        trace_id[..8].copy_from_slice(&(i / 4).to_be_bytes());
        spans.push(Span {
            trace_id: TraceId(trace_id),
            span_id: SpanId((i + 1).to_be_bytes()),
            parent_span_id: if i % 4 == 0 { None } else { Some(SpanId((i - i % 4 + 1).to_be_bytes())) },
            name: format!("op-{}", i % 3),
            start_unix_nano: 1_795_698_000_000_000_000 + (i / 4) * 7_000_000_123 + (i % 4) * 1_000_017,
            duration_ns: 1000 + (i * 7919) % 100_000,
            attributes: vec![
                KeyValue::new("aws.request_id", format!("{:08x}-1234-4abc-8def-{:012x}", i, i * 31)),
                KeyValue::new("retries", AnyValue::Int((i % 3) as i64)),
            ],
            resource: Resource {
                attributes: vec![KeyValue::new("service.name", format!("svc-{}", i % 3))],
                ..Default::default()
            },
            ..Span::default()
        });
    }
    spans.sort_by_key(|s| (s.trace_id, s.start_unix_nano, s.span_id));
    spans
}

fn request_id(i: u64) -> String {
    format!("{:08x}-1234-4abc-8def-{:012x}", i, i * 31)
}

/// Rows whose request id equals that of span `i`, through the value index.
fn lookup(segment: &Segment, i: u64) -> Vec<u32> {
    let column = segment.attr_column(AttrScope::Span, "aws.request_id", ValueType::Str).unwrap();
    assert!(segment.column_meta(column).unwrap().value_index.is_some());
    segment.lookup_str(column, &request_id(i)).unwrap().unwrap().iter().collect()
}

#[test]
fn a_version_1_segment_reads_and_compacts_into_the_current_version() {
    assert_eq!(V1_SEGMENT.get(4..6), Some(&[1u8, 0][..]), "the fixture is format 1");
    let v1 = Segment::open(Path::new("v1-seg.sseg"), Arc::new(V1_SEGMENT.to_vec())).unwrap();
    assert!(v1.verify().is_empty());
    let want = fixture_spans();
    let rows: Vec<u32> = (0..want.len() as u32).collect();
    assert_eq!(v1.spans(&rows).unwrap(), want);

    let merged = merge_segments(&[&v1], 43, Some((1, 1))).unwrap();
    assert_eq!(merged.get(4..6), Some(&SEGMENT_VERSION.to_le_bytes()[..]));
    let v2 = Segment::open(Path::new("v2-seg.sseg"), Arc::new(merged)).unwrap();
    assert!(v2.verify().is_empty());
    assert_eq!(v2.spans(&rows).unwrap(), want);

    for i in [0u64, 1, 777, 4399] {
        let row = want
            .iter()
            .position(|s| s.attributes.first().map(|a| &a.value) == Some(&AnyValue::Str(request_id(i))))
            .unwrap() as u32;
        assert_eq!(lookup(&v1, i), vec![row]);
        assert_eq!(lookup(&v2, i), vec![row]);
    }
    assert!(lookup(&v1, 5000).is_empty());
    assert!(lookup(&v2, 5000).is_empty());
}

/// The spans of the version-2 fixture: 2800 traces of three spans over two blocks,
/// trace ids scrambled so that trace id order is not time order.
fn v2_fixture_spans() -> Vec<Span> {
    let mut spans = Vec::new();
    for i in 0..8400u64 {
        let t = i / 3;
        let mut trace_id = [0u8; 16];
        trace_id[..8].copy_from_slice(&t.wrapping_mul(0x9e37_79b9_7f4a_7c15).to_be_bytes());
        trace_id[8..].copy_from_slice(&t.to_be_bytes());
        spans.push(Span {
            trace_id: TraceId(trace_id),
            span_id: SpanId((i + 1).to_be_bytes()),
            parent_span_id: if i % 3 == 0 { None } else { Some(SpanId((i - i % 3 + 1).to_be_bytes())) },
            name: format!("op-{}", i % 5),
            start_unix_nano: 1_795_698_000_000_000_000 + t * 3_000_000_017 + (i % 3) * 1_000_017,
            duration_ns: 1000 + (i * 7919) % 100_000,
            attributes: vec![KeyValue::new("retries", AnyValue::Int((i % 3) as i64))],
            resource: Resource {
                attributes: vec![KeyValue::new("service.name", format!("svc-{}", t % 3))],
                ..Default::default()
            },
            ..Span::default()
        });
    }
    spans
}

#[test]
fn a_version_2_segment_in_trace_id_order_reads_and_compacts_into_time_order() {
    assert_eq!(V2_SEGMENT.get(4..6), Some(&[2u8, 0][..]), "the fixture is format 2");
    let v2 = Segment::open(Path::new("v2-seg.sseg"), Arc::new(V2_SEGMENT.to_vec())).unwrap();
    assert!(v2.verify().is_empty());
    let mut in_trace_order = v2_fixture_spans();
    in_trace_order.sort_by_key(|s| (s.trace_id, s.start_unix_nano, s.span_id));
    let rows: Vec<u32> = (0..in_trace_order.len() as u32).collect();
    assert_eq!(v2.spans(&rows).unwrap(), in_trace_order);

    let merged = merge_segments(&[&v2], 44, Some((1, 1))).unwrap();
    assert_eq!(merged.get(4..6), Some(&SEGMENT_VERSION.to_le_bytes()[..]));
    let v3 = Segment::open(Path::new("v3-seg.sseg"), Arc::new(merged)).unwrap();
    assert!(v3.verify().is_empty());
    let mut in_time_order = v2_fixture_spans();
    sort_in_segment_order(&mut in_time_order);
    assert_eq!(v3.spans(&rows).unwrap(), in_time_order);
    // The fixture's traces are in time order already, so the current order is the
    // generation order: starts never decrease along the rows.
    assert!(in_time_order.windows(2).all(|w| w[0].start_unix_nano <= w[1].start_unix_nano));

    // Trace lookups: zone maps on version 2, the trace index on the current version.
    for t in [0u64, 1, 1365, 2730, 2799] {
        let id = in_trace_order[(t * 3) as usize].trace_id;
        for (segment, spans) in [(&v2, &in_trace_order), (&v3, &in_time_order)] {
            let want: Vec<u32> =
                spans.iter().enumerate().filter(|(_, s)| s.trace_id == id).map(|(i, _)| i as u32).collect();
            assert_eq!(want.len(), 3);
            assert_eq!(segment.trace_rows(&id).unwrap(), want);
        }
    }
    let absent = TraceId([0x5a; 16]);
    assert!(v2.trace_rows(&absent).unwrap().is_empty());
    assert!(v3.trace_rows(&absent).unwrap().is_empty());
}
