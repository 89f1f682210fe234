//! Data requests as stored: the request's current state, and one history row per act.

use chrono::{DateTime, Utc};
use dtks_platform::auth::Claims;
use dtks_platform::db::stmt;
use dtks_proto::distribution::v1::{DataKind, RequestStatus, RequesterKind};
use sea_orm::{ConnectionTrait, DatabaseTransaction};

use crate::error::Result;

const COLUMNS: &str = "request_id, requester_kind, requester, requested_by, filer, purpose, region_code, data_kinds,
    use_from, use_until, status, decided_by, decision_reason, decided_at, handover_number, handover_date, created_at";

/// A stored request.
#[derive(Debug, Clone)]
pub struct Stored {
    pub request_id: uuid::Uuid,
    pub kind: RequesterKind,
    pub requester: String,
    pub requested_by: String,
    /// [`Claims::identity`] of the officer who filed it.
    pub filer: String,
    pub purpose: String,
    pub region_code: String,
    pub data_kinds: Vec<DataKind>,
    pub use_from: DateTime<Utc>,
    pub use_until: DateTime<Utc>,
    /// As stored; see [`Stored::status_at`].
    pub status: RequestStatus,
    pub decided_by: Option<String>,
    pub decision_reason: Option<String>,
    pub decided_at: Option<DateTime<Utc>>,
    pub handover: Option<(String, chrono::NaiveDate)>,
    pub created_at: DateTime<Utc>,
}

impl Stored {
    /// Whether `who` is the officer who filed it: the same issuer, role, region and
    /// subject, not merely the same subject.
    pub fn filed_by(&self, who: &Claims) -> bool {
        !self.filer.is_empty() && self.filer == who.identity()
    }

    fn read(r: &sea_orm::QueryResult) -> Result<Self> {
        let kind: i16 = r.try_get("", "requester_kind")?;
        let status: i16 = r.try_get("", "status")?;
        let kinds: Vec<i16> = r.try_get("", "data_kinds")?;
        let number: Option<String> = r.try_get("", "handover_number")?;
        let date: Option<chrono::NaiveDate> = r.try_get("", "handover_date")?;
        Ok(Self {
            request_id: r.try_get("", "request_id")?,
            kind: RequesterKind::try_from(i32::from(kind))?,
            requester: r.try_get("", "requester")?,
            requested_by: r.try_get("", "requested_by")?,
            filer: r.try_get("", "filer")?,
            purpose: r.try_get("", "purpose")?,
            region_code: r.try_get("", "region_code")?,
            data_kinds: kinds
                .into_iter()
                .map(|k| DataKind::try_from(i32::from(k)))
                .collect::<Result<_, _>>()?,
            use_from: r.try_get("", "use_from")?,
            use_until: r.try_get("", "use_until")?,
            status: RequestStatus::try_from(i32::from(status))?,
            decided_by: r.try_get("", "decided_by")?,
            decision_reason: r.try_get("", "decision_reason")?,
            decided_at: r.try_get("", "decided_at")?,
            handover: number.zip(date),
            created_at: r.try_get("", "created_at")?,
        })
    }

    /// The status at `now`: an approved request whose period of use has ended is
    /// expired, whether or not anyone has looked since.
    pub fn status_at(&self, now: DateTime<Utc>) -> RequestStatus {
        if self.status == RequestStatus::Approved && now >= self.use_until {
            RequestStatus::Expired
        } else {
            self.status
        }
    }
}

pub async fn history(
    txn: &DatabaseTransaction,
    id: uuid::Uuid,
    who: &Claims,
    action: &str,
    reason: &str,
) -> Result<()> {
    txn.execute_raw(stmt(
        "INSERT INTO data_request_history (request_id, actor, role, action, reason) VALUES ($1, $2, $3, $4, $5)",
        [
            id.into(),
            who.sub.clone().into(),
            who.role.as_str().into(),
            action.into(),
            reason.into(),
        ],
    ))
    .await?;
    Ok(())
}

pub use super::by_id;

impl super::Row for Stored {
    fn by_id() -> String {
        format!("SELECT {COLUMNS} FROM data_requests WHERE request_id = $1")
    }
    fn from_row(r: &sea_orm::QueryResult) -> Result<Self> {
        Stored::read(r)
    }
}

/// A request being filed.
pub struct New<'a> {
    pub id: uuid::Uuid,
    pub kind: RequesterKind,
    pub requester: &'a str,
    pub requested_by: &'a str,
    pub filer: &'a str,
    pub purpose: &'a str,
    pub region_code: &'a str,
    pub kinds: &'a [DataKind],
    pub use_from: DateTime<Utc>,
    pub use_until: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
}

/// Files a request, pending.
pub async fn insert(txn: &DatabaseTransaction, new: &New<'_>) -> Result<()> {
    txn.execute_raw(stmt(
        "INSERT INTO data_requests (request_id, requester_kind, requester, requested_by, filer, purpose, region_code, data_kinds, use_from, use_until, status, created_at)
         VALUES ($1, $2, $3, $4, $12, $5, $6, $7, $8, $9, $10, $11)",
        [
            new.id.into(),
            (new.kind as i16).into(),
            new.requester.to_owned().into(),
            new.requested_by.to_owned().into(),
            new.purpose.to_owned().into(),
            new.region_code.to_owned().into(),
            new.kinds.iter().map(|k| *k as i16).collect::<Vec<i16>>().into(),
            new.use_from.into(),
            new.use_until.into(),
            (RequestStatus::Pending as i16).into(),
            new.created_at.into(),
            new.filer.to_owned().into(),
        ],
    ))
    .await?;
    Ok(())
}

/// Records a decision: the request's new state, who decided, why and when.
pub async fn decide(
    txn: &DatabaseTransaction,
    id: uuid::Uuid,
    to: RequestStatus,
    by: &str,
    reason: &str,
    at: DateTime<Utc>,
) -> Result<()> {
    txn.execute_raw(stmt(
        "UPDATE data_requests SET status = $2, decided_by = $3, decision_reason = $4, decided_at = $5 WHERE request_id = $1",
        [
            id.into(),
            (to as i16).into(),
            by.to_owned().into(),
            (!reason.is_empty()).then(|| reason.to_owned()).into(),
            at.into(),
        ],
    ))
    .await?;
    Ok(())
}

/// Records the handover minutes.
pub async fn handover(
    txn: &DatabaseTransaction,
    id: uuid::Uuid,
    number: &str,
    date: chrono::NaiveDate,
    at: DateTime<Utc>,
) -> Result<()> {
    txn.execute_raw(stmt(
        "UPDATE data_requests SET handover_number = $2, handover_date = $3, handover_at = $4 WHERE request_id = $1",
        [id.into(), number.to_owned().into(), date.into(), at.into()],
    ))
    .await?;
    Ok(())
}
