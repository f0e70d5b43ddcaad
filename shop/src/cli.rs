//! The `shop` command line: runs the services, their provisioning, the demo, and the
//! operator tools. In the library so the tests can run the very same entry point as a process.

use std::process::ExitCode;

use crate::demo;
use crate::settings::{Settings, Which};
use clap::{Parser, Subcommand, ValueEnum};
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(
    name = "shop",
    version,
    about = "A web shop whose services integrate through events on RabbitMQ."
)]
struct Cli {
    #[command(flatten)]
    settings: Settings,

    /// Log format.
    #[arg(
        long,
        env = "LOG_FORMAT",
        value_enum,
        default_value = "text",
        global = true
    )]
    log_format: LogFormat,

    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Clone, Copy, ValueEnum, PartialEq)]
enum Target {
    Checkout,
    Cart,
    Inventory,
    All,
}

impl Target {
    fn services(self) -> Vec<Which> {
        match self {
            Target::Checkout => vec![Which::Checkout],
            Target::Cart => vec![Which::Cart],
            Target::Inventory => vec![Which::Inventory],
            Target::All => Which::ALL.to_vec(),
        }
    }
}

#[derive(Subcommand)]
enum Command {
    /// Run one service, or all three in one process, until SIGTERM or ctrl-c.
    Serve {
        #[arg(value_enum)]
        service: Target,
    },
    /// Provision: create the services' databases if missing, run their migrations, and
    /// declare their exchange and queues on the broker. Run it before a first deployment.
    Migrate {
        #[arg(value_enum, default_value = "all")]
        service: Target,
    },
    /// Least privilege: create or update each service's PostgreSQL role (owner of its
    /// database, which no other role may connect to) and RabbitMQ user (permissions on its
    /// own queues and exchange, publishing only its own routing keys), idempotently.
    ///
    /// Names and passwords come from the services' own URLs (CHECKOUT_AMQP_URL,
    /// CHECKOUT_DATABASE_URL, ... or their _FILE variants); AMQP_URL, DATABASE_URL and
    /// --rabbitmq-api are the admin's. Then run `shop migrate` with the services' URLs.
    Provision {
        #[arg(value_enum, default_value = "all")]
        service: Target,
        #[command(flatten)]
        args: crate::provision::ProvisionArgs,
    },
    /// Replay the real Online Retail year through the three services and check the result.
    ///
    /// The demo runs the services in this process in its own namespace, reset at every run:
    /// databases shop_demo_*, exchange shop.demo.events, queues demo.*, HTTP on free ports.
    /// Of the settings below it uses the servers (--amqp-url, --database-url) and the bus
    /// tuning (--db-pool, --prefetch, --concurrency, --max-attempts, --queue-type).
    Demo(demo::DemoArgs),
    /// Measure the bus and the shop beside the broker's and the database's own ceilings.
    ///
    /// Scenarios: ceiling-broker (raw lapin), ceiling-db (raw sqlx), bus (the events library
    /// alone), checkout (the three services as processes, through HTTP), backlog (a deep
    /// queue drained), year (the demo's replay). Prints a table (or --json) with the targets
    /// of issue #5 judged on this machine's figures.
    Bench(crate::bench::BenchArgs),
    /// Inspect, replay or purge a service's dead-letter queue.
    #[command(subcommand)]
    Dlq(crate::ops::DlqCommand),
    /// Inspect a service's outbox, or retry its parked rows.
    #[command(subcommand)]
    Outbox(crate::ops::OutboxCommand),
    /// Exit 0 if URL answers 200 (a container healthcheck without curl).
    Probe { url: String },
}

/// Logs to stderr; with `OTEL_EXPORTER_OTLP_ENDPOINT` set, also exports the spans over OTLP
/// as `service` (crate::telemetry).
fn init_logging(format: LogFormat, default: &str, service: &str) {
    use tracing_subscriber::Layer;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let fmt = tracing_subscriber::fmt::layer()
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let fmt = match format {
        LogFormat::Text => fmt.boxed(),
        LogFormat::Json => fmt.json().boxed(),
    };
    let (otel, otel_error) = match crate::telemetry::layer(service) {
        Ok(layer) => (layer, None),
        Err(e) => (None, Some(e)),
    };
    tracing_subscriber::registry()
        .with(filter)
        .with(fmt)
        .with(otel)
        .init();
    if let Some(e) = otel_error {
        tracing::warn!("OpenTelemetry export disabled: {}", kit::describe(&e));
    }
}

