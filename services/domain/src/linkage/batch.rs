//! Linking a set of records (the *left*: proposal persons, or persons without a usable
//! NIK) against a larger set (the *right*: the civil registry, or DTKS itself) that is
//! streamed past them once.
//!
//! The left side is indexed by its blocking keys; each right record probes the index
//! and is compared with the left records it shares a block with. The candidate pairs'
//! comparison vectors, counted per blocking rule, train the [`Model`]; then each left
//! record's best candidate is linked, sent to review, or left unlinked.

use std::collections::HashMap;

use super::{
    Decision, Model, Patterns, RULES, Record, Thresholds, Vector, blocking_keys, compare,
    probability_of_odds,
};

/// Blocking keys are already hashes: the index uses them as they are.
#[derive(Default, Clone, Copy)]
pub struct KeyHasher(u64);

impl std::hash::Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }
    fn write_u8(&mut self, rule: u8) {
        self.0 ^= u64::from(rule).rotate_left(56);
    }
    fn write_u64(&mut self, key: u64) {
        self.0 ^= key;
    }
}

type KeyMap<V> = HashMap<(u8, u64), V, std::hash::BuildHasherDefault<KeyHasher>>;

/// The blocking-key filter's largest size: 2^27 bits (16 MiB) keep a few million keys
/// under 3 % of the bits set.
const MAX_FILTER_BITS: u32 = 27;

fn filter_bit((rule, key): &(u8, u64), bits: u32) -> usize {
    // The keys are FNV hashes already; mix in the rule and take the top bits.
    let h = (key ^ u64::from(*rule).rotate_left(56)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    (h >> (64 - bits)) as usize
}

/// The left records, indexed by blocking key: each key's first entry, and per entry
/// the next one in its block (chains in one array rather than a vector per key).
pub struct Linker<'a> {
    left: &'a [Record],
    /// One bit per key hash (about 32 bits a key, at most 2^27): most right rows meet
    /// no left record, and one bit tells so with one memory access instead of a table
    /// probe.
    filter: Vec<u64>,
    filter_bits: u32,
    first: KeyMap<u32>,
    /// (left record, next entry or `u32::MAX`)
    entries: Vec<(u32, u32)>,
}

/// Counts of comparison vectors in a dense table (every level of every field, and
/// missing): counting a pair is one array increment.
#[derive(Debug, Clone)]
pub struct Counts(Vec<u64>);

/// Levels per field, plus one for missing.
const SIZES: [usize; 4] = [
    super::LEVELS[0].len() + 1,
    super::LEVELS[1].len() + 1,
    super::LEVELS[2].len() + 1,
    super::LEVELS[3].len() + 1,
];

impl Default for Counts {
    fn default() -> Self {
        Self(vec![0; SIZES.iter().product()])
    }
}

impl Counts {
    fn slot(v: &Vector) -> usize {
        let mut at = 0;
        for f in 0..4 {
            let level = if v[f] == super::NULL {
                SIZES[f] - 1
            } else {
                v[f] as usize
            };
            at = at * SIZES[f] + level;
        }
        at
    }

    pub fn add(&mut self, v: Vector) {
        self.0[Self::slot(&v)] += 1;
    }

    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }

    fn merge(&mut self, other: &Counts) {
        for (a, b) in self.0.iter_mut().zip(&other.0) {
            *a += b;
        }
    }

    /// The non-zero counts by vector.
    pub fn patterns(&self) -> Patterns {
        let mut out = Patterns::new();
        for (at, n) in self.0.iter().enumerate().filter(|(_, n)| **n > 0) {
            let mut rest = at;
            let mut v = [0u8; 4];
            for f in (0..4).rev() {
                let level = rest % SIZES[f];
                rest /= SIZES[f];
                v[f] = if level == SIZES[f] - 1 {
                    super::NULL
                } else {
                    level as u8
                };
            }
            out.insert(v, *n);
        }
        out
    }
}

