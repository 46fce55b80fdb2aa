//! Result values and result tables, with the JSON, CSV and text renderings of DESIGN.md
//! §1.4 (ids as lowercase hex, kinds and statuses as words, timestamps as RFC 3339
//! with nanoseconds, durations as integer nanoseconds, NaN and infinities as strings).

use std::cmp::Ordering;
use std::fmt::Write as _;

use spanstore_engine::{AnyValue, SpanId, SpanKind, StatusCode, TraceId};

use crate::time::format_rfc3339_nanos;

/// One cell of a result.
#[derive(Clone, Debug)]
pub enum Value {
    /// No value (a missing attribute, an empty aggregate).
    Null,
    /// A boolean.
    Bool(bool),
    /// An exact integer.
    Int(i64),
    /// A float.
    Float(f64),
    /// A string.
    Str(String),
    /// Nanoseconds since the epoch.
    Timestamp(i64),
    /// Nanoseconds.
    Duration(i64),
    /// A trace id.
    TraceId(TraceId),
    /// A span id.
    SpanId(SpanId),
    /// A span kind.
    Kind(SpanKind),
    /// A status code.
    Status(StatusCode),
    /// Bytes, arrays, maps and empty values of attributes.
    Any(AnyValue),
    /// Histogram buckets (counts).
    Buckets(Vec<u64>),
}

impl Value {
    /// The value as a number, for aggregates and arithmetic.
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Value::Int(i) | Value::Timestamp(i) | Value::Duration(i) => Some(i as f64),
            Value::Float(f) => Some(f),
            _ => None,
        }
    }

    /// True for `Null`.
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    fn rank(&self) -> u8 {
        match self {
            Value::Null => 0,
            Value::Bool(_) => 1,
            Value::Int(_) | Value::Float(_) | Value::Timestamp(_) | Value::Duration(_) => 2,
            Value::Str(_) => 3,
            Value::TraceId(_) => 4,
            Value::SpanId(_) => 5,
            Value::Kind(_) => 6,
            Value::Status(_) => 7,
            Value::Any(_) => 8,
            Value::Buckets(_) => 9,
        }
    }

    /// A total order: nulls first, numbers by value (NaN last among them), then by kind.
    pub fn total_cmp(&self, other: &Value) -> Ordering {
        match (self, other) {
            (Value::Bool(a), Value::Bool(b)) => a.cmp(b),
            (Value::Int(a), Value::Int(b)) => a.cmp(b),
            (Value::Str(a), Value::Str(b)) => a.cmp(b),
            (Value::TraceId(a), Value::TraceId(b)) => a.cmp(b),
            (Value::SpanId(a), Value::SpanId(b)) => a.cmp(b),
            (Value::Kind(a), Value::Kind(b)) => a.cmp(b),
            (Value::Status(a), Value::Status(b)) => a.cmp(b),
            (Value::Buckets(a), Value::Buckets(b)) => a.cmp(b),
            _ => match (self.as_f64(), other.as_f64()) {
                (Some(a), Some(b)) => a.total_cmp(&b),
                _ => self.rank().cmp(&other.rank()).then_with(|| format!("{self:?}").cmp(&format!("{other:?}"))),
            },
        }
    }

    /// A key for grouping: equal values give equal keys.
    pub fn group_key(&self) -> GroupKey {
        match self {
            Value::Null => GroupKey::Null,
            Value::Bool(b) => GroupKey::Bool(*b),
            Value::Int(i) => GroupKey::Int(*i),
            Value::Float(f) => GroupKey::Float(f.to_bits()),
            Value::Str(s) => GroupKey::Str(s.clone()),
            Value::Timestamp(t) => GroupKey::Int(*t),
            Value::Duration(d) => GroupKey::Int(*d),
            Value::TraceId(t) => GroupKey::Bytes(t.0.to_vec()),
            Value::SpanId(s) => GroupKey::Bytes(s.0.to_vec()),
            Value::Kind(k) => GroupKey::Int(*k as i64),
            Value::Status(s) => GroupKey::Int(*s as i64 + 100),
            Value::Any(a) => GroupKey::Str(format!("{a:?}")),
            Value::Buckets(b) => GroupKey::Str(format!("{b:?}")),
        }
    }

    /// The JSON rendering of the cell.
    pub fn to_json(&self, out: &mut String) {
        match self {
            Value::Null => out.push_str("null"),
            Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Value::Int(i) | Value::Duration(i) => {
                let _ = write!(out, "{i}");
            }
            Value::Float(f) => json_float(out, *f),
            Value::Str(s) => json_string(out, s),
            Value::Timestamp(t) => json_string(out, &format_rfc3339_nanos(*t)),
            Value::TraceId(t) => json_string(out, &t.to_hex()),
            Value::SpanId(s) => json_string(out, &s.to_hex()),
            Value::Kind(k) => json_string(out, k.as_str()),
            Value::Status(s) => json_string(out, s.as_str()),
            Value::Any(a) => json_any(out, a),
            Value::Buckets(b) => {
                out.push('[');
                for (i, count) in b.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    let _ = write!(out, "{count}");
                }
                out.push(']');
            }
        }
    }

    /// The text of the cell in CSV (durations as nanoseconds) or, with `human`, in a
    /// table (durations in human units, nulls as `(none)`).
    pub fn to_text(&self, human: bool) -> String {
        match self {
            Value::Null => {
                if human {
                    "(none)".into()
                } else {
                    String::new()
                }
            }
            Value::Bool(b) => b.to_string(),
            Value::Int(i) => i.to_string(),
            Value::Float(f) => {
                if f.is_nan() {
                    "NaN".into()
                } else if f.is_infinite() {
                    if *f > 0.0 { "Infinity" } else { "-Infinity" }.into()
                } else if human {
                    format_float(*f)
                } else {
                    f.to_string()
                }
            }
            Value::Str(s) => s.clone(),
            Value::Timestamp(t) => format_rfc3339_nanos(*t),
            Value::Duration(d) => {
                if human {
                    format_duration(*d)
                } else {
                    d.to_string()
                }
            }
            Value::TraceId(t) => t.to_hex(),
            Value::SpanId(s) => s.to_hex(),
            Value::Kind(k) => k.as_str().into(),
            Value::Status(s) => s.as_str().into(),
            Value::Any(_) | Value::Buckets(_) => {
                let mut s = String::new();
                self.to_json(&mut s);
                s
            }
        }
    }
}

