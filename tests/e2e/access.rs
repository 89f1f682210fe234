//! The access matrix, run whole against the running services: two households go the
//! full cycle — one in regency 32.04 (province 32), one in 33.74 (province 33) — and then
//! every method of every service is called as every role, aimed once at each household.
//! Regional officers hold tokens for the first household's village, regency or province,
//! so the second is outside their scope.
//!
//! - A role that is not on the method's row is refused with PERMISSION_DENIED.
//! - A role on the row, aimed inside its scope, is not refused (unless the row names a
//!   rule the record decides, such as the approving authority of a data request).
//! - No answer, unary or streamed, carries personal data or identifiers of a household
//!   outside the caller's scope, and no answer to a role that never sees identities (K/L,
//!   Pemda, PPID, Minister, data official, public) carries a NIK, a name or a KK number.

use std::collections::BTreeMap;

use dtks_e2e::{Stack, authed, count, person};
use dtks_platform::access::{MATRIX, Reach};
use dtks_platform::auth::Role;
use dtks_proto::common::v1 as pb;
use dtks_proto::determination::v1 as det;
use dtks_proto::distribution::v1 as dist;
use dtks_proto::events::v1::{Channel, ProposalKind};
use dtks_proto::intake::v1 as intake;
use dtks_proto::matching::v1 as matching;
use dtks_proto::reporting::v1 as reporting;
use dtks_proto::verivali::v1 as verivali;
use prost::Message;
use prost::bytes::{Buf, BufMut};
use sea_orm::ConnectionTrait;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};

/// The month the run's cases are accepted in, from the services' clock.
fn period() -> pb::Period {
    dtks_e2e::time::period()
}

/// One household of the test and everything the services know it by.
#[derive(Debug, Default, Clone)]
struct Target {
    village: String,
    regency: String,
    province: String,
    head: Option<pb::Person>,
    /// NIKs, names and the KK number: personal data.
    personal: Vec<String>,
    proposal: String,
    case: String,
    household: String,
    task: String,
    request: String,
    sample: String,
    /// A village operator registered for the household's village.
    officer: String,
}

impl Target {
    fn new(village: &str, names: [&str; 2]) -> (Self, pb::Household, String) {
        let district = village[..8].replace('.', "");
        let head_nik = format!("{district}1203800001");
        let spouse_nik = format!("{district}5708840002");
        let kk = format!("{district}0505150001");
        let head = person(&head_nik, names[0], (1980, 3, 12), 1, 1);
        let household = pb::Household {
            address: Some(pb::Address {
                village_code: village.into(),
                rt: "001".into(),
                rw: "002".into(),
                street: "Jl. Kenanga 7".into(),
                postal_code: "40375".into(),
            }),
            location: Some(pb::GeoPoint {
                latitude: -7.0,
                longitude: 110.4,
            }),
            families: vec![pb::Family {
                kk_number: kk.clone(),
                members: vec![
                    head.clone(),
                    person(&spouse_nik, names[1], (1984, 8, 17), 2, 2),
                ],
            }],
            dwelling: Some(pb::Dwelling {
                tenure: 1,
                floor_area_m2: 24.0,
                floor: 1,
                wall: 1,
                roof: 2,
                water: 1,
                sanitation: 1,
                electricity: 3,
            }),
            assets: Some(pb::Assets::default()),
            ..Default::default()
        };
        let rows = format!(
            "{head_nik},{kk},{},Bandung,1980-03-12,1,{village},\n{spouse_nik},{kk},{},Bandung,1984-08-17,2,{village},\n",
            names[0], names[1]
        );
        let target = Target {
            village: village.into(),
            regency: village[..5].into(),
            province: village[..2].into(),
            head: Some(head),
            personal: vec![head_nik, spouse_nik, kk, names[0].into(), names[1].into()],
            ..Default::default()
        };
        (target, household, rows)
    }

    fn identifiers(&self) -> Vec<String> {
        [&self.proposal, &self.case, &self.household]
            .into_iter()
            .filter(|s| !s.is_empty())
            .cloned()
            .collect()
    }

    /// The region a caller with `reach` names when it asks about this household.
    fn region_for(&self, reach: Reach) -> String {
        match reach {
            Reach::Village => self.village.clone(),
            Reach::Province => self.province.clone(),
            Reach::Regency | Reach::National => self.regency.clone(),
        }
    }
}

/// Passes encoded messages through unchanged, so that any method can be called by path.
#[derive(Default, Clone, Copy)]
struct Raw;

impl Codec for Raw {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = Raw;
    type Decoder = Raw;
    fn encoder(&mut self) -> Raw {
        Raw
    }
    fn decoder(&mut self) -> Raw {
        Raw
    }
}

