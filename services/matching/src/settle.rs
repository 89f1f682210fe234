//! Settling assessed persons against DTKS itself: whether the person index already
//! holds them (a duplicate household), and, for a proposal being matched, holding them
//! from now on; then the household's overall outcome.

use dtks_proto::common::v1 as pb;
use dtks_proto::events::v1::{self as ev, HouseholdOutcome, PersonOutcome};
use sea_orm::{DatabaseTransaction, DbErr};

use crate::link;
use crate::matcher::{Assessed, persons};
use crate::store::index::{self, Entry, Holder};

/// Marks a person as a duplicate of `holder`.
pub fn duplicate(m: &mut ev::PersonMatch, holder: Holder) {
    m.outcome = PersonOutcome::DuplicateInDtks as i32;
    m.duplicate_household_id = holder.household_id;
    m.duplicate_proposal_id = holder.proposal_id.to_string();
    m.duplicate_kk_number = holder.kk_number;
}

/// Inside the storing transaction: checks every assessed person against all of DTKS,
/// stores review pairs, and indexes the persons who are not duplicates (when `index` is
/// true; MatchPerson only looks). Answers the person results.
pub async fn settle(
    txn: &DatabaseTransaction,
    model: &dtks_domain::linkage::Model,
    proposal_id: uuid::Uuid,
    region_code: &str,
    household: &pb::Household,
    assessed: Vec<Assessed>,
    write: bool,
) -> Result<Vec<ev::PersonMatch>, DbErr> {
    let village = household
        .address
        .as_ref()
        .map(|a| a.village_code.as_str())
        .unwrap_or_default();
    // One lock per NIK, and per birth date for persons found by linkage (both linkage
    // lookups include the birth date): proposals settled at the same moment see each other.
    let born: Vec<String> = persons(household)
        .zip(&assessed)
        .filter(|(_, a)| a.nik.is_none())
        .filter_map(|((_, _, p), _)| {
            p.birth_date
                .map(|_| format!("born:{}", link::iso(p.birth_date.as_ref())))
        })
        .collect();
    let mut keys: Vec<&str> = assessed
        .iter()
        .filter_map(|a| a.nik.as_deref())
        .chain(born.iter().map(String::as_str))
        .collect();
    // A look that writes nothing (MatchPerson) needs no turn.
    if write {
        index::lock(txn, &mut keys).await?;
    }
    let mut indexed = std::collections::HashSet::new();
    let mut results = Vec::with_capacity(assessed.len());
    for ((fi, mi, p), a) in persons(household).zip(&assessed) {
        let kk = &household.families[fi as usize].kk_number;
        let mut m = ev::PersonMatch {
            family_index: fi,
            member_index: mi,
            outcome: a.outcome as i32,
            corrections: a.corrections.clone(),
            link_probability: a.probability,
            model_version: if a.model_version.is_empty() {
                link::model_version()
            } else {
                a.model_version.clone()
            },
            held: a.held,
            ..Default::default()
        };
        if let (Some((candidate, reason)), true) = (&a.review, write) {
            m.review_pair_id = crate::store::open_review_pair(
                txn,
                proposal_id,
                region_code,
                (fi, mi),
                candidate,
                a.probability,
                reason,
                a.before_linkage,
            )
            .await?
            .to_string();
        }
        let record = link::person_record(p, village);
        let holder = match (&a.nik, a.outcome) {
            (_, PersonOutcome::Deceased) => None,
            (Some(nik), _) => match index::by_nik(txn, nik, &household.household_id).await? {
                Some(h) => Some(h),
                // Held without a NIK before?
                None => {
                    index::by_linkage(txn, model, &record, &household.household_id, true).await?
                }
            },
            (None, _) => {
                index::by_linkage(txn, model, &record, &household.household_id, false).await?
            }
        };
        match holder {
            Some(h) if h.proposal_id != proposal_id => duplicate(&mut m, h),
            Some(_) => {}
            // A member of the household this change is for, held already.
            None if write && held_already(txn, &household.household_id, a).await? => {}
            None if write && a.outcome != PersonOutcome::Deceased => {
                let nik = a.nik.as_deref().filter(|n| indexed.insert(n.to_owned()));
                index::insert(
                    txn,
                    proposal_id,
                    &household.household_id,
                    &Entry {
                        family_index: fi,
                        member_index: mi,
                        nik,
                        kk_number: kk,
                        full_name: &p.full_name,
                        birth_date: link::date(p.birth_date.as_ref()),
                        sex: p.sex as i16,
                        village_code: village,
                    },
                )
                .await?;
            }
            None => {}
        }
        results.push(m);
    }
    Ok(results)
}

/// Whether the DTKS household a change proposal is for holds the person by their NIK.
async fn held_already(
    txn: &DatabaseTransaction,
    household: &str,
    assessed: &Assessed,
) -> Result<bool, DbErr> {
    match &assessed.nik {
        Some(nik) => index::holds(txn, household, nik).await,
        None => Ok(false),
    }
}

/// The overall outcome verivali acts on: a duplicate first, then any person not
/// matched, then probable matches awaiting a clerk, then corrections.
pub fn household_outcome(persons: &[ev::PersonMatch]) -> HouseholdOutcome {
    let outcomes: Vec<PersonOutcome> = persons
        .iter()
        .map(|p| PersonOutcome::try_from(p.outcome).unwrap_or_default())
        .collect();
    let any = |wanted: &[PersonOutcome]| outcomes.iter().any(|o| wanted.contains(o));
    if any(&[PersonOutcome::DuplicateInDtks]) {
        HouseholdOutcome::Duplicate
    } else if any(&[
        PersonOutcome::NotFound,
        PersonOutcome::NikOfAnotherPerson,
        PersonOutcome::Deceased,
        PersonOutcome::NoNik,
        PersonOutcome::Unspecified,
    ]) {
        HouseholdOutcome::Unmatched
    } else if any(&[PersonOutcome::InReview]) {
        HouseholdOutcome::InReview
    } else if any(&[PersonOutcome::MatchedWithCorrections]) {
        HouseholdOutcome::NeedsCorrection
    } else {
        HouseholdOutcome::AllMatched
    }
}
