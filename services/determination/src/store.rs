//! Snapshots as stored, and the schema's migrations.

use dtks_platform::db::stmt;
use dtks_platform::grpc;
use dtks_proto::common::v1 as pb;
use dtks_proto::determination::v1::*;
use sea_orm::ConnectionTrait;
use tonic::Status;

dtks_platform::sql_migrator![
    "m0001_registry_and_snapshots",
    "m0002_removals_and_diffs",
    "m0003_province_deciles",
    "m0004_registry_versions",
    "m0005_snapshot_partitions",
    "m0006_snapshot_audit_checkpoint",
];

pub(crate) fn row_snapshot(r: &sea_orm::QueryResult) -> Result<Snapshot, Status> {
    let get_i = |c: &str| r.try_get::<i64>("", c).map_err(grpc::internal);
    let get_i32 = |c: &str| r.try_get::<i32>("", c).map_err(grpc::internal);
    let determined_at: chrono::DateTime<chrono::Utc> =
        r.try_get("", "determined_at").map_err(grpc::internal)?;
    Ok(Snapshot {
        snapshot_id: r
            .try_get::<uuid::Uuid>("", "snapshot_id")
            .map_err(grpc::internal)?
            .to_string(),
        period: Some(pb::Period {
            year: get_i32("year")?,
            month: get_i32("month")?,
        }),
        households: get_i("households")? as u64,
        persons: get_i("persons")? as u64,
        model_version: r.try_get("", "model_version").map_err(grpc::internal)?,
        input_watermark: get_i("input_watermark")? as u64,
        content_hash: r.try_get("", "content_hash").map_err(grpc::internal)?,
        unchanged: r.try_get("", "unchanged").map_err(grpc::internal)?,
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
            r.try_get::<Option<i64>>("", "audit_tree_size")
                .map_err(grpc::internal)?,
            r.try_get::<Option<Vec<u8>>>("", "audit_root")
                .map_err(grpc::internal)?,
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
) -> Result<uuid::Uuid, Status> {
    if !snap.unchanged {
        return uuid::Uuid::parse_str(&snap.snapshot_id).map_err(grpc::internal);
    }
    let from = snap.stands_from.unwrap_or_default();
    let row = conn
        .query_one_raw(stmt(
            "SELECT snapshot_id FROM snapshots WHERE year = $1 AND month = $2",
            [from.year.into(), from.month.into()],
        ))
        .await
        .map_err(grpc::internal)?
        .ok_or_else(|| Status::internal("missing source snapshot"))?;
    row.try_get("", "snapshot_id").map_err(grpc::internal)
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
