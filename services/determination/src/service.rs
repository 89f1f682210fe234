use dtks_platform::app::Context;
use dtks_platform::auth::claims;
use dtks_platform::bus::{EventHandler, HandlerError};
use dtks_platform::copy::{CopyIn, copy_out};
use dtks_platform::db::{Migration, Migrator as MigratorTrait, SqlMigration, sql_migrations, stmt};
use dtks_platform::{convert, events, grpc, outbox};
use dtks_proto::common::v1 as pb;
use dtks_proto::determination::v1::determination_service_server::{
    DeterminationService, DeterminationServiceServer,
};
use dtks_proto::determination::v1::*;
use dtks_proto::events::v1::{self as ev, Envelope};
use prost::Message;
use sea_orm::{ConnectionTrait, DatabaseConnection, DatabaseTransaction};
use sha2::{Digest, Sha256};
use tonic::{Request, Response, Status};

pub struct Migrator;

impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn Migration>> {
        sql_migrations(vec![
            SqlMigration {
                name: "m0001_registry_and_snapshots",
                sql: r#"
CREATE TABLE registry_households (
    household_id UUID PRIMARY KEY,
    region_code TEXT NOT NULL,
    household BYTEA NOT NULL,
    persons INT NOT NULL,
    change_seq BIGINT NOT NULL,
    verified_at TIMESTAMPTZ NOT NULL
);
CREATE SEQUENCE registry_change_seq;
CREATE TABLE snapshots (
    snapshot_id UUID PRIMARY KEY,
    year INT NOT NULL,
    month INT NOT NULL,
    households BIGINT NOT NULL,
    persons BIGINT NOT NULL,
    model_version TEXT NOT NULL,
    input_watermark BIGINT NOT NULL,
    content_hash TEXT NOT NULL,
    unchanged BOOLEAN NOT NULL,
    stands_from_year INT NOT NULL,
    stands_from_month INT NOT NULL,
    added BIGINT NOT NULL, removed BIGINT NOT NULL, changed BIGINT NOT NULL, decile_moves BIGINT NOT NULL,
    determined_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (year, month)
);
CREATE TABLE snapshot_rows (
    snapshot_id UUID NOT NULL REFERENCES snapshots (snapshot_id),
    national_rank BIGINT NOT NULL,
    household_id UUID NOT NULL,
    region_code TEXT NOT NULL,
    score DOUBLE PRECISION NOT NULL,
    decile SMALLINT NOT NULL,
    household BYTEA NOT NULL,
    PRIMARY KEY (snapshot_id, national_rank)
);
"#,
            },
            SqlMigration {
                name: "m0002_removals_and_diffs",
                sql: r#"
-- Households verivali removed stay in the registry, out of every later determination.
ALTER TABLE registry_households ADD COLUMN removed_at TIMESTAMPTZ, ADD COLUMN removal_reason TEXT;
-- Each row's SHA-256 of its household, so that diffs see what changed.
ALTER TABLE snapshot_rows ADD COLUMN content BYTEA;
CREATE INDEX snapshot_rows_household ON snapshot_rows (snapshot_id, household_id);
"#,
            },
            SqlMigration {
                name: "m0003_province_deciles",
                sql: r#"
ALTER TABLE snapshot_rows ADD COLUMN province_decile SMALLINT;
"#,
            },
            SqlMigration {
                name: "m0004_registry_versions",
                sql: r#"
-- Every version of every household, never updated: the registry as of any moment.
-- A removal is a version without a household.
CREATE TABLE registry_versions (
    household_id UUID NOT NULL,
    version BIGINT NOT NULL,
    region_code TEXT NOT NULL,
    valid_from TIMESTAMPTZ NOT NULL,
    household BYTEA,
    removal_reason TEXT,
    PRIMARY KEY (household_id, version)
);
INSERT INTO registry_versions (household_id, version, region_code, valid_from, household, removal_reason)
SELECT household_id, change_seq, region_code, coalesce(removed_at, verified_at),
       CASE WHEN removed_at IS NULL THEN household END, removal_reason
FROM registry_households;
"#,
            },
            SqlMigration {
                name: "m0005_snapshot_partitions",
                sql: r#"
-- Each version's SHA-256: diffs and content hashes compare records by it.
ALTER TABLE registry_versions ADD COLUMN digest BYTEA;
UPDATE registry_versions SET digest = sha256(household) WHERE household IS NOT NULL;
-- The current state keeps what a determination reads: the record's digest and the
-- welfare model's inputs (which the service computes at start for rows older than
-- them); the record itself lives in registry_versions.
ALTER TABLE registry_households ADD COLUMN digest BYTEA, ADD COLUMN inputs BYTEA;
UPDATE registry_households SET digest = sha256(household);
ALTER TABLE registry_households DROP COLUMN household;

-- A snapshot's rows point at the registry version they ranked instead of copying it,
-- and each snapshot is its own partition, written in one COPY and indexed once.
ALTER TABLE snapshot_rows RENAME TO snapshot_rows_legacy;
ALTER INDEX snapshot_rows_household RENAME TO snapshot_rows_legacy_household;
ALTER TABLE snapshot_rows_legacy RENAME CONSTRAINT snapshot_rows_pkey TO snapshot_rows_legacy_pkey;
-- Records that older snapshots hold but the registry kept no version of (changed
-- before versions were kept) become versions of their own, numbered below zero.
INSERT INTO registry_versions (household_id, version, region_code, valid_from, household, digest)
SELECT household_id, -row_number() OVER (ORDER BY determined_at, household_id), region_code, determined_at, household, digest
FROM (SELECT DISTINCT ON (l.household_id, coalesce(l.content, sha256(l.household)))
             l.household_id, l.region_code, s.determined_at, l.household, coalesce(l.content, sha256(l.household)) AS digest
      FROM snapshot_rows_legacy l JOIN snapshots s USING (snapshot_id)
      WHERE NOT EXISTS (SELECT 1 FROM registry_versions v
                        WHERE v.household_id = l.household_id AND v.digest = coalesce(l.content, sha256(l.household)))
      ORDER BY l.household_id, coalesce(l.content, sha256(l.household)), s.determined_at) x;
CREATE TABLE snapshot_rows (
    snapshot_id UUID NOT NULL,
    national_rank BIGINT NOT NULL,
    household_id UUID NOT NULL,
    version BIGINT NOT NULL,
    region_code TEXT NOT NULL,
    score DOUBLE PRECISION NOT NULL,
    decile SMALLINT NOT NULL,
    province_decile SMALLINT NOT NULL
) PARTITION BY LIST (snapshot_id);
CREATE INDEX snapshot_rows_by_rank ON snapshot_rows (national_rank);
CREATE INDEX snapshot_rows_by_household ON snapshot_rows (household_id);
DO $$
DECLARE s uuid;
BEGIN
  FOR s IN SELECT DISTINCT snapshot_id FROM snapshot_rows_legacy LOOP
    EXECUTE format('CREATE TABLE %I PARTITION OF snapshot_rows FOR VALUES IN (%L)',
                   'snapshot_rows_' || replace(s::text, '-', ''), s);
  END LOOP;
END $$;
INSERT INTO snapshot_rows (snapshot_id, national_rank, household_id, version, region_code, score, decile, province_decile)
SELECT l.snapshot_id, l.national_rank, l.household_id,
       (SELECT max(v.version) FROM registry_versions v
        WHERE v.household_id = l.household_id AND v.digest = coalesce(l.content, sha256(l.household))),
       l.region_code, l.score, l.decile, coalesce(l.province_decile, 0)
FROM snapshot_rows_legacy l;
DROP TABLE snapshot_rows_legacy;
"#,
            },
            SqlMigration {
                name: "m0006_snapshot_audit_checkpoint",
                sql: r#"
-- The audit log's signed head as it stood when the month was determined, published
-- with the month.
ALTER TABLE snapshots ADD COLUMN audit_tree_size BIGINT, ADD COLUMN audit_root BYTEA;
"#,
            },
        ])
    }
}

