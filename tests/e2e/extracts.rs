//! The extract of an approved data request, over a determined month of 5,000
//! households: only the approved kinds of data leave, the public sees NIK and names
//! masked, a regency's government gets its regency only, a revocation or the end of the period of use stops a delivery between two
//! batches (long before its end: the transport holds only so many batches ahead), and
//! every delivery is audited.

use dtks_e2e::{Stack, authed, count};
use dtks_platform::auth::Role;
use dtks_proto::common::v1 as pb;
use dtks_proto::determination::v1::DetermineRequest;
use dtks_proto::determination::v1::determination_service_client::DeterminationServiceClient;
use dtks_proto::distribution::v1::distribution_service_client::DistributionServiceClient;
use dtks_proto::distribution::v1::*;
use tonic::Code;

const HOUSEHOLDS: u64 = 5_000;

type Client = DistributionServiceClient<tonic::transport::Channel>;

/// The month the run's cases are accepted in, from the services' clock.
fn period() -> pb::Period {
    dtks_e2e::time::period()
}

/// Files, approves and hands over a request; answers its id.
async fn approved(
    client: &mut Client,
    stack: &Stack,
    (kind, filer, authority): (RequesterKind, Role, Role),
    kinds: &[DataKind],
    until_seconds: i64,
) -> anyhow::Result<String> {
    approved_in(
        client,
        stack,
        (kind, filer, authority),
        "",
        kinds,
        until_seconds,
    )
    .await
}

/// As [`approved`], for a request (and a filing officer) limited to `region`.
async fn approved_in(
    client: &mut Client,
    stack: &Stack,
    (kind, filer, authority): (RequesterKind, Role, Role),
    region: &str,
    kinds: &[DataKind],
    until_seconds: i64,
) -> anyhow::Result<String> {
    let token = stack.token_for("requester", filer, region);
    let now = dtks_e2e::time::now().timestamp();
    let filed = client
        .create_data_request(authed(
            CreateDataRequestRequest {
                requester_kind: kind as i32,
                requester: "Badan Pusat Statistik".into(),
                purpose: "Cross-check poverty estimates".into(),
                region_code: region.into(),
                data_kinds: kinds.iter().map(|k| *k as i32).collect(),
                use_from: Some(prost_types::Timestamp {
                    seconds: now - 60,
                    nanos: 0,
                }),
                use_until: Some(prost_types::Timestamp {
                    seconds: now + until_seconds,
                    nanos: 0,
                }),
            },
            &token,
        ))
        .await?
        .into_inner();
    client
        .approve_data_request(authed(
            DecideDataRequestRequest {
                request_id: filed.request_id.clone(),
                reason: String::new(),
            },
            &stack.token(authority, ""),
        ))
        .await?;
    client
        .record_handover(authed(
            RecordHandoverRequest {
                request_id: filed.request_id.clone(),
                minutes_number: "BA-1".into(),
                minutes_date: Some(dtks_e2e::time::date_from_today(-1)),
                obligations_acknowledged: true,
            },
            &token,
        ))
        .await?;
    Ok(filed.request_id)
}

/// Reads a stream to its end: the households received, and the error it ended with.
async fn drain(stream: &mut tonic::Streaming<RecipientBatch>) -> (u64, Option<tonic::Status>) {
    let mut received = 0;
    loop {
        match stream.message().await {
            Ok(Some(batch)) => received += batch.recipients.len() as u64,
            Ok(None) => return (received, None),
            Err(e) => return (received, Some(e)),
        }
    }
}

