use dtks_platform::app::Context;
use dtks_platform::auth::{Claims, Role, claims};
use dtks_platform::bus::{EventHandler, HandlerError};
use dtks_platform::db::stmt;
use dtks_platform::ratelimit::RateLimiter;
use dtks_platform::{events, grpc, outbox};
use dtks_proto::common::v1 as pb;
use dtks_proto::events::v1::{self as ev, Envelope};
use dtks_proto::intake::v1::intake_service_server::{IntakeService, IntakeServiceServer};
use dtks_proto::intake::v1::*;
use prost::Message;
use sea_orm::{ConnectionTrait, DatabaseConnection, DatabaseTransaction, TransactionTrait};
use tonic::{Request, Response, Status, Streaming};

use crate::check::{self, Prepared, Refusal};
use crate::store::{self, Stored};

pub async fn start(ctx: Context, listener: tokio::net::TcpListener) -> anyhow::Result<()> {
    let consumer = ctx
        .spawn_consumer(
            &[
                events::PROPOSAL_MATCHED,
                events::PROPOSAL_RESUBMITTED,
                events::HOUSEHOLD_ACCEPTED,
                events::HOUSEHOLD_RETURNED,
            ],
            StatusUpdates,
        )
        .await?;
    let service = IntakeServiceServer::new(Intake {
        db: ctx.db.clone(),
        outbox: ctx.outbox.clone(),
        limiter: RateLimiter::connect(&ctx.config.redis).await?,
        limits: ctx.config.limits.clone(),
    })
    .max_decoding_message_size(grpc::MAX_MESSAGE_BYTES)
    .max_encoding_message_size(grpc::MAX_SEND_BYTES);
    ctx.serve(listener, service, Some(consumer)).await
}

struct Intake {
    db: DatabaseConnection,
    outbox: outbox::OutboxSignal,
    limiter: RateLimiter,
    limits: dtks_platform::config::LimitsConfig,
}

/// Proposals a bulk import writes per transaction.
const BATCH: usize = 1_000;
/// Batches of one import stream being written at once (each on its own connection).
const WRITES_IN_FLIGHT: usize = 3;

fn today() -> chrono::NaiveDate {
    dtks_platform::clock::today()
}

fn status_name(code: i32) -> &'static str {
    ProposalStatus::try_from(code)
        .unwrap_or(ProposalStatus::Unspecified)
        .as_str_name()
}

impl Intake {
    async fn rate_limit(&self, who: &Claims) -> Result<(), Status> {
        if who.role == Role::Public {
            self.limiter
                .check(
                    "self_registration",
                    &who.sub,
                    self.limits.self_registration_per_minute,
                )
                .await?;
        }
        Ok(())
    }

    async fn store(&self, batch: Vec<Prepared>) -> Result<Vec<Stored>, Status> {
        let stored = store::store(&self.db, batch)
            .await
            .map_err(grpc::internal)?;
        if stored.iter().any(|s| !s.replayed) {
            self.outbox.wake();
        }
        Ok(stored)
    }

    async fn load(&self, id: uuid::Uuid, include_household: bool) -> Result<Proposal, Status> {
        let row = self
            .db
            .query_one_raw(stmt(
                &format!("{SELECT_PROPOSAL} WHERE proposal_id = $1"),
                [id.into()],
            ))
            .await
            .map_err(grpc::internal)?
            .ok_or_else(|| Status::not_found("no such proposal"))?;
        proposal_from_row(&row, include_household)
    }
}

const SELECT_PROPOSAL: &str = "SELECT proposal_id, channel, kind, change_type, status, region_code, external_reference, idempotency_key, submitted_at, updated_at, submitted_by, reason, status_reason, minutes_number, minutes_date, minutes_attendees, household FROM proposals";

fn timestamp(t: chrono::DateTime<chrono::Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: t.timestamp_subsec_nanos() as i32,
    }
}

