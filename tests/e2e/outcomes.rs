//! Every outcome matching gives a person, through MatchPerson; clerical review of a
//! probable match, through a proposal; DCI messages signed both ways, and searched
//! asynchronously (answers on matching's callback).

use dtks_e2e::{Stack, authed};
use dtks_platform::auth::Role;
use dtks_proto::common::v1 as pb;
use dtks_proto::events::v1::{HouseholdOutcome, PersonOutcome};
use dtks_proto::matching::v1::{
    DecideReviewPairRequest, GetProposalMatchRequest, ListReviewPairsRequest, MatchPersonRequest,
    MatchPersonResponse, MatchWaveRequest, ReviewDecision,
    matching_service_client::MatchingServiceClient,
};
use serde_json::json;

use super::{VILLAGE, count, household, submit_household};

/// The family of the other tests, a deceased man, a man whose NIK someone else uses,
/// a man known by his full name, and a boy with a twin of the same name.
const REGISTRY: &str = "nik,kk_number,full_name,birth_place,birth_date,sex,village_code,death_date
3204051203800001,3204050505150001,Asep Sunandar,Bandung,1980-03-12,1,32.04.05.2001,
3204055708840002,3204050505150001,Siti Aminah,Bandung,1984-08-17,2,32.04.05.2001,
3204050102100003,3204050505150001,Dede Kurnia,Bandung,2010-02-01,1,32.04.05.2001,
3204050102100004,3204050505150001,Dede Kurnia,Bandung,2010-02-01,1,32.04.05.2001,
3204051005500004,3204050101000002,Karta Wijaya,Bandung,1950-05-10,1,32.04.05.2001,2025-01-02
3204052006700005,3204050101000003,Ujang Suryana,Bandung,1970-06-20,1,32.04.05.2001,
3204051511920006,3204050101000004,Muhammad Rizki Pratama,Garut,1992-11-15,1,32.04.05.2001,
";

fn person(nik: &str, name: &str, (y, m, d): (i32, i32, i32), sex: i32) -> pb::Person {
    pb::Person {
        nik: nik.into(),
        full_name: name.into(),
        birth_date: Some(pb::Date {
            year: y,
            month: m,
            day: d,
        }),
        sex,
        ..Default::default()
    }
}

/// What is asked, the person, the outcome expected and the corrections expected.
type Case = (
    &'static str,
    pb::Person,
    PersonOutcome,
    Vec<(&'static str, &'static str)>,
);

async fn match_person(
    client: &mut MatchingServiceClient<tonic::transport::Channel>,
    token: &str,
    person: pb::Person,
) -> Result<MatchPersonResponse, tonic::Status> {
    match_person_in(client, token, person, VILLAGE).await
}

async fn match_person_in(
    client: &mut MatchingServiceClient<tonic::transport::Channel>,
    token: &str,
    person: pb::Person,
    village: &str,
) -> Result<MatchPersonResponse, tonic::Status> {
    client
        .match_person(authed(
            MatchPersonRequest {
                person: Some(person),
                village_code: village.into(),
            },
            token,
        ))
        .await
        .map(tonic::Response::into_inner)
}

