//! The fault suite: a stream of 10,000 generated households flows through the pipeline
//! on PostgreSQL, RabbitMQ and Redis of the test's own, and while it flows every service
//! in turn is killed with SIGKILL and started again, RabbitMQ and PostgreSQL crash and
//! come back, and the civil registry turns slow and then goes away for a while.
//! Afterwards every proposal is accounted for exactly once in every stage — intake,
//! matching, verivali, determination, reporting — by a reconciliation query per stage,
//! no event waits in a dead-letter queue, and the recovery time of each fault is printed.

use std::time::{Duration, Instant};

use dtks_e2e::{OwnServers, SERVICES, Stack, authed, count, count_becomes, env_or};
use dtks_platform::auth::Role;
use dtks_proto::intake::v1::intake_service_client::IntakeServiceClient;
use dtks_proto::reporting::v1::reporting_service_client::ReportingServiceClient;
use dtks_proto::reporting::v1::{PipelineSummary, RegionQuery};

/// Households in the stream (`DTKS_FAULT_HOUSEHOLDS` changes it for a local run).
const HOUSEHOLDS: usize = 10_000;
/// Proposals per import call: a village's musdes minutes, roughly.
const BATCH: usize = 100;

/// What reporting says of the whole country.
async fn summary(stack: &Stack, admin: &str) -> anyhow::Result<PipelineSummary> {
    let channel = tonic::transport::Endpoint::from_shared(stack.endpoint("reporting"))?
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(5))
        .connect()
        .await?;
    Ok(ReportingServiceClient::new(channel)
        .get_pipeline_summary(authed(RegionQuery::default(), admin))
        .await?
        .into_inner())
}

