//! Matching (pemadanan): every person of a proposal is checked against the civil
//! registry (Dukcapil) through the DCI adapter, with answers cached in Redis; the
//! per-person and per-household outcomes are published as `proposal.matched`.
//!
//! A library as well as the service's binary, so that the service benchmark can ask the
//! registry the very searches linkage asks (`link::candidate_queries`, in the matcher's
//! two rounds) and measure what they retrieve.

mod callbacks;
pub mod dci;
mod index;
pub mod link;
pub mod matcher;
mod review;
pub mod service;
