//! What reporting keeps of every event: a fact — the event's type, time and region and
//! the few values the read models need, never a name, a NIK or a household record — and
//! how a fact changes the read models. Facts are kept (`facts`, in arrival order), so the
//! read models can be thrown away and built again by replaying them (`Rebuild`).

use std::collections::BTreeMap;

use chrono::{DateTime, Datelike, Utc};
use dtks_platform::bus::{Handled, HandlerError};
use dtks_platform::db::stmt;
use dtks_platform::events;
use dtks_proto::events::v1::{self as ev, Envelope};
use sea_orm::{ConnectionTrait, DatabaseTransaction};
use serde::{Deserialize, Serialize};

/// The read models: thrown away (in this order) and built again by a rebuild.
pub const MODELS: &[&str] = &[
    "counters",
    "households",
    "cases",
    "activity",
    "match_results",
    "tasks",
    "deciles",
    "coverage",
];

/// The values of an event the read models use.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "fact", rename_all = "snake_case")]
pub enum Fact {
    /// Counted only (submitted, returned, delivered, …).
    Counted,
    /// A proposal's match result (again after a clerk's review).
    Matched {
        proposal_id: String,
        household: String,
        persons: BTreeMap<String, u64>,
    },
    Accepted {
        household_id: String,
        verified_at: i64,
        /// A CHANGE of a household in DTKS (false for facts kept before this was).
        #[serde(default)]
        changed: bool,
    },
    Removed {
        household_id: String,
        /// Why, as the code's name without its prefix (`MOVED_AWAY`); empty in facts
        /// kept before codes were.
        #[serde(default)]
        reason: String,
    },
    CaseMoved {
        case_id: String,
        to_state: String,
    },
    TaskOpened {
        task_id: String,
        household_id: String,
        kind: String,
        deadline: i64,
    },
    TaskEscalated {
        task_id: String,
    },
    TaskCompleted {
        task_id: String,
        household_id: String,
        outcome: String,
        at: i64,
    },
    Determined {
        year: i32,
        month: i32,
        deciles: Vec<(String, Vec<u64>)>,
    },
    ListFixed {
        programme_code: String,
        year: i32,
        month: i32,
        coverage: Vec<(String, u64, u64, u64)>,
    },
}

fn seconds(t: &Option<prost_types::Timestamp>) -> i64 {
    t.as_ref().map_or(0, |t| t.seconds)
}

fn matched(result: &ev::ProposalMatched) -> Fact {
    let mut persons = BTreeMap::new();
    for p in &result.persons {
        let outcome = ev::PersonOutcome::try_from(p.outcome)
            .unwrap_or_default()
            .as_str_name()
            .to_owned();
        *persons.entry(outcome).or_insert(0) += 1;
    }
    Fact::Matched {
        proposal_id: result.proposal_id.clone(),
        household: ev::HouseholdOutcome::try_from(result.outcome)
            .unwrap_or_default()
            .as_str_name()
            .to_owned(),
        persons,
    }
}

