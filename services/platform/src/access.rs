//! The access matrix — who may call what, and over which records — written once for every
//! service. Each gRPC method of DTKS has one row: the roles that may call it at all, and
//! the scope the service then holds them to. The guard in front of every service
//! (`Context::serve` of the app module) refuses a caller whose role is not on the method's row
//! before the handler runs; the handler holds the caller to the row's scope on the records
//! it touches (`Claims::require_region`, and the owner checks). `docs/access-matrix.md`
//! is rendered from this table ([`markdown`]) and a test keeps the two equal; the end-to-end
//! matrix test calls every method as every role, inside and outside its region.

use tonic::Status;

use crate::auth::{Claims, Role};

/// How far a role's reach extends, and so which region a token for it must name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach {
    /// One village (*desa/kelurahan*): the village operator.
    Village,
    /// One regency or city (*kabupaten/kota*).
    Regency,
    /// One province.
    Province,
    /// The whole country; the token names no region.
    National,
}

impl Role {
    /// The reach of the role. Officers of a region carry their region in the token; a
    /// token of a regional role without one is refused, so that a missing claim never
    /// widens an officer's reach to the whole country.
    pub fn reach(self) -> Reach {
        match self {
            Role::VillageOperator => Reach::Village,
            Role::RegencyOfficer | Role::Bupati | Role::PemdaUser => Reach::Regency,
            Role::ProvinceOfficer => Reach::Province,
            Role::MinistryAssessor
            | Role::PusdatinAdmin
            | Role::EselonI
            | Role::KlUser
            | Role::Ppid
            | Role::QaTeam
            | Role::Public
            | Role::Minister
            | Role::DataOfficial
            | Role::Service => Reach::National,
        }
    }

    /// The officers' name of the role, for the written matrix.
    pub fn title(self) -> &'static str {
        match self {
            Role::VillageOperator => "village operator (operator desa)",
            Role::RegencyOfficer => "regency Dinsos officer",
            Role::Bupati => "Bupati/Walikota",
            Role::ProvinceOfficer => "province Dinsos officer",
            Role::MinistryAssessor => "ministry assessor",
            Role::PusdatinAdmin => "Pusdatin administrator",
            Role::EselonI => "Eselon I unit",
            Role::KlUser => "K/L user",
            Role::PemdaUser => "Pemda user",
            Role::Ppid => "PPID",
            Role::QaTeam => "QA team",
            Role::Public => "public (masyarakat)",
            Role::Minister => "Minister (Menteri Sosial)",
            Role::DataOfficial => "Eselon I official for data",
            Role::Service => "DTKS service",
        }
    }
}

/// What a caller on a method's row is held to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Records and queries inside the caller's region (national roles: everywhere).
    Region,
    /// Officers inside their region; a citizen only what they submitted themselves.
    RegionOrOwn,
    /// Only what the caller filed, or — for the authority that decides it — what was
    /// filed to them.
    Own,
    /// Aggregate figures without personal data, inside the caller's region.
    Aggregate,
    /// National operations; no personal data leaves.
    National,
}

impl Scope {
    pub fn describe(self) -> &'static str {
        match self {
            Scope::Region => "own region",
            Scope::RegionOrOwn => "own region; a citizen: own submissions",
            Scope::Own => "own requests (the deciding authority: requests routed to it)",
            Scope::Aggregate => "aggregates of own region",
            Scope::National => "national",
        }
    }
}

/// One row of the matrix.
#[derive(Debug, Clone, Copy)]
pub struct Grant {
    /// The gRPC path, `/package.Service/Method`.
    pub method: &'static str,
    pub roles: &'static [Role],
    pub scope: Scope,
    /// A rule the handler applies on top of the row, decided by the record itself.
    pub refined: Option<&'static str>,
}

impl Grant {
    pub fn allows(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }

    /// The method's short name (`SubmitProposal`).
    pub fn name(&self) -> &'static str {
        self.method.rsplit('/').next().unwrap_or(self.method)
    }

    /// The service's proto name (`dtks.intake.v1.IntakeService`).
    pub fn service(&self) -> &'static str {
        self.method
            .trim_start_matches('/')
            .split('/')
            .next()
            .unwrap_or_default()
    }
}

use Role::*;

