//! `shop demo`: the whole system on a real year of orders.
//!
//! Starts the three services in this process (own databases, exchange and queues, so it never
//! touches a running shop), registers the products through inventory's API, replays invoices
//! in date order as carts and checkouts, waits for the background updates, then reads every
//! service's API back and checks that nothing was lost or applied twice.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use futures_util::{StreamExt, TryStreamExt, stream};
use indicatif::{ProgressBar, ProgressStyle};
use uuid::Uuid;

use super::dataset::{self, Dataset, Invoice};
use crate::client::{CheckoutLine, ShopClient};
use crate::settings::{Settings, Which};
use crate::system::System;

#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {
    /// Invoices to replay, from the start of the year (the default takes a minute or two).
    #[arg(long, default_value_t = 1000, value_parser = crate::settings::at_least_one)]
    pub invoices: usize,
    /// Replay the whole year (19,773 invoices, 517,265 lines).
    #[arg(long)]
    pub all: bool,
    /// Instances of each service (competing consumers, relays sharing the outbox; the
    /// replay's HTTP requests are spread over them).
    #[arg(long, default_value_t = 1)]
    pub instances: usize,
    /// Invoices in flight at once (each fills its cart, then checks out).
    #[arg(long, default_value_t = 16)]
    pub parallel: usize,
    /// The Online Retail CSV (gzip).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Units of each product stocked beyond what the replay sells (stock ends at this).
    #[arg(long, default_value_t = 10)]
    pub spare_stock: i64,
    /// How long to wait for the background updates after the last checkout.
    #[arg(long, default_value = "120", value_parser = parse_secs)]
    pub settle_timeout: Duration,
}

fn parse_secs(s: &str) -> Result<Duration, String> {
    s.parse::<u64>()
        .map(Duration::from_secs)
        .map_err(|e| format!("seconds: {e}"))
}

/// The dataset, from `--data`, the working directory, or the source tree.
pub fn data_path(arg: &Option<PathBuf>) -> PathBuf {
    if let Some(p) = arg {
        return p.clone();
    }
    let here = PathBuf::from(dataset::DEFAULT_PATH);
    if here.exists() {
        return here;
    }
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(dataset::DEFAULT_PATH)
}

/// The demo's own namespace on the configured servers.
fn demo_settings(mut s: Settings) -> Settings {
    s.database_prefix = "shop_demo_".into();
    s.checkout_database_url = None;
    s.cart_database_url = None;
    s.inventory_database_url = None;
    s.exchange = "shop.demo.events".into();
    s.queue_prefix = "demo.".into();
    let any: SocketAddr = "127.0.0.1:0".parse().expect("valid address");
    s.checkout_addr = any;
    s.cart_addr = any;
    s.inventory_addr = any;
    s
}

/// One replayed checkout.
struct Placed {
    order_id: Uuid,
    cart_id: String,
}