/// A hashable form of a [`Value`] for grouping.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum GroupKey {
    /// Null.
    Null,
    /// Bool.
    Bool(bool),
    /// Integers, timestamps, durations, kinds and statuses.
    Int(i64),
    /// Float bits.
    Float(u64),
    /// Strings.
    Str(String),
    /// Ids.
    Bytes(Vec<u8>),
}

fn format_float(f: f64) -> String {
    if f == f.trunc() && f.abs() < 1e15 {
        format!("{f:.0}")
    } else if f.abs() >= 1000.0 {
        format!("{f:.1}")
    } else if f.abs() >= 1.0 {
        format!("{f:.3}")
    } else {
        format!("{f:.4}")
    }
}

/// Nanoseconds in human units: `850ns`, `12.3µs`, `12.3ms`, `1.52s`, `2m5s`.
pub fn format_duration(nanos: i64) -> String {
    let abs = nanos.unsigned_abs();
    let sign = if nanos < 0 { "-" } else { "" };
    if abs < 1_000 {
        format!("{sign}{abs}ns")
    } else if abs < 1_000_000 {
        format!("{sign}{:.1}µs", abs as f64 / 1e3)
    } else if abs < 1_000_000_000 {
        format!("{sign}{:.1}ms", abs as f64 / 1e6)
    } else if abs < 60_000_000_000 {
        format!("{sign}{:.2}s", abs as f64 / 1e9)
    } else {
        let seconds = abs / 1_000_000_000;
        format!("{sign}{}m{}s", seconds / 60, seconds % 60)
    }
}

fn json_float(out: &mut String, f: f64) {
    if f.is_nan() {
        out.push_str("\"NaN\"");
    } else if f.is_infinite() {
        out.push_str(if f > 0.0 { "\"Infinity\"" } else { "\"-Infinity\"" });
    } else {
        let _ = write!(out, "{f:?}");
    }
}

/// Appends `s` as a JSON string.
pub fn json_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

