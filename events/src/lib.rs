//! `events`: typed, versioned event contracts and a reliable RabbitMQ bus.
//!
//! - [`contracts`]: the shop's events, each a [`Event`] in a CloudEvents [`Envelope`].
//! - [`Outbox`]: publish inside your database transaction; the relay (run by [`Bus`]) sends
//!   with publisher confirms and marks sent after the broker's ack.
//! - [`Subscriber`] + [`Handler`]: declare what you react to; the bus applies each event once
//!   (inbox in the handler's transaction), retries transient failures with backoff and
//!   dead-letters the rest with the reason.

pub mod admin;
pub mod bus;
pub mod config;
pub mod consumer;
pub mod contract;
pub mod contracts;
pub mod envelope;
pub mod error;
pub mod handler;
pub mod health;
mod metrics;
pub mod outbox;
mod relay;
pub mod topology;
pub mod trace;

pub use bus::{Bus, BusHandle};
pub use config::{BusConfig, QueueType, RelayConfig};
pub use contract::Event;
pub use envelope::{DecodeError, Envelope, Meta, RawEnvelope};
pub use error::BusError;
pub use handler::{Context, Handler, HandlerError, Subscriber};
pub use health::{BusHealth, BusStatus, CountersSnapshot};
pub use outbox::Outbox;

/// Creates or updates the outbox and inbox tables. They are tracked in their own migrations
/// table so a service's own `sqlx` migrations in the same database don't collide with them.
pub async fn migrate(pool: &sqlx::PgPool) -> Result<(), sqlx::migrate::MigrateError> {
    let mut migrator = sqlx::migrate!("./migrations");
    migrator.dangerous_set_table_name("_events_migrations");
    migrator.run(pool).await
}
