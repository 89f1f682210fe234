//! The reference civil registry: a stand-in for Dukcapil (unreachable from here) that
//! speaks the DCI registry API (`registry_core_api` 1.0.0) — search by identifier and by
//! predicate, sync and async, vital-event subscriptions and notifications, transaction
//! status, signed messages — over a synthetic
//! population in its own schema. Matching reaches it only through its DCI adapter,
//! exactly as it would reach the real registry.
//!
//! `dtks-civil-registry migrate | load FILE.csv | serve`
//!
//! Environment: `DTKS_DATABASE__URL`; `DTKS_CIVIL_REGISTRY_ADDR` (default
//! `0.0.0.0:8090`); `DTKS_REGISTRY_SIGNING_KEY` (base64 Ed25519 seed, key id
//! `DTKS_REGISTRY_KEY_ID`, default `k1`) to sign what it sends;
//! `DTKS_REGISTRY_TRUSTED_KEYS` (`sender|key=base64,…`) to require signed requests;
//! `DTKS_REGISTRY_SENDER_URIS` (`sender=http(s)://base,…`) the only callback bases;
//! `DTKS_REGISTRY_ADMIN_TOKEN` to require a bearer token on `/admin/vital-events`;
//! `DTKS_REGISTRY_FAULT` for drills.

mod contract;
mod dci;
mod events;
mod exchange;
mod predicate;
mod records;
mod search;
mod transactions;

use anyhow::Context as _;
use sea_orm::ConnectionTrait;
use secrecy::ExposeSecret;

const SCHEMA: &str = "civil_registry";

