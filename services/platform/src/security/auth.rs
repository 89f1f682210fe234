//! Authentication: officers and services present a JWT (`authorization: Bearer …`) whose
//! claims carry the officer id, the role and the region scope. The interceptor verifies
//! signature, issuer, audience and expiry and puts the claims into the request's
//! extensions; handlers authorise from them. `dtksctl token` is the local dev issuer.

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use tonic::{Request, Status};

use crate::config::AuthConfig;

/// The roles of the DTKS access matrix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    VillageOperator,
    RegencyOfficer,
    Bupati,
    ProvinceOfficer,
    MinistryAssessor,
    PusdatinAdmin,
    EselonI,
    KlUser,
    PemdaUser,
    Ppid,
    QaTeam,
    Public,
    /// The Minister of Social Affairs, or the official the Minister delegates a
    /// decision to (approves data requests of ministries and agencies).
    Minister,
    /// The ministry's Eselon I official for data (approves regional governments' data
    /// requests).
    DataOfficial,
    /// Another DTKS service calling on its own behalf.
    Service,
}

impl Role {
    pub const ALL: [Role; 15] = [
        Role::VillageOperator,
        Role::RegencyOfficer,
        Role::Bupati,
        Role::ProvinceOfficer,
        Role::MinistryAssessor,
        Role::PusdatinAdmin,
        Role::EselonI,
        Role::KlUser,
        Role::PemdaUser,
        Role::Ppid,
        Role::QaTeam,
        Role::Public,
        Role::Minister,
        Role::DataOfficial,
        Role::Service,
    ];

    /// The role's name as tokens carry it (`village_operator`).
    pub fn as_str(self) -> &'static str {
        match self {
            Role::VillageOperator => "village_operator",
            Role::RegencyOfficer => "regency_officer",
            Role::Bupati => "bupati",
            Role::ProvinceOfficer => "province_officer",
            Role::MinistryAssessor => "ministry_assessor",
            Role::PusdatinAdmin => "pusdatin_admin",
            Role::EselonI => "eselon_i",
            Role::KlUser => "kl_user",
            Role::PemdaUser => "pemda_user",
            Role::Ppid => "ppid",
            Role::QaTeam => "qa_team",
            Role::Public => "public",
            Role::Minister => "minister",
            Role::DataOfficial => "data_official",
            Role::Service => "service",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    /// Officer (or service) id.
    pub sub: String,
    pub role: Role,
    /// Region scope: a region code, or empty for national scope.
    #[serde(default)]
    pub region: String,
    pub iss: String,
    /// One audience or several (identity providers send a list).
    pub aud: serde_json::Value,
    pub exp: u64,
    #[serde(default)]
    pub iat: u64,
}

impl Claims {
    /// Who this is, for ownership of what they file: issuer, role, region and subject
    /// together. A token of another role or region that names the same subject is
    /// someone else.
    pub fn identity(&self) -> String {
        format!(
            "{}\u{1f}{}\u{1f}{}\u{1f}{}",
            self.iss,
            self.role.as_str(),
            self.region,
            self.sub
        )
    }

    /// Whether the caller's scope covers `region_code` (national scope covers all).
    pub fn covers(&self, region_code: &str) -> bool {
        scope_covers(&self.region, region_code)
    }

    pub fn require_role(&self, allowed: &[Role]) -> Result<(), Status> {
        if allowed.contains(&self.role) {
            Ok(())
        } else {
            Err(Status::permission_denied(format!(
                "role {:?} may not do this",
                self.role
            )))
        }
    }