fn proposal_from_row(
    row: &sea_orm::QueryResult,
    include_household: bool,
) -> Result<Proposal, Status> {
    let get_i16 = |c: &str| {
        row.try_get::<i16>("", c)
            .map(i32::from)
            .map_err(grpc::internal)
    };
    let get_text = |c: &str| {
        row.try_get::<Option<String>>("", c)
            .map(Option::unwrap_or_default)
            .map_err(grpc::internal)
    };
    let minutes_date: Option<chrono::NaiveDate> =
        row.try_get("", "minutes_date").map_err(grpc::internal)?;
    let minutes = minutes_date.map(|d| {
        use chrono::Datelike;
        Minutes {
            number: get_text("minutes_number").unwrap_or_default(),
            date: Some(pb::Date {
                year: d.year(),
                month: d.month() as i32,
                day: d.day() as i32,
            }),
            attendees: row
                .try_get::<Option<i32>>("", "minutes_attendees")
                .ok()
                .flatten()
                .unwrap_or_default() as u32,
        }
    });
    let household = if include_household {
        let stored: Vec<u8> = row.try_get("", "household").map_err(grpc::internal)?;
        let id: uuid::Uuid = row.try_get("", "proposal_id").map_err(grpc::internal)?;
        let bytes = dtks_platform::sealed::open(crate::store::SEALED_HOUSEHOLD, &id, &stored)
            .map_err(grpc::internal)?;
        Some(pb::Household::decode(bytes.as_slice()).map_err(grpc::internal)?)
    } else {
        None
    };
    Ok(Proposal {
        proposal_id: row
            .try_get::<uuid::Uuid>("", "proposal_id")
            .map_err(grpc::internal)?
            .to_string(),
        channel: get_i16("channel")?,
        kind: get_i16("kind")?,
        status: get_i16("status")?,
        region_code: get_text("region_code")?,
        external_reference: get_text("external_reference")?,
        submitted_at: Some(timestamp(
            row.try_get("", "submitted_at").map_err(grpc::internal)?,
        )),
        submitted_by: get_text("submitted_by")?,
        household,
        change_type: get_i16("change_type")?,
        reason: get_text("reason")?,
        minutes,
        status_reason: get_text("status_reason")?,
        updated_at: Some(timestamp(
            row.try_get("", "updated_at").map_err(grpc::internal)?,
        )),
        idempotency_key: get_text("idempotency_key")?,
    })
}

/// Whether `who` may see or act on a proposal of `region` submitted by `submitted_by`:
/// officers within their scope; a citizen only their own.
fn may_see(who: &Claims, proposal: &Proposal) -> bool {
    if who.role == Role::Public {
        proposal.submitted_by == who.sub
    } else {
        who.covers(&proposal.region_code)
    }
}

fn row_refused(row: u64, fields: Vec<(String, String)>) -> RowResult {
    RowResult {
        row,
        proposal_id: String::new(),
        errors: fields
            .into_iter()
            .map(|(field, description)| FieldError { field, description })
            .collect(),
        replayed: false,
    }
}

/// Checks one batch of an import and stores what passes; a result for every row.
async fn check_and_store(
    db: &DatabaseConnection,
    who: &Claims,
    batch: Vec<(u64, SubmitProposalRequest)>,
    today: chrono::NaiveDate,
) -> Result<Vec<RowResult>, Status> {
    let mut results = Vec::with_capacity(batch.len());
    let mut rows = Vec::with_capacity(batch.len());
    let mut prepared = Vec::with_capacity(batch.len());
    for (row, proposal) in batch {
        match check::prepare(who, proposal, today) {
            Ok(p) => {
                rows.push(row);
                prepared.push(p);
            }
            Err(refusal) => results.push(row_refused(row, refusal.into_fields())),
        }
    }
    let stored = store::store(db, prepared).await.map_err(grpc::internal)?;
    results.extend(rows.into_iter().zip(stored).map(|(row, stored)| RowResult {
        row,
        proposal_id: stored.proposal_id.to_string(),
        errors: vec![],
        replayed: stored.replayed,
    }));
    Ok(results)
}

/// Decodes and checks an opaque page token (`v1.<uuid>`).
fn page_cursor(page: Option<&pb::PageRequest>) -> Result<(Option<uuid::Uuid>, u64), Status> {
    let page = page.cloned().unwrap_or_default();
    let size = match page.page_size {
        0 => 100,
        n @ 1..=1000 => u64::from(n),
        _ => {
            return Err(grpc::invalid_field(
                "page.page_size",
                "must be at most 1000",
            ));
        }
    };
    if page.page_token.is_empty() {
        return Ok((None, size));
    }
    let cursor = page
        .page_token
        .strip_prefix("v1.")
        .and_then(|t| uuid::Uuid::parse_str(t).ok())
        .ok_or_else(|| {
            grpc::invalid_field("page.page_token", "is not a token this service issued")
        })?;
    Ok((Some(cursor), size))
}

