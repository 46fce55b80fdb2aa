//! Integration tests of the wire formats: round trips, malformed payloads, mappings.

mod corpus;
mod otlp;
mod roundtrip;
mod zipkin;
