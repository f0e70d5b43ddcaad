//! An outbox row no queue is bound for: the mandatory publish comes back, the row stays pending
//! with its attempt count and the return as its error, retried with a growing backoff (never
//! hot), parked after `relay.max_attempts` without delaying the rows behind it, shown by
//! `outbox::status` and `shop outbox status`, and put back by `shop outbox retry`: once a
//! queue is bound it is delivered.

use std::time::Instant;

use chrono::Utc;
use events::contracts::{CartCheckedOut, CheckoutCompleted};
use events::outbox::Outbox;
use events::{Bus, Event, RelayConfig};
use sqlx::PgPool;
use uuid::Uuid;

use crate::isolated::{Isolated, expect_exit, shop_cli, within};

const MAX_ATTEMPTS: i32 = 4;

#[derive(Debug, sqlx::FromRow)]
struct Row {
    attempts: i32,
    last_error: Option<String>,
    sent: bool,
    parked: bool,
}

async fn row(pool: &PgPool, id: Uuid) -> Row {
    sqlx::query_as(
        "SELECT attempts, last_error, sent_at IS NOT NULL AS sent, parked_at IS NOT NULL AS parked
         FROM events_outbox WHERE event_id = $1",
    )
    .bind(id)
    .fetch_one(pool)
    .await
    .expect("reading the outbox row")
}

async fn routable(pool: &PgPool, outbox: &Outbox) -> Uuid {
    let mut tx = pool.begin().await.expect("a transaction");
    let e = outbox
        .publish(
            &mut tx,
            CartCheckedOut {
                cart_id: "c1".into(),
                order_id: Uuid::now_v7(),
                removed: vec![],
            },
        )
        .await
        .expect("writing to the outbox");
    tx.commit().await.expect("commit");
    e.meta.id
}

