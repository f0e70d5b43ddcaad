//! What the bus reports to `/readyz`: each step of a broker session, as it happens.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

#[derive(Debug, Default)]
pub struct BusHealth {
    connected: AtomicBool,
    consuming: AtomicBool,
    /// Whether this bus has consumers at all (a publish-only bus is ready without them).
    has_consumers: AtomicBool,
    last_error: Mutex<Option<String>>,
    counters: Counters,
    /// Set when the bus gave up for good (the broker refuses our topology).
    fatal: Mutex<Option<String>>,
    fatal_notify: tokio::sync::Notify,
}

/// What the consumer did with deliveries since start (per process).
#[derive(Debug, Default)]
pub struct Counters {
    pub applied: AtomicU64,
    pub duplicates: AtomicU64,
    pub retried: AtomicU64,
    pub dead_lettered: AtomicU64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct CountersSnapshot {
    pub applied: u64,
    pub duplicates: u64,
    pub retried: u64,
    pub dead_lettered: u64,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct BusStatus {
    pub broker_connected: bool,
    pub consumers_running: bool,
    pub last_error: Option<String>,
}

impl BusStatus {
    pub fn ready(&self) -> bool {
        self.broker_connected && self.consumers_running
    }
}

impl BusHealth {
    pub fn set_has_consumers(&self, v: bool) {
        self.has_consumers.store(v, Ordering::SeqCst);
    }
    pub(crate) fn set_connected(&self, v: bool) {
        self.connected.store(v, Ordering::SeqCst);
        if !v {
            self.consuming.store(false, Ordering::SeqCst);
        }
    }
    pub(crate) fn set_consuming(&self, v: bool) {
        self.consuming.store(v, Ordering::SeqCst);
    }
    pub fn set_error(&self, e: Option<String>) {
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = e;
    }

    pub(crate) fn set_fatal(&self, error: String) {
        *self.fatal.lock().unwrap_or_else(|p| p.into_inner()) = Some(error);
        self.fatal_notify.notify_waiters();
    }

    /// Resolves with the reason once the bus has stopped for good (never, normally).
    pub async fn fatal(&self) -> String {
        loop {
            let notified = self.fatal_notify.notified();
            if let Some(e) = self.fatal.lock().unwrap_or_else(|p| p.into_inner()).clone() {
                return e;
            }
            notified.await;
        }
    }

    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    pub fn snapshot(&self) -> CountersSnapshot {
        let c = &self.counters;
        CountersSnapshot {
            applied: c.applied.load(Ordering::Relaxed),
            duplicates: c.duplicates.load(Ordering::Relaxed),
            retried: c.retried.load(Ordering::Relaxed),
            dead_lettered: c.dead_lettered.load(Ordering::Relaxed),
        }
    }

    pub fn status(&self) -> BusStatus {
        let connected = self.connected.load(Ordering::SeqCst);
        BusStatus {
            broker_connected: connected,
            consumers_running: connected
                && (!self.has_consumers.load(Ordering::SeqCst)
                    || self.consuming.load(Ordering::SeqCst)),
            last_error: self
                .last_error
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        }
    }
}
