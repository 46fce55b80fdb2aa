//! The span data model: ids, kinds, status, typed attribute values and the owned `Span` row.
//!
//! `Span` is the row-shaped, owned form used at the edges (tests, export, trace trees).
//! The write path carries spans in the columnar [`crate::batch::SpanBatch`] instead.

use std::fmt;
use std::str::FromStr;

use crate::error::ModelError;

/// A 16-byte trace id. All-zero is invalid in OTLP but is stored as given.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct TraceId(pub [u8; 16]);

/// An 8-byte span id.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct SpanId(pub [u8; 8]);

fn parse_hex<const N: usize>(text: &str, what: &'static str) -> Result<[u8; N], ModelError> {
    let bytes = text.as_bytes();
    if bytes.len() != N * 2 {
        return Err(ModelError::IdLength { what, expected: N * 2, found: bytes.len() });
    }
    let mut out = [0u8; N];
    for (index, pair) in bytes.chunks_exact(2).enumerate() {
        let (Some(&high), Some(&low)) = (pair.first(), pair.get(1)) else {
            return Err(ModelError::IdLength { what, expected: N * 2, found: bytes.len() });
        };
        let value = (hex_digit(high, what, index * 2)? << 4) | hex_digit(low, what, index * 2 + 1)?;
        if let Some(slot) = out.get_mut(index) {
            *slot = value;
        }
    }
    Ok(out)
}

fn hex_digit(c: u8, what: &'static str, position: usize) -> Result<u8, ModelError> {
    match c {
        b'0'..=b'9' => Ok(c - b'0'),
        b'a'..=b'f' => Ok(c - b'a' + 10),
        b'A'..=b'F' => Ok(c - b'A' + 10),
        _ => Err(ModelError::IdHex { what, position, found: c as char }),
    }
}

fn write_hex(f: &mut fmt::Formatter<'_>, bytes: &[u8]) -> fmt::Result {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut buf = [0u8; 32];
    for (index, byte) in bytes.iter().enumerate().take(16) {
        buf[index * 2] = DIGITS[usize::from(byte >> 4)];
        buf[index * 2 + 1] = DIGITS[usize::from(byte & 0x0f)];
    }
    let text = std::str::from_utf8(&buf[..bytes.len().min(16) * 2]).map_err(|_| fmt::Error)?;
    f.write_str(text)
}

