//! SpanQL, spanstore's query language: text to a checked, typed syntax tree.
//!
//! [`parse`] lexes, parses and type-checks one statement and returns a [`Statement`]
//! whose fields are already resolved (intrinsic or scoped attribute), whose literals
//! are typed for the fields they meet, and whose durations, intervals and time bounds
//! are nanoseconds. `Display` on any AST node prints canonical SpanQL that parses back
//! to an equal tree. Every error is a [`QueryError`] naming a line and column:
//!
//! ```
//! use spanstore_query::{parse, Statement};
//!
//! let statement = parse("SELECT count(*) FROM spans WHERE status = 'error' FACET service SINCE 1 hour ago")?;
//! let Statement::Select(query) = &statement else { unreachable!() };
//! assert_eq!(query.facets.len(), 1);
//! assert_eq!(statement.to_string(), "SELECT count(*) FROM spans WHERE status = 'error' FACET service SINCE 1 hour ago");
//!
//! let error = parse("SELECT count(*) FROM spans FACET , name").unwrap_err();
//! assert_eq!(error.to_string(), "line 1, column 34: expected a field after FACET, found ','");
//! # Ok::<(), spanstore_query::QueryError>(())
//! ```
//!
//! The language reference, with an example of every feature, is `docs/QUERY.md`.
//! This crate never touches a file, a path or a memory map.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod agg;
pub mod ast;
mod check;
mod display;
pub mod error;
pub mod exec;
pub mod lexer;
pub mod parser;
pub mod select;
pub mod time;
pub mod value;

pub use ast::{
    Aggregate, AggregateExpr, ArithOp, CompareOp, Expr, Field, FieldType, Intrinsic, Limit, Literal, OrderBy, OrderKey,
    Query, Scope, SelectItem, Statement, TimeBound, Timeseries,
};
pub use error::{QueryError, Result};
pub use exec::{execute, ExecOptions};
pub use lexer::Position;
pub use parser::parse;
pub use time::{format_rfc3339, format_rfc3339_nanos, parse_rfc3339};
pub use value::{QueryResult, Value};

/// Parses and runs one statement over `snapshot`, with relative times (`SINCE 1 hour
/// ago`) counted from the system clock: the one-call form for embedding programs.
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let dir = std::env::temp_dir().join(format!("spanstore-query-doc-{}", std::process::id()));
/// # let _ = std::fs::remove_dir_all(&dir);
/// let store = spanstore_engine::Store::open(&dir, spanstore_engine::Options::default())?;
/// let result = spanstore_query::query(&store.snapshot(), "SELECT count(*) FROM spans")?;
/// assert_eq!(result.rows[0][0].as_f64(), Some(0.0));
/// # store.close()?;
/// # std::fs::remove_dir_all(&dir)?;
/// # Ok(())
/// # }
/// ```
pub fn query(snapshot: &spanstore_engine::Snapshot, text: &str) -> Result<QueryResult> {
    let statement = parse(text)?;
    let now_unix_nano = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0);
    execute(snapshot, &statement, &ExecOptions { now_unix_nano, cancel: None, ..Default::default() })
}
