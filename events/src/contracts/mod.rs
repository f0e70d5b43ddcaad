//! The shop's integration events, version 1. One module per producing service.
//!
//! Each type documents one JSON example; the same examples are committed as fixtures under
//! `events/fixtures/v1/` and must keep parsing (see the tests below): changing a v1 contract in
//! a way that breaks an old message is a compile-or-test failure, not a production incident.

pub mod cart;
pub mod checkout;
pub mod inventory;

pub use cart::{CartCheckedOut, RemovedItem};
pub use checkout::{CheckoutCompleted, OrderLine};
pub use inventory::{
    AppliedLine, OrderApplied, ProductRegistered, StockChangeReason, StockChanged,
};

/// Every event type this crate defines, for topology and tests.
pub const ALL_TYPES: &[&str] = &[
    <ProductRegistered as crate::Event>::TYPE,
    <StockChanged as crate::Event>::TYPE,
    <CheckoutCompleted as crate::Event>::TYPE,
    <CartCheckedOut as crate::Event>::TYPE,
    <OrderApplied as crate::Event>::TYPE,
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Event, RawEnvelope};

    fn fixture(event_type: &str) -> String {
        let path = format!(
            "{}/fixtures/v1/{event_type}.json",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    /// The committed fixture parses, keeps its type, and survives a round trip unchanged.
    fn check<E: Event + PartialEq + std::fmt::Debug>() -> E {
        let text = fixture(E::TYPE);
        let raw = RawEnvelope::parse(text.as_bytes()).expect("fixture is a valid envelope");
        assert_eq!(raw.meta.event_type, E::TYPE);
        let envelope = raw.decode::<E>().expect("fixture data parses");
        let again = serde_json::to_value(&envelope).unwrap();
        let original: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(again, original, "round trip changed {}", E::TYPE);
        assert_eq!(
            envelope.meta.subject.as_deref(),
            Some(envelope.data.subject().as_str())
        );
        envelope.data
    }

    #[test]
    fn product_registered_v1_fixture_parses() {
        let e = check::<ProductRegistered>();
        assert_eq!(e.sku, "85123A");
        assert_eq!(e.unit_price_cents, 255);
    }

    #[test]
    fn stock_changed_v1_fixture_parses() {
        let e = check::<StockChanged>();
        assert_eq!(e.reason, StockChangeReason::Sale);
        assert_eq!(e.stock, 94);
        assert_eq!(e.delta, -6);
        assert!(e.order_id.is_some());
    }

    #[test]
    fn checkout_completed_v1_fixture_parses() {
        let e = check::<CheckoutCompleted>();
        assert_eq!(
            e.total_cents,
            e.lines
                .iter()
                .map(|l| l.quantity * l.unit_price_cents)
                .sum::<i64>()
        );
        assert_eq!(e.currency, "GBP");
    }

    #[test]
    fn cart_checked_out_v1_fixture_parses() {
        let e = check::<CartCheckedOut>();
        assert_eq!(e.removed.len(), 2);
    }

    #[test]
    fn order_applied_v1_fixture_parses() {
        let e = check::<OrderApplied>();
        assert_eq!(e.lines[0].stock_after, 94);
    }

    #[test]
    fn every_type_is_versioned_and_has_a_fixture() {
        for t in ALL_TYPES {
            assert!(
                crate::envelope::split_version(t).is_some(),
                "{t} has no .vN suffix"
            );
            assert!(!fixture(t).is_empty());
        }
    }

    #[test]
    fn a_missing_field_is_named() {
        let text = fixture(StockChanged::TYPE).replace("\"delta\": -6,", "");
        let raw = RawEnvelope::parse(text.as_bytes()).unwrap();
        let err = raw.decode::<StockChanged>().unwrap_err().to_string();
        assert!(err.contains("delta"), "{err}");
    }

    #[test]
    fn a_wrong_type_is_named() {
        let text = fixture(StockChanged::TYPE).replace("\"stock\": 94", "\"stock\": \"many\"");
        let raw = RawEnvelope::parse(text.as_bytes()).unwrap();
        let err = raw.decode::<StockChanged>().unwrap_err().to_string();
        assert!(err.contains("field `stock`"), "{err}");
    }

    #[test]
    fn garbage_is_malformed() {
        for body in [&b"{\"id\": "[..], &[0xff, 0xfe, 0x00][..], &b"[]"[..]] {
            let err = RawEnvelope::parse(body).unwrap_err();
            assert_eq!(err.kind(), "malformed");
        }
        let text = fixture(StockChanged::TYPE)
            .replace("\"specversion\": \"1.0\"", "\"specversion\": \"0.3\"");
        assert_eq!(
            RawEnvelope::parse(text.as_bytes()).unwrap_err().kind(),
            "unsupported-specversion"
        );
    }
}
