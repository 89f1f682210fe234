//! Cases in storage: locking the cases a command names, checking the whole command
//! against the workflow before anything is written, and recording the transitions with
//! their history and events in the command's transaction.

use chrono::{DateTime, Utc};
use dtks_domain::consistency::{self, Distribution, Flag};
use dtks_platform::auth::{Claims, Role, scope_covers};
use dtks_platform::db::stmt;
use dtks_platform::{convert, events, grpc, outbox};
use dtks_proto::common::v1 as pb;
use dtks_proto::events::v1::{self as ev, Envelope};
use dtks_proto::verivali::v1::CaseState;
use prost::Message;
use sea_orm::{ConnectionTrait, DatabaseTransaction, DbErr, QueryResult};
use tonic::Status;

use crate::error::Result;

use crate::assessment::{Assessment, Content};
use crate::workflow::{self, Step};

/// Most cases one command may name.
pub const MAX_BATCH: usize = 5000;

/// Who takes a step: an officer from a verified token, or the service itself.
#[derive(Debug, Clone)]
pub struct Actor {
    pub id: String,
    pub role: Role,
    pub region: String,
}

impl Actor {
    pub fn officer(claims: &Claims) -> Self {
        Self {
            id: claims.sub.clone(),
            role: claims.role,
            region: claims.region.clone(),
        }
    }

    pub fn service(id: &str) -> Self {
        Self {
            id: id.to_owned(),
            role: Role::Service,
            region: String::new(),
        }
    }

    /// Refuses (PERMISSION_DENIED) a step the actor's role never takes.
    pub fn may(&self, step: Step) -> Result<()> {
        Ok(workflow::check_role(step, self.role)
            .map_err(|r| Status::permission_denied(r.describe(step, self.role)))?)
    }
}

#[derive(Debug, Clone)]
pub struct CaseRow {
    pub case_id: uuid::Uuid,
    pub proposal_id: uuid::Uuid,
    pub household_id: uuid::Uuid,
    pub region: String,
    pub state: CaseState,
    pub state_since: DateTime<Utc>,
}

pub const ROW: &str = "case_id, proposal_id, household_id, region_code, state, state_since";

pub fn case_row(r: &QueryResult) -> Result<CaseRow, DbErr> {
    Ok(CaseRow {
        case_id: r.try_get("", "case_id")?,
        proposal_id: r.try_get("", "proposal_id")?,
        household_id: r.try_get("", "household_id")?,
        region: r.try_get("", "region_code")?,
        state: CaseState::try_from(i32::from(r.try_get::<i16>("", "state")?)).unwrap_or_default(),
        state_since: r.try_get("", "state_since")?,
    })
}

/// One case's step in a command, with the note its history keeps.
pub struct Move {
    pub case: CaseRow,
    pub to: CaseState,
    pub note: String,
}

/// Parses a command's case ids: each a UUID, none twice, at most [`MAX_BATCH`].
/// The case of a proposal, locked for the transaction: any case, or only one still
/// open (not yet accepted or rejected).
pub async fn of_proposal(
    txn: &DatabaseTransaction,
    proposal_id: uuid::Uuid,
    only_open: bool,
) -> Result<Option<CaseRow>, DbErr> {
    let open = if only_open {
        " AND state NOT IN (6, 8)"
    } else {
        ""
    };
    let sql = format!("SELECT {ROW} FROM cases WHERE proposal_id = $1{open} FOR UPDATE");
    txn.query_one_raw(stmt(&sql, [proposal_id.into()]))
        .await?
        .map(|r| case_row(&r))
        .transpose()
}

pub fn parse_ids<'a>(
    ids: impl ExactSizeIterator<Item = &'a str>,
    field: &str,
) -> Result<Vec<uuid::Uuid>> {
    if ids.len() == 0 {
        return Err(grpc::invalid_field(field, "names no case").into());
    }
    if ids.len() > MAX_BATCH {
        return Err(grpc::invalid_field(
            field,
            format!("names {} cases; at most {MAX_BATCH} per command", ids.len()),
        )
        .into());
    }
    let mut seen = std::collections::HashSet::new();
    ids.enumerate()
        .map(|(i, id)| {
            let parsed = uuid::Uuid::parse_str(id)
                .map_err(|_| grpc::invalid_field(&format!("{field}[{i}]"), "must be a UUID"))?;
            if !seen.insert(parsed) {
                return Err(grpc::invalid_field(
                    &format!("{field}[{i}]"),
                    "names a case already named in this command",
                )
                .into());
            }
            Ok(parsed)
        })
        .collect()
}

