//! The relay "dies" after the broker confirmed a batch and before marking its rows sent (the
//! fail point `relay-after-confirm` rolls the batch back): the rows stay pending and are
//! published again, every consumer receives duplicates and applies each event once.

use e2e::Which;
use e2e::fault_shop::FaultShop;
use e2e::workload::{Expect, Workload};
use uuid::Uuid;

use crate::{CHECKOUTS, serial, wait};

/// Checkouts placed while the fail point is on (each of their events is published again and
/// again until it is off, so keep it small).
const WHILE_FAILING: usize = 40;

/// Sets a fail point for as long as it lives (removed even when the test fails).
struct FailPoint(&'static str);

impl FailPoint {
    fn set(name: &'static str, actions: &str) -> FailPoint {
        fail::cfg(name, actions).unwrap_or_else(|e| panic!("fail point {name}: {e}"));
        FailPoint(name)
    }
}

impl Drop for FailPoint {
    fn drop(&mut self) {
        fail::remove(self.0);
    }
}

async fn count(db: &sqlx::PgPool, sql: &str, ids: &[Uuid]) -> i64 {
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
        .bind(ids)
        .fetch_one(db)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_confirmed_but_not_marked_sent_is_applied_once() {
    let _serial = serial().await;
    let mut shop = FaultShop::new();
    shop.start_all().await;
    let client = shop.client();
    let work = Workload::new(CHECKOUTS);
    work.setup(&client).await;
    let first = (CHECKOUTS - WHILE_FAILING) / 2;
    let failing = first..first + WHILE_FAILING;
    work.place(&client, 0..first).await;

    let failpoint = FailPoint::set("relay-after-confirm", "return");
    work.place(&client, failing.clone()).await;
    let orders: Vec<Uuid> = work.order_ids(failing.clone());
    let subjects: Vec<String> = orders.iter().map(Uuid::to_string).collect();
    let events: Vec<Uuid> = sqlx::query_scalar(
        "SELECT event_id FROM events_outbox WHERE event_type = 'checkout.completed.v1' AND subject = ANY($1)",
    )
    .bind(&subjects)
    .fetch_all(shop.db(Which::Checkout))
    .await
    .expect("reading checkout's outbox");
    assert_eq!(events.len(), WHILE_FAILING);

    // Cart and inventory applied each of them (the broker had them), yet checkout's outbox
    // still holds them all unsent; and every consumer has been handed copies.
    let health: Vec<_> = Which::ALL
        .iter()
        .map(|w| shop.health(*w).expect("in this process"))
        .collect();
    let events = &events;
    let health = &health;
    let shop_ref = &shop;
    wait(
        "cart and inventory to apply the events, and every consumer to see duplicates",
        || async move {
            for which in [Which::Cart, Which::Inventory] {
                let applied = count(
                    shop_ref.db(which),
                    "SELECT count(*) FROM events_inbox WHERE event_id = ANY($1)",
                    events,
                )
                .await;
                if applied != WHILE_FAILING as i64 {
                    return None;
                }
            }
            health
                .iter()
                .all(|h| h.snapshot().duplicates > 0)
                .then_some(())
        },
    )
    .await;
    assert_eq!(
        count(
            shop.db(Which::Checkout),
            "SELECT count(*) FROM events_outbox WHERE sent_at IS NULL AND event_id = ANY($1)",
            events,
        )
        .await,
        WHILE_FAILING as i64,
        "rows published but never marked sent"
    );
    for which in [Which::Cart, Which::Inventory] {
        assert_eq!(
            count(
                shop.db(which),
                "SELECT count(*) FROM events_inbox WHERE event_id = ANY($1)",
                events
            )
            .await,
            WHILE_FAILING as i64,
            "{}'s inbox",
            which.name()
        );
    }
    drop(failpoint);

    work.place(&client, first + WHILE_FAILING..CHECKOUTS).await;
    let figures = work.check(&shop, &Expect::clean()).await;
    for which in Which::ALL {
        assert!(
            shop.counters(which).duplicates > 0,
            "{} saw no duplicate",
            which.name()
        );
    }
    eprintln!("relay died after confirm: {figures}");
    shop.finish().await;
}
