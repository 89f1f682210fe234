//! Reporting after a full cycle of five households in two regencies: every read model
//! agrees with a direct count of the services' own tables, a rebuild from the kept
//! facts gives the same answers, and the exports open as CSV and XLSX with their headers.

use std::collections::BTreeMap;

use dtks_e2e::{Stack, authed, count, person};
use dtks_platform::auth::Role;
use dtks_proto::common::v1 as pb;
use dtks_proto::determination::v1::DetermineRequest;
use dtks_proto::determination::v1::determination_service_client::DeterminationServiceClient;
use dtks_proto::distribution::v1::distribution_service_client::DistributionServiceClient;
use dtks_proto::distribution::v1::{ApproveListRequest, BuildListRequest};
use dtks_proto::events::v1::HouseholdOutcome;
use dtks_proto::reporting::v1::reporting_service_client::ReportingServiceClient;
use dtks_proto::reporting::v1::*;
use dtks_proto::verivali::v1::verivali_service_client::VerivaliServiceClient;
use dtks_proto::verivali::v1::{CaseState, FileComplaintRequest};
use sea_orm::ConnectionTrait;

type Reporting = ReportingServiceClient<tonic::transport::Channel>;

/// Household `k`: a couple in `village`; the first four are known to the civil
/// registry, the fifth is not.
fn couple(k: u32, village: &str) -> (pb::Household, String) {
    let district = village[..8].replace('.', "");
    let head = format!("{district}120380{:04}", 2 * k + 1);
    let spouse = format!("{district}570884{:04}", 2 * k + 2);
    let kk = format!("{district}050515{:04}", k + 1);
    let household = pb::Household {
        address: Some(pb::Address {
            village_code: village.into(),
            rt: "001".into(),
            rw: "002".into(),
            street: "Jl. Melati 3".into(),
            postal_code: "40375".into(),
        }),
        location: Some(pb::GeoPoint {
            latitude: -7.0,
            longitude: 107.6,
        }),
        families: vec![pb::Family {
            kk_number: kk.clone(),
            members: vec![
                person(&head, "Asep Sunandar", (1980, 3, 12), 1, 1),
                person(&spouse, "Siti Aminah", (1984, 8, 17), 2, 2),
            ],
        }],
        dwelling: Some(pb::Dwelling {
            tenure: 1,
            floor_area_m2: 20.0 + f64::from(k) * 9.0,
            floor: 1 + (k % 3) as i32,
            wall: 1,
            roof: 2,
            water: 1,
            sanitation: 1,
            electricity: 3,
        }),
        assets: Some(pb::Assets::default()),
        ..Default::default()
    };
    let rows = format!(
        "{head},{kk},Asep Sunandar,Bandung,1980-03-12,1,{village},\n{spouse},{kk},Siti Aminah,Bandung,1984-08-17,2,{village},\n"
    );
    (household, rows)
}

const VILLAGES: [&str; 5] = [
    "32.04.05.2001",
    "32.04.05.2002",
    "32.04.05.2003",
    "32.73.01.1001",
    "32.73.01.1002",
];

fn query(region: &str, level: pb::RegionLevel) -> RegionQuery {
    RegionQuery {
        region_code: region.into(),
        level: level as i32,
        period: None,
    }
}

/// Every answer of the read models, as text, to compare before and after a rebuild.
async fn answers(reporting: &mut Reporting, token: &str) -> anyhow::Result<String> {
    let q = || query("32", pb::RegionLevel::Regency);
    Ok(format!(
        "{:?}\n{:?}\n{:?}\n{:?}\n{:?}\n{:?}\n{:?}",
        reporting
            .get_update_rates(authed(q(), token))
            .await?
            .into_inner(),
        reporting
            .list_inactive_regions(authed(q(), token))
            .await?
            .into_inner(),
        reporting
            .get_decile_distribution(authed(q(), token))
            .await?
            .into_inner(),
        reporting
            .get_programme_coverage(authed(q(), token))
            .await?
            .into_inner(),
        reporting
            .get_match_outcomes(authed(q(), token))
            .await?
            .into_inner(),
        reporting
            .get_reverifications(authed(q(), token))
            .await?
            .into_inner(),
        reporting
            .get_pipeline_summary(authed(q(), token))
            .await?
            .into_inner(),
    ))
}

