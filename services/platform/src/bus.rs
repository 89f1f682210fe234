//! RabbitMQ topology and clients.
//!
//! - one durable topic exchange `{ns}.events`; routing key = event type;
//! - per consuming service a quorum queue `{ns}.{service}` bound to the event types it
//!   reads, dead-lettering to `{ns}.dlx` after `delivery_limit` deliveries;
//! - per service a dead-letter quorum queue `{ns}.{service}.dead`;
//! - publishers use confirms; consumers ack only after their transaction committed and
//!   record every event id in an inbox table, so a redelivery has no second effect.

use std::time::Duration;

use dtks_proto::events::v1::Envelope;
use futures::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, ExchangeDeclareOptions, ExchangeDeleteOptions, QueueBindOptions,
    QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};
use prost::Message;
use sea_orm::{ConnectionTrait, DatabaseConnection, DatabaseTransaction, TransactionTrait};
use secrecy::ExposeSecret;

use crate::config::BusConfig;
use crate::db::stmt;
use crate::shutdown::Shutdown;

/// The services that consume events: each has a queue `{ns}.{service}` and a
/// dead-letter queue `{ns}.{service}.dead`.
pub const CONSUMERS: [&str; 6] = [
    "intake",
    "matching",
    "verivali",
    "determination",
    "distribution",
    "reporting",
];

#[derive(Clone)]
pub struct Bus {
    /// The broker connection; replaced by a fresh one when it is lost (a broker
    /// restart, a network cut), so every holder of the bus recovers together.
    connection: std::sync::Arc<tokio::sync::Mutex<std::sync::Arc<Connection>>>,
    config: BusConfig,
}

/// How long one connection attempt may take before it counts as failed.
const ATTEMPT: Duration = Duration::from_secs(10);

