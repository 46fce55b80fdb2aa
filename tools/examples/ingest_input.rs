//! Writes generated serverless spans (`spanstore_workload::Generator`) as an input file
//! for `spanstore ingest`, for benchmarks: OTLP/JSON lines (one ExportTraceServiceRequest
//! per line) or OTLP protobuf requests each preceded by its 4-byte big-endian length (the
//! Collector file exporter's framing), optionally gzip-compressed.
//!
//! ```text
//! cargo run --release -p spanstore --example ingest_input -- jsonl 2000000 1000 /tmp/spans.jsonl
//! cargo run --release -p spanstore --example ingest_input -- pb 2000000 1000 /tmp/spans.pb
//! ```
//! Arguments: format (`jsonl`, `pb`, `jsonl.gz`, `pb.gz`), spans, spans per request, path;
//! then an optional seed (default 1).

use std::io::Write;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [format, spans, per_request, path, rest @ ..] = args.as_slice() else {
        return Err("usage: ingest_input jsonl|pb|jsonl.gz|pb.gz SPANS SPANS_PER_REQUEST PATH [SEED]".into());
    };
    let spans: u64 = spans.parse()?;
    let per_request: u64 = per_request.parse()?;
    let seed: u64 = rest.first().map(|s| s.parse()).transpose()?.unwrap_or(1);
    let file = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(path)?);
    let (kind, gzip) = match format.strip_suffix(".gz") {
        Some(kind) => (kind, true),
        None => (format.as_str(), false),
    };
    let mut out: Box<dyn Write> =
        if gzip { Box::new(flate2::write::GzEncoder::new(file, flate2::Compression::fast())) } else { Box::new(file) };
    let mut generator = spanstore_workload::Generator::new(seed);
    let mut written = 0u64;
    let mut buffer = Vec::new();
    while written < spans {
        let n = per_request.min(spans - written);
        let batch = generator.next_batch(n as usize);
        buffer.clear();
        match kind {
            "jsonl" => {
                spanstore_ingest::otlp_json::encode_json(&batch, &mut buffer);
                buffer.push(b'\n');
            }
            "pb" => {
                let body = spanstore_ingest::otlp::encode_protobuf(&batch);
                buffer.extend_from_slice(&u32::try_from(body.len())?.to_be_bytes());
                buffer.extend_from_slice(&body);
            }
            other => return Err(format!("unknown format {other}").into()),
        }
        out.write_all(&buffer)?;
        written += n;
    }
    out.flush()?;
    drop(out);
    eprintln!("wrote {written} spans to {path}");
    Ok(())
}
