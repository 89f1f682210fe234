//! Vital events (*peristiwa kependudukan*) and their subscribers.
//!
//! A clerk records an event (`POST /admin/vital-events`); the registry applies it to the
//! population and appends it to `vital_events` in one transaction. Every subscription
//! keeps a cursor into that log; the notifier sends each subscriber the events past its
//! cursor on `{callback}/registry/notify` and moves the cursor only when the subscriber
//! accepted them — so a subscriber that is down gets them later, in order, at least once.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use sea_orm::{ConnectionTrait, DatabaseConnection, TransactionTrait};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::Notify;

use dtks_platform::db::stmt;

use crate::exchange::{Answer, Message, Operation, Refusal, Registry, ack, storage, text_at};
use crate::search::{now, record as person_record};
use crate::transactions::{self, Kind, Txn};

/// The vital events the registry records and notifies, as its clerks name them.
pub const KINDS: [&str; 5] = ["death", "birth", "marriage", "divorce", "moved"];

/// A vital event's name in DCI (`reg_event_type`): the standard's code list names a
/// birth `live_birth`; a move is this registry's own.
pub fn standard_kind(kind: &str) -> &str {
    if kind == "birth" { "live_birth" } else { kind }
}

/// The registry's kind for a subscription's `reg_event_type` (the standard's name, or
/// the clerks' own).
fn kind_of(event_type: &str) -> Option<&'static str> {
    let event_type = if event_type == "live_birth" {
        "birth"
    } else {
        event_type
    };
    KINDS.iter().copied().find(|k| *k == event_type)
}

/// Events sent in one notify message.
const BATCH: i64 = 100;

fn wake() -> &'static Arc<Notify> {
    static WAKE: std::sync::OnceLock<Arc<Notify>> = std::sync::OnceLock::new();
    WAKE.get_or_init(Arc::default)
}

fn bad(message: impl Into<String>) -> Refusal {
    Refusal::bad(message)
}

