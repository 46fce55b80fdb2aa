//! `QueryError`, the query crate's one error type: every error names where it happened.

#![deny(clippy::unwrap_used, clippy::indexing_slicing)]

use crate::lexer::Position;

/// An error from the query crate.
///
/// Messages are lowercase without a trailing period and, where there is a likely fix,
/// end with a suggestion in parentheses:
/// `line 1, column 31: expected a field after FACET, found ','`.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// The text doesn't follow the grammar.
    #[error("line {line}, column {column}: {message}")]
    Syntax {
        /// 1-based line.
        line: u32,
        /// 1-based column, in characters.
        column: u32,
        /// Byte offset into the query text.
        offset: usize,
        /// What was expected and what was found.
        message: String,
    },
    /// The query is well-formed but doesn't type-check.
    #[error("line {line}, column {column}: {message}")]
    Type {
        /// 1-based line.
        line: u32,
        /// 1-based column, in characters.
        column: u32,
        /// Byte offset into the query text.
        offset: usize,
        /// What is wrong.
        message: String,
    },
    /// A timestamp given outside a query (such as to `export --since`) isn't valid
    /// RFC 3339. Inside a query the same problem is a [`QueryError::Type`] with a position.
    #[error("invalid RFC 3339 timestamp '{text}': {reason}")]
    Timestamp {
        /// The text as given.
        text: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Reading the data failed (a damaged file, an I/O error); the message names the
    /// file and offset.
    #[error("{0}")]
    Engine(String),
    /// The query is valid but cannot run as asked (too many groups or buckets).
    #[error("{0}")]
    Execution(String),
    /// The query was cancelled.
    #[error("the query was cancelled")]
    Cancelled,
    /// A bug in the query crate.
    #[error("internal error: {0}")]
    Internal(String),
}

/// The query crate's result type.
pub type Result<T, E = QueryError> = std::result::Result<T, E>;

impl QueryError {
    pub(crate) fn syntax(position: Position, message: impl Into<String>) -> QueryError {
        QueryError::Syntax {
            line: position.line,
            column: position.column,
            offset: position.offset,
            message: message.into(),
        }
    }

    pub(crate) fn type_error(position: Position, message: impl Into<String>) -> QueryError {
        QueryError::Type {
            line: position.line,
            column: position.column,
            offset: position.offset,
            message: message.into(),
        }
    }

    /// Where in the query text the error is, if it has a place.
    pub fn position(&self) -> Option<Position> {
        match *self {
            QueryError::Syntax { line, column, offset, .. } | QueryError::Type { line, column, offset, .. } => {
                Some(Position { offset, line, column })
            }
            QueryError::Timestamp { .. }
            | QueryError::Engine(_)
            | QueryError::Execution(_)
            | QueryError::Cancelled
            | QueryError::Internal(_) => None,
        }
    }

    /// The message without its position.
    pub fn message(&self) -> String {
        match self {
            QueryError::Syntax { message, .. } | QueryError::Type { message, .. } => message.clone(),
            other => other.to_string(),
        }
    }

    /// The offending line of `text` with a caret under the error's column, for a shell
    /// to print below the message:
    ///
    /// ```text
    /// SELECT count(*) FROM spans FACET , name
    ///                                  ^
    /// ```
    pub fn caret(&self, text: &str) -> Option<String> {
        let position = self.position()?;
        let line_index = usize::try_from(position.line).ok()?.checked_sub(1)?;
        let line = text.split('\n').nth(line_index)?;
        let line = line.strip_suffix('\r').unwrap_or(line);
        let column_index = usize::try_from(position.column).ok()?.checked_sub(1)?;
        // Keep tabs so the caret lines up under them.
        let pad: String = line.chars().take(column_index).map(|c| if c == '\t' { '\t' } else { ' ' }).collect();
        Some(format!("{line}\n{pad}^"))
    }
}
