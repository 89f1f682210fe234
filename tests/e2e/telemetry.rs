//! One trace across the whole pipeline, exported over OTLP to a receiver inside the
//! test: a proposal submitted and a month determined and listed under one trace context
//! reach all six services — matching, verivali and reporting only through events, so
//! the context travels in the messages — and no span and no log line (every service at
//! `info`) carries a NIK or a name; every
//! stage exports its metrics and reporting its business gauges.

use dtks_e2e::{OtlpReceiver, SERVICES, Stack, authed, count};
use dtks_platform::auth::Role;
use dtks_proto::determination::v1::DetermineRequest;
use dtks_proto::determination::v1::determination_service_client::DeterminationServiceClient;
use dtks_proto::distribution::v1::BuildListRequest;
use dtks_proto::distribution::v1::distribution_service_client::DistributionServiceClient;
use dtks_proto::intake::v1::intake_service_client::IntakeServiceClient;

/// A request under the test's own trace (`traceparent` as a W3C caller sends it).
fn traced<T>(message: T, token: &str, traceparent: &str) -> tonic::Request<T> {
    let mut request = authed(message, token);
    request
        .metadata_mut()
        .insert("traceparent", traceparent.parse().expect("ascii"));
    request
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_trace_follows_a_proposal_through_every_service() -> anyhow::Result<()> {
    let (receiver, endpoint) = OtlpReceiver::start().await?;
    let logs =
        std::env::temp_dir().join(format!("dtks-e2e-logs-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&logs)?;
    let log_dir = logs.display().to_string();
    let stack = Stack::start_services(
        super::REGISTRY,
        SERVICES,
        &[
            (dtks_e2e::LOG_DIR, &log_dir),
            ("RUST_LOG", "info"),
            ("DTKS_TELEMETRY__OTLP_ENDPOINT", &endpoint),
            ("OTEL_BSP_SCHEDULE_DELAY", "200"),
            ("OTEL_METRIC_EXPORT_INTERVAL", "500"),
            ("DTKS_REPORTING_GAUGE_SECONDS", "1"),
        ],
    )
    .await?;
    let trace_id = uuid::Uuid::new_v4().simple().to_string();
    let traceparent = format!(
        "00-{trace_id}-{}-01",
        &uuid::Uuid::new_v4().simple().to_string()[..16]
    );
    let operator = stack.token(Role::VillageOperator, super::VILLAGE);
    let admin = stack.token(Role::PusdatinAdmin, "");

    IntakeServiceClient::new(stack.channel("intake").await?)
        .submit_proposal(traced(
            dtks_proto::intake::v1::SubmitProposalRequest {
                idempotency_key: "telemetry-1".into(),
                ..super::musdes("TRACE-1", super::household())
            },
            &operator,
            &traceparent,
        ))
        .await?;
    super::summary_when(&stack, 60, "the household to be accepted", |s| {
        s.households_accepted == 1
    })
    .await?;
    let stack_ref = &stack;
    stack
        .eventually(30, "the registry to hold the household", || async move {
            let n = count(
                stack_ref,
                "SELECT count(*)::bigint AS n FROM determination.registry_households",
            )
            .await?;
            Ok((n == 1).then_some(()))
        })
        .await?;
    let period = dtks_e2e::time::period();
    DeterminationServiceClient::new(stack.channel("determination").await?)
        .determine(traced(
            DetermineRequest {
                period: Some(period),
            },
            &admin,
            &traceparent,
        ))
        .await?;
    DistributionServiceClient::new(stack.channel("distribution").await?)
        .build_list(traced(
            BuildListRequest {
                programme_code: "DTKS-D1-4".into(),
                period: Some(period),
            },
            &admin,
            &traceparent,
        ))
        .await?;

    // Every service's spans in the one trace; matching, verivali and reporting took part
    // only by consuming its events; distribution read the month from determination
    // within it.
    let receiver_ref = &receiver;
    let trace_ref = &trace_id;
    let services = stack
        .eventually(30, "the whole pipeline in one trace", || async move {
            let in_trace: Vec<_> = receiver_ref
                .spans()
                .into_iter()
                .filter(|s| s.trace_id == *trace_ref)
                .collect();
            let consumed = ["dtks-matching", "dtks-verivali", "dtks-reporting"]
                .iter()
                .all(|service| {
                    in_trace
                        .iter()
                        .any(|s| s.service == *service && s.name == "consume")
                });
            let streamed = in_trace.iter().any(|s| {
                s.service == "dtks-determination"
                    && s.attributes
                        .iter()
                        .any(|(k, v)| k == "rpc.method" && v.ends_with("/StreamSnapshot"))
            });
            let mut services: Vec<String> = in_trace.into_iter().map(|s| s.service).collect();
            services.sort();
            services.dedup();
            Ok((consumed && streamed && services.len() == SERVICES.len()).then_some(services))
        })
        .await?;
    let mut expected: Vec<String> = SERVICES.iter().map(|s| format!("dtks-{s}")).collect();
    expected.sort();
    assert_eq!(services, expected);
    let spans = receiver.spans();
    // Every stage's metrics, and the business gauges.
    let receiver_ref = &receiver;
    stack
        .eventually(30, "the metrics of every stage", || async move {
            let metrics = receiver_ref.metrics();
            let has = |service: &str, name: &str| {
                metrics
                    .iter()
                    .any(|(s, n)| s == &format!("dtks-{service}") && n == name)
            };
            Ok((has("intake", "dtks.rpc.server.duration")
                && has("intake", "dtks.outbox.lag")
                && [
                    "matching",
                    "verivali",
                    "determination",
                    "distribution",
                    "reporting",
                ]
                .iter()
                .all(|s| has(s, "dtks.events.handled"))
                && has("reporting", "dtks.registry.update_rate")
                && has("reporting", "dtks.verivali.cases")
                && has("reporting", "dtks.determination.households"))
            .then_some(()))
        })
        .await?;
    // No span names anyone.
    for span in &spans {
        let text = format!("{} {:?}", span.name, span.attributes);
        for personal in [
            super::HEAD_NIK,
            super::SPOUSE_NIK,
            "Asep",
            "Sunandar",
            "Siti Aminah",
        ] {
            assert!(
                !text.contains(personal),
                "{} carries personal data: {text}",
                span.service
            );
        }
    }
    Ok(())
}
