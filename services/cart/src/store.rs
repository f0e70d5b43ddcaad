//! Cart's table.

use serde::Serialize;
use sqlx::{PgConnection, PgPool};

#[derive(Debug, Clone, Serialize, serde::Deserialize, sqlx::FromRow, PartialEq)]
pub struct Item {
    pub sku: String,
    pub quantity: i64,
}

#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct Cart {
    pub cart_id: String,
    pub items: Vec<Item>,
}

pub async fn get(pool: &PgPool, cart_id: &str) -> Result<Cart, sqlx::Error> {
    let items =
        sqlx::query_as("SELECT sku, quantity FROM cart_items WHERE cart_id = $1 ORDER BY sku")
            .bind(cart_id)
            .fetch_all(pool)
            .await?;
    Ok(Cart {
        cart_id: cart_id.to_string(),
        items,
    })
}

/// Sets an item's quantity; 0 removes it.
pub async fn set_item(
    pool: &PgPool,
    cart_id: &str,
    sku: &str,
    quantity: i64,
) -> Result<(), sqlx::Error> {
    if quantity == 0 {
        sqlx::query("DELETE FROM cart_items WHERE cart_id = $1 AND sku = $2")
            .bind(cart_id)
            .bind(sku)
            .execute(pool)
            .await?;
    } else {
        sqlx::query(
            "INSERT INTO cart_items (cart_id, sku, quantity) VALUES ($1, $2, $3)
             ON CONFLICT (cart_id, sku) DO UPDATE SET quantity = EXCLUDED.quantity, updated_at = now()",
        )
        .bind(cart_id)
        .bind(sku)
        .bind(quantity)
        .execute(pool)
        .await?;
    }
    Ok(())
}

/// Takes up to `quantity` (positive: the caller checks) of `sku` out of the cart; returns how
/// many were there to take.
/// Units added after the checkout stay: only what was bought is removed.
pub async fn take(
    conn: &mut PgConnection,
    cart_id: &str,
    sku: &str,
    quantity: i64,
) -> Result<i64, sqlx::Error> {
    let held: Option<i64> = sqlx::query_scalar(
        "SELECT quantity FROM cart_items WHERE cart_id = $1 AND sku = $2 FOR UPDATE",
    )
    .bind(cart_id)
    .bind(sku)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(held) = held else { return Ok(0) };
    if held <= quantity {
        sqlx::query("DELETE FROM cart_items WHERE cart_id = $1 AND sku = $2")
            .bind(cart_id)
            .bind(sku)
            .execute(&mut *conn)
            .await?;
        Ok(held)
    } else {
        sqlx::query("UPDATE cart_items SET quantity = quantity - $3, updated_at = now() WHERE cart_id = $1 AND sku = $2")
            .bind(cart_id)
            .bind(sku)
            .bind(quantity)
            .execute(&mut *conn)
            .await?;
        Ok(quantity)
    }
}
