//! Officers (*petugas*): who holds which role for which region. The identity provider
//! says who someone is; this registry says what they may do for DTKS, keeps every change
//! (`officer_history`), writes each to the audit log, and — when an officer is reassigned
//! or deactivated — revokes every token they held before, in every service, through the
//! revocation channel (`dtks_platform::revocation`), in the same step: if the revocation
//! cannot be published the change is not made.
//!
//! Who manages whom: Pusdatin every role; a province officer the regency and village
//! roles of its province; a regency officer the village operators of its regency.

use chrono::{DateTime, Utc};
use dtks_domain::region::{RegionCode, RegionLevel};
use dtks_platform::access::Reach;
use dtks_platform::auth::{Claims, Role};
use dtks_platform::config::RedisConfig;
use dtks_platform::grpc;
use dtks_proto::verivali::v1::*;
use sea_orm::{ConnectionTrait, DatabaseConnection, TransactionTrait};
use tonic::Status;

use crate::Verivali;
use crate::error::Result;

use crate::aftercare::{self, listing_region};
use crate::cases::timestamp;
use crate::store::officers as store;

const MAX_TEXT: usize = 200;

/// An officer as the API answers it.
fn officer(row: store::Model) -> Officer {
    Officer {
        subject: row.subject,
        display_name: row.display_name,
        role: row.role,
        region_code: row.region_code,
        active: row.active,
        assigned_at: Some(timestamp(row.assigned_at)),
        assigned_by: row.assigned_by,
        tokens_revoked_at: row.tokens_revoked_at.map(timestamp),
        reason: row.reason,
    }
}

/// Checks a text field: present, short, printable.
fn text(field: &str, value: &str, required: bool) -> Result<()> {
    if required && value.trim().is_empty() {
        return Err(grpc::invalid_field(field, "is required").into());
    }
    if value.chars().count() > MAX_TEXT {
        return Err(
            grpc::invalid_field(field, format!("must be at most {MAX_TEXT} characters")).into(),
        );
    }
    if value.chars().any(char::is_control) {
        return Err(grpc::invalid_field(field, "must not hold control characters").into());
    }
    Ok(())
}

/// The role named by `name`, if officers may hold it (services and the public are not
/// officers).
fn role(field: &str, name: &str) -> Result<Role> {
    let role: Role =
        serde_json::from_value(serde_json::Value::String(name.to_owned())).map_err(|_| {
            let names: Vec<&str> = Role::ALL.iter().map(|r| r.as_str()).collect();
            grpc::invalid_field(field, format!("must be one of {}", names.join(", ")))
        })?;
    if matches!(role, Role::Service | Role::Public) {
        return Err(grpc::invalid_field(field, "services and the public are not officers").into());
    }
    Ok(role)
}

/// The region a role's assignment names: of the role's reach, and in the reference data.
async fn region<C: ConnectionTrait>(db: &C, field: &str, role: Role, code: &str) -> Result<String> {
    let wanted = match role.reach() {
        Reach::National => {
            return if code.is_empty() {
                Ok(String::new())
            } else {
                Err(grpc::invalid_field(
                    field,
                    format!("a {} is national: leave it empty", role.title()),
                )
                .into())
            };
        }
        Reach::Province => RegionLevel::Province,
        Reach::Regency => RegionLevel::Regency,
        Reach::Village => RegionLevel::Village,
    };
    let parsed = RegionCode::parse(code).map_err(|e| grpc::invalid_field(field, e.to_string()))?;
    if parsed.level() != wanted {
        return Err(grpc::invalid_field(
            field,
            format!("a {} is assigned to a {wanted:?} code", role.title()).to_lowercase(),
        )
        .into());
    }
    if !dtks_platform::reference::exists(db, code).await? {
        return Err(grpc::invalid_field(field, "is not a region of the reference data").into());
    }
    Ok(code.to_owned())
}

/// Whether `who` may manage an officer holding `role` in `region`.
fn may_manage(who: &Claims, role: Role, region: &str) -> Result<()> {
    let allowed = match who.role {
        Role::PusdatinAdmin => true,
        Role::ProvinceOfficer => matches!(role.reach(), Reach::Regency | Reach::Village),
        Role::RegencyOfficer => role == Role::VillageOperator,
        _ => false,
    };
    if !allowed {
        return Err(Status::permission_denied(format!(
            "a {} does not manage {} assignments",
            who.role.title(),
            role.title()
        ))
        .into());
    }
    Ok(who.require_region(region)?)
}

async fn load<C: ConnectionTrait>(db: &C, subject: &str, lock: bool) -> Result<store::Model> {
    store::load(db, subject, lock)
        .await?
        .ok_or_else(|| Status::not_found("no officer with this subject").into())
}

/// Records a change of `o`: its history row and the audit entry.
async fn history<C: ConnectionTrait + TransactionTrait>(
    db: &C,
    who: &Claims,
    kind: &str,
    o: &store::Model,
    at: DateTime<Utc>,
) -> Result<()> {
    let change = store::Change {
        kind,
        by: &who.sub,
        at,
    };
    store::history(db, o, change).await?;
    let subjects = std::slice::from_ref(&o.subject);
    dtks_platform::audit::record(db, who, &format!("verivali.{kind}Officer"), subjects).await?;
    Ok(())
}

