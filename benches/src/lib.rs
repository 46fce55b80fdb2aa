//! Benchmarks and load drivers for spanstore. The workload generator lives in
//! `spanstore-workload` (it also backs `spanstore gen` and `spanstore demo`); it is
//! re-exported here so the drivers and benches keep one short path.
#![forbid(unsafe_code)]

pub use spanstore_workload::*;
