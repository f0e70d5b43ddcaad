//! Every refused request is an RFC 9457 problem with the right status, naming the field.

use std::time::Duration;

use e2e::{TestShop, Which, expect_field_problem, expect_problem};
use reqwest::header::CONTENT_TYPE;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

fn checkout(lines: Value) -> Value {
    json!({"cart_id": "c1", "customer_id": "17850", "lines": lines, "payment_token": "tok_visa"})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_are_problems_naming_the_field() {
    let shop = TestShop::start().await;
    shop.register("A", 100, 2).await;
    let http = shop.client.http();
    let checkouts = shop.url(Which::Checkout, "/checkouts");

    // --- checkout ---
    let r = http
        .post(&checkouts)
        .header(CONTENT_TYPE, "application/json")
        .body(r#"{"cart_id": "c1", "lines": [}"#)
        .send()
        .await
        .unwrap();
    let p = expect_problem(r, StatusCode::BAD_REQUEST).await;
    assert_eq!(p["type"], json!("/problems/malformed-json"), "{p}");
    assert_eq!(p.get("field"), None, "{p}");

    let r = shop
        .post_json(
            Which::Checkout,
            "/checkouts",
            &checkout(json!([{"sku": "A", "quantity": "two"}])),
        )
        .await;
    expect_field_problem(r, StatusCode::UNPROCESSABLE_ENTITY, "lines[0].quantity").await;

    let r = shop
        .post_json(
            Which::Checkout,
            "/checkouts",
            &json!({"cart_id": "c1", "lines": [{"sku": "A", "quantity": 1}]}),
        )
        .await;
    expect_field_problem(r, StatusCode::UNPROCESSABLE_ENTITY, "payment_token").await;

    let too_many: Vec<Value> = (0..=checkout::MAX_LINES)
        .map(|i| json!({"sku": format!("S{i}"), "quantity": 1}))
        .collect();
    let r = shop
        .post_json(
            Which::Checkout,
            "/checkouts",
            &checkout(Value::from(too_many)),
        )
        .await;
    let p = expect_field_problem(r, StatusCode::UNPROCESSABLE_ENTITY, "lines").await;
    assert!(
        p["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("at most 2000 lines"),
        "{p}"
    );

    let r = shop
        .post_json(
            Which::Checkout,
            "/checkouts",
            &checkout(json!([{"sku": "NOPE", "quantity": 1}])),
        )
        .await;
    expect_field_problem(r, StatusCode::UNPROCESSABLE_ENTITY, "lines[0].sku").await;

    for quantity in [0, -1] {
        let r = shop
            .post_json(
                Which::Checkout,
                "/checkouts",
                &checkout(json!([{"sku": "A", "quantity": quantity}])),
            )
            .await;
        expect_field_problem(r, StatusCode::UNPROCESSABLE_ENTITY, "lines[0].quantity").await;
    }

    let r = shop
        .post_json(Which::Checkout, "/checkouts", &checkout(json!([])))
        .await;
    expect_field_problem(r, StatusCode::UNPROCESSABLE_ENTITY, "lines").await;

    let r = shop
        .post_json(
            Which::Checkout,
            "/checkouts",
            &checkout(json!([{"sku": "A", "quantity": 3}])),
        )
        .await;
    let p = expect_field_problem(r, StatusCode::CONFLICT, "lines[0].quantity").await;
    assert_eq!(p["type"], json!("/problems/insufficient-stock"), "{p}");

    let mut big = checkout(json!([{"sku": "A", "quantity": 1}]));
    big["padding"] = json!("x".repeat(kit::http::BODY_LIMIT_BYTES + 1));
    let r = shop.post_json(Which::Checkout, "/checkouts", &big).await;
    let p = expect_problem(r, StatusCode::PAYLOAD_TOO_LARGE).await;
    assert_eq!(p["type"], json!("/problems/body-too-large"), "{p}");

    let valid = checkout(json!([{"sku": "A", "quantity": 1}])).to_string();
    let r = http.post(&checkouts).body(valid).send().await.unwrap();
    let p = expect_problem(r, StatusCode::UNSUPPORTED_MEDIA_TYPE).await;
    assert_eq!(p["type"], json!("/problems/unsupported-media-type"), "{p}");

    // An order id that is a UUID but no order's: 404 (one that isn't a UUID: see
    // `bad_path_parameters_are_problems_naming_the_parameter`).
    let r = http
        .get(shop.url(
            Which::Checkout,
            "/orders/0193a5b0-7e1c-7a3e-9f00-1234567890ab",
        ))
        .send()
        .await
        .unwrap();
    let p = expect_problem(r, StatusCode::NOT_FOUND).await;
    assert_eq!(p["type"], json!("/problems/not-found"), "{p}");

    // None of it reserved, ordered or published anything.
    let entry = shop.catalogue_entry("A").await.expect("A");
    assert_eq!((entry.stock, entry.reserved, entry.available), (2, 0, 2));
    let orders: i64 = sqlx::query_scalar("SELECT count(*) FROM orders")
        .fetch_one(shop.pool(Which::Checkout))
        .await
        .unwrap();
    assert_eq!(orders, 0);
    assert_eq!(shop.outbox_count(Which::Checkout, None).await, 0);

    // --- cart ---
    let put = |sku: &str, body: Value| {
        http.put(shop.url(Which::Cart, &format!("/carts/c1/items/{sku}")))
            .json(&body)
            .send()
    };
    let r = put("A", json!({"quantity": -1})).await.unwrap();
    expect_field_problem(r, StatusCode::UNPROCESSABLE_ENTITY, "quantity").await;
    let r = put("a%20b", json!({"quantity": 1})).await.unwrap();
    expect_field_problem(r, StatusCode::UNPROCESSABLE_ENTITY, "sku").await;
    let r = put(&"x".repeat(65), json!({"quantity": 1})).await.unwrap();
    expect_field_problem(r, StatusCode::UNPROCESSABLE_ENTITY, "sku").await;
    let r = put(&"x".repeat(64), json!({"quantity": 1})).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK, "64 characters are allowed");
    let r = put(&"x".repeat(64), json!({"quantity": 0})).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(shop.client.cart("c1").await.unwrap().items, vec![]);

    // --- inventory ---
    let r = shop
        .post_json(
            Which::Inventory,
            "/products",
            &json!({"sku": "A", "name": "again", "unit_price_cents": 1, "stock": 1}),
        )
        .await;
    let p = expect_field_problem(r, StatusCode::CONFLICT, "sku").await;
    assert_eq!(p["type"], json!("/problems/sku-exists"), "{p}");
    let r = shop
        .post_json(
            Which::Inventory,
            "/products",
            &json!({"sku": "N", "name": "negative", "unit_price_cents": 1, "stock": -1}),
        )
        .await;
    expect_field_problem(r, StatusCode::UNPROCESSABLE_ENTITY, "stock").await;
    let r = shop
        .post_json(
            Which::Inventory,
            "/products/A/restock",
            &json!({"quantity": 0}),
        )
        .await;
    expect_field_problem(r, StatusCode::UNPROCESSABLE_ENTITY, "quantity").await;
    assert_eq!(shop.client.product("N").await.unwrap(), None);
    let a = shop.client.product("A").await.unwrap().expect("A");
    assert_eq!(
        (a.name.as_str(), a.unit_price_cents, a.stock, a.version),
        ("product A", 100, 2, 1)
    );
    // Only A's registration was published (product_registered + stock_changed).
    assert_eq!(shop.outbox_count(Which::Inventory, None).await, 2);

    // --- unknown routes, on every service ---
    for which in Which::ALL {
        let r = http
            .get(shop.url(which, "/no/such/route"))
            .send()
            .await
            .unwrap();
        let p = expect_problem(r, StatusCode::NOT_FOUND).await;
        assert_eq!(p["type"], json!("/problems/not-found"), "{p}");
    }
    shop.stop().await;
}

/// A known method on a known path that doesn't take it: still a problem+json.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_method_is_a_problem() {
    let shop = TestShop::start().await;
    let http = shop.client.http();
    for (which, path) in [
        (Which::Checkout, "/checkouts"),
        (Which::Cart, "/carts/c1/items/A"),
        (Which::Inventory, "/products"),
    ] {
        let r = http.delete(shop.url(which, path)).send().await.unwrap();
        expect_problem(r, StatusCode::METHOD_NOT_ALLOWED).await;
    }
    shop.stop().await;
}

/// A restock that would overflow the stock is the client's error, not the server's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_overflowing_restock_is_refused() {
    let shop = TestShop::start().await;
    shop.register("A", 100, 2).await;
    let r = shop
        .post_json(
            Which::Inventory,
            "/products/A/restock",
            &json!({"quantity": i64::MAX}),
        )
        .await;
    expect_field_problem(r, StatusCode::UNPROCESSABLE_ENTITY, "quantity").await;
    let a = shop.client.product("A").await.unwrap().expect("A");
    assert_eq!((a.stock, a.version), (2, 1));
    shop.stop().await;
}

