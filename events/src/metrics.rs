//! The bus's Prometheus metrics, named in one place. Recorded through the `metrics` facade:
//! whoever installs a recorder (kit's `/metrics`) exports them; without one they cost nothing.

use std::time::Duration;

use metrics::{counter, gauge, histogram};

/// Events the relay published and the broker confirmed.
pub(crate) fn published(service: &str, event_type: &str) {
    counter!("events_published_total", "service" => service.to_string(), "type" => event_type.to_string()).increment(1);
}

/// Publishes the broker refused (nack, unroutable, no confirm in time).
pub(crate) fn publish_failed(service: &str, event_type: &str) {
    counter!("events_publish_failures_total", "service" => service.to_string(), "type" => event_type.to_string()).increment(1);
}

/// Deliveries by outcome: applied, duplicate, retried, held (database down), dead_lettered.
/// `event_type` is "unknown" for types without a handler, so hostile input can't create series.
pub(crate) fn consumed(service: &str, event_type: &str, outcome: &'static str) {
    counter!("events_consumed_total", "service" => service.to_string(), "type" => event_type.to_string(), "outcome" => outcome)
        .increment(1);
}

pub(crate) fn dead_lettered(service: &str, reason: &str) {
    counter!("events_dead_lettered_total", "service" => service.to_string(), "reason" => reason.to_string()).increment(1);
}

/// Time from taking a delivery to its commit (inbox + handler), applied ones only.
pub(crate) fn handler_duration(service: &str, event_type: &str, elapsed: Duration) {
    histogram!("events_handler_duration_seconds", "service" => service.to_string(), "type" => event_type.to_string())
        .record(elapsed.as_secs_f64());
}

pub(crate) fn outbox(service: &str, pending: i64, parked: i64, oldest_pending: f64) {
    gauge!("events_outbox_pending", "service" => service.to_string()).set(pending as f64);
    gauge!("events_outbox_parked", "service" => service.to_string()).set(parked as f64);
    gauge!("events_outbox_oldest_pending_seconds", "service" => service.to_string())
        .set(oldest_pending);
}

pub(crate) fn broker_connected(service: &str, connected: bool) {
    gauge!("events_broker_connected", "service" => service.to_string()).set(if connected {
        1.0
    } else {
        0.0
    });
}
