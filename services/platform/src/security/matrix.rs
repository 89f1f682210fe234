//! The access matrix: every RPC of every DTKS service, with the roles that may call it
//! and the scope they are held to.

use super::grants::{Grant, Scope, row};
use crate::auth::Role::*;

/// The sets of roles that share rows, one to a line.
#[rustfmt::skip]
mod sets {
    use crate::auth::Role::{self, *};

    pub const REGION_OFFICERS: &[Role] = &[VillageOperator, RegencyOfficer, Bupati, ProvinceOfficer, MinistryAssessor, PusdatinAdmin];
    pub const CASE_READERS: &[Role] = &[VillageOperator, RegencyOfficer, Bupati, ProvinceOfficer, MinistryAssessor, PusdatinAdmin, QaTeam];
    pub const MATCH_READERS: &[Role] = &[VillageOperator, RegencyOfficer, ProvinceOfficer, MinistryAssessor, PusdatinAdmin];
    pub const MATCH_DECIDERS: &[Role] = &[RegencyOfficer, ProvinceOfficer, MinistryAssessor, PusdatinAdmin];
    pub const QA_READERS: &[Role] = &[PusdatinAdmin, MinistryAssessor, QaTeam, ProvinceOfficer, RegencyOfficer, Bupati];
    pub const REGISTRY_READERS: &[Role] = &[VillageOperator, RegencyOfficer, Bupati, ProvinceOfficer, MinistryAssessor, PusdatinAdmin, Service];
    pub const PROPOSAL_READERS: &[Role] = &[VillageOperator, RegencyOfficer, Bupati, ProvinceOfficer, MinistryAssessor, PusdatinAdmin, Public];
    pub const SUBMITTERS: &[Role] = &[VillageOperator, RegencyOfficer, MinistryAssessor, PusdatinAdmin, Public];
    pub const REQUESTERS: &[Role] = &[EselonI, KlUser, PemdaUser, Public];
    pub const DECIDERS: &[Role] = &[PusdatinAdmin, Minister, DataOfficial, Ppid];
    pub const REQUEST_PARTIES: &[Role] = &[EselonI, KlUser, PemdaUser, Public, PusdatinAdmin, Minister, DataOfficial, Ppid];
    /// Everyone but services: aggregate figures without personal data.
    pub const EVERY_PERSON: &[Role] = &[VillageOperator, RegencyOfficer, Bupati, ProvinceOfficer, MinistryAssessor, PusdatinAdmin, EselonI, KlUser, PemdaUser, Ppid, QaTeam, Public, Minister, DataOfficial];
    pub const OFFICER_MANAGERS: &[Role] = &[RegencyOfficer, ProvinceOfficer, PusdatinAdmin];
}
use sets::*;

const MANAGES: &str = "Pusdatin manages every role; a province officer the regency and village roles of its province; a regency officer the village operators of its regency";
const WORKFLOW: &str = "the step's role and starting states from the verivali workflow table";
const OWNER: &str = "a citizen sees only the proposals they submitted";

/// Rows by service: `Method => roles, scope[, the rule the handler adds];`.
macro_rules! grants {
    ($($service:literal { $($method:ident => $roles:expr, $scope:ident $(, $rule:expr)?;)* })*) => {
        &[$($(row(
            concat!("/", $service, "/", stringify!($method)),
            $roles,
            Scope::$scope,
            grants!(@rule $($rule)?),
        ),)*)*]
    };
    (@rule) => { None };
    (@rule $rule:expr) => { Some($rule) };
}

