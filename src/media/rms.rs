//! Ravnur Media Services' credential: the ARM API of Media Services at the instance's own endpoint, called
//! with a token the instance issues for an API key instead of an Entra ID token.
//!
//! `POST {endpoint}/auth/token` with `{"subscriptionId", "apiKey"}` answers the token as plain text, a JWT
//! whose `exp` says how long it lasts (Ravnur's `RmsApiKeyCredentials` and `rest-api-demo/getToken.js`;
//! docs/providers/rms.md). The token is kept until shortly before `exp`, so calls do not each cost a token
//! request; one without a readable `exp` is kept only briefly. A 401 from the API means the instance no
//! longer takes the token (revoked, expired early, or clocks that disagree): the caller fetches a new one
//! once and retries the call once.
//!
//! The policy is pure (times are passed in) and unit-tested; [`TokenSource`] adds the HTTP and the cache.
//! Neither the key nor a token ever appears in a log line, an error or `Debug` output.

use super::arm::{arm_error, retry_after, send_failed, MediaError};
use crate::config::{AccountConfig, ApiKey};
use base64::Engine;
use chrono::{DateTime, Utc};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::fmt;
use std::time::Duration;
use url::Url;

/// A token is given up at most this long before its `exp`, so a call never leaves with a token that expires
/// on the way. Short-lived tokens give up a tenth of their life instead (see [`usable_until`]).
pub const MAX_REFRESH_MARGIN: Duration = Duration::from_secs(300);
/// How long a token whose `exp` cannot be read is used: long enough to spare a token request per call,
/// short enough that a token the instance drops soon is not relied on for long (a 401 refreshes it anyway).
pub const UNREADABLE_EXP_TTL: Duration = Duration::from_secs(60);

/// The `exp` claim of a JWT, read without verifying the signature (the instance verifies it; the client
/// only needs to know when to ask again). `None` if the token is not a JWT or has no numeric `exp`.
pub fn jwt_exp(token: &str) -> Option<DateTime<Utc>> {
    let payload = token.split('.').nth(1)?;
    // base64url without padding as RFC 7519 says; padded or standard-alphabet payloads are tolerated, as
    // Ravnur's own C# client decodes with the standard alphabet and padding.
    let trimmed = payload.trim_end_matches('=');
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(trimmed)
        .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(trimmed))
        .ok()?;
    let claims: Value = serde_json::from_slice(&bytes).ok()?;
    let exp = match &claims["exp"] {
        Value::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64))?,
        Value::String(s) => s.trim().parse::<i64>().ok()?,
        _ => return None,
    };
    DateTime::from_timestamp(exp, 0)
}

/// Until when a token fetched at `fetched_at` with expiry `exp` is used: up to [`MAX_REFRESH_MARGIN`] (or a
/// tenth of its life, whichever is shorter) before `exp`; [`UNREADABLE_EXP_TTL`] without a readable `exp`;
/// and not beyond the call at hand when it has expired already by this clock.
pub fn usable_until(fetched_at: DateTime<Utc>, exp: Option<DateTime<Utc>>) -> DateTime<Utc> {
    let brief = chrono::Duration::from_std(UNREADABLE_EXP_TTL).unwrap_or_default();
    let Some(exp) = exp else { return fetched_at + brief };
    if exp <= fetched_at {
        return fetched_at;
    }
    let max_margin = chrono::Duration::from_std(MAX_REFRESH_MARGIN).unwrap_or_default();
    let margin = ((exp - fetched_at) / 10).min(max_margin);
    exp - margin
}

/// A token and until when it is used.
#[derive(Clone, PartialEq, Eq)]
pub struct CachedToken {
    value: String,
    usable_until: DateTime<Utc>,
}

impl CachedToken {
    /// A token just fetched at `now`, kept per [`usable_until`].
    pub fn fetched(value: String, now: DateTime<Utc>) -> CachedToken {
        let usable_until = usable_until(now, jwt_exp(&value));
        CachedToken { value, usable_until }
    }

    /// Whether it may still be sent at `now`.
    pub fn is_usable(&self, now: DateTime<Utc>) -> bool {
        now < self.usable_until
    }

    /// Until when it is used.
    pub fn usable_until(&self) -> DateTime<Utc> {
        self.usable_until
    }
}

impl fmt::Debug for CachedToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CachedToken(<redacted>, usable until {})", self.usable_until)
    }
}

