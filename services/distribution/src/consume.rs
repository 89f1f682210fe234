//! The events distribution takes: a published month is loaded at once.

use std::sync::Arc;

use dtks_platform::bus::{EventHandler, Handled};
use dtks_platform::events;
use dtks_proto::events::v1::{self as ev, Envelope};

use crate::months::{Determination, Months, prepared};

/// Loads a month as soon as it is published, so that its first list does not wait.
pub struct Preparer {
    pub months: Arc<Months>,
    pub determination: Determination,
}

impl EventHandler for Preparer {
    async fn handle(&self, _txn: &sea_orm::DatabaseTransaction, envelope: &Envelope) -> Handled {
        if envelope.r#type != events::DETERMINATION_PUBLISHED {
            return Ok(());
        }
        let published: ev::DeterminationPublished = events::payload(envelope)?;
        let Some(period) = published.period else {
            return Ok(());
        };
        let (months, determination) = (self.months.clone(), self.determination.clone());
        // Loading takes a while at national scale; the event is acknowledged at once (the
        // load stays in the event's trace).
        let span = tracing::info_span!("prepare_month", year = period.year, month = period.month);
        tokio::spawn(tracing::Instrument::instrument(
            async move {
                if let Err(error) =
                    prepared(&months, &determination, period.year, period.month as u32).await
                {
                    tracing::warn!(year = period.year, month = period.month, %error,
                        "loading a published month failed; its first list loads it");
                }
            },
            span,
        ));
        Ok(())
    }
}
