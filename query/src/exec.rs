//! The executor: runs a checked [`Statement`] over an engine [`Snapshot`].
//!
//! For each part of the snapshot (sealed segments and in-memory segments of the
//! memtable) it prunes by time range, turns the WHERE clause into row bitmaps — from the
//! segment's bitmaps and value indexes where they cover a predicate, by scanning only
//! the candidate rows where they do not — then groups and aggregates the selected rows
//! (see [`group`]: bitmap cardinalities, dictionary codes, or values row by row).
//! Parts run on every core; each thread merges its parts' partial states, and the
//! threads' states merge at the end. A FACET with more groups than
//! [`ExecOptions::groups_max`] is re-run in passes over disjoint sets of facet keys
//! (by key hash), keeping only the top rows of each pass.
//!
//! Predicates follow SQL's three-valued logic: a comparison with a missing field is
//! unknown, `NOT unknown` is unknown, and only rows where the WHERE clause is true are
//! selected.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering as AtomicOrdering};
use std::sync::Arc;

use roaring::RoaringBitmap;
use spanstore_engine::segment::reader::{BlockValues, DecodedBlock, Segment};
use spanstore_engine::segment::{
    sortable_int, unsortable_int, AttrScope, ColumnKind, Intrinsic as SegIntrinsic, Storage, ValueType, BLOCK_ROWS,
};
use spanstore_engine::snapshot::Part;
use spanstore_engine::{Snapshot, Span, SpanId, SpanKind, StatusCode, TraceId};

use crate::agg::{AggOutput, AggState};
use crate::ast::{
    Aggregate, AggregateExpr, CompareOp, Expr, Field, Intrinsic, Limit, Literal, OrderKey, Query, Scope, SelectItem,
    Statement, Timeseries,
};
use crate::error::{QueryError, Result};
use crate::value::{GroupKey, QueryResult, Value};

mod group;

/// Rows a non-aggregate query returns without a LIMIT.
pub const DEFAULT_ROW_LIMIT: u64 = 100;
/// Most TIMESERIES buckets a query may produce.
pub const MAX_BUCKETS: u64 = 10_000;
/// Most groups (facet key and TIMESERIES bucket) one pass of a FACET query holds by
/// default; a query with more runs in several passes over disjoint sets of facet keys.
pub const DEFAULT_GROUPS_MAX: usize = 1 << 18;

/// How a query runs.
#[derive(Clone, Debug, Default)]
pub struct ExecOptions {
    /// "Now", for `N units ago` (ns since the epoch).
    pub now_unix_nano: i64,
    /// Set to cancel a running query; it then fails with [`QueryError::Cancelled`].
    pub cancel: Option<Arc<AtomicBool>>,
    /// Most groups one pass holds (0: [`DEFAULT_GROUPS_MAX`]). Past it, the FACET keys
    /// are split by hash into passes that each hold at most this many.
    pub groups_max: usize,
    /// Worker threads (0: one per core).
    pub threads: usize,
}

/// Runs one statement.
pub fn execute(snapshot: &Snapshot, statement: &Statement, options: &ExecOptions) -> Result<QueryResult> {
    match statement {
        Statement::Select(query) => Executor::new(snapshot, options)?.select(query, None),
        Statement::Trace(trace_id) => trace(snapshot, *trace_id),
        Statement::Explain(inner) => match inner.as_ref() {
            Statement::Select(query) => {
                let mut plan = Vec::new();
                let result = Executor::new(snapshot, options)?.select(query, Some(&mut plan))?;
                plan.push(vec![Value::Str("result".into()), Value::Str(format!("{} rows", result.rows.len()))]);
                Ok(QueryResult { columns: vec!["step".into(), "detail".into()], rows: plan, ..Default::default() })
            }
            Statement::Trace(id) => Ok(QueryResult {
                columns: vec!["step".into(), "detail".into()],
                rows: vec![vec![
                    Value::Str("trace".into()),
                    Value::Str(format!(
                        "trace {id}: per segment, bloom filter then trace-id zone maps, one block per column"
                    )),
                ]],
                ..Default::default()
            }),
            Statement::Explain(_) => Err(QueryError::Internal("EXPLAIN EXPLAIN".into())),
        },
    }
}

fn engine(err: spanstore_engine::EngineError) -> QueryError {
    QueryError::Engine(err.to_string())
}

/// The spans of one trace, as rows ordered by start.
fn trace(snapshot: &Snapshot, trace_id: TraceId) -> Result<QueryResult> {
    let spans = snapshot.trace(trace_id).map_err(engine)?;
    Ok(spans_table(&spans))
}

/// Spans as a table: intrinsics, then every span attribute key, then every resource
/// attribute key as `resource.<key>`.
pub fn spans_table(spans: &[Span]) -> QueryResult {
    let mut span_keys = std::collections::BTreeSet::new();
    let mut resource_keys = std::collections::BTreeSet::new();
    for s in spans {
        span_keys.extend(s.attributes.iter().map(|kv| kv.key.clone()));
        resource_keys.extend(s.resource.attributes.iter().map(|kv| kv.key.clone()));
    }
    let mut columns: Vec<String> = STAR_INTRINSICS.iter().map(|i| i.as_str().to_owned()).collect();
    columns.extend(span_keys.iter().cloned());
    columns.extend(resource_keys.iter().map(|k| format!("resource.{k}")));
    let rows = spans
        .iter()
        .map(|s| {
            let mut row: Vec<Value> = STAR_INTRINSICS.iter().map(|i| intrinsic_of_span(s, *i)).collect();
            for key in &span_keys {
                row.push(
                    s.attributes.iter().find(|kv| &kv.key == key).map(|kv| any_value(&kv.value)).unwrap_or(Value::Null),
                );
            }
            for key in &resource_keys {
                row.push(
                    s.resource
                        .attributes
                        .iter()
                        .find(|kv| &kv.key == key)
                        .map(|kv| any_value(&kv.value))
                        .unwrap_or(Value::Null),
                );
            }
            row
        })
        .collect();
    QueryResult { columns, rows, ..Default::default() }
}

const STAR_INTRINSICS: [Intrinsic; 10] = [
    Intrinsic::Start,
    Intrinsic::TraceId,
    Intrinsic::SpanId,
    Intrinsic::ParentSpanId,
    Intrinsic::Service,
    Intrinsic::Name,
    Intrinsic::Kind,
    Intrinsic::Duration,
    Intrinsic::Status,
    Intrinsic::StatusMessage,
];

/// A span attribute value as a result value.
pub fn any_value(value: &spanstore_engine::AnyValue) -> Value {
    use spanstore_engine::AnyValue;
    match value {
        AnyValue::Str(s) => Value::Str(s.clone()),
        AnyValue::Int(i) => Value::Int(*i),
        AnyValue::Double(d) => Value::Float(*d),
        AnyValue::Bool(b) => Value::Bool(*b),
        other => Value::Any(other.clone()),
    }
}

/// An intrinsic of an owned span (used by `SELECT *` and the reference evaluator).
pub fn intrinsic_of_span(s: &Span, intrinsic: Intrinsic) -> Value {
    match intrinsic {
        Intrinsic::TraceId => Value::TraceId(s.trace_id),
        Intrinsic::SpanId => Value::SpanId(s.span_id),
        Intrinsic::ParentSpanId => s.parent_span_id.map(Value::SpanId).unwrap_or(Value::Null),
        Intrinsic::Name => Value::Str(s.name.clone()),
        Intrinsic::Kind => Value::Kind(s.kind),
        Intrinsic::Status => Value::Status(s.status_code),
        Intrinsic::StatusMessage => {
            if s.status_message.is_empty() {
                Value::Null
            } else {
                Value::Str(s.status_message.clone())
            }
        }
        Intrinsic::Service => s.service().map(|x| Value::Str(x.to_owned())).unwrap_or(Value::Null),
        Intrinsic::Start => Value::Timestamp(s.start_unix_nano as i64),
        Intrinsic::End => Value::Timestamp(s.end_unix_nano() as i64),
        Intrinsic::Duration => Value::Duration(s.duration_ns as i64),
    }
}

/// An attribute of an owned span, with the span-then-resource rule for unscoped names.
pub fn attribute_of_span(s: &Span, scope: Option<Scope>, key: &str) -> Value {
    let span = || s.attributes.iter().find(|kv| kv.key == key).map(|kv| any_value(&kv.value));
    let resource = || s.resource.attributes.iter().find(|kv| kv.key == key).map(|kv| any_value(&kv.value));
    match scope {
        Some(Scope::Span) => span(),
        Some(Scope::Resource) => resource(),
        None => span().or_else(resource),
    }
    .unwrap_or(Value::Null)
}

/// A field of an owned span.
pub fn field_of_span(s: &Span, field: &Field) -> Value {
    match field {
        Field::Intrinsic(i) => intrinsic_of_span(s, *i),
        Field::Attribute { scope, key } => attribute_of_span(s, *scope, key),
    }
}

// ----- comparisons shared with the reference evaluator ---------------------------------------

