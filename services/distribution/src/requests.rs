//! Data requests (*permohonan data*, Permensos 3/2021 on the use of DTKS): who files a
//! request of each kind, who decides it, and the life of a request — pending, approved
//! or rejected, revoked, expired at the end of its period of use — with the handover
//! minutes (*berita acara serah terima*) its user acknowledges before any delivery.
//!
//! Every decision is one row of history; nothing is ever deleted or rewritten but the
//! request's current state.

use chrono::{DateTime, Utc};
use dtks_platform::auth::{Claims, Role};
use dtks_platform::fault::Fault;
use dtks_platform::{convert, grpc};
use dtks_proto::distribution::v1::{
    CreateDataRequestRequest, DataKind, DataRequest, DecideDataRequestRequest as Decide,
    GetDataRequestRequest, RecordHandoverRequest, RequestStatus, RequesterKind,
};
use sea_orm::{ConnectionTrait, DatabaseTransaction, TransactionTrait};
use tonic::Status;

use crate::Distribution;
use crate::error::Result;
use crate::store::requests as store;
pub use crate::store::requests::Stored;

/// One approval route: who files a request of a kind and who decides it.
#[derive(Debug, Clone, Copy)]
pub struct Route {
    pub kind: RequesterKind,
    /// The role that files requests of this kind.
    pub files: Role,
    /// The role the regulation names to approve, reject or revoke them.
    pub decides: Role,
    /// The deciding authority, in words.
    pub authority: &'static str,
}

/// The routes: the ministry's Eselon I units ask the data unit (Pusdatin); ministries
/// and agencies (K/L) are approved by the Minister; regional governments (Pemda) by the
/// Eselon I official for data; the public by the PPID.
pub const ROUTES: [Route; 4] = [
    Route {
        kind: RequesterKind::EselonI,
        files: Role::EselonI,
        decides: Role::PusdatinAdmin,
        authority: "the data unit (Pusdatin)",
    },
    Route {
        kind: RequesterKind::Kl,
        files: Role::KlUser,
        decides: Role::Minister,
        authority: "the Minister",
    },
    Route {
        kind: RequesterKind::Pemda,
        files: Role::PemdaUser,
        decides: Role::DataOfficial,
        authority: "the Eselon I official for data",
    },
    Route {
        kind: RequesterKind::Public,
        files: Role::Public,
        decides: Role::Ppid,
        authority: "the PPID",
    },
];

pub fn route(kind: RequesterKind) -> Option<&'static Route> {
    ROUTES.iter().find(|r| r.kind == kind)
}

/// The longest period of use one request may ask for: a user asks again each year.
pub const MAX_USE_DAYS: i64 = 366;

/// What a decision does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Approve,
    Reject,
    Revoke,
}

impl Decision {
    fn verb(self) -> &'static str {
        match self {
            Decision::Approve => "approve",
            Decision::Reject => "reject",
            Decision::Revoke => "revoke",
        }
    }

    /// The state a request must be in, and the one the decision leads to.
    fn transition(self) -> (RequestStatus, RequestStatus) {
        match self {
            Decision::Approve => (RequestStatus::Pending, RequestStatus::Approved),
            Decision::Reject => (RequestStatus::Pending, RequestStatus::Rejected),
            Decision::Revoke => (RequestStatus::Approved, RequestStatus::Revoked),
        }
    }
}

fn time_of(field: &str, t: Option<&prost_types::Timestamp>) -> Result<DateTime<Utc>> {
    let t = t.ok_or_else(|| grpc::invalid_field(field, "is required"))?;
    Ok(DateTime::from_timestamp(t.seconds, t.nanos.max(0) as u32)
        .ok_or_else(|| grpc::invalid_field(field, "is not a valid time"))?)
}

fn timestamp(t: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: t.timestamp_subsec_nanos() as i32,
    }
}

