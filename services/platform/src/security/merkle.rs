//! The Merkle tree of Certificate Transparency (RFC 9162 §2.1), which the audit log is:
//! leaf and node hashes with their domain-separation prefixes, the tree head, the
//! compact frontier a sequencer extends without reading old leaves, and inclusion and
//! consistency proofs with the RFC's verification algorithms.

use sha2::{Digest, Sha256};

pub type Hash = [u8; 32];

/// `HASH(0x00 || data)`: a leaf.
pub fn leaf(data: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(data);
    h.finalize().into()
}

/// `HASH(0x01 || left || right)`: an interior node.
pub fn node(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// The head of the empty tree: the hash of nothing.
pub fn empty() -> Hash {
    Sha256::digest([]).into()
}

/// The largest power of two below `n` (`n` ≥ 2).
fn split(n: u64) -> u64 {
    1 << (63 - (n - 1).leading_zeros())
}

/// The roots of the perfect subtrees a tree of some size is made of, left to right: all
/// a sequencer keeps to extend the tree and answer its head.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Frontier {
    pub size: u64,
    pub roots: Vec<Hash>,
}

impl Frontier {
    pub fn push(&mut self, leaf_hash: Hash) {
        self.roots.push(leaf_hash);
        let mut size = self.size;
        while size & 1 == 1 {
            let right = self.roots.pop().expect("a frontier root per set bit");
            let left = self.roots.pop().expect("a frontier root per set bit");
            self.roots.push(node(&left, &right));
            size >>= 1;
        }
        self.size += 1;
    }

    /// The tree head: the frontier's roots folded from the right.
    pub fn root(&self) -> Hash {
        let mut roots = self.roots.iter().rev();
        let Some(last) = roots.next() else {
            return empty();
        };
        roots.fold(*last, |acc, left| node(left, &acc))
    }

    /// Whether `roots` is a frontier a tree of `size` can have (one root per set bit).
    pub fn is_shaped(&self) -> bool {
        self.roots.len() == self.size.count_ones() as usize
    }
}

/// A whole tree, every level kept, for a verifier: any subtree's hash in O(log n).
pub struct Tree {
    levels: Vec<Vec<Hash>>,
}

impl Tree {
    pub fn new(leaves: Vec<Hash>) -> Self {
        let mut levels = vec![leaves];
        while levels.last().is_some_and(|l| l.len() > 1) {
            let below = levels.last().expect("a level");
            let above = below.chunks_exact(2).map(|p| node(&p[0], &p[1])).collect();
            levels.push(above);
        }
        Self { levels }
    }

    pub fn size(&self) -> u64 {
        self.levels[0].len() as u64
    }

    /// `MTH(D[lo:hi])`.
    fn subtree(&self, lo: u64, hi: u64) -> Hash {
        let n = hi - lo;
        if n == 0 {
            return empty();
        }
        if n.is_power_of_two() && lo.is_multiple_of(n) {
            let height = n.trailing_zeros() as usize;
            return self.levels[height][(lo / n) as usize];
        }
        let k = split(n);
        node(&self.subtree(lo, lo + k), &self.subtree(lo + k, hi))
    }

    /// The head of the tree's first `size` leaves.
    pub fn root(&self, size: u64) -> Hash {
        self.subtree(0, size)
    }

    /// The inclusion proof of leaf `index` in the tree of the first `size` leaves (RFC
    /// 9162 §2.1.3.1).
    pub fn inclusion(&self, index: u64, size: u64) -> Vec<Hash> {
        let mut path = Vec::new();
        self.path(index, 0, size, &mut path);
        path
    }

    fn path(&self, m: u64, lo: u64, hi: u64, out: &mut Vec<Hash>) {
        let n = hi - lo;
        if n <= 1 {
            return;
        }
        let k = split(n);
        if m < k {
            self.path(m, lo, lo + k, out);
            out.push(self.subtree(lo + k, hi));
        } else {
            self.path(m - k, lo + k, hi, out);
            out.push(self.subtree(lo, lo + k));
        }
    }

    /// The consistency proof between the trees of the first `first` and `second`
    /// leaves (RFC 9162 §2.1.4.1).
    pub fn consistency(&self, first: u64, second: u64) -> Vec<Hash> {
        let mut proof = Vec::new();
        if 0 < first && first < second {
            self.subproof(first, 0, second, true, &mut proof);
        }
        proof
    }

    fn subproof(&self, m: u64, lo: u64, hi: u64, whole: bool, out: &mut Vec<Hash>) {
        let n = hi - lo;
        if m == n {
            if !whole {
                out.push(self.subtree(lo, hi));
            }
            return;
        }
        let k = split(n);
        if m <= k {
            self.subproof(m, lo, lo + k, whole, out);
            out.push(self.subtree(lo + k, hi));
        } else {
            self.subproof(m - k, lo + k, hi, false, out);
            out.push(self.subtree(lo, lo + k));
        }
    }
}

/// The cursor of RFC 9162's verification algorithms: `fn` and `sn`, shifted right
/// together as the proof's hashes are consumed.
struct Walk {
    fn_: u64,
    sn: u64,
}

impl Walk {
    fn shift(&mut self) {
        self.fn_ >>= 1;
        self.sn >>= 1;
    }