/// Compares a value with a literal; `None` when the value is null (unknown).
pub fn compare(value: &Value, op: CompareOp, literal: &Literal) -> Option<bool> {
    if value.is_null() {
        return None;
    }
    let ordering = match (value, literal) {
        (Value::Str(a), Literal::String(b)) => Some(a.as_str().cmp(b.as_str())),
        (Value::Bool(a), Literal::Bool(b)) => Some(a.cmp(b)),
        (Value::Kind(a), Literal::Kind(b)) => Some(a.cmp(b)),
        (Value::Status(a), Literal::Status(b)) => Some(a.cmp(b)),
        (Value::TraceId(a), Literal::TraceId(b)) => Some(a.cmp(b)),
        (Value::SpanId(a), Literal::SpanId(b)) => Some(a.cmp(b)),
        (Value::Int(a) | Value::Timestamp(a) | Value::Duration(a), Literal::Int(b) | Literal::Timestamp(b)) => {
            Some(a.cmp(b))
        }
        (Value::Int(a) | Value::Timestamp(a) | Value::Duration(a), Literal::Duration(b)) => {
            Some(i128::from(*a).cmp(&i128::from(*b)))
        }
        _ => match (value.as_f64(), literal.as_f64()) {
            (Some(a), Some(b)) => a.partial_cmp(&b),
            _ => None,
        },
    };
    let Some(ordering) = ordering else {
        // Present but of another type: the comparison is false (and `!=` true).
        return Some(op == CompareOp::Ne);
    };
    Some(match op {
        CompareOp::Eq => ordering.is_eq(),
        CompareOp::Ne => ordering.is_ne(),
        CompareOp::Lt => ordering.is_lt(),
        CompareOp::Le => ordering.is_le(),
        CompareOp::Gt => ordering.is_gt(),
        CompareOp::Ge => ordering.is_ge(),
    })
}

/// SQL LIKE: `%` any run, `_` any one character, case-sensitive.
pub fn like(text: &str, pattern: &str) -> bool {
    let t: Vec<char> = text.chars().collect();
    let p: Vec<char> = pattern.chars().collect();
    // Iterative matcher with backtracking on the last '%'.
    let (mut ti, mut pi) = (0usize, 0usize);
    let (mut star, mut mark) = (None::<usize>, 0usize);
    while ti < t.len() {
        match p.get(pi) {
            Some('%') => {
                star = Some(pi);
                mark = ti;
                pi += 1;
            }
            Some(&c) if c == '_' || Some(&c) == t.get(ti) => {
                ti += 1;
                pi += 1;
            }
            _ => match star {
                Some(s) => {
                    pi = s + 1;
                    mark += 1;
                    ti = mark;
                }
                None => return false,
            },
        }
    }
    p.get(pi..).unwrap_or_default().iter().all(|&c| c == '%')
}

/// Evaluates a predicate on one value-producing closure (the reference evaluator's and
/// the scan path's shared logic). `Some(true/false)`, or `None` for unknown.
pub fn eval_expr(expr: &Expr, value_of: &mut dyn FnMut(&Field) -> Value) -> Option<bool> {
    match expr {
        Expr::Compare { field, op, value } => compare(&value_of(field), *op, value),
        Expr::In { field, values, negated } => {
            let v = value_of(field);
            if v.is_null() {
                return None;
            }
            let found = values.iter().any(|l| compare(&v, CompareOp::Eq, l) == Some(true));
            Some(found != *negated)
        }
        Expr::Like { field, pattern, negated } => match value_of(field) {
            Value::Null => None,
            Value::Str(s) => Some(like(&s, pattern) != *negated),
            _ => Some(*negated),
        },
        Expr::IsNull { field, negated } => Some(value_of(field).is_null() != *negated),
        Expr::Not(inner) => eval_expr(inner, value_of).map(|b| !b),
        Expr::And(items) => {
            let mut unknown = false;
            for item in items {
                match eval_expr(item, value_of) {
                    Some(false) => return Some(false),
                    None => unknown = true,
                    Some(true) => {}
                }
            }
            if unknown {
                None
            } else {
                Some(true)
            }
        }
        Expr::Or(items) => {
            let mut unknown = false;
            for item in items {
                match eval_expr(item, value_of) {
                    Some(true) => return Some(true),
                    None => unknown = true,
                    Some(false) => {}
                }
            }
            if unknown {
                None
            } else {
                Some(false)
            }
        }
    }
}

// ----- reading fields from a segment ---------------------------------------------------------

/// A field resolved against one segment's columns.
#[derive(Clone, Debug)]
enum Resolved {
    Intrinsic(Intrinsic),
    /// Typed columns that may hold the attribute, in priority order, grouped by scope:
    /// for an unscoped name, any span column wins over every resource column.
    Attr {
        span: Vec<(usize, ValueType)>,
        resource: Vec<(usize, ValueType)>,
    },
}

/// Reads values of one segment, keeping decoded blocks for the rows that share them.
struct Reader<'s> {
    segment: &'s Segment,
    blocks: HashMap<(usize, usize), Arc<DecodedBlock>>,
}

fn attr_columns(segment: &Segment, scope: AttrScope, key: &str) -> Vec<(usize, ValueType)> {
    [ValueType::Str, ValueType::Int, ValueType::Double, ValueType::Bool]
        .into_iter()
        .filter_map(|t| segment.attr_column(scope, key, t).map(|c| (c, t)))
        .collect()
}

fn resolve(segment: &Segment, field: &Field) -> Resolved {
    match field {
        Field::Intrinsic(Intrinsic::Service) => Resolved::Attr {
            span: Vec::new(),
            resource: segment
                .attr_column(AttrScope::Resource, "service.name", ValueType::Str)
                .map(|c| vec![(c, ValueType::Str)])
                .unwrap_or_default(),
        },
        Field::Intrinsic(i) => Resolved::Intrinsic(*i),
        Field::Attribute { scope, key } => {
            let span =
                if *scope == Some(Scope::Resource) { Vec::new() } else { attr_columns(segment, AttrScope::Span, key) };
            let resource =
                if *scope == Some(Scope::Span) { Vec::new() } else { attr_columns(segment, AttrScope::Resource, key) };
            Resolved::Attr { span, resource }
        }
    }
}

impl<'s> Reader<'s> {
    fn new(segment: &'s Segment) -> Self {
        Reader { segment, blocks: HashMap::new() }
    }

    fn block(&mut self, column: usize, row: u32) -> Result<Arc<DecodedBlock>> {
        let key = (column, row as usize / BLOCK_ROWS);
        if let Some(b) = self.blocks.get(&key) {
            return Ok(b.clone());
        }
        // Keep the cache bounded: one query touches at most a few columns per block.
        if self.blocks.len() > 256 {
            self.blocks.clear();
        }
        let block = Arc::new(self.segment.read_block(column, key.1).map_err(engine)?);
        self.blocks.insert(key, block.clone());
        Ok(block)
    }

    fn int(&mut self, column: usize, row: u32) -> Result<Option<u64>> {
        Ok(self.block(column, row)?.int(row as usize % BLOCK_ROWS))
    }

    fn column_value(&mut self, column: usize, value_type: ValueType, row: u32) -> Result<Value> {
        let block = self.block(column, row)?;
        let Some(index) = block.value_index(row as usize % BLOCK_ROWS) else { return Ok(Value::Null) };
        Ok(match (&block.values, value_type) {
            (BlockValues::Codes(codes), _) => {
                let dictionary = self.segment.dictionary(column).map_err(engine)?;
                codes
                    .get(index)
                    .and_then(|&c| dictionary.get(c as usize))
                    .map(|s| Value::Str(s.clone()))
                    .unwrap_or(Value::Null)
            }
            (BlockValues::Strings(v), _) => v.get(index).map(|s| Value::Str(s.to_owned())).unwrap_or(Value::Null),
            (BlockValues::Ints(v), ValueType::Int) => {
                v.get(index).map(|&x| Value::Int(unsortable_int(x))).unwrap_or(Value::Null)
            }
            (BlockValues::Doubles(v), _) => {
                v.get(index).map(|&x| Value::Float(f64::from_bits(x))).unwrap_or(Value::Null)
            }
            (BlockValues::Bools(v), _) => v.get(index).map(|&x| Value::Bool(x)).unwrap_or(Value::Null),
            _ => Value::Null,
        })
    }

    fn fixed8(&mut self, column: usize, row: u32) -> Result<Option<[u8; 8]>> {
        let block = self.block(column, row)?;
        Ok(match (&block.values, block.value_index(row as usize % BLOCK_ROWS)) {
            (BlockValues::Fixed8(v), Some(i)) => v.get(i).copied(),
            _ => None,
        })
    }

    fn value(&mut self, resolved: &Resolved, row: u32) -> Result<Value> {
        match resolved {
            Resolved::Attr { span, resource } => {
                for (column, t) in span.iter().chain(resource.iter()) {
                    let v = self.column_value(*column, *t, row)?;
                    if !v.is_null() {
                        return Ok(v);
                    }
                }
                Ok(Value::Null)
            }
            Resolved::Intrinsic(i) => self.intrinsic(*i, row),
        }
    }

