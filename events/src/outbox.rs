//! Writing events: into the outbox table, inside the caller's transaction.

use sqlx::PgConnection;
use uuid::Uuid;

use crate::contract::Event;
use crate::envelope::{Envelope, Meta};

/// A service's handle for publishing. It never talks to the broker: it writes the event into
/// the outbox in the caller's transaction, so the event exists if and only if the state change
/// that produced it committed. The relay does the rest.
#[derive(Debug, Clone)]
pub struct Outbox {
    service: String,
}

impl Outbox {
    pub fn new(service: impl Into<String>) -> Self {
        Outbox {
            service: service.into(),
        }
    }

    pub fn service(&self) -> &str {
        &self.service
    }

    /// Stores `data` as a new event of this service; returns its envelope.
    pub async fn publish<E: Event>(
        &self,
        conn: &mut PgConnection,
        data: E,
    ) -> Result<Envelope<E>, sqlx::Error> {
        let envelope = Envelope::new(&self.service, data);
        enqueue(conn, &envelope).await?;
        Ok(envelope)
    }

    /// Stores `data` as an event caused by `cause` (same correlation id and trace).
    pub async fn publish_caused_by<E: Event>(
        &self,
        conn: &mut PgConnection,
        cause: &Meta,
        data: E,
    ) -> Result<Envelope<E>, sqlx::Error> {
        let envelope = Envelope::new(&self.service, data).caused_by(cause);
        enqueue(conn, &envelope).await?;
        Ok(envelope)
    }
}

/// Inserts a ready-made envelope into the outbox.
pub async fn enqueue<E: Event>(
    conn: &mut PgConnection,
    envelope: &Envelope<E>,
) -> Result<Uuid, sqlx::Error> {
    let payload = serde_json::to_string(envelope)
        .map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
    let m = &envelope.meta;
    sqlx::query(
        "INSERT INTO events_outbox (event_id, event_type, source, subject, correlation_id, occurred_at, payload)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(m.id)
    .bind(&m.event_type)
    .bind(&m.source)
    .bind(&m.subject)
    .bind(&m.correlationid)
    .bind(m.time)
    .bind(payload)
    .execute(conn)
    .await?;
    Ok(m.id)
}
