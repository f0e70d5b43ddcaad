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
        queues.extend(config.distinct_retry_delays().into_iter().map(|d| names.hold(d)));
        for q in queues {
            channel.queue_delete(q.as_str().into(), QueueDeleteOptions::default()).await?;
        }
    }
    channel
        .exchange_delete(config.exchange.as_str().into(), ExchangeDeleteOptions::default())
        .await?;
    let _ = conn.close(200, "done".into()).await;
    Ok(())
}

/// Messages ready in `queue` (not counting unacked ones); `None` if it doesn't exist.
pub async fn queue_depth(config: &BusConfig, queue: &str) -> Result<Option<u32>, lapin::Error> {
    let conn = connect(config).await?;
    let channel = conn.create_channel().await?;
    let result = channel
        .queue_declare(
            queue.into(),
            QueueDeclareOptions { passive: true, ..Default::default() },
            FieldTable::default(),
        )
        .await;
    let _ = conn.close(200, "done".into()).await;
    match result {
        Ok(q) => Ok(Some(q.message_count())),
        Err(e) if e.is_amqp_soft_error() => Ok(None),
        Err(e) => Err(e),
    }
}
