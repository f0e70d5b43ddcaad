//! Checkout's tables: the catalogue replica / availability ledger, and orders.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

#[derive(Debug, Clone, Serialize, serde::Deserialize, sqlx::FromRow, PartialEq)]
pub struct CatalogueEntry {
    pub sku: String,
    pub name: Option<String>,
    pub unit_price_cents: Option<i64>,
    /// Inventory's stock as of `stock_version`.
    pub stock: i64,
    pub stock_version: i64,
    /// Units sold here that inventory's stock figure doesn't show yet.
    pub reserved: i64,
    /// What checkout will still sell: stock - reserved.
    pub available: i64,
}

const CATALOGUE_COLUMNS: &str =
    "sku, name, unit_price_cents, stock, stock_version, reserved, stock - reserved AS available";

pub async fn catalogue(pool: &PgPool) -> Result<Vec<CatalogueEntry>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {CATALOGUE_COLUMNS} FROM catalogue ORDER BY sku"
    )))
    .fetch_all(pool)
    .await
}

pub async fn catalogue_entry(
    conn: &mut PgConnection,
    sku: &str,
) -> Result<Option<CatalogueEntry>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {CATALOGUE_COLUMNS} FROM catalogue WHERE sku = $1"
    )))
    .bind(sku)
    .fetch_optional(conn)
    .await
}

/// Reserves `quantity` units if that many are available; returns the unit price.
/// `None`: unknown sku or not enough (the caller asks [`catalogue_entry`] which).
pub async fn reserve(
    conn: &mut PgConnection,
    sku: &str,
    quantity: i64,
) -> Result<Option<i64>, sqlx::Error> {
    sqlx::query_scalar(
        "UPDATE catalogue SET reserved = reserved + $2, updated_at = now()
         WHERE sku = $1 AND unit_price_cents IS NOT NULL AND stock - reserved >= $2
         RETURNING unit_price_cents",
    )
    .bind(sku)
    .bind(quantity)
    .fetch_optional(conn)
    .await
}

/// A product entered the catalogue (its stock comes with stock_changed, version 1).
pub async fn upsert_product(
    conn: &mut PgConnection,
    sku: &str,
    name: &str,
    unit_price_cents: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO catalogue (sku, name, unit_price_cents) VALUES ($1, $2, $3)
         ON CONFLICT (sku) DO UPDATE SET name = EXCLUDED.name, unit_price_cents = EXCLUDED.unit_price_cents, updated_at = now()",
    )
    .bind(sku)
    .bind(name)
    .bind(unit_price_cents)
    .execute(conn)
    .await?;
    Ok(())
}

/// Takes inventory's stock figure if it is newer than ours (an older one is ignored).
pub async fn apply_stock(
    conn: &mut PgConnection,
    sku: &str,
    stock: i64,
    version: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO catalogue (sku, stock, stock_version) VALUES ($1, $2, $3)
         ON CONFLICT (sku) DO UPDATE SET stock = EXCLUDED.stock, stock_version = EXCLUDED.stock_version, updated_at = now()
         WHERE catalogue.stock_version < EXCLUDED.stock_version",
    )
    .bind(sku)
    .bind(stock)
    .bind(version)
    .execute(conn)
    .await?;
    Ok(())
}

/// Inventory applied this order line: its units are in inventory's stock figure now, so the
/// reservation goes (once: the line remembers).
pub async fn release_reservation(
    conn: &mut PgConnection,
    order_id: Uuid,
    sku: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "WITH line AS (
             UPDATE order_lines SET stock_applied = true
             WHERE order_id = $1 AND sku = $2 AND NOT stock_applied
             RETURNING quantity)
         UPDATE catalogue SET reserved = reserved - line.quantity, updated_at = now()
         FROM line WHERE catalogue.sku = $2",
    )
    .bind(order_id)
    .bind(sku)
    .execute(conn)
    .await?;
    Ok(())
}

#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, sqlx::FromRow)]
pub struct OrderLineView {
    pub sku: String,
    pub quantity: i64,
    pub unit_price_cents: i64,
}

