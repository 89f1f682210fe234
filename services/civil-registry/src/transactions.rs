//! Transactions and their status (`/registry/txn/status`, `/registry/sync/txn/status`).
//!
//! Every asynchronous request (search, subscribe, unsubscribe) is recorded when it is
//! acknowledged, under the correlation id the acknowledgement names, with what its
//! callback says (pending until then), its texts kept as their JSON spelling. A sender
//! asks about its own transactions only:
//! by transaction id, correlation id, reference ids or subscription codes. An answer
//! that is not on record is 404 `err.request.not_found`. Records are kept a day.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use sea_orm::{ConnectionTrait, DatabaseConnection, DbErr};
use serde_json::{Value, json};

use dtks_platform::db::stmt;

use crate::exchange::{Answer, Message, Operation, Refusal, Registry, ack, storage, text_at};

/// How long a transaction's answer can be asked about.
pub const KEPT_HOURS: i64 = 24;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Search,
    Subscribe,
    Unsubscribe,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Self::Search => "search",
            Self::Subscribe => "subscribe",
            Self::Unsubscribe => "unsubscribe",
        }
    }

    /// The callback action that carries its answer (the status answer's `txn_type`).
    fn answer(self) -> &'static str {
        match self {
            Self::Search => "on-search",
            Self::Subscribe => "on-subscribe",
            Self::Unsubscribe => "on-unsubscribe",
        }
    }
}

/// One transaction as recorded.
#[derive(Debug, Clone)]
pub struct Txn {
    pub correlation_id: uuid::Uuid,
    pub sender: String,
    pub transaction_id: String,
    pub kind: Kind,
    pub reference_ids: Vec<String>,
    /// Subscription codes it created or ended.
    pub codes: Vec<String>,
}

/// The `reference_id`s of a message's requests.
pub fn reference_ids(requests: &[Value]) -> Vec<String> {
    requests
        .iter()
        .filter_map(|r| r.get("reference_id")?.as_str().map(str::to_owned))
        .collect()
}

/// A sender's text as it is kept: its JSON spelling, which holds any character a DCI
/// string may (PostgreSQL text holds no NUL) and compares as the text itself does.
fn kept(text: &str) -> String {
    Value::String(text.to_owned()).to_string()
}

fn kept_all(texts: &[String]) -> Vec<String> {
    texts.iter().map(|t| kept(t)).collect()
}

/// Records a transaction with its answer so far.
pub async fn record(db: &DatabaseConnection, txn: &Txn, answer: &Value) -> Result<(), DbErr> {
    db.execute_raw(stmt(
        "INSERT INTO transactions (correlation_id, sender_id, transaction_id, txn_type, reference_ids, codes, answer)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
        [
            txn.correlation_id.into(),
            kept(&txn.sender).into(),
            kept(&txn.transaction_id).into(),
            txn.kind.name().to_owned().into(),
            kept_all(&txn.reference_ids).into(),
            kept_all(&txn.codes).into(),
            answer.to_string().into(),
        ],
    ))
    .await?;
    Ok(())
}

/// The final answer of a transaction.
pub async fn complete(
    db: &DatabaseConnection,
    correlation_id: uuid::Uuid,
    answer: &Value,
) -> Result<(), DbErr> {
    db.execute_raw(stmt(
        "UPDATE transactions SET answer = $2 WHERE correlation_id = $1",
        [correlation_id.into(), answer.to_string().into()],
    ))
    .await?;
    Ok(())
}

/// Forgets transactions older than [`KEPT_HOURS`], every ten minutes, until the process
/// ends.
pub async fn expire(db: DatabaseConnection) {
    loop {
        if let Err(e) = db
            .execute_raw(stmt(
                "DELETE FROM transactions WHERE created_at < now() - make_interval(hours => $1::int)",
                [(KEPT_HOURS as i32).into()],
            ))
            .await
        {
            tracing::warn!(error = %e, "old transactions not removed");
        }
        tokio::time::sleep(std::time::Duration::from_secs(600)).await;
    }
}

/// A status request as admitted.
struct Asked {
    transaction_id: String,
    kind: Kind,
    attribute_type: String,
    attribute_value: Value,
}

