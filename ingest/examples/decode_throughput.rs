//! Single-thread decode throughput of the OTLP protobuf and OTLP/JSON decoders over the
//! seeded workload: `cargo run --release -p spanstore-ingest --example decode_throughput`.
//!
//! Encodes `BATCHES` requests of `SPANS_PER_BATCH` workload spans each, then times the
//! decoders over all of them `ROUNDS` times and prints the median spans per second.
//! With an argument `protobuf` or `json` it only decodes that format (for `perf`).

use std::time::Instant;

use spanstore_ingest::{otlp, otlp_json};

const BATCHES: usize = 50;
const SPANS_PER_BATCH: usize = 1000;
const ROUNDS: usize = 5;

fn median_rate(payloads: &[Vec<u8>], decode: impl Fn(&[u8]) -> usize) -> f64 {
    let mut rates: Vec<f64> = (0..ROUNDS)
        .map(|_| {
            let started = Instant::now();
            let spans: usize = payloads.iter().map(|p| decode(p)).sum();
            spans as f64 / started.elapsed().as_secs_f64()
        })
        .collect();
    rates.sort_by(f64::total_cmp);
    rates[rates.len() / 2]
}

fn main() {
    let mut generator = spanstore_workload::Generator::new(7);
    let batches: Vec<_> = (0..BATCHES).map(|_| generator.next_batch(SPANS_PER_BATCH)).collect();
    let protobuf: Vec<Vec<u8>> = batches.iter().map(otlp::encode_protobuf).collect();
    let json: Vec<Vec<u8>> = batches
        .iter()
        .map(|b| {
            let mut out = Vec::new();
            otlp_json::encode_json(b, &mut out);
            out
        })
        .collect();
    let phase = std::env::args().nth(1).unwrap_or_default();
    if phase == "setup" {
        return;
    }
    if phase == "protobuf" || phase == "json" {
        // One phase only, for profilers: decode every payload ROUNDS times.
        for _ in 0..ROUNDS {
            for (p, j) in protobuf.iter().zip(&json) {
                let spans = if phase == "protobuf" {
                    otlp::decode_protobuf(p).map(|d| d.batch.len())
                } else {
                    otlp_json::decode_json(j).map(|d| d.batch.len())
                };
                assert_eq!(spans.ok(), Some(SPANS_PER_BATCH));
            }
        }
        return;
    }
    let bytes = |p: &[Vec<u8>]| p.iter().map(Vec::len).sum::<usize>() / (BATCHES * SPANS_PER_BATCH);
    println!("workload: {BATCHES} requests of {SPANS_PER_BATCH} spans, median of {ROUNDS} rounds, one thread");
    let rate = median_rate(&protobuf, |p| otlp::decode_protobuf(p).map(|d| d.batch.len()).unwrap_or(0));
    println!("otlp protobuf decode: {rate:>12.0} spans/s ({} bytes/span)", bytes(&protobuf));
    let rate = median_rate(&json, |p| otlp_json::decode_json(p).map(|d| d.batch.len()).unwrap_or(0));
    println!("otlp/json decode:     {rate:>12.0} spans/s ({} bytes/span)", bytes(&json));
    let started = Instant::now();
    let mut out = Vec::new();
    for batch in &batches {
        out.clear();
        otlp_json::encode_json(batch, &mut out);
    }
    let rate = (BATCHES * SPANS_PER_BATCH) as f64 / started.elapsed().as_secs_f64();
    println!("otlp/json encode:     {rate:>12.0} spans/s");
    let started = Instant::now();
    for batch in &batches {
        let _ = otlp::encode_protobuf(batch);
    }
    let rate = (BATCHES * SPANS_PER_BATCH) as f64 / started.elapsed().as_secs_f64();
    println!("otlp protobuf encode: {rate:>12.0} spans/s");
}
