//! Matching as a caller meets it, through the service's gRPC API (release build, the
//! reference civil registry over DCI, signed): every person of generated proposals is
//! matched as one wave (`MatchWave`), once with the NIK as it was written and once with
//! it withheld, and the person the service identifies is held against the truth the
//! generator wrote beside its corruptions. A sample goes through `MatchPerson` too, one
//! call a person at concurrency 8, for its latency and to show both paths agree.
//!
//! The population (`dtksctl gen --corruptions all --combined 0.25`) spans six provinces
//! and their naming traditions; a third of the proposals carry a departure, a quarter of
//! those two. Run with `scripts/bench.sh matching [HOUSEHOLDS] [UNPROPOSED]`. It prints
//! precision, recall (over the persons the registry holds; some proposed are not in it,
//! and any link for them is a wrong one) and F1 of "the right registry person", with the
//! NIK used and withheld; on the rows without a valid NIK (empty, not a NIK, or no
//! one's), the same beside Splink fitted on those rows in the same run; the wave's
//! speed beside Splink linking every row (registry queries included on DTKS's side,
//! Splink reading files); retrieval recall and the searches a person; a confusion table
//! of outcomes by what the generator did to the person; and MatchPerson's latency.
//! `DTKS_BENCH_SHOW_MISSED=n` prints the first n persons the wave without NIKs did not
//! find, with the service's reason. `DTKS_BENCH_MODEL=shipped` runs the service on the
//! model it ships, as a deployment that never trained one: it learns the registry's name
//! frequencies from the persons it meets.

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use dtks_e2e::{Stack, authed, env_or};
use dtks_platform::auth::Role;
use dtks_proto::common::v1 as pb;
use dtks_proto::events::v1::PersonOutcome;
use dtks_proto::matching::v1::{
    MatchPersonRequest, MatchPersonResponse, MatchWaveRequest,
    matching_service_client::MatchingServiceClient,
};

const REGENCIES: &str = "32.04,33.74,12.71,13.71,51.71,71.71";
const CONCURRENCY: usize = 8;

/// One proposal person and what is true of them.
struct Case {
    person: pb::Person,
    village: String,
    /// The NIK the registry holds for them.
    true_nik: String,
    /// What the generator did to them (`clean` when nothing).
    kinds: String,
}

fn main() -> anyhow::Result<()> {
    std::env::set_current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))?;
    tokio::runtime::Runtime::new()?.block_on(run(
        env_or("DTKS_BENCH_HOUSEHOLDS", 2_000usize),
        env_or("DTKS_BENCH_UNPROPOSED", 20_000usize),
    ))
}

