//! A service's schema: the tables every one starts with (the outbox, the inbox and the
//! audit log, `migrations/*.sql` beside this crate), then its own migrations, run by
//! sea-orm-migration under an advisory lock, so that several replicas (or the Helm hook
//! Job and a developer) never migrate at once. The reference data (regions) is migrated
//! first, into its own schema.

use sea_orm::{ConnectionTrait, DbErr};
use sea_orm_migration::{MigrationTrait, MigratorTrait};
use secrecy::ExposeSecret;

use crate::config::DatabaseConfig;
use crate::db::{SqlMigration, connect_with};

/// The platform's bus tables and audit log followed by the service's own migrations.
pub fn sql_migrations(own: Vec<SqlMigration>) -> Vec<Box<dyn MigrationTrait>> {
    crate::sql_files!["m0000_outbox_inbox", "m0000_audit_log", "m0000_audit_tree"]
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
                $crate::schema::sql_migrations($crate::sql_files![$($name),*])
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
