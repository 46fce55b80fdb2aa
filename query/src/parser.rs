//! The SpanQL parser: tokens to a checked [`Statement`], by recursive descent.
//!
//! Grammar (keywords case-insensitive; clauses after `FROM spans` in any order, each
//! at most once; see `docs/QUERY.md` for the language reference):
//!
//! ```text
//! statement  := (SELECT query | TRACE string | EXPLAIN statement) [';']
//! query      := items FROM spans clause*
//! items      := '*' | item (',' item)*
//! item       := arith [AS (word | `name` | 'string')]
//! arith      := term (('+' | '-') term)*
//! term       := factor (('*' | '/') factor)*
//! factor     := '-' factor | number | duration | '(' arith ')' | call | field
//! call       := count '(' ('*' | field) ')' | (sum|avg|min|max|uniq) '(' field ')'
//!             | percentile '(' field (',' number)+ ')'
//!             | histogram '(' field ',' ceiling [',' integer] ')'
//!             | rate '(' call ',' interval ')' | filter '(' call ',' WHERE or ')'
//! clause     := WHERE or | FACET field (',' field)* | SINCE time | UNTIL time
//!             | TIMESERIES [interval | AUTO] | ORDER BY key [ASC|DESC] (',' ...)*
//!             | LIMIT (integer | MAX)
//! or         := and (OR and)*
//! and        := not (AND not)*
//! not        := NOT not | '(' or ')' | predicate
//! predicate  := field (cmp literal | [NOT] IN '(' literal (',' literal)* ')'
//!                      | [NOT] LIKE string | IS [NOT] NULL)
//!             | literal cmp field
//! time       := string | integer | interval ago | now
//! interval   := duration | number unit
//! ```
//!
//! Nesting (parentheses, `NOT`, `-`, aggregates inside `filter` and `rate`, arithmetic
//! chains) is limited to [`MAX_DEPTH`] levels, so no query can exhaust the stack.
#![deny(clippy::unwrap_used, clippy::indexing_slicing)]

use crate::ast::{
    Aggregate, AggregateExpr, ArithOp, CompareOp, Expr, Field, Intrinsic, Limit, OrderBy, OrderKey, Query, Scope,
    SelectItem, Statement, TimeBound, Timeseries,
};
use crate::check::{self, Marks, RawLiteral, RawValue};
use crate::error::QueryError;
use crate::lexer::{decimal_to_nanos, tokenize, truncate, Position, Token, TokenKind};
use crate::time::parse_rfc3339;

/// The deepest a query may nest.
pub const MAX_DEPTH: usize = 64;

/// Keywords that can't be field names without backquotes.
pub const RESERVED: [&str; 19] = [
    "SELECT",
    "FROM",
    "WHERE",
    "FACET",
    "SINCE",
    "UNTIL",
    "TIMESERIES",
    "ORDER",
    "BY",
    "LIMIT",
    "AND",
    "OR",
    "NOT",
    "IN",
    "LIKE",
    "IS",
    "NULL",
    "TRUE",
    "FALSE",
];

/// The aggregate functions.
pub const FUNCTIONS: [&str; 10] =
    ["count", "sum", "avg", "min", "max", "percentile", "uniq", "histogram", "rate", "filter"];

const CLAUSES: [&str; 7] = ["WHERE", "FACET", "SINCE", "UNTIL", "TIMESERIES", "ORDER", "LIMIT"];

/// Interval unit words and their length in nanoseconds.
const INTERVAL_UNITS: [(&str, u64); 12] = [
    ("millisecond", 1_000_000),
    ("milliseconds", 1_000_000),
    ("second", 1_000_000_000),
    ("seconds", 1_000_000_000),
    ("minute", 60_000_000_000),
    ("minutes", 60_000_000_000),
    ("hour", 3_600_000_000_000),
    ("hours", 3_600_000_000_000),
    ("day", 86_400_000_000_000),
    ("days", 86_400_000_000_000),
    ("week", 604_800_000_000_000),
    ("weeks", 604_800_000_000_000),
];

/// True if `word` is a reserved keyword, in any case.
pub fn is_reserved(word: &str) -> bool {
    RESERVED.iter().any(|keyword| keyword.eq_ignore_ascii_case(word))
}

/// Parses and checks one SpanQL statement.
///
/// Never panics, whatever the text; every error names a line and column.
pub fn parse(text: &str) -> Result<Statement, QueryError> {
    let tokens = tokenize(text)?;
    let mut parser = Parser::new(text, tokens)?;
    let statement = parser.statement()?;
    parser.finish()?;
    Ok(statement)
}

/// What a select-list or ORDER BY expression turned out to be.
enum Operand {
    /// A bare field, and where it was written.
    Field(Field, Position),
    /// Arithmetic over aggregates and numbers, with its tree depth.
    Value(AggregateExpr, usize),
}

struct Parser<'a> {
    text: &'a str,
    tokens: Vec<Token>,
    index: usize,
    depth: usize,
    end: Token,
}

impl<'a> Parser<'a> {
    fn new(text: &'a str, tokens: Vec<Token>) -> Result<Parser<'a>, QueryError> {
        let end = tokens
            .last()
            .filter(|token| token.kind == TokenKind::End)
            .cloned()
            .ok_or_else(|| QueryError::Internal("the lexer returned no end token".to_string()))?;
        Ok(Parser { text, tokens, index: 0, depth: 0, end })
    }

    // ---- token helpers ----

    fn peek(&self) -> &Token {
        self.tokens.get(self.index).unwrap_or(&self.end)
    }

    fn peek_nth(&self, n: usize) -> &Token {
        self.tokens.get(self.index.saturating_add(n)).unwrap_or(&self.end)
    }

    fn advance(&mut self) -> Token {
        let token = self.peek().clone();
        if self.index < self.tokens.len() {
            self.index += 1;
        }
        token
    }

    fn raw(&self, token: &Token) -> &'a str {
        self.text.get(token.start.offset..token.end).unwrap_or("")
    }

    fn source(&self, start: Position, end: usize) -> String {
        self.text.get(start.offset..end).unwrap_or("").to_string()
    }

    fn at(&self, kind: &TokenKind) -> bool {
        self.peek().kind == *kind
    }

    fn eat(&mut self, kind: &TokenKind) -> Option<Token> {
        if self.at(kind) {
            Some(self.advance())
        } else {
            None
        }
    }

    fn is_keyword(token: &Token, keyword: &str) -> bool {
        matches!(&token.kind, TokenKind::Word(word) if word.eq_ignore_ascii_case(keyword))
    }

    fn at_keyword(&self, keyword: &str) -> bool {
        Self::is_keyword(self.peek(), keyword)
    }

    fn eat_keyword(&mut self, keyword: &str) -> Option<Token> {
        if self.at_keyword(keyword) {
            Some(self.advance())
        } else {
            None
        }
    }

    /// The token as an error message names it.
    fn describe(&self, token: &Token) -> String {
        match &token.kind {
            TokenKind::End => "the end of the query".to_string(),
            TokenKind::Word(word) if is_reserved(word) => word.to_ascii_uppercase(),
            TokenKind::Word(word) => format!("'{}'", truncate(word)),
            TokenKind::Quoted(_) => truncate(self.raw(token)),
            TokenKind::String(_) => format!("string {}", truncate(self.raw(token))),
            TokenKind::Number(number) => format!("number {}", truncate(number)),
            TokenKind::Duration(_) => format!("duration {}", truncate(self.raw(token))),
            _ => format!("'{}'", self.raw(token)),
        }
    }

    fn expected(&self, what: &str, token: &Token) -> QueryError {
        QueryError::syntax(token.start, format!("expected {what}, found {}", self.describe(token)))
    }

    fn expected_with_hint(&self, what: &str, token: &Token, hint: Option<String>) -> QueryError {
        let mut message = format!("expected {what}, found {}", self.describe(token));
        if let Some(hint) = hint {
            message.push_str(" (");
            message.push_str(&hint);
            message.push(')');
        }
        QueryError::syntax(token.start, message)
    }

    fn expect(&mut self, kind: &TokenKind, what: &str) -> Result<Token, QueryError> {
        match self.eat(kind) {
            Some(token) => Ok(token),
            None => Err(self.expected(what, self.peek())),
        }
    }

