//! PostgreSQL and Redis: connections, schemas and migrations, COPY, the reference data, sealing at rest, the cache.

pub mod cache;
pub mod copy;
pub mod db;
pub mod reference;
pub mod schema;
pub mod sealed;
