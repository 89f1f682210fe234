//! Instant revocation of officers' tokens (*pencabutan akses*). When an officer is
//! replaced or deactivated, their subject is written with the time of revocation to the
//! Redis hash `<ns>:revoked` and announced on the channel `<ns>:revocations`; every
//! service holds the hash in memory (loaded at start and again after any reconnection,
//! kept current by the channel) and its authenticator refuses, on every call:
//!
//! - any token of a **replaced** officer issued at or before the revocation (a token
//!   issued later, for the new assignment, is accepted);
//! - any token at all of a **deactivated** officer, whatever its issue time, until a
//!   later change (a reassignment) reactivates them.
//!
//! The state fails closed: while it cannot be kept current (Redis unreachable), officers'
//! tokens are refused with UNAVAILABLE once [`BRIDGE`] has passed since it was last
//! known current; a blip shorter than that is bridged by the copy in memory. A service
//! that never loaded it refuses officers from the start. Services' own tokens are not
//! officers' and are not held up by it.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use futures::StreamExt;
use redis::AsyncCommands;
use secrecy::ExposeSecret;

use crate::config::RedisConfig;
use crate::shutdown::Shutdown;

/// How long the copy in memory stands in for a revocation state that cannot be read.
pub const BRIDGE: Duration = Duration::from_secs(30);

/// One subject's latest change: when, and whether it deactivated them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Change {
    at: i64,
    deactivated: bool,
}

impl Change {
    /// `1700000000` (replaced) or `1700000000:deactivated`, as the hash and the channel
    /// carry it.
    fn parse(text: &str) -> Option<Self> {
        let (at, deactivated) = match text.split_once(':') {
            Some((at, "deactivated")) => (at, true),
            Some(_) => return None,
            None => (text, false),
        };
        Some(Self {
            at: at.parse().ok()?,
            deactivated,
        })
    }

    fn text(self) -> String {
        if self.deactivated {
            format!("{}:deactivated", self.at)
        } else {
            self.at.to_string()
        }
    }
}

#[derive(Default)]
struct State {
    changes: HashMap<String, Change>,
    /// When the state was last known current; `None` before it was ever loaded.
    current_at: Option<Instant>,
    /// Whether the subscription is up now (the state is current while it is).
    following: bool,
}

/// Revoked subjects and when (Unix seconds), and whether the copy is current.
#[derive(Clone, Default)]
pub struct Revocations(Arc<RwLock<State>>);

/// Why a token is not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Revoked: the officer was replaced (token issued before) or deactivated.
    Revoked,
    /// The revocation state could not be read for longer than [`BRIDGE`].
    Unknown,
}

impl Revocations {
    /// Whether a token of `subject` issued at `issued_at` (Unix seconds) is refused.
    pub fn check(&self, subject: &str, issued_at: u64) -> Result<(), Refusal> {
        let Ok(state) = self.0.read() else {
            return Err(Refusal::Unknown);
        };
        let current = state.following || state.current_at.is_some_and(|at| at.elapsed() <= BRIDGE);
        if !current {
            return Err(Refusal::Unknown);
        }
        match state.changes.get(subject) {
            Some(c) if c.deactivated || i64::try_from(issued_at).unwrap_or(i64::MAX) <= c.at => {
                Err(Refusal::Revoked)
            }
            _ => Ok(()),
        }
    }

    /// Whether a token of `subject` issued at `issued_at` is revoked (the state aside).
    pub fn revoked(&self, subject: &str, issued_at: u64) -> bool {
        self.check(subject, issued_at) == Err(Refusal::Revoked)
    }

    /// Takes a change; an older one arriving late does not undo a newer one, and at the
    /// same second a deactivation stands.
    fn set(&self, subject: String, change: Change) {
        if let Ok(mut state) = self.0.write() {
            let entry = state.changes.entry(subject).or_insert(change);
            if change.at > entry.at {
                *entry = change;
            } else if change.at == entry.at {
                entry.deactivated |= change.deactivated;
            }
        }
    }

    fn following(&self, up: bool) {
        if let Ok(mut state) = self.0.write() {
            if up || state.following {
                state.current_at = Some(Instant::now());
            }
            state.following = up;
        }
    }

    /// Whether the state is current (loaded and followed, or lost within [`BRIDGE`]).
    pub fn is_current(&self) -> bool {
        self.check("", 0) != Err(Refusal::Unknown)
    }

