//! The reporting service's binary: the platform's bootstrap around
//! [`dtks_reporting::start`].

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    dtks_platform::app::run::<dtks_reporting::Migrator, _, _>("reporting", dtks_reporting::start)
        .await
}
