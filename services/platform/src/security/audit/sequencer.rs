//! The sequencer: queued entries given their leaves and the tree its signed head, one
//! round at a time under a try-lock.

use std::time::Duration;

use base64::Engine;
use chrono::{DateTime, Utc};
use ring::signature::{Ed25519KeyPair, KeyPair};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbErr, TransactionTrait};
use secrecy::ExposeSecret;

use crate::db::stmt;
use crate::merkle::{Frontier, Hash};
use crate::shutdown::Shutdown;

use super::append::*;

/// The key a service signs its tree heads with.
pub struct Signer {
    service: String,
    key: Ed25519KeyPair,
}

impl Signer {
    /// From `DTKS_AUDIT_KEY` (an Ed25519 seed, 32 bytes in base64) or, without it, a
    /// seed derived from the active data key for this service.
    pub fn from_config(config: &crate::config::Config) -> anyhow::Result<Self> {
        let seed: [u8; 32] = match &config.audit_key {
            Some(key) => base64::engine::general_purpose::STANDARD
                .decode(key.expose_secret().trim())
                .ok()
                .and_then(|b| b.try_into().ok())
                .ok_or_else(|| anyhow::anyhow!("DTKS_AUDIT_KEY must be 32 bytes in base64"))?,
            None => {
                crate::sealed::ring()?.derive_seed(&format!("audit signing {}", config.service))
            }
        };
        Self::from_seed(&config.service, &seed)
    }

    pub fn from_seed(service: &str, seed: &[u8; 32]) -> anyhow::Result<Self> {
        let key = Ed25519KeyPair::from_seed_unchecked(seed)
            .map_err(|_| anyhow::anyhow!("the audit signing key was refused"))?;
        Ok(Self {
            service: service.to_owned(),
            key,
        })
    }

    pub fn public_key(&self) -> &[u8] {
        self.key.public_key().as_ref()
    }

    pub(crate) fn sign(&self, size: u64, root: &Hash, at: DateTime<Utc>) -> Vec<u8> {
        let note = checkpoint_note(&self.service, size, root, at);
        self.key.sign(note.as_bytes()).as_ref().to_vec()
    }
}

/// The sequencer's lock (a try-lock: a replica finding it taken leaves the round to the
/// one holding it). Appends never take it.
const SEQUENCER_LOCK: i64 = 0x6474_6b73_7365_7175; // "dtksequ"
/// Entries integrated in one round at most.
const ROUND: i64 = 10_000;

/// One sequencer round: integrates up to [`ROUND`] queued entries and signs the new
/// head. Answers how many were integrated (0 when none were queued, or another replica
/// holds the round).
pub async fn integrate(db: &DatabaseConnection, signer: &Signer) -> Result<u64, DbErr> {
    let txn = db.begin().await?;
    let locked = txn
        .query_one_raw(stmt(
            "SELECT pg_try_advisory_xact_lock($1) AS locked",
            [SEQUENCER_LOCK.into()],
        ))
        .await?
        .map(|r| r.try_get::<bool>("", "locked"))
        .transpose()?
        .unwrap_or(false);
    if !locked {
        return Ok(0);
    }
    let rows = txn
        .query_all_raw(stmt(
            "WITH taken AS (
               DELETE FROM audit_queue WHERE entry_id IN (
                 SELECT entry_id FROM audit_queue ORDER BY entry_id LIMIT $1)
               RETURNING entry_id)
             SELECT e.id, e.at, e.actor, e.role, e.action, e.records, e.request_id
               FROM audit_log e JOIN taken t ON t.entry_id = e.id ORDER BY e.id",
            [ROUND.into()],
        ))
        .await?;
    if rows.is_empty() {
        return Ok(0);
    }
    let mut frontier = match txn
        .query_one_raw(stmt(
            "SELECT tree_size, frontier FROM audit_head ORDER BY tree_size DESC LIMIT 1",
            [],
        ))
        .await?
    {
        None => Frontier::default(),
        Some(r) => {
            let size = r.try_get::<i64>("", "tree_size")?;
            let roots: Vec<Vec<u8>> = r.try_get("", "frontier")?;
            let frontier = Frontier {
                size: u64::try_from(size).map_err(|_| DbErr::Custom("negative tree".into()))?,
                roots: roots
                    .into_iter()
                    .map(|h| h.try_into())
                    .collect::<Result<_, _>>()
                    .map_err(|_| DbErr::Custom("a frontier hash is not 32 bytes".into()))?,
            };
            if !frontier.is_shaped() {
                return Err(DbErr::Custom(
                    "the last tree head's frontier does not fit its size".into(),
                ));
            }
            frontier
        }
    };
    let (mut indexes, mut ids, mut hashes) = (Vec::new(), Vec::new(), Vec::new());
    for r in &rows {
        let e = entry_of(r)?;
        let h = leaf_hash(&e);
        indexes.push(frontier.size as i64);
        ids.push(e.id);
        hashes.push(h.to_vec());
        frontier.push(h);
    }
    txn.execute_raw(stmt(
        "INSERT INTO audit_leaf (leaf_index, entry_id, leaf_hash)
         SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::bytea[])",
        [indexes.into(), ids.into(), hashes.into()],
    ))
    .await?;
    let root = frontier.root();
    let at = now_micros();
    let roots: Vec<Vec<u8>> = frontier.roots.iter().map(|h| h.to_vec()).collect();
    txn.execute_raw(stmt(
        "INSERT INTO audit_head (tree_size, root, at, public_key, signature, frontier)
         VALUES ($1, $2, $3, $4, $5, $6)",
        [
            (frontier.size as i64).into(),
            root.to_vec().into(),
            at.into(),
            signer.public_key().to_vec().into(),
            signer.sign(frontier.size, &root, at).into(),
            roots.into(),
        ],
    ))
    .await?;
    txn.commit().await?;
    Ok(rows.len() as u64)
}

/// Integrates queued entries until shutdown: at once while rounds come back full, else
/// every quarter second.
pub async fn run_sequencer(db: DatabaseConnection, signer: Signer, shutdown: Shutdown) {
    let mut backoff = Duration::from_millis(250);
    while !shutdown.is_triggered() {
        match integrate(&db, &signer).await {
            Ok(n) if n as i64 == ROUND => continue,
            Ok(_) => backoff = Duration::from_millis(250),
            Err(error) => {
                tracing::warn!(%error, "the audit sequencer's round failed; it tries again");
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
        shutdown.sleep(backoff).await;
    }
}
