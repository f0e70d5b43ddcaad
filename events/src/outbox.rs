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
    let payload = serde_json::to_string(envelope).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
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

/// The outbox as operators see it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct OutboxStatus {
    pub pending: i64,
    pub parked: i64,
    pub sent: i64,
    /// Age in seconds of the oldest pending row (0 when none): the relay's lag.
    pub oldest_pending_secs: f64,
    pub parked_rows: Vec<ParkedRow>,
}

#[derive(Debug, Clone, serde::Serialize, sqlx::FromRow)]
pub struct ParkedRow {
    pub event_id: Uuid,
    pub event_type: String,
    pub attempts: i32,
    pub last_error: Option<String>,
    pub parked_at: Option<chrono::DateTime<chrono::Utc>>,
}

pub async fn status(pool: &sqlx::PgPool) -> Result<OutboxStatus, sqlx::Error> {
    let (pending, parked, sent, oldest): (i64, i64, i64, f64) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE sent_at IS NULL AND parked_at IS NULL),
                count(*) FILTER (WHERE parked_at IS NOT NULL),
                count(*) FILTER (WHERE sent_at IS NOT NULL),
                COALESCE(EXTRACT(EPOCH FROM now() - min(created_at) FILTER (WHERE sent_at IS NULL AND parked_at IS NULL)), 0)::float8
         FROM events_outbox",
    )
    .fetch_one(pool)
    .await?;
    let parked_rows = sqlx::query_as(
        "SELECT event_id, event_type, attempts, last_error, parked_at FROM events_outbox
         WHERE parked_at IS NOT NULL ORDER BY seq LIMIT 100",
    )
    .fetch_all(pool)
    .await?;
    Ok(OutboxStatus {
        pending,
        parked,
        sent,
        oldest_pending_secs: oldest,
        parked_rows,
    })
}

/// Puts parked rows (all, or one) back in the relay's queue with a fresh attempt count.
pub async fn retry_parked(pool: &sqlx::PgPool, event_id: Option<Uuid>) -> Result<u64, sqlx::Error> {
    Ok(sqlx::query(
        "UPDATE events_outbox SET parked_at = NULL, attempts = 0, next_attempt_at = now()
         WHERE parked_at IS NOT NULL AND ($1::uuid IS NULL OR event_id = $1)",
    )
    .bind(event_id)
    .execute(pool)
    .await?
    .rows_affected())
}
