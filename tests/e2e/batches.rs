//! A consumer that finds a backlog applies several waiting deliveries in one transaction. A
//! poison event inside such a batch rolls the batch back whole; each of its deliveries then
//! takes the one-by-one path: the good ones are applied exactly once, the poison is retried
//! and dead-lettered, and nothing of the rolled-back batch stays.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::anyhow;
use async_trait::async_trait;
use events::contracts::CartCheckedOut;
use events::outbox::Outbox;
use events::topology::QueueNames;
use events::{Bus, Context, Envelope, Handler, HandlerError, Subscriber};
use uuid::Uuid;

use crate::isolated::{Isolated, within};

const EVENTS: usize = 200;
const CONSUMER: &str = "ledger";

/// Records each event with the id of the transaction that applied it; the poison, if any,
/// fails.
struct Ledger {
    poison: Option<Uuid>,
}

#[async_trait]
impl Handler<CartCheckedOut> for Ledger {
    async fn handle(
        &self,
        ctx: &mut Context<'_>,
        event: Envelope<CartCheckedOut>,
    ) -> Result<(), HandlerError> {
        sqlx::query("INSERT INTO ledger (event_id, tx) VALUES ($1, txid_current())")
            .bind(event.meta.id)
            .execute(&mut *ctx.tx)
            .await?;
        if Some(event.meta.id) == self.poison {
            // After a write of its own: the rollback must take it away.
            return Err(HandlerError::transient(anyhow!("poison: always fails")));
        }
        Ok(())
    }
}

/// The test's namespace, with the ledger table in its database.
async fn with_ledger(tweak: impl FnOnce(&mut events::BusConfig)) -> (Isolated, sqlx::PgPool) {
    let (ns, pool) = Isolated::new(CONSUMER, &[CONSUMER], tweak).await;
    sqlx::query("CREATE TABLE ledger (event_id UUID NOT NULL, tx BIGINT NOT NULL)")
        .execute(&pool)
        .await
        .expect("the ledger table");
    (ns, pool)
}

