//! Clerical review (*pemeriksaan manual*): a probable registry match that linkage was not
//! sure enough to make waits here, with its candidate, probability and reason, until a
//! Dinsos data officer decides "same person" or "different person". The decision updates
//! the proposal's match result and is published as `match.reviewed`.

use dtks_platform::auth::Claims;
use dtks_platform::db::stmt;
use dtks_platform::{events, grpc, outbox};
use dtks_proto::common::v1 as pb;
use dtks_proto::events::v1::{self as ev, PersonOutcome};
use dtks_proto::matching::v1::{
    DecideReviewPairRequest, ListReviewPairsRequest, ListReviewPairsResponse, ReviewDecision,
    ReviewPair,
};
use prost::Message;
use sea_orm::{ConnectionTrait, DatabaseConnection, TransactionTrait};
use tonic::Status;

use crate::error::Result;

use crate::dci::RegistryPerson;
use crate::matcher::{differences, persons};
use crate::settle::{duplicate, household_outcome};
use crate::store::result_for_update;

pub const MAX_PAGE: u32 = 200;
pub const DEFAULT_PAGE: u32 = 50;

fn candidate_person(r: &RegistryPerson) -> pb::Person {
    let date = chrono::NaiveDate::parse_from_str(&r.birth_date, "%Y-%m-%d").ok();
    pb::Person {
        nik: r.nik.clone(),
        full_name: r.full_name.clone(),
        birth_date: date.map(dtks_platform::convert::pb_date),
        sex: match r.sex.as_str() {
            "male" => 1,
            "female" => 2,
            _ => 0,
        },
        ..Default::default()
    }
}

const COLUMNS: &str =
    "p.pair_id, p.proposal_id, p.family_index, p.member_index, p.candidate, p.score,
    p.reason, p.decision, coalesce(p.decided_by, '') AS decided_by, coalesce(p.note, '') AS note,
    p.outcome_before, p.region_code, r.result";

fn pair(row: &sea_orm::QueryResult) -> Result<(ReviewPair, RegistryPerson)> {
    let candidate: RegistryPerson = serde_json::from_value(row.try_get("", "candidate")?)?;
    let (fi, mi): (i32, i32) = (
        row.try_get("", "family_index")?,
        row.try_get("", "member_index")?,
    );
    let result: Vec<u8> = row.try_get("", "result")?;
    let result = ev::ProposalMatched::decode(result.as_slice())?;
    let proposed = result.household.as_ref().and_then(|h| {
        persons(h)
            .find(|(f, m, _)| (*f as i32, *m as i32) == (fi, mi))
            .map(|(_, _, p)| p.clone())
    });
    let id: uuid::Uuid = row.try_get("", "pair_id")?;
    let proposal: uuid::Uuid = row.try_get("", "proposal_id")?;
    Ok((
        ReviewPair {
            pair_id: id.to_string(),
            proposal_id: proposal.to_string(),
            family_index: fi as u32,
            member_index: mi as u32,
            candidate: Some(candidate_person(&candidate)),
            score: row.try_get("", "score")?,
            reason: row.try_get("", "reason")?,
            decision: row.try_get::<i16>("", "decision")? as i32,
            proposed,
            decided_by: row.try_get("", "decided_by")?,
            note: row.try_get("", "note")?,
        },
        candidate,
    ))
}

/// One page of pairs in `region` (the caller's scope when empty), oldest first.
impl crate::Api {
    /// The pairs waiting for a clerical decision in the caller's region.
    pub(crate) async fn list_review_pairs(
        &self,
        who: &Claims,
        req: &ListReviewPairsRequest,
    ) -> Result<ListReviewPairsResponse> {
        let (region, decided) = (&req.region_code, req.include_decided);
        let (pairs, next_page_token) =
            list(&self.db, who, region, decided, req.page.as_ref()).await?;
        Ok(ListReviewPairsResponse {
            pairs,
            page: Some(pb::PageResponse { next_page_token }),
        })
    }

    /// A clerk's decision on a pair; the event it publishes wakes the relay.
    pub(crate) async fn decide_review_pair(
        &self,
        who: &Claims,
        req: &DecideReviewPairRequest,
    ) -> Result<ReviewPair> {
        let decision = ReviewDecision::try_from(req.decision).unwrap_or_default();
        let pair = decide(&self.db, who, &req.pair_id, decision, &req.note).await?;
        self.outbox.wake();
        Ok(pair)
    }
}

pub async fn list(
    db: &DatabaseConnection,
    who: &Claims,
    region: &str,
    include_decided: bool,
    page: Option<&pb::PageRequest>,
) -> Result<(Vec<ReviewPair>, String)> {
    let region = if region.is_empty() {
        &who.region
    } else {
        region
    };
    who.require_region(region)?;
    let size = page
        .map(|p| p.page_size)
        .filter(|s| *s > 0)
        .unwrap_or(DEFAULT_PAGE);
    if size > MAX_PAGE {
        return Err(
            grpc::invalid_field("page.page_size", format!("must be at most {MAX_PAGE}")).into(),
        );
    }
    let offset: i64 = match page.map(|p| p.page_token.as_str()).unwrap_or_default() {
        "" => 0,
        token => token.parse().map_err(|_| {
            grpc::invalid_field("page.page_token", "is not a token this service gave")
        })?,
    };
    let rows = db
        .query_all_raw(stmt(
            &format!(
                "SELECT {COLUMNS} FROM review_pairs p JOIN match_results r USING (proposal_id)
                 WHERE ($1 = '' OR p.region_code = $1 OR p.region_code LIKE $1 || '.%')
                   AND ($2 OR p.decision = 0)
                 ORDER BY p.created_at, p.pair_id LIMIT $3 OFFSET $4"
            ),
            [
                region.to_owned().into(),
                include_decided.into(),
                (i64::from(size) + 1).into(),
                offset.into(),
            ],
        ))
        .await?;
    let more = rows.len() > size as usize;
    let pairs = rows
        .iter()
        .take(size as usize)
        .map(|r| pair(r).map(|(p, _)| p))
        .collect::<Result<Vec<_>>>()?;
    let next = if more {
        (offset + i64::from(size)).to_string()
    } else {
        String::new()
    };
    if !pairs.is_empty() {
        let ids: Vec<String> = pairs.iter().map(|p| p.pair_id.clone()).collect();
        dtks_platform::audit::record(db, who, "matching.ListReviewPairs", &ids).await?;
    }
    Ok((pairs, next))
}

