//! Transactional outbox: a state change and the events it causes commit in one
//! PostgreSQL transaction; the relay publishes committed rows with publisher confirms and
//! only then marks them sent. A crash between publish and mark re-publishes, which the
//! consumers' inbox absorbs (at-least-once delivery, exactly-once effect).

use std::sync::Arc;
use std::time::Duration;

use dtks_proto::events::v1::Envelope;
use prost::Message;
use sea_orm::{ConnectionTrait, DatabaseConnection, DbErr, TransactionTrait};
use tokio::sync::Notify;

use crate::bus::Bus;
use crate::db::stmt;
use crate::shutdown::Shutdown;

/// Writes `envelope` to the outbox inside the caller's transaction.
pub async fn enqueue<C: ConnectionTrait>(conn: &C, envelope: &Envelope) -> Result<(), DbErr> {
    let event_id =
        uuid::Uuid::parse_str(&envelope.event_id).map_err(|e| DbErr::Custom(e.to_string()))?;
    conn.execute_raw(stmt(
        "INSERT INTO outbox (event_id, event_type, envelope) VALUES ($1, $2, $3)",
        [
            event_id.into(),
            envelope.r#type.clone().into(),
            envelope.encode_to_vec().into(),
        ],
    ))
    .await?;
    Ok(())
}

/// Writes many envelopes to the outbox inside the caller's transaction, a few thousand
/// to a statement (a batch command's events).
pub async fn enqueue_many<C: ConnectionTrait>(
    conn: &C,
    envelopes: &[Envelope],
) -> Result<(), DbErr> {
    for chunk in envelopes.chunks(5000) {
        let mut ids = Vec::with_capacity(chunk.len());
        for e in chunk {
            ids.push(uuid::Uuid::parse_str(&e.event_id).map_err(|e| DbErr::Custom(e.to_string()))?);
        }
        let types: Vec<String> = chunk.iter().map(|e| e.r#type.clone()).collect();
        let bodies: Vec<Vec<u8>> = chunk.iter().map(Message::encode_to_vec).collect();
        conn.execute_raw(stmt(
            "INSERT INTO outbox (event_id, event_type, envelope)
             SELECT * FROM unnest($1::uuid[], $2::text[], $3::bytea[])",
            [ids.into(), types.into(), bodies.into()],
        ))
        .await?;
    }
    Ok(())
}

/// Writes many envelopes to the outbox with one binary COPY inside the caller's
/// transaction (the bulk path's counterpart of [`enqueue`]).
pub async fn enqueue_copy<'a>(
    conn: &mut sqlx::PgConnection,
    envelopes: impl IntoIterator<Item = &'a Envelope>,
) -> Result<u64, sqlx::Error> {
    let mut rows = crate::copy::BinaryRows::new();
    for envelope in envelopes {
        let event_id = uuid::Uuid::parse_str(&envelope.event_id)
            .map_err(|e| sqlx::Error::Protocol(e.to_string()))?;
        rows.row(3)
            .uuid(event_id)
            .text(&envelope.r#type)
            .bytea(&envelope.encode_to_vec());
    }
    crate::copy::copy_in(conn, "outbox (event_id, event_type, envelope)", rows).await
}

/// Wakes the relay right after a commit instead of waiting for its next poll.
#[derive(Clone, Default)]
pub struct OutboxSignal(Arc<Notify>);

impl OutboxSignal {
    pub fn wake(&self) {
        self.0.notify_one();
    }
}

const BATCH: i64 = 500;

/// Publishes outbox rows until shutdown. Survives broker and database outages by
/// retrying with backoff.
pub async fn run_relay(db: DatabaseConnection, bus: Bus, signal: OutboxSignal, shutdown: Shutdown) {
    let mut backoff = Duration::from_millis(100);
    let mut publisher = None;
    while !shutdown.is_triggered() {
        if publisher.is_none() {
            match bus.publisher().await {
                Ok(p) => publisher = Some(p),
                Err(error) => {
                    tracing::warn!(%error, "outbox relay cannot open a publisher; retrying");
                    shutdown.sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    continue;
                }
            }
        }
        let Some(p) = publisher.as_ref() else {
            continue;
        };
        match relay_once(&db, p).await {
            Ok(n) => {
                backoff = Duration::from_millis(100);
                if n as i64 == BATCH {
                    continue;
                }
                tokio::select! {
                    _ = signal.0.notified() => {},
                    _ = tokio::time::sleep(Duration::from_millis(250)) => {},
                    _ = shutdown.clone().wait() => {},
                }
            }
            Err(error) => {
                tracing::warn!(%error, "outbox relay failed; retrying");
                publisher = None;
                shutdown.sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// One batch: lock unpublished rows, publish them, wait for every confirm, mark them.
pub async fn relay_once(
    db: &DatabaseConnection,
    publisher: &crate::bus::Publisher,
) -> anyhow::Result<usize> {
    let txn = db.begin().await?;
    let rows = txn
        .query_all_raw(stmt(
            "SELECT id, envelope FROM outbox WHERE published_at IS NULL ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED",
            [BATCH.into()],
        ))
        .await?;
    if rows.is_empty() {
        txn.commit().await?;
        return Ok(0);
    }
    let mut ids = Vec::with_capacity(rows.len());
    let mut envelopes = Vec::with_capacity(rows.len());
    for row in &rows {
        ids.push(row.try_get::<i64>("", "id")?);
        let bytes: Vec<u8> = row.try_get("", "envelope")?;
        envelopes.push(Envelope::decode(bytes.as_slice())?);
    }
    publisher.publish_all(&envelopes).await?;
    txn.execute_raw(stmt(
        "UPDATE outbox SET published_at = now() WHERE id = ANY($1)",
        [ids.into()],
    ))
    .await?;
    txn.commit().await?;
    let metrics = crate::metrics::instruments();
    let now = chrono::Utc::now().timestamp_millis() as f64 / 1000.0;
    for e in &envelopes {
        let made = e
            .occurred_at
            .as_ref()
            .map_or(now, |t| t.seconds as f64 + f64::from(t.nanos) / 1e9);
        let event_type = [opentelemetry::KeyValue::new("event_type", e.r#type.clone())];
        metrics.outbox_published.add(1, &event_type);
        metrics
            .outbox_lag
            .record((now - made).max(0.0), &event_type);
    }
    Ok(rows.len())
}