macro_rules! id_impls {
    ($name:ident, $len:expr, $what:expr) => {
        impl $name {
            /// Length of the id in bytes.
            pub const LEN: usize = $len;

            /// Parses lowercase or uppercase hex of exactly `2 * LEN` digits.
            pub fn from_hex(text: &str) -> Result<Self, ModelError> {
                parse_hex::<$len>(text, $what).map(Self)
            }

            /// True for the all-zero id, which OTLP treats as absent.
            pub fn is_zero(&self) -> bool {
                self.0.iter().all(|&b| b == 0)
            }

            /// Lowercase hex.
            pub fn to_hex(&self) -> String {
                self.to_string()
            }
        }

        impl FromStr for $name {
            type Err = ModelError;
            fn from_str(text: &str) -> Result<Self, ModelError> {
                Self::from_hex(text)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write_hex(f, &self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}(", stringify!($name))?;
                write_hex(f, &self.0)?;
                f.write_str(")")
            }
        }
    };
}

id_impls!(TraceId, 16, "trace id");
id_impls!(SpanId, 8, "span id");

impl TraceId {
    /// Parses an AWS X-Ray trace id, `1-<epoch>-<unique>`, into the W3C trace id the
    /// OpenTelemetry AWS X-Ray propagator maps it to: the epoch's 8 hex digits followed by
    /// the unique part's 24 (`1-5759e988-bd862e3fe1be46a994272793` is
    /// `5759e988bd862e3fe1be46a994272793`).
    ///
    /// The rules are the propagator's (opentelemetry-java-contrib `AwsXrayPropagator`):
    /// version `1`; an epoch of 8 hex digits, or fewer with leading zeros left out (it is
    /// zero-padded on the left); 24 hex digits of unique part; lowercase hex only; the
    /// all-zero id is invalid.
    pub fn from_xray(text: &str) -> Result<TraceId, ModelError> {
        const UNIQUE_DIGITS: usize = 24;
        let bytes = text.as_bytes();
        let fail = |position: usize, expected: &'static str| {
            let found = text.get(position..).and_then(|rest| rest.chars().next());
            let found = found.map_or_else(|| "the end of the id".to_string(), |c| format!("{c:?}"));
            ModelError::XRayId { position, expected, found }
        };
        let is_digit = |position: usize| bytes.get(position).is_some_and(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        if bytes.first() != Some(&b'1') {
            return Err(fail(0, "the version '1'"));
        }
        if bytes.get(1) != Some(&b'-') {
            return Err(fail(1, "'-' after the version"));
        }
        let epoch_digits = (2..11).take_while(|&position| is_digit(position)).count();
        if epoch_digits == 0 {
            return Err(fail(2, "a lowercase hex digit of the epoch"));
        }
        if epoch_digits > 8 {
            return Err(fail(10, "'-' after the epoch's 8 hex digits"));
        }
        let dash = 2 + epoch_digits;
        if bytes.get(dash) != Some(&b'-') {
            let expected =
                if epoch_digits == 8 { "'-' after the epoch" } else { "a lowercase hex digit of the epoch or '-'" };
            return Err(fail(dash, expected));
        }
        let unique_start = dash + 1;
        if let Some(position) = (unique_start..unique_start + UNIQUE_DIGITS).find(|&position| !is_digit(position)) {
            return Err(fail(position, "a lowercase hex digit of the 24-digit unique part"));
        }
        if bytes.len() > unique_start + UNIQUE_DIGITS {
            return Err(fail(unique_start + UNIQUE_DIGITS, "the end of the id"));
        }
        let padding = std::iter::repeat_n(b'0', 8 - epoch_digits);
        let digits = bytes.get(2..dash).unwrap_or_default().iter().copied();
        let unique = bytes.get(unique_start..).unwrap_or_default().iter().copied();
        let mut id = [0u8; 16];
        for (index, digit) in padding.chain(digits).chain(unique).enumerate() {
            let nibble = if digit.is_ascii_digit() { digit - b'0' } else { digit - b'a' + 10 };
            if let Some(byte) = id.get_mut(index / 2) {
                *byte |= if index % 2 == 0 { nibble << 4 } else { nibble };
            }
        }
        let trace_id = TraceId(id);
        if trace_id.is_zero() {
            return Err(ModelError::XRayId {
                position: 2,
                expected: "an id that is not all zeros",
                found: "all zeros".to_string(),
            });
        }
        Ok(trace_id)
    }

    /// The AWS X-Ray form of this id, as the OpenTelemetry X-Ray propagator writes it:
    /// `1-`, the first 8 hex digits, `-`, the other 24.
    pub fn to_xray(&self) -> String {
        let hex = self.to_hex();
        let (epoch, unique) = hex.split_at(8.min(hex.len()));
        format!("1-{epoch}-{unique}")
    }
}

/// Span kind, numbered as in OTLP.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
#[repr(u8)]
pub enum SpanKind {
    /// Not specified by the producer.
    #[default]
    Unspecified = 0,
    /// An internal operation.
    Internal = 1,
    /// The server side of a synchronous call.
    Server = 2,
    /// The client side of a synchronous call.
    Client = 3,
    /// The sender of an asynchronous message.
    Producer = 4,
    /// The receiver of an asynchronous message.
    Consumer = 5,
}

impl SpanKind {
    /// All kinds, in code order.
    pub const ALL: [SpanKind; 6] = [
        SpanKind::Unspecified,
        SpanKind::Internal,
        SpanKind::Server,
        SpanKind::Client,
        SpanKind::Producer,
        SpanKind::Consumer,
    ];

    /// The kind for an OTLP enum number, if it is one.
    pub fn from_code(code: u8) -> Option<SpanKind> {
        Self::ALL.get(usize::from(code)).copied()
    }

    /// The lowercase word used in query results (`server`, `client`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            SpanKind::Unspecified => "unspecified",
            SpanKind::Internal => "internal",
            SpanKind::Server => "server",
            SpanKind::Client => "client",
            SpanKind::Producer => "producer",
            SpanKind::Consumer => "consumer",
        }
    }
}

