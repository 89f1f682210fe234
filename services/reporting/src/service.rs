use chrono::Utc;
use dtks_platform::app::Context;
use dtks_platform::auth::claims;
use sea_orm::TransactionTrait;

use crate::queries::Scope;
use crate::{export, facts, gauges, queries};
use dtks_platform::bus::{EventHandler, HandlerError};
use dtks_platform::db::{Migration, Migrator as MigratorTrait, SqlMigration, sql_migrations, stmt};
use dtks_platform::grpc;
use dtks_proto::events::v1::Envelope;
use dtks_proto::reporting::v1::reporting_service_server::{
    ReportingService, ReportingServiceServer,
};
use dtks_proto::reporting::v1::*;
use sea_orm::{ConnectionTrait, DatabaseConnection, DatabaseTransaction};
use tonic::{Request, Response, Status};

pub struct Migrator;

impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn Migration>> {
        sql_migrations(vec![
            SqlMigration {
                name: "m0001_counters",
                sql: r#"
-- One counter per (regency, metric); the national figure is the sum over regencies.
CREATE TABLE counters (
    regency_code TEXT NOT NULL,
    metric TEXT NOT NULL,
    value BIGINT NOT NULL,
    PRIMARY KEY (regency_code, metric)
);
"#,
            },
            SqlMigration {
                name: "m0002_facts_and_read_models",
                sql: facts::MIGRATION,
            },
            SqlMigration {
                // Counters are kept for the region each event names (a village, for most),
                // so that a village's summary is that village's, not its regency's.
                name: "m0003_counters_by_region",
                sql: "ALTER TABLE counters RENAME COLUMN regency_code TO region_code",
            },
        ])
    }
}

pub async fn start(ctx: Context, listener: tokio::net::TcpListener) -> anyhow::Result<()> {
    let consumer = ctx.spawn_consumer(&["#"], Facts).await?;
    tokio::spawn(gauges::run(ctx.db.clone(), ctx.shutdown.clone()));
    let service = ReportingServiceServer::new(Api {
        db: ctx.db.clone(),
        bus: ctx.bus.clone(),
    })
    .max_decoding_message_size(grpc::MAX_MESSAGE_BYTES)
    .max_encoding_message_size(grpc::MAX_SEND_BYTES);
    ctx.serve(listener, service, Some(consumer)).await
}

/// Keeps each event's fact and applies it to the read models, in one transaction.
struct Facts;

impl EventHandler for Facts {
    async fn handle(
        &self,
        txn: &DatabaseTransaction,
        envelope: &Envelope,
    ) -> Result<(), HandlerError> {
        let fact = facts::of(envelope)?;
        facts::keep(txn, envelope, &fact).await?;
        let occurred = facts::occurred_at(envelope);
        facts::apply(
            txn,
            &envelope.r#type,
            occurred,
            &envelope.region_code,
            &fact,
        )
        .await
    }
}

struct Api {
    db: DatabaseConnection,
    /// For the dead-letter counts.
    bus: dtks_platform::bus::Bus,
}

/// Empties the read models and applies every kept fact again, in arrival order, in one
/// transaction; events arriving meanwhile wait (the facts table is locked against
/// writes) and are applied after it.
async fn rebuild(db: &DatabaseConnection) -> Result<u64, Status> {
    let txn = db.begin().await.map_err(grpc::internal)?;
    txn.execute_unprepared(&format!(
        "LOCK TABLE facts IN EXCLUSIVE MODE; TRUNCATE {}",
        facts::MODELS.join(", ")
    ))
    .await
    .map_err(grpc::internal)?;
    let mut after = 0i64;
    let mut replayed = 0u64;
    loop {
        let rows = txn
            .query_all_raw(stmt(
                "SELECT seq, event_type, occurred_at, region_code, fact FROM facts WHERE seq > $1 ORDER BY seq LIMIT 5000",
                [after.into()],
            ))
            .await
            .map_err(grpc::internal)?;
        if rows.is_empty() {
            break;
        }
        for r in &rows {
            after = r.try_get("", "seq").map_err(grpc::internal)?;
            let fact: serde_json::Value = r.try_get("", "fact").map_err(grpc::internal)?;
            let fact: facts::Fact = serde_json::from_value(fact).map_err(grpc::internal)?;
            let event_type: String = r.try_get("", "event_type").map_err(grpc::internal)?;
            let occurred: chrono::DateTime<Utc> =
                r.try_get("", "occurred_at").map_err(grpc::internal)?;
            let region: String = r.try_get("", "region_code").map_err(grpc::internal)?;
            facts::apply(&txn, &event_type, occurred, &region, &fact)
                .await
                .map_err(|e| Status::internal(format!("replaying fact {after}: {e}")))?;
            replayed += 1;
        }
    }
    txn.commit().await.map_err(grpc::internal)?;
    Ok(replayed)
}

