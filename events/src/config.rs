//! Bus settings. Defaults work against a local RabbitMQ; every figure is a knob because the
//! right prefetch or retry schedule depends on the handler, not on the library.

use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueType {
    /// Replicated, durable, with a broker-side delivery limit: the default for production.
    Quorum,
    /// Single-node queues: faster, for development or a broker without quorum support.
    Classic,
}

#[derive(Debug, Clone)]
pub struct BusConfig {
    /// `amqp://user:pass@host:port/vhost`
    pub amqp_url: String,
    /// The durable topic exchange all events go through.
    pub exchange: String,
    /// Prepended to every queue name, so several systems (or tests) share a broker.
    pub queue_prefix: String,
    pub queue_type: QueueType,
    /// Deliveries the broker hands a consumer before it acks (bounds memory: a deep queue
    /// costs at most this many messages in the process).
    pub prefetch: u16,
    /// Handlers running at once per service.
    pub concurrency: usize,
    /// Deliveries already waiting that one handler slot applies in one transaction (one
    /// commit), at most. Only what has arrived is taken, so a quiet queue still applies each
    /// event alone at once; a busy one pays one commit per batch. 1 = one per transaction.
    pub batch: usize,
    /// Attempts (first delivery included) before a transiently failing event is dead-lettered.
    pub max_attempts: u32,
    /// Delay before retry n (1-based); the last entry repeats. Each distinct delay is one TTL
    /// hold queue, so the schedule is fixed at declare time.
    pub retry_delays: Vec<Duration>,
    /// A handler (and its commit) that takes longer is treated as a transient failure.
    /// Must stay well below the broker's consumer_timeout (30 min by default).
    pub handler_timeout: Duration,
    /// Quorum queues: deliveries of one message (redeliveries after crashes included) before
    /// the broker itself dead-letters it. A guard against a message that kills the process.
    pub delivery_limit: u32,
    pub relay: RelayConfig,
    /// How long inbox rows are kept; must exceed any redelivery window.
    pub inbox_retention: Duration,
}

#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// Rows claimed and published per round trip (confirms are awaited per batch).
    pub batch_size: i64,
    /// Fallback poll when no NOTIFY arrives (a missed notification costs at most this).
    pub poll_interval: Duration,
    /// A confirm that doesn't come within this is a failed publish, retried later.
    pub confirm_timeout: Duration,
    /// Attempts before a row is parked for an operator.
    pub max_attempts: i32,
    /// How long sent rows are kept for inspection before cleanup.
    pub retention: Duration,
}

impl Default for RelayConfig {
    fn default() -> Self {
        RelayConfig {
            batch_size: 256,
            poll_interval: Duration::from_millis(500),
            confirm_timeout: Duration::from_secs(10),
            max_attempts: 20,
            retention: Duration::from_secs(24 * 3600),
        }
    }
}

pub const DEFAULT_AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
pub const DEFAULT_EXCHANGE: &str = "shop.events";

impl Default for BusConfig {
    fn default() -> Self {
        BusConfig {
            amqp_url: DEFAULT_AMQP_URL.to_string(),
            exchange: DEFAULT_EXCHANGE.to_string(),
            queue_prefix: String::new(),
            queue_type: QueueType::Quorum,
            prefetch: 64,
            concurrency: 8,
            batch: 8,
            max_attempts: 5,
            retry_delays: vec![
                Duration::from_secs(1),
                Duration::from_secs(5),
                Duration::from_secs(30),
                Duration::from_secs(120),
            ],
            handler_timeout: Duration::from_secs(30),
            delivery_limit: 20,
            relay: RelayConfig::default(),
            inbox_retention: Duration::from_secs(7 * 24 * 3600),
        }
    }
}

impl BusConfig {
    /// The delay before retry `attempt` (the attempt that failed, 1-based).
    pub fn retry_delay(&self, attempt: u32) -> Duration {
        let i = (attempt.max(1) as usize - 1).min(self.retry_delays.len().saturating_sub(1));
        self.retry_delays
            .get(i)
            .copied()
            .unwrap_or(Duration::from_secs(1))
    }

    pub fn distinct_retry_delays(&self) -> Vec<Duration> {
        let mut d = self.retry_delays.clone();
        d.sort();
        d.dedup();
        d
    }

    /// The user this bus authenticates as (from the AMQP url), set as the `user_id` property
    /// of everything it publishes: the broker rejects a message whose `user_id` is not the
    /// connection's user, so a consumer can trust it names the publisher. `None` with
    /// `auth_mechanism=external` (the user is the TLS certificate's, not the url's) or an
    /// unparsable url (connecting reports that).
    pub fn publisher_user_id(&self) -> Option<String> {
        let uri: lapin::uri::AMQPUri = self.amqp_url.parse().ok()?;
        if matches!(
            uri.query.auth_mechanism,
            Some(lapin::uri::SASLMechanism::External)
        ) {
            return None;
        }
        let user = uri.authority.userinfo.username;
        (!user.is_empty() && user.len() <= 255).then_some(user)
    }

