//! The `Store` API on a real directory: round trips, the writer lock, read-only opens,
//! empty batches, memtable eviction and log rotation.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use spanstore_engine::{AnyValue, EngineError, Options, SpanBatch, SpanFields, Store, SyncPolicy, ValueRef};

use crate::support::{
    assert_spans_equal, batch, batch_numbers, check_exactly_once, dir_contents, log_files, read_snapshot, span, spans,
};

fn options() -> Options {
    Options::default()
}

/// Options that keep every batch in the log (no sealing into segments), for tests of
/// the log itself.
fn log_only() -> Options {
    Options { seal_on_close: false, background_maintenance: false, ..Options::default() }
}

fn log_file_names(dir: &Path) -> Vec<String> {
    let names = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap());
    log_files(names, dir).into_iter().map(|p| p.file_name().unwrap().to_str().unwrap().to_owned()).collect()
}

/// A batch of `spans(number, 3)` written with the push_* builder rather than
/// `from_spans`, to check both ways of building a batch store the same thing.
fn builder_batch(number: u64) -> SpanBatch {
    let mut batch = SpanBatch::new();
    let mut previous_resource = None;
    for span in spans(number, 3) {
        if previous_resource.as_ref() != Some(&span.resource) {
            batch.begin_resource(&span.resource.schema_url, span.resource.dropped_attributes_count);
            for kv in &span.resource.attributes {
                batch.resource_attr(&kv.key, (&kv.value).into());
            }
            batch.begin_scope(
                &span.scope.name,
                &span.scope.version,
                &span.scope.schema_url,
                span.scope.dropped_attributes_count,
            );
            for kv in &span.scope.attributes {
                batch.scope_attr(&kv.key, (&kv.value).into());
            }
            previous_resource = Some(span.resource.clone());
        }
        batch.push_span(&SpanFields {
            trace_id: span.trace_id,
            span_id: span.span_id,
            parent_span_id: span.parent_span_id,
            trace_state: &span.trace_state,
            name: &span.name,
            kind: span.kind,
            start_unix_nano: span.start_unix_nano,
            duration_ns: span.duration_ns,
            status_code: span.status_code,
            status_message: &span.status_message,
            flags: span.flags,
            dropped_attributes_count: span.dropped_attributes_count,
            dropped_events_count: span.dropped_events_count,
            dropped_links_count: span.dropped_links_count,
        });
        for kv in &span.attributes {
            let value = match &kv.value {
                AnyValue::Str(s) => ValueRef::Str(s),
                AnyValue::Int(i) => ValueRef::Int(*i),
                AnyValue::Double(d) => ValueRef::Double(*d),
                AnyValue::Bool(b) => ValueRef::Bool(*b),
                AnyValue::Bytes(b) => ValueRef::Bytes(b),
                AnyValue::Array(items) => ValueRef::Array(items),
                AnyValue::Map(pairs) => ValueRef::Map(pairs),
                AnyValue::Empty => ValueRef::Empty,
            };
            batch.span_attr(&kv.key, value);
        }
        for event in &span.events {
            batch.push_event(event.time_unix_nano, &event.name, event.dropped_attributes_count);
            for kv in &event.attributes {
                batch.event_attr(&kv.key, (&kv.value).into());
            }
        }
        for link in &span.links {
            batch.push_link(link.trace_id, link.span_id, &link.trace_state, link.flags, link.dropped_attributes_count);
            for kv in &link.attributes {
                batch.link_attr(&kv.key, (&kv.value).into());
            }
        }
    }
    batch
}

