//! The monthly determination (*penetapan*): one run at a time, the registry scored and
//! ranked into deciles, the snapshot written with its content hash, diff and audit
//! checkpoint, and `determination.published` sent.

use crate::registry::{Entry, Registry, diff, entries, partition};
use crate::store::{SNAPSHOT_COLUMNS, checkpoint, row_snapshot, standing_of};
use dtks_platform::copy::CopyIn;
use dtks_platform::db::stmt;
use dtks_platform::{events, grpc, outbox};
use dtks_proto::common::v1 as pb;
use dtks_proto::determination::v1::*;
use dtks_proto::events::v1::{self as ev};
use sea_orm::{ConnectionTrait, DatabaseConnection};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// How long each phase of a run took.
pub(crate) struct Phases(Vec<(&'static str, f64)>, std::time::Instant);

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

/// The determination service: its storage, outbox, model, cluster lease and drill.
pub(crate) struct Api {
    pub(crate) db: DatabaseConnection,
    pub(crate) outbox: outbox::OutboxSignal,
    pub(crate) model: std::sync::Arc<dtks_domain::pmt::Model>,
    /// In a cluster, the Lease a run takes before anything else.
    pub(crate) lease: Option<std::sync::Arc<crate::singleton::LeaseLock>>,
    pub(crate) fault: Fault,
}

/// Faults for the tests of the singleton and of a crashed run
/// (`DTKS_DETERMINATION_FAULT`): `pause` holds every run 3 s inside its transaction;
/// `crash` stops the process after the snapshot's rows are written, before the commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fault {
    None,
    Pause,
    Crash,
}

impl Fault {
    pub(crate) fn from_env() -> Self {
        match std::env::var("DTKS_DETERMINATION_FAULT").as_deref() {
            Ok("pause") => Fault::Pause,
            Ok("crash") => Fault::Crash,
            _ => Fault::None,
        }
    }
}

/// Only one determination at a time (a PostgreSQL advisory lock held by the transaction).
pub(crate) const DETERMINATION_LOCK: i64 = 0x4445_5445; // "DETE"

impl Api {
    pub(crate) async fn snapshot(
        &self,
        conn: &impl ConnectionTrait,
        (year, month): (i32, i32),
    ) -> Result<Option<Snapshot>> {
        conn.query_one_raw(stmt(
            &format!("SELECT {SNAPSHOT_COLUMNS} FROM snapshots WHERE year = $1 AND month = $2"),
            [year.into(), month.into()],
        ))
        .await?
        .map(|r| row_snapshot(&r))
        .transpose()
    }

    /// The snapshot whose rows stand for `period` (an unchanged month points back).
    pub(crate) async fn standing_snapshot_id(&self, period: (i32, i32)) -> Result<uuid::Uuid> {
        let snap = self
            .snapshot(&self.db, period)
            .await?
            .ok_or(Error::NotDetermined)?;
        standing_of(&self.db, &snap).await
    }

    /// One determination under the cluster's Lease (when there is one), renewed while
    /// the run lasts and given back after it.
    pub(crate) async fn determine_period(&self, period: (i32, i32)) -> Result<Snapshot> {
        let Some(lease) = self.lease.clone() else {
            return self.determine_locked(period).await;
        };
        let now = || k8s_openapi::jiff::Timestamp::now();
        let taken = lease
            .acquire(now())
            .await
            .map_err(|e| Error::Lease(e.to_string()))?;
        if let crate::singleton::Taken::HeldBy(holder) = taken {
            return Err(Error::Busy(format!(
                "another determination holds the lease ({holder}); try again when it finishes"
            )));
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

    pub(crate) async fn determine_locked(&self, period: (i32, i32)) -> Result<Snapshot> {
        let mut txn = self.db.get_postgres_connection_pool().begin().await?;
        // One view of the registry for the whole run: its rows and its watermark agree.
        sqlx::raw_sql("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            .execute(&mut *txn)
            .await?;
        let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1)")
            .bind(DETERMINATION_LOCK)
            .fetch_one(&mut *txn)
            .await?;
        if !locked {
            return Err(Error::Busy(
                "another determination is running; try again when it finishes".into(),
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
        .await?;
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
            .await?
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
            .await?;
            let mut copy = CopyIn::start(
                &mut txn,
                &format!("{table} (snapshot_id, national_rank, household_id, version, region_code, score, decile, province_decile)"),
            )
            .await?;
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
                copy.flush_when_full().await?;
            }
            copy.finish().await?;
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
            .await?;
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
        .await?;
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
        .await?;
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
        outbox::enqueue_copy(&mut txn, [&envelope]).await?;
        txn.commit().await?;
        phases.mark("commit");
        self.outbox.wake();
        tracing::info!(households = n, unchanged, timings = ?phases.0, "determination published");
        let mut snapshot = self
            .snapshot(&self.db, period)
            .await?
            .ok_or_else(|| dtks_platform::fault::Fault::Other("snapshot vanished".into()))?;
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
