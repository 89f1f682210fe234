//! Probabilistic record linkage (*pemadanan probabilistik*) in the Fellegi–Sunter
//! tradition, for persons whose NIK is missing or does not match.
//!
//! - [`Record`]: the identifying fields of one person, names reduced by [`names`].
//! - [`compare`]: a comparison vector — one agreement level per field, [`NULL`] where a
//!   side lacks the field.
//! - [`blocking_keys`]: several blocking rules; two records are candidates when they
//!   share any key.
//! - [`Model`]: m- and u-probabilities per level. u is estimated from random pairs, m by
//!   expectation–maximisation over the candidate pairs of each blocking rule (fields a
//!   rule holds equal are not learned from that rule), so the weights come from the data.
//! - [`Thresholds`]: a link, a clerical review (with a reason), or no link.

pub mod batch;
pub mod names;

use std::collections::HashMap;

use chrono::{Datelike, NaiveDate};

pub use names::{NameKey, jaro_winkler};

/// The fields compared, in vector order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    Name = 0,
    BirthDate = 1,
    Sex = 2,
    Region = 3,
}

pub const FIELDS: [Field; 4] = [Field::Name, Field::BirthDate, Field::Sex, Field::Region];

/// The agreement levels of each field, best first.
pub const LEVELS: [&[&str]; 4] = [
    &[
        "exact",
        "same spelling variant",
        "same parts in another order",
        "close spelling",
        "one name contains the other",
        "different",
    ],
    &[
        "exact",
        "one-digit typo or day/month swapped",
        "within 13 months",
        "different",
    ],
    &["same", "different"],
    &[
        "same village",
        "same district",
        "same regency",
        "different regency",
    ],
];

impl Field {
    pub fn label(self) -> &'static str {
        match self {
            Field::Name => "name",
            Field::BirthDate => "birth date",
            Field::Sex => "sex",
            Field::Region => "region",
        }
    }
}

/// A field missing on either side.
pub const NULL: u8 = u8::MAX;

/// One agreement level per field of [`FIELDS`].
pub type Vector = [u8; 4];

/// The identifying fields of one person.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Record {
    /// Shared: one spelling reduced once serves every record that carries it.
    pub name: std::sync::Arc<NameKey>,
    pub birth_date: Option<NaiveDate>,
    /// 1 male, 2 female.
    pub sex: Option<u8>,
    /// Village code, `PP.RR.DD.VVVV`, held in the record itself: comparing millions of
    /// pairs then reads no memory elsewhere for it.
    pub village: Option<Village>,
    /// An identifier (the NIK) where one is known to be right: pairs that share it are
    /// labelled matches, from which m can be learned directly. Never compared.
    pub label: Option<String>,
}

impl Record {
    pub fn new(
        name: &str,
        birth_date: Option<NaiveDate>,
        sex: Option<u8>,
        village: Option<&str>,
    ) -> Self {
        Self::with_name(
            std::sync::Arc::new(NameKey::new(name)),
            birth_date,
            sex,
            village,
        )
    }

    /// As [`Record::new`], with the name already reduced.
    pub fn with_name(
        name: std::sync::Arc<NameKey>,
        birth_date: Option<NaiveDate>,
        sex: Option<u8>,
        village: Option<&str>,
    ) -> Self {
        Self {
            name,
            birth_date,
            sex: sex.filter(|s| matches!(s, 1 | 2)),
            village: village.filter(|v| !v.is_empty()).map(Village::new),
            label: None,
        }
    }

    /// The same record carrying `label`.
    pub fn labelled(mut self, label: Option<&str>) -> Self {
        self.label = label.filter(|l| !l.is_empty()).map(str::to_owned);
        self
    }
}

/// A village code of at most [`Village::MAX`] bytes (a valid one has 13), held inline;
/// a longer text keeps its first bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Village {
    bytes: [u8; Village::MAX],
    len: u8,
}

impl Village {
    pub const MAX: usize = 16;

    pub fn new(code: &str) -> Self {
        let code = &code[..code.floor_char_boundary(Self::MAX)];
        let mut bytes = [0u8; Self::MAX];
        bytes[..code.len()].copy_from_slice(code.as_bytes());
        Self {
            bytes,
            len: code.len() as u8,
        }
    }
}

impl std::ops::Deref for Village {
    type Target = str;
    fn deref(&self) -> &str {
        std::str::from_utf8(&self.bytes[..usize::from(self.len)]).unwrap_or_default()
    }
}

