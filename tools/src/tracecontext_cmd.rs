//! `spanstore traceparent` and `spanstore tracestate`: check one W3C Trace Context header
//! and print what it says as one JSON object; exit 1 when it is invalid.

use std::io::{self, Write};

use serde::Serialize;
use spanstore_ingest::tracecontext::{TraceParent, TraceState};

use crate::CommandResult;

/// The header argument of both commands.
#[derive(clap::Args, Debug)]
pub(crate) struct HeaderArgs {
    /// The header value. A value that starts with '-' goes after `--`
    /// (`spanstore traceparent -- -00-...`).
    #[arg(value_name = "HEADER", allow_hyphen_values = true)]
    pub(crate) header: String,
}

#[derive(Serialize)]
struct ValidTraceParent {
    valid: bool,
    version: String,
    trace_id: String,
    parent_id: String,
    flags: String,
    sampled: bool,
}

#[derive(Serialize)]
struct ValidTraceState<'a> {
    valid: bool,
    members: &'a [(String, String)],
}

#[derive(Serialize)]
struct Invalid {
    valid: bool,
    error: String,
}

/// `spanstore traceparent HEADER`.
pub(crate) fn traceparent(header: &str, out: &mut impl Write) -> CommandResult {
    match TraceParent::parse(header) {
        Ok(parsed) => {
            let answer = ValidTraceParent {
                valid: true,
                version: format!("{:02x}", parsed.version),
                trace_id: parsed.trace_id.to_hex(),
                parent_id: parsed.parent_id.to_hex(),
                flags: format!("{:02x}", parsed.flags),
                sampled: parsed.sampled(),
            };
            print_json(out, &answer)?;
            Ok(0)
        }
        Err(error) => {
            print_json(out, &Invalid { valid: false, error: error.to_string() })?;
            Ok(1)
        }
    }
}

/// `spanstore tracestate HEADER`.
pub(crate) fn tracestate(header: &str, out: &mut impl Write) -> CommandResult {
    match TraceState::parse(header) {
        Ok(parsed) => {
            print_json(out, &ValidTraceState { valid: true, members: &parsed.members })?;
            Ok(0)
        }
        Err(error) => {
            print_json(out, &Invalid { valid: false, error: error.to_string() })?;
            Ok(1)
        }
    }
}

/// One line of JSON with a space after every ':' and ',' (`{"valid": true, ...}`), the
/// way the commands' documentation shows it.
fn print_json(out: &mut impl Write, value: &impl Serialize) -> io::Result<()> {
    let mut line = Vec::new();
    value.serialize(&mut serde_json::Serializer::with_formatter(&mut line, Spaced)).map_err(io::Error::other)?;
    line.push(b'\n');
    out.write_all(&line)
}

/// serde_json's compact output with `": "` and `", "` as separators.
struct Spaced;

impl serde_json::ser::Formatter for Spaced {
    fn begin_array_value<W: ?Sized + Write>(&mut self, writer: &mut W, first: bool) -> io::Result<()> {
        if first {
            Ok(())
        } else {
            writer.write_all(b", ")
        }
    }

    fn begin_object_key<W: ?Sized + Write>(&mut self, writer: &mut W, first: bool) -> io::Result<()> {
        if first {
            Ok(())
        } else {
            writer.write_all(b", ")
        }
    }

    fn begin_object_value<W: ?Sized + Write>(&mut self, writer: &mut W) -> io::Result<()> {
        writer.write_all(b": ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(command: fn(&str, &mut Vec<u8>) -> CommandResult, header: &str) -> (i32, String) {
        let mut out = Vec::new();
        let code = command(header, &mut out).unwrap();
        (code, String::from_utf8(out).unwrap())
    }

    #[test]
    fn prints_one_spaced_json_object() {
        assert_eq!(
            run(traceparent, "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
            (
                0,
                "{\"valid\": true, \"version\": \"00\", \"trace_id\": \"4bf92f3577b34da6a3ce929d0e0e4736\", \
                 \"parent_id\": \"00f067aa0ba902b7\", \"flags\": \"01\", \"sampled\": true}\n"
                    .to_string()
            )
        );
        assert_eq!(
            run(tracestate, "rojo=00f067aa0ba902b7, congo=t61rcWkgMzE"),
            (
                0,
                "{\"valid\": true, \"members\": [[\"rojo\", \"00f067aa0ba902b7\"], [\"congo\", \"t61rcWkgMzE\"]]}\n"
                    .to_string()
            )
        );
        assert_eq!(run(tracestate, ""), (0, "{\"valid\": true, \"members\": []}\n".to_string()));
        assert_eq!(
            run(tracestate, "a=\"q\""),
            (0, "{\"valid\": true, \"members\": [[\"a\", \"\\\"q\\\"\"]]}\n".to_string())
        );
        let (code, text) = run(traceparent, "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
        assert_eq!(code, 1);
        assert_eq!(text, "{\"valid\": false, \"error\": \"traceparent at position 0: version ff is invalid\"}\n");
    }
}
