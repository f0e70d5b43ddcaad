//! backlog: `backlog` checkout.completed events queued while their consumers (cart and
//! inventory, processes of their own) are stopped, then drained: drain rate per consumer and
//! its memory over the drain (the prefetch and handler concurrency must bound it).
//!
//! The consumers' own events (cart.checked_out, stock_changed, order_applied) go to a bounded
//! sink queue (classic, x-max-length) instead of checkout's queue: checkout is not part of
//! this scenario, and millions of unconsumed messages on a shared broker measure nothing.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use lapin::options::{
    BasicPublishOptions, ConfirmSelectOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Confirmation, Connection, ConnectionProperties};
use sqlx::PgPool;

use super::checkout::{register_products, start_services};
use super::namespace::SINK_QUEUE;
use super::procs::{ProcStat, Sampler, ServiceProc};
use super::report::{Metric, Outcome};
use super::{Ctx, Scenario, bar, per_sec, sample_completed};
use crate::ShopClient;
use crate::settings::Which;

const CONSUMERS: [Which; 2] = [Which::Cart, Which::Inventory];
/// Publishes in flight while filling the queues.
const CONFIRM_WINDOW: usize = 512;

pub async fn run(ctx: &Ctx) -> anyhow::Result<Outcome> {
    let mut procs = Vec::new();
    let result = run_with(ctx, &mut procs).await;
    let mut stops = Vec::new();
    for p in procs {
        let name = p.which.name();
        stops.push((name, p.stop().await));
    }
    let mut o = result?;
    for (name, stop) in stops {
        if let Some(s) = stop.with_context(|| format!("stopping {name}"))? {
            o.push(Metric::mib(
                &format!("{name}_peak_rss_mib"),
                format!("{name}: peak RSS"),
                s.hwm_kib,
            ));
            o.peak_rss.push((name.to_string(), s.hwm_kib));
        }
    }
    Ok(o)
}

async fn inbox_count(pool: &PgPool, consumer: &str) -> anyhow::Result<u64> {
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM events_inbox WHERE consumer = $1")
        .bind(consumer)
        .fetch_one(pool)
        .await?;
    Ok(n as u64)
}

