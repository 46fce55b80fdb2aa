//! W3C Trace Context: the `traceparent` and `tracestate` headers, parsed and formatted as
//! the Recommendation specifies (<https://www.w3.org/TR/trace-context/>, Level 1, with the
//! `random` trace flag of Level 2).
//!
//! `traceparent` (§3.2): `version "-" trace-id "-" parent-id "-" trace-flags`, lowercase hex
//! only (`HEXDIGLC`). Version `ff` is invalid. Version `00` is exactly 55 characters. A
//! higher version is parsed as §3.2.4 "Versioning of traceparent" asks: its first four
//! fields as version 00 lays them out, and after the trace-flags either the end of the
//! header or a `-` followed by data this version does not interpret. An all-zero trace-id
//! or parent-id is invalid.
//!
//! `tracestate` (§3.3): a list of `key=value` members separated by `,` with optional
//! whitespace (space, tab) around each; empty members are allowed and skipped; at most 32
//! members; no key twice. Keys are `simple-key` or `tenant-id@system-id`; values are 1 to
//! 256 printable ASCII characters other than `,` and `=`, the last not a space (trailing
//! spaces are optional whitespace, not part of the value).
//!
//! Leading and trailing spaces and tabs around a whole header value are RFC 7230 optional
//! whitespace, not part of the field value, and are ignored (the W3C test suite's
//! `test_traceparent_ows_handling`). Error positions are zero-based character positions in
//! the header exactly as given, whitespace included.
#![deny(clippy::unwrap_used, clippy::indexing_slicing)]

use std::fmt;

use spanstore_engine::error::ModelError;
use spanstore_engine::{SpanId, TraceId};

/// Which header (or id) an error is about; displayed as its lowercase name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Header {
    /// The W3C `traceparent` header.
    TraceParent,
    /// The W3C `tracestate` header.
    TraceState,
    /// The AWS `X-Amzn-Trace-Id` header.
    XRay,
    /// An AWS X-Ray trace id on its own (`1-5759e988-bd862e3fe1be46a994272793`).
    XRayTraceId,
}

impl fmt::Display for Header {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Header::TraceParent => "traceparent",
            Header::TraceState => "tracestate",
            Header::XRay => "x-amzn-trace-id",
            Header::XRayTraceId => "x-ray trace id",
        })
    }
}

/// Why a trace-context header (W3C or AWS X-Ray) is invalid. Every message names the
/// header, the zero-based character position and what is wrong there.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TraceContextError {
    /// A character, or the end of the header, that the grammar does not allow there.
    #[error("{header} at position {position}: expected {expected}, found {found}")]
    Unexpected {
        /// Which header.
        header: Header,
        /// Zero-based character position.
        position: usize,
        /// What the grammar allows there.
        expected: &'static str,
        /// What is there: a quoted character, or "the end of the header".
        found: String,
    },
    /// An id that is all zeros, which the specification forbids.
    #[error("{header} at position {position}: the {field} is all zeros, which is invalid")]
    AllZero {
        /// Which header.
        header: Header,
        /// Zero-based character position of the id's first digit.
        position: usize,
        /// Which id (`trace-id`, `parent-id`, `Parent`).
        field: &'static str,
    },
    /// `traceparent` version `ff`, which the specification forbids.
    #[error("traceparent at position {position}: version ff is invalid")]
    ForbiddenVersion {
        /// Zero-based character position of the version.
        position: usize,
    },
    /// A field longer than the grammar allows.
    #[error("{header} at position {position}: the {field} is {length} characters long, at most {max} are allowed")]
    TooLong {
        /// Which header.
        header: Header,
        /// Zero-based character position of the field's first character.
        position: usize,
        /// Which field (`key`, `tenant-id`, `system-id`, `value`).
        field: &'static str,
        /// Its length in characters.
        length: usize,
        /// The limit.
        max: usize,
    },
    /// A `tracestate` with more list members than the 32 allowed.
    #[error("tracestate at position {position}: list member {count} is one too many, at most 32 are allowed")]
    TooManyMembers {
        /// Zero-based character position of the first member beyond the limit.
        position: usize,
        /// Its number, counting from 1 (always 33).
        count: usize,
    },
    /// A key that appears twice.
    #[error("{header} at position {position}: key '{key}' appears a second time (first at position {first}), duplicate keys are invalid")]
    DuplicateKey {
        /// Which header.
        header: Header,
        /// Zero-based character position of the second occurrence.
        position: usize,
        /// The key.
        key: String,
        /// Zero-based character position of the first occurrence.
        first: usize,
    },
}

impl TraceContextError {
    /// The zero-based character position the error points at.
    pub fn position(&self) -> usize {
        match self {
            TraceContextError::Unexpected { position, .. }
            | TraceContextError::AllZero { position, .. }
            | TraceContextError::ForbiddenVersion { position }
            | TraceContextError::TooLong { position, .. }
            | TraceContextError::TooManyMembers { position, .. }
            | TraceContextError::DuplicateKey { position, .. } => *position,
        }
    }

    /// The engine's X-Ray trace id error, placed in `header` with the id starting at byte
    /// `offset`.
    pub(crate) fn from_xray_id(error: ModelError, header: Header, text: &str, offset: usize) -> Self {
        match error {
            ModelError::XRayId { position, expected, found } => {
                let position = char_position(text, offset) + position;
                TraceContextError::Unexpected { header, position, expected, found }
            }
            // `TraceId::from_xray` reports nothing else; keep whatever it says, at the id.
            other => TraceContextError::Unexpected {
                header,
                position: char_position(text, offset),
                expected: "an AWS X-Ray trace id",
                found: other.to_string(),
            },
        }
    }
}

