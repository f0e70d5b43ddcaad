//! Errors as people read them.

/// An error and its causes as one sentence, each cause said once (client libraries often
/// repeat their source in their own message).
pub fn describe(e: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in e.chain() {
        let part = cause.to_string();
        // PostgreSQL's own source position is noise for a user.
        let part = match part.find(" at line ") {
            Some(i) if part[i + 9..].chars().all(|c| c.is_ascii_digit()) => part[..i].to_string(),
            _ => part,
        };
        if text.contains(&part) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&part);
    }
    text
}
