//! Per-client rate limits in Redis: a fixed one-minute window per client and bucket,
//! counted with INCR and expired with the window, so every replica of a service shares
//! one count. Public-facing calls (self-registration) go through it.

use redis::aio::ConnectionManager;
use secrecy::ExposeSecret;
use tonic::Status;

use crate::config::RedisConfig;

#[derive(Clone)]
pub struct RateLimiter {
    conn: ConnectionManager,
    namespace: String,
}

impl RateLimiter {
    pub async fn connect(config: &RedisConfig) -> anyhow::Result<Self> {
        let client = redis::Client::open(config.url.expose_secret())?;
        Ok(Self {
            conn: ConnectionManager::new(client).await?,
            namespace: config.namespace.clone(),
        })
    }

    /// Counts one call of `client` in `bucket`; RESOURCE_EXHAUSTED with a RetryInfo
    /// once more than `per_minute` fall into the current minute. Fails closed
    /// (UNAVAILABLE) when Redis cannot be reached.
    pub async fn check(&self, bucket: &str, client: &str, per_minute: u32) -> Result<(), Status> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let window = now / 60;
        let key = format!("{}:ratelimit:{bucket}:{client}:{window}", self.namespace);
        let (count,): (u64,) = redis::pipe()
            .atomic()
            .incr(&key, 1u64)
            .expire(&key, 120)
            .ignore()
            .query_async(&mut self.conn.clone())
            .await
            .map_err(|error| {
                tracing::error!(%error, "rate limiter unavailable");
                Status::unavailable("rate limiter unavailable; retry shortly")
            })?;
        if count <= u64::from(per_minute) {
            return Ok(());
        }
        use tonic_types::{ErrorDetails, StatusExt};
        let retry_after = std::time::Duration::from_secs(60 - now % 60);
        Err(Status::with_error_details(
            tonic::Code::ResourceExhausted,
            format!("at most {per_minute} {bucket} calls per minute per client; retry later"),
            ErrorDetails::with_retry_info(Some(retry_after)),
        ))
    }
}