pub async fn start(ctx: Context, listener: tokio::net::TcpListener) -> anyhow::Result<()> {
    let consumer = ctx
        .spawn_consumer(
            &[events::HOUSEHOLD_ACCEPTED, events::HOUSEHOLD_REMOVED],
            Accepted,
        )
        .await?;
    let backfilled = backfill_inputs(&ctx.db).await?;
    if backfilled > 0 {
        tracing::info!(
            households = backfilled,
            "welfare model inputs computed for the registry"
        );
    }
    let lease = crate::singleton::LeaseLock::in_cluster().await?;
    if lease.is_some() {
        tracing::info!("in a cluster: determinations take the dtks-determination Lease");
    }
    let model = std::sync::Arc::new(load_model()?);
    tracing::info!(version = %model.version, provinces = model.provinces.len(), "welfare model loaded");
    let service = DeterminationServiceServer::new(Api {
        db: ctx.db.clone(),
        outbox: ctx.outbox.clone(),
        model,
        lease: lease.map(std::sync::Arc::new),
        fault: Fault::from_env(),
    })
    .max_decoding_message_size(grpc::MAX_MESSAGE_BYTES)
    .max_encoding_message_size(grpc::MAX_SEND_BYTES);
    ctx.serve(listener, service, Some(consumer)).await
}

/// Takes accepted households into the master registry.
struct Accepted;

impl EventHandler for Accepted {
    async fn handle(
        &self,
        txn: &DatabaseTransaction,
        envelope: &Envelope,
    ) -> Result<(), HandlerError> {
        let at = envelope
            .occurred_at
            .as_ref()
            .and_then(|t| chrono::DateTime::from_timestamp(t.seconds, t.nanos.max(0) as u32))
            .unwrap_or_else(dtks_platform::clock::now);
        if envelope.r#type == events::HOUSEHOLD_REMOVED {
            let removed: ev::HouseholdRemoved = events::payload(envelope)?;
            let id = uuid::Uuid::parse_str(&removed.household_id)
                .map_err(|e| HandlerError::Permanent(e.to_string()))?;
            txn.execute_raw(stmt(
                "WITH r AS (
                     UPDATE registry_households SET removed_at = $3, removal_reason = $2, change_seq = nextval('registry_change_seq')
                     WHERE household_id = $1 AND removed_at IS NULL
                     RETURNING household_id, change_seq, region_code)
                 INSERT INTO registry_versions (household_id, version, region_code, valid_from, household, removal_reason)
                 SELECT household_id, change_seq, region_code, $3, NULL, $2 FROM r",
                [id.into(), removed.reason.into(), at.into()],
            ))
            .await?;
            return Ok(());
        }
        let accepted: ev::HouseholdAccepted = events::payload(envelope)?;
        let id = uuid::Uuid::parse_str(&accepted.household_id)
            .map_err(|e| HandlerError::Permanent(e.to_string()))?;
        let household = accepted.household.unwrap_or_default();
        let persons: usize = household.families.iter().map(|f| f.members.len()).sum();
        let inputs = model_inputs(&household, at.date_naive())
            .map_err(|e| HandlerError::Permanent(format!("household {id}: {e}")))?;
        let bytes = household.encode_to_vec();
        let digest = Sha256::digest(&bytes).to_vec();
        txn.execute_raw(stmt(
            "WITH h AS (
                 INSERT INTO registry_households (household_id, region_code, persons, change_seq, verified_at, digest, inputs)
                 VALUES ($1, $2, $4, nextval('registry_change_seq'), $5, $6, $7)
                 ON CONFLICT (household_id) DO UPDATE SET region_code = EXCLUDED.region_code, persons = EXCLUDED.persons,
                     change_seq = EXCLUDED.change_seq, verified_at = EXCLUDED.verified_at, digest = EXCLUDED.digest,
                     inputs = EXCLUDED.inputs, removed_at = NULL, removal_reason = NULL
                 RETURNING household_id, change_seq, region_code)
             INSERT INTO registry_versions (household_id, version, region_code, valid_from, household, digest)
             SELECT household_id, change_seq, region_code, $5, $3, $6 FROM h",
            [id.into(), envelope.region_code.clone().into(), bytes.into(), (persons as i32).into(), at.into(), digest.into(), inputs.into()],
        ))
        .await?;
        Ok(())
    }
}

/// The welfare model's stored inputs of a registry household.
pub fn model_inputs(household: &pb::Household, on: chrono::NaiveDate) -> Result<Vec<u8>, String> {
    let household = convert::household_from_proto(household, on)
        .map_err(|v| format!("the registry's record is not a valid household: {v}"))?;
    Ok(dtks_domain::pmt::Inputs::of(&household).encode())
}

