//! `append_load`: drives `Store::append` from many threads with generated serverless
//! spans and reports throughput, group commit and memory figures.
//!
//! ```text
//! cargo run --release -p spanstore-benches --bin append_load -- \
//!     --spans 20000000 --threads 4 --sync interval:10 --batch-spans 1000
//! ```
//!
//! Batches are generated before the timed region when they fit in memory (`--generate
//! auto`, the default; `upfront` forces it), or by each appending thread just before it
//! appends (`inline`), in which case generation time is inside the figures and is also
//! reported on its own.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use spanstore_benches::Generator;
use spanstore_engine::{Options, SpanBatch, Store, SyncPolicy};

#[derive(Parser, Debug)]
#[command(name = "append_load", about = "Appends generated spans to a store from many threads and reports throughput")]
struct Args {
    /// Total spans to append.
    #[arg(long, default_value_t = 2_000_000)]
    spans: u64,
    /// Appending threads.
    #[arg(long, default_value_t = 4)]
    threads: usize,
    /// Sync policy: always, none, or interval:MS.
    #[arg(long, default_value = "interval:10", value_parser = clap::builder::ValueParser::new(|s: &str| s.parse::<SyncPolicy>()))]
    sync: SyncPolicy,
    /// Spans per appended batch.
    #[arg(long, default_value_t = 1000)]
    batch_spans: usize,
    /// Data directory (default: a temporary directory under /tmp, removed afterwards).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Compress log records with zstd.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    compress: bool,
    /// When batches are generated.
    #[arg(long, value_enum, default_value_t = Generate::Auto)]
    generate: Generate,
    /// Seed of the first thread's generator (thread i uses seed + i).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Memtable bound in MiB (default: the engine's).
    #[arg(long)]
    memtable_mb: Option<usize>,
    /// Seal the memtable into segments in the background and on close (the default);
    /// `false` measures the log and memtable alone.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    seal: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Generate {
    /// Up front when the batches fit in half the available memory, else inline.
    Auto,
    /// All batches before the timed region.
    Upfront,
    /// Each thread generates a batch right before appending it (timed).
    Inline,
}

/// A `kB` field of /proc/self/status or /proc/meminfo, in bytes.
fn proc_kb(file: &str, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(file).ok()?;
    let line = text.lines().find(|l| l.starts_with(field))?;
    let kb: u64 = line.trim_start_matches(field).trim_start_matches(':').split_whitespace().next()?.parse().ok()?;
    Some(kb * 1024)
}

