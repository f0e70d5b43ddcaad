//! OpenTelemetry export by configuration: `shop serve <service>` with
//! OTEL_EXPORTER_OTLP_ENDPOINT set sends its spans over OTLP/HTTP (protobuf) to that endpoint,
//! as service.name = the service, continuing the W3C trace of each request and event. The
//! collector is a tiny axum server on 127.0.0.1:0 that decodes `POST /v1/traces`; the services
//! run as processes of their own (the tracing subscriber is global to a process).

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::routing::post;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use shop::client::CheckoutLine;
use shop::{Settings, ShopClient, Which};

fn string_attr(attrs: &[KeyValue], key: &str) -> Option<String> {
    attrs.iter().find(|kv| kv.key == key).and_then(|kv| {
        match kv.value.as_ref()?.value.as_ref()? {
            Value::StringValue(s) => Some(s.clone()),
            _ => None,
        }
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A fake OTLP/HTTP collector: keeps every export it receives.
struct Collector {
    addr: SocketAddr,
    received: Arc<Mutex<Vec<ExportTraceServiceRequest>>>,
}

impl Collector {
    async fn start() -> Collector {
        let received: Arc<Mutex<Vec<ExportTraceServiceRequest>>> = Arc::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = axum::Router::new().route(
            "/v1/traces",
            post({
                let received = received.clone();
                move |headers: axum::http::HeaderMap, body: Bytes| async move {
                    assert_eq!(
                        headers.get("content-type").map(|v| v.to_str().unwrap()),
                        Some("application/x-protobuf")
                    );
                    let request =
                        ExportTraceServiceRequest::decode(body).expect("an OTLP protobuf body");
                    received.lock().unwrap().push(request);
                    // An empty ExportTraceServiceResponse.
                    (
                        [("content-type", "application/x-protobuf")],
                        Vec::<u8>::new(),
                    )
                }
            }),
        );
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Collector { addr, received }
    }

    /// Every span received so far, with the service.name of its resource.
    fn spans(&self) -> Vec<(Option<String>, Span)> {
        self.received
            .lock()
            .unwrap()
            .iter()
            .flat_map(|r| &r.resource_spans)
            .flat_map(|rs| {
                let service = rs
                    .resource
                    .as_ref()
                    .and_then(|r| string_attr(&r.attributes, "service.name"));
                rs.scope_spans
                    .iter()
                    .flat_map(|s| &s.spans)
                    .map(move |span| (service.clone(), span.clone()))
            })
            .collect()
    }
}

/// `shop serve <service>` in a process of its own, exporting to `collector`; returns it with
/// the address it listens on.
async fn serve(
    service: &str,
    collector: &Collector,
    env: &[(&str, String)],
) -> (Child, SocketAddr) {
    let addr_var = format!("{}_ADDR", service.to_uppercase());
    let mut child = Command::new(env!("CARGO_BIN_EXE_shop"))
        .args(["serve", service])
        .env(
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            format!("http://{}", collector.addr),
        )
        .env_remove("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        .env_remove("OTEL_SERVICE_NAME")
        .env("OTEL_BSP_SCHEDULE_DELAY", "200")
        .env(addr_var, "127.0.0.1:0")
        .env("RUST_LOG", "info")
        .envs(env.iter().map(|(k, v)| (*k, v)))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("shop starts");
    let stdout = child.stdout.take().unwrap();
    let addr = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).unwrap();
        // "<service> listening on http://127.0.0.1:PORT"
        line.trim()
            .rsplit("http://")
            .next()
            .unwrap()
            .parse()
            .unwrap()
    })
    .await
    .unwrap();
    (child, addr)
}

/// SIGTERM, then waits: a graceful stop flushes the exporter's last batch.
async fn stop(child: Child) {
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let mut child = child;
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "shop serve exited with {status}");
}

