//! The linkage engine alone (`dtks_domain::linkage::batch`, a library call on files) and
//! an exact-NIK check against Splink on the same records. The service as callers meet
//! it, through gRPC and the civil registry's DCI API, is `scripts/bench.sh matching`
//! (tests/bench/matching.rs).
//!
//! Run with `scripts/bench.sh linkage` (release build; no servers needed). It
//! generates, once, a civil registry of about 10 M persons (the province of Jawa Barat,
//! `dtksctl gen --regencies 32 --unproposed …`) of whom about 1 M are proposed with the
//! generator's corruptions, and writes the proposal persons with their true registry
//! NIK to `persons.csv`. Then, in the same run:
//!
//! - **DTKS linkage**: every proposal person is linked to the registry by name, birth
//!   date, sex and village alone (the NIK is not compared), weights learned by EM with no
//!   labels — and again with m learned from the NIK-labelled matches, as the service
//!   does when a batch carries NIKs. Timed from reading the two CSV files to the
//!   decisions, on two threads.
//! - **Splink** (PyPI `splink`, DuckDB) in a throw-away virtual environment, on the
//!   same files, with the same blocking rules and comparable comparisons and training
//!   (tests/bench/splink_link.py), timed from reading the files, training included.
//! - **Exact NIK check**: each proposal person's NIK looked up in an index of the
//!   registry and compared field by field (matched / corrections / not found /
//!   deceased), persons per second.
//!
//! A person counts as correctly linked when the best candidate at match probability
//! ≥ 0.95 is the registry person the generator made them from. Scale with
//! `DTKS_BENCH_SCALE` (1.0 = 10 M registry persons).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context as _;
use chrono::NaiveDate;
use dtks_domain::linkage::batch::{self, Candidates, Linker};
use dtks_domain::linkage::{Decision, NameKey, Record, Thresholds};
use dtks_e2e::bin_dir;

const THREADS: usize = 2;

fn scale() -> f64 {
    std::env::var("DTKS_BENCH_SCALE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1.0)
}

/// Generates the data once per scale; answers its directory.
fn generate(scale: f64) -> anyhow::Result<PathBuf> {
    // v2: names by regional tradition, every corruption, some in pairs.
    let dir = PathBuf::from(format!("target/bench-matching-v2-{scale}"));
    if dir.join("persons.csv").exists() {
        return Ok(dir);
    }
    let proposed = (290_000.0 * scale) as usize;
    let unproposed = (2_580_000.0 * scale) as usize;
    let status = Command::new(bin_dir().join("../release/dtksctl"))
        .args([
            "gen",
            // Provinces of six naming traditions: Sundanese and Javanese, Batak, Minang,
            // Balinese, Minahasa (Arabic-derived and Chinese names among them all).
            "--regencies",
            "32,33,12,13,51,71",
            "--seed",
            "2026",
            "--corruption",
            "0.3",
            // Every kind, and a quarter of the corrupted persons departing twice.
            "--corruptions",
            "all",
            "--combined",
            "0.25",
        ])
        .args(["--households", &proposed.to_string()])
        .args(["--unproposed", &unproposed.to_string()])
        .arg("--out")
        .arg(&dir)
        .status()
        .context("running target/release/dtksctl (scripts/bench.sh builds it)")?;
    anyhow::ensure!(status.success(), "dtksctl gen failed");
    write_persons(&dir)?;
    Ok(dir)
}

/// persons.csv: one row per proposed person with the NIK the registry holds for them.
fn write_persons(dir: &Path) -> anyhow::Result<()> {
    // The NIK each corrupted person truly has, and what was typed where the typing left
    // no NIK at all (`…;typed=…`).
    let mut true_nik: HashMap<(String, usize), String> = HashMap::new();
    let mut typed: HashMap<(String, usize), String> = HashMap::new();
    let mut truth = csv::Reader::from_path(dir.join("truth.csv"))?;
    for rec in truth.records() {
        let rec = rec?;
        if matches!(
            &rec[3],
            "missing_nik" | "unknown_nik" | "kk_as_nik" | "family_nik" | "nik_typo"
        ) {
            let key = (rec[0].to_owned(), rec[2].parse()?);
            let (nik, rest) = rec[4].split_once(";typed=").unwrap_or((&rec[4], ""));
            if !rest.is_empty() {
                typed.insert(key.clone(), rest.to_owned());
            }
            true_nik.insert(key, nik.to_owned());
        }
    }
    let mut out = csv::Writer::from_path(dir.join("persons.csv"))?;
    out.write_record(dtks_e2e::SPLINK_PERSONS_HEADER)?;
    let text = std::fs::read_to_string(dir.join("proposals.jsonl"))?;
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line)?;
        let reference = v["external_reference"].as_str().unwrap_or_default();
        let village = v["household"]["address"]["village"]
            .as_str()
            .unwrap_or_default();
        let members = v["household"]["families"][0]["members"]
            .as_array()
            .context("members")?;
        for (m, p) in members.iter().enumerate() {
            let key = (reference.to_owned(), m);
            let nik = p["nik"]
                .as_str()
                .or(typed.get(&key).map(String::as_str))
                .unwrap_or_default();
            let truth = true_nik
                .get(&(reference.to_owned(), m))
                .map(String::as_str)
                .unwrap_or(nik);
            let sex = match p["sex"].as_str() {
                Some("Female") => "2",
                _ => "1",
            };
            out.write_record([
                format!("{reference}/{m}").as_str(),
                p["full_name"].as_str().unwrap_or_default(),
                p["birth_date"].as_str().unwrap_or_default(),
                sex,
                village,
                nik,
                truth,
            ])?;
        }
    }
    out.flush()?;
    Ok(())
}

