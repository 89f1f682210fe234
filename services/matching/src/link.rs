//! Probabilistic linkage in the service: for a person whose NIK is missing or does not
//! check out, the registry is searched by predicate on the blocking keys the linkage
//! engine uses (birth date within the district; the name within the regency), and
//! every candidate is scored with the Fellegi–Sunter model.
//!
//! The model (`linkage-model.json`, m- and u-probabilities and the prior) is the one the
//! matching benchmark learns by EM from generated data (`scripts/bench.sh matching`
//! writes it); a deployment loads its own with `DTKS_MATCHING_MODEL=path`.

use std::sync::Arc;

use chrono::NaiveDate;
use dtks_domain::linkage::{Decision, Field, Model, Record, Thresholds, compare};
use dtks_proto::common::v1 as pb;
use serde_json::{Value, json};

use crate::dci::RegistryPerson;

const DEFAULT_MODEL: &str = include_str!("../linkage-model.json");

/// The model in use: `DTKS_MATCHING_MODEL` or the shipped one.
pub fn load_model() -> anyhow::Result<Model> {
    let text = match std::env::var("DTKS_MATCHING_MODEL") {
        Ok(path) if !path.is_empty() => std::fs::read_to_string(&path)
            .map_err(|e| anyhow::anyhow!("reading the linkage model {path}: {e}"))?,
        _ => DEFAULT_MODEL.to_owned(),
    };
    Ok(serde_json::from_str(&text)?)
}

/// Below this many bits between the best and the second candidate, the best one is not
/// clearly the person: a clerk decides.
const AMBIGUITY_BITS: f64 = 4.0;

pub fn iso(d: Option<&pb::Date>) -> String {
    d.map(|d| format!("{:04}-{:02}-{:02}", d.year, d.month, d.day))
        .unwrap_or_default()
}

pub fn date(d: Option<&pb::Date>) -> Option<NaiveDate> {
    d.and_then(dtks_platform::convert::naive_date)
}

/// A registry date (`YYYY-MM-DD`) as a proto date.
pub fn date_of(text: &str) -> Option<pb::Date> {
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .map(dtks_platform::convert::pb_date)
}

pub fn sex_code(sex: &str) -> Option<u8> {
    match sex {
        "male" => Some(1),
        "female" => Some(2),
        _ => None,
    }
}

/// A proposal's person as a linkage record.
pub fn person_record(p: &pb::Person, village: &str) -> Record {
    Record::new(
        &p.full_name,
        date(p.birth_date.as_ref()),
        u8::try_from(p.sex).ok(),
        Some(village),
    )
}

pub fn registry_record(r: &RegistryPerson) -> Record {
    Record::new(
        &r.full_name,
        NaiveDate::parse_from_str(&r.birth_date, "%Y-%m-%d").ok(),
        sex_code(&r.sex),
        Some(&r.village_code),
    )
}

/// The registry searches that find a person's candidates: the same keys the batch
/// linker blocks on, as DCI predicates. A person with neither a birth date nor a name
/// has no candidates.
pub fn candidate_queries(p: &pb::Person, village: &str) -> Vec<Vec<Value>> {
    let term = |name: &str, value: &str| json!({ "attribute_name": name, "operator": "eq", "attribute_value": value });
    let mut queries = Vec::new();
    let born = iso(p.birth_date.as_ref());
    if !born.is_empty() && village.len() >= 8 {
        queries.push(vec![
            term("birth_date", &born),
            term("district_code", &village[..8]),
        ]);
    }
    if !p.full_name.trim().is_empty() && village.len() >= 5 {
        queries.push(vec![
            term("name", &p.full_name),
            term("regency_code", &village[..5]),
        ]);
    }
    if !born.is_empty() && !p.full_name.trim().is_empty() {
        queries.push(vec![term("name", &p.full_name), term("birth_date", &born)]);
    }
    queries
}

/// What linkage concluded for one person.
#[derive(Debug, Clone, PartialEq)]
pub enum Linked {
    /// Sure: the person is this registry person.
    Link {
        person: RegistryPerson,
        probability: f64,
    },
    /// A clerk decides; the reason says why it is uncertain.
    Review {
        person: RegistryPerson,
        probability: f64,
        reason: String,
    },
    None,
}

/// The birth-date level "different" (more than 13 months apart, not a typo or a swap).
const BIRTH_DATE_DIFFERENT: u8 = 3;

