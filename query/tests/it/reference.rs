//! A straightforward reference evaluator: filters owned spans row by row, groups them in
//! a map and computes exact aggregates, with none of the executor's indexes, block reads
//! or partial-aggregate merging.

use std::collections::BTreeMap;

use spanstore_engine::Span;
use spanstore_query::ast::{Aggregate, AggregateExpr, ArithOp, Limit, Query, SelectItem, Timeseries};
use spanstore_query::exec::{eval_expr, field_of_span};
use spanstore_query::value::GroupKey;
use spanstore_query::{QueryResult, Value};

fn selected<'a>(spans: &'a [Span], query: &Query, now: i64) -> Vec<&'a Span> {
    let (since, until) = query.time_range(now);
    spans
        .iter()
        .filter(|s| {
            let start = s.start_unix_nano as i64;
            since.is_none_or(|x| start >= x) && until.is_none_or(|x| start < x)
        })
        .filter(|s| match &query.filter {
            Some(filter) => eval_expr(filter, &mut |f| field_of_span(s, f)) == Some(true),
            None => true,
        })
        .collect()
}

fn aggregate(rows: &[&Span], aggregate: &Aggregate) -> Value {
    match aggregate {
        Aggregate::Count(None) => Value::Int(rows.len() as i64),
        Aggregate::Count(Some(f)) => Value::Int(rows.iter().filter(|s| !field_of_span(s, f).is_null()).count() as i64),
        Aggregate::Filter { aggregate: inner, filter } => {
            let subset: Vec<&Span> = rows
                .iter()
                .copied()
                .filter(|s| eval_expr(filter, &mut |f| field_of_span(s, f)) == Some(true))
                .collect();
            self::aggregate(&subset, inner)
        }
        Aggregate::Sum(f) | Aggregate::Avg(f) => {
            let values: Vec<Value> =
                rows.iter().map(|s| field_of_span(s, f)).filter(|v| v.as_f64().is_some()).collect();
            if values.is_empty() {
                return Value::Null;
            }
            let all_durations = values.iter().all(|v| matches!(v, Value::Duration(_)));
            let all_ints = values.iter().all(|v| matches!(v, Value::Int(_)));
            let exact: i128 = values
                .iter()
                .map(|v| match v {
                    Value::Int(i) | Value::Duration(i) | Value::Timestamp(i) => i128::from(*i),
                    _ => 0,
                })
                .sum();
            let floats: f64 = values.iter().filter_map(|v| if let Value::Float(x) = v { Some(*x) } else { None }).sum();
            if matches!(aggregate, Aggregate::Sum(_)) {
                if all_durations {
                    Value::Duration(exact as i64)
                } else if all_ints {
                    Value::Int(exact as i64)
                } else {
                    Value::Float(floats + exact as f64)
                }
            } else {
                let mean = (floats + exact as f64) / values.len() as f64;
                if all_durations {
                    Value::Duration(mean.round() as i64)
                } else {
                    Value::Float(mean)
                }
            }
        }
        Aggregate::Min(f) | Aggregate::Max(f) => {
            let values = rows.iter().map(|s| field_of_span(s, f)).filter(|v| v.as_f64().is_some());
            let best = if matches!(aggregate, Aggregate::Min(_)) {
                values.min_by(|a, b| a.total_cmp(b))
            } else {
                values.max_by(|a, b| a.total_cmp(b))
            };
            best.unwrap_or(Value::Null)
        }
        // Exact: the tests use it on a few distinct values, where the sketch is exact too.
        Aggregate::Uniq(f) => {
            let distinct: std::collections::HashSet<_> =
                rows.iter().map(|s| field_of_span(s, f)).filter(|v| !v.is_null()).map(|v| v.group_key()).collect();
            Value::Int(distinct.len() as i64)
        }
        other => unimplemented!("the reference evaluator checks exact aggregates only, not {}", other.function_name()),
    }
}

