//! Dead letters: a poison event ends in the consuming service's dead-letter queue at
//! once (a payload no retry can read), shows in reporting's national summary, and is
//! listed by `dtksctl dead-letters list`. An event lost to the dead-letter queue while a
//! cause lasted is replayed with `dtksctl dead-letters replay` and takes effect once —
//! a second replay of it changes nothing; a replayed poison event comes back.

use dtks_e2e::{Stack, authed, count, count_becomes};
use dtks_platform::auth::Role;
use dtks_proto::events::v1::Envelope;
use dtks_proto::reporting::v1::RegionQuery;
use dtks_proto::reporting::v1::reporting_service_client::ReportingServiceClient;
use lapin::options::{BasicPublishOptions, QueueBindOptions};
use lapin::types::{FieldTable, ShortString};
use lapin::{BasicProperties, Connection, ConnectionProperties};
use prost::Message;
use sea_orm::ConnectionTrait;

use super::{REGISTRY, VILLAGE, submit_musdes};

async fn publish(
    channel: &lapin::Channel,
    exchange: &str,
    routing_key: &str,
    envelope: &Envelope,
) -> anyhow::Result<()> {
    let properties = BasicProperties::default()
        .with_message_id(ShortString::from(envelope.event_id.as_str()))
        .with_type(ShortString::from(envelope.r#type.as_str()))
        .with_delivery_mode(2);
    channel
        .basic_publish(
            exchange.into(),
            routing_key.into(),
            BasicPublishOptions::default(),
            &envelope.encode_to_vec(),
            properties,
        )
        .await?
        .await?;
    Ok(())
}

/// Waits (up to `secs`) until `n` events wait in verivali's dead letters.
async fn dead_letters_become(stack: &Stack, secs: u64, n: u64) -> anyhow::Result<()> {
    stack
        .eventually(secs, "verivali's dead letters", || async move {
            Ok((waiting(stack, "verivali").await? == n).then_some(()))
        })
        .await
}

/// `dtksctl dead-letters <args…> --service verivali` against the run's broker; its
/// standard output (the command must succeed).
async fn dead_letters(stack: &Stack, args: &[&str]) -> anyhow::Result<String> {
    let url = std::env::var("DTKS_BUS__URL").unwrap_or_else(|_| "amqp://127.0.0.1:5672/%2f".into());
    let ns = format!("e2e.{}", stack.run_id);
    let env = [
        ("DTKS_BUS__URL", url.as_str()),
        ("DTKS_BUS__NAMESPACE", ns.as_str()),
    ];
    let mut all = vec!["dead-letters"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--service", "verivali"]);
    let (code, out, err) = stack.dtksctl_with_env("", &env, &all).await?;
    anyhow::ensure!(code == 0, "dtksctl dead-letters {args:?}: {err}");
    Ok(out)
}

async fn waiting(stack: &Stack, service: &str) -> anyhow::Result<u64> {
    let summary = ReportingServiceClient::new(stack.channel("reporting").await?)
        .get_pipeline_summary(authed(
            RegionQuery::default(),
            &stack.token(Role::PusdatinAdmin, ""),
        ))
        .await?
        .into_inner();
    Ok(summary
        .dead_letters
        .iter()
        .find(|d| d.service == service)
        .map(|d| d.waiting)
        .unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_events_wait_visibly_and_lost_events_are_replayed_once() -> anyhow::Result<()> {
    let stack = Stack::start(REGISTRY).await?;
    let ns = format!("e2e.{}", stack.run_id);
    let url = std::env::var("DTKS_BUS__URL").unwrap_or_else(|_| "amqp://127.0.0.1:5672/%2f".into());
    let amqp = Connection::connect(&url, ConnectionProperties::default()).await?;
    let channel = amqp.create_channel().await?;
    channel
        .confirm_select(lapin::options::ConfirmSelectOptions::default())
        .await?;
    let (events, verivali_queue, verivali_dead) = (
        format!("{ns}.events"),
        format!("{ns}.verivali"),
        format!("{ns}.verivali.dead"),
    );

    // A poison event: verivali cannot read its payload and dead-letters it at once.
    let poison = Envelope {
        event_id: uuid::Uuid::now_v7().to_string(),
        r#type: "proposal.matched".into(),
        producer: "matching".into(),
        region_code: "32.04".into(),
        payload: vec![0xff, 0xff, 0xff],
        ..Default::default()
    };
    publish(&channel, &events, "proposal.matched", &poison).await?;
    dead_letters_become(&stack, 20, 1).await?;
    let out = dead_letters(&stack, &["list"]).await?;
    assert!(
        out.contains(&format!("{}\tproposal.matched\trejected", poison.event_id)),
        "{out}"
    );

    // A matched proposal verivali missed (its queue was not bound while it was
    // published), put in its dead letters as a delivery-limit failure would be.
    channel
        .queue_unbind(
            verivali_queue.as_str().into(),
            events.as_str().into(),
            "proposal.matched".into(),
            FieldTable::default(),
        )
        .await?;
    let operator = stack.token(Role::VillageOperator, VILLAGE);
    submit_musdes(&stack, &operator, "dead-1", "DEAD-1").await?;
    let stack_ref = &stack;
    let matched = stack
        .eventually(30, "matching to publish its result", || async move {
            let row = stack_ref
                .db
                .query_one_raw(dtks_platform::db::stmt(
                    "SELECT envelope FROM matching.outbox WHERE event_type = 'proposal.matched' AND published_at IS NOT NULL",
                    [],
                ))
                .await?;
            Ok(match row {
                Some(r) => Some(Envelope::decode(r.try_get::<Vec<u8>>("", "envelope")?.as_slice())?),
                None => None,
            })
        })
        .await?;
    channel
        .queue_bind(
            verivali_queue.as_str().into(),
            events.as_str().into(),
            "proposal.matched".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
    publish(&channel, "", &verivali_dead, &matched).await?;
    assert_eq!(waiting(&stack, "verivali").await?, 2);
    assert_eq!(
        count(&stack, "SELECT count(*)::bigint AS n FROM verivali.cases").await?,
        0
    );

    // Replayed: the case opens, and the poison event stays behind.
    let out = dead_letters(&stack, &["replay", "--event-id", &matched.event_id]).await?;
    assert!(out.contains(&matched.event_id), "{out}");
    count_becomes(
        &stack,
        20,
        "SELECT count(*)::bigint AS n FROM verivali.cases",
        1,
    )
    .await?;
    assert_eq!(waiting(&stack, "verivali").await?, 1);

    // The same event once more: the inbox knows it; nothing changes.
    let history = count(
        &stack,
        "SELECT count(*)::bigint AS n FROM verivali.case_history",
    )
    .await?;
    publish(&channel, "", &verivali_dead, &matched).await?;
    dead_letters(&stack, &["replay"]).await?;
    // Both went back; the poison event is refused again and returns to the dead letters.
    dead_letters_become(&stack, 20, 1).await?;
    // The matched event was replayed after the poison one; give verivali a moment to
    // have taken it (there is nothing to wait for: it must change nothing).
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(
        count(&stack, "SELECT count(*)::bigint AS n FROM verivali.cases").await?,
        1
    );
    assert_eq!(
        count(
            &stack,
            "SELECT count(*)::bigint AS n FROM verivali.case_history"
        )
        .await?,
        history
    );
    Ok(())
}

/// A cause that lasts: verivali cannot store a case (a drill trigger refuses the insert),
/// so the event fails on every delivery and the broker dead-letters it after the
/// delivery limit; once the cause is gone, the replay opens the case.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_failing_on_every_delivery_is_dead_lettered_after_the_limit_and_replayed()
-> anyhow::Result<()> {
    let stack = Stack::start(REGISTRY).await?;
    stack
        .db
        .execute_unprepared(
            "CREATE FUNCTION verivali.drill_refuse() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN RAISE EXCEPTION 'the disk is full (drill)'; END $$;
             CREATE TRIGGER drill_refuse BEFORE INSERT ON verivali.cases
                 FOR EACH ROW EXECUTE FUNCTION verivali.drill_refuse();",
        )
        .await?;
    let operator = stack.token(Role::VillageOperator, VILLAGE);
    submit_musdes(&stack, &operator, "limit-1", "LIMIT-1").await?;
    dead_letters_become(&stack, 60, 1).await?;
    let out = dead_letters(&stack, &["list"]).await?;
    assert!(out.contains("proposal.matched\tdelivery_limit"), "{out}");
    assert_eq!(
        count(&stack, "SELECT count(*)::bigint AS n FROM verivali.cases").await?,
        0
    );

    // The cause is fixed; the replay opens the case.
    stack
        .db
        .execute_unprepared("DROP TRIGGER drill_refuse ON verivali.cases")
        .await?;
    dead_letters(&stack, &["replay"]).await?;
    count_becomes(
        &stack,
        20,
        "SELECT count(*)::bigint AS n FROM verivali.cases",
        1,
    )
    .await?;
    assert_eq!(waiting(&stack, "verivali").await?, 0);
    Ok(())
}