const REGION_OFFICERS: &[Role] = &[
    VillageOperator,
    RegencyOfficer,
    Bupati,
    ProvinceOfficer,
    MinistryAssessor,
    PusdatinAdmin,
];
const CASE_READERS: &[Role] = &[
    VillageOperator,
    RegencyOfficer,
    Bupati,
    ProvinceOfficer,
    MinistryAssessor,
    PusdatinAdmin,
    QaTeam,
];
const MATCH_READERS: &[Role] = &[
    VillageOperator,
    RegencyOfficer,
    ProvinceOfficer,
    MinistryAssessor,
    PusdatinAdmin,
];
const MATCH_DECIDERS: &[Role] = &[
    RegencyOfficer,
    ProvinceOfficer,
    MinistryAssessor,
    PusdatinAdmin,
];
const QA_READERS: &[Role] = &[
    PusdatinAdmin,
    MinistryAssessor,
    QaTeam,
    ProvinceOfficer,
    RegencyOfficer,
    Bupati,
];
const REGISTRY_READERS: &[Role] = &[
    VillageOperator,
    RegencyOfficer,
    Bupati,
    ProvinceOfficer,
    MinistryAssessor,
    PusdatinAdmin,
    Service,
];
const PROPOSAL_READERS: &[Role] = &[
    VillageOperator,
    RegencyOfficer,
    Bupati,
    ProvinceOfficer,
    MinistryAssessor,
    PusdatinAdmin,
    Public,
];
const SUBMITTERS: &[Role] = &[
    VillageOperator,
    RegencyOfficer,
    MinistryAssessor,
    PusdatinAdmin,
    Public,
];
const REQUESTERS: &[Role] = &[EselonI, KlUser, PemdaUser, Public];
const DECIDERS: &[Role] = &[PusdatinAdmin, Minister, DataOfficial, Ppid];
const REQUEST_PARTIES: &[Role] = &[
    EselonI,
    KlUser,
    PemdaUser,
    Public,
    PusdatinAdmin,
    Minister,
    DataOfficial,
    Ppid,
];
/// Everyone but services: aggregate figures without personal data.
const EVERY_PERSON: &[Role] = &[
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
    Minister,
    DataOfficial,
];
const OFFICER_MANAGERS: &[Role] = &[RegencyOfficer, ProvinceOfficer, PusdatinAdmin];
const MANAGES: &str = "Pusdatin manages every role; a province officer the regency and village roles of its province; a regency officer the village operators of its regency";
const WORKFLOW: &str = "the step's role and starting states from the verivali workflow table";
const OWNER: &str = "a citizen sees only the proposals they submitted";

const fn row(
    method: &'static str,
    roles: &'static [Role],
    scope: Scope,
    refined: Option<&'static str>,
) -> Grant {
    Grant {
        method,
        roles,
        scope,
        refined,
    }
}

/// A reporting query: aggregate figures of the caller's region, for every person.
const fn aggregate(method: &'static str) -> Grant {
    row(method, EVERY_PERSON, Scope::Aggregate, None)
}

