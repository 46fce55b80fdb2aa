//! `spanstore serve`: the receivers (OTLP/HTTP, OTLP/gRPC, Zipkin) and the query API
//! over one writable store.
//!
//! **Invariant:** a request is answered 2xx (gRPC OK) only after `Store::append` has
//! returned for its spans, which under the default sync policy `always` means they are
//! fsynced. Appends run on blocking threads so that concurrent requests wait for the
//! same group commit. Shutdown (SIGTERM/SIGINT) stops accepting, lets in-flight
//! requests finish, then closes the store (flush and seal) and exits 0.
//!
//! - [`pipeline`]: gunzip within the body limit, decode, append.
//! - [`http`]: the axum routers (OTLP/HTTP, Zipkin, query API, health) and their answers.
//! - [`grpc`]: the tonic `TraceService`.
//! - [`auth`]: the optional bearer token.

mod auth;
mod grpc;
mod http;
mod pipeline;

use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use spanstore_engine::{EngineError, Options, Store, SyncPolicy};
use spanstore_ingest::IngestError;
use tokio::sync::watch;

/// The flags of `spanstore serve`.
#[derive(clap::Args, Debug, Clone)]
pub(crate) struct ServeArgs {
    /// OTLP/HTTP listener (`POST /v1/traces`); also serves the query API unless `--api`
    /// names another address.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:4318")]
    otlp_http: SocketAddr,
    /// OTLP/gRPC listener (`opentelemetry.proto.collector.trace.v1.TraceService/Export`).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:4317")]
    otlp_grpc: SocketAddr,
    /// Zipkin v2 listener (`POST /api/v2/spans`).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:9411")]
    zipkin: SocketAddr,
    /// Query API listener (`/api/query`, `/api/traces/{id}`); default: the OTLP/HTTP one.
    #[arg(long, value_name = "ADDR")]
    api: Option<SocketAddr>,
    /// Largest request body accepted, in bytes, before and after gzip decompression
    /// (larger: 413, gRPC RESOURCE_EXHAUSTED).
    #[arg(long, value_name = "BYTES", default_value_t = 16 << 20)]
    max_body_bytes: usize,
    /// Most bytes held at once by requests not yet durable (their bodies, inflated
    /// bodies and decoded batches); a request that would pass it is refused with 429
    /// (gRPC RESOURCE_EXHAUSTED) for the client to retry, so memory stays bounded under
    /// overload. A request arriving when nothing else is in flight is always taken.
    #[arg(long, value_name = "BYTES", default_value_t = 256 << 20)]
    max_in_flight_bytes: usize,
    /// Require `Authorization: Bearer <token>` (gRPC: metadata `authorization`) on
    /// every request, with the token read from this file (surrounding whitespace
    /// ignored).
    #[arg(long, value_name = "FILE")]
    auth_token_file: Option<PathBuf>,
    /// When appends are durable: `always` (fsync before answering, shared by
    /// concurrent requests), `interval:MS`, or `none`.
    #[arg(long, default_value = "always", value_parser = clap::builder::ValueParser::new(|s: &str| s.parse::<SyncPolicy>()))]
    sync: SyncPolicy,
}

/// Why `serve` could not start, or why a request was refused.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ServeError {
    /// A listener could not be bound.
    #[error("--{flag} {addr}: cannot listen: {source}")]
    Bind { flag: &'static str, addr: SocketAddr, source: std::io::Error },
    /// The token file could not be read, or holds no token.
    #[error("--auth-token-file {path}: {reason}")]
    Token { path: PathBuf, reason: String },
    /// A listener failed while serving.
    #[error("{listener} listener: {reason}")]
    Serve { listener: String, reason: String },
    /// The request body could not be read off the connection.
    #[error("reading the request body: {0}")]
    Body(String),
    /// The body (or what it inflates to) is larger than `--max-body-bytes`.
    #[error("{0}")]
    TooLarge(String),
    /// The body is not a well-formed payload of its content type.
    #[error("{0}")]
    Malformed(String),
    /// The content type or encoding is not one this endpoint takes.
    #[error("{0}")]
    UnsupportedMedia(String),
    /// Taking the request would pass `--max-in-flight-bytes`: retry later.
    #[error("{0}")]
    Overloaded(String),
    /// The store refused the batch.
    #[error("storing the spans: {0}")]
    Store(EngineError),
    /// The blocking task that decoded and appended died (a bug).
    #[error("internal error (a bug in spanstore): {0}")]
    Internal(String),
}

impl ServeError {
    fn from_ingest(err: IngestError) -> ServeError {
        if err.is_too_large() {
            ServeError::TooLarge(err.to_string())
        } else {
            ServeError::Malformed(err.to_string())
        }
    }

