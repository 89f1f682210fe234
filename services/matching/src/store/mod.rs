//! Every statement of the matching service's own schema: proposals waiting for the
//! registry (`pending`), their results (`match_results`), and the person index
//! ([`index`]). Use cases call these; no SQL lives at the gRPC edge.

pub mod index;

use dtks_platform::db::stmt;
use dtks_proto::events::v1 as ev;
use dtks_proto::events::v1::PersonOutcome;
use prost::Message;
use sea_orm::{ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbErr};

use crate::dci::RegistryPerson;

dtks_platform::sql_migrator![
    "m0001_match_results",
    "m0002_pending",
    "m0003_person_index_reviews_life_events",
];

/// Receives a proposal to match (once, however often its event is delivered).
pub async fn receive(
    txn: &DatabaseTransaction,
    proposal_id: uuid::Uuid,
    region_code: &str,
    envelope: Vec<u8>,
) -> Result<(), DbErr> {
    txn.execute_raw(stmt(
        "INSERT INTO pending (proposal_id, region_code, envelope) VALUES ($1, $2, $3)
         ON CONFLICT (proposal_id) DO NOTHING",
        [
            proposal_id.into(),
            region_code.to_owned().into(),
            envelope.into(),
        ],
    ))
    .await?;
    Ok(())
}

/// Forgets a proposal still waiting to be matched (withdrawn at intake).
pub async fn forget(txn: &DatabaseTransaction, proposal_id: uuid::Uuid) -> Result<(), DbErr> {
    let sql = "DELETE FROM pending WHERE proposal_id = $1";
    txn.execute_raw(stmt(sql, [proposal_id.into()])).await?;
    Ok(())
}

/// A proposal claimed for matching: its id, failed attempts so far, encoded envelope.
pub type Claimed = (uuid::Uuid, i32, Vec<u8>);

/// Up to `limit` due proposals, leased for `lease_secs` so that no other replica takes
/// them meanwhile (and this one, after a crash, takes them again once it runs out).
pub async fn claim(
    db: &DatabaseConnection,
    limit: i64,
    lease_secs: i64,
) -> Result<Vec<Claimed>, DbErr> {
    let rows = db
        .query_all_raw(stmt(
            "UPDATE pending SET next_attempt_at = now() + make_interval(secs => $2)
             WHERE proposal_id IN (
                 SELECT proposal_id FROM pending WHERE next_attempt_at <= now()
                 ORDER BY next_attempt_at LIMIT $1 FOR UPDATE SKIP LOCKED)
             RETURNING proposal_id, attempts, envelope",
            [limit.into(), (lease_secs as f64).into()],
        ))
        .await?;
    rows.iter()
        .map(|row| {
            Ok((
                row.try_get("", "proposal_id")?,
                row.try_get("", "attempts")?,
                row.try_get("", "envelope")?,
            ))
        })
        .collect()
}

/// Records a failed attempt and puts the next one `after_secs` away.
pub async fn delay(
    db: &DatabaseConnection,
    proposal_id: uuid::Uuid,
    failures: i32,
    error: &str,
    after_secs: i64,
) -> Result<(), DbErr> {
    db.execute_raw(stmt(
        "UPDATE pending SET attempts = $2, last_error = $3,
             next_attempt_at = now() + make_interval(secs => $4)
         WHERE proposal_id = $1",
        [
            proposal_id.into(),
            failures.into(),
            error.to_owned().into(),
            (after_secs as f64).into(),
        ],
    ))
    .await?;
    Ok(())
}