/// Span status code, numbered as in OTLP.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
#[repr(u8)]
pub enum StatusCode {
    /// No status set.
    #[default]
    Unset = 0,
    /// Explicitly successful.
    Ok = 1,
    /// Failed.
    Error = 2,
}

impl StatusCode {
    /// All codes, in code order.
    pub const ALL: [StatusCode; 3] = [StatusCode::Unset, StatusCode::Ok, StatusCode::Error];

    /// The status for an OTLP enum number, if it is one.
    pub fn from_code(code: u8) -> Option<StatusCode> {
        Self::ALL.get(usize::from(code)).copied()
    }

    /// The lowercase word used in query results (`unset`, `ok`, `error`).
    pub fn as_str(self) -> &'static str {
        match self {
            StatusCode::Unset => "unset",
            StatusCode::Ok => "ok",
            StatusCode::Error => "error",
        }
    }
}

/// A typed attribute value, as OTLP's `AnyValue`.
///
/// Equality compares floats by their bits, so `NaN == NaN` and `-0.0 != 0.0`: stored
/// values must come back exactly as they were sent.
#[derive(Clone, Debug, Default)]
pub enum AnyValue {
    /// The empty value (an `AnyValue` with no field set).
    #[default]
    Empty,
    /// A UTF-8 string.
    Str(String),
    /// A signed 64-bit integer.
    Int(i64),
    /// A 64-bit float, any bit pattern.
    Double(f64),
    /// A boolean.
    Bool(bool),
    /// Raw bytes.
    Bytes(Vec<u8>),
    /// An ordered list of values, possibly mixed and nested.
    Array(Vec<AnyValue>),
    /// An ordered list of key-value pairs; order and duplicate keys are preserved.
    Map(Vec<KeyValue>),
}

impl PartialEq for AnyValue {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (AnyValue::Empty, AnyValue::Empty) => true,
            (AnyValue::Str(a), AnyValue::Str(b)) => a == b,
            (AnyValue::Int(a), AnyValue::Int(b)) => a == b,
            (AnyValue::Double(a), AnyValue::Double(b)) => a.to_bits() == b.to_bits(),
            (AnyValue::Bool(a), AnyValue::Bool(b)) => a == b,
            (AnyValue::Bytes(a), AnyValue::Bytes(b)) => a == b,
            (AnyValue::Array(a), AnyValue::Array(b)) => a == b,
            (AnyValue::Map(a), AnyValue::Map(b)) => a == b,
            _ => false,
        }
    }
}

impl Eq for AnyValue {}

impl From<&str> for AnyValue {
    fn from(value: &str) -> Self {
        AnyValue::Str(value.to_owned())
    }
}

impl From<String> for AnyValue {
    fn from(value: String) -> Self {
        AnyValue::Str(value)
    }
}

impl From<i64> for AnyValue {
    fn from(value: i64) -> Self {
        AnyValue::Int(value)
    }
}

impl From<f64> for AnyValue {
    fn from(value: f64) -> Self {
        AnyValue::Double(value)
    }
}

impl From<bool> for AnyValue {
    fn from(value: bool) -> Self {
        AnyValue::Bool(value)
    }
}

/// One attribute: a key and its value.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct KeyValue {
    /// Attribute key.
    pub key: String,
    /// Attribute value.
    pub value: AnyValue,
}

impl KeyValue {
    /// A key-value pair.
    pub fn new(key: impl Into<String>, value: impl Into<AnyValue>) -> Self {
        KeyValue { key: key.into(), value: value.into() }
    }
}