/// Computes the model's inputs of every current household that has none (rows older
/// than them) or has them in an older format, a few thousand at a time.
async fn backfill_inputs(db: &DatabaseConnection) -> anyhow::Result<u64> {
    let today = dtks_platform::clock::today();
    let mut done = 0u64;
    loop {
        let rows = db
            .query_all_raw(stmt(
                "SELECT h.household_id, v.household FROM registry_households h
                 JOIN registry_versions v ON v.household_id = h.household_id AND v.version = h.change_seq
                 WHERE h.removed_at IS NULL AND (h.inputs IS NULL OR (length(h.inputs) > 0 AND get_byte(h.inputs, 0) <> $1))
                 LIMIT 5000",
                [i32::from(dtks_domain::pmt::Inputs::FORMAT).into()],
            ))
            .await?;
        if rows.is_empty() {
            return Ok(done);
        }
        let (mut ids, mut inputs) = (Vec::new(), Vec::new());
        for r in &rows {
            let id: uuid::Uuid = r.try_get("", "household_id")?;
            let bytes: Option<Vec<u8>> = r.try_get("", "household")?;
            let household = pb::Household::decode(bytes.unwrap_or_default().as_slice())?;
            // A record that cannot be scored keeps empty inputs: determinations refuse
            // to run until it is corrected, as they did before inputs were stored.
            inputs.push(model_inputs(&household, today).unwrap_or_else(|e| {
                tracing::error!(household_id = %id, error = %e, "registry household cannot be scored");
                Vec::new()
            }));
            ids.push(id);
        }
        done += ids.len() as u64;
        db.execute_raw(stmt(
            "UPDATE registry_households h SET inputs = u.inputs
             FROM unnest($1::uuid[], $2::bytea[]) AS u (household_id, inputs) WHERE h.household_id = u.household_id",
            [ids.into(), inputs.into()],
        ))
        .await?;
    }
}

