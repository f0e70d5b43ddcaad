//! The outbox relay: publishes pending outbox rows with publisher confirms and marks them sent
//! only after the broker's ack. Replicas share the table through `FOR UPDATE SKIP LOCKED`.

use std::time::Duration;

use lapin::options::BasicPublishOptions;
use lapin::types::ShortString;
use lapin::{BasicProperties, Channel, Confirmation};
use sqlx::postgres::PgListener;
use sqlx::{PgPool, Row};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::config::{BusConfig, RelayConfig};
use crate::envelope::CONTENT_TYPE;
use crate::error::BusError;
use crate::metrics;

const NOTIFY_CHANNEL: &str = "events_outbox";

/// One outbox row as the relay reads it.
struct PendingRow {
    seq: i64,
    event_id: Uuid,
    event_type: String,
    source: String,
    correlation_id: Option<String>,
    occurred_at: chrono::DateTime<chrono::Utc>,
    payload: String,
    attempts: i32,
}

/// AMQP properties mirroring the envelope, so tools that never parse the body still see
/// id, type and correlation.
fn properties(row: &PendingRow, user_id: Option<&str>) -> BasicProperties {
    let app_id = row.source.rsplit('/').next().unwrap_or(&row.source);
    let mut props = BasicProperties::default()
        .with_message_id(row.event_id.to_string().into())
        .with_type(short(&row.event_type))
        .with_content_type(CONTENT_TYPE.into())
        .with_timestamp(row.occurred_at.timestamp().max(0) as u64)
        .with_app_id(short(app_id))
        .with_delivery_mode(2);
    if let Some(c) = &row.correlation_id {
        props = props.with_correlation_id(short(c));
    }
    if let Some(user) = user_id {
        props = props.with_user_id(short(user));
    }
    props
}

/// AMQP short strings are at most 255 bytes; truncate rather than panic on odd input.
pub(crate) fn short(s: &str) -> ShortString {
    let mut end = s.len().min(255);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    ShortString::from(&s[..end])
}

/// Exponential backoff for a row whose publish failed: 1 s, 2 s, 4 s … capped at 5 minutes.
fn row_backoff(attempts: i32) -> Duration {
    let exp = attempts.clamp(1, 9) as u32 - 1;
    Duration::from_secs(1u64 << exp).min(Duration::from_secs(300))
}

pub(crate) struct Relay {
    pub pool: PgPool,
    pub channel: Channel,
    pub exchange: String,
    /// Set on every message (see [`BusConfig::publisher_user_id`]).
    pub user_id: Option<String>,
    pub config: RelayConfig,
    pub inbox_retention: Duration,
    pub service: String,
}

impl Relay {
    pub fn new(pool: PgPool, channel: Channel, bus: &BusConfig, service: &str) -> Self {
        Relay {
            pool,
            channel,
            exchange: bus.exchange.clone(),
            user_id: bus.publisher_user_id(),
            config: bus.relay.clone(),
            inbox_retention: bus.inbox_retention,
            service: service.to_string(),
        }
    }

    /// Updates the outbox gauges (pending, parked, oldest pending age).
    async fn report(&self) -> Result<(), sqlx::Error> {
        let (pending, parked, oldest): (i64, i64, f64) = sqlx::query_as(
            "SELECT count(*) FILTER (WHERE sent_at IS NULL AND parked_at IS NULL),
                    count(*) FILTER (WHERE parked_at IS NOT NULL),
                    COALESCE(EXTRACT(EPOCH FROM now() - min(created_at) FILTER (WHERE sent_at IS NULL AND parked_at IS NULL)), 0)::float8
             FROM events_outbox WHERE sent_at IS NULL",
        )
        .fetch_one(&self.pool)
        .await?;
        metrics::outbox(&self.service, pending, parked, oldest);
        Ok(())
    }