    pub fn require_region(&self, region_code: &str) -> Result<(), Status> {
        if self.covers(region_code) {
            Ok(())
        } else {
            Err(Status::permission_denied(format!(
                "region {region_code} is outside the caller's scope {}",
                self.region
            )))
        }
    }
}

/// Whether a region scope (a region code, or empty for national) covers `region_code`:
/// the region itself and every region inside it.
pub fn scope_covers(scope: &str, region_code: &str) -> bool {
    scope.is_empty()
        || region_code == scope
        || (region_code.starts_with(scope)
            && region_code.as_bytes().get(scope.len()) == Some(&b'.'))
}

/// The claims the interceptor attached; UNAUTHENTICATED when absent.
pub fn claims<T>(request: &Request<T>) -> Result<&Claims, Status> {
    request
        .extensions()
        .get::<Claims>()
        .ok_or_else(|| Status::unauthenticated("no verified identity"))
}

/// Verifies bearer tokens: the local issuer's (HS256; services' own identities, and
/// officers in development) and, when an OpenID Connect issuer is configured, the
/// officers' tokens it signs (RS256, PS256, ES256/384 or EdDSA) against its published
/// keys, kept current by [`Authenticator::keep_keys_current`]. Issuer, audience, expiry
/// and not-before are checked with a bounded clock skew; a revoked officer's earlier
/// tokens are refused.
#[derive(Clone)]
pub struct Authenticator {
    key: DecodingKey,
    validation: Validation,
    oidc: Option<std::sync::Arc<Oidc>>,
    revocations: crate::revocation::Revocations,
    /// The longest a token may live (`AuthConfig::max_token_secs`).
    max_lifetime: u64,
    /// The clock skew tolerated (`AuthConfig::clock_skew_secs`, at most 300 s).
    leeway: u64,
}

/// The identity provider's side: its issuer, where its keys are, and the keys.
struct Oidc {
    issuer: String,
    audience: String,
    leeway: u64,
    jwks_url: Option<String>,
    refresh: std::time::Duration,
    /// The least time between fetches when a token names a key not yet known.
    early_refresh: std::time::Duration,
    keys: std::sync::RwLock<std::collections::HashMap<String, (DecodingKey, Algorithm)>>,
    /// When the keys were last fetched (early refreshes wait 10 s after it).
    fetched: tokio::sync::Mutex<Option<std::time::Instant>>,
    http: reqwest::Client,
}

/// Signature algorithms accepted from the identity provider's keys; never HMAC or none.
const OIDC_ALGORITHMS: [Algorithm; 7] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

impl Oidc {
    /// A JSON document of the provider's.
    async fn get<T: serde::de::DeserializeOwned>(&self, url: &str) -> anyhow::Result<T> {
        let answer = self.http.get(url).send().await?.error_for_status()?;
        Ok(answer.json().await?)
    }

    /// The JWKS address: configured, or from the issuer's discovery document.
    async fn jwks_url(&self) -> anyhow::Result<String> {
        if let Some(url) = &self.jwks_url {
            return Ok(url.clone());
        }
        let discovery = format!(
            "{}/.well-known/openid-configuration",
            self.issuer.trim_end_matches('/')
        );
        let document: serde_json::Value = self.get(&discovery).await?;
        document["jwks_uri"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| anyhow::anyhow!("{discovery} names no jwks_uri"))
    }

    /// Fetches the published keys and replaces the kept ones (a key removed by the
    /// provider stops verifying). Keys without an id or of another use are skipped.
    async fn fetch(&self) -> anyhow::Result<usize> {
        let url = self.jwks_url().await?;
        let set: jsonwebtoken::jwk::JwkSet = self.get(&url).await?;
        let mut keys = std::collections::HashMap::new();
        for jwk in &set.keys {
            let Some(kid) = jwk.common.key_id.clone() else {
                continue;
            };
            if matches!(&jwk.common.public_key_use, Some(u) if *u != jsonwebtoken::jwk::PublicKeyUse::Signature)
            {
                continue;
            }
            let algorithm = match (&jwk.common.key_algorithm, &jwk.algorithm) {
                (Some(alg), _) => alg.to_string().parse::<Algorithm>().ok(),
                (None, jsonwebtoken::jwk::AlgorithmParameters::RSA(_)) => Some(Algorithm::RS256),
                (None, jsonwebtoken::jwk::AlgorithmParameters::EllipticCurve(p)) => match p.curve {
                    jsonwebtoken::jwk::EllipticCurve::P256 => Some(Algorithm::ES256),
                    jsonwebtoken::jwk::EllipticCurve::P384 => Some(Algorithm::ES384),
                    _ => None,
                },
                (None, jsonwebtoken::jwk::AlgorithmParameters::OctetKeyPair(_)) => {
                    Some(Algorithm::EdDSA)
                }
                _ => None,
            };
            let Some(algorithm) = algorithm.filter(|a| OIDC_ALGORITHMS.contains(a)) else {
                continue;
            };
            if let Ok(key) = DecodingKey::from_jwk(jwk) {
                keys.insert(kid, (key, algorithm));
            }
        }
        let n = keys.len();
        *self.keys.write().unwrap_or_else(|e| e.into_inner()) = keys;
        Ok(n)
    }

