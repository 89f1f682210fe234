//! The fault suite: a stream of 10,000 proposals flows through the pipeline on
//! PostgreSQL, RabbitMQ and Redis of the test's own — 60 % generated households proposed
//! (ADD), and as they enter DTKS, 30 % corrections of them (CHANGE) and 10 % removals
//! (REMOVE) — and while it flows every service in turn is killed with SIGKILL and
//! started again, RabbitMQ and PostgreSQL crash and come back, and the civil registry
//! turns slow and then goes away for a while. Afterwards every proposal is accounted for
//! exactly once in every stage — intake, matching, verivali, determination, reporting —
//! by a reconciliation query per stage, no event waits in a dead-letter queue, and the
//! recovery time of each fault is printed.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use dtks_e2e::{OwnServers, SERVICES, Stack, authed, count, count_becomes, env_or};
use dtks_platform::auth::Role;
use dtks_proto::common::v1 as pb;
use dtks_proto::events::v1::{ChangeType, ProposalKind, RemovalReason};
use dtks_proto::intake::v1::intake_service_client::IntakeServiceClient;
use dtks_proto::intake::v1::{ImportProposalsRequest, SubmitProposalRequest};
use dtks_proto::reporting::v1::reporting_service_client::ReportingServiceClient;
use dtks_proto::reporting::v1::{PipelineSummary, RegionQuery};
use sea_orm::ConnectionTrait;

/// Proposals in the stream (`DTKS_FAULT_HOUSEHOLDS` changes it for a local run).
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

