//! The eligibility engine (*kriteria program*): a programme's rule as an officer writes
//! it in CEL, checked when saved, and run over every household of a determined month.
//!
//! Layered one way, each module using only those above it:
//! - [`household`]: a household as a rule reads it (codes as lower-case words);
//! - [`month`]: a determined month held column by column, as rules read it;
//! - [`compiled`]: a rule compiled to a tree over the month's columns, the fast road;
//! - [`rules`]: a rule checked against the schema and run, compiled where it can be
//!   and by the CEL interpreter (the definition) where it cannot.
//!
//! Also the programmes shipped with DTKS, whose rules are held to the engine here.
//!
//! Pure: no I/O, no async. The distribution service loads months and keeps them; the
//! fuzz target `cel_rule` drives [`rules::Rule::compile`] directly.

pub mod compiled;
pub mod household;
pub mod month;
pub mod rules;

/// A programme as shipped: its code, name, rule and the regulation the rule is read from.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Shipped {
    pub code: String,
    pub name: String,
    pub rule: String,
    pub source: String,
}

/// The programmes DTKS ships with (PKH, BPNT, PBI-JK, …), from `programmes.json`.
pub fn shipped() -> Result<Vec<Shipped>, serde_json::Error> {
    serde_json::from_str(include_str!("../programmes.json"))
}
