//! The SpanQL checker: types literals against fields, checks aggregate arguments, and
//! checks a query as a whole (aggregates beside plain fields, FACET, TIMESERIES, ORDER BY,
//! SINCE before UNTIL).
//!
//! The parser calls these while it still knows where each piece was written, so every
//! error names a line and column; the finished AST carries no positions.
#![deny(clippy::unwrap_used, clippy::indexing_slicing)]

use spanstore_engine::{SpanId, SpanKind, StatusCode, TraceId};

use crate::ast::{
    Aggregate, AggregateExpr, CompareOp, Field, FieldType, Literal, OrderKey, Query, SelectItem, TimeBound,
};
use crate::error::QueryError;
use crate::lexer::{truncate, Position};
use crate::time::parse_rfc3339;

/// A literal as written, before it is typed against a field.
#[derive(Clone, Debug)]
pub(crate) struct RawLiteral {
    pub value: RawValue,
    pub position: Position,
    /// The source text, for messages.
    pub text: String,
}

/// The value of a [`RawLiteral`].
#[derive(Clone, Debug)]
pub(crate) enum RawValue {
    String(String),
    Int(i64),
    Float(f64),
    Duration(u64),
    Bool(bool),
    Null,
}

impl RawLiteral {
    pub(crate) fn describe(&self) -> String {
        let text = truncate(&self.text);
        match self.value {
            RawValue::String(_) => format!("string {text}"),
            RawValue::Int(_) | RawValue::Float(_) => format!("number {text}"),
            RawValue::Duration(_) => format!("duration {text}"),
            RawValue::Bool(value) => value.to_string(),
            RawValue::Null => "NULL".to_string(),
        }
    }
}

/// Where the parser saw each part of a query, for the whole-query checks.
#[derive(Clone, Debug, Default)]
pub(crate) struct Marks {
    /// Start of each SELECT item.
    pub select: Vec<Position>,
    /// The FACET keyword.
    pub facet: Option<Position>,
    /// Start of each FACET field.
    pub facets: Vec<Position>,
    /// The TIMESERIES keyword.
    pub timeseries: Option<Position>,
    /// Start of each ORDER BY key.
    pub order_by: Vec<Position>,
    /// The UNTIL value.
    pub until: Option<Position>,
}

/// Parses a trace id: 32 hex digits, 16 zero-extended on the left as Zipkin's 64-bit ids
/// are, or an AWS X-Ray trace id (`1-5759e988-bd862e3fe1be46a994272793`) mapped as the
/// OpenTelemetry X-Ray propagator maps it ([`TraceId::from_xray`]).
pub(crate) fn parse_trace_id(text: &str) -> Option<TraceId> {
    if text.starts_with("1-") {
        return TraceId::from_xray(text).ok();
    }
    if text.len() == 2 * SpanId::LEN {
        let span_id = SpanId::from_hex(text).ok()?;
        let mut bytes = [0u8; TraceId::LEN];
        bytes.get_mut(SpanId::LEN..)?.copy_from_slice(&span_id.0);
        return Some(TraceId(bytes));
    }
    TraceId::from_hex(text).ok()
}

