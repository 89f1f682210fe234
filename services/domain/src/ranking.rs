//! The national ranking: every household's rank by welfare score (poorest first) and its
//! decile, exactly, with a deterministic tie-break — equal scores keep their input order,
//! and callers pass households in household-id order, so ties break by household id.
//!
//! Each score becomes a 128-bit key (an order-preserving image of the `f64` above the
//! household's position), so the order is a plain integer sort: the keys are filed into
//! buckets by their leading bits, and each bucket is sorted in cache (see [`rank`]).

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

/// Buckets a ranking files keys into: few enough for the filing pass to stay in cache,
/// many enough that each bucket sorts in cache.
const BUCKET_BITS: u32 = 16;

/// One thread's part of the scores, filed by bucket in position order.
struct Filed {
    keys: Vec<u128>,
    /// Where each bucket starts in `keys`, and the end.
    starts: Vec<usize>,
}

fn key(score: f64, position: usize) -> u128 {
    (u128::from(score_key(score)) << 64) | position as u128
}

fn file(scores: &[f64], first: usize, lo: u64, shift: u32, buckets: usize) -> Filed {
    let bucket = |s: f64| ((score_key(s) - lo) >> shift) as usize;
    let mut starts = vec![0usize; buckets + 1];
    for s in scores {
        starts[bucket(*s) + 1] += 1;
    }
    for b in 0..buckets {
        starts[b + 1] += starts[b];
    }
    let mut next = starts.clone();
    let mut keys = vec![0u128; scores.len()];
    for (i, s) in scores.iter().enumerate() {
        let b = bucket(*s);
        keys[next[b]] = key(*s, first + i);
        next[b] += 1;
    }
    Filed { keys, starts }
}

/// The positions of `scores` in rank order (poorest first; ties in input order), on
/// `threads` threads.
///
/// Each score becomes a 128-bit key (its order-preserving image above its position).
/// Every thread files its part of the keys into 65,536 buckets by their leading bits
/// (over the span the scores actually cover); then every thread takes a share of the
/// buckets, sorts each bucket's keys from all parts in cache, and the shares are joined.
pub fn rank(scores: &[f64], threads: usize) -> Vec<u32> {
    assert!(scores.len() <= u32::MAX as usize, "at most 2^32 households");
    let n = scores.len();
    if n < 1 << 10 {
        let mut keys: Vec<u128> = scores.iter().enumerate().map(|(i, s)| key(*s, i)).collect();
        keys.sort_unstable();
        return keys.into_iter().map(|k| k as u32).collect();
    }
    let threads = threads.clamp(1, 64);
    let (lo, hi) = scores.iter().fold((u64::MAX, 0), |(lo, hi), s| {
        let k = score_key(*s);
        (lo.min(k), hi.max(k))
    });
    let shift = (64 - (hi - lo).leading_zeros()).saturating_sub(BUCKET_BITS);
    let buckets = ((hi - lo) >> shift) as usize + 1;
    let part = n.div_ceil(threads);
    let filed: Vec<Filed> = std::thread::scope(|s| {
        let handles: Vec<_> = scores
            .chunks(part)
            .enumerate()
            .map(|(t, chunk)| s.spawn(move || file(chunk, t * part, lo, shift, buckets)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a ranking thread"))
            .collect()
    });
    let size = |b: usize| -> usize { filed.iter().map(|f| f.starts[b + 1] - f.starts[b]).sum() };
    // Each thread's share: consecutive buckets holding about n / threads keys.
    let mut shares = Vec::with_capacity(threads);
    let (mut from, mut held) = (0, 0);
    for b in 0..buckets {
        held += size(b);
        if held >= n * (shares.len() + 1) / threads || b + 1 == buckets {
            shares.push(from..b + 1);
            from = b + 1;
        }
    }
    let filed = &filed;
    let parts: Vec<Vec<u32>> = std::thread::scope(|s| {
        let handles: Vec<_> = shares
            .into_iter()
            .map(|share| {
                s.spawn(move || {
                    let (mut out, mut scratch) = (Vec::new(), Vec::new());
                    for b in share {
                        scratch.clear();
                        for f in filed {
                            scratch.extend_from_slice(&f.keys[f.starts[b]..f.starts[b + 1]]);
                        }
                        scratch.sort_unstable();
                        out.extend(scratch.iter().map(|k| *k as u32));
                    }
                    out
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a ranking thread"))
            .collect()
    });
    parts.concat()
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
            raw in proptest::collection::vec(-20i32..20, 0..6000),
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

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]
        #[test]
        fn any_scores_rank_exactly_when_filed_into_buckets(
            // Every kind of f64: both signs, tiny and huge, infinities, NaN.
            bits in proptest::collection::vec(any::<u64>(), 1024..20_000),
            spread in 0u32..60,
            threads in 1usize..4,
        ) {
            let scores: Vec<f64> = bits
                .iter()
                .map(|b| if spread == 0 { f64::from_bits(*b) } else { 13.8 + (*b >> spread) as f64 * 1e-9 })
                .collect();
            prop_assert_eq!(rank(&scores, threads), brute(&scores));
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