/// The proposal persons as records, the NIK each truly has, and their reduced names
/// (shared with the registry side, so one spelling is one key on both sides).
struct Persons {
    records: Vec<Record>,
    true_nik: Vec<u64>,
    names: HashMap<String, Arc<NameKey>>,
}

fn nik_number(text: &str) -> u64 {
    text.parse().unwrap_or(0)
}

fn read_persons(dir: &Path, labelled: bool) -> anyhow::Result<Persons> {
    let mut persons = Persons {
        records: Vec::new(),
        true_nik: Vec::new(),
        names: HashMap::new(),
    };
    for row in csv::Reader::from_path(dir.join("persons.csv"))?.records() {
        let f = row?;
        let name = match persons.names.get(&f[1]) {
            Some(name) => name.clone(),
            None => {
                let name = Arc::new(NameKey::new(&f[1]));
                persons.names.insert(f[1].to_owned(), name.clone());
                name
            }
        };
        let record = Record::with_name(name, date(&f[2]), f[3].parse().ok(), Some(&f[4]))
            .labelled(labelled.then_some(&f[5]));
        persons.records.push(record);
        persons.true_nik.push(nik_number(&f[6]));
    }
    Ok(persons)
}

/// The registry file cut into `THREADS` byte ranges at line ends, the header skipped;
/// each thread reads its own range.
fn ranges(file: &std::fs::File) -> std::io::Result<Vec<(u64, u64)>> {
    use std::os::unix::fs::FileExt;
    let len = file.metadata()?.len();
    // The position just past the first line end at or after `at`.
    let past_line_end = |at: u64| -> std::io::Result<u64> {
        let mut buf = vec![0u8; 64 * 1024];
        let mut pos = at;
        loop {
            let n = file.read_at(&mut buf, pos)?;
            if n == 0 {
                return Ok(len);
            }
            if let Some(i) = buf[..n].iter().position(|b| *b == b'\n') {
                return Ok(pos + i as u64 + 1);
            }
            pos += n as u64;
        }
    };
    let mut cuts = vec![past_line_end(0)?];
    for t in 1..THREADS {
        let at = (len * t as u64 / THREADS as u64).max(cuts[t - 1]);
        cuts.push(past_line_end(at)?.max(cuts[t - 1]));
    }
    cuts.push(len);
    Ok(cuts.windows(2).map(|w| (w[0], w[1])).collect())
}

/// FNV-1a for the per-thread map of name spellings (SipHash costs more than the rest of
/// a line).
#[derive(Default)]
struct Fnv(u64);

impl std::hash::Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        let mut h = if self.0 == 0 {
            0xcbf2_9ce4_8422_2325
        } else {
            self.0
        };
        for b in bytes {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        self.0 = h;
    }
}

/// One thread's reduced names: each distinct spelling once, by number. Rows carry the
/// number, not a counted reference — cloning an `Arc` per row costs an atomic write to
/// memory both threads share (the proposal side's names).
#[derive(Default)]
struct Names {
    index: HashMap<Box<[u8]>, u32, std::hash::BuildHasherDefault<Fnv>>,
    keys: Vec<Arc<NameKey>>,
}

