//! OTLP/gRPC: `opentelemetry.proto.collector.trace.v1.TraceService/Export` with tonic.
//! gzip is accepted (the SDKs send it) and answered in kind; a message larger than
//! `--max-body-bytes`, compressed or inflated, is RESOURCE_EXHAUSTED (tonic bounds the
//! inflation itself, so a gzip bomb is never expanded).

use std::sync::Arc;

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{TraceService, TraceServiceServer};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use tonic::codec::CompressionEncoding;
use tonic::service::interceptor::InterceptedService;
use tonic::{Request, Response, Status};

use super::pipeline::{self, Accepted};
use super::{log_refusal, run_blocking, AppState};

/// The tonic service behind the gRPC listener.
struct Receiver {
    state: Arc<AppState>,
}

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        request: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        let message = request.into_inner();
        let store = Arc::clone(&self.state.store);
        let mut reservation = self.state.in_flight.reservation();
        let result = run_blocking(move || {
            let decoded = spanstore_ingest::otlp::decode_request(&message);
            drop(message);
            // tonic has read and decoded the message already; the batch is what waits
            // for the fsync.
            reservation.grow(decoded.batch.memory_size_bytes())?;
            pipeline::append_decoded(&store, decoded)
        })
        .await;
        match result {
            Ok(accepted) => {
                tracing::debug!(
                    spans = accepted.accepted_spans,
                    rejected = accepted.rejected_spans,
                    "otlp/grpc export"
                );
                Ok(Response::new(response(&accepted)))
            }
            Err(err) => {
                log_refusal("otlp/grpc", &err);
                Err(Status::new(err.grpc_code(), err.to_string()))
            }
        }
    }
}

/// The export response: partial success when spans were rejected.
fn response(accepted: &Accepted) -> ExportTraceServiceResponse {
    let partial_success = (accepted.rejected_spans > 0).then(|| ExportTracePartialSuccess {
        rejected_spans: i64::try_from(accepted.rejected_spans).unwrap_or(i64::MAX),
        error_message: accepted.first_rejection.clone().unwrap_or_default(),
    });
    ExportTraceServiceResponse { partial_success }
}

/// The checker of the `authorization` metadata (a pass-through without a token).
#[derive(Clone)]
pub(crate) struct CheckToken(Arc<AppState>);

impl tonic::service::Interceptor for CheckToken {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        match &self.0.token {
            Some(token) => {
                let header = request.metadata().get("authorization").map(|v| v.as_bytes());
                if token.admits(header) {
                    Ok(request)
                } else {
                    tracing::info!(receiver = "otlp/grpc", "request refused: missing or wrong bearer token");
                    Err(Status::unauthenticated("missing or wrong bearer token in the authorization metadata"))
                }
            }
            None => Ok(request),
        }
    }
}

/// The configured service: gzip both ways, the body limit, the token check.
pub(crate) fn service(state: Arc<AppState>) -> InterceptedService<TraceServiceServer<impl TraceService>, CheckToken> {
    let limit = state.max_body_bytes;
    let server = TraceServiceServer::new(Receiver { state: Arc::clone(&state) })
        .accept_compressed(CompressionEncoding::Gzip)
        .send_compressed(CompressionEncoding::Gzip)
        .max_decoding_message_size(limit);
    InterceptedService::new(server, CheckToken(state))
}
