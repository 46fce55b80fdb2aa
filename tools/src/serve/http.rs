//! The HTTP side of `serve` (axum): OTLP/HTTP `POST /v1/traces`, Zipkin `POST
//! /api/v2/spans`, the query API (`/api/query`, `/api/traces/{id}`) and `/healthz`.
//!
//! OTLP/HTTP answers follow the OTLP specification: an `ExportTraceServiceResponse` in
//! the request's encoding (protobuf or JSON), with a partial success when spans were
//! rejected; a failure carries a `google.rpc.Status` in that encoding. Zipkin answers
//! 202 with no body, as Zipkin servers do, and plain-text errors. The query API
//! answers JSON: the result of `query --format json`, or `{"error": "..."}`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTracePartialSuccess, ExportTraceServiceResponse};
use prost::Message;
use spanstore_engine::{Store, TraceId};

use super::pipeline::{self, Accepted, Wire};
use super::{log_refusal, run_blocking, AppState, ServeError};

type Shared = Arc<AppState>;

const PROTOBUF: &str = "application/x-protobuf";
const JSON: &str = "application/json";

/// `POST /v1/traces`.
pub(crate) fn otlp_router() -> Router<Shared> {
    Router::new().route("/v1/traces", post(post_traces))
}

/// `GET|POST /api/query`, `GET /api/traces/{id}`.
pub(crate) fn api_router() -> Router<Shared> {
    Router::new().route("/api/query", get(get_query).post(post_query)).route("/api/traces/{id}", get(get_trace))
}

/// `POST /api/v2/spans`.
pub(crate) fn zipkin_router() -> Router<Shared> {
    Router::new().route("/api/v2/spans", post(post_zipkin))
}

