//! AWS X-Ray: trace ids (`1-5759e988-bd862e3fe1be46a994272793`) and the `X-Amzn-Trace-Id`
//! header (`Root=…;Parent=…;Sampled=…`), mapped to W3C ids as the OpenTelemetry AWS X-Ray
//! propagator maps them.
//!
//! The propagator (opentelemetry-java-contrib `AwsXrayPropagator`, opentelemetry-go-contrib
//! `propagators/aws/xray`) turns `1-<epoch>-<unique>` into the W3C trace id
//! `<epoch><unique>`: the 8 hex digits of the epoch followed by the 24 of the unique part,
//! and writes a W3C id back as `1-` + its first 8 digits + `-` + the other 24. The mapping
//! itself is [`TraceId::from_xray`] in the engine, so that the query crate, which must not
//! depend on wire formats, finds spans by X-Ray id with the very same rules.
//!
//! The header is a `;`-separated list of `key=value` pairs. `Root` (required here) is the
//! trace id, `Parent` the caller's segment (span) id, 16 lowercase hex digits, `Sampled` is
//! `1`, `0` or `?` (the caller asks the receiver to decide), `Lineage` is Lambda's
//! recursion-detection counter, kept verbatim. Other keys (`Self`, vendor data) are kept in
//! order, as the Java propagator keeps them as baggage. Deviations from the propagators,
//! which silently drop what they cannot use: this parser says why and where a header is
//! invalid, and refuses a key given twice instead of letting the last one win.
#![deny(clippy::unwrap_used, clippy::indexing_slicing)]

use spanstore_engine::{SpanId, TraceId};

use crate::tracecontext::{char_position, lower_hex, unexpected, Header, TraceContextError, TraceParent};

/// Parses an AWS X-Ray trace id into the W3C trace id the OpenTelemetry propagator maps
/// it to: `1-5759e988-bd862e3fe1be46a994272793` is `5759e988bd862e3fe1be46a994272793`.
pub fn xray_to_trace_id(xray: &str) -> Result<TraceId, TraceContextError> {
    TraceId::from_xray(xray).map_err(|error| TraceContextError::from_xray_id(error, Header::XRayTraceId, xray, 0))
}

/// The X-Ray form of a W3C trace id: `5759e988bd862e3fe1be46a994272793` is
/// `1-5759e988-bd862e3fe1be46a994272793`.
pub fn trace_id_to_xray(id: TraceId) -> String {
    id.to_xray()
}

/// The `Sampled` field of an X-Ray header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum XRaySampled {
    /// `Sampled=0`.
    No,
    /// `Sampled=1`.
    Yes,
    /// `Sampled=?`: the caller leaves the decision to the receiver.
    Requested,
}

impl XRaySampled {
    /// The header's character for it.
    pub fn as_str(self) -> &'static str {
        match self {
            XRaySampled::No => "0",
            XRaySampled::Yes => "1",
            XRaySampled::Requested => "?",
        }
    }
}

/// A parsed `X-Amzn-Trace-Id` header.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct XRayHeader {
    /// `Root`: the trace id, as its W3C form.
    pub root: TraceId,
    /// `Parent`: the caller's segment id, if given.
    pub parent: Option<SpanId>,
    /// `Sampled`, if given.
    pub sampled: Option<XRaySampled>,
    /// `Lineage` (Lambda's recursive-loop detection), verbatim, if given.
    pub lineage: Option<String>,
    /// Every other `key=value` pair, in header order.
    pub other: Vec<(String, String)>,
}

impl XRayHeader {
    /// The header value: `Root=…`, then `Parent`, `Sampled`, `Lineage` and the other
    /// pairs when present, separated by `;`.
    pub fn to_header(&self) -> String {
        let mut out = format!("Root={}", self.root.to_xray());
        if let Some(parent) = self.parent {
            out.push_str(";Parent=");
            out.push_str(&parent.to_hex());
        }
        if let Some(sampled) = self.sampled {
            out.push_str(";Sampled=");
            out.push_str(sampled.as_str());
        }
        if let Some(lineage) = &self.lineage {
            out.push_str(";Lineage=");
            out.push_str(lineage);
        }
        for (key, value) in &self.other {
            out.push(';');
            out.push_str(key);
            out.push('=');
            out.push_str(value);
        }
        out
    }

