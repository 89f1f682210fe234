//! The events reporting takes: every one, kept as a fact and applied to the read models.

use dtks_platform::bus::{EventHandler, Handled};
use dtks_proto::events::v1::Envelope;
use sea_orm::DatabaseTransaction;

use crate::facts;

/// Keeps each event's fact and applies it to the read models, in one transaction.
pub struct Facts;

impl EventHandler for Facts {
    async fn handle(&self, txn: &DatabaseTransaction, envelope: &Envelope) -> Handled {
        let fact = facts::of(envelope)?;
        facts::keep(txn, envelope, &fact).await?;
        let occurred = facts::occurred_at(envelope);
        facts::apply(
            txn,
            &envelope.r#type,
            occurred,
            &envelope.region_code,
            &fact,
        )
        .await
    }
}
