//! Linking a set of records (the *left*: proposal persons, or persons without a usable
//! NIK) against a larger set (the *right*: the civil registry, or DTKS itself) that is
//! streamed past them once.
//!
//! The left side is indexed by its blocking keys; each right record probes the index
//! and is compared with the left records it shares a block with. The candidate pairs'
//! comparison vectors, counted per blocking rule, train the [`Model`]; then each left
//! record's best candidate is linked, sent to review, or left unlinked.

use super::{
    Decision, Keys, Model, Patterns, RULES, Record, Thresholds, Vector, blocking_keys, compare,
    probability_of_odds,
};

/// A blocking key as one word: the keys are FNV hashes already, seeded by their rule;
/// the rule is mixed in once more, and 0 marks an empty slot of [`Blocks`].
fn word((rule, key): &(u8, u64)) -> u64 {
    (key ^ u64::from(*rule).rotate_left(56)).max(1)
}

/// Open addressing from a blocking key to its block: one slot holds the key and where
/// its left records lie in [`Linker`]'s `members`, so a lookup is one memory read (four
/// slots to a cache line, and most keys sit in their home slot).
struct Blocks {
    /// (key word, block); word 0 is an empty slot.
    slots: Vec<(u64, Block)>,
    shift: u32,
    len: usize,
}

impl Blocks {
    fn with_capacity(keys: usize) -> Self {
        let bits = (keys * 2).next_power_of_two().max(16).trailing_zeros();
        Self {
            slots: vec![(0, Block::NONE); 1 << bits],
            shift: 64 - bits,
            len: 0,
        }
    }

    fn home(&self, w: u64) -> usize {
        (w.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> self.shift) as usize
    }

    /// The block of `w`, searched from `at`.
    fn find(&self, w: u64, mut at: usize) -> Block {
        let mask = self.slots.len() - 1;
        loop {
            match self.slots[at] {
                (0, _) => return Block::NONE,
                (k, block) if k == w => return block,
                _ => at = (at + 1) & mask,
            }
        }
    }

    fn get(&self, key: &(u8, u64)) -> Block {
        let w = word(key);
        self.find(w, self.home(w))
    }

    /// Puts a key that is not in the table yet.
    fn insert(&mut self, w: u64, block: Block) {
        let mask = self.slots.len() - 1;
        let mut at = self.home(w);
        while self.slots[at].0 != 0 {
            at = (at + 1) & mask;
        }
        self.slots[at] = (w, block);
        self.len += 1;
    }

    fn keys(&self) -> impl Iterator<Item = u64> + '_ {
        self.slots.iter().map(|s| s.0).filter(|w| *w != 0)
    }
}

/// The blocking-key filter's largest size: 2^27 bits (16 MiB) keep a few million keys
/// under 3 % of the bits set.
const MAX_FILTER_BITS: u32 = 27;

fn filter_bit(w: u64, bits: u32) -> usize {
    // Other bits of the word than the table's home slot takes.
    (w.wrapping_mul(0xc2b2_ae3d_27d4_eb4f) >> (64 - bits)) as usize
}

