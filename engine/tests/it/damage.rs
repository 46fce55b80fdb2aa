//! Damaged files: a cut newest log, flipped bits in log records, log headers and the
//! manifest. Each must end in a precise report (file and byte offset) or a clean cut of
//! a torn tail, never in a wrong answer: every span returned is one that was appended,
//! in a whole batch, exactly once.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use spanstore_engine::fs::{Fs, MemFs};
use spanstore_engine::log::{self, Damage, BLOCK_SIZE, FRAGMENT_HEADER_SIZE, LOG_HEADER_SIZE};
use spanstore_engine::manifest::{self, Manifest};
use spanstore_engine::{EngineError, Options, RecoveryReport, Store, SyncPolicy};

use crate::support::{
    batch, batch_numbers, check_batch, check_exactly_once, for_each_seed, log_files, mem_dir_contents, read_snapshot,
    read_snapshot_ids, seeds, Rng, Seen,
};

const DIR: &str = "/data/damaged";

fn dir() -> &'static Path {
    Path::new(DIR)
}

fn options(fs: &MemFs) -> Options {
    let options = Options {
        sync: SyncPolicy::Always,
        log_file_size_bytes_target: 64 << 20,
        memtable_size_bytes_max: 64 << 20,
        compress_log: true,
        // Keep every batch in the log, whose damage these tests are about.
        seal_on_close: false,
        background_maintenance: false,
        ..Options::default()
    };
    Options { fs: Arc::new(fs.clone()), ..options }
}

/// A deep copy of a file system whose every byte was synced.
fn copy(fs: &MemFs) -> MemFs {
    fs.crash(|unsynced| unsynced)
}

/// A store built by a few writer sessions, each with its own log file target.
struct Built {
    disk: MemFs,
    /// Batch number to span count.
    must: BTreeMap<u64, u32>,
    /// Batch numbers in append order.
    order: Vec<u64>,
}

/// `sessions`: (log file size target, batches, compress) of each writer session.
fn build(seed: u64, sessions: &[(u64, usize, bool)]) -> Built {
    let mut rng = Rng::new(seed);
    let disk = MemFs::new();
    let mut must = BTreeMap::new();
    let mut order = Vec::new();
    for &(target, count, compress) in sessions {
        let store = Store::open(
            dir(),
            Options { log_file_size_bytes_target: target, compress_log: compress, ..options(&disk) },
        )
        .unwrap();
        for _ in 0..count {
            let number = order.len() as u64;
            let len = if rng.chance(8) { rng.range(150, 250) } else { rng.range(1, 15) } as u32;
            store.append(batch(number, len)).unwrap();
            must.insert(number, len);
            order.push(number);
        }
        store.close().unwrap();
    }
    Built { disk, must, order }
}

/// Where one record lies in its log file.
#[derive(Clone, Debug)]
struct RecordInfo {
    start: u64,
    end: u64,
    batch: u64,
    /// Byte ranges of its fragments (headers included; block padding excluded).
    fragments: Vec<Range<u64>>,
}

/// The records of a clean log file, with their fragments.
fn layout(fs: &MemFs, path: &Path) -> Vec<RecordInfo> {
    let bytes = fs.contents(path).unwrap();
    let scan = log::scan(path, &bytes);
    assert!(scan.damage.is_empty() && !scan.torn, "{}: not clean", path.display());
    assert_eq!(scan.valid_end, bytes.len() as u64);
    scan.records
        .iter()
        .map(|record| {
            let decoded = log::decode_record(&record.payload).unwrap();
            let (batch, _) = check_batch(&decoded.batch).unwrap();
            let mut fragments = Vec::new();
            let mut pos = record.start as usize;
            while pos < record.end as usize {
                let block_left = BLOCK_SIZE - pos % BLOCK_SIZE;
                if block_left < FRAGMENT_HEADER_SIZE {
                    pos += block_left;
                    continue;
                }
                let len = u16::from_le_bytes([bytes[pos + 4], bytes[pos + 5]]) as usize;
                let end = pos + FRAGMENT_HEADER_SIZE + len;
                fragments.push(pos as u64..end as u64);
                pos = end;
            }
            assert_eq!(pos as u64, record.end);
            RecordInfo { start: record.start, end: record.end, batch, fragments }
        })
        .collect()
}

fn logs(fs: &MemFs) -> Vec<PathBuf> {
    log_files(fs.list(dir()).unwrap(), dir())
}

