//! Determination (penetapan): the DTKS master registry fed by `household.accepted`, and
//! the monthly determination: PMT welfare score, national ranking into deciles (desil),
//! an immutable snapshot with its content hash and its diff against the last one.

mod service;
mod singleton;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    dtks_platform::app::run::<service::Migrator, _, _>("determination", service::start).await
}
