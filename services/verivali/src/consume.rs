//! What verivali takes from the bus: matched proposals open cases (or, after a
//! resubmission, bring the case back to the regency with the new match); a clerk's
//! review decision updates the match a case is assessed on; life events from the civil
//! registry open re-verification tasks for households in DTKS and flag cases still
//! being verified.

use dtks_platform::bus::{EventHandler, Handled, HandlerError};
use dtks_platform::clock::SharedClock;
use dtks_platform::db::stmt;
use dtks_platform::{events, outbox};
use dtks_proto::events::v1::{self as ev, Envelope};
use dtks_proto::verivali::v1::CaseState;
use sea_orm::{ConnectionTrait, DatabaseTransaction};

use crate::cases::{self, Actor, Move};
use crate::workflow::{self, Step};
use crate::{aftercare, store};

pub struct Consumed {
    pub outbox: outbox::OutboxSignal,
    pub demo_auto_approve: bool,
    pub clock: SharedClock,
}

fn permanent(e: impl std::fmt::Display) -> HandlerError {
    HandlerError::Permanent(e.to_string())
}

impl EventHandler for Consumed {
    async fn handle(&self, txn: &DatabaseTransaction, envelope: &Envelope) -> Handled {
        match envelope.r#type.as_str() {
            events::PROPOSAL_MATCHED => self.matched(txn, envelope).await,
            events::MATCH_REVIEWED => {
                let reviewed: ev::MatchReviewed = events::payload(envelope)?;
                let Some(result) = reviewed.result else {
                    return Ok(());
                };
                let proposal_id = uuid::Uuid::parse_str(&result.proposal_id).map_err(permanent)?;
                let Some(row) = txn
                    .query_one_raw(stmt(
                        "SELECT case_id FROM cases WHERE proposal_id = $1 AND state NOT IN (6, 8) FOR UPDATE",
                        [proposal_id.into()],
                    ))
                    .await?
                else {
                    return Ok(());
                };
                let case_id: uuid::Uuid = row.try_get("", "case_id")?;
                txn.execute_raw(stmt(
                    "UPDATE cases SET matched = $2, updated_at = $3 WHERE case_id = $1",
                    [
                        case_id.into(),
                        cases::seal_matched(&case_id, &result)?.into(),
                        self.clock.now().into(),
                    ],
                ))
                .await?;
                Ok(())
            }
            events::PROPOSAL_WITHDRAWN => self.withdrawn(txn, envelope).await,
            events::PERSON_LIFE_EVENT => {
                let life: ev::PersonLifeEvent = events::payload(envelope)?;
                aftercare::life_event(txn, &life, self.clock.now()).await?;
                crate::vital::propose(txn, &life, &envelope.event_id).await?;
                Ok(())
            }
            _ => Ok(()),
        }
    }

    fn after_commit(&self) {
        self.outbox.wake();
    }
}

impl Consumed {
    /// A proposal withdrawn at intake (finding 8): its case, if open, is closed as
    /// rejected with the proposer's reason, and a match arriving later opens none.
    async fn withdrawn(&self, txn: &DatabaseTransaction, envelope: &Envelope) -> Handled {
        let withdrawn: ev::ProposalWithdrawn = events::payload(envelope)?;
        let proposal_id = uuid::Uuid::parse_str(&withdrawn.proposal_id).map_err(permanent)?;
        let now = self.clock.now();
        store::withdraw(txn, proposal_id, now).await?;
        let open = cases::of_proposal(txn, proposal_id, true)
            .await?
            .filter(|c| !matches!(c.state, CaseState::Accepted | CaseState::Rejected));
        if let Some(case) = open {
            let mv = Move {
                case,
                to: CaseState::Rejected,
                note: format!("withdrawn at intake by the proposer: {}", withdrawn.reason),
            };
            cases::record(txn, &Actor::service("intake"), &[mv], now).await?;
        }
        Ok(())
    }

