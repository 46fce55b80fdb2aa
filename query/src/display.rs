//! `Display` for the AST: canonical SpanQL that parses back to an equal tree.
//!
//! Canonical means: uppercase keywords, lowercase functions, `FROM spans`, clauses in
//! the order WHERE, FACET, SINCE, UNTIL, TIMESERIES, ORDER BY, LIMIT, parentheses only
//! where precedence needs them, durations in the largest exact unit (`1500ms`),
//! intervals in words (`5 minutes`), timestamps in UTC, and names backquoted only when
//! they would otherwise read as something else.
#![deny(clippy::unwrap_used, clippy::indexing_slicing)]

use std::fmt::{self, Display, Formatter};

use crate::ast::{
    Aggregate, AggregateExpr, ArithOp, CompareOp, Expr, Field, Intrinsic, Limit, Literal, OrderBy, OrderKey, Query,
    Scope, SelectItem, Statement, TimeBound, Timeseries,
};
use crate::parser::is_reserved;
use crate::time::format_rfc3339;

impl Display for Statement {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            Statement::Select(query) => query.fmt(f),
            Statement::Trace(trace_id) => write!(f, "TRACE '{trace_id}'"),
            Statement::Explain(statement) => write!(f, "EXPLAIN {statement}"),
        }
    }
}

impl Display for Query {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        f.write_str("SELECT ")?;
        write_list(f, &self.select)?;
        f.write_str(" FROM spans")?;
        if let Some(filter) = &self.filter {
            write!(f, " WHERE {filter}")?;
        }
        if !self.facets.is_empty() {
            f.write_str(" FACET ")?;
            write_list(f, &self.facets)?;
        }
        if let Some(since) = &self.since {
            write!(f, " SINCE {since}")?;
        }
        if let Some(until) = &self.until {
            write!(f, " UNTIL {until}")?;
        }
        if let Some(timeseries) = &self.timeseries {
            write!(f, " TIMESERIES {timeseries}")?;
        }
        if !self.order_by.is_empty() {
            f.write_str(" ORDER BY ")?;
            write_list(f, &self.order_by)?;
        }
        if let Some(limit) = &self.limit {
            write!(f, " LIMIT {limit}")?;
        }
        Ok(())
    }
}

fn write_list<T: Display>(f: &mut Formatter<'_>, items: &[T]) -> fmt::Result {
    for (index, item) in items.iter().enumerate() {
        if index > 0 {
            f.write_str(", ")?;
        }
        item.fmt(f)?;
    }
    Ok(())
}

impl Display for SelectItem {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            SelectItem::Star => f.write_str("*"),
            SelectItem::Field(field) => field.fmt(f),
            SelectItem::Aggregate { expr, alias } => {
                expr.fmt(f)?;
                if let Some(alias) = alias {
                    f.write_str(" AS ")?;
                    if is_plain_word(alias) && !alias.contains('.') && !is_reserved(alias) {
                        f.write_str(alias)?;
                    } else {
                        write_string(f, alias)?;
                    }
                }
                Ok(())
            }
        }
    }
}

impl Display for ArithOp {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Binding strength of an operator: 1 for `+ -`, 2 for `* /`.
fn op_precedence(op: ArithOp) -> u8 {
    match op {
        ArithOp::Add | ArithOp::Sub => 1,
        ArithOp::Mul | ArithOp::Div => 2,
    }
}

/// Binding strength of an expression: its operator's, or 3 for an operand.
fn precedence(expr: &AggregateExpr) -> u8 {
    match expr {
        AggregateExpr::Binary { op, .. } => op_precedence(*op),
        _ => 3,
    }
}

impl Display for AggregateExpr {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            AggregateExpr::Aggregate(aggregate) => aggregate.fmt(f),
            AggregateExpr::Number(value) => write_number(f, *value),
            // `-(5)`, not `-5`, which would read back as the number -5.
            AggregateExpr::Neg(inner) => match inner.as_ref() {
                AggregateExpr::Aggregate(aggregate) => write!(f, "-{aggregate}"),
                other => write!(f, "-({other})"),
            },
            AggregateExpr::Binary { op, left, right } => {
                // Left-associative: a right operand of equal precedence needs parentheses.
                if precedence(left) < op_precedence(*op) {
                    write!(f, "({left})")?;
                } else {
                    left.fmt(f)?;
                }
                write!(f, " {op} ")?;
                if precedence(right) <= op_precedence(*op) {
                    write!(f, "({right})")
                } else {
                    right.fmt(f)
                }
            }
        }
    }
}

