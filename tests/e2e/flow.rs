//! The happy path across the three services.

use checkout::{CatalogueEntry, OrderLineView};
use e2e::{TestShop, Which, envelope};
use reqwest::StatusCode;
use serde_json::json;

use cart::{Cart, Item};

fn item(sku: &str, quantity: i64) -> Item {
    Item {
        sku: sku.into(),
        quantity,
    }
}

fn line(sku: &str, quantity: i64, unit_price_cents: i64) -> OrderLineView {
    OrderLineView {
        sku: sku.into(),
        quantity,
        unit_price_cents,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paid_checkout_updates_cart_inventory_and_catalogue() {
    let shop = TestShop::start().await;
    shop.register("A", 255, 10).await;
    shop.register("B", 339, 5).await;

    shop.client
        .set_cart_item("c1", "A", 3)
        .await
        .expect("PUT A");
    shop.client
        .set_cart_item("c1", "B", 1)
        .await
        .expect("PUT B");
    let cart = shop
        .client
        .set_cart_item("c1", "C", 2)
        .await
        .expect("PUT C");
    assert_eq!(
        cart,
        Cart {
            cart_id: "c1".into(),
            items: vec![item("A", 3), item("B", 1), item("C", 2)]
        }
    );

    let created = shop
        .checkout_ok(&json!({
            "cart_id": "c1",
            "customer_id": "17850",
            "lines": [{"sku": "A", "quantity": 2}, {"sku": "B", "quantity": 1}],
            "payment_token": "tok_visa"
        }))
        .await;
    assert_eq!(created.status, "paid");
    assert_eq!(created.total_cents, 2 * 255 + 339);
    assert_eq!(created.currency, "GBP");
    assert_eq!(created.cart_id, "c1");
    assert_eq!(created.customer_id.as_deref(), Some("17850"));
    assert_eq!(created.lines, vec![line("A", 2, 255), line("B", 1, 339)]);
    assert!(
        !created.cart_updated && !created.inventory_updated,
        "{created:?}"
    );

    let settled = shop.wait_order_settled(created.order_id).await;
    assert_eq!(settled.status, "paid");
    assert_eq!(settled.total_cents, created.total_cents);
    assert_eq!(settled.lines, created.lines);
    assert_eq!(settled.customer_id, created.customer_id);
    // The 201 answer, the event and the stored order agree to the last digit.
    assert_eq!(settled.paid_at, created.paid_at);
    assert!(settled.cart_updated_at.is_some() && settled.inventory_updated_at.is_some());

    // What was bought left the cart; what wasn't stayed.
    let cart = shop.client.cart("c1").await.expect("GET cart");
    assert_eq!(cart.items, vec![item("A", 1), item("C", 2)]);
    let checked_out = shop
        .outbox_payloads(Which::Cart, "cart.checked_out.v1")
        .await;
    assert_eq!(checked_out.len(), 1);
    let data = &envelope(&checked_out[0])["data"];
    assert_eq!(
        data,
        &json!({"cart_id": "c1", "order_id": created.order_id, "removed": [{"sku": "A", "quantity": 2}, {"sku": "B", "quantity": 1}]})
    );

    assert_eq!(shop.stock("A").await, 8);
    assert_eq!(shop.stock("B").await, 4);

    // Checkout's replica catches up with the sale and releases the reservations.
    for (sku, price, stock) in [("A", 255, 8), ("B", 339, 4)] {
        let entry = shop
            .wait_catalogue(&format!("the catalogue to show {sku}'s sale"), sku, |e| {
                e.stock_version == 2 && e.reserved == 0
            })
            .await;
        assert_eq!(
            entry,
            CatalogueEntry {
                sku: sku.into(),
                name: Some(format!("product {sku}")),
                unit_price_cents: Some(price),
                stock,
                stock_version: 2,
                reserved: 0,
                available: stock,
            }
        );
    }
    for which in [Which::Checkout, Which::Cart, Which::Inventory] {
        let c = shop.counters(which);
        assert_eq!(
            (c.retried, c.dead_lettered),
            (0, 0),
            "{}: {c:?}",
            which.name()
        );
    }
    shop.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkout_without_customer_of_an_unknown_cart_settles() {
    let shop = TestShop::start().await;
    shop.register("A", 100, 3).await;
    shop.client
        .set_cart_item("other", "A", 2)
        .await
        .expect("PUT");

    // No customer_id member at all, and a cart that holds nothing.
    let response = shop
        .post_json(
            Which::Checkout,
            "/checkouts",
            &json!({"cart_id": "ghost", "lines": [{"sku": "A", "quantity": 1}], "payment_token": "tok_visa"}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let body: serde_json::Value = response.json().await.expect("JSON");
    assert_eq!(body["customer_id"], serde_json::Value::Null, "{body}");
    assert_eq!(body["total_cents"], json!(100), "{body}");
    let order_id = body["order_id"]
        .as_str()
        .and_then(|s| uuid::Uuid::parse_str(s).ok())
        .expect("an order id");

    let settled = shop.wait_order_settled(order_id).await;
    assert_eq!(settled.customer_id, None);
    assert_eq!(settled.cart_id, "ghost");

    assert_eq!(shop.client.cart("ghost").await.expect("GET").items, vec![]);
    assert_eq!(
        shop.client.cart("other").await.expect("GET").items,
        vec![item("A", 2)]
    );
    let checked_out = shop
        .outbox_payloads(Which::Cart, "cart.checked_out.v1")
        .await;
    assert_eq!(checked_out.len(), 1);
    assert_eq!(
        envelope(&checked_out[0])["data"],
        json!({"cart_id": "ghost", "order_id": order_id, "removed": []})
    );
    assert_eq!(shop.stock("A").await, 2);
    shop.stop().await;
}

/// Concurrent checkouts of the last units: the availability ledger sells each unit once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_last_unit_is_sold_once() {
    let shop = TestShop::start().await;
    shop.register("A", 500, 1).await;

    let attempts = (0..6).map(|i| {
        let shop = &shop;
        async move {
            let body = json!({"cart_id": format!("c{i}"), "lines": [{"sku": "A", "quantity": 1}], "payment_token": "tok_visa"});
            shop.post_json(Which::Checkout, "/checkouts", &body).await
        }
    });
    let responses = futures_util::future::join_all(attempts).await;
    let mut created = Vec::new();
    let mut refused = 0;
    for response in responses {
        match response.status() {
            StatusCode::CREATED => {
                created.push(response.json::<checkout::Order>().await.expect("an order"))
            }
            StatusCode::CONFLICT => {
                e2e::expect_field_problem(response, StatusCode::CONFLICT, "lines[0].quantity")
                    .await;
                refused += 1;
            }
            other => panic!(
                "unexpected {other}: {}",
                response.text().await.unwrap_or_default()
            ),
        }
    }
    assert_eq!((created.len(), refused), (1, 5));
    shop.wait_order_settled(created[0].order_id).await;
    assert_eq!(shop.stock("A").await, 0);
    let entry = shop
        .wait_catalogue("the catalogue to show the sale", "A", |e| {
            e.stock_version == 2
        })
        .await;
    assert_eq!((entry.stock, entry.reserved, entry.available), (0, 0, 0));
    shop.stop().await;
}