const BASE64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding.
pub fn base64(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk.first().copied().unwrap_or(0),
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(BASE64[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn json_any(out: &mut String, value: &AnyValue) {
    match value {
        AnyValue::Empty => out.push_str("null"),
        AnyValue::Str(s) => json_string(out, s),
        AnyValue::Int(i) => {
            let _ = write!(out, "{i}");
        }
        AnyValue::Double(d) => json_float(out, *d),
        AnyValue::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        AnyValue::Bytes(b) => json_string(out, &base64(b)),
        AnyValue::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                json_any(out, item);
            }
            out.push(']');
        }
        AnyValue::Map(pairs) => {
            out.push('{');
            for (i, kv) in pairs.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                json_string(out, &kv.key);
                out.push(':');
                json_any(out, &kv.value);
            }
            out.push('}');
        }
    }
}

/// A query result: named columns and rows of cells.
#[derive(Clone, Debug, Default)]
pub struct QueryResult {
    /// Column names, in the fixed order of DESIGN.md §1.4.
    pub columns: Vec<String>,
    /// Rows.
    pub rows: Vec<Vec<Value>>,
    /// Index of the `timestamp` column of a TIMESERIES result.
    pub timeseries: bool,
    /// Number of FACET columns after the timestamp.
    pub facet_count: usize,
}

impl QueryResult {
    /// `{"columns": [...], "rows": [[...], ...]}`.
    pub fn to_json(&self) -> String {
        let mut out = String::from("{\"columns\":[");
        for (i, c) in self.columns.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            json_string(&mut out, c);
        }
        out.push_str("],\"rows\":[");
        for (r, row) in self.rows.iter().enumerate() {
            if r > 0 {
                out.push(',');
            }
            out.push('[');
            for (i, cell) in row.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                cell.to_json(&mut out);
            }
            out.push(']');
        }
        out.push_str("]}");
        out
    }

    /// RFC 4180 CSV with a header line.
    pub fn to_csv(&self) -> String {
        let mut out = String::new();
        let line = |out: &mut String, cells: &mut dyn Iterator<Item = String>| {
            let mut first = true;
            for cell in cells {
                if !first {
                    out.push(',');
                }
                first = false;
                if cell.contains([',', '"', '\n', '\r']) {
                    out.push('"');
                    out.push_str(&cell.replace('"', "\"\""));
                    out.push('"');
                } else {
                    out.push_str(&cell);
                }
            }
            out.push('\n');
        };
        line(&mut out, &mut self.columns.iter().cloned());
        for row in &self.rows {
            line(&mut out, &mut row.iter().map(|v| v.to_text(false)));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_cells_follow_the_contract() {
        let mut out = String::new();
        for v in [
            Value::Int(i64::MAX),
            Value::Float(f64::NAN),
            Value::Float(f64::NEG_INFINITY),
            Value::Float(0.5),
            Value::Timestamp(1_795_698_000_123_456_789),
            Value::Duration(12_300_000),
            Value::Kind(SpanKind::Server),
            Value::Status(StatusCode::Error),
            Value::Any(AnyValue::Bytes(b"hi!".to_vec())),
            Value::Null,
        ] {
            v.to_json(&mut out);
            out.push(' ');
        }
        assert_eq!(
            out,
            "9223372036854775807 \"NaN\" \"-Infinity\" 0.5 \"2026-11-26T13:00:00.123456789Z\" 12300000 \"server\" \"error\" \"aGkh\" null "
        );
    }

    #[test]
    fn durations_read_as_people_write_them() {
        assert_eq!(format_duration(850), "850ns");
        assert_eq!(format_duration(12_300_000), "12.3ms");
        assert_eq!(format_duration(1_520_000_000), "1.52s");
        assert_eq!(format_duration(125_000_000_000), "2m5s");
    }

    #[test]
    fn base64_pads() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
    }

    #[test]
    fn csv_quotes_what_needs_it() {
        let result = QueryResult {
            columns: vec!["a".into(), "b".into()],
            rows: vec![vec![Value::Str("x,y".into()), Value::Duration(5)]],
            ..Default::default()
        };
        assert_eq!(result.to_csv(), "a,b\n\"x,y\",5\n");
    }
}
