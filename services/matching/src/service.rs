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
use sea_orm::{ConnectionTrait, DatabaseConnection, DatabaseTransaction};
use tonic::{Request, Response, Status};

use crate::dci::{DciRegistry, RegistryPerson};

pub struct Migrator;

impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn Migration>> {
        sql_migrations(vec![SqlMigration {
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
        }])
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
    let consumer = ctx
        .spawn_consumer(
            &[events::PROPOSAL_SUBMITTED],
            Submitted {
                matcher: matcher.clone(),
                outbox: ctx.outbox.clone(),
            },
        )
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

struct Submitted {
    matcher: Matcher,
    outbox: outbox::OutboxSignal,
}

impl EventHandler for Submitted {
    async fn handle(
        &self,
        txn: &DatabaseTransaction,
        envelope: &Envelope,
    ) -> Result<(), HandlerError> {
        let submitted: ev::ProposalSubmitted = events::payload(envelope)?;
        let household = submitted.household.clone().unwrap_or_default();
        let mut persons = Vec::new();
        for (fi, family) in household.families.iter().enumerate() {
            for (mi, person) in family.members.iter().enumerate() {
                let (outcome, corrections) = self
                    .matcher
                    .match_person(person)
                    .await
                    .map_err(HandlerError::Transient)?;
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
        let proposal_id = uuid::Uuid::parse_str(&submitted.proposal_id)
            .map_err(|e| HandlerError::Permanent(e.to_string()))?;
        txn.execute_raw(stmt(
            "INSERT INTO match_results (proposal_id, region_code, outcome, result) VALUES ($1, $2, $3, $4)
             ON CONFLICT (proposal_id) DO UPDATE SET outcome = EXCLUDED.outcome, result = EXCLUDED.result, matched_at = now()",
            [proposal_id.into(), envelope.region_code.clone().into(), (outcome as i16).into(), matched.encode_to_vec().into()],
        ))
        .await?;
        outbox::enqueue(
            txn,
            &events::envelope(
                events::PROPOSAL_MATCHED,
                "matching",
                &envelope.region_code,
                &matched,
            ),
        )
        .await?;
        Ok(())
    }

    fn after_commit(&self) {
        self.outbox.wake();
    }
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
        let row = self
            .db
            .query_one_raw(stmt(
                "SELECT region_code, result FROM match_results WHERE proposal_id = $1",
                [id.into()],
            ))
            .await
            .map_err(grpc::internal)?
            .ok_or_else(|| Status::not_found("no match result for this proposal (yet)"))?;
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
