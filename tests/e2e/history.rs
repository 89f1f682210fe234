//! Reconciliation and history (*riwayat perubahan*). In one month a household is added,
//! one corrected and one removed; the next month's diff names exactly those three, each
//! with the accepted proposal that made it, and nothing else:
//! - the households it names are the cases verivali accepted in the month, once each;
//! - each household's history gives every version with who decided it, when and why,
//!   and a correction field by field;
//! - the corrected household's standing says which change moved it since last month;
//! - the removed household is in the first month's list and not the second's, and
//!   reporting counts the removal by its reason; matching holds the new household's
//!   person and no longer the removed one's;
//! - the six-monthly update counts the corrected household as changed and one a visit
//!   found unchanged as confirmed.

use std::collections::BTreeMap;

use dtks_e2e::{Stack, authed, count, count_becomes, person};
use dtks_platform::auth::Role;
use dtks_proto::common::v1 as pb;
use dtks_proto::determination::v1::determination_service_client::DeterminationServiceClient;
use dtks_proto::determination::v1::*;
use dtks_proto::distribution::v1::distribution_service_client::DistributionServiceClient;
use dtks_proto::distribution::v1::{ApproveListRequest, BuildListRequest};
use dtks_proto::events::v1::{ChangeType, ProposalKind, RemovalReason};
use dtks_proto::reporting::v1::RegionQuery;
use dtks_proto::reporting::v1::reporting_service_client::ReportingServiceClient;
use dtks_proto::verivali::v1::verivali_service_client::VerivaliServiceClient;
use dtks_proto::verivali::v1::{
    CompleteReverificationRequest, FileComplaintRequest, ReverificationOutcome,
};
use tonic::Code;

use super::determination::imas;
use super::lifecycle::{determine, propose_change, propose_removal, text};
use super::{VILLAGE, household, submit_household, summary_when};

/// A farmhand living alone, known to the registry, who joins DTKS in the second month.
const UJANG: &str = "3204051010700006";

fn ujang() -> pb::Household {
    let mut h = household();
    h.families[0].kk_number = "3204050101000301".into();
    let mut head = person(UJANG, "Ujang Suparman", (1970, 10, 10), 1, 1);
    head.monthly_income = 450_000;
    h.families[0].members = vec![head];
    h
}

/// The test's `month`-th month: one of the twelve months before the services' own.
fn period(month: i32) -> Option<pb::Period> {
    Some(dtks_e2e::time::period_after(month - 13))
}

/// The proposal ids of every case verivali has accepted.
async fn accepted_proposals(stack: &Stack) -> anyhow::Result<Vec<String>> {
    let sql = "SELECT coalesce(string_agg(proposal_id::text, ',' ORDER BY proposal_id), '') AS t
               FROM verivali.cases WHERE state = 6";
    let all = text(stack, sql).await?;
    Ok(all
        .split(',')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect())
}

