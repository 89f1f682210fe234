//! Appending to the log: an entry and its place in the queue in one statement, in the
//! caller's transaction; what a leaf hashes; checkpoints as officers keep them.

use base64::Engine;
use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, DbErr, Value};

use crate::auth::Claims;
use crate::db::stmt;
use crate::merkle::{self, Hash};

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
pub(super) fn now_micros() -> DateTime<Utc> {
    let now = crate::clock::now();
    DateTime::from_timestamp_micros(now.timestamp_micros()).unwrap_or(now)
}

fn append_values(
    actor: &str,
    role: &str,
    action: &str,
    records: &[impl std::fmt::Display],
) -> [Value; 6] {
    let (request_id, _) = crate::telemetry::current_trace_context();
    [
        now_micros().into(),
        actor.into(),
        role.into(),
        action.into(),
        records
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .into(),
        request_id.into(),
    ]
}

/// Appends one entry — `who` did `action` to `records` — in the caller's transaction (or
/// on its own, given a plain connection).
pub async fn record<C: ConnectionTrait>(
    conn: &C,
    who: &Claims,
    action: &str,
    records: &[impl std::fmt::Display],
) -> Result<(), DbErr> {
    record_as(conn, (&who.sub, who.role.as_str()), action, records).await
}

/// [`record`] for `actor` acting as `role` (a service acting on an event, too).
pub async fn record_as<C: ConnectionTrait>(
    conn: &C,
    (actor, role): (&str, &str),
    action: &str,
    records: &[impl std::fmt::Display],
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

/// An entry as a row holds it.
pub(super) fn entry_of(r: &sea_orm::QueryResult) -> Result<Entry, DbErr> {
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