    /// Runs until `stop` is cancelled (after a final flush) or the broker fails.
    /// Database errors are logged and retried here: they don't end the broker session.
    ///
    /// While rows keep coming it polls back to back, and for `LINGER` after the last it found
    /// every `BUSY_POLL`; only then does it announce itself as waiting (see [`Waiting`]), poll
    /// once more (a row committed before the announcement was visible to its producer sent no
    /// NOTIFY), and sleep until a NOTIFY, the poll interval, or `stop`. One narrow window remains: a producer whose commit-time check
    /// ran just before the announcement became visible but whose commit became visible just
    /// after that second poll; its rows wait for the fallback poll (at most `poll_interval`
    /// late, never lost).
    pub async fn run(self, stop: CancellationToken) -> Result<(), BusError> {
        let mut listener: Option<PgListener> = None;
        let mut waiting = Waiting::new(self.pool.clone());
        let mut last_cleanup = tokio::time::Instant::now();
        let mut last_report = tokio::time::Instant::now() - Duration::from_secs(60);
        let mut last_found = tokio::time::Instant::now() - LINGER;
        loop {
            if listener.is_none() {
                listener = listen(&self.pool).await;
            }
            let found = match self.publish_batch().await {
                Ok(n) => n,
                Err(BusError::Database(e)) => {
                    tracing::warn!(error = %e, "outbox relay: database unavailable, will retry");
                    // Back to the poll interval, not the busy poll.
                    last_found = tokio::time::Instant::now() - LINGER;
                    0
                }
                Err(e) => {
                    waiting.withdraw().await;
                    return Err(e);
                }
            };
            if found > 0 {
                // Busy: producers need not wake us, and each NOTIFY would cost them.
                waiting.withdraw().await;
            }
            if stop.is_cancelled() {
                waiting.withdraw().await;
                let _ = self.channel.close(200, "relay stopped".into()).await;
                return Ok(());
            }
            if last_report.elapsed() > Duration::from_secs(5) {
                last_report = tokio::time::Instant::now();
                let _ = self.report().await;
            }
            if last_cleanup.elapsed() > Duration::from_secs(60) {
                last_cleanup = tokio::time::Instant::now();
                if let Err(e) = self.cleanup().await {
                    tracing::warn!(error = %e, "outbox cleanup failed");
                }
            }
            if found > 0 {
                last_found = tokio::time::Instant::now();
                continue;
            }
            if last_found.elapsed() < LINGER {
                // Recently busy: poll again shortly instead of waiting for a NOTIFY. While no
                // relay waits, producers send none, and a NOTIFY makes every notifying commit
                // in the cluster queue behind one lock (with its fsync): at a steady trickle
                // that lock, not the work, set the background lag.
                tokio::select! {
                    _ = tokio::time::sleep(BUSY_POLL) => continue,
                    _ = stop.cancelled() => continue,
                }
            }
            if listener.is_some() && waiting.announce().await {
                // Newly announced: look once more before sleeping.
                continue;
            }
            // Sleep until a commit notifies us, the poll interval passes, or we are stopped.
            let wait = async {
                match listener.as_mut() {
                    Some(l) => {
                        match tokio::time::timeout(self.config.poll_interval, l.recv()).await {
                            Ok(Ok(_)) | Err(_) => true,
                            Ok(Err(_)) => false,
                        }
                    }
                    None => {
                        tokio::time::sleep(self.config.poll_interval).await;
                        true
                    }
                }
            };
            tokio::select! {
                ok = wait => if !ok {
                    listener = None;
                    waiting.withdraw().await;
                },
                _ = stop.cancelled() => {
                    // One last flush so a graceful stop leaves nothing that could have gone.
                    waiting.withdraw().await;
                    let _ = self.publish_batch().await;
                    let _ = self.channel.close(200, "relay stopped".into()).await;
                    return Ok(());
                }
            }
        }
    }

