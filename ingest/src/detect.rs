//! Format detection and bounded gzip inflation, for `spanstore ingest` and `serve`.
//!
//! Detection reads the content first and uses the file name only as a hint where the
//! content cannot tell: a head without control characters (other than whitespace) that starts, after
//! whitespace and a BOM,
//! with `[` is Zipkin JSON; with `{` it is OTLP/JSON, as lines when its first line is a
//! whole object followed by another line, or when the name ends in `.jsonl` and the
//! first line is longer than the head; anything else is OTLP protobuf when it decodes
//! as a request or starts like one (field 1, `resource_spans`), or when the name ends
//! in `.pb`. A `.gz` suffix is ignored for the hint: the head is what gunzip gave.
#![deny(clippy::unwrap_used, clippy::indexing_slicing)]

use std::io::Read;

use prost::Message;

use crate::otlp::ExportTraceServiceRequest;
use crate::{otlp, otlp_json, zipkin, Decoded, IngestError};

/// A wire format [`detect`] can name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// One OTLP/JSON `ExportTraceServiceRequest` (a whole file or body).
    OtlpJson,
    /// OTLP/JSON requests, one per line.
    OtlpJsonLines,
    /// One protobuf `ExportTraceServiceRequest`.
    OtlpProtobuf,
    /// A JSON array of Zipkin v2 spans.
    ZipkinJson,
}

/// The gzip magic bytes.
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// True when `head` starts with the gzip magic.
pub fn is_gzip(head: &[u8]) -> bool {
    head.starts_with(&GZIP_MAGIC)
}

/// The file name's extension, lowercase, without a trailing `.gz`.
fn extension(file_name: Option<&str>) -> Option<String> {
    let name = file_name?.to_ascii_lowercase();
    let name = name.strip_suffix(".gz").unwrap_or(&name);
    let (_, extension) = name.rsplit_once('.')?;
    Some(extension.to_owned())
}

/// Names the format of a payload from its first bytes (after gunzip) and, as a hint,
/// its file name. `None` when neither tells, or when `head` is still gzip.
pub fn detect(head: &[u8], file_name: Option<&str>) -> Option<Format> {
    if is_gzip(head) {
        return None;
    }
    let extension = extension(file_name);
    let hint = extension.as_deref();
    if could_be_json(head) {
        let trimmed = trim_json_start(head);
        if trimmed.first() == Some(&b'[') {
            return Some(Format::ZipkinJson);
        }
        if trimmed.first() == Some(&b'{') {
            return Some(match trimmed.iter().position(|&b| b == b'\n') {
                Some(newline) => {
                    let first = String::from_utf8_lossy(trimmed.get(..newline).unwrap_or_default());
                    let rest = trimmed.get(newline..).unwrap_or_default();
                    if is_whole_object(&first) && rest.iter().any(|b| !b.is_ascii_whitespace()) {
                        Format::OtlpJsonLines
                    } else {
                        Format::OtlpJson
                    }
                }
                None if hint == Some("jsonl") || hint == Some("ndjson") => Format::OtlpJsonLines,
                None => Format::OtlpJson,
            });
        }
        // Text that starts like no JSON container: the name decides, and the JSON
        // decoder says what is wrong with it.
        match hint {
            Some("json") => return Some(Format::OtlpJson),
            Some("jsonl") | Some("ndjson") => return Some(Format::OtlpJsonLines),
            _ => {}
        }
    }
    if hint == Some("pb") || hint == Some("protobuf") || hint == Some("binpb") {
        return Some(Format::OtlpProtobuf);
    }
    // Field 1 (resource_spans), length-delimited: the first byte of every non-empty
    // request an SDK writes.
    if head.is_empty()
        || head.first() == Some(&0x0a)
        || ExportTraceServiceRequest::decode(head).is_ok_and(|request| !request.resource_spans.is_empty())
    {
        return Some(Format::OtlpProtobuf);
    }
    None
}

/// False when `head` holds a control character other than whitespace, which JSON
/// allows nowhere, while protobuf's lengths and tags put them in nearly every message.
/// (Invalid UTF-8 is left for the JSON decoder to report.)
fn could_be_json(head: &[u8]) -> bool {
    !head.iter().any(|&b| b < 0x20 && !matches!(b, b'\t' | b'\n' | b'\r'))
}

/// `head` without leading JSON whitespace and a UTF-8 byte order mark.
fn trim_json_start(head: &[u8]) -> &[u8] {
    let head = head.strip_prefix(b"\xef\xbb\xbf").unwrap_or(head);
    let start = head.iter().position(|b| !b.is_ascii_whitespace()).unwrap_or(head.len());
    let head = head.get(start..).unwrap_or_default();
    head.strip_prefix(b"\xef\xbb\xbf").unwrap_or(head)
}

