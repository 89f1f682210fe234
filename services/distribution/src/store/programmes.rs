//! Programmes as a sea-orm entity: one row per programme at its current version, each
//! version also kept in `programme_versions` (appended with a statement).

use dtks_platform::db::{self, stmt};
use sea_orm::entity::prelude::*;
use sea_orm::{ConnectionTrait, QueryOrder};

use crate::error::Result;

/// A row of `programmes`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "programmes")]
pub struct Model {
    /// PKH, BPNT, PBI-JKN, …
    #[sea_orm(primary_key, auto_increment = false)]
    pub code: String,
    pub name: String,
    /// 1 when saved first; one more with each change.
    pub version: i32,
    /// Where the criteria come from (a regulation, a decree).
    pub source: String,
    /// The eligibility rule, in CEL.
    pub rule: String,
    /// Households per regency code.
    pub quotas: Json,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

/// The programme of `code`, locked until the transaction ends when `lock`.
pub async fn find<C: ConnectionTrait>(db: &C, code: &str, lock: bool) -> Result<Option<Model>> {
    Ok(db::find::<Entity, _>(db, code.to_owned(), lock).await?)
}

/// Every programme, by code.
pub async fn all<C: ConnectionTrait>(db: &C) -> Result<Vec<Model>> {
    Ok(Entity::find().order_by_asc(Column::Code).all(db).await?)
}

/// Adds a programme unless one of its code exists; whether it was added.
pub async fn add<C: ConnectionTrait>(db: &C, programme: Model) -> Result<bool> {
    Ok(db::insert_new(db, ActiveModel::from(programme).reset_all()).await?)
}

/// Writes a changed programme (its version already counted up).
pub async fn change<C: ConnectionTrait>(db: &C, programme: Model) -> Result<()> {
    ActiveModel::from(programme).reset_all().update(db).await?;
    Ok(())
}

/// Keeps the programme's current version in `programme_versions`, saved by `by`.
pub async fn keep_version<C: ConnectionTrait>(db: &C, code: &str, by: &str) -> Result<()> {
    db.execute_raw(stmt(
        "INSERT INTO programme_versions (code, version, name, rule, quotas, source, saved_by)
         SELECT code, version, name, rule, quotas, source, $2 FROM programmes WHERE code = $1",
        [code.into(), by.into()],
    ))
    .await?;
    Ok(())
}
