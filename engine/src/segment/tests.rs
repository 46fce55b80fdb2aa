//! Segment round-trip, index and damage tests.

use std::path::Path;
use std::sync::Arc;

use proptest::prelude::*;
use roaring::RoaringBitmap;

use super::reader::Segment;
use super::writer::{build_segment, merge_segments};
use super::*;
use crate::batch::tests::any_spans;
use crate::batch::SpanBatch;
use crate::model::{AnyValue, KeyValue, Span, SpanId, TraceId};

fn open(bytes: Vec<u8>) -> Segment {
    Segment::open(Path::new("seg"), Arc::new(bytes)).unwrap()
}

fn sorted(spans: &[Span]) -> Vec<Span> {
    let mut spans = spans.to_vec();
    crate::segment::sort_in_segment_order(&mut spans);
    spans
}

/// Spans shaped like the workload: traces with parents, shared resources, repeated
/// attribute keys with mixed types, ids as strings.
fn workload(n: usize) -> Vec<Span> {
    let mut spans = Vec::new();
    for i in 0..n {
        let trace = (i / 4) as u64;
        let mut trace_id = [0u8; 16];
        trace_id[..8].copy_from_slice(&trace.wrapping_mul(0x9e37_79b9_7f4a_7c15).to_be_bytes());
        let span_id = SpanId(((i as u64) + 1).wrapping_mul(0xff51_afd7_ed55_8ccd).to_le_bytes());
        let parent = if i % 4 == 0 {
            None
        } else {
            Some(SpanId(((i as u64 - (i as u64 % 4)) + 1).wrapping_mul(0xff51_afd7_ed55_8ccd).to_le_bytes()))
        };
        let service = format!("svc-{}", i % 8);
        spans.push(Span {
            trace_id: TraceId(trace_id),
            span_id,
            parent_span_id: parent,
            name: format!("op-{}", i % 13),
            start_unix_nano: 1_795_698_000_000_000_000 + (i as u64) * 1000,
            duration_ns: 1000 + (i as u64 * 7919) % 100_000,
            status_message: if i % 50 == 0 { "boom".into() } else { String::new() },
            attributes: vec![
                KeyValue::new("http.route", format!("/r/{}", i % 5)),
                KeyValue::new("aws.request_id", format!("{:08x}-1234-4abc-8def-{:012x}", i, i * 31)),
                KeyValue::new("http.response.status_code", AnyValue::Int(200 + (i % 4) as i64 * 100)),
                KeyValue::new("faas.coldstart", AnyValue::Bool(i % 50 == 3)),
                KeyValue::new("mixed", if i % 2 == 0 { AnyValue::Int(i as i64) } else { AnyValue::Str("x".into()) }),
                KeyValue::new("ratio", AnyValue::Double(i as f64 / 3.0)),
            ],
            resource: crate::model::Resource {
                attributes: vec![KeyValue::new("service.name", service)],
                ..Default::default()
            },
            ..Span::default()
        });
    }
    spans
}

#[test]
fn workload_rows_round_trip_and_indexes_agree_with_a_scan() {
    let spans = workload(20_000);
    let batch = SpanBatch::from_spans(&spans);
    let segment = open(build_segment(&[&batch], 7, Some((1, 1))));
    assert_eq!(segment.row_count(), spans.len());
    let expected = sorted(&spans);
    let rows: Vec<u32> = (0..spans.len() as u32).collect();
    assert_eq!(segment.spans(&rows).unwrap(), expected);
    assert!(segment.verify().is_empty());

    // String bitmaps vs a scan.
    let route = segment.attr_column(AttrScope::Span, "http.route", ValueType::Str).unwrap();
    let got = segment.lookup_str(route, "/r/3").unwrap().unwrap();
    let want: RoaringBitmap = expected
        .iter()
        .enumerate()
        .filter(|(_, s)| s.attributes[0].value == AnyValue::Str("/r/3".into()))
        .map(|(i, _)| i as u32)
        .collect();
    assert_eq!(got, want);
    // High-cardinality equality through the value index.
    let request = segment.attr_column(AttrScope::Span, "aws.request_id", ValueType::Str).unwrap();
    assert!(segment.column_meta(request).unwrap().value_index.is_some());
    let needle = format!("{:08x}-1234-4abc-8def-{:012x}", 777, 777 * 31);
    let got = segment.lookup_str(request, &needle).unwrap().unwrap();
    let row = expected.iter().position(|s| s.attributes[1].value == AnyValue::Str(needle.clone())).unwrap();
    assert_eq!(got.iter().collect::<Vec<_>>(), vec![row as u32]);
    assert!(segment.lookup_str(request, "nope").unwrap().unwrap().is_empty());
    // Int bitmaps.
    let status = segment.attr_column(AttrScope::Span, "http.response.status_code", ValueType::Int).unwrap();
    let got = segment.bitmap(status, sortable_int(500)).unwrap().unwrap();
    assert_eq!(got.len() as usize, expected.iter().filter(|s| s.attributes[2].value == AnyValue::Int(500)).count());
    // Trace lookups.
    for probe in [0usize, 4, 9_999, 19_996] {
        let id = spans[probe].trace_id;
        let rows = segment.trace_rows(&id).unwrap();
        let want: Vec<u32> =
            expected.iter().enumerate().filter(|(_, s)| s.trace_id == id).map(|(i, _)| i as u32).collect();
        assert_eq!(rows, want);
    }
    assert!(segment.trace_rows(&TraceId([0xab; 16])).unwrap().is_empty());
}

