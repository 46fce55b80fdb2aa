//! Unit tests of log framing, scanning and record encoding.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use super::*;

fn payload(seed: u8, len: usize) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
}

fn file_with(payloads: &[Vec<u8>]) -> Vec<u8> {
    let mut bytes = file_header(1).to_vec();
    let mut offset = bytes.len() as u64;
    for p in payloads {
        let mut framed = Vec::new();
        offset = frame_record(&mut framed, offset, p);
        bytes.extend_from_slice(&framed);
    }
    assert_eq!(offset, bytes.len() as u64);
    bytes
}

#[test]
fn records_of_every_size_round_trip_through_framing() {
    let payloads: Vec<Vec<u8>> = [1usize, 7, 100, BLOCK_SIZE - 30, BLOCK_SIZE, 3 * BLOCK_SIZE + 5, 10]
        .iter()
        .enumerate()
        .map(|(i, &len)| payload(i as u8, len))
        .collect();
    let bytes = file_with(&payloads);
    let scan = scan(Path::new("f"), &bytes);
    assert!(scan.damage.is_empty() && scan.tail_damage.is_empty(), "{:?}", scan.damage);
    let got: Vec<Vec<u8>> = scan.records.into_iter().map(|r| r.payload).collect();
    assert_eq!(got, payloads);
    assert_eq!(scan.valid_end, bytes.len() as u64);
}

#[test]
fn a_damaged_middle_record_costs_only_itself() {
    let payloads: Vec<Vec<u8>> = (0..40).map(|i| payload(i, 3000)).collect();
    let bytes = file_with(&payloads);
    // Damage a byte inside the 20th record's payload.
    let clean = scan(Path::new("f"), &bytes);
    let victim = &clean.records[20];
    let mut damaged = bytes.clone();
    damaged[victim.start as usize + 100] ^= 0x10;
    let scan = scan(Path::new("f"), &damaged);
    // The damage is reported where the record starts; when the record continues into
    // the next block, its orphaned later fragment is reported too.
    assert!(!scan.damage.is_empty() && scan.damage.len() <= 2, "{:?}", scan.damage);
    assert_eq!(scan.damage[0].offset, victim.start);
    // Records sharing the damaged block after the victim are lost too (the reader
    // resumes at the next block); every other record survives.
    let survivors: Vec<&Vec<u8>> = scan.records.iter().map(|r| &r.payload).collect();
    assert!(survivors.len() >= 40 - 1 - BLOCK_SIZE / 3000);
    assert!(!survivors.contains(&&payloads[20]));
    assert!(survivors.contains(&&payloads[39]));
    assert!(survivors.contains(&&payloads[0]));
}

#[test]
fn a_flipped_length_bit_reads_as_damage_not_as_a_short_record() {
    let payloads: Vec<Vec<u8>> = (0..3).map(|i| payload(i, 500)).collect();
    let bytes = file_with(&payloads);
    let start = scan(Path::new("f"), &bytes).records[1].start as usize;
    let mut damaged = bytes.clone();
    damaged[start + 4] ^= 0x01; // lowest bit of the length
    let scan = scan(Path::new("f"), &damaged);
    assert_eq!(scan.records.len(), 1);
    assert!(!scan.damage.is_empty() || !scan.tail_damage.is_empty());
}

#[test]
fn truncation_anywhere_keeps_exactly_the_whole_records_before_it() {
    let payloads: Vec<Vec<u8>> = (0..12).map(|i| payload(i, 7000 + usize::from(i) * 997)).collect();
    let bytes = file_with(&payloads);
    let full = scan(Path::new("f"), &bytes);
    for len in (LOG_HEADER_SIZE..bytes.len()).step_by(61).chain(full.records.iter().map(|r| r.end as usize)) {
        let scan = scan(Path::new("f"), &bytes[..len]);
        let expected = full.records.iter().filter(|r| r.end as usize <= len).count();
        assert_eq!(scan.records.len(), expected, "cut at {len}");
        assert!(scan.damage.is_empty(), "cut at {len}: {:?}", scan.damage);
        assert!(scan.valid_end as usize <= len);
    }
}

#[test]
fn every_single_bit_flip_is_detected_or_harmless() {
    let payloads: Vec<Vec<u8>> = (0..3).map(|i| payload(i, 40)).collect();
    let bytes = file_with(&payloads);
    for bit in (LOG_HEADER_SIZE * 8)..(bytes.len() * 8) {
        let mut damaged = bytes.clone();
        damaged[bit / 8] ^= 1 << (bit % 8);
        let scan = scan(Path::new("f"), &damaged);
        // Never a wrong answer: every record found is one that was written.
        for record in &scan.records {
            assert!(payloads.contains(&record.payload), "bit {bit} produced a wrong record");
        }
        assert!(scan.records.len() < 3, "bit {bit} went unnoticed");
        assert!(!scan.damage.is_empty() || !scan.tail_damage.is_empty());
    }
}

#[test]
fn header_checks_name_file_and_problem() {
    let mut bytes = file_header(9).to_vec();
    assert_eq!(check_header(Path::new("l"), &bytes).unwrap(), 9);
    bytes[4] = 2;
    let err = check_header(Path::new("l"), &bytes).unwrap_err();
    assert_eq!(err.to_string(), "l: format version 2, this build reads up to 1");
    bytes[0] = b'X';
    let err = check_header(Path::new("l"), &bytes).unwrap_err();
    assert!(err.to_string().starts_with("l: corrupt at byte 0: bad magic"), "{err}");
    let err = check_header(Path::new("l"), &bytes[..3]).unwrap_err();
    assert!(err.to_string().starts_with("l: corrupt at byte 0"), "{err}");
    // Reserved bytes and the file number are checked too: every header bit matters.
    let mut bytes = file_header(9).to_vec();
    bytes[6] = 1;
    assert_eq!(check_header(Path::new("l"), &bytes).unwrap(), 9);
    let err = header_damage(Path::new("l"), &bytes).unwrap();
    assert_eq!(err.to_string(), "l: corrupt at byte 6: reserved header bytes hold 1, expected 0");
    let bytes = file_header(9);
    let name = log_file_name(10);
    assert!(header_damage(Path::new(&log_file_name(9)), &bytes).is_none());
    let err = header_damage(Path::new(&name), &bytes).unwrap();
    assert_eq!(err.to_string(), format!("{name}: corrupt at byte 8: header names log file 9, the file name says 10"));
}

#[test]
fn file_names_round_trip() {
    assert_eq!(parse_log_file_name(&log_file_name(42)), Some(42));
    assert_eq!(parse_log_file_name("log-x.sslog"), None);
    assert_eq!(parse_log_file_name("MANIFEST-1"), None);
}

proptest::proptest! {
    #[test]
    fn arbitrary_bytes_never_panic_the_scanner(tail in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..3000)) {
        let mut bytes = file_header(1).to_vec();
        bytes.extend_from_slice(&tail);
        let _ = scan(Path::new("f"), &bytes);
        let _ = decode_record(&tail);
    }
}
