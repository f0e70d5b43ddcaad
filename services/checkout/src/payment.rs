//! Taking the payment. A trait so a real gateway drops in; the built-in fake follows the
//! usual test-card convention.

use async_trait::async_trait;

#[derive(Debug, Clone, PartialEq)]
pub enum PaymentOutcome {
    Approved { payment_id: String },
    Declined { reason: String },
}

#[async_trait]
pub trait PaymentGateway: Send + Sync + 'static {
    /// Charges `amount_cents`. `reference` (the order id) lets a real gateway deduplicate.
    async fn charge(
        &self,
        token: &str,
        amount_cents: i64,
        currency: &str,
        reference: &str,
    ) -> anyhow::Result<PaymentOutcome>;
}

/// `tok_visa` approves, `tok_declined` is declined, anything else is declined as unknown.
#[derive(Debug, Default, Clone)]
pub struct FakeGateway;

#[async_trait]
impl PaymentGateway for FakeGateway {
    async fn charge(
        &self,
        token: &str,
        _amount_cents: i64,
        _currency: &str,
        reference: &str,
    ) -> anyhow::Result<PaymentOutcome> {
        Ok(match token {
            "tok_visa" => PaymentOutcome::Approved {
                payment_id: format!("pay_{reference}"),
            },
            "tok_declined" => PaymentOutcome::Declined {
                reason: "the card was declined".into(),
            },
            _ => PaymentOutcome::Declined {
                reason: "unknown payment token (the test gateway knows tok_visa and tok_declined)"
                    .into(),
            },
        })
    }
}
