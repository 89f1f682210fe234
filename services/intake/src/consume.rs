//! The events intake takes: later stages' decisions move a proposal along.

use dtks_platform::bus::{EventHandler, Handled, HandlerError};
use dtks_platform::events;
use dtks_proto::events::v1::{self as ev, Envelope};
use dtks_proto::intake::v1::ProposalStatus;
use sea_orm::DatabaseTransaction;

use crate::store;

/// Keeps each proposal's status in step with matching and verivali. A withdrawn
/// proposal keeps its status whatever arrives after the withdrawal.
pub struct StatusUpdates;

impl EventHandler for StatusUpdates {
    async fn handle(&self, txn: &DatabaseTransaction, envelope: &Envelope) -> Handled {
        use ProposalStatus::*;
        let (proposal_id, status) = match envelope.r#type.as_str() {
            events::PROPOSAL_MATCHED => (
                events::payload::<ev::ProposalMatched>(envelope)?.proposal_id,
                InVerification,
            ),
            events::PROPOSAL_RESUBMITTED => (
                events::payload::<ev::ProposalSubmitted>(envelope)?.proposal_id,
                InVerification,
            ),
            events::HOUSEHOLD_ACCEPTED => (
                events::payload::<ev::HouseholdAccepted>(envelope)?.proposal_id,
                Accepted,
            ),
            // A REMOVE accepted: its household left DTKS. A removal by a re-verification
            // visit names no proposal.
            events::HOUSEHOLD_REMOVED => {
                let removed: ev::HouseholdRemoved = events::payload(envelope)?;
                if removed.proposal_id.is_empty() {
                    return Ok(());
                }
                (removed.proposal_id, Accepted)
            }
            events::HOUSEHOLD_RETURNED => {
                let returned: ev::HouseholdReturned = events::payload(envelope)?;
                let status = if returned.r#final { Rejected } else { Returned };
                (returned.proposal_id, status)
            }
            _ => return Ok(()),
        };
        let id = uuid::Uuid::parse_str(&proposal_id)
            .map_err(|e| HandlerError::Permanent(e.to_string()))?;
        // Matching's event may arrive after verivali's decision: never step back to
        // IN_VERIFICATION from a decided status, except a returned proposal the regency
        // resubmitted.
        let from: &[ProposalStatus] = match (envelope.r#type.as_str(), status) {
            (events::PROPOSAL_RESUBMITTED, _) => &[Returned],
            (_, InVerification) => &[Submitted],
            _ => &[Submitted, InVerification],
        };
        store::advance(txn, id, status, from).await?;
        Ok(())
    }
}
