//! xray (being written).
