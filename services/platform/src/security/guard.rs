//! The guard in front of every service: the bearer token verified, the caller's reach
//! and the method's row of the matrix checked, and the request's size and shape
//! admitted, before the handler runs.

use crate::auth::{Claims, Role};
use tonic::Status;

use super::access::{authorize, check_reach};

/// The guard in front of a service: verifies the bearer token (signature, issuer,
/// audience, expiry, revocation), checks the token's reach and the method's row of the
/// matrix, and hands the verified claims to the handler in the request's extensions.
/// Anything refused is answered here, before the handler runs.
#[derive(Clone)]
pub struct Guard<S> {
    inner: S,
    auth: crate::auth::Authenticator,
    limits: std::sync::Arc<CallLimits>,
}

impl<S> Guard<S> {
    pub fn new(
        inner: S,
        auth: crate::auth::Authenticator,
        limits: &crate::config::LimitsConfig,
    ) -> Self {
        Self {
            inner,
            auth,
            limits: std::sync::Arc::new(CallLimits::new(
                limits.calls_per_second,
                limits.call_burst,
            )),
        }
    }
}

/// A token bucket per caller: `burst` calls at once, refilled at `per_second`.
pub struct CallLimits {
    per_second: f64,
    burst: f64,
    buckets: std::sync::Mutex<std::collections::HashMap<String, (f64, std::time::Instant)>>,
}

impl CallLimits {
    pub fn new(per_second: u32, burst: u32) -> Self {
        Self {
            per_second: f64::from(per_second.max(1)),
            burst: f64::from(burst.max(1)),
            buckets: Default::default(),
        }
    }

    /// Takes one call from `subject`'s bucket at `now`; RESOURCE_EXHAUSTED, with the
    /// wait in a `google.rpc.RetryInfo`, when it is empty.
    pub fn take(&self, subject: &str, now: std::time::Instant) -> Result<(), Status> {
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if buckets.len() > 100_000 {
            // Callers idle long enough to have a full bucket again are forgotten.
            let full = std::time::Duration::from_secs_f64(self.burst / self.per_second);
            buckets.retain(|_, (_, at)| now.duration_since(*at) < full);
        }
        let (tokens, at) = buckets
            .entry(subject.to_owned())
            .or_insert((self.burst, now));
        *tokens =
            (*tokens + now.duration_since(*at).as_secs_f64() * self.per_second).min(self.burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            return Ok(());
        }
        let wait = std::time::Duration::from_secs_f64((1.0 - *tokens) / self.per_second);
        use tonic_types::StatusExt;
        let mut details = tonic_types::ErrorDetails::new();
        details.set_retry_info(Some(wait));
        Err(Status::with_error_details(
            tonic::Code::ResourceExhausted,
            format!(
                "more than {} calls per second from one caller; retry in {} ms",
                self.per_second,
                wait.as_millis().max(1)
            ),
            details,
        ))
    }
}

/// Verifies the call's token and checks it against the matrix.
async fn admit(
    auth: &crate::auth::Authenticator,
    limits: &CallLimits,
    method: &str,
    header: Option<&http::HeaderValue>,
) -> Result<Claims, Status> {
    let header = header.ok_or_else(|| Status::unauthenticated("missing authorization header"))?;
    let token = header
        .to_str()
        .ok()
        .and_then(|h| h.strip_prefix("Bearer "))
        .ok_or_else(|| Status::unauthenticated("authorization must be `Bearer <token>`"))?;
    let claims = auth.verify(token).await?;
    check_reach(&claims)?;
    authorize(method, &claims)?;
    if claims.role != Role::Service {
        limits.take(&claims.sub, std::time::Instant::now())?;
    }
    Ok(claims)
}

/// Reads the one request message of a unary or server-streaming call (bounded by
/// [`crate::grpc::MAX_MESSAGE_BYTES`]), checks it at the edge, and hands the call on with
/// the same bytes.
async fn checked(
    request: http::Request<tonic::body::Body>,
    input: &prost_reflect::MessageDescriptor,
) -> Result<http::Request<tonic::body::Body>, Status> {
    use http_body_util::BodyExt;
    let (parts, body) = request.into_parts();
    // A frame's 5-byte header, and a little room beyond the message limit so that the
    // server's own size check (RESOURCE_EXHAUSTED) still speaks for an oversized one.
    let limit = crate::grpc::MAX_MESSAGE_BYTES + 64 * 1024;
    let bytes = http_body_util::Limited::new(body, limit)
        .collect()
        .await
        .map_err(|e| {
            if e.is::<http_body_util::LengthLimitError>() {
                // As the server's own decoder answers an oversized message.
                Status::out_of_range(format!(
                    "the request is larger than {} bytes",
                    crate::grpc::MAX_MESSAGE_BYTES
                ))
            } else {
                Status::cancelled("the request ended before it was read")
            }
        })?
        .to_bytes();
    // gRPC frames: a compression flag, a 4-byte length, the message.
    let mut rest = &bytes[..];
    while rest.len() >= 5 {
        let compressed = rest[0] != 0;
        let length = u32::from_be_bytes([rest[1], rest[2], rest[3], rest[4]]) as usize;
        let Some(message) = rest.get(5..5 + length) else {
            break; // a short frame: the server's decoder refuses it
        };
        if !compressed && length <= crate::grpc::MAX_MESSAGE_BYTES {
            crate::edge::check_encoded(input, message)?;
        }
        rest = &rest[5 + length..];
    }
    Ok(http::Request::from_parts(
        parts,
        tonic::body::Body::new(http_body_util::Full::new(bytes)),
    ))
}

impl<S: tonic::server::NamedService> tonic::server::NamedService for Guard<S> {
    const NAME: &'static str = S::NAME;
}

impl<S> tower::Service<http::Request<tonic::body::Body>> for Guard<S>
where
    S: tower::Service<
            http::Request<tonic::body::Body>,
            Response = http::Response<tonic::body::Body>,
        > + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Self::Response, Self::Error>> + Send>,
    >;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<tonic::body::Body>) -> Self::Future {
        // The service that was polled ready serves this call; its clone waits for the next.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let auth = self.auth.clone();
        let limits = self.limits.clone();
        Box::pin(async move {
            let method = request.uri().path().to_owned();
            let started = std::time::Instant::now();
            let header = request.headers().get(http::header::AUTHORIZATION);
            let response = match admit(&auth, &limits, &method, header).await {
                Ok(claims) => {
                    request.extensions_mut().insert(claims);
                    // The request message is checked at the edge before any handler.
                    match crate::edge::single_request(&method) {
                        Some(input) => match checked(request, input).await {
                            Ok(request) => inner.call(request).await,
                            Err(refused) => {
                                tracing::info!(code = ?refused.code(), %method, "request refused at the edge");
                                Ok(refused.into_http())
                            }
                        },
                        None => inner.call(request).await,
                    }
                }
                Err(refused) => {
                    tracing::info!(code = ?refused.code(), %method, "call refused by the access guard");
                    Ok(refused.into_http())
                }
            };
            // A failed call answers its status in the headers (trailers-only); a call
            // whose status comes in the trailers succeeded when its headers were sent.
            let status = match &response {
                Ok(r) => r
                    .headers()
                    .get("grpc-status")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("0")
                    .to_owned(),
                Err(_) => "transport".to_owned(),
            };
            crate::metrics::rpc(&method, &status, started.elapsed().as_secs_f64());
            response
        })
    }
}