/// Records a clerk's decision and what it means for the proposal's match result.
pub async fn decide(
    db: &DatabaseConnection,
    who: &Claims,
    pair_id: &str,
    decision: ReviewDecision,
    note: &str,
) -> Result<ReviewPair> {
    let id = uuid::Uuid::parse_str(pair_id)
        .map_err(|_| grpc::invalid_field("pair_id", "must be a UUID"))?;
    if decision == ReviewDecision::Unspecified {
        return Err(
            grpc::invalid_field("decision", "must be SAME_PERSON or DIFFERENT_PERSON").into(),
        );
    }
    if note.chars().count() > 2000 {
        return Err(grpc::invalid_field("note", "must be at most 2000 characters").into());
    }
    let txn = db.begin().await?;
    let row = txn
        .query_one_raw(stmt(
            &format!(
                "SELECT {COLUMNS} FROM review_pairs p JOIN match_results r USING (proposal_id)
                 WHERE p.pair_id = $1 FOR UPDATE OF p, r"
            ),
            [id.into()],
        ))
        .await?
        .ok_or_else(|| Status::not_found("no review pair with this id"))?;
    let region: String = row.try_get("", "region_code")?;
    who.require_region(&region)?;
    let (mut pair, candidate) = pair(&row)?;
    if pair.decision != ReviewDecision::Unspecified as i32 {
        return Err(Status::failed_precondition(format!(
            "already decided: {} by {}",
            ReviewDecision::try_from(pair.decision)
                .unwrap_or_default()
                .as_str_name(),
            pair.decided_by
        ))
        .into());
    }
    let before: i16 = row.try_get("", "outcome_before")?;
    let proposal_id = uuid::Uuid::parse_str(&pair.proposal_id)?;
    let mut result = result_for_update(&txn, proposal_id)
        .await?
        .ok_or_else(|| Status::internal("review pair without a match result"))?;
    let household = result.household.clone().unwrap_or_default();
    let village = household
        .address
        .as_ref()
        .map(|a| a.village_code.clone())
        .unwrap_or_default();
    let proposed = pair.proposed.clone().unwrap_or_default();
    let m = result
        .persons
        .iter_mut()
        .find(|m| (m.family_index, m.member_index) == (pair.family_index, pair.member_index))
        .ok_or_else(|| Status::internal("review pair names no person of its proposal"))?;
    if decision == ReviewDecision::SamePerson {
        m.corrections = differences(&proposed, &village, &candidate);
        m.outcome = if candidate.deceased {
            PersonOutcome::Deceased
        } else {
            PersonOutcome::MatchedWithCorrections
        } as i32;
        // The person is now known by the registry's NIK: held under it, unless DTKS
        // already holds that NIK elsewhere.
        let mut niks = vec![candidate.nik.as_str()];
        crate::store::index::lock(&txn, &mut niks).await?;
        match crate::store::index::by_nik(&txn, &candidate.nik, &household.household_id).await? {
            Some(holder) if holder.proposal_id != proposal_id => duplicate(m, holder),
            _ => {
                txn.execute_raw(stmt(
                    "UPDATE person_index SET nik = $4
                     WHERE proposal_id = $1 AND family_index = $2 AND member_index = $3",
                    [
                        proposal_id.into(),
                        (pair.family_index as i32).into(),
                        (pair.member_index as i32).into(),
                        candidate.nik.clone().into(),
                    ],
                ))
                .await?;
            }
        }
    } else {
        m.outcome = i32::from(before);
        m.corrections.clear();
    }
    result.outcome = household_outcome(&result.persons) as i32;
    txn.execute_raw(stmt(
        "UPDATE match_results SET outcome = $2, result = $3, matched_at = now() WHERE proposal_id = $1",
        [proposal_id.into(), (result.outcome as i16).into(), result.encode_to_vec().into()],
    ))
    .await
    ?;
    txn.execute_raw(stmt(
        "UPDATE review_pairs SET decision = $2, decided_by = $3, note = $4, decided_at = now() WHERE pair_id = $1",
        [id.into(), (decision as i16).into(), who.sub.clone().into(), note.to_owned().into()],
    ))
    .await
    ?;
    let reviewed = ev::MatchReviewed {
        pair_id: pair.pair_id.clone(),
        decision: decision as i32,
        decided_by: who.sub.clone(),
        result: Some(result),
    };
    outbox::enqueue(
        &txn,
        &events::envelope(events::MATCH_REVIEWED, "matching", &region, &reviewed),
    )
    .await?;
    dtks_platform::audit::record(
        &txn,
        who,
        "matching.DecideReviewPair",
        &[pair.pair_id.clone(), pair.proposal_id.clone()],
    )
    .await?;
    txn.commit().await?;
    pair.decision = decision as i32;
    pair.decided_by = who.sub.clone();
    pair.note = note.to_owned();
    Ok(pair)
}
