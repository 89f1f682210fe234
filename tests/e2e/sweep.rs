//! `scripts/stack.sh sweep` beside a running test: the running run's database is left
//! alone (and its services keep working), while the databases of runs whose process is
//! gone — killed, or whose pid another process has since taken — are dropped.

use dtks_e2e::{Stack, count, process_start_ticks};
use sea_orm::{ConnectionTrait, Database};

async fn databases(stack: &Stack) -> anyhow::Result<Vec<String>> {
    let rows = stack
        .db
        .query_all_raw(dtks_platform::db::stmt(
            "SELECT datname FROM pg_database WHERE datname LIKE 'dtks\\_e2e\\_%'",
            [],
        ))
        .await?;
    Ok(rows
        .iter()
        .filter_map(|r| r.try_get::<String>("", "datname").ok())
        .collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sweep_keeps_a_running_tests_database_and_drops_those_of_killed_runs() -> anyhow::Result<()>
{
    let stack = Stack::start_services(super::REGISTRY, &["intake"], &[]).await?;
    let base = std::env::var("DTKS_DATABASE__URL")?;
    let server = Database::connect(&base).await?;

    // A run that was killed: its process lived, made its database, and is gone.
    let mut child = std::process::Command::new("sleep").arg("60").spawn()?;
    let pid = child.id();
    let start = process_start_ticks(pid).expect("the child's start time");
    child.kill()?;
    child.wait()?;
    let killed = format!("dtks_e2e_{pid}_{start}_{}", &stack.run_id);
    // A pid that lives, but is another process than the one that made the database.
    let taken_over = format!(
        "dtks_e2e_{}_{}_{}",
        std::process::id(),
        process_start_ticks(std::process::id()).expect("own start time") + 1,
        &stack.run_id
    );
    // An older run's name, from before names carried their process.
    let legacy = format!("dtks_e2e_{}", &stack.run_id);
    for name in [&killed, &taken_over, &legacy] {
        server
            .execute_unprepared(&format!("CREATE DATABASE {name}"))
            .await?;
    }

    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/stack.sh");
    let out = tokio::process::Command::new(script)
        .arg("sweep")
        .output()
        .await?;
    anyhow::ensure!(
        out.status.success(),
        "sweep failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{}", String::from_utf8_lossy(&out.stderr).trim());

    let left = databases(&stack).await?;
    let own = dtks_e2e::run_database(&stack.run_id);
    assert!(
        left.contains(&own),
        "the running test's database was dropped"
    );
    for gone in [&killed, &taken_over, &legacy] {
        assert!(!left.contains(gone), "{gone} was kept");
    }
    // The running run goes on: its database answers and intake still serves.
    assert_eq!(
        count(&stack, "SELECT count(*) AS n FROM intake.proposals").await?,
        0
    );
    let mut health =
        tonic_health::pb::health_client::HealthClient::new(stack.channel("intake").await?);
    health
        .check(tonic_health::pb::HealthCheckRequest {
            service: String::new(),
        })
        .await?;
    Ok(())
}
