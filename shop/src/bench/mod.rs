//! `shop bench`: how fast the shop and its library are, next to what the broker and the
//! database can do on their own, on this machine.
//!
//! Six scenarios (see [`Scenario`]), each in a namespace of its own (databases
//! `bench_<run>_<scenario>_*`, exchange `bench.<run>.<scenario>`, queues
//! `bench.<run>.<scenario>.*`) that is removed when the scenario ends, failed or not: a bench
//! never touches a running shop and leaves nothing behind. Services whose CPU and memory are
//! reported run as processes of their own (this binary's `serve`), sampled through `/proc`.

mod backlog;
mod broker;
mod bus;
mod checkout;
mod db;
mod machine;
mod namespace;
mod procs;
mod report;
mod stats;
mod year;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

use crate::settings::Settings;
use namespace::Namespace;
use report::Outcome;
pub use report::Report;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
pub enum Scenario {
    /// Raw lapin: persistent messages the size of a checkout event, pipelined publisher
    /// confirms, one consumer acking each message.
    CeilingBroker,
    /// Raw sqlx on one database: inbox row + stock row update per transaction, at the
    /// consumers' handler concurrency.
    CeilingDb,
    /// The events library alone: outbox insert, relay, broker, consumer with inbox and a
    /// one-row effect.
    Bus,
    /// The three services (processes of their own) through HTTP: throughput, POST latency,
    /// background lag at half the sustained rate, CPU and memory per service.
    Checkout,
    /// A deep queue drained by a consumer started after it filled: drain rate and memory.
    Backlog,
    /// The demo's replay of the Online Retail year, with its conservation checks.
    Year,
}

impl Scenario {
    pub const ALL: [Scenario; 6] = [
        Scenario::CeilingBroker,
        Scenario::CeilingDb,
        Scenario::Bus,
        Scenario::Checkout,
        Scenario::Backlog,
        Scenario::Year,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Scenario::CeilingBroker => "ceiling-broker",
            Scenario::CeilingDb => "ceiling-db",
            Scenario::Bus => "bus",
            Scenario::Checkout => "checkout",
            Scenario::Backlog => "backlog",
            Scenario::Year => "year",
        }
    }
}

#[derive(Debug, Clone, clap::Args)]
#[command(after_help = "\
Scenarios run in the order above; none named = all. Each uses its own namespace (databases \
bench_<run>_<scenario>_*, exchange and queues bench.<run>.<scenario>*), removed afterwards. \
Of the global settings the bench uses the servers (--amqp-url, --database-url), --queue-type, \
and the consumers' tuning (--concurrency handlers, --prefetch, --db-pool), which the ceilings \
use too. Exit status 1 when a scenario fails or a correctness check does not hold; the targets \
are reported, not enforced.")]
pub struct BenchArgs {
    /// Scenarios to run (default: all).
    #[arg(value_enum)]
    pub scenarios: Vec<Scenario>,
    /// Print one JSON object (figures, targets, machine) on stdout instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Small sizes, for a smoke run (messages 5,000, checkouts 200, backlog 20,000, year's
    /// first 500 invoices); explicit sizes still win.
    #[arg(long)]
    pub quick: bool,
    /// ceiling-broker, ceiling-db, bus: messages (transactions) each [default: 100,000].
    #[arg(long)]
    pub messages: Option<u64>,
    /// checkout: checkouts at full speed; half as many again at half the sustained rate
    /// [default: 10,000].
    #[arg(long)]
    pub checkouts: Option<u64>,
    /// checkout: HTTP clients at once in the full-speed phase (the services' event-handler
    /// concurrency is the global --concurrency).
    #[arg(long, default_value_t = 16)]
    pub clients: usize,
    /// checkout: offer this many checkouts/s in the open-loop phase instead of half the
    /// sustained rate (to compare builds or machines at one rate; the lag target is then
    /// judged at this rate).
    #[arg(long)]
    pub open_loop_rate: Option<f64>,
    /// checkout: lines per checkout (also sizes the message of ceiling-broker and bus).
    #[arg(long, default_value_t = 3)]
    pub lines: usize,
    /// checkout, ceiling-db, bus: distinct products (stock rows).
    #[arg(long, default_value_t = 200)]
    pub skus: usize,
    /// backlog: events queued before the consumer starts [default: 1,000,000].
    #[arg(long)]
    pub backlog: Option<u64>,
    /// year: replay only the first N invoices [default: the whole year].
    #[arg(long)]
    pub invoices: Option<usize>,
    /// year: the Online Retail CSV (gzip).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// How often the service processes' CPU time and RSS are sampled, in milliseconds.
    #[arg(long, default_value_t = 200)]
    pub sample_ms: u64,
}

