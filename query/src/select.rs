//! Pieces of a query given on their own, as `spanstore export --where P --since T` takes
//! them: a `WHERE` predicate and a `SINCE`/`UNTIL` time, parsed by the one SpanQL
//! parser, with errors that point into the text the user typed.
//!
//! Each piece is parsed inside a synthetic `SELECT count(*) FROM spans ...` statement
//! so that it means exactly what it means in a query (same fields, literals, type
//! checks); an error's line and column are then moved back into the piece's own text.
#![deny(clippy::unwrap_used, clippy::indexing_slicing)]

use crate::ast::{Expr, Statement, TimeBound};
use crate::error::QueryError;
use crate::parser::parse;
use crate::time::parse_rfc3339;

const WHERE_PREFIX: &str = "SELECT count(*) FROM spans WHERE ";
const SINCE_PREFIX: &str = "SELECT count(*) FROM spans SINCE ";

/// Which spans a filter keeps: a predicate and a `[since, until)` range of span starts.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SpanFilter {
    /// The `WHERE` predicate; `None` keeps every span.
    pub predicate: Option<Expr>,
    /// The first start time included.
    pub since: Option<TimeBound>,
    /// The first start time excluded.
    pub until: Option<TimeBound>,
}

impl SpanFilter {
    /// Parses each piece that is given (see [`parse_predicate`] and [`parse_time`]).
    pub fn parse(predicate: Option<&str>, since: Option<&str>, until: Option<&str>) -> Result<SpanFilter, QueryError> {
        Ok(SpanFilter {
            predicate: predicate.map(parse_predicate).transpose()?,
            since: since.map(parse_time).transpose()?,
            until: until.map(parse_time).transpose()?,
        })
    }

    /// The `[since, until)` range in ns since the epoch given "now" (for `N units ago`);
    /// an absent bound is the end of the `u64` range on its side.
    pub fn time_range(&self, now_unix_nano: i64) -> (u64, u64) {
        let resolve = |bound: Option<TimeBound>, default: u64| {
            bound.map(|b| u64::try_from(b.resolve(now_unix_nano).max(0)).unwrap_or(0)).unwrap_or(default)
        };
        (resolve(self.since, 0), resolve(self.until, u64::MAX))
    }
}

/// Parses a SpanQL `WHERE` predicate such as `service = 'checkout' AND duration > 250ms`.
pub fn parse_predicate(text: &str) -> Result<Expr, QueryError> {
    let statement = parse(&format!("{WHERE_PREFIX}{text}")).map_err(|e| shift(e, WHERE_PREFIX))?;
    match statement {
        Statement::Select(query) if only_clause(&query, "WHERE") => query.filter.ok_or_else(|| QueryError::Syntax {
            line: 1,
            column: 1,
            offset: 0,
            message: "expected a predicate, found the end of the text".into(),
        }),
        _ => Err(QueryError::Syntax {
            line: 1,
            column: 1,
            offset: 0,
            message: "expected a predicate alone, found other clauses (FACET, SINCE, LIMIT ...)".into(),
        }),
    }
}

/// Parses a SpanQL time: an RFC 3339 timestamp (quoted or not), epoch nanoseconds,
/// `now`, or `N units ago`.
pub fn parse_time(text: &str) -> Result<TimeBound, QueryError> {
    let trimmed = text.trim();
    // Unquoted RFC 3339 (a shell argument rarely keeps quotes).
    if trimmed.len() >= 10 && trimmed.as_bytes().get(4) == Some(&b'-') {
        return parse_rfc3339(trimmed).map(TimeBound::Rfc3339);
    }
    let statement = parse(&format!("{SINCE_PREFIX}{text}")).map_err(|e| shift(e, SINCE_PREFIX))?;
    match statement {
        Statement::Select(query) if only_clause(&query, "SINCE") => query.since.ok_or_else(|| QueryError::Syntax {
            line: 1,
            column: 1,
            offset: 0,
            message: "expected a time, found the end of the text".into(),
        }),
        _ => Err(QueryError::Syntax {
            line: 1,
            column: 1,
            offset: 0,
            message: "expected a time alone, found other clauses".into(),
        }),
    }
}