/// The entity that produced spans (OTLP `Resource` plus its schema url).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Resource {
    /// Resource attributes (`service.name`, `cloud.region`, ...).
    pub attributes: Vec<KeyValue>,
    /// Attributes the producer dropped.
    pub dropped_attributes_count: u32,
    /// Schema url of the `ResourceSpans`.
    pub schema_url: String,
}

/// The instrumentation scope that produced spans (plus its schema url).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Scope {
    /// Scope name.
    pub name: String,
    /// Scope version.
    pub version: String,
    /// Scope attributes.
    pub attributes: Vec<KeyValue>,
    /// Attributes the producer dropped.
    pub dropped_attributes_count: u32,
    /// Schema url of the `ScopeSpans`.
    pub schema_url: String,
}

/// A timestamped event within a span.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Event {
    /// Nanoseconds since the Unix epoch.
    pub time_unix_nano: u64,
    /// Event name.
    pub name: String,
    /// Event attributes.
    pub attributes: Vec<KeyValue>,
    /// Attributes the producer dropped.
    pub dropped_attributes_count: u32,
}

/// A link from a span to another span.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Link {
    /// Linked trace.
    pub trace_id: TraceId,
    /// Linked span.
    pub span_id: SpanId,
    /// W3C trace state of the link.
    pub trace_state: String,
    /// Link attributes.
    pub attributes: Vec<KeyValue>,
    /// Attributes the producer dropped.
    pub dropped_attributes_count: u32,
    /// W3C trace flags of the link.
    pub flags: u32,
}

/// One span, owned and row-shaped.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Span {
    /// Trace the span belongs to.
    pub trace_id: TraceId,
    /// The span's own id.
    pub span_id: SpanId,
    /// Parent span, `None` for a root.
    pub parent_span_id: Option<SpanId>,
    /// W3C trace state.
    pub trace_state: String,
    /// Operation name.
    pub name: String,
    /// Span kind.
    pub kind: SpanKind,
    /// Start, in nanoseconds since the Unix epoch.
    pub start_unix_nano: u64,
    /// Duration in nanoseconds (end minus start).
    pub duration_ns: u64,
    /// Status code.
    pub status_code: StatusCode,
    /// Status message.
    pub status_message: String,
    /// W3C trace flags and OTLP span flags.
    pub flags: u32,
    /// Resource that produced the span.
    pub resource: Resource,
    /// Instrumentation scope.
    pub scope: Scope,
    /// Span attributes.
    pub attributes: Vec<KeyValue>,
    /// Attributes the producer dropped.
    pub dropped_attributes_count: u32,
    /// Events.
    pub events: Vec<Event>,
    /// Events the producer dropped.
    pub dropped_events_count: u32,
    /// Links.
    pub links: Vec<Link>,
    /// Links the producer dropped.
    pub dropped_links_count: u32,
}

impl Span {
    /// End time in nanoseconds since the Unix epoch (saturating).
    pub fn end_unix_nano(&self) -> u64 {
        self.start_unix_nano.saturating_add(self.duration_ns)
    }

