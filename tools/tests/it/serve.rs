//! `spanstore serve` as a client sees it: a child process on loopback ports chosen by the
//! kernel, driven over OTLP/HTTP (protobuf, JSON, gzip), OTLP/gRPC (tonic, gzip), Zipkin
//! and the query API; bad input, limits, the bearer token, SIGTERM and SIGKILL.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use prost::Message;
use spanstore_engine::{AnyValue, KeyValue, Resource, Span, SpanBatch, SpanId, TraceId};

/// A running `spanstore serve` child; killed when dropped.
struct Server {
    child: Child,
    otlp_http: SocketAddr,
    otlp_grpc: SocketAddr,
    zipkin: SocketAddr,
    api: SocketAddr,
    log: PathBuf,
}

impl Server {
    fn start(data: &Path, extra: &[&str]) -> Server {
        let log = data.with_extension(format!("serve-{}.log", std::process::id()));
        let stderr = std::fs::OpenOptions::new().create(true).append(true).open(&log).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_spanstore"))
            .arg("--data")
            .arg(data)
            .args(["serve", "--otlp-http", "127.0.0.1:0", "--otlp-grpc", "127.0.0.1:0", "--zipkin", "127.0.0.1:0"])
            .args(extra)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(stderr))
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let addresses: HashMap<&str, SocketAddr> = line
            .trim()
            .strip_prefix("listening ")
            .unwrap_or_else(|| panic!("no address line: {line:?}\n{}", std::fs::read_to_string(&log).unwrap()))
            .split(' ')
            .map(|pair| {
                let (name, addr) = pair.split_once('=').unwrap();
                (name, addr.parse().unwrap())
            })
            .collect();
        Server {
            child,
            otlp_http: addresses["otlp-http"],
            otlp_grpc: addresses["otlp-grpc"],
            zipkin: addresses["zipkin"],
            api: addresses["api"],
            log,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn signal(&self, name: &str) {
        let status = Command::new("kill").args([&format!("-{name}"), &self.child.id().to_string()]).status().unwrap();
        assert!(status.success());
    }

    /// Waits for the child to exit; returns its exit code (None if killed by a signal).
    fn wait(mut self, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            assert!(Instant::now() < deadline, "serve did not exit in {timeout:?}\n{}", self.log());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The number of spans a count query finds, through the query API.
    fn count(&self, predicate: &str) -> u64 {
        let query = format!("SELECT count(*) FROM spans WHERE {predicate}");
        let reply = http(self.api, "POST", "/api/query", &[("content-type", "text/plain")], query.as_bytes());
        assert_eq!(reply.status, 200, "{}", reply.text());
        let value: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
        value["rows"][0][0].as_u64().unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Reply {
    status: u16,
    headers: HashMap<String, String>,
    body: Vec<u8>,
}

impl Reply {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.text()))
    }
}

/// One HTTP/1.1 request on a fresh connection (`Connection: close`).
fn http(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Reply {
    try_http(addr, method, path, headers, body).unwrap()
}

fn try_http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<Reply> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut head = format!("{method} {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str(&format!("content-length: {}\r\n\r\n", body.len()));
    let mut request = head.into_bytes();
    request.extend_from_slice(body);
    // A server may answer (413) before reading the whole body: read the answer anyway.
    let _ = stream.write_all(&request);
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    parse_reply(&raw)
}

fn parse_reply(raw: &[u8]) -> std::io::Result<Reply> {
    let bad = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_owned());
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").ok_or_else(|| bad("no end of headers"))?;
    let head = std::str::from_utf8(&raw[..split]).map_err(|_| bad("head not UTF-8"))?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().ok_or_else(|| bad("no status line"))?;
    let status = status_line.split(' ').nth(1).and_then(|s| s.parse().ok()).ok_or_else(|| bad("no status"))?;
    let headers: HashMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    if headers.get("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        let mut decoded = Vec::new();
        let mut rest = body.as_slice();
        loop {
            let end = rest.windows(2).position(|w| w == b"\r\n").ok_or_else(|| bad("chunk size"))?;
            let size_text = std::str::from_utf8(&rest[..end]).map_err(|_| bad("chunk size"))?;
            let size = usize::from_str_radix(size_text.split(';').next().unwrap().trim(), 16)
                .map_err(|_| bad("chunk size"))?;
            rest = &rest[end + 2..];
            if size == 0 {
                break;
            }
            decoded.extend_from_slice(&rest[..size]);
            rest = &rest[size + 2..];
        }
        body = decoded;
    }
    Ok(Reply { status, headers, body })
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

/// `count` spans tagged `test.batch = tag`, in one trace per tag.
fn spans(tag: &str, count: usize) -> Vec<Span> {
    let mut trace = [0u8; 16];
    let hash = tag.bytes().fold(0xcbf29ce484222325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100000001b3));
    trace[..8].copy_from_slice(&hash.to_le_bytes());
    trace[8..].copy_from_slice(&(hash.rotate_left(17) | 1).to_le_bytes());
    (0..count)
        .map(|i| Span {
            trace_id: TraceId(trace),
            span_id: SpanId(((i as u64) + 1).to_le_bytes()),
            parent_span_id: (i > 0).then(|| SpanId(1u64.to_le_bytes())),
            name: format!("op-{}", i % 3),
            start_unix_nano: 1_795_698_000_000_000_000 + i as u64 * 1000,
            duration_ns: 500 + i as u64,
            resource: Resource {
                attributes: vec![KeyValue::new("service.name", AnyValue::Str("serve-test".into()))],
                ..Resource::default()
            },
            attributes: vec![KeyValue::new("test.batch", AnyValue::Str(tag.to_owned()))],
            ..Span::default()
        })
        .collect()
}

fn protobuf(tag: &str, count: usize) -> Vec<u8> {
    spanstore_ingest::otlp::encode_protobuf(&SpanBatch::from_spans(&spans(tag, count)))
}

fn request(tag: &str, count: usize) -> ExportTraceServiceRequest {
    spanstore_ingest::otlp::encode_request(&SpanBatch::from_spans(&spans(tag, count)))
}

const PROTOBUF: (&str, &str) = ("content-type", "application/x-protobuf");
const JSON: (&str, &str) = ("content-type", "application/json");

/// An OTLP/JSON request written by hand, as an SDK's JSON exporter sends it.
fn otlp_json(tag: &str) -> String {
    format!(
        r#"{{"resourceSpans":[{{"resource":{{"attributes":[{{"key":"service.name","value":{{"stringValue":"json-svc"}}}}]}},
        "scopeSpans":[{{"scope":{{"name":"manual"}},"spans":[
          {{"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174","name":"GET /a","kind":2,
            "startTimeUnixNano":"1795698000000000000","endTimeUnixNano":"1795698000001000000",
            "attributes":[{{"key":"test.batch","value":{{"stringValue":"{tag}"}}}},{{"key":"n","value":{{"intValue":"7"}}}}]}},
          {{"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b175","parentSpanId":"eee19b7ec3c1b174",
            "name":"db","kind":3,"startTimeUnixNano":"1795698000000100000","endTimeUnixNano":"1795698000000900000",
            "status":{{"code":2,"message":"boom"}},
            "attributes":[{{"key":"test.batch","value":{{"stringValue":"{tag}"}}}}]}}]}}]}}]}}"#
    )
}

