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
use axum::extract::rejection::JsonRejection;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use sea_orm::DatabaseConnection;
use serde_json::{Value, json};

use dtks_platform::dci::{self, KeyRing, Signer};

use crate::contract::{self, Shape};
use crate::search::{self, now};
use crate::{events, transactions};

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

/// The DCI operations this registry serves, each with the `header.action` it takes and
/// the schema of its message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Search,
    Subscribe,
    Unsubscribe,
    TxnStatus,
}

static SEARCH_HEADER: Shape = contract::header!("search");
static SUBSCRIBE_HEADER: Shape = contract::header!("subscribe");
static UNSUBSCRIBE_HEADER: Shape = contract::header!("unsubscribe");
static TXN_STATUS_HEADER: Shape = contract::header!("txn-status");

impl Operation {
    fn header(self) -> &'static Shape {
        match self {
            Self::Search => &SEARCH_HEADER,
            Self::Subscribe => &SUBSCRIBE_HEADER,
            Self::Unsubscribe => &UNSUBSCRIBE_HEADER,
            Self::TxnStatus => &TXN_STATUS_HEADER,
        }
    }

    fn message(self) -> &'static Shape {
        match self {
            Self::Search => &contract::SEARCH,
            Self::Subscribe => &contract::SUBSCRIBE,
            Self::Unsubscribe => &contract::UNSUBSCRIBE,
            Self::TxnStatus => &contract::TXN_STATUS,
        }
    }
}

pub fn router(registry: Registry) -> Router {
    Router::new()
        .route("/registry/sync/search", post(sync_search))
        .route("/registry/search", post(async_search))
        .route("/registry/subscribe", post(events::subscribe))
        .route("/registry/unsubscribe", post(events::unsubscribe))
        .route("/registry/sync/txn/status", post(transactions::sync_status))
        .route("/registry/txn/status", post(transactions::async_status))
        .route("/admin/vital-events", post(events::record))
        .fallback(|| async {
            Refusal::new(
                StatusCode::NOT_FOUND,
                "err.request.not_found",
                "no such DCI endpoint",
            )
        })
        .method_not_allowed_fallback(|| async {
            Refusal::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "err.request.bad",
                "DCI endpoints take POST only",
            )
        })
        .with_state(registry)
}

/// How a refusal is put: a synchronous endpoint answers with the callback header of its
/// answer (status `rjct`), an asynchronous one with its acknowledgement (`ERR`). Both
/// carry the standard's `errors` list, the body it gives for 401, 403 and 500.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    Ack,
    /// The action of the answer (`on-search`, `txn-on-status`).
    Callback(&'static str),
}

/// A refused request: the HTTP status, the DCI error code and why.
#[derive(Debug)]
pub struct Refusal {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub reply: Reply,
}

impl Refusal {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            reply: Reply::Ack,
        }
    }

    pub fn bad(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "err.request.bad", message)
    }

    /// Put as a synchronous answer with `action`.
    pub fn as_callback(mut self, action: &'static str) -> Self {
        self.reply = Reply::Callback(action);
        self
    }

    pub fn with_code(mut self, code: &'static str) -> Self {
        self.code = code;
        self
    }
}

/// The standard bounds every message text at 999 characters.
fn clip(text: &str) -> String {
    text.chars().take(999).collect()
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let message = clip(&self.message);
        let errors = json!([{ "code": self.code, "message": message }]);
        let body = match self.reply {
            Reply::Ack => json!({
                "message": {
                    "ack_status": "ERR",
                    "timestamp": now(),
                    "error": { "code": self.code, "message": message },
                    "correlation_id": "",
                },
                "errors": errors,
            }),
            Reply::Callback(action) => {
                let mut header = callback_header(action, "", 0);
                header["status"] = json!("rjct");
                header["status_reason_message"] = json!(message);
                json!({ "header": header, "errors": errors })
            }
        };
        (self.status, Json(body)).into_response()
    }
}

/// The request body as JSON, or a refusal in the standard's shape: a body that is not
/// JSON, or not sent as `application/json`, is refused like any other bad message.
pub fn body(body: Result<Json<Value>, JsonRejection>) -> Result<Value, Refusal> {
    body.map(|Json(v)| v).map_err(|rejection| {
        let status = rejection.status();
        let why = match &rejection {
            JsonRejection::MissingJsonContentType(_) => {
                "DCI messages are sent as application/json".to_owned()
            }
            JsonRejection::JsonSyntaxError(_) | JsonRejection::JsonDataError(_) => {
                "the body is not valid JSON".to_owned()
            }
            _ => "the body could not be read".to_owned(),
        };
        Refusal::new(
            if status.is_client_error() {
                status
            } else {
                StatusCode::BAD_REQUEST
            },
            "err.request.bad",
            why,
        )
    })
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
        "error" => Some(Err(Refusal::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "err.service.unavailable",
            "registry maintenance",
        ))),
        _ => None,
    }
}

