//! Duplicates across all of DTKS — incremental (a later proposal against what is held)
//! and within a batch (proposals matched at the same moment) — and vital events from
//! the registry: cached answers invalidated, `person.life_event` published.

use dtks_e2e::{Stack, authed};
use dtks_platform::auth::Role;
use dtks_proto::common::v1 as pb;
use dtks_proto::events::v1::{Envelope, HouseholdOutcome, PersonLifeEvent, PersonOutcome};
use dtks_proto::matching::v1::{
    MatchPersonRequest, matching_service_client::MatchingServiceClient,
};
use prost::Message;
use sea_orm::ConnectionTrait;
use serde_json::json;

use super::{CHILD_NIK, REGISTRY, VILLAGE, count, household, submit_household, submit_musdes};
use crate::matching::matched;

/// Eman, who takes in his grandson Dede (already in DTKS with his parents); Ujang,
/// proposed twice at once; Nining, never proposed.
fn registry() -> String {
    format!(
        "{REGISTRY}3204050404550009,3204050202200001,Eman Sulaeman,Bandung,1955-04-04,1,32.04.05.2001,
3204052006700005,3204050101000003,Ujang Suryana,Bandung,1970-06-20,1,32.04.05.2001,
3204054512600010,3204050101000005,Nining Kurniasih,Bandung,1960-12-05,2,32.04.05.2001,
"
    )
}

/// [`household`]'s head, renamed: another man of the village.
fn head(nik: &str, name: &str, (year, month, day): (i32, i32, i32)) -> pb::Person {
    let mut head = household().families[0].members[0].clone();
    head.nik = nik.into();
    head.full_name = name.into();
    head.birth_date = Some(pb::Date { year, month, day });
    head
}

/// A household of one family, card `kk`, of `members`.
fn family_of(kk: &str, members: Vec<pb::Person>) -> pb::Household {
    let mut h = household();
    h.families[0].kk_number = kk.into();
    h.families[0].members = members;
    h
}

fn grandfather_with_grandson() -> pb::Household {
    let mut grandson = household().families[0].members[2].clone();
    grandson.relationship = 4;
    family_of(
        "3204050202200001",
        vec![
            head("3204050404550009", "Eman Sulaeman", (1955, 4, 4)),
            grandson,
        ],
    )
}

