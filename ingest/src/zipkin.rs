//! zipkin (being written).
