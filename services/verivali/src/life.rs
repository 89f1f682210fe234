//! The life cycle of a household in DTKS (*pemutakhiran*) as verivali decides it: a
//! removal (*penghapusan*) takes the household out; a death takes the member out, and
//! when the head dies a successor is named by the rule below, for the regency to
//! confirm at its field visit; a household whose last member died is removed.

use chrono::{DateTime, Utc};
use dtks_domain::consistency::Flag;
use dtks_platform::db::stmt;
use dtks_platform::{events, outbox};
use dtks_proto::common::v1 as pb;
use dtks_proto::events::v1 as ev;
use sea_orm::{ConnectionTrait, DatabaseTransaction, DbErr};

use crate::assessment::Content;
use crate::cases::CaseRow;

/// The reason a household leaves DTKS when its last member died.
pub const ALL_DIED: &str = "every member of the household has died";

/// Accepted cases as they enter DTKS: a removal's household is taken out ([`remove`]);
/// any other's household as it stands after its deaths ([`after_deaths`]), unless none
/// of its members lives, when it is taken out too. Answers those that enter, each with
/// its match result (the proposal's kind and reason).
pub async fn settle<'a, 'c>(
    txn: &DatabaseTransaction,
    by: &str,
    accepted: &[(&'a CaseRow, &'c Content)],
    now: DateTime<Utc>,
) -> Result<Vec<(&'a CaseRow, pb::Household, &'c ev::ProposalMatched)>, DbErr> {
    let mut entering = Vec::with_capacity(accepted.len());
    for (case, content) in accepted {
        let (reason, code) = match content.removal() {
            Some(why) => why,
            None => match after_deaths(&content.household) {
                Some((household, _)) => {
                    entering.push((*case, household, &content.matched));
                    continue;
                }
                None => (ALL_DIED, ev::RemovalReason::AllDeceased),
            },
        };
        let why = Removal { reason, code, by };
        if !remove(txn, case.household_id, Some(case), &why, now).await? {
            tracing::warn!(case_id = %case.case_id, "a removal was accepted for a household not in DTKS in its village; nothing taken out");
        }
    }
    let cases: Vec<&CaseRow> = entering.iter().map(|(c, ..)| *c).collect();
    follow(txn, &cases).await?;
    Ok(entering)
}

/// The household once its members who died have left it, and the successor named when
/// a family's head was among them; `None` when no one lives. The successor rule
/// (Permensos 3/2021 leaves it to the regency; this is the proposal it confirms): the
/// head's living spouse, else the eldest living child, else the eldest living member.
pub fn after_deaths(household: &pb::Household) -> Option<(pb::Household, Vec<String>)> {
    let mut after = household.clone();
    let mut successors = Vec::new();
    for family in &mut after.families {
        let head_died = family
            .members
            .iter()
            .any(|m| m.deceased && m.relationship == HEAD);
        family.members.retain(|m| !m.deceased);
        if head_died && let Some(next) = successor(&family.members) {
            let named = &mut family.members[next];
            named.relationship = HEAD;
            successors.push(named.full_name.clone());
        }
    }
    after.families.retain(|f| !f.members.is_empty());
    (!after.families.is_empty()).then_some((after, successors))
}

const HEAD: i32 = pb::Relationship::Head as i32;
const SPOUSE: i32 = pb::Relationship::Spouse as i32;
const CHILD: i32 = pb::Relationship::Child as i32;

/// The member who heads the family after its head: see [`after_deaths`].
fn successor(members: &[pb::Person]) -> Option<usize> {
    let born = |m: &pb::Person| {
        m.birth_date
            .as_ref()
            .map(|d| (d.year, d.month, d.day))
            .unwrap_or((i32::MAX, 0, 0))
    };
    let eldest = |wanted: Option<i32>| {
        members
            .iter()
            .enumerate()
            .filter(|(_, m)| wanted.is_none_or(|r| m.relationship == r))
            .min_by_key(|(_, m)| born(m))
            .map(|(i, _)| i)
    };
    eldest(Some(SPOUSE))
        .or_else(|| eldest(Some(CHILD)))
        .or_else(|| eldest(None))
}