    fn enter(&mut self, token: &Token) -> Result<(), QueryError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(QueryError::syntax(token.start, format!("the query nests more than {MAX_DEPTH} levels deep")));
        }
        Ok(())
    }

    fn leave(&mut self) {
        self.depth = self.depth.saturating_sub(1);
    }

    /// A "did you mean" hint for a word close to one of `candidates`.
    fn did_you_mean(token: &Token, candidates: &[&str]) -> Option<String> {
        let TokenKind::Word(word) = &token.kind else {
            return None;
        };
        closest(word, candidates).map(|candidate| format!("did you mean {candidate}?"))
    }

    // ---- statements ----

    fn statement(&mut self) -> Result<Statement, QueryError> {
        let token = self.peek().clone();
        if Self::is_keyword(&token, "EXPLAIN") {
            self.advance();
            if self.at_keyword("EXPLAIN") {
                return Err(QueryError::syntax(
                    self.peek().start,
                    "EXPLAIN takes a SELECT or TRACE statement, not another EXPLAIN",
                ));
            }
            return Ok(Statement::Explain(Box::new(self.statement()?)));
        }
        if Self::is_keyword(&token, "TRACE") {
            self.advance();
            return self.trace();
        }
        if Self::is_keyword(&token, "SELECT") {
            self.advance();
            return Ok(Statement::Select(self.query()?));
        }
        Err(self.expected_with_hint(
            "SELECT, TRACE or EXPLAIN",
            &token,
            Self::did_you_mean(&token, &["SELECT", "TRACE", "EXPLAIN"]),
        ))
    }

    fn finish(&mut self) -> Result<(), QueryError> {
        self.eat(&TokenKind::Semicolon);
        let token = self.peek().clone();
        if token.kind == TokenKind::End {
            Ok(())
        } else {
            Err(self.expected("the end of the query", &token))
        }
    }

    fn trace(&mut self) -> Result<Statement, QueryError> {
        let token = self.advance();
        match &token.kind {
            TokenKind::String(text) => check::parse_trace_id(text).map(Statement::Trace).ok_or_else(|| {
                QueryError::type_error(
                    token.start,
                    format!("a trace id is 32 hex digits or an X-Ray id, found '{}'", truncate(text)),
                )
            }),
            TokenKind::Word(_) | TokenKind::Number(_) | TokenKind::Quoted(_) => {
                let raw = self.raw(&token).trim_matches('`');
                Err(self.expected_with_hint(
                    "a quoted trace id after TRACE",
                    &token,
                    Some(format!("did you mean TRACE '{}'?", truncate(raw))),
                ))
            }
            _ => Err(self.expected("a quoted trace id after TRACE", &token)),
        }
    }

    fn query(&mut self) -> Result<Query, QueryError> {
        let mut marks = Marks::default();
        let mut query = Query { select: self.select_list(&mut marks)?, ..Query::default() };
        self.from()?;
        let mut seen: Vec<&'static str> = Vec::new();
        loop {
            let token = self.peek().clone();
            let Some(clause) = CLAUSES.into_iter().find(|clause| Self::is_keyword(&token, clause)) else {
                break;
            };
            if seen.contains(&clause) {
                let hint = match clause {
                    "WHERE" => " (join conditions with AND or OR)",
                    "FACET" => " (list every field in one FACET: FACET a, b)",
                    "ORDER" => " (list every key in one ORDER BY: ORDER BY a, b)",
                    _ => "",
                };
                let name = if clause == "ORDER" { "ORDER BY" } else { clause };
                return Err(QueryError::syntax(token.start, format!("duplicate {name} clause{hint}")));
            }
            seen.push(clause);
            self.advance();
            match clause {
                "WHERE" => query.filter = Some(self.or_expr()?),
                "FACET" => {
                    marks.facet = Some(token.start);
                    loop {
                        let context = if query.facets.is_empty() { "after FACET" } else { "after ','" };
                        marks.facets.push(self.peek().start);
                        let (field, _) = self.field(context)?;
                        query.facets.push(field);
                        if self.eat(&TokenKind::Comma).is_none() {
                            break;
                        }
                    }
                }
                "SINCE" => query.since = Some(self.time_bound("SINCE")?),
                "UNTIL" => {
                    marks.until = Some(self.peek().start);
                    query.until = Some(self.time_bound("UNTIL")?);
                }
                "TIMESERIES" => {
                    marks.timeseries = Some(token.start);
                    query.timeseries = Some(self.timeseries()?);
                }
                "ORDER" => {
                    if self.eat_keyword("BY").is_none() {
                        return Err(self.expected("BY after ORDER", self.peek()));
                    }
                    query.order_by = self.order_by(&query.select, &mut marks)?;
                }
                _ => query.limit = Some(self.limit()?),
            }
        }
        let token = self.peek().clone();
        if !matches!(token.kind, TokenKind::End | TokenKind::Semicolon) {
            let hint = if seen.last() == Some(&"WHERE") && self.starts_predicate(&token) {
                Some("join conditions with AND or OR".to_string())
            } else {
                Self::did_you_mean(&token, &["WHERE", "FACET", "SINCE", "UNTIL", "TIMESERIES", "ORDER", "LIMIT"])
            };
            return Err(self.expected_with_hint(
                "WHERE, FACET, SINCE, UNTIL, TIMESERIES, ORDER BY, LIMIT or the end of the query",
                &token,
                hint,
            ));
        }
        check::query(&query, &marks)?;
        Ok(query)
    }

    fn from(&mut self) -> Result<(), QueryError> {
        let token = self.peek().clone();
        if !Self::is_keyword(&token, "FROM") {
            let hint = Self::did_you_mean(&token, &["FROM"]).or_else(|| {
                matches!(&token.kind, TokenKind::Word(word) if !is_reserved(word))
                    .then(|| "separate SELECT items with ','".to_string())
            });
            return Err(self.expected_with_hint("FROM after the SELECT list", &token, hint));
        }
        self.advance();
        let table = self.peek().clone();
        match &table.kind {
            TokenKind::Word(word) if word.eq_ignore_ascii_case("spans") => {
                self.advance();
                Ok(())
            }
            TokenKind::Word(word) if !is_reserved(word) => {
                Err(QueryError::syntax(table.start, format!("unknown table '{}', expected spans", truncate(word))))
            }
            _ => Err(self.expected("spans after FROM", &table)),
        }
    }

    // ---- SELECT list ----

    fn select_list(&mut self, marks: &mut Marks) -> Result<Vec<SelectItem>, QueryError> {
        let mut items = Vec::new();
        loop {
            let token = self.peek().clone();
            marks.select.push(token.start);
            if token.kind == TokenKind::Star {
                self.advance();
                if !items.is_empty() || self.at(&TokenKind::Comma) {
                    return Err(QueryError::syntax(
                        token.start,
                        "'*' selects every field and can't be combined with other SELECT items",
                    ));
                }
                items.push(SelectItem::Star);
                break;
            }
            let context = if items.is_empty() { "after SELECT" } else { "after ','" };
            items.push(self.select_item(context)?);
            if self.eat(&TokenKind::Comma).is_none() {
                break;
            }
        }
        Ok(items)
    }

    fn select_item(&mut self, context: &str) -> Result<SelectItem, QueryError> {
        let start = self.peek().clone();
        match self.arith(context)? {
            Operand::Field(field, _) => {
                if let Some(token) = self.eat_keyword("AS") {
                    return Err(QueryError::syntax(
                        token.start,
                        "AS names an aggregate, and a field keeps its own name",
                    ));
                }
                Ok(SelectItem::Field(field))
            }
            Operand::Value(expr, _) => {
                if !expr.has_aggregate() {
                    return Err(QueryError::type_error(
                        start.start,
                        "a SELECT item needs an aggregate such as count(*), or a field, not just numbers",
                    ));
                }
                let alias = if self.eat_keyword("AS").is_some() { Some(self.alias()?) } else { None };
                Ok(SelectItem::Aggregate { expr, alias })
            }
        }
    }

    fn alias(&mut self) -> Result<String, QueryError> {
        let token = self.peek().clone();
        let alias = match &token.kind {
            TokenKind::Word(word) if !is_reserved(word) && !word.ends_with('.') => word.clone(),
            TokenKind::Quoted(name) | TokenKind::String(name) => name.clone(),
            _ => return Err(self.expected("a name after AS", &token)),
        };
        if alias.is_empty() {
            return Err(QueryError::syntax(token.start, "an alias can't be empty"));
        }
        self.advance();
        Ok(alias)
    }

    // ---- arithmetic ----

    fn arith(&mut self, context: &str) -> Result<Operand, QueryError> {
        let mut left = self.term(context)?;
        loop {
            let op = match self.peek().kind {
                TokenKind::Plus => ArithOp::Add,
                TokenKind::Minus => ArithOp::Sub,
                _ => return Ok(left),
            };
            let op_token = self.advance();
            let context = format!("after '{}'", self.raw(&op_token));
            let right = self.term(&context)?;
            left = self.combine(op, left, right, &op_token)?;
        }
    }

    fn term(&mut self, context: &str) -> Result<Operand, QueryError> {
        let mut left = self.factor(context)?;
        loop {
            let op = match self.peek().kind {
                TokenKind::Star => ArithOp::Mul,
                TokenKind::Slash => ArithOp::Div,
                _ => return Ok(left),
            };
            let op_token = self.advance();
            let context = format!("after '{}'", self.raw(&op_token));
            let right = self.factor(&context)?;
            left = self.combine(op, left, right, &op_token)?;
        }
    }

    fn combine(&self, op: ArithOp, left: Operand, right: Operand, op_token: &Token) -> Result<Operand, QueryError> {
        let (left, left_depth) = Self::value(left)?;
        let (right, right_depth) = Self::value(right)?;
        let depth = left_depth.max(right_depth) + 1;
        if depth + self.depth > MAX_DEPTH {
            return Err(QueryError::syntax(
                op_token.start,
                format!("the query nests more than {MAX_DEPTH} levels deep"),
            ));
        }
        Ok(Operand::Value(AggregateExpr::Binary { op, left: Box::new(left), right: Box::new(right) }, depth))
    }

    /// An operand of arithmetic: a plain field there is an error.
    fn value(operand: Operand) -> Result<(AggregateExpr, usize), QueryError> {
        match operand {
            Operand::Value(expr, depth) => Ok((expr, depth)),
            Operand::Field(field, position) => Err(QueryError::type_error(
                position,
                format!(
                    "arithmetic combines aggregates and numbers, and {field} is a field \
                     (aggregate it, such as max({field}))"
                ),
            )),
        }
    }

    fn factor(&mut self, context: &str) -> Result<Operand, QueryError> {
        let token = self.peek().clone();
        match &token.kind {
            TokenKind::Minus => {
                self.advance();
                let next = self.peek().clone();
                match &next.kind {
                    TokenKind::Number(number) => {
                        self.advance();
                        let value = self.float(number, &next)?;
                        Ok(Operand::Value(AggregateExpr::Number(-value), 1))
                    }
                    TokenKind::Duration(nanos) => {
                        self.advance();
                        Ok(Operand::Value(AggregateExpr::Number(-(*nanos as f64)), 1))
                    }
                    _ => {
                        self.enter(&token)?;
                        let inner = self.factor("after '-'");
                        self.leave();
                        let (inner, depth) = Self::value(inner?)?;
                        Ok(Operand::Value(AggregateExpr::Neg(Box::new(inner)), depth + 1))
                    }
                }
            }
            TokenKind::Number(number) => {
                self.advance();
                Ok(Operand::Value(AggregateExpr::Number(self.float(number, &token)?), 1))
            }
            TokenKind::Duration(nanos) => {
                self.advance();
                Ok(Operand::Value(AggregateExpr::Number(*nanos as f64), 1))
            }
            TokenKind::LeftParen => {
                self.advance();
                self.enter(&token)?;
                let inner = self.arith("after '('");
                self.leave();
                let inner = inner?;
                let close = format!("')' to close the '(' at line {}, column {}", token.start.line, token.start.column);
                self.expect(&TokenKind::RightParen, &close)?;
                Ok(inner)
            }
            TokenKind::Word(word) if !is_reserved(word) && self.peek_nth(1).kind == TokenKind::LeftParen => {
                let (aggregate, _) = self.call()?;
                Ok(Operand::Value(AggregateExpr::Aggregate(aggregate), 1))
            }
            TokenKind::Word(word) if !is_reserved(word) => {
                let (field, position) = self.field(context)?;
                Ok(Operand::Field(field, position))
            }
            TokenKind::Quoted(_) => {
                let (field, position) = self.field(context)?;
                Ok(Operand::Field(field, position))
            }
            _ => Err(self.expected(&format!("an aggregate such as count(*), a field or a number {context}"), &token)),
        }
    }

    fn float(&self, number: &str, token: &Token) -> Result<f64, QueryError> {
        match number.parse::<f64>() {
            Ok(value) if value.is_finite() => Ok(value),
            _ => Err(QueryError::syntax(token.start, format!("number {} is out of range", truncate(number)))),
        }
    }

    // ---- aggregates ----

    /// `name(args)`, with the name and '(' next.
    fn call(&mut self) -> Result<(Aggregate, Position), QueryError> {
        let name_token = self.advance();
        let name = match &name_token.kind {
            TokenKind::Word(word) => word.to_ascii_lowercase(),
            _ => return Err(QueryError::Internal("call() without a function name".to_string())),
        };
        if !FUNCTIONS.contains(&name.as_str()) {
            return Err(unknown_function(&name, &name_token));
        }
        self.advance(); // '('
        self.enter(&name_token)?;
        let aggregate = self.call_arguments(&name);
        self.leave();
        let aggregate = aggregate?;
        let token = self.peek().clone();
        if self.eat(&TokenKind::RightParen).is_none() {
            let single = matches!(name.as_str(), "count" | "sum" | "avg" | "min" | "max" | "uniq");
            if single && token.kind == TokenKind::Comma {
                return Err(QueryError::syntax(token.start, format!("{name} takes one argument, found ','")));
            }
            return Err(self.expected(&format!("')' to close {name}("), &token));
        }
        Ok((aggregate, name_token.start))
    }

    fn call_arguments(&mut self, name: &str) -> Result<Aggregate, QueryError> {
        let context = format!("in {name}(...)");
        match name {
            "count" => {
                if self.eat(&TokenKind::Star).is_some() {
                    return Ok(Aggregate::Count(None));
                }
                let token = self.peek().clone();
                if Self::is_keyword(&token, "DISTINCT") {
                    return Err(QueryError::syntax(
                        token.start,
                        "count(DISTINCT ...) isn't SpanQL (use uniq(field) to count distinct values)",
                    ));
                }
                if token.kind == TokenKind::RightParen {
                    return Err(self.expected_with_hint(
                        "* or a field in count(...)",
                        &token,
                        Some("count(*) counts spans".to_string()),
                    ));
                }
                let (field, _) = self.field(&context)?;
                Ok(Aggregate::Count(Some(field)))
            }
            "sum" | "avg" | "min" | "max" | "uniq" => {
                let (field, position) = self.field(&context)?;
                check::aggregate_field(name, &field, position)?;
                Ok(match name {
                    "sum" => Aggregate::Sum(field),
                    "avg" => Aggregate::Avg(field),
                    "min" => Aggregate::Min(field),
                    "max" => Aggregate::Max(field),
                    _ => Aggregate::Uniq(field),
                })
            }
            "percentile" => {
                let (field, position) = self.field(&context)?;
                check::aggregate_field(name, &field, position)?;
                let token = self.peek().clone();
                if self.eat(&TokenKind::Comma).is_none() {
                    return Err(self.expected_with_hint(
                        "',' and percentiles after the field",
                        &token,
                        Some(format!("such as percentile({field}, 95)")),
                    ));
                }
                let mut percentiles = Vec::new();
                loop {
                    let literal = self.literal("in percentile(...)")?;
                    percentiles.push(check::percentile(&literal)?);
                    if self.eat(&TokenKind::Comma).is_none() {
                        return Ok(Aggregate::Percentile { field, percentiles });
                    }
                }
            }
            "histogram" => {
                let (field, position) = self.field(&context)?;
                check::aggregate_field(name, &field, position)?;
                let token = self.peek().clone();
                if self.eat(&TokenKind::Comma).is_none() {
                    return Err(self.expected_with_hint(
                        "',' and a ceiling after the field",
                        &token,
                        Some(format!("such as histogram({field}, 1s, 20)")),
                    ));
                }
                let ceiling = self.literal("as the histogram ceiling")?;
                let ceiling = check::histogram_ceiling(&field, &ceiling)?;
                let bucket_count = if self.eat(&TokenKind::Comma).is_some() {
                    let literal = self.literal("as the number of buckets")?;
                    check::histogram_bucket_count(&literal)?
                } else {
                    Aggregate::HISTOGRAM_BUCKETS_DEFAULT
                };
                Ok(Aggregate::Histogram { field, ceiling, bucket_count })
            }
            "rate" => {
                let (aggregate, position) = self.inner_aggregate("rate")?;
                check::rate_inner(&aggregate, position)?;
                let token = self.peek().clone();
                if self.eat(&TokenKind::Comma).is_none() {
                    return Err(self.expected_with_hint(
                        "',' and an interval after the aggregate in rate(...)",
                        &token,
                        Some("such as rate(count(*), 1 minute)".to_string()),
                    ));
                }
                let (per_ns, interval_token) = self.interval("in rate(...)")?;
                if per_ns == 0 {
                    return Err(QueryError::type_error(
                        interval_token.start,
                        "the interval of rate(...) must be longer than zero",
                    ));
                }
                Ok(Aggregate::Rate { aggregate: Box::new(aggregate), per_ns })
            }
            _ => {
                let (aggregate, _) = self.inner_aggregate("filter")?;
                let token = self.peek().clone();
                if self.eat(&TokenKind::Comma).is_none() {
                    return Err(self.expected_with_hint(
                        "',' and WHERE after the aggregate in filter(...)",
                        &token,
                        Some("such as filter(count(*), WHERE status = 'error')".to_string()),
                    ));
                }
                let token = self.peek().clone();
                if self.eat_keyword("WHERE").is_none() {
                    let hint = if self.starts_predicate(&token) {
                        "filter takes an aggregate and a WHERE clause: filter(count(*), WHERE ...)"
                    } else {
                        "such as filter(count(*), WHERE status = 'error')"
                    };
                    return Err(self.expected_with_hint("WHERE in filter(...)", &token, Some(hint.to_string())));
                }
                let filter = self.or_expr()?;
                Ok(Aggregate::Filter { aggregate: Box::new(aggregate), filter })
            }
        }
    }

    /// The first argument of `rate` or `filter`: an aggregate call.
    fn inner_aggregate(&mut self, outer: &str) -> Result<(Aggregate, Position), QueryError> {
        let token = self.peek().clone();
        match &token.kind {
            TokenKind::Word(word) if !is_reserved(word) && self.peek_nth(1).kind == TokenKind::LeftParen => self.call(),
            _ => Err(self.expected(&format!("an aggregate such as count(*) as the first argument of {outer}"), &token)),
        }
    }

    // ---- fields ----

    fn field(&mut self, context: &str) -> Result<(Field, Position), QueryError> {
        let token = self.peek().clone();
        match &token.kind {
            TokenKind::Word(word) if !is_reserved(word) => {
                self.advance();
                let Some(prefix) = word.strip_suffix('.') else {
                    return Ok((resolve_name(word), token.start));
                };
                let scope = match prefix {
                    "span" => Scope::Span,
                    "resource" => Scope::Resource,
                    _ => {
                        let key = match &self.peek().kind {
                            TokenKind::Quoted(key) => key.clone(),
                            _ => "name".to_string(),
                        };
                        let whole = format!("{prefix}.{key}").replace('`', "``");
                        return Err(QueryError::syntax(
                            token.start,
                            format!(
                                "only span. and resource. can come before a backquoted name \
                                 (backquote the whole name: `{}`)",
                                truncate(&whole)
                            ),
                        ));
                    }
                };
                let next = self.peek().clone();
                match &next.kind {
                    TokenKind::Quoted(key) if next.start.offset == token.end => {
                        self.advance();
                        if key.is_empty() {
                            return Err(QueryError::syntax(next.start, "an attribute name can't be empty"));
                        }
                        Ok((Field::Attribute { scope: Some(scope), key: key.clone() }, token.start))
                    }
                    _ => Err(self.expected(&format!("a backquoted name after '{word}'"), &next)),
                }
            }
            TokenKind::Quoted(key) => {
                self.advance();
                if key.is_empty() {
                    return Err(QueryError::syntax(token.start, "an attribute name can't be empty"));
                }
                Ok((Field::attribute(key.clone()), token.start))
            }
            _ => Err(self.expected(&format!("a field {context}"), &token)),
        }
    }

    // ---- predicates ----

    fn or_expr(&mut self) -> Result<Expr, QueryError> {
        let first = self.and_expr()?;
        let mut operands = Vec::new();
        while self.eat_keyword("OR").is_some() {
            operands.push(self.and_expr()?);
        }
        if operands.is_empty() {
            return Ok(first);
        }
        operands.insert(0, first);
        Ok(Expr::Or(operands))
    }

    fn and_expr(&mut self) -> Result<Expr, QueryError> {
        let first = self.not_expr()?;
        let mut operands = Vec::new();
        while self.eat_keyword("AND").is_some() {
            operands.push(self.not_expr()?);
        }
        if operands.is_empty() {
            return Ok(first);
        }
        operands.insert(0, first);
        Ok(Expr::And(operands))
    }

    fn not_expr(&mut self) -> Result<Expr, QueryError> {
        if let Some(not) = self.eat_keyword("NOT") {
            self.enter(&not)?;
            let inner = self.not_expr();
            self.leave();
            return Ok(Expr::Not(Box::new(inner?)));
        }
        let token = self.peek().clone();
        if token.kind == TokenKind::LeftParen {
            self.advance();
            self.enter(&token)?;
            let inner = self.or_expr();
            self.leave();
            let inner = inner?;
            let close = format!("')' to close the '(' at line {}, column {}", token.start.line, token.start.column);
            self.expect(&TokenKind::RightParen, &close)?;
            return Ok(inner);
        }
        self.predicate()
    }

    fn starts_literal(token: &Token) -> bool {
        match &token.kind {
            TokenKind::Number(_) | TokenKind::Duration(_) | TokenKind::String(_) | TokenKind::Minus => true,
            TokenKind::Word(word) => ["TRUE", "FALSE", "NULL"].iter().any(|k| k.eq_ignore_ascii_case(word)),
            _ => false,
        }
    }

    fn starts_predicate(&self, token: &Token) -> bool {
        Self::starts_literal(token)
            || matches!(&token.kind, TokenKind::Word(word) if !is_reserved(word))
            || matches!(token.kind, TokenKind::Quoted(_) | TokenKind::LeftParen)
            || Self::is_keyword(token, "NOT")
    }

    fn compare_op(token: &Token) -> Option<CompareOp> {
        Some(match token.kind {
            TokenKind::Eq => CompareOp::Eq,
            TokenKind::NotEq => CompareOp::Ne,
            TokenKind::Less => CompareOp::Lt,
            TokenKind::LessEq => CompareOp::Le,
            TokenKind::Greater => CompareOp::Gt,
            TokenKind::GreaterEq => CompareOp::Ge,
            _ => return None,
        })
    }

    fn predicate(&mut self) -> Result<Expr, QueryError> {
        let token = self.peek().clone();
        if Self::starts_literal(&token) {
            // `5 < x` is `x > 5`.
            let literal = self.literal("")?;
            let op_token = self.peek().clone();
            let Some(op) = Self::compare_op(&op_token) else {
                return Err(
                    self.expected(&format!("a comparison operator after {}", truncate(&literal.text)), &op_token)
                );
            };
            self.advance();
            let (field, _) = self.field(&format!("after '{}'", op.as_str()))?;
            let op = op.flip();
            let value = check::comparison(&field, op, op_token.start, literal)?;
            return Ok(Expr::Compare { field, op, value });
        }
        let is_field = matches!(&token.kind, TokenKind::Word(word) if !is_reserved(word))
            || matches!(token.kind, TokenKind::Quoted(_));
        if !is_field {
            return Err(self.expected("a condition such as service = 'checkout'", &token));
        }
        if matches!(token.kind, TokenKind::Word(_)) && self.peek_nth(1).kind == TokenKind::LeftParen {
            return Err(QueryError::syntax(
                token.start,
                "WHERE compares fields and can't call functions (use filter(...) in SELECT to aggregate a subset)",
            ));
        }
        let (field, field_position) = self.field("")?;
        let next = self.peek().clone();
        if let Some(op) = Self::compare_op(&next) {
            self.advance();
            let literal = self.literal(&format!("after '{}'", op.as_str()))?;
            let value = check::comparison(&field, op, next.start, literal)?;
            return Ok(Expr::Compare { field, op, value });
        }
        let negated = Self::is_keyword(&next, "NOT");
        if negated {
            self.advance();
        }
        let operator = self.peek().clone();
        if Self::is_keyword(&operator, "IN") {
            self.advance();
            return self.in_list(field, negated);
        }
        if Self::is_keyword(&operator, "LIKE") {
            self.advance();
            let literal = self.literal("after LIKE")?;
            let pattern = check::like(&field, field_position, literal)?;
            return Ok(Expr::Like { field, pattern, negated });
        }
        if negated {
            return Err(self.expected("IN or LIKE after NOT", &operator));
        }
        if Self::is_keyword(&operator, "IS") {
            self.advance();
            let negated = self.eat_keyword("NOT").is_some();
            if self.eat_keyword("NULL").is_none() {
                let what = if negated { "NULL after IS NOT" } else { "NULL or NOT NULL after IS" };
                return Err(self.expected(what, self.peek()));
            }
            return Ok(Expr::IsNull { field, negated });
        }
        let hint = Self::starts_literal(&operator)
            .then(|| format!("did you mean {field} = {}?", truncate(self.raw(&operator))));
        Err(self.expected_with_hint(
            &format!("an operator after {field} (=, !=, <, <=, >, >=, IN, LIKE or IS NULL)"),
            &operator,
            hint,
        ))
    }

    fn in_list(&mut self, field: Field, negated: bool) -> Result<Expr, QueryError> {
        let keyword = if negated { "NOT IN" } else { "IN" };
        let open = self.peek().clone();
        if self.eat(&TokenKind::LeftParen).is_none() {
            let hint = Self::starts_literal(&open).then(|| format!("write {keyword} ({})", truncate(self.raw(&open))));
            return Err(self.expected_with_hint(&format!("'(' after {keyword}"), &open, hint));
        }
        let mut values = Vec::new();
        loop {
            let literal = self.literal(&format!("in {keyword} (...)"))?;
            values.push(check::in_value(&field, literal)?);
            let token = self.peek().clone();
            match token.kind {
                TokenKind::Comma => {
                    self.advance();
                }
                TokenKind::RightParen => {
                    self.advance();
                    return Ok(Expr::In { field, values, negated });
                }
                _ => return Err(self.expected(&format!("',' or ')' in {keyword} (...)"), &token)),
            }
        }
    }

    /// A literal as written: `'text'`, `[-]number`, `[-]duration`, `true`, `false` or `NULL`.
    fn literal(&mut self, context: &str) -> Result<RawLiteral, QueryError> {
        let token = self.peek().clone();
        let (value, end) = match &token.kind {
            TokenKind::String(text) => (RawValue::String(text.clone()), token.end),
            TokenKind::Number(number) => (self.number(number, &token, false)?, token.end),
            TokenKind::Duration(nanos) => (RawValue::Duration(*nanos), token.end),
            TokenKind::Minus => {
                let next = self.peek_nth(1).clone();
                match &next.kind {
                    TokenKind::Number(number) => {
                        self.advance();
                        (self.number(number, &next, true)?, next.end)
                    }
                    TokenKind::Duration(_) => {
                        return Err(QueryError::type_error(token.start, "a duration can't be negative"));
                    }
                    _ => return Err(self.expected("a number after '-'", &next)),
                }
            }
            TokenKind::Word(word) if word.eq_ignore_ascii_case("true") => (RawValue::Bool(true), token.end),
            TokenKind::Word(word) if word.eq_ignore_ascii_case("false") => (RawValue::Bool(false), token.end),
            TokenKind::Word(word) if word.eq_ignore_ascii_case("null") => (RawValue::Null, token.end),
            TokenKind::Word(word) if !is_reserved(word) => {
                let hint = format!("to compare with text, quote it: '{}'", truncate(word));
                let what = if context.is_empty() { "a value".to_string() } else { format!("a value {context}") };
                return Err(self.expected_with_hint(&what, &token, Some(hint)));
            }
            _ => {
                let what = if context.is_empty() { "a value".to_string() } else { format!("a value {context}") };
                return Err(self.expected(&what, &token));
            }
        };
        self.advance();
        Ok(RawLiteral { value, position: token.start, text: self.source(token.start, end) })
    }

    fn number(&self, number: &str, token: &Token, negative: bool) -> Result<RawValue, QueryError> {
        if number.bytes().all(|b| b.is_ascii_digit()) {
            let magnitude: Option<u64> = number.parse().ok();
            let value = magnitude.and_then(|magnitude| {
                let magnitude = i128::from(magnitude);
                i64::try_from(if negative { -magnitude } else { magnitude }).ok()
            });
            return value.map(RawValue::Int).ok_or_else(|| {
                QueryError::syntax(token.start, format!("integer {} is out of range", truncate(number)))
            });
        }
        let value = self.float(number, token)?;
        Ok(RawValue::Float(if negative { -value } else { value }))
    }

    // ---- times and intervals ----

    /// `duration` or `number unit`, in nanoseconds, and the first token.
    fn interval(&mut self, context: &str) -> Result<(u64, Token), QueryError> {
        let token = self.peek().clone();
        match &token.kind {
            TokenKind::Duration(nanos) => {
                self.advance();
                Ok((*nanos, token))
            }
            TokenKind::Number(number) => {
                self.advance();
                let unit = self.peek().clone();
                let unit_nanos = match &unit.kind {
                    TokenKind::Word(word) => {
                        INTERVAL_UNITS.iter().find(|(name, _)| name.eq_ignore_ascii_case(word)).map(|&(_, nanos)| nanos)
                    }
                    _ => None,
                };
                let Some(unit_nanos) = unit_nanos else {
                    let units: Vec<&str> = INTERVAL_UNITS.iter().map(|(name, _)| *name).collect();
                    let hint = Self::did_you_mean(&unit, &units)
                        .unwrap_or_else(|| format!("such as {number} minutes or {number}m"));
                    return Err(self.expected_with_hint(&format!("a time unit after {number}"), &unit, Some(hint)));
                };
                self.advance();
                let nanos = decimal_to_nanos(number, unit_nanos).map_err(|problem| {
                    QueryError::type_error(
                        token.start,
                        format!("interval {} {}", self.source(token.start, unit.end), problem.describe()),
                    )
                })?;
                Ok((nanos, token))
            }
            _ => Err(self.expected(&format!("an interval such as 1 minute or 5m {context}"), &token)),
        }
    }

    fn time_bound(&mut self, clause: &str) -> Result<TimeBound, QueryError> {
        let token = self.peek().clone();
        match &token.kind {
            TokenKind::String(text) => {
                self.advance();
                parse_rfc3339(text).map(TimeBound::Rfc3339).map_err(|error| {
                    let mut message = error.to_string();
                    if text.trim_end().to_ascii_lowercase().ends_with("ago") {
                        message.push_str(&format!(" (write {clause} {} without quotes)", truncate(text.trim())));
                    }
                    QueryError::type_error(token.start, message)
                })
            }
            TokenKind::Word(word) if word.eq_ignore_ascii_case("now") => {
                self.advance();
                Ok(TimeBound::Ago(0))
            }
            TokenKind::Duration(_) => {
                let (nanos, _) = self.interval("")?;
                self.ago(clause, &token)?;
                Ok(TimeBound::Ago(nanos))
            }
            TokenKind::Number(number) => {
                let next = self.peek_nth(1).clone();
                if matches!(next.kind, TokenKind::Word(_)) && !self.at_clause_keyword(&next) {
                    let (nanos, _) = self.interval("")?;
                    self.ago(clause, &token)?;
                    return Ok(TimeBound::Ago(nanos));
                }
                if next.kind == TokenKind::Minus && next.start.offset == token.end {
                    return Err(QueryError::syntax(
                        token.start,
                        format!("{clause} needs quotes around a timestamp (such as {clause} '2026-11-26T13:00:00Z')"),
                    ));
                }
                self.advance();
                let nanos: u64 = match number.parse() {
                    Ok(nanos) => nanos,
                    Err(_) if number.bytes().all(|b| b.is_ascii_digit()) => {
                        return Err(QueryError::syntax(
                            token.start,
                            format!("epoch nanoseconds {} are out of range", truncate(number)),
                        ))
                    }
                    Err(_) => {
                        return Err(self.expected_with_hint(
                            &format!("epoch nanoseconds or an interval after {clause}"),
                            &token,
                            Some(format!("such as {clause} {number} hours ago")),
                        ))
                    }
                };
                check_epoch(clause, nanos, &token)?;
                Ok(TimeBound::EpochNanos(nanos))
            }
            _ => Err(self.expected(
                &format!(
                    "a time after {clause}: a quoted RFC 3339 timestamp, epoch nanoseconds or an interval \
                     such as 1 hour ago"
                ),
                &token,
            )),
        }
    }

    fn at_clause_keyword(&self, token: &Token) -> bool {
        CLAUSES.iter().any(|clause| Self::is_keyword(token, clause))
    }

    fn ago(&mut self, clause: &str, start: &Token) -> Result<(), QueryError> {
        if self.eat_keyword("ago").is_some() {
            return Ok(());
        }
        let interval =
            self.source(start.start, self.tokens.get(self.index.saturating_sub(1)).map_or(start.end, |t| t.end));
        Err(self.expected_with_hint(
            &format!("ago after {clause} {}", truncate(&interval)),
            self.peek(),
            Some(format!("such as {clause} {} ago", truncate(&interval))),
        ))
    }

    fn timeseries(&mut self) -> Result<Timeseries, QueryError> {
        let token = self.peek().clone();
        match &token.kind {
            TokenKind::Word(word) if word.eq_ignore_ascii_case("auto") => {
                self.advance();
                Ok(Timeseries::Auto)
            }
            TokenKind::Number(_) | TokenKind::Duration(_) => {
                let (nanos, first) = self.interval("after TIMESERIES")?;
                if nanos == 0 {
                    return Err(QueryError::type_error(first.start, "a TIMESERIES interval must be longer than zero"));
                }
                Ok(Timeseries::Interval(nanos))
            }
            TokenKind::End | TokenKind::Semicolon => Ok(Timeseries::Auto),
            _ if self.at_clause_keyword(&token) => Ok(Timeseries::Auto),
            _ => Err(self.expected("an interval such as 1 minute, or AUTO, after TIMESERIES", &token)),
        }
    }

    fn limit(&mut self) -> Result<Limit, QueryError> {
        let token = self.peek().clone();
        match &token.kind {
            TokenKind::Number(number) => {
                self.advance();
                if !number.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(QueryError::type_error(
                        token.start,
                        format!("LIMIT takes a whole number, found {}", truncate(number)),
                    ));
                }
                number
                    .parse()
                    .map(Limit::N)
                    .map_err(|_| QueryError::syntax(token.start, format!("LIMIT {} is out of range", truncate(number))))
            }
            TokenKind::Word(word) if word.eq_ignore_ascii_case("max") => {
                self.advance();
                Ok(Limit::Max)
            }
            TokenKind::Minus => Err(QueryError::syntax(token.start, "LIMIT can't be negative")),
            _ => Err(self.expected("a number or MAX after LIMIT", &token)),
        }
    }

    fn order_by(&mut self, select: &[SelectItem], marks: &mut Marks) -> Result<Vec<OrderBy>, QueryError> {
        let mut keys = Vec::new();
        loop {
            let token = self.peek().clone();
            marks.order_by.push(token.start);
            let context = if keys.is_empty() { "after ORDER BY" } else { "after ','" };
            let key = match &token.kind {
                TokenKind::String(name) => {
                    self.advance();
                    match aliased(select, name) {
                        Some(expr) => OrderKey::Aggregate(expr.clone()),
                        None => {
                            return Err(QueryError::type_error(
                                token.start,
                                format!("no SELECT item is named '{}'", truncate(name)),
                            ))
                        }
                    }
                }
                _ => match self.arith(context)? {
                    Operand::Field(field, _) => {
                        let alias = match &field {
                            Field::Attribute { scope: None, key } => aliased(select, key),
                            Field::Intrinsic(intrinsic) => aliased(select, intrinsic.as_str()),
                            Field::Attribute { .. } => None,
                        };
                        match alias {
                            Some(expr) => OrderKey::Aggregate(expr.clone()),
                            None => OrderKey::Field(field),
                        }
                    }
                    Operand::Value(expr, _) => {
                        if !expr.has_aggregate() {
                            return Err(QueryError::type_error(
                                token.start,
                                "ORDER BY takes a field, an aggregate or an alias, not a number",
                            ));
                        }
                        OrderKey::Aggregate(expr)
                    }
                },
            };
            let descending = if self.eat_keyword("DESC").is_some() {
                true
            } else {
                self.eat_keyword("ASC");
                false
            };
            keys.push(OrderBy { key, descending });
            if self.eat(&TokenKind::Comma).is_none() {
                return Ok(keys);
            }
        }
    }
}

