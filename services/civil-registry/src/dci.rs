//! The DCI registry API of the reference civil registry:
//!
//! - `POST /registry/sync/search`: search by identifier or predicate, answered at once;
//! - `POST /registry/search`: the same, acknowledged at once and answered later on the
//!   sender's `{sender_uri}/registry/on-search`;
//! - `POST /registry/subscribe`, `/registry/unsubscribe`: vital-event subscriptions,
//!   confirmed on `{sender_uri}/registry/on-subscribe` and fed through
//!   `{sender_uri}/registry/notify` (see [`crate::events`]);
//! - `POST /admin/vital-events`: the registry's own clerks record a death, birth,
//!   marriage, divorce or move (not part of DCI; how events arise here).
//!
//! Requests must carry a valid signature from a trusted key when the registry is given
//! trusted keys (`DTKS_REGISTRY_TRUSTED_KEYS`); the registry signs what it sends with
//! `DTKS_REGISTRY_SIGNING_KEY`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use sea_orm::DatabaseConnection;
use serde_json::{Value, json};

use dtks_platform::dci::{self, KeyRing, Signer};

use crate::events;
use crate::search::{self, now};

/// What the handlers share.
#[derive(Clone)]
pub struct Registry {
    pub db: DatabaseConnection,
    pub signer: Option<Signer>,
    pub trusted: KeyRing,
    /// Bearer token `/admin/vital-events` requires, when set.
    pub admin_token: Option<String>,
    pub http: reqwest::Client,
    /// Messages taken, so that one sent again within its validity is refused.
    pub replays: dtks_platform::dci::Replays,
    /// Each sender's registered callback base (`DTKS_REGISTRY_SENDER_URIS`): answers and
    /// notifications go there and nowhere else.
    pub senders: std::collections::HashMap<String, String>,
}

pub const SENDER_ID: &str = "dukcapil-reference";

/// At most this many requests in one message.
const MAX_REQUESTS: usize = 100;

pub fn router(registry: Registry) -> Router {
    Router::new()
        .route("/registry/sync/search", post(sync_search))
        .route("/registry/search", post(async_search))
        .route("/registry/subscribe", post(events::subscribe))
        .route("/registry/unsubscribe", post(events::unsubscribe))
        .route("/admin/vital-events", post(events::record))
        .with_state(registry)
}

pub type Refusal = (StatusCode, Json<Value>);

pub fn error(status: StatusCode, code: &str, message: &str) -> Refusal {
    (
        status,
        Json(json!({ "error": { "code": code, "message": message } })),
    )
}

/// A fault the reference registry can be told to show, for drills and tests of the
/// adapter's failure handling: `DTKS_REGISTRY_FAULT=slow` answers after 6 s,
/// `malformed` answers 200 with a body that is not a DCI response, `error` answers 503.
fn fault() -> &'static str {
    static FAULT: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    FAULT.get_or_init(|| std::env::var("DTKS_REGISTRY_FAULT").unwrap_or_default())
}

/// Shows the configured fault, if any: `Some` answer replaces the real one.
async fn faulty() -> Option<Result<Json<Value>, Refusal>> {
    match fault() {
        "slow" => {
            tokio::time::sleep(std::time::Duration::from_secs(6)).await;
            None
        }
        "malformed" => Some(Ok(Json(json!({ "message": { "unexpected": true } })))),
        "error" => Some(Err(error(
            StatusCode::SERVICE_UNAVAILABLE,
            "err.service.unavailable",
            "registry maintenance",
        ))),
        _ => None,
    }
}

impl Registry {
    /// Checks the signature (when keys are configured) and the envelope's shape;
    /// answers the header.
    pub fn admit<'b>(&self, body: &'b Value) -> Result<&'b Value, Refusal> {
        let refused = |e: dtks_platform::dci::SignatureError| {
            error(StatusCode::UNAUTHORIZED, e.reason_code(), &e.to_string())
        };
        let header = body.get("header").filter(|h| h.is_object()).ok_or_else(|| {
            error(
                StatusCode::BAD_REQUEST,
                "err.request.bad",
                "header is required",
            )
        })?;
        // Finding 10: a NUL byte reached PostgreSQL and answered 500. Text that no
        // registry field can hold is refused before anything reads it.
        if let Some(path) = nul_in(body, &mut String::new()) {
            return Err(error(
                StatusCode::BAD_REQUEST,
                "err.request.bad",
                &format!("{path} contains a NUL character"),
            ));
        }
        let sender = if self.trusted.is_empty() {
            sender(header)
        } else {
            self.trusted.verify(body).map_err(refused)?
        };
        self.replays.first_time(&sender, body).map_err(refused)?;
        Ok(header)
    }

    /// The callback base of an asynchronous request: `header.sender_uri`, which must be
    /// the base registered for the sender when senders are registered (always, once
    /// requests are signed).
    pub fn callback_base(&self, header: &Value) -> Result<String, Refusal> {
        let base = callback_base(header)?;
        if self.senders.is_empty() && self.trusted.is_empty() {
            return Ok(base);
        }
        match self.senders.get(&sender(header)) {
            Some(registered) if registered.trim_end_matches('/') == base => Ok(base),
            _ => Err(error(
                StatusCode::FORBIDDEN,
                "err.sender_uri.invalid",
                "header.sender_uri is not the callback base registered for this sender",
            )),
        }
    }

    /// A signed message from the registry (unsigned when it has no key).
    pub fn envelope(&self, action: &str, receiver_id: &str, total: usize, message: Value) -> Value {
        self.seal(
            dci::header(SENDER_ID, action, receiver_id, None, total),
            message,
        )
    }

    fn seal(&self, header: Value, message: Value) -> Value {
        dci::seal(self.signer.as_ref(), header, message)
    }

    /// Posts a message to a subscriber's or requester's callback.
    pub async fn call_back(&self, url: &str, body: &Value) -> anyhow::Result<()> {
        self.http
            .post(url)
            .json(body)
            .send()
            .await?
            .error_for_status()?;
        Ok(())
    }
}