impl Display for Aggregate {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        let name = self.function_name();
        match self {
            Aggregate::Count(None) => f.write_str("count(*)"),
            Aggregate::Count(Some(field))
            | Aggregate::Sum(field)
            | Aggregate::Avg(field)
            | Aggregate::Min(field)
            | Aggregate::Max(field)
            | Aggregate::Uniq(field) => write!(f, "{name}({field})"),
            Aggregate::Percentile { field, percentiles } => {
                write!(f, "{name}({field}")?;
                for percentile in percentiles {
                    f.write_str(", ")?;
                    write_number(f, *percentile)?;
                }
                f.write_str(")")
            }
            Aggregate::Histogram { field, ceiling, bucket_count } => {
                write!(f, "{name}({field}, {ceiling}, {bucket_count})")
            }
            Aggregate::Rate { aggregate, per_ns } => {
                write!(f, "{name}({aggregate}, ")?;
                write_interval(f, *per_ns)?;
                f.write_str(")")
            }
            Aggregate::Filter { aggregate, filter } => write!(f, "{name}({aggregate}, WHERE {filter})"),
        }
    }
}

impl Display for Field {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            Field::Intrinsic(intrinsic) => intrinsic.fmt(f),
            Field::Attribute { scope: Some(scope), key } => {
                write!(f, "{scope}.")?;
                // After a scope, a key may start with a digit and may be a keyword.
                if !key.is_empty()
                    && key.split('.').all(|segment| !segment.is_empty() && segment.bytes().all(is_word_byte))
                {
                    f.write_str(key)
                } else {
                    write_backquoted(f, key)
                }
            }
            Field::Attribute { scope: None, key } => {
                let plain = is_plain_word(key)
                    && !is_reserved(key)
                    && Intrinsic::from_name(key).is_none()
                    && !key.starts_with("span.")
                    && !key.starts_with("resource.");
                if plain {
                    f.write_str(key)
                } else {
                    write_backquoted(f, key)
                }
            }
        }
    }
}