#[test]
fn merged_workload_segments_answer_like_one_built_from_all_spans() {
    let spans = workload(3 * BLOCK_ROWS + 100);
    let parts: Vec<Segment> = spans
        .chunks(BLOCK_ROWS + 7)
        .map(|chunk| open(build_segment(&[&SpanBatch::from_spans(chunk)], 2, None)))
        .collect();
    let refs: Vec<&Segment> = parts.iter().collect();
    let merged = open(merge_segments(&refs, 3, None).unwrap());
    let whole = open(build_segment(&[&SpanBatch::from_spans(&spans)], 3, None));
    let rows: Vec<u32> = (0..spans.len() as u32).collect();
    assert_eq!(merged.spans(&rows).unwrap(), whole.spans(&rows).unwrap());
    assert!(merged.verify().is_empty());
    let route = merged.attr_column(AttrScope::Span, "http.route", ValueType::Str).unwrap();
    let whole_route = whole.attr_column(AttrScope::Span, "http.route", ValueType::Str).unwrap();
    assert_eq!(merged.lookup_str(route, "/r/2").unwrap(), whole.lookup_str(whole_route, "/r/2").unwrap());
    let request = merged.attr_column(AttrScope::Span, "aws.request_id", ValueType::Str).unwrap();
    let needle = format!("{:08x}-1234-4abc-8def-{:012x}", 4321, 4321 * 31);
    assert_eq!(merged.lookup_str(request, &needle).unwrap().unwrap().len(), 1);
    let id = spans[9_000].trace_id;
    assert_eq!(merged.trace_rows(&id).unwrap(), whole.trace_rows(&id).unwrap());
}

#[test]
fn merging_a_damaged_segment_is_an_error_naming_it() {
    let spans = workload(2 * BLOCK_ROWS);
    let clean = build_segment(&[&SpanBatch::from_spans(&spans)], 1, None);
    let segment = open(clean.clone());
    let rest_block = segment.directory().columns[Intrinsic::Rest as usize].blocks[1].chunk;
    let mut damaged = clean;
    damaged[rest_block.offset as usize + 5] ^= 0x01;
    let damaged = open(damaged);
    let other = open(build_segment(&[&SpanBatch::from_spans(&workload(10))], 2, None));
    let err = merge_segments(&[&other, &damaged], 3, None).unwrap_err();
    assert!(err.to_string().starts_with("seg: corrupt at byte"), "{err}");
}

#[test]
fn merging_a_segment_with_any_flipped_bit_gives_an_error_or_the_same_spans() {
    let small = workload(40);
    let bytes = build_segment(&[&SpanBatch::from_spans(&small)], 1, None);
    let expected = sorted(&small);
    let rows: Vec<u32> = (0..40).collect();
    for bit in 0..bytes.len() * 8 {
        let mut damaged = bytes.clone();
        damaged[bit / 8] ^= 1 << (bit % 8);
        let Ok(segment) = Segment::open(Path::new("seg"), Arc::new(damaged)) else { continue };
        if let Ok(merged) = merge_segments(&[&segment], 2, None) {
            if let Ok(got) = open(merged).spans(&rows) {
                assert_eq!(got, expected, "bit {bit} changed an answer");
            }
        }
    }
}