async fn export(
    reporting: &mut Reporting,
    token: &str,
    report: ReportKind,
    format: ExportFormat,
) -> anyhow::Result<Vec<u8>> {
    let mut stream = reporting
        .export(authed(
            ExportRequest {
                report: report as i32,
                format: format as i32,
                query: Some(query("32", pb::RegionLevel::Regency)),
            },
            token,
        ))
        .await?
        .into_inner();
    let mut bytes = Vec::new();
    while let Some(chunk) = stream.message().await? {
        bytes.extend(chunk.data);
    }
    Ok(bytes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_models_agree_with_direct_counts_and_a_replay_rebuilds_them() -> anyhow::Result<()> {
    let mut registry = String::from(
        "nik,kk_number,full_name,birth_place,birth_date,sex,village_code,death_date\n",
    );
    let households: Vec<pb::Household> = VILLAGES
        .iter()
        .enumerate()
        .map(|(k, village)| {
            let (household, rows) = couple(k as u32, village);
            if k < 4 {
                registry.push_str(&rows);
            }
            household
        })
        .collect();
    let stack = Stack::start(&registry).await?;
    let admin = stack.token(Role::PusdatinAdmin, "");
    for (k, household) in households.into_iter().enumerate() {
        let operator = stack.token(Role::VillageOperator, VILLAGES[k]);
        super::submit_household(
            &stack,
            &operator,
            &format!("reporting-{k}"),
            &format!("REF-{k}"),
            household,
        )
        .await?;
    }
    let mut reporting = ReportingServiceClient::new(stack.channel("reporting").await?);
    // Every proposal matched and every case decided (the demo policy walks each case).
    let settled = super::summary_when(&stack, 90, "every case to be decided", |s| {
        s.proposals_matched == 5 && s.households_accepted + s.households_returned == 5
    })
    .await?;
    assert!(settled.households_accepted >= 1, "{settled:?}");
    // Finding 6: a village's summary is that village's, not its regency's under the
    // village's code.
    let village = reporting
        .get_pipeline_summary(authed(
            RegionQuery {
                region_code: VILLAGES[0].into(),
                ..Default::default()
            },
            &stack.token(Role::VillageOperator, VILLAGES[0]),
        ))
        .await?
        .into_inner();
    assert_eq!(
        (
            village.region_code.as_str(),
            village.proposals_submitted,
            village.proposals_matched
        ),
        (VILLAGES[0], 1, 1),
        "{village:?}"
    );
    let regency = reporting
        .get_pipeline_summary(authed(
            RegionQuery {
                region_code: "32.04".into(),
                ..Default::default()
            },
            &stack.token(Role::RegencyOfficer, "32.04"),
        ))
        .await?
        .into_inner();
    // Three of the five villages are in 32.04.
    assert_eq!(regency.proposals_submitted, 3, "{regency:?}");

    // A complaint about an accepted household.
    let accepted = count(
        &stack,
        "SELECT count(*)::bigint AS n FROM verivali.households WHERE removed_at IS NULL",
    )
    .await?;
    let household_id: uuid::Uuid = stack
        .db
        .query_one_raw(dtks_platform::db::stmt(
            "SELECT household_id FROM verivali.households ORDER BY household_id LIMIT 1",
            [],
        ))
        .await?
        .expect("an accepted household")
        .try_get("", "household_id")?;
    VerivaliServiceClient::new(stack.channel("verivali").await?)
        .file_complaint(authed(
            FileComplaintRequest {
                household_id: household_id.to_string(),
                text: "the family owns a car".into(),
                evidence_references: vec![],
            },
            &stack.token_for("warga", Role::Public, ""),
        ))
        .await?;

    // The month determined and a programme's list fixed.
    let period = dtks_e2e::time::period();
    let stack_ref = &stack;
    stack
        .eventually(
            30,
            "the registry to hold every accepted household",
            || async move {
                let n = count(
                    stack_ref,
                    "SELECT count(*)::bigint AS n FROM determination.registry_households",
                )
                .await?;
                Ok((n == accepted).then_some(()))
            },
        )
        .await?;
    DeterminationServiceClient::new(stack.channel("determination").await?)
        .determine(authed(
            DetermineRequest {
                period: Some(period),
            },
            &admin,
        ))
        .await?;
    let mut distribution = DistributionServiceClient::new(stack.channel("distribution").await?);
    let list = distribution
        .build_list(authed(
            BuildListRequest {
                programme_code: "DTKS-D1-4".into(),
                period: Some(period),
            },
            &admin,
        ))
        .await?
        .into_inner();
    let list = distribution
        .approve_list(authed(
            ApproveListRequest {
                list_id: list.list_id,
            },
            &stack.token(Role::EselonI, ""),
        ))
        .await?
        .into_inner();

    // Reporting has every event once the coverage and the complaint are in.
    let national = query("", pb::RegionLevel::Regency);
    stack
        .eventually(
            30,
            "reporting to take in the list and the complaint",
            || {
                let mut reporting = reporting.clone();
                let (admin, national) = (admin.clone(), national.clone());
                async move {
                    let coverage = reporting
                        .get_programme_coverage(authed(national.clone(), &admin))
                        .await?
                        .into_inner();
                    let tasks = reporting
                        .get_reverifications(authed(national, &admin))
                        .await?
                        .into_inner();
                    Ok((!coverage.rows.is_empty() && !tasks.regions.is_empty()).then_some(()))
                }
            },
        )
        .await?;

    // The funnel: cases per state, as verivali holds them.
    let funnel = reporting
        .get_funnel(authed(national.clone(), &admin))
        .await?
        .into_inner();
    let reported: BTreeMap<String, u64> = funnel
        .stages
        .iter()
        .map(|s| (s.state.clone(), s.cases))
        .collect();
    let rows = stack
        .db
        .query_all_raw(dtks_platform::db::stmt(
            "SELECT state, count(*)::bigint AS n FROM verivali.cases GROUP BY state",
            [],
        ))
        .await?;
    let mut direct = BTreeMap::new();
    for r in rows {
        let state: i16 = r.try_get("", "state")?;
        let n: i64 = r.try_get("", "n")?;
        direct.insert(
            CaseState::try_from(i32::from(state))?
                .as_str_name()
                .to_owned(),
            n as u64,
        );
    }
    assert_eq!(reported, direct);
    assert_eq!(
        funnel
            .regions
            .iter()
            .map(|r| r.region.clone().unwrap_or_default().code)
            .collect::<Vec<_>>(),
        ["32.04", "32.73"]
    );

    // The update rate: every DTKS household per regency, all verified just now.
    let rates = reporting
        .get_update_rates(authed(national.clone(), &admin))
        .await?
        .into_inner();
    for r in &rates.regions {
        let region = r.region.clone().unwrap_or_default();
        let direct = count(
            &stack,
            &format!(
                "SELECT count(*)::bigint AS n FROM verivali.households WHERE removed_at IS NULL AND region_code LIKE '{}.%'",
                region.code
            ),
        )
        .await?;
        assert_eq!(r.records as i64, direct, "{}", region.code);
        assert_eq!((r.updated, r.rate), (r.records, 1.0));
        assert!(!region.name.is_empty(), "names from the reference data");
    }
    assert_eq!(
        rates.regions.iter().map(|r| r.records as i64).sum::<i64>(),
        accepted
    );

    // Matching's outcomes: households by outcome, as matching stored them.
    let outcomes = reporting
        .get_match_outcomes(authed(query("", pb::RegionLevel::Province), &admin))
        .await?
        .into_inner();
    assert_eq!(outcomes.regions.len(), 1);
    let reported: BTreeMap<String, u64> = outcomes.regions[0]
        .households_by_outcome
        .iter()
        .map(|o| (o.outcome.clone(), o.count))
        .collect();
    let rows = stack
        .db
        .query_all_raw(dtks_platform::db::stmt(
            "SELECT outcome, count(*)::bigint AS n FROM matching.match_results GROUP BY outcome",
            [],
        ))
        .await?;
    let mut direct = BTreeMap::new();
    for r in rows {
        let outcome: i16 = r.try_get("", "outcome")?;
        let n: i64 = r.try_get("", "n")?;
        direct.insert(
            HouseholdOutcome::try_from(i32::from(outcome))?
                .as_str_name()
                .to_owned(),
            n as u64,
        );
    }
    assert_eq!(reported, direct);
    assert_eq!(outcomes.regions[0].persons, 10);
    assert!(outcomes.regions[0].match_rate > 0.0 && outcomes.regions[0].match_rate < 1.0);

    // Deciles of the determined month per regency, as the snapshot holds them.
    let deciles = reporting
        .get_decile_distribution(authed(national.clone(), &admin))
        .await?
        .into_inner();
    for r in &deciles.regions {
        let code = r.region.clone().unwrap_or_default().code;
        for (d, n) in r.households_per_decile.iter().enumerate() {
            let direct = count(
                &stack,
                &format!(
                    "SELECT count(*)::bigint AS n FROM determination.snapshot_rows WHERE region_code LIKE '{code}.%' AND decile = {}",
                    d + 1
                ),
            )
            .await?;
            assert_eq!(*n as i64, direct, "{code} decile {}", d + 1);
        }
    }

    // Coverage: the fixed list's own report.
    let coverage = reporting
        .get_programme_coverage(authed(national.clone(), &admin))
        .await?
        .into_inner();
    let reported: Vec<(String, u64, u64, u64)> = coverage
        .rows
        .iter()
        .map(|c| {
            (
                c.region.clone().unwrap_or_default().code,
                c.eligible,
                c.selected,
                c.quota,
            )
        })
        .collect();
    let listed: Vec<(String, u64, u64, u64)> = list
        .regions
        .iter()
        .map(|r| (r.region_code.clone(), r.eligible, r.selected, r.quota))
        .collect();
    assert_eq!(reported, listed);

    // The complaint, open, not yet overdue.
    let tasks = reporting
        .get_reverifications(authed(national.clone(), &admin))
        .await?
        .into_inner();
    let totals = tasks.regions.iter().fold((0, 0, 0), |(c, o, d), r| {
        (c + r.complaints, o + r.open, d + r.overdue)
    });
    assert_eq!(totals, (1, 1, 0));

    // Inactive regencies of West Java: all but the two that verified this month.
    let inactive = reporting
        .list_inactive_regions(authed(query("32", pb::RegionLevel::Regency), &admin))
        .await?
        .into_inner();
    let regencies = count(
        &stack,
        "SELECT count(*)::bigint AS n FROM reference.regions WHERE level = 2 AND code LIKE '32.%'",
    )
    .await?;
    let codes: Vec<&str> = inactive.regions.iter().map(|r| r.code.as_str()).collect();
    assert_eq!(codes.len() as i64, regencies - 2);
    assert!(!codes.contains(&"32.04") && !codes.contains(&"32.73"));
    assert!(codes.contains(&"32.01"));

    // A level coarser than the region asked about is refused.
    let refused = reporting
        .get_update_rates(authed(query("32.04", pb::RegionLevel::Province), &admin))
        .await
        .expect_err("coarser level");
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);

    // Thrown away and rebuilt from the facts: the same answers.
    let before = answers(&mut reporting, &admin).await?;
    let refused = reporting
        .rebuild(authed(RebuildRequest {}, &stack.token(Role::EselonI, "")))
        .await
        .expect_err("only the data unit rebuilds");
    assert_eq!(refused.code(), tonic::Code::PermissionDenied);
    let rebuilt = reporting
        .rebuild(authed(RebuildRequest {}, &admin))
        .await?
        .into_inner();
    let facts = count(&stack, "SELECT count(*)::bigint AS n FROM reporting.facts").await?;
    assert_eq!(rebuilt.facts_replayed as i64, facts);
    assert_eq!(answers(&mut reporting, &admin).await?, before);

    // Exports: CSV with its header, XLSX that opens with the same header.
    let csv = export(
        &mut reporting,
        &admin,
        ReportKind::UpdateRates,
        ExportFormat::Csv,
    )
    .await?;
    let text = String::from_utf8(csv)?;
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some(
            "region_code,region_name,records,updated_last_6_months,update_rate,changed_last_6_months,confirmed_last_6_months"
        )
    );
    assert!(lines.any(|l| l.starts_with("32.04,")));
    let xlsx = export(
        &mut reporting,
        &admin,
        ReportKind::Deciles,
        ExportFormat::Xlsx,
    )
    .await?;
    use calamine::Reader;
    let mut book = calamine::Xlsx::new(std::io::Cursor::new(xlsx))?;
    let sheet = book.worksheet_range("deciles")?;
    let header: Vec<String> = sheet
        .rows()
        .next()
        .expect("a header")
        .iter()
        .map(|c| c.to_string())
        .collect();
    assert_eq!(header[..3], ["region_code", "region_name", "decile_1"]);
    assert_eq!(header.last().map(String::as_str), Some("households"));
    assert_eq!(sheet.rows().count(), deciles.regions.len() + 1);
    Ok(())
}
