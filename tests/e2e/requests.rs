//! Data requests (permohonan data) against the running distribution service: each kind
//! of requester files and the authority the regulation names decides (a wrong filer or
//! approver refused), bad requests refused field by field with nothing stored, handover
//! minutes by the requesting officer only, revocation, and expiry at the end of the
//! period of use.

use dtks_e2e::{Stack, authed, count};
use dtks_platform::auth::Role;
use dtks_proto::distribution::v1::distribution_service_client::DistributionServiceClient;
use dtks_proto::distribution::v1::*;
use sea_orm::ConnectionTrait;
use tonic::Code;
use tonic_types::StatusExt;

type Client = DistributionServiceClient<tonic::transport::Channel>;

fn fields(status: &tonic::Status) -> Vec<String> {
    status
        .get_details_bad_request()
        .map(|b| b.field_violations.into_iter().map(|f| f.field).collect())
        .unwrap_or_default()
}

fn at(seconds_from_now: i64) -> Option<prost_types::Timestamp> {
    Some(dtks_e2e::time::timestamp_from_now(seconds_from_now))
}

fn new_request(kind: RequesterKind, region: &str, until_seconds: i64) -> CreateDataRequestRequest {
    CreateDataRequestRequest {
        requester_kind: kind as i32,
        requester: "Dinas Sosial Kabupaten Bandung".into(),
        purpose: "Verify PKH recipients for the 2027 disbursement".into(),
        region_code: region.into(),
        data_kinds: vec![DataKind::Identity as i32, DataKind::WelfareRank as i32],
        use_from: at(-60),
        use_until: at(until_seconds),
    }
}

async fn file(
    client: &mut Client,
    token: &str,
    request: CreateDataRequestRequest,
) -> Result<DataRequest, tonic::Status> {
    Ok(client
        .create_data_request(authed(request, token))
        .await?
        .into_inner())
}