/// Optional whitespace (RFC 7230 `OWS`): spaces and horizontal tabs.
const OWS: [char; 2] = [' ', '\t'];

/// The zero-based character position of byte `byte` of `text`.
pub(crate) fn char_position(text: &str, byte: usize) -> usize {
    text.get(..byte).map_or(byte, |before| before.chars().count())
}

/// What is at byte `byte` of `text`, for an error message: the quoted character, or the end.
pub(crate) fn found_at(text: &str, byte: usize) -> String {
    match text.get(byte..).and_then(|rest| rest.chars().next()) {
        Some(c) => format!("{c:?}"),
        None => "the end of the header".to_string(),
    }
}

/// An [`TraceContextError::Unexpected`] at byte `byte` of `text`.
pub(crate) fn unexpected(header: Header, text: &str, byte: usize, expected: &'static str) -> TraceContextError {
    TraceContextError::Unexpected { header, position: char_position(text, byte), expected, found: found_at(text, byte) }
}

fn is_lower_hex(byte: u8) -> bool {
    matches!(byte, b'0'..=b'9' | b'a'..=b'f')
}

fn nibble(byte: u8) -> u8 {
    if byte.is_ascii_digit() {
        byte - b'0'
    } else {
        byte.wrapping_sub(b'a').wrapping_add(10) & 0x0f
    }
}

/// Reads `2 * N` lowercase hex digits starting at byte `start` of `text`.
pub(crate) fn lower_hex<const N: usize>(
    header: Header,
    text: &str,
    start: usize,
    expected: &'static str,
) -> Result<[u8; N], TraceContextError> {
    let bytes = text.as_bytes();
    let mut out = [0u8; N];
    for (index, slot) in out.iter_mut().enumerate() {
        let high = start + 2 * index;
        let (Some(&h), Some(&l)) = (bytes.get(high), bytes.get(high + 1)) else {
            let missing = if bytes.get(high).is_some_and(|&b| is_lower_hex(b)) { high + 1 } else { high };
            return Err(unexpected(header, text, missing, expected));
        };
        if !is_lower_hex(h) {
            return Err(unexpected(header, text, high, expected));
        }
        if !is_lower_hex(l) {
            return Err(unexpected(header, text, high + 1, expected));
        }
        *slot = (nibble(h) << 4) | nibble(l);
    }
    Ok(out)
}

fn expect_byte(text: &str, at: usize, byte: u8, expected: &'static str) -> Result<(), TraceContextError> {
    if text.as_bytes().get(at) == Some(&byte) {
        Ok(())
    } else {
        Err(unexpected(Header::TraceParent, text, at, expected))
    }
}

/// A parsed `traceparent` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TraceParent {
    /// The version, `00` for this specification; never `ff` in a parsed header.
    pub version: u8,
    /// The trace-id; never all zeros in a parsed header.
    pub trace_id: TraceId,
    /// The parent-id (the caller's span id); never all zeros in a parsed header.
    pub parent_id: SpanId,
    /// The trace-flags bit field (see [`TraceParent::FLAG_SAMPLED`]).
    pub flags: u8,
}

impl TraceParent {
    /// The version this specification defines.
    pub const VERSION: u8 = 0x00;
    /// The only version that is invalid.
    pub const FORBIDDEN_VERSION: u8 = 0xff;
    /// Length of a version 00 header: `2 + 1 + 32 + 1 + 16 + 1 + 2`.
    pub const VERSION_00_LENGTH: usize = 55;
    /// The `sampled` trace flag (§3.2.2.5.1): the caller may have recorded trace data.
    pub const FLAG_SAMPLED: u8 = 0x01;
    /// The `random` trace flag of Level 2: the trace-id's right 7 bytes are random.
    pub const FLAG_RANDOM: u8 = 0x02;

    /// Parses a `traceparent` header value.
    pub fn parse(header: &str) -> Result<TraceParent, TraceContextError> {
        let kind = Header::TraceParent;
        // Leading optional whitespace is ASCII, so its byte length is its character count.
        let start = header.len() - header.trim_start_matches(OWS).len();
        let end = header.trim_end_matches(OWS).len().max(start);
        // A parse error at the end of the trimmed value names what follows it in `header`
        // (trailing whitespace or the end), which is what the reader sees.
        let value_end = end;
        let at = |offset: usize| start + offset;
        let version = lower_hex::<1>(kind, header, at(0), "one of the version's 2 lowercase hex digits")?;
        let [version] = version;
        expect_byte(header, at(2), b'-', "'-' after the version")?;
        if version == Self::FORBIDDEN_VERSION {
            return Err(TraceContextError::ForbiddenVersion { position: char_position(header, at(0)) });
        }
        let trace_id = TraceId(lower_hex::<16>(kind, header, at(3), "one of the trace-id's 32 lowercase hex digits")?);
        if trace_id.is_zero() {
            return Err(TraceContextError::AllZero {
                header: kind,
                position: char_position(header, at(3)),
                field: "trace-id",
            });
        }
        expect_byte(header, at(35), b'-', "'-' after the trace-id")?;
        let parent_id = SpanId(lower_hex::<8>(kind, header, at(36), "one of the parent-id's 16 lowercase hex digits")?);
        if parent_id.is_zero() {
            return Err(TraceContextError::AllZero {
                header: kind,
                position: char_position(header, at(36)),
                field: "parent-id",
            });
        }
        expect_byte(header, at(52), b'-', "'-' after the parent-id")?;
        let [flags] = lower_hex::<1>(kind, header, at(53), "one of the trace-flags' 2 lowercase hex digits")?;
        let after_flags = at(Self::VERSION_00_LENGTH);
        if after_flags < value_end {
            if version == Self::VERSION {
                return Err(unexpected(
                    kind,
                    header,
                    after_flags,
                    "the end of the header (version 00 is 55 characters)",
                ));
            }
            // A higher version may carry more fields, each after a '-'; their content is
            // that version's business (§3.2.4: "MUST NOT parse or assume anything").
            expect_byte(header, after_flags, b'-', "'-' or the end of the header after the trace-flags")?;
        }
        Ok(TraceParent { version, trace_id, parent_id, flags })
    }

