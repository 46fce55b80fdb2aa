//! tracecontext (being written).
