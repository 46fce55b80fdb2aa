//! Writes small valid inputs into `corpus/<target>/` so each fuzz target starts from
//! real log files, records, batch bodies and manifests: `cargo run --example seed_corpus`
//! (from `fuzz/`). The files come from the engine's own encoders and from a store
//! written through the in-memory file system.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use spanstore_engine::codec::Writer;
use spanstore_engine::fs::{read_all, Fs, MemFs};
use spanstore_engine::log;
use spanstore_engine::manifest::{Manifest, SegmentEntry};
use spanstore_engine::{
    AnyValue, Event, KeyValue, Link, Options, Resource, Scope, Span, SpanBatch, SpanId, SpanKind, StatusCode, Store,
    SyncPolicy, TraceId,
};

fn span(i: u32, width: usize) -> Span {
    let byte = i as u8;
    Span {
        trace_id: TraceId([byte; 16]),
        span_id: SpanId([byte.wrapping_add(1); 8]),
        parent_span_id: (i % 2 == 1).then_some(SpanId([byte.wrapping_add(2); 8])),
        trace_state: if i % 3 == 0 { "k=v".into() } else { String::new() },
        name: format!("GET /api/{}", "x".repeat(width)),
        kind: SpanKind::from_code((i % 6) as u8).unwrap_or_default(),
        start_unix_nano: 1_700_000_000_000_000_000 + u64::from(i) * 1_000,
        duration_ns: u64::from(i) * 37,
        status_code: StatusCode::from_code((i % 3) as u8).unwrap_or_default(),
        status_message: if i % 3 == 2 { "boom".into() } else { String::new() },
        flags: 1,
        resource: Resource {
            attributes: vec![
                KeyValue::new("service.name", format!("svc-{}", i % 2)),
                KeyValue::new("host.id", i64::from(i % 2)),
            ],
            dropped_attributes_count: 0,
            schema_url: String::new(),
        },
        scope: Scope {
            name: "lib".into(),
            version: "1.0".into(),
            attributes: vec![KeyValue::new("scope.attr", true)],
            dropped_attributes_count: 1,
            schema_url: "https://opentelemetry.io/schemas/1.21.0".into(),
        },
        attributes: vec![
            KeyValue::new("http.status_code", 200i64 + i64::from(i)),
            KeyValue::new("ratio", f64::from(i) / 3.0),
            KeyValue::new("payload", AnyValue::Bytes(vec![byte, 0, 255])),
            KeyValue::new(
                "nested",
                AnyValue::Array(vec![
                    AnyValue::Int(1),
                    AnyValue::Map(vec![KeyValue::new("k", "v"), KeyValue::new("e", AnyValue::Empty)]),
                ]),
            ),
        ],
        dropped_attributes_count: 2,
        events: vec![Event {
            time_unix_nano: 1_700_000_000_000_000_500,
            name: "exception".into(),
            attributes: vec![KeyValue::new("exception.type", "E")],
            dropped_attributes_count: 0,
        }],
        dropped_events_count: 0,
        links: if i % 2 == 0 {
            vec![Link {
                trace_id: TraceId([9; 16]),
                span_id: SpanId([8; 8]),
                trace_state: "a=b".into(),
                attributes: vec![KeyValue::new("link.kind", "follows")],
                dropped_attributes_count: 0,
                flags: 1,
            }]
        } else {
            Vec::new()
        },
        dropped_links_count: 3,
    }
}

fn batch(first: u32, count: u32, width: usize) -> SpanBatch {
    let spans: Vec<Span> = (first..first + count).map(|i| span(i, width)).collect();
    SpanBatch::from_spans(&spans)
}

fn write(dir: &Path, name: &str, bytes: &[u8]) {
    std::fs::create_dir_all(dir).expect("create corpus directory");
    std::fs::write(dir.join(name), bytes).expect("write corpus file");
}

/// A store written through `MemFs`: returns its log files and its manifest.
fn store_files(compress: bool, batches: &[SpanBatch]) -> (Vec<Vec<u8>>, Vec<u8>) {
    let fs = MemFs::new();
    let dir = Path::new("/seed");
    let store = Store::open(
        dir,
        Options { fs: Arc::new(fs.clone()), sync: SyncPolicy::None, compress_log: compress, ..Default::default() },
    )
    .expect("open seed store");
    for b in batches {
        store.append(b.clone()).expect("append seed batch");
    }
    store.close().expect("close seed store");
    let mut logs = Vec::new();
    let mut manifest = Vec::new();
    for name in fs.list(dir).expect("list") {
        let bytes = read_all(fs.open(&dir.join(&name)).expect("open").as_ref()).expect("read");
        if log::parse_log_file_name(&name).is_some() {
            logs.push(bytes);
        } else if name.starts_with("MANIFEST-") {
            manifest = bytes;
        }
    }
    (logs, manifest)
}