impl Display for Intrinsic {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Display for Scope {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

fn is_word_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || byte == b'_'
}

/// A name the lexer reads as one word: `[A-Za-z_][A-Za-z0-9_]*` in dot-separated segments.
fn is_plain_word(text: &str) -> bool {
    text.bytes().next().is_some_and(|first| first.is_ascii_alphabetic() || first == b'_')
        && text.split('.').all(|segment| !segment.is_empty() && segment.bytes().all(is_word_byte))
}

fn write_backquoted(f: &mut Formatter<'_>, name: &str) -> fmt::Result {
    write!(f, "`{}`", name.replace('`', "``"))
}

fn write_string(f: &mut Formatter<'_>, text: &str) -> fmt::Result {
    write!(f, "'{}'", text.replace('\'', "''"))
}

/// A float as SpanQL reads it back exactly: whole numbers without a fraction, others
/// in Rust's shortest round-trip form (`0.1`, `1e300`).
fn write_number(f: &mut Formatter<'_>, value: f64) -> fmt::Result {
    if value.fract() == 0.0 && value.abs() < 1e15 {
        write!(f, "{}", value as i64)
    } else {
        write!(f, "{value:?}")
    }
}

const DURATION_UNITS: [(&str, u64); 7] = [
    ("d", 86_400_000_000_000),
    ("h", 3_600_000_000_000),
    ("m", 60_000_000_000),
    ("s", 1_000_000_000),
    ("ms", 1_000_000),
    ("us", 1_000),
    ("ns", 1),
];

/// A duration literal in the largest unit that divides it: `1500ms`, `2m`, `0ns`.
fn write_duration(f: &mut Formatter<'_>, nanos: u64) -> fmt::Result {
    for (unit, unit_nanos) in DURATION_UNITS {
        if nanos != 0 && nanos.is_multiple_of(unit_nanos) {
            return write!(f, "{}{unit}", nanos / unit_nanos);
        }
    }
    write!(f, "{nanos}ns")
}

const INTERVAL_WORDS: [(&str, u64); 4] =
    [("day", 86_400_000_000_000), ("hour", 3_600_000_000_000), ("minute", 60_000_000_000), ("second", 1_000_000_000)];

/// An interval in words where a whole number of seconds or more (`5 minutes`,
/// `1 hour`), else as a duration (`250ms`).
fn write_interval(f: &mut Formatter<'_>, nanos: u64) -> fmt::Result {
    for (word, unit_nanos) in INTERVAL_WORDS {
        if nanos != 0 && nanos.is_multiple_of(unit_nanos) {
            let count = nanos / unit_nanos;
            let plural = if count == 1 { "" } else { "s" };
            return write!(f, "{count} {word}{plural}");
        }
    }
    write_duration(f, nanos)
}

impl Display for Expr {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            Expr::Compare { field, op, value } => write!(f, "{field} {op} {value}"),
            Expr::In { field, values, negated } => {
                let not = if *negated { "NOT " } else { "" };
                write!(f, "{field} {not}IN (")?;
                write_list(f, values)?;
                f.write_str(")")
            }
            Expr::Like { field, pattern, negated } => {
                let not = if *negated { "NOT " } else { "" };
                write!(f, "{field} {not}LIKE ")?;
                write_string(f, pattern)
            }
            Expr::IsNull { field, negated } => {
                let not = if *negated { "NOT " } else { "" };
                write!(f, "{field} IS {not}NULL")
            }
            Expr::Not(inner) => match inner.as_ref() {
                Expr::And(_) | Expr::Or(_) => write!(f, "NOT ({inner})"),
                _ => write!(f, "NOT {inner}"),
            },
            Expr::And(operands) => {
                write_junction(f, operands, " AND ", |operand| matches!(operand, Expr::And(_) | Expr::Or(_)))
            }
            Expr::Or(operands) => write_junction(f, operands, " OR ", |operand| matches!(operand, Expr::Or(_))),
        }
    }
}

/// Operands of AND or OR; a nested junction of the same kind keeps its parentheses
/// so that it reads back as the same tree rather than one flat list.
fn write_junction(
    f: &mut Formatter<'_>,
    operands: &[Expr],
    separator: &str,
    needs_parentheses: impl Fn(&Expr) -> bool,
) -> fmt::Result {
    for (index, operand) in operands.iter().enumerate() {
        if index > 0 {
            f.write_str(separator)?;
        }
        if needs_parentheses(operand) {
            write!(f, "({operand})")?;
        } else {
            operand.fmt(f)?;
        }
    }
    Ok(())
}

impl Display for CompareOp {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Display for Literal {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            Literal::String(text) => write_string(f, text),
            Literal::Int(value) => write!(f, "{value}"),
            // Debug always shows a '.' or an exponent, so the value reads back as a float.
            Literal::Float(value) => write!(f, "{value:?}"),
            Literal::Bool(value) => write!(f, "{value}"),
            Literal::Duration(nanos) => write_duration(f, *nanos),
            Literal::Timestamp(nanos) => write!(f, "'{}'", format_rfc3339(*nanos)),
            Literal::Kind(kind) => write!(f, "'{}'", kind.as_str()),
            Literal::Status(status) => write!(f, "'{}'", status.as_str()),
            Literal::TraceId(trace_id) => write!(f, "'{trace_id}'"),
            Literal::SpanId(span_id) => write!(f, "'{span_id}'"),
        }
    }
}

impl Display for TimeBound {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            TimeBound::Rfc3339(nanos) => write!(f, "'{}'", format_rfc3339(*nanos)),
            TimeBound::EpochNanos(nanos) => write!(f, "{nanos}"),
            TimeBound::Ago(0) => f.write_str("now"),
            TimeBound::Ago(nanos) => {
                write_interval(f, *nanos)?;
                f.write_str(" ago")
            }
        }
    }
}

