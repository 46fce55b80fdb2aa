//! A whole data set of a known size, cut into fixed chunks that are generated on many
//! threads and handed out in order: the same bytes whatever the thread count.

use std::collections::BTreeMap;
use std::sync::{Condvar, Mutex};

use spanstore_engine::SpanBatch;

use crate::generator::Generator;
use crate::rng::mix64;
use crate::{Config, CHUNK_SPANS, LINE_SPANS};

/// A data set: `spans` spans of the workload for `seed`, spread over the time range of
/// `config` following the day curve.
///
/// It is cut into chunks of [`CHUNK_SPANS`] spans (the last may be shorter). Chunk `i`
/// has its own seed, derived from `(seed, i)`, and its own slice of the time range, the
/// slice of the day curve's load that its share of the spans takes; so chunks can be
/// generated in any order, on any thread, and [`Workload::chunk`] always gives the same
/// batches. The chunk boundaries depend only on `spans`.
#[derive(Clone, Copy, Debug)]
pub struct Workload {
    /// Seed of the whole data set.
    pub seed: u64,
    /// Number of spans.
    pub spans: u64,
    /// The time range (`invocations_per_second` is not used: the rate follows from
    /// `spans` and the range).
    pub config: Config,
}

impl Workload {
    /// `spans` spans for `seed` over the time range of `config`.
    pub fn new(seed: u64, spans: u64, config: Config) -> Workload {
        Workload { seed, spans, config }
    }

    /// How many chunks the data set has.
    pub fn chunk_count(&self) -> u64 {
        self.spans.div_ceil(CHUNK_SPANS)
    }

    /// The spans of chunk `index`, as a range of span numbers.
    pub fn chunk_range(&self, index: u64) -> std::ops::Range<u64> {
        let start = index.saturating_mul(CHUNK_SPANS).min(self.spans);
        start..start.saturating_add(CHUNK_SPANS).min(self.spans)
    }

    /// The batches of chunk `index`, in order: whole traces, about [`LINE_SPANS`] spans
    /// each (a batch closes after the group of requests that takes it to `LINE_SPANS`,
    /// and the last batch of a chunk takes what is left, up to twice that).
    pub fn chunk(&self, index: u64) -> Vec<SpanBatch> {
        let range = self.chunk_range(index);
        let spans = range.end - range.start;
        let total = self.spans.max(1) as f64;
        let chunk_seed = mix64(self.seed ^ mix64(index.wrapping_add(0x6a09_e667_f3bc_c908)));
        let mut generator = Generator::with_budget(
            chunk_seed,
            self.config,
            spans,
            range.start as f64 / total,
            range.end as f64 / total,
        );
        let mut batches = Vec::with_capacity((spans as usize).div_ceil(LINE_SPANS));
        let mut left = spans as usize;
        while left > 0 {
            let at_least = if left < 2 * LINE_SPANS { left } else { LINE_SPANS };
            let mut batch = SpanBatch::new();
            left -= generator.fill_between(&mut batch, at_least, left);
            batches.push(batch);
        }
        batches
    }

    /// Generates every chunk on `threads` threads (at least one), turns each into a `T`
    /// with `map` on the same thread, and hands the results to `sink` on the calling
    /// thread in chunk order. At most `2 × threads` chunks are in flight, so memory stays
    /// bounded whatever the size. Stops at the first error of `sink` and returns it.
    pub fn generate<T, E>(
        &self,
        threads: usize,
        map: impl Fn(u64, Vec<SpanBatch>) -> T + Sync,
        mut sink: impl FnMut(T) -> Result<(), E>,
    ) -> Result<(), E>
    where
        T: Send,
    {
        let threads = threads.max(1);
        let chunks = self.chunk_count();
        let window = 2 * threads as u64;
        let shared = Shared {
            state: Mutex::new(State { next: 0, consumed: 0, ready: BTreeMap::new(), stop: false, workers: threads }),
            chunk_taken: Condvar::new(),
            chunk_ready: Condvar::new(),
        };
        std::thread::scope(|scope| {
            for _ in 0..threads {
                scope.spawn(|| {
                    let _exit = WorkerExit(&shared);
                    while let Some(index) = shared.take(chunks, window) {
                        let result = map(index, self.chunk(index));
                        shared.put(index, result);
                    }
                });
            }
            let mut outcome = Ok(());
            for index in 0..chunks {
                let Some(result) = shared.wait_for(index) else {
                    // A worker died (a panic, which the scope re-raises on exit).
                    break;
                };
                if let Err(err) = sink(result) {
                    outcome = Err(err);
                    break;
                }
            }
            shared.stop();
            outcome
        })
    }

    /// Generates the data set on `threads` threads and hands every batch to `sink` on
    /// the calling thread, in order (see [`Workload::generate`]).
    pub fn for_each_batch<E>(&self, threads: usize, mut sink: impl FnMut(SpanBatch) -> Result<(), E>) -> Result<(), E> {
        self.generate(
            threads,
            |_, batches| batches,
            |batches| {
                for batch in batches {
                    sink(batch)?;
                }
                Ok(())
            },
        )
    }
}

struct State<T> {
    /// The next chunk to hand to a worker.
    next: u64,
    /// How many chunks the sink has taken.
    consumed: u64,
    /// Finished chunks not yet taken by the sink.
    ready: BTreeMap<u64, T>,
    stop: bool,
    /// Workers still running.
    workers: usize,
}

struct Shared<T> {
    state: Mutex<State<T>>,
    /// Signalled when the sink takes a chunk (room in the window) or on stop.
    chunk_taken: Condvar,
    /// Signalled when a chunk is ready or a worker exits.
    chunk_ready: Condvar,
}

impl<T> Shared<T> {
    fn lock(&self) -> std::sync::MutexGuard<'_, State<T>> {
        // A poisoned lock means a worker panicked; the scope re-raises that panic, so
        // carrying on with the data is fine.
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The next chunk to generate, once it is within `window` of the sink; `None` when
    /// all are handed out or the sink stopped.
    fn take(&self, chunks: u64, window: u64) -> Option<u64> {
        let mut state = self.lock();
        loop {
            if state.stop || state.next >= chunks {
                return None;
            }
            if state.next < state.consumed + window {
                state.next += 1;
                return Some(state.next - 1);
            }
            state = self.chunk_taken.wait(state).unwrap_or_else(std::sync::PoisonError::into_inner);
        }
    }

    fn put(&self, index: u64, result: T) {
        self.lock().ready.insert(index, result);
        self.chunk_ready.notify_all();
    }

    /// Chunk `index` once it is ready; `None` if every worker exited without it.
    fn wait_for(&self, index: u64) -> Option<T> {
        let mut state = self.lock();
        loop {
            if let Some(result) = state.ready.remove(&index) {
                state.consumed += 1;
                drop(state);
                self.chunk_taken.notify_all();
                return Some(result);
            }
            if state.workers == 0 {
                return None;
            }
            state = self.chunk_ready.wait(state).unwrap_or_else(std::sync::PoisonError::into_inner);
        }
    }

    fn stop(&self) {
        self.lock().stop = true;
        self.chunk_taken.notify_all();
    }
}

/// Counts a worker out when it returns or unwinds, so the sink never waits for a chunk
/// nobody will make.
struct WorkerExit<'a, T>(&'a Shared<T>);

impl<T> Drop for WorkerExit<'_, T> {
    fn drop(&mut self) {
        self.0.lock().workers -= 1;
        self.0.chunk_ready.notify_all();
    }
}