/// How long each phase of a run took.
struct Phases(Vec<(&'static str, f64)>, std::time::Instant);

impl Phases {
    fn start() -> Self {
        Self(Vec::new(), std::time::Instant::now())
    }

    fn mark(&mut self, phase: &'static str) {
        let now = std::time::Instant::now();
        self.0.push((phase, (now - self.1).as_secs_f64()));
        self.1 = now;
    }
}

/// The welfare model shipped with the service (`pmt-model.json`).
const DEFAULT_MODEL: &str = include_str!("../pmt-model.json");

/// The welfare model: the file named by `DTKS_DETERMINATION_MODEL` (a ministry's own
/// estimate), or the one shipped. A file that does not parse stops the service.
fn load_model() -> anyhow::Result<dtks_domain::pmt::Model> {
    let (text, source) = match std::env::var("DTKS_DETERMINATION_MODEL") {
        Ok(path) if !path.is_empty() => (std::fs::read_to_string(&path)?, path),
        _ => (
            DEFAULT_MODEL.to_owned(),
            "pmt-model.json (shipped)".to_owned(),
        ),
    };
    dtks_domain::pmt::Model::from_json(&text)
        .map_err(|e| anyhow::anyhow!("welfare model {source}: {e}"))
}

struct Api {
    db: DatabaseConnection,
    outbox: outbox::OutboxSignal,
    model: std::sync::Arc<dtks_domain::pmt::Model>,
    /// In a cluster, the Lease a run takes before anything else.
    lease: Option<std::sync::Arc<crate::singleton::LeaseLock>>,
    fault: Fault,
}

/// Faults for the tests of the singleton and of a crashed run
/// (`DTKS_DETERMINATION_FAULT`): `pause` holds every run 3 s inside its transaction;
/// `crash` stops the process after the snapshot's rows are written, before the commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    None,
    Pause,
    Crash,
}

impl Fault {
    fn from_env() -> Self {
        match std::env::var("DTKS_DETERMINATION_FAULT").as_deref() {
            Ok("pause") => Fault::Pause,
            Ok("crash") => Fault::Crash,
            _ => Fault::None,
        }
    }
}

/// Only one determination at a time (a PostgreSQL advisory lock held by the transaction).
const DETERMINATION_LOCK: i64 = 0x4445_5445; // "DETE"

fn row_snapshot(r: &sea_orm::QueryResult) -> Result<Snapshot, Status> {
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
async fn standing_of(conn: &impl ConnectionTrait, snap: &Snapshot) -> Result<uuid::Uuid, Status> {
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

const SNAPSHOT_COLUMNS: &str = "snapshot_id, year, month, households, persons, model_version, input_watermark, content_hash, unchanged,
    stands_from_year, stands_from_month, added, removed, changed, decile_moves, determined_at, audit_tree_size, audit_root";

/// Determination's audit checkpoint of `size` leaves headed by `root`.
fn checkpoint(size: i64, root: Vec<u8>) -> Option<pb::AuditCheckpoint> {
    let root: [u8; 32] = root.try_into().ok()?;
    let size = u64::try_from(size).ok()?;
    Some(pb::AuditCheckpoint {
        service: "determination".into(),
        tree_size: size,
        root: root.to_vec(),
        text: dtks_platform::audit::checkpoint_text(size, &root),
    })
}

impl Api {
    async fn snapshot(
        &self,
        conn: &impl ConnectionTrait,
        (year, month): (i32, i32),
    ) -> Result<Option<Snapshot>, Status> {
        conn.query_one_raw(stmt(
            &format!("SELECT {SNAPSHOT_COLUMNS} FROM snapshots WHERE year = $1 AND month = $2"),
            [year.into(), month.into()],
        ))
        .await
        .map_err(grpc::internal)?
        .map(|r| row_snapshot(&r))
        .transpose()
    }

    /// The snapshot whose rows stand for `period` (an unchanged month points back).
    async fn standing_snapshot_id(&self, period: (i32, i32)) -> Result<uuid::Uuid, Status> {
        let snap = self
            .snapshot(&self.db, period)
            .await?
            .ok_or_else(|| Status::not_found("period not determined"))?;
        standing_of(&self.db, &snap).await
    }

    /// One determination under the cluster's Lease (when there is one), renewed while
    /// the run lasts and given back after it.
    async fn determine(&self, period: (i32, i32)) -> Result<Snapshot, Status> {
        let Some(lease) = self.lease.clone() else {
            return self.determine_locked(period).await;
        };
        let now = || k8s_openapi::jiff::Timestamp::now();
        match lease.acquire(now()).await.map_err(grpc::internal)? {
            crate::singleton::Taken::Held => {}
            crate::singleton::Taken::HeldBy(holder) => {
                return Err(Status::aborted(format!(
                    "another determination holds the lease ({holder}); try again when it finishes"
                )));
            }
        }
        let renewer = {
            let lease = lease.clone();
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(std::time::Duration::from_secs(60)).await;
                    if let Err(error) = lease.acquire(now()).await {
                        tracing::warn!(%error, "renewing the determination lease failed");
                    }
                }
            })
        };
        let result = self.determine_locked(period).await;
        renewer.abort();
        if let Err(error) = lease.release().await {
            tracing::warn!(%error, "giving back the determination lease failed; it expires on its own");
        }
        result
    }

    async fn determine_locked(&self, period: (i32, i32)) -> Result<Snapshot, Status> {
        let mut txn = self
            .db
            .get_postgres_connection_pool()
            .begin()
            .await
            .map_err(grpc::internal)?;
        // One view of the registry for the whole run: its rows and its watermark agree.
        sqlx::raw_sql("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            .execute(&mut *txn)
            .await
            .map_err(grpc::internal)?;
        let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1)")
            .bind(DETERMINATION_LOCK)
            .fetch_one(&mut *txn)
            .await
            .map_err(grpc::internal)?;
        if !locked {
            return Err(Status::aborted(
                "another determination is running; try again when it finishes",
            ));
        }
        if self.fault == Fault::Pause {
            tokio::time::sleep(std::time::Duration::from_secs(3)).await;
        }
        if let Some(existing) = self.snapshot(&self.db, period).await? {
            return Ok(existing); // snapshots are never rewritten
        }
        let model = &self.model;
        let on = chrono::NaiveDate::from_ymd_opt(period.0, period.1 as u32, 1)
            .ok_or_else(|| grpc::invalid_field("period", "not a month"))?;
        let mut phases = Phases::start();
        let registry = Registry::read(&mut txn).await?;
        let watermark: i64 = sqlx::query_scalar(
            "SELECT coalesce(max(change_seq), 0)::bigint FROM registry_households",
        )
        .fetch_one(&mut *txn)
        .await
        .map_err(grpc::internal)?;
        phases.mark("read");
        let scores = registry.scores(model, on)?;
        phases.mark("score");
        // Poorest first; `scores` are in household id order, so equal scores rank by
        // household id and the ranking is deterministic.
        let order = dtks_domain::ranking::rank(&scores, 2);
        // Deciles within each province too, for reporting.
        let groups: Vec<u32> = registry
            .by_id
            .iter()
            .map(|&i| registry.province_of[registry.rows[i as usize].region as usize])
            .collect();
        let province_deciles = dtks_domain::ranking::group_deciles(&order, &groups);
        let n = order.len();
        phases.mark("rank");
        let mut hasher = Sha256::new();
        hasher.update(model.version.as_bytes());
        let mut per_regency = vec![[0u64; 10]; registry.regencies.len()];
        // Each household's decile, by its place in id order (for the diff).
        let mut deciles = vec![0u8; n];
        for (rank, &position) in order.iter().enumerate() {
            let row = &registry.rows[registry.by_id[position as usize] as usize];
            let decile = dtks_domain::pmt::decile_of_rank(rank, n) as u8;
            deciles[position as usize] = decile;
            let mut item = [0u8; 56];
            item[..16].copy_from_slice(&row.id.to_be_bytes());
            item[16..24].copy_from_slice(&scores[position as usize].to_bits().to_be_bytes());
            item[24..].copy_from_slice(&row.digest);
            hasher.update(item);
            per_regency[registry.regency_of[row.region as usize] as usize]
                [usize::from(decile - 1)] += 1;
        }
        let content_hash = hex::encode(hasher.finalize());
        phases.mark("hash");
        let previous = self
            .db
            .query_one_raw(stmt(&format!("SELECT {SNAPSHOT_COLUMNS} FROM snapshots ORDER BY year DESC, month DESC LIMIT 1"), []))
            .await
            .map_err(grpc::internal)?
            .map(|r| row_snapshot(&r))
            .transpose()?;
        let unchanged = previous
            .as_ref()
            .is_some_and(|p| p.content_hash == content_hash);
        let snapshot_id = uuid::Uuid::now_v7();
        if !unchanged {
            let table = partition(snapshot_id);
            // The table name and ids are ours (a UUID in hex), never the caller's text.
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                "CREATE TABLE {table} (LIKE snapshot_rows)"
            )))
            .execute(&mut *txn)
            .await
            .map_err(grpc::internal)?;
            let mut copy = CopyIn::start(
                &mut txn,
                &format!("{table} (snapshot_id, national_rank, household_id, version, region_code, score, decile, province_decile)"),
            )
            .await
            .map_err(grpc::internal)?;
            for (rank, &position) in order.iter().enumerate() {
                let row = &registry.rows[registry.by_id[position as usize] as usize];
                copy.rows()
                    .row(8)
                    .uuid(snapshot_id)
                    .i64(rank as i64 + 1)
                    .uuid(uuid::Uuid::from_u128(row.id))
                    .i64(row.version)
                    .text(&registry.regions[row.region as usize])
                    .f64(scores[position as usize])
                    .i16(i16::from(deciles[position as usize]))
                    .i16(i16::from(province_deciles[position as usize]));
                copy.flush_when_full().await.map_err(grpc::internal)?;
            }
            copy.finish().await.map_err(grpc::internal)?;
            phases.mark("write");
            // Indexed once, whole, then made the snapshot's partition (the CHECK spares
            // the attach its scan), and its statistics taken at once: without them the
            // planner takes a page of the snapshot stream for a handful of rows and reads
            // everything after the cursor for every page.
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                "SET LOCAL maintenance_work_mem = '1GB';
                 ALTER TABLE {table} ADD CONSTRAINT {table}_snapshot CHECK (snapshot_id = '{snapshot_id}');
                 CREATE INDEX ON {table} (national_rank);
                 CREATE INDEX ON {table} (household_id);
                 ALTER TABLE snapshot_rows ATTACH PARTITION {table} FOR VALUES IN ('{snapshot_id}');
                 ANALYZE {table}"
            )))
            .execute(&mut *txn)
            .await
            .map_err(grpc::internal)?;
            phases.mark("index");
        }
        if self.fault == Fault::Crash {
            tracing::error!("DTKS_DETERMINATION_FAULT=crash: stopping before the commit");
            std::process::abort();
        }
        // The diff against the snapshot that stood last month.
        let diff = match (&previous, unchanged) {
            (_, true) => SnapshotDiff::default(),
            (None, false) => SnapshotDiff {
                added: n as u64,
                ..Default::default()
            },
            (Some(p), false) => {
                let before = standing_of(&self.db, p).await?;
                let before = entries(&mut txn, before).await?;
                let after: Vec<Entry> = registry
                    .by_id
                    .iter()
                    .zip(&deciles)
                    .map(|(&i, &decile)| {
                        let row = &registry.rows[i as usize];
                        Entry {
                            id: row.id,
                            version: row.version,
                            decile,
                        }
                    })
                    .collect();
                diff(&mut txn, &before, &after).await?
            }
        };
        phases.mark("diff");
        let stands_from = match (&previous, unchanged) {
            (Some(p), true) => p.stands_from.unwrap_or_default(),
            _ => pb::Period {
                year: period.0,
                month: period.1,
            },
        };
        // The audit log's newest signed head, published with the month.
        let audit_head: Option<(i64, Vec<u8>)> = sqlx::query_as(
            "SELECT tree_size, root FROM audit_head ORDER BY tree_size DESC LIMIT 1",
        )
        .fetch_optional(&mut *txn)
        .await
        .map_err(grpc::internal)?;
        sqlx::query(
            "INSERT INTO snapshots (snapshot_id, year, month, households, persons, model_version, input_watermark, content_hash, unchanged,
                 stands_from_year, stands_from_month, added, removed, changed, decile_moves, audit_tree_size, audit_root)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)",
        )
        .bind(snapshot_id)
        .bind(period.0)
        .bind(period.1)
        .bind(n as i64)
        .bind(registry.persons)
        .bind(&model.version)
        .bind(watermark)
        .bind(&content_hash)
        .bind(unchanged)
        .bind(stands_from.year)
        .bind(stands_from.month)
        .bind(diff.added as i64)
        .bind(diff.removed as i64)
        .bind(diff.changed as i64)
        .bind(diff.decile_moves as i64)
        .bind(audit_head.as_ref().map(|(size, _)| *size))
        .bind(audit_head.as_ref().map(|(_, root)| root.clone()))
        .execute(&mut *txn)
        .await
        .map_err(grpc::internal)?;
        let published = ev::DeterminationPublished {
            period: Some(pb::Period {
                year: period.0,
                month: period.1,
            }),
            snapshot_id: snapshot_id.to_string(),
            households: n as u64,
            persons: registry.persons as u64,
            content_hash,
            unchanged,
            added: diff.added,
            removed: diff.removed,
            changed: diff.changed,
            deciles: registry
                .regencies
                .iter()
                .zip(per_regency)
                .map(|(region_code, counts)| {
                    let deciles = ev::RegionDeciles {
                        region_code: region_code.clone(),
                        households_per_decile: counts.to_vec(),
                    };
                    (region_code, deciles)
                })
                .collect::<std::collections::BTreeMap<_, _>>()
                .into_values()
                .collect(),
            audit_checkpoint: audit_head.and_then(|(size, root)| checkpoint(size, root)),
        };
        let envelope = events::envelope(
            events::DETERMINATION_PUBLISHED,
            "determination",
            "",
            &published,
        );
        outbox::enqueue_copy(&mut txn, [&envelope])
            .await
            .map_err(grpc::internal)?;
        txn.commit().await.map_err(grpc::internal)?;
        phases.mark("commit");
        self.outbox.wake();
        tracing::info!(households = n, unchanged, timings = ?phases.0, "determination published");
        let mut snapshot = self
            .snapshot(&self.db, period)
            .await?
            .ok_or_else(|| Status::internal("snapshot vanished"))?;
        snapshot.timings = phases
            .0
            .into_iter()
            .map(|(phase, seconds)| PhaseTiming {
                phase: phase.to_owned(),
                seconds,
            })
            .collect();
        Ok(snapshot)
    }
}

