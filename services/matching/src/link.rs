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
use dtks_domain::linkage::{
    Decision, Field, LEVELS, Model, NameKey, Record, Thresholds, Vector, compare,
};
use dtks_proto::common::v1 as pb;
use serde_json::{Value, json};

use crate::dci::RegistryPerson;

const DEFAULT_MODEL: &str = include_str!("../linkage-model.json");

static VERSION: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// The model in use: `DTKS_MATCHING_MODEL` (written by `dtksctl model train`) or the
/// shipped one. Its version is recorded with every result ([`model_version`]).
pub fn load_model() -> anyhow::Result<Model> {
    let text = match std::env::var("DTKS_MATCHING_MODEL") {
        Ok(path) if !path.is_empty() => std::fs::read_to_string(&path)
            .map_err(|e| anyhow::anyhow!("reading the linkage model {path}: {e}"))?,
        _ => DEFAULT_MODEL.to_owned(),
    };
    let model = serde_json::from_str(&text)?;
    let _ = VERSION.set(dtks_domain::linkage::model_version(&text));
    Ok(model)
}

/// The version of the model in use (empty before it is loaded).
pub fn model_version() -> String {
    VERSION.get().cloned().unwrap_or_default()
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

/// Over what region a search held the candidates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Nation,
    Regency,
    District,
}

/// One registry search for candidates: its predicates, and what it holds equal (so
/// that agreement there is no evidence among what it finds).
#[derive(Debug, Clone)]
pub struct Query {
    pub predicates: Vec<Value>,
    pub fixed: &'static [Field],
    pub scope: Scope,
    /// How often the search finds someone for a person the registry does not hold (the
    /// rarer, the more a find says).
    pub stray: f64,
    /// Its total is how many persons of the regency bear the name as written (the name
    /// search of the regency): the name's own frequency, for its weight.
    pub name_count: bool,
    /// A search for a person written down with a departure (a birth date moved, a name
    /// part mistyped or dropped): asked only when the exact ones found no one to link.
    pub wide: bool,
    /// A search by one part of the name: its total already counts how common the part
    /// is, so a rare part adds nothing more ([`odds`]).
    pub by_part: bool,
}

impl Query {
    /// A search whose finds agree on `fixed` within `scope`, with the weight of neither
    /// a name count nor a departure.
    fn exact(predicates: Vec<Value>, fixed: &'static [Field], scope: Scope, stray: f64) -> Query {
        Query {
            predicates,
            fixed,
            scope,
            stray,
            name_count: false,
            wide: false,
            by_part: false,
        }
    }

    /// How a person this search found was found, among `total` it found.
    pub fn found(&self, total: u64) -> Retrieval {
        Retrieval {
            fixed: self.fixed,
            scope: self.scope,
            total,
            stray: self.stray,
            name_count: self.name_count,
            by_part: self.by_part,
        }
    }
}

/// The registry searches that find a person's candidates: the same keys the batch
/// linker blocks on, as DCI predicates. A person with neither a birth date nor a name
/// has no candidates.
pub fn candidate_queries(p: &pb::Person, village: &str) -> Vec<Query> {
    let term = |name: &str, value: &str| json!({ "attribute_name": name, "operator": "eq", "attribute_value": value });
    let mut queries = Vec::new();
    let born = iso(p.birth_date.as_ref());
    let named = !p.full_name.trim().is_empty();
    if !born.is_empty() && village.len() >= 8 {
        let predicates = vec![
            term("birth_date", &born),
            term("district_code", &village[..8]),
        ];
        // Someone of a district is born on most days.
        queries.push(Query::exact(
            predicates,
            &[Field::BirthDate],
            Scope::District,
            0.8,
        ));
    }
    if named && village.len() >= 5 {
        let predicates = vec![
            term("name", &p.full_name),
            term("regency_code", &village[..5]),
        ];
        // Namesakes in a regency are common.
        let namesakes = Query::exact(predicates, &[Field::Name], Scope::Regency, 0.3);
        queries.push(Query {
            name_count: true,
            ..namesakes
        });
    }
    if !born.is_empty() && named {
        let predicates = vec![term("name", &p.full_name), term("birth_date", &born)];
        // The same full name born the same day is rare, even nationally.
        queries.push(Query::exact(
            predicates,
            &[Field::Name, Field::BirthDate],
            Scope::Nation,
            0.02,
        ));
    }
    // Within three years of the birth date given: a date written as 1 July or 31
    // December, or corrected since, still meets the person; so does a name with one
    // part mistyped or dropped, by either of its outer parts.
    let year = p.birth_date.as_ref().map(|d| d.year);
    if let (Some(year), true) = (year, village.len() >= 5) {
        let window = |predicates: &mut Vec<Value>| {
            predicates.push(json!({ "attribute_name": "birth_date", "operator": "ge", "attribute_value": format!("{:04}-01-01", year - 1) }));
            predicates.push(json!({ "attribute_name": "birth_date", "operator": "le", "attribute_value": format!("{:04}-12-31", year + 1) }));
        };
        if named {
            let mut predicates = vec![
                term("name", &p.full_name),
                term("regency_code", &village[..5]),
            ];
            window(&mut predicates);
            let near = Query::exact(predicates, &[Field::Name], Scope::Regency, 0.15);
            queries.push(Query { wide: true, ..near });
        }
        let parts = name_parts(&p.full_name);
        let outer = [parts.first(), parts.last()];
        for (i, part) in outer.into_iter().flatten().enumerate() {
            if i == 1 && parts.len() < 2 {
                break;
            }
            let mut predicates = vec![term("name_part", part), term("regency_code", &village[..5])];
            window(&mut predicates);
            let by_part = Query::exact(predicates, &[], Scope::Regency, 0.6);
            queries.push(Query {
                wide: true,
                by_part: true,
                ..by_part
            });
        }
    }
    queries
}

