//! The region's steps on a case: the village review (musdes/muskel) of a batch, the
//! regency's field verification of one household, and a returned case corrected and
//! resubmitted. Each validates the whole request, locks the cases and checks the step
//! against the workflow before anything is written.

use dtks_platform::auth::Claims;
use dtks_platform::{convert, events, grpc, outbox};
use dtks_proto::common::v1 as pb;
use dtks_proto::events::v1 as ev;
use dtks_proto::verivali::v1::*;
use prost::Message;
use sea_orm::TransactionTrait;

use crate::Verivali;
use crate::cases::{self, Actor, CaseRow, Move, timestamp};
use crate::error::Result;
use crate::store;
use crate::workflow::Step;

pub(crate) fn text(field: &str, value: &str, max: usize) -> Result<String> {
    let value = value.trim();
    if value.chars().count() > max {
        return Err(grpc::invalid_field(field, format!("must be at most {max} characters")).into());
    }
    Ok(value.to_owned())
}

/// References to stored files (photos, evidence): at most 20, each 1 to 500 characters.
pub(crate) fn references(field: &str, values: &[String]) -> Result<()> {
    if values.len() > 20 {
        return Err(grpc::invalid_field(field, "at most 20").into());
    }
    match values
        .iter()
        .position(|r| r.trim().is_empty() || r.chars().count() > 500)
    {
        Some(i) => {
            let field = format!("{field}[{i}]");
            Err(grpc::invalid_field(&field, "must be 1 to 500 characters").into())
        }
        None => Ok(()),
    }
}

pub(crate) fn case_id(value: &str) -> Result<uuid::Uuid> {
    Ok(uuid::Uuid::parse_str(value)
        .map_err(|_| grpc::invalid_field("case_id", "must be a UUID"))?)
}

/// `corrected` must keep the members and their identity: those changes need a match.
fn identity_kept(current: &pb::Household, corrected: &pb::Household) -> Result<()> {
    if current.families.len() != corrected.families.len() {
        return Err(grpc::invalid_field(
            "corrected.families",
            "changes the families; identity corrections go through ReturnToRegion and Resubmit",
        )
        .into());
    }
    for (fi, (a, b)) in current.families.iter().zip(&corrected.families).enumerate() {
        if a.members.len() != b.members.len() || a.kk_number != b.kk_number {
            return Err(grpc::invalid_field(
                &format!("corrected.families[{fi}]"),
                "changes the family card or its members; identity corrections go through ReturnToRegion and Resubmit",
            ).into());
        }
        for (mi, (p, q)) in a.members.iter().zip(&b.members).enumerate() {
            if p.nik != q.nik
                || p.full_name != q.full_name
                || p.birth_date != q.birth_date
                || p.sex != q.sex
            {
                return Err(grpc::invalid_field(
                    &format!("corrected.families[{fi}].members[{mi}]"),
                    "changes a member's identity (NIK, name, birth date or sex), which needs a new match: use ReturnToRegion and Resubmit",
                ).into());
            }
        }
    }
    Ok(())
}

/// The attribute groups `corrected` changes, by path.
fn corrected_fields(current: &pb::Household, corrected: &pb::Household) -> Vec<String> {
    let mut out = Vec::new();
    if current.address != corrected.address {
        out.push("address".to_owned());
    }
    if current.location != corrected.location {
        out.push("location".to_owned());
    }
    if current.dwelling != corrected.dwelling {
        out.push("dwelling".to_owned());
    }
    if current.assets != corrected.assets {
        out.push("assets".to_owned());
    }
    for (fi, (a, b)) in current.families.iter().zip(&corrected.families).enumerate() {
        for (mi, (p, q)) in a.members.iter().zip(&b.members).enumerate() {
            if p != q {
                out.push(format!("families[{fi}].members[{mi}]"));
            }
        }
    }
    out
}

/// Validates a household as intake would (structure and complete attributes), naming
/// fields under `prefix`.
fn valid_household(h: &pb::Household, prefix: &str, today: chrono::NaiveDate) -> Result<()> {
    let violations = match convert::household_from_proto(h, today) {
        Ok(household) => household.missing_attributes(),
        Err(v) => v,
    };
    if violations.0.is_empty() {
        return Ok(());
    }
    let mut violations = violations;
    for f in &mut violations.0 {
        f.field = format!(
            "{prefix}.{}",
            f.field.strip_prefix("household.").unwrap_or(&f.field)
        );
    }
    Err(grpc::invalid_argument(&violations).into())
}

