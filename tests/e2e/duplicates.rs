//! Redelivered events are applied once: the inbox turns every copy after the first into a
//! no-op, for each consumer.

use e2e::{TestShop, Which, envelope, event_id, wait_for};
use serde_json::json;

/// A settled checkout of A:2 and B:1 from cart c1 (which also holds C:2).
async fn settled_shop() -> (TestShop, uuid::Uuid) {
    let shop = TestShop::start().await;
    shop.register("A", 255, 10).await;
    shop.register("B", 339, 5).await;
    for (sku, quantity) in [("A", 3), ("B", 1), ("C", 2)] {
        shop.client
            .set_cart_item("c1", sku, quantity)
            .await
            .expect("PUT");
    }
    let order = shop
        .checkout_ok(&json!({
            "cart_id": "c1",
            "lines": [{"sku": "A", "quantity": 2}, {"sku": "B", "quantity": 1}],
            "payment_token": "tok_visa"
        }))
        .await;
    shop.wait_order_settled(order.order_id).await;
    // Every consumer has counted what it applied, and checkout's replica has the sales.
    for (which, applied) in [(Which::Cart, 1), (Which::Inventory, 1)] {
        let health = shop.health(which);
        wait_for(
            &format!("{} to count its applied event", which.name()),
            || {
                let health = health.clone();
                async move { (health.snapshot().applied == applied).then_some(()) }
            },
        )
        .await;
    }
    for sku in ["A", "B"] {
        shop.wait_catalogue("the catalogue to show the sale", sku, |e| {
            e.stock_version == 2 && e.reserved == 0
        })
        .await;
    }
    // 2 × (product_registered + stock_changed), cart.checked_out, order_applied, 2 sales.
    let health = shop.health(Which::Checkout);
    wait_for("checkout to count what it applied", || {
        let health = health.clone();
        async move { (health.snapshot().applied == 8).then_some(()) }
    })
    .await;
    (shop, order.order_id)
}

async fn cart_items(shop: &TestShop) -> Vec<cart::Item> {
    shop.client.cart("c1").await.expect("GET cart").items
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redelivered_checkout_completed_is_applied_once() {
    let (shop, order_id) = settled_shop().await;
    let payloads = shop
        .outbox_payloads(Which::Checkout, "checkout.completed.v1")
        .await;
    assert_eq!(payloads.len(), 1);
    let payload = &payloads[0];
    assert_eq!(envelope(payload)["data"]["order_id"], json!(order_id));
    let id = event_id(payload);

    let items_before = cart_items(&shop).await;
    assert_eq!(
        items_before,
        vec![
            cart::Item {
                sku: "A".into(),
                quantity: 1
            },
            cart::Item {
                sku: "C".into(),
                quantity: 2
            }
        ]
    );
    let stock_before = (shop.stock("A").await, shop.stock("B").await);
    assert_eq!(stock_before, (8, 4));
    let cart_outbox = shop.outbox_count(Which::Cart, None).await;
    let inventory_outbox = shop.outbox_count(Which::Inventory, None).await;
    // cart.checked_out; 2 × (product_registered + stock_changed) + 2 × stock_changed + order_applied
    assert_eq!((cart_outbox, inventory_outbox), (1, 7));
    let cart_before = shop.counters(Which::Cart);
    let inventory_before = shop.counters(Which::Inventory);

    shop.publish_raw("checkout.completed.v1", payload.as_bytes())
        .await;
    shop.publish_raw("checkout.completed.v1", payload.as_bytes())
        .await;

    for (which, before) in [
        (Which::Cart, cart_before),
        (Which::Inventory, inventory_before),
    ] {
        let health = shop.health(which);
        let after = wait_for(&format!("{} to skip both copies", which.name()), || {
            let health = health.clone();
            async move {
                let now = health.snapshot();
                (now.duplicates >= before.duplicates + 2).then_some(now)
            }
        })
        .await;
        assert_eq!(after.duplicates, before.duplicates + 2, "{}", which.name());
        assert_eq!(after.applied, before.applied, "{}", which.name());
        assert_eq!(
            (after.retried, after.dead_lettered),
            (0, 0),
            "{}",
            which.name()
        );
        assert_eq!(shop.inbox_count(which, id).await, 1, "{}", which.name());
    }

    assert_eq!(cart_items(&shop).await, items_before);
    assert_eq!((shop.stock("A").await, shop.stock("B").await), stock_before);
    assert_eq!(shop.outbox_count(Which::Cart, None).await, cart_outbox);
    assert_eq!(
        shop.outbox_count(Which::Inventory, None).await,
        inventory_outbox
    );
    let order = shop
        .client
        .order(order_id)
        .await
        .expect("GET order")
        .expect("the order");
    assert!(order.cart_updated && order.inventory_updated);
    shop.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redelivered_stock_changed_is_applied_once() {
    let (shop, order_id) = settled_shop().await;
    // The sale of A: the event that also released A's reservation.
    let sales: Vec<String> = shop
        .outbox_payloads(Which::Inventory, "inventory.stock_changed.v1")
        .await
        .into_iter()
        .filter(|p| {
            envelope(p)["data"]["sku"] == json!("A")
                && envelope(p)["data"]["reason"] == json!("sale")
        })
        .collect();
    assert_eq!(sales.len(), 1);
    let payload = &sales[0];
    assert_eq!(
        envelope(payload)["data"],
        json!({"sku": "A", "stock": 8, "delta": -2, "reason": "sale", "order_id": order_id, "version": 2})
    );
    let id = event_id(payload);

    let catalogue_before = shop.client.catalogue().await.expect("GET catalogue");
    let checkout_outbox = shop.outbox_count(Which::Checkout, None).await;
    let before = shop.counters(Which::Checkout);

    shop.publish_raw("inventory.stock_changed.v1", payload.as_bytes())
        .await;
    shop.publish_raw("inventory.stock_changed.v1", payload.as_bytes())
        .await;

    let health = shop.health(Which::Checkout);
    let after = wait_for("checkout to skip both copies", || {
        let health = health.clone();
        async move {
            let now = health.snapshot();
            (now.duplicates >= before.duplicates + 2).then_some(now)
        }
    })
    .await;
    assert_eq!(after.duplicates, before.duplicates + 2);
    assert_eq!(after.applied, before.applied);
    assert_eq!((after.retried, after.dead_lettered), (0, 0));
    assert_eq!(shop.inbox_count(Which::Checkout, id).await, 1);
    assert_eq!(
        shop.client.catalogue().await.expect("GET catalogue"),
        catalogue_before
    );
    let a = catalogue_before.iter().find(|e| e.sku == "A").expect("A");
    assert_eq!(
        (a.stock, a.stock_version, a.reserved, a.available),
        (8, 2, 0, 8)
    );
    assert_eq!(
        shop.outbox_count(Which::Checkout, None).await,
        checkout_outbox
    );
    shop.stop().await;
}