impl Stored {
    /// The request as its filer, its authority and the data unit see it at `now`.
    pub fn to_proto(&self, now: DateTime<Utc>) -> DataRequest {
        DataRequest {
            request_id: self.request_id.to_string(),
            requester_kind: self.kind as i32,
            requester: self.requester.clone(),
            purpose: self.purpose.clone(),
            region_code: self.region_code.clone(),
            data_kinds: self.data_kinds.iter().map(|k| *k as i32).collect(),
            use_from: Some(timestamp(self.use_from)),
            use_until: Some(timestamp(self.use_until)),
            status: self.status_at(now) as i32,
            decided_by: self.decided_by.clone().unwrap_or_default(),
            decision_reason: self.decision_reason.clone().unwrap_or_default(),
            handover_acknowledged: self.handover.is_some(),
            requested_by: self.requested_by.clone(),
            approver_role: route(self.kind)
                .map(|r| r.decides.as_str().to_owned())
                .unwrap_or_default(),
            handover_minutes_number: self
                .handover
                .as_ref()
                .map(|h| h.0.clone())
                .unwrap_or_default(),
            handover_minutes_date: self.handover.as_ref().map(|h| convert::pb_date(h.1)),
            created_at: Some(timestamp(self.created_at)),
            decided_at: self.decided_at.map(timestamp),
        }
    }
}

/// Records `who`'s act on request `id` in its history, commits, and answers the request
/// as it now stands.
async fn recorded(
    txn: DatabaseTransaction,
    id: uuid::Uuid,
    who: &Claims,
    (action, reason): (&str, &str),
    now: DateTime<Utc>,
) -> Result<DataRequest> {
    store::history(&txn, id, who, action, reason).await?;
    let stored: Stored = store::by_id(&txn, id, false)
        .await?
        .ok_or_else(|| Fault::Other("request vanished".into()))?;
    txn.commit().await?;
    Ok(stored.to_proto(now))
}

/// A request as filed, once checked.
struct Checked {
    route: Route,
    kinds: Vec<DataKind>,
    from: DateTime<Utc>,
    until: DateTime<Utc>,
}

/// The request as filed, checked whole: every problem is named with its field.
fn check_new(who: &Claims, req: &CreateDataRequestRequest, now: DateTime<Utc>) -> Result<Checked> {
    let kind = RequesterKind::try_from(req.requester_kind)
        .ok()
        .and_then(route)
        .ok_or_else(|| {
            grpc::invalid_field("requester_kind", "must be ESELON_I, KL, PEMDA or PUBLIC")
        })?;
    if who.role != kind.files {
        return Err(Status::permission_denied(format!(
            "a {:?} request is filed by role {}; the caller is {}",
            kind.kind,
            kind.files.as_str(),
            who.role.as_str()
        ))
        .into());
    }
    let mut v = dtks_domain::Violations::default();
    v.text(
        "requester",
        &req.requester,
        200,
        "must name the requesting body (1 to 200 characters)",
    );
    v.text(
        "purpose",
        &req.purpose,
        2000,
        "must state what the data is for (1 to 2,000 characters)",
    );
    if !req.region_code.is_empty()
        && let Err(e) = dtks_domain::RegionCode::parse(&req.region_code)
    {
        v.push("region_code", format!("{e}; empty for the whole country"));
    }
    let mut kinds = Vec::new();
    for (i, k) in req.data_kinds.iter().enumerate() {
        match DataKind::try_from(*k) {
            Ok(DataKind::Unspecified) | Err(_) => {
                v.push(format!("data_kinds[{i}]"), "is not a kind of data")
            }
            Ok(k) if kinds.contains(&k) => v.push(format!("data_kinds[{i}]"), "is named twice"),
            Ok(k) => kinds.push(k),
        }
    }
    if req.data_kinds.is_empty() {
        v.push("data_kinds", "must name at least one kind of data");
    }
    let from = time_of("use_from", req.use_from.as_ref());
    let until = time_of("use_until", req.use_until.as_ref());
    match (&from, &until) {
        (Ok(from), Ok(until)) => {
            if until <= from {
                v.push("use_until", "must be after use_from");
            } else if *until - *from > chrono::Duration::days(MAX_USE_DAYS) {
                v.push(
                    "use_until",
                    format!("a request covers at most {MAX_USE_DAYS} days of use"),
                );
            }
            if *until <= now {
                v.push("use_until", "is already past");
            }
        }
        (Err(_), _) | (_, Err(_)) => {
            for (field, t) in [("use_from", &from), ("use_until", &until)] {
                if t.is_err() {
                    v.push(field, "is required and must be a valid time");
                }
            }
        }
    }
    if !v.is_empty() {
        return Err(grpc::invalid_argument(&v).into());
    }
    // Within the caller's own region: a regency's government asks for its regency.
    who.require_region(&req.region_code)?;
    Ok(Checked {
        route: *kind,
        kinds,
        from: from?,
        until: until?,
    })
}