/// The expression a SELECT item names with `AS`.
fn aliased<'s>(select: &'s [SelectItem], name: &str) -> Option<&'s AggregateExpr> {
    select.iter().find_map(|item| match item {
        SelectItem::Aggregate { expr, alias: Some(alias) } if alias == name => Some(expr),
        _ => None,
    })
}

/// A word in a field position: an intrinsic, a scoped attribute or an unscoped one.
fn resolve_name(word: &str) -> Field {
    if let Some(intrinsic) = Intrinsic::from_name(word) {
        return Field::Intrinsic(intrinsic);
    }
    if let Some(key) = word.strip_prefix("span.") {
        return Field::Attribute { scope: Some(Scope::Span), key: key.to_string() };
    }
    if let Some(key) = word.strip_prefix("resource.") {
        return Field::Attribute { scope: Some(Scope::Resource), key: key.to_string() };
    }
    Field::attribute(word)
}

fn unknown_function(name: &str, token: &Token) -> QueryError {
    let hint = match name {
        "median" => "use percentile(field, 50)".to_string(),
        "average" | "mean" => "did you mean avg?".to_string(),
        "uniquecount" | "count_distinct" | "distinct" | "approx_count_distinct" => "use uniq(field)".to_string(),
        "quantile" | "p99" | "p95" | "p50" => "use percentile(field, 99)".to_string(),
        _ => match closest(name, &FUNCTIONS) {
            Some(function) => format!("did you mean {function}?"),
            None => {
                "the functions are count, sum, avg, min, max, percentile, uniq, histogram, rate and filter".to_string()
            }
        },
    };
    QueryError::syntax(token.start, format!("unknown function '{}' ({hint})", truncate(name)))
}

