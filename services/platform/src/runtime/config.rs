//! Typed configuration: an optional TOML file (`DTKS_CONFIG`), then environment
//! variables with the `DTKS_` prefix and `__` between levels
//! (`DTKS_DATABASE__URL`, `DTKS_AUTH__JWT_SECRET`). Secrets are `SecretString` so that
//! they never reach a log through `Debug`.

use secrecy::SecretString;
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
pub struct Config {
    /// The service's own name; also its PostgreSQL schema and queue name.
    pub service: String,
    #[serde(default = "default_grpc_addr")]
    pub grpc_addr: String,
    pub database: DatabaseConfig,
    pub bus: BusConfig,
    #[serde(default)]
    pub redis: RedisConfig,
    #[serde(default)]
    pub telemetry: TelemetryConfig,
    pub auth: AuthConfig,
    #[serde(default)]
    pub upstream: UpstreamConfig,
    #[serde(default)]
    pub limits: LimitsConfig,
    /// Matching only: how it speaks DCI to the civil registry.
    #[serde(default)]
    pub dci: DciConfig,
    /// Verivali only: the explicit demo policy that approves every workflow step on the
    /// officers' behalf, for the local walking skeleton. Never on in production.
    #[serde(default)]
    pub demo_auto_approve: bool,
    /// TLS of the service's own endpoint, and of its calls to other services.
    #[serde(default)]
    pub tls: TlsConfig,
    /// The keys that seal personal data at rest (`DTKS_DATA_KEYS`, or
    /// `DTKS_DATA_KEYS_FILE`): `id:base64,…`, the first sealing; see `sealed`.
    #[serde(default)]
    pub data_keys: Option<SecretString>,
    /// The Ed25519 seed (32 bytes, base64) the service signs its audit log's tree heads
    /// with (`DTKS_AUDIT_KEY`); without it, one derived from the active data key.
    #[serde(default)]
    pub audit_key: Option<SecretString>,
}

fn default_grpc_addr() -> String {
    "0.0.0.0:50051".to_owned()
}

#[derive(Debug, Clone, Deserialize)]
pub struct DatabaseConfig {
    pub url: SecretString,
    #[serde(default = "default_pool")]
    pub max_connections: u32,
}

fn default_pool() -> u32 {
    10
}

#[derive(Debug, Clone, Deserialize)]
pub struct BusConfig {
    pub url: SecretString,
    /// Prefix of every exchange and queue; lets several deployments (or test runs) share
    /// one broker without seeing each other's events.
    #[serde(default = "default_namespace")]
    pub namespace: String,
    /// Deliveries of one message before it is dead-lettered.
    #[serde(default = "default_delivery_limit")]
    pub delivery_limit: u32,
    #[serde(default = "default_prefetch")]
    pub prefetch: u16,
    /// Events a consumer handles side by side, each in its own transaction. Events of
    /// one region (the envelope's `region_code`: a village's events, a household's) stay
    /// in one lane and so in the order they arrived.
    #[serde(default = "default_lanes")]
    pub lanes: u16,
    /// When set, the queues delete themselves after this many milliseconds without a
    /// consumer (RabbitMQ `x-expires`). For short-lived namespaces — test runs, previews
    /// — never for a deployment whose queues must outlive a restart of its consumers.
    #[serde(default)]
    pub queue_expires_ms: Option<u32>,
}

fn default_namespace() -> String {
    "dtks".to_owned()
}
fn default_delivery_limit() -> u32 {
    5
}
fn default_lanes() -> u16 {
    4
}
fn default_prefetch() -> u16 {
    64
}

#[derive(Debug, Clone, Deserialize)]
pub struct RedisConfig {
    pub url: SecretString,
    #[serde(default = "default_namespace")]
    pub namespace: String,
}

