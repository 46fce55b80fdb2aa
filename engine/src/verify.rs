//! `verify` and `inspect`: read every byte of a data directory, read-only, and describe
//! it file by file, naming any damage precisely.

use std::path::{Path, PathBuf};

use crate::error::{EngineError, Result};
use crate::fs::{read_all, Fs};
use crate::log::{self, Damage};
use crate::manifest::{self, Manifest};

/// What kind of file a [`FileReport`] describes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileKind {
    /// A span log file.
    Log,
    /// A manifest version.
    Manifest,
    /// A sealed segment.
    Segment,
    /// The writer's lock file.
    Lock,
    /// A temporary file left by a crash (removed by the next writer).
    Temporary,
    /// Anything else.
    Other,
}

impl FileKind {
    /// Lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            FileKind::Log => "log",
            FileKind::Manifest => "manifest",
            FileKind::Segment => "segment",
            FileKind::Lock => "lock",
            FileKind::Temporary => "temporary",
            FileKind::Other => "other",
        }
    }
}

/// One file of the directory.
#[derive(Clone, Debug)]
pub struct FileReport {
    /// The file.
    pub path: PathBuf,
    /// Its kind.
    pub kind: FileKind,
    /// Its length.
    pub bytes: u64,
    /// Whole records (log files).
    pub records: u64,
    /// Spans in those records (log files).
    pub spans: u64,
    /// Earliest and latest span start (log files), ns.
    pub time_range: Option<(u64, u64)>,
    /// For log files below the manifest's log floor: retired (its spans are sealed);
    /// for segments: not named by the manifest (an orphan the next writer removes).
    pub retired: bool,
    /// For segments: bytes per column and per index.
    pub segment: Option<SegmentStats>,
}

/// Where a segment's bytes go.
#[derive(Clone, Debug, Default)]
pub struct SegmentStats {
    /// (column name, stored bytes of its blocks, distinct values, rows with a value).
    pub columns: Vec<(String, u64, u64, u64)>,
    /// Bytes of dictionaries.
    pub dictionary_bytes: u64,
    /// Bytes of bitmap indexes.
    pub bitmap_bytes: u64,
    /// Bytes of value indexes.
    pub value_index_bytes: u64,
    /// Bytes of the trace bloom filter.
    pub bloom_bytes: u64,
    /// Bytes of the directory and everything else.
    pub other_bytes: u64,
}

/// What `verify` found.
#[derive(Clone, Debug, Default)]
pub struct VerifyReport {
    /// Every file, in name order.
    pub files: Vec<FileReport>,
    /// The manifest in force, if any reads back whole.
    pub manifest: Option<Manifest>,
    /// Damage: checksums that do not match, bad headers, records that do not decode.
    pub damage: Vec<String>,
    /// Notes that are not damage: a torn tail after a crash, stray temporary files.
    pub notes: Vec<String>,
    /// Bytes read.
    pub bytes_read: u64,
}

impl VerifyReport {
    /// True when nothing is damaged.
    pub fn is_clean(&self) -> bool {
        self.damage.is_empty()
    }

    /// Spans in live log records not yet sealed.
    pub fn live_spans(&self) -> u64 {
        self.files.iter().filter(|f| f.kind == FileKind::Log && !f.retired).map(|f| f.spans).sum()
    }

    /// Spans in live segments.
    pub fn sealed_spans(&self) -> u64 {
        self.files.iter().filter(|f| f.kind == FileKind::Segment && !f.retired).map(|f| f.spans).sum()
    }
}

/// Reads every file of the store in `dir` and checks every checksum. Never writes.
pub fn verify(fs: &dyn Fs, dir: &Path) -> Result<VerifyReport> {
    if !fs.dir_exists(dir) {
        return Err(EngineError::NotAStore { path: dir.to_path_buf() });
    }
    let names = fs.list(dir).map_err(|e| EngineError::io(dir, "list directory", e))?;
    let mut report = VerifyReport::default();
    let loaded = manifest::load(fs, dir, &names);
    if loaded.manifest.is_none()
        && loaded.files.is_empty()
        && !names.iter().any(|n| log::parse_log_file_name(n).is_some())
    {
        return Err(EngineError::NotAStore { path: dir.to_path_buf() });
    }
    report.damage.extend(loaded.damaged.iter().map(ToString::to_string));
    let log_floor = loaded.manifest.as_ref().map(|m| m.log_floor).unwrap_or(0);
    let newest_log = names.iter().filter_map(|n| log::parse_log_file_name(n)).max();
    for name in &names {
        let path = dir.join(name);
        let kind = if log::parse_log_file_name(name).is_some() {
            FileKind::Log
        } else if manifest::parse_manifest_file_name(name).is_some() {
            FileKind::Manifest
        } else if crate::segment::parse_segment_file_name(name).is_some() {
            FileKind::Segment
        } else if name == crate::store::LOCK_FILE_NAME {
            FileKind::Lock
        } else if name.ends_with(".tmp") {
            FileKind::Temporary
        } else {
            FileKind::Other
        };
        let bytes = fs.open(&path).and_then(|f| read_all(f.as_ref())).map_err(|e| EngineError::io(&path, "read", e))?;
        report.bytes_read += bytes.len() as u64;
        let mut file = FileReport {
            path: path.clone(),
            kind,
            bytes: bytes.len() as u64,
            records: 0,
            spans: 0,
            time_range: None,
            retired: false,
            segment: None,
        };
        match kind {
            FileKind::Log => {
                let number = log::parse_log_file_name(name).unwrap_or(0);
                file.retired = number < log_floor;
                let sealed = loaded.manifest.as_ref().map(|m| m.sealed_sequence).unwrap_or(0);
                check_log(&path, &bytes, newest_log == Some(number), sealed, &mut file, &mut report);
            }
            FileKind::Manifest => {
                // The newest damaged versions were reported by `load`; older ones are
                // checked here too, since a fallback needs them whole.
                if let Err(err) = Manifest::decode(&path, &bytes) {
                    let text = err.to_string();
                    if !report.damage.contains(&text) {
                        report.damage.push(text);
                    }
                }
            }
            FileKind::Segment => {
                let number = crate::segment::parse_segment_file_name(name).unwrap_or(0);
                let live = loaded.manifest.as_ref().is_some_and(|m| m.segments.iter().any(|s| s.file_number == number));
                file.retired = !live;
                if !live {
                    report.notes.push(format!(
                        "{}: not named by the manifest (left by a crash during sealing or compaction); the next writer removes it",
                        path.display()
                    ));
                }
                check_segment(&path, bytes, &mut file, &mut report, live);
                report.files.push(file);
                continue;
            }
            FileKind::Temporary => report
                .notes
                .push(format!("{}: temporary file left by a crash; the next writer removes it", path.display())),
            FileKind::Lock => {}
            FileKind::Other => report.notes.push(format!("{}: not a spanstore file", path.display())),
        }
        report.files.push(file);
    }
    report.manifest = loaded.manifest;
    Ok(report)
}

