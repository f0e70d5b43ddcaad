//! Optional OpenTelemetry export of the tracing spans (the `request` span of every HTTP request,
//! the `event` span of every handled event, and everything under them).
//!
//! Off unless `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set:
//! then the spans are batched and sent over OTLP/HTTP with protobuf bodies to
//! `<endpoint>/v1/traces` (the standard variables: `OTEL_EXPORTER_OTLP_HEADERS`,
//! `OTEL_EXPORTER_OTLP_TIMEOUT`... apply), with `service.name` = the service
//! (`OTEL_SERVICE_NAME` overrides it). Without it nothing is sent anywhere and no exporter
//! exists. Each request and event span continues the W3C trace it came with (`traceparent`),
//! so one checkout is one exported trace across the services.

use std::sync::Mutex;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::Subscriber;
use tracing_subscriber::Layer;
use tracing_subscriber::registry::LookupSpan;

/// The running exporter, flushed and stopped by [`shutdown`].
static PROVIDER: Mutex<Option<SdkTracerProvider>> = Mutex::new(None);

/// Whether the environment asks for an export.
pub fn enabled() -> bool {
    [
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    ]
    .iter()
    .any(|v| std::env::var(v).is_ok_and(|s| !s.trim().is_empty()))
}

/// The layer that exports spans, if [`enabled`]; `service` names this process
/// (`service.name`) unless `OTEL_SERVICE_NAME` is set.
pub fn layer<S>(service: &str) -> anyhow::Result<Option<Box<dyn Layer<S> + Send + Sync>>>
where
    S: Subscriber + for<'a> LookupSpan<'a> + Send + Sync,
{
    if !enabled() {
        return Ok(None);
    }
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .build()?;
    let name = std::env::var("OTEL_SERVICE_NAME")
        .ok()
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| service.to_string());
    let provider = SdkTracerProvider::builder()
        .with_resource(Resource::builder().with_service_name(name).build())
        .with_batch_exporter(exporter)
        .build();
    let tracer = provider.tracer("shop");
    events::trace::set_attach_hook(attach);
    *PROVIDER.lock().unwrap_or_else(|e| e.into_inner()) = Some(provider);
    let layer = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        // The exporter's own HTTP client must not export its own spans (a feedback loop).
        .with_filter(tracing_subscriber::filter::filter_fn(|meta| {
            let target = meta.target();
            !["hyper", "h2", "reqwest", "opentelemetry", "tower"]
                .iter()
                .any(|t| target.starts_with(t))
        }));
    Ok(Some(Box::new(layer)))
}

/// Sends what is still batched and stops the exporter (a no-op when export is off). Call it
/// outside the async runtime, after the last span closed.
pub fn shutdown() {
    let provider = PROVIDER.lock().unwrap_or_else(|e| e.into_inner()).take();
    if let Some(provider) = provider
        && let Err(e) = provider.shutdown()
    {
        eprintln!("warning: OpenTelemetry export: {e}");
    }
}

/// The exported span continues the W3C trace the request or event came with (its traceparent
/// as a remote parent), so a checkout's spans in every service share one trace id. A parent
/// that is not sampled (flags 00) leaves the span unsampled, as W3C asks.
fn attach(span: &tracing::Span, parent: events::trace::TraceParent) {
    use opentelemetry::trace::{
        SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState,
    };
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    let remote = SpanContext::new(
        TraceId::from_bytes(parent.trace_id.to_be_bytes()),
        SpanId::from_bytes(parent.span_id.to_be_bytes()),
        TraceFlags::new(parent.flags),
        true,
        TraceState::default(),
    );
    let _ = span.set_parent(opentelemetry::Context::new().with_remote_span_context(remote));
}
