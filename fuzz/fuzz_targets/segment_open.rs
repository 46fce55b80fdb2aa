//! Fuzz target: arbitrary bytes as a segment file. Opening, verifying, looking up
//! traces and values and materializing rows give `Ok` or `Err`, never a panic.
#![no_main]

use std::path::Path;
use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use spanstore_engine::segment::reader::Segment;
use spanstore_engine::segment::{ColumnKind, Storage};
use spanstore_engine::TraceId;

fuzz_target!(|data: &[u8]| {
    let Ok(segment) = Segment::open(Path::new("fuzz.sseg"), Arc::new(data.to_vec())) else {
        return;
    };
    let _ = segment.verify();
    let rows: Vec<u32> = (0..segment.row_count().min(64) as u32).collect();
    let _ = segment.spans(&rows);
    let _ = segment.trace_rows(&TraceId([7; 16]));
    // A trace id the segment holds passes the bloom filter, so the trace index (format
    // 3) or the zone maps are read too.
    if let Ok(first) = segment.spans(&[0]) {
        if let Some(span) = first.first() {
            let _ = segment.trace_rows(&span.trace_id);
        }
    }
    for (index, column) in segment.directory().columns.iter().enumerate() {
        let _ = segment.bitmaps(index);
        if matches!(column.kind, ColumnKind::Attr { .. }) && matches!(column.storage, Storage::Dict | Storage::Strings) {
            let _ = segment.lookup_str(index, "x");
        }
    }
});