/// The matrix: every RPC of every DTKS service.
pub const MATRIX: &[Grant] = &[
    // Intake (usulan).
    row(
        "/dtks.intake.v1.IntakeService/SubmitProposal",
        SUBMITTERS,
        Scope::RegionOrOwn,
        Some(
            "the channel names who may use it: musdes — village and regency officers; ministry — assessor and Pusdatin; self-registration — the public",
        ),
    ),
    row(
        "/dtks.intake.v1.IntakeService/ImportProposals",
        &[
            VillageOperator,
            RegencyOfficer,
            MinistryAssessor,
            PusdatinAdmin,
        ],
        Scope::Region,
        Some("the channel names who may use it"),
    ),
    row(
        "/dtks.intake.v1.IntakeService/GetProposal",
        PROPOSAL_READERS,
        Scope::RegionOrOwn,
        Some(OWNER),
    ),
    row(
        "/dtks.intake.v1.IntakeService/ListProposals",
        PROPOSAL_READERS,
        Scope::RegionOrOwn,
        Some(OWNER),
    ),
    row(
        "/dtks.intake.v1.IntakeService/WithdrawProposal",
        SUBMITTERS,
        Scope::RegionOrOwn,
        Some(OWNER),
    ),
    // Matching (pemadanan).
    row(
        "/dtks.matching.v1.MatchingService/MatchPerson",
        MATCH_READERS,
        Scope::Region,
        None,
    ),
    row(
        "/dtks.matching.v1.MatchingService/MatchWave",
        MATCH_READERS,
        Scope::Region,
        None,
    ),
    row(
        "/dtks.matching.v1.MatchingService/GetProposalMatch",
        &[
            VillageOperator,
            RegencyOfficer,
            Bupati,
            ProvinceOfficer,
            MinistryAssessor,
            PusdatinAdmin,
            Service,
        ],
        Scope::Region,
        None,
    ),
    row(
        "/dtks.matching.v1.MatchingService/ListReviewPairs",
        MATCH_READERS,
        Scope::Region,
        None,
    ),
    row(
        "/dtks.matching.v1.MatchingService/DecideReviewPair",
        MATCH_DECIDERS,
        Scope::Region,
        None,
    ),
    // Verification and validation (verivali).
    row(
        "/dtks.verivali.v1.VerivaliService/GetCase",
        CASE_READERS,
        Scope::Region,
        None,
    ),
    row(
        "/dtks.verivali.v1.VerivaliService/ListCases",
        CASE_READERS,
        Scope::Region,
        None,
    ),
    row(
        "/dtks.verivali.v1.VerivaliService/WorkQueue",
        &[
            VillageOperator,
            RegencyOfficer,
            Bupati,
            ProvinceOfficer,
            MinistryAssessor,
        ],
        Scope::Region,
        Some("the cases waiting for the caller's own steps of the verivali workflow"),
    ),
    row(
        "/dtks.verivali.v1.VerivaliService/RecordVillageReview",
        &[VillageOperator],
        Scope::Region,
        Some(WORKFLOW),
    ),
    row(
        "/dtks.verivali.v1.VerivaliService/RecordFieldVerification",
        &[RegencyOfficer],
        Scope::Region,
        Some(WORKFLOW),
    ),
    row(
        "/dtks.verivali.v1.VerivaliService/SignOff",
        &[Bupati],
        Scope::Region,
        Some(WORKFLOW),
    ),
    row(
        "/dtks.verivali.v1.VerivaliService/ForwardToMinistry",
        &[ProvinceOfficer],
        Scope::Region,
        Some(WORKFLOW),
    ),
    row(
        "/dtks.verivali.v1.VerivaliService/Assess",
        &[MinistryAssessor],
        Scope::Region,
        Some(WORKFLOW),
    ),
    row(
        "/dtks.verivali.v1.VerivaliService/AssessBatch",
        &[MinistryAssessor],
        Scope::Region,
        Some(WORKFLOW),
    ),
    row(
        "/dtks.verivali.v1.VerivaliService/ReturnToRegion",
        &[Bupati, ProvinceOfficer, MinistryAssessor],
        Scope::Region,
        Some(WORKFLOW),
    ),
    row(
        "/dtks.verivali.v1.VerivaliService/Resubmit",
        &[RegencyOfficer],
        Scope::Region,
        Some(WORKFLOW),
    ),
    row(
        "/dtks.verivali.v1.VerivaliService/FileComplaint",
        &[
            Public,
            VillageOperator,
            RegencyOfficer,
            ProvinceOfficer,
            MinistryAssessor,
            PusdatinAdmin,
            Ppid,
        ],
        Scope::RegionOrOwn,
        Some(
            "the public complains about any household and learns nothing back but the complaint's id",
        ),
    ),
    row(
        "/dtks.verivali.v1.VerivaliService/ListReverifications",
        REGION_OFFICERS,
        Scope::Region,
        None,
    ),
    row(
        "/dtks.verivali.v1.VerivaliService/CompleteReverification",
        &[RegencyOfficer],
        Scope::Region,
        None,
    ),
    row(
        "/dtks.verivali.v1.VerivaliService/DrawQaSample",
        &[PusdatinAdmin, MinistryAssessor, QaTeam],
        Scope::Region,
        None,
    ),
    row(
        "/dtks.verivali.v1.VerivaliService/RecordQaResult",
        &[QaTeam],
        Scope::Region,
        None,
    ),
    row(
        "/dtks.verivali.v1.VerivaliService/QaReport",
        QA_READERS,
        Scope::Region,
        None,
    ),
    row(
        "/dtks.verivali.v1.VerivaliService/ListDue",
        REGION_OFFICERS,
        Scope::Region,
        None,
    ),
    // Officers (petugas), kept by verivali.
    row(
        "/dtks.verivali.v1.VerivaliService/RegisterOfficer",
        OFFICER_MANAGERS,
        Scope::Region,
        Some(MANAGES),
    ),
    row(
        "/dtks.verivali.v1.VerivaliService/ReassignOfficer",
        OFFICER_MANAGERS,
        Scope::Region,
        Some(MANAGES),
    ),
    row(
        "/dtks.verivali.v1.VerivaliService/DeactivateOfficer",
        OFFICER_MANAGERS,
        Scope::Region,
        Some(MANAGES),
    ),
    row(
        "/dtks.verivali.v1.VerivaliService/ListOfficers",
        &[RegencyOfficer, Bupati, ProvinceOfficer, PusdatinAdmin],
        Scope::Region,
        None,
    ),
    // Determination (penetapan).
    row(
        "/dtks.determination.v1.DeterminationService/Determine",
        &[PusdatinAdmin, Service],
        Scope::National,
        None,
    ),
    row(
        "/dtks.determination.v1.DeterminationService/GetSnapshot",
        &[
            VillageOperator,
            RegencyOfficer,
            Bupati,
            ProvinceOfficer,
            MinistryAssessor,
            PusdatinAdmin,
            EselonI,
            Service,
        ],
        Scope::National,
        None,
    ),
    row(
        "/dtks.determination.v1.DeterminationService/StreamSnapshot",
        REGISTRY_READERS,
        Scope::Region,
        None,
    ),
    row(
        "/dtks.determination.v1.DeterminationService/GetHouseholdStanding",
        REGISTRY_READERS,
        Scope::Region,
        None,
    ),
    row(
        "/dtks.determination.v1.DeterminationService/DiffSnapshots",
        &[MinistryAssessor, PusdatinAdmin, EselonI, Service],
        Scope::National,
        None,
    ),
    row(
        "/dtks.determination.v1.DeterminationService/GetRegistryHousehold",
        REGISTRY_READERS,
        Scope::Region,
        None,
    ),
    // Distribution (penggunaan data).
    row(
        "/dtks.distribution.v1.DistributionService/CreateDataRequest",
        REQUESTERS,
        Scope::Own,
        Some(
            "each requester kind is filed by its own role: Eselon I unit, K/L user, Pemda user, public",
        ),
    ),
    row(
        "/dtks.distribution.v1.DistributionService/ApproveDataRequest",
        DECIDERS,
        Scope::Own,
        Some(
            "only the authority of the request's route decides it: Pusdatin for Eselon I, the Minister for K/L, the data official for Pemda, the PPID for the public",
        ),
    ),
    row(
        "/dtks.distribution.v1.DistributionService/RejectDataRequest",
        DECIDERS,
        Scope::Own,
        Some("only the authority of the request's route decides it"),
    ),
    row(
        "/dtks.distribution.v1.DistributionService/RevokeDataRequest",
        DECIDERS,
        Scope::Own,
        Some("the authority of the request's route, or Pusdatin"),
    ),
    row(
        "/dtks.distribution.v1.DistributionService/RecordHandover",
        REQUESTERS,
        Scope::Own,
        Some("only the officer who filed the request acknowledges its handover minutes"),
    ),
    row(
        "/dtks.distribution.v1.DistributionService/GetDataRequest",
        REQUEST_PARTIES,
        Scope::Own,
        Some("the filer, the deciding authority and Pusdatin; to anyone else it does not exist"),
    ),
    row(
        "/dtks.distribution.v1.DistributionService/SaveProgramme",
        &[PusdatinAdmin],
        Scope::National,
        None,
    ),
    row(
        "/dtks.distribution.v1.DistributionService/ListProgrammes",
        EVERY_PERSON,
        Scope::National,
        None,
    ),
    row(
        "/dtks.distribution.v1.DistributionService/BuildList",
        &[EselonI, PusdatinAdmin],
        Scope::National,
        None,
    ),
    row(
        "/dtks.distribution.v1.DistributionService/PrepareMonth",
        &[EselonI, PusdatinAdmin],
        Scope::National,
        None,
    ),
    row(
        "/dtks.distribution.v1.DistributionService/ApproveList",
        &[EselonI],
        Scope::National,
        None,
    ),
    row(
        "/dtks.distribution.v1.DistributionService/GetList",
        &[EselonI, PusdatinAdmin, Service],
        Scope::National,
        None,
    ),
    row(
        "/dtks.distribution.v1.DistributionService/StreamList",
        &[EselonI, PusdatinAdmin, Service],
        Scope::National,
        None,
    ),
    row(
        "/dtks.distribution.v1.DistributionService/StreamExtract",
        REQUESTERS,
        Scope::Own,
        Some(
            "only an approved, handed-over, unexpired request's own region and data kinds; NIK and names masked for requesters who may not see them",
        ),
    ),
    // Reporting (pelaporan): aggregates without personal data.
    aggregate("/dtks.reporting.v1.ReportingService/GetPipelineSummary"),
    aggregate("/dtks.reporting.v1.ReportingService/GetUpdateRates"),
    aggregate("/dtks.reporting.v1.ReportingService/ListInactiveRegions"),
    aggregate("/dtks.reporting.v1.ReportingService/GetFunnel"),
    aggregate("/dtks.reporting.v1.ReportingService/GetDecileDistribution"),
    aggregate("/dtks.reporting.v1.ReportingService/GetProgrammeCoverage"),
    aggregate("/dtks.reporting.v1.ReportingService/GetMatchOutcomes"),
    aggregate("/dtks.reporting.v1.ReportingService/GetReverifications"),
    aggregate("/dtks.reporting.v1.ReportingService/Export"),
    row(
        "/dtks.reporting.v1.ReportingService/Rebuild",
        &[PusdatinAdmin],
        Scope::National,
        None,
    ),
];