/// Locks the named cases and checks every `(case, step)` for the actor: the role
/// (PERMISSION_DENIED), that each case exists (NOT_FOUND), lies in the actor's region
/// (PERMISSION_DENIED) and is in a state the step leaves from (FAILED_PRECONDITION,
/// each refused case with its current state). Any refusal refuses the whole command.
/// [`lock_for`] of one case and one step: the case, the step and the state it leads to.
pub async fn lock_one(
    txn: &DatabaseTransaction,
    actor: &Actor,
    id: uuid::Uuid,
    step: Step,
) -> Result<(CaseRow, Step, CaseState)> {
    let locked = lock_for(txn, actor, &[(id, step)]).await?;
    locked
        .into_iter()
        .next()
        .ok_or_else(|| dtks_platform::fault::Fault::Other(format!("case {id} not locked")).into())
}

pub async fn lock_for(
    txn: &DatabaseTransaction,
    actor: &Actor,
    steps: &[(uuid::Uuid, Step)],
) -> Result<Vec<(CaseRow, Step, CaseState)>> {
    for (_, step) in steps {
        actor.may(*step)?;
    }
    let ids: Vec<uuid::Uuid> = steps.iter().map(|(id, _)| *id).collect();
    let rows = txn
        .query_all_raw(stmt(
            &format!("SELECT {ROW} FROM cases WHERE case_id = ANY($1) ORDER BY case_id FOR UPDATE"),
            [ids.clone().into()],
        ))
        .await?;
    let mut found: std::collections::HashMap<uuid::Uuid, CaseRow> = rows
        .iter()
        .map(|r| case_row(r).map(|c| (c.case_id, c)))
        .collect::<Result<_, _>>()?;
    let missing: Vec<String> = ids
        .iter()
        .filter(|id| !found.contains_key(id))
        .map(ToString::to_string)
        .collect();
    if let Some(first) = missing.first() {
        return Err(Status::not_found(format!("no case {first}{}", more(missing.len()))).into());
    }
    let outside: Vec<&CaseRow> = ids
        .iter()
        .filter_map(|id| found.get(id))
        .filter(|c| !scope_covers(&actor.region, &c.region))
        .collect();
    if let Some(first) = outside.first() {
        return Err(Status::permission_denied(format!(
            "case {} is in region {}, outside the caller's scope {}{}",
            first.case_id,
            first.region,
            actor.region,
            more(outside.len())
        ))
        .into());
    }
    let mut refused = Vec::new();
    let mut out = Vec::with_capacity(steps.len());
    for (id, step) in steps {
        let case = found.remove(id).expect("checked above");
        match workflow::check(*step, actor.role, case.state) {
            Ok(to) => out.push((case, *step, to)),
            Err(r) => refused.push((
                "CASE_STATE".to_owned(),
                format!("case {id}"),
                r.describe(*step, actor.role),
            )),
        }
    }
    if !refused.is_empty() {
        return Err(grpc::failed_preconditions(&refused).into());
    }
    Ok(out)
}

fn more(n: usize) -> String {
    if n > 1 {
        format!(" (and {} more)", n - 1)
    } else {
        String::new()
    }
}