/// Scores `candidates` against the person and decides.
///
/// A candidate whose birth date is wholly different is never linked without a clerk,
/// however well name and village agree: namesakes in one village are common, and the
/// person proposed may not be in the registry at all.
pub fn decide(
    model: &Model,
    person: &Record,
    candidates: Vec<RegistryPerson>,
    thresholds: Thresholds,
) -> Linked {
    let mut scored: Vec<(f64, RegistryPerson, String, bool)> = candidates
        .into_iter()
        .map(|c| {
            let v = compare(person, &registry_record(&c));
            let born_apart = v[Field::BirthDate as usize] == BIRTH_DATE_DIFFERENT;
            (model.log2_odds(&v), c, model.explain(&v), born_apart)
        })
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0));
    let mut ranked = scored.into_iter();
    let Some((odds, best, explanation, born_apart)) = ranked.next() else {
        return Linked::None;
    };
    let probability = dtks_domain::linkage::probability_of_odds(odds);
    let runner_up = ranked.next().map(|(o, _, _, _)| o);
    match thresholds.decide(probability) {
        Decision::NoLink => Linked::None,
        Decision::Link if !born_apart && runner_up.is_none_or(|o| odds - o >= AMBIGUITY_BITS) => {
            Linked::Link {
                person: best,
                probability,
            }
        }
        decision => {
            let reason = if decision == Decision::Link && born_apart {
                format!(
                    "name and place agree but the birth date is wholly different: a namesake, or the same person with a wrong date; {explanation}"
                )
            } else if decision == Decision::Link {
                format!(
                    "two registry persons score within {AMBIGUITY_BITS} bits of each other; best: {explanation}"
                )
            } else {
                format!(
                    "probability {probability:.2} is between the review ({}) and link ({}) thresholds: {explanation}",
                    thresholds.review, thresholds.link
                )
            };
            Linked::Review {
                person: best,
                probability,
                reason,
            }
        }
    }
}

/// The shared model, cheap to clone.
pub type SharedModel = Arc<Model>;

#[cfg(test)]
mod tests {
    use super::*;

    fn registry(nik: &str, name: &str, born: &str, sex: &str) -> RegistryPerson {
        RegistryPerson {
            nik: nik.into(),
            kk_number: "3204050505150001".into(),
            full_name: name.into(),
            birth_date: born.into(),
            sex: sex.into(),
            village_code: "32.04.05.2001".into(),
            deceased: false,
        }
    }

    fn proposed(name: &str, (y, m, d): (i32, i32, i32), sex: i32) -> Record {
        person_record(
            &pb::Person {
                full_name: name.into(),
                birth_date: Some(pb::Date {
                    year: y,
                    month: m,
                    day: d,
                }),
                sex,
                ..Default::default()
            },
            "32.04.05.2001",
        )
    }

    #[test]
    fn a_spelling_variant_links_an_unrelated_candidate_does_not_and_twins_go_to_a_clerk() {
        let model = load_model().expect("shipped model");
        let t = Thresholds::default();
        let asep = registry("3204051203800001", "Asep Sunandar", "1980-03-12", "male");
        let other = registry("3204051507650009", "Ujang Suryana", "1965-07-15", "male");

        // "Moch." for "Muhammad", and a variant spelling.
        let linked = decide(
            &model,
            &proposed("Asep Sunandar", (1980, 3, 12), 1),
            vec![other.clone(), asep.clone()],
            t,
        );
        assert!(
            matches!(&linked, Linked::Link { person, .. } if person.nik == asep.nik),
            "{linked:?}"
        );
        let variant = decide(
            &model,
            &proposed("Asep Sunanda", (1980, 3, 12), 1),
            vec![asep.clone()],
            t,
        );
        assert!(matches!(variant, Linked::Link { .. }), "{variant:?}");

        assert_eq!(
            decide(
                &model,
                &proposed("Asep Sunandar", (1980, 3, 12), 1),
                vec![other.clone()],
                t
            ),
            Linked::None
        );
        assert_eq!(
            decide(&model, &proposed("Asep", (1980, 3, 12), 1), vec![], t),
            Linked::None
        );

        // Two registry persons the proposal fits equally well: never linked silently.
        let twin = registry("3204051203800007", "Asep Sunandar", "1980-03-12", "male");
        let ambiguous = decide(
            &model,
            &proposed("Asep Sunandar", (1980, 3, 12), 1),
            vec![asep, twin],
            t,
        );
        match ambiguous {
            Linked::Review { reason, .. } => assert!(reason.contains("within"), "{reason}"),
            other => panic!("expected a review, got {other:?}"),
        }
    }

    #[test]
    fn a_namesake_born_years_apart_goes_to_a_clerk_not_a_link() {
        let model = load_model().expect("shipped model");
        let namesake = registry("3204051203800001", "Asep Sunandar", "1980-03-12", "male");
        let decided = decide(
            &model,
            &proposed("Asep Sunandar", (2001, 9, 30), 1),
            vec![namesake],
            Thresholds::default(),
        );
        match decided {
            Linked::Review { reason, .. } => {
                assert!(reason.contains("wholly different"), "{reason}")
            }
            other => panic!("expected a clerk, got {other:?}"),
        }
    }

    #[test]
    fn candidate_queries_follow_the_blocking_keys() {
        let p = pb::Person {
            full_name: "Siti Aminah".into(),
            birth_date: Some(pb::Date {
                year: 1984,
                month: 8,
                day: 17,
            }),
            ..Default::default()
        };
        let q = candidate_queries(&p, "32.04.05.2001");
        assert_eq!(q.len(), 3);
        assert_eq!(q[0][1]["attribute_value"], "32.04.05");
        assert_eq!(q[1][1]["attribute_value"], "32.04");
        let nameless = pb::Person::default();
        assert!(candidate_queries(&nameless, "32.04.05.2001").is_empty());
    }
}