/// Types a literal against the field it is compared with (see [`Literal`]).
pub(crate) fn typed_literal(field: &Field, literal: RawLiteral) -> Result<Literal, QueryError> {
    let field_type = field.field_type();
    let position = literal.position;
    let described = literal.describe();
    let mismatch = |hint: String| {
        QueryError::type_error(position, format!("{field} is {}, found {described}{hint}", field_type.describe()))
    };
    match (field_type, literal.value) {
        (_, RawValue::Null) => Err(QueryError::type_error(
            position,
            format!("NULL never equals anything (use {field} IS NULL or {field} IS NOT NULL)"),
        )),
        (FieldType::Any | FieldType::String, RawValue::String(text)) => Ok(Literal::String(text)),
        (FieldType::Any, RawValue::Int(value)) => Ok(Literal::Int(value)),
        (FieldType::Any, RawValue::Float(value)) => Ok(Literal::Float(value)),
        (FieldType::Any, RawValue::Bool(value)) => Ok(Literal::Bool(value)),
        (FieldType::Any | FieldType::Duration, RawValue::Duration(nanos)) => Ok(Literal::Duration(nanos)),
        (FieldType::TraceId, RawValue::String(text)) => parse_trace_id(&text).map(Literal::TraceId).ok_or_else(|| {
            QueryError::type_error(
                position,
                format!("{field} takes 32 hex digits or an X-Ray id, found '{}'", truncate(&text)),
            )
        }),
        (FieldType::SpanId, RawValue::String(text)) => SpanId::from_hex(&text).map(Literal::SpanId).map_err(|_| {
            QueryError::type_error(position, format!("{field} takes 16 hex digits, found '{}'", truncate(&text)))
        }),
        (FieldType::Kind, RawValue::String(text)) => SpanKind::ALL
            .into_iter()
            .find(|kind| kind.as_str().eq_ignore_ascii_case(&text))
            .map(Literal::Kind)
            .ok_or_else(|| {
                QueryError::type_error(
                    position,
                    format!(
                        "unknown span kind '{}', expected unspecified, internal, server, client, producer or consumer",
                        truncate(&text)
                    ),
                )
            }),
        (FieldType::Status, RawValue::String(text)) => StatusCode::ALL
            .into_iter()
            .find(|status| status.as_str().eq_ignore_ascii_case(&text))
            .map(Literal::Status)
            .ok_or_else(|| {
                QueryError::type_error(
                    position,
                    format!("unknown status '{}', expected unset, ok or error", truncate(&text)),
                )
            }),
        (FieldType::Timestamp, RawValue::String(text)) => parse_rfc3339(&text)
            .map(Literal::Timestamp)
            .map_err(|error| QueryError::type_error(position, error.to_string())),
        (FieldType::Timestamp, RawValue::Int(nanos)) => Ok(Literal::Timestamp(nanos)),
        (FieldType::Duration, RawValue::Int(value)) if value >= 0 => {
            Err(mismatch(format!(" (give it a unit, such as {value}ms)")))
        }
        (FieldType::Duration, RawValue::Float(value)) if value >= 0.0 => {
            Err(mismatch(format!(" (give it a unit, such as {}ms)", literal.text)))
        }
        (FieldType::String, RawValue::Int(_) | RawValue::Float(_) | RawValue::Bool(_)) => {
            Err(mismatch(format!(" (did you mean '{}'?)", literal.text)))
        }
        _ => Err(mismatch(String::new())),
    }
}

/// Checks and types `field op literal`.
pub(crate) fn comparison(
    field: &Field,
    op: CompareOp,
    op_position: Position,
    literal: RawLiteral,
) -> Result<Literal, QueryError> {
    if matches!(literal.value, RawValue::Null) {
        let hint = match op {
            CompareOp::Eq => format!("use {field} IS NULL"),
            CompareOp::Ne => format!("use {field} IS NOT NULL"),
            _ => format!("use {field} IS NULL or {field} IS NOT NULL"),
        };
        return Err(QueryError::type_error(literal.position, format!("NULL never compares with anything ({hint})")));
    }
    if !op.is_equality() {
        let field_type = field.field_type();
        if matches!(field_type, FieldType::Kind | FieldType::Status | FieldType::TraceId | FieldType::SpanId) {
            return Err(QueryError::type_error(
                op_position,
                format!("{field} compares only with =, !=, IN and NOT IN, found '{}'", op.as_str()),
            ));
        }
        if let RawValue::Bool(value) = literal.value {
            return Err(QueryError::type_error(
                op_position,
                format!("{value} compares only with = and !=, found '{}'", op.as_str()),
            ));
        }
    }
    typed_literal(field, literal)
}

/// Checks and types one value of `field IN (...)`.
pub(crate) fn in_value(field: &Field, literal: RawLiteral) -> Result<Literal, QueryError> {
    if matches!(literal.value, RawValue::Null) {
        return Err(QueryError::type_error(
            literal.position,
            format!("NULL never matches in IN (...) (use {field} IS NULL)"),
        ));
    }
    typed_literal(field, literal)
}

