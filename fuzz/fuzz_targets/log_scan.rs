//! Fuzz target: arbitrary bytes as a whole log file.
//!
//! `log::check_header`, then `log::scan`, then `log::decode_record` on every record
//! found. Must never panic; where a record decodes, its batch must validate, read back
//! in full and read back the same through `log::read_record` at its location. The scan
//! itself must be consistent: records in order inside the file, a torn tail only after
//! the last whole record, and cutting a torn tail must keep every record.
#![no_main]

use std::io;
use std::path::Path;

use libfuzzer_sys::fuzz_target;
use spanstore_engine::fs::ReadFile;
use spanstore_engine::log::{self, writer::LogLocation};

/// The fuzz input as a file `read_record` can read at offsets.
struct SliceFile<'a>(&'a [u8]);

impl ReadFile for SliceFile<'_> {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        let start = usize::try_from(offset).unwrap_or(usize::MAX).min(self.0.len());
        let available = &self.0[start..];
        let n = available.len().min(buf.len());
        buf[..n].copy_from_slice(&available[..n]);
        Ok(n)
    }

    fn len(&self) -> io::Result<u64> {
        Ok(self.0.len() as u64)
    }
}

fuzz_target!(|data: &[u8]| {
    let path = Path::new("log-0000000001.sslog");
    let Ok(file_number) = log::check_header(path, data) else {
        return;
    };
    let scan = log::scan(path, data);

    assert_eq!(scan.len, data.len() as u64);
    assert!(scan.valid_end <= scan.len);
    let mut previous_end = log::LOG_HEADER_SIZE as u64;
    for record in &scan.records {
        assert!(record.start >= previous_end, "records overlap or go backwards");
        assert!(record.start < record.end && record.end <= scan.len);
        previous_end = record.end;
    }
    assert_eq!(scan.valid_end, previous_end.min(scan.len));
    assert!(scan.tail_damage.iter().all(|d| d.offset >= scan.valid_end));
    if !scan.torn && scan.damage.is_empty() {
        assert_eq!(scan.valid_end, scan.len, "unexplained bytes after the last record");
    }

    // What a writer does with a torn tail: cut it. Every record must survive the cut,
    // and the cut file must have no tail left.
    if scan.torn {
        let valid_end = usize::try_from(scan.valid_end).unwrap();
        let cut = log::scan(path, &data[..valid_end]);
        assert!(!cut.torn && cut.tail_damage.is_empty());
        let before: Vec<_> = scan.records.iter().map(|r| (r.start, r.end, &r.payload)).collect();
        let after: Vec<_> = cut.records.iter().map(|r| (r.start, r.end, &r.payload)).collect();
        assert_eq!(before, after, "cutting the torn tail lost a record");
    }

    let file = SliceFile(data);
    for record in &scan.records {
        let decoded = log::decode_record(&record.payload);
        let location = LogLocation { file_number, start: record.start, end: record.end };
        let reread = log::read_record(&file, path, location);
        match (decoded, reread) {
            (Ok(decoded), Ok(reread)) => {
                decoded.batch.validate().unwrap();
                let spans = decoded.batch.to_spans();
                assert_eq!(spans.len(), decoded.batch.len());
                assert_eq!(decoded.sequence, reread.sequence);
                assert_eq!(decoded.batch, reread.batch);
            }
            (Err(_), Err(_)) => {}
            (decoded, reread) => panic!(
                "scan and read_record disagree at {}..{}: {:?} vs {:?}",
                record.start,
                record.end,
                decoded.map(|r| r.sequence),
                reread.map(|r| r.sequence)
            ),
        }
    }
});
