//! What a service writes to react to an event: a `Handler` per event type. The handler holds
//! only business logic; the inbox, transaction, retry and dead-lettering are done around it.

use std::any::Any;
use std::collections::BTreeMap;
use std::marker::PhantomData;
use std::sync::Arc;

use async_trait::async_trait;
use sqlx::PgConnection;

use crate::contract::Event;
use crate::envelope::{DecodeError, Envelope, Meta, RawEnvelope, split_version};
use crate::outbox::Outbox;

/// How a handler failed, which decides what happens to the message.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// Might work later (database down, lock timeout): retried with backoff, then dead-lettered.
    #[error("transient: {0:#}")]
    Transient(anyhow::Error),
    /// Will never work (violates an invariant): dead-lettered at once.
    #[error("permanent: {0:#}")]
    Permanent(anyhow::Error),
}

impl HandlerError {
    pub fn transient(e: impl Into<anyhow::Error>) -> Self {
        HandlerError::Transient(e.into())
    }
    pub fn permanent(e: impl Into<anyhow::Error>) -> Self {
        HandlerError::Permanent(e.into())
    }
}

/// Database errors are transient (connection lost, deadlock, serialization failure) except
/// integrity violations (SQLSTATE class 23) and data errors (class 22): the same event would
/// violate the same constraint every time.
impl From<sqlx::Error> for HandlerError {
    fn from(e: sqlx::Error) -> Self {
        let permanent = matches!(&e, sqlx::Error::Database(db)
            if db.code().is_some_and(|c| c.starts_with("23") || c.starts_with("22")));
        if permanent {
            HandlerError::Permanent(e.into())
        } else {
            HandlerError::Transient(e.into())
        }
    }
}

/// What a handler can touch: the open transaction (its writes commit with the inbox record)
/// and the outbox, to publish follow-up events in that same transaction.
pub struct Context<'c> {
    pub tx: &'c mut PgConnection,
    outbox: &'c Outbox,
    cause: &'c Meta,
}

impl<'c> Context<'c> {
    pub(crate) fn new(tx: &'c mut PgConnection, outbox: &'c Outbox, cause: &'c Meta) -> Self {
        Context { tx, outbox, cause }
    }

    /// Publishes `data` as caused by the event being handled, in the handler's transaction.
    pub async fn publish<E: Event>(&mut self, data: E) -> Result<(), sqlx::Error> {
        self.outbox
            .publish_caused_by(self.tx, self.cause, data)
            .await
            .map(|_| ())
    }

    /// The envelope metadata of the event being handled.
    pub fn meta(&self) -> &Meta {
        self.cause
    }
}

#[async_trait]
pub trait Handler<E: Event>: Send + Sync + 'static {
    async fn handle(&self, ctx: &mut Context<'_>, event: Envelope<E>) -> Result<(), HandlerError>;
}

/// A handler with its event type erased, so one consumer can dispatch on the `type` field.
#[async_trait]
pub(crate) trait ErasedHandler: Send + Sync {
    fn decode(&self, raw: &RawEnvelope) -> Result<Box<dyn Any + Send>, DecodeError>;
    async fn call(
        &self,
        ctx: &mut Context<'_>,
        decoded: Box<dyn Any + Send>,
    ) -> Result<(), HandlerError>;
}

struct Typed<E, H> {
    handler: H,
    _event: PhantomData<fn() -> E>,
}

#[async_trait]
impl<E: Event, H: Handler<E>> ErasedHandler for Typed<E, H> {
    fn decode(&self, raw: &RawEnvelope) -> Result<Box<dyn Any + Send>, DecodeError> {
        Ok(Box::new(raw.decode::<E>()?))
    }

    async fn call(
        &self,
        ctx: &mut Context<'_>,
        decoded: Box<dyn Any + Send>,
    ) -> Result<(), HandlerError> {
        let envelope = decoded.downcast::<Envelope<E>>().map_err(|_| {
            HandlerError::permanent(anyhow::anyhow!("decoded event of the wrong type"))
        })?;
        self.handler.handle(ctx, *envelope).await
    }
}

/// One service's subscriptions: a queue named after it, bound to exactly the event types it
/// has handlers for.
#[derive(Clone)]
pub struct Subscriber {
    name: String,
    handlers: BTreeMap<&'static str, Arc<dyn ErasedHandler>>,
}

impl Subscriber {
    /// `name` names the queue and the inbox consumer: keep it stable across releases.
    pub fn new(name: impl Into<String>) -> Self {
        Subscriber {
            name: name.into(),
            handlers: BTreeMap::new(),
        }
    }

    pub fn on<E: Event, H: Handler<E>>(mut self, handler: H) -> Self {
        let previous = self.handlers.insert(
            E::TYPE,
            Arc::new(Typed::<E, H> {
                handler,
                _event: PhantomData,
            }),
        );
        assert!(
            previous.is_none(),
            "two handlers registered for {}",
            E::TYPE
        );
        self
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn event_types(&self) -> Vec<&'static str> {
        self.handlers.keys().copied().collect()
    }

    /// `event_type` as a `'static` name if this subscriber handles it.
    pub fn known_type(&self, event_type: &str) -> Option<&'static str> {
        self.handlers.get_key_value(event_type).map(|(k, _)| *k)
    }

    /// The handler for `event_type`, or why there is none.
    pub(crate) fn handler_for(
        &self,
        event_type: &str,
    ) -> Result<&Arc<dyn ErasedHandler>, DecodeError> {
        if let Some(h) = self.handlers.get(event_type) {
            return Ok(h);
        }
        // Same family, other version: say so, it tells the operator a producer moved ahead.
        if let Some((family, got)) = split_version(event_type) {
            let handled: Vec<&str> = self
                .handlers
                .keys()
                .filter_map(|t| {
                    split_version(t)
                        .filter(|(f, _)| *f == family)
                        .map(|(_, v)| v)
                })
                .collect();
            if !handled.is_empty() {
                return Err(DecodeError::UnsupportedVersion {
                    family: family.to_string(),
                    got: got.to_string(),
                    handled: handled.join(", "),
                });
            }
        }
        Err(DecodeError::UnknownType(event_type.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contracts::StockChanged;

    struct Noop;

    #[async_trait]
    impl Handler<StockChanged> for Noop {
        async fn handle(
            &self,
            _: &mut Context<'_>,
            _: Envelope<StockChanged>,
        ) -> Result<(), HandlerError> {
            Ok(())
        }
    }

    fn reason(s: &Subscriber, t: &str) -> &'static str {
        s.handler_for(t).err().map_or("found", |e| e.kind())
    }

    #[test]
    fn dispatch_tells_unknown_types_from_unsupported_versions() {
        let s = Subscriber::new("checkout").on::<StockChanged, _>(Noop);
        assert_eq!(s.event_types(), vec!["inventory.stock_changed.v1"]);
        assert_eq!(reason(&s, "inventory.stock_changed.v1"), "found");
        assert_eq!(
            reason(&s, "inventory.stock_changed.v2"),
            "unsupported-version"
        );
        assert_eq!(reason(&s, "inventory.something_else.v1"), "unknown-type");
        assert_eq!(reason(&s, "garbage"), "unknown-type");
    }

    #[test]
    fn integrity_errors_are_permanent_and_the_rest_transient() {
        assert!(matches!(
            HandlerError::from(sqlx::Error::PoolTimedOut),
            HandlerError::Transient(_)
        ));
    }
}
