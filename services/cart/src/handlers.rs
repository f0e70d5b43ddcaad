//! Cart's reactions to other services' events.

use async_trait::async_trait;
use events::contracts::{CartCheckedOut, CheckoutCompleted, RemovedItem};
use events::{Context, Envelope, Handler, HandlerError};

use crate::store;

/// A paid order: remove the bought quantities from its cart and say what was removed.
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
        let mut lines = order.lines;
        lines.sort_by(|a, b| a.sku.cmp(&b.sku));
        let mut removed = Vec::new();
        for line in lines {
            let taken = store::take(ctx.tx, &order.cart_id, &line.sku, line.quantity).await?;
            if taken > 0 {
                removed.push(RemovedItem {
                    sku: line.sku,
                    quantity: taken,
                });
            }
        }
        ctx.publish(CartCheckedOut {
            cart_id: order.cart_id,
            order_id: order.order_id,
            removed,
        })
        .await?;
        Ok(())
    }
}
