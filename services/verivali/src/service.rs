use std::collections::HashMap;

use dtks_domain::integrity::{self, MatchOutcome};
use dtks_platform::app::Context;
use dtks_platform::bus::{EventHandler, HandlerError};
use dtks_platform::db::{Migration, Migrator as MigratorTrait, SqlMigration, sql_migrations, stmt};
use dtks_platform::{convert, events, grpc, outbox};
use dtks_proto::events::v1::{self as ev, Envelope, PersonOutcome};
use dtks_proto::verivali::v1::verivali_service_server::{VerivaliService, VerivaliServiceServer};
use dtks_proto::verivali::v1::*;
use sea_orm::{ConnectionTrait, DatabaseConnection, DatabaseTransaction};
use tonic::{Request, Response, Status};

pub struct Migrator;

impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn Migration>> {
        sql_migrations(vec![SqlMigration {
            name: "m0001_cases",
            sql: r#"
CREATE TABLE cases (
    case_id UUID PRIMARY KEY,
    proposal_id UUID NOT NULL UNIQUE,
    household_id UUID NOT NULL,
    region_code TEXT NOT NULL,
    state SMALLINT NOT NULL,
    assessment JSONB,
    opened_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX cases_region_state ON cases (region_code text_pattern_ops, state);
CREATE TABLE case_history (
    id BIGSERIAL PRIMARY KEY,
    case_id UUID NOT NULL REFERENCES cases (case_id),
    from_state SMALLINT NOT NULL,
    to_state SMALLINT NOT NULL,
    actor_id TEXT NOT NULL,
    actor_role TEXT NOT NULL,
    note TEXT NOT NULL DEFAULT '',
    at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX case_history_case ON case_history (case_id, id);
"#,
        }])
    }
}

pub async fn start(ctx: Context, listener: tokio::net::TcpListener) -> anyhow::Result<()> {
    if ctx.config.demo_auto_approve {
        tracing::warn!("DEMO POLICY ON: every verivali step is approved automatically");
    }
    let consumer = ctx
        .spawn_consumer(
            &[events::PROPOSAL_MATCHED],
            Matched {
                outbox: ctx.outbox.clone(),
                demo_auto_approve: ctx.config.demo_auto_approve,
            },
        )
        .await?;
    let service = VerivaliServiceServer::new(Api { db: ctx.db.clone() })
        .max_decoding_message_size(grpc::MAX_MESSAGE_BYTES)
        .max_encoding_message_size(grpc::MAX_SEND_BYTES);
    ctx.serve(listener, service, Some(consumer)).await
}

fn outcome_of(p: &ev::PersonMatch) -> MatchOutcome {
    match PersonOutcome::try_from(p.outcome).unwrap_or_default() {
        PersonOutcome::Matched => MatchOutcome::Matched,
        PersonOutcome::MatchedWithCorrections => MatchOutcome::MatchedWithCorrections(
            p.corrections
                .iter()
                .map(|c| (c.field.clone(), c.registry_value.clone()))
                .collect(),
        ),
        PersonOutcome::NikOfAnotherPerson => MatchOutcome::NikOfAnotherPerson,
        PersonOutcome::Deceased => MatchOutcome::Deceased,
        PersonOutcome::DuplicateInDtks => MatchOutcome::DuplicateInDtks {
            household_id: p.duplicate_household_id.clone(),
        },
        PersonOutcome::NoNik => MatchOutcome::NoNik,
        PersonOutcome::InReview => MatchOutcome::InReview,
        PersonOutcome::NotFound | PersonOutcome::Unspecified => MatchOutcome::NotFound,
    }
}

struct Matched {
    outbox: outbox::OutboxSignal,
    demo_auto_approve: bool,
}

/// The demo policy's path: each step of Permensos 3/2021 in order, approved by the role
/// that owns it.
const DEMO_STEPS: &[(CaseState, &str)] = &[
    (CaseState::VillageReviewed, "village_operator"),
    (CaseState::FieldVerified, "regency_officer"),
    (CaseState::SignedOff, "bupati"),
    (CaseState::Forwarded, "province_officer"),
];

async fn transition(
    txn: &DatabaseTransaction,
    case_id: uuid::Uuid,
    region: &str,
    from: CaseState,
    to: CaseState,
    role: &str,
    note: &str,
) -> Result<(), HandlerError> {
    txn.execute_raw(stmt(
        "INSERT INTO case_history (case_id, from_state, to_state, actor_id, actor_role, note) VALUES ($1, $2, $3, $4, $5, $6)",
        [case_id.into(), (from as i16).into(), (to as i16).into(), "demo-policy".to_owned().into(), role.to_owned().into(), note.to_owned().into()],
    ))
    .await?;
    txn.execute_raw(stmt(
        "UPDATE cases SET state = $2, updated_at = now() WHERE case_id = $1",
        [case_id.into(), (to as i16).into()],
    ))
    .await?;
    let changed = ev::CaseStateChanged {
        case_id: case_id.to_string(),
        from_state: from.as_str_name().to_owned(),
        to_state: to.as_str_name().to_owned(),
        actor_role: role.to_owned(),
    };
    outbox::enqueue(
        txn,
        &events::envelope(events::CASE_STATE_CHANGED, "verivali", region, &changed),
    )
    .await?;
    Ok(())
}

impl EventHandler for Matched {
    async fn handle(
        &self,
        txn: &DatabaseTransaction,
        envelope: &Envelope,
    ) -> Result<(), HandlerError> {
        let matched: ev::ProposalMatched = events::payload(envelope)?;
        let proposal_id = uuid::Uuid::parse_str(&matched.proposal_id)
            .map_err(|e| HandlerError::Permanent(e.to_string()))?;
        let pb_household = matched.household.clone().unwrap_or_default();
        let household_id = uuid::Uuid::parse_str(&pb_household.household_id)
            .unwrap_or_else(|_| uuid::Uuid::now_v7());
        let case_id = uuid::Uuid::now_v7();
        let region = envelope.region_code.clone();
        txn.execute_raw(stmt(
            "INSERT INTO cases (case_id, proposal_id, household_id, region_code, state) VALUES ($1, $2, $3, $4, $5)",
            [case_id.into(), proposal_id.into(), household_id.into(), region.clone().into(), (CaseState::Matched as i16).into()],
        ))
        .await?;
        if !self.demo_auto_approve {
            return Ok(());
        }
        let mut state = CaseState::Matched;
        for (next, role) in DEMO_STEPS {
            transition(
                txn,
                case_id,
                &region,
                state,
                *next,
                role,
                "approved by the demo policy",
            )
            .await?;
            state = *next;
        }
        // Ministry assessment: the five integrity criteria, automatically.
        let today = chrono::Utc::now().date_naive();
        let criteria = match convert::household_from_proto(&pb_household, today) {
            Ok(household) => {
                let outcomes: integrity::Outcomes = matched
                    .persons
                    .iter()
                    .map(|p| {
                        (
                            (p.family_index as usize, p.member_index as usize),
                            outcome_of(p),
                        )
                    })
                    .collect::<HashMap<_, _>>();
                integrity::assess(&household, &outcomes)
            }
            Err(violations) => vec![integrity::CriterionResult {
                criterion: 5,
                passed: false,
                reasons: violations.0.iter().map(ToString::to_string).collect(),
            }],
        };
        let accepted = criteria.iter().all(|c| c.passed);
        let assessment =
            serde_json::to_value(&criteria).map_err(|e| HandlerError::Permanent(e.to_string()))?;
        txn.execute_raw(stmt(
            "UPDATE cases SET assessment = $2 WHERE case_id = $1",
            [case_id.into(), assessment.into()],
        ))
        .await?;
        if accepted {
            transition(
                txn,
                case_id,
                &region,
                state,
                CaseState::Accepted,
                "ministry_assessor",
                "all five integrity criteria pass",
            )
            .await?;
            let mut household = pb_household;
            household.household_id = household_id.to_string();
            let payload = ev::HouseholdAccepted {
                household_id: household_id.to_string(),
                proposal_id: matched.proposal_id.clone(),
                case_id: case_id.to_string(),
                household: Some(household),
                verified_at: Some(prost_types::Timestamp::from(std::time::SystemTime::now())),
            };
            outbox::enqueue(
                txn,
                &events::envelope(events::HOUSEHOLD_ACCEPTED, "verivali", &region, &payload),
            )
            .await?;
        } else {
            transition(
                txn,
                case_id,
                &region,
                state,
                CaseState::Returned,
                "ministry_assessor",
                "integrity criteria failed",
            )
            .await?;
            let reasons = criteria
                .iter()
                .filter(|c| !c.passed)
                .flat_map(|c| {
                    c.reasons
                        .iter()
                        .map(move |r| format!("criterion {}: {r}", c.criterion))
                })
                .collect();
            let payload = ev::HouseholdReturned {
                proposal_id: matched.proposal_id.clone(),
                case_id: case_id.to_string(),
                reasons,
            };
            outbox::enqueue(
                txn,
                &events::envelope(events::HOUSEHOLD_RETURNED, "verivali", &region, &payload),
            )
            .await?;
        }
        Ok(())
    }

    fn after_commit(&self) {
        self.outbox.wake();
    }
}

struct Api {
    db: DatabaseConnection,
}

fn unimplemented<T>(what: &str) -> Result<Response<T>, Status> {
    Err(Status::unimplemented(format!(
        "{what} arrives with the verivali issue"
    )))
}

#[tonic::async_trait]
impl VerivaliService for Api {
    #[tracing::instrument(skip_all)]
    async fn get_case(&self, request: Request<GetCaseRequest>) -> Result<Response<Case>, Status> {
        let who = dtks_platform::auth::claims(&request)?.clone();
        let id = uuid::Uuid::parse_str(&request.get_ref().case_id)
            .map_err(|_| grpc::invalid_field("case_id", "must be a UUID"))?;
        let row = self
            .db
            .query_one_raw(stmt("SELECT proposal_id, household_id, region_code, state FROM cases WHERE case_id = $1", [id.into()]))
            .await
            .map_err(grpc::internal)?
            .ok_or_else(|| Status::not_found("no such case"))?;
        let region: String = row.try_get("", "region_code").map_err(grpc::internal)?;
        who.require_region(&region)?;
        let history = self
            .db
            .query_all_raw(stmt("SELECT from_state, to_state, actor_id, actor_role, note FROM case_history WHERE case_id = $1 ORDER BY id", [id.into()]))
            .await
            .map_err(grpc::internal)?
            .into_iter()
            .map(|h| Transition {
                from: i32::from(h.try_get::<i16>("", "from_state").unwrap_or_default()),
                to: i32::from(h.try_get::<i16>("", "to_state").unwrap_or_default()),
                actor_id: h.try_get("", "actor_id").unwrap_or_default(),
                actor_role: h.try_get("", "actor_role").unwrap_or_default(),
                at: None,
                note: h.try_get("", "note").unwrap_or_default(),
            })
            .collect();
        Ok(Response::new(Case {
            case_id: id.to_string(),
            proposal_id: row
                .try_get::<uuid::Uuid>("", "proposal_id")
                .map_err(grpc::internal)?
                .to_string(),
            household_id: row
                .try_get::<uuid::Uuid>("", "household_id")
                .map_err(grpc::internal)?
                .to_string(),
            region_code: region,
            state: i32::from(row.try_get::<i16>("", "state").map_err(grpc::internal)?),
            history,
            ..Default::default()
        }))
    }
    async fn list_cases(
        &self,
        _: Request<ListCasesRequest>,
    ) -> Result<Response<ListCasesResponse>, Status> {
        unimplemented("ListCases")
    }
    async fn work_queue(
        &self,
        _: Request<WorkQueueRequest>,
    ) -> Result<Response<ListCasesResponse>, Status> {
        unimplemented("WorkQueue")
    }
    async fn record_village_review(
        &self,
        _: Request<RecordVillageReviewRequest>,
    ) -> Result<Response<BatchResult>, Status> {
        unimplemented("RecordVillageReview")
    }
    async fn record_field_verification(
        &self,
        _: Request<RecordFieldVerificationRequest>,
    ) -> Result<Response<Case>, Status> {
        unimplemented("RecordFieldVerification")
    }
    async fn sign_off(&self, _: Request<BatchRequest>) -> Result<Response<BatchResult>, Status> {
        unimplemented("SignOff")
    }
    async fn forward_to_ministry(
        &self,
        _: Request<BatchRequest>,
    ) -> Result<Response<BatchResult>, Status> {
        unimplemented("ForwardToMinistry")
    }
    async fn assess(&self, _: Request<AssessRequest>) -> Result<Response<Assessment>, Status> {
        unimplemented("Assess")
    }
    async fn resubmit(&self, _: Request<ResubmitRequest>) -> Result<Response<Case>, Status> {
        unimplemented("Resubmit")
    }
    async fn file_complaint(
        &self,
        _: Request<FileComplaintRequest>,
    ) -> Result<Response<Complaint>, Status> {
        unimplemented("FileComplaint")
    }
    async fn list_due(
        &self,
        _: Request<ListDueRequest>,
    ) -> Result<Response<ListDueResponse>, Status> {
        unimplemented("ListDue")
    }
}
