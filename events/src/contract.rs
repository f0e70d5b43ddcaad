//! What makes a Rust type an event contract.

use serde::{Serialize, de::DeserializeOwned};

/// A versioned integration event. `TYPE` is both the CloudEvents `type` and the routing key,
/// and ends in its major version (`.v1`): a breaking change is a new type, published beside
/// the old one until every consumer has moved.
pub trait Event: Serialize + DeserializeOwned + Send + Sync + 'static {
    const TYPE: &'static str;
    /// The aggregate the event is about (CloudEvents `subject`): a sku, an order id, a cart id.
    fn subject(&self) -> String;
}
