//! QA re-verification samples: a reproducible random sample of a regency's accepted
//! cases in a period, assigned to a QA team (Permensos 3/2021 gives universities this
//! role), its verdicts recorded, and disagreement rates reported per regency.
//!
//! The draw ranks every accepted case by a hash of the seed (`regency:YYYY-MM`) and its
//! case id and takes the lowest ranks, so anyone can draw the same sample again from the
//! same cases, and no officer can steer which cases are drawn.

use chrono::{DateTime, Utc};
use dtks_platform::auth::Claims;
use dtks_platform::db::stmt;
use dtks_platform::{convert, grpc};
use dtks_proto::common::v1 as pb;
use dtks_proto::verivali::v1::*;
use sea_orm::{ConnectionTrait, DbErr, TransactionTrait};
use tonic::Status;

use crate::Verivali;
use crate::error::Result;

/// FNV-1a over the seed and the id, finished with SplitMix64: a stable, well-spread
/// rank for the draw.
pub fn rank(seed: &str, id: &uuid::Uuid) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in seed
        .bytes()
        .chain([0u8])
        .chain(id.as_bytes().iter().copied())
    {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h = h.wrapping_add(0x9e37_79b9_7f4a_7c15);
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// The `k` cases of lowest rank, in rank order.
pub fn draw(seed: &str, cases: &[uuid::Uuid], k: usize) -> Vec<uuid::Uuid> {
    let mut ranked: Vec<(u64, uuid::Uuid)> = cases.iter().map(|c| (rank(seed, c), *c)).collect();
    ranked.sort_unstable();
    ranked.into_iter().take(k).map(|(_, c)| c).collect()
}

pub fn seed(regency: &str, (year, month): (i32, i32)) -> String {
    format!("{regency}:{year:04}-{month:02}")
}

fn month_bounds((year, month): (i32, i32)) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
    Some(dtks_domain::Period::new(year, u32::try_from(month).ok()?)?.bounds())
}

async fn load(db: &impl ConnectionTrait, sample_id: uuid::Uuid) -> Result<QaSample, DbErr> {
    let s = db
        .query_one_raw(stmt(
            "SELECT regency_code, year, month, qa_team, seed, population FROM qa_samples WHERE sample_id = $1",
            [sample_id.into()],
        ))
        .await?
        .ok_or_else(|| DbErr::RecordNotFound(sample_id.to_string()))?;
    let items = db
        .query_all_raw(stmt(
            "SELECT case_id, household_id, verdict, note, recorded_by FROM qa_items WHERE sample_id = $1 ORDER BY rank",
            [sample_id.into()],
        ))
        .await?
        .iter()
        .map(|r| {
            Ok(QaItem {
                case_id: r.try_get::<uuid::Uuid>("", "case_id")?.to_string(),
                household_id: r.try_get::<uuid::Uuid>("", "household_id")?.to_string(),
                verdict: i32::from(r.try_get::<i16>("", "verdict")?),
                note: r.try_get("", "note")?,
                recorded_by: r.try_get("", "recorded_by")?,
            })
        })
        .collect::<Result<_, DbErr>>()?;
    Ok(QaSample {
        sample_id: sample_id.to_string(),
        regency_code: s.try_get("", "regency_code")?,
        period: Some(pb::Period {
            year: s.try_get("", "year")?,
            month: s.try_get("", "month")?,
        }),
        qa_team: s.try_get("", "qa_team")?,
        population: u32::try_from(s.try_get::<i32>("", "population")?).unwrap_or_default(),
        items,
        seed: s.try_get("", "seed")?,
    })
}

