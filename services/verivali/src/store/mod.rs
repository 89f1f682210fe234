//! Statements on cases as the commands and reads use them: a case with its files and
//! history, a page of cases, the village minutes, and what a review or a resubmission
//! writes. Locking cases and recording their transitions is [`crate::cases`]. The
//! schema's migrations are `migrations/*.sql`.

use chrono::{DateTime, Utc};
use dtks_platform::db::stmt;
use dtks_proto::verivali::v1::{CaseState, Transition};
use sea_orm::{ConnectionTrait, DatabaseTransaction, DbErr, QueryResult};

use crate::cases::timestamp;
use crate::error::Result;

pub mod officers;

dtks_platform::sql_migrator![
    "m0001_cases",
    "m0002_workflow",
    "m0003_officers",
    "m0004_unmatched_complaints",
    "m0005_withdrawn_proposals",
];

/// The columns of a case as listed (without its files).
pub const SUMMARY: &str = "case_id, proposal_id, household_id, region_code, state, state_since, opened_at, flags, assessment, resubmissions";

/// A case with its files (reviews, the match, the household as verified).
pub async fn case(db: &impl ConnectionTrait, id: uuid::Uuid) -> Result<Option<QueryResult>> {
    Ok(db
        .query_one_raw(stmt(
            &format!(
                "SELECT {SUMMARY}, village_review, field_visit, matched, household FROM cases WHERE case_id = $1"
            ),
            [id.into()],
        ))
        .await?)
}

/// Records, once, that a proposal was withdrawn at intake.
pub async fn withdraw(
    txn: &DatabaseTransaction,
    id: uuid::Uuid,
    at: DateTime<Utc>,
) -> Result<(), DbErr> {
    txn.execute_raw(stmt(
        "INSERT INTO withdrawn_proposals (proposal_id, withdrawn_at) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        [id.into(), at.into()],
    ))
    .await?;
    Ok(())
}

/// Whether a proposal was withdrawn at intake (a match arriving later opens no case).
pub async fn is_withdrawn(txn: &DatabaseTransaction, id: uuid::Uuid) -> Result<bool, DbErr> {
    let sql = "SELECT 1 AS w FROM withdrawn_proposals WHERE proposal_id = $1";
    Ok(txn.query_one_raw(stmt(sql, [id.into()])).await?.is_some())
}

/// A case's transitions, oldest first.
pub async fn history(db: &impl ConnectionTrait, id: uuid::Uuid) -> Result<Vec<Transition>> {
    db.query_all_raw(stmt(
        "SELECT from_state, to_state, actor_id, actor_role, note, at FROM case_history WHERE case_id = $1 ORDER BY id",
        [id.into()],
    ))
    .await?
    .iter()
    .map(|h| {
        Ok(Transition {
            from: i32::from(h.try_get::<i16>("", "from_state")?),
            to: i32::from(h.try_get::<i16>("", "to_state")?),
            actor_id: h.try_get("", "actor_id")?,
            actor_role: h.try_get("", "actor_role")?,
            at: Some(timestamp(h.try_get("", "at")?)),
            note: h.try_get("", "note")?,
        })
    })
    .collect()
}

/// One page of cases in `region` whose state is one of `states` (all when empty),
/// waiting since before `waited_since`, in the order of `(state_since, case_id)`.
pub async fn page(
    db: &impl ConnectionTrait,
    page: &crate::aftercare::Page,
    region: &str,
    states: &[CaseState],
    waited_since: DateTime<Utc>,
) -> Result<(Vec<QueryResult>, String)> {
    let states: Vec<i16> = states.iter().map(|s| *s as i16).collect();
    let sql = format!(
        "SELECT {SUMMARY} FROM cases
         WHERE ($1 = '' OR region_code = $1 OR region_code LIKE $1 || '.%')
           AND (cardinality($2::int2[]) = 0 OR state = ANY($2))
           AND state_since <= $3
           AND (state_since, case_id) > ($4, $5)
         ORDER BY state_since, case_id LIMIT $6"
    );
    let values = vec![region.to_owned().into(), states.into(), waited_since.into()];
    page.fetch(db, &sql, values, ("state_since", "case_id"))
        .await
}

/// The minutes of a village review (musdes/muskel).
pub struct Minutes<'a> {
    pub number: &'a str,
    pub date: chrono::NaiveDate,
    pub attendees: i32,
    pub recorded_by: &'a str,
    pub at: DateTime<Utc>,
}

/// Keeps a village review's minutes and each case's review (encoded), in `txn`.
pub async fn village_review(
    txn: &DatabaseTransaction,
    minutes: &Minutes<'_>,
    ids: &[uuid::Uuid],
    reviews: Vec<Vec<u8>>,
) -> Result<()> {
    txn.execute_raw(stmt(
        "INSERT INTO village_minutes (minutes_id, minutes_number, minutes_date, attendees, recorded_by, recorded_at)
         VALUES ($1, $2, $3, $4, $5, $6)",
        [
            uuid::Uuid::now_v7().into(),
            minutes.number.to_owned().into(),
            minutes.date.into(),
            minutes.attendees.into(),
            minutes.recorded_by.to_owned().into(),
            minutes.at.into(),
        ],
    ))
    .await?;
    txn.execute_raw(stmt(
        "UPDATE cases c SET village_review = u.r FROM unnest($1::uuid[], $2::bytea[]) AS u(id, r) WHERE c.case_id = u.id",
        [ids.to_vec().into(), reviews.into()],
    ))
    .await?;
    Ok(())
}

/// Replaces a case's household (sealed) and its anomaly flags after a field correction.
pub async fn corrected(
    txn: &DatabaseTransaction,
    id: uuid::Uuid,
    sealed_household: Vec<u8>,
    flags: serde_json::Value,
) -> Result<()> {
    txn.execute_raw(stmt(
        "UPDATE cases SET household = $2, flags = $3 WHERE case_id = $1",
        [id.into(), sealed_household.into(), flags.into()],
    ))
    .await?;
    Ok(())
}

/// Keeps a case's field visit (encoded).
pub async fn field_visit(txn: &DatabaseTransaction, id: uuid::Uuid, visit: Vec<u8>) -> Result<()> {
    txn.execute_raw(stmt(
        "UPDATE cases SET field_visit = $2 WHERE case_id = $1",
        [id.into(), visit.into()],
    ))
    .await?;
    Ok(())
}

/// A resubmitted case: its corrected household (sealed), one more resubmission, and no
/// assessment until the ministry assesses it again.
pub async fn resubmitted(
    txn: &DatabaseTransaction,
    id: uuid::Uuid,
    sealed_household: Vec<u8>,
) -> Result<()> {
    txn.execute_raw(stmt(
        "UPDATE cases SET household = $2, resubmissions = resubmissions + 1, assessment = NULL WHERE case_id = $1",
        [id.into(), sealed_household.into()],
    ))
    .await?;
    Ok(())
}