#[test]
fn ids_and_parents_are_stored_compactly() {
    let spans = workload(50_000);
    let batch = SpanBatch::from_spans(&spans);
    let bytes = build_segment(&[&batch], 1, None);
    let segment = open(bytes);
    let per_column = |i: Intrinsic| -> u64 {
        segment.directory().columns[i as usize].blocks.iter().map(|b| u64::from(b.chunk.len)).sum()
    };
    // Four spans per trace: the trace id column holds about one id per trace.
    assert!(per_column(Intrinsic::TraceId) < 50_000 * 8, "{}", per_column(Intrinsic::TraceId));
    // Parents are row distances: far less than 8 bytes a span.
    assert!(per_column(Intrinsic::ParentCode) < 50_000 / 2, "{}", per_column(Intrinsic::ParentCode));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn arbitrary_spans_round_trip(spans in any_spans()) {
        let batch = SpanBatch::from_spans(&spans);
        let segment = open(build_segment(&[&batch], 3, None));
        let rows: Vec<u32> = (0..spans.len() as u32).collect();
        prop_assert_eq!(segment.spans(&rows).unwrap(), sorted(&spans));
        prop_assert!(segment.verify().is_empty());
    }

    /// `build_segment` pushes the rest blob side and the attribute values on two
    /// threads with address caches; per-row `push` takes neither shortcut. Both must
    /// give the same bytes, and the spans back.
    #[test]
    fn parallel_and_per_row_building_agree(spans in any_spans(), cuts in proptest::collection::vec(0usize..64, 0..4)) {
        let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(spans.len())).collect();
        cuts.push(0);
        cuts.push(spans.len());
        cuts.sort_unstable();
        let batches: Vec<SpanBatch> = cuts.windows(2).map(|w| SpanBatch::from_spans(&spans[w[0]..w[1]])).collect();
        let refs: Vec<&SpanBatch> = batches.iter().collect();
        let parallel = build_segment(&refs, 5, Some((2, 9)));
        let mut builder = super::writer::SegmentBuilder::new();
        builder.note_sequences(2, 9);
        for batch in &batches {
            for row in 0..batch.len() {
                builder.push(batch, row);
            }
        }
        prop_assert!(parallel == builder.finish(5));
        let mut builder = super::writer::SegmentBuilder::new();
        builder.note_sequences(2, 9);
        for batch in &batches {
            builder.push_batch(batch);
        }
        prop_assert!(parallel == builder.finish(5));
        let segment = open(parallel);
        let rows: Vec<u32> = (0..spans.len() as u32).collect();
        prop_assert_eq!(segment.spans(&rows).unwrap(), sorted(&spans));
    }

    /// Compaction merges columns without materializing spans; the result must hold the
    /// same spans as the old path (decode every span, rebuild from one batch).
    #[test]
    fn merging_segments_keeps_every_span(spans in any_spans(), cuts in proptest::collection::vec(0usize..64, 0..3)) {
        let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(spans.len())).collect();
        cuts.push(0);
        cuts.push(spans.len());
        cuts.sort_unstable();
        let inputs: Vec<Segment> = cuts
            .windows(2)
            .map(|w| open(build_segment(&[&SpanBatch::from_spans(&spans[w[0]..w[1]])], 1, None)))
            .collect();
        let refs: Vec<&Segment> = inputs.iter().collect();
        let merged = open(merge_segments(&refs, 9, Some((3, 4))).unwrap());
        prop_assert!(merged.verify().is_empty());
        prop_assert_eq!(merged.directory().min_sequence, 3);
        let rows: Vec<u32> = (0..spans.len() as u32).collect();
        let got = merged.spans(&rows).unwrap();
        let mut concatenated = Vec::new();
        for segment in &inputs {
            let rows: Vec<u32> = (0..segment.row_count() as u32).collect();
            concatenated.extend(segment.spans(&rows).unwrap());
        }
        let old = open(build_segment(&[&SpanBatch::from_spans(&concatenated)], 9, Some((3, 4))));
        prop_assert_eq!(&got, &old.spans(&rows).unwrap());
        prop_assert_eq!(got, sorted(&spans));
    }

    #[test]
    fn arbitrary_bytes_never_panic_the_reader(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        if let Ok(segment) = Segment::open(Path::new("seg"), Arc::new(bytes)) {
            let _ = segment.verify();
            let rows: Vec<u32> = (0..segment.row_count().min(50) as u32).collect();
            let _ = segment.spans(&rows);
        }
    }
}

