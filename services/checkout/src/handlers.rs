//! Checkout's reactions to inventory's and cart's events.

use anyhow::anyhow;
use async_trait::async_trait;
use events::contracts::{
    CartCheckedOut, OrderApplied, ProductRegistered, StockChangeReason, StockChanged,
};
use events::{Context, Envelope, Handler, HandlerError};

use crate::store::{self, Effect};

/// Keeps the catalogue replica's names and prices.
pub struct ProductRegisteredHandler;

#[async_trait]
impl Handler<ProductRegistered> for ProductRegisteredHandler {
    async fn handle(
        &self,
        ctx: &mut Context<'_>,
        event: Envelope<ProductRegistered>,
    ) -> Result<(), HandlerError> {
        let p = event.data;
        store::upsert_product(ctx.tx, &p.sku, &p.name, p.unit_price_cents).await?;
        Ok(())
    }
}

/// Keeps the replica's stock (newest version wins) and releases the reservation of the sale
/// that caused the change, in one transaction.
pub struct StockChangedHandler;

#[async_trait]
impl Handler<StockChanged> for StockChangedHandler {
    async fn handle(
        &self,
        ctx: &mut Context<'_>,
        event: Envelope<StockChanged>,
    ) -> Result<(), HandlerError> {
        let s = event.data;
        store::apply_stock(ctx.tx, &s.sku, s.stock, s.version).await?;
        if let (StockChangeReason::Sale, Some(order_id)) = (s.reason, s.order_id) {
            store::release_reservation(ctx.tx, order_id, &s.sku).await?;
        }
        Ok(())
    }
}

pub struct CartCheckedOutHandler;

#[async_trait]
impl Handler<CartCheckedOut> for CartCheckedOutHandler {
    async fn handle(
        &self,
        ctx: &mut Context<'_>,
        event: Envelope<CartCheckedOut>,
    ) -> Result<(), HandlerError> {
        let order_id = event.data.order_id;
        if !store::mark_effect(ctx.tx, order_id, Effect::Cart).await? {
            return Err(HandlerError::permanent(anyhow!(
                "cart.checked_out for unknown order {order_id}"
            )));
        }
        Ok(())
    }
}

pub struct OrderAppliedHandler;

#[async_trait]
impl Handler<OrderApplied> for OrderAppliedHandler {
    async fn handle(
        &self,
        ctx: &mut Context<'_>,
        event: Envelope<OrderApplied>,
    ) -> Result<(), HandlerError> {
        let order_id = event.data.order_id;
        if !store::mark_effect(ctx.tx, order_id, Effect::Inventory).await? {
            return Err(HandlerError::permanent(anyhow!(
                "inventory.order_applied for unknown order {order_id}"
            )));
        }
        Ok(())
    }
}
