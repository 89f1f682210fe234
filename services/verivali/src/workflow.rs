//! The case's state machine (Permensos 3/2021, stage 1), as one table: which role may
//! take which step from which states, and where the step leads. Every command of the
//! service goes through [`check`], so no step can be skipped or taken by the wrong
//! office.

use dtks_platform::auth::Role;
use dtks_proto::verivali::v1::CaseState;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// The musdes approves the proposal (village review).
    VillageApprove,
    /// The musdes does not approve it: final.
    VillageReject,
    /// The Dinsos field visit confirms the household.
    FieldConfirm,
    /// The visit does not: final.
    FieldReject,
    /// Bupati/Walikota sign-off (pengesahan).
    SignOff,
    /// The province forwards to the ministry.
    Forward,
    /// The ministry accepts (integrity criteria pass, or an assessor's override).
    Accept,
    /// Back to the region with reasons, from the office holding the case.
    Return,
    /// The regency sends a returned case again, corrected.
    Resubmit,
    /// The corrected household was matched again against Dukcapil.
    Rematched,
    /// A change Dukcapil recorded needs no musdes: its record stands in for the minutes
    /// (the CIVIL_REGISTRY channel).
    RecordedByDukcapil,
}

impl Step {
    pub fn name(self) -> &'static str {
        match self {
            Step::VillageApprove => "approve in the village review",
            Step::VillageReject => "reject in the village review",
            Step::FieldConfirm => "confirm in field verification",
            Step::FieldReject => "reject in field verification",
            Step::SignOff => "sign off",
            Step::Forward => "forward to the ministry",
            Step::Accept => "accept",
            Step::Return => "return to the region",
            Step::Resubmit => "resubmit",
            Step::Rematched => "take the new match",
            Step::RecordedByDukcapil => "pass the musdes on Dukcapil's record",
        }
    }
}

use CaseState as S;

/// (step, role, from, to): the whole workflow.
const TABLE: &[(Step, Role, &[CaseState], CaseState)] = &[
    (
        Step::VillageApprove,
        Role::VillageOperator,
        &[S::Matched],
        S::VillageReviewed,
    ),
    (
        Step::VillageReject,
        Role::VillageOperator,
        &[S::Matched],
        S::Rejected,
    ),
    (
        Step::FieldConfirm,
        Role::RegencyOfficer,
        &[S::VillageReviewed],
        S::FieldVerified,
    ),
    (
        Step::FieldReject,
        Role::RegencyOfficer,
        &[S::VillageReviewed],
        S::Rejected,
    ),
    (
        Step::SignOff,
        Role::Bupati,
        &[S::FieldVerified],
        S::SignedOff,
    ),
    (
        Step::Forward,
        Role::ProvinceOfficer,
        &[S::SignedOff],
        S::Forwarded,
    ),
    (
        Step::Accept,
        Role::MinistryAssessor,
        &[S::Forwarded],
        S::Accepted,
    ),
    (Step::Return, Role::Bupati, &[S::FieldVerified], S::Returned),
    (
        Step::Return,
        Role::ProvinceOfficer,
        &[S::SignedOff],
        S::Returned,
    ),
    (
        Step::Return,
        Role::MinistryAssessor,
        &[S::Forwarded],
        S::Returned,
    ),
    (
        Step::Resubmit,
        Role::RegencyOfficer,
        &[S::Returned],
        S::Resubmitted,
    ),
    (
        Step::Rematched,
        Role::Service,
        &[S::Resubmitted],
        S::VillageReviewed,
    ),
    (
        Step::RecordedByDukcapil,
        Role::Service,
        &[S::Matched],
        S::VillageReviewed,
    ),
];

/// Why a step may not be taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The role never takes this step (PERMISSION_DENIED).
    Role { allowed: Vec<Role> },
    /// Not from the case's current state (FAILED_PRECONDITION).
    State {
        current: CaseState,
        expected: Vec<CaseState>,
    },
}

