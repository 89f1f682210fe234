//! Determination over months: the first month adds every household, an unchanged month
//! stands on the last one with the same hash, a household accepted later and one removed
//! by verivali show in the next month's diff and in a diff between any two months, and a
//! household's standing comes with the terms that make up its score.

use dtks_e2e::{Stack, authed, person};
use dtks_platform::auth::Role;
use dtks_proto::common::v1 as pb;
use dtks_proto::determination::v1::determination_service_client::DeterminationServiceClient;
use dtks_proto::determination::v1::*;
use dtks_proto::events::v1::RemovalReason;
use dtks_proto::verivali::v1::verivali_service_client::VerivaliServiceClient;
use dtks_proto::verivali::v1::{
    CompleteReverificationRequest, FileComplaintRequest, ReverificationOutcome,
};
use sea_orm::ConnectionTrait;
use tonic::Code;

use super::{REGISTRY, VILLAGE, count, household, submit_household};

/// A widow living alone, known to the registry.
const IMAS: &str = "3204054403500004";

pub(super) fn registry() -> String {
    format!("{REGISTRY}{IMAS},3204050101000201,Imas Masitoh,Bandung,1950-03-04,2,{VILLAGE},\n")
}

/// The stages from intake to determination, and `more`, over [`registry`].
pub(super) async fn through_determination(more: &[&'static str]) -> anyhow::Result<Stack> {
    let mut services = vec!["intake", "matching", "verivali", "determination"];
    services.extend_from_slice(more);
    Stack::start_services(&registry(), &services, &[]).await
}

pub(super) fn imas() -> pb::Household {
    let mut h = household();
    h.families[0].kk_number = "3204050101000201".into();
    let mut head = person(IMAS, "Imas Masitoh", (1950, 3, 4), 2, 1);
    head.marital_status = 4;
    head.monthly_income = 300_000;
    h.families[0].members = vec![head];
    h
}

/// The test's `month`-th month (1 to 12): the twelve months before the services' current
/// one, all begun.
fn period(month: i32) -> Option<pb::Period> {
    Some(dtks_e2e::time::period_after(month - 13))
}

pub(super) async fn accepted(stack: &Stack, n: i64) -> anyhow::Result<()> {
    stack
        .eventually(120, "the households to reach the master registry", || async {
            Ok((count(
                stack,
                "SELECT count(*) AS n FROM determination.registry_households WHERE removed_at IS NULL",
            )
            .await?
                == n)
                .then_some(()))
        })
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn months_diffs_removals_and_explained_standings() -> anyhow::Result<()> {
    let stack = through_determination(&["distribution"]).await?;
    let operator = stack.token(Role::VillageOperator, VILLAGE);
    let admin = stack.token(Role::PusdatinAdmin, "");
    let determination = DeterminationServiceClient::new(stack.channel("determination").await?);
    let determine = |month: i32| {
        let mut client = determination.clone();
        let token = admin.clone();
        async move {
            anyhow::Ok(
                client
                    .determine(authed(
                        DetermineRequest {
                            period: period(month),
                        },
                        &token,
                    ))
                    .await?
                    .into_inner(),
            )
        }
    };

    // Finding 13: months that have not begun are neither determined nor listed.
    for ahead in [1, 12 * 73] {
        let future = Some(dtks_e2e::time::period_after(ahead));
        let refused = determination
            .clone()
            .determine(authed(DetermineRequest { period: future }, &admin))
            .await
            .expect_err("a future month");
        assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
        let refused = dtks_proto::distribution::v1::distribution_service_client::DistributionServiceClient::new(
            stack.channel("distribution").await?,
        )
        .build_list(authed(
            dtks_proto::distribution::v1::BuildListRequest {
                programme_code: "DTKS-D1-4".into(),
                period: future,
            },
            &admin,
        ))
        .await
        .expect_err("a future month");
        assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
    }

    // January: Asep's family, accepted by the demo policy.
    submit_household(&stack, &operator, "det-asep", "DET-ASEP", household()).await?;
    accepted(&stack, 1).await?;
    let january = determine(1).await?;
    assert_eq!(january.households, 1);
    assert!(!january.unchanged);
    assert_eq!(january.diff.expect("diff").added, 1);

    // February: nothing changed — the same hash, and January stands.
    let february = determine(2).await?;
    assert!(february.unchanged);
    assert_eq!(february.content_hash, january.content_hash);
    assert_eq!(february.stands_from, period(1));
    assert_eq!(february.diff.expect("diff"), SnapshotDiff::default());
    // Snapshots are never rewritten: determining February again answers the same one.
    let again = determine(2).await?;
    assert_eq!(again.snapshot_id, february.snapshot_id);

    // March: Imas is accepted too.
    submit_household(&stack, &operator, "det-imas", "DET-IMAS", imas()).await?;
    accepted(&stack, 2).await?;
    let march = determine(3).await?;
    assert!(!march.unchanged);
    assert_ne!(march.content_hash, january.content_hash);
    let diff = march.diff.expect("diff");
    assert_eq!((diff.added, diff.removed, diff.changed), (1, 0, 0));
    let households: Vec<String> = {
        let rows = count(
            &stack,
            "SELECT count(*) AS n FROM determination.snapshot_rows",
        )
        .await?;
        assert_eq!(
            rows, 3,
            "January's row and March's two; February wrote none"
        );
        let ids = stack
            .db
            .query_all_raw(dtks_platform::db::stmt(
                "SELECT household_id::text AS id FROM determination.registry_households ORDER BY verified_at",
                [],
            ))
            .await?;
        ids.iter()
            .map(|r| r.try_get::<String>("", "id"))
            .collect::<Result<_, _>>()?
    };
    let (asep_household, imas_household) = (households[0].clone(), households[1].clone());
    // Asep's decile moved from 1 (alone) to wherever two households put him.
    let standing = |id: String, month: Option<i32>, token: String| {
        let mut client = determination.clone();
        async move {
            client
                .get_household_standing(authed(
                    GetHouseholdStandingRequest {
                        household_id: id,
                        period: month.and_then(period),
                    },
                    &token,
                ))
                .await
                .map(|r| r.into_inner())
        }
    };
    let asep_in_march = standing(asep_household.clone(), Some(3), admin.clone()).await?;
    let moved = u64::from(asep_in_march.household.as_ref().expect("household").decile != 1);
    assert_eq!(diff.decile_moves, moved);

    // Both households are in Jawa Barat: their province deciles are their national ones.
    let asep_ranked = asep_in_march.household.as_ref().expect("household");
    assert_eq!(asep_ranked.province_decile, asep_ranked.decile);
    assert!(asep_ranked.decile >= 1);

    // The standing explains the score term by term.
    let imas_in_march = standing(imas_household.clone(), Some(3), admin.clone()).await?;
    let ranked = imas_in_march.household.clone().expect("household");
    let total: f64 = imas_in_march.intercept
        + imas_in_march
            .terms
            .iter()
            .map(|t| t.contribution)
            .sum::<f64>();
    assert!(
        (total - ranked.score).abs() < 1e-9,
        "{total} vs {}",
        ranked.score
    );
    assert!(imas_in_march.terms.len() >= 10);
    for t in &imas_in_march.terms {
        assert!(
            (t.value * t.coefficient - t.contribution).abs() < 1e-9,
            "{t:?}"
        );
    }
    // The poorer household ranks first.
    let asep_rank = asep_in_march
        .household
        .as_ref()
        .expect("household")
        .national_rank;
    assert_eq!(ranked.national_rank + asep_rank, 3);
    assert_eq!(
        ranked.national_rank == 1,
        ranked.score < asep_in_march.household.expect("household").score
    );
    // Another regency's officer may not see it; an unknown household is not found.
    let other = stack.token(Role::RegencyOfficer, "32.73");
    let refused = standing(imas_household.clone(), Some(3), other)
        .await
        .expect_err("outside the region");
    assert_eq!(refused.code(), Code::PermissionDenied);
    let missing = standing(uuid::Uuid::now_v7().to_string(), Some(3), admin.clone())
        .await
        .expect_err("unknown");
    assert_eq!(missing.code(), Code::NotFound);

    // The master registry as of any moment: Asep's household before it was accepted,
    // and as it stands.
    let as_of = |id: String, at: Option<prost_types::Timestamp>| {
        let mut client = determination.clone();
        let token = admin.clone();
        async move {
            client
                .get_registry_household(authed(
                    GetRegistryHouseholdRequest {
                        household_id: id,
                        as_of: at,
                    },
                    &token,
                ))
                .await
                .map(|r| r.into_inner())
        }
    };
    // To the nanosecond: the whole test runs within a few seconds of the services' clock,
    // and an instant cut to its second could fall before Asep's own acceptance.
    let before_removal = {
        let now = dtks_e2e::time::now();
        prost_types::Timestamp {
            seconds: now.timestamp(),
            nanos: now.timestamp_subsec_nanos() as i32,
        }
    };
    let record = as_of(asep_household.clone(), None).await?;
    assert_eq!(
        record
            .household
            .as_ref()
            .map(|h| h.families[0].members.len()),
        Some(3)
    );
    let long_ago = prost_types::Timestamp {
        seconds: 946_684_800,
        nanos: 0,
    };
    assert_eq!(
        as_of(asep_household.clone(), Some(long_ago))
            .await
            .expect_err("not yet in DTKS")
            .code(),
        Code::NotFound
    );

    // April: verivali removes Asep's household after a complaint and a visit.
    let mut verivali = VerivaliServiceClient::new(stack.channel("verivali").await?);
    let complaint = verivali
        .file_complaint(authed(
            FileComplaintRequest {
                household_id: asep_household.clone(),
                text: "the family moved to Jakarta last year".into(),
                evidence_references: vec![],
            },
            &stack.token(Role::RegencyOfficer, "32.04"),
        ))
        .await?
        .into_inner();
    verivali
        .complete_reverification(authed(
            CompleteReverificationRequest {
                task_id: complaint.task_id,
                outcome: ReverificationOutcome::Removed as i32,
                note: "moved away; the house is empty".into(),
                proposal_id: String::new(),
                removal_reason: RemovalReason::MovedAway as i32,
            },
            &stack.token(Role::RegencyOfficer, "32.04"),
        ))
        .await?;
    accepted(&stack, 1).await?;
    // Removed now, still there as it stood before.
    let gone = as_of(asep_household.clone(), None)
        .await
        .expect_err("removed");
    assert_eq!(gone.code(), Code::NotFound);
    assert!(gone.message().contains("moved away"), "{gone:?}");
    let then = as_of(asep_household.clone(), Some(before_removal)).await?;
    assert_eq!(then.version, record.version);
    let april = determine(4).await?;
    assert_eq!(april.households, 1);
    let diff = april.diff.expect("diff");
    assert_eq!((diff.added, diff.removed), (0, 1));
    // Between January and April: Asep out, Imas in.
    let span = determination
        .clone()
        .diff_snapshots(authed(
            DiffSnapshotsRequest {
                from: period(1),
                to: period(4),
            },
            &admin,
        ))
        .await?
        .into_inner();
    assert_eq!((span.added, span.removed), (1, 1));
    // An unchanged month diffs as nothing against the month it stands on.
    let may = determine(5).await?;
    assert!(may.unchanged);
    assert_eq!(may.content_hash, april.content_hash);
    let none = determination
        .clone()
        .diff_snapshots(authed(
            DiffSnapshotsRequest {
                from: period(4),
                to: period(5),
            },
            &admin,
        ))
        .await?
        .into_inner();
    assert_eq!(none, SnapshotDiff::default());
    // Asep's household is gone from May; Imas stands, with the latest month by default.
    assert_eq!(
        standing(asep_household, None, admin.clone())
            .await
            .expect_err("removed")
            .code(),
        Code::NotFound
    );
    let latest = standing(imas_household, None, admin.clone()).await?;
    assert_eq!(latest.household.expect("household").national_rank, 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_run_at_a_time_and_a_crashed_run_leaves_nothing() -> anyhow::Result<()> {
    // Every run pauses 3 s inside its transaction, holding the advisory lock.
    let mut stack = Stack::start_services(
        &registry(),
        &["intake", "matching", "verivali", "determination"],
        &[("DTKS_DETERMINATION_FAULT", "pause")],
    )
    .await?;
    let operator = stack.token(Role::VillageOperator, VILLAGE);
    let admin = stack.token(Role::PusdatinAdmin, "");
    submit_household(&stack, &operator, "one-asep", "ONE-ASEP", household()).await?;
    accepted(&stack, 1).await?;
    let determine = |month: i32, channel: tonic::transport::Channel| {
        let token = admin.clone();
        async move {
            DeterminationServiceClient::new(channel)
                .determine(authed(
                    DetermineRequest {
                        period: period(month),
                    },
                    &token,
                ))
                .await
                .map(|r| r.into_inner())
        }
    };
    let channel = stack.channel("determination").await?;
    let (june, july) = tokio::join!(determine(6, channel.clone()), async {
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        determine(7, channel.clone()).await
    });
    let june = june?;
    let refused = july.expect_err("a second run while the first holds the lock");
    assert_eq!(refused.code(), Code::Aborted, "{refused:?}");
    assert!(refused.message().contains("another determination"));
    assert_eq!(
        count(&stack, "SELECT count(*) AS n FROM determination.snapshots").await?,
        1
    );

    // A run that dies after writing its rows, before the commit, leaves no snapshot.
    stack
        .restart("determination", &[("DTKS_DETERMINATION_FAULT", "crash")])
        .await?;
    let rows_before = count(
        &stack,
        "SELECT count(*) AS n FROM determination.snapshot_rows",
    )
    .await?;
    let crashed = determine(8, stack.channel("determination").await?).await;
    assert!(crashed.is_err(), "{crashed:?}");
    assert_eq!(
        count(&stack, "SELECT count(*) AS n FROM determination.snapshots").await?,
        1
    );
    assert_eq!(
        count(
            &stack,
            "SELECT count(*) AS n FROM determination.snapshot_rows"
        )
        .await?,
        rows_before
    );
    assert_eq!(
        count(&stack, "SELECT count(*) AS n FROM determination.outbox WHERE event_type = 'determination.published'").await?,
        1
    );
    // Run again: the month is determined, and the same inputs give the same hash.
    stack
        .restart("determination", &[("DTKS_DETERMINATION_FAULT", "")])
        .await?;
    let august = determine(8, stack.channel("determination").await?).await?;
    assert_eq!(august.households, 1);
    assert_eq!(august.content_hash, june.content_hash);
    assert!(august.unchanged);
    Ok(())
}
