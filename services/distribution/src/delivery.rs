//! Delivery of a fixed beneficiary list to a downstream bansos system: server-streamed
//! batches in list order, each with a cursor the client resumes from after a broken
//! connection. Every delivery is audited — who, which list, from which cursor — and
//! every batch's rows are counted in the audit before the batch is sent; a delivery that
//! reaches the end of its list is announced as `distribution.delivered`.

use dtks_platform::auth::Claims;

use crate::store::entries;
use dtks_platform::db::stmt;
use dtks_platform::{events, grpc, outbox};
use dtks_proto::distribution::v1::{ListStatus, Recipient, RecipientBatch, StreamListRequest};
use dtks_proto::events::v1 as ev;
use sea_orm::{ConnectionTrait, DatabaseConnection, TransactionTrait};
use tonic::Status;

use crate::Distribution;
use crate::error::Result;

pub const DEFAULT_BATCH: u32 = 1000;
pub const MAX_BATCH: u32 = 5000;

/// A cursor names the last position a client received (`p<position>`).
pub fn parse_cursor(cursor: &str) -> Result<i64> {
    if cursor.is_empty() {
        return Ok(0);
    }
    Ok(cursor
        .strip_prefix('p')
        .and_then(|p| p.parse::<i64>().ok())
        .filter(|p| *p >= 0)
        .ok_or_else(|| grpc::invalid_field("cursor", "is not a cursor this service gave out"))?)
}

/// Where a delivery starts: what it delivers, the position after which it resumes and
/// how many items a batch carries.
pub struct Start {
    pub id: uuid::Uuid,
    pub after: i64,
    pub batch: usize,
}

impl Start {
    /// The start a caller asks for: `id` (the request's field `field`), its cursor, and
    /// its batch size (0 for the default) counted in `unit`.
    pub fn of(field: &str, id: &str, cursor: &str, batch_size: u32, unit: &str) -> Result<Self> {
        let id =
            uuid::Uuid::parse_str(id).map_err(|_| grpc::invalid_field(field, "must be a UUID"))?;
        let after = parse_cursor(cursor)?;
        let batch = match batch_size {
            0 => DEFAULT_BATCH,
            n if n <= MAX_BATCH => n,
            _ => {
                let reason = format!("at most {MAX_BATCH} {unit} a batch");
                return Err(grpc::invalid_field("batch_size", reason).into());
            }
        };
        Ok(Self {
            id,
            after,
            batch: batch as usize,
        })
    }
}

pub fn cursor(position: i64) -> String {
    format!("p{position}")
}

/// The audit of one delivery: opened before the first batch, each batch counted before
/// it is sent, finished (and announced) at the end.
pub struct Audit {
    db: DatabaseConnection,
    signal: outbox::OutboxSignal,
    delivery_id: uuid::Uuid,
    list_id: Option<uuid::Uuid>,
    request_id: Option<uuid::Uuid>,
    recipient: String,
    rows: u64,
}

impl Audit {
    pub async fn open(
        db: &DatabaseConnection,
        signal: &outbox::OutboxSignal,
        who: &Claims,
        (list_id, request_id): (Option<uuid::Uuid>, Option<uuid::Uuid>),
        from_cursor: &str,
    ) -> Result<Self> {
        let delivery_id = uuid::Uuid::now_v7();
        let txn = db.begin().await?;
        txn.execute_raw(stmt(
            "INSERT INTO deliveries (delivery_id, list_id, request_id, recipient, role, from_cursor, rows) VALUES ($1, $2, $3, $4, $5, $6, 0)",
            [
                delivery_id.into(),
                list_id.into(),
                request_id.into(),
                who.sub.clone().into(),
                who.role.as_str().into(),
                from_cursor.into(),
            ],
        ))
        .await?;
        // Heads' NIKs and names leave with a delivery: it is in the hash-chained log too.
        let records: Vec<String> = [Some(delivery_id), list_id, request_id]
            .into_iter()
            .flatten()
            .map(|id| id.to_string())
            .collect();
        let action = if list_id.is_some() {
            "distribution.StreamList"
        } else {
            "distribution.StreamExtract"
        };
        dtks_platform::audit::record(&txn, who, action, &records).await?;
        txn.commit().await?;
        Ok(Self {
            db: db.clone(),
            signal: signal.clone(),
            delivery_id,
            list_id,
            request_id,
            recipient: who.sub.clone(),
            rows: 0,
        })
    }

    /// Counts a batch of `rows` covering positions `from..=to`.
    pub async fn batch(&mut self, from: i64, to: i64, rows: i64) -> Result<()> {
        let txn = self.db.begin().await?;
        txn.execute_raw(stmt(
            "INSERT INTO delivery_batches (delivery_id, from_position, to_position, rows) VALUES ($1, $2, $3, $4)",
            [self.delivery_id.into(), from.into(), to.into(), rows.into()],
        ))
        .await?;
        txn.execute_raw(stmt(
            "UPDATE deliveries SET rows = rows + $2 WHERE delivery_id = $1",
            [self.delivery_id.into(), rows.into()],
        ))
        .await?;
        txn.commit().await?;
        self.rows += rows as u64;
        Ok(())
    }

