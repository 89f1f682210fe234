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
    pub aud: String,
    pub exp: u64,
    pub iat: u64,
}

impl Claims {
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

/// Verifies bearer tokens; a `tonic` interceptor.
#[derive(Clone)]
pub struct Authenticator {
    key: DecodingKey,
    validation: Validation,
    revocations: crate::revocation::Revocations,
}

impl Authenticator {
    pub fn new(config: &AuthConfig) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[&config.issuer]);
        validation.set_audience(&[&config.audience]);
        validation.leeway = 30;
        Self {
            key: DecodingKey::from_secret(config.jwt_secret.expose_secret().as_bytes()),
            validation,
            revocations: Default::default(),
        }
    }

    /// Refuses the tokens `revocations` names (kept current by `revocation::watch`).
    pub fn with_revocations(mut self, revocations: crate::revocation::Revocations) -> Self {
        self.revocations = revocations;
        self
    }

    pub fn verify(&self, token: &str) -> Result<Claims, Status> {
        let claims = jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation)
            .map(|data| data.claims)
            .map_err(|e| Status::unauthenticated(format!("invalid token: {e}")))?;
        if self.revocations.revoked(&claims.sub, claims.iat) {
            return Err(Status::unauthenticated(
                "token revoked: the officer was replaced or deactivated; sign in again",
            ));
        }
        Ok(claims)
    }
}

impl tonic::service::Interceptor for Authenticator {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        let header = request
            .metadata()
            .get("authorization")
            .ok_or_else(|| Status::unauthenticated("missing authorization header"))?;
        let token = header
            .to_str()
            .ok()
            .and_then(|h| h.strip_prefix("Bearer "))
            .ok_or_else(|| Status::unauthenticated("authorization must be `Bearer <token>`"))?;
        let claims = self.verify(token)?;
        request.extensions_mut().insert(claims);
        Ok(request)
    }
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
        aud: config.audience.clone(),
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
pub struct BearerToken(pub tonic::metadata::MetadataValue<tonic::metadata::Ascii>);

impl BearerToken {
    pub fn new(token: &str) -> anyhow::Result<Self> {
        Ok(Self(format!("Bearer {token}").parse()?))
    }
}

impl tonic::service::Interceptor for BearerToken {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        request
            .metadata_mut()
            .insert("authorization", self.0.clone());
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
    use secrecy::SecretString;
    use tonic::service::Interceptor;

    #[test]
    fn role_names_are_the_token_names() {
        for role in Role::ALL {
            let json = serde_json::to_value(role).expect("json");
            assert_eq!(json.as_str(), Some(role.as_str()));
        }
    }

    fn config() -> AuthConfig {
        AuthConfig {
            jwt_secret: SecretString::from("test-secret"),
            issuer: "dtks-dev".into(),
            audience: "dtks".into(),
        }
    }

    #[test]
    fn issued_tokens_verify_and_scope_by_region() {
        let token = issue(&config(), "op-1", Role::RegencyOfficer, "32.04", 60).unwrap();
        let mut auth = Authenticator::new(&config());
        let mut request = Request::new(());
        request
            .metadata_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
        let request = auth.call(request).unwrap();
        let claims = super::claims(&request).unwrap();
        assert!(claims.covers("32.04.01.2001"));
        assert!(!claims.covers("32.05.01.2001"));
        assert!(!claims.covers("32.041"));
    }

    #[test]
    fn tampered_or_foreign_tokens_are_refused() {
        let mut other = config();
        other.jwt_secret = SecretString::from("another-secret");
        let token = issue(&other, "op-1", Role::Public, "", 60).unwrap();
        assert_eq!(
            Authenticator::new(&config())
                .verify(&token)
                .unwrap_err()
                .code(),
            tonic::Code::Unauthenticated
        );
        let mut auth = Authenticator::new(&config());
        assert_eq!(
            auth.call(Request::new(())).unwrap_err().code(),
            tonic::Code::Unauthenticated
        );
    }
}