/// The sizes in force, after `--quick` and explicit flags.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Sizes {
    pub messages: u64,
    pub checkouts: u64,
    pub clients: usize,
    /// `None`: half the sustained rate.
    pub open_loop_rate: Option<f64>,
    pub lines: usize,
    pub skus: usize,
    pub backlog: u64,
    /// `None`: the whole year.
    pub invoices: Option<usize>,
    pub handler_concurrency: usize,
    pub prefetch: u16,
    pub db_pool: u32,
    pub queue_type: String,
    #[serde(skip)]
    pub sample_every: Duration,
    #[serde(skip)]
    pub data: Option<PathBuf>,
}

impl Sizes {
    fn new(args: &BenchArgs, settings: &Settings) -> anyhow::Result<Sizes> {
        let q = args.quick;
        let sizes = Sizes {
            messages: args.messages.unwrap_or(if q { 5_000 } else { 100_000 }),
            checkouts: args.checkouts.unwrap_or(if q { 200 } else { 10_000 }),
            clients: args.clients,
            open_loop_rate: args.open_loop_rate,
            lines: args.lines,
            skus: args.skus,
            backlog: args.backlog.unwrap_or(if q { 20_000 } else { 1_000_000 }),
            invoices: args.invoices.or(if q { Some(500) } else { None }),
            handler_concurrency: settings.concurrency,
            prefetch: settings.prefetch,
            db_pool: settings.db_pool,
            queue_type: format!("{:?}", settings.bus().queue_type).to_lowercase(),
            sample_every: Duration::from_millis(args.sample_ms.max(10)),
            data: args.data.clone(),
        };
        anyhow::ensure!(sizes.messages > 0, "--messages must be at least 1");
        anyhow::ensure!(sizes.checkouts >= 2, "--checkouts must be at least 2");
        anyhow::ensure!(sizes.clients > 0, "--clients must be at least 1");
        anyhow::ensure!(
            sizes
                .open_loop_rate
                .is_none_or(|r| (0.1..=100_000.0).contains(&r)),
            "--open-loop-rate must be 0.1 to 100,000 checkouts/s"
        );
        anyhow::ensure!(
            sizes.invoices.is_none_or(|n| n > 0),
            "--invoices must be at least 1 (0 would replay nothing and pass every check)"
        );
        anyhow::ensure!(sizes.backlog > 0, "--backlog must be at least 1");
        anyhow::ensure!(
            sizes.lines >= 1 && sizes.lines <= sizes.skus,
            "--lines must be 1 to --skus ({})",
            sizes.skus
        );
        anyhow::ensure!(
            settings.concurrency >= 1 && (settings.db_pool as usize) >= settings.concurrency,
            "--db-pool ({}) must be at least --concurrency ({})",
            settings.db_pool,
            settings.concurrency
        );
        Ok(sizes)
    }
}

/// What every scenario gets.
pub(crate) struct Ctx {
    pub sizes: Sizes,
    pub ns: Namespace,
}

/// A progress bar on stderr (hidden when stderr is not a terminal).
pub(crate) fn bar(len: u64, what: &str) -> ProgressBar {
    let pb = ProgressBar::new(len);
    pb.set_style(
        ProgressStyle::with_template(
            "{prefix:>15} {msg:>10} [{bar:36}] {human_pos}/{human_len} {per_sec:>12} eta {eta}",
        )
        .expect("a valid template")
        .progress_chars("=> "),
    );
    pb.set_message(what.to_string());
    pb
}

/// Runs the scenarios and prints the table (or the JSON); `Ok(false)` when a scenario failed
/// or a check did not hold.
pub async fn run(args: BenchArgs, settings: Settings) -> anyhow::Result<bool> {
    let json = args.json;
    let report = measure(args, settings).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report.to_json())?);
    } else {
        print!("{}", report.table());
    }
    Ok(report.ok())
}

