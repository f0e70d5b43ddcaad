//! The end-to-end harness: a whole shop (checkout, cart, inventory) per test, against the real
//! RabbitMQ and PostgreSQL, isolated by a unique id (its own databases, exchange and queues)
//! and removed again when the test ends, even when it panics.

pub mod broker;
pub mod fault_shop;
pub mod proxy;
pub mod workload;

use std::collections::HashSet;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use checkout::{CatalogueEntry, Order};
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::{BasicProperties, Confirmation};
use reqwest::StatusCode;
use reqwest::header::CONTENT_TYPE;
use serde_json::Value;
use sqlx::PgPool;
use uuid::Uuid;

pub use inventory::Product;
pub use shop::{Settings, ShopClient, System, Which};

/// How long any eventual condition may take before the test fails.
pub const DEADLINE: Duration = Duration::from_secs(30);
/// How often a condition is checked.
pub const POLL: Duration = Duration::from_millis(50);
/// The consumers every shop has (queue and inbox names).
pub const CONSUMERS: [&str; 3] = ["checkout", "cart", "inventory"];

/// Waits until `check` returns `Some` (at most [`DEADLINE`]); panics naming `what` otherwise.
pub async fn wait_for<T, F, Fut>(what: &str, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    shop::wait::until(what, DEADLINE, POLL, check)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

/// A test id unique across the tests of this process (checked) and across processes and
/// runs (40 random bits of a UUID v7: its leading characters are the timestamp, so they would
/// repeat between tests started in the same few hundred milliseconds).
pub fn unique_id() -> String {
    static TAKEN: OnceLock<Mutex<HashSet<String>>> = OnceLock::new();
    let taken = TAKEN.get_or_init(Default::default);
    loop {
        let simple = Uuid::now_v7().simple().to_string();
        let id = format!("t{}", &simple[simple.len() - 10..]);
        if taken
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id.clone())
        {
            return id;
        }
    }
}

/// The settings of an isolated shop named `id`.
pub fn test_settings(id: &str) -> Settings {
    let any_port: SocketAddr = "127.0.0.1:0".parse().expect("an address");
    Settings {
        database_prefix: format!("{id}_"),
        exchange: format!("test.{id}"),
        queue_prefix: format!("test.{id}."),
        checkout_addr: any_port,
        cart_addr: any_port,
        inventory_addr: any_port,
        db_pool: 4,
        concurrency: 4,
        prefetch: 16,
        // The rest (broker and server URLs, queue type, retries) from the defaults and the
        // environment.
        ..Settings::default()
    }
}

/// Drops the shop's three databases and deletes its queues and exchange.
pub async fn remove_everything(settings: &Settings) -> anyhow::Result<()> {
    let mut errors = Vec::new();
    for which in Which::ALL {
        if let Err(e) = kit::db::drop_database(&settings.database_url(which)).await {
            errors.push(format!("dropping the {} database: {e:#}", which.name()));
        }
    }
    if let Err(e) = events::admin::delete_topology(&settings.bus(), &CONSUMERS).await {
        errors.push(format!(
            "deleting the queues and exchange {}: {e}",
            settings.exchange
        ));
    }
    if errors.is_empty() {
        Ok(())
    } else {
        anyhow::bail!(errors.join("; "))
    }
}

/// One whole shop, started for one test.
pub struct TestShop {
    pub id: String,
    pub client: ShopClient,
    pub settings: Settings,
    system: Option<System>,
    removed: bool,
}

impl TestShop {
    /// Starts the three services on fresh databases and queues and waits until each is ready
    /// (database reachable, queues declared and consumed), so no event can go unrouted.
    pub async fn start() -> TestShop {
        let id = unique_id();
        let settings = test_settings(&id);
        let system = match System::start(&settings).await {
            Ok(system) => system,
            Err(e) => {
                let _ = remove_everything(&settings).await;
                panic!("shop {id} did not start: {e:#}");
            }
        };
        let client = ShopClient::new(
            system.addr(Which::Checkout),
            system.addr(Which::Cart),
            system.addr(Which::Inventory),
        );
        let shop = TestShop {
            id,
            client,
            settings,
            system: Some(system),
            removed: false,
        };
        for which in Which::ALL {
            let client = &shop.client;
            wait_for(&format!("{} to be ready", which.name()), || async move {
                client.ready(which).await.then_some(())
            })
            .await;
        }
        shop
    }