/// Opens (read-only or as the writer) and reads everything; the batches must be whole,
/// unique, in append order, and all of `must`.
/// Spans are checked field by field by the writer's open, by their ids otherwise.
fn open_and_read(
    fs: &MemFs,
    read_only: bool,
    built: &Built,
    must: &BTreeMap<u64, u32>,
    context: &str,
) -> (Store, Vec<Seen>) {
    let store = if read_only { Store::open_read_only(dir(), options(fs)) } else { Store::open(dir(), options(fs)) }
        .unwrap_or_else(|e| panic!("{context}: open failed: {e}"));
    let read = if read_only { read_snapshot_ids } else { read_snapshot };
    let seen = read(&store.snapshot()).unwrap_or_else(|e| panic!("{context}: {e}"));
    let may: BTreeSet<u64> = built.must.keys().copied().collect();
    check_exactly_once(&seen, must, &may).unwrap_or_else(|e| panic!("{context}: {e}"));
    let numbers = batch_numbers(&seen);
    assert!(numbers.windows(2).all(|w| w[0] < w[1]), "{context}: batches out of append order: {numbers:?}");
    (store, seen)
}

fn all_damage(report: &RecoveryReport) -> impl Iterator<Item = &Damage> {
    report.damage.iter().chain(&report.torn_tails)
}

/// Asserts a damage entry names its file and offset in its message.
fn assert_names_place(damage: &Damage) {
    let message = damage.to_string();
    let place = format!("{}: corrupt at byte {}", damage.path.display(), damage.offset);
    assert!(message.starts_with(&place), "{message}");
}

// ----- a cut newest log file --------------------------------------------------------------

fn check_cut(built: &Built, newest: &Path, records: &[RecordInfo], cut: u64) {
    let context = format!("cut {} at byte {cut}", newest.display());
    let disk = copy(&built.disk);
    disk.truncate(newest, cut).unwrap();
    let in_newest: BTreeSet<u64> = records.iter().map(|r| r.batch).collect();
    let header_whole = cut >= LOG_HEADER_SIZE as u64;
    let kept: Vec<&RecordInfo> = records.iter().filter(|r| header_whole && r.end <= cut).collect();
    let valid_end = kept.last().map(|r| r.end).unwrap_or(LOG_HEADER_SIZE as u64);
    let mut must = built.must.clone();
    must.retain(|b, _| !in_newest.contains(b) || kept.iter().any(|r| r.batch == *b));
    let expect_torn = !header_whole || cut > valid_end;

    let check_report = |report: &RecoveryReport, who: &str| {
        assert!(report.is_clean(), "{context}, {who}: {report:?}");
        assert_eq!(report.torn_tails.len(), usize::from(expect_torn), "{context}, {who}: {report:?}");
        if let Some(torn) = report.torn_tails.first() {
            assert_eq!(torn.path, newest, "{context}, {who}");
            if header_whole {
                assert!(
                    (valid_end..cut).contains(&torn.offset),
                    "{context}, {who}: torn tail at {} outside {valid_end}..{cut}",
                    torn.offset
                );
            } else {
                assert_eq!(torn.offset, 0, "{context}, {who}");
            }
            assert_names_place(torn);
        }
    };

    let (reader, read_only_seen) = open_and_read(&disk, true, built, &must, &format!("{context}, read-only"));
    check_report(reader.recovery_report(), "read-only");
    // Exactly the batches whose records are whole, in order.
    let expected: Vec<u64> = built.order.iter().copied().filter(|b| must.contains_key(b)).collect();
    assert_eq!(batch_numbers(&read_only_seen), expected, "{context}");
    drop(reader);
    assert_eq!(disk.contents(newest).unwrap().len() as u64, cut, "{context}: a read-only open changed the file");

    let (writer, seen) = open_and_read(&disk, false, built, &must, &format!("{context}, writer"));
    check_report(writer.recovery_report(), "writer");
    assert_eq!(seen, read_only_seen, "{context}");
    if header_whole {
        assert_eq!(
            disk.contents(newest).unwrap().len() as u64,
            valid_end,
            "{context}: the writer did not cut the torn tail at the last whole record"
        );
    } else {
        // A file without a whole header never held a record: the writer removes it.
        assert!(disk.contents(newest).is_err(), "{context}: the writer left a log file without a header");
    }
    let number = built.order.len() as u64;
    writer.append(batch(number, 3)).unwrap();
    writer.close().unwrap();
    must.insert(number, 3);
    let mut extended = built.must.clone();
    extended.insert(number, 3);
    let reopened = Built { disk: disk.clone(), must: extended, order: Vec::new() };
    let (store, _) = open_and_read(&disk, false, &reopened, &must, &format!("{context}, second open"));
    let report = store.recovery_report();
    assert!(
        report.is_clean() && report.torn_tails.is_empty(),
        "{context}: the open after the writer's cut still finds damage: {report:?}"
    );
}

