//! The Fellegi–Sunter model: m- and u-probabilities per field and level, learned from
//! the data, name agreements weighted by how common the name is, and the thresholds of
//! a decision.

use std::collections::HashMap;

use super::names::NameKey;
use super::record::{FIELDS, Field, LEVELS, NULL, Vector};

/// Counts of comparison vectors: candidate pairs reduce to a few hundred patterns.
pub type Patterns = HashMap<Vector, u64>;

/// Fellegi–Sunter parameters.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Model {
    /// Share of candidate pairs that are matches (the prior).
    pub lambda: f64,
    /// P(level | match), per field and level.
    pub m: [Vec<f64>; 4],
    /// P(level | non-match), per field and level.
    pub u: [Vec<f64>; 4],
    /// How common each name part is in the registry the model was learned from, for
    /// term-frequency adjustments (absent from models learned before them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens: Option<TokenShares>,
}

/// The registry's name parts by frequency (Splink's term-frequency table, for parts):
/// the share of every part common enough to be listed; a part not listed is rarer than
/// `rare`.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TokenShares {
    /// Part → its share of all parts written in the registry.
    pub shares: std::collections::BTreeMap<String, f64>,
    /// The chance that a part of one random person equals a part of another: Σ share²
    /// over every part, listed or not — the u of an agreement on a part, on average.
    pub agreement: f64,
    /// The share under which parts are not listed.
    pub rare: f64,
    /// How many persons the registry held, how many parts a name has on average, and
    /// over how many distinct birth dates the persons were born (absent from models
    /// learned before them): what [`TokenShares::namesakes_born_that_day`] needs.
    #[serde(default)]
    pub persons: u64,
    #[serde(default)]
    pub parts_per_name: f64,
    #[serde(default)]
    pub birth_days: u64,
}

impl TokenShares {
    /// Counts the parts of `names` (canonical tokens, as linkage compares them); lists
    /// those whose share is at least `floor`.
    pub fn learn<'a>(names: impl IntoIterator<Item = &'a NameKey>, floor: f64) -> Self {
        let mut counts: HashMap<&str, u64> = HashMap::new();
        let mut names_seen = 0u64;
        for name in names {
            names_seen += 1;
            for token in &name.tokens {
                *counts.entry(token.as_str()).or_default() += 1;
            }
        }
        Self::from_counts(counts, names_seen, floor)
    }

    /// From how often each part was counted over `names` names; lists those whose share
    /// is at least `floor`.
    pub fn from_counts<K: AsRef<str>>(
        counts: impl IntoIterator<Item = (K, u64)>,
        names: u64,
        floor: f64,
    ) -> Self {
        let counts: Vec<(K, u64)> = counts.into_iter().collect();
        let total: u64 = counts.iter().map(|(_, n)| n).sum();
        let parts_per_name = total as f64 / (names.max(1) as f64);
        let total = total.max(1) as f64;
        let agreement = counts
            .iter()
            .map(|(_, n)| (*n as f64 / total).powi(2))
            .sum();
        let shares = counts
            .into_iter()
            .map(|(t, n)| (t.as_ref().to_owned(), n as f64 / total))
            .filter(|(_, share)| *share >= floor)
            .collect();
        Self {
            shares,
            agreement,
            rare: floor,
            parts_per_name,
            ..Self::default()
        }
    }

    /// With the registry's size and the spread of its birth dates: `persons` names were
    /// counted, born on `birth_days` distinct dates.
    pub fn of_registry(mut self, persons: u64, birth_days: u64) -> Self {
        self.persons = persons;
        self.birth_days = birth_days;
        self
    }

    /// How many registry persons are expected to bear `name` and one given birth date
    /// by chance: the registry's persons, times the name's share (its parts' shares as
    /// if drawn apart, each part as likely in any of a name's places), over the dates
    /// they were born on. Splink's term-frequency adjustment, for the search that holds
    /// a full name and a birth date equal. `None` for a model that does not know the
    /// registry's size.
    pub fn namesakes_born_that_day(&self, name: &NameKey) -> Option<f64> {
        if self.persons == 0 || self.birth_days == 0 || name.tokens.is_empty() {
            return None;
        }
        let per_name = self.parts_per_name.max(1.0);
        let share: f64 = name
            .tokens
            .iter()
            .map(|t| (self.share(t) * per_name).min(1.0))
            .product();
        Some(self.persons as f64 * share / self.birth_days as f64)
    }

    /// A part's share (a part not listed counts as `rare`).
    pub fn share(&self, token: &str) -> f64 {
        self.shares.get(token).copied().unwrap_or(self.rare)
    }

    /// What an agreement on `a` and `b` is worth beyond its level's average, for the
    /// parts that carry it (Splink's term-frequency adjustment, for parts): the rarest
    /// part the two share, held against the average agreement — negative for a common
    /// part ("Siti"), positive for a rare one. `None` when they share no part.
    pub fn part_frequency_bits(&self, a: &NameKey, b: &NameKey) -> Option<f64> {
        let rarest = a
            .tokens
            .iter()
            .filter(|t| b.tokens.contains(t))
            .map(|t| self.share(t))
            .min_by(f64::total_cmp)?;
        Some((self.agreement / rarest.max(1e-12)).log2())
    }
}