/// The households the diff between two months names, by id.
async fn changes(
    client: &DeterminationServiceClient<tonic::transport::Channel>,
    token: &str,
    (from, to): (i32, i32),
    region: &str,
) -> Result<BTreeMap<String, HouseholdChange>, tonic::Status> {
    let asked = StreamSnapshotChangesRequest {
        from: period(from),
        to: period(to),
        region_code: region.into(),
        decile_moves: false,
        batch_size: 1,
    };
    let mut stream = client
        .clone()
        .stream_snapshot_changes(authed(asked, token))
        .await?
        .into_inner();
    let mut out = BTreeMap::new();
    while let Some(page) = stream.message().await? {
        for c in page.changes {
            assert!(
                out.insert(c.household_id.clone(), c).is_none(),
                "a household named twice"
            );
        }
    }
    Ok(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_months_diff_is_its_accepted_changes_each_with_its_history() -> anyhow::Result<()> {
    let registry = format!(
        "{}{UJANG},3204050101000301,Ujang Suparman,Bandung,1970-10-10,1,{VILLAGE},\n",
        super::determination::registry()
    );
    let stack = Stack::start_services(&registry, dtks_e2e::SERVICES, &[]).await?;
    let operator = stack.token(Role::VillageOperator, VILLAGE);
    let admin = stack.token(Role::PusdatinAdmin, "");
    let eselon = stack.token(Role::EselonI, "");
    let determination = DeterminationServiceClient::new(stack.channel("determination").await?);
    let distribution = DistributionServiceClient::new(stack.channel("distribution").await?);
    let determine = |month| determine(&determination, &admin, month);
    let listed = |month: i32| {
        let (mut distribution, eselon) = (distribution.clone(), eselon.clone());
        async move {
            let build = BuildListRequest {
                programme_code: "DTKS-D1-4".into(),
                period: period(month),
            };
            let list = distribution.build_list(authed(build, &eselon)).await?;
            let list_id = list.into_inner().list_id;
            let approve = ApproveListRequest {
                list_id: list_id.clone(),
            };
            distribution.approve_list(authed(approve, &eselon)).await?;
            let all = super::lists::recipients(&mut distribution, &eselon, &list_id).await?;
            anyhow::Ok(all.into_iter().map(|r| r.household_id).collect::<Vec<_>>())
        }
    };
    let household_of = |proposal: &str| {
        format!(
            "SELECT household_id::text AS t FROM verivali.cases WHERE proposal_id = '{proposal}'"
        )
    };

    // The first month: Asep's family and Imas.
    let asep = submit_household(&stack, &operator, "rec-asep", "REC-ASEP", household()).await?;
    let imas = submit_household(&stack, &operator, "rec-imas", "REC-IMAS", imas()).await?;
    super::determination::accepted(&stack, 2).await?;
    let asep_id = text(&stack, &household_of(&asep.proposal_id)).await?;
    let imas_id = text(&stack, &household_of(&imas.proposal_id)).await?;
    assert_eq!(determine(1).await?.households, 2);
    let before = accepted_proposals(&stack).await?;
    assert!(
        listed(1).await?.contains(&imas_id),
        "Imas is listed in the first month"
    );

    // The month's changes: Ujang joins, Asep's family now owns two motorcycles (a
    // correction of its socio-economic data), and Imas leaves DTKS.
    let joins = submit_household(&stack, &operator, "rec-ujang", "REC-UJANG", ujang()).await?;
    let mut corrected = household();
    corrected.household_id = asep_id.clone();
    let motorcycles = corrected.assets.as_ref().map_or(0, |a| a.motorcycles);
    corrected.assets.get_or_insert_default().motorcycles = motorcycles + 2;
    let correction = (
        ChangeType::Correction,
        "perbaikan data aset (assets corrected)",
    );
    let corrects = propose_change(&stack, &operator, "rec-correct", correction, corrected).await?;
    let reason = "tidak lagi memenuhi kriteria (no longer eligible)";
    let removal = (
        imas_id.as_str(),
        VILLAGE,
        reason,
        RemovalReason::NotEligible,
    );
    let removes = propose_removal(&stack, &operator, "rec-remove", removal).await?;
    count_becomes(
        &stack,
        180,
        "SELECT count(*) AS n FROM determination.registry_versions",
        5,
    )
    .await?;
    // A socio-economic correction asks the registry of no one: every member is held.
    let matched = super::lifecycle::matched_persons(&stack, &corrects).await?;
    assert!(matched.iter().all(|(held, ..)| *held), "{matched:?}");
    let ujang_id = text(&stack, &household_of(&joins.proposal_id)).await?;

    // The second month's diff counts them, and names them with what made each.
    let february = determine(2).await?;
    let diff = february.diff.expect("diff");
    assert_eq!((diff.added, diff.removed, diff.changed), (1, 1, 1));
    let named = changes(&determination, &admin, (1, 2), "").await?;
    let summary: BTreeMap<&str, (i32, Vec<(i32, i32, &str)>)> = named
        .iter()
        .map(|(id, c)| {
            let versions = c
                .versions
                .iter()
                .map(|v| (v.kind, v.change_type, v.proposal_id.as_str()))
                .collect();
            (id.as_str(), (c.change, versions))
        })
        .collect();
    let expected = BTreeMap::from([
        (
            asep_id.as_str(),
            (
                ChangeKind::Changed as i32,
                vec![(
                    ProposalKind::Change as i32,
                    ChangeType::Correction as i32,
                    corrects.as_str(),
                )],
            ),
        ),
        (
            imas_id.as_str(),
            (
                ChangeKind::Removed as i32,
                vec![(ProposalKind::Remove as i32, 0, removes.as_str())],
            ),
        ),
        (
            ujang_id.as_str(),
            (
                ChangeKind::Added as i32,
                vec![(ProposalKind::Add as i32, 0, joins.proposal_id.as_str())],
            ),
        ),
    ]);
    assert_eq!(summary, expected);
    let removed = &named[&imas_id];
    assert_eq!(removed.versions[0].reason, reason);
    assert!(removed.versions[0].removed);
    assert!(
        removed.decile_before > 0 && removed.decile_after == 0,
        "{removed:?}"
    );
    assert!(named.values().all(|c| c.region_code == VILLAGE));
    assert!(
        named
            .values()
            .flat_map(|c| &c.versions)
            .all(|v| !v.decided_by.is_empty())
    );

    // Reconciliation: what the diff names is exactly what verivali accepted in the month.
    let mut month: Vec<String> = accepted_proposals(&stack).await?;
    month.retain(|p| !before.contains(p));
    month.sort();
    let mut made: Vec<String> = named
        .values()
        .flat_map(|c| c.versions.iter().map(|v| v.proposal_id.clone()))
        .collect();
    made.sort();
    assert_eq!(made, month);

    // A regency sees its own region's changes; another regency sees none of them and may
    // not ask for this one's.
    let regency = stack.token(Role::RegencyOfficer, "32.04");
    assert_eq!(
        changes(&determination, &regency, (1, 2), "").await?.len(),
        3
    );
    let other = stack.token(Role::RegencyOfficer, "32.73");
    assert!(
        changes(&determination, &other, (1, 2), "")
            .await?
            .is_empty()
    );
    let refused = changes(&determination, &other, (1, 2), "32.04")
        .await
        .expect_err("another regency's changes");
    assert_eq!(refused.code(), Code::PermissionDenied);

    // Asep's history: the addition, then the correction field by field.
    let history = determination
        .clone()
        .get_household_history(authed(
            GetHouseholdHistoryRequest {
                household_id: asep_id.clone(),
            },
            &regency,
        ))
        .await?
        .into_inner();
    let versions = &history.versions;
    assert_eq!(versions.len(), 2, "{versions:?}");
    assert_eq!(
        (versions[0].kind, versions[0].proposal_id.as_str()),
        (ProposalKind::Add as i32, asep.proposal_id.as_str())
    );
    assert!(versions[0].changes.is_empty(), "the first version is whole");
    let at = |v: &HouseholdVersion| v.valid_from.map(|t| (t.seconds, t.nanos));
    assert!(at(&versions[0]) <= at(&versions[1]) && at(&versions[0]).is_some());
    let change = &versions[1];
    assert_eq!(change.reason, correction.1);
    assert_eq!(change.decided_by, "demo-policy");
    let fields: Vec<(&str, &str, &str)> = change
        .changes
        .iter()
        .map(|c| (c.field.as_str(), c.before.as_str(), c.after.as_str()))
        .collect();
    let (was, now) = (motorcycles.to_string(), (motorcycles + 2).to_string());
    assert_eq!(fields, [("assets.motorcycles", was.as_str(), now.as_str())]);

    // Officers read the same from the command line.
    let month = |m: i32| {
        let p = period(m).unwrap_or_default();
        format!("{:04}-{:02}", p.year, p.month)
    };
    let (from, to) = (month(1), month(2));
    let args = ["registry", "changes", "--from", &from, "--to", &to];
    let (code, out, err) = stack.dtksctl(&regency, &args).await?;
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.lines().count(), 4, "{out}");
    let line = out.lines().find(|l| l.starts_with(imas_id.as_str()));
    let line = line.expect("Imas named");
    assert!(
        line.contains("REMOVED") && line.contains(reason) && line.contains(&removes),
        "{line}"
    );
    let args = ["registry", "history", asep_id.as_str()];
    let (code, out, err) = stack.dtksctl(&regency, &args).await?;
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("CHANGE CORRECTION") && out.contains(&corrects),
        "{out}"
    );
    assert!(
        out.contains(&format!("  assets.motorcycles: \"{was}\" -> \"{now}\"")),
        "{out}"
    );

    // Imas's: added, then removed with the reason.
    let history = determination
        .clone()
        .get_household_history(authed(
            GetHouseholdHistoryRequest {
                household_id: imas_id.clone(),
            },
            &admin,
        ))
        .await?
        .into_inner();
    let last = history.versions.last().expect("versions");
    assert_eq!((last.removed, last.reason.as_str()), (true, reason));
    assert_eq!(last.kind, ProposalKind::Remove as i32);
    assert_eq!(last.removal_reason, RemovalReason::NotEligible as i32);
    assert_eq!(last.removal_reason, RemovalReason::NotEligible as i32);

    // Asep's standing in the second month says what moved it since the first.
    let standing = determination
        .clone()
        .get_household_standing(authed(
            GetHouseholdStandingRequest {
                household_id: asep_id.clone(),
                period: period(2),
            },
            &admin,
        ))
        .await?
        .into_inner();
    assert_eq!(standing.previous_period, period(1));
    assert!(standing.previous_decile > 0);
    let moved_by: Vec<&str> = standing
        .changes_since
        .iter()
        .map(|v| v.proposal_id.as_str())
        .collect();
    assert_eq!(moved_by, [corrects.as_str()]);

    // Another village's officer may not read Asep's history.
    let elsewhere = stack.token(Role::VillageOperator, "32.73.01.1001");
    let refused = determination
        .clone()
        .get_household_history(authed(
            GetHouseholdHistoryRequest {
                household_id: asep_id.clone(),
            },
            &elsewhere,
        ))
        .await
        .expect_err("another region");
    assert_eq!(refused.code(), Code::PermissionDenied);

    // The second month's list leaves Imas out; reporting counts her removal; matching
    // holds Ujang and no longer Imas.
    let second = listed(2).await?;
    assert!(!second.contains(&imas_id), "{second:?}");
    summary_when(&stack, 60, "the removal counted", |s| {
        s.households_removed == 1
    })
    .await?;
    let mut reporting = ReportingServiceClient::new(stack.channel("reporting").await?);
    let mut removals = async |period: Option<pb::Period>| {
        let query = RegionQuery {
            region_code: "32.04".into(),
            level: pb::RegionLevel::Village as i32,
            period,
        };
        let asked = authed(query, &regency);
        anyhow::Ok(reporting.get_removals(asked).await?.into_inner().regions)
    };
    let now = removals(Some(dtks_e2e::time::period())).await?;
    let by_reason: Vec<(&str, u64, u64)> = now
        .iter()
        .map(|r| {
            let code = r.region.as_ref().map_or("", |g| g.code.as_str());
            (code, r.not_eligible, r.total)
        })
        .collect();
    assert_eq!(by_reason, [(VILLAGE, 1, 1)]);
    assert!(
        removals(period(2)).await?.is_empty(),
        "none removed that month"
    );

    // The six-monthly update: a regency officer visits Ujang after a complaint and finds
    // nothing changed. Both households in DTKS are updated: Asep's changed, Ujang's
    // confirmed.
    let mut verivali = VerivaliServiceClient::new(stack.channel("verivali").await?);
    let complaint = FileComplaintRequest {
        household_id: ujang_id.clone(),
        text: "owns a shop in town".into(),
        evidence_references: vec![],
    };
    let task = verivali.file_complaint(authed(complaint, &regency)).await?;
    let visit = CompleteReverificationRequest {
        task_id: task.into_inner().task_id,
        outcome: ReverificationOutcome::Confirmed as i32,
        note: "no shop; a farmhand as proposed".into(),
        ..Default::default()
    };
    verivali
        .complete_reverification(authed(visit, &regency))
        .await?;
    let village = RegionQuery {
        region_code: VILLAGE.into(),
        ..Default::default()
    };
    let updated = stack
        .eventually(60, "the visit counted", || {
            let (mut reporting, asked) = (reporting.clone(), authed(village.clone(), &regency));
            async move {
                let rates = reporting
                    .get_update_rates(asked)
                    .await?
                    .into_inner()
                    .regions;
                let r = rates.first().cloned().unwrap_or_default();
                Ok((r.confirmed == 1).then_some(r))
            }
        })
        .await?;
    let figures = (
        updated.records,
        updated.updated,
        updated.changed,
        updated.confirmed,
    );
    assert_eq!(figures, (2, 2, 1, 1), "{updated:?}");
    let indexed = |id: &str| {
        format!("SELECT count(*) AS n FROM matching.person_index WHERE household_id = '{id}'")
    };
    count_becomes(&stack, 60, &indexed(&imas_id), 0).await?;
    assert_eq!(count(&stack, &indexed(&ujang_id)).await?, 1);
    Ok(())
}