    fn intrinsic(&mut self, intrinsic: Intrinsic, row: u32) -> Result<Value> {
        let col = |i: SegIntrinsic| i as usize;
        Ok(match intrinsic {
            Intrinsic::TraceId => {
                let block = self.block(col(SegIntrinsic::TraceId), row)?;
                match (&block.values, block.value_index(row as usize % BLOCK_ROWS)) {
                    (BlockValues::Fixed16(v), Some(i)) => {
                        v.get(i).map(|x| Value::TraceId(TraceId(*x))).unwrap_or(Value::Null)
                    }
                    _ => Value::Null,
                }
            }
            Intrinsic::SpanId => {
                self.fixed8(col(SegIntrinsic::SpanId), row)?.map(|x| Value::SpanId(SpanId(x))).unwrap_or(Value::Null)
            }
            Intrinsic::ParentSpanId => match self.int(col(SegIntrinsic::ParentCode), row)?.unwrap_or(0) {
                0 => Value::Null,
                1 => self
                    .fixed8(col(SegIntrinsic::ParentId), row)?
                    .map(|x| Value::SpanId(SpanId(x)))
                    .unwrap_or(Value::Null),
                code => {
                    let z = code - 2;
                    let delta = ((z >> 1) as i64) ^ -((z & 1) as i64);
                    let parent = i64::from(row) + delta;
                    match u32::try_from(parent) {
                        Ok(parent) if (parent as usize) < self.segment.row_count() => self
                            .fixed8(col(SegIntrinsic::SpanId), parent)?
                            .map(|x| Value::SpanId(SpanId(x)))
                            .unwrap_or(Value::Null),
                        _ => Value::Null,
                    }
                }
            },
            Intrinsic::Name => self.column_value(col(SegIntrinsic::Name), ValueType::Str, row)?,
            Intrinsic::StatusMessage => self.column_value(col(SegIntrinsic::StatusMessage), ValueType::Str, row)?,
            Intrinsic::Kind => self
                .int(col(SegIntrinsic::Kind), row)?
                .and_then(|k| u8::try_from(k).ok())
                .and_then(SpanKind::from_code)
                .map(Value::Kind)
                .unwrap_or(Value::Null),
            Intrinsic::Status => self
                .int(col(SegIntrinsic::Status), row)?
                .and_then(|k| u8::try_from(k).ok())
                .and_then(StatusCode::from_code)
                .map(Value::Status)
                .unwrap_or(Value::Null),
            Intrinsic::Start => {
                self.int(col(SegIntrinsic::Start), row)?.map(|s| Value::Timestamp(s as i64)).unwrap_or(Value::Null)
            }
            Intrinsic::Duration => {
                self.int(col(SegIntrinsic::Duration), row)?.map(|s| Value::Duration(s as i64)).unwrap_or(Value::Null)
            }
            Intrinsic::End => {
                let start = self.int(col(SegIntrinsic::Start), row)?.unwrap_or(0);
                let duration = self.int(col(SegIntrinsic::Duration), row)?.unwrap_or(0);
                Value::Timestamp(start.saturating_add(duration) as i64)
            }
            Intrinsic::Service => Value::Null,
        })
    }
}

// ----- predicates to bitmaps -----------------------------------------------------------------

/// Rows where an expression is true, and (when asked) where it is false.
struct Tri {
    t: RoaringBitmap,
    f: RoaringBitmap,
}

struct Planner<'s, 'p> {
    segment: &'s Segment,
    reader: Reader<'s>,
    plan: Option<&'p mut Vec<String>>,
    cancel: Option<&'p AtomicBool>,
}

impl Planner<'_, '_> {
    fn note(&mut self, text: impl FnOnce() -> String) {
        if let Some(plan) = self.plan.as_mut() {
            plan.push(text());
        }
    }

    fn check_cancel(&self) -> Result<()> {
        if self.cancel.is_some_and(|c| c.load(AtomicOrdering::Relaxed)) {
            return Err(QueryError::Cancelled);
        }
        Ok(())
    }

    /// Rows of `candidates` where `expr` is true (`t`) and, if `need_false`, false (`f`).
    fn eval(&mut self, expr: &Expr, candidates: &RoaringBitmap, need_false: bool) -> Result<Tri> {
        self.check_cancel()?;
        match expr {
            Expr::Not(inner) => {
                let tri = self.eval(inner, candidates, true)?;
                Ok(Tri { t: tri.f, f: tri.t })
            }
            Expr::And(items) => {
                // Indexed equalities first, then leaves answered from value bitmaps:
                // they narrow the candidates the others scan.
                let mut order: Vec<&Expr> = items.iter().collect();
                order.sort_by_key(|e| {
                    if self.indexable(e) {
                        0
                    } else if self.key_source(e).is_some() {
                        1
                    } else {
                        2
                    }
                });
                let mut t = candidates.clone();
                let mut f = RoaringBitmap::new();
                for item in order {
                    if need_false {
                        // `unknown AND false` is false: every child sees every candidate.
                        let tri = self.eval(item, candidates, true)?;
                        f |= &tri.f;
                        t &= &tri.t;
                    } else {
                        t = self.eval(item, &t, false)?.t;
                    }
                }
                Ok(Tri { t, f })
            }
            Expr::Or(items) => {
                let mut t = RoaringBitmap::new();
                let mut f = candidates.clone();
                for item in items {
                    let tri = self.eval(item, candidates, need_false)?;
                    t |= &tri.t;
                    if need_false {
                        f &= &tri.f;
                    }
                }
                if !need_false {
                    f = RoaringBitmap::new();
                }
                Ok(Tri { t, f })
            }
            leaf => {
                if !need_false {
                    if let Some(t) = self.index_lookup(leaf, candidates)? {
                        return Ok(Tri { t, f: RoaringBitmap::new() });
                    }
                }
                if let Some(tri) = self.key_lookup(leaf, candidates, need_false)? {
                    return Ok(tri);
                }
                self.scan(leaf, candidates, need_false)
            }
        }
    }

    fn indexable(&self, expr: &Expr) -> bool {
        match expr {
            Expr::Compare { field, op: CompareOp::Eq, value } => {
                self.index_plan(field, std::slice::from_ref(value)).is_some()
            }
            Expr::In { field, values, negated: false } => self.index_plan(field, values).is_some(),
            _ => false,
        }
    }

    /// For an equality (or IN) on an indexed column: the column and the keys to look up.
    fn index_plan(&self, field: &Field, values: &[Literal]) -> Option<(usize, Vec<IndexKey>)> {
        let segment = self.segment;
        match resolve(segment, field) {
            Resolved::Intrinsic(i) => {
                let (column, keys) = match i {
                    Intrinsic::Name => (SegIntrinsic::Name as usize, strings(values)?),
                    Intrinsic::Kind => (
                        SegIntrinsic::Kind as usize,
                        values
                            .iter()
                            .map(|v| match v {
                                Literal::Kind(k) => Some(IndexKey::Raw(*k as u64)),
                                _ => None,
                            })
                            .collect::<Option<Vec<_>>>()?,
                    ),
                    Intrinsic::Status => (
                        SegIntrinsic::Status as usize,
                        values
                            .iter()
                            .map(|v| match v {
                                Literal::Status(s) => Some(IndexKey::Raw(*s as u64)),
                                _ => None,
                            })
                            .collect::<Option<Vec<_>>>()?,
                    ),
                    // Every segment has a trace bloom filter and a trace index (or, in
                    // formats 1 and 2, rows sorted by trace id): a trace's rows are found
                    // without a column scan.
                    Intrinsic::TraceId => {
                        let keys = values
                            .iter()
                            .map(|v| match v {
                                Literal::TraceId(t) => Some(IndexKey::Trace(*t)),
                                _ => None,
                            })
                            .collect::<Option<Vec<_>>>()?;
                        return Some((SegIntrinsic::TraceId as usize, keys));
                    }
                    _ => return None,
                };
                let meta = segment.column_meta(column).ok()?;
                let usable = meta.bitmaps.is_some()
                    || (meta.value_index.is_some() && matches!(keys.first(), Some(IndexKey::Str(_))));
                usable.then_some((column, keys))
            }
            Resolved::Attr { span, resource } => {
                // The span-then-resource rule is exact through an index only when one
                // scope holds the key in this segment.
                let columns = if resource.is_empty() {
                    span
                } else if span.is_empty() {
                    resource
                } else {
                    return None;
                };
                // One literal type, and a column of that type with an index.
                let type_of = |l: &Literal| match l {
                    Literal::String(_) => Some(ValueType::Str),
                    Literal::Int(_) => Some(ValueType::Int),
                    Literal::Bool(_) => Some(ValueType::Bool),
                    _ => None,
                };
                let value_type = type_of(values.first()?)?;
                if values.iter().any(|v| type_of(v) != Some(value_type)) {
                    // Literals of several types: a scan compares each as it should.
                    return None;
                }
                let column = columns.iter().find(|(_, t)| *t == value_type).map(|(c, _)| *c);
                let Some(column) = column else {
                    // No column of that type: nothing matches (an empty lookup).
                    return Some((usize::MAX, Vec::new()));
                };
                let keys = values
                    .iter()
                    .map(|v| match (v, value_type) {
                        (Literal::String(s), ValueType::Str) => Some(IndexKey::Str(s.clone())),
                        (Literal::Int(i), ValueType::Int) => Some(IndexKey::Raw(sortable_int(*i))),
                        (Literal::Bool(b), ValueType::Bool) => Some(IndexKey::Raw(u64::from(*b))),
                        _ => None,
                    })
                    .collect::<Option<Vec<_>>>()?;
                let meta = segment.column_meta(column).ok()?;
                let usable = meta.bitmaps.is_some()
                    || (meta.value_index.is_some() && matches!(meta.storage, Storage::Dict | Storage::Strings));
                usable.then_some((column, keys))
            }
        }
    }