#[tonic::async_trait]
impl IntakeService for Intake {
    #[tracing::instrument(skip_all)]
    async fn submit_proposal(
        &self,
        request: Request<SubmitProposalRequest>,
    ) -> Result<Response<SubmitProposalResponse>, Status> {
        let who = claims(&request)?.clone();
        self.rate_limit(&who).await?;
        let prepared =
            check::prepare(&who, request.into_inner(), today()).map_err(Refusal::into_status)?;
        let channel = prepared.channel;
        let stored = self
            .store(vec![prepared])
            .await?
            .pop()
            .ok_or_else(|| Status::internal("no answer for the proposal"))?;
        tracing::info!(
            proposal_id = %stored.proposal_id,
            channel = channel.as_str_name(),
            replayed = stored.replayed,
            "proposal taken"
        );
        Ok(Response::new(SubmitProposalResponse {
            proposal_id: stored.proposal_id.to_string(),
            status: stored.status,
            replayed: stored.replayed,
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn import_proposals(
        &self,
        request: Request<Streaming<ImportProposalsRequest>>,
    ) -> Result<Response<ImportProposalsResponse>, Status> {
        let who = claims(&request)?.clone();
        if who.role == Role::Public {
            return Err(Status::permission_denied(
                "bulk import is for officers; citizens register one household at a time",
            ));
        }
        let limit = self.limits.import_rows_per_stream;
        let mut stream = request.into_inner();
        let mut response = ImportProposalsResponse::default();
        let today = today();
        let mut received = 0u64;
        let mut pending: Vec<(u64, SubmitProposalRequest)> = Vec::with_capacity(BATCH);
        // Reading goes on while earlier batches are checked and written, up to
        // WRITES_IN_FLIGHT batches at once, each on its own task and connection.
        let mut working: tokio::task::JoinSet<Result<Vec<RowResult>, Status>> =
            tokio::task::JoinSet::new();
        loop {
            let item = stream.message().await?;
            let flush = item.is_none() || pending.len() >= BATCH;
            if flush && !pending.is_empty() {
                while working.len() >= WRITES_IN_FLIGHT {
                    if let Some(done) = working.join_next().await {
                        response.rows.extend(done.map_err(grpc::internal)??);
                    }
                }
                let batch = std::mem::take(&mut pending);
                let (db, who) = (self.db.clone(), who.clone());
                working.spawn(async move { check_and_store(&db, &who, batch, today).await });
                self.outbox.wake();
            }
            let Some(item) = item else { break };
            received += 1;
            let row = item.row;
            if received > limit {
                response.rows.push(row_refused(
                    row,
                    vec![(
                        "row".into(),
                        format!(
                            "a stream carries at most {limit} rows; send the rest in another import"
                        ),
                    )],
                ));
                continue;
            }
            match item.proposal {
                // Each row is checked at the edge like a single submission.
                Some(proposal) => {
                    let found = dtks_platform::edge::violations(
                        "dtks.intake.v1.SubmitProposalRequest",
                        &proposal,
                    );
                    if found.0.is_empty() {
                        pending.push((row, proposal));
                    } else {
                        response.rows.push(row_refused(
                            row,
                            found
                                .0
                                .into_iter()
                                .take(dtks_platform::grpc::MAX_LISTED_VIOLATIONS)
                                .map(|v| (v.field, v.description))
                                .collect(),
                        ));
                    }
                }
                None => response.rows.push(row_refused(
                    row,
                    vec![("proposal".into(), "is required".into())],
                )),
            }
        }
        while let Some(done) = working.join_next().await {
            response.rows.extend(done.map_err(grpc::internal)??);
        }
        response.rejected = response
            .rows
            .iter()
            .filter(|r| !r.errors.is_empty())
            .count() as u64;
        response.accepted = response.rows.len() as u64 - response.rejected;
        self.outbox.wake();
        response.rows.sort_by_key(|r| r.row);
        tracing::info!(
            accepted = response.accepted,
            rejected = response.rejected,
            "bulk import finished"
        );
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
        let proposal = self.load(id, true).await?;
        if !may_see(&who, &proposal) {
            // Not found rather than denied: a proposal outside the scope is not disclosed.
            return Err(Status::not_found("no such proposal"));
        }
        // The proposal names its members: the read is audited before it is answered.
        dtks_platform::audit::record(&self.db, &who, "intake.GetProposal", &[id.to_string()])
            .await
            .map_err(grpc::internal)?;
        Ok(Response::new(proposal))
    }

    #[tracing::instrument(skip_all)]
    async fn list_proposals(
        &self,
        request: Request<ListProposalsRequest>,
    ) -> Result<Response<ListProposalsResponse>, Status> {
        let who = claims(&request)?.clone();
        let req = request.into_inner();
        let (cursor, size) = page_cursor(req.page.as_ref())?;
        let mut sql = format!("{SELECT_PROPOSAL} WHERE true");
        let mut values: Vec<sea_orm::Value> = Vec::new();
        let mut bind = |sql: &mut String, clause: &str, value: sea_orm::Value| {
            values.push(value);
            sql.push_str(&clause.replace('?', &format!("${}", values.len())));
        };
        let region = if req.region_code.is_empty() {
            who.region.clone()
        } else {
            dtks_domain::RegionCode::parse(&req.region_code)
                .map_err(|e| grpc::invalid_field("region_code", e.to_string()))?;
            if who.role != Role::Public {
                who.require_region(&req.region_code)?;
            }
            req.region_code.clone()
        };
        if who.role == Role::Public {
            bind(&mut sql, " AND submitted_by = ?", who.sub.clone().into());
        }
        if !region.is_empty() {
            bind(
                &mut sql,
                " AND (region_code = ? OR region_code LIKE ",
                region.clone().into(),
            );
            bind(&mut sql, "?)", format!("{region}.%").into());
        }
        if req.channel != 0 {
            bind(&mut sql, " AND channel = ?", (req.channel as i16).into());
        }
        if req.kind != 0 {
            bind(&mut sql, " AND kind = ?", (req.kind as i16).into());
        }
        if req.status != 0 {
            bind(&mut sql, " AND status = ?", (req.status as i16).into());
        }
        let instant = |t: &prost_types::Timestamp, field: &str| {
            chrono::DateTime::from_timestamp(t.seconds, t.nanos.max(0) as u32)
                .ok_or_else(|| grpc::invalid_field(field, "is not a valid instant"))
        };
        if let Some(from) = &req.submitted_from {
            bind(
                &mut sql,
                " AND submitted_at >= ?",
                instant(from, "submitted_from")?.into(),
            );
        }
        if let Some(to) = &req.submitted_to {
            bind(
                &mut sql,
                " AND submitted_at < ?",
                instant(to, "submitted_to")?.into(),
            );
        }
        if req.period.is_some() {
            let (year, month) = dtks_platform::convert::period_key(req.period.as_ref())?;
            let start = chrono::NaiveDate::from_ymd_opt(year, month as u32, 1)
                .expect("checked period")
                .and_hms_opt(0, 0, 0)
                .expect("midnight")
                .and_utc();
            let end = start + chrono::Months::new(1);
            bind(&mut sql, " AND submitted_at >= ?", start.into());
            bind(&mut sql, " AND submitted_at < ?", end.into());
        }
        if let Some(cursor) = cursor {
            bind(&mut sql, " AND proposal_id < ?", cursor.into());
        }
        bind(
            &mut sql,
            " ORDER BY proposal_id DESC LIMIT ?",
            ((size + 1) as i64).into(),
        );
        let rows = self
            .db
            .query_all_raw(stmt(&sql, values))
            .await
            .map_err(grpc::internal)?;
        let mut proposals = rows
            .iter()
            .map(|r| proposal_from_row(r, req.include_household))
            .collect::<Result<Vec<_>, _>>()?;
        let next_page_token = if proposals.len() as u64 > size {
            proposals.truncate(size as usize);
            proposals
                .last()
                .map(|p| format!("v1.{}", p.proposal_id))
                .unwrap_or_default()
        } else {
            String::new()
        };
        // With their households the listed proposals name their members: audited.
        if req.include_household && !proposals.is_empty() {
            let ids: Vec<String> = proposals.iter().map(|p| p.proposal_id.clone()).collect();
            dtks_platform::audit::record(&self.db, &who, "intake.ListProposals", &ids)
                .await
                .map_err(grpc::internal)?;
        }
        Ok(Response::new(ListProposalsResponse {
            proposals,
            page: Some(pb::PageResponse { next_page_token }),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn withdraw_proposal(
        &self,
        request: Request<WithdrawProposalRequest>,
    ) -> Result<Response<Proposal>, Status> {
        let who = claims(&request)?.clone();
        let req = request.into_inner();
        let id = uuid::Uuid::parse_str(&req.proposal_id)
            .map_err(|_| grpc::invalid_field("proposal_id", "must be a UUID"))?;
        let reason = req.reason.trim();
        if reason.is_empty() || reason.chars().count() > check::MAX_REASON {
            return Err(grpc::invalid_field(
                "reason",
                "a withdrawal states its reason (at most 1000 characters)",
            ));
        }
        let txn = self.db.begin().await.map_err(grpc::internal)?;
        let row = txn
            .query_one_raw(stmt(
                &format!("{SELECT_PROPOSAL} WHERE proposal_id = $1 FOR UPDATE"),
                [id.into()],
            ))
            .await
            .map_err(grpc::internal)?
            .ok_or_else(|| Status::not_found("no such proposal"))?;
        let current = proposal_from_row(&row, false)?;
        if !may_see(&who, &current) {
            return Err(Status::not_found("no such proposal"));
        }
        let withdrawable = [
            ProposalStatus::Submitted as i32,
            ProposalStatus::InVerification as i32,
        ];
        if !withdrawable.contains(&current.status) {
            use tonic_types::{ErrorDetails, StatusExt};
            return Err(Status::with_error_details(
                tonic::Code::FailedPrecondition,
                format!(
                    "a {} proposal can no longer be withdrawn",
                    status_name(current.status)
                ),
                ErrorDetails::with_precondition_failure_violation(
                    "STATUS",
                    "proposal_id",
                    "only a proposal not yet verified (SUBMITTED or IN_VERIFICATION) can be withdrawn",
                ),
            ));
        }
        txn.execute_raw(stmt(
            "UPDATE proposals SET status = $2, status_reason = $3, updated_at = now() WHERE proposal_id = $1",
            [
                id.into(),
                (ProposalStatus::Withdrawn as i16).into(),
                reason.to_owned().into(),
            ],
        ))
        .await
        .map_err(grpc::internal)?;
        let envelope = events::envelope(
            events::PROPOSAL_WITHDRAWN,
            "intake",
            &current.region_code,
            &ev::ProposalWithdrawn {
                proposal_id: id.to_string(),
                reason: reason.to_owned(),
                withdrawn_by: who.sub.clone(),
            },
        );
        outbox::enqueue(&txn, &envelope)
            .await
            .map_err(grpc::internal)?;
        dtks_platform::audit::record(&txn, &who, "intake.WithdrawProposal", &[id.to_string()])
            .await
            .map_err(grpc::internal)?;
        txn.commit().await.map_err(grpc::internal)?;
        self.outbox.wake();
        tracing::info!(proposal_id = %id, "proposal withdrawn");
        Ok(Response::new(self.load(id, false).await?))
    }
}

/// Keeps each proposal's status in step with matching and verivali. A withdrawn
/// proposal keeps its status whatever arrives after the withdrawal.
struct StatusUpdates;

impl EventHandler for StatusUpdates {
    async fn handle(
        &self,
        txn: &DatabaseTransaction,
        envelope: &Envelope,
    ) -> Result<(), HandlerError> {
        let (proposal_id, status) = match envelope.r#type.as_str() {
            events::PROPOSAL_MATCHED => (
                events::payload::<ev::ProposalMatched>(envelope)?.proposal_id,
                ProposalStatus::InVerification,
            ),
            events::PROPOSAL_RESUBMITTED => (
                events::payload::<ev::ProposalSubmitted>(envelope)?.proposal_id,
                ProposalStatus::InVerification,
            ),
            events::HOUSEHOLD_ACCEPTED => (
                events::payload::<ev::HouseholdAccepted>(envelope)?.proposal_id,
                ProposalStatus::Accepted,
            ),
            events::HOUSEHOLD_RETURNED => {
                let returned: ev::HouseholdReturned = events::payload(envelope)?;
                let status = if returned.r#final {
                    ProposalStatus::Rejected
                } else {
                    ProposalStatus::Returned
                };
                (returned.proposal_id, status)
            }
            _ => return Ok(()),
        };
        let id = uuid::Uuid::parse_str(&proposal_id)
            .map_err(|e| HandlerError::Permanent(e.to_string()))?;
        // Matching's event may arrive after verivali's decision: never step back to
        // IN_VERIFICATION from a decided status, except a returned proposal the regency
        // resubmitted.
        let only_from: &[i16] = match (envelope.r#type.as_str(), status) {
            (events::PROPOSAL_RESUBMITTED, _) => &[ProposalStatus::Returned as i16],
            (_, ProposalStatus::InVerification) => &[ProposalStatus::Submitted as i16],
            _ => &[
                ProposalStatus::Submitted as i16,
                ProposalStatus::InVerification as i16,
            ],
        };
        txn.execute_raw(stmt(
            "UPDATE proposals SET status = $2, updated_at = now() WHERE proposal_id = $1 AND status = ANY($3)",
            [id.into(), (status as i16).into(), only_from.to_vec().into()],
        ))
        .await?;
        Ok(())
    }
}