fn main() {
    let root = PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| "corpus".into()));
    let batches = [batch(0, 1, 0), batch(1, 3, 4), batch(4, 2, 10), SpanBatch::from_spans(&[Span::default()])];
    // A record larger than a block, so it is cut into FIRST, MIDDLE and LAST fragments.
    let big = batch(10, 1, 40_000);

    // segment_open: small segments built from the seed batches.
    for (i, b) in batches.iter().enumerate() {
        let bytes = spanstore_engine::segment::writer::build_segment(&[b], i as u64 + 1, Some((1, 1)));
        write(&root.join("segment_open"), &format!("seed-{i}"), &bytes);
    }
    let all: Vec<&SpanBatch> = batches.iter().collect();
    let bytes = spanstore_engine::segment::writer::build_segment(&all, 9, Some((1, 4)));
    write(&root.join("segment_open"), "seed-all", &bytes);

    // batch_decode: batch bodies.
    for (i, b) in batches.iter().chain([&big]).enumerate() {
        let mut w = Writer::default();
        b.encode(&mut w);
        write(&root.join("batch_decode"), &format!("seed-{i}"), &w.buf);
    }

    // log_record: record payloads, raw and zstd.
    for (i, b) in batches.iter().enumerate() {
        for compress in [false, true] {
            let payload = log::encode_record(i as u64 + 1, b, compress);
            write(&root.join("log_record"), &format!("seed-{i}-{compress}"), &payload);
        }
    }

    // log_scan: whole log files written by a store, and one framed by hand with a
    // multi-block record in it.
    let (raw_logs, manifest) = store_files(false, &batches);
    let (zstd_logs, _) = store_files(true, &batches);
    for (i, bytes) in raw_logs.iter().chain(&zstd_logs).enumerate() {
        write(&root.join("log_scan"), &format!("store-{i}"), bytes);
    }
    let mut multi_block = log::file_header(1).to_vec();
    let mut offset = multi_block.len() as u64;
    for (sequence, b) in [&batches[0], &big, &batches[1]].into_iter().enumerate() {
        let payload = log::encode_record(sequence as u64 + 1, b, false);
        offset = log::frame_record(&mut multi_block, offset, &payload);
    }
    write(&root.join("log_scan"), "multi-block", &multi_block);

    // manifest_decode: the store's own manifest and one naming segments.
    write(&root.join("manifest_decode"), "store", &manifest);
    let with_segments = Manifest {
        number: 3,
        next_file_number: 9,
        log_floor: 4,
        sealed_sequence: 120,
        segments: vec![
            SegmentEntry {
                file_number: 5,
                span_count: 100,
                min_start_unix_nano: 1,
                max_start_unix_nano: 2,
                ..SegmentEntry::default()
            },
            SegmentEntry {
                file_number: 7,
                span_count: 20,
                min_start_unix_nano: 3,
                max_start_unix_nano: 4,
                ..SegmentEntry::default()
            },
        ],
    };
    write(&root.join("manifest_decode"), "segments", &with_segments.encode());

    // store_open: mode byte, then the layout it names (see fuzz_targets/store_open.rs);
    // 4 = recompute checksums, 8 = evict every batch from the memtable.
    let store_open = root.join("store_open");
    let log_file = raw_logs.first().cloned().unwrap_or_default();
    for mode in [0u8, 4, 8] {
        write(&store_open, &format!("log-{mode}"), &[&[mode][..], &log_file].concat());
    }
    write(&store_open, "log-multi-block", &[&[4u8][..], &multi_block].concat());
    for mode in [1u8, 5] {
        write(&store_open, &format!("manifest-{mode}"), &[&[mode][..], &manifest].concat());
    }
    let len = (manifest.len() as u16).to_le_bytes();
    write(&store_open, "manifest-and-log", &[&[6u8][..], &len, &manifest, &log_file].concat());
    let len = (log_file.len() as u16).to_le_bytes();
    let second = zstd_logs.first().cloned().unwrap_or_default();
    write(&store_open, "two-logs", &[&[7u8][..], &len, &log_file, &second].concat());
    // Manifests at the edges of their numbers: regressions for the writer's open (a
    // log floor past the next file number, numbers with none left after them).
    let edges = [
        ("floor-past-next", 1, 1000, 0),
        ("next-max", u64::MAX, 0, 0),
        ("sealed-max", 1, 0, u64::MAX),
        ("sealed-max-less-1", 1, 0, u64::MAX - 1),
    ];
    for (name, next_file_number, log_floor, sealed_sequence) in edges {
        let bytes = Manifest { number: 1, next_file_number, log_floor, sealed_sequence, segments: Vec::new() }.encode();
        write(&root.join("manifest_decode"), name, &bytes);
        write(&store_open, &format!("manifest-{name}"), &[&[5u8][..], &bytes].concat());
    }
    println!("seed corpus written under {}", root.display());
}
