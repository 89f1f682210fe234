//! Vital events Dukcapil records become changes DTKS proposes itself (the CIVIL_REGISTRY
//! channel, no musdes): a birth registered on the family's card, or on another card
//! naming a parent in DTKS, joins the household; a death takes the member out; a
//! divorce and a marriage correct the marital status and, with a new family card,
//! split the member onto it and merge her back; and the head's move takes the
//! household to the new village, where the old regency can no longer read it. Each
//! change goes through matching (only the member it concerns is asked of the registry;
//! a move asks everyone), a case that starts at the regency's field verification, and
//! determination, whose next month names the household as changed with the six
//! versions; the month's list holds it in its new village, and reporting counts each
//! acceptance.

use dtks_e2e::{Stack, authed, count, count_becomes};
use dtks_platform::auth::Role;
use dtks_proto::determination::v1::determination_service_client::DeterminationServiceClient;
use dtks_proto::determination::v1::{ChangeKind, GetHouseholdHistoryRequest};
use dtks_proto::events::v1::{ChangeType, ProposalKind};
use dtks_proto::verivali::v1::CaseState;
use serde_json::json;
use tonic::Code;

use super::lifecycle::{
    after_the_month, asep_in_dtks, case_in, determine, matched_persons, registered, text,
};
use super::{CHILD_NIK, HEAD_NIK, SPOUSE_NIK, VILLAGE, summary_when};

const KK: &str = "3204050505150001";
/// A village of another regency (Kota Bandung).
const NEW_VILLAGE: &str = "32.73.01.1001";

