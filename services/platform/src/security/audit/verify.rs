//! Verifying a log: every leaf its entry's hash, every head signed and consistent with
//! the one before, every leaf included in the newest head, and the log a consistent
//! extension of a checkpoint kept elsewhere.

use ring::signature::{ED25519, UnparsedPublicKey};
use sea_orm::{ConnectionTrait, DbErr};

use crate::db::stmt;
use crate::merkle::{self, Hash, Tree};

use super::append::*;

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