/// True when a line holds one whole JSON object (braces balance outside strings).
fn is_whole_object(line: &str) -> bool {
    let line = line.trim();
    if !line.starts_with('{') || !line.ends_with('}') {
        return false;
    }
    let mut depth: i64 = 0;
    let mut in_string = false;
    let mut escaped = false;
    for (index, c) in line.char_indices() {
        if in_string {
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => in_string = true,
            '{' | '[' => depth += 1,
            '}' | ']' => {
                depth -= 1;
                if depth == 0 && index + 1 != line.len() {
                    return false;
                }
            }
            _ => {}
        }
    }
    depth == 0
}

/// Inflates a gzip body (one or more members), refusing it as soon as the output passes
/// `limit_bytes`: inflation stops there, so a gzip bomb costs at most the limit.
pub fn gunzip_bounded(bytes: &[u8], limit_bytes: usize) -> Result<Vec<u8>, IngestError> {
    let decoder = flate2::read::MultiGzDecoder::new(bytes);
    let limit = u64::try_from(limit_bytes).unwrap_or(u64::MAX).saturating_add(1);
    let mut out = Vec::with_capacity(bytes.len().saturating_mul(4).min(limit_bytes).min(1 << 24));
    decoder.take(limit).read_to_end(&mut out).map_err(|e| IngestError::Gzip(e.to_string()))?;
    if out.len() > limit_bytes {
        return Err(IngestError::TooLarge { limit_bytes });
    }
    Ok(out)
}

/// Decodes one payload of `format`. For [`Format::OtlpJsonLines`] the caller splits the
/// lines; each line is [`Format::OtlpJson`].
pub fn decode(format: Format, bytes: &[u8]) -> Result<Decoded, IngestError> {
    match format {
        Format::OtlpJson | Format::OtlpJsonLines => otlp_json::decode_json(bytes),
        Format::OtlpProtobuf => otlp::decode_protobuf(bytes),
        Format::ZipkinJson => zipkin::decode_zipkin_json(bytes),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        encoder.write_all(data).unwrap();
        encoder.finish().unwrap()
    }

    #[test]
    fn detects_by_content() {
        assert_eq!(detect(b"  {\"resourceSpans\":[]}", None), Some(Format::OtlpJson));
        assert_eq!(detect(b"{\"resourceSpans\":[]}\n{\"resourceSpans\":[]}\n", None), Some(Format::OtlpJsonLines));
        assert_eq!(detect(b"{\"resourceSpans\":[]}\n", Some("x.json")), Some(Format::OtlpJson));
        assert_eq!(detect(b"{\n  \"resourceSpans\": [\n    {\n", None), Some(Format::OtlpJson));
        assert_eq!(detect(b"{\"resourceSpans\":[{\"reso", Some("a.jsonl.gz")), Some(Format::OtlpJsonLines));
        assert_eq!(detect(b"\xef\xbb\xbf[{\"traceId\":", None), Some(Format::ZipkinJson));
        assert_eq!(detect(b"\x0a\x7b\x0a\x10", None), Some(Format::OtlpProtobuf));
        assert_eq!(detect(b"", None), Some(Format::OtlpProtobuf));
        assert_eq!(detect(b"\x12\x00", Some("spans.pb")), Some(Format::OtlpProtobuf));
        assert_eq!(detect(b"hello", None), None);
        assert_eq!(detect(&gzip(b"{}"), Some("a.json.gz")), None);
        assert!(is_gzip(&gzip(b"{}")));
    }

    #[test]
    fn whole_objects_on_a_line() {
        assert!(is_whole_object("{\"a\":\"}{\"}"));
        assert!(!is_whole_object("{\"a\":1}{\"b\":2}"));
        assert!(!is_whole_object("{"));
    }

    #[test]
    fn gunzip_stops_at_the_limit() {
        let data = vec![b'a'; 1 << 20];
        let packed = gzip(&data);
        assert_eq!(gunzip_bounded(&packed, 1 << 20).unwrap(), data);
        let err = gunzip_bounded(&packed, (1 << 20) - 1).unwrap_err();
        assert!(err.is_too_large());
        assert_eq!(err.to_string(), format!("body is larger than {} bytes after decompression", (1 << 20) - 1));
        let mut two = gzip(b"ab");
        two.extend(gzip(b"cd"));
        assert_eq!(gunzip_bounded(&two, 10).unwrap(), b"abcd");
        let err = gunzip_bounded(&packed[..packed.len() / 2], 1 << 21).unwrap_err();
        assert!(err.to_string().starts_with("gzip: "), "{err}");
        assert!(!err.is_too_large());
    }
}
