//! `shop provision`: least-privilege accounts for the three services, idempotently.
//!
//! Each service gets
//! - a PostgreSQL role that owns its database and nothing else (CONNECT on that database is
//!   revoked from PUBLIC, so other services' roles cannot even connect to it);
//! - a RabbitMQ user whose permissions match only its own queues and exchange plus the events
//!   exchange, with a topic permission that lets it publish only its own routing keys there.
//!
//! The names and passwords are taken from the URLs the services themselves will use
//! (`CHECKOUT_AMQP_URL`, `CHECKOUT_DATABASE_URL`, ... or their `_FILE` variants), so what is
//! provisioned is exactly what the services log in with; the admin credentials are the ones of
//! `AMQP_URL` / `DATABASE_URL` (and `--rabbitmq-api`). Running it again updates passwords and
//! permissions to what the URLs say.
//!
//! RabbitMQ users are managed through the management HTTP API rather than `rabbitmqctl`:
//! the API works from anywhere the broker is reachable (a container, a Kubernetes Job, CI),
//! while `rabbitmqctl` has to run on the broker's host with its Erlang cookie. The API is the
//! `rabbitmq_management` plugin (in the `rabbitmq:*-management` images; `scripts/services-up`
//! enables it locally). For docker-compose the same accounts are also loaded at boot from
//! `docker/rabbitmq-definitions.json` and `docker/postgres-init.sql`.

use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::Args;
use events::config::redact_url;
use reqwest::Url;
use serde_json::json;
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection as _, PgConnection};
use std::str::FromStr;

use crate::settings::{Settings, Which};

#[derive(Debug, Clone, Args)]
pub struct ProvisionArgs {
    /// RabbitMQ management API, as an administrator. Without credentials in it, those of
    /// AMQP_URL are used.
    #[arg(
        long,
        env = "RABBITMQ_API_URL",
        default_value = "http://127.0.0.1:15672",
        hide_env_values = true
    )]
    pub rabbitmq_api: String,

    /// Only the PostgreSQL side (roles and databases).
    #[arg(long, conflicts_with = "broker_only")]
    pub database_only: bool,

    /// Only the RabbitMQ side (users, permissions, the events exchange).
    #[arg(long)]
    pub broker_only: bool,
}

/// One service's RabbitMQ permissions (regular expressions over resource names, as the broker
/// takes them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerPermissions {
    /// Declare and delete: its own queues and exchange only.
    pub configure: String,
    /// Publish to an exchange, bind a queue: its own queues and exchange and the events exchange.
    pub write: String,
    /// Consume from a queue, bind from an exchange: the same.
    pub read: String,
    /// The topic permission on the events exchange: routing keys it may publish.
    pub topic_write: String,
    pub topic_read: String,
}

/// Escapes regex metacharacters (names hold dots; prefixes may hold anything).
pub fn regex_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if "\\.+*?()|[]{}^$#&-~".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The permissions of `service`: its queues are `<prefix><service>`, `<prefix><service>.dlq`,
/// `<prefix><service>.retry.<n>ms`, its exchange `<prefix><service>.direct`; it publishes to
/// `exchange` the routing keys `<service>.*`.
pub fn broker_permissions(queue_prefix: &str, exchange: &str, service: &str) -> BrokerPermissions {
    let own = format!(
        "{}{}(\\..*)?",
        regex_escape(queue_prefix),
        regex_escape(service)
    );
    let own_and_events = format!("^({own}|{})$", regex_escape(exchange));
    BrokerPermissions {
        configure: format!("^{own}$"),
        write: own_and_events.clone(),
        read: own_and_events,
        topic_write: format!("^{}\\.", regex_escape(service)),
        topic_read: ".*".into(),
    }
}

