//! Snapshots as stored, and the schema's migrations.

use dtks_platform::db::stmt;
use dtks_proto::common::v1 as pb;
use dtks_proto::determination::v1::*;
use prost::Message;
use sea_orm::ConnectionTrait;
use tonic::Status;

use crate::error::Result;

dtks_platform::sql_migrator![
    "m0001_registry_and_snapshots",
    "m0002_removals_and_diffs",
    "m0003_province_deciles",
    "m0004_registry_versions",
    "m0005_snapshot_partitions",
    "m0006_snapshot_audit_checkpoint",
    "m0007_version_history",
];

pub(crate) fn row_snapshot(r: &sea_orm::QueryResult) -> Result<Snapshot> {
    let get_i = |c: &str| r.try_get::<i64>("", c);
    let get_i32 = |c: &str| r.try_get::<i32>("", c);
    let determined_at: chrono::DateTime<chrono::Utc> = r.try_get("", "determined_at")?;
    Ok(Snapshot {
        snapshot_id: r.try_get::<uuid::Uuid>("", "snapshot_id")?.to_string(),
        period: Some(pb::Period {
            year: get_i32("year")?,
            month: get_i32("month")?,
        }),
        households: get_i("households")? as u64,
        persons: get_i("persons")? as u64,
        model_version: r.try_get("", "model_version")?,
        input_watermark: get_i("input_watermark")? as u64,
        content_hash: r.try_get("", "content_hash")?,
        unchanged: r.try_get("", "unchanged")?,
        stands_from: Some(pb::Period {
            year: get_i32("stands_from_year")?,
            month: get_i32("stands_from_month")?,
        }),
        determined_at: Some(prost_types::Timestamp {
            seconds: determined_at.timestamp(),
            nanos: 0,
        }),
        timings: vec![],
        diff: Some(SnapshotDiff {
            added: get_i("added")? as u64,
            removed: get_i("removed")? as u64,
            changed: get_i("changed")? as u64,
            decile_moves: get_i("decile_moves")? as u64,
        }),
        audit_checkpoint: match (
            r.try_get::<Option<i64>>("", "audit_tree_size")?,
            r.try_get::<Option<Vec<u8>>>("", "audit_root")?,
        ) {
            (Some(size), Some(root)) => checkpoint(size, root),
            _ => None,
        },
    })
}

/// The snapshot whose rows stand for `snap`'s period: itself, or for an unchanged month
/// the snapshot it stands on.
pub(crate) async fn standing_of(
    conn: &impl ConnectionTrait,
    snap: &Snapshot,
) -> Result<uuid::Uuid> {
    if !snap.unchanged {
        return Ok(uuid::Uuid::parse_str(&snap.snapshot_id)?);
    }
    let from = snap.stands_from.unwrap_or_default();
    let row = conn
        .query_one_raw(stmt(
            "SELECT snapshot_id FROM snapshots WHERE year = $1 AND month = $2",
            [from.year.into(), from.month.into()],
        ))
        .await?
        .ok_or_else(|| Status::internal("missing source snapshot"))?;
    Ok(row.try_get("", "snapshot_id")?)
}

pub(crate) const SNAPSHOT_COLUMNS: &str = "snapshot_id, year, month, households, persons, model_version, input_watermark, content_hash, unchanged,
    stands_from_year, stands_from_month, added, removed, changed, decile_moves, determined_at, audit_tree_size, audit_root";

/// Determination's audit checkpoint of `size` leaves headed by `root`.
pub(crate) fn checkpoint(size: i64, root: Vec<u8>) -> Option<pb::AuditCheckpoint> {
    let root: [u8; 32] = root.try_into().ok()?;
    let size = u64::try_from(size).ok()?;
    Some(pb::AuditCheckpoint {
        service: "determination".into(),
        tree_size: size,
        root: root.to_vec(),
        text: dtks_platform::audit::checkpoint_text(size, &root),
    })
}

/// The newest month determined.
pub(crate) async fn latest_period(db: &impl ConnectionTrait) -> Result<Option<(i32, i32)>> {
    let row = db
        .query_one_raw(stmt(
            "SELECT year, month FROM snapshots ORDER BY year DESC, month DESC LIMIT 1",
            [],
        ))
        .await?;
    Ok(match row {
        Some(r) => Some((r.try_get("", "year")?, r.try_get("", "month")?)),
        None => None,
    })
}

