//! The machine and servers the figures were measured on.

use std::str::FromStr;
use std::time::Duration;

use anyhow::Context as _;
use lapin::protocol::{AMQPClass, connection::AMQPMethod};
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::settings::Settings;

#[derive(Debug, Clone, serde::Serialize)]
pub struct Machine {
    pub cores: usize,
    pub cpu_model: String,
    pub memory_mib: u64,
    pub rabbitmq_version: String,
    pub postgresql_version: String,
    /// When the run started (UTC, RFC 3339).
    pub date: String,
    /// `debug` or `release`: debug figures are for smoke runs only.
    pub build: &'static str,
    pub shop_version: &'static str,
}

impl Machine {
    /// Looks at this machine and asks both servers their version (fails if one is down).
    pub async fn probe(settings: &Settings) -> anyhow::Result<Machine> {
        let postgresql_version = postgres_version(&settings.database_url)
            .await
            .with_context(|| {
                format!(
                    "cannot reach PostgreSQL at {}",
                    events::config::redact_url(&settings.database_url)
                )
            })?;
        // A real connection first: it says plainly when the broker is down or refuses us.
        let bus = settings.bus();
        let conn = events::admin::connect(&bus)
            .await
            .with_context(|| format!("cannot reach RabbitMQ at {}", bus.redacted_url()))?;
        let _ = conn.close(200, "bench probe".into()).await;
        let rabbitmq_version = rabbitmq_version(&settings.amqp_url)
            .await
            .unwrap_or_else(|e| format!("unknown ({e:#})"));
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        Ok(Machine {
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            cpu_model: cpuinfo
                .lines()
                .find_map(|l| l.strip_prefix("model name"))
                .and_then(|l| l.split_once(':'))
                .map_or_else(|| "unknown CPU".into(), |(_, v)| v.trim().to_string()),
            memory_mib: meminfo
                .lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
                .map_or(0, |kib| kib / 1024),
            rabbitmq_version,
            postgresql_version,
            date: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            build: if cfg!(debug_assertions) {
                "debug"
            } else {
                "release"
            },
            shop_version: env!("CARGO_PKG_VERSION"),
        })
    }
}

async fn postgres_version(server_url: &str) -> anyhow::Result<String> {
    let options = PgConnectOptions::from_str(server_url)
        .context("invalid database url")?
        .database("postgres");
    let mut conn = options.connect().await?;
    let version: String = sqlx::query_scalar("SHOW server_version")
        .fetch_one(&mut conn)
        .await?;
    conn.close().await?;
    Ok(version)
}

/// The broker's `version` server property. lapin reads it during the handshake but does not
/// expose it, so this opens a TCP connection, sends the protocol header and parses the
/// `connection.start` the broker answers with (plain `amqp://` only).
async fn rabbitmq_version(amqp_url: &str) -> anyhow::Result<String> {
    let uri = lapin::uri::AMQPUri::from_str(amqp_url).map_err(|e| anyhow::anyhow!(e))?;
    anyhow::ensure!(
        uri.scheme == lapin::uri::AMQPScheme::AMQP,
        "not asked over TLS"
    );
    let addr = (uri.authority.host.as_str(), uri.authority.port);
    let read = async {
        let mut tcp = tokio::net::TcpStream::connect(addr).await?;
        tcp.write_all(b"AMQP\x00\x00\x09\x01").await?;
        // Frame: type (1), channel (2), payload size (4), payload, frame end.
        let mut header = [0u8; 7];
        tcp.read_exact(&mut header).await?;
        let size = u32::from_be_bytes([header[3], header[4], header[5], header[6]]) as usize;
        anyhow::ensure!(header[0] == 1 && size < 1 << 20, "not a method frame");
        let mut payload = vec![0u8; size];
        tcp.read_exact(&mut payload).await?;
        anyhow::Ok(payload)
    };
    let payload = tokio::time::timeout(Duration::from_secs(5), read).await??;
    let (_, class) = lapin::protocol::parse_class(payload.as_slice())
        .map_err(|e| anyhow::anyhow!("cannot parse connection.start: {e}"))?;
    let AMQPClass::Connection(AMQPMethod::Start(start)) = class else {
        anyhow::bail!("the broker did not start with connection.start");
    };
    let version = start
        .server_properties
        .inner()
        .get("version")
        .context("no version in the server properties")?;
    Ok(match version {
        lapin::types::AMQPValue::LongString(s) => String::from_utf8_lossy(s.as_bytes()).into(),
        other => format!("{other:?}"),
    })
}
