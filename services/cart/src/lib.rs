//! Cart: holds what customers intend to buy, and removes what they bought once
//! `checkout.completed` arrives.

mod handlers;
mod http;
mod store;

use events::contracts::CheckoutCompleted;
use events::{Outbox, Subscriber};
use sqlx::PgPool;

pub use store::{Cart, Item};

pub struct CartService;

impl kit::Service for CartService {
    const NAME: &'static str = "cart";

    fn migrator() -> sqlx::migrate::Migrator {
        sqlx::migrate!("./migrations")
    }

    fn build(pool: PgPool, _outbox: Outbox) -> kit::Parts {
        kit::Parts {
            routes: http::routes(pool),
            subscriber: Some(
                Subscriber::new(Self::NAME)
                    .on::<CheckoutCompleted, _>(handlers::CheckoutCompletedHandler),
            ),
        }
    }
}
