//! Correct under concurrency with several instances of a service: no overselling, and stock
//! events that equal serial application.

use std::time::Duration;

use e2e::TestShop;
use reqwest::StatusCode;
use serde_json::{Value, json};
use shop::Which;

/// Starts `n` more instances of `which` on the shop's databases and queues.
async fn more_instances(shop: &TestShop, which: Which, n: usize) -> Vec<kit::Running> {
    let mut instances = Vec::new();
    for _ in 0..n {
        let r = shop::system::start(which, &shop.settings)
            .await
            .expect("an extra instance starts");
        r.wait_ready(Duration::from_secs(30))
            .await
            .expect("the extra instance is ready");
        instances.push(r);
    }
    instances
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hundred_checkouts_race_for_five_units_across_two_instances() {
    let shop = TestShop::start().await;
    shop.register("A", 100, 5).await;
    let second = more_instances(&shop, Which::Checkout, 1).await;
    let urls = [
        shop.url(Which::Checkout, "/checkouts"),
        format!("http://{}/checkouts", second[0].addr),
    ];

    let attempts = (0..100).map(|i| {
        let request = shop.client.http().post(&urls[i % 2]).json(&json!({
            "cart_id": format!("c{i}"),
            "lines": [{"sku": "A", "quantity": 1}],
            "payment_token": "tok_visa",
        }));
        async move {
            let r = request.send().await.expect("a response");
            (r.status(), r.json::<Value>().await.expect("JSON"))
        }
    });
    let answers = futures_util::future::join_all(attempts).await;
    let sold: Vec<&Value> = answers
        .iter()
        .filter(|(s, _)| *s == StatusCode::CREATED)
        .map(|(_, b)| b)
        .collect();
    let refused = answers
        .iter()
        .filter(|(s, b)| *s == StatusCode::CONFLICT && b["field"] == "lines[0].quantity")
        .count();
    assert_eq!(sold.len(), 5, "exactly the 5 units are sold");
    assert_eq!(refused, 95, "the rest are refused with a clear error");

    let orders: i64 = sqlx::query_scalar("SELECT count(*) FROM orders")
        .fetch_one(shop.pool(Which::Checkout))
        .await
        .unwrap();
    assert_eq!(orders, 5, "payments only for what was sold");
    for order in &sold {
        shop.wait_order_settled(order["order_id"].as_str().unwrap().parse().unwrap())
            .await;
    }
    assert_eq!(shop.stock("A").await, 0);
    let entry = shop
        .wait_catalogue("A sold out in the replica", "A", |e| {
            e.stock == 0 && e.reserved == 0
        })
        .await;
    assert_eq!(entry.available, 0);

    // A restock makes units sellable again.
    shop.client.restock("A", 3).await.expect("restock");
    shop.wait_catalogue("the restock in the replica", "A", |e| e.available == 3)
        .await;
    shop.checkout_ok(&json!({"cart_id": "late", "lines": [{"sku": "A", "quantity": 3}], "payment_token": "tok_visa"})).await;

    for r in second {
        r.shutdown().await;
    }
    shop.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn interleaved_restocks_and_sales_on_three_instances_equal_serial_application() {
    let shop = TestShop::start().await;
    assert!(shop.settings.concurrency > 1);
    shop.register("A", 100, 50).await;
    let inventories = more_instances(&shop, Which::Inventory, 2).await;
    let checkouts = more_instances(&shop, Which::Checkout, 2).await;
    let checkout_urls: Vec<String> = std::iter::once(shop.url(Which::Checkout, "/checkouts"))
        .chain(
            checkouts
                .iter()
                .map(|r| format!("http://{}/checkouts", r.addr)),
        )
        .collect();
    let inventory_urls: Vec<String> =
        std::iter::once(shop.url(Which::Inventory, "/products/A/restock"))
            .chain(
                inventories
                    .iter()
                    .map(|r| format!("http://{}/products/A/restock", r.addr)),
            )
            .collect();

    let (sales, restocks) = (40usize, 20usize);
    let mut requests = Vec::new();
    for i in 0..sales + restocks {
        let http = shop.client.http().clone();
        let request = if i % 3 == 2 {
            http.post(&inventory_urls[i % 3])
                .json(&json!({"quantity": 2}))
        } else {
            http.post(&checkout_urls[i % 3]).json(&json!({
                "cart_id": format!("c{i}"),
                "lines": [{"sku": "A", "quantity": 1}],
                "payment_token": "tok_visa",
            }))
        };
        requests.push(async move {
            let r = request.send().await.expect("a response");
            (r.status(), r.json::<Value>().await.expect("JSON"))
        });
    }
    let answers = futures_util::future::join_all(requests).await;
    for (status, body) in &answers {
        assert!(status.is_success(), "{status}: {body}");
    }
    for (_, body) in answers.iter().filter(|(s, _)| *s == StatusCode::CREATED) {
        shop.wait_order_settled(body["order_id"].as_str().unwrap().parse().unwrap())
            .await;
    }
    let expected = 50 - sales as i64 + 2 * restocks as i64;
    assert_eq!(shop.stock("A").await, expected);

    // The published sequence: versions 1..=n without a gap, each figure = previous + delta.
    let mut changes: Vec<Value> = shop
        .outbox_payloads(Which::Inventory, "inventory.stock_changed.v1")
        .await
        .iter()
        .map(|p| e2e::envelope(p)["data"].clone())
        .collect();
    changes.sort_by_key(|d| d["version"].as_i64());
    assert_eq!(changes.len(), 1 + sales + restocks);
    let mut stock = 0;
    for (i, change) in changes.iter().enumerate() {
        assert_eq!(change["version"].as_i64(), Some(i as i64 + 1));
        stock += change["delta"].as_i64().unwrap();
        assert_eq!(
            change["stock"].as_i64(),
            Some(stock),
            "version {} is not serial",
            i + 1
        );
    }
    assert_eq!(stock, expected);

    // Checkout's replica ends at the newest version, whatever order the events came in.
    let n = changes.len() as i64;
    let entry = shop
        .wait_catalogue("the newest version in the replica", "A", |e| {
            e.stock_version == n && e.reserved == 0
        })
        .await;
    assert_eq!(entry.stock, expected);

    for r in inventories.into_iter().chain(checkouts) {
        r.shutdown().await;
    }
    shop.stop().await;
}
