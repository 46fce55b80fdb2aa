//! The typed SpanQL syntax tree: what [`crate::parse`] returns and an executor plans from.
//!
//! Everything here is resolved as far as text alone allows: a field is already an
//! intrinsic or a scoped attribute, literals compared with intrinsics already have the
//! intrinsic's type (a `kind` literal is a [`SpanKind`], a `start` literal a timestamp in
//! nanoseconds), durations and intervals are nanoseconds, and time bounds are exact
//! except for `ago`, which [`TimeBound::resolve`] turns into a time given "now".
//!
//! The tree carries no source positions: the parser checks everything that needs one
//! before it returns. `Display` prints canonical SpanQL, and parsing that text gives
//! back an equal tree.
//!
//! **Invariants** (the parser guarantees them; code that builds a tree by hand must
//! keep them for `Display` to round-trip): [`Expr::And`] and [`Expr::Or`] hold at least
//! two operands; attribute keys aren't empty; floats are finite.

#![deny(clippy::unwrap_used, clippy::indexing_slicing)]

use spanstore_engine::{SpanId, SpanKind, StatusCode, TraceId};

/// One SpanQL statement.
#[derive(Clone, Debug, PartialEq)]
pub enum Statement {
    /// `SELECT ... FROM spans ...`
    Select(Query),
    /// `TRACE 'id'`: every span of one trace.
    Trace(TraceId),
    /// `EXPLAIN <statement>`: the plan instead of the results.
    Explain(Box<Statement>),
}

/// A `SELECT` query.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Query {
    /// The `SELECT` list, never empty. `*` only ever stands alone.
    pub select: Vec<SelectItem>,
    /// The `WHERE` predicate.
    pub filter: Option<Expr>,
    /// `FACET` fields, in order: the group-by key. Non-empty only when `select` holds
    /// an aggregate.
    pub facets: Vec<Field>,
    /// `SINCE`: the first instant included. `None` means from the beginning of time.
    pub since: Option<TimeBound>,
    /// `UNTIL`: the first instant excluded. `None` means up to now, and beyond.
    pub until: Option<TimeBound>,
    /// `TIMESERIES`: bucket the aggregates by time.
    pub timeseries: Option<Timeseries>,
    /// `ORDER BY` keys, most significant first.
    pub order_by: Vec<OrderBy>,
    /// `LIMIT`. With `FACET` and no `LIMIT`, an executor keeps the top
    /// [`Query::DEFAULT_FACET_LIMIT`] groups by the first aggregate.
    pub limit: Option<Limit>,
}

impl Query {
    /// How many FACET groups a query without `LIMIT` returns (NRQL's default).
    pub const DEFAULT_FACET_LIMIT: u64 = 10;

    /// True when the `SELECT` list holds an aggregate, so the query returns groups
    /// (one row without `FACET`) rather than spans.
    pub fn is_aggregate(&self) -> bool {
        self.select.iter().any(|item| matches!(item, SelectItem::Aggregate { .. }))
    }

    /// The `[since, until)` range in nanoseconds since the epoch, given the current time.
    /// `None` means unbounded on that side.
    pub fn time_range(&self, now_ns: i64) -> (Option<i64>, Option<i64>) {
        (self.since.map(|bound| bound.resolve(now_ns)), self.until.map(|bound| bound.resolve(now_ns)))
    }
}

/// One item of the `SELECT` list.
#[derive(Clone, Debug, PartialEq)]
pub enum SelectItem {
    /// `*`: every field of each span.
    Star,
    /// A plain field: a span's value, or in an aggregate query a FACET field's value.
    Field(Field),
    /// An aggregate, or arithmetic over aggregates and numbers, optionally named.
    Aggregate {
        /// The expression; it contains at least one aggregate.
        expr: AggregateExpr,
        /// The name given with `AS`.
        alias: Option<String>,
    },
}

impl SelectItem {
    /// The result column's name: the alias, else the item's canonical text
    /// (`count(*)`, `percentile(duration, 95)`, `http.route`).
    pub fn column_name(&self) -> String {
        match self {
            SelectItem::Star => "*".to_string(),
            SelectItem::Field(field) => field.to_string(),
            SelectItem::Aggregate { alias: Some(alias), .. } => alias.clone(),
            SelectItem::Aggregate { expr, alias: None } => expr.to_string(),
        }
    }
}