impl Verivali {
    pub async fn register_officer(
        &self,
        who: &Claims,
        req: &RegisterOfficerRequest,
    ) -> Result<Officer> {
        let (db, now) = (&self.db, self.now());
        text("subject", &req.subject, true)?;
        text("display_name", &req.display_name, true)?;
        let role = role("role", &req.role)?;
        let region = region(db, "region_code", role, &req.region_code).await?;
        may_manage(who, role, &region)?;
        let txn = db.begin().await?;
        let new = store::Model {
            subject: req.subject.clone(),
            display_name: req.display_name.clone(),
            role: role.as_str().to_owned(),
            region_code: region,
            active: true,
            assigned_at: now,
            assigned_by: who.sub.clone(),
            tokens_revoked_at: None,
            reason: String::new(),
        };
        if !store::register(&txn, new).await? {
            return Err(Status::already_exists(
                "an officer with this subject is registered; reassign or deactivate them",
            )
            .into());
        }
        let o = load(&txn, &req.subject, false).await?;
        history(&txn, who, "Register", &o, now).await?;
        txn.commit().await?;
        Ok(officer(o))
    }
}

/// Reassigns or deactivates: the change and its revocation commit together.
async fn change(
    db: &DatabaseConnection,
    redis: &RedisConfig,
    who: &Claims,
    subject: &str,
    new: Option<(Role, String)>,
    reason: &str,
    now: DateTime<Utc>,
) -> Result<Officer> {
    let txn = db.begin().await?;
    let current = load(&txn, subject, true).await?;
    // The manager must reach the officer where they are now, and where they go.
    let current_role = role("role", &current.role)?;
    may_manage(who, current_role, &current.region_code)?;
    if let Some((role, region)) = &new {
        may_manage(who, *role, region)?;
    } else if !current.active {
        return Err(Status::failed_precondition("the officer is already deactivated").into());
    }
    let (role, region, active, kind) = match new {
        Some((role, region)) => (role.as_str().to_owned(), region, true, "Reassign"),
        None => (
            current.role.clone(),
            current.region_code.clone(),
            false,
            "Deactivate",
        ),
    };
    // Published first: if the revocation cannot be sent nothing changes (the officer's
    // tokens are refused from here on even if the commit then fails — the safe side).
    // A reassignment revokes what was issued before it; a deactivation refuses every
    // token of the officer, whenever issued, until a reassignment.
    let revoked = if active {
        dtks_platform::revocation::revoke(redis, subject).await
    } else {
        dtks_platform::revocation::deactivate(redis, subject).await
    };
    let revoked_at = revoked.map_err(|e| {
        tracing::error!(error = %e, "revocation not published");
        Status::unavailable("the revocation could not be published; nothing was changed")
    })?;
    let revoked_at = DateTime::from_timestamp(revoked_at, 0).unwrap_or(now);
    let changed = store::Model {
        role,
        region_code: region,
        active,
        assigned_at: now,
        assigned_by: who.sub.clone(),
        tokens_revoked_at: Some(revoked_at),
        reason: reason.to_owned(),
        ..current
    };
    let o = store::reassign(&txn, changed).await?;
    history(&txn, who, kind, &o, now).await?;
    txn.commit().await?;
    Ok(officer(o))
}

impl Verivali {
    pub async fn reassign_officer(
        &self,
        who: &Claims,
        req: &ReassignOfficerRequest,
    ) -> Result<Officer> {
        let (db, redis, now) = (&self.db, &self.redis, self.now());
        text("subject", &req.subject, true)?;
        text("reason", &req.reason, true)?;
        let role = role("role", &req.role)?;
        let region = region(db, "region_code", role, &req.region_code).await?;
        change(
            db,
            redis,
            who,
            &req.subject,
            Some((role, region)),
            &req.reason,
            now,
        )
        .await
    }
}

impl Verivali {
    pub(crate) async fn deactivate_officer(
        &self,
        who: &Claims,
        req: &DeactivateOfficerRequest,
    ) -> Result<Officer> {
        let (db, redis, now) = (&self.db, &self.redis, self.now());
        text("subject", &req.subject, true)?;
        text("reason", &req.reason, true)?;
        change(db, redis, who, &req.subject, None, &req.reason, now).await
    }
}

impl Verivali {
    pub(crate) async fn list_officers(
        &self,
        who: &Claims,
        req: &ListOfficersRequest,
    ) -> Result<ListOfficersResponse> {
        let db = &self.db;
        let region = listing_region(who, &req.region_code)?;
        let request = req.page.clone().unwrap_or_default();
        let size = match request.page_size {
            0 => 100,
            n @ 1..=aftercare::MAX_PAGE => n,
            _ => {
                return Err(grpc::invalid_field(
                    "page.page_size",
                    format!("must be at most {}", aftercare::MAX_PAGE),
                )
                .into());
            }
        };
        let after = match request.page_token.as_str() {
            "" => String::new(),
            token => token
                .strip_prefix("o1.")
                .filter(|s| !s.is_empty())
                .ok_or_else(|| {
                    grpc::invalid_field("page.page_token", "is not a token this service issued")
                })?
                .to_owned(),
        };
        let rows = store::page(db, region, req.include_inactive, &after, size).await?;
        let officers: Vec<Officer> = rows.into_iter().map(officer).collect();
        // Officers' names are personal data: the listing is audited.
        let subjects: Vec<String> = officers.iter().map(|o| o.subject.clone()).collect();
        if !subjects.is_empty() {
            dtks_platform::audit::record(db, who, "verivali.ListOfficers", &subjects).await?;
        }
        let next_page_token = match officers.last() {
            Some(last) if officers.len() == size as usize => format!("o1.{}", last.subject),
            _ => String::new(),
        };
        Ok(ListOfficersResponse {
            officers,
            page: Some(dtks_proto::common::v1::PageResponse { next_page_token }),
        })
    }
}