/// Who the person is comes first; what the registry says of them (deceased, their
/// NIK) only once they are identified.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_is_decided_before_status_and_a_bad_nik_is_only_unreliable() -> anyhow::Result<()>
{
    let stack = Stack::start_services(REGISTRY, &["matching"], &[]).await?;
    let officer = stack.token(Role::RegencyOfficer, "32.04");
    let mut matching = MatchingServiceClient::new(stack.channel("matching").await?);
    let outcome = |a: &MatchPersonResponse| PersonOutcome::try_from(a.outcome).unwrap_or_default();
    let corrections = |a: &MatchPersonResponse| -> Vec<(String, String)> {
        a.corrections
            .iter()
            .map(|c| (c.field.clone(), c.registry_value.clone()))
            .collect()
    };
    let owned = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(f, v)| ((*f).to_owned(), (*v).to_owned()))
            .collect()
    };

    // The right NIK, with a haji's title and a degree, and the day and month of birth
    // written the other way round: the same person, matched with corrections. (A plain
    // comparison of the text called this "someone else's NIK".)
    let titled = match_person(
        &mut matching,
        &officer,
        person(
            "3204051203800001",
            "H. Asep Sunandar, S.Pd.",
            (1980, 12, 3),
            1,
        ),
    )
    .await?;
    assert_eq!(
        outcome(&titled),
        PersonOutcome::MatchedWithCorrections,
        "{titled:?}"
    );
    assert_eq!(
        corrections(&titled),
        owned(&[("full_name", "Asep Sunandar"), ("birth_date", "1980-03-12")])
    );
    assert!(titled.nik_holder.is_none(), "{titled:?}");
    // The model that judged is named (the shipped one's version, `dtksctl model show`).
    assert_eq!(titled.model_version.len(), 16, "{titled:?}");

    // The wife gives her husband's NIK: not her NIK, and the registry's holder is named;
    // linkage finds her own, which comes back as the correction.
    let wife = match_person(
        &mut matching,
        &officer,
        person("3204051203800001", "Siti Aminah", (1984, 8, 17), 2),
    )
    .await?;
    assert_eq!(
        outcome(&wife),
        PersonOutcome::NikOfAnotherPerson,
        "{wife:?}"
    );
    let holder = wife.nik_holder.clone().expect("the holder named");
    assert_eq!(holder.full_name, "Asep Sunandar");
    assert_eq!(holder.nik, "3204051203800001");
    assert_eq!(corrections(&wife), owned(&[("nik", "3204055708840002")]));

    // A NIK two digits short is not a NIK: nothing is refused, the person links on name,
    // birth date and village, and the registry's NIK is the correction.
    let short = match_person(
        &mut matching,
        &officer,
        person("32040512038000", "Asep Sunandar", (1980, 3, 12), 1),
    )
    .await?;
    assert_eq!(
        outcome(&short),
        PersonOutcome::MatchedWithCorrections,
        "{short:?}"
    );
    assert_eq!(corrections(&short), owned(&[("nik", "3204051203800001")]));
    assert!(short.score >= 0.95, "{short:?}");
    // Nor is a NIK of letters refused.
    let letters = match_person(
        &mut matching,
        &officer,
        person("ABCDEFGHIJKLMNOP", "Asep Sunandar", (1980, 3, 12), 1),
    )
    .await?;
    assert_eq!(
        outcome(&letters),
        PersonOutcome::MatchedWithCorrections,
        "{letters:?}"
    );

    // A living man who gives the NIK of a man who died: he is not the holder, so he is
    // not declared dead. The holder himself, with his own NIK, is.
    let living = match_person(
        &mut matching,
        &officer,
        person("3204051005500004", "Dadang Hermawan", (1975, 4, 4), 1),
    )
    .await?;
    assert_eq!(
        outcome(&living),
        PersonOutcome::NikOfAnotherPerson,
        "{living:?}"
    );
    assert_eq!(
        living.nik_holder.as_ref().map(|h| h.full_name.as_str()),
        Some("Karta Wijaya")
    );
    let dead = match_person(
        &mut matching,
        &officer,
        person("3204051005500004", "Karta Wijaya", (1950, 5, 10), 1),
    )
    .await?;
    assert_eq!(outcome(&dead), PersonOutcome::Deceased, "{dead:?}");

    // What is still refused is what cannot be a request: a village that does not exist.
    let refused = match_person_in(
        &mut matching,
        &officer,
        person("3204051203800001", "Asep Sunandar", (1980, 3, 12), 1),
        "99.99.99.9999",
    )
    .await
    .expect_err("an unknown village");
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    Ok(())
}