/// The partition that holds one snapshot's rows.
fn partition(snapshot_id: uuid::Uuid) -> String {
    format!("snapshot_rows_{}", snapshot_id.simple())
}

/// One current household of the master registry, as a run reads it.
struct Current {
    id: u128,
    version: i64,
    /// Index into [`Registry::regions`].
    region: u32,
    digest: [u8; 32],
    /// Where its model inputs lie in [`Registry::inputs`].
    inputs: (usize, u32),
}

/// The master registry as a run reads it: the current households, their regions named
/// once, and the model's inputs side by side in one buffer.
struct Registry {
    rows: Vec<Current>,
    /// Indices into `rows`, in household id order.
    by_id: Vec<u32>,
    inputs: Vec<u8>,
    regions: Vec<String>,
    /// Per region: its province's group number, and its regency's index in `regencies`.
    province_of: Vec<u32>,
    regency_of: Vec<u32>,
    regencies: Vec<String>,
    persons: i64,
}

/// Names each distinct string once, by number.
#[derive(Default)]
struct Names {
    index: std::collections::HashMap<String, u32>,
    names: Vec<String>,
}

impl Names {
    fn of(&mut self, name: &str) -> u32 {
        if let Some(i) = self.index.get(name) {
            return *i;
        }
        let i = self.names.len() as u32;
        self.index.insert(name.to_owned(), i);
        self.names.push(name.to_owned());
        i
    }
}