fn check_segment(path: &Path, bytes: Vec<u8>, file: &mut FileReport, report: &mut VerifyReport, live: bool) {
    use crate::segment::reader::{column_name, Segment};
    let segment = match Segment::open(path, std::sync::Arc::new(bytes)) {
        Ok(segment) => segment,
        Err(err) => {
            if live {
                report.damage.push(err.to_string());
            } else {
                report.notes.push(format!("orphan segment does not open: {err}"));
            }
            return;
        }
    };
    for problem in segment.verify() {
        if live {
            report.damage.push(problem.to_string());
        } else {
            report.notes.push(format!("orphan segment: {problem}"));
        }
    }
    let directory = segment.directory();
    file.spans = directory.row_count;
    file.records = directory.columns.len() as u64;
    if directory.row_count > 0 {
        file.time_range = Some((directory.min_start_unix_nano, directory.max_start_unix_nano));
    }
    let mut stats = SegmentStats::default();
    let mut accounted = 0u64;
    for column in &directory.columns {
        let bytes: u64 = column.blocks.iter().map(|b| u64::from(b.chunk.len)).sum();
        stats.columns.push((column_name(&column.kind), bytes, column.cardinality, column.present));
        let dictionary = column.dictionary.map(|c| u64::from(c.len)).unwrap_or(0);
        let bitmaps = column.bitmaps.map(|c| u64::from(c.len)).unwrap_or(0);
        let value_index = column.value_index.map(|c| u64::from(c.len)).unwrap_or(0);
        stats.dictionary_bytes += dictionary;
        stats.bitmap_bytes += bitmaps;
        stats.value_index_bytes += value_index;
        accounted += bytes + dictionary + bitmaps + value_index;
    }
    stats.bloom_bytes = u64::from(directory.trace_bloom.len);
    accounted += stats.bloom_bytes;
    stats.other_bytes = file.bytes.saturating_sub(accounted);
    file.segment = Some(stats);
}

fn check_log(path: &Path, bytes: &[u8], newest: bool, sealed: u64, file: &mut FileReport, report: &mut VerifyReport) {
    if let Err(err) = log::check_header(path, bytes) {
        if newest && bytes.len() < log::LOG_HEADER_SIZE {
            report
                .notes
                .push(format!("{err} (torn: a crash before the header was written; nothing in it was acknowledged)"));
        } else {
            report.damage.push(err.to_string());
        }
        return;
    }
    if let Some(err) = log::header_damage(path, bytes) {
        report.damage.push(err.to_string());
    }
    let scan = log::scan(path, bytes);
    report.damage.extend(scan.damage.iter().map(Damage::to_string));
    if scan.torn {
        let at = scan.valid_end;
        if newest {
            report.notes.push(format!(
                "{}: torn tail at byte {at} ({} bytes after the last whole record, left by a crash during a write; the next writer cuts it)",
                path.display(),
                scan.len - at
            ));
        } else {
            // Only the newest file can have been interrupted mid-write.
            report.damage.push(format!(
                "{}: corrupt at byte {at}: {} bytes after the last whole record of a log file that is not the newest",
                path.display(),
                scan.len - at
            ));
        }
    }
    for record in &scan.records {
        match log::decode_record(&record.payload) {
            Ok(decoded) => {
                file.records += 1;
                if decoded.sequence <= sealed {
                    continue;
                }
                file.spans += decoded.batch.len() as u64;
                let starts = decoded.batch.start_column();
                if let (Some(&min), Some(&max)) = (starts.iter().min(), starts.iter().max()) {
                    file.time_range = Some(match file.time_range {
                        Some((a, b)) => (a.min(min), b.max(max)),
                        None => (min, max),
                    });
                }
            }
            Err(err) => report.damage.push(format!(
                "{}: corrupt at byte {}: record does not decode: {err}",
                path.display(),
                record.start
            )),
        }
    }
}