impl Display for Timeseries {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            Timeseries::Auto => f.write_str("AUTO"),
            Timeseries::Interval(nanos) => write_interval(f, *nanos),
        }
    }
}

impl Display for OrderBy {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match &self.key {
            OrderKey::Field(field) => field.fmt(f)?,
            OrderKey::Aggregate(expr) => expr.fmt(f)?,
        }
        if self.descending {
            f.write_str(" DESC")?;
        }
        Ok(())
    }
}

impl Display for OrderKey {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            OrderKey::Field(field) => field.fmt(f),
            OrderKey::Aggregate(expr) => expr.fmt(f),
        }
    }
}

impl Display for Limit {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            Limit::N(count) => write!(f, "{count}"),
            Limit::Max => f.write_str("MAX"),
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use spanstore_engine::{SpanId, SpanKind, StatusCode, TraceId};

    use crate::ast::{
        Aggregate, AggregateExpr, ArithOp, CompareOp, Expr, Field, FieldType, Intrinsic, Limit, Literal, OrderBy,
        OrderKey, Query, Scope, SelectItem, Statement, TimeBound, Timeseries,
    };
    use crate::parse;

    #[test]
    fn names_are_backquoted_only_when_needed() {
        let cases = [
            (Field::attribute("http.route"), "http.route"),
            (Field::attribute("_x.2xx"), "_x.2xx"),
            (Field::attribute("name"), "`name`"),
            (Field::attribute("select"), "`select`"),
            (Field::attribute("NULL"), "`NULL`"),
            (Field::attribute("span.x"), "`span.x`"),
            (Field::attribute("resource.x"), "`resource.x`"),
            (Field::attribute("span"), "span"),
            (Field::attribute("my-attr"), "`my-attr`"),
            (Field::attribute("2xx"), "`2xx`"),
            (Field::attribute("a..b"), "`a..b`"),
            (Field::attribute("a`b"), "`a``b`"),
            (Field::attribute("caf\u{e9}"), "`caf\u{e9}`"),
            (Field::Attribute { scope: Some(Scope::Span), key: "2xx.select".into() }, "span.2xx.select"),
            (Field::Attribute { scope: Some(Scope::Resource), key: "odd name".into() }, "resource.`odd name`"),
            (Field::Intrinsic(Intrinsic::ParentSpanId), "parent_span_id"),
        ];
        for (field, expected) in cases {
            assert_eq!(field.to_string(), expected);
        }
    }

    #[test]
    fn numbers_durations_and_intervals() {
        let number = |value: f64| AggregateExpr::Number(value).to_string();
        assert_eq!(number(100.0), "100");
        assert_eq!(number(-0.0), "0");
        assert_eq!(number(0.1), "0.1");
        assert_eq!(number(1e15), "1000000000000000.0");
        assert_eq!(number(1e300), "1e300");
        assert_eq!(number(-2.5), "-2.5");
        assert_eq!(Literal::Float(1.0).to_string(), "1.0");
        assert_eq!(Literal::Float(1e-7).to_string(), "1e-7");
        assert_eq!(Literal::Duration(0).to_string(), "0ns");
        assert_eq!(Literal::Duration(1_500_000_000).to_string(), "1500ms");
        assert_eq!(Literal::Duration(86_400_000_000_000).to_string(), "1d");
        assert_eq!(Literal::Duration(u64::MAX).to_string(), "18446744073709551615ns");
        assert_eq!(TimeBound::Ago(0).to_string(), "now");
        assert_eq!(TimeBound::Ago(60_000_000_000).to_string(), "1 minute ago");
        assert_eq!(TimeBound::Ago(7_200_000_000_000).to_string(), "2 hours ago");
        assert_eq!(TimeBound::Ago(1_500_000_000).to_string(), "1500ms ago");
        assert_eq!(Timeseries::Interval(86_400_000_000_000).to_string(), "1 day");
        assert_eq!(Timeseries::Auto.to_string(), "AUTO");
        assert_eq!(TimeBound::Rfc3339(0).to_string(), "'1970-01-01T00:00:00Z'");
        assert_eq!(Limit::Max.to_string(), "MAX");
    }

