//! `otlp_load`: sustained OTLP/HTTP protobuf ingest into `spanstore serve` from many
//! concurrent clients over loopback; reports spans/s acknowledged and request latency.
//!
//! ```text
//! cargo build --release -p spanstore && \
//! cargo run --release -p spanstore-benches --bin otlp_load -- --clients 16 --seconds 20
//! ```
//!
//! Without `--addr` it starts `spanstore serve` (the release binary beside this one) on
//! a fresh temporary directory with `--sync always` (or `--sync`), so every answered
//! request is fsynced; with `--addr` it drives a server already running (loopback only).
//! Request bodies are encoded before the timed region from the seeded serverless
//! workload, `--distinct-batches` of them, each client sending them round-robin on one
//! keep-alive connection. A run stops at `--seconds` or `--spans`, whichever comes first.
#![forbid(unsafe_code)]

use std::io::BufRead;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use spanstore_benches::Generator;

#[derive(Parser, Debug)]
#[command(
    name = "otlp_load",
    about = "Sends OTLP/HTTP protobuf to spanstore serve from many clients and reports throughput"
)]
struct Args {
    /// A running server's OTLP/HTTP address (loopback); default: start one.
    #[arg(long)]
    addr: Option<SocketAddr>,
    /// The `spanstore` binary to start (default: the one beside this program).
    #[arg(long)]
    server_bin: Option<PathBuf>,
    /// Sync policy of the started server.
    #[arg(long, default_value = "always")]
    sync: String,
    /// Concurrent clients, each with its own connection and one request in flight.
    #[arg(long, default_value_t = 16)]
    clients: usize,
    /// Spans per request (the OpenTelemetry batch span processor exports up to 512).
    #[arg(long, default_value_t = 512)]
    batch_spans: usize,
    /// Distinct request bodies encoded up front.
    #[arg(long, default_value_t = 64)]
    distinct_batches: usize,
    /// Stop after this many seconds...
    #[arg(long, default_value_t = 15)]
    seconds: u64,
    /// ... or once this many spans are acknowledged.
    #[arg(long, default_value_t = 20_000_000)]
    spans: u64,
    /// Workload seed.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Keep the started server's data directory here instead of a temporary one.
    #[arg(long)]
    dir: Option<PathBuf>,
}

/// The started server; killed if still running when dropped.
struct Started {
    child: Child,
    log: PathBuf,
    _temp: tempfile::TempDir,
}

impl Started {
    /// SIGTERM, wait for the clean exit, and return the log writer's totals line.
    fn stop(mut self) -> Result<String, String> {
        let pid = self.child.id().to_string();
        let status = Command::new("kill").args(["-TERM", &pid]).status().map_err(|e| format!("kill: {e}"))?;
        if !status.success() {
            return Err(format!("kill -TERM {pid} failed"));
        }
        let exit = self.child.wait().map_err(|e| format!("waiting for the server: {e}"))?;
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        if !exit.success() {
            return Err(format!("the server exited with {exit}:\n{log}"));
        }
        Ok(log.lines().find(|l| l.contains("span log totals")).unwrap_or("").to_owned())
    }
}

impl Drop for Started {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_server(args: &Args) -> Result<(Started, SocketAddr), String> {
    let bin = match &args.server_bin {
        Some(bin) => bin.clone(),
        None => {
            let me = std::env::current_exe().map_err(|e| format!("current exe: {e}"))?;
            me.with_file_name("spanstore")
        }
    };
    if !bin.exists() {
        return Err(format!(
            "{}: no spanstore binary; build it with `cargo build --release -p spanstore`, or pass --server-bin or --addr",
            bin.display()
        ));
    }
    let temp = tempfile::tempdir().map_err(|e| format!("temporary directory: {e}"))?;
    let dir = args.dir.clone().unwrap_or_else(|| temp.path().join("data"));
    let log = temp.path().join("serve.log");
    let stderr = std::fs::File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
    let mut child = Command::new(&bin)
        .arg("--data")
        .arg(&dir)
        .args(["serve", "--otlp-http", "127.0.0.1:0", "--otlp-grpc", "127.0.0.1:0", "--zipkin", "127.0.0.1:0"])
        .args(["--sync", &args.sync])
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::from(stderr))
        .spawn()
        .map_err(|e| format!("{}: {e}", bin.display()))?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let mut line = String::new();
    std::io::BufReader::new(stdout).read_line(&mut line).map_err(|e| format!("reading the server's address: {e}"))?;
    let addr = line
        .split_whitespace()
        .find_map(|pair| pair.strip_prefix("otlp-http="))
        .and_then(|addr| addr.parse().ok())
        .ok_or_else(|| format!("no otlp-http address in {line:?}"))?;
    Ok((Started { child, log, _temp: temp }, addr))
}

/// User and system CPU seconds a process has used (Linux `/proc/PID/stat`).
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_name = stat.get(stat.rfind(')')? + 2..)?;
    let fields: Vec<&str> = after_name.split(' ').collect();
    // Fields 14 and 15 of stat(5) (utime, stime) are 12 and 13 after the name.
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / 100.0)
}

fn percentile(sorted: &[u64], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    Duration::from_nanos(sorted[rank.min(sorted.len() - 1)])
}

fn main() {
    let args = Args::parse();
    if let Err(err) = run(&args) {
        eprintln!("otlp_load: {err}");
        std::process::exit(1);
    }
}

