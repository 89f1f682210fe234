//! The ministry's assessment as verivali computes it: the five integrity criteria of
//! Pasal 8 ayat 3 from the household as verified and the match of each member, each
//! criterion failing on its own with its reason.

use dtks_proto::events::v1::{self as ev, PersonOutcome};
use dtks_verivali::{Content, assess};

use super::household;

/// [`household`] with every member matched.
fn content() -> Content {
    let household = household();
    let persons = (0..3)
        .map(|m| ev::PersonMatch {
            family_index: 0,
            member_index: m,
            outcome: PersonOutcome::Matched as i32,
            ..Default::default()
        })
        .collect();
    Content {
        matched: ev::ProposalMatched {
            persons,
            household: Some(household.clone()),
            ..Default::default()
        },
        household,
        flags: Vec::new(),
    }
}

/// The date the services assess on.
fn today() -> chrono::NaiveDate {
    dtks_e2e::time::today()
}

/// The criteria that fail, each with its first reason.
fn failing(c: &Content) -> Vec<(u8, String)> {
    let a = assess(c, today());
    assert_eq!(a.criteria.len(), 5);
    assert_eq!(a.accepted, a.criteria.iter().all(|c| c.passed));
    a.criteria
        .iter()
        .filter(|c| !c.passed)
        .map(|c| (c.criterion, c.reasons[0].clone()))
        .collect()
}

#[test]
fn a_matched_complete_household_passes_all_five() {
    assert!(failing(&content()).is_empty());
    assert!(assess(&content(), today()).accepted);
}

#[test]
fn criterion_1_a_person_already_in_dtks() {
    let mut c = content();
    c.matched.persons[2].outcome = PersonOutcome::DuplicateInDtks as i32;
    c.matched.persons[2].duplicate_household_id = "H-9".into();
    let f = failing(&c);
    assert_eq!(f.len(), 1, "{f:?}");
    assert_eq!(f[0].0, 1);
    assert!(
        f[0].1
            .contains("family 1 member 3 is already registered in household H-9")
    );
}

#[test]
fn criterion_2_each_outcome_dukcapil_disputes() {
    for (outcome, reason) in [
        (PersonOutcome::NotFound, "NIK not found in Dukcapil"),
        (
            PersonOutcome::NikOfAnotherPerson,
            "belongs to another person",
        ),
        (PersonOutcome::Deceased, "deceased"),
        (PersonOutcome::NoNik, "has no NIK"),
        (PersonOutcome::InReview, "awaits clerical review"),
        (
            PersonOutcome::MatchedWithCorrections,
            "differs from Dukcapil in full_name",
        ),
    ] {
        let mut c = content();
        c.matched.persons[1].outcome = outcome as i32;
        c.matched.persons[1].corrections = vec![ev::FieldCorrection {
            field: "full_name".into(),
            registry_value: "SITI AMINAH".into(),
        }];
        let f = failing(&c);
        assert_eq!(f.len(), 1, "{outcome:?}: {f:?}");
        assert_eq!(f[0].0, 2);
        assert!(f[0].1.starts_with("family 1 member 2"), "{f:?}");
        assert!(f[0].1.contains(reason), "{outcome:?}: {f:?}");
    }
}

#[test]
fn criterion_3_a_family_without_its_card() {
    let mut c = content();
    c.household.families[0].kk_number = String::new();
    let f = failing(&c);
    assert_eq!(f.len(), 1, "{f:?}");
    assert_eq!(f[0].0, 3);
    assert!(f[0].1.contains("no KK number"), "{f:?}");
}

#[test]
fn criterion_4_a_member_in_two_families() {
    let mut c = content();
    // Dede is on his parents' card and on a second card of the household.
    let mut second = c.household.families[0].clone();
    second.kk_number = "3204050505150002".into();
    second.members.drain(..2);
    c.household.families.push(second);
    c.matched.persons.push(ev::PersonMatch {
        family_index: 1,
        member_index: 0,
        outcome: PersonOutcome::Matched as i32,
        ..Default::default()
    });
    let f = failing(&c);
    let numbers: Vec<u8> = f.iter().map(|(n, _)| *n).collect();
    // The repeated NIK also breaks criterion 1 (a person recorded once).
    assert_eq!(numbers, vec![1, 4], "{f:?}");
    assert_eq!(f[1].1, "family 2 member 1 is also member 3 of family 1");
}

#[test]
fn criterion_5_an_attribute_left_out() {
    let mut c = content();
    if let Some(d) = c.household.dwelling.as_mut() {
        d.roof = 0;
    }
    let f = failing(&c);
    assert_eq!(f.len(), 1, "{f:?}");
    assert_eq!(f[0].0, 5);
    assert!(f[0].1.contains("roof"), "{f:?}");
}

#[test]
fn a_household_that_does_not_parse_fails_criterion_5_with_the_fields() {
    let mut c = content();
    c.household.families[0].members[0].nik = "32".into();
    let f = failing(&c);
    let numbers: Vec<u8> = f.iter().map(|(n, _)| *n).collect();
    assert_eq!(numbers, vec![2, 3, 5], "{f:?}");
    assert!(f[2].1.contains("members[0].nik"), "{f:?}");
}

/// A REMOVE of a household of DTKS, with its reason.
fn removal(reason: &str) -> Content {
    let household = dtks_proto::common::v1::Household {
        household_id: "0190a8e4-7d1c-7000-8000-000000000001".into(),
        ..Default::default()
    };
    Content {
        matched: ev::ProposalMatched {
            kind: ev::ProposalKind::Remove as i32,
            reason: reason.into(),
            household: Some(household.clone()),
            ..Default::default()
        },
        household,
        flags: Vec::new(),
    }
}

#[test]
fn a_removal_is_held_to_the_fifth_criterion_alone() {
    let a = assess(&removal("the family moved abroad"), today());
    assert!(a.accepted, "{a:?}");
    assert_eq!(a.criteria.len(), 1);
    assert_eq!(a.criteria[0].criterion, 5);

    let unexplained = assess(&removal("  "), today());
    assert!(!unexplained.accepted);
    assert!(
        unexplained.reasons()[0].contains("states why"),
        "{unexplained:?}"
    );

    let mut unnamed = removal("moved");
    unnamed.household.household_id = "rumah pak RT".into();
    let a = assess(&unnamed, today());
    assert!(!a.accepted);
    assert!(a.reasons()[0].contains("names the DTKS household"), "{a:?}");

    // Told at opening that the household is not in DTKS: nothing to take out.
    let mut gone = removal("moved");
    gone.flags.push(dtks_domain::consistency::Flag {
        code: "not_in_dtks".into(),
        reason: "not in DTKS".into(),
    });
    let a = assess(&gone, today());
    assert!(!a.accepted);
    assert_eq!(a.reasons(), ["criterion 5: not in DTKS"]);
    // Any other flag is the officers' to weigh, not a refusal.
    gone.flags[0].code = "income_outlier".into();
    assert!(assess(&gone, today()).accepted);
}
