//! Event types and the envelope every event travels in.

use dtks_proto::events::v1::Envelope;
use prost::Message;

pub const PROPOSAL_SUBMITTED: &str = "proposal.submitted";
pub const PROPOSAL_WITHDRAWN: &str = "proposal.withdrawn";
pub const PROPOSAL_MATCHED: &str = "proposal.matched";
/// A returned proposal corrected by the regency (payload `ProposalSubmitted`), to be
/// matched again.
pub const PROPOSAL_RESUBMITTED: &str = "proposal.resubmitted";
pub const HOUSEHOLD_ACCEPTED: &str = "household.accepted";
pub const HOUSEHOLD_RETURNED: &str = "household.returned";
pub const HOUSEHOLD_REMOVED: &str = "household.removed";
pub const CASE_STATE_CHANGED: &str = "case.state_changed";
pub const REVERIFICATION_OPENED: &str = "reverification.opened";
pub const REVERIFICATION_ESCALATED: &str = "reverification.escalated";
pub const REVERIFICATION_COMPLETED: &str = "reverification.completed";
pub const PERSON_LIFE_EVENT: &str = "person.life_event";
/// A change verivali asks intake to propose from a vital event (payload
/// `ProposalRequested`).
pub const PROPOSAL_REQUESTED: &str = "proposal.requested";
pub const MATCH_REVIEWED: &str = "match.reviewed";
pub const DETERMINATION_PUBLISHED: &str = "determination.published";
pub const LIST_FIXED: &str = "distribution.list_fixed";
pub const DELIVERED: &str = "distribution.delivered";

/// Wraps `payload` in an envelope stamped with a fresh id, the time and the current
/// span's trace context.
pub fn envelope(
    event_type: &str,
    producer: &str,
    region_code: &str,
    payload: &impl Message,
) -> Envelope {
    let (traceparent, tracestate) = crate::telemetry::current_trace_context();
    let now = std::time::SystemTime::from(crate::clock::now());
    Envelope {
        event_id: uuid::Uuid::now_v7().to_string(),
        r#type: event_type.to_owned(),
        occurred_at: Some(prost_types::Timestamp::from(now)),
        producer: producer.to_owned(),
        traceparent,
        tracestate,
        region_code: region_code.to_owned(),
        payload: payload.encode_to_vec(),
    }
}

#[derive(Debug, thiserror::Error)]
#[error("event {event_type} carries an undecodable payload: {source}")]
pub struct PayloadError {
    pub event_type: String,
    #[source]
    pub source: prost::DecodeError,
}

/// Decodes the payload of `envelope` as `T`.
pub fn payload<T: Message + Default>(envelope: &Envelope) -> Result<T, PayloadError> {
    T::decode(envelope.payload.as_slice()).map_err(|source| PayloadError {
        event_type: envelope.r#type.clone(),
        source,
    })
}
