//! Every setting of the `shop` command, in one place: each is a flag and an environment
//! variable, documented by `--help`, with defaults that work against a local RabbitMQ and
//! PostgreSQL.

use std::net::SocketAddr;
use std::str::FromStr;

use anyhow::Context as _;
use clap::{Args, ValueEnum};
use events::config::redact_url;
use events::{BusConfig, QueueType};
use kit::ServiceConfig;
use sqlx::postgres::PgConnectOptions;

/// The three services.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Which {
    Checkout,
    Cart,
    Inventory,
}

impl Which {
    pub const ALL: [Which; 3] = [Which::Checkout, Which::Cart, Which::Inventory];

    pub fn name(self) -> &'static str {
        match self {
            Which::Checkout => "checkout",
            Which::Cart => "cart",
            Which::Inventory => "inventory",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum QueueKind {
    Quorum,
    Classic,
}

#[derive(Debug, Clone, Args)]
pub struct Settings {
    /// RabbitMQ URL (the password is never logged).
    #[arg(long, env = "AMQP_URL", default_value = events::config::DEFAULT_AMQP_URL, hide_env_values = true, global = true)]
    pub amqp_url: String,

    /// RabbitMQ URL for checkout alone (its own broker user; overrides AMQP_URL for it).
    #[arg(long, env = "CHECKOUT_AMQP_URL", hide_env_values = true, global = true)]
    pub checkout_amqp_url: Option<String>,
    /// RabbitMQ URL for cart alone.
    #[arg(long, env = "CART_AMQP_URL", hide_env_values = true, global = true)]
    pub cart_amqp_url: Option<String>,
    /// RabbitMQ URL for inventory alone.
    #[arg(
        long,
        env = "INVENTORY_AMQP_URL",
        hide_env_values = true,
        global = true
    )]
    pub inventory_amqp_url: Option<String>,

    /// The topic exchange every event goes through.
    #[arg(long, env = "SHOP_EXCHANGE", hide_env_values = true, default_value = events::config::DEFAULT_EXCHANGE, global = true)]
    pub exchange: String,

    /// Prepended to every queue name (several systems on one broker).
    #[arg(
        long,
        env = "SHOP_QUEUE_PREFIX",
        hide_env_values = true,
        default_value = "",
        global = true
    )]
    pub queue_prefix: String,

    /// Queue type of the services' queues.
    #[arg(
        long,
        env = "SHOP_QUEUE_TYPE",
        hide_env_values = true,
        value_enum,
        default_value = "quorum",
        global = true
    )]
    pub queue_type: QueueKind,

    /// PostgreSQL server URL; each service uses its own database on it
    /// (<prefix>checkout, <prefix>cart, <prefix>inventory), created if missing.
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432",
        hide_env_values = true,
        global = true
    )]
    pub database_url: String,

    /// Prefix of the services' database names.
    #[arg(
        long,
        env = "SHOP_DATABASE_PREFIX",
        hide_env_values = true,
        default_value = "shop_",
        global = true
    )]
    pub database_prefix: String,

    /// Full database URL for checkout (overrides DATABASE_URL for it).
    #[arg(
        long,
        env = "CHECKOUT_DATABASE_URL",
        hide_env_values = true,
        global = true
    )]
    pub checkout_database_url: Option<String>,
    /// Full database URL for cart.
    #[arg(long, env = "CART_DATABASE_URL", hide_env_values = true, global = true)]
    pub cart_database_url: Option<String>,
    /// Full database URL for inventory.
    #[arg(
        long,
        env = "INVENTORY_DATABASE_URL",
        hide_env_values = true,
        global = true
    )]
    pub inventory_database_url: Option<String>,

    /// Where checkout's HTTP API listens.
    #[arg(
        long,
        env = "CHECKOUT_ADDR",
        hide_env_values = true,
        default_value = "127.0.0.1:8081",
        global = true
    )]
    pub checkout_addr: SocketAddr,
    /// Where cart's HTTP API listens.
    #[arg(
        long,
        env = "CART_ADDR",
        hide_env_values = true,
        default_value = "127.0.0.1:8082",
        global = true
    )]
    pub cart_addr: SocketAddr,
    /// Where inventory's HTTP API listens.
    #[arg(
        long,
        env = "INVENTORY_ADDR",
        hide_env_values = true,
        default_value = "127.0.0.1:8083",
        global = true
    )]
    pub inventory_addr: SocketAddr,

    /// Database connections per service instance.
    #[arg(
        long,
        env = "SHOP_DB_POOL",
        hide_env_values = true,
        default_value_t = 16,
        value_parser = clap::value_parser!(u32).range(1..=10_000),
        global = true
    )]
    pub db_pool: u32,

    /// Deliveries the broker hands each service before acks (bounds memory; at least 1, as 0
    /// would mean unlimited to the broker).
    #[arg(
        long,
        env = "SHOP_PREFETCH",
        hide_env_values = true,
        default_value_t = 64,
        value_parser = clap::value_parser!(u16).range(1..),
        global = true
    )]
    pub prefetch: u16,

    /// Event handlers running at once per service.
    #[arg(
        long,
        env = "SHOP_CONCURRENCY",
        hide_env_values = true,
        default_value_t = 8,
        value_parser = at_least_one,
        global = true
    )]
    pub concurrency: usize,

    /// Waiting deliveries one handler slot applies in one transaction, at most (1: each alone).
    #[arg(
        long,
        env = "SHOP_BATCH",
        hide_env_values = true,
        default_value_t = 8,
        value_parser = clap::value_parser!(u16).range(1..=256),
        global = true
    )]
    pub batch: u16,

    /// Attempts before a failing event is dead-lettered.
    #[arg(
        long,
        env = "SHOP_MAX_ATTEMPTS",
        hide_env_values = true,
        default_value_t = 5,
        value_parser = clap::value_parser!(u32).range(1..),
        global = true
    )]
    pub max_attempts: u32,
}

