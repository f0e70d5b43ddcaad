//! Three instances of each service (one in this process, two replicas in child processes, all
//! competing for the same queues and sharing each outbox); one inventory replica is SIGKILLed
//! mid-stream. What it held unacked is redelivered to the others, per-sku stock stays serial
//! (versions), and the conservation check passes.

use e2e::fault_shop::FaultShop;
use e2e::workload::{Expect, Workload};
use e2e::{ShopClient, Which};

use crate::{CHECKOUTS, placed_at_least, serial};

const SHOP: &str = env!("CARGO_BIN_EXE_shop-proc");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_of_each_one_sigkilled_mid_stream() {
    let _serial = serial().await;
    let mut shop = FaultShop::new();
    shop.start_all().await;
    let mut replicas = Vec::new();
    for which in [Which::Inventory, Which::Cart, Which::Checkout] {
        for _ in 0..2 {
            replicas.push(shop.spawn_replica(which, SHOP).await);
        }
    }
    let client = shop.client();
    let work = Workload::new(CHECKOUTS);
    work.setup(&client).await;

    // Checkouts go to the three checkout instances in turn, so all three relays publish.
    let checkout_clients: Vec<ShopClient> = std::iter::once(shop.addr(Which::Checkout))
        .chain(
            replicas
                .iter()
                .filter(|r| r.which == Which::Checkout)
                .map(|r| r.addr),
        )
        .map(|addr| ShopClient::new(addr, shop.addr(Which::Cart), shop.addr(Which::Inventory)))
        .collect();
    let victim = replicas
        .iter()
        .position(|r| r.which == Which::Inventory)
        .expect("an inventory replica");
    let victim = replicas.remove(victim);
    let ((), ()) = tokio::join!(work.place_on(&checkout_clients, 0..CHECKOUTS), async {
        placed_at_least(&work, CHECKOUTS / 3).await;
        victim.kill().await;
    });

    // The survivors' counters live in other processes: only the inboxes are exact.
    let figures = work.check(&shop, &Expect::clean().inexact_counters()).await;
    eprintln!(
        "3 instances each, one inventory SIGKILLed: {figures} (duplicates: this process's instances only)"
    );
    drop(replicas);
    shop.finish().await;
}
