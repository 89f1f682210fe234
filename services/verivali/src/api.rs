//! The gRPC surface: each command checks the caller's token, validates the request,
//! then locks the named cases and checks the whole command against the workflow before
//! writing anything; the state, history and events commit together.

use chrono::{DateTime, Utc};
use dtks_platform::auth::{self, Claims};
use dtks_platform::clock::SharedClock;
use dtks_platform::db::stmt;
use dtks_platform::{convert, events, grpc, outbox};
use dtks_proto::common::v1 as pb;
use dtks_proto::events::v1 as ev;
use dtks_proto::verivali::v1::verivali_service_server::VerivaliService;
use dtks_proto::verivali::v1::*;
use prost::Message;
use sea_orm::{
    ConnectionTrait, DatabaseConnection, DatabaseTransaction, QueryResult, TransactionTrait,
};
use tonic::{Request, Response, Status};

use crate::aftercare::{self, listing_region};
use crate::cases::{self, Actor, CaseRow, Move, timestamp};
use crate::officers;
use crate::qa;
use crate::workflow::{self, Step};

pub struct Api {
    pub db: DatabaseConnection,
    pub outbox: outbox::OutboxSignal,
    pub clock: SharedClock,
    /// Where officers' revocations are published.
    pub redis: dtks_platform::config::RedisConfig,
}

const SUMMARY: &str = "case_id, proposal_id, household_id, region_code, state, state_since, opened_at, flags, assessment, resubmissions";

fn decode<M: Message + Default>(bytes: Option<Vec<u8>>) -> Option<M> {
    bytes.and_then(|b| M::decode(b.as_slice()).ok())
}

/// A case row as the API shows it (without history and household).
fn summary(r: &QueryResult) -> Result<Case, sea_orm::DbErr> {
    let row = cases::case_row(r)?;
    let flags: serde_json::Value = r.try_get("", "flags")?;
    let flags: Vec<dtks_domain::consistency::Flag> =
        serde_json::from_value(flags).unwrap_or_default();
    let assessment: Option<serde_json::Value> = r.try_get("", "assessment")?;
    let assessment = assessment
        .and_then(|a| serde_json::from_value::<cases::Assessment>(a).ok())
        .map(|a| a.to_proto());
    Ok(Case {
        case_id: row.case_id.to_string(),
        proposal_id: row.proposal_id.to_string(),
        household_id: row.household_id.to_string(),
        region_code: row.region,
        state: row.state as i32,
        history: vec![],
        flags: flags
            .into_iter()
            .map(|f| Flag {
                code: f.code,
                reason: f.reason,
            })
            .collect(),
        assessment,
        opened_at: Some(timestamp(r.try_get("", "opened_at")?)),
        state_since: Some(timestamp(row.state_since)),
        household: None,
        village_review: None,
        field_visit: None,
        resubmissions: u32::try_from(r.try_get::<i32>("", "resubmissions")?).unwrap_or_default(),
    })
}

impl Api {
    fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// The whole case: history, household, reviews, and the assessment (or, before the
    /// ministry's, the automatic verdict as it stands).
    async fn load(
        &self,
        db: &impl ConnectionTrait,
        who: &Claims,
        id: uuid::Uuid,
    ) -> Result<Case, Status> {
        let row = db
            .query_one_raw(stmt(
                &format!(
                    "SELECT {SUMMARY}, village_review, field_visit, matched, household FROM cases WHERE case_id = $1"
                ),
                [id.into()],
            ))
            .await
            .map_err(grpc::internal)?
            .ok_or_else(|| Status::not_found("no such case"))?;
        let mut case = summary(&row).map_err(grpc::internal)?;
        who.require_region(&case.region_code)?;
        case.village_review = decode(row.try_get("", "village_review").map_err(grpc::internal)?);
        case.field_visit = decode(row.try_get("", "field_visit").map_err(grpc::internal)?);
        let content = cases::content_of(&row).map_err(grpc::internal)?;
        if case.assessment.is_none() {
            case.assessment = Some(cases::assess(&content, self.now().date_naive()).to_proto());
        }
        case.household = Some(content.household);
        case.history = db
            .query_all_raw(stmt(
                "SELECT from_state, to_state, actor_id, actor_role, note, at FROM case_history WHERE case_id = $1 ORDER BY id",
                [id.into()],
            ))
            .await
            .map_err(grpc::internal)?
            .iter()
            .map(|h| {
                Ok(Transition {
                    from: i32::from(h.try_get::<i16>("", "from_state")?),
                    to: i32::from(h.try_get::<i16>("", "to_state")?),
                    actor_id: h.try_get("", "actor_id")?,
                    actor_role: h.try_get("", "actor_role")?,
                    at: Some(timestamp(h.try_get("", "at")?)),
                    note: h.try_get("", "note")?,
                })
            })
            .collect::<Result<_, sea_orm::DbErr>>()
            .map_err(grpc::internal)?;
        Ok(case)
    }