/// The path of the first string (or key) in `value` holding a NUL character.
fn nul_in(value: &Value, path: &mut String) -> Option<String> {
    match value {
        Value::String(s) if s.contains('\0') => Some(if path.is_empty() { "body".into() } else { path.clone() }),
        Value::Array(items) => items.iter().enumerate().find_map(|(i, v)| {
            let len = path.len();
            path.push_str(&format!("[{i}]"));
            let found = nul_in(v, path);
            path.truncate(len);
            found
        }),
        Value::Object(map) => map.iter().find_map(|(k, v)| {
            let len = path.len();
            if !path.is_empty() {
                path.push('.');
            }
            path.push_str(&k.replace('\0', "\\0"));
            let found = if k.contains('\0') { Some(path.clone()) } else { nul_in(v, path) };
            path.truncate(len);
            found
        }),
        _ => None,
    }
}

fn requests(body: &Value) -> Result<&Vec<Value>, Refusal> {
    let requests = body
        .pointer("/message/search_request")
        .and_then(Value::as_array)
        .ok_or_else(|| {
            error(
                StatusCode::BAD_REQUEST,
                "err.request.bad",
                "message.search_request must be an array",
            )
        })?;
    if requests.len() > MAX_REQUESTS {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "err.request.bad",
            "at most 100 search requests per message",
        ));
    }
    Ok(requests)
}

pub fn storage(e: sea_orm::DbErr) -> Refusal {
    tracing::warn!(error = %e, "registry storage failed");
    error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "err.service.unavailable",
        "registry storage unavailable",
    )
}

fn sender(header: &Value) -> String {
    header
        .get("sender_id")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

/// The admitted search's header and requests.
fn admit_search(registry: &Registry, body: &Value) -> Result<(Value, Vec<Value>), Refusal> {
    let header = registry.admit(body)?.clone();
    Ok((header, requests(body)?.clone()))
}

async fn sync_search(
    State(registry): State<Registry>,
    Json(body): Json<Value>,
) -> Result<Json<Value>, Refusal> {
    if let Some(answer) = faulty().await {
        return answer;
    }
    let (header, requests) = admit_search(&registry, &body)?;
    let responses = search::answer(&registry.db, &requests)
        .await
        .map_err(storage)?;
    let count = responses.len();
    let mut answer_header = dci::header(SENDER_ID, "on-search", &sender(&header), None, count);
    answer_header["status"] = json!("succ");
    answer_header["completed_count"] = json!(count);
    Ok(Json(registry.seal(
        answer_header,
        json!({
            "transaction_id": body.pointer("/message/transaction_id").cloned().unwrap_or_default(),
            "search_response": responses,
        }),
    )))
}

/// The DCI acknowledgement of an asynchronous request.
pub fn ack(correlation_id: &str) -> Json<Value> {
    Json(json!({
        "message": { "ack_status": "ACK", "timestamp": now(), "correlation_id": correlation_id },
    }))
}

/// The callback base of an asynchronous request (`header.sender_uri`).
pub fn callback_base(header: &Value) -> Result<String, Refusal> {
    header
        .get("sender_uri")
        .and_then(Value::as_str)
        .filter(|u| u.starts_with("http://") || u.starts_with("https://"))
        .map(|u| u.trim_end_matches('/').to_owned())
        .ok_or_else(|| {
            error(
                StatusCode::BAD_REQUEST,
                "err.sender_uri.invalid",
                "header.sender_uri must be the http(s) base of the sender's callbacks",
            )
        })
}

async fn async_search(
    State(registry): State<Registry>,
    Json(body): Json<Value>,
) -> Result<Json<Value>, Refusal> {
    if let Some(answer) = faulty().await {
        return answer;
    }
    let (header, requests) = admit_search(&registry, &body)?;
    let base = registry.callback_base(&header)?;
    let receiver = sender(&header);
    let transaction_id = body
        .pointer("/message/transaction_id")
        .cloned()
        .unwrap_or_default();
    let correlation_id = uuid::Uuid::new_v4().to_string();
    let correlation = correlation_id.clone();
    tokio::spawn(async move {
        let responses = match search::answer(&registry.db, &requests).await {
            Ok(responses) => responses,
            Err(e) => {
                tracing::warn!(error = %e, "asynchronous search failed");
                return;
            }
        };
        let count = responses.len();
        let body = registry.envelope(
            "on-search",
            &receiver,
            count,
            json!({
                "transaction_id": transaction_id,
                "correlation_id": correlation,
                "search_response": responses,
            }),
        );
        // A few tries; the requester times out and searches again if all fail.
        for attempt in 0..3u32 {
            match registry
                .call_back(&format!("{base}/registry/on-search"), &body)
                .await
            {
                Ok(()) => return,
                Err(e) => {
                    tracing::warn!(error = %e, attempt, "on-search callback failed");
                    tokio::time::sleep(std::time::Duration::from_millis(200 << attempt)).await;
                }
            }
        }
    });
    Ok(ack(&correlation_id))
}