/// One household's row in a snapshot, with its record as ranked.
pub(crate) async fn ranked(
    db: &impl ConnectionTrait,
    snapshot_id: uuid::Uuid,
    household_id: uuid::Uuid,
) -> Result<Option<RankedHousehold>> {
    let row = db
        .query_one_raw(stmt(
            "SELECT r.national_rank, r.household_id, r.region_code, r.score, r.decile, r.province_decile, v.household
             FROM snapshot_rows r JOIN registry_versions v ON v.household_id = r.household_id AND v.version = r.version
             WHERE r.snapshot_id = $1 AND r.household_id = $2",
            [snapshot_id.into(), household_id.into()],
        ))
        .await?;
    row.map(|r| ranked_from_row(&r)).transpose()
}

/// A page of a snapshot in rank order: at most `batch` households ranked after
/// `after_rank`, at most decile `max_decile`, within `region` (empty: the country).
pub(crate) async fn page(
    db: &impl ConnectionTrait,
    snapshot_id: uuid::Uuid,
    region: &str,
    max_decile: i16,
    batch: i64,
    after_rank: i64,
) -> Result<Vec<RankedHousehold>> {
    db.query_all_raw(stmt(
        // The page is cut from the snapshot first (an index range on the rank) and only
        // its rows are joined with their records: joining first would join every row
        // after the cursor for each page.
        "SELECT r.national_rank, r.household_id, r.region_code, r.score, r.decile, r.province_decile, v.household
         FROM (SELECT national_rank, household_id, version, region_code, score, decile, province_decile
               FROM snapshot_rows
               WHERE snapshot_id = $1 AND national_rank > $2 AND decile <= $3
                 AND (region_code = $4 OR region_code LIKE $4 || '.%' OR $4 = '')
               ORDER BY national_rank LIMIT $5) r
         JOIN registry_versions v ON v.household_id = r.household_id AND v.version = r.version
         ORDER BY r.national_rank",
        [
            snapshot_id.into(),
            after_rank.into(),
            max_decile.into(),
            region.to_owned().into(),
            batch.into(),
        ],
    ))
    .await?
    .iter()
    .map(ranked_from_row)
    .collect()
}

fn ranked_from_row(r: &sea_orm::QueryResult) -> Result<RankedHousehold> {
    let bytes: Vec<u8> = r.try_get("", "household")?;
    let decile = |c: &str| -> Result<u32> {
        Ok(r.try_get::<Option<i16>>("", c)?
            .and_then(|d| u32::try_from(d).ok())
            .unwrap_or_default())
    };
    Ok(RankedHousehold {
        household_id: r.try_get::<uuid::Uuid>("", "household_id")?.to_string(),
        region_code: r.try_get("", "region_code")?,
        score: r.try_get("", "score")?,
        national_rank: u64::try_from(r.try_get::<i64>("", "national_rank")?).unwrap_or_default(),
        decile: decile("decile")?,
        province_decile: decile("province_decile")?,
        household: Some(pb::Household::decode(bytes.as_slice())?),
    })
}

/// A household's record as it stood at a time, or its removal.
pub(crate) struct Version {
    pub(crate) version: i64,
    pub(crate) region_code: String,
    pub(crate) valid_from: chrono::DateTime<chrono::Utc>,
    /// `None` for a removal.
    pub(crate) household: Option<pb::Household>,
    pub(crate) removal_reason: Option<String>,
}

/// The version of `household_id` in force at `as_of`.
pub(crate) async fn version_at(
    db: &impl ConnectionTrait,
    household_id: uuid::Uuid,
    as_of: chrono::DateTime<chrono::Utc>,
) -> Result<Option<Version>> {
    let row = db
        .query_one_raw(stmt(
            "SELECT version, region_code, valid_from, household, removal_reason FROM registry_versions
             WHERE household_id = $1 AND valid_from <= $2 ORDER BY valid_from DESC, version DESC LIMIT 1",
            [household_id.into(), as_of.into()],
        ))
        .await?;
    let Some(row) = row else { return Ok(None) };
    let household = row
        .try_get::<Option<Vec<u8>>>("", "household")?
        .map(|bytes| pb::Household::decode(bytes.as_slice()))
        .transpose()?;
    Ok(Some(Version {
        version: row.try_get("", "version")?,
        region_code: row.try_get("", "region_code")?,
        valid_from: row.try_get("", "valid_from")?,
        household,
        removal_reason: row.try_get("", "removal_reason")?,
    }))
}
