//! Beneficiary lists (*daftar KPM*): a programme's eligible households of a determined
//! month, each regency's quota filled in welfare-rank order (poorest first; the national
//! rank is a total order, ties broken by household id at determination), kept as a
//! draft until the programme's Eselon I unit approves it; then it is fixed — never
//! changed again — with its content hash and its difference from the programme's
//! previous fixed list, and announced as `distribution.list_fixed`.

use std::collections::{BTreeMap, HashMap};

use dtks_eligibility::month::Month;
use dtks_eligibility::rules::Rule;
use dtks_platform::auth::Claims;
use dtks_platform::fault::Fault;
use dtks_platform::{convert, events, grpc, outbox};
use dtks_proto::distribution::v1::{
    ApproveListRequest, BeneficiaryList, BuildListRequest, GetListRequest, ListStatus,
    RegionSelection,
};
use dtks_proto::events::v1 as ev;
use sea_orm::TransactionTrait;
use sha2::{Digest, Sha256};
use tonic::Status;

use crate::Distribution;
use crate::error::Result;
use crate::programmes;
use crate::store::entries;
use crate::store::lists::{self as store, Draft};

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

/// The eligible households of `m` by `rule` (judged on two threads), each regency's
/// quota filled poorest first.
fn judge(
    rule: &Rule,
    m: &Month,
    quotas: &HashMap<String, u64>,
) -> std::result::Result<(Vec<u32>, Vec<RegionSelection>), (usize, String)> {
    let n = m.households();
    let half = n / 2;
    let (first, second) = std::thread::scope(|s| {
        let second = s.spawn(|| rule.judge(m, half..n));
        (rule.judge(m, 0..half), second.join())
    });
    let mut eligible = first?;
    eligible.extend(second.map_err(|_| (half, "judging the month failed".to_owned()))??);
    Ok(fill(
        &eligible,
        |i| m.regency(i as usize) as usize,
        &m.regencies,
        quotas,
    ))
}

fn list_id(text: &str) -> Result<uuid::Uuid> {
    Ok(
        uuid::Uuid::parse_str(text)
            .map_err(|_| grpc::invalid_field("list_id", "must be a UUID"))?,
    )
}

impl Distribution {
    /// Builds a programme's draft list for a month that has begun; a list already built
    /// for the programme's version and month is answered as it is (never rebuilt).
    pub async fn build_list(
        &self,
        _who: &Claims,
        req: &BuildListRequest,
    ) -> Result<BeneficiaryList> {
        let (year, month) =
            convert::begun_period_key(req.period.as_ref(), dtks_platform::clock::now())?;
        let (programme, rule) = programmes::current(&self.db, &req.programme_code).await?;
        let version = programme.version as i32;
        if let Some(existing) =
            store::built(&self.db, &req.programme_code, version, (year, month)).await?
        {
            return Ok(existing);
        }
        let m = self.month(year, month as u32).await?;
        let started = std::time::Instant::now();
        let quotas = programme.quotas.clone();
        let compiled = rule.is_compiled();
        let (selected, regions) = {
            let shared = m.clone();
            tokio::task::spawn_blocking(move || judge(&rule, &shared, &quotas))
                .await?
                .map_err(|(i, e)| {
                    Status::failed_precondition(format!(
                        "programme {}'s rule cannot judge household {}: {e}",
                        programme.code, m.ids[i]
                    ))
                })?
        };
        let judged = started.elapsed().as_secs_f64();
        let content_hash = content_hash(&m, &selected);
        let draft = Draft {
            programme_code: &req.programme_code,
            programme_version: version,
            year,
            month,
            regions: &regions,
            content_hash,
        };
        let list_id = store::insert(&self.db, draft, &m, &selected).await?;
        tracing::info!(
            programme = %req.programme_code,
            year = m.year,
            month = m.month,
            compiled,
            households = m.households(),
            recipients = selected.len(),
            judged_seconds = judged,
            seconds = started.elapsed().as_secs_f64(),
            "beneficiary list built"
        );
        Ok(store::by_id(&self.db, list_id, false)
            .await?
            .ok_or_else(|| Fault::Other("list vanished".into()))?)
    }

    /// One list.
    pub async fn get_list(&self, _who: &Claims, req: &GetListRequest) -> Result<BeneficiaryList> {
        let id = list_id(&req.list_id)?;
        Ok(store::by_id(&self.db, id, false)
            .await?
            .ok_or_else(|| Status::not_found("no such list"))?)
    }
}

/// Approves a draft list: it is fixed, compared with the programme's previous fixed
/// list, and announced. Approving a fixed list again answers it as it is.
impl Distribution {
    /// The programme's Eselon I unit fixes its beneficiaries (KPM).
    pub(crate) async fn approve_list(
        &self,
        who: &Claims,
        req: &ApproveListRequest,
    ) -> Result<BeneficiaryList> {
        let (db, signal) = (&self.db, &self.outbox);
        let id = list_id(&req.list_id)?;
        let txn = db.begin().await?;
        let list: BeneficiaryList = store::by_id(&txn, id, true)
            .await?
            .ok_or_else(|| Status::not_found(format!("no list {id}")))?;
        if list.status == ListStatus::Fixed as i32 {
            return Ok(list);
        }
        let previous = store::previous_fixed(&txn, &list.programme_code, id).await?;
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
        store::fix(&txn, id, &who.sub, (added, removed), previous).await?;
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
        .await?;
        let list = store::by_id(&txn, id, false)
            .await?
            .ok_or_else(|| Fault::Other("list vanished".into()))?;
        txn.commit().await?;
        signal.wake();
        Ok(list)
    }
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
        let json = crate::store::lists::regions_json(&regions);
        let back: Vec<(String, u64, u64, u64, i64)> = serde_json::from_value(json).expect("json");
        assert_eq!(back.len(), 4);
        assert_eq!(back[1], ("32.73".to_owned(), 1, 1, 3, -2));
    }
}
