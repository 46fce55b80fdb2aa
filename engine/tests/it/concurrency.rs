//! Concurrency: appender threads share one `Store` while reader threads take snapshots
//! and a read-only opener in another process (this test binary, re-executed) opens the
//! directory. Every view must hold whole batches only, with sequences forming a prefix
//! of the log that includes everything acknowledged before the view was taken.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use spanstore_engine::{Options, Store, SyncPolicy};

use crate::support::{batch, child_test, read_snapshot, read_snapshot_ids, Rng, Seen};

const RO_DIR_ENV: &str = "SPANSTORE_IT_READ_ONLY_DIR";
const APPENDERS: u64 = 8;
const READERS: u64 = 2;
const READ_ONLY_OPENS: usize = 3;

/// Sequence number to (batch number, span count) of every acknowledged append.
type Acked = BTreeMap<u64, (u64, u32)>;

/// Checks a view of the store: sequences are exactly 1..=n (a prefix of the log, with
/// no gap), every batch is whole (checked by `read_snapshot`), and every batch that was
/// acknowledged before the view was taken is in it under its own sequence number.
///
/// Batches sealed into segments (sequence 0, first in `seen`) are the oldest sequences,
/// 1 to their count.
fn check_view(seen: &[Seen], acked_before: &Acked) -> Result<(), String> {
    let sealed = seen.iter().take_while(|s| s.sequence == 0).count();
    let sealed_batches: BTreeMap<u64, u32> = seen[..sealed].iter().map(|s| (s.batch, s.len)).collect();
    for (index, s) in seen.iter().enumerate().skip(sealed) {
        if s.sequence != index as u64 + 1 {
            return Err(format!("sequence {} at position {index}: not a prefix of the log", s.sequence));
        }
    }
    for (&sequence, &(number, len)) in acked_before {
        if sequence as usize <= sealed {
            if sealed_batches.get(&number) != Some(&len) {
                return Err(format!("batch {number} (sequence {sequence}) is not among the sealed batches"));
            }
            continue;
        }
        match seen.get(sequence as usize - 1) {
            Some(s) if s.batch == number && s.len == len => {}
            Some(s) => {
                return Err(format!(
                    "sequence {sequence} holds batch {} of {} spans, acknowledged as batch \
                     {number} of {len}",
                    s.batch, s.len
                ))
            }
            None => {
                return Err(format!(
                    "batch {number} (sequence {sequence}) was acknowledged before the view \
                     was taken but is not in it ({} batches)",
                    seen.len()
                ))
            }
        }
    }
    Ok(())
}

/// The child: opens the directory read-only a few times while the parent appends, and
/// prints `RO <damage> <torn> <sequence>:<batch>:<len>,...` per open, or `RO-FAIL`.
/// A no-op in a normal test run, where the variable is not set.
#[test]
fn child_read_only_opener() {
    let Ok(dir) = std::env::var(RO_DIR_ENV) else {
        return;
    };
    // The test harness has printed "test ... " without a newline.
    println!();
    for _ in 0..READ_ONLY_OPENS {
        let store = match Store::open_read_only(&dir, Options::default()) {
            Ok(store) => store,
            Err(err) => {
                println!("RO-FAIL open: {err}");
                return;
            }
        };
        let report = store.recovery_report();
        match read_snapshot(&store.snapshot()) {
            Ok(seen) => {
                let views: Vec<String> = seen.iter().map(|s| format!("{}:{}:{}", s.sequence, s.batch, s.len)).collect();
                println!(
                    "RO {} {} {}",
                    report.damage.len() + report.manifest_damage.len(),
                    report.torn_tails.len(),
                    views.join(",")
                );
            }
            Err(err) => {
                println!("RO-FAIL read: {err}");
                return;
            }
        }
        drop(store);
        std::thread::sleep(Duration::from_millis(15));
    }
}