    /// The W3C context the OpenTelemetry propagator extracts from this header: the mapped
    /// trace id, `Parent` as the parent-id, the `sampled` flag only for `Sampled=1`. None
    /// without a `Parent`, which a span context needs.
    pub fn to_traceparent(&self) -> Option<TraceParent> {
        let flags = if self.sampled == Some(XRaySampled::Yes) { TraceParent::FLAG_SAMPLED } else { 0 };
        Some(TraceParent { version: TraceParent::VERSION, trace_id: self.root, parent_id: self.parent?, flags })
    }
}

/// Optional whitespace around a pair: spaces and tabs.
const OWS: [char; 2] = [' ', '\t'];

/// Parses an `X-Amzn-Trace-Id` header value such as
/// `Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1`.
///
/// Pairs are separated by `;` (a trailing `;` is allowed) with optional spaces or tabs
/// around each; keys are case-sensitive, as the propagators compare them.
pub fn parse_xray_header(header: &str) -> Result<XRayHeader, TraceContextError> {
    let kind = Header::XRay;
    let mut root: Option<TraceId> = None;
    let mut parent: Option<SpanId> = None;
    let mut sampled: Option<XRaySampled> = None;
    let mut lineage: Option<String> = None;
    let mut other: Vec<(String, String)> = Vec::new();
    let mut seen: Vec<(&str, usize)> = Vec::new();
    let piece_count = header.split(';').count();
    let mut piece_start = 0usize;
    for (index, piece) in header.split(';').enumerate() {
        let start = piece_start + (piece.len() - piece.trim_start_matches(OWS).len());
        let end = piece_start + piece.trim_end_matches(OWS).len();
        piece_start += piece.len() + 1;
        if piece.is_empty() && index + 1 == piece_count && index > 0 {
            continue; // a trailing ';'
        }
        let pair = header.get(start..end.max(start)).unwrap_or_default();
        let Some(equals) = pair.find('=') else {
            let expected = if pair.is_empty() { "a key=value pair" } else { "'=' after the key" };
            return Err(unexpected(kind, header, start + pair.len(), expected));
        };
        let key = pair.get(..equals).unwrap_or_default();
        let value = pair.get(equals + 1..).unwrap_or_default();
        let value_start = start + equals + 1;
        if key.is_empty() {
            return Err(unexpected(kind, header, start, "a key before '='"));
        }
        let position = char_position(header, start);
        if let Some(&(_, first)) = seen.iter().find(|(seen_key, _)| *seen_key == key) {
            return Err(TraceContextError::DuplicateKey { header: kind, position, key: key.to_string(), first });
        }
        seen.push((key, position));
        match key {
            "Root" => {
                let id = TraceId::from_xray(value)
                    .map_err(|error| TraceContextError::from_xray_id(error, kind, header, value_start))?;
                root = Some(id);
            }
            "Parent" => {
                let id = SpanId(lower_hex::<8>(kind, header, value_start, "one of Parent's 16 lowercase hex digits")?);
                if value.len() > 2 * SpanId::LEN {
                    let expected = "the end of the Parent value (16 lowercase hex digits)";
                    return Err(unexpected(kind, header, value_start + 2 * SpanId::LEN, expected));
                }
                if id.is_zero() {
                    let position = char_position(header, value_start);
                    return Err(TraceContextError::AllZero { header: kind, position, field: "Parent" });
                }
                parent = Some(id);
            }
            "Sampled" => {
                sampled = Some(match value {
                    "0" => XRaySampled::No,
                    "1" => XRaySampled::Yes,
                    "?" => XRaySampled::Requested,
                    _ if matches!(value.as_bytes().first(), Some(b'0' | b'1' | b'?')) => {
                        return Err(unexpected(kind, header, value_start + 1, "the end of the Sampled value"));
                    }
                    _ => return Err(unexpected(kind, header, value_start, "'0', '1' or '?' as the Sampled value")),
                });
            }
            "Lineage" => lineage = Some(value.to_string()),
            _ => other.push((key.to_string(), value.to_string())),
        }
    }
    let Some(root) = root else {
        return Err(unexpected(kind, header, header.len(), "a Root=1-<epoch>-<unique> pair"));
    };
    Ok(XRayHeader { root, parent, sampled, lineage, other })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn header_error(header: &str) -> String {
        match parse_xray_header(header) {
            Ok(parsed) => panic!("{header:?} parsed as {parsed:?}"),
            Err(error) => error.to_string(),
        }
    }

    #[test]
    fn trace_ids_map_as_the_propagator_maps_them() {
        // The AWS tracing-header example, and a case of opentelemetry-java-contrib's tests.
        let id = xray_to_trace_id("1-5759e988-bd862e3fe1be46a994272793").unwrap();
        assert_eq!(id.to_hex(), "5759e988bd862e3fe1be46a994272793");
        assert_eq!(trace_id_to_xray(id), "1-5759e988-bd862e3fe1be46a994272793");
        let id = xray_to_trace_id("1-8a3c60f7-d188f8fa79d48a391a778fa6").unwrap();
        assert_eq!(id, TraceId::from_hex("8a3c60f7d188f8fa79d48a391a778fa6").unwrap());
        // The Java propagator accepts an epoch with leading zeros left out and pads it.
        assert_eq!(
            xray_to_trace_id("1-a3c60f7-d188f8fa79d48a391a778fa6").unwrap().to_hex(),
            "0a3c60f7d188f8fa79d48a391a778fa6"
        );
        assert_eq!(
            xray_to_trace_id("1-5759e988-BD862E3FE1BE46A994272793").unwrap_err().to_string(),
            "x-ray trace id at position 11: expected a lowercase hex digit of the 24-digit unique part, found 'B'"
        );
        assert!(xray_to_trace_id("5759e988bd862e3fe1be46a994272793").is_err());
    }

    #[test]
    fn headers_of_the_aws_documentation() {
        let root = xray_to_trace_id("1-5759e988-bd862e3fe1be46a994272793").unwrap();
        let header = parse_xray_header("Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=1").unwrap();
        assert_eq!(
            header,
            XRayHeader { root, parent: None, sampled: Some(XRaySampled::Yes), lineage: None, other: vec![] }
        );
        assert_eq!(header.to_traceparent(), None);
        let header =
            parse_xray_header("Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1").unwrap();
        assert_eq!(header.parent, Some(SpanId::from_hex("53995c3f42cd8ad8").unwrap()));
        assert_eq!(header.to_header(), "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1");
        let traceparent = header.to_traceparent().unwrap();
        assert_eq!(traceparent.to_header(), "00-5759e988bd862e3fe1be46a994272793-53995c3f42cd8ad8-01");
        // Lambda's _X_AMZN_TRACE_ID with a Lineage, and the load balancer's Self.
        let lambda =
            "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=0;Lineage=a87bd80c:1|68fd508a:5";
        let header = parse_xray_header(lambda).unwrap();
        assert_eq!(header.sampled, Some(XRaySampled::No));
        assert_eq!(header.lineage.as_deref(), Some("a87bd80c:1|68fd508a:5"));
        assert_eq!(header.to_header(), lambda);
        assert!(!header.to_traceparent().unwrap().sampled());
        let alb = parse_xray_header("Self=1-67891234-12456789abcdef012345678;Root=1-67891233-abcdef012345678912345678")
            .unwrap();
        assert_eq!(alb.root.to_hex(), "67891233abcdef012345678912345678");
        assert_eq!(alb.other, vec![("Self".to_string(), "1-67891234-12456789abcdef012345678".to_string())]);
    }

    #[test]
    fn sampled_question_mark_defers_the_decision() {
        let header =
            parse_xray_header("Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=?").unwrap();
        assert_eq!(header.sampled, Some(XRaySampled::Requested));
        assert!(!header.to_traceparent().unwrap().sampled());
    }

    #[test]
    fn whitespace_and_a_trailing_semicolon_are_allowed() {
        let header =
            parse_xray_header(" Root=1-5759e988-bd862e3fe1be46a994272793 ; Parent=53995c3f42cd8ad8;\tSampled=1;")
                .unwrap();
        assert_eq!(header.to_header(), "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1");
    }

    #[test]
    fn invalid_headers_say_what_and_where() {
        let cases = [
            ("", "x-amzn-trace-id at position 0: expected a key=value pair, found the end of the header"),
            ("Sampled=1", "x-amzn-trace-id at position 9: expected a Root=1-<epoch>-<unique> pair, found the end of the header"),
            ("Root", "x-amzn-trace-id at position 4: expected '=' after the key, found the end of the header"),
            ("Root=1-5759e988-bd862e3fe1be46a994272793;;Sampled=1", "x-amzn-trace-id at position 41: expected a key=value pair, found ';'"),
            ("=1;Root=1-5759e988-bd862e3fe1be46a994272793", "x-amzn-trace-id at position 0: expected a key before '=', found '='"),
            ("Root=2-5759e988-bd862e3fe1be46a994272793", "x-amzn-trace-id at position 5: expected the version '1', found '2'"),
            ("Sampled=1;Root=1-5759E988-bd862e3fe1be46a994272793", "x-amzn-trace-id at position 21: expected a lowercase hex digit of the epoch or '-', found 'E'"),
            ("Root=1-00000000-000000000000000000000000", "x-amzn-trace-id at position 7: expected an id that is not all zeros, found all zeros"),
            ("Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad", "x-amzn-trace-id at position 63: expected one of Parent's 16 lowercase hex digits, found the end of the header"),
            ("Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad80", "x-amzn-trace-id at position 64: expected the end of the Parent value (16 lowercase hex digits), found '0'"),
            ("Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995C3F42CD8AD8", "x-amzn-trace-id at position 53: expected one of Parent's 16 lowercase hex digits, found 'C'"),
            ("Root=1-5759e988-bd862e3fe1be46a994272793;Parent=0000000000000000", "x-amzn-trace-id at position 48: the Parent is all zeros, which is invalid"),
            ("Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=2", "x-amzn-trace-id at position 49: expected '0', '1' or '?' as the Sampled value, found '2'"),
            ("Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=10", "x-amzn-trace-id at position 50: expected the end of the Sampled value, found '0'"),
            ("Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=", "x-amzn-trace-id at position 49: expected '0', '1' or '?' as the Sampled value, found the end of the header"),
            ("Root=1-5759e988-bd862e3fe1be46a994272793;Root=1-5759e988-bd862e3fe1be46a994272794", "x-amzn-trace-id at position 41: key 'Root' appears a second time (first at position 0), duplicate keys are invalid"),
        ];
        for (header, message) in cases {
            assert_eq!(header_error(header), message, "{header:?}");
        }
    }

    fn other_pair() -> impl Strategy<Value = (String, String)> {
        ("[A-Za-z][A-Za-z0-9_-]{0,8}", "([!-:<-~]([ !-:<-~]{0,10}[!-:<-~])?)?")
            .prop_filter("not a known key", |(key, _)| {
                !matches!(key.as_str(), "Root" | "Parent" | "Sampled" | "Lineage")
            })
    }

    fn xray_header() -> impl Strategy<Value = XRayHeader> {
        (
            any::<[u8; 16]>().prop_filter("non-zero", |b| b.iter().any(|&x| x != 0)),
            prop::option::of(any::<[u8; 8]>().prop_filter("non-zero", |b| b.iter().any(|&x| x != 0))),
            prop::option::of(prop_oneof![Just(XRaySampled::No), Just(XRaySampled::Yes), Just(XRaySampled::Requested)]),
            prop::option::of("[0-9a-f]{8}:[0-9]{1,3}(\\|[0-9a-f]{8}:[0-9]{1,3}){0,3}"),
            prop::collection::vec(other_pair(), 0..4),
        )
            .prop_map(|(root, parent, sampled, lineage, mut other)| {
                let mut seen = std::collections::HashSet::new();
                other.retain(|(key, _)| seen.insert(key.clone()));
                XRayHeader { root: TraceId(root), parent: parent.map(SpanId), sampled, lineage, other }
            })
    }

    proptest! {
        #[test]
        fn trace_ids_round_trip(bytes in any::<[u8; 16]>().prop_filter("non-zero", |b| b.iter().any(|&x| x != 0))) {
            let id = TraceId(bytes);
            let xray = trace_id_to_xray(id);
            prop_assert_eq!(xray.len(), 35);
            prop_assert_eq!(xray_to_trace_id(&xray), Ok(id));
        }

        #[test]
        fn headers_round_trip(header in xray_header()) {
            prop_assert_eq!(parse_xray_header(&header.to_header()), Ok(header));
        }

        #[test]
        fn arbitrary_text_never_panics(text in any::<String>(), near in "(Root|Parent|Sampled|Lineage|[0-9a-f]|-|=|;| ){0,30}") {
            for input in [text.as_str(), near.as_str()] {
                for error in [parse_xray_header(input).err(), xray_to_trace_id(input).err()].into_iter().flatten() {
                    prop_assert!(error.position() <= input.chars().count(), "{:?}: {}", input, error);
                    prop_assert!(!error.to_string().ends_with('.'));
                }
            }
        }
    }
}
