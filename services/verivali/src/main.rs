//! The verivali service's process: `dtks-verivali migrate` or `dtks-verivali [serve]`.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    dtks_platform::app::run::<dtks_verivali::Migrator, _, _>("verivali", dtks_verivali::start).await
}