/// Rejects epoch values that are surely seconds, milliseconds or microseconds.
fn check_epoch(clause: &str, nanos: u64, token: &Token) -> Result<(), QueryError> {
    const PLAUSIBLE_FROM: u64 = 100_000_000_000_000_000; // 1973 in nanoseconds
    if !(1_000_000_000..PLAUSIBLE_FROM).contains(&nanos) {
        return Ok(());
    }
    let (unit, factor) = match nanos {
        0..=99_999_999_999 => ("seconds", 1_000_000_000),
        100_000_000_000..=99_999_999_999_999 => ("milliseconds", 1_000_000),
        _ => ("microseconds", 1_000),
    };
    let suggestion = nanos.checked_mul(factor).map_or_else(String::new, |scaled| format!(" (did you mean {scaled}?)"));
    Err(QueryError::type_error(
        token.start,
        format!("{clause} takes epoch nanoseconds, and {nanos} looks like {unit}{suggestion}"),
    ))
}

/// The candidate within a small edit distance of `word`, ignoring case.
fn closest<'c>(word: &str, candidates: &[&'c str]) -> Option<&'c str> {
    let word = word.to_ascii_lowercase();
    if word.chars().count() > 32 {
        return None;
    }
    let limit = if word.chars().count() <= 3 { 1 } else { 2 };
    candidates
        .iter()
        .map(|candidate| (edit_distance(&word, &candidate.to_ascii_lowercase()), *candidate))
        .filter(|&(distance, _)| distance > 0 && distance <= limit)
        .min_by_key(|&(distance, _)| distance)
        .map(|(_, candidate)| candidate)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = Vec::with_capacity(b.len() + 1);
        current.push(i + 1);
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous.get(j).copied().unwrap_or(0) + usize::from(ca != *cb);
            let deletion = previous.get(j + 1).copied().unwrap_or(0) + 1;
            let insertion = current.get(j).copied().unwrap_or(0) + 1;
            current.push(substitution.min(deletion).min(insertion));
        }
        previous = current;
    }
    previous.last().copied().unwrap_or(0)
}

#[cfg(test)]
pub(crate) mod tests {
    use spanstore_engine::{SpanId, SpanKind, StatusCode, TraceId};

    use super::*;
    use crate::ast::Literal;

    fn ok(text: &str) -> Statement {
        match parse(text) {
            Ok(statement) => statement,
            Err(error) => panic!("{text}: {error}"),
        }
    }

    fn query(text: &str) -> Query {
        match ok(text) {
            Statement::Select(query) => query,
            other => panic!("{text}: not a SELECT: {other:?}"),
        }
    }

    fn error(text: &str) -> String {
        match parse(text) {
            Ok(statement) => panic!("{text}: parsed as {statement}"),
            Err(error) => error.to_string(),
        }
    }

    /// Parses, prints canonically, and checks the canonical text parses to the same tree.
    fn canonical(text: &str) -> String {
        let statement = ok(text);
        let printed = statement.to_string();
        assert_eq!(ok(&printed), statement, "{text} printed as {printed}");
        printed
    }

    fn attribute(key: &str) -> Field {
        Field::attribute(key)
    }

    fn scoped(scope: Scope, key: &str) -> Field {
        Field::Attribute { scope: Some(scope), key: key.to_string() }
    }

    fn compare(field: Field, op: CompareOp, value: Literal) -> Expr {
        Expr::Compare { field, op, value }
    }

