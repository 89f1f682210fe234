//! What a service does with one event, and why it may fail.

use dtks_proto::events::v1::Envelope;
use sea_orm::DatabaseTransaction;

/// Why an event could not be handled.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// Redelivery cannot help (bad payload, broken invariant): dead-letter now.
    #[error("permanent: {0}")]
    Permanent(String),
    /// Redelivery may help (database or upstream unavailable).
    #[error("transient: {0}")]
    Transient(anyhow::Error),
}

impl HandlerError {
    pub fn transient(e: impl Into<anyhow::Error>) -> Self {
        Self::Transient(e.into())
    }
}

impl From<crate::events::PayloadError> for HandlerError {
    fn from(e: crate::events::PayloadError) -> Self {
        Self::Permanent(e.to_string())
    }
}

impl From<sea_orm::DbErr> for HandlerError {
    fn from(e: sea_orm::DbErr) -> Self {
        Self::Transient(e.into())
    }
}

/// What a service does with one event, inside the consumer's transaction.
/// What handling one event answers.
pub type Handled = Result<(), HandlerError>;

pub trait EventHandler: Send + Sync {
    fn handle(
        &self,
        txn: &DatabaseTransaction,
        envelope: &Envelope,
    ) -> impl std::future::Future<Output = Handled> + Send;

    /// Called after the transaction committed (e.g. to wake the outbox relay).
    fn after_commit(&self) {}
}