    #[test]
    fn column_names() {
        let statement = parse(
            "SELECT count(*), percentile(duration, 95) AS p95, filter(count(*), WHERE x = 'a') / count(*) \
             FROM spans",
        );
        let Ok(Statement::Select(query)) = statement else {
            panic!("{statement:?}");
        };
        let names: Vec<String> = query.select.iter().map(SelectItem::column_name).collect();
        assert_eq!(names, vec!["count(*)", "p95", "filter(count(*), WHERE x = 'a') / count(*)"]);
        assert_eq!(SelectItem::Star.column_name(), "*");
    }

    // ---- generated trees: display, parse, compare ----

    fn key() -> impl Strategy<Value = String> {
        prop_oneof![
            4 => "[a-z_][a-z0-9_]{0,6}(\\.[a-z0-9_]{1,5}){0,2}",
            1 => prop::sample::select(vec![
                "select", "NULL", "true", "name", "duration", "span.x", "resource.y.z", "span", "count",
                "max", "ago", "desc", "auto", "spans", "minutes",
            ])
            .prop_map(str::to_string),
            1 => "[ -~\u{e9}\u{2603}]{1,8}",
        ]
        .prop_filter("keys that are aliases", |key| !key.starts_with("alias_"))
    }

    fn field() -> impl Strategy<Value = Field> {
        prop_oneof![
            prop::sample::select(Intrinsic::ALL.to_vec()).prop_map(Field::Intrinsic),
            (prop::option::of(prop_oneof![Just(Scope::Span), Just(Scope::Resource)]), key())
                .prop_map(|(scope, key)| Field::Attribute { scope, key }),
        ]
    }

    fn numeric_field() -> impl Strategy<Value = Field> {
        prop_oneof![Just(Field::Intrinsic(Intrinsic::Duration)), key().prop_map(Field::attribute),]
    }

    fn finite() -> impl Strategy<Value = f64> {
        prop_oneof![
            any::<f64>().prop_filter("finite", |value| value.is_finite()),
            (-1000i32..1000).prop_map(f64::from),
            Just(-0.0),
        ]
    }

    /// A literal of the type the parser gives a literal compared with `field`.
    fn literal(field: &Field, equality: bool) -> BoxedStrategy<Literal> {
        match field.field_type() {
            FieldType::String => any::<String>().prop_map(Literal::String).boxed(),
            FieldType::TraceId => any::<[u8; 16]>().prop_map(|bytes| Literal::TraceId(TraceId(bytes))).boxed(),
            FieldType::SpanId => any::<[u8; 8]>().prop_map(|bytes| Literal::SpanId(SpanId(bytes))).boxed(),
            FieldType::Kind => prop::sample::select(SpanKind::ALL.to_vec()).prop_map(Literal::Kind).boxed(),
            FieldType::Status => prop::sample::select(StatusCode::ALL.to_vec()).prop_map(Literal::Status).boxed(),
            FieldType::Timestamp => any::<i64>().prop_map(Literal::Timestamp).boxed(),
            FieldType::Duration => any::<u64>().prop_map(Literal::Duration).boxed(),
            FieldType::Any if equality => prop_oneof![
                "\\PC{0,10}".prop_map(Literal::String),
                any::<i64>().prop_map(Literal::Int),
                finite().prop_map(Literal::Float),
                any::<bool>().prop_map(Literal::Bool),
                any::<u64>().prop_map(Literal::Duration),
            ]
            .boxed(),
            FieldType::Any => prop_oneof![
                "\\PC{0,10}".prop_map(Literal::String),
                any::<i64>().prop_map(Literal::Int),
                finite().prop_map(Literal::Float),
                any::<u64>().prop_map(Literal::Duration),
            ]
            .boxed(),
        }
    }

