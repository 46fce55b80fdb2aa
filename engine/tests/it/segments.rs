//! Sealing, compaction and retention through the `Store`: spans move from the log into
//! segments without being lost or doubled, and come back out equal.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use spanstore_engine::fs::{Fs, MemFs};
use spanstore_engine::{Options, Span, Store};

use crate::support::{self, Rng};

fn options(fs: &MemFs) -> Options {
    Options {
        fs: Arc::new(fs.clone()),
        background_maintenance: false,
        log_file_size_bytes_target: 8192,
        compaction_rows_target: 1000,
        ..Options::default()
    }
}

fn sorted(mut spans: Vec<Span>) -> Vec<Span> {
    spanstore_engine::segment::sort_in_segment_order(&mut spans);
    spans
}

#[test]
fn sealing_moves_spans_into_segments_and_retires_logs() {
    let fs = MemFs::new();
    let dir = std::path::Path::new("/data");
    let store = Store::open(dir, options(&fs)).unwrap();
    let mut want = Vec::new();
    for b in 0..20u64 {
        want.extend(support::spans(b, 30));
        store.append(support::batch(b, 30)).unwrap();
    }
    let entry = store.seal_now().unwrap().unwrap();
    assert_eq!(entry.span_count, 600);
    assert_eq!(entry.min_sequence, 1);
    assert_eq!(entry.max_sequence, 20);
    let snapshot = store.snapshot();
    assert_eq!(snapshot.span_count(), 600);
    assert_eq!(snapshot.segments().len(), 1);
    assert_eq!(snapshot.batch_count(), 0);
    assert_eq!(sorted(snapshot.spans().unwrap()), sorted(want.clone()));
    // Every log file below the active one is retired.
    let manifest = store.manifest();
    let logs: Vec<String> = fs.list(dir).unwrap().into_iter().filter(|n| n.ends_with(".sslog")).collect();
    assert_eq!(logs.len(), 1, "{logs:?}");
    assert_eq!(manifest.sealed_sequence, 20);

    // More appends land in the memtable beside the segment; a trace spans both.
    want.extend(support::spans(20, 10));
    store.append(support::batch(20, 10)).unwrap();
    assert_eq!(store.snapshot().span_count(), 610);
    let probe = &want[3];
    let trace = store.trace(probe.trace_id).unwrap();
    assert!(trace.contains(probe));
    store.close().unwrap();

    // Reopen: everything is sealed on close, read-only sees the same.
    let reader = Store::open_read_only(dir, options(&fs)).unwrap();
    assert_eq!(reader.snapshot().segments().len(), 2);
    assert_eq!(sorted(reader.snapshot().spans().unwrap()), sorted(want));
}

#[test]
fn compaction_merges_small_segments_and_queries_see_the_same_spans() {
    let fs = MemFs::new();
    let dir = std::path::Path::new("/data");
    let store = Store::open(dir, options(&fs)).unwrap();
    let mut want = Vec::new();
    for b in 0..6u64 {
        want.extend(support::spans(b, 50));
        store.append(support::batch(b, 50)).unwrap();
        store.seal_now().unwrap();
    }
    assert_eq!(store.snapshot().segments().len(), 6);
    let before = store.snapshot();
    let report = store.compact_now().unwrap();
    assert!(!report.compacted.is_empty());
    let after = store.snapshot();
    assert!(after.segments().len() < 6);
    // The old snapshot still reads its (now removed) segments.
    assert_eq!(sorted(before.spans().unwrap()), sorted(want.clone()));
    assert_eq!(sorted(after.spans().unwrap()), sorted(want.clone()));
    let segment_files = fs.list(dir).unwrap().into_iter().filter(|n| n.ends_with(".sseg")).count();
    assert_eq!(segment_files, after.segments().len());
    drop(store);
    let store = Store::open(dir, options(&fs)).unwrap();
    assert_eq!(sorted(store.snapshot().spans().unwrap()), sorted(want));
}

