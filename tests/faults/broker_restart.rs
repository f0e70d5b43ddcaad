//! The broker restarts (`rabbitmqctl stop_app`, `start_app`) while checkouts are in flight:
//! checkout keeps taking orders while it is down (they wait in its outbox), every service
//! reconnects by itself, and nothing is lost or applied twice.

use e2e::Which;
use e2e::broker::BrokerOutage;
use e2e::fault_shop::FaultShop;
use e2e::workload::{Expect, Workload};
use serde_json::json;

use crate::{CHECKOUTS, placed_at_least, serial, unsent};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_broker_restarts_mid_stream_and_nothing_is_lost() {
    let _serial = serial().await;
    let mut shop = FaultShop::new();
    shop.start_all().await;
    let client = shop.client();
    let work = Workload::new(CHECKOUTS);
    work.setup(&client).await;
    let third = CHECKOUTS / 3;

    // The broker goes down while the first third is being placed and consumed.
    let ((), outage) = tokio::join!(work.place(&client, 0..third), async {
        placed_at_least(&work, third / 2).await;
        BrokerOutage::begin().await
    });
    for which in Which::ALL {
        let body = shop.wait_not_ready(which).await;
        assert_eq!(
            (&body["ready"], &body["database"], &body["broker_connected"]),
            (&json!(false), &json!(true), &json!(false)),
            "{}: {body}",
            which.name()
        );
    }

    // Checkout keeps taking orders: each waits in its outbox.
    let checkout_db = shop.db(Which::Checkout);
    let before = unsent(checkout_db).await;
    work.place(&client, third..2 * third).await;
    assert_eq!(unsent(checkout_db).await, before + third as i64);

    // The broker comes back while the last third is being placed.
    let ((), ()) = tokio::join!(work.place(&client, 2 * third..CHECKOUTS), outage.end());
    for which in Which::ALL {
        shop.wait_ready(which).await;
    }

    let figures = work.check(&shop, &Expect::clean()).await;
    eprintln!("broker restart: {figures}");
    shop.finish().await;
}