/// User, password and path (vhost or database) of a URL, percent-decoded.
#[derive(Debug, Clone)]
pub struct Credentials {
    pub user: String,
    pub password: String,
    pub path: String,
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && bytes[i + 1].is_ascii_hexdigit()
            && bytes[i + 2].is_ascii_hexdigit()
            && let Ok(b) = u8::from_str_radix(&s[i + 1..i + 3], 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn percent_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The credentials in `url` (errors name the URL with its password redacted).
pub fn credentials(url: &str) -> anyhow::Result<Credentials> {
    let parsed = Url::parse(url).map_err(|e| anyhow::anyhow!("{}: {e}", redact_url(url)))?;
    if parsed.username().is_empty() {
        bail!("{} names no user", redact_url(url));
    }
    Ok(Credentials {
        user: percent_decode(parsed.username()),
        password: parsed.password().map(percent_decode).unwrap_or_default(),
        path: percent_decode(parsed.path().strip_prefix('/').unwrap_or(parsed.path())),
    })
}

/// `url` with `user` and `password` (percent-encoded) in place of its own.
pub fn with_credentials(url: &str, user: &str, password: &str) -> anyhow::Result<String> {
    let mut parsed = Url::parse(url).map_err(|e| anyhow::anyhow!("{}: {e}", redact_url(url)))?;
    let ok = parsed.set_username(&percent_encode(user)).is_ok()
        && parsed.set_password(Some(&percent_encode(password))).is_ok();
    if !ok {
        bail!("{} cannot hold credentials", redact_url(url));
    }
    Ok(parsed.to_string())
}

fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

async fn exec(conn: &mut PgConnection, sql: String) -> Result<(), sqlx::Error> {
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
        .execute(&mut *conn)
        .await
        .map(|_| ())
}

/// Creates or updates `role` (login, `password`, no other power) as the owner of `database`,
/// which only it (and superusers) may connect to. `admin_url`: a PostgreSQL server URL of a
/// role allowed to create roles and databases.
pub async fn provision_database(
    admin_url: &str,
    role: &str,
    password: &str,
    database: &str,
) -> anyhow::Result<()> {
    let admin = PgConnectOptions::from_str(admin_url).context("invalid DATABASE_URL")?;
    let mut conn = admin
        .clone()
        .database("postgres")
        .connect()
        .await
        .with_context(|| format!("cannot connect to PostgreSQL at {}", redact_url(admin_url)))?;
    let password_sql = if password.is_empty() {
        "NULL".to_string()
    } else {
        literal(password)
    };
    let role_exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)")
            .bind(role)
            .fetch_one(&mut conn)
            .await?;
    // The password is in the statement (utility statements take no parameters); the error
    // below never quotes the statement.
    let verb = if role_exists { "ALTER" } else { "CREATE" };
    exec(
        &mut conn,
        format!(
            "{verb} ROLE {} WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION PASSWORD {password_sql}",
            ident(role)
        ),
    )
    .await
    .with_context(|| format!("cannot {} role {role}", verb.to_lowercase()))?;

    let db_exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(database)
            .fetch_one(&mut conn)
            .await?;
    let sql = if db_exists {
        format!(
            "ALTER DATABASE {} OWNER TO {}",
            ident(database),
            ident(role)
        )
    } else {
        format!("CREATE DATABASE {} OWNER {}", ident(database), ident(role))
    };
    exec(&mut conn, sql)
        .await
        .with_context(|| format!("cannot create or hand over database {database}"))?;
    exec(
        &mut conn,
        format!("REVOKE ALL ON DATABASE {} FROM PUBLIC", ident(database)),
    )
    .await?;
    conn.close().await?;

    // A database that was migrated by another role before (an existing deployment): hand
    // its schema and everything in it to the service's role, which must own its tables to
    // run its migrations.
    let mut conn = admin
        .database(database)
        .connect()
        .await
        .with_context(|| format!("cannot connect to database {database} as the admin"))?;
    let r = literal(role);
    exec(
        &mut conn,
        format!(
            "ALTER SCHEMA public OWNER TO {role_ident};
             DO $$ DECLARE o record; BEGIN
               FOR o IN SELECT c.oid::regclass AS name FROM pg_class c
                        JOIN pg_namespace n ON n.oid = c.relnamespace
                        WHERE n.nspname = 'public' AND c.relkind IN ('r','p','v','m','S')
                          AND pg_get_userbyid(c.relowner) <> {r}
                          AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = c.oid
                                          AND d.deptype IN ('a','i') AND c.relkind = 'S')
               LOOP EXECUTE format('ALTER TABLE %s OWNER TO %I', o.name, {r}); END LOOP;
               FOR o IN SELECT p.oid::regprocedure AS name FROM pg_proc p
                        JOIN pg_namespace n ON n.oid = p.pronamespace
                        WHERE n.nspname = 'public' AND pg_get_userbyid(p.proowner) <> {r}
               LOOP EXECUTE format('ALTER FUNCTION %s OWNER TO %I', o.name, {r}); END LOOP;
             END $$;",
            role_ident = ident(role)
        ),
    )
    .await
    .with_context(|| format!("cannot hand the objects of {database} to {role}"))?;
    conn.close().await?;
    Ok(())
}

/// Drops `database` and `role` (tests). Missing ones are fine.
pub async fn remove_database(admin_url: &str, role: &str, database: &str) -> anyhow::Result<()> {
    let admin = PgConnectOptions::from_str(admin_url).context("invalid DATABASE_URL")?;
    let mut conn = admin.database("postgres").connect().await?;
    exec(
        &mut conn,
        format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", ident(database)),
    )
    .await?;
    exec(&mut conn, format!("DROP ROLE IF EXISTS {}", ident(role))).await?;
    conn.close().await?;
    Ok(())
}

