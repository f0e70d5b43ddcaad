//! Malformed messages published by hand, mid-stream, to cart's queue (straight, through the
//! default exchange) and to the exchange: each is dead-lettered exactly once, at once, with the
//! right `x-reason`, and the consumers go on applying the stream.

use std::collections::BTreeMap;

use e2e::Which;
use e2e::broker::publish;
use e2e::fault_shop::FaultShop;
use e2e::workload::{Expect, Workload};
use events::topology::QueueNames;
use lapin::{BasicProperties, Confirmation};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::{CHECKOUTS, serial};

fn envelope(event_type: &str, data: Value) -> Value {
    json!({
        "id": Uuid::now_v7(),
        "source": "/shop/faults",
        "type": event_type,
        "specversion": "1.0",
        "time": "2026-12-03T10:00:00Z",
        "datacontenttype": "application/json",
        "data": data,
    })
}

fn completed_data() -> Value {
    json!({
        "order_id": Uuid::now_v7(), "cart_id": "nobody", "customer_id": null,
        "lines": [{"sku": "SKU-00", "quantity": 1, "unit_price_cents": 100}],
        "total_cents": 100, "currency": "GBP", "paid_at": "2026-12-03T10:00:00Z"
    })
}

fn bytes(v: &Value) -> Vec<u8> {
    serde_json::to_vec(v).expect("JSON")
}

/// A bad message: its message id (to find it in the dead-letter queue), its `type`
/// property, its body, the reason it must be dead-lettered with, and how its error starts
/// (the whole error where it names no position in the body).
struct Bad {
    id: &'static str,
    event_type: &'static str,
    body: Vec<u8>,
    reason: &'static str,
    error: &'static str,
}

fn bad_messages() -> Vec<Bad> {
    let valid = bytes(&envelope("checkout.completed.v1", completed_data()));
    let mut wrong_types = completed_data();
    wrong_types["lines"][0]["quantity"] = json!("two");
    let mut old_spec = envelope("checkout.completed.v1", completed_data());
    old_spec["specversion"] = json!("0.3");
    vec![
        Bad {
            id: "bad-truncated",
            event_type: "checkout.completed.v1",
            body: valid[..valid.len() / 2].to_vec(),
            reason: "malformed",
            error: "body is not valid UTF-8 JSON: EOF while parsing",
        },
        Bad {
            id: "bad-not-utf8",
            event_type: "checkout.completed.v1",
            body: vec![0xff, 0xfe, b'{', 0x80, 0x00, 0xc3, 0x28, b'}'],
            reason: "malformed",
            error: "body is not valid UTF-8 JSON: expected value at line 1 column 1",
        },
        Bad {
            id: "bad-wrong-types",
            event_type: "checkout.completed.v1",
            body: bytes(&envelope("checkout.completed.v1", wrong_types)),
            reason: "invalid-data",
            error: r#"data does not match checkout.completed.v1: field `lines[0].quantity`: invalid type: string "two", expected i64"#,
        },
        Bad {
            id: "bad-missing-fields",
            event_type: "checkout.completed.v1",
            body: bytes(&envelope(
                "checkout.completed.v1",
                json!({"order_id": Uuid::now_v7(), "cart_id": "nobody"}),
            )),
            reason: "invalid-data",
            error: "data does not match checkout.completed.v1: missing field `lines`",
        },
        Bad {
            id: "bad-unknown-type",
            event_type: "cart.exploded.v1",
            body: bytes(&envelope("cart.exploded.v1", json!({"cart_id": "nobody"}))),
            reason: "unknown-type",
            error: r#"unknown event type "cart.exploded.v1""#,
        },
        Bad {
            id: "bad-unsupported-version",
            event_type: "checkout.completed.v2",
            body: bytes(&envelope("checkout.completed.v2", completed_data())),
            reason: "unsupported-version",
            error: "unsupported version of checkout.completed: got v2, this consumer handles v1",
        },
        Bad {
            id: "bad-specversion",
            event_type: "checkout.completed.v1",
            body: bytes(&old_spec),
            reason: "unsupported-specversion",
            error: r#"unsupported CloudEvents specversion "0.3" (expected "1.0")"#,
        },
    ]
}

/// The per-message TTL one bad message carries: its dead-letter copy must outlive it.
const EXPIRING_ID: &str = "bad-truncated";
const EXPIRATION_MS: u64 = 3_000;