/// The row of `method`, if DTKS serves it.
pub fn grant(method: &str) -> Option<&'static Grant> {
    MATRIX.iter().find(|g| g.method == method)
}

/// Whether `who` may call `method` at all: PERMISSION_DENIED for a role not on the row,
/// and for a method not in the matrix (nothing is open by default).
pub fn authorize(method: &str, who: &Claims) -> Result<&'static Grant, Status> {
    let Some(grant) = grant(method) else {
        return Err(Status::permission_denied(format!(
            "{method} is not in the access matrix"
        )));
    };
    if !grant.allows(who.role) {
        let roles: Vec<&str> = grant.roles.iter().map(|r| r.as_str()).collect();
        return Err(Status::permission_denied(format!(
            "a {} may not call {}; it is for: {}",
            who.role.title(),
            grant.name(),
            roles.join(", ")
        )));
    }
    Ok(grant)
}

/// Whether a token's region claim fits its role. The claim is parsed as a region code
/// (digits and dots only, so it can never act as a pattern in a query) and a regional
/// officer's claim must sit exactly at the role's level: a village operator's names a
/// village, a regency officer's a regency, a province officer's a province. A missing
/// claim never means national reach. A national role may carry a region, which only
/// narrows what it sees.
pub fn check_reach(who: &Claims) -> Result<(), Status> {
    let title = who.role.title();
    let reach = who.role.reach();
    if who.region.is_empty() {
        if reach != Reach::National {
            return Err(Status::unauthenticated(format!(
                "a {title}'s token must name its region"
            )));
        }
        return Ok(());
    }
    let code = dtks_domain::RegionCode::parse(&who.region).map_err(|_| {
        Status::unauthenticated(format!(
            "the token's region claim is not a region code (32, 32.04, 32.04.01 or 32.04.01.2001); a {title}'s token names its own region"
        ))
    })?;
    let wanted = match reach {
        Reach::Village => Some(dtks_domain::RegionLevel::Village),
        Reach::Regency => Some(dtks_domain::RegionLevel::Regency),
        Reach::Province => Some(dtks_domain::RegionLevel::Province),
        Reach::National => None,
    };
    if let Some(level) = wanted
        && code.level() != level
    {
        return Err(Status::unauthenticated(format!(
            "a {title}'s token must name a {level:?} code; {code} is a {:?} code",
            code.level()
        )));
    }
    Ok(())
}