    /// True when the `sampled` flag is set.
    pub fn sampled(&self) -> bool {
        self.flags & Self::FLAG_SAMPLED != 0
    }

    /// True when the Level 2 `random` flag is set.
    pub fn random(&self) -> bool {
        self.flags & Self::FLAG_RANDOM != 0
    }

    /// The header value: `vv-<32 hex>-<16 hex>-ff`, lowercase, with the fields as they are.
    ///
    /// A header parsed from a higher version formats as that version's first four fields,
    /// which §3.2.4 says every version starts with. A service propagating the context
    /// downgrades to the version it knows (§3.4, "Downgrade the version") by setting
    /// `version` to [`TraceParent::VERSION`] first. Version `ff` and all-zero ids format
    /// as given and then fail to parse.
    pub fn to_header(&self) -> String {
        format!("{:02x}-{}-{}-{:02x}", self.version, self.trace_id, self.parent_id, self.flags)
    }
}

impl fmt::Display for TraceParent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_header())
    }
}

impl std::str::FromStr for TraceParent {
    type Err = TraceContextError;
    fn from_str(header: &str) -> Result<Self, TraceContextError> {
        TraceParent::parse(header)
    }
}

/// A parsed `tracestate` header: its list members in order, empty members left out.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct TraceState {
    /// `(key, value)` pairs, left to right (the leftmost is the most recent vendor's).
    pub members: Vec<(String, String)>,
}

impl TraceState {
    /// At most this many list members.
    pub const MAX_MEMBERS: usize = 32;
    /// A simple key is at most this long (`lcalpha 0*255(...)`); so is a multi-tenant key.
    pub const MAX_KEY_LENGTH: usize = 256;
    /// A tenant-id is at most this long (`(lcalpha / DIGIT) 0*240(...)`).
    pub const MAX_TENANT_ID_LENGTH: usize = 241;
    /// A system-id is at most this long (`lcalpha 0*13(...)`).
    pub const MAX_SYSTEM_ID_LENGTH: usize = 14;
    /// A value is at most this long (`0*255(chr) nblk-chr`).
    pub const MAX_VALUE_LENGTH: usize = 256;

    /// Parses a `tracestate` header value. Several `tracestate` fields of one request are
    /// combined first, joined with `,` (§3.3.1.1, RFC 7230 §3.2.2).
    pub fn parse(header: &str) -> Result<TraceState, TraceContextError> {
        let mut members: Vec<(String, String)> = Vec::new();
        let mut key_positions: Vec<usize> = Vec::new();
        let mut piece_start = 0usize;
        for piece in header.split(',') {
            let piece_end = piece_start + piece.len();
            let member_start = piece_start + (piece.len() - piece.trim_start_matches(OWS).len());
            let member_end = piece_start + piece.trim_end_matches(OWS).len();
            piece_start = piece_end + 1;
            if member_end <= member_start {
                continue; // an empty or whitespace-only list member
            }
            if members.len() == Self::MAX_MEMBERS {
                return Err(TraceContextError::TooManyMembers {
                    position: char_position(header, member_start),
                    count: Self::MAX_MEMBERS + 1,
                });
            }
            let member = header.get(member_start..member_end).unwrap_or_default();
            let key_length = parse_key(header, member_start, member)?;
            let key = member.get(..key_length).unwrap_or_default();
            let value_start = member_start + key_length + 1;
            let value = member.get(key_length + 1..).unwrap_or_default();
            check_value(header, value_start, value)?;
            let position = char_position(header, member_start);
            if let Some(index) = members.iter().position(|(existing, _)| existing == key) {
                return Err(TraceContextError::DuplicateKey {
                    header: Header::TraceState,
                    position,
                    key: key.to_string(),
                    first: key_positions.get(index).copied().unwrap_or_default(),
                });
            }
            members.push((key.to_string(), value.to_string()));
            key_positions.push(position);
        }
        Ok(TraceState { members })
    }

    /// The value of `key`, if present.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.members.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    /// The header value: `key=value` members joined by `,`, without optional whitespace
    /// (§3.3.1.1: a caller SHOULD NOT generate it). Members that break the grammar format
    /// as given and then fail to parse.
    pub fn to_header(&self) -> String {
        let mut out = String::new();
        for (index, (key, value)) in self.members.iter().enumerate() {
            if index > 0 {
                out.push(',');
            }
            out.push_str(key);
            out.push('=');
            out.push_str(value);
        }
        out
    }
}

impl fmt::Display for TraceState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_header())
    }
}

impl std::str::FromStr for TraceState {
    type Err = TraceContextError;
    fn from_str(header: &str) -> Result<Self, TraceContextError> {
        TraceState::parse(header)
    }
}

