//! checkout: the three services as processes of their own, driven through HTTP only.
//!
//! 1. full speed: `checkouts` POST /checkouts from `clients` clients at once: checkouts/s
//!    (the maximum sustained rate), POST latency, CPU per service;
//! 2. open loop: half as many checkouts again, sent on schedule at half that rate (or
//!    `--open-loop-rate`): POST latency
//!    and the background lag (payment -> cart and inventory updated, as checkout records them).
//!
//! Peak RSS per service is the kernel's high-water mark (VmHWM) over both phases.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use futures_util::{StreamExt, TryStreamExt, stream};
use sqlx::PgPool;
use uuid::Uuid;

use super::procs::{ProcStat, Sampler, ServiceProc};
use super::report::{Metric, Outcome};
use super::stats::percentile;
use super::{Ctx, Scenario, bar, per_sec, sample_completed, sku};
use crate::ShopClient;
use crate::client::CheckoutLine;
use crate::settings::Which;

/// Opening stock of every product: never the limit.
const STOCK: i64 = 1_000_000_000;

pub async fn run(ctx: &Ctx) -> anyhow::Result<Outcome> {
    let mut procs = Vec::new();
    let result = run_with(ctx, &mut procs).await;
    // Stopped whatever happened, so the namespace can be dropped.
    let mut stops = Vec::new();
    for p in procs {
        let name = p.which.name();
        stops.push((name, p.stop().await));
    }
    let mut o = result?;
    for (name, stop) in stops {
        let last = stop.with_context(|| format!("stopping {name}"))?;
        if let Some(s) = last {
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

/// Starts inventory, cart and checkout (in that order: checkout's replica is fed by
/// inventory) and waits until each is ready.
pub async fn start_services(
    ctx: &Ctx,
    which: &[Which],
    procs: &mut Vec<ServiceProc>,
) -> anyhow::Result<()> {
    let http = reqwest::Client::new();
    for w in which {
        let mut p = ServiceProc::spawn(*w, &ctx.ns.settings).await?;
        let ready = p.wait_ready(&http).await;
        procs.push(p);
        ready?;
    }
    Ok(())
}

/// Registers the scenario's products with inventory.
pub async fn register_products(ctx: &Ctx, client: &ShopClient, stock: i64) -> anyhow::Result<()> {
    stream::iter(0..ctx.sizes.skus)
        .map(|i| async move {
            let sku = sku(i);
            client
                .register_product(&sku, &format!("bench product {i}"), 255 + i as i64, stock)
                .await
                .with_context(|| format!("registering {sku}"))?;
            anyhow::Ok(())
        })
        .buffer_unordered(16)
        .try_collect::<()>()
        .await
}

struct Placed {
    order_id: Uuid,
    post: Duration,
}

/// Checkout `i`: `lines` lines of distinct products out of `skus`, paid with `tok_visa`.
async fn place(
    client: &ShopClient,
    (lines, skus): (usize, usize),
    i: u64,
) -> anyhow::Result<Placed> {
    let lines: Vec<CheckoutLine> = sample_completed(i, lines, skus)
        .lines
        .into_iter()
        .map(|l| CheckoutLine {
            sku: l.sku,
            quantity: l.quantity,
        })
        .collect();
    let started = Instant::now();
    let order = client
        .checkout(&format!("bench-{i}"), Some("17850"), &lines, "tok_visa")
        .await
        .with_context(|| format!("checkout {i}"))?;
    Ok(Placed {
        order_id: order.order_id,
        post: started.elapsed(),
    })
}

/// What the background made of a set of orders, read from checkout's own table (one query
/// per poll instead of a GET per order, so measuring does not load the service it measures).
struct Settled {
    /// Payment -> both updates, per order, sorted.
    lags: Vec<Duration>,
    /// From the first payment to the last order's second update: the time the whole system
    /// (HTTP and background) took for the set.
    span: Duration,
}

/// Waits until every order of `ids` shows both background updates.
async fn settle(db: &PgPool, ids: &[Uuid]) -> anyhow::Result<Settled> {
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let done: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM orders WHERE order_id = ANY($1)
             AND cart_updated_at IS NOT NULL AND inventory_updated_at IS NOT NULL",
        )
        .bind(ids)
        .fetch_one(db)
        .await?;
        if done as usize == ids.len() {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "{} of {} orders still without both updates after 10 minutes",
            ids.len() - done as usize,
            ids.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut lags: Vec<Duration> = sqlx::query_scalar::<_, f64>(
        "SELECT EXTRACT(EPOCH FROM greatest(cart_updated_at, inventory_updated_at) - paid_at)::float8
         FROM orders WHERE order_id = ANY($1)",
    )
    .bind(ids)
    .fetch_all(db)
    .await?
    .into_iter()
    .map(|s| Duration::from_secs_f64(s.max(0.0)))
    .collect();
    lags.sort();
    let span: f64 = sqlx::query_scalar(
        "SELECT EXTRACT(EPOCH FROM max(greatest(cart_updated_at, inventory_updated_at)) - min(paid_at))::float8
         FROM orders WHERE order_id = ANY($1)",
    )
    .bind(ids)
    .fetch_one(db)
    .await?;
    Ok(Settled {
        lags,
        span: Duration::from_secs_f64(span.max(1e-3)),
    })
}

/// CPU use of process `index` over `[from, to]`, in % of one core.
fn cpu_pct(sampler: &Sampler, index: usize, from: Instant, to: Instant) -> Option<f64> {
    let w: Vec<ProcStat> = sampler.window(index, from, to);
    let (first, last) = (w.first()?, w.last()?);
    let secs = (last.at - first.at).as_secs_f64();
    (secs > 0.0).then(|| 100.0 * (last.cpu_secs - first.cpu_secs) / secs)
}

async fn run_with(ctx: &Ctx, procs: &mut Vec<ServiceProc>) -> anyhow::Result<Outcome> {
    let order = [Which::Inventory, Which::Cart, Which::Checkout];
    start_services(ctx, &order, procs).await?;
    let addr = |w: Which| {
        procs
            .iter()
            .find(|p| p.which == w)
            .map(|p| p.addr)
            .expect("started")
    };
    let client = ShopClient::new(
        addr(Which::Checkout),
        addr(Which::Cart),
        addr(Which::Inventory),
    );
    register_products(ctx, &client, STOCK).await?;
    let expected = ctx.sizes.skus;
    client
        .wait_for_catalogue(expected, Duration::from_millis(100))
        .await?;

    let pids: Vec<u32> = procs.iter().map(|p| p.pid).collect();
    let sampler = Sampler::start(pids, ctx.sizes.sample_every);

    // 1. Full speed.
    let n = ctx.sizes.checkouts;
    let pb = bar(n, "checkouts");
    pb.set_prefix("checkout full");
    let full_started = Instant::now();
    let full: Vec<Placed> = stream::iter(0..n)
        .map(|i| {
            let (client, pb) = (&client, &pb);
            async move {
                let p = place(client, (ctx.sizes.lines, ctx.sizes.skus), i).await?;
                pb.inc(1);
                anyhow::Ok(p)
            }
        })
        .buffer_unordered(ctx.sizes.clients)
        .try_collect()
        .await?;
    let full_ended = Instant::now();
    let full_time = full_ended - full_started;
    pb.finish_and_clear();
    let checkout_db =
        kit::db::connect_now(&ctx.ns.settings.database_url(Which::Checkout), 2).await?;
    let ids: Vec<Uuid> = full.iter().map(|p| p.order_id).collect();
    let full_settled = settle(&checkout_db, &ids).await?;
    let full_lags = &full_settled.lags;
    let post_rate = per_sec(n, full_time);
    // The maximum sustained rate: what the whole system completed per second, background
    // included (POST /checkouts alone can take orders faster than the events are applied).
    let rate = per_sec(n, full_settled.span).min(post_rate);

    // 2. Half the sustained rate (or the rate asked for), open loop: requests leave on
    // schedule whatever the answers.
    let m = (n / 2).max(1);
    let half_rate = ctx.sizes.open_loop_rate.unwrap_or(rate / 2.0);
    let gap = Duration::from_secs_f64(1.0 / half_rate.max(0.1));
    let pb = bar(m, "checkouts");
    pb.set_prefix("checkout half");
    let client = Arc::new(client);
    let half_started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    let limit = Arc::new(tokio::sync::Semaphore::new(1024));
    for k in 0..m {
        tokio::time::sleep_until((half_started + gap.mul_f64(k as f64)).into()).await;
        let permit = limit.clone().acquire_owned().await?;
        let (client, pb) = (client.clone(), pb.clone());
        let shape = (ctx.sizes.lines, ctx.sizes.skus);
        tasks.spawn(async move {
            let _permit = permit;
            let placed = place(&client, shape, n + k).await?;
            pb.inc(1);
            anyhow::Ok(placed)
        });
    }
    let mut half = Vec::with_capacity(m as usize);
    while let Some(done) = tasks.join_next().await {
        half.push(done??);
    }
    let half_time = half_started.elapsed();
    pb.finish_and_clear();
    let ids: Vec<Uuid> = half.iter().map(|p| p.order_id).collect();
    let half_lags = settle(&checkout_db, &ids).await?.lags;
    let half_ended = Instant::now();
    checkout_db.close().await;

    let mut o = Outcome::new(Scenario::Checkout);
    let mut posts: Vec<Duration> = full.iter().map(|p| p.post).collect();
    posts.sort();
    o.push(Metric::rate(
        "post_per_sec",
        format!(
            "POST /checkouts/s at full speed ({} clients, {} lines each)",
            ctx.sizes.clients, ctx.sizes.lines
        ),
        post_rate,
        "checkouts/s",
    ));
    o.push(Metric::rate(
        "checkouts_per_sec",
        "checkouts/s sustained (first payment -> last order fully applied)",
        rate,
        "checkouts/s",
    ));
    o.push(Metric::ms(
        "post_p50_ms",
        "POST /checkouts p50",
        percentile(&posts, 0.50),
    ));
    o.push(Metric::ms(
        "post_p99_ms",
        "POST /checkouts p99",
        percentile(&posts, 0.99),
    ));
    o.push(Metric::ms(
        "full_lag_p99_ms",
        "background lag p99 at full speed",
        percentile(full_lags, 0.99),
    ));
    let mut half_posts: Vec<Duration> = half.iter().map(|p| p.post).collect();
    half_posts.sort();
    o.push(Metric::rate(
        "half_rate_per_sec",
        if ctx.sizes.open_loop_rate.is_some() {
            "open loop: checkouts/s offered (--open-loop-rate)"
        } else {
            "open loop: checkouts/s offered (half the sustained rate)"
        },
        half_rate,
        "checkouts/s",
    ));
    o.push(Metric::rate(
        "half_achieved_per_sec",
        "open loop: checkouts/s achieved",
        per_sec(m, half_time),
        "checkouts/s",
    ));
    o.push(Metric::ms(
        "half_post_p50_ms",
        "open loop: POST /checkouts p50",
        percentile(&half_posts, 0.50),
    ));
    o.push(Metric::ms(
        "half_post_p99_ms",
        "open loop: POST /checkouts p99",
        percentile(&half_posts, 0.99),
    ));
    for (key, label, p) in [
        ("half_lag_p50_ms", "open loop: background lag p50", 0.50),
        ("half_lag_p99_ms", "open loop: background lag p99", 0.99),
        ("half_lag_p999_ms", "open loop: background lag p99.9", 0.999),
    ] {
        o.push(Metric::ms(key, label, percentile(&half_lags, p)));
    }
    for (i, p) in procs.iter().enumerate() {
        let name = p.which.name();
        if let Some(pct) = cpu_pct(&sampler, i, full_started, full_ended) {
            o.push(Metric::pct(
                &format!("{name}_cpu_full_pct"),
                format!("{name}: CPU at full speed (% of a core)"),
                pct,
            ));
        }
        if let Some(pct) = cpu_pct(&sampler, i, half_started, half_ended) {
            o.push(Metric::pct(
                &format!("{name}_cpu_half_pct"),
                format!("{name}: CPU in the open loop (% of a core)"),
                pct,
            ));
        }
    }
    sampler.stop();
    o.check(
        format!(
            "all {} checkouts paid and showing both background updates",
            full.len() + half.len()
        ),
        full_lags.len() + half_lags.len() == full.len() + half.len(),
    );
    Ok(o)
}
