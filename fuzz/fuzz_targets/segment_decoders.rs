//! Fuzz target: the segment's column decoders and the paged value index on arbitrary
//! bytes; the first byte picks the decoder and the value count.
#![no_main]

use libfuzzer_sys::fuzz_target;
use spanstore_engine::codec::Reader;
use spanstore_engine::segment::encoding::{decode_bools, decode_ints, decode_strings, unpack};
use spanstore_engine::segment::value_index::ValueIndex;
use spanstore_engine::segment::Directory;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else { return };
    let count = usize::from(selector >> 3) * 37;
    let mut r = Reader::new(rest);
    match selector & 7 {
        0 => drop(decode_ints(&mut r, count)),
        1 => drop(decode_strings(&mut r, count)),
        2 => {
            drop(decode_bools(&mut r, count));
            drop(unpack(&mut Reader::new(rest), count, selector % 65));
        }
        3 => drop(Directory::decode(rest)),
        _ => {
            // `count` doubles as the block count and the probe hash.
            if let Ok(index) = ValueIndex::parse(rest, count) {
                drop(index.validate(count));
                drop(index.candidate_blocks((count as u32).wrapping_mul(0x9e37_79b9)));
            }
        }
    }
});
