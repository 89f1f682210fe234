use dtks_platform::app::Context;
use dtks_platform::auth::{Role, claims};
use dtks_platform::bus::{EventHandler, HandlerError};
use dtks_platform::db::{Migration, Migrator as MigratorTrait, SqlMigration, sql_migrations, stmt};
use dtks_platform::{convert, events, grpc, outbox};
use dtks_proto::common::v1 as pb;
use dtks_proto::determination::v1::determination_service_server::{
    DeterminationService, DeterminationServiceServer,
};
use dtks_proto::determination::v1::*;
use dtks_proto::events::v1::{self as ev, Envelope};
use prost::Message;
use sea_orm::{ConnectionTrait, DatabaseConnection, DatabaseTransaction, TransactionTrait};
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
            .unwrap_or_else(chrono::Utc::now);
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
        txn.execute_raw(stmt(
            "WITH h AS (
                 INSERT INTO registry_households (household_id, region_code, household, persons, change_seq, verified_at)
                 VALUES ($1, $2, $3, $4, nextval('registry_change_seq'), $5)
                 ON CONFLICT (household_id) DO UPDATE SET region_code = EXCLUDED.region_code, household = EXCLUDED.household,
                     persons = EXCLUDED.persons, change_seq = EXCLUDED.change_seq, verified_at = EXCLUDED.verified_at,
                     removed_at = NULL, removal_reason = NULL
                 RETURNING household_id, change_seq, region_code, household)
             INSERT INTO registry_versions (household_id, version, region_code, valid_from, household)
             SELECT household_id, change_seq, region_code, $5, household FROM h",
            [id.into(), envelope.region_code.clone().into(), household.encode_to_vec().into(), (persons as i32).into(), at.into()],
        ))
        .await?;
        Ok(())
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

struct Ranked {
    household_id: uuid::Uuid,
    region_code: String,
    score: f64,
    household: Vec<u8>,
}

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

/// Households added, removed, changed (their record differs) and moved to another
/// decile between the rows of two snapshots.
async fn diff_rows(
    conn: &impl ConnectionTrait,
    before: uuid::Uuid,
    after: uuid::Uuid,
) -> Result<SnapshotDiff, Status> {
    if before == after {
        return Ok(SnapshotDiff::default());
    }
    let row = conn
        .query_one_raw(stmt(
            "SELECT count(*) FILTER (WHERE o.household_id IS NULL) AS added,
                    count(*) FILTER (WHERE n.household_id IS NULL) AS removed,
                    count(*) FILTER (WHERE o.content IS DISTINCT FROM n.content
                                       AND o.household_id IS NOT NULL AND n.household_id IS NOT NULL) AS changed,
                    count(*) FILTER (WHERE o.decile <> n.decile) AS decile_moves
             FROM (SELECT household_id, content, decile FROM snapshot_rows WHERE snapshot_id = $1) o
             FULL JOIN (SELECT household_id, content, decile FROM snapshot_rows WHERE snapshot_id = $2) n
             USING (household_id)",
            [before.into(), after.into()],
        ))
        .await
        .map_err(grpc::internal)?
        .ok_or_else(|| Status::internal("no diff row"))?;
    let n = |c: &str| {
        row.try_get::<i64>("", c)
            .map(|v| v as u64)
            .map_err(grpc::internal)
    };
    Ok(SnapshotDiff {
        added: n("added")?,
        removed: n("removed")?,
        changed: n("changed")?,
        decile_moves: n("decile_moves")?,
    })
}