/// The round trip, through the log alone or (when `close` seals) through a segment.
fn round_trip(options: Options) {
    let dir = tempfile::tempdir().unwrap();
    let mut want = Vec::new();
    {
        let store = Store::open(dir.path(), options.clone()).unwrap();
        assert!(!store.is_read_only());
        assert!(store.recovery_report().is_clean());
        for (number, len) in [(1u64, 1u32), (2, 7), (3, 40), (4, 2)] {
            let receipt = store.append(batch(number, len)).unwrap();
            assert_eq!(receipt.sequence, Some(number));
            assert_eq!(receipt.span_count, len as usize);
            want.extend(spans(number, len));
        }
        let receipt = store.append(builder_batch(5)).unwrap();
        assert_eq!(receipt.sequence, Some(5));
        want.extend(spans(5, 3));
        let snapshot = store.snapshot();
        assert_eq!(snapshot.span_count(), want.len() as u64);
        assert_eq!(snapshot.batch_count(), 5);
        assert_eq!(snapshot.last_sequence(), Some(5));
        assert_spans_equal(&snapshot.spans().unwrap(), &want);
        // A trace: the four spans of batch 3 that share a trace id, by start time.
        let trace = store.trace(span(3, 4, 40).trace_id).unwrap();
        assert_spans_equal(&trace, &spans(3, 40)[4..8]);
        store.close().unwrap();
    }
    let store = Store::open(dir.path(), options.clone()).unwrap();
    let report = store.recovery_report();
    assert!(report.is_clean(), "{report:?}");
    assert!(report.torn_tails.is_empty(), "{report:?}");
    if !options.seal_on_close {
        assert_eq!(report.records_replayed, 5);
        assert_eq!(report.spans_replayed, want.len() as u64);
    }
    let snapshot = store.snapshot();
    assert_spans_equal(&snapshot.spans().unwrap(), &want);
    // Sequences go on from where the last session stopped.
    assert_eq!(store.append(batch(6, 2)).unwrap().sequence, Some(6));
    want.extend(spans(6, 2));
    store.close().unwrap();
    let store = Store::open_read_only(dir.path(), options).unwrap();
    assert_spans_equal(&store.snapshot().spans().unwrap(), &want);
    let seen = read_snapshot(&store.snapshot()).unwrap();
    assert_eq!(batch_numbers(&seen), vec![1, 2, 3, 4, 5, 6]);
}

#[test]
fn open_append_snapshot_close_reopen_round_trips_every_field() {
    round_trip(log_only());
}

#[test]
fn round_trip_through_a_segment_sealed_on_close_keeps_every_field() {
    round_trip(options());
}

#[test]
fn a_second_writer_gets_a_clear_locked_error() {
    let dir = tempfile::tempdir().unwrap();
    let first = Store::open(dir.path(), options()).unwrap();
    first.append(batch(1, 2)).unwrap();
    let err = match Store::open(dir.path(), options()) {
        Ok(_) => panic!("a second writer opened a locked directory"),
        Err(err) => err,
    };
    let lock = dir.path().join("LOCK");
    assert!(matches!(&err, EngineError::Locked { path } if *path == lock), "{err:?}");
    let message = err.to_string();
    assert!(message.contains(&lock.display().to_string()), "{message}");
    assert!(message.contains("locked by another writer"), "{message}");
    assert!(message.contains("read-only"), "{message}");
    // The failed open disturbed nothing: the first writer goes on, and read-only opens
    // work beside it.
    first.append(batch(2, 3)).unwrap();
    let reader = Store::open_read_only(dir.path(), options()).unwrap();
    assert_eq!(reader.snapshot().span_count(), 5);
    first.close().unwrap();
    // Closing releases the lock.
    let second = Store::open(dir.path(), options()).unwrap();
    assert_eq!(second.snapshot().span_count(), 5);
}

