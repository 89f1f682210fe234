//! Distribution: beneficiary lists for every shipped programme over a determined month,
//! with a quota for every regency, and one fixed list streamed to a client.
//!
//! Run with `scripts/bench.sh distribution [HOUSEHOLDS]` (release build, real stack;
//! default 10 M, the target: each list within 10 s, streaming at least 200k
//! recipients a second). It fills the determination service's master registry with the
//! benchmarks' synthetic households (ten regencies), determines the month, waits for the
//! distribution service to load the published month (reported on its own: once a
//! month, not once a list), gives every
//! shipped programme a quota of a quarter of each regency's households, then times, for
//! each programme, `BuildList` (every household judged by the programme's rule, each
//! regency's quota filled poorest first) and `ApproveList`; and last `StreamList` of the
//! largest list to a client on the same machine, in batches of 5,000.

use std::time::Instant;

use dtks_e2e::{Stack, authed, env_or};
use dtks_platform::auth::Role;
use dtks_proto::common::v1 as pb;
use dtks_proto::determination::v1::DetermineRequest;
use dtks_proto::determination::v1::determination_service_client::DeterminationServiceClient;
use dtks_proto::distribution::v1::distribution_service_client::DistributionServiceClient;
use dtks_proto::distribution::v1::*;
use sqlx::Connection;

const PERIOD: pb::Period = pb::Period {
    year: 2026,
    month: 11,
};

fn main() -> anyhow::Result<()> {
    std::env::set_current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))?;
    tokio::runtime::Runtime::new()?.block_on(run(env_or("DTKS_BENCH_HOUSEHOLDS", 10_000_000)))
}

async fn run(n: u64) -> anyhow::Result<()> {
    println!("distribution benchmark over a determined month of {n} households");
    let stack = Stack::start_services(
        "nik,kk_number,full_name,birth_place,birth_date,sex,village_code,death_date\n",
        &["determination", "distribution"],
        &[],
    )
    .await?;
    let started = Instant::now();
    let mut conn = sqlx::PgConnection::connect(&stack.database_url).await?;
    dtks_e2e::fill_registry(&mut conn, 0, n).await?;
    sqlx::raw_sql("ANALYZE determination.registry_households")
        .execute(&mut conn)
        .await?;
    let admin = stack.token(Role::PusdatinAdmin, "");
    DeterminationServiceClient::new(stack.channel("determination").await?)
        .max_decoding_message_size(16 << 20)
        .determine(authed(
            DetermineRequest {
                period: Some(PERIOD),
            },
            &admin,
        ))
        .await?;
    println!(
        "  registry filled and month determined in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let mut client = DistributionServiceClient::new(stack.channel("distribution").await?)
        .max_decoding_message_size(64 << 20);
    let eselon = stack.token(Role::EselonI, "");
    // The month is loaded as soon as it is published; this waits for that load.
    let started = Instant::now();
    let prepared = client
        .prepare_month(authed(
            PrepareMonthRequest {
                period: Some(PERIOD),
            },
            &eselon,
        ))
        .await?
        .into_inner();
    println!(
        "  month loaded for lists: {} households, {} persons, {} MiB, loading took {:.1} s (ready {:.1} s after the determination answered)",
        prepared.households,
        prepared.persons,
        prepared.megabytes,
        prepared.load_seconds,
        started.elapsed().as_secs_f64()
    );
    // A quarter of each regency's households (ten regencies, as many households each).
    let quota = (n / 10 / 4).max(1);
    let programmes = client
        .list_programmes(authed(ListProgrammesRequest {}, &admin))
        .await?
        .into_inner()
        .programmes;
    println!("| programme | eligible | selected | build | approve |");
    println!("|---|---|---|---|---|");
    let mut largest: Option<BeneficiaryList> = None;
    let (mut evaluated, mut building, mut build_ms) = (0u64, 0.0, Vec::new());
    for mut p in programmes {
        p.quotas = (1..=10).map(|r| (format!("32.{r:02}"), quota)).collect();
        let p = client.save_programme(authed(p, &admin)).await?.into_inner();
        let started = Instant::now();
        let list = client
            .build_list(authed(
                BuildListRequest {
                    programme_code: p.code.clone(),
                    period: Some(PERIOD),
                },
                &eselon,
            ))
            .await?
            .into_inner();
        let built = started.elapsed().as_secs_f64();
        let started = Instant::now();
        let list = client
            .approve_list(authed(
                ApproveListRequest {
                    list_id: list.list_id.clone(),
                },
                &eselon,
            ))
            .await?
            .into_inner();
        let approved = started.elapsed().as_secs_f64();
        let eligible: u64 = list.regions.iter().map(|r| r.eligible).sum();
        evaluated += n;
        building += built;
        build_ms.push(built * 1000.0);
        println!(
            "| {} | {eligible} | {} | {built:.2} s | {approved:.2} s |",
            p.code, list.recipients
        );
        if largest
            .as_ref()
            .is_none_or(|l| l.recipients < list.recipients)
        {
            largest = Some(list);
        }
    }
    let list = largest.ok_or_else(|| anyhow::anyhow!("no programme"))?;
    let system = stack.token_for("bansos", Role::Service, "");
    let started = Instant::now();
    let mut stream = client
        .stream_list(authed(
            StreamListRequest {
                list_id: list.list_id.clone(),
                cursor: String::new(),
                batch_size: 5000,
            },
            &system,
        ))
        .await?
        .into_inner();
    let mut received = 0u64;
    while let Some(batch) = stream.message().await? {
        received += batch.recipients.len() as u64;
    }
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "| stream {} ({}) | {received} recipients | {seconds:.2} s | {:.0} recipients/s |",
        list.programme_code,
        list.list_id,
        received as f64 / seconds
    );
    anyhow::ensure!(received == list.recipients, "the whole list arrived");
    use dtks_e2e::benchtable::{self, HOUSEHOLDS_PER_PERSON, Row};
    let lists = build_ms.len();
    benchtable::record(&Row {
        stage: "distribution".into(),
        measured: format!(
            "beneficiary lists: {lists} programmes over a determined month of {n} households"
        ),
        unit: "households".into(),
        rate: evaluated as f64 / building,
        cores: benchtable::machine_cores(),
        p50_ms: benchtable::percentile(&mut build_ms, 50.0),
        p99_ms: benchtable::percentile(&mut build_ms, 99.0),
        latency_of: "one BuildList call".into(),
        units_per_person: HOUSEHOLDS_PER_PERSON * lists as f64,
        ..Default::default()
    })?;
    benchtable::record(&Row {
        stage: "distribution".into(),
        measured: format!("one approved list streamed to a bansos system ({received} recipients)"),
        unit: "recipients".into(),
        rate: received as f64 / seconds,
        cores: benchtable::machine_cores(),
        units_per_person: HOUSEHOLDS_PER_PERSON,
        ..Default::default()
    })?;
    Ok(())
}