impl std::fmt::Debug for Village {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&**self, f)
    }
}

/// Compares two records field by field.
pub fn compare(a: &Record, b: &Record) -> Vector {
    [
        if std::sync::Arc::ptr_eq(&a.name, &b.name) && !a.name.is_empty() {
            0
        } else {
            compare_names(&a.name, &b.name)
        },
        match (a.birth_date, b.birth_date) {
            (Some(x), Some(y)) => compare_dates(x, y),
            _ => NULL,
        },
        match (a.sex, b.sex) {
            (Some(x), Some(y)) => u8::from(x != y),
            _ => NULL,
        },
        match (&a.village, &b.village) {
            (Some(x), Some(y)) => compare_regions(
                &x.bytes[..usize::from(x.len)],
                &y.bytes[..usize::from(y.len)],
            ),
            _ => NULL,
        },
    ]
}

fn compare_names(a: &NameKey, b: &NameKey) -> u8 {
    if a.is_empty() || b.is_empty() {
        return NULL;
    }
    if a.same_tokens(b) {
        return 0;
    }
    if a.same_phonetic(b) {
        return 1;
    }
    if a.same_parts(b) {
        return 2;
    }
    let (ja, jb) = (a.phonetic_joined(), b.phonetic_joined());
    let (sa, sb) = (a.phonetic_sorted(), b.phonetic_sorted());
    let close = jaro_winkler(ja, jb);
    if close >= 0.92 || jaro_winkler(sa, sb) >= 0.92 {
        return 3;
    }
    let (short, long) = if a.phonetic.len() <= b.phonetic.len() {
        (a, b)
    } else {
        (b, a)
    };
    let contained = short.parts_within(long);
    if contained || close >= 0.80 {
        return 4;
    }
    5
}

fn compare_dates(a: NaiveDate, b: NaiveDate) -> u8 {
    if a == b {
        return 0;
    }
    // The eight digits of YYYYMMDD, without formatting.
    let digits = |d: NaiveDate| {
        let n = d.year().rem_euclid(10_000) as u32 * 10_000 + d.month() * 100 + d.day();
        let mut out = [0u8; 8];
        let mut rest = n;
        for slot in out.iter_mut().rev() {
            *slot = (rest % 10) as u8;
            rest /= 10;
        }
        out
    };
    let (x, y) = (digits(a), digits(b));
    let mut differing = [0usize; 8];
    let mut count = 0;
    for i in 0..8 {
        if x[i] != y[i] {
            differing[count] = i;
            count += 1;
        }
    }
    let one_digit = count == 1;
    let adjacent_swap = count == 2
        && differing[1] == differing[0] + 1
        && x[differing[0]] == y[differing[1]]
        && x[differing[1]] == y[differing[0]];
    let day_month_swapped = a.year() == b.year() && a.month() == b.day() && a.day() == b.month();
    if one_digit || adjacent_swap || day_month_swapped {
        return 1;
    }
    if (a - b).num_days().abs() <= 400 {
        return 2;
    }
    3
}

fn compare_regions(a: &[u8], b: &[u8]) -> u8 {
    // The shared prefix, byte by byte: codes are a dozen bytes, too short for memcmp.
    let common = a.iter().zip(b).take_while(|(x, y)| x == y).count();
    if common == a.len() && common == b.len() {
        0
    } else if common >= 8 {
        1
    } else if common >= 5 {
        2
    } else {
        3
    }
}

/// The blocking rules, and the fields each holds equal or nearly so (a field a rule
/// constrains even in part is skewed among its candidates, so that rule neither counts
/// nor learns it). Any one departure — a misspelt name, a corrected birth date, a move —
/// leaves at least one rule that still brings the pair together.
pub const RULES: [(&str, &[Field]); 3] = [
    (
        "birth date, sex and district",
        &[Field::BirthDate, Field::Sex, Field::Region],
    ),
    (
        "name parts in any order, sex and village",
        &[Field::Name, Field::Sex, Field::Region],
    ),
    (
        "name parts in any order and birth date",
        &[Field::Name, Field::BirthDate],
    ),
];

/// The blocking keys of a record: `(rule, key)` for every rule the record has the
/// fields for. Two records are candidates when they share a `(rule, key)`.
pub fn blocking_keys(r: &Record) -> Keys {
    keys_of(&r.name, r.birth_date, r.sex, r.village.as_deref())
}

