//! Matching one household (*pemadanan*): every person's NIK checked against the civil
//! registry (cached in Redis, [`crate::dci::BATCH`] NIKs to a request), probabilistic
//! linkage where the NIK is missing or does not check out, then — inside the
//! transaction that stores the result — the duplicate check against all of DTKS and
//! the person index updated.

use std::collections::HashMap;

use dtks_domain::linkage::Thresholds;
use dtks_platform::cache::Cache;
use dtks_proto::common::v1 as pb;
use dtks_proto::events::v1::{self as ev, PersonOutcome};

use crate::dci::{DciRegistry, RegistryError, RegistryPerson};
use crate::link::{self, Linked, SharedModel};
use crate::store::index::Identity;

/// How long a civil-registry answer is cached; vital events invalidate it sooner.
pub const CACHE_TTL_SECS: u64 = 3600;

/// The cache key of a registry answer: the NIK's keyed hash, never the NIK (finding 17).
pub fn cache_key(nik: &str) -> anyhow::Result<String> {
    Cache::personal_key("dci:nik", nik)
}

/// When a person's candidate searches are asked (*jadwal pencarian*).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Schedule {
    /// The exact searches first, the wide ones only for whom they did not link: fewer
    /// searches (waves, households).
    Rounds,
    /// Every search in one registry message, the wide answers used only for whom the
    /// exact ones did not link: one round trip fewer for the persons that take longest
    /// (a single person, where latency counts).
    AtOnce,
}

#[derive(Clone)]
pub struct Matcher {
    pub registry: DciRegistry,
    pub cache: Cache,
    pub model: SharedModel,
    /// Persons per regency in the registry, as last counted.
    pub populations: Populations,
    /// What is learned of the registry from the persons met, for a model that does not
    /// carry the registry's name frequencies.
    pub learning: std::sync::Arc<crate::learn::Learning>,
}

/// What the registry and linkage say about one person, before the duplicate check.
#[derive(Debug, Clone, Default)]
pub struct Assessed {
    pub outcome: PersonOutcome,
    pub corrections: Vec<ev::FieldCorrection>,
    /// Linkage's match probability (0 for an exact NIK check).
    pub probability: f64,
    /// The NIK known to be the person's: their own when it checked out, or the linked one.
    pub nik: Option<String>,
    /// For IN_REVIEW: the candidate, and why it is uncertain.
    pub review: Option<(RegistryPerson, String)>,
    /// The outcome before linkage (what a clerk's "different person" restores).
    pub before_linkage: PersonOutcome,
    /// The version of the model that assessed the person.
    pub model_version: String,
    /// For NIK_OF_ANOTHER_PERSON: whom the registry holds under the NIK given.
    pub holder: Option<RegistryPerson>,
    /// Held already by the household a CHANGE is for, as it is proposed: not asked.
    pub held: bool,
}

impl Assessed {
    /// A member the household holds already, as matched when it entered DTKS.
    fn held(nik: &str) -> Self {
        Self {
            outcome: PersonOutcome::Matched,
            corrections: Vec::new(),
            probability: 0.0,
            nik: Some(nik.to_owned()),
            review: None,
            before_linkage: PersonOutcome::Matched,
            holder: None,
            held: true,
            model_version: String::new(),
        }
    }
}

fn normalise(name: &str) -> String {
    name.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_uppercase()
}

fn sex_name(sex: i32) -> &'static str {
    match sex {
        1 => "male",
        2 => "female",
        _ => "",
    }
}

/// The fields where the registry differs from the proposal, with the registry's values.
pub fn differences(p: &pb::Person, village: &str, r: &RegistryPerson) -> Vec<ev::FieldCorrection> {
    let mut out = Vec::new();
    let mut differs = |field: &str, differ: bool, value: &str| {
        if differ {
            out.push(ev::FieldCorrection {
                field: field.into(),
                registry_value: value.into(),
            });
        }
    };
    differs("nik", p.nik != r.nik, &r.nik);
    differs(
        "full_name",
        normalise(&r.full_name) != normalise(&p.full_name),
        &r.full_name,
    );
    differs(
        "birth_date",
        r.birth_date != link::iso(p.birth_date.as_ref()),
        &r.birth_date,
    );
    differs("sex", r.sex != sex_name(p.sex), &r.sex);
    differs(
        "village_code",
        !village.is_empty() && r.village_code != village,
        &r.village_code,
    );
    out
}

