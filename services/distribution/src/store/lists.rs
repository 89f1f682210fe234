//! Beneficiary lists as stored: the list's row (its regions report as JSON) and, through
//! [`super::entries`], its entries in chunks.

use dtks_eligibility::month::Month;
use dtks_platform::db::stmt;
use dtks_proto::common::v1 as pb;
use dtks_proto::distribution::v1::{BeneficiaryList, ListStatus, RegionSelection};
use sea_orm::{ConnectionTrait, DatabaseConnection, DatabaseTransaction};

use super::entries;
use crate::error::Result;

/// What a new draft list is.
pub struct Draft<'a> {
    pub programme_code: &'a str,
    pub programme_version: i32,
    pub year: i32,
    pub month: i32,
    pub regions: &'a [RegionSelection],
    pub content_hash: String,
}

/// Stores a draft list and its entries (the selected households of `month`, in rank
/// order, each with its head's NIK and name) in one transaction.
pub async fn insert(
    db: &DatabaseConnection,
    draft: Draft<'_>,
    month: &Month,
    selected: &[u32],
) -> Result<uuid::Uuid> {
    let list_id = uuid::Uuid::now_v7();
    let mut txn = db.get_postgres_connection_pool().begin().await?;
    sqlx::query(
        "INSERT INTO lists (list_id, programme_code, programme_version, year, month, recipients, content_hash, status, regions)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(list_id)
    .bind(draft.programme_code)
    .bind(draft.programme_version)
    .bind(draft.year)
    .bind(draft.month)
    .bind(selected.len() as i64)
    .bind(&draft.content_hash)
    .bind(ListStatus::Draft as i16)
    .bind(regions_json(draft.regions))
    .execute(&mut *txn)
    .await?;
    entries::store(&mut txn, list_id, month, selected).await?;
    txn.commit().await?;
    Ok(list_id)
}

pub const COLUMNS: &str = "list_id, programme_code, programme_version, year, month, recipients, content_hash, status, regions, added, removed";

pub fn from_row(r: &sea_orm::QueryResult) -> Result<BeneficiaryList> {
    let regions: serde_json::Value = r.try_get("", "regions")?;
    let regions: Vec<(String, u64, u64, u64, i64)> = serde_json::from_value(regions)?;
    let status: i16 = r.try_get("", "status")?;
    Ok(BeneficiaryList {
        list_id: r.try_get::<uuid::Uuid>("", "list_id")?.to_string(),
        programme_code: r.try_get("", "programme_code")?,
        programme_version: r.try_get::<i32>("", "programme_version")? as u32,
        period: Some(pb::Period {
            year: r.try_get("", "year")?,
            month: r.try_get("", "month")?,
        }),
        status: i32::from(status),
        recipients: r.try_get::<i64>("", "recipients")? as u64,
        content_hash: r.try_get("", "content_hash")?,
        regions: regions
            .into_iter()
            .map(
                |(region_code, eligible, selected, quota, surplus)| RegionSelection {
                    region_code,
                    eligible,
                    selected,
                    quota,
                    surplus,
                },
            )
            .collect(),
        added_since_previous: r.try_get::<i64>("", "added")? as u64,
        removed_since_previous: r.try_get::<i64>("", "removed")? as u64,
    })
}

/// The regions report as stored.
pub fn regions_json(regions: &[RegionSelection]) -> serde_json::Value {
    serde_json::Value::Array(
        regions
            .iter()
            .map(|r| serde_json::json!([r.region_code, r.eligible, r.selected, r.quota, r.surplus]))
            .collect(),
    )
}

/// The list of a programme's version for a month, if it was built.
pub async fn built(
    db: &impl ConnectionTrait,
    programme_code: &str,
    programme_version: i32,
    (year, month): (i32, i32),
) -> Result<Option<BeneficiaryList>> {
    db.query_one_raw(stmt(
        &format!("SELECT {COLUMNS} FROM lists WHERE programme_code = $1 AND programme_version = $2 AND year = $3 AND month = $4"),
        [programme_code.to_owned().into(), programme_version.into(), year.into(), month.into()],
    ))
    .await?
    .map(|r| from_row(&r))
    .transpose()
}

pub use super::by_id;

impl super::Row for BeneficiaryList {
    fn by_id() -> String {
        format!("SELECT {COLUMNS} FROM lists WHERE list_id = $1")
    }
    fn from_row(r: &sea_orm::QueryResult) -> Result<Self> {
        from_row(r)
    }
}

/// The programme's newest fixed list other than `except`.
pub async fn previous_fixed(
    db: &impl ConnectionTrait,
    programme_code: &str,
    except: uuid::Uuid,
) -> Result<Option<uuid::Uuid>> {
    let row = db
        .query_one_raw(stmt(
            "SELECT list_id FROM lists WHERE programme_code = $1 AND status = $2 AND list_id <> $3
             ORDER BY year DESC, month DESC, approved_at DESC LIMIT 1",
            [
                programme_code.to_owned().into(),
                (ListStatus::Fixed as i16).into(),
                except.into(),
            ],
        ))
        .await?;
    Ok(row.map(|r| r.try_get("", "list_id")).transpose()?)
}

/// Fixes a list: approved by `by`, with its difference from the `previous` fixed list.
pub async fn fix(
    txn: &DatabaseTransaction,
    id: uuid::Uuid,
    by: &str,
    (added, removed): (i64, i64),
    previous: Option<uuid::Uuid>,
) -> Result<()> {
    txn.execute_raw(stmt(
        "UPDATE lists SET status = $2, approved_by = $3, approved_at = now(), added = $4, removed = $5, previous_list_id = $6 WHERE list_id = $1",
        [
            id.into(),
            (ListStatus::Fixed as i16).into(),
            by.to_owned().into(),
            added.into(),
            removed.into(),
            previous.into(),
        ],
    ))
    .await?;
    Ok(())
}