/// The fact of an event; an event whose payload does not decode is refused for good.
pub fn of(envelope: &Envelope) -> Result<Fact, HandlerError> {
    Ok(match envelope.r#type.as_str() {
        events::PROPOSAL_MATCHED => matched(&events::payload(envelope)?),
        events::MATCH_REVIEWED => {
            let reviewed: ev::MatchReviewed = events::payload(envelope)?;
            match reviewed.result {
                Some(result) => matched(&result),
                None => Fact::Counted,
            }
        }
        events::HOUSEHOLD_ACCEPTED => {
            let accepted: ev::HouseholdAccepted = events::payload(envelope)?;
            Fact::Accepted {
                household_id: accepted.household_id,
                verified_at: seconds(&accepted.verified_at),
                changed: accepted.kind == ev::ProposalKind::Change as i32,
            }
        }
        events::HOUSEHOLD_REMOVED => {
            let removed: ev::HouseholdRemoved = events::payload(envelope)?;
            let reason = ev::RemovalReason::try_from(removed.removal_reason).unwrap_or_default();
            Fact::Removed {
                household_id: removed.household_id,
                reason: reason
                    .as_str_name()
                    .trim_start_matches("REMOVAL_REASON_")
                    .to_owned(),
            }
        }
        events::CASE_STATE_CHANGED => {
            let changed: ev::CaseStateChanged = events::payload(envelope)?;
            Fact::CaseMoved {
                case_id: changed.case_id,
                to_state: changed.to_state,
            }
        }
        events::REVERIFICATION_OPENED => {
            let task: ev::ReverificationChanged = events::payload(envelope)?;
            Fact::TaskOpened {
                task_id: task.task_id,
                household_id: task.household_id,
                kind: task.kind,
                deadline: seconds(&task.deadline),
            }
        }
        events::REVERIFICATION_ESCALATED => {
            let task: ev::ReverificationChanged = events::payload(envelope)?;
            Fact::TaskEscalated {
                task_id: task.task_id,
            }
        }
        events::REVERIFICATION_COMPLETED => {
            let done: ev::ReverificationCompleted = events::payload(envelope)?;
            Fact::TaskCompleted {
                task_id: done.task_id,
                household_id: done.household_id,
                outcome: done.outcome,
                at: seconds(&done.completed_at),
            }
        }
        events::DETERMINATION_PUBLISHED => {
            let published: ev::DeterminationPublished = events::payload(envelope)?;
            let period = published.period.unwrap_or_default();
            Fact::Determined {
                year: period.year,
                month: period.month,
                deciles: published
                    .deciles
                    .into_iter()
                    .map(|d| (d.region_code, d.households_per_decile))
                    .collect(),
            }
        }
        events::LIST_FIXED => {
            let fixed: ev::ListFixed = events::payload(envelope)?;
            let period = fixed.period.unwrap_or_default();
            Fact::ListFixed {
                programme_code: fixed.programme_code,
                year: period.year,
                month: period.month,
                coverage: fixed
                    .coverage
                    .into_iter()
                    .map(|c| (c.region_code, c.eligible, c.selected, c.quota))
                    .collect(),
            }
        }
        _ => Fact::Counted,
    })
}

/// Keeps a fact (once: a redelivered event is already there).
pub async fn keep(txn: &DatabaseTransaction, envelope: &Envelope, fact: &Fact) -> Handled {
    let event_id = uuid::Uuid::parse_str(&envelope.event_id)
        .map_err(|e| HandlerError::Permanent(format!("event id: {e}")))?;
    let occurred = occurred_at(envelope);
    let fact = serde_json::to_value(fact).map_err(|e| HandlerError::Permanent(e.to_string()))?;
    txn.execute_raw(stmt(
        "INSERT INTO facts (event_id, event_type, occurred_at, region_code, fact) VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (event_id) DO NOTHING",
        [
            event_id.into(),
            envelope.r#type.clone().into(),
            occurred.into(),
            envelope.region_code.clone().into(),
            fact.into(),
        ],
    ))
    .await?;
    Ok(())
}

/// When the event happened (to the nanosecond: a case's steps can be a moment apart).
pub fn occurred_at(envelope: &Envelope) -> DateTime<Utc> {
    envelope
        .occurred_at
        .as_ref()
        .and_then(|t| DateTime::from_timestamp(t.seconds, t.nanos.clamp(0, 999_999_999) as u32))
        .unwrap_or_default()
}

fn at(seconds: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(seconds, 0).unwrap_or_default()
}

async fn add(txn: &DatabaseTransaction, region: &str, metric: &str, by: i64) -> Handled {
    txn.execute_raw(stmt(
        "INSERT INTO counters (region_code, metric, value) VALUES ($1, $2, $3)
         ON CONFLICT (region_code, metric) DO UPDATE SET value = counters.value + EXCLUDED.value",
        [
            region.to_owned().into(),
            metric.to_owned().into(),
            by.into(),
        ],
    ))
    .await?;
    Ok(())
}

/// Replaces a metric for every regency (figures that describe the latest state, such as
/// the households of the newest snapshot).
async fn replace(
    txn: &DatabaseTransaction,
    metric: &str,
    per_regency: &[(String, i64)],
) -> Handled {
    txn.execute_raw(stmt(
        "DELETE FROM counters WHERE metric = $1",
        [metric.to_owned().into()],
    ))
    .await?;
    for (regency, value) in per_regency {
        add(txn, regency, metric, *value).await?;
    }
    Ok(())
}

