//! Criterion benches of the query executor on generated serverless spans, sealed into
//! one segment: each group-by path (bitmap counts, dictionary codes, first-sight string
//! codes, partitioned passes), bitmap evaluation of indexed filters with a TIMESERIES,
//! a percentile FACET, and the percentile sketch alone.
//!
//! Building the store (200,000 spans, sealed) takes a few seconds; sample sizes and
//! times are small so that `cargo bench -p spanstore-benches --bench query` takes about
//! a minute on two cores. Record medians, with the command, in docs/PERFORMANCE.md.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use spanstore_benches::Generator;
use spanstore_engine::{Options, Store, SyncPolicy};
use spanstore_query::agg::AggState;
use spanstore_query::{execute, parse, Aggregate, ExecOptions, Field, Intrinsic, Statement, Value};

/// Spans in the benchmark store.
const SPANS: usize = 200_000;

fn store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let options = Options { sync: SyncPolicy::None, background_maintenance: false, ..Options::default() };
    let store = Store::open(dir.path(), options).expect("the store opens");
    let mut generator = Generator::new(7);
    let mut appended = 0;
    while appended < SPANS {
        let batch = generator.next_batch(1000);
        appended += batch.len();
        store.append(batch).expect("append");
    }
    store.seal_now().expect("seal");
    (dir, store)
}

fn statement(text: &str) -> Statement {
    parse(text).unwrap_or_else(|e| panic!("{text}: {e}"))
}

fn queries(c: &mut Criterion) {
    let (_dir, store) = store();
    let snapshot = store.snapshot();
    let since = snapshot.time_range().map(|(lo, _)| lo as i64).unwrap_or(0);
    let day = 86_400_000_000_000i64;
    let cases: Vec<(&str, String, ExecOptions)> = vec![
        (
            "bitmap_counts",
            "SELECT count(*) FROM spans WHERE service = 'orders' FACET name".into(),
            ExecOptions::default(),
        ),
        (
            "dictionary_codes",
            "SELECT count(*), avg(duration) FROM spans FACET name".into(),
            ExecOptions::default(),
        ),
        (
            "string_codes_high_cardinality",
            "SELECT count(*) FROM spans FACET enduser.id".into(),
            ExecOptions::default(),
        ),
        (
            "partitioned_high_cardinality",
            "SELECT count(*) FROM spans FACET enduser.id".into(),
            ExecOptions { groups_max: 4096, ..ExecOptions::default() },
        ),
        (
            "two_indexed_filters_timeseries",
            format!(
                "SELECT count(*) FROM spans WHERE service = 'orders' AND kind = 'server' SINCE {since} UNTIL {} TIMESERIES 1 minute",
                since + day
            ),
            ExecOptions::default(),
        ),
        (
            "percentile_facet_coldstart",
            "SELECT percentile(duration, 50, 95, 99) FROM spans WHERE faas.coldstart = true FACET faas.name".into(),
            ExecOptions::default(),
        ),
    ];
    let mut group = c.benchmark_group("query");
    group.throughput(Throughput::Elements(SPANS as u64));
    for (name, text, options) in &cases {
        let statement = statement(text);
        group.bench_function(*name, |b| {
            b.iter(|| black_box(execute(&snapshot, &statement, options).expect("the query runs")))
        });
    }
    group.finish();
}

fn sketch(c: &mut Criterion) {
    let aggregate =
        Aggregate::Percentile { field: Field::Intrinsic(Intrinsic::Duration), percentiles: vec![50.0, 95.0, 99.0] };
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let values: Vec<Value> = (0..100_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            Value::Duration((1_000 + x % 50_000_000) as i64)
        })
        .collect();
    let mut group = c.benchmark_group("percentile_sketch");
    group.throughput(Throughput::Elements(values.len() as u64));
    group.bench_function("add_100k", |b| {
        b.iter(|| {
            let mut state = AggState::new(&aggregate);
            for v in &values {
                state.add(v);
            }
            black_box(state)
        })
    });
    group.bench_function("merge_16_and_read", |b| {
        let parts: Vec<AggState> = values
            .chunks(values.len() / 16)
            .map(|chunk| {
                let mut state = AggState::new(&aggregate);
                chunk.iter().for_each(|v| state.add(v));
                state
            })
            .collect();
        b.iter(|| {
            let mut total = AggState::new(&aggregate);
            for part in &parts {
                total.merge(part.clone());
            }
            black_box(total.output(1))
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10).warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(2));
    targets = queries, sketch
}
criterion_main!(benches);