/// How likely the holder of a NIK a proposal gives is the person proposed, before the
/// other fields are weighed: a NIK is one person's, and most wrong ones are a family
/// member's or mistyped.
pub const NIK_PRIOR: f64 = 0.9;

/// Whether the civil registry's holder of the person's NIK is the person: the linkage
/// model weighs name (titles, spelling variants and old spelling folded), birth date
/// and sex against [`NIK_PRIOR`]. Answers the probability.
pub fn holder_is_person(
    model: &dtks_domain::linkage::Model,
    p: &pb::Person,
    village: &str,
    holder: &RegistryPerson,
) -> f64 {
    let mut v = dtks_domain::linkage::compare(
        &link::person_record(p, village),
        &link::registry_record(holder),
    );
    // The region is no evidence here: a NIK written wrongly is most often a family
    // member's, who lives in the same village. Nor are the birth date and the sex
    // where the NIK itself carries the ones written: any holder of it agrees on them.
    let fixed = link::Retrieval::holder_of(p).fixed;
    for f in fixed {
        v[*f as usize] = dtks_domain::linkage::NULL;
    }
    let prior = (NIK_PRIOR / (1.0 - NIK_PRIOR)).log2();
    dtks_domain::linkage::probability_of_odds(prior + model.weight(&v))
}

/// Whether a NIK can be looked up at all: sixteen digits that parse as a NIK. Anything
/// else is a NIK written down wrongly — unreliable, never a reason to refuse.
pub fn usable_nik(nik: &str) -> bool {
    dtks_domain::Nik::parse(nik).is_ok()
}

/// The exact NIK check of one person against what the registry holds for that NIK.
/// Identity comes first: the holder is the person unless the model says otherwise
/// ([`holder_is_person`] below one half gives NIK_OF_ANOTHER_PERSON), and the holder's
/// status (deceased) is the person's only once they are the same.
pub fn exact(
    model: &dtks_domain::linkage::Model,
    p: &pb::Person,
    village: &str,
    found: Option<&RegistryPerson>,
) -> (PersonOutcome, Vec<ev::FieldCorrection>) {
    if p.nik.is_empty() {
        return (PersonOutcome::NoNik, vec![]);
    }
    let Some(found) = found.filter(|_| usable_nik(&p.nik)) else {
        return (PersonOutcome::NotFound, vec![]);
    };
    if holder_is_person(model, p, village, found) < 0.5 {
        return (PersonOutcome::NikOfAnotherPerson, vec![]);
    }
    let corrections = differences(p, village, found);
    if found.deceased {
        (PersonOutcome::Deceased, corrections)
    } else if corrections.is_empty() {
        (PersonOutcome::Matched, corrections)
    } else {
        (PersonOutcome::MatchedWithCorrections, corrections)
    }
}

/// Persons per regency in the civil registry, each counted at most once an hour: the
/// denominator of a name's frequency ([`link::odds`]).
#[derive(Clone, Default)]
pub struct Populations {
    known: std::sync::Arc<std::sync::Mutex<HashMap<String, (u64, std::time::Instant)>>>,
    /// Held while counting: callers that find the same regencies missing wait for one
    /// count instead of asking for their own.
    counting: std::sync::Arc<tokio::sync::Mutex<()>>,
}

/// How long a regency's count is used before it is counted again.
const POPULATION_TTL: std::time::Duration = std::time::Duration::from_secs(3600);

impl Populations {
    /// The known, still fresh counts of `regencies`, and the regencies without one.
    fn split(&self, regencies: &[String]) -> (HashMap<String, u64>, Vec<String>) {
        let now = std::time::Instant::now();
        let mut known = HashMap::new();
        let mut missing = Vec::new();
        let held = self.known.lock().expect("populations");
        for regency in regencies {
            match held.get(regency) {
                Some((n, at)) if now.duration_since(*at) < POPULATION_TTL => {
                    known.insert(regency.clone(), *n);
                }
                _ => missing.push(regency.clone()),
            }
        }
        missing.sort();
        missing.dedup();
        (known, missing)
    }