/// Arithmetic over aggregates and numbers: `filter(count(*), WHERE status = 'error') / count(*)`.
#[derive(Clone, Debug, PartialEq)]
pub enum AggregateExpr {
    /// One aggregate.
    Aggregate(Aggregate),
    /// A number. A duration literal here is its count of nanoseconds.
    Number(f64),
    /// `-x`.
    Neg(Box<AggregateExpr>),
    /// `left op right`.
    Binary {
        /// The operator.
        op: ArithOp,
        /// Left operand.
        left: Box<AggregateExpr>,
        /// Right operand.
        right: Box<AggregateExpr>,
    },
}

impl AggregateExpr {
    /// True if an aggregate occurs anywhere in the expression.
    pub fn has_aggregate(&self) -> bool {
        match self {
            AggregateExpr::Aggregate(_) => true,
            AggregateExpr::Number(_) => false,
            AggregateExpr::Neg(inner) => inner.has_aggregate(),
            AggregateExpr::Binary { left, right, .. } => left.has_aggregate() || right.has_aggregate(),
        }
    }

    /// Every aggregate in the expression, left to right: what an executor computes
    /// before it evaluates the arithmetic.
    pub fn aggregates(&self) -> Vec<&Aggregate> {
        let mut found = Vec::new();
        self.collect_aggregates(&mut found);
        found
    }

    fn collect_aggregates<'a>(&'a self, found: &mut Vec<&'a Aggregate>) {
        match self {
            AggregateExpr::Aggregate(aggregate) => found.push(aggregate),
            AggregateExpr::Number(_) => {}
            AggregateExpr::Neg(inner) => inner.collect_aggregates(found),
            AggregateExpr::Binary { left, right, .. } => {
                left.collect_aggregates(found);
                right.collect_aggregates(found);
            }
        }
    }

    /// How many result columns the expression gives: a bare `percentile` with several
    /// percentiles gives one per percentile; everything else gives one.
    pub fn column_count(&self) -> usize {
        match self {
            AggregateExpr::Aggregate(aggregate) => aggregate.column_count(),
            _ => 1,
        }
    }
}

/// An arithmetic operator between aggregates and numbers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ArithOp {
    /// `+`
    Add,
    /// `-`
    Sub,
    /// `*`
    Mul,
    /// `/` (division by zero gives null, not an error)
    Div,
}

impl ArithOp {
    /// The operator as written.
    pub fn as_str(self) -> &'static str {
        match self {
            ArithOp::Add => "+",
            ArithOp::Sub => "-",
            ArithOp::Mul => "*",
            ArithOp::Div => "/",
        }
    }
}

/// An aggregate function with its typed arguments.
#[derive(Clone, Debug, PartialEq)]
pub enum Aggregate {
    /// `count(*)` (`None`): matching spans; `count(f)`: spans where `f` isn't null.
    Count(Option<Field>),
    /// `sum(f)`: exact sum of numeric values (durations in nanoseconds).
    Sum(Field),
    /// `avg(f)`: exact mean of numeric values.
    Avg(Field),
    /// `min(f)`: smallest numeric value, duration or timestamp.
    Min(Field),
    /// `max(f)`: largest numeric value, duration or timestamp.
    Max(Field),
    /// `percentile(f, p1, p2, ...)`: one column per percentile, within 1% relative error.
    Percentile {
        /// The field.
        field: Field,
        /// Percentiles in `0.0..=100.0`, as written; never empty.
        percentiles: Vec<f64>,
    },
    /// `uniq(f)`: distinct non-null values, within 2%.
    Uniq(Field),
    /// `histogram(f, ceiling, bucket_count)`: `bucket_count` equal-width buckets from
    /// zero to `ceiling`; values at or above the ceiling count in the last bucket and
    /// negative values in the first.
    Histogram {
        /// The field.
        field: Field,
        /// The upper bound: a [`Literal::Duration`] for `duration`, else
        /// [`Literal::Int`], [`Literal::Float`] or [`Literal::Duration`]; above zero.
        ceiling: Literal,
        /// Number of buckets, in `1..=`[`Aggregate::HISTOGRAM_BUCKETS_MAX`].
        bucket_count: u32,
    },
    /// `rate(agg, interval)`: `agg` per `per_ns` of the query's time range (or of each
    /// TIMESERIES bucket).
    Rate {
        /// A [`Aggregate::Count`] or [`Aggregate::Sum`], possibly inside
        /// [`Aggregate::Filter`].
        aggregate: Box<Aggregate>,
        /// The rate's unit of time in nanoseconds, above zero.
        per_ns: u64,
    },
    /// `filter(agg, WHERE pred)`: `agg` over the spans that also match `pred`.
    Filter {
        /// The aggregate.
        aggregate: Box<Aggregate>,
        /// The extra predicate.
        filter: Expr,
    },
}