    /// Cases in `region` whose state is one of `states` (all when empty), waiting since
    /// before `waited_since`, oldest in their state first.
    async fn list(
        &self,
        region: &str,
        states: &[CaseState],
        waited_since: DateTime<Utc>,
        page: Option<&pb::PageRequest>,
    ) -> Result<ListCasesResponse, Status> {
        let page = aftercare::page(page)?;
        let (after_at, after_id) = page.bounds();
        let states: Vec<i16> = states.iter().map(|s| *s as i16).collect();
        let rows = self
            .db
            .query_all_raw(stmt(
                &format!(
                    "SELECT {SUMMARY} FROM cases
                     WHERE ($1 = '' OR region_code = $1 OR region_code LIKE $1 || '.%')
                       AND (cardinality($2::int2[]) = 0 OR state = ANY($2))
                       AND state_since <= $3
                       AND (state_since, case_id) > ($4, $5)
                     ORDER BY state_since, case_id LIMIT $6"
                ),
                [
                    region.to_owned().into(),
                    states.into(),
                    waited_since.into(),
                    after_at.into(),
                    after_id.into(),
                    i64::from(page.size + 1).into(),
                ],
            ))
            .await
            .map_err(grpc::internal)?;
        let cases = rows
            .iter()
            .take(page.size as usize)
            .map(summary)
            .collect::<Result<Vec<_>, _>>()
            .map_err(grpc::internal)?;
        let last = rows
            .iter()
            .take(page.size as usize)
            .last()
            .map(cases::case_row)
            .transpose()
            .map_err(grpc::internal)?
            .map(|c| (c.state_since, c.case_id));
        Ok(ListCasesResponse {
            page: Some(pb::PageResponse {
                next_page_token: page.next(rows.len(), last),
            }),
            cases,
        })
    }

    /// A batch step on every named case, all or nothing.
    async fn batch(
        &self,
        who: &Claims,
        step: Step,
        req: &BatchRequest,
    ) -> Result<(DatabaseTransaction, Actor, Vec<Move>), Status> {
        let actor = Actor::officer(who);
        actor.may(step)?;
        let ids = cases::parse_ids(req.case_ids.iter().map(String::as_str), "case_ids")?;
        let note = req.note.trim();
        if note.chars().count() > 4000 {
            return Err(grpc::invalid_field(
                "note",
                "must be at most 4000 characters",
            ));
        }
        let txn = self.db.begin().await.map_err(grpc::internal)?;
        let steps: Vec<(uuid::Uuid, Step)> = ids.iter().map(|id| (*id, step)).collect();
        let locked = cases::lock_for(&txn, &actor, &steps).await?;
        let moves = locked
            .into_iter()
            .map(|(case, _, to)| Move {
                case,
                to,
                note: note.to_owned(),
            })
            .collect();
        Ok((txn, actor, moves))
    }

    /// A batch step that only moves the cases (sign-off, forwarding).
    async fn plain_batch(
        &self,
        request: Request<BatchRequest>,
        step: Step,
    ) -> Result<Response<BatchResult>, Status> {
        let who = auth::claims(&request)?;
        let (txn, actor, moves) = self.batch(who, step, request.get_ref()).await?;
        cases::record(&txn, &actor, &moves, self.now())
            .await
            .map_err(grpc::internal)?;
        self.commit(txn).await?;
        Ok(Response::new(BatchResult {
            applied: moves.len() as u32,
            ..Default::default()
        }))
    }

    async fn commit(&self, txn: DatabaseTransaction) -> Result<(), Status> {
        txn.commit().await.map_err(grpc::internal)?;
        self.outbox.wake();
        Ok(())
    }

