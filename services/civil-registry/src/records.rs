//! Records as the registry answers them: the columns read, a `CRVS_Person` in JSON-LD,
//! the `reg_records` object holding them, and the bounds of a page.

use serde_json::{Value, json};

pub const MAX_PAGE_SIZE: u64 = 100;
/// The furthest into a search a page may start: more records than Indonesia has people.
pub const MAX_OFFSET: u64 = 1_000_000_000;
pub const DEFAULT_PAGE_SIZE: u64 = 10;

pub const COLUMNS: &str = "nik, kk_number, full_name, birth_place, birth_date::text AS birth_date, sex, village_code, death_date::text AS death_date, marital_status, parent1_nik, parent2_nik";

pub fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// One person as a DCI `CRVS_Person` record.
pub fn record(row: &sea_orm::QueryResult) -> Value {
    let get = |c: &str| row.try_get::<String>("", c).unwrap_or_default();
    let optional = |c: &str| {
        row.try_get::<Option<String>>("", c)
            .ok()
            .flatten()
            .unwrap_or_default()
    };
    let sex = match row.try_get::<i16>("", "sex").unwrap_or_default() {
        1 => "male",
        2 => "female",
        _ => "",
    };
    let mut record = json!({
        "@type": RECORD_TYPE,
        "identifier": [
            { "identifier_type": "NIK", "identifier_value": get("nik") },
            { "identifier_type": "KK", "identifier_value": get("kk_number") },
        ],
        "name": { "given_name": get("full_name"), "surname": "" },
        "sex": sex,
        "birth_date": get("birth_date"),
        "birth_place": { "name": get("birth_place") },
        "death_date": optional("death_date"),
        "marital_status": optional("marital_status"),
        "address": [{ "region_code": get("village_code"), "country_code": "ID" }],
    });
    // A birth's parents, by their NIK (the standard's UIN), where registered.
    for field in ["parent1", "parent2"] {
        let nik = optional(&format!("{field}_nik"));
        if !nik.is_empty() {
            record[format!("{field}_identifier")] =
                json!({ "identifier_type": "UIN", "identifier": nik });
        }
    }
    record
}

/// The registry type this registry answers as (`reg_type`).
pub const REG_TYPE: &str = "ns:dukcapil:RegistryType:Civil";
/// What its records are (`reg_record_type`, and each record's `@type`).
pub const RECORD_TYPE: &str = "CRVS_Person";

/// A page of records as the standard's `reg_records` object: a JSON-LD node set
/// (`@graph`) of `CRVS_Person` records.
pub fn reg_records(records: Vec<Value>) -> Value {
    json!({
        "@context": "https://schema.spdci.org/extensions/dci/v1/Person.jsonld",
        "@graph": records,
    })
}
