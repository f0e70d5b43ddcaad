//! Cart's HTTP API.

use axum::extract::State;
use axum::routing::{get, put};
use axum::{Json as JsonResponse, Router};
use kit::ids::check_id;
use kit::{Json, Path, Problem};
use serde::Deserialize;
use sqlx::PgPool;

use crate::store::{self, Cart};

/// Most units of one sku a cart may hold.
pub const MAX_QUANTITY: i64 = 1_000_000;

pub fn routes(pool: PgPool) -> Router {
    Router::new()
        .route("/carts/{cart_id}", get(get_cart))
        .route("/carts/{cart_id}/items/{sku}", put(set_item))
        .with_state(pool)
}

async fn get_cart(
    State(pool): State<PgPool>,
    Path(cart_id): Path<String>,
) -> Result<JsonResponse<Cart>, Problem> {
    check_id("cart_id", &cart_id)?;
    Ok(JsonResponse(store::get(&pool, &cart_id).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SetItem {
    quantity: i64,
}

async fn set_item(
    State(pool): State<PgPool>,
    Path((cart_id, sku)): Path<(String, String)>,
    Json(body): Json<SetItem>,
) -> Result<JsonResponse<Cart>, Problem> {
    check_id("cart_id", &cart_id)?;
    check_id("sku", &sku)?;
    if !(0..=MAX_QUANTITY).contains(&body.quantity) {
        return Err(Problem::invalid(
            "quantity",
            format!(
                "quantity must be 0 (remove) to {MAX_QUANTITY}, got {}",
                body.quantity
            ),
        ));
    }
    store::set_item(&pool, &cart_id, &sku, body.quantity).await?;
    Ok(JsonResponse(store::get(&pool, &cart_id).await?))
}