    /// Refreshes now unless the keys were fetched within the last `min_age`.
    async fn refresh(&self, min_age: std::time::Duration) {
        let mut fetched = self.fetched.lock().await;
        if fetched.is_some_and(|at| at.elapsed() < min_age) {
            return;
        }
        match self.fetch().await {
            Ok(n) => tracing::info!(keys = n, "identity provider keys refreshed"),
            // The kept keys stay in use while the provider cannot be reached.
            Err(error) => tracing::warn!(%error, "identity provider keys not refreshed"),
        }
        *fetched = Some(std::time::Instant::now());
    }

    fn verify(&self, token: &str, header: &Header) -> Result<Option<Claims>, Status> {
        let Some(kid) = &header.kid else {
            return Err(Status::unauthenticated("invalid token: no key id (kid)"));
        };
        let keys = self.keys.read().unwrap_or_else(|e| e.into_inner());
        let Some((key, algorithm)) = keys.get(kid) else {
            return Ok(None);
        };
        if header.alg != *algorithm {
            return Err(Status::unauthenticated(
                "invalid token: the algorithm is not the key's",
            ));
        }
        let mut validation = Validation::new(*algorithm);
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&[&self.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.validate_nbf = true;
        validation.leeway = self.leeway;
        jsonwebtoken::decode::<Claims>(token, key, &validation)
            .map(|data| Some(data.claims))
            .map_err(|e| Status::unauthenticated(format!("invalid token: {e}")))
    }
}

impl Authenticator {
    pub fn new(config: &AuthConfig) -> Self {
        let leeway = config.clock_skew_secs.min(300);
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[&config.issuer]);
        validation.set_audience(&[&config.audience]);
        validation.validate_nbf = true;
        validation.leeway = leeway;
        let oidc = config.oidc_issuer.as_ref().map(|issuer| {
            std::sync::Arc::new(Oidc {
                issuer: issuer.clone(),
                audience: config.audience.clone(),
                leeway,
                jwks_url: config.jwks_url.clone(),
                refresh: std::time::Duration::from_secs(config.jwks_refresh_secs.max(10)),
                early_refresh: std::time::Duration::from_secs(config.jwks_early_refresh_secs),
                keys: Default::default(),
                fetched: Default::default(),
                http: reqwest::Client::builder()
                    .timeout(std::time::Duration::from_secs(5))
                    .build()
                    .unwrap_or_default(),
            })
        });
        Self {
            key: DecodingKey::from_secret(config.jwt_secret.expose_secret().as_bytes()),
            validation,
            oidc,
            // Without a revocation source (tests, tools) nothing is revoked; services get
            // theirs from `with_revocations`.
            revocations: {
                let none = crate::revocation::Revocations::default();
                none.assume_current();
                none
            },
            max_lifetime: config.max_token_secs,
            leeway,
        }
    }

    /// Refuses the tokens `revocations` names (kept current by `revocation::watch`).
    pub fn with_revocations(mut self, revocations: crate::revocation::Revocations) -> Self {
        self.revocations = revocations;
        self
    }

    /// Fetches the identity provider's keys now and then every refresh interval until
    /// `shutdown` (nothing to do without an OpenID Connect issuer).
    pub async fn keep_keys_current(self, shutdown: crate::shutdown::Shutdown) {
        let Some(oidc) = self.oidc else { return };
        loop {
            oidc.refresh(std::time::Duration::ZERO).await;
            tokio::select! {
                _ = tokio::time::sleep(oidc.refresh) => {}
                _ = shutdown.clone().wait() => return,
            }
        }
    }