fn request_id(text: &str) -> Result<uuid::Uuid> {
    Ok(uuid::Uuid::parse_str(text)
        .map_err(|_| grpc::invalid_field("request_id", "must be a UUID"))?)
}

/// Whether `who` may see the request at all: the officer who filed it, the authority
/// that decides it, and the data unit. To anyone else it does not exist.
fn may_see(who: &Claims, r: &Stored) -> bool {
    r.filed_by(who)
        || who.role == Role::PusdatinAdmin
        || route(r.kind).is_some_and(|route| route.decides == who.role)
}
impl Distribution {
    pub async fn create_data_request(
        &self,
        who: &Claims,
        req: &CreateDataRequestRequest,
    ) -> Result<DataRequest> {
        let db = &self.db;
        let now = dtks_platform::clock::now();
        let Checked {
            route,
            kinds,
            from,
            until,
        } = check_new(who, req, now)?;
        let id = uuid::Uuid::now_v7();
        let txn = db.begin().await?;
        store::insert(
            &txn,
            &store::New {
                id,
                kind: route.kind,
                requester: req.requester.trim(),
                requested_by: &who.sub,
                filer: &who.identity(),
                purpose: req.purpose.trim(),
                region_code: &req.region_code,
                kinds: &kinds,
                use_from: from,
                use_until: until,
                created_at: now,
            },
        )
        .await?;
        recorded(txn, id, who, ("filed", ""), now).await
    }
}
impl Distribution {
    pub async fn get_data_request(
        &self,
        who: &Claims,
        req: &GetDataRequestRequest,
    ) -> Result<DataRequest> {
        let (db, id) = (&self.db, &req.request_id);
        let id = request_id(id)?;
        let now = dtks_platform::clock::now();
        match store::by_id(db, id, false).await? {
            Some(r) if may_see(who, &r) => Ok(r.to_proto(now)),
            _ => Err(Status::not_found(format!("no data request {id}")).into()),
        }
    }
}

impl Distribution {
    /// The deciding authority approves a pending request.
    pub async fn approve_data_request(&self, who: &Claims, req: &Decide) -> Result<DataRequest> {
        self.decide(who, req, Decision::Approve).await
    }

    /// The deciding authority rejects a pending request, with its reason.
    pub async fn reject_data_request(&self, who: &Claims, req: &Decide) -> Result<DataRequest> {
        self.decide(who, req, Decision::Reject).await
    }

    /// The deciding authority revokes an approved request, with its reason.
    pub async fn revoke_data_request(&self, who: &Claims, req: &Decide) -> Result<DataRequest> {
        self.decide(who, req, Decision::Revoke).await
    }

    async fn decide(&self, who: &Claims, req: &Decide, decision: Decision) -> Result<DataRequest> {
        let (db, reason) = (&self.db, &req.reason);
        let id = request_id(&req.request_id)?;
        let reason = reason.trim();
        if decision != Decision::Approve && reason.is_empty() {
            return Err(grpc::invalid_field(
                "reason",
                format!("is required to {} a request", decision.verb()),
            )
            .into());
        }
        let now = dtks_platform::clock::now();
        let txn = db.begin().await?;
        let stored = match store::by_id(&txn, id, true).await? {
            Some(r) if may_see(who, &r) => r,
            _ => return Err(Status::not_found(format!("no data request {id}")).into()),
        };
        let route = route(stored.kind).ok_or_else(|| Status::internal("request of no kind"))?;
        if who.role != route.decides {
            return Err(Status::permission_denied(format!(
                "a {:?} request is decided by {} (role {}); the caller is {}",
                stored.kind,
                route.authority,
                route.decides.as_str(),
                who.role.as_str()
            ))
            .into());
        }
        who.require_region(&stored.region_code)?;
        let (from, to) = decision.transition();
        let current = stored.status_at(now);
        if current != from {
            return Err(grpc::failed_preconditions(&[(
                "STATE".into(),
                format!("data request {id}"),
                format!(
                    "the request is {}; to {} it, it must be {}",
                    current.as_str_name(),
                    decision.verb(),
                    from.as_str_name()
                ),
            )])
            .into());
        }
        store::decide(&txn, id, to, &who.sub, reason, now).await?;
        recorded(txn, id, who, (decision.verb(), reason), now).await
    }
}

