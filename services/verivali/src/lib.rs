//! Verivali (verifikasi dan validasi): one case per matched household proposal, moved
//! through village review, regency field verification, Bupati/Walikota sign-off, province
//! forwarding and the ministry's assessment against the five integrity criteria, ending
//! in `household.accepted` or `household.returned`; then, for the households in DTKS,
//! complaints, re-verification on life events, QA samples and the six-monthly update.

mod aftercare;
mod api;
mod assessment;
mod cases;
mod complaints;
mod consume;
mod decide;
pub mod error;
mod life;
mod officers;
pub mod qa;
mod read;
mod review;
mod store;
mod vital;
pub mod workflow;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use dtks_platform::app::Context;
use dtks_platform::clock::SharedClock;
use dtks_platform::events;
use dtks_proto::verivali::v1::verivali_service_server::VerivaliServiceServer;
use sea_orm::DatabaseConnection;

pub use assessment::{Assessment, Content, assess};
pub use store::Migrator;

/// Serves verivali on the system clock.
pub async fn start(ctx: Context, listener: tokio::net::TcpListener) -> anyhow::Result<()> {
    start_with_clock(ctx, listener, dtks_platform::clock::system()).await
}

/// Serves verivali with deadlines, ages and due dates read from `clock`.
pub async fn start_with_clock(
    ctx: Context,
    listener: tokio::net::TcpListener,
    clock: SharedClock,
) -> anyhow::Result<()> {
    if ctx.config.demo_auto_approve {
        tracing::warn!("DEMO POLICY ON: every verivali step is approved automatically");
    }
    let consumer = ctx
        .spawn_consumer(
            &[
                events::PROPOSAL_MATCHED,
                events::PROPOSAL_WITHDRAWN,
                events::MATCH_REVIEWED,
                events::PERSON_LIFE_EVENT,
            ],
            consume::Consumed {
                outbox: ctx.outbox.clone(),
                demo_auto_approve: ctx.config.demo_auto_approve,
                clock: clock.clone(),
            },
        )
        .await?;
    tokio::spawn(aftercare::escalate_overdue(
        ctx.db.clone(),
        ctx.outbox.clone(),
        clock.clone(),
        ctx.shutdown.clone(),
    ));
    let service = dtks_platform::with_limits!(VerivaliServiceServer::new(Verivali {
        db: ctx.db.clone(),
        outbox: ctx.outbox.clone(),
        clock: Arc::clone(&clock),
        redis: ctx.config.redis.clone(),
    }));
    ctx.serve(listener, service, Some(consumer)).await
}

/// What the use cases share: the schema, the outbox, the clock, and where officers'
/// revocations are published.
pub struct Verivali {
    db: DatabaseConnection,
    outbox: dtks_platform::outbox::OutboxSignal,
    clock: SharedClock,
    /// Where officers' revocations are published.
    redis: dtks_platform::config::RedisConfig,
}

impl Verivali {
    /// Now by the service's clock.
    pub(crate) fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }
}
