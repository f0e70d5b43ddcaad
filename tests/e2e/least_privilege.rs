//! Least privilege: each service with its own PostgreSQL role and RabbitMQ user, provisioned
//! by `shop provision`'s code. Cart's credentials cannot read inventory's database, consume
//! inventory's queue or publish as inventory; with them, cart does all its own work.
//!
//! Isolated like every test: users `<id>-<service>`, roles and databases `<id>_<service>`,
//! queues `test.<id>.*`, exchange `test.<id>`; all removed at the end, even on a panic.

use std::str::FromStr;
use std::time::Duration;

use e2e::{ShopClient, System, Which, remove_everything, test_settings, unique_id, wait_for};
use lapin::options::{
    BasicConsumeOptions, BasicGetOptions, BasicPublishOptions, ConfirmSelectOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Confirmation, Connection, ConnectionProperties};
use shop::Settings;
use shop::client::CheckoutLine;
use shop::provision::{self, BrokerApi, ProvisionArgs};
use sqlx::ConnectOptions;
use sqlx::postgres::PgConnectOptions;

const ACCESS_REFUSED: u16 = 403;
const PRECONDITION_FAILED: u16 = 406;

fn api_url() -> String {
    std::env::var("RABBITMQ_API_URL").unwrap_or_else(|_| "http://127.0.0.1:15672".into())
}

fn user(id: &str, which: Which) -> String {
    format!("{id}-{}", which.name())
}

fn role(id: &str, which: Which) -> String {
    format!("{id}_{}", which.name())
}

/// The accounts and the shop of one test; removed on drop (a panic included).
struct Accounts {
    id: String,
    admin: Settings,
    system: Option<System>,
}

impl Accounts {
    async fn remove(admin: Settings, id: String) -> anyhow::Result<()> {
        let mut errors = Vec::new();
        if let Err(e) = remove_everything(&admin).await {
            errors.push(format!("{e:#}"));
        }
        let api = BrokerApi::new(&api_url(), &admin.amqp_url)?;
        for which in Which::ALL {
            let db = admin.database_url(which);
            let name = format!("{}{}", admin.database_prefix, which.name());
            if let Err(e) = provision::remove_database(&db, &role(&id, which), &name).await {
                errors.push(format!("{e:#}"));
            }
            if let Err(e) = api.remove_user(&user(&id, which)).await {
                errors.push(format!("{e:#}"));
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            anyhow::bail!(errors.join("; "))
        }
    }

    async fn stop(mut self) {
        if let Some(system) = self.system.take() {
            system.shutdown().await;
        }
        let (admin, id) = (self.admin.clone(), std::mem::take(&mut self.id));
        Accounts::remove(admin, id.clone())
            .await
            .unwrap_or_else(|e| panic!("accounts of {id} not removed: {e}"));
    }
}

impl Drop for Accounts {
    fn drop(&mut self) {
        if self.id.is_empty() {
            return;
        }
        let system = self.system.take();
        let (admin, id) = (self.admin.clone(), self.id.clone());
        let handle = tokio::runtime::Handle::try_current().ok();
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let stopped = system.and_then(|system| {
            let handle = handle?;
            let (tx, rx) = std::sync::mpsc::channel::<()>();
            handle.spawn(async move {
                system.shutdown().await;
                let _ = tx.send(());
            });
            Some(rx)
        });
        std::thread::spawn(move || {
            if let Some(stopped) = stopped {
                let _ = stopped.recv_timeout(Duration::from_secs(15));
            }
            if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                let result = rt.block_on(tokio::time::timeout(
                    Duration::from_secs(30),
                    Accounts::remove(admin, id.clone()),
                ));
                if !matches!(result, Ok(Ok(()))) {
                    eprintln!("cleanup of the accounts of {id} failed: {result:?}");
                }
            }
            let _ = done_tx.send(());
        });
        let _ = done_rx.recv_timeout(Duration::from_secs(60));
    }
}

/// The broker's reply code in `e`, if the broker refused something.
fn code(e: &lapin::Error) -> Option<u16> {
    match e.kind() {
        lapin::ErrorKind::ProtocolError(amqp) => Some(amqp.get_id()),
        _ => None,
    }
}