impl Registry {
    async fn read(conn: &mut sqlx::PgConnection) -> Result<Self, Status> {
        let (mut rows, mut inputs, mut regions, mut persons) =
            (Vec::new(), Vec::new(), Names::default(), 0i64);
        copy_out(
            conn,
            "SELECT household_id, region_code, persons, change_seq, digest, inputs FROM registry_households WHERE removed_at IS NULL",
            |f| {
                let stored = f.bytes(5).unwrap_or_default();
                let digest = f
                    .bytes(4)
                    .and_then(|d| <[u8; 32]>::try_from(d).ok())
                    .unwrap_or_default();
                rows.push(Current {
                    id: f.uuid(0)?.as_u128(),
                    region: regions.of(f.text(1)?),
                    version: f.i64(3)?,
                    digest,
                    inputs: (inputs.len(), stored.len() as u32),
                });
                persons += i64::from(f.i32(2)?);
                inputs.extend_from_slice(stored);
                Ok(())
            },
        )
        .await
        .map_err(grpc::internal)?;
        let mut keys: Vec<(u128, u32)> = rows
            .iter()
            .enumerate()
            .map(|(i, r)| (r.id, i as u32))
            .collect();
        keys.sort_unstable();
        let by_id = keys.into_iter().map(|(_, i)| i).collect();
        let (mut provinces, mut regencies) = (Names::default(), Names::default());
        let (province_of, regency_of) = regions
            .names
            .iter()
            .map(|r| {
                (
                    provinces.of(r.get(..2).unwrap_or_default()),
                    regencies.of(r.get(..5).unwrap_or(r)),
                )
            })
            .unzip();
        Ok(Self {
            rows,
            by_id,
            inputs,
            regions: regions.names,
            province_of,
            regency_of,
            regencies: regencies.names,
            persons,
        })
    }

    /// Every household's score, in household id order, on two threads.
    fn scores(
        &self,
        model: &dtks_domain::pmt::Model,
        on: chrono::NaiveDate,
    ) -> Result<Vec<f64>, Status> {
        let score = |chunk: &[u32]| -> Result<Vec<f64>, Status> {
            chunk
                .iter()
                .map(|&i| {
                    let row = &self.rows[i as usize];
                    let (start, len) = row.inputs;
                    dtks_domain::pmt::Inputs::decode(&self.inputs[start..start + len as usize])
                        .map(|inputs| model.score_inputs(&inputs, on))
                        .map_err(|e| {
                            Status::internal(format!(
                                "registry household {} cannot be scored ({e}); correct its record",
                                uuid::Uuid::from_u128(row.id)
                            ))
                        })
                })
                .collect()
        };
        let half = self.by_id.len().div_ceil(2);
        let (first, second) = self.by_id.split_at(half);
        let (a, b) = std::thread::scope(|s| {
            let other = s.spawn(|| score(second));
            (score(first), other.join())
        });
        let mut scores = a?;
        scores.extend(b.map_err(|_| Status::internal("scoring thread panicked"))??);
        Ok(scores)
    }
}

/// A household in a stored snapshot, as a diff reads it.
#[derive(Debug, Clone, Copy)]
struct Entry {
    id: u128,
    version: i64,
    decile: u8,
}

/// A snapshot's households in id order.
async fn entries(
    conn: &mut sqlx::PgConnection,
    snapshot_id: uuid::Uuid,
) -> Result<Vec<Entry>, Status> {
    let mut out = Vec::new();
    copy_out(
        conn,
        &format!("SELECT household_id, version, decile FROM snapshot_rows WHERE snapshot_id = '{snapshot_id}'"),
        |f| {
            out.push(Entry {
                id: f.uuid(0)?.as_u128(),
                version: f.i64(1)?,
                decile: u8::try_from(f.i16(2)?).unwrap_or_default(),
            });
            Ok(())
        },
    )
    .await
    .map_err(grpc::internal)?;
    out.sort_unstable_by_key(|e| e.id);
    Ok(out)
}

/// Households added, removed, changed (their record differs) and moved to another
/// decile between two snapshots' households, both in id order. A household whose
/// version differs counts as changed only when the records' digests differ too.
async fn diff(
    conn: &mut sqlx::PgConnection,
    before: &[Entry],
    after: &[Entry],
) -> Result<SnapshotDiff, Status> {
    let mut d = SnapshotDiff::default();
    let mut other_version = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < before.len() || j < after.len() {
        match (before.get(i), after.get(j)) {
            (Some(b), Some(a)) if b.id == a.id => {
                if b.version != a.version {
                    other_version.push((*b, *a));
                }
                if b.decile != a.decile {
                    d.decile_moves += 1;
                }
                i += 1;
                j += 1;
            }
            (Some(b), Some(a)) if b.id < a.id => {
                d.removed += 1;
                i += 1;
            }
            (Some(_), None) => {
                d.removed += 1;
                i += 1;
            }
            _ => {
                d.added += 1;
                j += 1;
            }
        }
    }
    for pairs in other_version.chunks(10_000) {
        let ids: Vec<uuid::Uuid> = pairs
            .iter()
            .flat_map(|(b, a)| [uuid::Uuid::from_u128(b.id), uuid::Uuid::from_u128(a.id)])
            .collect();
        let versions: Vec<i64> = pairs
            .iter()
            .flat_map(|(b, a)| [b.version, a.version])
            .collect();
        let digests: std::collections::HashMap<(uuid::Uuid, i64), Option<Vec<u8>>> =
            sqlx::query_as(
                "SELECT v.household_id, v.version, v.digest FROM registry_versions v
                 JOIN unnest($1::uuid[], $2::bigint[]) AS u (household_id, version) USING (household_id, version)",
            )
            .bind(&ids)
            .bind(&versions)
            .fetch_all(&mut *conn)
            .await
            .map_err(grpc::internal)?
            .into_iter()
            .map(|(id, version, digest)| ((id, version), digest))
            .collect();
        let digest = |e: &Entry| {
            digests
                .get(&(uuid::Uuid::from_u128(e.id), e.version))
                .cloned()
                .flatten()
        };
        d.changed += pairs
            .iter()
            .filter(|(b, a)| digest(b).is_none() || digest(b) != digest(a))
            .count() as u64;
    }
    Ok(d)
}

type PageStream =
    std::pin::Pin<Box<dyn futures::Stream<Item = Result<SnapshotPage, Status>> + Send>>;

#[tonic::async_trait]
impl DeterminationService for Api {
    #[tracing::instrument(skip_all)]
    async fn determine(
        &self,
        request: Request<DetermineRequest>,
    ) -> Result<Response<Snapshot>, Status> {
        // Finding 13: 2099-12 was determined. A month is determined once it has begun.
        let period = convert::begun_period_key(
            request.get_ref().period.as_ref(),
            dtks_platform::clock::now(),
        )?;
        Ok(Response::new(self.determine(period).await?))
    }

