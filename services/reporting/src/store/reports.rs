//! The read models, asked by region and level: a query names a region (empty for the
//! whole country) and the level to break it down by (by default one level below it),
//! and every answer row carries the region's code, name (from the reference data) and
//! level.

use std::collections::HashMap;

use crate::error::Result;
use chrono::{DateTime, Datelike, TimeZone, Utc};
use dtks_platform::auth::Claims;
use dtks_platform::db::stmt;
use dtks_platform::{convert, grpc};
use dtks_proto::common::v1::{Region, RegionLevel};
use dtks_proto::reporting::v1::*;
use sea_orm::{ConnectionTrait, DatabaseConnection, QueryResult};

/// The length of a region code at each level (`32`, `32.04`, `32.04.05`, `32.04.05.2001`).
fn code_length(level: RegionLevel) -> usize {
    match level {
        RegionLevel::Province => 2,
        RegionLevel::Regency => 5,
        RegionLevel::District => 8,
        RegionLevel::Village => 13,
        RegionLevel::National | RegionLevel::Unspecified => 0,
    }
}

fn level_of(code: &str) -> Option<RegionLevel> {
    Some(match code.len() {
        0 => RegionLevel::National,
        2 => RegionLevel::Province,
        5 => RegionLevel::Regency,
        8 => RegionLevel::District,
        13 => RegionLevel::Village,
        _ => return None,
    })
}

fn finer(level: RegionLevel) -> RegionLevel {
    match level {
        RegionLevel::National | RegionLevel::Unspecified => RegionLevel::Province,
        RegionLevel::Province => RegionLevel::Regency,
        RegionLevel::Regency => RegionLevel::District,
        RegionLevel::District | RegionLevel::Village => RegionLevel::Village,
    }
}

/// What a query covers: the region (a code prefix, empty for national), the level its
/// rows are grouped at, and the month it asks about (if any).
#[derive(Debug, Clone)]
pub struct Scope {
    pub region: String,
    pub level: RegionLevel,
    pub period: Option<(i32, i32)>,
}

impl Scope {
    /// The whole country at `level`, now.
    pub fn national(level: RegionLevel) -> Self {
        Self {
            region: String::new(),
            level,
            period: None,
        }
    }

    pub fn of(who: &Claims, q: &RegionQuery) -> Result<Self> {
        // An officer of a region asks about that region unless they name one inside it.
        let region = if q.region_code.is_empty() {
            who.region.clone()
        } else {
            q.region_code.clone()
        };
        let own = level_of(&region).ok_or_else(|| {
            grpc::invalid_field(
                "region_code",
                "must be a province, regency, district or village code (32, 32.04, 32.04.05, 32.04.05.2001), or empty for the whole country",
            )
        })?;
        if !region.is_empty() || !who.region.is_empty() {
            who.require_region(&region)?;
        }
        let level = match RegionLevel::try_from(q.level).unwrap_or_default() {
            RegionLevel::Unspecified => finer(own),
            level if code_length(level) < code_length(own) => {
                return Err(grpc::invalid_field(
                    "level",
                    format!(
                        "must not be coarser than the region asked about ({})",
                        own.as_str_name()
                    ),
                )
                .into());
            }
            level => level,
        };
        let period = match &q.period {
            Some(p) => Some(convert::period_key(Some(p))?),
            None => None,
        };
        Ok(Self {
            region,
            level,
            period,
        })
    }

    pub fn length(&self) -> i32 {
        code_length(self.level) as i32
    }

    /// The first instant after the asked month (or now).
    pub fn as_of(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        match self.period {
            Some((year, month)) => {
                let (y, m) = if month == 12 {
                    (year + 1, 1)
                } else {
                    (year, month + 1)
                };
                Utc.with_ymd_and_hms(y, m as u32, 1, 0, 0, 0)
                    .single()
                    .unwrap_or(now)
            }
            None => now,
        }
    }
}

