//! Officers: registered by whom may manage them, refused with the field named when the
//! assignment is malformed, reassigned and deactivated with every earlier token refused
//! by every service within a second, each change audited — and no change at all when the
//! revocation cannot be published.

use std::time::{Duration, Instant};

use dtks_e2e::{Stack, authed, count};
use dtks_platform::auth::Role;
use dtks_proto::reporting::v1::RegionQuery;
use dtks_proto::reporting::v1::reporting_service_client::ReportingServiceClient;
use dtks_proto::verivali::v1::verivali_service_client::VerivaliServiceClient;
use dtks_proto::verivali::v1::*;
use tonic::Code;

type Verivali = VerivaliServiceClient<tonic::transport::Channel>;

fn register(subject: &str, role: &str, region: &str) -> RegisterOfficerRequest {
    RegisterOfficerRequest {
        subject: subject.into(),
        display_name: format!("Petugas {subject}"),
        role: role.into(),
        region_code: region.into(),
    }
}

fn field_of(status: &tonic::Status) -> String {
    use tonic_types::StatusExt;
    status
        .get_details_bad_request()
        .and_then(|b| b.field_violations.first().map(|v| v.field.clone()))
        .unwrap_or_default()
}

async fn officers(client: &mut Verivali, token: &str, inactive: bool) -> Vec<(String, bool)> {
    client
        .list_officers(authed(
            ListOfficersRequest {
                region_code: String::new(),
                include_inactive: inactive,
                page: None,
            },
            token,
        ))
        .await
        .expect("list")
        .into_inner()
        .officers
        .into_iter()
        .map(|o| (o.subject, o.active))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn officers_are_managed_within_reach_and_a_change_ends_their_tokens_within_a_second()
-> anyhow::Result<()> {
    let mut stack = Stack::start_services(super::REGISTRY, &["verivali", "reporting"], &[]).await?;
    let mut verivali = VerivaliServiceClient::new(stack.channel("verivali").await?);
    let mut reporting = ReportingServiceClient::new(stack.channel("reporting").await?);
    let admin = stack.token(Role::PusdatinAdmin, "");

    // Pusdatin registers a regency officer, who registers a village operator.
    let dinsos = verivali
        .register_officer(authed(
            register("dinsos-3204-a", "regency_officer", "32.04"),
            &admin,
        ))
        .await?
        .into_inner();
    assert!(dinsos.active);
    assert_eq!(dinsos.assigned_by, "e2e-officer");
    let dinsos_token = stack.token_for("dinsos-3204-a", Role::RegencyOfficer, "32.04");
    verivali
        .register_officer(authed(
            register("operator-2001", "village_operator", "32.04.05.2001"),
            &dinsos_token,
        ))
        .await?;
    let operator_token = stack.token_for("operator-2001", Role::VillageOperator, "32.04.05.2001");

    // Outside the manager's reach, or malformed: refused, naming why, and nothing kept.
    let before = count(
        &stack,
        "SELECT count(*)::bigint AS n FROM verivali.officers",
    )
    .await?;
    for (request, token, code, why) in [
        (
            register("prov-32", "province_officer", "32"),
            &dinsos_token,
            Code::PermissionDenied,
            "does not manage",
        ),
        (
            register("operator-1001", "village_operator", "32.73.01.1001"),
            &dinsos_token,
            Code::PermissionDenied,
            "outside the caller's scope",
        ),
        (
            register("x", "boss", "32.04"),
            &admin,
            Code::InvalidArgument,
            "role",
        ),
        (
            register("x", "public", ""),
            &admin,
            Code::InvalidArgument,
            "role",
        ),
        (
            register("x", "village_operator", "32.04"),
            &admin,
            Code::InvalidArgument,
            "region_code",
        ),
        (
            register("x", "regency_officer", "99.99"),
            &admin,
            Code::InvalidArgument,
            "region_code",
        ),
        (
            register("x", "ministry_assessor", "32"),
            &admin,
            Code::InvalidArgument,
            "region_code",
        ),
        (
            register("", "regency_officer", "32.04"),
            &admin,
            Code::InvalidArgument,
            "subject",
        ),
        (
            register("dinsos-3204-a", "regency_officer", "32.04"),
            &admin,
            Code::AlreadyExists,
            "registered",
        ),
    ] {
        let refused = verivali
            .register_officer(authed(request.clone(), token))
            .await
            .expect_err("refused");
        assert_eq!(refused.code(), code, "{request:?}: {refused:?}");
        if code == Code::InvalidArgument {
            assert_eq!(field_of(&refused), why, "{refused:?}");
        } else {
            assert!(refused.message().contains(why), "{refused:?}");
        }
    }
    assert_eq!(
        count(
            &stack,
            "SELECT count(*)::bigint AS n FROM verivali.officers"
        )
        .await?,
        before
    );

    // Both tokens work in both services.
    let summary = |token: &str| {
        authed(
            RegionQuery {
                region_code: "32.04".into(),
                ..Default::default()
            },
            token,
        )
    };
    reporting
        .get_pipeline_summary(summary(&dinsos_token))
        .await?;
    verivali
        .list_cases(authed(ListCasesRequest::default(), &operator_token))
        .await?;

    // The regency officer moves to 32.73: their earlier token is refused everywhere
    // within a second.
    let reassigned = verivali
        .reassign_officer(authed(
            ReassignOfficerRequest {
                subject: "dinsos-3204-a".into(),
                role: "regency_officer".into(),
                region_code: "32.73".into(),
                reason: "mutasi to Kota Bandung".into(),
            },
            &admin,
        ))
        .await?
        .into_inner();
    let changed = Instant::now();
    assert_eq!(reassigned.region_code, "32.73");
    assert!(reassigned.tokens_revoked_at.is_some());
    loop {
        let a = reporting.get_pipeline_summary(summary(&dinsos_token)).await;
        let b = verivali
            .list_cases(authed(ListCasesRequest::default(), &dinsos_token))
            .await;
        if let (Err(a), Err(b)) = (&a, &b) {
            assert_eq!(
                (a.code(), b.code()),
                (Code::Unauthenticated, Code::Unauthenticated)
            );
            break;
        }
        assert!(
            changed.elapsed() < Duration::from_secs(1),
            "the old assignment's token still works after {:?}",
            changed.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!(
        "reassignment ended the earlier token in {} ms",
        changed.elapsed().as_millis()
    );
    // A token of the new assignment (signed in again after the change) works.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let moved = stack.token_for("dinsos-3204-a", Role::RegencyOfficer, "32.73");
    verivali
        .list_cases(authed(
            ListCasesRequest {
                region_code: "32.73".into(),
                ..Default::default()
            },
            &moved,
        ))
        .await?;

    // When the revocation cannot be published, nothing changes.
    stack
        .restart("verivali", &[("DTKS_REDIS__URL", "redis://127.0.0.1:9/")])
        .await?;
    let mut broken = VerivaliServiceClient::new(stack.channel("verivali").await?);
    let refused = broken
        .deactivate_officer(authed(
            DeactivateOfficerRequest {
                subject: "operator-2001".into(),
                reason: "resigned".into(),
            },
            &admin,
        ))
        .await
        .expect_err("no revocation, no change");
    assert_eq!(refused.code(), Code::Unavailable, "{refused:?}");
    assert_eq!(
        count(
            &stack,
            "SELECT count(*)::bigint AS n FROM verivali.officers WHERE subject = 'operator-2001' AND active"
        )
        .await?,
        1
    );
    stack.restart("verivali", &[]).await?;
    let mut verivali = VerivaliServiceClient::new(stack.channel("verivali").await?);

    // Deactivated: refused at once; a second deactivation is a precondition failure.
    let deactivated = verivali
        .deactivate_officer(authed(
            DeactivateOfficerRequest {
                subject: "operator-2001".into(),
                reason: "resigned".into(),
            },
            &admin,
        ))
        .await?
        .into_inner();
    assert!(!deactivated.active);
    stack
        .eventually(1, "the deactivated operator's token to be refused", || {
            let mut verivali = verivali.clone();
            let token = operator_token.clone();
            async move {
                Ok(verivali
                    .list_cases(authed(ListCasesRequest::default(), &token))
                    .await
                    .err()
                    .filter(|s| s.code() == Code::Unauthenticated))
            }
        })
        .await?;
    let again = verivali
        .deactivate_officer(authed(
            DeactivateOfficerRequest {
                subject: "operator-2001".into(),
                reason: "resigned".into(),
            },
            &admin,
        ))
        .await
        .expect_err("already deactivated");
    assert_eq!(again.code(), Code::FailedPrecondition);
    // Finding 16: a token issued after the deactivation is refused too, whatever its
    // age, until the officer is reassigned; then a new token is accepted.
    tokio::time::sleep(std::time::Duration::from_millis(1_100)).await;
    let fresh = stack.token_for("operator-2001", Role::VillageOperator, "32.04.05.2001");
    let refused = verivali
        .list_cases(authed(ListCasesRequest::default(), &fresh))
        .await
        .expect_err("deactivated");
    assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");
    verivali
        .reassign_officer(authed(
            ReassignOfficerRequest {
                subject: "operator-2001".into(),
                role: "village_operator".into(),
                region_code: "32.04.05.2001".into(),
                reason: "returned to the post".into(),
            },
            &admin,
        ))
        .await?;
    tokio::time::sleep(std::time::Duration::from_millis(1_100)).await;
    let returned = stack.token_for("operator-2001", Role::VillageOperator, "32.04.05.2001");
    stack
        .eventually(
            5,
            "the reassigned operator's new token to be accepted",
            || {
                let mut verivali = verivali.clone();
                let token = returned.clone();
                async move {
                    Ok(verivali
                        .list_cases(authed(ListCasesRequest::default(), &token))
                        .await
                        .ok()
                        .map(|_| ()))
                }
            },
        )
        .await?;
    assert_eq!(
        verivali
            .list_cases(authed(ListCasesRequest::default(), &fresh))
            .await
            .expect_err("issued before the reassignment")
            .code(),
        Code::Unauthenticated
    );
    // Deactivated again, for the listings below.
    verivali
        .deactivate_officer(authed(
            DeactivateOfficerRequest {
                subject: "operator-2001".into(),
                reason: "resigned".into(),
            },
            &admin,
        ))
        .await?;

    // The province of West Java sees its officers; inactive ones on request.
    let province = stack.token(Role::ProvinceOfficer, "32");
    let mut active = officers(&mut verivali, &province, false).await;
    active.sort();
    assert_eq!(active, vec![("dinsos-3204-a".to_owned(), true)]);
    let mut all = officers(&mut verivali, &province, true).await;
    all.sort();
    assert_eq!(
        all,
        vec![
            ("dinsos-3204-a".to_owned(), true),
            ("operator-2001".to_owned(), false)
        ]
    );
    assert!(
        officers(
            &mut verivali,
            &stack.token(Role::ProvinceOfficer, "33"),
            true
        )
        .await
        .is_empty()
    );

    // The same from the command line.
    let (code, out, err) = stack
        .dtksctl(
            "",
            &[
                "officer",
                "list",
                "--inactive",
                "--verivali",
                &stack.endpoint("verivali"),
                "--token",
                &province,
            ],
        )
        .await?;
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("operator-2001\tvillage_operator\t32.04.05.2001\tfalse")),
        "{out}"
    );

    // Every change is in the history and the audit log: the four made first, the
    // return to the post and the second deactivation.
    assert_eq!(
        count(
            &stack,
            "SELECT count(*)::bigint AS n FROM verivali.officer_history"
        )
        .await?,
        6
    );
    assert_eq!(
        count(
            &stack,
            "SELECT count(*)::bigint AS n FROM verivali.audit_log WHERE action IN
             ('verivali.RegisterOfficer', 'verivali.ReassignOfficer', 'verivali.DeactivateOfficer')"
        )
        .await?,
        6
    );
    Ok(())
}
