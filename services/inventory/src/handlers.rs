//! Inventory's reactions to other services' events.

use anyhow::anyhow;
use async_trait::async_trait;
use events::contracts::{AppliedLine, CheckoutCompleted, OrderApplied, StockChangeReason};
use events::{Context, Envelope, Handler, HandlerError};

use crate::store;

/// A paid order: take its units out of stock, publish one `stock_changed` per line and an
/// `order_applied` for the order.
pub struct CheckoutCompletedHandler;

#[async_trait]
impl Handler<CheckoutCompleted> for CheckoutCompletedHandler {
    async fn handle(
        &self,
        ctx: &mut Context<'_>,
        event: Envelope<CheckoutCompleted>,
    ) -> Result<(), HandlerError> {
        let order = event.data;
        order.check_quantities()?;
        let mut lines = order.lines.clone();
        // A fixed lock order: two orders touching the same skus can't deadlock.
        lines.sort_by(|a, b| a.sku.cmp(&b.sku));
        let mut applied = Vec::with_capacity(lines.len());
        for line in &lines {
            // Positive, so its negation can't overflow; checked all the same.
            let delta = line.quantity.checked_neg().ok_or_else(|| {
                HandlerError::permanent(anyhow!(
                    "order {}: quantity {} of sku {} is out of range",
                    order.order_id,
                    line.quantity,
                    line.sku
                ))
            })?;
            let changed = store::change_stock(
                ctx.tx,
                &line.sku,
                delta,
                StockChangeReason::Sale,
                Some(order.order_id),
            )
            .await?
            .ok_or_else(|| {
                HandlerError::permanent(anyhow!(
                    "order {} sells unknown sku {}",
                    order.order_id,
                    line.sku
                ))
            })?;
            applied.push(AppliedLine {
                sku: line.sku.clone(),
                quantity: line.quantity,
                stock_after: changed.stock,
            });
            ctx.publish(changed).await?;
        }
        ctx.publish(OrderApplied {
            order_id: order.order_id,
            lines: applied,
        })
        .await?;
        Ok(())
    }
}
