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