/// Candidate pairs found so far, and their patterns per blocking rule.
#[derive(Debug, Default, Clone)]
pub struct Candidates {
    /// (left, right, vector), each distinct pair once.
    pub pairs: Vec<(u32, u32, Vector)>,
    /// Per blocking rule, the vectors of the pairs it found.
    pub sessions: [Counts; RULES.len()],
    /// Vectors of distinct pairs that share a label (known matches).
    pub labelled: Counts,
    /// Vectors of distinct pairs (a pair found by several rules counts once).
    pub distinct: Counts,
}

/// Labelled matches needed before m is learned from them rather than by EM.
pub const MIN_LABELLED: u64 = 200;

impl Candidates {
    pub fn merge(&mut self, other: Candidates) {
        self.pairs.extend(other.pairs);
        self.labelled.merge(&other.labelled);
        self.distinct.merge(&other.distinct);
        for (mine, theirs) in self.sessions.iter_mut().zip(&other.sessions) {
            mine.merge(theirs);
        }
    }

    /// Trains a model: u from `random` pairs; m from the labelled matches when there
    /// are at least [`MIN_LABELLED`], else by EM over the candidates of each rule.
    pub fn train(&self, random: &Patterns, iterations: usize) -> Model {
        let mut model = Model::from_random_pairs(random);
        if self.labelled.total() >= MIN_LABELLED {
            model.train_from_labels(
                &self.labelled.patterns(),
                &self.distinct.patterns(),
                iterations,
            );
            return model;
        }
        let sessions: Vec<(Patterns, &[super::Field])> = self
            .sessions
            .iter()
            .map(Counts::patterns)
            .zip(RULES.iter().map(|r| r.1))
            .collect();
        model.train(&sessions, iterations);
        model
    }
}

impl<'a> Linker<'a> {
    pub fn new(left: &'a [Record]) -> Self {
        let mut first = KeyMap::with_capacity_and_hasher(left.len() * 3, Default::default());
        let mut entries = Vec::with_capacity(left.len() * 3);
        for (i, r) in left.iter().enumerate() {
            for key in blocking_keys(r).iter() {
                let entry = entries.len() as u32;
                let next = first.insert(*key, entry).unwrap_or(u32::MAX);
                entries.push((i as u32, next));
            }
        }
        let filter_bits = (first.len() * 32)
            .next_power_of_two()
            .clamp(1 << 12, 1 << MAX_FILTER_BITS)
            .trailing_zeros();
        let mut filter = vec![0u64; 1 << (filter_bits - 6)];
        for key in first.keys() {
            let bit = filter_bit(key, filter_bits);
            filter[bit >> 6] |= 1 << (bit & 63);
        }
        Self {
            left,
            filter,
            filter_bits,
            first,
            entries,
        }
    }

    fn block(&self, key: &(u8, u64)) -> impl Iterator<Item = u32> + '_ {
        let mut at = self.first.get(key).copied().unwrap_or(u32::MAX);
        std::iter::from_fn(move || {
            let (left, next) = *self.entries.get(at as usize)?;
            at = next;
            Some(left)
        })
    }

    /// Whether any of `keys` (from [`super::keys_of`]) meets a left record: the cheap
    /// test before a right row is turned into a [`Record`] and probed.
    pub fn meets(&self, keys: &[(u8, u64)]) -> bool {
        keys.iter().any(|k| {
            let bit = filter_bit(k, self.filter_bits);
            self.filter[bit >> 6] & (1 << (bit & 63)) != 0 && self.first.contains_key(k)
        })
    }

    /// Compares `right` (number `id` on its side) with every left record that shares a
    /// block with it.
    pub fn probe(&self, id: u32, right: &Record, out: &mut Candidates) {
        self.probe_keys(id, right, &blocking_keys(right), out);
    }

    /// As [`Linker::probe`], with `right`'s blocking keys already at hand.
    pub fn probe_keys(&self, id: u32, right: &Record, keys: &[(u8, u64)], out: &mut Candidates) {
        let first = out.pairs.len();
        for key in keys {
            for l in self.block(key) {
                // A pair another rule found already counts for this rule too, once.
                if let Some(seen) = out.pairs[first..].iter().find(|p| p.0 == l) {
                    out.sessions[key.0 as usize].add(seen.2);
                    continue;
                }
                let left = &self.left[l as usize];
                let v = compare(left, right);
                out.sessions[key.0 as usize].add(v);
                out.pairs.push((l, id, v));
                out.distinct.add(v);
                if left.label.is_some() && left.label == right.label {
                    out.labelled.add(v);
                }
            }
        }
    }
}

