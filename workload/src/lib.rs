//! A small, fast, deterministic generator of serverless-shaped spans for the benches and
//! the `append_load` driver (DESIGN.md section 3).
//!
//! Each trace is an API-gateway span, then the Lambda invocation span under it, then 0 to
//! 4 client spans (DynamoDB, SQS, S3, HTTP); an SQS send continues in the service's
//! worker function as a consumer invocation (with, half the time, a DynamoDB call). The
//! topology is fixed — 8 services in 3 regions, 50 functions, 3 availability zones and
//! one subnet per service and zone — so its names are the same for every seed; traffic
//! is skewed towards a few popular functions. Attributes follow the OpenTelemetry
//! semantic conventions (`http.request.method`, `http.route`,
//! `http.response.status_code`, `faas.trigger`, `faas.coldstart`, `faas.invocation_id`,
//! `db.system`, `db.operation.name`, `messaging.system`, `aws.request_id`, `enduser.id`;
//! resource `service.name`, `faas.name`, `faas.version`, `cloud.region`,
//! `cloud.availability_zone`, `net.subnet.id`). Durations are log-normal, about 2% of
//! invocations are cold starts and about 1% of spans have status error. One anomaly is
//! planted: in subnet [`ANOMALY_SUBNET`] the `PutItem` calls fail 40% of the time during
//! two hours, from [`ANOMALY_START_OFFSET_NS`] after the start of the data.
//!
//! Batches are built straight into [`SpanBatch`] with no intermediate allocation per
//! span, grouped by resource as an exporter in one execution environment would send
//! them: a group of a few invocations of one function in one zone gives one gateway
//! resource, one function resource and, if any message was sent, one worker resource.
//! A batch holds exactly the number of spans asked for, so the last trace of a batch
//! may be cut short (exporters split traces across requests too).
//!
//! Everything comes from a seeded splitmix64 stream: the same seed and the same calls
//! give the same batches, bit for bit. This is the generator for benchmarks; the
//! `spanstore gen` command builds on the same shape.
#![deny(missing_docs)]
#![forbid(unsafe_code)]

use spanstore_engine::{SpanBatch, SpanFields, SpanId, SpanKind, StatusCode, TraceId, ValueRef};

/// Where generated data starts by default: 2026-11-26T12:00:00Z, in ns since the epoch.
pub const DEFAULT_START_UNIX_NANO: u64 = 1_795_694_400_000_000_000;

/// Invocations per second of generated time, by default. At about 4.5 spans per
/// invocation, 20 million spans cover about 2.5 hours.
pub const DEFAULT_INVOCATIONS_PER_SECOND: f64 = 500.0;

/// The subnet whose `PutItem` calls fail often during the planted anomaly.
pub const ANOMALY_SUBNET: &str = "subnet-0b7e5c1a9d3f42e60";

/// When the anomaly starts, counted from the start of the data.
pub const ANOMALY_START_OFFSET_NS: u64 = 30 * 60 * 1_000_000_000;

/// How long the anomaly lasts.
pub const ANOMALY_DURATION_NS: u64 = 2 * 3600 * 1_000_000_000;

/// Services in the topology.
pub const SERVICES: [&str; 8] =
    ["checkout", "orders", "payments", "inventory", "catalog", "users", "notifications", "shipping"];

const REGIONS: [&str; 3] = ["us-east-1", "eu-west-1", "ap-southeast-2"];

/// A splitmix64 pseudo-random stream: tiny, fast and good enough for workload data.
#[derive(Clone, Debug)]
pub struct Rng {
    state: u64,
    /// The second normal deviate of the last Box-Muller pair, not yet used.
    spare_normal: Option<f64>,
}

