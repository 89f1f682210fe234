//! Matching through a civil-registry outage: the proposal waits, is retried with backoff,
//! is reported as delayed, and is matched once the registry is back — never failed,
//! never dead-lettered.

use dtks_e2e::{Stack, authed};
use dtks_platform::auth::Role;
use dtks_proto::events::v1::HouseholdOutcome;
use dtks_proto::matching::v1::{
    GetProposalMatchRequest, matching_service_client::MatchingServiceClient,
};
use sea_orm::ConnectionTrait;

use super::{REGISTRY, VILLAGE, count, submit_musdes};

/// Waits until the one pending proposal's stored reason satisfies `test`; answers its
/// attempts and reason.
async fn delayed(
    stack: &Stack,
    what: &str,
    test: impl Fn(&str) -> bool,
) -> anyhow::Result<(i32, String)> {
    let seen = std::sync::Mutex::new(String::new());
    let found = stack
        .eventually(60, what, || {
            let db = stack.db.clone();
            let (test, seen) = (&test, &seen);
            async move {
                let row = db
                    .query_one_raw(dtks_platform::db::stmt(
                        "SELECT attempts, last_error FROM matching.pending",
                        [],
                    ))
                    .await?;
                Ok(row.and_then(|r| {
                    let attempts: i32 = r.try_get("", "attempts").ok()?;
                    let error: Option<String> = r.try_get("", "last_error").ok()?;
                    let error = error.unwrap_or_default();
                    *seen.lock().expect("seen") = format!("{attempts} attempts: {error}");
                    (attempts >= 1 && test(&error)).then_some((attempts, error))
                }))
            }
        })
        .await;
    found.map_err(|e| e.context(format!("last seen: {}", seen.lock().expect("seen"))))
}

/// Waits (through UNAVAILABLE and NOT_FOUND answers) until the proposal has a match
/// result.
pub(crate) async fn matched(
    stack: &Stack,
    proposal_id: &str,
    token: &str,
) -> anyhow::Result<dtks_proto::events::v1::ProposalMatched> {
    let matching = MatchingServiceClient::new(stack.channel("matching").await?);
    stack
        .eventually(120, "the proposal to be matched", || {
            let mut matching = matching.clone();
            let request = authed(
                GetProposalMatchRequest {
                    proposal_id: proposal_id.to_owned(),
                },
                token,
            );
            async move {
                match matching.get_proposal_match(request).await {
                    Ok(answer) => Ok(Some(answer.into_inner())),
                    // Delayed, or not matched yet.
                    Err(status)
                        if matches!(
                            status.code(),
                            tonic::Code::Unavailable | tonic::Code::NotFound
                        ) =>
                    {
                        Ok(None)
                    }
                    Err(status) => Err(status.into()),
                }
            }
        })
        .await
}

#[tokio::test]
async fn a_registry_outage_delays_matching_and_loses_nothing() -> anyhow::Result<()> {
    let mut stack = Stack::start_services(REGISTRY, &["intake", "matching"], &[]).await?;
    let operator = stack.token(Role::VillageOperator, VILLAGE);
    stack.stop_registry().await?;

    let submitted = submit_musdes(&stack, &operator, "outage-001", "OUTAGE-0001").await?;

    // The proposal waits in `pending`, its attempts counted, with a reason that names
    // no person.
    let attempts = delayed(&stack, "a failed matching attempt", |_| true).await?;
    assert!(attempts.1.contains("civil registry"), "{}", attempts.1);
    for nik in [super::HEAD_NIK, super::SPOUSE_NIK, super::CHILD_NIK] {
        assert!(!attempts.1.contains(nik), "a NIK in the stored reason");
    }
    assert_eq!(
        count(&stack, "SELECT count(*) AS n FROM matching.match_results").await?,
        0
    );
    // The event was received, not failed: the inbox holds it and nothing was published.
    assert_eq!(
        count(&stack, "SELECT count(*) AS n FROM matching.inbox").await?,
        1
    );
    assert_eq!(
        count(&stack, "SELECT count(*) AS n FROM matching.outbox").await?,
        0
    );

    // Downstream systems are told it is delayed, not lost.
    let mut matching = MatchingServiceClient::new(stack.channel("matching").await?);
    let status = matching
        .get_proposal_match(authed(
            GetProposalMatchRequest {
                proposal_id: submitted.proposal_id.clone(),
            },
            &operator,
        ))
        .await
        .expect_err("no result during the outage");
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    assert!(
        status.message().contains("attempts"),
        "{}",
        status.message()
    );

    // The registry comes back: the proposal is matched, once, and leaves `pending`.
    stack.start_registry().await?;
    let result = matched(&stack, &submitted.proposal_id, &operator).await?;
    assert_eq!(result.outcome, HouseholdOutcome::AllMatched as i32);
    assert_eq!(
        count(&stack, "SELECT count(*) AS n FROM matching.pending").await?,
        0
    );
    assert_eq!(
        count(&stack, "SELECT count(*) AS n FROM matching.match_results").await?,
        1
    );
    assert_eq!(
        count(
            &stack,
            "SELECT count(*) AS n FROM matching.outbox WHERE event_type = 'proposal.matched'"
        )
        .await?,
        1
    );
    Ok(())
}

#[tokio::test]
async fn malformed_and_slow_answers_delay_matching_until_the_registry_answers_well()
-> anyhow::Result<()> {
    let mut stack = Stack::start_services(REGISTRY, &["intake", "matching"], &[]).await?;
    let operator = stack.token(Role::VillageOperator, VILLAGE);
    stack.stop_registry().await?;
    stack.start_registry_with_fault("malformed").await?;
    let submitted = submit_musdes(&stack, &operator, "faults-001", "FAULTS-0001").await?;
    delayed(&stack, "a malformed answer to be refused", |e| {
        e.contains("malformed")
    })
    .await?;

    stack.stop_registry().await?;
    stack.start_registry_with_fault("slow").await?;
    delayed(&stack, "a slow answer to time out", |e| {
        e.contains("no answer within")
    })
    .await?;
    assert_eq!(
        count(&stack, "SELECT count(*) AS n FROM matching.match_results").await?,
        0
    );

    stack.stop_registry().await?;
    stack.start_registry().await?;
    let result = matched(&stack, &submitted.proposal_id, &operator).await?;
    assert_eq!(result.outcome, HouseholdOutcome::AllMatched as i32);
    assert_eq!(
        count(&stack, "SELECT count(*) AS n FROM matching.pending").await?,
        0
    );
    Ok(())
}
