//! User-delegation SAS for the storage registered in an MK.IO project, so that in Azure the product copies
//! outputs between projects with its managed identity instead of a configured SAS that someone must rotate.
//!
//! Two steps: Get User Delegation Key (`POST {blob endpoint}/?restype=service&comp=userdelegationkey`,
//! made with Microsoft's `azure_storage_blob` client and a bearer token for `https://storage.azure.com`;
//! the identity needs a role with `generateUserDelegationKey`, such as Storage Blob Data Contributor), then a
//! container SAS signed with that key (HMAC-SHA256 over the service's string-to-sign, [`container_sas`]).
//! Keys are cached per storage account and renewed well before they expire, so a copy costs no extra call.
//!
//! The string-to-sign is the one of service version [`SAS_VERSION`]; the unit tests check it against
//! signatures made by Microsoft's Python SDK (`tests/vectors/user_delegation_sas.py`).

use super::blob::{client_options, storage_error, within};
use super::MediaError;
use azure_core::credentials::TokenCredential;
use azure_core::time::OffsetDateTime;
use azure_storage_blob::models::KeyInfo;
use azure_storage_blob::{BlobServiceClient, BlobServiceClientOptions};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use chrono::{DateTime, Duration, SecondsFormat, Utc};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use url::Url;

/// The service version of the SAS (`sv`), the same as the storage client's `x-ms-version`.
pub const SAS_VERSION: &str = "2026-04-06";

/// How long a requested key is valid (the service allows up to seven days).
const KEY_LIFETIME: Duration = Duration::hours(24);

/// A cached key is renewed when less than this is left: more than any SAS the product signs needs.
const KEY_RENEW_BEFORE: Duration = Duration::hours(12);

/// A user delegation key as the service returned it. The times stay the strings it sent: they are signed.
#[derive(Clone)]
pub struct DelegationKey {
    oid: String,
    tid: String,
    start: String,
    expiry: String,
    expires_at: DateTime<Utc>,
    service: String,
    version: String,
    delegated_user_tid: String,
    value: Vec<u8>,
}

impl std::fmt::Debug for DelegationKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DelegationKey").field("oid", &self.oid).field("expiry", &self.expiry).finish_non_exhaustive()
    }
}

impl DelegationKey {
    /// When the key, and every SAS signed with it, stops working.
    pub fn expires_at(&self) -> DateTime<Utc> {
        self.expires_at
    }
}

fn sas_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// The storage account name a blob endpoint belongs to: the first label of
/// `https://<account>.blob.core.windows.net`, or the last path segment of a path-style endpoint
/// (`http://127.0.0.1:10000/<account>` on a loopback address, as Azurite and the emulator serve).
pub fn storage_account_name(endpoint: &Url) -> Option<String> {
    let path_style = endpoint.host_str().is_some_and(|h| h.parse::<std::net::IpAddr>().is_ok() || h == "localhost");
    let name = if path_style {
        // Azurite serves `/<account>`, the emulator `/blob/<account>`: the account is the last segment.
        endpoint.path_segments().and_then(|mut s| s.rfind(|p| !p.is_empty()))
    } else {
        endpoint.host_str().and_then(|h| h.split('.').next())
    };
    name.filter(|n| !n.is_empty()).map(str::to_owned)
}