#[test]
fn a_cut_newest_log_keeps_exactly_its_whole_records() {
    // Several small files from a first session, then one large newest file holding
    // records that span several blocks.
    let built = build(11, &[(8 << 10, 24, true), (64 << 20, 30, false)]);
    let files = logs(&built.disk);
    assert!(files.len() >= 3, "{files:?}");
    let newest = files.last().unwrap().clone();
    let records = layout(&built.disk, &newest);
    assert!(records.len() >= 25);
    assert!(records.iter().any(|r| r.fragments.len() >= 3), "no record spans three blocks");
    let len = built.disk.contents(&newest).unwrap().len() as u64;
    let mut cuts = BTreeSet::new();
    // Exactly at every record edge and next to it, at fragment edges of long records,
    // inside the header, and at random places.
    for record in &records {
        for cut in [record.start + 1, record.end - 1, record.end] {
            cuts.insert(cut);
        }
        for fragment in record.fragments.iter().skip(1) {
            cuts.insert(fragment.start);
            cuts.insert(fragment.start + 3);
        }
    }
    cuts.extend([0, 1, 8, LOG_HEADER_SIZE as u64 - 1, LOG_HEADER_SIZE as u64]);
    let mut rng = Rng::new(5);
    for _ in 0..25 {
        cuts.insert(rng.below(len));
    }
    cuts.retain(|&cut| cut < len);
    for cut in cuts {
        check_cut(&built, &newest, &records, cut);
    }
}

// ----- flipped bits in log records ------------------------------------------------------------

/// Flips one bit at `offset` of `file` and checks both kinds of open.
fn check_flip(built: &Built, file: &Path, newest: bool, offset: u64, bit: u8) {
    let context = format!("bit {bit} of byte {offset} of {} flipped", file.display());
    let records = layout(&built.disk, file);
    let disk = copy(&built.disk);
    disk.flip_bit(file, offset as usize, bit).unwrap();
    let before = mem_dir_contents(&disk, dir());

    // What may be lost: a damaged header costs the whole file; a damaged fragment costs
    // its record and the records that start later in the same block (the reader resumes
    // at the next block). Reserved header bytes and block padding are not covered.
    let block_end = (offset / BLOCK_SIZE as u64 + 1) * BLOCK_SIZE as u64;
    let victim = records.iter().find(|r| r.fragments.iter().any(|f| f.contains(&offset)));
    let header_damaged = offset < 6;
    let may_lose: BTreeSet<u64> = if header_damaged {
        records.iter().map(|r| r.batch).collect()
    } else {
        records
            .iter()
            .filter(|r| {
                victim.is_some_and(|v| v.batch == r.batch)
                    || (victim.is_some() && r.start > offset && r.start < block_end)
            })
            .map(|r| r.batch)
            .collect()
    };
    let mut must = built.must.clone();
    must.retain(|b, _| !may_lose.contains(b));

    let check_report = |report: &RecoveryReport, seen: &[Seen], who: &str| {
        let seen_numbers: BTreeSet<u64> = seen.iter().map(|s| s.batch).collect();
        if header_damaged {
            assert!(
                records.iter().all(|r| !seen_numbers.contains(&r.batch)),
                "{context}, {who}: records of a file with a bad header were read"
            );
            let damage = report
                .damage
                .iter()
                .find(|d| d.path == file)
                .unwrap_or_else(|| panic!("{context}, {who}: no damage reported: {report:?}"));
            assert_eq!(damage.offset, 0, "{context}, {who}");
            assert!(damage.reason.contains("magic") || damage.reason.contains("version"), "{context}, {who}: {damage}");
            assert_names_place(damage);
        } else if let Some(victim) = victim {
            assert!(!seen_numbers.contains(&victim.batch), "{context}, {who}: a record with a flipped bit was read");
            let entries: Vec<&Damage> = if newest {
                all_damage(report).collect()
            } else {
                assert!(
                    report.torn_tails.is_empty(),
                    "{context}, {who}: damage in an older file taken for a torn tail: \
                     {report:?}"
                );
                report.damage.iter().collect()
            };
            let precise = entries.iter().find(|d| d.path == file && (victim.start..=offset).contains(&d.offset));
            assert!(
                precise.is_some(),
                "{context}, {who}: no damage reported between the record start {} and \
                 the flipped byte: {report:?}",
                victim.start
            );
            for damage in all_damage(report) {
                assert_names_place(damage);
            }
        } else {
            // Block padding or reserved header bytes: nothing is lost.
            assert_eq!(seen.len(), built.must.len(), "{context}, {who}: {report:?}");
        }
    };

    let (reader, read_only_seen) = open_and_read(&disk, true, built, &must, &format!("{context}, read-only"));
    check_report(reader.recovery_report(), &read_only_seen, "read-only");
    drop(reader);
    assert!(mem_dir_contents(&disk, dir()) == before, "{context}: a read-only open changed a file");

    let (writer, seen) = open_and_read(&disk, false, built, &must, &format!("{context}, writer"));
    let report = writer.recovery_report().clone();
    check_report(&report, &seen, "writer");
    assert_eq!(seen, read_only_seen, "{context}: the writer's cut lost a record");
    writer.close().unwrap();
    let after = mem_dir_contents(&disk, dir());
    for (name, bytes) in &before {
        let path = dir().join(name);
        if log::parse_log_file_name(name).is_none() {
            continue;
        }
        let now = &after[name];
        if path == file && newest && !report.torn_tails.is_empty() {
            // Cut at the end of the last whole record.
            let valid_end = records
                .iter()
                .filter(|r| seen.iter().any(|s| s.batch == r.batch))
                .map(|r| r.end)
                .max()
                .unwrap_or(LOG_HEADER_SIZE as u64);
            assert_eq!(now.len() as u64, valid_end, "{context}: cut");
            assert_eq!(&bytes[..now.len()], &now[..], "{context}: cut");
        } else {
            assert!(bytes == now, "{context}: the writer changed {name}");
        }
    }
    // A later open finds the same and no torn tail.
    let (store, again) = open_and_read(&disk, false, built, &must, &format!("{context}, again"));
    assert_eq!(again, seen, "{context}");
    assert!(store.recovery_report().torn_tails.is_empty(), "{context}");
}

