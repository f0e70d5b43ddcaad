//! Broker housekeeping that is not part of running a service: removing a consumer's queues
//! (tests, the demo's reset) and looking at queue depths.

use lapin::options::{ExchangeDeleteOptions, QueueDeclareOptions, QueueDeleteOptions};
use lapin::types::FieldTable;
use lapin::{Connection, ConnectionProperties};

use crate::config::BusConfig;
use crate::topology::QueueNames;

pub async fn connect(config: &BusConfig) -> Result<Connection, lapin::Error> {
    Connection::connect(&config.amqp_url, ConnectionProperties::default()).await
}

/// Deletes the queues of `consumers` (main, hold and dead-letter) and the exchange.
/// Missing ones are fine.
pub async fn delete_topology(config: &BusConfig, consumers: &[&str]) -> Result<(), lapin::Error> {
    let conn = connect(config).await?;
    let channel = conn.create_channel().await?;
    for consumer in consumers {
        let names = QueueNames::new(config, consumer);
        let mut queues = vec![names.main.clone(), names.dead_letter.clone()];
        queues.extend(
            config
                .distinct_retry_delays()
                .into_iter()
                .map(|d| names.hold(d)),
        );
        for q in queues {
            channel
                .queue_delete(q.as_str().into(), QueueDeleteOptions::default())
                .await?;
        }
        channel
            .exchange_delete(
                names.exchange.as_str().into(),
                ExchangeDeleteOptions::default(),
            )
            .await?;
    }
    channel
        .exchange_delete(
            config.exchange.as_str().into(),
            ExchangeDeleteOptions::default(),
        )
        .await?;
    let _ = conn.close(200, "done".into()).await;
    Ok(())
}

/// What the broker says of a queue right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueStats {
    /// Messages ready (not counting unacked ones).
    pub messages: u32,
    pub consumers: u32,
}

/// `queue`'s figures (a passive declare); `None` if it doesn't exist.
pub async fn queue_stats(
    config: &BusConfig,
    queue: &str,
) -> Result<Option<QueueStats>, lapin::Error> {
    let conn = connect(config).await?;
    let channel = conn.create_channel().await?;
    let result = channel
        .queue_declare(
            queue.into(),
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await;
    let _ = conn.close(200, "done".into()).await;
    match result {
        Ok(q) => Ok(Some(QueueStats {
            messages: q.message_count(),
            consumers: q.consumer_count(),
        })),
        Err(e) if e.is_amqp_soft_error() => Ok(None),
        Err(e) => Err(e),
    }
}

/// Messages ready in `queue` (not counting unacked ones); `None` if it doesn't exist.
pub async fn queue_depth(config: &BusConfig, queue: &str) -> Result<Option<u32>, lapin::Error> {
    Ok(queue_stats(config, queue).await?.map(|s| s.messages))
}

/// One message in a dead-letter queue, as operators see it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DeadLetter {
    pub message_id: Option<String>,
    pub event_type: Option<String>,
    /// `x-reason` when this library dead-lettered it; `broker: <x-death reason>` (such as
    /// `delivery_limit`) when the broker did.
    pub reason: Option<String>,
    pub attempts: Option<u32>,
    pub first_error: Option<String>,
    pub last_error: Option<String>,
    pub original_queue: Option<String>,
    pub original_routing_key: Option<String>,
    pub correlation_id: Option<String>,
    pub dead_lettered_at: Option<String>,
    /// Every AMQP header as the broker holds it (values rendered as text).
    pub headers: std::collections::BTreeMap<String, String>,
    /// The body as text (lossy where it is not UTF-8: a malformed message may not be).
    pub body: String,
    pub body_bytes: usize,
}

