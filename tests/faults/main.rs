//! Fault tests: a stream of checkouts through the whole shop while something breaks (the
//! broker restarts, a consumer is SIGKILLed, a database goes away, the relay dies between the
//! broker's confirm and marking the row sent, poison and malformed messages arrive), each
//! ending with the conservation check of `e2e::workload`.
//!
//! Some of them stop the broker, so the tests of this binary never overlap: each holds
//! [`serial`] from start to end. (Cargo runs test binaries one after another, so the e2e
//! binary never overlaps this one.)

mod backlog;
mod broker_down_at_start;
mod broker_restart;
mod consumer_killed;
mod database_outage;
mod malformed;
mod poison;
mod relay_duplicate;
mod replica_killed;

use std::time::Duration;

use e2e::workload::Workload;
use tokio::sync::{Mutex, MutexGuard};

/// Checkouts each fault test places.
pub const CHECKOUTS: usize = 240;

static LOCK: Mutex<()> = Mutex::const_new(());

/// Held for a whole test: no two fault tests run at once.
pub async fn serial() -> MutexGuard<'static, ()> {
    LOCK.lock().await
}

/// Waits until `workload` has placed at least `n` checkouts (the fault strikes mid-stream).
pub async fn placed_at_least(workload: &Workload, n: usize) {
    shop::wait::until(
        &format!("{n} checkouts to be placed"),
        Duration::from_secs(60),
        Duration::from_millis(10),
        || async move { (workload.placed() >= n).then_some(()) },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
}

/// Waits until `check` holds (at most 60 s); panics naming `what` otherwise.
pub async fn wait<T, F, Fut>(what: &str, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    shop::wait::until(
        what,
        Duration::from_secs(60),
        Duration::from_millis(100),
        check,
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"))
}

/// Rows of a service's outbox not sent yet.
pub async fn unsent(db: &sqlx::PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM events_outbox WHERE sent_at IS NULL")
        .fetch_one(db)
        .await
        .expect("counting unsent outbox rows")
}
