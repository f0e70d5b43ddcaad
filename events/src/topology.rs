//! Exchange and queues. Declared on every (re)connect, so a broker that lost its definitions
//! gets them back; a declare the broker refuses stops the session with a message naming the
//! queue and what differs.

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
}

impl QueueNames {
    pub fn new(config: &BusConfig, consumer: &str) -> Self {
        let main = format!("{}{consumer}", config.queue_prefix);
        QueueNames {
            dead_letter: format!("{main}.dlq"),
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

    let mut dlq_args = FieldTable::default();
    if config.queue_type == QueueType::Quorum {
        dlq_args.insert("x-queue-type".into(), str_value("quorum"));
    }
    channel
        .queue_declare(names.dead_letter.as_str().into(), durable, dlq_args)
        .await?;

    // Broker-side dead-lettering (delivery limit exceeded, rejected) lands in the same DLQ
    // as the library's own, so operators have one place to look.
    let mut main_args = FieldTable::default();
    main_args.insert("x-dead-letter-exchange".into(), str_value(""));
    main_args.insert(
        "x-dead-letter-routing-key".into(),
        str_value(&names.dead_letter),
    );
    if config.queue_type == QueueType::Quorum {
        main_args.insert("x-queue-type".into(), str_value("quorum"));
        main_args.insert(
            "x-delivery-limit".into(),
            AMQPValue::LongLongInt(config.delivery_limit.into()),
        );
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
        args.insert("x-dead-letter-exchange".into(), str_value(""));
        args.insert("x-dead-letter-routing-key".into(), str_value(&names.main));
        channel
            .queue_declare(names.hold(delay).as_str().into(), durable, args)
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
