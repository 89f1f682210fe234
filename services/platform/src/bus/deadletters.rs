//! Dead letters (*pesan gagal*): events a service refused for good, or could not handle
//! within its delivery limit, wait in `{ns}.{service}.dead`. Operators count them
//! (reporting's pipeline summary; the operations dashboard reads RabbitMQ's queue
//! depths), look at them and
//! send them back to the service that failed them (`dtksctl dead-letters list|replay`)
//! once the cause is fixed. A replayed event goes to that service's queue only; the
//! service's inbox makes a second delivery of an event it already applied harmless.

use lapin::options::{
    BasicAckOptions, BasicGetOptions, BasicPublishOptions, ConfirmSelectOptions,
    QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{BasicProperties, Channel};
use prost::Message as _;

use crate::bus::Bus;

/// One dead-lettered event, as an operator sees it (no payload: it may hold personal data).
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetter {
    pub event_id: String,
    pub event_type: String,
    /// Why the broker dead-lettered it: `rejected` (refused, or not decodable) or
    /// `delivery_limit` (failed on every delivery).
    pub reason: String,
}

fn header_text(headers: Option<&FieldTable>, name: &str) -> Option<String> {
    match headers?.inner().get(name)? {
        AMQPValue::LongString(s) => Some(s.to_string()),
        AMQPValue::ShortString(s) => Some(s.to_string()),
        _ => None,
    }
}

fn describe(delivery: &lapin::message::BasicGetMessage) -> DeadLetter {
    let properties = &delivery.delivery.properties;
    let headers = properties.headers().as_ref();
    let decoded = dtks_proto::events::v1::Envelope::decode(delivery.delivery.data.as_slice()).ok();
    DeadLetter {
        event_id: properties
            .message_id()
            .as_ref()
            .map(|s| s.to_string())
            .or_else(|| decoded.as_ref().map(|e| e.event_id.clone()))
            .unwrap_or_default(),
        event_type: properties
            .kind()
            .as_ref()
            .map(|s| s.to_string())
            .or_else(|| decoded.as_ref().map(|e| e.r#type.clone()))
            .unwrap_or_else(|| "(undecodable)".to_owned()),
        reason: header_text(headers, "x-first-death-reason").unwrap_or_default(),
    }
}

impl Bus {
    /// How many events wait in each of `services`' dead-letter queues (0 where there is
    /// none yet), counted on one channel.
    pub async fn dead_letter_counts(&self, services: &[&str]) -> anyhow::Result<Vec<u32>> {
        let mut channel = self.channel().await?;
        let mut counts = Vec::with_capacity(services.len());
        for service in services {
            let declared = channel
                .queue_declare(
                    self.dead_letter_queue(service).into(),
                    QueueDeclareOptions {
                        passive: true,
                        ..Default::default()
                    },
                    FieldTable::default(),
                )
                .await;
            match declared {
                Ok(queue) => counts.push(queue.message_count()),
                // A queue that does not exist yet holds nothing; the broker closed the
                // channel over it, so the rest are counted on a new one.
                Err(_) => {
                    counts.push(0);
                    channel = self.channel().await?;
                }
            }
        }
        let _ = channel.close(200, "counted".into()).await;
        Ok(counts)
    }

    /// Up to `limit` dead-lettered events of `service`, left where they are.
    pub async fn peek_dead_letters(
        &self,
        service: &str,
        limit: usize,
    ) -> anyhow::Result<Vec<DeadLetter>> {
        let channel = self.channel().await?;
        let mut seen = Vec::new();
        while seen.len() < limit {
            let Some(delivery) = get(&channel, &self.dead_letter_queue(service)).await? else {
                break;
            };
            seen.push(describe(&delivery));
        }
        // Closing the channel returns every unacknowledged message to the queue.
        let _ = channel.close(200, "peeked".into()).await;
        Ok(seen)
    }

    /// Sends up to `limit` dead-lettered events of `service` (only `event_id`, when
    /// given) back to that service's own queue, each removed from the dead-letter queue
    /// only once the broker confirmed its return; the events replayed.
    pub async fn replay_dead_letters(
        &self,
        service: &str,
        limit: usize,
        event_id: Option<&str>,
    ) -> anyhow::Result<Vec<DeadLetter>> {
        let channel = self.channel().await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        let queue = self.queue_name(service);
        let mut replayed = Vec::new();
        while replayed.len() < limit {
            let Some(delivery) = get(&channel, &self.dead_letter_queue(service)).await? else {
                break;
            };
            let letter = describe(&delivery);
            if event_id.is_some_and(|id| id != letter.event_id) {
                continue; // left unacknowledged: back in the queue when the channel closes
            }
            let original = &delivery.delivery.properties;
            // The broker's own bookkeeping is not carried over; the replay is marked.
            let mut headers = FieldTable::default();
            if let Some(old) = original.headers() {
                for (key, value) in old.inner() {
                    let key = key.as_str();
                    if !key.starts_with("x-death")
                        && !key.starts_with("x-first-death")
                        && !key.starts_with("x-last-death")
                        && key != "x-delivery-count"
                    {
                        headers.insert(key.into(), value.clone());
                    }
                }
            }
            headers.insert("x-dtks-replayed".into(), AMQPValue::Boolean(true));
            let mut properties = BasicProperties::default()
                .with_delivery_mode(2)
                .with_headers(headers);
            if let Some(id) = original.message_id() {
                properties = properties.with_message_id(id.clone());
            }
            if let Some(kind) = original.kind() {
                properties = properties.with_type(kind.clone());
            }
            if let Some(app) = original.app_id() {
                properties = properties.with_app_id(app.clone());
            }
            properties = properties.with_content_type(ShortString::from("application/x-protobuf"));
            let confirmation = channel
                .basic_publish(
                    "".into(),
                    queue.as_str().into(),
                    BasicPublishOptions::default(),
                    &delivery.delivery.data,
                    properties,
                )
                .await?
                .await?;
            anyhow::ensure!(
                confirmation.is_ack(),
                "the broker refused the replay of {}",
                letter.event_id
            );
            delivery
                .delivery
                .acker
                .ack(BasicAckOptions::default())
                .await?;
            replayed.push(letter);
        }
        let _ = channel.close(200, "replayed".into()).await;
        Ok(replayed)
    }
}

async fn get(
    channel: &Channel,
    queue: &str,
) -> anyhow::Result<Option<lapin::message::BasicGetMessage>> {
    match channel
        .basic_get(queue.into(), BasicGetOptions { no_ack: false })
        .await
    {
        Ok(message) => Ok(message),
        // A queue that does not exist yet holds nothing.
        Err(e) if e.to_string().contains("NOT_FOUND") => Ok(None),
        Err(e) => Err(e.into()),
    }
}