    /// The service name: the `service.name` resource attribute when it is a string.
    pub fn service(&self) -> Option<&str> {
        self.resource.attributes.iter().find(|kv| kv.key == "service.name").and_then(|kv| match &kv.value {
            AnyValue::Str(s) => Some(s.as_str()),
            _ => None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_through_hex() {
        let text = "4bf92f3577b34da6a3ce929d0e0e4736";
        let id = TraceId::from_hex(text).unwrap();
        assert_eq!(id.to_string(), text);
        assert_eq!(TraceId::from_hex(&text.to_uppercase()).unwrap(), id);
        let span = SpanId::from_hex("00f067aa0ba902b7").unwrap();
        assert_eq!(span.0, [0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7]);
        assert_eq!(format!("{span:?}"), "SpanId(00f067aa0ba902b7)");
    }

    #[test]
    fn bad_hex_names_the_problem() {
        let err = TraceId::from_hex("abc").unwrap_err();
        assert_eq!(err.to_string(), "trace id: expected 32 hex digits, found 3");
        let err = SpanId::from_hex("00f067aa0ba902bz").unwrap_err();
        assert_eq!(err.to_string(), "span id: invalid hex digit 'z' at position 15");
        assert!(SpanId::from_hex("ééééééé").is_err());
    }

    #[test]
    fn xray_ids_map_to_w3c_ids_as_the_opentelemetry_propagator_does() {
        // The example of the AWS X-Ray tracing-header documentation and the propagator's README.
        let id = TraceId::from_xray("1-5759e988-bd862e3fe1be46a994272793").unwrap();
        assert_eq!(id.to_hex(), "5759e988bd862e3fe1be46a994272793");
        assert_eq!(id.to_xray(), "1-5759e988-bd862e3fe1be46a994272793");
        // An epoch with its leading zeros left out is zero-padded (opentelemetry-java-contrib).
        let short = TraceId::from_xray("1-759e988-bd862e3fe1be46a994272793").unwrap();
        assert_eq!(short.to_hex(), "0759e988bd862e3fe1be46a994272793");
        assert_eq!(short.to_xray(), "1-0759e988-bd862e3fe1be46a994272793");
        assert_eq!(
            TraceId::from_xray("1-1-000000000000000000000001").unwrap().to_hex(),
            "00000001000000000000000000000001"
        );
    }

    #[test]
    fn bad_xray_ids_name_the_position() {
        let cases = [
            ("", "x-ray trace id at position 0: expected the version '1', found the end of the id"),
            ("2-5759e988-bd862e3fe1be46a994272793", "x-ray trace id at position 0: expected the version '1', found '2'"),
            ("1_5759e988-bd862e3fe1be46a994272793", "x-ray trace id at position 1: expected '-' after the version, found '_'"),
            ("1--bd862e3fe1be46a994272793", "x-ray trace id at position 2: expected a lowercase hex digit of the epoch, found '-'"),
            ("1-5759E988-bd862e3fe1be46a994272793", "x-ray trace id at position 6: expected a lowercase hex digit of the epoch or '-', found 'E'"),
            ("1-5759e9880-bd862e3fe1be46a994272793", "x-ray trace id at position 10: expected '-' after the epoch's 8 hex digits, found '0'"),
            ("1-5759e988_bd862e3fe1be46a994272793", "x-ray trace id at position 10: expected '-' after the epoch, found '_'"),
            ("1-5759e988-bd862e3fe1be46a99427279", "x-ray trace id at position 34: expected a lowercase hex digit of the 24-digit unique part, found the end of the id"),
            ("1-5759e988-bd862e3fe1be46a9942727930", "x-ray trace id at position 35: expected the end of the id, found '0'"),
            ("1-5759e988-bd862e3fe1bé46a994272793", "x-ray trace id at position 22: expected a lowercase hex digit of the 24-digit unique part, found 'é'"),
            ("1-00000000-000000000000000000000000", "x-ray trace id at position 2: expected an id that is not all zeros, found all zeros"),
        ];
        for (text, message) in cases {
            assert_eq!(TraceId::from_xray(text).unwrap_err().to_string(), message, "{text:?}");
        }
    }

    #[test]
    fn floats_compare_by_bits() {
        assert_eq!(AnyValue::Double(f64::NAN), AnyValue::Double(f64::NAN));
        assert_ne!(AnyValue::Double(0.0), AnyValue::Double(-0.0));
        assert_ne!(AnyValue::Int(1), AnyValue::Double(1.0));
    }

    #[test]
    fn kinds_and_statuses_map_codes() {
        for kind in SpanKind::ALL {
            assert_eq!(SpanKind::from_code(kind as u8), Some(kind));
        }
        assert_eq!(SpanKind::from_code(6), None);
        assert_eq!(StatusCode::from_code(2), Some(StatusCode::Error));
        assert_eq!(StatusCode::Error.as_str(), "error");
    }
}
