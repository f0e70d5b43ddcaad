//! A JSON body extractor whose rejections are problem+json and name the offending field.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{StatusCode, header};
use serde::de::DeserializeOwned;

use crate::problem::Problem;

/// Like `axum::Json`, but a bad body is a problem+json saying what is wrong and where:
/// 413 too large, 415 not JSON, 400 malformed JSON, 422 wrong type or missing field.
pub struct Json<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Json<T> {
    type Rejection = Problem;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let is_json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(is_json_media_type);
        if !is_json {
            return Err(Problem::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported-media-type",
                "the body must be JSON, sent with Content-Type: application/json",
            ));
        }
        let too_large = || {
            Problem::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body-too-large",
                format!(
                    "the body is larger than {} bytes",
                    crate::http::BODY_LIMIT_BYTES
                ),
            )
        };
        // A declared length over the limit is refused before waiting for a body that would
        // be refused anyway.
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > crate::http::BODY_LIMIT_BYTES as u64) {
            return Err(too_large());
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                too_large()
            } else {
                Problem::new(StatusCode::BAD_REQUEST, "unreadable-body", e.body_text())
            }
        })?;
        parse(&bytes).map(Json)
    }
}

/// Parses a JSON body, turning serde's error into a problem that names the field.
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Problem> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let message = strip_position(&inner.to_string());
        match inner.classify() {
            serde_json::error::Category::Syntax
            | serde_json::error::Category::Eof
            | serde_json::error::Category::Io => Problem::new(
                StatusCode::BAD_REQUEST,
                "malformed-json",
                format!("the body is not valid JSON: {message}"),
            ),
            serde_json::error::Category::Data => {
                // "missing field `x`" is reported at the parent's path: name the field itself.
                let field = match missing_field(&message) {
                    Some(name) if path == "." => name.to_string(),
                    Some(name) => format!("{path}.{name}"),
                    None => path,
                };
                if field == "." {
                    // The body itself is of the wrong shape (an array, a string…): no field to name.
                    Problem::new(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        "invalid-body",
                        format!("the body must be a JSON object: {message}"),
                    )
                } else {
                    Problem::invalid(field.clone(), format!("{field}: {message}"))
                }
            }
        }
    })?;
    de.end().map_err(|_| {
        Problem::new(
            StatusCode::BAD_REQUEST,
            "malformed-json",
            "trailing characters after the JSON value",
        )
    })?;
    Ok(value)
}

fn missing_field(message: &str) -> Option<&str> {
    message.strip_prefix("missing field `")?.split('`').next()
}

/// serde_json appends " at line 1 column 5"; keep it for syntax errors only where useful.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_string(),
        None => message.to_string(),
    }
}

/// `application/json` or `application/<anything>+json`, parameters ignored; media types are
/// case-insensitive (RFC 9110 §8.3.1), so `Application/JSON` is JSON too.
fn is_json_media_type(content_type: &str) -> bool {
    let media = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match media.split_once('/') {
        Some(("application", subtype)) => subtype == "json" || subtype.ends_with("+json"),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Line {
        sku: String,
        quantity: i64,
    }
    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Body {
        lines: Vec<Line>,
    }

    #[test]
    fn json_media_types_are_case_insensitive_and_application_only() {
        for ok in [
            "application/json",
            "Application/JSON; charset=utf-8",
            "application/problem+json",
        ] {
            assert!(is_json_media_type(ok), "{ok}");
        }
        for bad in ["text/plain", "text/x+json", "application/jsonp", "json", ""] {
            assert!(!is_json_media_type(bad), "{bad}");
        }
    }

    #[test]
    fn wrong_type_names_the_nested_field() {
        let p = parse::<Body>(br#"{"lines": [{"sku": "A", "quantity": "two"}]}"#).unwrap_err();
        assert_eq!(p.status, 422);
        assert_eq!(p.field.as_deref(), Some("lines[0].quantity"));
    }

    #[test]
    fn missing_field_is_named() {
        let p = parse::<Body>(br#"{"lines": [{"sku": "A"}]}"#).unwrap_err();
        assert_eq!(p.field.as_deref(), Some("lines[0].quantity"));
        let p = parse::<Body>(br#"{}"#).unwrap_err();
        assert_eq!(p.field.as_deref(), Some("lines"));
    }

    #[test]
    fn malformed_json_is_400() {
        let p = parse::<Body>(br#"{"lines": [}"#).unwrap_err();
        assert_eq!(p.status, 400);
        assert_eq!(p.kind, "/problems/malformed-json");
    }
}