impl Default for RedisConfig {
    fn default() -> Self {
        Self {
            url: SecretString::from("redis://127.0.0.1:6379/"),
            namespace: default_namespace(),
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct TelemetryConfig {
    /// OTLP/gRPC collector endpoint; when absent nothing is exported and nothing breaks.
    pub otlp_endpoint: Option<String>,
    /// `json` for one JSON object per line, anything else for human-readable lines.
    #[serde(default)]
    pub log_format: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct AuthConfig {
    /// HMAC key of the local issuer: services' own identities, and in development the
    /// officers' tokens (`dtksctl token`).
    pub jwt_secret: SecretString,
    /// The local issuer's name (`iss` of its tokens).
    #[serde(default = "default_issuer")]
    pub issuer: String,
    /// The audience every token must name (`aud`): the DTKS client of the identity
    /// provider.
    #[serde(default = "default_audience")]
    pub audience: String,
    /// The OpenID Connect issuer of officers' tokens (Keycloak: `https://<host>/realms/<realm>`).
    /// When set, officers' tokens are verified against the issuer's published keys (JWKS),
    /// and tokens of the local issuer are accepted only for services.
    #[serde(default)]
    pub oidc_issuer: Option<String>,
    /// Where the issuer publishes its keys; found through the issuer's discovery document
    /// (`/.well-known/openid-configuration`) when absent.
    #[serde(default)]
    pub jwks_url: Option<String>,
    /// Seconds between refreshes of the published keys (key rotation). A token signed
    /// with a key not yet known triggers an early refresh, at most every 10 s.
    #[serde(default = "default_jwks_refresh")]
    pub jwks_refresh_secs: u64,
    /// The least time between two fetches of the keys when a token names an unknown key.
    #[serde(default = "default_jwks_early_refresh")]
    pub jwks_early_refresh_secs: u64,
    /// Clock skew tolerated on `exp`, `nbf` and `iat`; capped at 300 s.
    #[serde(default = "default_clock_skew")]
    pub clock_skew_secs: u64,
    /// The longest a token may live (`exp - iat`), whoever issued it: 12 h, an officer's
    /// working day with margin. A longer-lived token is refused.
    #[serde(default = "default_max_token")]
    pub max_token_secs: u64,
}

fn default_max_token() -> u64 {
    12 * 3600
}

impl AuthConfig {
    /// The local issuer alone, signing with `secret` (development, tests, services).
    pub fn local(secret: &str) -> Self {
        Self {
            jwt_secret: SecretString::from(secret),
            issuer: default_issuer(),
            audience: default_audience(),
            oidc_issuer: None,
            jwks_url: None,
            jwks_refresh_secs: default_jwks_refresh(),
            jwks_early_refresh_secs: default_jwks_early_refresh(),
            clock_skew_secs: default_clock_skew(),
            max_token_secs: default_max_token(),
        }
    }
}

fn default_jwks_refresh() -> u64 {
    300
}
fn default_jwks_early_refresh() -> u64 {
    10
}
fn default_clock_skew() -> u64 {
    30
}

fn default_issuer() -> String {
    "dtks-dev".to_owned()
}
fn default_audience() -> String {
    "dtks".to_owned()
}

/// TLS: PEM text, set inline (`DTKS_TLS__CERT`) or from a file (`DTKS_TLS__CERT_FILE`).
/// With `cert` and `key` the gRPC endpoint speaks only TLS; with `client_ca` as well it
/// asks every caller for a certificate that CA signed (mutual TLS). `ca` is the CA the
/// service trusts when it calls another service over `https://`, where it presents its
/// own `cert` and `key`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct TlsConfig {
    pub cert: Option<String>,
    pub key: Option<SecretString>,
    pub client_ca: Option<String>,
    pub ca: Option<String>,
    /// With TLS on, `grpc.health.v1` alone is also served in plain text here, for the
    /// kubelet's gRPC probes (which do not speak TLS).
    pub health_addr: Option<String>,
}

/// Limits on what callers may send.
#[derive(Debug, Clone, Deserialize)]
pub struct LimitsConfig {
    /// Self-registrations one client may submit per minute (intake).
    #[serde(default = "default_self_registration")]
    pub self_registration_per_minute: u32,
    /// Rows in one bulk-import stream (intake); larger files go in several streams.
    #[serde(default = "default_import_rows")]
    pub import_rows_per_stream: u64,
    /// Persons in one MatchWave stream (matching): a regency's re-matching fits in one.
    #[serde(default = "default_wave_persons")]
    pub wave_persons_per_stream: u64,
    /// Calls one officer may make per second to one service replica, sustained (the
    /// guard refuses the excess with RESOURCE_EXHAUSTED before any work); services'
    /// own calls are not counted.
    #[serde(default = "default_calls_per_second")]
    pub calls_per_second: u32,
    /// Calls one officer may make at once above the sustained rate.
    #[serde(default = "default_call_burst")]
    pub call_burst: u32,
}

fn default_calls_per_second() -> u32 {
    100
}
fn default_call_burst() -> u32 {
    500
}

fn default_self_registration() -> u32 {
    10
}
fn default_import_rows() -> u64 {
    10_000
}
fn default_wave_persons() -> u64 {
    2_000_000
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            self_registration_per_minute: default_self_registration(),
            import_rows_per_stream: default_import_rows(),
            wave_persons_per_stream: default_wave_persons(),
            calls_per_second: default_calls_per_second(),
            call_burst: default_call_burst(),
        }
    }
}

/// Addresses of what a service calls.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct UpstreamConfig {
    /// Base URL of the civil registry's DCI API (matching).
    pub civil_registry_url: Option<String>,
    /// gRPC endpoint of determination (distribution reads snapshots from it).
    pub determination_url: Option<String>,
}

impl UpstreamConfig {
    /// The civil registry's URL, which matching cannot start without.
    pub fn civil_registry(&self) -> anyhow::Result<&str> {
        required(
            &self.civil_registry_url,
            "DTKS_UPSTREAM__CIVIL_REGISTRY_URL",
        )
    }

