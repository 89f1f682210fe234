//! Intake against the real stack: every channel, every refusal with its field, no
//! partial writes, idempotency, the bulk path with per-row results and its stream
//! limit, listing with cursors, withdrawal, and the self-registration rate limit.

use dtks_e2e::{Stack, authed};
use dtks_platform::auth::Role;
use dtks_proto::common::v1 as pb;
use dtks_proto::events::v1::{ChangeType, Channel, ProposalKind, RemovalReason};
use dtks_proto::intake::v1::intake_service_client::IntakeServiceClient;
use dtks_proto::intake::v1::*;
use tonic::Code;
use tonic::transport::Channel as GrpcChannel;
use tonic_types::StatusExt;

use super::{REGISTRY, count, household, minutes, musdes};

type Client = IntakeServiceClient<GrpcChannel>;

async fn intake_only(env: &[(&str, &str)]) -> anyhow::Result<(Stack, Client)> {
    let stack = Stack::start_services(REGISTRY, &["intake"], env).await?;
    let client = IntakeServiceClient::new(stack.channel("intake").await?)
        .max_decoding_message_size(8 << 20)
        .max_encoding_message_size(8 << 20);
    Ok((stack, client))
}

/// What is stored: proposals, proposed persons, events waiting in the outbox.
async fn stored(stack: &Stack) -> anyhow::Result<(i64, i64, i64)> {
    Ok((
        count(stack, "SELECT count(*)::bigint AS n FROM intake.proposals").await?,
        count(stack, "SELECT count(*)::bigint AS n FROM intake.proposal_persons").await?,
        count(
            stack,
            "SELECT count(*)::bigint AS n FROM intake.outbox WHERE event_type = 'proposal.submitted'",
        )
        .await?,
    ))
}