    fn index_lookup(&mut self, expr: &Expr, candidates: &RoaringBitmap) -> Result<Option<RoaringBitmap>> {
        let (field, values) = match expr {
            Expr::Compare { field, op: CompareOp::Eq, value } => (field, std::slice::from_ref(value)),
            Expr::In { field, values, negated: false } => (field, values.as_slice()),
            _ => return Ok(None),
        };
        let Some((column, keys)) = self.index_plan(field, values) else { return Ok(None) };
        if column == usize::MAX {
            self.note(|| format!("{expr}: no column of that type here, no rows"));
            return Ok(Some(RoaringBitmap::new()));
        }
        let segment = self.segment;
        let meta = segment.column_meta(column).map_err(engine)?;
        let mut rows = RoaringBitmap::new();
        let method = if matches!(keys.first(), Some(IndexKey::Trace(_))) {
            "trace index"
        } else if meta.bitmaps.is_some() {
            "bitmap index"
        } else {
            "value index"
        };
        for key in &keys {
            let found = match key {
                IndexKey::Str(s) => segment.lookup_str(column, s).map_err(engine)?,
                IndexKey::Raw(k) => segment.bitmap(column, *k).map_err(engine)?,
                IndexKey::Trace(t) => Some(segment.trace_rows(t).map_err(engine)?.into_iter().collect()),
            };
            match found {
                Some(bitmap) => rows |= bitmap,
                None => return Ok(None),
            }
        }
        rows &= candidates;
        let count = rows.len();
        self.note(|| format!("{expr}: {method} on {}, {count} rows", column_label(&meta.kind)));
        Ok(Some(rows))
    }

    /// For a leaf on a field held by exactly one column here, a column with a bitmap per
    /// value: the column, and how a bitmap key reads as a value. Every row of the
    /// segment is then in the bitmap of its value or in none (null).
    fn key_source(&self, expr: &Expr) -> Option<(usize, KeyValues)> {
        let field = match expr {
            Expr::Compare { field, .. }
            | Expr::In { field, .. }
            | Expr::Like { field, .. }
            | Expr::IsNull { field, .. } => field,
            Expr::Not(_) | Expr::And(_) | Expr::Or(_) => return None,
        };
        let segment = self.segment;
        let (column, values) = match resolve(segment, field) {
            Resolved::Intrinsic(Intrinsic::Kind) => (SegIntrinsic::Kind as usize, KeyValues::Kind),
            Resolved::Intrinsic(Intrinsic::Status) => (SegIntrinsic::Status as usize, KeyValues::Status),
            Resolved::Intrinsic(Intrinsic::Name) => (SegIntrinsic::Name as usize, KeyValues::Dictionary),
            Resolved::Intrinsic(Intrinsic::StatusMessage) => {
                (SegIntrinsic::StatusMessage as usize, KeyValues::Dictionary)
            }
            Resolved::Intrinsic(_) => return None,
            Resolved::Attr { span, resource } => match (span.as_slice(), resource.as_slice()) {
                ([(column, value_type)], []) | ([], [(column, value_type)]) => match value_type {
                    ValueType::Str => (*column, KeyValues::Dictionary),
                    ValueType::Int => (*column, KeyValues::Int),
                    ValueType::Bool => (*column, KeyValues::Bool),
                    ValueType::Double => return None,
                },
                _ => return None,
            },
        };
        let meta = segment.column_meta(column).ok()?;
        if meta.bitmaps.is_none() || (matches!(values, KeyValues::Dictionary) && meta.storage != Storage::Dict) {
            return None;
        }
        Some((column, values))
    }

    /// A leaf (any comparison, IN, LIKE, IS NULL) on a column with value bitmaps: the
    /// leaf is evaluated once per distinct value, and its rows are the union of the
    /// bitmaps of the values that satisfy it (rows in no bitmap are null). Ranges
    /// over an int attribute or a name, `!=`, `NOT IN` and LIKE become bitmap unions
    /// instead of column scans. `None` when the field is not held that way here.
    fn key_lookup(&mut self, expr: &Expr, candidates: &RoaringBitmap, need_false: bool) -> Result<Option<Tri>> {
        let Some((column, values)) = self.key_source(expr) else { return Ok(None) };
        let segment = self.segment;
        let Some(bitmaps) = segment.bitmap_set(column).map_err(engine)? else { return Ok(None) };
        let dictionary = match values {
            KeyValues::Dictionary => Some(segment.dictionary(column).map_err(engine)?),
            _ => None,
        };
        let value_of = |key: u64| -> Value {
            match values {
                KeyValues::Dictionary => dictionary
                    .as_ref()
                    .and_then(|d| d.get(usize::try_from(key).ok()?))
                    .map(|s| Value::Str(s.clone()))
                    .unwrap_or(Value::Null),
                KeyValues::Int => Value::Int(unsortable_int(key)),
                KeyValues::Bool => Value::Bool(key != 0),
                KeyValues::Kind => {
                    u8::try_from(key).ok().and_then(SpanKind::from_code).map(Value::Kind).unwrap_or(Value::Null)
                }
                KeyValues::Status => {
                    u8::try_from(key).ok().and_then(StatusCode::from_code).map(Value::Status).unwrap_or(Value::Null)
                }
            }
        };
        let null_outcome = eval_expr(expr, &mut |_: &Field| Value::Null);
        // Each value's outcome, once.
        let mut outcomes: HashMap<u64, Option<bool>> = HashMap::with_capacity(bitmaps.len());
        let mut touched = 0u64;
        for (key, bitmap) in bitmaps.iter() {
            let value = value_of(key);
            let outcome = if value.is_null() { null_outcome } else { eval_expr(expr, &mut |_: &Field| value.clone()) };
            if outcome == Some(true) || (need_false && outcome == Some(false)) {
                touched += bitmap.len();
            }
            outcomes.insert(key, outcome);
        }
        // Few candidates against large bitmaps: read the column at the candidates
        // instead of combining the bitmaps.
        if candidates.len().saturating_mul(ROWS_OVER_BITMAPS) < touched {
            let mut t = RoaringBitmap::new();
            let mut f = RoaringBitmap::new();
            let mut source = candidates.iter().peekable();
            let mut locals: Vec<u32> = Vec::new();
            while let Some(&next) = source.peek() {
                self.check_cancel()?;
                let block = next as usize / BLOCK_ROWS;
                let first = (block * BLOCK_ROWS) as u32;
                let end = first.saturating_add(BLOCK_ROWS as u32);
                locals.clear();
                while let Some(row) = source.next_if(|&row| row < end) {
                    locals.push(row - first);
                }
                let stored = segment.read_block_rows(column, block, &locals).map_err(engine)?;
                for (&local, value) in locals.iter().zip(stored) {
                    let outcome = match value {
                        None => null_outcome,
                        Some(key) => match outcomes.get(&key) {
                            Some(outcome) => *outcome,
                            None => {
                                let value = value_of(key);
                                eval_expr(expr, &mut |_: &Field| value.clone())
                            }
                        },
                    };
                    match outcome {
                        Some(true) => {
                            t.insert(first + local);
                        }
                        Some(false) if need_false => {
                            f.insert(first + local);
                        }
                        _ => {}
                    }
                }
            }
            let (count, checked) = (t.len(), candidates.len());
            let label = column_label(&segment.column_meta(column).map_err(engine)?.kind);
            self.note(|| {
                format!("{expr}: values of {label} read at the {checked} candidate rows and looked up, {count} rows")
            });
            return Ok(Some(Tri { t, f }));
        }
        let mut t = RoaringBitmap::new();
        let mut f = RoaringBitmap::new();
        let null_needed = null_outcome == Some(true) || (need_false && null_outcome == Some(false));
        let mut null_rows = if null_needed { Some(candidates.clone()) } else { None };
        let mut satisfied = 0usize;
        for (n, (key, bitmap)) in bitmaps.iter().enumerate() {
            if n % 256 == 0 {
                self.check_cancel()?;
            }
            match outcomes.get(&key).copied().flatten() {
                Some(true) => {
                    satisfied += 1;
                    t |= bitmap;
                }
                Some(false) if need_false => f |= bitmap,
                _ => {}
            }
            if let Some(rows) = null_rows.as_mut() {
                *rows -= bitmap;
            }
        }
        t &= candidates;
        f &= candidates;
        match (null_outcome, null_rows) {
            (Some(true), Some(rows)) => t |= rows,
            (Some(false), Some(rows)) if need_false => f |= rows,
            _ => {}
        }
        let (count, keys) = (t.len(), bitmaps.len());
        let label = column_label(&segment.column_meta(column).map_err(engine)?.kind);
        self.note(|| format!("{expr}: bitmap index on {label}, union of the {satisfied} of {keys} values that satisfy it, {count} rows"));
        Ok(Some(Tri { t, f }))
    }