fn flip_cases(seed: u64, newest: bool) {
    let built = build(21, &[(8 << 10, 30, false), (64 << 20, 25, seed.is_multiple_of(2))]);
    let files = logs(&built.disk);
    let mut rng = Rng::new(seed);
    let file =
        if newest { files.last().unwrap().clone() } else { files[rng.below(files.len() as u64 - 1) as usize].clone() };
    let len = built.disk.contents(&file).unwrap().len() as u64;
    let offset = if rng.chance(10) { rng.below(LOG_HEADER_SIZE as u64) } else { rng.below(len) };
    check_flip(&built, &file, newest, offset, rng.below(8) as u8);
}

#[test]
fn a_flipped_bit_in_an_older_log_costs_only_the_batches_it_touches() {
    for_each_seed("damage::a_flipped_bit_in_an_older_log_costs_only_the_batches_it_touches", &seeds(100, 40), |seed| {
        flip_cases(seed, false)
    });
}

#[test]
fn a_flipped_bit_in_the_newest_log_is_reported_or_cut_never_read() {
    for_each_seed("damage::a_flipped_bit_in_the_newest_log_is_reported_or_cut_never_read", &seeds(200, 40), |seed| {
        flip_cases(seed, true)
    });
}

#[test]
fn a_damaged_log_header_is_reported_at_byte_zero() {
    let built = build(31, &[(8 << 10, 20, true), (64 << 20, 10, false)]);
    let files = logs(&built.disk);
    let middle = files[files.len() / 2].clone();
    let newest = files.last().unwrap().clone();
    let mut rng = Rng::new(9);
    for (file, is_newest) in [(&middle, false), (&newest, true)] {
        // Every byte of the magic and the version, a random bit of each.
        for offset in 0..6 {
            check_flip(&built, file, is_newest, offset, rng.below(8) as u8);
        }
    }
}

// ----- damage found after open ------------------------------------------------------------------

