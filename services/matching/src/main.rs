//! Matching (pemadanan): every person of a proposal is checked against the civil
//! registry (Dukcapil) through the DCI adapter, with answers cached in Redis; the
//! per-person and per-household outcomes are published as `proposal.matched`.

mod callbacks;
mod dci;
mod index;
mod link;
mod matcher;
mod review;
mod service;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    dtks_platform::app::run::<service::Migrator, _, _>("matching", service::start).await
}
