//! Validation of the identifiers that travel in URLs, events and AMQP properties.

use crate::problem::Problem;

/// Longest sku or cart id accepted: well under AMQP's 255-byte short strings.
pub const MAX_ID_LEN: usize = 64;

/// A sku or cart id: 1 to 64 characters of `A-Z a-z 0-9 _ - . :`.
pub fn check_id(field: &str, value: &str) -> Result<(), Problem> {
    if value.is_empty() {
        return Err(Problem::invalid(
            field,
            format!("{field} must not be empty"),
        ));
    }
    if value.len() > MAX_ID_LEN {
        return Err(Problem::invalid(
            field,
            format!("{field} is longer than {MAX_ID_LEN} characters"),
        ));
    }
    if let Some(c) = value
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':')))
    {
        return Err(Problem::invalid(
            field,
            format!("{field} contains {c:?}; allowed: letters, digits, _ - . :"),
        ));
    }
    Ok(())
}

/// A free-text value (a product name): 1 to `max_len` bytes, not only whitespace, and no
/// control characters (NUL, which PostgreSQL refuses in text, newlines, escapes…).
pub fn check_text(field: &str, value: &str, max_len: usize) -> Result<(), Problem> {
    if value.trim().is_empty() || value.len() > max_len {
        return Err(Problem::invalid(
            field,
            format!("{field} must be 1 to {max_len} bytes of UTF-8 (not only whitespace)"),
        ));
    }
    if let Some(c) = value.chars().find(|c| c.is_control()) {
        return Err(Problem::invalid(
            field,
            format!("{field} contains the control character {c:?}"),
        ));
    }
    Ok(())
}

/// A quantity that must be at least 1.
pub fn check_positive(field: &str, value: i64) -> Result<(), Problem> {
    if value <= 0 {
        return Err(Problem::invalid(
            field,
            format!("{field} must be at least 1, got {value}"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids() {
        assert!(check_id("sku", "85123A").is_ok());
        assert_eq!(
            check_id("sku", "").unwrap_err().field.as_deref(),
            Some("sku")
        );
        assert!(check_id("sku", "a b").is_err());
        assert!(check_id("sku", &"x".repeat(65)).is_err());
        assert!(check_id("sku", "A\u{0}").is_err());
    }

    #[test]
    fn text() {
        assert!(check_text("name", "WHITE HANGING HEART T-LIGHT HOLDER", 200).is_ok());
        assert!(check_text("name", "Crème brûlée", 200).is_ok());
        for bad in ["", "  ", "a\u{0}b", "a\nb", "a\u{7f}", "a\u{9b}"] {
            let p = check_text("name", bad, 200).unwrap_err();
            assert_eq!(
                (p.status, p.field.as_deref()),
                (422, Some("name")),
                "{bad:?}"
            );
        }
        assert!(check_text("name", &"x".repeat(201), 200).is_err());
    }
}
