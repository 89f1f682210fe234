//! Keeping DTKS up to date (*pemutakhiran*) through every stage. A REMOVE
//! (*penghapusan*) is verified like any proposal. Once accepted, its household leaves
//! DTKS with its reason:
//! - verivali's case is accepted on the removal's own criterion;
//! - matching releases the household's persons from its index;
//! - determination drops it from the next month and its diff names the removal;
//! - reporting counts it.
//!
//! A REMOVE naming a household that is not in DTKS is flagged for the officers.
//!
//! A CHANGE of a household in DTKS (a birth: NEW_MEMBER) is matched and verified; its
//! members already in DTKS are not duplicates of their own household, the newborn joins
//! matching's index under it, and determination takes the household as changed.

use dtks_e2e::{Stack, authed, count, count_becomes};
use dtks_platform::auth::Role;
use dtks_proto::common::v1 as pb;
use dtks_proto::determination::v1::determination_service_client::DeterminationServiceClient;
use dtks_proto::determination::v1::{
    ChangeKind, DetermineRequest, GetHouseholdHistoryRequest, GetRegistryHouseholdRequest,
    StreamSnapshotChangesRequest,
};
use dtks_proto::distribution::v1::distribution_service_client::DistributionServiceClient;
use dtks_proto::distribution::v1::{ApproveListRequest, BuildListRequest};
use dtks_proto::events::v1::{ChangeType, PersonOutcome, ProposalKind, RemovalReason};
use dtks_proto::intake::v1::intake_service_client::IntakeServiceClient;
use dtks_proto::intake::v1::{GetProposalRequest, ProposalStatus, SubmitProposalRequest};
use dtks_proto::matching::v1::GetProposalMatchRequest;
use dtks_proto::matching::v1::matching_service_client::MatchingServiceClient;
use dtks_proto::reporting::v1::RegionQuery;
use dtks_proto::reporting::v1::reporting_service_client::ReportingServiceClient;
use dtks_proto::verivali::v1::verivali_service_client::VerivaliServiceClient;
use dtks_proto::verivali::v1::{CaseState, GetCaseRequest};
use sea_orm::ConnectionTrait;
use tonic::Code;

use super::determination::{accepted, through_determination};
use super::{VILLAGE, household, musdes, submit_household, summary_when};

/// The test's `month`-th month (1 to 12): one of the twelve months before the services'
/// current one.
fn period(month: i32) -> Option<pb::Period> {
    Some(dtks_e2e::time::period_after(month - 13))
}

/// Determines the test's `month`-th month as `admin`.
pub(super) async fn determine(
    determination: &DeterminationServiceClient<tonic::transport::Channel>,
    admin: &str,
    month: i32,
) -> anyhow::Result<dtks_proto::determination::v1::Snapshot> {
    let asked = authed(
        DetermineRequest {
            period: period(month),
        },
        admin,
    );
    Ok(determination.clone().determine(asked).await?.into_inner())
}

/// What the stages after verivali make of a household in the test's `month`, once it is
/// determined: how the month's diff names it (and where it stands), and where the
/// month's DTKS list (programme DTKS-D1-4, built and approved here) holds it.
#[derive(Debug, PartialEq)]
pub(super) struct Month {
    pub(super) change: Option<(ChangeKind, String)>,
    pub(super) listed: Option<String>,
    /// The registry versions the diff names as the change's.
    pub(super) versions: Vec<dtks_proto::determination::v1::HouseholdVersion>,
}

