use dtks_platform::app::Context;
use dtks_platform::auth::{Role, claims};
use dtks_platform::bus::{EventHandler, HandlerError};
use dtks_platform::db::stmt;
use dtks_platform::{convert, events, grpc, outbox};
use dtks_proto::events::v1::{self as ev, Envelope};
use dtks_proto::intake::v1::intake_service_server::{IntakeService, IntakeServiceServer};
use dtks_proto::intake::v1::*;
use prost::Message;
use sea_orm::{ConnectionTrait, DatabaseConnection, DatabaseTransaction, TransactionTrait};
use tonic::{Request, Response, Status, Streaming};

pub async fn start(ctx: Context, listener: tokio::net::TcpListener) -> anyhow::Result<()> {
    let consumer = ctx
        .spawn_consumer(
            &[events::HOUSEHOLD_ACCEPTED, events::HOUSEHOLD_RETURNED],
            StatusUpdates,
        )
        .await?;
    let service = IntakeServiceServer::new(Intake {
        db: ctx.db.clone(),
        outbox: ctx.outbox.clone(),
    })
    .max_decoding_message_size(grpc::MAX_MESSAGE_BYTES)
    .max_encoding_message_size(grpc::MAX_SEND_BYTES);
    ctx.serve(listener, service, Some(consumer)).await
}

struct Intake {
    db: DatabaseConnection,
    outbox: outbox::OutboxSignal,
}

const SUBMITTERS: &[Role] = &[
    Role::VillageOperator,
    Role::RegencyOfficer,
    Role::MinistryAssessor,
    Role::PusdatinAdmin,
    Role::Public,
];

impl Intake {
    async fn submit(
        &self,
        who: &dtks_platform::auth::Claims,
        req: SubmitProposalRequest,
    ) -> Result<SubmitProposalResponse, Status> {
        who.require_role(SUBMITTERS)?;
        let channel = ev::Channel::try_from(req.channel).unwrap_or(ev::Channel::Unspecified);
        if channel == ev::Channel::Unspecified {
            return Err(grpc::invalid_field(
                "channel",
                "must be MUSDES, MINISTRY or SELF_REGISTRATION",
            ));
        }
        let kind = ev::ProposalKind::try_from(req.kind).unwrap_or(ev::ProposalKind::Unspecified);
        if kind == ev::ProposalKind::Unspecified {
            return Err(grpc::invalid_field("kind", "must be ADD, CHANGE or REMOVE"));
        }
        if req.idempotency_key.len() > 128 || req.external_reference.len() > 128 {
            return Err(grpc::invalid_field(
                "idempotency_key",
                "keys and references are at most 128 characters",
            ));
        }
        let pb_household = req
            .household
            .as_ref()
            .ok_or_else(|| grpc::invalid_field("household", "is required"))?;
        let today = chrono::Utc::now().date_naive();
        let household = convert::household_from_proto(pb_household, today)
            .map_err(|v| grpc::invalid_argument(&v))?;
        let village = household
            .village()
            .map(ToString::to_string)
            .unwrap_or_default();
        if !dtks_platform::reference::exists(&self.db, &village)
            .await
            .map_err(grpc::internal)?
        {
            return Err(grpc::invalid_field(
                "household.address.village_code",
                format!("{village} is not a Kemendagri village code"),
            ));
        }
        who.require_region(&village)?;

        if let Some(existing) = self.replay(&req, channel).await? {
            return Ok(existing);
        }
        let proposal_id = uuid::Uuid::now_v7();
        let canonical = convert::household_to_proto(&household);
        let payload = ev::ProposalSubmitted {
            proposal_id: proposal_id.to_string(),
            channel: channel as i32,
            kind: kind as i32,
            household: Some(canonical.clone()),
            submitted_by: who.sub.clone(),
        };
        let envelope = events::envelope(events::PROPOSAL_SUBMITTED, "intake", &village, &payload);
        let txn = self.db.begin().await.map_err(grpc::internal)?;
        let inserted = txn
            .execute_raw(stmt(
                "INSERT INTO proposals (proposal_id, idempotency_key, channel, kind, external_reference, region_code, status, submitted_by, household)
                 VALUES ($1, NULLIF($2, ''), $3, $4, NULLIF($5, ''), $6, $7, $8, $9) ON CONFLICT DO NOTHING",
                [
                    proposal_id.into(),
                    req.idempotency_key.clone().into(),
                    (channel as i16).into(),
                    (kind as i16).into(),
                    req.external_reference.clone().into(),
                    village.into(),
                    (ProposalStatus::Submitted as i16).into(),
                    who.sub.clone().into(),
                    canonical.encode_to_vec().into(),
                ],
            ))
            .await
            .map_err(grpc::internal)?;
        if inserted.rows_affected() == 0 {
            // A concurrent twin won the race; answer with its result.
            txn.rollback().await.map_err(grpc::internal)?;
            return self
                .replay(&req, channel)
                .await?
                .ok_or_else(|| Status::aborted("concurrent submission; retry"));
        }
        outbox::enqueue(&txn, &envelope)
            .await
            .map_err(grpc::internal)?;
        txn.commit().await.map_err(grpc::internal)?;
        self.outbox.wake();
        tracing::info!(%proposal_id, channel = channel.as_str_name(), "proposal accepted");
        Ok(SubmitProposalResponse {
            proposal_id: proposal_id.to_string(),
            status: ProposalStatus::Submitted as i32,
            replayed: false,
        })
    }