pub async fn subscribe(State(registry): State<Registry>, message: Message) -> Answer {
    let (body, sender, base) = registry.admit_async(message, Operation::Subscribe)?;
    let items = body["message"]["subscribe_request"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let mut responses = Vec::new();
    let mut codes = Vec::new();
    for item in &items {
        let reference_id = item["reference_id"].clone();
        let event_type = item["subscribe_criteria"]["reg_event_type"]
            .as_str()
            .unwrap_or_default();
        let Some(kind) = kind_of(event_type) else {
            responses.push(json!({
                "reference_id": reference_id, "timestamp": now(), "status": "rjct",
                "status_reason_code": "rjct.notify_types.invalid",
                "status_reason_message": "reg_event_type must be one of death, live_birth, marriage, divorce, moved",
            }));
            continue;
        };
        // A subscriber that subscribes again (after a restart) keeps its cursor: nothing
        // recorded while it was away is skipped.
        let row = registry
            .db
            .query_one_raw(stmt(
                "INSERT INTO subscriptions (code, sender_id, callback_uri, event_type, cursor)
                 VALUES (gen_random_uuid(), $1, $2, $3, (SELECT coalesce(max(seq), 0) FROM vital_events))
                 ON CONFLICT (sender_id, callback_uri, event_type) DO UPDATE SET event_type = EXCLUDED.event_type
                 RETURNING code::text AS code",
                [sender.clone().into(), base.clone().into(), kind.to_owned().into()],
            ))
            .await
            .map_err(storage)?
            .ok_or_else(|| storage(sea_orm::DbErr::RecordNotFound("subscription".into())))?;
        let code: String = row.try_get("", "code").map_err(storage)?;
        codes.push(code.clone());
        responses.push(json!({
            "reference_id": reference_id, "timestamp": now(), "status": "succ",
            "subscriptions": [{
                "code": code, "subscription_code": code, "status": "subscribe",
                "timestamp": now(), "reg_event_type": standard_kind(kind),
                "notify_record_type": "CRVS_Person",
                "subscribe_criteria": {
                    "reg_event_type": standard_kind(kind), "filter": [],
                    "notify_record_type": "CRVS_Person",
                },
            }],
        }));
    }
    let correlation_id = uuid::Uuid::new_v4();
    let message = json!({
        "transaction_id": text_at(&body, "/message/transaction_id"),
        "correlation_id": correlation_id.to_string(),
        "subscribe_response": responses,
    });
    let txn = Txn {
        correlation_id,
        sender: sender.clone(),
        transaction_id: text_at(&body, "/message/transaction_id"),
        kind: Kind::Subscribe,
        reference_ids: transactions::reference_ids(&items),
        codes,
    };
    transactions::record(&registry.db, &txn, &message)
        .await
        .map_err(storage)?;
    let confirmation = registry.envelope("on-subscribe", &sender, responses.len(), message);
    registry.answer_later(&base, "/registry/on-subscribe", confirmation);
    Ok(ack(&correlation_id.to_string()))
}

/// Ends subscriptions of the sender's own. The codes are read from
/// `subscription_codes` (as the standard describes them) or `sunscription_codes` (as it
/// requires them); each is answered on `on-unsubscribe`, a code that is not a
/// subscription of the sender's as `rjct.subscription_code.invalid`.
pub async fn unsubscribe(State(registry): State<Registry>, message: Message) -> Answer {
    let (body, sender, base) = registry.admit_async(message, Operation::Unsubscribe)?;
    let message = &body["message"];
    let listed = message
        .get("subscription_codes")
        .or_else(|| message.get("sunscription_codes"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if listed.len() > 100 {
        return Err(bad(
            "message.subscription_codes: at most 100 codes per message",
        ));
    }
    let codes: Vec<String> = listed
        .iter()
        .filter_map(|c| c.as_str().map(str::to_owned))
        .collect();
    let uuids: Vec<String> = codes
        .iter()
        .filter_map(|c| uuid::Uuid::parse_str(c).ok().map(|u| u.to_string()))
        .collect();
    let ended: Vec<String> = registry
        .db
        .query_all_raw(stmt(
            "DELETE FROM subscriptions WHERE code = ANY($1::uuid[]) AND sender_id = $2
             RETURNING code::text AS code",
            [uuids.into(), sender.clone().into()],
        ))
        .await
        .map_err(storage)?
        .iter()
        .filter_map(|r| r.try_get::<String>("", "code").ok())
        .collect();
    let all_ended = codes
        .iter()
        .all(|c| uuid::Uuid::parse_str(c).is_ok_and(|u| ended.contains(&u.to_string())));
    let correlation_id = uuid::Uuid::new_v4();
    let mut answer = json!({
        "transaction_id": text_at(&body, "/message/transaction_id"),
        "correlation_id": correlation_id.to_string(),
        "timestamp": now(),
        "status": if all_ended { "succ" } else { "rjct" },
        "subscription_status": ended
            .iter()
            .map(|c| json!({ "code": c, "status": "unsubscribe" }))
            .collect::<Vec<_>>(),
    });
    if !all_ended {
        answer["status_reason_code"] = json!("rjct.subscription_code.invalid");
        answer["status_reason_message"] = json!("some codes are not subscriptions of this sender");
    }
    let txn = Txn {
        correlation_id,
        sender: sender.clone(),
        transaction_id: text_at(&body, "/message/transaction_id"),
        kind: Kind::Unsubscribe,
        reference_ids: Vec::new(),
        codes,
    };
    transactions::record(&registry.db, &txn, &answer)
        .await
        .map_err(storage)?;
    let confirmation = registry.envelope("on-unsubscribe", &sender, 1, answer);
    registry.answer_later(&base, "/registry/on-unsubscribe", confirmation);
    Ok(ack(&correlation_id.to_string()))
}

/// A vital event as a registry clerk records it.
#[derive(Debug, Deserialize)]
pub struct VitalEvent {
    pub kind: String,
    /// The person concerned (for a birth, the newborn).
    pub nik: String,
    /// YYYY-MM-DD.
    pub date: String,
    /// Moved: the new village. Birth: the newborn's village.
    #[serde(default)]
    pub village_code: Option<String>,
    /// Birth: the card it is registered on. Marriage or divorce: a new card issued with
    /// it, if any.
    #[serde(default)]
    pub kk_number: Option<String>,
    #[serde(default)]
    pub full_name: Option<String>,
    #[serde(default)]
    pub birth_place: Option<String>,
    /// Birth only: `male` or `female`.
    #[serde(default)]
    pub sex: Option<String>,
    /// Birth only, optional: the parents' NIKs.
    #[serde(default)]
    pub parent1_nik: Option<String>,
    #[serde(default)]
    pub parent2_nik: Option<String>,
}

fn authorised(registry: &Registry, headers: &HeaderMap) -> bool {
    registry.admin_token.as_ref().is_none_or(|token| {
        headers.get("authorization").and_then(|v| v.to_str().ok())
            == Some(format!("Bearer {token}").as_str())
    })
}

/// Records a vital event: applies it to the population and appends it to the log that
/// subscribers are fed from, in one transaction.
pub async fn record(
    State(registry): State<Registry>,
    message: Message,
) -> Result<(StatusCode, Json<Value>), Refusal> {
    if !authorised(&registry, &message.headers) {
        return Err(Refusal::new(
            StatusCode::UNAUTHORIZED,
            "err.request.unauthorized",
            "registry clerk token required",
        ));
    }
    let event: VitalEvent = serde_json::from_value(message.body()?)
        .map_err(|e| bad(format!("not a vital event: {e}")))?;
    if !KINDS.contains(&event.kind.as_str()) {
        return Err(bad(format!("kind must be one of {}", KINDS.join(", "))));
    }
    let date = chrono::NaiveDate::parse_from_str(&event.date, "%Y-%m-%d")
        .map_err(|_| bad("date must be YYYY-MM-DD"))?;
    if dtks_domain::Nik::parse(&event.nik).is_err() {
        return Err(bad("nik is not a valid NIK"));
    }
    let txn = registry.db.begin().await.map_err(storage)?;
    let nik = event.nik.clone();
    let changed = match event.kind.as_str() {
        "death" => {
            txn.execute_raw(stmt(
                "UPDATE persons SET death_date = $2 WHERE nik = $1",
                [nik.clone().into(), date.into()],
            ))
            .await
        }
        "moved" => {
            let village = event
                .village_code
                .clone()
                .filter(|v| v.len() == 13)
                .ok_or_else(|| bad("moved: village_code (the new village) is required"))?;
            txn.execute_raw(stmt(
                "UPDATE persons SET village_code = $2 WHERE nik = $1",
                [nik.clone().into(), village.into()],
            ))
            .await
        }
        "marriage" | "divorce" => {
            let status = if event.kind == "marriage" { "married" } else { "divorced" };
            // A new family card (KK) issued with it, if any.
            let card = event.kk_number.clone().filter(|k| !k.trim().is_empty());
            txn.execute_raw(stmt(
                "UPDATE persons SET marital_status = $2, kk_number = coalesce($3, kk_number) WHERE nik = $1",
                [nik.clone().into(), status.to_owned().into(), card.into()],
            ))
            .await
        }
        _ => {
            let field = |v: &Option<String>, name: &str| {
                v.clone()
                    .filter(|v| !v.trim().is_empty())
                    .ok_or_else(|| bad(format!("birth: {name} is required")))
            };
            let sex: i16 = match event.sex.as_deref() {
                Some("male") => 1,
                Some("female") => 2,
                _ => return Err(bad("birth: sex must be male or female")),
            };
            let parent = |nik: &Option<String>| match nik.as_deref().map(str::trim) {
                None | Some("") => Ok(None),
                Some(nik) if dtks_domain::Nik::parse(nik).is_ok() => Ok(Some(nik.to_owned())),
                Some(_) => Err(bad("birth: a parent's NIK is not a valid NIK")),
            };
            let parents = (parent(&event.parent1_nik)?, parent(&event.parent2_nik)?);
            txn.execute_raw(stmt(
                "INSERT INTO persons (nik, kk_number, full_name, birth_place, birth_date, sex, village_code, parent1_nik, parent2_nik)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (nik) DO NOTHING",
                [
                    nik.clone().into(),
                    field(&event.kk_number, "kk_number")?.into(),
                    field(&event.full_name, "full_name")?.into(),
                    field(&event.birth_place, "birth_place")?.into(),
                    date.into(),
                    sex.into(),
                    field(&event.village_code, "village_code")?.into(),
                    parents.0.into(),
                    parents.1.into(),
                ],
            ))
            .await
        }
    }
    .map_err(storage)?;
    if changed.rows_affected() == 0 {
        return Err(Refusal::new(
            StatusCode::NOT_FOUND,
            "err.request.not_found",
            if event.kind == "birth" {
                "a person with this NIK is already registered"
            } else {
                "no person with this NIK"
            },
        ));
    }
    let row = txn
        .query_one_raw(stmt(
            "INSERT INTO vital_events (event_id, kind, nik, event_date) VALUES (gen_random_uuid(), $1, $2, $3)
             RETURNING seq, event_id::text AS event_id",
            [event.kind.clone().into(), nik.into(), date.into()],
        ))
        .await
        .map_err(storage)?
        .ok_or_else(|| storage(sea_orm::DbErr::RecordNotFound("event".into())))?;
    txn.commit().await.map_err(storage)?;
    wake().notify_one();
    let event_id: String = row.try_get("", "event_id").map_err(storage)?;
    let seq: i64 = row.try_get("", "seq").map_err(storage)?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "event_id": event_id, "seq": seq })),
    ))
}

