//! Producers wake a relay with a NOTIFY only while one waits for it (NOTIFY serialises every
//! notifying commit, so a busy relay, which polls anyway, must not cost producers one), and a
//! waiting relay is woken by a commit, not by its fallback poll.

use std::time::Duration;

use events::outbox::Outbox;
use events::{Bus, contracts::CartCheckedOut};
use sqlx::postgres::PgListener;

use crate::isolated::{Isolated, within};

const CHANNEL: &str = "events_outbox";

/// The next notification on the outbox channel, with a deadline.
async fn next_payload(listener: &mut PgListener) -> String {
    tokio::time::timeout(Duration::from_secs(10), listener.recv())
        .await
        .expect("a notification within 10 s")
        .expect("the listener's connection")
        .payload()
        .to_string()
}

/// A marker notification: notifications arrive in commit order, so if the marker comes first,
/// nothing committed before it notified.
async fn notify_marker(pool: &sqlx::PgPool, marker: &str) {
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(CHANNEL)
        .bind(marker)
        .execute(pool)
        .await
        .expect("pg_notify");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outbox_commit_notifies_only_while_a_relay_waits() {
    let (mut ns, pool) = Isolated::new("producer", &[], |_| {}).await;
    let mut listener = PgListener::connect_with(&pool).await.expect("a listener");
    listener.listen(CHANNEL).await.expect("LISTEN");
    let outbox = Outbox::new("producer");

    // No relay waiting: the commit sends nothing, so the marker is the first to arrive.
    e2e::write_checked_out(&pool, &outbox, "quiet", 3).await;
    notify_marker(&pool, "after-quiet").await;
    assert_eq!(next_payload(&mut listener).await, "after-quiet");

    // A relay waiting: the commit notifies, once for its three rows, before the marker.
    sqlx::query("INSERT INTO events_relay_waiting (relay) VALUES ($1)")
        .bind(uuid::Uuid::now_v7())
        .execute(&pool)
        .await
        .expect("announcing a waiting relay");
    e2e::write_checked_out(&pool, &outbox, "woken", 3).await;
    notify_marker(&pool, "after-woken").await;
    assert_eq!(next_payload(&mut listener).await, "");
    assert_eq!(next_payload(&mut listener).await, "after-woken");

    // A transaction that announces a relay after its insert still notifies: the check runs
    // at commit.
    let mut tx = pool.begin().await.expect("a transaction");
    sqlx::query("DELETE FROM events_relay_waiting")
        .execute(&mut *tx)
        .await
        .expect("withdrawing");
    outbox
        .publish(
            &mut tx,
            CartCheckedOut {
                cart_id: "late".into(),
                order_id: uuid::Uuid::now_v7(),
                removed: vec![],
            },
        )
        .await
        .expect("writing to the outbox");
    sqlx::query("INSERT INTO events_relay_waiting (relay) VALUES ($1)")
        .bind(uuid::Uuid::now_v7())
        .execute(&mut *tx)
        .await
        .expect("announcing");
    tx.commit().await.expect("commit");
    notify_marker(&pool, "after-late").await;
    assert_eq!(next_payload(&mut listener).await, "");
    assert_eq!(next_payload(&mut listener).await, "after-late");

    drop(listener);
    pool.close().await;
    ns.remove()
        .await
        .expect("removing the test's database and queues");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_relay_is_woken_by_a_commit_and_withdraws_when_stopped() {
    const POLL: Duration = Duration::from_secs(120);
    let (mut ns, pool) = Isolated::new("producer", &[], |bus| {
        // So long that only a NOTIFY can explain a prompt publish.
        bus.relay.poll_interval = POLL;
    })
    .await;
    let sink = ns.sink("all", &["#"]).await;
    let relay = Bus::new(ns.bus.clone(), pool.clone(), "producer").start();
    let waiting = || {
        let pool = pool.clone();
        async move {
            sqlx::query_scalar::<_, i64>("SELECT count(*) FROM events_relay_waiting")
                .fetch_one(&pool)
                .await
                .expect("counting waiting relays")
        }
    };
    within("the idle relay to announce itself", 30, || async {
        (waiting().await == 1).then_some(())
    })
    .await;

    let outbox = Outbox::new("producer");
    e2e::write_checked_out(&pool, &outbox, "wake", 5).await;
    let ns_ref = &ns;
    let sink_ref = sink.as_str();
    // A deadline well inside the fallback poll: only the NOTIFY can meet it.
    within("the relay to publish the commit", 30, || async move {
        (ns_ref.depth(sink_ref).await == 5).then_some(())
    })
    .await;
    // Idle again: announced again, so the next commit wakes it too.
    within("the relay to wait again", 30, || async {
        (waiting().await == 1).then_some(())
    })
    .await;

    relay.shutdown().await;
    assert_eq!(waiting().await, 0, "a stopped relay withdraws");
    pool.close().await;
    ns.remove()
        .await
        .expect("removing the test's database and queues");
}