    fn aggregate(aggregate: Aggregate) -> SelectItem {
        SelectItem::Aggregate { expr: AggregateExpr::Aggregate(aggregate), alias: None }
    }

    const MINUTE: u64 = 60_000_000_000;
    const HOUR: u64 = 60 * MINUTE;

    #[test]
    fn design_examples() {
        assert_eq!(
            query(
                "SELECT count(*) FROM spans WHERE service = 'checkout' AND status = 'error'\n  \
                 FACET http.route SINCE 1 hour ago TIMESERIES 1 minute"
            ),
            Query {
                select: vec![aggregate(Aggregate::Count(None))],
                filter: Some(Expr::And(vec![
                    compare(Field::Intrinsic(Intrinsic::Service), CompareOp::Eq, Literal::String("checkout".into())),
                    compare(Field::Intrinsic(Intrinsic::Status), CompareOp::Eq, Literal::Status(StatusCode::Error)),
                ])),
                facets: vec![attribute("http.route")],
                since: Some(TimeBound::Ago(HOUR)),
                timeseries: Some(Timeseries::Interval(MINUTE)),
                ..Query::default()
            }
        );
        assert_eq!(
            query(
                "SELECT percentile(duration, 50, 95, 99) FROM spans\n  \
                 WHERE faas.coldstart = true FACET faas.name LIMIT 20"
            ),
            Query {
                select: vec![aggregate(Aggregate::Percentile {
                    field: Field::Intrinsic(Intrinsic::Duration),
                    percentiles: vec![50.0, 95.0, 99.0],
                })],
                filter: Some(compare(attribute("faas.coldstart"), CompareOp::Eq, Literal::Bool(true))),
                facets: vec![attribute("faas.name")],
                limit: Some(Limit::N(20)),
                ..Query::default()
            }
        );
        assert_eq!(
            query("SELECT count(*), uniq(enduser.id) FROM spans FACET cloud.region"),
            Query {
                select: vec![aggregate(Aggregate::Count(None)), aggregate(Aggregate::Uniq(attribute("enduser.id")))],
                facets: vec![attribute("cloud.region")],
                ..Query::default()
            }
        );
        assert_eq!(
            query("SELECT * FROM spans WHERE aws.request_id = 'f3b2\u{2026}' LIMIT 10"),
            Query {
                select: vec![SelectItem::Star],
                filter: Some(compare(
                    attribute("aws.request_id"),
                    CompareOp::Eq,
                    Literal::String("f3b2\u{2026}".into())
                )),
                limit: Some(Limit::N(10)),
                ..Query::default()
            }
        );
        let trace_id = TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").ok();
        assert_eq!(Some(ok("TRACE '4bf92f3577b34da6a3ce929d0e0e4736'")), trace_id.map(Statement::Trace));
    }

    #[test]
    fn error_rate_is_one_query() {
        let query = query(
            "SELECT filter(count(*), WHERE status = 'error') / count(*) AS error_rate FROM spans \
             WHERE name = 'PutItem' FACET cloud.availability_zone, subnet SINCE 2 hours ago TIMESERIES 1 minute",
        );
        let errors = Aggregate::Filter {
            aggregate: Box::new(Aggregate::Count(None)),
            filter: compare(Field::Intrinsic(Intrinsic::Status), CompareOp::Eq, Literal::Status(StatusCode::Error)),
        };
        assert_eq!(
            query.select,
            vec![SelectItem::Aggregate {
                expr: AggregateExpr::Binary {
                    op: ArithOp::Div,
                    left: Box::new(AggregateExpr::Aggregate(errors)),
                    right: Box::new(AggregateExpr::Aggregate(Aggregate::Count(None))),
                },
                alias: Some("error_rate".into()),
            }]
        );
        assert_eq!(query.facets, vec![attribute("cloud.availability_zone"), attribute("subnet")]);
        assert_eq!(query.since, Some(TimeBound::Ago(2 * HOUR)));
    }

    #[test]
    fn fields_resolve_to_intrinsics_and_scoped_attributes() {
        let query = query(
            "SELECT trace_id, span_id, parent_span_id, name, kind, status, status_message, service, start, end, \
             duration, http.route, span.http.route, resource.service.name, `my-attr.with-dash`, span.`odd name`, \
             resource.`x``y`, `name`, `span.x`, span.name, span.2xx, Name FROM spans",
        );
        let mut expected: Vec<SelectItem> =
            Intrinsic::ALL.into_iter().map(|intrinsic| SelectItem::Field(Field::Intrinsic(intrinsic))).collect();
        expected.extend(
            [
                attribute("http.route"),
                scoped(Scope::Span, "http.route"),
                scoped(Scope::Resource, "service.name"),
                attribute("my-attr.with-dash"),
                scoped(Scope::Span, "odd name"),
                scoped(Scope::Resource, "x`y"),
                attribute("name"),
                attribute("span.x"),
                scoped(Scope::Span, "name"),
                scoped(Scope::Span, "2xx"),
                attribute("Name"),
            ]
            .map(SelectItem::Field),
        );
        assert_eq!(query.select, expected);
    }

    #[test]
    fn keywords_are_case_insensitive_and_field_names_are_not() {
        assert_eq!(
            canonical("select Count(*) from SPANS where NAME = 'x' and Kind = 'SERVER' facet Service limit max"),
            "SELECT count(*) FROM spans WHERE NAME = 'x' AND Kind = 'SERVER' FACET Service LIMIT MAX"
        );
        assert_eq!(
            canonical(
                "select count(*) from spans where kind = 'SERVER' since NOW timeseries auto order by count(*) desc"
            ),
            "SELECT count(*) FROM spans WHERE kind = 'server' SINCE now TIMESERIES AUTO ORDER BY count(*) DESC"
        );
    }

    #[test]
    fn predicates() {
        let filter = |text: &str| query(&format!("SELECT * FROM spans WHERE {text}")).filter;
        assert_eq!(
            filter("x = 1 AND x != 2 AND x <> 3 AND x < 4 AND x <= 5 AND x > 6 AND x >= 7"),
            Some(Expr::And(
                [
                    (CompareOp::Eq, 1),
                    (CompareOp::Ne, 2),
                    (CompareOp::Ne, 3),
                    (CompareOp::Lt, 4),
                    (CompareOp::Le, 5),
                    (CompareOp::Gt, 6),
                    (CompareOp::Ge, 7)
                ]
                .into_iter()
                .map(|(op, value)| compare(attribute("x"), op, Literal::Int(value)))
                .collect()
            ))
        );
        assert_eq!(filter("5 < x"), Some(compare(attribute("x"), CompareOp::Gt, Literal::Int(5))));
        assert_eq!(
            filter("x IN (1, 'a', 2.5, true, 5ms, -3)"),
            Some(Expr::In {
                field: attribute("x"),
                values: vec![
                    Literal::Int(1),
                    Literal::String("a".into()),
                    Literal::Float(2.5),
                    Literal::Bool(true),
                    Literal::Duration(5_000_000),
                    Literal::Int(-3)
                ],
                negated: false
            })
        );
        assert_eq!(
            filter("kind NOT IN ('server', 'CLIENT')"),
            Some(Expr::In {
                field: Field::Intrinsic(Intrinsic::Kind),
                values: vec![Literal::Kind(SpanKind::Server), Literal::Kind(SpanKind::Client)],
                negated: true
            })
        );
        assert_eq!(
            filter("name LIKE 'GET %' OR name NOT LIKE '%health%'"),
            Some(Expr::Or(vec![
                Expr::Like { field: Field::Intrinsic(Intrinsic::Name), pattern: "GET %".into(), negated: false },
                Expr::Like { field: Field::Intrinsic(Intrinsic::Name), pattern: "%health%".into(), negated: true },
            ]))
        );
        assert_eq!(
            filter("parent_span_id IS NULL AND NOT x IS NOT NULL"),
            Some(Expr::And(vec![
                Expr::IsNull { field: Field::Intrinsic(Intrinsic::ParentSpanId), negated: false },
                Expr::Not(Box::new(Expr::IsNull { field: attribute("x"), negated: true })),
            ]))
        );
        // AND binds tighter than OR; parentheses group.
        assert_eq!(
            filter("a = 1 OR b = 2 AND c = 3"),
            Some(Expr::Or(vec![
                compare(attribute("a"), CompareOp::Eq, Literal::Int(1)),
                Expr::And(vec![
                    compare(attribute("b"), CompareOp::Eq, Literal::Int(2)),
                    compare(attribute("c"), CompareOp::Eq, Literal::Int(3)),
                ]),
            ]))
        );
        assert_eq!(
            filter("(a = 1 OR b = 2) AND c = 3"),
            Some(Expr::And(vec![
                Expr::Or(vec![
                    compare(attribute("a"), CompareOp::Eq, Literal::Int(1)),
                    compare(attribute("b"), CompareOp::Eq, Literal::Int(2)),
                ]),
                compare(attribute("c"), CompareOp::Eq, Literal::Int(3)),
            ]))
        );
    }

    #[test]
    fn literals_take_the_type_of_the_intrinsic() {
        let value = |text: &str| match query(&format!("SELECT * FROM spans WHERE {text}")).filter {
            Some(Expr::Compare { value, .. }) => value,
            other => panic!("{text}: {other:?}"),
        };
        assert_eq!(value("kind = 'Server'"), Literal::Kind(SpanKind::Server));
        assert_eq!(value("status = 'OK'"), Literal::Status(StatusCode::Ok));
        assert_eq!(
            value("trace_id = '4BF92F3577B34DA6A3CE929D0E0E4736'"),
            TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").map_or(Literal::Int(0), Literal::TraceId)
        );
        assert_eq!(
            value("trace_id = '00f067aa0ba902b7'"),
            TraceId::from_hex("000000000000000000f067aa0ba902b7").map_or(Literal::Int(0), Literal::TraceId)
        );
        assert_eq!(
            value("span_id = '00f067aa0ba902b7'"),
            SpanId::from_hex("00f067aa0ba902b7").map_or(Literal::Int(0), Literal::SpanId)
        );
        assert_eq!(value("start >= '2026-11-26T13:00:00Z'"), Literal::Timestamp(1_795_698_000_000_000_000));
        assert_eq!(value("end < 1795698000000000000"), Literal::Timestamp(1_795_698_000_000_000_000));
        assert_eq!(value("duration > 1.5s"), Literal::Duration(1_500_000_000));
        assert_eq!(value("name = 'it''s'"), Literal::String("it's".into()));
        assert_eq!(value("x = -9223372036854775808"), Literal::Int(i64::MIN));
        assert_eq!(value("x = 9223372036854775807"), Literal::Int(i64::MAX));
        assert_eq!(value("x = 1e3"), Literal::Float(1000.0));
        assert_eq!(value("x = -0.5"), Literal::Float(-0.5));
        assert_eq!(value("x = FALSE"), Literal::Bool(false));
        assert_eq!(value("x = 250ms"), Literal::Duration(250_000_000));
    }

    #[test]
    fn aggregates() {
        let select = |text: &str| query(&format!("SELECT {text} FROM spans")).select;
        let duration = || Field::Intrinsic(Intrinsic::Duration);
        assert_eq!(
            select("count(*), count(x), sum(duration), avg(x), min(start), max(end), uniq(name)"),
            vec![
                aggregate(Aggregate::Count(None)),
                aggregate(Aggregate::Count(Some(attribute("x")))),
                aggregate(Aggregate::Sum(duration())),
                aggregate(Aggregate::Avg(attribute("x"))),
                aggregate(Aggregate::Min(Field::Intrinsic(Intrinsic::Start))),
                aggregate(Aggregate::Max(Field::Intrinsic(Intrinsic::End))),
                aggregate(Aggregate::Uniq(Field::Intrinsic(Intrinsic::Name))),
            ]
        );
        assert_eq!(
            select("percentile(duration, 99.9, 0, 100)"),
            vec![aggregate(Aggregate::Percentile { field: duration(), percentiles: vec![99.9, 0.0, 100.0] })]
        );
        assert_eq!(
            select("histogram(duration, 2s, 20), histogram(x, 1.5)"),
            vec![
                aggregate(Aggregate::Histogram {
                    field: duration(),
                    ceiling: Literal::Duration(2_000_000_000),
                    bucket_count: 20
                }),
                aggregate(Aggregate::Histogram {
                    field: attribute("x"),
                    ceiling: Literal::Float(1.5),
                    bucket_count: Aggregate::HISTOGRAM_BUCKETS_DEFAULT
                }),
            ]
        );
        assert_eq!(
            select("rate(count(*), 1 minute), rate(filter(sum(x), WHERE y = 1), 5m)"),
            vec![
                aggregate(Aggregate::Rate { aggregate: Box::new(Aggregate::Count(None)), per_ns: MINUTE }),
                aggregate(Aggregate::Rate {
                    aggregate: Box::new(Aggregate::Filter {
                        aggregate: Box::new(Aggregate::Sum(attribute("x"))),
                        filter: compare(attribute("y"), CompareOp::Eq, Literal::Int(1)),
                    }),
                    per_ns: 5 * MINUTE
                }),
            ]
        );
    }

