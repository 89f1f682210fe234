//! The distribution service's binary: the platform's bootstrap around
//! [`dtks_distribution::start`].

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    dtks_platform::app::run::<dtks_distribution::Migrator, _, _>(
        "distribution",
        dtks_distribution::start,
    )
    .await
}
