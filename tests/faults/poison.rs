//! A poison event (its handler always fails) at the library level, with the real broker and
//! database: it is retried through the hold queues, dead-lettered after `max_attempts` with
//! its reasons, and the events behind it keep flowing (one handler at a time, so nothing but
//! the retry path lets them past it).

use std::time::Duration;

use anyhow::anyhow;
use async_trait::async_trait;
use e2e::broker::{QueueStats, queues_when};
use e2e::{Settings, unique_id};
use events::contracts::CartCheckedOut;
use events::outbox::Outbox;
use events::topology::QueueNames;
use events::{
    Bus, BusConfig, Context, CountersSnapshot, Envelope, Handler, HandlerError, Subscriber,
};
use sqlx::PgPool;
use uuid::Uuid;

use crate::{serial, wait};

const EVENTS: usize = 50;
const CONSUMER: &str = "ledger";

/// Records every event in `ledger`, except the poison, which always fails (transiently, so it
/// goes the whole retry path).
struct Ledger {
    poison: Uuid,
}

#[async_trait]
impl Handler<CartCheckedOut> for Ledger {
    async fn handle(
        &self,
        ctx: &mut Context<'_>,
        event: Envelope<CartCheckedOut>,
    ) -> Result<(), HandlerError> {
        if event.meta.id == self.poison {
            return Err(HandlerError::transient(anyhow!(
                "poison event {}: this handler always fails",
                self.poison
            )));
        }
        sqlx::query("INSERT INTO ledger (event_id, order_id) VALUES ($1, $2)")
            .bind(event.meta.id)
            .bind(event.data.order_id)
            .execute(&mut *ctx.tx)
            .await?;
        Ok(())
    }
}

/// This test's database and queues, removed at the end even when it panics.
struct Namespace {
    database_url: String,
    bus: BusConfig,
    removed: bool,
}