    /// Verifies `token`; a token signed with a key the service does not know yet makes it
    /// fetch the provider's keys once (rotation) before answering.
    pub async fn verify(&self, token: &str) -> Result<Claims, Status> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|e| Status::unauthenticated(format!("invalid token: {e}")))?;
        let claims = match (&self.oidc, header.alg) {
            (_, Algorithm::HS256) => {
                let claims = jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation)
                    .map(|data| data.claims)
                    .map_err(|e| Status::unauthenticated(format!("invalid token: {e}")))?;
                // With an identity provider, officers sign in there; the local issuer
                // speaks only for services.
                if self.oidc.is_some() && claims.role != Role::Service {
                    return Err(Status::unauthenticated(
                        "officers sign in through the identity provider; a locally issued token is for services",
                    ));
                }
                claims
            }
            (Some(oidc), _) => match oidc.verify(token, &header)? {
                Some(claims) => claims,
                None => {
                    oidc.refresh(oidc.early_refresh).await;
                    oidc.verify(token, &header)?.ok_or_else(|| {
                        Status::unauthenticated(
                            "invalid token: signed with a key the identity provider does not publish",
                        )
                    })?
                }
            },
            (None, _) => {
                return Err(Status::unauthenticated(
                    "invalid token: no identity provider is configured for its algorithm",
                ));
            }
        };
        lifetime_fits(&claims, self.max_lifetime, self.leeway)?;
        if claims.role != Role::Service {
            match self.revocations.check(&claims.sub, claims.iat) {
                Ok(()) => {}
                Err(crate::revocation::Refusal::Revoked) => {
                    return Err(Status::unauthenticated(
                        "token revoked: the officer was replaced or deactivated; sign in again",
                    ));
                }
                Err(crate::revocation::Refusal::Unknown) => {
                    return Err(Status::unavailable(
                        "whether the token was revoked cannot be checked now; try again shortly",
                    ));
                }
            }
        }
        Ok(claims)
    }
}

/// Whether a token's issue time and lifetime are believable: `iat` present and not
/// ahead of this clock beyond the skew, and `exp - iat` within the longest lifetime.
fn lifetime_fits(claims: &Claims, max_lifetime: u64, leeway: u64) -> Result<(), Status> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    if claims.iat == 0 {
        return Err(Status::unauthenticated(
            "invalid token: it carries no issue time (iat)",
        ));
    }
    if claims.iat > now.saturating_add(leeway) {
        return Err(Status::unauthenticated(
            "invalid token: issued in the future (iat is ahead of this service's clock)",
        ));
    }
    if claims.exp.saturating_sub(claims.iat) > max_lifetime {
        return Err(Status::unauthenticated(format!(
            "invalid token: it lives longer than the {max_lifetime} s a token may; sign in again"
        )));
    }
    Ok(())
}

/// Signs a token (the local development issuer, and service identities).
pub fn issue(
    config: &AuthConfig,
    sub: &str,
    role: Role,
    region: &str,
    ttl_secs: u64,
) -> anyhow::Result<String> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let claims = Claims {
        sub: sub.to_owned(),
        role,
        region: region.to_owned(),
        iss: config.issuer.clone(),
        aud: config.audience.clone().into(),
        exp: now + ttl_secs,
        iat: now,
    };
    Ok(jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(config.jwt_secret.expose_secret().as_bytes()),
    )?)
}

/// Adds a bearer token to outgoing calls (service-to-service and CLI clients).
#[derive(Clone)]
pub struct BearerToken(Source);

#[derive(Clone)]
enum Source {
    /// A token the caller holds (an officer's, dtksctl's).
    Fixed(tonic::metadata::MetadataValue<tonic::metadata::Ascii>),
    /// A service's own identity, issued for [`SERVICE_TOKEN_SECS`] and issued again when
    /// half of that has passed: no long-lived token exists to be stolen.
    Renewed(std::sync::Arc<Renewed>),
}