impl Default for Settings {
    fn default() -> Self {
        use clap::Parser;
        #[derive(Parser)]
        struct Wrapper {
            #[command(flatten)]
            settings: Settings,
        }
        Wrapper::parse_from(["shop"]).settings
    }
}

impl Settings {
    /// Rejects a URL that cannot be what its setting says, naming the setting, before anything
    /// connects: otherwise a typo surfaces at the first connection as an I/O or DNS error that
    /// names neither the setting nor the value.
    pub fn check(&self) -> anyhow::Result<()> {
        type Check = fn(&str) -> anyhow::Result<()>;
        let amqp: Check = check_amqp_url;
        let postgres: Check = check_database_url;
        let urls = [
            ("--amqp-url (AMQP_URL)", Some(&self.amqp_url), amqp),
            (
                "--checkout-amqp-url (CHECKOUT_AMQP_URL)",
                self.checkout_amqp_url.as_ref(),
                amqp,
            ),
            (
                "--cart-amqp-url (CART_AMQP_URL)",
                self.cart_amqp_url.as_ref(),
                amqp,
            ),
            (
                "--inventory-amqp-url (INVENTORY_AMQP_URL)",
                self.inventory_amqp_url.as_ref(),
                amqp,
            ),
            (
                "--database-url (DATABASE_URL)",
                Some(&self.database_url),
                postgres,
            ),
            (
                "--checkout-database-url (CHECKOUT_DATABASE_URL)",
                self.checkout_database_url.as_ref(),
                postgres,
            ),
            (
                "--cart-database-url (CART_DATABASE_URL)",
                self.cart_database_url.as_ref(),
                postgres,
            ),
            (
                "--inventory-database-url (INVENTORY_DATABASE_URL)",
                self.inventory_database_url.as_ref(),
                postgres,
            ),
        ];
        for (setting, url, check) in urls {
            if let Some(url) = url {
                check(url).with_context(|| format!("{setting} = {}", redact_url(url)))?;
            }
        }
        Ok(())
    }

    pub fn bus(&self) -> BusConfig {
        BusConfig {
            amqp_url: self.amqp_url.clone(),
            exchange: self.exchange.clone(),
            queue_prefix: self.queue_prefix.clone(),
            queue_type: match self.queue_type {
                QueueKind::Quorum => QueueType::Quorum,
                QueueKind::Classic => QueueType::Classic,
            },
            prefetch: self.prefetch,
            concurrency: self.concurrency,
            batch: self.batch.into(),
            max_attempts: self.max_attempts,
            ..BusConfig::default()
        }
    }

    /// The bus of one service: its own broker user if it has one (`CART_AMQP_URL`...).
    pub fn bus_for(&self, which: Which) -> BusConfig {
        let explicit = match which {
            Which::Checkout => &self.checkout_amqp_url,
            Which::Cart => &self.cart_amqp_url,
            Which::Inventory => &self.inventory_amqp_url,
        };
        let mut bus = self.bus();
        if let Some(url) = explicit {
            bus.amqp_url = url.clone();
        }
        bus
    }

    pub fn database_url(&self, which: Which) -> String {
        let explicit = match which {
            Which::Checkout => &self.checkout_database_url,
            Which::Cart => &self.cart_database_url,
            Which::Inventory => &self.inventory_database_url,
        };
        explicit.clone().unwrap_or_else(|| {
            with_database(
                &self.database_url,
                &format!("{}{}", self.database_prefix, which.name()),
            )
        })
    }

    pub fn addr(&self, which: Which) -> SocketAddr {
        match which {
            Which::Checkout => self.checkout_addr,
            Which::Cart => self.cart_addr,
            Which::Inventory => self.inventory_addr,
        }
    }

    pub fn service(&self, which: Which) -> ServiceConfig {
        ServiceConfig {
            http_addr: self.addr(which),
            database_url: self.database_url(which),
            db_max_connections: self.db_pool,
            bus: self.bus_for(which),
        }
    }
}

/// A count of at least 1 (0 would mean "no limit" to the code it bounds, or a pool that can
/// never hand out a connection).
pub(crate) fn at_least_one(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
}