    /// Takes one proof hash: whether it is a left sibling (hashed first). After a left
    /// sibling the walk also skips the levels where `fn` is a right child.
    fn left(&mut self) -> bool {
        let left = self.fn_ & 1 == 1 || self.fn_ == self.sn;
        if left {
            while self.fn_ & 1 == 0 && self.fn_ != 0 {
                self.shift();
            }
        }
        self.shift();
        left
    }
}

/// Verifies that `leaf_hash` is leaf `index` of the tree of `size` whose head is `root`
/// (RFC 9162 §2.1.3.2).
pub fn verify_inclusion(
    index: u64,
    size: u64,
    leaf_hash: &Hash,
    path: &[Hash],
    root: &Hash,
) -> bool {
    if index >= size {
        return false;
    }
    let mut walk = Walk {
        fn_: index,
        sn: size - 1,
    };
    let mut r = *leaf_hash;
    for p in path {
        if walk.sn == 0 {
            return false;
        }
        r = if walk.left() {
            node(p, &r)
        } else {
            node(&r, p)
        };
    }
    walk.sn == 0 && &r == root
}

/// Verifies that the tree of `second` leaves headed by `second_root` extends the tree of
/// `first` leaves headed by `first_root` (RFC 9162 §2.1.4.2; equal sizes must have equal
/// heads, and every tree extends the empty one).
pub fn verify_consistency(
    first: u64,
    second: u64,
    first_root: &Hash,
    second_root: &Hash,
    proof: &[Hash],
) -> bool {
    if first > second {
        return false;
    }
    if first == second {
        return proof.is_empty() && first_root == second_root;
    }
    if first == 0 {
        return proof.is_empty();
    }
    let mut path: Vec<Hash> = Vec::with_capacity(proof.len() + 1);
    if first.is_power_of_two() {
        path.push(*first_root);
    }
    path.extend_from_slice(proof);
    let Some((start, rest)) = path.split_first() else {
        return false;
    };
    let mut walk = Walk {
        fn_: first - 1,
        sn: second - 1,
    };
    while walk.fn_ & 1 == 1 {
        walk.shift();
    }
    let (mut fr, mut sr) = (*start, *start);
    for c in rest {
        if walk.sn == 0 {
            return false;
        }
        if walk.left() {
            fr = node(c, &fr);
            sr = node(c, &sr);
        } else {
            sr = node(&sr, c);
        }
    }
    &fr == first_root && &sr == second_root && walk.sn == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaves(n: u64) -> Vec<Hash> {
        (0..n).map(|i| leaf(&i.to_be_bytes())).collect()
    }

    /// MTH as RFC 9162 writes it, recursively, for comparison.
    fn mth(d: &[Hash]) -> Hash {
        match d.len() {
            0 => empty(),
            1 => d[0],
            n => {
                let k = split(n as u64) as usize;
                node(&mth(&d[..k]), &mth(&d[k..]))
            }
        }
    }

    #[test]
    fn the_frontier_and_the_tree_give_the_rfc_head_at_every_size() {
        let all = leaves(70);
        let tree = Tree::new(all.clone());
        let mut frontier = Frontier::default();
        assert_eq!(frontier.root(), empty());
        for (i, l) in all.iter().enumerate() {
            frontier.push(*l);
            let size = i as u64 + 1;
            assert!(frontier.is_shaped());
            assert_eq!(frontier.root(), mth(&all[..=i]), "size {size}");
            assert_eq!(tree.root(size), frontier.root(), "size {size}");
        }
    }

    #[test]
    fn every_inclusion_proof_verifies_and_a_wrong_leaf_or_place_does_not() {
        let all = leaves(37);
        let tree = Tree::new(all.clone());
        for size in 1..=37u64 {
            let root = tree.root(size);
            for index in 0..size {
                let proof = tree.inclusion(index, size);
                let leaf_hash = &all[index as usize];
                assert!(verify_inclusion(index, size, leaf_hash, &proof, &root));
                let other = &all[((index + 1) % 37) as usize];
                assert!(!verify_inclusion(index, size, other, &proof, &root));
                if size > 1 {
                    let moved = (index + 1) % size;
                    assert!(!verify_inclusion(moved, size, leaf_hash, &proof, &root));
                }
            }
        }
    }

    #[test]
    fn every_consistency_proof_verifies_and_a_rewritten_history_does_not() {
        let all = leaves(33);
        let tree = Tree::new(all.clone());
        let mut rewritten = all.clone();
        rewritten[4] = leaf(b"someone else");
        let other = Tree::new(rewritten);
        for second in 1..=33u64 {
            for first in 0..=second {
                let proof = tree.consistency(first, second);
                let (r1, r2) = (tree.root(first), tree.root(second));
                assert!(
                    verify_consistency(first, second, &r1, &r2, &proof),
                    "{first} → {second}"
                );
                if first > 4 {
                    // A head kept before leaf 4 was changed cannot be extended to the new one.
                    let forged = other.consistency(first, second);
                    assert!(!verify_consistency(
                        first,
                        second,
                        &r1,
                        &other.root(second),
                        &forged
                    ));
                }
            }
        }
    }
}