const FLOOR: f64 = 1e-6;

fn normalised(counts: &[f64]) -> Vec<f64> {
    let total: f64 = counts.iter().sum::<f64>() + FLOOR * counts.len() as f64;
    counts.iter().map(|c| (c + FLOOR) / total).collect()
}

/// The share of each level of field `f` among `patterns` (missing left out).
fn level_shares(patterns: &Patterns, f: usize) -> Vec<f64> {
    let mut counts = vec![0.0; LEVELS[f].len()];
    for (v, n) in patterns {
        if v[f] != NULL {
            counts[v[f] as usize] += *n as f64;
        }
    }
    normalised(&counts)
}

/// Adds `from`'s counts to `into`.
pub fn merge_patterns(into: &mut Patterns, from: &Patterns) {
    for (v, n) in from {
        *into.entry(*v).or_default() += n;
    }
}

/// The probability that log2 posterior odds `odds` stand for.
pub fn probability_of_odds(odds: f64) -> f64 {
    1.0 / (1.0 + (-odds).exp2())
}

impl Model {
    /// u-probabilities from the comparison vectors of random (overwhelmingly
    /// non-matching) pairs; m starts from a neutral guess.
    pub fn from_random_pairs(random: &Patterns) -> Self {
        let u = std::array::from_fn(|f| level_shares(random, f));
        let m = std::array::from_fn(|f| {
            let levels = LEVELS[f].len();
            // Most weight on the best level, decreasing after it.
            let guess: Vec<f64> = (0..levels).map(|l| 0.5f64.powi(l as i32 * 2 + 1)).collect();
            normalised(&guess)
        });
        Self {
            lambda: 0.01,
            m,
            u,
            tokens: None,
        }
    }

    /// m straight from labelled matches — pairs known to be the same person because
    /// they share a verified identifier — the way the NIK-bearing majority of a batch
    /// teaches how the rest are written. The prior is then fitted by EM on `candidates`.
    pub fn train_from_labels(
        &mut self,
        labelled: &Patterns,
        candidates: &Patterns,
        iterations: usize,
    ) {
        self.m = std::array::from_fn(|f| level_shares(labelled, f));
        self.em_prior(candidates, iterations);
    }

    /// Expectation–maximisation of m (and the prior) with u held.
    ///
    /// `sessions` holds, per blocking rule, its candidate patterns and the fields it
    /// holds equal; a field's m is averaged over the sessions that do not hold it.
    pub fn train(&mut self, sessions: &[(Patterns, &[Field])], iterations: usize) {
        let mut sums: [Vec<f64>; 4] = std::array::from_fn(|f| vec![0.0; LEVELS[f].len()]);
        let mut sessions_per_field = [0usize; 4];
        for (patterns, fixed) in sessions {
            let mut model = self.clone();
            // Within a rule's candidates its fields agree by construction: they are
            // neither evidence nor learned there.
            model.em(patterns, fixed, iterations);
            for f in FIELDS {
                if !fixed.contains(&f) {
                    for (s, m) in sums[f as usize].iter_mut().zip(&model.m[f as usize]) {
                        *s += m;
                    }
                    sessions_per_field[f as usize] += 1;
                }
            }
        }
        for f in 0..4 {
            if sessions_per_field[f] > 0 {
                self.m[f] = normalised(&sums[f]);
            }
        }
        // The prior over all candidate pairs, with m and u now fixed.
        let mut all = Patterns::new();
        for (patterns, _) in sessions {
            merge_patterns(&mut all, patterns);
        }
        self.em_prior(&all, iterations);
    }

