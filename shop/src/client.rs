//! A typed client for the three HTTP APIs: what the demo, the tests and operators use.

use std::net::SocketAddr;
use std::time::Duration;

use cart::Cart;
use checkout::{CatalogueEntry, Order};
use inventory::Product;
use reqwest::{Response, StatusCode};
use serde::{Serialize, de::DeserializeOwned};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::settings::Which;

/// A non-2xx answer: the status and the problem+json body.
#[derive(Debug, thiserror::Error)]
#[error("HTTP {status}: {}", problem.get("detail").and_then(Value::as_str).unwrap_or("(no detail)"))]
pub struct ApiError {
    pub status: StatusCode,
    pub problem: Value,
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(transparent)]
    Api(#[from] ApiError),
    #[error("request failed: {0}")]
    Transport(#[from] reqwest::Error),
}

impl ClientError {
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            ClientError::Api(e) => Some(e.status),
            ClientError::Transport(e) => e.status(),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct CheckoutLine {
    pub sku: String,
    pub quantity: i64,
}

#[derive(Clone)]
pub struct ShopClient {
    http: reqwest::Client,
    checkout: String,
    cart: String,
    inventory: String,
}

impl ShopClient {
    pub fn new(checkout: SocketAddr, cart: SocketAddr, inventory: SocketAddr) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(64)
            .build()
            .expect("a reqwest client builds");
        ShopClient {
            http,
            checkout: format!("http://{checkout}"),
            cart: format!("http://{cart}"),
            inventory: format!("http://{inventory}"),
        }
    }

    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    pub fn url(&self, which: Which, path: &str) -> String {
        let base = match which {
            Which::Checkout => &self.checkout,
            Which::Cart => &self.cart,
            Which::Inventory => &self.inventory,
        };
        format!("{base}{path}")
    }

    async fn read<T: DeserializeOwned>(response: Response) -> Result<T, ClientError> {
        let status = response.status();
        if status.is_success() {
            Ok(response.json().await?)
        } else {
            let problem = response.json().await.unwrap_or(Value::Null);
            Err(ApiError { status, problem }.into())
        }
    }

    /// Like `read`, but a 404 is `None`.
    async fn read_optional<T: DeserializeOwned>(
        response: Response,
    ) -> Result<Option<T>, ClientError> {
        if response.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        Self::read(response).await.map(Some)
    }

    pub async fn register_product(
        &self,
        sku: &str,
        name: &str,
        unit_price_cents: i64,
        stock: i64,
    ) -> Result<Product, ClientError> {
        let body =
            json!({"sku": sku, "name": name, "unit_price_cents": unit_price_cents, "stock": stock});
        Self::read(
            self.http
                .post(self.url(Which::Inventory, "/products"))
                .json(&body)
                .send()
                .await?,
        )
        .await
    }

    pub async fn restock(&self, sku: &str, quantity: i64) -> Result<Product, ClientError> {
        let url = self.url(Which::Inventory, &format!("/products/{sku}/restock"));
        Self::read(
            self.http
                .post(url)
                .json(&json!({"quantity": quantity}))
                .send()
                .await?,
        )
        .await
    }

    pub async fn product(&self, sku: &str) -> Result<Option<Product>, ClientError> {
        let url = self.url(Which::Inventory, &format!("/products/{sku}"));
        Self::read_optional(self.http.get(url).send().await?).await
    }

    pub async fn products(&self) -> Result<Vec<Product>, ClientError> {
        Self::read(
            self.http
                .get(self.url(Which::Inventory, "/products"))
                .send()
                .await?,
        )
        .await
    }

    pub async fn set_cart_item(
        &self,
        cart_id: &str,
        sku: &str,
        quantity: i64,
    ) -> Result<Cart, ClientError> {
        let url = self.url(Which::Cart, &format!("/carts/{cart_id}/items/{sku}"));
        Self::read(
            self.http
                .put(url)
                .json(&json!({"quantity": quantity}))
                .send()
                .await?,
        )
        .await
    }

    pub async fn cart(&self, cart_id: &str) -> Result<Cart, ClientError> {
        Self::read(
            self.http
                .get(self.url(Which::Cart, &format!("/carts/{cart_id}")))
                .send()
                .await?,
        )
        .await
    }

    pub async fn checkout(
        &self,
        cart_id: &str,
        customer_id: Option<&str>,
        lines: &[CheckoutLine],
        payment_token: &str,
    ) -> Result<Order, ClientError> {
        let body = json!({"cart_id": cart_id, "customer_id": customer_id, "lines": lines, "payment_token": payment_token});
        Self::read(
            self.http
                .post(self.url(Which::Checkout, "/checkouts"))
                .json(&body)
                .send()
                .await?,
        )
        .await
    }

    pub async fn order(&self, order_id: Uuid) -> Result<Option<Order>, ClientError> {
        let url = self.url(Which::Checkout, &format!("/orders/{order_id}"));
        Self::read_optional(self.http.get(url).send().await?).await
    }

    pub async fn catalogue(&self) -> Result<Vec<CatalogueEntry>, ClientError> {
        Self::read(
            self.http
                .get(self.url(Which::Checkout, "/catalogue"))
                .send()
                .await?,
        )
        .await
    }

    /// Waits (up to 2 min) until checkout's catalogue, which it learns from inventory's events,
    /// has a price and a stock level for at least `expected` products.
    pub async fn wait_for_catalogue(&self, expected: usize, every: Duration) -> anyhow::Result<()> {
        crate::wait::until(
            "checkout's catalogue to receive every product",
            Duration::from_secs(120),
            every,
            || async {
                let known = self.catalogue().await.ok()?;
                let ready = known
                    .iter()
                    .filter(|e| e.unit_price_cents.is_some() && e.stock_version >= 1)
                    .count();
                (ready >= expected).then_some(())
            },
        )
        .await
    }

    /// `GET /readyz` of one service: true when it answers 200.
    pub async fn ready(&self, which: Which) -> bool {
        match self.http.get(self.url(which, "/readyz")).send().await {
            Ok(r) => r.status() == StatusCode::OK,
            Err(_) => false,
        }
    }
}
