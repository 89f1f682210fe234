//! Instant revocation: an officer's token works, the officer is replaced
//! (`dtksctl officer revoke`), and within one second every service refuses that token —
//! long before it would expire — while other officers' tokens, and a token the officer
//! is given afterwards, keep working.

use std::time::{Duration, Instant};

use dtks_e2e::{Stack, authed};
use dtks_platform::auth::Role;
use dtks_proto::reporting::v1::RegionQuery;
use dtks_proto::reporting::v1::reporting_service_client::ReportingServiceClient;
use dtks_proto::verivali::v1::ListCasesRequest;
use dtks_proto::verivali::v1::verivali_service_client::VerivaliServiceClient;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_token_is_refused_everywhere_within_a_second() -> anyhow::Result<()> {
    let stack = Stack::start_services(super::REGISTRY, &["verivali", "reporting"], &[]).await?;
    let mut reporting = ReportingServiceClient::new(stack.channel("reporting").await?);
    let mut verivali = VerivaliServiceClient::new(stack.channel("verivali").await?);
    let replaced = stack.token_for("officer-3204-07", Role::RegencyOfficer, "32.04");
    let colleague = stack.token_for("officer-3204-08", Role::RegencyOfficer, "32.04");
    let summary = |token: &str| {
        authed(
            RegionQuery {
                region_code: "32.04".into(),
                ..Default::default()
            },
            token,
        )
    };
    let cases = |token: &str| {
        authed(
            ListCasesRequest {
                region_code: "32.04".into(),
                ..Default::default()
            },
            token,
        )
    };
    reporting.get_pipeline_summary(summary(&replaced)).await?;
    verivali.list_cases(cases(&replaced)).await?;

    let (code, out, err) = stack
        .dtksctl(
            "",
            &[
                "officer",
                "revoke",
                "officer-3204-07",
                "--redis-url",
                &std::env::var("DTKS_REDIS__URL")
                    .unwrap_or_else(|_| "redis://127.0.0.1:6379/".into()),
                "--redis-namespace",
                &format!("e2e.{}", stack.run_id),
            ],
        )
        .await?;
    assert_eq!(code, 0, "{out}{err}");
    let revoked = Instant::now();
    // Both services refuse the token within a second.
    loop {
        let a = reporting.get_pipeline_summary(summary(&replaced)).await;
        let b = verivali.list_cases(cases(&replaced)).await;
        if let (Err(a), Err(b)) = (&a, &b) {
            assert_eq!(
                (a.code(), b.code()),
                (tonic::Code::Unauthenticated, tonic::Code::Unauthenticated)
            );
            assert!(a.message().contains("revoked"), "{a:?}");
            break;
        }
        assert!(
            revoked.elapsed() < Duration::from_secs(1),
            "still accepted {:?} after the revocation",
            revoked.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let took = revoked.elapsed();
    println!("revocation took effect in {} ms", took.as_millis());
    // A colleague is not affected.
    reporting.get_pipeline_summary(summary(&colleague)).await?;
    verivali.list_cases(cases(&colleague)).await?;
    // The officer's new assignment: a token issued after the revocation works.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let renewed = stack.token_for("officer-3204-07", Role::RegencyOfficer, "32.04");
    reporting.get_pipeline_summary(summary(&renewed)).await?;
    Ok(())
}