fn cases(dir: &std::path::Path) -> anyhow::Result<Vec<Case>> {
    let mut kinds: HashMap<(String, usize), Vec<String>> = HashMap::new();
    let mut true_nik: HashMap<(String, usize), String> = HashMap::new();
    let mut typed: HashMap<(String, usize), String> = HashMap::new();
    let mut truth = csv::Reader::from_path(dir.join("truth.csv"))?;
    for rec in truth.records() {
        let rec = rec?;
        let key = (rec[0].to_owned(), rec[2].parse::<usize>()?);
        kinds
            .entry(key.clone())
            .or_default()
            .push(rec[3].to_owned());
        if matches!(
            &rec[3],
            "missing_nik" | "unknown_nik" | "kk_as_nik" | "family_nik" | "nik_typo"
        ) {
            let (nik, rest) = rec[4].split_once(";typed=").unwrap_or((&rec[4], ""));
            if !rest.is_empty() {
                typed.insert(key.clone(), rest.to_owned());
            }
            true_nik.insert(key, nik.to_owned());
        }
    }
    let mut out = Vec::new();
    for line in std::fs::read_to_string(dir.join("proposals.jsonl"))?.lines() {
        let v: serde_json::Value = serde_json::from_str(line)?;
        let reference = v["external_reference"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let village = v["household"]["address"]["village"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let members = v["household"]["families"][0]["members"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        for (m, p) in members.iter().enumerate() {
            let key = (reference.clone(), m);
            let nik = p["nik"]
                .as_str()
                .map(str::to_owned)
                .or_else(|| typed.get(&key).cloned())
                .unwrap_or_default();
            let born = chrono::NaiveDate::parse_from_str(
                p["birth_date"].as_str().unwrap_or_default(),
                "%Y-%m-%d",
            )?;
            let unregistered = kinds
                .get(&key)
                .is_some_and(|k| k.iter().any(|k| k == "unregistered"));
            out.push(Case {
                true_nik: if unregistered {
                    String::new()
                } else {
                    true_nik.get(&key).cloned().unwrap_or_else(|| nik.clone())
                },
                kinds: kinds
                    .get(&key)
                    .map(|k| k.join("+"))
                    .unwrap_or_else(|| "clean".into()),
                person: pb::Person {
                    nik,
                    full_name: p["full_name"].as_str().unwrap_or_default().to_owned(),
                    birth_date: Some(dtks_platform::convert::pb_date(born)),
                    sex: if p["sex"].as_str() == Some("Female") {
                        2
                    } else {
                        1
                    },
                    ..Default::default()
                },
                village: village.clone(),
            });
        }
    }
    Ok(out)
}

/// The registry person the service's answer identifies, if it identifies one.
fn identified(given: &str, answer: &MatchPersonResponse) -> Option<String> {
    let corrected = answer
        .corrections
        .iter()
        .find(|c| c.field == "nik")
        .map(|c| c.registry_value.clone());
    match PersonOutcome::try_from(answer.outcome).unwrap_or_default() {
        PersonOutcome::Matched => Some(given.to_owned()),
        PersonOutcome::MatchedWithCorrections | PersonOutcome::Deceased => {
            corrected.or_else(|| (!given.is_empty()).then(|| given.to_owned()))
        }
        PersonOutcome::NikOfAnotherPerson => corrected,
        _ => None,
    }
}

#[derive(Default)]
struct Score {
    persons: usize,
    identified: usize,
    correct: usize,
}

impl Score {
    /// `truth` empty: the person is not in the registry; only precision can lose.
    fn add(&mut self, truth: &str, found: Option<&str>) {
        self.persons += usize::from(!truth.is_empty());
        if let Some(found) = found {
            self.identified += 1;
            self.correct += usize::from(found == truth);
        }
    }
    fn quality(&self) -> (f64, f64, f64) {
        dtks_e2e::benchtable::quality(self.correct, self.identified, self.persons)
    }
    fn line(&self, what: &str) -> String {
        let (precision, recall, f1) = self.quality();
        format!(
            "{what:<44} {:>7} {:>7} {precision:>8.4} {recall:>8.4} {f1:>8.4}",
            self.persons, self.identified
        )
    }
}

async fn match_all(
    client: &MatchingServiceClient<tonic::transport::Channel>,
    token: &str,
    cases: &[Case],
    withhold: bool,
) -> anyhow::Result<(Vec<MatchPersonResponse>, Vec<f64>, f64)> {
    let started = Instant::now();
    let mut answers: Vec<Option<MatchPersonResponse>> = vec![None; cases.len()];
    // Each call's latency in the cases' order, beside its answer.
    let mut latencies = vec![0.0; cases.len()];
    let mut calls = tokio::task::JoinSet::new();
    let mut next = 0;
    while next < cases.len() || !calls.is_empty() {
        while next < cases.len() && calls.len() < CONCURRENCY {
            let (mut client, token) = (client.clone(), token.to_owned());
            let mut person = cases[next].person.clone();
            if withhold {
                person.nik.clear();
            }
            let village = cases[next].village.clone();
            let index = next;
            calls.spawn(async move {
                let sent = Instant::now();
                let answer = client
                    .match_person(authed(
                        MatchPersonRequest {
                            person: Some(person),
                            village_code: village,
                        },
                        &token,
                    ))
                    .await?
                    .into_inner();
                anyhow::Ok((index, answer, sent.elapsed().as_secs_f64() * 1000.0))
            });
            next += 1;
        }
        if let Some(done) = calls.join_next().await {
            let (index, answer, ms) = done??;
            answers[index] = Some(answer);
            latencies[index] = ms;
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    Ok((answers.into_iter().flatten().collect(), latencies, seconds))
}

/// Every case as one wave through MatchWave: the answers in the cases' order, and the
/// wall time from the first person sent to the last answer.
async fn wave_all(
    client: &MatchingServiceClient<tonic::transport::Channel>,
    token: &str,
    cases: &[Case],
    withhold: bool,
) -> anyhow::Result<(Vec<MatchPersonResponse>, f64)> {
    let requests: Vec<MatchWaveRequest> = cases
        .iter()
        .enumerate()
        .map(|(i, case)| {
            let mut person = case.person.clone();
            if withhold {
                person.nik.clear();
            }
            MatchWaveRequest {
                reference: i.to_string(),
                request: Some(MatchPersonRequest {
                    person: Some(person),
                    village_code: case.village.clone(),
                }),
            }
        })
        .collect();
    let started = Instant::now();
    let mut stream = client
        .clone()
        .match_wave(authed(tokio_stream::iter(requests), token))
        .await?
        .into_inner();
    let mut answers: Vec<Option<MatchPersonResponse>> = vec![None; cases.len()];
    while let Some(answer) = stream.message().await? {
        anyhow::ensure!(
            answer.refused.is_empty(),
            "person {} refused: {:?}",
            answer.reference,
            answer.refused
        );
        let i: usize = answer.reference.parse()?;
        answers[i] = answer.result;
    }
    let seconds = started.elapsed().as_secs_f64();
    let answered: Vec<MatchPersonResponse> = answers.into_iter().flatten().collect();
    anyhow::ensure!(
        answered.len() == cases.len(),
        "{} of {} persons answered",
        answered.len(),
        cases.len()
    );
    Ok((answered, seconds))
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted
        .get(((sorted.len() as f64 * p) as usize).min(sorted.len().saturating_sub(1)))
        .copied()
        .unwrap_or(f64::NAN)
}

async fn run(households: usize, unproposed: usize) -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("dtks-bench-match-{}", std::process::id()));
    let (households_text, unproposed_text) = (households.to_string(), unproposed.to_string());
    dtks_e2e::generate(
        &dir,
        &[
            "--regencies",
            REGENCIES,
            "--seed",
            "2027",
            "--households",
            &households_text,
            "--unproposed",
            &unproposed_text,
            "--corruption",
            "0.33",
            "--corruptions",
            "all",
            "--combined",
            "0.25",
        ],
    )
    .await?;
    let cases = cases(&dir)?;
    let registry = std::fs::read_to_string(dir.join("registry.csv"))?;
    let registered: std::collections::HashSet<&str> = registry
        .lines()
        .skip(1)
        .filter_map(|l| l.split(',').next())
        .collect();
    println!(
        "matching through the service's gRPC API: {} proposal persons in {households} households, a registry of {} persons ({REGENCIES})",
        cases.len(),
        registered.len()
    );
    // The model is learned from this run's data, as a deployment learns it from its
    // registry and its wave (`dtksctl model train`). With DTKS_BENCH_MODEL=shipped the
    // service runs as a deployment that never trained one: the shipped m and u, and the
    // name frequencies it learns from the persons it meets (`learn.rs`).
    let shipped = std::env::var("DTKS_BENCH_MODEL").is_ok_and(|m| m == "shipped");
    let model = dir.join("model.json");
    let model_path = model.to_string_lossy().into_owned();
    let mut env = vec![];
    if shipped {
        println!("the model: the one shipped, name frequencies learned by the service");
    } else {
        let trained = tokio::process::Command::new(dtks_e2e::bin_dir().join("dtksctl"))
            .args(["model", "train", "--registry"])
            .arg(dir.join("registry.csv"))
            .arg("--proposals")
            .arg(dir.join("proposals.jsonl"))
            .arg("--out")
            .arg(&model)
            .output()
            .await?;
        anyhow::ensure!(
            trained.status.success(),
            "dtksctl model train failed: {}",
            String::from_utf8_lossy(&trained.stderr)
        );
        println!(
            "the model, learned from this run's registry and wave:\n{}",
            String::from_utf8_lossy(&trained.stdout)
        );
        env.push(("DTKS_MATCHING_MODEL", model_path.as_str()));
    }
    let stack = Stack::start_services(&registry, &["matching"], &env).await?;
    let token = stack.token(Role::PusdatinAdmin, "");
    let client = MatchingServiceClient::new(stack.channel("matching").await?);

    let (given, seconds) = wave_all(&client, &token, &cases, false).await?;
    // The wave without NIKs, over every person or (DTKS_BENCH_WITHHELD=n) the first n:
    // at 10 M registry persons every one of them is found by searches alone.
    let withheld_n = env_or("DTKS_BENCH_WITHHELD", cases.len()).min(cases.len());
    let (withheld, seconds_withheld) =
        wave_all(&client, &token, &cases[..withheld_n], true).await?;
    let sample = env_or("DTKS_BENCH_SAMPLE", 20_000usize).min(cases.len());
    let (single, mut latencies, seconds_single) =
        match_all(&client, &token, &cases[..sample], false).await?;
    // The calls the NIK check answered (score 0), and those linkage decided on the
    // registry's candidates: their latencies apart.
    let path = |linkage: bool| {
        let mut ms: Vec<f64> = single
            .iter()
            .zip(&latencies)
            .filter(|(a, _)| (a.score > 0.0) == linkage)
            .map(|(_, ms)| *ms)
            .collect();
        ms.sort_by(f64::total_cmp);
        ms
    };
    let (by_nik, by_linkage) = (path(false), path(true));
    latencies.sort_by(f64::total_cmp);
    let mut one_by_one = Score::default();
    let mut agree = 0;
    for ((case, a), w) in cases.iter().zip(&single).zip(&given) {
        let nik = case.person.nik.as_str();
        one_by_one.add(&case.true_nik, identified(nik, a).as_deref());
        agree += usize::from(identified(nik, a) == identified(nik, w) && a.outcome == w.outcome);
    }
    // Retrieval is asked of the registry once more, every search of every person: on
    // the same sample as MatchPerson's latency (at 1 M persons, the whole wave would ask
    // six million searches twice over).
    let (retrieved, requests) = retrieval(&stack, &cases[..sample]).await?;

    let mut used = Score::default();
    let mut hidden = Score::default();
    let mut invalid = Score::default();
    let mut confusion: BTreeMap<String, BTreeMap<String, usize>> = BTreeMap::new();
    let mut wrong: Vec<String> = Vec::new();
    let registry_by_nik: HashMap<&str, &str> = registry
        .lines()
        .skip(1)
        .filter_map(|l| Some((l.split(',').next()?, l)))
        .collect();
    let header = dtks_e2e::SPLINK_PERSONS_HEADER;
    let mut no_valid_nik = csv::Writer::from_path(dir.join("persons.csv"))?;
    no_valid_nik.write_record(header)?;
    let mut every_row = csv::Writer::from_path(dir.join("all.csv"))?;
    every_row.write_record(header)?;
    let table_withheld = std::env::var("DTKS_BENCH_TABLE").is_ok_and(|t| t == "withheld");
    // Who the wave without NIKs did not find, by departure and by what it answered
    // instead: where recall is lost.
    let mut missed: BTreeMap<String, BTreeMap<String, usize>> = BTreeMap::new();
    let mut examples: Vec<String> = Vec::new();
    for (i, (case, a)) in cases.iter().zip(&given).enumerate() {
        let w = withheld.get(i);
        if let Some(w) = w
            && registered.contains(case.true_nik.as_str())
            && identified("", w).as_deref() != Some(case.true_nik.as_str())
        {
            let answered = match identified("", w) {
                Some(_) => "another person".to_owned(),
                None => {
                    let outcome = PersonOutcome::try_from(w.outcome)
                        .unwrap_or_default()
                        .as_str_name()
                        .trim_start_matches("PERSON_OUTCOME_")
                        .to_lowercase();
                    // Why a clerk was asked, in a word.
                    let why = if w.reason.starts_with("two registry persons") {
                        " (ambiguous)"
                    } else if w.reason.starts_with("name and place agree") {
                        " (born apart)"
                    } else if w.reason.starts_with("probability") {
                        " (weak)"
                    } else {
                        ""
                    };
                    format!("{outcome}{why}")
                }
            };
            if examples.len() < env_or("DTKS_BENCH_SHOW_MISSED", 0usize) {
                examples.push(format!(
                    "{} | written {:?} {} in {} | {}",
                    case.kinds,
                    case.person.full_name,
                    dtks_matching::link::iso(case.person.birth_date.as_ref()),
                    case.village,
                    w.reason
                ));
            }
            *missed
                .entry(case.kinds.clone())
                .or_default()
                .entry(answered)
                .or_default() += 1;
        }
        let nik = case.person.nik.as_str();
        // The table shows the calls with the NIK, or (DTKS_BENCH_TABLE=withheld) without
        // for the persons the wave without NIKs had.
        let (a, nik) = match (table_withheld, w) {
            (true, Some(w)) => (w, ""),
            _ => (a, nik),
        };
        used.add(
            &case.true_nik,
            identified(case.person.nik.as_str(), &given[i]).as_deref(),
        );
        if let Some(w) = w {
            hidden.add(&case.true_nik, identified("", w).as_deref());
        }
        let outcome = PersonOutcome::try_from(a.outcome).unwrap_or_default();
        let row = confusion.entry(case.kinds.clone()).or_default();
        *row.entry(
            outcome
                .as_str_name()
                .trim_start_matches("PERSON_OUTCOME_")
                .to_owned(),
        )
        .or_default() += 1;
        // Identified, but as someone else: what precision loses.
        if let Some(found) = identified(nik, a).filter(|found| *found != case.true_nik) {
            *row.entry("~WRONG PERSON".to_owned()).or_default() += 1;
            if wrong.len() < env_or("DTKS_BENCH_SHOW_WRONG", 0usize) {
                let born = case
                    .person
                    .birth_date
                    .as_ref()
                    .and_then(dtks_platform::convert::naive_date);
                let held = registry_by_nik
                    .get(found.as_str())
                    .copied()
                    .unwrap_or_default();
                wrong.push(format!(
                    "  {} | {} {:?} sex {} in {} | {} -> {found} ({:.3}) {held}",
                    case.kinds,
                    case.person.full_name,
                    born,
                    case.person.sex,
                    case.village,
                    PersonOutcome::try_from(a.outcome)
                        .unwrap_or_default()
                        .as_str_name(),
                    a.score
                ));
            }
        }
        let written = case.person.nik.as_str();
        let valid = dtks_domain::Nik::parse(written).is_ok() && registered.contains(written);
        let born = case
            .person
            .birth_date
            .as_ref()
            .and_then(dtks_platform::convert::naive_date);
        let row = [
            i.to_string(),
            case.person.full_name.clone(),
            born.map(|d| d.to_string()).unwrap_or_default(),
            case.person.sex.to_string(),
            case.village.clone(),
            written.to_owned(),
            case.true_nik.clone(),
        ];
        every_row.write_record(&row)?;
        if !valid {
            invalid.add(&case.true_nik, identified(written, &given[i]).as_deref());
            no_valid_nik.write_record(&row)?;
        }
    }
    no_valid_nik.flush()?;
    every_row.flush()?;

    println!(
        "\n{:<44} {:>7} {:>7} {:>8} {:>8} {:>8}",
        "the right registry person", "persons", "linked", "prec.", "recall", "F1"
    );
    println!("{}", used.line("DTKS MatchWave, NIK as written"));
    println!(
        "{}",
        hidden.line(&if withheld_n < cases.len() {
            format!("DTKS MatchWave, NIK withheld, first {withheld_n}")
        } else {
            "DTKS MatchWave, NIK withheld".to_owned()
        })
    );
    println!(
        "{}",
        invalid.line("DTKS MatchWave, rows without a valid NIK")
    );
    println!(
        "{}",
        one_by_one.line(&format!("DTKS MatchPerson, first {sample}, NIK as written"))
    );
    let registry_csv = dir.join("registry.csv");
    let splink_invalid = splink(&registry_csv, &dir.join("persons.csv"));
    match &splink_invalid {
        Ok(s) => println!(
            "{:<44} {:>7} {:>7} {:>8.4} {:>8.4} {:>8.4}   ({:.1} s, fitted on those rows)",
            "Splink 5.0.0, rows without a valid NIK", s.0, s.1, s.2, s.3, s.4, s.5
        ),
        Err(e) => println!("Splink could not run: {e}"),
    }
    let splink_all = splink(&registry_csv, &dir.join("all.csv"));
    println!(
        "\nspeed, end to end: every row ({} persons); without NIKs, the {withheld_n} that wave had",
        cases.len()
    );
    println!(
        "{:<44} {:>9} {:>12} {:>12}",
        "", "seconds", "persons/s", "vs Splink"
    );
    let splink_seconds = splink_all.as_ref().map_or(f64::NAN, |s| s.5);
    for (what, secs) in [
        ("DTKS MatchWave, NIK as written", seconds),
        ("DTKS MatchWave, NIK withheld", seconds_withheld),
        ("Splink 5.0.0, linking every row", splink_seconds),
    ] {
        // Rates per person of the rows each path had; Splink's ratio on the same rate.
        let persons = if what.contains("withheld") {
            withheld_n
        } else {
            cases.len()
        };
        let rate = persons as f64 / secs;
        println!(
            "{what:<44} {secs:>9.1} {rate:>12.0} {:>11.2}x",
            rate / (cases.len() as f64 / splink_seconds)
        );
    }
    if let Ok(s) = &splink_all {
        println!(
            "  (Splink on every row: precision {:.4}, recall {:.4}, F1 {:.4}, without the NIK)",
            s.2, s.3, s.4
        );
    }
    println!(
        "\nretrieval without the NIK (the first {sample} persons): the true person among the candidates for {retrieved:.4} of the persons the registry holds; {requests:.2} searches a person (exact ones, then the wide ones for whoever they did not link), many persons to a DCI message"
    );
    println!(
        "MatchPerson: {sample} calls with the NIK in {seconds_single:.1} s ({:.0}/s at concurrency {CONCURRENCY}), p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, p99.9 {:.1} ms; same person and outcome as the wave for {agree} of {sample}",
        sample as f64 / seconds_single,
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.9),
        percentile(&latencies, 0.99),
        percentile(&latencies, 0.999),
    );
    println!(
        "  answered by the NIK check: {} calls, p50 {:.1} ms, p99 {:.1} ms; decided by linkage on registry searches: {} calls, p50 {:.1} ms, p99 {:.1} ms",
        by_nik.len(),
        percentile(&by_nik, 0.5),
        percentile(&by_nik, 0.99),
        by_linkage.len(),
        percentile(&by_linkage, 0.5),
        percentile(&by_linkage, 0.99),
    );
    use dtks_e2e::benchtable::{self, Row};
    let splink_rate = splink_all.as_ref().ok().map(|s| cases.len() as f64 / s.5);
    let (_, _, f1_used) = used.quality();
    let (_, _, f1_hidden) = hidden.quality();
    benchtable::record(&Row {
        stage: "matching".into(),
        measured: format!(
            "MatchWave (gRPC, registry over DCI), {} persons against {}; F1 {f1_used:.4} with the NIK, {f1_hidden:.4} without",
            cases.len(),
            registered.len()
        ),
        unit: "persons".into(),
        rate: cases.len() as f64 / seconds,
        cores: benchtable::machine_cores(),
        baseline: splink_rate.map(|r| ("Splink 5.0.0, every row".into(), r)),
        units_per_person: 1.0,
        ..Default::default()
    })?;
    benchtable::record(&Row {
        stage: "matching".into(),
        measured: format!("MatchPerson, one person a call at concurrency {CONCURRENCY}"),
        unit: "persons".into(),
        rate: sample as f64 / seconds_single,
        cores: benchtable::machine_cores(),
        p50_ms: Some(percentile(&latencies, 0.5)),
        p99_ms: Some(percentile(&latencies, 0.99)),
        latency_of: "one MatchPerson call".into(),
        units_per_person: 1.0,
        ..Default::default()
    })?;
    let columns: Vec<String> = confusion
        .values()
        .flat_map(|m| m.keys().cloned())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    println!(
        "\noutcome by what the generator did ({})",
        if table_withheld {
            "NIK withheld"
        } else {
            "NIK as written"
        }
    );
    println!(
        "{:<40} {}",
        "departure",
        columns
            .iter()
            .map(|c| format!(
                "{:>15}",
                c.to_lowercase()
                    .replace('_', " ")
                    .trim_start_matches('~')
                    .chars()
                    .take(15)
                    .collect::<String>()
            ))
            .collect::<String>()
    );
    for (kinds, row) in &confusion {
        println!(
            "{kinds:<40} {}",
            columns
                .iter()
                .map(|c| format!("{:>15}", row.get(c).copied().unwrap_or(0)))
                .collect::<String>()
        );
    }
    let mut missed: Vec<(usize, String, String)> = missed
        .into_iter()
        .map(|(kinds, answers)| {
            let total = answers.values().sum();
            let answers = answers
                .into_iter()
                .map(|(a, n)| format!("{a} {n}"))
                .collect::<Vec<_>>()
                .join(", ");
            (total, kinds, answers)
        })
        .collect();
    missed.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    println!(
        "\nnot found with the NIK withheld, by departure ({} persons the registry holds; the 20 largest):",
        missed.iter().map(|m| m.0).sum::<usize>()
    );
    for (total, kinds, answers) in missed.iter().take(20) {
        println!("{kinds:<40} {total:>7}   {answers}");
    }
    if !examples.is_empty() {
        println!("\nnot found with the NIK withheld, the first (DTKS_BENCH_SHOW_MISSED):");
        for line in &examples {
            println!("{line}");
        }
    }
    if !wrong.is_empty() {
        println!("\nwrong persons (DTKS_BENCH_SHOW_WRONG):");
        for line in &wrong {
            println!("{line}");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// Retrieval without the NIK, asked of the registry as matching asks it: the share of
/// the persons the registry holds whose true person is among the candidates of every
/// search linkage may ask for, and the searches a person the matcher actually sends (its
/// two rounds, in-process against the same registry, counted by the DCI client).
async fn retrieval(stack: &Stack, cases: &[Case]) -> anyhow::Result<(f64, f64)> {
    let config = dtks_platform::config::DciConfig {
        signing_key: stack
            .setting("DTKS_DCI__SIGNING_KEY")
            .map(|k| k.to_owned().into()),
        ..Default::default()
    };
    let registry = dtks_matching::dci::DciRegistry::new(&stack.registry_url(), &config)?;
    let held: Vec<(pb::Person, &Case)> = cases
        .iter()
        .filter(|c| !c.true_nik.is_empty())
        .map(|c| {
            let mut person = c.person.clone();
            person.nik.clear();
            (person, c)
        })
        .collect();
    let mut found = 0usize;
    for chunk in held.chunks(500) {
        let queries: Vec<Vec<dtks_matching::link::Query>> = chunk
            .iter()
            .map(|(p, c)| dtks_matching::link::candidate_queries(p, &c.village))
            .collect();
        let groups: Vec<Vec<&[serde_json::Value]>> = queries
            .iter()
            .map(|qs| qs.iter().map(|q| q.predicates.as_slice()).collect())
            .collect();
        let got = registry.find_candidates_each(&groups).await?;
        for ((_, case), got) in chunk.iter().zip(got) {
            found += usize::from(got.persons.iter().any(|(p, _)| p.nik == case.true_nik));
        }
    }
    let matcher = dtks_matching::matcher::Matcher {
        registry: registry.clone(),
        cache: dtks_platform::cache::Cache::connect(&dtks_platform::config::RedisConfig {
            url: std::env::var("DTKS_REDIS__URL")?.into(),
            ..Default::default()
        })
        .await?,
        model: std::sync::Arc::new(dtks_matching::link::load_model()?),
        populations: Default::default(),
        learning: Default::default(),
    };
    let before = registry.searches_sent();
    for chunk in held.chunks(500) {
        let subjects: Vec<(&pb::Person, &str)> =
            chunk.iter().map(|(p, c)| (p, c.village.as_str())).collect();
        matcher.assess_many(&subjects).await?;
    }
    let searches = registry.searches_sent() - before;
    Ok((
        found as f64 / held.len().max(1) as f64,
        searches as f64 / held.len().max(1) as f64,
    ))
}

/// Splink linking the `persons` file to the registry: (persons, links, precision,
/// recall, F1, seconds).
fn splink(
    registry: &std::path::Path,
    persons: &std::path::Path,
) -> anyhow::Result<(u64, u64, f64, f64, f64, f64)> {
    let v = dtks_e2e::splink_baseline(registry, persons)?;
    let n = |k: &str| v[k].as_u64().unwrap_or(0);
    let f = |k: &str| v[k].as_f64().unwrap_or(f64::NAN);
    Ok((
        n("persons"),
        n("links"),
        f("precision"),
        f("recall"),
        f("f1"),
        f("seconds"),
    ))
}