pub(super) async fn after_the_month(
    stack: &Stack,
    month: i32,
    household_id: &str,
) -> anyhow::Result<Month> {
    let admin = stack.token(Role::PusdatinAdmin, "");
    let determination = DeterminationServiceClient::new(stack.channel("determination").await?);
    let asked = StreamSnapshotChangesRequest {
        from: period(month - 1),
        to: period(month),
        batch_size: 100,
        ..Default::default()
    };
    let mut pages = determination
        .clone()
        .stream_snapshot_changes(authed(asked, &admin))
        .await?
        .into_inner();
    let (mut change, mut versions) = (None, Vec::new());
    while let Some(page) = pages.message().await? {
        for c in page
            .changes
            .into_iter()
            .filter(|c| c.household_id == household_id)
        {
            let kind = ChangeKind::try_from(c.change).unwrap_or_default();
            change = Some((kind, c.region_code));
            versions = c.versions;
        }
    }
    let eselon = stack.token(Role::EselonI, "");
    let mut distribution = DistributionServiceClient::new(stack.channel("distribution").await?);
    let build = BuildListRequest {
        programme_code: "DTKS-D1-4".into(),
        period: period(month),
    };
    let list = distribution
        .build_list(authed(build, &eselon))
        .await?
        .into_inner();
    let approve = ApproveListRequest {
        list_id: list.list_id.clone(),
    };
    distribution.approve_list(authed(approve, &eselon)).await?;
    let listed = super::lists::recipients(&mut distribution, &eselon, &list.list_id)
        .await?
        .into_iter()
        .find(|r| r.household_id == household_id)
        .map(|r| r.region_code);
    Ok(Month {
        change,
        listed,
        versions,
    })
}

/// Proposes the removal of `household_id` from `village` as `token`, under `key`, for
/// `reason` (as `code`).
pub(super) async fn propose_removal(
    stack: &Stack,
    token: &str,
    key: &str,
    (household_id, village, reason, code): (&str, &str, &str, RemovalReason),
) -> anyhow::Result<String> {
    let mut intake = IntakeServiceClient::new(stack.channel("intake").await?);
    let request = SubmitProposalRequest {
        idempotency_key: key.into(),
        external_reference: key.to_uppercase(),
        removal_reason: code as i32,
        ..removal(household_id, village, reason)
    };
    let proposed = intake.submit_proposal(authed(request, token)).await?;
    Ok(proposed.into_inner().proposal_id)
}