/// The query string (without `?`) of a container SAS signed with `key`: permissions `sp` (letters in the
/// service's order, e.g. `rl`, `rcwl`), valid from `start` to `expiry`, HTTPS only when `https_only`.
pub fn container_sas(
    key: &DelegationKey,
    account: &str,
    container: &str,
    permissions: &str,
    start: DateTime<Utc>,
    expiry: DateTime<Utc>,
    https_only: bool,
) -> String {
    let (st, se) = (sas_time(start), sas_time(expiry));
    let protocol = if https_only { "https" } else { "" };
    let resource = format!("/blob/{account}/{container}");
    // Service version 2025-07-05 and later: the key's fields, then the (unused) authorized, unauthorized and
    // correlation ids, the delegated user's tenant and object ids, ip, protocol, version, resource, snapshot
    // time, encryption scope, the (unused) signed request headers and query parameters, then the five
    // response header overrides.
    let fields = [
        permissions,
        &st,
        &se,
        &resource,
        &key.oid,
        &key.tid,
        &key.start,
        &key.expiry,
        &key.service,
        &key.version,
        "",
        "",
        "",
        &key.delegated_user_tid,
        "",
        "",
        protocol,
        SAS_VERSION,
        "c",
        "",
        "",
        "",
        "",
        "",
        "",
        "",
        "",
        "",
    ];
    let mut mac = Hmac::<Sha256>::new_from_slice(&key.value).expect("HMAC takes a key of any length");
    mac.update(fields.join("\n").as_bytes());
    let signature = B64.encode(mac.finalize().into_bytes());
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    query.append_pair("sv", SAS_VERSION).append_pair("sr", "c").append_pair("sp", permissions);
    query.append_pair("st", &st).append_pair("se", &se);
    if https_only {
        query.append_pair("spr", "https");
    }
    query
        .append_pair("skoid", &key.oid)
        .append_pair("sktid", &key.tid)
        .append_pair("skt", &key.start)
        .append_pair("ske", &key.expiry)
        .append_pair("sks", &key.service)
        .append_pair("skv", &key.version);
    if !key.delegated_user_tid.is_empty() {
        query.append_pair("skdutid", &key.delegated_user_tid);
    }
    query.append_pair("sig", &signature);
    query.finish()
}

/// Fetches and caches user delegation keys, one per blob endpoint.
#[derive(Clone)]
pub struct DelegationKeys {
    http: reqwest::Client,
    credential: Option<Arc<dyn TokenCredential>>,
    timeout: std::time::Duration,
    cache: Arc<Mutex<HashMap<String, DelegationKey>>>,
}

impl std::fmt::Debug for DelegationKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DelegationKeys").field("with_identity", &self.credential.is_some()).finish_non_exhaustive()
    }
}

impl DelegationKeys {
    /// Keys requested with `credential` (the managed identity in Azure; none for the local emulator).
    pub fn new(
        http: reqwest::Client,
        credential: Option<Arc<dyn TokenCredential>>,
        timeout: std::time::Duration,
    ) -> DelegationKeys {
        DelegationKeys { http, credential, timeout, cache: Arc::default() }
    }

    /// A key for `endpoint` valid for at least [`KEY_RENEW_BEFORE`] after `now`.
    pub async fn key(&self, endpoint: &Url, now: DateTime<Utc>) -> Result<DelegationKey, MediaError> {
        let cache_key = endpoint.as_str().trim_end_matches('/').to_owned();
        let cached = self.cache.lock().unwrap_or_else(|p| p.into_inner()).get(&cache_key).cloned();
        if let Some(key) = cached.filter(|k| k.expires_at - now > KEY_RENEW_BEFORE) {
            return Ok(key);
        }
        let key = self.fetch(endpoint, now).await?;
        self.cache.lock().unwrap_or_else(|p| p.into_inner()).insert(cache_key, key.clone());
        Ok(key)
    }

