//! A proposal withdrawn at intake ends its case (finding 8 of the hardening probe: the
//! case went on to ACCEPTED and the household into the master registry while intake
//! showed WITHDRAWN), and a match that reaches verivali after the withdrawal opens none.

use dtks_e2e::{Stack, authed, count, count_becomes};
use dtks_platform::auth::Role;
use dtks_proto::determination::v1::determination_service_client::DeterminationServiceClient;
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

/// Withdraws `proposal_id` at intake as `token`.
async fn withdraw(
    stack: &Stack,
    token: &str,
    proposal_id: &str,
) -> Result<tonic::Response<dtks_proto::intake::v1::Proposal>, tonic::Status> {
    let mut intake = IntakeServiceClient::new(stack.channel("intake").await.expect("intake"));
    let request = WithdrawProposalRequest {
        proposal_id: proposal_id.into(),
        reason: "the family asked to withdraw".into(),
    };
    intake.withdraw_proposal(authed(request, token)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proposal_is_withdrawn_in_every_open_state_and_refused_once_decided() -> anyhow::Result<()>
{
    use super::lifecycle::{after_the_month, determine};
    use super::verivali::{
        MEN, approve, batch, minutes_today, propose, single, start_with, state_of, visit,
    };
    use dtks_proto::verivali::v1::{AssessRequest, CaseState};

    let clock = dtks_platform::clock::PausedClock::at(dtks_e2e::time::now());
    let downstream = ["determination", "distribution", "reporting"];
    let (stack, mut client, o) = start_with(&clock, &downstream).await?;
    let mut cases = Vec::new();
    for (i, (nik, ..)) in MEN.iter().enumerate().take(6) {
        cases.push(propose(&stack, &o.village, &format!("wd-all-{i}"), single(i, nik)).await?);
    }
    let ids: Vec<&String> = cases.iter().map(|(case, _)| case).collect();

    // One case left in each open state: 0 matched, 1 reviewed by the village, 2 visited,
    // 3 signed off, 4 forwarded, 5 returned to the region; then 4 is assessed below.
    let reviewed = minutes_today(&clock, ids[1..].iter().map(|id| approve(id)).collect());
    client
        .record_village_review(authed(reviewed, &o.village))
        .await?;
    for id in &ids[2..] {
        client
            .record_field_verification(authed(visit(id, true), &o.regency))
            .await?;
    }
    client
        .sign_off(authed(batch(&ids[3..], ""), &o.bupati))
        .await?;
    client
        .forward_to_ministry(authed(batch(&ids[4..], ""), &o.province))
        .await?;
    client
        .return_to_region(authed(
            batch(&ids[5..], "the KK photo is unreadable"),
            &o.ministry,
        ))
        .await?;
    let expected = [
        CaseState::Matched,
        CaseState::VillageReviewed,
        CaseState::FieldVerified,
        CaseState::SignedOff,
        CaseState::Forwarded,
        CaseState::Returned,
    ];
    for (id, state) in ids.iter().zip(expected) {
        assert_eq!(state_of(&mut client, &o.ministry, id).await?, state);
    }

    // The ministry accepts the forwarded one (4), keeping it out of what is withdrawn.
    client
        .assess(authed(
            AssessRequest {
                case_id: ids[4].clone(),
                ..Default::default()
            },
            &o.ministry,
        ))
        .await?;
    assert_eq!(
        state_of(&mut client, &o.ministry, ids[4]).await?,
        CaseState::Accepted
    );

    // Every open one is withdrawn, and its case closed with the reason.
    for i in [0, 1, 2, 3, 5] {
        withdraw(&stack, &o.village, &cases[i].1).await?;
    }
    count_becomes(
        &stack,
        60,
        "SELECT count(*)::bigint AS n FROM verivali.case_history WHERE to_state = 8 AND note LIKE '%the family asked to withdraw'",
        5,
    )
    .await?;
    for i in [0, 1, 2, 3, 5] {
        assert_eq!(
            state_of(&mut client, &o.ministry, ids[i]).await?,
            CaseState::Rejected
        );
    }

    // Once intake knows the acceptance, a withdrawal is refused, naming the status.
    let accepted = format!(
        "SELECT count(*)::bigint AS n FROM intake.proposals WHERE proposal_id = '{}' AND status = {}",
        cases[4].1,
        dtks_proto::intake::v1::ProposalStatus::Accepted as i32
    );
    count_becomes(&stack, 60, &accepted, 1).await?;
    let refused = withdraw(&stack, &o.village, &cases[4].1)
        .await
        .expect_err("accepted");
    assert_eq!(refused.code(), tonic::Code::FailedPrecondition);
    assert!(refused.message().contains("ACCEPTED"), "{refused:?}");
    assert_eq!(
        state_of(&mut client, &o.ministry, ids[4]).await?,
        CaseState::Accepted
    );

    // The withdrawn persons left matching's index: the first family, proposed again,
    // is no duplicate of its withdrawn self.
    let held = format!(
        "SELECT count(*)::bigint AS n FROM matching.person_index WHERE proposal_id = '{}'",
        cases[0].1
    );
    count_becomes(&stack, 60, &held, 0).await?;
    let (again, _) = propose(&stack, &o.village, "wd-all-again", single(0, MEN[0].0)).await?;
    let case = client
        .get_case(authed(
            dtks_proto::verivali::v1::GetCaseRequest { case_id: again },
            &o.ministry,
        ))
        .await?
        .into_inner();
    let criteria = case.assessment.expect("the automatic verdict").criteria;
    assert!(
        criteria
            .iter()
            .find(|c| c.criterion == 1)
            .is_some_and(|c| c.reasons.is_empty()),
        "{criteria:?}"
    );

    // Downstream, only the accepted household exists: last month and this one rank it
    // alone and name no change between them, this month's list holds it alone, and
    // reporting counts one acceptance of the seven proposals.
    let accepted_household = super::lifecycle::text(
        &stack,
        &format!(
            "SELECT household_id::text AS t FROM verivali.cases WHERE case_id = '{}'",
            ids[4]
        ),
    )
    .await?;
    let determination = DeterminationServiceClient::new(stack.channel("determination").await?);
    let admin = stack.token(Role::PusdatinAdmin, "");
    super::determination::accepted(&stack, 1).await?;
    for month in [12, 13] {
        assert_eq!(
            determine(&determination, &admin, month).await?.households,
            1
        );
    }
    let month = after_the_month(&stack, 13, &accepted_household).await?;
    assert_eq!((month.change, month.listed), (None, Some(VILLAGE.into())));
    super::summary_when(&stack, 60, "the acceptance counted", |s| {
        (s.proposals_submitted, s.households_accepted) == (7, 1)
    })
    .await?;
    Ok(())
}