    /// Waits up to `patience` for the first load; whether it came.
    pub async fn wait_current(&self, patience: Duration) -> bool {
        let deadline = Instant::now() + patience;
        while !self.is_current() {
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        true
    }

    /// A state that is current now and holds nothing (services in tests without Redis).
    pub fn assume_current(&self) {
        self.following(true);
    }
}

fn keys(namespace: &str) -> (String, String) {
    (
        format!("{namespace}:revoked"),
        format!("{namespace}:revocations"),
    )
}

async fn publish(config: &RedisConfig, subject: &str, deactivated: bool) -> anyhow::Result<i64> {
    let (hash, channel) = keys(&config.namespace);
    let client = redis::Client::open(config.url.expose_secret())?;
    let mut conn = client.get_multiplexed_async_connection().await?;
    let at = chrono::Utc::now().timestamp();
    let change = Change { at, deactivated }.text();
    let _: () = conn.hset(&hash, subject, &change).await?;
    let _: () = conn
        .publish(&channel, format!("{change} {subject}"))
        .await?;
    Ok(at)
}

/// Revokes every token of `subject` issued up to now, in every service, within a moment
/// (a replaced officer: their tokens of the new assignment are accepted).
pub async fn revoke(config: &RedisConfig, subject: &str) -> anyhow::Result<i64> {
    publish(config, subject, false).await
}

/// Refuses every token of `subject`, whenever issued, until a later [`revoke`] (their
/// reassignment) replaces it.
pub async fn deactivate(config: &RedisConfig, subject: &str) -> anyhow::Result<i64> {
    publish(config, subject, true).await
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
    let all: HashMap<String, String> = conn.hgetall(&hash).await?;
    for (subject, change) in all {
        if let Some(change) = Change::parse(&change) {
            revocations.set(subject, change);
        }
    }
    revocations.following(true);
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
        if let Some((change, subject)) = payload.split_once(' ')
            && let Some(change) = Change::parse(change)
        {
            revocations.set(subject.to_owned(), change);
            tracing::info!(
                deactivated = change.deactivated,
                "a subject's tokens were revoked"
            );
        }
    }
}

/// Keeps `revocations` current until shutdown, reconnecting after any failure.
pub async fn watch(config: RedisConfig, revocations: Revocations, shutdown: Shutdown) {
    while !shutdown.is_triggered() {
        let result = follow(&config, &revocations, &shutdown).await;
        revocations.following(false);
        if let Err(error) = result {
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

    fn replaced(at: i64) -> Change {
        Change {
            at,
            deactivated: false,
        }
    }

    #[test]
    fn tokens_issued_up_to_the_revocation_are_refused_and_later_ones_accepted() {
        let r = Revocations::default();
        r.assume_current();
        assert!(!r.revoked("officer-7", 1_000));
        r.set("officer-7".into(), replaced(1_000));
        assert!(r.revoked("officer-7", 999));
        assert!(r.revoked("officer-7", 1_000));
        assert!(!r.revoked("officer-7", 1_001));
        assert!(!r.revoked("officer-8", 999));
        // An older revocation arriving late does not undo a newer one.
        r.set("officer-7".into(), replaced(500));
        assert!(r.revoked("officer-7", 1_000));
    }

    /// Finding 16: a deactivated officer's newly issued token was accepted.
    #[test]
    fn a_deactivated_officer_is_refused_whatever_the_tokens_age_until_reassigned() {
        let r = Revocations::default();
        r.assume_current();
        r.set(
            "officer-9".into(),
            Change {
                at: 1_000,
                deactivated: true,
            },
        );
        for issued in [1, 1_000, 1_001, 9_999_999_999, u64::MAX] {
            assert!(r.revoked("officer-9", issued), "{issued}");
        }
        // A late replacement of the same second does not reactivate.
        r.set("officer-9".into(), replaced(1_000));
        assert!(r.revoked("officer-9", 2_000));
        // The reassignment, later: tokens issued after it are accepted again.
        r.set("officer-9".into(), replaced(3_000));
        assert!(r.revoked("officer-9", 3_000));
        assert!(!r.revoked("officer-9", 3_001));
    }

    #[test]
    fn changes_read_as_written_and_nothing_else() {
        for change in [
            replaced(1_700_000_000),
            Change {
                at: 5,
                deactivated: true,
            },
        ] {
            assert_eq!(Change::parse(&change.text()), Some(change));
        }
        for bad in ["", "x", "12:", "12:active", ":deactivated", "1.5"] {
            assert_eq!(Change::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_state_never_loaded_or_lost_beyond_the_bridge_refuses() {
        let r = Revocations::default();
        assert_eq!(r.check("officer-1", 1), Err(Refusal::Unknown));
        r.following(true);
        assert_eq!(r.check("officer-1", 1), Ok(()));
        // Lost a moment ago: bridged.
        r.following(false);
        assert_eq!(r.check("officer-1", 1), Ok(()));
        // Lost longer than the bridge.
        if let Ok(mut state) = r.0.write() {
            state.current_at = Instant::now().checked_sub(BRIDGE + Duration::from_secs(1));
        }
        assert_eq!(r.check("officer-1", 1), Err(Refusal::Unknown));
    }
}
