//! Verivali's workflow at scale: 100,000 cases pushed through every step by batched
//! commands, cases per second per transition.
//!
//! Run with `scripts/bench.sh verivali [CASES]` (release build, real stack). Verivali
//! runs in the benchmark's process against the real PostgreSQL and RabbitMQ. The cases
//! open the way they do in production — `proposal.matched` events on the bus, taken by
//! verivali's consumer one transaction each — in ten regencies of 50 villages; then:
//!
//! - village review: one musdes minutes per village, 500 decisions to a command;
//! - field verification: one command per household visit (there is no batch visit),
//!   16 in flight;
//! - Bupati sign-off, province forwarding and the ministry's automatic assessment:
//!   batches of 5,000 cases, each batch one transaction, 2 in flight.
//!
//! Every command takes the same path as an officer's: token, validation, row locks,
//! the workflow check, history, state and events in one transaction.

use std::time::Instant;

use dtks_e2e::{Stack, authed, count, env_or};
use dtks_platform::auth::Role;
use dtks_platform::events;
use dtks_proto::common::v1 as pb;
use dtks_proto::events::v1 as ev;
use dtks_proto::verivali::v1::verivali_service_client::VerivaliServiceClient;
use dtks_proto::verivali::v1::*;
use futures::{StreamExt, TryStreamExt};
use sea_orm::ConnectionTrait;

const REGENCIES: usize = 10;
const VILLAGES_PER_REGENCY: usize = 50;
const BATCH: usize = 5000;

/// Household `i` of the synthetic population, matched against Dukcapil.
fn matched(i: usize) -> (String, ev::ProposalMatched) {
    let household = dtks_e2e::synthetic_household(i as u64);
    let village = household
        .address
        .as_ref()
        .map(|a| a.village_code.clone())
        .unwrap_or_default();
    let persons = (0..2)
        .map(|m| ev::PersonMatch {
            family_index: 0,
            member_index: m,
            outcome: ev::PersonOutcome::Matched as i32,
            ..Default::default()
        })
        .collect();
    (
        village,
        ev::ProposalMatched {
            proposal_id: uuid::Uuid::now_v7().to_string(),
            channel: ev::Channel::Musdes as i32,
            kind: ev::ProposalKind::Add as i32,
            household: Some(household),
            persons,
            outcome: ev::HouseholdOutcome::AllMatched as i32,
            ..Default::default()
        },
    )
}

/// Case ids by region prefix (village or regency), oldest first.
async fn cases_by(stack: &Stack, prefix_len: usize) -> anyhow::Result<Vec<(String, Vec<String>)>> {
    let rows = stack
        .db
        .query_all_raw(dtks_platform::db::stmt(
            "SELECT left(region_code, $1) AS region, array_agg(case_id::text ORDER BY case_id) AS ids
             FROM verivali.cases GROUP BY 1 ORDER BY 1",
            [(prefix_len as i32).into()],
        ))
        .await?;
    rows.iter()
        .map(|r| Ok((r.try_get("", "region")?, r.try_get("", "ids")?)))
        .collect()
}

struct Row {
    step: &'static str,
    cases: usize,
    seconds: f64,
    commands: usize,
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    let n: usize = env_or("DTKS_BENCH_CASES", 100_000);
    println!(
        "verivali workflow benchmark: {n} cases, {REGENCIES} regencies × {VILLAGES_PER_REGENCY} villages"
    );
    let mut stack = Stack::start_services(
        "nik,kk_number,full_name,birth_place,birth_date,sex,village_code,death_date\n",
        &[],
        &[],
    )
    .await?;
    stack
        .start_verivali_with_clock(dtks_platform::clock::system())
        .await?;
    let client = VerivaliServiceClient::new(stack.channel("verivali").await?)
        .max_decoding_message_size(64 << 20);
    let mut rows = Vec::new();