fn expression(rows: &[&Span], expr: &AggregateExpr) -> Value {
    match expr {
        AggregateExpr::Aggregate(a) => aggregate(rows, a),
        AggregateExpr::Number(n) => Value::Float(*n),
        AggregateExpr::Neg(inner) => expression(rows, inner).as_f64().map(|v| Value::Float(-v)).unwrap_or(Value::Null),
        AggregateExpr::Binary { op, left, right } => {
            let (Some(a), Some(b)) = (expression(rows, left).as_f64(), expression(rows, right).as_f64()) else {
                return Value::Null;
            };
            match op {
                ArithOp::Add => Value::Float(a + b),
                ArithOp::Sub => Value::Float(a - b),
                ArithOp::Mul => Value::Float(a * b),
                ArithOp::Div if b == 0.0 => Value::Null,
                ArithOp::Div => Value::Float(a / b),
            }
        }
    }
}

fn columns(rows: &[&Span], query: &Query) -> Vec<Value> {
    query
        .select
        .iter()
        .filter_map(|item| match item {
            SelectItem::Aggregate { expr, .. } => Some(expression(rows, expr)),
            _ => None,
        })
        .collect()
}

/// Evaluates an aggregate query (count, sum, min, max, avg, filter, arithmetic; FACET,
/// TIMESERIES, ORDER BY the first aggregate, LIMIT).
pub fn evaluate(spans: &[Span], query: &Query, now: i64) -> QueryResult {
    assert!(query.order_by.is_empty(), "the reference orders by the first aggregate only");
    let rows = selected(spans, query, now);
    let mut groups: BTreeMap<Vec<GroupKey>, (Vec<Value>, Vec<&Span>)> = BTreeMap::new();
    for s in &rows {
        let keys: Vec<Value> = query.facets.iter().map(|f| field_of_span(s, f)).collect();
        let key: Vec<GroupKey> = keys.iter().map(Value::group_key).collect();
        groups.entry(key).or_insert_with(|| (keys, Vec::new())).1.push(s);
    }
    if groups.is_empty() && query.facets.is_empty() {
        groups.insert(Vec::new(), (Vec::new(), Vec::new()));
    }
    type Ranked<'a> = (Vec<GroupKey>, Vec<Value>, Vec<&'a Span>, Vec<Value>);
    let mut ranked: Vec<Ranked<'_>> = groups
        .into_iter()
        .map(|(k, (keys, members))| {
            let values = columns(&members, query);
            (k, keys, members, values)
        })
        .collect();
    ranked.sort_by(|a, b| b.3[0].total_cmp(&a.3[0]).then_with(|| a.0.cmp(&b.0)));
    let limit = match query.limit {
        Some(Limit::N(n)) => n as usize,
        Some(Limit::Max) => usize::MAX,
        None if !query.facets.is_empty() => 10,
        None => usize::MAX,
    };
    ranked.truncate(limit);
    let mut names = Vec::new();
    let interval = match query.timeseries {
        Some(Timeseries::Interval(ns)) => Some(ns as i64),
        Some(Timeseries::Auto) => unimplemented!("AUTO is checked elsewhere"),
        None => None,
    };
    if interval.is_some() {
        names.push("timestamp".to_string());
    }
    names.extend(query.facets.iter().map(|f| f.to_string()));
    names.extend(query.select.iter().filter(|s| matches!(s, SelectItem::Aggregate { .. })).map(|s| s.column_name()));
    let mut out = Vec::new();
    match interval {
        None => {
            for (_, keys, _, values) in ranked {
                let mut row = keys;
                row.extend(values);
                out.push(row);
            }
        }
        Some(interval) => {
            let (since, until) = query.time_range(now);
            let (since, until) = (since.expect("TIMESERIES tests give SINCE"), until.expect("and UNTIL"));
            let mut bucket = since.div_euclid(interval) * interval;
            while bucket < until {
                for (_, keys, members, _) in &ranked {
                    let inside: Vec<&Span> = members
                        .iter()
                        .copied()
                        .filter(|s| (s.start_unix_nano as i64).div_euclid(interval) * interval == bucket)
                        .collect();
                    let mut row = vec![Value::Timestamp(bucket)];
                    row.extend(keys.iter().cloned());
                    row.extend(columns(&inside, query));
                    out.push(row);
                }
                bucket += interval;
            }
        }
    }
    QueryResult { columns: names, rows: out, timeseries: interval.is_some(), facet_count: query.facets.len() }
}