/// Waits until the pipeline moves again after a fault that began at `began`: reporting
/// answers, and then counts another consumed event. Answers the time since `began`.
async fn moving_again(stack: &Stack, admin: &str, began: Instant) -> Duration {
    let deadline = Instant::now() + dtks_e2e::time::patience(90);
    let mut before = None;
    while Instant::now() < deadline {
        if let Ok(s) = summary(stack, admin).await {
            match before {
                None => before = Some(s.events_consumed),
                Some(b) if s.events_consumed > b => return began.elapsed(),
                Some(_) => {}
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    began.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_proposal_is_accounted_for_once_after_crashes_restarts_and_a_registry_outage()
-> anyhow::Result<()> {
    let households = env_or("DTKS_FAULT_HOUSEHOLDS", HOUSEHOLDS);
    let dir = std::env::temp_dir().join(format!("dtks-faults-{}", uuid::Uuid::new_v4()));
    let (registry, proposals) =
        dtks_e2e::generated_regency(&dir, households, &[], "BA-MUSDES/FAULTS").await?;
    let n = proposals.len();
    // Declared before the stack, so dropped after it: the stack cleans up on them.
    let servers = OwnServers::start().await?;
    // The services' own logs (warnings through every outage) go to files beside the
    // data, so that the report stands alone in the output.
    let logs = dir.join("logs");
    std::fs::create_dir_all(&logs)?;
    let logs = logs.display().to_string();
    let mut env = servers.env();
    env.push((dtks_e2e::LOG_DIR, &logs));
    let mut stack = Stack::start_services(&registry, SERVICES, &env).await?;
    let officer = stack.token(Role::RegencyOfficer, "32.04");
    let admin = stack.token(Role::PusdatinAdmin, "");

    // The stream: village batches imported one after another, each retried through
    // every outage until intake answers (the idempotency keys make a retried batch the
    // same proposals, answered as replays).
    let intake_url = stack.endpoint("intake");
    let flowing = Instant::now();
    let submitter = tokio::spawn(async move {
        let mut retries = 0u32;
        let mut client = None;
        for rows in dtks_e2e::import_batches(proposals, BATCH) {
            loop {
                if client.is_none() {
                    client = tonic::transport::Endpoint::from_shared(intake_url.clone())
                        .ok()
                        .map(|e| IntakeServiceClient::new(e.connect_lazy()));
                }
                let Some(intake) = client.as_mut() else {
                    continue;
                };
                match intake
                    .import_proposals(authed(futures::stream::iter(rows.clone()), &officer))
                    .await
                {
                    Ok(answer) => {
                        let answer = answer.into_inner();
                        anyhow::ensure!(
                            answer.rejected == 0,
                            "intake refused generated proposals: {:?}",
                            answer.rows.iter().find(|r| !r.errors.is_empty())
                        );
                        break;
                    }
                    Err(_) => {
                        retries += 1;
                        client = None;
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                }
            }
        }
        anyhow::Ok((retries, flowing.elapsed()))
    });

    // The faults, one after another while the stream flows.
    let mut report: Vec<(String, Duration, Duration)> = Vec::new();
    for &service in SERVICES {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let killed = Instant::now();
        stack.restart(service, &[]).await?;
        let serving = killed.elapsed();
        let moving = moving_again(&stack, &admin, killed).await;
        report.push((format!("kill -9 {service}"), serving, moving));
    }
    for server in ["rabbitmq", "postgres"] {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let crashed = Instant::now();
        servers.stop(server, true).await?;
        servers.start_server(server).await?;
        let serving = crashed.elapsed();
        let moving = moving_again(&stack, &admin, crashed).await;
        report.push((format!("{server} crashes and restarts"), serving, moving));
    }
    // The civil registry: slow for a while, then gone, then back.
    let started = Instant::now();
    stack.stop_registry().await?;
    stack.start_registry_with_fault("slow").await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    stack.stop_registry().await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let down_for = started.elapsed();
    stack.start_registry().await?;
    let back = Instant::now();
    // Recovered when no proposal waits out a backoff any more.
    count_becomes(
        &stack,
        180,
        "SELECT count(*)::bigint AS n FROM matching.pending WHERE attempts > 0",
        0,
    )
    .await?;
    report.push((
        "civil registry slow 3 s, then down 3 s".into(),
        down_for,
        down_for + back.elapsed(),
    ));

    let (retries, submitted_in) = submitter.await??;
    let (stack_ref, admin_ref) = (&stack, &admin);
    let settled = stack
        .eventually(600, "every proposal to be decided", || async move {
            let s = summary(stack_ref, admin_ref).await?;
            Ok((s.proposals_matched as usize == n
                && (s.households_accepted + s.households_returned) as usize == n)
                .then_some(s))
        })
        .await?;
    let decided_in = flowing.elapsed();

    // Reconciliation, stage by stage: each proposal exactly once.
    let one = |sql: &'static str| async move { count(stack_ref, sql).await };
    assert_eq!(
        one("SELECT count(*)::bigint AS n FROM intake.proposals").await? as usize,
        n
    );
    assert_eq!(
        one("SELECT count(DISTINCT proposal_id)::bigint AS n FROM matching.match_results").await?
            as usize,
        n
    );
    assert_eq!(
        one("SELECT count(*)::bigint AS n FROM matching.match_results").await? as usize,
        n
    );
    assert_eq!(
        one("SELECT count(*)::bigint AS n FROM verivali.cases").await? as usize,
        n
    );
    let accepted = one("SELECT count(*)::bigint AS n FROM verivali.households").await?;
    assert_eq!(accepted as u64, settled.households_accepted);
    assert_eq!(settled.proposals_submitted as usize, n, "{settled:?}");
    count_becomes(
        &stack,
        120,
        "SELECT count(*)::bigint AS n FROM determination.registry_households",
        accepted,
    )
    .await?;
    // No event took effect twice: every inbox holds each event once by its key, and the
    // outboxes published everything; and none was given up on.
    for service in [
        "intake",
        "matching",
        "verivali",
        "determination",
        "reporting",
    ] {
        let unpublished = count(
            &stack,
            &format!(
                "SELECT count(*)::bigint AS n FROM {service}.outbox WHERE published_at IS NULL"
            ),
        )
        .await?;
        assert_eq!(unpublished, 0, "{service} left events unpublished");
    }
    let waiting: u64 = settled.dead_letters.iter().map(|d| d.waiting).sum();
    assert_eq!(waiting, 0, "dead letters: {:?}", settled.dead_letters);

    println!(
        "fault suite: {n} households ({} accepted, {} returned), submitted in {:.1} s with \
         {retries} retried batches, all decided {:.1} s after the stream began",
        settled.households_accepted,
        settled.households_returned,
        submitted_in.as_secs_f64(),
        decided_in.as_secs_f64()
    );
    println!(
        "  {:<44} {:>12} {:>16}",
        "fault", "serving (ms)", "recovered (ms)"
    );
    for (fault, serving, moving) in &report {
        println!(
            "  {fault:<44} {:>12} {:>16}",
            serving.as_millis(),
            moving.as_millis()
        );
    }
    println!(
        "  serving: the process or server answers again; recovered: the pipeline moves \
         again (reporting counts a new event; for the registry, no proposal waits out a \
         backoff), both from the fault's start"
    );
    drop(stack);
    drop(servers);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
