//! A path-parameter extractor whose rejections are problem+json and name the parameter.

use axum::extract::path::ErrorKind;
use axum::extract::rejection::PathRejection;
use axum::extract::{FromRequestParts, MatchedPath};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use crate::problem::Problem;

/// Like `axum::extract::Path`, but a parameter that can't be extracted (not valid UTF-8 once
/// percent-decoded, not a UUID…) is a 422 problem+json whose `field` is the parameter's name
/// in the route (`sku`, `order_id`), like a bad body field. A route/extractor mismatch (a
/// programming error) stays a logged 500.
#[derive(Debug)]
pub struct Path<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for Path<T> {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(value)) => Ok(Path(value)),
            Err(rejection) => {
                let route = parts.extensions.get::<MatchedPath>().map(|m| m.as_str());
                Err(problem(rejection, route))
            }
        }
    }
}

/// The names of a route's parameters, in order: `/carts/{cart_id}/items/{sku}` →
/// `[cart_id, sku]`.
fn param_names(route: &str) -> Vec<&str> {
    route
        .split('/')
        .filter_map(|segment| segment.strip_prefix('{')?.strip_suffix('}'))
        .map(|name| name.trim_start_matches('*'))
        .collect()
}

fn problem(rejection: PathRejection, route: Option<&str>) -> Problem {
    let names = route.map(param_names).unwrap_or_default();
    let only = || (names.len() == 1).then(|| names[0].to_string());
    let invalid = |field: Option<String>, detail: String| match field {
        Some(field) => Problem::invalid(field.clone(), format!("{field}: {detail}")),
        None => Problem::new(
            axum::http::StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-path",
            detail,
        ),
    };
    let e = match rejection {
        PathRejection::FailedToDeserializePathParams(e) => e,
        other => return Problem::internal(format!("path extraction: {}", other.body_text())),
    };
    match e.into_kind() {
        ErrorKind::InvalidUtf8InPathParam { key } => invalid(
            Some(key),
            "not valid UTF-8 once percent-decoded".to_string(),
        ),
        ErrorKind::ParseErrorAtKey {
            key, expected_type, ..
        } => invalid(Some(key), format!("must be a {expected_type}")),
        ErrorKind::ParseErrorAtIndex {
            index,
            expected_type,
            ..
        } => invalid(
            names.get(index).map(|n| n.to_string()),
            format!("must be a {expected_type}"),
        ),
        ErrorKind::ParseError { expected_type, .. } => {
            invalid(only(), format!("must be a {expected_type}"))
        }
        ErrorKind::DeserializeError { key, message, .. } => invalid(Some(key), message),
        ErrorKind::Message(message) => invalid(only(), message),
        kind @ (ErrorKind::WrongNumberOfParameters { .. } | ErrorKind::UnsupportedType { .. }) => {
            Problem::internal(format!("path extraction: {kind}"))
        }
        kind => invalid(only(), kind.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_route_parameters() {
        assert_eq!(
            param_names("/carts/{cart_id}/items/{sku}"),
            ["cart_id", "sku"]
        );
        assert_eq!(param_names("/files/{*rest}"), ["rest"]);
        assert!(param_names("/products").is_empty());
    }
}
