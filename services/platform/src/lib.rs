//! The platform every DTKS service stands on, written once: typed configuration,
//! telemetry, PostgreSQL with per-service schemas and migrations, the RabbitMQ bus with
//! a transactional outbox and an idempotent inbox, Redis, the gRPC server bootstrap
//! (health, reflection, message limits, graceful shutdown) and authentication.

pub mod bus;
pub mod interop;
pub mod runtime;
pub mod security;
pub mod store;

// Each module stays reachable where it always was (`dtks_platform::db`, …).
pub use bus::{deadletters, events, outbox};
pub use interop::{convert, dci, edge, fault, fields, grpc};
pub use runtime::{app, clock, config, metrics, shutdown, telemetry};
pub use security::{access, audit, auth, merkle, ratelimit, revocation};
pub use store::{cache, copy, db, reference, schema, sealed};

pub use config::Config;

/// Every DTKS binary allocates through mimalloc: the services build and take apart many
/// small JSON and protobuf values, where glibc's allocator spent up to half a process's
/// CPU (the civil registry answering a matching wave).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
