//! The SpanQL queries of docs/WORKLOAD.md, run on a generated data set: each shows what
//! the document says it shows (the planted anomalies, the day curve, the Zipf users).

use spanstore_engine::{Options, Snapshot, Store, SyncPolicy};
use spanstore_query::{QueryResult, Value};
use spanstore_workload::{
    Config, Workload, ANOMALY_SUBNET, ANOMALY_ZONE, BASELINE_VERSION, DIURNAL_AMPLITUDE, PEAK_HOUR_UTC, SLOW_FUNCTION,
    SLOW_ROUTE, SLOW_VERSION,
};

/// Which subnet's PutItem calls fail most.
const SUBNET_QUERY: &str = "SELECT filter(count(*), WHERE status = 'error') / count(*) AS error_rate, count(*) \
    FROM spans WHERE name = 'DynamoDB.PutItem' FACET cloud.availability_zone, net.subnet.id \
    ORDER BY error_rate DESC LIMIT 5";

/// When they fail.
const WINDOW_QUERY: &str = "SELECT filter(count(*), WHERE status = 'error') / count(*) AS error_rate, count(*) \
    FROM spans WHERE name = 'DynamoDB.PutItem' AND net.subnet.id = 'subnet-0b7e5c1a9d3f42e60' TIMESERIES 1 hour";

/// Which function runs more than one version.
const VERSIONS_QUERY: &str = "SELECT uniq(faas.version) AS versions, count(*) FROM spans \
    WHERE kind = 'server' FACET faas.name ORDER BY versions DESC LIMIT 3";

/// Which route is slow on which version.
const SLOW_QUERY: &str = "SELECT percentile(duration, 50) AS p50, count(*) FROM spans \
    WHERE faas.name = 'catalog-get' AND kind = 'server' FACET http.route, faas.version ORDER BY p50 DESC";

/// Cold starts by function.
const COLD_QUERY: &str = "SELECT count(*), percentile(duration, 50, 99) FROM spans WHERE faas.coldstart = true \
    FACET faas.name LIMIT 5";

/// The day curve.
const DAY_QUERY: &str = "SELECT count(*) FROM spans TIMESERIES 1 hour";

/// The busiest users.
const USERS_QUERY: &str = "SELECT count(*) FROM spans WHERE enduser.id IS NOT NULL FACET enduser.id LIMIT 5";

fn squash(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn number(value: &Value) -> f64 {
    value.as_f64().unwrap_or_else(|| panic!("{value:?} is not a number"))
}

fn text(value: &Value) -> String {
    value.to_text(false)
}

fn run(snapshot: &Snapshot, query: &str) -> QueryResult {
    spanstore_query::query(snapshot, query).unwrap_or_else(|err| panic!("{query}: {err}"))
}

#[test]
fn the_documented_queries_appear_in_workload_md() {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/WORKLOAD.md")).unwrap();
    let doc = squash(&doc);
    for query in [SUBNET_QUERY, WINDOW_QUERY, VERSIONS_QUERY, SLOW_QUERY, COLD_QUERY, DAY_QUERY, USERS_QUERY] {
        assert!(doc.contains(&squash(query)), "docs/WORKLOAD.md lacks {query}");
    }
}

#[test]
fn the_documented_queries_find_what_the_document_says() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Options { sync: SyncPolicy::None, ..Options::default() }).unwrap();
    let config = Config::default();
    Workload::new(1, 300_000, config).for_each_batch(2, |batch| store.append(batch).map(|_| ())).unwrap();
    let snapshot = store.snapshot();

    let result = run(&snapshot, SUBNET_QUERY);
    let top = &result.rows[0];
    assert_eq!((text(&top[0]), text(&top[1])), (ANOMALY_ZONE.to_owned(), ANOMALY_SUBNET.to_owned()), "{result:?}");
    assert!(number(&top[2]) > 1.5 * number(&result.rows[1][2]), "{result:?}");

    let result = run(&snapshot, WINDOW_QUERY);
    let window = config.anomaly_window();
    for row in &result.rows {
        let Value::Timestamp(bucket) = row[0] else { panic!("{row:?}") };
        if row[1].is_null() {
            continue;
        }
        let rate = number(&row[1]);
        if window.contains(&(bucket as u64)) {
            assert!(rate > 0.2, "{row:?} is in the window");
        } else {
            assert!(rate < 0.1, "{row:?} is outside the window");
        }
    }

    let result = run(&snapshot, VERSIONS_QUERY);
    assert_eq!(text(&result.rows[0][0]), SLOW_FUNCTION, "{result:?}");
    assert_eq!(number(&result.rows[0][1]), 2.0, "{result:?}");
    assert_eq!(number(&result.rows[1][1]), 1.0, "{result:?}");

    let result = run(&snapshot, SLOW_QUERY);
    let p50 = |route: &str, version: &str| {
        let row = result.rows.iter().find(|r| text(&r[0]) == route && text(&r[1]) == version).unwrap();
        number(&row[2])
    };
    assert_eq!((text(&result.rows[0][0]), text(&result.rows[0][1])), (SLOW_ROUTE.to_owned(), SLOW_VERSION.to_owned()));
    let ratio = p50(SLOW_ROUTE, SLOW_VERSION) / p50(SLOW_ROUTE, BASELINE_VERSION);
    assert!((4.0..6.0).contains(&ratio), "{ratio}: {result:?}");

    let result = run(&snapshot, COLD_QUERY);
    assert_eq!(result.rows.len(), 5);
    assert!(result.rows.iter().all(|row| number(&row[2]) > 150e6), "cold starts take a few hundred ms: {result:?}");

    let result = run(&snapshot, DAY_QUERY);
    let count_at = |hour: f64| {
        let at = config.start_unix_nano as i64 + (hour * 3600e9) as i64;
        let row = result.rows.iter().find(|r| matches!(r[0], Value::Timestamp(t) if t == at)).unwrap();
        number(&row[1])
    };
    let ratio = count_at(PEAK_HOUR_UTC) / count_at(PEAK_HOUR_UTC - 12.0);
    let expected = (1.0 + DIURNAL_AMPLITUDE) / (1.0 - DIURNAL_AMPLITUDE);
    assert!((ratio - expected).abs() < 0.25 * expected, "{ratio}");

    let result = run(&snapshot, USERS_QUERY);
    assert_eq!(text(&result.rows[0][0]), "user-1", "{result:?}");
    drop(snapshot);
    store.close().unwrap();
}
