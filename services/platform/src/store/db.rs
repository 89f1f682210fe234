//! PostgreSQL: one schema per service (the connection's `search_path`), statements with
//! positional parameters, and a migration written as SQL (the schema module runs them).

use sea_orm::{ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbErr, Statement};
use sea_orm_migration::{MigrationName, MigrationTrait, SchemaManager};
use secrecy::ExposeSecret;

pub use sea_orm_migration::{MigrationTrait as Migration, MigratorTrait as Migrator};

use crate::config::DatabaseConfig;

/// Connects with `search_path` set to `schema`, creating the schema if needed.
pub async fn connect(config: &DatabaseConfig, schema: &str) -> Result<DatabaseConnection, DbErr> {
    connect_with(config.url.expose_secret(), schema, config.max_connections).await
}

pub(crate) async fn connect_with(
    url: &str,
    schema: &str,
    max: u32,
) -> Result<DatabaseConnection, DbErr> {
    let mut options = ConnectOptions::new(url.to_owned());
    options
        .max_connections(max)
        .min_connections(1)
        .sqlx_logging(false)
        .set_schema_search_path(schema.to_owned());
    let db = Database::connect(options).await?;
    db.execute_unprepared(&format!("CREATE SCHEMA IF NOT EXISTS \"{schema}\""))
        .await?;
    Ok(db)
}

/// A migration written as SQL. Applied migrations are never edited: add a new one.
pub struct SqlMigration {
    pub name: &'static str,
    pub sql: &'static str,
}

impl MigrationName for SqlMigration {
    fn name(&self) -> &str {
        self.name
    }
}

#[sea_orm_migration::async_trait::async_trait]
impl MigrationTrait for SqlMigration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared(self.sql)
            .await?;
        Ok(())
    }
}

/// A statement with positional parameters (`$1`, `$2`, …).
pub fn stmt(sql: &str, values: impl IntoIterator<Item = sea_orm::Value>) -> Statement {
    Statement::from_sql_and_values(sea_orm::DbBackend::Postgres, sql, values)
}

/// The row of `E` whose primary key is `key`, locked until the transaction ends when
/// `lock` (`FOR UPDATE`).
pub async fn find<E, C>(
    db: &C,
    key: <E::PrimaryKey as sea_orm::PrimaryKeyTrait>::ValueType,
    lock: bool,
) -> Result<Option<E::Model>, DbErr>
where
    E: sea_orm::EntityTrait,
    C: ConnectionTrait,
{
    use sea_orm::QuerySelect;
    let query = E::find_by_id(key);
    let query = if lock { query.lock_exclusive() } else { query };
    query.one(db).await
}

/// Inserts `row` unless a row of its primary key exists; whether it was inserted.
pub async fn insert_new<A, C>(db: &C, row: A) -> Result<bool, DbErr>
where
    A: sea_orm::ActiveModelTrait + Send,
    C: ConnectionTrait,
{
    use sea_orm::{EntityTrait, Iterable, PrimaryKeyToColumn};
    let key = <A::Entity as EntityTrait>::PrimaryKey::iter().map(|k| k.into_column());
    let inserted = <A::Entity as EntityTrait>::insert(row)
        .on_conflict_do_nothing_on(key)
        .exec_without_returning(db)
        .await?;
    Ok(matches!(inserted, sea_orm::TryInsertResult::Inserted(n) if n > 0))
}
