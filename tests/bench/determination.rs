//! Determination's ranking core against DuckDB.
//!
//! Run with `scripts/bench.sh determination [MILLIONS]` (release build; no servers). It
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
//!
//! The full 10 M determination (read, score, rank, write, diff) joins this benchmark
//! with the rest of the determination issue.

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use dtks_e2e::env_or;

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

fn checksum(deciles: &[u8]) -> u128 {
    deciles
        .iter()
        .enumerate()
        .map(|(i, d)| u128::from(*d) * (i as u128 % 1_000_003))
        .sum()
}

/// DuckDB's seconds, its checksum and its version.
fn duckdb(scores_path: &PathBuf, ids_path: &PathBuf) -> anyhow::Result<(f64, u128, String)> {
    let venv = PathBuf::from("target/bench-venv");
    if !venv.join("bin/python").exists() {
        let ok = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status()?;
        anyhow::ensure!(
            ok.success(),
            "python3 -m venv failed (apt-get install python3-venv)"
        );
    }
    let ok = Command::new(venv.join("bin/pip"))
        .args(["install", "-q", "duckdb", "pyarrow"])
        .status()?;
    anyhow::ensure!(ok.success(), "pip install duckdb pyarrow failed");
    let output = Command::new(venv.join("bin/python"))
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
    Ok(())
}