fn is_key_char(byte: u8) -> bool {
    matches!(byte, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-' | b'*' | b'/')
}

/// Checks the key of `member` (which starts at byte `start` of `header`) against
/// `key = simple-key / multi-tenant-key` and returns its length in bytes; the key is
/// followed by `=`.
fn parse_key(header: &str, start: usize, member: &str) -> Result<usize, TraceContextError> {
    let kind = Header::TraceState;
    let bytes = member.as_bytes();
    let mut at_sign: Option<usize> = None;
    let mut length = 0usize;
    loop {
        match bytes.get(length) {
            Some(b'=') => break,
            Some(b'@') if at_sign.is_none() => at_sign = Some(length),
            Some(&b) if is_key_char(b) => {}
            Some(b'@') => {
                return Err(unexpected(kind, header, start + length, "a key character other than a second '@'"));
            }
            Some(_) if length == 0 => {
                return Err(unexpected(kind, header, start, "a key (starting with a lowercase letter or digit)"));
            }
            // The end of the member, or a character no key has.
            _ => {
                return Err(unexpected(kind, header, start + length, "a key character (a-z 0-9 _ - * / @) or '='"));
            }
        }
        length += 1;
    }
    let first = bytes.first().copied().unwrap_or(b'=');
    match at_sign {
        None => {
            if !first.is_ascii_lowercase() {
                let expected = if first == b'=' {
                    "a key before '='"
                } else {
                    "a lowercase letter to start the key (only a tenant-id@system-id key may start with a digit)"
                };
                return Err(unexpected(kind, header, start, expected));
            }
            if length > TraceState::MAX_KEY_LENGTH {
                return Err(too_long(header, start, "key", length, TraceState::MAX_KEY_LENGTH));
            }
        }
        Some(at) => {
            if at == 0 {
                return Err(unexpected(kind, header, start, "a tenant-id before '@'"));
            }
            if !(first.is_ascii_lowercase() || first.is_ascii_digit()) {
                return Err(unexpected(kind, header, start, "a lowercase letter or digit to start the tenant-id"));
            }
            if at > TraceState::MAX_TENANT_ID_LENGTH {
                return Err(too_long(header, start, "tenant-id", at, TraceState::MAX_TENANT_ID_LENGTH));
            }
            let system_start = at + 1;
            let system_first = bytes.get(system_start).copied().unwrap_or(b'=');
            if !system_first.is_ascii_lowercase() {
                let expected = if system_first == b'=' {
                    "a system-id after '@'"
                } else {
                    "a lowercase letter to start the system-id"
                };
                return Err(unexpected(kind, header, start + system_start, expected));
            }
            let system_length = length - system_start;
            if system_length > TraceState::MAX_SYSTEM_ID_LENGTH {
                let max = TraceState::MAX_SYSTEM_ID_LENGTH;
                return Err(too_long(header, start + system_start, "system-id", system_length, max));
            }
        }
    }
    Ok(length)
}

/// Checks a value (which starts at byte `start` of `header`, trailing whitespace already
/// cut) against `value = 0*255(chr) nblk-chr`.
fn check_value(header: &str, start: usize, value: &str) -> Result<(), TraceContextError> {
    let kind = Header::TraceState;
    if value.is_empty() {
        return Err(unexpected(kind, header, start, "a value after '='"));
    }
    if let Some(offset) = value.bytes().position(|b| !(0x20..=0x7e).contains(&b) || b == b'=') {
        let expected = "a value character (printable ASCII other than ',' and '=')";
        return Err(unexpected(kind, header, start + offset, expected));
    }
    if value.len() > TraceState::MAX_VALUE_LENGTH {
        return Err(too_long(header, start, "value", value.len(), TraceState::MAX_VALUE_LENGTH));
    }
    Ok(())
}

fn too_long(header: &str, start: usize, field: &'static str, length: usize, max: usize) -> TraceContextError {
    TraceContextError::TooLong {
        header: Header::TraceState,
        position: char_position(header, start),
        field,
        length,
        max,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
    const PARENT: &str = "00f067aa0ba902b7";

    fn parent(header: &str) -> TraceParent {
        TraceParent::parse(header).unwrap_or_else(|e| panic!("{header:?}: {e}"))
    }

    fn parent_error(header: &str) -> String {
        match TraceParent::parse(header) {
            Ok(parsed) => panic!("{header:?} parsed as {parsed:?}"),
            Err(error) => error.to_string(),
        }
    }

    fn state(header: &str) -> Vec<(String, String)> {
        TraceState::parse(header).unwrap_or_else(|e| panic!("{header:?}: {e}")).members
    }

    fn state_error(header: &str) -> String {
        match TraceState::parse(header) {
            Ok(parsed) => panic!("{header:?} parsed as {parsed:?}"),
            Err(error) => error.to_string(),
        }
    }

    fn pairs(members: &[(&str, &str)]) -> Vec<(String, String)> {
        members.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn traceparent_examples_of_the_specification() {
        // §3.2.3 "Examples of HTTP traceparent Headers": sampled, then not sampled.
        let sampled = parent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
        assert_eq!(sampled.version, 0);
        assert_eq!(sampled.trace_id.to_hex(), TRACE);
        assert_eq!(sampled.parent_id.to_hex(), PARENT);
        assert_eq!(sampled.flags, 0x01);
        assert!(sampled.sampled());
        let not_sampled = parent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00");
        assert!(!not_sampled.sampled());
        // §3.1 "Relationship between the headers" example.
        let relation = parent("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01");
        assert_eq!(relation.to_header(), "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01");
    }

    #[test]
    fn trace_flags_are_a_bit_field() {
        // §3.2.2.5: "a flag 00000001 could be encoded as 01 in hex, or 09 in hex if present
        // with the flag 00001000"; other flags are reserved but parse.
        let nine = parent(&format!("00-{TRACE}-{PARENT}-09"));
        assert_eq!(nine.flags, 0x09);
        assert!(nine.sampled());
        assert!(!nine.random());
        let all = parent(&format!("00-{TRACE}-{PARENT}-ff"));
        assert!(all.sampled() && all.random());
        // Level 2: the random flag alone.
        let random = parent(&format!("00-{TRACE}-{PARENT}-02"));
        assert!(random.random() && !random.sampled());
    }

    #[test]
    fn traceparent_is_lowercase_hex_only() {
        // HEXDIGLC = DIGIT / "a" / "b" / "c" / "d" / "e" / "f": uppercase is not allowed in
        // any field.
        assert_eq!(
            parent_error(&format!("00-{}-{PARENT}-01", TRACE.to_uppercase())),
            "traceparent at position 4: expected one of the trace-id's 32 lowercase hex digits, found 'B'"
        );
        assert_eq!(
            parent_error(&format!("00-{TRACE}-00F067AA0BA902B7-01")),
            "traceparent at position 38: expected one of the parent-id's 16 lowercase hex digits, found 'F'"
        );
        assert_eq!(
            parent_error(&format!("00-{TRACE}-{PARENT}-0A")),
            "traceparent at position 54: expected one of the trace-flags' 2 lowercase hex digits, found 'A'"
        );
        assert_eq!(
            parent_error(&format!("0A-{TRACE}-{PARENT}-01")),
            "traceparent at position 1: expected one of the version's 2 lowercase hex digits, found 'A'"
        );
    }

    #[test]
    fn all_zero_ids_are_invalid() {
        // trace-id: "All bytes as zero (00000000000000000000000000000000) is considered an
        // invalid value"; parent-id: "All bytes as zero (0000000000000000) ... invalid".
        assert_eq!(
            parent_error(&format!("00-{}-{PARENT}-01", "0".repeat(32))),
            "traceparent at position 3: the trace-id is all zeros, which is invalid"
        );
        assert_eq!(
            parent_error(&format!("00-{TRACE}-{}-01", "0".repeat(16))),
            "traceparent at position 36: the parent-id is all zeros, which is invalid"
        );
        // The rule holds for higher versions too: they share the first four fields.
        assert!(TraceParent::parse(&format!("cc-{}-{PARENT}-01", "0".repeat(32))).is_err());
    }

    #[test]
    fn version_ff_is_invalid() {
        // "Version ff is invalid."
        assert_eq!(
            parent_error(&format!("ff-{TRACE}-{PARENT}-01")),
            "traceparent at position 0: version ff is invalid"
        );
    }

    #[test]
    fn version_00_is_exactly_55_characters() {
        // version-format for 00 is trace-id "-" parent-id "-" trace-flags and nothing more.
        assert_eq!(
            parent_error(&format!("00-{TRACE}-{PARENT}-01-what-the-future-will-be-like")),
            "traceparent at position 55: expected the end of the header (version 00 is 55 characters), found '-'"
        );
        assert_eq!(
            parent_error(&format!("00-{TRACE}-{PARENT}-01.")),
            "traceparent at position 55: expected the end of the header (version 00 is 55 characters), found '.'"
        );
        // Each field has exactly its length (2HEXDIGLC, 32HEXDIGLC, 16HEXDIGLC, 2HEXDIGLC).
        let cases = [
            // version too short and too long
            (format!("0-{TRACE}-{PARENT}-01"), 1, "one of the version's 2 lowercase hex digits"),
            (format!("000-{TRACE}-{PARENT}-01"), 2, "'-' after the version"),
            // trace-id one digit short and one too many
            (format!("00-{}-{PARENT}-01", &TRACE[1..]), 34, "one of the trace-id's 32 lowercase hex digits"),
            (format!("00-{TRACE}0-{PARENT}-01"), 35, "'-' after the trace-id"),
            // parent-id one digit short and one too many
            (format!("00-{TRACE}-{}-01", &PARENT[1..]), 51, "one of the parent-id's 16 lowercase hex digits"),
            (format!("00-{TRACE}-{PARENT}0-01"), 52, "'-' after the parent-id"),
            // trace-flags one digit short and one too many
            (format!("00-{TRACE}-{PARENT}-1"), 54, "one of the trace-flags' 2 lowercase hex digits"),
            (format!("00-{TRACE}-{PARENT}-001"), 55, "the end of the header (version 00 is 55 characters)"),
            // the delimiters are dashes
            (format!("00_{TRACE}-{PARENT}-01"), 2, "'-' after the version"),
            (format!("00-{TRACE}_{PARENT}-01"), 35, "'-' after the trace-id"),
            (format!("00-{TRACE}-{PARENT}_01"), 52, "'-' after the parent-id"),
            // non-hex characters in each field
            (format!(".0-{TRACE}-{PARENT}-01"), 0, "one of the version's 2 lowercase hex digits"),
            (format!("00-.{}-{PARENT}-01", &TRACE[1..]), 3, "one of the trace-id's 32 lowercase hex digits"),
            (format!("00-{TRACE}-{}.-01", &PARENT[..15]), 51, "one of the parent-id's 16 lowercase hex digits"),
            (format!("00-{TRACE}-{PARENT}-.0"), 53, "one of the trace-flags' 2 lowercase hex digits"),
            (String::new(), 0, "one of the version's 2 lowercase hex digits"),
        ];
        for (header, position, expected) in cases {
            match TraceParent::parse(&header) {
                Err(TraceContextError::Unexpected { position: p, expected: e, .. }) => {
                    assert_eq!((p, e), (position, expected), "{header:?}");
                }
                other => panic!("{header:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn higher_versions_parse_their_first_four_fields() {
        // §3.2.4 "Versioning of traceparent": parse trace-id, parent-id and flags of a higher
        // version; the flags must be "either at the end of the string or followed by a dash".
        let plain = parent(&format!("cc-{TRACE}-{PARENT}-01"));
        assert_eq!(
            (plain.version, plain.trace_id.to_hex(), plain.parent_id.to_hex()),
            (0xcc, TRACE.into(), PARENT.into())
        );
        let more = parent(&format!("cc-{TRACE}-{PARENT}-01-what-the-future-will-be-like"));
        assert_eq!(more, plain);
        assert_eq!(parent(&format!("01-{TRACE}-{PARENT}-01-")).version, 1);
        assert_eq!(
            parent_error(&format!("cc-{TRACE}-{PARENT}-01.what-the-future-will-be-like")),
            "traceparent at position 55: expected '-' or the end of the header after the trace-flags, found '.'"
        );
        // "If the size of the header is shorter than 55 characters, the vendor should not
        // parse the header."
        assert!(TraceParent::parse(&format!("cc-{TRACE}-{PARENT}-0")).is_err());
        // Hex is still lowercase in a higher version.
        assert!(TraceParent::parse(&format!("cc-{}-{PARENT}-01", TRACE.to_uppercase())).is_err());
        assert!(TraceParent::parse(&format!("CC-{TRACE}-{PARENT}-01")).is_err());
    }

    #[test]
    fn surrounding_optional_whitespace_is_not_part_of_the_value() {
        // RFC 7230 §3.2: OWS around a field value is not part of it (W3C test suite
        // test_traceparent_ows_handling); positions still count from the header as given.
        let expected = parent(&format!("00-{TRACE}-{PARENT}-01"));
        for header in [
            format!(" 00-{TRACE}-{PARENT}-01"),
            format!("\t00-{TRACE}-{PARENT}-01"),
            format!("00-{TRACE}-{PARENT}-01 "),
            format!("00-{TRACE}-{PARENT}-01\t"),
            format!("\t 00-{TRACE}-{PARENT}-01 \t"),
        ] {
            assert_eq!(parent(&header), expected, "{header:?}");
        }
        assert_eq!(
            parent_error(&format!("  00-{TRACE}-{PARENT}-0x")),
            "traceparent at position 56: expected one of the trace-flags' 2 lowercase hex digits, found 'x'"
        );
        // Whitespace inside the value is not optional whitespace.
        assert!(TraceParent::parse(&format!("00-{TRACE}-{PARENT} -01")).is_err());
        assert!(TraceParent::parse(&format!("00-{TRACE}-{PARENT}-01 x")).is_err());
    }

    #[test]
    fn errors_count_characters_not_bytes() {
        assert_eq!(
            parent_error(&format!("00-é{}-{PARENT}-01", &TRACE[1..])),
            "traceparent at position 3: expected one of the trace-id's 32 lowercase hex digits, found 'é'"
        );
        assert_eq!(
            parent_error(&format!("00-{TRACE}-{PARENT}-01é")),
            "traceparent at position 55: expected the end of the header (version 00 is 55 characters), found 'é'"
        );
        assert_eq!(
            state_error("a=1,b=é"),
            "tracestate at position 6: expected a value character (printable ASCII other than ',' and '='), found 'é'"
        );
    }

    #[test]
    fn to_header_formats_lowercase_fields() {
        let parsed = parent(&format!("00-{TRACE}-{PARENT}-03"));
        assert_eq!(parsed.to_header(), format!("00-{TRACE}-{PARENT}-03"));
        assert_eq!(parsed.to_string(), parsed.to_header());
        let downgraded = TraceParent { version: TraceParent::VERSION, ..parent(&format!("cc-{TRACE}-{PARENT}-01-x")) };
        assert_eq!(downgraded.to_header(), format!("00-{TRACE}-{PARENT}-01"));
        assert_eq!(format!("00-{TRACE}-{PARENT}-01").parse::<TraceParent>(), Ok(downgraded));
    }

    #[test]
    fn tracestate_examples_of_the_specification() {
        // §3.1 and §3.3.3 examples.
        assert_eq!(state("congo=t61rcWkgMzE"), pairs(&[("congo", "t61rcWkgMzE")]));
        assert_eq!(
            state("rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"),
            pairs(&[("rojo", "00f067aa0ba902b7"), ("congo", "t61rcWkgMzE")])
        );
        assert_eq!(
            state("congo=ucfJifl5GOE,rojo=00f067aa0ba902b7"),
            pairs(&[("congo", "ucfJifl5GOE"), ("rojo", "00f067aa0ba902b7")])
        );
        assert_eq!(
            state("vendorname1=opaqueValue1,vendorname2=opaqueValue2"),
            pairs(&[("vendorname1", "opaqueValue1"), ("vendorname2", "opaqueValue2")])
        );
        let parsed = TraceState::parse("rojo=00f067aa0ba902b7,congo=t61rcWkgMzE").unwrap();
        assert_eq!(parsed.get("congo"), Some("t61rcWkgMzE"));
        assert_eq!(parsed.get("zipkin"), None);
        assert_eq!(parsed.to_header(), "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE");
    }

    #[test]
    fn empty_members_and_optional_whitespace_are_skipped() {
        // "Vendors MUST accept empty tracestate headers"; "Empty and whitespace-only list
        // members are allowed"; "Spaces and horizontal tabs surrounding list-members are
        // ignored".
        assert_eq!(state(""), vec![]);
        assert_eq!(state(" \t "), vec![]);
        assert_eq!(state(",,"), vec![]);
        assert_eq!(state("foo=1 \t , \t bar=2, \t baz=3"), pairs(&[("foo", "1"), ("bar", "2"), ("baz", "3")]));
        assert_eq!(state("foo=1\t \t,\t \tbar=2,\t \tbaz=3"), pairs(&[("foo", "1"), ("bar", "2"), ("baz", "3")]));
        assert_eq!(state(",foo=1, ,\t,bar=2,"), pairs(&[("foo", "1"), ("bar", "2")]));
        // Value: "all leading spaces MUST be preserved as part of the value and all trailing
        // spaces are considered to be optional whitespace".
        assert_eq!(state("foo=  1  "), pairs(&[("foo", "  1")]));
        assert_eq!(state("\t foo=1 \t"), pairs(&[("foo", "1")]));
    }

    #[test]
    fn at_most_32_members() {
        // "There can be a maximum of 32 list-members in a list"; empty members don't count.
        let members: Vec<String> = (1..=32).map(|i| format!("bar{i:02}={i:02}")).collect();
        let header = members.join(",");
        assert_eq!(state(&header).len(), 32);
        assert_eq!(state(&format!(",{}, ,", members.join(",,"))).len(), 32);
        let too_many = format!("{header},bar33=33");
        assert_eq!(
            state_error(&too_many),
            format!(
                "tracestate at position {}: list member 33 is one too many, at most 32 are allowed",
                header.len() + 1
            )
        );
    }

    #[test]
    fn duplicate_keys_are_invalid() {
        // "Only one entry per key is allowed."
        assert_eq!(
            state_error("foo=1,bar=2, foo=3"),
            "tracestate at position 13: key 'foo' appears a second time (first at position 0), duplicate keys are invalid"
        );
        assert!(TraceState::parse("foo=1,foo=1").is_err());
        // Different tenants of one system are different keys.
        assert_eq!(state("a@sys=1,b@sys=2").len(), 2);
    }

    #[test]
    fn key_grammar() {
        // simple-key = lcalpha 0*255( lcalpha / DIGIT / "_" / "-"/ "*" / "/" )
        // multi-tenant-key = tenant-id "@" system-id
        // tenant-id = ( lcalpha / DIGIT ) 0*240( lcalpha / DIGIT / "_" / "-"/ "*" / "/" )
        // system-id = lcalpha 0*13( lcalpha / DIGIT / "_" / "-"/ "*" / "/" )
        let every_key_char = "abcdefghijklmnopqrstuvwxyz0123456789_-*/";
        assert_eq!(state(&format!("{every_key_char}=1"))[0].0, every_key_char);
        let tenant_key = format!("{every_key_char}@a-z0-9_-*/");
        assert_eq!(state(&format!("{tenant_key}=1"))[0].0, tenant_key);
        assert_eq!(state("0tenant@vendor=1")[0].0, "0tenant@vendor");
        assert_eq!(state("dt*@d/t=1")[0].0, "dt*@d/t");

        let cases = [
            ("FOO=1", "tracestate at position 0: expected a key (starting with a lowercase letter or digit), found 'F'"),
            ("fOO=1", "tracestate at position 1: expected a key character (a-z 0-9 _ - * / @) or '=', found 'O'"),
            ("foo =1", "tracestate at position 3: expected a key character (a-z 0-9 _ - * / @) or '=', found ' '"),
            ("foo.bar=1", "tracestate at position 3: expected a key character (a-z 0-9 _ - * / @) or '=', found '.'"),
            ("1foo=1", "tracestate at position 0: expected a lowercase letter to start the key (only a tenant-id@system-id key may start with a digit), found '1'"),
            ("_foo=1", "tracestate at position 0: expected a lowercase letter to start the key (only a tenant-id@system-id key may start with a digit), found '_'"),
            ("=1", "tracestate at position 0: expected a key before '=', found '='"),
            ("a=1, foo", "tracestate at position 8: expected a key character (a-z 0-9 _ - * / @) or '=', found the end of the header"),
            ("foo ,a=1", "tracestate at position 3: expected a key character (a-z 0-9 _ - * / @) or '=', found ' '"),
            ("foo@=1,bar=2", "tracestate at position 4: expected a system-id after '@', found '='"),
            ("@foo=1,bar=2", "tracestate at position 0: expected a tenant-id before '@', found '@'"),
            ("foo@@bar=1,bar=2", "tracestate at position 4: expected a key character other than a second '@', found '@'"),
            ("foo@bar@baz=1,bar=2", "tracestate at position 7: expected a key character other than a second '@', found '@'"),
            ("-t@vendor=1", "tracestate at position 0: expected a lowercase letter or digit to start the tenant-id, found '-'"),
            ("t@1vendor=1", "tracestate at position 2: expected a lowercase letter to start the system-id, found '1'"),
        ];
        for (header, message) in cases {
            assert_eq!(state_error(header), message, "{header:?}");
        }
    }

    #[test]
    fn key_length_limits() {
        // simple-key: 1 + 255 characters; tenant-id: 1 + 240; system-id: 1 + 13.
        assert_eq!(state(&format!("{}=1", "z".repeat(256)))[0].0.len(), 256);
        assert_eq!(
            state_error(&format!("foo=1,{}=1", "z".repeat(257))),
            "tracestate at position 6: the key is 257 characters long, at most 256 are allowed"
        );
        assert_eq!(state(&format!("{}@{}=1", "t".repeat(241), "v".repeat(14)))[0].0.len(), 256);
        assert_eq!(
            state_error(&format!("{}@v=1", "t".repeat(242))),
            "tracestate at position 0: the tenant-id is 242 characters long, at most 241 are allowed"
        );
        assert_eq!(
            state_error(&format!("t@{}=1", "v".repeat(15))),
            "tracestate at position 2: the system-id is 15 characters long, at most 14 are allowed"
        );
    }

    #[test]
    fn value_grammar() {
        // value = 0*255(chr) nblk-chr; nblk-chr = %x21-2B / %x2D-3C / %x3E-7E; chr = %x20 / nblk-chr
        let every_value_char: String =
            (0x20u8..=0x7e).filter(|&b| b != b',' && b != b'=').map(char::from).collect::<String>();
        assert_eq!(state(&format!("foo={every_value_char}")), pairs(&[("foo", &every_value_char)]));
        assert_eq!(state(&format!("foo={}", "v".repeat(256)))[0].1.len(), 256);
        assert_eq!(
            state_error(&format!("foo={}", "v".repeat(257))),
            "tracestate at position 4: the value is 257 characters long, at most 256 are allowed"
        );
        let cases = [
            ("foo=bar=baz", "tracestate at position 7: expected a value character (printable ASCII other than ',' and '='), found '='"),
            ("foo=,bar=3", "tracestate at position 4: expected a value after '=', found ','"),
            ("foo=", "tracestate at position 4: expected a value after '=', found the end of the header"),
            ("foo=   ,bar=3", "tracestate at position 4: expected a value after '=', found ' '"),
            ("foo=a\tb", "tracestate at position 5: expected a value character (printable ASCII other than ',' and '='), found '\\t'"),
            ("foo=a\u{7f}", "tracestate at position 5: expected a value character (printable ASCII other than ',' and '='), found '\\u{7f}'"),
            ("foo=a\nb", "tracestate at position 5: expected a value character (printable ASCII other than ',' and '='), found '\\n'"),
        ];
        for (header, message) in cases {
            assert_eq!(state_error(header), message, "{header:?}");
        }
    }

    fn simple_key() -> impl Strategy<Value = String> {
        "[a-z][a-z0-9_\\-*/]{0,20}"
    }

    fn tenant_key() -> impl Strategy<Value = String> {
        "[a-z0-9][a-z0-9_\\-*/]{0,20}@[a-z][a-z0-9_\\-*/]{0,13}"
    }

    fn value() -> impl Strategy<Value = String> {
        "[\\x20-\\x2b\\x2d-\\x3c\\x3e-\\x7e]{0,40}[\\x21-\\x2b\\x2d-\\x3c\\x3e-\\x7e]"
    }

    fn trace_state() -> impl Strategy<Value = TraceState> {
        prop::collection::vec((prop_oneof![simple_key(), tenant_key()], value()), 0..=32).prop_map(|mut members| {
            let mut seen = std::collections::HashSet::new();
            members.retain(|(key, _)| seen.insert(key.clone()));
            TraceState { members }
        })
    }

    proptest! {
        #[test]
        fn traceparent_round_trips(
            version in 0u8..0xff,
            trace in any::<[u8; 16]>().prop_filter("non-zero", |b| b.iter().any(|&x| x != 0)),
            span in any::<[u8; 8]>().prop_filter("non-zero", |b| b.iter().any(|&x| x != 0)),
            flags in any::<u8>(),
            future in "(-[ -~]{0,20})?",
        ) {
            let original = TraceParent { version, trace_id: TraceId(trace), parent_id: SpanId(span), flags };
            let header = original.to_header();
            prop_assert_eq!(header.len(), TraceParent::VERSION_00_LENGTH);
            prop_assert_eq!(TraceParent::parse(&header), Ok(original));
            // A higher version may carry more after a dash; version 00 may not.
            let extended = format!("{header}{future}");
            if version != 0 || future.is_empty() {
                prop_assert_eq!(TraceParent::parse(&extended), Ok(original));
            } else {
                prop_assert!(TraceParent::parse(&extended).is_err());
            }
        }

        #[test]
        fn tracestate_round_trips(original in trace_state(), separators in prop::collection::vec("[ \t]{0,2}(,[ \t]{0,2})?", 33)) {
            let header = original.to_header();
            prop_assert_eq!(TraceState::parse(&header), Ok(original.clone()));
            // The same members with optional whitespace and empty members around them.
            let mut spaced = String::new();
            for (index, (key, value)) in original.members.iter().enumerate() {
                let separator = separators.get(index).map_or("", String::as_str);
                spaced.push_str(separator);
                spaced.push_str(key);
                spaced.push('=');
                spaced.push_str(value);
                spaced.push_str(separator);
                spaced.push(',');
            }
            prop_assert_eq!(TraceState::parse(&spaced), Ok(original));
        }

        #[test]
        fn arbitrary_headers_never_panic(header in any::<String>()) {
            check_error_shape(&header, TraceParent::parse(&header).err());
            check_error_shape(&header, TraceState::parse(&header).err());
        }

        #[test]
        fn near_miss_headers_never_panic(header in "[0-9a-fA-F\\- \t,=@]{0,80}") {
            check_error_shape(&header, TraceParent::parse(&header).err());
            check_error_shape(&header, TraceState::parse(&header).err());
        }

        #[test]
        fn mutated_headers_are_reparsed_consistently(original in trace_state(), index in any::<prop::sample::Index>(), byte in any::<u8>()) {
            let mut bytes = original.to_header().into_bytes();
            if !bytes.is_empty() {
                let at = index.index(bytes.len());
                bytes[at] = byte;
            }
            let header = String::from_utf8_lossy(&bytes).into_owned();
            match TraceState::parse(&header) {
                Ok(parsed) => prop_assert_eq!(TraceState::parse(&parsed.to_header()), Ok(parsed)),
                Err(error) => check_error_shape(&header, Some(error)),
            }
        }
    }

    fn check_error_shape(header: &str, error: Option<TraceContextError>) {
        if let Some(error) = error {
            assert!(error.position() <= header.chars().count(), "{header:?}: {error}");
            let message = error.to_string();
            assert!(!message.ends_with('.') && message.starts_with("trace"), "{message}");
        }
    }
}
