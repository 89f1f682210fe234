//! The reports that take more than one query: the pipeline summary (counters and, for
//! the country, what waits in the dead-letter queues), and a report exported as a file.

use dtks_platform::auth::Claims;
use dtks_platform::grpc;
use dtks_proto::reporting::v1::*;

use crate::Reporting;
use crate::error::{Error, Result};
use crate::export;
use crate::store::{self, reports as queries, reports::Scope};

/// The bytes an export sends per message.
const EXPORT_CHUNK_BYTES: usize = 64 * 1024;

impl Reporting {
    /// How far each region's proposals got: the counters of `region` and below it.
    pub(crate) async fn summary(&self, who: &Claims, region: String) -> Result<PipelineSummary> {
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

    /// A report as a CSV or XLSX file, in chunks.
    pub(crate) async fn export(&self, who: &Claims, req: ExportRequest) -> Result<Vec<Vec<u8>>> {
        let format = ExportFormat::try_from(req.format).unwrap_or_default();
        if format == ExportFormat::Unspecified {
            return Err(grpc::invalid_field("format", "must be CSV or XLSX").into());
        }
        let scope = Scope::of(who, &req.query.unwrap_or_default())?;
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
                return Err(grpc::invalid_field("report", "name the report to export").into());
            }
        };
        let bytes = export::render(&table, format)?;
        Ok(bytes
            .chunks(EXPORT_CHUNK_BYTES)
            .map(<[u8]>::to_vec)
            .collect())
    }
}
