//! Request authorization: Shared Key signing for the Table service and
//! bearer tokens from an `azure_core` credential, cached until near expiry.

use std::sync::Arc;
use std::time::Duration;

use azure_core::credentials::TokenCredential;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use url::Url;

use crate::TableError;

/// OAuth scope of Azure Storage.
pub const STORAGE_SCOPE: &str = "https://storage.azure.com/.default";

/// Refresh a cached token this long before it expires, so a request signed
/// just before expiry does not arrive at the service with a dead token.
const TOKEN_REFRESH_MARGIN: Duration = Duration::from_secs(300);

/// How requests are authorized.
pub(crate) enum Auth {
    SharedKey { account: String, key: Vec<u8> },
    Bearer { credential: Arc<dyn TokenCredential>, cache: tokio::sync::Mutex<Option<CachedToken>> },
}

impl std::fmt::Debug for Auth {
    // Keys and tokens never go to logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Auth::SharedKey { account, .. } => write!(f, "SharedKey({account})"),
            Auth::Bearer { .. } => f.write_str("Bearer"),
        }
    }
}

pub(crate) struct CachedToken {
    token: String,
    /// Unix seconds.
    expires_on: i64,
}

impl Auth {
    /// The `Authorization` header value for a request.
    ///
    /// `date` must be the value sent in `x-ms-date`, `content_type` the exact
    /// `Content-Type` header (or empty).
    pub(crate) async fn authorization(
        &self,
        method: &str,
        url: &Url,
        content_type: &str,
        date: &str,
    ) -> Result<String, TableError> {
        match self {
            Auth::SharedKey { account, key } => {
                let to_sign = string_to_sign(method, "", content_type, date, account, url);
                Ok(format!("SharedKey {account}:{}", sign(key, &to_sign)))
            }
            Auth::Bearer { credential, cache } => {
                let mut cached = cache.lock().await;
                let now = chrono::Utc::now().timestamp();
                let margin = TOKEN_REFRESH_MARGIN.as_secs() as i64;
                if let Some(t) = cached.as_ref() {
                    if t.expires_on - margin > now {
                        return Ok(format!("Bearer {}", t.token));
                    }
                }
                let token = credential.get_token(&[STORAGE_SCOPE], None).await.map_err(|e| {
                    // Identity endpoints fail transiently often enough
                    // (IMDS warming up) that callers should retry.
                    TableError::Transient(format!("cannot get a storage access token: {e}"))
                })?;
                let value = format!("Bearer {}", token.token.secret());
                *cached = Some(CachedToken {
                    token: token.token.secret().to_string(),
                    expires_on: token.expires_on.unix_timestamp(),
                });
                Ok(value)
            }
        }
    }
}

/// Shared Key string-to-sign for the Table service:
/// `VERB\nContent-MD5\nContent-Type\nDate\nCanonicalizedResource`.
///
/// The canonicalized resource is `/{account}{encoded path}` plus `?comp=..`
/// when present. With Azurite's path-style URLs the path already starts with
/// the account name, so it appears twice (`/devstoreaccount1/devstoreaccount1/Tables`),
/// which is what Azurite expects.
pub fn string_to_sign(
    method: &str,
    content_md5: &str,
    content_type: &str,
    date: &str,
    account: &str,
    url: &Url,
) -> String {
    let mut resource = format!("/{account}{}", url.path());
    if let Some((_, comp)) = url.query_pairs().find(|(k, _)| k.eq_ignore_ascii_case("comp")) {
        resource.push_str("?comp=");
        resource.push_str(&comp);
    }
    format!("{method}\n{content_md5}\n{content_type}\n{date}\n{resource}")
}