fn bar(len: u64, what: &str) -> ProgressBar {
    let pb = ProgressBar::new(len);
    pb.set_style(
        ProgressStyle::with_template("{msg:>12} [{bar:40}] {pos}/{len} {per_sec} eta {eta}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    pb.set_message(what.to_string());
    pb
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

/// Runs the demo; `Ok(false)` when a check failed.
pub async fn run(args: DemoArgs, settings: Settings) -> anyhow::Result<bool> {
    let path = data_path(&args.data);
    println!("loading {}", path.display());
    let load_started = Instant::now();
    let full = tokio::task::spawn_blocking({
        let path = path.clone();
        move || dataset::load(&path)
    })
    .await??;
    let data: Dataset = if args.all {
        full.clone()
    } else {
        full.first_invoices(args.invoices)
    };
    println!(
        "loaded {} invoices and {} products in {:.1}s; replaying {} invoices ({} products)",
        full.invoices.len(),
        full.products.len(),
        load_started.elapsed().as_secs_f64(),
        data.invoices.len(),
        data.products.len()
    );

    let settings = demo_settings(settings);
    reset(&settings).await?;
    let system = System::start_replicated(&settings, args.instances)
        .await
        .context("starting the services")?;
    let list = |which| {
        system
            .addrs(which)
            .iter()
            .map(|a| format!("http://{a}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    println!(
        "services ({} instance(s) each): checkout {}  cart {}  inventory {}",
        args.instances.max(1),
        list(Which::Checkout),
        list(Which::Cart),
        list(Which::Inventory)
    );
    let (checkouts, carts, inventories) = (
        system.addrs(Which::Checkout),
        system.addrs(Which::Cart),
        system.addrs(Which::Inventory),
    );
    let clients: Vec<ShopClient> = (0..checkouts.len())
        .map(|i| {
            ShopClient::new(
                checkouts[i],
                carts[i % carts.len()],
                inventories[i % inventories.len()],
            )
        })
        .collect();
    let result = replay(&args, &data, &clients).await;
    system.shutdown().await;
    let ok = print_summary(&result?, &data);
    println!(
        "\nThe demo's databases ({}checkout, …) and queues ({}*) are left for inspection; the next run resets them.",
        settings.database_prefix, settings.queue_prefix
    );
    Ok(ok)
}

/// Drops the demo's databases and queues from a previous run.
async fn reset(settings: &Settings) -> anyhow::Result<()> {
    for which in Which::ALL {
        kit::db::drop_database(&settings.database_url(which))
            .await
            .with_context(|| format!("resetting the demo database of {}", which.name()))?;
    }
    events::admin::delete_topology(&settings.bus(), &["checkout", "cart", "inventory"])
        .await
        .with_context(|| {
            format!(
                "cannot reach RabbitMQ at {} to reset the demo queues",
                settings.bus().redacted_url()
            )
        })?;
    Ok(())
}

/// What a replay did and what the read-back found (`shop bench year` reports it too).
pub struct ReplayReport {
    pub checkouts: usize,
    pub lines: usize,
    pub units: i64,
    pub products: usize,
    pub carts_emptied: usize,
    /// From the last registration until checkout's replica knew every product.
    pub catalogue_sync: Duration,
    /// The checkouts (carts filled, then paid).
    pub replay_time: Duration,
    /// From the last checkout until every order showed both background updates.
    pub settle_time: Duration,
    /// Payment -> both background updates, per order, sorted.
    pub lags: Vec<Duration>,
    /// The conservation checks: what, and whether it held.
    pub checks: Vec<(String, bool)>,
}

impl ReplayReport {
    pub fn ok(&self) -> bool {
        self.checks.iter().all(|(_, ok)| *ok)
    }
}

/// Registers the products, replays the invoices through `clients`, waits for the background
/// updates and checks conservation. Prints nothing but its progress bars (on stderr).
pub async fn replay(
    args: &DemoArgs,
    data: &Dataset,
    clients: &[ShopClient],
) -> anyhow::Result<ReplayReport> {
    let client = &clients[0];
    let sold = data.units_by_sku();
    let opening: BTreeMap<&str, i64> = data
        .products
        .iter()
        .map(|p| {
            (
                p.sku.as_str(),
                sold.get(&p.sku).copied().unwrap_or(0) + args.spare_stock,
            )
        })
        .collect();
    let prices: HashMap<&str, i64> = data
        .products
        .iter()
        .map(|p| (p.sku.as_str(), p.unit_price_cents))
        .collect();

    // 1. The catalogue, through inventory's API.
    let pb = bar(data.products.len() as u64, "products");
    stream::iter(&data.products)
        .map(|p| {
            let stock = opening[p.sku.as_str()];
            let pb = &pb;
            async move {
                client
                    .register_product(&p.sku, &p.name, p.unit_price_cents, stock)
                    .await
                    .with_context(|| format!("registering {}", p.sku))?;
                pb.inc(1);
                anyhow::Ok(())
            }
        })
        .buffer_unordered(args.parallel)
        .try_collect::<()>()
        .await?;
    pb.finish();

    // 2. Checkout learns the catalogue from inventory's events, not from a call.
    let expected = data.products.len();
    let started = Instant::now();
    client
        .wait_for_catalogue(expected, Duration::from_millis(200))
        .await?;
    let catalogue_sync = started.elapsed();

    // 3. The replay: each invoice fills a cart, then checks it out.
    let pb = bar(data.invoices.len() as u64, "checkouts");
    let replay_started = Instant::now();
    let placed: Vec<Placed> = stream::iter(data.invoices.iter().enumerate())
        .map(|(i, invoice)| {
            let pb = &pb;
            // Round-robin over the instances, as a load balancer would.
            let client = &clients[i % clients.len()];
            async move {
                let placed = place(client, invoice).await?;
                pb.inc(1);
                anyhow::Ok(placed)
            }
        })
        .buffered(args.parallel)
        .try_collect()
        .await?;
    pb.finish();
    let replay_time = replay_started.elapsed();

    // 4. Wait for both background updates of every order.
    let settle_started = Instant::now();
    let pb = bar(placed.len() as u64, "background");
    let mut pending: Vec<&Placed> = placed.iter().collect();
    let mut orders = HashMap::with_capacity(placed.len());
    let deadline = Instant::now() + args.settle_timeout;
    while !pending.is_empty() && Instant::now() < deadline {
        let fetched: Vec<_> = stream::iter(pending.iter().map(|p| p.order_id))
            .map(|id| async move { (id, client.order(id).await) })
            .buffer_unordered(32)
            .collect()
            .await;
        for (id, order) in fetched {
            if let Ok(Some(order)) = order
                && order.cart_updated
                && order.inventory_updated
            {
                orders.insert(id, order);
                pb.inc(1);
            }
        }
        pending.retain(|p| !orders.contains_key(&p.order_id));
        if !pending.is_empty() {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    pb.finish();
    let settle_time = settle_started.elapsed();

    // 5. Read every service back and check conservation.
    let mut checks: Vec<(String, bool)> = Vec::new();
    checks.push((
        format!(
            "every paid order shows cart_updated and inventory_updated ({} of {})",
            orders.len(),
            placed.len()
        ),
        pending.is_empty(),
    ));

    let carts: Vec<(String, usize)> = stream::iter(&placed)
        .map(|p| async move {
            client
                .cart(&p.cart_id)
                .await
                .map(|c| (p.cart_id.clone(), c.items.len()))
        })
        .buffer_unordered(32)
        .try_collect()
        .await?;
    let still_full = carts.iter().filter(|(_, n)| *n > 0).count();
    checks.push((
        format!("no checked-out cart still holds what it bought ({still_full} do)"),
        still_full == 0,
    ));

    let products = client.products().await?;
    let wrong_stock: Vec<String> = products
        .iter()
        .filter(|p| {
            Some(&p.stock)
                != opening
                    .get(p.sku.as_str())
                    .map(|o| o - sold.get(&p.sku).copied().unwrap_or(0))
                    .as_ref()
        })
        .map(|p| p.sku.clone())
        .collect();
    checks.push((
        format!(
            "each product's stock = opening stock - units sold ({} products, {} wrong{})",
            products.len(),
            wrong_stock.len(),
            if wrong_stock.is_empty() {
                String::new()
            } else {
                format!(
                    ": {}",
                    wrong_stock
                        .iter()
                        .take(5)
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            }
        ),
        wrong_stock.is_empty() && products.len() == data.products.len(),
    ));

    let catalogue = client.catalogue().await?;
    let inventory_stock: HashMap<&str, i64> =
        products.iter().map(|p| (p.sku.as_str(), p.stock)).collect();
    let replica_off = catalogue
        .iter()
        .filter(|e| e.reserved != 0 || inventory_stock.get(e.sku.as_str()) != Some(&e.stock))
        .count();
    checks.push((
        format!("checkout's replica agrees with inventory, no reservation left ({replica_off} skus differ)"),
        replica_off == 0 && catalogue.len() == products.len(),
    ));

    let wrong_totals = orders
        .values()
        .filter(|o| {
            o.total_cents
                != o.lines
                    .iter()
                    .map(|l| l.quantity * prices[l.sku.as_str()])
                    .sum::<i64>()
        })
        .count();
    checks.push((
        format!("every order total = quantities x catalogue prices ({wrong_totals} wrong)"),
        wrong_totals == 0,
    ));

    let lines: usize = data.invoices.iter().map(|i| i.lines.len()).sum();
    let units: i64 = sold.values().sum();
    let mut lags: Vec<Duration> = orders
        .values()
        .filter_map(|o| {
            let done = o.cart_updated_at?.max(o.inventory_updated_at?);
            (done - o.paid_at).to_std().ok()
        })
        .collect();
    lags.sort();
    let carts_emptied = carts.iter().filter(|(_, n)| *n == 0).count();
    Ok(ReplayReport {
        checkouts: placed.len(),
        lines,
        units,
        products: data.products.len(),
        carts_emptied,
        catalogue_sync,
        replay_time,
        settle_time,
        lags,
        checks,
    })
}

/// 6. The summary; false when a check failed.
fn print_summary(r: &ReplayReport, data: &Dataset) -> bool {
    println!(
        "checkout's catalogue replica had all {} products {:.1}s after registration",
        r.products,
        r.catalogue_sync.as_secs_f64()
    );
    println!("\n== shop demo: summary ==");
    println!("checkouts          {:>10}", r.checkouts);
    println!("lines              {:>10}", r.lines);
    println!("carts emptied      {:>10}", r.carts_emptied);
    println!("units moved        {:>10}", r.units);
    println!("products           {:>10}", r.products);
    println!(
        "replay             {:>10.1} s  ({:.0} checkouts/s, {:.0} HTTP requests/s incl. cart fills)",
        r.replay_time.as_secs_f64(),
        r.checkouts as f64 / r.replay_time.as_secs_f64(),
        (r.checkouts + r.lines) as f64 / r.replay_time.as_secs_f64()
    );
    println!(
        "background settled {:>10.1} s after the last checkout",
        r.settle_time.as_secs_f64()
    );
    println!(
        "payment -> both updates: p50 {}  p99 {}  max {}",
        ms(percentile(&r.lags, 0.50)),
        ms(percentile(&r.lags, 0.99)),
        ms(r.lags.last().copied().unwrap_or_default())
    );
    println!("\n-- checks --");
    for (what, ok) in &r.checks {
        println!("[{}] {what}", if *ok { " ok " } else { "FAIL" });
    }
    println!(
        "\n-- the data's mess (whole file, {} rows read, {} kept) --",
        data.mess.rows_read, data.mess.rows_kept
    );
    for (reason, count) in data.mess.entries() {
        println!("{count:>8}  {reason}");
    }
    let ok = r.ok();
    println!(
        "\n{}",
        if ok {
            "all checks passed"
        } else {
            "SOME CHECKS FAILED"
        }
    );
    ok
}

/// Fills the invoice's cart line by line, then checks it out.
async fn place(client: &ShopClient, invoice: &Invoice) -> anyhow::Result<Placed> {
    let cart_id = format!("inv-{}", invoice.invoice_no);
    for line in &invoice.lines {
        client
            .set_cart_item(&cart_id, &line.sku, line.quantity)
            .await
            .with_context(|| {
                format!(
                    "invoice {}: adding {} to the cart",
                    invoice.invoice_no, line.sku
                )
            })?;
    }
    let lines: Vec<CheckoutLine> = invoice
        .lines
        .iter()
        .map(|l| CheckoutLine {
            sku: l.sku.clone(),
            quantity: l.quantity,
        })
        .collect();
    let order = client
        .checkout(&cart_id, invoice.customer_id.as_deref(), &lines, "tok_visa")
        .await
        .with_context(|| format!("invoice {}: checkout", invoice.invoice_no))?;
    Ok(Placed {
        order_id: order.order_id,
        cart_id,
    })
}