    /// The delivery reached its end: finished and announced.
    pub async fn finish(&mut self) -> Result<()> {
        let txn = self.db.begin().await?;
        txn.execute_raw(stmt(
            "UPDATE deliveries SET finished_at = now() WHERE delivery_id = $1",
            [self.delivery_id.into()],
        ))
        .await?;
        let id = |u: Option<uuid::Uuid>| u.map(|u| u.to_string()).unwrap_or_default();
        let delivered = ev::Delivered {
            delivery_id: self.delivery_id.to_string(),
            list_id: id(self.list_id),
            request_id: id(self.request_id),
            rows: self.rows,
            recipient: self.recipient.clone(),
        };
        outbox::enqueue(
            &txn,
            &events::envelope(events::DELIVERED, "distribution", "", &delivered),
        )
        .await?;
        txn.commit().await?;
        self.signal.wake();
        Ok(())
    }
}

/// Something that yields a delivery's batches one at a time (`None` at its end).
pub trait Source: Send + 'static {
    fn next(&mut self) -> impl std::future::Future<Output = Result<Option<RecipientBatch>>> + Send;
}

/// The batches of `source` as a response stream: it ends at the source's end or after
/// its first error.
pub fn batches<S: Source>(source: S) -> Batches {
    Box::pin(futures::stream::unfold(Some(source), |state| async move {
        let mut source = state?;
        match source.next().await {
            Ok(Some(batch)) => Some((Ok(batch), Some(source))),
            Ok(None) => None,
            Err(e) => Some((Err(Status::from(e)), None)),
        }
    }))
}

/// One open delivery.
struct Delivery {
    db: DatabaseConnection,
    audit: Audit,
    list_id: uuid::Uuid,
    batch: usize,
    /// The last position sent.
    after: i64,
    /// Entries read from the current chunk and not yet sent, with their positions.
    pending: std::collections::VecDeque<(i64, Recipient)>,
    done: bool,
}

impl Delivery {
    /// Reads the chunk holding the position after `after` into `pending` (from that
    /// position on); false at the end of the list.
    async fn read_chunk(&mut self, after: i64) -> Result<bool> {
        let pool = self.db.get_postgres_connection_pool();
        let Some((first, data)) = entries::chunk_at(pool, self.list_id, after + 1).await? else {
            return Ok(false);
        };
        let entries = entries::decode(&data).map_err(Status::internal)?;
        self.pending.extend(
            entries
                .iter()
                .enumerate()
                .map(|(k, e)| (first + k as i64, e))
                .filter(|(position, _)| *position > after)
                .map(|(position, e)| (position, e.recipient())),
        );
        Ok(!self.pending.is_empty())
    }
}

impl Source for Delivery {
    async fn next(&mut self) -> Result<Option<RecipientBatch>> {
        if self.done {
            return Ok(None);
        }
        let mut batch = RecipientBatch::default();
        let mut last = self.after;
        while batch.recipients.len() < self.batch {
            if self.pending.is_empty() && !self.read_chunk(last).await? {
                break;
            }
            let Some((position, recipient)) = self.pending.pop_front() else {
                break;
            };
            last = position;
            batch.recipients.push(recipient);
        }
        if batch.recipients.is_empty() {
            // The end of the list: the delivery is complete.
            self.audit.finish().await?;
            self.done = true;
            return Ok(None);
        }
        // Audited before it is sent.
        self.audit
            .batch(self.after + 1, last, batch.recipients.len() as i64)
            .await?;
        self.after = last;
        batch.cursor = cursor(last);
        Ok(Some(batch))
    }
}

pub type Batches =
    std::pin::Pin<Box<dyn futures::Stream<Item = Result<RecipientBatch, Status>> + Send>>;

impl Distribution {
    /// Opens the delivery of a fixed list (checked and audited before the first batch).
    pub(crate) async fn stream_list(
        &self,
        who: &Claims,
        req: &StreamListRequest,
    ) -> Result<Batches> {
        let (db, signal) = (&self.db, &self.outbox);
        let start = Start::of(
            "list_id",
            &req.list_id,
            &req.cursor,
            req.batch_size,
            "recipients",
        )?;
        let list_id = start.id;
        let status: i16 = db
            .query_one_raw(stmt(
                "SELECT status FROM lists WHERE list_id = $1",
                [list_id.into()],
            ))
            .await?
            .ok_or_else(|| Status::not_found(format!("no list {list_id}")))?
            .try_get("", "status")?;
        if i32::from(status) != ListStatus::Fixed as i32 {
            return Err(grpc::failed_preconditions(&[(
                "STATE".into(),
                format!("list {list_id}"),
                "the list is a draft; only a fixed (approved) list is delivered".into(),
            )])
            .into());
        }
        let audit = Audit::open(db, signal, who, (Some(list_id), None), &req.cursor).await?;
        Ok(batches(Delivery {
            db: db.clone(),
            audit,
            list_id,
            batch: start.batch,
            after: start.after,
            pending: Default::default(),
            done: false,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_foreign_ones_are_refused() {
        assert_eq!(parse_cursor("").ok(), Some(0));
        assert_eq!(parse_cursor(&cursor(4711)).ok(), Some(4711));
        for bad in ["4711", "p-1", "px", "q12"] {
            assert!(parse_cursor(bad).is_err(), "{bad}");
        }
    }
}
