//! One scenario's own databases, exchange and queues, and their removal.

use std::net::SocketAddr;

use anyhow::Context as _;
use lapin::options::{ExchangeDeleteOptions, QueueDeleteOptions};
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection};
use std::str::FromStr;

use super::Scenario;
use crate::settings::{Settings, with_database};

/// Consumers (queue and inbox names) a scenario may create; all are removed at the end.
pub const CONSUMERS: [&str; 4] = ["checkout", "cart", "inventory", "consumer"];
/// The raw queue of ceiling-broker (under the namespace's queue prefix).
pub const RAW_QUEUE: &str = "raw";
/// backlog's bounded queue that takes the consumers' own events (under the queue prefix).
pub const SINK_QUEUE: &str = "sink";

/// A short id for one `shop bench` run: 10 random hex digits of a UUID v7.
pub fn run_id() -> String {
    let simple = uuid::Uuid::now_v7().simple().to_string();
    simple[simple.len() - 10..].to_string()
}

pub struct Namespace {
    /// `bench_<run>_<scenario>_`: every database of the scenario starts with it.
    pub database_prefix: String,
    /// The settings of a shop living in this namespace (services started with them, in this
    /// process or as children, stay inside it).
    pub settings: Settings,
}

impl Namespace {
    pub fn new(run: &str, scenario: Scenario, base: &Settings) -> Namespace {
        let tag = scenario.name().replace('-', "_");
        let any: SocketAddr = "127.0.0.1:0".parse().expect("an address");
        let mut settings = base.clone();
        settings.database_prefix = format!("bench_{run}_{tag}_");
        settings.checkout_database_url = None;
        settings.cart_database_url = None;
        settings.inventory_database_url = None;
        settings.exchange = format!("bench.{run}.{}", scenario.name());
        settings.queue_prefix = format!("bench.{run}.{}.", scenario.name());
        settings.checkout_addr = any;
        settings.cart_addr = any;
        settings.inventory_addr = any;
        Namespace {
            database_prefix: settings.database_prefix.clone(),
            settings,
        }
    }

    /// The URL of the namespace's database `name` (created by whoever uses it).
    pub fn database_url(&self, name: &str) -> String {
        with_database(
            &self.settings.database_url,
            &format!("{}{name}", self.database_prefix),
        )
    }

    pub fn queue(&self, name: &str) -> String {
        format!("{}{name}", self.settings.queue_prefix)
    }

    /// Drops every database of the namespace and deletes its queues and exchange (missing
    /// ones are fine). Both are attempted; the errors are reported together. A server that
    /// is briefly away (a restart) is waited for, up to two minutes.
    pub async fn cleanup(&self) -> anyhow::Result<()> {
        let mut tries = 0;
        loop {
            match self.cleanup_once().await {
                Ok(()) => return Ok(()),
                Err(e) if tries < 24 => {
                    tries += 1;
                    tracing::warn!("cleaning up the bench namespace failed, retrying: {e:#}");
                    tokio::time::sleep(std::time::Duration::from_secs(5)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn cleanup_once(&self) -> anyhow::Result<()> {
        let mut errors = Vec::new();
        if let Err(e) = self.drop_databases().await {
            errors.push(format!(
                "dropping the databases {}*: {e:#}",
                self.database_prefix
            ));
        }
        if let Err(e) = self.delete_queues().await {
            errors.push(format!(
                "deleting the queues {}* and exchange {}: {e:#}",
                self.settings.queue_prefix, self.settings.exchange
            ));
        }
        if errors.is_empty() {
            Ok(())
        } else {
            anyhow::bail!(errors.join("; "))
        }
    }

    async fn drop_databases(&self) -> anyhow::Result<()> {
        let options = PgConnectOptions::from_str(&self.settings.database_url)
            .context("invalid database url")?
            .database("postgres");
        let mut admin = options.connect().await?;
        // A service killed by an interrupt may have left its CREATE DATABASE running on the
        // server: not listed until it commits, so wait for it (up to 10 s) before listing.
        let creating = format!("CREATE DATABASE \"{}%", self.database_prefix);
        for _ in 0..100 {
            let busy: bool = sqlx::query_scalar(
                "SELECT EXISTS (SELECT 1 FROM pg_stat_activity
                 WHERE state = 'active' AND query LIKE $1 AND pid <> pg_backend_pid())",
            )
            .bind(&creating)
            .fetch_one(&mut admin)
            .await?;
            if !busy {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        let names: Vec<String> = sqlx::query_scalar(
            "SELECT datname FROM pg_database WHERE left(datname, length($1)) = $1",
        )
        .bind(&self.database_prefix)
        .fetch_all(&mut admin)
        .await?;
        admin.close().await?;
        for name in names {
            kit::db::drop_database(&with_database(&self.settings.database_url, &name)).await?;
        }
        Ok(())
    }

    async fn delete_queues(&self) -> anyhow::Result<()> {
        let bus = self.settings.bus();
        events::admin::delete_topology(&bus, &CONSUMERS).await?;
        let conn = events::admin::connect(&bus).await?;
        let channel = conn.create_channel().await?;
        for queue in [RAW_QUEUE, SINK_QUEUE] {
            channel
                .queue_delete(
                    self.queue(queue).as_str().into(),
                    QueueDeleteOptions::default(),
                )
                .await?;
        }
        channel
            .exchange_delete(
                bus.exchange.as_str().into(),
                ExchangeDeleteOptions::default(),
            )
            .await?;
        let _ = conn.close(200, "bench cleaned up".into()).await;
        Ok(())
    }
}
