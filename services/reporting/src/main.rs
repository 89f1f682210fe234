//! Reporting (pelaporan): consumes every event and keeps read models per region, served
//! over gRPC. The pipeline summary answers "how far did each region's proposals get";
//! the update rates, inactive regions, funnel, deciles, programme coverage, match
//! outcomes and re-verifications answer the ministry's questions region by region, and
//! export as CSV or XLSX. Every event is kept as a fact without personal data, so the
//! read models can be rebuilt by replaying them.

mod export;
mod facts;
mod gauges;
mod queries;
mod service;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    dtks_platform::app::run::<service::Migrator, _, _>("reporting", service::start).await
}
