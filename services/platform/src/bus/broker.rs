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
    BasicConsumeOptions, BasicPublishOptions, BasicQosOptions, ConfirmSelectOptions,
    ExchangeDeclareOptions, ExchangeDeleteOptions, QueueBindOptions, QueueDeclareOptions,
    QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};
use prost::Message;
use sea_orm::DatabaseConnection;
use secrecy::ExposeSecret;

use super::handler::EventHandler;
use super::lanes::{WATCH, dead_letter, lane_of, run_lane};
use crate::config::BusConfig;
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