/// Runs the scenarios (progress on stderr unless `--json`) and returns what they measured,
/// with the targets judged.
pub async fn measure(args: BenchArgs, settings: Settings) -> anyhow::Result<Report> {
    let sizes = Sizes::new(&args, &settings)?;
    let mut scenarios = if args.scenarios.is_empty() {
        Scenario::ALL.to_vec()
    } else {
        args.scenarios.clone()
    };
    scenarios.sort();
    scenarios.dedup();

    // Fails early, and plainly, when the broker or the database is not there.
    let machine = machine::Machine::probe(&settings).await?;
    let run_id = namespace::run_id();
    if !args.json {
        eprintln!(
            "shop bench {run_id}: {} on {} ({} cores), RabbitMQ {}, PostgreSQL {}, {} build",
            scenarios
                .iter()
                .map(|s| s.name())
                .collect::<Vec<_>>()
                .join(", "),
            machine.cpu_model,
            machine.cores,
            machine.rabbitmq_version,
            machine.postgresql_version,
            machine.build
        );
    }

    let mut report = Report::new(run_id.clone(), machine, sizes.clone());
    for scenario in scenarios {
        let ctx = Ctx {
            sizes: sizes.clone(),
            ns: Namespace::new(&run_id, scenario, &settings),
        };
        let started = Instant::now();
        let mut interrupted = false;
        let result = tokio::select! {
            r = run_one(scenario, &ctx) => r,
            _ = tokio::signal::ctrl_c() => {
                interrupted = true;
                Err(anyhow::anyhow!("interrupted"))
            }
        };
        let wall = started.elapsed();
        let cleanup = ctx.ns.cleanup().await;
        let mut outcome = match result {
            Ok(outcome) => outcome,
            Err(e) => Outcome::failed(scenario, kit::describe(&e)),
        };
        outcome.wall = wall;
        if let Err(e) = cleanup {
            outcome.cleanup_error = Some(kit::describe(&e));
        }
        if !args.json {
            eprintln!("{}", outcome.one_line());
        }
        report.push(outcome);
        if interrupted {
            break;
        }
    }

    report.derive();
    Ok(report)
}

async fn run_one(scenario: Scenario, ctx: &Ctx) -> anyhow::Result<Outcome> {
    match scenario {
        Scenario::CeilingBroker => broker::ceiling(ctx).await,
        Scenario::CeilingDb => db::ceiling(ctx).await,
        Scenario::Bus => bus::run(ctx).await,
        Scenario::Checkout => checkout::run(ctx).await,
        Scenario::Backlog => backlog::run(ctx).await,
        Scenario::Year => year::run(ctx).await,
    }
}

/// The sku of product `i` in a scenario's catalogue.
pub(crate) fn sku(i: usize) -> String {
    format!("B{i:05}")
}

/// A `checkout.completed` of `lines` lines (distinct skus out of `skus`, chosen by `n`): what
/// ceiling-broker, bus and backlog send, so every scenario moves messages of the same size.
pub(crate) fn sample_completed(
    n: u64,
    lines: usize,
    skus: usize,
) -> events::contracts::CheckoutCompleted {
    use events::contracts::{CheckoutCompleted, OrderLine};
    let first = (n as usize).wrapping_mul(7919) % skus;
    let lines: Vec<OrderLine> = (0..lines)
        .map(|j| OrderLine {
            sku: sku((first + j) % skus),
            quantity: 1 + (j as i64 % 3),
            unit_price_cents: 255 + 100 * j as i64,
        })
        .collect();
    CheckoutCompleted {
        order_id: uuid::Uuid::now_v7(),
        cart_id: format!("bench-{n}"),
        customer_id: Some("17850".into()),
        total_cents: lines.iter().map(|l| l.quantity * l.unit_price_cents).sum(),
        lines,
        currency: "GBP".into(),
        paid_at: chrono::Utc::now(),
    }
}

/// The body of a sample `checkout.completed` as the relay would publish it.
pub(crate) fn sample_body(n: u64, lines: usize, skus: usize) -> Vec<u8> {
    let envelope = events::Envelope::new("checkout", sample_completed(n, lines, skus));
    serde_json::to_vec(&envelope).expect("an envelope serializes")
}

/// The queue arguments the services use for `queue_type` (ceiling-broker's raw queue gets the
/// same kind of queue as the bus).
pub(crate) fn queue_args(queue_type: &str) -> lapin::types::FieldTable {
    let mut args = lapin::types::FieldTable::default();
    if queue_type == "quorum" {
        args.insert(
            "x-queue-type".into(),
            lapin::types::AMQPValue::LongString("quorum".into()),
        );
    }
    args
}

/// Events per second.
pub(crate) fn per_sec(n: u64, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64().max(1e-9)
}
