//! A library-level namespace for one test: its own database `<id>_<service>`, exchange
//! `test.<id>` and queues `test.<id>.*` (the consumers' and plain "sink" queues the test reads
//! what the relay published from), all removed at the end, even when the test panics.

use std::collections::HashMap;
use std::time::Duration;

use e2e::{Settings, unique_id};
use events::BusConfig;
use lapin::options::{BasicGetOptions, QueueBindOptions, QueueDeclareOptions, QueueDeleteOptions};
use lapin::types::FieldTable;
use sqlx::PgPool;

pub struct Isolated {
    pub id: String,
    pub database_url: String,
    pub bus: BusConfig,
    consumers: Vec<&'static str>,
    sinks: Vec<String>,
    removed: bool,
}

impl Isolated {
    /// Creates the database `<id>_<service>` with the outbox and inbox tables; `tweak` adjusts
    /// the bus settings (exchange and queue prefix are the test's own).
    pub async fn new(
        service: &str,
        consumers: &[&'static str],
        tweak: impl FnOnce(&mut BusConfig),
    ) -> (Isolated, PgPool) {
        let id = unique_id();
        let defaults = Settings::default();
        let mut bus = BusConfig {
            amqp_url: defaults.amqp_url.clone(),
            exchange: format!("test.{id}"),
            queue_prefix: format!("test.{id}."),
            ..BusConfig::default()
        };
        tweak(&mut bus);
        let ns = Isolated {
            database_url: shop::settings::with_database(
                &defaults.database_url,
                &format!("{id}_{service}"),
            ),
            id,
            bus,
            consumers: consumers.to_vec(),
            sinks: Vec::new(),
            removed: false,
        };
        kit::db::ensure_database(&ns.database_url)
            .await
            .expect("creating the database");
        let pool = kit::db::pool(&ns.database_url, 4).expect("a pool");
        events::migrate(&pool).await.expect("the outbox and inbox");
        (ns, pool)
    }

    /// Another pool on the test's database (a replica of the service).
    pub fn pool(&self, connections: u32) -> PgPool {
        kit::db::pool(&self.database_url, connections).expect("a pool")
    }

    /// Declares the exchange and a classic queue `test.<id>.<name>` bound to it by each of
    /// `routing_keys`; returns the queue's name.
    pub async fn sink(&mut self, name: &str, routing_keys: &[&str]) -> String {
        let queue = format!("{}{name}", self.bus.queue_prefix);
        self.sinks.push(queue.clone());
        let conn = events::admin::connect(&self.bus)
            .await
            .expect("connecting to RabbitMQ");
        let channel = conn.create_channel().await.expect("a channel");
        events::topology::declare_exchange(&channel, &self.bus)
            .await
            .expect("declaring the exchange");
        channel
            .queue_declare(
                queue.as_str().into(),
                QueueDeclareOptions {
                    durable: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .expect("declaring the sink queue");
        for key in routing_keys {
            bind(&channel, &queue, &self.bus.exchange, key).await;
        }
        let _ = conn.close(200, "declared".into()).await;
        queue
    }

    /// Binds an existing queue to the exchange by `routing_key`.
    pub async fn bind(&self, queue: &str, routing_key: &str) {
        let conn = events::admin::connect(&self.bus)
            .await
            .expect("connecting to RabbitMQ");
        let channel = conn.create_channel().await.expect("a channel");
        bind(&channel, queue, &self.bus.exchange, routing_key).await;
        let _ = conn.close(200, "bound".into()).await;
    }

    /// Takes every message now in `queue` (acked), counted by message id.
    pub async fn drain(&self, queue: &str) -> HashMap<String, usize> {
        let conn = events::admin::connect(&self.bus)
            .await
            .expect("connecting to RabbitMQ");
        let channel = conn.create_channel().await.expect("a channel");
        let mut seen = HashMap::new();
        while let Some(message) = channel
            .basic_get(queue.into(), BasicGetOptions { no_ack: true })
            .await
            .expect("basic.get")
        {
            let id = message
                .delivery
                .properties
                .message_id()
                .as_ref()
                .map(|s| s.to_string())
                .unwrap_or_default();
            *seen.entry(id).or_default() += 1;
        }
        let _ = conn.close(200, "drained".into()).await;
        seen
    }

    /// Messages ready in `queue`.
    pub async fn depth(&self, queue: &str) -> u32 {
        events::admin::queue_depth(&self.bus, queue)
            .await
            .expect("asking the broker")
            .unwrap_or_else(|| panic!("no queue {queue}"))
    }

    pub async fn remove(&mut self) -> anyhow::Result<()> {
        let result = remove(&self.database_url, &self.bus, &self.consumers, &self.sinks).await;
        self.removed = true;
        result
    }
}

async fn bind(channel: &lapin::Channel, queue: &str, exchange: &str, key: &str) {
    channel
        .queue_bind(
            queue.into(),
            exchange.into(),
            (*key).into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("binding the queue");
}

async fn remove(
    database_url: &str,
    bus: &BusConfig,
    consumers: &[&'static str],
    sinks: &[String],
) -> anyhow::Result<()> {
    let mut errors = Vec::new();
    if let Err(e) = kit::db::drop_database(database_url).await {
        errors.push(format!("dropping the database: {e:#}"));
    }
    let sinks_deleted = async {
        let conn = events::admin::connect(bus).await?;
        let channel = conn.create_channel().await?;
        for q in sinks {
            channel
                .queue_delete(q.as_str().into(), QueueDeleteOptions::default())
                .await?;
        }
        let _ = conn.close(200, "done".into()).await;
        Ok::<_, lapin::Error>(())
    };
    if let Err(e) = sinks_deleted.await {
        errors.push(format!("deleting the sink queues: {e}"));
    }
    if let Err(e) = events::admin::delete_topology(bus, consumers).await {
        errors.push(format!("deleting the queues and exchange: {e}"));
    }
    if errors.is_empty() {
        Ok(())
    } else {
        anyhow::bail!(errors.join("; "))
    }
}

impl Drop for Isolated {
    fn drop(&mut self) {
        if self.removed {
            return;
        }
        let (url, bus, consumers, sinks) = (
            self.database_url.clone(),
            self.bus.clone(),
            self.consumers.clone(),
            self.sinks.clone(),
        );
        let done = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime");
            match rt.block_on(async {
                tokio::time::timeout(
                    Duration::from_secs(30),
                    remove(&url, &bus, &consumers, &sinks),
                )
                .await
            }) {
                Ok(Ok(())) => {}
                Ok(Err(e)) => eprintln!("cleanup failed: {e:#}"),
                Err(_) => eprintln!("cleanup timed out"),
            }
        });
        let _ = done.join();
    }
}

/// Waits for `check` with a deadline of `secs` seconds.
pub async fn within<T, F, Fut>(what: &str, secs: u64, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    shop::wait::until(what, Duration::from_secs(secs), e2e::POLL, check)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

/// Runs the `shop` command (as a process of its own) with `args`, against the servers of the
/// defaults but nothing else from this environment that could point it elsewhere, stdin
/// closed (not a terminal).
pub async fn shop_cli(args: &[&str]) -> std::process::Output {
    const SHOP: &str = env!("CARGO_BIN_EXE_shop-proc");
    let defaults = Settings::default();
    let mut command = tokio::process::Command::new(SHOP);
    for var in [
        "CHECKOUT_AMQP_URL",
        "CART_AMQP_URL",
        "INVENTORY_AMQP_URL",
        "CHECKOUT_DATABASE_URL",
        "CART_DATABASE_URL",
        "INVENTORY_DATABASE_URL",
        "SHOP_EXCHANGE",
        "SHOP_QUEUE_PREFIX",
        "SHOP_DATABASE_PREFIX",
    ] {
        command.env_remove(var);
    }
    let output = command
        .args(["--amqp-url", &defaults.amqp_url])
        .args(["--database-url", &defaults.database_url])
        .args(args)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    tokio::time::timeout(Duration::from_secs(60), output)
        .await
        .unwrap_or_else(|_| panic!("shop {args:?} did not finish within 60 s"))
        .unwrap_or_else(|e| panic!("running shop {args:?}: {e}"))
}

/// stdout of a finished command, asserting its exit code.
pub fn expect_exit(output: &std::process::Output, code: i32, what: &str) -> String {
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        output.status.code(),
        Some(code),
        "{what}: stdout: {stdout}\nstderr: {stderr}"
    );
    stdout
}
