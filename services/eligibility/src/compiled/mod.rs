//! A programme rule compiled for a whole determined month: the CEL expression turned
//! into a tree that reads the month's columns directly, with no household copied into
//! CEL values. It follows the `cel-interpreter` crate's semantics — its truthiness, its
//! mixed-number comparisons, its checked integer arithmetic — and where it meets
//! anything it does not decide the same way (an error, a map compared with a map, a
//! string built at run time) it answers `Err(Undecided)`, and the caller asks the
//! interpreter about that household. The interpreter stays the definition; this is the
//! fast road to the same answers (a property test holds the two together).

mod run;
#[cfg(test)]
mod tests;
mod tree;

use cel_parser::ast::IdedExpr;

use crate::month::Month;
pub use run::Undecided;
use run::Val;
use tree::Node;

/// A rule ready to run over a month.
#[derive(Debug)]
pub struct Compiled {
    root: Node,
    slots: usize,
}

impl Compiled {
    /// The compiled form of a parsed rule, or `None` when it uses something only the
    /// interpreter runs (maps, indexing, `has`, unsigned numbers, other functions).
    pub fn new(parsed: &IdedExpr) -> Option<Self> {
        let (root, slots) = tree::build(parsed)?;
        Some(Self { root, slots })
    }

    /// Whether household `i` of `month` is eligible, or `Undecided`.
    #[cfg(test)]
    pub fn eligible(&self, month: &Month, i: usize) -> Result<bool, Undecided> {
        let mut slots = vec![Val::Null; self.slots];
        run::eligible(&self.root, month, i, &mut slots)
    }

    /// Every household of `month` from `range`, judged: `Ok(answer)` or `Undecided`.
    pub fn judge(
        &self,
        month: &Month,
        range: std::ops::Range<usize>,
    ) -> Vec<Result<bool, Undecided>> {
        let mut slots = vec![Val::Null; self.slots];
        range
            .map(|i| run::eligible(&self.root, month, i, &mut slots))
            .collect()
    }
}