    /// The AMQP url with its password replaced, for logs and errors.
    pub fn redacted_url(&self) -> String {
        redact_url(&self.amqp_url)
    }
}

/// Replaces the password of `scheme://user:password@host` with `***`, and the value of any
/// `password` (or `sslpassword`) parameter, in a query string or a key-value connection string
/// (`host=db password=...`), which sqlx and libpq also accept.
///
/// Malformed input matters most here (it is what error messages quote), so nothing assumes a
/// well-formed URL: the user information runs to the last `@`, whatever characters it holds,
/// and when in doubt more is hidden.
pub fn redact_url(url: &str) -> String {
    let start = url.find("://").map_or(0, |i| i + 3);
    let (head, rest) = url.split_at(start);
    match rest.rfind('@') {
        Some(at) => {
            let userinfo = match rest[..at].split_once(':') {
                Some((user, _)) => format!("{user}:***"),
                None => redact_params(&rest[..at]),
            };
            format!("{head}{userinfo}@{}", redact_params(&rest[at + 1..]))
        }
        None => format!("{head}{}", redact_params(rest)),
    }
}

/// Hides the values of secret `key=value` parameters, separated by `?`, `&` or whitespace.
fn redact_params(s: &str) -> String {
    s.split_inclusive(|c: char| c == '?' || c == '&' || c.is_whitespace())
        .map(|piece| {
            let body = piece.trim_end_matches(|c: char| c == '?' || c == '&' || c.is_whitespace());
            let separator = &piece[body.len()..];
            match body.split_once('=') {
                Some((key, _)) if is_secret_param(key) => format!("{key}=***{separator}"),
                _ => piece.to_string(),
            }
        })
        .collect()
}

/// `password` or `sslpassword`, in any case, percent-encoded or not (sqlx decodes keys).
fn is_secret_param(key: &str) -> bool {
    let decoded = percent_decode(key);
    decoded.eq_ignore_ascii_case("password") || decoded.eq_ignore_ascii_case("sslpassword")
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (bytes[i], bytes.get(i + 1), bytes.get(i + 2)) {
            (b'%', Some(&h), Some(&l)) if hex(h).is_some() && hex(l).is_some() => {
                out.push((hex(h).unwrap_or(0) * 16 + hex(l).unwrap_or(0)) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_delay_repeats_the_last_step() {
        let c = BusConfig::default();
        assert_eq!(c.retry_delay(1), Duration::from_secs(1));
        assert_eq!(c.retry_delay(2), Duration::from_secs(5));
        assert_eq!(c.retry_delay(9), Duration::from_secs(120));
    }

    #[test]
    fn the_publisher_is_the_urls_user() {
        let mut c = BusConfig::default();
        assert_eq!(c.publisher_user_id().as_deref(), Some("guest"));
        c.amqp_url = "amqps://shop%2Dcart:p%40ss@rabbit/%2f".into();
        assert_eq!(c.publisher_user_id().as_deref(), Some("shop-cart"));
        c.amqp_url = "amqps://rabbit/%2f?auth_mechanism=external".into();
        assert_eq!(c.publisher_user_id(), None);
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact_url("amqp://cart:s3cret@rabbit:5672/%2f"),
            "amqp://cart:***@rabbit:5672/%2f"
        );
        assert_eq!(
            redact_url("postgres://postgres@db/x"),
            "postgres://postgres@db/x"
        );
        assert_eq!(
            redact_url("postgres://u:p@db/x?sslmode=require&password=s3cret&PassWord=x"),
            "postgres://u:***@db/x?sslmode=require&password=***&PassWord=***"
        );
        assert_eq!(
            redact_url("postgres://db/x?application_name=a@b"),
            "postgres://db/x?application_name=a@b"
        );
    }

    #[test]
    fn passwords_in_malformed_urls_are_redacted_too() {
        for (url, shown) in [
            (
                "amqp://u:s3cret?x@host:5672/%2f",
                "amqp://u:***@host:5672/%2f",
            ),
            ("amqp://u:pa/ss#@host", "amqp://u:***@host"),
            ("u:s3cret@host:5672", "u:***@host:5672"),
            ("amqp:/u:s3cret@host", "amqp:***@host"),
            (
                "host=db user=u password=s3cret",
                "host=db user=u password=***",
            ),
            (
                "postgres://db/x?pass%77ord=s3cret",
                "postgres://db/x?pass%77ord=***",
            ),
            (
                "postgres://db/x?password=s3cret&app=a@b",
                "postgres://db/x?password=***&app=a@b",
            ),
        ] {
            assert_eq!(redact_url(url), shown, "{url}");
            assert!(!redact_url(url).contains("s3cret"), "{url}");
        }
    }
}