impl Registry {
    /// Admits a DCI message for `op`: from a trusted sender (when keys are configured:
    /// its bearer token and the message's signature, by the same sender), header and
    /// message as the standard's schemas say, not encrypted (this registry holds no
    /// decryption key), and not taken before. Answers the sender.
    pub fn admit(
        &self,
        headers: &HeaderMap,
        body: &Value,
        op: Operation,
    ) -> Result<String, Refusal> {
        let unauthorised = |e: dtks_platform::dci::SignatureError| {
            Refusal::new(StatusCode::UNAUTHORIZED, e.reason_code(), e.to_string())
        };
        // The standard's security scheme first: a bearer token from a trusted sender.
        let caller = if self.trusted.is_empty() {
            None
        } else {
            let token = headers
                .get(axum::http::header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
                .map(str::trim)
                .unwrap_or_default();
            Some(self.trusted.verify_bearer(token, SENDER_ID).map_err(|e| {
                Refusal::new(
                    StatusCode::UNAUTHORIZED,
                    "err.request.unauthorized",
                    format!("Authorization: Bearer <token signed by the sender's DCI key>: {e}"),
                )
            })?)
        };
        if !body.is_object() {
            return Err(Refusal::bad("the body must be a DCI message object"));
        }
        // Then the message's own signature, by the same sender.
        let signed_by = match caller {
            None => None,
            Some(caller) => {
                let signer = self.trusted.verify(body).map_err(unauthorised)?;
                if signer != caller {
                    return Err(Refusal::new(
                        StatusCode::UNAUTHORIZED,
                        "err.signature.invalid",
                        "the message is signed by another sender than the bearer token's",
                    ));
                }
                Some(signer)
            }
        };
        let header = body
            .get("header")
            .ok_or_else(|| Refusal::bad("header: is required"))?;
        contract::check(header, op.header()).map_err(|e| Refusal::bad(format!("header.{e}")))?;
        let message = body
            .get("message")
            .ok_or_else(|| Refusal::bad("message: is required"))?;
        if message.get("ciphertext").is_some() {
            return Err(Refusal::new(
                StatusCode::BAD_REQUEST,
                "err.encryption.invalid",
                "this registry holds no key agreed for encrypted messages: send them unencrypted",
            ));
        }
        contract::check(message, op.message()).map_err(|e| Refusal::bad(format!("message.{e}")))?;
        let sender = signed_by.unwrap_or_else(|| self::sender(header));
        self.replays
            .first_time(&sender, body)
            .map_err(unauthorised)?;
        Ok(sender)
    }

    /// The callback base of an asynchronous request from `sender`: `header.sender_uri`,
    /// or, when the header names none, the base registered for the sender (the
    /// standard's default). Once senders are registered (always, once requests are
    /// signed) a named URI must be the registered one.
    pub fn callback_base(&self, sender: &str, header: &Value) -> Result<String, Refusal> {
        let registered = self.senders.get(sender).map(|b| b.trim_end_matches('/'));
        let named = header.get("sender_uri").and_then(Value::as_str);
        let strict = !(self.senders.is_empty() && self.trusted.is_empty());
        let base = match (named, registered) {
            (None, Some(registered)) => return Ok(registered.to_owned()),
            (None, None) => {
                return Err(Refusal::bad(
                    "header.sender_uri: is required from a sender without a registered callback",
                )
                .with_code("err.sender_uri.invalid"));
            }
            (Some(uri), _) => uri.trim_end_matches('/'),
        };
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(Refusal::bad(
                "header.sender_uri: must be the http(s) base of the sender's callbacks",
            )
            .with_code("err.sender_uri.invalid"));
        }
        match registered {
            Some(registered) if registered == base => Ok(base.to_owned()),
            _ if !strict => Ok(base.to_owned()),
            _ => Err(Refusal::new(
                StatusCode::FORBIDDEN,
                "err.sender_uri.invalid",
                "header.sender_uri is not the callback base registered for this sender",
            )),
        }
    }