    fn scan(&mut self, expr: &Expr, candidates: &RoaringBitmap, need_false: bool) -> Result<Tri> {
        let fields = expr_fields(expr);
        let resolved: Vec<(Field, Resolved)> = fields
            .into_iter()
            .map(|f| {
                let r = resolve(self.segment, &f);
                (f, r)
            })
            .collect();
        let mut t = RoaringBitmap::new();
        let mut f = RoaringBitmap::new();
        let mut scanned = 0u64;
        for row in candidates.iter() {
            if scanned.is_multiple_of(65_536) {
                self.check_cancel()?;
            }
            scanned += 1;
            let mut error = None;
            let reader = &mut self.reader;
            let outcome = eval_expr(expr, &mut |field: &Field| {
                let Some((_, r)) = resolved.iter().find(|(f, _)| f == field) else { return Value::Null };
                match reader.value(r, row) {
                    Ok(v) => v,
                    Err(e) => {
                        error = Some(e);
                        Value::Null
                    }
                }
            });
            if let Some(e) = error {
                return Err(e);
            }
            match outcome {
                Some(true) => {
                    t.insert(row);
                }
                Some(false) if need_false => {
                    f.insert(row);
                }
                _ => {}
            }
        }
        let count = t.len();
        self.note(|| format!("{expr}: scanned {scanned} rows, {count} match"));
        Ok(Tri { t, f })
    }
}

/// How the bitmap keys of a column read as values.
#[derive(Clone, Copy)]
enum KeyValues {
    /// Dictionary codes of a string column.
    Dictionary,
    /// Stored ints (`sortable_int`).
    Int,
    /// 0 or 1.
    Bool,
    /// Span kind codes.
    Kind,
    /// Status codes.
    Status,
}

/// A leaf on a column with value bitmaps reads the column at the candidate rows when
/// the bitmaps it would combine hold more than this many times as many rows.
const ROWS_OVER_BITMAPS: u64 = 8;

enum IndexKey {
    Str(String),
    Raw(u64),
    Trace(TraceId),
}

fn strings(values: &[Literal]) -> Option<Vec<IndexKey>> {
    values
        .iter()
        .map(|v| match v {
            Literal::String(s) => Some(IndexKey::Str(s.clone())),
            _ => None,
        })
        .collect()
}

fn column_label(kind: &ColumnKind) -> String {
    spanstore_engine::segment::reader::column_name(kind)
}

fn expr_fields(expr: &Expr) -> Vec<Field> {
    let mut out = Vec::new();
    fn walk(expr: &Expr, out: &mut Vec<Field>) {
        match expr {
            Expr::Compare { field, .. }
            | Expr::In { field, .. }
            | Expr::Like { field, .. }
            | Expr::IsNull { field, .. } => {
                if !out.contains(field) {
                    out.push(field.clone());
                }
            }
            Expr::Not(inner) => walk(inner, out),
            Expr::And(items) | Expr::Or(items) => items.iter().for_each(|e| walk(e, out)),
        }
    }
    walk(expr, &mut out);
    out
}

// ----- select ------------------------------------------------------------------------------

/// One output column of an aggregate query.
struct AggColumn {
    /// Index of the select item.
    item: usize,
    /// For multi-valued aggregates (percentiles), which value.
    part: usize,
    name: String,
}

struct Executor<'a> {
    snapshot: &'a Snapshot,
    options: &'a ExecOptions,
    parts: Vec<Part>,
}

/// A group's partial state: its key values and one state per aggregate.
struct Group {
    keys: Vec<Value>,
    states: Vec<AggState>,
}

type Groups = HashMap<(Vec<GroupKey>, Option<i64>), Group>;

/// Adds `group` under `key`, merging states with a group already there.
fn merge_group(groups: &mut Groups, key: (Vec<GroupKey>, Option<i64>), group: Group) {
    match groups.get_mut(&key) {
        Some(existing) => {
            for (a, b) in existing.states.iter_mut().zip(group.states) {
                a.merge(b);
            }
        }
        None => {
            groups.insert(key, group);
        }
    }
}

/// TIMESERIES buckets: the first bucket's start, the width and how many there are.
#[derive(Clone, Copy, Debug)]
struct Buckets {
    first: i64,
    interval: i64,
    count: u64,
}

impl Buckets {
    /// Index of the bucket holding `start`; `None` outside the query's range.
    fn index(&self, start: i64) -> Option<u64> {
        let offset = start.checked_sub(self.first)?;
        u64::try_from(offset.div_euclid(self.interval)).ok().filter(|&i| i < self.count)
    }
}

/// Which facet keys a pass aggregates: those whose [`key_hash`] is `residue` modulo
/// `modulus` (a power of two). One pass with modulus 1 takes every key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Partition {
    modulus: u64,
    residue: u64,
}

impl Partition {
    const ALL: Partition = Partition { modulus: 1, residue: 0 };

    fn is_all(&self) -> bool {
        self.modulus == 1
    }

    fn admits(&self, hash: u64) -> bool {
        self.modulus == 1 || hash & (self.modulus - 1) == self.residue
    }
}

/// Seed of [`key_hash`].
const KEY_HASH_SEED: u64 = 0x243f_6a88_85a3_08d3;

/// Hash of one facet value (deterministic across parts, threads and passes).
fn value_hash(key: &GroupKey) -> u64 {
    use std::hash::Hasher;
    match key {
        GroupKey::Str(s) => str_hash(s),
        other => {
            let mut hasher = std::collections::hash_map::DefaultHasher::new();
            match other {
                GroupKey::Null => hasher.write_u8(0),
                GroupKey::Bool(b) => hasher.write_u16(0x100 | u16::from(*b)),
                GroupKey::Int(i) => {
                    hasher.write_u8(2);
                    hasher.write_i64(*i);
                }
                GroupKey::Float(f) => {
                    hasher.write_u8(3);
                    hasher.write_u64(*f);
                }
                GroupKey::Bytes(b) => {
                    hasher.write_u8(5);
                    hasher.write(b);
                }
                GroupKey::Str(_) => {}
            }
            hasher.finish()
        }
    }
}

/// [`value_hash`] of a string key, without building the key.
fn str_hash(s: &str) -> u64 {
    use std::hash::Hasher;
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    hasher.write_u8(4);
    hasher.write(s.as_bytes());
    hasher.finish()
}

/// Folds one facet value's [`value_hash`] into a running key hash.
fn combine_hash(running: u64, value: u64) -> u64 {
    (running.rotate_left(23) ^ value).wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

/// Final mix, so that the low bits a [`Partition`] tests depend on every input bit.
fn finish_hash(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// The hash that assigns a facet key (all its TIMESERIES buckets) to a partition.
fn key_hash(keys: &[GroupKey]) -> u64 {
    finish_hash(keys.iter().fold(KEY_HASH_SEED, |h, k| combine_hash(h, value_hash(k))))
}

/// What one pass over the parts needs to know.
struct PassSpec<'q> {
    query: &'q Query,
    since: Option<i64>,
    until: Option<i64>,
    buckets: Option<Buckets>,
    aggregates: &'q [&'q Aggregate],
    explain: bool,
    partition: Partition,
    /// Most group entries (facet key and bucket) a pass keeps before it gives up and
    /// the query is re-run in more partitions.
    groups_max: usize,
}

/// What a worker thread accumulates over the parts it ran.
#[derive(Default)]
struct Accumulator {
    groups: Groups,
    rows: Vec<(Vec<Value>, usize, u32)>,
    /// (part index, part name, plan notes).
    notes: Vec<(usize, String, Vec<String>)>,
}

/// A faceted result row before output: its key, key values, aggregate values and (for
/// TIMESERIES) the aggregate values of every bucket.
struct Ranked {
    key: Vec<GroupKey>,
    keys: Vec<Value>,
    values: Vec<Value>,
    series: Vec<Vec<Value>>,
}

/// Output columns, order and limit of an aggregate query.
struct AggPlan<'q> {
    query: &'q Query,
    aggregates: &'q [&'q Aggregate],
    columns: Vec<AggColumn>,
    /// Per ORDER BY key: aggregate column, facet position, descending.
    order: Vec<(Option<usize>, Option<usize>, bool)>,
    limit: usize,
    window: i64,
    buckets: Option<Buckets>,
}

