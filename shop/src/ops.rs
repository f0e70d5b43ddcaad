//! Operator tools: the dead-letter queues and the outboxes, per service.

use std::io::{IsTerminal, Write};

use anyhow::Context as _;
use clap::Subcommand;
use uuid::Uuid;

use crate::settings::{Settings, Which};

#[derive(Debug, Subcommand)]
pub enum DlqCommand {
    /// List the dead letters of a service with their reasons, and counts by reason.
    List {
        #[arg(value_enum)]
        service: Which,
        /// At most this many messages.
        #[arg(long, default_value_t = 1000)]
        limit: usize,
    },
    /// Show one dead letter in full (headers and body).
    Show {
        #[arg(value_enum)]
        service: Which,
        /// The message id (the event id).
        id: String,
    },
    /// Send dead letters back through the normal path (the inbox still deduplicates).
    Replay {
        #[arg(value_enum)]
        service: Which,
        /// Only these message ids (default: all).
        #[arg(long = "id")]
        ids: Vec<String>,
    },
    /// Drop every dead letter of a service.
    Purge {
        #[arg(value_enum)]
        service: Which,
        /// Don't ask for confirmation.
        #[arg(long)]
        yes: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum OutboxCommand {
    /// Pending, parked and sent counts, the relay's lag, and the parked rows with their reasons.
    Status {
        #[arg(value_enum)]
        service: Which,
    },
    /// Put parked rows back in the relay's queue.
    Retry {
        #[arg(value_enum)]
        service: Which,
        /// Only this event id (default: every parked row).
        #[arg(long)]
        id: Option<Uuid>,
    },
}

fn one_line(s: &str, max: usize) -> String {
    let flat: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if flat.chars().count() > max {
        format!("{}…", flat.chars().take(max).collect::<String>())
    } else {
        flat
    }
}

pub async fn dlq(cmd: DlqCommand, settings: &Settings) -> anyhow::Result<()> {
    // The service's own broker user when it has one (its DLQ and exchange are its own).
    let bus = match &cmd {
        DlqCommand::List { service, .. }
        | DlqCommand::Show { service, .. }
        | DlqCommand::Replay { service, .. }
        | DlqCommand::Purge { service, .. } => settings.bus_for(*service),
    };
    let broker = || format!("reading the dead-letter queue on {}", bus.redacted_url());
    match cmd {
        DlqCommand::List { service, limit } => {
            let letters = events::admin::list_dead_letters(&bus, service.name(), limit)
                .await
                .with_context(broker)?;
            let mut by_reason = std::collections::BTreeMap::<String, usize>::new();
            for l in &letters {
                // Every field read off a message is flattened: a dead letter is untrusted
                // input and must not put control sequences on the operator's terminal.
                *by_reason
                    .entry(one_line(l.reason.as_deref().unwrap_or("(broker)"), 40))
                    .or_default() += 1;
            }
            println!(
                "{} dead letters in {}{}.dlq",
                letters.len(),
                settings.queue_prefix,
                service.name()
            );
            for (reason, n) in &by_reason {
                println!("{n:>8}  {reason}");
            }
            if !letters.is_empty() {
                println!();
                println!(
                    "{:<38} {:<34} {:<22} {:>3}  last error",
                    "id", "type", "reason", "att"
                );
            }
            for l in &letters {
                println!(
                    "{:<38} {:<34} {:<22} {:>3}  {}",
                    one_line(&l.id().unwrap_or_else(|| "-".into()), 64),
                    one_line(l.event_type.as_deref().unwrap_or("-"), 64),
                    one_line(l.reason.as_deref().unwrap_or("-"), 40),
                    l.attempts
                        .map(|a| a.to_string())
                        .unwrap_or_else(|| "-".into()),
                    one_line(l.last_error.as_deref().unwrap_or("-"), 80)
                );
            }
        }
        DlqCommand::Show { service, id } => {
            let letters = events::admin::list_dead_letters(&bus, service.name(), usize::MAX)
                .await
                .with_context(broker)?;
            let letter = letters
                .into_iter()
                .find(|l| l.id().as_deref() == Some(id.as_str()))
                .with_context(|| {
                    format!(
                        "no dead letter with id {id} in {}'s dead-letter queue",
                        service.name()
                    )
                })?;
            println!("{}", serde_json::to_string_pretty(&letter)?);
        }
        DlqCommand::Replay { service, ids } => {
            let filter = (!ids.is_empty()).then_some(ids.as_slice());
            let n = events::admin::replay_dead_letters(&bus, service.name(), filter)
                .await
                .with_context(broker)?;
            println!(
                "replayed {n} dead letters to {}{}",
                settings.queue_prefix,
                service.name()
            );
        }
        DlqCommand::Purge { service, yes } => {
            if !yes {
                if !std::io::stdin().is_terminal() {
                    anyhow::bail!("purge drops messages for good: confirm with --yes");
                }
                print!(
                    "Drop every dead letter of {}? Type the service name to confirm: ",
                    service.name()
                );
                std::io::stdout().flush()?;
                let mut answer = String::new();
                std::io::stdin().read_line(&mut answer)?;
                if answer.trim() != service.name() {
                    println!("not purged");
                    return Ok(());
                }
            }
            let n = events::admin::purge_dead_letters(&bus, service.name())
                .await
                .with_context(broker)?;
            println!("purged {n} dead letters");
        }
    }
    Ok(())
}

pub async fn outbox(cmd: OutboxCommand, settings: &Settings) -> anyhow::Result<()> {
    let (service, id) = match &cmd {
        OutboxCommand::Status { service } => (*service, None),
        OutboxCommand::Retry { service, id } => (*service, *id),
    };
    let url = settings.database_url(service);
    let context = || {
        format!(
            "reading {}'s outbox at {}",
            service.name(),
            events::config::redact_url(&url)
        )
    };
    // Connect now, so an unreachable server says why instead of "pool timed out".
    let pool = kit::db::connect_now(&url, 2).await.with_context(context)?;
    match cmd {
        OutboxCommand::Status { .. } => {
            let s = events::outbox::status(&pool).await.with_context(context)?;
            let oldest = if s.pending > 0 {
                format!(" (oldest {:.1} s)", s.oldest_pending_secs)
            } else {
                String::new()
            };
            println!(
                "{}: {} pending{oldest}, {} parked, {} sent (sent rows are kept {} h)",
                service.name(),
                s.pending,
                s.parked,
                s.sent,
                events::RelayConfig::default().retention.as_secs() / 3600
            );
            for r in &s.parked_rows {
                println!(
                    "parked {} {} after {} attempts: {}",
                    r.event_id,
                    one_line(&r.event_type, 64),
                    r.attempts,
                    one_line(r.last_error.as_deref().unwrap_or("-"), 200)
                );
            }
        }
        OutboxCommand::Retry { .. } => {
            let n = events::outbox::retry_parked(&pool, id)
                .await
                .with_context(context)?;
            println!("{n} parked rows put back in the relay's queue");
        }
    }
    pool.close().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::one_line;

    #[test]
    fn one_line_removes_terminal_control_sequences() {
        let hostile = "esc-\u{1b}[31mRED\u{1b}[0m\u{7}\u{1b}]0;pwned\u{7}\n";
        let flat = one_line(hostile, 80);
        assert!(!flat.chars().any(char::is_control), "{flat:?}");
        assert!(flat.starts_with("esc- [31mRED"));
        assert_eq!(one_line("abcdef", 3), "abc…");
    }
}
