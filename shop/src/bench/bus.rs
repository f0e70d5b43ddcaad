//! bus: the events library alone, the whole path of one event: a producer's transaction writes
//! it to the outbox, the relay publishes it (confirms), the consumer applies it in one
//! transaction with its inbox row and a one-row effect, then acks.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use events::contracts::CheckoutCompleted;
use events::{Bus, Context, Envelope, Handler, HandlerError, Outbox, Subscriber};

use super::db::stock_database;
use super::report::{Metric, Outcome};
use super::{Ctx, Scenario, bar, per_sec, sample_completed};

/// The consumer's name (queue and inbox); removed with the namespace.
pub const CONSUMER: &str = "consumer";

/// The trivial effect: one stock row.
struct TakeStock;

#[async_trait]
impl Handler<CheckoutCompleted> for TakeStock {
    async fn handle(
        &self,
        ctx: &mut Context<'_>,
        event: Envelope<CheckoutCompleted>,
    ) -> Result<(), HandlerError> {
        let line = event
            .data
            .lines
            .first()
            .ok_or_else(|| HandlerError::permanent(anyhow::anyhow!("no line")))?;
        sqlx::query("UPDATE bench_stock SET stock = stock - $2 WHERE sku = $1")
            .bind(&line.sku)
            .bind(line.quantity)
            .execute(&mut *ctx.tx)
            .await?;
        Ok(())
    }
}

pub async fn run(ctx: &Ctx) -> anyhow::Result<Outcome> {
    let n = ctx.sizes.messages;
    let concurrency = ctx.sizes.handler_concurrency;
    let pool = stock_database(ctx, "bus", ctx.sizes.db_pool).await?;
    // The producers (a service's request handlers) have connections of their own, so the
    // figure is the library's, not a contest for one pool.
    let producers = kit::db::connect_now(&ctx.ns.database_url("bus"), concurrency as u32).await?;

    let bus = Bus::new(ctx.ns.settings.bus(), pool.clone(), CONSUMER)
        .subscribe(Subscriber::new(CONSUMER).on::<CheckoutCompleted, _>(TakeStock))
        .start();
    let health = bus.health();
    crate::wait::until(
        "the bench's bus to connect and consume",
        Duration::from_secs(60),
        Duration::from_millis(50),
        || {
            let health = health.clone();
            async move { health.status().ready().then_some(()) }
        },
    )
    .await?;

    let pb = bar(n, "events");
    pb.set_prefix("bus");
    let outbox = Outbox::new("checkout");
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let (producers, next, outbox) = (producers.clone(), next.clone(), outbox.clone());
        let (lines, skus) = (ctx.sizes.lines, ctx.sizes.skus);
        workers.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return anyhow::Ok(());
                }
                let mut tx = producers.begin().await?;
                outbox
                    .publish(&mut tx, sample_completed(i, lines, skus))
                    .await?;
                tx.commit().await?;
            }
        });
    }
    let outcome = async {
        while let Some(done) = workers.join_next().await {
            done??;
        }
        let produced = started.elapsed();
        let deadline = Instant::now() + Duration::from_secs(600);
        loop {
            let s = health.snapshot();
            pb.set_position(s.applied + s.duplicates + s.dead_lettered);
            if s.applied + s.duplicates + s.dead_lettered >= n {
                break;
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "only {} of {n} events consumed after 10 minutes",
                s.applied
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        anyhow::Ok((produced, started.elapsed()))
    }
    .await;
    pb.finish_and_clear();
    bus.shutdown().await;
    let (produced, elapsed) = outcome?;
    let counters = health.snapshot();

    let (inbox, moved): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM events_inbox),
                (SELECT (count(*) * 1000000000 - sum(stock))::bigint FROM bench_stock)",
    )
    .fetch_one(&pool)
    .await?;
    let status = events::outbox::status(&pool).await?;
    producers.close().await;
    pool.close().await;

    let mut o = Outcome::new(Scenario::Bus);
    o.push(Metric::rate(
        "events_per_sec",
        "events/s (outbox -> relay -> consumer, end to end)",
        per_sec(n, elapsed),
        "events/s",
    ));
    o.push(Metric::rate(
        "outbox_inserts_per_sec",
        "outbox inserts/s (producers, one event per tx)",
        per_sec(n, produced),
        "tx/s",
    ));
    o.push(Metric::count("events", "events", n));
    o.push(Metric::text(
        "tuning",
        "tuning",
        format!(
            "{concurrency} producers, {} handlers, prefetch {}, pool {}, relay batch {}",
            ctx.sizes.handler_concurrency,
            ctx.sizes.prefetch,
            ctx.sizes.db_pool,
            ctx.ns.settings.bus().relay.batch_size
        ),
    ));
    // The first line of every sample has quantity 1.
    let expected_moved = n as i64;
    o.check(
        format!("{n} events applied once each (inbox rows, effect, no retry or dead letter)"),
        counters.applied == n
            && counters.duplicates == 0
            && counters.retried == 0
            && counters.dead_lettered == 0
            && inbox == n as i64
            && moved == expected_moved,
    );
    o.check(
        "every outbox row marked sent",
        status.sent == n as i64 && status.pending == 0 && status.parked == 0,
    );
    Ok(o)
}
