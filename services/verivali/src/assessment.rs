//! The ministry's assessment of a case against the five integrity criteria (Permensos
//! 3/2021): decided from what the case holds — the match of every member and the
//! household as verified — on a given day; pure, no storage.

use dtks_domain::integrity::{self, MatchOutcome};
use dtks_platform::convert;
use dtks_proto::common::v1 as pb;
use dtks_proto::events::v1::{self as ev, PersonOutcome};
use dtks_proto::verivali::v1 as vv;
use serde::{Deserialize, Serialize};

/// What a case holds for its assessment: the match, the household as verified, and
/// what the officers were told of it when it opened.
pub struct Content {
    pub matched: ev::ProposalMatched,
    pub household: pb::Household,
    pub flags: Vec<dtks_domain::consistency::Flag>,
}

impl Content {
    /// A removal (*penghapusan*: a REMOVE proposal) answers its reason, in words and as
    /// a code: the household it names leaves DTKS once the case is accepted.
    pub fn removal(&self) -> Option<(&str, ev::RemovalReason)> {
        let kind = ev::ProposalKind::try_from(self.matched.kind).unwrap_or_default();
        let code = ev::RemovalReason::try_from(self.matched.removal_reason).unwrap_or_default();
        (kind == ev::ProposalKind::Remove).then_some((self.matched.reason.as_str(), code))
    }
}

fn outcome_of(p: &ev::PersonMatch) -> MatchOutcome {
    match PersonOutcome::try_from(p.outcome).unwrap_or_default() {
        PersonOutcome::Matched => MatchOutcome::Matched,
        PersonOutcome::MatchedWithCorrections => MatchOutcome::MatchedWithCorrections(
            p.corrections
                .iter()
                .map(|c| (c.field.clone(), c.registry_value.clone()))
                .collect(),
        ),
        PersonOutcome::NikOfAnotherPerson => MatchOutcome::NikOfAnotherPerson,
        PersonOutcome::Deceased => MatchOutcome::Deceased,
        PersonOutcome::DuplicateInDtks => MatchOutcome::DuplicateInDtks {
            household_id: p.duplicate_household_id.clone(),
        },
        PersonOutcome::NoNik => MatchOutcome::NoNik,
        PersonOutcome::InReview => MatchOutcome::InReview,
        PersonOutcome::NotFound | PersonOutcome::Unspecified => MatchOutcome::NotFound,
    }
}

/// The ministry's assessment as stored with the case.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Assessment {
    pub criteria: Vec<integrity::CriterionResult>,
    pub accepted: bool,
    #[serde(default)]
    pub override_reason: String,
    #[serde(default)]
    pub assessed_by: String,
}

impl Assessment {
    pub fn to_proto(&self) -> vv::Assessment {
        vv::Assessment {
            criteria: self
                .criteria
                .iter()
                .map(|c| vv::CriterionResult {
                    criterion: u32::from(c.criterion),
                    verdict: if c.passed {
                        vv::CriterionVerdict::Pass
                    } else {
                        vv::CriterionVerdict::Fail
                    } as i32,
                    reasons: c.reasons.clone(),
                })
                .collect(),
            accepted: self.accepted,
            override_reason: self.override_reason.clone(),
            assessed_by: self.assessed_by.clone(),
        }
    }

    /// The verdict in a line, for the case's history.
    pub fn note(&self) -> String {
        match (
            self.accepted,
            self.override_reason.is_empty(),
            self.criteria.len(),
        ) {
            (_, false, _) => format!("assessor's override: {}", self.override_reason),
            (true, _, 5) => "all five integrity criteria pass".to_owned(),
            (true, _, _) => "the removal names its household and why it leaves".to_owned(),
            (false, _, _) => "integrity criteria failed".to_owned(),
        }
    }

    /// The failed criteria's reasons, for the region.
    pub fn reasons(&self) -> Vec<String> {
        self.criteria
            .iter()
            .filter(|c| !c.passed)
            .flat_map(|c| {
                c.reasons
                    .iter()
                    .map(move |r| format!("criterion {}: {r}", c.criterion))
            })
            .collect()
    }
}

/// The five integrity criteria (Pasal 8 ayat 3) for the household as verified and the
/// match of each of its members.
pub fn assess(content: &Content, today: chrono::NaiveDate) -> Assessment {
    let criteria = match content.removal() {
        Some((reason, _)) => removal(content, reason),
        None => household(content, today),
    };
    Assessment {
        accepted: criteria.iter().all(|c| c.passed),
        criteria,
        override_reason: String::new(),
        assessed_by: String::new(),
    }
}

