//! Services started while the broker is down start anyway, report not-ready, take what they
//! can (inventory registers products, carts fill: the events wait in the outboxes), become
//! ready once the broker is up, and lose nothing.

use e2e::Which;
use e2e::broker::BrokerOutage;
use e2e::fault_shop::FaultShop;
use e2e::workload::{Expect, Workload};
use serde_json::json;

use crate::{CHECKOUTS, serial, unsent};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_started_with_the_broker_down_become_ready_and_lose_nothing() {
    let _serial = serial().await;
    let mut shop = FaultShop::new();
    // Provisioned first (`shop migrate`): the queues exist before anything is published.
    shop.migrate_all().await;

    let outage = BrokerOutage::begin().await;
    for which in [Which::Inventory, Which::Cart, Which::Checkout] {
        shop.start(which).await;
    }
    for which in Which::ALL {
        let body = shop.wait_not_ready(which).await;
        assert_eq!(
            (
                &body["ready"],
                &body["database"],
                &body["broker_connected"],
                &body["consumers_running"]
            ),
            (&json!(false), &json!(true), &json!(false), &json!(false)),
            "{}: {body}",
            which.name()
        );
    }
    let client = shop.client();
    let work = Workload::new(CHECKOUTS);
    work.register(&client).await;
    work.fill_carts(&client).await;
    // Checkout has heard of nothing; inventory's events wait in its outbox.
    assert_eq!(client.catalogue().await.expect("GET /catalogue"), vec![]);
    assert_eq!(
        unsent(shop.db(Which::Inventory)).await,
        2 * work.products.len() as i64,
        "inventory's unsent events: product_registered and stock_changed per product"
    );

    outage.end().await;
    for which in Which::ALL {
        shop.wait_ready(which).await;
    }
    work.wait_catalogue(&client).await;
    work.place(&client, 0..CHECKOUTS).await;
    let figures = work.check(&shop, &Expect::clean()).await;
    eprintln!("started with the broker down: {figures}");
    shop.finish().await;
}