#[tokio::test]
async fn spans_are_exported_over_otlp_http_with_the_service_name() {
    let collector = Collector::start().await;
    // Nothing listens on port 1: the database and the broker stay unreachable, which the
    // service tolerates (not ready, still serving HTTP).
    let (child, addr) = serve(
        "checkout",
        &collector,
        &[
            ("DATABASE_URL", "postgres://nobody@127.0.0.1:1".into()),
            ("AMQP_URL", "amqp://nobody:x@127.0.0.1:1/%2f".into()),
        ],
    )
    .await;

    // A request that continues a known trace: its span is exported in that trace.
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let response = reqwest::Client::new()
        .get(format!("http://{addr}/healthz"))
        .header("traceparent", format!("00-{trace_id}-00f067aa0ba902b7-01"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    stop(child).await;

    // Everything arrived by the time the process exited; allow the server task a moment.
    let mut spans = Vec::new();
    for _ in 0..50 {
        spans = collector.spans();
        if !spans.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(!spans.is_empty(), "the collector received no span");
    assert!(
        spans
            .iter()
            .all(|(service, _)| service.as_deref() == Some("checkout")),
        "service.name is checkout on every exported span"
    );
    let request = spans
        .iter()
        .map(|(_, span)| span)
        .find(|span| {
            span.name == "request"
                && string_attr(&span.attributes, "path").as_deref() == Some("/healthz")
        })
        .unwrap_or_else(|| {
            panic!(
                "no request span for /healthz among {:?}",
                spans.iter().map(|(_, s)| &s.name).collect::<Vec<_>>()
            )
        });
    assert_eq!(
        string_attr(&request.attributes, "trace_id").as_deref(),
        Some(trace_id),
        "the request span carries the caller's W3C trace id"
    );
    assert_eq!(
        hex(&request.trace_id),
        trace_id,
        "the exported span is in the caller's trace"
    );
    assert_eq!(
        hex(&request.parent_span_id),
        "00f067aa0ba902b7",
        "the exported span's parent is the caller's span"
    );
}

/// One checkout, three services in three processes: the checkout request's span and the
/// event handlers' spans in cart, inventory and checkout are exported in one trace.
/// Needs the RabbitMQ and PostgreSQL of the test suite (AMQP_URL / DATABASE_URL or the defaults).
#[tokio::test]
async fn one_checkout_is_one_exported_trace_across_the_services() {
    let simple = uuid::Uuid::now_v7().simple().to_string();
    let id = format!("otel{}", &simple[simple.len() - 10..]);
    let settings = Settings {
        database_prefix: format!("{id}_"),
        exchange: format!("test.{id}"),
        queue_prefix: format!("test.{id}."),
        ..Settings::default()
    };
    let env = [
        ("SHOP_DATABASE_PREFIX", settings.database_prefix.clone()),
        ("SHOP_EXCHANGE", settings.exchange.clone()),
        ("SHOP_QUEUE_PREFIX", settings.queue_prefix.clone()),
        ("SHOP_DB_POOL", "4".into()),
    ];
    let status = Command::new(env!("CARGO_BIN_EXE_shop"))
        .arg("migrate")
        .envs(env.iter().map(|(k, v)| (*k, v)))
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "shop migrate");

    let collector = Collector::start().await;
    let mut children = Vec::new();
    let mut addrs = Vec::new();
    for which in Which::ALL {
        let (child, addr) = serve(which.name(), &collector, &env).await;
        children.push(child);
        addrs.push(addr);
    }
    let client = ShopClient::new(addrs[0], addrs[1], addrs[2]);
    let deadline = Instant::now() + Duration::from_secs(60);
    for which in Which::ALL {
        while !client.ready(which).await {
            assert!(Instant::now() < deadline, "{} not ready", which.name());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    client
        .register_product("OTEL-1", "traced mug", 500, 10)
        .await
        .unwrap();
    while !client
        .catalogue()
        .await
        .unwrap()
        .iter()
        .any(|e| e.sku == "OTEL-1")
    {
        assert!(
            Instant::now() < deadline,
            "checkout never learned the product"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    client
        .set_cart_item("otel-cart", "OTEL-1", 2)
        .await
        .unwrap();

    let trace_id = format!("{:032x}", uuid::Uuid::now_v7().as_u128());
    let lines = [CheckoutLine {
        sku: "OTEL-1".into(),
        quantity: 2,
    }];
    let response = client
        .http()
        .post(client.url(Which::Checkout, "/checkouts"))
        .header("traceparent", format!("00-{trace_id}-00f067aa0ba902b7-01"))
        .json(&serde_json::json!({
            "cart_id": "otel-cart", "customer_id": null, "lines": lines, "payment_token": "tok_visa"
        }))
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "{}", response.status());
    let order: serde_json::Value = response.json().await.unwrap();
    let order_id: uuid::Uuid = order["order_id"].as_str().unwrap().parse().unwrap();
    loop {
        let order = client.order(order_id).await.unwrap().unwrap();
        if order.cart_updated && order.inventory_updated {
            break;
        }
        assert!(Instant::now() < deadline, "the order never settled");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    for child in children {
        stop(child).await;
    }
    let in_trace: Vec<(String, String)> = collector
        .spans()
        .into_iter()
        .filter(|(_, span)| hex(&span.trace_id) == trace_id)
        .map(|(service, span)| (service.unwrap_or_default(), span.name))
        .collect();
    // Clean up before judging, so a failure leaves no databases or queues behind.
    for which in Which::ALL {
        kit::db::drop_database(&settings.database_url(which))
            .await
            .unwrap();
    }
    events::admin::delete_topology(&settings.bus(), &["checkout", "cart", "inventory"])
        .await
        .unwrap();
    for (service, name) in [
        ("checkout", "request"),
        ("cart", "event"),
        ("inventory", "event"),
        ("checkout", "event"),
    ] {
        assert!(
            in_trace.iter().any(|(s, n)| s == service && n == name),
            "no {name} span of {service} in the checkout's trace: {in_trace:?}"
        );
    }
}