    /// Claims up to `batch_size` due rows, publishes them all, awaits their confirms, and
    /// records the outcome, in one transaction. Returns how many rows were claimed.
    pub async fn publish_batch(&self) -> Result<usize, BusError> {
        // Marking rows sent need not wait for the disk: if the database crashes before this
        // commit reaches it, the rows are published again and consumers' inboxes drop the
        // duplicates, exactly as when the relay itself dies between confirm and commit. The
        // producers' and consumers' commits, which carry the guarantees, stay synchronous.
        // (Sent with BEGIN: one round trip.)
        let mut tx = self
            .pool
            .begin_with("BEGIN; SET LOCAL synchronous_commit = off")
            .await?;
        let rows = sqlx::query(
            "SELECT seq, event_id, event_type, source, correlation_id, occurred_at, payload, attempts
             FROM events_outbox
             WHERE sent_at IS NULL AND parked_at IS NULL AND next_attempt_at <= now()
             ORDER BY seq
             LIMIT $1
             FOR UPDATE SKIP LOCKED",
        )
        .bind(self.config.batch_size)
        .fetch_all(&mut *tx)
        .await?;
        if rows.is_empty() {
            return Ok(0);
        }
        let rows: Vec<PendingRow> = rows
            .into_iter()
            .map(|r| PendingRow {
                seq: r.get(0),
                event_id: r.get(1),
                event_type: r.get(2),
                source: r.get(3),
                correlation_id: r.get(4),
                occurred_at: r.get(5),
                payload: r.get(6),
                attempts: r.get(7),
            })
            .collect();

        // Pipeline: send every message first, then collect the confirms.
        let mut confirms = Vec::with_capacity(rows.len());
        for row in &rows {
            let confirm = self
                .channel
                .basic_publish(
                    self.exchange.as_str().into(),
                    short(&row.event_type),
                    BasicPublishOptions {
                        mandatory: true,
                        ..Default::default()
                    },
                    row.payload.as_bytes(),
                    properties(row, self.user_id.as_deref()),
                )
                .await
                // The channel is gone: leave every row pending (the transaction rolls back)
                // and let the session reconnect. Nothing is marked sent without an ack.
                .map_err(BusError::Broker)?;
            confirms.push(confirm);
        }

        let mut sent = Vec::with_capacity(rows.len());
        let mut failed: Vec<(i64, String, bool)> = Vec::new();
        for (row, confirm) in rows.iter().zip(confirms) {
            let outcome = tokio::time::timeout(self.config.confirm_timeout, confirm).await;
            let error = match outcome {
                Ok(Ok(Confirmation::Ack(None))) | Ok(Ok(Confirmation::NotRequested)) => None,
                Ok(Ok(Confirmation::Ack(Some(returned)))) => Some(format!(
                    "unroutable: no queue is bound to {} on exchange {} ({})",
                    row.event_type, self.exchange, returned.reply_text
                )),
                Ok(Ok(Confirmation::Nack(_))) => Some("the broker nacked the message".into()),
                Ok(Err(e)) => return Err(BusError::Broker(e)),
                Err(_) => Some(format!(
                    "no confirm within {:?}",
                    self.config.confirm_timeout
                )),
            };
            match error {
                None => {
                    metrics::published(&self.service, &row.event_type);
                    sent.push(row.seq);
                }
                Some(e) => {
                    metrics::publish_failed(&self.service, &row.event_type);
                    let park = row.attempts + 1 >= self.config.max_attempts;
                    tracing::warn!(event_id = %row.event_id, event_type = %row.event_type,
                        attempts = row.attempts + 1, parked = park, error = %e, "outbox publish failed");
                    failed.push((row.seq, e, park));
                }
            }
        }

        // Fault tests: the broker has confirmed, and the process "dies" before recording it.
        fail::fail_point!("relay-after-confirm", |_| Err(BusError::Database(
            sqlx::Error::Protocol(
                "failpoint relay-after-confirm: rolled back after the broker's confirms".into()
            )
        )));
        if !sent.is_empty() {
            sqlx::query("UPDATE events_outbox SET sent_at = now(), attempts = attempts + 1 WHERE seq = ANY($1)")
                .bind(&sent)
                .execute(&mut *tx)
                .await?;
        }
        for (seq, error, park) in &failed {
            let attempts = rows
                .iter()
                .find(|r| r.seq == *seq)
                .map_or(1, |r| r.attempts + 1);
            let delay = row_backoff(attempts);
            sqlx::query(
                "UPDATE events_outbox
                 SET attempts = attempts + 1, last_error = $2,
                     next_attempt_at = now() + make_interval(secs => $3),
                     parked_at = CASE WHEN $4 THEN now() ELSE NULL END
                 WHERE seq = $1",
            )
            .bind(seq)
            .bind(error)
            .bind(delay.as_secs_f64())
            .bind(park)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        if !sent.is_empty() {
            tracing::debug!(count = sent.len(), "outbox rows published");
        }
        Ok(rows.len())
    }

    async fn cleanup(&self) -> Result<(), sqlx::Error> {
        let deleted = sqlx::query(
            "DELETE FROM events_outbox WHERE sent_at < now() - make_interval(secs => $1)",
        )
        .bind(self.config.retention.as_secs_f64())
        .execute(&self.pool)
        .await?
        .rows_affected();
        let inbox = sqlx::query(
            "DELETE FROM events_inbox WHERE processed_at < now() - make_interval(secs => $1)",
        )
        .bind(self.inbox_retention.as_secs_f64())
        .execute(&self.pool)
        .await?
        .rows_affected();
        // A relay that died while waiting left its row: producers would notify for nobody.
        sqlx::query(
            "DELETE FROM events_relay_waiting WHERE since < now() - make_interval(secs => $1)",
        )
        .bind(STALE_ANNOUNCEMENT.as_secs_f64())
        .execute(&self.pool)
        .await?;
        if deleted + inbox > 0 {
            tracing::info!(
                outbox = deleted,
                inbox,
                "cleaned up sent outbox and old inbox rows"
            );
        }
        Ok(())
    }
}

/// After finding rows, a relay keeps polling every `BUSY_POLL` for this long before it waits
/// for a NOTIFY.
const LINGER: Duration = Duration::from_secs(2);
const BUSY_POLL: Duration = Duration::from_millis(5);

/// A waiting relay renews its announcement this often, so a truncated table (the unlogged table
/// after a database crash) or another replica's cleanup costs it at most this long of fallback
/// polling.
const RENEW_ANNOUNCEMENT: Duration = Duration::from_secs(10);
/// Announcements older than this belong to relays that died while waiting.
const STALE_ANNOUNCEMENT: Duration = Duration::from_secs(300);

/// This relay's row in `events_relay_waiting`: present while it waits for a NOTIFY, absent
/// while it is busy. The outbox trigger sends a NOTIFY only while some relay's row is present,
/// because NOTIFY serialises the commits of every producer (migration 2 has the figures).
struct Waiting {
    pool: PgPool,
    id: Uuid,
    announced: Option<tokio::time::Instant>,
}

impl Waiting {
    fn new(pool: PgPool) -> Self {
        Waiting {
            pool,
            id: Uuid::now_v7(),
            announced: None,
        }
    }

