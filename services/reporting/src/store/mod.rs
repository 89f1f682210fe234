//! Every statement of reporting's schema: the counters, the facts replayed into the read
//! models, and the reports themselves ([`reports`]). Migrations are `migrations/*.sql`.

pub mod reports;

use dtks_platform::db::stmt;
use sea_orm::{ConnectionTrait, DatabaseConnection, TransactionTrait};

use crate::error::Result;
use crate::facts;

dtks_platform::sql_migrator![
    "m0001_counters",
    "m0002_facts_and_read_models",
    "m0003_counters_by_region",
    "m0004_removals_and_updates",
];

/// Each counter summed over `region` and everything below it (empty: the country).
pub async fn counters(db: &DatabaseConnection, region: &str) -> Result<Vec<(String, i64)>> {
    // The region was parsed at the edge: digits and dots only, so the prefix is literal
    // in the pattern.
    db.query_all_raw(stmt(
        "SELECT metric, sum(value)::bigint AS value FROM counters
         WHERE $1 = '' OR region_code = $1 OR region_code LIKE $1 || '.%' GROUP BY metric",
        [region.to_owned().into()],
    ))
    .await?
    .iter()
    .map(|r| Ok((r.try_get("", "metric")?, r.try_get("", "value")?)))
    .collect()
}

/// Facts replayed per read.
const REPLAY_BATCH: i64 = 5_000;

/// Empties the read models and applies every kept fact again, in arrival order, in one
/// transaction; events arriving meanwhile wait (the facts table is locked against
/// writes) and are applied after it. The answer counts the facts replayed.
pub async fn rebuild(db: &DatabaseConnection) -> Result<u64> {
    let txn = db.begin().await?;
    txn.execute_unprepared(&format!(
        "LOCK TABLE facts IN EXCLUSIVE MODE; TRUNCATE {}",
        facts::MODELS.join(", ")
    ))
    .await?;
    let mut after = 0i64;
    let mut replayed = 0u64;
    loop {
        let rows = txn
            .query_all_raw(stmt(
                "SELECT seq, event_type, occurred_at, region_code, fact FROM facts WHERE seq > $1 ORDER BY seq LIMIT $2",
                [after.into(), REPLAY_BATCH.into()],
            ))
            .await?;
        if rows.is_empty() {
            break;
        }
        for r in &rows {
            after = r.try_get("", "seq")?;
            let fact: serde_json::Value = r.try_get("", "fact")?;
            let fact: facts::Fact = serde_json::from_value(fact)?;
            let event_type: String = r.try_get("", "event_type")?;
            let occurred: chrono::DateTime<chrono::Utc> = r.try_get("", "occurred_at")?;
            let region: String = r.try_get("", "region_code")?;
            facts::apply(&txn, &event_type, occurred, &region, &fact)
                .await
                .map_err(|e| {
                    dtks_platform::fault::Fault::Other(format!("replaying fact {after}: {e}"))
                })?;
            replayed += 1;
        }
    }
    txn.commit().await?;
    Ok(replayed)
}
