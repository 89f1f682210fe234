//! The gRPC edge of reporting: each call names its caller and the region asked about and
//! hands them to a use case in `read` (a report, the summary, an export, a rebuild).

use dtks_proto::reporting::v1::reporting_service_server::ReportingService;
use dtks_proto::reporting::v1::*;

use crate::Reporting;
use crate::read::ExportStream;

dtks_platform::grpc_edge! {
    impl ReportingService for Reporting {
        use_cases {
            get_pipeline_summary(RegionQuery) -> PipelineSummary = summary;
            get_update_rates(RegionQuery) -> UpdateRates = report;
            list_inactive_regions(RegionQuery) -> InactiveRegions = report;
            get_funnel(RegionQuery) -> Funnel = report;
            get_decile_distribution(RegionQuery) -> DecileDistribution = report;
            get_programme_coverage(RegionQuery) -> ProgrammeCoverage = report;
            get_match_outcomes(RegionQuery) -> MatchOutcomes = report;
            get_reverifications(RegionQuery) -> Reverifications = report;
            export(ExportRequest) -> ExportStream = exported;
            rebuild(RebuildRequest) -> RebuildResponse = rebuild;
        }

        type ExportStream = ExportStream;
    }
}
