//! Linking a set of records (the *left*: proposal persons, or persons without a usable
//! NIK) against a larger set (the *right*: the civil registry, or DTKS itself) that is
//! streamed past them once.
//!
//! The left side is indexed by its blocking keys; each right record probes the index
//! and is compared with the left records it shares a block with. The candidate pairs'
//! comparison vectors, counted per blocking rule, train the [`Model`]; then each left
//! record's best candidate is linked, sent to review, or left unlinked.

use std::collections::HashMap;

use super::{Decision, Model, Patterns, RULES, Record, Thresholds, Vector, blocking_keys, compare};

/// The left records, indexed by blocking key.
pub struct Linker<'a> {
    left: &'a [Record],
    index: HashMap<(u8, u64), Vec<u32>>,
}

/// Candidate pairs found so far, and their patterns per blocking rule.
#[derive(Debug, Default, Clone)]
pub struct Candidates {
    /// (left, right, vector), each distinct pair once.
    pub pairs: Vec<(u32, u32, Vector)>,
    pub sessions: [Patterns; RULES.len()],
    /// Vectors of distinct pairs that share a label (known matches).
    pub labelled: Patterns,
    /// Vectors of distinct pairs (a pair found by several rules counts once).
    pub distinct: Patterns,
}

/// Labelled matches needed before m is learned from them rather than by EM.
pub const MIN_LABELLED: u64 = 200;

impl Candidates {
    pub fn merge(&mut self, other: Candidates) {
        self.pairs.extend(other.pairs);
        for (mine, theirs) in [
            (&mut self.labelled, other.labelled),
            (&mut self.distinct, other.distinct),
        ] {
            for (v, n) in theirs {
                *mine.entry(v).or_default() += n;
            }
        }
        for (mine, theirs) in self.sessions.iter_mut().zip(other.sessions) {
            for (v, n) in theirs {
                *mine.entry(v).or_default() += n;
            }
        }
    }

    /// Trains a model: u from `random` pairs; m from the labelled matches when there
    /// are at least [`MIN_LABELLED`], else by EM over the candidates of each rule.
    pub fn train(&self, random: &Patterns, iterations: usize) -> Model {
        let mut model = Model::from_random_pairs(random);
        if self.labelled.values().sum::<u64>() >= MIN_LABELLED {
            model.train_from_labels(&self.labelled, &self.distinct, iterations);
            return model;
        }
        let sessions: Vec<(Patterns, &[super::Field])> = self
            .sessions
            .iter()
            .cloned()
            .zip(RULES.iter().map(|r| r.1))
            .collect();
        model.train(&sessions, iterations);
        model
    }
}

impl<'a> Linker<'a> {
    pub fn new(left: &'a [Record]) -> Self {
        let mut index: HashMap<(u8, u64), Vec<u32>> = HashMap::with_capacity(left.len() * 3);
        for (i, r) in left.iter().enumerate() {
            for key in blocking_keys(r) {
                index.entry(key).or_default().push(i as u32);
            }
        }
        Self { left, index }
    }

    /// Compares `right` (number `id` on its side) with every left record that shares a
    /// block with it.
    pub fn probe(&self, id: u32, right: &Record, out: &mut Candidates) {
        let first = out.pairs.len();
        for key in blocking_keys(right) {
            if let Some(block) = self.index.get(&key) {
                for &l in block {
                    let left = &self.left[l as usize];
                    let v = compare(left, right);
                    *out.sessions[key.0 as usize].entry(v).or_default() += 1;
                    // Each distinct pair once, whichever rules found it.
                    if out.pairs[first..].iter().any(|p| p.0 == l) {
                        continue;
                    }
                    out.pairs.push((l, id, v));
                    *out.distinct.entry(v).or_default() += 1;
                    if left.label.is_some() && left.label == right.label {
                        *out.labelled.entry(v).or_default() += 1;
                    }
                }
            }
        }
    }
}

/// Comparison vectors of `pairs` pseudo-random pairs of `sample` (for u).
pub fn random_patterns(sample: &[Record], pairs: usize, seed: u64) -> Patterns {
    let mut state = seed | 1;
    let mut next = move || {
        // xorshift64*
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        state.wrapping_mul(0x2545_F491_4F6C_DD1D)
    };
    let mut patterns = Patterns::new();
    if sample.len() < 2 {
        return patterns;
    }
    let n = sample.len() as u64;
    for _ in 0..pairs {
        let (a, b) = ((next() % n) as usize, (next() % n) as usize);
        if a != b {
            *patterns.entry(compare(&sample[a], &sample[b])).or_default() += 1;
        }
    }
    patterns
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
        let slot = &mut best[l as usize];
        if slot.0 == Some(r) {
            continue;
        }
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
                1.0 / (1.0 + (-o).exp2())
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
