//! One household from intake to a programme list, across seven processes, over the real
//! stack; and a malformed proposal refused with nothing stored or published.

mod access;
mod audit;
mod conformance;
mod consumers;
mod criteria;
mod dashboards;
mod deadletters;
mod delivery;
mod determination;
mod duplicates;
mod extracts;
mod faults;
mod history;
mod import;
mod intake;
mod lifecycle;
mod limits;
mod lists;
mod matching;
mod officers;
mod outcomes;
mod programmes;
mod reporting;
mod requests;
mod revocation;
mod sealed;
mod sweep;
mod telemetry;
mod tls;
mod verivali;
mod vital;
mod withdrawal;

use dtks_e2e::{SERVICES, Stack, authed, count, person};
use dtks_platform::auth::Role;
use dtks_proto::common::v1 as pb;
use dtks_proto::determination::v1::{
    DetermineRequest, determination_service_client::DeterminationServiceClient,
};
use dtks_proto::distribution::v1::{
    ApproveListRequest, BuildListRequest, ListStatus,
    distribution_service_client::DistributionServiceClient,
};
use dtks_proto::events::v1::{Channel, ProposalKind};
use dtks_proto::intake::v1::{SubmitProposalRequest, intake_service_client::IntakeServiceClient};
use dtks_proto::reporting::v1::{RegionQuery, reporting_service_client::ReportingServiceClient};

const VILLAGE: &str = "32.04.05.2001";
const HEAD_NIK: &str = "3204051203800001";
const SPOUSE_NIK: &str = "3204055708840002";
const CHILD_NIK: &str = "3204050102100003";

/// The civil registry knows the family exactly as the proposal states it.
const REGISTRY: &str = "nik,kk_number,full_name,birth_place,birth_date,sex,village_code,death_date
3204051203800001,3204050505150001,Asep Sunandar,Bandung,1980-03-12,1,32.04.05.2001,
3204055708840002,3204050505150001,Siti Aminah,Bandung,1984-08-17,2,32.04.05.2001,
3204050102100003,3204050505150001,Dede Kurnia,Bandung,2010-02-01,1,32.04.05.2001,
";