/// The parts of a name as written that can find it: titles, degrees and initials left
/// out (`H.`, `Hj.`, `S.Pd.`, `M.`), punctuation trimmed.
fn name_parts(name: &str) -> Vec<String> {
    name.split_whitespace()
        .map(|w| w.trim_matches(|c: char| c == ',' || c == '.'))
        .filter(|w| w.chars().filter(|c| c.is_alphabetic()).count() > 2 && !w.contains('.'))
        .map(str::to_owned)
        .collect()
}

/// How likely a proposal person is to be in the civil registry at all, before anything
/// is compared: the prior of linkage, spread over what a search finds.
pub const PRESENT: f64 = 0.95;

/// How one candidate was found: what the search held equal, over what region, and how
/// many persons it found in all.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Retrieval {
    pub fixed: &'static [Field],
    pub scope: Scope,
    pub total: u64,
    /// [`Query::stray`] of the search.
    pub stray: f64,
    /// [`Query::name_count`] of the search.
    pub name_count: bool,
    /// [`Query::by_part`] of the search.
    pub by_part: bool,
}

impl Retrieval {
    /// The NIK's own holder, met by the NIK rather than by a search: one person, the
    /// region no evidence (a NIK written wrongly is most often a family member's).
    pub const HOLDER: Retrieval = Retrieval {
        fixed: &[Field::Region],
        scope: Scope::Nation,
        total: 1,
        stray: 1.0,
        name_count: false,
        by_part: false,
    };

    /// The NIK's own holder, where the NIK written carries the birth date and sex
    /// written beside it: the holder agrees on them because the NIK says so (a mistyped
    /// serial lands on someone of the district born the same day), so they are no
    /// evidence either; the name decides.
    pub const HOLDER_OF_THAT_BIRTH: Retrieval = Retrieval {
        fixed: &[Field::Region, Field::BirthDate, Field::Sex],
        ..Self::HOLDER
    };

    /// How the holder of `p`'s NIK is met.
    pub fn holder_of(p: &pb::Person) -> Retrieval {
        if nik_carries_birth(p) {
            Self::HOLDER_OF_THAT_BIRTH
        } else {
            Self::HOLDER
        }
    }
}

/// Whether the NIK `p` gives encodes the birth date and the sex written beside it. A
/// NIK holds its holder's birth date and sex (the day plus 40 for a woman), so any
/// holder of such a NIK agrees with the person on both, whoever they are.
pub fn nik_carries_birth(p: &pb::Person) -> bool {
    let (Ok(nik), Some(born)) = (dtks_domain::Nik::parse(&p.nik), date(p.birth_date.as_ref()))
    else {
        return false;
    };
    nik.agrees_with_birth_date(born) && p.sex == nik.sex().code()
}

/// A registry person and every way they were found.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    pub person: RegistryPerson,
    pub found: Vec<Retrieval>,
}

