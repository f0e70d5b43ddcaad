//! Exchange and queues. Declared on every (re)connect, so a broker that lost its definitions
//! gets them back; a declare the broker refuses stops the session with a message naming the
//! queue and what differs.
//!
//! Each consumer also has its own direct exchange `<queue>.direct`, to which its main queue,
//! its hold queues and its dead-letter queue are bound by their own names. Every republish
//! (retry, dead-letter, replay) and every broker-side dead-lettering goes through it, never
//! through the default exchange: a service's broker user then needs write permission only on
//! its own exchange and the events exchange, and write on `amq.default` (which would let it
//! put messages into any queue) is never granted.

use std::time::Duration;

use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{Channel, ExchangeKind};

use crate::config::{BusConfig, QueueType};

/// The names of one consumer's queues.
#[derive(Debug, Clone)]
pub struct QueueNames {
    pub main: String,
    pub dead_letter: String,
    pub prefix: String,
    /// The consumer's own direct exchange: routes a message whose routing key is one of its
    /// queues' names to that queue.
    pub exchange: String,
}

impl QueueNames {
    pub fn new(config: &BusConfig, consumer: &str) -> Self {
        let main = format!("{}{consumer}", config.queue_prefix);
        QueueNames {
            dead_letter: format!("{main}.dlq"),
            exchange: format!("{main}.direct"),
            prefix: config.queue_prefix.clone(),
            main,
        }
    }

    /// The TTL queue that holds a message for `delay`, then dead-letters it back to `main`.
    pub fn hold(&self, delay: Duration) -> String {
        format!("{}.retry.{}ms", self.main, delay.as_millis())
    }
}

fn str_value(s: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(s))
}

/// Declares the events exchange on a connection of its own, if it is missing. It is checked
/// passively first, which needs no permission: a service whose broker user may not configure
/// the shared exchange (least privilege: only the provisioning admin may) then never has a
/// declare refused, and nothing alarming is logged on every connect. Only a missing exchange
/// is declared (refused, ACCESS_REFUSED, for such a user: provision it first). Its own
/// connection, because a refused or failed check closes the channel, which lapin reports as
/// an error event on the connection, and that ends a bus session.
pub async fn ensure_exchange(config: &BusConfig) -> Result<(), lapin::Error> {
    let conn = lapin::Connection::connect(
        &config.amqp_url,
        lapin::ConnectionProperties::default().with_connection_name("declare".into()),
    )
    .await?;
    let result = async {
        let channel = conn.create_channel().await?;
        let exists = channel
            .exchange_declare(
                config.exchange.as_str().into(),
                ExchangeKind::Topic,
                ExchangeDeclareOptions {
                    passive: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await;
        match exists {
            Err(e) if reply_code(&e) == Some(404) => {
                let channel = conn.create_channel().await?;
                declare_exchange(&channel, config).await
            }
            other => other,
        }
    }
    .await;
    let _ = conn.close(200, "declared".into()).await;
    result
}

/// The broker's reply code, when it refused something.
pub fn reply_code(e: &lapin::Error) -> Option<u16> {
    match e.kind() {
        lapin::ErrorKind::ProtocolError(amqp) => Some(amqp.get_id()),
        _ => None,
    }
}

/// The broker refused for lack of permission (403 ACCESS_REFUSED).
pub fn access_refused(e: &lapin::Error) -> bool {
    reply_code(e) == Some(403)
}

pub async fn declare_exchange(channel: &Channel, config: &BusConfig) -> Result<(), lapin::Error> {
    channel
        .exchange_declare(
            config.exchange.as_str().into(),
            ExchangeKind::Topic,
            ExchangeDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
}

/// A quorum queue dead-letters at most once unless told otherwise: a message expiring from a
/// hold queue (or over the delivery limit) while the target's node is down would be lost.
/// At-least-once needs `reject-publish` overflow (the broker says so).
fn at_least_once_dead_lettering(args: &mut FieldTable) {
    args.insert("x-dead-letter-strategy".into(), str_value("at-least-once"));
    args.insert("x-overflow".into(), str_value("reject-publish"));
}

/// Declares the main queue (bound to `event_types`), its hold queues and its dead-letter queue.
pub async fn declare_consumer_queues(
    channel: &Channel,
    config: &BusConfig,
    names: &QueueNames,
    event_types: &[&str],
) -> Result<(), lapin::Error> {
    let durable = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };

    // The consumer's own exchange first: the queues below dead-letter to it, and the broker
    // checks write permission on a dead-letter exchange when a queue is declared.
    channel
        .exchange_declare(
            names.exchange.as_str().into(),
            ExchangeKind::Direct,
            ExchangeDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await?;

    let quorum = config.queue_type == QueueType::Quorum;
    let mut dlq_args = FieldTable::default();
    if quorum {
        dlq_args.insert("x-queue-type".into(), str_value("quorum"));
        // RabbitMQ 4.0 gives quorum queues a default delivery limit of 20 (and before 4.3
        // counts a message browsed and returned by `shop dlq list` against it): without a
        // limit of our own, browsing a dead-letter queue 20 times would drop its messages.
        dlq_args.insert(
            "x-delivery-limit".into(),
            AMQPValue::LongLongInt(i32::MAX.into()),
        );
    }
    channel
        .queue_declare(names.dead_letter.as_str().into(), durable, dlq_args)
        .await?;

    // Broker-side dead-lettering (delivery limit exceeded, rejected) lands in the same DLQ
    // as the library's own, so operators have one place to look.
    let mut main_args = FieldTable::default();
    main_args.insert("x-dead-letter-exchange".into(), str_value(&names.exchange));
    main_args.insert(
        "x-dead-letter-routing-key".into(),
        str_value(&names.dead_letter),
    );
    if quorum {
        main_args.insert("x-queue-type".into(), str_value("quorum"));
        main_args.insert(
            "x-delivery-limit".into(),
            AMQPValue::LongLongInt(config.delivery_limit.into()),
        );
        at_least_once_dead_lettering(&mut main_args);
    }
    channel
        .queue_declare(names.main.as_str().into(), durable, main_args)
        .await?;

    for delay in config.distinct_retry_delays() {
        let mut args = FieldTable::default();
        args.insert(
            "x-message-ttl".into(),
            AMQPValue::LongLongInt(delay.as_millis() as i64),
        );
        args.insert("x-dead-letter-exchange".into(), str_value(&names.exchange));
        args.insert("x-dead-letter-routing-key".into(), str_value(&names.main));
        // Messages waiting for a retry (or held through a database outage) are replicated
        // like the main queue, and come back from their hold queue at least once.
        if quorum {
            args.insert("x-queue-type".into(), str_value("quorum"));
            at_least_once_dead_lettering(&mut args);
        }
        channel
            .queue_declare(names.hold(delay).as_str().into(), durable, args)
            .await?;
    }

    // Each queue bound to the consumer's exchange by its own name.
    let mut own = vec![names.main.clone(), names.dead_letter.clone()];
    own.extend(
        config
            .distinct_retry_delays()
            .into_iter()
            .map(|d| names.hold(d)),
    );
    for queue in &own {
        channel
            .queue_bind(
                queue.as_str().into(),
                names.exchange.as_str().into(),
                queue.as_str().into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
    }

    for event_type in event_types {
        channel
            .queue_bind(
                names.main.as_str().into(),
                config.exchange.as_str().into(),
                ShortString::from(*event_type),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
    }
    Ok(())
}
