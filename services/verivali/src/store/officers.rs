//! The officers' registry as a sea-orm entity: one row per officer (its role, region
//! and whether it is active), each change kept in `officer_history`. The table has the
//! plain shape an ORM serves well, so it is read and written through the entity;
//! `officer_history` is appended with a statement.

use chrono::{DateTime, Utc};
use dtks_platform::db::{self, stmt};
use sea_orm::ActiveValue::{NotSet, Set, Unchanged};
use sea_orm::entity::prelude::*;
use sea_orm::{Condition, ConnectionTrait, QueryOrder, QuerySelect};

use crate::error::Result;

/// A row of `officers`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "officers")]
pub struct Model {
    /// The officer's subject at the identity provider.
    #[sea_orm(primary_key, auto_increment = false)]
    pub subject: String,
    pub display_name: String,
    pub role: String,
    /// Empty for a national role.
    pub region_code: String,
    pub active: bool,
    pub assigned_at: DateTime<Utc>,
    pub assigned_by: String,
    /// When the tokens issued before the last change were revoked.
    pub tokens_revoked_at: Option<DateTime<Utc>>,
    pub reason: String,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

/// The officer of `subject`, locked until the transaction ends when `lock`.
pub async fn load<C: ConnectionTrait>(db: &C, subject: &str, lock: bool) -> Result<Option<Model>> {
    Ok(db::find::<Entity, _>(db, subject.to_owned(), lock).await?)
}

/// Registers a new officer; `false` when the subject is already registered.
pub async fn register<C: ConnectionTrait>(db: &C, officer: Model) -> Result<bool> {
    Ok(db::insert_new(db, ActiveModel::from(officer).reset_all()).await?)
}

/// The officer's new assignment (or deactivation), as it now stands.
pub async fn reassign<C: ConnectionTrait>(db: &C, officer: Model) -> Result<Model> {
    let changed = ActiveModel {
        subject: Unchanged(officer.subject),
        display_name: NotSet,
        role: Set(officer.role),
        region_code: Set(officer.region_code),
        active: Set(officer.active),
        assigned_at: Set(officer.assigned_at),
        assigned_by: Set(officer.assigned_by),
        tokens_revoked_at: Set(officer.tokens_revoked_at),
        reason: Set(officer.reason),
    };
    Ok(changed.update(db).await?)
}

/// A page of the officers of `region` (and below it; every officer when empty), in the
/// order of their subjects after `after`.
pub async fn page<C: ConnectionTrait>(
    db: &C,
    region: &str,
    include_inactive: bool,
    after: &str,
    size: u32,
) -> Result<Vec<Model>> {
    let mut query = Entity::find().filter(Column::Subject.gt(after));
    if !region.is_empty() {
        let within = Condition::any()
            .add(Column::RegionCode.eq(region))
            .add(Column::RegionCode.starts_with(format!("{region}.")));
        query = query.filter(within);
    }
    if !include_inactive {
        query = query.filter(Column::Active.eq(true));
    }
    let page = query.order_by_asc(Column::Subject).limit(u64::from(size));
    Ok(page.all(db).await?)
}

/// One change of an officer, as `officer_history` keeps it.
pub struct Change<'a> {
    pub kind: &'a str,
    pub by: &'a str,
    pub at: DateTime<Utc>,
}

/// Appends `officer`'s state after `change` to its history.
pub async fn history<C: ConnectionTrait>(
    db: &C,
    officer: &Model,
    change: Change<'_>,
) -> Result<()> {
    db.execute_raw(stmt(
        "INSERT INTO officer_history (subject, change, role, region_code, active, changed_at, changed_by, reason)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        [
            officer.subject.clone().into(),
            change.kind.into(),
            officer.role.clone().into(),
            officer.region_code.clone().into(),
            officer.active.into(),
            change.at.into(),
            change.by.into(),
            officer.reason.clone().into(),
        ],
    ))
    .await?;
    Ok(())
}