impl Namespace {
    async fn remove(&self) -> anyhow::Result<()> {
        kit::db::drop_database(&self.database_url).await?;
        events::admin::delete_topology(&self.bus, &[CONSUMER]).await?;
        Ok(())
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        if self.removed {
            return;
        }
        let (url, bus) = (self.database_url.clone(), self.bus.clone());
        let done = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime");
            let ns = Namespace {
                database_url: url,
                bus,
                removed: true,
            };
            if let Err(e) = rt.block_on(async {
                tokio::time::timeout(Duration::from_secs(30), ns.remove()).await
            }) {
                eprintln!("cleanup timed out: {e}");
            }
        });
        let _ = done.join();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_event_is_dead_lettered_and_the_rest_flow() {
    let _serial = serial().await;
    let id = unique_id();
    let defaults = Settings::default();
    let mut ns = Namespace {
        database_url: shop::settings::with_database(
            &defaults.database_url,
            &format!("{id}_ledger"),
        ),
        bus: BusConfig {
            amqp_url: defaults.amqp_url.clone(),
            exchange: format!("test.{id}"),
            queue_prefix: format!("test.{id}."),
            prefetch: 1,
            concurrency: 1,
            max_attempts: 3,
            retry_delays: vec![Duration::from_millis(200), Duration::from_millis(400)],
            ..BusConfig::default()
        },
        removed: false,
    };
    kit::db::ensure_database(&ns.database_url)
        .await
        .expect("creating the database");
    let pool: PgPool = kit::db::pool(&ns.database_url, 4).expect("a pool");
    events::migrate(&pool).await.expect("the outbox and inbox");
    sqlx::query("CREATE TABLE ledger (event_id UUID PRIMARY KEY, order_id UUID NOT NULL)")
        .execute(&pool)
        .await
        .expect("the ledger table");

    // The poison first in the outbox, so first in the queue; 49 good events behind it.
    let outbox = Outbox::new("ledger");
    let envelopes = e2e::write_checked_out(&pool, &outbox, "cart", EVENTS).await;
    let poison = envelopes[0].meta.id;
    let good: Vec<Uuid> = envelopes[1..].iter().map(|e| e.meta.id).collect();
    let poison_payload: String =
        sqlx::query_scalar("SELECT payload FROM events_outbox WHERE event_id = $1")
            .bind(poison)
            .fetch_one(&pool)
            .await
            .expect("the poison's payload");

    let bus = Bus::new(ns.bus.clone(), pool.clone(), "ledger")
        .subscribe(Subscriber::new(CONSUMER).on::<CartCheckedOut, _>(Ledger { poison }))
        .start();
    let health = bus.health();
    let names = QueueNames::new(&ns.bus, CONSUMER);
    let config = &ns.bus;
    let names_ref = &names;
    let counters = wait(
        "every event applied or dead-lettered, the queues drained",
        || {
            let health = health.clone();
            async move {
                let c = health.snapshot();
                if c.applied + c.dead_lettered < EVENTS as u64 {
                    return None;
                }
                let mut queues = vec![names_ref.main.clone()];
                queues.extend(
                    config
                        .distinct_retry_delays()
                        .into_iter()
                        .map(|d| names_ref.hold(d)),
                );
                for q in queues {
                    if events::admin::queue_depth(config, &q).await.ok()?? != 0 {
                        return None;
                    }
                }
                Some(c)
            }
        },
    )
    .await;
    assert_eq!(
        counters,
        CountersSnapshot {
            applied: (EVENTS - 1) as u64,
            duplicates: 0,
            retried: 2,
            dead_lettered: 1
        }
    );

    // The original was acked: nothing ready or unacked anywhere but the one dead letter.
    let mut expected_queues = vec![
        QueueStats {
            name: names.main.clone(),
            ready: 0,
            unacked: 0,
        },
        QueueStats {
            name: names.dead_letter.clone(),
            ready: 1,
            unacked: 0,
        },
    ];
    for d in config.distinct_retry_delays() {
        expected_queues.push(QueueStats {
            name: names.hold(d),
            ready: 0,
            unacked: 0,
        });
    }
    expected_queues.sort_by(|a, b| a.name.cmp(&b.name));
    assert_eq!(
        queues_when(&config.queue_prefix, &expected_queues).await,
        expected_queues
    );

    // Exactly one copy in the dead-letter queue, with its reasons.
    let letters = events::admin::list_dead_letters(config, CONSUMER, 10)
        .await
        .expect("browsing the dead-letter queue");
    assert_eq!(letters.len(), 1, "{letters:#?}");
    let letter = &letters[0];
    let error = format!("poison event {poison}: this handler always fails");
    assert_eq!(
        (
            letter.message_id.as_deref(),
            letter.event_type.as_deref(),
            letter.reason.as_deref(),
            letter.attempts,
            letter.first_error.as_deref(),
            letter.last_error.as_deref(),
            letter.original_queue.as_deref(),
            letter.body.as_str(),
        ),
        (
            Some(poison.to_string().as_str()),
            Some("cart.checked_out.v1"),
            Some("retries-exhausted"),
            Some(3),
            Some(error.as_str()),
            Some(error.as_str()),
            Some(names.main.as_str()),
            poison_payload.as_str(),
        )
    );
    assert!(letter.dead_lettered_at.is_some());

    // Every other event applied once; the poison never.
    let ledger: Vec<Uuid> = sqlx::query_scalar("SELECT event_id FROM ledger ORDER BY event_id")
        .fetch_all(&pool)
        .await
        .expect("reading the ledger");
    let mut inbox: Vec<Uuid> = sqlx::query_scalar("SELECT event_id FROM events_inbox")
        .fetch_all(&pool)
        .await
        .expect("reading the inbox");
    inbox.sort();
    let mut expected = good.clone();
    expected.sort();
    assert_eq!(ledger, expected, "the ledger");
    assert_eq!(inbox, expected, "the inbox");
    let unsent: i64 =
        sqlx::query_scalar("SELECT count(*) FROM events_outbox WHERE sent_at IS NULL")
            .fetch_one(&pool)
            .await
            .expect("counting unsent rows");
    assert_eq!(unsent, 0);

    bus.shutdown().await;
    pool.close().await;
    eprintln!(
        "poison event: events sent {EVENTS} / applied {} / duplicates suppressed {} / dead-lettered {}",
        counters.applied,
        counters.duplicates,
        letters.len()
    );
    ns.remove()
        .await
        .expect("removing the test's database and queues");
    ns.removed = true;
}
