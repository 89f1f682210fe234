//! Statements of distribution's schema: lists ([`lists`]) and their entries in chunks
//! ([`entries`]), data requests ([`requests`]), programmes ([`programmes`], an entity).
//! Deliveries keep theirs beside their use case (`delivery`). Migrations are
//! `migrations/*.sql`.

use dtks_platform::db::stmt;
use sea_orm::{ConnectionTrait, QueryResult};

use crate::error::Result;

pub mod entries;
pub mod lists;
pub mod programmes;
pub mod requests;

dtks_platform::sql_migrator![
    "m0001_programmes_and_lists",
    "m0002_data_requests",
    "m0003_programme_rules",
    "m0004_list_approval",
    "m0005_deliveries",
    "m0006_list_chunks",
    "m0007_request_filer",
];

/// A record kept in one row of its table, found by its id.
pub trait Row: Sized {
    /// `SELECT … WHERE <id column> = $1`.
    fn by_id() -> String;
    fn from_row(r: &QueryResult) -> Result<Self>;
}

/// The record of `id`, locked until the transaction ends when `lock`.
pub async fn by_id<T: Row>(
    db: &impl ConnectionTrait,
    id: uuid::Uuid,
    lock: bool,
) -> Result<Option<T>> {
    let lock = if lock { " FOR UPDATE" } else { "" };
    let sql = format!("{}{lock}", T::by_id());
    let row = db.query_one_raw(stmt(&sql, [id.into()])).await?;
    row.map(|r| T::from_row(&r)).transpose()
}
