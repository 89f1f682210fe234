//! End-to-end harness: starts every DTKS service as its own process against the real
//! PostgreSQL, RabbitMQ and Redis of `scripts/stack.sh`, isolated per run by a fresh
//! database and a fresh bus/cache namespace.
//!
//! - [`stack`]: a run's stack, started and taken down; counting rows while it runs;
//! - [`ports`]: free ports, the binaries, log directories, process identities;
//! - [`fixtures`]: persons, households, generated populations, registry rows, tokens;
//! - [`otlp`]: the tests' own OTLP collector;
//! - [`servers`]: PostgreSQL, RabbitMQ and Redis of a test's own;
//! - [`benchtable`], [`time`]: the benchmark table and the tests' clock.

pub mod benchtable;
pub mod fixtures;
pub mod otlp;
pub mod ports;
pub mod servers;
pub mod stack;
pub mod time;

pub use fixtures::*;
pub use otlp::*;
pub use ports::*;
pub use servers::*;
pub use stack::*;