    // Cases open from proposal.matched, as matching publishes it.
    let bus = dtks_platform::bus::Bus::connect(&dtks_platform::config::BusConfig {
        url: secrecy::SecretString::from(std::env::var("DTKS_BUS__URL")?),
        namespace: format!("e2e.{}", stack.run_id),
        delivery_limit: 5,
        prefetch: 1,
        lanes: 1,
        queue_expires_ms: None,
    })
    .await?;
    let publisher = bus.publisher().await?;
    let started = Instant::now();
    for chunk in (0..n).collect::<Vec<_>>().chunks(10_000) {
        let envelopes: Vec<_> = chunk
            .iter()
            .map(|i| {
                let (village, m) = matched(*i);
                events::envelope(events::PROPOSAL_MATCHED, "matching", &village, &m)
            })
            .collect();
        publisher.publish_all(&envelopes).await?;
    }
    loop {
        let opened = count(
            &stack,
            "SELECT count(*) AS n FROM verivali.cases WHERE state = 1",
        )
        .await?;
        if opened as usize >= n {
            break;
        }
        anyhow::ensure!(
            started.elapsed().as_secs() < 1800,
            "only {opened} cases opened in 30 minutes"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    rows.push(Row {
        step: "case opened (proposal.matched consumed)",
        cases: n,
        seconds: started.elapsed().as_secs_f64(),
        commands: n,
    });

    // Village review: one minutes per village, 500 decisions to a command, 4 in flight.
    let by_village = cases_by(&stack, 13).await?;
    let today = dtks_platform::convert::pb_date(chrono::Utc::now().date_naive());
    let mut commands = Vec::new();
    for (village, ids) in &by_village {
        let token = stack.token_for("op", Role::VillageOperator, village);
        for chunk in ids.chunks(500) {
            let request = RecordVillageReviewRequest {
                minutes_number: format!("BA/{village}/1"),
                minutes_date: Some(today),
                attendees: 40,
                decisions: chunk
                    .iter()
                    .map(|id| VillageDecision {
                        case_id: id.clone(),
                        approved: true,
                        note: String::new(),
                    })
                    .collect(),
            };
            commands.push((token.clone(), request));
        }
    }
    let started = Instant::now();
    let count_commands = commands.len();
    let applied: Vec<u32> = futures::stream::iter(commands)
        .map(|(token, request)| {
            let mut client = client.clone();
            async move {
                anyhow::Ok(
                    client
                        .record_village_review(authed(request, &token))
                        .await?
                        .into_inner()
                        .applied,
                )
            }
        })
        .buffer_unordered(4)
        .try_collect()
        .await?;
    anyhow::ensure!(
        applied.iter().sum::<u32>() as usize == n,
        "village review applied {:?}",
        applied.iter().sum::<u32>()
    );
    rows.push(Row {
        step: "village review (musdes)",
        cases: n,
        seconds: started.elapsed().as_secs_f64(),
        commands: count_commands,
    });

    // Field verification: one visit per household, 16 in flight.
    let by_regency = cases_by(&stack, 5).await?;
    let started = Instant::now();
    let visits: Vec<(String, String)> = by_regency
        .iter()
        .flat_map(|(regency, ids)| {
            let token = stack.token_for("dinsos", Role::RegencyOfficer, regency);
            ids.iter().map(move |id| (token.clone(), id.clone()))
        })
        .collect();
    futures::stream::iter(visits)
        .map(|(token, id)| {
            let mut client = client.clone();
            async move {
                client
                    .record_field_verification(authed(
                        RecordFieldVerificationRequest {
                            case_id: id,
                            interview_summary: "interviewed".into(),
                            observation_summary: "as declared".into(),
                            geotag: Some(pb::GeoPoint {
                                latitude: -7.0,
                                longitude: 107.6,
                            }),
                            photo_references: vec!["photo://1".into()],
                            confirmed: true,
                            corrected: None,
                        },
                        &token,
                    ))
                    .await?;
                anyhow::Ok(())
            }
        })
        .buffer_unordered(16)
        .try_collect::<Vec<()>>()
        .await?;
    rows.push(Row {
        step: "field verification (one visit per command)",
        cases: n,
        seconds: started.elapsed().as_secs_f64(),
        commands: n,
    });

    // Sign-off, forwarding and assessment: batches of 5,000 in one transaction each.
    type Step = fn(
        VerivaliServiceClient<tonic::transport::Channel>,
        tonic::Request<BatchRequest>,
    ) -> futures::future::BoxFuture<'static, Result<BatchResult, tonic::Status>>;
    let steps: [(&str, Role, bool, Step); 3] = [
        ("Bupati sign-off", Role::Bupati, true, |mut c, r| {
            Box::pin(async move { c.sign_off(r).await.map(|a| a.into_inner()) })
        }),
        (
            "province forwarding",
            Role::ProvinceOfficer,
            false,
            |mut c, r| {
                Box::pin(async move { c.forward_to_ministry(r).await.map(|a| a.into_inner()) })
            },
        ),
        (
            "ministry assessment (automatic)",
            Role::MinistryAssessor,
            false,
            |mut c, r| Box::pin(async move { c.assess_batch(r).await.map(|a| a.into_inner()) }),
        ),
    ];
    let mut accepted = 0;
    for (name, role, per_regency, call) in steps {
        let mut batches = Vec::new();
        for (regency, ids) in &by_regency {
            let scope = if per_regency {
                regency.as_str()
            } else if role == Role::ProvinceOfficer {
                "32"
            } else {
                ""
            };
            let token = stack.token_for("officer", role, scope);
            for chunk in ids.chunks(BATCH) {
                batches.push((token.clone(), chunk.to_vec()));
            }
        }
        let started = Instant::now();
        let count_commands = batches.len();
        let results: Vec<BatchResult> = futures::stream::iter(batches)
            .map(|(token, ids)| {
                let client = client.clone();
                call(
                    client,
                    authed(
                        BatchRequest {
                            case_ids: ids,
                            note: String::new(),
                        },
                        &token,
                    ),
                )
            })
            .buffer_unordered(2)
            .try_collect()
            .await?;
        anyhow::ensure!(results.iter().map(|r| r.applied as usize).sum::<usize>() == n);
        accepted = results.iter().map(|r| r.accepted as usize).sum::<usize>();
        rows.push(Row {
            step: name,
            cases: n,
            seconds: started.elapsed().as_secs_f64(),
            commands: count_commands,
        });
    }
    anyhow::ensure!(accepted == n, "{accepted} of {n} accepted");
    let history = count(&stack, "SELECT count(*) AS n FROM verivali.case_history").await?;
    let events = count(&stack, "SELECT count(*) AS n FROM verivali.outbox").await?;

    println!("| transition | cases | commands | wall time | cases/s |");
    println!("|---|---|---|---|---|");
    for r in &rows {
        println!(
            "| {} | {} | {} | {:.1} s | {:.0} |",
            r.step,
            r.cases,
            r.commands,
            r.seconds,
            r.cases as f64 / r.seconds
        );
    }
    println!("{accepted} cases accepted; {history} history rows, {events} events in the outbox");
    let total: f64 = rows.iter().map(|r| r.seconds).sum();
    dtks_e2e::benchtable::record(&dtks_e2e::benchtable::Row {
        stage: "verivali".into(),
        measured: format!(
            "{n} cases through every step (opened from events, village review, field visit, sign-offs)"
        ),
        unit: "cases".into(),
        rate: n as f64 / total,
        cores: dtks_e2e::benchtable::machine_cores(),
        units_per_person: dtks_e2e::benchtable::HOUSEHOLDS_PER_PERSON,
        ..Default::default()
    })?;
    Ok(())
}