    fn compare_op(field: &Field) -> BoxedStrategy<CompareOp> {
        let equality_only =
            matches!(field.field_type(), FieldType::Kind | FieldType::Status | FieldType::TraceId | FieldType::SpanId);
        if equality_only {
            prop::sample::select(vec![CompareOp::Eq, CompareOp::Ne]).boxed()
        } else {
            prop::sample::select(vec![
                CompareOp::Eq,
                CompareOp::Ne,
                CompareOp::Lt,
                CompareOp::Le,
                CompareOp::Gt,
                CompareOp::Ge,
            ])
            .boxed()
        }
    }

    fn predicate() -> impl Strategy<Value = Expr> {
        let compare = field().prop_flat_map(|field| {
            compare_op(&field).prop_flat_map(move |op| {
                let field = field.clone();
                literal(&field, op.is_equality()).prop_map(move |value| Expr::Compare {
                    field: field.clone(),
                    op,
                    value,
                })
            })
        });
        let in_list = (field(), any::<bool>()).prop_flat_map(|(field, negated)| {
            prop::collection::vec(literal(&field, true), 1..4).prop_map(move |values| Expr::In {
                field: field.clone(),
                values,
                negated,
            })
        });
        let string_field = prop_oneof![
            prop::sample::select(vec![Intrinsic::Name, Intrinsic::Service, Intrinsic::StatusMessage])
                .prop_map(Field::Intrinsic),
            key().prop_map(Field::attribute),
        ];
        let like = (string_field, "[a-z%_\\\\' ]{0,8}", any::<bool>())
            .prop_filter("a complete escape", |(_, pattern, _)| {
                let trailing_backslashes = pattern.len() - pattern.trim_end_matches('\\').len();
                trailing_backslashes % 2 == 0
            })
            .prop_map(|(field, pattern, negated)| Expr::Like { field, pattern, negated });
        let is_null = (field(), any::<bool>()).prop_map(|(field, negated)| Expr::IsNull { field, negated });
        prop_oneof![3 => compare, 1 => in_list, 1 => like, 1 => is_null]
    }

    fn expr() -> impl Strategy<Value = Expr> {
        predicate().prop_recursive(3, 12, 3, |inner| {
            prop_oneof![
                inner.clone().prop_map(|expr| Expr::Not(Box::new(expr))),
                prop::collection::vec(inner.clone(), 2..4).prop_map(Expr::And),
                prop::collection::vec(inner, 2..4).prop_map(Expr::Or),
            ]
        })
    }

    fn interval() -> impl Strategy<Value = u64> {
        prop_oneof![
            1u64..=u64::MAX,
            (1u64..1000).prop_map(|count| count * 60_000_000_000),
            (1u64..100).prop_map(|count| count * 86_400_000_000_000),
            (1u64..1000).prop_map(|count| count * 1_000_000),
        ]
    }

    fn simple_aggregate() -> impl Strategy<Value = Aggregate> {
        prop_oneof![
            prop::option::of(field()).prop_map(Aggregate::Count),
            numeric_field().prop_map(Aggregate::Sum),
            numeric_field().prop_map(Aggregate::Avg),
            prop_oneof![numeric_field(), Just(Field::Intrinsic(Intrinsic::Start))].prop_map(Aggregate::Min),
            prop_oneof![numeric_field(), Just(Field::Intrinsic(Intrinsic::End))].prop_map(Aggregate::Max),
            field().prop_map(Aggregate::Uniq),
            (numeric_field(), prop::collection::vec(prop_oneof![0.0..=100.0, (0u8..=100).prop_map(f64::from)], 1..4))
                .prop_map(|(field, percentiles)| Aggregate::Percentile { field, percentiles }),
            (numeric_field(), 1u32..=Aggregate::HISTOGRAM_BUCKETS_MAX).prop_flat_map(|(field, bucket_count)| {
                let ceiling = if field == Field::Intrinsic(Intrinsic::Duration) {
                    (1u64..=u64::MAX).prop_map(Literal::Duration).boxed()
                } else {
                    prop_oneof![
                        (1i64..=i64::MAX).prop_map(Literal::Int),
                        finite().prop_filter("positive", |value| *value > 0.0).prop_map(Literal::Float),
                        (1u64..=u64::MAX).prop_map(Literal::Duration),
                    ]
                    .boxed()
                };
                ceiling.prop_map(move |ceiling| Aggregate::Histogram { field: field.clone(), ceiling, bucket_count })
            }),
        ]
    }

