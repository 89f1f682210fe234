//! The audit log of reads and writes of personal data (*jejak audit*), one per service
//! schema, kept as a transparency log (Certificate Transparency, RFC 9162): an entry
//! says who (token subject and role), what (the operation), which records (ids, never
//! NIKs or names), why (the request's trace id) and when.
//!
//! - **Appends take no lock.** An operation writes its entry, and queues it, in its own
//!   transaction: one statement, so the record and its audit commit together and
//!   operations of one service never wait on each other.
//! - **A sequencer orders them** ([`run_sequencer`], one at a time per schema under a
//!   try-lock, so replicas take over from each other): it takes queued entries, gives
//!   each its place (`audit_leaf`, the leaf hash of its content), extends the Merkle tree
//!   from the frontier kept with the last head, and signs the new tree head (Ed25519)
//!   into `audit_head` — leaves and head in one transaction, so every leaf is under a
//!   signed head.
//! - **Every alteration is found** by [`verify`]: an entry changed (its leaf hash), a
//!   leaf removed, reordered or inserted (the signed heads), a leaf added outside the
//!   sequencer (under no head), an entry never sequenced, a forged head (its signature),
//!   and — against a checkpoint kept elsewhere, such as the one each monthly
//!   determination publishes — history rewritten or cut (consistency proofs). Every leaf
//!   is proven included in the newest head.
//!
//! `audit_log`, `audit_leaf` and `audit_head` refuse UPDATE, DELETE and TRUNCATE (a
//! trigger); the queue is the sequencer's to empty.

use std::time::Duration;

use base64::Engine;
use chrono::{DateTime, Utc};
use ring::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbErr, TransactionTrait, Value};
use secrecy::ExposeSecret;

use crate::auth::Claims;
use crate::db::stmt;
use crate::merkle::{self, Frontier, Hash, Tree};
use crate::shutdown::Shutdown;

/// One entry of the log.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub id: i64,
    pub at: DateTime<Utc>,
    pub actor: String,
    pub role: String,
    pub action: String,
    pub records: Vec<String>,
    pub request_id: String,
}

fn field(out: &mut Vec<u8>, value: &[u8]) {
    out.extend_from_slice(&(value.len() as u64).to_be_bytes());
    out.extend_from_slice(value);
}

/// The entry's leaf hash: `HASH(0x00 || content)`, the content every field
/// length-prefixed, the time in microseconds.
pub fn leaf_hash(e: &Entry) -> Hash {
    let mut data = Vec::with_capacity(128);
    data.extend_from_slice(b"dtks-audit-v2");
    data.extend_from_slice(&e.id.to_be_bytes());
    data.extend_from_slice(&e.at.timestamp_micros().to_be_bytes());
    for value in [&e.actor, &e.role, &e.action, &e.request_id] {
        field(&mut data, value.as_bytes());
    }
    data.extend_from_slice(&(e.records.len() as u64).to_be_bytes());
    for record in &e.records {
        field(&mut data, record.as_bytes());
    }
    merkle::leaf(&data)
}

/// Entry and queue place in one statement: atomic on its own, no lock taken.
const APPEND: &str = "WITH entry AS (
       INSERT INTO audit_log (at, actor, role, action, records, request_id)
       VALUES ($1, $2, $3, $4, $5, $6) RETURNING id)
     INSERT INTO audit_queue (entry_id) SELECT id FROM entry";

/// Now, to the microsecond the database keeps (so that a hash over it verifies against
/// the row).
fn now_micros() -> DateTime<Utc> {
    let now = crate::clock::now();
    DateTime::from_timestamp_micros(now.timestamp_micros()).unwrap_or(now)
}

fn append_values(actor: &str, role: &str, action: &str, records: &[String]) -> [Value; 6] {
    let (request_id, _) = crate::telemetry::current_trace_context();
    [
        now_micros().into(),
        actor.into(),
        role.into(),
        action.into(),
        records.to_vec().into(),
        request_id.into(),
    ]
}

