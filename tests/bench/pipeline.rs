//! The whole pipeline under sustained load: generated musdes proposals are offered to
//! intake at a steady rate (1,000 households/s by default, village batches of 100 sent
//! on a clock whether or not earlier ones were answered), and flow through matching
//! against the reference civil registry, verivali (the demo's automatic approvals stand
//! in for the officers), determination and reporting, every service its own release
//! process on the real PostgreSQL and RabbitMQ.
//!
//! Run with `scripts/bench.sh pipeline [HOUSEHOLDS] [OFFERED_PER_SECOND]`. It prints the
//! rate offered, the rate intake took, the rate decided end to end (first submission to
//! last decision, from the stages' own timestamps), the latency from submission to
//! decision (p50/p99) — which grows while the offered rate is above what the machine
//! decides, as it would in production — and when reporting and determination had
//! caught up.

use std::time::{Duration, Instant};

use dtks_e2e::benchtable::{self, Row};
use dtks_e2e::{Stack, authed, count, count_becomes, env_or};
use dtks_platform::auth::Role;
use dtks_proto::intake::v1::intake_service_client::IntakeServiceClient;
use dtks_proto::reporting::v1::RegionQuery;
use dtks_proto::reporting::v1::reporting_service_client::ReportingServiceClient;
use sea_orm::ConnectionTrait;

const BATCH: usize = 100;

fn main() -> anyhow::Result<()> {
    std::env::set_current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))?;
    tokio::runtime::Runtime::new()?.block_on(run(
        env_or("DTKS_BENCH_HOUSEHOLDS", 20_000usize),
        env_or("DTKS_BENCH_OFFERED", 1_000.0f64),
    ))
}