/// A name with a control character is refused before it reaches PostgreSQL (which refuses a
/// NUL in text: SQLSTATE 22021, once a 500), naming the field.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_with_a_control_character_is_refused() {
    let shop = TestShop::start().await;
    shop.register("A", 100, 2).await;
    for name in [
        "nul\u{0}inside",
        "\u{0}",
        "line\nbreak",
        "\u{1b}[31mred",
        "del\u{7f}",
    ] {
        let r = shop
            .post_json(
                Which::Inventory,
                "/products",
                &json!({"sku": "N", "name": name, "unit_price_cents": 1, "stock": 1}),
            )
            .await;
        expect_field_problem(r, StatusCode::UNPROCESSABLE_ENTITY, "name").await;
    }
    assert_eq!(shop.client.product("N").await.unwrap(), None);
    // Only A's registration was published (product_registered + stock_changed).
    assert_eq!(shop.outbox_count(Which::Inventory, None).await, 2);
    // A name outside ASCII is fine.
    let r = shop
        .post_json(
            Which::Inventory,
            "/products",
            &json!({"sku": "U", "name": "Crème brûlée ☕", "unit_price_cents": 1, "stock": 1}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let u = shop.client.product("U").await.unwrap().expect("U");
    assert_eq!(u.name, "Crème brûlée ☕");
    shop.stop().await;
}

/// A path parameter that isn't a valid id (a control character, a space, too long, not UTF-8
/// once percent-decoded, not a UUID) is a 422 problem+json naming the parameter, on every
/// service — never axum's text/plain 400, nor a 500 from the database.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_path_parameters_are_problems_naming_the_parameter() {
    let shop = TestShop::start().await;
    shop.register("A", 100, 2).await;
    let http = shop.client.http();
    let long = "x".repeat(65);
    let bad_ids = [
        "%FF",
        "%C3%28",
        "%00",
        "A%00",
        "a%20b",
        "a%2Fb",
        "%0A",
        long.as_str(),
    ];

    // Every route that takes an id: (method, service, path with `{}` for the id, body,
    // the parameter the problem must name).
    let quantity = json!({"quantity": 1});
    let routes: [(Method, Which, &str, Option<&Value>, &str); 6] = [
        (Method::GET, Which::Inventory, "/products/{}", None, "sku"),
        (
            Method::POST,
            Which::Inventory,
            "/products/{}/restock",
            Some(&quantity),
            "sku",
        ),
        (Method::GET, Which::Cart, "/carts/{}", None, "cart_id"),
        (
            Method::PUT,
            Which::Cart,
            "/carts/{}/items/A",
            Some(&quantity),
            "cart_id",
        ),
        (
            Method::PUT,
            Which::Cart,
            "/carts/c1/items/{}",
            Some(&quantity),
            "sku",
        ),
        (Method::GET, Which::Checkout, "/orders/{}", None, "order_id"),
    ];
    let not_uuids = ["not-a-uuid", "0193a5b0-7e1c-7a3e-9f00-1234567890a"];
    let cases = bad_ids
        .iter()
        .flat_map(|id| routes.iter().map(move |route| (*id, route)))
        .chain(not_uuids.iter().map(|id| (*id, &routes[5])));
    for (id, (method, which, path, body, field)) in cases {
        let url = shop.url(*which, &path.replace("{}", id));
        let mut request = http.request(method.clone(), &url);
        if let Some(body) = body {
            request = request.json(body);
        }
        let r = request.send().await.expect("a response");
        // Shown only if the assertion below fails: which case it was.
        eprintln!("{method} {url}");
        expect_field_problem(r, StatusCode::UNPROCESSABLE_ENTITY, field).await;
    }

    // None of it changed or published anything.
    let a = shop.client.product("A").await.unwrap().expect("A");
    assert_eq!((a.stock, a.version), (2, 1));
    assert_eq!(shop.outbox_count(Which::Inventory, None).await, 2);
    assert_eq!(shop.client.cart("c1").await.unwrap().items, vec![]);
    let items: i64 = sqlx::query_scalar("SELECT count(*) FROM cart_items")
        .fetch_one(shop.pool(Which::Cart))
        .await
        .unwrap();
    assert_eq!(items, 0);
    shop.stop().await;
}

