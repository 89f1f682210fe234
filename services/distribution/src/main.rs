//! Distribution (penggunaan data): programmes and their beneficiary lists (KPM), built
//! from a determined snapshot read over gRPC from determination, fixed with a content
//! hash and announced as `distribution.list_fixed`; data requests (permohonan) routed to
//! the authority that decides them; programmes with CEL eligibility rules.

mod compiled;
mod delivery;
mod entries;
mod extract;
mod lists;
mod month;
mod programmes;
mod requests;
mod rules;
mod service;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    dtks_platform::app::run::<service::Migrator, _, _>("distribution", service::start).await
}
