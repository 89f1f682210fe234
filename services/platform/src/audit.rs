//! The audit log of reads and writes of personal data (*jejak audit*), one per service
//! schema: append-only (a trigger refuses UPDATE and DELETE) and hash-chained — each entry
//! commits to the one before it, so an entry altered, removed or moved is found by
//! [`verify`] even by someone able to switch the trigger off. An entry says who (token
//! subject and role), what (the operation), which records (ids, never NIKs or names), why
//! (the request's trace id) and when.
//!
//! Entries are appended inside the transaction of the operation they record, so the
//! record and its audit commit together; appends of one service take turns (a
//! transaction-scoped advisory lock), which keeps the chain a line.

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, DbErr, TransactionSession, TransactionTrait};
use sha2::{Digest, Sha256};

use crate::auth::Claims;
use crate::db::{SqlMigration, stmt};

pub const MIGRATION: SqlMigration = SqlMigration {
    name: "m0000_audit_log",
    sql: r#"
CREATE TABLE audit_log (
    seq BIGINT PRIMARY KEY,
    at TIMESTAMPTZ NOT NULL,
    actor TEXT NOT NULL,
    role TEXT NOT NULL,
    action TEXT NOT NULL,
    records TEXT[] NOT NULL,
    request_id TEXT NOT NULL,
    prev_hash BYTEA NOT NULL,
    hash BYTEA NOT NULL
);
CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'the audit log is append-only';
END $$;
CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();
"#,
};

/// The advisory lock appends take turns under.
const LOCK: i64 = 0x6474_6b73_6175_6469; // "dtksaudi"

/// One entry of the log.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub seq: i64,
    pub at: DateTime<Utc>,
    pub actor: String,
    pub role: String,
    pub action: String,
    pub records: Vec<String>,
    pub request_id: String,
    pub prev_hash: Vec<u8>,
    pub hash: Vec<u8>,
}

fn field(hasher: &mut Sha256, value: &str) {
    hasher.update((value.len() as u64).to_be_bytes());
    hasher.update(value.as_bytes());
}

/// The hash an entry must carry: over the previous hash and every field, each
/// length-prefixed, the time in microseconds.
pub fn hash_of(e: &Entry) -> Vec<u8> {
    let mut hasher = Sha256::new();
    hasher.update(&e.prev_hash);
    hasher.update(e.seq.to_be_bytes());
    hasher.update(e.at.timestamp_micros().to_be_bytes());
    for value in [&e.actor, &e.role, &e.action, &e.request_id] {
        field(&mut hasher, value);
    }
    hasher.update((e.records.len() as u64).to_be_bytes());
    for record in &e.records {
        field(&mut hasher, record);
    }
    hasher.finalize().to_vec()
}

/// The hash before the first entry.
pub const GENESIS: [u8; 32] = [0; 32];

/// The entry after `last` (the log's newest `(seq, hash)`, if any).
fn next(
    last: Option<(i64, Vec<u8>)>,
    actor: &str,
    role: &str,
    action: &str,
    records: &[String],
) -> Entry {
    let (seq, prev_hash) = match last {
        Some((seq, hash)) => (seq + 1, hash),
        None => (1, GENESIS.to_vec()),
    };
    let (request_id, _) = crate::telemetry::current_trace_context();
    // Microseconds: what the database keeps, so the hash verifies against the row.
    let now = crate::clock::now();
    let at = DateTime::from_timestamp_micros(now.timestamp_micros()).unwrap_or(now);
    let mut entry = Entry {
        seq,
        at,
        actor: actor.to_owned(),
        role: role.to_owned(),
        action: action.to_owned(),
        records: records.to_vec(),
        request_id,
        prev_hash,
        hash: Vec::new(),
    };
    entry.hash = hash_of(&entry);
    entry
}

const LAST: &str = "SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1";
const INSERT: &str =
    "INSERT INTO audit_log (seq, at, actor, role, action, records, request_id, prev_hash, hash)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)";

/// Appends one entry — `who` did `action` to `records` — in the caller's transaction
/// (or, given a plain connection, in a transaction of its own: the turn-taking lock is
/// held until the entry commits, so two appends never take the same place).
pub async fn record<C: ConnectionTrait + TransactionTrait>(
    conn: &C,
    who: &Claims,
    action: &str,
    records: &[String],
) -> Result<(), DbErr> {
    record_as(conn, (&who.sub, who.role.as_str()), action, records).await
}