/// Checks `field LIKE pattern` and returns the pattern.
pub(crate) fn like(field: &Field, field_position: Position, literal: RawLiteral) -> Result<String, QueryError> {
    let field_type = field.field_type();
    if !matches!(field_type, FieldType::String | FieldType::Any) {
        return Err(QueryError::type_error(
            field_position,
            format!("LIKE needs a string field, {field} is {}", field_type.describe()),
        ));
    }
    let RawValue::String(pattern) = literal.value else {
        return Err(QueryError::type_error(
            literal.position,
            format!("LIKE needs a string pattern such as '%timeout%', found {}", literal.describe()),
        ));
    };
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        if c == '\\' && chars.next().is_none() {
            return Err(QueryError::type_error(
                literal.position,
                "the LIKE pattern ends with a lone '\\' (write '\\\\' for a backslash)",
            ));
        }
    }
    Ok(pattern)
}

/// Checks the field argument of an aggregate function.
pub(crate) fn aggregate_field(function: &str, field: &Field, position: Position) -> Result<(), QueryError> {
    let field_type = field.field_type();
    let needs = match function {
        "sum" | "avg" | "percentile" | "histogram" => {
            if matches!(field_type, FieldType::Duration | FieldType::Any) {
                return Ok(());
            }
            "a number or a duration"
        }
        "min" | "max" => {
            if matches!(field_type, FieldType::Duration | FieldType::Timestamp | FieldType::Any) {
                return Ok(());
            }
            "a number, a duration or a timestamp"
        }
        _ => return Ok(()),
    };
    Err(QueryError::type_error(
        position,
        format!(
            "{function} needs {needs}, {field} is {} (count({field}) and uniq({field}) take any field)",
            field_type.describe()
        ),
    ))
}

/// Checks one percentile argument and returns it.
pub(crate) fn percentile(literal: &RawLiteral) -> Result<f64, QueryError> {
    let value = match literal.value {
        RawValue::Int(value) => value as f64,
        RawValue::Float(value) => value,
        _ => {
            return Err(QueryError::type_error(
                literal.position,
                format!("percentile takes numbers from 0 to 100, found {}", literal.describe()),
            ))
        }
    };
    if !(0.0..=100.0).contains(&value) {
        return Err(QueryError::type_error(
            literal.position,
            format!("a percentile is between 0 and 100, found {}", truncate(&literal.text)),
        ));
    }
    Ok(value)
}

/// Checks a histogram's ceiling against its field and returns it.
pub(crate) fn histogram_ceiling(field: &Field, literal: &RawLiteral) -> Result<Literal, QueryError> {
    let field_type = field.field_type();
    let ceiling = match (field_type, &literal.value) {
        (FieldType::Duration | FieldType::Any, RawValue::Duration(nanos)) => Literal::Duration(*nanos),
        (FieldType::Any, RawValue::Int(value)) => Literal::Int(*value),
        (FieldType::Any, RawValue::Float(value)) => Literal::Float(*value),
        (FieldType::Duration, RawValue::Int(_) | RawValue::Float(_)) => {
            return Err(QueryError::type_error(
                literal.position,
                format!("the ceiling of a histogram of {field} is a duration such as 1s, found {}", literal.describe()),
            ))
        }
        _ => {
            return Err(QueryError::type_error(
                literal.position,
                format!("expected a histogram ceiling such as 1s or 100, found {}", literal.describe()),
            ))
        }
    };
    if ceiling.as_f64().is_some_and(|value| value > 0.0) {
        Ok(ceiling)
    } else {
        Err(QueryError::type_error(
            literal.position,
            format!("a histogram ceiling must be above zero, found {}", truncate(&literal.text)),
        ))
    }
}

