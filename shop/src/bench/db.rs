//! ceiling-db: what one service's database does on its own with raw sqlx: one transaction
//! that records an event in the inbox and updates a stock row, at the consumers' handler
//! concurrency. The tables are the library's own inbox and a one-row-per-sku stock table.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use anyhow::Context as _;
use sqlx::PgPool;

use super::report::{Metric, Outcome};
use super::{Ctx, Scenario, bar, per_sec, sku};

/// Creates the namespace's database `name` with the outbox/inbox tables and a `bench_stock`
/// table of `skus` rows; returns a pool of `pool_size`.
pub async fn stock_database(ctx: &Ctx, name: &str, pool_size: u32) -> anyhow::Result<PgPool> {
    let url = ctx.ns.database_url(name);
    kit::db::ensure_database(&url).await?;
    let pool = kit::db::connect_now(&url, pool_size).await?;
    events::migrate(&pool)
        .await
        .context("creating the outbox and inbox tables")?;
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS bench_stock (sku TEXT PRIMARY KEY, stock BIGINT NOT NULL)",
    )
    .execute(&pool)
    .await?;
    let skus: Vec<String> = (0..ctx.sizes.skus).map(sku).collect();
    sqlx::query(
        "INSERT INTO bench_stock (sku, stock) SELECT s, 1000000000 FROM unnest($1::text[]) s
         ON CONFLICT DO NOTHING",
    )
    .bind(&skus)
    .execute(&pool)
    .await?;
    Ok(pool)
}

pub async fn ceiling(ctx: &Ctx) -> anyhow::Result<Outcome> {
    let n = ctx.sizes.messages;
    let concurrency = ctx.sizes.handler_concurrency;
    let pool = stock_database(ctx, "db", ctx.sizes.db_pool).await?;
    let skus = ctx.sizes.skus as u64;

    let pb = bar(n, "transactions");
    pb.set_prefix("ceiling-db");
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let (pool, next, pb) = (pool.clone(), next.clone(), pb.clone());
        workers.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return anyhow::Ok(());
                }
                let mut tx = pool.begin().await?;
                let inserted = sqlx::query(
                    "INSERT INTO events_inbox (consumer, event_id, event_type) VALUES ($1, $2, $3)
                     ON CONFLICT DO NOTHING",
                )
                .bind("consumer")
                .bind(uuid::Uuid::now_v7())
                .bind("checkout.completed.v1")
                .execute(&mut *tx)
                .await?
                .rows_affected();
                anyhow::ensure!(inserted == 1, "an inbox row was not inserted");
                sqlx::query("UPDATE bench_stock SET stock = stock - 1 WHERE sku = $1")
                    .bind(sku((i % skus) as usize))
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                pb.inc(1);
            }
        });
    }
    while let Some(done) = workers.join_next().await {
        done??;
    }
    let elapsed = started.elapsed();
    pb.finish_and_clear();

    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM events_inbox")
        .fetch_one(&pool)
        .await?;
    let moved: i64 =
        sqlx::query_scalar("SELECT (count(*) * 1000000000 - sum(stock))::bigint FROM bench_stock")
            .fetch_one(&pool)
            .await?;
    pool.close().await;

    let mut o = Outcome::new(Scenario::CeilingDb);
    o.push(Metric::rate(
        "tx_per_sec",
        "tx/s (inbox insert + stock update)",
        per_sec(n, elapsed),
        "tx/s",
    ));
    o.push(Metric::count("transactions", "transactions", n));
    o.push(Metric::text(
        "concurrency",
        "concurrency",
        format!("{concurrency} at once, pool {}", ctx.sizes.db_pool),
    ));
    o.check(
        format!("{n} inbox rows and {n} stock decrements"),
        rows == n as i64 && moved == n as i64,
    );
    Ok(o)
}