impl DeadLetter {
    fn from_delivery(props: &lapin::BasicProperties, data: &[u8]) -> Self {
        use crate::consumer::*;
        DeadLetter {
            message_id: props.message_id().as_ref().map(|s| s.to_string()),
            event_type: props.kind().as_ref().map(|s| s.to_string()),
            reason: header_str(props, REASON_HEADER).or_else(|| broker_reason(props)),
            attempts: header_u32(props, ATTEMPT_HEADER),
            first_error: header_str(props, FIRST_ERROR_HEADER),
            last_error: header_str(props, LAST_ERROR_HEADER),
            original_queue: header_str(props, ORIGINAL_QUEUE_HEADER),
            original_routing_key: header_str(props, ORIGINAL_ROUTING_KEY_HEADER),
            correlation_id: props.correlation_id().as_ref().map(|s| s.to_string()),
            dead_lettered_at: header_str(props, DEAD_LETTERED_AT_HEADER),
            headers: props
                .headers()
                .as_ref()
                .map(|h| {
                    h.inner()
                        .iter()
                        .map(|(k, v)| (k.to_string(), header_text(v)))
                        .collect()
                })
                .unwrap_or_default(),
            body: String::from_utf8_lossy(data).into_owned(),
            body_bytes: data.len(),
        }
    }

    /// The id operators name a message by: its message id, else the envelope's id.
    pub fn id(&self) -> Option<String> {
        self.message_id.clone().or_else(|| {
            serde_json::from_str::<serde_json::Value>(&self.body)
                .ok()?
                .get("id")?
                .as_str()
                .map(str::to_string)
        })
    }
}

/// The reason of the broker's own dead-lettering (the newest `x-death` entry): a message the
/// broker moved here by itself (delivery limit reached, expired) carries no `x-reason`.
fn broker_reason(props: &lapin::BasicProperties) -> Option<String> {
    use lapin::types::AMQPValue;
    let AMQPValue::FieldArray(deaths) = props.headers().as_ref()?.inner().get("x-death")? else {
        return None;
    };
    let AMQPValue::FieldTable(newest) = deaths.as_slice().first()? else {
        return None;
    };
    match newest.inner().get("reason")? {
        AMQPValue::LongString(s) => {
            Some(format!("broker: {}", String::from_utf8_lossy(s.as_bytes())))
        }
        AMQPValue::ShortString(s) => Some(format!("broker: {s}")),
        _ => None,
    }
}

/// A header value as operators read it: strings as they are, anything else in its debug form.
fn header_text(value: &lapin::types::AMQPValue) -> String {
    use lapin::types::AMQPValue;
    match value {
        AMQPValue::LongString(s) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
        AMQPValue::ShortString(s) => s.to_string(),
        AMQPValue::LongLongInt(n) => n.to_string(),
        AMQPValue::LongInt(n) => n.to_string(),
        AMQPValue::Boolean(b) => b.to_string(),
        other => format!("{other:?}"),
    }
}

/// Reads up to `limit` messages of `consumer`'s dead-letter queue without removing them
/// (they are fetched unacked and returned to the queue when the channel closes).
pub async fn list_dead_letters(
    config: &BusConfig,
    consumer: &str,
    limit: usize,
) -> Result<Vec<DeadLetter>, lapin::Error> {
    let names = QueueNames::new(config, consumer);
    let conn = connect(config).await?;
    let channel = conn.create_channel().await?;
    let mut out = Vec::new();
    while out.len() < limit {
        let got = channel
            .basic_get(
                names.dead_letter.as_str().into(),
                lapin::options::BasicGetOptions { no_ack: false },
            )
            .await?;
        let Some(message) = got else { break };
        out.push(DeadLetter::from_delivery(
            &message.delivery.properties,
            &message.delivery.data,
        ));
    }
    let _ = channel.close(200, "browsed".into()).await;
    let _ = conn.close(200, "done".into()).await;
    Ok(out)
}