const SNAPSHOT_COLUMNS: &str = "snapshot_id, year, month, households, persons, model_version, input_watermark, content_hash, unchanged,
    stands_from_year, stands_from_month, added, removed, changed, decile_moves, determined_at";

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
        let txn = self.db.begin().await.map_err(grpc::internal)?;
        let locked = txn
            .query_one_raw(stmt(
                "SELECT pg_try_advisory_xact_lock($1) AS locked",
                [DETERMINATION_LOCK.into()],
            ))
            .await
            .map_err(grpc::internal)?
            .map(|r| r.try_get::<bool>("", "locked").unwrap_or(false))
            .unwrap_or(false);
        if !locked {
            return Err(Status::aborted(
                "another determination is running; try again when it finishes",
            ));
        }
        if self.fault == Fault::Pause {
            tokio::time::sleep(std::time::Duration::from_secs(3)).await;
        }
        if let Some(existing) = self.snapshot(&txn, period).await? {
            return Ok(existing); // snapshots are never rewritten
        }
        let model = &self.model;
        let on = chrono::NaiveDate::from_ymd_opt(period.0, period.1 as u32, 1)
            .ok_or_else(|| grpc::invalid_field("period", "not a month"))?;
        let mut phases = Phases::start();
        let rows = txn
            .query_all_raw(stmt("SELECT household_id, region_code, household, persons, change_seq FROM registry_households WHERE removed_at IS NULL ORDER BY household_id", []))
            .await
            .map_err(grpc::internal)?;
        phases.mark("read");
        let (mut ranked, mut persons) = (Vec::with_capacity(rows.len()), 0i64);
        // The input watermark counts removals too.
        let watermark: i64 = txn
            .query_one_raw(stmt(
                "SELECT coalesce(max(change_seq), 0)::bigint AS w FROM registry_households",
                [],
            ))
            .await
            .map_err(grpc::internal)?
            .map(|r| r.try_get("", "w"))
            .transpose()
            .map_err(grpc::internal)?
            .unwrap_or(0);
        for r in &rows {
            let bytes: Vec<u8> = r.try_get("", "household").map_err(grpc::internal)?;
            let pb_household = pb::Household::decode(bytes.as_slice()).map_err(grpc::internal)?;
            let household = convert::household_from_proto(&pb_household, on).map_err(|v| {
                Status::internal(format!("registry holds an invalid household: {v}"))
            })?;
            persons += i64::from(r.try_get::<i32>("", "persons").map_err(grpc::internal)?);
            ranked.push(Ranked {
                household_id: r.try_get("", "household_id").map_err(grpc::internal)?,
                region_code: r.try_get("", "region_code").map_err(grpc::internal)?,
                score: model.score(&household, on),
                household: bytes,
            });
        }
        drop(rows);
        phases.mark("score");
        // Poorest first; the households come in id order, so equal scores rank by
        // household id and the ranking is deterministic.
        let scores: Vec<f64> = ranked.iter().map(|r| r.score).collect();
        let order = dtks_domain::ranking::rank(&scores, 2);
        // Deciles within each province too, for reporting.
        let mut provinces = std::collections::HashMap::new();
        let groups: Vec<u32> = ranked
            .iter()
            .map(|r| {
                let next = provinces.len() as u32;
                *provinces
                    .entry(r.region_code.get(..2).unwrap_or_default().to_owned())
                    .or_insert(next)
            })
            .collect();
        let by_position = dtks_domain::ranking::group_deciles(&order, &groups);
        let province_deciles: Vec<i16> = order
            .iter()
            .map(|p| i16::from(by_position[*p as usize]))
            .collect();
        let mut slots: Vec<Option<Ranked>> = ranked.into_iter().map(Some).collect();
        let ranked: Vec<Ranked> = order
            .iter()
            .filter_map(|p| slots[*p as usize].take())
            .collect();
        let n = ranked.len();
        phases.mark("rank");
        let mut hasher = Sha256::new();
        hasher.update(model.version.as_bytes());
        let mut deciles = std::collections::BTreeMap::<String, Vec<u64>>::new();
        let mut digests = Vec::with_capacity(n);
        for (rank, r) in ranked.iter().enumerate() {
            let decile = dtks_domain::pmt::decile_of_rank(rank, n);
            let digest = Sha256::digest(&r.household).to_vec();
            hasher.update(r.household_id.as_bytes());
            hasher.update(r.score.to_bits().to_be_bytes());
            hasher.update(&digest);
            digests.push(digest);
            let regency = r.region_code.get(..5).unwrap_or(&r.region_code).to_owned();
            deciles.entry(regency).or_insert_with(|| vec![0; 10])[(decile - 1) as usize] += 1;
        }
        let content_hash = hex::encode(hasher.finalize());
        phases.mark("hash");
        let previous = txn
            .query_one_raw(stmt(&format!("SELECT {SNAPSHOT_COLUMNS} FROM snapshots ORDER BY year DESC, month DESC LIMIT 1"), []))
            .await
            .map_err(grpc::internal)?
            .map(|r| row_snapshot(&r))
            .transpose()?;
        let unchanged = previous
            .as_ref()
            .is_some_and(|p| p.content_hash == content_hash);
        let snapshot_id = uuid::Uuid::now_v7();
        let stands_from = match (&previous, unchanged) {
            (Some(p), true) => p.stands_from.unwrap_or_default(),
            _ => pb::Period {
                year: period.0,
                month: period.1,
            },
        };
        txn.execute_raw(stmt(
            "INSERT INTO snapshots (snapshot_id, year, month, households, persons, model_version, input_watermark, content_hash, unchanged,
                 stands_from_year, stands_from_month, added, removed, changed, decile_moves)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, 0, 0, 0, 0)",
            [
                snapshot_id.into(), period.0.into(), period.1.into(), (n as i64).into(), persons.into(), model.version.clone().into(),
                watermark.into(), content_hash.clone().into(), unchanged.into(), stands_from.year.into(), stands_from.month.into(),
            ],
        ))
        .await
        .map_err(grpc::internal)?;
        if !unchanged {
            for (chunk_start, chunk) in ranked.chunks(2000).enumerate().map(|(i, c)| (i * 2000, c))
            {
                let ranks: Vec<i64> = (0..chunk.len())
                    .map(|i| (chunk_start + i + 1) as i64)
                    .collect();
                let ids: Vec<uuid::Uuid> = chunk.iter().map(|r| r.household_id).collect();
                let regions: Vec<String> = chunk.iter().map(|r| r.region_code.clone()).collect();
                let scores: Vec<f64> = chunk.iter().map(|r| r.score).collect();
                let decs: Vec<i16> = (0..chunk.len())
                    .map(|i| dtks_domain::pmt::decile_of_rank(chunk_start + i, n) as i16)
                    .collect();
                let blobs: Vec<Vec<u8>> = chunk.iter().map(|r| r.household.clone()).collect();
                let contents: Vec<Vec<u8>> =
                    digests[chunk_start..chunk_start + chunk.len()].to_vec();
                let in_province: Vec<i16> =
                    province_deciles[chunk_start..chunk_start + chunk.len()].to_vec();
                txn.execute_raw(stmt(
                    "INSERT INTO snapshot_rows (snapshot_id, national_rank, household_id, region_code, score, decile, household, content, province_decile)
                     SELECT $1, * FROM unnest($2::bigint[], $3::uuid[], $4::text[], $5::float8[], $6::int2[], $7::bytea[], $8::bytea[], $9::int2[])",
                    [snapshot_id.into(), ranks.into(), ids.into(), regions.into(), scores.into(), decs.into(), blobs.into(), contents.into(), in_province.into()],
                ))
                .await
                .map_err(grpc::internal)?;
            }
        }
        if self.fault == Fault::Crash {
            tracing::error!("DTKS_DETERMINATION_FAULT=crash: stopping before the commit");
            std::process::abort();
        }
        phases.mark("write");
        // The diff against the snapshot that stood last month.
        let diff = match (&previous, unchanged) {
            (_, true) => SnapshotDiff::default(),
            (None, false) => SnapshotDiff {
                added: n as u64,
                ..Default::default()
            },
            (Some(p), false) => {
                let before = standing_of(&txn, p).await?;
                diff_rows(&txn, before, snapshot_id).await?
            }
        };
        txn.execute_raw(stmt(
            "UPDATE snapshots SET added = $2, removed = $3, changed = $4, decile_moves = $5 WHERE snapshot_id = $1",
            [
                snapshot_id.into(),
                (diff.added as i64).into(),
                (diff.removed as i64).into(),
                (diff.changed as i64).into(),
                (diff.decile_moves as i64).into(),
            ],
        ))
        .await
        .map_err(grpc::internal)?;
        phases.mark("diff");
        let published = ev::DeterminationPublished {
            period: Some(pb::Period {
                year: period.0,
                month: period.1,
            }),
            snapshot_id: snapshot_id.to_string(),
            households: n as u64,
            persons: persons as u64,
            content_hash,
            unchanged,
            added: diff.added,
            removed: diff.removed,
            changed: diff.changed,
            deciles: deciles
                .into_iter()
                .map(|(region_code, households_per_decile)| ev::RegionDeciles {
                    region_code,
                    households_per_decile,
                })
                .collect(),
        };
        outbox::enqueue(
            &txn,
            &events::envelope(
                events::DETERMINATION_PUBLISHED,
                "determination",
                "",
                &published,
            ),
        )
        .await
        .map_err(grpc::internal)?;
        let mut snapshot = self
            .snapshot(&txn, period)
            .await?
            .ok_or_else(|| Status::internal("snapshot vanished"))?;
        txn.commit().await.map_err(grpc::internal)?;
        phases.mark("commit");
        self.outbox.wake();
        tracing::info!(households = n, unchanged, timings = ?phases.0, "determination published");
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