#[test]
fn retention_drops_whole_old_segments_only() {
    let fs = MemFs::new();
    let dir = std::path::Path::new("/data");
    let store = Store::open(dir, Options { retention: Some(Duration::from_secs(3600)), ..options(&fs) }).unwrap();
    store.append(support::batch(1, 10)).unwrap();
    store.seal_now().unwrap();
    let (_, newest) = store.snapshot().time_range().unwrap();
    let newest = SystemTime::UNIX_EPOCH + Duration::from_nanos(newest);
    assert!(store.apply_retention(newest + Duration::from_secs(60)).unwrap().is_empty());
    let dropped = store.apply_retention(newest + Duration::from_secs(7200)).unwrap();
    assert_eq!(dropped.len(), 1);
    assert_eq!(store.snapshot().span_count(), 0);
    assert!(fs.list(dir).unwrap().iter().all(|n| !n.ends_with(".sseg")));
}

#[test]
fn power_loss_during_sealing_and_compaction_neither_loses_nor_doubles() {
    for seed in support::seeds(500, 30) {
        let mut rng = Rng::new(seed);
        let fs = MemFs::new();
        let dir = std::path::Path::new("/data");
        let mut acked: Vec<u64> = Vec::new();
        {
            let store = Store::open(dir, options(&fs)).unwrap();
            for b in 0..rng.range(3, 12) {
                store.append(support::batch(b, rng.range(1, 40) as u32)).unwrap();
                acked.push(b);
                if rng.chance(40) {
                    store.seal_now().unwrap();
                }
                if rng.chance(20) {
                    store.compact_now().unwrap();
                }
            }
            // Crash at a random moment: what was durable survives, with a torn prefix
            // of what was not.
            let image = fs.crash(|n| support::torn_length(&mut rng, n));
            std::mem::forget(store);
            let store = Store::open(dir, options(&image)).unwrap();
            let spans = store.snapshot().spans().unwrap();
            let mut seen: Vec<u64> = spans.iter().filter_map(support::identify).map(|(b, _, _)| b).collect();
            seen.sort();
            seen.dedup();
            assert_eq!(seen, acked, "seed {seed}: batches after the crash");
            let mut ids: Vec<_> = spans.iter().map(|s| s.span_id).collect();
            let total = ids.len();
            ids.sort();
            ids.dedup();
            assert_eq!(ids.len(), total, "seed {seed}: a span was doubled");
            // No orphan or temporary file is left, and every file is accounted for.
            let names = image.list(dir).unwrap();
            assert!(names.iter().all(|n| !n.ends_with(".tmp")), "seed {seed}: {names:?}");
            let manifest = store.manifest();
            let segment_files = names.iter().filter(|n| n.ends_with(".sseg")).count();
            assert_eq!(segment_files, manifest.segments.len(), "seed {seed}: orphan segments in {names:?}");
        }
    }
}

