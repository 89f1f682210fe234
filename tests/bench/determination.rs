//! Determination: a full run over a large master registry, and the ranking core against
//! DuckDB.
//!
//! Run with `scripts/bench.sh determination [MILLIONS] [REGISTRY]` (release build, real
//! stack). First the **full run**: a determination service over a master registry of
//! `REGISTRY` households (default 10 M, the target: within 60 s), copied straight
//! into its tables as its consumer would have stored them, one
//! `Determine` for a first month and one for a second month after 0.5 % of households
//! were removed and as many added, each with the service's own phase timings (read,
//! score, rank, hash, write, index, diff, commit). Then the **ranking core**: it
//! draws 45 M synthetic welfare scores (log per-capita consumption around Rp 1 M, to
//! four decimals, so that ties occur as they do in real scores), then in the same run:
//!
//! - **DTKS**: `dtks_domain::ranking` — every household's national rank (poorest first,
//!   ties by household) and decile, on two threads, timed from the scores in memory to
//!   the deciles in memory;
//! - **DuckDB** (PyPI `duckdb`, in a throw-away virtual environment the script makes):
//!   `ntile(10) OVER (ORDER BY score, household)` into a table, two threads, timed the
//!   same way (tests/bench/duckdb_ntile.py);
//!
//! and checks that both assigned every household the same decile (a checksum over all).

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use dtks_e2e::{Stack, authed, env_or};
use dtks_platform::auth::Role;
use dtks_proto::common::v1 as pb;
use dtks_proto::determination::v1::{
    DetermineRequest, Snapshot, determination_service_client::DeterminationServiceClient,
};
use sqlx::Connection;

const THREADS: usize = 2;

/// SplitMix64: the benchmark's scores are the same in every run.
fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Roughly normal (sum of four uniforms), mean 13.8 (≈ Rp 1 M a month), four decimals.
fn scores(n: usize) -> Vec<f64> {
    let mut state = 2026;
    (0..n)
        .map(|_| {
            let u: f64 = (0..4)
                .map(|_| (splitmix(&mut state) >> 11) as f64 / (1u64 << 53) as f64)
                .sum();
            ((13.8 + (u - 2.0) * 0.9) * 10_000.0).round() / 10_000.0
        })
        .collect()
}

