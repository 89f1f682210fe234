//! The callbacks the civil registry calls (DCI): `/registry/on-search` (answers of
//! asynchronous searches), `/registry/on-subscribe` (subscriptions confirmed) and
//! `/registry/notify` (vital events). Every message must carry the registry's valid
//! signature when its keys are configured.
//!
//! A vital event (*peristiwa kependudukan*) invalidates the cached registry answer for
//! the person and, when DTKS holds the person, becomes `person.life_event` (a death
//! asks for the household to be verified again). Each event is taken once, however
//! often the registry delivers it.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use dtks_platform::cache::Cache;
use dtks_platform::db::stmt;
use dtks_platform::{events, outbox};
use dtks_proto::common::v1 as pb;
use dtks_proto::events::v1 as ev;
use sea_orm::{ConnectionTrait, DatabaseConnection, TransactionTrait};
use serde_json::{Value, json};

use crate::dci::{DciRegistry, RegistryPerson};
use crate::matcher::cache_key;

/// The vital events matching subscribes to, by their DCI names (`live_birth` is the
/// standard's birth; a move is the registry's own).
pub const VITAL_EVENTS: [&str; 5] = ["death", "live_birth", "marriage", "divorce", "moved"];

#[derive(Clone)]
pub struct Callbacks {
    pub registry: DciRegistry,
    pub db: DatabaseConnection,
    pub cache: Cache,
    pub outbox: outbox::OutboxSignal,
}

pub fn router(callbacks: Callbacks) -> Router {
    Router::new()
        .route("/registry/on-search", post(on_search))
        .route("/registry/on-subscribe", post(on_subscribe))
        .route("/registry/notify", post(notify))
        .with_state(callbacks)
}

type Answer = (StatusCode, Json<Value>);

/// The message's correlation id, echoed in the acknowledgement (the standard requires
/// one); a message without one is acknowledged under a new id.
fn correlation_of(body: &Value) -> String {
    body.pointer("/message/correlation_id")
        .or_else(|| body.pointer("/header/message_id"))
        .and_then(Value::as_str)
        .filter(|id| !id.is_empty())
        .map_or_else(|| uuid::Uuid::new_v4().to_string(), str::to_owned)
}

fn ack(body: &Value) -> Answer {
    acknowledged(&correlation_of(body))
}

fn acknowledged(correlation: &str) -> Answer {
    (
        StatusCode::OK,
        Json(json!({ "message": {
            "ack_status": "ACK",
            "timestamp": chrono::Utc::now().to_rfc3339(),
            "correlation_id": correlation,
        } })),
    )
}

/// A refusal as the standard words one: an ERR acknowledgement with its error, and the
/// transport's `errors` list.
fn refuse(status: StatusCode, body: &Value, code: &str, message: &str) -> Answer {
    refused(status, &correlation_of(body), code, message)
}

fn refused(status: StatusCode, correlation: &str, code: &str, message: &str) -> Answer {
    (
        status,
        Json(json!({
            "message": {
                "ack_status": "ERR",
                "timestamp": chrono::Utc::now().to_rfc3339(),
                "error": { "code": code, "message": message },
                "correlation_id": correlation,
            },
            "errors": [{ "code": code, "message": message }],
        })),
    )
}

async fn on_search(State(c): State<Callbacks>, Json(body): Json<Value>) -> Answer {
    // Acknowledged even when its search gave up waiting: nothing the registry can fix.
    // The answer is handed on whole; its correlation id stays for the acknowledgement.
    let kept = json!({ "message": { "correlation_id": correlation_of(&body) } });
    match c.registry.deliver(body) {
        Ok(_) => ack(&kept),
        Err(e) => refuse(
            StatusCode::UNAUTHORIZED,
            &kept,
            e.reason_code(),
            &e.to_string(),
        ),
    }
}

/// A callback's signature checked against the registry's keys, or its refusal.
fn signed(c: &Callbacks, body: &Value) -> Result<(), Answer> {
    c.registry.check(body).map_err(|e| {
        refuse(
            StatusCode::UNAUTHORIZED,
            body,
            e.reason_code(),
            &e.to_string(),
        )
    })
}

async fn on_subscribe(State(c): State<Callbacks>, Json(body): Json<Value>) -> Answer {
    if let Err(refused) = signed(&c, &body) {
        return refused;
    }
    let responses = body
        .pointer("/message/subscribe_response")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let refused = responses
        .iter()
        .filter(|r| r.get("status").and_then(Value::as_str) != Some("succ"))
        .count();
    if refused > 0 {
        tracing::warn!(refused, "civil registry refused vital-event subscriptions");
    } else {
        tracing::info!(
            subscriptions = responses.len(),
            "vital-event subscriptions confirmed"
        );
    }
    ack(&body)
}

/// One vital event as notified, with the registry's record of the person.
struct Notice {
    event_id: uuid::Uuid,
    kind: String,
    nik: String,
    date: Option<pb::Date>,
    person: pb::Person,
    kk_number: String,
    village_code: String,
    parents: Vec<String>,
}