/// Power is lost at every possible file operation of a run that appends, seals and
/// compacts: after reopening, every acknowledged batch is there exactly once, and no
/// orphan or temporary file survives the writer's open.
#[test]
fn power_loss_at_every_operation_of_sealing_and_compaction() {
    use crate::support::CrashFs;
    let dir = std::path::Path::new("/data");
    let run = |fs: &dyn Fn() -> Arc<dyn Fs>, acked: &mut Vec<u64>| {
        let Ok(store) = Store::open(dir, Options { fs: fs(), ..options(&MemFs::new()) }) else {
            return;
        };
        for b in 0..8u64 {
            match store.append(support::batch(b, 20 + b as u32)) {
                Ok(_) => acked.push(b),
                Err(_) => return,
            }
            if b % 2 == 1 && store.seal_now().is_err() {
                return;
            }
            if b % 4 == 3 && store.compact_now().is_err() {
                return;
            }
        }
        let _ = store.close();
    };
    // Count the operations of a run without a crash.
    let mut crash_at = 1u64;
    loop {
        let crash = CrashFs::new(MemFs::new(), crash_at, crash_at);
        let fs_for_run = crash.clone();
        let mut acked = Vec::new();
        run(&|| Arc::new(fs_for_run.clone()) as Arc<dyn Fs>, &mut acked);
        let finished = !crash.crashed();
        let image = crash.image();
        let store = Store::open(dir, options(&image)).unwrap_or_else(|e| panic!("crash at {crash_at}: reopen: {e}"));
        let spans = store.snapshot().spans().unwrap_or_else(|e| panic!("crash at {crash_at}: {e}"));
        let mut seen: Vec<u64> = spans.iter().filter_map(support::identify).map(|(b, _, _)| b).collect();
        let total = spans.len();
        let mut ids: Vec<_> = spans.iter().map(|s| (s.trace_id, s.span_id)).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), total, "crash at {crash_at}: a span was doubled");
        seen.sort();
        seen.dedup();
        for b in &acked {
            assert!(seen.contains(b), "crash at {crash_at}: acknowledged batch {b} lost");
        }
        // A batch not acknowledged may survive (its write reached the disk before the
        // power went), but only whole.
        for b in &seen {
            let count = spans.iter().filter(|s| support::identify(s).map(|x| x.0) == Some(*b)).count();
            assert_eq!(count as u64, 20 + b, "crash at {crash_at}: batch {b} not whole");
        }
        let names = image.list(dir).unwrap();
        assert!(names.iter().all(|n| !n.ends_with(".tmp")), "crash at {crash_at}: {names:?}");
        let live = store.manifest().segments.len();
        assert_eq!(names.iter().filter(|n| n.ends_with(".sseg")).count(), live, "crash at {crash_at}: {names:?}");
        drop(store);
        if finished {
            assert!(crash_at > 20, "the run did only {crash_at} operations");
            break;
        }
        crash_at += 1;
    }
}

/// Queries read a snapshot as parts: sealed segments and in-memory segments of the
/// memtable, together holding every span exactly once.
#[test]
fn snapshot_parts_cover_sealed_and_memtable_spans_exactly_once() {
    let fs = MemFs::new();
    let dir = std::path::Path::new("/data");
    let store = Store::open(dir, options(&fs)).unwrap();
    let mut want = Vec::new();
    for b in 0..4u64 {
        want.extend(support::spans(b, 100));
        store.append(support::batch(b, 100)).unwrap();
    }
    store.seal_now().unwrap();
    // Enough memtable spans for more than one in-memory chunk.
    for b in 4..100u64 {
        want.extend(support::spans(b, 100));
        store.append(support::batch(b, 100)).unwrap();
    }
    let snapshot = store.snapshot();
    let parts = snapshot.parts().unwrap();
    assert!(parts[0].is_sealed());
    assert!(parts.iter().filter(|p| !p.is_sealed()).count() >= 2);
    let mut got = Vec::new();
    for part in &parts {
        let rows: Vec<u32> = (0..part.segment().row_count() as u32).collect();
        got.extend(part.segment().spans(&rows).unwrap());
    }
    assert_eq!(sorted(got), sorted(want));
    // The complete memtable chunks are cached: a second call returns the same objects.
    let again = snapshot.parts().unwrap();
    let first_mem = parts.iter().position(|p| !p.is_sealed()).unwrap();
    assert!(std::ptr::eq(parts[first_mem].segment(), again[first_mem].segment()));
}

#[test]
fn a_segment_of_a_newer_format_version_refuses_the_open_instead_of_hiding_its_spans() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path();
    let options = Options { background_maintenance: false, ..Options::default() };
    let store = Store::open(dir, options.clone()).unwrap();
    store.append(support::batch(0, 30)).unwrap();
    store.seal_now().unwrap().unwrap();
    store.close().unwrap();
    let name = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .find(|n| n.ends_with(".sseg"))
        .unwrap();
    let path = dir.join(&name);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[4..6].copy_from_slice(&99u16.to_le_bytes());
    std::fs::write(&path, &bytes).unwrap();
    for result in
        [Store::open_read_only(dir, options.clone()).map(|_| ()), Store::open(dir, options.clone()).map(|_| ())]
    {
        let err = result.unwrap_err();
        assert!(matches!(err, spanstore_engine::EngineError::UnsupportedVersion { .. }), "{err}");
    }
    // Nothing was removed or rewritten: the file is still there as it was.
    assert_eq!(std::fs::read(&path).unwrap(), bytes);
}