fn ujang(kk: &str) -> pb::Household {
    family_of(
        kk,
        vec![head("3204052006700005", "Ujang Suryana", (1970, 6, 20))],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicates_across_dtks_and_vital_events_from_the_registry() -> anyhow::Result<()> {
    let stack =
        Stack::start_services(&registry(), &["intake", "matching", "verivali"], &[]).await?;
    let operator = stack.token(Role::VillageOperator, VILLAGE);
    let officer = stack.token(Role::RegencyOfficer, "32.04");

    // The family enters DTKS (verivali's demo policy accepts it).
    let first = submit_musdes(&stack, &operator, "dup-001", "DUP-0001").await?;
    let result = matched(&stack, &first.proposal_id, &operator).await?;
    assert_eq!(result.outcome, HouseholdOutcome::AllMatched as i32);
    let household_id = stack
        .eventually(60, "the household to be accepted into the index", || {
            let db = stack.db.clone();
            async move {
                let row = db
                    .query_one_raw(dtks_platform::db::stmt(
                        "SELECT household_id FROM matching.person_index WHERE nik = $1",
                        [CHILD_NIK.to_owned().into()],
                    ))
                    .await?;
                Ok(row.and_then(|r| {
                    r.try_get::<Option<String>>("", "household_id")
                        .ok()
                        .flatten()
                }))
            }
        })
        .await?;

    // Incremental: a later proposal naming the grandson finds him in his parents' household.
    let second = submit_household(
        &stack,
        &operator,
        "dup-002",
        "DUP-0002",
        grandfather_with_grandson(),
    )
    .await?;
    let result = matched(&stack, &second.proposal_id, &operator).await?;
    assert_eq!(
        result.outcome,
        HouseholdOutcome::Duplicate as i32,
        "{result:?}"
    );
    let (head, grandson) = (&result.persons[0], &result.persons[1]);
    assert_eq!(head.outcome, PersonOutcome::Matched as i32);
    assert_eq!(grandson.outcome, PersonOutcome::DuplicateInDtks as i32);
    assert_eq!(grandson.duplicate_household_id, household_id);
    assert_eq!(grandson.duplicate_proposal_id, first.proposal_id);
    assert_eq!(grandson.duplicate_kk_number, "3204050505150001");

    // Within a batch: two proposals of the same man matched at the same moment — one
    // holds him, the other is his duplicate.
    let (a, b) = tokio::join!(
        submit_household(
            &stack,
            &operator,
            "dup-003",
            "DUP-0003",
            ujang("3204050101000003")
        ),
        submit_household(
            &stack,
            &operator,
            "dup-004",
            "DUP-0004",
            ujang("3204050101000013")
        ),
    );
    let (a, b) = (a?, b?);
    let a = matched(&stack, &a.proposal_id, &operator).await?;
    let b = matched(&stack, &b.proposal_id, &operator).await?;
    let mut outcomes = [a.outcome, b.outcome];
    outcomes.sort_unstable();
    assert_eq!(
        outcomes,
        [
            HouseholdOutcome::AllMatched as i32,
            HouseholdOutcome::Duplicate as i32
        ]
    );
    assert_eq!(
        count(
            &stack,
            "SELECT count(*) AS n FROM matching.person_index WHERE nik = '3204052006700005'"
        )
        .await?,
        1
    );

    // Vital events. Asking about the grandson caches the registry's answer...
    let mut matching = MatchingServiceClient::new(stack.channel("matching").await?);
    let ask = |token: &str| {
        authed(
            MatchPersonRequest {
                person: Some(household().families[0].members[2].clone()),
                village_code: VILLAGE.into(),
            },
            token,
        )
    };
    let before = matching.match_person(ask(&officer)).await?.into_inner();
    assert_eq!(before.outcome, PersonOutcome::DuplicateInDtks as i32);
    assert_eq!(before.duplicate_household_id, household_id);

    // ...the registry records his death and notifies its subscribers...
    let died = dtks_e2e::time::today() - chrono::Days::new(2);
    let (status, body) = stack
        .vital_event(json!({ "kind": "death", "nik": CHILD_NIK, "date": died.to_string() }))
        .await?;
    assert_eq!(status, 201, "{body}");

    // ...matching publishes person.life_event for his household...
    let event = stack
        .eventually(30, "person.life_event", || {
            let db = stack.db.clone();
            async move {
                let row = db
                    .query_one_raw(dtks_platform::db::stmt(
                        "SELECT envelope FROM matching.outbox WHERE event_type = 'person.life_event'",
                        [],
                    ))
                    .await?;
                Ok(row.and_then(|r| r.try_get::<Vec<u8>>("", "envelope").ok()))
            }
        })
        .await?;
    let envelope = Envelope::decode(event.as_slice())?;
    let life = PersonLifeEvent::decode(envelope.payload.as_slice())?;
    assert_eq!(life.kind, "death");
    assert_eq!(life.household_id, household_id);
    assert_eq!(life.proposal_id, first.proposal_id);
    assert!(life.reverify_household);
    assert_eq!(
        life.date.map(|d| (d.year, d.month, d.day)),
        Some(dtks_platform::convert::pb_date(died)).map(|d| (d.year, d.month, d.day))
    );
    assert_eq!(envelope.region_code, VILLAGE, "no NIK in the routing data");

    // ...and the cached answer is gone: he is reported deceased at once, not in an hour.
    let after = matching.match_person(ask(&officer)).await?.into_inner();
    assert_eq!(after.outcome, PersonOutcome::Deceased as i32, "{after:?}");

    // A vital event of someone DTKS does not hold is taken, and publishes nothing.
    let (status, _) = stack
        .vital_event(json!({ "kind": "moved", "nik": "3204054512600010", "date": dtks_e2e::time::today().to_string(), "village_code": "32.04.05.2002" }))
        .await?;
    assert_eq!(status, 201);
    stack
        .eventually(30, "the move to be taken", || async {
            Ok(
                (count(&stack, "SELECT count(*) AS n FROM matching.life_events").await? == 2)
                    .then_some(()),
            )
        })
        .await?;
    assert_eq!(
        count(
            &stack,
            "SELECT count(*) AS n FROM matching.outbox WHERE event_type = 'person.life_event'"
        )
        .await?,
        1,
        "only the death concerned DTKS"
    );
    Ok(())
}
