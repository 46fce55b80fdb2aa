//! A fast, deterministic generator of serverless-shaped spans (DESIGN.md section 3):
//! the data of `spanstore gen`, `spanstore demo` and the benches. docs/WORKLOAD.md
//! describes the shape, every attribute and the planted anomalies.
//!
//! Each trace is an API-gateway span, then the Lambda invocation span under it, then 0 to
//! 4 client spans (DynamoDB, SQS, S3, HTTP); an SQS send continues in the service's
//! worker function as a consumer invocation (with, half the time, a DynamoDB call). The
//! topology is fixed — 8 services in 3 regions, 50 functions, 50 routes, 3 availability
//! zones and one subnet per service and zone — so its names are the same for every
//! seed. Routes and users (`enduser.id`, [`USERS`] of them) are Zipf-distributed, the
//! request rate follows a day curve ([`DIURNAL_AMPLITUDE`], [`PEAK_HOUR_UTC`]),
//! durations are log-normal per operation, [`COLD_START_RATE`] of invocations are cold
//! starts (slower by a per-language initialization) and about 1% of spans have status
//! error.
//!
//! Two anomalies are planted, for faceted queries to find:
//! - in subnet [`ANOMALY_SUBNET`] ([`ANOMALY_ZONE`], service [`ANOMALY_SERVICE`]) the
//!   DynamoDB `PutItem` calls fail [`ANOMALY_PUT_ITEM_ERROR_RATE`] of the time during
//!   the two hours of [`Config::anomaly_window`], in the middle of the time range;
//! - function [`SLOW_FUNCTION`] runs two versions side by side, half the traffic each,
//!   and on route [`SLOW_ROUTE`] version [`SLOW_VERSION`] is [`SLOWDOWN`] times slower
//!   than [`BASELINE_VERSION`], all the time.
//!
//! Two ways to generate:
//! - [`Workload`]: a data set of a known size over a time range, cut into chunks that
//!   are generated on many threads and delivered in order — the same bytes whatever the
//!   thread count. `spanstore gen` and `spanstore demo` use this.
//! - [`Generator`]: one open-ended stream at a given request rate, for the benches.
//!
//! Batches are built straight into [`SpanBatch`] with no allocation per span, grouped
//! by resource as an exporter in one execution environment would send them: a group of
//! a few requests of one route in one zone gives one gateway resource, one function
//! resource and, if any message was sent, one worker resource. Traces are always whole:
//! where a batch must hold an exact number of spans, its last requests are planned to
//! fit.
//!
//! Everything comes from seeded splitmix64 streams: the same seed and the same calls
//! give the same batches, bit for bit.
#![deny(missing_docs)]
#![forbid(unsafe_code)]

mod diurnal;
mod generator;
mod parallel;
mod rng;
mod topology;

pub use diurnal::DayCurve;
pub use generator::Generator;
pub use parallel::Workload;
pub use rng::{mix64, Rng};

use spanstore_engine::SpanBatch;

/// Where generated data starts by default: 2026-11-26T00:00:00Z, in ns since the epoch.
pub const DEFAULT_START_UNIX_NANO: u64 = 1_795_651_200_000_000_000;

/// How long generated data lasts by default: one day, one whole turn of the day curve.
pub const DEFAULT_HOURS: f64 = 24.0;

/// Requests per second of the open-ended [`Generator`], on average over the day. At
/// about 4.5 spans per request, 20 million spans cover about 2.5 hours.
pub const DEFAULT_INVOCATIONS_PER_SECOND: f64 = 500.0;

/// Spans per chunk of a [`Workload`]: the unit of parallel generation. Chunk
/// boundaries, and so the output, depend only on the number of spans.
pub const CHUNK_SPANS: u64 = 20_000;

/// About how many spans one batch (one line of `spanstore gen`) holds.
pub const LINE_SPANS: usize = 1_000;

/// Services in the topology.
pub const SERVICES: [&str; 8] =
    ["checkout", "orders", "payments", "inventory", "catalog", "users", "notifications", "shipping"];

/// Regions; service `i` runs in `REGIONS[i % 3]`, in zones `a`, `b` and `c`.
pub const REGIONS: [&str; 3] = ["us-east-1", "eu-west-1", "ap-southeast-2"];

/// Distinct users (`enduser.id` is `user-1` to `user-100000`, `user-1` the busiest).
pub const USERS: usize = 100_000;

/// Exponent of the Zipf law of users: user of rank `k` makes requests in proportion to
/// `k^-0.8`.
pub const USER_ZIPF_EXPONENT: f64 = 0.8;

/// Exponent of the Zipf law of routes: the route of rank `k` (0-based) gets requests in
/// proportion to `(k + 1)^-0.9`.
pub const ROUTE_ZIPF_EXPONENT: f64 = 0.9;

/// Share of requests with a signed-in user (`enduser.id` set on the gateway span).
pub const SIGNED_IN_RATE: f64 = 0.8;

/// Share of function invocations that are cold starts.
pub const COLD_START_RATE: f64 = 0.02;

/// Share of requests the gateway's authorizer refuses (401 or 403, no function span).
pub const AUTHORIZER_REJECT_RATE: f64 = 0.005;