impl AggPlan<'_> {
    fn evaluate(&self, states: &[AggState]) -> Vec<Value> {
        self.columns
            .iter()
            .map(|c| match self.query.select.get(c.item) {
                Some(SelectItem::Aggregate { expr, .. }) => {
                    eval_agg_expr(expr, states, self.aggregates, c.part, self.window)
                }
                _ => Value::Null,
            })
            .collect()
    }

    fn fresh_states(&self) -> Vec<AggState> {
        self.aggregates.iter().map(|a| AggState::new(a)).collect()
    }

    fn compare(&self, a: &Ranked, b: &Ranked) -> std::cmp::Ordering {
        for (column, facet, descending) in &self.order {
            let (x, y) = match (column, facet) {
                (Some(c), _) => (a.values.get(*c), b.values.get(*c)),
                (None, Some(f)) => (a.keys.get(*f), b.keys.get(*f)),
                _ => (None, None),
            };
            let o = match (x, y) {
                (Some(x), Some(y)) => x.total_cmp(y),
                _ => std::cmp::Ordering::Equal,
            };
            let o = if *descending { o.reverse() } else { o };
            if o.is_ne() {
                return o;
            }
        }
        a.key.cmp(&b.key)
    }

    /// Sorts and keeps the first `limit` (selecting them first when that is fewer).
    fn keep_top(&self, ranked: &mut Vec<Ranked>) {
        if self.limit > 0 && self.limit < ranked.len() {
            ranked.select_nth_unstable_by(self.limit - 1, |a, b| self.compare(a, b));
        }
        ranked.truncate(self.limit);
        ranked.sort_by(|a, b| self.compare(a, b));
    }

    /// The facet rows of one pass's groups, sorted and cut to the limit, with their
    /// bucket series.
    fn rank(&self, groups: Groups) -> Vec<Ranked> {
        if self.buckets.is_none() {
            // One group per facet key: its states are the totals.
            let mut ranked: Vec<Ranked> = groups
                .into_iter()
                .map(|((key, _), group)| Ranked {
                    values: self.evaluate(&group.states),
                    key,
                    keys: group.keys,
                    series: Vec::new(),
                })
                .collect();
            self.keep_top(&mut ranked);
            return ranked;
        }
        // Totals per facet key (over all buckets) decide which facets are shown.
        let mut totals: HashMap<Vec<GroupKey>, (Vec<Value>, Vec<AggState>)> = HashMap::new();
        let mut by_bucket: HashMap<Vec<GroupKey>, Vec<(i64, Vec<AggState>)>> = HashMap::new();
        for ((key, bucket), group) in groups {
            let entry = totals.entry(key.clone()).or_insert_with(|| (group.keys.clone(), self.fresh_states()));
            for (a, b) in entry.1.iter_mut().zip(&group.states) {
                a.merge(b.clone());
            }
            if let Some(bucket) = bucket {
                by_bucket.entry(key).or_default().push((bucket, group.states));
            }
        }
        let mut ranked: Vec<Ranked> = totals
            .into_iter()
            .map(|(key, (keys, states))| Ranked { values: self.evaluate(&states), key, keys, series: Vec::new() })
            .collect();
        self.keep_top(&mut ranked);
        if let Some(buckets) = self.buckets {
            for row in &mut ranked {
                let mut series: Vec<Option<Vec<AggState>>> = (0..buckets.count).map(|_| None).collect();
                for (bucket, states) in by_bucket.remove(&row.key).unwrap_or_default() {
                    if let Some(slot) = buckets.index(bucket).and_then(|i| series.get_mut(i as usize)) {
                        *slot = Some(states);
                    }
                }
                let empty = self.fresh_states();
                row.series = series.iter().map(|s| self.evaluate(s.as_deref().unwrap_or(&empty))).collect();
            }
        }
        ranked
    }

    /// The result table.
    fn emit(&self, mut ranked: Vec<Ranked>) -> QueryResult {
        if ranked.is_empty() && self.query.facets.is_empty() {
            let empty = self.fresh_states();
            let series = match self.buckets {
                Some(b) => (0..b.count).map(|_| self.evaluate(&empty)).collect(),
                None => Vec::new(),
            };
            ranked.push(Ranked { key: Vec::new(), keys: Vec::new(), values: self.evaluate(&empty), series });
        }
        let mut names: Vec<String> = Vec::new();
        if self.buckets.is_some() {
            names.push("timestamp".into());
        }
        names.extend(self.query.facets.iter().map(|f| f.to_string()));
        names.extend(self.columns.iter().map(|c| c.name.clone()));
        let mut rows = Vec::new();
        match self.buckets {
            None => {
                for row in ranked {
                    let mut cells = row.keys;
                    cells.extend(row.values);
                    rows.push(cells);
                }
            }
            Some(buckets) => {
                for b in 0..buckets.count {
                    let start = buckets.first + b as i64 * buckets.interval;
                    for row in &ranked {
                        let mut cells = vec![Value::Timestamp(start)];
                        cells.extend(row.keys.iter().cloned());
                        cells.extend(row.series.get(b as usize).cloned().unwrap_or_default());
                        rows.push(cells);
                    }
                }
            }
        }
        QueryResult { columns: names, rows, timeseries: self.buckets.is_some(), facet_count: self.query.facets.len() }
    }
}

/// Most passes a partitioned FACET may split into before it gives up (keys whose
/// hashes agree in this many low bits cannot be told apart).
const PARTITIONS_MAX: u64 = 1 << 16;

impl<'a> Executor<'a> {
    fn new(snapshot: &'a Snapshot, options: &'a ExecOptions) -> Result<Self> {
        let parts = snapshot.parts().map_err(engine)?;
        Ok(Executor { snapshot, options, parts })
    }