/// Up to one key per rule, without allocating.
#[derive(Debug, Clone, Copy, Default)]
pub struct Keys {
    keys: [(u8, u64); RULES.len()],
    len: usize,
}

impl Keys {
    fn push(&mut self, key: (u8, u64)) {
        self.keys[self.len] = key;
        self.len += 1;
    }
}

impl std::ops::Deref for Keys {
    type Target = [(u8, u64)];
    fn deref(&self) -> &[(u8, u64)] {
        &self.keys[..self.len]
    }
}

/// A 64-bit hash of `parts` from `seed`, eight bytes at a time (a blocking key is
/// computed for every row of a registry of millions): each part's last word carries its
/// length, so that parts cut differently hash differently; SplitMix64's finaliser
/// spreads every input bit over the high bits the index and its filter use.
fn key_hash(seed: u64, parts: &[&[u8]]) -> u64 {
    const K: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut h = seed.wrapping_mul(K) ^ 0x243f_6a88_85a3_08d3;
    for part in parts {
        let mut words = part.chunks_exact(8);
        for w in &mut words {
            let mut word = [0u8; 8];
            word.copy_from_slice(w);
            h = (h ^ u64::from_le_bytes(word))
                .wrapping_mul(K)
                .rotate_left(29);
        }
        let rest = words.remainder();
        let mut last = [0u8; 8];
        last[..rest.len()].copy_from_slice(rest);
        let tail = u64::from_le_bytes(last) ^ ((part.len() as u64) << 56);
        h = (h ^ tail).wrapping_mul(K).rotate_left(29);
    }
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// [`blocking_keys`] from the raw fields: lets a large side be probed without building
/// a [`Record`] for every row. The name enters by its sorted-parts fingerprint.
pub fn keys_of(
    name: &NameKey,
    birth_date: Option<NaiveDate>,
    sex: Option<u8>,
    village: Option<&str>,
) -> Keys {
    let hash = |rule: u8, parts: &[&[u8]]| (rule, key_hash(u64::from(rule), parts));
    let mut keys = Keys::default();
    let district = village.and_then(|v| v.get(..8)).map(str::as_bytes);
    let born = birth_date
        .map(|d| (d.year() * 10_000 + d.month() as i32 * 100 + d.day() as i32).to_le_bytes());
    let parts = (!name.is_empty()).then(|| name.parts_fingerprint().to_le_bytes());
    if let (Some(d), Some(s), Some(dist)) = (&born, sex, district) {
        keys.push(hash(0, &[d, &[s], dist]));
    }
    if let (Some(n), Some(s), Some(v)) = (&parts, sex, village) {
        keys.push(hash(1, &[n, &[s], v.as_bytes()]));
    }
    if let (Some(n), Some(d)) = (&parts, &born) {
        keys.push(hash(2, &[n, d]));
    }
    keys
}

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
}

impl TokenShares {
    /// Counts the parts of `names` (canonical tokens, as linkage compares them); lists
    /// those whose share is at least `floor`.
    pub fn learn<'a>(names: impl IntoIterator<Item = &'a NameKey>, floor: f64) -> Self {
        let mut counts: HashMap<&str, u64> = HashMap::new();
        let mut total = 0u64;
        for name in names {
            for token in &name.tokens {
                *counts.entry(token.as_str()).or_default() += 1;
                total += 1;
            }
        }
        let total = total.max(1) as f64;
        let agreement = counts.values().map(|&n| (n as f64 / total).powi(2)).sum();
        let shares = counts
            .into_iter()
            .map(|(t, n)| (t.to_owned(), n as f64 / total))
            .filter(|(_, share)| *share >= floor)
            .collect();
        Self {
            shares,
            agreement,
            rare: floor,
        }
    }

    /// A part's share (a part not listed counts as `rare`).
    pub fn share(&self, token: &str) -> f64 {
        self.shares.get(token).copied().unwrap_or(self.rare)
    }

    /// The bits an agreement on `a` and `b` loses for being carried by common parts: the
    /// rarest part the two share, held against the average agreement, never more than
    /// zero (a rare part adds nothing beyond the level's own weight). `None` when they
    /// share no part.
    pub fn common_part_bits(&self, a: &NameKey, b: &NameKey) -> Option<f64> {
        let rarest = a
            .tokens
            .iter()
            .filter(|t| b.tokens.contains(t))
            .map(|t| self.share(t))
            .min_by(f64::total_cmp)?;
        Some((self.agreement / rarest.max(1e-12)).log2().min(0.0))
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

#[cfg(test)]
mod tests;