    /// Shuts the services down, then removes their databases, queues and exchange.
    pub async fn stop(mut self) {
        if let Some(system) = self.system.take() {
            system.shutdown().await;
        }
        let result = remove_everything(&self.settings).await;
        self.removed = true;
        if let Err(e) = result {
            panic!("shop {} was not removed: {e:#}", self.id);
        }
    }

    pub fn system(&self) -> &System {
        self.system.as_ref().expect("the shop is running")
    }

    pub fn health(&self, which: Which) -> Arc<events::BusHealth> {
        let s = self.system();
        match which {
            Which::Checkout => s.checkout.bus_health(),
            Which::Cart => s.cart.bus_health(),
            Which::Inventory => s.inventory.bus_health(),
        }
    }

    pub fn counters(&self, which: Which) -> events::CountersSnapshot {
        self.health(which).snapshot()
    }

    pub fn pool(&self, which: Which) -> &PgPool {
        let s = self.system();
        match which {
            Which::Checkout => &s.checkout.pool,
            Which::Cart => &s.cart.pool,
            Which::Inventory => &s.inventory.pool,
        }
    }

    pub fn url(&self, which: Which, path: &str) -> String {
        self.client.url(which, path)
    }

    /// Registers a product with inventory, then waits until checkout's catalogue replica has
    /// learnt it (price and first stock figure) from inventory's events.
    pub async fn register(&self, sku: &str, unit_price_cents: i64, stock: i64) -> Product {
        let name = format!("product {sku}");
        let product = self
            .client
            .register_product(sku, &name, unit_price_cents, stock)
            .await
            .unwrap_or_else(|e| panic!("registering {sku}: {e}"));
        assert_eq!(
            product,
            Product {
                sku: sku.into(),
                name: name.clone(),
                unit_price_cents,
                stock,
                version: 1
            }
        );
        let entry = self
            .wait_catalogue(&format!("checkout's catalogue to learn {sku}"), sku, |e| {
                e.unit_price_cents.is_some() && e.stock_version >= 1
            })
            .await;
        assert_eq!(
            entry,
            CatalogueEntry {
                sku: sku.into(),
                name: Some(name),
                unit_price_cents: Some(unit_price_cents),
                stock,
                stock_version: 1,
                reserved: 0,
                available: stock,
            }
        );
        product
    }

    /// Checkout's catalogue entry for `sku`, if it has one.
    pub async fn catalogue_entry(&self, sku: &str) -> Option<CatalogueEntry> {
        let catalogue = self.client.catalogue().await.expect("GET /catalogue");
        catalogue.into_iter().find(|e| e.sku == sku)
    }

    /// Waits until checkout's catalogue entry for `sku` satisfies `done`, and returns it.
    pub async fn wait_catalogue(
        &self,
        what: &str,
        sku: &str,
        done: impl Fn(&CatalogueEntry) -> bool,
    ) -> CatalogueEntry {
        let done = &done;
        wait_for(what, || async move {
            self.catalogue_entry(sku).await.filter(|e| done(e))
        })
        .await
    }

    /// Waits until both background effects of an order (cart and inventory) are recorded.
    pub async fn wait_order_settled(&self, order_id: Uuid) -> Order {
        wait_for(&format!("order {order_id} to be settled"), || async move {
            let order = self
                .client
                .order(order_id)
                .await
                .expect("GET /orders/{id}")?;
            (order.cart_updated && order.inventory_updated).then_some(order)
        })
        .await
    }

    /// Inventory's stock of `sku`.
    pub async fn stock(&self, sku: &str) -> i64 {
        self.client
            .product(sku)
            .await
            .expect("GET /products/{sku}")
            .unwrap_or_else(|| panic!("inventory has no product {sku}"))
            .stock
    }

