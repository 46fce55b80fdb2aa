//! The `spanstore` command-line tool: argument parsing, printing and exit codes only.
#![forbid(unsafe_code)]

/// mimalloc rather than the system allocator: decoding requests allocates many small
/// strings and vectors, and glibc's malloc spent about a fifth of `serve`'s CPU time on
/// them (docs/PERFORMANCE.md). Version 2, with transparent huge pages off for the
/// process: mimalloc returns freed memory to the kernel soon, and with huge pages every
/// fault on it again zeroed 2 MiB, a third of the CPU time under load.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    std::process::exit(spanstore::run(std::env::args_os()));
}