/// Writes the moves: one history row, the new state and one `case.state_changed` per
/// case; accepted cases get their acceptance time.
pub async fn record(
    txn: &DatabaseTransaction,
    actor: &Actor,
    moves: &[Move],
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    let role = actor.role.as_str().to_owned();
    // Each move acts on a case file (personal data): one audit entry per state reached.
    let mut reached: std::collections::BTreeMap<&str, Vec<String>> = Default::default();
    for m in moves {
        reached
            .entry(m.to.as_str_name())
            .or_default()
            .push(m.case.case_id.to_string());
    }
    for (state, ids) in reached {
        let action = format!(
            "verivali.{}",
            state.trim_start_matches("CASE_STATE_").to_lowercase()
        );
        dtks_platform::audit::record_as(txn, (&actor.id, &role), &action, &ids).await?;
    }
    for chunk in moves.chunks(MAX_BATCH) {
        let ids: Vec<uuid::Uuid> = chunk.iter().map(|m| m.case.case_id).collect();
        let from: Vec<i16> = chunk.iter().map(|m| m.case.state as i16).collect();
        let to: Vec<i16> = chunk.iter().map(|m| m.to as i16).collect();
        let notes: Vec<String> = chunk.iter().map(|m| m.note.clone()).collect();
        txn.execute_raw(stmt(
            "INSERT INTO case_history (case_id, from_state, to_state, note, actor_id, actor_role, at)
             SELECT c, f, t, n, $5, $6, $7 FROM unnest($1::uuid[], $2::int2[], $3::int2[], $4::text[]) AS u(c, f, t, n)",
            [
                ids.clone().into(),
                from.into(),
                to.clone().into(),
                notes.into(),
                actor.id.clone().into(),
                role.clone().into(),
                now.into(),
            ],
        ))
        .await?;
        txn.execute_raw(stmt(
            "UPDATE cases c SET state = u.t, state_since = $3, updated_at = $3,
                    accepted_at = CASE WHEN u.t = 6 THEN $3 ELSE c.accepted_at END
             FROM unnest($1::uuid[], $2::int2[]) AS u(id, t) WHERE c.case_id = u.id",
            [ids.into(), to.into(), now.into()],
        ))
        .await?;
        let envelopes: Vec<Envelope> = chunk
            .iter()
            .map(|m| {
                events::envelope(
                    events::CASE_STATE_CHANGED,
                    "verivali",
                    &m.case.region,
                    &ev::CaseStateChanged {
                        case_id: m.case.case_id.to_string(),
                        from_state: m.case.state.as_str_name().to_owned(),
                        to_state: m.to.as_str_name().to_owned(),
                        actor_role: role.clone(),
                        proposal_id: m.case.proposal_id.to_string(),
                        waited_seconds: (now - m.case.state_since).num_milliseconds().max(0) as f64
                            / 1000.0,
                    },
                )
            })
            .collect();
        outbox::enqueue_many(txn, &envelopes).await?;
    }
    Ok(())
}

/// `household.returned` for cases sent back (or, `final`, rejected), each with its
/// reasons.
pub async fn publish_returned(
    txn: &DatabaseTransaction,
    returned: &[(&CaseRow, Vec<String>)],
    final_: bool,
) -> Result<(), DbErr> {
    let envelopes: Vec<Envelope> = returned
        .iter()
        .map(|(case, reasons)| {
            events::envelope(
                events::HOUSEHOLD_RETURNED,
                "verivali",
                &case.region,
                &ev::HouseholdReturned {
                    proposal_id: case.proposal_id.to_string(),
                    case_id: case.case_id.to_string(),
                    reasons: reasons.clone(),
                    r#final: final_,
                },
            )
        })
        .collect();
    outbox::enqueue_many(txn, &envelopes).await
}

pub async fn content(
    db: &impl ConnectionTrait,
    ids: &[uuid::Uuid],
) -> Result<std::collections::HashMap<uuid::Uuid, Content>, DbErr> {
    let rows = db
        .query_all_raw(stmt(
            "SELECT case_id, matched, household, flags FROM cases WHERE case_id = ANY($1)",
            [ids.to_vec().into()],
        ))
        .await?;
    rows.iter()
        .map(|r| Ok((r.try_get("", "case_id")?, content_of(r)?)))
        .collect()
}

const SEALED_MATCHED: &str = "verivali.cases.matched";
const SEALED_HOUSEHOLD: &str = "verivali.cases.household";

/// A case's match, sealed for its row (personal data at rest; `dtks_platform::sealed`).
pub fn seal_matched(case_id: &uuid::Uuid, matched: &ev::ProposalMatched) -> Result<Vec<u8>, DbErr> {
    dtks_platform::sealed::seal(SEALED_MATCHED, case_id, &matched.encode_to_vec())
        .map_err(|e| DbErr::Custom(e.to_string()))
}

