use thiserror::Error;

/// Why a broker session ended or a bus operation failed.
#[derive(Debug, Error)]
pub enum BusError {
    #[error("broker: {0}")]
    Broker(#[from] lapin::Error),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// Fatal: the service stops (see `Bus::supervise`).
    #[error("the broker refused to declare {what}: {reason}")]
    Topology { what: String, reason: String },
    /// A part of the session (consumer, relay, a republish) ended or failed in a way the
    /// broker may get over (a cancelled consumer, a nacked or unconfirmed copy, a panicked
    /// task): the session is rebuilt with backoff.
    #[error("broker session interrupted: {0}")]
    Interrupted(String),
}
