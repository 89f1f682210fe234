//! Input limits at the door: one officer's calls beyond the per-second rate are refused
//! with RESOURCE_EXHAUSTED and a retry delay before any work, while other officers and
//! the services' own calls go on; a message above the size limit is refused before it is
//! decoded, and nothing of it is stored.

use dtks_e2e::{Stack, authed, count};
use dtks_platform::auth::Role;
use dtks_proto::intake::v1::intake_service_client::IntakeServiceClient;
use dtks_proto::reporting::v1::RegionQuery;
use dtks_proto::reporting::v1::reporting_service_client::ReportingServiceClient;
use tonic::Code;
use tonic_types::StatusExt;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_and_an_oversized_message_are_refused_at_the_door() -> anyhow::Result<()> {
    let stack = Stack::start_services(
        super::REGISTRY,
        &["intake", "reporting", "determination"],
        &[
            ("DTKS_LIMITS__CALLS_PER_SECOND", "5"),
            ("DTKS_LIMITS__CALL_BURST", "10"),
        ],
    )
    .await?;
    let mut reporting = ReportingServiceClient::new(stack.channel("reporting").await?);
    let flooding = stack.token_for("script-3204", Role::RegencyOfficer, "32.04");
    let colleague = stack.token_for("officer-3204", Role::RegencyOfficer, "32.04");
    let service = stack.token_for("distribution", Role::Service, "");
    let query = || RegionQuery {
        region_code: "32.04".into(),
        ..Default::default()
    };
    let (mut answered, mut refused) = (0, 0);
    for _ in 0..40 {
        match reporting
            .get_pipeline_summary(authed(query(), &flooding))
            .await
        {
            Ok(_) => answered += 1,
            Err(status) => {
                assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
                let retry = status
                    .get_details_retry_info()
                    .and_then(|r| r.retry_delay)
                    .expect("a retry delay");
                assert!(retry.as_millis() <= 200, "{retry:?}");
                refused += 1;
            }
        }
    }
    println!("40 calls at once: {answered} answered, {refused} refused");
    // The burst of 10, and what refilled at 5/s while the calls ran.
    assert!((10..20).contains(&answered), "{answered} answered");
    assert!(refused >= 20, "{refused} refused");
    reporting
        .get_pipeline_summary(authed(query(), &colleague))
        .await?;
    // The services' own calls are not counted (the month is not determined: NOT_FOUND).
    let mut determination =
        dtks_proto::determination::v1::determination_service_client::DeterminationServiceClient::new(
            stack.channel("determination").await?,
        );
    for _ in 0..20 {
        let answer = determination
            .get_snapshot(authed(
                dtks_proto::determination::v1::GetSnapshotRequest {
                    period: Some(dtks_e2e::time::period()),
                },
                &service,
            ))
            .await;
        assert!(
            !matches!(&answer, Err(s) if s.code() == Code::ResourceExhausted),
            "{answer:?}"
        );
    }

    // A proposal of 2 MiB (the limit is 1 MiB): refused before decoding; nothing stored.
    let mut intake = IntakeServiceClient::new(stack.channel("intake").await?)
        .max_encoding_message_size(8 * 1024 * 1024);
    let mut household = super::household();
    household.address.as_mut().expect("address").street = "x".repeat(2 * 1024 * 1024);
    let operator = stack.token(Role::VillageOperator, super::VILLAGE);
    let refused = intake
        .submit_proposal(authed(
            dtks_proto::intake::v1::SubmitProposalRequest {
                idempotency_key: "oversized".into(),
                ..super::musdes("OVERSIZED", household)
            },
            &operator,
        ))
        .await
        .expect_err("too large");
    assert_eq!(refused.code(), Code::OutOfRange, "{refused:?}");
    assert_eq!(
        count(&stack, "SELECT count(*)::bigint AS n FROM intake.proposals").await?,
        0
    );
    Ok(())
}
