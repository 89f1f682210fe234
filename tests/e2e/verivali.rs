//! Verivali over the real stack: intake and matching as processes, verivali in the test
//! process on a paused clock. Every transition by the role that owns it, every refusal
//! (wrong role, wrong region, wrong state) leaving nothing behind, the return-and-resubmit
//! loop through a new match, the ministry's criteria and overrides; then complaints with
//! their 14-day deadline, life events, the QA sample and the six-monthly due list as the
//! clock moves on.

use chrono::Datelike;
use dtks_e2e::{Stack, authed};
use dtks_platform::auth::Role;
use dtks_platform::clock::PausedClock;
use dtks_proto::common::v1 as pb;
use dtks_proto::verivali::v1::verivali_service_client::VerivaliServiceClient;
use dtks_proto::verivali::v1::*;
use sea_orm::ConnectionTrait;
use serde_json::json;
use tonic::Code;
use tonic::transport::Channel;

use super::{REGISTRY, VILLAGE, count, household, submit_household};

const OTHER_VILLAGE: &str = "32.04.05.2002";

/// NIK, name, birth date, KK number.
pub(super) type Man = (&'static str, &'static str, (i32, i32, i32), &'static str);

/// Six more men of the village, one household each; the registry knows them all.
pub(super) const MEN: &[Man] = &[
    (
        "3204050101750002",
        "Ahmad Fauzi",
        (1975, 1, 1),
        "3204050101000102",
    ),
    (
        "3204050202760003",
        "Budi Santoso",
        (1976, 2, 2),
        "3204050101000103",
    ),
    (
        "3204050303770004",
        "Cecep Hidayat",
        (1977, 3, 3),
        "3204050101000104",
    ),
    (
        "3204050404780005",
        "Dadang Sugiarto",
        (1978, 4, 4),
        "3204050101000105",
    ),
    (
        "3204050505790006",
        "Endang Suryadi",
        (1979, 5, 5),
        "3204050101000106",
    ),
    (
        "3204050606810007",
        "Fajar Nugraha",
        (1981, 6, 6),
        "3204050101000107",
    ),
];

/// One more, whom the province sends back.
const GILANG: Man = (
    "3204050707820008",
    "Gilang Ramadhan",
    (1982, 7, 7),
    "3204050101000108",
);

fn registry() -> String {
    let mut csv = REGISTRY.to_owned();
    for (nik, name, (y, m, d), kk) in MEN.iter().chain([&GILANG]) {
        csv.push_str(&format!(
            "{nik},{kk},{name},Bandung,{y:04}-{m:02}-{d:02},1,{VILLAGE},\n"
        ));
    }
    csv
}

/// The household of `MEN[i]` (`GILANG` past the end), alone, proposed with `nik`.
pub(super) fn single(i: usize, nik: &str) -> pb::Household {
    let (_, name, (year, month, day), kk) = MEN.get(i).copied().unwrap_or(GILANG);
    let mut h = household();
    let mut head = h.families[0].members[0].clone();
    head.nik = nik.into();
    head.full_name = name.into();
    head.birth_date = Some(pb::Date { year, month, day });
    h.families[0].kk_number = kk.into();
    h.families[0].members = vec![head];
    h
}

pub(super) type Client = VerivaliServiceClient<Channel>;

pub(super) struct Officers {
    pub(super) village: String,
    pub(super) other_village: String,
    pub(super) regency: String,
    pub(super) other_regency: String,
    pub(super) bupati: String,
    pub(super) province: String,
    pub(super) ministry: String,
    pub(super) qa: String,
    pub(super) public: String,
}

fn officers(stack: &Stack) -> Officers {
    Officers {
        village: stack.token_for("op-2001", Role::VillageOperator, VILLAGE),
        other_village: stack.token_for("op-2002", Role::VillageOperator, OTHER_VILLAGE),
        regency: stack.token_for("dinsos-3204", Role::RegencyOfficer, "32.04"),
        other_regency: stack.token_for("dinsos-3273", Role::RegencyOfficer, "32.73"),
        bupati: stack.token_for("bupati-3204", Role::Bupati, "32.04"),
        province: stack.token_for("dinsos-32", Role::ProvinceOfficer, "32"),
        ministry: stack.token_for("assessor-1", Role::MinistryAssessor, ""),
        qa: stack.token_for("unpad-qa", Role::QaTeam, "32"),
        public: stack.token_for("citizen", Role::Public, ""),
    }
}

/// Intake and matching as processes, verivali here on `clock`.
pub(super) async fn start(clock: &PausedClock) -> anyhow::Result<(Stack, Client, Officers)> {
    start_with(clock, &[]).await
}

/// [`start`], with `more` services as processes.
pub(super) async fn start_with(
    clock: &PausedClock,
    more: &[&'static str],
) -> anyhow::Result<(Stack, Client, Officers)> {
    let mut services = vec!["intake", "matching"];
    services.extend_from_slice(more);
    let mut stack = Stack::start_services(&registry(), &services, &[]).await?;
    stack
        .start_verivali_with_clock(std::sync::Arc::new(clock.clone()))
        .await?;
    let client = VerivaliServiceClient::new(stack.channel("verivali").await?);
    let officers = officers(&stack);
    Ok((stack, client, officers))
}

/// Submits `household` and waits for its case (MATCHED); answers the case id.
pub(super) async fn propose(
    stack: &Stack,
    token: &str,
    key: &str,
    household: pb::Household,
) -> anyhow::Result<(String, String)> {
    let submitted = submit_household(stack, token, key, &key.to_uppercase(), household).await?;
    let proposal_id = submitted.proposal_id;
    let case_id = stack
        .eventually(120, "the case to open", || {
            let db = stack.db.clone();
            let proposal_id = proposal_id.clone();
            async move {
                let row = db
                    .query_one_raw(dtks_platform::db::stmt(
                        "SELECT case_id FROM verivali.cases WHERE proposal_id = $1::uuid AND state = 1",
                        [proposal_id.into()],
                    ))
                    .await?;
                Ok(row.and_then(|r| r.try_get::<uuid::Uuid>("", "case_id").ok()))
            }
        })
        .await?;
    Ok((case_id.to_string(), proposal_id))
}

pub(super) async fn state_of(
    client: &mut Client,
    token: &str,
    case_id: &str,
) -> anyhow::Result<CaseState> {
    let case = client
        .get_case(authed(
            GetCaseRequest {
                case_id: case_id.into(),
            },
            token,
        ))
        .await?
        .into_inner();
    Ok(CaseState::try_from(case.state)?)
}

pub(super) fn batch(ids: &[&String], note: &str) -> BatchRequest {
    BatchRequest {
        case_ids: ids.iter().map(|s| (*s).clone()).collect(),
        note: note.into(),
    }
}

pub(super) fn minutes_today(
    clock: &PausedClock,
    decisions: Vec<VillageDecision>,
) -> RecordVillageReviewRequest {
    use dtks_platform::clock::Clock;
    RecordVillageReviewRequest {
        minutes_number: "BA/MUSDES/2001/12".into(),
        minutes_date: Some(dtks_platform::convert::pb_date(clock.now().date_naive())),
        attendees: 37,
        decisions,
    }
}

pub(super) fn approve(case_id: &str) -> VillageDecision {
    VillageDecision {
        case_id: case_id.into(),
        approved: true,
        note: String::new(),
    }
}

pub(super) fn visit(case_id: &str, confirmed: bool) -> RecordFieldVerificationRequest {
    RecordFieldVerificationRequest {
        case_id: case_id.into(),
        interview_summary: "head of household interviewed at home".into(),
        observation_summary: if confirmed {
            "dwelling as declared".into()
        } else {
            "nobody of this name lives at the address".into()
        },
        geotag: Some(pb::GeoPoint {
            latitude: -7.01,
            longitude: 107.61,
        }),
        photo_references: vec!["s3://dtks-photos/visit-1.jpg".into()],
        confirmed,
        corrected: None,
    }
}

fn expect_code<T: std::fmt::Debug>(
    result: Result<tonic::Response<T>, tonic::Status>,
    code: Code,
    contains: &str,
) {
    match result {
        Ok(answer) => panic!("expected {code:?}, got {answer:?}"),
        Err(status) => {
            assert_eq!(status.code(), code, "{status:?}");
            assert!(
                status.message().contains(contains),
                "{:?} does not contain {contains:?}",
                status.message()
            );
        }
    }
}

/// Village review → field verification → sign-off → forwarding, as one batch per step.
async fn walk_to_ministry(
    client: &mut Client,
    o: &Officers,
    clock: &PausedClock,
    ids: &[&String],
) -> anyhow::Result<()> {
    let reviewed = client
        .record_village_review(authed(
            minutes_today(clock, ids.iter().map(|id| approve(id)).collect()),
            &o.village,
        ))
        .await?
        .into_inner();
    assert_eq!(reviewed.applied as usize, ids.len());
    for id in ids {
        client
            .record_field_verification(authed(visit(id, true), &o.regency))
            .await?;
    }
    client.sign_off(authed(batch(ids, ""), &o.bupati)).await?;
    client
        .forward_to_ministry(authed(batch(ids, ""), &o.province))
        .await?;
    Ok(())
}

/// Eight households walked through the whole workflow on one stack, step by step: the
/// ids of their cases and proposals, the officers, the paused clock.
struct Walk {
    clock: PausedClock,
    stack: Stack,
    client: Client,
    o: Officers,
    asep: String,
    ahmad: String,
    ahmad_proposal: String,
    budi: String,
    budi_proposal: String,
    cecep: String,
    dadang: String,
    dadang_proposal: String,
    endang: String,
    fajar: String,
    gilang: String,
}

impl Walk {
    /// The stack, and eight households proposed and matched.
    async fn propose_eight() -> anyhow::Result<Self> {
        let clock = PausedClock::at(dtks_e2e::time::now());
        let (stack, client, o) = start(&clock).await?;

        let (asep, _) = propose(&stack, &o.village, "vv-asep", household()).await?;
        let (ahmad, ahmad_proposal) =
            propose(&stack, &o.village, "vv-ahmad", single(0, MEN[0].0)).await?;
        let (budi, budi_proposal) =
            propose(&stack, &o.village, "vv-budi", single(1, MEN[1].0)).await?;
        let (cecep, _) = propose(&stack, &o.village, "vv-cecep", single(2, MEN[2].0)).await?;
        // Dadang and Endang are proposed with NIKs Dukcapil does not know (criterion 2).
        let (dadang, dadang_proposal) = propose(
            &stack,
            &o.village,
            "vv-dadang",
            single(3, "3204050404780099"),
        )
        .await?;
        let (endang, _) = propose(
            &stack,
            &o.village,
            "vv-endang",
            single(4, "3204050505790098"),
        )
        .await?;
        let (fajar, _) = propose(&stack, &o.village, "vv-fajar", single(5, MEN[5].0)).await?;
        let (gilang, _) = propose(&stack, &o.village, "vv-gilang", single(6, GILANG.0)).await?;
        Ok(Walk {
            clock,
            stack,
            client,
            o,
            asep,
            ahmad,
            ahmad_proposal,
            budi,
            budi_proposal,
            cecep,
            dadang,
            dadang_proposal,
            endang,
            fajar,
            gilang,
        })
    }

    /// The eight cases' ids, in the order they were proposed.
    fn all(&self) -> [&String; 8] {
        [
            &self.asep,
            &self.ahmad,
            &self.budi,
            &self.cecep,
            &self.dadang,
            &self.endang,
            &self.fajar,
            &self.gilang,
        ]
    }

    async fn queues_hold_the_matched_cases(&mut self) -> anyhow::Result<()> {
        let Walk { client, o, .. } = self;
        // The village operator's work queue holds the eight matched cases; the Bupati's none.
        let queue = client
            .work_queue(authed(WorkQueueRequest::default(), &o.village))
            .await?
            .into_inner();
        assert_eq!(queue.cases.len(), 8);
        assert!(
            queue
                .cases
                .iter()
                .all(|c| c.state == CaseState::Matched as i32)
        );
        let queue = client
            .work_queue(authed(WorkQueueRequest::default(), &o.bupati))
            .await?
            .into_inner();
        assert!(queue.cases.is_empty());
        expect_code(
            client
                .work_queue(authed(WorkQueueRequest::default(), &o.public))
                .await,
            Code::PermissionDenied,
            "may not call WorkQueue",
        );
        Ok(())
    }

    async fn refusals_before_the_village_review_leave_no_trace(&mut self) -> anyhow::Result<()> {
        let Walk {
            clock,
            stack,
            client,
            o,
            asep,
            ahmad,
            ..
        } = self;
        // Refusals before the village review, none of which leaves a trace.
        let history_before =
            count(stack, "SELECT count(*) AS n FROM verivali.case_history").await?;
        let outbox_before = count(stack, "SELECT count(*) AS n FROM verivali.outbox").await?;
        expect_code(
            client
                .record_village_review(authed(minutes_today(clock, vec![approve(asep)]), &o.bupati))
                .await,
            Code::PermissionDenied,
            "may not call RecordVillageReview",
        );
        expect_code(
            client
                .record_village_review(authed(
                    minutes_today(clock, vec![approve(asep)]),
                    &o.other_village,
                ))
                .await,
            Code::PermissionDenied,
            "outside the caller's scope",
        );
        expect_code(
            client.sign_off(authed(batch(&[asep], ""), &o.bupati)).await,
            Code::FailedPrecondition,
            "the case is CASE_STATE_MATCHED; to sign off it must be CASE_STATE_FIELD_VERIFIED",
        );
        let mut future = minutes_today(clock, vec![approve(asep)]);
        future.minutes_date = Some(dtks_e2e::time::date_from_today(30));
        expect_code(
            client
                .record_village_review(authed(future, &o.village))
                .await,
            Code::InvalidArgument,
            "minutes_date",
        );
        // Finding 9: minutes of a deliberation more than a year ago (1990, in the probe).
        for days in [-400, -36_500] {
            let mut stale = minutes_today(clock, vec![approve(asep)]);
            stale.minutes_date = Some(dtks_e2e::time::date_from_today(days));
            expect_code(
                client
                    .record_village_review(authed(stale, &o.village))
                    .await,
                Code::InvalidArgument,
                "more than a year old",
            );
        }
        let unexplained = minutes_today(
            clock,
            vec![VillageDecision {
                case_id: ahmad.clone(),
                approved: false,
                note: String::new(),
            }],
        );
        expect_code(
            client
                .record_village_review(authed(unexplained, &o.village))
                .await,
            Code::InvalidArgument,
            "decisions[0].note",
        );
        assert_eq!(
            count(stack, "SELECT count(*) AS n FROM verivali.case_history").await?,
            history_before
        );
        assert_eq!(
            count(stack, "SELECT count(*) AS n FROM verivali.outbox").await?,
            outbox_before
        );
        Ok(())
    }

    async fn the_musdes_decides_and_a_second_review_is_refused(&mut self) -> anyhow::Result<()> {
        let all = self.all().map(String::clone);
        let all = [
            &all[0], &all[1], &all[2], &all[3], &all[4], &all[5], &all[6], &all[7],
        ];
        let Walk {
            clock,
            client,
            o,
            asep,
            ahmad,
            ..
        } = self;
        // The musdes: Ahmad is not approved (final), the others are.
        let mut decisions: Vec<VillageDecision> = all.iter().map(|id| approve(id)).collect();
        decisions[1] = VillageDecision {
            case_id: ahmad.clone(),
            approved: false,
            note: "already receives assistance as part of his parents' household".into(),
        };
        let reviewed = client
            .record_village_review(authed(minutes_today(clock, decisions), &o.village))
            .await?
            .into_inner();
        assert_eq!((reviewed.applied, reviewed.rejected), (8, 1));
        assert_eq!(
            state_of(client, &o.village, ahmad).await?,
            CaseState::Rejected
        );
        assert_eq!(
            state_of(client, &o.village, asep).await?,
            CaseState::VillageReviewed
        );
        // A second review of the same case is refused, naming its state.
        expect_code(
            client
                .record_village_review(authed(
                    minutes_today(clock, vec![approve(asep)]),
                    &o.village,
                ))
                .await,
            Code::FailedPrecondition,
            "CASE_STATE_VILLAGE_REVIEWED",
        );
        Ok(())
    }

    async fn field_verification_refuses_rejects_and_corrects(&mut self) -> anyhow::Result<()> {
        let Walk {
            client,
            o,
            asep,
            budi,
            cecep,
            dadang,
            endang,
            fajar,
            gilang,
            ..
        } = self;
        // Field verification: the wrong regency, the wrong role, an identity change, refused.
        expect_code(
            client
                .record_field_verification(authed(visit(asep, true), &o.other_regency))
                .await,
            Code::PermissionDenied,
            "outside the caller's scope",
        );
        expect_code(
            client
                .record_field_verification(authed(visit(asep, true), &o.village))
                .await,
            Code::PermissionDenied,
            "may not call RecordFieldVerification",
        );
        let mut renamed = visit(asep, true);
        let mut h = household();
        h.families[0].members[2].full_name = "Dede Kurniawan".into();
        renamed.corrected = Some(h);
        expect_code(
            client
                .record_field_verification(authed(renamed, &o.regency))
                .await,
            Code::InvalidArgument,
            "corrected.families[0].members[2]",
        );
        // Budi is not found at the address: rejected, final.
        let rejected = client
            .record_field_verification(authed(visit(budi, false), &o.regency))
            .await?
            .into_inner();
        assert_eq!(rejected.state, CaseState::Rejected as i32);
        // Asep's visit corrects the dwelling; the case keeps the correction.
        let mut corrected_visit = visit(asep, true);
        let mut h = household();
        if let Some(d) = h.dwelling.as_mut() {
            d.floor_area_m2 = 30.0;
        }
        corrected_visit.corrected = Some(h);
        let visited = client
            .record_field_verification(authed(corrected_visit, &o.regency))
            .await?
            .into_inner();
        assert_eq!(visited.state, CaseState::FieldVerified as i32);
        let field = visited.field_visit.clone().expect("field visit");
        assert_eq!(field.corrected_fields, vec!["dwelling".to_owned()]);
        assert_eq!(field.officer_id, "dinsos-3204");
        assert_eq!(
            visited
                .household
                .as_ref()
                .and_then(|h| h.dwelling.as_ref())
                .map(|d| d.floor_area_m2),
            Some(30.0)
        );
        for id in [&cecep, &dadang, &endang, &fajar, &gilang] {
            client
                .record_field_verification(authed(visit(id, true), &o.regency))
                .await?;
        }
        Ok(())
    }

    async fn sign_off_is_all_or_nothing_and_the_province_forwards(&mut self) -> anyhow::Result<()> {
        let Walk {
            stack,
            client,
            o,
            asep,
            budi,
            cecep,
            dadang,
            endang,
            fajar,
            gilang,
            ..
        } = self;
        // Sign-off is all or nothing: a batch naming Budi (rejected) changes no case.
        expect_code(
            client
                .sign_off(authed(batch(&[asep, budi], ""), &o.bupati))
                .await,
            Code::FailedPrecondition,
            &format!("case {budi}"),
        );
        assert_eq!(
            state_of(client, &o.bupati, asep).await?,
            CaseState::FieldVerified
        );
        expect_code(
            client
                .return_to_region(authed(batch(&[cecep], "  "), &o.bupati))
                .await,
            Code::InvalidArgument,
            "note",
        );
        // The Bupati sends Cecep back; the rest is signed off in one batch.
        let back = client
            .return_to_region(authed(
                batch(&[cecep], "the dwelling photo does not show the house"),
                &o.bupati,
            ))
            .await?
            .into_inner();
        assert_eq!(back.returned, 1);
        let other_bupati = stack.token_for("bupati-3273", Role::Bupati, "32.73");
        expect_code(
            client
                .sign_off(authed(batch(&[asep], ""), &other_bupati))
                .await,
            Code::PermissionDenied,
            "outside the caller's scope 32.73",
        );
        let signed = client
            .sign_off(authed(
                batch(&[asep, dadang, endang, fajar, gilang], "SK Bupati 12/2026"),
                &o.bupati,
            ))
            .await?
            .into_inner();
        assert_eq!(signed.applied, 5);
        // The province sends Gilang back before forwarding; a village operator may not.
        expect_code(
            client
                .return_to_region(authed(batch(&[gilang], "no minutes attached"), &o.village))
                .await,
            Code::PermissionDenied,
            "may not call ReturnToRegion",
        );
        client
            .return_to_region(authed(
                batch(&[gilang], "the sign-off letter is unsigned"),
                &o.province,
            ))
            .await?;
        assert_eq!(
            state_of(client, &o.province, gilang).await?,
            CaseState::Returned
        );
        expect_code(
            client
                .forward_to_ministry(authed(batch(&[asep], ""), &o.bupati))
                .await,
            Code::PermissionDenied,
            "may not call ForwardToMinistry",
        );
        client
            .forward_to_ministry(authed(
                batch(&[asep, dadang, endang, fajar], ""),
                &o.province,
            ))
            .await?;
        Ok(())
    }

    async fn the_ministry_assesses_with_reasoned_overrides(&mut self) -> anyhow::Result<()> {
        let Walk {
            client,
            o,
            asep,
            dadang,
            endang,
            fajar,
            ..
        } = self;
        // The ministry. Overrides need a written reason.
        expect_code(
            client
                .assess(authed(
                    AssessRequest {
                        case_id: endang.clone(),
                        r#override: Override::Accept as i32,
                        override_reason: String::new(),
                    },
                    &o.ministry,
                ))
                .await,
            Code::InvalidArgument,
            "override_reason",
        );
        expect_code(
            client
                .assess(authed(
                    AssessRequest {
                        case_id: asep.clone(),
                        ..Default::default()
                    },
                    &o.regency,
                ))
                .await,
            Code::PermissionDenied,
            "may not call Assess",
        );
        // Asep: all five criteria pass.
        let accepted = client
            .assess(authed(
                AssessRequest {
                    case_id: asep.clone(),
                    ..Default::default()
                },
                &o.ministry,
            ))
            .await?
            .into_inner();
        assert_eq!(accepted.state, CaseState::Accepted as i32);
        let assessment = accepted.assessment.clone().expect("assessment");
        assert!(assessment.accepted);
        assert_eq!(assessment.criteria.len(), 5);
        assert!(
            assessment
                .criteria
                .iter()
                .all(|c| c.verdict == CriterionVerdict::Pass as i32)
        );
        // Endang fails criterion 2; the assessor accepts him anyway, with a reason.
        let overridden = client
            .assess(authed(
                AssessRequest {
                    case_id: endang.clone(),
                    r#override: Override::Accept as i32,
                    override_reason: "NIK issued last week; Dukcapil's copy lags".into(),
                },
                &o.ministry,
            ))
            .await?
            .into_inner();
        assert_eq!(overridden.state, CaseState::Accepted as i32);
        let a = overridden.assessment.expect("assessment");
        assert!(a.accepted);
        assert_eq!(a.criteria[1].verdict, CriterionVerdict::Fail as i32);
        assert!(a.override_reason.contains("lags"));
        // Fajar passes; the assessor returns him anyway, with a reason.
        let overridden = client
            .assess(authed(
                AssessRequest {
                    case_id: fajar.clone(),
                    r#override: Override::Return as i32,
                    override_reason: "income declared twice in the musdes minutes".into(),
                },
                &o.ministry,
            ))
            .await?
            .into_inner();
        assert_eq!(overridden.state, CaseState::Returned as i32);
        // Dadang, by the automatic verdict: returned under criterion 2.
        let verdicts = client
            .assess_batch(authed(batch(&[dadang], ""), &o.ministry))
            .await?
            .into_inner();
        assert_eq!((verdicts.accepted, verdicts.returned), (0, 1));
        let returned = client
            .get_case(authed(
                GetCaseRequest {
                    case_id: dadang.clone(),
                },
                &o.regency,
            ))
            .await?
            .into_inner();
        assert_eq!(returned.state, CaseState::Returned as i32);
        let a = returned.assessment.expect("assessment");
        assert_eq!(
            a.criteria[1].verdict,
            CriterionVerdict::Fail as i32,
            "{a:?}"
        );
        assert!(
            a.criteria[1].reasons[0].contains("family 1 member 1"),
            "{a:?}"
        );
        Ok(())
    }

    async fn dadang_is_corrected_resubmitted_and_accepted(&mut self) -> anyhow::Result<()> {
        let Walk {
            stack,
            client,
            o,
            asep,
            dadang,
            ..
        } = self;
        // The loop: Dadang's NIK corrected and resubmitted; matched again; through the
        // workflow again; accepted.
        expect_code(
            client
                .resubmit(authed(
                    ResubmitRequest {
                        case_id: asep.clone(),
                        corrected: Some(household()),
                        note: String::new(),
                    },
                    &o.regency,
                ))
                .await,
            Code::FailedPrecondition,
            "CASE_STATE_ACCEPTED",
        );
        let mut incomplete = single(3, MEN[3].0);
        if let Some(d) = incomplete.dwelling.as_mut() {
            d.roof = 0;
        }
        expect_code(
            client
                .resubmit(authed(
                    ResubmitRequest {
                        case_id: dadang.clone(),
                        corrected: Some(incomplete),
                        note: String::new(),
                    },
                    &o.regency,
                ))
                .await,
            Code::InvalidArgument,
            "corrected.dwelling.roof",
        );
        let resubmitted = client
            .resubmit(authed(
                ResubmitRequest {
                    case_id: dadang.clone(),
                    corrected: Some(single(3, MEN[3].0)),
                    note: "NIK copied from the family card".into(),
                },
                &o.regency,
            ))
            .await?
            .into_inner();
        assert_eq!(resubmitted.state, CaseState::Resubmitted as i32);
        assert_eq!(resubmitted.resubmissions, 1);
        stack
            .eventually(120, "the resubmitted case to be matched again", || {
                let mut client = client.clone();
                let (token, id) = (o.regency.clone(), dadang.clone());
                async move {
                    Ok(
                        (state_of(&mut client, &token, &id).await? == CaseState::VillageReviewed)
                            .then_some(()),
                    )
                }
            })
            .await?;
        client
            .record_field_verification(authed(visit(dadang, true), &o.regency))
            .await?;
        client
            .sign_off(authed(batch(&[dadang], ""), &o.bupati))
            .await?;
        client
            .forward_to_ministry(authed(batch(&[dadang], ""), &o.province))
            .await?;
        let verdicts = client
            .assess_batch(authed(batch(&[dadang], ""), &o.ministry))
            .await?
            .into_inner();
        assert_eq!((verdicts.accepted, verdicts.returned), (1, 0));

        // Dadang's history is the whole loop, each step by its office.
        let case = client
            .get_case(authed(
                GetCaseRequest {
                    case_id: dadang.clone(),
                },
                &o.province,
            ))
            .await?
            .into_inner();
        let path: Vec<(i32, String)> = case
            .history
            .iter()
            .map(|t| (t.to, t.actor_role.clone()))
            .collect();
        use CaseState as S;
        let expected: Vec<(i32, String)> = [
            (S::Matched, "service"),
            (S::VillageReviewed, "village_operator"),
            (S::FieldVerified, "regency_officer"),
            (S::SignedOff, "bupati"),
            (S::Forwarded, "province_officer"),
            (S::Returned, "ministry_assessor"),
            (S::Resubmitted, "regency_officer"),
            (S::VillageReviewed, "service"),
            (S::FieldVerified, "regency_officer"),
            (S::SignedOff, "bupati"),
            (S::Forwarded, "province_officer"),
            (S::Accepted, "ministry_assessor"),
        ]
        .into_iter()
        .map(|(s, r)| (s as i32, r.to_owned()))
        .collect();
        assert_eq!(path, expected);
        Ok(())
    }

    async fn intake_and_the_events_follow(&mut self) -> anyhow::Result<()> {
        let Walk {
            stack,
            ahmad_proposal,
            budi_proposal,
            dadang_proposal,
            ..
        } = self;
        // Intake follows: rejected (final) and accepted proposals.
        stack
            .eventually(60, "intake to follow verivali", || async {
                let status = |id: &str| {
                    format!(
                        "SELECT status::bigint AS n FROM intake.proposals WHERE proposal_id = '{id}'"
                    )
                };
                Ok((count(stack, &status(ahmad_proposal)).await? == 6
                    && count(stack, &status(budi_proposal)).await? == 6
                    && count(stack, &status(dadang_proposal)).await? == 3)
                    .then_some(()))
            })
            .await?;
        // Events: one household.accepted per accepted case (Asep, Endang, Dadang), one
        // household.returned per return or rejection (Ahmad, Budi, Cecep, Fajar, Gilang,
        // Dadang).
        let events =
            |t: &str| format!("SELECT count(*) AS n FROM verivali.outbox WHERE event_type = '{t}'");
        assert_eq!(count(stack, &events("household.accepted")).await?, 3);
        assert_eq!(count(stack, &events("household.returned")).await?, 6);
        assert_eq!(count(stack, &events("proposal.resubmitted")).await?, 1);
        assert_eq!(
            count(stack, &events("case.state_changed")).await?,
            count(stack, "SELECT count(*) AS n FROM verivali.case_history").await?
        );
        Ok(())
    }

    async fn listing_by_state_and_age_and_the_regency_queue(&mut self) -> anyhow::Result<()> {
        let Walk {
            clock,
            client,
            o,
            cecep,
            fajar,
            gilang,
            ..
        } = self;
        // Listing by state and age: three days on, the returned cases have waited three
        // days; none has waited four.
        clock.advance(chrono::Duration::days(3));
        let listed = client
            .list_cases(authed(
                ListCasesRequest {
                    region_code: "32.04".into(),
                    state: CaseState::Returned as i32,
                    min_age_days: 3,
                    page: Some(pb::PageRequest {
                        page_size: 1,
                        page_token: String::new(),
                    }),
                },
                &o.regency,
            ))
            .await?
            .into_inner();
        assert_eq!(listed.cases.len(), 1);
        let token = listed.page.expect("page").next_page_token;
        assert!(!token.is_empty());
        let rest = client
            .list_cases(authed(
                ListCasesRequest {
                    region_code: "32.04".into(),
                    state: CaseState::Returned as i32,
                    min_age_days: 3,
                    page: Some(pb::PageRequest {
                        page_size: 2,
                        page_token: token,
                    }),
                },
                &o.regency,
            ))
            .await?
            .into_inner();
        assert!(rest.page.as_ref().expect("page").next_page_token.is_empty());
        let mut seen: Vec<String> = listed
            .cases
            .iter()
            .chain(&rest.cases)
            .map(|c| c.case_id.clone())
            .collect();
        seen.sort();
        let mut want = vec![cecep.clone(), fajar.clone(), gilang.clone()];
        want.sort();
        assert_eq!(seen, want);
        let older = client
            .list_cases(authed(
                ListCasesRequest {
                    region_code: "32.04".into(),
                    state: CaseState::Returned as i32,
                    min_age_days: 4,
                    page: None,
                },
                &o.regency,
            ))
            .await?
            .into_inner();
        assert!(older.cases.is_empty());
        expect_code(
            client
                .list_cases(authed(
                    ListCasesRequest {
                        region_code: "32.73".into(),
                        ..Default::default()
                    },
                    &o.regency,
                ))
                .await,
            Code::PermissionDenied,
            "outside the caller's scope",
        );
        // The regency's queue: the three returned cases wait for it.
        let queue = client
            .work_queue(authed(WorkQueueRequest::default(), &o.regency))
            .await?
            .into_inner();
        assert_eq!(queue.cases.len(), 3);
        Ok(())
    }

    async fn every_command_refuses_the_wrong_role_region_and_state(
        &mut self,
    ) -> anyhow::Result<()> {
        let Walk {
            stack,
            client,
            o,
            asep,
            ..
        } = self;
        let other_bupati = stack.token_for("bupati-3273", Role::Bupati, "32.73");
        // Every command refuses the wrong role, the wrong region and the wrong state (Asep's
        // case is ACCEPTED), and a refused command leaves no trace.
        let history_before =
            count(stack, "SELECT count(*) AS n FROM verivali.case_history").await?;
        let outbox_before = count(stack, "SELECT count(*) AS n FROM verivali.outbox").await?;
        let other_province = stack.token_for("dinsos-33", Role::ProvinceOfficer, "33");
        let commands: [(Command, &str, Option<&str>); 8] = [
            (Command::VillageReview, &o.village, Some(&o.other_village)),
            (Command::FieldVisit, &o.regency, Some(&o.other_regency)),
            (Command::SignOff, &o.bupati, Some(&other_bupati)),
            (Command::Forward, &o.province, Some(&other_province)),
            (Command::Assess, &o.ministry, None),
            (Command::AssessBatch, &o.ministry, None),
            (Command::Return, &o.ministry, None),
            (Command::Resubmit, &o.regency, Some(&o.other_regency)),
        ];
        for (command, owner, foreign) in commands {
            let refused = command.send(client, asep, &o.public).await;
            assert_eq!(
                refused.code(),
                Code::PermissionDenied,
                "{command:?} by the public: {refused:?}"
            );
            assert!(
                refused.message().contains("may not"),
                "{command:?}: {refused:?}"
            );
            if let Some(foreign) = foreign {
                let refused = command.send(client, asep, foreign).await;
                assert_eq!(
                    refused.code(),
                    Code::PermissionDenied,
                    "{command:?} from afar: {refused:?}"
                );
                assert!(
                    refused.message().contains("outside the caller's scope"),
                    "{command:?}: {refused:?}"
                );
            }
            let refused = command.send(client, asep, owner).await;
            assert_eq!(
                refused.code(),
                Code::FailedPrecondition,
                "{command:?}: {refused:?}"
            );
            assert!(
                refused
                    .message()
                    .contains("the case is CASE_STATE_ACCEPTED"),
                "{command:?}: {refused:?}"
            );
        }
        assert_eq!(
            count(stack, "SELECT count(*) AS n FROM verivali.case_history").await?,
            history_before
        );
        assert_eq!(
            count(stack, "SELECT count(*) AS n FROM verivali.outbox").await?,
            outbox_before
        );
        Ok(())
    }

    async fn the_command_line_shows_the_same(&mut self) -> anyhow::Result<()> {
        let Walk {
            stack,
            o,
            asep,
            cecep,
            dadang,
            fajar,
            gilang,
            ..
        } = self;
        // The same from the command line: the regency's queue, a case's file, a refusal.
        let (code, out, err) = stack.dtksctl(&o.regency, &["verivali", "queue"]).await?;
        assert_eq!(code, 0, "{err}");
        for id in [&cecep, &fajar, &gilang] {
            assert!(out.contains(id.as_str()), "{out}");
        }
        assert!(out.contains("\treturned\t"), "{out}");
        let (code, out, err) = stack
            .dtksctl(&o.regency, &["verivali", "case", dadang])
            .await?;
        assert_eq!(code, 0, "{err}");
        assert!(out.contains("case ") && out.contains("(accepted)"), "{out}");
        assert!(out.contains("resubmitted -> village_reviewed"), "{out}");
        assert!(out.contains("criterion 2 pass"), "{out}");
        let ids = std::env::temp_dir().join(format!("dtks-cases-{}.txt", stack.run_id));
        std::fs::write(&ids, format!("# accepted already\n{asep}\n"))?;
        let (code, _, err) = stack
            .dtksctl(
                &o.bupati,
                &["verivali", "sign-off", &format!("@{}", ids.display())],
            )
            .await?;
        assert_eq!(code, 2);
        assert!(
            err.contains("FailedPrecondition") && err.contains("CASE_STATE_ACCEPTED"),
            "{err}"
        );
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_transition_and_refusal_with_the_return_and_resubmit_loop() -> anyhow::Result<()> {
    let mut walk = Walk::propose_eight().await?;
    walk.queues_hold_the_matched_cases().await?;
    walk.refusals_before_the_village_review_leave_no_trace()
        .await?;
    walk.the_musdes_decides_and_a_second_review_is_refused()
        .await?;
    walk.field_verification_refuses_rejects_and_corrects()
        .await?;
    walk.sign_off_is_all_or_nothing_and_the_province_forwards()
        .await?;
    walk.the_ministry_assesses_with_reasoned_overrides().await?;
    walk.dadang_is_corrected_resubmitted_and_accepted().await?;
    walk.intake_and_the_events_follow().await?;
    walk.listing_by_state_and_age_and_the_regency_queue()
        .await?;
    walk.every_command_refuses_the_wrong_role_region_and_state()
        .await?;
    walk.the_command_line_shows_the_same().await?;
    Ok(())
}

/// Each command of the workflow, sent for one case; for the refusal checks.
#[derive(Debug, Clone, Copy)]
enum Command {
    VillageReview,
    FieldVisit,
    SignOff,
    Forward,
    Assess,
    AssessBatch,
    Return,
    Resubmit,
}

impl Command {
    /// Sends the command for `case_id` as `token`; answers the refusal.
    async fn send(self, client: &mut Client, case_id: &str, token: &str) -> tonic::Status {
        let ids = [case_id.to_owned()];
        let one = || batch(&[&ids[0]], "checked again");
        let answer = match self {
            Command::VillageReview => {
                let clock = PausedClock::at(dtks_e2e::time::now());
                client
                    .record_village_review(authed(
                        minutes_today(&clock, vec![approve(case_id)]),
                        token,
                    ))
                    .await
                    .map(|_| ())
            }
            Command::FieldVisit => client
                .record_field_verification(authed(visit(case_id, true), token))
                .await
                .map(|_| ()),
            Command::SignOff => client.sign_off(authed(one(), token)).await.map(|_| ()),
            Command::Forward => client
                .forward_to_ministry(authed(one(), token))
                .await
                .map(|_| ()),
            Command::Assess => client
                .assess(authed(
                    AssessRequest {
                        case_id: case_id.into(),
                        ..Default::default()
                    },
                    token,
                ))
                .await
                .map(|_| ()),
            Command::AssessBatch => client.assess_batch(authed(one(), token)).await.map(|_| ()),
            Command::Return => client
                .return_to_region(authed(one(), token))
                .await
                .map(|_| ()),
            Command::Resubmit => client
                .resubmit(authed(
                    ResubmitRequest {
                        case_id: case_id.into(),
                        corrected: Some(household()),
                        note: String::new(),
                    },
                    token,
                ))
                .await
                .map(|_| ()),
        };
        answer.expect_err("the command is refused")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn complaints_life_events_qa_samples_and_the_six_monthly_update_on_a_paused_clock()
-> anyhow::Result<()> {
    use dtks_platform::clock::Clock;
    let clock = PausedClock::at(dtks_e2e::time::now());
    let (stack, mut client, o) = start(&clock).await?;
    let mut ids = Vec::new();
    let mut proposals = Vec::new();
    for (i, (nik, ..)) in MEN.iter().enumerate() {
        let (case, proposal) =
            propose(&stack, &o.village, &format!("aft-{i}"), single(i, nik)).await?;
        ids.push(case);
        proposals.push(proposal);
    }
    let refs: Vec<&String> = ids.iter().collect();
    walk_to_ministry(&mut client, &o, &clock, &refs).await?;
    let verdicts = client
        .assess_batch(authed(batch(&refs, ""), &o.ministry))
        .await?
        .into_inner();
    assert_eq!(verdicts.accepted, 6);
    let households: Vec<String> = {
        let mut out = Vec::new();
        for id in &ids {
            out.push(
                client
                    .get_case(authed(
                        GetCaseRequest {
                            case_id: id.clone(),
                        },
                        &o.ministry,
                    ))
                    .await?
                    .into_inner()
                    .household_id,
            );
        }
        out
    };

    // QA: the regency's sample of the month, drawn twice, is the same sample, and is
    // the draw anyone can make again from the seed and the accepted cases.
    let now = clock.now();
    let period = pb::Period {
        year: now.year(),
        month: now.month() as i32,
    };
    let draw = DrawQaSampleRequest {
        regency_code: "32.04".into(),
        period: Some(period),
        per_mille: 500,
        qa_team: "Universitas Padjadjaran".into(),
    };
    expect_code(
        client
            .draw_qa_sample(authed(draw.clone(), &o.regency))
            .await,
        Code::PermissionDenied,
        "may not",
    );
    let sample = client
        .draw_qa_sample(authed(draw.clone(), &o.qa))
        .await?
        .into_inner();
    assert_eq!(sample.population, 6);
    assert_eq!(sample.items.len(), 3);
    let again = client
        .draw_qa_sample(authed(draw.clone(), &o.ministry))
        .await?
        .into_inner();
    assert_eq!(again.sample_id, sample.sample_id);
    assert_eq!(again.items, sample.items);
    let population: Vec<uuid::Uuid> = ids
        .iter()
        .map(|id| uuid::Uuid::parse_str(id))
        .collect::<Result<_, _>>()?;
    let expected: Vec<String> = dtks_verivali::qa::draw(&sample.seed, &population, 3)
        .iter()
        .map(ToString::to_string)
        .collect();
    let drawn: Vec<String> = sample.items.iter().map(|i| i.case_id.clone()).collect();
    assert_eq!(drawn, expected);
    let record = |case_id: &str, verdict: QaVerdict, note: &str| RecordQaResultRequest {
        sample_id: sample.sample_id.clone(),
        case_id: case_id.into(),
        verdict: verdict as i32,
        note: note.into(),
    };
    expect_code(
        client
            .record_qa_result(authed(record(&drawn[0], QaVerdict::Disagrees, ""), &o.qa))
            .await,
        Code::InvalidArgument,
        "note",
    );
    expect_code(
        client
            .record_qa_result(authed(record(&drawn[0], QaVerdict::Agrees, ""), &o.regency))
            .await,
        Code::PermissionDenied,
        "may not",
    );
    client
        .record_qa_result(authed(record(&drawn[0], QaVerdict::Agrees, ""), &o.qa))
        .await?;
    client
        .record_qa_result(authed(
            record(&drawn[1], QaVerdict::Disagrees, "a car in the yard"),
            &o.qa,
        ))
        .await?;
    expect_code(
        client
            .record_qa_result(authed(record(&drawn[1], QaVerdict::Agrees, ""), &o.qa))
            .await,
        Code::FailedPrecondition,
        "already recorded as QA_VERDICT_DISAGREES",
    );
    let report = client
        .qa_report(authed(
            QaReportRequest {
                region_code: "32".into(),
                period: Some(period),
            },
            &o.province,
        ))
        .await?
        .into_inner();
    assert_eq!(report.regencies.len(), 1);
    let r = &report.regencies[0];
    assert_eq!((r.sampled, r.recorded, r.disagreements), (3, 2, 1));
    assert!((r.disagreement_rate - 0.5).abs() < 1e-9);

    // A complaint from the public (finding 7): a receipt, the same for a household DTKS
    // does not hold (kept for the officers) as for one it holds, with nothing of the
    // task it opened — no existence oracle, no task ids for the public.
    let public = |household_id: String| {
        let mut client = client.clone();
        let token = o.public.clone();
        async move {
            client
                .file_complaint(authed(
                    FileComplaintRequest {
                        household_id,
                        text: "the family owns two cars and a shop".into(),
                        evidence_references: vec!["photo://complaint-1.jpg".into()],
                    },
                    &token,
                ))
                .await
                .map(|r| r.into_inner())
        }
    };
    let unknown = public(uuid::Uuid::now_v7().to_string()).await?;
    let known = public(households[0].clone()).await?;
    for receipt in [&unknown, &known] {
        assert!(!receipt.complaint_id.is_empty());
        assert_eq!(
            (receipt.task_id.as_str(), receipt.deadline),
            ("", None),
            "{receipt:?}"
        );
        assert_eq!(receipt.filed_by_role, "public");
    }
    assert_eq!(
        count(
            &stack,
            "SELECT count(*) AS n FROM verivali.unmatched_complaints"
        )
        .await?,
        1
    );
    // The officers see the task the citizen's complaint opened, due in 14 days.
    let complaint = client
        .file_complaint(authed(
            FileComplaintRequest {
                household_id: households[0].clone(),
                text: "confirmed by the village head".into(),
                evidence_references: vec![],
            },
            &o.village,
        ))
        .await?
        .into_inner();
    let deadline = complaint.deadline.expect("deadline");
    assert_eq!(
        deadline.seconds,
        (now + chrono::Duration::days(14)).timestamp()
    );
    assert!(!complaint.escalated);
    // A second complaint about the same household joins the open task and its deadline.
    clock.advance(chrono::Duration::days(2));
    let second = client
        .file_complaint(authed(
            FileComplaintRequest {
                household_id: households[0].clone(),
                text: "the head works as a civil servant".into(),
                evidence_references: vec![],
            },
            &o.village,
        ))
        .await?
        .into_inner();
    assert_eq!(second.task_id, complaint.task_id);
    assert_eq!(second.deadline, complaint.deadline);
    let escalated = |client: &mut Client| {
        let mut client = client.clone();
        let token = o.regency.clone();
        async move {
            anyhow::Ok(
                client
                    .list_reverifications(authed(
                        ListReverificationsRequest {
                            region_code: String::new(),
                            open_only: true,
                            escalated_only: true,
                            page: None,
                        },
                        &token,
                    ))
                    .await?
                    .into_inner()
                    .tasks,
            )
        }
    };
    // Day 13: not yet overdue.
    clock.advance(chrono::Duration::days(11));
    assert!(escalated(&mut client).await?.is_empty());
    // Day 15: overdue, listed as escalated at once, and announced by the sweep.
    clock.advance(chrono::Duration::days(2));
    let overdue = escalated(&mut client).await?;
    assert_eq!(overdue.len(), 1);
    assert_eq!(overdue[0].task_id, complaint.task_id);
    stack
        .eventually(30, "the escalation to be announced", || async {
            Ok((count(
                &stack,
                "SELECT count(*) AS n FROM verivali.outbox WHERE event_type = 'reverification.escalated'",
            )
            .await?
                == 1)
                .then_some(()))
        })
        .await?;
    // The regency visits and confirms: the task closes and the household's six-month
    // cycle starts again from today.
    let visited_at = clock.now();
    let done = client
        .complete_reverification(authed(
            CompleteReverificationRequest {
                task_id: complaint.task_id.clone(),
                outcome: ReverificationOutcome::Confirmed as i32,
                note: "one motorcycle, no shop".into(),
                proposal_id: String::new(),
                ..Default::default()
            },
            &o.regency,
        ))
        .await?
        .into_inner();
    assert!(done.completed_at.is_some());
    expect_code(
        client
            .complete_reverification(authed(
                CompleteReverificationRequest {
                    task_id: complaint.task_id.clone(),
                    outcome: ReverificationOutcome::Confirmed as i32,
                    note: String::new(),
                    proposal_id: String::new(),
                    ..Default::default()
                },
                &o.regency,
            ))
            .await,
        Code::FailedPrecondition,
        "already completed",
    );

    // A death recorded by Dukcapil: matching's life event opens a task for Fajar's
    // household.
    let recorded = reqwest::Client::new()
        .post(format!("{}/admin/vital-events", stack.registry_url()))
        .json(&json!({ "kind": "death", "nik": MEN[5].0, "date": (dtks_e2e::time::today() - chrono::Days::new(2)).to_string() }))
        .send()
        .await?;
    assert_eq!(
        recorded.status().as_u16(),
        201,
        "{}",
        recorded.text().await?
    );
    let task = stack
        .eventually(60, "the life event's task", || {
            let mut client = client.clone();
            let token = o.regency.clone();
            async move {
                let tasks = client
                    .list_reverifications(authed(
                        ListReverificationsRequest {
                            open_only: true,
                            ..Default::default()
                        },
                        &token,
                    ))
                    .await?
                    .into_inner()
                    .tasks;
                Ok(tasks
                    .into_iter()
                    .find(|t| t.kind == ReverificationKind::LifeEvent as i32))
            }
        })
        .await?;
    assert_eq!(task.household_id, households[5]);
    assert!(task.reason.contains("death"), "{}", task.reason);
    // The household leaves DTKS: household.removed, and it is no longer due.
    client
        .complete_reverification(authed(
            CompleteReverificationRequest {
                task_id: task.task_id.clone(),
                outcome: ReverificationOutcome::Removed as i32,
                note: "the only member died".into(),
                proposal_id: String::new(),
                removal_reason: dtks_proto::events::v1::RemovalReason::AllDeceased as i32,
            },
            &o.regency,
        ))
        .await?;
    assert_eq!(
        count(
            &stack,
            "SELECT count(*) AS n FROM verivali.outbox WHERE event_type = 'household.removed'"
        )
        .await?,
        1
    );

    // The six-monthly update. 15 days after acceptance nothing is due.
    let due = |overdue_only: bool, size: u32, token_: String| {
        let mut client = client.clone();
        let token = o.regency.clone();
        async move {
            anyhow::Ok(
                client
                    .list_due(authed(
                        ListDueRequest {
                            region_code: "32.04".into(),
                            overdue_only,
                            page: Some(pb::PageRequest {
                                page_size: size,
                                page_token: token_,
                            }),
                        },
                        &token,
                    ))
                    .await?
                    .into_inner(),
            )
        }
    };
    assert!(due(false, 100, String::new()).await?.households.is_empty());
    // 160 days after acceptance: the four households neither re-verified nor removed
    // are due within the month, none overdue yet.
    clock.advance(chrono::Duration::days(160 - 15));
    let listed = due(false, 100, String::new()).await?;
    let mut listed_ids: Vec<String> = listed
        .households
        .iter()
        .map(|h| h.household_id.clone())
        .collect();
    listed_ids.sort();
    let mut want: Vec<String> = households[1..5].to_vec();
    want.sort();
    assert_eq!(listed_ids, want);
    assert!(listed.households.iter().all(|h| !h.overdue));
    assert!(due(true, 100, String::new()).await?.households.is_empty());
    // Day 190: those four are overdue, in pages; the household re-verified on day 15 is
    // due, not overdue.
    clock.advance(chrono::Duration::days(30));
    let first = due(true, 3, String::new()).await?;
    assert_eq!(first.households.len(), 3);
    let next = first.page.expect("page").next_page_token;
    let second = due(true, 3, next).await?;
    assert_eq!(second.households.len(), 1);
    assert!(second.page.expect("page").next_page_token.is_empty());
    let all_due = due(false, 100, String::new()).await?;
    let reverified = all_due
        .households
        .iter()
        .find(|h| h.household_id == households[0])
        .expect("the re-verified household is due");
    assert!(!reverified.overdue);
    assert_eq!(
        reverified.last_verified_at.as_ref().map(|t| t.seconds),
        Some(visited_at.timestamp())
    );
    Ok(())
}