impl Aggregate {
    /// `histogram(f, ceiling)` without a bucket count gets this many buckets.
    pub const HISTOGRAM_BUCKETS_DEFAULT: u32 = 40;
    /// The most buckets a histogram may ask for.
    pub const HISTOGRAM_BUCKETS_MAX: u32 = 1000;

    /// The function's name, as written in canonical SpanQL.
    pub fn function_name(&self) -> &'static str {
        match self {
            Aggregate::Count(_) => "count",
            Aggregate::Sum(_) => "sum",
            Aggregate::Avg(_) => "avg",
            Aggregate::Min(_) => "min",
            Aggregate::Max(_) => "max",
            Aggregate::Percentile { .. } => "percentile",
            Aggregate::Uniq(_) => "uniq",
            Aggregate::Histogram { .. } => "histogram",
            Aggregate::Rate { .. } => "rate",
            Aggregate::Filter { .. } => "filter",
        }
    }

    /// How many result columns the aggregate gives (a percentile gives one per
    /// percentile; a histogram gives one column holding its bucket counts).
    pub fn column_count(&self) -> usize {
        match self {
            Aggregate::Percentile { percentiles, .. } => percentiles.len(),
            Aggregate::Filter { aggregate, .. } | Aggregate::Rate { aggregate, .. } => aggregate.column_count(),
            _ => 1,
        }
    }

    /// True if the aggregate gives one number, so it can take part in arithmetic and
    /// in `ORDER BY`: not a histogram and not a percentile with several percentiles.
    pub fn is_scalar(&self) -> bool {
        match self {
            Aggregate::Histogram { .. } => false,
            Aggregate::Percentile { percentiles, .. } => percentiles.len() == 1,
            Aggregate::Filter { aggregate, .. } | Aggregate::Rate { aggregate, .. } => aggregate.is_scalar(),
            _ => true,
        }
    }
}

/// A field of a span: an intrinsic or an attribute.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Field {
    /// A built-in field.
    Intrinsic(Intrinsic),
    /// An attribute. An unknown attribute reads as null; it is never an error.
    Attribute {
        /// `span.` or `resource.`; `None` looks in the span's attributes first, then
        /// in its resource's.
        scope: Option<Scope>,
        /// The attribute's key, such as `http.route`; never empty.
        key: String,
    },
}

impl Field {
    /// An unscoped attribute.
    pub fn attribute(key: impl Into<String>) -> Field {
        Field::Attribute { scope: None, key: key.into() }
    }

    /// What values the field holds, as far as the query text can tell.
    pub fn field_type(&self) -> FieldType {
        match self {
            Field::Intrinsic(intrinsic) => intrinsic.field_type(),
            Field::Attribute { .. } => FieldType::Any,
        }
    }
}

/// Which attributes an attribute field reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    /// `span.x`: the span's own attributes.
    Span,
    /// `resource.x`: the attributes of the span's resource.
    Resource,
}

impl Scope {
    /// `span` or `resource`.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Span => "span",
            Scope::Resource => "resource",
        }
    }
}

/// The built-in fields of a span.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Intrinsic {
    /// `trace_id`
    TraceId,
    /// `span_id`
    SpanId,
    /// `parent_span_id` (null for a root span)
    ParentSpanId,
    /// `name`
    Name,
    /// `kind`
    Kind,
    /// `status` (the status code)
    Status,
    /// `status_message`
    StatusMessage,
    /// `service`: the resource's `service.name`
    Service,
    /// `start`: nanoseconds since the epoch
    Start,
    /// `end`: `start + duration`
    End,
    /// `duration`: nanoseconds
    Duration,
}

impl Intrinsic {
    /// Every intrinsic, in the order the language reference lists them.
    pub const ALL: [Intrinsic; 11] = [
        Intrinsic::TraceId,
        Intrinsic::SpanId,
        Intrinsic::ParentSpanId,
        Intrinsic::Name,
        Intrinsic::Kind,
        Intrinsic::Status,
        Intrinsic::StatusMessage,
        Intrinsic::Service,
        Intrinsic::Start,
        Intrinsic::End,
        Intrinsic::Duration,
    ];