struct Renewed {
    config: AuthConfig,
    sub: String,
    current: std::sync::Mutex<(
        tonic::metadata::MetadataValue<tonic::metadata::Ascii>,
        std::time::Instant,
    )>,
}

/// How long a service's own token lives.
pub const SERVICE_TOKEN_SECS: u64 = 3600;

fn bearer(token: &str) -> anyhow::Result<tonic::metadata::MetadataValue<tonic::metadata::Ascii>> {
    Ok(format!("Bearer {token}").parse()?)
}

impl BearerToken {
    pub fn new(token: &str) -> anyhow::Result<Self> {
        Ok(Self(Source::Fixed(bearer(token)?)))
    }

    /// The service `sub`'s own identity (role `service`, national), kept fresh.
    pub fn for_service(config: &AuthConfig, sub: &str) -> anyhow::Result<Self> {
        let token = issue(config, sub, Role::Service, "", SERVICE_TOKEN_SECS)?;
        Ok(Self(Source::Renewed(std::sync::Arc::new(Renewed {
            config: config.clone(),
            sub: sub.to_owned(),
            current: std::sync::Mutex::new((bearer(&token)?, std::time::Instant::now())),
        }))))
    }

    fn header(&self) -> tonic::metadata::MetadataValue<tonic::metadata::Ascii> {
        match &self.0 {
            Source::Fixed(value) => value.clone(),
            Source::Renewed(renewed) => {
                let mut current = renewed.current.lock().unwrap_or_else(|e| e.into_inner());
                if current.1.elapsed() >= std::time::Duration::from_secs(SERVICE_TOKEN_SECS / 2) {
                    match issue(
                        &renewed.config,
                        &renewed.sub,
                        Role::Service,
                        "",
                        SERVICE_TOKEN_SECS,
                    )
                    .and_then(|t| bearer(&t))
                    {
                        Ok(value) => *current = (value, std::time::Instant::now()),
                        Err(error) => tracing::warn!(%error, "the service token was not renewed"),
                    }
                }
                current.0.clone()
            }
        }
    }
}

