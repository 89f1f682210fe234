//! Verivali (verifikasi dan validasi): one case per matched household proposal, moved
//! through village review, regency field verification, Bupati/Walikota sign-off, province
//! forwarding and the ministry's assessment against the five integrity criteria, ending
//! in `household.accepted` or `household.returned`.

mod service;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    dtks_platform::app::run::<service::Migrator, _, _>("verivali", service::start).await
}