/// Names of region codes from the reference data.
pub async fn names(
    db: &DatabaseConnection,
    codes: impl IntoIterator<Item = String>,
) -> Result<HashMap<String, String>> {
    let codes: Vec<String> = codes.into_iter().collect();
    let rows = db
        .query_all_raw(stmt(
            "SELECT code, name FROM reference.regions WHERE code = ANY($1)",
            [codes.into()],
        ))
        .await?;
    let mut names = HashMap::new();
    for r in rows {
        names.insert(r.try_get("", "code")?, r.try_get("", "name")?);
    }
    Ok(names)
}

/// Figures per region, each made into its answer `make` with the region named.
async fn named<F, T>(
    db: &DatabaseConnection,
    per: Vec<(String, F)>,
    make: impl Fn(Option<Region>, F) -> T,
) -> Result<Vec<T>> {
    let names = names(db, per.iter().map(|(c, _)| c.clone())).await?;
    let each = per.into_iter();
    Ok(each
        .map(|(code, f)| make(Some(region(&code, &names)), f))
        .collect())
}

fn region(code: &str, names: &HashMap<String, String>) -> Region {
    Region {
        code: code.to_owned(),
        name: if code.is_empty() {
            "Indonesia".to_owned()
        } else {
            names.get(code).cloned().unwrap_or_default()
        },
        level: level_of(code).unwrap_or_default() as i32,
    }
}