    /// The field's name in queries.
    pub fn as_str(self) -> &'static str {
        match self {
            Intrinsic::TraceId => "trace_id",
            Intrinsic::SpanId => "span_id",
            Intrinsic::ParentSpanId => "parent_span_id",
            Intrinsic::Name => "name",
            Intrinsic::Kind => "kind",
            Intrinsic::Status => "status",
            Intrinsic::StatusMessage => "status_message",
            Intrinsic::Service => "service",
            Intrinsic::Start => "start",
            Intrinsic::End => "end",
            Intrinsic::Duration => "duration",
        }
    }

    /// The intrinsic with this exact (lowercase) name.
    pub fn from_name(name: &str) -> Option<Intrinsic> {
        Intrinsic::ALL.into_iter().find(|intrinsic| intrinsic.as_str() == name)
    }

    /// The type of the intrinsic's values.
    pub fn field_type(self) -> FieldType {
        match self {
            Intrinsic::TraceId => FieldType::TraceId,
            Intrinsic::SpanId | Intrinsic::ParentSpanId => FieldType::SpanId,
            Intrinsic::Name | Intrinsic::StatusMessage | Intrinsic::Service => FieldType::String,
            Intrinsic::Kind => FieldType::Kind,
            Intrinsic::Status => FieldType::Status,
            Intrinsic::Start | Intrinsic::End => FieldType::Timestamp,
            Intrinsic::Duration => FieldType::Duration,
        }
    }
}

/// The static type of a field's values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FieldType {
    /// Text.
    String,
    /// A 16-byte trace id.
    TraceId,
    /// An 8-byte span id.
    SpanId,
    /// A span kind.
    Kind,
    /// A status code.
    Status,
    /// Nanoseconds since the epoch.
    Timestamp,
    /// Nanoseconds.
    Duration,
    /// An attribute: any value, or null; known only per span.
    Any,
}

impl FieldType {
    /// The type with an article, for messages: "a string", "a span kind".
    pub fn describe(self) -> &'static str {
        match self {
            FieldType::String => "a string",
            FieldType::TraceId => "a trace id",
            FieldType::SpanId => "a span id",
            FieldType::Kind => "a span kind",
            FieldType::Status => "a status",
            FieldType::Timestamp => "a timestamp",
            FieldType::Duration => "a duration",
            FieldType::Any => "an attribute",
        }
    }
}

/// A predicate over one span.
#[derive(Clone, Debug, PartialEq)]
pub enum Expr {
    /// `field op value`. A null field (an absent attribute) matches no comparison.
    Compare {
        /// The field.
        field: Field,
        /// The operator.
        op: CompareOp,
        /// The value, typed for the field (see [`Literal`]).
        value: Literal,
    },
    /// `field [NOT] IN (v1, v2, ...)`. A null field matches neither `IN` nor `NOT IN`.
    In {
        /// The field.
        field: Field,
        /// The values, never empty, typed for the field.
        values: Vec<Literal>,
        /// `NOT IN`.
        negated: bool,
    },
    /// `field [NOT] LIKE 'pattern'`: `%` matches any run of characters, `_` any one
    /// character, and `\` makes the next character literal. A null or non-string
    /// value matches neither `LIKE` nor `NOT LIKE`.
    Like {
        /// The field: a string intrinsic or an attribute.
        field: Field,
        /// The pattern, as written.
        pattern: String,
        /// `NOT LIKE`.
        negated: bool,
    },
    /// `field IS [NOT] NULL`.
    IsNull {
        /// The field.
        field: Field,
        /// `IS NOT NULL`.
        negated: bool,
    },
    /// `NOT pred`.
    Not(Box<Expr>),
    /// `a AND b AND ...`: at least two operands.
    And(Vec<Expr>),
    /// `a OR b OR ...`: at least two operands.
    Or(Vec<Expr>),
}

/// A comparison operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CompareOp {
    /// `=`
    Eq,
    /// `!=` (also written `<>`)
    Ne,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
}

