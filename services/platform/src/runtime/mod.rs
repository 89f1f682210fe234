//! The process around a service: configuration, start-up and shutdown, the clock, telemetry and metrics.

pub mod app;
pub mod clock;
pub mod config;
pub mod metrics;
pub mod shutdown;
pub mod telemetry;
