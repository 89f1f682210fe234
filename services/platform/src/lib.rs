//! The platform every DTKS service stands on, written once: typed configuration,
//! telemetry, PostgreSQL with per-service schemas and migrations, the RabbitMQ bus with
//! a transactional outbox and an idempotent inbox, Redis, the gRPC server bootstrap
//! (health, reflection, message limits, graceful shutdown) and authentication.

pub mod access;
pub mod app;
pub mod audit;
pub mod auth;
pub mod bus;
pub mod cache;
pub mod clock;
pub mod config;
pub mod convert;
pub mod copy;
pub mod db;
pub mod dci;
pub mod deadletters;
pub mod edge;
pub mod events;
pub mod fault;
pub mod grpc;
pub mod merkle;
pub mod metrics;
pub mod outbox;
pub mod ratelimit;
pub mod reference;
pub mod revocation;
pub mod schema;
pub mod sealed;
pub mod shutdown;
pub mod telemetry;

pub use config::Config;

/// Every DTKS binary allocates through mimalloc: the services build and take apart many
/// small JSON and protobuf values, where glibc's allocator spent up to half a process's
/// CPU (the civil registry answering a matching wave).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
