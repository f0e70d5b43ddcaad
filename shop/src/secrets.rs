//! Secrets from files: for each setting that can hold a password, `<VAR>_FILE` names a file
//! whose content is the value (the Docker and Kubernetes convention: a mounted secret, so the
//! password is in no environment listing, `docker inspect` or process table).

use std::ffi::OsString;

/// The settings that carry credentials.
pub const SECRET_VARS: [&str; 9] = [
    "AMQP_URL",
    "CHECKOUT_AMQP_URL",
    "CART_AMQP_URL",
    "INVENTORY_AMQP_URL",
    "DATABASE_URL",
    "CHECKOUT_DATABASE_URL",
    "CART_DATABASE_URL",
    "INVENTORY_DATABASE_URL",
    "RABBITMQ_API_URL",
];

/// For every `<VAR>_FILE` set (`env` reads the environment), `(VAR, content of the file)`
/// without the trailing newline. Both `VAR` and `VAR_FILE` set is an error (which one wins
/// would be a guess); so is an unreadable or empty file. Errors name the file, never its
/// content.
pub fn resolve_files(
    env: impl Fn(&str) -> Option<OsString>,
) -> Result<Vec<(&'static str, String)>, String> {
    let mut found = Vec::new();
    for var in SECRET_VARS {
        let file_var = format!("{var}_FILE");
        let Some(path) = env(&file_var) else {
            continue;
        };
        if env(var).is_some() {
            return Err(format!("both {var} and {file_var} are set: set only one"));
        }
        let content = std::fs::read_to_string(&path).map_err(|e| {
            format!(
                "{file_var}: cannot read {}: {e}",
                std::path::Path::new(&path).display()
            )
        })?;
        let value = content.trim_end_matches(['\n', '\r']).to_string();
        if value.trim().is_empty() {
            return Err(format!(
                "{file_var}: {} is empty",
                std::path::Path::new(&path).display()
            ));
        }
        found.push((var, value));
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<OsString> {
        let map: HashMap<String, OsString> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), OsString::from(v)))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn a_file_gives_the_value_and_conflicts_are_refused() {
        let dir = std::env::temp_dir().join(format!("shop-secrets-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("cart-amqp-url");
        std::fs::write(&file, "amqp://cart:s3cret@rabbit/%2f\n").unwrap();
        let path = file.to_str().unwrap();

        let found = resolve_files(env(&[("CART_AMQP_URL_FILE", path)])).unwrap();
        assert_eq!(
            found,
            vec![("CART_AMQP_URL", "amqp://cart:s3cret@rabbit/%2f".to_string())]
        );

        let err = resolve_files(env(&[
            ("CART_AMQP_URL_FILE", path),
            ("CART_AMQP_URL", "amqp://x"),
        ]))
        .unwrap_err();
        assert!(
            err.contains("both CART_AMQP_URL and CART_AMQP_URL_FILE"),
            "{err}"
        );

        let err = resolve_files(env(&[("DATABASE_URL_FILE", "/nonexistent/x")])).unwrap_err();
        assert!(
            err.starts_with("DATABASE_URL_FILE: cannot read /nonexistent/x"),
            "{err}"
        );
        assert!(resolve_files(env(&[])).unwrap().is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