/// The left records, indexed by blocking key: each key's block is a run of `members`
/// (the records' numbers, in record order), found through a table of [`Blocks`].
pub struct Linker<'a> {
    left: &'a [Record],
    /// One bit per key hash (about 32 bits a key, at most 2^27): most right rows meet
    /// no left record, and one bit tells so with one memory access instead of a table
    /// probe.
    filter: Vec<u64>,
    filter_bits: u32,
    first: Blocks,
    members: Vec<u32>,
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
        // Every (key, record), the keys computed on two threads; then grouped by key
        // in the order of their home slots, so that the table is written front to
        // back, each key's records staying in record order.
        let half = left.len().div_ceil(2).max(1);
        let keyed: Vec<Vec<(u64, u32)>> = std::thread::scope(|s| {
            let handles: Vec<_> = left
                .chunks(half)
                .enumerate()
                .map(|(c, chunk)| {
                    s.spawn(move || {
                        let mut out = Vec::with_capacity(chunk.len() * RULES.len());
                        for (i, r) in chunk.iter().enumerate() {
                            for key in blocking_keys(r).iter() {
                                out.push((word(key), (c * half + i) as u32));
                            }
                        }
                        out
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("indexing thread"))
                .collect()
        });
        let mut keyed = keyed.concat();
        let mut first = Blocks::with_capacity(keyed.len());
        keyed.sort_unstable_by_key(|&(w, record)| (first.home(w), w, record));
        let mut members = Vec::with_capacity(keyed.len());
        for group in keyed.chunk_by(|a, b| a.0 == b.0) {
            // A block of one record (most keys that hold a name) holds it itself.
            let block = match group {
                [(_, record)] => Block {
                    start: *record,
                    len: 1,
                },
                _ => {
                    let start = members.len() as u32;
                    members.extend(group.iter().map(|(_, record)| *record));
                    Block {
                        start,
                        len: group.len() as u32,
                    }
                }
            };
            first.insert(group[0].0, block);
        }
        let filter_bits = (first.len * 32)
            .next_power_of_two()
            .clamp(1 << 12, 1 << MAX_FILTER_BITS)
            .trailing_zeros();
        let mut filter = vec![0u64; 1 << (filter_bits - 6)];
        for w in first.keys() {
            let bit = filter_bit(w, filter_bits);
            filter[bit >> 6] |= 1 << (bit & 63);
        }
        Self {
            left,
            filter,
            filter_bits,
            first,
            members,
        }
    }

    /// The left records of a block, the latest record first (the order pairs are
    /// found in decides ties between equally likely candidates).
    fn block(&self, block: Block) -> impl Iterator<Item = u32> + '_ {
        let (single, run) = match block.len {
            0 => (None, &[][..]),
            1 => (Some(block.start), &[][..]),
            len => (
                None,
                &self.members[block.start as usize..(block.start + len) as usize],
            ),
        };
        single.into_iter().chain(run.iter().rev().copied())
    }

    fn filter_has(&self, key: &(u8, u64)) -> bool {
        let bit = filter_bit(word(key), self.filter_bits);
        self.filter[bit >> 6] & (1 << (bit & 63)) != 0
    }

    /// The block of each of `keys` ([`Block::NONE`] where no left record has the key).
    pub fn heads(&self, keys: &[(u8, u64)]) -> Heads {
        let mut heads = [Block::NONE; RULES.len()];
        for (head, key) in heads.iter_mut().zip(keys) {
            if self.filter_has(key) {
                *head = self.first.get(key);
            }
        }
        heads
    }

    /// [`Linker::heads`] for many rows at once, in stages: every key's filter word is
    /// read, then the home slot of every key the filter lets through, and only then is
    /// anything tested, so that the memory reads of a stage overlap instead of waiting
    /// one by one (most rows of a large right side meet no left record).
    pub fn heads_of_many(&self, rows: &[Keys], out: &mut Vec<Heads>) {
        const CHUNK: usize = 64;
        const K: usize = RULES.len();
        out.clear();
        let mut words = [[0u64; K]; CHUNK];
        let mut filtered = [[0u64; K]; CHUNK];
        let mut homes = [[(0u64, Block::NONE); K]; CHUNK];
        for chunk in rows.chunks(CHUNK) {
            for (w, keys) in words.iter_mut().zip(chunk) {
                for (slot, key) in w.iter_mut().zip(keys.iter()) {
                    *slot = word(key);
                }
            }
            for ((f, w), keys) in filtered.iter_mut().zip(&words).zip(chunk) {
                for (k, slot) in f.iter_mut().enumerate().take(keys.len()) {
                    *slot = self.filter[filter_bit(w[k], self.filter_bits) >> 6];
                }
            }
            for (((h, w), f), keys) in homes.iter_mut().zip(&words).zip(&filtered).zip(chunk) {
                for k in 0..keys.len() {
                    let bit = filter_bit(w[k], self.filter_bits);
                    h[k] = if f[k] & (1 << (bit & 63)) != 0 {
                        self.first.slots[self.first.home(w[k])]
                    } else {
                        (0, Block::NONE)
                    };
                }
            }
            for ((h, w), keys) in homes.iter().zip(&words).zip(chunk) {
                let mut heads = [Block::NONE; K];
                for k in 0..keys.len() {
                    heads[k] = match h[k] {
                        (0, _) => Block::NONE,
                        (home, head) if home == w[k] => head,
                        _ => self.first.get(&keys[k]),
                    };
                }
                out.push(heads);
            }
        }
    }

    /// Whether any of `keys` (from [`super::keys_of`]) meets a left record: the cheap
    /// test before a right row is turned into a [`Record`] and probed.
    pub fn meets(&self, keys: &[(u8, u64)]) -> bool {
        meets(&self.heads(keys))
    }

    /// Compares `right` (number `id` on its side) with every left record that shares a
    /// block with it.
    pub fn probe(&self, id: u32, right: &Record, out: &mut Candidates) {
        let keys = blocking_keys(right);
        self.probe_heads(id, right, &keys, &self.heads(&keys), out);
    }

    /// As [`Linker::probe`], with `right`'s blocking keys and their [`Linker::heads`]
    /// already at hand.
    pub fn probe_heads(
        &self,
        id: u32,
        right: &Record,
        keys: &[(u8, u64)],
        heads: &Heads,
        out: &mut Candidates,
    ) {
        let first = out.pairs.len();
        for (key, head) in keys.iter().zip(heads) {
            for l in self.block(*head) {
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

/// Where a block's left records are: a run of `members`, or for a block of one the
/// record itself (`start`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Block {
    start: u32,
    len: u32,
}

impl Block {
    /// No left record has the key.
    pub const NONE: Block = Block { start: 0, len: 0 };
}

/// A row's blocks, one per key ([`Block::NONE`] for none).
pub type Heads = [Block; RULES.len()];

/// Whether any of the heads holds a left record.
pub fn meets(heads: &Heads) -> bool {
    heads.iter().any(|h| h.len > 0)
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
    // Each vector's odds once, in the dense table's order.
    let mut odds = vec![f64::NAN; SIZES.iter().product()];
    // (best right, best log2 odds, best vector, runner-up log2 odds)
    let mut best: Vec<(Option<u32>, f64, Vector, f64)> =
        vec![(None, f64::NEG_INFINITY, [super::NULL; 4], f64::NEG_INFINITY); left_len];
    for &(l, r, v) in &candidates.pairs {
        let slot = &mut odds[Counts::slot(&v)];
        if slot.is_nan() {
            *slot = model.log2_odds(&v);
        }
        let o = *slot;
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