#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct Order {
    pub order_id: Uuid,
    pub cart_id: String,
    pub customer_id: Option<String>,
    pub status: String,
    pub total_cents: i64,
    pub currency: String,
    pub lines: Vec<OrderLineView>,
    pub paid_at: DateTime<Utc>,
    pub cart_updated: bool,
    pub inventory_updated: bool,
    pub cart_updated_at: Option<DateTime<Utc>>,
    pub inventory_updated_at: Option<DateTime<Utc>>,
}

#[derive(sqlx::FromRow)]
struct OrderRow {
    order_id: Uuid,
    cart_id: String,
    customer_id: Option<String>,
    status: String,
    total_cents: i64,
    currency: String,
    paid_at: DateTime<Utc>,
    cart_updated_at: Option<DateTime<Utc>>,
    inventory_updated_at: Option<DateTime<Utc>>,
}

pub async fn insert_order(
    conn: &mut PgConnection,
    order: &Order,
    payment_id: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO orders (order_id, cart_id, customer_id, status, total_cents, currency, payment_id, paid_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(order.order_id)
    .bind(&order.cart_id)
    .bind(&order.customer_id)
    .bind(&order.status)
    .bind(order.total_cents)
    .bind(&order.currency)
    .bind(payment_id)
    .bind(order.paid_at)
    .execute(&mut *conn)
    .await?;
    let skus: Vec<&str> = order.lines.iter().map(|l| l.sku.as_str()).collect();
    let quantities: Vec<i64> = order.lines.iter().map(|l| l.quantity).collect();
    let prices: Vec<i64> = order.lines.iter().map(|l| l.unit_price_cents).collect();
    sqlx::query(
        "INSERT INTO order_lines (order_id, sku, quantity, unit_price_cents)
         SELECT $1, * FROM UNNEST($2::text[], $3::bigint[], $4::bigint[])",
    )
    .bind(order.order_id)
    .bind(&skus)
    .bind(&quantities)
    .bind(&prices)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

pub async fn get_order(pool: &PgPool, order_id: Uuid) -> Result<Option<Order>, sqlx::Error> {
    let row: Option<OrderRow> = sqlx::query_as(
        "SELECT order_id, cart_id, customer_id, status, total_cents, currency, paid_at, cart_updated_at, inventory_updated_at
         FROM orders WHERE order_id = $1",
    )
    .bind(order_id)
    .fetch_optional(pool)
    .await?;
    let Some(row) = row else { return Ok(None) };
    let lines = sqlx::query_as(
        "SELECT sku, quantity, unit_price_cents FROM order_lines WHERE order_id = $1 ORDER BY sku",
    )
    .bind(order_id)
    .fetch_all(pool)
    .await?;
    Ok(Some(Order {
        order_id: row.order_id,
        cart_id: row.cart_id,
        customer_id: row.customer_id,
        status: row.status,
        total_cents: row.total_cents,
        currency: row.currency,
        lines,
        paid_at: row.paid_at,
        cart_updated: row.cart_updated_at.is_some(),
        inventory_updated: row.inventory_updated_at.is_some(),
        cart_updated_at: row.cart_updated_at,
        inventory_updated_at: row.inventory_updated_at,
    }))
}

/// Which background effect of an order arrived.
#[derive(Debug, Clone, Copy)]
pub enum Effect {
    Cart,
    Inventory,
}

/// Records that an effect arrived (the first time only); false if there is no such order.
pub async fn mark_effect(
    conn: &mut PgConnection,
    order_id: Uuid,
    effect: Effect,
) -> Result<bool, sqlx::Error> {
    let sql = match effect {
        Effect::Cart => {
            "UPDATE orders SET cart_updated_at = COALESCE(cart_updated_at, now()) WHERE order_id = $1"
        }
        Effect::Inventory => {
            "UPDATE orders SET inventory_updated_at = COALESCE(inventory_updated_at, now()) WHERE order_id = $1"
        }
    };
    Ok(sqlx::query(sql)
        .bind(order_id)
        .execute(conn)
        .await?
        .rows_affected()
        == 1)
}