    #[tracing::instrument(skip_all)]
    async fn get_snapshot(
        &self,
        request: Request<GetSnapshotRequest>,
    ) -> Result<Response<Snapshot>, Status> {
        claims(&request)?;
        let period = convert::period_key(request.get_ref().period.as_ref())?;
        Ok(Response::new(
            self.snapshot(&self.db, period)
                .await?
                .ok_or_else(|| Status::not_found("period not determined"))?,
        ))
    }

    type StreamSnapshotStream = PageStream;

    #[tracing::instrument(skip_all)]
    async fn stream_snapshot(
        &self,
        request: Request<StreamSnapshotRequest>,
    ) -> Result<Response<PageStream>, Status> {
        let who = claims(&request)?.clone();
        let req = request.into_inner();
        let period = convert::period_key(req.period.as_ref())?;
        let region = if req.region_code.is_empty() {
            who.region.clone()
        } else {
            req.region_code.clone()
        };
        who.require_region(if region.is_empty() { "" } else { &region })
            .or_else(|e| {
                if who.region.is_empty() {
                    Ok(())
                } else {
                    Err(e)
                }
            })?;
        let snapshot_id = self.standing_snapshot_id(period).await?;
        // A stream of the month's households with their members: who took which region
        // of which month (and from which rank) is audited before the first page.
        dtks_platform::audit::record(
            &self.db,
            &who,
            "determination.StreamSnapshot",
            &[
                format!("{:04}-{:02}", period.0, period.1),
                if region.is_empty() {
                    "national".to_owned()
                } else {
                    region.clone()
                },
                format!("after_rank={}", req.after_rank),
            ],
        )
        .await
        .map_err(grpc::internal)?;
        let batch = i64::from(req.batch_size.clamp(1, 5000));
        let max_decile = if req.max_decile == 0 {
            10
        } else {
            req.max_decile.min(10)
        } as i16;
        let db = self.db.clone();
        let stream = read_ahead(pages(
            db,
            snapshot_id,
            region,
            max_decile,
            batch,
            req.after_rank as i64,
        ));
        Ok(Response::new(Box::pin(stream)))
    }

