//! Starting services: one, or all three in one process (each with its own pool, broker
//! connection, port and database, exactly as if they ran apart).

use std::net::SocketAddr;

use std::time::Duration;

use kit::Running;

/// How long `System::start` waits for the three services to be ready.
pub const READY_DEADLINE: Duration = Duration::from_secs(60);

use crate::settings::{Settings, Which};

pub async fn start(which: Which, settings: &Settings) -> anyhow::Result<Running> {
    let config = settings.service(which);
    match which {
        Which::Checkout => kit::service::start::<checkout::Checkout>(config).await,
        Which::Cart => kit::service::start::<cart::CartService>(config).await,
        Which::Inventory => kit::service::start::<inventory::Inventory>(config).await,
    }
}

/// Provisions one service without starting it: creates and migrates its database, and
/// declares its exchange and queues, so that events published before its first start wait
/// in its queue.
pub async fn migrate(which: Which, settings: &Settings) -> anyhow::Result<()> {
    use kit::service::{declare_topology, migrate};
    let config = settings.service(which);
    match which {
        Which::Checkout => {
            declare_topology::<checkout::Checkout>(
                &config,
                migrate::<checkout::Checkout>(&config).await?,
            )
            .await
        }
        Which::Cart => {
            declare_topology::<cart::CartService>(
                &config,
                migrate::<cart::CartService>(&config).await?,
            )
            .await
        }
        Which::Inventory => {
            declare_topology::<inventory::Inventory>(
                &config,
                migrate::<inventory::Inventory>(&config).await?,
            )
            .await
        }
    }
}

/// The three services of one shop (and, optionally, more instances of each).
pub struct System {
    pub checkout: Running,
    pub cart: Running,
    pub inventory: Running,
    /// Further instances: competing consumers on the same queues, relays sharing the same
    /// outboxes, HTTP on their own ports.
    pub replicas: Vec<(Which, Running)>,
}

impl System {
    /// `instances` of each service (at least 1); the extra ones listen on ports the OS picks.
    pub async fn start_replicated(settings: &Settings, instances: usize) -> anyhow::Result<System> {
        let mut system = System::start(settings).await?;
        let mut extra_settings = settings.clone();
        let any: SocketAddr = "127.0.0.1:0".parse().expect("an address");
        extra_settings.checkout_addr = any;
        extra_settings.cart_addr = any;
        extra_settings.inventory_addr = any;
        for _ in 1..instances.max(1) {
            for which in Which::ALL {
                let r = start(which, &extra_settings).await?;
                r.wait_ready(READY_DEADLINE).await?;
                system.replicas.push((which, r));
            }
        }
        Ok(system)
    }

    /// The HTTP addresses of every instance of `which`, the first one first.
    pub fn addrs(&self, which: Which) -> Vec<SocketAddr> {
        std::iter::once(self.addr(which))
            .chain(
                self.replicas
                    .iter()
                    .filter(|(w, _)| *w == which)
                    .map(|(_, r)| r.addr),
            )
            .collect()
    }

    pub async fn start(settings: &Settings) -> anyhow::Result<System> {
        // Inventory first: checkout's catalogue replica is fed by it.
        let inventory = start(Which::Inventory, settings).await?;
        let cart = start(Which::Cart, settings).await?;
        let checkout = start(Which::Checkout, settings).await?;
        let system = System {
            checkout,
            cart,
            inventory,
            replicas: Vec::new(),
        };
        // Every queue must exist before the first event is published, or a consumer that
        // declared late would miss it.
        for running in [&system.inventory, &system.cart, &system.checkout] {
            running.wait_ready(READY_DEADLINE).await?;
        }
        Ok(system)
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
        for (_, r) in self.replicas {
            r.shutdown().await;
        }
        self.checkout.shutdown().await;
        self.cart.shutdown().await;
        self.inventory.shutdown().await;
    }
}