/// The fields a refusal names.
fn fields(status: &tonic::Status) -> Vec<String> {
    status
        .get_details_bad_request()
        .map(|b| b.field_violations.into_iter().map(|f| f.field).collect())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_channel_and_every_refusal_with_nothing_left_behind() -> anyhow::Result<()> {
    let (stack, mut intake) = intake_only(&[]).await?;
    let operator = stack.token(Role::VillageOperator, "32.04.05.2001");
    let assessor = stack.token(Role::MinistryAssessor, "");
    let citizen = stack.token_for("citizen-42", Role::Public, "");

    // The three channels, each by the role that uses it.
    let by_musdes = intake
        .submit_proposal(authed(musdes("MUSDES-1", household()), &operator))
        .await?
        .into_inner();
    let ministry = SubmitProposalRequest {
        channel: Channel::Ministry as i32,
        minutes: None,
        ..musdes("KEMENSOS-1", household())
    };
    intake
        .submit_proposal(authed(ministry.clone(), &assessor))
        .await?;
    let self_registered = SubmitProposalRequest {
        channel: Channel::SelfRegistration as i32,
        minutes: None,
        ..musdes("", household())
    };
    intake
        .submit_proposal(authed(self_registered.clone(), &citizen))
        .await?;
    assert_eq!(stored(&stack).await?, (3, 9, 3));

    let proposal = intake
        .get_proposal(authed(
            GetProposalRequest {
                proposal_id: by_musdes.proposal_id.clone(),
            },
            &operator,
        ))
        .await?
        .into_inner();
    assert_eq!(proposal.status, ProposalStatus::Submitted as i32);
    assert_eq!(proposal.region_code, "32.04.05.2001");
    assert_eq!(proposal.minutes.expect("minutes").attendees, 42);
    assert_eq!(
        proposal.household.expect("household").families[0]
            .members
            .len(),
        3
    );

    // A channel is open only to its roles.
    for (request, token) in [
        (musdes("X-1", household()), &citizen),
        (ministry.clone(), &operator),
        (self_registered.clone(), &assessor),
    ] {
        let status = intake
            .submit_proposal(authed(request, token))
            .await
            .expect_err("the wrong role for the channel");
        assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
        assert!(status.message().starts_with("channel:"), "{status:?}");
    }

    // Each refusal names its field.
    let mut cases: Vec<(&str, SubmitProposalRequest, &str)> = Vec::new();
    let mut h = household();
    h.families[0].members[0].nik = "32040512038000".into();
    cases.push((
        "NIK structure",
        musdes("R-1", h),
        "household.families[0].members[0].nik",
    ));
    let mut h = household();
    h.families[0].kk_number = "3204A50505150001".into();
    cases.push((
        "KK structure",
        musdes("R-2", h),
        "household.families[0].kk_number",
    ));
    let mut h = household();
    h.families[0].members[0].birth_date = Some(pb::Date {
        year: 1980,
        month: 3,
        day: 13,
    });
    cases.push((
        "NIK birth date",
        musdes("R-3", h),
        "household.families[0].members[0].nik",
    ));
    let mut h = household();
    h.families[0].members[0].sex = 2;
    cases.push((
        "NIK sex",
        musdes("R-4", h),
        "household.families[0].members[0].nik",
    ));
    let mut h = household();
    h.address.as_mut().expect("address").village_code = "32.04.05.2999".into();
    cases.push((
        "unknown village",
        musdes("R-5", h),
        "household.address.village_code",
    ));
    let mut h = household();
    h.families[0].members[1].relationship = 1;
    cases.push(("two heads", musdes("R-6", h), "household.families"));
    let mut h = household();
    h.families[0].members[2].birth_date = Some(pb::Date {
        year: 1975,
        month: 2,
        day: 1,
    });
    h.families[0].members[2].nik = "3204050102750003".into();
    cases.push((
        "child older than plausible",
        musdes("R-7", h),
        "household.families[0].members[2].relationship",
    ));
    let mut h = household();
    h.location = Some(pb::GeoPoint {
        latitude: 51.5,
        longitude: -0.1,
    });
    cases.push(("coordinates", musdes("R-8", h), "household.location"));
    let mut h = household();
    h.dwelling.as_mut().expect("dwelling").water = 0;
    cases.push((
        "required attribute",
        musdes("R-9", h),
        "household.dwelling.water",
    ));
    let mut h = household();
    h.families[0].members[1].education = 0;
    cases.push((
        "required person attribute",
        musdes("R-10", h),
        "household.families[0].members[1].education",
    ));
    cases.push((
        "musdes minutes",
        SubmitProposalRequest {
            minutes: None,
            ..musdes("R-11", household())
        },
        "minutes",
    ));
    let mut late = minutes();
    late.date = Some(dtks_e2e::time::date_from_today(30));
    cases.push((
        "minutes date",
        SubmitProposalRequest {
            minutes: Some(late),
            ..musdes("R-12", household())
        },
        "minutes.date",
    ));
    let mut h = household();
    h.household_id = "0196f3a0-0000-7000-8000-000000000001".into();
    cases.push((
        "ADD with an id",
        musdes("R-13", h),
        "household.household_id",
    ));
    cases.push((
        "CHANGE without its target",
        SubmitProposalRequest {
            kind: ProposalKind::Change as i32,
            change_type: ChangeType::Correction as i32,
            reason: "typo".into(),
            ..musdes("R-14", household())
        },
        "household.household_id",
    ));
    let mut h = household();
    h.household_id = "0196f3a0-0000-7000-8000-000000000001".into();
    cases.push((
        "CHANGE without its type",
        SubmitProposalRequest {
            kind: ProposalKind::Change as i32,
            reason: "moved".into(),
            ..musdes("R-15", h.clone())
        },
        "change_type",
    ));
    cases.push((
        "DEATH without the deceased",
        SubmitProposalRequest {
            kind: ProposalKind::Change as i32,
            change_type: ChangeType::Death as i32,
            reason: "died".into(),
            ..musdes("R-16", h.clone())
        },
        "household.families",
    ));
    cases.push((
        "REMOVE without a reason",
        SubmitProposalRequest {
            kind: ProposalKind::Remove as i32,
            removal_reason: RemovalReason::MovedAway as i32,
            ..musdes("R-17", h.clone())
        },
        "reason",
    ));
    cases.push((
        "REMOVE without its reason's code",
        SubmitProposalRequest {
            kind: ProposalKind::Remove as i32,
            reason: "moved abroad".into(),
            ..musdes("R-17b", h.clone())
        },
        "removal_reason",
    ));
    cases.push((
        "a removal code on an ADD",
        SubmitProposalRequest {
            removal_reason: RemovalReason::Duplicate as i32,
            ..musdes("R-17c", h.clone())
        },
        "removal_reason",
    ));
    cases.push((
        "no household",
        SubmitProposalRequest {
            household: None,
            ..musdes("R-18", household())
        },
        "household",
    ));
    cases.push((
        "no channel",
        SubmitProposalRequest {
            channel: 0,
            ..musdes("R-19", household())
        },
        "channel",
    ));
    for (what, request, field) in cases {
        let status = intake
            .submit_proposal(authed(request, &operator))
            .await
            .expect_err(what);
        assert_eq!(status.code(), Code::InvalidArgument, "{what}: {status:?}");
        let named = fields(&status);
        assert!(
            named.iter().any(|f| f == field),
            "{what}: {field} not in {named:?}"
        );
    }

    // Out of the officer's region scope: denied, naming the address.
    let mut elsewhere = household();
    elsewhere.address.as_mut().expect("address").village_code = "32.04.05.2002".into();
    let status = intake
        .submit_proposal(authed(musdes("R-20", elsewhere), &operator))
        .await
        .expect_err("outside the scope");
    assert_eq!(status.code(), Code::PermissionDenied);
    assert!(status.message().contains("household.address.village_code"));

    // Not one refused proposal left a row or an event behind.
    assert_eq!(stored(&stack).await?, (3, 9, 3));

    // CHANGE (a death) and REMOVE, well formed, are taken.
    let mut died = household();
    died.household_id = "0196f3a0-0000-7000-8000-000000000001".into();
    died.families[0].members[2].deceased = true;
    intake
        .submit_proposal(authed(
            SubmitProposalRequest {
                kind: ProposalKind::Change as i32,
                change_type: ChangeType::Death as i32,
                reason: "Dede died in October".into(),
                ..musdes("CHANGE-1", died)
            },
            &operator,
        ))
        .await?;
    let removal = pb::Household {
        household_id: "0196f3a0-0000-7000-8000-000000000002".into(),
        address: Some(pb::Address {
            village_code: "32.04.05.2001".into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    let removed = intake
        .submit_proposal(authed(
            SubmitProposalRequest {
                kind: ProposalKind::Remove as i32,
                reason: "moved abroad, confirmed by the village".into(),
                removal_reason: RemovalReason::MovedAway as i32,
                ..musdes("REMOVE-1", removal)
            },
            &operator,
        ))
        .await?
        .into_inner();
    assert!(!removed.replayed);
    assert_eq!(stored(&stack).await?, (5, 12, 5));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotency_bulk_import_listing_and_withdrawal() -> anyhow::Result<()> {
    let (stack, mut intake) = intake_only(&[("DTKS_LIMITS__IMPORT_ROWS_PER_STREAM", "30")]).await?;
    let operator = stack.token(Role::VillageOperator, "32.04.05.2001");

    // The same key twice, and the same channel + reference under another key: one row.
    let first = intake
        .submit_proposal(authed(
            SubmitProposalRequest {
                idempotency_key: "k-1".into(),
                ..musdes("REF-1", household())
            },
            &operator,
        ))
        .await?
        .into_inner();
    let again = intake
        .submit_proposal(authed(
            SubmitProposalRequest {
                idempotency_key: "k-1".into(),
                ..musdes("REF-1", household())
            },
            &operator,
        ))
        .await?
        .into_inner();
    let by_reference = intake
        .submit_proposal(authed(
            SubmitProposalRequest {
                idempotency_key: "k-2".into(),
                ..musdes("REF-1", household())
            },
            &operator,
        ))
        .await?
        .into_inner();
    assert!(!first.replayed && again.replayed && by_reference.replayed);
    assert_eq!(first.proposal_id, again.proposal_id);
    assert_eq!(first.proposal_id, by_reference.proposal_id);
    assert_eq!(stored(&stack).await?, (1, 3, 1));

    // A bulk stream: 20 good rows, 3 bad ones, one repeating REF-1, one repeating an
    // earlier row of the same stream, one without a proposal, and 9 beyond the limit of 30.
    let mut rows = Vec::new();
    for i in 1..=20u64 {
        rows.push(ImportProposalsRequest {
            row: i,
            proposal: Some(musdes(&format!("BULK-{i}"), household())),
        });
    }
    let mut bad_nik = household();
    bad_nik.families[0].members[2].nik = "1".into();
    rows.push(ImportProposalsRequest {
        row: 21,
        proposal: Some(musdes("BULK-21", bad_nik)),
    });
    let mut no_water = household();
    no_water.dwelling.as_mut().expect("dwelling").water = 0;
    rows.push(ImportProposalsRequest {
        row: 22,
        proposal: Some(musdes("BULK-22", no_water)),
    });
    let mut elsewhere = household();
    elsewhere.address.as_mut().expect("address").village_code = "32.04.06.2001".into();
    rows.push(ImportProposalsRequest {
        row: 23,
        proposal: Some(musdes("BULK-23", elsewhere)),
    });
    rows.push(ImportProposalsRequest {
        row: 24,
        proposal: Some(musdes("REF-1", household())),
    });
    rows.push(ImportProposalsRequest {
        row: 25,
        proposal: Some(musdes("BULK-3", household())),
    });
    rows.push(ImportProposalsRequest {
        row: 26,
        proposal: None,
    });
    for i in 27..=39u64 {
        rows.push(ImportProposalsRequest {
            row: i,
            proposal: Some(musdes(&format!("BULK-{i}"), household())),
        });
    }
    let answer = intake
        .import_proposals(authed(futures::stream::iter(rows), &operator))
        .await?
        .into_inner();
    let row = |n: u64| {
        answer
            .rows
            .iter()
            .find(|r| r.row == n)
            .expect("every row answered")
    };
    assert_eq!(answer.rows.len(), 39);
    // Rows 1–20, 24, 25 and 27–30 are accepted (24 and 25 as replays); 31–39 are over.
    assert_eq!(
        answer.accepted,
        26,
        "{:?}",
        answer
            .rows
            .iter()
            .filter(|r| !r.errors.is_empty())
            .collect::<Vec<_>>()
    );
    assert_eq!(answer.rejected, 13);
    assert_eq!(
        row(21).errors[0].field,
        "household.families[0].members[2].nik"
    );
    assert_eq!(row(22).errors[0].field, "household.dwelling.water");
    assert_eq!(row(23).errors[0].field, "household.address.village_code");
    assert_eq!(row(26).errors[0].field, "proposal");
    assert!(row(24).replayed && row(24).proposal_id == first.proposal_id);
    assert!(row(25).replayed && row(25).proposal_id == row(3).proposal_id);
    assert_eq!(row(31).errors[0].field, "row");
    assert!(row(39).errors[0].description.contains("at most 30 rows"));
    // 1 earlier + 20 + rows 27–30.
    assert_eq!(stored(&stack).await?, (25, 75, 25));

    // Listing: pages of 7 walk all 25 once, newest first; filters narrow.
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let page = intake
            .list_proposals(authed(
                ListProposalsRequest {
                    page: Some(pb::PageRequest {
                        page_size: 7,
                        page_token: token.clone(),
                    }),
                    ..Default::default()
                },
                &operator,
            ))
            .await?
            .into_inner();
        assert!(page.proposals.len() <= 7);
        assert!(page.proposals.iter().all(|p| p.household.is_none()));
        seen.extend(page.proposals.into_iter().map(|p| p.proposal_id));
        token = page.page.unwrap_or_default().next_page_token;
        if token.is_empty() {
            break;
        }
    }
    assert_eq!(seen.len(), 25);
    let mut sorted = seen.clone();
    sorted.sort();
    sorted.reverse();
    sorted.dedup();
    assert_eq!(seen, sorted, "newest first, each once");
    let other_village = stack.token(Role::VillageOperator, "32.04.05.2002");
    let none = intake
        .list_proposals(authed(ListProposalsRequest::default(), &other_village))
        .await?
        .into_inner();
    assert!(none.proposals.is_empty(), "another village sees nothing");
    let denied = intake
        .list_proposals(authed(
            ListProposalsRequest {
                region_code: "32.04".into(),
                ..Default::default()
            },
            &operator,
        ))
        .await
        .expect_err("a wider region than the scope");
    assert_eq!(denied.code(), Code::PermissionDenied);
    let bad_token = intake
        .list_proposals(authed(
            ListProposalsRequest {
                page: Some(pb::PageRequest {
                    page_size: 5,
                    page_token: "garbage".into(),
                }),
                ..Default::default()
            },
            &operator,
        ))
        .await
        .expect_err("a forged token");
    assert_eq!(fields(&bad_token), ["page.page_token"]);

    // Withdrawal: once, with a reason, published; not twice.
    let refused = intake
        .withdraw_proposal(authed(
            WithdrawProposalRequest {
                proposal_id: first.proposal_id.clone(),
                reason: " ".into(),
            },
            &operator,
        ))
        .await
        .expect_err("no reason");
    assert_eq!(fields(&refused), ["reason"]);
    let withdrawn = intake
        .withdraw_proposal(authed(
            WithdrawProposalRequest {
                proposal_id: first.proposal_id.clone(),
                reason: "the household asked to withdraw".into(),
            },
            &operator,
        ))
        .await?
        .into_inner();
    assert_eq!(withdrawn.status, ProposalStatus::Withdrawn as i32);
    assert_eq!(withdrawn.status_reason, "the household asked to withdraw");
    let twice = intake
        .withdraw_proposal(authed(
            WithdrawProposalRequest {
                proposal_id: first.proposal_id.clone(),
                reason: "again".into(),
            },
            &operator,
        ))
        .await
        .expect_err("already withdrawn");
    assert_eq!(twice.code(), Code::FailedPrecondition);
    assert_eq!(
        count(&stack, "SELECT count(*)::bigint AS n FROM intake.outbox WHERE event_type = 'proposal.withdrawn'").await?,
        1
    );
    let withdrawn_only = intake
        .list_proposals(authed(
            ListProposalsRequest {
                status: ProposalStatus::Withdrawn as i32,
                ..Default::default()
            },
            &operator,
        ))
        .await?
        .into_inner();
    assert_eq!(withdrawn_only.proposals.len(), 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn self_registration_is_rate_limited_and_size_limited() -> anyhow::Result<()> {
    let (stack, mut intake) =
        intake_only(&[("DTKS_LIMITS__SELF_REGISTRATION_PER_MINUTE", "3")]).await?;
    let request = SubmitProposalRequest {
        channel: Channel::SelfRegistration as i32,
        kind: ProposalKind::Add as i32,
        household: Some(household()),
        ..Default::default()
    };
    let minute = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() / 60)
            .unwrap_or_default()
    };
    // Three per minute per citizen; the fourth waits. A run that straddles a minute
    // boundary is repeated with a fresh citizen.
    let mut checked = false;
    for attempt in 0..3 {
        let citizen = stack.token_for(&format!("citizen-{attempt}"), Role::Public, "");
        let started = minute();
        let mut answers = Vec::new();
        for _ in 0..4 {
            answers.push(
                intake
                    .submit_proposal(authed(request.clone(), &citizen))
                    .await,
            );
        }
        if minute() != started {
            continue;
        }
        assert!(answers[..3].iter().all(Result::is_ok), "{answers:?}");
        let limited = answers[3].as_ref().expect_err("the fourth in a minute");
        assert_eq!(limited.code(), Code::ResourceExhausted);
        assert!(
            limited.get_details_retry_info().is_some(),
            "says when to retry"
        );
        // Another citizen is not held back by the first.
        let neighbour = stack.token_for(&format!("neighbour-{attempt}"), Role::Public, "");
        intake
            .submit_proposal(authed(request.clone(), &neighbour))
            .await?;
        checked = true;
        break;
    }
    assert!(checked, "three attempts straddled a minute boundary");

    // Citizens do not bulk-import.
    let citizen = stack.token_for("citizen-bulk", Role::Public, "");
    let denied = intake
        .import_proposals(authed(
            futures::stream::iter(Vec::<ImportProposalsRequest>::new()),
            &citizen,
        ))
        .await
        .expect_err("bulk is for officers");
    assert_eq!(denied.code(), Code::PermissionDenied);

    // A message over 1 MiB is refused before it is read, and leaves nothing.
    let before = stored(&stack).await?;
    let mut huge = household();
    huge.address.as_mut().expect("address").street = "x".repeat(2 << 20);
    let citizen = stack.token_for("citizen-huge", Role::Public, "");
    let too_big = intake
        .submit_proposal(authed(
            SubmitProposalRequest {
                household: Some(huge),
                ..request.clone()
            },
            &citizen,
        ))
        .await
        .expect_err("over the message limit");
    assert_eq!(too_big.code(), Code::OutOfRange, "{too_big:?}");
    assert_eq!(stored(&stack).await?, before);
    Ok(())
}
