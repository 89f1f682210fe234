//! The intake service's binary: the platform's bootstrap around [`dtks_intake::start`].

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    dtks_platform::app::run::<dtks_intake::Migrator, _, _>("intake", dtks_intake::start).await
}
