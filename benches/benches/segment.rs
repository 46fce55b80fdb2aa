//! Criterion benches of the segment format on generated serverless spans: sealing a
//! segment (encode every column, build dictionaries, bitmaps and indexes), merging two
//! segments (compaction), and decoding one 8192-row block of a column of each storage
//! kind (16-byte ids, 8-byte ids, bit-packed integers, dictionary codes, booleans,
//! id-shaped strings), plus a bitmap lookup.
//!
//! `cargo bench -p spanstore-benches --bench segment` (about a minute); throughput is in
//! elements = spans (rows). Record medians with the command in docs/PERFORMANCE.md.

use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use spanstore_engine::segment::reader::{column_name, Segment};
use spanstore_engine::segment::writer::{build_segment, merge_segments};
use spanstore_engine::segment::{Storage, BLOCK_ROWS};
use spanstore_engine::SpanBatch;

/// Spans in the benched segments.
const SPANS: usize = 50_000;

fn batches(seed: u64) -> Vec<SpanBatch> {
    spanstore_benches::batches(seed, SPANS / 1000, 1000)
}

fn open(bytes: Vec<u8>) -> Segment {
    match Segment::open(Path::new("bench.sseg"), Arc::new(bytes)) {
        Ok(segment) => segment,
        Err(err) => panic!("a freshly built segment opens: {err}"),
    }
}

fn seal(c: &mut Criterion) {
    let batches = batches(1);
    let refs: Vec<&SpanBatch> = batches.iter().collect();
    let mut group = c.benchmark_group("segment");
    group.throughput(Throughput::Elements(SPANS as u64));
    group.sample_size(10).measurement_time(Duration::from_secs(8));
    group.bench_function("seal_50k_spans", |b| b.iter(|| black_box(build_segment(black_box(&refs), 1, None))));
    let half = SPANS / 2000;
    let first = open(build_segment(&refs[..half], 1, None));
    let second = open(build_segment(&refs[half..], 2, None));
    group.bench_function("merge_two_25k_segments", |b| {
        b.iter(|| black_box(merge_segments(&[&first, &second], 3, None).map(|bytes| bytes.len())))
    });
    group.finish();
}

fn decode(c: &mut Criterion) {
    let batches = batches(2);
    let refs: Vec<&SpanBatch> = batches.iter().collect();
    let segment = open(build_segment(&refs, 1, None));
    let mut group = c.benchmark_group("decode_block");
    group.throughput(Throughput::Elements(BLOCK_ROWS as u64));
    group.sample_size(20).measurement_time(Duration::from_secs(3));
    // One column of each storage kind: the fullest one, so the block is realistic.
    for storage in [Storage::Fixed16, Storage::Fixed8, Storage::Ints, Storage::Dict, Storage::Bools, Storage::Strings] {
        let mut best: Option<(usize, u64)> = None;
        for column in 0.. {
            let Ok(meta) = segment.column_meta(column) else { break };
            if meta.storage == storage && best.is_none_or(|(_, present)| meta.present > present) {
                best = Some((column, meta.present));
            }
        }
        let Some((column, _)) = best else { continue };
        let name = match segment.column_meta(column) {
            Ok(meta) => column_name(&meta.kind),
            Err(_) => continue,
        };
        group.bench_function(format!("{storage:?}/{name}"), |b| {
            b.iter(|| black_box(segment.read_block(black_box(column), 0).is_ok()))
        });
    }
    group.finish();

    let mut group = c.benchmark_group("bitmap");
    group.sample_size(20).measurement_time(Duration::from_secs(3));
    for column in 0.. {
        let Ok(meta) = segment.column_meta(column) else { break };
        if meta.bitmaps.is_some() && meta.storage == Storage::Dict {
            let name = column_name(&meta.kind);
            group.bench_function(format!("all_values/{name}"), |b| {
                b.iter(|| black_box(segment.bitmaps(black_box(column)).map(|maps| maps.map(|m| m.len()))))
            });
            break;
        }
    }
    group.finish();
}

criterion_group!(benches, seal, decode);
criterion_main!(benches);
