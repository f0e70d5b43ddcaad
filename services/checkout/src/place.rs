//! Placing an order: reserve, charge, record, publish — all or nothing.

use std::collections::BTreeMap;

use chrono::{SubsecRound, Utc};
use events::contracts::{CheckoutCompleted, OrderLine};
use uuid::Uuid;

use crate::payment::PaymentOutcome;
use crate::store::{self, Order, OrderLineView};
use crate::{AppState, CURRENCY};

/// A checkout request that passed validation.
#[derive(Debug, Clone)]
pub struct CheckoutRequest {
    pub cart_id: String,
    pub customer_id: Option<String>,
    /// (position in the request, sku, quantity); a sku appears once (merged).
    pub lines: Vec<(usize, String, i64)>,
    pub payment_token: String,
}

/// What a checkout produced: a new order, or the stored answer to an earlier request with the
/// same Idempotency-Key.
#[derive(Debug)]
pub enum Placed {
    New(Order),
    Replayed {
        status: u16,
        body: serde_json::Value,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum CheckoutError {
    #[error("the Idempotency-Key was used before with a different request")]
    KeyReused,
    #[error("unknown sku {sku}")]
    UnknownSku { index: usize, sku: String },
    #[error("sku {sku}: {wanted} wanted, {available} available")]
    OutOfStock {
        index: usize,
        sku: String,
        wanted: i64,
        available: i64,
    },
    #[error("the order total overflows")]
    TotalOverflow,
    #[error("payment declined: {0}")]
    Declined(String),
    #[error("payment gateway: {0:#}")]
    Gateway(anyhow::Error),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

impl CheckoutRequest {
    /// A digest of everything that defines the request, to tell a retry from a different
    /// request reusing an Idempotency-Key.
    pub fn fingerprint(&self) -> String {
        use sha2::{Digest, Sha256};
        let canonical = serde_json::json!({
            "cart_id": self.cart_id,
            "customer_id": self.customer_id,
            "lines": self.lines.iter().map(|(_, sku, q)| (sku, q)).collect::<Vec<_>>(),
            "payment_token": self.payment_token,
        });
        let digest = Sha256::digest(canonical.to_string().as_bytes());
        digest.iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// Merges lines of the same sku, keeping the position of its first occurrence.
pub fn merge_lines(lines: impl IntoIterator<Item = (String, i64)>) -> Vec<(usize, String, i64)> {
    let mut merged: BTreeMap<String, (usize, i64)> = BTreeMap::new();
    for (index, (sku, quantity)) in lines.into_iter().enumerate() {
        let entry = merged.entry(sku).or_insert((index, 0));
        entry.1 = entry.1.saturating_add(quantity);
    }
    merged
        .into_iter()
        .map(|(sku, (index, q))| (index, sku, q))
        .collect()
}

/// In one transaction: reserve every line against the availability ledger (in sku order, so
/// concurrent checkouts can't deadlock), charge, store the order and its event. A refusal at
/// any step rolls everything back: nothing is reserved and nothing is published.
pub async fn place_order(
    state: &AppState,
    req: CheckoutRequest,
    idempotency_key: Option<&str>,
) -> Result<Placed, CheckoutError> {
    let order_id = Uuid::now_v7();
    let mut tx = state.pool.begin().await?;
    if let Some(key) = idempotency_key {
        // Waits while another request with this key is in flight; then either we own the key
        // or we answer what the first request answered.
        let hash = req.fingerprint();
        let claimed = sqlx::query("INSERT INTO idempotency_keys (key, request_hash) VALUES ($1, $2) ON CONFLICT DO NOTHING")
            .bind(key)
            .bind(&hash)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if claimed == 0 {
            let (stored_hash, status, body): (String, Option<i16>, Option<serde_json::Value>) =
                sqlx::query_as("SELECT request_hash, response_status, response_body FROM idempotency_keys WHERE key = $1")
                    .bind(key)
                    .fetch_one(&mut *tx)
                    .await?;
            if stored_hash != hash {
                return Err(CheckoutError::KeyReused);
            }
            return Ok(Placed::Replayed {
                status: status.map_or(201, |s| s as u16),
                body: body.unwrap_or(serde_json::Value::Null),
            });
        }
    }
    let mut lines = Vec::with_capacity(req.lines.len());
    let mut total: i64 = 0;
    for (index, sku, quantity) in &req.lines {
        let Some(price) = store::reserve(&mut tx, sku, *quantity).await? else {
            return Err(match store::catalogue_entry(&mut tx, sku).await? {
                Some(e) if e.unit_price_cents.is_some() => CheckoutError::OutOfStock {
                    index: *index,
                    sku: sku.clone(),
                    wanted: *quantity,
                    available: e.available.max(0),
                },
                _ => CheckoutError::UnknownSku {
                    index: *index,
                    sku: sku.clone(),
                },
            });
        };
        total = quantity
            .checked_mul(price)
            .and_then(|t| t.checked_add(total))
            .ok_or(CheckoutError::TotalOverflow)?;
        lines.push(OrderLineView {
            sku: sku.clone(),
            quantity: *quantity,
            unit_price_cents: price,
        });
    }

    let payment_id = match state
        .payments
        .charge(&req.payment_token, total, CURRENCY, &order_id.to_string())
        .await
        .map_err(CheckoutError::Gateway)?
    {
        PaymentOutcome::Approved { payment_id } => payment_id,
        PaymentOutcome::Declined { reason } => return Err(CheckoutError::Declined(reason)),
    };

    let order = Order {
        order_id,
        cart_id: req.cart_id,
        customer_id: req.customer_id,
        status: "paid".into(),
        total_cents: total,
        currency: CURRENCY.into(),
        lines,
        // Microseconds: what PostgreSQL keeps, so the 201, the event and GET agree.
        paid_at: Utc::now().trunc_subsecs(6),
        cart_updated: false,
        inventory_updated: false,
        cart_updated_at: None,
        inventory_updated_at: None,
    };
    store::insert_order(&mut tx, &order, &payment_id).await?;
    let event = CheckoutCompleted {
        order_id,
        cart_id: order.cart_id.clone(),
        customer_id: order.customer_id.clone(),
        lines: order
            .lines
            .iter()
            .map(|l| OrderLine {
                sku: l.sku.clone(),
                quantity: l.quantity,
                unit_price_cents: l.unit_price_cents,
            })
            .collect(),
        total_cents: total,
        currency: order.currency.clone(),
        paid_at: order.paid_at,
    };
    state.outbox.publish(&mut tx, event).await?;
    if let Some(key) = idempotency_key {
        let body = serde_json::to_value(&order)
            .map_err(|e| CheckoutError::Database(sqlx::Error::Encode(Box::new(e))))?;
        sqlx::query(
            "UPDATE idempotency_keys SET response_status = 201, response_body = $2 WHERE key = $1",
        )
        .bind(key)
        .bind(body)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    tracing::info!(%order_id, total_cents = total, "order paid");
    // A committed order whose payment succeeded. If the commit had failed after the charge,
    // a real gateway would need a void here: the fake has nothing to void.
    Ok(Placed::New(order))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_sums_repeated_skus_and_keeps_first_position() {
        let merged = merge_lines([
            ("B".to_string(), 1),
            ("A".to_string(), 2),
            ("B".to_string(), 3),
        ]);
        assert_eq!(
            merged,
            vec![(1, "A".to_string(), 2), (0, "B".to_string(), 4)]
        );
    }
}
