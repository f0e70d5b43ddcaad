//! Events published by the inventory service.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::Event;

/// A product entered the catalogue.
///
/// ```json
/// {"sku": "85123A", "name": "WHITE HANGING HEART T-LIGHT HOLDER", "unit_price_cents": 255, "stock": 100}
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProductRegistered {
    pub sku: String,
    pub name: String,
    pub unit_price_cents: i64,
    pub stock: i64,
}

impl Event for ProductRegistered {
    const TYPE: &'static str = "inventory.product_registered.v1";
    fn subject(&self) -> String {
        self.sku.clone()
    }
}

/// Why a product's stock changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StockChangeReason {
    Registered,
    Restock,
    Sale,
    Adjustment,
}

/// A product's stock changed. `version` counts the changes of this sku (1 = registered), so a
/// consumer can tell a stale or reordered event from a newer one and never go backwards.
///
/// ```json
/// {"sku": "85123A", "stock": 94, "delta": -6, "reason": "sale",
///  "order_id": "0193a5b0-7e1c-7a3e-9f00-1234567890ab", "version": 2}
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StockChanged {
    pub sku: String,
    /// The stock after the change.
    pub stock: i64,
    pub delta: i64,
    pub reason: StockChangeReason,
    /// The order that sold the units, for a sale.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order_id: Option<Uuid>,
    pub version: i64,
}

impl Event for StockChanged {
    const TYPE: &'static str = "inventory.stock_changed.v1";
    fn subject(&self) -> String {
        self.sku.clone()
    }
}

/// Inventory took a paid order's units out of stock.
///
/// ```json
/// {"order_id": "0193a5b0-7e1c-7a3e-9f00-1234567890ab",
///  "lines": [{"sku": "85123A", "quantity": 6, "stock_after": 94}]}
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrderApplied {
    pub order_id: Uuid,
    pub lines: Vec<AppliedLine>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppliedLine {
    pub sku: String,
    pub quantity: i64,
    pub stock_after: i64,
}

impl Event for OrderApplied {
    const TYPE: &'static str = "inventory.order_applied.v1";
    fn subject(&self) -> String {
        self.order_id.to_string()
    }
}
