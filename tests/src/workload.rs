//! The fault tests' workload and its conservation check, written once.
//!
//! A [`Workload`] is a fixed plan: a few products with enough stock, and a few hundred carts,
//! each filled through cart's API (`PUT`), then checked out with 1–3 lines through checkout's
//! API. Some carts hold more than they buy, so a cart's leftovers are known exactly. The
//! test places the checkouts in slices around its fault; [`Workload::check`] then waits for
//! the system to settle and checks that nothing was lost, applied twice or left behind.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::ops::Range;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use checkout::{CatalogueEntry, Order};
use events::topology::QueueNames;
use futures_util::{StreamExt, stream};
use inventory::Product;
use shop::client::CheckoutLine;
use sqlx::PgPool;
use uuid::Uuid;

use crate::broker::QueueStats;
use crate::fault_shop::FaultShop;
use crate::{CONSUMERS, ShopClient, Which};

/// How long the system may take to settle after the last checkout (and a fault).
pub const SETTLE: Duration = Duration::from_secs(120);
const POLL: Duration = Duration::from_millis(200);
/// Checkouts in flight at once.
const CONCURRENCY: usize = 8;
/// Units of each product left in stock at the end.
const SPARE: i64 = 25;

pub struct ProductPlan {
    pub sku: String,
    pub name: String,
    pub unit_price_cents: i64,
    /// Opening stock: what the plan sells of it plus [`SPARE`].
    pub opening: i64,
}

pub struct CheckoutPlan {
    pub cart_id: String,
    /// What the checkout buys (distinct skus).
    pub lines: Vec<(String, i64)>,
    /// What the cart holds before (`PUT` one item at a time).
    pub cart: Vec<(String, i64)>,
    /// What the cart holds after the checkout took effect, sorted by sku.
    pub leftover: Vec<(String, i64)>,
}

/// A small deterministic generator (splitmix64): the same plan on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// What the conservation check expects beyond "everything applied once".
#[derive(Debug, Clone, Default)]
pub struct Expect {
    /// Messages each consumer's dead-letter queue must hold (checkout, cart, inventory).
    dead_letters: BTreeMap<&'static str, u64>,
    /// Whether each consumer's `applied` counter must equal its inbox rows (true unless the
    /// test cuts a service off its database: a commit whose answer was lost is applied, then
    /// counted as a duplicate when it comes back).
    pub counters_exact: bool,
}

impl Expect {
    /// Nothing dead-lettered; counters exact.
    pub fn clean() -> Expect {
        Expect {
            dead_letters: BTreeMap::new(),
            counters_exact: true,
        }
    }

    pub fn dead_letters(mut self, which: Which, count: u64) -> Expect {
        self.dead_letters.insert(which.name(), count);
        self
    }

    pub fn inexact_counters(mut self) -> Expect {
        self.counters_exact = false;
        self
    }

    fn dead_letters_of(&self, consumer: &str) -> u64 {
        self.dead_letters.get(consumer).copied().unwrap_or(0)
    }
}

/// The figures every fault test prints.
#[derive(Debug, Clone)]
pub struct Figures {
    /// Rows in the three outboxes.
    pub sent: i64,
    /// Inbox rows of the three consumers.
    pub applied: i64,
    /// Duplicates the consumers skipped, summed over their incarnations in this process.
    pub duplicates: u64,
    /// Messages in the three dead-letter queues.
    pub dead_lettered: u64,
    /// Services one of whose processes was killed: what it skipped is not counted.
    pub uncounted: Vec<&'static str>,
}

impl fmt::Display for Figures {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "events sent {} / applied {} / duplicates suppressed {} / dead-lettered {}",
            self.sent, self.applied, self.duplicates, self.dead_lettered
        )?;
        if !self.uncounted.is_empty() {
            write!(
                f,
                " (not counting what {}'s killed process skipped)",
                self.uncounted.join(", ")
            )?;
        }
        Ok(())
    }
}