impl Verivali {
    pub(crate) async fn record_village_review(
        &self,
        who: &Claims,
        req: &RecordVillageReviewRequest,
    ) -> Result<BatchResult> {
        let actor = Actor::officer(who);
        actor.may(Step::VillageApprove)?;
        let now = self.now();
        let number = text("minutes_number", &req.minutes_number, 100)?;
        if number.is_empty() {
            return Err(
                grpc::invalid_field("minutes_number", "is required (nomor berita acara)").into(),
            );
        }
        let date = req
            .minutes_date
            .as_ref()
            .and_then(convert::naive_date)
            .ok_or_else(|| grpc::invalid_field("minutes_date", "must be a valid date"))?;
        if let Some(problem) = dtks_domain::minutes::date_problem(date, now.date_naive()) {
            return Err(grpc::invalid_field("minutes_date", problem).into());
        }
        if req.attendees == 0 || req.attendees > 100_000 {
            return Err(grpc::invalid_field("attendees", "must be 1 to 100000").into());
        }
        let ids = cases::parse_ids(
            req.decisions.iter().map(|d| d.case_id.as_str()),
            "decisions",
        )?;
        let mut notes = Vec::with_capacity(ids.len());
        for (i, d) in req.decisions.iter().enumerate() {
            let note = text(&format!("decisions[{i}].note"), &d.note, 2000)?;
            if !d.approved && note.is_empty() {
                return Err(grpc::invalid_field(
                    &format!("decisions[{i}].note"),
                    "a household the musdes does not approve needs the reason",
                )
                .into());
            }
            notes.push(note);
        }
        let steps: Vec<(uuid::Uuid, Step)> = ids
            .iter()
            .zip(&req.decisions)
            .map(|(id, d)| {
                (
                    *id,
                    if d.approved {
                        Step::VillageApprove
                    } else {
                        Step::VillageReject
                    },
                )
            })
            .collect();
        let txn = self.db.begin().await?;
        let locked = cases::lock_for(&txn, &actor, &steps).await?;
        let reviews: Vec<Vec<u8>> = req
            .decisions
            .iter()
            .zip(&notes)
            .map(|(d, note)| {
                VillageReview {
                    minutes_number: number.clone(),
                    minutes_date: req.minutes_date,
                    attendees: req.attendees,
                    approved: d.approved,
                    note: note.clone(),
                }
                .encode_to_vec()
            })
            .collect();
        let minutes = store::Minutes {
            number: &number,
            date,
            attendees: req.attendees as i32,
            recorded_by: &actor.id,
            at: now,
        };
        store::village_review(&txn, &minutes, &ids, reviews).await?;
        let moves: Vec<Move> = locked
            .into_iter()
            .zip(&notes)
            .map(|((case, _, to), note)| Move {
                case,
                to,
                note: format!("musdes minutes {number}: {note}")
                    .trim_end_matches(": ")
                    .to_owned(),
            })
            .collect();
        cases::record(&txn, &actor, &moves, now).await?;
        let rejected: Vec<(&CaseRow, Vec<String>)> = moves
            .iter()
            .filter(|m| m.to == CaseState::Rejected)
            .map(|m| {
                (
                    &m.case,
                    vec![format!("not approved by the village review: {}", m.note)],
                )
            })
            .collect();
        cases::publish_returned(&txn, &rejected, true).await?;
        let result = BatchResult {
            applied: moves.len() as u32,
            rejected: rejected.len() as u32,
            ..Default::default()
        };
        self.commit(txn).await?;
        Ok(result)
    }

