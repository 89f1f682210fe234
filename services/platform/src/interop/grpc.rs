//! The gRPC server bootstrap, written once: health (`grpc.health.v1`), server reflection,
//! explicit message limits, and graceful shutdown that reports NOT_SERVING first and then
//! drains in-flight calls. Also the one way a service refuses bad input.

use std::convert::Infallible;

use tokio::net::TcpListener;
use tonic::body::Body;
use tonic::server::NamedService;
use tonic::transport::Server;
use tonic::{Code, Status};
use tonic_health::ServingStatus;
use tonic_types::{ErrorDetails, StatusExt};

use crate::shutdown::Shutdown;

/// Largest message a DTKS service decodes: a household with its members is a few KiB;
/// bulk imports stream one proposal per message.
pub const MAX_MESSAGE_BYTES: usize = 1024 * 1024;
/// Largest message a DTKS service sends (snapshot and list pages).
pub const MAX_SEND_BYTES: usize = 8 * 1024 * 1024;

/// HTTP/2 flow-control window per stream.
pub const STREAM_WINDOW_BYTES: u32 = 2 * 1024 * 1024;

/// The server's TLS settings from `tls`, or `None` for plain text.
pub fn server_tls(
    tls: &crate::config::TlsConfig,
) -> anyhow::Result<Option<tonic::transport::ServerTlsConfig>> {
    use secrecy::ExposeSecret;
    let (Some(cert), Some(key)) = (&tls.cert, &tls.key) else {
        anyhow::ensure!(
            tls.cert.is_none() && tls.key.is_none(),
            "TLS needs both DTKS_TLS__CERT and DTKS_TLS__KEY"
        );
        return Ok(None);
    };
    let mut config = tonic::transport::ServerTlsConfig::new().identity(
        tonic::transport::Identity::from_pem(cert, key.expose_secret()),
    );
    if let Some(ca) = &tls.client_ca {
        config = config.client_ca_root(tonic::transport::Certificate::from_pem(ca));
    }
    Ok(Some(config))
}

/// A channel to another service at `url`: over TLS for `https://` (trusting `tls.ca`,
/// presenting the service's own certificate when it has one), plain text otherwise.
pub fn endpoint(
    url: &str,
    tls: &crate::config::TlsConfig,
) -> anyhow::Result<tonic::transport::Endpoint> {
    use secrecy::ExposeSecret;
    let endpoint = tonic::transport::Endpoint::from_shared(url.to_owned())?;
    if !url.starts_with("https://") {
        return Ok(endpoint);
    }
    let mut config = tonic::transport::ClientTlsConfig::new();
    if let Some(ca) = &tls.ca {
        config = config.ca_certificate(tonic::transport::Certificate::from_pem(ca));
    }
    if let (Some(cert), Some(key)) = (&tls.cert, &tls.key) {
        config = config.identity(tonic::transport::Identity::from_pem(
            cert,
            key.expose_secret(),
        ));
    }
    Ok(endpoint.tls_config(config)?)
}

/// A health service that reports `S` (and the server as a whole) as serving.
async fn serving<S: NamedService>() -> (
    tonic_health::server::HealthReporter,
    tonic_health::pb::health_server::HealthServer<impl tonic_health::pb::health_server::Health>,
) {
    let (reporter, health) = tonic_health::server::health_reporter();
    for name in [S::NAME, ""] {
        reporter
            .set_service_status(name, ServingStatus::Serving)
            .await;
    }
    (reporter, health)
}

