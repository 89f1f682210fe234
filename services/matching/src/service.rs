use dtks_platform::app::Context;
use dtks_platform::bus::{EventHandler, HandlerError};
use dtks_platform::cache::Cache;
use dtks_platform::db::{Migration, Migrator as MigratorTrait, SqlMigration, sql_migrations, stmt};
use dtks_platform::{events, grpc, outbox};
use dtks_proto::common::v1 as pb;
use dtks_proto::events::v1::{self as ev, Envelope};
use dtks_proto::matching::v1::matching_service_server::{MatchingService, MatchingServiceServer};
use dtks_proto::matching::v1::*;
use prost::Message;
use std::sync::Arc;

use futures::StreamExt;
use sea_orm::{ConnectionTrait, DatabaseConnection, DatabaseTransaction, TransactionTrait};
use tokio::sync::Notify;
use tonic::{Request, Response, Status};

use crate::dci::DciRegistry;
use crate::matcher::{self, Matcher};
use crate::{index, review};

pub struct Migrator;

impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn Migration>> {
        sql_migrations(vec![
            SqlMigration {
                name: "m0001_match_results",
                sql: r#"
CREATE TABLE match_results (
    proposal_id UUID PRIMARY KEY,
    region_code TEXT NOT NULL,
    outcome SMALLINT NOT NULL,
    result BYTEA NOT NULL,
    matched_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
"#,
            },
            SqlMigration {
                name: "m0002_pending",
                sql: r#"
-- Proposals received and not yet matched. A civil-registry outage leaves them here,
-- retried with backoff, instead of failing or dead-lettering their events.
CREATE TABLE pending (
    proposal_id UUID PRIMARY KEY,
    region_code TEXT NOT NULL,
    envelope BYTEA NOT NULL,
    attempts INT NOT NULL DEFAULT 0,
    next_attempt_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_error TEXT,
    received_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX pending_due ON pending (next_attempt_at);
"#,
            },
            SqlMigration {
                name: "m0003_person_index_reviews_life_events",
                sql: r#"
-- Every person DTKS holds or is verifying (see index.rs): one holder per NIK.
CREATE TABLE person_index (
    proposal_id UUID NOT NULL,
    family_index INT NOT NULL,
    member_index INT NOT NULL,
    nik TEXT,
    kk_number TEXT NOT NULL,
    household_id TEXT,
    full_name TEXT NOT NULL,
    -- Phonetic, sorted name parts (linkage NameKey), for duplicates without a NIK.
    name_key TEXT NOT NULL,
    birth_date DATE,
    sex SMALLINT NOT NULL,
    village_code TEXT NOT NULL,
    indexed_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (proposal_id, family_index, member_index)
);
CREATE UNIQUE INDEX person_index_nik ON person_index (nik) WHERE nik IS NOT NULL;
CREATE INDEX person_index_birth ON person_index (birth_date, (left(village_code, 8)));
CREATE INDEX person_index_name ON person_index (name_key, birth_date);
CREATE INDEX person_index_household ON person_index (household_id);

-- Probable matches awaiting a clerk (clerical review).
CREATE TABLE review_pairs (
    pair_id UUID PRIMARY KEY,
    proposal_id UUID NOT NULL,
    region_code TEXT NOT NULL,
    family_index INT NOT NULL,
    member_index INT NOT NULL,
    candidate JSONB NOT NULL,
    score DOUBLE PRECISION NOT NULL,
    reason TEXT NOT NULL,
    -- The person's outcome before linkage: what "different person" restores.
    outcome_before SMALLINT NOT NULL,
    decision SMALLINT NOT NULL DEFAULT 0,
    decided_by TEXT,
    note TEXT,
    decided_at TIMESTAMPTZ,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (proposal_id, family_index, member_index)
);
CREATE INDEX review_pairs_open ON review_pairs (region_code text_pattern_ops, created_at) WHERE decision = 0;

-- Vital events taken from the registry (each once, however often delivered).
CREATE TABLE life_events (
    event_id UUID PRIMARY KEY,
    kind TEXT NOT NULL,
    in_dtks BOOLEAN NOT NULL,
    received_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
"#,
            },
        ])
    }
}

pub async fn start(ctx: Context, listener: tokio::net::TcpListener) -> anyhow::Result<()> {
    let url = ctx
        .config
        .upstream
        .civil_registry_url
        .clone()
        .ok_or_else(|| anyhow::anyhow!("DTKS_UPSTREAM__CIVIL_REGISTRY_URL is required"))?;
    let registry = DciRegistry::new(&url, &ctx.config.dci)?;
    let cache = Cache::connect(&ctx.config.redis).await?;
    let matcher = Matcher {
        registry: registry.clone(),
        cache: cache.clone(),
        model: Arc::new(crate::link::load_model()?),
        populations: Default::default(),
    };
    if let Some(addr) = &ctx.config.dci.callback_addr {
        let callbacks = crate::callbacks::router(crate::callbacks::Callbacks {
            registry: registry.clone(),
            db: ctx.db.clone(),
            cache,
            outbox: ctx.outbox.clone(),
        });
        let listener = tokio::net::TcpListener::bind(addr).await?;
        tracing::info!(addr = %listener.local_addr()?, "DCI callbacks listening");
        let shutdown = ctx.shutdown.clone();
        tokio::spawn(async move {
            if let Err(error) = axum::serve(dtks_platform::dci::no_delay(listener), callbacks)
                .with_graceful_shutdown(shutdown.wait())
                .await
            {
                tracing::error!(%error, "DCI callback listener failed");
            }
        });
        if ctx.config.dci.callback_url.is_some() {
            tokio::spawn(crate::callbacks::keep_subscribing(
                registry.clone(),
                ctx.shutdown.clone(),
            ));
        }
    }
    let wake = Arc::new(Notify::new());
    tokio::spawn(run_pending(
        ctx.db.clone(),
        matcher.clone(),
        ctx.outbox.clone(),
        wake.clone(),
        ctx.shutdown.clone(),
    ));
    let consumer = ctx
        .spawn_consumer(
            &[
                events::PROPOSAL_SUBMITTED,
                events::PROPOSAL_RESUBMITTED,
                events::HOUSEHOLD_ACCEPTED,
                events::HOUSEHOLD_RETURNED,
                events::HOUSEHOLD_REMOVED,
            ],
            Consumed { wake },
        )
        .await?;
    let service = MatchingServiceServer::new(Api {
        db: ctx.db.clone(),
        matcher,
        outbox: ctx.outbox.clone(),
        wave_limit: ctx.config.limits.wave_persons_per_stream,
    })
    .max_decoding_message_size(grpc::MAX_MESSAGE_BYTES)
    .max_encoding_message_size(grpc::MAX_SEND_BYTES);
    ctx.serve(listener, service, Some(consumer)).await
}

/// Receives `proposal.submitted` into `pending` (receiving never waits on the civil
/// registry, so an outage cannot fail or dead-letter the event), and follows verivali's
/// decisions in the person index.
struct Consumed {
    wake: Arc<Notify>,
}

fn uuid_of(text: &str) -> Result<uuid::Uuid, HandlerError> {
    uuid::Uuid::parse_str(text).map_err(|e| HandlerError::Permanent(format!("proposal_id: {e}")))
}

impl EventHandler for Consumed {
    async fn handle(
        &self,
        txn: &DatabaseTransaction,
        envelope: &Envelope,
    ) -> Result<(), HandlerError> {
        match envelope.r#type.as_str() {
            events::HOUSEHOLD_ACCEPTED => {
                let accepted: ev::HouseholdAccepted = events::payload(envelope)?;
                index::accepted(txn, uuid_of(&accepted.proposal_id)?, &accepted.household_id)
                    .await?;
            }
            events::HOUSEHOLD_RETURNED => {
                let returned: ev::HouseholdReturned = events::payload(envelope)?;
                index::returned(txn, uuid_of(&returned.proposal_id)?).await?;
            }
            events::HOUSEHOLD_REMOVED => {
                let removed: ev::HouseholdRemoved = events::payload(envelope)?;
                index::removed(txn, &removed.household_id).await?;
            }
            // proposal.submitted, and proposal.resubmitted (a returned proposal corrected
            // by the regency) with the same payload: both are matched afresh.
            _ => {
                let submitted: ev::ProposalSubmitted = events::payload(envelope)?;
                txn.execute_raw(stmt(
                    "INSERT INTO pending (proposal_id, region_code, envelope) VALUES ($1, $2, $3)
                     ON CONFLICT (proposal_id) DO NOTHING",
                    [
                        uuid_of(&submitted.proposal_id)?.into(),
                        envelope.region_code.clone().into(),
                        envelope.encode_to_vec().into(),
                    ],
                ))
                .await?;
            }
        }
        Ok(())
    }

    fn after_commit(&self) {
        self.wake.notify_one();
    }
}

/// Proposals claimed per round, and how long a claim holds before another replica
/// (or this one, after a crash) may take the proposal again.
const CLAIM: i64 = 16;
const CONCURRENCY: usize = 8;
const LEASE_SECS: i64 = 120;

/// Delay before the next attempt after `failures` failures: 2 s doubling to at most 64 s.
fn backoff_secs(failures: i32) -> i64 {
    1i64 << failures.clamp(1, 6) as u32
}

/// Matches pending proposals until shutdown: claims due ones under a lease, asks the
/// registry outside any transaction, then stores the result, its event and the removal
/// from `pending` in one transaction — or, when the registry fails, schedules the next
/// attempt with backoff.
async fn run_pending(
    db: DatabaseConnection,
    matcher: Matcher,
    outbox: outbox::OutboxSignal,
    wake: Arc<Notify>,
    shutdown: dtks_platform::shutdown::Shutdown,
) {
    while !shutdown.is_triggered() {
        let claimed = match claim(&db).await {
            Ok(rows) => rows,
            Err(error) => {
                tracing::warn!(%error, "cannot claim pending proposals");
                Vec::new()
            }
        };
        let busy = !claimed.is_empty();
        // The claimed proposals are matched side by side: each waits mostly on the
        // registry.
        futures::stream::iter(claimed)
            .for_each_concurrent(CONCURRENCY, |(proposal_id, attempts, envelope)| {
                let (db, matcher, outbox) = (&db, &matcher, &outbox);
                async move {
                    match match_one(db, matcher, &envelope).await {
                        Ok(()) => outbox.wake(),
                        Err(error) => delay(db, proposal_id, attempts + 1, &error).await,
                    }
                }
            })
            .await;
        if !busy {
            tokio::select! {
                _ = wake.notified() => {}
                _ = tokio::time::sleep(std::time::Duration::from_millis(500)) => {}
                _ = shutdown.clone().wait() => {}
            }
        }
    }
}

/// Records a failed attempt and when the next one is due.
async fn delay(
    db: &DatabaseConnection,
    proposal_id: uuid::Uuid,
    failures: i32,
    error: &anyhow::Error,
) {
    tracing::warn!(error = %format!("{error:#}"), attempts = failures, "matching delayed");
    let stored = db
        .execute_raw(stmt(
            "UPDATE pending SET attempts = $2, last_error = $3,
                 next_attempt_at = now() + make_interval(secs => $4)
             WHERE proposal_id = $1",
            [
                proposal_id.into(),
                failures.into(),
                format!("{error:#}").into(),
                (backoff_secs(failures) as f64).into(),
            ],
        ))
        .await;
    if let Err(error) = stored {
        // The lease runs out and the proposal is claimed again: nothing is lost.
        tracing::warn!(%error, "cannot record a delayed attempt");
    }
}

/// Due proposals, leased to this worker: (id, failed attempts so far, encoded envelope).
async fn claim(db: &DatabaseConnection) -> Result<Vec<(uuid::Uuid, i32, Vec<u8>)>, sea_orm::DbErr> {
    let rows = db
        .query_all_raw(stmt(
            "UPDATE pending SET next_attempt_at = now() + make_interval(secs => $2)
             WHERE proposal_id IN (
                 SELECT proposal_id FROM pending WHERE next_attempt_at <= now()
                 ORDER BY next_attempt_at LIMIT $1 FOR UPDATE SKIP LOCKED)
             RETURNING proposal_id, attempts, envelope",
            [CLAIM.into(), (LEASE_SECS as f64).into()],
        ))
        .await?;
    rows.iter()
        .map(|row| {
            Ok((
                row.try_get("", "proposal_id")?,
                row.try_get("", "attempts")?,
                row.try_get("", "envelope")?,
            ))
        })
        .collect()
}

/// Matches one proposal (its `proposal.submitted` envelope, encoded) and stores the
/// result with its event. A failure of any kind is this proposal's alone.
async fn match_one(
    db: &DatabaseConnection,
    matcher: &Matcher,
    encoded: &[u8],
) -> anyhow::Result<()> {
    let envelope = &Envelope::decode(encoded)?;
    // Matching continues the trace of the proposal's submission, however long it waited.
    let span = tracing::info_span!("match_proposal", trace_id = tracing::field::Empty);
    dtks_platform::telemetry::set_remote_parent(&span, &envelope.traceparent, &envelope.tracestate);
    dtks_platform::telemetry::record_trace_id(&span);
    tracing::Instrument::instrument(match_envelope(db, matcher, envelope), span).await
}

async fn match_envelope(
    db: &DatabaseConnection,
    matcher: &Matcher,
    envelope: &Envelope,
) -> anyhow::Result<()> {
    let submitted: ev::ProposalSubmitted = events::payload(envelope)?;
    let household = submitted.household.clone().unwrap_or_default();
    let proposal_id = uuid::Uuid::parse_str(&submitted.proposal_id)?;
    // The registry is asked outside any transaction.
    let assessed = matcher.assess_household(&household).await?;
    let txn = db.begin().await?;
    let persons = matcher::settle(
        &txn,
        &matcher.model,
        proposal_id,
        &envelope.region_code,
        &household,
        assessed,
        true,
    )
    .await?;
    let outcome = matcher::household_outcome(&persons);
    let matched = ev::ProposalMatched {
        proposal_id: submitted.proposal_id.clone(),
        channel: submitted.channel,
        kind: submitted.kind,
        household: Some(household),
        persons,
        outcome: outcome as i32,
    };
    txn.execute_raw(stmt(
        "INSERT INTO match_results (proposal_id, region_code, outcome, result) VALUES ($1, $2, $3, $4)
         ON CONFLICT (proposal_id) DO UPDATE SET outcome = EXCLUDED.outcome, result = EXCLUDED.result, matched_at = now()",
        [proposal_id.into(), envelope.region_code.clone().into(), (outcome as i16).into(), matched.encode_to_vec().into()],
    ))
    .await?;
    outbox::enqueue(
        &txn,
        &events::envelope(
            events::PROPOSAL_MATCHED,
            "matching",
            &envelope.region_code,
            &matched,
        ),
    )
    .await?;
    txn.execute_raw(stmt(
        "DELETE FROM pending WHERE proposal_id = $1",
        [proposal_id.into()],
    ))
    .await?;
    txn.commit().await?;
    Ok(())
}

struct Api {
    db: DatabaseConnection,
    matcher: Matcher,
    outbox: outbox::OutboxSignal,
    /// Persons one MatchWave stream may carry.
    wave_limit: u64,
}

/// Persons of a wave assessed together (their NIKs in one round of messages, their
/// searches in the next).
const WAVE_CHUNK: usize = 500;
/// Chunks of one wave being assessed at once.
const WAVE_CHUNKS_IN_FLIGHT: usize = 4;

type WaveStream = std::pin::Pin<
    Box<dyn futures::Stream<Item = Result<MatchWaveResponse, Status>> + Send + 'static>,
>;

/// A match request checked at the edge of MatchPerson and of each person of a wave:
/// the person and their village, or the field refused and why.
fn admit(
    who: &dtks_platform::auth::Claims,
    request: MatchPersonRequest,
) -> Result<(pb::Person, String), Status> {
    let MatchPersonRequest {
        person,
        village_code,
    } = request;
    // A NIK that is not a NIK is not refused: the person is matched on the other
    // fields, and the registry's NIK comes back as a correction.
    let person = person.ok_or_else(|| grpc::invalid_field("person", "is required"))?;
    if !dtks_platform::reference::village_codes().contains(village_code.as_str()) {
        return Err(grpc::invalid_field(
            "village_code",
            "is not a village code of the reference data",
        ));
    }
    who.require_region(&village_code)?;
    Ok((person, village_code))
}

/// The answer MatchPerson gives for an assessed person once DTKS has been checked.
fn response_of(assessed: &matcher::Assessed, m: ev::PersonMatch) -> MatchPersonResponse {
    let reason = assessed
        .review
        .as_ref()
        .map(|(_, reason)| reason.clone())
        .unwrap_or_default();
    let nik_holder = assessed.holder.as_ref().map(|h| pb::Person {
        nik: h.nik.clone(),
        full_name: h.full_name.clone(),
        birth_date: crate::link::date_of(&h.birth_date),
        sex: crate::link::sex_code(&h.sex).map_or(0, i32::from),
        ..Default::default()
    });
    MatchPersonResponse {
        outcome: m.outcome,
        corrections: m.corrections,
        score: m.link_probability,
        duplicate_household_id: m.duplicate_household_id,
        duplicate_proposal_id: m.duplicate_proposal_id,
        duplicate_kk_number: m.duplicate_kk_number,
        reason,
        nik_holder,
        model_version: m.model_version,
    }
}

/// A person of a wave refused at the edge: the fields the refusal names, within
/// `prefix`; a refusal naming none (the region) is the village's.
fn refused(reference: String, prefix: &str, status: &Status) -> MatchWaveResponse {
    let code = dtks_platform::grpc::code_name(status.code());
    let mut refusals: Vec<Refusal> = grpc::violations_of(status)
        .into_iter()
        .map(|(field, reason)| Refusal {
            field: format!("{prefix}{field}"),
            reason,
            code: code.to_owned(),
        })
        .collect();
    if refusals.is_empty() {
        refusals.push(Refusal {
            field: format!("{prefix}village_code"),
            reason: status.message().to_owned(),
            code: code.to_owned(),
        });
    }
    MatchWaveResponse {
        reference,
        result: None,
        refused: refusals,
    }
}

/// Assesses one chunk of a wave and answers its persons: the lookup is audited (who,
/// which villages) before any result leaves.
async fn wave_chunk(
    db: DatabaseConnection,
    matcher: Matcher,
    who: dtks_platform::auth::Claims,
    chunk: Vec<(String, pb::Person, String)>,
) -> Result<Vec<MatchWaveResponse>, Status> {
    let subjects: Vec<(&pb::Person, &str)> =
        chunk.iter().map(|(_, p, v)| (p, v.as_str())).collect();
    let assessed = matcher
        .assess_many(&subjects)
        .await
        .map_err(|e| Status::unavailable(format!("civil registry unavailable: {e}")))?;
    let mut villages: Vec<String> = chunk.iter().map(|(_, _, v)| v.clone()).collect();
    villages.sort();
    villages.dedup();
    dtks_platform::audit::record(&db, &who, "matching.MatchWave", &villages)
        .await
        .map_err(grpc::internal)?;
    let version = crate::link::model_version();
    Ok(chunk
        .into_iter()
        .zip(assessed)
        .map(|((reference, _, _), a)| {
            let m = ev::PersonMatch {
                outcome: a.outcome as i32,
                corrections: a.corrections.clone(),
                link_probability: a.probability,
                model_version: version.clone(),
                ..Default::default()
            };
            MatchWaveResponse {
                reference,
                result: Some(response_of(&a, m)),
                refused: vec![],
            }
        })
        .collect())
}

impl Api {
    /// Why a proposal has no match result: waiting its turn (NOT_FOUND), delayed by a
    /// civil-registry outage (UNAVAILABLE, with the attempts so far), or unknown.
    async fn not_matched_yet(&self, who: &dtks_platform::auth::Claims, id: uuid::Uuid) -> Status {
        let row = match self
            .db
            .query_one_raw(stmt(
                "SELECT region_code, attempts, next_attempt_at::text AS next FROM pending WHERE proposal_id = $1",
                [id.into()],
            ))
            .await
        {
            Ok(row) => row,
            Err(error) => return grpc::internal(error),
        };
        let Some(row) = row else {
            return Status::not_found("no match result for this proposal");
        };
        let region: String = row.try_get("", "region_code").unwrap_or_default();
        if let Err(refused) = who.require_region(&region) {
            return refused;
        }
        let attempts: i32 = row.try_get("", "attempts").unwrap_or_default();
        if attempts == 0 {
            Status::not_found("received; not matched yet")
        } else {
            let next: String = row.try_get("", "next").unwrap_or_default();
            Status::unavailable(format!(
                "matching delayed: the civil registry did not answer in {attempts} attempts; next attempt at {next}"
            ))
        }
    }
}

#[tonic::async_trait]
impl MatchingService for Api {
    #[tracing::instrument(skip_all)]
    async fn match_person(
        &self,
        request: Request<MatchPersonRequest>,
    ) -> Result<Response<MatchPersonResponse>, Status> {
        let who = dtks_platform::auth::claims(&request)?.clone();
        let (person, village_code) = admit(&who, request.into_inner())?;
        let unavailable = |e: crate::dci::RegistryError| {
            Status::unavailable(format!("civil registry unavailable: {e}"))
        };
        let assessed = self
            .matcher
            .assess(
                &[(&person, village_code.as_str())],
                matcher::Schedule::AtOnce,
            )
            .await
            .map_err(unavailable)?
            .pop()
            .unwrap_or_default();
        // The duplicate check looks at DTKS without changing it: the transaction is
        // rolled back.
        let household = pb::Household {
            address: Some(pb::Address {
                village_code: village_code.clone(),
                ..Default::default()
            }),
            families: vec![pb::Family {
                members: vec![person],
                ..Default::default()
            }],
            ..Default::default()
        };
        let txn = self.db.begin().await.map_err(grpc::internal)?;
        let settled = matcher::settle(
            &txn,
            &self.matcher.model,
            uuid::Uuid::nil(),
            &village_code,
            &household,
            vec![assessed.clone()],
            false,
        )
        .await
        .map_err(grpc::internal)?;
        txn.rollback().await.map_err(grpc::internal)?;
        let m = settled.into_iter().next().unwrap_or_default();
        // A person was looked up in the civil registry: who, and for which village (the
        // NIK is never written to the log).
        dtks_platform::audit::record(
            &self.db,
            &who,
            "matching.MatchPerson",
            std::slice::from_ref(&village_code),
        )
        .await
        .map_err(grpc::internal)?;
        Ok(Response::new(response_of(&assessed, m)))
    }

    type MatchWaveStream = WaveStream;

    #[tracing::instrument(skip_all)]
    async fn match_wave(
        &self,
        request: Request<tonic::Streaming<MatchWaveRequest>>,
    ) -> Result<Response<WaveStream>, Status> {
        let who = dtks_platform::auth::claims(&request)?.clone();
        let mut incoming = request.into_inner();
        let (db, matcher, limit) = (self.db.clone(), self.matcher.clone(), self.wave_limit);
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<MatchWaveResponse, Status>>(WAVE_CHUNK);
        tokio::spawn(async move {
            let mut working: tokio::task::JoinSet<Result<Vec<MatchWaveResponse>, Status>> =
                tokio::task::JoinSet::new();
            let mut chunk = Vec::with_capacity(WAVE_CHUNK);
            let mut received = 0u64;
            // Answers what finished; false once the caller has gone or a chunk failed.
            async fn deliver(
                done: Result<Result<Vec<MatchWaveResponse>, Status>, tokio::task::JoinError>,
                tx: &tokio::sync::mpsc::Sender<Result<MatchWaveResponse, Status>>,
            ) -> bool {
                match done.map_err(grpc::internal).and_then(|r| r) {
                    Ok(answers) => {
                        for answer in answers {
                            if tx.send(Ok(answer)).await.is_err() {
                                return false;
                            }
                        }
                        true
                    }
                    Err(status) => {
                        let _ = tx.send(Err(status)).await;
                        false
                    }
                }
            }
            loop {
                let item = match incoming.message().await {
                    Ok(item) => item,
                    Err(status) => {
                        let _ = tx.send(Err(status)).await;
                        return;
                    }
                };
                let last = item.is_none();
                if let Some(item) = item {
                    received += 1;
                    let violations =
                        dtks_platform::edge::violations("dtks.matching.v1.MatchWaveRequest", &item);
                    let admitted = if received > limit {
                        Err((
                            "",
                            grpc::invalid_field(
                                "reference",
                                format!(
                                    "a wave carries at most {limit} persons; send the rest in another"
                                ),
                            ),
                        ))
                    } else if !violations.0.is_empty() {
                        Err(("", grpc::invalid_argument(&violations)))
                    } else {
                        item.request
                            .ok_or_else(|| ("", grpc::invalid_field("request", "is required")))
                            .and_then(|r| admit(&who, r).map_err(|s| ("request.", s)))
                    };
                    match admitted {
                        Ok((person, village)) => chunk.push((item.reference, person, village)),
                        Err((prefix, status)) => {
                            let answer = refused(item.reference, prefix, &status);
                            if tx.send(Ok(answer)).await.is_err() {
                                return;
                            }
                        }
                    }
                }
                if chunk.len() >= WAVE_CHUNK || (last && !chunk.is_empty()) {
                    while working.len() >= WAVE_CHUNKS_IN_FLIGHT {
                        if let Some(done) = working.join_next().await
                            && !deliver(done, &tx).await
                        {
                            return;
                        }
                    }
                    let batch = std::mem::replace(&mut chunk, Vec::with_capacity(WAVE_CHUNK));
                    working.spawn(wave_chunk(db.clone(), matcher.clone(), who.clone(), batch));
                }
                if last {
                    break;
                }
            }
            while let Some(done) = working.join_next().await {
                if !deliver(done, &tx).await {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    #[tracing::instrument(skip_all)]
    async fn get_proposal_match(
        &self,
        request: Request<GetProposalMatchRequest>,
    ) -> Result<Response<ev::ProposalMatched>, Status> {
        let who = dtks_platform::auth::claims(&request)?.clone();
        let id = uuid::Uuid::parse_str(&request.get_ref().proposal_id)
            .map_err(|_| grpc::invalid_field("proposal_id", "must be a UUID"))?;
        let Some(row) = self
            .db
            .query_one_raw(stmt(
                "SELECT region_code, result FROM match_results WHERE proposal_id = $1",
                [id.into()],
            ))
            .await
            .map_err(grpc::internal)?
        else {
            return Err(self.not_matched_yet(&who, id).await);
        };
        who.require_region(
            &row.try_get::<String>("", "region_code")
                .map_err(grpc::internal)?,
        )?;
        let bytes: Vec<u8> = row.try_get("", "result").map_err(grpc::internal)?;
        dtks_platform::audit::record(
            &self.db,
            &who,
            "matching.GetProposalMatch",
            &[id.to_string()],
        )
        .await
        .map_err(grpc::internal)?;
        Ok(Response::new(
            ev::ProposalMatched::decode(bytes.as_slice()).map_err(grpc::internal)?,
        ))
    }

    #[tracing::instrument(skip_all)]
    async fn list_review_pairs(
        &self,
        request: Request<ListReviewPairsRequest>,
    ) -> Result<Response<ListReviewPairsResponse>, Status> {
        let who = dtks_platform::auth::claims(&request)?;
        let r = request.get_ref();
        let (pairs, next_page_token) = review::list(
            &self.db,
            who,
            &r.region_code,
            r.include_decided,
            r.page.as_ref(),
        )
        .await?;
        if !pairs.is_empty() {
            let ids: Vec<String> = pairs.iter().map(|p| p.pair_id.clone()).collect();
            dtks_platform::audit::record(&self.db, who, "matching.ListReviewPairs", &ids)
                .await
                .map_err(grpc::internal)?;
        }
        Ok(Response::new(ListReviewPairsResponse {
            pairs,
            page: Some(pb::PageResponse { next_page_token }),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn decide_review_pair(
        &self,
        request: Request<DecideReviewPairRequest>,
    ) -> Result<Response<ReviewPair>, Status> {
        let who = dtks_platform::auth::claims(&request)?;
        let r = request.get_ref();
        let decision = ReviewDecision::try_from(r.decision).unwrap_or_default();
        let pair = review::decide(&self.db, who, &r.pair_id, decision, &r.note).await?;
        self.outbox.wake();
        Ok(Response::new(pair))
    }
}
