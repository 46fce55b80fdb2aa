//! otlp_json (being written).
