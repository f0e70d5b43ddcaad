//! A backlog queued while a consumer is down is all applied when it starts: cart is stopped,
//! every checkout waits in its queue, then cart starts again and applies them all.

use e2e::Which;
use e2e::fault_shop::FaultShop;
use e2e::workload::{Expect, Workload};
use events::topology::QueueNames;

use crate::{CHECKOUTS, serial, wait};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_queued_while_a_consumer_is_down_is_applied_when_it_starts() {
    let _serial = serial().await;
    let mut shop = FaultShop::new();
    shop.start_all().await;
    let client = shop.client();
    let work = Workload::new(CHECKOUTS);
    work.setup(&client).await;

    shop.stop(Which::Cart).await;
    work.place(&client, 0..CHECKOUTS).await;

    let bus = shop.bus();
    let queue = QueueNames::new(&bus, "cart").main;
    let (bus, queue) = (&bus, &queue);
    let depth = wait("every checkout to wait in cart's queue", || async move {
        let depth = events::admin::queue_depth(bus, queue).await.ok()??;
        (depth as usize >= CHECKOUTS).then_some(depth)
    })
    .await;
    assert_eq!(depth as usize, CHECKOUTS, "messages in cart's queue");
    // Inventory did its part; no order has heard from cart.
    let checkout_db = shop.db(Which::Checkout);
    let (inventory_done, cart_done) = wait("inventory to apply every order", || async move {
        let counts: (i64, i64) = sqlx::query_as(
            "SELECT count(*) FILTER (WHERE inventory_updated_at IS NOT NULL),
                    count(*) FILTER (WHERE cart_updated_at IS NOT NULL)
             FROM orders",
        )
        .fetch_one(checkout_db)
        .await
        .ok()?;
        (counts.0 == CHECKOUTS as i64).then_some(counts)
    })
    .await;
    assert_eq!((inventory_done, cart_done), (CHECKOUTS as i64, 0));

    shop.start(Which::Cart).await;
    shop.wait_ready(Which::Cart).await;
    let figures = work.check(&shop, &Expect::clean()).await;
    eprintln!("backlog of {depth} while cart was down: {figures}");
    shop.finish().await;
}
