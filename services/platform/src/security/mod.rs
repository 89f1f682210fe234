//! Who may do what: tokens and claims, the access matrix, revocation, rate limits, and the audit log with its Merkle tree.

pub mod access;
pub mod audit;
pub mod auth;
mod grants;
pub mod guard;
mod matrix;
pub mod merkle;
pub mod ratelimit;
pub mod revocation;