    #[tracing::instrument(skip_all)]
    async fn get_household_standing(
        &self,
        request: Request<GetHouseholdStandingRequest>,
    ) -> Result<Response<HouseholdStanding>, Status> {
        let who = claims(&request)?.clone();
        let req = request.into_inner();
        let household_id = uuid::Uuid::parse_str(&req.household_id)
            .map_err(|_| grpc::invalid_field("household_id", "must be a UUID"))?;
        let period = match req.period {
            Some(p) => convert::period_key(Some(&p))?,
            None => {
                let latest = self
                    .db
                    .query_one_raw(stmt(
                        "SELECT year, month FROM snapshots ORDER BY year DESC, month DESC LIMIT 1",
                        [],
                    ))
                    .await
                    .map_err(grpc::internal)?
                    .ok_or_else(|| Status::not_found("no month has been determined"))?;
                (
                    latest.try_get("", "year").map_err(grpc::internal)?,
                    latest.try_get("", "month").map_err(grpc::internal)?,
                )
            }
        };
        let snap = self
            .snapshot(&self.db, period)
            .await?
            .ok_or_else(|| Status::not_found("period not determined"))?;
        let snapshot_id = standing_of(&self.db, &snap).await?;
        let row = self
            .db
            .query_one_raw(stmt(
                "SELECT r.national_rank, r.region_code, r.score, r.decile, r.province_decile, v.household
                 FROM snapshot_rows r JOIN registry_versions v ON v.household_id = r.household_id AND v.version = r.version
                 WHERE r.snapshot_id = $1 AND r.household_id = $2",
                [snapshot_id.into(), household_id.into()],
            ))
            .await
            .map_err(grpc::internal)?
            .ok_or_else(|| Status::not_found("the household is not in this month's DTKS"))?;
        let region: String = row.try_get("", "region_code").map_err(grpc::internal)?;
        who.require_region(&region)?;
        let bytes: Vec<u8> = row.try_get("", "household").map_err(grpc::internal)?;
        let pb_household = pb::Household::decode(bytes.as_slice()).map_err(grpc::internal)?;
        let on = chrono::NaiveDate::from_ymd_opt(period.0, period.1 as u32, 1)
            .ok_or_else(|| grpc::invalid_field("period", "not a month"))?;
        let household = convert::household_from_proto(&pb_household, on)
            .map_err(|v| Status::internal(format!("snapshot holds an invalid household: {v}")))?;
        let model = &self.model;
        if model.version != snap.model_version {
            return Err(Status::failed_precondition(format!(
                "the month was scored with model {}, which this service no longer holds",
                snap.model_version
            )));
        }
        let terms = model
            .explain(&household, on)
            .into_iter()
            .map(|t| ScoreTerm {
                name: t.name.to_owned(),
                value: t.value,
                coefficient: t.coefficient,
                contribution: t.contribution,
            })
            .collect();
        dtks_platform::audit::record(
            &self.db,
            &who,
            "determination.GetHouseholdStanding",
            &[household_id.to_string()],
        )
        .await
        .map_err(grpc::internal)?;
        Ok(Response::new(HouseholdStanding {
            household: Some(RankedHousehold {
                household_id: household_id.to_string(),
                region_code: region,
                score: row.try_get("", "score").map_err(grpc::internal)?,
                national_rank: row
                    .try_get::<i64>("", "national_rank")
                    .map_err(grpc::internal)? as u64,
                decile: u32::try_from(row.try_get::<i16>("", "decile").map_err(grpc::internal)?)
                    .unwrap_or_default(),
                province_decile: row
                    .try_get::<Option<i16>>("", "province_decile")
                    .map_err(grpc::internal)?
                    .and_then(|d| u32::try_from(d).ok())
                    .unwrap_or_default(),
                household: Some(pb_household),
            }),
            model_version: model.version.clone(),
            intercept: model.intercept_for(&household),
            terms,
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn get_registry_household(
        &self,
        request: Request<GetRegistryHouseholdRequest>,
    ) -> Result<Response<RegistryHousehold>, Status> {
        let who = claims(&request)?.clone();
        let req = request.into_inner();
        let household_id = uuid::Uuid::parse_str(&req.household_id)
            .map_err(|_| grpc::invalid_field("household_id", "must be a UUID"))?;
        let as_of = match req.as_of {
            Some(t) => chrono::DateTime::from_timestamp(t.seconds, t.nanos.max(0) as u32)
                .ok_or_else(|| grpc::invalid_field("as_of", "is not a valid time"))?,
            None => dtks_platform::clock::now(),
        };
        let row = self
            .db
            .query_one_raw(stmt(
                "SELECT version, region_code, valid_from, household, removal_reason FROM registry_versions
                 WHERE household_id = $1 AND valid_from <= $2 ORDER BY valid_from DESC, version DESC LIMIT 1",
                [household_id.into(), as_of.into()],
            ))
            .await
            .map_err(grpc::internal)?
            .ok_or_else(|| Status::not_found("the household was not in DTKS at that time"))?;
        let region: String = row.try_get("", "region_code").map_err(grpc::internal)?;
        who.require_region(&region)?;
        let valid_from: chrono::DateTime<chrono::Utc> =
            row.try_get("", "valid_from").map_err(grpc::internal)?;
        let Some(bytes) = row
            .try_get::<Option<Vec<u8>>>("", "household")
            .map_err(grpc::internal)?
        else {
            let reason: Option<String> =
                row.try_get("", "removal_reason").map_err(grpc::internal)?;
            return Err(Status::not_found(format!(
                "the household was removed from DTKS at {valid_from}: {}",
                reason.unwrap_or_default()
            )));
        };
        dtks_platform::audit::record(
            &self.db,
            &who,
            "determination.GetRegistryHousehold",
            &[household_id.to_string()],
        )
        .await
        .map_err(grpc::internal)?;
        Ok(Response::new(RegistryHousehold {
            household_id: household_id.to_string(),
            region_code: region,
            // Versions below zero were recovered from snapshots older than the
            // registry's history; they have no number of their own.
            version: row
                .try_get::<i64>("", "version")
                .map_err(grpc::internal)?
                .max(0) as u64,
            valid_from: Some(prost_types::Timestamp {
                seconds: valid_from.timestamp(),
                nanos: valid_from.timestamp_subsec_nanos() as i32,
            }),
            household: Some(pb::Household::decode(bytes.as_slice()).map_err(grpc::internal)?),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn diff_snapshots(
        &self,
        request: Request<DiffSnapshotsRequest>,
    ) -> Result<Response<SnapshotDiff>, Status> {
        claims(&request)?;
        let req = request.get_ref();
        let from = convert::period_key(req.from.as_ref())
            .map_err(|_| grpc::invalid_field("from", "must be a period"))?;
        let to = convert::period_key(req.to.as_ref())
            .map_err(|_| grpc::invalid_field("to", "must be a period"))?;
        let before = self.standing_snapshot_id(from).await?;
        let after = self.standing_snapshot_id(to).await?;
        if before == after {
            return Ok(Response::new(SnapshotDiff::default()));
        }
        let mut conn = self
            .db
            .get_postgres_connection_pool()
            .acquire()
            .await
            .map_err(grpc::internal)?;
        let old = entries(&mut conn, before).await?;
        let new = entries(&mut conn, after).await?;
        Ok(Response::new(diff(&mut conn, &old, &new).await?))
    }
}

/// Reads `pages` ahead while the previous ones are on their way (two at most); a client
/// that goes away drops the receiver and the reader stops.
fn read_ahead<T: Send + 'static>(
    pages: impl futures::Stream<Item = T> + Send + 'static,
) -> tokio_stream::wrappers::ReceiverStream<T> {
    let (tx, rx) = tokio::sync::mpsc::channel(2);
    tokio::spawn(async move {
        let mut pages = std::pin::pin!(pages);
        while let Some(page) = futures::StreamExt::next(&mut pages).await {
            if tx.send(page).await.is_err() {
                break;
            }
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

/// Pages of a snapshot in rank order, read one batch at a time.
fn pages(
    db: DatabaseConnection,
    snapshot_id: uuid::Uuid,
    region: String,
    max_decile: i16,
    batch: i64,
    after_rank: i64,
) -> impl futures::Stream<Item = Result<SnapshotPage, Status>> + Send {
    futures::stream::unfold(Some(after_rank), move |cursor| {
        let (db, region) = (db.clone(), region.clone());
        async move {
            let after = cursor?;
            let rows = db
                .query_all_raw(stmt(
                    // The page is cut from the snapshot first (an index range on the
                    // rank) and only its rows are joined with their records: joining
                    // first would join every row after the cursor for each page.
                    "SELECT r.national_rank, r.household_id, r.region_code, r.score, r.decile, r.province_decile, v.household
                     FROM (SELECT national_rank, household_id, version, region_code, score, decile, province_decile
                           FROM snapshot_rows
                           WHERE snapshot_id = $1 AND national_rank > $2 AND decile <= $3
                             AND (region_code = $4 OR region_code LIKE $4 || '.%' OR $4 = '')
                           ORDER BY national_rank LIMIT $5) r
                     JOIN registry_versions v ON v.household_id = r.household_id AND v.version = r.version
                     ORDER BY r.national_rank",
                    [snapshot_id.into(), after.into(), max_decile.into(), region.into(), batch.into()],
                ))
                .await;
            let rows = match rows {
                Ok(rows) => rows,
                Err(e) => return Some((Err(grpc::internal(e)), None)),
            };
            if rows.is_empty() {
                return None;
            }
            let mut last = after;
            let mut page = SnapshotPage::default();
            for r in rows {
                last = r.try_get::<i64>("", "national_rank").unwrap_or(last);
                let bytes: Vec<u8> = r.try_get("", "household").unwrap_or_default();
                page.households.push(RankedHousehold {
                    household_id: r
                        .try_get::<uuid::Uuid>("", "household_id")
                        .map(|u| u.to_string())
                        .unwrap_or_default(),
                    region_code: r.try_get("", "region_code").unwrap_or_default(),
                    score: r.try_get("", "score").unwrap_or_default(),
                    national_rank: last as u64,
                    decile: r.try_get::<i16>("", "decile").unwrap_or_default() as u32,
                    province_decile: r
                        .try_get::<Option<i16>>("", "province_decile")
                        .ok()
                        .flatten()
                        .unwrap_or_default() as u32,
                    household: pb::Household::decode(bytes.as_slice()).ok(),
                });
            }
            Some((Ok(page), Some(last)))
        }
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_shipped_model_file_is_the_default_model() {
        assert_eq!(
            dtks_domain::pmt::Model::from_json(super::DEFAULT_MODEL),
            Ok(dtks_domain::pmt::Model::default())
        );
    }
}
