//! PostgreSQL: one schema per service (the connection's `search_path`), migrations per
//! service as plain SQL run by sea-orm-migration under an advisory lock, so that several
//! replicas (or the Helm hook Job and a developer) never migrate at once.

use sea_orm::{ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbErr, Statement};
use sea_orm_migration::{MigrationName, MigrationTrait, MigratorTrait, SchemaManager};
use secrecy::ExposeSecret;

pub use sea_orm_migration::{MigrationTrait as Migration, MigratorTrait as Migrator};

use crate::config::DatabaseConfig;

/// Connects with `search_path` set to `schema`, creating the schema if needed.
pub async fn connect(config: &DatabaseConfig, schema: &str) -> Result<DatabaseConnection, DbErr> {
    connect_with(config.url.expose_secret(), schema, config.max_connections).await
}

async fn connect_with(url: &str, schema: &str, max: u32) -> Result<DatabaseConnection, DbErr> {
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

/// The outbox and inbox every service has in its own schema.
pub const BUS_TABLES: SqlMigration = SqlMigration {
    name: "m0000_outbox_inbox",
    sql: r#"
CREATE TABLE outbox (
    id BIGSERIAL PRIMARY KEY,
    event_id UUID NOT NULL UNIQUE,
    event_type TEXT NOT NULL,
    envelope BYTEA NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    published_at TIMESTAMPTZ
);
CREATE INDEX outbox_unpublished ON outbox (id) WHERE published_at IS NULL;
CREATE TABLE inbox (
    event_id UUID PRIMARY KEY,
    event_type TEXT NOT NULL,
    received_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
"#,
};

/// The platform's bus tables and audit log followed by the service's own migrations.
pub fn sql_migrations(own: Vec<SqlMigration>) -> Vec<Box<dyn MigrationTrait>> {
    [
        BUS_TABLES,
        crate::audit::MIGRATION,
        crate::audit::TREE_MIGRATION,
    ]
    .into_iter()
    .chain(own)
    .map(|m| Box::new(m) as Box<dyn MigrationTrait>)
    .collect()
}

/// A crate's own migrations, each `migrations/NAME.sql` beside its `Cargo.toml`, in the
/// order named: `sql_files!["m0001_cases", "m0002_tasks"]`.
#[macro_export]
macro_rules! sql_files {
    ($($name:literal),* $(,)?) => {
        vec![$($crate::db::SqlMigration {
            name: $name,
            sql: include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/", $name, ".sql")),
        }),*]
    };
}

/// A service's `Migrator`: the platform's tables, then its own `migrations/NAME.sql` in
/// the order named: `sql_migrator!["m0001_cases", "m0002_tasks"]`.
#[macro_export]
macro_rules! sql_migrator {
    ($($name:literal),* $(,)?) => {
        /// The schema: the platform's tables, then `migrations/*.sql` in order.
        pub struct Migrator;

        impl $crate::db::Migrator for Migrator {
            fn migrations() -> Vec<Box<dyn $crate::db::Migration>> {
                $crate::db::sql_migrations($crate::sql_files![$($name),*])
            }
        }
    };
}

const MIGRATION_LOCK: i64 = 0x4454_4b53; // "DTKS"

/// Runs the reference-data migrations and then `M`'s in `schema`, on one connection
/// holding a session advisory lock.
pub async fn migrate<M: MigratorTrait>(
    config: &DatabaseConfig,
    schema: &str,
) -> anyhow::Result<()> {
    let db = connect_with(config.url.expose_secret(), schema, 1).await?;
    db.execute_unprepared(&format!("SELECT pg_advisory_lock({MIGRATION_LOCK})"))
        .await?;
    let result = async {
        db.execute_unprepared(
            "CREATE SCHEMA IF NOT EXISTS reference; SET search_path TO reference",
        )
        .await?;
        crate::reference::Migrator::up(&db, None).await?;
        db.execute_unprepared(&format!("SET search_path TO \"{schema}\""))
            .await?;
        M::up(&db, None).await?;
        Ok::<_, DbErr>(())
    }
    .await;
    db.execute_unprepared(&format!("SELECT pg_advisory_unlock({MIGRATION_LOCK})"))
        .await?;
    result?;
    tracing::info!(schema, "migrations applied");
    Ok(())
}

/// A statement with positional parameters (`$1`, `$2`, …).
pub fn stmt(sql: &str, values: impl IntoIterator<Item = sea_orm::Value>) -> Statement {
    Statement::from_sql_and_values(sea_orm::DbBackend::Postgres, sql, values)
}
