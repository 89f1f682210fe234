//! Reading cases: one case with its files and history (the read audited first), a page
//! of cases by region and state, and an officer's work queue.

use chrono::{DateTime, Utc};
use dtks_platform::auth::Claims;
use dtks_platform::grpc;
use dtks_proto::common::v1 as pb;
use dtks_proto::verivali::v1::*;
use prost::Message;
use sea_orm::{ConnectionTrait, QueryResult};
use tonic::Status;

use crate::Verivali;
use crate::aftercare::{self, listing_region};
use crate::cases::{self, timestamp};
use crate::error::Result;
use crate::review::case_id;
use crate::store;
use crate::workflow;

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
        .and_then(|a| serde_json::from_value::<crate::assessment::Assessment>(a).ok())
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

impl Verivali {
    /// The whole case: history, household, reviews, and the assessment (or, before the
    /// ministry's, the automatic verdict as it stands).
    pub(crate) async fn load(
        &self,
        db: &impl ConnectionTrait,
        who: &Claims,
        id: uuid::Uuid,
    ) -> Result<Case> {
        let row = store::case(db, id)
            .await?
            .ok_or_else(|| Status::not_found("no such case"))?;
        let mut case = summary(&row)?;
        who.require_region(&case.region_code)?;
        case.village_review = decode(row.try_get("", "village_review")?);
        case.field_visit = decode(row.try_get("", "field_visit")?);
        let content = cases::content_of(&row)?;
        if case.assessment.is_none() {
            case.assessment =
                Some(crate::assessment::assess(&content, self.now().date_naive()).to_proto());
        }
        case.household = Some(content.household);
        case.history = store::history(db, id).await?;
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
    ) -> Result<ListCasesResponse> {
        let page = aftercare::page(page)?;
        let (rows, next_page_token) =
            store::page(&self.db, &page, region, states, waited_since).await?;
        let cases = rows.iter().map(summary).collect::<Result<Vec<_>, _>>()?;
        Ok(ListCasesResponse {
            page: Some(pb::PageResponse { next_page_token }),
            cases,
        })
    }

    pub(crate) async fn get_case(&self, who: &Claims, req: &GetCaseRequest) -> Result<Case> {
        let id = case_id(&req.case_id)?;
        let case = self.load(&self.db, who, id).await?;
        // The case file names the household's members: the read is audited first.
        dtks_platform::audit::record(&self.db, who, "verivali.GetCase", &[id]).await?;
        Ok(case)
    }

    pub async fn list_cases(
        &self,
        who: &Claims,
        req: &ListCasesRequest,
    ) -> Result<ListCasesResponse> {
        let region = listing_region(who, &req.region_code)?;
        let states = match CaseState::try_from(req.state) {
            Ok(CaseState::Unspecified) => vec![],
            Ok(s) => vec![s],
            Err(_) => return Err(grpc::invalid_field("state", "is not a case state").into()),
        };
        if req.min_age_days > 3660 {
            return Err(grpc::invalid_field("min_age_days", "must be at most 3660").into());
        }
        let waited_since = self.now() - chrono::Duration::days(i64::from(req.min_age_days));
        self.list(region, &states, waited_since, req.page.as_ref())
            .await
    }

    pub async fn work_queue(
        &self,
        who: &Claims,
        req: &WorkQueueRequest,
    ) -> Result<ListCasesResponse> {
        let states = workflow::waiting_for(who.role);
        if states.is_empty() {
            return Err(Status::permission_denied(format!(
                "role {:?} takes no step in verivali",
                who.role
            ))
            .into());
        }
        self.list(&who.region, &states, self.now(), req.page.as_ref())
            .await
    }
}
