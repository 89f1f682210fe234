//! Beneficiary lists over a real determined month: the programme's rule filters, each
//! regency's quota is filled poorest first with households of equal welfare ranked by
//! household id (so the quota boundary falls the same way every time), the regions
//! report eligible, selected, surplus and shortfall; a list is a draft until the
//! programme's Eselon I unit approves it, then fixed, and a later list shows its
//! difference from the previous fixed one.

use dtks_e2e::{Stack, authed, registry_id, synthetic_household};
use dtks_platform::auth::Role;
use dtks_proto::common::v1 as pb;
use dtks_proto::determination::v1::DetermineRequest;
use dtks_proto::determination::v1::determination_service_client::DeterminationServiceClient;
use dtks_proto::distribution::v1::distribution_service_client::DistributionServiceClient;
use dtks_proto::distribution::v1::*;
use sqlx::Connection;
use tonic::Code;

/// The month the run's cases are accepted in, from the services' clock.
fn period() -> pb::Period {
    dtks_e2e::time::period()
}

fn in_village(mut h: pb::Household, village: &str) -> pb::Household {
    if let Some(a) = h.address.as_mut() {
        a.village_code = village.into();
    }
    h
}

pub(super) async fn recipients(
    client: &mut DistributionServiceClient<tonic::transport::Channel>,
    token: &str,
    list_id: &str,
) -> anyhow::Result<Vec<Recipient>> {
    let mut stream = client
        .stream_list(authed(
            StreamListRequest {
                list_id: list_id.into(),
                cursor: String::new(),
                batch_size: 0,
            },
            token,
        ))
        .await?
        .into_inner();
    let mut all = Vec::new();
    while let Some(batch) = stream.message().await? {
        all.extend(batch.recipients);
    }
    Ok(all)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quotas_fill_poorest_first_ties_fall_by_household_id_and_lists_are_fixed_by_eselon_i()
-> anyhow::Result<()> {
    let stack = Stack::start_services(
        "nik,kk_number,full_name,birth_place,birth_date,sex,village_code,death_date\n",
        &["determination", "distribution"],
        &[],
    )
    .await?;
    // Households 1-4 are the same household four times (equal welfare: a tie) in
    // regency 32.04, 5 lives alone there (the rule leaves single-person households
    // out), 6 is in 32.73, 7 and 8 in 33.01 (no quota there).
    let twin = synthetic_household(7);
    let mut alone = in_village(synthetic_household(11), "32.04.05.2001");
    alone.families[0].members.truncate(1);
    let households = vec![
        (4, in_village(twin.clone(), "32.04.05.2001")),
        (2, in_village(twin.clone(), "32.04.05.2001")),
        (3, in_village(twin.clone(), "32.04.05.2001")),
        (1, in_village(twin, "32.04.05.2001")),
        (5, alone),
        (6, in_village(synthetic_household(23), "32.73.01.1001")),
        (7, in_village(synthetic_household(31), "33.01.02.2003")),
        (8, in_village(synthetic_household(37), "33.01.02.2003")),
    ];
    let mut conn = sqlx::PgConnection::connect(&stack.database_url).await?;
    dtks_e2e::fill_registry_with(&mut conn, households).await?;
    let admin = stack.token(Role::PusdatinAdmin, "");
    DeterminationServiceClient::new(stack.channel("determination").await?)
        .determine(authed(
            DetermineRequest {
                period: Some(period()),
            },
            &admin,
        ))
        .await?;

    let mut client = DistributionServiceClient::new(stack.channel("distribution").await?);
    let eselon = stack.token(Role::EselonI, "");
    // A month nobody determined is not there to prepare.
    let missing = client
        .prepare_month(authed(
            PrepareMonthRequest {
                period: Some(dtks_e2e::time::period_after(-12)),
            },
            &eselon,
        ))
        .await
        .expect_err("not determined");
    assert_eq!(missing.code(), Code::NotFound, "{missing:?}");
    let prepared = client
        .prepare_month(authed(
            PrepareMonthRequest {
                period: Some(period()),
            },
            &eselon,
        ))
        .await?
        .into_inner();
    assert_eq!((prepared.households, prepared.persons), (8, 15));

    let programme = Programme {
        code: "UJI".into(),
        name: "Programme under test".into(),
        rule: "household.size >= 2".into(),
        version: 0,
        quotas: [
            ("32.04".to_owned(), 2),
            ("32.73".to_owned(), 3),
            ("35.78".to_owned(), 4),
        ]
        .into(),
        source: "tests/e2e/lists.rs".into(),
    };
    let saved = client
        .save_programme(authed(programme.clone(), &admin))
        .await?
        .into_inner();
    let build = BuildListRequest {
        programme_code: "UJI".into(),
        period: Some(period()),
    };
    let list = client
        .build_list(authed(build.clone(), &eselon))
        .await?
        .into_inner();
    assert_eq!(list.status, ListStatus::Draft as i32);
    assert_eq!(list.programme_version, saved.version);
    let report: Vec<(&str, u64, u64, u64, i64)> = list
        .regions
        .iter()
        .map(|r| {
            (
                r.region_code.as_str(),
                r.eligible,
                r.selected,
                r.quota,
                r.surplus,
            )
        })
        .collect();
    assert_eq!(
        report,
        [
            ("32.04", 4, 2, 2, 2),
            ("32.73", 1, 1, 3, -2),
            ("33.01", 2, 2, 0, 0),
            ("35.78", 0, 0, 4, -4),
        ]
    );
    assert_eq!(list.recipients, 5);
    // Building again answers the same draft.
    let again = client
        .build_list(authed(build.clone(), &eselon))
        .await?
        .into_inner();
    assert_eq!(again.list_id, list.list_id);

    // Only the programme's Eselon I unit fixes a list; a draft is never delivered.
    for role in [Role::DataOfficial, Role::Minister, Role::Service] {
        let refused = client
            .approve_list(authed(
                ApproveListRequest {
                    list_id: list.list_id.clone(),
                },
                &stack.token(role, ""),
            ))
            .await
            .expect_err("not the Eselon I unit");
        assert_eq!(refused.code(), Code::PermissionDenied, "{role:?}");
    }
    let fixed = client
        .approve_list(authed(
            ApproveListRequest {
                list_id: list.list_id.clone(),
            },
            &eselon,
        ))
        .await?
        .into_inner();
    assert_eq!(fixed.status, ListStatus::Fixed as i32);
    assert_eq!(fixed.content_hash, list.content_hash);
    assert_eq!(
        (fixed.added_since_previous, fixed.removed_since_previous),
        (5, 0)
    );

    let system = stack.token_for("bansos", Role::Service, "");
    let delivered = recipients(&mut client, &system, &list.list_id).await?;
    let ids: Vec<String> = delivered.iter().map(|r| r.household_id.clone()).collect();
    // The four equal households rank one after another by household id, so the quota
    // of two takes households 1 and 2, whatever order they arrived in.
    let twins: Vec<&String> = ids
        .iter()
        .filter(|id| (1..=4).any(|i| registry_id(i).to_string() == **id))
        .collect();
    assert_eq!(
        twins,
        [&registry_id(1).to_string(), &registry_id(2).to_string()]
    );
    assert!(!ids.contains(&registry_id(5).to_string()), "lives alone");
    assert!(
        delivered
            .windows(2)
            .all(|w| w[0].national_rank < w[1].national_rank),
        "poorest first"
    );
    assert!(
        delivered
            .iter()
            .all(|r| r.head_nik.len() == 16 && !r.head_name.is_empty()),
        "each entry carries its head's NIK and name"
    );

    // A new version of the programme with room for every household of 32.04: its list
    // differs from the fixed one by the two who were left out.
    let wider = client
        .save_programme(authed(
            Programme {
                quotas: [("32.04".to_owned(), 10), ("32.73".to_owned(), 3)].into(),
                ..programme
            },
            &admin,
        ))
        .await?
        .into_inner();
    assert_eq!(wider.version, saved.version + 1);
    let second = client
        .build_list(authed(build, &eselon))
        .await?
        .into_inner();
    assert_ne!(second.list_id, list.list_id);
    let second = client
        .approve_list(authed(
            ApproveListRequest {
                list_id: second.list_id,
            },
            &eselon,
        ))
        .await?
        .into_inner();
    assert_eq!(second.recipients, 7);
    assert_eq!(
        (second.added_since_previous, second.removed_since_previous),
        (2, 0)
    );
    Ok(())
}
