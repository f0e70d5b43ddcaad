//! OpenTelemetry export by configuration: `shop serve checkout` with
//! OTEL_EXPORTER_OTLP_ENDPOINT set sends its spans over OTLP/HTTP (protobuf) to that endpoint,
//! as service.name = checkout. The collector is a tiny axum server on 127.0.0.1:0 that decodes
//! `POST /v1/traces`; the service runs as a process of its own (the subscriber is global).
//! No database or broker is needed: the service serves HTTP at once and keeps retrying them.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::routing::post;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use prost::Message;

type Received = Arc<Mutex<Vec<ExportTraceServiceRequest>>>;

fn string_attr(attrs: &[KeyValue], key: &str) -> Option<String> {
    attrs.iter().find(|kv| kv.key == key).and_then(|kv| {
        match kv.value.as_ref()?.value.as_ref()? {
            Value::StringValue(s) => Some(s.clone()),
            _ => None,
        }
    })
}

#[tokio::test]
async fn spans_are_exported_over_otlp_http_with_the_service_name() {
    // The fake collector.
    let received: Received = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let collector = listener.local_addr().unwrap();
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

    // checkout, in its own process, exporting to it. Nothing listens on port 1: the database
    // and the broker stay unreachable, which the service tolerates (not ready, still serving).
    let mut child = Command::new(env!("CARGO_BIN_EXE_shop"))
        .args(["serve", "checkout"])
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{collector}"))
        .env_remove("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        .env_remove("OTEL_SERVICE_NAME")
        .env("OTEL_BSP_SCHEDULE_DELAY", "200")
        .env("CHECKOUT_ADDR", "127.0.0.1:0")
        .env("DATABASE_URL", "postgres://nobody@127.0.0.1:1")
        .env("AMQP_URL", "amqp://nobody:x@127.0.0.1:1/%2f")
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("shop starts");
    let stdout = child.stdout.take().unwrap();
    let addr = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).unwrap();
        // "checkout listening on http://127.0.0.1:PORT"
        line.trim().rsplit("http://").next().unwrap().to_string()
    })
    .await
    .unwrap();

    // A request that continues a known trace: its span is exported with that trace id.
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let response = reqwest::Client::new()
        .get(format!("http://{addr}/healthz"))
        .header("traceparent", format!("00-{trace_id}-00f067aa0ba902b7-01"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);

    // SIGTERM: a graceful stop flushes the exporter's last batch.
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "shop serve exited with {status}");

    // Everything arrived by the time the process exited; allow the server task a moment.
    let mut spans = Vec::new();
    for _ in 0..50 {
        spans = received
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
            .collect::<Vec<_>>();
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
    let hex = |bytes: &[u8]| bytes.iter().map(|b| format!("{b:02x}")).collect::<String>();
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
