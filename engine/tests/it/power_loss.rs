//! Power loss at random moments, simulated with `MemFs`: random appends (with log
//! rotation and records that span several blocks), then a crash at a random file
//! operation that keeps a random prefix of the unsynced bytes; reopen, append more, crash
//! again. Every acknowledged batch must come back exactly once and whole, and nothing
//! that was never appended may appear.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use spanstore_engine::fs::{Fs, MemFs};
use spanstore_engine::{Options, Store, SyncPolicy};

use crate::support::{
    batch, batch_numbers, batches_of, check_exactly_once, for_each_seed, read_snapshot, read_snapshot_ids, seeds,
    torn_length, CrashFs, Rng, Seen,
};

const DIR: &str = "/data/spanstore";

fn random_options(rng: &mut Rng, fs: Arc<dyn Fs>) -> Options {
    let options = Options {
        sync: SyncPolicy::Always,
        log_file_size_bytes_target: rng.range(4096, 24 << 10),
        memtable_size_bytes_max: if rng.chance(30) { 32 << 10 } else { 64 << 20 },
        compress_log: rng.chance(50),
        // Half the sessions seal the memtable into a segment when they close (or are
        // dropped), so power is also lost while sealing and retiring logs.
        seal_on_close: rng.chance(50),
        // No background thread: its file operations would make a seed's crash point
        // depend on timing.
        background_maintenance: false,
        ..Options::default()
    };
    Options { fs, ..options }
}

/// Mostly small batches; now and then an empty one (which writes nothing) or one large
/// enough that its record spans several 32 KiB blocks.
fn random_len(rng: &mut Rng) -> u32 {
    match rng.below(25) {
        0 => 0,
        1 => rng.range(150, 300) as u32,
        _ => rng.range(1, 12) as u32,
    }
}

/// Opens the store on a crashed disk and checks what it recovered: every acknowledged
/// batch exactly once, whole, nothing unknown, and no damage (a crash leaves at most a
/// torn tail). Returns what it holds. Spans are checked by their ids, or field by field
/// with `every_field` (the last open of a run).
fn check_recovered(
    store: &Store,
    must: &BTreeMap<u64, u32>,
    may: &BTreeSet<u64>,
    context: &str,
    every_field: bool,
) -> Vec<Seen> {
    let report = store.recovery_report();
    assert!(report.is_clean(), "{context}: a crash must leave no damage, only a torn tail: {report:?}");
    let read = if every_field { read_snapshot } else { read_snapshot_ids };
    let seen = read(&store.snapshot()).unwrap_or_else(|e| panic!("{context}: {e}"));
    check_exactly_once(&seen, must, may).unwrap_or_else(|e| panic!("{context}: {e}"));
    seen
}

fn run_sequential(seed: u64) {
    let mut rng = Rng::new(seed);
    let dir = Path::new(DIR);
    let mut disk = MemFs::new();
    let mut must = BTreeMap::new();
    let mut may = BTreeSet::new();
    let mut next = 0u64;
    let rounds = rng.range(2, 5);
    for round in 0..rounds {
        let crash_at = rng.range(1, 150);
        let fs = CrashFs::new(disk.clone(), crash_at, rng.next_u64());
        let options = random_options(&mut rng, Arc::new(fs.clone()));
        let context = format!("round {round}, crash at operation {crash_at}");
        match Store::open(dir, options) {
            Ok(store) => {
                let seen = check_recovered(&store, &must, &may, &context, false);
                let numbers = batch_numbers(&seen);
                assert!(numbers.windows(2).all(|w| w[0] < w[1]), "{context}: out of order {numbers:?}");
                for _ in 0..rng.range(1, 80) {
                    let len = random_len(&mut rng);
                    let number = next;
                    next += 1;
                    match store.append(batch(number, len)) {
                        Ok(receipt) => {
                            assert_eq!(receipt.span_count, len as usize);
                            assert_eq!(receipt.sequence.is_some(), len > 0);
                            if len > 0 {
                                must.insert(number, len);
                            }
                        }
                        Err(err) => {
                            assert!(fs.crashed(), "{context}: append failed: {err}");
                            may.insert(number);
                            break;
                        }
                    }
                }
                if !fs.crashed() && rng.chance(30) {
                    // Closing seals, which writes too: power may be lost during it.
                    if let Err(err) = store.close() {
                        assert!(fs.crashed(), "{context}: close failed: {err}");
                    }
                }
            }
            Err(err) => assert!(fs.crashed(), "{context}: open failed: {err}"),
        }
        disk = fs.image();
    }
    let options = Options { fs: Arc::new(disk.clone()), ..random_options(&mut rng, Arc::new(disk.clone())) };
    // A read-only open sees the same as the writer, and the writer's cut leaves nothing
    // torn for the next open.
    let reader = Store::open_read_only(dir, options.clone()).unwrap();
    let read_only_seen = check_recovered(&reader, &must, &may, "read-only after the last crash", false);
    let store = Store::open(dir, options.clone()).unwrap();
    let seen = check_recovered(&store, &must, &may, "after the last crash", true);
    assert_eq!(batches_of(&seen), batches_of(&read_only_seen));
    let numbers = batch_numbers(&seen);
    assert!(numbers.windows(2).all(|w| w[0] < w[1]), "out of order {numbers:?}");
    store.close().unwrap();
    let store = Store::open(dir, options).unwrap();
    assert!(
        store.recovery_report().torn_tails.is_empty(),
        "a torn tail survived the writer's open: {:?}",
        store.recovery_report()
    );
    let again = check_recovered(&store, &must, &may, "second reopen", false);
    assert_eq!(batches_of(&again), batches_of(&seen));
}