/// The RabbitMQ management API as an administrator.
pub struct BrokerApi {
    http: reqwest::Client,
    base: Url,
    user: String,
    password: String,
}

impl BrokerApi {
    /// `api_url` (`http://host:15672`, with or without credentials); without credentials,
    /// those of `admin_amqp_url`.
    pub fn new(api_url: &str, admin_amqp_url: &str) -> anyhow::Result<BrokerApi> {
        let mut base = Url::parse(api_url)
            .map_err(|e| anyhow::anyhow!("invalid --rabbitmq-api {}: {e}", redact_url(api_url)))?;
        let (user, password) = if base.username().is_empty() {
            let admin = credentials(admin_amqp_url)
                .unwrap_or_else(|_| credentials(events::config::DEFAULT_AMQP_URL).expect("valid"));
            (admin.user, admin.password)
        } else {
            let c = credentials(api_url)?;
            (c.user, c.password)
        };
        let _ = base.set_username("");
        let _ = base.set_password(None);
        Ok(BrokerApi {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(15))
                .build()?,
            base,
            user,
            password,
        })
    }

    /// `segments` percent-encoded into a path under `/api/`.
    fn url(&self, segments: &[&str]) -> String {
        let path: Vec<String> = segments.iter().map(|s| percent_encode(s)).collect();
        format!(
            "{}/api/{}",
            self.base.as_str().trim_end_matches('/'),
            path.join("/")
        )
    }

    async fn send(
        &self,
        method: reqwest::Method,
        segments: &[&str],
        body: Option<serde_json::Value>,
    ) -> anyhow::Result<reqwest::StatusCode> {
        let what = format!("{method} /api/{}", segments.join("/"));
        let mut request = self
            .http
            .request(method, self.url(segments))
            .basic_auth(&self.user, Some(&self.password));
        if let Some(body) = body {
            request = request.json(&body);
        }
        // Errors without the URL (it holds no secret, but keep them short) and never the body
        // (it holds the password).
        let response = request.send().await.map_err(|e| {
            anyhow::anyhow!(
                "RabbitMQ management API at {}: {what}: {}",
                self.base,
                e.without_url()
            )
        })?;
        let status = response.status();
        if status.is_success() || status == reqwest::StatusCode::NOT_FOUND {
            return Ok(status);
        }
        let text = response.text().await.unwrap_or_default();
        bail!(
            "RabbitMQ management API at {}: {what}: HTTP {status}: {}",
            self.base,
            text.chars().take(300).collect::<String>()
        )
    }

    async fn put(&self, segments: &[&str], body: serde_json::Value) -> anyhow::Result<()> {
        let status = self
            .send(reqwest::Method::PUT, segments, Some(body))
            .await?;
        if status == reqwest::StatusCode::NOT_FOUND {
            bail!(
                "RabbitMQ management API: PUT /api/{}: HTTP 404",
                segments[0]
            );
        }
        Ok(())
    }

    /// Creates or updates `user` with `password` and `permissions` on `vhost` (created if
    /// missing), and its topic permission on `exchange`.
    pub async fn provision_user(
        &self,
        vhost: &str,
        user: &str,
        password: &str,
        exchange: &str,
        p: &BrokerPermissions,
    ) -> anyhow::Result<()> {
        self.put(&["vhosts", vhost], json!({})).await?;
        self.put(&["users", user], json!({"password": password, "tags": ""}))
            .await?;
        self.put(
            &["permissions", vhost, user],
            json!({"configure": p.configure, "write": p.write, "read": p.read}),
        )
        .await?;
        self.put(
            &["topic-permissions", vhost, user],
            json!({"exchange": exchange, "write": p.topic_write, "read": p.topic_read}),
        )
        .await?;
        Ok(())
    }

    /// Deletes `user` (tests). A missing one is fine.
    pub async fn remove_user(&self, user: &str) -> anyhow::Result<()> {
        self.send(reqwest::Method::DELETE, &["users", user], None)
            .await?;
        Ok(())
    }
}

/// What `shop provision` needs for one service, from the service's own URLs.
pub struct ServiceAccounts {
    pub which: Which,
    pub broker: Credentials,
    pub database: Credentials,
}

