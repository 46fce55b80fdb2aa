//! The fixed services, functions and routes of the workload, the same for every seed,
//! and the popularity of routes and users.

use std::sync::OnceLock;

use crate::rng::Rng;
use crate::{
    ANOMALY_ROUTE_RANK, ANOMALY_SERVICE, ANOMALY_SUBNET, ANOMALY_ZONE_INDEX, BASELINE_VERSION, REGIONS,
    ROUTE_ZIPF_EXPONENT, SERVICES, SLOW_FUNCTION, SLOW_ROUTE, SLOW_ROUTE_RANK, SLOW_VERSION, USERS, USER_ZIPF_EXPONENT,
};

/// A client call a function makes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Call {
    Dynamo(&'static str),
    SqsSend,
    S3(&'static str),
    Http,
}

/// An HTTP function of every service: name suffix, method, route tails, first call,
/// other calls.
type HttpFunctionSpec = (&'static str, &'static str, &'static [&'static str], Call, &'static [Call]);

const HTTP_FUNCTIONS: [HttpFunctionSpec; 6] = [
    ("create", "POST", &[""], Call::Dynamo("PutItem"), &[Call::SqsSend, Call::Dynamo("GetItem"), Call::Http]),
    (
        "get",
        "GET",
        &["/{id}", "/{id}/history"],
        Call::Dynamo("GetItem"),
        &[Call::S3("GetObject"), Call::Dynamo("Query")],
    ),
    ("list", "GET", &[""], Call::Dynamo("Query"), &[Call::Dynamo("GetItem"), Call::S3("GetObject")]),
    ("update", "PUT", &["/{id}"], Call::Dynamo("UpdateItem"), &[Call::Dynamo("GetItem"), Call::SqsSend, Call::Http]),
    ("delete", "DELETE", &["/{id}"], Call::Dynamo("DeleteItem"), &[Call::SqsSend, Call::S3("DeleteObject")]),
    ("search", "GET", &["/search"], Call::Http, &[Call::S3("GetObject"), Call::Dynamo("Query")]),
];

/// Services that also have the `search` function (8 × 5 + 2 = 42 HTTP functions, plus
/// 8 workers: 50 functions; 8 × 6 + 2 = 50 routes).
const SERVICES_WITH_SEARCH: [&str; 2] = ["orders", "catalog"];

pub(crate) struct Service {
    pub name: &'static str,
    pub region: &'static str,
    pub zones: [String; 3],
    pub subnets: [String; 3],
    pub queue: String,
    /// `send <queue>`, the producer span's name.
    pub send_span_name: String,
    /// `process <queue>`, the consumer span's name.
    pub process_span_name: String,
    pub table: String,
    pub bucket: String,
    /// Index of the service's SQS worker in `Topology::functions`.
    pub worker: usize,
}

pub(crate) struct Function {
    pub service: usize,
    pub name: String,
    /// The deployed versions; two for the function with a canary, each taking half the
    /// traffic.
    pub versions: Vec<String>,
    pub memory_mb: i64,
    pub language: &'static str,
    pub method: &'static str,
    pub first_call: Call,
    pub other_calls: &'static [Call],
    /// Median of the function's own work (outside its calls), ns.
    pub own_median_ns: f64,
    /// Median of a cold start's initialization, ns (by language).
    pub cold_init_median_ns: f64,
}

pub(crate) struct Route {
    pub function: usize,
    pub route: String,
    /// The span name of the gateway span: method and route.
    pub gateway_span_name: String,
    /// The version index on which this route is [`crate::SLOWDOWN`] times slower.
    pub slow_version: Option<usize>,
}

/// The fixed services and functions (the same for every seed).
pub(crate) struct Topology {
    pub services: Vec<Service>,
    pub functions: Vec<Function>,
    /// Routes, most popular first.
    pub routes: Vec<Route>,
    /// Cumulative Zipf weights of `routes`.
    pub route_cumulative: Vec<u32>,
    /// Cumulative Zipf weights of users `user-1` to `user-USERS`.
    pub user_cumulative: Vec<f64>,
}

/// The topology, built once per process.
pub(crate) fn topology() -> &'static Topology {
    static TOPOLOGY: OnceLock<Topology> = OnceLock::new();
    TOPOLOGY.get_or_init(Topology::new)
}

fn cold_init_median_ns(language: &str) -> f64 {
    match language {
        "java" => 1_100e6,
        "python" => 400e6,
        _ => 250e6,
    }
}