    /// The earlier answer to the same idempotency key, or channel + external reference.
    async fn replay(
        &self,
        req: &SubmitProposalRequest,
        channel: ev::Channel,
    ) -> Result<Option<SubmitProposalResponse>, Status> {
        if req.idempotency_key.is_empty() && req.external_reference.is_empty() {
            return Ok(None);
        }
        let row = self
            .db
            .query_one_raw(stmt(
                "SELECT proposal_id, status FROM proposals
                 WHERE idempotency_key = NULLIF($1, '') OR (channel = $2 AND external_reference = NULLIF($3, ''))
                 LIMIT 1",
                [req.idempotency_key.clone().into(), (channel as i16).into(), req.external_reference.clone().into()],
            ))
            .await
            .map_err(grpc::internal)?;
        row.map(|r| {
            Ok(SubmitProposalResponse {
                proposal_id: r
                    .try_get::<uuid::Uuid>("", "proposal_id")
                    .map_err(grpc::internal)?
                    .to_string(),
                status: i32::from(r.try_get::<i16>("", "status").map_err(grpc::internal)?),
                replayed: true,
            })
        })
        .transpose()
    }
}

#[tonic::async_trait]
impl IntakeService for Intake {
    #[tracing::instrument(skip_all)]
    async fn submit_proposal(
        &self,
        request: Request<SubmitProposalRequest>,
    ) -> Result<Response<SubmitProposalResponse>, Status> {
        let who = claims(&request)?.clone();
        Ok(Response::new(
            self.submit(&who, request.into_inner()).await?,
        ))
    }

    #[tracing::instrument(skip_all)]
    async fn import_proposals(
        &self,
        request: Request<Streaming<ImportProposalsRequest>>,
    ) -> Result<Response<ImportProposalsResponse>, Status> {
        let who = claims(&request)?.clone();
        let mut stream = request.into_inner();
        let mut response = ImportProposalsResponse::default();
        while let Some(item) = stream.message().await? {
            let row = item.row;
            let Some(proposal) = item.proposal else {
                response.rejected += 1;
                response.rows.push(RowResult {
                    row,
                    proposal_id: String::new(),
                    errors: vec![FieldError {
                        field: "proposal".into(),
                        description: "is required".into(),
                    }],
                });
                continue;
            };
            match self.submit(&who, proposal).await {
                Ok(ok) => {
                    response.accepted += 1;
                    response.rows.push(RowResult {
                        row,
                        proposal_id: ok.proposal_id,
                        errors: vec![],
                    });
                }
                Err(status) if status.code() == tonic::Code::InvalidArgument => {
                    use tonic_types::StatusExt;
                    let errors = status
                        .get_details_bad_request()
                        .map(|b| {
                            b.field_violations
                                .into_iter()
                                .map(|f| FieldError {
                                    field: f.field,
                                    description: f.description,
                                })
                                .collect()
                        })
                        .unwrap_or_default();
                    response.rejected += 1;
                    response.rows.push(RowResult {
                        row,
                        proposal_id: String::new(),
                        errors,
                    });
                }
                Err(status) => return Err(status),
            }
        }
        Ok(Response::new(response))
    }

