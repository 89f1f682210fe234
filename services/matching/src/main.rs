//! The matching service's binary: the library's service, run by the platform.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    dtks_platform::app::run::<dtks_matching::Migrator, _, _>("matching", dtks_matching::start).await
}