/// What `queries` found, as candidates with the ways each was found; the NIK's own
/// `holder` always among them (the model, not the retrieval, decides whether it is the
/// person).
pub fn candidates(
    queries: &[Query],
    found: crate::dci::Found,
    holder: Option<(&RegistryPerson, Retrieval)>,
) -> Vec<Candidate> {
    let mut candidates: Vec<Candidate> = found
        .persons
        .into_iter()
        .map(|(person, by)| Candidate {
            person,
            found: by
                .into_iter()
                .map(|q| queries[q].found(found.totals.get(q).copied().unwrap_or(1)))
                .collect(),
        })
        .collect();
    if let Some((holder, how)) = holder {
        match candidates.iter_mut().find(|c| c.person.nik == holder.nik) {
            Some(c) => c.found.push(how),
            None => candidates.push(Candidate {
                person: holder.clone(),
                found: vec![how],
            }),
        }
    }
    candidates
}

/// `more` joined into `candidates`: a person found again keeps every way they were found.
pub fn merge(candidates: &mut Vec<Candidate>, more: Vec<Candidate>) {
    let mut at: std::collections::HashMap<String, usize> = candidates
        .iter()
        .enumerate()
        .map(|(i, c)| (c.person.nik.clone(), i))
        .collect();
    for c in more {
        match at.get(&c.person.nik) {
            Some(&i) => candidates[i].found.extend(c.found),
            None => {
                at.insert(c.person.nik.clone(), candidates.len());
                candidates.push(c);
            }
        }
    }
}

/// Villages in the district and the regency of `village`, from the reference data.
fn villages_around(village: &str) -> (f64, f64) {
    static COUNTS: std::sync::OnceLock<std::collections::HashMap<&'static str, u32>> =
        std::sync::OnceLock::new();
    let counts = COUNTS.get_or_init(|| {
        let mut counts = std::collections::HashMap::new();
        for code in dtks_platform::reference::village_codes() {
            for prefix in [code.get(..8), code.get(..5)].into_iter().flatten() {
                *counts.entry(prefix).or_insert(0) += 1;
            }
        }
        counts
    });
    let count = |len: usize| {
        village
            .get(..len)
            .and_then(|p| counts.get(p))
            .map_or(1.0, |n| f64::from(*n))
    };
    (count(8), count(5))
}

/// The weight of the region's agreement among persons a search held to `scope`: a
/// same-village agreement within one district is no rare coincidence. u is the share
/// of a random pair of that scope at each level (from the villages of the reference
/// data), m the model's, renormalised to the levels the scope leaves.
fn region_weight(model: &Model, level: u8, scope: Scope, village: &str) -> f64 {
    let m = &model.m[Field::Region as usize];
    let (district, regency) = villages_around(village);
    let (u, levels): (Vec<f64>, usize) = match scope {
        Scope::Nation => return model.field_weight(Field::Region, level),
        Scope::District => (vec![1.0 / district, 1.0 - 1.0 / district], 2),
        Scope::Regency => (
            vec![
                1.0 / regency,
                (district - 1.0) / regency,
                (regency - district) / regency,
            ],
            3,
        ),
    };
    let level = usize::from(level);
    if level >= levels {
        return model.field_weight(Field::Region, level as u8);
    }
    let m_sum: f64 = m[..levels].iter().sum();
    let (m, u) = (m[level] / m_sum, u[level].max(1e-9));
    (m.max(1e-9) / u).log2()
}

/// The log2 odds that `candidate`, found by `how`, is the person, before the fields the
/// search did not hold equal are weighed: that the person is among what the search
/// found ([`PRESENT`], given that the search found anyone, which it does for a person
/// not in the registry with the chance [`Query::stray`]), spread over what it found.
pub fn prior(how: &Retrieval) -> f64 {
    let among = PRESENT / (PRESENT + (1.0 - PRESENT) * how.stray);
    let prior = (among / how.total.max(1) as f64).min(1.0 - 1e-9);
    (prior / (1.0 - prior)).log2()
}