/// Serves `service` with health and reflection on `listener` until `shutdown`, over TLS
/// when `tls` names a certificate.
pub async fn serve<S>(
    listener: TcpListener,
    service: S,
    shutdown: Shutdown,
    tls: &crate::config::TlsConfig,
) -> anyhow::Result<()>
where
    S: tower::Service<http::Request<Body>, Error = Infallible>
        + NamedService
        + Clone
        + Send
        + Sync
        + 'static,
    S::Response: axum::response::IntoResponse,
    S::Future: Send + 'static,
{
    let (reporter, health) = serving::<S>().await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(dtks_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        // Reflection lists what this port serves: the service, health, reflection.
        .with_service_name(S::NAME)
        .with_service_name("grpc.health.v1.Health")
        .with_service_name("grpc.reflection.v1.ServerReflection")
        .build_v1()?;
    let addr = listener.local_addr()?;
    let server_tls = server_tls(tls)?;
    tracing::info!(
        %addr,
        service = S::NAME,
        tls = server_tls.is_some(),
        mutual = tls.client_ca.is_some(),
        "gRPC listening"
    );
    // With TLS on, the kubelet's probes get health alone in plain text on their own port.
    if let (Some(_), Some(health_addr)) = (&server_tls, &tls.health_addr) {
        let health_listener = TcpListener::bind(health_addr).await?;
        let (probe_reporter, probe_health) = serving::<S>().await;
        let probe_shutdown = shutdown.clone();
        tokio::spawn(async move {
            let drained = async move {
                probe_shutdown.wait().await;
                // Reported as not serving from the first moment of the drain.
                probe_reporter
                    .set_service_status("", ServingStatus::NotServing)
                    .await;
                std::future::pending::<()>().await;
            };
            let _ = Server::builder()
                .add_service(probe_health)
                .serve_with_incoming_shutdown(incoming(health_listener), drained)
                .await;
        });
    }
    let drain = async move {
        shutdown.wait().await;
        reporter
            .set_service_status(S::NAME, ServingStatus::NotServing)
            .await;
        reporter
            .set_service_status("", ServingStatus::NotServing)
            .await;
        tracing::info!("draining gRPC calls");
    };
    let mut builder = Server::builder();
    if let Some(config) = server_tls {
        builder = builder.tls_config(config)?;
    }
    builder
        .trace_fn(request_span)
        // Bulk imports stream thousands of messages: HTTP/2's default 64 KiB window would
        // stall the sender on every few dozen rows.
        .initial_stream_window_size(Some(STREAM_WINDOW_BYTES))
        .initial_connection_window_size(Some(4 * STREAM_WINDOW_BYTES))
        .add_service(health)
        .add_service(reflection)
        .add_service(service)
        .serve_with_incoming_shutdown(incoming(listener), drain)
        .await?;
    Ok(())
}

/// The span of one call: a child of the caller's trace when the call carries W3C trace
/// context (`traceparent`), its trace id recorded so that the call's log lines name it.
/// Health checks and reflection are not traced.
fn request_span(request: &http::Request<()>) -> tracing::Span {
    let path = request.uri().path();
    if path.starts_with("/grpc.health.") || path.starts_with("/grpc.reflection.") {
        return tracing::Span::none();
    }
    let span = tracing::info_span!(
        "grpc",
        otel.kind = "server",
        rpc.method = %path,
        trace_id = tracing::field::Empty
    );
    let header = |name: &str| {
        request
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    };
    crate::telemetry::set_remote_parent(&span, header("traceparent"), header("tracestate"));
    crate::telemetry::record_trace_id(&span);
    span
}

/// The most field violations one refusal lists; the rest are counted in its message, so
/// that the error trailer stays well under the 8 KiB a standard client takes.
pub const MAX_LISTED_VIOLATIONS: usize = 20;
/// The longest field path or description a refusal carries.
const MAX_VIOLATION_CHARS: usize = 160;

fn clipped(text: &str) -> String {
    if text.chars().count() <= MAX_VIOLATION_CHARS {
        text.to_owned()
    } else {
        let mut t: String = text.chars().take(MAX_VIOLATION_CHARS).collect();
        t.push('…');
        t
    }
}

/// INVALID_ARGUMENT with a `google.rpc.BadRequest` naming the offending fields (at most
/// [`MAX_LISTED_VIOLATIONS`]; the message counts the rest).
pub fn invalid_argument(violations: &dtks_domain::Violations) -> Status {
    let mut details = ErrorDetails::new();
    for v in violations.0.iter().take(MAX_LISTED_VIOLATIONS) {
        details.add_bad_request_violation(clipped(&v.field), clipped(&v.description));
    }
    let first = violations
        .0
        .first()
        .map(|v| clipped(&v.to_string()))
        .unwrap_or_default();
    let message = if violations.0.len() > 1 {
        format!(
            "{first} (and {} more field violations)",
            violations.0.len() - 1
        )
    } else {
        first
    };
    Status::with_error_details(Code::InvalidArgument, message, details)
}

/// A code's name as the gRPC specification writes it (`PERMISSION_DENIED`).
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

/// The fields a refusal names, with why: its `google.rpc.BadRequest` violations.
pub fn violations_of(status: &Status) -> Vec<(String, String)> {
    status
        .get_details_bad_request()
        .map(|b| {
            b.field_violations
                .into_iter()
                .map(|v| (v.field, v.description))
                .collect()
        })
        .unwrap_or_default()
}

/// INVALID_ARGUMENT for one field.
pub fn invalid_field(field: &str, description: impl Into<String>) -> Status {
    let mut v = dtks_domain::Violations::default();
    v.push(field, description);
    invalid_argument(&v)
}

/// INTERNAL for a storage or bus failure; the cause is logged, never sent to the caller.
pub fn internal(error: impl std::fmt::Display) -> Status {
    tracing::error!(%error, "internal error");
    Status::internal("internal error; the operation was not applied")
}

/// FAILED_PRECONDITION with a `google.rpc.PreconditionFailure` listing each
/// `(type, subject, description)`; the message names the first.
pub fn failed_preconditions(violations: &[(String, String, String)]) -> Status {
    let mut details = ErrorDetails::new();
    for (kind, subject, description) in violations.iter().take(MAX_LISTED_VIOLATIONS) {
        details.add_precondition_failure_violation(
            clipped(kind),
            clipped(subject),
            clipped(description),
        );
    }
    let message = match violations {
        [] => String::from("precondition failed"),
        [(_, subject, description)] => format!("{}: {}", clipped(subject), clipped(description)),
        [(_, subject, description), rest @ ..] => {
            format!(
                "{}: {} (and {} more)",
                clipped(subject),
                clipped(description),
                rest.len()
            )
        }
    };
    Status::with_error_details(Code::FailedPrecondition, message, details)
}

/// The connections a listener accepts, each with Nagle's algorithm off. A gRPC answer
/// goes out as a few small HTTP/2 frames; with Nagle on, the last of them waited for
/// the caller's delayed ACK, and one call in a hundred took 40 ms more.
fn incoming(listener: TcpListener) -> tonic::transport::server::TcpIncoming {
    tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true))
}

/// A generated tonic server with DTKS's message limits: [`MAX_MESSAGE_BYTES`] decoded,
/// [`MAX_SEND_BYTES`] sent.
#[macro_export]
macro_rules! with_limits {
    ($server:expr) => {
        $server
            .max_decoding_message_size($crate::grpc::MAX_MESSAGE_BYTES)
            .max_encoding_message_size($crate::grpc::MAX_SEND_BYTES)
    };
}
