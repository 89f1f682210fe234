//! Intake (penerimaan usulan): the first stage. Proposals from musdes/muskel, the
//! ministry and self-registration are parsed into the domain model, refused with every
//! offending field named, stored once (idempotency), and published as
//! `proposal.submitted` through the outbox.

mod check;
mod migrations;
mod service;
mod store;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    dtks_platform::app::run::<migrations::Migrator, _, _>("intake", service::start).await
}