    fn aggregate() -> impl Strategy<Value = Aggregate> {
        simple_aggregate().prop_recursive(2, 6, 1, |inner| {
            prop_oneof![
                (inner, expr())
                    .prop_map(|(aggregate, filter)| Aggregate::Filter { aggregate: Box::new(aggregate), filter }),
                (
                    prop_oneof![
                        prop::option::of(field()).prop_map(Aggregate::Count),
                        numeric_field().prop_map(Aggregate::Sum),
                    ],
                    prop::option::of(expr()),
                    interval()
                )
                    .prop_map(|(aggregate, filter, per_ns)| {
                        let aggregate = match filter {
                            Some(filter) => Aggregate::Filter { aggregate: Box::new(aggregate), filter },
                            None => aggregate,
                        };
                        Aggregate::Rate { aggregate: Box::new(aggregate), per_ns }
                    }),
            ]
        })
    }

    /// Arithmetic over single-valued aggregates and numbers, with at least one aggregate.
    fn arithmetic() -> impl Strategy<Value = AggregateExpr> {
        let leaf = prop_oneof![
            2 => aggregate().prop_filter("scalar", Aggregate::is_scalar).prop_map(AggregateExpr::Aggregate),
            1 => finite().prop_map(AggregateExpr::Number),
        ];
        leaf.prop_recursive(3, 8, 2, |inner| {
            prop_oneof![
                inner.clone().prop_map(|expr| AggregateExpr::Neg(Box::new(expr))),
                (
                    prop::sample::select(vec![ArithOp::Add, ArithOp::Sub, ArithOp::Mul, ArithOp::Div]),
                    inner.clone(),
                    inner
                )
                    .prop_map(|(op, left, right)| AggregateExpr::Binary {
                        op,
                        left: Box::new(left),
                        right: Box::new(right),
                    }),
            ]
        })
        .prop_filter("has an aggregate", AggregateExpr::has_aggregate)
    }

    fn aggregate_expr() -> impl Strategy<Value = AggregateExpr> {
        prop_oneof![aggregate().prop_map(AggregateExpr::Aggregate), arithmetic()]
    }

    fn alias() -> impl Strategy<Value = Option<String>> {
        prop::option::of(prop_oneof!["alias_[a-z0-9_]{0,5}", "alias_[ -~\u{e9}]{0,6}",])
    }

    fn time_bound() -> impl Strategy<Value = TimeBound> {
        prop_oneof![
            any::<i64>().prop_map(TimeBound::Rfc3339),
            prop_oneof![0u64..1_000_000_000, 100_000_000_000_000_000u64..=u64::MAX].prop_map(TimeBound::EpochNanos),
            prop_oneof![Just(0u64), interval()].prop_map(TimeBound::Ago),
        ]
    }

    /// Drops `until` when it isn't after `since`, as the checker requires.
    fn ordered(since: Option<TimeBound>, until: Option<TimeBound>) -> (Option<TimeBound>, Option<TimeBound>) {
        let absolute = |bound: TimeBound| match bound {
            TimeBound::Rfc3339(nanos) => Some(i128::from(nanos)),
            TimeBound::EpochNanos(nanos) => Some(i128::from(nanos)),
            TimeBound::Ago(_) => None,
        };
        let inverted = match (since, until) {
            (Some(TimeBound::Ago(since)), Some(TimeBound::Ago(until))) => since <= until,
            (Some(since), Some(until)) => match (absolute(since), absolute(until)) {
                (Some(since), Some(until)) => since >= until,
                _ => false,
            },
            _ => false,
        };
        (since, if inverted { None } else { until })
    }

    fn limit() -> impl Strategy<Value = Option<Limit>> {
        prop::option::of(prop_oneof![any::<u64>().prop_map(Limit::N), Just(Limit::Max)])
    }