    fn threads(&self) -> usize {
        let cores = if self.options.threads == 0 {
            std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2)
        } else {
            self.options.threads
        };
        cores.clamp(1, self.parts.len().max(1))
    }

    fn groups_max(&self) -> usize {
        if self.options.groups_max == 0 {
            DEFAULT_GROUPS_MAX
        } else {
            self.options.groups_max
        }
    }

    fn select(&self, query: &Query, plan: Option<&mut Vec<Vec<Value>>>) -> Result<QueryResult> {
        let (since, until) = query.time_range(self.options.now_unix_nano);
        let aggregates: Vec<&Aggregate> = query
            .select
            .iter()
            .filter_map(|item| match item {
                SelectItem::Aggregate { expr, .. } => Some(expr.aggregates()),
                _ => None,
            })
            .flatten()
            .collect();
        let interval = match query.timeseries {
            None => None,
            Some(Timeseries::Interval(ns)) => Some(ns.max(1) as i64),
            Some(Timeseries::Auto) => {
                let (lo, hi) = self.data_range(since, until);
                Some(auto_interval(hi.saturating_sub(lo)))
            }
        };
        if let (Some(interval), Some(lo), Some(hi)) = (interval, since, until) {
            if (hi.saturating_sub(lo) / interval) as u64 > MAX_BUCKETS {
                return Err(too_many_buckets());
            }
        }
        let buckets = match interval {
            Some(interval) => {
                let (lo, hi) = self.data_range(since, until);
                let first = lo.div_euclid(interval) * interval;
                let last = (hi - 1).div_euclid(interval) * interval;
                let count = ((last - first) / interval) as u64 + 1;
                if count > MAX_BUCKETS {
                    return Err(too_many_buckets());
                }
                Some(Buckets { first, interval, count })
            }
            None => None,
        };
        // Every bucket of one facet key must fit in a pass, or splitting cannot help.
        let groups_max = self.groups_max().max(2 * buckets.map_or(1, |b| b.count as usize));
        let mut spec = PassSpec {
            query,
            since,
            until,
            buckets,
            aggregates: &aggregates,
            explain: plan.is_some(),
            partition: Partition::ALL,
            groups_max,
        };
        if !query.is_aggregate() {
            let Some(accumulator) = self.run_pass(&spec)? else {
                return Err(QueryError::Internal("a row query overflowed its groups".into()));
            };
            if let Some(plan) = plan {
                push_notes(plan, &accumulator.notes);
            }
            return self.finish_rows(query, accumulator.rows);
        }
        let agg_plan = self.agg_plan(query, &aggregates, since, until, buckets);
        // Pass after pass: a pass whose groups overflow the bound is split in two by key
        // hash, so each surviving pass holds at most `groups_max` groups and only the
        // top rows of each are kept.
        let mut work = vec![Partition::ALL];
        let mut ranked: Vec<Ranked> = Vec::new();
        let mut passes = 0u64;
        let mut widest = 1u64;
        let mut first_notes = None;
        while let Some(partition) = work.pop() {
            spec.partition = partition;
            spec.explain = plan.is_some() && first_notes.is_none();
            match self.run_pass(&spec)? {
                Some(accumulator) => {
                    passes += 1;
                    if spec.explain {
                        first_notes = Some(accumulator.notes);
                    }
                    ranked.extend(agg_plan.rank(accumulator.groups));
                    agg_plan.keep_top(&mut ranked);
                }
                None => {
                    if query.facets.is_empty() || partition.modulus >= PARTITIONS_MAX {
                        return Err(QueryError::Execution(format!(
                            "more than {groups_max} groups in one pass even after splitting the FACET keys {} ways",
                            partition.modulus
                        )));
                    }
                    // Halves first; a key set that overflowed once already is large, so
                    // later splits go four ways, which saves most of the passes that
                    // would only overflow again.
                    let ways = if partition.modulus == 1 { 2 } else { 4 };
                    let modulus = partition.modulus * ways;
                    widest = widest.max(modulus);
                    for k in (0..ways).rev() {
                        work.push(Partition { modulus, residue: partition.residue + k * partition.modulus });
                    }
                }
            }
        }
        if let Some(plan) = plan {
            if let Some(notes) = &first_notes {
                push_notes(plan, notes);
            }
            let detail = if passes > 1 {
                format!(
                    "more than {groups_max} groups: partitioned by facet-key hash into {passes} passes (up to 1/{widest} of the keys each), keeping the top {} rows",
                    if agg_plan.limit == usize::MAX { "all".to_string() } else { agg_plan.limit.to_string() }
                )
            } else {
                format!("one pass (at most {groups_max} groups held)")
            };
            plan.push(vec![Value::Str("facet".into()), Value::Str(detail)]);
        }
        Ok(agg_plan.emit(ranked))
    }

    fn agg_plan<'q>(
        &self,
        query: &'q Query,
        aggregates: &'q [&'q Aggregate],
        since: Option<i64>,
        until: Option<i64>,
        buckets: Option<Buckets>,
    ) -> AggPlan<'q> {
        let mut columns: Vec<AggColumn> = Vec::new();
        for (i, item) in query.select.iter().enumerate() {
            if let SelectItem::Aggregate { expr, alias } = item {
                match expr {
                    AggregateExpr::Aggregate(Aggregate::Percentile { field, percentiles }) if alias.is_none() => {
                        for (p, value) in percentiles.iter().enumerate() {
                            columns.push(AggColumn {
                                item: i,
                                part: p,
                                name: format!("percentile({field}, {})", fmt_number(*value)),
                            });
                        }
                    }
                    _ => columns.push(AggColumn { item: i, part: 0, name: item.column_name() }),
                }
            }
        }
        let (range_lo, range_hi) = self.data_range(since, until);
        let window = match buckets {
            Some(b) => b.interval,
            None => range_hi.saturating_sub(range_lo).max(1),
        };
        // Order: ORDER BY, else the first aggregate column descending, then keys.
        let order: Vec<(Option<usize>, Option<usize>, bool)> = if query.order_by.is_empty() {
            vec![(Some(0), None, true)]
        } else {
            query
                .order_by
                .iter()
                .map(|o| match &o.key {
                    OrderKey::Aggregate(expr) => {
                        let position = query
                            .select
                            .iter()
                            .position(|s| matches!(s, SelectItem::Aggregate { expr: e, .. } if e == expr));
                        let column = position.and_then(|p| columns.iter().position(|c| c.item == p));
                        (column, None, o.descending)
                    }
                    OrderKey::Field(f) => (None, query.facets.iter().position(|x| x == f), o.descending),
                })
                .collect()
        };
        let limit = match query.limit {
            Some(Limit::N(n)) => usize::try_from(n).unwrap_or(usize::MAX),
            Some(Limit::Max) => usize::MAX,
            None if !query.facets.is_empty() => Query::DEFAULT_FACET_LIMIT as usize,
            None => usize::MAX,
        };
        AggPlan { query, aggregates, columns, order, limit, window, buckets }
    }

    /// The time range to bucket over: the query's bounds, or the data's.
    fn data_range(&self, since: Option<i64>, until: Option<i64>) -> (i64, i64) {
        let (lo, hi) = self.snapshot.time_range().map(|(a, b)| (a as i64, b as i64 + 1)).unwrap_or((0, 1));
        (since.unwrap_or(lo), until.unwrap_or(hi))
    }

    /// Runs every part on all cores; each thread merges its parts' partial states into
    /// its own accumulator, and the accumulators merge at the end. `None` when the
    /// pass held more than `spec.groups_max` groups.
    fn run_pass(&self, spec: &PassSpec<'_>) -> Result<Option<Accumulator>> {
        let next = std::sync::atomic::AtomicUsize::new(0);
        let overflow = AtomicBool::new(false);
        let failed = AtomicBool::new(false);
        let work = || -> Result<Accumulator> {
            let mut accumulator = Accumulator::default();
            loop {
                if overflow.load(AtomicOrdering::Relaxed) || failed.load(AtomicOrdering::Relaxed) {
                    break;
                }
                let index = next.fetch_add(1, AtomicOrdering::Relaxed);
                let Some(part) = self.parts.get(index) else { break };
                match self.run_part(part, index, spec, &mut accumulator, &overflow) {
                    Ok(true) => {}
                    Ok(false) => {
                        overflow.store(true, AtomicOrdering::Relaxed);
                        break;
                    }
                    Err(e) => {
                        failed.store(true, AtomicOrdering::Relaxed);
                        return Err(e);
                    }
                }
            }
            Ok(accumulator)
        };
        let threads = self.threads();
        let outcomes: Vec<Result<Accumulator>> = std::thread::scope(|scope| {
            let handles: Vec<_> = (1..threads).map(|_| scope.spawn(work)).collect();
            let mut outcomes = vec![work()];
            for handle in handles {
                outcomes.push(handle.join().unwrap_or_else(|_| Err(QueryError::Internal("a worker panicked".into()))));
            }
            outcomes
        });
        let mut merged: Option<Accumulator> = None;
        for outcome in outcomes {
            let accumulator = outcome?;
            match merged.as_mut() {
                None => merged = Some(accumulator),
                Some(m) => {
                    for (key, group) in accumulator.groups {
                        merge_group(&mut m.groups, key, group);
                    }
                    if m.groups.len() > spec.groups_max {
                        overflow.store(true, AtomicOrdering::Relaxed);
                    }
                    m.rows.extend(accumulator.rows);
                    m.notes.extend(accumulator.notes);
                }
            }
        }
        if overflow.load(AtomicOrdering::Relaxed) {
            return Ok(None);
        }
        let mut merged = merged.unwrap_or_default();
        merged.notes.sort_by_key(|(index, _, _)| *index);
        Ok(Some(merged))
    }

    /// Runs one part into `accumulator`; false when its groups overflowed the bound.
    fn run_part(
        &self,
        part: &Part,
        index: usize,
        spec: &PassSpec<'_>,
        accumulator: &mut Accumulator,
        overflow: &AtomicBool,
    ) -> Result<bool> {
        let query = spec.query;
        let (since, until) = (spec.since, spec.until);
        let segment = part.segment();
        let mut notes = Vec::new();
        let rows = segment.row_count() as u32;
        let (seg_lo, seg_hi) =
            (segment.directory().min_start_unix_nano as i64, segment.directory().max_start_unix_nano as i64);
        if rows == 0 || since.is_some_and(|s| seg_hi < s) || until.is_some_and(|u| seg_lo >= u) {
            if spec.explain {
                notes.push(format!("pruned by time range ({rows} rows)"));
                accumulator.notes.push((index, part.name(), notes));
            }
            return Ok(true);
        }
        // Candidates: rows in blocks whose start zone map meets the time range; rows of
        // blocks wholly inside it need no check of their start times.
        let mut inside = RoaringBitmap::new();
        let mut straddling = RoaringBitmap::new();
        let start_meta = segment.column_meta(SegIntrinsic::Start as usize).map_err(engine)?;
        let mut pruned_blocks = 0;
        for (b, block) in start_meta.blocks.iter().enumerate() {
            let lo = block.min as i64;
            let hi = block.max as i64;
            if since.is_some_and(|s| hi < s) || until.is_some_and(|u| lo >= u) {
                pruned_blocks += 1;
                continue;
            }
            let first = (b * BLOCK_ROWS) as u32;
            let last = (first + BLOCK_ROWS as u32).min(rows);
            if since.is_none_or(|s| lo >= s) && until.is_none_or(|u| hi < u) {
                inside.insert_range(first..last);
            } else {
                straddling.insert_range(first..last);
            }
        }
        let mut planner = Planner {
            segment,
            reader: Reader::new(segment),
            plan: if spec.explain { Some(&mut notes) } else { None },
            cancel: self.options.cancel.as_deref(),
        };
        if spec.explain {
            let whole = inside.len();
            planner.note(|| {
                format!("{rows} rows, {pruned_blocks} blocks pruned by time, {whole} rows wholly inside the time range")
            });
        }
        // The WHERE filter runs first, over every row the zone maps kept: its indexed
        // leaves are cheap. Then the bounds are checked only on the selected rows of
        // straddling blocks (rows are in time order, so at most a block or two at each
        // bound; in format 1 and 2 segments, sorted by trace id, nearly every block).
        let candidates = &inside | &straddling;
        let mut selected = match &query.filter {
            Some(filter) => planner.eval(filter, &candidates, false)?.t,
            None => candidates,
        };
        let to_check = &selected & &straddling;
        if !to_check.is_empty() {
            planner.check_cancel()?;
            let (in_range, picked_blocks) = start_in_range(segment, &to_check, since, until)?;
            let (checked, kept) = (to_check.len(), in_range.len());
            planner.note(|| {
                format!(
                    "time bounds checked on the {checked} selected rows of straddling blocks ({picked_blocks} blocks read at those rows only), {kept} in range"
                )
            });
            selected -= &to_check;
            selected |= in_range;
        }
        // Filters of filter(...) aggregates, evaluated once per part.
        let mut filter_sets: Vec<Option<RoaringBitmap>> = Vec::with_capacity(spec.aggregates.len());
        for aggregate in spec.aggregates {
            filter_sets.push(match aggregate {
                Aggregate::Filter { filter, .. } => Some(planner.eval(filter, &selected, false)?.t),
                _ => None,
            });
        }
        let count = selected.len();
        planner.note(|| format!("{count} rows selected"));
        let reader = std::mem::replace(&mut planner.reader, Reader::new(segment));
        drop(planner);
        let mut context = group::PartContext {
            segment,
            reader,
            selected: &selected,
            filter_sets: &filter_sets,
            spec,
            cancel: self.options.cancel.as_deref(),
            overflow,
            notes: &mut notes,
        };
        let fits = if query.is_aggregate() {
            let groups = &mut accumulator.groups;
            let fits = context.aggregate(groups)?;
            fits && groups.len() <= spec.groups_max
        } else {
            context.rows(index, &mut accumulator.rows)?;
            true
        };
        if spec.explain {
            accumulator.notes.push((index, part.name(), notes));
        }
        Ok(fits)
    }

    fn finish_rows(&self, query: &Query, mut rows: Vec<(Vec<Value>, usize, u32)>) -> Result<QueryResult> {
        let descending: Vec<bool> =
            if query.order_by.is_empty() { vec![true] } else { query.order_by.iter().map(|o| o.descending).collect() };
        rows.sort_by(|a, b| {
            for (i, (x, y)) in a.0.iter().zip(&b.0).enumerate() {
                let o = x.total_cmp(y);
                let o = if descending.get(i).copied().unwrap_or(false) { o.reverse() } else { o };
                if o.is_ne() {
                    return o;
                }
            }
            (a.1, a.2).cmp(&(b.1, b.2))
        });
        let limit = match query.limit {
            Some(Limit::N(n)) => n as usize,
            Some(Limit::Max) => usize::MAX,
            None => DEFAULT_ROW_LIMIT as usize,
        };
        rows.truncate(limit);
        // Materialize the spans of the rows kept, part by part.
        let mut by_part: BTreeMap<usize, Vec<u32>> = BTreeMap::new();
        for (_, part, row) in &rows {
            by_part.entry(*part).or_default().push(*row);
        }
        let mut spans: HashMap<(usize, u32), Span> = HashMap::new();
        for (part, part_rows) in by_part {
            let segment =
                self.parts.get(part).map(|p| p.segment()).ok_or_else(|| QueryError::Internal("part".into()))?;
            let materialized = segment.spans(&part_rows).map_err(engine)?;
            for (row, span) in part_rows.into_iter().zip(materialized) {
                spans.insert((part, row), span);
            }
        }
        let ordered: Vec<Span> = rows.iter().filter_map(|(_, p, r)| spans.remove(&(*p, *r))).collect();
        let star = query.select.iter().any(|s| matches!(s, SelectItem::Star));
        if star {
            return Ok(spans_table(&ordered));
        }
        let fields: Vec<&Field> = query
            .select
            .iter()
            .filter_map(|s| match s {
                SelectItem::Field(f) => Some(f),
                _ => None,
            })
            .collect();
        Ok(QueryResult {
            columns: fields.iter().map(|f| f.to_string()).collect(),
            rows: ordered.iter().map(|s| fields.iter().map(|f| field_of_span(s, f)).collect()).collect(),
            ..Default::default()
        })
    }
}

