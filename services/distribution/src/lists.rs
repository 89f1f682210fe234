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
use tonic::Status;

/// One eligible household, as the list keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub household_id: String,
    pub region_code: String,
    pub national_rank: i64,
    pub decile: i16,
    /// The head of household's NIK and name, which the list is delivered with.
    pub head_nik: Option<String>,
    pub head_name: Option<String>,
}

fn regency(region: &str) -> &str {
    region.get(..5).unwrap_or(region)
}

/// Fills each regency's quota from `eligible` (in national-rank order) and reports per
/// regency how many were eligible and selected, the quota, and the surplus (eligible
/// beyond the quota, left out) or, negative, the shortfall (places no eligible household
/// fills). A regency without a quota takes every eligible household (quota 0,
/// surplus 0).
pub fn fill(
    eligible: Vec<Entry>,
    quotas: &HashMap<String, u64>,
) -> (Vec<Entry>, Vec<RegionSelection>) {
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
    let mut selected = Vec::with_capacity(eligible.len());
    for e in eligible {
        let code = regency(&e.region_code).to_owned();
        let r = regions
            .entry(code.clone())
            .or_insert_with(|| RegionSelection {
                region_code: code,
                ..Default::default()
            });
        r.eligible += 1;
        if r.quota == 0 || r.selected < r.quota {
            r.selected += 1;
            selected.push(e);
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
            let row = txn
                .query_one_raw(stmt(
                    "SELECT count(*) FILTER (WHERE o.household_id IS NULL) AS added,
                            count(*) FILTER (WHERE n.household_id IS NULL) AS removed
                     FROM (SELECT household_id FROM list_entries WHERE list_id = $1) o
                     FULL JOIN (SELECT household_id FROM list_entries WHERE list_id = $2) n USING (household_id)",
                    [before.into(), id.into()],
                ))
                .await
                .map_err(grpc::internal)?
                .ok_or_else(|| Status::internal("no diff row"))?;
            (
                row.try_get::<i64>("", "added").map_err(grpc::internal)?,
                row.try_get::<i64>("", "removed").map_err(grpc::internal)?,
            )
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

    fn entry(id: &str, region: &str, rank: i64) -> Entry {
        Entry {
            household_id: id.into(),
            region_code: region.into(),
            national_rank: rank,
            decile: 1,
            head_nik: None,
            head_name: None,
        }
    }

    #[test]
    fn quotas_fill_poorest_first_and_report_surplus_and_shortfall() {
        // In national-rank order, as the snapshot streams them.
        let eligible = vec![
            entry("a", "32.04.05.2001", 1),
            entry("b", "32.73.01.1001", 2),
            entry("c", "32.04.01.2002", 3),
            entry("d", "32.04.05.2001", 4),
            entry("e", "33.01.01.2001", 5),
        ];
        let quotas: HashMap<String, u64> = [
            ("32.04".to_owned(), 2),
            ("32.73".to_owned(), 3),
            ("35.78".to_owned(), 4),
        ]
        .into();
        let (selected, regions) = fill(eligible, &quotas);
        let ids: Vec<&str> = selected.iter().map(|e| e.household_id.as_str()).collect();
        // 32.04 takes its two poorest (a, c), d is left out; 33.01 has no quota: all.
        assert_eq!(ids, ["a", "b", "c", "e"]);
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