/// Checks a histogram's bucket count and returns it.
pub(crate) fn histogram_bucket_count(literal: &RawLiteral) -> Result<u32, QueryError> {
    match literal.value {
        RawValue::Int(value) if (1..=i64::from(Aggregate::HISTOGRAM_BUCKETS_MAX)).contains(&value) => {
            u32::try_from(value).map_err(|_| QueryError::Internal("bucket count range".to_string()))
        }
        _ => Err(QueryError::type_error(
            literal.position,
            format!("a histogram has 1 to {} buckets, found {}", Aggregate::HISTOGRAM_BUCKETS_MAX, literal.describe()),
        )),
    }
}

/// Checks the aggregate inside `rate(...)`: a count or a sum, possibly filtered.
pub(crate) fn rate_inner(aggregate: &Aggregate, position: Position) -> Result<(), QueryError> {
    match aggregate {
        Aggregate::Count(_) | Aggregate::Sum(_) => Ok(()),
        Aggregate::Filter { aggregate, .. } => rate_inner(aggregate, position),
        other => Err(QueryError::type_error(
            position,
            format!("rate takes count(...) or sum(...), found {}(...)", other.function_name()),
        )),
    }
}

/// The whole-query checks, once every clause is parsed.
pub(crate) fn query(query: &Query, marks: &Marks) -> Result<(), QueryError> {
    let at = |positions: &[Position], index: usize| positions.get(index).copied().unwrap_or_default();
    let aggregate = query.is_aggregate();
    let mut aliases: Vec<&str> = Vec::new();
    for (index, item) in query.select.iter().enumerate() {
        let position = at(&marks.select, index);
        match item {
            SelectItem::Star => {}
            SelectItem::Field(field) => {
                if aggregate && !query.facets.contains(field) {
                    return Err(QueryError::type_error(
                        position,
                        format!(
                            "{field} isn't a FACET field, and a query with aggregates selects only aggregates \
                             and FACET fields (add FACET {field}, or aggregate it, such as uniq({field}))"
                        ),
                    ));
                }
            }
            SelectItem::Aggregate { expr, alias } => {
                if !matches!(expr, AggregateExpr::Aggregate(_)) {
                    if let Some(multi) = expr.aggregates().into_iter().find(|aggregate| !aggregate.is_scalar()) {
                        return Err(QueryError::type_error(
                            position,
                            format!(
                                "arithmetic needs aggregates with one value, and {multi} isn't one \
                                 (give it a SELECT item of its own)"
                            ),
                        ));
                    }
                }
                if let Some(alias) = alias {
                    if aliases.contains(&alias.as_str()) {
                        return Err(QueryError::type_error(
                            position,
                            format!("two SELECT items are named '{}'", truncate(alias)),
                        ));
                    }
                    aliases.push(alias);
                }
            }
        }
    }
    if !aggregate {
        if let Some(position) = marks.facet {
            return Err(QueryError::type_error(
                position,
                "FACET needs an aggregate in SELECT, such as SELECT count(*)",
            ));
        }
        if let Some(position) = marks.timeseries {
            return Err(QueryError::type_error(
                position,
                "TIMESERIES needs an aggregate in SELECT, such as SELECT count(*)",
            ));
        }
    }
    for (index, facet) in query.facets.iter().enumerate() {
        if query.facets.get(..index).is_some_and(|earlier| earlier.contains(facet)) {
            return Err(QueryError::type_error(at(&marks.facets, index), format!("{facet} appears twice in FACET")));
        }
    }
    for (index, order) in query.order_by.iter().enumerate() {
        let position = at(&marks.order_by, index);
        match &order.key {
            OrderKey::Field(field) => {
                if aggregate && !query.facets.contains(field) {
                    return Err(QueryError::type_error(
                        position,
                        format!(
                            "{field} isn't a FACET field, and a query with aggregates is ordered by an aggregate \
                             or a FACET field"
                        ),
                    ));
                }
            }
            OrderKey::Aggregate(expr) => {
                if !aggregate {
                    return Err(QueryError::type_error(
                        position,
                        format!("ORDER BY {expr} needs aggregates in SELECT (or order by a field)"),
                    ));
                }
                if let Some(multi) = expr.aggregates().into_iter().find(|aggregate| !aggregate.is_scalar()) {
                    return Err(QueryError::type_error(
                        position,
                        format!("ORDER BY needs an aggregate with one value, and {multi} isn't one"),
                    ));
                }
            }
        }
    }
    if let (Some(since), Some(until)) = (query.since, query.until) {
        let inverted = match (since, until) {
            (TimeBound::Ago(since_ago), TimeBound::Ago(until_ago)) => since_ago <= until_ago,
            _ => match (absolute(since), absolute(until)) {
                (Some(since), Some(until)) => since >= until,
                _ => false,
            },
        };
        if inverted {
            return Err(QueryError::type_error(
                marks.until.unwrap_or_default(),
                format!("UNTIL {until} is not after SINCE {since}"),
            ));
        }
    }
    Ok(())
}

