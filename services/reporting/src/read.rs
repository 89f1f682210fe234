//! The reports that take more than one query: the pipeline summary (counters and, for
//! the country, what waits in the dead-letter queues), and a report exported as a file.

use dtks_platform::auth::Claims;
use dtks_platform::grpc;
use dtks_proto::reporting::v1::*;

use crate::Reporting;
use crate::error::{Error, Result};
use crate::export::{self, Table, Tabular};
use crate::store::{self, reports::Report, reports::Scope};

/// The bytes an export sends per message.
const EXPORT_CHUNK_BYTES: usize = 64 * 1024;

impl Reporting {
    /// How far each region's proposals got: the counters of `region` and below it.
    pub(crate) async fn get_pipeline_summary(
        &self,
        who: &Claims,
        q: &RegionQuery,
    ) -> Result<PipelineSummary> {
        let region = q.region_code.clone();
        if !region.is_empty() || !who.region.is_empty() {
            who.require_region(&region)?;
        }
        let mut s = PipelineSummary {
            region_code: region,
            ..Default::default()
        };
        for (metric, value) in store::counters(&self.db, &s.region_code).await? {
            let value = value.max(0) as u64;
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
            let consumers = &dtks_platform::bus::CONSUMERS;
            let counts = self
                .bus
                .dead_letter_counts(consumers)
                .await
                .map_err(|e| Error::Bus(e.to_string()))?;
            for (service, waiting) in consumers.iter().zip(counts) {
                s.dead_letters.push(DeadLetterCount {
                    service: (*service).to_owned(),
                    waiting: u64::from(waiting),
                });
            }
        }
        Ok(s)
    }

    /// A report over `scope`, as of the service's clock.
    async fn answer<R: Report>(&self, scope: &Scope) -> Result<R> {
        R::query(&self.db, scope, dtks_platform::clock::now()).await
    }

    /// One report of the caller's region.
    async fn report<R: Report>(&self, who: &Claims, q: &RegionQuery) -> Result<R> {
        self.answer(&Scope::of(who, q)?).await
    }

    async fn table<R: Report + Tabular>(&self, scope: &Scope) -> Result<Table> {
        Ok(self.answer::<R>(scope).await?.table())
    }

    /// A report as a CSV or XLSX file, sent in chunks.
    pub(crate) async fn export(&self, who: &Claims, req: &ExportRequest) -> Result<ExportStream> {
        let format = ExportFormat::try_from(req.format).unwrap_or_default();
        if format == ExportFormat::Unspecified {
            return Err(grpc::invalid_field("format", "must be CSV or XLSX").into());
        }
        let scope = Scope::of(who, &req.query.clone().unwrap_or_default())?;
        let table = match ReportKind::try_from(req.report).unwrap_or_default() {
            ReportKind::UpdateRates => self.table::<UpdateRates>(&scope).await?,
            ReportKind::Funnel => self.table::<Funnel>(&scope).await?,
            ReportKind::Deciles => self.table::<DecileDistribution>(&scope).await?,
            ReportKind::Coverage => self.table::<ProgrammeCoverage>(&scope).await?,
            ReportKind::InactiveRegions => self.table::<InactiveRegions>(&scope).await?,
            ReportKind::MatchOutcomes => self.table::<MatchOutcomes>(&scope).await?,
            ReportKind::Reverifications => self.table::<Reverifications>(&scope).await?,
            ReportKind::Removals => self.table::<Removals>(&scope).await?,
            ReportKind::Unspecified => {
                return Err(grpc::invalid_field("report", "name the report to export").into());
            }
        };
        let bytes = export::render(&table, format)?;
        let chunks: Vec<_> = bytes
            .chunks(EXPORT_CHUNK_BYTES)
            .map(|data| {
                Ok(ExportChunk {
                    data: data.to_vec(),
                })
            })
            .collect();
        Ok(Box::pin(futures::stream::iter(chunks)))
    }

    /// Every read model rebuilt by replaying the facts.
    pub(crate) async fn rebuild(
        &self,
        _who: &Claims,
        _req: &RebuildRequest,
    ) -> Result<RebuildResponse> {
        let started = std::time::Instant::now();
        let replayed = store::rebuild(&self.db).await?;
        let seconds = started.elapsed().as_secs_f64();
        tracing::info!(facts = replayed, seconds, "read models rebuilt");
        Ok(RebuildResponse {
            facts_replayed: replayed,
            seconds,
        })
    }
}

/// An exported file's chunks, as the edge streams them.
pub type ExportStream = tonic::codegen::BoxStream<ExportChunk>;

/// The RPCs that answer one report of the caller's region each.
macro_rules! reports {
    ($($rpc:ident => $report:ty,)*) => {
        impl Reporting {
            $(pub(crate) async fn $rpc(&self, who: &Claims, q: &RegionQuery) -> Result<$report> {
                self.report(who, q).await
            })*
        }
    };
}

reports! {
    get_update_rates => UpdateRates,
    list_inactive_regions => InactiveRegions,
    get_funnel => Funnel,
    get_decile_distribution => DecileDistribution,
    get_programme_coverage => ProgrammeCoverage,
    get_match_outcomes => MatchOutcomes,
    get_reverifications => Reverifications,
    get_removals => Removals,
}