/// Base64 of HMAC-SHA256 of `to_sign` under `key`.
pub fn sign(key: &[u8], to_sign: &str) -> String {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = match Hmac::<Sha256>::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => unreachable!("HMAC-SHA256 takes keys of any length"),
    };
    mac.update(to_sign.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// The `x-ms-date` value: RFC 1123 in GMT.
pub(crate) fn http_date(now: chrono::DateTime<chrono::Utc>) -> String {
    now.format("%a, %d %b %Y %H:%M:%S GMT").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connection::DEV_ACCOUNT_KEY;

    #[test]
    fn string_to_sign_repeats_the_account_for_path_style_endpoints() {
        let url = Url::parse("http://127.0.0.1:10002/devstoreaccount1/Tables").unwrap();
        let s =
            string_to_sign("POST", "", "application/json", "Mon, 02 Jan 2006 15:04:05 GMT", "devstoreaccount1", &url);
        assert_eq!(
            s,
            "POST\n\napplication/json\nMon, 02 Jan 2006 15:04:05 GMT\n/devstoreaccount1/devstoreaccount1/Tables"
        );
    }

    #[test]
    fn string_to_sign_keeps_only_the_comp_parameter() {
        let url =
            Url::parse("https://acct.table.core.windows.net/mytable?comp=acl&$filter=PartitionKey%20eq%20'a'").unwrap();
        let s = string_to_sign("GET", "", "", "D", "acct", &url);
        assert_eq!(s, "GET\n\n\nD\n/acct/mytable?comp=acl");
        let url = Url::parse("https://acct.table.core.windows.net/mytable()?$filter=x").unwrap();
        assert!(string_to_sign("GET", "", "", "D", "acct", &url).ends_with("\n/acct/mytable()"));
    }

    #[test]
    fn string_to_sign_uses_the_encoded_entity_path() {
        let url = Url::parse("https://acct.table.core.windows.net/t(PartitionKey='a%20b',RowKey='c%27%27d')").unwrap();
        let s = string_to_sign("DELETE", "", "", "D", "acct", &url);
        assert!(s.ends_with("\n/acct/t(PartitionKey='a%20b',RowKey='c%27%27d')"), "{s}");
    }

    /// Vector computed independently with
    /// `printf 'GET\n\n\nMon, 02 Jan 2006 15:04:05 GMT\n/devstoreaccount1/devstoreaccount1/Tables' | openssl dgst -sha256 -mac HMAC -macopt hexkey:<hex of the dev key> -binary | base64`.
    #[test]
    fn signature_matches_a_known_vector() {
        let key = base64::engine::general_purpose::STANDARD.decode(DEV_ACCOUNT_KEY).unwrap();
        let to_sign = "GET\n\n\nMon, 02 Jan 2006 15:04:05 GMT\n/devstoreaccount1/devstoreaccount1/Tables";
        assert_eq!(sign(&key, to_sign), "HHwEEgpUi5iZkjCQqmTa7qD/A4+no0fU0YRKI3WgY5A=");
    }

    /// Signature Azurite 3.37.0 itself calculated for this request (from its debug log).
    #[test]
    fn signature_matches_what_azurite_calculates() {
        let key = base64::engine::general_purpose::STANDARD.decode(DEV_ACCOUNT_KEY).unwrap();
        let url = Url::parse("http://127.0.0.1:47123/devstoreaccount1/Tables").unwrap();
        let to_sign =
            string_to_sign("POST", "", "application/json", "Tue, 24 Nov 2026 03:45:51 GMT", "devstoreaccount1", &url);
        assert_eq!(sign(&key, &to_sign), "i1sWd+kkBs8M4Og4h1/bXXJtQ2yHX6u3Fycy+mvKwP0=");
    }

    /// A credential that counts calls and hands out tokens with a fixed lifetime.
    #[derive(Debug)]
    struct CountingCredential {
        calls: std::sync::atomic::AtomicUsize,
        lifetime_secs: i64,
    }

    #[async_trait::async_trait]
    impl TokenCredential for CountingCredential {
        async fn get_token(
            &self,
            scopes: &[&str],
            _options: Option<azure_core::credentials::TokenRequestOptions<'_>>,
        ) -> azure_core::Result<azure_core::credentials::AccessToken> {
            assert_eq!(scopes, [STORAGE_SCOPE]);
            let n = self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let expires =
                azure_core::time::OffsetDateTime::now_utc() + azure_core::time::Duration::seconds(self.lifetime_secs);
            Ok(azure_core::credentials::AccessToken::new(format!("token{n}"), expires))
        }
    }

    fn bearer(lifetime_secs: i64) -> (Auth, Arc<CountingCredential>) {
        let cred = Arc::new(CountingCredential { calls: Default::default(), lifetime_secs });
        let auth = Auth::Bearer { credential: cred.clone(), cache: tokio::sync::Mutex::new(None) };
        (auth, cred)
    }

    #[tokio::test]
    async fn bearer_tokens_are_cached_until_close_to_expiry() {
        let url = Url::parse("https://acct.table.core.windows.net/Tables").unwrap();
        let (auth, cred) = bearer(3600);
        assert_eq!(auth.authorization("GET", &url, "", "D").await.unwrap(), "Bearer token0");
        assert_eq!(auth.authorization("GET", &url, "", "D").await.unwrap(), "Bearer token0");
        assert_eq!(cred.calls.load(std::sync::atomic::Ordering::SeqCst), 1);

        // A token inside the refresh margin is fetched again on every use.
        let (auth, cred) = bearer(60);
        assert_eq!(auth.authorization("GET", &url, "", "D").await.unwrap(), "Bearer token0");
        assert_eq!(auth.authorization("GET", &url, "", "D").await.unwrap(), "Bearer token1");
        assert_eq!(cred.calls.load(std::sync::atomic::Ordering::SeqCst), 2);
    }

    #[test]
    fn http_dates_are_rfc1123_gmt() {
        let t = chrono::DateTime::parse_from_rfc3339("2006-01-02T15:04:05Z").unwrap().with_timezone(&chrono::Utc);
        assert_eq!(http_date(t), "Mon, 02 Jan 2006 15:04:05 GMT");
    }
}
