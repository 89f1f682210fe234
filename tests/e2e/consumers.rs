//! A consumer outlives its handler: an event whose handling panics (an overflow, a bug)
//! is dead-lettered with its reason, the events around it are handled, and the consumer
//! goes on taking events — on the real broker and database of a run. Finding 1 of the
//! hardening probe: one event with an income of `i64::MAX` once stopped verivali's
//! consumer for the whole country while its health still said SERVING.

use std::sync::{Arc, Mutex};

use dtks_platform::bus::{Bus, EventHandler, HandlerError};
use dtks_proto::events::v1::Envelope;
use sea_orm::{ConnectionTrait, DatabaseTransaction};

use super::REGISTRY;
use dtks_e2e::Stack;

#[derive(Clone, Default)]
struct Fragile {
    handled: Arc<Mutex<Vec<String>>>,
}

impl EventHandler for Fragile {
    async fn handle(
        &self,
        txn: &DatabaseTransaction,
        envelope: &Envelope,
    ) -> Result<(), HandlerError> {
        // Written in the event's transaction: a panic must leave none of it behind.
        txn.execute_unprepared(&format!(
            "INSERT INTO touched (event_id) VALUES ('{}')",
            envelope.event_id
        ))
        .await
        .map_err(HandlerError::transient)?;
        match envelope.r#type.as_str() {
            "test.overflow" => {
                // The arithmetic the probe broke: a sum of incomes that overflows.
                let income = i64::MAX - i64::from(envelope.payload.is_empty());
                let total = income + i64::try_from(envelope.payload.len()).unwrap_or(0);
                std::hint::black_box(total);
            }
            "test.panic" => {
                // A formatted message may carry the event's data: it is withheld.
                let nik = String::from_utf8_lossy(&envelope.payload).into_owned();
                panic!("cannot handle {nik}");
            }
            _ => {}
        }
        self.handled
            .lock()
            .map_err(|_| HandlerError::Permanent("poisoned".into()))?
            .push(envelope.r#type.clone());
        Ok(())
    }
}

fn event(kind: &str, payload: &[u8]) -> Envelope {
    Envelope {
        event_id: uuid::Uuid::now_v7().to_string(),
        r#type: kind.into(),
        producer: "e2e".into(),
        region_code: "32.04".into(),
        payload: payload.to_vec(),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_that_panics_dead_letters_its_event_and_the_consumer_goes_on()
-> anyhow::Result<()> {
    let stack = Stack::start_services(REGISTRY, &["intake"], &[]).await?;
    let config = stack.bus_config();
    let bus = Bus::connect(&config).await?;
    let queue = bus.declare_queue("fragile", &["test.#"]).await?;
    let db = dtks_platform::db::connect(
        &dtks_platform::config::DatabaseConfig {
            url: secrecy::SecretString::from(stack.database_url.clone()),
            max_connections: 4,
        },
        "fragile",
    )
    .await?;
    db.execute_unprepared(include_str!(
        "../../services/platform/migrations/m0000_outbox_inbox.sql"
    ))
    .await?;
    db.execute_unprepared("CREATE TABLE touched (event_id UUID PRIMARY KEY)")
        .await?;
    let handler = Fragile::default();
    let (stop, shutdown) = dtks_platform::shutdown::Shutdown::manual();
    let consumer = tokio::spawn({
        let (bus, db, handler) = (bus.clone(), db.clone(), handler.clone());
        async move { bus.consume(&queue, db, handler, shutdown).await }
    });

    let publisher = bus.publisher().await?;
    let (overflow, panic) = (
        event("test.overflow", b"x"),
        event("test.panic", b"3204051203800001"),
    );
    publisher
        .publish_all(&[
            event("test.first", b""),
            overflow.clone(),
            panic.clone(),
            event("test.second", b""),
        ])
        .await?;
    let handled = || {
        handler
            .handled
            .lock()
            .map(|h| h.clone())
            .unwrap_or_default()
    };
    stack
        .eventually(
            30,
            "the events around the failing ones to be handled",
            || async { Ok((handled().len() == 2).then_some(())) },
        )
        .await?;
    assert_eq!(handled(), ["test.first", "test.second"]);
    stack
        .eventually(30, "both failing events in the dead letters", || async {
            Ok((bus.dead_letter_counts(&["fragile"]).await?[0] == 2).then_some(()))
        })
        .await?;
    let dead = bus.peek_dead_letters("fragile", 10).await?;
    let mut ids: Vec<&str> = dead.iter().map(|d| d.event_id.as_str()).collect();
    ids.sort_unstable();
    let mut expected = [overflow.event_id.as_str(), panic.event_id.as_str()];
    expected.sort_unstable();
    assert_eq!(ids, expected);
    assert!(dead.iter().all(|d| d.reason == "rejected"), "{dead:?}");
    // The panicking events' writes were rolled back; the others' committed.
    let touched = dtks_e2e::count(&stack, "SELECT count(*) AS n FROM fragile.touched").await?;
    assert_eq!(touched, 2);

    // The consumer lives on: a later event is handled too.
    assert!(!consumer.is_finished(), "the consumer ended");
    publisher.publish_all(&[event("test.third", b"")]).await?;
    stack
        .eventually(30, "a later event to be handled", || async {
            Ok((handled().len() == 3).then_some(()))
        })
        .await?;
    let _ = stop.send(true);
    consumer.await??;
    Ok(())
}