/// Publishes one message on a fresh confirm channel of `conn`; the broker's refusal code, or
/// `None` if it took the message.
async fn publish(
    conn: &Connection,
    exchange: &str,
    routing_key: &str,
    properties: BasicProperties,
) -> Option<u16> {
    let channel = conn.create_channel().await.expect("a channel");
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirm mode");
    let sent = channel
        .basic_publish(
            exchange.into(),
            routing_key.into(),
            BasicPublishOptions::default(),
            b"{}",
            properties.with_delivery_mode(2),
        )
        .await;
    let result = match sent {
        Ok(confirm) => confirm.await,
        Err(e) => Err(e),
    };
    match result {
        Ok(Confirmation::Ack(_)) => None,
        Ok(other) => panic!("publish to {exchange}/{routing_key}: {other:?}"),
        Err(e) => Some(code(&e).unwrap_or_else(|| panic!("not a broker refusal: {e}"))),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_service_reaches_only_its_own_database_queues_and_events() {
    let id = unique_id();
    let admin = test_settings(&id);
    let mut settings = admin.clone();
    let password = |which: Which| format!("pw-{}-{}", which.name(), uuid::Uuid::now_v7().simple());
    for which in Which::ALL {
        let pw = password(which);
        let amqp = provision::with_credentials(&admin.amqp_url, &user(&id, which), &pw).unwrap();
        let db = provision::with_credentials(&admin.database_url(which), &role(&id, which), &pw)
            .unwrap();
        match which {
            Which::Checkout => {
                settings.checkout_amqp_url = Some(amqp);
                settings.checkout_database_url = Some(db);
            }
            Which::Cart => {
                settings.cart_amqp_url = Some(amqp);
                settings.cart_database_url = Some(db);
            }
            Which::Inventory => {
                settings.inventory_amqp_url = Some(amqp);
                settings.inventory_database_url = Some(db);
            }
        }
    }
    let mut accounts = Accounts {
        id: id.clone(),
        admin: admin.clone(),
        system: None,
    };

    // Provisioning is idempotent: the second run updates what the first created.
    let args = ProvisionArgs {
        rabbitmq_api: api_url(),
        database_only: false,
        broker_only: false,
    };
    for _ in 0..2 {
        provision::provision(&settings, &args, &Which::ALL)
            .await
            .unwrap_or_else(|e| panic!("provisioning: {e:#}"));
    }

    // With their own credentials the three services do everything they do: migrate their
    // databases, declare and consume their queues, publish their events.
    let system = System::start(&settings)
        .await
        .unwrap_or_else(|e| panic!("the shop with per-service credentials: {e:#}"));
    let client = ShopClient::new(
        system.addr(Which::Checkout),
        system.addr(Which::Cart),
        system.addr(Which::Inventory),
    );
    accounts.system = Some(system);
    client
        .register_product("LP-1", "least privilege", 250, 10)
        .await
        .expect("registering a product");
    wait_for("checkout's catalogue to learn LP-1", || async {
        let catalogue = client.catalogue().await.ok()?;
        catalogue
            .iter()
            .any(|e| e.sku == "LP-1" && e.unit_price_cents.is_some())
            .then_some(())
    })
    .await;
    client
        .set_cart_item("lp-cart", "LP-1", 3)
        .await
        .expect("PUT item");
    let lines = [CheckoutLine {
        sku: "LP-1".into(),
        quantity: 3,
    }];
    let order = client
        .checkout("lp-cart", None, &lines, "tok_visa")
        .await
        .expect("a paid checkout");
    // cart consumed checkout.completed from its queue and published cart.checked_out, which
    // checkout consumed (cart_updated); inventory did the same (inventory_updated).
    wait_for("the order to be settled by cart and inventory", || async {
        let o = client.order(order.order_id).await.ok()??;
        (o.cart_updated && o.inventory_updated).then_some(())
    })
    .await;
    assert!(
        client
            .cart("lp-cart")
            .await
            .expect("GET cart")
            .items
            .is_empty()
    );

    // Dead-lettering goes through cart's own exchange: a malformed event lands in cart's DLQ.
    let admin_bus = admin.bus();
    let admin_conn = Connection::connect(&admin_bus.amqp_url, ConnectionProperties::default())
        .await
        .expect("admin connection");
    assert_eq!(
        publish(
            &admin_conn,
            &admin.exchange,
            "checkout.completed.v1",
            BasicProperties::default()
        )
        .await,
        None
    );
    let cart_dlq = format!("{}cart.dlq", admin.queue_prefix);
    wait_for("the malformed event in cart's DLQ", || async {
        let depth = events::admin::queue_depth(&admin_bus, &cart_dlq)
            .await
            .ok()??;
        (depth == 1).then_some(())
    })
    .await;
    let _ = admin_conn.close(200, "done".into()).await;

    // Now cart's credentials against inventory's resources.
    let cart_bus = settings.bus_for(Which::Cart);
    let cart_user = user(&id, Which::Cart);
    let inventory_queue = format!("{}inventory", admin.queue_prefix);

    // PostgreSQL: cart's role may not even connect to inventory's database...
    let cart_db = settings.database_url(Which::Cart);
    let cart_on_inventory = provision::with_credentials(
        &admin.database_url(Which::Inventory),
        &role(&id, Which::Cart),
        &provision::credentials(&cart_db).unwrap().password,
    )
    .unwrap();
    let refused = PgConnectOptions::from_str(&cart_on_inventory)
        .unwrap()
        .connect()
        .await
        .expect_err("cart's role must not connect to inventory's database");
    let sqlx::Error::Database(db_error) = &refused else {
        panic!("not a refusal by the server: {refused}")
    };
    assert_eq!(db_error.code().as_deref(), Some("42501"), "{refused}");
    assert!(
        refused.to_string().contains("permission denied"),
        "{refused}"
    );
    // ...while its own works.
    PgConnectOptions::from_str(&cart_db)
        .unwrap()
        .connect()
        .await
        .expect("cart's role connects to cart's database");

    // RabbitMQ.
    let conn = Connection::connect(&cart_bus.amqp_url, ConnectionProperties::default())
        .await
        .expect("cart's user connects");
    let as_cart = BasicProperties::default().with_user_id(cart_user.as_str().into());

    // Cannot consume inventory's queue.
    let channel = conn.create_channel().await.expect("a channel");
    let consumed = channel
        .basic_consume(
            inventory_queue.as_str().into(),
            "spy".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect_err("cart must not consume inventory's queue");
    assert_eq!(code(&consumed), Some(ACCESS_REFUSED), "{consumed}");

    // Cannot publish inventory's events on the events exchange (topic permission)...
    assert_eq!(
        publish(
            &conn,
            &admin.exchange,
            "inventory.stock_changed.v1",
            as_cart.clone()
        )
        .await,
        Some(ACCESS_REFUSED),
        "cart published an inventory event"
    );
    // ...nor put a message into inventory's queue through the default exchange...
    assert_eq!(
        publish(&conn, "", &inventory_queue, as_cart.clone()).await,
        Some(ACCESS_REFUSED),
        "cart wrote through the default exchange"
    );
    // ...nor through inventory's own exchange...
    assert_eq!(
        publish(
            &conn,
            &format!("{inventory_queue}.direct"),
            &inventory_queue,
            as_cart.clone()
        )
        .await,
        Some(ACCESS_REFUSED),
        "cart wrote to inventory's exchange"
    );
    // ...nor sign a message as inventory's user.
    assert_eq!(
        publish(
            &conn,
            &admin.exchange,
            "cart.checked_out.v1",
            BasicProperties::default().with_user_id(user(&id, Which::Inventory).as_str().into())
        )
        .await,
        Some(PRECONDITION_FAILED),
        "cart published with inventory's user_id"
    );

    // Its own: publishes its routing keys as itself, reads its own dead-letter queue.
    assert_eq!(
        publish(&conn, &admin.exchange, "cart.unrouted_check.v1", as_cart).await,
        None,
        "cart may publish cart.* as itself"
    );
    let channel = conn.create_channel().await.expect("a channel");
    let got = channel
        .basic_get(cart_dlq.as_str().into(), BasicGetOptions { no_ack: false })
        .await
        .expect("cart reads its own DLQ");
    assert!(got.is_some(), "the dead letter is in cart's DLQ");
    let _ = conn.close(200, "done".into()).await;

    accounts.stop().await;
}

/// TLS is compiled in and chosen by the URL alone: `sslmode=require` gives an encrypted
/// PostgreSQL session; `amqps://` makes lapin speak TLS (against the local plain-text port the
/// handshake fails, which shows it was attempted rather than refused as unsupported).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_is_a_matter_of_configuration() {
    let settings = Settings::default();
    let url = format!(
        "{}{}sslmode=require",
        settings.database_url,
        if settings.database_url.contains('?') {
            "&"
        } else {
            "?"
        }
    );
    let url = shop::settings::with_database(&url, "postgres");
    let mut conn = PgConnectOptions::from_str(&url)
        .unwrap()
        .connect()
        .await
        .unwrap_or_else(|e| panic!("sslmode=require (is ssl on in PostgreSQL?): {e}"));
    let encrypted: bool =
        sqlx::query_scalar("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
            .fetch_one(&mut conn)
            .await
            .expect("pg_stat_ssl");
    assert!(encrypted, "the session is not encrypted");

    let amqps = settings.amqp_url.replacen("amqp://", "amqps://", 1);
    let error = tokio::time::timeout(
        Duration::from_secs(10),
        Connection::connect(&amqps, ConnectionProperties::default()),
    )
    .await
    .expect("the TLS attempt ends")
    .expect_err("no TLS listener on the plain port");
    let text = format!("{error:?}").to_lowercase();
    assert!(
        // rustls reading a plain AMQP frame as a TLS record: InvalidMessage(InvalidContentType)
        text.contains("invalidmessage") || text.contains("tls") || text.contains("handshake"),
        "not a TLS handshake failure: {error:?}"
    );
}
