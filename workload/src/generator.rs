//! The span generator: plans groups of invocations, then writes their spans into a
//! [`SpanBatch`] resource by resource.

use spanstore_engine::{SpanBatch, SpanFields, SpanId, SpanKind, StatusCode, TraceId, ValueRef};

use crate::diurnal::DayCurve;
use crate::rng::{mix64, Rng};
use crate::topology::{topology, Call, Function, Service, Topology};
use crate::{Config, ANOMALY_PUT_ITEM_ERROR_RATE, AUTHORIZER_REJECT_RATE, COLD_START_RATE, SIGNED_IN_RATE, SLOWDOWN};

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

/// The worker invocation that consumes one SQS message, and its optional DynamoDB call.
#[derive(Clone, Copy, Default)]
struct Consumer {
    span_id: SpanId,
    start_unix_nano: u64,
    duration_ns: u64,
    cold_start: bool,
    error: Option<&'static str>,
    update: Option<Child>,
}

/// One planned request: the gateway span, the function span, its children and the
/// consumers of the messages it sent.
#[derive(Clone, Copy, Default)]
struct Invocation {
    trace_id: TraceId,
    gateway_span_id: SpanId,
    function_span_id: SpanId,
    start_unix_nano: u64,
    gateway_duration_ns: u64,
    function_start_unix_nano: u64,
    function_duration_ns: u64,
    /// The gateway's authorizer refused the request: no function span.
    rejected: bool,
    cold_start: bool,
    http_status: i64,
    error: Option<&'static str>,
    /// Rank of the signed-in user (1 is the most active).
    user: Option<u32>,
    child_count: usize,
    children: [Child; 4],
    /// `consumers[i]` consumes the message `children[i]` sent, if it sent one.
    consumers: [Option<Consumer>; 4],
}

impl Invocation {
    fn span_count(&self) -> usize {
        if self.rejected {
            return 1;
        }
        let consumers: usize = self.sends().map(|(_, consumer)| 1 + usize::from(consumer.update.is_some())).sum();
        2 + self.child_count + consumers
    }

    /// The SQS sends whose message was consumed, with their consumer.
    fn sends(&self) -> impl Iterator<Item = (&Child, &Consumer)> {
        self.children.iter().zip(&self.consumers).take(self.child_count).filter_map(|(c, m)| Some((c, m.as_ref()?)))
    }
}

/// Span flags: sampled (bit 0), and whether the parent is remote is known (bit 8) and
/// false (bit 9 clear), for roots and for spans whose parent is in the same process.
const FLAGS_LOCAL_PARENT: u32 = 0x101;

/// Span flags: sampled, and the parent is known to be remote (bits 8 and 9): the
/// function span under the gateway's, the consumer under the producer.
const FLAGS_REMOTE_PARENT: u32 = 0x301;

/// Cumulative weights of 0, 1, 2, 3 and 4 client calls per invocation.
const CHILD_COUNT_CUMULATIVE: [u32; 5] = [10, 40, 70, 90, 100];

/// Most invocations one resource group holds.
const GROUP_INVOCATIONS_MAX: u64 = 16;

/// Most spans of an invocation planned to fit a given count exactly: gateway, function
/// and four calls.
const FITTED_SPANS_MAX: usize = 6;

/// How a generator places invocations in time.
#[derive(Clone, Copy, Debug)]
enum Pacing {
    /// Open-ended: exponential gaps at `invocations_per_second` times the day curve.
    Rate { mean_gap_seconds: f64 },
    /// A known number of spans spread evenly on the load clock between `low` and `high`.
    Budget { low: f64, high: f64, spans: u64 },
}

/// The group being generated: one route (so one function) in one zone on one version.
#[derive(Clone, Copy, Default)]
struct Group {
    route: usize,
    zone: usize,
    version: usize,
}

/// Produces serverless-shaped spans, deterministic for a seed.
pub struct Generator {
    rng: Rng,
    topology: &'static Topology,
    config: Config,
    curve: DayCurve,
    pacing: Pacing,
    /// Seconds after the start of the data of the latest placed invocation.
    clock_seconds: f64,
    /// The anomaly window, seconds after the start.
    anomaly_seconds: (f64, f64),
    spans_generated: u64,
    group: Group,
    plan: Vec<Invocation>,
}

