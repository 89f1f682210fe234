//! Intake (penerimaan usulan): the first stage. Proposals from musdes/muskel, the
//! ministry and self-registration are parsed into the domain model, refused with every
//! offending field named, stored once (idempotency), and published as
//! `proposal.submitted` through the outbox.
//!
//! The crate's inside, edge first:
//! - [`api`]: the gRPC edge (decode, call a use case, encode);
//! - use cases: `submit` (one proposal, a bulk import), `proposals` (read, list,
//!   withdraw); [`check`]: a proposal's rules, before anything is written;
//! - [`consume`]: the events it takes (later stages' decisions move a proposal along);
//! - [`store`]: every statement of its schema; `migrations/*.sql` beside the crate;
//! - [`error`]: the one error type and its gRPC mapping.

pub mod api;
pub mod check;
pub mod consume;
pub mod error;
mod proposals;
pub mod store;
mod submit;

use dtks_platform::app::Context;
use dtks_platform::ratelimit::RateLimiter;
use dtks_platform::{events, outbox};
use dtks_proto::intake::v1::intake_service_server::IntakeServiceServer;
use sea_orm::DatabaseConnection;

pub use store::Migrator;

/// Wires the service: the status consumer and the gRPC edge.
pub async fn start(ctx: Context, listener: tokio::net::TcpListener) -> anyhow::Result<()> {
    let consumer = ctx
        .spawn_consumer(
            &[
                events::PROPOSAL_MATCHED,
                events::PROPOSAL_RESUBMITTED,
                events::HOUSEHOLD_ACCEPTED,
                events::HOUSEHOLD_REMOVED,
                events::HOUSEHOLD_RETURNED,
                events::PROPOSAL_REQUESTED,
            ],
            consume::StatusUpdates {
                db: ctx.db.clone(),
                outbox: ctx.outbox.clone(),
            },
        )
        .await?;
    let service = dtks_platform::with_limits!(IntakeServiceServer::new(Intake {
        db: ctx.db.clone(),
        outbox: ctx.outbox.clone(),
        limiter: RateLimiter::connect(&ctx.config.redis).await?,
        limits: ctx.config.limits.clone(),
    }));
    ctx.serve(listener, service, Some(consumer)).await
}

/// What the use cases share: the schema, the outbox, the citizens' rate limiter.
pub struct Intake {
    db: DatabaseConnection,
    outbox: outbox::OutboxSignal,
    limiter: RateLimiter,
    limits: dtks_platform::config::LimitsConfig,
}

impl Intake {
    /// Today by the clock the services use.
    fn today(&self) -> chrono::NaiveDate {
        dtks_platform::clock::today()
    }
}