/// A wave gives each person the answer MatchPerson gives them, and refuses a person it
/// cannot take (outside the caller's region, a village that does not exist, a name with
/// a NUL) alone, naming the field, while the rest of the wave is matched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wave_answers_each_person_as_match_person_does_and_refuses_persons_alone()
-> anyhow::Result<()> {
    let stack = Stack::start_services(REGISTRY, &["matching"], &[]).await?;
    let officer = stack.token(Role::RegencyOfficer, "32.04");
    let mut matching = MatchingServiceClient::new(stack.channel("matching").await?);
    let elsewhere = dtks_platform::reference::village_codes()
        .iter()
        .find(|v| !v.starts_with("32.04"))
        .expect("a village of another regency")
        .to_string();
    let matched = [
        // Titled, the right NIK, day and month swapped: matched with corrections.
        person(
            "3204051203800001",
            "H. Asep Sunandar, S.Pd.",
            (1980, 12, 3),
            1,
        ),
        // The husband's NIK: NIK of another person, her own found.
        person("3204051203800001", "Siti Aminah", (1984, 8, 17), 2),
        // Not a NIK at all: linked on the other fields.
        person("32040520067O0005", "Ujang Suryana", (1970, 6, 20), 1),
        // Dead, identified by his NIK.
        person("3204051005500004", "Karta Wijaya", (1950, 5, 10), 1),
        // No NIK, an abbreviated first name.
        person("", "M. Rizki Pratama", (1992, 11, 15), 1),
        // Not in the registry.
        person("", "Tatang Sutarman", (1961, 1, 9), 1),
    ];
    let mut requests: Vec<MatchWaveRequest> = matched
        .iter()
        .enumerate()
        .map(|(i, p)| MatchWaveRequest {
            reference: format!("row-{i}"),
            request: Some(MatchPersonRequest {
                person: Some(p.clone()),
                village_code: VILLAGE.into(),
            }),
        })
        .collect();
    let refused = [
        (
            "outside",
            Some(elsewhere.as_str()),
            "Asep Sunandar",
            "request.village_code",
            "PERMISSION_DENIED",
        ),
        (
            "nowhere",
            Some("99.99.99.9999"),
            "Asep Sunandar",
            "request.village_code",
            "INVALID_ARGUMENT",
        ),
        (
            "nul",
            Some(VILLAGE),
            "Asep\0Sunandar",
            "request.person.full_name",
            "INVALID_ARGUMENT",
        ),
        ("empty", None, "", "request", "INVALID_ARGUMENT"),
    ];
    for (reference, village, name, _, _) in refused {
        requests.push(MatchWaveRequest {
            reference: reference.into(),
            request: village.map(|v| MatchPersonRequest {
                person: Some(person("", name, (1980, 3, 12), 1)),
                village_code: v.into(),
            }),
        });
    }
    let mut stream = matching
        .match_wave(authed(tokio_stream::iter(requests), &officer))
        .await?
        .into_inner();
    let mut answers = std::collections::HashMap::new();
    while let Some(answer) = stream.message().await? {
        answers.insert(answer.reference.clone(), answer);
    }
    assert_eq!(answers.len(), matched.len() + refused.len(), "{answers:?}");
    for (i, p) in matched.iter().enumerate() {
        let wave = answers[&format!("row-{i}")].clone();
        assert!(wave.refused.is_empty(), "{wave:?}");
        let alone = match_person(&mut matching, &officer, p.clone()).await?;
        assert_eq!(wave.result.as_ref(), Some(&alone), "{}", p.full_name);
    }
    let outcome = |i: usize| {
        PersonOutcome::try_from(
            answers[&format!("row-{i}")]
                .result
                .as_ref()
                .map_or(0, |r| r.outcome),
        )
        .unwrap_or_default()
    };
    assert_eq!(
        (0..matched.len()).map(outcome).collect::<Vec<_>>(),
        [
            PersonOutcome::MatchedWithCorrections,
            PersonOutcome::NikOfAnotherPerson,
            PersonOutcome::MatchedWithCorrections,
            PersonOutcome::Deceased,
            PersonOutcome::MatchedWithCorrections,
            PersonOutcome::NoNik,
        ]
    );
    for (reference, _, _, field, code) in refused {
        let answer = &answers[reference];
        assert!(answer.result.is_none(), "{answer:?}");
        assert!(
            answer
                .refused
                .iter()
                .any(|r| r.field == field && r.code == code && !r.reason.is_empty()),
            "{reference}: {answer:?}"
        );
    }
    // Matching's own DCI endpoints answer as the standard says: an unsigned notice is
    // refused with an ERR acknowledgement carrying its correlation id, and `errors`.
    let callbacks = stack
        .setting("DTKS_DCI__CALLBACK_URL")
        .expect("callback URL")
        .to_owned();
    let refusal = reqwest::Client::new()
        .post(format!("{callbacks}/registry/notify"))
        .json(&json!({
            "header": { "message_id": "m-unsigned", "action": "notify" },
            "message": { "correlation_id": "c-unsigned", "notify_event": [] },
        }))
        .send()
        .await?;
    assert_eq!(refusal.status(), 401);
    let refusal: serde_json::Value = refusal.json().await?;
    assert_eq!(refusal["message"]["ack_status"], "ERR", "{refusal}");
    assert_eq!(
        refusal["message"]["correlation_id"], "c-unsigned",
        "{refusal}"
    );
    assert!(refusal["errors"][0]["code"].is_string(), "{refusal}");

    // The lookups are audited as the wave's, by village.
    assert!(
        count(
            &stack,
            "SELECT count(*) AS n FROM matching.audit_log WHERE action = 'matching.MatchWave'"
        )
        .await?
            >= 1
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_person_outcome_and_clerical_review_over_signed_asynchronous_dci()
-> anyhow::Result<()> {
    let stack = Stack::start_services(
        REGISTRY,
        &["intake", "matching"],
        &[("DTKS_DCI__ASYNC_SEARCH", "true")],
    )
    .await?;
    let officer = stack.token(Role::RegencyOfficer, "32.04");
    let mut matching = MatchingServiceClient::new(stack.channel("matching").await?);

    // The registry refuses what does not come from a sender it trusts: no bearer token,
    // or a message not signed by the sender's key.
    let signer = dtks_platform::dci::Signer::new(
        "dtks-matching",
        "k1",
        stack
            .setting("DTKS_DCI__SIGNING_KEY")
            .expect("matching's key"),
    )?;
    let unsigned = json!({
        "signature": "",
        "header": { "sender_id": "dtks-matching", "action": "search" },
        "message": { "transaction_id": "t", "search_request": [] },
    });
    let post_as = |path: &'static str, body: serde_json::Value, bearer: bool| {
        let url = format!("{}{path}", stack.registry_url());
        let token = signer.bearer("dukcapil-reference", 60);
        async move {
            let request = reqwest::Client::new().post(url).json(&body);
            let request = if bearer {
                request.bearer_auth(token)
            } else {
                request
            };
            request.send().await
        }
    };
    let post = |path: &'static str, body: serde_json::Value| post_as(path, body, true);
    let anonymous = post_as("/registry/sync/search", unsigned.clone(), false).await?;
    assert_eq!(anonymous.status().as_u16(), 401);
    let body: serde_json::Value = anonymous.json().await?;
    assert_eq!(
        body["errors"][0]["code"], "err.request.unauthorized",
        "{body}"
    );
    let refused = post("/registry/sync/search", unsigned).await?;
    assert_eq!(refused.status().as_u16(), 401);
    let body: serde_json::Value = refused.json().await?;
    assert_eq!(body["errors"][0]["code"], "err.signature.missing", "{body}");

    // Finding 18: a signed message sent again within its validity is a replay, and an
    // asynchronous answer goes only to the callback base registered for the sender.
    let signed = |action: &str, sender_uri: Option<&str>| {
        dtks_platform::dci::seal(
            Some(&signer),
            dtks_platform::dci::header(
                "dtks-matching",
                action,
                "dukcapil-reference",
                sender_uri,
                1,
            ),
            json!({ "transaction_id": "t-replay", "search_request": [] }),
        )
    };
    let once = signed("search", None);
    let first = post("/registry/sync/search", once.clone()).await?;
    assert_ne!(first.status().as_u16(), 401, "{:?}", first.text().await?);
    let again = post("/registry/sync/search", once).await?;
    assert_eq!(again.status().as_u16(), 401);
    let body: serde_json::Value = again.json().await?;
    assert!(body.to_string().contains("replay"), "{body}");
    // Finding 10: a NUL byte in a search never reaches PostgreSQL: the request naming
    // it is refused on its own, no 500.
    let nul = dtks_platform::dci::seal(
        Some(&signer),
        dtks_platform::dci::header("dtks-matching", "search", "dukcapil-reference", None, 1),
        json!({ "transaction_id": "t-nul", "search_request": [{
            "reference_id": "r1", "timestamp": "2026-01-02T03:04:05Z",
            "search_criteria": { "query_type": "idtype-value", "query": { "type": "NIK", "value": "3204\u{0}" } },
        }] }),
    );
    let answered = post("/registry/sync/search", nul).await?;
    assert_eq!(answered.status().as_u16(), 200);
    let body: serde_json::Value = answered.json().await?;
    let item = &body["message"]["search_response"][0];
    assert_eq!(item["status"], "rjct", "{body}");
    assert_eq!(
        item["status_reason_code"], "rjct.search_criteria.invalid",
        "{body}"
    );
    let elsewhere = post(
        "/registry/search",
        signed("search", Some("http://127.0.0.1:9/elsewhere")),
    )
    .await?;
    assert_eq!(elsewhere.status().as_u16(), 403);
    let body: serde_json::Value = elsewhere.json().await?;
    assert_eq!(
        body["errors"][0]["code"], "err.sender_uri.invalid",
        "{body}"
    );

    let cases: Vec<Case> = vec![
        (
            "as registered",
            person("3204051203800001", "Asep Sunandar", (1980, 3, 12), 1),
            PersonOutcome::Matched,
            vec![],
        ),
        (
            "a misspelt name",
            person("3204055708840002", "Siti Aminnah", (1984, 8, 17), 2),
            PersonOutcome::MatchedWithCorrections,
            vec![("full_name", "Siti Aminah")],
        ),
        (
            "an unknown NIK and nobody like the person",
            person("3204050101010009", "Yayan Ruhiyat", (2001, 1, 1), 1),
            PersonOutcome::NotFound,
            vec![],
        ),
        (
            "someone else's NIK",
            person("3204052006700005", "Asep Saepudin", (1988, 2, 2), 1),
            PersonOutcome::NikOfAnotherPerson,
            vec![],
        ),
        (
            "a NIK of the dead",
            person("3204051005500004", "Karta Wijaya", (1950, 5, 10), 1),
            PersonOutcome::Deceased,
            vec![],
        ),
        (
            "no NIK, found by linkage under an abbreviated name",
            person("", "Moch. Rizki Pratama", (1992, 11, 15), 1),
            PersonOutcome::MatchedWithCorrections,
            vec![
                ("nik", "3204051511920006"),
                ("full_name", "Muhammad Rizki Pratama"),
            ],
        ),
        (
            "no NIK and nobody like the person",
            person("", "Yayan Ruhiyat", (2001, 1, 1), 1),
            PersonOutcome::NoNik,
            vec![],
        ),
        (
            "no NIK, and two registry persons fit equally",
            person("", "Dede Kurnia", (2010, 2, 1), 1),
            PersonOutcome::InReview,
            vec![],
        ),
    ];
    for (what, p, outcome, corrections) in cases {
        let answer = match_person(&mut matching, &officer, p).await?;
        assert_eq!(
            PersonOutcome::try_from(answer.outcome)?,
            outcome,
            "{what}: {answer:?}"
        );
        let got: Vec<(&str, &str)> = answer
            .corrections
            .iter()
            .map(|c| (c.field.as_str(), c.registry_value.as_str()))
            .collect();
        assert_eq!(got, corrections, "{what}");
        if outcome == PersonOutcome::InReview {
            assert!(answer.reason.contains("within"), "{}", answer.reason);
        }
        if what.contains("linkage") {
            assert!(answer.score >= 0.95, "{what}: {}", answer.score);
        }
    }

    let outside = stack.token(Role::RegencyOfficer, "31.71");
    let refused = match_person(
        &mut matching,
        &outside,
        person("3204051203800001", "Asep Sunandar", (1980, 3, 12), 1),
    )
    .await
    .expect_err("another regency's village");
    assert_eq!(refused.code(), tonic::Code::PermissionDenied);

    // A proposal whose child has no NIK and a twin: a clerk decides.
    let operator = stack.token(Role::VillageOperator, VILLAGE);
    let mut h = household();
    h.families[0].members[2].nik.clear();
    let submitted = submit_household(&stack, &operator, "review-001", "REVIEW-0001", h).await?;
    let result = super::matching::matched(&stack, &submitted.proposal_id, &operator).await?;
    assert_eq!(
        result.outcome,
        HouseholdOutcome::InReview as i32,
        "{result:?}"
    );
    let child = &result.persons[2];
    assert_eq!(child.outcome, PersonOutcome::InReview as i32);
    assert!(!child.review_pair_id.is_empty());

    let listed = matching
        .list_review_pairs(authed(ListReviewPairsRequest::default(), &officer))
        .await?
        .into_inner();
    assert_eq!(listed.pairs.len(), 1);
    let pair = &listed.pairs[0];
    assert_eq!(pair.pair_id, child.review_pair_id);
    assert_eq!(
        pair.proposed.as_ref().map(|p| p.full_name.as_str()),
        Some("Dede Kurnia")
    );
    assert_eq!(
        pair.candidate.as_ref().map(|p| p.full_name.as_str()),
        Some("Dede Kurnia")
    );
    assert!(pair.reason.contains("within"), "{}", pair.reason);
    // Another regency sees nothing of it, and may not ask for this one.
    let elsewhere = matching
        .list_review_pairs(authed(
            ListReviewPairsRequest {
                region_code: VILLAGE.into(),
                ..Default::default()
            },
            &outside,
        ))
        .await
        .expect_err("outside the caller's scope");
    assert_eq!(elsewhere.code(), tonic::Code::PermissionDenied);

    let decide = |token: &str, decision: ReviewDecision| {
        authed(
            DecideReviewPairRequest {
                pair_id: pair.pair_id.clone(),
                decision: decision as i32,
                note: "KK shows one child of this name".into(),
            },
            token,
        )
    };
    let refused = matching
        .decide_review_pair(decide(&operator, ReviewDecision::SamePerson))
        .await
        .expect_err("a village operator does not decide");
    assert_eq!(refused.code(), tonic::Code::PermissionDenied);
    let decided = matching
        .decide_review_pair(decide(&officer, ReviewDecision::SamePerson))
        .await?
        .into_inner();
    assert_eq!(decided.decision, ReviewDecision::SamePerson as i32);
    assert_eq!(decided.decided_by, "e2e-officer");
    let again = matching
        .decide_review_pair(decide(&officer, ReviewDecision::DifferentPerson))
        .await
        .expect_err("decided once");
    assert_eq!(again.code(), tonic::Code::FailedPrecondition);
    assert!(again.message().contains("SAME_PERSON"), "{again:?}");

    // The decision stands in the match result, and is published.
    let now = matching
        .get_proposal_match(authed(
            GetProposalMatchRequest {
                proposal_id: submitted.proposal_id.clone(),
            },
            &operator,
        ))
        .await?
        .into_inner();
    let child = &now.persons[2];
    assert_eq!(child.outcome, PersonOutcome::MatchedWithCorrections as i32);
    let nik = child.corrections.iter().find(|c| c.field == "nik");
    let candidate_nik = pair
        .candidate
        .as_ref()
        .map(|c| c.nik.clone())
        .unwrap_or_default();
    assert_eq!(nik.map(|c| c.registry_value.clone()), Some(candidate_nik));
    assert_eq!(now.outcome, HouseholdOutcome::NeedsCorrection as i32);
    assert_eq!(
        count(
            &stack,
            "SELECT count(*) AS n FROM matching.outbox WHERE event_type = 'match.reviewed'"
        )
        .await?,
        1
    );
    let open = matching
        .list_review_pairs(authed(ListReviewPairsRequest::default(), &officer))
        .await?
        .into_inner();
    assert!(
        open.pairs.is_empty(),
        "decided pairs leave the default list"
    );
    Ok(())
}