/// The person a notice's record describes, as DTKS writes a person.
fn person_of(record: &Value, registered: &RegistryPerson) -> pb::Person {
    let birth_date = chrono::NaiveDate::parse_from_str(&registered.birth_date, "%Y-%m-%d")
        .ok()
        .map(dtks_platform::convert::pb_date);
    pb::Person {
        nik: registered.nik.clone(),
        full_name: registered.full_name.clone(),
        birth_place: record
            .pointer("/birth_place/name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned(),
        birth_date,
        sex: match registered.sex.as_str() {
            "male" => pb::Sex::Male as i32,
            "female" => pb::Sex::Female as i32,
            _ => pb::Sex::Unspecified as i32,
        },
        ..Default::default()
    }
}

fn notice(item: &Value) -> Option<Notice> {
    let data = item.get("data")?;
    let record = data.get("reg_records")?;
    let registered = RegistryPerson::from_record(record);
    if registered.nik.is_empty() {
        return None;
    }
    let date = data
        .get("event_date")
        .and_then(Value::as_str)
        .and_then(|d| chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d").ok())
        .map(dtks_platform::convert::pb_date);
    Some(Notice {
        event_id: uuid::Uuid::parse_str(item.get("reference_id")?.as_str()?).ok()?,
        // DTKS's own name for a birth; the standard's `live_birth` is the same event.
        kind: match data.get("reg_event_type")?.as_str()? {
            "live_birth" => "birth".to_owned(),
            other => other.to_owned(),
        },
        person: person_of(record, &registered),
        parents: [
            "/parent1_identifier/identifier",
            "/parent2_identifier/identifier",
        ]
        .iter()
        .filter_map(|p| record.pointer(p).and_then(Value::as_str))
        .filter(|nik| !nik.is_empty())
        .map(str::to_owned)
        .collect(),
        nik: registered.nik,
        kk_number: registered.kk_number,
        village_code: registered.village_code,
        date,
    })
}

async fn notify(State(c): State<Callbacks>, Json(body): Json<Value>) -> Answer {
    if let Err(refused) = signed(&c, &body) {
        return refused;
    }
    let Some(items) = body
        .pointer("/message/notify_event")
        .and_then(Value::as_array)
    else {
        return refuse(
            StatusCode::BAD_REQUEST,
            &body,
            "err.request.bad",
            "message.notify_event must be an array",
        );
    };
    let Some(notices) = items.iter().map(notice).collect::<Option<Vec<_>>>() else {
        return refuse(
            StatusCode::BAD_REQUEST,
            &body,
            "err.request.bad",
            "each notify_event needs a UUID reference_id, data.reg_event_type and a person with a NIK",
        );
    };
    for n in &notices {
        if let Err(error) = take(&c, n).await {
            tracing::warn!(%error, "vital event not taken; the registry will deliver it again");
            return refuse(
                StatusCode::SERVICE_UNAVAILABLE,
                &body,
                "err.service.unavailable",
                "try again",
            );
        }
    }
    c.outbox.wake();
    ack(&body)
}

/// Takes one event: recorded once, published for a person DTKS holds, the cached
/// answer dropped.
async fn take(c: &Callbacks, n: &Notice) -> anyhow::Result<()> {
    let txn = c.db.begin().await?;
    let mut holder = crate::store::index::holder_of(&txn, &n.nik).await?;
    // A newborn is no one DTKS holds yet: the family card it is registered on may be,
    // or else a parent (in a household DTKS has accepted).
    if holder.is_none() && n.kind == "birth" {
        if !n.kk_number.is_empty() {
            holder = crate::store::index::family_of(&txn, &n.kk_number).await?;
        }
        for parent in &n.parents {
            if holder.is_none() {
                let found = crate::store::index::holder_of(&txn, parent).await?;
                holder = found.filter(|(household, ..)| !household.is_empty());
            }
        }
    }
    let fresh = txn
        .execute_raw(stmt(
            "INSERT INTO life_events (event_id, kind, in_dtks) VALUES ($1, $2, $3)
             ON CONFLICT (event_id) DO NOTHING",
            [
                n.event_id.into(),
                n.kind.clone().into(),
                holder.is_some().into(),
            ],
        ))
        .await?
        .rows_affected()
        == 1;
    if let (true, Some((household_id, proposal_id, village))) = (fresh, holder) {
        let event = ev::PersonLifeEvent {
            nik: n.nik.clone(),
            kind: n.kind.clone(),
            date: n.date,
            household_id,
            reverify_household: n.kind == "death",
            proposal_id: proposal_id.to_string(),
            person: Some(n.person.clone()),
            kk_number: n.kk_number.clone(),
            village_code: n.village_code.clone(),
            event_id: n.event_id.to_string(),
            parent_niks: n.parents.clone(),
        };
        outbox::enqueue(
            &txn,
            &events::envelope(events::PERSON_LIFE_EVENT, "matching", &village, &event),
        )
        .await?;
    }
    txn.commit().await?;
    // After the commit, so that a failed commit leaves the event to be delivered again;
    // a failure here leaves the answer to expire by its TTL.
    if let Ok(key) = cache_key(&n.nik)
        && let Err(error) = c.cache.delete(&key).await
    {
        tracing::warn!(%error, "cannot drop a cached registry answer");
    }
    Ok(())
}

/// Subscribes to the vital events, retrying until the registry acknowledges.
pub async fn keep_subscribing(registry: DciRegistry, shutdown: dtks_platform::shutdown::Shutdown) {
    let mut wait = std::time::Duration::from_secs(1);
    while !shutdown.is_triggered() {
        match registry.subscribe(&VITAL_EVENTS).await {
            Ok(()) => return,
            Err(error) => {
                tracing::warn!(%error, "cannot subscribe to vital events yet");
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = shutdown.clone().wait() => return,
                }
                wait = (wait * 2).min(std::time::Duration::from_secs(60));
            }
        }
    }
}
