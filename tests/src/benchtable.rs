//! The benchmark table: every stage's benchmark records its figures as one row here
//! (a JSON line appended to `$DTKS_BENCH_RESULTS`, when set), and `scripts/bench.sh all`
//! prints them as one table and writes it to `docs/benchmarks.md` with the machine it
//! ran on (the `summary` bench).

use std::io::Write as _;

use anyhow::Context as _;

/// People in a national monthly cycle: DTKS held 140,483,575 records in May 2021.
pub const NATIONAL_PEOPLE: f64 = 140_000_000.0;
/// The hour the whole cycle should take.
pub const CYCLE_SECONDS: f64 = 3600.0;
/// Persons per household in the synthetic population the benchmarks run on (`dtksctl
/// gen`: 70,056 persons in 20,000 households), for stages that count households.
pub const PERSONS_PER_HOUSEHOLD: f64 = 3.5;
/// Units per person of a stage that counts households.
pub const HOUSEHOLDS_PER_PERSON: f64 = 1.0 / PERSONS_PER_HOUSEHOLD;

/// One row: what a stage did, how fast, and beside what.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct Row {
    /// The stage (`intake`, `matching`, …, `pipeline`).
    pub stage: String,
    /// What was measured, in a few words.
    pub measured: String,
    /// The unit the rate counts (`households`, `persons`, `scores`, …).
    pub unit: String,
    /// Units per second.
    pub rate: f64,
    /// Cores the measured path had: the machine's, which the stage shared with
    /// PostgreSQL, RabbitMQ and the benchmark's own client.
    pub cores: f64,
    /// Latency percentiles in milliseconds, where the path has requests to time, with
    /// what one request is.
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub latency_of: String,
    /// The side-by-side baseline, measured in the same run: its name and rate (in the
    /// same unit). The ratio is `rate / baseline_rate` (above 1: faster than it).
    pub baseline: Option<(String, f64)>,
    /// Units per person in a national cycle (1 for persons, about ¼ for households),
    /// for the projection of the cores a 140 M-people hour needs.
    pub units_per_person: f64,
}

impl Row {
    pub fn per_core(&self) -> f64 {
        self.rate / self.cores.max(1.0)
    }

    /// Cores the stage needs to do a national cycle's share of its units in an hour.
    pub fn cores_for_national_hour(&self) -> f64 {
        let needed = NATIONAL_PEOPLE * self.units_per_person / CYCLE_SECONDS;
        needed / self.per_core()
    }
}

/// The machine's cores (what every benchmark here had).
pub fn machine_cores() -> f64 {
    std::thread::available_parallelism().map_or(1.0, |n| n.get() as f64)
}

/// The `p`-th percentile (0–100) of `samples` (sorted in place), by nearest rank.
pub fn percentile(samples: &mut [f64], p: f64) -> Option<f64> {
    if samples.is_empty() {
        return None;
    }
    samples.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * samples.len() as f64).ceil() as usize;
    Some(samples[rank.clamp(1, samples.len()) - 1])
}

/// Appends `row` to `$DTKS_BENCH_RESULTS` when set (a single benchmark run alone
/// records nothing).
pub fn record(row: &Row) -> anyhow::Result<()> {
    let Ok(path) = std::env::var("DTKS_BENCH_RESULTS") else {
        return Ok(());
    };
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    writeln!(file, "{}", serde_json::to_string(row)?)?;
    Ok(())
}

/// The rows recorded in `path`, in the order they were recorded.
pub fn read(path: &std::path::Path) -> anyhow::Result<Vec<Row>> {
    std::fs::read_to_string(path)?
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).with_context(|| format!("a malformed row: {l}")))
        .collect()
}

fn rate(x: f64) -> String {
    let digits = format!("{:.0}", x.round());
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn ms(x: Option<f64>) -> String {
    match x {
        Some(v) if v >= 100.0 => format!("{v:.0}"),
        Some(v) => format!("{v:.1}"),
        None => "—".into(),
    }
}

/// The table as Markdown.
pub fn markdown(rows: &[Row]) -> String {
    let mut out = String::from(
        "| stage | measured | rate (/s) | per core (/s) | p50 (ms) | p99 (ms) | latency of | baseline, same run (/s) | ratio | cores for 140 M people in 1 h |\n\
         |---|---|---:|---:|---:|---:|---|---|---:|---:|\n",
    );
    for r in rows {
        let (baseline, ratio) = match &r.baseline {
            Some((name, b)) => (
                format!("{name}: {}", rate(*b)),
                format!("{:.2}×", r.rate / b),
            ),
            None => ("—".into(), "—".into()),
        };
        out.push_str(&format!(
            "| {} | {} | {} {} | {} | {} | {} | {} | {} | {} | {:.1} |\n",
            r.stage,
            r.measured,
            rate(r.rate),
            r.unit,
            rate(r.per_core()),
            ms(r.p50_ms),
            ms(r.p99_ms),
            if r.latency_of.is_empty() {
                "—"
            } else {
                &r.latency_of
            },
            baseline,
            ratio,
            r.cores_for_national_hour(),
        ));
    }
    out
}

/// Linkage quality: `correct` of `linked` links right, out of `persons` who could be
/// linked. Answers precision, recall and F1 (0 where nothing was linked).
pub fn quality(correct: usize, linked: usize, persons: usize) -> (f64, f64, f64) {
    let precision = correct as f64 / linked.max(1) as f64;
    let recall = correct as f64 / persons.max(1) as f64;
    let f1 = if precision + recall == 0.0 {
        0.0
    } else {
        2.0 * precision * recall / (precision + recall)
    };
    (precision, recall, f1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_by_nearest_rank() {
        let mut v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&mut v, 50.0), Some(50.0));
        assert_eq!(percentile(&mut v, 99.0), Some(99.0));
        assert_eq!(percentile(&mut [], 50.0), None);
        assert_eq!(percentile(&mut [7.0], 99.0), Some(7.0));
    }

    #[test]
    fn the_projection_and_a_round_trip() {
        let row = Row {
            stage: "matching".into(),
            measured: "linkage".into(),
            unit: "persons".into(),
            rate: 100_000.0,
            cores: 2.0,
            baseline: Some(("Splink".into(), 10_000.0)),
            units_per_person: 1.0,
            ..Default::default()
        };
        // 140 M / 3600 s = 38,889 persons/s; 50,000 per core → 0.78 cores.
        assert!((row.cores_for_national_hour() - 0.7778).abs() < 1e-3);
        let back: Row =
            serde_json::from_str(&serde_json::to_string(&row).expect("written")).expect("read");
        assert_eq!(back.baseline, row.baseline);
        let table = markdown(&[back]);
        assert!(table.contains("| 100,000 persons | 50,000 |"), "{table}");
        assert!(table.contains("| 10.00× | 0.8 |"), "{table}");
    }
}