/// A case's household, sealed for its row.
pub fn seal_household(case_id: &uuid::Uuid, household: &pb::Household) -> Result<Vec<u8>, DbErr> {
    dtks_platform::sealed::seal(SEALED_HOUSEHOLD, case_id, &household.encode_to_vec())
        .map_err(|e| DbErr::Custom(e.to_string()))
}

/// The content of a row that selected `case_id`, `matched`, `household` and `flags`.
pub fn content_of(r: &QueryResult) -> Result<Content, DbErr> {
    let id: uuid::Uuid = r.try_get("", "case_id")?;
    let open = |place: &str, column: &str| -> Result<Vec<u8>, DbErr> {
        let stored: Option<Vec<u8>> = r.try_get("", column)?;
        dtks_platform::sealed::open(place, &id, &stored.unwrap_or_default())
            .map_err(|e| DbErr::Custom(format!("case {id}: {e}")))
    };
    let matched = open(SEALED_MATCHED, "matched")?;
    let household = open(SEALED_HOUSEHOLD, "household")?;
    let decode = |e: prost::DecodeError| DbErr::Custom(format!("case {id}: {e}"));
    let flags: serde_json::Value = r.try_get("", "flags")?;
    Ok(Content {
        matched: ev::ProposalMatched::decode(matched.as_slice()).map_err(decode)?,
        household: pb::Household::decode(household.as_slice()).map_err(decode)?,
        flags: serde_json::from_value(flags).unwrap_or_default(),
    })
}

/// The household's consistency flags, with the comparison against its regency's
/// distribution of each measure.
pub async fn flags(
    db: &impl ConnectionTrait,
    household: &pb::Household,
    region: &str,
    today: chrono::NaiveDate,
) -> Result<Vec<Flag>, DbErr> {
    let Ok(h) = convert::household_from_proto(household, today) else {
        return Ok(Vec::new());
    };
    let mut out = consistency::check(&h, today);
    let regency = regency_of(region);
    let rows = db
        .query_all_raw(stmt(
            "SELECT metric, n, sum, sum_sq FROM regency_stats WHERE regency_code = $1",
            [regency.to_owned().into()],
        ))
        .await?;
    for r in rows {
        let metric: String = r.try_get("", "metric")?;
        let d = Distribution {
            n: r.try_get("", "n")?,
            sum: r.try_get("", "sum")?,
            sum_sq: r.try_get("", "sum_sq")?,
        };
        if let Some((name, measure)) = consistency::METRICS.iter().find(|(m, _)| *m == metric)
            && let Some(f) = d.outlier(name, measure(&h))
        {
            out.push(f);
        }
    }
    Ok(out)
}

/// Adds accepted households to their regency's distributions.
pub async fn add_to_stats(
    txn: &DatabaseTransaction,
    accepted: &[(&str, &pb::Household)],
    today: chrono::NaiveDate,
) -> Result<(), DbErr> {
    // In one order for every transaction: two acceptances in one regency then lock its
    // rows one after the other, never each waiting on the other.
    let mut sums: std::collections::BTreeMap<(String, &str), Distribution> =
        std::collections::BTreeMap::new();
    for (region, household) in accepted {
        let Ok(h) = convert::household_from_proto(household, today) else {
            continue;
        };
        for (metric, measure) in consistency::METRICS {
            let v = measure(&h);
            let d = sums
                .entry((regency_of(region).to_owned(), metric))
                .or_default();
            d.n += 1;
            d.sum += v;
            d.sum_sq += v * v;
        }
    }
    for ((regency, metric), d) in sums {
        txn.execute_raw(stmt(
            "INSERT INTO regency_stats (regency_code, metric, n, sum, sum_sq) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (regency_code, metric) DO UPDATE SET n = regency_stats.n + EXCLUDED.n,
                 sum = regency_stats.sum + EXCLUDED.sum, sum_sq = regency_stats.sum_sq + EXCLUDED.sum_sq",
            [regency.into(), metric.to_owned().into(), d.n.into(), d.sum.into(), d.sum_sq.into()],
        ))
        .await?;
    }
    Ok(())
}

