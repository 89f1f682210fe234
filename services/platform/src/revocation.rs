//! Instant revocation of officers' tokens (*pencabutan akses*). When an officer is
//! replaced or deactivated, their subject is written with the time of revocation to the
//! Redis hash `<ns>:revoked` and announced on the channel `<ns>:revocations`; every
//! service holds the hash in memory (loaded at start and again after any reconnection,
//! kept current by the channel) and its authenticator refuses, on every call, any token
//! of a revoked subject issued at or before the revocation — long before the token
//! would expire. A token issued later (the officer's new assignment) is accepted.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures::StreamExt;
use redis::AsyncCommands;
use secrecy::ExposeSecret;

use crate::config::RedisConfig;
use crate::shutdown::Shutdown;

/// Revoked subjects and when (Unix seconds).
#[derive(Clone, Default)]
pub struct Revocations(Arc<RwLock<HashMap<String, i64>>>);

impl Revocations {
    /// Whether a token of `subject` issued at `issued_at` (Unix seconds) is revoked.
    pub fn revoked(&self, subject: &str, issued_at: u64) -> bool {
        self.0
            .read()
            .map(|m| m.get(subject).is_some_and(|at| issued_at as i64 <= *at))
            .unwrap_or(false)
    }

    fn set(&self, subject: String, at: i64) {
        if let Ok(mut m) = self.0.write() {
            let entry = m.entry(subject).or_insert(at);
            *entry = (*entry).max(at);
        }
    }
}

fn keys(namespace: &str) -> (String, String) {
    (
        format!("{namespace}:revoked"),
        format!("{namespace}:revocations"),
    )
}

/// Revokes every token of `subject` issued up to now, in every service, within a moment.
pub async fn revoke(config: &RedisConfig, subject: &str) -> anyhow::Result<i64> {
    let (hash, channel) = keys(&config.namespace);
    let client = redis::Client::open(config.url.expose_secret())?;
    let mut conn = client.get_multiplexed_async_connection().await?;
    let at = chrono::Utc::now().timestamp();
    let _: () = conn.hset(&hash, subject, at).await?;
    let _: () = conn.publish(&channel, format!("{at} {subject}")).await?;
    Ok(at)
}

async fn follow(
    config: &RedisConfig,
    revocations: &Revocations,
    shutdown: &Shutdown,
) -> anyhow::Result<()> {
    let (hash, channel) = keys(&config.namespace);
    let client = redis::Client::open(config.url.expose_secret())?;
    let mut pubsub = client.get_async_pubsub().await?;
    pubsub.subscribe(&channel).await?;
    // Subscribed first, then loaded: a revocation between the two is in one or the other.
    let mut conn = client.get_multiplexed_async_connection().await?;
    let all: HashMap<String, i64> = conn.hgetall(&hash).await?;
    for (subject, at) in all {
        revocations.set(subject, at);
    }
    let mut messages = pubsub.on_message();
    loop {
        let message = tokio::select! {
            m = messages.next() => m,
            _ = shutdown.clone().wait() => return Ok(()),
        };
        let Some(message) = message else {
            anyhow::bail!("the revocation channel closed");
        };
        let payload: String = message.get_payload()?;
        if let Some((at, subject)) = payload.split_once(' ')
            && let Ok(at) = at.parse::<i64>()
        {
            revocations.set(subject.to_owned(), at);
            tracing::info!("a subject's tokens were revoked");
        }
    }
}

/// Keeps `revocations` current until shutdown, reconnecting after any failure.
pub async fn watch(config: RedisConfig, revocations: Revocations, shutdown: Shutdown) {
    while !shutdown.is_triggered() {
        if let Err(error) = follow(&config, &revocations, &shutdown).await {
            tracing::warn!(%error, "following revocations failed; reconnecting");
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = shutdown.clone().wait() => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_issued_up_to_the_revocation_are_refused_and_later_ones_accepted() {
        let r = Revocations::default();
        assert!(!r.revoked("officer-7", 1_000));
        r.set("officer-7".into(), 1_000);
        assert!(r.revoked("officer-7", 999));
        assert!(r.revoked("officer-7", 1_000));
        assert!(!r.revoked("officer-7", 1_001));
        assert!(!r.revoked("officer-8", 999));
        // An older revocation arriving late does not undo a newer one.
        r.set("officer-7".into(), 500);
        assert!(r.revoked("officer-7", 1_000));
    }
}
