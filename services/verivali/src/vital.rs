//! Vital events Dukcapil recorded, proposed as changes (*perubahan dari Dukcapil*): for a
//! household in DTKS, verivali writes the household as it would stand after the event and
//! asks intake to propose it (`proposal.requested`, the CIVIL_REGISTRY channel), so that
//! it is matched and verified like any CHANGE. What each event proposes:
//!
//! | event | the change |
//! |---|---|
//! | death | DEATH: the member marked deceased (the succession rule and the removal of a household whose last member died follow) |
//! | birth | NEW_MEMBER: the newborn joins the family whose card (KK) Dukcapil registered it on, or else a parent's family, as a child |
//! | moved, of the head | MOVED: the household moves to the head's new village |
//! | moved, of another member | nothing proposed: the regency's re-verification task finds out whether they left |
//! | marriage, divorce | CORRECTION of the member's marital status; when Dukcapil issued the member a new family card (KK) with it, the member moves onto it within the household (a split, or a merge with a family of the household already on it); a merge with another household is the regency's to propose after its visit |
//!
//! The re-verification task every vital event opens ([`crate::aftercare::life_event`])
//! stays: the regency confirms at its visit what the registry recorded.
//!
//! A case from this channel needs no village deliberation (musdes): Dukcapil's record
//! stands in for the minutes, and the case starts with the regency's field verification
//! ([`skip_musdes`]).

use chrono::{DateTime, Utc};
use dtks_platform::{events, outbox};
use dtks_proto::common::v1 as pb;
use dtks_proto::events::v1 as ev;
use sea_orm::{DatabaseTransaction, DbErr};

use crate::cases::{Actor, CaseRow, Move};

/// Asks intake to propose the change `life` makes to the household DTKS holds, if any.
pub async fn propose(
    txn: &DatabaseTransaction,
    life: &ev::PersonLifeEvent,
    event_id: &str,
) -> Result<(), DbErr> {
    let Ok(household_id) = uuid::Uuid::parse_str(&life.household_id) else {
        return Ok(());
    };
    // The household as DTKS holds it: its last accepted case, after that case's deaths.
    let Some((_, case_id)) = crate::life::registered(txn, household_id).await? else {
        return Ok(());
    };
    let contents = crate::cases::content(txn, &[case_id]).await?;
    let Some(content) = contents.get(&case_id) else {
        return Ok(());
    };
    let Some((mut household, _)) = crate::life::after_deaths(&content.household) else {
        return Ok(());
    };
    household.household_id = household_id.to_string();
    let Some((change_type, reason)) = apply(&mut household, life) else {
        return Ok(());
    };
    let village = household
        .address
        .as_ref()
        .map(|a| a.village_code.clone())
        .unwrap_or_default();
    let request = ev::ProposalRequested {
        request_id: if life.event_id.is_empty() {
            event_id.to_owned()
        } else {
            life.event_id.clone()
        },
        change_type: change_type as i32,
        household: Some(household),
        reason,
    };
    let envelope = events::envelope(events::PROPOSAL_REQUESTED, "verivali", &village, &request);
    outbox::enqueue(txn, &envelope).await
}