    fn plain_query() -> impl Strategy<Value = Query> {
        let select = prop_oneof![
            Just(vec![SelectItem::Star]),
            prop::collection::vec(field().prop_map(SelectItem::Field), 1..4),
        ];
        let order_by = prop::collection::vec(
            (field(), any::<bool>())
                .prop_map(|(field, descending)| OrderBy { key: OrderKey::Field(field), descending }),
            0..3,
        );
        (
            select,
            prop::option::of(expr()),
            prop::option::of(time_bound()),
            prop::option::of(time_bound()),
            order_by,
            limit(),
        )
            .prop_map(|(select, filter, since, until, order_by, limit)| {
                let (since, until) = ordered(since, until);
                Query { select, filter, since, until, order_by, limit, ..Query::default() }
            })
    }

    fn aggregate_query() -> impl Strategy<Value = Query> {
        let facets = prop::collection::vec(field(), 0..3).prop_map(|mut fields| {
            let mut unique = Vec::new();
            for field in fields.drain(..) {
                if !unique.contains(&field) {
                    unique.push(field);
                }
            }
            unique
        });
        let items = prop::collection::vec((aggregate_expr(), alias()), 1..4);
        (
            items,
            facets,
            prop::collection::vec(any::<prop::sample::Index>(), 0..3),
            prop::option::of(expr()),
            prop::option::of(time_bound()),
            prop::option::of(time_bound()),
            prop::option::of(prop_oneof![Just(Timeseries::Auto), interval().prop_map(Timeseries::Interval)]),
            prop::collection::vec((any::<prop::sample::Index>(), arithmetic(), any::<bool>(), any::<bool>()), 0..3),
            limit(),
        )
            .prop_map(
                |(items, facets, selected_facets, filter, since, until, timeseries, order_keys, limit)| {
                    let mut select = Vec::new();
                    let mut aliases: Vec<String> = Vec::new();
                    for (expr, alias) in items {
                        let alias = alias.filter(|alias| !aliases.contains(alias));
                        if let Some(alias) = &alias {
                            aliases.push(alias.clone());
                        }
                        select.push(SelectItem::Aggregate { expr, alias });
                    }
                    if !facets.is_empty() {
                        for index in selected_facets {
                            select.insert(0, SelectItem::Field(index.get(&facets).clone()));
                        }
                    }
                    let order_by = order_keys
                        .into_iter()
                        .map(|(index, expr, by_facet, descending)| {
                            let key = if by_facet && !facets.is_empty() {
                                OrderKey::Field(index.get(&facets).clone())
                            } else {
                                OrderKey::Aggregate(expr)
                            };
                            OrderBy { key, descending }
                        })
                        .collect();
                    let (since, until) = ordered(since, until);
                    Query { select, filter, facets, since, until, timeseries, order_by, limit }
                },
            )
    }

    fn statement() -> impl Strategy<Value = Statement> {
        let leaf = prop_oneof![
            2 => plain_query().prop_map(Statement::Select),
            4 => aggregate_query().prop_map(Statement::Select),
            1 => any::<[u8; 16]>().prop_map(|bytes| Statement::Trace(TraceId(bytes))),
        ];
        prop_oneof![
            4 => leaf.clone(),
            1 => leaf.prop_map(|statement| Statement::Explain(Box::new(statement))),
        ]
    }

    #[test]
    fn display_then_parse_is_identity() {
        // Generating these nested trees takes more stack than a test thread has in an
        // unoptimized build, so the runner gets a thread of its own.
        let run = || {
            let config = proptest::test_runner::Config::with_cases(crate::parser::tests::cases(1000));
            let mut runner = proptest::test_runner::TestRunner::new(config);
            let result = runner.run(&statement(), |statement| {
                let printed = statement.to_string();
                let parsed = parse(&printed);
                prop_assert!(parsed.is_ok(), "{} fails: {:?}", printed, parsed);
                prop_assert_eq!(parsed.ok(), Some(statement), "{}", printed);
                Ok(())
            });
            result.map_err(|error| error.to_string())
        };
        let outcome = std::thread::Builder::new().stack_size(64 << 20).spawn(run).map(|thread| thread.join());
        match outcome {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(error))) => panic!("{error}"),
            Ok(Err(_)) => panic!("the round-trip thread panicked"),
            Err(error) => panic!("can't start the round-trip thread: {error}"),
        }
    }
}
