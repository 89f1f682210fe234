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
use serde_json::{Value, json};

use crate::exchange::{Answer, Message, Operation, Refusal, Registry, ack, storage, text_at};
use crate::search::{self, now};
use crate::{events, transactions};

/// At most this many requests in one message.
const MAX_REQUESTS: usize = 100;

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

/// A `SearchResponse`: the requests' answers under the transaction and a correlation
/// id of this registry's.
pub fn search_response(transaction_id: &str, correlation_id: &str, responses: Vec<Value>) -> Value {
    json!({
        "transaction_id": transaction_id,
        "correlation_id": correlation_id,
        "search_response": responses,
    })
}

async fn sync_search(State(registry): State<Registry>, message: Message) -> Answer {
    let on_search = |r: Refusal| r.as_callback("on-search");
    if let Some(answer) = faulty().await {
        return answer.map_err(on_search);
    }
    let (body, sender) = registry
        .admit_sync(message, Operation::Search)
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

async fn async_search(State(registry): State<Registry>, message: Message) -> Answer {
    if let Some(answer) = faulty().await {
        return answer;
    }
    let (body, sender, base) = registry.admit_async(message, Operation::Search)?;
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
