//! The audit log of reads and writes of personal data (*jejak audit*), one per service
//! schema, kept as a transparency log (Certificate Transparency, RFC 9162): an entry
//! says who (token subject and role), what (the operation), which records (ids, never
//! NIKs or names), why (the request's trace id) and when.
//!
//! - **Appends take no lock.** An operation writes its entry, and queues it, in its own
//!   transaction: one statement, so the record and its audit commit together and
//!   operations of one service never wait on each other.
//! - **A sequencer orders them** ([`run_sequencer`], one at a time per schema under a
//!   try-lock, so replicas take over from each other): it takes queued entries, gives
//!   each its place (`audit_leaf`, the leaf hash of its content), extends the Merkle tree
//!   from the frontier kept with the last head, and signs the new tree head (Ed25519)
//!   into `audit_head` — leaves and head in one transaction, so every leaf is under a
//!   signed head.
//! - **Every alteration is found** by [`verify`]: an entry changed (its leaf hash), a
//!   leaf removed, reordered or inserted (the signed heads), a leaf added outside the
//!   sequencer (under no head), an entry never sequenced, a forged head (its signature),
//!   and — against a checkpoint kept elsewhere, such as the one each monthly
//!   determination publishes — history rewritten or cut (consistency proofs). Every leaf
//!   is proven included in the newest head.
//!
//! `audit_log`, `audit_leaf` and `audit_head` refuse UPDATE, DELETE and TRUNCATE (a
//! trigger); the queue is the sequencer's to empty.

mod append;
mod sequencer;
#[cfg(test)]
mod tests;
mod verify;

pub use append::*;
pub use sequencer::*;
pub use verify::*;
