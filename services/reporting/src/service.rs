use dtks_platform::app::Context;
use dtks_platform::auth::claims;
use dtks_platform::bus::{EventHandler, HandlerError};
use dtks_platform::db::{Migration, Migrator as MigratorTrait, SqlMigration, sql_migrations, stmt};
use dtks_platform::{events, grpc};
use dtks_proto::events::v1::{self as ev, Envelope};
use dtks_proto::reporting::v1::reporting_service_server::{
    ReportingService, ReportingServiceServer,
};
use dtks_proto::reporting::v1::*;
use sea_orm::{ConnectionTrait, DatabaseConnection, DatabaseTransaction};
use tonic::{Request, Response, Status};

pub struct Migrator;

impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn Migration>> {
        sql_migrations(vec![SqlMigration {
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
        }])
    }
}

pub async fn start(ctx: Context, listener: tokio::net::TcpListener) -> anyhow::Result<()> {
    let consumer = ctx.spawn_consumer(&["#"], Counts).await?;
    let service = ReportingServiceServer::new(Api { db: ctx.db.clone() })
        .max_decoding_message_size(grpc::MAX_MESSAGE_BYTES)
        .max_encoding_message_size(grpc::MAX_SEND_BYTES);
    ctx.serve(listener, service, Some(consumer)).await
}

struct Counts;

async fn add(
    txn: &DatabaseTransaction,
    regency: &str,
    metric: &str,
    by: i64,
) -> Result<(), HandlerError> {
    txn.execute_raw(stmt(
        "INSERT INTO counters (regency_code, metric, value) VALUES ($1, $2, $3)
         ON CONFLICT (regency_code, metric) DO UPDATE SET value = counters.value + EXCLUDED.value",
        [
            regency.to_owned().into(),
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
) -> Result<(), HandlerError> {
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

impl EventHandler for Counts {
    async fn handle(
        &self,
        txn: &DatabaseTransaction,
        envelope: &Envelope,
    ) -> Result<(), HandlerError> {
        let regency = envelope
            .region_code
            .get(..5)
            .unwrap_or(&envelope.region_code)
            .to_owned();
        add(txn, "", "events_consumed", 1).await?;
        match envelope.r#type.as_str() {
            events::PROPOSAL_SUBMITTED => add(txn, &regency, "proposals_submitted", 1).await?,
            events::PROPOSAL_MATCHED => add(txn, &regency, "proposals_matched", 1).await?,
            events::HOUSEHOLD_ACCEPTED => add(txn, &regency, "households_accepted", 1).await?,
            events::HOUSEHOLD_RETURNED => add(txn, &regency, "households_returned", 1).await?,
            events::HOUSEHOLD_REMOVED => add(txn, &regency, "households_removed", 1).await?,
            events::DETERMINATION_PUBLISHED => {
                let published: ev::DeterminationPublished = events::payload(envelope)?;
                let per: Vec<(String, i64)> = published
                    .deciles
                    .iter()
                    .map(|d| {
                        (
                            d.region_code.clone(),
                            d.households_per_decile.iter().sum::<u64>() as i64,
                        )
                    })
                    .collect();
                replace(txn, "households_determined", &per).await?;
            }
            events::LIST_FIXED => {
                let fixed: ev::ListFixed = events::payload(envelope)?;
                let per: Vec<(String, i64)> = fixed
                    .coverage
                    .iter()
                    .map(|c| (c.region_code.clone(), c.selected as i64))
                    .collect();
                replace(txn, &format!("recipients:{}", fixed.programme_code), &per).await?;
            }
            _ => {}
        }
        Ok(())
    }
}

struct Api {
    db: DatabaseConnection,
}

fn unimplemented<T>(what: &str) -> Result<Response<T>, Status> {
    Err(Status::unimplemented(format!(
        "{what} arrives with the reporting issue"
    )))
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
        let prefix = region
            .get(..region.len().min(5))
            .unwrap_or_default()
            .to_owned();
        let rows = self
            .db
            .query_all_raw(stmt(
                "SELECT metric, sum(value)::bigint AS value FROM counters
                 WHERE $1 = '' OR regency_code = $1 OR regency_code LIKE $1 || '.%' GROUP BY metric",
                [prefix.into()],
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
        Ok(Response::new(s))
    }

    async fn get_update_rates(
        &self,
        _: Request<RegionQuery>,
    ) -> Result<Response<UpdateRates>, Status> {
        unimplemented("GetUpdateRates")
    }
    async fn list_inactive_regions(
        &self,
        _: Request<RegionQuery>,
    ) -> Result<Response<InactiveRegions>, Status> {
        unimplemented("ListInactiveRegions")
    }
    async fn get_funnel(&self, _: Request<RegionQuery>) -> Result<Response<Funnel>, Status> {
        unimplemented("GetFunnel")
    }
    async fn get_decile_distribution(
        &self,
        _: Request<RegionQuery>,
    ) -> Result<Response<DecileDistribution>, Status> {
        unimplemented("GetDecileDistribution")
    }
    async fn get_programme_coverage(
        &self,
        _: Request<RegionQuery>,
    ) -> Result<Response<ProgrammeCoverage>, Status> {
        unimplemented("GetProgrammeCoverage")
    }
    type ExportStream = ExportStream;
    async fn export(&self, _: Request<ExportRequest>) -> Result<Response<ExportStream>, Status> {
        unimplemented("Export")
    }
}
