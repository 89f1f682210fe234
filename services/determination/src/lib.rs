//! Determination (penetapan): the DTKS master registry fed by `household.accepted`, and
//! the monthly determination: PMT welfare score, national ranking into deciles (desil),
//! an immutable snapshot with its content hash and its diff against the last one.
//!
//! Inside: [`api`] (the gRPC edge), [`run`] (a determination), `read` (a determined
//! month read back), `history` (a household's versions and the households behind a
//! diff), [`registry`] (the master registry a run reads, and the diff),
//! [`consume`] (the events taken), [`model`] (the welfare model), [`store`] (snapshots
//! and the schema, `migrations/*.sql`), [`singleton`] (one run in a cluster), [`error`]
//! (the one error type and its gRPC mapping).

pub mod api;
pub mod consume;
pub mod error;
mod history;
pub mod model;
mod read;
pub mod registry;
pub mod run;
pub mod singleton;
pub mod store;

use dtks_platform::app::Context;
use dtks_platform::events;
use dtks_proto::determination::v1::determination_service_server::DeterminationServiceServer;

use crate::consume::{Accepted, backfill_inputs};
use crate::model::load_model;
use crate::run::{Api, Fault};

pub use store::Migrator;

pub async fn start(ctx: Context, listener: tokio::net::TcpListener) -> anyhow::Result<()> {
    let consumer = ctx
        .spawn_consumer(
            &[events::HOUSEHOLD_ACCEPTED, events::HOUSEHOLD_REMOVED],
            Accepted,
        )
        .await?;
    let backfilled = backfill_inputs(&ctx.db).await?;
    if backfilled > 0 {
        tracing::info!(
            households = backfilled,
            "welfare model inputs computed for the registry"
        );
    }
    let lease = crate::singleton::LeaseLock::in_cluster().await?;
    if lease.is_some() {
        tracing::info!("in a cluster: determinations take the dtks-determination Lease");
    }
    let model = std::sync::Arc::new(load_model()?);
    tracing::info!(version = %model.version, provinces = model.provinces.len(), "welfare model loaded");
    let service = dtks_platform::with_limits!(DeterminationServiceServer::new(Api {
        db: ctx.db.clone(),
        outbox: ctx.outbox.clone(),
        model,
        lease: lease.map(std::sync::Arc::new),
        fault: Fault::from_env(),
    }));
    ctx.serve(listener, service, Some(consumer)).await
}