const SCHEMA_SQL: &str = r#"
CREATE TABLE IF NOT EXISTS persons (
    nik TEXT PRIMARY KEY,
    kk_number TEXT NOT NULL,
    full_name TEXT NOT NULL,
    birth_place TEXT NOT NULL,
    birth_date DATE NOT NULL,
    sex SMALLINT NOT NULL,
    village_code TEXT NOT NULL,
    death_date DATE
);
ALTER TABLE persons ADD COLUMN IF NOT EXISTS marital_status TEXT;
-- A birth's parents, as registered (parent1_identifier, parent2_identifier).
ALTER TABLE persons ADD COLUMN IF NOT EXISTS parent1_nik TEXT, ADD COLUMN IF NOT EXISTS parent2_nik TEXT;
-- Predicate search: by birth date within a district, and by normalised name within a
-- regency and a span of birth dates (the name alone, and name and birth date, by the
-- same index's leading column): each search reads only the rows it answers with.
DROP INDEX IF EXISTS persons_birth_region;
DROP INDEX IF EXISTS persons_name;
CREATE INDEX IF NOT EXISTS persons_birth_district ON persons (birth_date, left(village_code, 8));
-- The normalised name and the regency as stored columns, indexed with the NIK: a
-- search by name counts its namesakes and pages them in NIK order from the index alone
-- (a common name has tens of thousands of bearers in a regency of millions, and
-- reading each one's row to count them took 100 ms at 10 M persons).
ALTER TABLE persons ADD COLUMN IF NOT EXISTS name_norm TEXT
    GENERATED ALWAYS AS (regexp_replace(upper(full_name), '\s+', ' ', 'g')) STORED;
ALTER TABLE persons ADD COLUMN IF NOT EXISTS regency TEXT
    GENERATED ALWAYS AS (left(village_code, 5)) STORED;
DROP INDEX IF EXISTS persons_name_regency;
CREATE INDEX IF NOT EXISTS persons_name_regency_nik ON persons (name_norm, regency, birth_date) INCLUDE (nik);
-- A region alone (a regency's population): its persons in NIK order from the index.
DROP INDEX IF EXISTS persons_regency;
CREATE INDEX IF NOT EXISTS persons_regency_nik ON persons (regency, nik);
-- One part of the name within a regency and whole birth years: each person's parts
-- keyed by regency and birth year, so the search reads only its answer. (A part alone,
-- anywhere, is answered without an index.)
DROP INDEX IF EXISTS persons_name_parts;
CREATE OR REPLACE FUNCTION person_part_keys(full_name text, village_code text, birth_date date)
RETURNS text[] LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT coalesce(array_agg(part || '|' || left(village_code, 5) || '|' || extract(year FROM birth_date)::int), '{}')
  FROM unnest(string_to_array(regexp_replace(upper(full_name), '\s+', ' ', 'g'), ' ')) AS part
$$;
CREATE INDEX IF NOT EXISTS persons_part_keys ON persons USING gin (person_part_keys(full_name, village_code, birth_date));
-- Vital events, in the order recorded; subscribers are fed from here.
CREATE TABLE IF NOT EXISTS vital_events (
    seq BIGSERIAL PRIMARY KEY,
    event_id UUID NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    nik TEXT NOT NULL,
    event_date DATE NOT NULL,
    recorded_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS subscriptions (
    code UUID PRIMARY KEY,
    sender_id TEXT NOT NULL,
    callback_uri TEXT NOT NULL,
    event_type TEXT NOT NULL,
    -- The last event delivered (vital_events.seq).
    cursor BIGINT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (sender_id, callback_uri, event_type)
);
-- Asynchronous requests and what their callbacks said, for txn/status (kept a day).
-- The sender's texts are kept as their JSON spelling (a DCI string may hold NUL).
CREATE TABLE IF NOT EXISTS transactions (
    correlation_id UUID PRIMARY KEY,
    sender_id TEXT NOT NULL,
    transaction_id TEXT NOT NULL,
    txn_type TEXT NOT NULL,
    reference_ids TEXT[] NOT NULL,
    codes TEXT[] NOT NULL,
    answer TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS transactions_by_sender ON transactions (sender_id, txn_type, created_at);
"#;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber_init();
    let url = std::env::var("DTKS_DATABASE__URL").context("DTKS_DATABASE__URL is required")?;
    // Many small searches a second: plans compiled just in time cost more than they save.
    let url = format!(
        "{url}{}options=-c%20jit%3Doff",
        if url.contains('?') { '&' } else { '?' }
    );
    let config = dtks_platform::config::DatabaseConfig {
        url: url.into(),
        max_connections: 8,
    };
    let db = dtks_platform::db::connect(&config, SCHEMA).await?;
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("migrate") => {
            db.execute_unprepared(SCHEMA_SQL).await?;
            Ok(())
        }
        Some("load") => {
            let path = args
                .get(2)
                .context("usage: dtks-civil-registry load FILE.csv")?;
            db.execute_unprepared(SCHEMA_SQL).await?;
            let rows = load(&db, config.url.expose_secret(), path).await?;
            println!("loaded {rows} persons into the reference civil registry");
            Ok(())
        }
        None | Some("serve") => {
            let addr =
                std::env::var("DTKS_CIVIL_REGISTRY_ADDR").unwrap_or_else(|_| "0.0.0.0:8090".into());
            let listener = tokio::net::TcpListener::bind(&addr).await?;
            tracing::info!(addr = %listener.local_addr()?, "DCI civil registry listening");
            if let Ok(fault) = std::env::var("DTKS_REGISTRY_FAULT") {
                tracing::warn!(%fault, "showing a fault on purpose (DTKS_REGISTRY_FAULT)");
            }
            let registry = registry(db)?;
            tokio::spawn(events::notifier(registry.clone()));
            tokio::spawn(transactions::expire(registry.db.clone()));
            let shutdown = dtks_platform::shutdown::Shutdown::on_signals();
            axum::serve(
                dtks_platform::dci::no_delay(listener),
                dci::router(registry),
            )
            .with_graceful_shutdown(shutdown.wait())
            .await?;
            Ok(())
        }
        Some(other) => anyhow::bail!("unknown command `{other}`; use migrate, load FILE or serve"),
    }
}

fn registry(db: sea_orm::DatabaseConnection) -> anyhow::Result<exchange::Registry> {
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    let signer = env("DTKS_REGISTRY_SIGNING_KEY")
        .map(|seed| {
            let key_id = env("DTKS_REGISTRY_KEY_ID").unwrap_or_else(|| "k1".into());
            dtks_platform::dci::Signer::new(exchange::SENDER_ID, &key_id, &seed)
        })
        .transpose()?;
    let trusted =
        dtks_platform::dci::KeyRing::parse(&env("DTKS_REGISTRY_TRUSTED_KEYS").unwrap_or_default())?;
    if trusted.is_empty() {
        tracing::warn!("DTKS_REGISTRY_TRUSTED_KEYS is empty: unsigned requests are accepted");
    }
    Ok(exchange::Registry {
        db,
        signer,
        trusted,
        admin_token: env("DTKS_REGISTRY_ADMIN_TOKEN"),
        http: reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(5))
            .build()?,
        replays: Default::default(),
        senders: senders(&env("DTKS_REGISTRY_SENDER_URIS").unwrap_or_default())?,
    })
}

/// `sender_id=http(s)://base,…`: where each sender's answers and notifications go.
fn senders(text: &str) -> anyhow::Result<std::collections::HashMap<String, String>> {
    text.split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .map(|entry| {
            let (sender, base) = entry
                .split_once('=')
                .ok_or_else(|| anyhow::anyhow!("sender URI `{entry}` is not sender=url"))?;
            anyhow::ensure!(
                base.starts_with("http://") || base.starts_with("https://"),
                "the callback base of {sender} must be http(s)"
            );
            Ok((
                sender.trim().to_owned(),
                base.trim().trim_end_matches('/').to_owned(),
            ))
        })
        .collect()
}

fn tracing_subscriber_init() {
    let config = dtks_platform::config::TelemetryConfig::default();
    let _ = dtks_platform::telemetry::init("civil-registry", &config).map(std::mem::forget);
}

/// Replaces the population with FILE (the `registry.csv` of `dtksctl gen`) by COPY.
async fn load(db: &sea_orm::DatabaseConnection, _url: &str, path: &str) -> anyhow::Result<u64> {
    let data = tokio::fs::read(path)
        .await
        .with_context(|| format!("reading {path}"))?;
    let pool = db.get_postgres_connection_pool();
    let mut conn = pool.acquire().await?;
    sqlx::query("TRUNCATE persons").execute(&mut *conn).await?;
    let mut copy = conn
        .copy_in_raw("COPY persons (nik, kk_number, full_name, birth_place, birth_date, sex, village_code, death_date) FROM STDIN WITH (FORMAT csv, HEADER true)")
        .await?;
    copy.send(data).await?;
    let rows = copy.finish().await?;
    // Statistics for the planner, and the visibility map for index-only counts.
    sqlx::query("VACUUM (ANALYZE) persons")
        .execute(&mut *conn)
        .await?;
    Ok(rows)
}