/// Whether a token endpoint's answer can be a token at all: base64url, the `.` between JWT segments and
/// padding. An HTML error page or a multi-line body answered with 200 would otherwise be sent as a header
/// and fail later and less clearly (Ravnur's `getToken.js` checks the same).
fn looks_like_token(body: &str) -> bool {
    !body.is_empty()
        && body.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '~' | '+' | '/' | '=' | '-'))
}

/// Where an instance issues tokens: `auth/token` under its endpoint (with a trailing `/` added, as
/// Ravnur's JavaScript client joins them).
pub fn token_url(endpoint: &Url) -> Result<Url, MediaError> {
    let mut base = endpoint.clone();
    if !base.path().ends_with('/') {
        let path = format!("{}/", base.path());
        base.set_path(&path);
    }
    base.join("auth/token").map_err(|e| MediaError::Transient(format!("bad RMS token URL: {e}")))
}

/// One account's token: fetched when needed, shared by its concurrent calls.
pub struct TokenSource {
    account: String,
    region: String,
    url: Url,
    subscription_id: String,
    api_key: ApiKey,
    /// Held while a token is fetched, so concurrent calls that find none wait for one request instead of
    /// each making their own.
    cached: tokio::sync::Mutex<Option<CachedToken>>,
}

impl fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenSource").field("account", &self.account).field("url", &self.url.as_str()).finish()
    }
}

impl TokenSource {
    /// The token source of an rms account; an account without an API key is refused as the account's fault.
    pub fn for_account(account: &AccountConfig) -> Result<TokenSource, MediaError> {
        let api_key = account.api_key.clone().ok_or_else(|| MediaError::Account {
            status: 401,
            code: "NoApiKey".to_owned(),
            message: format!("account {} has no API key configured", account.name),
        })?;
        Ok(TokenSource {
            account: account.name.clone(),
            region: account.region.clone(),
            url: token_url(&account.arm_endpoint)?,
            subscription_id: account.subscription_id.clone(),
            api_key,
            cached: tokio::sync::Mutex::new(None),
        })
    }

    /// A token usable at `now`: the cached one, or a new one.
    pub async fn token(
        &self,
        http: &reqwest::Client,
        timeout: Duration,
        now: DateTime<Utc>,
    ) -> Result<String, MediaError> {
        let mut cached = self.cached.lock().await;
        if let Some(token) = cached.as_ref().filter(|t| t.is_usable(now)) {
            return Ok(token.value.clone());
        }
        let fresh = self.fetch(http, timeout, now).await?;
        let value = fresh.value.clone();
        *cached = Some(fresh);
        Ok(value)
    }

    /// A new token after the instance refused `refused`. If another call has replaced that token meanwhile,
    /// its replacement is used rather than asking again.
    pub async fn refresh(
        &self,
        http: &reqwest::Client,
        timeout: Duration,
        refused: &str,
        now: DateTime<Utc>,
    ) -> Result<String, MediaError> {
        let mut cached = self.cached.lock().await;
        if let Some(token) = cached.as_ref().filter(|t| t.value != refused && t.is_usable(now)) {
            return Ok(token.value.clone());
        }
        *cached = None;
        let fresh = self.fetch(http, timeout, now).await?;
        let value = fresh.value.clone();
        *cached = Some(fresh);
        Ok(value)
    }