/// Relative swing of the day curve: the rate is `1 ± 0.6` times the mean.
pub const DIURNAL_AMPLITUDE: f64 = 0.6;

/// Hour of the day (UTC) when the request rate peaks; it is lowest 12 hours later.
pub const PEAK_HOUR_UTC: f64 = 15.0;

/// The service of the subnet with the planted `PutItem` error spike.
pub const ANOMALY_SERVICE: &str = "orders";

/// The availability zone of that subnet.
pub const ANOMALY_ZONE: &str = "eu-west-1b";

/// Index of [`ANOMALY_ZONE`] among the service's zones.
const ANOMALY_ZONE_INDEX: usize = 1;

/// The subnet whose `PutItem` calls fail often during the planted anomaly.
pub const ANOMALY_SUBNET: &str = "subnet-0b7e5c1a9d3f42e60";

/// How long the `PutItem` error spike lasts (see [`Config::anomaly_window`]).
pub const ANOMALY_DURATION_NS: u64 = 2 * 3600 * 1_000_000_000;

/// Share of `PutItem` calls in [`ANOMALY_SUBNET`] that fail during the spike (0.8%
/// elsewhere and at other times).
pub const ANOMALY_PUT_ITEM_ERROR_RATE: f64 = 0.4;

/// Start of the spike with the default time range: 2026-11-26T11:00:00Z.
pub const DEFAULT_ANOMALY_START_UNIX_NANO: u64 = DEFAULT_START_UNIX_NANO + 11 * 3600 * 1_000_000_000;

/// The function deployed in two versions side by side.
pub const SLOW_FUNCTION: &str = "catalog-get";

/// The route of [`SLOW_FUNCTION`] that is slow on [`SLOW_VERSION`].
pub const SLOW_ROUTE: &str = "/catalog/{id}/history";

/// The older version of [`SLOW_FUNCTION`] (half its traffic).
pub const BASELINE_VERSION: &str = "17";

/// The newer version of [`SLOW_FUNCTION`] (the other half), [`SLOWDOWN`] times slower
/// on [`SLOW_ROUTE`].
pub const SLOW_VERSION: &str = "18";

/// How much slower [`SLOW_ROUTE`] is on [`SLOW_VERSION`]: every function span of it
/// takes this many times as long.
pub const SLOWDOWN: f64 = 5.0;

/// Popularity rank (0-based) of `POST /orders` (function `orders-create`, whose first
/// call is the `PutItem` of the error spike) among the 50 routes.
pub const ANOMALY_ROUTE_RANK: usize = 1;

/// Popularity rank (0-based) of [`SLOW_ROUTE`] among the 50 routes.
pub const SLOW_ROUTE_RANK: usize = 4;

/// Where generated data lies in time.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Config {
    /// Start of the data, ns since the epoch.
    pub start_unix_nano: u64,
    /// Length of the time range, ns: a [`Workload`] fills it exactly; the anomaly window
    /// lies in its middle.
    pub duration_ns: u64,
    /// Mean request rate of the open-ended [`Generator`] (each request gives about 4.5
    /// spans); a [`Workload`] ignores it.
    pub invocations_per_second: f64,
}

impl Default for Config {
    fn default() -> Self {
        Config::with_hours(DEFAULT_START_UNIX_NANO, DEFAULT_HOURS)
    }
}

impl Config {
    /// The range of `hours` hours from `start_unix_nano`.
    pub fn with_hours(start_unix_nano: u64, hours: f64) -> Config {
        Config {
            start_unix_nano,
            duration_ns: (hours.max(0.0) * 3600e9) as u64,
            invocations_per_second: DEFAULT_INVOCATIONS_PER_SECOND,
        }
    }

    /// End of the time range (exclusive), ns since the epoch.
    pub fn end_unix_nano(&self) -> u64 {
        self.start_unix_nano.saturating_add(self.duration_ns)
    }

    /// When the `PutItem` error spike in [`ANOMALY_SUBNET`] lasts: the two hours in the
    /// middle of the time range (all of it when shorter than two hours).
    pub fn anomaly_window(&self) -> std::ops::Range<u64> {
        let middle = self.start_unix_nano.saturating_add(self.duration_ns / 2);
        let half = (ANOMALY_DURATION_NS / 2).min(self.duration_ns / 2);
        middle - half..middle.saturating_add(half)
    }
}

/// One batch of exactly `spans` spans: the first batch of [`Generator::new`]`(seed)`.
pub fn batch(seed: u64, spans: usize) -> SpanBatch {
    Generator::new(seed).next_batch(spans)
}

/// `count` successive batches of `spans` spans each from one generator.
pub fn batches(seed: u64, count: usize, spans: usize) -> Vec<SpanBatch> {
    let mut generator = Generator::new(seed);
    (0..count).map(|_| generator.next_batch(spans)).collect()
}

const _: () = assert!(
    DEFAULT_ANOMALY_START_UNIX_NANO + ANOMALY_DURATION_NS / 2 == DEFAULT_START_UNIX_NANO + 12 * 3600 * 1_000_000_000
);

#[cfg(test)]
mod tests;