#[test]
fn a_damaged_value_index_is_reported_on_every_lookup() {
    let spans = workload(2 * BLOCK_ROWS);
    let batch = SpanBatch::from_spans(&spans);
    let clean = build_segment(&[&batch], 1, None);
    let segment = open(clean.clone());
    let request = segment.attr_column(AttrScope::Span, "aws.request_id", ValueType::Str).unwrap();
    let index = segment.column_meta(request).unwrap().value_index.unwrap();
    let needle = format!("{:08x}-1234-4abc-8def-{:012x}", 9, 9 * 31);
    // Clean: the first lookup checks the index, later ones read it in place.
    for _ in 0..3 {
        assert_eq!(segment.lookup_str(request, &needle).unwrap().unwrap().len(), 1);
    }
    let mut damaged = clean;
    damaged[index.offset as usize + index.len as usize / 2] ^= 0x04;
    let segment = open(damaged);
    for _ in 0..3 {
        let err = segment.lookup_str(request, &needle).unwrap_err().to_string();
        assert!(
            err.starts_with(&format!("seg: corrupt at byte {}: value index: chunk checksum mismatch", index.offset)),
            "{err}"
        );
    }
    // Other columns stay readable.
    let route = segment.attr_column(AttrScope::Span, "http.route", ValueType::Str).unwrap();
    assert!(segment.lookup_str(route, "/r/3").unwrap().is_some());
}

#[test]
fn flipped_bits_are_reported_and_other_blocks_stay_readable() {
    let spans = workload(3 * BLOCK_ROWS);
    let batch = SpanBatch::from_spans(&spans);
    let clean = build_segment(&[&batch], 1, None);
    let segment = open(clean.clone());
    let name_block = segment.directory().columns[Intrinsic::Name as usize].blocks[1].chunk;
    let mut damaged = clean.clone();
    damaged[name_block.offset as usize + 3] ^= 0x20;
    let segment = open(damaged);
    let problems = segment.verify();
    assert_eq!(problems.len(), 1, "{problems:?}");
    let text = problems[0].to_string();
    assert!(
        text.starts_with(&format!("seg: corrupt at byte {}: chunk checksum mismatch", name_block.offset)),
        "{text}"
    );
    // Rows in other blocks still read.
    assert!(segment.spans(&[0, (2 * BLOCK_ROWS + 5) as u32]).is_ok());
    assert!(segment.spans(&[(BLOCK_ROWS + 5) as u32]).is_err());

    // Every single flipped bit in a small segment: an error or the same spans.
    let small = workload(40);
    let batch = SpanBatch::from_spans(&small);
    let bytes = build_segment(&[&batch], 1, None);
    let expected = sorted(&small);
    let rows: Vec<u32> = (0..40).collect();
    for bit in 0..bytes.len() * 8 {
        let mut damaged = bytes.clone();
        damaged[bit / 8] ^= 1 << (bit % 8);
        if let Ok(segment) = Segment::open(Path::new("seg"), Arc::new(damaged)) {
            if let Ok(got) = segment.spans(&rows) {
                // The only bytes not covered by a checksum are the header's file number
                // and the trailer's reserved magic, which do not change any span.
                assert_eq!(got, expected, "bit {bit} changed an answer");
            }
        }
    }
}

