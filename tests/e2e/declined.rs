//! A refused payment leaves no trace: no order, no event, no reservation, no stock change.

use e2e::{TestShop, Which, expect_field_problem};
use reqwest::StatusCode;
use serde_json::json;

async fn orders(shop: &TestShop) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM orders")
        .fetch_one(shop.pool(Which::Checkout))
        .await
        .expect("counting orders")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declined_or_unknown_payment_changes_nothing() {
    let shop = TestShop::start().await;
    shop.register("A", 250, 5).await;
    shop.client.set_cart_item("c1", "A", 2).await.expect("PUT");

    for token in ["tok_declined", "tok_unknown"] {
        let body = json!({"cart_id": "c1", "customer_id": "17850", "lines": [{"sku": "A", "quantity": 2}], "payment_token": token});
        let response = shop.post_json(Which::Checkout, "/checkouts", &body).await;
        let problem =
            expect_field_problem(response, StatusCode::PAYMENT_REQUIRED, "payment_token").await;
        assert_eq!(
            problem["type"],
            json!("/problems/payment-declined"),
            "{problem}"
        );

        assert_eq!(orders(&shop).await, 0, "{token}");
        assert_eq!(
            shop.outbox_count(Which::Checkout, Some("checkout.completed.v1"))
                .await,
            0,
            "{token}"
        );
        let entry = shop.catalogue_entry("A").await.expect("A in the catalogue");
        assert_eq!(
            (entry.stock, entry.reserved, entry.available),
            (5, 0, 5),
            "{token}"
        );
    }

    // A paid checkout afterwards: it alone is applied, so nothing of the declined ones was.
    let order = shop
        .checkout_ok(&json!({"cart_id": "c1", "lines": [{"sku": "A", "quantity": 1}], "payment_token": "tok_visa"}))
        .await;
    shop.wait_order_settled(order.order_id).await;
    assert_eq!(orders(&shop).await, 1);
    assert_eq!(
        shop.outbox_count(Which::Checkout, Some("checkout.completed.v1"))
            .await,
        1
    );
    assert_eq!(shop.stock("A").await, 4);
    assert_eq!(
        shop.client.cart("c1").await.expect("GET").items,
        vec![cart::Item {
            sku: "A".into(),
            quantity: 1
        }]
    );
    let entry = shop
        .wait_catalogue("the catalogue to show the sale", "A", |e| {
            e.stock_version == 2
        })
        .await;
    assert_eq!((entry.stock, entry.reserved, entry.available), (4, 0, 4));
    shop.stop().await;
}