async fn run(households: usize, offered: f64) -> anyhow::Result<()> {
    println!(
        "pipeline benchmark: {households} households offered at {offered:.0}/s in batches of {BATCH}"
    );
    let dir = std::env::temp_dir().join(format!("dtks-bench-pipeline-{}", std::process::id()));
    let (registry, proposals) =
        dtks_e2e::generated_regency(&dir, households, &[], "BA-MUSDES/BENCH").await?;
    let persons: usize = proposals
        .iter()
        .filter_map(|p| p.household.as_ref())
        .map(|h| h.families.iter().map(|f| f.members.len()).sum::<usize>())
        .sum();
    let _ = std::fs::remove_dir_all(&dir);
    let n = proposals.len();
    let stack = Stack::start(&registry).await?;
    drop(registry);
    let officer = stack.token(Role::RegencyOfficer, "32.04");
    let admin = stack.token(Role::PusdatinAdmin, "");
    let intake = IntakeServiceClient::new(stack.channel("intake").await?);

    // The offer: one batch per tick, each on its own task.
    let tick = Duration::from_secs_f64(BATCH as f64 / offered);
    let mut clock = tokio::time::interval(tick);
    clock.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut calls = tokio::task::JoinSet::new();
    let started = Instant::now();
    for rows in dtks_e2e::import_batches(proposals, BATCH) {
        clock.tick().await;
        let (mut intake, officer) = (intake.clone(), officer.clone());
        calls.spawn(async move {
            let sent = Instant::now();
            let answer = intake
                .import_proposals(authed(futures::stream::iter(rows), &officer))
                .await?
                .into_inner();
            anyhow::ensure!(answer.rejected == 0, "intake refused generated proposals");
            anyhow::Ok(sent.elapsed().as_secs_f64() * 1000.0)
        });
    }
    let offered_for = started.elapsed().as_secs_f64();
    let mut call_ms = Vec::with_capacity(calls.len());
    while let Some(done) = calls.join_next().await {
        call_ms.push(done??);
    }
    let taken_in = started.elapsed().as_secs_f64();

    // Counted: reporting has seen every proposal matched and its case accepted or
    // returned (the decisions themselves are timed from verivali's own rows below).
    let mut reporting = ReportingServiceClient::new(stack.channel("reporting").await?);
    let mut last = (Instant::now(), 0u64);
    let mut progress = Instant::now();
    loop {
        let s = reporting
            .get_pipeline_summary(authed(RegionQuery::default(), &admin))
            .await?
            .into_inner();
        let decided = s.households_accepted + s.households_returned;
        if s.proposals_matched as usize == n && decided as usize == n {
            break;
        }
        // Where the flow stands, every five seconds: the stage that lags is the limit.
        if progress.elapsed() >= Duration::from_secs(5) {
            progress = Instant::now();
            let cases = count(
                &stack,
                "SELECT count(*)::bigint AS n FROM verivali.cases WHERE state IN (6, 7, 8)",
            )
            .await?;
            println!(
                "  at {:>5.1} s: {cases} decided in verivali; reporting has counted {} submitted, {} matched, {decided} decided",
                started.elapsed().as_secs_f64(),
                s.proposals_submitted,
                s.proposals_matched
            );
        }
        if decided > last.1 {
            last = (Instant::now(), decided);
        }
        anyhow::ensure!(
            last.0.elapsed() < Duration::from_secs(120),
            "the pipeline stopped at {decided} of {n} decided: {s:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let reported_in = started.elapsed().as_secs_f64();
    let accepted = count(
        &stack,
        "SELECT count(*)::bigint AS n FROM verivali.households",
    )
    .await?;
    count_becomes(
        &stack,
        300,
        "SELECT count(*)::bigint AS n FROM determination.registry_households",
        accepted,
    )
    .await?;
    let held_in = started.elapsed().as_secs_f64();

    // Submission → decision, per household, from the stages' own timestamps; the
    // decisions' span from the first submission to the last decision.
    let rows = stack
        .db
        .query_all_raw(sea_orm::Statement::from_string(
            sea_orm::DatabaseBackend::Postgres,
            "SELECT (EXTRACT(EPOCH FROM (c.updated_at - p.submitted_at)) * 1000)::float8 AS ms,
                    (EXTRACT(EPOCH FROM (max(c.updated_at) OVER () - min(p.submitted_at) OVER ())))::float8 AS span
             FROM verivali.cases c JOIN intake.proposals p USING (proposal_id)",
        ))
        .await?;
    let mut latency: Vec<f64> = rows
        .iter()
        .map(|r| r.try_get::<f64>("", "ms"))
        .collect::<Result<_, _>>()?;
    anyhow::ensure!(latency.len() == n, "{} of {n} cases", latency.len());
    let decided_in = rows
        .first()
        .map(|r| r.try_get::<f64>("", "span"))
        .transpose()?
        .unwrap_or(f64::NAN);
    let p50 = benchtable::percentile(&mut latency, 50.0);
    let p99 = benchtable::percentile(&mut latency, 99.0);
    let call_p50 = benchtable::percentile(&mut call_ms, 50.0);
    let call_p99 = benchtable::percentile(&mut call_ms, 99.0);

    let ms = |x: Option<f64>| x.map_or("—".to_owned(), |v| format!("{v:.0} ms"));
    println!("| phase | households | seconds | households/s | p50 | p99 |");
    println!("|---|---|---|---|---|---|");
    println!(
        "| offered to intake | {n} | {offered_for:.1} | {:.0} | | |",
        n as f64 / offered_for
    );
    println!(
        "| taken by intake (import call) | {n} | {taken_in:.1} | {:.0} | {} | {} |",
        n as f64 / taken_in,
        ms(call_p50),
        ms(call_p99)
    );
    println!(
        "| decided (matched, verified, accepted or returned) | {n} | {decided_in:.1} | {:.0} | {} | {} |",
        n as f64 / decided_in,
        ms(p50),
        ms(p99)
    );
    println!(
        "| counted by reporting (its dashboards) | {n} | {reported_in:.1} | {:.0} | | |",
        n as f64 / reported_in
    );
    println!(
        "| held by determination ({accepted} accepted) | {accepted} | {held_in:.1} | {:.0} | | |",
        accepted as f64 / held_in
    );
    benchtable::record(&Row {
        stage: "pipeline".into(),
        measured: format!(
            "{n} households offered at {:.0}/s, intake to decision (matching, verivali, determination, reporting all running)",
            n as f64 / offered_for
        ),
        unit: "households".into(),
        rate: n as f64 / decided_in,
        cores: benchtable::machine_cores(),
        p50_ms: p50,
        p99_ms: p99,
        latency_of: "submission → decision, under the offered load".into(),
        units_per_person: n as f64 / persons as f64,
        ..Default::default()
    })?;
    Ok(())
}