/// How a fact changes the read models.
pub async fn apply(
    txn: &DatabaseTransaction,
    event_type: &str,
    occurred_at: DateTime<Utc>,
    region: &str,
    fact: &Fact,
) -> Handled {
    add(txn, "", "events_consumed", 1).await?;
    let counted = match event_type {
        events::PROPOSAL_SUBMITTED => Some("proposals_submitted"),
        events::PROPOSAL_MATCHED => Some("proposals_matched"),
        events::HOUSEHOLD_ACCEPTED => Some("households_accepted"),
        events::HOUSEHOLD_RETURNED => Some("households_returned"),
        events::HOUSEHOLD_REMOVED => Some("households_removed"),
        _ => None,
    };
    if let Some(metric) = counted {
        add(txn, region, metric, 1).await?;
    }
    match fact {
        Fact::Counted => {}
        Fact::Matched {
            proposal_id,
            household,
            persons,
        } => {
            let persons = serde_json::to_value(persons)
                .map_err(|e| HandlerError::Permanent(e.to_string()))?;
            txn.execute_raw(stmt(
                "INSERT INTO match_results (proposal_id, region_code, household_outcome, persons) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (proposal_id) DO UPDATE SET household_outcome = EXCLUDED.household_outcome, persons = EXCLUDED.persons",
                [proposal_id.clone().into(), region.to_owned().into(), household.clone().into(), persons.into()],
            ))
            .await?;
        }
        Fact::Accepted {
            household_id,
            verified_at,
            changed,
        } => {
            txn.execute_raw(stmt(
                "INSERT INTO households (household_id, region_code, accepted_at, verified_at, changed_at)
                 VALUES ($1, $2, $3, $4, CASE WHEN $5 THEN $4 END)
                 ON CONFLICT (household_id) DO UPDATE SET region_code = EXCLUDED.region_code,
                     verified_at = greatest(households.verified_at, EXCLUDED.verified_at),
                     changed_at = greatest(households.changed_at, EXCLUDED.changed_at),
                     removed_at = NULL, removal_reason = NULL",
                [
                    household_id.clone().into(),
                    region.to_owned().into(),
                    occurred_at.into(),
                    at(*verified_at).into(),
                    (*changed).into(),
                ],
            ))
            .await?;
        }
        Fact::Removed {
            household_id,
            reason,
        } => {
            txn.execute_raw(stmt(
                "UPDATE households SET removed_at = $2, removal_reason = nullif($3, '') WHERE household_id = $1",
                [household_id.clone().into(), occurred_at.into(), reason.clone().into()],
            ))
            .await?;
        }
        Fact::CaseMoved { case_id, to_state } => {
            txn.execute_raw(stmt(
                "INSERT INTO cases (case_id, region_code, state, since) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (case_id) DO UPDATE SET state = EXCLUDED.state, since = EXCLUDED.since
                 WHERE cases.since <= EXCLUDED.since",
                [
                    case_id.clone().into(),
                    region.to_owned().into(),
                    to_state.clone().into(),
                    occurred_at.into(),
                ],
            ))
            .await?;
            txn.execute_raw(stmt(
                "INSERT INTO activity (region_code, year, month, transitions) VALUES ($1, $2, $3, 1)
                 ON CONFLICT (year, month, region_code) DO UPDATE SET transitions = activity.transitions + 1",
                [region.to_owned().into(), occurred_at.year().into(), (occurred_at.month() as i32).into()],
            ))
            .await?;
        }
        Fact::TaskOpened {
            task_id,
            household_id,
            kind,
            deadline,
        } => {
            txn.execute_raw(stmt(
                "INSERT INTO tasks (task_id, household_id, region_code, kind, opened_at, deadline) VALUES ($1, $2, $3, $4, $5, $6)
                 ON CONFLICT (task_id) DO NOTHING",
                [task_id.clone().into(), household_id.clone().into(), region.to_owned().into(), kind.clone().into(), occurred_at.into(), at(*deadline).into()],
            ))
            .await?;
        }
        Fact::TaskEscalated { task_id } => {
            txn.execute_raw(stmt(
                "UPDATE tasks SET escalated_at = $2 WHERE task_id = $1",
                [task_id.clone().into(), occurred_at.into()],
            ))
            .await?;
        }
        Fact::TaskCompleted {
            task_id,
            household_id,
            outcome,
            at: when,
        } => {
            txn.execute_raw(stmt(
                "UPDATE tasks SET completed_at = $2 WHERE task_id = $1",
                [task_id.clone().into(), at(*when).into()],
            ))
            .await?;
            if outcome != "REMOVED" {
                // A visit renews the household's six-monthly cycle; one that found it
                // unchanged confirms it (a change proposed counts when it is accepted).
                txn.execute_raw(stmt(
                    "UPDATE households SET verified_at = greatest(verified_at, $2),
                         confirmed_at = CASE WHEN $3 THEN greatest(confirmed_at, $2) ELSE confirmed_at END
                     WHERE household_id = $1",
                    [
                        household_id.clone().into(),
                        at(*when).into(),
                        (outcome == "CONFIRMED").into(),
                    ],
                ))
                .await?;
            }
        }
        Fact::Determined {
            year,
            month,
            deciles,
        } => {
            txn.execute_raw(stmt(
                "DELETE FROM deciles WHERE year = $1 AND month = $2",
                [(*year).into(), (*month).into()],
            ))
            .await?;
            for (region, counts) in deciles {
                let counts: Vec<i64> = counts.iter().map(|c| *c as i64).collect();
                txn.execute_raw(stmt(
                    "INSERT INTO deciles (year, month, region_code, households) VALUES ($1, $2, $3, $4)",
                    [(*year).into(), (*month).into(), region.clone().into(), counts.into()],
                ))
                .await?;
            }
            let per: Vec<(String, i64)> = deciles
                .iter()
                .map(|(region, counts)| (region.clone(), counts.iter().sum::<u64>() as i64))
                .collect();
            replace(txn, "households_determined", &per).await?;
        }
        Fact::ListFixed {
            programme_code,
            year,
            month,
            coverage,
        } => {
            txn.execute_raw(stmt(
                "DELETE FROM coverage WHERE programme_code = $1 AND year = $2 AND month = $3",
                [
                    programme_code.clone().into(),
                    (*year).into(),
                    (*month).into(),
                ],
            ))
            .await?;
            for (region, eligible, selected, quota) in coverage {
                txn.execute_raw(stmt(
                    "INSERT INTO coverage (programme_code, year, month, region_code, eligible, selected, quota)
                     VALUES ($1, $2, $3, $4, $5, $6, $7)",
                    [
                        programme_code.clone().into(), (*year).into(), (*month).into(), region.clone().into(),
                        (*eligible as i64).into(), (*selected as i64).into(), (*quota as i64).into(),
                    ],
                ))
                .await?;
            }
            let per: Vec<(String, i64)> = coverage
                .iter()
                .map(|(region, _, selected, _)| (region.clone(), *selected as i64))
                .collect();
            replace(txn, &format!("recipients:{programme_code}"), &per).await?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn facts_carry_no_personal_data_and_read_back() {
        let result = ev::ProposalMatched {
            proposal_id: "p-1".into(),
            household: Some(dtks_proto::common::v1::Household {
                families: vec![dtks_proto::common::v1::Family {
                    kk_number: "3204010505150001".into(),
                    members: vec![dtks_proto::common::v1::Person {
                        nik: "3204011203800001".into(),
                        full_name: "Asep Sunandar".into(),
                        ..Default::default()
                    }],
                }],
                ..Default::default()
            }),
            persons: vec![
                ev::PersonMatch {
                    outcome: ev::PersonOutcome::Matched as i32,
                    ..Default::default()
                },
                ev::PersonMatch {
                    outcome: ev::PersonOutcome::NotFound as i32,
                    ..Default::default()
                },
                ev::PersonMatch {
                    outcome: ev::PersonOutcome::Matched as i32,
                    ..Default::default()
                },
            ],
            outcome: ev::HouseholdOutcome::NeedsCorrection as i32,
            ..Default::default()
        };
        let envelope = events::envelope(events::PROPOSAL_MATCHED, "matching", "32.04", &result);
        let fact = of(&envelope).expect("a fact");
        let text = serde_json::to_string(&fact).expect("json");
        for personal in ["3204011203800001", "Asep", "3204010505150001"] {
            assert!(!text.contains(personal), "{text}");
        }
        assert_eq!(
            fact,
            Fact::Matched {
                proposal_id: "p-1".into(),
                household: "HOUSEHOLD_OUTCOME_NEEDS_CORRECTION".into(),
                persons: [
                    ("PERSON_OUTCOME_MATCHED".to_owned(), 2),
                    ("PERSON_OUTCOME_NOT_FOUND".to_owned(), 1)
                ]
                .into(),
            }
        );
        let back: Fact = serde_json::from_str(&text).expect("reads back");
        assert_eq!(back, fact);
    }
}
