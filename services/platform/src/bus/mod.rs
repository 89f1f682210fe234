//! RabbitMQ: the broker and its topology, consuming in lanes, the outbox and inbox, event envelopes, dead letters.

mod broker;
pub mod deadletters;
pub mod events;
mod handler;
mod lanes;
pub mod outbox;

pub use broker::{Bus, CONSUMERS, Publisher};
pub use handler::{EventHandler, Handled, HandlerError};