    pub(crate) async fn record_field_verification(
        &self,
        who: &Claims,
        req: &RecordFieldVerificationRequest,
    ) -> Result<Case> {
        let actor = Actor::officer(who);
        let step = if req.confirmed {
            Step::FieldConfirm
        } else {
            Step::FieldReject
        };
        actor.may(step)?;
        let id = case_id(&req.case_id)?;
        let now = self.now();
        let interview = text("interview_summary", &req.interview_summary, 4000)?;
        let observation = text("observation_summary", &req.observation_summary, 4000)?;
        if interview.is_empty() && observation.is_empty() {
            return Err(grpc::invalid_field(
                "interview_summary",
                "a visit records its interview or observation results",
            )
            .into());
        }
        if let Some(g) = &req.geotag {
            let p = dtks_domain::household::GeoPoint {
                latitude: g.latitude,
                longitude: g.longitude,
            };
            if !p.is_in_indonesia() {
                return Err(grpc::invalid_field("geotag", "is outside Indonesia").into());
            }
        }
        references("photo_references", &req.photo_references)?;
        if let Some(c) = &req.corrected {
            valid_household(c, "corrected", now.date_naive())?;
        }
        let txn = self.db.begin().await?;
        let (case, _, to) = cases::lock_one(&txn, &actor, id, step).await?;
        let content = cases::content(&txn, &[id]).await?;
        let current = &content[&id].household;
        let mut corrected_fields_list = Vec::new();
        if let Some(corrected) = &req.corrected {
            identity_kept(current, corrected)?;
            corrected_fields_list = corrected_fields(current, corrected);
            let flags = cases::flags(&txn, corrected, &case.region, now.date_naive()).await?;
            let sealed = cases::seal_household(&id, corrected)?;
            store::corrected(&txn, id, sealed, cases::flags_json(&flags)).await?;
        }
        let visit = FieldVisit {
            officer_id: actor.id.clone(),
            visited_at: Some(timestamp(now)),
            interview_summary: interview.clone(),
            observation_summary: observation.clone(),
            geotag: req.geotag,
            photo_references: req.photo_references.clone(),
            confirmed: req.confirmed,
            corrected_fields: corrected_fields_list,
        };
        store::field_visit(&txn, id, visit.encode_to_vec()).await?;
        let note = if req.confirmed {
            "household visited and confirmed".to_owned()
        } else {
            format!("not confirmed in the field: {} {}", interview, observation)
                .trim()
                .to_owned()
        };
        let mv = Move {
            case: case.clone(),
            to,
            note: note.clone(),
        };
        cases::record(&txn, &actor, &[mv], now).await?;
        if !req.confirmed {
            cases::publish_returned(&txn, &[(&case, vec![note])], true).await?;
        }
        let out = self.load(&txn, who, id).await?;
        self.commit(txn).await?;
        Ok(out)
    }

    pub(crate) async fn resubmit(&self, who: &Claims, req: &ResubmitRequest) -> Result<Case> {
        let actor = Actor::officer(who);
        actor.may(Step::Resubmit)?;
        let id = case_id(&req.case_id)?;
        let now = self.now();
        let note = text("note", &req.note, 4000)?;
        let corrected = req.corrected.as_ref().ok_or_else(|| {
            grpc::invalid_field("corrected", "the corrected household is required")
        })?;
        valid_household(corrected, "corrected", now.date_naive())?;
        let txn = self.db.begin().await?;
        let (case, _, to) = cases::lock_one(&txn, &actor, id, Step::Resubmit).await?;
        let village = corrected
            .address
            .as_ref()
            .map(|a| a.village_code.clone())
            .unwrap_or_default();
        if village != case.region {
            return Err(grpc::invalid_field(
                "corrected.address.village_code",
                format!(
                    "must stay {} (a household that moved is a new proposal in its new village)",
                    case.region
                ),
            )
            .into());
        }
        let content = cases::content(&txn, &[id]).await?;
        let matched = &content[&id].matched;
        let mut household = corrected.clone();
        household.household_id = case.household_id.to_string();
        store::resubmitted(&txn, id, cases::seal_household(&id, &household)?).await?;
        let mv = Move {
            case: case.clone(),
            to,
            note: if note.is_empty() {
                "corrected and resubmitted".to_owned()
            } else {
                note.clone()
            },
        };
        cases::record(&txn, &actor, &[mv], now).await?;
        outbox::enqueue(
            &txn,
            &events::envelope(
                events::PROPOSAL_RESUBMITTED,
                "verivali",
                &case.region,
                &ev::ProposalSubmitted {
                    proposal_id: case.proposal_id.to_string(),
                    channel: matched.channel,
                    kind: matched.kind,
                    household: Some(household),
                    submitted_by: actor.id.clone(),
                    // What the proposal changes and why stay as proposed; the note is
                    // the case history's.
                    change_type: matched.change_type,
                    reason: matched.reason.clone(),
                    external_reference: String::new(),
                    removal_reason: matched.removal_reason,
                },
            ),
        )
        .await?;
        let out = self.load(&txn, who, id).await?;
        self.commit(txn).await?;
        Ok(out)
    }
}