/// Waits until the row has made `attempts` attempts; returns when that was seen.
async fn attempts_reach(pool: &PgPool, id: Uuid, attempts: i32) -> (Instant, Row) {
    within(
        &format!("attempt {attempts} of the row"),
        30,
        || async move {
            let r = row(pool, id).await;
            assert!(
                r.attempts <= attempts,
                "skipped past attempt {attempts}: {r:?}"
            );
            (r.attempts == attempts).then(|| (Instant::now(), r))
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unroutable_row_is_retried_with_backoff_parked_and_retried_by_command() {
    let (mut ns, pool) = Isolated::new("checkout", &[], |bus| {
        bus.relay = RelayConfig {
            max_attempts: MAX_ATTEMPTS,
            ..RelayConfig::default()
        };
    })
    .await;
    // A queue for cart.checked_out only: checkout.completed is unroutable.
    let sink = ns.sink("sink", &[CartCheckedOut::TYPE]).await;
    let outbox = Outbox::new("checkout");
    let bus = Bus::new(ns.bus.clone(), pool.clone(), "checkout").start();

    let mut tx = pool.begin().await.expect("a transaction");
    let unroutable = outbox
        .publish(
            &mut tx,
            CheckoutCompleted {
                order_id: Uuid::now_v7(),
                cart_id: "c0".into(),
                customer_id: None,
                lines: vec![],
                total_cents: 0,
                currency: "GBP".into(),
                paid_at: Utc::now(),
            },
        )
        .await
        .expect("writing to the outbox")
        .meta
        .id;
    tx.commit().await.expect("commit");
    // Behind it in the outbox, and delivered while it waits for its retry.
    let first = routable(&pool, &outbox).await;

    let (t1, r1) = attempts_reach(&pool, unroutable, 1).await;
    let error = r1.last_error.clone().unwrap_or_default();
    assert!(
        error.contains("unroutable") && error.contains(CheckoutCompleted::TYPE),
        "{r1:?}"
    );
    assert!(!r1.sent && !r1.parked, "{r1:?}");
    let pool_ref = &pool;
    within("the row behind it to be sent", 30, || async move {
        row(pool_ref, first).await.sent.then_some(())
    })
    .await;

    // Backoff 1 s, 2 s, 4 s between the attempts: each gap at least about that long.
    let (t2, r2) = attempts_reach(&pool, unroutable, 2).await;
    let (t3, _) = attempts_reach(&pool, unroutable, 3).await;
    assert!(!r2.parked, "{r2:?}");
    let (t4, r4) = attempts_reach(&pool, unroutable, MAX_ATTEMPTS).await;
    let gaps = [t2 - t1, t3 - t2, t4 - t3];
    assert!(
        gaps[0].as_millis() >= 800 && gaps[1].as_millis() >= 1800 && gaps[2].as_millis() >= 3800,
        "retried faster than its backoff: {gaps:?}"
    );
    assert!(r4.parked && !r4.sent, "parked after {MAX_ATTEMPTS}: {r4:?}");
    assert!(
        r4.last_error
            .as_deref()
            .unwrap_or("")
            .contains("unroutable"),
        "{r4:?}"
    );

    // Parked, it blocks nothing and is tried no more.
    let second = routable(&pool, &outbox).await;
    within(
        "a row written after the parking to be sent",
        30,
        || async move { row(pool_ref, second).await.sent.then_some(()) },
    )
    .await;
    assert_eq!(row(&pool, unroutable).await.attempts, MAX_ATTEMPTS);

    let status = events::outbox::status(&pool).await.expect("the status");
    assert_eq!((status.pending, status.parked, status.sent), (0, 1, 2));
    assert_eq!(status.parked_rows.len(), 1);
    let parked = &status.parked_rows[0];
    assert_eq!(
        (
            parked.event_id,
            parked.event_type.as_str(),
            parked.attempts,
            parked.last_error.as_deref(),
        ),
        (
            unroutable,
            CheckoutCompleted::TYPE,
            MAX_ATTEMPTS,
            r4.last_error.as_deref()
        )
    );
    assert!(parked.parked_at.is_some());

    // The operator's view, through the command line against this test's database.
    let prefix = format!("{}_", ns.id);
    let flags = ["--database-prefix", prefix.as_str()];
    let out = shop_cli(&[&["outbox", "status", "checkout"][..], &flags].concat()).await;
    let text = expect_exit(&out, 0, "shop outbox status");
    assert!(text.contains("0 pending, 1 parked, 2 sent"), "{text}");
    let line = format!(
        "parked {unroutable} {} after {MAX_ATTEMPTS} attempts: unroutable",
        CheckoutCompleted::TYPE
    );
    assert!(text.contains(&line), "{text}");

    // The cause fixed (a queue bound), then retried by command: delivered.
    ns.bind(&sink, CheckoutCompleted::TYPE).await;
    let out = shop_cli(&[&["outbox", "retry", "checkout"][..], &flags].concat()).await;
    let text = expect_exit(&out, 0, "shop outbox retry");
    assert!(
        text.contains("1 parked rows put back in the relay's queue"),
        "{text}"
    );
    let retried = within("the retried row to be sent", 30, || async move {
        let r = row(pool_ref, unroutable).await;
        r.sent.then_some(r)
    })
    .await;
    assert!(!retried.parked, "{retried:?}");
    assert_eq!(
        retried.attempts, 1,
        "a fresh count, one publish: {retried:?}"
    );
    let out = shop_cli(&[&["outbox", "status", "checkout"][..], &flags].concat()).await;
    let text = expect_exit(&out, 0, "shop outbox status");
    assert!(text.contains("0 pending, 0 parked, 3 sent"), "{text}");

    bus.shutdown().await;
    let received = ns.drain(&sink).await;
    let mut ids: Vec<&String> = received.keys().collect();
    ids.sort();
    let mut expected = [
        unroutable.to_string(),
        first.to_string(),
        second.to_string(),
    ];
    expected.sort();
    assert_eq!(ids, expected.iter().collect::<Vec<_>>());
    assert!(received.values().all(|n| *n == 1), "{received:?}");

    pool.close().await;
    ns.remove()
        .await
        .expect("removing the test's database and queues");
}