/// Appends one entry — `who` did `action` to `records` — in the caller's transaction (or
/// on its own, given a plain connection).
pub async fn record<C: ConnectionTrait>(
    conn: &C,
    who: &Claims,
    action: &str,
    records: &[String],
) -> Result<(), DbErr> {
    record_as(conn, (&who.sub, who.role.as_str()), action, records).await
}

/// [`record`] for `actor` acting as `role` (a service acting on an event, too).
pub async fn record_as<C: ConnectionTrait>(
    conn: &C,
    (actor, role): (&str, &str),
    action: &str,
    records: &[String],
) -> Result<(), DbErr> {
    conn.execute_raw(stmt(APPEND, append_values(actor, role, action, records)))
        .await?;
    Ok(())
}

/// [`record`] on a `sqlx` transaction (the bulk paths), for `actor` acting as `role`.
pub async fn record_sqlx(
    conn: &mut sqlx::PgConnection,
    (actor, role): (&str, &str),
    action: &str,
    records: &[String],
) -> Result<(), sqlx::Error> {
    let (request_id, _) = crate::telemetry::current_trace_context();
    sqlx::query(APPEND)
        .bind(now_micros())
        .bind(actor)
        .bind(role)
        .bind(action)
        .bind(records)
        .bind(request_id)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// A signed tree head: the log of `service` had `size` leaves headed by `root` at `at`.
#[derive(Debug, Clone, PartialEq)]
pub struct Head {
    pub size: u64,
    pub root: Hash,
    pub at: DateTime<Utc>,
    pub public_key: Vec<u8>,
    pub signature: Vec<u8>,
}

/// What a head's signature covers: the service, the size, the root and the time.
pub fn checkpoint_note(service: &str, size: u64, root: &Hash, at: DateTime<Utc>) -> String {
    format!(
        "dtks audit log {service}\n{size}\n{}\n{}\n",
        base64::engine::general_purpose::STANDARD.encode(root),
        at.timestamp_micros()
    )
}

/// A checkpoint as an officer keeps it: `<size>:<root hex>`.
pub fn checkpoint_text(size: u64, root: &Hash) -> String {
    format!("{size}:{}", hex::encode(root))
}

/// Parses [`checkpoint_text`].
pub fn parse_checkpoint(text: &str) -> anyhow::Result<(u64, Hash)> {
    let (size, root) = text
        .trim()
        .split_once(':')
        .ok_or_else(|| anyhow::anyhow!("a checkpoint is <size>:<root hex>"))?;
    let size = size
        .parse::<u64>()
        .map_err(|_| anyhow::anyhow!("a checkpoint's size is a whole number"))?;
    let root: Hash = hex::decode(root)
        .ok()
        .and_then(|r| r.try_into().ok())
        .ok_or_else(|| anyhow::anyhow!("a checkpoint's root is 64 hex digits"))?;
    Ok((size, root))
}

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

    fn sign(&self, size: u64, root: &Hash, at: DateTime<Utc>) -> Vec<u8> {
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

fn entry_of(r: &sea_orm::QueryResult) -> Result<Entry, DbErr> {
    Ok(Entry {
        id: r.try_get("", "id")?,
        at: r.try_get("", "at")?,
        actor: r.try_get("", "actor")?,
        role: r.try_get("", "role")?,
        action: r.try_get("", "action")?,
        records: r.try_get("", "records")?,
        request_id: r.try_get("", "request_id")?,
    })
}

/// A place in the tree as the database holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct Leaf {
    pub index: i64,
    pub leaf_hash: Vec<u8>,
    /// `None` when the entry the leaf names is gone.
    pub entry: Option<Entry>,
}

/// A service's whole log as read for verification.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Log {
    pub service: String,
    pub leaves: Vec<Leaf>,
    pub heads: Vec<Head>,
    /// Entries written and still queued for the sequencer.
    pub queued: u64,
    /// Entries neither in the tree nor queued: taken out of the queue by hand.
    pub dropped: Vec<i64>,
}