/// A REMOVE of `household_id` from `village` (only the address travels), with its
/// reason.
fn removal(household_id: &str, village: &str, reason: &str) -> SubmitProposalRequest {
    let named = pb::Household {
        household_id: household_id.into(),
        address: Some(pb::Address {
            village_code: village.into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    SubmitProposalRequest {
        kind: ProposalKind::Remove as i32,
        reason: reason.into(),
        ..musdes(&format!("REMOVE-{household_id}"), named)
    }
}

/// The case of `proposal_id` once the demo policy has brought it to `state`, as an
/// officer sees it.
pub(super) async fn case_in(
    stack: &Stack,
    proposal_id: &str,
    state: CaseState,
) -> anyhow::Result<dtks_proto::verivali::v1::Case> {
    let sql = format!(
        "SELECT case_id::text AS t FROM verivali.cases WHERE proposal_id = '{proposal_id}' AND state = {}",
        state as i32
    );
    let case_id = stack
        .eventually(120, "the removal's case decided", || async {
            Ok(text(stack, &sql).await.ok())
        })
        .await?;
    let mut verivali = VerivaliServiceClient::new(stack.channel("verivali").await?);
    let admin = stack.token(Role::PusdatinAdmin, "");
    let asked = authed(GetCaseRequest { case_id }, &admin);
    Ok(verivali.get_case(asked).await?.into_inner())
}

/// The flags' codes of a case.
fn flag_codes(case: &dtks_proto::verivali::v1::Case) -> Vec<&str> {
    case.flags.iter().map(|f| f.code.as_str()).collect()
}

/// The match of each person of a proposal once matched: whether the household held them
/// already (not asked of the registry), their outcome and the fields Dukcapil corrects.
pub(super) async fn matched_persons(
    stack: &Stack,
    proposal_id: &str,
) -> anyhow::Result<Vec<(bool, PersonOutcome, Vec<String>)>> {
    let matching = MatchingServiceClient::new(stack.channel("matching").await?);
    let admin = stack.token(Role::PusdatinAdmin, "");
    let result = stack
        .eventually(120, "the proposal matched", || {
            let (mut matching, admin) = (matching.clone(), admin.clone());
            let asked = GetProposalMatchRequest {
                proposal_id: proposal_id.into(),
            };
            async move {
                match matching.get_proposal_match(authed(asked, &admin)).await {
                    Ok(m) => Ok(Some(m.into_inner())),
                    Err(s) if s.code() == Code::NotFound => Ok(None),
                    Err(s) => Err(s.into()),
                }
            }
        })
        .await?;
    Ok(result
        .persons
        .iter()
        .map(|p| {
            let outcome = PersonOutcome::try_from(p.outcome).unwrap_or_default();
            let fields = p.corrections.iter().map(|c| c.field.clone()).collect();
            (p.held, outcome, fields)
        })
        .collect())
}

/// Asep's family proposed under `key` and accepted: its DTKS household id, and the count
/// of matching's index rows under it (three by now).
pub(super) async fn asep_in_dtks(
    stack: &Stack,
    operator: &str,
    key: &str,
) -> anyhow::Result<(String, String)> {
    submit_household(stack, operator, key, &key.to_uppercase(), household()).await?;
    accepted(stack, 1).await?;
    let sql = "SELECT household_id::text AS t FROM determination.registry_households";
    let household_id = text(stack, sql).await?;
    let indexed = format!(
        "SELECT count(*) AS n FROM matching.person_index WHERE household_id = '{household_id}'"
    );
    count_becomes(stack, 60, &indexed, 3).await?;
    Ok((household_id, indexed))
}

/// One text column of the first row `sql` selects.
pub(super) async fn text(stack: &Stack, sql: &str) -> anyhow::Result<String> {
    let row = stack
        .db
        .query_one_raw(dtks_platform::db::stmt(sql, []))
        .await?
        .ok_or_else(|| anyhow::anyhow!("no row: {sql}"))?;
    Ok(row.try_get("", "t")?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_accepted_removal_takes_the_household_out_of_every_stage() -> anyhow::Result<()> {
    let stack = through_determination(&["distribution", "reporting"]).await?;
    let operator = stack.token(Role::VillageOperator, VILLAGE);
    let admin = stack.token(Role::PusdatinAdmin, "");
    let determination = DeterminationServiceClient::new(stack.channel("determination").await?);
    let intake = IntakeServiceClient::new(stack.channel("intake").await?);

    // January: Asep's family is in DTKS, its three persons in matching's index.
    let (household_id, indexed) = asep_in_dtks(&stack, &operator, "life-add").await?;
    let determine = |month| determine(&determination, &admin, month);
    assert_eq!(determine(1).await?.households, 1);

    // Another village cannot remove it: its REMOVE is flagged and returned to the region
    // (criterion 5), and the household stays.
    let elsewhere = stack.token(Role::VillageOperator, "32.04.05.2002");
    let not_ours = (
        household_id.as_str(),
        "32.04.05.2002",
        "not ours to remove",
        RemovalReason::NotEligible,
    );
    let wrong = propose_removal(&stack, &elsewhere, "life-remove-elsewhere", not_ours).await?;
    let case = case_in(&stack, &wrong, CaseState::Returned).await?;
    assert_eq!(flag_codes(&case), ["other_village"], "{:?}", case.flags);
    let assessment = case.assessment.expect("assessed");
    assert!(!assessment.accepted);
    assert!(
        assessment.criteria[0].reasons[0].contains("registered in village 32.04.05.2001"),
        "{assessment:?}"
    );
    accepted(&stack, 1).await?;

    // The village proposes its removal: the family moved abroad.
    let reason = "pindah ke luar negeri (moved abroad)";
    let ours = (
        household_id.as_str(),
        VILLAGE,
        reason,
        RemovalReason::MovedAway,
    );
    let proposal_id = propose_removal(&stack, &operator, "life-remove", ours).await?;

    // Verified like any proposal (the demo policy takes each step), and accepted on the
    // removal's own criterion.
    let removed_sql =
        "SELECT count(*) AS n FROM determination.registry_households WHERE removed_at IS NOT NULL";
    stack
        .eventually(
            120,
            "the household removed from the master registry",
            || async { Ok((count(&stack, removed_sql).await? == 1).then_some(())) },
        )
        .await?;
    let case = case_in(&stack, &proposal_id, CaseState::Accepted).await?;
    assert_eq!(case.household_id, household_id);
    assert!(case.flags.is_empty(), "{:?}", case.flags);
    let assessment = case.assessment.expect("assessed");
    assert!(assessment.accepted);
    assert_eq!(assessment.criteria.len(), 1, "{assessment:?}");
    assert_eq!(assessment.criteria[0].criterion, 5);
    // Intake's proposal is accepted too.
    let asked = GetProposalRequest {
        proposal_id: proposal_id.clone(),
    };
    let stored = intake.clone();
    stack
        .eventually(60, "intake to mark the removal accepted", || {
            let (mut intake, asked, operator) = (stored.clone(), asked.clone(), operator.clone());
            async move {
                let p = intake
                    .get_proposal(authed(asked, &operator))
                    .await?
                    .into_inner();
                Ok((p.status == ProposalStatus::Accepted as i32).then_some(()))
            }
        })
        .await?;

    // Determination keeps the reason, and the household as it stood is gone now.
    let gone = determination
        .clone()
        .get_registry_household(authed(
            GetRegistryHouseholdRequest {
                household_id: household_id.clone(),
                as_of: None,
            },
            &admin,
        ))
        .await
        .expect_err("removed");
    assert_eq!(gone.code(), Code::NotFound);
    assert!(gone.message().contains("moved abroad"), "{gone:?}");
    let stored = text(
        &stack,
        "SELECT removal_reason AS t FROM determination.registry_households",
    )
    .await?;
    assert_eq!(stored, reason);

    // Matching released the persons: the same family may be proposed again.
    count_becomes(&stack, 60, &indexed, 0).await?;

    // February leaves the household out, and the diff counts one removal.
    let february = determine(2).await?;
    assert_eq!(february.households, 0);
    let diff = february.diff.expect("diff");
    assert_eq!((diff.added, diff.removed), (0, 1));
    // The diff names it, with the removal's reason; no list holds it any more.
    let month = after_the_month(&stack, 2, &household_id).await?;
    let removed = Some((ChangeKind::Removed, VILLAGE.to_owned()));
    assert_eq!((month.change, month.listed), (removed, None));

    // Reporting counts it.
    summary_when(&stack, 60, "the removal counted", |s| {
        s.households_removed == 1
    })
    .await?;

    // A second REMOVE of the same household names one no longer in DTKS: its case says
    // so to the officers and goes back to the region; nothing more is taken out.
    let again = (
        household_id.as_str(),
        VILLAGE,
        "duplicate of an earlier removal",
        RemovalReason::Duplicate,
    );
    let second = propose_removal(&stack, &operator, "life-remove-again", again).await?;
    let case = case_in(&stack, &second, CaseState::Returned).await?;
    assert_eq!(flag_codes(&case), ["not_in_dtks"], "{:?}", case.flags);
    let kept = text(
        &stack,
        "SELECT removal_reason AS t FROM determination.registry_households",
    )
    .await?;
    assert_eq!(kept, reason, "the first removal's reason stands");
    let removals = count(
        &stack,
        "SELECT count(*) AS n FROM verivali.outbox WHERE event_type = 'household.removed'",
    )
    .await?;
    assert_eq!(removals, 1, "one household.removed for one household");
    Ok(())
}

/// Asep's son, born last year and registered by Dukcapil.
const BABY: &str = "3204051506250005";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_birth_joins_the_household_in_every_stage() -> anyhow::Result<()> {
    let registry = format!(
        "{}{BABY},3204050505150001,Bayu Sunandar,Bandung,2025-06-15,1,{VILLAGE},\n",
        super::determination::registry()
    );
    let stack = Stack::start_services(&registry, dtks_e2e::SERVICES, &[]).await?;
    let operator = stack.token(Role::VillageOperator, VILLAGE);
    let admin = stack.token(Role::PusdatinAdmin, "");
    let (household_id, indexed) = asep_in_dtks(&stack, &operator, "birth-add").await?;
    let mut determination = DeterminationServiceClient::new(stack.channel("determination").await?);
    let asked = authed(DetermineRequest { period: period(1) }, &admin);
    assert_eq!(
        determination.determine(asked).await?.into_inner().persons,
        3
    );

    // The village proposes the household as it is now, with the newborn.
    let mut born = household();
    born.household_id = household_id.clone();
    let mut baby = dtks_e2e::person(BABY, "Bayu Sunandar", (2025, 6, 15), 1, 3);
    baby.marital_status = 1;
    baby.monthly_income = 0;
    born.families[0].members.push(baby);
    let birth = (ChangeType::NewMember, "kelahiran (a birth)");
    let proposal_id = propose_change(&stack, &operator, "birth-change", birth, born).await?;
    let mut intake = IntakeServiceClient::new(stack.channel("intake").await?);

    // Accepted: the newborn is indexed under the household, the others stay as they were,
    // and the master registry holds four persons.
    let four = "SELECT count(*) AS n FROM determination.registry_households WHERE persons = 4";
    count_becomes(&stack, 120, four, 1).await?;
    count_becomes(&stack, 60, &indexed, 4).await?;
    let case = case_in(&stack, &proposal_id, CaseState::Accepted).await?;
    assert_eq!(case.household_id, household_id);
    // Only the newborn was asked of the registry: the others are held as proposed.
    let matched = matched_persons(&stack, &proposal_id).await?;
    let held: Vec<(bool, PersonOutcome)> = matched.iter().map(|(h, o, _)| (*h, *o)).collect();
    let asked_only_the_newborn = [
        (true, PersonOutcome::Matched),
        (true, PersonOutcome::Matched),
        (true, PersonOutcome::Matched),
        (false, PersonOutcome::Matched),
    ];
    assert_eq!(held, asked_only_the_newborn);
    let duplicates = "SELECT count(*) AS n FROM matching.person_index WHERE nik IS NOT NULL GROUP BY nik HAVING count(*) > 1";
    assert_eq!(
        count(
            &stack,
            &format!("SELECT count(*) AS n FROM ({duplicates}) d")
        )
        .await?,
        0
    );
    let asked = GetProposalRequest { proposal_id };
    let status = intake
        .get_proposal(authed(asked, &operator))
        .await?
        .into_inner()
        .status;
    assert_eq!(status, ProposalStatus::Accepted as i32);

    // February ranks the changed household: four persons, one household changed.
    let asked = authed(DetermineRequest { period: period(2) }, &admin);
    let february = determination.determine(asked).await?.into_inner();
    assert_eq!((february.households, february.persons), (1, 4));
    let diff = february.diff.expect("diff");
    assert_eq!((diff.added, diff.removed, diff.changed), (0, 0, 1));
    let month = after_the_month(&stack, 2, &household_id).await?;
    let changed = Some((ChangeKind::Changed, VILLAGE.to_owned()));
    assert_eq!(
        (month.change, month.listed),
        (changed, Some(VILLAGE.into()))
    );
    summary_when(&stack, 60, "the birth counted", |s| {
        (s.households_accepted, s.households_removed) == (2, 0)
    })
    .await?;

    // The household's history names the birth and the newborn's fields; nothing else of
    // the family changed.
    let asked = GetHouseholdHistoryRequest { household_id };
    let history = determination
        .get_household_history(authed(asked, &operator))
        .await?;
    let last = history.into_inner().versions.pop().expect("versions");
    assert_eq!(
        (last.kind, last.change_type, last.reason.as_str()),
        (
            ProposalKind::Change as i32,
            ChangeType::NewMember as i32,
            birth.1
        )
    );
    let member = format!("families[3204050505150001].members[{BABY}].");
    assert!(!last.changes.is_empty());
    for change in &last.changes {
        assert!(change.field.starts_with(&member), "{change:?}");
        assert!(change.before.is_empty(), "{change:?}");
    }
    let name = last
        .changes
        .iter()
        .find(|c| c.field.ends_with(".full_name"));
    assert_eq!(name.map(|c| c.after.as_str()), Some("Bayu Sunandar"));
    Ok(())
}

/// Proposes `household`, changed by `change` for `reason`, under `key`; answers the
/// proposal id.
pub(super) async fn propose_change(
    stack: &Stack,
    token: &str,
    key: &str,
    (change, reason): (ChangeType, &str),
    household: pb::Household,
) -> anyhow::Result<String> {
    let request = SubmitProposalRequest {
        idempotency_key: key.into(),
        kind: ProposalKind::Change as i32,
        change_type: change as i32,
        reason: reason.into(),
        ..musdes(&key.to_uppercase(), household)
    };
    let mut intake = IntakeServiceClient::new(stack.channel("intake").await?);
    let proposed = intake.submit_proposal(authed(request, token)).await?;
    Ok(proposed.into_inner().proposal_id)
}

/// The household as determination's master registry holds it now.
pub(super) async fn registered(stack: &Stack, household_id: &str) -> anyhow::Result<pb::Household> {
    let mut determination = DeterminationServiceClient::new(stack.channel("determination").await?);
    let asked = GetRegistryHouseholdRequest {
        household_id: household_id.into(),
        as_of: None,
    };
    let admin = stack.token(Role::PusdatinAdmin, "");
    let record = determination
        .get_registry_household(authed(asked, &admin))
        .await?;
    Ok(record.into_inner().household.unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_death_takes_the_member_out_and_the_heads_successor_is_named() -> anyhow::Result<()> {
    let stack = through_determination(&["distribution", "reporting"]).await?;
    let operator = stack.token(Role::VillageOperator, VILLAGE);
    let admin = stack.token(Role::PusdatinAdmin, "");
    let (household_id, indexed) = asep_in_dtks(&stack, &operator, "death-add").await?;
    let determination = DeterminationServiceClient::new(stack.channel("determination").await?);
    determine(&determination, &admin, 1).await?;
    let persons = |n: i32| {
        format!("SELECT count(*) AS n FROM determination.registry_households WHERE persons = {n}")
    };

    // The son dies: he leaves the household and matching's index; no one else changes.
    let mut now = household();
    now.household_id = household_id.clone();
    now.families[0].members[2].deceased = true;
    let death = (ChangeType::Death, "meninggal dunia (died)");
    let son = propose_change(&stack, &operator, "death-son", death, now.clone()).await?;
    count_becomes(&stack, 120, &persons(2), 1).await?;
    count_becomes(&stack, 60, &indexed, 2).await?;
    let case = case_in(&stack, &son, CaseState::Accepted).await?;
    assert!(case.flags.is_empty(), "{:?}", case.flags);
    let kept = registered(&stack, &household_id).await?;
    let names: Vec<&str> = kept.families[0]
        .members
        .iter()
        .map(|m| m.full_name.as_str())
        .collect();
    assert_eq!(names, ["Asep Sunandar", "Siti Aminah"]);

    // The head dies: the officers are told whom the rule names, and once accepted the
    // spouse heads the family.
    now.families[0].members.truncate(2);
    now.families[0].members[0].deceased = true;
    let head = propose_change(&stack, &operator, "death-head", death, now).await?;
    count_becomes(&stack, 120, &persons(1), 1).await?;
    count_becomes(&stack, 60, &indexed, 1).await?;
    let case = case_in(&stack, &head, CaseState::Accepted).await?;
    assert_eq!(flag_codes(&case), ["head_succession"], "{:?}", case.flags);
    assert!(
        case.flags[0].reason.contains("Siti Aminah"),
        "{:?}",
        case.flags
    );
    let widow = registered(&stack, &household_id).await?;
    let members = &widow.families[0].members;
    assert_eq!(members.len(), 1);
    assert_eq!(
        (members[0].full_name.as_str(), members[0].relationship),
        ("Siti Aminah", 1)
    );

    // February ranks the widow's household alone, changed, and lists it; reporting
    // counts the two deaths as acceptances.
    let february = determine(&determination, &admin, 2).await?;
    assert_eq!((february.households, february.persons), (1, 1));
    let month = after_the_month(&stack, 2, &household_id).await?;
    let changed = Some((ChangeKind::Changed, VILLAGE.to_owned()));
    assert_eq!(
        (month.change, month.listed),
        (changed, Some(VILLAGE.into()))
    );
    summary_when(&stack, 60, "the deaths counted", |s| {
        (s.households_accepted, s.households_removed) == (3, 0)
    })
    .await?;
    Ok(())
}

/// A village of another regency (Kota Bandung).
const NEW_VILLAGE: &str = "32.73.01.1001";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_household_that_moves_is_held_by_its_new_regency_alone() -> anyhow::Result<()> {
    use dtks_proto::verivali::v1::FileComplaintRequest;
    let stack = through_determination(&["distribution", "reporting"]).await?;
    let operator = stack.token(Role::VillageOperator, VILLAGE);
    let (household_id, indexed) = asep_in_dtks(&stack, &operator, "move-add").await?;
    let admin = stack.token(Role::PusdatinAdmin, "");
    let determination = DeterminationServiceClient::new(stack.channel("determination").await?);
    determine(&determination, &admin, 1).await?;
    let (old, new) = (
        stack.token(Role::RegencyOfficer, "32.04"),
        stack.token(Role::RegencyOfficer, "32.73"),
    );
    let mut verivali = VerivaliServiceClient::new(stack.channel("verivali").await?);
    let complaint = |token: &str| {
        let text = "the family is said to have left the village".to_owned();
        let request = FileComplaintRequest {
            household_id: household_id.clone(),
            text,
            evidence_references: vec![],
        };
        authed(request, token)
    };
    // An open re-verification task, in the old regency.
    let task = verivali
        .file_complaint(complaint(&old))
        .await?
        .into_inner()
        .task_id;

    // Dukcapil records the family's move, the head's last, and matching hears of it.
    let today = dtks_e2e::time::today().to_string();
    for nik in [super::CHILD_NIK, super::SPOUSE_NIK, super::HEAD_NIK] {
        let moved = serde_json::json!({ "kind": "moved", "nik": nik, "date": today, "village_code": NEW_VILLAGE });
        let (status, body) = stack.vital_event(moved).await?;
        assert_eq!(status, 201, "{body}");
    }
    let heard = "SELECT count(*) AS n FROM matching.outbox WHERE event_type = 'person.life_event'";
    count_becomes(&stack, 60, heard, 3).await?;

    // The head's move is proposed by DTKS itself (the CIVIL_REGISTRY channel): the
    // household at the new village; the others' moves propose nothing of their own.
    let from_dukcapil = "SELECT proposal_id::text AS t FROM intake.proposals WHERE channel = 4";
    let proposal = stack
        .eventually(60, "the move proposed", || async {
            Ok(text(&stack, from_dukcapil).await.ok())
        })
        .await?;
    let arrived = format!(
        "SELECT count(*) AS n FROM determination.registry_households WHERE region_code = '{NEW_VILLAGE}'"
    );
    count_becomes(&stack, 120, &arrived, 1).await?;
    let case = case_in(&stack, &proposal, CaseState::Accepted).await?;
    assert_eq!(flag_codes(&case), ["moved_from"], "{:?}", case.flags);
    assert!(case.flags[0].reason.contains(VILLAGE), "{:?}", case.flags);

    // The new regency reads it and holds its task; the old one does neither.
    let asked = |token: &str| {
        let request = GetRegistryHouseholdRequest {
            household_id: household_id.clone(),
            as_of: None,
        };
        authed(request, token)
    };
    let mut determination = DeterminationServiceClient::new(stack.channel("determination").await?);
    determination.get_registry_household(asked(&new)).await?;
    let refused = determination
        .get_registry_household(asked(&old))
        .await
        .expect_err("moved away");
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    let task_region =
        format!("SELECT region_code AS t FROM verivali.reverifications WHERE task_id = '{task}'");
    assert_eq!(text(&stack, &task_region).await?, NEW_VILLAGE);
    let refused = verivali
        .file_complaint(complaint(&old))
        .await
        .expect_err("not the old regency's any more");
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    verivali.file_complaint(complaint(&new)).await?;

    // Matching searches for its persons in the new village.
    let elsewhere = format!(
        "SELECT count(*) AS n FROM matching.person_index WHERE household_id = '{household_id}' AND village_code <> '{NEW_VILLAGE}'"
    );
    count_becomes(&stack, 60, &elsewhere, 0).await?;
    assert_eq!(count(&stack, &indexed).await?, 3);

    // February ranks and lists it in the new village; reporting counts it there.
    determine(&determination, &admin, 2).await?;
    let month = after_the_month(&stack, 2, &household_id).await?;
    let changed = Some((ChangeKind::Changed, NEW_VILLAGE.to_owned()));
    assert_eq!(
        (month.change, month.listed),
        (changed, Some(NEW_VILLAGE.into()))
    );
    let mut reporting = ReportingServiceClient::new(stack.channel("reporting").await?);
    let query = |region: &str| RegionQuery {
        region_code: region.into(),
        ..Default::default()
    };
    let counted = stack
        .eventually(60, "the move counted in the new regency", || {
            let (mut reporting, asked) = (reporting.clone(), authed(query("32.73"), &new));
            async move {
                let s = reporting.get_pipeline_summary(asked).await?.into_inner();
                Ok((s.households_accepted == 1).then_some(s))
            }
        })
        .await?;
    assert_eq!(counted.households_removed, 0);
    let old_region = reporting
        .get_pipeline_summary(authed(query("32.04"), &old))
        .await?;
    assert_eq!(
        old_region.into_inner().households_accepted,
        1,
        "the addition"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_identity_correction_is_matched_again_the_rest_is_not() -> anyhow::Result<()> {
    let stack = through_determination(&["distribution", "reporting"]).await?;
    let operator = stack.token(Role::VillageOperator, VILLAGE);
    let admin = stack.token(Role::PusdatinAdmin, "");
    let (household_id, indexed) = asep_in_dtks(&stack, &operator, "identity-add").await?;
    let determination = DeterminationServiceClient::new(stack.channel("determination").await?);
    determine(&determination, &admin, 1).await?;

    // The village corrects Dede's name to one Dukcapil does not hold: he alone is matched
    // again, and Dukcapil's name comes back as the correction.
    let mut corrected = household();
    corrected.household_id = household_id.clone();
    corrected.families[0].members[2].full_name = "Dede Kurniawan Saputra".into();
    let correction = (ChangeType::Correction, "nama salah eja (name misspelt)");
    let proposal = propose_change(&stack, &operator, "identity-fix", correction, corrected).await?;
    let matched = matched_persons(&stack, &proposal).await?;
    let asked: Vec<bool> = matched.iter().map(|(held, ..)| !held).collect();
    assert_eq!(asked, [false, false, true]);
    let (_, outcome, fields) = &matched[2];
    assert_eq!(*outcome, PersonOutcome::MatchedWithCorrections);
    assert_eq!(fields, &["full_name"]);

    // Dukcapil disagrees, so criterion 2 sends the change back; DTKS keeps his name.
    let case = case_in(&stack, &proposal, CaseState::Returned).await?;
    let assessment = case.assessment.expect("assessed");
    let second = assessment.criteria.iter().find(|c| c.criterion == 2);
    let failed = dtks_proto::verivali::v1::CriterionVerdict::Fail as i32;
    assert!(
        second.is_some_and(|c| c.verdict == failed),
        "{assessment:?}"
    );
    let kept = registered(&stack, &household_id).await?;
    assert_eq!(kept.families[0].members[2].full_name, "Dede Kurnia");

    // Nothing changed downstream: the index as it was, February names no change of the
    // household and lists it, and reporting counts the return.
    assert_eq!(count(&stack, &indexed).await?, 3);
    determine(&determination, &admin, 2).await?;
    let month = after_the_month(&stack, 2, &household_id).await?;
    assert_eq!((month.change, month.listed), (None, Some(VILLAGE.into())));
    summary_when(&stack, 60, "the return counted", |s| {
        (s.households_accepted, s.households_returned) == (1, 1)
    })
    .await?;
    Ok(())
}