impl Generator {
    /// A generator with the default [`Config`].
    pub fn new(seed: u64) -> Generator {
        Generator::with_config(seed, Config::default())
    }

    /// An open-ended generator: invocations arrive at `config.invocations_per_second`
    /// on average, following the day curve, from `config.start_unix_nano` on.
    pub fn with_config(seed: u64, config: Config) -> Generator {
        let pacing = Pacing::Rate { mean_gap_seconds: 1.0 / config.invocations_per_second.max(1e-9) };
        Generator::build(seed, config, pacing)
    }

    /// A generator of exactly `spans` spans spread over the slice `[low, high)` (shares
    /// of the whole load, `0 ≤ low ≤ high ≤ 1`) of the time range of `config`.
    pub fn with_budget(seed: u64, config: Config, spans: u64, low: f64, high: f64) -> Generator {
        let curve = DayCurve::new(config.start_unix_nano);
        let total = curve.cumulative(config.duration_ns as f64 / 1e9);
        let pacing = Pacing::Budget { low: low * total, high: high * total, spans: spans.max(1) };
        let mut generator = Generator::build(seed, config, pacing);
        generator.clock_seconds = curve.inverse(low * total, 0.0);
        generator
    }

    fn build(seed: u64, config: Config, pacing: Pacing) -> Generator {
        let window = config.anomaly_window();
        let relative = |t: u64| t.saturating_sub(config.start_unix_nano) as f64 / 1e9;
        Generator {
            // Mix the seed so that nearby seeds give unrelated streams.
            rng: Rng::new(mix64(seed)),
            topology: topology(),
            config,
            curve: DayCurve::new(config.start_unix_nano),
            pacing,
            clock_seconds: 0.0,
            anomaly_seconds: (relative(window.start), relative(window.end)),
            spans_generated: 0,
            group: Group::default(),
            plan: Vec::with_capacity(GROUP_INVOCATIONS_MAX as usize),
        }
    }

    /// Spans generated so far.
    pub fn spans_generated(&self) -> u64 {
        self.spans_generated
    }

    /// Start of the latest invocation, ns since the epoch.
    pub fn clock_unix_nano(&self) -> u64 {
        self.config.start_unix_nano.saturating_add((self.clock_seconds * 1e9) as u64)
    }

    /// The next batch, of exactly `spans` spans.
    pub fn next_batch(&mut self, spans: usize) -> SpanBatch {
        let mut batch = SpanBatch::new();
        self.fill(&mut batch, spans);
        batch
    }

    /// Appends exactly `spans` spans to `batch`, in whole traces.
    pub fn fill(&mut self, batch: &mut SpanBatch, spans: usize) {
        self.fill_between(batch, spans, spans);
    }

    /// Appends whole groups of invocations to `batch` until it has at least `at_least`
    /// new spans, never more than `at_most` (`at_least ≤ at_most`). Every trace is
    /// whole: the last invocations are planned to fit when the count must come out
    /// exact. Returns how many spans were appended.
    pub fn fill_between(&mut self, batch: &mut SpanBatch, at_least: usize, at_most: usize) -> usize {
        let at_most = at_most.max(at_least);
        let mut added = 0;
        while added < at_least {
            self.plan_group(at_most - added);
            let written = self.write_group(batch);
            added += written;
            self.spans_generated += written as u64;
        }
        added
    }

    /// Seconds after the start for the next invocation, `planned` spans after the
    /// spans generated so far.
    fn place(&mut self, planned: usize) -> f64 {
        match self.pacing {
            Pacing::Rate { mean_gap_seconds } => {
                let factor = self.curve.factor(self.clock_seconds);
                self.clock_seconds += self.rng.exponential(mean_gap_seconds / factor);
            }
            Pacing::Budget { low, high, spans } => {
                // A little jitter so invocations are not evenly spaced; the last span
                // is at most number `spans - 1`, so the position stays below 1.
                let jitter = 4.0 * self.rng.unit();
                let position = (self.spans_generated as f64 + planned as f64 + jitter) / (spans as f64 + 4.0);
                let load = low + position.min(1.0) * (high - low);
                self.clock_seconds = self.curve.inverse(load, self.clock_seconds);
            }
        }
        self.clock_seconds
    }