/// What is wrong with a log, where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Break {
    /// An entry's content does not give its leaf hash, or the entry is gone.
    Altered { index: i64 },
    /// Leaves are missing before this one.
    Missing { expected: i64, found: i64 },
    /// A signed head is not the head of the leaves before it: one was altered, removed,
    /// reordered or inserted.
    HeadMismatch { size: u64 },
    /// A head's signature does not verify (or was made with another key than the one
    /// given).
    BadSignature { size: u64 },
    /// A leaf under no signed head: added outside the sequencer.
    Unsigned { index: i64 },
    /// The log ends before a signed head or a kept checkpoint.
    Truncated { size: u64, head: u64 },
    /// The log does not extend a checkpoint kept elsewhere.
    Inconsistent { size: u64 },
    /// A leaf's inclusion proof in the newest head does not verify.
    NotIncluded { index: i64 },
    /// An entry was written but neither sequenced nor queued.
    Dropped { id: i64 },
}

impl std::fmt::Display for Break {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Break::Altered { index } => write!(
                f,
                "leaf {index} was altered: its entry does not give its hash, or is gone"
            ),
            Break::Missing { expected, found } => {
                write!(f, "leaves {expected}..{} are missing", found - 1)
            }
            Break::HeadMismatch { size } => write!(
                f,
                "the first {size} leaves no longer give the signed head of size {size}: \
                 a leaf was altered, removed, reordered or inserted"
            ),
            Break::BadSignature { size } => {
                write!(
                    f,
                    "the head of size {size} does not carry a valid signature"
                )
            }
            Break::Unsigned { index } => write!(
                f,
                "leaf {index} is under no signed head: it was added outside the sequencer"
            ),
            Break::Truncated { size, head } => write!(
                f,
                "the log has {size} leaves, fewer than the head of size {head}"
            ),
            Break::Inconsistent { size } => write!(
                f,
                "the log does not extend the checkpoint of size {size}: history was rewritten"
            ),
            Break::NotIncluded { index } => {
                write!(f, "leaf {index} is not included in the newest head")
            }
            Break::Dropped { id } => write!(
                f,
                "entry {id} was written but is neither in the tree nor queued"
            ),
        }
    }
}

/// What an intact log answers: its size, what waits for the sequencer, its newest head.
#[derive(Debug, Clone, PartialEq)]
pub struct Verified {
    pub leaves: u64,
    pub queued: u64,
    pub head: Option<Head>,
}