fn household() -> pb::Household {
    pb::Household {
        address: Some(pb::Address {
            village_code: VILLAGE.into(),
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
            kk_number: "3204050505150001".into(),
            members: vec![
                person(HEAD_NIK, "Asep Sunandar", (1980, 3, 12), 1, 1),
                person(SPOUSE_NIK, "Siti Aminah", (1984, 8, 17), 2, 2),
                person(CHILD_NIK, "Dede Kurnia", (2010, 2, 1), 1, 3),
            ],
        }],
        dwelling: Some(pb::Dwelling {
            tenure: 1,
            floor_area_m2: 36.0,
            floor: 1,
            wall: 1,
            roof: 2,
            water: 1,
            sanitation: 1,
            electricity: 3,
        }),
        assets: Some(pb::Assets {
            motorcycles: 0,
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Minutes of a deliberation held last week.
pub fn minutes() -> dtks_proto::intake::v1::Minutes {
    dtks_proto::intake::v1::Minutes {
        number: "BA/MUSDES/2001/11".into(),
        date: Some(dtks_e2e::time::date_from_today(-7)),
        attendees: 42,
    }
}

/// Submits [`household`] through the village meeting channel as `token`.
async fn submit_musdes(
    stack: &Stack,
    token: &str,
    idempotency_key: &str,
    reference: &str,
) -> anyhow::Result<dtks_proto::intake::v1::SubmitProposalResponse> {
    submit_household(stack, token, idempotency_key, reference, household()).await
}

/// Submits `household` through the village meeting channel as `token`.
async fn submit_household(
    stack: &Stack,
    token: &str,
    idempotency_key: &str,
    reference: &str,
    household: pb::Household,
) -> anyhow::Result<dtks_proto::intake::v1::SubmitProposalResponse> {
    let mut intake = IntakeServiceClient::new(stack.channel("intake").await?);
    let request = SubmitProposalRequest {
        idempotency_key: idempotency_key.into(),
        ..musdes(reference, household)
    };
    Ok(intake
        .submit_proposal(authed(request, token))
        .await?
        .into_inner())
}

/// A village-meeting (musdes) proposal of `household` with its minutes.
fn musdes(reference: &str, household: pb::Household) -> SubmitProposalRequest {
    SubmitProposalRequest {
        channel: Channel::Musdes as i32,
        kind: ProposalKind::Add as i32,
        external_reference: reference.into(),
        household: Some(household),
        minutes: Some(minutes()),
        ..Default::default()
    }
}

/// Waits (up to `secs`) for reporting's national pipeline summary to satisfy `done`.
async fn summary_when(
    stack: &Stack,
    secs: u64,
    what: &str,
    done: impl Fn(&dtks_proto::reporting::v1::PipelineSummary) -> bool,
) -> anyhow::Result<dtks_proto::reporting::v1::PipelineSummary> {
    let reporting = ReportingServiceClient::new(stack.channel("reporting").await?);
    let admin = stack.token(Role::PusdatinAdmin, "");
    let done = &done;
    stack
        .eventually(secs, what, || {
            let mut reporting = reporting.clone();
            let admin = admin.clone();
            async move {
                let s = reporting
                    .get_pipeline_summary(authed(RegionQuery::default(), &admin))
                    .await?
                    .into_inner();
                Ok(done(&s).then_some(s))
            }
        })
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_household_travels_from_intake_to_a_programme_list() -> anyhow::Result<()> {
    let stack = Stack::start(REGISTRY).await?;
    let operator = stack.token(Role::VillageOperator, "32.04.05.2001");
    let admin = stack.token(Role::PusdatinAdmin, "");

    // Every service answers health (checked by Stack::start) and reflection.
    for service in SERVICES {
        use tonic_reflection::pb::v1::{
            ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
            server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
        };
        let mut client = ServerReflectionClient::new(stack.channel(service).await?);
        let request = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        };
        let mut answers = client
            .server_reflection_info(futures::stream::iter([request]))
            .await?
            .into_inner();
        let answer = answers.message().await?.expect("a reflection answer");
        let Some(MessageResponse::ListServicesResponse(list)) = answer.message_response else {
            panic!("{service}: not a service list")
        };
        let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
        assert!(
            names
                .iter()
                .any(|n| n == &format!("dtks.{service}.v1.{}Service", capitalise(service))),
            "{service} lists {names:?}"
        );
        assert!(names.iter().any(|n| n == "grpc.health.v1.Health"));
        // Finding 15: each port lists only what it serves, not all six services.
        let dtks: Vec<&String> = names.iter().filter(|n| n.starts_with("dtks.")).collect();
        assert_eq!(dtks.len(), 1, "{service} lists {names:?}");
    }

    let submitted = submit_musdes(&stack, &operator, "musdes-first-001", "SIKS-NG-0001").await?;
    assert!(!submitted.replayed);

    let reporting = ReportingServiceClient::new(stack.channel("reporting").await?);
    let summary = summary_when(&stack, 60, "the household to be accepted", |s| {
        s.households_accepted == 1
    })
    .await?;
    assert_eq!(summary.proposals_submitted, 1);
    assert_eq!(summary.proposals_matched, 1);
    assert_eq!(summary.households_returned, 0);
    // The submission is in intake's audit log, under the operator, and the log verifies.
    let audited = count(
        &stack,
        &format!(
            "SELECT count(*)::bigint AS n FROM intake.audit_log
             WHERE action = 'intake.SubmitProposal' AND role = 'village_operator'
               AND records = ARRAY['{}']",
            submitted.proposal_id
        ),
    )
    .await?;
    assert_eq!(audited, 1);
    let (code, out, err) = stack
        .dtksctl(
            "",
            &[
                "audit",
                "verify",
                "--service",
                "intake",
                "--database-url",
                &stack.database_url,
            ],
        )
        .await?;
    assert_eq!(code, 0, "{out}{err}");

    let mut determination = DeterminationServiceClient::new(stack.channel("determination").await?);
    let period = dtks_e2e::time::period();
    let stack_ref = &stack;
    let snapshot = stack
        .eventually(30, "the registry to hold the household", || {
            let mut determination = determination.clone();
            let admin = admin.clone();
            async move {
                let n = count(
                    stack_ref,
                    "SELECT count(*)::bigint AS n FROM determination.registry_households",
                )
                .await?;
                if n == 0 {
                    return Ok(None);
                }
                Ok(Some(
                    determination
                        .determine(authed(
                            DetermineRequest {
                                period: Some(period),
                            },
                            &admin,
                        ))
                        .await?
                        .into_inner(),
                ))
            }
        })
        .await?;
    assert_eq!(snapshot.households, 1);
    assert_eq!(snapshot.persons, 3);
    assert!(!snapshot.unchanged);
    let again = determination
        .determine(authed(
            DetermineRequest {
                period: Some(period),
            },
            &admin,
        ))
        .await?
        .into_inner();
    assert_eq!(
        again.content_hash, snapshot.content_hash,
        "a determined period is never rewritten"
    );

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
    assert_eq!(list.recipients, 1);
    // A draft until the programme's Eselon I unit approves it; then fixed.
    assert_eq!(list.status, ListStatus::Draft as i32);
    let refused = distribution
        .approve_list(authed(
            ApproveListRequest {
                list_id: list.list_id.clone(),
            },
            &admin,
        ))
        .await
        .expect_err("the data unit does not approve a programme's list");
    assert_eq!(refused.code(), tonic::Code::PermissionDenied);
    let list = distribution
        .approve_list(authed(
            ApproveListRequest {
                list_id: list.list_id.clone(),
            },
            &stack.token(Role::EselonI, ""),
        ))
        .await?
        .into_inner();
    assert_eq!(list.status, ListStatus::Fixed as i32);
    assert_eq!(list.added_since_previous, 1);
    assert_eq!(
        list.regions
            .iter()
            .map(|r| (r.region_code.as_str(), r.eligible, r.selected))
            .collect::<Vec<_>>(),
        [("32.04", 1, 1)]
    );
    let listed = count(
        &stack,
        "SELECT count(*)::bigint AS n FROM distribution.list_entries e JOIN verivali.cases c ON c.household_id = e.household_id",
    )
    .await?;
    assert_eq!(
        listed, 1,
        "the listed household is the one verivali accepted"
    );

    let summary = stack
        .eventually(30, "reporting to count the list", || {
            let mut reporting = reporting.clone();
            let admin = admin.clone();
            async move {
                let s = reporting
                    .get_pipeline_summary(authed(
                        RegionQuery {
                            region_code: "32.04".into(),
                            ..Default::default()
                        },
                        &admin,
                    ))
                    .await?
                    .into_inner();
                Ok((s.recipients_listed == 1).then_some(s))
            }
        })
        .await?;
    assert_eq!(summary.households_determined, 1);
    assert_eq!(summary.programmes[0].programme_code, "DTKS-D1-4");
    Ok(())
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().chain(c).collect())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_nik_is_refused_naming_the_field_and_leaves_nothing_behind()
-> anyhow::Result<()> {
    use tonic_types::StatusExt;
    let stack = Stack::start(REGISTRY).await?;
    let operator = stack.token(Role::VillageOperator, VILLAGE);
    let mut bad = household();
    bad.families[0].members[1].nik = "32040557088400x2".into();
    let mut intake = IntakeServiceClient::new(stack.channel("intake").await?);
    let status = intake
        .submit_proposal(authed(
            SubmitProposalRequest {
                channel: Channel::Musdes as i32,
                kind: ProposalKind::Add as i32,
                external_reference: "BAD-1".into(),
                household: Some(bad),
                minutes: Some(minutes()),
                ..Default::default()
            },
            &operator,
        ))
        .await
        .expect_err("a malformed NIK must be refused");
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    let violations = status
        .get_details_bad_request()
        .expect("BadRequest details")
        .field_violations;
    assert_eq!(violations.len(), 1, "{violations:?}");
    assert_eq!(violations[0].field, "household.families[0].members[1].nik");
    assert!(violations[0].description.contains("digits"));

    // Names that cannot be stored (a NUL) or read differently from what they hold (a
    // bidirectional override), and an oversized street: refused the same way.
    for (field, change) in [
        (
            "household.families[0].members[0].full_name",
            (|h: &mut dtks_proto::common::v1::Household| {
                h.families[0].members[0].full_name = "Asep\0Sunandar".into()
            }) as fn(&mut dtks_proto::common::v1::Household),
        ),
        ("household.families[0].members[1].full_name", |h| {
            h.families[0].members[1].full_name = "\u{202e}hanimA itiS".into()
        }),
        ("household.address.street", |h| {
            h.address.as_mut().expect("address").street = "x".repeat(600_000)
        }),
    ] {
        let mut bad = household();
        change(&mut bad);
        let status = intake
            .submit_proposal(authed(musdes("BAD-TEXT", bad), &operator))
            .await
            .expect_err("refused");
        assert_eq!(status.code(), tonic::Code::InvalidArgument, "{field}");
        let violations = status
            .get_details_bad_request()
            .expect("BadRequest details")
            .field_violations;
        assert_eq!(violations[0].field, field, "{violations:?}");
        assert!(status.message().len() < 500, "the refusal echoes the input");
    }

    assert_eq!(
        count(&stack, "SELECT count(*)::bigint AS n FROM intake.proposals").await?,
        0
    );
    assert_eq!(
        count(&stack, "SELECT count(*)::bigint AS n FROM intake.outbox").await?,
        0
    );

    // Out-of-scope officers are refused too, before anything is stored.
    let other_regency = stack.token(Role::VillageOperator, "32.05.01.2001");
    let status = intake
        .submit_proposal(authed(
            SubmitProposalRequest {
                channel: Channel::Musdes as i32,
                kind: ProposalKind::Add as i32,
                household: Some(household()),
                minutes: Some(minutes()),
                ..Default::default()
            },
            &other_regency,
        ))
        .await
        .expect_err("another regency's officer must be refused");
    assert_eq!(status.code(), tonic::Code::PermissionDenied);
    assert_eq!(
        count(&stack, "SELECT count(*)::bigint AS n FROM intake.proposals").await?,
        0
    );
    Ok(())
}
