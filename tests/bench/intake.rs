//! Intake's bulk path against a raw PostgreSQL COPY of the same rows.
//!
//! Run with `scripts/bench.sh intake [HOUSEHOLDS]` (release build, real stack). It
//! starts the intake service, generates a synthetic regency with `dtksctl gen`, imports
//! every household through `ImportProposals` (streams of 10,000 rows, several in
//! flight: the path `dtksctl import` takes), then copies the very rows intake stored —
//! `proposals` and `proposal_persons` — into empty tables of the same shape (same
//! indexes and constraints) with one binary COPY each, and prints both and their ratio.
//! The bulk path also writes one outbox row per proposal, which the COPY baseline does
//! not; a second baseline line includes them.

use std::time::Instant;

use dtks_e2e::{Stack, benchtable, env_or};
use dtks_platform::auth::Role;
use dtks_proto::intake::v1::intake_service_client::IntakeServiceClient;
use futures::StreamExt;

const STREAM_ROWS: usize = 10_000;

async fn copy_out(conn: &mut sqlx::PgConnection, table: &str) -> anyhow::Result<Vec<u8>> {
    let mut stream = conn
        .copy_out_raw(&format!("COPY {table} TO STDOUT (FORMAT binary)"))
        .await?;
    let mut data = Vec::new();
    while let Some(chunk) = stream.next().await {
        data.extend_from_slice(&chunk?);
    }
    Ok(data)
}

