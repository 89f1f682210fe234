//! The national ranking: every household's rank by welfare score (poorest first) and its
//! decile, exactly, with a deterministic tie-break — equal scores keep their input order,
//! and callers pass households in household-id order, so ties break by household id.
//!
//! Each score becomes a 128-bit key (an order-preserving image of the `f64` above the
//! household's position), so the order is a plain integer sort: the keys are cut into
//! one slice per thread, each sorted on its own, and the sorted slices merged.

use crate::pmt::decile_of_rank;

/// An order-preserving image of an `f64` in `u64` (the IEEE total order: -0 before +0,
/// NaN last).
pub fn score_key(score: f64) -> u64 {
    let bits = score.to_bits();
    if bits >> 63 == 1 {
        !bits
    } else {
        bits | (1 << 63)
    }
}

/// The positions of `scores` in rank order (poorest first; ties in input order), sorted
/// on `threads` threads.
pub fn rank(scores: &[f64], threads: usize) -> Vec<u32> {
    assert!(scores.len() <= u32::MAX as usize, "at most 2^32 households");
    let mut keys: Vec<u128> = scores
        .iter()
        .enumerate()
        .map(|(i, s)| (u128::from(score_key(*s)) << 64) | i as u128)
        .collect();
    let threads = threads.clamp(1, 64).min(keys.len().max(1));
    let size = keys.len().div_ceil(threads).max(1);
    std::thread::scope(|s| {
        for chunk in keys.chunks_mut(size) {
            s.spawn(move || chunk.sort_unstable());
        }
    });
    merge(&keys, size)
}

/// Merges the sorted runs of `size` keys into the positions they carry.
fn merge(keys: &[u128], size: usize) -> Vec<u32> {
    let mut runs: Vec<&[u128]> = keys.chunks(size.max(1)).collect();
    let mut out = Vec::with_capacity(keys.len());
    if let [only] = runs.as_slice() {
        out.extend(only.iter().map(|k| *k as u32));
        return out;
    }
    // Few runs (one per thread): take the smallest head each time.
    while !runs.is_empty() {
        let (best, _) = runs
            .iter()
            .enumerate()
            .min_by_key(|(_, r)| r[0])
            .expect("a run");
        let run = runs[best];
        out.push(run[0] as u32);
        if run.len() == 1 {
            runs.swap_remove(best);
        } else {
            runs[best] = &run[1..];
        }
    }
    out
}

/// The decile of each position, given the rank order from [`rank`].
pub fn deciles(order: &[u32]) -> Vec<u8> {
    let n = order.len();
    let mut out = vec![0u8; n];
    for (r, position) in order.iter().enumerate() {
        out[*position as usize] = decile_of_rank(r, n) as u8;
    }
    out
}

/// Deciles within groups (e.g. provinces): each position's decile among the positions
/// of its group, in the same rank order. `group[i]` is position i's group number.
pub fn group_deciles(order: &[u32], group: &[u32]) -> Vec<u8> {
    let groups = group.iter().copied().max().map_or(0, |g| g as usize + 1);
    let mut sizes = vec![0usize; groups];
    for g in group {
        sizes[*g as usize] += 1;
    }
    let mut seen = vec![0usize; groups];
    let mut out = vec![0u8; order.len()];
    for position in order {
        let g = group[*position as usize] as usize;
        out[*position as usize] = decile_of_rank(seen[g], sizes[g]) as u8;
        seen[g] += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The obvious way: sort positions by (score, position).
    fn brute(scores: &[f64]) -> Vec<u32> {
        let mut order: Vec<u32> = (0..scores.len() as u32).collect();
        order.sort_by(|a, b| {
            scores[*a as usize]
                .total_cmp(&scores[*b as usize])
                .then(a.cmp(b))
        });
        order
    }

    proptest! {
        #[test]
        fn ranks_and_deciles_are_exact(
            // Few distinct values, so that ties are common.
            raw in proptest::collection::vec(-20i32..20, 0..3000),
            threads in 1usize..5,
        ) {
            let scores: Vec<f64> = raw.iter().map(|v| f64::from(*v) / 4.0).collect();
            let order = rank(&scores, threads);
            prop_assert_eq!(&order, &brute(&scores));
            let d = deciles(&order);
            for (r, p) in order.iter().enumerate() {
                prop_assert_eq!(u32::from(d[*p as usize]), decile_of_rank(r, scores.len()));
            }
        }

        #[test]
        fn group_deciles_rank_within_each_group(
            raw in proptest::collection::vec((0u32..4, -1000i32..1000), 1..2000),
        ) {
            let scores: Vec<f64> = raw.iter().map(|(_, s)| f64::from(*s)).collect();
            let group: Vec<u32> = raw.iter().map(|(g, _)| *g).collect();
            let got = group_deciles(&rank(&scores, 2), &group);
            for g in 0..4 {
                let members: Vec<usize> = (0..scores.len()).filter(|i| group[*i] == g).collect();
                let sub: Vec<f64> = members.iter().map(|i| scores[*i]).collect();
                let sub_order = brute(&sub);
                for (r, p) in sub_order.iter().enumerate() {
                    prop_assert_eq!(
                        u32::from(got[members[*p as usize]]),
                        decile_of_rank(r, sub.len())
                    );
                }
            }
        }
    }

    #[test]
    fn the_key_keeps_the_order_of_scores() {
        let values = [
            f64::NEG_INFINITY,
            -2.5,
            -0.0,
            0.0,
            1e-300,
            3.0,
            f64::INFINITY,
            f64::NAN,
        ];
        for w in values.windows(2) {
            assert!(score_key(w[0]) < score_key(w[1]), "{} < {}", w[0], w[1]);
        }
    }
}