fn properties(id: &str, event_type: &str) -> BasicProperties {
    let props = BasicProperties::default()
        .with_message_id(id.into())
        .with_type(event_type.into())
        .with_content_type(events::envelope::CONTENT_TYPE.into());
    if id == EXPIRING_ID {
        props.with_expiration(EXPIRATION_MS.to_string().into())
    } else {
        props
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_messages_are_dead_lettered_once_and_the_stream_goes_on() {
    let _serial = serial().await;
    let mut shop = FaultShop::new();
    shop.start_all().await;
    let client = shop.client();
    let work = Workload::new(CHECKOUTS);
    work.setup(&client).await;
    let half = CHECKOUTS / 2;
    let bus = shop.bus();
    let cart_queue = QueueNames::new(&bus, "cart");
    let inventory_queue = QueueNames::new(&bus, "inventory");

    let bad = bad_messages();
    let exchange_bad = bytes(&envelope(
        "checkout.completed.v1",
        json!({"order_id": Uuid::now_v7(), "cart_id": "nobody", "lines": "none"}),
    ));
    let ((), ()) = tokio::join!(work.place(&client, 0..half), async {
        // Straight to cart's queue through the default exchange.
        for b in &bad {
            let confirmation = publish(
                &bus,
                "",
                &cart_queue.main,
                &b.body,
                properties(b.id, b.event_type),
            )
            .await;
            assert!(
                matches!(confirmation, Confirmation::Ack(None)),
                "{}: {confirmation:?}",
                b.id
            );
        }
        // Through the exchange: both cart and inventory get it.
        let confirmation = publish(
            &bus,
            &bus.exchange,
            "checkout.completed.v1",
            &exchange_bad,
            properties("bad-via-exchange", "checkout.completed.v1"),
        )
        .await;
        assert!(
            matches!(confirmation, Confirmation::Ack(None)),
            "{confirmation:?}"
        );
    });
    let published_at = std::time::Instant::now();
    work.place(&client, half..CHECKOUTS).await;

    let cart_letters = bad.len() as u64 + 1;
    let figures = work
        .check(
            &shop,
            &Expect::clean()
                .dead_letters(Which::Cart, cart_letters)
                .dead_letters(Which::Inventory, 1),
        )
        .await;

    // The property under test is an age: a dead letter must still be there after the TTL its
    // original carried has passed (the copy must not inherit `expiration`), so this waits out
    // that TTL rather than a condition.
    tokio::time::sleep_until(
        (published_at + std::time::Duration::from_millis(EXPIRATION_MS + 1_000)).into(),
    )
    .await;

    // Each once, at its first attempt, with the reason, the error and where it came from.
    let via_exchange = (
        "bad-via-exchange".to_string(),
        (
            "invalid-data",
            "data does not match checkout.completed.v1: field `lines`: invalid type: string \"none\"",
            exchange_bad.len(),
        ),
    );
    let mut cart_expected: BTreeMap<String, (&str, &str, usize)> = bad
        .iter()
        .map(|b| (b.id.to_string(), (b.reason, b.error, b.body.len())))
        .collect();
    cart_expected.insert(via_exchange.0.clone(), via_exchange.1);
    let inventory_expected = BTreeMap::from([via_exchange]);
    for (consumer, queue, expected) in [
        ("cart", &cart_queue, cart_expected),
        ("inventory", &inventory_queue, inventory_expected),
    ] {
        let letters = events::admin::list_dead_letters(&bus, consumer, 100)
            .await
            .expect("browsing a dead-letter queue");
        let mut got: BTreeMap<String, (String, String, usize)> = BTreeMap::new();
        for letter in &letters {
            let id = letter.message_id.clone().expect("a message id");
            assert_eq!(
                (letter.attempts, letter.original_queue.as_deref()),
                (Some(1), Some(queue.main.as_str())),
                "{consumer}: {id}"
            );
            assert_eq!(letter.first_error, letter.last_error, "{consumer}: {id}");
            let error = letter.first_error.clone().expect("an error");
            let reason = letter.reason.clone().expect("a reason");
            let previous = got.insert(id.clone(), (reason, error, letter.body_bytes));
            assert!(previous.is_none(), "{consumer}: {id} dead-lettered twice");
        }
        // Errors that quote a position in the body are compared up to it.
        let got: BTreeMap<String, (String, String, usize)> = got
            .into_iter()
            .map(|(id, (reason, error, len))| {
                let prefix = expected.get(&id).map_or("", |e| e.1);
                let error = if error.starts_with(prefix) {
                    prefix.to_string()
                } else {
                    error
                };
                (id, (reason, error, len))
            })
            .collect();
        let expected: BTreeMap<String, (String, String, usize)> = expected
            .into_iter()
            .map(|(id, (reason, error, len))| (id, (reason.to_string(), error.to_string(), len)))
            .collect();
        assert_eq!(
            got, expected,
            "{consumer}'s dead letters: id → (reason, error, body bytes)"
        );
    }
    eprintln!("malformed messages: {figures}");
    shop.finish().await;
}