fn zipkin_json(tag: &str) -> String {
    format!(
        r#"[{{"traceId":"1a2b3c4d5e6f70811a2b3c4d5e6f7081","id":"1a2b3c4d5e6f7081","name":"get /z","kind":"SERVER",
            "timestamp":1795698000000000,"duration":1500,"localEndpoint":{{"serviceName":"zipkin-svc"}},
            "tags":{{"test.batch":"{tag}","http.method":"GET"}}}},
           {{"traceId":"1a2b3c4d5e6f70811a2b3c4d5e6f7081","parentId":"1a2b3c4d5e6f7081","id":"1a2b3c4d5e6f7082",
            "name":"select","kind":"CLIENT","timestamp":1795698000000100,"duration":700,
            "localEndpoint":{{"serviceName":"zipkin-svc"}},"tags":{{"test.batch":"{tag}","error":"timeout"}}}}]"#
    )
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

async fn grpc_client(addr: SocketAddr) -> TraceServiceClient<tonic::transport::Channel> {
    TraceServiceClient::connect(format!("http://{addr}"))
        .await
        .unwrap()
        .send_compressed(tonic::codec::CompressionEncoding::Gzip)
        .accept_compressed(tonic::codec::CompressionEncoding::Gzip)
}

#[test]
fn serve_receives_every_protocol_and_answers_queries() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &[]);
    assert_eq!(server.api, server.otlp_http, "the API shares the OTLP/HTTP listener by default");

    // OTLP/HTTP protobuf: an ExportTraceServiceResponse in protobuf, no partial success.
    let reply = http(server.otlp_http, "POST", "/v1/traces", &[PROTOBUF], &protobuf("pb", 20));
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.headers["content-type"], "application/x-protobuf");
    assert_eq!(ExportTraceServiceResponse::decode(reply.body.as_slice()).unwrap().partial_success, None);

    // gzip.
    let reply = http(
        server.otlp_http,
        "POST",
        "/v1/traces",
        &[PROTOBUF, ("content-encoding", "gzip")],
        &gzip(&protobuf("pb-gz", 30)),
    );
    assert_eq!(reply.status, 200, "{}", reply.text());

    // OTLP/JSON, answered in JSON; gzip too.
    let reply = http(server.otlp_http, "POST", "/v1/traces", &[JSON], otlp_json("json").as_bytes());
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.headers["content-type"], "application/json");
    assert_eq!(reply.json(), serde_json::json!({}));
    let reply = http(
        server.otlp_http,
        "POST",
        "/v1/traces",
        &[("content-type", "application/json; charset=utf-8"), ("content-encoding", "gzip")],
        &gzip(otlp_json("json-gz").as_bytes()),
    );
    assert_eq!(reply.status, 200, "{}", reply.text());

    // Partial success: a span with a 15-byte trace id is rejected, the others are kept.
    let mut message = request("partial", 5);
    message.resource_spans[0].scope_spans[0].spans[2].trace_id.truncate(15);
    let reply = http(server.otlp_http, "POST", "/v1/traces", &[PROTOBUF], &message.encode_to_vec());
    assert_eq!(reply.status, 200, "{}", reply.text());
    let partial = ExportTraceServiceResponse::decode(reply.body.as_slice()).unwrap().partial_success.unwrap();
    assert_eq!(partial.rejected_spans, 1);
    assert!(partial.error_message.contains("traceId"), "{}", partial.error_message);
    let json = otlp_json("partial-json").replace("eee19b7ec3c1b175", "eee19b7ec3c1b1");
    let reply = http(server.otlp_http, "POST", "/v1/traces", &[JSON], json.as_bytes());
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.json()["partialSuccess"]["rejectedSpans"], "1", "{}", reply.text());

    // OTLP/gRPC with gzip.
    runtime().block_on(async {
        let mut client = grpc_client(server.otlp_grpc).await;
        let response = client.export(request("grpc", 40)).await.unwrap().into_inner();
        assert_eq!(response.partial_success, None);
        let mut message = request("grpc-partial", 4);
        message.resource_spans[0].scope_spans[0].spans[0].span_id = vec![0; 8];
        let response = client.export(message).await.unwrap().into_inner();
        assert_eq!(response.partial_success.unwrap().rejected_spans, 1);
    });

    // Zipkin: 202, and the error tag sets status error.
    let reply = http(server.zipkin, "POST", "/api/v2/spans", &[JSON], zipkin_json("zipkin").as_bytes());
    assert_eq!(reply.status, 202, "{}", reply.text());
    let reply = http(
        server.zipkin,
        "POST",
        "/api/v2/spans",
        &[JSON, ("content-encoding", "gzip")],
        &gzip(zipkin_json("zipkin-gz").as_bytes()),
    );
    assert_eq!(reply.status, 202, "{}", reply.text());

    for (tag, expected) in [
        ("pb", 20),
        ("pb-gz", 30),
        ("json", 2),
        ("json-gz", 2),
        ("partial", 4),
        ("partial-json", 1),
        ("grpc", 40),
        ("grpc-partial", 3),
        ("zipkin", 2),
        ("zipkin-gz", 2),
    ] {
        assert_eq!(server.count(&format!("test.batch = '{tag}'")), expected, "{tag}");
    }
    assert_eq!(server.count("test.batch = 'zipkin' AND status = 'error'"), 1);

    // The query API: GET with ?q=, POST as JSON and as a form, the same JSON as `query
    // --format json`; errors are 400 with a message.
    let reply = http(
        server.api,
        "GET",
        "/api/query?q=SELECT%20count(*)%20FROM%20spans%20WHERE%20test.batch%20%3D%20'pb'%20FACET%20name",
        &[("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")],
        b"",
    );
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.text(), r#"{"columns":["name","count(*)"],"rows":[["op-0",7],["op-1",7],["op-2",6]]}"#);
    let reply = http(
        server.api,
        "POST",
        "/api/query",
        &[JSON],
        br#"{"q": "SELECT count(*) FROM spans WHERE service = 'json-svc'"}"#,
    );
    assert_eq!(reply.text(), r#"{"columns":["count(*)"],"rows":[[5]]}"#);
    let reply = http(
        server.api,
        "POST",
        "/api/query",
        &[("content-type", "application/x-www-form-urlencoded")],
        b"q=SELECT+count(*)+FROM+spans+WHERE+test.batch+%3D+'grpc'",
    );
    assert_eq!(reply.text(), r#"{"columns":["count(*)"],"rows":[[40]]}"#);
    let reply = http(server.api, "GET", "/api/query?q=SELECT%20count(*)%20FROM%20spans%20FACET%20,%20name", &[], b"");
    assert_eq!(reply.status, 400);
    assert_eq!(reply.json()["error"], "line 1, column 34: expected a field after FACET, found ','");
    let reply = http(server.api, "GET", "/api/query", &[], b"");
    assert_eq!(reply.status, 400);
    assert!(reply.json()["error"].as_str().unwrap().starts_with("no query"), "{}", reply.text());

    // The trace API answers OTLP/JSON; 404 for an absent trace, 400 for a bad id.
    let reply = http(server.api, "GET", "/api/traces/5b8efff798038103d269b633813fc60c", &[], b"");
    assert_eq!(reply.status, 200, "{}", reply.text());
    let trace = reply.json();
    let span_ids: Vec<&str> = trace["resourceSpans"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r["scopeSpans"].as_array().unwrap())
        .flat_map(|s| s["spans"].as_array().unwrap())
        .map(|s| s["spanId"].as_str().unwrap())
        .collect();
    assert!(span_ids.contains(&"eee19b7ec3c1b174") && span_ids.contains(&"eee19b7ec3c1b175"), "{trace}");
    let reply = http(server.api, "GET", "/api/traces/00000000000000000000000000000001", &[], b"");
    assert_eq!(reply.status, 404);
    assert!(reply.json()["error"].as_str().unwrap().contains("no spans of trace"));
    let reply = http(server.api, "GET", "/api/traces/xyz", &[], b"");
    assert_eq!(reply.status, 400);
    assert!(reply.json()["error"].as_str().unwrap().contains("expected 32 hex digits"), "{}", reply.text());

    let reply = http(server.otlp_http, "GET", "/healthz", &[], b"");
    assert_eq!((reply.status, reply.text().as_str()), (200, "ok\n"));
    assert!(server.log().contains("caller_trace_id=4bf92f3577b34da6a3ce929d0e0e4736"), "{}", server.log());
}

#[test]
fn serve_with_a_token_refuses_requests_without_it() {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "t0ken-123\n").unwrap();
    let api = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let api_addr = api.local_addr().unwrap();
    drop(api);
    let server = Server::start(
        &dir.path().join("data"),
        &["--auth-token-file", token_file.to_str().unwrap(), "--api", &api_addr.to_string()],
    );
    assert_eq!(server.api, api_addr);
    assert_ne!(server.api, server.otlp_http);

    let body = protobuf("auth", 3);
    let reply = http(server.otlp_http, "POST", "/v1/traces", &[PROTOBUF], &body);
    assert_eq!(reply.status, 401);
    assert_eq!(reply.headers["www-authenticate"], "Bearer");
    let wrong = ("authorization", "Bearer t0ken-12");
    assert_eq!(http(server.otlp_http, "POST", "/v1/traces", &[PROTOBUF, wrong], &body).status, 401);
    assert_eq!(http(server.zipkin, "POST", "/api/v2/spans", &[JSON], zipkin_json("auth").as_bytes()).status, 401);
    assert_eq!(http(server.api, "GET", "/api/query?q=SELECT%20count(*)%20FROM%20spans", &[], b"").status, 401);
    assert_eq!(http(server.api, "GET", "/healthz", &[], b"").status, 401);
    // The query API is not on the OTLP/HTTP listener when --api names another address.
    let good = ("authorization", "Bearer t0ken-123");
    assert_eq!(http(server.otlp_http, "GET", "/api/query?q=x", &[good], b"").status, 404);

    let reply = http(server.otlp_http, "POST", "/v1/traces", &[PROTOBUF, good], &body);
    assert_eq!(reply.status, 200, "{}", reply.text());
    runtime().block_on(async {
        let mut client = grpc_client(server.otlp_grpc).await;
        let status = client.export(request("auth-grpc", 2)).await.unwrap_err();
        assert_eq!(status.code(), tonic::Code::Unauthenticated);
        let mut call = tonic::Request::new(request("auth-grpc", 2));
        call.metadata_mut().insert("authorization", "Bearer t0ken-123".parse().unwrap());
        client.export(call).await.unwrap();
    });
    let reply =
        http(server.api, "GET", "/api/query?q=SELECT%20count(*)%20FROM%20spans%20FACET%20test.batch", &[good], b"");
    assert_eq!(reply.text(), r#"{"columns":["test.batch","count(*)"],"rows":[["auth",3],["auth-grpc",2]]}"#);
}

/// What a bad request is, its headers, its body and the status it must get.
type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, Vec<u8>, u16);

