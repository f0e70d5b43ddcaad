//! The committed v1 fixtures (events/fixtures/v1), published by hand, are understood by the
//! real consumers: applied where they make sense, dead-lettered (never retried, never lost)
//! where they are about an order this checkout doesn't know.

use e2e::{TestShop, Which, wait_for};
use events::topology::QueueNames;

fn fixture(event_type: &str) -> String {
    let path = format!(
        "{}/../events/fixtures/v1/{event_type}.json",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

async fn wait_counters(
    shop: &TestShop,
    which: Which,
    what: &str,
    done: impl Fn(&events::CountersSnapshot) -> bool,
) -> events::CountersSnapshot {
    let health = shop.health(which);
    let done = &done;
    wait_for(what, || {
        let health = health.clone();
        async move { Some(health.snapshot()).filter(|c| done(c)) }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fixtures_are_consumed_by_the_real_consumers() {
    let shop = TestShop::start().await;
    shop.register("85123A", 255, 100).await;
    shop.register("71053", 339, 50).await;
    shop.client
        .set_cart_item("536365", "85123A", 10)
        .await
        .expect("PUT");
    shop.client
        .set_cart_item("536365", "71053", 6)
        .await
        .expect("PUT");

    // product_registered → checkout takes the fixture's name.
    shop.publish_raw(
        "inventory.product_registered.v1",
        fixture("inventory.product_registered.v1").as_bytes(),
    )
    .await;
    let entry = shop
        .wait_catalogue("the fixture's product name", "85123A", |e| {
            e.name.as_deref() == Some("WHITE HANGING HEART T-LIGHT HOLDER")
        })
        .await;
    assert_eq!(
        (entry.unit_price_cents, entry.stock, entry.stock_version),
        (Some(255), 100, 1)
    );

    // stock_changed (version 2) → checkout's replica moves to it.
    shop.publish_raw(
        "inventory.stock_changed.v1",
        fixture("inventory.stock_changed.v1").as_bytes(),
    )
    .await;
    let entry = shop
        .wait_catalogue("the fixture's stock figure", "85123A", |e| {
            e.stock_version == 2
        })
        .await;
    assert_eq!((entry.stock, entry.reserved, entry.available), (94, 0, 94));

    // checkout.completed → cart and inventory apply it; their follow-ups name an order this
    // checkout never placed, so checkout dead-letters those two.
    shop.publish_raw(
        "checkout.completed.v1",
        fixture("checkout.completed.v1").as_bytes(),
    )
    .await;
    wait_counters(&shop, Which::Cart, "cart to apply the fixture", |c| {
        c.applied == 1
    })
    .await;
    wait_counters(
        &shop,
        Which::Inventory,
        "inventory to apply the fixture",
        |c| c.applied == 1,
    )
    .await;
    let items = shop.client.cart("536365").await.expect("GET cart").items;
    assert_eq!(
        items,
        vec![cart::Item {
            sku: "85123A".into(),
            quantity: 4
        }]
    );
    let a = shop
        .client
        .product("85123A")
        .await
        .unwrap()
        .expect("85123A");
    let b = shop.client.product("71053").await.unwrap().expect("71053");
    assert_eq!(
        ((a.stock, a.version), (b.stock, b.version)),
        ((94, 2), (44, 2))
    );
    let entry = shop
        .wait_catalogue("the sale of 71053", "71053", |e| e.stock_version == 2)
        .await;
    assert_eq!((entry.stock, entry.reserved, entry.available), (44, 0, 44));
    wait_counters(
        &shop,
        Which::Checkout,
        "checkout to dead-letter the follow-ups",
        |c| c.dead_lettered >= 2,
    )
    .await;

    // The fixtures of those follow-ups: dead-lettered the same way.
    shop.publish_raw(
        "cart.checked_out.v1",
        fixture("cart.checked_out.v1").as_bytes(),
    )
    .await;
    shop.publish_raw(
        "inventory.order_applied.v1",
        fixture("inventory.order_applied.v1").as_bytes(),
    )
    .await;
    // 2 × (product_registered + stock_changed) of the registrations, the two fixtures, and
    // inventory's two sale stock_changed.
    let c = wait_counters(&shop, Which::Checkout, "checkout's last deliveries", |c| {
        c.dead_lettered >= 4 && c.applied >= 8
    })
    .await;
    assert_eq!(
        c,
        events::CountersSnapshot {
            applied: 8,
            duplicates: 0,
            retried: 0,
            dead_lettered: 4
        }
    );
    let dlq = QueueNames::new(&shop.settings.bus(), "checkout").dead_letter;
    let bus = shop.settings.bus();
    let depth = wait_for("checkout's dead-letter queue to hold 4", || {
        let (bus, dlq) = (&bus, &dlq);
        async move {
            events::admin::queue_depth(bus, dlq)
                .await
                .ok()
                .flatten()
                .filter(|d| *d == 4)
        }
    })
    .await;
    assert_eq!(depth, 4);
    let entry = shop.catalogue_entry("85123A").await.expect("85123A");
    assert_eq!(
        (entry.stock, entry.stock_version, entry.reserved),
        (94, 2, 0)
    );
    for which in [Which::Cart, Which::Inventory] {
        let c = shop.counters(which);
        assert_eq!(
            c,
            events::CountersSnapshot {
                applied: 1,
                duplicates: 0,
                retried: 0,
                dead_lettered: 0
            },
            "{}",
            which.name()
        );
    }
    shop.stop().await;
}