type ExportStream =
    std::pin::Pin<Box<dyn futures::Stream<Item = Result<ExportChunk, Status>> + Send>>;

#[tonic::async_trait]
impl ReportingService for Api {
    #[tracing::instrument(skip_all)]
    async fn get_pipeline_summary(
        &self,
        request: Request<RegionQuery>,
    ) -> Result<Response<PipelineSummary>, Status> {
        let who = claims(&request)?.clone();
        let region = request.get_ref().region_code.clone();
        if !region.is_empty() || !who.region.is_empty() {
            who.require_region(&region)?;
        }
        // The region was parsed at the edge: digits and dots only, so the prefix is
        // literal in the pattern.
        let rows = self
            .db
            .query_all_raw(stmt(
                "SELECT metric, sum(value)::bigint AS value FROM counters
                 WHERE $1 = '' OR region_code = $1 OR region_code LIKE $1 || '.%' GROUP BY metric",
                [region.clone().into()],
            ))
            .await
            .map_err(grpc::internal)?;
        let mut s = PipelineSummary {
            region_code: region,
            ..Default::default()
        };
        for r in rows {
            let metric: String = r.try_get("", "metric").map_err(grpc::internal)?;
            let value = r
                .try_get::<i64>("", "value")
                .map_err(grpc::internal)?
                .max(0) as u64;
            match metric.as_str() {
                "proposals_submitted" => s.proposals_submitted = value,
                "proposals_matched" => s.proposals_matched = value,
                "households_accepted" => s.households_accepted = value,
                "households_returned" => s.households_returned = value,
                "households_removed" => s.households_removed = value,
                "households_determined" => s.households_determined = value,
                "events_consumed" => s.events_consumed = value,
                other => {
                    if let Some(code) = other.strip_prefix("recipients:") {
                        s.recipients_listed += value;
                        s.programmes.push(ProgrammeCount {
                            programme_code: code.to_owned(),
                            recipients: value,
                        });
                    }
                }
            }
        }
        if s.region_code.is_empty() {
            let counts = self
                .bus
                .dead_letter_counts(&dtks_platform::bus::CONSUMERS)
                .await
                .map_err(grpc::internal)?;
            for (service, waiting) in dtks_platform::bus::CONSUMERS.iter().zip(counts) {
                s.dead_letters.push(DeadLetterCount {
                    service: (*service).to_owned(),
                    waiting: u64::from(waiting),
                });
            }
        }
        Ok(Response::new(s))
    }

    #[tracing::instrument(skip_all)]
    async fn get_update_rates(
        &self,
        request: Request<RegionQuery>,
    ) -> Result<Response<UpdateRates>, Status> {
        let scope = Scope::of(claims(&request)?, request.get_ref())?;
        Ok(Response::new(
            queries::update_rates(&self.db, &scope, dtks_platform::clock::now()).await?,
        ))
    }

    #[tracing::instrument(skip_all)]
    async fn list_inactive_regions(
        &self,
        request: Request<RegionQuery>,
    ) -> Result<Response<InactiveRegions>, Status> {
        let scope = Scope::of(claims(&request)?, request.get_ref())?;
        Ok(Response::new(
            queries::inactive(&self.db, &scope, dtks_platform::clock::now()).await?,
        ))
    }

