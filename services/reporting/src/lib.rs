//! Reporting (pelaporan): consumes every event and keeps read models per region, served
//! over gRPC. The pipeline summary answers "how far did each region's proposals get";
//! the update rates, inactive regions, funnel, deciles, programme coverage, match
//! outcomes and re-verifications answer the ministry's questions region by region, and
//! export as CSV or XLSX. Every event is kept as a fact without personal data, so the
//! read models can be rebuilt by replaying them.
//!
//! The crate's inside, edge first:
//! - [`api`]: the gRPC edge; `read`: the summary and exports;
//! - [`consume`]: every event, kept by [`facts`] and applied to the read models;
//! - [`store`]: every statement (the reports' in [`store::reports`]); `migrations/*.sql`;
//! - [`export`]: a report as CSV or XLSX; `gauges`: business gauges for dashboards;
//! - [`error`]: the one error type and its gRPC mapping.

pub mod api;
pub mod consume;
pub mod error;
pub mod export;
pub mod facts;
mod gauges;
mod read;
pub mod store;

use dtks_platform::app::Context;
use dtks_proto::reporting::v1::reporting_service_server::ReportingServiceServer;
use sea_orm::DatabaseConnection;

pub use store::Migrator;

/// Wires the service: the fact consumer, the gauges and the gRPC edge.
pub async fn start(ctx: Context, listener: tokio::net::TcpListener) -> anyhow::Result<()> {
    let consumer = ctx.spawn_consumer(&["#"], consume::Facts).await?;
    tokio::spawn(gauges::run(ctx.db.clone(), ctx.shutdown.clone()));
    let service = dtks_platform::with_limits!(ReportingServiceServer::new(Reporting {
        db: ctx.db.clone(),
        bus: ctx.bus.clone(),
    }));
    ctx.serve(listener, service, Some(consumer)).await
}

/// What the use cases share: the read models, and the bus for the dead-letter counts.
pub struct Reporting {
    db: DatabaseConnection,
    bus: dtks_platform::bus::Bus,
}
