//! Three relays (three replicas of one service, each with its own pool and broker
//! connection) share one outbox: rows written before and while they run are each published
//! exactly once and all marked sent.

use events::contracts::CartCheckedOut;
use events::outbox::Outbox;
use events::{Bus, Event, RelayConfig};
use sqlx::PgPool;
use uuid::Uuid;

use crate::isolated::{Isolated, within};

const BEFORE: usize = 1000;
const WHILE_RUNNING: usize = 2000;
const PER_TRANSACTION: usize = 50;

/// `n` events in transactions of `PER_TRANSACTION` rows, as a busy service would commit them.
async fn write(pool: &PgPool, outbox: &Outbox, n: usize) -> Vec<Uuid> {
    let mut ids = Vec::with_capacity(n);
    for chunk in 0..n.div_ceil(PER_TRANSACTION) {
        let rows = PER_TRANSACTION.min(n - chunk * PER_TRANSACTION);
        let label = format!("cart-{chunk}");
        let written = e2e::write_checked_out(pool, outbox, &label, rows).await;
        ids.extend(written.iter().map(|e| e.meta.id));
    }
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn relays_sharing_an_outbox_publish_every_row_exactly_once() {
    let (mut ns, pool) = Isolated::new("relays", &[], |bus| {
        // Small batches so the relays interleave on the table.
        bus.relay = RelayConfig {
            batch_size: 25,
            ..RelayConfig::default()
        };
    })
    .await;
    let sink = ns.sink("sink", &[CartCheckedOut::TYPE]).await;
    let outbox = Outbox::new("relays");
    let mut ids = write(&pool, &outbox, BEFORE).await;

    let replicas: Vec<(PgPool, events::BusHandle)> = (0..3)
        .map(|_| {
            let pool = ns.pool(4);
            let bus = Bus::new(ns.bus.clone(), pool.clone(), "relays").start();
            (pool, bus)
        })
        .collect();
    ids.extend(write(&pool, &outbox, WHILE_RUNNING).await);
    let total = ids.len() as i64;

    let pool_ref = &pool;
    within("every row marked sent", 60, || async move {
        let sent: i64 =
            sqlx::query_scalar("SELECT count(*) FROM events_outbox WHERE sent_at IS NOT NULL")
                .fetch_one(pool_ref)
                .await
                .ok()?;
        (sent == total).then_some(())
    })
    .await;
    for (pool, bus) in replicas {
        bus.shutdown().await;
        pool.close().await;
    }

    // Marked sent only after the broker's confirm: everything published is in the queue now.
    let (attempts, errors): (i64, i64) = sqlx::query_as(
        "SELECT COALESCE(sum(attempts), 0)::int8, count(last_error) FROM events_outbox",
    )
    .fetch_one(&pool)
    .await
    .expect("reading the outbox");
    assert_eq!(
        (attempts, errors),
        (total, 0),
        "one publish per row, no failure"
    );
    assert_eq!(ns.depth(&sink).await as i64, total, "messages in the queue");
    let received = ns.drain(&sink).await;
    let duplicates: Vec<_> = received.iter().filter(|(_, n)| **n > 1).collect();
    assert!(duplicates.is_empty(), "published twice: {duplicates:?}");
    let missing: Vec<_> = ids
        .iter()
        .filter(|id| !received.contains_key(&id.to_string()))
        .collect();
    assert!(missing.is_empty(), "never published: {missing:?}");
    assert_eq!(received.len(), ids.len());

    pool.close().await;
    ns.remove()
        .await
        .expect("removing the test's database and queues");
}