#[test]
fn truncated_segments_are_refused_with_the_offset() {
    let spans = workload(100);
    let batch = SpanBatch::from_spans(&spans);
    let bytes = build_segment(&[&batch], 1, None);
    for len in [0, 3, 16, 30, bytes.len() / 2, bytes.len() - 1] {
        let err = Segment::open(Path::new("seg"), Arc::new(bytes[..len].to_vec())).unwrap_err();
        assert!(err.to_string().starts_with("seg: "), "{err}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4))]

    /// Value-index lookups (a dictionary column and a plain string column, both with
    /// repeated values spread over several blocks) against a scan of the spans.
    #[test]
    fn value_index_lookups_agree_with_a_scan(
        seed in any::<u64>(),
        pool in 4200u64..4500,
        probes in proptest::collection::vec(0u64..12_000, 1..40),
    ) {
        let mut state = seed | 1;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut spans = workload(18_000);
        for (i, span) in spans.iter_mut().enumerate() {
            // ~4400 distinct values over 18,000 rows: a dictionary with a value index.
            let shared = format!("inv-{}", next() % pool);
            // Mostly distinct, some repeated across traces: plain strings.
            let id = if i % 5 == 0 { format!("id-{}", next() % 50) } else { format!("id-{}", next() % 1_000_000) };
            span.attributes = vec![KeyValue::new("shared", shared), KeyValue::new("id", id)];
        }
        let segment = open(build_segment(&[&SpanBatch::from_spans(&spans)], 1, None));
        let expected = sorted(&spans);
        for (key, storage) in [("shared", Storage::Dict), ("id", Storage::Strings)] {
            let column = segment.attr_column(AttrScope::Span, key, ValueType::Str).unwrap();
            let meta = segment.column_meta(column).unwrap();
            prop_assert_eq!(meta.storage, storage);
            prop_assert!(meta.value_index.is_some() && meta.bitmaps.is_none());
            let field = usize::from(key == "id");
            let values = expected
                .iter()
                .step_by(97)
                .map(|s| s.attributes[field].value.clone())
                .chain(probes.iter().map(|p| AnyValue::Str(format!("{}-{p}", if field == 0 { "inv" } else { "id" }))));
            for value in values {
                let AnyValue::Str(text) = &value else { unreachable!() };
                let want: RoaringBitmap = expected
                    .iter()
                    .enumerate()
                    .filter(|(_, s)| s.attributes[field].value == value)
                    .map(|(row, _)| row as u32)
                    .collect();
                prop_assert_eq!(segment.lookup_str(column, text).unwrap().unwrap(), want, "{} = {}", key, text);
            }
        }
    }
}

/// Traces of 1 to 40 spans with scrambled ids and starts, so that trace id order,
/// arrival order and time order all differ; pushed in arrival order.
fn scrambled_traces(rows: usize, seed: u64) -> Vec<Span> {
    let mut x = seed | 1;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut spans = Vec::with_capacity(rows);
    while spans.len() < rows {
        let id = TraceId(u128::from(next()).wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835).to_be_bytes());
        let first = 1_795_698_000_000_000_000 + next() % 3_600_000_000_000;
        let len = (next() % 40 + 1) as usize;
        for i in 0..len.min(rows - spans.len()) {
            spans.push(Span {
                trace_id: id,
                span_id: SpanId(next().to_le_bytes()),
                name: format!("op-{}", i % 3),
                start_unix_nano: first + if i == 0 { 0 } else { next() % 2_000_000_000 },
                duration_ns: next() % 1_000_000,
                ..Span::default()
            });
        }
    }
    spans
}

#[test]
fn rows_are_traces_in_order_of_first_start_and_the_trace_index_finds_each() {
    let spans = scrambled_traces(3 * BLOCK_ROWS + 500, 99);
    let segment = open(build_segment(&[&SpanBatch::from_spans(&spans)], 5, None));
    let mut expected = spans.clone();
    sort_in_segment_order(&mut expected);
    let rows: Vec<u32> = (0..spans.len() as u32).collect();
    assert_eq!(segment.spans(&rows).unwrap(), expected);
    // Traces are whole runs, in order of their first start.
    let firsts: Vec<u64> =
        expected.chunk_by(|a, b| a.trace_id == b.trace_id).map(|run| run[0].start_unix_nano).collect();
    assert!(firsts.windows(2).all(|w| w[0] <= w[1]));
    assert_eq!(segment.column_meta(Intrinsic::TraceId as usize).unwrap().cardinality, firsts.len() as u64);
    assert!(segment.column_meta(Intrinsic::TraceId as usize).unwrap().value_index.is_some());
    // Every trace (some straddle a block boundary) is found whole through the index.
    let mut straddling = 0;
    for run in expected.chunk_by(|a, b| a.trace_id == b.trace_id) {
        let got = segment.trace_rows(&run[0].trace_id).unwrap();
        assert_eq!(got.len(), run.len());
        let first = got[0] as usize;
        assert_eq!(got, (first as u32..(first + run.len()) as u32).collect::<Vec<_>>());
        assert_eq!(expected[first].trace_id, run[0].trace_id);
        straddling += usize::from(first / BLOCK_ROWS != (first + run.len() - 1) / BLOCK_ROWS);
    }
    assert!(straddling > 0, "some trace crosses a block boundary");
    for absent in [TraceId([0xab; 16]), TraceId([0; 16])] {
        assert!(segment.trace_rows(&absent).unwrap().is_empty());
    }
    // A merge of pieces (a trace split across inputs) gives the same rows.
    let pieces: Vec<Segment> =
        spans.chunks(5000).map(|chunk| open(build_segment(&[&SpanBatch::from_spans(chunk)], 6, None))).collect();
    let merged = open(merge_segments(&pieces.iter().collect::<Vec<_>>(), 7, None).unwrap());
    assert_eq!(merged.spans(&rows).unwrap(), expected);
}

#[test]
fn a_damaged_trace_index_is_reported_naming_the_file() {
    let spans = scrambled_traces(2 * BLOCK_ROWS, 7);
    let mut bytes = build_segment(&[&SpanBatch::from_spans(&spans)], 5, None);
    let index = open(bytes.clone()).column_meta(Intrinsic::TraceId as usize).unwrap().value_index.unwrap();
    bytes[index.offset as usize + index.len as usize / 2] ^= 0x10;
    let segment = open(bytes);
    let err = segment.trace_rows(&spans[0].trace_id).unwrap_err().to_string();
    assert!(err.contains("seg") && err.contains("value index"), "{err}");
    assert!(!segment.verify().is_empty());
}