#[test]
fn read_only_open_sees_every_whole_record_and_changes_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let small_logs = Options { log_file_size_bytes_target: 4096, ..log_only() };
    let mut must = BTreeMap::new();
    {
        let store = Store::open(dir.path(), small_logs.clone()).unwrap();
        for number in 0..12 {
            let len = 1 + (number as u32 * 5) % 11;
            store.append(batch(number, len)).unwrap();
            must.insert(number, len);
        }
        store.close().unwrap();
    }
    // What a crash leaves: half a record at the end of the newest log, and a temporary
    // manifest. A writer would cut and remove them; a reader must not.
    let newest = log_files(log_file_names(dir.path()), dir.path()).pop().unwrap();
    let mut partial = Vec::new();
    spanstore_engine::log::frame_record(
        &mut partial,
        std::fs::metadata(&newest).unwrap().len(),
        &spanstore_engine::log::encode_record(99, &batch(100, 4), false),
    );
    partial.truncate(partial.len() / 2);
    let mut bytes = std::fs::read(&newest).unwrap();
    bytes.extend_from_slice(&partial);
    std::fs::write(&newest, &bytes).unwrap();
    std::fs::write(dir.path().join("MANIFEST-0000000099.tmp"), b"half a manifest").unwrap();
    let before = dir_contents(dir.path());

    let store = Store::open_read_only(dir.path(), small_logs.clone()).unwrap();
    assert!(store.is_read_only());
    let report = store.recovery_report();
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(report.torn_tails.len(), 1, "{report:?}");
    assert_eq!(report.torn_tails[0].path, newest);
    assert!(report.removed_files.is_empty());
    let seen = read_snapshot(&store.snapshot()).unwrap();
    check_exactly_once(&seen, &must, &BTreeSet::new()).unwrap();
    assert_eq!(batch_numbers(&seen), must.keys().copied().collect::<Vec<_>>());
    drop(store);
    assert!(dir_contents(dir.path()) == before, "a read-only open changed a file");

    // Beside a live writer (which cut the tail and started a new log file), a read-only
    // open sees everything the writer acknowledged and still changes nothing.
    let writer = Store::open(dir.path(), small_logs.clone()).unwrap();
    assert_eq!(writer.recovery_report().torn_tails.len(), 1);
    for number in 12..20 {
        writer.append(batch(number, 3)).unwrap();
        must.insert(number, 3);
    }
    let before = dir_contents(dir.path());
    assert!(!before.contains_key("MANIFEST-0000000099.tmp"));
    let store = Store::open_read_only(dir.path(), small_logs).unwrap();
    let report = store.recovery_report();
    assert!(report.is_clean() && report.torn_tails.is_empty(), "{report:?}");
    let seen = read_snapshot(&store.snapshot()).unwrap();
    check_exactly_once(&seen, &must, &BTreeSet::new()).unwrap();
    drop(store);
    assert!(dir_contents(dir.path()) == before, "a read-only open changed a file");
    writer.close().unwrap();
}

#[test]
fn read_only_open_of_a_missing_or_empty_directory_is_not_a_store() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nothing-here");
    for path in [missing.as_path(), dir.path()] {
        match Store::open_read_only(path, options()) {
            Err(EngineError::NotAStore { path: named }) => {
                assert_eq!(named, path);
                let message = EngineError::NotAStore { path: named }.to_string();
                assert!(message.contains(&path.display().to_string()), "{message}");
            }
            Err(err) => panic!("{}: expected NotAStore, got {err:?}", path.display()),
            Ok(_) => panic!("{}: a read-only open succeeded", path.display()),
        }
    }
    assert!(!missing.exists(), "a read-only open created the directory");
    assert!(dir_contents(dir.path()).is_empty());
}

#[test]
fn append_to_a_read_only_store_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    Store::open(dir.path(), options()).unwrap().append(batch(1, 1)).unwrap();
    let before = dir_contents(dir.path());
    let store = Store::open_read_only(dir.path(), options()).unwrap();
    let err = store.append(batch(2, 1)).unwrap_err();
    assert!(matches!(err, EngineError::ReadOnly), "{err:?}");
    assert_eq!(err.to_string(), "the store is open read-only");
    store.flush().unwrap();
    assert_eq!(store.snapshot().span_count(), 1);
    store.close().unwrap();
    assert!(dir_contents(dir.path()) == before);
}

#[test]
fn an_empty_batch_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), log_only()).unwrap();
    let before = dir_contents(dir.path());
    let receipt = store.append(SpanBatch::new()).unwrap();
    assert_eq!(receipt.sequence, None);
    assert_eq!(receipt.span_count, 0);
    assert_eq!(store.writer_stats().records, 0);
    assert_eq!(store.writer_stats().bytes, 0);
    assert_eq!(store.snapshot().batch_count(), 0);
    store.flush().unwrap();
    assert!(dir_contents(dir.path()) == before, "an empty batch wrote bytes");
    // The next real batch still gets the first sequence number.
    assert_eq!(store.append(batch(1, 2)).unwrap().sequence, Some(1));
    store.close().unwrap();
    let store = Store::open(dir.path(), log_only()).unwrap();
    assert_eq!(store.recovery_report().records_replayed, 1);
    assert_eq!(store.snapshot().batch_count(), 1);
}

