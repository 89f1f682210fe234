//! The five data-integrity criteria of Permensos 3/2021, Pasal 8 ayat 3, as functions of
//! a household and the civil-registry match of each of its members:
//! 1. a person's record is individual and single (no duplicates);
//! 2. each person has a NIK, name and address that match Dukcapil;
//! 3. family, group and community data are sets of individual records;
//! 4. members of one family do not overlap with another family;
//! 5. attributes are complete.

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};

use crate::household::Household;

/// What matching concluded about one person.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MatchOutcome {
    Matched,
    /// Known to Dukcapil, but these fields differ (field name, Dukcapil's value).
    MatchedWithCorrections(Vec<(String, String)>),
    NotFound,
    NikOfAnotherPerson,
    Deceased,
    DuplicateInDtks {
        household_id: String,
    },
    NoNik,
    /// A probable registry match awaiting a clerk's decision.
    InReview,
}

/// One criterion's verdict with its reasons.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CriterionResult {
    /// 1..=5, as numbered in Pasal 8 ayat 3.
    pub criterion: u8,
    pub passed: bool,
    pub reasons: Vec<String>,
}

fn verdict(criterion: u8, reasons: Vec<String>) -> CriterionResult {
    CriterionResult {
        criterion,
        passed: reasons.is_empty(),
        reasons,
    }
}

fn person_label(fi: usize, mi: usize) -> String {
    format!("family {} member {}", fi + 1, mi + 1)
}

/// `outcomes` is indexed as (family index, member index) → outcome.
pub type Outcomes = HashMap<(usize, usize), MatchOutcome>;

pub fn single_record(household: &Household, outcomes: &Outcomes) -> CriterionResult {
    let mut reasons = Vec::new();
    let mut seen = HashSet::new();
    for (fi, family) in household.families.iter().enumerate() {
        for (mi, person) in family.members.iter().enumerate() {
            if let Some(nik) = &person.nik
                && !seen.insert(nik.clone())
            {
                reasons.push(format!(
                    "{} repeats a NIK already in this household",
                    person_label(fi, mi)
                ));
            }
            if let Some(MatchOutcome::DuplicateInDtks { household_id }) = outcomes.get(&(fi, mi)) {
                reasons.push(format!(
                    "{} is already registered in household {household_id}",
                    person_label(fi, mi)
                ));
            }
        }
    }
    verdict(1, reasons)
}

pub fn matches_civil_registry(household: &Household, outcomes: &Outcomes) -> CriterionResult {
    let mut reasons = Vec::new();
    for (fi, family) in household.families.iter().enumerate() {
        for mi in 0..family.members.len() {
            let who = person_label(fi, mi);
            match outcomes.get(&(fi, mi)) {
                Some(MatchOutcome::Matched) | Some(MatchOutcome::DuplicateInDtks { .. }) => {}
                Some(MatchOutcome::MatchedWithCorrections(fields)) => {
                    let names: Vec<&str> = fields.iter().map(|(f, _)| f.as_str()).collect();
                    reasons.push(format!(
                        "{who}: differs from Dukcapil in {}",
                        names.join(", ")
                    ));
                }
                Some(MatchOutcome::NotFound) => {
                    reasons.push(format!("{who}: NIK not found in Dukcapil"))
                }
                Some(MatchOutcome::NikOfAnotherPerson) => {
                    reasons.push(format!("{who}: the NIK belongs to another person"))
                }
                // A death the proposal reports, and Dukcapil has recorded too.
                Some(MatchOutcome::Deceased) if family.members[mi].deceased => {}
                Some(MatchOutcome::Deceased) => {
                    reasons.push(format!("{who}: recorded as deceased by Dukcapil"))
                }
                Some(MatchOutcome::NoNik) => reasons.push(format!("{who}: has no NIK")),
                Some(MatchOutcome::InReview) => reasons.push(format!(
                    "{who}: a probable Dukcapil match awaits clerical review"
                )),
                None => reasons.push(format!("{who}: not matched yet")),
            }
        }
    }
    verdict(2, reasons)
}

pub fn families_are_sets_of_persons(household: &Household) -> CriterionResult {
    let mut reasons = Vec::new();
    for (fi, family) in household.families.iter().enumerate() {
        if family.kk_number.is_none() {
            reasons.push(format!("family {} has no KK number", fi + 1));
        }
        if family.members.is_empty() {
            reasons.push(format!("family {} has no members", fi + 1));
        }
        for (mi, person) in family.members.iter().enumerate() {
            if person.full_name.trim().is_empty() {
                reasons.push(format!("{} has no name", person_label(fi, mi)));
            }
        }
    }
    verdict(3, reasons)
}

pub fn no_family_overlap(household: &Household) -> CriterionResult {
    let mut reasons = Vec::new();
    let mut nik_family = HashMap::new();
    let mut kks = HashSet::new();
    for (fi, family) in household.families.iter().enumerate() {
        if let Some(kk) = &family.kk_number
            && !kks.insert(kk.clone())
        {
            reasons.push(format!(
                "family {} repeats the KK number of another family",
                fi + 1
            ));
        }
        for (mi, person) in family.members.iter().enumerate() {
            if let Some(nik) = &person.nik
                && let Some(other) = nik_family.insert(nik.clone(), fi)
                && other != fi
            {
                reasons.push(format!(
                    "{} also belongs to family {}",
                    person_label(fi, mi),
                    other + 1
                ));
            }
        }
    }
    verdict(4, reasons)
}

pub fn attributes_complete(household: &Household) -> CriterionResult {
    let reasons = household
        .missing_attributes()
        .0
        .into_iter()
        .map(|f| format!("{} is missing", f.field))
        .collect();
    verdict(5, reasons)
}

/// All five criteria, in order.
pub fn assess(household: &Household, outcomes: &Outcomes) -> Vec<CriterionResult> {
    vec![
        single_record(household, outcomes),
        matches_civil_registry(household, outcomes),
        families_are_sets_of_persons(household),
        no_family_overlap(household),
        attributes_complete(household),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::household::fixtures::household;

    fn all_matched(h: &Household) -> Outcomes {
        let mut o = Outcomes::new();
        for (fi, f) in h.families.iter().enumerate() {
            for mi in 0..f.members.len() {
                o.insert((fi, mi), MatchOutcome::Matched);
            }
        }
        o
    }

    #[test]
    fn a_matched_complete_household_passes_all_five() {
        let h = household();
        assert!(assess(&h, &all_matched(&h)).iter().all(|c| c.passed));
    }

    #[test]
    fn each_criterion_can_fail() {
        let mut h = household();
        let mut o = all_matched(&h);
        o.insert(
            (0, 1),
            MatchOutcome::DuplicateInDtks {
                household_id: "H-9".into(),
            },
        );
        o.insert(
            (0, 2),
            MatchOutcome::MatchedWithCorrections(vec![("full_name".into(), "DEDE K".into())]),
        );
        h.families[0].kk_number = None;
        let mut second = h.families[0].clone();
        second.members.truncate(1);
        h.families.push(second);
        o.insert((1, 0), MatchOutcome::Matched);
        h.dwelling.roof = None;
        let results = assess(&h, &o);
        let failed: Vec<u8> = results
            .iter()
            .filter(|c| !c.passed)
            .map(|c| c.criterion)
            .collect();
        assert_eq!(failed, vec![1, 2, 3, 4, 5]);
        assert!(results[1].reasons[0].contains("full_name"));
        assert!(results[4].reasons[0].contains("roof"));
    }
}
