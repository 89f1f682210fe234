//! The gRPC edge of reporting: each call names its caller and the region asked about,
//! hands them to a use case or a report's query, and answers with what it returns.

use dtks_platform::auth::claims;
use dtks_proto::reporting::v1::reporting_service_server::ReportingService;
use dtks_proto::reporting::v1::*;
use tonic::{Request, Response, Status};

use crate::Reporting;
use crate::store::reports::{self as queries, Scope};

type ExportStream =
    std::pin::Pin<Box<dyn futures::Stream<Item = Result<ExportChunk, Status>> + Send>>;

/// The scope a report request asks about, checked against the caller's region.
fn scope(request: &Request<RegionQuery>) -> Result<Scope, Status> {
    Ok(Scope::of(claims(request)?, request.get_ref())?)
}

#[tonic::async_trait]
impl ReportingService for Reporting {
    #[tracing::instrument(skip_all)]
    async fn get_pipeline_summary(
        &self,
        request: Request<RegionQuery>,
    ) -> Result<Response<PipelineSummary>, Status> {
        let who = claims(&request)?.clone();
        let region = request.into_inner().region_code;
        Ok(Response::new(self.summary(&who, region).await?))
    }

    #[tracing::instrument(skip_all)]
    async fn get_update_rates(
        &self,
        request: Request<RegionQuery>,
    ) -> Result<Response<UpdateRates>, Status> {
        let now = dtks_platform::clock::now();
        let rates = queries::update_rates(&self.db, &scope(&request)?, now).await?;
        Ok(Response::new(rates))
    }

    #[tracing::instrument(skip_all)]
    async fn list_inactive_regions(
        &self,
        request: Request<RegionQuery>,
    ) -> Result<Response<InactiveRegions>, Status> {
        let now = dtks_platform::clock::now();
        let inactive = queries::inactive(&self.db, &scope(&request)?, now).await?;
        Ok(Response::new(inactive))
    }

    #[tracing::instrument(skip_all)]
    async fn get_funnel(&self, request: Request<RegionQuery>) -> Result<Response<Funnel>, Status> {
        let now = dtks_platform::clock::now();
        let funnel = queries::funnel(&self.db, &scope(&request)?, now).await?;
        Ok(Response::new(funnel))
    }

    #[tracing::instrument(skip_all)]
    async fn get_decile_distribution(
        &self,
        request: Request<RegionQuery>,
    ) -> Result<Response<DecileDistribution>, Status> {
        Ok(Response::new(
            queries::deciles(&self.db, &scope(&request)?).await?,
        ))
    }

    #[tracing::instrument(skip_all)]
    async fn get_programme_coverage(
        &self,
        request: Request<RegionQuery>,
    ) -> Result<Response<ProgrammeCoverage>, Status> {
        Ok(Response::new(
            queries::coverage(&self.db, &scope(&request)?).await?,
        ))
    }

    #[tracing::instrument(skip_all)]
    async fn get_match_outcomes(
        &self,
        request: Request<RegionQuery>,
    ) -> Result<Response<MatchOutcomes>, Status> {
        Ok(Response::new(
            queries::match_outcomes(&self.db, &scope(&request)?).await?,
        ))
    }

    #[tracing::instrument(skip_all)]
    async fn get_reverifications(
        &self,
        request: Request<RegionQuery>,
    ) -> Result<Response<Reverifications>, Status> {
        let now = dtks_platform::clock::now();
        let due = queries::reverifications(&self.db, &scope(&request)?, now).await?;
        Ok(Response::new(due))
    }

    type ExportStream = ExportStream;

    #[tracing::instrument(skip_all)]
    async fn export(
        &self,
        request: Request<ExportRequest>,
    ) -> Result<Response<ExportStream>, Status> {
        let who = claims(&request)?.clone();
        let chunks = self.export(&who, request.into_inner()).await?;
        let chunks = chunks.into_iter().map(|data| Ok(ExportChunk { data }));
        Ok(Response::new(Box::pin(futures::stream::iter(chunks))))
    }

    #[tracing::instrument(skip_all)]
    async fn rebuild(
        &self,
        _request: Request<RebuildRequest>,
    ) -> Result<Response<RebuildResponse>, Status> {
        let started = std::time::Instant::now();
        let replayed = crate::store::rebuild(&self.db).await?;
        let seconds = started.elapsed().as_secs_f64();
        tracing::info!(facts = replayed, seconds, "read models rebuilt");
        Ok(Response::new(RebuildResponse {
            facts_replayed: replayed,
            seconds,
        }))
    }
}