async fn copy_in(conn: &mut sqlx::PgConnection, table: &str, data: &[u8]) -> anyhow::Result<u64> {
    let mut copy = conn
        .copy_in_raw(&format!("COPY {table} FROM STDIN (FORMAT binary)"))
        .await?;
    for chunk in data.chunks(1 << 20) {
        copy.send(chunk).await?;
    }
    Ok(copy.finish().await?)
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    // `cargo bench` passes `--bench`; nothing else is expected.
    let households: usize = env_or("DTKS_BENCH_HOUSEHOLDS", 100_000);
    let streams: usize = env_or("DTKS_BENCH_STREAMS", 4);
    println!("intake bulk benchmark: {households} households, {streams} streams in flight");

    let stack = Stack::start_services(
        "nik,kk_number,full_name,birth_place,birth_date,sex,village_code,death_date\n",
        &["intake"],
        &[],
    )
    .await?;

    // A synthetic regency (Kabupaten Bandung), generated once, outside the timing.
    let out = std::env::temp_dir().join(format!("dtks-bench-{}", stack.run_id));
    let (_, proposals) =
        dtks_e2e::generated_regency(&out, households, &["--corruption", "0"], "BA/MUSDES/BENCH")
            .await?;
    let _ = std::fs::remove_dir_all(&out);

    // The bulk path: gRPC client streams into the intake service.
    let token = stack.token(Role::RegencyOfficer, "32.04");
    let client = IntakeServiceClient::new(stack.channel("intake").await?)
        .max_decoding_message_size(16 << 20);
    let pool = sqlx::PgPool::connect(&stack.database_url).await?;
    // Each timed phase starts from a checkpoint, with nothing else running.
    sqlx::raw_sql("CHECKPOINT").execute(&pool).await?;
    let chunks = dtks_e2e::import_batches(proposals, STREAM_ROWS);
    let started = Instant::now();
    let mut answers = futures::stream::iter(chunks.into_iter().map(|chunk| {
        let mut client = client.clone();
        let token = token.clone();
        async move {
            let sent = Instant::now();
            client
                .import_proposals(dtks_e2e::authed(futures::stream::iter(chunk), &token))
                .await
                .map(|answer| (answer.into_inner(), sent.elapsed().as_secs_f64() * 1000.0))
        }
    }))
    .buffer_unordered(streams);
    let mut accepted = 0;
    let mut call_ms = Vec::new();
    while let Some(answer) = answers.next().await {
        let (answer, ms) = answer?;
        call_ms.push(ms);
        anyhow::ensure!(
            answer.rejected == 0,
            "rows refused: {:?}",
            &answer.rows[..3.min(answer.rows.len())]
        );
        accepted += answer.accepted;
    }
    let bulk = started.elapsed().as_secs_f64();
    anyhow::ensure!(
        accepted as usize == households,
        "{accepted} of {households} accepted"
    );

    // The relay publishes the events after the import; let it finish before the
    // baseline runs, so that the baseline has the machine to itself.
    let mut drained = bulk;
    loop {
        let pending: i64 =
            sqlx::query_scalar("SELECT count(*) FROM intake.outbox WHERE published_at IS NULL")
                .fetch_one(&pool)
                .await?;
        drained = drained.max(started.elapsed().as_secs_f64());
        if pending == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let mut conn = pool.acquire().await?;
    let count = |table: &'static str| {
        let pool = pool.clone();
        async move {
            sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(format!(
                "SELECT count(*) FROM {table}"
            )))
            .fetch_one(&pool)
            .await
        }
    };
    let proposals = count("intake.proposals").await?;
    let persons = count("intake.proposal_persons").await?;
    let events = count("intake.outbox").await?;
    anyhow::ensure!(proposals as usize == households && events as usize == households);

    // The baseline: the same rows, exported outside the timing, copied into empty tables
    // of the same shape.
    let proposal_rows = copy_out(&mut conn, "intake.proposals").await?;
    let person_rows = copy_out(&mut conn, "intake.proposal_persons").await?;
    let outbox_rows = copy_out(
        &mut conn,
        "(SELECT event_id, event_type, envelope FROM intake.outbox)",
    )
    .await?;
    sqlx::raw_sql(
        "CREATE SCHEMA bench_copy;
         CREATE TABLE bench_copy.proposals (LIKE intake.proposals INCLUDING ALL);
         CREATE TABLE bench_copy.proposal_persons (LIKE intake.proposal_persons INCLUDING ALL);
         CREATE TABLE bench_copy.outbox (LIKE intake.outbox INCLUDING ALL);",
    )
    .execute(&mut *conn)
    .await?;
    sqlx::raw_sql("CHECKPOINT").execute(&mut *conn).await?;
    let started = Instant::now();
    let mut txn = sqlx::Connection::begin(&mut *conn).await?;
    copy_in(&mut txn, "bench_copy.proposals", &proposal_rows).await?;
    copy_in(&mut txn, "bench_copy.proposal_persons", &person_rows).await?;
    txn.commit().await?;
    let raw = started.elapsed().as_secs_f64();
    let started = Instant::now();
    copy_in(
        &mut conn,
        "bench_copy.outbox (event_id, event_type, envelope)",
        &outbox_rows,
    )
    .await?;
    let raw_outbox = raw + started.elapsed().as_secs_f64();

    let rows_written = (proposals + persons) as f64;
    let mib = (proposal_rows.len() + person_rows.len()) as f64 / (1024.0 * 1024.0);
    println!(
        "rows: {proposals} proposals + {persons} persons = {rows_written} ({mib:.0} MiB as COPY data); {events} outbox events"
    );
    println!(
        "{:<44} {:>9} {:>13} {:>8}",
        "path", "seconds", "rows/s", "vs COPY"
    );
    let line = |name: &str, secs: f64| {
        println!(
            "{name:<44} {secs:>9.2} {:>13.0} {:>8.2}",
            rows_written / secs,
            raw / secs
        );
    };
    line("raw COPY (proposals + persons)", raw);
    line("raw COPY incl. outbox rows", raw_outbox);
    line("gRPC bulk import (checks + outbox)", bulk);
    println!(
        "the outbox relay had published all {events} events {drained:.2} s after the import began"
    );
    println!(
        "ratio: the bulk path runs at {:.2} of raw COPY speed (goal ≥ 0.50)",
        raw / bulk
    );
    benchtable::record(&benchtable::Row {
        stage: "intake".into(),
        measured: format!("bulk import, {households} households in streams of {STREAM_ROWS}"),
        unit: "households".into(),
        rate: proposals as f64 / bulk,
        cores: benchtable::machine_cores(),
        p50_ms: benchtable::percentile(&mut call_ms, 50.0),
        p99_ms: benchtable::percentile(&mut call_ms, 99.0),
        latency_of: format!("one stream of {STREAM_ROWS} rows"),
        baseline: Some(("raw COPY of the same rows".into(), proposals as f64 / raw)),
        units_per_person: proposals as f64 / persons as f64,
    })?;
    Ok(())
}
