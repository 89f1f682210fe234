//! A proposal withdrawn at intake ends its case (finding 8 of the hardening probe: the
//! case went on to ACCEPTED and the household into the master registry while intake
//! showed WITHDRAWN), and a match that reaches verivali after the withdrawal opens none.

use dtks_e2e::{Stack, authed, count, count_becomes};
use dtks_platform::auth::Role;
use dtks_proto::events::v1::Envelope;
use dtks_proto::intake::v1::WithdrawProposalRequest;
use dtks_proto::intake::v1::intake_service_client::IntakeServiceClient;
use prost::Message;
use sea_orm::ConnectionTrait;

use super::{REGISTRY, VILLAGE, household, submit_household};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_withdrawn_proposal_closes_its_case_and_a_late_match_opens_none() -> anyhow::Result<()> {
    // Cases wait for officers: nothing walks them to acceptance behind the test's back.
    let stack = Stack::start_services(
        REGISTRY,
        &["intake", "matching", "verivali"],
        &[("DTKS_DEMO_AUTO_APPROVE", "false")],
    )
    .await?;
    let operator = stack.token(Role::VillageOperator, VILLAGE);
    let submitted = submit_household(&stack, &operator, "wd-1", "WD-1", household()).await?;
    count_becomes(
        &stack,
        30,
        "SELECT count(*)::bigint AS n FROM verivali.cases WHERE state = 1",
        1,
    )
    .await?;

    IntakeServiceClient::new(stack.channel("intake").await?)
        .withdraw_proposal(authed(
            WithdrawProposalRequest {
                proposal_id: submitted.proposal_id.clone(),
                reason: "the family moved away".into(),
            },
            &operator,
        ))
        .await?;
    count_becomes(
        &stack,
        30,
        "SELECT count(*)::bigint AS n FROM verivali.cases WHERE state = 8",
        1,
    )
    .await?;
    assert_eq!(
        count(
            &stack,
            "SELECT count(*)::bigint AS n FROM verivali.case_history WHERE to_state = 8 AND note LIKE 'withdrawn%'"
        )
        .await?,
        1
    );

    // The match again, as a redelivery or a late arrival would bring it: no case opens
    // and the closed one stays closed.
    let row = stack
        .db
        .query_one_raw(dtks_platform::db::stmt(
            "SELECT envelope FROM matching.outbox WHERE event_type = 'proposal.matched'",
            [],
        ))
        .await?
        .ok_or_else(|| anyhow::anyhow!("no match was published"))?;
    let mut again = Envelope::decode(row.try_get::<Vec<u8>>("", "envelope")?.as_slice())?;
    again.event_id = uuid::Uuid::now_v7().to_string();
    let bus = dtks_platform::bus::Bus::connect(&stack.bus_config()).await?;
    bus.publisher().await?.publish_all(&[again.clone()]).await?;
    count_becomes(
        &stack,
        30,
        &format!(
            "SELECT count(*)::bigint AS n FROM verivali.inbox WHERE event_id = '{}'",
            again.event_id
        ),
        1,
    )
    .await?;
    assert_eq!(
        count(&stack, "SELECT count(*)::bigint AS n FROM verivali.cases").await?,
        1
    );
    assert_eq!(
        count(
            &stack,
            "SELECT count(*)::bigint AS n FROM verivali.cases WHERE state = 8"
        )
        .await?,
        1
    );
    Ok(())
}
