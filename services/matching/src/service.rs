use dtks_platform::app::Context;
use dtks_platform::bus::{EventHandler, HandlerError};
use dtks_platform::cache::Cache;
use dtks_platform::db::{Migration, Migrator as MigratorTrait, SqlMigration, sql_migrations, stmt};
use dtks_platform::{events, grpc, outbox};
use dtks_proto::common::v1 as pb;
use dtks_proto::events::v1::{self as ev, Envelope, PersonOutcome};
use dtks_proto::matching::v1::matching_service_server::{MatchingService, MatchingServiceServer};
use dtks_proto::matching::v1::*;
use prost::Message;
use std::sync::Arc;

use futures::StreamExt;
use sea_orm::{ConnectionTrait, DatabaseConnection, DatabaseTransaction, TransactionTrait};
use tokio::sync::Notify;
use tonic::{Request, Response, Status};

use crate::dci::{DciRegistry, RegistryPerson};

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
        ])
    }
}

const CACHE_TTL_SECS: u64 = 3600;

pub async fn start(ctx: Context, listener: tokio::net::TcpListener) -> anyhow::Result<()> {
    let url = ctx
        .config
        .upstream
        .civil_registry_url
        .clone()
        .ok_or_else(|| anyhow::anyhow!("DTKS_UPSTREAM__CIVIL_REGISTRY_URL is required"))?;
    let matcher = Matcher {
        registry: DciRegistry::new(&url)?,
        cache: Cache::connect(&ctx.config.redis).await?,
    };
    let wake = Arc::new(Notify::new());
    tokio::spawn(run_pending(
        ctx.db.clone(),
        matcher.clone(),
        ctx.outbox.clone(),
        wake.clone(),
        ctx.shutdown.clone(),
    ));
    let consumer = ctx
        .spawn_consumer(&[events::PROPOSAL_SUBMITTED], Submitted { wake })
        .await?;
    let service = MatchingServiceServer::new(Api {
        db: ctx.db.clone(),
        matcher,
    })
    .max_decoding_message_size(grpc::MAX_MESSAGE_BYTES)
    .max_encoding_message_size(grpc::MAX_SEND_BYTES);
    ctx.serve(listener, service, Some(consumer)).await
}

#[derive(Clone)]
struct Matcher {
    registry: DciRegistry,
    cache: Cache,
}

fn normalise(name: &str) -> String {
    name.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_uppercase()
}

fn iso(d: Option<&pb::Date>) -> String {
    d.map(|d| format!("{:04}-{:02}-{:02}", d.year, d.month, d.day))
        .unwrap_or_default()
}

impl Matcher {
    async fn lookup(&self, nik: &str) -> anyhow::Result<Option<RegistryPerson>> {
        let key = format!("dci:nik:{nik}");
        if let Ok(Some(hit)) = self.cache.get::<Option<RegistryPerson>>(&key).await {
            return Ok(hit);
        }
        let answer = self.registry.find_by_nik(nik).await?;
        if let Err(error) = self.cache.put(&key, &answer, CACHE_TTL_SECS).await {
            tracing::warn!(%error, "registry cache unavailable");
        }
        Ok(answer)
    }

    /// Exact NIK check: outcome and the fields where Dukcapil differs.
    async fn match_person(
        &self,
        p: &pb::Person,
    ) -> anyhow::Result<(PersonOutcome, Vec<ev::FieldCorrection>)> {
        if p.nik.is_empty() {
            return Ok((PersonOutcome::NoNik, vec![]));
        }
        let Some(found) = self.lookup(&p.nik).await? else {
            return Ok((PersonOutcome::NotFound, vec![]));
        };
        if found.deceased {
            return Ok((PersonOutcome::Deceased, vec![]));
        }
        let mut corrections = Vec::new();
        let name_differs = normalise(&found.full_name) != normalise(&p.full_name);
        let birth_differs = found.birth_date != iso(p.birth_date.as_ref());
        if name_differs && birth_differs {
            return Ok((PersonOutcome::NikOfAnotherPerson, vec![]));
        }
        if name_differs {
            corrections.push(ev::FieldCorrection {
                field: "full_name".into(),
                registry_value: found.full_name.clone(),
            });
        }
        if birth_differs {
            corrections.push(ev::FieldCorrection {
                field: "birth_date".into(),
                registry_value: found.birth_date.clone(),
            });
        }
        let sex = match p.sex {
            1 => "male",
            2 => "female",
            _ => "",
        };
        if found.sex != sex {
            corrections.push(ev::FieldCorrection {
                field: "sex".into(),
                registry_value: found.sex.clone(),
            });
        }
        Ok(if corrections.is_empty() {
            (PersonOutcome::Matched, corrections)
        } else {
            (PersonOutcome::MatchedWithCorrections, corrections)
        })
    }
}