/// The log2 odds that a candidate found by `how` is the person: [`prior`] and the
/// weights of the fields the search did not hold equal.
///
/// `name_share`, when known, is the share of the region's persons who bear the
/// candidate's name exactly (its term frequency): an exact agreement on it weighs
/// `log2(m / share)` instead of the model's average, so that agreeing on a common name
/// ("Siti Aminah") says less than agreeing on a rare one.
///
/// `part_bits`, when the model knows the registry's name parts
/// ([`dtks_domain::linkage::TokenShares::part_frequency_bits`]), is what an agreement
/// carried by those parts is worth beyond the level's average: applied to every
/// agreeing name level that `name_share` does not already weigh, so that "Siti"
/// agreeing with "Siti Aminah" says less than "Wulandari" with "Wulandari Putri". A
/// search by a part already weighed its rarity in its total: there, only a common
/// part's loss applies.
pub fn odds(
    model: &Model,
    village: &str,
    v: &Vector,
    how: &Retrieval,
    name_share: Option<f64>,
    part_bits: Option<f64>,
) -> f64 {
    let mut odds = prior(how);
    let disagreeing = LEVELS[Field::Name as usize].len() as u8 - 1;
    for f in dtks_domain::linkage::FIELDS {
        let level = v[f as usize];
        if how.fixed.contains(&f) || level == dtks_domain::linkage::NULL {
            continue;
        }
        odds += match (f, level, name_share) {
            (Field::Region, ..) => region_weight(model, level, how.scope, village),
            (Field::Name, 0, Some(share)) => {
                (model.m[Field::Name as usize][0] / share.clamp(1e-9, 1.0)).log2()
            }
            // Levels are ordered, best first: a lesser agreement is never stronger
            // evidence than the best (a level random pairs never showed would otherwise
            // weigh without bound).
            (Field::Name, level, _) if level < disagreeing => {
                let bits = part_bits.unwrap_or(0.0);
                model.field_weight(f, level).min(model.field_weight(f, 0))
                    + if how.by_part { bits.min(0.0) } else { bits }
            }
            _ => model.field_weight(f, level).min(model.field_weight(f, 0)),
        };
    }
    odds
}

/// The stray rate of a search that holds `name` and a birth date equal, from the
/// data: a person not in the registry meets someone of the same name born the same day
/// as often as the name is common (a "Slamet" often, a rare name almost never). `None`
/// for a model without the registry's name frequencies (the search's own rate stays).
fn namesake_stray(model: &Model, name: &NameKey) -> Option<f64> {
    let expected = model.tokens.as_ref()?.namesakes_born_that_day(name)?;
    Some((1.0 - (-expected).exp()).clamp(1e-6, 1.0))
}

/// `how`, with `stray` where it held the full name and the birth date equal.
fn with_stray(how: &Retrieval, stray: Option<f64>) -> Retrieval {
    let holds_both = how.fixed.contains(&Field::Name) && how.fixed.contains(&Field::BirthDate);
    match stray {
        Some(stray) if holds_both => Retrieval { stray, ..*how },
        _ => *how,
    }
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

/// Scores `candidates` against the person and decides. Each candidate is judged as
/// the most specific search that found it saw it (the one that found fewest). With the
/// `population` of the person's regency, a name agreement weighs by how common the name
/// is there ([`odds`]).
///
/// A candidate whose birth date is wholly different is never linked without a clerk,
/// however well name and village agree: namesakes in one village are common, and the
/// person proposed may not be in the registry at all.
pub fn decide(
    model: &Model,
    person: &Record,
    village: &str,
    candidates: &[Candidate],
    thresholds: Thresholds,
    population: Option<u64>,
) -> Linked {
    let namesake_stray = namesake_stray(model, &person.name);
    let mut scored: Vec<(f64, &Candidate, Vector, bool)> = candidates
        .iter()
        .filter_map(|c| {
            let candidate = registry_record(&c.person);
            let v = compare(person, &candidate);
            let how = c.found.iter().min_by_key(|r| r.total)?;
            let how = &with_stray(how, namesake_stray);
            let born_apart = v[Field::BirthDate as usize] == BIRTH_DATE_DIFFERENT;
            // The name search of the regency found this candidate: the name as written is
            // theirs, and its total is how common it is there.
            let name_share =
                population
                    .zip(c.found.iter().find(|r| r.name_count))
                    .map(|(population, r)| {
                        r.total.max(1) as f64 / population.max(r.total).max(1) as f64
                    });
            let part_bits = model
                .tokens
                .as_ref()
                .and_then(|t| t.part_frequency_bits(&person.name, &candidate.name));
            let odds = odds(model, village, &v, how, name_share, part_bits);
            Some((odds, c, v, born_apart))
        })
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0));
    let mut ranked = scored.into_iter();
    let Some((odds, best, v, born_apart)) = ranked.next() else {
        return Linked::None;
    };
    let best = best.person.clone();
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
            let explanation = model.explain(&v);
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
mod tests;
