//! MK.IO's bearer tokens. Every MK.IO call carries `Authorization: Bearer <JWT>` (media-api.json
//! `securitySchemes.BearerAuth`; the legacy `x-mkio-token` header is still accepted, as the docs say).
//!
//! The emulator checks the token's shape and its `exp` claim only. Signatures are **not** verified: there
//! is no MediaKind key to verify them against, and what the product must get right is sending a token and
//! reacting to an expired one. So any `header.payload.signature` whose payload is JSON with a numeric `exp`
//! in the future is accepted, including `{"alg":"none"}` tokens with an empty signature.

use axum::http::{HeaderMap, StatusCode};
use base64::engine::general_purpose::{URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine;
use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use super::error::MkioError;

/// Why a request is not authenticated.
#[derive(Debug, Clone, PartialEq)]
pub enum AuthFailure {
    /// No `Authorization: Bearer` (nor `x-mkio-token`) header.
    Missing,
    /// Not three dot-separated base64url parts, or the payload is not JSON with a numeric `exp`.
    Malformed(&'static str),
    /// `exp` is not in the future.
    Expired(DateTime<Utc>),
}

impl From<AuthFailure> for MkioError {
    fn from(f: AuthFailure) -> MkioError {
        match f {
            AuthFailure::Missing => MkioError::new(
                StatusCode::UNAUTHORIZED,
                "Unauthorized",
                "Authentication credentials were not provided: send 'Authorization: Bearer <token>'.",
            ),
            AuthFailure::Malformed(why) => MkioError::new(
                StatusCode::UNAUTHORIZED,
                "Unauthorized",
                format!("The token is not a valid JWT: {why}."),
            ),
            AuthFailure::Expired(at) => MkioError::new(
                StatusCode::UNAUTHORIZED,
                "TokenExpired",
                format!("The token expired at {}.", at.format("%Y-%m-%dT%H:%M:%SZ")),
            ),
        }
    }
}

/// The token a request carries, if any.
fn token(headers: &HeaderMap) -> Option<&str> {
    let bearer = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.trim());
    bearer
        .or_else(|| headers.get("x-mkio-token").and_then(|v| v.to_str().ok()).map(str::trim))
        .filter(|t| !t.is_empty())
}

fn decode_part(part: &str) -> Option<Value> {
    // JWTs use unpadded base64url; padded input is accepted too so hand-made tokens work.
    let bytes = URL_SAFE_NO_PAD.decode(part).or_else(|_| URL_SAFE.decode(part)).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// The `exp` of a token, checked for shape only (signature not verified, see the module docs).
pub fn expiry(token: &str) -> Result<DateTime<Utc>, AuthFailure> {
    let parts: Vec<&str> = token.split('.').collect();
    let [header, payload, _signature] = parts.as_slice() else {
        return Err(AuthFailure::Malformed("expected header.payload.signature"));
    };
    decode_part(header).filter(Value::is_object).ok_or(AuthFailure::Malformed("the header is not base64url JSON"))?;
    let claims = decode_part(payload).ok_or(AuthFailure::Malformed("the payload is not base64url JSON"))?;
    let exp =
        claims.get("exp").and_then(Value::as_f64).ok_or(AuthFailure::Malformed("the payload has no numeric exp"))?;
    DateTime::from_timestamp(exp as i64, 0).ok_or(AuthFailure::Malformed("exp is out of range"))
}

/// Checks a request's token at `now`.
pub fn check(headers: &HeaderMap, now: DateTime<Utc>) -> Result<(), AuthFailure> {
    let exp = expiry(token(headers).ok_or(AuthFailure::Missing)?)?;
    if exp <= now {
        return Err(AuthFailure::Expired(exp));
    }
    Ok(())
}

/// An unsigned token (`{"alg":"none","typ":"JWT"}`, empty signature) that expires at `exp`, with claims
/// shaped like MK.IO's restricted tokens. Tests and demos use it through `POST /_emulator/mkio/token`.
pub fn mint(exp: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let header = json!({"alg": "none", "typ": "JWT"});
    let claims = json!({
        "iss": "ams-emulator",
        "sub": "emulator-user",
        "jti": uuid::Uuid::new_v4().to_string(),
        "iat": now.timestamp(),
        "exp": exp.timestamp(),
        "type": "restricted",
    });
    let enc = |v: &Value| URL_SAFE_NO_PAD.encode(v.to_string());
    format!("{}.{}.", enc(&header), enc(&claims))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(axum::http::header::AUTHORIZATION, HeaderValue::from_str(value).unwrap());
        h
    }

    #[test]
    fn a_minted_token_is_accepted_until_it_expires() {
        let now = Utc::now();
        let t = mint(now + chrono::Duration::seconds(60), now);
        assert_eq!(check(&headers(&format!("Bearer {t}")), now), Ok(()));
        let later = now + chrono::Duration::seconds(61);
        assert!(matches!(check(&headers(&format!("Bearer {t}")), later), Err(AuthFailure::Expired(_))));
    }

    #[test]
    fn a_missing_or_malformed_token_is_refused() {
        let now = Utc::now();
        assert_eq!(check(&HeaderMap::new(), now), Err(AuthFailure::Missing));
        assert_eq!(check(&headers("Basic abc"), now), Err(AuthFailure::Missing));
        assert!(matches!(check(&headers("Bearer not-a-jwt"), now), Err(AuthFailure::Malformed(_))));
        let no_exp = format!("{}.{}.", URL_SAFE_NO_PAD.encode("{}"), URL_SAFE_NO_PAD.encode("{\"sub\":1}"));
        assert!(matches!(check(&headers(&format!("Bearer {no_exp}")), now), Err(AuthFailure::Malformed(_))));
    }

    #[test]
    fn the_legacy_header_and_any_signature_are_accepted() {
        let now = Utc::now();
        let t = format!("{}sig-not-checked", mint(now + chrono::Duration::hours(1), now));
        let mut h = HeaderMap::new();
        h.insert("x-mkio-token", HeaderValue::from_str(&t).unwrap());
        assert_eq!(check(&h, now), Ok(()));
    }
}
