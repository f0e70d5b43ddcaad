//! Database setup: create the service's database if missing, then a pool.

use std::time::Duration;

use anyhow::Context as _;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, PgPool};
use std::str::FromStr;

/// Creates the database named in `url` if it does not exist (connecting to `postgres`).
pub async fn ensure_database(url: &str) -> anyhow::Result<()> {
    let options = PgConnectOptions::from_str(url).context("invalid database url")?;
    let name = options
        .get_database()
        .context("the database url names no database")?
        .to_string();
    // The usual case, and the only one a least-privilege role (owner of its database, no
    // CREATEDB) can pass: the database is there. Only if it is missing, create it from the
    // `postgres` database (which needs a role allowed to create databases).
    match options.connect().await {
        Ok(conn) => {
            let _ = sqlx::Connection::close(conn).await;
            return Ok(());
        }
        Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("3D000") => {}
        Err(e) => return Err(e).with_context(|| cannot_connect(url)),
    }
    let mut admin = options
        .clone()
        .database("postgres")
        .connect()
        .await
        .with_context(|| cannot_connect(url))?;
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(&name)
            .fetch_one(&mut admin)
            .await?;
    if !exists {
        let sql = format!("CREATE DATABASE \"{}\"", name.replace('"', "\"\""));
        match sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(&mut admin)
            .await
        {
            Ok(_) => tracing::info!(database = %name, "created database"),
            // Another replica created it at the same moment.
            Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("42P04") => {}
            Err(e) => return Err(e).with_context(|| format!("cannot create database {name}")),
        }
    }
    Ok(())
}

/// What a failed connection to `url`'s server says (the password redacted).
fn cannot_connect(url: &str) -> String {
    format!(
        "cannot connect to PostgreSQL at {}",
        events::config::redact_url(url)
    )
}

/// A pool for one service. Connections are opened lazily, so a service can start while its
/// database is down and report not-ready until it is back.
pub fn pool(url: &str, max_connections: u32) -> anyhow::Result<PgPool> {
    let options = PgConnectOptions::from_str(url).context("invalid database url")?;
    Ok(PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(5))
        .connect_lazy_with(options))
}

/// A pool that has opened its first connection (fails with the connection's own error).
pub async fn connect_now(url: &str, max_connections: u32) -> anyhow::Result<PgPool> {
    let options = PgConnectOptions::from_str(url).context("invalid database url")?;
    // One plain connection first: the pool would retry and report only "timed out".
    sqlx::Connection::close(options.connect().await?).await?;
    Ok(PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(5))
        .connect_with(options)
        .await?)
}

/// Drops a database (tests and the demo's reset). Kicks out remaining connections.
pub async fn drop_database(url: &str) -> anyhow::Result<()> {
    let options = PgConnectOptions::from_str(url)?;
    let name = options
        .get_database()
        .context("no database in url")?
        .to_string();
    let mut admin = options
        .database("postgres")
        .connect()
        .await
        .with_context(|| cannot_connect(url))?;
    let sql = format!(
        "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
        name.replace('"', "\"\"")
    );
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
        .execute(&mut admin)
        .await?;
    Ok(())
}
