//! Ravnur Media Services (`rms` accounts): the same ARM API, behind Ravnur's own token.
//!
//! `POST /auth/token` takes `{"subscriptionId", "apiKey"}` and answers the token as plain text, a JWT with
//! an `exp` (Ravnur's `RmsApiKeyCredentials` and `rest-api-demo/src/actions/getToken.js` read it so).
//! Every ARM call on an rms account must carry `Authorization: Bearer <that token>`; without it, with a
//! token this emulator did not sign, or with an expired one, the call gets 401 in ARM's error shape.
//! `POST /_emulator/rms/expire-tokens` makes every token issued so far expired, so tests can drive a
//! client's refresh path without waiting for `exp`.
//!
//! What Ravnur documents and what is guessed here is listed in the emulator README.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

use crate::arm::{error_response, ArmError};
use crate::config::Provider;
use crate::state::Emulator;

type HmacSha256 = Hmac<Sha256>;

/// Path of the token endpoint, at the root of the instance's endpoint.
pub const TOKEN_PATH: &str = "/auth/token";

/// Issues and checks rms tokens, and counts what happened for the control API.
pub struct RmsAuth {
    /// Signs tokens; made at start, so tokens of another emulator run are not accepted.
    secret: [u8; 32],
    api_key: String,
    ttl: Duration,
    /// Tokens carry the generation they were issued in; expiring all of them moves it on.
    generation: AtomicU64,
    issued: AtomicU64,
    refused: AtomicU64,
    unauthorized: AtomicU64,
}

/// Why a call's token is not accepted: ARM's code and message for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// `AuthenticationFailed`, `InvalidAuthenticationToken` or `ExpiredAuthenticationToken`.
    pub code: &'static str,
    /// What is wrong.
    pub message: String,
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

impl RmsAuth {
    /// Accepts `api_key` and issues tokens that last `ttl`.
    pub fn new(api_key: &str, ttl: Duration) -> RmsAuth {
        RmsAuth {
            secret: rand::random(),
            api_key: api_key.to_owned(),
            ttl,
            generation: AtomicU64::new(0),
            issued: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            unauthorized: AtomicU64::new(0),
        }
    }

    fn sign(&self, data: &str) -> String {
        let mut mac = HmacSha256::new_from_slice(&self.secret).unwrap_or_else(|_| HmacSha256::new(&Default::default()));
        mac.update(data.as_bytes());
        b64(&mac.finalize().into_bytes())
    }

    /// A token for `subscription`, issued at `now`.
    pub fn issue(&self, subscription: &str, now: DateTime<Utc>) -> String {
        let ttl = i64::try_from(self.ttl.as_secs()).unwrap_or(i64::MAX / 2);
        let claims = json!({
            "iss": "ams-emulator",
            "sub": subscription,
            "iat": now.timestamp(),
            "nbf": now.timestamp(),
            "exp": now.timestamp().saturating_add(ttl),
            "gen": self.generation.load(Ordering::SeqCst),
            "jti": uuid::Uuid::new_v4().to_string(),
        });
        let unsigned = format!("{}.{}", b64(br#"{"alg":"HS256","typ":"JWT"}"#), b64(claims.to_string().as_bytes()));
        self.issued.fetch_add(1, Ordering::SeqCst);
        let signature = self.sign(&unsigned);
        format!("{unsigned}.{signature}")
    }

    /// Checks the `Authorization` header of a call on an rms account of `subscription` at `now`.
    pub fn check(&self, headers: &HeaderMap, subscription: &str, now: DateTime<Utc>) -> Result<(), Refusal> {
        let result = self.verify(headers, subscription, now);
        if result.is_err() {
            self.unauthorized.fetch_add(1, Ordering::SeqCst);
        }
        result
    }

    fn verify(&self, headers: &HeaderMap, subscription: &str, now: DateTime<Utc>) -> Result<(), Refusal> {
        let invalid = |why: &str| Refusal {
            code: "InvalidAuthenticationToken",
            message: format!("The access token is invalid: {why}."),
        };
        let Some(value) = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) else {
            return Err(Refusal {
                code: "AuthenticationFailed",
                message: "Authentication failed. The 'Authorization' header is missing.".to_owned(),
            });
        };
        let token = match value.split_once(' ') {
            Some((scheme, token)) if scheme.eq_ignore_ascii_case("Bearer") => token.trim(),
            _ => return Err(invalid("the 'Authorization' header is not 'Bearer <token>'")),
        };
        let mut parts = token.split('.');
        let (Some(head), Some(body), Some(signature), None) = (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(invalid("not a JWT"));
        };
        if self.sign(&format!("{head}.{body}")) != signature {
            return Err(invalid("the signature does not match"));
        }
        let claims: Value = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(body)
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .ok_or_else(|| invalid("unreadable claims"))?;
        if !claims["sub"].as_str().is_some_and(|s| s.eq_ignore_ascii_case(subscription)) {
            return Err(invalid("it was issued for another subscription"));
        }
        let exp = claims["exp"].as_i64().unwrap_or(0);
        let generation = claims["gen"].as_u64().unwrap_or(0);
        if exp <= now.timestamp() || generation < self.generation.load(Ordering::SeqCst) {
            let expiry = DateTime::from_timestamp(exp, 0).unwrap_or_default();
            return Err(Refusal {
                code: "ExpiredAuthenticationToken",
                message: format!(
                    "The access token expiry UTC time '{}' is earlier than current UTC time '{}'.",
                    expiry.to_rfc3339(),
                    now.to_rfc3339()
                ),
            });
        }
        Ok(())
    }

    /// Makes every token issued so far expired; the new generation.
    pub fn expire_all(&self) -> u64 {
        self.generation.fetch_add(1, Ordering::SeqCst) + 1
    }

    /// Counters and settings for the control API (never the key).
    pub fn view(&self, base_url: &str) -> Value {
        json!({
            "tokenEndpoint": format!("{base_url}{TOKEN_PATH}"),
            "tokenTtlSecs": self.ttl.as_secs(),
            "generation": self.generation.load(Ordering::SeqCst),
            "tokensIssued": self.issued.load(Ordering::SeqCst),
            "tokenRefusals": self.refused.load(Ordering::SeqCst),
            "unauthorizedCalls": self.unauthorized.load(Ordering::SeqCst),
        })
    }
}

impl From<Refusal> for ArmError {
    fn from(r: Refusal) -> ArmError {
        ArmError::Unauthorized { code: r.code, message: r.message }
    }
}

/// A string field of a JSON object, its name matched case-insensitively: Ravnur's C# samples send
/// `SubscriptionId` and `ApiKey` (Newtonsoft's default names), its JavaScript sample `subscriptionId` and
/// `apiKey`, and both work against Ravnur.
fn field<'a>(body: &'a Value, name: &str) -> Option<&'a str> {
    body.as_object()?.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).and_then(|(_, v)| v.as_str())
}