/// The accounts the settings name for `which`; an error says which URL to set.
pub fn accounts(settings: &Settings, which: Which) -> anyhow::Result<ServiceAccounts> {
    let name = which.name();
    let upper = name.to_uppercase();
    let amqp = match which {
        Which::Checkout => &settings.checkout_amqp_url,
        Which::Cart => &settings.cart_amqp_url,
        Which::Inventory => &settings.inventory_amqp_url,
    }
    .as_deref()
    .with_context(|| {
        format!("{name}: set {upper}_AMQP_URL (or {upper}_AMQP_URL_FILE) to the URL {name} will use, with its own user and password")
    })?;
    let db = match which {
        Which::Checkout => &settings.checkout_database_url,
        Which::Cart => &settings.cart_database_url,
        Which::Inventory => &settings.inventory_database_url,
    }
    .as_deref()
    .with_context(|| {
        format!("{name}: set {upper}_DATABASE_URL (or {upper}_DATABASE_URL_FILE) to the URL {name} will use, with its own role and password")
    })?;
    let broker = credentials(amqp).with_context(|| format!("{upper}_AMQP_URL"))?;
    let database = credentials(db).with_context(|| format!("{upper}_DATABASE_URL"))?;
    if database.path.is_empty() {
        bail!("{upper}_DATABASE_URL names no database");
    }
    let admin_amqp = credentials(&settings.amqp_url).ok();
    if admin_amqp.as_ref().is_some_and(|a| a.user == broker.user) {
        bail!(
            "{upper}_AMQP_URL logs in as {}, the admin of AMQP_URL: give {name} a user of its own",
            broker.user
        );
    }
    Ok(ServiceAccounts {
        which,
        broker,
        database,
    })
}

/// `shop provision`: the accounts of `services`, then the events exchange (which the
/// services may use but not declare).
pub async fn provision(
    settings: &Settings,
    args: &ProvisionArgs,
    services: &[Which],
) -> anyhow::Result<Vec<String>> {
    let all: Vec<ServiceAccounts> = services
        .iter()
        .map(|w| accounts(settings, *w))
        .collect::<anyhow::Result<_>>()?;
    let mut report = Vec::new();
    if !args.broker_only {
        for a in &all {
            provision_database(
                &settings.database_url,
                &a.database.user,
                &a.database.password,
                &a.database.path,
            )
            .await
            .with_context(|| format!("{}: database", a.which.name()))?;
            report.push(format!(
                "{}: role {} owns database {} (CONNECT revoked from PUBLIC)",
                a.which.name(),
                a.database.user,
                a.database.path
            ));
        }
    }
    if !args.database_only {
        let api = BrokerApi::new(&args.rabbitmq_api, &settings.amqp_url)?;
        let admin_vhost = credentials(&settings.amqp_url)
            .map(|c| c.path)
            .unwrap_or_else(|_| "/".into());
        for a in &all {
            let vhost = if a.broker.path.is_empty() {
                "/".to_string()
            } else {
                a.broker.path.clone()
            };
            if vhost != admin_vhost {
                bail!(
                    "{}: its vhost {vhost:?} is not AMQP_URL's {admin_vhost:?}: the admin declares the events exchange there",
                    a.which.name()
                );
            }
            let p = broker_permissions(&settings.queue_prefix, &settings.exchange, a.which.name());
            api.provision_user(
                &vhost,
                &a.broker.user,
                &a.broker.password,
                &settings.exchange,
                &p,
            )
            .await
            .with_context(|| format!("{}: broker user", a.which.name()))?;
            report.push(format!(
                "{}: user {} on vhost {vhost}: configure {} write {} read {}; publishes {} on {}",
                a.which.name(),
                a.broker.user,
                p.configure,
                p.write,
                p.read,
                p.topic_write,
                settings.exchange
            ));
        }
        events::topology::ensure_exchange(&settings.bus())
            .await
            .with_context(|| {
                format!(
                    "cannot declare exchange {} on {}",
                    settings.exchange,
                    settings.bus().redacted_url()
                )
            })?;
        report.push(format!("exchange {} declared", settings.exchange));
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permissions_match_only_the_services_own_names() {
        let p = broker_permissions("", "shop.events", "cart");
        let configure = p.configure.as_str();
        assert_eq!(configure, "^cart(\\..*)?$");
        assert_eq!(p.write, "^(cart(\\..*)?|shop\\.events)$");
        assert_eq!(p.topic_write, "^cart\\.");
        let p = broker_permissions("test.t1.", "x", "inventory");
        assert_eq!(p.configure, "^test\\.t1\\.inventory(\\..*)?$");
    }

    #[test]
    fn credentials_are_decoded_and_replaced() {
        let c = credentials("amqp://shop-cart:p%40ss%2Fw@rabbit:5672/%2f").unwrap();
        assert_eq!(
            (c.user.as_str(), c.password.as_str()),
            ("shop-cart", "p@ss/w")
        );
        assert_eq!(c.path, "/");
        let url = with_credentials("postgres://postgres@db:5432/x", "r", "p@ss").unwrap();
        assert_eq!(url, "postgres://r:p%40ss@db:5432/x");
        assert_eq!(credentials(&url).unwrap().password, "p@ss");
        let err = credentials("postgres://db/x").unwrap_err().to_string();
        assert!(err.contains("names no user"), "{err}");
    }
}