    #[tracing::instrument(skip_all)]
    async fn get_funnel(&self, request: Request<RegionQuery>) -> Result<Response<Funnel>, Status> {
        let scope = Scope::of(claims(&request)?, request.get_ref())?;
        Ok(Response::new(
            queries::funnel(&self.db, &scope, dtks_platform::clock::now()).await?,
        ))
    }

    #[tracing::instrument(skip_all)]
    async fn get_decile_distribution(
        &self,
        request: Request<RegionQuery>,
    ) -> Result<Response<DecileDistribution>, Status> {
        let scope = Scope::of(claims(&request)?, request.get_ref())?;
        Ok(Response::new(queries::deciles(&self.db, &scope).await?))
    }

    #[tracing::instrument(skip_all)]
    async fn get_programme_coverage(
        &self,
        request: Request<RegionQuery>,
    ) -> Result<Response<ProgrammeCoverage>, Status> {
        let scope = Scope::of(claims(&request)?, request.get_ref())?;
        Ok(Response::new(queries::coverage(&self.db, &scope).await?))
    }

    #[tracing::instrument(skip_all)]
    async fn get_match_outcomes(
        &self,
        request: Request<RegionQuery>,
    ) -> Result<Response<MatchOutcomes>, Status> {
        let scope = Scope::of(claims(&request)?, request.get_ref())?;
        Ok(Response::new(
            queries::match_outcomes(&self.db, &scope).await?,
        ))
    }

    #[tracing::instrument(skip_all)]
    async fn get_reverifications(
        &self,
        request: Request<RegionQuery>,
    ) -> Result<Response<Reverifications>, Status> {
        let scope = Scope::of(claims(&request)?, request.get_ref())?;
        Ok(Response::new(
            queries::reverifications(&self.db, &scope, dtks_platform::clock::now()).await?,
        ))
    }

    type ExportStream = ExportStream;

    #[tracing::instrument(skip_all)]
    async fn export(
        &self,
        request: Request<ExportRequest>,
    ) -> Result<Response<ExportStream>, Status> {
        let who = claims(&request)?.clone();
        let req = request.into_inner();
        let format = ExportFormat::try_from(req.format).unwrap_or_default();
        if format == ExportFormat::Unspecified {
            return Err(grpc::invalid_field("format", "must be CSV or XLSX"));
        }
        let scope = Scope::of(&who, &req.query.unwrap_or_default())?;
        let (db, now) = (&self.db, dtks_platform::clock::now());
        let table = match ReportKind::try_from(req.report).unwrap_or_default() {
            ReportKind::UpdateRates => {
                export::update_rates(&queries::update_rates(db, &scope, now).await?)
            }
            ReportKind::Funnel => export::funnel(&queries::funnel(db, &scope, now).await?),
            ReportKind::Deciles => export::deciles(&queries::deciles(db, &scope).await?),
            ReportKind::Coverage => export::coverage(&queries::coverage(db, &scope).await?),
            ReportKind::InactiveRegions => {
                export::inactive(&queries::inactive(db, &scope, now).await?)
            }
            ReportKind::MatchOutcomes => {
                export::match_outcomes(&queries::match_outcomes(db, &scope).await?)
            }
            ReportKind::Reverifications => {
                export::reverifications(&queries::reverifications(db, &scope, now).await?)
            }
            ReportKind::Unspecified => {
                return Err(grpc::invalid_field("report", "name the report to export"));
            }
        };
        let bytes = export::render(&table, format)?;
        let chunks: Vec<Result<ExportChunk, Status>> = bytes
            .chunks(64 * 1024)
            .map(|c| Ok(ExportChunk { data: c.to_vec() }))
            .collect();
        Ok(Response::new(Box::pin(futures::stream::iter(chunks))))
    }

    #[tracing::instrument(skip_all)]
    async fn rebuild(
        &self,
        _request: Request<RebuildRequest>,
    ) -> Result<Response<RebuildResponse>, Status> {
        let started = std::time::Instant::now();
        let replayed = rebuild(&self.db).await?;
        tracing::info!(
            facts = replayed,
            seconds = started.elapsed().as_secs_f64(),
            "read models rebuilt"
        );
        Ok(Response::new(RebuildResponse {
            facts_replayed: replayed,
            seconds: started.elapsed().as_secs_f64(),
        }))
    }
}