/// The change `life` makes to `household` (its whole new state, in place), with the
/// proposal's reason; `None` when it proposes none (see the module's table).
pub fn apply(
    household: &mut pb::Household,
    life: &ev::PersonLifeEvent,
) -> Option<(ev::ChangeType, String)> {
    let date = life
        .date
        .as_ref()
        .map(|d| format!("{:04}-{:02}-{:02}", d.year, d.month, d.day))
        .unwrap_or_default();
    let mut members = household
        .families
        .iter_mut()
        .flat_map(|f| f.members.iter_mut());
    match life.kind.as_str() {
        "death" => {
            let member = members.find(|m| m.nik == life.nik && !m.deceased)?;
            member.deceased = true;
            let reason =
                format!("kematian tercatat di Dukcapil pada {date} (death recorded by Dukcapil)");
            Some((ev::ChangeType::Death, reason))
        }
        "marriage" | "divorce" => {
            drop(members);
            let status = if life.kind == "marriage" {
                pb::MaritalStatus::Married
            } else {
                pb::MaritalStatus::Divorced
            } as i32;
            let (fi, mi) = household.families.iter().enumerate().find_map(|(fi, f)| {
                let mi = f.members.iter().position(|m| m.nik == life.nik)?;
                Some((fi, mi))
            })?;
            let card = &life.kk_number;
            let new_card = !card.is_empty() && household.families[fi].kk_number != *card;
            if household.families[fi].members[mi].marital_status == status && !new_card {
                return None;
            }
            household.families[fi].members[mi].marital_status = status;
            let what = if life.kind == "marriage" {
                "perkawinan"
            } else {
                "perceraian"
            };
            let mut reason = format!(
                "{what} tercatat di Dukcapil pada {date} ({} recorded by Dukcapil)",
                life.kind
            );
            if new_card {
                split(household, (fi, mi), card);
                reason.push_str(&format!(
                    "; pindah ke KK {card} (onto the family card Dukcapil issued)"
                ));
            }
            Some((ev::ChangeType::Correction, reason))
        }
        "moved" => {
            let head = members.find(|m| m.nik == life.nik)?;
            let new = life.village_code.as_str();
            if head.relationship != pb::Relationship::Head as i32 || new.is_empty() {
                return None;
            }
            let address = household.address.get_or_insert_default();
            if address.village_code == new {
                return None;
            }
            // Only the village is known; the street address is the new village's to fill.
            *address = pb::Address {
                village_code: new.to_owned(),
                ..Default::default()
            };
            household.location = None;
            let reason = format!(
                "pindah ke {new} tercatat di Dukcapil pada {date} (the head's move recorded by Dukcapil)"
            );
            Some((ev::ChangeType::Moved, reason))
        }
        "birth" => {
            drop(members);
            if household
                .families
                .iter()
                .flat_map(|f| &f.members)
                .any(|m| m.nik == life.nik)
            {
                return None;
            }
            // The family on the newborn's card, else a parent's.
            let on_card =
                |f: &pb::Family| !life.kk_number.is_empty() && f.kk_number == life.kk_number;
            let a_parents =
                |f: &pb::Family| f.members.iter().any(|m| life.parent_niks.contains(&m.nik));
            let at = household
                .families
                .iter()
                .position(on_card)
                .or_else(|| household.families.iter().position(a_parents))?;
            let family = &mut household.families[at];
            family.members.push(newborn(life.person.clone()?));
            let reason =
                format!("kelahiran tercatat di Dukcapil pada {date} (birth recorded by Dukcapil)");
            Some((ev::ChangeType::NewMember, reason))
        }
        _ => None,
    }
}

/// Moves member `mi` of family `fi` onto the family card `card` within the household: a
/// family of the household already on it (a merge), or a new one (a split); a family
/// left without members goes.
fn split(household: &mut pb::Household, (fi, mi): (usize, usize), card: &str) {
    let member = household.families[fi].members.remove(mi);
    match household.families.iter_mut().find(|f| f.kk_number == card) {
        Some(family) => family.members.push(member),
        None => household.families.push(pb::Family {
            kk_number: card.to_owned(),
            members: vec![member],
        }),
    }
    household.families.retain(|f| !f.members.is_empty());
}

/// A newborn as DTKS holds a person: the registry's identity, a child of the head, and
/// the attributes a baby has (the regency corrects them at its visit if need be).
fn newborn(registered: pb::Person) -> pb::Person {
    pb::Person {
        relationship: pb::Relationship::Child as i32,
        marital_status: pb::MaritalStatus::Single as i32,
        education: pb::EducationLevel::None as i32,
        school_status: pb::SchoolStatus::Never as i32,
        work_status: pb::WorkStatus::NotWorking as i32,
        health: Some(pb::Health {
            disability: pb::Disability::None as i32,
            ..Default::default()
        }),
        ..registered
    }
}

