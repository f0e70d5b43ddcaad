//! Checkout: prices carts from its own replica of the catalogue, takes the payment, and
//! records the paid order with its `checkout.completed` event in one transaction. It follows
//! the order's background effects through cart's and inventory's events.

mod handlers;
mod http;
pub use http::MAX_LINES;
pub mod payment;
mod place;
mod store;

use std::sync::Arc;

use events::contracts::{CartCheckedOut, OrderApplied, ProductRegistered, StockChanged};
use events::{Outbox, Subscriber};
use sqlx::PgPool;

pub use payment::{FakeGateway, PaymentGateway, PaymentOutcome};
pub use store::{CatalogueEntry, Order, OrderLineView};

/// The currency every price is in.
pub const CURRENCY: &str = "GBP";

pub struct Checkout;

#[derive(Clone)]
pub(crate) struct AppState {
    pub pool: PgPool,
    pub outbox: Outbox,
    pub payments: Arc<dyn PaymentGateway>,
}

impl kit::Service for Checkout {
    const NAME: &'static str = "checkout";

    fn migrator() -> sqlx::migrate::Migrator {
        sqlx::migrate!("./migrations")
    }

    fn build(pool: PgPool, outbox: Outbox) -> kit::Parts {
        let state = AppState {
            pool,
            outbox,
            payments: Arc::new(FakeGateway),
        };
        kit::Parts {
            routes: http::routes(state),
            subscriber: Some(
                Subscriber::new(Self::NAME)
                    .on::<ProductRegistered, _>(handlers::ProductRegisteredHandler)
                    .on::<StockChanged, _>(handlers::StockChangedHandler)
                    .on::<CartCheckedOut, _>(handlers::CartCheckedOutHandler)
                    .on::<OrderApplied, _>(handlers::OrderAppliedHandler),
            ),
        }
    }
}
