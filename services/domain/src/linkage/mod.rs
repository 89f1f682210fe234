//! Probabilistic record linkage (*pemadanan probabilistik*) in the Fellegi–Sunter
//! tradition, for persons whose NIK is missing or does not match.
//!
//! - [`Record`]: the identifying fields of one person, names reduced by [`names`].
//! - [`compare`]: a comparison vector — one agreement level per field, [`NULL`] where a
//!   side lacks the field.
//! - [`blocking_keys`]: several blocking rules; two records are candidates when they
//!   share any key.
//! - [`Model`]: m- and u-probabilities per level. u is estimated from random pairs, m by
//!   expectation–maximisation over the candidate pairs of each blocking rule (fields a
//!   rule holds equal are not learned from that rule), so the weights come from the data.
//! - [`Thresholds`]: a link, a clerical review (with a reason), or no link.

pub mod batch;
mod blocking;
mod model;
pub mod names;
mod record;

pub use blocking::*;
pub use model::*;
pub use names::{NameKey, jaro_winkler};
pub use record::*;

#[cfg(test)]
mod tests;