/// Comparison vectors of `pairs` pseudo-random pairs of `sample` (for u), counted on
/// `threads` threads.
pub fn random_patterns(sample: &[Record], pairs: usize, seed: u64, threads: usize) -> Patterns {
    let threads = threads.max(1);
    if sample.len() < 2 {
        return Patterns::new();
    }
    let parts: Vec<Counts> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                s.spawn(move || {
                    let mut state = (seed ^ (t as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)) | 1;
                    let mut next = move || {
                        // xorshift64*
                        state ^= state >> 12;
                        state ^= state << 25;
                        state ^= state >> 27;
                        state.wrapping_mul(0x2545_F491_4F6C_DD1D)
                    };
                    let n = sample.len() as u64;
                    let mut counts = Counts::default();
                    for _ in 0..pairs / threads {
                        let (a, b) = ((next() % n) as usize, (next() % n) as usize);
                        if a != b {
                            counts.add(compare(&sample[a], &sample[b]));
                        }
                    }
                    counts
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("sampling thread"))
            .collect()
    });
    let mut all = Counts::default();
    for part in &parts {
        all.merge(part);
    }
    all.patterns()
}

/// The outcome for one left record.
#[derive(Debug, Clone, PartialEq)]
pub struct Linked {
    /// The best right record, if any candidate was found.
    pub candidate: Option<u32>,
    pub probability: f64,
    pub vector: Vector,
    pub decision: Decision,
    /// Another candidate as likely as the link threshold: the record is reviewed.
    pub ambiguous: bool,
}

/// A runner-up this many bits (log2 odds) short of the best candidate still makes the
/// choice between them uncertain; further behind, the best is clearly the one.
pub const AMBIGUITY_BITS: f64 = 4.0;

/// Each left record's best candidate and what the thresholds decide for it. A second
/// candidate that clears the link threshold and is within [`AMBIGUITY_BITS`] of the
/// best sends the record to review instead of a link.
pub fn decide(
    left_len: usize,
    candidates: &Candidates,
    model: &Model,
    thresholds: Thresholds,
) -> Vec<Linked> {
    let mut odds: HashMap<Vector, f64> = HashMap::new();
    // (best right, best log2 odds, best vector, runner-up log2 odds)
    let mut best: Vec<(Option<u32>, f64, Vector, f64)> =
        vec![(None, f64::NEG_INFINITY, [super::NULL; 4], f64::NEG_INFINITY); left_len];
    for &(l, r, v) in &candidates.pairs {
        let o = *odds.entry(v).or_insert_with(|| model.log2_odds(&v));
        // Pairs are distinct (see `Candidates::pairs`).
        let slot = &mut best[l as usize];
        if slot.0.is_none() || o > slot.1 {
            let runner_up = slot.1.max(slot.3);
            *slot = (Some(r), o, v, runner_up);
        } else {
            slot.3 = slot.3.max(o);
        }
    }
    let link_odds = (thresholds.link / (1.0 - thresholds.link)).log2();
    best.into_iter()
        .map(|(candidate, o, vector, runner_up)| {
            let ambiguous =
                candidate.is_some() && runner_up >= link_odds && o - runner_up < AMBIGUITY_BITS;
            let probability = if candidate.is_some() {
                probability_of_odds(o)
            } else {
                0.0
            };
            let decision = match (candidate, ambiguous) {
                (None, _) => Decision::NoLink,
                (Some(_), true) => Decision::Review,
                (Some(_), false) => thresholds.decide(probability),
            };
            Linked {
                candidate,
                probability,
                vector,
                decision,
                ambiguous,
            }
        })
        .collect()
}