/// Digits of a field as a number (0 for none).
fn number(field: &[u8]) -> u64 {
    field
        .iter()
        .filter(|b| b.is_ascii_digit())
        .fold(0u64, |n, b| {
            n.wrapping_mul(10).wrapping_add(u64::from(b - b'0'))
        })
}

/// `YYYY-MM-DD` from bytes.
fn date_bytes(text: &[u8]) -> Option<NaiveDate> {
    if text.len() != 10 || text[4] != b'-' || text[7] != b'-' {
        return None;
    }
    NaiveDate::from_ymd_opt(
        number(&text[..4]) as i32,
        number(&text[5..7]) as u32,
        number(&text[8..10]) as u32,
    )
}

/// `YYYY-MM-DD` without chrono's format parser.
fn date(text: &str) -> Option<NaiveDate> {
    let n = |r: std::ops::Range<usize>| text.get(r).and_then(|t| t.parse::<u32>().ok());
    NaiveDate::from_ymd_opt(n(0..4)? as i32, n(5..7)?, n(8..10)?)
}

/// One registry line (nik,kk,full_name,birth_place,birth_date,sex,village_code,
/// death_date), read from its bytes.
struct Row<'l> {
    nik: u64,
    nik_text: &'l str,
    /// Its number in the thread's [`Names`].
    name: u32,
    born: Option<NaiveDate>,
    sex: Option<u8>,
    village: Option<&'l str>,
    keys: dtks_domain::linkage::Keys,
}

fn registry_row<'l>(
    line: &'l [u8],
    names: &mut Names,
    shared: &HashMap<String, Arc<NameKey>>,
) -> Row<'l> {
    let mut f: [&[u8]; 7] = [&[]; 7];
    for (slot, field) in f.iter_mut().zip(line.split(|b| *b == b',')) {
        *slot = field;
    }
    let born = date_bytes(f[4]);
    let sex = match f[5] {
        b"1" => Some(1),
        b"2" => Some(2),
        _ => None,
    };
    // Names repeat: each distinct spelling is reduced once per thread, or taken from
    // the proposal side where it already is.
    let next = names.keys.len() as u32;
    let name = match names.index.get(f[2]) {
        Some(name) => *name,
        None => {
            names.index.insert(f[2].into(), next);
            next
        }
    };
    if name == next {
        let text = std::str::from_utf8(f[2]).unwrap_or_default();
        names.keys.push(
            shared
                .get(text)
                .cloned()
                .unwrap_or_else(|| Arc::new(NameKey::new(text))),
        );
    }
    let village = std::str::from_utf8(f[6]).ok();
    let keys = dtks_domain::linkage::keys_of(&names.keys[name as usize], born, sex, village);
    Row {
        nik: number(f[0]),
        nik_text: std::str::from_utf8(f[0]).unwrap_or_default(),
        name,
        born,
        sex,
        village,
        keys,
    }
}

/// One thread's scan: its candidates, every line's NIK, and one line in 50 for the u
/// sample.
#[derive(Default)]
struct Scan {
    candidates: Candidates,
    niks: Vec<u64>,
    sample: Vec<Record>,
    keys: Vec<dtks_domain::linkage::Keys>,
    heads: Vec<batch::Heads>,
}

