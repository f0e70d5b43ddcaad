//! `Idempotency-Key` on POST /checkouts: retries, also concurrent, give one order, one
//! payment, one event and the same answer; a different body with the same key is refused.

use e2e::{TestShop, expect_field_problem};
use reqwest::StatusCode;
use serde_json::json;
use shop::Which;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_same_key_sent_20_times_concurrently_makes_one_order() {
    let shop = TestShop::start().await;
    shop.register("A", 250, 100).await;
    let body = json!({"cart_id": "c1", "lines": [{"sku": "A", "quantity": 3}], "payment_token": "tok_visa"});
    let url = shop.url(Which::Checkout, "/checkouts");

    let requests = (0..20).map(|_| {
        let request = shop
            .client
            .http()
            .post(&url)
            .header("Idempotency-Key", "key-1")
            .json(&body);
        async move {
            let r = request.send().await.expect("a response");
            let status = r.status();
            let order: serde_json::Value = r.json().await.expect("JSON");
            (status, order)
        }
    });
    let answers = futures_util::future::join_all(requests).await;

    let first = &answers[0].1;
    for (status, order) in &answers {
        assert_eq!(*status, StatusCode::CREATED);
        assert_eq!(order, first, "every retry gets the same answer");
    }
    let orders: i64 = sqlx::query_scalar("SELECT count(*) FROM orders")
        .fetch_one(shop.pool(Which::Checkout))
        .await
        .unwrap();
    assert_eq!(orders, 1, "one order (so one payment)");
    assert_eq!(
        shop.outbox_count(Which::Checkout, Some("checkout.completed.v1"))
            .await,
        1,
        "one event"
    );
    let order_id = first["order_id"].as_str().unwrap().parse().unwrap();
    shop.wait_order_settled(order_id).await;
    assert_eq!(shop.stock("A").await, 97, "the units were taken once");

    // The same key with another body is a client error that names the header.
    let other = json!({"cart_id": "c1", "lines": [{"sku": "A", "quantity": 4}], "payment_token": "tok_visa"});
    let r = shop
        .client
        .http()
        .post(&url)
        .header("Idempotency-Key", "key-1")
        .json(&other)
        .send()
        .await
        .unwrap();
    expect_field_problem(r, StatusCode::UNPROCESSABLE_ENTITY, "Idempotency-Key").await;

    // A bad key is refused before anything happens.
    let r = shop
        .client
        .http()
        .post(&url)
        .header("Idempotency-Key", "")
        .json(&body)
        .send()
        .await
        .unwrap();
    expect_field_problem(r, StatusCode::UNPROCESSABLE_ENTITY, "Idempotency-Key").await;
    let orders: i64 = sqlx::query_scalar("SELECT count(*) FROM orders")
        .fetch_one(shop.pool(Which::Checkout))
        .await
        .unwrap();
    assert_eq!(orders, 1);
    shop.stop().await;
}