/// Parses the command line and runs it on a new tokio runtime.
pub fn main() -> ExitCode {
    // Before any thread exists: setting the environment is only sound single-threaded.
    match crate::secrets::resolve_files(|k| std::env::var_os(k)) {
        // SAFETY: no other thread runs yet (the runtime is created below).
        Ok(found) => found
            .into_iter()
            .for_each(|(k, v)| unsafe { std::env::set_var(k, v) }),
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = runtime.block_on(async_main());
    // Outside the runtime: the exporter's last batch goes out on a thread of its own.
    crate::telemetry::shutdown();
    code
}

async fn async_main() -> ExitCode {
    let cli = Cli::parse();
    // Services log at info. The demo draws a progress bar: only warnings interrupt it. The
    // one-shot tools report their own errors, so the client libraries' logs stay quiet there.
    // lapin logs every channel the broker closes as an ERROR, including the expected 404 of
    // the passive check for the events exchange on a fresh broker; the bus logs each failure
    // that matters itself (with the broker's reason), so lapin stays off unless RUST_LOG asks.
    let default_filter = match cli.command {
        Command::Serve { .. } | Command::Migrate { .. } => "info,sqlx=warn,lapin=off",
        Command::Demo(_) => "warn,sqlx::query=error,lapin=off",
        // The bench reports failures itself; lapin's log of its own channel teardown would
        // only break the progress bars.
        Command::Bench(_) => "warn,sqlx::query=error,lapin=off",
        _ => "warn,sqlx=off,lapin=off",
    };
    // What exported spans are attributed to (service.name): the service a process runs.
    let service = match &cli.command {
        Command::Serve { service } if *service != Target::All => service.services()[0].name(),
        _ => "shop",
    };
    init_logging(cli.log_format, default_filter, service);
    match run(cli).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", kit::describe(&e));
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let settings = cli.settings;
    settings.check()?;
    match cli.command {
        Command::Serve { service } => {
            let mut running = Vec::new();
            for which in service.services() {
                running.push(crate::system::start(which, &settings).await?);
            }
            for r in &running {
                println!("{} listening on http://{}", r.name, r.addr);
            }
            let failed =
                futures_util::future::select_all(running.iter().map(|r| Box::pin(r.failed())));
            let outcome = tokio::select! {
                _ = shutdown_signal() => None,
                (reason, _, _) = failed => Some(reason),
            };
            tracing::info!("shutting down");
            for r in running {
                r.shutdown().await;
            }
            match outcome {
                None => Ok(ExitCode::SUCCESS),
                Some(reason) => {
                    eprintln!("error: {reason}");
                    Ok(ExitCode::FAILURE)
                }
            }
        }
        Command::Migrate { service } => {
            for which in service.services() {
                crate::system::migrate(which, &settings).await?;
                println!(
                    "{}: migrated {} and declared its queues on {}",
                    which.name(),
                    events::config::redact_url(&settings.database_url(which)),
                    settings.bus_for(which).redacted_url()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Provision { service, args } => {
            for line in crate::provision::provision(&settings, &args, &service.services()).await? {
                println!("{line}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Demo(args) => {
            let ok = demo::run(args, settings).await?;
            Ok(if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Bench(args) => {
            let ok = crate::bench::run(args, settings).await?;
            Ok(if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Dlq(cmd) => {
            crate::ops::dlq(cmd, &settings).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Outbox(cmd) => {
            crate::ops::outbox(cmd, &settings).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Probe { url } => {
            let client = reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(3))
                .build()?;
            Ok(match client.get(&url).send().await {
                Ok(r) if r.status().is_success() => ExitCode::SUCCESS,
                Ok(r) => {
                    eprintln!("{url}: HTTP {}", r.status());
                    ExitCode::FAILURE
                }
                Err(e) => {
                    eprintln!("{url}: {}", kit::describe(&anyhow::Error::new(e)));
                    ExitCode::FAILURE
                }
            })
        }
    }
}

/// Resolves on ctrl-c or SIGTERM (what Kubernetes and docker send).
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}
