//! Reading and withdrawing proposals: officers within their region scope, a citizen only
//! what they submitted. A proposal outside the caller's reach is answered as not found.

use dtks_platform::auth::{Claims, Role};
use dtks_platform::{audit, events, grpc, outbox};
use dtks_proto::common::v1 as pb;
use dtks_proto::events::v1 as ev;
use dtks_proto::intake::v1::*;
use sea_orm::TransactionTrait;

use crate::Intake;
use crate::check;
use crate::error::{Error, Result};
use crate::store::{self, Listing};

/// Whether `who` may see or act on `proposal`: officers within their scope; a citizen
/// only their own.
fn may_see(who: &Claims, proposal: &Proposal) -> bool {
    if who.role == Role::Public {
        proposal.submitted_by == who.sub
    } else {
        who.covers(&proposal.region_code)
    }
}

/// The largest page a listing gives, and the page it gives when none is asked.
const MAX_PAGE: u64 = 1_000;
const DEFAULT_PAGE: u64 = 100;

/// An opaque page token (`v1.<uuid>`), checked, and the page size.
fn page_cursor(page: Option<&pb::PageRequest>) -> Result<(Option<uuid::Uuid>, u64)> {
    let page = page.cloned().unwrap_or_default();
    let size = match u64::from(page.page_size) {
        0 => DEFAULT_PAGE,
        n @ 1..=MAX_PAGE => n,
        _ => {
            return Err(grpc::invalid_field("page.page_size", "must be at most 1000").into());
        }
    };
    if page.page_token.is_empty() {
        return Ok((None, size));
    }
    let cursor = page
        .page_token
        .strip_prefix("v1.")
        .and_then(|t| uuid::Uuid::parse_str(t).ok())
        .ok_or_else(|| {
            grpc::invalid_field("page.page_token", "is not a token this service issued")
        })?;
    Ok((Some(cursor), size))
}

fn proposal_id(text: &str) -> Result<uuid::Uuid> {
    Ok(uuid::Uuid::parse_str(text)
        .map_err(|_| grpc::invalid_field("proposal_id", "must be a UUID"))?)
}

fn instant(t: &prost_types::Timestamp, field: &str) -> Result<chrono::DateTime<chrono::Utc>> {
    Ok(
        chrono::DateTime::from_timestamp(t.seconds, t.nanos.max(0) as u32)
            .ok_or_else(|| grpc::invalid_field(field, "is not a valid instant"))?,
    )
}

impl Intake {
    /// One proposal with its household; the read names the members, so it is audited.
    pub async fn get_proposal(&self, who: &Claims, req: &GetProposalRequest) -> Result<Proposal> {
        let id = proposal_id(&req.proposal_id)?;
        let proposal = store::load(&self.db, id, true)
            .await?
            .filter(|p| may_see(who, p))
            .ok_or(Error::NoSuchProposal)?;
        audit::record(&self.db, who, "intake.GetProposal", &[id]).await?;
        Ok(proposal)
    }

    /// A page of proposals, newest first, within the caller's reach.
    pub async fn list_proposals(
        &self,
        who: &Claims,
        req: &ListProposalsRequest,
    ) -> Result<ListProposalsResponse> {
        let (after, size) = page_cursor(req.page.as_ref())?;
        let region = if req.region_code.is_empty() {
            who.region.clone()
        } else {
            dtks_domain::RegionCode::parse(&req.region_code)
                .map_err(|e| grpc::invalid_field("region_code", e.to_string()))?;
            if who.role != Role::Public {
                who.require_region(&req.region_code)?;
            }
            req.region_code.clone()
        };
        let mut listing = Listing {
            submitted_by: (who.role == Role::Public).then(|| who.sub.clone()),
            region,
            channel: (req.channel != 0).then_some(req.channel as i16),
            kind: (req.kind != 0).then_some(req.kind as i16),
            status: (req.status != 0).then_some(req.status as i16),
            submitted_from: req
                .submitted_from
                .as_ref()
                .map(|t| instant(t, "submitted_from"))
                .transpose()?,
            submitted_before: req
                .submitted_to
                .as_ref()
                .map(|t| instant(t, "submitted_to"))
                .transpose()?,
            after,
            limit: size + 1,
            include_household: req.include_household,
        };
        if req.period.is_some() {
            let (year, month) = dtks_platform::convert::period_key(req.period.as_ref())?;
            let start = chrono::NaiveDate::from_ymd_opt(year, month as u32, 1)
                .and_then(|d| d.and_hms_opt(0, 0, 0))
                .ok_or_else(|| grpc::invalid_field("period", "is not a month"))?
                .and_utc();
            // Both bounds hold: the period narrows any submitted_from/submitted_to.
            listing.submitted_from = Some(listing.submitted_from.map_or(start, |f| f.max(start)));
            let end = start + chrono::Months::new(1);
            listing.submitted_before = Some(listing.submitted_before.map_or(end, |b| b.min(end)));
        }
        let mut proposals = store::list(&self.db, &listing).await?;
        let next_page_token = if proposals.len() as u64 > size {
            proposals.truncate(size as usize);
            proposals
                .last()
                .map(|p| format!("v1.{}", p.proposal_id))
                .unwrap_or_default()
        } else {
            String::new()
        };
        // With their households the listed proposals name their members: audited.
        if req.include_household && !proposals.is_empty() {
            let ids: Vec<String> = proposals.iter().map(|p| p.proposal_id.clone()).collect();
            audit::record(&self.db, who, "intake.ListProposals", &ids).await?;
        }
        Ok(ListProposalsResponse {
            proposals,
            page: Some(pb::PageResponse { next_page_token }),
        })
    }

    /// Withdraws a proposal not yet decided (submitted, in verification or returned to its
    /// region); `proposal.withdrawn` is published with it.
    pub async fn withdraw_proposal(
        &self,
        who: &Claims,
        req: &WithdrawProposalRequest,
    ) -> Result<Proposal> {
        let id = proposal_id(&req.proposal_id)?;
        let reason = req.reason.trim();
        if reason.is_empty() || reason.chars().count() > check::MAX_REASON {
            return Err(grpc::invalid_field(
                "reason",
                "a withdrawal states its reason (at most 1000 characters)",
            )
            .into());
        }
        let txn = self.db.begin().await?;
        let current = store::lock(&txn, id)
            .await?
            .filter(|p| may_see(who, p))
            .ok_or(Error::NoSuchProposal)?;
        let status = ProposalStatus::try_from(current.status).unwrap_or_default();
        // Open until decided: a proposal returned to its region is still open.
        if !matches!(
            status,
            ProposalStatus::Submitted | ProposalStatus::InVerification | ProposalStatus::Returned
        ) {
            return Err(Error::NotWithdrawable { status });
        }
        store::withdraw(&txn, id, reason).await?;
        let envelope = events::envelope(
            events::PROPOSAL_WITHDRAWN,
            "intake",
            &current.region_code,
            &ev::ProposalWithdrawn {
                proposal_id: id.to_string(),
                reason: reason.to_owned(),
                withdrawn_by: who.sub.clone(),
            },
        );
        outbox::enqueue(&txn, &envelope).await?;
        audit::record(&txn, who, "intake.WithdrawProposal", &[id]).await?;
        txn.commit().await?;
        self.outbox.wake();
        tracing::info!(proposal_id = %id, "proposal withdrawn");
        store::load(&self.db, id, false)
            .await?
            .ok_or(Error::NoSuchProposal)
    }
}
