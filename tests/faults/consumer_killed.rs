//! A consumer process (cart, running `shop serve cart` in a child process) is SIGKILLed
//! mid-stream, then started again: what it had not acked is redelivered, what it had applied
//! is not applied again (the redeliveries of those are the duplicates counted).

use e2e::Which;
use e2e::fault_shop::FaultShop;
use e2e::workload::{Expect, Workload};

use crate::{CHECKOUTS, serial, wait};

const SHOP: &str = env!("CARGO_BIN_EXE_shop-proc");

async fn cart_inbox(shop: &FaultShop) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM events_inbox")
        .fetch_one(shop.db(Which::Cart))
        .await
        .expect("counting cart's inbox")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_sigkilled_mid_stream_loses_and_repeats_nothing() {
    let _serial = serial().await;
    let mut shop = FaultShop::new();
    shop.start(Which::Inventory).await;
    shop.spawn(Which::Cart, SHOP).await;
    shop.start(Which::Checkout).await;
    for which in Which::ALL {
        shop.wait_ready(which).await;
    }
    let client = shop.client();
    let work = Workload::new(CHECKOUTS);
    work.setup(&client).await;
    let half = CHECKOUTS / 2;

    // Killed while it consumes the stream.
    let ((), applied_at_kill) = tokio::join!(work.place(&client, 0..half), async {
        let applied = wait("cart to apply some checkouts", || async {
            let n = cart_inbox(&shop).await;
            (n >= (half / 4) as i64).then_some(n)
        })
        .await;
        shop.kill(Which::Cart).await;
        applied
    });
    assert!(
        !shop.client().ready(Which::Cart).await,
        "a killed cart still answers"
    );
    // The rest queue up for it.
    work.place(&client, half..CHECKOUTS).await;

    // Started again (in this process, so what it skips as duplicates is counted).
    shop.start(Which::Cart).await;
    shop.wait_ready(Which::Cart).await;
    let figures = work.check(&shop, &Expect::clean()).await;
    eprintln!("consumer SIGKILLed (cart had applied at least {applied_at_kill}): {figures}");
    shop.finish().await;
}