fn asked(body: &Value) -> Asked {
    let request = &body["message"]["txnstatus_request"];
    Asked {
        transaction_id: text_at(body, "/message/transaction_id"),
        kind: match request["txn_type"].as_str() {
            Some("subscribe") => Kind::Subscribe,
            Some("unsubscribe") => Kind::Unsubscribe,
            _ => Kind::Search,
        },
        attribute_type: request["attribute_type"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        attribute_value: request["attribute_value"].clone(),
    }
}

fn texts(value: &Value) -> Vec<String> {
    match value {
        Value::String(s) => vec![s.clone()],
        Value::Array(items) => items
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect(),
        _ => Vec::new(),
    }
}

/// The sender's transaction the request names, with its answer (limited to the named
/// reference ids when it names them).
async fn find(db: &DatabaseConnection, sender: &str, q: &Asked) -> Result<Option<Value>, DbErr> {
    let column = match q.attribute_type.as_str() {
        "transaction_id" => "transaction_id = ANY($3)",
        "correlation_id" => "correlation_id::text = ANY($3)",
        "reference_id_list" => "reference_ids && $3",
        _ => "codes && $3",
    };
    let wanted = texts(&q.attribute_value);
    let keys: Vec<String> = if q.attribute_type == "correlation_id" {
        wanted
            .iter()
            .filter_map(|w| uuid::Uuid::parse_str(w).ok().map(|u| u.to_string()))
            .collect()
    } else {
        kept_all(&wanted)
    };
    if keys.is_empty() {
        return Ok(None);
    }
    let row = db
        .query_one_raw(stmt(
            &format!(
                "SELECT answer FROM transactions WHERE sender_id = $1 AND txn_type = $2 AND {column}
                 ORDER BY created_at DESC LIMIT 1"
            ),
            [
                kept(sender).into(),
                q.kind.name().to_owned().into(),
                keys.into(),
            ],
        ))
        .await?;
    let Some(row) = row else { return Ok(None) };
    let text: String = row.try_get("", "answer")?;
    let mut answer: Value =
        serde_json::from_str(&text).map_err(|e| DbErr::Custom(e.to_string()))?;
    if q.attribute_type == "reference_id_list" {
        for list in ["search_response", "subscribe_response"] {
            if let Some(items) = answer.get_mut(list).and_then(Value::as_array_mut) {
                items.retain(|i| {
                    i["reference_id"]
                        .as_str()
                        .is_some_and(|r| wanted.iter().any(|w| w == r))
                });
            }
        }
    }
    Ok(Some(answer))
}

/// A `TxnStatusResponse` for the transaction found.
fn status_response(q: &Asked, correlation_id: &str, found: Value) -> Value {
    json!({
        "transaction_id": q.transaction_id,
        "correlation_id": correlation_id,
        "txnstatus_response": { "txn_type": q.kind.answer(), "txn_status": found },
    })
}

fn not_found() -> Refusal {
    Refusal::new(
        StatusCode::NOT_FOUND,
        "err.request.not_found",
        "no transaction of this sender answers to that attribute",
    )
}

pub async fn sync_status(State(registry): State<Registry>, message: Message) -> Answer {
    let on_status = |r: Refusal| r.as_callback("txn-on-status");
    let (body, sender) = registry
        .admit_sync(message, Operation::TxnStatus)
        .map_err(on_status)?;
    let q = asked(&body);
    let found = find(&registry.db, &sender, &q)
        .await
        .map_err(|e| on_status(storage(e)))?
        .ok_or_else(|| on_status(not_found()))?;
    let correlation_id = uuid::Uuid::new_v4().to_string();
    Ok(Json(registry.envelope(
        "txn-on-status",
        &sender,
        1,
        status_response(&q, &correlation_id, found),
    )))
}

pub async fn async_status(State(registry): State<Registry>, message: Message) -> Answer {
    let (body, sender, base) = registry.admit_async(message, Operation::TxnStatus)?;
    let q = asked(&body);
    let found = find(&registry.db, &sender, &q)
        .await
        .map_err(storage)?
        .ok_or_else(not_found)?;
    let correlation_id = uuid::Uuid::new_v4().to_string();
    let answer = registry.envelope(
        "txn-on-status",
        &sender,
        1,
        status_response(&q, &correlation_id, found),
    );
    registry.answer_later(&base, "/registry/txn/on-status", answer);
    Ok(ack(&correlation_id))
}