fn extract(request_id: &str, batch_size: u32) -> StreamExtractRequest {
    StreamExtractRequest {
        request_id: request_id.into(),
        cursor: String::new(),
        batch_size,
        period: Some(period()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extracts_carry_only_what_was_approved_and_stop_when_the_request_ends() -> anyhow::Result<()>
{
    let stack =
        Stack::start_services(super::REGISTRY, &["determination", "distribution"], &[]).await?;
    {
        use sqlx::Connection;
        let mut conn = sqlx::PgConnection::connect(&stack.database_url).await?;
        dtks_e2e::fill_registry(&mut conn, 0, HOUSEHOLDS).await?;
    }
    DeterminationServiceClient::new(stack.channel("determination").await?)
        .determine(authed(
            DetermineRequest {
                period: Some(period()),
            },
            &stack.token(Role::PusdatinAdmin, ""),
        ))
        .await?;
    // A client that takes 64 KiB at a time, as a slow link would: the service can run
    // only so far ahead of what the client has read.
    let channel = stack.narrow_channel("distribution", 64 * 1024).await?;
    let mut client = DistributionServiceClient::new(channel);
    let kl = stack.token_for("requester", Role::KlUser, "");
    let public = stack.token_for("requester", Role::Public, "");

    // A ministry asked for identity, rank and dwelling: it gets exactly those.
    let kl_route = (RequesterKind::Kl, Role::KlUser, Role::Minister);
    let id = approved(
        &mut client,
        &stack,
        kl_route,
        &[
            DataKind::Identity,
            DataKind::WelfareRank,
            DataKind::Dwelling,
        ],
        86_400,
    )
    .await?;
    let mut stream = client
        .stream_extract(authed(extract(&id, 10), &kl))
        .await?
        .into_inner();
    let first = stream.message().await?.expect("a batch");
    let r = &first.recipients[0];
    assert_eq!(r.head_nik.len(), 16);
    assert!(!r.head_nik.contains('*') && !r.head_name.contains('*'));
    assert!(r.national_rank == 1 && r.decile >= 1);
    let record = r.household.as_ref().expect("the record, cut down");
    assert!(record.dwelling.is_some());
    let p = &record.families[0].members[0];
    assert!(
        !p.nik.is_empty() && p.birth_date.is_none() && p.health.is_none() && p.monthly_income == 0
    );
    // Revoked between two batches: the next one is refused.
    client
        .revoke_data_request(authed(
            DecideDataRequestRequest {
                request_id: id.clone(),
                reason: "Passed to a third party".into(),
            },
            &stack.token(Role::Minister, ""),
        ))
        .await?;
    let (received, stopped) = drain(&mut stream).await;
    assert!(
        received < HOUSEHOLDS,
        "the delivery stopped early: {received}"
    );
    let stopped = stopped.expect("revoked mid-stream");
    assert_eq!(stopped.code(), Code::FailedPrecondition);
    assert!(stopped.message().contains("REVOKED"), "{stopped:?}");
    let refused = client
        .stream_extract(authed(extract(&id, 10), &kl))
        .await
        .expect_err("revoked");
    assert_eq!(refused.code(), Code::FailedPrecondition);

    // The public asked for identity and demographics: names and NIK come masked, no rank.
    let public_route = (RequesterKind::Public, Role::Public, Role::Ppid);
    let id = approved(
        &mut client,
        &stack,
        public_route,
        &[DataKind::Identity, DataKind::Demographic],
        86_400,
    )
    .await?;
    // Only the officer who filed receives it.
    let refused = client
        .stream_extract(authed(
            extract(&id, 10),
            &stack.token_for("someone-else", Role::Public, ""),
        ))
        .await
        .expect_err("not the requester");
    assert_eq!(refused.code(), Code::NotFound);
    let mut stream = client
        .stream_extract(authed(extract(&id, 10), &public))
        .await?
        .into_inner();
    let mut all = Vec::new();
    while let Some(batch) = stream.message().await? {
        all.extend(batch.recipients);
    }
    assert_eq!(all.len() as u64, HOUSEHOLDS);
    for r in &all {
        assert!(r.head_nik.contains("********"), "{}", r.head_nik);
        assert!(r.head_name.contains('*'));
        assert_eq!((r.national_rank, r.decile), (0, 0));
        let p = &r.household.as_ref().expect("record").families[0].members[0];
        assert!(p.nik.contains('*') && p.birth_date.is_some());
    }

    // A regency's government asked for the welfare ranking of its regency: only its
    // households, with rank and decile, and nothing that names anyone.
    let pemda_route = (RequesterKind::Pemda, Role::PemdaUser, Role::DataOfficial);
    let id = approved_in(
        &mut client,
        &stack,
        pemda_route,
        "32.03",
        &[DataKind::WelfareRank],
        86_400,
    )
    .await?;
    let pemda = stack.token_for("requester", Role::PemdaUser, "32.03");
    let mut stream = client
        .stream_extract(authed(extract(&id, 100), &pemda))
        .await?
        .into_inner();
    let mut all = Vec::new();
    while let Some(batch) = stream.message().await? {
        all.extend(batch.recipients);
    }
    // The synthetic population spreads its households evenly over ten regencies.
    assert_eq!(all.len() as u64, HOUSEHOLDS / 10);
    for r in &all {
        assert!(r.region_code.starts_with("32.03."), "{}", r.region_code);
        assert!(r.national_rank > 0 && r.decile >= 1);
        assert!(r.head_nik.is_empty() && r.head_name.is_empty() && r.household.is_none());
    }

    // A period of use that ends mid-delivery stops it too.
    let everything = [
        DataKind::Identity,
        DataKind::Address,
        DataKind::Demographic,
        DataKind::SocioEconomic,
        DataKind::Dwelling,
        DataKind::Health,
    ];
    let id = approved(&mut client, &stack, kl_route, &everything, 3).await?;
    let mut stream = client
        .stream_extract(authed(extract(&id, 10), &kl))
        .await?
        .into_inner();
    let first = stream.message().await?.expect("a batch");
    assert!(
        first.recipients[0].household.is_some() && first.recipients[0].national_rank == 0,
        "the whole record, but no rank"
    );
    tokio::time::sleep(std::time::Duration::from_millis(3200)).await;
    let (received, stopped) = drain(&mut stream).await;
    assert!(
        received < HOUSEHOLDS,
        "the delivery stopped early: {received}"
    );
    let stopped = stopped.expect("expired mid-stream");
    assert!(stopped.message().contains("EXPIRED"), "{stopped:?}");

    // Every delivery audited: four started, two finished (the public's, every row, and
    // the regency's, a tenth).
    assert_eq!(
        count(
            &stack,
            "SELECT count(*) AS n FROM distribution.deliveries WHERE request_id IS NOT NULL"
        )
        .await?,
        4
    );
    assert_eq!(count(&stack, "SELECT coalesce(sum(rows), 0)::bigint AS n FROM distribution.deliveries WHERE finished_at IS NOT NULL").await?, (HOUSEHOLDS + HOUSEHOLDS / 10) as i64);
    Ok(())
}
