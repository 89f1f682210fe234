//! The civil-registry port and its DCI adapter: search by NIK ([`BATCH`] to a message)
//! and by predicate, synchronous or asynchronous (answer on the callback), signed; and
//! vital-event subscriptions. Every search has a timeout, quick retries with backoff,
//! and a circuit breaker: after
//! [`Breaker::THRESHOLD`] failures in a row the adapter fails fast for
//! [`Breaker::COOL_DOWN`], then lets one request through to probe.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dtks_platform::config::DciConfig;
use dtks_platform::dci::{self, KeyRing, SignatureError, Signer};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::oneshot;

/// What the civil registry holds about one person.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegistryPerson {
    #[serde(default)]
    pub nik: String,
    #[serde(default)]
    pub kk_number: String,
    pub full_name: String,
    pub birth_date: String,
    pub sex: String,
    pub village_code: String,
    pub deceased: bool,
}

impl RegistryPerson {
    /// A registry record (`CRVS_Person`) as matching reads it.
    pub(crate) fn from_record(record: &Value) -> Self {
        let text = |p: &str| {
            record
                .pointer(p)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        let identifier = |kind: &str| {
            record
                .get("identifier")
                .and_then(Value::as_array)
                .and_then(|ids| {
                    ids.iter()
                        .find(|i| i.get("identifier_type").and_then(Value::as_str) == Some(kind))
                })
                .and_then(|i| i.get("identifier_value").and_then(Value::as_str))
                .unwrap_or_default()
                .to_owned()
        };
        RegistryPerson {
            nik: identifier("NIK"),
            kk_number: identifier("KK"),
            full_name: text("/name/given_name"),
            birth_date: text("/birth_date"),
            sex: text("/sex"),
            village_code: text("/address/0/region_code"),
            deceased: !text("/death_date").is_empty(),
        }
    }
}

/// What predicate searches found: each person with the indices of the queries that
/// found them, and each query's total count.
#[derive(Debug, Clone, Default)]
pub struct Found {
    pub persons: Vec<(RegistryPerson, Vec<usize>)>,
    pub totals: Vec<u64>,
}

impl Found {
    /// What the queries numbered `keep` found, renumbered in `keep`'s order, as if only
    /// they had been asked.
    pub fn only(&self, keep: &[usize]) -> Found {
        let renumber = |q: &usize| keep.iter().position(|k| k == q);
        Found {
            persons: self
                .persons
                .iter()
                .filter_map(|(person, by)| {
                    let by: Vec<usize> = by.iter().filter_map(renumber).collect();
                    (!by.is_empty()).then(|| (person.clone(), by))
                })
                .collect(),
            totals: keep
                .iter()
                .map(|q| self.totals.get(*q).copied().unwrap_or(0))
                .collect(),
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

/// How long one request may take (for an asynchronous search: until the answer arrives
/// on the callback).
pub const TIMEOUT: Duration = Duration::from_secs(5);

/// Search requests in one DCI message (the registry's limit).
pub const BATCH: usize = 100;

/// Messages to the registry in flight at once for one caller (a wave, a household).
pub const IN_FLIGHT: usize = 4;

/// Searches in flight at the registry at once from this process, whoever asks: beyond
/// it a message waits here, before its timeout starts, instead of in the registry's
/// queue, where a busy registry would let every message of a wave run out of time.
/// Counted in searches, not messages: two full messages of a wave (100 searches keep a
/// registry core busy, measured at 10 M persons on two cores), while a MatchPerson's
/// message of one NIK or a few searches is not held behind them for a whole turn.
pub const PROCESS_IN_FLIGHT: usize = 2 * BATCH;

/// Candidates asked for per predicate search.
pub const CANDIDATES_PER_QUERY: u64 = 50;

/// Asynchronous searches waiting for their answer, by transaction id.
type Waiters = Arc<Mutex<HashMap<String, oneshot::Sender<Value>>>>;

#[derive(Clone)]
pub struct DciRegistry {
    http: reqwest::Client,
    base_url: String,
    breaker: Arc<Mutex<Breaker>>,
    signer: Option<Signer>,
    sender_id: String,
    /// The registry's keys; when set, its answers must be signed by one of them.
    registry_keys: KeyRing,
    /// Callbacks taken, so that one posted again within its validity is refused.
    replays: dtks_platform::dci::Replays,
    /// Base URL of this side's callback listener (`header.sender_uri`).
    callback_url: Option<String>,
    async_search: bool,
    waiters: Waiters,
    /// The registry's DCI id (receiver and bearer audience).
    registry_id: String,
    /// Search requests sent so far (each request of a message counted).
    sent: Arc<std::sync::atomic::AtomicU64>,
    /// Searches in flight at the registry ([`PROCESS_IN_FLIGHT`]).
    turns: Arc<tokio::sync::Semaphore>,
}

impl DciRegistry {
    pub fn new(base_url: &str, config: &DciConfig) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder().timeout(TIMEOUT).build()?;
        let signer = config
            .signing_key
            .as_ref()
            .map(|seed| Signer::new(&config.sender_id, &config.key_id, seed.expose_secret()))
            .transpose()?;
        anyhow::ensure!(
            !config.async_search || config.callback_url.is_some(),
            "DTKS_DCI__ASYNC_SEARCH needs DTKS_DCI__CALLBACK_URL"
        );
        Ok(Self {
            http,
            base_url: base_url.trim_end_matches('/').to_owned(),
            breaker: Arc::default(),
            signer,
            sender_id: config.sender_id.clone(),
            registry_keys: KeyRing::parse(&config.registry_keys)?,
            replays: Default::default(),
            callback_url: config.callback_url.clone(),
            async_search: config.async_search,
            waiters: Arc::default(),
            registry_id: config.registry_id.clone(),
            sent: Arc::default(),
            turns: Arc::new(tokio::sync::Semaphore::new(PROCESS_IN_FLIGHT)),
        })
    }

    /// Looks NIKs up, [`BATCH`] to a message, [`IN_FLIGHT`] messages at once; `None`
    /// for a NIK the registry does not know.
    pub async fn find_by_niks(
        &self,
        niks: &[String],
    ) -> Result<HashMap<String, Option<RegistryPerson>>, RegistryError> {
        let requests: Vec<Value> = niks
            .iter()
            .map(|nik| {
                json!({
                    "query_type": "idtype-value",
                    "query": { "type": "NIK", "value": nik },
                    "pagination": { "page_size": 1, "page_number": 1 },
                })
            })
            .collect();
        let answers = self.search_all(requests).await?;
        Ok(niks
            .iter()
            .zip(answers)
            .map(|(nik, answer)| {
                let record = records(&answer).next();
                (nik.clone(), record.map(RegistryPerson::from_record))
            })
            .collect())
    }

    /// Registry persons meeting any of `queries` (each a list of DCI predicates joined by
    /// `and`), the first [`CANDIDATES_PER_QUERY`] of each, without repeats; with, for
    /// each person, the queries that found them, and for each query how many persons
    /// it found in all (its `total_count`).
    pub async fn find_candidates(&self, queries: &[&[Value]]) -> Result<Found, RegistryError> {
        let mut found = self.find_candidates_each(&[queries.to_vec()]).await?;
        Ok(found.pop().unwrap_or_default())
    }

    /// [`Self::find_candidates`] for many persons at once, one group of queries each:
    /// the searches of all of them go in as few messages as the registry's limit allows.
    pub async fn find_candidates_each(
        &self,
        groups: &[Vec<&[Value]>],
    ) -> Result<Vec<Found>, RegistryError> {
        let requests: Vec<Value> = groups
            .iter()
            .flatten()
            .map(|predicates| {
                json!({
                    "query_type": "predicate",
                    "query": all_of(predicates),
                    "pagination": { "page_size": CANDIDATES_PER_QUERY, "page_number": 1 },
                })
            })
            .collect();
        let mut answers = self.search_all(requests).await?.into_iter();
        let mut each = Vec::with_capacity(groups.len());
        for group in groups {
            let mut found = Found::default();
            let mut at: HashMap<String, usize> = HashMap::new();
            for (q, answer) in answers.by_ref().take(group.len()).enumerate() {
                let mut returned = 0u64;
                for record in records(&answer) {
                    returned += 1;
                    let person = RegistryPerson::from_record(record);
                    let i = *at.entry(person.nik.clone()).or_insert_with(|| {
                        found.persons.push((person, Vec::new()));
                        found.persons.len() - 1
                    });
                    found.persons[i].1.push(q);
                }
                let total = answer
                    .pointer("/pagination/total_count")
                    .and_then(Value::as_u64)
                    .unwrap_or(returned);
                found.totals.push(total.max(returned));
            }
            each.push(found);
        }
        Ok(each)
    }

    /// How many registry persons meet each of `queries` (their `total_count`), asking
    /// for one record each.
    pub async fn totals(&self, queries: &[Vec<Value>]) -> Result<Vec<u64>, RegistryError> {
        let requests = queries
            .iter()
            .map(|predicates| {
                json!({
                    "query_type": "predicate",
                    "query": all_of(predicates),
                    "pagination": { "page_size": 1, "page_number": 1 },
                })
            })
            .collect();
        Ok(self
            .search_all(requests)
            .await?
            .iter()
            .map(|answer| {
                answer
                    .pointer("/pagination/total_count")
                    .and_then(Value::as_u64)
                    .unwrap_or(0)
            })
            .collect())
    }

    /// Answers every search criteria of `criteria`, in order: [`BATCH`] to a message,
    /// up to [`IN_FLIGHT`] messages at once.
    async fn search_all(&self, criteria: Vec<Value>) -> Result<Vec<Value>, RegistryError> {
        use futures::StreamExt as _;
        let mut criteria = criteria.into_iter();
        let mut messages = Vec::new();
        loop {
            let requests: Vec<Value> = criteria
                .by_ref()
                .take(BATCH)
                .enumerate()
                .map(|(i, c)| search_request(i, c))
                .collect();
            if requests.is_empty() {
                break;
            }
            messages.push(requests);
        }
        let answered: Vec<Vec<Value>> = futures::stream::iter(messages)
            .map(|requests| self.search(requests))
            .buffered(IN_FLIGHT)
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<Result<_, _>>()?;
        Ok(answered.into_iter().flatten().collect())
    }

    /// Runs search requests with retries and the breaker; answers one succeeded
    /// `search_response` per request, in order.
    async fn search(&self, requests: Vec<Value>) -> Result<Vec<Value>, RegistryError> {
        let mut delay = Duration::from_millis(100);
        let mut last = None;
        let mut attempt = 0;
        loop {
            attempt += 1;
            if !self.breaker.lock().expect("breaker").allows(Instant::now()) {
                // Opened by this very request's failures: say what they were.
                return Err(last.unwrap_or(RegistryError::Open));
            }
            let answer = self.search_once(&requests).await;
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

    fn envelope(&self, action: &str, total: usize, message: Value) -> Value {
        let header = dci::header(
            &self.sender_id,
            action,
            &self.registry_id,
            self.callback_url.as_deref(),
            total,
        );
        dci::seal(self.signer.as_ref(), header, message)
    }

    async fn post(&self, path: &str, body: &Value) -> Result<Value, RegistryError> {
        // reqwest's errors name the URL, never the body: no NIK reaches a log.
        let unavailable = |e: reqwest::Error| {
            RegistryError::Unavailable(if e.is_timeout() {
                format!("no answer within {TIMEOUT:?}")
            } else {
                chain(&e.without_url())
            })
        };
        let mut request = self
            .http
            .post(format!("{}{path}", self.base_url))
            .json(body);
        // The standard's security scheme: a bearer token signed with the same key.
        if let Some(signer) = &self.signer {
            request = request.bearer_auth(signer.bearer(&self.registry_id, BEARER_SECS));
        }
        request
            .send()
            .await
            .map_err(unavailable)?
            .error_for_status()
            .map_err(unavailable)?
            .json()
            .await
            .map_err(|e| RegistryError::Malformed(chain(&e.without_url())))
    }

    /// Search requests sent to the registry so far, retries included.
    pub fn searches_sent(&self) -> u64 {
        self.sent.load(std::sync::atomic::Ordering::Relaxed)
    }

    async fn search_once(&self, requests: &[Value]) -> Result<Vec<Value>, RegistryError> {
        let searches = u32::try_from(requests.len().clamp(1, PROCESS_IN_FLIGHT)).unwrap_or(1);
        let _turn = self
            .turns
            .acquire_many(searches)
            .await
            .map_err(|_| RegistryError::Open)?;
        self.sent
            .fetch_add(requests.len() as u64, std::sync::atomic::Ordering::Relaxed);
        let transaction_id = uuid::Uuid::new_v4().to_string();
        let body = self.envelope(
            "search",
            requests.len(),
            json!({ "transaction_id": transaction_id, "search_request": requests }),
        );
        let mut response = if self.async_search {
            let (tx, rx) = oneshot::channel();
            self.waiters
                .lock()
                .expect("waiters")
                .insert(transaction_id.clone(), tx);
            let answer = self.await_callback(&body, rx).await;
            self.waiters
                .lock()
                .expect("waiters")
                .remove(&transaction_id);
            answer?
        } else {
            self.post("/registry/sync/search", &body).await?
        };
        if !self.registry_keys.is_empty() {
            self.registry_keys
                .verify(&response)
                .map_err(|e| RegistryError::Malformed(format!("answer {e}")))?;
        }
        let answers = match response.pointer_mut("/message/search_response") {
            Some(Value::Array(answers)) => std::mem::take(answers),
            _ => {
                return Err(RegistryError::Malformed(
                    "no message.search_response".into(),
                ));
            }
        };
        if answers.len() != requests.len() {
            return Err(RegistryError::Malformed(format!(
                "{} answers to {} requests",
                answers.len(),
                requests.len()
            )));
        }
        for answer in &answers {
            if answer.get("status").and_then(Value::as_str) != Some("succ") {
                return Err(RegistryError::Malformed(format!(
                    "search refused: {}",
                    answer
                        .get("status_reason_code")
                        .and_then(Value::as_str)
                        .unwrap_or("no reason code")
                )));
            }
        }
        Ok(answers)
    }

    /// Sends an asynchronous search and waits for its answer on the callback.
    async fn await_callback(
        &self,
        body: &Value,
        answer: oneshot::Receiver<Value>,
    ) -> Result<Value, RegistryError> {
        let ack = self.post("/registry/search", body).await?;
        if ack.pointer("/message/ack_status").and_then(Value::as_str) != Some("ACK") {
            return Err(RegistryError::Malformed(
                "asynchronous search not acknowledged".into(),
            ));
        }
        match tokio::time::timeout(TIMEOUT, answer).await {
            Ok(Ok(answer)) => Ok(answer),
            _ => Err(RegistryError::Unavailable(format!(
                "no on-search callback within {TIMEOUT:?}"
            ))),
        }
    }

    /// An `on-search` callback: checks its signature and hands it to the search waiting
    /// for it. Answers whether one was waiting.
    pub fn deliver(&self, body: Value) -> Result<bool, SignatureError> {
        self.check(&body)?;
        let id = body
            .pointer("/message/transaction_id")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let waiter = self.waiters.lock().expect("waiters").remove(id);
        Ok(waiter.is_some_and(|w| w.send(body).is_ok()))
    }

    /// Checks a message from the registry (callback or notification).
    pub fn check(&self, body: &Value) -> Result<(), SignatureError> {
        if self.registry_keys.is_empty() {
            return Ok(());
        }
        let sender = self.registry_keys.verify(body)?;
        self.replays.first_time(&sender, body)
    }

    /// Subscribes to vital events of `kinds`; the registry confirms on
    /// `/registry/on-subscribe` and notifies on `/registry/notify`.
    pub async fn subscribe(&self, kinds: &[&str]) -> Result<(), RegistryError> {
        let now = chrono::Utc::now().to_rfc3339();
        let requests: Vec<Value> = kinds
            .iter()
            .enumerate()
            .map(|(i, kind)| {
                json!({
                    "reference_id": (i + 1).to_string(), "timestamp": now,
                    "subscribe_criteria": {
                        "version": "1.0.0", "reg_type": "ns:dukcapil:RegistryType:Civil",
                        "reg_event_type": kind, "filter_type": "predicate", "filter": [],
                        "notify_record_type": "CRVS_Person",
                    },
                })
            })
            .collect();
        let body = self.envelope(
            "subscribe",
            requests.len(),
            json!({ "transaction_id": uuid::Uuid::new_v4().to_string(), "subscribe_request": requests }),
        );
        let ack = self.post("/registry/subscribe", &body).await?;
        if ack.pointer("/message/ack_status").and_then(Value::as_str) == Some("ACK") {
            Ok(())
        } else {
            Err(RegistryError::Malformed(
                "subscription not acknowledged".into(),
            ))
        }
    }
}

/// How long a bearer token sent with one request lives.
const BEARER_SECS: i64 = 60;

/// The records of one search answer. The standard's `reg_records` is an object: a
/// JSON-LD node set (`@graph`) or, for a single record, the record itself.
fn records(answer: &Value) -> impl Iterator<Item = &Value> {
    let found = answer.pointer("/data/reg_records");
    let graph = found
        .and_then(|r| r.get("@graph"))
        .and_then(Value::as_array);
    let single = found.filter(|r| graph.is_none() && r.get("identifier").is_some());
    graph.into_iter().flatten().chain(single)
}

/// Predicates joined by `and`, as the standard writes them: one
/// `{seq_num, expression1}` item each (items hold together).
pub fn all_of(predicates: &[Value]) -> Value {
    Value::Array(
        predicates
            .iter()
            .enumerate()
            .map(|(i, p)| json!({ "seq_num": i + 1, "expression1": p }))
            .collect(),
    )
}

fn search_request(index: usize, criteria: Value) -> Value {
    let mut criteria = criteria;
    criteria["version"] = json!("1.0.0");
    criteria["reg_event_type"] = json!("REGISTER");
    json!({
        "reference_id": (index + 1).to_string(),
        "timestamp": chrono::Utc::now().to_rfc3339(),
        "search_criteria": criteria,
    })
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

mod breaker;

pub use breaker::Breaker;

#[cfg(test)]
mod tests;
