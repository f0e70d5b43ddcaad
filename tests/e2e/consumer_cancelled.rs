//! The broker cancels a consumer (its queue deleted, as when an operator removes it or the
//! queue's node goes away): the service does not idle "up but consuming nothing". It rebuilds
//! its session, declares its queue again, consumes it, and applies what arrives after.

use e2e::{TestShop, Which, wait_for};
use events::topology::QueueNames;
use lapin::options::QueueDeleteOptions;
use serde_json::json;

/// Consumers on `queue` now, or `None` while it does not exist.
async fn consumers(bus: &events::BusConfig, queue: &str) -> Option<u32> {
    let stats = events::admin::queue_stats(bus, queue).await.ok()??;
    Some(stats.consumers)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_cancelled_by_the_broker_comes_back_and_consumes() {
    let shop = TestShop::start().await;
    shop.register("A", 100, 10).await;
    let bus = shop.settings.bus();
    let cart_queue = QueueNames::new(&bus, "cart").main;
    let bus_ref = &bus;
    let queue_ref = cart_queue.as_str();
    wait_for("cart to consume its queue", || async move {
        (consumers(bus_ref, queue_ref).await == Some(1)).then_some(())
    })
    .await;

    // Deleted under the consumer's feet: the broker sends basic.cancel.
    {
        let conn = events::admin::connect(&bus).await.expect("connecting");
        let channel = conn.create_channel().await.expect("a channel");
        channel
            .queue_delete(cart_queue.as_str().into(), QueueDeleteOptions::default())
            .await
            .expect("deleting cart's queue");
        let _ = conn.close(200, "deleted".into()).await;
    }

    // Back: the queue declared again (with its bindings) and consumed.
    wait_for(
        "cart to declare and consume its queue again",
        || async move { (consumers(bus_ref, queue_ref).await == Some(1)).then_some(()) },
    )
    .await;
    let health = shop.health(Which::Cart);
    wait_for("cart to be ready again", || {
        let health = health.clone();
        async move { health.status().ready().then_some(()) }
    })
    .await;

    // And it applies what is published now.
    shop.client
        .set_cart_item("c1", "A", 3)
        .await
        .expect("PUT cart item");
    let order = shop
        .checkout_ok(&json!({
            "cart_id": "c1",
            "lines": [{"sku": "A", "quantity": 2}],
            "payment_token": "tok_visa"
        }))
        .await;
    let settled = shop.wait_order_settled(order.order_id).await;
    assert!(
        settled.cart_updated && settled.inventory_updated,
        "{settled:?}"
    );
    let items = shop.client.cart("c1").await.expect("GET cart").items;
    assert_eq!(items.len(), 1, "{items:?}");
    assert_eq!((items[0].sku.as_str(), items[0].quantity), ("A", 1));
    assert_eq!(shop.health(Which::Cart).snapshot().applied, 1);
    shop.stop().await;
}
