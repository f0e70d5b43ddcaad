//! Inventory: owns products and stock. Registers products, restocks, and takes paid orders'
//! units out of stock when `checkout.completed` arrives.

mod handlers;
mod http;
mod store;

use events::contracts::CheckoutCompleted;
use events::{Outbox, Subscriber};
use sqlx::PgPool;

pub use store::Product;

pub struct Inventory;

#[derive(Clone)]
pub(crate) struct AppState {
    pub pool: PgPool,
    pub outbox: Outbox,
}

impl kit::Service for Inventory {
    const NAME: &'static str = "inventory";

    fn migrator() -> sqlx::migrate::Migrator {
        sqlx::migrate!("./migrations")
    }

    fn build(pool: PgPool, outbox: Outbox) -> kit::Parts {
        let state = AppState { pool, outbox };
        kit::Parts {
            routes: http::routes(state),
            subscriber: Some(
                Subscriber::new(Self::NAME)
                    .on::<CheckoutCompleted, _>(handlers::CheckoutCompletedHandler),
            ),
        }
    }
}