    /// Publishes `body` to this shop's exchange like a producer's relay would (persistent,
    /// CloudEvents content type, publisher confirms), and asserts a queue took it.
    pub async fn publish_raw(&self, routing_key: &str, body: &[u8]) {
        let bus = self.settings.bus();
        let conn = events::admin::connect(&bus)
            .await
            .expect("connecting to RabbitMQ");
        let channel = conn.create_channel().await.expect("a channel");
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .expect("confirm mode");
        let properties = BasicProperties::default()
            .with_content_type(events::envelope::CONTENT_TYPE.into())
            .with_delivery_mode(2)
            .with_type(routing_key.into());
        let confirmation = channel
            .basic_publish(
                bus.exchange.as_str().into(),
                routing_key.into(),
                BasicPublishOptions {
                    mandatory: true,
                    ..Default::default()
                },
                body,
                properties,
            )
            .await
            .expect("publishing")
            .await
            .expect("the broker's confirm");
        assert!(
            matches!(confirmation, Confirmation::Ack(None)),
            "{routing_key} was not routed to any queue: {confirmation:?}"
        );
        let _ = conn.close(200, "published".into()).await;
    }

    /// Rows in a service's outbox, of `event_type` or of any type.
    pub async fn outbox_count(&self, which: Which, event_type: Option<&str>) -> i64 {
        sqlx::query_scalar(
            "SELECT count(*) FROM events_outbox WHERE $1::text IS NULL OR event_type = $1",
        )
        .bind(event_type)
        .fetch_one(self.pool(which))
        .await
        .expect("counting outbox rows")
    }

    /// The payloads (whole CloudEvents envelopes) of a service's outbox rows of `event_type`,
    /// in the order they were written.
    pub async fn outbox_payloads(&self, which: Which, event_type: &str) -> Vec<String> {
        sqlx::query_scalar("SELECT payload FROM events_outbox WHERE event_type = $1 ORDER BY seq")
            .bind(event_type)
            .fetch_all(self.pool(which))
            .await
            .expect("reading outbox rows")
    }

    /// Inbox rows of a service for `event_id`.
    pub async fn inbox_count(&self, which: Which, event_id: Uuid) -> i64 {
        sqlx::query_scalar(
            "SELECT count(*) FROM events_inbox WHERE consumer = $1 AND event_id = $2",
        )
        .bind(which.name())
        .bind(event_id)
        .fetch_one(self.pool(which))
        .await
        .expect("counting inbox rows")
    }

    /// POSTs `body` as JSON.
    pub async fn post_json(&self, which: Which, path: &str, body: &Value) -> reqwest::Response {
        self.client
            .http()
            .post(self.url(which, path))
            .json(body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST {path}: {e}"))
    }

    /// POSTs a checkout and expects it to be accepted: 201 with the paid order.
    pub async fn checkout_ok(&self, body: &Value) -> Order {
        let response = self.post_json(Which::Checkout, "/checkouts", body).await;
        let status = response.status();
        let text = response.text().await.expect("a body");
        assert_eq!(
            status,
            StatusCode::CREATED,
            "POST /checkouts {body}: {text}"
        );
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("an order: {e}: {text}"))
    }
}