    #[tracing::instrument(skip_all)]
    async fn get_proposal(
        &self,
        request: Request<GetProposalRequest>,
    ) -> Result<Response<Proposal>, Status> {
        let who = claims(&request)?.clone();
        let id = uuid::Uuid::parse_str(&request.get_ref().proposal_id)
            .map_err(|_| grpc::invalid_field("proposal_id", "must be a UUID"))?;
        let row = self
            .db
            .query_one_raw(stmt(
                "SELECT proposal_id, channel, kind, status, region_code, external_reference, submitted_at, submitted_by, household FROM proposals WHERE proposal_id = $1",
                [id.into()],
            ))
            .await
            .map_err(grpc::internal)?
            .ok_or_else(|| Status::not_found("no such proposal"))?;
        let region: String = row.try_get("", "region_code").map_err(grpc::internal)?;
        who.require_region(&region)?;
        let household: Vec<u8> = row.try_get("", "household").map_err(grpc::internal)?;
        let submitted_at: chrono::DateTime<chrono::Utc> =
            row.try_get("", "submitted_at").map_err(grpc::internal)?;
        Ok(Response::new(Proposal {
            proposal_id: id.to_string(),
            channel: i32::from(row.try_get::<i16>("", "channel").map_err(grpc::internal)?),
            kind: i32::from(row.try_get::<i16>("", "kind").map_err(grpc::internal)?),
            status: i32::from(row.try_get::<i16>("", "status").map_err(grpc::internal)?),
            region_code: region,
            external_reference: row
                .try_get::<Option<String>>("", "external_reference")
                .map_err(grpc::internal)?
                .unwrap_or_default(),
            submitted_at: Some(prost_types::Timestamp {
                seconds: submitted_at.timestamp(),
                nanos: 0,
            }),
            submitted_by: row.try_get("", "submitted_by").map_err(grpc::internal)?,
            household: Some(
                dtks_proto::common::v1::Household::decode(household.as_slice())
                    .map_err(grpc::internal)?,
            ),
        }))
    }

    async fn list_proposals(
        &self,
        _: Request<ListProposalsRequest>,
    ) -> Result<Response<ListProposalsResponse>, Status> {
        Err(Status::unimplemented(
            "ListProposals arrives with the intake issue",
        ))
    }

    async fn withdraw_proposal(
        &self,
        _: Request<WithdrawProposalRequest>,
    ) -> Result<Response<Proposal>, Status> {
        Err(Status::unimplemented(
            "WithdrawProposal arrives with the intake issue",
        ))
    }
}

/// Keeps each proposal's status in step with verivali's decisions.
struct StatusUpdates;

impl EventHandler for StatusUpdates {
    async fn handle(
        &self,
        txn: &DatabaseTransaction,
        envelope: &Envelope,
    ) -> Result<(), HandlerError> {
        let (proposal_id, status) = match envelope.r#type.as_str() {
            events::HOUSEHOLD_ACCEPTED => (
                events::payload::<ev::HouseholdAccepted>(envelope)?.proposal_id,
                ProposalStatus::Accepted,
            ),
            events::HOUSEHOLD_RETURNED => (
                events::payload::<ev::HouseholdReturned>(envelope)?.proposal_id,
                ProposalStatus::Returned,
            ),
            _ => return Ok(()),
        };
        let id = uuid::Uuid::parse_str(&proposal_id)
            .map_err(|e| HandlerError::Permanent(e.to_string()))?;
        txn.execute_raw(stmt(
            "UPDATE proposals SET status = $2 WHERE proposal_id = $1",
            [id.into(), (status as i16).into()],
        ))
        .await?;
        Ok(())
    }
}