impl Rng {
    /// A stream for `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng { state: seed, spare_normal: None }
    }

    /// The next 64 random bits.
    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..bound` (`bound` > 0), by multiply-shift (bias below 2^-32).
    #[inline]
    pub fn below(&mut self, bound: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(bound)) >> 64) as u64
    }

    /// A float in `[0, 1)`.
    #[inline]
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// True with probability `p`.
    #[inline]
    pub fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    /// A standard normal deviate (Box-Muller, using both values of each pair).
    pub fn normal(&mut self) -> f64 {
        if let Some(spare) = self.spare_normal.take() {
            return spare;
        }
        // 1 - unit() lies in (0, 1], so the logarithm is finite.
        let radius = (-2.0 * (1.0 - self.unit()).ln()).sqrt();
        let angle = std::f64::consts::TAU * self.unit();
        self.spare_normal = Some(radius * angle.sin());
        radius * angle.cos()
    }

    /// A log-normal duration in ns with the given median and shape `sigma`.
    pub fn log_normal_ns(&mut self, median_ns: f64, sigma: f64) -> u64 {
        (median_ns * (sigma * self.normal()).exp()).max(1000.0) as u64
    }

    /// An exponential deviate with the given mean.
    pub fn exponential(&mut self, mean: f64) -> f64 {
        -mean * (1.0 - self.unit()).ln()
    }

    /// An index drawn with the given (cumulative) weights.
    fn pick(&mut self, cumulative: &[u32]) -> usize {
        let total = cumulative.last().copied().unwrap_or(0);
        let target = self.below(u64::from(total.max(1))) as u32;
        cumulative.partition_point(|&c| c <= target)
    }
}

/// A client call a function makes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Call {
    Dynamo(&'static str),
    SqsSend,
    S3(&'static str),
    Http,
}

/// The HTTP functions of every service: route suffix, method, first call, other calls.
const HTTP_FUNCTIONS: [(&str, &str, &str, Call, &[Call]); 6] = [
    ("create", "POST", "", Call::Dynamo("PutItem"), &[Call::SqsSend, Call::Dynamo("GetItem"), Call::Http]),
    ("get", "GET", "/{id}", Call::Dynamo("GetItem"), &[Call::S3("GetObject"), Call::Dynamo("Query")]),
    ("list", "GET", "", Call::Dynamo("Query"), &[Call::Dynamo("GetItem"), Call::S3("GetObject")]),
    ("update", "PUT", "/{id}", Call::Dynamo("UpdateItem"), &[Call::Dynamo("GetItem"), Call::SqsSend, Call::Http]),
    ("delete", "DELETE", "/{id}", Call::Dynamo("DeleteItem"), &[Call::SqsSend, Call::S3("DeleteObject")]),
    ("search", "GET", "/search", Call::Http, &[Call::S3("GetObject"), Call::Dynamo("Query")]),
];

/// Services that also have the `search` function (8 × 5 + 2 = 42 HTTP functions, plus
/// 8 workers: 50 functions).
const SERVICES_WITH_SEARCH: usize = 2;

struct Service {
    name: &'static str,
    region: &'static str,
    zones: [String; 3],
    subnets: [String; 3],
    queue: String,
    table: String,
    bucket: String,
    /// Index of the service's SQS worker in `Topology::functions`.
    worker: usize,
}

struct Function {
    service: usize,
    name: String,
    version: String,
    memory_mb: i64,
    language: &'static str,
    method: &'static str,
    route: String,
    /// The span name of the gateway span: method and route.
    gateway_span_name: String,
    first_call: Call,
    other_calls: &'static [Call],
}

/// The fixed services and functions (the same for every seed).
struct Topology {
    services: Vec<Service>,
    functions: Vec<Function>,
    /// Indexes of the HTTP functions, most popular first, and their cumulative weights.
    http_functions: Vec<usize>,
    http_cumulative: Vec<u32>,
}

impl Topology {
    fn new() -> Topology {
        // A fixed stream, not the caller's seed: names must not change with the seed.
        let mut names = Rng::new(0x5eed_0f70_9010_109e);
        let mut services = Vec::with_capacity(SERVICES.len());
        let mut functions = Vec::new();
        for (service_index, &name) in SERVICES.iter().enumerate() {
            let region = REGIONS[service_index % REGIONS.len()];
            let zones = ["a", "b", "c"].map(|z| format!("{region}{z}"));
            let subnets = [0, 1, 2].map(|_| format!("subnet-0{:016x}", names.next_u64()));
            let http_count = if service_index < SERVICES_WITH_SEARCH { 6 } else { 5 };
            for &(suffix, method, route_tail, first_call, other_calls) in HTTP_FUNCTIONS.iter().take(http_count) {
                let route = format!("/{name}{route_tail}");
                functions.push(Function {
                    service: service_index,
                    name: format!("{name}-{suffix}"),
                    version: (1 + names.below(40)).to_string(),
                    memory_mb: [256, 512, 1024][names.below(3) as usize],
                    language: ["nodejs", "python", "java"][names.below(3) as usize],
                    method,
                    gateway_span_name: format!("{method} {route}"),
                    route,
                    first_call,
                    other_calls,
                });
            }
            let worker = functions.len();
            functions.push(Function {
                service: service_index,
                name: format!("{name}-worker"),
                version: (1 + names.below(40)).to_string(),
                memory_mb: 512,
                language: "python",
                method: "",
                route: String::new(),
                gateway_span_name: String::new(),
                first_call: Call::Dynamo("UpdateItem"),
                other_calls: &[],
            });
            services.push(Service {
                name,
                region,
                zones,
                subnets,
                queue: format!("{name}-events"),
                table: format!("{name}-table"),
                bucket: format!("{name}-assets-{:08x}", names.next_u64() as u32),
                worker,
            });
        }
        // The planted anomaly: the second subnet of `orders` gets a fixed, documented
        // name so queries can look for it.
        if let Some(orders) = services.get_mut(1) {
            orders.subnets[1] = ANOMALY_SUBNET.to_owned();
        }
        let mut http_functions: Vec<usize> =
            (0..functions.len()).filter(|&f| !functions[f].method.is_empty()).collect();
        // Shuffle (Fisher-Yates), then weight by a Zipf-like 1/(rank+1)^0.9.
        for i in (1..http_functions.len()).rev() {
            let j = names.below(i as u64 + 1) as usize;
            http_functions.swap(i, j);
        }
        let mut total = 0u32;
        let http_cumulative = (0..http_functions.len())
            .map(|rank| {
                total += (10_000.0 / ((rank + 1) as f64).powf(0.9)) as u32;
                total
            })
            .collect();
        Topology { services, functions, http_functions, http_cumulative }
    }
}

/// How a [`Generator`] places its data in time.
#[derive(Clone, Copy, Debug)]
pub struct Config {
    /// Start of the first invocation, ns since the epoch.
    pub start_unix_nano: u64,
    /// Mean invocation rate in generated time (each invocation gives about 4.5 spans).
    pub invocations_per_second: f64,
}

impl Default for Config {
    fn default() -> Self {
        Config { start_unix_nano: DEFAULT_START_UNIX_NANO, invocations_per_second: DEFAULT_INVOCATIONS_PER_SECOND }
    }
}

/// A client span planned for an invocation.
#[derive(Clone, Copy, Default)]
struct Child {
    call: Option<Call>,
    span_id: SpanId,
    start_unix_nano: u64,
    duration_ns: u64,
    http_status: i64,
    error: Option<&'static str>,
}

/// One planned invocation: the gateway span, the function span and its children.
#[derive(Clone, Copy, Default)]
struct Invocation {
    trace_id: TraceId,
    gateway_span_id: SpanId,
    function_span_id: SpanId,
    start_unix_nano: u64,
    gateway_duration_ns: u64,
    function_start_unix_nano: u64,
    function_duration_ns: u64,
    cold_start: bool,
    http_status: i64,
    error: Option<&'static str>,
    user: Option<u64>,
    child_count: usize,
    children: [Child; 4],
}

/// Cumulative weights of 0, 1, 2, 3 and 4 client calls per invocation.
const CHILD_COUNT_CUMULATIVE: [u32; 5] = [10, 40, 70, 90, 100];

/// Most invocations one resource group holds.
const GROUP_INVOCATIONS_MAX: u64 = 16;

/// Produces successive batches of serverless-shaped spans, deterministic for a seed.
pub struct Generator {
    rng: Rng,
    topology: Topology,
    config: Config,
    /// Start of the next invocation, ns since the epoch.
    clock_unix_nano: f64,
    spans_generated: u64,
    plan: Vec<Invocation>,
}

impl Generator {
    /// A generator with the default [`Config`].
    pub fn new(seed: u64) -> Generator {
        Generator::with_config(seed, Config::default())
    }

    /// A generator with its own time placement.
    pub fn with_config(seed: u64, config: Config) -> Generator {
        Generator {
            // Mix the seed so that nearby seeds give unrelated streams.
            rng: Rng::new(Rng::new(seed).next_u64()),
            topology: Topology::new(),
            config,
            clock_unix_nano: config.start_unix_nano as f64,
            spans_generated: 0,
            plan: Vec::with_capacity(GROUP_INVOCATIONS_MAX as usize),
        }
    }

    /// Spans generated so far.
    pub fn spans_generated(&self) -> u64 {
        self.spans_generated
    }

    /// Start of the next invocation, ns since the epoch.
    pub fn clock_unix_nano(&self) -> u64 {
        self.clock_unix_nano as u64
    }

    /// The next batch, of exactly `spans` spans.
    pub fn next_batch(&mut self, spans: usize) -> SpanBatch {
        let mut batch = SpanBatch::new();
        self.fill(&mut batch, spans);
        batch
    }

    /// Appends exactly `spans` spans to `batch`.
    pub fn fill(&mut self, batch: &mut SpanBatch, spans: usize) {
        let target = batch.len() + spans;
        while batch.len() < target {
            self.group(batch, target);
        }
        self.spans_generated += spans as u64;
    }

    /// Plans a group of invocations of one function in one zone, then writes its spans
    /// resource by resource, stopping when `batch` holds `target` spans.
    fn group(&mut self, batch: &mut SpanBatch, target: usize) {
        let topology = &self.topology;
        let rng = &mut self.rng;
        let rank = rng.pick(&topology.http_cumulative);
        let function_index = topology.http_functions.get(rank).copied().unwrap_or(0);
        let Some(function) = topology.functions.get(function_index) else {
            return;
        };
        let Some(service) = topology.services.get(function.service) else {
            return;
        };
        let zone = rng.below(3) as usize;
        let anomalous = service.subnets[zone] == ANOMALY_SUBNET;
        let invocations = 1 + rng.below(GROUP_INVOCATIONS_MAX);
        let mean_gap_ns = 1e9 / self.config.invocations_per_second.max(1e-9);
        self.plan.clear();
        for _ in 0..invocations {
            self.clock_unix_nano += rng.exponential(mean_gap_ns);
            let start = self.clock_unix_nano as u64;
            let in_anomaly = anomalous && {
                let offset = start.saturating_sub(self.config.start_unix_nano);
                (ANOMALY_START_OFFSET_NS..ANOMALY_START_OFFSET_NS + ANOMALY_DURATION_NS).contains(&offset)
            };
            self.plan.push(plan_invocation(rng, function, start, in_anomaly));
        }
        let plan = &self.plan;

        // The gateway's spans, under the service's gateway resource.
        if batch.len() >= target {
            return;
        }
        batch.begin_resource("https://opentelemetry.io/schemas/1.26.0", 0);
        batch.resource_attr("service.name", ValueRef::Str(service.name));
        batch.resource_attr("cloud.provider", ValueRef::Str("aws"));
        batch.resource_attr("cloud.platform", ValueRef::Str("aws_api_gateway"));
        batch.resource_attr("cloud.region", ValueRef::Str(service.region));
        batch.begin_scope("aws.apigateway", "2.0", "", 0);
        let mut text = [0u8; 36];
        for invocation in plan {
            if batch.len() >= target {
                return;
            }
            batch.push_span(&SpanFields {
                trace_id: invocation.trace_id,
                span_id: invocation.gateway_span_id,
                name: &function.gateway_span_name,
                kind: SpanKind::Server,
                start_unix_nano: invocation.start_unix_nano,
                duration_ns: invocation.gateway_duration_ns,
                status_code: if invocation.http_status >= 500 { StatusCode::Error } else { StatusCode::Unset },
                flags: 0x301,
                ..SpanFields::default()
            });
            batch.span_attr("http.request.method", ValueRef::Str(function.method));
            batch.span_attr("http.route", ValueRef::Str(&function.route));
            batch.span_attr("http.response.status_code", ValueRef::Int(invocation.http_status));
            let request_id = uuid(&mut text, rng.next_u64(), rng.next_u64());
            batch.span_attr("aws.request_id", ValueRef::Str(request_id));
            if let Some(user) = invocation.user {
                batch.span_attr("enduser.id", ValueRef::Str(user_id(&mut text, user)));
            }
        }

        // The function's invocations and their calls, under the function's resource.
        if batch.len() >= target {
            return;
        }
        begin_function_resource(batch, service, function, zone);
        let mut any_send = false;
        for invocation in plan {
            if batch.len() >= target {
                return;
            }
            batch.push_span(&SpanFields {
                trace_id: invocation.trace_id,
                span_id: invocation.function_span_id,
                parent_span_id: Some(invocation.gateway_span_id),
                name: &function.name,
                kind: SpanKind::Server,
                start_unix_nano: invocation.function_start_unix_nano,
                duration_ns: invocation.function_duration_ns,
                status_code: if invocation.error.is_some() { StatusCode::Error } else { StatusCode::Unset },
                status_message: invocation.error.unwrap_or(""),
                flags: 0x301,
                ..SpanFields::default()
            });
            batch.span_attr("faas.trigger", ValueRef::Str("http"));
            batch.span_attr("faas.coldstart", ValueRef::Bool(invocation.cold_start));
            let invocation_id = uuid(&mut text, rng.next_u64(), rng.next_u64());
            batch.span_attr("faas.invocation_id", ValueRef::Str(invocation_id));
            for child in invocation.children.iter().take(invocation.child_count) {
                if batch.len() >= target {
                    return;
                }
                any_send |= child.call == Some(Call::SqsSend);
                push_call(batch, service, invocation.trace_id, invocation.function_span_id, child);
            }
        }

        // Each SQS send continues in the service's worker.
        if !any_send || batch.len() >= target {
            return;
        }
        let Some(worker) = topology.functions.get(service.worker) else {
            return;
        };
        begin_function_resource(batch, service, worker, zone);
        for invocation in plan {
            for send in
                invocation.children.iter().take(invocation.child_count).filter(|c| c.call == Some(Call::SqsSend))
            {
                if batch.len() >= target {
                    return;
                }
                let queue_delay = rng.log_normal_ns(20e6, 0.8);
                let start = send.start_unix_nano + send.duration_ns + queue_delay;
                let update = rng.chance(0.5).then(|| Child {
                    call: Some(Call::Dynamo("UpdateItem")),
                    span_id: SpanId(rng.next_u64().to_le_bytes()),
                    start_unix_nano: start + rng.log_normal_ns(1e6, 0.5),
                    duration_ns: rng.log_normal_ns(6e6, 0.6),
                    error: rng.chance(0.004).then_some("ProvisionedThroughputExceededException"),
                    ..Child::default()
                });
                let own_ns = rng.log_normal_ns(12e6, 0.7);
                let cold_start = rng.chance(0.02);
                let init_ns = if cold_start { rng.log_normal_ns(400e6, 0.3) } else { 0 };
                let duration = init_ns + own_ns + update.map_or(0, |u| u.start_unix_nano - start + u.duration_ns);
                let span_id = SpanId(rng.next_u64().to_le_bytes());
                let error = update.and_then(|u| u.error);
                batch.push_span(&SpanFields {
                    trace_id: invocation.trace_id,
                    span_id,
                    parent_span_id: Some(send.span_id),
                    name: &service.queue,
                    kind: SpanKind::Consumer,
                    start_unix_nano: start,
                    duration_ns: duration,
                    status_code: if error.is_some() { StatusCode::Error } else { StatusCode::Unset },
                    status_message: error.unwrap_or(""),
                    flags: 0x301,
                    ..SpanFields::default()
                });
                batch.span_attr("faas.trigger", ValueRef::Str("pubsub"));
                batch.span_attr("faas.coldstart", ValueRef::Bool(cold_start));
                let id = uuid(&mut text, rng.next_u64(), rng.next_u64());
                batch.span_attr("faas.invocation_id", ValueRef::Str(id));
                batch.span_attr("messaging.system", ValueRef::Str("aws_sqs"));
                batch.span_attr("messaging.operation.type", ValueRef::Str("process"));
                batch.span_attr("messaging.destination.name", ValueRef::Str(&service.queue));
                if let Some(update) = &update {
                    if batch.len() >= target {
                        return;
                    }
                    push_call(batch, service, invocation.trace_id, span_id, update);
                }
            }
        }
    }
}

/// Plans one HTTP invocation of `function` starting at `start`.
fn plan_invocation(rng: &mut Rng, function: &Function, start: u64, in_anomaly: bool) -> Invocation {
    let mut invocation = Invocation {
        trace_id: TraceId((u128::from(rng.next_u64()) << 64 | u128::from(rng.next_u64())).to_le_bytes()),
        gateway_span_id: SpanId(rng.next_u64().to_le_bytes()),
        function_span_id: SpanId(rng.next_u64().to_le_bytes()),
        start_unix_nano: start,
        cold_start: rng.chance(0.02),
        // Most requests are signed in; users are skewed towards a few heavy ones.
        user: rng.chance(0.8).then(|| (rng.unit() * rng.unit() * 200_000.0) as u64),
        child_count: rng.pick(&CHILD_COUNT_CUMULATIVE),
        ..Invocation::default()
    };
    let integration_ns = rng.log_normal_ns(2e6, 0.4);
    invocation.function_start_unix_nano = start + integration_ns;
    let init_ns = if invocation.cold_start { rng.log_normal_ns(350e6, 0.4) } else { 0 };
    let mut clock = invocation.function_start_unix_nano + init_ns + rng.log_normal_ns(1e6, 0.6);
    let mut child_error = None;
    for (index, child) in invocation.children.iter_mut().take(invocation.child_count).enumerate() {
        let call = if index == 0 || function.other_calls.is_empty() {
            function.first_call
        } else {
            function.other_calls[rng.below(function.other_calls.len() as u64) as usize]
        };
        let (median_ns, sigma) = match call {
            Call::Dynamo(_) => (5e6, 0.6),
            Call::SqsSend => (12e6, 0.5),
            Call::S3(_) => (25e6, 0.7),
            Call::Http => (80e6, 0.8),
        };
        let error_rate = match call {
            Call::Dynamo("PutItem") if in_anomaly => 0.4,
            _ => 0.008,
        };
        let failed = rng.chance(error_rate);
        *child = Child {
            call: Some(call),
            span_id: SpanId(rng.next_u64().to_le_bytes()),
            start_unix_nano: clock,
            duration_ns: rng.log_normal_ns(median_ns, sigma),
            http_status: match (call, failed) {
                (Call::Http, true) => 503,
                (Call::Http, false) => 200,
                _ => 0,
            },
            error: failed.then_some(match call {
                Call::Dynamo("PutItem") => "ConditionalCheckFailedException",
                Call::Dynamo(_) => "ProvisionedThroughputExceededException",
                Call::SqsSend => "AWS.SimpleQueueService.ServiceUnavailable",
                Call::S3(_) => "SlowDown: Please reduce your request rate.",
                Call::Http => "503 Service Unavailable",
            }),
        };
        clock = child.start_unix_nano + child.duration_ns + rng.log_normal_ns(0.5e6, 0.5);
        child_error = child_error.or(child.error);
    }
    // A failed call fails the invocation four times out of five (the rest retry or
    // swallow it); an invocation also fails on its own now and then.
    invocation.error = match child_error {
        Some(message) if rng.chance(0.8) => Some(message),
        _ => rng.chance(0.006).then_some("Runtime.UnhandledPromiseRejection"),
    };
    let own_ns = rng.log_normal_ns(15e6, 0.9);
    invocation.function_duration_ns = clock + own_ns - invocation.function_start_unix_nano;
    invocation.gateway_duration_ns = integration_ns + invocation.function_duration_ns + rng.log_normal_ns(1e6, 0.3);
    invocation.http_status = if invocation.error.is_some() {
        502
    } else if rng.chance(0.03) {
        [400, 403, 404, 409][rng.below(4) as usize]
    } else if function.method == "POST" {
        201
    } else {
        200
    };
    invocation
}

/// Starts the resource (and scope) of `function` running in `zone`.
fn begin_function_resource(batch: &mut SpanBatch, service: &Service, function: &Function, zone: usize) {
    batch.begin_resource("https://opentelemetry.io/schemas/1.26.0", 0);
    batch.resource_attr("service.name", ValueRef::Str(service.name));
    batch.resource_attr("faas.name", ValueRef::Str(&function.name));
    batch.resource_attr("faas.version", ValueRef::Str(&function.version));
    batch.resource_attr("faas.max_memory", ValueRef::Int(function.memory_mb << 20));
    batch.resource_attr("cloud.provider", ValueRef::Str("aws"));
    batch.resource_attr("cloud.platform", ValueRef::Str("aws_lambda"));
    batch.resource_attr("cloud.region", ValueRef::Str(service.region));
    batch.resource_attr("cloud.availability_zone", ValueRef::Str(&service.zones[zone]));
    batch.resource_attr("net.subnet.id", ValueRef::Str(&service.subnets[zone]));
    batch.resource_attr("telemetry.sdk.language", ValueRef::Str(function.language));
    batch.begin_scope("opentelemetry.instrumentation.aws_lambda", "0.48.0", "", 0);
}

/// Pushes one client span for `child` under `parent`.
fn push_call(batch: &mut SpanBatch, service: &Service, trace_id: TraceId, parent: SpanId, child: &Child) {
    let Some(call) = child.call else {
        return;
    };
    let (name, kind) = match call {
        Call::Dynamo(operation) => (dynamo_span_name(operation), SpanKind::Client),
        Call::SqsSend => ("send", SpanKind::Producer),
        Call::S3(operation) => (s3_span_name(operation), SpanKind::Client),
        Call::Http => ("GET", SpanKind::Client),
    };
    batch.push_span(&SpanFields {
        trace_id,
        span_id: child.span_id,
        parent_span_id: Some(parent),
        name,
        kind,
        start_unix_nano: child.start_unix_nano,
        duration_ns: child.duration_ns,
        status_code: if child.error.is_some() { StatusCode::Error } else { StatusCode::Unset },
        status_message: child.error.unwrap_or(""),
        flags: 0x301,
        ..SpanFields::default()
    });
    let mut text = [0u8; 36];
    let id = child.span_id.0;
    match call {
        Call::Dynamo(operation) => {
            batch.span_attr("db.system", ValueRef::Str("dynamodb"));
            batch.span_attr("db.operation.name", ValueRef::Str(operation));
            batch.span_attr("rpc.system", ValueRef::Str("aws-api"));
            batch.span_attr("rpc.service", ValueRef::Str("DynamoDB"));
            batch.span_attr("aws.dynamodb.table_names", ValueRef::Str(&service.table));
            // DynamoDB request ids are 52 upper-case letters and digits; 32 hex will do.
            let request_id = upper_hex(&mut text, u64::from_le_bytes(id), trace_id.0[0]);
            batch.span_attr("aws.request_id", ValueRef::Str(request_id));
        }
        Call::SqsSend => {
            batch.span_attr("messaging.system", ValueRef::Str("aws_sqs"));
            batch.span_attr("messaging.operation.type", ValueRef::Str("send"));
            batch.span_attr("messaging.destination.name", ValueRef::Str(&service.queue));
            let request_id = uuid(&mut text, u64::from_le_bytes(id), u64::from(trace_id.0[1]));
            batch.span_attr("aws.request_id", ValueRef::Str(request_id));
        }
        Call::S3(operation) => {
            batch.span_attr("rpc.system", ValueRef::Str("aws-api"));
            batch.span_attr("rpc.service", ValueRef::Str("S3"));
            batch.span_attr("rpc.method", ValueRef::Str(operation));
            batch.span_attr("aws.s3.bucket", ValueRef::Str(&service.bucket));
            let request_id = upper_hex(&mut text, u64::from_le_bytes(id), trace_id.0[2]);
            batch.span_attr("aws.request_id", ValueRef::Str(request_id.get(..16).unwrap_or("")));
        }
        Call::Http => {
            batch.span_attr("http.request.method", ValueRef::Str("GET"));
            batch.span_attr("http.response.status_code", ValueRef::Int(child.http_status));
            batch.span_attr("server.address", ValueRef::Str("api.partner.example"));
        }
    }
}

fn dynamo_span_name(operation: &str) -> &'static str {
    match operation {
        "PutItem" => "DynamoDB.PutItem",
        "GetItem" => "DynamoDB.GetItem",
        "Query" => "DynamoDB.Query",
        "UpdateItem" => "DynamoDB.UpdateItem",
        "DeleteItem" => "DynamoDB.DeleteItem",
        _ => "DynamoDB",
    }
}

fn s3_span_name(operation: &str) -> &'static str {
    match operation {
        "GetObject" => "S3.GetObject",
        "PutObject" => "S3.PutObject",
        "DeleteObject" => "S3.DeleteObject",
        _ => "S3",
    }
}

const HEX_LOWER: &[u8; 16] = b"0123456789abcdef";
const HEX_UPPER: &[u8; 16] = b"0123456789ABCDEF";

fn put_hex(out: &mut [u8], value: u64, digits: &[u8; 16]) {
    let count = out.len();
    for (index, slot) in out.iter_mut().enumerate() {
        let shift = 4 * (count - 1 - index);
        *slot = digits[((value >> shift) & 0xf) as usize];
    }
}

/// `high` and `low` as a lowercase 8-4-4-4-12 UUID string.
fn uuid(out: &mut [u8; 36], high: u64, low: u64) -> &str {
    put_hex(&mut out[0..8], high >> 32, HEX_LOWER);
    out[8] = b'-';
    put_hex(&mut out[9..13], high >> 16, HEX_LOWER);
    out[13] = b'-';
    put_hex(&mut out[14..18], high, HEX_LOWER);
    out[18] = b'-';
    put_hex(&mut out[19..23], low >> 48, HEX_LOWER);
    out[23] = b'-';
    put_hex(&mut out[24..36], low, HEX_LOWER);
    // Only ASCII hex digits and dashes were written.
    std::str::from_utf8(&out[..]).unwrap_or("")
}

/// 32 upper-case hex digits from `value` and a salt byte.
fn upper_hex(out: &mut [u8; 36], value: u64, salt: u8) -> &str {
    put_hex(&mut out[0..16], value, HEX_UPPER);
    put_hex(&mut out[16..32], value.rotate_left(17) ^ (u64::from(salt) * 0x9e37_79b9), HEX_UPPER);
    std::str::from_utf8(&out[..32]).unwrap_or("")
}

/// `user-<n>`.
fn user_id(out: &mut [u8; 36], mut n: u64) -> &str {
    let mut digits = [0u8; 20];
    let mut count = 0;
    loop {
        digits[count] = b'0' + (n % 10) as u8;
        count += 1;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out[..5].copy_from_slice(b"user-");
    for index in 0..count {
        out[5 + index] = digits[count - 1 - index];
    }
    std::str::from_utf8(&out[..5 + count]).unwrap_or("")
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topology_has_8_services_and_50_functions() {
        let topology = Topology::new();
        assert_eq!(topology.services.len(), 8);
        assert_eq!(topology.functions.len(), 50);
        assert_eq!(topology.http_functions.len(), 42);
        let subnets: std::collections::HashSet<_> = topology.services.iter().flat_map(|s| s.subnets.iter()).collect();
        assert_eq!(subnets.len(), 24);
        assert!(subnets.contains(&ANOMALY_SUBNET.to_owned()));
    }

    #[test]
    fn batches_are_exact_valid_and_deterministic() {
        for spans in [1, 2, 7, 100, 1000] {
            let batch = batch(42, spans);
            assert_eq!(batch.len(), spans);
            batch.validate().unwrap();
        }
        assert_eq!(batch(7, 500), batch(7, 500));
        assert_ne!(batch(7, 500), batch(8, 500));
        let mut generator = Generator::new(3);
        let first = generator.next_batch(300);
        let second = generator.next_batch(300);
        assert_ne!(first, second);
        assert_eq!(generator.spans_generated(), 600);
    }

    #[test]
    fn the_mix_looks_like_the_workload() {
        let spans = batch(1, 200_000).to_spans();
        let errors = spans.iter().filter(|s| s.status_code == StatusCode::Error).count() as f64 / spans.len() as f64;
        assert!((0.005..0.02).contains(&errors), "error rate {errors}");
        let invocations: Vec<_> =
            spans.iter().filter(|s| s.attributes.iter().any(|kv| kv.key == "faas.coldstart")).collect();
        let cold = invocations
            .iter()
            .filter(|s| s.attributes.iter().any(|kv| kv.key == "faas.coldstart" && kv.value == true.into()))
            .count() as f64
            / invocations.len() as f64;
        assert!((0.012..0.03).contains(&cold), "cold start rate {cold}");
        let per_trace = spans.len() as f64 / spans.iter().filter(|s| s.parent_span_id.is_none()).count() as f64;
        assert!((3.5..6.0).contains(&per_trace), "{per_trace} spans per trace");
        let services: std::collections::HashSet<_> = spans.iter().filter_map(|s| s.service()).collect();
        assert_eq!(services.len(), 8);
        let functions: std::collections::HashSet<_> = spans
            .iter()
            .flat_map(|s| s.resource.attributes.iter())
            .filter(|kv| kv.key == "faas.name")
            .map(|kv| format!("{:?}", kv.value))
            .collect();
        assert!(functions.len() >= 45, "{} functions", functions.len());
        for kind in [SpanKind::Server, SpanKind::Client, SpanKind::Producer, SpanKind::Consumer] {
            assert!(spans.iter().any(|s| s.kind == kind), "no {kind:?} span");
        }
    }

    #[test]
    fn the_anomaly_raises_put_item_errors_in_its_subnet() {
        let config = Config { invocations_per_second: 2.0, ..Config::default() };
        let spans = Generator::with_config(5, config).next_batch(100_000).to_spans();
        let rate = |inside: bool| {
            let puts: Vec<_> = spans
                .iter()
                .filter(|s| s.name == "DynamoDB.PutItem")
                .filter(|s| {
                    let subnet = s
                        .resource
                        .attributes
                        .iter()
                        .any(|kv| kv.key == "net.subnet.id" && kv.value == ANOMALY_SUBNET.into());
                    let offset = s.start_unix_nano - DEFAULT_START_UNIX_NANO;
                    let window =
                        (ANOMALY_START_OFFSET_NS..ANOMALY_START_OFFSET_NS + ANOMALY_DURATION_NS).contains(&offset);
                    (subnet && window) == inside
                })
                .collect();
            assert!(puts.len() > 30, "{} PutItem spans", puts.len());
            puts.iter().filter(|s| s.status_code == StatusCode::Error).count() as f64 / puts.len() as f64
        };
        assert!(rate(true) > 0.25, "inside {}", rate(true));
        assert!(rate(false) < 0.03, "outside {}", rate(false));
    }
}