#[test]
fn appenders_readers_and_a_read_only_process_see_consistent_whole_batches() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(
        Store::open(
            dir.path(),
            Options {
                sync: SyncPolicy::Always,
                log_file_size_bytes_target: 128 << 10,
                // Small, so readers also read evicted batches back from the log while
                // appenders write it.
                memtable_size_bytes_max: 256 << 10,
                ..Options::default()
            },
        )
        .unwrap(),
    );
    let acked: Arc<Mutex<Acked>> = Arc::default();
    let child_done = Arc::new(AtomicBool::new(false));
    let appenders_done = Arc::new(AtomicBool::new(false));
    let appended = Arc::new(AtomicU64::new(0));

    let appenders: Vec<_> = (0..APPENDERS)
        .map(|thread| {
            let (store, acked, child_done, appended) =
                (store.clone(), acked.clone(), child_done.clone(), appended.clone());
            std::thread::spawn(move || {
                let mut rng = Rng::new(thread);
                let mut index = 0u64;
                // At least 60 batches each, and on until the read-only process is done,
                // so it always opens while appends go on.
                while index < 60 || (!child_done.load(Ordering::Acquire) && index < 20_000) {
                    let number = thread * 100_000 + index;
                    let len = rng.range(1, 10) as u32;
                    let receipt = store.append(batch(number, len)).unwrap();
                    let sequence = receipt.sequence.unwrap();
                    acked.lock().unwrap().insert(sequence, (number, len));
                    appended.fetch_add(1, Ordering::Relaxed);
                    index += 1;
                }
            })
        })
        .collect();

    let readers: Vec<_> = (0..READERS)
        .map(|_| {
            let (store, acked, appenders_done) = (store.clone(), acked.clone(), appenders_done.clone());
            std::thread::spawn(move || {
                let mut snapshots = 0u64;
                let mut first = None;
                loop {
                    let finished = appenders_done.load(Ordering::Acquire);
                    let before = acked.lock().unwrap().clone();
                    let snapshot = store.snapshot();
                    let seen = read_snapshot_ids(&snapshot).unwrap();
                    check_view(&seen, &before).unwrap();
                    // Nothing in the view contradicts what appenders were told since.
                    let after = acked.lock().unwrap().clone();
                    for s in seen.iter().filter(|s| s.sequence != 0) {
                        if let Some(&(number, len)) = after.get(&s.sequence) {
                            assert_eq!((s.batch, s.len), (number, len));
                        }
                    }
                    if first.is_none() {
                        first = Some((snapshot, seen));
                    }
                    snapshots += 1;
                    if finished {
                        break;
                    }
                }
                // A snapshot is immutable: the first one still holds exactly what it did.
                let (snapshot, seen) = first.unwrap();
                assert_eq!(read_snapshot_ids(&snapshot).unwrap(), seen);
                read_snapshot(&snapshot).unwrap();
                snapshots
            })
        })
        .collect();

    // Start the read-only process once appends are well under way.
    let deadline = Instant::now() + Duration::from_secs(60);
    while appended.load(Ordering::Relaxed) < 100 {
        assert!(Instant::now() < deadline, "appends do not progress");
        std::thread::sleep(Duration::from_millis(2));
    }
    let acked_before_child = acked.lock().unwrap().clone();
    let mut child = child_test("concurrency::child_read_only_opener")
        .env(RO_DIR_ENV, dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let lines: Vec<String> = BufReader::new(child.stdout.take().unwrap()).lines().map(|l| l.unwrap()).collect();
    let status = child.wait().unwrap();
    let appended_while_child_ran = appended.load(Ordering::Relaxed);
    child_done.store(true, Ordering::Release);
    for appender in appenders {
        appender.join().unwrap();
    }
    appenders_done.store(true, Ordering::Release);
    let snapshots: u64 = readers.into_iter().map(|r| r.join().unwrap()).sum();
    assert!(status.success(), "read-only process failed: {status}");

    let acked = acked.lock().unwrap().clone();
    assert!(
        appended_while_child_ran > acked_before_child.len() as u64,
        "no append happened while the read-only process ran"
    );
    assert!(snapshots >= READERS * 2, "only {snapshots} snapshots taken");

    // The read-only process saw whole batches forming a prefix of the log that holds
    // everything acknowledged before it started, each as acknowledged.
    if let Some(failure) = lines.iter().find(|l| l.contains("RO-FAIL")) {
        panic!("the read-only process failed: {failure}");
    }
    let views: Vec<&String> = lines.iter().filter(|l| l.starts_with("RO ")).collect();
    assert_eq!(
        views.len(),
        READ_ONLY_OPENS,
        "read-only process output: {:?}",
        lines.iter().map(|l| &l[..l.len().min(100)]).collect::<Vec<_>>()
    );
    let mut previous = 0;
    for view in views {
        let fields: Vec<&str> = view.splitn(4, ' ').collect();
        assert_eq!(fields[1], "0", "the read-only process found damage: {}", &view[..view.len().min(100)]);
        let seen: Vec<Seen> = fields
            .get(3)
            .map(|list| {
                list.split(',')
                    .filter(|item| !item.is_empty())
                    .map(|item| {
                        let parts: Vec<u64> = item.split(':').map(|p| p.parse().unwrap()).collect();
                        Seen { sequence: parts[0], batch: parts[1], len: parts[2] as u32 }
                    })
                    .collect()
            })
            .unwrap_or_default();
        check_view(&seen, &acked_before_child).unwrap();
        for s in seen.iter().filter(|s| s.sequence != 0) {
            assert_eq!(
                acked.get(&s.sequence),
                Some(&(s.batch, s.len)),
                "the read-only process saw sequence {} differently",
                s.sequence
            );
        }
        assert!(seen.len() >= previous, "a later open saw less");
        previous = seen.len();
    }

    // In the end, everything is there.
    let seen = read_snapshot(&store.snapshot()).unwrap();
    check_view(&seen, &acked).unwrap();
    assert_eq!(seen.len(), acked.len());
    Arc::try_unwrap(store).ok().unwrap().close().unwrap();
}