impl tonic::service::Interceptor for BearerToken {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        request
            .metadata_mut()
            .insert("authorization", self.header());
        // The call continues the caller's trace.
        let (traceparent, tracestate) = crate::telemetry::current_trace_context();
        for (name, value) in [("traceparent", traceparent), ("tracestate", tracestate)] {
            if !value.is_empty()
                && let Ok(value) = value.parse::<tonic::metadata::MetadataValue<_>>()
            {
                request.metadata_mut().insert(name, value);
            }
        }
        Ok(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
    use jsonwebtoken::EncodingKey;

    #[test]
    fn role_names_are_the_token_names() {
        for role in Role::ALL {
            let json = serde_json::to_value(role).expect("json");
            assert_eq!(json.as_str(), Some(role.as_str()));
        }
    }

    fn config() -> AuthConfig {
        AuthConfig::local("test-secret")
    }

    #[tokio::test]
    async fn issued_tokens_verify_and_scope_by_region() {
        let token =
            issue(&config(), "op-1", Role::RegencyOfficer, "32.04", 60).expect("test fixture");
        let claims = Authenticator::new(&config())
            .verify(&token)
            .await
            .expect("test fixture");
        assert!(claims.covers("32.04.01.2001"));
        assert!(!claims.covers("32.05.01.2001"));
        assert!(!claims.covers("32.041"));
    }

    /// Finding 16: tokens valid for 100 years, or issued a day in the future, were
    /// accepted. A token lives at most `max_token_secs` and is not issued ahead of the
    /// clock beyond the skew.
    #[tokio::test]
    async fn tokens_too_long_lived_or_issued_in_the_future_are_refused() {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_secs();
        let sign = |iat: u64, exp: u64| {
            let claims = Claims {
                sub: "op-1".into(),
                role: Role::RegencyOfficer,
                region: "32.04".into(),
                iss: config().issuer,
                aud: config().audience.into(),
                exp,
                iat,
            };
            jsonwebtoken::encode(
                &Header::new(Algorithm::HS256),
                &claims,
                &EncodingKey::from_secret(b"test-secret"),
            )
            .expect("token")
        };
        let auth = Authenticator::new(&config());
        for (iat, exp, why) in [
            (now, now + 100 * 365 * 24 * 3600, "lives longer"),
            (now, now + 12 * 3600 + 1, "lives longer"),
            (now + 24 * 3600, now + 25 * 3600, "future"),
            (now + 301, now + 3600, "future"),
            (0, now + 3600, "issue time"),
        ] {
            let refused = auth.verify(&sign(iat, exp)).await.expect_err(why);
            assert_eq!(refused.code(), tonic::Code::Unauthenticated);
            assert!(refused.message().contains(why), "{refused:?}");
        }
        for (iat, exp) in [
            (now, now + 12 * 3600),
            (now + 20, now + 3600),
            (now - 3600, now + 60),
        ] {
            assert!(auth.verify(&sign(iat, exp)).await.is_ok(), "{iat} {exp}");
        }
    }

    #[tokio::test]
    async fn tampered_or_foreign_tokens_are_refused() {
        let other = AuthConfig::local("another-secret");
        let token = issue(&other, "op-1", Role::Public, "", 60).expect("test fixture");
        let auth = Authenticator::new(&config());
        assert_eq!(
            auth.verify(&token).await.expect_err("refused").code(),
            tonic::Code::Unauthenticated
        );
        let good = issue(&config(), "op-1", Role::Public, "", 60).expect("test fixture");
        let (head, rest) = good.split_once('.').expect("test fixture");
        let (payload, signature) = rest.split_once('.').expect("test fixture");
        let mut forged: serde_json::Value = serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(payload)
                .expect("test fixture"),
        )
        .expect("test fixture");
        forged["role"] = "pusdatin_admin".into();
        let forged = format!(
            "{head}.{}.{signature}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .encode(serde_json::to_vec(&forged).expect("test fixture"))
        );
        assert_eq!(
            auth.verify(&forged).await.expect_err("refused").code(),
            tonic::Code::Unauthenticated
        );
        assert!(auth.verify("not-a-token").await.is_err());
    }

    /// An Ed25519 key of the identity provider: its signing key and its JWK.
    fn provider_key(seed: u8, kid: &str) -> (EncodingKey, serde_json::Value) {
        let seed = [seed; 32];
        let public = ed25519_dalek::SigningKey::from_bytes(&seed).verifying_key();
        // PKCS#8 v1 of an Ed25519 private key: a fixed prefix and the seed.
        let mut der = vec![
            0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22,
            0x04, 0x20,
        ];
        der.extend_from_slice(&seed);
        let jwk = serde_json::json!({
            "kty": "OKP",
            "crv": "Ed25519",
            "use": "sig",
            "alg": "EdDSA",
            "kid": kid,
            "x": base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(public.as_bytes()),
        });
        (EncodingKey::from_ed_der(&der), jwk)
    }

    /// A token as Keycloak signs it, with `changes` applied to its claims.
    fn provider_token(
        key: &EncodingKey,
        kid: &str,
        issuer: &str,
        changes: serde_json::Value,
    ) -> String {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("test fixture")
            .as_secs();
        let mut claims = serde_json::json!({
            "sub": "f3c1b2a0-officer",
            "role": "regency_officer",
            "region": "32.04",
            "iss": issuer,
            "aud": ["account", "dtks"],
            "exp": now + 300,
            "iat": now,
            "azp": "dtks-web",
        });
        for (k, v) in changes.as_object().expect("test fixture") {
            claims[k] = if let Some(offset) = v.as_i64() {
                serde_json::json!((now as i64 + offset) as u64)
            } else {
                v.clone()
            };
        }
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(kid.into());
        jsonwebtoken::encode(&header, &claims, key).expect("test fixture")
    }

