//! What every DCI endpoint of the reference civil registry shares: the registry's state,
//! the operations and their schemas, admitting a signed message, refusals in the
//! standard's shape, acknowledgements, and answering on a sender's callbacks.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use sea_orm::DatabaseConnection;
use serde_json::{Value, json};

use dtks_platform::dci::{self, KeyRing, Signer};

use crate::contract::{self, Shape};
use crate::search::now;

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

/// A DCI request as it arrived: its headers, and its JSON body or why that could not be
/// read (refused in the standard's shape by [`Message::body`], not by axum's default).
pub struct Message {
    pub headers: HeaderMap,
    body: Result<Json<Value>, JsonRejection>,
}

impl<S: Send + Sync> FromRequest<S> for Message {
    type Rejection = std::convert::Infallible;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let headers = request.headers().clone();
        let body = Json::from_request(request, state).await;
        Ok(Message { headers, body })
    }
}

/// What a DCI endpoint answers: a message, or a refusal in the standard's shape.
pub type Answer = Result<Json<Value>, Refusal>;

impl Message {
    /// The body as JSON, or a refusal in the standard's shape: a body that is not JSON,
    /// or not sent as `application/json`, is refused like any other bad message.
    pub fn body(self) -> Result<Value, Refusal> {
        self.body.map(|Json(v)| v).map_err(|rejection| {
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

/// The DCI acknowledgement of an asynchronous request.
pub fn ack(correlation_id: &str) -> Json<Value> {
    Json(json!({
        "message": { "ack_status": "ACK", "timestamp": now(), "correlation_id": correlation_id },
    }))
}

impl Registry {
    /// Reads and admits a request for `op`; answers its message and its sender.
    pub fn admit_sync(&self, message: Message, op: Operation) -> Result<(Value, String), Refusal> {
        let headers = message.headers.clone();
        let body = message.body()?;
        let sender = self.admit(&headers, &body, op)?;
        Ok((body, sender))
    }

    /// Reads and admits an asynchronous request for `op`; answers its message, its
    /// sender and the base its answer goes back to.
    pub fn admit_async(
        &self,
        message: Message,
        op: Operation,
    ) -> Result<(Value, String, String), Refusal> {
        let (body, sender) = self.admit_sync(message, op)?;
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
