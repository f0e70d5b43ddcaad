//! ceiling-broker: what this broker does on its own with raw lapin, as the bus would use it:
//! persistent messages the size of a checkout event, publisher confirms (pipelined), one
//! consumer with manual acks, publisher and consumer running at the same time.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Confirmation, Connection, ConnectionProperties};

use super::namespace::RAW_QUEUE;
use super::report::{Metric, Outcome};
use super::{Ctx, Scenario, bar, per_sec, queue_args, sample_body};

/// Publishes in flight before the oldest confirm is awaited (the relay's batch size).
const CONFIRM_WINDOW: usize = 256;

pub async fn ceiling(ctx: &Ctx) -> anyhow::Result<Outcome> {
    let n = ctx.sizes.messages;
    let settings = &ctx.ns.settings;
    let queue = ctx.ns.queue(RAW_QUEUE);
    let body = sample_body(0, ctx.sizes.lines, ctx.sizes.skus);

    let publisher = Connection::connect(&settings.amqp_url, ConnectionProperties::default())
        .await
        .context("connecting to RabbitMQ")?;
    let consumer_conn = Connection::connect(&settings.amqp_url, ConnectionProperties::default())
        .await
        .context("connecting to RabbitMQ")?;
    let declare = publisher.create_channel().await?;
    declare
        .queue_declare(
            queue.as_str().into(),
            QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            queue_args(&ctx.sizes.queue_type),
        )
        .await
        .with_context(|| format!("declaring {queue}"))?;

    let consume_channel = consumer_conn.create_channel().await?;
    consume_channel
        .basic_qos(ctx.sizes.prefetch, BasicQosOptions::default())
        .await?;
    let mut deliveries = consume_channel
        .basic_consume(
            queue.as_str().into(),
            "bench-ceiling".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;

    let pb = bar(n, "messages");
    pb.set_prefix("ceiling-broker");
    let started = Instant::now();
    let consume = {
        let pb = pb.clone();
        tokio::spawn(async move {
            let mut got = 0u64;
            while got < n {
                let delivery = match deliveries.next().await {
                    Some(d) => d?,
                    None => anyhow::bail!("the consumer was cancelled after {got} messages"),
                };
                delivery.acker.ack(BasicAckOptions::default()).await?;
                got += 1;
                pb.inc(1);
            }
            anyhow::Ok(Instant::now())
        })
    };

    let channel = publisher.create_channel().await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    let mut window = VecDeque::with_capacity(CONFIRM_WINDOW);
    let properties = BasicProperties::default()
        .with_delivery_mode(2)
        .with_content_type("application/cloudevents+json".into());
    let mut nacked = 0u64;
    for _ in 0..n {
        if window.len() == CONFIRM_WINDOW {
            let confirm: lapin::PublisherConfirm = window.pop_front().expect("a full window");
            nacked += u64::from(!matches!(confirm.await?, Confirmation::Ack(None)));
        }
        let confirm = channel
            .basic_publish(
                "".into(),
                queue.as_str().into(),
                BasicPublishOptions {
                    mandatory: true,
                    ..Default::default()
                },
                &body,
                properties.clone(),
            )
            .await?;
        window.push_back(confirm);
    }
    for confirm in window {
        nacked += u64::from(!matches!(confirm.await?, Confirmation::Ack(None)));
    }
    let published = started.elapsed();
    anyhow::ensure!(nacked == 0, "{nacked} publishes were not confirmed");

    let consumed_at = tokio::time::timeout(Duration::from_secs(300), consume)
        .await
        .context("the consumer did not get every message within 5 minutes")???;
    let elapsed = consumed_at - started;
    pb.finish_and_clear();
    let _ = consume_channel.close(200, "done".into()).await;
    let _ = consumer_conn.close(200, "done".into()).await;
    let _ = publisher.close(200, "done".into()).await;

    let mut o = Outcome::new(Scenario::CeilingBroker);
    o.push(Metric::rate(
        "msgs_per_sec",
        "msgs/s (publish -> confirm, consume -> ack)",
        per_sec(n, elapsed),
        "msgs/s",
    ));
    o.push(Metric::rate(
        "publish_confirmed_per_sec",
        "publishes confirmed/s",
        per_sec(n, published),
        "msgs/s",
    ));
    o.push(Metric::count("messages", "messages", n));
    o.push(Metric::bytes("message_bytes", "message size", body.len()));
    o.push(Metric::text(
        "queue",
        "queue",
        format!(
            "{} durable, persistent, confirm window {CONFIRM_WINDOW}, prefetch {}",
            ctx.sizes.queue_type, ctx.sizes.prefetch
        ),
    ));
    o.check("every message confirmed and consumed once", true);
    Ok(o)
}
