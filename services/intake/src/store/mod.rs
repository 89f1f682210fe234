//! Every statement of intake's schema: proposals written in batches by COPY
//! ([`write`]), read back one at a time or a page at a time, withdrawn, and moved along
//! as later stages decide. The schema's migrations are `migrations/*.sql`.

mod write;

use dtks_platform::db::stmt;
use dtks_proto::common::v1 as pb;
use dtks_proto::intake::v1::{Minutes, Proposal, ProposalStatus};
use prost::Message;
use sea_orm::{ConnectionTrait, DatabaseConnection, DatabaseTransaction};

use crate::error::Result;
pub use write::{SEALED_HOUSEHOLD, Stored, store};

dtks_platform::sql_migrator![
    "m0001_proposals",
    "m0002_channels_persons_withdrawal",
    "m0003_sealed_names",
];

const SELECT_PROPOSAL: &str = "SELECT proposal_id, channel, kind, change_type, status, region_code, external_reference, idempotency_key, submitted_at, updated_at, submitted_by, reason, status_reason, minutes_number, minutes_date, minutes_attendees, household FROM proposals";

/// One proposal, with its household when asked.
pub async fn load(
    db: &DatabaseConnection,
    id: uuid::Uuid,
    include_household: bool,
) -> Result<Option<Proposal>> {
    let row = db
        .query_one_raw(stmt(
            &format!("{SELECT_PROPOSAL} WHERE proposal_id = $1"),
            [id.into()],
        ))
        .await?;
    row.map(|row| proposal_from_row(&row, include_household))
        .transpose()
}

/// One proposal, locked until `txn` ends (without its household).
pub async fn lock(txn: &DatabaseTransaction, id: uuid::Uuid) -> Result<Option<Proposal>> {
    let row = txn
        .query_one_raw(stmt(
            &format!("{SELECT_PROPOSAL} WHERE proposal_id = $1 FOR UPDATE"),
            [id.into()],
        ))
        .await?;
    row.map(|row| proposal_from_row(&row, false)).transpose()
}

/// What a listing selects; every condition is optional but the page.
#[derive(Debug, Default)]
pub struct Listing {
    /// Only what this citizen submitted.
    pub submitted_by: Option<String>,
    /// A region and everything below it; empty for the whole country.
    pub region: String,
    pub channel: Option<i16>,
    pub kind: Option<i16>,
    pub status: Option<i16>,
    pub submitted_from: Option<chrono::DateTime<chrono::Utc>>,
    pub submitted_before: Option<chrono::DateTime<chrono::Utc>>,
    /// Older than this proposal (ids are time-ordered): the page token.
    pub after: Option<uuid::Uuid>,
    pub limit: u64,
    pub include_household: bool,
}

/// Proposals matching `listing`, newest first, at most `listing.limit`.
pub async fn list(db: &DatabaseConnection, listing: &Listing) -> Result<Vec<Proposal>> {
    let mut sql = format!("{SELECT_PROPOSAL} WHERE true");
    let mut values: Vec<sea_orm::Value> = Vec::new();
    let mut bind = |clause: &str, value: sea_orm::Value| {
        values.push(value);
        sql.push_str(&clause.replace('?', &format!("${}", values.len())));
    };
    if let Some(sub) = &listing.submitted_by {
        bind(" AND submitted_by = ?", sub.clone().into());
    }
    if !listing.region.is_empty() {
        bind(
            " AND (region_code = ? OR region_code LIKE ",
            listing.region.clone().into(),
        );
        bind("?)", format!("{}.%", listing.region).into());
    }
    let columns = [
        ("channel", listing.channel),
        ("kind", listing.kind),
        ("status", listing.status),
    ];
    for (column, value) in columns {
        if let Some(value) = value {
            bind(&format!(" AND {column} = ?"), value.into());
        }
    }
    if let Some(from) = listing.submitted_from {
        bind(" AND submitted_at >= ?", from.into());
    }
    if let Some(before) = listing.submitted_before {
        bind(" AND submitted_at < ?", before.into());
    }
    if let Some(after) = listing.after {
        bind(" AND proposal_id < ?", after.into());
    }
    bind(
        " ORDER BY proposal_id DESC LIMIT ?",
        (listing.limit as i64).into(),
    );
    db.query_all_raw(stmt(&sql, values))
        .await?
        .iter()
        .map(|r| proposal_from_row(r, listing.include_household))
        .collect()
}

/// Marks a locked proposal withdrawn, with the reason given.
pub async fn withdraw(txn: &DatabaseTransaction, id: uuid::Uuid, reason: &str) -> Result<()> {
    txn.execute_raw(stmt(
        "UPDATE proposals SET status = $2, status_reason = $3, updated_at = now() WHERE proposal_id = $1",
        [
            id.into(),
            (ProposalStatus::Withdrawn as i16).into(),
            reason.to_owned().into(),
        ],
    ))
    .await?;
    Ok(())
}

/// Moves a proposal to `status` if it is now in one of `from`.
pub async fn advance(
    txn: &DatabaseTransaction,
    id: uuid::Uuid,
    status: ProposalStatus,
    from: &[ProposalStatus],
) -> Result<(), sea_orm::DbErr> {
    let from: Vec<i16> = from.iter().map(|s| *s as i16).collect();
    txn.execute_raw(stmt(
        "UPDATE proposals SET status = $2, updated_at = now() WHERE proposal_id = $1 AND status = ANY($3)",
        [id.into(), (status as i16).into(), from.into()],
    ))
    .await?;
    Ok(())
}

fn timestamp(t: chrono::DateTime<chrono::Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: t.timestamp_subsec_nanos() as i32,
    }
}

fn proposal_from_row(row: &sea_orm::QueryResult, include_household: bool) -> Result<Proposal> {
    let small = |c: &str| row.try_get::<i16>("", c).map(i32::from);
    let text = |c: &str| {
        row.try_get::<Option<String>>("", c)
            .map(Option::unwrap_or_default)
    };
    let minutes_date: Option<chrono::NaiveDate> = row.try_get("", "minutes_date")?;
    let minutes = match minutes_date {
        Some(d) => {
            use chrono::Datelike;
            Some(Minutes {
                number: text("minutes_number")?,
                date: Some(pb::Date {
                    year: d.year(),
                    month: d.month() as i32,
                    day: d.day() as i32,
                }),
                attendees: row
                    .try_get::<Option<i32>>("", "minutes_attendees")?
                    .unwrap_or_default() as u32,
            })
        }
        None => None,
    };
    let id: uuid::Uuid = row.try_get("", "proposal_id")?;
    let household = if include_household {
        let stored: Vec<u8> = row.try_get("", "household")?;
        let bytes = dtks_platform::sealed::open(SEALED_HOUSEHOLD, &id, &stored)?;
        Some(pb::Household::decode(bytes.as_slice())?)
    } else {
        None
    };
    Ok(Proposal {
        proposal_id: id.to_string(),
        channel: small("channel")?,
        kind: small("kind")?,
        status: small("status")?,
        region_code: text("region_code")?,
        external_reference: text("external_reference")?,
        submitted_at: Some(timestamp(row.try_get("", "submitted_at")?)),
        submitted_by: text("submitted_by")?,
        household,
        change_type: small("change_type")?,
        reason: text("reason")?,
        minutes,
        status_reason: text("status_reason")?,
        updated_at: Some(timestamp(row.try_get("", "updated_at")?)),
        idempotency_key: text("idempotency_key")?,
    })
}
