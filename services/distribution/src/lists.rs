//! Beneficiary lists (*daftar KPM*): a programme's eligible households of a determined
//! month, each regency's quota filled in welfare-rank order (poorest first; the national
//! rank is a total order, ties broken by household id at determination), kept as a
//! draft until the programme's Eselon I unit approves it; then it is fixed — never
//! changed again — with its content hash and its difference from the programme's
//! previous fixed list, and announced as `distribution.list_fixed`.

use std::collections::{BTreeMap, HashMap};

use dtks_platform::auth::Claims;
use dtks_platform::db::stmt;
use dtks_platform::{events, grpc, outbox};
use dtks_proto::common::v1 as pb;
use dtks_proto::distribution::v1::{BeneficiaryList, ListStatus, RegionSelection};
use dtks_proto::events::v1 as ev;
use sea_orm::{ConnectionTrait, DatabaseConnection, TransactionTrait};
use sha2::{Digest, Sha256};
use tonic::Status;

use crate::entries;
use crate::month::Month;

/// Fills each regency's quota from `eligible` (households of a month, in national-rank
/// order; `regency` answers the index of each one's regency in `names`) and reports per
/// regency how many were eligible and selected, the quota, and the surplus (eligible
/// beyond the quota, left out) or, negative, the shortfall (places no eligible household
/// fills). A regency without a quota takes every eligible household (quota 0,
/// surplus 0). Answers the selected households, still in rank order.
pub fn fill(
    eligible: &[u32],
    regency: impl Fn(u32) -> usize,
    names: &[String],
    quotas: &HashMap<String, u64>,
) -> (Vec<u32>, Vec<RegionSelection>) {
    let mut counts: Vec<RegionSelection> = names
        .iter()
        .map(|code| RegionSelection {
            region_code: code.clone(),
            quota: quotas.get(code).copied().unwrap_or(0),
            ..Default::default()
        })
        .collect();
    let mut selected = Vec::with_capacity(eligible.len());
    for &i in eligible {
        let r = &mut counts[regency(i)];
        r.eligible += 1;
        if r.quota == 0 || r.selected < r.quota {
            r.selected += 1;
            selected.push(i);
        }
    }
    // Regencies with a quota but no household in the month report their shortfall too.
    let mut regions: BTreeMap<String, RegionSelection> = quotas
        .iter()
        .map(|(code, quota)| {
            let r = RegionSelection {
                region_code: code.clone(),
                quota: *quota,
                ..Default::default()
            };
            (code.clone(), r)
        })
        .collect();
    for r in counts {
        if r.eligible > 0 || r.quota > 0 {
            regions.insert(r.region_code.clone(), r);
        }
    }
    let regions = regions
        .into_values()
        .map(|mut r| {
            r.surplus = if r.quota == 0 {
                0
            } else {
                r.eligible as i64 - r.quota as i64
            };
            r
        })
        .collect();
    (selected, regions)
}

/// The content hash of a list: every selected household's id and national rank, in
/// list order.
pub fn content_hash(month: &Month, selected: &[u32]) -> String {
    let mut hasher = Sha256::new();
    let mut text = [0u8; uuid::fmt::Hyphenated::LENGTH];
    for &i in selected {
        let i = i as usize;
        hasher.update(month.ids[i].hyphenated().encode_lower(&mut text).as_bytes());
        hasher.update((month.ranks[i] as i64).to_be_bytes());
    }
    hex::encode(hasher.finalize())
}

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
pub async fn store(
    db: &DatabaseConnection,
    draft: Draft<'_>,
    month: &Month,
    selected: &[u32],
) -> Result<uuid::Uuid, Status> {
    let list_id = uuid::Uuid::now_v7();
    let mut txn = db
        .get_postgres_connection_pool()
        .begin()
        .await
        .map_err(grpc::internal)?;
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
    .await
    .map_err(grpc::internal)?;
    entries::store(&mut txn, list_id, month, selected).await?;
    txn.commit().await.map_err(grpc::internal)?;
    Ok(list_id)
}

pub const COLUMNS: &str = "list_id, programme_code, programme_version, year, month, recipients, content_hash, status, regions, added, removed";