    /// How many persons the whole registry holds: every province counted in one search
    /// (known for an hour, as a regency's count is).
    pub async fn nation(&self, registry: &DciRegistry) -> Result<u64, RegistryError> {
        const NATION: &str = "nation";
        if let (known, missing) = self.split(&[NATION.to_owned()])
            && missing.is_empty()
        {
            return Ok(known.get(NATION).copied().unwrap_or(0));
        }
        let mut provinces: Vec<&str> = dtks_platform::reference::village_codes()
            .iter()
            .filter_map(|c| c.get(..2))
            .collect();
        provinces.sort_unstable();
        provinces.dedup();
        let query = vec![serde_json::json!({
            "attribute_name": "province_code", "operator": "in",
            "attribute_value": provinces.join(",")
        })];
        let n = registry
            .totals(&[query])
            .await?
            .first()
            .copied()
            .unwrap_or(0);
        self.known
            .lock()
            .expect("populations")
            .insert(NATION.to_owned(), (n, std::time::Instant::now()));
        Ok(n)
    }

    /// The population of each of `regencies`, counted by the registry where not known:
    /// one regency a message (a count reads the whole regency), at once.
    pub async fn of(
        &self,
        registry: &DciRegistry,
        regencies: &[String],
    ) -> Result<HashMap<String, u64>, RegistryError> {
        let (known, missing) = self.split(regencies);
        if missing.is_empty() {
            return Ok(known);
        }
        let _turn = self.counting.lock().await;
        // Counted while this caller waited for its turn?
        let (mut known, missing) = self.split(regencies);
        let counts = futures::future::try_join_all(missing.iter().map(|r| {
            let query = vec![serde_json::json!({
                "attribute_name": "regency_code", "operator": "eq", "attribute_value": r
            })];
            async move { registry.totals(&[query]).await }
        }))
        .await?;
        let now = std::time::Instant::now();
        let mut held = self.known.lock().expect("populations");
        for (regency, n) in missing.into_iter().zip(counts) {
            let n = n.first().copied().unwrap_or(0);
            held.insert(regency.clone(), (n, now));
            known.insert(regency, n);
        }
        Ok(known)
    }
}

impl Matcher {
    /// The model linkage uses now, and its version: the loaded one if it carries the
    /// registry's name frequencies, else the loaded one with what was learned of them
    /// ([`crate::learn`]) once enough persons were met.
    pub fn current(&self) -> (SharedModel, String) {
        if self.model.tokens.is_none()
            && let Some(learned) = self.learning.model()
        {
            return learned;
        }
        (self.model.clone(), link::model_version())
    }

    /// Rebuilds the learned model, the registry's size counted (at most hourly); a
    /// registry that cannot count now leaves the model as it was.
    async fn learn(&self) {
        if self.model.tokens.is_some() {
            return;
        }
        match self.populations.nation(&self.registry).await {
            Ok(persons) => self
                .learning
                .rebuild(&self.model, &link::model_version(), persons),
            Err(error) => tracing::warn!(%error, "the registry's size is not known yet"),
        }
    }

    /// The registry's answer for each NIK: from the cache, the rest in batched requests.
    /// A NIK that is empty or not a NIK at all is not asked about.
    pub async fn lookup(
        &self,
        niks: &[String],
    ) -> Result<HashMap<String, Option<RegistryPerson>>, RegistryError> {
        let niks: Vec<&String> = niks.iter().filter(|n| usable_nik(n)).collect();
        // Without a key to hash with, the cache is not used at all.
        let keys: Option<Vec<String>> = niks.iter().map(|n| cache_key(n).ok()).collect();
        let cached: Vec<Option<Option<RegistryPerson>>> = match &keys {
            Some(keys) => self.cache.get_many(keys).await.unwrap_or_else(|error| {
                tracing::warn!(%error, "registry cache unavailable");
                vec![None; keys.len()]
            }),
            None => vec![None; niks.len()],
        };
        let mut found = HashMap::with_capacity(niks.len());
        let mut missing = Vec::new();
        for (nik, hit) in niks.into_iter().zip(cached) {
            match hit {
                Some(answer) => {
                    found.insert(nik.clone(), answer);
                }
                None => missing.push(nik.clone()),
            }
        }
        if !missing.is_empty() {
            let answers = self.registry.find_by_niks(&missing).await?;
            let entries: Vec<(String, &Option<RegistryPerson>)> = answers
                .iter()
                .filter_map(|(nik, a)| Some((cache_key(nik).ok()?, a)))
                .collect();
            if let Err(error) = self.cache.put_many(&entries, CACHE_TTL_SECS).await {
                tracing::warn!(%error, "registry cache unavailable");
            }
            found.extend(answers);
        }
        Ok(found)
    }

