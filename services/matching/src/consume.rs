//! The events matching consumes: proposals to match are received into `pending`
//! (receiving never waits on the civil registry, so an outage cannot fail or
//! dead-letter an event), and verivali's decisions are followed in the person index.

use std::sync::Arc;

use dtks_platform::bus::{EventHandler, Handled, HandlerError};
use dtks_platform::events;
use dtks_proto::events::v1::{self as ev, Envelope};
use prost::Message;
use sea_orm::DatabaseTransaction;
use tokio::sync::Notify;

use crate::store::{self, index};

/// The event types [`Consumed`] takes.
pub const TYPES: &[&str] = &[
    events::PROPOSAL_SUBMITTED,
    events::PROPOSAL_RESUBMITTED,
    events::HOUSEHOLD_ACCEPTED,
    events::HOUSEHOLD_RETURNED,
    events::HOUSEHOLD_REMOVED,
    events::PROPOSAL_WITHDRAWN,
];

pub struct Consumed {
    /// Wakes the matching worker ([`crate::pending::run`]) once a proposal is in.
    pub wake: Arc<Notify>,
}

fn uuid_of(text: &str) -> Result<uuid::Uuid, HandlerError> {
    uuid::Uuid::parse_str(text).map_err(|e| HandlerError::Permanent(format!("proposal_id: {e}")))
}

impl EventHandler for Consumed {
    async fn handle(&self, txn: &DatabaseTransaction, envelope: &Envelope) -> Handled {
        match envelope.r#type.as_str() {
            events::HOUSEHOLD_ACCEPTED => {
                let accepted: ev::HouseholdAccepted = events::payload(envelope)?;
                let household = accepted.household.unwrap_or_default();
                let living: Vec<String> = household
                    .families
                    .iter()
                    .flat_map(|f| &f.members)
                    .filter(|m| !m.deceased && !m.nik.is_empty())
                    .map(|m| m.nik.clone())
                    .collect();
                let proposal_id = uuid_of(&accepted.proposal_id)?;
                let village = household.address.as_ref().map(|a| a.village_code.as_str());
                let at = (accepted.household_id.as_str(), village.unwrap_or_default());
                index::accepted(txn, proposal_id, at, &living).await?;
            }
            events::HOUSEHOLD_RETURNED => {
                let returned: ev::HouseholdReturned = events::payload(envelope)?;
                index::returned(txn, uuid_of(&returned.proposal_id)?).await?;
            }
            events::HOUSEHOLD_REMOVED => {
                let removed: ev::HouseholdRemoved = events::payload(envelope)?;
                index::removed(txn, &removed.household_id).await?;
            }
            // Withdrawn at intake: not matched if it waits still, and its persons no
            // longer held (the same family may be proposed again).
            events::PROPOSAL_WITHDRAWN => {
                let withdrawn: ev::ProposalWithdrawn = events::payload(envelope)?;
                let proposal_id = uuid_of(&withdrawn.proposal_id)?;
                store::forget(txn, proposal_id).await?;
                index::returned(txn, proposal_id).await?;
            }
            // proposal.submitted, and proposal.resubmitted (a returned proposal corrected
            // by the regency) with the same payload: both are matched afresh.
            _ => {
                let submitted: ev::ProposalSubmitted = events::payload(envelope)?;
                store::receive(
                    txn,
                    uuid_of(&submitted.proposal_id)?,
                    &envelope.region_code,
                    envelope.encode_to_vec(),
                )
                .await?;
            }
        }
        Ok(())
    }

    fn after_commit(&self) {
        self.wake.notify_one();
    }
}
