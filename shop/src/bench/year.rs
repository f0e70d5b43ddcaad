//! year: the demo's replay of the Online Retail year (or its first `--invoices`), in the
//! scenario's namespace: wall time, rates and the demo's conservation checks.

use std::time::{Duration, Instant};

use anyhow::Context as _;

use super::report::{Metric, Outcome};
use super::stats::percentile;
use super::{Ctx, Scenario, per_sec};
use crate::ShopClient;
use crate::demo::{self, DemoArgs};
use crate::settings::Which;
use crate::system::System;

pub async fn run(ctx: &Ctx) -> anyhow::Result<Outcome> {
    let path = demo::data_path(&ctx.sizes.data);
    let started = Instant::now();
    let full = tokio::task::spawn_blocking({
        let path = path.clone();
        move || demo::dataset::load(&path)
    })
    .await?
    .with_context(|| format!("loading {}", path.display()))?;
    let data = match ctx.sizes.invoices {
        Some(k) => full.first_invoices(k),
        None => full,
    };
    let args = DemoArgs {
        invoices: data.invoices.len(),
        all: ctx.sizes.invoices.is_none(),
        instances: 1,
        parallel: 16,
        data: None,
        spare_stock: 10,
        settle_timeout: Duration::from_secs(600),
    };
    let system = System::start(&ctx.ns.settings)
        .await
        .context("starting the services")?;
    let client = ShopClient::new(
        system.addr(Which::Checkout),
        system.addr(Which::Cart),
        system.addr(Which::Inventory),
    );
    let result = demo::replay(&args, &data, &[client]).await;
    system.shutdown().await;
    let r = result?;
    let wall = started.elapsed();

    let mut o = Outcome::new(Scenario::Year);
    o.push(Metric::secs(
        "wall_secs",
        "wall time (load, register, replay, settle, check)",
        wall,
    ));
    o.push(Metric::count(
        "invoices",
        "checkouts (invoices)",
        r.checkouts as u64,
    ));
    o.push(Metric::count("lines", "lines", r.lines as u64));
    o.push(Metric::count("products", "products", r.products as u64));
    o.push(Metric::secs(
        "replay_secs",
        "replay (carts filled, then paid)",
        r.replay_time,
    ));
    o.push(Metric::rate(
        "checkouts_per_sec",
        "checkouts/s (16 invoices in flight)",
        per_sec(r.checkouts as u64, r.replay_time),
        "checkouts/s",
    ));
    o.push(Metric::rate(
        "requests_per_sec",
        "HTTP requests/s (cart fills + checkouts)",
        per_sec((r.checkouts + r.lines) as u64, r.replay_time),
        "req/s",
    ));
    o.push(Metric::secs(
        "settle_secs",
        "background settled after the last checkout",
        r.settle_time,
    ));
    o.push(Metric::ms(
        "lag_p50_ms",
        "background lag p50",
        percentile(&r.lags, 0.5),
    ));
    o.push(Metric::ms(
        "lag_p99_ms",
        "background lag p99",
        percentile(&r.lags, 0.99),
    ));
    for (what, ok) in r.checks {
        o.check(what, ok);
    }
    Ok(o)
}