/// What the officers are told when a REMOVE or a CHANGE names a household that is not
/// in DTKS in the village it is proposed from (`not_in_dtks`, `other_village`: there
/// is nothing to change, and the assessment says so), or, for a move, the village the
/// household comes from (`moved_from`).
pub async fn target_flag(
    txn: &DatabaseTransaction,
    (household_id, village): (&str, &str),
    kind: ev::ProposalKind,
    moving: bool,
) -> Result<Option<Flag>, DbErr> {
    let registered = match uuid::Uuid::parse_str(household_id) {
        Ok(id) => registered_in(txn, id).await?,
        Err(_) => None,
    };
    let what = if kind == ev::ProposalKind::Remove {
        "removal"
    } else {
        "change"
    };
    let (code, reason) = match registered {
        Some(at) if at == village => return Ok(None),
        Some(at) if moving => (
            "moved_from",
            format!(
                "the household moves here from village {at}: once accepted, its open tasks follow it and that region no longer reads it"
            ),
        ),
        Some(at) => (
            "other_village",
            format!("the household this {what} names is registered in village {at}, not this one"),
        ),
        None => (
            "not_in_dtks",
            format!(
                "the household this {what} names is not in DTKS: never accepted, or removed already"
            ),
        ),
    };
    Ok(Some(Flag {
        code: code.to_owned(),
        reason,
    }))
}

/// A household that moved takes its open re-verification tasks to its new village.
pub async fn follow(txn: &DatabaseTransaction, entering: &[&CaseRow]) -> Result<(), DbErr> {
    let ids: Vec<uuid::Uuid> = entering.iter().map(|c| c.household_id).collect();
    let villages: Vec<String> = entering.iter().map(|c| c.region.clone()).collect();
    txn.execute_raw(stmt(
        "UPDATE reverifications t SET region_code = u.village
         FROM unnest($1::uuid[], $2::text[]) AS u (household_id, village)
         WHERE t.household_id = u.household_id AND t.completed_at IS NULL AND t.region_code <> u.village",
        [ids.into(), villages.into()],
    ))
    .await?;
    Ok(())
}

/// What the officers are told when a case opens on a death: the successor the rule
/// names, or that the household leaves DTKS.
pub fn death_flags(household: &pb::Household) -> Vec<Flag> {
    if !household
        .families
        .iter()
        .flat_map(|f| &f.members)
        .any(|m| m.deceased)
    {
        return Vec::new();
    }
    match after_deaths(household) {
        None => vec![Flag {
            code: "all_deceased".to_owned(),
            reason: format!("{ALL_DIED}: accepting the change removes it from DTKS"),
        }],
        Some((_, successors)) => successors
            .into_iter()
            .map(|name| Flag {
                code: "head_succession".to_owned(),
                reason: format!(
                    "the head has died: {name} is named head by the succession rule; the regency confirms it at its field visit"
                ),
            })
            .collect(),
    }
}

/// Why a household leaves DTKS, and who decided it.
pub struct Removal<'a> {
    pub reason: &'a str,
    pub code: ev::RemovalReason,
    pub by: &'a str,
}

/// Takes a household out of DTKS (*penghapusan*) for `why`, and tells the stages
/// (`household.removed`). With the accepted REMOVE's `case`, the event names the case
/// and its proposal, and only a household registered in the case's village is taken
/// out; without one (a re-verification visit), the case that brought the household in.
/// False, and nothing told, when no such household is in DTKS.
pub async fn remove(
    txn: &DatabaseTransaction,
    household_id: uuid::Uuid,
    case: Option<&CaseRow>,
    why: &Removal<'_>,
    now: DateTime<Utc>,
) -> Result<bool, DbErr> {
    let village = case.map(|c| c.region.clone());
    let row = txn
        .query_one_raw(stmt(
            "UPDATE households SET removed_at = $2, removal_reason = $3
             WHERE household_id = $1 AND removed_at IS NULL AND ($4::text IS NULL OR region_code = $4)
             RETURNING region_code, case_id",
            [household_id.into(), now.into(), why.reason.to_owned().into(), village.into()],
        ))
        .await?;
    let Some(row) = row else {
        return Ok(false);
    };
    let region: String = row.try_get("", "region_code")?;
    let (case_id, proposal_id) = match case {
        Some(case) => (case.case_id, case.proposal_id.to_string()),
        None => (row.try_get("", "case_id")?, String::new()),
    };
    let removed = ev::HouseholdRemoved {
        household_id: household_id.to_string(),
        case_id: case_id.to_string(),
        reason: why.reason.to_owned(),
        proposal_id,
        decided_by: why.by.to_owned(),
        removal_reason: why.code as i32,
    };
    let envelope = events::envelope(events::HOUSEHOLD_REMOVED, "verivali", &region, &removed);
    outbox::enqueue(txn, &envelope).await?;
    Ok(true)
}