async fn run_with(ctx: &Ctx, procs: &mut Vec<ServiceProc>) -> anyhow::Result<Outcome> {
    let n = ctx.sizes.backlog;
    let settings = &ctx.ns.settings;

    // 1. Databases, exchange and queues, the sink; products known to inventory.
    for which in CONSUMERS {
        crate::system::migrate(which, settings).await?;
    }
    let conn = Connection::connect(&settings.amqp_url, ConnectionProperties::default())
        .await
        .context("connecting to RabbitMQ")?;
    let channel = conn.create_channel().await?;
    let sink = ctx.ns.queue(SINK_QUEUE);
    let mut args = FieldTable::default();
    args.insert("x-max-length".into(), AMQPValue::LongLongInt(1000));
    channel
        .queue_declare(
            sink.as_str().into(),
            QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            args,
        )
        .await?;
    for key in ["cart.#", "inventory.#"] {
        channel
            .queue_bind(
                sink.as_str().into(),
                settings.exchange.as_str().into(),
                key.into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
    }
    start_services(ctx, &[Which::Inventory], procs).await?;
    let inventory = procs[0].addr;
    let client = ShopClient::new(inventory, inventory, inventory);
    register_products(ctx, &client, 1_000_000_000).await?;
    procs.remove(0).stop().await?;

    // 2. The backlog, straight onto the exchange as the relay would publish it.
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    let pb = bar(n, "queued");
    pb.set_prefix("backlog fill");
    let started = Instant::now();
    let mut window = VecDeque::with_capacity(CONFIRM_WINDOW);
    let mut nacked = 0u64;
    for i in 0..n {
        if window.len() == CONFIRM_WINDOW {
            let confirm: lapin::PublisherConfirm = window.pop_front().expect("a full window");
            nacked += u64::from(!matches!(confirm.await?, Confirmation::Ack(None)));
            pb.inc(1);
        }
        let envelope = events::Envelope::new(
            "checkout",
            sample_completed(i, ctx.sizes.lines, ctx.sizes.skus),
        );
        let body = serde_json::to_vec(&envelope)?;
        let props = BasicProperties::default()
            .with_message_id(envelope.meta.id.to_string().into())
            .with_type("checkout.completed.v1".into())
            .with_content_type("application/cloudevents+json".into())
            .with_app_id("checkout".into())
            .with_delivery_mode(2);
        window.push_back(
            channel
                .basic_publish(
                    settings.exchange.as_str().into(),
                    "checkout.completed.v1".into(),
                    BasicPublishOptions {
                        mandatory: true,
                        ..Default::default()
                    },
                    &body,
                    props,
                )
                .await?,
        );
    }
    for confirm in window {
        nacked += u64::from(!matches!(confirm.await?, Confirmation::Ack(None)));
        pb.inc(1);
    }
    let fill_time = started.elapsed();
    pb.finish_and_clear();
    let _ = conn.close(200, "filled".into()).await;
    anyhow::ensure!(nacked == 0, "{nacked} backlog publishes were not confirmed");
    let bus = settings.bus();
    for which in CONSUMERS {
        let queue = format!("{}{}", settings.queue_prefix, which.name());
        let depth = events::admin::queue_depth(&bus, &queue).await?;
        anyhow::ensure!(
            depth == Some(n as u32),
            "{queue} holds {depth:?} messages, not {n}"
        );
    }

    // 3. The drain.
    let mut pools = Vec::new();
    for which in CONSUMERS {
        pools.push(kit::db::connect_now(&settings.database_url(which), 1).await?);
    }
    let pb = bar(n, "drained");
    pb.set_prefix("backlog drain");
    let drain_started = Instant::now();
    start_services(ctx, &CONSUMERS, procs).await?;
    let sampler = Sampler::start(
        procs.iter().map(|p| p.pid).collect(),
        ctx.sizes.sample_every,
    );
    let mut done_at: [Option<Instant>; 2] = [None, None];
    let deadline = Instant::now() + Duration::from_secs(7200);
    while done_at.iter().any(Option::is_none) {
        let mut least = u64::MAX;
        for (i, which) in CONSUMERS.iter().enumerate() {
            let count = inbox_count(&pools[i], which.name()).await?;
            if count >= n && done_at[i].is_none() {
                done_at[i] = Some(Instant::now());
            }
            least = least.min(count);
        }
        pb.set_position(least);
        for p in procs.iter_mut() {
            anyhow::ensure!(
                p.stat().is_some(),
                "{} exited during the drain: {}",
                p.which.name(),
                p.stderr_tail()
            );
        }
        anyhow::ensure!(Instant::now() < deadline, "the drain took over 2 hours");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    pb.finish_and_clear();
    for pool in pools {
        pool.close().await;
    }

    let mut o = Outcome::new(Scenario::Backlog);
    o.push(Metric::count("events", "events queued", n));
    o.push(Metric::rate(
        "fill_per_sec",
        "queued/s (raw publish with confirms)",
        per_sec(n, fill_time),
        "msgs/s",
    ));
    let mut flat_all = true;
    let mut flat_detail = Vec::new();
    for (i, which) in CONSUMERS.iter().enumerate() {
        let name = which.name();
        let end = done_at[i].expect("drained");
        o.push(Metric::rate(
            &format!("{name}_drain_per_sec"),
            format!("{name}: drain rate (start included)"),
            per_sec(n, end - drain_started),
            "events/s",
        ));
        let index = procs
            .iter()
            .position(|p| p.which == *which)
            .expect("running");
        let samples = sampler.window(index, drain_started, end);
        match flatness(&samples) {
            Some((ok, first, second)) => {
                o.push(Metric::mib(
                    &format!("{name}_rss_first_half_mib"),
                    format!("{name}: max RSS, first half of the drain"),
                    first,
                ));
                o.push(Metric::mib(
                    &format!("{name}_rss_second_half_mib"),
                    format!("{name}: max RSS, second half of the drain"),
                    second,
                ));
                flat_all &= ok;
                flat_detail.push(format!(
                    "{name} {:.1} -> {:.1} MiB",
                    first as f64 / 1024.0,
                    second as f64 / 1024.0
                ));
            }
            None => flat_detail.push(format!("{name}: too few samples to judge")),
        }
    }
    sampler.stop();
    o.flat = Some((
        flat_all,
        format!(
            "max RSS, first vs second half of the drain (flat: second <= first + 10 % + 2 MiB): {}",
            flat_detail.join(", ")
        ),
    ));
    o.check(
        format!("cart and inventory each applied all {n} events (inbox rows)"),
        true,
    );
    Ok(o)
}

/// Max RSS (KiB) over the first and the second half of the samples, and whether the second
/// stays within 10 % + 2 MiB of the first; `None` with fewer than 4 samples.
fn flatness(samples: &[ProcStat]) -> Option<(bool, u64, u64)> {
    if samples.len() < 4 {
        return None;
    }
    let (a, b) = samples.split_at(samples.len() / 2);
    let first = a.iter().map(|s| s.rss_kib).max()?;
    let second = b.iter().map(|s| s.rss_kib).max()?;
    Some((second <= first + first / 10 + 2048, first, second))
}