    /// A signed message from the registry (unsigned when it has no key).
    pub fn envelope(&self, action: &str, receiver_id: &str, total: usize, message: Value) -> Value {
        self.seal(callback_header(action, receiver_id, total), message)
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

/// The header of what the registry answers or sends (`MsgCallbackHeader`): every part
/// of it succeeded (`completed_count` = `total_count`).
pub fn callback_header(action: &str, receiver_id: &str, total: usize) -> Value {
    let mut header = dci::header(SENDER_ID, action, receiver_id, None, total);
    header["status"] = json!("succ");
    header["completed_count"] = json!(total);
    header
}

fn requests(body: &Value) -> Result<&[Value], Refusal> {
    let requests = body
        .pointer("/message/search_request")
        .and_then(Value::as_array)
        .ok_or_else(|| Refusal::bad("message.search_request: must be an array"))?;
    if requests.len() > MAX_REQUESTS {
        return Err(Refusal::bad(format!(
            "message.search_request: at most {MAX_REQUESTS} search requests per message"
        )));
    }
    Ok(requests)
}

pub fn storage(e: sea_orm::DbErr) -> Refusal {
    tracing::warn!(error = %e, "registry storage failed");
    Refusal::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "err.service.unavailable",
        "registry storage unavailable",
    )
}

/// The sender a header names (the one taken when messages are not signed), with any
/// control character replaced: it is kept and compared, never trusted.
pub fn sender(header: &Value) -> String {
    header
        .get("sender_id")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .chars()
        .map(|c| if c.is_control() { '\u{fffd}' } else { c })
        .collect()
}

/// A text member of the message (`transaction_id`), as the schema has admitted it.
pub fn text_at(body: &Value, pointer: &str) -> String {
    body.pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

/// A `SearchResponse`: the requests' answers under the transaction and a correlation
/// id of this registry's.
pub fn search_response(transaction_id: &str, correlation_id: &str, responses: Vec<Value>) -> Value {
    json!({
        "transaction_id": transaction_id,
        "correlation_id": correlation_id,
        "search_response": responses,
    })
}

async fn sync_search(
    State(registry): State<Registry>,
    headers: HeaderMap,
    request: Result<Json<Value>, JsonRejection>,
) -> Result<Json<Value>, Refusal> {
    let on_search = |r: Refusal| r.as_callback("on-search");
    if let Some(answer) = faulty().await {
        return answer.map_err(on_search);
    }
    let body = body(request).map_err(on_search)?;
    let sender = registry
        .admit(&headers, &body, Operation::Search)
        .map_err(on_search)?;
    let requests = requests(&body).map_err(on_search)?;
    let responses = search::answer(&registry.db, requests)
        .await
        .map_err(|e| on_search(storage(e)))?;
    let correlation_id = uuid::Uuid::new_v4().to_string();
    Ok(Json(registry.envelope(
        "on-search",
        &sender,
        responses.len(),
        search_response(
            &text_at(&body, "/message/transaction_id"),
            &correlation_id,
            responses,
        ),
    )))
}

/// The DCI acknowledgement of an asynchronous request.
pub fn ack(correlation_id: &str) -> Json<Value> {
    Json(json!({
        "message": { "ack_status": "ACK", "timestamp": now(), "correlation_id": correlation_id },
    }))
}

async fn async_search(
    State(registry): State<Registry>,
    headers: HeaderMap,
    request: Result<Json<Value>, JsonRejection>,
) -> Result<Json<Value>, Refusal> {
    if let Some(answer) = faulty().await {
        return answer;
    }
    let (body, sender, base) = registry.admit_async(&headers, request, Operation::Search)?;
    let requests = requests(&body)?.to_vec();
    let transaction_id = text_at(&body, "/message/transaction_id");
    let correlation_id = uuid::Uuid::new_v4();
    // Recorded before the acknowledgement: a status check finds it pending at once.
    let pending: Vec<Value> = requests
        .iter()
        .map(|r| json!({ "reference_id": r["reference_id"], "timestamp": now(), "status": "pdng" }))
        .collect();
    let record = transactions::Txn {
        correlation_id,
        sender: sender.clone(),
        transaction_id: transaction_id.clone(),
        kind: transactions::Kind::Search,
        reference_ids: transactions::reference_ids(&requests),
        codes: Vec::new(),
    };
    transactions::record(
        &registry.db,
        &record,
        &search_response(&transaction_id, &correlation_id.to_string(), pending),
    )
    .await
    .map_err(storage)?;
    tokio::spawn(async move {
        let responses = match search::answer(&registry.db, &requests).await {
            Ok(responses) => responses,
            Err(e) => {
                tracing::warn!(error = %e, "asynchronous search failed");
                return;
            }
        };
        let count = responses.len();
        let message = search_response(&transaction_id, &correlation_id.to_string(), responses);
        if let Err(e) = transactions::complete(&registry.db, correlation_id, &message).await {
            tracing::warn!(error = %e, "asynchronous search not recorded");
        }
        let body = registry.envelope("on-search", &sender, count, message);
        registry
            .deliver(&format!("{base}/registry/on-search"), &body)
            .await;
    });
    Ok(ack(&correlation_id.to_string()))
}

impl Registry {
    /// Reads and admits an asynchronous request for `op`; answers its message, its
    /// sender and the base its answer goes back to.
    pub fn admit_async(
        &self,
        headers: &HeaderMap,
        request: Result<Json<Value>, JsonRejection>,
        op: Operation,
    ) -> Result<(Value, String, String), Refusal> {
        let body = body(request)?;
        let sender = self.admit(headers, &body, op)?;
        let base = self.callback_base(&sender, &body["header"])?;
        Ok((body, sender, base))
    }

    /// Sends `body` to the sender's `{base}{path}` callback, in the background.
    pub fn answer_later(&self, base: &str, path: &str, body: Value) {
        let (registry, url) = (self.clone(), format!("{base}{path}"));
        tokio::spawn(async move { registry.deliver(&url, &body).await });
    }

    /// Posts an answer to its callback, a few times; the requester times out and asks
    /// again (or checks the transaction's status) if all fail.
    pub async fn deliver(&self, url: &str, body: &Value) {
        for attempt in 0..3u32 {
            match self.call_back(url, body).await {
                Ok(()) => return,
                Err(e) => {
                    tracing::warn!(error = %e, attempt, "callback failed");
                    tokio::time::sleep(std::time::Duration::from_millis(200 << attempt)).await;
                }
            }
        }
    }
}