/// `POST /auth/token`.
pub async fn token(State(emulator): State<Arc<Emulator>>, body: Bytes) -> Response {
    if !emulator.config.accounts.iter().any(|a| a.provider == Provider::Rms) {
        return ArmError::NoRoute { method: "POST".to_owned(), path: TOKEN_PATH.to_owned() }.into_response();
    }
    let Ok(request) = serde_json::from_slice::<Value>(&body) else {
        return error_response(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "The body must be {\"subscriptionId\", \"apiKey\"}.",
        );
    };
    let auth = &emulator.rms;
    let subscription = field(&request, "subscriptionId").unwrap_or_default();
    let known = subscription.eq_ignore_ascii_case(&emulator.config.subscription);
    if !known || field(&request, "apiKey") != Some(auth.api_key.as_str()) {
        auth.refused.fetch_add(1, Ordering::SeqCst);
        tracing::info!(%subscription, "token refused: unknown subscription or wrong API key");
        return error_response(
            StatusCode::UNAUTHORIZED,
            "Unauthorized",
            "The subscription id or API key is not valid.",
        );
    }
    let token = auth.issue(&emulator.config.subscription, Utc::now());
    ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], token).into_response()
}

/// The control API of rms tokens: `GET /_emulator/rms` and `POST /_emulator/rms/expire-tokens`.
pub fn control_router() -> Router<Arc<Emulator>> {
    Router::new().route("/_emulator/rms", get(view)).route("/_emulator/rms/expire-tokens", post(expire_tokens))
}

async fn view(State(emulator): State<Arc<Emulator>>) -> Json<Value> {
    Json(emulator.rms.view(&emulator.base_url))
}

async fn expire_tokens(State(emulator): State<Arc<Emulator>>) -> Json<Value> {
    let generation = emulator.rms.expire_all();
    tracing::info!(generation, "every rms token issued so far is now expired");
    Json(emulator.rms.view(&emulator.base_url))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn bearer(token: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, HeaderValue::from_str(&format!("Bearer {token}")).expect("header"));
        headers
    }

    #[test]
    fn a_token_is_accepted_until_it_expires_or_every_token_is_expired() {
        let auth = RmsAuth::new("k", Duration::from_secs(60));
        let now = Utc::now();
        let token = auth.issue("sub", now);
        assert_eq!(auth.check(&bearer(&token), "SUB", now), Ok(()));
        let later = now + chrono::Duration::seconds(61);
        assert_eq!(auth.check(&bearer(&token), "sub", later).map_err(|r| r.code), Err("ExpiredAuthenticationToken"));
        auth.expire_all();
        assert_eq!(auth.check(&bearer(&token), "sub", now).map_err(|r| r.code), Err("ExpiredAuthenticationToken"));
        assert_eq!(auth.check(&bearer(&auth.issue("sub", now)), "sub", now), Ok(()), "new tokens work again");
    }

    #[test]
    fn a_missing_forged_or_foreign_token_is_refused() {
        let auth = RmsAuth::new("k", Duration::from_secs(60));
        let now = Utc::now();
        assert_eq!(auth.check(&HeaderMap::new(), "sub", now).map_err(|r| r.code), Err("AuthenticationFailed"));
        let other = RmsAuth::new("k", Duration::from_secs(60)).issue("sub", now);
        assert_eq!(auth.check(&bearer(&other), "sub", now).map_err(|r| r.code), Err("InvalidAuthenticationToken"));
        let token = auth.issue("sub", now);
        assert_eq!(auth.check(&bearer(&token), "another", now).map_err(|r| r.code), Err("InvalidAuthenticationToken"));
        assert_eq!(auth.check(&bearer("x.y"), "sub", now).map_err(|r| r.code), Err("InvalidAuthenticationToken"));
        assert_eq!(auth.view("")["unauthorizedCalls"], 4);
    }
}
