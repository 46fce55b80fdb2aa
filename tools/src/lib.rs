//! The `spanstore` command-line tool, as a library so that integration tests can drive it.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

use std::ffi::OsString;

/// Runs the tool with `args` (the program name first); returns the exit code.
pub fn run(args: impl IntoIterator<Item = OsString>) -> i32 {
    let _ = args.into_iter().count();
    0
}
