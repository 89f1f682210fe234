//! The determination service's binary: the library's service, run by the platform.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    dtks_platform::app::run::<dtks_determination::Migrator, _, _>(
        "determination",
        dtks_determination::start,
    )
    .await
}