impl Drop for TestShop {
    /// Best effort when a test panicked before `stop`: shut the services down on the test's
    /// runtime (if it still runs), then remove the databases and queues from a thread of its
    /// own. Bounded: a wedged cleanup cannot hang the test run.
    fn drop(&mut self) {
        if self.removed {
            return;
        }
        let stopped =
            self.system
                .take()
                .and_then(|system| match tokio::runtime::Handle::try_current() {
                    // A multi-thread runtime keeps running the services while this thread waits.
                    // (On a current-thread one they are frozen while we block, and die with it.)
                    Ok(handle)
                        if handle.runtime_flavor()
                            != tokio::runtime::RuntimeFlavor::CurrentThread =>
                    {
                        let (stopped_tx, stopped_rx) = std::sync::mpsc::channel::<()>();
                        handle.spawn(async move {
                            system.shutdown().await;
                            let _ = stopped_tx.send(());
                        });
                        Some(stopped_rx)
                    }
                    _ => {
                        drop(system);
                        None
                    }
                });
        let settings = self.settings.clone();
        let id = self.id.clone();
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        std::thread::spawn(move || {
            // Services first, so none of them redeclares what is being deleted.
            if let Some(stopped) = stopped {
                let _ = stopped.recv_timeout(Duration::from_secs(15));
            }
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            match runtime {
                Ok(rt) => match rt.block_on(async {
                    tokio::time::timeout(Duration::from_secs(30), remove_everything(&settings))
                        .await
                }) {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => eprintln!("cleanup of shop {id} failed: {e:#}"),
                    Err(_) => eprintln!("cleanup of shop {id} timed out"),
                },
                Err(e) => eprintln!("cleanup of shop {id}: no runtime: {e}"),
            }
            let _ = done_tx.send(());
        });
        let _ = done_rx.recv_timeout(Duration::from_secs(60));
    }
}

/// Asserts `response` is a problem+json of `status` (RFC 9457 members present and
/// consistent) and returns its body.
pub async fn expect_problem(response: reqwest::Response, status: StatusCode) -> Value {
    let got = response.status();
    let content_type = response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let text = response.text().await.expect("a body");
    assert_eq!(got, status, "status; body: {text}");
    assert_eq!(
        content_type, "application/problem+json",
        "content type; body: {text}"
    );
    let body: Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("a JSON problem: {e}: {text}"));
    assert_eq!(body["status"], Value::from(status.as_u16()), "{body}");
    assert_eq!(
        body["title"],
        Value::from(status.canonical_reason().expect("a reason")),
        "{body}"
    );
    let detail = body["detail"]
        .as_str()
        .unwrap_or_else(|| panic!("no detail: {body}"));
    assert!(!detail.is_empty(), "{body}");
    let kind = body["type"]
        .as_str()
        .unwrap_or_else(|| panic!("no type: {body}"));
    assert!(kind.starts_with("/problems/"), "{body}");
    body
}

/// Like [`expect_problem`], and the problem names `field`.
pub async fn expect_field_problem(
    response: reqwest::Response,
    status: StatusCode,
    field: &str,
) -> Value {
    let body = expect_problem(response, status).await;
    assert_eq!(body["field"], Value::from(field), "{body}");
    body
}

/// Parses an outbox payload (a CloudEvents envelope) as JSON.
pub fn envelope(payload: &str) -> Value {
    serde_json::from_str(payload).unwrap_or_else(|e| panic!("an envelope: {e}: {payload}"))
}

/// The `id` of an outbox payload.
pub fn event_id(payload: &str) -> Uuid {
    let v = envelope(payload);
    v["id"]
        .as_str()
        .and_then(|s| Uuid::parse_str(s).ok())
        .unwrap_or_else(|| panic!("no id in {payload}"))
}

/// Writes `n` `cart.checked_out` events (carts `<label>-<i>`, nothing removed) to `outbox` in
/// one transaction of `pool`: traffic for the tests of the library alone.
pub async fn write_checked_out(
    pool: &PgPool,
    outbox: &events::outbox::Outbox,
    label: &str,
    n: usize,
) -> Vec<events::Envelope<events::contracts::CartCheckedOut>> {
    let mut tx = pool.begin().await.expect("a transaction");
    let mut envelopes = Vec::with_capacity(n);
    for i in 0..n {
        let envelope = outbox
            .publish(
                &mut tx,
                events::contracts::CartCheckedOut {
                    cart_id: format!("{label}-{i}"),
                    order_id: Uuid::now_v7(),
                    removed: vec![],
                },
            )
            .await
            .expect("writing to the outbox");
        envelopes.push(envelope);
    }
    tx.commit().await.expect("commit");
    envelopes
}