/// How many times each event was applied, and how many events each transaction applied.
async fn read_ledger(pool: &sqlx::PgPool) -> (HashMap<Uuid, usize>, HashMap<i64, usize>) {
    let rows: Vec<(Uuid, i64)> = sqlx::query_as("SELECT event_id, tx FROM ledger")
        .fetch_all(pool)
        .await
        .expect("the ledger");
    let mut per_event: HashMap<Uuid, usize> = HashMap::new();
    let mut per_tx: HashMap<i64, usize> = HashMap::new();
    for (event, tx) in &rows {
        *per_event.entry(*event).or_default() += 1;
        *per_tx.entry(*tx).or_default() += 1;
    }
    (per_event, per_tx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_deliveries_share_a_transaction_and_a_poison_among_them_changes_nothing_else() {
    let (mut ns, pool) = with_ledger(|bus| {
        bus.prefetch = 64;
        bus.concurrency = 2;
        bus.batch = 8;
        bus.max_attempts = 2;
        bus.retry_delays = vec![Duration::from_millis(200)];
    })
    .await;

    let outbox = Outbox::new("producer");
    let ids: Vec<Uuid> = e2e::write_checked_out(&pool, &outbox, "cart", EVENTS)
        .await
        .iter()
        .map(|e| e.meta.id)
        .collect();
    let poison = ids[EVENTS / 2];

    // The backlog: queued (by a relay alone) before the consumer starts.
    let names = QueueNames::new(&ns.bus, CONSUMER);
    let subscriber = || {
        Subscriber::new(CONSUMER).on::<CartCheckedOut, _>(Ledger {
            poison: Some(poison),
        })
    };
    events::admin::declare_topology(&ns.bus, &subscriber())
        .await
        .expect("declaring the queues");
    let producer = Bus::new(ns.bus.clone(), pool.clone(), "producer").start();
    let ns_ref = &ns;
    let main = names.main.as_str();
    within("the backlog to be queued", 60, || async move {
        (ns_ref.depth(main).await == EVENTS as u32).then_some(())
    })
    .await;
    producer.shutdown().await;

    let bus = Bus::new(ns.bus.clone(), pool.clone(), CONSUMER)
        .subscribe(subscriber())
        .start();
    let health = bus.health();
    let dlq = names.dead_letter.as_str();
    within("every event applied or dead-lettered", 60, || {
        let health = health.clone();
        async move {
            let c = health.snapshot();
            (c.applied + c.dead_lettered == EVENTS as u64 && ns_ref.depth(dlq).await == 1)
                .then_some(c)
        }
    })
    .await;
    bus.shutdown().await;

    let (per_event, per_tx) = read_ledger(&pool).await;
    assert!(
        !per_event.contains_key(&poison),
        "the poison's write was rolled back"
    );
    assert_eq!(per_event.len(), EVENTS - 1, "every good event applied");
    assert!(
        per_event.values().all(|n| *n == 1),
        "each applied once: {per_event:?}"
    );
    let largest = per_tx.values().copied().max().unwrap_or(0);
    assert!(
        largest > 1 && largest <= 8,
        "a backlog is applied several deliveries per transaction, at most `batch`: {per_tx:?}"
    );
    let c = health.snapshot();
    assert_eq!((c.applied, c.dead_lettered, c.duplicates), (199, 1, 0));
    let dead = events::admin::list_dead_letters(&ns.bus, CONSUMER, 10)
        .await
        .expect("the dead letters");
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].id(), Some(poison.to_string()));

    pool.close().await;
    ns.remove()
        .await
        .expect("removing the test's database and queues");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copies_of_an_event_in_one_batch_are_applied_once() {
    const COPIES_OF: usize = 4;
    let (mut ns, pool) = with_ledger(|bus| {
        bus.prefetch = 64;
        // One handler slot: the whole backlog comes as one batch of eight.
        bus.concurrency = 1;
        bus.batch = 8;
    })
    .await;
    let names = QueueNames::new(&ns.bus, CONSUMER);
    let subscriber = || Subscriber::new(CONSUMER).on::<CartCheckedOut, _>(Ledger { poison: None });
    events::admin::declare_topology(&ns.bus, &subscriber())
        .await
        .expect("declaring the queues");

    // Each event queued twice: published, then marked unsent and published again (what a
    // relay that dies between the confirm and its commit does).
    let outbox = Outbox::new("producer");
    e2e::write_checked_out(&pool, &outbox, "twice", COPIES_OF).await;
    let ns_ref = &ns;
    let main = names.main.as_str();
    for queued in [COPIES_OF, 2 * COPIES_OF] {
        let producer = Bus::new(ns.bus.clone(), pool.clone(), "producer").start();
        within("the copies to be queued", 60, || async move {
            (ns_ref.depth(main).await == queued as u32).then_some(())
        })
        .await;
        producer.shutdown().await;
        sqlx::query("UPDATE events_outbox SET sent_at = NULL")
            .execute(&pool)
            .await
            .expect("marking the rows unsent");
    }
    sqlx::query("DELETE FROM events_outbox")
        .execute(&pool)
        .await
        .expect("emptying the outbox");

    let bus = Bus::new(ns.bus.clone(), pool.clone(), CONSUMER)
        .subscribe(subscriber())
        .start();
    let health = bus.health();
    within("every copy handled", 60, || {
        let health = health.clone();
        async move {
            let c = health.snapshot();
            (c.applied + c.duplicates == 2 * COPIES_OF as u64).then_some(())
        }
    })
    .await;
    bus.shutdown().await;

    let (per_event, _) = read_ledger(&pool).await;
    assert_eq!(per_event.len(), COPIES_OF, "every event applied");
    assert!(
        per_event.values().all(|n| *n == 1),
        "each once: {per_event:?}"
    );
    let c = health.snapshot();
    assert_eq!(
        (c.applied, c.duplicates),
        (COPIES_OF as u64, COPIES_OF as u64)
    );

    pool.close().await;
    ns.remove()
        .await
        .expect("removing the test's database and queues");
}