    /// The HTTP status a request refused with this error gets.
    fn http_status(&self) -> StatusCode {
        match self {
            ServeError::Body(_) | ServeError::Malformed(_) => StatusCode::BAD_REQUEST,
            ServeError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ServeError::UnsupportedMedia(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ServeError::Overloaded(_) => StatusCode::TOO_MANY_REQUESTS,
            ServeError::Store(EngineError::InvalidBatch(_)) => StatusCode::BAD_REQUEST,
            // Retryable: the store is shutting down.
            ServeError::Store(EngineError::Closed { .. }) => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The gRPC status code of the same refusal.
    fn grpc_code(&self) -> tonic::Code {
        match self {
            ServeError::Body(_) | ServeError::Malformed(_) | ServeError::UnsupportedMedia(_) => {
                tonic::Code::InvalidArgument
            }
            ServeError::TooLarge(_) | ServeError::Overloaded(_) => tonic::Code::ResourceExhausted,
            ServeError::Store(EngineError::InvalidBatch(_)) => tonic::Code::InvalidArgument,
            ServeError::Store(EngineError::Closed { .. }) => tonic::Code::Unavailable,
            _ => tonic::Code::Internal,
        }
    }
}

/// What every handler shares.
pub(crate) struct AppState {
    store: Arc<Store>,
    max_body_bytes: usize,
    token: Option<auth::Token>,
    in_flight: Arc<InFlight>,
}

/// The bytes held by requests that are not yet durable, against their limit.
#[derive(Debug)]
pub(crate) struct InFlight {
    used_bytes: AtomicUsize,
    limit_bytes: usize,
}

impl InFlight {
    pub(crate) fn new(limit_bytes: usize) -> Arc<InFlight> {
        Arc::new(InFlight { used_bytes: AtomicUsize::new(0), limit_bytes })
    }

    /// Bytes held now.
    #[cfg(test)]
    pub(crate) fn used_bytes(&self) -> usize {
        self.used_bytes.load(Ordering::Relaxed)
    }

    /// An empty reservation, to grow as the request's bytes become known.
    pub(crate) fn reservation(self: &Arc<Self>) -> Reservation {
        Reservation { budget: Arc::clone(self), bytes: 0 }
    }

    /// Adds `bytes` unless that passes the limit while other requests hold bytes (so a
    /// request alone always goes through: `--max-body-bytes` bounds it).
    fn add(&self, held_by_caller: usize, bytes: usize) -> Result<(), ServeError> {
        let mut used = self.used_bytes.load(Ordering::Relaxed);
        loop {
            let others = used.saturating_sub(held_by_caller);
            let next = used.saturating_add(bytes);
            if others > 0 && next > self.limit_bytes {
                return Err(ServeError::Overloaded(format!(
                    "server overloaded: {used} bytes of requests in flight, {bytes} more would pass the limit of {} \
                     (--max-in-flight-bytes); retry later",
                    self.limit_bytes
                )));
            }
            match self.used_bytes.compare_exchange_weak(used, next, Ordering::AcqRel, Ordering::Relaxed) {
                Ok(_) => return Ok(()),
                Err(now) => used = now,
            }
        }
    }
}

/// Bytes one request holds in the [`InFlight`] budget; given back when dropped (after
/// the request's append returned, or when it was refused).
#[derive(Debug)]
pub(crate) struct Reservation {
    budget: Arc<InFlight>,
    bytes: usize,
}

impl Reservation {
    /// Holds `bytes` more, or refuses the request ([`ServeError::Overloaded`]).
    pub(crate) fn grow(&mut self, bytes: usize) -> Result<(), ServeError> {
        self.budget.add(self.bytes, bytes)?;
        self.bytes += bytes;
        Ok(())
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.budget.used_bytes.fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

/// Runs a closure on the blocking pool (decoding, appending, querying).
async fn run_blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ServeError> + Send + 'static,
) -> Result<T, ServeError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| ServeError::Internal(format!("request task: {e}")))?
}

/// Logs a refused request: at `info` when the client sent something wrong, at `error`
/// when the server failed.
fn log_refusal(receiver: &str, err: &ServeError) {
    match err {
        ServeError::Store(_) | ServeError::Internal(_) | ServeError::Serve { .. } => {
            tracing::error!(receiver, "request failed: {err}")
        }
        _ => tracing::info!(receiver, "request refused: {err}"),
    }
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // A second initialisation (tests that run the tool twice in one process) is harmless.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}

/// Runs `spanstore serve` until SIGTERM/SIGINT; returns the exit code.
pub(crate) fn run(data: &Path, args: ServeArgs) -> Result<i32, Box<dyn std::error::Error>> {
    init_logging();
    let token = match &args.auth_token_file {
        Some(path) => Some(auth::Token::read(path)?),
        None => None,
    };
    let options = Options { sync: args.sync, ..Options::default() };
    let store = Store::open(data, options)?;
    let report = store.recovery_report();
    tracing::info!(
        dir = %data.display(),
        records_replayed = report.records_replayed,
        spans_replayed = report.spans_replayed,
        segments = report.segments,
        torn_tails = report.torn_tails.len(),
        damage = report.damage.len(),
        "store open"
    );
    let state = Arc::new(AppState {
        store: Arc::new(store),
        max_body_bytes: args.max_body_bytes,
        token,
        in_flight: InFlight::new(args.max_in_flight_bytes),
    });
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().thread_name("spanstore-serve").build()?;
    let served = runtime.block_on(serve(Arc::clone(&state), &args));
    // Requests whose client went away may still be appending on the blocking pool; let
    // them finish before the store closes.
    runtime.shutdown_timeout(Duration::from_secs(30));
    let AppState { store, .. } = match Arc::try_unwrap(state) {
        Ok(state) => state,
        Err(_) => return Err(Box::new(ServeError::Internal("a request still holds the store at exit".into()))),
    };
    let stats = store.writer_stats();
    tracing::info!(
        records = stats.records,
        fsyncs = stats.syncs,
        groups = stats.groups,
        bytes = stats.bytes,
        "span log totals of this run"
    );
    match Arc::try_unwrap(store) {
        Ok(store) => store.close()?,
        Err(store) => {
            tracing::warn!("a request still holds the store at exit; flushing instead of closing");
            store.flush()?;
        }
    }
    served?;
    tracing::info!("store closed; bye");
    Ok(0)
}

/// Resolves when the shutdown flag flips.
async fn shutdown_signal(mut flag: watch::Receiver<bool>) {
    let _ = flag.wait_for(|stop| *stop).await;
}

async fn wait_for_termination() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = interrupt => tracing::info!("SIGINT: shutting down"),
                    _ = terminate.recv() => tracing::info!("SIGTERM: shutting down"),
                }
            }
            Err(err) => {
                tracing::warn!("cannot listen for SIGTERM ({err}); only SIGINT stops the server");
                let _ = interrupt.await;
                tracing::info!("SIGINT: shutting down");
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
        tracing::info!("interrupted: shutting down");
    }
}

