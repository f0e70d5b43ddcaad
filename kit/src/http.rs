//! The HTTP shell every service shares: body limit, problem+json for unknown routes, health
//! routes, request tracing, graceful shutdown.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use events::BusHealth;
use sqlx::PgPool;
use tower_http::trace::TraceLayer;

use crate::problem::Problem;

/// A request (its body included) that takes longer than this gets a 408: a client that never
/// finishes sending its body must not hold a connection and a task for ever. Handlers
/// themselves finish far sooner (their database waits are bounded at 5 s).
pub const REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Requests larger than this are refused with 413 before they are parsed. Large enough for the
/// largest valid request: a checkout of its most lines with the longest ids (about 100 bytes a
/// line).
pub const BODY_LIMIT_BYTES: usize = 256 * 1024;

#[derive(Clone)]
struct Readiness {
    pool: PgPool,
    bus: Arc<BusHealth>,
}

/// Wraps a service's routes with what every service has.
pub fn app(service: &'static str, routes: Router, pool: PgPool, bus: Arc<BusHealth>) -> Router {
    crate::metrics::handle();
    let health = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(crate::metrics::render))
        .with_state(Readiness { pool, bus });
    routes
        .merge(health)
        .fallback(|| async { Problem::not_found("no such route") })
        .method_not_allowed_fallback(|| async {
            Problem::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method-not-allowed",
                "this route does not accept that method",
            )
        })
        .layer(DefaultBodyLimit::max(BODY_LIMIT_BYTES))
        .layer(axum::middleware::from_fn(time_limit))
        .layer(axum::middleware::from_fn(move |req, next| {
            crate::metrics::track(service, req, next)
        }))
        .layer(axum::middleware::from_fn(trace_request))
        .layer(TraceLayer::new_for_http())
}

/// Answers 408 (problem+json) when the request, body included, is not done within
/// [`REQUEST_TIMEOUT`]; the handler's future is dropped, so its transaction rolls back.
async fn time_limit(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    match tokio::time::timeout(REQUEST_TIMEOUT, next.run(request)).await {
        Ok(response) => response,
        Err(_) => Problem::new(
            StatusCode::REQUEST_TIMEOUT,
            "request-timeout",
            format!(
                "the request was not complete within {} s",
                REQUEST_TIMEOUT.as_secs()
            ),
        )
        .into_response(),
    }
}

/// Continues the caller's W3C trace (`traceparent` header) or starts one; events published
/// while handling the request carry it, the response returns it, and the request's log lines
/// carry its trace id.
async fn trace_request(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use events::trace::{self, TraceParent};
    let parent = request
        .headers()
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .and_then(TraceParent::parse);
    let current = parent.map_or_else(TraceParent::new_root, |p| p.child());
    let span = tracing::info_span!(
        "request",
        method = %request.method(),
        path = %request.uri().path(),
        trace_id = %current.trace_id_hex(),
    );
    // The caller's span, or (a new trace) the one the request's events will name as parent.
    trace::attach(&span, parent.unwrap_or(current));
    let mut response =
        tracing::Instrument::instrument(trace::scope(current, next.run(request)), span).await;
    if let Ok(value) = axum::http::HeaderValue::from_str(&current.to_string()) {
        response.headers_mut().insert("traceparent", value);
    }
    response
}

/// Ready = database reachable, broker connected, consumers running. 503 with the details
/// otherwise, so an orchestrator holds traffic back and an operator sees why.
async fn readyz(State(r): State<Readiness>) -> impl IntoResponse {
    let database = tokio::time::timeout(
        Duration::from_secs(2),
        sqlx::query("SELECT 1").execute(&r.pool),
    )
    .await
    .is_ok_and(|res| res.is_ok());
    let bus = r.bus.status();
    let ready = database && bus.ready();
    let body = serde_json::json!({
        "ready": ready,
        "database": database,
        "broker_connected": bus.broker_connected,
        "consumers_running": bus.consumers_running,
        "last_error": bus.last_error,
    });
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(body))
}