#[test]
fn damage_found_reading_an_evicted_batch_names_the_file_and_offset() {
    let disk = MemFs::new();
    let store = Store::open(dir(), Options { memtable_size_bytes_max: 16 << 10, ..options(&disk) }).unwrap();
    for number in 0..60 {
        store.append(batch(number, 10)).unwrap();
    }
    let file = logs(&disk).pop().unwrap();
    let records = layout(&disk, &file);
    let victim = &records[10];
    let fragment = victim.fragments[0].clone();
    let offset = fragment.start + FRAGMENT_HEADER_SIZE as u64 + 5;
    disk.flip_bit(&file, offset as usize, 2).unwrap();
    let snapshot = store.snapshot();
    let mut errors = Vec::new();
    for (index, item) in snapshot.batches().enumerate() {
        match item {
            Ok(item) => {
                let (number, len) = check_batch(&item.batch).unwrap();
                assert_eq!((number, len), (index as u64, 10));
            }
            Err(err) => errors.push((index, err)),
        }
    }
    assert_eq!(errors.len(), 1, "{errors:?}");
    let (index, err) = &errors[0];
    assert_eq!(*index, 10);
    match err {
        EngineError::Corrupt { path, offset: at, .. } => {
            assert_eq!(*path, file);
            assert!((victim.start..=offset).contains(at), "{err}");
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
    let message = err.to_string();
    assert!(message.starts_with(&format!("{}: corrupt at byte ", file.display())), "{message}");
    // A query over everything fails with the same precise error rather than answering
    // without the batch.
    let err = snapshot.spans().unwrap_err();
    assert_eq!(err.to_string(), message);
}

// ----- the manifest -----------------------------------------------------------------------------

fn manifest_paths(fs: &MemFs) -> Vec<(u64, PathBuf)> {
    let mut paths: Vec<(u64, PathBuf)> = fs
        .list(dir())
        .unwrap()
        .into_iter()
        .filter_map(|name| manifest::parse_manifest_file_name(&name).map(|n| (n, dir().join(name))))
        .collect();
    paths.sort();
    paths
}

/// Flips a bit of the newest manifest; opens must report it (naming the file) and find
/// every batch, through the previous version or a rebuild.
fn check_manifest_flip(disk: &MemFs, built: &Built, seed: u64) {
    let mut rng = Rng::new(seed);
    let manifests = manifest_paths(disk);
    let (newest_number, newest) = manifests.last().unwrap().clone();
    let len = disk.contents(&newest).unwrap().len();
    let offset = rng.below(len as u64) as usize;
    disk.flip_bit(&newest, offset, rng.below(8) as u8).unwrap();
    let context = format!("byte {offset} of {} flipped", newest.display());
    let before = mem_dir_contents(disk, dir());
    let check = |report: &RecoveryReport, who: &str| {
        assert_eq!(report.manifest_damage.len(), 1, "{context}, {who}: {report:?}");
        let message = &report.manifest_damage[0];
        assert!(message.starts_with(&format!("{}: ", newest.display())), "{context}, {who}: {message}");
        assert!(
            message.contains("corrupt at byte") || message.contains("format version"),
            "{context}, {who}: {message}"
        );
        assert!(report.damage.is_empty(), "{context}, {who}: {report:?}");
    };
    let (reader, seen) = open_and_read(disk, true, built, &built.must, &context);
    check(reader.recovery_report(), "read-only");
    assert_eq!(batch_numbers(&seen), built.order);
    drop(reader);
    assert!(mem_dir_contents(disk, dir()) == before, "{context}: read-only open wrote");
    let (writer, seen) = open_and_read(disk, false, built, &built.must, &context);
    check(writer.recovery_report(), "writer");
    assert_eq!(batch_numbers(&seen), built.order);
    // The writer records a new, good version.
    assert_eq!(writer.manifest().number, newest_number + 1, "{context}");
    writer.close().unwrap();
    let (store, _) = open_and_read(disk, false, built, &built.must, &context);
    assert!(store.recovery_report().manifest_damage.is_empty(), "{context}: {:?}", store.recovery_report());
}

#[test]
fn a_damaged_manifest_falls_back_to_its_previous_version() {
    for_each_seed("damage::a_damaged_manifest_falls_back_to_its_previous_version", &seeds(300, 12), |seed| {
        let built = build(41, &[(8 << 10, 12, true)]);
        let disk = copy(&built.disk);
        // Write a second version, as a writer that retires log files would.
        let manifests = manifest_paths(&disk);
        let (_, first) = manifests.last().unwrap();
        let mut next = Manifest::decode(first, &disk.contents(first).unwrap()).unwrap();
        next.number += 1;
        manifest::store(&disk, dir(), &next, &manifests).unwrap();
        assert_eq!(manifest_paths(&disk).len(), 2);
        check_manifest_flip(&disk, &built, seed);
    });
}

#[test]
fn a_store_whose_only_manifest_is_damaged_rebuilds_it_from_the_log() {
    for_each_seed("damage::a_store_whose_only_manifest_is_damaged_rebuilds_it_from_the_log", &seeds(400, 12), |seed| {
        let built = build(51, &[(8 << 10, 12, true), (64 << 20, 3, false)]);
        let disk = copy(&built.disk);
        assert_eq!(manifest_paths(&disk).len(), 1);
        check_manifest_flip(&disk, &built, seed);
    });
}