async fn decide(
    client: &mut Client,
    token: &str,
    decision: &str,
    id: &str,
    reason: &str,
) -> Result<DataRequest, tonic::Status> {
    let request = authed(
        DecideDataRequestRequest {
            request_id: id.into(),
            reason: reason.into(),
        },
        token,
    );
    let answer = match decision {
        "approve" => client.approve_data_request(request).await,
        "reject" => client.reject_data_request(request).await,
        _ => client.revoke_data_request(request).await,
    };
    Ok(answer?.into_inner())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_requester_is_decided_by_its_authority_and_a_request_lives_to_its_end()
-> anyhow::Result<()> {
    let stack = Stack::start_services(super::REGISTRY, &["distribution"], &[]).await?;
    let mut client = DistributionServiceClient::new(stack.channel("distribution").await?);
    let requests = || {
        count(
            &stack,
            "SELECT count(*) AS n FROM distribution.data_requests",
        )
    };

    // Every route: filed by its own kind of user, decided only by its authority.
    let routes = [
        (
            RequesterKind::EselonI,
            Role::EselonI,
            Role::PusdatinAdmin,
            "",
        ),
        (RequesterKind::Kl, Role::KlUser, Role::Minister, ""),
        (
            RequesterKind::Pemda,
            Role::PemdaUser,
            Role::DataOfficial,
            "32.04",
        ),
        (RequesterKind::Public, Role::Public, Role::Ppid, ""),
    ];
    for (kind, filer, authority, region) in routes {
        let filer_token = stack.token_for("requester-1", filer, region);
        let filed = file(&mut client, &filer_token, new_request(kind, region, 86_400)).await?;
        assert_eq!(filed.status, RequestStatus::Pending as i32, "{kind:?}");
        assert_eq!(filed.approver_role, authority.as_str(), "{kind:?}");
        assert_eq!(filed.requested_by, "requester-1");
        // Any other approver is refused, the filer included; the request stays pending.
        for wrong in [
            Role::Minister,
            Role::DataOfficial,
            Role::Ppid,
            Role::PusdatinAdmin,
            filer,
        ] {
            if wrong == authority {
                continue;
            }
            // A regional role's token names its region.
            let region = if wrong.reach() == dtks_platform::access::Reach::National {
                ""
            } else {
                "32.04"
            };
            let refused = decide(
                &mut client,
                &stack.token(wrong, region),
                "approve",
                &filed.request_id,
                "",
            )
            .await
            .expect_err("a wrong approver is refused");
            assert!(
                matches!(refused.code(), Code::PermissionDenied | Code::NotFound),
                "{kind:?} approved by {wrong:?}: {refused:?}"
            );
        }
        let approved = decide(
            &mut client,
            &stack.token(authority, ""),
            "approve",
            &filed.request_id,
            "",
        )
        .await?;
        assert_eq!(approved.status, RequestStatus::Approved as i32, "{kind:?}");
        assert_eq!(approved.decided_by, "e2e-officer");
    }
    assert_eq!(requests().await?, 4);

    // A request of another kind than the filer's role is refused, as is one outside the
    // filer's region; nothing is stored.
    let kl = stack.token_for("kl-1", Role::KlUser, "");
    let pemda = stack.token_for("pemda-1", Role::PemdaUser, "32.04");
    let refused = file(
        &mut client,
        &kl,
        new_request(RequesterKind::EselonI, "", 86_400),
    )
    .await
    .expect_err("wrong kind");
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    for region in ["33.01", ""] {
        let refused = file(
            &mut client,
            &pemda,
            new_request(RequesterKind::Pemda, region, 86_400),
        )
        .await
        .expect_err("outside the region");
        assert_eq!(
            refused.code(),
            Code::PermissionDenied,
            "{region}: {refused:?}"
        );
    }
    // A malformed region code is refused at the edge, before any rule of the request.
    let mut malformed = new_request(RequesterKind::Kl, "32.99.zz", 86_400);
    malformed.data_kinds.push(999);
    let refused = file(&mut client, &kl, malformed)
        .await
        .expect_err("malformed");
    assert_eq!(refused.code(), Code::InvalidArgument);
    let named = fields(&refused);
    assert!(named.iter().any(|f| f == "region_code"), "{named:?}");
    assert!(
        named.iter().any(|f| f.starts_with("data_kinds[")),
        "{named:?}"
    );
    // Every bad field of a well-formed request named at once.
    let mut bad = new_request(RequesterKind::Kl, "32.99", 86_400);
    bad.purpose = "  ".into();
    bad.data_kinds = vec![DataKind::Address as i32, DataKind::Address as i32, 0];
    bad.use_until = at(-120);
    let refused = file(&mut client, &kl, bad).await.expect_err("bad request");
    assert_eq!(refused.code(), Code::InvalidArgument);
    let named = fields(&refused);
    for field in ["purpose", "data_kinds[1]", "data_kinds[2]", "use_until"] {
        assert!(named.iter().any(|f| f == field), "{field} in {named:?}");
    }
    let mut long = new_request(RequesterKind::Kl, "", 400 * 86_400);
    long.data_kinds.clear();
    let refused = file(&mut client, &kl, long).await.expect_err("too long");
    assert_eq!(fields(&refused), ["data_kinds", "use_until"], "{refused:?}");
    assert_eq!(requests().await?, 4);

    // Rejection needs a reason; a rejected request is not approved later.
    let minister = stack.token(Role::Minister, "");
    let filed = file(&mut client, &kl, new_request(RequesterKind::Kl, "", 86_400)).await?;
    let refused = decide(&mut client, &minister, "reject", &filed.request_id, " ")
        .await
        .expect_err("no reason");
    assert_eq!(fields(&refused), ["reason"]);
    let rejected = decide(
        &mut client,
        &minister,
        "reject",
        &filed.request_id,
        "The purpose does not need identity data",
    )
    .await?;
    assert_eq!(rejected.status, RequestStatus::Rejected as i32);
    assert_eq!(
        rejected.decision_reason,
        "The purpose does not need identity data"
    );
    let refused = decide(&mut client, &minister, "approve", &filed.request_id, "")
        .await
        .expect_err("rejected stays rejected");
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert!(
        refused.message().contains("REQUEST_STATUS_REJECTED"),
        "{refused:?}"
    );

    // Handover minutes: only once approved, only by the officer who filed, with the
    // obligations acknowledged; the same minutes again change nothing.
    let filed = file(&mut client, &kl, new_request(RequesterKind::Kl, "", 86_400)).await?;
    let minutes = |obligations: bool| RecordHandoverRequest {
        request_id: filed.request_id.clone(),
        minutes_number: "BA-017/PUSDATIN/XI".into(),
        minutes_date: Some(dtks_e2e::time::date_from_today(-2)),
        obligations_acknowledged: obligations,
    };
    let refused = client
        .record_handover(authed(minutes(true), &kl))
        .await
        .expect_err("not approved yet");
    assert_eq!(refused.code(), Code::FailedPrecondition);
    decide(&mut client, &minister, "approve", &filed.request_id, "").await?;
    let refused = client
        .record_handover(authed(minutes(false), &kl))
        .await
        .expect_err("obligations not acknowledged");
    assert_eq!(fields(&refused), ["obligations_acknowledged"]);
    let colleague = stack.token_for("kl-2", Role::KlUser, "");
    let refused = client
        .record_handover(authed(minutes(true), &colleague))
        .await
        .expect_err("another officer");
    assert_eq!(refused.code(), Code::NotFound, "{refused:?}");
    let handed = client
        .record_handover(authed(minutes(true), &kl))
        .await?
        .into_inner();
    assert!(handed.handover_acknowledged);
    assert_eq!(handed.handover_minutes_number, "BA-017/PUSDATIN/XI");
    let again = client
        .record_handover(authed(minutes(true), &kl))
        .await?
        .into_inner();
    assert_eq!(again, handed);

    // Revocation needs a reason and ends the request.
    let refused = decide(&mut client, &minister, "revoke", &filed.request_id, "")
        .await
        .expect_err("no reason");
    assert_eq!(fields(&refused), ["reason"]);
    let revoked = decide(
        &mut client,
        &minister,
        "revoke",
        &filed.request_id,
        "Data passed to a third party",
    )
    .await?;
    assert_eq!(revoked.status, RequestStatus::Revoked as i32);
    // Its history: filed, approved, handed over, revoked, by whom.
    let actions = stack
        .db
        .query_all_raw(sea_orm::Statement::from_sql_and_values(
            sea_orm::DatabaseBackend::Postgres,
            "SELECT action, role FROM distribution.data_request_history WHERE request_id = $1::uuid ORDER BY at",
            [filed.request_id.clone().into()],
        ))
        .await?
        .iter()
        .map(|r| {
            Ok(format!(
                "{} by {}",
                r.try_get::<String>("", "action")?,
                r.try_get::<String>("", "role")?
            ))
        })
        .collect::<Result<Vec<_>, sea_orm::DbErr>>()?;
    assert_eq!(
        actions,
        [
            "filed by kl_user",
            "approve by minister",
            "handover by kl_user",
            "revoke by minister"
        ]
    );

    // A request whose period of use ends is expired from that moment: it reads so, and
    // it can no longer be revoked.
    let short = file(&mut client, &kl, new_request(RequesterKind::Kl, "", 2)).await?;
    decide(&mut client, &minister, "approve", &short.request_id, "").await?;
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    let read = client
        .get_data_request(authed(
            GetDataRequestRequest {
                request_id: short.request_id.clone(),
            },
            &kl,
        ))
        .await?
        .into_inner();
    assert_eq!(read.status, RequestStatus::Expired as i32);
    let refused = decide(&mut client, &minister, "revoke", &short.request_id, "late")
        .await
        .expect_err("expired");
    assert!(
        refused.message().contains("REQUEST_STATUS_EXPIRED"),
        "{refused:?}"
    );
    // Nobody else learns that it exists.
    let refused = client
        .get_data_request(authed(
            GetDataRequestRequest {
                request_id: short.request_id.clone(),
            },
            &stack.token_for("pemda-1", Role::PemdaUser, "32.04"),
        ))
        .await
        .expect_err("unrelated officer");
    assert_eq!(refused.code(), Code::NotFound);

    // Finding 5: ownership was by subject alone, so a kl_user token naming a pemda
    // filer's subject read the request. The filer is issuer, role, region and subject.
    let pemda = stack.token_for("filer-3204", Role::PemdaUser, "32.04");
    let theirs = file(
        &mut client,
        &pemda,
        new_request(RequesterKind::Pemda, "32.04", 86_400),
    )
    .await?;
    let read = |token: String| {
        let mut client = client.clone();
        let id = theirs.request_id.clone();
        async move {
            client
                .get_data_request(authed(GetDataRequestRequest { request_id: id }, &token))
                .await
        }
    };
    assert!(read(pemda.clone()).await.is_ok());
    for (role, region) in [
        (Role::KlUser, ""),
        (Role::PemdaUser, "32.73"),
        (Role::Public, ""),
        (Role::EselonI, ""),
    ] {
        let refused = read(stack.token_for("filer-3204", role, region))
            .await
            .expect_err("someone else with the same subject");
        assert!(
            matches!(refused.code(), Code::NotFound | Code::PermissionDenied),
            "{role:?}: {refused:?}"
        );
    }
    Ok(())
}