    #[test]
    fn arithmetic_precedence_and_signs() {
        let expr = |text: &str| match query(&format!("SELECT {text} FROM spans")).select.pop() {
            Some(SelectItem::Aggregate { expr, .. }) => expr,
            other => panic!("{text}: {other:?}"),
        };
        let count = || Box::new(AggregateExpr::Aggregate(Aggregate::Count(None)));
        let number = |value: f64| Box::new(AggregateExpr::Number(value));
        assert_eq!(
            expr("count(*) + 2 * count(*)"),
            AggregateExpr::Binary {
                op: ArithOp::Add,
                left: count(),
                right: Box::new(AggregateExpr::Binary { op: ArithOp::Mul, left: number(2.0), right: count() }),
            }
        );
        assert_eq!(
            expr("count(*) - 1 - 2"),
            AggregateExpr::Binary {
                op: ArithOp::Sub,
                left: Box::new(AggregateExpr::Binary { op: ArithOp::Sub, left: count(), right: number(1.0) }),
                right: number(2.0),
            }
        );
        assert_eq!(
            expr("-count(*) / -2"),
            AggregateExpr::Binary {
                op: ArithOp::Div,
                left: Box::new(AggregateExpr::Neg(count())),
                right: number(-2.0),
            }
        );
        assert_eq!(
            expr("avg(duration) / 1ms"),
            AggregateExpr::Binary {
                op: ArithOp::Div,
                left: Box::new(AggregateExpr::Aggregate(Aggregate::Avg(Field::Intrinsic(Intrinsic::Duration)))),
                right: number(1e6),
            }
        );
    }

    #[test]
    fn time_bounds_intervals_timeseries_order_and_limit() {
        let query = query(
            "SELECT count(*) AS n, max(duration) FROM spans FACET name SINCE '2026-11-26T14:00:00.5+01:00' \
             UNTIL 1795698000600000000 TIMESERIES 90 seconds ORDER BY n DESC, name ASC, max(duration) LIMIT MAX",
        );
        assert_eq!(query.since, Some(TimeBound::Rfc3339(1_795_698_000_500_000_000)));
        assert_eq!(query.until, Some(TimeBound::EpochNanos(1_795_698_000_600_000_000)));
        assert_eq!(query.timeseries, Some(Timeseries::Interval(90_000_000_000)));
        assert_eq!(
            query.order_by,
            vec![
                OrderBy {
                    key: OrderKey::Aggregate(AggregateExpr::Aggregate(Aggregate::Count(None))),
                    descending: true
                },
                OrderBy { key: OrderKey::Field(Field::Intrinsic(Intrinsic::Name)), descending: false },
                OrderBy {
                    key: OrderKey::Aggregate(AggregateExpr::Aggregate(Aggregate::Max(Field::Intrinsic(
                        Intrinsic::Duration
                    )))),
                    descending: false
                },
            ]
        );
        assert_eq!(query.limit, Some(Limit::Max));
        assert_eq!(
            query.time_range(2_000_000_000_000_000_000),
            (Some(1_795_698_000_500_000_000), Some(1_795_698_000_600_000_000))
        );

        let bound = |text: &str| self::query(&format!("SELECT count(*) FROM spans SINCE {text}")).since;
        assert_eq!(bound("1 minute ago"), Some(TimeBound::Ago(MINUTE)));
        assert_eq!(bound("5 MINUTES AGO"), Some(TimeBound::Ago(5 * MINUTE)));
        assert_eq!(bound("1.5 hours ago"), Some(TimeBound::Ago(90 * MINUTE)));
        assert_eq!(bound("2 days ago"), Some(TimeBound::Ago(48 * HOUR)));
        assert_eq!(bound("1 week ago"), Some(TimeBound::Ago(168 * HOUR)));
        assert_eq!(bound("30 seconds ago"), Some(TimeBound::Ago(30_000_000_000)));
        assert_eq!(bound("250 milliseconds ago"), Some(TimeBound::Ago(250_000_000)));
        assert_eq!(bound("2m ago"), Some(TimeBound::Ago(2 * MINUTE)));
        assert_eq!(bound("now"), Some(TimeBound::Ago(0)));
        assert_eq!(bound("0"), Some(TimeBound::EpochNanos(0)));
        assert_eq!(bound("'2026-11-26'"), Some(TimeBound::Rfc3339(1_795_651_200_000_000_000)));
        assert_eq!(TimeBound::Ago(MINUTE).resolve(10 * MINUTE as i64), 9 * MINUTE as i64);

        let timeseries = |text: &str| self::query(&format!("SELECT count(*) FROM spans {text}")).timeseries;
        assert_eq!(timeseries("TIMESERIES"), Some(Timeseries::Auto));
        assert_eq!(timeseries("TIMESERIES AUTO"), Some(Timeseries::Auto));
        assert_eq!(timeseries("TIMESERIES LIMIT 3"), Some(Timeseries::Auto));
        assert_eq!(timeseries("TIMESERIES;"), Some(Timeseries::Auto));
        assert_eq!(timeseries("TIMESERIES 1m"), Some(Timeseries::Interval(MINUTE)));
        assert_eq!(timeseries("TIMESERIES 1 hour"), Some(Timeseries::Interval(HOUR)));
        assert_eq!(timeseries(""), None);
    }

    #[test]
    fn clauses_come_in_any_order() {
        assert_eq!(
            canonical("SELECT count(*) FROM spans LIMIT 10 TIMESERIES 5m ORDER BY count(*) SINCE 1 day ago FACET y UNTIL now WHERE x = 1"),
            "SELECT count(*) FROM spans WHERE x = 1 FACET y SINCE 1 day ago UNTIL now TIMESERIES 5 minutes \
             ORDER BY count(*) LIMIT 10"
        );
    }

    #[test]
    fn explain_and_trace() {
        assert_eq!(canonical("explain select count(*) from spans"), "EXPLAIN SELECT count(*) FROM spans");
        assert_eq!(
            canonical("EXPLAIN TRACE '4BF92F3577B34DA6A3CE929D0E0E4736';"),
            "EXPLAIN TRACE '4bf92f3577b34da6a3ce929d0e0e4736'"
        );
        assert_eq!(canonical("TRACE '00f067aa0ba902b7'"), "TRACE '000000000000000000f067aa0ba902b7'");
        // An AWS X-Ray trace id is its W3C id, as the OpenTelemetry X-Ray propagator maps it.
        assert_eq!(
            canonical("TRACE '1-5759e988-bd862e3fe1be46a994272793'"),
            "TRACE '5759e988bd862e3fe1be46a994272793'"
        );
        assert_eq!(
            canonical("SELECT * FROM spans WHERE trace_id = '1-5759e988-bd862e3fe1be46a994272793'"),
            "SELECT * FROM spans WHERE trace_id = '5759e988bd862e3fe1be46a994272793'"
        );
    }

