//! Events published by the cart service.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::Event;

/// Cart removed a paid order's items. `removed` is what was actually taken out: an item the
/// customer had already removed, or reduced, is taken out only as far as it was still there.
///
/// ```json
/// {"cart_id": "536365", "order_id": "0193a5b0-7e1c-7a3e-9f00-1234567890ab",
///  "removed": [{"sku": "85123A", "quantity": 6}, {"sku": "71053", "quantity": 6}]}
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CartCheckedOut {
    pub cart_id: String,
    pub order_id: Uuid,
    pub removed: Vec<RemovedItem>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemovedItem {
    pub sku: String,
    pub quantity: i64,
}

impl Event for CartCheckedOut {
    const TYPE: &'static str = "cart.checked_out.v1";
    fn subject(&self) -> String {
        self.cart_id.clone()
    }
}