    /// The ministry's verdicts: stores each assessment, accepts or returns each case.
    async fn conclude(
        &self,
        txn: &DatabaseTransaction,
        actor: &Actor,
        verdicts: Vec<(CaseRow, cases::Assessment)>,
        now: DateTime<Utc>,
    ) -> Result<(u32, u32), Status> {
        let ids: Vec<uuid::Uuid> = verdicts.iter().map(|(c, _)| c.case_id).collect();
        let contents = cases::content(txn, &ids).await.map_err(grpc::internal)?;
        let stored: Vec<(uuid::Uuid, &cases::Assessment)> =
            verdicts.iter().map(|(c, a)| (c.case_id, a)).collect();
        cases::store_assessments(txn, &stored)
            .await
            .map_err(grpc::internal)?;
        let mut moves = Vec::with_capacity(verdicts.len());
        for (case, a) in &verdicts {
            let step = if a.accepted {
                Step::Accept
            } else {
                Step::Return
            };
            let to = workflow::check(step, actor.role, case.state)
                .map_err(|r| Status::failed_precondition(r.describe(step, actor.role)))?;
            let note = match (a.accepted, a.override_reason.is_empty()) {
                (true, true) => "all five integrity criteria pass".to_owned(),
                (false, true) => "integrity criteria failed".to_owned(),
                (_, false) => format!("assessor's override: {}", a.override_reason),
            };
            moves.push(Move {
                case: case.clone(),
                to,
                note,
            });
        }
        cases::record(txn, actor, &moves, now)
            .await
            .map_err(grpc::internal)?;
        let accepted: Vec<(&CaseRow, &pb::Household)> = verdicts
            .iter()
            .filter(|(_, a)| a.accepted)
            .map(|(c, _)| (c, &contents[&c.case_id].household))
            .collect();
        let returned: Vec<(&CaseRow, Vec<String>)> = verdicts
            .iter()
            .filter(|(_, a)| !a.accepted)
            .map(|(c, a)| {
                let mut reasons = a.reasons();
                if !a.override_reason.is_empty() {
                    reasons.insert(0, format!("assessor: {}", a.override_reason));
                }
                (c, reasons)
            })
            .collect();
        cases::accept(txn, &accepted, now)
            .await
            .map_err(grpc::internal)?;
        cases::publish_returned(txn, &returned, false)
            .await
            .map_err(grpc::internal)?;
        Ok((accepted.len() as u32, returned.len() as u32))
    }
}

fn text(field: &str, value: &str, max: usize) -> Result<String, Status> {
    let value = value.trim();
    if value.chars().count() > max {
        return Err(grpc::invalid_field(
            field,
            format!("must be at most {max} characters"),
        ));
    }
    Ok(value.to_owned())
}

fn case_id(value: &str) -> Result<uuid::Uuid, Status> {
    uuid::Uuid::parse_str(value).map_err(|_| grpc::invalid_field("case_id", "must be a UUID"))
}