pub fn from_row(r: &sea_orm::QueryResult) -> Result<BeneficiaryList, Status> {
    let regions: serde_json::Value = r.try_get("", "regions").map_err(grpc::internal)?;
    let regions: Vec<(String, u64, u64, u64, i64)> =
        serde_json::from_value(regions).map_err(grpc::internal)?;
    let status: i16 = r.try_get("", "status").map_err(grpc::internal)?;
    Ok(BeneficiaryList {
        list_id: r
            .try_get::<uuid::Uuid>("", "list_id")
            .map_err(grpc::internal)?
            .to_string(),
        programme_code: r.try_get("", "programme_code").map_err(grpc::internal)?,
        programme_version: r
            .try_get::<i32>("", "programme_version")
            .map_err(grpc::internal)? as u32,
        period: Some(pb::Period {
            year: r.try_get("", "year").map_err(grpc::internal)?,
            month: r.try_get("", "month").map_err(grpc::internal)?,
        }),
        status: i32::from(status),
        recipients: r.try_get::<i64>("", "recipients").map_err(grpc::internal)? as u64,
        content_hash: r.try_get("", "content_hash").map_err(grpc::internal)?,
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
        added_since_previous: r.try_get::<i64>("", "added").map_err(grpc::internal)? as u64,
        removed_since_previous: r.try_get::<i64>("", "removed").map_err(grpc::internal)? as u64,
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

/// Approves a draft list: it is fixed, compared with the programme's previous fixed
/// list, and announced. Approving a fixed list again answers it as it is.
pub async fn approve(
    db: &DatabaseConnection,
    signal: &outbox::OutboxSignal,
    who: &Claims,
    list_id: &str,
) -> Result<BeneficiaryList, Status> {
    let id = uuid::Uuid::parse_str(list_id)
        .map_err(|_| grpc::invalid_field("list_id", "must be a UUID"))?;
    let txn = db.begin().await.map_err(grpc::internal)?;
    let list = txn
        .query_one_raw(stmt(
            &format!("SELECT {COLUMNS} FROM lists WHERE list_id = $1 FOR UPDATE"),
            [id.into()],
        ))
        .await
        .map_err(grpc::internal)?
        .map(|r| from_row(&r))
        .transpose()?
        .ok_or_else(|| Status::not_found(format!("no list {id}")))?;
    if list.status == ListStatus::Fixed as i32 {
        return Ok(list);
    }
    let previous: Option<uuid::Uuid> = txn
        .query_one_raw(stmt(
            "SELECT list_id FROM lists WHERE programme_code = $1 AND status = $2 AND list_id <> $3
             ORDER BY year DESC, month DESC, approved_at DESC LIMIT 1",
            [
                list.programme_code.clone().into(),
                (ListStatus::Fixed as i16).into(),
                id.into(),
            ],
        ))
        .await
        .map_err(grpc::internal)?
        .map(|r| r.try_get("", "list_id"))
        .transpose()
        .map_err(grpc::internal)?;
    let (added, removed) = match previous {
        None => (list.recipients as i64, 0),
        Some(before) => {
            let pool = db.get_postgres_connection_pool();
            let (old, new) = (
                entries::household_ids(pool, before).await?,
                entries::household_ids(pool, id).await?,
            );
            let (added, removed) = entries::difference(old, new);
            (added as i64, removed as i64)
        }
    };
    txn.execute_raw(stmt(
        "UPDATE lists SET status = $2, approved_by = $3, approved_at = now(), added = $4, removed = $5, previous_list_id = $6 WHERE list_id = $1",
        [
            id.into(),
            (ListStatus::Fixed as i16).into(),
            who.sub.clone().into(),
            added.into(),
            removed.into(),
            previous.into(),
        ],
    ))
    .await
    .map_err(grpc::internal)?;
    let fixed = ev::ListFixed {
        list_id: id.to_string(),
        programme_code: list.programme_code.clone(),
        period: list.period,
        recipients: list.recipients,
        content_hash: list.content_hash.clone(),
        coverage: list
            .regions
            .iter()
            .map(|r| ev::RegionCoverage {
                region_code: r.region_code.clone(),
                eligible: r.eligible,
                selected: r.selected,
                quota: r.quota,
            })
            .collect(),
    };
    outbox::enqueue(
        &txn,
        &events::envelope(events::LIST_FIXED, "distribution", "", &fixed),
    )
    .await
    .map_err(grpc::internal)?;
    let list = txn
        .query_one_raw(stmt(
            &format!("SELECT {COLUMNS} FROM lists WHERE list_id = $1"),
            [id.into()],
        ))
        .await
        .map_err(grpc::internal)?
        .map(|r| from_row(&r))
        .transpose()?
        .ok_or_else(|| Status::internal("list vanished"))?;
    txn.commit().await.map_err(grpc::internal)?;
    signal.wake();
    Ok(list)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotas_fill_poorest_first_and_report_surplus_and_shortfall() {
        let names: Vec<String> = ["32.04", "32.73", "33.01"].map(String::from).into();
        // Households 0..5 in national-rank order and their regencies; 5 and 6 are not
        // eligible.
        let regency = [0usize, 1, 0, 0, 2, 0, 1];
        let eligible = [0u32, 1, 2, 3, 4];
        let quotas: HashMap<String, u64> = [
            ("32.04".to_owned(), 2),
            ("32.73".to_owned(), 3),
            ("35.78".to_owned(), 4),
        ]
        .into();
        let (selected, regions) = fill(&eligible, |i| regency[i as usize], &names, &quotas);
        // 32.04 takes its two poorest (0, 2), 3 is left out; 33.01 has no quota: all.
        assert_eq!(selected, [0, 1, 2, 4]);
        let report: Vec<(&str, u64, u64, u64, i64)> = regions
            .iter()
            .map(|r| {
                (
                    r.region_code.as_str(),
                    r.eligible,
                    r.selected,
                    r.quota,
                    r.surplus,
                )
            })
            .collect();
        assert_eq!(
            report,
            [
                ("32.04", 3, 2, 2, 1),
                ("32.73", 1, 1, 3, -2),
                ("33.01", 1, 1, 0, 0),
                ("35.78", 0, 0, 4, -4),
            ]
        );
        // Stored and read back whole.
        let json = regions_json(&regions);
        let back: Vec<(String, u64, u64, u64, i64)> = serde_json::from_value(json).expect("json");
        assert_eq!(back.len(), 4);
        assert_eq!(back[1], ("32.73".to_owned(), 1, 1, 3, -2));
    }
}