/// The rows of `rows` whose start lies in `[since, until)`, reading `start` block by
/// block, only at those rows where a block holds few of them; with the number of
/// blocks read that way.
fn start_in_range(
    segment: &Segment,
    rows: &RoaringBitmap,
    since: Option<i64>,
    until: Option<i64>,
) -> Result<(RoaringBitmap, u64)> {
    let column = SegIntrinsic::Start as usize;
    let mut kept = RoaringBitmap::new();
    let mut picked = 0u64;
    let mut locals: Vec<u32> = Vec::new();
    let blocks = segment.row_count().div_ceil(BLOCK_ROWS);
    for block in 0..blocks {
        let first = (block * BLOCK_ROWS) as u32;
        locals.clear();
        locals.extend(rows.range(first..first.saturating_add(BLOCK_ROWS as u32)).map(|r| r - first));
        if locals.is_empty() {
            continue;
        }
        let starts: Vec<Option<u64>> = if locals.len() * group::PICK_RATIO < BLOCK_ROWS {
            picked += 1;
            segment.read_block_rows(column, block, &locals).map_err(engine)?
        } else {
            let decoded = segment.read_block(column, block).map_err(engine)?;
            locals.iter().map(|&local| decoded.int(local as usize)).collect()
        };
        for (&local, start) in locals.iter().zip(starts) {
            let Some(start) = start else { continue };
            let start = start as i64;
            if since.is_none_or(|s| start >= s) && until.is_none_or(|u| start < u) {
                kept.insert(first + local);
            }
        }
    }
    Ok((kept, picked))
}

fn too_many_buckets() -> QueryError {
    QueryError::Execution(format!(
        "TIMESERIES would make more than {MAX_BUCKETS} buckets; use a larger interval or AUTO"
    ))
}

fn push_notes(plan: &mut Vec<Vec<Value>>, notes: &[(usize, String, Vec<String>)]) {
    for (_, name, notes) in notes {
        for note in notes {
            plan.push(vec![Value::Str(name.clone()), Value::Str(note.clone())]);
        }
    }
}

fn fmt_number(v: f64) -> String {
    if v == v.trunc() {
        format!("{v:.0}")
    } else {
        format!("{v}")
    }
}

/// The field an aggregate reads, if any.
fn agg_field(aggregate: &Aggregate) -> Option<&Field> {
    match aggregate {
        Aggregate::Count(f) => f.as_ref(),
        Aggregate::Sum(f) | Aggregate::Avg(f) | Aggregate::Min(f) | Aggregate::Max(f) | Aggregate::Uniq(f) => Some(f),
        Aggregate::Percentile { field, .. } | Aggregate::Histogram { field, .. } => Some(field),
        Aggregate::Rate { aggregate, .. } | Aggregate::Filter { aggregate, .. } => agg_field(aggregate),
    }
}

/// Evaluates an aggregate expression: `part` picks one value of a multi-valued
/// aggregate; arithmetic works on numbers (division by zero gives null).
fn eval_agg_expr(
    expr: &AggregateExpr,
    states: &[AggState],
    aggregates: &[&Aggregate],
    part: usize,
    window_ns: i64,
) -> Value {
    match expr {
        AggregateExpr::Aggregate(a) => {
            let index = aggregates.iter().position(|x| std::ptr::eq(*x, a));
            match index.and_then(|i| states.get(i)) {
                Some(state) => match state.output(window_ns) {
                    AggOutput::One(v) => v,
                    AggOutput::Many(values) => values.get(part).cloned().unwrap_or(Value::Null),
                },
                None => Value::Null,
            }
        }
        AggregateExpr::Number(n) => Value::Float(*n),
        AggregateExpr::Neg(inner) => match eval_agg_expr(inner, states, aggregates, 0, window_ns).as_f64() {
            Some(v) => Value::Float(-v),
            None => Value::Null,
        },
        AggregateExpr::Binary { op, left, right } => {
            let (Some(a), Some(b)) = (
                eval_agg_expr(left, states, aggregates, 0, window_ns).as_f64(),
                eval_agg_expr(right, states, aggregates, 0, window_ns).as_f64(),
            ) else {
                return Value::Null;
            };
            let v = match op {
                crate::ast::ArithOp::Add => a + b,
                crate::ast::ArithOp::Sub => a - b,
                crate::ast::ArithOp::Mul => a * b,
                crate::ast::ArithOp::Div => {
                    if b == 0.0 {
                        return Value::Null;
                    }
                    a / b
                }
            };
            Value::Float(v)
        }
    }
}

/// An interval giving about 60 buckets over `span_ns`, from a list of round ones.
pub fn auto_interval(span_ns: i64) -> i64 {
    const S: i64 = 1_000_000_000;
    const NICE: [i64; 14] = [
        S,
        5 * S,
        10 * S,
        30 * S,
        60 * S,
        300 * S,
        600 * S,
        1800 * S,
        3600 * S,
        3 * 3600 * S,
        6 * 3600 * S,
        12 * 3600 * S,
        86_400 * S,
        7 * 86_400 * S,
    ];
    NICE.iter().copied().find(|&i| span_ns / i <= 60).unwrap_or(7 * 86_400 * S)
}