impl Encoder for Raw {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for Raw {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, tonic::Status> {
        let n = src.remaining();
        Ok(Some(src.copy_to_bytes(n).to_vec()))
    }
}

#[derive(Clone, Copy)]
struct Shape {
    client_streaming: bool,
    server_streaming: bool,
}

/// Each method's streaming shape, from the compiled descriptors.
fn shapes() -> BTreeMap<String, Shape> {
    let set = prost_types::FileDescriptorSet::decode(dtks_proto::FILE_DESCRIPTOR_SET)
        .expect("descriptor set");
    let mut out = BTreeMap::new();
    for file in &set.file {
        for service in &file.service {
            for method in &service.method {
                out.insert(
                    format!("/{}.{}/{}", file.package(), service.name(), method.name()),
                    Shape {
                        client_streaming: method.client_streaming(),
                        server_streaming: method.server_streaming(),
                    },
                );
            }
        }
    }
    out
}

/// Calls `method` with `body` as `token`; the answer's bytes (every message of a
/// stream, joined) or the refusal.
async fn call(
    channel: tonic::transport::Channel,
    method: &'static str,
    shape: Shape,
    body: Vec<u8>,
    token: &str,
) -> Result<Vec<u8>, tonic::Status> {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready()
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    let path = tonic::codegen::http::uri::PathAndQuery::from_static(method);
    if shape.client_streaming && shape.server_streaming {
        let request = authed(futures::stream::iter(vec![body]), token);
        let mut stream = grpc.streaming(request, path, Raw).await?.into_inner();
        let mut all = Vec::new();
        while let Some(message) = stream.message().await? {
            all.extend(message);
        }
        return Ok(all);
    }
    if shape.client_streaming {
        let request = authed(futures::stream::iter(vec![body]), token);
        return Ok(grpc
            .client_streaming(request, path, Raw)
            .await?
            .into_inner());
    }
    let request = authed(body, token);
    if !shape.server_streaming {
        return Ok(grpc.unary(request, path, Raw).await?.into_inner());
    }
    let mut stream = grpc
        .server_streaming(request, path, Raw)
        .await?
        .into_inner();
    let mut all = Vec::new();
    while let Some(message) = stream.message().await? {
        all.extend(message);
    }
    Ok(all)
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    !needle.is_empty()
        && haystack
            .windows(needle.len())
            .any(|w| w == needle.as_bytes())
}

fn timestamp(offset: i64) -> prost_types::Timestamp {
    dtks_e2e::time::timestamp_from_now(offset)
}

fn date() -> pb::Date {
    dtks_e2e::time::date_from_today(-3)
}

fn requester_kind(role: Role) -> dist::RequesterKind {
    match role {
        Role::EselonI => dist::RequesterKind::EselonI,
        Role::KlUser => dist::RequesterKind::Kl,
        Role::PemdaUser => dist::RequesterKind::Pemda,
        _ => dist::RequesterKind::Public,
    }
}

/// A new household of `target`'s village for the submission methods (fresh NIKs, so
/// that nothing of the test's two households is sent).
fn fresh_household(target: &Target, serial: u32) -> pb::Household {
    let district = target.village[..8].replace('.', "");
    let (_, mut household, _) = Target::new(&target.village, ["Joko Santoso", "Wulan Sari"]);
    let members = &mut household.families[0].members;
    members[0].nik = format!("{district}120380{:04}", 5000 + 2 * serial);
    members[1].nik = format!("{district}570884{:04}", 5001 + 2 * serial);
    household.families[0].kk_number = format!("{district}050515{:04}", 5000 + serial);
    household
}

/// The request of `method` aimed at `target`, as `role` would send it.
fn request(method: &str, role: Role, target: &Target, list_id: &str, serial: u32) -> Vec<u8> {
    let region = target.region_for(role.reach());
    let period = Some(period());
    let page = Some(pb::PageRequest {
        page_size: 50,
        page_token: String::new(),
    });
    let name = method.rsplit('/').next().unwrap_or_default();
    let submit = || intake::SubmitProposalRequest {
        idempotency_key: format!("matrix-{serial}"),
        channel: match role {
            Role::Public => Channel::SelfRegistration,
            Role::MinistryAssessor | Role::PusdatinAdmin => Channel::Ministry,
            _ => Channel::Musdes,
        } as i32,
        kind: ProposalKind::Add as i32,
        external_reference: format!("MATRIX-{serial}"),
        household: Some(fresh_household(target, serial)),
        minutes: Some(intake::Minutes {
            number: "BA/MUSDES/7".into(),
            date: Some(date()),
            attendees: 30,
        }),
        reason: "new household".into(),
        ..Default::default()
    };
    let query = || reporting::RegionQuery {
        region_code: region.clone(),
        level: pb::RegionLevel::Regency as i32,
        period,
    };
    let batch = || verivali::BatchRequest {
        case_ids: vec![target.case.clone()],
        note: "access matrix".into(),
    };
    let decide = || dist::DecideDataRequestRequest {
        request_id: target.request.clone(),
        reason: "access matrix".into(),
    };
    match name {
        "SubmitProposal" => submit().encode_to_vec(),
        "ImportProposals" => intake::ImportProposalsRequest {
            row: 1,
            proposal: Some(submit()),
        }
        .encode_to_vec(),
        "GetProposal" => intake::GetProposalRequest {
            proposal_id: target.proposal.clone(),
        }
        .encode_to_vec(),
        "ListProposals" => intake::ListProposalsRequest {
            region_code: region,
            include_household: true,
            page,
            ..Default::default()
        }
        .encode_to_vec(),
        "WithdrawProposal" => intake::WithdrawProposalRequest {
            proposal_id: target.proposal.clone(),
            reason: "access matrix".into(),
        }
        .encode_to_vec(),
        "MatchPerson" => matching::MatchPersonRequest {
            person: target.head.clone(),
            village_code: target.village.clone(),
        }
        .encode_to_vec(),
        "MatchWave" => matching::MatchWaveRequest {
            reference: serial.to_string(),
            request: Some(matching::MatchPersonRequest {
                person: target.head.clone(),
                village_code: target.village.clone(),
            }),
        }
        .encode_to_vec(),
        "GetProposalMatch" => matching::GetProposalMatchRequest {
            proposal_id: target.proposal.clone(),
        }
        .encode_to_vec(),
        "ListReviewPairs" => matching::ListReviewPairsRequest {
            region_code: region,
            page,
            include_decided: true,
        }
        .encode_to_vec(),
        "DecideReviewPair" => matching::DecideReviewPairRequest {
            pair_id: uuid::Uuid::new_v4().to_string(),
            decision: matching::ReviewDecision::SamePerson as i32,
            note: "access matrix".into(),
        }
        .encode_to_vec(),
        "GetCase" => verivali::GetCaseRequest {
            case_id: target.case.clone(),
        }
        .encode_to_vec(),
        "ListCases" => verivali::ListCasesRequest {
            region_code: region,
            page,
            ..Default::default()
        }
        .encode_to_vec(),
        "WorkQueue" => verivali::WorkQueueRequest { page }.encode_to_vec(),
        "RecordVillageReview" => verivali::RecordVillageReviewRequest {
            minutes_number: "BA/MUSDES/8".into(),
            minutes_date: Some(date()),
            attendees: 25,
            decisions: vec![verivali::VillageDecision {
                case_id: target.case.clone(),
                approved: true,
                note: String::new(),
            }],
        }
        .encode_to_vec(),
        "RecordFieldVerification" => verivali::RecordFieldVerificationRequest {
            case_id: target.case.clone(),
            interview_summary: "interviewed the head".into(),
            observation_summary: "as stated".into(),
            geotag: Some(pb::GeoPoint {
                latitude: -7.0,
                longitude: 110.4,
            }),
            confirmed: true,
            ..Default::default()
        }
        .encode_to_vec(),
        "SignOff" | "ForwardToMinistry" | "AssessBatch" | "ReturnToRegion" => {
            batch().encode_to_vec()
        }
        "Assess" => verivali::AssessRequest {
            case_id: target.case.clone(),
            ..Default::default()
        }
        .encode_to_vec(),
        "Resubmit" => verivali::ResubmitRequest {
            case_id: target.case.clone(),
            note: "access matrix".into(),
            ..Default::default()
        }
        .encode_to_vec(),
        "FileComplaint" => verivali::FileComplaintRequest {
            household_id: target.household.clone(),
            text: "the family moved away".into(),
            evidence_references: vec![],
        }
        .encode_to_vec(),
        "ListReverifications" => verivali::ListReverificationsRequest {
            region_code: region,
            page,
            ..Default::default()
        }
        .encode_to_vec(),
        "CompleteReverification" => verivali::CompleteReverificationRequest {
            task_id: target.task.clone(),
            outcome: verivali::ReverificationOutcome::Confirmed as i32,
            note: "visited".into(),
            proposal_id: String::new(),
            ..Default::default()
        }
        .encode_to_vec(),
        "DrawQaSample" => verivali::DrawQaSampleRequest {
            regency_code: target.regency.clone(),
            period,
            per_mille: 1000,
            qa_team: "Universitas Diponegoro".into(),
        }
        .encode_to_vec(),
        "RecordQaResult" => verivali::RecordQaResultRequest {
            sample_id: target.sample.clone(),
            case_id: target.case.clone(),
            verdict: verivali::QaVerdict::Agrees as i32,
            note: String::new(),
        }
        .encode_to_vec(),
        "QaReport" => verivali::QaReportRequest {
            region_code: region,
            period,
        }
        .encode_to_vec(),
        "ListDue" => verivali::ListDueRequest {
            region_code: region,
            overdue_only: false,
            page,
        }
        .encode_to_vec(),
        "Determine" => det::DetermineRequest { period }.encode_to_vec(),
        "GetSnapshot" => det::GetSnapshotRequest { period }.encode_to_vec(),
        "StreamSnapshot" => det::StreamSnapshotRequest {
            period,
            region_code: region,
            batch_size: 100,
            ..Default::default()
        }
        .encode_to_vec(),
        "GetHouseholdStanding" => det::GetHouseholdStandingRequest {
            household_id: target.household.clone(),
            period,
        }
        .encode_to_vec(),
        "DiffSnapshots" => det::DiffSnapshotsRequest {
            from: Some(dtks_e2e::time::period_after(-1)),
            to: period,
        }
        .encode_to_vec(),
        "GetRegistryHousehold" => det::GetRegistryHouseholdRequest {
            household_id: target.household.clone(),
            as_of: None,
        }
        .encode_to_vec(),
        "GetHouseholdHistory" => det::GetHouseholdHistoryRequest {
            household_id: target.household.clone(),
        }
        .encode_to_vec(),
        // Only this month is determined: its changes against itself, none.
        "StreamSnapshotChanges" => det::StreamSnapshotChangesRequest {
            from: period,
            to: period,
            region_code: region,
            decile_moves: true,
            batch_size: 100,
        }
        .encode_to_vec(),
        "CreateDataRequest" => dist::CreateDataRequestRequest {
            requester_kind: requester_kind(role) as i32,
            requester: "Dinas Sosial".into(),
            purpose: "programme targeting".into(),
            region_code: target.regency.clone(),
            data_kinds: vec![dist::DataKind::WelfareRank as i32],
            use_from: Some(timestamp(-60)),
            use_until: Some(timestamp(86_400)),
        }
        .encode_to_vec(),
        "ApproveDataRequest" | "RejectDataRequest" | "RevokeDataRequest" => {
            decide().encode_to_vec()
        }
        "RecordHandover" => dist::RecordHandoverRequest {
            request_id: target.request.clone(),
            minutes_number: "BAST-9".into(),
            minutes_date: Some(date()),
            obligations_acknowledged: true,
        }
        .encode_to_vec(),
        "GetDataRequest" => dist::GetDataRequestRequest {
            request_id: target.request.clone(),
        }
        .encode_to_vec(),
        "SaveProgramme" => dist::Programme {
            code: "MATRIX".into(),
            name: "Access matrix test programme".into(),
            rule: "household.decile <= 4".into(),
            source: "test".into(),
            ..Default::default()
        }
        .encode_to_vec(),
        "ListProgrammes" => dist::ListProgrammesRequest {}.encode_to_vec(),
        "BuildList" => dist::BuildListRequest {
            programme_code: "DTKS-D1-4".into(),
            period,
        }
        .encode_to_vec(),
        "PrepareMonth" => dist::PrepareMonthRequest { period }.encode_to_vec(),
        "ApproveList" => dist::ApproveListRequest {
            list_id: list_id.into(),
        }
        .encode_to_vec(),
        "GetList" => dist::GetListRequest {
            list_id: list_id.into(),
        }
        .encode_to_vec(),
        "StreamList" => dist::StreamListRequest {
            list_id: list_id.into(),
            cursor: String::new(),
            batch_size: 100,
        }
        .encode_to_vec(),
        "StreamExtract" => dist::StreamExtractRequest {
            request_id: target.request.clone(),
            cursor: String::new(),
            batch_size: 100,
            period,
        }
        .encode_to_vec(),
        "Export" => reporting::ExportRequest {
            report: reporting::ReportKind::UpdateRates as i32,
            format: reporting::ExportFormat::Csv as i32,
            query: Some(query()),
        }
        .encode_to_vec(),
        "Rebuild" => reporting::RebuildRequest {}.encode_to_vec(),
        "RegisterOfficer" => verivali::RegisterOfficerRequest {
            subject: format!("matrix-officer-{serial}"),
            display_name: "Petugas Uji".into(),
            role: "village_operator".into(),
            region_code: target.village.clone(),
        }
        .encode_to_vec(),
        "ReassignOfficer" => verivali::ReassignOfficerRequest {
            subject: target.officer.clone(),
            role: "village_operator".into(),
            region_code: target.village.clone(),
            reason: "access matrix".into(),
        }
        .encode_to_vec(),
        "DeactivateOfficer" => verivali::DeactivateOfficerRequest {
            subject: target.officer.clone(),
            reason: "access matrix".into(),
        }
        .encode_to_vec(),
        "ListOfficers" => verivali::ListOfficersRequest {
            region_code: region,
            include_inactive: true,
            page,
        }
        .encode_to_vec(),
        // Every reporting query takes a region query.
        _ if method.starts_with("/dtks.reporting.") => query().encode_to_vec(),
        other => panic!("the matrix test has no request for {other}"),
    }
}

/// Methods whose effects would change what the others see; they run last.
const LAST: &[&str] = &[
    "WithdrawProposal",
    "ReturnToRegion",
    "RejectDataRequest",
    "RevokeDataRequest",
    "DeactivateOfficer",
    "Rebuild",
];

async fn id(stack: &Stack, sql: &str, region: &str) -> anyhow::Result<String> {
    let row = stack
        .db
        .query_one_raw(dtks_platform::db::stmt(sql, [region.into()]))
        .await?
        .ok_or_else(|| anyhow::anyhow!("nothing for {region}: {sql}"))?;
    let id: uuid::Uuid = row.try_get_by_index(0)?;
    Ok(id.to_string())
}

/// Two households in two provinces, each through to the master registry, with a
/// determined month and a fixed list, an approved data request of each regency's
/// government, a complaint task, a QA sample and an officer: something for every method
/// to find.
async fn world() -> anyhow::Result<(Stack, Target, Target, String)> {
    let (mut a, household_a, rows_a) =
        Target::new("32.04.05.2001", ["Asep Sunandar", "Siti Aminah"]);
    let (mut b, household_b, rows_b) =
        Target::new("33.74.01.1001", ["Bambang Wijaya", "Sri Lestari"]);
    let registry = format!(
        "nik,kk_number,full_name,birth_place,birth_date,sex,village_code,death_date\n{rows_a}{rows_b}"
    );
    let stack = Stack::start(&registry).await?;
    let admin = stack.token(Role::PusdatinAdmin, "");
    for (k, (target, household)) in [(&a, household_a), (&b, household_b)]
        .into_iter()
        .enumerate()
    {
        let operator = stack.token(Role::VillageOperator, &target.village);
        super::submit_household(
            &stack,
            &operator,
            &format!("matrix-seed-{k}"),
            &format!("SEED-{k}"),
            household,
        )
        .await?;
    }
    super::summary_when(&stack, 90, "both households to be accepted", |s| {
        s.households_accepted == 2
    })
    .await?;
    for t in [&mut a, &mut b] {
        t.proposal = id(
            &stack,
            "SELECT proposal_id FROM intake.proposals WHERE region_code LIKE $1 || '%'",
            &t.regency,
        )
        .await?;
        t.case = id(
            &stack,
            "SELECT case_id FROM verivali.cases WHERE region_code LIKE $1 || '%'",
            &t.regency,
        )
        .await?;
        t.household = id(
            &stack,
            "SELECT household_id FROM verivali.households WHERE region_code LIKE $1 || '%'",
            &t.regency,
        )
        .await?;
    }

    // The month is determined and its DTKS list fixed.
    let stack_ref = &stack;
    let mut determination = det::determination_service_client::DeterminationServiceClient::new(
        stack.channel("determination").await?,
    );
    stack
        .eventually(30, "the registry to hold both households", || async move {
            let n = count(
                stack_ref,
                "SELECT count(*)::bigint AS n FROM determination.registry_households",
            )
            .await?;
            Ok((n == 2).then_some(()))
        })
        .await?;
    determination
        .determine(authed(
            det::DetermineRequest {
                period: Some(period()),
            },
            &admin,
        ))
        .await?;
    let mut distribution = dist::distribution_service_client::DistributionServiceClient::new(
        stack.channel("distribution").await?,
    );
    let list = distribution
        .build_list(authed(
            dist::BuildListRequest {
                programme_code: "DTKS-D1-4".into(),
                period: Some(period()),
            },
            &admin,
        ))
        .await?
        .into_inner();
    distribution
        .approve_list(authed(
            dist::ApproveListRequest {
                list_id: list.list_id.clone(),
            },
            &stack.token(Role::EselonI, ""),
        ))
        .await?;

    // Each regency's government holds an approved, handed-over request for its regency;
    // each household has an open complaint task, and each regency a QA sample.
    let mut verivali_client = verivali::verivali_service_client::VerivaliServiceClient::new(
        stack.channel("verivali").await?,
    );
    let data_official = stack.token(Role::DataOfficial, "");
    let qa = stack.token(Role::QaTeam, "");
    for t in [&mut a, &mut b] {
        let pemda = stack.token_for(&format!("pemda-{}", t.regency), Role::PemdaUser, &t.regency);
        let filed = distribution
            .create_data_request(authed(
                dist::CreateDataRequestRequest {
                    requester_kind: dist::RequesterKind::Pemda as i32,
                    requester: "Pemerintah Daerah".into(),
                    purpose: "regional programme".into(),
                    region_code: t.regency.clone(),
                    data_kinds: vec![
                        dist::DataKind::WelfareRank as i32,
                        dist::DataKind::Address as i32,
                    ],
                    use_from: Some(timestamp(-60)),
                    use_until: Some(timestamp(86_400)),
                },
                &pemda,
            ))
            .await?
            .into_inner();
        t.request = filed.request_id.clone();
        distribution
            .approve_data_request(authed(
                dist::DecideDataRequestRequest {
                    request_id: t.request.clone(),
                    reason: "meets Pasal 26".into(),
                },
                &data_official,
            ))
            .await?;
        distribution
            .record_handover(authed(
                dist::RecordHandoverRequest {
                    request_id: t.request.clone(),
                    minutes_number: "BAST-1".into(),
                    minutes_date: Some(date()),
                    obligations_acknowledged: true,
                },
                &pemda,
            ))
            .await?;
        let complaint = verivali_client
            .file_complaint(authed(
                verivali::FileComplaintRequest {
                    household_id: t.household.clone(),
                    text: "the head passed away".into(),
                    evidence_references: vec![],
                },
                &admin,
            ))
            .await?
            .into_inner();
        t.task = complaint.task_id;
        let sample = verivali_client
            .draw_qa_sample(authed(
                verivali::DrawQaSampleRequest {
                    regency_code: t.regency.clone(),
                    period: Some(period()),
                    per_mille: 1000,
                    qa_team: "Universitas Diponegoro".into(),
                },
                &qa,
            ))
            .await?
            .into_inner();
        t.sample = sample.sample_id;
        let name = format!("Operator {}", t.village);
        t.officer = verivali_client
            .register_officer(authed(
                verivali::RegisterOfficerRequest {
                    subject: format!("operator-{}", t.village),
                    display_name: name.clone(),
                    role: "village_operator".into(),
                    region_code: t.village.clone(),
                },
                &admin,
            ))
            .await?
            .into_inner()
            .subject;
        t.personal.push(name);
    }

    Ok((stack, a, b, list.list_id))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_method_as_every_role_inside_and_outside_its_region_leaks_nothing()
-> anyhow::Result<()> {
    let (stack, a, b, list_id) = world().await?;
    // The whole matrix.
    let shapes = shapes();
    let mut channels = BTreeMap::new();
    for service in dtks_e2e::SERVICES {
        channels.insert(*service, stack.channel(service).await?);
    }
    let mut order: Vec<_> = MATRIX.iter().collect();
    order.sort_by_key(|g| LAST.contains(&g.name()));
    let mut tally: BTreeMap<&str, [u32; 4]> = BTreeMap::new();
    let mut failures = Vec::new();
    let mut serial = 0;
    for grant in order {
        let service = grant.service();
        let short = service
            .trim_start_matches("dtks.")
            .split('.')
            .next()
            .unwrap_or_default();
        let channel = channels[short].clone();
        let shape = shapes[grant.method];
        for role in Role::ALL {
            for (target, other, in_scope) in
                [(&a, &b, true), (&b, &a, role.reach() == Reach::National)]
            {
                serial += 1;
                let region = match role.reach() {
                    Reach::National => String::new(),
                    reach => a.region_for(reach),
                };
                // The Pemda user is the officer who filed the first regency's request.
                let sub = match role {
                    Role::PemdaUser => format!("pemda-{}", a.regency),
                    _ => format!("matrix-{}", role.as_str()),
                };
                let token = stack.token_for(&sub, role, &region);
                let body = request(grant.method, role, target, &list_id, serial);
                let answer = call(channel.clone(), grant.method, shape, body, &token).await;
                let seen = tally.entry(service).or_default();
                let what = format!(
                    "{} as {} aimed at {}",
                    grant.name(),
                    role.as_str(),
                    target.regency
                );
                match &answer {
                    Err(status) if status.code() == tonic::Code::PermissionDenied => {
                        if grant.allows(role) {
                            seen[1] += 1;
                        } else {
                            seen[0] += 1;
                        }
                    }
                    Err(_) => seen[2] += 1,
                    Ok(_) => seen[3] += 1,
                }
                if !grant.allows(role) {
                    match &answer {
                        Err(status) if status.code() == tonic::Code::PermissionDenied => {}
                        other => failures.push(format!(
                            "{what}: the role is not on the row, yet {:?}",
                            other.as_ref().map(|b| b.len())
                        )),
                    }
                    continue;
                }
                if in_scope
                    && grant.refined.is_none()
                    && let Err(status) = &answer
                    && matches!(
                        status.code(),
                        tonic::Code::PermissionDenied | tonic::Code::Unauthenticated
                    )
                {
                    failures.push(format!("{what}: refused inside its scope: {status:?}"));
                }
                let Ok(bytes) = &answer else { continue };
                // Outside the caller's region: nothing of that household.
                if !in_scope {
                    for secret in target.personal.iter().chain(&target.identifiers()) {
                        if contains(bytes, secret) {
                            failures.push(format!("{what}: the answer carries {secret}"));
                        }
                    }
                }
                // Roles that never see identities.
                if matches!(
                    role,
                    Role::KlUser
                        | Role::PemdaUser
                        | Role::Ppid
                        | Role::Minister
                        | Role::DataOfficial
                        | Role::Public
                ) {
                    for secret in target.personal.iter().chain(&other.personal) {
                        if contains(bytes, secret) {
                            failures.push(format!("{what}: the answer carries {secret}"));
                        }
                    }
                }
            }
        }
    }
    // Finding 4: region claims that are patterns, at another level than the role's, or
    // padded, and regional roles naming a region of another level: refused at the door
    // for every method, before the matrix or any query sees them.
    let mut claims_refused = 0;
    for grant in MATRIX {
        let short = grant
            .service()
            .trim_start_matches("dtks.")
            .split('.')
            .next()
            .unwrap_or_default();
        for (role, region) in [
            (Role::VillageOperator, "%"),
            (Role::VillageOperator, "32.0_"),
            (Role::VillageOperator, "32.04"),
            (Role::RegencyOfficer, "32"),
            (Role::RegencyOfficer, "32.04%"),
            (Role::ProvinceOfficer, "3_"),
            (Role::PemdaUser, "32.04.05.2001"),
            (Role::Bupati, " 32.04"),
        ] {
            if !grant.allows(role) {
                continue;
            }
            serial += 1;
            let token = stack.token_for(&format!("claims-{serial}"), role, region);
            let body = request(grant.method, role, &a, &list_id, serial);
            match call(
                channels[short].clone(),
                grant.method,
                shapes[grant.method],
                body,
                &token,
            )
            .await
            {
                Err(status) if status.code() == tonic::Code::Unauthenticated => claims_refused += 1,
                other => failures.push(format!(
                    "{} as {} with region {region:?}: {:?}",
                    grant.name(),
                    role.as_str(),
                    other.map(|b| b.len())
                )),
            }
        }
    }
    println!(
        "access matrix: {claims_refused} calls with malformed or over-reaching region claims, all refused"
    );
    // Finding 5: foreign subjects. Tokens of other roles, or of a pemda user of another
    // regency, that carry the subject of the pemda officer who filed the first regency's
    // request: none of them sees that request or its extract.
    let mut foreign = 0;
    for grant in MATRIX.iter().filter(|g| {
        g.name().contains("DataRequest")
            || g.name().contains("Extract")
            || g.name() == "RecordHandover"
    }) {
        let short = grant
            .service()
            .trim_start_matches("dtks.")
            .split('.')
            .next()
            .unwrap_or_default();
        for (role, region) in [
            (Role::KlUser, String::new()),
            (Role::Public, String::new()),
            (Role::Ppid, String::new()),
            (Role::PemdaUser, b.regency.clone()),
            (Role::EselonI, String::new()),
        ] {
            if !grant.allows(role) {
                continue;
            }
            serial += 1;
            foreign += 1;
            let token = stack.token_for(&format!("pemda-{}", a.regency), role, &region);
            let body = request(grant.method, Role::PemdaUser, &a, &list_id, serial);
            if let Ok(bytes) = call(
                channels[short].clone(),
                grant.method,
                shapes[grant.method],
                body,
                &token,
            )
            .await
                && (contains(&bytes, &a.request) || a.personal.iter().any(|p| contains(&bytes, p)))
            {
                failures.push(format!(
                    "{} as {} carrying the filer's subject: the answer carries the filer's request",
                    grant.name(),
                    role.as_str()
                ));
            }
        }
    }
    println!(
        "access matrix: {foreign} calls with the filer's subject on another role or region, none answered with the request"
    );
    println!(
        "access matrix: calls per service (refused by the matrix / refused by scope or record / other refusals / answered)"
    );
    let mut total = 0;
    for (service, [matrix, scope, other, ok]) in &tally {
        total += matrix + scope + other + ok;
        println!("  {service:<40} {matrix:>5} {scope:>5} {other:>5} {ok:>5}");
    }
    println!(
        "access matrix: {total} calls over {} methods × {} roles × 2 households",
        MATRIX.len(),
        Role::ALL.len()
    );
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
    // The answered calls prove that the guard lets the matrix's roles through.
    assert!(tally.values().all(|t| t[3] > 0), "{tally:?}");

    // Every read and write of personal data the matrix made is in its service's audit
    // log, and every log's chain holds.
    for (service, actions) in [
        (
            "intake",
            &["intake.GetProposal", "intake.ListProposals"][..],
        ),
        (
            "matching",
            &[
                "matching.MatchPerson",
                "matching.MatchWave",
                "matching.GetProposalMatch",
            ][..],
        ),
        (
            "verivali",
            &[
                "verivali.GetCase",
                "verivali.FileComplaint",
                "verivali.CompleteReverification",
                "verivali.RecordQaResult",
                "verivali.RegisterOfficer",
                "verivali.ReassignOfficer",
                "verivali.DeactivateOfficer",
                "verivali.ListOfficers",
            ][..],
        ),
        (
            "distribution",
            &["distribution.StreamList", "distribution.StreamExtract"][..],
        ),
        (
            "determination",
            &[
                "determination.StreamSnapshot",
                "determination.GetRegistryHousehold",
                "determination.GetHouseholdHistory",
                "determination.StreamSnapshotChanges",
                "determination.GetHouseholdStanding",
            ][..],
        ),
    ] {
        let found = stack
            .db
            .query_all_raw(dtks_platform::db::stmt(
                &format!("SELECT DISTINCT action FROM {service}.audit_log"),
                [],
            ))
            .await?
            .iter()
            .map(|r| r.try_get::<String>("", "action"))
            .collect::<Result<Vec<_>, _>>()?;
        for action in actions {
            assert!(
                found.iter().any(|f| f == action),
                "{action} not in {found:?}"
            );
        }
        let (code, out, err) = stack
            .dtksctl(
                "",
                &[
                    "audit",
                    "verify",
                    "--service",
                    service,
                    "--database-url",
                    &stack.database_url,
                ],
            )
            .await?;
        assert_eq!(code, 0, "{service}: {out}{err}");
    }
    Ok(())
}

/// Malformed variants of `valid` (a request of type `input`): every field it sets, and
/// every field of the messages inside it, out of range, oversized, in odd Unicode, with an
/// unknown enum value, repeated beyond the bound. Each variant is named for what it
/// changed.
fn malformed(input: &prost_reflect::MessageDescriptor, valid: &[u8]) -> Vec<(String, Vec<u8>)> {
    use prost_reflect::{DynamicMessage, Kind, ReflectMessage, Value};
    fn variants(kind: &Kind, value: &Value) -> Vec<(&'static str, Value)> {
        match (kind, value) {
            (_, Value::String(_)) => vec![
                ("NUL", Value::String("a\0b".into())),
                ("100k characters", Value::String("x".repeat(100_000))),
                ("zero-width only", Value::String("\u{200B}\u{200C}".into())),
                ("bidi override", Value::String("\u{202E}abc".into())),
                ("control character", Value::String("a\u{1}b".into())),
                ("pattern", Value::String("%_".into())),
            ],
            (Kind::Enum(_), _) => vec![("unknown enum", Value::EnumNumber(999))],
            (_, Value::I64(_)) => vec![("i64::MAX", Value::I64(i64::MAX)), ("-1", Value::I64(-1))],
            (_, Value::I32(_)) => vec![("i32::MAX", Value::I32(i32::MAX)), ("-1", Value::I32(-1))],
            (_, Value::U64(_)) => vec![("u64::MAX", Value::U64(u64::MAX))],
            (_, Value::U32(_)) => vec![("u32::MAX", Value::U32(u32::MAX))],
            (_, Value::F64(_)) => vec![
                ("NaN", Value::F64(f64::NAN)),
                ("-∞", Value::F64(f64::NEG_INFINITY)),
            ],
            _ => vec![],
        }
    }
    fn spoil(message: &DynamicMessage, depth: usize, out: &mut Vec<(String, DynamicMessage)>) {
        for (field, value) in message.fields() {
            let name = field.name().to_owned();
            let mut with = |what: &str, v: Value| {
                let mut m = message.clone();
                m.set_field(&field, v);
                out.push((format!("{name}: {what}"), m));
            };
            match value {
                Value::List(items) => {
                    if let Some(first) = items.first() {
                        with("20,000 entries", Value::List(vec![first.clone(); 20_000]));
                        for (what, v) in variants(&field.kind(), first) {
                            let mut spoiled = items.clone();
                            spoiled[0] = v;
                            with(what, Value::List(spoiled));
                        }
                    }
                }
                Value::Message(inner) if depth < 4 => {
                    let mut nested = Vec::new();
                    spoil(inner, depth + 1, &mut nested);
                    if inner.descriptor().full_name() == "google.protobuf.Timestamp" {
                        let mut t = inner.clone();
                        t.set_field_by_name("nanos", Value::I32(-1));
                        nested.push(("nanos: -1".into(), t));
                    }
                    for (what, m) in nested {
                        with(&what, Value::Message(m));
                    }
                }
                value => {
                    for (what, v) in variants(&field.kind(), value) {
                        with(what, v);
                    }
                }
            }
        }
    }
    let Ok(message) = DynamicMessage::decode(input.clone(), valid) else {
        return vec![];
    };
    let mut out = Vec::new();
    spoil(&message, 0, &mut out);
    out.into_iter()
        .map(|(what, m)| (what, prost::Message::encode_to_vec(&m)))
        .collect()
}

/// The generated edge test (issue 21): for every RPC of the matrix, malformed variants of
/// a valid request, sent as a role the row allows, answer a refusal that names the
/// problem — never INTERNAL, UNKNOWN or a dropped connection — and every service still
/// serves afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_to_every_method_are_refused_never_crash() -> anyhow::Result<()> {
    let (stack, a, _b, list_id) = world().await?;
    let pool = prost_reflect::DescriptorPool::decode(dtks_proto::FILE_DESCRIPTOR_SET)?;
    let shapes = shapes();
    let mut channels = BTreeMap::new();
    for service in dtks_e2e::SERVICES {
        channels.insert(*service, stack.channel(service).await?);
    }
    let mut codes: BTreeMap<String, u32> = BTreeMap::new();
    let (mut failures, mut accepted) = (Vec::new(), Vec::new());
    let (mut methods, mut calls, mut serial) = (0, 0u32, 10_000);
    for grant in MATRIX {
        let service = grant.service();
        let short = service
            .trim_start_matches("dtks.")
            .split('.')
            .next()
            .unwrap_or_default();
        let Some(role) = Role::ALL.into_iter().find(|r| grant.allows(*r)) else {
            continue;
        };
        let method = pool
            .get_service_by_name(service)
            .and_then(|s| {
                s.methods()
                    .find(|m| grant.method.ends_with(&format!("/{}", m.name())))
            })
            .ok_or_else(|| anyhow::anyhow!("{} is not in the contract", grant.method))?;
        methods += 1;
        let region = match role.reach() {
            Reach::National => String::new(),
            reach => a.region_for(reach),
        };
        serial += 1;
        let valid = request(grant.method, role, &a, &list_id, serial);
        for (what, body) in malformed(&method.input(), &valid) {
            serial += 1;
            calls += 1;
            let sub = match role {
                Role::PemdaUser => format!("pemda-{}", a.regency),
                _ => format!("edge-{}-{serial}", role.as_str()),
            };
            let token = stack.token_for(&sub, role, &region);
            let answer = call(
                channels[short].clone(),
                grant.method,
                shapes[grant.method],
                body,
                &token,
            )
            .await;
            let code = answer.as_ref().err().map_or(tonic::Code::Ok, |s| s.code());
            // A bulk import, a wave, answer for each row: a refused row is the refusal.
            let row_refused = answer.as_ref().is_ok_and(|bytes| match grant.name() {
                "ImportProposals" => {
                    dtks_proto::intake::v1::ImportProposalsResponse::decode(bytes.as_slice())
                        .is_ok_and(|r| r.rows.iter().any(|row| !row.errors.is_empty()))
                }
                // The stream's messages, joined, decode as one (their refusals listed).
                "MatchWave" => {
                    dtks_proto::matching::v1::MatchWaveResponse::decode(bytes.as_slice())
                        .is_ok_and(|r| !r.refused.is_empty())
                }
                _ => false,
            });
            let seen = if row_refused {
                "row refused".to_owned()
            } else {
                format!("{code:?}")
            };
            *codes.entry(seen).or_default() += 1;
            if answer.is_ok() && !row_refused {
                accepted.push(format!("{} {what}", grant.name()));
            }
            if let Err(status) = &answer
                && (matches!(status.code(), tonic::Code::Internal | tonic::Code::Unknown)
                    || status.code() == tonic::Code::Unavailable)
            {
                failures.push(format!("{} {what}: {status:?}", grant.name()));
            }
        }
    }
    println!("edge: {methods} methods, {calls} malformed calls; answers by code: {codes:?}");
    // What the contract allows (free text with `%`, a bound still inside the range, …).
    println!("edge: accepted as valid:\n  {}", accepted.join("\n  "));
    assert_eq!(methods, MATRIX.len());
    assert!(calls > 500, "only {calls} variants");
    assert!(
        failures.is_empty(),
        "{} bad answers:\n{}",
        failures.len(),
        failures.join("\n")
    );
    // Every service still serves.
    for service in dtks_e2e::SERVICES {
        let mut health =
            tonic_health::pb::health_client::HealthClient::new(stack.channel(service).await?);
        let status = health
            .check(tonic_health::pb::HealthCheckRequest {
                service: String::new(),
            })
            .await?
            .into_inner()
            .status;
        assert_eq!(
            status,
            tonic_health::pb::health_check_response::ServingStatus::Serving as i32,
            "{service}"
        );
    }
    Ok(())
}