    /// Determination's endpoint, which distribution cannot start without.
    pub fn determination(&self) -> anyhow::Result<&str> {
        required(&self.determination_url, "DTKS_UPSTREAM__DETERMINATION_URL")
    }
}

fn required<'a>(url: &'a Option<String>, variable: &str) -> anyhow::Result<&'a str> {
    url.as_deref()
        .ok_or_else(|| anyhow::anyhow!("{variable} is required"))
}

/// Matching's side of the DCI link (`DTKS_DCI__…`).
#[derive(Debug, Clone, Deserialize)]
pub struct DciConfig {
    /// This system's DCI sender id.
    #[serde(default = "default_sender_id")]
    pub sender_id: String,
    #[serde(default = "default_key_id")]
    pub key_id: String,
    /// Base64 Ed25519 seed that signs every request (`dtksctl dci-keygen`); unsigned
    /// requests when absent.
    pub signing_key: Option<SecretString>,
    /// The registry's public keys (`sender|key=base64,…`); its answers, callbacks and
    /// notifications must be signed by one of them when set.
    #[serde(default)]
    pub registry_keys: String,
    /// Where matching listens for the registry's callbacks (`/registry/on-search`,
    /// `/registry/notify`, `/registry/on-subscribe`).
    pub callback_addr: Option<String>,
    /// The base URL the registry calls back on (`header.sender_uri`); needed for
    /// asynchronous search and vital-event subscriptions.
    pub callback_url: Option<String>,
    /// Search asynchronously (answer delivered to the callback) instead of synchronously.
    #[serde(default)]
    pub async_search: bool,
    /// The civil registry's DCI id: the `receiver_id` of requests and the audience of
    /// the bearer tokens sent with them.
    #[serde(default = "default_registry_id")]
    pub registry_id: String,
}

fn default_registry_id() -> String {
    "dukcapil-reference".to_owned()
}

fn default_sender_id() -> String {
    "dtks-matching".to_owned()
}
fn default_key_id() -> String {
    "k1".to_owned()
}

impl Default for DciConfig {
    fn default() -> Self {
        Self {
            sender_id: default_sender_id(),
            key_id: default_key_id(),
            signing_key: None,
            registry_keys: String::new(),
            callback_addr: None,
            callback_url: None,
            async_search: false,
            registry_id: default_registry_id(),
        }
    }
}

impl Config {
    /// Loads the configuration of `service`.
    pub fn load(service: &str) -> Result<Self, config::ConfigError> {
        let mut builder = config::Config::builder().set_default("service", service)?;
        if let Ok(path) = std::env::var("DTKS_CONFIG") {
            builder = builder.add_source(config::File::with_name(&path));
        }
        builder = builder.add_source(
            config::Environment::with_prefix("DTKS")
                .prefix_separator("_")
                .separator("__"),
        );
        // A setting may come from a file instead (`DTKS_DATABASE__URL_FILE=/run/secrets/…`):
        // secrets mounted as files never sit in the process environment.
        for (key, path) in from_files(std::env::vars()) {
            let value = std::fs::read_to_string(&path).map_err(|e| {
                config::ConfigError::Message(format!(
                    "{key} names a file that cannot be read ({path}): {e}"
                ))
            })?;
            builder = builder.set_override(key, value.trim_end_matches(['\n', '\r']).to_owned())?;
        }
        builder
            .set_override("service", service)?
            .build()?
            .try_deserialize()
    }
}

/// The settings named by `DTKS_…_FILE` variables, as configuration keys
/// (`DTKS_DATABASE__URL_FILE` → `database.url`) with the file to read each from.
fn from_files(vars: impl Iterator<Item = (String, String)>) -> Vec<(String, String)> {
    vars.filter_map(|(name, path)| {
        let key = name.strip_prefix("DTKS_")?.strip_suffix("_FILE")?;
        Some((key.to_lowercase().replace("__", "."), path))
    })
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_can_come_from_files() {
        let found = from_files(
            [
                (
                    "DTKS_DATABASE__URL_FILE".to_owned(),
                    "/run/secrets/db/url".to_owned(),
                ),
                (
                    "DTKS_AUTH__JWT_SECRET_FILE".to_owned(),
                    "/run/secrets/jwt".to_owned(),
                ),
                ("DTKS_DATABASE__URL".to_owned(), "postgres://…".to_owned()),
                ("HOME_FILE".to_owned(), "/x".to_owned()),
            ]
            .into_iter(),
        );
        assert_eq!(
            found,
            [
                ("database.url".to_owned(), "/run/secrets/db/url".to_owned()),
                ("auth.jwt_secret".to_owned(), "/run/secrets/jwt".to_owned()),
            ]
        );
    }
}