    /// Plans a group of invocations of one route in one zone that together have at most
    /// `room` spans (and at least one).
    fn plan_group(&mut self, room: usize) {
        let topology = self.topology;
        let route_index = self.rng.pick(&topology.route_cumulative);
        let zone = self.rng.below(3) as usize;
        let Some(route) = topology.routes.get(route_index) else {
            return;
        };
        let Some(function) = topology.functions.get(route.function) else {
            return;
        };
        let Some(service) = topology.services.get(function.service) else {
            return;
        };
        let version = self.rng.below(function.versions.len() as u64) as usize;
        self.group = Group { route: route_index, zone, version };
        let context = Context {
            topology,
            service,
            function,
            anomalous_subnet: service.subnets[zone] == crate::ANOMALY_SUBNET,
            slow: route.slow_version == Some(version),
        };
        let invocations = 1 + self.rng.below(GROUP_INVOCATIONS_MAX);
        self.plan.clear();
        let mut planned = 0;
        for _ in 0..invocations {
            let invocation = self.plan_one(&context, planned, None);
            let spans = invocation.span_count();
            if planned + spans > room {
                break;
            }
            planned += spans;
            self.plan.push(invocation);
        }
        if self.plan.is_empty() {
            // Not even one planned request fitted: plan one shaped to fit exactly.
            let invocation = self.plan_one(&context, 0, Some(room.clamp(1, FITTED_SPANS_MAX)));
            self.plan.push(invocation);
        }
    }

    /// Places and plans one request of the group, `planned` spans into it.
    fn plan_one(&mut self, context: &Context<'static>, planned: usize, fit: Option<usize>) -> Invocation {
        let seconds = self.place(planned);
        let in_anomaly =
            context.anomalous_subnet && seconds >= self.anomaly_seconds.0 && seconds < self.anomaly_seconds.1;
        let start = self.config.start_unix_nano.saturating_add((seconds * 1e9) as u64);
        plan_invocation(&mut self.rng, context, start, in_anomaly, fit)
    }

    /// Writes the planned group: the gateway's spans, the function's and the worker's,
    /// each under its own resource. Returns the number of spans written.
    fn write_group(&self, batch: &mut SpanBatch) -> usize {
        let before = batch.len();
        let topology = self.topology;
        let Group { route, zone, version } = self.group;
        let Some(route) = topology.routes.get(route) else {
            return 0;
        };
        let Some(function) = topology.functions.get(route.function) else {
            return 0;
        };
        let Some(service) = topology.services.get(function.service) else {
            return 0;
        };
        let plan = &self.plan;
        let mut text = [0u8; 36];

        batch.begin_resource("https://opentelemetry.io/schemas/1.26.0", 0);
        batch.resource_attr("service.name", ValueRef::Str(service.name));
        batch.resource_attr("cloud.provider", ValueRef::Str("aws"));
        batch.resource_attr("cloud.platform", ValueRef::Str("aws_api_gateway"));
        batch.resource_attr("cloud.region", ValueRef::Str(service.region));
        batch.begin_scope("aws.apigateway", "2.0", "", 0);
        for invocation in plan {
            batch.push_span(&SpanFields {
                trace_id: invocation.trace_id,
                span_id: invocation.gateway_span_id,
                name: &route.gateway_span_name,
                kind: SpanKind::Server,
                start_unix_nano: invocation.start_unix_nano,
                duration_ns: invocation.gateway_duration_ns,
                status_code: if invocation.http_status >= 500 { StatusCode::Error } else { StatusCode::Unset },
                flags: FLAGS_LOCAL_PARENT,
                ..SpanFields::default()
            });
            batch.span_attr("http.request.method", ValueRef::Str(function.method));
            batch.span_attr("http.route", ValueRef::Str(&route.route));
            batch.span_attr("http.response.status_code", ValueRef::Int(invocation.http_status));
            let id = u64::from_le_bytes(invocation.gateway_span_id.0);
            batch.span_attr("aws.request_id", ValueRef::Str(uuid(&mut text, mix64(id), mix64(!id))));
            if let Some(user) = invocation.user {
                batch.span_attr("enduser.id", ValueRef::Str(user_id(&mut text, user)));
            }
        }

        if plan.iter().any(|i| !i.rejected) {
            begin_function_resource(batch, service, function, version, zone);
            for invocation in plan.iter().filter(|i| !i.rejected) {
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
                    flags: FLAGS_REMOTE_PARENT,
                    ..SpanFields::default()
                });
                batch.span_attr("faas.trigger", ValueRef::Str("http"));
                batch.span_attr("faas.coldstart", ValueRef::Bool(invocation.cold_start));
                let id = u64::from_le_bytes(invocation.function_span_id.0);
                batch.span_attr("faas.invocation_id", ValueRef::Str(uuid(&mut text, mix64(id), mix64(!id))));
                batch.span_attr("http.request.method", ValueRef::Str(function.method));
                batch.span_attr("http.route", ValueRef::Str(&route.route));
                for child in invocation.children.iter().take(invocation.child_count) {
                    push_call(batch, service, invocation.trace_id, invocation.function_span_id, child);
                }
            }
        }

        if plan.iter().any(|i| i.sends().next().is_some()) {
            let Some(worker) = topology.functions.get(service.worker) else {
                return batch.len() - before;
            };
            begin_function_resource(batch, service, worker, 0, zone);
            for invocation in plan {
                for (send, consumer) in invocation.sends() {
                    batch.push_span(&SpanFields {
                        trace_id: invocation.trace_id,
                        span_id: consumer.span_id,
                        parent_span_id: Some(send.span_id),
                        name: &service.process_span_name,
                        kind: SpanKind::Consumer,
                        start_unix_nano: consumer.start_unix_nano,
                        duration_ns: consumer.duration_ns,
                        status_code: if consumer.error.is_some() { StatusCode::Error } else { StatusCode::Unset },
                        status_message: consumer.error.unwrap_or(""),
                        flags: FLAGS_REMOTE_PARENT,
                        ..SpanFields::default()
                    });
                    batch.span_attr("faas.trigger", ValueRef::Str("pubsub"));
                    batch.span_attr("faas.coldstart", ValueRef::Bool(consumer.cold_start));
                    let id = u64::from_le_bytes(consumer.span_id.0);
                    batch.span_attr("faas.invocation_id", ValueRef::Str(uuid(&mut text, mix64(id), mix64(!id))));
                    batch.span_attr("messaging.system", ValueRef::Str("aws_sqs"));
                    batch.span_attr("messaging.operation.type", ValueRef::Str("process"));
                    batch.span_attr("messaging.destination.name", ValueRef::Str(&service.queue));
                    if let Some(update) = &consumer.update {
                        push_call(batch, service, invocation.trace_id, consumer.span_id, update);
                    }
                }
            }
        }
        batch.len() - before
    }
}

