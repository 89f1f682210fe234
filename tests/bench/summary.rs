//! The benchmark table: the rows every stage's benchmark recorded in
//! `$DTKS_BENCH_RESULTS` during `scripts/bench.sh all`, printed as one table and written
//! to `docs/benchmarks.md` with the machine they ran on and each benchmark's own tables
//! (from the logs in `$DTKS_BENCH_LOGS`).

use std::path::{Path, PathBuf};
use std::process::Command;

use dtks_e2e::benchtable::{self, CYCLE_SECONDS, NATIONAL_PEOPLE, PERSONS_PER_HOUSEHOLD};

fn first_line(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.lines().next().map(str::to_owned))
        .unwrap_or_else(|| "unknown".into())
}

fn field(path: &str, key: &str) -> String {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_once([':', '=']))
                .map(|(_, v)| v.trim().trim_matches('"').to_owned())
        })
        .unwrap_or_else(|| "unknown".into())
}

fn machine() -> Vec<(&'static str, String)> {
    let memory = field("/proc/meminfo", "MemTotal")
        .trim_end_matches(" kB")
        .parse::<f64>()
        .map_or("unknown".into(), |kb| {
            format!("{:.1} GiB", kb / 1024.0 / 1024.0)
        });
    let package = |name: &str| first_line("dpkg-query", &["-W", "-f=${Version}", name]);
    vec![
        ("CPU", field("/proc/cpuinfo", "model name")),
        ("cores", format!("{}", benchtable::machine_cores())),
        ("memory", memory),
        ("system", field("/etc/os-release", "PRETTY_NAME")),
        ("Rust", first_line("rustc", &["--version"])),
        (
            "PostgreSQL",
            first_line(
                "sh",
                &["-c", "ls /usr/lib/postgresql | sort -V | tail -n 1"],
            ),
        ),
        ("RabbitMQ", package("rabbitmq-server")),
        ("Redis", package("redis-server")),
    ]
}

/// The tables a benchmark printed (its lines that start with `|`), under its name.
fn details(logs: &Path) -> String {
    let mut out = String::new();
    for stage in [
        "intake",
        "matching",
        "linkage",
        "verivali",
        "determination",
        "distribution",
        "pipeline",
    ] {
        let Ok(text) = std::fs::read_to_string(logs.join(format!("{stage}.log"))) else {
            continue;
        };
        out.push_str(&format!("\n### {stage}\n"));
        // Tables as they are; the lines between them as preformatted text.
        let mut in_text = false;
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let table = line.starts_with('|');
            if table == in_text {
                out.push_str(if in_text { "```\n\n" } else { "\n```\n" });
                in_text = !table;
            }
            out.push_str(line);
            out.push('\n');
        }
        if in_text {
            out.push_str("```\n");
        }
    }
    out
}

fn main() -> anyhow::Result<()> {
    std::env::set_current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))?;
    let results = PathBuf::from(
        std::env::var("DTKS_BENCH_RESULTS").unwrap_or_else(|_| "target/bench-results.jsonl".into()),
    );
    let logs = PathBuf::from(
        std::env::var("DTKS_BENCH_LOGS").unwrap_or_else(|_| "target/bench-logs".into()),
    );
    let rows = benchtable::read(&results)?;
    anyhow::ensure!(
        !rows.is_empty(),
        "no benchmark recorded a row in {}",
        results.display()
    );
    let table = benchtable::markdown(&rows);
    println!("{table}");

    let mut doc = String::from("# Benchmarks\n\n");
    doc.push_str(
        "Every stage's benchmark and the whole pipeline under sustained load, from one \
         command on the real stack with release binaries:\n\n```\nscripts/bench.sh all\n```\n\n\
         It rewrites this page. Each stage can also be run alone (`scripts/bench.sh \
         intake|matching|linkage|verivali|determination|distribution|pipeline`, see the script).\n\n",
    );
    doc.push_str(&format!(
        "Measured on {} UTC.\n\n| machine | |\n|---|---|\n",
        chrono::Utc::now().format("%Y-%m-%d %H:%M")
    ));
    for (k, v) in machine() {
        doc.push_str(&format!("| {k} | {v} |\n"));
    }
    doc.push_str("\n## The table\n\n");
    doc.push_str(&table);
    doc.push_str(&format!(
        "\n- **rate**: units per second over the measured path's wall time. **per core**: \
         the rate divided by the cores the path had — every benchmark shares this \
         machine's cores with PostgreSQL, RabbitMQ and its own client, so this is a \
         floor, not a measure of one isolated core.\n\
         - **p50/p99**: where the path has requests to time; *latency of* says what one is. \
         Batch paths (linkage, a full determination) have none.\n\
         - **baseline**: measured in the same run on the same data: raw PostgreSQL COPY of \
         the rows intake stored, Splink on the same persons and registry, DuckDB's \
         `ntile(10)` over the same scores. **ratio**: rate ÷ baseline rate (above 1: \
         faster than the baseline).\n\
         - **cores for 140 M people in 1 h**: a national monthly cycle of {:.0} M people \
         in {:.0} s, each stage doing its units for all of them (households at the \
         synthetic population's {PERSONS_PER_HOUSEHOLD} persons each; a list per \
         programme), divided by the per-core rate: a linear projection, which holds \
         while PostgreSQL scales with the stage (partitioned by region, as the stages' \
         tables are). It does not hold where a stage waits on a lock rather than on \
         cores: see *Known limits* in `docs/architecture.md` (verivali's audit chain).\n",
        NATIONAL_PEOPLE / 1e6,
        CYCLE_SECONDS
    ));
    doc.push_str("\n## Each benchmark's own figures\n");
    doc.push_str(&details(&logs));
    std::fs::write("docs/benchmarks.md", doc)?;
    println!("written to docs/benchmarks.md");
    Ok(())
}