impl Topology {
    fn new() -> Topology {
        // A fixed stream, not the caller's seed: names must not change with the seed.
        let mut names = Rng::new(0x5eed_0f70_9010_109e);
        let mut services = Vec::with_capacity(SERVICES.len());
        let mut functions = Vec::new();
        let mut routes = Vec::new();
        for (service_index, &name) in SERVICES.iter().enumerate() {
            let region = REGIONS[service_index % REGIONS.len()];
            let zones = ["a", "b", "c"].map(|z| format!("{region}{z}"));
            let mut subnets = [0, 1, 2].map(|_| format!("subnet-0{:016x}", names.next_u64()));
            if name == ANOMALY_SERVICE {
                // The planted anomaly's subnet has a fixed, documented name.
                subnets[ANOMALY_ZONE_INDEX] = ANOMALY_SUBNET.to_owned();
            }
            for &(suffix, method, tails, first_call, other_calls) in &HTTP_FUNCTIONS {
                if suffix == "search" && !SERVICES_WITH_SEARCH.contains(&name) {
                    continue;
                }
                let function_name = format!("{name}-{suffix}");
                let language = ["nodejs", "python", "java"][names.below(3) as usize];
                let version = (1 + names.below(40)).to_string();
                let canary = function_name == SLOW_FUNCTION;
                let versions =
                    if canary { vec![BASELINE_VERSION.to_owned(), SLOW_VERSION.to_owned()] } else { vec![version] };
                for tail in tails {
                    let route = format!("/{name}{tail}");
                    routes.push(Route {
                        function: functions.len(),
                        gateway_span_name: format!("{method} {route}"),
                        slow_version: (canary && route == SLOW_ROUTE).then_some(1),
                        route,
                    });
                }
                functions.push(Function {
                    service: service_index,
                    name: function_name,
                    versions,
                    memory_mb: [256, 512, 1024][names.below(3) as usize],
                    language,
                    method,
                    first_call,
                    other_calls,
                    // Log-uniform between 4 and 40 ms.
                    own_median_ns: 4e6 * 10f64.powf(names.unit()),
                    cold_init_median_ns: cold_init_median_ns(language),
                });
            }
            let worker = functions.len();
            functions.push(Function {
                service: service_index,
                name: format!("{name}-worker"),
                versions: vec![(1 + names.below(40)).to_string()],
                memory_mb: 512,
                language: "python",
                method: "",
                first_call: Call::Dynamo("UpdateItem"),
                other_calls: &[],
                own_median_ns: 12e6,
                cold_init_median_ns: cold_init_median_ns("python"),
            });
            let queue = format!("{name}-events");
            services.push(Service {
                name,
                region,
                zones,
                subnets,
                send_span_name: format!("send {queue}"),
                process_span_name: format!("process {queue}"),
                queue,
                table: format!("{name}-table"),
                bucket: format!("{name}-assets-{:08x}", names.next_u64() as u32),
                worker,
            });
        }
        // Popularity: a fixed shuffle (Fisher-Yates).
        for i in (1..routes.len()).rev() {
            let j = names.below(i as u64 + 1) as usize;
            routes.swap(i, j);
        }
        // The two anomalies' routes get fixed, documented ranks, so that they have
        // traffic in small data sets too.
        let anomaly_function = format!("{ANOMALY_SERVICE}-create");
        let pins = [(anomaly_function.as_str(), ANOMALY_ROUTE_RANK), (SLOW_FUNCTION, SLOW_ROUTE_RANK)];
        for (function_name, rank) in pins {
            let found = routes.iter().position(|r| {
                functions.get(r.function).is_some_and(|f| f.name == function_name)
                    && (function_name != SLOW_FUNCTION || r.slow_version.is_some())
            });
            if let Some(index) = found {
                let rank = rank.min(routes.len() - 1);
                routes.swap(index, rank);
            }
        }
        let mut total = 0u32;
        let route_cumulative = (0..routes.len())
            .map(|rank| {
                total += (10_000.0 / ((rank + 1) as f64).powf(ROUTE_ZIPF_EXPONENT)) as u32;
                total
            })
            .collect();
        let mut total = 0.0;
        let user_cumulative = (1..=USERS)
            .map(|rank| {
                total += (rank as f64).powf(-USER_ZIPF_EXPONENT);
                total
            })
            .collect();
        Topology { services, functions, routes, route_cumulative, user_cumulative }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topology_has_8_services_50_functions_and_50_routes() {
        let topology = topology();
        assert_eq!(topology.services.len(), 8);
        assert_eq!(topology.functions.len(), 50);
        assert_eq!(topology.routes.len(), 50);
        let subnets: std::collections::HashSet<_> = topology.services.iter().flat_map(|s| s.subnets.iter()).collect();
        assert_eq!(subnets.len(), 24);
        let orders = topology.services.iter().find(|s| s.name == ANOMALY_SERVICE).unwrap();
        assert_eq!(orders.subnets[ANOMALY_ZONE_INDEX], ANOMALY_SUBNET);
        assert_eq!(orders.zones[ANOMALY_ZONE_INDEX], crate::ANOMALY_ZONE);
        let slow = &topology.routes[SLOW_ROUTE_RANK];
        assert_eq!(slow.route, SLOW_ROUTE);
        let function = &topology.functions[slow.function];
        assert_eq!(function.name, SLOW_FUNCTION);
        assert_eq!(function.versions, [BASELINE_VERSION, SLOW_VERSION]);
        assert_eq!(topology.functions.iter().filter(|f| f.versions.len() > 1).count(), 1);
        assert_eq!(topology.user_cumulative.len(), USERS);
        let put = &topology.routes[crate::ANOMALY_ROUTE_RANK];
        assert_eq!(put.gateway_span_name, format!("POST /{ANOMALY_SERVICE}"));
        assert_eq!(topology.functions[put.function].first_call, Call::Dynamo("PutItem"));
    }
}