/// User and system CPU seconds of this process so far, all threads (exited ones
/// included), from /proc/self/stat; the kernel reports them in USER_HZ = 100 ticks.
fn cpu_seconds() -> f64 {
    let Ok(text) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // Fields after the parenthesised command name; utime and stime are fields 14, 15.
    let after = text.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |index: usize| fields.get(index).and_then(|f| f.parse::<u64>().ok()).unwrap_or(0);
    (ticks(11) + ticks(12)) as f64 / 100.0
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// The spans each thread appends, as batch sizes.
fn thread_plan(args: &Args) -> Vec<Vec<usize>> {
    let threads = args.threads as u64;
    (0..threads)
        .map(|t| {
            let mut left = args.spans / threads + u64::from(t < args.spans % threads);
            let mut sizes = Vec::new();
            while left > 0 {
                let size = left.min(args.batch_spans as u64);
                sizes.push(size as usize);
                left -= size;
            }
            sizes
        })
        .collect()
}

fn main() {
    let args = Args::parse();
    assert!(args.threads > 0, "--threads must be at least 1");
    assert!(args.batch_spans > 0, "--batch-spans must be at least 1");
    let plan = thread_plan(&args);

    let upfront = match args.generate {
        Generate::Upfront => true,
        Generate::Inline => false,
        Generate::Auto => {
            let mut sample = Generator::new(args.seed).next_batch(args.batch_spans.min(10_000));
            sample.shrink_to_fit();
            let per_span = sample.memory_size_bytes() as f64 / sample.len().max(1) as f64;
            let needed = per_span * args.spans as f64;
            let available = proc_kb("/proc/meminfo", "MemAvailable").unwrap_or(0) as f64;
            needed < available / 2.0
        }
    };

    // Generate up front, one generator thread per appending thread.
    let generate_started = Instant::now();
    let pregenerated: Vec<Option<Vec<SpanBatch>>> = if upfront {
        let handles: Vec<_> = plan
            .iter()
            .enumerate()
            .map(|(t, sizes)| {
                let sizes = sizes.clone();
                let seed = args.seed + t as u64;
                std::thread::spawn(move || {
                    let mut generator = Generator::new(seed);
                    // Spare capacity would be a third of the memory held until appended.
                    sizes
                        .iter()
                        .map(|&n| {
                            let mut batch = generator.next_batch(n);
                            batch.shrink_to_fit();
                            batch
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles.into_iter().map(|h| Some(h.join().expect("a generator thread panicked"))).collect()
    } else {
        plan.iter().map(|_| None).collect()
    };
    let generate_seconds = generate_started.elapsed().as_secs_f64();

    let temp = match &args.dir {
        Some(_) => None,
        None => Some(
            tempfile::Builder::new()
                .prefix("spanstore-append-load-")
                .tempdir_in("/tmp")
                .expect("cannot create a temporary directory under /tmp"),
        ),
    };
    let dir = args
        .dir
        .clone()
        .or_else(|| temp.as_ref().map(|t| t.path().to_path_buf()))
        .expect("either --dir or a temporary directory");
    let mut options = Options {
        sync: args.sync,
        compress_log: args.compress,
        background_maintenance: args.seal,
        seal_on_close: args.seal,
        ..Options::default()
    };
    if let Some(mb) = args.memtable_mb {
        options.memtable_size_bytes_max = mb << 20;
    }
    let store = Arc::new(Store::open(&dir, options).expect("cannot open the store"));
    let rss_before = proc_kb("/proc/self/status", "VmRSS").unwrap_or(0);
    let hwm_before = proc_kb("/proc/self/status", "VmHWM").unwrap_or(0);

    let barrier = Arc::new(Barrier::new(args.threads + 1));
    let handles: Vec<_> = plan
        .into_iter()
        .zip(pregenerated)
        .enumerate()
        .map(|(t, (sizes, batches))| {
            let store = store.clone();
            let barrier = barrier.clone();
            let seed = args.seed + t as u64;
            std::thread::spawn(move || {
                let mut generate_time = Duration::ZERO;
                barrier.wait();
                match batches {
                    Some(batches) => {
                        for batch in batches {
                            store.append(batch).expect("append failed");
                        }
                    }
                    None => {
                        let mut generator = Generator::new(seed);
                        for n in sizes {
                            let started = Instant::now();
                            let batch = generator.next_batch(n);
                            generate_time += started.elapsed();
                            store.append(batch).expect("append failed");
                        }
                    }
                }
                generate_time
            })
        })
        .collect();
    // A marker on stderr, so a profiler can attach for the timed region only.
    eprintln!("append_load: appending (pid {})", std::process::id());
    barrier.wait();
    let started = Instant::now();
    let cpu_started = cpu_seconds();
    let inline_generate: Duration = handles.into_iter().map(|h| h.join().expect("an appending thread panicked")).sum();
    let seconds = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu_started;
    let stats = store.writer_stats();
    let resident = store.memtable_resident_bytes();
    let rss_after = proc_kb("/proc/self/status", "VmRSS").unwrap_or(0);
    let hwm = proc_kb("/proc/self/status", "VmHWM").unwrap_or(0);
    let close_started = Instant::now();
    let store = Arc::into_inner(store).expect("every appending thread has finished");
    store.close().expect("close failed");
    let close_seconds = close_started.elapsed().as_secs_f64();
    drop(temp);

    let spans = args.spans as f64;
    let sync = match args.sync {
        SyncPolicy::Always => "always".to_owned(),
        SyncPolicy::None => "none".to_owned(),
        SyncPolicy::Interval(d) => format!("interval:{}", d.as_millis()),
    };
    println!(
        "config: spans={} threads={} sync={} batch_spans={} compress={} seal={} generate={} dir={}",
        args.spans,
        args.threads,
        sync,
        args.batch_spans,
        args.compress,
        args.seal,
        if upfront { "upfront" } else { "inline" },
        dir.display()
    );
    if upfront {
        println!(
            "generate: {generate_seconds:.3} s up front ({:.0} spans/s on {} threads)",
            spans / generate_seconds,
            args.threads
        );
    } else {
        println!(
            "generate: {:.3} thread-s inline, inside the timed region ({:.0} spans/s per thread)",
            inline_generate.as_secs_f64(),
            spans / inline_generate.as_secs_f64().max(1e-9)
        );
    }
    println!("spans: {}", args.spans);
    println!("seconds: {seconds:.3}");
    println!("spans_per_s: {:.0}", spans / seconds);
    println!(
        "cpu_seconds: {cpu:.2} ({:.2} cores busy; {:.0} spans per cpu-second)",
        cpu / seconds,
        spans / cpu.max(0.01)
    );
    println!(
        "log_mb_per_s: {:.1} ({:.1} MiB written, {:.1} bytes/span)",
        stats.bytes as f64 / 1e6 / seconds,
        mib(stats.bytes),
        stats.bytes as f64 / spans
    );
    println!("groups: {}", stats.groups);
    println!("fsyncs: {}", stats.syncs);
    println!("fsyncs_per_s: {:.1}", stats.syncs as f64 / seconds);
    println!("records_per_group: {:.2}", stats.records as f64 / stats.groups.max(1) as f64);
    println!("memtable_resident_mib: {:.1}", mib(resident as u64));
    println!("rss_mib: {:.1} before appending, {:.1} after", mib(rss_before), mib(rss_after));
    println!("peak_rss_mib: {:.1} (VmHWM; {:.1} before appending)", mib(hwm), mib(hwm_before));
    println!("close_seconds: {close_seconds:.3}");
}