/// One HTTP listener and the routes it serves.
struct HttpListener {
    names: Vec<&'static str>,
    addr: SocketAddr,
    router: axum::Router<Arc<AppState>>,
}

/// Adds `router` to the listener already planned on `addr` (two flags naming the same
/// fixed address share it), or plans a new one.
fn plan(listeners: &mut Vec<HttpListener>, name: &'static str, addr: SocketAddr, router: axum::Router<Arc<AppState>>) {
    if addr.port() != 0 {
        if let Some(existing) = listeners.iter_mut().find(|l| l.addr == addr) {
            existing.names.push(name);
            let merged = std::mem::take(&mut existing.router).merge(router);
            existing.router = merged;
            return;
        }
    }
    listeners.push(HttpListener { names: vec![name], addr, router });
}

async fn bind(flag: &'static str, addr: SocketAddr) -> Result<tokio::net::TcpListener, ServeError> {
    tokio::net::TcpListener::bind(addr).await.map_err(|source| ServeError::Bind { flag, addr, source })
}

async fn serve(state: Arc<AppState>, args: &ServeArgs) -> Result<(), ServeError> {
    let mut listeners = Vec::new();
    match args.api {
        Some(api) => {
            plan(&mut listeners, "otlp-http", args.otlp_http, http::otlp_router());
            plan(&mut listeners, "api", api, http::api_router());
        }
        None => {
            let router = http::otlp_router().merge(http::api_router());
            listeners.push(HttpListener { names: vec!["otlp-http", "api"], addr: args.otlp_http, router });
        }
    }
    plan(&mut listeners, "zipkin", args.zipkin, http::zipkin_router());

    let mut bound = Vec::new();
    let mut addresses: Vec<(&'static str, SocketAddr)> = Vec::new();
    for listener in listeners {
        let flag = listener.names.first().copied().unwrap_or("otlp-http");
        let socket = bind(flag, listener.addr).await?;
        let local = socket.local_addr().map_err(|source| ServeError::Bind { flag, addr: listener.addr, source })?;
        for name in &listener.names {
            addresses.push((name, local));
        }
        bound.push((listener.names.join("+"), socket, http::finish(listener.router, Arc::clone(&state))));
    }
    let grpc_socket = bind("otlp-grpc", args.otlp_grpc).await?;
    let grpc_local = grpc_socket.local_addr().map_err(|source| ServeError::Bind {
        flag: "otlp-grpc",
        addr: args.otlp_grpc,
        source,
    })?;
    addresses.push(("otlp-grpc", grpc_local));
    addresses.sort_by_key(|(name, _)| ["otlp-http", "otlp-grpc", "zipkin", "api"].iter().position(|n| n == name));

    // One parseable line on stdout, for scripts and tests that start on port 0.
    let line: Vec<String> = addresses.iter().map(|(name, addr)| format!("{name}={addr}")).collect();
    let mut stdout = std::io::stdout();
    let _ = writeln!(stdout, "listening {}", line.join(" "));
    let _ = stdout.flush();
    tracing::info!(addresses = %line.join(" "), max_body_bytes = args.max_body_bytes, auth = state.token.is_some(), "serving");

    let (stop, stopped) = watch::channel(false);
    let mut tasks = tokio::task::JoinSet::new();
    for (name, socket, router) in bound {
        let signal = shutdown_signal(stopped.clone());
        tasks.spawn(async move {
            axum::serve(socket, router)
                .with_graceful_shutdown(signal)
                .await
                .map_err(|e| ServeError::Serve { listener: name, reason: e.to_string() })
        });
    }
    let grpc = grpc::service(Arc::clone(&state));
    let signal = shutdown_signal(stopped.clone());
    tasks.spawn(async move {
        tonic::transport::Server::builder()
            .add_service(grpc)
            .serve_with_incoming_shutdown(tonic::transport::server::TcpIncoming::from(grpc_socket), signal)
            .await
            .map_err(|e| ServeError::Serve { listener: "otlp-grpc".into(), reason: e.to_string() })
    });

    // Stop on a signal, or as soon as a listener ends on its own (it failed: then stop
    // the others too).
    let mut failure = None;
    tokio::select! {
        _ = wait_for_termination() => {}
        Some(joined) = tasks.join_next() => {
            failure = Some(flatten(joined).err().unwrap_or_else(|| ServeError::Serve {
                listener: "a".into(),
                reason: "stopped unexpectedly".into(),
            }));
        }
    }
    let _ = stop.send(true);
    while let Some(joined) = tasks.join_next().await {
        if let Err(err) = flatten(joined) {
            tracing::error!("{err}");
            failure.get_or_insert(err);
        }
    }
    tracing::info!("listeners stopped; closing the store");
    match failure {
        Some(err) => Err(err),
        None => Ok(()),
    }
}

fn flatten(joined: Result<Result<(), ServeError>, tokio::task::JoinError>) -> Result<(), ServeError> {
    joined.map_err(|e| ServeError::Internal(format!("listener task: {e}")))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_flight_bytes_are_bounded_and_given_back() {
        let budget = InFlight::new(1000);
        let mut first = budget.reservation();
        // Alone, a request is taken whatever its size.
        first.grow(1500).unwrap();
        assert_eq!(budget.used_bytes(), 1500);
        let mut second = budget.reservation();
        let refused = second.grow(10).unwrap_err();
        assert_eq!(refused.http_status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(refused.grpc_code(), tonic::Code::ResourceExhausted);
        assert!(refused.to_string().contains("--max-in-flight-bytes"), "{refused}");
        drop(second);
        assert_eq!(budget.used_bytes(), 1500);
        drop(first);
        assert_eq!(budget.used_bytes(), 0);

        let mut a = budget.reservation();
        a.grow(400).unwrap();
        let mut b = budget.reservation();
        b.grow(500).unwrap();
        assert!(b.grow(200).is_err(), "b would pass the limit while a holds bytes");
        b.grow(100).unwrap();
        assert_eq!(budget.used_bytes(), 1000);
        drop(a);
        // Now b is alone: it may grow past the limit.
        b.grow(5000).unwrap();
        drop(b);
        assert_eq!(budget.used_bytes(), 0);
    }

    #[test]
    fn concurrent_reservations_never_pass_the_limit_together() {
        let budget = InFlight::new(10_000);
        let mut holder = budget.reservation();
        holder.grow(1).unwrap();
        let peak = Arc::new(AtomicUsize::new(0));
        std::thread::scope(|scope| {
            for _ in 0..8 {
                let (budget, peak) = (Arc::clone(&budget), Arc::clone(&peak));
                scope.spawn(move || {
                    for _ in 0..2000 {
                        let mut r = budget.reservation();
                        if r.grow(3_000).is_ok() {
                            peak.fetch_max(budget.used_bytes(), Ordering::Relaxed);
                        }
                    }
                });
            }
        });
        assert!(peak.load(Ordering::Relaxed) <= 10_000, "peak {}", peak.load(Ordering::Relaxed));
        drop(holder);
        assert_eq!(budget.used_bytes(), 0);
    }
}