fn timings(s: &Snapshot) -> String {
    s.timings
        .iter()
        .map(|t| format!("{} {:.1} s", t.phase, t.seconds))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The full run: fill, determine a month, change 1 %, determine the next.
async fn full_run(n: u64) -> anyhow::Result<()> {
    println!("full determination over a master registry of {n} households");
    let stack = Stack::start_services(
        "nik,kk_number,full_name,birth_place,birth_date,sex,village_code,death_date\n",
        &["determination"],
        &[],
    )
    .await?;
    let mut conn = sqlx::PgConnection::connect(&stack.database_url).await?;
    let started = Instant::now();
    dtks_e2e::fill_registry(&mut conn, 0, n).await?;
    sqlx::query("SELECT setval('determination.registry_change_seq', $1)")
        .bind(n as i64 + 1)
        .execute(&mut conn)
        .await?;
    sqlx::raw_sql("ANALYZE determination.registry_households")
        .execute(&mut conn)
        .await?;
    println!(
        "  registry filled in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let token = stack.token(Role::PusdatinAdmin, "");
    let client = DeterminationServiceClient::new(stack.channel("determination").await?)
        .max_decoding_message_size(16 << 20);
    let determine = |month: i32| {
        let request = authed(
            DetermineRequest {
                period: Some(pb::Period { year: 2026, month }),
            },
            &token,
        );
        let mut client = client.clone();
        async move { anyhow::Ok(client.determine(request).await?.into_inner()) }
    };
    let started = Instant::now();
    let first = determine(1).await?;
    let first_seconds = started.elapsed().as_secs_f64();
    // 0.5 % leave, as many arrive.
    let churn = (n / 200).max(1);
    sqlx::query(
        "UPDATE determination.registry_households SET removed_at = now(), change_seq = nextval('determination.registry_change_seq')
         WHERE household_id IN (SELECT household_id FROM determination.registry_households ORDER BY household_id LIMIT $1)",
    )
    .bind(churn as i64)
    .execute(&mut conn)
    .await?;
    dtks_e2e::fill_registry(&mut conn, n, n + churn).await?;
    let started = Instant::now();
    let second = determine(2).await?;
    let second_seconds = started.elapsed().as_secs_f64();
    println!("| run | households | wall time | phases | diff |");
    println!("|---|---|---|---|---|");
    for (name, s, seconds) in [
        ("first month", &first, first_seconds),
        (
            "second month (0.5 % out, 0.5 % in)",
            &second,
            second_seconds,
        ),
    ] {
        let d = s.diff.unwrap_or_default();
        println!(
            "| {name} | {} | {seconds:.1} s | {} | +{} −{} ~{} moves {} |",
            s.households,
            timings(s),
            d.added,
            d.removed,
            d.changed,
            d.decile_moves
        );
    }
    use dtks_e2e::benchtable::{self, HOUSEHOLDS_PER_PERSON, Row};
    for (measured, s, seconds) in [
        (
            format!("full monthly run over {n} households"),
            &first,
            first_seconds,
        ),
        (
            "the next month, 0.5 % of households out and 0.5 % in".to_owned(),
            &second,
            second_seconds,
        ),
    ] {
        benchtable::record(&Row {
            stage: "determination".into(),
            measured,
            unit: "households".into(),
            rate: s.households as f64 / seconds,
            cores: benchtable::machine_cores(),
            units_per_person: HOUSEHOLDS_PER_PERSON,
            ..Default::default()
        })?;
    }
    Ok(())
}

fn checksum(deciles: &[u8]) -> u128 {
    deciles
        .iter()
        .enumerate()
        .map(|(i, d)| u128::from(*d) * (i as u128 % 1_000_003))
        .sum()
}

/// DuckDB's seconds, its checksum and its version.
fn duckdb(scores_path: &PathBuf, ids_path: &PathBuf) -> anyhow::Result<(f64, u128, String)> {
    let python = dtks_e2e::bench_python(&["duckdb", "pyarrow"])?;
    let output = Command::new(python)
        .arg("tests/bench/duckdb_ntile.py")
        .arg(scores_path)
        .arg(ids_path)
        .output()?;
    anyhow::ensure!(
        output.status.success(),
        "duckdb failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8(output.stdout)?;
    let v: serde_json::Value = serde_json::from_str(text.lines().last().unwrap_or("{}"))?;
    Ok((
        v["seconds"].as_f64().unwrap_or(f64::NAN),
        v["checksum"]
            .as_str()
            .and_then(|c| c.parse().ok())
            .unwrap_or(0),
        v["version"].as_str().unwrap_or_default().to_owned(),
    ))
}

fn main() -> anyhow::Result<()> {
    std::env::set_current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))?;
    let registry: u64 = env_or("DTKS_BENCH_REGISTRY", 10_000_000);
    if registry > 0 {
        tokio::runtime::Runtime::new()?.block_on(full_run(registry))?;
    }
    let millions: f64 = env_or("DTKS_BENCH_MILLIONS", 45.0);
    let n = (millions * 1_000_000.0) as usize;
    println!("determination benchmark: ranking {n} scores into national deciles");
    let started = Instant::now();
    let s = scores(n);
    let dir = PathBuf::from("target/bench-determination");
    std::fs::create_dir_all(&dir)?;
    let (scores_path, ids_path) = (dir.join("scores.f64"), dir.join("households.i64"));
    std::fs::write(
        &scores_path,
        s.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>(),
    )?;
    std::fs::write(
        &ids_path,
        (0..n as i64)
            .flat_map(|i| i.to_le_bytes())
            .collect::<Vec<u8>>(),
    )?;
    println!(
        "  scores drawn and written in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let started = Instant::now();
    let order = dtks_domain::ranking::rank(&s, THREADS);
    let ranked = started.elapsed().as_secs_f64();
    let deciles = dtks_domain::ranking::deciles(&order);
    let ours = started.elapsed().as_secs_f64();
    let our_checksum = checksum(&deciles);
    drop((order, deciles, s));
    println!("  DTKS: ranked in {ranked:.2} s, deciles in {ours:.2} s");

    let (theirs, their_checksum, version) = duckdb(&scores_path, &ids_path)?;
    println!("| ranking core | households | wall time | vs DuckDB |");
    println!("|---|---|---|---|");
    println!(
        "| DTKS (dtks_domain::ranking, {THREADS} threads) | {n} | {ours:.2} s | {:.2} of DuckDB's time |",
        ours / theirs
    );
    println!("| DuckDB {version} ntile(10), {THREADS} threads | {n} | {theirs:.2} s | 1.00 |");
    println!(
        "same deciles for every household: {} (checksums {our_checksum} / {their_checksum})",
        our_checksum == their_checksum
    );
    anyhow::ensure!(our_checksum == their_checksum, "DTKS and DuckDB disagree");
    dtks_e2e::benchtable::record(&dtks_e2e::benchtable::Row {
        stage: "determination".into(),
        measured: format!("ranking core: {n} welfare scores into national deciles"),
        unit: "households".into(),
        rate: n as f64 / ours,
        cores: THREADS as f64,
        baseline: Some((format!("DuckDB {version} ntile(10)"), n as f64 / theirs)),
        units_per_person: dtks_e2e::benchtable::HOUSEHOLDS_PER_PERSON,
        ..Default::default()
    })?;
    Ok(())
}