/// Imports `batches` through intake as `token`, each retried through every outage until
/// intake answers (the idempotency keys make a retried batch the same proposals,
/// answered as replays); answers how many calls were retried.
async fn import_through_outages(
    intake_url: String,
    token: String,
    batches: Vec<Vec<ImportProposalsRequest>>,
) -> anyhow::Result<u32> {
    let mut retries = 0u32;
    let mut client = None;
    for rows in batches {
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
                .import_proposals(authed(futures::stream::iter(rows.clone()), &token))
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
    Ok(retries)
}

/// A correction of an accepted household (`proposed` as it was proposed, with the id
/// DTKS gave it): one more motorcycle.
fn correction(proposed: &SubmitProposalRequest, household_id: &str) -> SubmitProposalRequest {
    let mut household = proposed.household.clone().unwrap_or_default();
    household.household_id = household_id.into();
    household.assets.get_or_insert_default().motorcycles += 1;
    SubmitProposalRequest {
        idempotency_key: format!("chg-{}", proposed.external_reference),
        kind: ProposalKind::Change as i32,
        change_type: ChangeType::Correction as i32,
        reason: "perbaikan data aset (one more motorcycle)".into(),
        external_reference: format!("CHG-{}", proposed.external_reference),
        household: Some(household),
        ..proposed.clone()
    }
}

/// The removal of an accepted household: it no longer meets the criteria.
fn removal(proposed: &SubmitProposalRequest, household_id: &str) -> SubmitProposalRequest {
    let village = proposed
        .household
        .as_ref()
        .and_then(|h| h.address.as_ref())
        .map(|a| a.village_code.clone())
        .unwrap_or_default();
    SubmitProposalRequest {
        idempotency_key: format!("rm-{}", proposed.external_reference),
        kind: ProposalKind::Remove as i32,
        reason: "tidak lagi memenuhi kriteria (no longer eligible)".into(),
        removal_reason: RemovalReason::NotEligible as i32,
        external_reference: format!("RM-{}", proposed.external_reference),
        household: Some(pb::Household {
            household_id: household_id.into(),
            address: Some(pb::Address {
                village_code: village,
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..proposed.clone()
    }
}

/// The households in DTKS (accepted, not removed), each with the external reference of
/// the proposal that brought it in.
async fn in_dtks(db: &sea_orm::DatabaseConnection) -> anyhow::Result<Vec<(String, String)>> {
    let rows = db
        .query_all_raw(dtks_platform::db::stmt(
            "SELECT h.household_id::text AS id, p.external_reference AS reference
             FROM verivali.households h JOIN verivali.cases c ON c.case_id = h.case_id
             JOIN intake.proposals p ON p.proposal_id = c.proposal_id
             WHERE h.removed_at IS NULL",
            [],
        ))
        .await?;
    rows.iter()
        .map(|r| Ok((r.try_get("", "id")?, r.try_get("", "reference")?)))
        .collect()
}

/// The CHANGE and REMOVE proposals of the stream: as households enter DTKS, each is
/// corrected or removed (three corrections to one removal) until `changes` corrections
/// and `removals` removals are proposed, village batch by village batch.
async fn keep_up_to_date(
    stack_db: sea_orm::DatabaseConnection,
    (intake_url, token): (String, String),
    proposed: HashMap<String, SubmitProposalRequest>,
    (changes, removals): (usize, usize),
) -> anyhow::Result<u32> {
    let (mut targeted, mut retries) = (HashSet::new(), 0u32);
    let (mut corrected, mut removed, mut row) = (0usize, 0usize, 0u64);
    let deadline = Instant::now() + dtks_e2e::time::patience(900);
    while corrected < changes || removed < removals {
        anyhow::ensure!(
            Instant::now() < deadline,
            "only {corrected} corrections and {removed} removals found households to act on"
        );
        let Ok(households) = in_dtks(&stack_db).await else {
            tokio::time::sleep(Duration::from_millis(500)).await;
            continue;
        };
        let mut batch = Vec::new();
        for (id, reference) in households {
            if batch.len() == BATCH || (corrected == changes && removed == removals) {
                break;
            }
            let Some(proposal) = proposed.get(&reference) else {
                continue;
            };
            if !targeted.insert(id.clone()) {
                continue;
            }
            let remove = removed < removals && (targeted.len() % 4 == 0 || corrected == changes);
            let change = if remove {
                removed += 1;
                removal(proposal, &id)
            } else {
                corrected += 1;
                correction(proposal, &id)
            };
            row += 1;
            batch.push(ImportProposalsRequest {
                row,
                proposal: Some(change),
            });
        }
        if batch.is_empty() {
            tokio::time::sleep(Duration::from_millis(500)).await;
            continue;
        }
        let urls = (intake_url.clone(), token.clone());
        retries += import_through_outages(urls.0, urls.1, vec![batch]).await?;
    }
    Ok(retries)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_proposal_is_accounted_for_once_after_crashes_restarts_and_a_registry_outage()
-> anyhow::Result<()> {
    let n = env_or("DTKS_FAULT_HOUSEHOLDS", HOUSEHOLDS);
    let (changes, removals) = (n * 3 / 10, n / 10);
    let adds = n - changes - removals;
    let dir = std::env::temp_dir().join(format!("dtks-faults-{}", uuid::Uuid::new_v4()));
    let (registry, proposals) =
        dtks_e2e::generated_regency(&dir, adds, &[], "BA-MUSDES/FAULTS").await?;
    anyhow::ensure!(
        proposals.len() == adds,
        "the generator made {}",
        proposals.len()
    );
    let by_reference: HashMap<String, SubmitProposalRequest> = proposals
        .iter()
        .map(|p| (p.external_reference.clone(), p.clone()))
        .collect();
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
    // every outage; beside it, the corrections and removals of the households that have
    // entered DTKS.
    let intake_url = stack.endpoint("intake");
    let flowing = Instant::now();
    let batches = dtks_e2e::import_batches(proposals, BATCH);
    let submitter = tokio::spawn(import_through_outages(
        intake_url.clone(),
        officer.clone(),
        batches,
    ));
    let updater = tokio::spawn(keep_up_to_date(
        stack.db.clone(),
        (intake_url, officer),
        by_reference,
        (changes, removals),
    ));

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

    let retries = submitter.await?? + updater.await??;
    let submitted_in = flowing.elapsed();
    let (stack_ref, admin_ref) = (&stack, &admin);
    let settled = stack
        .eventually(600, "every proposal to be decided", || async move {
            let s = summary(stack_ref, admin_ref).await?;
            let decided = s.households_accepted + s.households_returned + s.households_removed;
            Ok((s.proposals_matched as usize == n && decided as usize == n).then_some(s))
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
    assert_eq!(settled.proposals_submitted as usize, n, "{settled:?}");
    // Each accepted case is one version of the master registry (an addition, a
    // correction or a removal), and what stands is what verivali holds in DTKS.
    let accepted = one("SELECT count(*)::bigint AS n FROM verivali.cases WHERE state = 6").await?;
    assert_eq!(
        accepted as u64,
        settled.households_accepted + settled.households_removed
    );
    count_becomes(
        &stack,
        120,
        "SELECT count(*)::bigint AS n FROM determination.registry_versions",
        accepted,
    )
    .await?;
    let standing =
        one("SELECT count(*)::bigint AS n FROM verivali.households WHERE removed_at IS NULL")
            .await?;
    count_becomes(
        &stack,
        120,
        "SELECT count(*)::bigint AS n FROM determination.registry_households WHERE removed_at IS NULL",
        standing,
    )
    .await?;
    for (kind, expected) in [(1, adds), (2, changes), (3, removals)] {
        let sql = format!("SELECT count(*)::bigint AS n FROM intake.proposals WHERE kind = {kind}");
        assert_eq!(count(&stack, &sql).await? as usize, expected, "kind {kind}");
    }
    // The removed households' persons have left matching's index.
    count_becomes(
        &stack,
        120,
        "SELECT count(*)::bigint AS n FROM matching.person_index i
         JOIN verivali.households h ON h.household_id::text = i.household_id WHERE h.removed_at IS NOT NULL",
        0,
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
        "fault suite: {n} proposals ({adds} ADD, {changes} CHANGE, {removals} REMOVE; \
         {} accepted, {} removed, {} returned), submitted in {:.1} s with {retries} \
         retried batches, all decided {:.1} s after the stream began",
        settled.households_accepted,
        settled.households_removed,
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
