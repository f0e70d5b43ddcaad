//! Checkout's HTTP API.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json as JsonResponse, Router};
use kit::ids::{check_id, check_positive};
use kit::{Json, Path, Problem};
use serde::Deserialize;
use uuid::Uuid;

use crate::AppState;
use crate::place::{self, CheckoutError, CheckoutRequest, Placed};
use crate::store::{self, CatalogueEntry, Order};

/// Most lines one checkout may have. It bounds the row locks of one transaction and the size
/// of one event; the largest real order in the Online Retail year has 1,110 distinct
/// products, so a wholesale order must fit with room to spare. (The body limit in `kit::http`
/// fits this many lines with the longest skus.)
pub const MAX_LINES: usize = 2_000;
/// Most units of one sku per checkout.
pub const MAX_QUANTITY: i64 = 1_000_000;

pub fn routes(state: AppState) -> Router {
    Router::new()
        .route("/checkouts", post(checkout))
        .route("/orders/{order_id}", get(get_order))
        .route("/catalogue", get(catalogue))
        .with_state(state)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CheckoutBody {
    cart_id: String,
    #[serde(default)]
    customer_id: Option<String>,
    lines: Vec<LineBody>,
    payment_token: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LineBody {
    sku: String,
    quantity: i64,
}

fn validate(body: CheckoutBody) -> Result<CheckoutRequest, Problem> {
    check_id("cart_id", &body.cart_id)?;
    if let Some(c) = &body.customer_id {
        check_id("customer_id", c)?;
    }
    if body.lines.is_empty() {
        return Err(Problem::invalid(
            "lines",
            "a checkout needs at least one line",
        ));
    }
    if body.lines.len() > MAX_LINES {
        return Err(Problem::invalid(
            "lines",
            format!("a checkout may have at most {MAX_LINES} lines"),
        ));
    }
    for (i, line) in body.lines.iter().enumerate() {
        check_id(&format!("lines[{i}].sku"), &line.sku)?;
        check_positive(&format!("lines[{i}].quantity"), line.quantity)?;
        if line.quantity > MAX_QUANTITY {
            return Err(Problem::invalid(
                format!("lines[{i}].quantity"),
                format!("at most {MAX_QUANTITY} units per line"),
            ));
        }
    }
    if body.payment_token.trim().is_empty() || body.payment_token.len() > 200 {
        return Err(Problem::invalid(
            "payment_token",
            "payment_token must be 1 to 200 bytes",
        ));
    }
    let lines = place::merge_lines(body.lines.into_iter().map(|l| (l.sku, l.quantity)));
    // Lines of one sku are merged: their sum is held to the same limit as a single line.
    if let Some((index, sku, quantity)) = lines.iter().find(|(_, _, q)| *q > MAX_QUANTITY) {
        return Err(Problem::invalid(
            format!("lines[{index}].quantity"),
            format!(
                "at most {MAX_QUANTITY} units per sku; the lines of sku {sku} add up to {quantity}"
            ),
        ));
    }
    Ok(CheckoutRequest {
        cart_id: body.cart_id,
        customer_id: body.customer_id,
        lines,
        payment_token: body.payment_token,
    })
}

/// The header a client sets to make retries of one checkout safe.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";

fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, Problem> {
    let Some(value) = headers.get(IDEMPOTENCY_KEY) else {
        return Ok(None);
    };
    let invalid = || {
        Problem::invalid(
            "Idempotency-Key",
            "the Idempotency-Key header must be 1 to 255 visible ASCII characters",
        )
    };
    let key = value.to_str().map_err(|_| invalid())?;
    if key.is_empty() || key.len() > 255 || !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(invalid());
    }
    Ok(Some(key.to_string()))
}

async fn checkout(
    State(s): State<AppState>,
    headers: HeaderMap,
    Json(body): Json<CheckoutBody>,
) -> Result<Response, Problem> {
    let key = idempotency_key(&headers)?;
    let request = validate(body)?;
    match place::place_order(&s, request, key.as_deref()).await {
        Ok(Placed::New(order)) => Ok((StatusCode::CREATED, JsonResponse(order)).into_response()),
        Ok(Placed::Replayed { status, body }) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::CREATED);
            Ok((
                status,
                [("idempotent-replayed", "true")],
                JsonResponse(body),
            )
                .into_response())
        }
        Err(e) => Err(problem(e)),
    }
}

