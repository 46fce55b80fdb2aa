//! Tests of the workload's shape, determinism and planted anomalies.

use std::collections::{HashMap, HashSet};

use spanstore_engine::{SpanBatch, SpanKind, StatusCode};

use super::*;

/// One row's view, enough for the statistics below.
struct Row<'a> {
    batch: &'a SpanBatch,
    row: usize,
}

impl<'a> Row<'a> {
    fn attr(&self, key: &str) -> Option<spanstore_engine::batch::ValueView<'a>> {
        self.batch.span_attributes(self.row).get(key).or_else(|| self.batch.resource_attributes(self.row).get(key))
    }
    fn str(&self, key: &str) -> Option<&'a str> {
        self.attr(key).and_then(|v| v.as_str())
    }
    fn error(&self) -> bool {
        self.batch.status_code(self.row) == StatusCode::Error
    }
}

fn rows(batches: &[SpanBatch]) -> impl Iterator<Item = Row<'_>> {
    batches.iter().flat_map(|batch| (0..batch.len()).map(move |row| Row { batch, row }))
}

fn workload_batches(seed: u64, spans: u64, config: Config) -> Vec<SpanBatch> {
    let workload = Workload::new(seed, spans, config);
    (0..workload.chunk_count()).flat_map(|chunk| workload.chunk(chunk)).collect()
}

fn median(mut values: Vec<u64>) -> f64 {
    values.sort_unstable();
    values[values.len() / 2] as f64
}

#[test]
fn batches_are_exact_valid_and_deterministic() {
    for spans in [1, 2, 3, 7, 100, 1000] {
        let batch = batch(42, spans);
        assert_eq!(batch.len(), spans);
        batch.validate().unwrap();
    }
    assert_eq!(batch(7, 500), batch(7, 500));
    assert_ne!(batch(7, 500), batch(8, 500));
    let mut generator = Generator::new(3);
    let first = generator.next_batch(300);
    let second = generator.next_batch(300);
    assert_ne!(first, second);
    assert_eq!(generator.spans_generated(), 600);
    assert!(first.start_column().iter().all(|&t| t >= DEFAULT_START_UNIX_NANO));
}

#[test]
fn chunks_have_exact_sizes_whole_traces_and_stay_in_their_time_slice() {
    let config = Config::with_hours(DEFAULT_START_UNIX_NANO, 6.0);
    let workload = Workload::new(11, 2 * CHUNK_SPANS + 1234, config);
    assert_eq!(workload.chunk_count(), 3);
    let mut previous_end = config.start_unix_nano;
    for chunk in 0..workload.chunk_count() {
        let batches = workload.chunk(chunk);
        let range = workload.chunk_range(chunk);
        assert_eq!(batches.iter().map(SpanBatch::len).sum::<usize>() as u64, range.end - range.start);
        for batch in &batches {
            batch.validate().unwrap();
            assert!(batch.len() >= LINE_SPANS.min((range.end - range.start) as usize), "{}", batch.len());
            assert!(batch.len() < 2 * LINE_SPANS + 300, "{}", batch.len());
        }
        // Every parent is in the same chunk, and every trace has one root.
        let ids: HashSet<_> = batches.iter().flat_map(|b| (0..b.len()).map(|r| b.span_id(r))).collect();
        let mut roots = HashMap::new();
        for row in rows(&batches) {
            match row.batch.parent_span_id(row.row) {
                Some(parent) => assert!(ids.contains(&parent), "an orphan span"),
                None => *roots.entry(row.batch.trace_id(row.row)).or_insert(0) += 1,
            }
        }
        let traces: HashSet<_> = rows(&batches).map(|r| r.batch.trace_id(r.row)).collect();
        assert_eq!(traces.len(), roots.len());
        assert!(roots.values().all(|&n| n == 1));
        // Request starts (roots) move forward through the chunks' slices of the range.
        let starts: Vec<u64> = rows(&batches)
            .filter(|r| r.batch.parent_span_id(r.row).is_none())
            .map(|r| r.batch.start_unix_nano(r.row))
            .collect();
        let first = *starts.iter().min().unwrap();
        let last = *starts.iter().max().unwrap();
        assert!(first >= previous_end.saturating_sub(1_000_000_000), "chunk {chunk} starts before the previous ended");
        assert!(last < config.end_unix_nano());
        previous_end = last;
    }
    assert!(previous_end > config.end_unix_nano() - 60 * 1_000_000_000, "the data reaches the end of the range");
}

