//! Inventory's tables. Every write that other services must hear about publishes its event
//! through the outbox in the same transaction.

use events::Outbox;
use events::contracts::{ProductRegistered, StockChangeReason, StockChanged};
use serde::Serialize;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

#[derive(Debug, Clone, Serialize, serde::Deserialize, sqlx::FromRow, PartialEq)]
pub struct Product {
    pub sku: String,
    pub name: String,
    pub unit_price_cents: i64,
    pub stock: i64,
    pub version: i64,
}

const COLUMNS: &str = "sku, name, unit_price_cents, stock, version";

/// Inserts a product and publishes `product_registered` and `stock_changed(registered)`.
/// `None` if the sku exists already.
pub async fn register(
    pool: &PgPool,
    outbox: &Outbox,
    p: ProductRegistered,
) -> Result<Option<Product>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let product: Option<Product> = sqlx::query_as(
        "INSERT INTO products (sku, name, unit_price_cents, stock) VALUES ($1, $2, $3, $4)
         ON CONFLICT (sku) DO NOTHING
         RETURNING sku, name, unit_price_cents, stock, version",
    )
    .bind(&p.sku)
    .bind(&p.name)
    .bind(p.unit_price_cents)
    .bind(p.stock)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(product) = product else {
        return Ok(None);
    };
    let registered = outbox.publish(&mut tx, p).await?;
    let changed = StockChanged {
        sku: product.sku.clone(),
        stock: product.stock,
        delta: product.stock,
        reason: StockChangeReason::Registered,
        order_id: None,
        version: product.version,
    };
    outbox
        .publish_caused_by(&mut tx, &registered.meta, changed)
        .await?;
    tx.commit().await?;
    Ok(Some(product))
}

pub async fn get(pool: &PgPool, sku: &str) -> Result<Option<Product>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM products WHERE sku = $1"
    )))
    .bind(sku)
    .fetch_optional(pool)
    .await
}

pub async fn list(pool: &PgPool) -> Result<Vec<Product>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM products ORDER BY sku"
    )))
    .fetch_all(pool)
    .await
}

/// Adds `quantity` units (negative for an adjustment) and publishes `stock_changed`.
/// `None` if there is no such sku.
pub async fn change_stock(
    conn: &mut PgConnection,
    sku: &str,
    delta: i64,
    reason: StockChangeReason,
    order_id: Option<Uuid>,
) -> Result<Option<StockChanged>, sqlx::Error> {
    let row: Option<(i64, i64)> = sqlx::query_as(
        "UPDATE products SET stock = stock + $2, version = version + 1, updated_at = now()
         WHERE sku = $1 RETURNING stock, version",
    )
    .bind(sku)
    .bind(delta)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(row.map(|(stock, version)| StockChanged {
        sku: sku.to_string(),
        stock,
        delta,
        reason,
        order_id,
        version,
    }))
}

pub async fn restock(
    pool: &PgPool,
    outbox: &Outbox,
    sku: &str,
    quantity: i64,
) -> Result<Option<Product>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let Some(changed) =
        change_stock(&mut tx, sku, quantity, StockChangeReason::Restock, None).await?
    else {
        return Ok(None);
    };
    outbox.publish(&mut tx, changed).await?;
    let product: Product = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM products WHERE sku = $1"
    )))
    .bind(sku)
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Some(product))
}
