use thiserror::Error;

/// Why a broker session ended or a bus operation failed.
#[derive(Debug, Error)]
pub enum BusError {
    #[error("broker: {0}")]
    Broker(#[from] lapin::Error),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("the broker refused to declare {what}: {reason}")]
    Topology { what: String, reason: String },
}
