//! The DCI registry API, sync search by identifier (`query_type: idtype-value`,
//! identifier type `NIK`), answering CRVS person records.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use sea_orm::{ConnectionTrait, DatabaseConnection};
use serde_json::{Value, json};

use dtks_platform::db::stmt;

pub fn router(db: DatabaseConnection) -> Router {
    Router::new()
        .route("/registry/sync/search", post(sync_search))
        .with_state(db)
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn error(status: StatusCode, message: &str) -> (StatusCode, Json<Value>) {
    (
        status,
        Json(json!({ "error": { "code": status.as_u16().to_string(), "message": message } })),
    )
}

/// A fault the reference registry can be told to show, for drills and tests of the
/// adapter's failure handling: `DTKS_REGISTRY_FAULT=slow` answers after 6 s,
/// `malformed` answers 200 with a body that is not a DCI response, `error` answers 503.
fn fault() -> &'static str {
    static FAULT: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    FAULT.get_or_init(|| std::env::var("DTKS_REGISTRY_FAULT").unwrap_or_default())
}

async fn sync_search(
    State(db): State<DatabaseConnection>,
    Json(body): Json<Value>,
) -> Result<Json<Value>, (StatusCode, Json<Value>)> {
    match fault() {
        "slow" => tokio::time::sleep(std::time::Duration::from_secs(6)).await,
        "malformed" => return Ok(Json(json!({ "message": { "unexpected": true } }))),
        "error" => {
            return Err(error(
                StatusCode::SERVICE_UNAVAILABLE,
                "registry maintenance",
            ));
        }
        _ => {}
    }
    let header = body
        .get("header")
        .ok_or_else(|| error(StatusCode::BAD_REQUEST, "header is required"))?;
    let requests = body
        .pointer("/message/search_request")
        .and_then(Value::as_array)
        .ok_or_else(|| {
            error(
                StatusCode::BAD_REQUEST,
                "message.search_request must be an array",
            )
        })?;
    if requests.len() > 100 {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "at most 100 search requests per message",
        ));
    }
    let mut responses = Vec::with_capacity(requests.len());
    for request in requests {
        let reference_id = request
            .get("reference_id")
            .cloned()
            .unwrap_or(Value::String(String::new()));
        let criteria = request.get("search_criteria").cloned().unwrap_or_default();
        let id_type = criteria
            .pointer("/query/type")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let value = criteria
            .pointer("/query/value")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if criteria.get("query_type").and_then(Value::as_str) != Some("idtype-value")
            || id_type != "NIK"
        {
            responses.push(json!({
                "reference_id": reference_id, "timestamp": now(), "status": "rjct",
                "status_reason_code": "rjct.search_criteria.invalid",
                "status_reason_message": "only query_type idtype-value with type NIK is supported",
            }));
            continue;
        }
        let rows = db
            .query_all_raw(stmt(
                "SELECT nik, kk_number, full_name, birth_place, birth_date::text AS birth_date, sex, village_code, death_date::text AS death_date
                 FROM persons WHERE nik = $1",
                [value.to_owned().into()],
            ))
            .await
            .map_err(|_| error(StatusCode::INTERNAL_SERVER_ERROR, "registry storage unavailable"))?;
        let records: Vec<Value> = rows
            .iter()
            .map(|r| {
                let get = |c: &str| r.try_get::<String>("", c).unwrap_or_default();
                let sex = match r.try_get::<i16>("", "sex").unwrap_or_default() {
                    1 => "male",
                    2 => "female",
                    _ => "",
                };
                json!({
                    "@type": "CRVS_Person",
                    "identifier": [
                        { "identifier_type": "NIK", "identifier_value": get("nik") },
                        { "identifier_type": "KK", "identifier_value": get("kk_number") },
                    ],
                    "name": { "given_name": get("full_name"), "surname": "" },
                    "sex": sex,
                    "birth_date": get("birth_date"),
                    "birth_place": { "name": get("birth_place") },
                    "death_date": r.try_get::<Option<String>>("", "death_date").ok().flatten().unwrap_or_default(),
                    "address": [{ "region_code": get("village_code"), "country_code": "ID" }],
                })
            })
            .collect();
        responses.push(json!({
            "reference_id": reference_id, "timestamp": now(), "status": "succ",
            "data": { "version": "1.0.0", "reg_records": records },
            "pagination": { "page_size": 10, "page_number": 1, "total_count": records.len() },
        }));
    }
    Ok(Json(json!({
        "signature": "",
        "header": {
            "version": "1.0.0",
            "message_id": header.get("message_id").cloned().unwrap_or_default(),
            "message_ts": now(),
            "action": "on-search",
            "status": "succ",
            "total_count": responses.len(),
            "completed_count": responses.len(),
            "sender_id": "dukcapil-reference",
            "receiver_id": header.get("sender_id").cloned().unwrap_or_default(),
            "is_msg_encrypted": false,
        },
        "message": { "transaction_id": body.pointer("/message/transaction_id").cloned().unwrap_or_default(), "search_response": responses },
    })))
}
