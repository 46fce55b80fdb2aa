//! kill -9: a child process (this test binary, re-executed) appends batches with
//! `SyncPolicy::Always` and prints a line per acknowledged batch; the parent SIGKILLs it
//! at a random moment, reopens the directory and checks that every acknowledged batch
//! is there exactly once and whole. The same directory is reused across kills, so
//! recovery also runs over logs that earlier recoveries cut.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::Stdio;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use spanstore_engine::{Options, Store, SyncPolicy};

use crate::support::{batch, batch_numbers, check_exactly_once, child_test, read_snapshot, seeds, Rng};

const DIR_ENV: &str = "SPANSTORE_IT_CRASH_DIR";
const FIRST_BATCH_ENV: &str = "SPANSTORE_IT_CRASH_FIRST_BATCH";
const SEED_ENV: &str = "SPANSTORE_IT_CRASH_SEED";
const KILLS: u64 = 24;

fn store_options(seed: u64) -> Options {
    Options {
        sync: SyncPolicy::Always,
        // Small files, so kills land around rotation too.
        log_file_size_bytes_target: 16 << 10,
        memtable_size_bytes_max: 256 << 10,
        compress_log: seed.is_multiple_of(2),
        ..Options::default()
    }
}

/// The child: appends until killed (or for a minute at most, or until its stdout
/// closes), printing `ACK <batch> <spans> <sequence>` after each append returns. A no-op
/// in a normal test run, where the variables are not set.
#[test]
fn child_appender() {
    let Ok(dir) = std::env::var(DIR_ENV) else {
        return;
    };
    let first: u64 = std::env::var(FIRST_BATCH_ENV).unwrap().parse().unwrap();
    let seed: u64 = std::env::var(SEED_ENV).unwrap().parse().unwrap();
    let mut rng = Rng::new(seed);
    let store = Store::open(&dir, store_options(seed)).expect("child: open the store");
    let mut out = std::io::stdout().lock();
    // The test harness has printed "test crash::child_appender ... " without a newline.
    if writeln!(out).and_then(|()| out.flush()).is_err() {
        return;
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut number = first;
    while Instant::now() < deadline {
        let len = if rng.chance(4) { rng.range(100, 200) } else { rng.range(1, 12) } as u32;
        let receipt = store.append(batch(number, len)).expect("child: append");
        let sequence = receipt.sequence.expect("a sequence number");
        if writeln!(out, "ACK {number} {len} {sequence}").and_then(|()| out.flush()).is_err() {
            return;
        }
        number += 1;
    }
}

/// Reopens the directory read-only and then as the writer; both must hold every
/// acknowledged batch exactly once, whole, in append order, and nothing but those and
/// the ones in flight at a kill.
fn check_directory(dir: &Path, must: &BTreeMap<u64, u32>, may: &BTreeSet<u64>, seed: u64, context: &str) {
    for read_only in [true, false] {
        let store = if read_only {
            Store::open_read_only(dir, store_options(seed))
        } else {
            Store::open(dir, store_options(seed))
        }
        .unwrap_or_else(|e| panic!("{context}: open (read-only {read_only}): {e}"));
        let report = store.recovery_report();
        assert!(report.is_clean(), "{context}: a kill must leave no damage: {report:?}");
        let seen = read_snapshot(&store.snapshot()).unwrap_or_else(|e| panic!("{context}: {e}"));
        check_exactly_once(&seen, must, may).unwrap_or_else(|e| panic!("{context}: {e}"));
        let numbers = batch_numbers(&seen);
        assert!(numbers.windows(2).all(|w| w[0] < w[1]), "{context}: out of order");
        store.close().unwrap();
    }
}

#[test]
fn kill_9_at_random_moments_loses_no_acknowledged_batch() {
    let seed = seeds(7, 1)[0];
    let mut rng = Rng::new(seed);
    let dir = tempfile::tempdir().unwrap();
    let store_dir = dir.path().join("store");
    let mut must: BTreeMap<u64, u32> = BTreeMap::new();
    let mut may = BTreeSet::new();
    let mut acknowledged_total = 0;
    for kill in 0..KILLS {
        let context = format!("seed {seed}, kill {kill}");
        let first = (kill + 1) * 1_000_000;
        let child_seed = rng.next_u64();
        let stderr_path = dir.path().join(format!("child-{kill}.stderr"));
        let mut child = child_test("crash::child_appender")
            .env(DIR_ENV, &store_dir)
            .env(FIRST_BATCH_ENV, first.to_string())
            .env(SEED_ENV, child_seed.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr_path).unwrap())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (sender, lines) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        let mut received = Vec::new();
        // Most kills land while batches are being appended; some during the child's
        // open, that is during recovery.
        let during_open = rng.chance(20);
        if !during_open {
            let deadline = Instant::now() + Duration::from_secs(30);
            while !received.iter().any(|l: &String| l.contains("ACK ")) {
                let left = deadline.saturating_duration_since(Instant::now());
                match lines.recv_timeout(left) {
                    Ok(line) => received.push(line),
                    Err(_) => {
                        let _ = child.kill();
                        let _ = child.wait();
                        panic!(
                            "{context}: the child acknowledged nothing: {}",
                            std::fs::read_to_string(&stderr_path).unwrap_or_default()
                        );
                    }
                }
            }
        }
        let linger = Duration::from_millis(rng.range(0, if during_open { 40 } else { 150 }));
        let deadline = Instant::now() + linger;
        while let Ok(line) = lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            received.push(line);
        }
        // `Child::kill` sends SIGKILL on unix.
        child.kill().unwrap();
        let status = child.wait().unwrap();
        reader.join().unwrap();
        received.extend(lines.try_iter());
        assert_eq!(
            status.signal(),
            Some(9),
            "{context}: the child ended by itself ({status}): {}",
            std::fs::read_to_string(&stderr_path).unwrap_or_default()
        );
        let mut next = first;
        for line in &received {
            let Some(at) = line.find("ACK ") else {
                continue;
            };
            let fields: Vec<u64> = line[at + 4..].trim().split(' ').map(|f| f.parse().unwrap()).collect();
            let [number, len, _sequence] = fields[..] else {
                panic!("{context}: bad line {line:?}");
            };
            assert_eq!(number, next, "{context}: acknowledgements out of order");
            must.insert(number, len as u32);
            next += 1;
        }
        acknowledged_total += next - first;
        // The batch being appended when the kill came may or may not be there.
        may.insert(next);
        check_directory(&store_dir, &must, &may, child_seed, &context);
    }
    assert!(acknowledged_total >= KILLS, "only {acknowledged_total} batches acknowledged over {KILLS} kills");
}
