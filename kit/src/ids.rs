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
    }
}
