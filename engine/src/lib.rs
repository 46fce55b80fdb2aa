//! spanstore engine: stores spans in an append-only log and a columnar memtable, and
//! serves consistent snapshots of them. It never sees query text.
//!
//! Start at [`Store`]: `Store::open(dir, Options::default())`, then `append` batches
//! built with [`SpanBatch`] and read them back through [`Store::snapshot`].
#![deny(missing_docs)]
#![deny(unsafe_code)]

pub mod batch;
pub mod codec;
pub mod error;
pub mod fs;
pub mod log;
pub mod manifest;
pub mod memtable;
pub mod mmap;
pub mod model;
pub mod segment;
pub mod snapshot;
pub mod store;
pub mod verify;

pub use batch::{SpanBatch, SpanFields, ValueRef};
pub use error::{EngineError, Result};
pub use log::writer::SyncPolicy;
pub use model::{AnyValue, Event, KeyValue, Link, Resource, Scope, Span, SpanId, SpanKind, StatusCode, TraceId};
pub use snapshot::Snapshot;
pub use store::{AppendReceipt, Options, RecoveryReport, Store};