    /// EM of the prior alone, every field counted and none learned.
    fn em_prior(&mut self, patterns: &Patterns, iterations: usize) {
        let total: f64 = patterns.values().map(|n| *n as f64).sum();
        for _ in 0..iterations {
            if total == 0.0 {
                return;
            }
            let matched: f64 = patterns
                .iter()
                .map(|(v, n)| self.probability(v) * *n as f64)
                .sum();
            let lambda = (matched / total).clamp(FLOOR, 1.0 - FLOOR);
            let change = (lambda - self.lambda).abs();
            self.lambda = lambda;
            if change < 1e-9 {
                break;
            }
        }
    }

    /// EM of the prior and of m for every field not in `fixed`; the `fixed` fields are
    /// left out of the scores as well.
    fn em(&mut self, patterns: &Patterns, fixed: &[Field], iterations: usize) {
        let total: f64 = patterns.values().map(|n| *n as f64).sum();
        if total == 0.0 {
            return;
        }
        for _ in 0..iterations {
            let mut matched = 0.0;
            let mut counts: [Vec<f64>; 4] = std::array::from_fn(|f| vec![0.0; LEVELS[f].len()]);
            for (v, n) in patterns {
                let mut seen = *v;
                for f in fixed {
                    seen[*f as usize] = NULL;
                }
                let p = self.probability(&seen) * *n as f64;
                matched += p;
                for f in 0..4 {
                    if v[f] != NULL {
                        counts[f][v[f] as usize] += p;
                    }
                }
            }
            let lambda = (matched / total).clamp(FLOOR, 1.0 - FLOOR);
            let mut change = (lambda - self.lambda).abs();
            self.lambda = lambda;
            for f in FIELDS {
                if !fixed.contains(&f) {
                    let m = normalised(&counts[f as usize]);
                    for (old, new) in self.m[f as usize].iter().zip(&m) {
                        change = change.max((old - new).abs());
                    }
                    self.m[f as usize] = m;
                }
            }
            if change < 1e-7 {
                break;
            }
        }
    }

    /// log2 of the Bayes factor of `v`: the sum of the fields' match weights.
    pub fn weight(&self, v: &Vector) -> f64 {
        FIELDS
            .iter()
            .map(|f| self.field_weight(*f, v[*f as usize]))
            .sum()
    }

    /// The match weight of one field at one level.
    pub fn field_weight(&self, f: Field, level: u8) -> f64 {
        if level == NULL {
            return 0.0;
        }
        (self.m[f as usize][level as usize] / self.u[f as usize][level as usize]).log2()
    }

    /// log2 of the posterior odds that `v` is a match: prior odds plus weights.
    pub fn log2_odds(&self, v: &Vector) -> f64 {
        (self.lambda / (1.0 - self.lambda)).log2() + self.weight(v)
    }

    /// Posterior probability that `v` is a match, given the prior.
    pub fn probability(&self, v: &Vector) -> f64 {
        probability_of_odds(self.log2_odds(v))
    }

    /// In words: each field's level and weight, weakest evidence first.
    pub fn explain(&self, v: &Vector) -> String {
        let mut parts: Vec<(f64, String)> = FIELDS
            .iter()
            .map(|f| {
                let level = v[*f as usize];
                let text = if level == NULL {
                    format!("{} missing", f.label())
                } else {
                    format!("{}: {}", f.label(), LEVELS[*f as usize][level as usize])
                };
                (self.field_weight(*f, level), text)
            })
            .collect();
        parts.sort_by(|a, b| a.0.total_cmp(&b.0));
        parts
            .into_iter()
            .map(|(w, t)| format!("{t} ({w:+.1})"))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// A model file's version: the FNV-1a hash of its text (trimmed), sixteen hex digits;
/// matching records it with every result, `dtksctl model` prints it.
pub fn model_version(text: &str) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in text.trim().bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{hash:016x}")
}

/// What a score decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Link,
    /// Neither sure enough to link nor to reject: a clerk decides.
    Review,
    NoLink,
}

/// Probability thresholds: at or above `link` links; at or above `review` goes to a
/// clerk; below is no link.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Thresholds {
    pub link: f64,
    pub review: f64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Self {
            link: 0.95,
            review: 0.5,
        }
    }
}

impl Thresholds {
    pub fn decide(&self, probability: f64) -> Decision {
        if probability >= self.link {
            Decision::Link
        } else if probability >= self.review {
            Decision::Review
        } else {
            Decision::NoLink
        }
    }
}