/// Checks a log: leaves numbered from 0 without gaps, each leaf its entry's hash, every
/// head signed (by `key` when one is given) and the head of the leaves before it, every
/// leaf under a head and proven included in the newest, consecutive heads consistent,
/// and, given a checkpoint kept elsewhere, the log a consistent extension of it.
pub fn verify(log: &Log, key: Option<&[u8]>, kept: Option<(u64, Hash)>) -> Result<Verified, Break> {
    let mut hashes = Vec::with_capacity(log.leaves.len());
    for (expected, leaf) in log.leaves.iter().enumerate() {
        let expected = expected as i64;
        if leaf.index != expected {
            return Err(Break::Missing {
                expected,
                found: leaf.index,
            });
        }
        let hash = leaf.entry.as_ref().map(leaf_hash);
        if hash.as_ref().map(|h| &h[..]) != Some(&leaf.leaf_hash[..]) {
            return Err(Break::Altered { index: leaf.index });
        }
        hashes.push(hash.expect("checked above"));
    }
    let tree = Tree::new(hashes.clone());
    let size = tree.size();
    let mut previous: Option<&Head> = None;
    for head in &log.heads {
        let signed = key.is_none_or(|k| k == head.public_key)
            && UnparsedPublicKey::new(&ED25519, &head.public_key)
                .verify(
                    checkpoint_note(&log.service, head.size, &head.root, head.at).as_bytes(),
                    &head.signature,
                )
                .is_ok();
        if !signed {
            return Err(Break::BadSignature { size: head.size });
        }
        if head.size > size {
            return Err(Break::Truncated {
                size,
                head: head.size,
            });
        }
        if tree.root(head.size) != head.root {
            return Err(Break::HeadMismatch { size: head.size });
        }
        if let Some(p) = previous {
            let proof = tree.consistency(p.size, head.size);
            if !merkle::verify_consistency(p.size, head.size, &p.root, &head.root, &proof) {
                return Err(Break::HeadMismatch { size: head.size });
            }
        }
        previous = Some(head);
    }
    if let Some((kept_size, kept_root)) = kept {
        if kept_size > size {
            return Err(Break::Truncated {
                size,
                head: kept_size,
            });
        }
        let proof = tree.consistency(kept_size, size);
        if !merkle::verify_consistency(kept_size, size, &kept_root, &tree.root(size), &proof) {
            return Err(Break::Inconsistent { size: kept_size });
        }
    }
    let newest = log.heads.last();
    let signed = newest.map_or(0, |h| h.size);
    if size > signed {
        return Err(Break::Unsigned {
            index: signed as i64,
        });
    }
    if let Some(head) = newest {
        for (index, hash) in hashes.iter().enumerate() {
            let index = index as u64;
            let proof = tree.inclusion(index, head.size);
            if !merkle::verify_inclusion(index, head.size, hash, &proof, &head.root) {
                return Err(Break::NotIncluded {
                    index: index as i64,
                });
            }
        }
    }
    if let Some(&id) = log.dropped.first() {
        return Err(Break::Dropped { id });
    }
    Ok(Verified {
        leaves: size,
        queued: log.queued,
        head: newest.cloned(),
    })
}

