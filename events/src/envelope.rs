//! The CloudEvents 1.0 envelope (structured JSON mode) every event travels in.
//!
//! We keep our own small serde type instead of `cloudevents-sdk`: the SDK has no AMQP binding,
//! and the envelope is a dozen fields whose exact JSON we want to pin with fixtures.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use uuid::Uuid;

use crate::contract::Event;

/// `content_type` of every message on the bus.
pub const CONTENT_TYPE: &str = "application/cloudevents+json";
/// The only CloudEvents version we produce and accept.
pub const SPEC_VERSION: &str = "1.0";
/// `datacontenttype` of every event's `data`.
pub const DATA_CONTENT_TYPE: &str = "application/json";

/// Everything in an envelope except `data`: what middleware (inbox, retry, tracing) works on
/// without knowing the event's type.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Meta {
    pub id: Uuid,
    pub source: String,
    #[serde(rename = "type")]
    pub event_type: String,
    pub specversion: String,
    pub time: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    pub datacontenttype: String,
    /// The id of the first event (or request) of the business flow this event belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlationid: Option<String>,
    /// The id of the event that caused this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub causationid: Option<String>,
    /// W3C trace context, so one checkout is one trace across services.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
}

/// A typed envelope: `Meta` plus the event's data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope<T> {
    #[serde(flatten)]
    pub meta: Meta,
    pub data: T,
}

/// An envelope whose `data` is not parsed yet: the consumer reads the type first, then hands
/// the raw data to the handler registered for it (no double parse of the payload).
#[derive(Debug, Deserialize)]
pub struct RawEnvelope {
    #[serde(flatten)]
    pub meta: Meta,
    pub data: Box<RawValue>,
}

impl<T: Event> Envelope<T> {
    /// A new envelope with a fresh UUID v7 id, for an event produced by `service`.
    /// The correlation id starts a new flow at this event unless the caller sets one.
    pub fn new(service: &str, data: T) -> Self {
        let id = Uuid::now_v7();
        Envelope {
            meta: Meta {
                id,
                source: format!("/shop/{service}"),
                event_type: T::TYPE.to_string(),
                specversion: SPEC_VERSION.to_string(),
                time: Utc::now(),
                subject: Some(data.subject()),
                datacontenttype: DATA_CONTENT_TYPE.to_string(),
                correlationid: Some(id.to_string()),
                causationid: None,
                // The trace of the request (or handler) publishing it, as a child span.
                traceparent: crate::trace::current().map(|t| t.child().to_string()),
            },
            data,
        }
    }

    /// Marks this envelope as caused by `cause`: same correlation and trace, causation = cause.
    pub fn caused_by(mut self, cause: &Meta) -> Self {
        self.meta.correlationid = cause
            .correlationid
            .clone()
            .or_else(|| Some(cause.id.to_string()));
        self.meta.causationid = Some(cause.id.to_string());
        self.meta.traceparent = cause
            .traceparent
            .as_deref()
            .and_then(crate::trace::TraceParent::parse)
            .map(|t| t.child().to_string());
        self
    }

    pub fn with_correlation(mut self, correlation_id: impl Into<String>) -> Self {
        self.meta.correlationid = Some(correlation_id.into());
        self
    }
}

/// Why a message body is not an event we can handle. Every variant sends the message to the
/// dead-letter queue at once: retrying would never change the outcome.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("body is not valid UTF-8 JSON: {0}")]
    Malformed(String),
    #[error("unsupported CloudEvents specversion {0:?} (expected \"1.0\")")]
    SpecVersion(String),
    #[error("unknown event type {0:?}")]
    UnknownType(String),
    #[error("unsupported version of {family}: got {got}, this consumer handles {handled}")]
    UnsupportedVersion {
        family: String,
        got: String,
        handled: String,
    },
    #[error("data does not match {event_type}: {reason}")]
    InvalidData { event_type: String, reason: String },
}

impl DecodeError {
    /// A short, stable label for metrics and the dead-letter `x-reason` header.
    pub fn kind(&self) -> &'static str {
        match self {
            DecodeError::Malformed(_) => "malformed",
            DecodeError::SpecVersion(_) => "unsupported-specversion",
            DecodeError::UnknownType(_) => "unknown-type",
            DecodeError::UnsupportedVersion { .. } => "unsupported-version",
            DecodeError::InvalidData { .. } => "invalid-data",
        }
    }
}

impl RawEnvelope {
    /// Parses a message body. Fails on anything that is not a CloudEvents 1.0 JSON envelope.
    pub fn parse(body: &[u8]) -> Result<Self, DecodeError> {
        let raw: RawEnvelope =
            serde_json::from_slice(body).map_err(|e| DecodeError::Malformed(e.to_string()))?;
        if raw.meta.specversion != SPEC_VERSION {
            return Err(DecodeError::SpecVersion(raw.meta.specversion));
        }
        Ok(raw)
    }

    /// Parses `data` as `T`, naming the field that doesn't fit.
    pub fn decode<T: Event>(&self) -> Result<Envelope<T>, DecodeError> {
        let mut de = serde_json::Deserializer::from_str(self.data.get());
        let data: T =
            serde_path_to_error::deserialize(&mut de).map_err(|e| DecodeError::InvalidData {
                event_type: self.meta.event_type.clone(),
                reason: if e.path().to_string() == "." {
                    e.inner().to_string()
                } else {
                    format!("field `{}`: {}", e.path(), e.inner())
                },
            })?;
        Ok(Envelope {
            meta: self.meta.clone(),
            data,
        })
    }
}

/// Splits `inventory.stock_changed.v1` into (`inventory.stock_changed`, `v1`).
pub fn split_version(event_type: &str) -> Option<(&str, &str)> {
    let (family, version) = event_type.rsplit_once('.')?;
    let digits = version.strip_prefix('v')?;
    (!digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())).then_some((family, version))
}