/// Malformed payloads of every kind: each is a clear 4xx, nothing is stored, and the
/// server keeps serving.
#[test]
fn serve_refuses_bad_payloads_oversized_bodies_and_gzip_bombs() {
    let dir = tempfile::tempdir().unwrap();
    let limit = 64 * 1024;
    let server = Server::start(&dir.path().join("data"), &["--max-body-bytes", &limit.to_string()]);
    let reply = http(server.otlp_http, "POST", "/v1/traces", &[PROTOBUF], &protobuf("good", 10));
    assert_eq!(reply.status, 200);

    let good = protobuf("bad", 10);
    let mut deep = String::from(
        r#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174","name":"x","attributes":[{"key":"deep","value":"#,
    );
    deep.push_str(&r#"{"arrayValue":{"values":["#.repeat(2000));
    deep.push_str(r#"{"intValue":"1"}"#);
    deep.push_str(&"]}}".repeat(2000));
    deep.push_str("}]}]}]}]}");
    let mut bad_utf8 = otlp_json("bad").into_bytes();
    let at = bad_utf8.windows(6).position(|w| w == b"GET /a").unwrap();
    bad_utf8[at + 1] = 0xff;
    // 32 MiB of zeros deflate to about 32 KiB: under the limit on the wire, 512 times
    // over it inflated.
    let bomb = {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        encoder.write_all(&vec![0u8; 32 << 20]).unwrap();
        encoder.finish().unwrap()
    };
    assert!(bomb.len() < limit, "the bomb is small on the wire");
    let cases: Vec<Case> = vec![
        ("truncated protobuf", vec![PROTOBUF], good[..good.len() / 2].to_vec(), 400),
        ("random bytes as protobuf", vec![PROTOBUF], (0..200u32).map(|i| (i * 97 % 251) as u8).collect(), 400),
        ("JSON sent as protobuf", vec![PROTOBUF], otlp_json("bad").into_bytes(), 400),
        ("protobuf sent as JSON", vec![JSON], good.clone(), 400),
        ("not JSON", vec![JSON], b"{\"resourceSpans\": [".to_vec(), 400),
        ("wrong JSON types", vec![JSON], br#"{"resourceSpans": {"scopeSpans": 7}}"#.to_vec(), 400),
        ("invalid UTF-8 in JSON", vec![JSON], bad_utf8, 400),
        ("deep nesting", vec![JSON], deep.into_bytes(), 400),
        ("unknown content type", vec![("content-type", "text/plain")], good.clone(), 415),
        ("no content type", vec![], good.clone(), 415),
        ("unsupported encoding", vec![PROTOBUF, ("content-encoding", "br")], good.clone(), 415),
        ("not gzip", vec![PROTOBUF, ("content-encoding", "gzip")], good.clone(), 400),
        ("truncated gzip", vec![PROTOBUF, ("content-encoding", "gzip")], gzip(&good)[..40].to_vec(), 400),
        ("body over the limit", vec![PROTOBUF], vec![0u8; limit + 1], 413),
        ("gzip bomb", vec![PROTOBUF, ("content-encoding", "gzip")], bomb.clone(), 413),
    ];
    for (what, headers, body, expected) in &cases {
        let reply = http(server.otlp_http, "POST", "/v1/traces", headers, body);
        assert_eq!(reply.status, *expected, "{what}: {}", reply.text());
        let content_type = reply.headers.get("content-type").map(String::as_str);
        // A google.rpc.Status in the request's encoding (JSON when that is unknown).
        let message = if content_type == Some("application/x-protobuf") {
            let mut status = (0i32, String::new());
            let mut buf = reply.body.as_slice();
            // field 1 varint code, field 2 string message
            while !buf.is_empty() {
                let key = prost::encoding::decode_varint(&mut buf).unwrap();
                match key {
                    0x08 => status.0 = prost::encoding::decode_varint(&mut buf).unwrap() as i32,
                    0x12 => {
                        let len = prost::encoding::decode_varint(&mut buf).unwrap() as usize;
                        status.1 = String::from_utf8(buf[..len].to_vec()).unwrap();
                        buf = &buf[len..];
                    }
                    other => panic!("{what}: unexpected field key {other}"),
                }
            }
            assert_ne!(status.0, 0, "{what}");
            status.1
        } else {
            assert_eq!(content_type, Some("application/json"), "{what}");
            reply.json()["message"].as_str().unwrap().to_owned()
        };
        assert!(!message.is_empty(), "{what}");
        if *expected == 413 {
            assert!(message.contains(&limit.to_string()), "{what}: {message}");
        }
    }

    let zipkin_cases: Vec<Case> = vec![
        ("not a JSON array", vec![JSON], br#"{"traceId": 1}"#.to_vec(), 400),
        (
            "non-hex id",
            vec![JSON],
            zipkin_json("bad").replace("1a2b3c4d5e6f7082", "1a2b3c4d5e6f70zz").into_bytes(),
            400,
        ),
        ("protobuf Zipkin", vec![("content-type", "application/x-protobuf")], b"\x0a\x00".to_vec(), 415),
        ("gzip bomb", vec![JSON, ("content-encoding", "gzip")], bomb, 413),
    ];
    for (what, headers, body, expected) in &zipkin_cases {
        let reply = http(server.zipkin, "POST", "/api/v2/spans", headers, body);
        assert_eq!(reply.status, *expected, "zipkin {what}: {}", reply.text());
        assert!(!reply.body.is_empty(), "zipkin {what}");
    }

    // gRPC: over the limit (compressed or inflated) is RESOURCE_EXHAUSTED.
    runtime().block_on(async {
        let mut client = grpc_client(server.otlp_grpc).await;
        let mut message = request("bad", 1);
        message.resource_spans[0].scope_spans[0].spans[0].name = "x".repeat(10 * limit);
        let status = client.export(message).await.unwrap_err();
        assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
    });

    assert_eq!(server.count("test.batch = 'bad'"), 0);
    assert_eq!(server.count("test.batch = 'good'"), 10);
    let reply = http(server.otlp_http, "POST", "/v1/traces", &[PROTOBUF], &protobuf("after", 7));
    assert_eq!(reply.status, 200);
    assert_eq!(server.count("test.batch = 'after'"), 7);
}

#[test]
fn serve_finishes_in_flight_requests_and_closes_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Server::start(&data, &[]);
    let addr = server.otlp_http;
    let stop = Arc::new(AtomicBool::new(false));
    let acknowledged = Arc::new(Mutex::new(Vec::new()));
    let senders: Vec<_> = (0..4)
        .map(|client| {
            let (stop, acknowledged) = (Arc::clone(&stop), Arc::clone(&acknowledged));
            std::thread::spawn(move || {
                for n in 0.. {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let tag = format!("t{client}-{n}");
                    match try_http(addr, "POST", "/v1/traces", &[PROTOBUF], &protobuf(&tag, 20)) {
                        Ok(reply) if reply.status == 200 => acknowledged.lock().unwrap().push(tag),
                        _ => break,
                    }
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    server.signal("TERM");
    let log_path = server.log.clone();
    assert_eq!(server.wait(Duration::from_secs(30)), Some(0), "{}", std::fs::read_to_string(&log_path).unwrap());
    stop.store(true, Ordering::Relaxed);
    for sender in senders {
        sender.join().unwrap();
    }
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(log.contains("SIGTERM: shutting down"), "{log}");
    assert!(log.contains("store closed"), "{log}");

    // Everything acknowledged is there, read by a separate read-only process.
    let acknowledged = acknowledged.lock().unwrap().clone();
    assert!(!acknowledged.is_empty());
    let counts = batch_counts(&data);
    for tag in &acknowledged {
        assert_eq!(counts.get(tag), Some(&20), "{tag}");
    }
    let output = Command::new(env!("CARGO_BIN_EXE_spanstore")).arg("--data").arg(&data).arg("verify").output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stdout));
}

/// Spans per `test.batch`, through `spanstore query` on the directory.
fn batch_counts(data: &Path) -> BTreeMap<String, u64> {
    let output = Command::new(env!("CARGO_BIN_EXE_spanstore"))
        .arg("--data")
        .arg(data)
        .args(["query", "SELECT count(*) FROM spans FACET test.batch LIMIT MAX", "--format", "json"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let value: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    value["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| (row[0].as_str().unwrap_or("").to_owned(), row[1].as_u64().unwrap()))
        .collect()
}

/// Many clients send batches with unique tags; SIGKILL mid-stream; after a restart every
/// acknowledged batch is stored exactly once, and every batch is whole or absent.
#[test]
fn serve_keeps_every_acknowledged_span_exactly_once_after_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Server::start(&data, &[]);
    let (http_addr, grpc_addr) = (server.otlp_http, server.otlp_grpc);
    let stop = Arc::new(AtomicBool::new(false));
    let acknowledged = Arc::new(Mutex::new(Vec::new()));
    const SPANS_PER_BATCH: usize = 25;
    let mut clients: Vec<std::thread::JoinHandle<()>> = (0..12)
        .map(|client| {
            let (stop, acknowledged) = (Arc::clone(&stop), Arc::clone(&acknowledged));
            std::thread::spawn(move || {
                for n in 0.. {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let tag = format!("h{client}-{n}");
                    let (headers, body) = if n % 2 == 0 {
                        (vec![PROTOBUF], protobuf(&tag, SPANS_PER_BATCH))
                    } else {
                        (vec![PROTOBUF, ("content-encoding", "gzip")], gzip(&protobuf(&tag, SPANS_PER_BATCH)))
                    };
                    match try_http(http_addr, "POST", "/v1/traces", &headers, &body) {
                        Ok(reply) if reply.status == 200 => acknowledged.lock().unwrap().push(tag),
                        _ => break,
                    }
                }
            })
        })
        .collect();
    clients.extend((0..4).map(|client| {
        let (stop, acknowledged) = (Arc::clone(&stop), Arc::clone(&acknowledged));
        std::thread::spawn(move || {
            runtime().block_on(async {
                let Ok(channel) =
                    tonic::transport::Channel::from_shared(format!("http://{grpc_addr}")).unwrap().connect().await
                else {
                    return;
                };
                let mut client_stub =
                    TraceServiceClient::new(channel).send_compressed(tonic::codec::CompressionEncoding::Gzip);
                for n in 0.. {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let tag = format!("g{client}-{n}");
                    match client_stub.export(request(&tag, SPANS_PER_BATCH)).await {
                        Ok(_) => acknowledged.lock().unwrap().push(tag),
                        Err(_) => break,
                    }
                }
            })
        })
    }));
    std::thread::sleep(Duration::from_millis(1500));
    server.signal("KILL");
    assert_eq!(server.wait(Duration::from_secs(10)), None, "killed by a signal");
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.join().unwrap();
    }
    let acknowledged = acknowledged.lock().unwrap().clone();
    assert!(acknowledged.len() > 20, "only {} batches acknowledged", acknowledged.len());

    // Restart on the same directory: recovery replays the log; count through the API.
    let server = Server::start(&data, &[]);
    let reply = http(
        server.api,
        "POST",
        "/api/query",
        &[("content-type", "text/plain")],
        b"SELECT count(*) FROM spans FACET test.batch LIMIT MAX",
    );
    assert_eq!(reply.status, 200, "{}", reply.text());
    let counts: BTreeMap<String, u64> = reply.json()["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| (row[0].as_str().unwrap().to_owned(), row[1].as_u64().unwrap()))
        .collect();
    for tag in &acknowledged {
        assert_eq!(counts.get(tag), Some(&(SPANS_PER_BATCH as u64)), "acknowledged batch {tag}");
    }
    for (tag, count) in &counts {
        assert_eq!(*count, SPANS_PER_BATCH as u64, "batch {tag} is stored whole or not at all, once");
    }
    let total: u64 = counts.values().sum();
    assert_eq!(server.count("test.batch IS NOT NULL"), total);
    eprintln!("{} batches acknowledged, {} stored after SIGKILL", acknowledged.len(), counts.len());
}
