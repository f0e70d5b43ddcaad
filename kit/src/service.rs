//! Running a service: database, migrations, bus and HTTP, started and stopped in the right
//! order. A service crate only says what it is (a [`Service`]); this does the rest.

use std::net::SocketAddr;

use anyhow::Context as _;
use axum::Router;
use events::{Bus, BusConfig, BusHandle, Outbox, Subscriber};
use sqlx::PgPool;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::{db, http};

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
    stop: CancellationToken,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
    bus: BusHandle,
}

impl Running {
    pub fn bus_health(&self) -> std::sync::Arc<events::BusHealth> {
        self.bus.health()
    }

    /// Graceful stop: no new HTTP requests (in-flight ones finish), then the bus drains
    /// in-flight deliveries and flushes the outbox.
    pub async fn shutdown(self) {
        self.stop.cancel();
        let _ = self.server.await;
        self.bus.shutdown().await;
        self.pool.close().await;
        tracing::info!(service = self.name, "stopped");
    }
}

/// Creates the service's database if needed and runs its migrations (the library's outbox
/// and inbox tables, then the service's own). Returns a pool on it.
pub async fn migrate<S: Service>(config: &ServiceConfig) -> anyhow::Result<PgPool> {
    let redacted = events::config::redact_url(&config.database_url);
    db::ensure_database(&config.database_url).await?;
    let pool = db::pool(&config.database_url, config.db_max_connections)?;
    events::migrate(&pool)
        .await
        .with_context(|| format!("{}: cannot migrate the outbox/inbox tables in {redacted}", S::NAME))?;
    S::migrator()
        .run(&pool)
        .await
        .with_context(|| format!("{}: cannot migrate {redacted}", S::NAME))?;
    Ok(pool)
}

/// Creates the database if needed, migrates it, starts the bus and serves HTTP.
pub async fn start<S: Service>(config: ServiceConfig) -> anyhow::Result<Running> {
    let pool = migrate::<S>(&config).await?;

    let parts = S::build(pool.clone(), Outbox::new(S::NAME));
    let mut bus = Bus::new(config.bus.clone(), pool.clone(), S::NAME);
    if let Some(subscriber) = parts.subscriber {
        bus = bus.subscribe(subscriber);
    }
    let bus = bus.start();

    let listener = TcpListener::bind(config.http_addr)
        .await
        .with_context(|| format!("{}: cannot listen on {} (is another instance running there?)", S::NAME, config.http_addr))?;
    let addr = listener.local_addr()?;
    let app = http::app(parts.routes, pool.clone(), bus.health());
    let stop = CancellationToken::new();
    let server = tokio::spawn(
        axum::serve(listener, app)
            .with_graceful_shutdown(stop.clone().cancelled_owned())
            .into_future(),
    );
    tracing::info!(service = S::NAME, %addr, "listening");
    Ok(Running { name: S::NAME, addr, pool, stop, server, bus })
}