/// A report: its rows for a scope, as of `now` (the reports of a month ignore it).
pub trait Report: Sized {
    fn query(
        db: &DatabaseConnection,
        scope: &Scope,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<Self>> + Send;
}

fn get<T: sea_orm::TryGetable>(r: &sea_orm::QueryResult, column: &str) -> Result<T> {
    Ok(r.try_get("", column)?)
}

/// Share of each region's DTKS households verified within the six months before the
/// asked month ended (or before now): added, changed, or confirmed unchanged at a visit.
impl Report for UpdateRates {
    async fn query(db: &DatabaseConnection, scope: &Scope, now: DateTime<Utc>) -> Result<Self> {
        let as_of = scope.as_of(now);
        let rows = db
        .query_all_raw(stmt(
            "SELECT left(region_code, $2) AS code,
                    count(*) AS records,
                    count(*) FILTER (WHERE verified_at > $3 - interval '6 months') AS updated,
                    count(*) FILTER (WHERE changed_at > $3 - interval '6 months') AS changed,
                    count(*) FILTER (WHERE confirmed_at > $3 - interval '6 months') AS confirmed
             FROM households
             WHERE region_code LIKE $1 || '%' AND accepted_at < $3 AND (removed_at IS NULL OR removed_at >= $3)
             GROUP BY 1 ORDER BY 1",
            [scope.region.clone().into(), scope.length().into(), as_of.into()],
        ))
        .await?;
        let mut out = Vec::new();
        for r in &rows {
            let n = |c: &str| -> Result<u64> { Ok(get::<i64>(r, c)?.max(0) as u64) };
            let counts = [n("records")?, n("updated")?, n("changed")?, n("confirmed")?];
            out.push((get::<String>(r, "code")?, counts));
        }
        let regions = named(db, out, |region, [records, updated, changed, confirmed]| {
            RegionRate {
                region,
                records,
                updated,
                rate: if records == 0 {
                    0.0
                } else {
                    updated as f64 / records as f64
                },
                changed,
                confirmed,
            }
        });
        Ok(UpdateRates {
            regions: regions.await?,
        })
    }
}

/// The regions (at the query's level) where no verivali step was taken in the asked
/// month (or the current one).
impl Report for InactiveRegions {
    async fn query(db: &DatabaseConnection, scope: &Scope, now: DateTime<Utc>) -> Result<Self> {
        let (year, month) = scope.period.unwrap_or((now.year(), now.month() as i32));
        let level = match scope.level {
            RegionLevel::Province => 1i16,
            RegionLevel::Regency => 2,
            RegionLevel::District => 3,
            _ => 4,
        };
        let rows = db
        .query_all_raw(stmt(
            "SELECT r.code, r.name FROM reference.regions r
             WHERE r.level = $2 AND r.code LIKE $1 || '%'
               AND NOT EXISTS (SELECT 1 FROM activity a
                               WHERE a.year = $3 AND a.month = $4 AND left(a.region_code, length(r.code)) = r.code)
             ORDER BY r.code",
            [scope.region.clone().into(), level.into(), year.into(), month.into()],
        ))
        .await?;
        let mut regions = Vec::new();
        for r in &rows {
            let code: String = get(r, "code")?;
            regions.push(Region {
                level: level_of(&code).unwrap_or_default() as i32,
                code,
                name: get(r, "name")?,
            });
        }
        Ok(InactiveRegions { regions })
    }
}

/// Cases in each verivali state, with how long they have waited there, for the region
/// and per region at the query's level.
impl Report for Funnel {
    async fn query(db: &DatabaseConnection, scope: &Scope, now: DateTime<Utc>) -> Result<Self> {
        let rows = db
            .query_all_raw(stmt(
                "SELECT left(region_code, $2) AS code, state, count(*) AS cases,
                    avg(extract(epoch FROM $3 - since))::float8 / 86400 AS mean_days,
                    max(extract(epoch FROM $3 - since))::float8 / 86400 AS max_days
             FROM cases WHERE region_code LIKE $1 || '%'
             GROUP BY GROUPING SETS ((state), (1, state)) ORDER BY 1 NULLS FIRST, 2",
                [
                    scope.region.clone().into(),
                    scope.length().into(),
                    now.into(),
                ],
            ))
            .await?;
        let mut total = Vec::new();
        let mut per: Vec<(String, Vec<FunnelStage>)> = Vec::new();
        for r in &rows {
            let stage = FunnelStage {
                state: get(r, "state")?,
                cases: get::<i64>(r, "cases")? as u64,
                mean_age_days: get::<Option<f64>>(r, "mean_days")?.unwrap_or(0.0).max(0.0),
                max_age_days: get::<Option<f64>>(r, "max_days")?.unwrap_or(0.0).max(0.0),
            };
            match get::<Option<String>>(r, "code")? {
                None => total.push(stage),
                Some(code) => match per.last_mut() {
                    Some((last, stages)) if *last == code => stages.push(stage),
                    _ => per.push((code, vec![stage])),
                },
            }
        }
        let regions = named(db, per, |region, stages| RegionFunnel { region, stages }).await?;
        Ok(Funnel {
            stages: total,
            regions,
        })
    }
}

/// The month asked, or the newest in `table` (`deciles` or `coverage`).
async fn month_of(
    db: &DatabaseConnection,
    scope: &Scope,
    table: &str,
) -> Result<Option<(i32, i32)>> {
    if scope.period.is_some() {
        return Ok(scope.period);
    }
    let row = db
        .query_one_raw(stmt(
            &format!("SELECT year, month FROM {table} ORDER BY year DESC, month DESC LIMIT 1"),
            [],
        ))
        .await?;
    row.map(|r| Ok((get(&r, "year")?, get(&r, "month")?)))
        .transpose()
}

/// The rows `sql` selects of the asked (or newest) month of `table`; none before its
/// first month. Its parameters: $1 the region, $2 the length of the codes it groups by
/// (regencies at the finest), $3 and $4 the year and month.
async fn of_month(
    db: &DatabaseConnection,
    scope: &Scope,
    table: &str,
    sql: &str,
) -> Result<Vec<QueryResult>> {
    let Some((year, month)) = month_of(db, scope, table).await? else {
        return Ok(Vec::new());
    };
    let (region, length) = (scope.region.clone(), regency_length(scope));
    let values = [region.into(), length.into(), year.into(), month.into()];
    Ok(db.query_all_raw(stmt(sql, values)).await?)
}

/// Regencies are the finest level determination publishes deciles and lists cover.
fn regency_length(scope: &Scope) -> i32 {
    scope.length().min(5)
}

/// Households per decile of the asked (or newest) determined month, per region.
impl Report for DecileDistribution {
    async fn query(db: &DatabaseConnection, scope: &Scope, _now: DateTime<Utc>) -> Result<Self> {
        let sql = "SELECT left(region_code, $2) AS code, d.n AS decile, sum(d.households)::bigint AS households
             FROM deciles, unnest(households) WITH ORDINALITY AS d (households, n)
             WHERE year = $3 AND month = $4 AND region_code LIKE $1 || '%'
             GROUP BY 1, 2 ORDER BY 1, 2";
        let rows = of_month(db, scope, "deciles", sql).await?;
        let mut per: Vec<(String, Vec<u64>)> = Vec::new();
        for r in &rows {
            let code: String = get(r, "code")?;
            let decile = get::<i64>(r, "decile")? as usize;
            let households = get::<i64>(r, "households")? as u64;
            if per.last().is_none_or(|(c, _)| *c != code) {
                per.push((code, vec![0; 10]));
            }
            if let Some(slot) = per.last_mut().and_then(|(_, d)| d.get_mut(decile - 1)) {
                *slot = households;
            }
        }
        let regions = named(db, per, |region, households_per_decile| RegionDeciles {
            region,
            households_per_decile,
        });
        Ok(DecileDistribution {
            regions: regions.await?,
        })
    }
}

/// Each programme's eligible, selected and quota per region, from its fixed lists of
/// the asked (or newest) month.
impl Report for ProgrammeCoverage {
    async fn query(db: &DatabaseConnection, scope: &Scope, _now: DateTime<Utc>) -> Result<Self> {
        let sql = "SELECT left(region_code, $2) AS code, programme_code,
                    sum(eligible)::bigint AS eligible, sum(selected)::bigint AS selected, sum(quota)::bigint AS quota
             FROM coverage WHERE year = $3 AND month = $4 AND region_code LIKE $1 || '%'
             GROUP BY 1, 2 ORDER BY 1, 2";
        let mut out = Vec::new();
        for r in &of_month(db, scope, "coverage", sql).await? {
            let code = get::<String>(r, "code")?;
            let count = |column| Ok::<_, crate::error::Error>(get::<i64>(r, column)? as u64);
            out.push((
                code,
                Coverage {
                    region: None,
                    programme_code: get(r, "programme_code")?,
                    eligible: count("eligible")?,
                    selected: count("selected")?,
                    quota: count("quota")?,
                },
            ));
        }
        let rows = named(db, out, |region, row| Coverage { region, ..row });
        Ok(ProgrammeCoverage { rows: rows.await? })
    }
}

const MATCHED: [&str; 2] = [
    "PERSON_OUTCOME_MATCHED",
    "PERSON_OUTCOME_MATCHED_WITH_CORRECTIONS",
];

/// The outcome mix of matching per region: persons and households by outcome, and the
/// share of persons the civil registry knows (as stated or with corrections).
impl Report for MatchOutcomes {
    async fn query(db: &DatabaseConnection, scope: &Scope, _now: DateTime<Utc>) -> Result<Self> {
        let (region_code, length) = (scope.region.clone(), scope.length());
        let households = db
            .query_all_raw(stmt(
                "SELECT left(region_code, $2) AS code, household_outcome AS outcome, count(*) AS n
             FROM match_results WHERE region_code LIKE $1 || '%' GROUP BY 1, 2 ORDER BY 1, 2",
                [region_code.clone().into(), length.into()],
            ))
            .await?;
        let persons = db
        .query_all_raw(stmt(
            "SELECT left(region_code, $2) AS code, p.key AS outcome, sum(p.value::bigint)::bigint AS n
             FROM match_results, jsonb_each_text(persons) AS p
             WHERE region_code LIKE $1 || '%' GROUP BY 1, 2 ORDER BY 1, 2",
            [region_code.into(), length.into()],
        ))
        .await?;
        let mut per: std::collections::BTreeMap<String, RegionOutcomes> = Default::default();
        for r in &households {
            let code: String = get(r, "code")?;
            let n = get::<i64>(r, "n")? as u64;
            let entry = per.entry(code).or_default();
            entry.proposals += n;
            entry.households_by_outcome.push(OutcomeCount {
                outcome: get(r, "outcome")?,
                count: n,
            });
        }
        for r in &persons {
            let code: String = get(r, "code")?;
            let outcome: String = get(r, "outcome")?;
            let n = get::<i64>(r, "n")? as u64;
            let entry = per.entry(code).or_default();
            entry.persons += n;
            if MATCHED.contains(&outcome.as_str()) {
                entry.match_rate += n as f64;
            }
            entry
                .persons_by_outcome
                .push(OutcomeCount { outcome, count: n });
        }
        let names = names(db, per.keys().cloned()).await?;
        Ok(MatchOutcomes {
            regions: per
                .into_iter()
                .map(|(code, mut o)| {
                    o.match_rate = if o.persons == 0 {
                        0.0
                    } else {
                        o.match_rate / o.persons as f64
                    };
                    o.region = Some(region(&code, &names));
                    o
                })
                .collect(),
        })
    }
}

/// Complaints and life-event tasks per region, how many are open and how many of those
/// are past their deadline.
impl Report for Reverifications {
    async fn query(db: &DatabaseConnection, scope: &Scope, now: DateTime<Utc>) -> Result<Self> {
        let rows = db
            .query_all_raw(stmt(
                "SELECT left(region_code, $2) AS code,
                    count(*) FILTER (WHERE kind = 'complaint') AS complaints,
                    count(*) FILTER (WHERE kind = 'life_event') AS life_events,
                    count(*) FILTER (WHERE completed_at IS NULL) AS open,
                    count(*) FILTER (WHERE completed_at IS NULL AND deadline < $3) AS overdue
             FROM tasks WHERE region_code LIKE $1 || '%' GROUP BY 1 ORDER BY 1",
                [
                    scope.region.clone().into(),
                    scope.length().into(),
                    now.into(),
                ],
            ))
            .await?;
        let mut out = Vec::new();
        for r in &rows {
            out.push((
                get::<String>(r, "code")?,
                [
                    get::<i64>(r, "complaints")? as u64,
                    get::<i64>(r, "life_events")? as u64,
                    get::<i64>(r, "open")? as u64,
                    get::<i64>(r, "overdue")? as u64,
                ],
            ));
        }
        let regions = named(
            db,
            out,
            |region, [complaints, life_events, open, overdue]| RegionReverifications {
                region,
                complaints,
                life_events,
                open,
                overdue,
            },
        );
        Ok(Reverifications {
            regions: regions.await?,
        })
    }
}

/// Households removed from DTKS per region by reason (all of them, or those removed in
/// the month asked about).
impl Report for Removals {
    async fn query(db: &DatabaseConnection, scope: &Scope, now: DateTime<Utc>) -> Result<Self> {
        const REASONS: [&str; 6] = [
            "NOT_ELIGIBLE",
            "MOVED_AWAY",
            "DUPLICATE",
            "ALL_DECEASED",
            "NOT_FOUND",
            "UNSPECIFIED",
        ];
        let since = scope.period.map(|_| {
            let end = scope.as_of(now);
            let start = end
                .checked_sub_months(chrono::Months::new(1))
                .unwrap_or(end);
            (start, end)
        });
        let rows = db
            .query_all_raw(stmt(
                "SELECT left(region_code, $2) AS code, coalesce(removal_reason, 'UNSPECIFIED') AS reason, count(*) AS n
                 FROM households
                 WHERE removed_at IS NOT NULL AND region_code LIKE $1 || '%'
                   AND ($3::timestamptz IS NULL OR (removed_at >= $3 AND removed_at < $4))
                 GROUP BY 1, 2 ORDER BY 1",
                [
                    scope.region.clone().into(),
                    scope.length().into(),
                    since.map(|s| s.0).into(),
                    since.map(|s| s.1).into(),
                ],
            ))
            .await?;
        let mut per: Vec<(String, [u64; 6])> = Vec::new();
        for r in &rows {
            let code = get::<String>(r, "code")?;
            if per.last().is_none_or(|(c, _)| *c != code) {
                per.push((code, [0; 6]));
            }
            let reason = get::<String>(r, "reason")?;
            let i = REASONS.iter().position(|x| *x == reason).unwrap_or(5);
            if let Some((_, counts)) = per.last_mut() {
                counts[i] += get::<i64>(r, "n")?.max(0) as u64;
            }
        }
        let regions = named(db, per, |region, c| RegionRemovals {
            region,
            not_eligible: c[0],
            moved_away: c[1],
            duplicate: c[2],
            all_deceased: c[3],
            not_found: c[4],
            unspecified: c[5],
            total: c.iter().sum(),
        });
        Ok(Removals {
            regions: regions.await?,
        })
    }
}
