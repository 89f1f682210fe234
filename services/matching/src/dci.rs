//! The civil-registry port and its DCI adapter (`/registry/sync/search` by NIK), with
//! a per-request timeout, quick retries with backoff, and a circuit breaker: after
//! [`Breaker::THRESHOLD`] failures in a row the adapter fails fast for
//! [`Breaker::COOL_DOWN`], then lets one request through to probe.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// What the civil registry says about one NIK.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegistryPerson {
    pub full_name: String,
    pub birth_date: String,
    pub sex: String,
    pub village_code: String,
    pub deceased: bool,
}

/// Consecutive failures and, when open, until when requests fail fast.
#[derive(Debug, Default)]
pub struct Breaker {
    failures: u32,
    open_until: Option<Instant>,
}

impl Breaker {
    pub const THRESHOLD: u32 = 5;
    pub const COOL_DOWN: Duration = Duration::from_secs(5);

    /// Whether a request may go out now (closed, or open and cooled down: half-open).
    fn allows(&self, now: Instant) -> bool {
        self.open_until.is_none_or(|until| now >= until)
    }

    fn record(&mut self, ok: bool, now: Instant) {
        if ok {
            self.failures = 0;
            self.open_until = None;
        } else {
            self.failures += 1;
            if self.failures >= Self::THRESHOLD {
                self.open_until = Some(now + Self::COOL_DOWN);
            }
        }
    }
}

/// Why the registry gave no answer. Never carries personal data.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("civil registry circuit open after repeated failures")]
    Open,
    #[error("civil registry unreachable or failing: {0}")]
    Unavailable(String),
    #[error("civil registry answer malformed: {0}")]
    Malformed(String),
}

/// How long one request may take.
pub const TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Clone)]
pub struct DciRegistry {
    http: reqwest::Client,
    base_url: String,
    breaker: Arc<Mutex<Breaker>>,
}

impl DciRegistry {
    pub fn new(base_url: &str) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder().timeout(TIMEOUT).build()?;
        Ok(Self {
            http,
            base_url: base_url.trim_end_matches('/').to_owned(),
            breaker: Arc::default(),
        })
    }

    /// Looks one NIK up; `Ok(None)` when the registry does not know it. Retries twice
    /// (after 100 and 400 ms) before giving up; fails fast while the breaker is open.
    pub async fn find_by_nik(&self, nik: &str) -> Result<Option<RegistryPerson>, RegistryError> {
        let mut delay = Duration::from_millis(100);
        let mut last = None;
        let mut attempt = 0;
        loop {
            attempt += 1;
            if !self.breaker.lock().expect("breaker").allows(Instant::now()) {
                // Opened by this very request's failures: say what they were.
                return Err(last.unwrap_or(RegistryError::Open));
            }
            let answer = self.search_once(nik).await;
            self.breaker
                .lock()
                .expect("breaker")
                .record(answer.is_ok(), Instant::now());
            match answer {
                Err(error) if attempt < 3 => {
                    tracing::debug!(%error, attempt, "civil registry request failed; retrying");
                    last = Some(error);
                    tokio::time::sleep(delay).await;
                    delay *= 4;
                }
                other => return other,
            }
        }
    }

    async fn search_once(&self, nik: &str) -> Result<Option<RegistryPerson>, RegistryError> {
        let now = chrono::Utc::now().to_rfc3339();
        let body = json!({
            "signature": "",
            "header": {
                "version": "1.0.0", "message_id": uuid::Uuid::new_v4().to_string(), "message_ts": now,
                "action": "search", "sender_id": "dtks-matching", "receiver_id": "dukcapil",
                "total_count": 1, "is_msg_encrypted": false,
            },
            "message": {
                "transaction_id": uuid::Uuid::new_v4().to_string(),
                "search_request": [{
                    "reference_id": "1", "timestamp": now,
                    "search_criteria": {
                        "version": "1.0.0", "reg_event_type": "REGISTER", "query_type": "idtype-value",
                        "query": { "type": "NIK", "value": nik },
                        "pagination": { "page_size": 1, "page_number": 1 },
                    },
                }],
            },
        });
        // reqwest's errors name the URL, never the body: no NIK reaches a log.
        let unavailable = |e: reqwest::Error| {
            RegistryError::Unavailable(if e.is_timeout() {
                format!("no answer within {TIMEOUT:?}")
            } else {
                chain(&e.without_url())
            })
        };
        let response: Value = self
            .http
            .post(format!("{}/registry/sync/search", self.base_url))
            .json(&body)
            .send()
            .await
            .map_err(unavailable)?
            .error_for_status()
            .map_err(unavailable)?
            .json()
            .await
            .map_err(|e| RegistryError::Malformed(chain(&e.without_url())))?;
        let answer = response
            .pointer("/message/search_response/0")
            .ok_or_else(|| RegistryError::Malformed("no message.search_response".into()))?;
        if answer.get("status").and_then(Value::as_str) != Some("succ") {
            return Err(RegistryError::Malformed(format!(
                "search refused: {}",
                answer
                    .get("status_reason_code")
                    .and_then(Value::as_str)
                    .unwrap_or("no reason code")
            )));
        }
        let Some(record) = answer.pointer("/data/reg_records/0") else {
            return Ok(None);
        };
        let text = |p: &str| {
            record
                .pointer(p)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        Ok(Some(RegistryPerson {
            full_name: text("/name/given_name"),
            birth_date: text("/birth_date"),
            sex: text("/sex"),
            village_code: text("/address/0/region_code"),
            deceased: !text("/death_date").is_empty(),
        }))
    }
}

/// An error and its causes, `a: b: c` (transport errors carry no request body).
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_breaker_opens_after_repeated_failures_and_half_opens_after_cooling_down() {
        let start = Instant::now();
        let mut b = Breaker::default();
        for _ in 0..Breaker::THRESHOLD - 1 {
            b.record(false, start);
            assert!(b.allows(start), "still closed below the threshold");
        }
        b.record(false, start);
        assert!(!b.allows(start), "open at the threshold");
        assert!(!b.allows(start + Breaker::COOL_DOWN / 2));
        let later = start + Breaker::COOL_DOWN;
        assert!(b.allows(later), "half-open once cooled down");
        // The probe fails: open again at once.
        b.record(false, later);
        assert!(!b.allows(later));
        // A success closes it.
        b.record(true, later + Breaker::COOL_DOWN);
        assert!(b.allows(later + Breaker::COOL_DOWN));
        assert_eq!(b.failures, 0);
    }
}