    #[test]
    fn canonical_text() {
        let cases = [
            ("SELECT count(*) FROM spans ;", "SELECT count(*) FROM spans"),
            ("SELECT count(*) FROM spans -- a comment\n", "SELECT count(*) FROM spans"),
            ("SELECT (count(*)) FROM spans", "SELECT count(*) FROM spans"),
            ("SELECT (name) FROM spans", "SELECT name FROM spans"),
            ("SELECT count(*) FROM spans WHERE ((a = 1))", "SELECT count(*) FROM spans WHERE a = 1"),
            (
                "SELECT count(*) FROM spans WHERE x = 1 OR (y = 2 AND (z = 3 OR w = 4)) AND NOT NOT v = 5",
                "SELECT count(*) FROM spans WHERE x = 1 OR (y = 2 AND (z = 3 OR w = 4)) AND NOT NOT v = 5",
            ),
            (
                "SELECT count(*) FROM spans WHERE (a = 1 AND b = 2) AND c = 3 OR (d = 4 OR e = 5)",
                "SELECT count(*) FROM spans WHERE (a = 1 AND b = 2) AND c = 3 OR (d = 4 OR e = 5)",
            ),
            (
                "SELECT count(*) FROM spans WHERE NOT (a = 1 OR b = 2)",
                "SELECT count(*) FROM spans WHERE NOT (a = 1 OR b = 2)",
            ),
            (
                "SELECT -count(*), -(5) * count(*), count(*) - -5, -5 * count(*), -(-count(*)) FROM spans",
                "SELECT -count(*), -(5) * count(*), count(*) - -5, -5 * count(*), -(-count(*)) FROM spans",
            ),
            (
                "SELECT sum(x) / (count(*) - 1), (sum(x) / count(*)) - 1, sum(x) - (count(*) - 1) FROM spans",
                "SELECT sum(x) / (count(*) - 1), sum(x) / count(*) - 1, sum(x) - (count(*) - 1) FROM spans",
            ),
            (
                "SELECT count(*) * 0.25 + 1e20 FROM spans",
                "SELECT count(*) * 0.25 + 1e20 FROM spans",
            ),
            (
                "SELECT count(*) FROM spans WHERE x = 1e3 AND y = 0.5 AND z = -2.5 AND w = 1E-7",
                "SELECT count(*) FROM spans WHERE x = 1000.0 AND y = 0.5 AND z = -2.5 AND w = 1e-7",
            ),
            (
                "SELECT count(*) FROM spans WHERE x = 'it''s' AND `we``ird` = 1 AND `select` = 2 AND span.select = 3",
                "SELECT count(*) FROM spans WHERE x = 'it''s' AND `we``ird` = 1 AND `select` = 2 AND span.select = 3",
            ),
            (
                "SELECT count(*) FROM spans WHERE `plain` = 1 AND span.`plain` = 2 AND `span.x` = 3 AND `name` = 4",
                "SELECT count(*) FROM spans WHERE plain = 1 AND span.plain = 2 AND `span.x` = 3 AND `name` = 4",
            ),
            (
                "SELECT count(*) FROM spans WHERE duration IN (1000ms, 90s, 1500us, 7ns) AND start > 0",
                "SELECT count(*) FROM spans WHERE duration IN (1s, 90s, 1500us, 7ns) AND start > '1970-01-01T00:00:00Z'",
            ),
            (
                "SELECT uniq(trace_id) AS 'Unique traces', count(*) AS `n n`, count(*) AS x.y FROM spans",
                "SELECT uniq(trace_id) AS 'Unique traces', count(*) AS 'n n', count(*) AS 'x.y' FROM spans",
            ),
            (
                "SELECT count(*) FROM spans SINCE 1 week ago UNTIL 90 minutes ago TIMESERIES 1.5 hours",
                "SELECT count(*) FROM spans SINCE 7 days ago UNTIL 90 minutes ago TIMESERIES 90 minutes",
            ),
            (
                "SELECT count(*) FROM spans SINCE 5m ago UNTIL 1500ms ago TIMESERIES 250ms",
                "SELECT count(*) FROM spans SINCE 5 minutes ago UNTIL 1500ms ago TIMESERIES 250ms",
            ),
            (
                "SELECT count(*) FROM spans SINCE '2026-11-26T13:00:00+01:00' UNTIL '2026-11-26T13:00:00.000000001Z'",
                "SELECT count(*) FROM spans SINCE '2026-11-26T12:00:00Z' UNTIL '2026-11-26T13:00:00.000000001Z'",
            ),
            (
                "SELECT histogram(duration, 1000ms), rate(count(*), 60 seconds) FROM spans",
                "SELECT histogram(duration, 1s, 40), rate(count(*), 1 minute) FROM spans",
            ),
            (
                "SELECT count(*) AS n FROM spans FACET name ORDER BY n, 'n' DESC",
                "SELECT count(*) AS n FROM spans FACET name ORDER BY count(*), count(*) DESC",
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(canonical(text), expected, "{text}");
        }
    }

    #[test]
    fn syntax_errors() {
        let cases = [
            ("", "line 1, column 1: expected SELECT, TRACE or EXPLAIN, found the end of the query"),
            ("DELETE FROM spans", "line 1, column 1: expected SELECT, TRACE or EXPLAIN, found 'DELETE'"),
            ("SELEC count(*) FROM spans", "line 1, column 1: expected SELECT, TRACE or EXPLAIN, found 'SELEC' (did you mean SELECT?)"),
            ("EXPLAIN EXPLAIN TRACE 'x'", "line 1, column 9: EXPLAIN takes a SELECT or TRACE statement, not another EXPLAIN"),
            ("TRACE", "line 1, column 6: expected a quoted trace id after TRACE, found the end of the query"),
            ("TRACE abc", "line 1, column 7: expected a quoted trace id after TRACE, found 'abc' (did you mean TRACE 'abc'?)"),
            ("TRACE 4bf92f", "line 1, column 7: invalid number '4bf92f' (quote ids and strings: '4bf92f')"),
            ("TRACE ,", "line 1, column 7: expected a quoted trace id after TRACE, found ','"),
            ("TRACE '4bf92f3577b34da6a3ce929d0e0e4736' x", "line 1, column 42: expected the end of the query, found 'x'"),
            ("SELECT", "line 1, column 7: expected an aggregate such as count(*), a field or a number after SELECT, found the end of the query"),
            ("SELECT count(*),", "line 1, column 17: expected an aggregate such as count(*), a field or a number after ',', found the end of the query"),
            ("SELECT FROM spans", "line 1, column 8: expected an aggregate such as count(*), a field or a number after SELECT, found FROM"),
            ("SELECT count(*) + FROM spans", "line 1, column 19: expected an aggregate such as count(*), a field or a number after '+', found FROM"),
            ("SELECT count(*)", "line 1, column 16: expected FROM after the SELECT list, found the end of the query"),
            ("SELECT count(*) FORM spans", "line 1, column 17: expected FROM after the SELECT list, found 'FORM' (did you mean FROM?)"),
            ("SELECT count(*) spans", "line 1, column 17: expected FROM after the SELECT list, found 'spans' (separate SELECT items with ',')"),
            ("SELECT count(*) FROM", "line 1, column 21: expected spans after FROM, found the end of the query"),
            ("SELECT count(*) FROM WHERE", "line 1, column 22: expected spans after FROM, found WHERE"),
            ("SELECT count(*) FROM logs", "line 1, column 22: unknown table 'logs', expected spans"),
            ("SELECT *, name FROM spans", "line 1, column 8: '*' selects every field and can't be combined with other SELECT items"),
            ("SELECT name, * FROM spans", "line 1, column 14: '*' selects every field and can't be combined with other SELECT items"),
            ("SELECT name AS n FROM spans", "line 1, column 13: AS names an aggregate, and a field keeps its own name"),
            ("SELECT count(*) AS FROM spans", "line 1, column 20: expected a name after AS, found FROM"),
            ("SELECT count(*) AS '' FROM spans", "line 1, column 20: an alias can't be empty"),
            ("SELECT count(*) FROM spans WHER status = 'error'", "line 1, column 28: expected WHERE, FACET, SINCE, UNTIL, TIMESERIES, ORDER BY, LIMIT or the end of the query, found 'WHER' (did you mean WHERE?)"),
            ("SELECT count(*) FROM spans WHERE a = 1 b = 2", "line 1, column 40: expected WHERE, FACET, SINCE, UNTIL, TIMESERIES, ORDER BY, LIMIT or the end of the query, found 'b' (join conditions with AND or OR)"),
            ("SELECT count(*) FROM spans ; x", "line 1, column 30: expected the end of the query, found 'x'"),
            ("SELECT count(*) FROM spans WHERE a = 1 WHERE b = 2", "line 1, column 40: duplicate WHERE clause (join conditions with AND or OR)"),
            ("SELECT count(*) FROM spans FACET a FACET b", "line 1, column 36: duplicate FACET clause (list every field in one FACET: FACET a, b)"),
            ("SELECT count(*) FROM spans FACET a ORDER BY a ORDER BY a", "line 1, column 47: duplicate ORDER BY clause (list every key in one ORDER BY: ORDER BY a, b)"),
            ("SELECT count(*) FROM spans LIMIT 1 LIMIT 2", "line 1, column 36: duplicate LIMIT clause"),
            ("SELECT count(*) FROM spans SINCE now SINCE now", "line 1, column 38: duplicate SINCE clause"),
            ("SELECT count(*) FROM spans FACET , name", "line 1, column 34: expected a field after FACET, found ','"),
            ("SELECT count(*) FROM spans FACET name,", "line 1, column 39: expected a field after ',', found the end of the query"),
            ("SELECT count(*) FROM spans FACET WHERE", "line 1, column 34: expected a field after FACET, found WHERE"),
            ("SELECT count(*) FROM spans ORDER name", "line 1, column 34: expected BY after ORDER, found 'name'"),
            ("SELECT count(*) FROM spans ORDER BY", "line 1, column 36: expected an aggregate such as count(*), a field or a number after ORDER BY, found the end of the query"),
            ("SELECT count(*) FROM spans LIMIT x", "line 1, column 34: expected a number or MAX after LIMIT, found 'x'"),
            ("SELECT count(*) FROM spans LIMIT -1", "line 1, column 34: LIMIT can't be negative"),
            ("SELECT count(*) FROM spans LIMIT 99999999999999999999", "line 1, column 34: LIMIT 99999999999999999999 is out of range"),
            ("SELECT count(*) FROM spans TIMESERIES x", "line 1, column 39: expected an interval such as 1 minute, or AUTO, after TIMESERIES, found 'x'"),
            ("SELECT count(*) FROM spans TIMESERIES 5", "line 1, column 40: expected a time unit after 5, found the end of the query (such as 5 minutes or 5m)"),
            ("SELECT count(*) FROM spans TIMESERIES 5 mintues", "line 1, column 41: expected a time unit after 5, found 'mintues' (did you mean minutes?)"),
            ("SELECT count(*) FROM spans SINCE ,", "line 1, column 34: expected a time after SINCE: a quoted RFC 3339 timestamp, epoch nanoseconds or an interval such as 1 hour ago, found ','"),
            ("SELECT count(*) FROM spans SINCE 1 hour", "line 1, column 40: expected ago after SINCE 1 hour, found the end of the query (such as SINCE 1 hour ago)"),
            ("SELECT count(*) FROM spans UNTIL 5m LIMIT 1", "line 1, column 37: expected ago after UNTIL 5m, found LIMIT (such as UNTIL 5m ago)"),
            ("SELECT count(*) FROM spans SINCE 2026-01-01", "line 1, column 34: SINCE needs quotes around a timestamp (such as SINCE '2026-11-26T13:00:00Z')"),
            ("SELECT count(*) FROM spans SINCE 1.5", "line 1, column 34: expected epoch nanoseconds or an interval after SINCE, found number 1.5 (such as SINCE 1.5 hours ago)"),
            ("SELECT count(*) FROM spans SINCE 99999999999999999999", "line 1, column 34: epoch nanoseconds 99999999999999999999 are out of range"),
            ("SELECT count(*) FROM spans WHERE", "line 1, column 33: expected a condition such as service = 'checkout', found the end of the query"),
            ("SELECT count(*) FROM spans WHERE x = 1 AND", "line 1, column 43: expected a condition such as service = 'checkout', found the end of the query"),
            ("SELECT count(*) FROM spans WHERE (a = 1", "line 1, column 40: expected ')' to close the '(' at line 1, column 34, found the end of the query"),
            ("SELECT (count(*) FROM spans", "line 1, column 18: expected ')' to close the '(' at line 1, column 8, found FROM"),
            ("SELECT count(*) FROM spans WHERE lower(name) = 'x'", "line 1, column 34: WHERE compares fields and can't call functions (use filter(...) in SELECT to aggregate a subset)"),
            ("SELECT count(*) FROM spans WHERE x 'checkout'", "line 1, column 36: expected an operator after x (=, !=, <, <=, >, >=, IN, LIKE or IS NULL), found string 'checkout' (did you mean x = 'checkout'?)"),
            ("SELECT count(*) FROM spans WHERE x AND y", "line 1, column 36: expected an operator after x (=, !=, <, <=, >, >=, IN, LIKE or IS NULL), found AND"),
            ("SELECT count(*) FROM spans WHERE 5 x", "line 1, column 36: expected a comparison operator after 5, found 'x'"),
            ("SELECT count(*) FROM spans WHERE 5 = 5", "line 1, column 38: expected a field after '=', found number 5"),
            ("SELECT count(*) FROM spans WHERE kind = server", "line 1, column 41: expected a value after '=', found 'server' (to compare with text, quote it: 'server')"),
            ("SELECT count(*) FROM spans WHERE x = WHERE", "line 1, column 38: expected a value after '=', found WHERE"),
            ("SELECT count(*) FROM spans WHERE x = - 'a'", "line 1, column 40: expected a number after '-', found string 'a'"),
            ("SELECT count(*) FROM spans WHERE x = 9223372036854775808", "line 1, column 38: integer 9223372036854775808 is out of range"),
            ("SELECT count(*) FROM spans WHERE x = 1e999", "line 1, column 38: number 1e999 is out of range"),
            ("SELECT count(*) FROM spans WHERE x NOT = 5", "line 1, column 40: expected IN or LIKE after NOT, found '='"),
            ("SELECT count(*) FROM spans WHERE x IS 5", "line 1, column 39: expected NULL or NOT NULL after IS, found number 5"),
            ("SELECT count(*) FROM spans WHERE x IS NOT 5", "line 1, column 43: expected NULL after IS NOT, found number 5"),
            ("SELECT count(*) FROM spans WHERE x IN 1", "line 1, column 39: expected '(' after IN, found number 1 (write IN (1))"),
            ("SELECT count(*) FROM spans WHERE x NOT IN y", "line 1, column 43: expected '(' after NOT IN, found 'y'"),
            ("SELECT count(*) FROM spans WHERE x IN ()", "line 1, column 40: expected a value in IN (...), found ')'"),
            ("SELECT count(*) FROM spans WHERE x IN (1 2)", "line 1, column 42: expected ',' or ')' in IN (...), found number 2"),
            ("SELECT count(*) FROM spans WHERE x NOT IN (1,", "line 1, column 46: expected a value in NOT IN (...), found the end of the query"),
            ("SELECT count(*) FROM spans WHERE foo.`bar` = 1", "line 1, column 34: only span. and resource. can come before a backquoted name (backquote the whole name: `foo.bar`)"),
            ("SELECT count(*) FROM spans WHERE `` = 1", "line 1, column 34: an attribute name can't be empty"),
            ("SELECT count(*) FROM spans WHERE span.`` = 1", "line 1, column 39: an attribute name can't be empty"),
            ("SELECT avrg(duration) FROM spans", "line 1, column 8: unknown function 'avrg' (did you mean avg?)"),
            ("SELECT median(duration) FROM spans", "line 1, column 8: unknown function 'median' (use percentile(field, 50))"),
            ("SELECT mean(duration) FROM spans", "line 1, column 8: unknown function 'mean' (did you mean avg?)"),
            ("SELECT uniqueCount(x) FROM spans", "line 1, column 8: unknown function 'uniquecount' (use uniq(field))"),
            ("SELECT p99(duration) FROM spans", "line 1, column 8: unknown function 'p99' (use percentile(field, 99))"),
            ("SELECT frobnicate(duration) FROM spans", "line 1, column 8: unknown function 'frobnicate' (the functions are count, sum, avg, min, max, percentile, uniq, histogram, rate and filter)"),
            ("SELECT count(DISTINCT x) FROM spans", "line 1, column 14: count(DISTINCT ...) isn't SpanQL (use uniq(field) to count distinct values)"),
            ("SELECT count() FROM spans", "line 1, column 14: expected * or a field in count(...), found ')' (count(*) counts spans)"),
            ("SELECT count(* x FROM spans", "line 1, column 16: expected ')' to close count(, found 'x'"),
            ("SELECT sum(x, y) FROM spans", "line 1, column 13: sum takes one argument, found ','"),
            ("SELECT sum() FROM spans", "line 1, column 12: expected a field in sum(...), found ')'"),
            ("SELECT percentile(duration) FROM spans", "line 1, column 27: expected ',' and percentiles after the field, found ')' (such as percentile(duration, 95))"),
            ("SELECT percentile(duration, ) FROM spans", "line 1, column 29: expected a value in percentile(...), found ')'"),
            ("SELECT histogram(duration) FROM spans", "line 1, column 26: expected ',' and a ceiling after the field, found ')' (such as histogram(duration, 1s, 20))"),
            ("SELECT histogram(duration, 1s, 2, 3) FROM spans", "line 1, column 33: expected ')' to close histogram(, found ','"),
            ("SELECT rate(count(*)) FROM spans", "line 1, column 21: expected ',' and an interval after the aggregate in rate(...), found ')' (such as rate(count(*), 1 minute))"),
            ("SELECT rate(count(*), x) FROM spans", "line 1, column 23: expected an interval such as 1 minute or 5m in rate(...), found 'x'"),
            ("SELECT rate(x, 1m) FROM spans", "line 1, column 13: expected an aggregate such as count(*) as the first argument of rate, found 'x'"),
            ("SELECT filter(name, WHERE a = 1) FROM spans", "line 1, column 15: expected an aggregate such as count(*) as the first argument of filter, found 'name'"),
            ("SELECT filter(count(*)) FROM spans", "line 1, column 23: expected ',' and WHERE after the aggregate in filter(...), found ')' (such as filter(count(*), WHERE status = 'error'))"),
            ("SELECT filter(count(*), status = 'error') FROM spans", "line 1, column 25: expected WHERE in filter(...), found 'status' (filter takes an aggregate and a WHERE clause: filter(count(*), WHERE ...))"),
            ("SELECT filter(count(*), )", "line 1, column 25: expected WHERE in filter(...), found ')' (such as filter(count(*), WHERE status = 'error'))"),
            ("SELECT filter(count(*), WHERE x = 1 FROM spans", "line 1, column 37: expected ')' to close filter(, found FROM"),
            ("SELECT count(*) * 1e999 FROM spans", "line 1, column 19: number 1e999 is out of range"),
            ("SELECT count(*) FROM spans WHERE x == 1", "line 1, column 36: unexpected '==' (did you mean '='?)"),
            ("SELECT count(*) FROM spans WHERE x = \"a\"", "line 1, column 38: unexpected '\"' (write 'a' for a string or `a` for a name)"),
            ("SELECT count(*)\nFROM spans\nWHERE x = 'abc", "line 3, column 11: unterminated string (expected a closing ')"),
        ];
        for (text, expected) in cases {
            assert_eq!(error(text), expected, "{text}");
        }
    }

    #[test]
    fn errors_on_later_lines_count_from_the_line_start() {
        let text = "SELECT count(*)\n  FROM spans\n  FACET , name";
        let error = match parse(text) {
            Err(error) => error,
            Ok(statement) => panic!("parsed as {statement}"),
        };
        assert_eq!(error.to_string(), "line 3, column 9: expected a field after FACET, found ','");
        assert_eq!(error.position().map(|position| position.offset), Some(37));
        assert_eq!(error.caret(text).as_deref(), Some("  FACET , name\n        ^"));
        assert_eq!(error.message(), "expected a field after FACET, found ','");
    }

    #[test]
    fn nesting_is_bounded() {
        let nested =
            |depth: usize| format!("SELECT count(*) FROM spans WHERE {}a = 1{}", "(".repeat(depth), ")".repeat(depth));
        ok(&nested(MAX_DEPTH));
        assert_eq!(
            error(&nested(MAX_DEPTH + 1)),
            format!("line 1, column {}: the query nests more than 64 levels deep", 34 + MAX_DEPTH)
        );
        assert!(error(&nested(100_000)).ends_with("the query nests more than 64 levels deep"));
        let nots = format!("SELECT count(*) FROM spans WHERE {}a = 1", "NOT ".repeat(100_000));
        assert!(error(&nots).ends_with("the query nests more than 64 levels deep"));
        let negations = format!("SELECT {}count(*) FROM spans", "-".repeat(100_000));
        assert!(parse(&negations).is_err());
        let negations = format!("SELECT {}count(*) FROM spans", "- ".repeat(100_000));
        assert!(error(&negations).ends_with("the query nests more than 64 levels deep"));
        let filters =
            format!("SELECT {}count(*){} FROM spans", "filter(".repeat(100_000), ", WHERE a = 1)".repeat(100_000));
        assert!(error(&filters).ends_with("the query nests more than 64 levels deep"));
        let sums = format!("SELECT count(*){} FROM spans", " + 1".repeat(100_000));
        assert!(error(&sums).ends_with("the query nests more than 64 levels deep"));
        // Flat lists are not nesting.
        let conditions = vec!["a = 1"; 100_000].join(" AND ");
        ok(&format!("SELECT count(*) FROM spans WHERE {conditions}"));
        let values = vec!["1"; 100_000].join(", ");
        ok(&format!("SELECT count(*) FROM spans WHERE a IN ({values})"));
    }

    #[test]
    fn long_text_in_messages_is_shortened() {
        let long = "x".repeat(100);
        assert_eq!(
            error(&format!("SELECT count(*) '{long}'")),
            format!(
                "line 1, column 17: expected FROM after the SELECT list, found string '{}\u{2026}'",
                "x".repeat(37)
            )
        );
        assert_eq!(
            error(&format!("SELECT count(*) FROM {long}")),
            format!("line 1, column 22: unknown table '{}\u{2026}', expected spans", "x".repeat(38))
        );
        assert_eq!(
            error(&format!("SELECT count(*) FROM spans SINCE '{long}'")),
            format!(
                "line 1, column 34: invalid RFC 3339 timestamp '{}\u{2026}': expected a four-digit year",
                "x".repeat(38)
            )
        );
    }

    /// Every statement in docs/QUERY.md's `sql` blocks parses and round-trips, and in
    /// plain blocks every statement followed by a `line N, column M: ...` line fails
    /// with exactly that message, or if followed by a statement, prints as it.
    #[test]
    fn reference_examples() {
        const REFERENCE: &str = include_str!("../../docs/QUERY.md");
        let starts_statement =
            |line: &str| ["SELECT", "TRACE", "EXPLAIN", "select"].iter().any(|k| line.starts_with(k));
        let mut checked = 0;
        for (index, block) in REFERENCE.split("```").enumerate() {
            if index % 2 == 0 {
                continue;
            }
            let (language, body) = block.split_once('\n').unwrap_or((block, ""));
            let mut statements: Vec<String> = Vec::new();
            for line in body.lines().filter(|line| !line.trim().is_empty()) {
                if starts_statement(line) || line.starts_with("line ") || statements.is_empty() {
                    statements.push(line.to_string());
                } else if let Some(last) = statements.last_mut() {
                    last.push('\n');
                    last.push_str(line);
                }
            }
            match language.trim() {
                "sql" => {
                    for statement in statements.iter().filter(|text| starts_statement(text)) {
                        canonical(statement);
                        checked += 1;
                    }
                }
                "" => {
                    for pair in statements.windows(2) {
                        let [text, outcome] = pair else { continue };
                        if !starts_statement(text) {
                            continue;
                        }
                        if outcome.starts_with("line ") {
                            assert_eq!(&error(text), outcome);
                            checked += 1;
                        } else if starts_statement(outcome) {
                            assert_eq!(&canonical(text), outcome);
                            checked += 1;
                        }
                    }
                }
                _ => {}
            }
        }
        assert!(checked >= 40, "only {checked} examples checked");
    }

    #[test]
    fn helpers() {
        assert!(is_reserved("select") && is_reserved("Null") && !is_reserved("count") && !is_reserved("max"));
        assert_eq!(closest("WHER", &CLAUSES), Some("WHERE"));
        assert_eq!(closest("where", &CLAUSES), None);
        assert_eq!(closest("xyz", &CLAUSES), None);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "abc"), 3);
    }

    // ---- never panic ----

    const VOCABULARY: [&str; 94] = [
        "SELECT",
        "FROM",
        "spans",
        "WHERE",
        "FACET",
        "SINCE",
        "UNTIL",
        "TIMESERIES",
        "ORDER",
        "BY",
        "LIMIT",
        "MAX",
        "AUTO",
        "AND",
        "OR",
        "NOT",
        "IN",
        "LIKE",
        "IS",
        "NULL",
        "true",
        "false",
        "AS",
        "ASC",
        "DESC",
        "ago",
        "now",
        "TRACE",
        "EXPLAIN",
        "count",
        "sum",
        "avg",
        "min",
        "max",
        "percentile",
        "uniq",
        "histogram",
        "rate",
        "filter",
        "(",
        ")",
        "(",
        ")",
        ",",
        ",",
        "*",
        "+",
        "-",
        "/",
        "=",
        "!=",
        "<>",
        "<",
        "<=",
        ">",
        ">=",
        ";",
        "name",
        "duration",
        "kind",
        "status",
        "trace_id",
        "span_id",
        "parent_span_id",
        "start",
        "end",
        "service",
        "http.route",
        "span.x",
        "resource.y",
        "span.`a b`",
        "`odd`",
        "'text'",
        "'server'",
        "'error'",
        "'2026-11-26T13:00:00Z'",
        "'4bf92f3577b34da6a3ce929d0e0e4736'",
        "0",
        "1",
        "50",
        "99.9",
        "101",
        "-1",
        "1e3",
        "250ms",
        "1.5s",
        "2m",
        "1 minute",
        "5 minutes",
        "1 hour ago",
        "1700000000000000000",
        "9999999999999999999999",
        "'%x%'",
        "minutes",
    ];

    fn token_soup() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        prop::collection::vec(prop::sample::select(&VOCABULARY[..]), 0..40).prop_map(|words| words.join(" "))
    }

    const CORPUS: [&str; 8] = [
        "SELECT count(*) FROM spans WHERE service = 'checkout' AND status = 'error' FACET http.route SINCE 1 hour ago TIMESERIES 1 minute",
        "SELECT percentile(duration, 50, 95, 99) FROM spans WHERE faas.coldstart = true FACET faas.name LIMIT 20",
        "SELECT filter(count(*), WHERE status = 'error') / count(*) * 100 AS rate FROM spans FACET a, b ORDER BY rate DESC LIMIT MAX",
        "SELECT * FROM spans WHERE name LIKE 'GET %' AND kind IN ('server', 'client') AND NOT (x IS NULL OR y != 5) LIMIT 10",
        "SELECT histogram(duration, 1s, 20), rate(count(*), 1 minute), uniq(span.`a b`) FROM spans SINCE '2026-11-26T13:00:00+01:00' UNTIL now",
        "EXPLAIN SELECT max(duration) - min(duration) FROM spans WHERE start >= 1795698000000000000 AND duration > 250ms",
        "TRACE '4bf92f3577b34da6a3ce929d0e0e4736'",
        "SELECT name, duration FROM spans WHERE -5 < x ORDER BY duration DESC, name",
    ];

    fn mutated_corpus() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        let edit = (any::<prop::sample::Index>(), 0u8..4, any::<char>(), prop::sample::select(&VOCABULARY[..]));
        (prop::sample::select(&CORPUS[..]), prop::collection::vec(edit, 1..6)).prop_map(|(text, edits)| {
            let mut chars: Vec<char> = text.chars().collect();
            for (index, operation, c, word) in edits {
                let at = index.index(chars.len() + 1);
                match operation {
                    0 => {
                        if at < chars.len() {
                            chars.remove(at);
                        }
                    }
                    1 => chars.insert(at, c),
                    2 => {
                        for (offset, w) in word.chars().enumerate() {
                            chars.insert(at + offset, w);
                        }
                    }
                    _ => chars.truncate(at),
                }
            }
            chars.into_iter().collect()
        })
    }

    /// Proptest cases: `default`, or `PROPTEST_CASES` when set, for longer runs.
    pub(crate) fn cases(default: u32) -> u32 {
        std::env::var("PROPTEST_CASES").ok().and_then(|cases| cases.parse().ok()).unwrap_or(default)
    }

    /// Whatever parses must print canonically and parse back to the same tree; an error
    /// must point inside the text and end without a period.
    fn parse_and_round_trip(text: &str) -> Result<(), proptest::test_runner::TestCaseError> {
        match parse(text) {
            Ok(statement) => {
                let printed = statement.to_string();
                let again = parse(&printed);
                proptest::prop_assert!(again.is_ok(), "{text} printed as {printed}, which fails: {again:?}");
                proptest::prop_assert_eq!(again.ok(), Some(statement), "{} printed as {}", text, printed);
            }
            Err(error) => {
                let position = error.position();
                proptest::prop_assert!(position.is_some(), "{error:?}");
                let position = position.unwrap_or_default();
                proptest::prop_assert!(position.offset <= text.len() && text.is_char_boundary(position.offset));
                proptest::prop_assert!(position.line >= 1 && position.column >= 1);
                proptest::prop_assert!(error.caret(text).is_some());
                let message = error.to_string();
                proptest::prop_assert!(!message.ends_with('.'), "{message}");
            }
        }
        Ok(())
    }

    proptest::proptest! {
        #![proptest_config(proptest::test_runner::Config::with_cases(crate::parser::tests::cases(2000)))]

        #[test]
        fn arbitrary_text_never_panics(text in "\\PC{0,80}") {
            parse_and_round_trip(&text)?;
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..120)) {
            parse_and_round_trip(&String::from_utf8_lossy(&bytes))?;
        }

        #[test]
        fn token_soup_never_panics(text in token_soup()) {
            parse_and_round_trip(&text)?;
            parse_and_round_trip(&format!("SELECT {text}"))?;
            parse_and_round_trip(&format!("SELECT count(*) FROM spans {text}"))?;
            parse_and_round_trip(&format!("SELECT * FROM spans WHERE {text}"))?;
        }

        #[test]
        fn mutated_queries_never_panic(text in mutated_corpus()) {
            parse_and_round_trip(&text)?;
        }
    }
}
