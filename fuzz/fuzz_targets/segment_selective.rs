//! Fuzz target: row-selective block decoding on arbitrary bytes. The first bytes pick
//! the storage, the block's row count, the present count and the rows to read.
#![no_main]

use libfuzzer_sys::fuzz_target;
use spanstore_engine::segment::selective::decode_rows;
use spanstore_engine::segment::Storage;

fuzz_target!(|data: &[u8]| {
    let [selector, rows_byte, present_byte, picks, rest @ ..] = data else { return };
    let storage = match selector & 3 {
        0 => Storage::Ints,
        1 => Storage::Dict,
        2 => Storage::Bools,
        _ => Storage::Doubles,
    };
    let row_count = usize::from(*rows_byte) * 33;
    let present = usize::from(*present_byte) * 33 + usize::from(selector >> 2);
    let picks = usize::from(*picks).min(rest.len());
    let rows: Vec<u32> = rest.iter().take(picks).map(|&b| u32::from(b) * 31).collect();
    let block = rest.get(picks..).unwrap_or_default();
    if let Ok(Some(values)) = decode_rows(block, row_count, present, storage, &rows) {
        assert_eq!(values.len(), rows.len());
    }
});