    async fn matched(&self, txn: &DatabaseTransaction, envelope: &Envelope) -> Handled {
        let matched: ev::ProposalMatched = events::payload(envelope)?;
        let proposal_id = uuid::Uuid::parse_str(&matched.proposal_id).map_err(permanent)?;
        if store::is_withdrawn(txn, proposal_id).await? {
            tracing::info!("a match arrived for a withdrawn proposal; no case opened");
            return Ok(());
        }
        let household = matched.household.clone().unwrap_or_default();
        let now = self.clock.now();
        let region = envelope.region_code.clone();
        let mut flags = cases::flags(txn, &household, &region, now.date_naive()).await?;
        let kind = ev::ProposalKind::try_from(matched.kind).unwrap_or_default();
        if matches!(kind, ev::ProposalKind::Remove | ev::ProposalKind::Change) {
            let moving = matched.change_type == ev::ChangeType::Moved as i32;
            let target = (household.household_id.as_str(), region.as_str());
            flags.extend(crate::life::target_flag(txn, target, kind, moving).await?);
        }
        if kind == ev::ProposalKind::Change {
            flags.extend(crate::life::death_flags(&household));
        }
        let existing = cases::of_proposal(txn, proposal_id, false).await?;
        let service = Actor::service("matching");
        let case = match existing {
            None => {
                let case_id = uuid::Uuid::now_v7();
                let household_id = uuid::Uuid::parse_str(&household.household_id)
                    .unwrap_or_else(|_| uuid::Uuid::now_v7());
                txn.execute_raw(stmt(
                    "INSERT INTO cases (case_id, proposal_id, household_id, region_code, state, state_since, opened_at, updated_at, matched, household, flags)
                     VALUES ($1, $2, $3, $4, 0, $5, $5, $5, $6, $7, $8)",
                    [
                        case_id.into(),
                        proposal_id.into(),
                        household_id.into(),
                        region.clone().into(),
                        now.into(),
                        cases::seal_matched(&case_id, &matched)?.into(),
                        cases::seal_household(&case_id, &household)?.into(),
                        cases::flags_json(&flags).into(),
                    ],
                ))
                .await?;
                let opened = cases::CaseRow {
                    case_id,
                    proposal_id,
                    household_id,
                    region,
                    state: CaseState::Unspecified,
                    state_since: now,
                };
                let mv = Move {
                    case: opened.clone(),
                    to: CaseState::Matched,
                    note: "matched against Dukcapil".to_owned(),
                };
                cases::record(txn, &service, &[mv], now).await?;
                cases::CaseRow {
                    state: CaseState::Matched,
                    ..opened
                }
            }
            Some(case) if case.state == CaseState::Resubmitted => {
                let to = workflow::check(Step::Rematched, service.role, case.state)
                    .map_err(|r| permanent(r.describe(Step::Rematched, service.role)))?;
                txn.execute_raw(stmt(
                    "UPDATE cases SET matched = $2, household = $3, flags = $4 WHERE case_id = $1",
                    [
                        case.case_id.into(),
                        cases::seal_matched(&case.case_id, &matched)?.into(),
                        cases::seal_household(&case.case_id, &household)?.into(),
                        cases::flags_json(&flags).into(),
                    ],
                ))
                .await?;
                let mv = Move {
                    case,
                    to,
                    note: "matched again after the correction; back with the regency".to_owned(),
                };
                cases::record(txn, &service, &[mv], now).await?;
                return Ok(());
            }
            Some(case) => {
                tracing::warn!(case_id = %case.case_id, state = case.state.as_str_name(), "a match for a case that is not waiting for one; kept the case as it is");
                return Ok(());
            }
        };
        let case = if matched.channel == ev::Channel::CivilRegistry as i32 {
            crate::vital::skip_musdes(txn, case, now).await?
        } else {
            case
        };
        if self.demo_auto_approve {
            demo_policy(txn, case, now).await?;
        }
        Ok(())
    }
}

/// The demo policy's path: each step of Permensos 3/2021 in order, taken by the role
/// that owns it, then the ministry's automatic verdict.
async fn demo_policy(
    txn: &DatabaseTransaction,
    mut case: cases::CaseRow,
    now: chrono::DateTime<chrono::Utc>,
) -> Handled {
    // From the step the case waits for (a case from Dukcapil starts past the musdes).
    let start = workflow::PATH
        .iter()
        .position(|(step, role)| workflow::check(*step, *role, case.state).is_ok())
        .unwrap_or(0);
    for (step, role) in &workflow::PATH[start..] {
        let actor = Actor {
            id: "demo-policy".to_owned(),
            role: *role,
            region: String::new(),
        };
        let to = workflow::check(*step, *role, case.state)
            .map_err(|r| permanent(r.describe(*step, *role)))?;
        let mv = Move {
            case: case.clone(),
            to,
            note: "approved by the demo policy".to_owned(),
        };
        cases::record(txn, &actor, &[mv], now).await?;
        case.state = to;
        case.state_since = now;
    }
    let contents = cases::content(txn, &[case.case_id]).await?;
    let content = &contents[&case.case_id];
    let mut assessment = crate::assessment::assess(content, now.date_naive());
    assessment.assessed_by = "demo-policy".to_owned();
    let actor = Actor {
        id: "demo-policy".to_owned(),
        role: dtks_platform::auth::Role::MinistryAssessor,
        region: String::new(),
    };
    cases::store_assessments(txn, &[(case.case_id, &assessment)]).await?;
    let step = if assessment.accepted {
        Step::Accept
    } else {
        Step::Return
    };
    let note = assessment.note();
    let to = workflow::check(step, actor.role, case.state)
        .map_err(|r| permanent(r.describe(step, actor.role)))?;
    let mv = Move {
        case: case.clone(),
        to,
        note,
    };
    cases::record(txn, &actor, &[mv], now).await?;
    if assessment.accepted {
        cases::accept(txn, &actor.id, &[(&case, content)], now).await?;
    } else {
        cases::publish_returned(txn, &[(&case, assessment.reasons())], false).await?;
    }
    Ok(())
}