    /// Announces (or renews) this relay as waiting. `true` when it was not announced before,
    /// so the caller polls once more before sleeping; `false` when it already was, or when the
    /// database refused (then the fallback poll interval is what wakes it).
    async fn announce(&mut self) -> bool {
        if self
            .announced
            .is_some_and(|at| at.elapsed() < RENEW_ANNOUNCEMENT)
        {
            return false;
        }
        let result = sqlx::query(
            "INSERT INTO events_relay_waiting (relay) VALUES ($1)
             ON CONFLICT (relay) DO UPDATE SET since = now()",
        )
        .bind(self.id)
        .execute(&self.pool)
        .await;
        match result {
            Ok(_) => {
                let first = self.announced.is_none();
                self.announced = Some(tokio::time::Instant::now());
                first
            }
            Err(e) => {
                tracing::debug!(error = %e, "outbox relay: could not announce itself as waiting");
                self.announced = None;
                false
            }
        }
    }

    async fn withdraw(&mut self) {
        if self.announced.take().is_some() {
            // Best effort: a row left behind only costs producers needless NOTIFYs until the
            // next cleanup.
            let _ = sqlx::query("DELETE FROM events_relay_waiting WHERE relay = $1")
                .bind(self.id)
                .execute(&self.pool)
                .await;
        }
    }
}

async fn listen(pool: &PgPool) -> Option<PgListener> {
    let mut l = PgListener::connect_with(pool).await.ok()?;
    l.listen(NOTIFY_CHANNEL).await.ok()?;
    Some(l)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_caps() {
        assert_eq!(row_backoff(1), Duration::from_secs(1));
        assert_eq!(row_backoff(3), Duration::from_secs(4));
        assert_eq!(row_backoff(50), Duration::from_secs(256));
    }

    #[test]
    fn short_strings_never_panic() {
        let long = "é".repeat(300);
        assert!(short(&long).as_str().len() <= 255);
    }
}
