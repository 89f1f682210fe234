//! Faults while households flow (first part of the fault suite): proposals of a
//! generated regency are submitted continuously while every service in turn is killed
//! with SIGKILL and started again, and the civil registry turns slow and then goes away
//! for a while. Afterwards every proposal is accounted for exactly once in every stage —
//! intake, matching, verivali, determination, reporting — by a reconciliation query per
//! stage, and the recovery time of each fault is printed.
//!
//! Restarting RabbitMQ and PostgreSQL themselves needs servers of the test's own (the
//! other tests share these); that part of the suite is still to come.

use std::time::{Duration, Instant};

use dtks_e2e::{Stack, authed, count};
use dtks_platform::auth::Role;
use dtks_proto::intake::v1::SubmitProposalRequest;
use dtks_proto::intake::v1::intake_service_client::IntakeServiceClient;
use dtks_proto::reporting::v1::RegionQuery;
use dtks_proto::reporting::v1::reporting_service_client::ReportingServiceClient;

const HOUSEHOLDS: usize = 400;

/// The generated regency: the registry file and one musdes proposal per household.
async fn population(dir: &std::path::Path) -> anyhow::Result<(String, Vec<SubmitProposalRequest>)> {
    let out = tokio::process::Command::new(dtks_e2e::bin_dir().join("dtksctl"))
        .args(["gen", "--regencies", "32.04", "--households"])
        .arg(HOUSEHOLDS.to_string())
        .arg("--out")
        .arg(dir)
        .output()
        .await?;
    anyhow::ensure!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let registry = std::fs::read_to_string(dir.join("registry.csv"))?;
    let proposals = dtks_e2e::generated_proposals(dir, "BA-MUSDES/FAULTS")?;
    Ok((registry, proposals))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_proposal_is_accounted_for_once_after_crashes_and_a_registry_outage()
-> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("dtks-faults-{}", uuid::Uuid::new_v4()));
    let (registry, proposals) = population(&dir).await?;
    let n = proposals.len();
    let mut stack = Stack::start(&registry).await?;
    let officer = stack.token(Role::RegencyOfficer, "32.04");
    let admin = stack.token(Role::PusdatinAdmin, "");

    // The submitter: one proposal at a time, retrying through every outage (the
    // idempotency key makes a retried submission the same proposal).
    let intake_url = stack.endpoint("intake");
    let submitter = tokio::spawn(async move {
        let mut retries = 0u32;
        let mut client = None;
        for proposal in proposals {
            loop {
                // One connection while it lasts; a new one after a failure.
                if client.is_none() {
                    client = tonic::transport::Endpoint::from_shared(intake_url.clone())
                        .ok()
                        .map(|e| IntakeServiceClient::new(e.connect_lazy()));
                }
                let Some(intake) = client.as_mut() else {
                    continue;
                };
                match intake
                    .submit_proposal(authed(proposal.clone(), &officer))
                    .await
                {
                    Ok(_) => break,
                    Err(_) => {
                        retries += 1;
                        client = None;
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
        }
        retries
    });

    // The faults, one after another while proposals flow.
    let progress = |stack: &Stack| {
        let url = stack.endpoint("reporting");
        let admin = admin.clone();
        async move {
            let channel = tonic::transport::Endpoint::from_shared(url)?
                .connect()
                .await?;
            let s = ReportingServiceClient::new(channel)
                .get_pipeline_summary(authed(RegionQuery::default(), &admin))
                .await?
                .into_inner();
            anyhow::Ok(s.events_consumed)
        }
    };
    let mut report = Vec::new();
    for service in [
        "intake",
        "matching",
        "verivali",
        "determination",
        "reporting",
        "distribution",
    ] {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let killed = Instant::now();
        stack.restart(service, &[]).await?;
        let serving = killed.elapsed();
        // Recovered when the pipeline moves again: reporting counts another event.
        let before = loop {
            if let Ok(c) = progress(&stack).await {
                break c;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        let moving = loop {
            if progress(&stack).await.unwrap_or(before) > before || Instant::now() > deadline {
                break killed.elapsed();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        report.push((format!("kill -9 {service}"), serving, moving));
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
    let stack_ref = &stack;
    stack
        .eventually(
            120,
            "matching to clear the outage's backlog",
            || async move {
                let delayed = count(
                    stack_ref,
                    "SELECT count(*)::bigint AS n FROM matching.pending WHERE attempts > 0",
                )
                .await?;
                Ok((delayed == 0).then_some(()))
            },
        )
        .await?;
    report.push((
        "civil registry slow 3 s, then down 3 s".into(),
        down_for,
        down_for + back.elapsed(),
    ));

    let retries = submitter.await?;
    let admin_ref = &admin;
    let settled = stack
        .eventually(240, "every proposal to be decided", || async move {
            let channel = stack_ref.channel("reporting").await?;
            let s = ReportingServiceClient::new(channel)
                .get_pipeline_summary(authed(RegionQuery::default(), admin_ref))
                .await?
                .into_inner();
            Ok((s.proposals_matched as usize == n
                && (s.households_accepted + s.households_returned) as usize == n)
                .then_some(s))
        })
        .await?;
    let recovered = started.elapsed();

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
    stack
        .eventually(
            60,
            "determination to hold every accepted household",
            || async move {
                let held = count(
                    stack_ref,
                    "SELECT count(*)::bigint AS n FROM determination.registry_households",
                )
                .await?;
                Ok((held == accepted).then_some(()))
            },
        )
        .await?;
    // No event took effect twice: every inbox holds each event once by its key, and the
    // outboxes published everything.
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

    println!("fault suite: {n} households, {retries} submission retries");
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
        "  every proposal decided {} ms after the registry outage began (submissions included)",
        recovered.as_millis()
    );
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