/// What planning an invocation needs to know about its group.
struct Context<'a> {
    topology: &'a Topology,
    service: &'a Service,
    function: &'a Function,
    /// The group runs in the subnet of the planted PutItem anomaly.
    anomalous_subnet: bool,
    /// The route is slow on this group's version.
    slow: bool,
}

fn span_id(rng: &mut Rng) -> SpanId {
    // All-zero ids are invalid in OTLP.
    SpanId(rng.next_u64().max(1).to_le_bytes())
}

fn trace_id(rng: &mut Rng) -> TraceId {
    let high = rng.next_u64();
    let low = rng.next_u64().max(1);
    TraceId((u128::from(high) << 64 | u128::from(low)).to_be_bytes())
}

/// The typical duration of each kind of call: median (ns) and log-normal shape.
fn call_latency(call: Call) -> (f64, f64) {
    match call {
        Call::Dynamo("Query") => (9e6, 0.6),
        Call::Dynamo(_) => (5e6, 0.5),
        Call::SqsSend => (12e6, 0.5),
        Call::S3(_) => (25e6, 0.7),
        Call::Http => (80e6, 0.8),
    }
}

/// Plans one request of the context's route starting at `start`. With `fit`, the
/// invocation has exactly that many spans (1 to [`FITTED_SPANS_MAX`]): a request the
/// authorizer refuses for 1, else a function with `fit - 2` calls and no SQS send.
fn plan_invocation(
    rng: &mut Rng,
    context: &Context<'_>,
    start: u64,
    in_anomaly: bool,
    fit: Option<usize>,
) -> Invocation {
    let function = context.function;
    let mut invocation = Invocation {
        trace_id: trace_id(rng),
        gateway_span_id: span_id(rng),
        function_span_id: span_id(rng),
        start_unix_nano: start,
        ..Invocation::default()
    };
    if fit == Some(1) || (fit.is_none() && rng.chance(AUTHORIZER_REJECT_RATE)) {
        invocation.rejected = true;
        invocation.gateway_duration_ns = rng.log_normal_ns(3e6, 0.4);
        invocation.http_status = if rng.chance(0.5) { 401 } else { 403 };
        return invocation;
    }
    invocation.cold_start = rng.chance(COLD_START_RATE);
    // Most requests are signed in; users are Zipf-distributed.
    if rng.chance(SIGNED_IN_RATE) {
        invocation.user = Some(rng.pick_f64(&context.topology.user_cumulative) as u32 + 1);
    }
    invocation.child_count = match fit {
        Some(spans) => spans.saturating_sub(2).min(4),
        None => rng.pick(&CHILD_COUNT_CUMULATIVE),
    };
    let integration_ns = rng.log_normal_ns(2e6, 0.4);
    invocation.function_start_unix_nano = start + integration_ns;
    let init_ns = if invocation.cold_start { rng.log_normal_ns(function.cold_init_median_ns, 0.3) } else { 0 };
    let mut clock = invocation.function_start_unix_nano + init_ns + rng.log_normal_ns(1e6, 0.6);
    let mut child_error = None;
    for index in 0..invocation.child_count {
        let mut call = if index == 0 || function.other_calls.is_empty() {
            function.first_call
        } else {
            function.other_calls[rng.below(function.other_calls.len() as u64) as usize]
        };
        if fit.is_some() && call == Call::SqsSend {
            call = Call::Dynamo("GetItem");
        }
        let (median_ns, sigma) = call_latency(call);
        let error_rate = match call {
            Call::Dynamo("PutItem") if in_anomaly => ANOMALY_PUT_ITEM_ERROR_RATE,
            _ => 0.008,
        };
        let failed = rng.chance(error_rate);
        let child = Child {
            call: Some(call),
            span_id: span_id(rng),
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
        if call == Call::SqsSend && child.error.is_none() {
            // A message that never reached the queue is consumed by nobody.
            invocation.consumers[index] = Some(plan_consumer(rng, context, &child));
        }
        invocation.children[index] = child;
    }
    // A failed call fails the invocation four times out of five (the rest retry or
    // swallow it); an invocation also fails on its own now and then.
    invocation.error = match child_error {
        Some(message) if rng.chance(0.8) => Some(message),
        _ => rng.chance(0.006).then_some("Runtime.UnhandledPromiseRejection"),
    };
    let own_ns = rng.log_normal_ns(function.own_median_ns, 0.7);
    let mut function_ns = clock + own_ns - invocation.function_start_unix_nano;
    if context.slow {
        // The regression: the new version does its own work after the calls, slowly.
        function_ns = (function_ns as f64 * SLOWDOWN) as u64;
    }
    invocation.function_duration_ns = function_ns;
    invocation.gateway_duration_ns = integration_ns + function_ns + rng.log_normal_ns(1e6, 0.3);
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

/// Plans the worker invocation that consumes the message `send` sent.
fn plan_consumer(rng: &mut Rng, context: &Context<'_>, send: &Child) -> Consumer {
    let worker = context.topology.functions.get(context.service.worker);
    let (own_median_ns, init_median_ns) = worker.map_or((12e6, 400e6), |w| (w.own_median_ns, w.cold_init_median_ns));
    let start = send.start_unix_nano + send.duration_ns + rng.log_normal_ns(20e6, 0.8);
    let cold_start = rng.chance(COLD_START_RATE);
    let init_ns = if cold_start { rng.log_normal_ns(init_median_ns, 0.3) } else { 0 };
    let update = rng.chance(0.5).then(|| Child {
        call: Some(Call::Dynamo("UpdateItem")),
        span_id: span_id(rng),
        start_unix_nano: start + init_ns + rng.log_normal_ns(1e6, 0.5),
        duration_ns: rng.log_normal_ns(6e6, 0.6),
        error: rng.chance(0.004).then_some("ProvisionedThroughputExceededException"),
        ..Child::default()
    });
    let own_ns = rng.log_normal_ns(own_median_ns, 0.7);
    let duration_ns = match &update {
        Some(update) => update.start_unix_nano + update.duration_ns - start + own_ns,
        None => init_ns + own_ns,
    };
    Consumer {
        span_id: span_id(rng),
        start_unix_nano: start,
        duration_ns,
        cold_start,
        error: update.and_then(|u| u.error),
        update,
    }
}

/// Starts the resource (and scope) of `function` (its `version`-th version) running in
/// `zone`.
fn begin_function_resource(batch: &mut SpanBatch, service: &Service, function: &Function, version: usize, zone: usize) {
    batch.begin_resource("https://opentelemetry.io/schemas/1.26.0", 0);
    batch.resource_attr("service.name", ValueRef::Str(service.name));
    batch.resource_attr("faas.name", ValueRef::Str(&function.name));
    let version = function.versions.get(version).or(function.versions.first()).map_or("1", String::as_str);
    batch.resource_attr("faas.version", ValueRef::Str(version));
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
        Call::SqsSend => (service.send_span_name.as_str(), SpanKind::Producer),
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
        flags: FLAGS_LOCAL_PARENT,
        ..SpanFields::default()
    });
    let mut text = [0u8; 36];
    let id = mix64(u64::from_le_bytes(child.span_id.0));
    match call {
        Call::Dynamo(operation) => {
            batch.span_attr("db.system", ValueRef::Str("dynamodb"));
            batch.span_attr("db.operation.name", ValueRef::Str(operation));
            batch.span_attr("rpc.system", ValueRef::Str("aws-api"));
            batch.span_attr("rpc.service", ValueRef::Str("DynamoDB"));
            batch.span_attr("rpc.method", ValueRef::Str(operation));
            batch.span_attr("aws.dynamodb.table_names", ValueRef::Str(&service.table));
            // DynamoDB request ids are 52 upper-case letters and digits; 32 hex will do.
            batch.span_attr("aws.request_id", ValueRef::Str(upper_hex(&mut text, id, mix64(id))));
        }
        Call::SqsSend => {
            batch.span_attr("messaging.system", ValueRef::Str("aws_sqs"));
            batch.span_attr("messaging.operation.type", ValueRef::Str("send"));
            batch.span_attr("messaging.destination.name", ValueRef::Str(&service.queue));
            batch.span_attr("aws.request_id", ValueRef::Str(uuid(&mut text, id, mix64(id))));
        }
        Call::S3(operation) => {
            batch.span_attr("rpc.system", ValueRef::Str("aws-api"));
            batch.span_attr("rpc.service", ValueRef::Str("S3"));
            batch.span_attr("rpc.method", ValueRef::Str(operation));
            batch.span_attr("aws.s3.bucket", ValueRef::Str(&service.bucket));
            let request_id = upper_hex(&mut text, id, mix64(id));
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

/// 32 upper-case hex digits from two words.
fn upper_hex(out: &mut [u8; 36], high: u64, low: u64) -> &str {
    put_hex(&mut out[0..16], high, HEX_UPPER);
    put_hex(&mut out[16..32], low, HEX_UPPER);
    std::str::from_utf8(&out[..32]).unwrap_or("")
}

/// `user-<n>`.
fn user_id(out: &mut [u8; 36], n: u32) -> &str {
    let mut digits = [0u8; 10];
    let mut count = 0;
    let mut rest = n;
    loop {
        digits[count] = b'0' + (rest % 10) as u8;
        count += 1;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    out[..5].copy_from_slice(b"user-");
    for index in 0..count {
        out[5 + index] = digits[count - 1 - index];
    }
    std::str::from_utf8(&out[..5 + count]).unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_names_format() {
        let mut text = [0u8; 36];
        assert_eq!(user_id(&mut text, 1), "user-1");
        assert_eq!(user_id(&mut text, 100_000), "user-100000");
        assert_eq!(
            uuid(&mut text, 0x0123_4567_89ab_cdef, 0xfedc_ba98_7654_3210),
            "01234567-89ab-cdef-fedc-ba9876543210"
        );
        assert_eq!(upper_hex(&mut text, 0xab, 0x1), "00000000000000AB0000000000000001");
    }

    #[test]
    fn fitted_invocations_have_the_asked_size() {
        let topology = topology();
        let mut rng = Rng::new(3);
        for route in &topology.routes {
            let function = &topology.functions[route.function];
            let service = &topology.services[function.service];
            let context = Context { topology, service, function, anomalous_subnet: false, slow: false };
            for spans in 1..=FITTED_SPANS_MAX {
                for _ in 0..20 {
                    let invocation = plan_invocation(&mut rng, &context, 1, false, Some(spans));
                    assert_eq!(invocation.span_count(), spans, "{}", route.route);
                }
            }
        }
    }
}
