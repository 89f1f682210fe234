//! Search over the population: by identifier (`idtype-value`, type `NIK`; a message's
//! NIK requests are answered with one query) and by predicate (`predicate`: the
//! standard's list of `{expression1, condition, expression2}`, each condition `and`,
//! `or` or `not`, the items joined by `and`), with pagination. Records come back as a
//! `reg_records` object holding a JSON-LD `@graph` of `CRVS_Person`s.
//!
//! Predicate attributes: `name` (`eq`, case and spacing ignored), `name_part` (`eq`:
//! one part of the name, as written, case ignored), `birth_date`
//! (`eq`, `ge`, `le`, `gt`, `lt`), `sex` (`eq`: `male`/`female`), `village_code`,
//! `district_code`, `regency_code`, `province_code` (`eq`, `in`), `kk_number` (`eq`).

use std::collections::HashMap;

use sea_orm::{ConnectionTrait, DatabaseConnection};
use serde_json::{Value, json};

use dtks_platform::db::stmt;

use crate::predicate::Predicate;
use crate::records::COLUMNS;
pub use crate::records::{RECORD_TYPE, REG_TYPE, now, record, reg_records};

fn rejected(reference_id: &Value, code: &str, message: String) -> Value {
    json!({
        "reference_id": reference_id, "timestamp": now(), "status": "rjct",
        "status_reason_code": code, "status_reason_message": message,
    })
}

fn succeeded(
    reference_id: &Value,
    criteria: &Value,
    records: Vec<Value>,
    page: (u64, u64),
    total: u64,
) -> Value {
    let event_type = criteria
        .get("reg_event_type")
        .and_then(Value::as_str)
        .unwrap_or("REGISTER");
    json!({
        "reference_id": reference_id, "timestamp": now(), "status": "succ",
        "data": {
            "version": "1.0.0", "reg_type": REG_TYPE, "reg_event_type": event_type,
            "reg_record_type": RECORD_TYPE, "reg_records": reg_records(records),
        },
        "pagination": { "page_size": page.0, "page_number": page.1, "total_count": total },
    })
}

/// Answers every request of a `search_request` array, in order.
pub async fn answer(
    db: &DatabaseConnection,
    requests: &[Value],
) -> Result<Vec<Value>, sea_orm::DbErr> {
    // The identifier requests of the message, answered together.
    let niks: Vec<String> = requests
        .iter()
        .filter_map(|r| nik_of(r.get("search_criteria")?))
        .map(str::to_owned)
        .collect();
    // The predicate requests, parsed, and those of one shape answered by one statement.
    let parsed: Vec<Option<Result<Predicate, String>>> = requests
        .iter()
        .map(|request| {
            let criteria = request.get("search_criteria")?;
            (criteria.get("query_type").and_then(Value::as_str) == Some("predicate"))
                .then(|| Predicate::parse(criteria))
        })
        .collect();
    let mut shapes: HashMap<(String, u64, u64), Vec<usize>> = HashMap::new();
    for (i, p) in parsed.iter().enumerate() {
        if let Some(Ok(p)) = p {
            shapes.entry(p.shape()).or_default().push(i);
        }
    }
    // The NIKs and each shape's statement at once, each on its own connection: a
    // message's answer waits for its slowest statement, not for their sum.
    let by_nik = async {
        let mut by_nik: HashMap<String, Value> = HashMap::new();
        if !niks.is_empty() {
            let rows = db
                .query_all_raw(stmt(
                    &format!("SELECT {COLUMNS} FROM persons WHERE nik = ANY($1)"),
                    [niks.into()],
                ))
                .await?;
            for row in &rows {
                by_nik.insert(row.try_get("", "nik")?, record(row));
            }
        }
        Ok::<_, sea_orm::DbErr>(by_nik)
    };
    let by_shape = futures::future::try_join_all(shapes.into_values().map(|members| {
        let predicates: Vec<&Predicate> = members
            .iter()
            .filter_map(|i| parsed[*i].as_ref()?.as_ref().ok())
            .collect();
        async move {
            let results = Predicate::run_many(db, &predicates).await?;
            Ok::<_, sea_orm::DbErr>(members.into_iter().zip(results))
        }
    }));
    let (by_nik, by_shape) = futures::future::try_join(by_nik, by_shape).await?;
    let mut answered: HashMap<usize, (Vec<Value>, u64)> = by_shape.into_iter().flatten().collect();
    let mut responses = Vec::with_capacity(requests.len());
    for (i, request) in requests.iter().enumerate() {
        let reference_id = request
            .get("reference_id")
            .cloned()
            .unwrap_or(Value::String(String::new()));
        let criteria = request.get("search_criteria").cloned().unwrap_or_default();
        let response = match criteria.get("query_type").and_then(Value::as_str) {
            Some("idtype-value") => match nik_of(&criteria) {
                Some(nik) => {
                    let records: Vec<Value> = by_nik.get(nik).cloned().into_iter().collect();
                    let total = records.len() as u64;
                    succeeded(&reference_id, &criteria, records, (1, 1), total)
                }
                None => rejected(
                    &reference_id,
                    "rjct.search_criteria.invalid",
                    "idtype-value takes the identifier type NIK with its value as text".into(),
                ),
            },
            Some("predicate") => match (&parsed[i], answered.remove(&i)) {
                (Some(Ok(predicate)), Some((records, total))) => succeeded(
                    &reference_id,
                    &criteria,
                    records,
                    (predicate.page_size, predicate.page_number),
                    total,
                ),
                (Some(Err(why)), _) if why.starts_with("pagination") => {
                    rejected(&reference_id, "rjct.pagination.invalid", why.clone())
                }
                (Some(Err(why)), _) => {
                    rejected(&reference_id, "rjct.search_criteria.invalid", why.clone())
                }
                _ => rejected(
                    &reference_id,
                    "rjct.search_criteria.invalid",
                    "the predicate search could not be answered".into(),
                ),
            },
            _ => rejected(
                &reference_id,
                "rjct.search_criteria.invalid",
                "this registry answers idtype-value and predicate queries; expressions are not supported".into(),
            ),
        };
        responses.push(response);
    }
    Ok(responses)
}

/// The NIK an identifier request asks for. A value holding a NUL character names no
/// one (PostgreSQL text cannot hold it): such a request is answered as invalid.
fn nik_of(criteria: &Value) -> Option<&str> {
    (criteria.get("query_type")?.as_str()? == "idtype-value"
        && criteria.pointer("/query/type")?.as_str()? == "NIK")
        .then(|| criteria.pointer("/query/value")?.as_str())
        .flatten()
        .filter(|nik| !nik.contains('\0'))
}

#[cfg(test)]
mod tests;