/// The village a household is registered in while it is in DTKS (accepted, and not
/// removed since).
pub async fn registered_in(
    db: &impl ConnectionTrait,
    household_id: uuid::Uuid,
) -> Result<Option<String>, DbErr> {
    Ok(registered(db, household_id)
        .await?
        .map(|(village, _)| village))
}

/// The village a household is registered in while it is in DTKS, and the case that
/// last changed it.
pub async fn registered(
    db: &impl ConnectionTrait,
    household_id: uuid::Uuid,
) -> Result<Option<(String, uuid::Uuid)>, DbErr> {
    let sql = "SELECT region_code, case_id FROM households WHERE household_id = $1 AND removed_at IS NULL";
    let row = db.query_one_raw(stmt(sql, [household_id.into()])).await?;
    row.map(|r| Ok((r.try_get("", "region_code")?, r.try_get("", "case_id")?)))
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn person(name: &str, relationship: i32, year: i32, deceased: bool) -> pb::Person {
        pb::Person {
            full_name: name.into(),
            relationship,
            birth_date: Some(pb::Date {
                year,
                month: 1,
                day: 1,
            }),
            deceased,
            ..Default::default()
        }
    }

    fn family(members: Vec<pb::Person>) -> pb::Household {
        pb::Household {
            families: vec![pb::Family {
                kk_number: "3204050505150001".into(),
                members,
            }],
            ..Default::default()
        }
    }

    fn heads(h: &pb::Household) -> Vec<&str> {
        let members = h.families.iter().flat_map(|f| &f.members);
        members
            .filter(|m| m.relationship == HEAD)
            .map(|m| m.full_name.as_str())
            .collect()
    }

    #[test]
    fn a_member_who_died_leaves_and_the_head_stays() {
        let h = family(vec![
            person("Asep", HEAD, 1980, false),
            person("Dede", CHILD, 2010, true),
        ]);
        let (after, successors) = after_deaths(&h).expect("someone lives");
        assert_eq!(after.families[0].members.len(), 1);
        assert_eq!(heads(&after), ["Asep"]);
        assert!(successors.is_empty());
        assert!(death_flags(&h).is_empty());
    }

    #[test]
    fn the_spouse_then_the_eldest_child_then_the_eldest_succeeds_the_head() {
        let with_spouse = family(vec![
            person("Asep", HEAD, 1950, true),
            person("Dede", CHILD, 1975, false),
            person("Siti", SPOUSE, 1984, false),
        ]);
        let (after, successors) = after_deaths(&with_spouse).expect("someone lives");
        assert_eq!(
            (heads(&after), successors),
            (vec!["Siti"], vec!["Siti".to_owned()])
        );
        let flags = death_flags(&with_spouse);
        assert_eq!(flags.len(), 1);
        assert_eq!(flags[0].code, "head_succession");
        assert!(flags[0].reason.contains("Siti"), "{flags:?}");

        let children = family(vec![
            person("Asep", HEAD, 1950, true),
            person("Rina", CHILD, 1990, false),
            person("Dede", CHILD, 1975, false),
            person("Ibu", pb::Relationship::Parent as i32, 1930, false),
        ]);
        assert_eq!(heads(&after_deaths(&children).expect("lives").0), ["Dede"]);

        let others = family(vec![
            person("Asep", HEAD, 1950, true),
            person("Ujang", pb::Relationship::Other as i32, 1990, false),
            person("Ibu", pb::Relationship::Parent as i32, 1930, false),
        ]);
        assert_eq!(heads(&after_deaths(&others).expect("lives").0), ["Ibu"]);
    }

    #[test]
    fn a_household_whose_last_member_died_leaves_dtks() {
        let h = family(vec![person("Imas", HEAD, 1950, true)]);
        assert!(after_deaths(&h).is_none());
        let flags = death_flags(&h);
        assert_eq!(flags[0].code, "all_deceased");
    }
}