impl Verivali {
    /// Draws the regency's sample for the period, or answers the one already drawn.
    pub async fn draw_qa_sample(
        &self,
        who: &Claims,
        req: &DrawQaSampleRequest,
    ) -> Result<QaSample> {
        let (db, now) = (&self.db, self.now());
        let regency = req.regency_code.trim();
        if regency.split('.').count() != 2
            || !regency
                .split('.')
                .all(|p| p.len() == 2 && p.bytes().all(|b| b.is_ascii_digit()))
        {
            return Err(grpc::invalid_field(
                "regency_code",
                "must be a regency code such as 32.04",
            )
            .into());
        }
        who.require_region(regency)?;
        let period = convert::period_key(req.period.as_ref())?;
        let (from, to) =
            month_bounds(period).ok_or_else(|| grpc::invalid_field("period", "is not a month"))?;
        if from > now {
            return Err(grpc::invalid_field("period", "has not begun").into());
        }
        let per_mille = match req.per_mille {
            0 => 50,
            n @ 1..=1000 => n,
            _ => return Err(grpc::invalid_field("per_mille", "must be 1 to 1000").into()),
        };
        let team = req.qa_team.trim();
        if team.is_empty() || team.chars().count() > 200 {
            return Err(grpc::invalid_field(
                "qa_team",
                "must name the QA team (1 to 200 characters)",
            )
            .into());
        }
        let txn = db.begin().await?;
        // One sample per regency and period: a second draw answers the first.
        txn.execute_raw(stmt(
            "SELECT pg_advisory_xact_lock(hashtext('qa:' || $1))",
            [seed(regency, period).into()],
        ))
        .await?;
        if let Some(existing) = txn
        .query_one_raw(stmt(
            "SELECT sample_id FROM qa_samples WHERE regency_code = $1 AND year = $2 AND month = $3",
            [regency.to_owned().into(), period.0.into(), period.1.into()],
        ))
        .await?
    {
        let id: uuid::Uuid = existing.try_get("", "sample_id")?;
        let sample = load(&txn, id).await?;
        txn.commit().await?;
        return Ok(sample);
    }
        let rows = txn
            .query_all_raw(stmt(
                "SELECT case_id, household_id FROM cases
             WHERE state = 6 AND (region_code = $1 OR region_code LIKE $1 || '.%')
               AND accepted_at >= $2 AND accepted_at < $3",
                [regency.to_owned().into(), from.into(), to.into()],
            ))
            .await?;
        if rows.is_empty() {
            return Err(grpc::failed_preconditions(&[(
                "QA_POPULATION".into(),
                format!("regency {regency}"),
                format!("no case was accepted in {:04}-{:02}", period.0, period.1),
            )])
            .into());
        }
        let mut households = std::collections::HashMap::new();
        for r in &rows {
            let c: uuid::Uuid = r.try_get("", "case_id")?;
            let h: uuid::Uuid = r.try_get("", "household_id")?;
            households.insert(c, h);
        }
        let cases: Vec<uuid::Uuid> = households.keys().copied().collect();
        let k = (cases.len() * per_mille as usize).div_ceil(1000).max(1);
        let seed = seed(regency, period);
        let drawn = draw(&seed, &cases, k);
        let sample_id = uuid::Uuid::now_v7();
        txn.execute_raw(stmt(
        "INSERT INTO qa_samples (sample_id, regency_code, year, month, qa_team, seed, population, per_mille, drawn_by, drawn_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        [
            sample_id.into(),
            regency.to_owned().into(),
            period.0.into(),
            period.1.into(),
            team.to_owned().into(),
            seed.into(),
            (cases.len() as i32).into(),
            (per_mille as i32).into(),
            who.sub.clone().into(),
            now.into(),
        ],
    ))
    .await?;
        let ranks: Vec<i32> = (0..drawn.len() as i32).collect();
        let homes: Vec<uuid::Uuid> = drawn.iter().map(|c| households[c]).collect();
        txn.execute_raw(stmt(
            "INSERT INTO qa_items (sample_id, case_id, household_id, rank)
         SELECT $1, * FROM unnest($2::uuid[], $3::uuid[], $4::int4[])",
            [sample_id.into(), drawn.into(), homes.into(), ranks.into()],
        ))
        .await?;
        let sample = load(&txn, sample_id).await?;
        txn.commit().await?;
        Ok(sample)
    }
}