fn run(args: &Args) -> Result<(), String> {
    let (started, addr) = match args.addr {
        Some(addr) => (None, addr),
        None => {
            let (started, addr) = start_server(args)?;
            (Some(started), addr)
        }
    };
    if !addr.ip().is_loopback() {
        return Err(format!("{addr}: loopback addresses only"));
    }

    let generate = Instant::now();
    let mut generator = Generator::new(args.seed);
    let bodies: Arc<Vec<Bytes>> = Arc::new(
        (0..args.distinct_batches.max(1))
            .map(|_| Bytes::from(spanstore_ingest::otlp::encode_protobuf(&generator.next_batch(args.batch_spans))))
            .collect(),
    );
    let body_bytes: usize = bodies.iter().map(Bytes::len).sum::<usize>() / bodies.len();
    eprintln!(
        "{} bodies of {} spans ({} bytes each on average) encoded in {:.2?}; {} clients → http://{addr}/v1/traces",
        bodies.len(),
        args.batch_spans,
        body_bytes,
        generate.elapsed(),
        args.clients
    );

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| format!("tokio runtime: {e}"))?;
    let server_pid = started.as_ref().map(|s| s.child.id());
    let cpu_before = server_pid.and_then(cpu_seconds);
    let acknowledged = Arc::new(AtomicU64::new(0));
    let failures = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let deadline = Instant::now() + Duration::from_secs(args.seconds);
    let began = Instant::now();
    let latencies: Vec<u64> = runtime.block_on(async {
        let mut tasks = tokio::task::JoinSet::new();
        for client_index in 0..args.clients {
            let (bodies, acknowledged, failures, stop) =
                (Arc::clone(&bodies), Arc::clone(&acknowledged), Arc::clone(&failures), Arc::clone(&stop));
            let batch_spans = args.batch_spans as u64;
            let span_limit = args.spans;
            tasks.spawn(async move {
                // One connection per client: a pool of at most one idle connection.
                let client: Client<_, Full<Bytes>> =
                    Client::builder(TokioExecutor::new()).pool_max_idle_per_host(1).build_http();
                let uri: hyper::Uri = match format!("http://{addr}/v1/traces").parse() {
                    Ok(uri) => uri,
                    Err(_) => return Vec::new(),
                };
                let mut latencies = Vec::new();
                let mut next = client_index;
                while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                    let body = bodies[next % bodies.len()].clone();
                    next += 1;
                    let request = hyper::Request::post(uri.clone())
                        .header("content-type", "application/x-protobuf")
                        .body(Full::new(body));
                    let Ok(request) = request else { break };
                    let sent = Instant::now();
                    let ok = match client.request(request).await {
                        Ok(response) => {
                            let status = response.status();
                            // Read the ExportTraceServiceResponse to the end.
                            let read = response.into_body().collect().await.is_ok();
                            status == hyper::StatusCode::OK && read
                        }
                        Err(_) => false,
                    };
                    if ok {
                        latencies.push(sent.elapsed().as_nanos() as u64);
                        if acknowledged.fetch_add(batch_spans, Ordering::Relaxed) + batch_spans >= span_limit {
                            stop.store(true, Ordering::Relaxed);
                        }
                    } else {
                        failures.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
                latencies
            });
        }
        let mut all = Vec::new();
        while let Some(joined) = tasks.join_next().await {
            all.extend(joined.unwrap_or_default());
        }
        all
    });
    let elapsed = began.elapsed();
    let cpu_after = server_pid.and_then(cpu_seconds);
    let mut latencies = latencies;
    latencies.sort_unstable();
    let spans = acknowledged.load(Ordering::Relaxed);
    let spans_per_second = spans as f64 / elapsed.as_secs_f64();
    println!("otlp_load: {} clients, {} spans per request, sync {}", args.clients, args.batch_spans, args.sync);
    println!(
        "acknowledged: {spans} spans in {} requests over {:.2} s = {:.0} spans/s ({:.0} requests/s, {:.1} MB/s of protobuf)",
        latencies.len(),
        elapsed.as_secs_f64(),
        spans_per_second,
        latencies.len() as f64 / elapsed.as_secs_f64(),
        (latencies.len() * body_bytes) as f64 / elapsed.as_secs_f64() / 1e6
    );
    println!(
        "latency: p50 {:.2?}, p90 {:.2?}, p99 {:.2?}, max {:.2?}",
        percentile(&latencies, 50.0),
        percentile(&latencies, 90.0),
        percentile(&latencies, 99.0),
        percentile(&latencies, 100.0)
    );
    println!("failed requests: {}", failures.load(Ordering::Relaxed));
    if let (Some(before), Some(after)) = (cpu_before, cpu_after) {
        let cpu = after - before;
        println!(
            "server CPU: {cpu:.2} s ({:.2} cores busy), {:.0} spans per server CPU-second",
            cpu / elapsed.as_secs_f64(),
            spans as f64 / cpu.max(1e-9)
        );
    }
    if let Some(started) = started {
        // A clean SIGTERM shutdown under load, and how many fsyncs the requests shared.
        let totals = started.stop()?;
        println!(
            "server stopped cleanly; {}",
            totals.split_once("INFO").map_or(totals.as_str(), |(_, rest)| rest).trim()
        );
    }
    Ok(())
}
