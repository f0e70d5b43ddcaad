//! The bus: one broker connection per service, supervised. A session connects, declares the
//! topology, then runs the outbox relay and the consumer on their own channels. When anything
//! in it fails (broker restart, killed connection, refused declare) the whole session is torn
//! down and rebuilt with backoff and jitter: fresh channels, topology, qos and consumers, and
//! no delivery tag from a dead channel is ever acked on a new one.

use std::sync::Arc;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use futures_util::StreamExt;
use lapin::options::ConfirmSelectOptions;
use lapin::{Connection, ConnectionProperties};
use sqlx::PgPool;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::BusConfig;
use crate::consumer::Consumer;
use crate::error::BusError;
use crate::handler::Subscriber;
use crate::health::BusHealth;
use crate::outbox::Outbox;
use crate::relay::Relay;
use crate::topology::{self, QueueNames};

/// How long a stopping session waits for in-flight handlers and the relay's last flush.
const DRAIN_GRACE: Duration = Duration::from_secs(10);

pub struct Bus {
    config: BusConfig,
    pool: PgPool,
    outbox: Outbox,
    subscriber: Option<Arc<Subscriber>>,
    health: Arc<BusHealth>,
}

/// A running bus. Dropping it does not stop it; call `shutdown`.
pub struct BusHandle {
    health: Arc<BusHealth>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl BusHandle {
    pub fn health(&self) -> Arc<BusHealth> {
        self.health.clone()
    }

    /// Stops taking deliveries, finishes those in flight, flushes the relay, closes.
    pub async fn shutdown(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}

impl Bus {
    /// A bus for `service`: its outbox relay always runs; consumers run if `subscribe`d.
    pub fn new(config: BusConfig, pool: PgPool, service: &str) -> Self {
        Bus {
            config,
            pool,
            outbox: Outbox::new(service),
            subscriber: None,
            health: Arc::new(BusHealth::default()),
        }
    }

    /// Reports into `health` (shared with a readiness route created before the bus).
    pub fn with_health(mut self, health: Arc<BusHealth>) -> Self {
        self.health = health;
        self
    }

    pub fn subscribe(mut self, subscriber: Subscriber) -> Self {
        self.subscriber = Some(Arc::new(subscriber));
        self
    }

    pub fn start(self) -> BusHandle {
        let health = self.health.clone();
        health.set_has_consumers(self.subscriber.is_some());
        let stop = CancellationToken::new();
        let task = tokio::spawn(self.supervise(health.clone(), stop.clone()));
        BusHandle { health, stop, task }
    }

    async fn supervise(self, health: Arc<BusHealth>, stop: CancellationToken) {
        let new_backoff = || {
            ExponentialBuilder::default()
                .with_min_delay(Duration::from_millis(200))
                .with_max_delay(Duration::from_secs(10))
                .with_jitter()
                .without_max_times()
                .build()
        };
        let mut backoff = new_backoff();
        loop {
            let started = tokio::time::Instant::now();
            let result = self.session(&health, &stop).await;
            health.set_connected(false);
            crate::metrics::broker_connected(self.outbox.service(), false);
            match result {
                Ok(()) => return,
                Err(e) => {
                    let msg = e.to_string();
                    if matches!(e, BusError::Topology { .. }) {
                        // Running without our queues would mean "up but consuming nothing":
                        // stop, say what differs, and let the process exit loudly.
                        tracing::error!(error = %msg, "the broker refused our topology: fix the existing queue/exchange (or the config); stopping");
                        health.set_error(Some(msg.clone()));
                        health.set_fatal(msg);
                        return;
                    } else {
                        tracing::warn!(error = %msg, url = %self.config.redacted_url(), "broker session ended; reconnecting");
                    }
                    health.set_error(Some(msg));
                }
            }
            // A session that ran a while was healthy: start the backoff over.
            if started.elapsed() > Duration::from_secs(30) {
                backoff = new_backoff();
            }
            let delay = backoff.next().unwrap_or(Duration::from_secs(10));
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = stop.cancelled() => return,
            }
        }
    }

    async fn session(
        &self,
        health: &Arc<BusHealth>,
        stop: &CancellationToken,
    ) -> Result<(), BusError> {
        let properties = ConnectionProperties::default()
            .with_connection_name(self.outbox.service().to_string().into());
        let conn = tokio::select! {
            c = Connection::connect(&self.config.amqp_url, properties) => c?,
            _ = stop.cancelled() => return Ok(()),
        };
        let mut errors = conn.events_listener();

        topology::ensure_exchange(&self.config)
            .await
            .map_err(|e| refused(&format!("exchange {}", self.config.exchange), e))?;
        let names = self
            .subscriber
            .as_ref()
            .map(|s| QueueNames::new(&self.config, s.name()));
        let declare = conn.create_channel().await?;
        if let (Some(sub), Some(names)) = (&self.subscriber, &names) {
            topology::declare_consumer_queues(&declare, &self.config, names, &sub.event_types())
                .await
                .map_err(|e| {
                    refused(
                        &format!("queue {} (or its retry/dead-letter queues)", names.main),
                        e,
                    )
                })?;
        }
        let _ = declare.close(200, "declared".into()).await;
        health.set_connected(true);
        crate::metrics::broker_connected(self.outbox.service(), true);
        health.set_error(None);
        tracing::info!(service = self.outbox.service(), url = %self.config.redacted_url(), "connected to broker");

        let session_stop = stop.child_token();
        let mut tasks = JoinSet::new();

        let relay_channel = conn.create_channel().await?;
        relay_channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        let relay = Relay::new(
            self.pool.clone(),
            relay_channel,
            &self.config,
            self.outbox.service(),
        );
        tasks.spawn(relay.run(session_stop.clone()));

        if let (Some(sub), Some(names)) = (&self.subscriber, names) {
            let channel = conn.create_channel().await?;
            let side = conn.create_channel().await?;
            side.confirm_select(ConfirmSelectOptions::default()).await?;
            let consumer = Consumer {
                pool: self.pool.clone(),
                subscriber: sub.clone(),
                outbox: self.outbox.clone(),
                names,
                config: self.config.clone(),
                channel,
                side,
                health: health.clone(),
            };
            tasks.spawn(consumer.run(session_stop.clone()));
        }

        let result = tokio::select! {
            // Consumer and relay run until the session stops: one that ends before is a
            // failure of the session (a panic included), rebuilt like a lost connection.
            Some(done) = tasks.join_next() => match done {
                Ok(Ok(())) if !stop.is_cancelled() => Err(BusError::Interrupted("a bus task ended unexpectedly".into())),
                Ok(r) => r,
                Err(join) => Err(BusError::Interrupted(format!("bus task failed: {join}"))),
            },
            Some(err) = next_error(&mut errors) => Err(BusError::Broker(err)),
            _ = stop.cancelled() => Ok(()),
        };

        // Stop the rest of the session: in-flight handlers finish and ack, the relay flushes.
        session_stop.cancel();
        let drained = tokio::time::timeout(DRAIN_GRACE, async {
            while tasks.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!("bus tasks did not stop within {DRAIN_GRACE:?}; aborting them");
            tasks.abort_all();
        }
        let _ = conn.close(200, "shutting down".into()).await;
        result
    }
}

async fn next_error(
    events: &mut (impl futures_util::Stream<Item = lapin::Event> + Unpin),
) -> Option<lapin::Error> {
    while let Some(event) = events.next().await {
        if let lapin::Event::Error(e) = event {
            return Some(e);
        }
    }
    None
}

/// Turns a refused declare into an error that says what to look at. Only a refusal that
/// retrying can't cure is fatal: arguments that differ (PRECONDITION_FAILED), no permission
/// (ACCESS_REFUSED), a missing exchange we may not create (NOT_FOUND). A connection error
/// meanwhile (CONNECTION_FORCED by a broker shutting down) is a lost session like any other.
fn refused(what: &str, e: lapin::Error) -> BusError {
    use lapin::protocol::{AMQPErrorKind, AMQPSoftError};
    let permanent = matches!(
        e.kind(),
        lapin::ErrorKind::ProtocolError(amqp) if matches!(
            amqp.kind(),
            AMQPErrorKind::Soft(
                AMQPSoftError::PRECONDITIONFAILED
                    | AMQPSoftError::ACCESSREFUSED
                    | AMQPSoftError::NOTFOUND
            )
        )
    );
    if permanent {
        BusError::Topology {
            what: what.to_string(),
            reason: e.to_string(),
        }
    } else {
        BusError::Broker(e)
    }
}
