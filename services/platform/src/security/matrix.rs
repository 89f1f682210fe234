//! The access matrix: every RPC of every DTKS service, with the roles that may call it
//! and the scope they are held to.

use super::grants::{Grant, Scope, row};
use crate::auth::Role::{self, *};

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
