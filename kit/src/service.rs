//! Running a service: database, migrations, bus and HTTP, started and stopped in the right
//! order. A service crate only says what it is (a [`Service`]); this does the rest.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use events::{Bus, BusConfig, BusHandle, BusHealth, Outbox, Subscriber};
use sqlx::PgPool;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::{db, http};

/// How long in-flight HTTP requests get to finish at shutdown before their connections are
/// dropped (the bus then drains within its own bound).
const HTTP_GRACE: Duration = Duration::from_secs(10);

/// Where one service instance listens and what it connects to.
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    pub http_addr: SocketAddr,
    pub database_url: String,
    /// Connections in this instance's pool. Mind PostgreSQL's max_connections across
    /// replicas: N replicas take N times this.
    pub db_max_connections: u32,
    pub bus: BusConfig,
}

/// What a service is made of: its HTTP routes and the events it reacts to.
pub struct Parts {
    pub routes: Router,
    pub subscriber: Option<Subscriber>,
}

pub trait Service {
    /// Names the CloudEvents source (`/shop/<name>`), the queue and the inbox consumer.
    const NAME: &'static str;
    fn migrator() -> sqlx::migrate::Migrator;
    fn build(pool: PgPool, outbox: Outbox) -> Parts;
}

/// A started service instance.
pub struct Running {
    pub name: &'static str,
    pub addr: SocketAddr,
    pub pool: PgPool,
    health: Arc<BusHealth>,
    stop: CancellationToken,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
    /// Migrates (retrying while the database is down), then starts the bus.
    starter: tokio::task::JoinHandle<Option<BusHandle>>,
}

impl Running {
    pub fn bus_health(&self) -> Arc<BusHealth> {
        self.health.clone()
    }

    /// Resolves if the service can't go on (its broker topology was refused), with the reason.
    pub async fn failed(&self) -> String {
        format!("{}: {}", self.name, self.health.fatal().await)
    }

    /// Waits until the database is migrated and the broker session is up with its queues
    /// declared and consumers running (what `/readyz` reports), or fails after `deadline`
    /// with the last error seen.
    pub async fn wait_ready(&self, deadline: Duration) -> anyhow::Result<()> {
        let end = tokio::time::Instant::now() + deadline;
        loop {
            let status = self.health.status();
            if status.ready() {
                return Ok(());
            }
            if let Some(fatal) = futures_util::FutureExt::now_or_never(self.health.fatal()) {
                anyhow::bail!("{} cannot start: {fatal}", self.name);
            }
            if tokio::time::Instant::now() >= end {
                anyhow::bail!(
                    "{} is not ready after {deadline:?}: {}",
                    self.name,
                    status.last_error.as_deref().unwrap_or("still connecting")
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Graceful stop: no new HTTP requests (in-flight ones finish), then the bus drains
    /// in-flight deliveries and flushes the outbox.
    pub async fn shutdown(self) {
        self.stop.cancel();
        // A client holding a connection open must not keep the bus from draining: HTTP gets
        // a bounded grace, then its remaining connections are dropped.
        let server_abort = self.server.abort_handle();
        if tokio::time::timeout(HTTP_GRACE, self.server).await.is_err() {
            tracing::warn!(
                service = self.name,
                "HTTP connections still open after {HTTP_GRACE:?}; closing them"
            );
            server_abort.abort();
        }
        if let Ok(Some(bus)) = self.starter.await {
            bus.shutdown().await;
        }
        self.pool.close().await;
        tracing::info!(service = self.name, "stopped");
    }
}

/// Creates the service's database if needed and runs its migrations (the library's outbox
/// and inbox tables, then the service's own).
pub async fn migrate_pool<S: Service>(config: &ServiceConfig, pool: &PgPool) -> anyhow::Result<()> {
    let redacted = events::config::redact_url(&config.database_url);
    db::ensure_database(&config.database_url).await?;
    events::migrate(pool).await.with_context(|| {
        format!(
            "{}: cannot migrate the outbox/inbox tables in {redacted}",
            S::NAME
        )
    })?;
    S::migrator()
        .run(pool)
        .await
        .with_context(|| format!("{}: cannot migrate {redacted}", S::NAME))?;
    Ok(())
}

/// `shop migrate`: create and migrate, failing at once if the database is unreachable.
pub async fn migrate<S: Service>(config: &ServiceConfig) -> anyhow::Result<PgPool> {
    let pool = db::pool(&config.database_url, config.db_max_connections)?;
    migrate_pool::<S>(config, &pool).await?;
    Ok(pool)
}

/// Declares the service's exchange and queues on the broker (idempotent).
pub async fn declare_topology<S: Service>(
    config: &ServiceConfig,
    pool: PgPool,
) -> anyhow::Result<()> {
    if let Some(subscriber) = S::build(pool, Outbox::new(S::NAME)).subscriber {
        events::admin::declare_topology(&config.bus, &subscriber)
            .await
            .with_context(|| {
                format!(
                    "{}: cannot declare its queues on {}",
                    S::NAME,
                    config.bus.redacted_url()
                )
            })?;
    }
    Ok(())
}

/// Serves HTTP at once; in the background, creates and migrates the database (retrying with
/// backoff while PostgreSQL is unreachable), then starts the bus (which itself retries while
/// the broker is down). Until both are up, `/readyz` answers 503 and says why, so a service
/// can start before its dependencies, as orchestrators do. Fails only if the port can't be
/// bound.
pub async fn start<S: Service>(config: ServiceConfig) -> anyhow::Result<Running> {
    let pool = db::pool(&config.database_url, config.db_max_connections)?;
    let parts = S::build(pool.clone(), Outbox::new(S::NAME));
    let health = Arc::new(BusHealth::default());

    let listener = TcpListener::bind(config.http_addr).await.with_context(|| {
        format!(
            "{}: cannot listen on {} (is another instance running there?)",
            S::NAME,
            config.http_addr
        )
    })?;
    let addr = listener.local_addr()?;
    let app = http::app(S::NAME, parts.routes, pool.clone(), health.clone());
    let stop = CancellationToken::new();
    let server = tokio::spawn(
        axum::serve(listener, app)
            .with_graceful_shutdown(stop.clone().cancelled_owned())
            .into_future(),
    );
    tracing::info!(service = S::NAME, %addr, "listening");

    let starter = tokio::spawn({
        let (pool, health, stop) = (pool.clone(), health.clone(), stop.clone());
        let subscriber = parts.subscriber;
        async move {
            let mut delay = Duration::from_millis(500);
            loop {
                match migrate_pool::<S>(&config, &pool).await {
                    Ok(()) => break,
                    Err(e) => {
                        let msg = crate::describe(&e);
                        tracing::warn!(service = S::NAME, error = %msg, retry_in = ?delay, "database not ready");
                        health.set_error(Some(format!("database: {msg}")));
                    }
                }
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = stop.cancelled() => return None,
                }
                delay = (delay * 2).min(Duration::from_secs(10));
            }
            let mut bus = Bus::new(config.bus.clone(), pool, S::NAME).with_health(health);
            if let Some(subscriber) = subscriber {
                bus = bus.subscribe(subscriber);
            }
            Some(bus.start())
        }
    });
    Ok(Running {
        name: S::NAME,
        addr,
        pool,
        health,
        stop,
        server,
        starter,
    })
}