impl CompareOp {
    /// The operator as written.
    pub fn as_str(self) -> &'static str {
        match self {
            CompareOp::Eq => "=",
            CompareOp::Ne => "!=",
            CompareOp::Lt => "<",
            CompareOp::Le => "<=",
            CompareOp::Gt => ">",
            CompareOp::Ge => ">=",
        }
    }

    /// The operator with its operands swapped: `5 < x` is `x > 5`.
    pub fn flip(self) -> CompareOp {
        match self {
            CompareOp::Eq => CompareOp::Eq,
            CompareOp::Ne => CompareOp::Ne,
            CompareOp::Lt => CompareOp::Gt,
            CompareOp::Le => CompareOp::Ge,
            CompareOp::Gt => CompareOp::Lt,
            CompareOp::Ge => CompareOp::Le,
        }
    }

    /// True for `=` and `!=`.
    pub fn is_equality(self) -> bool {
        matches!(self, CompareOp::Eq | CompareOp::Ne)
    }
}

/// A constant in a predicate, already typed for the field it is compared with.
///
/// Against an intrinsic, a literal has the intrinsic's type: `kind` gets [`Literal::Kind`],
/// `status` [`Literal::Status`], `trace_id` [`Literal::TraceId`], `span_id` and
/// `parent_span_id` [`Literal::SpanId`], `start` and `end` [`Literal::Timestamp`],
/// `duration` [`Literal::Duration`], and `name`, `service` and `status_message`
/// [`Literal::String`]. Against an attribute, it stays as written: string, integer,
/// float, boolean or duration (which compares as integer nanoseconds).
#[derive(Clone, Debug, PartialEq)]
pub enum Literal {
    /// `'text'`
    String(String),
    /// An integer.
    Int(i64),
    /// A float; finite.
    Float(f64),
    /// `true` or `false`.
    Bool(bool),
    /// A duration in nanoseconds: `250ms`.
    Duration(u64),
    /// Nanoseconds since the epoch, from an RFC 3339 string or an integer.
    Timestamp(i64),
    /// A span kind.
    Kind(SpanKind),
    /// A status code.
    Status(StatusCode),
    /// A trace id (32 hex digits; 16 are zero-extended on the left, as Zipkin ids are).
    TraceId(TraceId),
    /// A span id (16 hex digits).
    SpanId(SpanId),
}

impl Literal {
    /// The literal as a number, for the numeric ones (a duration in nanoseconds).
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Literal::Int(value) => Some(value as f64),
            Literal::Float(value) => Some(value),
            Literal::Duration(nanos) => Some(nanos as f64),
            Literal::Timestamp(nanos) => Some(nanos as f64),
            _ => None,
        }
    }
}

/// A `SINCE` or `UNTIL` time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TimeBound {
    /// A quoted RFC 3339 timestamp, as nanoseconds since the epoch.
    Rfc3339(i64),
    /// Epoch nanoseconds, written as an integer.
    EpochNanos(u64),
    /// `N unit ago`: this many nanoseconds before "now"; `now` is `Ago(0)`.
    Ago(u64),
}

impl TimeBound {
    /// The bound in nanoseconds since the epoch, given the current time.
    pub fn resolve(self, now_ns: i64) -> i64 {
        match self {
            TimeBound::Rfc3339(nanos) => nanos,
            TimeBound::EpochNanos(nanos) => i64::try_from(nanos).unwrap_or(i64::MAX),
            TimeBound::Ago(nanos) => now_ns.saturating_sub(i64::try_from(nanos).unwrap_or(i64::MAX)),
        }
    }
}

/// A `TIMESERIES` bucket width.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Timeseries {
    /// `TIMESERIES` or `TIMESERIES AUTO`: the executor picks a width from the time range.
    Auto,
    /// `TIMESERIES 1 minute`: buckets this many nanoseconds wide, above zero.
    Interval(u64),
}

/// One `ORDER BY` key.
#[derive(Clone, Debug, PartialEq)]
pub struct OrderBy {
    /// What to order by.
    pub key: OrderKey,
    /// `DESC`; ascending otherwise.
    pub descending: bool,
}

/// What an `ORDER BY` key orders by. An alias written in `ORDER BY` is already
/// replaced by the aliased expression.
#[derive(Clone, Debug, PartialEq)]
pub enum OrderKey {
    /// A field: any field in a plain query, a FACET field in an aggregate query.
    Field(Field),
    /// A single-valued aggregate expression (aggregate queries only). It need not
    /// appear in the `SELECT` list.
    Aggregate(AggregateExpr),
}

/// A `LIMIT`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Limit {
    /// `LIMIT n`.
    N(u64),
    /// `LIMIT MAX`: no limit.
    Max,
}