#[test]
fn evicted_batches_are_read_back_from_the_log_and_memory_stays_bounded() {
    const MEMTABLE_BYTES: usize = 64 << 10;
    let dir = tempfile::tempdir().unwrap();
    let tiny = Options {
        memtable_size_bytes_max: MEMTABLE_BYTES,
        // Durability is not what this test is about; it appends a few hundred batches.
        sync: SyncPolicy::None,
        log_file_size_bytes_target: 256 << 10,
        ..log_only()
    };
    let mut want = Vec::new();
    let mut must = BTreeMap::new();
    {
        let store = Store::open(dir.path(), tiny.clone()).unwrap();
        for number in 0..300u64 {
            let len = 1 + (number as u32 * 7) % 25;
            store.append(batch(number, len)).unwrap();
            want.extend(spans(number, len));
            must.insert(number, len);
            let resident = store.memtable_resident_bytes();
            assert!(
                resident <= MEMTABLE_BYTES,
                "after batch {number}: {resident} bytes resident, bound {MEMTABLE_BYTES}"
            );
        }
        let resident = store.memtable_resident_bytes();
        assert!(resident > 0);
        let snapshot = store.snapshot();
        assert_eq!(snapshot.span_count(), want.len() as u64);
        assert_spans_equal(&snapshot.spans().unwrap(), &want);
        // Reading evicted batches back does not make them resident again.
        assert!(store.memtable_resident_bytes() <= MEMTABLE_BYTES);
        store.close().unwrap();
    }
    // Replay of a log much larger than the memtable also stays within the bound.
    let store = Store::open(dir.path(), tiny.clone()).unwrap();
    assert!(store.memtable_resident_bytes() <= MEMTABLE_BYTES);
    let seen = read_snapshot(&store.snapshot()).unwrap();
    check_exactly_once(&seen, &must, &BTreeSet::new()).unwrap();
    assert_spans_equal(&store.snapshot().spans().unwrap(), &want);
    // Batch 253 holds 22 spans; span 9 shares its trace with spans 8 to 11.
    assert_eq!(must[&253], 22);
    let trace = store.trace(span(253, 9, 22).trace_id).unwrap();
    assert_spans_equal(&trace, &spans(253, 22)[8..12]);
}

#[test]
fn log_files_rotate_and_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let small = Options { log_file_size_bytes_target: 4096, sync: SyncPolicy::None, ..log_only() };
    let mut must = BTreeMap::new();
    let mut order = Vec::new();
    let mut number = 0u64;
    for session in 0..3 {
        let store = Store::open(dir.path(), small.clone()).unwrap();
        let report = store.recovery_report();
        assert!(report.is_clean() && report.torn_tails.is_empty(), "{report:?}");
        let seen = read_snapshot(&store.snapshot()).unwrap();
        check_exactly_once(&seen, &must, &BTreeSet::new()).unwrap();
        assert_eq!(batch_numbers(&seen), order, "session {session}");
        for _ in 0..40 {
            let len = 1 + (number as u32 * 3) % 9;
            store.append(batch(number, len)).unwrap();
            must.insert(number, len);
            order.push(number);
            number += 1;
        }
        store.close().unwrap();
        let logs = log_file_names(dir.path());
        assert!(logs.len() >= 5 * (session + 1), "session {session}: only {} log files: {logs:?}", logs.len());
        for name in &logs {
            let len = std::fs::metadata(dir.path().join(name)).unwrap().len();
            // A file is started past the target, so none grows far beyond it unless a
            // single group is that large.
            assert!(len < 4096 + 8192, "{name} has {len} bytes");
        }
    }
    let store = Store::open_read_only(dir.path(), small).unwrap();
    let seen = read_snapshot(&store.snapshot()).unwrap();
    check_exactly_once(&seen, &must, &BTreeSet::new()).unwrap();
    assert_eq!(batch_numbers(&seen), order);
}