/// [`record`] for `actor` acting as `role` (a service acting on an event, too).
pub async fn record_as<C: ConnectionTrait + TransactionTrait>(
    conn: &C,
    (actor, role): (&str, &str),
    action: &str,
    records: &[String],
) -> Result<(), DbErr> {
    // Inside the caller's transaction this is a savepoint, and the lock lasts until the
    // caller commits; on a plain connection it is the entry's own transaction.
    let conn = conn.begin().await?;
    conn.execute_raw(stmt("SELECT pg_advisory_xact_lock($1)", [LOCK.into()]))
        .await?;
    let last = match conn.query_one_raw(stmt(LAST, [])).await? {
        Some(r) => Some((
            r.try_get::<i64>("", "seq")?,
            r.try_get::<Vec<u8>>("", "hash")?,
        )),
        None => None,
    };
    let e = next(last, actor, role, action, records);
    conn.execute_raw(stmt(
        INSERT,
        [
            e.seq.into(),
            e.at.into(),
            e.actor.into(),
            e.role.into(),
            e.action.into(),
            e.records.into(),
            e.request_id.into(),
            e.prev_hash.into(),
            e.hash.into(),
        ],
    ))
    .await?;
    conn.commit().await
}

/// [`record`] on a `sqlx` transaction (the bulk paths), for `actor` acting as `role`.
pub async fn record_sqlx(
    conn: &mut sqlx::PgConnection,
    (actor, role): (&str, &str),
    action: &str,
    records: &[String],
) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(LOCK)
        .execute(&mut *conn)
        .await?;
    let last: Option<(i64, Vec<u8>)> = sqlx::query_as(LAST).fetch_optional(&mut *conn).await?;
    let e = next(last, actor, role, action, records);
    sqlx::query(INSERT)
        .bind(e.seq)
        .bind(e.at)
        .bind(e.actor)
        .bind(e.role)
        .bind(e.action)
        .bind(e.records)
        .bind(e.request_id)
        .bind(e.prev_hash)
        .bind(e.hash)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// What is wrong with a log, at which entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Break {
    /// An entry's content does not match its hash (altered).
    Altered { seq: i64 },
    /// Entries are missing before this one (removed).
    Missing { expected: i64, found: i64 },
    /// An entry does not follow the one before it (moved, or one removed and the chain
    /// re-stitched).
    Unlinked { seq: i64 },
    /// The log ends before the head the verifier was given (entries removed from the end).
    Truncated { last: i64, head: i64 },
    /// The head the verifier was given is not the log's entry of that number.
    HeadMismatch { seq: i64 },
}

impl std::fmt::Display for Break {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Break::Altered { seq } => write!(
                f,
                "entry {seq} was altered: its content does not match its hash"
            ),
            Break::Missing { expected, found } => {
                write!(f, "entries {expected}..{} are missing", found - 1)
            }
            Break::Unlinked { seq } => write!(
                f,
                "entry {seq} does not follow the entry before it (moved or re-stitched)"
            ),
            Break::Truncated { last, head } => write!(
                f,
                "the log ends at entry {last}, before the known head {head}"
            ),
            Break::HeadMismatch { seq } => write!(f, "entry {seq} is not the known head"),
        }
    }
}

/// Checks a log read in `seq` order: numbered from 1 without gaps, each entry's hash its
/// content's, each linked to the one before. With a known head (an entry's number and
/// hash kept elsewhere), also that the log reaches it unchanged. Answers the log's head.
pub fn verify(
    entries: impl IntoIterator<Item = Entry>,
    known_head: Option<(i64, &[u8])>,
) -> Result<Option<(i64, Vec<u8>)>, Break> {
    let mut previous: Option<Entry> = None;
    let mut head_seen = false;
    for e in entries {
        let expected = previous.as_ref().map_or(1, |p| p.seq + 1);
        if e.seq != expected {
            return Err(if e.seq > expected {
                Break::Missing {
                    expected,
                    found: e.seq,
                }
            } else {
                Break::Unlinked { seq: e.seq }
            });
        }
        if hash_of(&e) != e.hash {
            return Err(Break::Altered { seq: e.seq });
        }
        let link = previous.as_ref().map_or(&GENESIS[..], |p| &p.hash[..]);
        if e.prev_hash != link {
            return Err(Break::Unlinked { seq: e.seq });
        }
        if let Some((seq, hash)) = known_head
            && seq == e.seq
        {
            if hash != e.hash.as_slice() {
                return Err(Break::HeadMismatch { seq });
            }
            head_seen = true;
        }
        previous = Some(e);
    }
    if let Some((seq, _)) = known_head
        && !head_seen
    {
        return Err(Break::Truncated {
            last: previous.as_ref().map_or(0, |p| p.seq),
            head: seq,
        });
    }
    Ok(previous.map(|p| (p.seq, p.hash)))
}