    #[tokio::test]
    async fn provider_tokens_verify_against_published_keys_through_rotation() {
        let (k1, jwk1) = provider_key(1, "k1");
        let (k2, jwk2) = provider_key(2, "k2");
        let published = std::sync::Arc::new(std::sync::RwLock::new(serde_json::json!({
            "keys": [jwk1]
        })));
        let fetches = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("test fixture");
        let issuer = format!(
            "http://{}/realms/dtks",
            listener.local_addr().expect("test fixture")
        );
        let app = {
            let published = published.clone();
            let fetches = fetches.clone();
            let jwks_uri = format!("{issuer}/protocol/openid-connect/certs");
            axum::Router::new()
                .route(
                    "/realms/dtks/.well-known/openid-configuration",
                    axum::routing::get(move || {
                        let jwks_uri = jwks_uri.clone();
                        async move { axum::Json(serde_json::json!({ "jwks_uri": jwks_uri })) }
                    }),
                )
                .route(
                    "/realms/dtks/protocol/openid-connect/certs",
                    axum::routing::get(move || {
                        let published = published.clone();
                        fetches.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        async move { axum::Json(published.read().expect("test fixture").clone()) }
                    }),
                )
        };
        tokio::spawn(async move { axum::serve(listener, app).await });
        let mut config = config();
        config.oidc_issuer = Some(issuer.clone());
        config.jwks_early_refresh_secs = 0;
        let auth = Authenticator::new(&config);
        let code = |r: Result<Claims, Status>| r.map(|_| ()).map_err(|s| s.code());
        let unauthenticated = Err(tonic::Code::Unauthenticated);

        // Found through discovery; a list of audiences is accepted.
        let claims = auth
            .verify(&provider_token(&k1, "k1", &issuer, serde_json::json!({})))
            .await
            .expect("test fixture");
        assert_eq!(
            (claims.role, claims.region.as_str()),
            (Role::RegencyOfficer, "32.04")
        );
        let token = |changes| provider_token(&k1, "k1", &issuer, changes);
        // Audience, issuer, expiry and not-before, with a bounded skew (30 s).
        for (changes, expected) in [
            (serde_json::json!({ "aud": "another-app" }), unauthenticated),
            (
                serde_json::json!({ "iss": "https://elsewhere/realms/dtks" }),
                unauthenticated,
            ),
            (serde_json::json!({ "exp": -45 }), unauthenticated),
            (serde_json::json!({ "exp": -10 }), Ok(())),
            (serde_json::json!({ "nbf": 120 }), unauthenticated),
            (serde_json::json!({ "nbf": 10 }), Ok(())),
        ] {
            assert_eq!(
                code(auth.verify(&token(changes.clone())).await),
                expected,
                "{changes}"
            );
        }
        // A key the provider does not publish; a token whose kid names another key.
        assert_eq!(
            code(
                auth.verify(&provider_token(&k2, "k2", &issuer, serde_json::json!({})))
                    .await
            ),
            unauthenticated
        );
        assert_eq!(
            code(
                auth.verify(&provider_token(&k2, "k1", &issuer, serde_json::json!({})))
                    .await
            ),
            unauthenticated
        );
        // Rotation: the provider now publishes k2 only. A k2 token makes the service
        // fetch the new keys; k1's tokens stop verifying.
        *published.write().expect("test fixture") = serde_json::json!({ "keys": [jwk2] });
        let before = fetches.load(std::sync::atomic::Ordering::SeqCst);
        assert!(
            auth.verify(&provider_token(&k2, "k2", &issuer, serde_json::json!({})))
                .await
                .is_ok()
        );
        assert!(fetches.load(std::sync::atomic::Ordering::SeqCst) > before);
        assert_eq!(
            code(auth.verify(&token(serde_json::json!({}))).await),
            unauthenticated
        );
        // With a provider, the local issuer speaks only for services.
        let officer =
            issue(&config, "op-1", Role::RegencyOfficer, "32.04", 60).expect("test fixture");
        let refused = auth.verify(&officer).await.expect_err("refused");
        assert!(
            refused.message().contains("identity provider"),
            "{refused:?}"
        );
        let service = issue(&config, "distribution", Role::Service, "", 60).expect("test fixture");
        assert!(auth.verify(&service).await.is_ok());
    }
}
