//! A proposal's match result as stored, for an officer of its region; or why there is
//! none yet.

use dtks_platform::auth::Claims;
use dtks_proto::events::v1 as ev;
use dtks_proto::matching::v1::GetProposalMatchRequest;
use prost::Message;
use sea_orm::DatabaseConnection;
use tonic::Status;

use crate::error::Result;
use crate::store;

/// The stored result of `proposal_id`; the read is audited.
impl crate::Api {
    /// What matching decided for a proposal, for the proposal's region.
    pub(crate) async fn get_proposal_match(
        &self,
        who: &Claims,
        req: &GetProposalMatchRequest,
    ) -> Result<ev::ProposalMatched> {
        let id = uuid::Uuid::parse_str(&req.proposal_id)
            .map_err(|_| dtks_platform::grpc::invalid_field("proposal_id", "must be a UUID"))?;
        of_proposal(&self.db, who, id).await
    }
}

pub async fn of_proposal(
    db: &DatabaseConnection,
    who: &Claims,
    proposal_id: uuid::Uuid,
) -> Result<ev::ProposalMatched> {
    let Some((region, bytes)) = store::result(db, proposal_id).await? else {
        return Err(not_matched_yet(db, who, proposal_id).await?.into());
    };
    who.require_region(&region)?;
    dtks_platform::audit::record(db, who, "matching.GetProposalMatch", &[proposal_id]).await?;
    Ok(ev::ProposalMatched::decode(bytes.as_slice())?)
}

/// Why a proposal has no match result: waiting its turn (NOT_FOUND), delayed by a
/// civil-registry outage (UNAVAILABLE, with the attempts so far), or unknown.
async fn not_matched_yet(
    db: &DatabaseConnection,
    who: &Claims,
    proposal_id: uuid::Uuid,
) -> Result<Status> {
    let Some(waiting) = store::waiting(db, proposal_id).await? else {
        return Ok(Status::not_found("no match result for this proposal"));
    };
    who.require_region(&waiting.region_code)?;
    Ok(if waiting.attempts == 0 {
        Status::not_found("received; not matched yet")
    } else {
        Status::unavailable(format!(
            "matching delayed: the civil registry did not answer in {} attempts; next attempt at {}",
            waiting.attempts, waiting.next_attempt_at
        ))
    })
}
