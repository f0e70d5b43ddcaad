//! Cart's PostgreSQL becomes unreachable for ~10 s mid-stream (a TCP proxy between its pool
//! and the server closes every connection and refuses new ones), then comes back: cart holds
//! the messages meanwhile without spending their attempts, and nothing is dead-lettered, lost
//! or applied twice. Twice: with new connections refused (the server is down), and with new
//! connections accepted and closed at once (a pooler or load balancer whose server is gone).

use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

use e2e::fault_shop::FaultShop;
use e2e::proxy::{TcpProxy, via};
use e2e::workload::{Expect, Workload};
use e2e::{Settings, Which};
use serde_json::json;
use sqlx::postgres::PgConnectOptions;

use crate::{CHECKOUTS, serial, wait};

/// How long cart's database stays unreachable.
const OUTAGE: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy, PartialEq)]
enum Cut {
    /// Nothing listens: connections are refused.
    Refused,
    /// Connections are accepted and closed at once.
    Reset,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumers_database_refusing_connections_for_10s_dead_letters_nothing() {
    let _serial = serial().await;
    outage(Cut::Refused).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumers_database_resetting_connections_for_10s_dead_letters_nothing() {
    let _serial = serial().await;
    outage(Cut::Reset).await;
}

async fn outage(cut: Cut) {
    let server =
        PgConnectOptions::from_str(&Settings::default().database_url).expect("a PostgreSQL URL");
    let upstream: SocketAddr = tokio::net::lookup_host((server.get_host(), server.get_port()))
        .await
        .expect("resolving PostgreSQL's host")
        .next()
        .expect("an address for PostgreSQL");
    let proxy = TcpProxy::start(upstream).await;
    let mut shop = FaultShop::with(|s| {
        s.cart_database_url = Some(via(&s.database_url(Which::Cart), proxy.addr()));
    });
    shop.start_all().await;
    let client = shop.client();
    let work = Workload::new(CHECKOUTS);
    work.setup(&client).await;
    let third = CHECKOUTS / 3;
    work.place(&client, 0..third).await;

    // Cut while the first third is still being consumed.
    match cut {
        Cut::Refused => proxy.cut(),
        Cut::Reset => proxy.cut_with_resets(),
    }
    let cut_at = tokio::time::Instant::now();
    let body = shop.wait_not_ready(Which::Cart).await;
    assert_eq!(
        (&body["ready"], &body["database"]),
        (&json!(false), &json!(false)),
        "{body}"
    );
    // The others are unaffected: checkout keeps selling, inventory keeps applying.
    work.place(&client, third..2 * third).await;
    let health = shop.health(Which::Cart).expect("cart runs in this process");
    let held = wait("cart to hold a message while its database is away", || {
        let health = health.clone();
        async move { Some(health.snapshot().retried).filter(|n| *n > 0) }
    })
    .await;
    tokio::time::sleep_until(cut_at + OUTAGE).await;
    proxy.restore();
    shop.wait_ready(Which::Cart).await;
    if cut == Cut::Reset {
        assert!(proxy.resets() > 0, "the proxy closed no connection");
    }

    work.place(&client, 2 * third..CHECKOUTS).await;
    // A commit whose answer was cut off is applied, then skipped as a duplicate: cart's
    // applied counter may be below its inbox, which is the truth.
    let figures = work.check(&shop, &Expect::clean().inexact_counters()).await;
    let cart = shop.counters(Which::Cart);
    let resets = match cut {
        Cut::Refused => String::new(),
        Cut::Reset => format!("; {} connections accepted and closed", proxy.resets()),
    };
    eprintln!(
        "database outage, {cut:?} (cart held messages {} times, at least {held} during the cut{resets}): {figures}",
        cart.retried
    );
    shop.finish().await;
}