/// A case of the CIVIL_REGISTRY channel skips the village deliberation: Dukcapil's record
/// stands in for the musdes minutes, and the regency's field verification comes next.
pub async fn skip_musdes(
    txn: &DatabaseTransaction,
    case: CaseRow,
    now: DateTime<Utc>,
) -> Result<CaseRow, DbErr> {
    let step = crate::workflow::Step::RecordedByDukcapil;
    let actor = Actor::service("dukcapil-policy");
    let to = crate::workflow::check(step, actor.role, case.state)
        .map_err(|r| DbErr::Custom(r.describe(step, actor.role)))?;
    let mv = Move {
        case: case.clone(),
        to,
        note: "perubahan dari Dukcapil: tanpa musdes (recorded by Dukcapil: no musdes)".to_owned(),
    };
    crate::cases::record(txn, &actor, &[mv], now).await?;
    Ok(CaseRow {
        state: to,
        state_since: now,
        ..case
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn household() -> pb::Household {
        let member = |nik: &str, relationship: pb::Relationship| pb::Person {
            nik: nik.into(),
            relationship: relationship as i32,
            marital_status: pb::MaritalStatus::Married as i32,
            ..Default::default()
        };
        pb::Household {
            address: Some(pb::Address {
                village_code: "32.04.05.2001".into(),
                street: "Jl. Melati 3".into(),
                ..Default::default()
            }),
            families: vec![pb::Family {
                kk_number: "3204050505150001".into(),
                members: vec![
                    member("3204051203800001", pb::Relationship::Head),
                    member("3204055708840002", pb::Relationship::Spouse),
                ],
            }],
            ..Default::default()
        }
    }

    fn event(kind: &str, nik: &str) -> ev::PersonLifeEvent {
        ev::PersonLifeEvent {
            kind: kind.into(),
            nik: nik.into(),
            ..Default::default()
        }
    }

    #[test]
    fn each_event_proposes_its_change() {
        let mut h = household();
        let died = apply(&mut h, &event("death", "3204055708840002"));
        assert_eq!(died.map(|c| c.0), Some(ev::ChangeType::Death));
        assert!(h.families[0].members[1].deceased);
        // The same death again proposes nothing more.
        assert!(apply(&mut h, &event("death", "3204055708840002")).is_none());

        let mut h = household();
        let mut born = event("birth", "3204051506250005");
        born.kk_number = "3204050505150001".into();
        born.person = Some(pb::Person {
            nik: "3204051506250005".into(),
            full_name: "Bayu".into(),
            ..Default::default()
        });
        assert_eq!(
            apply(&mut h, &born).map(|c| c.0),
            Some(ev::ChangeType::NewMember)
        );
        let baby = &h.families[0].members[2];
        assert_eq!((baby.full_name.as_str(), baby.relationship), ("Bayu", 3));
        assert!(apply(&mut h, &born).is_none(), "born once");
        born.kk_number = "3204050505159999".into();
        assert!(
            apply(&mut household(), &born).is_none(),
            "another family's card"
        );
        born.parent_niks = vec!["3204055708840002".into()];
        let mut h = household();
        assert!(apply(&mut h, &born).is_some(), "the mother's family");
        assert_eq!(h.families[0].members.len(), 3);

        let mut h = household();
        let mut moved = event("moved", "3204055708840002");
        moved.village_code = "32.73.01.1001".into();
        assert!(
            apply(&mut h, &moved).is_none(),
            "the spouse alone: the regency looks"
        );
        moved.nik = "3204051203800001".into();
        assert_eq!(
            apply(&mut h, &moved).map(|c| c.0),
            Some(ev::ChangeType::Moved)
        );
        let address = h.address.as_ref().expect("address");
        assert_eq!(
            (address.village_code.as_str(), address.street.as_str()),
            ("32.73.01.1001", "")
        );

        // A divorce with a new card: the spouse moves onto it, a family of her own.
        let mut h = household();
        let mut divorce = event("divorce", "3204055708840002");
        divorce.kk_number = "3204050101008888".into();
        assert!(apply(&mut h, &divorce).is_some());
        let cards: Vec<(&str, usize)> = h
            .families
            .iter()
            .map(|f| (f.kk_number.as_str(), f.members.len()))
            .collect();
        assert_eq!(cards, [("3204050505150001", 1), ("3204050101008888", 1)]);
        assert!(apply(&mut h, &divorce).is_none(), "nothing more to change");

        let mut h = household();
        let divorce = apply(&mut h, &event("divorce", "3204051203800001"));
        assert_eq!(divorce.map(|c| c.0), Some(ev::ChangeType::Correction));
        assert_eq!(
            h.families[0].members[0].marital_status,
            pb::MaritalStatus::Divorced as i32
        );
        assert!(
            apply(&mut h, &event("marriage", "3204059999999999")).is_none(),
            "not a member"
        );
    }
}