/// Reads a service's whole log (its schema on `conn`).
pub async fn read<C: ConnectionTrait>(conn: &C, schema: &str) -> Result<Log, DbErr> {
    let leaves = conn
        .query_all_raw(stmt(
            &format!(
                "SELECT l.leaf_index, l.leaf_hash, e.id, e.at, e.actor, e.role, e.action,
                        e.records, e.request_id
                   FROM {schema}.audit_leaf l LEFT JOIN {schema}.audit_log e ON e.id = l.entry_id
                  ORDER BY l.leaf_index"
            ),
            [],
        ))
        .await?
        .iter()
        .map(|r| {
            let present = r.try_get::<Option<i64>>("", "id")?.is_some();
            Ok(Leaf {
                index: r.try_get("", "leaf_index")?,
                leaf_hash: r.try_get("", "leaf_hash")?,
                entry: if present { Some(entry_of(r)?) } else { None },
            })
        })
        .collect::<Result<Vec<_>, DbErr>>()?;
    let heads = conn
        .query_all_raw(stmt(
            &format!(
                "SELECT tree_size, root, at, public_key, signature FROM {schema}.audit_head
                  ORDER BY tree_size"
            ),
            [],
        ))
        .await?
        .iter()
        .map(|r| {
            let root: Vec<u8> = r.try_get("", "root")?;
            Ok(Head {
                size: r.try_get::<i64>("", "tree_size")?.max(0) as u64,
                root: root.try_into().unwrap_or([0; 32]),
                at: r.try_get("", "at")?,
                public_key: r.try_get("", "public_key")?,
                signature: r.try_get("", "signature")?,
            })
        })
        .collect::<Result<Vec<_>, DbErr>>()?;
    let queued = conn
        .query_one_raw(stmt(
            &format!("SELECT count(*)::bigint AS n FROM {schema}.audit_queue"),
            [],
        ))
        .await?
        .map(|r| r.try_get::<i64>("", "n"))
        .transpose()?
        .unwrap_or(0)
        .max(0) as u64;
    let dropped = conn
        .query_all_raw(stmt(
            &format!(
                "SELECT e.id FROM {schema}.audit_log e
                  WHERE NOT EXISTS (SELECT 1 FROM {schema}.audit_leaf l WHERE l.entry_id = e.id)
                    AND NOT EXISTS (SELECT 1 FROM {schema}.audit_queue q WHERE q.entry_id = e.id)
                  ORDER BY e.id"
            ),
            [],
        ))
        .await?
        .iter()
        .map(|r| r.try_get::<i64>("", "id"))
        .collect::<Result<Vec<_>, DbErr>>()?;
    Ok(Log {
        service: schema.to_owned(),
        leaves,
        heads,
        queued,
        dropped,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SERVICE: &str = "verivali";

    fn entry(id: i64) -> Entry {
        Entry {
            id,
            at: DateTime::from_timestamp_micros(1_790_000_000_000_000 + id).expect("time"),
            actor: format!("officer-{}", id % 3),
            role: "regency_officer".into(),
            action: "verivali.GetCase".into(),
            records: vec![format!("case-{id}")],
            request_id: format!("trace-{id}"),
        }
    }

    fn signer() -> Signer {
        Signer::from_seed(SERVICE, &[7; 32]).expect("a key")
    }

    /// A log of `n` entries sequenced in rounds of 3, each round signing a head.
    fn log(n: i64) -> Log {
        let signer = signer();
        let mut frontier = Frontier::default();
        let mut log = Log {
            service: SERVICE.into(),
            ..Log::default()
        };
        for id in 1..=n {
            let e = entry(id);
            let h = leaf_hash(&e);
            log.leaves.push(Leaf {
                index: id - 1,
                leaf_hash: h.to_vec(),
                entry: Some(e),
            });
            frontier.push(h);
            if id % 3 == 0 || id == n {
                let at = entry(id).at;
                let root = frontier.root();
                log.heads.push(Head {
                    size: frontier.size,
                    root,
                    at,
                    public_key: signer.public_key().to_vec(),
                    signature: signer.sign(frontier.size, &root, at),
                });
            }
        }
        log
    }

    #[test]
    fn an_intact_log_verifies_against_its_key_and_a_kept_checkpoint() {
        let log = log(7);
        let key = signer().public_key().to_vec();
        let kept = (log.heads[0].size, log.heads[0].root);
        let verified = verify(&log, Some(&key), Some(kept)).expect("intact");
        assert_eq!(verified.leaves, 7);
        assert_eq!(verified.head.map(|h| h.size), Some(7));
        assert_eq!(verify(&Log::default(), None, None).map(|v| v.leaves), Ok(0));
        let other = Signer::from_seed(SERVICE, &[8; 32]).expect("a key");
        assert_eq!(
            verify(&log, Some(other.public_key()), None),
            Err(Break::BadSignature { size: 3 })
        );
    }

    #[test]
    fn every_kind_of_tampering_is_found() {
        let intact = log(9);
        // Changed: one field of one entry.
        let mut changed = intact.clone();
        changed.leaves[4].entry.as_mut().expect("entry").records = vec!["case-999".into()];
        assert_eq!(
            verify(&changed, None, None),
            Err(Break::Altered { index: 4 })
        );
        // Changed and its leaf re-hashed: the heads over it no longer hold.
        let mut rehashed = intact.clone();
        rehashed.leaves[4].entry.as_mut().expect("entry").actor = "someone-else".into();
        rehashed.leaves[4].leaf_hash =
            leaf_hash(rehashed.leaves[4].entry.as_ref().expect("entry")).to_vec();
        assert_eq!(
            verify(&rehashed, None, None),
            Err(Break::HeadMismatch { size: 6 })
        );
        // Removed from the middle, and removed with the rest renumbered.
        let mut removed = intact.clone();
        removed.leaves.remove(3);
        assert_eq!(
            verify(&removed, None, None),
            Err(Break::Missing {
                expected: 3,
                found: 4
            })
        );
        for leaf in removed.leaves.iter_mut().skip(3) {
            leaf.index -= 1;
        }
        assert_eq!(
            verify(&removed, None, None),
            Err(Break::HeadMismatch { size: 6 })
        );
        // Reordered.
        let mut reordered = intact.clone();
        let (a, b) = (reordered.leaves[1].clone(), reordered.leaves[2].clone());
        reordered.leaves[1] = Leaf { index: 1, ..b };
        reordered.leaves[2] = Leaf { index: 2, ..a };
        assert_eq!(
            verify(&reordered, None, None),
            Err(Break::HeadMismatch { size: 3 })
        );
        // Inserted in the middle with a correct leaf hash, and at the end.
        let mut inserted = intact.clone();
        let e = entry(100);
        inserted.leaves.insert(
            5,
            Leaf {
                index: 5,
                leaf_hash: leaf_hash(&e).to_vec(),
                entry: Some(e.clone()),
            },
        );
        for leaf in inserted.leaves.iter_mut().skip(6) {
            leaf.index += 1;
        }
        assert_eq!(
            verify(&inserted, None, None),
            Err(Break::HeadMismatch { size: 6 })
        );
        let mut appended = intact.clone();
        appended.leaves.push(Leaf {
            index: 9,
            leaf_hash: leaf_hash(&e).to_vec(),
            entry: Some(e),
        });
        assert_eq!(
            verify(&appended, None, None),
            Err(Break::Unsigned { index: 9 })
        );
        // A forged head: a root its key did not sign.
        let mut forged = intact.clone();
        forged.heads[1].root = [1; 32];
        assert_eq!(
            verify(&forged, None, None),
            Err(Break::BadSignature { size: 6 })
        );
        // History cut and re-signed by someone holding the key: the kept checkpoint
        // finds it, as it finds a log cut short.
        let kept = (intact.heads[2].size, intact.heads[2].root);
        let mut rewritten = log(8);
        rewritten.leaves[7].entry.as_mut().expect("entry").action = "x".into();
        let rewritten = {
            let mut again = Log {
                service: SERVICE.into(),
                ..Log::default()
            };
            let signer = signer();
            let mut frontier = Frontier::default();
            for leaf in rewritten.leaves.iter().take(8) {
                let h = leaf_hash(leaf.entry.as_ref().expect("entry"));
                frontier.push(h);
                again.leaves.push(Leaf {
                    leaf_hash: h.to_vec(),
                    ..leaf.clone()
                });
            }
            let more = entry(50);
            let h = leaf_hash(&more);
            frontier.push(h);
            again.leaves.push(Leaf {
                index: 8,
                leaf_hash: h.to_vec(),
                entry: Some(more),
            });
            let (root, at) = (frontier.root(), entry(9).at);
            again.heads.push(Head {
                size: 9,
                root,
                at,
                public_key: signer.public_key().to_vec(),
                signature: signer.sign(9, &root, at),
            });
            again
        };
        assert!(verify(&rewritten, None, None).is_ok());
        assert_eq!(
            verify(&rewritten, None, Some(kept)),
            Err(Break::Inconsistent { size: 9 })
        );
        let mut cut = intact.clone();
        cut.leaves.truncate(6);
        cut.heads.truncate(2);
        assert!(verify(&cut, None, None).is_ok());
        assert_eq!(
            verify(&cut, None, Some(kept)),
            Err(Break::Truncated { size: 6, head: 9 })
        );
        // An entry taken out of the queue before it was sequenced.
        let mut dropped = intact;
        dropped.dropped.push(12);
        assert_eq!(verify(&dropped, None, None), Err(Break::Dropped { id: 12 }));
    }
}