/// Moves dead letters back to `consumer`'s queue (all, or those whose id is in `ids`), with
/// the attempt count reset: they go through the normal path again, inbox included, so one
/// that was in fact applied already is skipped. Returns how many were replayed.
pub async fn replay_dead_letters(
    config: &BusConfig,
    consumer: &str,
    ids: Option<&[String]>,
) -> Result<usize, lapin::Error> {
    use lapin::options::{
        BasicAckOptions, BasicGetOptions, BasicPublishOptions, ConfirmSelectOptions,
    };
    use lapin::types::AMQPValue;

    let names = QueueNames::new(config, consumer);
    let conn = connect(config).await?;
    let channel = conn.create_channel().await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    let mut replayed = 0;
    // Each message is seen once: those not selected stay unacked until the channel closes.
    // At most as many gets as the queue held at the first: a replayed message that fails
    // again is dead-lettered back into this queue by the running consumer, and must not be
    // fetched and replayed again and again by this same run.
    let mut budget: Option<u32> = None;
    while budget != Some(0) {
        let got = channel
            .basic_get(
                names.dead_letter.as_str().into(),
                BasicGetOptions { no_ack: false },
            )
            .await?;
        let Some(message) = got else { break };
        let left = budget.unwrap_or(message.message_count.saturating_add(1));
        budget = Some(left - 1);
        let delivery = message.delivery;
        let letter = DeadLetter::from_delivery(&delivery.properties, &delivery.data);
        if let Some(ids) = ids
            && !letter.id().is_some_and(|id| ids.contains(&id))
        {
            continue;
        }
        let mut headers = delivery.properties.headers().clone().unwrap_or_default();
        let mut cleaned = FieldTable::default();
        for (k, v) in headers.inner().iter() {
            if !k.as_str().starts_with("x-") {
                cleaned.insert(k.clone(), v.clone());
            }
        }
        cleaned.insert(
            crate::consumer::ATTEMPT_HEADER.into(),
            AMQPValue::LongLongInt(1),
        );
        headers = cleaned;
        // Through the consumer's own exchange, so the service's own broker user may replay.
        let confirm = channel
            .basic_publish(
                names.exchange.as_str().into(),
                names.main.as_str().into(),
                BasicPublishOptions {
                    mandatory: true,
                    ..Default::default()
                },
                &delivery.data,
                crate::consumer::copy_properties(
                    &delivery.properties,
                    headers,
                    config.publisher_user_id().as_deref(),
                ),
            )
            .await?
            .await?;
        if matches!(confirm, lapin::Confirmation::Ack(None)) {
            delivery.acker.ack(BasicAckOptions::default()).await?;
            replayed += 1;
        }
    }
    let _ = channel.close(200, "replayed".into()).await;
    let _ = conn.close(200, "done".into()).await;
    Ok(replayed)
}

/// Empties `consumer`'s dead-letter queue; returns how many messages were dropped.
pub async fn purge_dead_letters(config: &BusConfig, consumer: &str) -> Result<u32, lapin::Error> {
    let names = QueueNames::new(config, consumer);
    let conn = connect(config).await?;
    let channel = conn.create_channel().await?;
    let n = channel
        .queue_purge(
            names.dead_letter.as_str().into(),
            lapin::options::QueuePurgeOptions::default(),
        )
        .await?;
    let _ = conn.close(200, "done".into()).await;
    Ok(n)
}

/// Declares the exchange and `subscriber`'s queues (what its bus declares on every connect).
/// Run at provisioning time (`shop migrate`), so events published before a consumer's first
/// start already have a queue to wait in.
pub async fn declare_topology(
    config: &BusConfig,
    subscriber: &crate::Subscriber,
) -> Result<(), lapin::Error> {
    let conn = connect(config).await?;
    crate::topology::ensure_exchange(config).await?;
    let channel = conn.create_channel().await?;
    let names = QueueNames::new(config, subscriber.name());
    crate::topology::declare_consumer_queues(&channel, config, &names, &subscriber.event_types())
        .await?;
    let _ = conn.close(200, "declared".into()).await;
    Ok(())
}
