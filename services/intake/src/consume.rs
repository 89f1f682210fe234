//! The events intake takes: later stages' decisions move a proposal along, and verivali
//! asks for the changes Dukcapil recorded to be proposed.

use dtks_platform::auth::{Claims, Role};
use dtks_platform::bus::{EventHandler, Handled, HandlerError};
use dtks_platform::{events, outbox};
use dtks_proto::events::v1::{self as ev, Envelope};
use dtks_proto::intake::v1::{ProposalStatus, SubmitProposalRequest};
use sea_orm::{DatabaseConnection, DatabaseTransaction};

use crate::{check, store};

/// Keeps each proposal's status in step with matching and verivali (a withdrawn
/// proposal keeps its status whatever arrives after the withdrawal), and proposes the
/// changes verivali asks for.
pub struct StatusUpdates {
    pub db: DatabaseConnection,
    pub outbox: outbox::OutboxSignal,
}

/// Who proposes what Dukcapil recorded.
const DUKCAPIL: &str = "dukcapil";

impl StatusUpdates {
    /// `proposal.requested`: a CHANGE on the CIVIL_REGISTRY channel, checked like any
    /// proposal and stored once per request (its idempotency key). A request intake
    /// refuses (the registry's record disagrees with itself, a village DTKS does not
    /// know) is logged with the fields and dropped: the re-verification task the same
    /// vital event opened leaves it to the regency.
    async fn propose(&self, envelope: &Envelope) -> Handled {
        let requested: ev::ProposalRequested = events::payload(envelope)?;
        let who = Claims {
            sub: DUKCAPIL.to_owned(),
            role: Role::Service,
            region: String::new(),
            iss: String::new(),
            aud: serde_json::Value::Null,
            exp: 0,
            iat: 0,
        };
        let request = SubmitProposalRequest {
            idempotency_key: format!("dukcapil-{}", requested.request_id),
            channel: ev::Channel::CivilRegistry as i32,
            kind: ev::ProposalKind::Change as i32,
            external_reference: format!("DUKCAPIL-{}", requested.request_id),
            household: requested.household,
            reason: requested.reason,
            change_type: requested.change_type,
            ..Default::default()
        };
        let prepared = match check::prepare(&who, request, dtks_platform::clock::today()) {
            Ok(prepared) => prepared,
            Err(refused) => {
                let fields: Vec<String> =
                    refused.into_fields().into_iter().map(|(f, _)| f).collect();
                tracing::warn!(
                    ?fields,
                    "a change from Dukcapil was refused; the regency's task stands"
                );
                return Ok(());
            }
        };
        let stored = store::store(&self.db, vec![prepared])
            .await
            .map_err(|e| HandlerError::Transient(anyhow::anyhow!("{e}")))?;
        if stored.iter().any(|s| !s.replayed) {
            self.outbox.wake();
        }
        Ok(())
    }
}

impl EventHandler for StatusUpdates {
    async fn handle(&self, txn: &DatabaseTransaction, envelope: &Envelope) -> Handled {
        use ProposalStatus::*;
        if envelope.r#type == events::PROPOSAL_REQUESTED {
            return self.propose(envelope).await;
        }
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
