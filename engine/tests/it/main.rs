//! Integration tests of the engine crate: one binary, one module per theme.

mod compat;
mod concurrency;
mod crash;
mod damage;
mod maintenance;
mod power_loss;
mod segments;
mod store;
mod support;
