//! Events published by the checkout service.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::Event;

/// A checkout was paid: the order exists and its money is taken.
///
/// ```json
/// {"order_id": "0193a5b0-7e1c-7a3e-9f00-1234567890ab", "cart_id": "536365", "customer_id": "17850",
///  "lines": [{"sku": "85123A", "quantity": 6, "unit_price_cents": 255}],
///  "total_cents": 1530, "currency": "GBP", "paid_at": "2026-12-03T10:00:00Z"}
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckoutCompleted {
    pub order_id: Uuid,
    pub cart_id: String,
    pub customer_id: Option<String>,
    pub lines: Vec<OrderLine>,
    pub total_cents: i64,
    pub currency: String,
    pub paid_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrderLine {
    pub sku: String,
    pub quantity: i64,
    pub unit_price_cents: i64,
}

impl Event for CheckoutCompleted {
    const TYPE: &'static str = "checkout.completed.v1";
    fn subject(&self) -> String {
        self.order_id.to_string()
    }
}

impl CheckoutCompleted {
    /// A sale takes units out of carts and stock: a quantity ≤ 0 would put them back in (and
    /// `-i64::MIN` overflows). Such an event is invalid for every consumer, which refuses it
    /// (dead-letters it) before touching anything.
    pub fn check_quantities(&self) -> Result<(), crate::HandlerError> {
        match self.lines.iter().find(|l| l.quantity <= 0) {
            Some(line) => Err(crate::HandlerError::permanent(anyhow::anyhow!(
                "order {} has a non-positive quantity {} of sku {}",
                self.order_id,
                line.quantity,
                line.sku
            ))),
            None => Ok(()),
        }
    }
}