pub struct Workload {
    pub products: Vec<ProductPlan>,
    pub checkouts: Vec<CheckoutPlan>,
    orders: Mutex<Vec<Option<Uuid>>>,
    placed: AtomicUsize,
}

impl Workload {
    /// `checkouts` checkouts over 10 products.
    pub fn new(checkouts: usize) -> Workload {
        const PRODUCTS: usize = 10;
        let mut rng = Rng(0x5eed_f00d);
        let skus: Vec<String> = (0..PRODUCTS).map(|i| format!("SKU-{i:02}")).collect();
        let mut plans = Vec::with_capacity(checkouts);
        for i in 0..checkouts {
            let mut pool: Vec<&String> = skus.iter().collect();
            let n = 1 + rng.below(3);
            let mut lines = Vec::with_capacity(n);
            for _ in 0..n {
                let sku = pool.swap_remove(rng.below(pool.len()));
                lines.push((sku.clone(), 1 + rng.below(3) as i64));
            }
            let mut cart = lines.clone();
            let mut leftover = Vec::new();
            // Every 5th cart holds one more of its first line than it buys...
            if i % 5 == 0 {
                cart[0].1 += 1;
                leftover.push((cart[0].0.clone(), 1));
            }
            // ...and every 7th an item it doesn't buy at all.
            if i % 7 == 0 {
                let other = pool[rng.below(pool.len())].clone();
                cart.push((other.clone(), 2));
                leftover.push((other, 2));
            }
            leftover.sort();
            plans.push(CheckoutPlan {
                cart_id: format!("cart-{i:04}"),
                lines,
                cart,
                leftover,
            });
        }
        let mut sold: BTreeMap<&str, i64> = BTreeMap::new();
        for plan in &plans {
            for (sku, q) in &plan.lines {
                *sold.entry(sku.as_str()).or_default() += q;
            }
        }
        let products = skus
            .iter()
            .enumerate()
            .map(|(i, sku)| ProductPlan {
                sku: sku.clone(),
                name: format!("product {sku}"),
                unit_price_cents: 100 + 37 * i as i64,
                opening: sold.get(sku.as_str()).copied().unwrap_or(0) + SPARE,
            })
            .collect();
        Workload {
            products,
            checkouts: plans,
            orders: Mutex::new(vec![None; checkouts]),
            placed: AtomicUsize::new(0),
        }
    }

    fn price(&self, sku: &str) -> i64 {
        self.products
            .iter()
            .find(|p| p.sku == sku)
            .map(|p| p.unit_price_cents)
            .unwrap_or_else(|| panic!("no product {sku} in the plan"))
    }

    /// Units of `sku` the plan sells, and in how many lines.
    fn sold(&self, sku: &str) -> (i64, i64) {
        self.checkouts
            .iter()
            .flat_map(|c| &c.lines)
            .filter(|(s, _)| s == sku)
            .fold((0, 0), |(units, lines), (_, q)| (units + q, lines + 1))
    }

    /// Registers the products with inventory (works while the broker is down: the events
    /// wait in inventory's outbox).
    pub async fn register(&self, client: &ShopClient) {
        for p in &self.products {
            let product = client
                .register_product(&p.sku, &p.name, p.unit_price_cents, p.opening)
                .await
                .unwrap_or_else(|e| panic!("registering {}: {e}", p.sku));
            assert_eq!(
                product,
                Product {
                    sku: p.sku.clone(),
                    name: p.name.clone(),
                    unit_price_cents: p.unit_price_cents,
                    stock: p.opening,
                    version: 1
                }
            );
        }
    }