/// The guard in front of a service: verifies the bearer token (signature, issuer,
/// audience, expiry, revocation), checks the token's reach and the method's row of the
/// matrix, and hands the verified claims to the handler in the request's extensions.
/// Anything refused is answered here, before the handler runs.
#[derive(Clone)]
pub struct Guard<S> {
    inner: S,
    auth: crate::auth::Authenticator,
    limits: std::sync::Arc<CallLimits>,
}

impl<S> Guard<S> {
    pub fn new(
        inner: S,
        auth: crate::auth::Authenticator,
        limits: &crate::config::LimitsConfig,
    ) -> Self {
        Self {
            inner,
            auth,
            limits: std::sync::Arc::new(CallLimits::new(
                limits.calls_per_second,
                limits.call_burst,
            )),
        }
    }
}

/// A token bucket per caller: `burst` calls at once, refilled at `per_second`.
pub struct CallLimits {
    per_second: f64,
    burst: f64,
    buckets: std::sync::Mutex<std::collections::HashMap<String, (f64, std::time::Instant)>>,
}

impl CallLimits {
    pub fn new(per_second: u32, burst: u32) -> Self {
        Self {
            per_second: f64::from(per_second.max(1)),
            burst: f64::from(burst.max(1)),
            buckets: Default::default(),
        }
    }

