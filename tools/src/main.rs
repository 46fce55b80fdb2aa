//! The `spanstore` command-line tool: argument parsing, printing and exit codes only.
#![forbid(unsafe_code)]

fn main() {
    std::process::exit(spanstore::run(std::env::args_os()));
}