    /// Waits until checkout's catalogue replica knows every product (from inventory's
    /// events), with its price and opening stock.
    pub async fn wait_catalogue(&self, client: &ShopClient) {
        let expected: Vec<CatalogueEntry> = self
            .products
            .iter()
            .map(|p| CatalogueEntry {
                sku: p.sku.clone(),
                name: Some(p.name.clone()),
                unit_price_cents: Some(p.unit_price_cents),
                stock: p.opening,
                stock_version: 1,
                reserved: 0,
                available: p.opening,
            })
            .collect();
        let expected = &expected;
        shop::wait::until(
            "checkout's catalogue to learn every product",
            SETTLE,
            POLL,
            || async move {
                let mut got = client.catalogue().await.ok()?;
                got.sort_by(|a, b| a.sku.cmp(&b.sku));
                (&got == expected).then_some(())
            },
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    }

    /// Fills every cart of the plan through cart's API.
    pub async fn fill_carts(&self, client: &ShopClient) {
        let puts: Vec<(&str, &str, i64)> = self
            .checkouts
            .iter()
            .flat_map(|c| {
                c.cart
                    .iter()
                    .map(|(sku, q)| (c.cart_id.as_str(), sku.as_str(), *q))
            })
            .collect();
        stream::iter(puts)
            .map(|(cart_id, sku, q)| async move {
                client
                    .set_cart_item(cart_id, sku, q)
                    .await
                    .unwrap_or_else(|e| panic!("PUT {cart_id}/{sku}: {e}"));
            })
            .buffer_unordered(16)
            .collect::<()>()
            .await;
    }

    /// Registers the products, waits for checkout's catalogue, fills the carts.
    pub async fn setup(&self, client: &ShopClient) {
        self.register(client).await;
        self.wait_catalogue(client).await;
        self.fill_carts(client).await;
    }

    /// Places the checkouts `range` of the plan, [`CONCURRENCY`] at a time; each must be
    /// accepted (201, paid, the planned total).
    pub async fn place(&self, client: &ShopClient, range: Range<usize>) {
        self.place_on(std::slice::from_ref(client), range).await
    }

    /// Like [`Workload::place`], checkout #i going to `clients[i % clients.len()]` (one per
    /// checkout instance).
    pub async fn place_on(&self, clients: &[ShopClient], range: Range<usize>) {
        assert!(!clients.is_empty(), "no client to place checkouts with");
        stream::iter(range)
            .map(|i| async move {
                let client = &clients[i % clients.len()];
                let plan = &self.checkouts[i];
                let lines: Vec<CheckoutLine> = plan
                    .lines
                    .iter()
                    .map(|(sku, quantity)| CheckoutLine {
                        sku: sku.clone(),
                        quantity: *quantity,
                    })
                    .collect();
                let order = client
                    .checkout(&plan.cart_id, None, &lines, "tok_visa")
                    .await
                    .unwrap_or_else(|e| panic!("checkout #{i} ({}): {e}", plan.cart_id));
                assert_eq!(order.status, "paid", "checkout #{i}");
                assert_eq!(order.total_cents, self.total(plan), "checkout #{i}");
                let mut orders = self.orders.lock().unwrap_or_else(|p| p.into_inner());
                assert!(orders[i].is_none(), "checkout #{i} placed twice");
                orders[i] = Some(order.order_id);
                drop(orders);
                self.placed.fetch_add(1, Ordering::SeqCst);
            })
            .buffer_unordered(CONCURRENCY)
            .collect::<()>()
            .await;
    }

    /// Checkouts placed so far.
    pub fn placed(&self) -> usize {
        self.placed.load(Ordering::SeqCst)
    }

    fn total(&self, plan: &CheckoutPlan) -> i64 {
        plan.lines.iter().map(|(s, q)| q * self.price(s)).sum()
    }

    /// The order ids of the checkouts `range` (all placed).
    pub fn order_ids(&self, range: Range<usize>) -> Vec<Uuid> {
        let orders = self.orders.lock().unwrap_or_else(|p| p.into_inner());
        range
            .map(|i| orders[i].unwrap_or_else(|| panic!("checkout #{i} was never placed")))
            .collect()
    }

    fn orders(&self) -> Vec<(usize, Uuid)> {
        let orders = self.orders.lock().unwrap_or_else(|p| p.into_inner());
        orders
            .iter()
            .enumerate()
            .map(|(i, o)| {
                (
                    i,
                    o.unwrap_or_else(|| panic!("checkout #{i} was never placed")),
                )
            })
            .collect()
    }

    /// Waits until the whole system has settled, then checks conservation:
    /// - every order shows `cart_updated` and `inventory_updated`, with its planned lines;
    /// - every checked-out cart holds exactly its leftovers;
    /// - each product's stock = opening − units sold (version = 1 + lines sold);
    /// - checkout's catalogue agrees with inventory, nothing reserved;
    /// - every outbox row was sent, and each consumer's inbox holds exactly one row per event
    ///   routed to it (the events of the other services' outboxes);
    /// - the main and hold queues are empty with nothing unacked, and the dead-letter queues
    ///   hold exactly what `expect` says.
    ///
    /// Returns the test's figures.
    pub async fn check(&self, shop: &FaultShop, expect: &Expect) -> Figures {
        let orders = self.orders();
        let n = orders.len() as i64;
        let client = shop.client();
        let (checkout_db, cart_db, inventory_db) = (
            shop.db(Which::Checkout),
            shop.db(Which::Cart),
            shop.db(Which::Inventory),
        );

        // --- wait for the system to settle ---
        until("every order to show both background updates", || async {
            let settled: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM orders
                 WHERE cart_updated_at IS NOT NULL AND inventory_updated_at IS NOT NULL",
            )
            .fetch_one(checkout_db)
            .await
            .ok()?;
            (settled == n).then_some(())
        })
        .await;
        until("every outbox row to be sent", || async {
            let mut pending = 0;
            for db in [checkout_db, cart_db, inventory_db] {
                pending += pending_rows(db).await.ok()?;
            }
            (pending == 0).then_some(())
        })
        .await;
        let completed = outbox_ids(checkout_db).await;
        let from_cart = outbox_ids(cart_db).await;
        let from_inventory = outbox_ids(inventory_db).await;
        let routed_to_checkout: BTreeSet<Uuid> = from_cart
            .keys()
            .chain(from_inventory.keys())
            .copied()
            .collect();
        let expected_inbox = [
            (Which::Checkout, routed_to_checkout.len() as i64),
            (Which::Cart, completed.len() as i64),
            (Which::Inventory, completed.len() as i64),
        ];
        until(
            "every consumer to apply every event routed to it",
            || async {
                for (which, expected) in expected_inbox {
                    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM events_inbox")
                        .fetch_one(shop.db(which))
                        .await
                        .ok()?;
                    if rows != expected {
                        return None;
                    }
                }
                Some(())
            },
        )
        .await;
        let bus = shop.bus();
        until("the main and hold queues to be empty", || async {
            for consumer in CONSUMERS {
                let names = QueueNames::new(&bus, consumer);
                let mut queues = vec![names.main.clone()];
                queues.extend(
                    bus.distinct_retry_delays()
                        .into_iter()
                        .map(|d| names.hold(d)),
                );
                for q in queues {
                    if events::admin::queue_depth(&bus, &q).await.ok()?? != 0 {
                        return None;
                    }
                }
            }
            Some(())
        })
        .await;

        // --- orders ---
        let total_orders: i64 = sqlx::query_scalar("SELECT count(*) FROM orders")
            .fetch_one(checkout_db)
            .await
            .expect("counting orders");
        assert_eq!(total_orders, n, "orders in checkout's database");
        let fetched: Vec<(usize, Uuid, Option<Order>)> = stream::iter(orders.iter().copied())
            .map(|(i, id)| {
                let client = &client;
                async move {
                    let order = client.order(id).await.expect("GET /orders/{id}");
                    (i, id, order)
                }
            })
            .buffer_unordered(16)
            .collect()
            .await;
        for (i, id, order) in fetched {
            let order = order.unwrap_or_else(|| panic!("order {id} (checkout #{i}) is unknown"));
            let plan = &self.checkouts[i];
            let mut lines: Vec<(String, i64, i64)> = order
                .lines
                .iter()
                .map(|l| (l.sku.clone(), l.quantity, l.unit_price_cents))
                .collect();
            lines.sort();
            let mut planned: Vec<(String, i64, i64)> = plan
                .lines
                .iter()
                .map(|(s, q)| (s.clone(), *q, self.price(s)))
                .collect();
            planned.sort();
            assert_eq!(
                (
                    order.order_id,
                    order.cart_id.as_str(),
                    order.status.as_str(),
                    order.total_cents,
                    order.cart_updated,
                    order.inventory_updated,
                    lines
                ),
                (
                    id,
                    plan.cart_id.as_str(),
                    "paid",
                    self.total(plan),
                    true,
                    true,
                    planned
                ),
                "order of checkout #{i}"
            );
        }

        // --- carts ---
        let carts: Vec<(usize, Vec<(String, i64)>)> =
            stream::iter(self.checkouts.iter().enumerate())
                .map(|(i, plan)| {
                    let client = &client;
                    async move {
                        let cart = client.cart(&plan.cart_id).await.expect("GET /carts/{id}");
                        let mut items: Vec<(String, i64)> = cart
                            .items
                            .into_iter()
                            .map(|i| (i.sku, i.quantity))
                            .collect();
                        items.sort();
                        (i, items)
                    }
                })
                .buffer_unordered(16)
                .collect()
                .await;
        for (i, items) in carts {
            let plan = &self.checkouts[i];
            assert_eq!(
                items, plan.leftover,
                "cart {} after its checkout",
                plan.cart_id
            );
        }

        // --- stock: inventory, and checkout's replica of it ---
        let mut products = client.products().await.expect("GET /products");
        products.sort_by(|a, b| a.sku.cmp(&b.sku));
        let expected_products: Vec<Product> = self
            .products
            .iter()
            .map(|p| {
                let (units, lines) = self.sold(&p.sku);
                Product {
                    sku: p.sku.clone(),
                    name: p.name.clone(),
                    unit_price_cents: p.unit_price_cents,
                    stock: p.opening - units,
                    version: 1 + lines,
                }
            })
            .collect();
        assert_eq!(products, expected_products, "inventory's products");
        let mut catalogue = client.catalogue().await.expect("GET /catalogue");
        catalogue.sort_by(|a, b| a.sku.cmp(&b.sku));
        let expected_catalogue: Vec<CatalogueEntry> = expected_products
            .iter()
            .map(|p| CatalogueEntry {
                sku: p.sku.clone(),
                name: Some(p.name.clone()),
                unit_price_cents: Some(p.unit_price_cents),
                stock: p.stock,
                stock_version: p.version,
                reserved: 0,
                available: p.stock,
            })
            .collect();
        assert_eq!(
            catalogue, expected_catalogue,
            "checkout's catalogue replica"
        );

        // --- outboxes: what each service published, all sent, none parked ---
        let lines: i64 = self.checkouts.iter().map(|c| c.lines.len() as i64).sum();
        let p = self.products.len() as i64;
        assert_eq!(
            types(&completed),
            BTreeMap::from([("checkout.completed.v1".to_string(), n)]),
            "checkout's outbox"
        );
        assert_eq!(
            types(&from_cart),
            BTreeMap::from([("cart.checked_out.v1".to_string(), n)]),
            "cart's outbox"
        );
        assert_eq!(
            types(&from_inventory),
            BTreeMap::from([
                ("inventory.order_applied.v1".to_string(), n),
                ("inventory.product_registered.v1".to_string(), p),
                ("inventory.stock_changed.v1".to_string(), p + lines),
            ]),
            "inventory's outbox"
        );
        for (which, db) in [
            (Which::Checkout, checkout_db),
            (Which::Cart, cart_db),
            (Which::Inventory, inventory_db),
        ] {
            let (unsent, parked): (i64, i64) = sqlx::query_as(
                "SELECT count(*) FILTER (WHERE sent_at IS NULL), count(*) FILTER (WHERE parked_at IS NOT NULL)
                 FROM events_outbox",
            )
            .fetch_one(db)
            .await
            .expect("reading an outbox");
            assert_eq!(
                (unsent, parked),
                (0, 0),
                "{}'s outbox: unsent, parked",
                which.name()
            );
        }

        // --- inboxes: exactly one row per (consumer, event) routed to it ---
        let completed_ids: BTreeSet<Uuid> = completed.keys().copied().collect();
        for (which, expected) in [
            (Which::Checkout, &routed_to_checkout),
            (Which::Cart, &completed_ids),
            (Which::Inventory, &completed_ids),
        ] {
            let rows: Vec<(String, Uuid)> =
                sqlx::query_as("SELECT consumer, event_id FROM events_inbox")
                    .fetch_all(shop.db(which))
                    .await
                    .expect("reading an inbox");
            assert_eq!(rows.len(), expected.len(), "{}'s inbox rows", which.name());
            let got: BTreeSet<Uuid> = rows
                .iter()
                .map(|(consumer, id)| {
                    assert_eq!(consumer, which.name(), "a foreign row in an inbox");
                    *id
                })
                .collect();
            assert_eq!(&got, expected, "{}'s inbox", which.name());
        }

        // --- queues: drained, nothing unacked, only the expected dead letters ---
        let mut dead_lettered = 0;
        let mut expected_queues = Vec::new();
        for consumer in CONSUMERS {
            let names = QueueNames::new(&bus, consumer);
            let dlq = expect.dead_letters_of(consumer);
            dead_lettered += dlq;
            assert_eq!(
                events::admin::queue_depth(&bus, &names.dead_letter)
                    .await
                    .expect("a dead-letter queue's depth"),
                Some(dlq as u32),
                "{consumer}'s dead letters"
            );
            expected_queues.push(QueueStats {
                name: names.main.clone(),
                ready: 0,
                unacked: 0,
            });
            expected_queues.push(QueueStats {
                name: names.dead_letter.clone(),
                ready: dlq,
                unacked: 0,
            });
            for d in bus.distinct_retry_delays() {
                expected_queues.push(QueueStats {
                    name: names.hold(d),
                    ready: 0,
                    unacked: 0,
                });
            }
        }
        expected_queues.sort_by(|a, b| a.name.cmp(&b.name));
        assert_eq!(
            crate::broker::queues_when(&bus.queue_prefix, &expected_queues).await,
            expected_queues,
            "queues: ready and unacked messages"
        );

        // --- what the consumers counted ---
        let mut duplicates = 0;
        let mut uncounted = Vec::new();
        for (which, inbox) in expected_inbox {
            let c = shop.counters(which);
            duplicates += c.duplicates;
            if !shop.counted(which) {
                uncounted.push(which.name());
                continue;
            }
            assert_eq!(
                c.dead_lettered,
                expect.dead_letters_of(which.name()),
                "{} counted dead letters",
                which.name()
            );
            if expect.counters_exact {
                assert_eq!(c.applied as i64, inbox, "{} counted applied", which.name());
            }
        }

        let sent = (completed.len() + from_cart.len() + from_inventory.len()) as i64;
        Figures {
            sent,
            applied: expected_inbox.iter().map(|(_, n)| n).sum(),
            duplicates,
            dead_lettered,
            uncounted,
        }
    }
}

async fn until<F, Fut>(what: &str, check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<()>>,
{
    shop::wait::until(what, SETTLE, POLL, check)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
}

async fn pending_rows(db: &PgPool) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT count(*) FROM events_outbox WHERE sent_at IS NULL")
        .fetch_one(db)
        .await
}

/// Every outbox row of a service: event id → type.
async fn outbox_ids(db: &PgPool) -> BTreeMap<Uuid, String> {
    let rows: Vec<(Uuid, String)> =
        sqlx::query_as("SELECT event_id, event_type FROM events_outbox")
            .fetch_all(db)
            .await
            .expect("reading an outbox");
    rows.into_iter().collect()
}

fn types(events: &BTreeMap<Uuid, String>) -> BTreeMap<String, i64> {
    let mut out = BTreeMap::new();
    for t in events.values() {
        *out.entry(t.clone()).or_default() += 1;
    }
    out
}