    /// Takes one call from `subject`'s bucket at `now`; RESOURCE_EXHAUSTED, with the
    /// wait in a `google.rpc.RetryInfo`, when it is empty.
    pub fn take(&self, subject: &str, now: std::time::Instant) -> Result<(), Status> {
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if buckets.len() > 100_000 {
            // Callers idle long enough to have a full bucket again are forgotten.
            let full = std::time::Duration::from_secs_f64(self.burst / self.per_second);
            buckets.retain(|_, (_, at)| now.duration_since(*at) < full);
        }
        let (tokens, at) = buckets
            .entry(subject.to_owned())
            .or_insert((self.burst, now));
        *tokens =
            (*tokens + now.duration_since(*at).as_secs_f64() * self.per_second).min(self.burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            return Ok(());
        }
        let wait = std::time::Duration::from_secs_f64((1.0 - *tokens) / self.per_second);
        use tonic_types::StatusExt;
        let mut details = tonic_types::ErrorDetails::new();
        details.set_retry_info(Some(wait));
        Err(Status::with_error_details(
            tonic::Code::ResourceExhausted,
            format!(
                "more than {} calls per second from one caller; retry in {} ms",
                self.per_second,
                wait.as_millis().max(1)
            ),
            details,
        ))
    }
}

/// Verifies the call's token and checks it against the matrix.
async fn admit(
    auth: &crate::auth::Authenticator,
    limits: &CallLimits,
    method: &str,
    header: Option<&http::HeaderValue>,
) -> Result<Claims, Status> {
    let header = header.ok_or_else(|| Status::unauthenticated("missing authorization header"))?;
    let token = header
        .to_str()
        .ok()
        .and_then(|h| h.strip_prefix("Bearer "))
        .ok_or_else(|| Status::unauthenticated("authorization must be `Bearer <token>`"))?;
    let claims = auth.verify(token).await?;
    check_reach(&claims)?;
    authorize(method, &claims)?;
    if claims.role != Role::Service {
        limits.take(&claims.sub, std::time::Instant::now())?;
    }
    Ok(claims)
}

/// Reads the one request message of a unary or server-streaming call (bounded by
/// [`crate::grpc::MAX_MESSAGE_BYTES`]), checks it at the edge, and hands the call on with
/// the same bytes.
async fn checked(
    request: http::Request<tonic::body::Body>,
    input: &prost_reflect::MessageDescriptor,
) -> Result<http::Request<tonic::body::Body>, Status> {
    use http_body_util::BodyExt;
    let (parts, body) = request.into_parts();
    // A frame's 5-byte header, and a little room beyond the message limit so that the
    // server's own size check (RESOURCE_EXHAUSTED) still speaks for an oversized one.
    let limit = crate::grpc::MAX_MESSAGE_BYTES + 64 * 1024;
    let bytes = http_body_util::Limited::new(body, limit)
        .collect()
        .await
        .map_err(|e| {
            if e.is::<http_body_util::LengthLimitError>() {
                // As the server's own decoder answers an oversized message.
                Status::out_of_range(format!(
                    "the request is larger than {} bytes",
                    crate::grpc::MAX_MESSAGE_BYTES
                ))
            } else {
                Status::cancelled("the request ended before it was read")
            }
        })?
        .to_bytes();
    // gRPC frames: a compression flag, a 4-byte length, the message.
    let mut rest = &bytes[..];
    while rest.len() >= 5 {
        let compressed = rest[0] != 0;
        let length = u32::from_be_bytes([rest[1], rest[2], rest[3], rest[4]]) as usize;
        let Some(message) = rest.get(5..5 + length) else {
            break; // a short frame: the server's decoder refuses it
        };
        if !compressed && length <= crate::grpc::MAX_MESSAGE_BYTES {
            crate::edge::check_encoded(input, message)?;
        }
        rest = &rest[5 + length..];
    }
    Ok(http::Request::from_parts(
        parts,
        tonic::body::Body::new(http_body_util::Full::new(bytes)),
    ))
}

impl<S: tonic::server::NamedService> tonic::server::NamedService for Guard<S> {
    const NAME: &'static str = S::NAME;
}

