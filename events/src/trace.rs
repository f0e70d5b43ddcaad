//! W3C trace context across the bus: the `traceparent` an HTTP request came with (or a new
//! one) rides in every event it causes, and every handler continues it, so one checkout is
//! one trace across the services and every log line of it carries the same `trace_id`.

use std::fmt;

use rand::Rng;

/// A parsed `traceparent`: `00-<32 hex trace id>-<16 hex span id>-<2 hex flags>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceParent {
    pub trace_id: u128,
    pub span_id: u64,
    pub flags: u8,
}

impl TraceParent {
    /// A new trace (sampled).
    pub fn new_root() -> Self {
        let mut rng = rand::rng();
        TraceParent {
            trace_id: rng.random::<u128>().max(1),
            span_id: rng.random::<u64>().max(1),
            flags: 1,
        }
    }

    /// A child span in the same trace.
    pub fn child(&self) -> Self {
        TraceParent {
            span_id: rand::rng().random::<u64>().max(1),
            ..*self
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        let mut parts = s.trim().split('-');
        let (version, trace, span, flags) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        if version != "00"
            || trace.len() != 32
            || span.len() != 16
            || flags.len() != 2
            || parts.next().is_some()
        {
            return None;
        }
        let trace_id = u128::from_str_radix(trace, 16).ok().filter(|t| *t != 0)?;
        let span_id = u64::from_str_radix(span, 16).ok().filter(|s| *s != 0)?;
        let flags = u8::from_str_radix(flags, 16).ok()?;
        Some(TraceParent {
            trace_id,
            span_id,
            flags,
        })
    }

    pub fn trace_id_hex(&self) -> String {
        format!("{:032x}", self.trace_id)
    }
}

impl fmt::Display for TraceParent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "00-{:032x}-{:016x}-{:02x}",
            self.trace_id, self.span_id, self.flags
        )
    }
}

tokio::task_local! {
    static CURRENT: TraceParent;
}

/// Runs `fut` with `trace` as the current trace context (what events published inside it carry).
pub async fn scope<F: std::future::Future>(trace: TraceParent, fut: F) -> F::Output {
    CURRENT.scope(trace, fut).await
}

/// The current trace context, if any.
pub fn current() -> Option<TraceParent> {
    CURRENT.try_with(|t| *t).ok()
}

/// How a span exporter makes a `tracing` span part of a W3C trace (the `shop` command installs
/// one when it exports to OpenTelemetry); without one, [`attach`] does nothing.
static ATTACH: std::sync::OnceLock<fn(&tracing::Span, TraceParent)> = std::sync::OnceLock::new();

/// Installs the hook [`attach`] calls (the first one installed stays).
pub fn set_attach_hook(hook: fn(&tracing::Span, TraceParent)) {
    let _ = ATTACH.set(hook);
}

/// Makes `span` (just created, not yet entered) a child of `parent` in an exporter's eyes,
/// so the spans of one checkout in every service form one exported trace.
pub fn attach(span: &tracing::Span, parent: TraceParent) {
    if let Some(hook) = ATTACH.get() {
        hook(span, parent);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_children_keep_the_trace() {
        let t =
            TraceParent::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
        assert_eq!(
            t.to_string(),
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        );
        let c = t.child();
        assert_eq!(c.trace_id, t.trace_id);
        assert_ne!(c.span_id, t.span_id);
        assert!(TraceParent::parse("garbage").is_none());
        assert!(
            TraceParent::parse("00-00000000000000000000000000000000-00f067aa0ba902b7-01").is_none()
        );
    }

    #[tokio::test]
    async fn scope_sets_the_current_context() {
        assert!(current().is_none());
        let t = TraceParent::new_root();
        assert_eq!(scope(t, async { current() }).await, Some(t));
    }
}