#[test]
fn acknowledged_batches_survive_power_loss_at_any_file_operation() {
    for_each_seed(
        "power_loss::acknowledged_batches_survive_power_loss_at_any_file_operation",
        &seeds(1, 50),
        run_sequential,
    );
}

fn run_concurrent(seed: u64) {
    const THREADS: u64 = 4;
    let mut rng = Rng::new(seed);
    let dir = Path::new(DIR);
    let mut disk = MemFs::new();
    let must = Arc::new(Mutex::new(BTreeMap::new()));
    let may = Arc::new(Mutex::new(BTreeSet::new()));
    let next = Arc::new(AtomicU64::new(0));
    for round in 0..rng.range(2, 4) {
        let crash_at = rng.range(1, 250);
        let fs = CrashFs::new(disk.clone(), crash_at, rng.next_u64());
        let options = random_options(&mut rng, Arc::new(fs.clone()));
        let context = format!("round {round}, crash at operation {crash_at}");
        let store = match Store::open(dir, options) {
            Ok(store) => Arc::new(store),
            Err(err) => {
                assert!(fs.crashed(), "{context}: open failed: {err}");
                disk = fs.image();
                continue;
            }
        };
        {
            let must = must.lock().unwrap();
            let may = may.lock().unwrap();
            check_recovered(&store, &must, &may, &context, false);
        }
        let threads: Vec<_> = (0..THREADS)
            .map(|thread| {
                let (store, must, may, next) = (store.clone(), must.clone(), may.clone(), next.clone());
                let fs = fs.clone();
                let mut rng = Rng::new(seed ^ (thread << 32) ^ round);
                let context = context.clone();
                std::thread::spawn(move || {
                    let mut mine = Vec::new();
                    for _ in 0..rng.range(5, 40) {
                        let len = random_len(&mut rng).max(1);
                        let number = next.fetch_add(1, Ordering::Relaxed);
                        match store.append(batch(number, len)) {
                            Ok(_) => {
                                must.lock().unwrap().insert(number, len);
                                mine.push(number);
                            }
                            Err(err) => {
                                assert!(fs.crashed(), "{context}: append failed: {err}");
                                may.lock().unwrap().insert(number);
                                break;
                            }
                        }
                    }
                    mine
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        drop(store);
        disk = fs.image();
    }
    let store = Store::open(dir, Options { fs: Arc::new(disk.clone()), ..Options::default() }).unwrap();
    check_recovered(&store, &must.lock().unwrap(), &may.lock().unwrap(), "after the last crash", true);
}

#[test]
fn concurrent_appenders_lose_nothing_acknowledged_to_power_loss() {
    for_each_seed(
        "power_loss::concurrent_appenders_lose_nothing_acknowledged_to_power_loss",
        &seeds(1_000, 15),
        run_concurrent,
    );
}

/// Under the relaxed sync policies an acknowledged append may be lost, but not once
/// `flush` returned: flush makes everything appended before it durable, log rotation
/// and new log files included.
#[test]
fn flush_makes_appends_durable_under_every_sync_policy() {
    let policies = [SyncPolicy::None, SyncPolicy::Interval(Duration::from_secs(3600))];
    for (case, policy) in policies.into_iter().enumerate() {
        for_each_seed(
            "power_loss::flush_makes_appends_durable_under_every_sync_policy",
            &seeds(2_000 + case as u64 * 100, 10),
            |seed| {
                let mut rng = Rng::new(seed);
                let disk = MemFs::new();
                let options = Options {
                    sync: policy,
                    log_file_size_bytes_target: 4096,
                    fs: Arc::new(disk.clone()),
                    ..Options::default()
                };
                let store = Store::open(DIR, options.clone()).unwrap();
                let mut must = BTreeMap::new();
                let mut may = BTreeSet::new();
                let mut number = 0;
                for _ in 0..rng.range(1, 60) {
                    let len = rng.range(1, 10) as u32;
                    store.append(batch(number, len)).unwrap();
                    must.insert(number, len);
                    number += 1;
                }
                store.flush().unwrap();
                for _ in 0..rng.range(0, 10) {
                    store.append(batch(number, 2)).unwrap();
                    may.insert(number);
                    number += 1;
                }
                let crashed = disk.crash(|unsynced| torn_length(&mut rng, unsynced));
                drop(store);
                let store = Store::open(DIR, Options { fs: Arc::new(crashed), ..options }).unwrap();
                let context = format!("{policy:?}: after power loss");
                check_recovered(&store, &must, &may, &context, true);
            },
        );
    }
}