/// Feeds every subscriber the events past its cursor, until the process ends. A
/// subscriber that fails is left alone for a growing while (1 s doubling to 30 s).
pub async fn notifier(registry: Registry) {
    let mut resting: HashMap<String, (u32, Instant)> = HashMap::new();
    loop {
        match deliver(&registry, &mut resting).await {
            Ok(true) => continue,
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %e, "notifier cannot read subscriptions"),
        }
        tokio::select! {
            _ = wake().notified() => {}
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
    }
}

/// One round over the subscriptions; answers whether anything was sent.
async fn deliver(
    registry: &Registry,
    resting: &mut HashMap<String, (u32, Instant)>,
) -> Result<bool, sea_orm::DbErr> {
    let db: &DatabaseConnection = &registry.db;
    let subscriptions = db
        .query_all_raw(stmt(
            "SELECT code::text AS code, sender_id, callback_uri, event_type, cursor FROM subscriptions
             WHERE EXISTS (SELECT 1 FROM vital_events e WHERE e.seq > subscriptions.cursor AND e.kind = subscriptions.event_type)",
            [],
        ))
        .await?;
    let mut sent = false;
    for s in &subscriptions {
        let code: String = s.try_get("", "code")?;
        if resting
            .get(&code)
            .is_some_and(|(_, until)| Instant::now() < *until)
        {
            continue;
        }
        let cursor: i64 = s.try_get("", "cursor")?;
        let kind: String = s.try_get("", "event_type")?;
        let events = db
            .query_all_raw(stmt(
                "SELECT e.seq, e.event_id::text AS event_id, e.kind, e.event_date::text AS event_date,
                        e.recorded_at, p.nik, p.kk_number, p.full_name, p.birth_place,
                        p.birth_date::text AS birth_date, p.sex, p.village_code,
                        p.death_date::text AS death_date, p.marital_status, p.parent1_nik, p.parent2_nik
                 FROM vital_events e JOIN persons p ON p.nik = e.nik
                 WHERE e.seq > $1 AND e.kind = $2 ORDER BY e.seq LIMIT $3",
                [cursor.into(), kind.clone().into(), BATCH.into()],
            ))
            .await?;
        let Some(last) = events.last() else { continue };
        let last_seq: i64 = last.try_get("", "seq")?;
        let notices: Vec<Value> = events
            .iter()
            .map(|e| {
                let get = |c: &str| e.try_get::<String>("", c).unwrap_or_default();
                json!({
                    "reference_id": get("event_id"),
                    "timestamp": now(),
                    "data": {
                        "version": "1.0.0",
                        "reg_type": "ns:dukcapil:RegistryType:Civil",
                        "reg_event_type": standard_kind(&get("kind")),
                        "event_date": get("event_date"),
                        "reg_record_type": "CRVS_Person",
                        "reg_records": person_record(e),
                    },
                })
            })
            .collect();
        let sender: String = s.try_get("", "sender_id")?;
        let base: String = s.try_get("", "callback_uri")?;
        let body = registry.envelope(
            "notify",
            &sender,
            notices.len(),
            json!({ "transaction_id": uuid::Uuid::new_v4().to_string(), "notify_event": notices }),
        );
        match registry
            .call_back(&format!("{base}/registry/notify"), &body)
            .await
        {
            Ok(()) => {
                resting.remove(&code);
                db.execute_raw(stmt(
                    "UPDATE subscriptions SET cursor = $2 WHERE code = $1::uuid AND cursor < $2",
                    [code.into(), last_seq.into()],
                ))
                .await?;
                sent = true;
            }
            Err(e) => {
                let failures = resting.get(&code).map_or(0, |(f, _)| *f) + 1;
                let wait = Duration::from_secs((1u64 << failures.min(5)).min(30));
                tracing::warn!(error = %e, failures, "notify callback failed; retrying later");
                resting.insert(code, (failures, Instant::now() + wait));
            }
        }
    }
    Ok(sent)
}