/// An AMQP URL as lapin reads it. (lapin also takes `amqp:/host`, one slash, and reads the rest
/// as the vhost: a typo that would fail only at the broker, so the scheme is checked whole.)
fn check_amqp_url(url: &str) -> anyhow::Result<()> {
    const EXPECTED: &str = "expected amqp://user:password@host:5672/vhost";
    if !(url.starts_with("amqp://") || url.starts_with("amqps://")) {
        anyhow::bail!("not an AMQP URL; {EXPECTED}");
    }
    lapin::uri::AMQPUri::from_str(url)
        .map_err(|e| anyhow::anyhow!("not an AMQP URL ({}); {EXPECTED}", scrub(&e, url)))?;
    Ok(())
}

/// A parser's message without the URL it may quote (the setting's line shows it redacted).
fn scrub(e: &impl std::fmt::Display, url: &str) -> String {
    e.to_string().replace(url, "the URL")
}

/// A PostgreSQL URL as sqlx reads it. sqlx ignores the scheme, so a `mysql://` URL would
/// otherwise be tried as PostgreSQL.
fn check_database_url(url: &str) -> anyhow::Result<()> {
    const EXPECTED: &str = "expected postgres://user:password@host:5432";
    let scheme = url.split_once("://").map(|(scheme, _)| scheme);
    if !matches!(scheme, Some("postgres" | "postgresql")) {
        anyhow::bail!("not a PostgreSQL URL; {EXPECTED}");
    }
    PgConnectOptions::from_str(url)
        .map_err(|e| anyhow::anyhow!("not a PostgreSQL URL ({}); {EXPECTED}", scrub(&e, url)))?;
    Ok(())
}

/// `postgres://u@h:5432` + `shop_cart` → `postgres://u@h:5432/shop_cart` (a database already in
/// the URL is replaced; query parameters such as sslmode are kept).
pub fn with_database(server_url: &str, database: &str) -> String {
    let (base, query) = match server_url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (server_url, None),
    };
    let (scheme, rest) = base.split_once("://").unwrap_or(("postgres", base));
    let host = rest.split('/').next().unwrap_or(rest);
    match query {
        Some(q) => format!("{scheme}://{host}/{database}?{q}"),
        None => format!("{scheme}://{host}/{database}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_names_are_put_into_the_server_url() {
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1:5432", "shop_cart"),
            "postgres://postgres@127.0.0.1:5432/shop_cart"
        );
        assert_eq!(
            with_database("postgres://p:x@db:5432/", "a"),
            "postgres://p:x@db:5432/a"
        );
        assert_eq!(
            with_database("postgres://p@db/other?sslmode=require", "a"),
            "postgres://p@db/a?sslmode=require"
        );
    }

    #[test]
    fn malformed_urls_are_refused_naming_the_setting_without_the_password() {
        let check = |tweak: &dyn Fn(&mut Settings)| {
            let mut s = Settings::default();
            tweak(&mut s);
            s.check().map_err(|e| format!("{e:#}"))
        };
        assert_eq!(check(&|_| {}), Ok(()));
        let e = check(&|s| s.amqp_url = "notaurl".into()).unwrap_err();
        assert!(
            e.starts_with("--amqp-url (AMQP_URL) = notaurl: not an AMQP URL"),
            "{e}"
        );
        let e = check(&|s| s.cart_amqp_url = Some("http://u:secret@h/".into())).unwrap_err();
        assert!(
            e.starts_with("--cart-amqp-url (CART_AMQP_URL) = http://u:***@h/"),
            "{e}"
        );
        assert!(!e.contains("secret"), "{e}");
        let e = check(&|s| s.database_url = "mysql://root:secret@db:3306".into()).unwrap_err();
        assert!(
            e.starts_with(
                "--database-url (DATABASE_URL) = mysql://root:***@db:3306: not a PostgreSQL URL"
            ),
            "{e}"
        );
        let e = check(&|s| s.inventory_database_url = Some("postgres://u@h:notaport/db".into()))
            .unwrap_err();
        assert!(
            e.starts_with("--inventory-database-url (INVENTORY_DATABASE_URL) = "),
            "{e}"
        );
        for url in [
            "amqp://u:s3cret?x@host:5672/%2f",
            "u:s3cret@host:5672",
            "amqp:/u:s3cret@h",
        ] {
            let e = check(&|s| s.amqp_url = url.into()).unwrap_err();
            assert!(!e.contains("s3cret"), "{e}");
        }
        for url in ["host=db user=u password=s3cret", "postgres:/u:s3cret@db"] {
            let e = check(&|s| s.database_url = url.into()).unwrap_err();
            assert!(!e.contains("s3cret"), "{e}");
        }
        assert_eq!(
            check(
                &|s| s.checkout_database_url = Some("postgresql://u:p@h/db?sslmode=require".into())
            ),
            Ok(())
        );
    }

    #[test]
    fn defaults_parse() {
        let s = Settings::default();
        assert_eq!(s.checkout_addr.port(), 8081);
        assert_eq!(
            s.database_url(Which::Inventory),
            "postgres://postgres@127.0.0.1:5432/shop_inventory"
        );
    }
}
