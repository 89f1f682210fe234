//! Consuming in lanes: a subscription's events are dispatched by region to a fixed
//! number of lanes, each handling its events in order, one transaction per event, and
//! acknowledging, dead-lettering or returning each one; a database outage holds the
//! lanes instead of burning deliveries.

use std::time::Duration;

use dtks_proto::events::v1::Envelope;
use lapin::options::{BasicAckOptions, BasicNackOptions};
use sea_orm::{ConnectionTrait, DatabaseConnection, TransactionTrait};

use super::handler::{EventHandler, Handled, HandlerError};
use crate::db::stmt;
use crate::shutdown::Shutdown;

/// The lane (0..`lanes`) of a region: a stable hash of its code.
pub(super) fn lane_of(region_code: &str, lanes: usize) -> usize {
    let hash = region_code.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    (hash % lanes as u64) as usize
}

/// One lane: handles its events in order until the dispatcher stops (then it finishes
/// what it was given) or shutdown (what it holds unacknowledged goes back to the queue
/// when the channel closes).
pub(super) async fn run_lane<H: EventHandler>(
    mut events: tokio::sync::mpsc::Receiver<(lapin::message::Delivery, Envelope)>,
    db: &DatabaseConnection,
    handler: &H,
    shutdown: &Shutdown,
) -> anyhow::Result<()> {
    while let Some((delivery, envelope)) = events.recv().await {
        if shutdown.is_triggered() {
            break;
        }
        settle(&delivery, &envelope, db, handler, shutdown).await?;
    }
    Ok(())
}

/// Handles one event and acknowledges it, dead-letters it, or returns it for redelivery.
async fn settle<H: EventHandler>(
    delivery: &lapin::message::Delivery,
    envelope: &Envelope,
    db: &DatabaseConnection,
    handler: &H,
    shutdown: &Shutdown,
) -> anyhow::Result<()> {
    let span = tracing::info_span!("consume", otel.kind = "consumer", event_type = %envelope.r#type, event_id = %envelope.event_id, trace_id = tracing::field::Empty);
    crate::telemetry::set_remote_parent(&span, &envelope.traceparent, &envelope.tracestate);
    crate::telemetry::record_trace_id(&span);
    let started = std::time::Instant::now();
    let outcome = loop {
        let outcome =
            tracing::Instrument::instrument(handle_once(db, handler, envelope), span.clone()).await;
        match &outcome {
            // The database is away: hold the event until it is back.
            Err(HandlerError::Transient(error)) if !database_answers(db).await => {
                tracing::warn!(event_type = %envelope.r#type, %error, "PostgreSQL does not answer; holding the event until it does");
                if !wait_for_database(db, shutdown).await {
                    break outcome;
                }
            }
            _ => break outcome,
        }
    };
    let result = match &outcome {
        Ok(()) => "ok",
        Err(HandlerError::Permanent(_)) => "refused",
        Err(HandlerError::Transient(_)) => "retried",
    };
    crate::metrics::event(&envelope.r#type, result, started.elapsed().as_secs_f64());
    match outcome {
        Ok(()) => {
            settled(delivery.acker.ack(BasicAckOptions::default())).await?;
        }
        Err(HandlerError::Permanent(reason)) => {
            tracing::error!(event_type = %envelope.r#type, %reason, "event refused; dead-lettering");
            dead_letter(delivery).await?;
        }
        Err(HandlerError::Transient(error)) => {
            // The database answers, so the cause is this event's: redeliver it, which
            // counts towards its delivery limit.
            tracing::warn!(event_type = %envelope.r#type, %error, "event failed; will be redelivered");
            tokio::time::sleep(Duration::from_millis(200)).await;
            settled(delivery.acker.nack(BasicNackOptions {
                requeue: true,
                multiple: false,
            }))
            .await?;
        }
    }
    Ok(())
}

/// Refuses `delivery` for good: the broker moves it to the dead-letter queue.
pub(super) async fn dead_letter(delivery: &lapin::message::Delivery) -> anyhow::Result<()> {
    settled(delivery.acker.nack(BasicNackOptions {
        requeue: false,
        multiple: false,
    }))
    .await
}

/// How often a subscription checks that its channel is alive, and how long an
/// acknowledgement may take before the channel counts as lost.
pub(super) const WATCH: Duration = Duration::from_secs(2);

/// An acknowledgement to the broker, bounded: on a connection that died, it fails
/// instead of waiting for ever (the event is redelivered on a new subscription).
async fn settled(
    ack: impl std::future::Future<Output = lapin::Result<bool>>,
) -> anyhow::Result<()> {
    tokio::time::timeout(WATCH * 5, ack)
        .await
        .map_err(|_| anyhow::anyhow!("the broker did not take an acknowledgement"))??;
    Ok(())
}

/// Whether PostgreSQL answers a trivial query within a few seconds.
async fn database_answers(db: &DatabaseConnection) -> bool {
    matches!(
        tokio::time::timeout(Duration::from_secs(6), db.execute_unprepared("SELECT 1")).await,
        Ok(Ok(_))
    )
}

/// Waits until PostgreSQL answers again; `false` when shutdown came first.
async fn wait_for_database(db: &DatabaseConnection, shutdown: &Shutdown) -> bool {
    let mut delay = Duration::from_millis(200);
    loop {
        if !shutdown.sleep(delay).await {
            return false;
        }
        if database_answers(db).await {
            tracing::info!("PostgreSQL answers again");
            return true;
        }
        delay = (delay * 2).min(Duration::from_secs(2));
    }
}

async fn handle_once<H: EventHandler>(
    db: &DatabaseConnection,
    handler: &H,
    envelope: &Envelope,
) -> Handled {
    let event_id = uuid::Uuid::parse_str(&envelope.event_id)
        .map_err(|e| HandlerError::Permanent(format!("event id: {e}")))?;
    let txn = db.begin().await.map_err(HandlerError::transient)?;
    let inserted = txn
        .execute_raw(stmt(
            "INSERT INTO inbox (event_id, event_type) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            [event_id.into(), envelope.r#type.clone().into()],
        ))
        .await
        .map_err(HandlerError::transient)?;
    if inserted.rows_affected() == 0 {
        tracing::debug!("duplicate delivery ignored");
        txn.commit().await.map_err(HandlerError::transient)?;
        return Ok(());
    }
    // A handler that panics on one event must not take the consumer with it: the panic
    // is this event's, so the event is dead-lettered with why and the lane goes on (the
    // transaction is dropped, which rolls it back).
    let handled = futures::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(
        handler.handle(&txn, envelope),
    ))
    .await;
    match handled {
        Ok(result) => result?,
        Err(panic) => {
            return Err(HandlerError::Permanent(format!(
                "the handler panicked: {}",
                panic_reason(panic.as_ref())
            )));
        }
    }
    txn.commit().await.map_err(HandlerError::transient)?;
    handler.after_commit();
    Ok(())
}

/// What a panic said, when it is the code's own words (a `&'static str`): a formatted
/// message could carry the values it was handling, which may be personal data.
fn panic_reason(panic: &(dyn std::any::Any + Send)) -> &'static str {
    panic
        .downcast_ref::<&'static str>()
        .copied()
        .unwrap_or("(its message is withheld: it may carry the event's data)")
}