/// Reads a service's whole log (its schema on `conn`), in order.
pub async fn read<C: ConnectionTrait>(conn: &C, schema: &str) -> Result<Vec<Entry>, DbErr> {
    let rows = conn
        .query_all_raw(stmt(
            &format!(
                "SELECT seq, at, actor, role, action, records, request_id, prev_hash, hash FROM {schema}.audit_log ORDER BY seq"
            ),
            [],
        ))
        .await?;
    rows.iter()
        .map(|r| {
            Ok(Entry {
                seq: r.try_get("", "seq")?,
                at: r.try_get("", "at")?,
                actor: r.try_get("", "actor")?,
                role: r.try_get("", "role")?,
                action: r.try_get("", "action")?,
                records: r.try_get("", "records")?,
                request_id: r.try_get("", "request_id")?,
                prev_hash: r.try_get("", "prev_hash")?,
                hash: r.try_get("", "hash")?,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(n: i64) -> Vec<Entry> {
        let mut entries: Vec<Entry> = Vec::new();
        for seq in 1..=n {
            let mut e = Entry {
                seq,
                at: DateTime::from_timestamp_micros(1_790_000_000_000_000 + seq).expect("time"),
                actor: format!("officer-{}", seq % 3),
                role: "regency_officer".into(),
                action: "verivali.GetCase".into(),
                records: vec![format!("case-{seq}")],
                request_id: format!("trace-{seq}"),
                prev_hash: entries.last().map_or(GENESIS.to_vec(), |p| p.hash.clone()),
                hash: Vec::new(),
            };
            e.hash = hash_of(&e);
            entries.push(e);
        }
        entries
    }

    #[test]
    fn an_intact_log_verifies_and_answers_its_head() {
        let log = chain(5);
        let head = (5, log[4].hash.clone());
        assert_eq!(verify(log.clone(), None), Ok(Some(head.clone())));
        assert_eq!(verify(log, Some((5, &head.1))), Ok(Some(head)));
        assert_eq!(verify(Vec::new(), None), Ok(None));
    }

    #[test]
    fn every_kind_of_tampering_is_found() {
        let log = chain(6);
        // Altered: one field of one entry.
        let mut altered = log.clone();
        altered[2].records = vec!["case-999".into()];
        assert_eq!(verify(altered, None), Err(Break::Altered { seq: 3 }));
        // Altered and re-hashed: the next entry no longer follows it.
        let mut rehashed = log.clone();
        rehashed[2].actor = "someone-else".into();
        rehashed[2].hash = hash_of(&rehashed[2]);
        assert_eq!(verify(rehashed, None), Err(Break::Unlinked { seq: 4 }));
        // Removed from the middle.
        let mut removed = log.clone();
        removed.remove(3);
        assert_eq!(
            verify(removed, None),
            Err(Break::Missing {
                expected: 4,
                found: 5
            })
        );
        // Removed and renumbered: the chain does not link.
        let mut renumbered = log.clone();
        renumbered.remove(3);
        for e in renumbered.iter_mut().skip(3) {
            e.seq -= 1;
            e.hash = hash_of(e);
        }
        assert!(matches!(
            verify(renumbered, None),
            Err(Break::Unlinked { seq: 4 })
        ));
        // Reordered.
        let mut reordered = log.clone();
        reordered.swap(1, 2);
        assert!(verify(reordered, None).is_err());
        // Cut off at the end: found against a head kept elsewhere.
        let head = log[5].hash.clone();
        let cut = log[..4].to_vec();
        assert_eq!(
            verify(cut.clone(), None).map(|h| h.map(|(s, _)| s)),
            Ok(Some(4))
        );
        assert_eq!(
            verify(cut, Some((6, &head))),
            Err(Break::Truncated { last: 4, head: 6 })
        );
        // A forged head.
        assert_eq!(
            verify(log, Some((6, &[1u8; 32]))),
            Err(Break::HeadMismatch { seq: 6 })
        );
    }
}
