//! The local RabbitMQ node, driven through `rabbitmqctl` (the fault tests run as root on the
//! machine that runs the broker): stopping and starting its application, and reading what its
//! queues hold, unacknowledged messages included.

use std::process::Output;

use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::{BasicProperties, Confirmation};

fn check(what: &str, output: std::io::Result<Output>) -> Output {
    let output = output.unwrap_or_else(|e| panic!("rabbitmqctl {what}: cannot run it: {e}"));
    assert!(
        output.status.success(),
        "rabbitmqctl {what} failed ({}): {}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

async fn rabbitmqctl(args: &[&str]) -> Output {
    let output = tokio::process::Command::new("rabbitmqctl")
        .args(args)
        .kill_on_drop(true)
        .output()
        .await;
    check(&args.join(" "), output)
}

/// The broker's application stopped (`rabbitmqctl stop_app`): every connection is closed and
/// nothing can connect until [`BrokerOutage::end`]. Dropping it (a test that panicked) starts
/// the broker again, so a failed test never leaves it down.
pub struct BrokerOutage {
    down: bool,
}

impl BrokerOutage {
    /// Stops the broker's application; returns once it is stopped.
    pub async fn begin() -> BrokerOutage {
        // From here on the guard restarts the broker, even if stop_app fails half-way.
        let outage = BrokerOutage { down: true };
        rabbitmqctl(&["stop_app"]).await;
        outage
    }

    /// Starts the broker's application again and waits until it has fully booted.
    pub async fn end(mut self) {
        rabbitmqctl(&["start_app"]).await;
        rabbitmqctl(&["await_startup"]).await;
        self.down = false;
    }
}

impl Drop for BrokerOutage {
    fn drop(&mut self) {
        if !self.down {
            return;
        }
        eprintln!("restarting the broker left stopped by a failed test");
        for args in [&["start_app"][..], &["await_startup"][..]] {
            let output = std::process::Command::new("rabbitmqctl")
                .args(args)
                .output();
            let output = output.map_err(|e| e.to_string()).and_then(|o| {
                if o.status.success() {
                    Ok(())
                } else {
                    Err(String::from_utf8_lossy(&o.stderr).into_owned())
                }
            });
            if let Err(e) = output {
                eprintln!("rabbitmqctl {}: {e}", args[0]);
            }
        }
    }
}

/// One queue as the broker reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueStats {
    pub name: String,
    pub ready: u64,
    pub unacked: u64,
}

/// Every queue whose name starts with `prefix`, with its ready and unacknowledged messages,
/// sorted by name.
pub async fn queues(prefix: &str) -> Vec<QueueStats> {
    let output = rabbitmqctl(&[
        "list_queues",
        "-q",
        "--no-table-headers",
        "name",
        "messages_ready",
        "messages_unacknowledged",
    ])
    .await;
    let text = String::from_utf8_lossy(&output.stdout);
    let mut queues: Vec<QueueStats> = text
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let name = fields.next()?;
            let ready = fields.next()?.parse().ok()?;
            let unacked = fields.next()?.parse().ok()?;
            name.starts_with(prefix).then(|| QueueStats {
                name: name.to_string(),
                ready,
                unacked,
            })
        })
        .collect();
    queues.sort_by(|a, b| a.name.cmp(&b.name));
    queues
}

/// The queues under `prefix` once they show `expected` (the broker's message counts lag a
/// little behind: its statistics are refreshed every few seconds), or as they are after 30 s.
/// The caller asserts.
pub async fn queues_when(prefix: &str, expected: &[QueueStats]) -> Vec<QueueStats> {
    let seen = shop::wait::until(
        "the broker's queue statistics to settle",
        std::time::Duration::from_secs(30),
        std::time::Duration::from_millis(500),
        || async move {
            let now = queues(prefix).await;
            (now == expected).then_some(now)
        },
    )
    .await;
    match seen {
        Ok(now) => now,
        Err(_) => queues(prefix).await,
    }
}

/// Publishes `body` with `properties` (persistent) to `exchange` ("" = straight to the queue
/// named `routing_key`), with a publisher confirm; returns the broker's confirmation.
pub async fn publish(
    config: &events::BusConfig,
    exchange: &str,
    routing_key: &str,
    body: &[u8],
    properties: BasicProperties,
) -> Confirmation {
    let conn = events::admin::connect(config)
        .await
        .expect("connecting to RabbitMQ");
    let channel = conn.create_channel().await.expect("a channel");
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirm mode");
    let confirmation = channel
        .basic_publish(
            exchange.into(),
            routing_key.into(),
            BasicPublishOptions {
                mandatory: true,
                ..Default::default()
            },
            body,
            properties.with_delivery_mode(2),
        )
        .await
        .expect("publishing")
        .await
        .expect("the broker's confirm");
    let _ = conn.close(200, "published".into()).await;
    confirmation
}