impl Scan {
    /// Probes a batch of rows, the first numbered `first` within the part: their
    /// blocks are looked up together, then each row that meets a proposal person is
    /// compared with them.
    fn rows(
        &mut self,
        linker: &Linker,
        rows: &[Row<'_>],
        names: &Names,
        first: usize,
        labelled: bool,
    ) {
        self.keys.clear();
        self.keys.extend(rows.iter().map(|r| r.keys));
        linker.heads_of_many(&self.keys, &mut self.heads);
        for (k, (row, heads)) in rows.iter().zip(&self.heads).enumerate() {
            let i = first + k;
            self.niks.push(row.nik);
            let record = || {
                let name = names.keys[row.name as usize].clone();
                Record::with_name(name, row.born, row.sex, row.village)
            };
            let probed = batch::meets(heads).then(|| {
                let record = record().labelled(labelled.then_some(row.nik_text));
                linker.probe_heads(i as u32, &record, &row.keys, heads, &mut self.candidates);
                record
            });
            if i.is_multiple_of(50) {
                self.sample.push(probed.unwrap_or_else(record));
            }
        }
    }
}

struct Score {
    seconds: f64,
    links: usize,
    correct: usize,
    persons: usize,
    reviews: usize,
}

impl Score {
    fn quality(&self) -> (f64, f64, f64) {
        dtks_e2e::benchtable::quality(self.correct, self.links, self.persons)
    }
    fn precision(&self) -> f64 {
        self.quality().0
    }
    fn recall(&self) -> f64 {
        self.quality().1
    }
    fn f1(&self) -> f64 {
        self.quality().2
    }
}

fn dtks_linkage(dir: &Path, labelled: bool) -> anyhow::Result<Score> {
    let started = Instant::now();
    let persons = read_persons(dir, labelled)?;
    let left = &persons.records;
    let read = started.elapsed().as_secs_f64();
    let linker = Linker::new(left);
    let indexed = started.elapsed().as_secs_f64();
    // Each thread reads and scans its own part of the file.
    let file = std::fs::File::open(dir.join("registry.csv"))?;
    let parts: Vec<(Candidates, Vec<u64>, Vec<Record>)> = std::thread::scope(|s| {
        let handles: Vec<_> = ranges(&file)?
            .into_iter()
            .map(|(start, end)| {
                let (linker, shared, file) = (&linker, &persons.names, &file);
                s.spawn(move || -> std::io::Result<_> {
                    use std::os::unix::fs::FileExt;
                    // The part is read a few MiB at a time into one buffer, which stays
                    // in cache while its lines are parsed.
                    let mut buf = vec![0u8; 4 << 20];
                    let (mut filled, mut at) = (0usize, start);
                    let mut scan = Scan::default();
                    let mut names = Names::default();
                    loop {
                        let want = ((end - at) as usize).min(buf.len() - filled);
                        file.read_exact_at(&mut buf[filled..filled + want], at)?;
                        (filled, at) = (filled + want, at + want as u64);
                        let cut = if at == end {
                            filled
                        } else {
                            buf[..filled]
                                .iter()
                                .rposition(|b| *b == b'\n')
                                .map(|p| p + 1)
                                .ok_or_else(|| {
                                    std::io::Error::other("a registry line over 4 MiB")
                                })?
                        };
                        let mut rows = Vec::with_capacity(256);
                        for line in buf[..cut].split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
                            rows.push(registry_row(line, &mut names, shared));
                            if rows.len() == 256 {
                                // Numbered within the part; offset after the join.
                                scan.rows(linker, &rows, &names, scan.niks.len(), labelled);
                                rows.clear();
                            }
                        }
                        scan.rows(linker, &rows, &names, scan.niks.len(), labelled);
                        drop(rows);
                        buf.copy_within(cut..filled, 0);
                        filled -= cut;
                        if at == end {
                            break;
                        }
                    }
                    Ok((scan.candidates, scan.niks, scan.sample))
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("linking thread"))
            .collect::<std::io::Result<Vec<_>>>()
    })?;
    let mut candidates = Candidates::default();
    let mut niks = Vec::new();
    let mut sample = Vec::new();
    for (mut c, n, s) in parts {
        let offset = niks.len() as u32;
        for pair in &mut c.pairs {
            pair.1 += offset;
        }
        candidates.merge(c);
        niks.extend(n);
        sample.extend(s);
    }
    let probed = started.elapsed().as_secs_f64();
    let random = batch::random_patterns(&sample, 1_000_000, 2026, THREADS);
    let sampled = started.elapsed().as_secs_f64();
    let model = candidates.train(&random, 100);
    if !labelled {
        // The EM-learned model, for the matching service's on-demand linkage
        // (services/matching/linkage-model.json is one of these).
        std::fs::write(
            dir.join("model.json"),
            serde_json::to_string_pretty(&model)?,
        )?;
    }
    let linked = batch::decide(left.len(), &candidates, &model, Thresholds::default());
    let seconds = started.elapsed().as_secs_f64();
    let mut score = Score {
        seconds,
        links: 0,
        correct: 0,
        persons: left.len(),
        reviews: 0,
    };
    for (true_nik, l) in persons.true_nik.iter().zip(&linked) {
        match l.decision {
            Decision::Link => {
                score.links += 1;
                let nik = l.candidate.map(|c| niks[c as usize]);
                score.correct += usize::from(nik == Some(*true_nik));
            }
            Decision::Review => score.reviews += 1,
            Decision::NoLink => {}
        }
    }
    eprintln!(
        "  candidate pairs {}, model prior {:.4}; read {read:.1} s, indexed {indexed:.1} s, probed {probed:.1} s, u sampled {sampled:.1} s, done {seconds:.1} s",
        candidates.pairs.len(),
        model.lambda
    );
    Ok(score)
}

/// Exact NIK check over an index of the registry by NIK: (registry persons, persons
/// checked, persons per second, outcomes).
fn exact_nik(dir: &Path) -> anyhow::Result<(usize, usize, f64, [usize; 4])> {
    let registry = std::fs::read_to_string(dir.join("registry.csv"))?;
    let mut index: HashMap<u64, (&str, &str, &str, bool)> = HashMap::new();
    for line in registry.lines().skip(1) {
        let f: Vec<&str> = line.splitn(8, ',').collect();
        index.insert(
            nik_number(f[0]),
            (f[2], f[4], f[5], !f.get(7).is_none_or(|d| d.is_empty())),
        );
    }
    let rows: Vec<csv::StringRecord> = csv::Reader::from_path(dir.join("persons.csv"))?
        .records()
        .collect::<Result<_, _>>()?;
    let started = Instant::now();
    // matched, corrections, not found, deceased
    let mut outcomes = [0usize; 4];
    for f in &rows {
        let outcome = match index.get(&nik_number(&f[5])) {
            None => 2,
            Some((_, _, _, true)) => 3,
            Some((name, born, sex, false)) => {
                usize::from(!name.eq_ignore_ascii_case(&f[1]) || *born != &f[2] || *sex != &f[3])
            }
        };
        outcomes[outcome] += 1;
    }
    let seconds = started.elapsed().as_secs_f64();
    Ok((
        index.len(),
        rows.len(),
        rows.len() as f64 / seconds,
        outcomes,
    ))
}

fn splink(dir: &Path) -> anyhow::Result<Score> {
    let v = dtks_e2e::splink_baseline(&dir.join("registry.csv"), &dir.join("persons.csv"))?;
    let n = |k: &str| v[k].as_u64().unwrap_or(0) as usize;
    Ok(Score {
        seconds: v["seconds"].as_f64().unwrap_or(f64::NAN),
        links: n("links"),
        correct: n("correct"),
        persons: n("persons"),
        reviews: 0,
    })
}

fn main() -> anyhow::Result<()> {
    // `cargo bench` runs from the package directory; the data lives at the workspace top.
    std::env::set_current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))?;
    let scale = scale();
    let started = Instant::now();
    let dir = generate(scale)?;
    let ready = started.elapsed().as_secs_f64();
    let (registry_persons, checked, rate, outcomes) = exact_nik(&dir)?;
    println!(
        "matching benchmark: {registry_persons} registry persons, data ready in {ready:.1} s ({})",
        dir.display()
    );
    println!(
        "exact NIK check: {checked} persons, {rate:.0} persons/s (matched {}, with corrections {}, not found {}, deceased {})",
        outcomes[0], outcomes[1], outcomes[2], outcomes[3]
    );
    let em = dtks_linkage(&dir, false)?;
    let labels = dtks_linkage(&dir, true)?;
    let splink = splink(&dir)?;
    println!(
        "| linker | persons | links | reviews | precision | recall | F1 | wall time | speed vs Splink |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for (name, s) in [
        ("DTKS, EM (no labels)", &em),
        ("DTKS, m from NIK labels", &labels),
        ("Splink 5.0.0 (DuckDB)", &splink),
    ] {
        println!(
            "| {name} | {} | {} | {} | {:.4} | {:.4} | {:.4} | {:.1} s | {:.1}x |",
            s.persons,
            s.links,
            s.reviews,
            s.precision(),
            s.recall(),
            s.f1(),
            s.seconds,
            splink.seconds / s.seconds
        );
    }
    use dtks_e2e::benchtable::{self, Row};
    benchtable::record(&Row {
        stage: "matching".into(),
        measured: format!(
            "linkage engine alone, on files (EM), {} persons against {registry_persons}; F1 {:.4} (Splink {:.4})",
            em.persons,
            em.f1(),
            splink.f1()
        ),
        unit: "persons".into(),
        rate: em.persons as f64 / em.seconds,
        cores: benchtable::machine_cores(),
        baseline: Some((
            "Splink 5.0.0".into(),
            splink.persons as f64 / splink.seconds,
        )),
        units_per_person: 1.0,
        ..Default::default()
    })?;
    benchtable::record(&Row {
        stage: "matching".into(),
        measured: format!("exact NIK check against {registry_persons}"),
        unit: "persons".into(),
        rate,
        cores: 1.0,
        units_per_person: 1.0,
        ..Default::default()
    })?;
    Ok(())
}