    /// Assesses many persons at once (a household, a wave), each with their village:
    /// every NIK looked up together, then the candidate searches of all who need them,
    /// as few messages as the registry allows. In the order given.
    ///
    /// Retrieval is in two rounds: the exact searches (birth date in the district, the
    /// name in the regency, name and birth date nationally); then, for whoever they did
    /// not link, the wide ones ([`link::Query::wide`]). Each person is decided on all
    /// the candidates of the rounds they took.
    pub async fn assess_many(
        &self,
        subjects: &[(&pb::Person, &str)],
    ) -> Result<Vec<Assessed>, RegistryError> {
        self.assess(subjects, Schedule::Rounds).await
    }

    /// [`Matcher::assess_many`] on the given [`Schedule`]: the same searches decide
    /// alike on both; only when they are asked differs.
    pub async fn assess(
        &self,
        subjects: &[(&pb::Person, &str)],
        schedule: Schedule,
    ) -> Result<Vec<Assessed>, RegistryError> {
        let niks: Vec<String> = subjects.iter().map(|(p, _)| p.nik.clone()).collect();
        let found = self.lookup(&niks).await?;
        if self.learning.meet(found.values().flatten()) {
            self.learn().await;
        }
        let (model, version) = self.current();
        let mut out = Vec::with_capacity(subjects.len());
        // Those linkage must decide, with the candidates gathered so far.
        let mut open: Vec<(usize, Vec<link::Candidate>)> = Vec::new();
        for (i, (p, village)) in subjects.iter().enumerate() {
            let holder = found.get(&p.nik).and_then(Option::as_ref);
            let (outcome, corrections) = exact(&model, p, village, holder);
            let trusted = matches!(
                outcome,
                PersonOutcome::Matched
                    | PersonOutcome::MatchedWithCorrections
                    | PersonOutcome::Deceased
            );
            out.push(Assessed {
                outcome,
                corrections,
                probability: 0.0,
                nik: trusted.then(|| p.nik.clone()),
                review: None,
                before_linkage: outcome,
                model_version: version.clone(),
                holder: (outcome == PersonOutcome::NikOfAnotherPerson)
                    .then(|| holder.cloned())
                    .flatten(),
                held: false,
            });
            if !trusted {
                // The NIK's own holder is always a candidate: the model, not the
                // retrieval, decides whether it is the person.
                let how = link::Retrieval::holder_of(p);
                open.push((
                    i,
                    link::candidates(&[], Default::default(), holder.map(|h| (h, how))),
                ));
            }
        }
        let regencies: Vec<String> = open
            .iter()
            .filter_map(|(i, _)| subjects[*i].1.get(..5).map(str::to_owned))
            .collect();
        let populations = if regencies.is_empty() {
            HashMap::new()
        } else {
            self.populations.of(&self.registry, &regencies).await?
        };
        // Asked at once: every search of every open person, split by round below.
        let mut asked: HashMap<usize, (Vec<link::Query>, crate::dci::Found)> = HashMap::new();
        if schedule == Schedule::AtOnce && !open.is_empty() {
            let queries: Vec<Vec<link::Query>> = open
                .iter()
                .map(|(i, _)| link::candidate_queries(subjects[*i].0, subjects[*i].1))
                .collect();
            let groups: Vec<Vec<&[serde_json::Value]>> = queries
                .iter()
                .map(|qs| qs.iter().map(|q| q.predicates.as_slice()).collect())
                .collect();
            let searched = self.registry.find_candidates_each(&groups).await?;
            for (((i, _), qs), found) in open.iter().zip(queries).zip(searched) {
                asked.insert(*i, (qs, found));
            }
        }
        for wide in [false, true] {
            let queries: Vec<Vec<link::Query>> = open
                .iter()
                .map(|(i, _)| {
                    let (p, village) = subjects[*i];
                    link::candidate_queries(p, village)
                        .into_iter()
                        .filter(|q| q.wide == wide)
                        .collect()
                })
                .collect();
            let searched = if schedule == Schedule::AtOnce {
                open.iter()
                    .map(|(i, _)| {
                        asked.get(i).map_or_else(Default::default, |(qs, found)| {
                            let keep: Vec<usize> =
                                (0..qs.len()).filter(|q| qs[*q].wide == wide).collect();
                            found.only(&keep)
                        })
                    })
                    .collect()
            } else {
                let groups: Vec<Vec<&[serde_json::Value]>> = queries
                    .iter()
                    .map(|qs| qs.iter().map(|q| q.predicates.as_slice()).collect())
                    .collect();
                self.registry.find_candidates_each(&groups).await?
            };
            let mut still = Vec::new();
            for (((i, mut candidates), qs), found) in open.into_iter().zip(&queries).zip(searched) {
                link::merge(&mut candidates, link::candidates(qs, found, None));
                let (p, village) = subjects[i];
                let person = link::person_record(p, village);
                let population = village.get(..5).and_then(|r| populations.get(r)).copied();
                let decided = link::decide(
                    &model,
                    &person,
                    village,
                    &candidates,
                    Thresholds::default(),
                    population,
                );
                if wide || matches!(decided, Linked::Link { .. }) {
                    settle_linked(&mut out[i], p, village, decided);
                } else {
                    still.push((i, candidates));
                }
            }
            open = still;
        }
        Ok(out)
    }

