//! Starting services: one, or all three in one process (each with its own pool, broker
//! connection, port and database, exactly as if they ran apart).

use std::net::SocketAddr;

use kit::Running;

use crate::settings::{Settings, Which};

pub async fn start(which: Which, settings: &Settings) -> anyhow::Result<Running> {
    let config = settings.service(which);
    match which {
        Which::Checkout => kit::service::start::<checkout::Checkout>(config).await,
        Which::Cart => kit::service::start::<cart::CartService>(config).await,
        Which::Inventory => kit::service::start::<inventory::Inventory>(config).await,
    }
}

/// Creates and migrates one service's database without starting it.
pub async fn migrate(which: Which, settings: &Settings) -> anyhow::Result<()> {
    let config = settings.service(which);
    let pool = match which {
        Which::Checkout => kit::service::migrate::<checkout::Checkout>(&config).await?,
        Which::Cart => kit::service::migrate::<cart::CartService>(&config).await?,
        Which::Inventory => kit::service::migrate::<inventory::Inventory>(&config).await?,
    };
    pool.close().await;
    Ok(())
}

/// The three services of one shop.
pub struct System {
    pub checkout: Running,
    pub cart: Running,
    pub inventory: Running,
}

impl System {
    pub async fn start(settings: &Settings) -> anyhow::Result<System> {
        // Inventory first: checkout's catalogue replica is fed by it.
        let inventory = start(Which::Inventory, settings).await?;
        let cart = start(Which::Cart, settings).await?;
        let checkout = start(Which::Checkout, settings).await?;
        Ok(System { checkout, cart, inventory })
    }

    pub fn addr(&self, which: Which) -> SocketAddr {
        match which {
            Which::Checkout => self.checkout.addr,
            Which::Cart => self.cart.addr,
            Which::Inventory => self.inventory.addr,
        }
    }

    /// Checkout first (no new orders), then the consumers.
    pub async fn shutdown(self) {
        self.checkout.shutdown().await;
        self.cart.shutdown().await;
        self.inventory.shutdown().await;
    }
}
