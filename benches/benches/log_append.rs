//! Criterion benches of the write path's hot spots, on generated serverless spans:
//! building a `SpanBatch`, encoding a log record (raw and zstd), decoding it back, and
//! appending through the `Store` with sync `None` and `Interval(10ms)` from one thread
//! (log and memtable; sealing into segments is off).
//!
//! Throughput is in elements = spans. Sample sizes and times are small so that the
//! whole `cargo bench -p spanstore-benches` run takes about a minute on two cores;
//! record medians, with the command, in docs/PERFORMANCE.md.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use spanstore_benches::Generator;
use spanstore_engine::log::{decode_record, encode_record};
use spanstore_engine::{Options, SpanBatch, Store, SyncPolicy};

/// Spans per batch in every bench: a typical OTLP export request.
const BATCH_SPANS: usize = 1000;

fn build(c: &mut Criterion) {
    let mut group = c.benchmark_group("build");
    group.throughput(Throughput::Elements(BATCH_SPANS as u64));
    let mut generator = Generator::new(1);
    group.bench_function("generate_1000_spans", |b| b.iter(|| black_box(generator.next_batch(BATCH_SPANS))));
    group.finish();
}

fn encode(c: &mut Criterion) {
    let batch = spanstore_benches::batch(2, BATCH_SPANS);
    let mut group = c.benchmark_group("encode_record");
    group.throughput(Throughput::Elements(BATCH_SPANS as u64));
    for (name, compress) in [("raw", false), ("zstd", true)] {
        group.bench_function(name, |b| b.iter(|| black_box(encode_record(0, black_box(&batch), compress))));
    }
    group.finish();
}

fn decode(c: &mut Criterion) {
    let batch = spanstore_benches::batch(3, BATCH_SPANS);
    let mut group = c.benchmark_group("decode_record");
    group.throughput(Throughput::Elements(BATCH_SPANS as u64));
    for (name, compress) in [("raw", false), ("zstd", true)] {
        let payload = encode_record(0, &batch, compress);
        group.bench_function(name, |b| {
            b.iter(|| match decode_record(black_box(&payload)) {
                Ok(record) => black_box(record.batch.len()),
                Err(err) => panic!("generated record does not decode: {err}"),
            })
        });
    }
    group.finish();
}

fn append(c: &mut Criterion) {
    // A pool of distinct batches, cloned in the untimed setup of each iteration
    // (`append` takes its batch by value).
    let pool: Vec<SpanBatch> = spanstore_benches::batches(4, 16, BATCH_SPANS);
    let mut group = c.benchmark_group("store_append");
    group.throughput(Throughput::Elements(BATCH_SPANS as u64));
    for (name, sync) in
        [("sync_none", SyncPolicy::None), ("sync_interval_10ms", SyncPolicy::Interval(Duration::from_millis(10)))]
    {
        let dir = match tempfile::tempdir() {
            Ok(dir) => dir,
            Err(err) => panic!("cannot create a temporary directory: {err}"),
        };
        // Sealing into segments is off: it runs on its own thread and would compete for
        // the two cores with the appending thread, measuring something else.
        let options = Options { sync, background_maintenance: false, seal_on_close: false, ..Options::default() };
        let store = match Store::open(dir.path(), options) {
            Ok(store) => store,
            Err(err) => panic!("cannot open a store: {err}"),
        };
        let mut next = 0usize;
        group.bench_function(name, |b| {
            b.iter_batched(
                || {
                    next = next.wrapping_add(1);
                    pool[next % pool.len()].clone()
                },
                |batch| match store.append(batch) {
                    Ok(receipt) => black_box(receipt),
                    Err(err) => panic!("append failed: {err}"),
                },
                BatchSize::SmallInput,
            )
        });
        if let Err(err) = store.close() {
            panic!("close failed: {err}");
        }
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    targets = build, encode, decode, append
}
criterion_main!(benches);