/// The flags that say a removal or a change has no household of its village to act on.
pub const NOTHING_TO_CHANGE: [&str; 2] = ["not_in_dtks", "other_village"];

/// A removal carries no members to check against the first four criteria: it is held
/// to the fifth, sound and complete data — a household of DTKS registered in the
/// village it is proposed from, and why it leaves.
fn removal(content: &Content, reason: &str) -> Vec<integrity::CriterionResult> {
    let mut reasons = Vec::new();
    if uuid::Uuid::parse_str(content.household.household_id.trim()).is_err() {
        reasons.push("a removal names the DTKS household it takes out".to_owned());
    }
    if reason.trim().is_empty() {
        reasons.push("a removal states why the household leaves DTKS".to_owned());
    }
    reasons.extend(nothing_to_change(content));
    vec![integrity::CriterionResult {
        criterion: 5,
        passed: reasons.is_empty(),
        reasons,
    }]
}

/// The reasons of the flags that say there is no household to act on.
fn nothing_to_change(content: &Content) -> impl Iterator<Item = String> + '_ {
    let flags = content.flags.iter();
    let named = flags.filter(|f| NOTHING_TO_CHANGE.contains(&f.code.as_str()));
    named.map(|f| f.reason.clone())
}

/// The five criteria of a household proposed whole (ADD, CHANGE); a change of no
/// household of its village fails the fifth.
fn household(content: &Content, today: chrono::NaiveDate) -> Vec<integrity::CriterionResult> {
    let mut criteria = five_criteria(content, today);
    let missing: Vec<String> = nothing_to_change(content).collect();
    if let Some(fifth) = criteria.iter_mut().find(|c| c.criterion == 5)
        && !missing.is_empty()
    {
        fifth.reasons.extend(missing);
        fifth.passed = false;
    }
    criteria
}

fn five_criteria(content: &Content, today: chrono::NaiveDate) -> Vec<integrity::CriterionResult> {
    match convert::household_from_proto(&content.household, today) {
        Ok(household) => {
            let outcomes: integrity::Outcomes = content
                .matched
                .persons
                .iter()
                .map(|p| {
                    (
                        (p.family_index as usize, p.member_index as usize),
                        outcome_of(p),
                    )
                })
                .collect();
            integrity::assess(&household, &outcomes)
        }
        Err(violations) => unparsed(&content.household, &violations),
    }
}

/// The criteria of a household whose fields do not parse: a NIK given twice breaks
/// criterion 1 (and 4 across families); the other field violations are criterion 5;
/// criteria 2 and 3 wait for valid fields.
fn unparsed(
    household: &pb::Household,
    violations: &dtks_domain::Violations,
) -> Vec<integrity::CriterionResult> {
    let (mut single, mut overlap) = (Vec::new(), Vec::new());
    let mut seen: std::collections::HashMap<&str, (usize, usize)> = Default::default();
    for (fi, family) in household.families.iter().enumerate() {
        for (mi, person) in family.members.iter().enumerate() {
            if person.nik.is_empty() {
                continue;
            }
            if let Some((f0, m0)) = seen.insert(&person.nik, (fi, mi)) {
                single.push(format!(
                    "family {} member {} repeats the NIK of family {} member {}",
                    fi + 1,
                    mi + 1,
                    f0 + 1,
                    m0 + 1
                ));
                if f0 != fi {
                    overlap.push(format!(
                        "family {} member {} is also member {} of family {}",
                        fi + 1,
                        mi + 1,
                        m0 + 1,
                        f0 + 1
                    ));
                }
            }
        }
    }
    let fields: Vec<String> = violations
        .0
        .iter()
        .filter(|v| !v.description.starts_with("the same NIK is already given"))
        .map(ToString::to_string)
        .collect();
    let waiting = |criterion| integrity::CriterionResult {
        criterion,
        passed: fields.is_empty(),
        reasons: if fields.is_empty() {
            vec![]
        } else {
            vec!["cannot be assessed until the fields under criterion 5 are valid".to_owned()]
        },
    };
    let result = |criterion, reasons: Vec<String>| integrity::CriterionResult {
        criterion,
        passed: reasons.is_empty(),
        reasons,
    };
    vec![
        result(1, single),
        waiting(2),
        waiting(3),
        result(4, overlap),
        result(5, fields),
    ]
}