/// Adds what every listener serves (`/healthz`, the token check) and the state.
pub(crate) fn finish(router: Router<Shared>, state: Shared) -> Router {
    router
        .route("/healthz", get(healthz))
        .layer(middleware::from_fn_with_state(Arc::clone(&state), require_token))
        .with_state(state)
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn require_token(State(state): State<Shared>, request: Request, next: Next) -> Response {
    if let Some(token) = &state.token {
        let header = request.headers().get(header::AUTHORIZATION).map(HeaderValue::as_bytes);
        if !token.admits(header) {
            tracing::info!(path = request.uri().path(), "request refused: missing or wrong bearer token");
            let message = "missing or wrong bearer token (Authorization: Bearer <token>)";
            let mut response = if request.uri().path() == "/v1/traces" {
                let encoding = otlp_encoding(request.headers()).unwrap_or(OtlpEncoding::Json);
                otlp_failure(encoding, StatusCode::UNAUTHORIZED, tonic::Code::Unauthenticated, message)
            } else {
                json_error(StatusCode::UNAUTHORIZED, message)
            };
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            return response;
        }
    }
    next.run(request).await
}

/// The media type of a request without parameters, lowercased.
fn media_type(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    let essence = value.split(';').next().unwrap_or(value).trim();
    Some(essence.to_ascii_lowercase())
}

/// Whether the body is gzip-compressed; another `Content-Encoding` is refused.
fn is_gzip(headers: &HeaderMap) -> Result<bool, ServeError> {
    let Some(value) = headers.get(header::CONTENT_ENCODING) else { return Ok(false) };
    let text = value.to_str().unwrap_or("").trim().to_ascii_lowercase();
    match text.as_str() {
        "" | "identity" => Ok(false),
        "gzip" | "x-gzip" => Ok(true),
        _ => Err(ServeError::UnsupportedMedia(format!(
            "content encoding {:?} is not supported: send gzip or no Content-Encoding",
            String::from_utf8_lossy(value.as_bytes())
        ))),
    }
}

/// Reads the whole body, refusing one longer than `limit_bytes` as soon as it is.
async fn read_body(headers: &HeaderMap, body: Body, limit_bytes: usize) -> Result<Bytes, ServeError> {
    let too_large = |length: Option<u64>| {
        let size = length.map(|n| format!(" of {n} bytes")).unwrap_or_default();
        ServeError::TooLarge(format!(
            "request body{size} is larger than the limit of {limit_bytes} bytes (--max-body-bytes)"
        ))
    };
    let declared =
        headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if let Some(length) = declared {
        if length > u64::try_from(limit_bytes).unwrap_or(u64::MAX) {
            return Err(too_large(Some(length)));
        }
    }
    axum::body::to_bytes(body, limit_bytes).await.map_err(|err| {
        let inner = err.into_inner();
        if inner.downcast_ref::<http_body_util::LengthLimitError>().is_some() {
            too_large(None)
        } else {
            ServeError::Body(inner.to_string())
        }
    })
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum OtlpEncoding {
    Protobuf,
    Json,
}

impl OtlpEncoding {
    fn content_type(self) -> &'static str {
        match self {
            OtlpEncoding::Protobuf => PROTOBUF,
            OtlpEncoding::Json => JSON,
        }
    }
}

fn otlp_encoding(headers: &HeaderMap) -> Result<OtlpEncoding, ServeError> {
    match media_type(headers).as_deref() {
        Some(PROTOBUF) | Some("application/protobuf") => Ok(OtlpEncoding::Protobuf),
        Some(JSON) => Ok(OtlpEncoding::Json),
        Some(other) => Err(ServeError::UnsupportedMedia(format!(
            "content type {other:?} is not supported: send application/x-protobuf or application/json"
        ))),
        None => {
            Err(ServeError::UnsupportedMedia("no content type: send application/x-protobuf or application/json".into()))
        }
    }
}

/// `google.rpc.Status`, the body of an OTLP/HTTP failure (its `details` are left empty).
#[derive(Clone, PartialEq, prost::Message)]
struct RpcStatus {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
}

fn with_content_type(status: StatusCode, content_type: &'static str, body: Vec<u8>) -> Response {
    (status, [(header::CONTENT_TYPE, HeaderValue::from_static(content_type))], body).into_response()
}

fn otlp_failure(encoding: OtlpEncoding, status: StatusCode, code: tonic::Code, message: &str) -> Response {
    let body = match encoding {
        OtlpEncoding::Protobuf => RpcStatus { code: code as i32, message: message.to_owned() }.encode_to_vec(),
        OtlpEncoding::Json => serde_json::json!({ "code": code as i32, "message": message }).to_string().into_bytes(),
    };
    with_content_type(status, encoding.content_type(), body)
}

fn otlp_success(encoding: OtlpEncoding, accepted: &Accepted) -> Response {
    let body = match encoding {
        OtlpEncoding::Protobuf => {
            let partial_success = (accepted.rejected_spans > 0).then(|| ExportTracePartialSuccess {
                rejected_spans: i64::try_from(accepted.rejected_spans).unwrap_or(i64::MAX),
                error_message: accepted.first_rejection.clone().unwrap_or_default(),
            });
            ExportTraceServiceResponse { partial_success }.encode_to_vec()
        }
        // OTLP/JSON writes int64 as a decimal string.
        OtlpEncoding::Json if accepted.rejected_spans > 0 => serde_json::json!({
            "partialSuccess": {
                "rejectedSpans": accepted.rejected_spans.to_string(),
                "errorMessage": accepted.first_rejection.clone().unwrap_or_default(),
            }
        })
        .to_string()
        .into_bytes(),
        OtlpEncoding::Json => b"{}".to_vec(),
    };
    with_content_type(StatusCode::OK, encoding.content_type(), body)
}

async fn post_traces(State(state): State<Shared>, headers: HeaderMap, body: Body) -> Response {
    let encoding = match otlp_encoding(&headers) {
        Ok(encoding) => encoding,
        Err(err) => {
            log_refusal("otlp/http", &err);
            return otlp_failure(OtlpEncoding::Json, err.http_status(), err.grpc_code(), &err.to_string());
        }
    };
    let wire = match encoding {
        OtlpEncoding::Protobuf => Wire::OtlpProtobuf,
        OtlpEncoding::Json => Wire::OtlpJson,
    };
    match receive(state, &headers, body, wire).await {
        Ok(accepted) => otlp_success(encoding, &accepted),
        Err(err) => {
            log_refusal("otlp/http", &err);
            let mut response = otlp_failure(encoding, err.http_status(), err.grpc_code(), &err.to_string());
            if matches!(err, ServeError::Overloaded(_)) {
                // OTLP/HTTP clients retry a 429 after this many seconds.
                response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            response
        }
    }
}

/// Reads, inflates, decodes and appends one body; returns once its spans are durable.
async fn receive(state: Shared, headers: &HeaderMap, body: Body, wire: Wire) -> Result<Accepted, ServeError> {
    let gzip = is_gzip(headers)?;
    let limit_bytes = state.max_body_bytes;
    // Hold the declared body before reading it, the rest once it is read: a request that
    // would pass the in-flight limit is refused before its bytes are taken in.
    // (A declared length over `--max-body-bytes` is refused with 413 by `read_body`.)
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|&length| length <= limit_bytes)
        .unwrap_or(0);
    let mut reservation = state.in_flight.reservation();
    reservation.grow(declared)?;
    let bytes = read_body(headers, body, limit_bytes).await?;
    reservation.grow(bytes.len().saturating_sub(declared))?;
    let accepted =
        run_blocking(move || pipeline::ingest_body(&state.store, wire, bytes, gzip, limit_bytes, &mut reservation))
            .await?;
    tracing::debug!(?wire, spans = accepted.accepted_spans, rejected = accepted.rejected_spans, "export");
    Ok(accepted)
}

async fn post_zipkin(State(state): State<Shared>, headers: HeaderMap, body: Body) -> Response {
    // Zipkin reporters send application/json; some send no content type at all.
    match media_type(&headers).as_deref() {
        None | Some(JSON) => {}
        Some(other) => {
            let err = ServeError::UnsupportedMedia(format!(
                "content type {other:?} is not supported: send Zipkin v2 JSON as application/json"
            ));
            log_refusal("zipkin", &err);
            return (err.http_status(), err.to_string()).into_response();
        }
    }
    match receive(state, &headers, body, Wire::ZipkinJson).await {
        Ok(_) => StatusCode::ACCEPTED.into_response(),
        Err(err) => {
            log_refusal("zipkin", &err);
            (err.http_status(), err.to_string()).into_response()
        }
    }
}

fn json_error(status: StatusCode, message: &str) -> Response {
    with_content_type(status, JSON, serde_json::json!({ "error": message }).to_string().into_bytes())
}

fn now_unix_nano() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// A tracing span for one API request, carrying the caller's trace id when it sent a
/// valid W3C `traceparent` (an invalid one is ignored, as the recommendation says).
fn api_span(route: &'static str, headers: &HeaderMap) -> tracing::Span {
    let span = tracing::info_span!("api", route, caller_trace_id = tracing::field::Empty);
    if let Some(value) = headers.get("traceparent").and_then(|v| v.to_str().ok()) {
        match spanstore_ingest::tracecontext::TraceParent::parse(value) {
            Ok(parent) => {
                span.record("caller_trace_id", tracing::field::display(parent.trace_id.to_hex()));
            }
            Err(err) => tracing::debug!("ignoring an invalid traceparent {value:?}: {err}"),
        }
    }
    span
}

/// What a query request answers: 200 with the result, 400 for a query that doesn't
/// parse or type-check, 500 when the store fails to read.
fn run_query(store: &Store, text: &str) -> Response {
    let started = Instant::now();
    let statement = match spanstore_query::parse(text) {
        Ok(statement) => statement,
        Err(err) => {
            tracing::info!("query refused: {err}");
            return json_error(StatusCode::BAD_REQUEST, &err.to_string());
        }
    };
    let options = spanstore_query::ExecOptions { now_unix_nano: now_unix_nano(), cancel: None, ..Default::default() };
    match spanstore_query::execute(&store.snapshot(), &statement, &options) {
        Ok(result) => {
            tracing::info!(rows = result.rows.len(), elapsed_us = started.elapsed().as_micros() as u64, "query");
            with_content_type(StatusCode::OK, JSON, result.to_json().into_bytes())
        }
        Err(err) => {
            use spanstore_query::QueryError;
            let status = match err {
                QueryError::Syntax { .. } | QueryError::Type { .. } | QueryError::Timestamp { .. } => {
                    StatusCode::BAD_REQUEST
                }
                _ => StatusCode::INTERNAL_SERVER_ERROR,
            };
            tracing::warn!("query failed: {err}");
            json_error(status, &err.to_string())
        }
    }
}

async fn query_response(state: Shared, span: tracing::Span, text: String) -> Response {
    let result = run_blocking(move || {
        let _entered = span.enter();
        Ok(run_query(&state.store, &text))
    })
    .await;
    result.unwrap_or_else(|err| json_error(err.http_status(), &err.to_string()))
}

const MISSING_QUERY: &str = "no query: pass it as ?q=, or POST it as the body (text, JSON {\"q\": ...} or a form)";

async fn get_query(
    State(state): State<Shared>,
    headers: HeaderMap,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    let span = api_span("/api/query", &headers);
    match params.get("q") {
        Some(text) => query_response(state, span, text.clone()).await,
        None => json_error(StatusCode::BAD_REQUEST, MISSING_QUERY),
    }
}

async fn post_query(
    State(state): State<Shared>,
    headers: HeaderMap,
    Query(params): Query<HashMap<String, String>>,
    body: Bytes,
) -> Response {
    let span = api_span("/api/query", &headers);
    let text = match params.get("q") {
        Some(text) => Ok(text.clone()),
        None => query_from_body(media_type(&headers).as_deref(), &body),
    };
    match text {
        Ok(text) if !text.trim().is_empty() => query_response(state, span, text).await,
        Ok(_) => json_error(StatusCode::BAD_REQUEST, MISSING_QUERY),
        Err(message) => json_error(StatusCode::BAD_REQUEST, &message),
    }
}

/// The query text a POST body carries: a JSON object's `q` (or `query`), a form's `q`,
/// or the whole body as text.
fn query_from_body(media_type: Option<&str>, body: &[u8]) -> Result<String, String> {
    match media_type {
        Some(JSON) => {
            let value: serde_json::Value =
                serde_json::from_slice(body).map_err(|e| format!("request body: invalid JSON: {e}"))?;
            ["q", "query"]
                .iter()
                .find_map(|key| value.get(key).and_then(|v| v.as_str()))
                .map(str::to_owned)
                .ok_or_else(|| "request body: expected a JSON object with a string \"q\"".to_owned())
        }
        Some("application/x-www-form-urlencoded") => {
            let text = std::str::from_utf8(body).map_err(|e| format!("request body: invalid UTF-8: {e}"))?;
            for pair in text.split('&') {
                let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
                if form_decode(key)? == "q" {
                    return form_decode(value);
                }
            }
            Err(MISSING_QUERY.to_owned())
        }
        _ => String::from_utf8(body.to_vec()).map_err(|e| format!("request body: invalid UTF-8: {e}")),
    }
}

/// Decodes one `application/x-www-form-urlencoded` component (`+` is a space).
fn form_decode(text: &str) -> Result<String, String> {
    let mut bytes = Vec::with_capacity(text.len());
    let mut input = text.bytes();
    while let Some(byte) = input.next() {
        match byte {
            b'+' => bytes.push(b' '),
            b'%' => {
                let high = input.next().and_then(|b| (b as char).to_digit(16));
                let low = input.next().and_then(|b| (b as char).to_digit(16));
                match (high, low) {
                    (Some(high), Some(low)) => bytes.push((high * 16 + low) as u8),
                    _ => return Err(format!("request body: invalid percent-escape in form field {text:?}")),
                }
            }
            other => bytes.push(other),
        }
    }
    String::from_utf8(bytes).map_err(|e| format!("request body: form field is not UTF-8: {e}"))
}

async fn get_trace(State(state): State<Shared>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    let span = api_span("/api/traces/{id}", &headers);
    let trace_id = match TraceId::from_hex(&id) {
        Ok(trace_id) => trace_id,
        Err(err) => return json_error(StatusCode::BAD_REQUEST, &err.to_string()),
    };
    let result = run_blocking(move || {
        let _entered = span.enter();
        state.store.trace(trace_id).map_err(ServeError::Store)
    })
    .await;
    match result {
        Ok(spans) if spans.is_empty() => json_error(StatusCode::NOT_FOUND, &format!("no spans of trace {trace_id}")),
        Ok(spans) => {
            let mut body = Vec::new();
            spanstore_ingest::otlp_json::encode_json_spans(&spans, &mut body);
            with_content_type(StatusCode::OK, JSON, body)
        }
        Err(err) => {
            tracing::error!("trace {trace_id}: {err}");
            json_error(StatusCode::INTERNAL_SERVER_ERROR, &err.to_string())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_fields_decode_and_bad_escapes_are_errors() {
        assert_eq!(form_decode("SELECT+count(*)%20FROM+spans").unwrap(), "SELECT count(*) FROM spans");
        assert_eq!(form_decode("caf%C3%A9").unwrap(), "café");
        assert!(form_decode("%zz").unwrap_err().contains("invalid percent-escape"));
        assert!(form_decode("%ff").unwrap_err().contains("not UTF-8"));
    }

    #[test]
    fn query_text_comes_from_json_forms_or_the_raw_body() {
        assert_eq!(query_from_body(Some(JSON), br#"{"q": "SELECT 1"}"#).unwrap(), "SELECT 1");
        assert_eq!(query_from_body(Some(JSON), br#"{"query": "x"}"#).unwrap(), "x");
        assert!(query_from_body(Some(JSON), br#"{"q": 1}"#).unwrap_err().contains("string \"q\""));
        assert!(query_from_body(Some(JSON), b"{").unwrap_err().contains("invalid JSON"));
        let form = Some("application/x-www-form-urlencoded");
        assert_eq!(query_from_body(form, b"a=1&q=SELECT+x").unwrap(), "SELECT x");
        assert_eq!(query_from_body(form, b"a=1").unwrap_err(), MISSING_QUERY);
        assert_eq!(query_from_body(Some("text/plain"), b"TRACE 'x'").unwrap(), "TRACE 'x'");
        assert_eq!(query_from_body(None, b"SELECT y").unwrap(), "SELECT y");
    }

    #[test]
    fn content_types_and_encodings_are_recognised() {
        let mut headers = HeaderMap::new();
        assert!(otlp_encoding(&headers).is_err());
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("Application/JSON; charset=utf-8"));
        assert_eq!(otlp_encoding(&headers).unwrap(), OtlpEncoding::Json);
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/x-protobuf"));
        assert_eq!(otlp_encoding(&headers).unwrap(), OtlpEncoding::Protobuf);
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        assert!(otlp_encoding(&headers).unwrap_err().to_string().contains("\"text/plain\" is not supported"));
        assert!(!is_gzip(&headers).unwrap());
        headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        assert!(is_gzip(&headers).unwrap());
        headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static("br"));
        assert!(is_gzip(&headers).is_err());
    }
}