/// Sends `request` as raw bytes and reads until the server has sent a problem naming `kind`,
/// closed, or `deadline` passed; returns what it said.
async fn raw_exchange(addr: &str, request: &[u8], kind: &str, deadline: Duration) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connecting");
    stream.write_all(request).await.expect("sending");
    let mut response = Vec::new();
    let read = tokio::time::timeout(deadline, async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    response.extend_from_slice(&buf[..n]);
                    if String::from_utf8_lossy(&response).contains(kind) {
                        break;
                    }
                }
            }
        }
    })
    .await;
    let text = String::from_utf8_lossy(&response).into_owned();
    assert!(read.is_ok(), "no answer within {deadline:?}: {text}");
    text
}

/// A client that announces a body and never finishes it gets a 408 problem once the request
/// time limit passes, instead of holding the connection for ever; one that announces a body
/// over the limit gets its 413 at once, without sending it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unfinished_and_oversized_bodies_are_answered_without_waiting_for_ever() {
    let shop = TestShop::start().await;
    let url = shop.url(Which::Checkout, "/checkouts");
    let addr = url
        .trim_start_matches("http://")
        .split('/')
        .next()
        .expect("host:port")
        .to_string();
    let head = "POST /checkouts HTTP/1.1\r\nHost: shop\r\nContent-Type: application/json\r\n";

    let huge = format!("{head}Content-Length: 10000000000\r\n\r\n");
    let text = raw_exchange(
        &addr,
        huge.as_bytes(),
        "body-too-large",
        Duration::from_secs(10),
    )
    .await;
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");

    let unfinished = format!("{head}Content-Length: 100\r\n\r\n{{\"cart_id\":");
    let deadline = kit::http::REQUEST_TIMEOUT + Duration::from_secs(15);
    let text = raw_exchange(&addr, unfinished.as_bytes(), "request-timeout", deadline).await;
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("application/problem+json"), "{text}");
    assert!(text.contains("/problems/request-timeout"), "{text}");
    shop.stop().await;
}