/// Stores a proposal's result (replacing an earlier one) and takes it off `pending`;
/// false when it was no longer there (withdrawn meanwhile, [`forget`]): the caller
/// then drops the transaction.
pub async fn store_result(
    txn: &DatabaseTransaction,
    proposal_id: uuid::Uuid,
    region_code: &str,
    matched: &ev::ProposalMatched,
) -> Result<bool, DbErr> {
    txn.execute_raw(stmt(
        "INSERT INTO match_results (proposal_id, region_code, outcome, result) VALUES ($1, $2, $3, $4)
         ON CONFLICT (proposal_id) DO UPDATE SET outcome = EXCLUDED.outcome, result = EXCLUDED.result, matched_at = now()",
        [
            proposal_id.into(),
            region_code.to_owned().into(),
            (matched.outcome as i16).into(),
            matched.encode_to_vec().into(),
        ],
    ))
    .await?;
    let sql = "DELETE FROM pending WHERE proposal_id = $1 RETURNING proposal_id";
    let taken = txn.query_one_raw(stmt(sql, [proposal_id.into()])).await?;
    Ok(taken.is_some())
}

/// A proposal's stored result and its region.
pub async fn result(
    db: &DatabaseConnection,
    proposal_id: uuid::Uuid,
) -> Result<Option<(String, Vec<u8>)>, DbErr> {
    let row = db
        .query_one_raw(stmt(
            "SELECT region_code, result FROM match_results WHERE proposal_id = $1",
            [proposal_id.into()],
        ))
        .await?;
    row.map(|row| Ok((row.try_get("", "region_code")?, row.try_get("", "result")?)))
        .transpose()
}

/// The proposal's current result, locked for update.
pub async fn result_for_update(
    txn: &DatabaseTransaction,
    proposal_id: uuid::Uuid,
) -> Result<Option<ev::ProposalMatched>, DbErr> {
    let row = txn
        .query_one_raw(stmt(
            "SELECT result FROM match_results WHERE proposal_id = $1 FOR UPDATE",
            [proposal_id.into()],
        ))
        .await?;
    row.map(|r| {
        let bytes: Vec<u8> = r.try_get("", "result")?;
        ev::ProposalMatched::decode(bytes.as_slice()).map_err(|e| DbErr::Custom(e.to_string()))
    })
    .transpose()
}

/// A proposal still waiting: its region, failed attempts, and when the next is due.
pub struct Waiting {
    pub region_code: String,
    pub attempts: i32,
    pub next_attempt_at: String,
}

pub async fn waiting(
    db: &DatabaseConnection,
    proposal_id: uuid::Uuid,
) -> Result<Option<Waiting>, DbErr> {
    let row = db
        .query_one_raw(stmt(
            "SELECT region_code, attempts, next_attempt_at::text AS next FROM pending WHERE proposal_id = $1",
            [proposal_id.into()],
        ))
        .await?;
    row.map(|row| {
        Ok(Waiting {
            region_code: row.try_get("", "region_code")?,
            attempts: row.try_get("", "attempts")?,
            next_attempt_at: row.try_get("", "next")?,
        })
    })
    .transpose()
}

/// Opens (or, for a proposal matched again, refreshes) the pair of one person.
#[allow(clippy::too_many_arguments)]
pub async fn open_review_pair(
    txn: &DatabaseTransaction,
    proposal_id: uuid::Uuid,
    region_code: &str,
    (fi, mi): (u32, u32),
    candidate: &RegistryPerson,
    probability: f64,
    reason: &str,
    before: PersonOutcome,
) -> Result<uuid::Uuid, DbErr> {
    let row = txn
        .query_one_raw(stmt(
            "INSERT INTO review_pairs (pair_id, proposal_id, region_code, family_index, member_index,
                 candidate, score, reason, outcome_before)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
             ON CONFLICT (proposal_id, family_index, member_index) DO UPDATE
               SET candidate = EXCLUDED.candidate, score = EXCLUDED.score, reason = EXCLUDED.reason
             RETURNING pair_id",
            [
                uuid::Uuid::now_v7().into(),
                proposal_id.into(),
                region_code.to_owned().into(),
                (fi as i32).into(),
                (mi as i32).into(),
                serde_json::to_value(candidate)
                    .map_err(|e| DbErr::Custom(e.to_string()))?
                    .into(),
                probability.into(),
                reason.to_owned().into(),
                (before as i16).into(),
            ],
        ))
        .await?
        .ok_or_else(|| DbErr::RecordNotFound("review pair".into()))?;
    row.try_get("", "pair_id")
}