type PageStream =
    std::pin::Pin<Box<dyn futures::Stream<Item = Result<SnapshotPage, Status>> + Send>>;

#[tonic::async_trait]
impl DeterminationService for Api {
    #[tracing::instrument(skip_all)]
    async fn determine(
        &self,
        request: Request<DetermineRequest>,
    ) -> Result<Response<Snapshot>, Status> {
        claims(&request)?.require_role(&[Role::PusdatinAdmin, Role::Service])?;
        let period = convert::period_key(request.get_ref().period.as_ref())?;
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
        let batch = i64::from(req.batch_size.clamp(1, 5000));
        let max_decile = if req.max_decile == 0 {
            10
        } else {
            req.max_decile.min(10)
        } as i16;
        let db = self.db.clone();
        let stream = async_stream(
            db,
            snapshot_id,
            region,
            max_decile,
            batch,
            req.after_rank as i64,
        );
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
                "SELECT national_rank, region_code, score, decile, province_decile, household FROM snapshot_rows
                 WHERE snapshot_id = $1 AND household_id = $2",
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
            None => chrono::Utc::now(),
        };
        let row = self
            .db
            .query_one_raw(stmt(
                "SELECT version, region_code, valid_from, household, removal_reason FROM registry_versions
                 WHERE household_id = $1 AND valid_from <= $2 ORDER BY version DESC LIMIT 1",
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
        Ok(Response::new(RegistryHousehold {
            household_id: household_id.to_string(),
            region_code: region,
            version: row.try_get::<i64>("", "version").map_err(grpc::internal)? as u64,
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
        Ok(Response::new(diff_rows(&self.db, before, after).await?))
    }
}

/// Pages of a snapshot in rank order, read lazily one batch at a time.
fn async_stream(
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
                    "SELECT national_rank, household_id, region_code, score, decile, province_decile, household FROM snapshot_rows
                     WHERE snapshot_id = $1 AND national_rank > $2 AND decile <= $3 AND (region_code = $4 OR region_code LIKE $4 || '.%' OR $4 = '')
                     ORDER BY national_rank LIMIT $5",
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