fn problem(e: CheckoutError) -> Problem {
    match e {
        CheckoutError::UnknownSku { index, sku } => {
            Problem::invalid(format!("lines[{index}].sku"), format!("unknown sku {sku}"))
        }
        CheckoutError::OutOfStock {
            index,
            sku,
            wanted,
            available,
        } => Problem::conflict(
            "insufficient-stock",
            format!("sku {sku}: {wanted} wanted, only {available} available"),
        )
        .with_field(format!("lines[{index}].quantity")),
        CheckoutError::KeyReused => Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "idempotency-key-reused",
            "this Idempotency-Key was already used for a different checkout request; use a new key for a new request",
        )
        .with_field("Idempotency-Key"),
        CheckoutError::TotalOverflow => Problem::invalid("lines", "the order total is too large"),
        CheckoutError::Declined(reason) => {
            Problem::new(StatusCode::PAYMENT_REQUIRED, "payment-declined", reason)
                .with_field("payment_token")
        }
        CheckoutError::Gateway(e) => {
            tracing::error!(error = %format!("{e:#}"), "payment gateway failed");
            Problem::new(
                StatusCode::BAD_GATEWAY,
                "payment-unavailable",
                "the payment gateway failed; nothing was charged",
            )
        }
        CheckoutError::Database(e) => Problem::from(e),
    }
}

async fn get_order(
    State(s): State<AppState>,
    Path(order_id): Path<Uuid>,
) -> Result<JsonResponse<Order>, Problem> {
    store::get_order(&s.pool, order_id)
        .await?
        .map(JsonResponse)
        .ok_or_else(|| Problem::not_found(format!("no order {order_id}")))
}

/// Checkout's view of the catalogue: what it would sell, at which price, how many.
async fn catalogue(
    State(s): State<AppState>,
) -> Result<JsonResponse<Vec<CatalogueEntry>>, Problem> {
    Ok(JsonResponse(store::catalogue(&s.pool).await?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(lines: &[(&str, i64)]) -> CheckoutBody {
        CheckoutBody {
            cart_id: "c1".into(),
            customer_id: None,
            lines: lines
                .iter()
                .map(|(sku, quantity)| LineBody {
                    sku: sku.to_string(),
                    quantity: *quantity,
                })
                .collect(),
            payment_token: "tok_visa".into(),
        }
    }

    #[test]
    fn merged_lines_are_held_to_the_per_line_limit() {
        let ok = validate(body(&[("A", MAX_QUANTITY - 1), ("B", 5), ("A", 1)])).unwrap();
        assert_eq!(ok.lines[0], (0, "A".to_string(), MAX_QUANTITY));
        let p = validate(body(&[("B", 1), ("A", MAX_QUANTITY), ("A", 1)])).unwrap_err();
        assert_eq!(
            (p.status, p.field.as_deref()),
            (422, Some("lines[1].quantity"))
        );
        let p = validate(body(&[
            ("A", MAX_QUANTITY),
            ("A", MAX_QUANTITY),
            ("A", MAX_QUANTITY),
        ]))
        .unwrap_err();
        assert_eq!(p.field.as_deref(), Some("lines[0].quantity"));
    }

    #[test]
    fn the_largest_valid_checkout_fits_in_the_body_limit() {
        let sku = "S".repeat(kit::ids::MAX_ID_LEN);
        let lines: Vec<serde_json::Value> = (0..MAX_LINES)
            .map(|_| serde_json::json!({"sku": sku, "quantity": MAX_QUANTITY}))
            .collect();
        let id = "c".repeat(kit::ids::MAX_ID_LEN);
        let largest = serde_json::json!({
            "cart_id": id, "customer_id": id, "lines": lines, "payment_token": id,
        });
        let size = serde_json::to_vec(&largest).unwrap().len();
        assert!(
            size < kit::http::BODY_LIMIT_BYTES,
            "{size} bytes: a valid checkout would be refused as too large"
        );
    }
}
