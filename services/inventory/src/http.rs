//! Inventory's HTTP API.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json as JsonResponse, Router};
use events::contracts::ProductRegistered;
use kit::ids::{check_id, check_positive, check_text};
use kit::{Json, Path, Problem};
use serde::Deserialize;

use crate::AppState;
use crate::store::{self, Product};

/// Most units registered or restocked at once: far from overflowing a stock figure.
pub const MAX_UNITS: i64 = 1_000_000_000;
/// Longest product name, in bytes.
pub const MAX_NAME_LEN: usize = 200;

pub fn routes(state: AppState) -> Router {
    Router::new()
        .route("/products", post(register).get(list))
        .route("/products/{sku}", get(get_one))
        .route("/products/{sku}/restock", post(restock))
        .with_state(state)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewProduct {
    sku: String,
    name: String,
    unit_price_cents: i64,
    stock: i64,
}

async fn register(
    State(s): State<AppState>,
    Json(p): Json<NewProduct>,
) -> Result<(StatusCode, JsonResponse<Product>), Problem> {
    check_id("sku", &p.sku)?;
    check_text("name", &p.name, MAX_NAME_LEN)?;
    if p.unit_price_cents < 0 {
        return Err(Problem::invalid(
            "unit_price_cents",
            "unit_price_cents must not be negative",
        ));
    }
    if !(0..=MAX_UNITS).contains(&p.stock) {
        return Err(Problem::invalid(
            "stock",
            format!("stock must be 0 to {MAX_UNITS}"),
        ));
    }
    let sku = p.sku.clone();
    let event = ProductRegistered {
        sku: p.sku,
        name: p.name,
        unit_price_cents: p.unit_price_cents,
        stock: p.stock,
    };
    match store::register(&s.pool, &s.outbox, event).await? {
        Some(product) => Ok((StatusCode::CREATED, JsonResponse(product))),
        None => Err(Problem::conflict(
            "sku-exists",
            format!("a product with sku {sku} exists already"),
        )
        .with_field("sku")),
    }
}

async fn list(State(s): State<AppState>) -> Result<JsonResponse<Vec<Product>>, Problem> {
    Ok(JsonResponse(store::list(&s.pool).await?))
}

async fn get_one(
    State(s): State<AppState>,
    Path(sku): Path<String>,
) -> Result<JsonResponse<Product>, Problem> {
    check_id("sku", &sku)?;
    store::get(&s.pool, &sku)
        .await?
        .map(JsonResponse)
        .ok_or_else(|| Problem::not_found(format!("no product with sku {sku}")))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Restock {
    quantity: i64,
}

async fn restock(
    State(s): State<AppState>,
    Path(sku): Path<String>,
    Json(r): Json<Restock>,
) -> Result<JsonResponse<Product>, Problem> {
    check_id("sku", &sku)?;
    check_positive("quantity", r.quantity)?;
    if r.quantity > MAX_UNITS {
        return Err(Problem::invalid(
            "quantity",
            format!("at most {MAX_UNITS} units per restock"),
        ));
    }
    store::restock(&s.pool, &s.outbox, &sku, r.quantity)
        .await?
        .map(JsonResponse)
        .ok_or_else(|| Problem::not_found(format!("no product with sku {sku}")))
}