    /// Assesses every person of a household, (family index, member index) order, but
    /// those `held` already as they are proposed (a CHANGE's household in DTKS: its
    /// members by NIK), who are not asked of the registry again.
    pub async fn assess_household(
        &self,
        household: &pb::Household,
        held: &HashMap<String, Identity>,
    ) -> Result<Vec<Assessed>, RegistryError> {
        let village = household
            .address
            .as_ref()
            .map(|a| a.village_code.as_str())
            .unwrap_or_default();
        let known: Vec<Option<&str>> = persons(household)
            .map(|(_, _, p)| held_as_proposed(held, p, village).then_some(p.nik.as_str()))
            .collect();
        let subjects: Vec<(&pb::Person, &str)> = persons(household)
            .zip(&known)
            .filter(|(_, k)| k.is_none())
            .map(|((_, _, p), _)| (p, village))
            .collect();
        let mut asked = self.assess_many(&subjects).await?.into_iter();
        Ok(known
            .into_iter()
            .filter_map(|k| match k {
                Some(nik) => Some(Assessed::held(nik)),
                None => asked.next(),
            })
            .collect())
    }
}

/// Whether `p` is a member the household holds with the same identity, living, in the
/// same village (a move is asked of the registry: Dukcapil records it or not).
fn held_as_proposed(held: &HashMap<String, Identity>, p: &pb::Person, village: &str) -> bool {
    let Some((name, born, sex, was_in)) = held.get(&p.nik) else {
        return false;
    };
    !p.deceased
        && was_in == village
        && normalise(name) == normalise(&p.full_name)
        && *born == link::date(p.birth_date.as_ref())
        && i32::from(*sex) == p.sex
}

/// What linkage decided, into the person's assessment.
fn settle_linked(assessed: &mut Assessed, p: &pb::Person, village: &str, decided: Linked) {
    match decided {
        Linked::Link {
            person: linked,
            probability,
        } => {
            assessed.corrections = differences(p, village, &linked);
            assessed.probability = probability;
            let holder = linked.nik == p.nik;
            assessed.outcome = if linked.deceased {
                PersonOutcome::Deceased
            } else if assessed.before_linkage == PersonOutcome::NikOfAnotherPerson && !holder {
                // Still the officer's finding; the correction names the person's own NIK.
                PersonOutcome::NikOfAnotherPerson
            } else {
                PersonOutcome::MatchedWithCorrections
            };
            if holder {
                assessed.holder = None;
            }
            assessed.nik = Some(linked.nik);
        }
        Linked::Review {
            person: candidate,
            probability,
            reason,
        } => {
            assessed.outcome = PersonOutcome::InReview;
            assessed.probability = probability;
            assessed.review = Some((candidate, reason));
        }
        Linked::None => {}
    }
}

/// Every person of a household with its (family index, member index).
pub fn persons(h: &pb::Household) -> impl Iterator<Item = (u32, u32, &pb::Person)> {
    h.families.iter().enumerate().flat_map(|(fi, f)| {
        f.members
            .iter()
            .enumerate()
            .map(move |(mi, p)| (fi as u32, mi as u32, p))
    })
}