fn absolute(bound: TimeBound) -> Option<i128> {
    match bound {
        TimeBound::Rfc3339(nanos) => Some(i128::from(nanos)),
        TimeBound::EpochNanos(nanos) => Some(i128::from(nanos)),
        TimeBound::Ago(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use crate::parse;

    fn error(text: &str) -> String {
        match parse(text) {
            Ok(statement) => panic!("{text}: parsed as {statement}"),
            Err(error) => error.to_string(),
        }
    }

    #[test]
    fn literal_types() {
        let cases = [
            ("SELECT * FROM spans WHERE duration > 250", "line 1, column 38: duration is a duration, found number 250 (give it a unit, such as 250ms)"),
            ("SELECT * FROM spans WHERE duration > 1.5", "line 1, column 38: duration is a duration, found number 1.5 (give it a unit, such as 1.5ms)"),
            ("SELECT * FROM spans WHERE duration > -1", "line 1, column 38: duration is a duration, found number -1"),
            ("SELECT * FROM spans WHERE duration = 'x'", "line 1, column 38: duration is a duration, found string 'x'"),
            ("SELECT * FROM spans WHERE name = 5", "line 1, column 34: name is a string, found number 5 (did you mean '5'?)"),
            ("SELECT * FROM spans WHERE service = true", "line 1, column 37: service is a string, found true (did you mean 'true'?)"),
            ("SELECT * FROM spans WHERE status_message = 1ms", "line 1, column 44: status_message is a string, found duration 1ms"),
            ("SELECT * FROM spans WHERE kind = 5", "line 1, column 34: kind is a span kind, found number 5"),
            ("SELECT * FROM spans WHERE kind = 'nope'", "line 1, column 34: unknown span kind 'nope', expected unspecified, internal, server, client, producer or consumer"),
            ("SELECT * FROM spans WHERE status = 'bad'", "line 1, column 36: unknown status 'bad', expected unset, ok or error"),
            ("SELECT * FROM spans WHERE trace_id = 'xyz'", "line 1, column 38: trace_id takes 32 hex digits or an X-Ray id, found 'xyz'"),
            ("SELECT * FROM spans WHERE span_id = 'xyz'", "line 1, column 37: span_id takes 16 hex digits, found 'xyz'"),
            ("SELECT * FROM spans WHERE parent_span_id IN ('00f067aa0ba902b7', 'x')", "line 1, column 66: parent_span_id takes 16 hex digits, found 'x'"),
            ("SELECT * FROM spans WHERE start > 'yesterday'", "line 1, column 35: invalid RFC 3339 timestamp 'yesterday': expected a four-digit year"),
            ("SELECT * FROM spans WHERE end < '2026-11-26T13:00:00'", "line 1, column 33: invalid RFC 3339 timestamp '2026-11-26T13:00:00': expected a time zone offset such as Z or +02:00"),
            ("SELECT * FROM spans WHERE start > 1.5", "line 1, column 35: start is a timestamp, found number 1.5"),
            ("SELECT * FROM spans WHERE x = -5ms", "line 1, column 31: a duration can't be negative"),
        ];
        for (text, expected) in cases {
            assert_eq!(error(text), expected, "{text}");
        }
    }

    #[test]
    fn operators_and_null() {
        let cases = [
            (
                "SELECT * FROM spans WHERE kind < 'server'",
                "line 1, column 32: kind compares only with =, !=, IN and NOT IN, found '<'",
            ),
            (
                "SELECT * FROM spans WHERE status >= 'ok'",
                "line 1, column 34: status compares only with =, !=, IN and NOT IN, found '>='",
            ),
            (
                "SELECT * FROM spans WHERE trace_id > 'a'",
                "line 1, column 36: trace_id compares only with =, !=, IN and NOT IN, found '>'",
            ),
            ("SELECT * FROM spans WHERE x > true", "line 1, column 29: true compares only with = and !=, found '>'"),
            (
                "SELECT * FROM spans WHERE false <= x",
                "line 1, column 33: false compares only with = and !=, found '>='",
            ),
            (
                "SELECT * FROM spans WHERE name = NULL",
                "line 1, column 34: NULL never compares with anything (use name IS NULL)",
            ),
            (
                "SELECT * FROM spans WHERE x != NULL",
                "line 1, column 32: NULL never compares with anything (use x IS NOT NULL)",
            ),
            (
                "SELECT * FROM spans WHERE x < NULL",
                "line 1, column 31: NULL never compares with anything (use x IS NULL or x IS NOT NULL)",
            ),
            (
                "SELECT * FROM spans WHERE NULL = x",
                "line 1, column 27: NULL never compares with anything (use x IS NULL)",
            ),
            (
                "SELECT * FROM spans WHERE x IN (1, NULL)",
                "line 1, column 36: NULL never matches in IN (...) (use x IS NULL)",
            ),
            (
                "SELECT * FROM spans WHERE name LIKE 5",
                "line 1, column 37: LIKE needs a string pattern such as '%timeout%', found number 5",
            ),
            (
                "SELECT * FROM spans WHERE duration LIKE '5'",
                "line 1, column 27: LIKE needs a string field, duration is a duration",
            ),
            (
                "SELECT * FROM spans WHERE kind NOT LIKE 's%'",
                "line 1, column 27: LIKE needs a string field, kind is a span kind",
            ),
            (
                "SELECT * FROM spans WHERE x LIKE 'abc\\'",
                "line 1, column 34: the LIKE pattern ends with a lone '\\' (write '\\\\' for a backslash)",
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(error(text), expected, "{text}");
        }
    }

    #[test]
    fn aggregate_arguments() {
        let cases = [
            ("SELECT sum(name) FROM spans", "line 1, column 12: sum needs a number or a duration, name is a string (count(name) and uniq(name) take any field)"),
            ("SELECT avg(start) FROM spans", "line 1, column 12: avg needs a number or a duration, start is a timestamp (count(start) and uniq(start) take any field)"),
            ("SELECT min(kind) FROM spans", "line 1, column 12: min needs a number, a duration or a timestamp, kind is a span kind (count(kind) and uniq(kind) take any field)"),
            ("SELECT percentile(trace_id, 50) FROM spans", "line 1, column 19: percentile needs a number or a duration, trace_id is a trace id (count(trace_id) and uniq(trace_id) take any field)"),
            ("SELECT histogram(status, 5) FROM spans", "line 1, column 18: histogram needs a number or a duration, status is a status (count(status) and uniq(status) take any field)"),
            ("SELECT percentile(duration, 101) FROM spans", "line 1, column 29: a percentile is between 0 and 100, found 101"),
            ("SELECT percentile(duration, 50, -0.5) FROM spans", "line 1, column 33: a percentile is between 0 and 100, found -0.5"),
            ("SELECT percentile(duration, 'a') FROM spans", "line 1, column 29: percentile takes numbers from 0 to 100, found string 'a'"),
            ("SELECT percentile(duration, 5ms) FROM spans", "line 1, column 29: percentile takes numbers from 0 to 100, found duration 5ms"),
            ("SELECT histogram(duration, 5) FROM spans", "line 1, column 28: the ceiling of a histogram of duration is a duration such as 1s, found number 5"),
            ("SELECT histogram(duration, 0ns) FROM spans", "line 1, column 28: a histogram ceiling must be above zero, found 0ns"),
            ("SELECT histogram(x, 0) FROM spans", "line 1, column 21: a histogram ceiling must be above zero, found 0"),
            ("SELECT histogram(x, -2.5) FROM spans", "line 1, column 21: a histogram ceiling must be above zero, found -2.5"),
            ("SELECT histogram(x, 'a') FROM spans", "line 1, column 21: expected a histogram ceiling such as 1s or 100, found string 'a'"),
            ("SELECT histogram(duration, 1s, 0) FROM spans", "line 1, column 32: a histogram has 1 to 1000 buckets, found number 0"),
            ("SELECT histogram(duration, 1s, 1001) FROM spans", "line 1, column 32: a histogram has 1 to 1000 buckets, found number 1001"),
            ("SELECT histogram(duration, 1s, 2.5) FROM spans", "line 1, column 32: a histogram has 1 to 1000 buckets, found number 2.5"),
            ("SELECT rate(avg(duration), 1 minute) FROM spans", "line 1, column 13: rate takes count(...) or sum(...), found avg(...)"),
            ("SELECT rate(filter(uniq(x), WHERE y = 1), 1 minute) FROM spans", "line 1, column 13: rate takes count(...) or sum(...), found uniq(...)"),
            ("SELECT rate(count(*), 0 seconds) FROM spans", "line 1, column 23: the interval of rate(...) must be longer than zero"),
            ("SELECT count(*) FROM spans TIMESERIES 0m", "line 1, column 39: a TIMESERIES interval must be longer than zero"),
            ("SELECT count(*) FROM spans TIMESERIES 1e-10 seconds", "line 1, column 39: interval 1e-10 seconds is not a whole number of nanoseconds"),
            ("SELECT count(*) FROM spans TIMESERIES 1e30 days", "line 1, column 39: interval 1e30 days is too long (at most about 584 years)"),
        ];
        for (text, expected) in cases {
            assert_eq!(error(text), expected, "{text}");
        }
    }

    #[test]
    fn whole_query_checks() {
        let cases = [
            ("SELECT name, count(*) FROM spans", "line 1, column 8: name isn't a FACET field, and a query with aggregates selects only aggregates and FACET fields (add FACET name, or aggregate it, such as uniq(name))"),
            ("SELECT count(*), http.route FROM spans FACET name", "line 1, column 18: http.route isn't a FACET field, and a query with aggregates selects only aggregates and FACET fields (add FACET http.route, or aggregate it, such as uniq(http.route))"),
            ("SELECT * FROM spans FACET name", "line 1, column 21: FACET needs an aggregate in SELECT, such as SELECT count(*)"),
            ("SELECT name FROM spans FACET name", "line 1, column 24: FACET needs an aggregate in SELECT, such as SELECT count(*)"),
            ("SELECT * FROM spans TIMESERIES", "line 1, column 21: TIMESERIES needs an aggregate in SELECT, such as SELECT count(*)"),
            ("SELECT count(*) FROM spans FACET name, kind, name", "line 1, column 46: name appears twice in FACET"),
            ("SELECT count(*) AS a, sum(x) AS a FROM spans", "line 1, column 23: two SELECT items are named 'a'"),
            ("SELECT 1 + 2 FROM spans", "line 1, column 8: a SELECT item needs an aggregate such as count(*), or a field, not just numbers"),
            ("SELECT count(*) + duration FROM spans", "line 1, column 19: arithmetic combines aggregates and numbers, and duration is a field (aggregate it, such as max(duration))"),
            ("SELECT -name FROM spans", "line 1, column 9: arithmetic combines aggregates and numbers, and name is a field (aggregate it, such as max(name))"),
            ("SELECT percentile(duration, 50, 99) / 2 FROM spans", "line 1, column 8: arithmetic needs aggregates with one value, and percentile(duration, 50, 99) isn't one (give it a SELECT item of its own)"),
            ("SELECT count(*), histogram(duration, 1s) + 1 FROM spans", "line 1, column 18: arithmetic needs aggregates with one value, and histogram(duration, 1s, 40) isn't one (give it a SELECT item of its own)"),
            ("SELECT count(*) FROM spans FACET name ORDER BY duration", "line 1, column 48: duration isn't a FACET field, and a query with aggregates is ordered by an aggregate or a FACET field"),
            ("SELECT * FROM spans ORDER BY count(*)", "line 1, column 30: ORDER BY count(*) needs aggregates in SELECT (or order by a field)"),
            ("SELECT count(*) FROM spans ORDER BY percentile(duration, 50, 90)", "line 1, column 37: ORDER BY needs an aggregate with one value, and percentile(duration, 50, 90) isn't one"),
            ("SELECT count(*) FROM spans FACET name ORDER BY 'nope'", "line 1, column 48: no SELECT item is named 'nope'"),
            ("SELECT count(*) FROM spans FACET name ORDER BY 1", "line 1, column 48: ORDER BY takes a field, an aggregate or an alias, not a number"),
            ("SELECT count(*) FROM spans SINCE 1 hour ago UNTIL 2 hours ago", "line 1, column 51: UNTIL 2 hours ago is not after SINCE 1 hour ago"),
            ("SELECT count(*) FROM spans SINCE now UNTIL now", "line 1, column 44: UNTIL now is not after SINCE now"),
            ("SELECT count(*) FROM spans UNTIL '2026-01-01' SINCE '2026-01-02'", "line 1, column 34: UNTIL '2026-01-01T00:00:00Z' is not after SINCE '2026-01-02T00:00:00Z'"),
            ("SELECT count(*) FROM spans SINCE 1795698000000000000 UNTIL '2026-11-26T13:00:00Z'", "line 1, column 60: UNTIL '2026-11-26T13:00:00Z' is not after SINCE 1795698000000000000"),
            ("SELECT count(*) FROM spans SINCE 1700000000", "line 1, column 34: SINCE takes epoch nanoseconds, and 1700000000 looks like seconds (did you mean 1700000000000000000?)"),
            ("SELECT count(*) FROM spans UNTIL 1700000000000", "line 1, column 34: UNTIL takes epoch nanoseconds, and 1700000000000 looks like milliseconds (did you mean 1700000000000000000?)"),
            ("SELECT count(*) FROM spans SINCE 1700000000000000", "line 1, column 34: SINCE takes epoch nanoseconds, and 1700000000000000 looks like microseconds (did you mean 1700000000000000000?)"),
            ("SELECT count(*) FROM spans SINCE '1 hour ago'", "line 1, column 34: invalid RFC 3339 timestamp '1 hour ago': expected a four-digit year (write SINCE 1 hour ago without quotes)"),
            ("SELECT count(*) FROM spans LIMIT 1.5", "line 1, column 34: LIMIT takes a whole number, found 1.5"),
            ("TRACE 'abc'", "line 1, column 7: a trace id is 32 hex digits or an X-Ray id, found 'abc'"),
            ("TRACE '1-5759E988-bd862e3fe1be46a994272793'", "line 1, column 7: a trace id is 32 hex digits or an X-Ray id, found '1-5759E988-bd862e3fe1be46a994272793'"),
        ];
        for (text, expected) in cases {
            assert_eq!(error(text), expected, "{text}");
        }
    }

    #[test]
    fn accepted_mixes() {
        for text in [
            "SELECT name, count(*) FROM spans FACET name",
            "SELECT count(*), name FROM spans FACET name, kind ORDER BY kind, count(*) DESC",
            "SELECT count(*) AS n FROM spans FACET name ORDER BY n DESC",
            "SELECT count(*) FROM spans ORDER BY avg(duration) DESC",
            "SELECT percentile(duration, 50, 99), histogram(duration, 1s) FROM spans",
            "SELECT count(*) FROM spans SINCE 2 hours ago UNTIL 1 hour ago",
            "SELECT count(*) FROM spans SINCE '2026-01-01' UNTIL 1 hour ago",
            "SELECT count(*) FROM spans SINCE 999999999 UNTIL 100000000000000000",
            "SELECT * FROM spans WHERE x = true AND y != false AND unknown.attribute IS NULL",
        ] {
            if let Err(error) = parse(text) {
                panic!("{text}: {error}");
            }
        }
    }
}
