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