impl Verivali {
    pub async fn record_qa_result(
        &self,
        who: &Claims,
        req: &RecordQaResultRequest,
    ) -> Result<QaItem> {
        let (db, now) = (&self.db, self.now());
        let sample_id = uuid::Uuid::parse_str(&req.sample_id)
            .map_err(|_| grpc::invalid_field("sample_id", "must be a UUID"))?;
        let case_id = uuid::Uuid::parse_str(&req.case_id)
            .map_err(|_| grpc::invalid_field("case_id", "must be a UUID"))?;
        let verdict = QaVerdict::try_from(req.verdict).unwrap_or_default();
        if verdict == QaVerdict::Unspecified {
            return Err(grpc::invalid_field("verdict", "must be AGREES or DISAGREES").into());
        }
        let note = req.note.trim();
        if verdict == QaVerdict::Disagrees && note.is_empty() {
            return Err(grpc::invalid_field("note", "a disagreement needs its finding").into());
        }
        if note.chars().count() > 4000 {
            return Err(grpc::invalid_field("note", "must be at most 4000 characters").into());
        }
        let txn = db.begin().await?;
        let row = txn
        .query_one_raw(stmt(
            "SELECT s.regency_code, i.verdict, i.household_id FROM qa_items i JOIN qa_samples s USING (sample_id)
             WHERE i.sample_id = $1 AND i.case_id = $2 FOR UPDATE OF i",
            [sample_id.into(), case_id.into()],
        ))
        .await?
        .ok_or_else(|| Status::not_found("this case is not in this sample"))?;
        let regency: String = row.try_get("", "regency_code")?;
        who.require_region(&regency)?;
        let previous: i16 = row.try_get("", "verdict")?;
        if previous != 0 {
            return Err(grpc::failed_preconditions(&[(
                "QA_RESULT".into(),
                format!("case {case_id}"),
                format!(
                    "already recorded as {}",
                    QaVerdict::try_from(i32::from(previous))
                        .unwrap_or_default()
                        .as_str_name()
                ),
            )])
            .into());
        }
        txn.execute_raw(stmt(
        "UPDATE qa_items SET verdict = $3, note = $4, recorded_by = $5, recorded_at = $6 WHERE sample_id = $1 AND case_id = $2",
        [
            sample_id.into(),
            case_id.into(),
            (verdict as i16).into(),
            note.to_owned().into(),
            who.sub.clone().into(),
            now.into(),
        ],
    ))
    .await?;
        let action = "verivali.RecordQaResult";
        dtks_platform::audit::record(&txn, who, action, &[sample_id, case_id]).await?;
        txn.commit().await?;
        Ok(QaItem {
            case_id: case_id.to_string(),
            household_id: row.try_get::<uuid::Uuid>("", "household_id")?.to_string(),
            verdict: verdict as i32,
            note: note.to_owned(),
            recorded_by: who.sub.clone(),
        })
    }
}

impl Verivali {
    pub(crate) async fn qa_report(
        &self,
        who: &Claims,
        req: &QaReportRequest,
    ) -> Result<QaReportResponse> {
        let db = &self.db;
        let region = crate::aftercare::listing_region(who, &req.region_code)?;
        let period = convert::period_key(req.period.as_ref())?;
        let rows = db
        .query_all_raw(stmt(
            "SELECT s.regency_code, count(*)::bigint AS sampled,
                    count(*) FILTER (WHERE i.verdict <> 0)::bigint AS recorded,
                    count(*) FILTER (WHERE i.verdict = 2)::bigint AS disagreements
             FROM qa_samples s JOIN qa_items i USING (sample_id)
             WHERE s.year = $2 AND s.month = $3
               AND ($1 = '' OR s.regency_code = $1 OR s.regency_code LIKE $1 || '.%' OR $1 LIKE s.regency_code || '.%')
             GROUP BY s.regency_code ORDER BY s.regency_code",
            [region.to_owned().into(), period.0.into(), period.1.into()],
        ))
        .await?;
        let regencies = rows
            .iter()
            .map(|r| {
                let n = |c: &str| r.try_get::<i64>("", c).map(|v| v as u32);
                let (recorded, disagreements) = (n("recorded")?, n("disagreements")?);
                Ok(QaRegencyRate {
                    regency_code: r.try_get("", "regency_code")?,
                    sampled: n("sampled")?,
                    recorded,
                    disagreements,
                    disagreement_rate: if recorded == 0 {
                        0.0
                    } else {
                        f64::from(disagreements) / f64::from(recorded)
                    },
                })
            })
            .collect::<Result<_, DbErr>>()?;
        Ok(QaReportResponse { regencies })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(n: u128) -> Vec<uuid::Uuid> {
        (1..=n).map(uuid::Uuid::from_u128).collect()
    }

    #[test]
    fn the_draw_is_reproducible_and_independent_of_order() {
        let cases = ids(1000);
        let a = draw("32.04:2026-10", &cases, 50);
        let mut reversed = cases.clone();
        reversed.reverse();
        assert_eq!(a, draw("32.04:2026-10", &reversed, 50));
        assert_eq!(a.len(), 50);
        // Another period draws other cases.
        let b = draw("32.04:2026-11", &cases, 50);
        let common = a.iter().filter(|c| b.contains(c)).count();
        assert!(common < 10, "{common} cases in common");
    }

    #[test]
    fn the_draw_spreads_over_the_population() {
        let cases = ids(10_000);
        let drawn = draw("32.73:2026-10", &cases, 1000);
        // Each tenth of the population (by id) gets roughly a tenth of the sample.
        for tenth in 0..10u128 {
            let n = drawn
                .iter()
                .filter(|c| (c.as_u128() - 1) / 1000 == tenth)
                .count();
            assert!((60..=140).contains(&n), "tenth {tenth}: {n}");
        }
    }
}