/// The `n`-th proposal DTKS made of what Dukcapil recorded (the newest of `change`), once
/// it is accepted.
async fn accepted_from_dukcapil(
    stack: &Stack,
    n: i64,
    change: ChangeType,
) -> anyhow::Result<String> {
    let sql = format!(
        "SELECT proposal_id::text AS t FROM intake.proposals
         WHERE channel = 4 AND kind = {} AND change_type = {}
         ORDER BY submitted_at DESC, proposal_id DESC LIMIT 1",
        ProposalKind::Change as i32,
        change as i32
    );
    let proposals = "SELECT count(*) AS n FROM intake.proposals WHERE channel = 4";
    count_becomes(stack, 60, proposals, n).await?;
    let proposal = text(stack, &sql).await?;
    let case = case_in(stack, &proposal, CaseState::Accepted).await?;
    // No musdes: the case went from the match straight to the regency's visit.
    let steps: Vec<(i32, &str)> = case
        .history
        .iter()
        .map(|h| (h.to, h.actor_id.as_str()))
        .take(2)
        .collect();
    assert_eq!(
        steps,
        [
            (CaseState::Matched as i32, "matching"),
            (CaseState::VillageReviewed as i32, "dukcapil-policy")
        ],
        "{:?}",
        case.history
    );
    Ok(proposal)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vital_events_are_proposed_as_changes_through_every_stage() -> anyhow::Result<()> {
    let stack =
        Stack::start_services(&super::determination::registry(), dtks_e2e::SERVICES, &[]).await?;
    let operator = stack.token(Role::VillageOperator, VILLAGE);
    let admin = stack.token(Role::PusdatinAdmin, "");
    let (household_id, indexed) = asep_in_dtks(&stack, &operator, "vital-add").await?;
    let determination = DeterminationServiceClient::new(stack.channel("determination").await?);
    // Last month (the twelfth of the test's months), before any event.
    assert_eq!(determine(&determination, &admin, 12).await?.persons, 3);
    let record = |event: serde_json::Value| {
        let stack = &stack;
        async move {
            let (status, body) = stack.vital_event(event).await?;
            anyhow::ensure!(status == 201, "{body}");
            anyhow::Ok(())
        }
    };
    let today = dtks_e2e::time::today();

    // A birth on the family's card: the newborn joins as a child, and only she is asked.
    // Her NIK encodes her birth date (a girl's day plus 40).
    let born = today - chrono::Days::new(60);
    let newborn = {
        use chrono::Datelike;
        let (day, month, year) = (born.day() + 40, born.month(), born.year() % 100);
        format!("320405{day:02}{month:02}{year:02}0006")
    };
    let newborn = newborn.as_str();
    record(json!({
        "kind": "birth", "nik": newborn, "date": born.to_string(), "kk_number": KK,
        "full_name": "Nur Aini", "birth_place": "Bandung", "sex": "female", "village_code": VILLAGE
    }))
    .await?;
    let birth = accepted_from_dukcapil(&stack, 1, ChangeType::NewMember).await?;
    let asked: Vec<bool> = matched_persons(&stack, &birth)
        .await?
        .iter()
        .map(|(held, ..)| !held)
        .collect();
    assert_eq!(asked, [false, false, false, true]);
    count_becomes(&stack, 60, &indexed, 4).await?;
    let now = registered(&stack, &household_id).await?;
    let baby = now.families[0].members.iter().find(|m| m.nik == newborn);
    assert_eq!(
        baby.map(|m| (m.full_name.as_str(), m.relationship)),
        Some(("Nur Aini", 3))
    );

    // A birth registered on a card DTKS does not hold joins the family of the parent it
    // names (Siti).
    let born = today - chrono::Days::new(30);
    let second = {
        use chrono::Datelike;
        let (day, month, year) = (born.day(), born.month(), born.year() % 100);
        format!("320405{day:02}{month:02}{year:02}0007")
    };
    record(json!({
        "kind": "birth", "nik": second, "date": born.to_string(), "kk_number": "3204050101009999",
        "full_name": "Rizki Pratama", "birth_place": "Bandung", "sex": "male",
        "village_code": VILLAGE, "parent1_nik": SPOUSE_NIK
    }))
    .await?;
    accepted_from_dukcapil(&stack, 2, ChangeType::NewMember).await?;
    count_becomes(&stack, 60, &indexed, 5).await?;
    let now = registered(&stack, &household_id).await?;
    assert!(now.families[0].members.iter().any(|m| m.nik == second));

    // Dede dies: he leaves the household and matching's index.
    let died = today - chrono::Days::new(3);
    record(json!({ "kind": "death", "nik": CHILD_NIK, "date": died.to_string() })).await?;
    accepted_from_dukcapil(&stack, 3, ChangeType::Death).await?;
    count_becomes(&stack, 60, &indexed, 4).await?;
    let now = registered(&stack, &household_id).await?;
    assert!(now.families[0].members.iter().all(|m| m.nik != CHILD_NIK));

    // Siti divorces and Dukcapil issues her a family card of her own: her status is
    // corrected and she moves onto it, still in the household (a split). She marries
    // again onto the family's card: corrected, and back in the family (a merge).
    let status = async |kind: &str, card: &str, n: i64| {
        let event = json!({ "kind": kind, "nik": SPOUSE_NIK, "date": today.to_string(), "kk_number": card });
        record(event).await?;
        accepted_from_dukcapil(&stack, n, ChangeType::Correction).await?;
        let now = registered(&stack, &household_id).await?;
        let cards: Vec<(String, Vec<(String, i32)>)> = now
            .families
            .iter()
            .map(|f| {
                let members = f.members.iter().map(|m| (m.nik.clone(), m.marital_status));
                (f.kk_number.clone(), members.collect())
            })
            .collect();
        anyhow::Ok(cards)
    };
    let own_card = "3204050101008888";
    let split = status("divorce", own_card, 4).await?;
    assert_eq!(split.len(), 2, "{split:?}");
    assert_eq!(
        split[1],
        (own_card.to_owned(), vec![(SPOUSE_NIK.to_owned(), 3)])
    );
    let merged = status("marriage", KK, 5).await?;
    assert_eq!(merged.len(), 1, "{merged:?}");
    let siti = merged[0].1.iter().find(|(nik, _)| nik == SPOUSE_NIK);
    assert_eq!(siti.map(|(_, status)| *status), Some(2));

    // The family moves to another regency, the head last: the household moves with him.
    for nik in [newborn, second.as_str(), SPOUSE_NIK, HEAD_NIK] {
        let moved = json!({ "kind": "moved", "nik": nik, "date": today.to_string(), "village_code": NEW_VILLAGE });
        record(moved).await?;
    }
    accepted_from_dukcapil(&stack, 6, ChangeType::Moved).await?;
    let moved = format!(
        "SELECT count(*) AS n FROM determination.registry_households WHERE region_code = '{NEW_VILLAGE}'"
    );
    count_becomes(&stack, 60, &moved, 1).await?;
    let proposals = "SELECT count(*) AS n FROM intake.proposals WHERE channel = 4";
    assert_eq!(
        count(&stack, proposals).await?,
        6,
        "only the head's move proposes"
    );

    // The next month names the household changed, by its six versions; the new regency
    // reads its history, the old one no longer can.
    let this_month = determine(&determination, &admin, 13).await?;
    let diff = this_month.diff.expect("diff");
    assert_eq!((diff.added, diff.removed, diff.changed), (0, 0, 1));
    let month = after_the_month(&stack, 13, &household_id).await?;
    let versions: Vec<i32> = month.versions.iter().map(|v| v.change_type).collect();
    let expected = [
        ChangeType::NewMember,
        ChangeType::NewMember,
        ChangeType::Death,
        ChangeType::Correction,
        ChangeType::Correction,
        ChangeType::Moved,
    ]
    .map(|c| c as i32);
    assert_eq!(versions, expected);
    let history = |token: String| {
        let mut determination = determination.clone();
        let asked = GetHouseholdHistoryRequest {
            household_id: household_id.clone(),
        };
        async move {
            determination
                .get_household_history(authed(asked, &token))
                .await
        }
    };
    history(stack.token(Role::RegencyOfficer, "32.73")).await?;
    let refused = history(stack.token(Role::RegencyOfficer, "32.04"))
        .await
        .expect_err("the old regency");
    assert_eq!(refused.code(), Code::PermissionDenied);

    // This month's list holds the household in its new village; reporting counts
    // the seven acceptances: the household, then its six changes.
    let changed = Some((ChangeKind::Changed, NEW_VILLAGE.to_owned()));
    assert_eq!(
        (month.change, month.listed),
        (changed, Some(NEW_VILLAGE.into()))
    );
    summary_when(&stack, 60, "every acceptance counted", |s| {
        s.households_accepted == 7
    })
    .await?;
    Ok(())
}