#[test]
fn parallel_generation_gives_the_same_batches_for_any_thread_count() {
    let workload = Workload::new(5, 3 * CHUNK_SPANS + 17, Config::default());
    let collect = |threads: usize| {
        let mut all = Vec::new();
        workload
            .for_each_batch(threads, |batch| {
                all.push(batch);
                Ok::<(), ()>(())
            })
            .unwrap();
        all
    };
    let one = collect(1);
    assert_eq!(one.iter().map(SpanBatch::len).sum::<usize>() as u64, workload.spans);
    assert_eq!(one, collect(3));
    assert_eq!(one, collect(8));
    let different = Workload::new(6, workload.spans, Config::default());
    let mut first = None;
    different
        .for_each_batch(2, |batch| {
            first.get_or_insert(batch);
            Ok::<(), ()>(())
        })
        .unwrap();
    assert_ne!(first.as_ref(), one.first());
}

#[test]
fn a_sink_error_stops_generation() {
    let workload = Workload::new(1, 50 * CHUNK_SPANS, Config::default());
    let mut seen = 0;
    let result = workload.generate(
        2,
        |index, _| index,
        |index| {
            seen += 1;
            if index == 3 {
                Err("stop")
            } else {
                Ok(())
            }
        },
    );
    assert_eq!(result, Err("stop"));
    assert_eq!(seen, 4);
}

#[test]
fn the_mix_looks_like_the_workload() {
    let batches = workload_batches(1, 200_000, Config::default());
    let total = rows(&batches).count() as f64;
    let errors = rows(&batches).filter(Row::error).count() as f64 / total;
    assert!((0.007..0.015).contains(&errors), "error rate {errors}");
    let invocations: Vec<bool> =
        rows(&batches).filter_map(|r| r.batch.span_attributes(r.row).get("faas.coldstart")?.as_bool()).collect();
    let cold = invocations.iter().filter(|&&c| c).count() as f64 / invocations.len() as f64;
    assert!((0.016..0.024).contains(&cold), "cold start rate {cold}");
    let roots = rows(&batches).filter(|r| r.batch.parent_span_id(r.row).is_none()).count() as f64;
    let per_trace = total / roots;
    assert!((3.8..5.5).contains(&per_trace), "{per_trace} spans per trace");
    let services: HashSet<_> = rows(&batches).filter_map(|r| r.batch.service(r.row)).collect();
    assert_eq!(services.len(), 8);
    let functions: HashSet<_> = rows(&batches).filter_map(|r| r.str("faas.name")).collect();
    assert_eq!(functions.len(), 50);
    let routes: HashSet<_> = rows(&batches).filter_map(|r| r.str("http.route")).collect();
    assert_eq!(routes.len(), 26);
    let method_and_route: HashSet<_> =
        rows(&batches).filter(|r| r.batch.parent_span_id(r.row).is_none()).map(|r| r.batch.name(r.row)).collect();
    assert_eq!(method_and_route.len(), 50);
    for kind in [SpanKind::Server, SpanKind::Client, SpanKind::Producer, SpanKind::Consumer] {
        assert!(rows(&batches).any(|r| r.batch.kind(r.row) == kind), "no {kind:?} span");
    }
    let rejected =
        rows(&batches).filter(|r| r.attr("http.response.status_code").and_then(|v| v.as_int()) == Some(401)).count();
    assert!(rejected > 20, "{rejected} requests refused by the authorizer");

    // Cold starts are slower: compare the medians of function spans.
    let (mut cold_ns, mut warm_ns) = (Vec::new(), Vec::new());
    for row in rows(&batches) {
        match row.batch.span_attributes(row.row).get("faas.coldstart").and_then(|v| v.as_bool()) {
            Some(true) => cold_ns.push(row.batch.duration_ns(row.row)),
            Some(false) => warm_ns.push(row.batch.duration_ns(row.row)),
            None => {}
        }
    }
    assert!(median(cold_ns) > 5.0 * median(warm_ns));

    // Users: Zipf over 100,000, user-1 the busiest.
    let mut users: HashMap<&str, u32> = HashMap::new();
    for user in rows(&batches).filter_map(|r| r.str("enduser.id")) {
        *users.entry(user).or_default() += 1;
    }
    let busiest = users.iter().max_by_key(|(_, &n)| n).map(|(u, _)| *u);
    assert_eq!(busiest, Some("user-1"));
    assert!(users.len() > 15_000, "{} distinct users", users.len());
    let signed_in = users.values().sum::<u32>() as f64 / roots;
    assert!((0.75..0.85).contains(&signed_in), "{signed_in}");

    // Routes: Zipf, the most popular far ahead of the least.
    let mut route_counts: HashMap<&str, u32> = HashMap::new();
    for route in rows(&batches).filter(|r| r.batch.parent_span_id(r.row).is_none()).filter_map(|r| r.str("http.route"))
    {
        *route_counts.entry(route).or_default() += 1;
    }
    let most = route_counts.values().max().copied().unwrap_or(0);
    let least = route_counts.values().min().copied().unwrap_or(0);
    assert!(most > 15 * least, "routes {most} vs {least}");
}