impl Bus {
    /// Connects, retrying for up to a minute while the broker starts. Each attempt is
    /// bounded, so a broker that accepts the TCP connection but never answers the AMQP
    /// handshake is reported and retried instead of hanging start-up.
    pub async fn connect(config: &BusConfig) -> anyhow::Result<Self> {
        let mut delay = Duration::from_millis(200);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            match Self::open(config).await {
                Ok(connection) => {
                    return Ok(Self {
                        connection: std::sync::Arc::new(tokio::sync::Mutex::new(
                            std::sync::Arc::new(connection),
                        )),
                        config: config.clone(),
                    });
                }
                Err(error) if tokio::time::Instant::now() < deadline => {
                    tracing::warn!(error = %format!("{error:#}"), "cannot reach RabbitMQ yet; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
                Err(error) => return Err(error.context("connecting to RabbitMQ")),
            }
        }
    }

    /// One bounded attempt: connects and declares the namespace's exchanges.
    async fn open(config: &BusConfig) -> anyhow::Result<Connection> {
        tokio::time::timeout(ATTEMPT, async {
            let connection =
                Connection::connect(config.url.expose_secret(), ConnectionProperties::default())
                    .await?;
            declare_exchanges(&connection, &config.namespace).await?;
            anyhow::Ok(connection)
        })
        .await
        .unwrap_or_else(|_| {
            Err(anyhow::anyhow!(
                "RabbitMQ did not complete the AMQP handshake within {ATTEMPT:?}"
            ))
        })
    }

    /// The live connection: the current one while it is connected, otherwise a fresh
    /// one (one bounded attempt; the caller retries).
    async fn connection(&self) -> anyhow::Result<std::sync::Arc<Connection>> {
        let mut current = self.connection.lock().await;
        if !current.status().connected() {
            tracing::warn!("the RabbitMQ connection is lost; reconnecting");
            *current = std::sync::Arc::new(Self::open(&self.config).await?);
            tracing::info!("reconnected to RabbitMQ");
        }
        Ok(current.clone())
    }

    pub fn events_exchange(&self) -> String {
        events_exchange(&self.config.namespace)
    }

    fn dead_letter_exchange(&self) -> String {
        dead_letter_exchange(&self.config.namespace)
    }

    /// A fresh channel on the bus's connection (reconnecting first if it was lost).
    pub(crate) async fn channel(&self) -> anyhow::Result<Channel> {
        Ok(self.connection().await?.create_channel().await?)
    }

    pub fn queue_name(&self, service: &str) -> String {
        format!("{}.{service}", self.config.namespace)
    }

    pub fn dead_letter_queue(&self, service: &str) -> String {
        format!("{}.{service}.dead", self.config.namespace)
    }

    /// Declares the service's queue (bound to `routing_keys`) and its dead-letter queue.
    pub async fn declare_queue(
        &self,
        service: &str,
        routing_keys: &[&str],
    ) -> anyhow::Result<String> {
        let channel = self.channel().await?;
        let queue = self.queue_name(service);
        let dead = self.dead_letter_queue(service);
        let mut quorum = FieldTable::default();
        quorum.insert(
            "x-queue-type".into(),
            AMQPValue::LongString(LongString::from("quorum")),
        );
        if let Some(expires) = self.config.queue_expires_ms {
            quorum.insert("x-expires".into(), AMQPValue::LongUInt(expires));
        }
        let durable = QueueDeclareOptions {
            durable: true,
            ..Default::default()
        };
        channel
            .queue_declare(dead.clone().into(), durable, quorum.clone())
            .await?;
        channel
            .queue_bind(
                dead.into(),
                self.dead_letter_exchange().into(),
                service.into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
        let mut args = quorum;
        args.insert(
            "x-dead-letter-exchange".into(),
            AMQPValue::LongString(LongString::from(self.dead_letter_exchange())),
        );
        args.insert(
            "x-dead-letter-routing-key".into(),
            AMQPValue::LongString(LongString::from(service)),
        );
        args.insert(
            "x-delivery-limit".into(),
            AMQPValue::LongInt(self.config.delivery_limit as i32),
        );
        channel
            .queue_declare(queue.clone().into(), durable, args)
            .await?;
        for key in routing_keys {
            channel
                .queue_bind(
                    queue.clone().into(),
                    self.events_exchange().into(),
                    (*key).into(),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await?;
        }
        channel.close(200, "declared".into()).await?;
        Ok(queue)
    }

    /// Deletes the queues of `services` (with their dead-letter queues) and the
    /// namespace's two exchanges: tears down a short-lived namespace such as a test run.
    pub async fn delete_namespace(&self, services: &[&str]) -> anyhow::Result<()> {
        let channel = self.channel().await?;
        for service in services {
            for queue in [self.queue_name(service), self.dead_letter_queue(service)] {
                channel
                    .queue_delete(queue.into(), QueueDeleteOptions::default())
                    .await?;
            }
        }
        for exchange in [self.events_exchange(), self.dead_letter_exchange()] {
            channel
                .exchange_delete(exchange.into(), ExchangeDeleteOptions::default())
                .await?;
        }
        channel.close(200, "namespace deleted".into()).await?;
        Ok(())
    }

    /// A channel in confirm mode for publishing events.
    pub async fn publisher(&self) -> anyhow::Result<Publisher> {
        let channel = self.channel().await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        Ok(Publisher {
            channel,
            exchange: self.events_exchange(),
        })
    }

    /// Consumes `queue` until shutdown, handing each new event to `handler` inside a
    /// transaction that also records the event id in the inbox.
    ///
    /// Outages do not end it: when the broker connection is lost it subscribes again on
    /// a fresh one (what was delivered and not acknowledged comes back, and the inbox
    /// absorbs what had taken effect), and while PostgreSQL does not answer it holds the
    /// event and tries it again once the database is back, so that an outage does not
    /// use up the event's deliveries and send it to the dead letters.
    pub async fn consume<H: EventHandler>(
        &self,
        queue: &str,
        db: DatabaseConnection,
        handler: H,
        shutdown: Shutdown,
    ) -> anyhow::Result<()> {
        let mut backoff = Duration::from_millis(200);
        loop {
            let mut subscribed = false;
            match self
                .consume_session(queue, &db, &handler, &shutdown, &mut subscribed)
                .await
            {
                Ok(()) => return Ok(()),
                Err(error) => {
                    if subscribed {
                        backoff = Duration::from_millis(200);
                    }
                    tracing::warn!(error = %format!("{error:#}"), queue, "consumer lost the broker; subscribing again");
                    if !shutdown.sleep(backoff).await {
                        return Ok(());
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    /// One subscription on one channel: ends with `Ok` on shutdown and with the error
    /// when the channel or its connection fails.
    async fn consume_session<H: EventHandler>(
        &self,
        queue: &str,
        db: &DatabaseConnection,
        handler: &H,
        shutdown: &Shutdown,
        subscribed: &mut bool,
    ) -> anyhow::Result<()> {
        let channel = self.channel().await?;
        channel
            .basic_qos(self.config.prefetch, BasicQosOptions::default())
            .await?;
        let tag = format!("{queue}.{}", uuid::Uuid::new_v4());
        let mut consumer = channel
            .basic_consume(
                queue.into(),
                tag.into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;
        *subscribed = true;
        // The dispatcher hands each event to the lane of its region; each lane handles
        // its events one after another, the lanes side by side.
        let lanes = usize::from(self.config.lanes.max(1));
        let mut senders = Vec::with_capacity(lanes);
        let mut receivers = Vec::with_capacity(lanes);
        for _ in 0..lanes {
            let (tx, rx) = tokio::sync::mpsc::channel::<(lapin::message::Delivery, Envelope)>(64);
            senders.push(tx);
            receivers.push(rx);
        }
        let watched = channel.clone();
        let dispatch = async move {
            loop {
                let next = tokio::select! {
                    next = consumer.next() => next,
                    _ = shutdown.clone().wait() => None,
                    // A subscription whose channel died without a word still ends.
                    _ = tokio::time::sleep(WATCH) => {
                        if watched.status().connected() {
                            continue;
                        }
                        anyhow::bail!("the channel to the broker is closed");
                    }
                };
                let Some(delivery) = next else {
                    if shutdown.is_triggered() {
                        return Ok(());
                    }
                    anyhow::bail!("the broker ended the subscription");
                };
                let delivery = delivery?;
                let Ok(envelope) = Envelope::decode(delivery.data.as_slice()) else {
                    tracing::error!(routing_key = %delivery.routing_key, "undecodable envelope; dead-lettering");
                    dead_letter(&delivery).await?;
                    continue;
                };
                let lane = lane_of(&envelope.region_code, lanes);
                if senders[lane].send((delivery, envelope)).await.is_err() {
                    anyhow::bail!("a consumer lane stopped");
                }
            }
        };
        let work = futures::future::try_join_all(
            receivers
                .into_iter()
                .map(|rx| run_lane(rx, db, handler, shutdown)),
        );
        let (dispatched, worked) = tokio::join!(dispatch, work);
        let _ = channel.close(200, "shutdown".into()).await;
        dispatched?;
        worked?;
        Ok(())
    }
}

/// The lane (0..`lanes`) of a region: a stable hash of its code.
fn lane_of(region_code: &str, lanes: usize) -> usize {
    let hash = region_code.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    (hash % lanes as u64) as usize
}

/// One lane: handles its events in order until the dispatcher stops (then it finishes
/// what it was given) or shutdown (what it holds unacknowledged goes back to the queue
/// when the channel closes).
async fn run_lane<H: EventHandler>(
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
async fn dead_letter(delivery: &lapin::message::Delivery) -> anyhow::Result<()> {
    settled(delivery.acker.nack(BasicNackOptions {
        requeue: false,
        multiple: false,
    }))
    .await
}

/// How often a subscription checks that its channel is alive, and how long an
/// acknowledgement may take before the channel counts as lost.
const WATCH: Duration = Duration::from_secs(2);

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

fn events_exchange(namespace: &str) -> String {
    format!("{namespace}.events")
}

fn dead_letter_exchange(namespace: &str) -> String {
    format!("{namespace}.dlx")
}

/// Declares the namespace's two durable topic exchanges on `connection`.
async fn declare_exchanges(connection: &Connection, namespace: &str) -> lapin::Result<()> {
    let channel = connection.create_channel().await?;
    let durable = ExchangeDeclareOptions {
        durable: true,
        ..Default::default()
    };
    for exchange in [events_exchange(namespace), dead_letter_exchange(namespace)] {
        channel
            .exchange_declare(
                exchange.into(),
                ExchangeKind::Topic,
                durable,
                FieldTable::default(),
            )
            .await?;
    }
    channel.close(200, "declared".into()).await?;
    Ok(())
}

async fn handle_once<H: EventHandler>(
    db: &DatabaseConnection,
    handler: &H,
    envelope: &Envelope,
) -> Result<(), HandlerError> {
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

/// Why an event could not be handled.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// Redelivery cannot help (bad payload, broken invariant): dead-letter now.
    #[error("permanent: {0}")]
    Permanent(String),
    /// Redelivery may help (database or upstream unavailable).
    #[error("transient: {0}")]
    Transient(anyhow::Error),
}

impl HandlerError {
    pub fn transient(e: impl Into<anyhow::Error>) -> Self {
        Self::Transient(e.into())
    }
}

impl From<crate::events::PayloadError> for HandlerError {
    fn from(e: crate::events::PayloadError) -> Self {
        Self::Permanent(e.to_string())
    }
}

impl From<sea_orm::DbErr> for HandlerError {
    fn from(e: sea_orm::DbErr) -> Self {
        Self::Transient(e.into())
    }
}

/// What a service does with one event, inside the consumer's transaction.
pub trait EventHandler: Send + Sync {
    fn handle(
        &self,
        txn: &DatabaseTransaction,
        envelope: &Envelope,
    ) -> impl std::future::Future<Output = Result<(), HandlerError>> + Send;

    /// Called after the transaction committed (e.g. to wake the outbox relay).
    fn after_commit(&self) {}
}

/// A confirm-mode channel bound to the events exchange.
pub struct Publisher {
    channel: Channel,
    exchange: String,
}

impl Publisher {
    /// Publishes every envelope persistently and waits until the broker confirmed all.
    pub async fn publish_all(&self, envelopes: &[Envelope]) -> anyhow::Result<()> {
        let mut confirms = Vec::with_capacity(envelopes.len());
        for envelope in envelopes {
            let mut headers = FieldTable::default();
            if !envelope.traceparent.is_empty() {
                headers.insert(
                    "traceparent".into(),
                    AMQPValue::LongString(LongString::from(envelope.traceparent.as_str())),
                );
            }
            if !envelope.tracestate.is_empty() {
                headers.insert(
                    "tracestate".into(),
                    AMQPValue::LongString(LongString::from(envelope.tracestate.as_str())),
                );
            }
            let properties = BasicProperties::default()
                .with_message_id(ShortString::from(envelope.event_id.as_str()))
                .with_type(ShortString::from(envelope.r#type.as_str()))
                .with_app_id(ShortString::from(envelope.producer.as_str()))
                .with_content_type(ShortString::from("application/x-protobuf"))
                .with_delivery_mode(2)
                .with_headers(headers);
            let confirm = self
                .channel
                .basic_publish(
                    self.exchange.as_str().into(),
                    envelope.r#type.as_str().into(),
                    BasicPublishOptions::default(),
                    &envelope.encode_to_vec(),
                    properties,
                )
                .await?;
            confirms.push(confirm);
        }
        for confirm in confirms {
            let confirmation = confirm.await?;
            anyhow::ensure!(confirmation.is_ack(), "broker refused an event (nack)");
        }
        Ok(())
    }
}