/// Receives `proposal.submitted` into `pending`: receiving never waits on the civil
/// registry, so an outage cannot fail or dead-letter the event.
struct Submitted {
    wake: Arc<Notify>,
}

impl EventHandler for Submitted {
    async fn handle(
        &self,
        txn: &DatabaseTransaction,
        envelope: &Envelope,
    ) -> Result<(), HandlerError> {
        let submitted: ev::ProposalSubmitted = events::payload(envelope)?;
        let proposal_id = uuid::Uuid::parse_str(&submitted.proposal_id)
            .map_err(|e| HandlerError::Permanent(e.to_string()))?;
        txn.execute_raw(stmt(
            "INSERT INTO pending (proposal_id, region_code, envelope) VALUES ($1, $2, $3)
             ON CONFLICT (proposal_id) DO NOTHING",
            [
                proposal_id.into(),
                envelope.region_code.clone().into(),
                envelope.encode_to_vec().into(),
            ],
        ))
        .await?;
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
    let submitted: ev::ProposalSubmitted = events::payload(envelope)?;
    let household = submitted.household.clone().unwrap_or_default();
    let mut persons = Vec::new();
    for (fi, family) in household.families.iter().enumerate() {
        for (mi, person) in family.members.iter().enumerate() {
            let (outcome, corrections) = matcher.match_person(person).await?;
            persons.push(ev::PersonMatch {
                family_index: fi as u32,
                member_index: mi as u32,
                outcome: outcome as i32,
                corrections,
                duplicate_household_id: String::new(),
            });
        }
    }
    let outcome = household_outcome(&persons);
    let matched = ev::ProposalMatched {
        proposal_id: submitted.proposal_id.clone(),
        channel: submitted.channel,
        kind: submitted.kind,
        household: Some(household),
        persons,
        outcome: outcome as i32,
    };
    let proposal_id = uuid::Uuid::parse_str(&submitted.proposal_id)?;
    let txn = db.begin().await?;
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

fn household_outcome(persons: &[ev::PersonMatch]) -> ev::HouseholdOutcome {
    let outcomes: Vec<PersonOutcome> = persons
        .iter()
        .map(|p| PersonOutcome::try_from(p.outcome).unwrap_or_default())
        .collect();
    if outcomes.iter().all(|o| *o == PersonOutcome::Matched) {
        ev::HouseholdOutcome::AllMatched
    } else if outcomes.iter().all(|o| {
        matches!(
            o,
            PersonOutcome::Matched | PersonOutcome::MatchedWithCorrections
        )
    }) {
        ev::HouseholdOutcome::NeedsCorrection
    } else {
        ev::HouseholdOutcome::Unmatched
    }
}

struct Api {
    db: DatabaseConnection,
    matcher: Matcher,
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
        dtks_platform::auth::claims(&request)?;
        let person = request
            .get_ref()
            .person
            .clone()
            .ok_or_else(|| grpc::invalid_field("person", "is required"))?;
        if !person.nik.is_empty() {
            dtks_domain::Nik::parse(&person.nik)
                .map_err(|e| grpc::invalid_field("person.nik", e.to_string()))?;
        }
        let (outcome, corrections) = self
            .matcher
            .match_person(&person)
            .await
            .map_err(|e| Status::unavailable(format!("civil registry unavailable: {e}")))?;
        Ok(Response::new(MatchPersonResponse {
            outcome: outcome as i32,
            corrections,
            score: 0.0,
            duplicate_household_id: String::new(),
        }))
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
        Ok(Response::new(
            ev::ProposalMatched::decode(bytes.as_slice()).map_err(grpc::internal)?,
        ))
    }

    async fn list_review_pairs(
        &self,
        _: Request<ListReviewPairsRequest>,
    ) -> Result<Response<ListReviewPairsResponse>, Status> {
        Err(Status::unimplemented(
            "clerical review arrives with probabilistic linkage (matching issue)",
        ))
    }

    async fn decide_review_pair(
        &self,
        _: Request<DecideReviewPairRequest>,
    ) -> Result<Response<ReviewPair>, Status> {
        Err(Status::unimplemented(
            "clerical review arrives with probabilistic linkage (matching issue)",
        ))
    }
}