    async fn fetch(
        &self,
        http: &reqwest::Client,
        timeout: Duration,
        now: DateTime<Utc>,
    ) -> Result<CachedToken, MediaError> {
        let body = json!({ "subscriptionId": self.subscription_id, "apiKey": self.api_key.expose() });
        // reqwest's error names the URL, never the body, so the key stays out of it.
        let response = http
            .post(self.url.clone())
            .timeout(timeout)
            .json(&body)
            .send()
            .await
            .map_err(|e| send_failed("RMS token request", &e))?;
        let status = response.status();
        let retry_after = retry_after(response.headers());
        let text = response
            .text()
            .await
            .map_err(|e| MediaError::Transient(format!("reading the RMS token answer failed: {e}")))?;
        if status.is_success() {
            let token = text.trim();
            if !looks_like_token(token) {
                return Err(MediaError::Transient(format!(
                    "the RMS token endpoint {} answered {status} with something that is not a token",
                    self.url
                )));
            }
            let cached = CachedToken::fetched(token.to_owned(), now);
            tracing::info!(account = %self.account, region = %self.region, usable_until = %cached.usable_until, "got an RMS token");
            return Ok(cached);
        }
        let (code, message) = arm_error(&text);
        Err(match status {
            StatusCode::TOO_MANY_REQUESTS => MediaError::Throttled { retry_after },
            s if s.is_server_error() || s == StatusCode::REQUEST_TIMEOUT => {
                MediaError::Transient(format!("RMS token endpoint answered {}: {code}: {message}", s.as_u16()))
            }
            // Any other refusal is about this account's key or endpoint, never about the job at hand: the
            // account is at fault and another account may take the work.
            s => MediaError::Account {
                status: s.as_u16(),
                code,
                message: format!("the RMS token endpoint refused the API key from {}: {message}", self.api_key.setting),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(secs, 0).unwrap_or_default()
    }

    fn jwt(claims: &Value) -> String {
        let b64 = |v: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
        format!("{}.{}.c2ln", b64(br#"{"alg":"HS256","typ":"JWT"}"#), b64(claims.to_string().as_bytes()))
    }

    #[test]
    fn the_exp_of_a_jwt_is_read_without_verifying_it() {
        assert_eq!(jwt_exp(&jwt(&json!({"sub": "s", "exp": 1_900_000_000}))), Some(at(1_900_000_000)));
        assert_eq!(jwt_exp(&jwt(&json!({"exp": "1900000000"}))), Some(at(1_900_000_000)), "a numeric string");
        assert_eq!(jwt_exp(&jwt(&json!({"exp": 1_900_000_000.7}))), Some(at(1_900_000_000)));
    }

    #[test]
    fn a_padded_payload_in_the_standard_alphabet_is_read_too() {
        let payload = base64::engine::general_purpose::STANDARD.encode(br#"{"exp":1900000000,"n":"??>"}"#);
        assert!(payload.contains('/') || payload.contains('+') || payload.ends_with('='), "{payload}");
        assert_eq!(jwt_exp(&format!("e30.{payload}.sig")), Some(at(1_900_000_000)));
    }

    #[test]
    fn tokens_without_a_readable_exp_have_none() {
        for token in ["", "opaque-token", "a.b.c", &jwt(&json!({"sub": "s"})), &jwt(&json!({"exp": null})), "a.!!!.c"] {
            assert_eq!(jwt_exp(token), None, "{token:?}");
        }
    }

    #[test]
    fn a_token_is_used_until_shortly_before_it_expires() {
        let now = at(1_000_000);
        // An hour-long token is given up five minutes early; a 100 s one, ten seconds early.
        assert_eq!(usable_until(now, Some(at(1_003_600))), at(1_003_300));
        assert_eq!(usable_until(now, Some(at(1_000_100))), at(1_000_090));
        let cached = CachedToken::fetched(jwt(&json!({"exp": 1_003_600})), now);
        assert!(cached.is_usable(at(1_003_299)));
        assert!(!cached.is_usable(at(1_003_300)));
    }

    #[test]
    fn a_token_without_a_readable_exp_is_kept_briefly_and_an_expired_one_not_at_all() {
        let now = at(1_000_000);
        assert_eq!(usable_until(now, None), at(1_000_060));
        let opaque = CachedToken::fetched("opaque-token".to_owned(), now);
        assert!(opaque.is_usable(at(1_000_059)) && !opaque.is_usable(at(1_000_060)));
        let expired = CachedToken::fetched(jwt(&json!({"exp": 999_000})), now);
        assert!(!expired.is_usable(now), "an expired token is never reused");
    }

    #[test]
    fn only_token_shaped_answers_are_taken_as_tokens() {
        assert!(looks_like_token(&jwt(&json!({"exp": 1}))));
        assert!(!looks_like_token(""));
        assert!(!looks_like_token("<html><body>Bad gateway</body></html>"));
        assert!(!looks_like_token("line one\nline two"));
    }

    #[test]
    fn the_token_endpoint_is_auth_token_under_the_instance_endpoint() {
        let url = |s: &str| token_url(&Url::parse(s).expect("url")).expect("token url").to_string();
        assert_eq!(url("https://rms.abc.ravnur.net"), "https://rms.abc.ravnur.net/auth/token");
        assert_eq!(url("https://rms.abc.ravnur.net/"), "https://rms.abc.ravnur.net/auth/token");
        assert_eq!(url("http://127.0.0.1:7090/rms"), "http://127.0.0.1:7090/rms/auth/token");
    }

    #[test]
    fn neither_the_key_nor_a_token_prints() {
        let token = CachedToken::fetched("SECRETTOKEN".to_owned(), at(0));
        assert!(!format!("{token:?}").contains("SECRETTOKEN"));
        let key = ApiKey::new("RMS_API_KEY_X", "SECRETKEY");
        assert!(!format!("{key:?}").contains("SECRETKEY"));
    }
}