impl<S> tower::Service<http::Request<tonic::body::Body>> for Guard<S>
where
    S: tower::Service<
            http::Request<tonic::body::Body>,
            Response = http::Response<tonic::body::Body>,
        > + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Self::Response, Self::Error>> + Send>,
    >;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<tonic::body::Body>) -> Self::Future {
        // The service that was polled ready serves this call; its clone waits for the next.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let auth = self.auth.clone();
        let limits = self.limits.clone();
        Box::pin(async move {
            let method = request.uri().path().to_owned();
            let header = request.headers().get(http::header::AUTHORIZATION);
            match admit(&auth, &limits, &method, header).await {
                Ok(claims) => {
                    request.extensions_mut().insert(claims);
                    // The request message is checked at the edge before any handler.
                    let request = match crate::edge::single_request(&method) {
                        Some(input) => match checked(request, input).await {
                            Ok(request) => request,
                            Err(refused) => {
                                tracing::info!(code = ?refused.code(), %method, "request refused at the edge");
                                return Ok(refused.into_http());
                            }
                        },
                        None => request,
                    };
                    inner.call(request).await
                }
                Err(refused) => {
                    tracing::info!(code = ?refused.code(), %method, "call refused by the access guard");
                    Ok(refused.into_http())
                }
            }
        })
    }
}