/// `32.04.01.2001` → `32.04`.
pub fn regency_of(region: &str) -> &str {
    match region.match_indices('.').nth(1) {
        Some((i, _)) => &region[..i],
        None => region,
    }
}

/// Accepts cases on the decision of `by`: `household.accepted` with the household as
/// verified and why, and the household enters the six-monthly update cycle. A removal
/// takes its household out, and a death's members leave it first
/// ([`crate::life::settle`]).
pub async fn accept(
    txn: &DatabaseTransaction,
    by: &str,
    accepted: &[(&CaseRow, &Content)],
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    let accepted = crate::life::settle(txn, by, accepted, now).await?;
    let mut envelopes = Vec::with_capacity(accepted.len());
    for (case, household, matched) in &accepted {
        let mut household = household.clone();
        household.household_id = case.household_id.to_string();
        envelopes.push(events::envelope(
            events::HOUSEHOLD_ACCEPTED,
            "verivali",
            &case.region,
            &ev::HouseholdAccepted {
                household_id: case.household_id.to_string(),
                proposal_id: case.proposal_id.to_string(),
                case_id: case.case_id.to_string(),
                household: Some(household),
                verified_at: Some(prost_types::Timestamp::from(std::time::SystemTime::from(
                    now,
                ))),
                kind: matched.kind,
                change_type: matched.change_type,
                reason: matched.reason.clone(),
                decided_by: by.to_owned(),
            },
        ));
    }
    outbox::enqueue_many(txn, &envelopes).await?;
    let ids: Vec<uuid::Uuid> = accepted.iter().map(|(c, ..)| c.household_id).collect();
    let regions: Vec<String> = accepted.iter().map(|(c, ..)| c.region.clone()).collect();
    let cases: Vec<uuid::Uuid> = accepted.iter().map(|(c, ..)| c.case_id).collect();
    txn.execute_raw(stmt(
        "INSERT INTO households (household_id, region_code, case_id, last_verified_at)
         SELECT h, r, c, $4 FROM unnest($1::uuid[], $2::text[], $3::uuid[]) AS u(h, r, c)
         ON CONFLICT (household_id) DO UPDATE SET region_code = EXCLUDED.region_code,
             case_id = EXCLUDED.case_id, last_verified_at = EXCLUDED.last_verified_at,
             removed_at = NULL, removal_reason = NULL",
        [ids.into(), regions.into(), cases.into(), now.into()],
    ))
    .await?;
    let today = now.date_naive();
    let stats: Vec<(&str, &pb::Household)> = accepted
        .iter()
        .map(|(c, h, _)| (c.region.as_str(), h))
        .collect();
    add_to_stats(txn, &stats, today).await
}

/// Stores assessments with their cases.
pub async fn store_assessments(
    txn: &DatabaseTransaction,
    assessed: &[(uuid::Uuid, &Assessment)],
) -> Result<(), DbErr> {
    let ids: Vec<uuid::Uuid> = assessed.iter().map(|(id, _)| *id).collect();
    let values = assessed
        .iter()
        .map(|(_, a)| serde_json::to_string(a))
        .collect::<Result<Vec<String>, _>>()
        .map_err(|e| DbErr::Custom(e.to_string()))?;
    txn.execute_raw(stmt(
        "UPDATE cases c SET assessment = u.a::jsonb FROM unnest($1::uuid[], $2::text[]) AS u(id, a)
         WHERE c.case_id = u.id",
        [ids.into(), values.into()],
    ))
    .await?;
    Ok(())
}

pub fn flags_json(flags: &[Flag]) -> serde_json::Value {
    serde_json::to_value(flags).unwrap_or_default()
}

pub fn timestamp(t: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: t.timestamp_subsec_nanos() as i32,
    }
}

#[cfg(test)]
mod tests {
    use super::regency_of;

    #[test]
    fn regencies_are_cut_from_any_region_code() {
        assert_eq!(regency_of("32.04.05.2001"), "32.04");
        assert_eq!(regency_of("32.04"), "32.04");
        assert_eq!(regency_of("32"), "32");
    }
}