/// True when the synthetic statement holds nothing but the clause under parse.
fn only_clause(query: &crate::ast::Query, clause: &str) -> bool {
    let plain = query.facets.is_empty()
        && query.timeseries.is_none()
        && query.order_by.is_empty()
        && query.limit.is_none()
        && query.until.is_none();
    match clause {
        "WHERE" => plain && query.since.is_none(),
        _ => plain && query.filter.is_none(),
    }
}

/// Moves an error's position from the synthetic statement back into the piece.
fn shift(error: QueryError, prefix: &str) -> QueryError {
    let columns = u32::try_from(prefix.chars().count()).unwrap_or(0);
    let move_back = |line: u32, column: u32, offset: usize| {
        if line == 1 {
            (column.saturating_sub(columns).max(1), offset.saturating_sub(prefix.len()))
        } else {
            (column, offset.saturating_sub(prefix.len()))
        }
    };
    match error {
        QueryError::Syntax { line, column, offset, message } => {
            let (column, offset) = move_back(line, column, offset);
            QueryError::Syntax { line, column, offset, message }
        }
        QueryError::Type { line, column, offset, message } => {
            let (column, offset) = move_back(line, column, offset);
            QueryError::Type { line, column, offset, message }
        }
        other => other,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::ast::{CompareOp, Field, Intrinsic, Literal};

    #[test]
    fn predicates_parse_as_in_a_query() {
        let expr = parse_predicate("name = 'GetItem'").unwrap();
        assert_eq!(
            expr,
            Expr::Compare {
                field: Field::Intrinsic(Intrinsic::Name),
                op: CompareOp::Eq,
                value: Literal::String("GetItem".into())
            }
        );
        assert!(matches!(parse_predicate("duration > 2ms AND status = 'error'").unwrap(), Expr::And(_)));
    }

    #[test]
    fn errors_point_into_the_piece() {
        let error = parse_predicate("name = ").unwrap_err();
        assert_eq!(error.position().unwrap().column, 8, "{error}");
        assert!(error.to_string().starts_with("line 1, column 8: "), "{error}");
        let error = parse_predicate("duration > 'x'").unwrap_err();
        assert!(error.to_string().starts_with("line 1, column "), "{error}");
        assert!(parse_predicate("").is_err());
        assert!(parse_predicate("name = 'a' FACET name").is_err());
    }

    #[test]
    fn times_in_every_form() {
        assert_eq!(parse_time("2026-11-26T13:00:00Z").unwrap(), TimeBound::Rfc3339(1_795_698_000_000_000_000));
        assert_eq!(parse_time("'2026-11-26T13:00:00Z'").unwrap(), TimeBound::Rfc3339(1_795_698_000_000_000_000));
        assert_eq!(parse_time("1795698000000000000").unwrap(), TimeBound::EpochNanos(1_795_698_000_000_000_000));
        assert_eq!(parse_time("2 hours ago").unwrap(), TimeBound::Ago(2 * 3_600_000_000_000));
        assert_eq!(parse_time("now").unwrap(), TimeBound::Ago(0));
        assert!(parse_time("2026-13-01T00:00:00Z").is_err());
        assert!(parse_time("yesterday").is_err());
        assert!(parse_time("").is_err());
    }

    #[test]
    fn filter_time_range_is_half_open_and_unbounded_by_default() {
        let filter = SpanFilter::parse(None, Some("100"), Some("200")).unwrap();
        assert_eq!(filter.time_range(0), (100, 200));
        assert_eq!(SpanFilter::default().time_range(0), (0, u64::MAX));
        let filter = SpanFilter::parse(None, Some("1 hour ago"), None).unwrap();
        assert_eq!(filter.time_range(3_600_000_000_001).0, 1);
    }
}