/// The written matrix (`docs/access-matrix.md`), rendered from [`MATRIX`].
pub fn markdown() -> String {
    let mut out = String::from(
        "# Access matrix\n\n\
         Rendered from `services/platform/src/access.rs` (`dtks_platform::access::MATRIX`), the one \
         definition every service enforces; a unit test keeps this page equal to it, and the \
         end-to-end test `tests/e2e/access.rs` calls every method as every role, inside and \
         outside its region.\n\n\
         - Every call passes the guard in front of its service: the token is verified, a \
         regional role's token must name its region, and a role that is not on the method's row \
         is refused with PERMISSION_DENIED before any work is done. A method not in the matrix \
         is refused to everyone.\n\
         - The handler then holds the caller to the row's scope on every record it reads or \
         writes, including lists, searches, streams and exports: a record outside the scope is \
         refused with PERMISSION_DENIED, or left out of a list.\n\n\
         ## Roles and their reach\n\n| role | token name | reach |\n|---|---|---|\n",
    );
    for role in Role::ALL {
        out.push_str(&format!(
            "| {} | `{}` | {:?} |\n",
            role.title(),
            role.as_str(),
            role.reach()
        ));
    }
    let mut service = "";
    for grant in MATRIX {
        if grant.service() != service {
            service = grant.service();
            out.push_str(&format!(
                "\n## {service}\n\n| method | roles | scope | refined by the record |\n|---|---|---|---|\n"
            ));
        }
        let roles: Vec<&str> = grant.roles.iter().map(|r| r.as_str()).collect();
        out.push_str(&format!(
            "| {} | {} | {} | {} |\n",
            grant.name(),
            roles.join(", "),
            grant.scope.describe(),
            grant.refined.unwrap_or("—")
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(role: Role, region: &str) -> Claims {
        Claims {
            sub: "t".into(),
            role,
            region: region.into(),
            iss: "i".into(),
            aud: "a".into(),
            exp: 0,
            iat: 0,
        }
    }

    #[test]
    fn every_rpc_of_every_service_has_exactly_one_row() {
        let descriptor = prost_types::FileDescriptorSet::decode(dtks_proto::FILE_DESCRIPTOR_SET)
            .expect("test fixture");
        let mut served = Vec::new();
        for file in &descriptor.file {
            for service in &file.service {
                for method in &service.method {
                    served.push(format!(
                        "/{}.{}/{}",
                        file.package(),
                        service.name(),
                        method.name()
                    ));
                }
            }
        }
        served.sort();
        let mut rows: Vec<String> = MATRIX.iter().map(|g| g.method.to_owned()).collect();
        rows.sort();
        assert_eq!(served, rows);
        for grant in MATRIX {
            assert!(!grant.roles.is_empty(), "{}", grant.method);
        }
    }

    #[test]
    fn the_written_matrix_is_the_table() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/access-matrix.md");
        let written = std::fs::read_to_string(path).unwrap_or_default();
        if std::env::var_os("DTKS_WRITE_ACCESS_MATRIX").is_some() {
            std::fs::write(path, markdown()).expect("test fixture");
            return;
        }
        assert!(
            written == markdown(),
            "docs/access-matrix.md differs from access::MATRIX; regenerate it with \
             DTKS_WRITE_ACCESS_MATRIX=1 cargo test -p dtks-platform the_written_matrix"
        );
    }

    #[test]
    fn roles_off_the_row_and_unknown_methods_are_refused() {
        let determine = "/dtks.determination.v1.DeterminationService/Determine";
        assert!(authorize(determine, &claims(PusdatinAdmin, "")).is_ok());
        let refused = authorize(determine, &claims(RegencyOfficer, "32.04")).expect_err("refused");
        assert_eq!(refused.code(), tonic::Code::PermissionDenied);
        assert!(refused.message().contains("Determine"), "{refused:?}");
        let unknown = authorize("/dtks.x.v1.X/Y", &claims(PusdatinAdmin, "")).expect_err("refused");
        assert_eq!(unknown.code(), tonic::Code::PermissionDenied);
    }

    #[test]
    fn a_regional_token_without_its_region_is_refused() {
        assert!(check_reach(&claims(RegencyOfficer, "32.04")).is_ok());
        assert!(check_reach(&claims(MinistryAssessor, "")).is_ok());
        for role in [
            VillageOperator,
            RegencyOfficer,
            Bupati,
            PemdaUser,
            ProvinceOfficer,
        ] {
            let refused = check_reach(&claims(role, "")).expect_err("refused");
            assert_eq!(refused.code(), tonic::Code::Unauthenticated);
        }
    }

    /// Finding 4: the region claim went raw into SQL `LIKE`: `%` or `32.0_` read every
    /// region, and a village role with a regency code got the regency. A claim is a
    /// region code at the role's level, or the token is refused.
    #[test]
    fn region_claims_that_are_patterns_or_at_another_level_are_refused() {
        for (role, region) in [
            (VillageOperator, "%"),
            (VillageOperator, "32.0_"),
            (VillageOperator, "32.04"),
            (VillageOperator, "32.04.05"),
            (VillageOperator, "32"),
            (VillageOperator, "32.04.05.2001%"),
            (VillageOperator, "32.04.05.2001 "),
            (RegencyOfficer, "32"),
            (RegencyOfficer, "32.04.05.2001"),
            (RegencyOfficer, "32.%"),
            (Bupati, "3204"),
            (PemdaUser, "32"),
            (ProvinceOfficer, "32.04"),
            (ProvinceOfficer, "_"),
            (MinistryAssessor, "%"),
            (QaTeam, "32.0_"),
            (Public, "32'; --"),
        ] {
            let refused = check_reach(&claims(role, region)).expect_err(region);
            assert_eq!(
                refused.code(),
                tonic::Code::Unauthenticated,
                "{role:?} {region}"
            );
            assert!(!refused.message().contains('%'), "{refused:?}");
        }
        for (role, region) in [
            (VillageOperator, "32.04.05.2001"),
            (RegencyOfficer, "32.04"),
            (Bupati, "32.73"),
            (PemdaUser, "32.03"),
            (ProvinceOfficer, "32"),
            (QaTeam, "32"),
            (QaTeam, ""),
        ] {
            assert!(
                check_reach(&claims(role, region)).is_ok(),
                "{role:?} {region}"
            );
        }
    }

    #[test]
    fn a_caller_gets_its_burst_then_the_sustained_rate() {
        let limits = CallLimits::new(10, 5);
        let t0 = std::time::Instant::now();
        for _ in 0..5 {
            limits.take("op-1", t0).expect("test fixture");
        }
        let refused = limits.take("op-1", t0).expect_err("refused");
        assert_eq!(refused.code(), tonic::Code::ResourceExhausted);
        use tonic_types::StatusExt;
        let wait = refused
            .get_details_retry_info()
            .expect("test fixture")
            .retry_delay
            .expect("test fixture");
        assert_eq!(wait, std::time::Duration::from_millis(100));
        // Another caller is not affected; 100 ms later one more call is allowed.
        limits.take("op-2", t0).expect("test fixture");
        let t1 = t0 + std::time::Duration::from_millis(100);
        limits.take("op-1", t1).expect("test fixture");
        assert!(limits.take("op-1", t1).is_err());
        // Idle callers refill up to the burst, not beyond.
        let t2 = t1 + std::time::Duration::from_secs(60);
        for _ in 0..5 {
            limits.take("op-1", t2).expect("test fixture");
        }
        assert!(limits.take("op-1", t2).is_err());
    }

    use prost::Message;
}