impl Distribution {
    /// The handover minutes: recorded by the officer who filed the request, once it is
    /// approved, with the user's obligations (no third parties, keep the data secure)
    /// acknowledged. Recording the same minutes again answers the request as it is.
    pub async fn record_handover(
        &self,
        who: &Claims,
        req: &RecordHandoverRequest,
    ) -> Result<DataRequest> {
        let db = &self.db;
        let id = request_id(&req.request_id)?;
        let mut v = dtks_domain::Violations::default();
        let number = v.text(
            "minutes_number",
            &req.minutes_number,
            100,
            "must be the minutes' number (1 to 100 characters)",
        );
        let date = req.minutes_date.as_ref().and_then(convert::naive_date);
        let today = dtks_platform::clock::today();
        match date {
            None => v.push("minutes_date", "is required and must be a valid date"),
            Some(d) if d > today => v.push("minutes_date", "is in the future"),
            Some(_) => {}
        }
        if !req.obligations_acknowledged {
            v.push(
                "obligations_acknowledged",
                "the user must acknowledge the obligations: no third parties, keep the data secure",
            );
        }
        if !v.is_empty() {
            return Err(grpc::invalid_argument(&v).into());
        }
        let date = date.ok_or_else(|| Status::internal("date checked above"))?;
        let now = dtks_platform::clock::now();
        let txn = db.begin().await?;
        let stored = match store::by_id(&txn, id, true).await? {
            Some(r) if may_see(who, &r) => r,
            _ => return Err(Status::not_found(format!("no data request {id}")).into()),
        };
        if !stored.filed_by(who) {
            return Err(Status::permission_denied(
                "the handover minutes are recorded by the officer who filed the request",
            )
            .into());
        }
        if let Some((recorded, _)) = &stored.handover {
            if recorded == number {
                return Ok(stored.to_proto(now));
            }
            return Err(grpc::failed_preconditions(&[(
                "STATE".into(),
                format!("data request {id}"),
                format!("handover minutes {recorded} are already recorded"),
            )])
            .into());
        }
        let current = stored.status_at(now);
        if current != RequestStatus::Approved {
            return Err(grpc::failed_preconditions(&[(
                "STATE".into(),
                format!("data request {id}"),
                format!(
                    "the request is {}; handover needs it REQUEST_STATUS_APPROVED",
                    current.as_str_name()
                ),
            )])
            .into());
        }
        store::handover(&txn, id, number, date, now).await?;
        recorded(txn, id, who, ("handover", number), now).await
    }
}

/// A request's data may be delivered now: approved, inside its period of use, handover
/// recorded. A delivery checks this before every batch, so that a revocation or the end
/// of the period stops it between two batches.
pub async fn deliverable(db: &impl ConnectionTrait, id: uuid::Uuid) -> Result<Stored> {
    let now = dtks_platform::clock::now();
    let stored: Stored = store::by_id(db, id, false)
        .await?
        .ok_or_else(|| Status::not_found(format!("no data request {id}")))?;
    let why = match stored.status_at(now) {
        RequestStatus::Approved if now < stored.use_from => {
            Some("its period of use has not begun".to_owned())
        }
        RequestStatus::Approved if stored.handover.is_none() => {
            Some("the handover minutes are not recorded yet".to_owned())
        }
        RequestStatus::Approved => None,
        other => Some(format!("the request is {}", other.as_str_name())),
    };
    match why {
        None => Ok(stored),
        Some(why) => Err(grpc::failed_preconditions(&[(
            "STATE".into(),
            format!("data request {id}"),
            format!("no delivery: {why}"),
        )])
        .into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_of_requester_has_one_route_and_no_one_decides_their_own() {
        for kind in [
            RequesterKind::EselonI,
            RequesterKind::Kl,
            RequesterKind::Pemda,
            RequesterKind::Public,
        ] {
            let r = route(kind).expect("a route");
            assert_ne!(r.files, r.decides, "{kind:?}");
            assert_eq!(ROUTES.iter().filter(|x| x.kind == kind).count(), 1);
        }
        assert!(route(RequesterKind::Unspecified).is_none());
        assert_eq!(
            route(RequesterKind::Kl).map(|r| r.decides),
            Some(Role::Minister)
        );
        assert_eq!(
            route(RequesterKind::Public).map(|r| r.decides),
            Some(Role::Ppid)
        );
    }
}