impl Refusal {
    pub fn describe(&self, step: Step, role: Role) -> String {
        match self {
            Refusal::Role { allowed } => format!(
                "role {role:?} may not {}; {} may",
                step.name(),
                allowed
                    .iter()
                    .map(|r| format!("{r:?}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Refusal::State { current, expected } => format!(
                "the case is {}; to {} it must be {}",
                current.as_str_name(),
                step.name(),
                expected
                    .iter()
                    .map(|s| s.as_str_name())
                    .collect::<Vec<_>>()
                    .join(" or ")
            ),
        }
    }
}

/// Roles that take `step` at all; empty for none.
pub fn roles_for(step: Step) -> Vec<Role> {
    TABLE
        .iter()
        .filter(|(s, ..)| *s == step)
        .map(|(_, r, ..)| *r)
        .collect()
}

/// Whether `role` may take `step` at all (before any case is looked at).
pub fn check_role(step: Step, role: Role) -> Result<(), Refusal> {
    if TABLE.iter().any(|(s, r, ..)| *s == step && *r == role) {
        Ok(())
    } else {
        Err(Refusal::Role {
            allowed: roles_for(step),
        })
    }
}

/// The state `role` taking `step` on a case in `current` leads to.
pub fn check(step: Step, role: Role, current: CaseState) -> Result<CaseState, Refusal> {
    check_role(step, role)?;
    let mut expected = Vec::new();
    for (s, r, from, to) in TABLE {
        if *s == step && *r == role {
            if from.contains(&current) {
                return Ok(*to);
            }
            expected.extend_from_slice(from);
        }
    }
    Err(Refusal::State { current, expected })
}

/// The steps `role` takes from `state`: what an officer's work queue holds.
pub fn waiting_for(role: Role) -> Vec<CaseState> {
    let mut states: Vec<CaseState> = TABLE
        .iter()
        .filter(|(s, r, ..)| *r == role && *s != Step::Return)
        .flat_map(|(_, _, from, _)| from.iter().copied())
        .collect();
    states.sort_by_key(|s| *s as i32);
    states.dedup();
    states
}

/// The happy path's states in order, for the demo policy and the benchmark.
pub const PATH: &[(Step, Role)] = &[
    (Step::VillageApprove, Role::VillageOperator),
    (Step::FieldConfirm, Role::RegencyOfficer),
    (Step::SignOff, Role::Bupati),
    (Step::Forward, Role::ProvinceOfficer),
];

#[cfg(test)]
mod tests {

    /// The access matrix lets exactly the workflow's roles call each workflow method.
    #[test]
    fn the_access_matrix_names_the_workflow_roles() {
        let methods: [(&str, &[Step]); 8] = [
            (
                "RecordVillageReview",
                &[Step::VillageApprove, Step::VillageReject],
            ),
            (
                "RecordFieldVerification",
                &[Step::FieldConfirm, Step::FieldReject],
            ),
            ("SignOff", &[Step::SignOff]),
            ("ForwardToMinistry", &[Step::Forward]),
            ("Assess", &[Step::Accept, Step::Return]),
            ("AssessBatch", &[Step::Accept, Step::Return]),
            ("ReturnToRegion", &[Step::Return]),
            ("Resubmit", &[Step::Resubmit]),
        ];
        for (method, steps) in methods {
            let grant = dtks_platform::access::grant(&format!(
                "/dtks.verivali.v1.VerivaliService/{method}"
            ))
            .expect("a row");
            let mut roles: Vec<&str> = steps
                .iter()
                .flat_map(|s| roles_for(*s))
                .map(|r| r.as_str())
                .collect();
            // Assess returns through the ministry's own verdict, not the region's return.
            if method.starts_with("Assess") {
                roles.retain(|r| *r == Role::MinistryAssessor.as_str());
            }
            roles.sort();
            roles.dedup();
            let mut granted: Vec<&str> = grant.roles.iter().map(|r| r.as_str()).collect();
            granted.sort();
            assert_eq!(granted, roles, "{method}");
        }
        let waiting: Vec<Role> = Role::ALL
            .into_iter()
            .filter(|r| *r != Role::Service && !waiting_for(*r).is_empty())
            .collect();
        let queue = dtks_platform::access::grant("/dtks.verivali.v1.VerivaliService/WorkQueue")
            .expect("a row");
        assert_eq!(queue.roles, waiting.as_slice());
    }
    use super::*;

    const STATES: &[CaseState] = &[
        S::Matched,
        S::VillageReviewed,
        S::FieldVerified,
        S::SignedOff,
        S::Forwarded,
        S::Accepted,
        S::Returned,
        S::Rejected,
        S::Resubmitted,
    ];
    const STEPS: &[Step] = &[
        Step::VillageApprove,
        Step::VillageReject,
        Step::FieldConfirm,
        Step::FieldReject,
        Step::SignOff,
        Step::Forward,
        Step::Accept,
        Step::Return,
        Step::Resubmit,
        Step::Rematched,
        Step::RecordedByDukcapil,
    ];

    #[test]
    fn every_step_role_and_state_has_one_answer() {
        let mut allowed = 0;
        for &step in STEPS {
            for role in Role::ALL {
                for &state in STATES {
                    let listed = TABLE
                        .iter()
                        .find(|(s, r, from, _)| *s == step && *r == role && from.contains(&state));
                    match (check(step, role, state), listed) {
                        (Ok(to), Some((.., expected))) => {
                            assert_eq!(to, *expected);
                            allowed += 1;
                        }
                        (Err(Refusal::Role { allowed }), None) => {
                            assert!(!allowed.contains(&role), "{step:?} {role:?}");
                            assert!(!allowed.is_empty(), "{step:?} has no role");
                        }
                        (Err(Refusal::State { current, expected }), None) => {
                            assert_eq!(current, state);
                            assert!(!expected.contains(&state));
                            assert!(!expected.is_empty());
                        }
                        (got, listed) => {
                            panic!("{step:?} {role:?} {state:?}: {got:?} vs {listed:?}")
                        }
                    }
                }
            }
        }
        // One allowed (step, role, state) per table row's from-state.
        assert_eq!(
            allowed,
            TABLE.iter().map(|(_, _, f, _)| f.len()).sum::<usize>()
        );
    }

    #[test]
    fn final_states_lead_nowhere() {
        for &step in STEPS {
            for role in Role::ALL {
                for state in [S::Accepted, S::Rejected] {
                    assert!(check(step, role, state).is_err(), "{step:?} from {state:?}");
                }
            }
        }
    }

    #[test]
    fn the_happy_path_reaches_the_ministry_and_the_loop_closes() {
        let mut state = S::Matched;
        for (step, role) in PATH {
            state = check(*step, *role, state).expect("path step");
        }
        assert_eq!(state, S::Forwarded);
        let returned = check(Step::Return, Role::MinistryAssessor, state).expect("return");
        let resubmitted = check(Step::Resubmit, Role::RegencyOfficer, returned).expect("resubmit");
        let again = check(Step::Rematched, Role::Service, resubmitted).expect("rematch");
        assert_eq!(again, S::VillageReviewed);
        assert_eq!(
            check(Step::Accept, Role::MinistryAssessor, S::Forwarded),
            Ok(S::Accepted)
        );
    }

    #[test]
    fn refusals_name_the_current_state_and_the_roles() {
        let r = check(Step::SignOff, Role::Bupati, S::Matched).expect_err("refused");
        assert_eq!(
            r.describe(Step::SignOff, Role::Bupati),
            "the case is CASE_STATE_MATCHED; to sign off it must be CASE_STATE_FIELD_VERIFIED"
        );
        let r = check(Step::SignOff, Role::VillageOperator, S::FieldVerified).expect_err("refused");
        assert_eq!(
            r.describe(Step::SignOff, Role::VillageOperator),
            "role VillageOperator may not sign off; Bupati may"
        );
    }

    #[test]
    fn work_queues_follow_the_table() {
        assert_eq!(waiting_for(Role::VillageOperator), vec![S::Matched]);
        assert_eq!(
            waiting_for(Role::RegencyOfficer),
            vec![S::VillageReviewed, S::Returned]
        );
        assert_eq!(waiting_for(Role::MinistryAssessor), vec![S::Forwarded]);
        assert!(waiting_for(Role::Public).is_empty());
    }
}
