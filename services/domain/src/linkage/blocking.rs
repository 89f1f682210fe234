//! Blocking: the rules under which two records are candidates, and their keys.

use chrono::{Datelike, NaiveDate};

use super::names::NameKey;
use super::record::{Field, Record};

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
pub(super) fn key_hash(seed: u64, parts: &[&[u8]]) -> u64 {
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