/// `corrected` must keep the members and their identity: those changes need a match.
fn identity_kept(current: &pb::Household, corrected: &pb::Household) -> Result<(), Status> {
    if current.families.len() != corrected.families.len() {
        return Err(grpc::invalid_field(
            "corrected.families",
            "changes the families; identity corrections go through ReturnToRegion and Resubmit",
        ));
    }
    for (fi, (a, b)) in current.families.iter().zip(&corrected.families).enumerate() {
        if a.members.len() != b.members.len() || a.kk_number != b.kk_number {
            return Err(grpc::invalid_field(
                &format!("corrected.families[{fi}]"),
                "changes the family card or its members; identity corrections go through ReturnToRegion and Resubmit",
            ));
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
                ));
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
fn valid_household(
    h: &pb::Household,
    prefix: &str,
    today: chrono::NaiveDate,
) -> Result<(), Status> {
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
    Err(grpc::invalid_argument(&violations))
}

#[tonic::async_trait]
impl VerivaliService for Api {
    #[tracing::instrument(skip_all)]
    async fn get_case(&self, request: Request<GetCaseRequest>) -> Result<Response<Case>, Status> {
        let who = auth::claims(&request)?;
        let id = case_id(&request.get_ref().case_id)?;
        let case = self.load(&self.db, who, id).await?;
        // The case file names the household's members: the read is audited first.
        dtks_platform::audit::record(&self.db, who, "verivali.GetCase", &[id.to_string()])
            .await
            .map_err(grpc::internal)?;
        Ok(Response::new(case))
    }

    #[tracing::instrument(skip_all)]
    async fn list_cases(
        &self,
        request: Request<ListCasesRequest>,
    ) -> Result<Response<ListCasesResponse>, Status> {
        let who = auth::claims(&request)?;
        let req = request.get_ref();
        let region = listing_region(who, &req.region_code)?;
        let states = match CaseState::try_from(req.state) {
            Ok(CaseState::Unspecified) => vec![],
            Ok(s) => vec![s],
            Err(_) => return Err(grpc::invalid_field("state", "is not a case state")),
        };
        if req.min_age_days > 3660 {
            return Err(grpc::invalid_field("min_age_days", "must be at most 3660"));
        }
        let waited_since = self.now() - chrono::Duration::days(i64::from(req.min_age_days));
        Ok(Response::new(
            self.list(region, &states, waited_since, req.page.as_ref())
                .await?,
        ))
    }

    #[tracing::instrument(skip_all)]
    async fn work_queue(
        &self,
        request: Request<WorkQueueRequest>,
    ) -> Result<Response<ListCasesResponse>, Status> {
        let who = auth::claims(&request)?;
        let states = workflow::waiting_for(who.role);
        if states.is_empty() {
            return Err(Status::permission_denied(format!(
                "role {:?} takes no step in verivali",
                who.role
            )));
        }
        Ok(Response::new(
            self.list(
                &who.region,
                &states,
                self.now(),
                request.get_ref().page.as_ref(),
            )
            .await?,
        ))
    }

    #[tracing::instrument(skip_all)]
    async fn record_village_review(
        &self,
        request: Request<RecordVillageReviewRequest>,
    ) -> Result<Response<BatchResult>, Status> {
        let who = auth::claims(&request)?;
        let actor = Actor::officer(who);
        actor.may(Step::VillageApprove)?;
        let req = request.get_ref();
        let now = self.now();
        let number = text("minutes_number", &req.minutes_number, 100)?;
        if number.is_empty() {
            return Err(grpc::invalid_field(
                "minutes_number",
                "is required (nomor berita acara)",
            ));
        }
        let date = req
            .minutes_date
            .as_ref()
            .and_then(convert::naive_date)
            .ok_or_else(|| grpc::invalid_field("minutes_date", "must be a valid date"))?;
        if let Some(problem) = dtks_domain::minutes::date_problem(date, now.date_naive()) {
            return Err(grpc::invalid_field("minutes_date", problem));
        }
        if req.attendees == 0 || req.attendees > 100_000 {
            return Err(grpc::invalid_field("attendees", "must be 1 to 100000"));
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
                ));
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
        let txn = self.db.begin().await.map_err(grpc::internal)?;
        let locked = cases::lock_for(&txn, &actor, &steps).await?;
        txn.execute_raw(stmt(
            "INSERT INTO village_minutes (minutes_id, minutes_number, minutes_date, attendees, recorded_by, recorded_at)
             VALUES ($1, $2, $3, $4, $5, $6)",
            [
                uuid::Uuid::now_v7().into(),
                number.clone().into(),
                date.into(),
                (req.attendees as i32).into(),
                actor.id.clone().into(),
                now.into(),
            ],
        ))
        .await
        .map_err(grpc::internal)?;
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
        txn.execute_raw(stmt(
            "UPDATE cases c SET village_review = u.r FROM unnest($1::uuid[], $2::bytea[]) AS u(id, r) WHERE c.case_id = u.id",
            [ids.clone().into(), reviews.into()],
        ))
        .await
        .map_err(grpc::internal)?;
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
        cases::record(&txn, &actor, &moves, now)
            .await
            .map_err(grpc::internal)?;
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
        cases::publish_returned(&txn, &rejected, true)
            .await
            .map_err(grpc::internal)?;
        let result = BatchResult {
            applied: moves.len() as u32,
            rejected: rejected.len() as u32,
            ..Default::default()
        };
        self.commit(txn).await?;
        Ok(Response::new(result))
    }

    #[tracing::instrument(skip_all)]
    async fn record_field_verification(
        &self,
        request: Request<RecordFieldVerificationRequest>,
    ) -> Result<Response<Case>, Status> {
        let who = auth::claims(&request)?;
        let actor = Actor::officer(who);
        let req = request.get_ref();
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
            ));
        }
        if let Some(g) = &req.geotag {
            let p = dtks_domain::household::GeoPoint {
                latitude: g.latitude,
                longitude: g.longitude,
            };
            if !p.is_in_indonesia() {
                return Err(grpc::invalid_field("geotag", "is outside Indonesia"));
            }
        }
        if req.photo_references.len() > 20 {
            return Err(grpc::invalid_field("photo_references", "at most 20"));
        }
        for (i, p) in req.photo_references.iter().enumerate() {
            if p.trim().is_empty() || p.chars().count() > 500 {
                return Err(grpc::invalid_field(
                    &format!("photo_references[{i}]"),
                    "must be 1 to 500 characters",
                ));
            }
        }
        if let Some(c) = &req.corrected {
            valid_household(c, "corrected", now.date_naive())?;
        }
        let txn = self.db.begin().await.map_err(grpc::internal)?;
        let locked = cases::lock_for(&txn, &actor, &[(id, step)]).await?;
        let (case, _, to) = locked.into_iter().next().expect("one case locked");
        let content = cases::content(&txn, &[id]).await.map_err(grpc::internal)?;
        let current = &content[&id].household;
        let mut corrected_fields_list = Vec::new();
        if let Some(corrected) = &req.corrected {
            identity_kept(current, corrected)?;
            corrected_fields_list = corrected_fields(current, corrected);
            let flags = cases::flags(&txn, corrected, &case.region, now.date_naive())
                .await
                .map_err(grpc::internal)?;
            txn.execute_raw(stmt(
                "UPDATE cases SET household = $2, flags = $3 WHERE case_id = $1",
                [
                    id.into(),
                    cases::seal_household(&id, corrected)
                        .map_err(grpc::internal)?
                        .into(),
                    cases::flags_json(&flags).into(),
                ],
            ))
            .await
            .map_err(grpc::internal)?;
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
        txn.execute_raw(stmt(
            "UPDATE cases SET field_visit = $2 WHERE case_id = $1",
            [id.into(), visit.encode_to_vec().into()],
        ))
        .await
        .map_err(grpc::internal)?;
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
        cases::record(&txn, &actor, &[mv], now)
            .await
            .map_err(grpc::internal)?;
        if !req.confirmed {
            cases::publish_returned(&txn, &[(&case, vec![note])], true)
                .await
                .map_err(grpc::internal)?;
        }
        let out = self.load(&txn, who, id).await?;
        self.commit(txn).await?;
        Ok(Response::new(out))
    }

    #[tracing::instrument(skip_all)]
    async fn sign_off(
        &self,
        request: Request<BatchRequest>,
    ) -> Result<Response<BatchResult>, Status> {
        self.plain_batch(request, Step::SignOff).await
    }

    #[tracing::instrument(skip_all)]
    async fn forward_to_ministry(
        &self,
        request: Request<BatchRequest>,
    ) -> Result<Response<BatchResult>, Status> {
        self.plain_batch(request, Step::Forward).await
    }

    #[tracing::instrument(skip_all)]
    async fn assess(&self, request: Request<AssessRequest>) -> Result<Response<Case>, Status> {
        let who = auth::claims(&request)?;
        let actor = Actor::officer(who);
        actor.may(Step::Accept)?;
        let req = request.get_ref();
        let id = case_id(&req.case_id)?;
        let over = Override::try_from(req.r#override)
            .map_err(|_| grpc::invalid_field("override", "is not an override"))?;
        let reason = text("override_reason", &req.override_reason, 4000)?;
        if over != Override::Unspecified && reason.is_empty() {
            return Err(grpc::invalid_field(
                "override_reason",
                "an override needs a written reason",
            ));
        }
        let now = self.now();
        let txn = self.db.begin().await.map_err(grpc::internal)?;
        let (case, _, _) = cases::lock_for(&txn, &actor, &[(id, Step::Accept)])
            .await?
            .into_iter()
            .next()
            .expect("one case locked");
        let content = cases::content(&txn, &[id]).await.map_err(grpc::internal)?;
        let mut a = cases::assess(&content[&id], now.date_naive());
        a.assessed_by = actor.id.clone();
        match over {
            Override::Accept => {
                a.accepted = true;
                a.override_reason = reason;
            }
            Override::Return => {
                a.accepted = false;
                a.override_reason = reason;
            }
            Override::Unspecified => {}
        }
        self.conclude(&txn, &actor, vec![(case, a)], now).await?;
        let out = self.load(&txn, who, id).await?;
        self.commit(txn).await?;
        Ok(Response::new(out))
    }

    #[tracing::instrument(skip_all)]
    async fn assess_batch(
        &self,
        request: Request<BatchRequest>,
    ) -> Result<Response<BatchResult>, Status> {
        let who = auth::claims(&request)?;
        let (txn, actor, moves) = self.batch(who, Step::Accept, request.get_ref()).await?;
        let now = self.now();
        let ids: Vec<uuid::Uuid> = moves.iter().map(|m| m.case.case_id).collect();
        let contents = cases::content(&txn, &ids).await.map_err(grpc::internal)?;
        let verdicts = moves
            .into_iter()
            .map(|m| {
                let mut a = cases::assess(&contents[&m.case.case_id], now.date_naive());
                a.assessed_by = actor.id.clone();
                (m.case, a)
            })
            .collect::<Vec<_>>();
        let n = verdicts.len() as u32;
        let (accepted, returned) = self.conclude(&txn, &actor, verdicts, now).await?;
        self.commit(txn).await?;
        Ok(Response::new(BatchResult {
            applied: n,
            accepted,
            returned,
            rejected: 0,
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn return_to_region(
        &self,
        request: Request<BatchRequest>,
    ) -> Result<Response<BatchResult>, Status> {
        let who = auth::claims(&request)?;
        if request.get_ref().note.trim().is_empty() {
            return Err(grpc::invalid_field(
                "note",
                "the region needs the reason for the return",
            ));
        }
        let (txn, actor, moves) = self.batch(who, Step::Return, request.get_ref()).await?;
        cases::record(&txn, &actor, &moves, self.now())
            .await
            .map_err(grpc::internal)?;
        let returned: Vec<(&CaseRow, Vec<String>)> = moves
            .iter()
            .map(|m| (&m.case, vec![m.note.clone()]))
            .collect();
        cases::publish_returned(&txn, &returned, false)
            .await
            .map_err(grpc::internal)?;
        self.commit(txn).await?;
        Ok(Response::new(BatchResult {
            applied: moves.len() as u32,
            returned: moves.len() as u32,
            ..Default::default()
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn resubmit(&self, request: Request<ResubmitRequest>) -> Result<Response<Case>, Status> {
        let who = auth::claims(&request)?;
        let actor = Actor::officer(who);
        actor.may(Step::Resubmit)?;
        let req = request.get_ref();
        let id = case_id(&req.case_id)?;
        let now = self.now();
        let note = text("note", &req.note, 4000)?;
        let corrected = req.corrected.as_ref().ok_or_else(|| {
            grpc::invalid_field("corrected", "the corrected household is required")
        })?;
        valid_household(corrected, "corrected", now.date_naive())?;
        let txn = self.db.begin().await.map_err(grpc::internal)?;
        let (case, _, to) = cases::lock_for(&txn, &actor, &[(id, Step::Resubmit)])
            .await?
            .into_iter()
            .next()
            .expect("one case locked");
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
            ));
        }
        let content = cases::content(&txn, &[id]).await.map_err(grpc::internal)?;
        let matched = &content[&id].matched;
        let mut household = corrected.clone();
        household.household_id = case.household_id.to_string();
        txn.execute_raw(stmt(
            "UPDATE cases SET household = $2, resubmissions = resubmissions + 1, assessment = NULL WHERE case_id = $1",
            [
                id.into(),
                cases::seal_household(&id, &household)
                    .map_err(grpc::internal)?
                    .into(),
            ],
        ))
        .await
        .map_err(grpc::internal)?;
        let mv = Move {
            case: case.clone(),
            to,
            note: if note.is_empty() {
                "corrected and resubmitted".to_owned()
            } else {
                note.clone()
            },
        };
        cases::record(&txn, &actor, &[mv], now)
            .await
            .map_err(grpc::internal)?;
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
                    change_type: 0,
                    reason: note,
                    external_reference: String::new(),
                },
            ),
        )
        .await
        .map_err(grpc::internal)?;
        let out = self.load(&txn, who, id).await?;
        self.commit(txn).await?;
        Ok(Response::new(out))
    }

    #[tracing::instrument(skip_all)]
    async fn file_complaint(
        &self,
        request: Request<FileComplaintRequest>,
    ) -> Result<Response<Complaint>, Status> {
        let who = auth::claims(&request)?.clone();
        let (complaint, _) =
            aftercare::file_complaint(&self.db, &who, request.into_inner(), self.now()).await?;
        self.outbox.wake();
        Ok(Response::new(complaint))
    }

    #[tracing::instrument(skip_all)]
    async fn list_reverifications(
        &self,
        request: Request<ListReverificationsRequest>,
    ) -> Result<Response<ListReverificationsResponse>, Status> {
        let who = auth::claims(&request)?;
        Ok(Response::new(
            aftercare::list_tasks(&self.db, who, request.get_ref(), self.now()).await?,
        ))
    }

    #[tracing::instrument(skip_all)]
    async fn complete_reverification(
        &self,
        request: Request<CompleteReverificationRequest>,
    ) -> Result<Response<Reverification>, Status> {
        let who = auth::claims(&request)?.clone();
        let task =
            aftercare::complete_task(&self.db, &who, request.into_inner(), self.now()).await?;
        self.outbox.wake();
        Ok(Response::new(task))
    }

    #[tracing::instrument(skip_all)]
    async fn draw_qa_sample(
        &self,
        request: Request<DrawQaSampleRequest>,
    ) -> Result<Response<QaSample>, Status> {
        let who = auth::claims(&request)?.clone();
        Ok(Response::new(
            qa::draw_sample(&self.db, &who, request.into_inner(), self.now()).await?,
        ))
    }

    #[tracing::instrument(skip_all)]
    async fn record_qa_result(
        &self,
        request: Request<RecordQaResultRequest>,
    ) -> Result<Response<QaItem>, Status> {
        let who = auth::claims(&request)?.clone();
        Ok(Response::new(
            qa::record_result(&self.db, &who, request.into_inner(), self.now()).await?,
        ))
    }

    #[tracing::instrument(skip_all)]
    async fn qa_report(
        &self,
        request: Request<QaReportRequest>,
    ) -> Result<Response<QaReportResponse>, Status> {
        let who = auth::claims(&request)?;
        Ok(Response::new(
            qa::report(&self.db, who, request.get_ref()).await?,
        ))
    }

    #[tracing::instrument(skip_all)]
    async fn list_due(
        &self,
        request: Request<ListDueRequest>,
    ) -> Result<Response<ListDueResponse>, Status> {
        let who = auth::claims(&request)?;
        Ok(Response::new(
            aftercare::list_due(&self.db, who, request.get_ref(), self.now()).await?,
        ))
    }

    #[tracing::instrument(skip_all)]
    async fn register_officer(
        &self,
        request: Request<RegisterOfficerRequest>,
    ) -> Result<Response<Officer>, Status> {
        let who = auth::claims(&request)?.clone();
        let now = self.clock.now();
        officers::register(&self.db, &who, request.into_inner(), now)
            .await
            .map(Response::new)
    }

    #[tracing::instrument(skip_all)]
    async fn reassign_officer(
        &self,
        request: Request<ReassignOfficerRequest>,
    ) -> Result<Response<Officer>, Status> {
        let who = auth::claims(&request)?.clone();
        let now = self.clock.now();
        officers::reassign(&self.db, &self.redis, &who, request.into_inner(), now)
            .await
            .map(Response::new)
    }

    #[tracing::instrument(skip_all)]
    async fn deactivate_officer(
        &self,
        request: Request<DeactivateOfficerRequest>,
    ) -> Result<Response<Officer>, Status> {
        let who = auth::claims(&request)?.clone();
        let now = self.clock.now();
        officers::deactivate(&self.db, &self.redis, &who, request.into_inner(), now)
            .await
            .map(Response::new)
    }

    #[tracing::instrument(skip_all)]
    async fn list_officers(
        &self,
        request: Request<ListOfficersRequest>,
    ) -> Result<Response<ListOfficersResponse>, Status> {
        let who = auth::claims(&request)?;
        officers::list(&self.db, who, request.get_ref())
            .await
            .map(Response::new)
    }
}
