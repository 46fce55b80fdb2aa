#!/usr/bin/env python3
"""spanstore against DuckDB and chDB (ClickHouse) on the same spans: load time, bytes
per span on disk, and the 12 queries of issue 6, with their answers cross-checked.

    pip install -r benches/compare/requirements.txt
    python3 benches/compare/compare.py --spans 10000000

Steps (everything goes under --workdir, default /tmp/spanstore-compare):
  1. `spanstore gen --spans N --seed S` writes OTLP/JSON lines;
  2. spanstore: `spanstore ingest` of that file (decode, append, seal); bytes from the
     data directory after `spanstore compact`;
  3. DuckDB: the same file read with read_json and flattened into one row per span with
     a column per field and attribute key (the flat table is also written as zstd
     Parquet); then loaded into a native table in a DuckDB file;
  4. chDB: the Parquet file loaded into a MergeTree table ORDER BY (service, start_ns);
  5. the 12 queries, each once to warm up and then 5 times on each system, in process
     (spanstore through the `query_bench` driver, DuckDB and chDB through their Python
     modules); medians are compared, answers must agree (percentiles within 1 %, uniq
     within 2 %).

The table printed at the end is what docs/PERFORMANCE.md quotes.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RUNS = 5

# Where the span attributes of the flat table come from: (column, scope, key, type).
ATTRIBUTES = [
    ("service", "resource", "service.name", "str"),
    ("faas_name", "resource", "faas.name", "str"),
    ("faas_version", "resource", "faas.version", "str"),
    ("cloud_region", "resource", "cloud.region", "str"),
    ("cloud_az", "resource", "cloud.availability_zone", "str"),
    ("subnet", "resource", "net.subnet.id", "str"),
    ("http_method", "span", "http.request.method", "str"),
    ("http_route", "span", "http.route", "str"),
    ("http_status", "span", "http.response.status_code", "int"),
    ("faas_trigger", "span", "faas.trigger", "str"),
    ("faas_coldstart", "span", "faas.coldstart", "bool"),
    ("faas_invocation_id", "span", "faas.invocation_id", "str"),
    ("db_system", "span", "db.system", "str"),
    ("db_operation", "span", "db.operation.name", "str"),
    ("messaging_system", "span", "messaging.system", "str"),
    ("aws_request_id", "span", "aws.request_id", "str"),
    ("enduser_id", "span", "enduser.id", "str"),
]

ATTR_TYPE = "STRUCT(key VARCHAR, value STRUCT(stringValue VARCHAR, intValue VARCHAR, boolValue BOOLEAN, doubleValue DOUBLE))[]"
SPAN_TYPE = (
    "STRUCT(traceId VARCHAR, spanId VARCHAR, parentSpanId VARCHAR, name VARCHAR, kind INTEGER, "
    f"startTimeUnixNano VARCHAR, endTimeUnixNano VARCHAR, attributes {ATTR_TYPE}, "
    "status STRUCT(code INTEGER, message VARCHAR))"
)
REQUEST_TYPE = (
    f"STRUCT(resource STRUCT(attributes {ATTR_TYPE}), scopeSpans STRUCT(spans {SPAN_TYPE}[])[])[]"
)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run(cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
    log("$ " + " ".join(cmd))
    return subprocess.run(cmd, check=True, **kwargs)


def dir_bytes(path: str) -> int:
    total = 0
    for base, _dirs, files in os.walk(path):
        for name in files:
            total += os.path.getsize(os.path.join(base, name))
    return total


# ---------------------------------------------------------------------------- loading


def flatten_sql(source: str) -> str:
    """DuckDB SQL that reads OTLP/JSON lines and yields one flat row per span."""
    columns = [
        "sp.traceId AS trace_id",
        "sp.spanId AS span_id",
        "NULLIF(sp.parentSpanId, '') AS parent_span_id",
        "sp.name AS name",
        "sp.kind AS kind",
        "CAST(sp.startTimeUnixNano AS BIGINT) AS start_ns",
        "CAST(sp.endTimeUnixNano AS BIGINT) - CAST(sp.startTimeUnixNano AS BIGINT) AS duration_ns",
        "COALESCE(sp.status.code, 0) AS status_code",
    ]
    for column, scope, key, kind in ATTRIBUTES:
        attrs = "rattrs" if scope == "resource" else "sp.attributes"
        value = f"list_filter({attrs}, lambda a: a.key = '{key}')[1].value"
        if kind == "str":
            columns.append(f"{value}.stringValue AS {column}")
        elif kind == "int":
            columns.append(f"CAST({value}.intValue AS BIGINT) AS {column}")
        else:
            columns.append(f"{value}.boolValue AS {column}")
    return f"""
        WITH requests AS (
            SELECT resourceSpans FROM read_json('{source}', format = 'newline_delimited',
                columns = {{resourceSpans: '{REQUEST_TYPE}'}}, maximum_object_size = 1073741824)
        ),
        resources AS (SELECT unnest(resourceSpans) AS rs FROM requests),
        scopes AS (SELECT rs.resource.attributes AS rattrs, unnest(rs.scopeSpans) AS ss FROM resources),
        flat AS (SELECT rattrs, unnest(ss.spans) AS sp FROM scopes)
        SELECT {', '.join(columns)} FROM flat
    """


@dataclass
class System:
    name: str
    load_seconds: float = 0.0
    bytes_on_disk: int = 0
    notes: list[str] = field(default_factory=list)


def load_spanstore(args, jsonl: str, data: str) -> System:
    system = System("spanstore")
    shutil.rmtree(data, ignore_errors=True)
    started = time.perf_counter()
    run([args.spanstore, "--data", data, "ingest", jsonl])
    run([args.spanstore, "--data", data, "compact"], stdout=subprocess.DEVNULL)
    system.load_seconds = time.perf_counter() - started
    system.bytes_on_disk = dir_bytes(data)
    return system


def load_duckdb(jsonl: str, parquet: str, path: str):
    import duckdb

    system = System("DuckDB")
    for p in (path, path + ".wal", parquet):
        if os.path.exists(p):
            os.remove(p)
    con = duckdb.connect(path)
    started = time.perf_counter()
    con.execute(f"CREATE TABLE spans AS {flatten_sql(jsonl)}")
    con.execute("CHECKPOINT")
    system.load_seconds = time.perf_counter() - started
    system.bytes_on_disk = os.path.getsize(path)
    con.execute(f"COPY spans TO '{parquet}' (FORMAT parquet, COMPRESSION zstd)")
    return system, con


def load_chdb(parquet: str, path: str):
    from chdb import session

    system = System("chDB")
    shutil.rmtree(path, ignore_errors=True)
    sess = session.Session(path)
    started = time.perf_counter()
    sess.query("CREATE DATABASE IF NOT EXISTS bench")
    sess.query(
        "CREATE TABLE bench.spans ENGINE = MergeTree ORDER BY (service, start_ns) "
        f"SETTINGS allow_nullable_key = 1 AS SELECT * FROM file('{parquet}', Parquet)"
    )
    sess.query("OPTIMIZE TABLE bench.spans FINAL")
    system.load_seconds = time.perf_counter() - started
    rows = sess.query(
        "SELECT sum(bytes_on_disk) FROM system.parts WHERE database = 'bench' AND table = 'spans' AND active",
        "CSV",
    )
    system.bytes_on_disk = int(str(rows).strip() or 0)
    return system, sess


# ---------------------------------------------------------------------------- queries


@dataclass
class Query:
    title: str
    spanql: str
    duckdb: str
    clickhouse: str
    # How many leading columns form the group key; the rest are values.
    keys: int
    # Relative tolerance per value column (0 = exact).
    tolerance: list[float]
    # The SpanQL answer is the top `top` groups by the first value (ties may pick
    # different members): check values, not membership, at the boundary.
    top: int | None = None
    # SpanQL TIMESERIES: its zero buckets are absent from the SQL answers.
    timeseries: bool = False
    # Percentiles: DuckDB SQL giving (key, sorted list of values) per group; an answer
    # agrees when each percentile is within its tolerance of a value whose rank is that
    # percentile under some usual rank convention (floor(q(n-1)) to ceil(qn)).
    band_sql: str | None = None
    percentiles: list[float] = field(default_factory=list)
    # Absolute tolerance per value column, where a value is rounded (an avg of
    # durations is whole nanoseconds in SpanQL: off by up to 0.5).
    abs_tolerance: list[float] = field(default_factory=list)


def build_queries(duck) -> list[Query]:
    """The 12 queries of issue 6, with their parameters picked from the data."""
    (first_start,) = duck.execute("SELECT min(start_ns) FROM spans").fetchone()
    window_start = (first_start // 60_000_000_000) * 60_000_000_000 + 30 * 60_000_000_000
    window_end = window_start + 2 * 3600_000_000_000
    (trace_id,) = duck.execute(
        "SELECT trace_id FROM spans WHERE name = 'DynamoDB.PutItem' AND status_code = 2 ORDER BY span_id LIMIT 1"
    ).fetchone()
    (user,) = duck.execute(
        "SELECT enduser_id FROM spans WHERE enduser_id IS NOT NULL GROUP BY 1 ORDER BY count(*) DESC, 1 "
        "LIMIT 1 OFFSET 100"
    ).fetchone()
    (request_id,) = duck.execute(
        "SELECT aws_request_id FROM spans WHERE aws_request_id IS NOT NULL ORDER BY span_id LIMIT 1"
    ).fetchone()
    wide = (
        "(service IN ('checkout', 'payments', 'shipping') OR faas_coldstart = true "
        "OR http_method IN ('PUT', 'DELETE') OR cloud_region = 'ap-southeast-2')"
    )
    wide_spanql = (
        "(service IN ('checkout', 'payments', 'shipping') OR faas.coldstart = true "
        "OR http.request.method IN ('PUT', 'DELETE') OR resource.cloud.region = 'ap-southeast-2')"
    )
    minute = 60_000_000_000
    return [
        Query(
            "count by service",
            "SELECT count(*) FROM spans FACET service LIMIT MAX",
            "SELECT service, count(*) FROM spans GROUP BY 1",
            "SELECT service, count() FROM bench.spans GROUP BY 1",
            1,
            [0],
        ),
        Query(
            "errors by http.route, top 10",
            "SELECT count(*) FROM spans WHERE status = 'error' AND http.route IS NOT NULL FACET http.route LIMIT 10",
            "SELECT http_route, count(*) FROM spans WHERE status_code = 2 AND http_route IS NOT NULL GROUP BY 1",
            "SELECT http_route, count() FROM bench.spans WHERE status_code = 2 AND http_route IS NOT NULL GROUP BY 1",
            1,
            [0],
            top=10,
        ),
        Query(
            "cold-start p50/p95/p99 by faas.name",
            "SELECT percentile(duration, 50, 95, 99) FROM spans WHERE faas.coldstart = true FACET faas.name LIMIT MAX",
            "SELECT faas_name, quantile_disc(duration_ns, 0.5), quantile_disc(duration_ns, 0.95), "
            "quantile_disc(duration_ns, 0.99) FROM spans WHERE faas_coldstart GROUP BY 1",
            "SELECT faas_name, quantileExact(0.5)(duration_ns), quantileExact(0.95)(duration_ns), "
            "quantileExact(0.99)(duration_ns) FROM bench.spans WHERE faas_coldstart GROUP BY 1",
            1,
            [0.01, 0.01, 0.01],
            band_sql="SELECT faas_name, list_sort(list(duration_ns)) FROM spans WHERE faas_coldstart GROUP BY 1",
            percentiles=[0.5, 0.95, 0.99],
        ),
        Query(
            "errors per minute, one service, 2 hours",
            f"SELECT count(*) FROM spans WHERE service = 'orders' AND status = 'error' "
            f"SINCE {window_start} UNTIL {window_end} TIMESERIES 1 minute",
            f"SELECT (start_ns // {minute}) * {minute}, count(*) FROM spans WHERE service = 'orders' "
            f"AND status_code = 2 AND start_ns >= {window_start} AND start_ns < {window_end} GROUP BY 1",
            f"SELECT intDiv(start_ns, {minute}) * {minute}, count() FROM bench.spans WHERE service = 'orders' "
            f"AND status_code = 2 AND start_ns >= {window_start} AND start_ns < {window_end} GROUP BY 1",
            1,
            [0],
            timeseries=True,
        ),
        Query(
            "failed PutItem by zone and subnet, top 20",
            "SELECT count(*) FROM spans WHERE name = 'DynamoDB.PutItem' AND status = 'error' "
            "FACET resource.cloud.availability_zone, resource.net.subnet.id LIMIT 20",
            "SELECT cloud_az, subnet, count(*) FROM spans WHERE name = 'DynamoDB.PutItem' AND status_code = 2 "
            "GROUP BY 1, 2",
            "SELECT cloud_az, subnet, count() FROM bench.spans WHERE name = 'DynamoDB.PutItem' AND status_code = 2 "
            "GROUP BY 1, 2",
            2,
            [0],
            top=20,
        ),
        Query(
            "all spans of one trace",
            f"SELECT span_id, duration FROM spans WHERE trace_id = '{trace_id}' LIMIT MAX",
            f"SELECT span_id, duration_ns FROM spans WHERE trace_id = '{trace_id}'",
            f"SELECT span_id, duration_ns FROM bench.spans WHERE trace_id = '{trace_id}'",
            1,
            [0],
        ),
        Query(
            "count for one enduser.id",
            f"SELECT count(*) FROM spans WHERE enduser.id = '{user}'",
            f"SELECT count(*) FROM spans WHERE enduser_id = '{user}'",
            f"SELECT count() FROM bench.spans WHERE enduser_id = '{user}'",
            0,
            [0],
        ),
        Query(
            "distinct enduser.id by region",
            "SELECT uniq(enduser.id) FROM spans FACET resource.cloud.region LIMIT MAX",
            "SELECT cloud_region, count(DISTINCT enduser_id) FROM spans GROUP BY 1",
            "SELECT cloud_region, uniqExact(enduser_id) FROM bench.spans GROUP BY 1",
            1,
            [0.02],
        ),
        Query(
            "avg and max duration by route, status code >= 500",
            "SELECT avg(duration), max(duration) FROM spans WHERE http.response.status_code >= 500 "
            "FACET http.route LIMIT MAX",
            "SELECT http_route, avg(duration_ns), max(duration_ns) FROM spans WHERE http_status >= 500 GROUP BY 1",
            "SELECT http_route, avg(duration_ns), max(duration_ns) FROM bench.spans WHERE http_status >= 500 "
            "GROUP BY 1",
            1,
            # avg of a duration is whole nanoseconds in SpanQL
            [1e-8, 0],
            abs_tolerance=[0.5, 0],
        ),
        Query(
            "spans with one aws.request_id",
            f"SELECT span_id, name FROM spans WHERE aws.request_id = '{request_id}' LIMIT MAX",
            f"SELECT span_id, name FROM spans WHERE aws_request_id = '{request_id}'",
            f"SELECT span_id, name FROM bench.spans WHERE aws_request_id = '{request_id}'",
            2,
            [],
        ),
        Query(
            "wide OR/IN filter, count by faas.trigger",
            f"SELECT count(*) FROM spans WHERE {wide_spanql} FACET faas.trigger LIMIT MAX",
            f"SELECT faas_trigger, count(*) FROM spans WHERE {wide} GROUP BY 1",
            f"SELECT faas_trigger, count() FROM bench.spans WHERE {wide} GROUP BY 1",
            1,
            [0],
        ),
        Query(
            "PutItem error rate by (zone, subnet), sorted",
            "SELECT filter(count(*), WHERE status = 'error') / count(*) AS error_rate FROM spans "
            "WHERE name = 'DynamoDB.PutItem' FACET resource.cloud.availability_zone, resource.net.subnet.id "
            "ORDER BY error_rate DESC LIMIT MAX",
            "SELECT cloud_az, subnet, count(*) FILTER (WHERE status_code = 2) / count(*) FROM spans "
            "WHERE name = 'DynamoDB.PutItem' GROUP BY 1, 2 ORDER BY 3 DESC",
            "SELECT cloud_az, subnet, countIf(status_code = 2) / count() FROM bench.spans "
            "WHERE name = 'DynamoDB.PutItem' GROUP BY 1, 2 ORDER BY 3 DESC",
            2,
            [1e-9],
        ),
    ]


# ---------------------------------------------------------------------------- answers


def normalize(value):
    if value is None:
        return None
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        return float(value)
    if hasattr(value, "__float__") and not isinstance(value, str):
        return float(value)
    return str(value)


def keyed(rows, keys: int) -> dict:
    """Rows as {group key: [values]}; with no key columns, one group."""
    out = {}
    for row in rows:
        row = [normalize(v) for v in row]
        key = tuple(row[:keys]) if keys else ()
        out[key] = row[keys:]
    return out


def spanstore_rows(result: dict, query: Query) -> list[list]:
    rows = result["rows"]
    if query.timeseries:
        # The timestamp is RFC 3339; turn it back into epoch ns to compare with SQL.
        from datetime import datetime, timezone

        converted = []
        for row in rows:
            stamp = datetime.strptime(row[0][:19], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=timezone.utc)
            converted.append([int(stamp.timestamp()) * 1_000_000_000] + row[1:])
        return [r for r in converted if r[1] != 0]
    return rows


def within_band(query: Query, answer: list[list], bands: dict) -> str | None:
    """None when every percentile of `answer` lies in its rank band, else what does not."""
    got = keyed(answer, query.keys)
    if set(got) != set(bands):
        return f"groups differ: {sorted(set(got) ^ set(bands), key=str)[:5]}"
    for key, values in got.items():
        data = bands[key]
        n = len(data)
        for i, q in enumerate(query.percentiles):
            low = data[max(0, math.floor(q * (n - 1)))]
            high = data[min(n - 1, math.ceil(q * n))]
            tol = query.tolerance[i]
            v = values[i]
            if v is None or not (low * (1 - tol) <= v <= high * (1 + tol)):
                return f"{key} p{q * 100:g}: {v} outside [{low}, {high}] (n={n}, tolerance {tol})"
    return None


def agree(query: Query, ours: list[list], theirs: list[list]) -> str | None:
    """None when the answers agree, else what differs."""
    if query.title == "spans with one aws.request_id" or query.title == "all spans of one trace":
        a = sorted(tuple(normalize(v) for v in r) for r in ours)
        b = sorted(tuple(normalize(v) for v in r) for r in theirs)
        return None if a == b else f"rows differ: {a[:3]}... vs {b[:3]}..."
    mine = keyed(ours, query.keys)
    reference = keyed(theirs, query.keys)
    if query.top is not None:
        ranked = sorted(reference.values(), key=lambda v: -(v[0] or 0))
        expected = sorted((v[0] for v in ranked[: query.top]), reverse=True)
        got = sorted((v[0] for v in mine.values()), reverse=True)
        if got != expected:
            return f"top {query.top} values differ: {got} vs {expected}"
        reference = {k: v for k, v in reference.items() if k in mine}
    if set(mine) != set(reference):
        return f"groups differ: only spanstore {sorted(set(mine) - set(reference), key=str)[:5]}, only reference {sorted(set(reference) - set(mine), key=str)[:5]}"
    for key, values in mine.items():
        other = reference[key]
        if len(values) != len(other):
            return f"{key}: {len(values)} values vs {len(other)}"
        for i, (a, b) in enumerate(zip(values, other)):
            tol = query.tolerance[i] if i < len(query.tolerance) else 0
            if a is None or b is None:
                if a != b:
                    return f"{key} column {i}: {a} vs {b}"
                continue
            abs_tol = query.abs_tolerance[i] if i < len(query.abs_tolerance) else (1e-9 if tol else 0)
            if not math.isclose(a, b, rel_tol=tol, abs_tol=abs_tol):
                return f"{key} column {i}: {a} vs {b} (tolerance {tol})"
    return None


# ---------------------------------------------------------------------------- timing


def time_sql(execute, sql: str):
    result = execute(sql)
    runs = []
    for _ in range(RUNS):
        started = time.perf_counter()
        result = execute(sql)
        runs.append((time.perf_counter() - started) * 1e3)
    return statistics.median(runs), result


def chdb_rows(sess, sql: str) -> list[list]:
    text = str(sess.query(sql, "JSONCompact"))
    return json.loads(text)["data"] if text.strip() else []


def geomean(values: list[float]) -> float:
    values = [v for v in values if v > 0]
    return math.exp(sum(math.log(v) for v in values) / len(values)) if values else float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--spans", type=int, default=10_000_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workdir", default="/tmp/spanstore-compare")
    parser.add_argument("--reuse", action="store_true", help="keep the generated file and loaded data from a previous run")
    parser.add_argument("--no-build", action="store_true", help="use the binaries as they are")
    parser.add_argument("--bin-dir", default=os.path.join(ROOT, "target", "release"),
                        help="where spanstore and query_bench are (default target/release)")
    args = parser.parse_args()

    os.makedirs(args.workdir, exist_ok=True)
    if not args.no_build:
        run(["cargo", "build", "--release", "-p", "spanstore", "-p", "spanstore-benches", "--bin", "spanstore",
             "--bin", "query_bench"], cwd=ROOT)
    args.spanstore = os.path.join(args.bin_dir, "spanstore")
    query_bench = os.path.join(args.bin_dir, "query_bench")

    jsonl = os.path.join(args.workdir, f"spans-{args.spans}-{args.seed}.jsonl")
    parquet = os.path.join(args.workdir, "spans.parquet")
    data = os.path.join(args.workdir, "spanstore-data")
    if not (args.reuse and os.path.exists(jsonl)):
        started = time.perf_counter()
        run([args.spanstore, "gen", "--spans", str(args.spans), "--seed", str(args.seed), "--out", jsonl])
        log(f"generated {args.spans} spans in {time.perf_counter() - started:.1f} s, {os.path.getsize(jsonl) / 1e9:.2f} GB")

    systems = []
    if args.reuse and os.path.isdir(data):
        ours = System("spanstore", bytes_on_disk=dir_bytes(data))
        ours.notes.append("reused")
    else:
        ours = load_spanstore(args, jsonl, data)
    systems.append(ours)
    duck_system, duck = load_duckdb(jsonl, parquet, os.path.join(args.workdir, "spans.duckdb"))
    systems.append(duck_system)
    ch_system, sess = load_chdb(parquet, os.path.join(args.workdir, "chdb"))
    systems.append(ch_system)
    (rows,) = duck.execute("SELECT count(*) FROM spans").fetchone()
    parquet_bytes = os.path.getsize(parquet)

    queries = build_queries(duck)
    query_file = os.path.join(args.workdir, "queries.spanql")
    with open(query_file, "w") as f:
        for q in queries:
            f.write(q.spanql + "\n")
    bench = subprocess.run(
        [query_bench, "--data", data, "--queries", query_file, "--runs", str(RUNS)],
        check=True, capture_output=True, text=True,
    )
    ours_results = [json.loads(line) for line in bench.stdout.splitlines() if line.strip()]

    failures = 0
    lines = []
    ratios_duck, ratios_ch = [], []
    for q, mine in zip(queries, ours_results):
        duck_ms, duck_rows = time_sql(lambda s: duck.execute(s).fetchall(), q.duckdb)
        ch_ms, ch_rows = time_sql(lambda s: chdb_rows(sess, s), q.clickhouse)
        our_rows = spanstore_rows(mine["result"], q)
        if q.band_sql:
            bands = {(normalize(k),): [float(v) for v in values] for k, values in duck.execute(q.band_sql).fetchall()}
            checks = [within_band(q, rows_, bands) for rows_ in (our_rows, duck_rows, ch_rows)]
        else:
            checks = [agree(q, our_rows, duck_rows), agree(q, our_rows, ch_rows)]
        problems = [p for p in checks if p]
        if problems:
            failures += 1
            log(f"MISMATCH in '{q.title}': {problems[0]}")
        ours_ms = mine["median_ms"]
        ratios_duck.append(ours_ms / duck_ms)
        ratios_ch.append(ours_ms / ch_ms)
        lines.append((q.title, ours_ms, duck_ms, ch_ms, "yes" if not problems else "NO"))

    print(f"\n{rows:,} spans, seed {args.seed}; Parquet (zstd) {parquet_bytes / rows:.1f} bytes/span\n")
    print(f"| system | load s | bytes/span on disk |")
    print(f"|---|---:|---:|")
    for s in systems:
        print(f"| {s.name} | {s.load_seconds:.1f} | {s.bytes_on_disk / rows:.1f} |")
    print()
    print("| query | spanstore ms | DuckDB ms | chDB ms | spanstore/DuckDB | spanstore/chDB | answers agree |")
    print("|---|---:|---:|---:|---:|---:|:---:|")
    for title, o, d, c, ok in lines:
        print(f"| {title} | {o:.2f} | {d:.2f} | {c:.2f} | {o / d:.3f} | {o / c:.3f} | {ok} |")
    print(f"| geometric mean of ratios | | | | {geomean(ratios_duck):.3f} | {geomean(ratios_ch):.3f} | |")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
