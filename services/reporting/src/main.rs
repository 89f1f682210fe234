//! Reporting (pelaporan): consumes every event and keeps read models per region, served
//! over gRPC. The pipeline summary answers "how far did each region's proposals get".

mod service;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    dtks_platform::app::run::<service::Migrator, _, _>("reporting", service::start).await
}