#[test]
fn the_rate_follows_the_day_curve() {
    let config = Config::default();
    let batches = workload_batches(2, 100_000, config);
    let mut per_hour = [0u32; 24];
    for row in rows(&batches).filter(|r| r.batch.parent_span_id(r.row).is_none()) {
        let hour = (row.batch.start_unix_nano(row.row) - config.start_unix_nano) / 3_600_000_000_000;
        per_hour[hour as usize] += 1;
    }
    let peak = f64::from(per_hour[PEAK_HOUR_UTC as usize]);
    let trough = f64::from(per_hour[PEAK_HOUR_UTC as usize - 12]);
    let expected = (1.0 + DIURNAL_AMPLITUDE) / (1.0 - DIURNAL_AMPLITUDE);
    assert!((peak / trough - expected).abs() < 0.25 * expected, "peak {peak}, trough {trough}");
}

#[test]
fn the_anomaly_raises_put_item_errors_in_its_subnet_during_its_window() {
    let config = Config::with_hours(DEFAULT_START_UNIX_NANO, 6.0);
    let window = config.anomaly_window();
    assert_eq!(window.end - window.start, ANOMALY_DURATION_NS);
    let batches = workload_batches(5, 200_000, config);
    let (mut inside, mut inside_errors, mut outside, mut outside_errors) = (0u32, 0u32, 0u32, 0u32);
    let mut subnet_outside_window = 0u32;
    for row in rows(&batches).filter(|r| r.batch.name(r.row) == "DynamoDB.PutItem") {
        let subnet = row.str("net.subnet.id") == Some(ANOMALY_SUBNET);
        let in_window = window.contains(&row.batch.start_unix_nano(row.row));
        if subnet && in_window {
            inside += 1;
            inside_errors += u32::from(row.error());
        } else {
            outside += 1;
            outside_errors += u32::from(row.error());
            subnet_outside_window += u32::from(subnet);
        }
        if subnet {
            assert_eq!(row.str("cloud.availability_zone"), Some(ANOMALY_ZONE));
            assert_eq!(row.batch.service(row.row), Some(ANOMALY_SERVICE));
        }
    }
    assert!(inside > 50 && subnet_outside_window > 50, "{inside} PutItem spans inside, {subnet_outside_window}");
    let inside_rate = f64::from(inside_errors) / f64::from(inside);
    let outside_rate = f64::from(outside_errors) / f64::from(outside);
    assert!(inside_rate > 0.25, "inside {inside_rate}");
    assert!(outside_rate < 0.02, "outside {outside_rate}");
}

#[test]
fn the_slow_route_is_five_times_slower_on_the_new_version() {
    let batches = workload_batches(3, 200_000, Config::default());
    let mut durations: HashMap<(&str, &str), Vec<u64>> = HashMap::new();
    for row in
        rows(&batches).filter(|r| r.str("faas.name") == Some(SLOW_FUNCTION) && r.batch.kind(r.row) == SpanKind::Server)
    {
        let key = (row.str("http.route").unwrap_or(""), row.str("faas.version").unwrap_or(""));
        durations.entry(key).or_default().push(row.batch.duration_ns(row.row));
    }
    let p50 = |route: &str, version: &str| {
        let values = durations.get(&(route, version)).cloned().unwrap_or_default();
        assert!(values.len() > 100, "{} spans of {route} on {version}", values.len());
        median(values)
    };
    let ratio = p50(SLOW_ROUTE, SLOW_VERSION) / p50(SLOW_ROUTE, BASELINE_VERSION);
    assert!((4.0..6.0).contains(&ratio), "slow route ratio {ratio}");
    let other = SLOW_ROUTE.trim_end_matches("/history");
    let ratio = p50(other, SLOW_VERSION) / p50(other, BASELINE_VERSION);
    assert!((0.6..1.5).contains(&ratio), "other route ratio {ratio}");
}