/// The matrix: every RPC of every DTKS service.
pub const MATRIX: &[Grant] = grants! {
    // Intake (usulan).
    "dtks.intake.v1.IntakeService" {
        SubmitProposal => SUBMITTERS, RegionOrOwn, "the channel names who may use it: musdes — village and regency officers; ministry — assessor and Pusdatin; self-registration — the public";
        ImportProposals => &[VillageOperator, RegencyOfficer, MinistryAssessor, PusdatinAdmin], Region, "the channel names who may use it";
        GetProposal => PROPOSAL_READERS, RegionOrOwn, OWNER;
        ListProposals => PROPOSAL_READERS, RegionOrOwn, OWNER;
        WithdrawProposal => SUBMITTERS, RegionOrOwn, OWNER;
    }
    // Matching (pemadanan).
    "dtks.matching.v1.MatchingService" {
        MatchPerson => MATCH_READERS, Region;
        MatchWave => MATCH_READERS, Region;
        GetProposalMatch => REGISTRY_READERS, Region;
        ListReviewPairs => MATCH_READERS, Region;
        DecideReviewPair => MATCH_DECIDERS, Region;
    }
    // Verification and validation (verivali).
    "dtks.verivali.v1.VerivaliService" {
        GetCase => CASE_READERS, Region;
        ListCases => CASE_READERS, Region;
        WorkQueue => &[VillageOperator, RegencyOfficer, Bupati, ProvinceOfficer, MinistryAssessor], Region, "the cases waiting for the caller's own steps of the verivali workflow";
        RecordVillageReview => &[VillageOperator], Region, WORKFLOW;
        RecordFieldVerification => &[RegencyOfficer], Region, WORKFLOW;
        SignOff => &[Bupati], Region, WORKFLOW;
        ForwardToMinistry => &[ProvinceOfficer], Region, WORKFLOW;
        Assess => &[MinistryAssessor], Region, WORKFLOW;
        AssessBatch => &[MinistryAssessor], Region, WORKFLOW;
        ReturnToRegion => &[Bupati, ProvinceOfficer, MinistryAssessor], Region, WORKFLOW;
        Resubmit => &[RegencyOfficer], Region, WORKFLOW;
        FileComplaint => &[Public, VillageOperator, RegencyOfficer, ProvinceOfficer, MinistryAssessor, PusdatinAdmin, Ppid], RegionOrOwn, "the public complains about any household and learns nothing back but the complaint's id";
        ListReverifications => REGION_OFFICERS, Region;
        CompleteReverification => &[RegencyOfficer], Region;
        DrawQaSample => &[PusdatinAdmin, MinistryAssessor, QaTeam], Region;
        RecordQaResult => &[QaTeam], Region;
        QaReport => QA_READERS, Region;
        ListDue => REGION_OFFICERS, Region;
        RegisterOfficer => OFFICER_MANAGERS, Region, MANAGES;
        ReassignOfficer => OFFICER_MANAGERS, Region, MANAGES;
        DeactivateOfficer => OFFICER_MANAGERS, Region, MANAGES;
        ListOfficers => &[RegencyOfficer, Bupati, ProvinceOfficer, PusdatinAdmin], Region;
    }
    // Determination (penetapan).
    "dtks.determination.v1.DeterminationService" {
        Determine => &[PusdatinAdmin, Service], National;
        GetSnapshot => &[VillageOperator, RegencyOfficer, Bupati, ProvinceOfficer, MinistryAssessor, PusdatinAdmin, EselonI, Service], National;
        StreamSnapshot => REGISTRY_READERS, Region;
        GetHouseholdStanding => REGISTRY_READERS, Region;
        DiffSnapshots => &[MinistryAssessor, PusdatinAdmin, EselonI, Service], National;
        GetRegistryHousehold => REGISTRY_READERS, Region;
        GetHouseholdHistory => REGISTRY_READERS, Region, "a household is read in the region that holds it now: one that moved is no longer its old region's";
        StreamSnapshotChanges => REGISTRY_READERS, Region;
    }
    // Distribution (penggunaan data).
    "dtks.distribution.v1.DistributionService" {
        CreateDataRequest => REQUESTERS, Own, "each requester kind is filed by its own role: Eselon I unit, K/L user, Pemda user, public";
        ApproveDataRequest => DECIDERS, Own, "only the authority of the request's route decides it: Pusdatin for Eselon I, the Minister for K/L, the data official for Pemda, the PPID for the public";
        RejectDataRequest => DECIDERS, Own, "only the authority of the request's route decides it";
        RevokeDataRequest => DECIDERS, Own, "the authority of the request's route, or Pusdatin";
        RecordHandover => REQUESTERS, Own, "only the officer who filed the request acknowledges its handover minutes";
        GetDataRequest => REQUEST_PARTIES, Own, "the filer, the deciding authority and Pusdatin; to anyone else it does not exist";
        SaveProgramme => &[PusdatinAdmin], National;
        ListProgrammes => EVERY_PERSON, National;
        BuildList => &[EselonI, PusdatinAdmin], National;
        PrepareMonth => &[EselonI, PusdatinAdmin], National;
        ApproveList => &[EselonI], National;
        GetList => &[EselonI, PusdatinAdmin, Service], National;
        StreamList => &[EselonI, PusdatinAdmin, Service], National;
        StreamExtract => REQUESTERS, Own, "only an approved, handed-over, unexpired request's own region and data kinds; NIK and names masked for requesters who may not see them";
    }
    // Reporting (pelaporan): aggregates without personal data.
    "dtks.reporting.v1.ReportingService" {
        GetPipelineSummary => EVERY_PERSON, Aggregate;
        GetUpdateRates => EVERY_PERSON, Aggregate;
        ListInactiveRegions => EVERY_PERSON, Aggregate;
        GetFunnel => EVERY_PERSON, Aggregate;
        GetDecileDistribution => EVERY_PERSON, Aggregate;
        GetProgrammeCoverage => EVERY_PERSON, Aggregate;
        GetMatchOutcomes => EVERY_PERSON, Aggregate;
        GetReverifications => EVERY_PERSON, Aggregate;
        GetRemovals => EVERY_PERSON, Aggregate;
        Export => EVERY_PERSON, Aggregate;
        Rebuild => &[PusdatinAdmin], National;
    }
};