    async fn fetch(&self, endpoint: &Url, now: DateTime<Utc>) -> Result<DelegationKey, MediaError> {
        const WHAT: &str = "a user delegation key";
        let options = BlobServiceClientOptions { client_options: client_options(&self.http), ..Default::default() };
        let client = BlobServiceClient::new(endpoint.clone(), self.credential.clone(), Some(options))
            .map_err(|e| storage_error(&e, WHAT))?;
        // Start a little in the past: the service refuses a key that starts after its own clock.
        let at = |t: DateTime<Utc>| OffsetDateTime::from_unix_timestamp(t.timestamp()).ok();
        let info =
            KeyInfo { start: at(now - Duration::minutes(5)), expiry: at(now + KEY_LIFETIME), ..KeyInfo::default() };
        let body = info.try_into().map_err(|e| storage_error(&e, WHAT))?;
        let response = within(self.timeout, WHAT, client.get_user_delegation_key(body, None)).await?;
        let model = response.into_model().map_err(|e| storage_error(&e, WHAT))?;
        let missing = |field: &str| MediaError::Transient(format!("the user delegation key has no {field}"));
        let time = |t: Option<OffsetDateTime>, field: &str| {
            t.and_then(|t| DateTime::from_timestamp(t.unix_timestamp(), 0)).ok_or_else(|| missing(field))
        };
        let expires_at = time(model.signed_expiry, "SignedExpiry")?;
        Ok(DelegationKey {
            oid: model.signed_oid.ok_or_else(|| missing("SignedOid"))?,
            tid: model.signed_tid.ok_or_else(|| missing("SignedTid"))?,
            start: sas_time(time(model.signed_start, "SignedStart")?),
            expiry: sas_time(expires_at),
            expires_at,
            service: model.signed_service.ok_or_else(|| missing("SignedService"))?,
            version: model.signed_version.ok_or_else(|| missing("SignedVersion"))?,
            delegated_user_tid: model.signed_delegated_user_tid.unwrap_or_default(),
            value: model.value.ok_or_else(|| missing("Value"))?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).map(|t| t.with_timezone(&Utc)).expect("a time")
    }

    /// The key of `tests/vectors/user_delegation_sas.py`.
    fn key() -> DelegationKey {
        DelegationKey {
            oid: "11111111-2222-3333-4444-555555555555".into(),
            tid: "66666666-7777-8888-9999-000000000000".into(),
            start: "2026-12-03T00:00:00Z".into(),
            expiry: "2026-12-04T00:00:00Z".into(),
            expires_at: at("2026-12-04T00:00:00Z"),
            service: "b".into(),
            version: "2026-04-06".into(),
            delegated_user_tid: String::new(),
            value: B64.decode("dGhpcyBpcyBhIHRlc3Qga2V5IG9mIDMyIGJ5dGVzISE=").expect("base64"),
        }
    }

    fn signature(query: &str) -> String {
        url::form_urlencoded::parse(query.as_bytes())
            .find(|(k, _)| k == "sig")
            .map(|(_, v)| v.into_owned())
            .expect("sig")
    }

    #[test]
    fn signatures_match_the_ones_microsofts_python_sdk_makes_for_the_same_key() {
        let (start, expiry) = (at("2026-12-03T01:00:00Z"), at("2026-12-03T09:00:00Z"));
        let read = container_sas(&key(), "stvodeast", "mkio-asset-1", "rl", start, expiry, true);
        assert_eq!(signature(&read), "p7anO9T3ewaiUK32DacWWCvCewGS9REn6e30HDsJ298=");
        let write = container_sas(&key(), "stvodeast", "mkio-asset-1", "rcwl", start, expiry, true);
        assert_eq!(signature(&write), "OO+u+O6dBsCcSiboZqnAW2SMzT6bqz8fHQ/sodHYjvU=");
        for field in ["sv=2026-04-06", "sr=c", "sp=rcwl", "spr=https", "skoid=11111111", "sks=b", "skv=2026-04-06"] {
            assert!(write.contains(field), "{field} missing from {write}");
        }
    }

    #[test]
    fn the_account_name_comes_from_the_host_or_from_a_path_style_endpoint() {
        let name = |u: &str| storage_account_name(&Url::parse(u).expect("url"));
        assert_eq!(name("https://stvodeast.blob.core.windows.net").as_deref(), Some("stvodeast"));
        assert_eq!(name("https://stvodeast.blob.core.windows.net/").as_deref(), Some("stvodeast"));
        assert_eq!(name("http://127.0.0.1:10000/devstoreaccount1").as_deref(), Some("devstoreaccount1"));
        assert_eq!(name("http://127.0.0.1:7071/blob/mkwe1").as_deref(), Some("mkwe1"));
    }
}
