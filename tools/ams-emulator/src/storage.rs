//! The blob storage account behind each Media Services account: containers,
//! block blobs, asynchronous server-side copies, and service SAS signing and
//! checking. HTTP lives in `blob`; this module knows nothing about it.
//!
//! SAS tokens are signed the way Azure signs service and account SAS (version
//! 2020-12-06 layout of the string-to-sign, HMAC-SHA256 with a storage key), so a
//! token is bound to its permissions, expiry and container (or account), and any
//! change to them breaks the signature.

use std::collections::BTreeMap;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use chrono::{DateTime, NaiveDate, Utc};
use hmac::{Hmac, Mac};
use serde::Serialize;
use sha2::{Digest, Sha256};
use thiserror::Error;

/// The Entra object and tenant ids in the user delegation keys the emulator issues (one identity: the product's).
pub const DELEGATION_OID: &str = "00000000-0000-0000-0000-0000000000a1";
/// See [`DELEGATION_OID`].
pub const DELEGATION_TID: &str = "00000000-0000-0000-0000-0000000000b2";

/// A user delegation key, its times as the client asked for them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserDelegationKey {
    /// `SignedOid`.
    pub oid: String,
    /// `SignedTid`.
    pub tid: String,
    /// `SignedStart`.
    pub start: String,
    /// `SignedExpiry`.
    pub expiry: String,
    /// `SignedService`.
    pub service: String,
    /// `SignedVersion`.
    pub version: String,
    /// `Value`, base64.
    pub value: String,
}

/// The `sv` the emulator puts into the SAS tokens it issues.
pub const SAS_VERSION: &str = "2022-11-02";

/// One permission a blob operation needs (the SAS `sp` letters).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permission {
    /// `r`: read a blob or use it as a copy source.
    Read,
    /// `a`: add (append blobs only; accepted for completeness).
    Add,
    /// `c`: create a new blob.
    Create,
    /// `w`: write or overwrite a blob.
    Write,
    /// `d`: delete a blob.
    Delete,
    /// `l`: list the container.
    List,
}

impl Permission {
    fn letter(self) -> char {
        match self {
            Permission::Read => 'r',
            Permission::Add => 'a',
            Permission::Create => 'c',
            Permission::Write => 'w',
            Permission::Delete => 'd',
            Permission::List => 'l',
        }
    }
}

/// Why a SAS does not authorise a request; rendered as Azure's XML error.
#[derive(Debug, Error, PartialEq)]
pub enum SasError {
    /// No `sig`, a malformed field, or a signature that does not match.
    #[error("{0}")]
    AuthenticationFailed(String),
    /// A valid SAS that lacks the permission the operation needs.
    #[error("This request is not authorized to perform this operation using this permission.")]
    PermissionMismatch,
    /// A valid account SAS that does not cover the blob service or the resource type (`o` for blobs, `c` for
    /// containers) the operation touches.
    #[error("This request is not authorized to perform this operation using this resource type.")]
    ResourceTypeMismatch,
}

/// Status of a server-side copy, as `x-ms-copy-status` spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CopyStatus {
    /// Bytes not there yet.
    Pending,
    /// Done.
    Success,
}

impl CopyStatus {
    /// Header value.
    pub fn as_str(self) -> &'static str {
        match self {
            CopyStatus::Pending => "pending",
            CopyStatus::Success => "success",
        }
    }
}

/// Copy properties a blob keeps after being the target of Copy Blob.
#[derive(Debug, Clone)]
pub struct CopyInfo {
    /// `x-ms-copy-id`.
    pub id: String,
    /// `x-ms-copy-status`.
    pub status: CopyStatus,
    /// `x-ms-copy-source` (the source URL without its SAS).
    pub source: String,
    /// Bytes to copy.
    pub total: usize,
    /// Set on success.
    pub completion_time: Option<DateTime<Utc>>,
}

impl CopyInfo {
    /// `x-ms-copy-progress`: `copied/total`.
    pub fn progress(&self) -> String {
        let done = if self.status == CopyStatus::Success { self.total } else { 0 };
        format!("{done}/{}", self.total)
    }
}

/// A block blob.
#[derive(Debug, Clone)]
pub struct Blob {
    /// Content.
    pub bytes: Vec<u8>,
    /// `Content-Type`.
    pub content_type: String,
    /// `x-ms-creation-time`.
    pub created: DateTime<Utc>,
    /// `Last-Modified`.
    pub last_modified: DateTime<Utc>,
    /// `ETag`, quoted.
    pub etag: String,
    /// Set when the blob is (or was) a copy target.
    pub copy: Option<CopyInfo>,
}

/// A container and its blobs, keyed by exact name (blob names are case-sensitive).
#[derive(Debug, Clone, Default)]
pub struct Container {
    /// Blobs by name.
    pub blobs: BTreeMap<String, Blob>,
    /// Creation time.
    pub created: Option<DateTime<Utc>>,
}

/// A copy waiting for its bytes to land.
#[derive(Debug, Clone)]
pub struct PendingCopy {
    /// Destination container.
    pub container: String,
    /// Destination blob.
    pub blob: String,
    /// Copy id, so a blob overwritten meanwhile is left alone.
    pub id: String,
    /// Source bytes, read when the copy started.
    pub bytes: Vec<u8>,
    /// Source content type.
    pub content_type: String,
    /// Real time left.
    pub remaining: Duration,
}

/// Copy counters shown by the control API.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CopyCounters {
    /// Copy Blob requests accepted with this account as destination.
    pub copies: u64,
    /// Of these, the ones whose bytes have landed.
    pub copies_completed: u64,
    /// Bytes copied into this account.
    pub copied_bytes: u64,
}

/// One storage account.
#[derive(Debug, Clone)]
pub struct Storage {
    /// Storage account name (lowercase).
    pub name: String,
    /// The two account keys; SAS tokens signed with either are accepted.
    pub keys: [Vec<u8>; 2],
    /// Containers by name.
    pub containers: BTreeMap<String, Container>,
    /// Copies in flight.
    pub pending: Vec<PendingCopy>,
    /// Copy counters.
    pub counters: CopyCounters,
    etag_counter: u64,
}

impl Storage {
    /// A storage account whose keys are derived from its name, so SAS tokens survive restarts.
    pub fn new(name: &str) -> Storage {
        let key = |n: u8| Sha256::digest(format!("ams-emulator/storage/{name}/key{n}").as_bytes()).to_vec();
        Storage {
            name: name.to_string(),
            keys: [key(1), key(2)],
            containers: BTreeMap::new(),
            pending: Vec::new(),
            counters: CopyCounters::default(),
            etag_counter: 0,
        }
    }

    /// A fresh ETag: unique per storage account, shaped like Azure's.
    pub fn next_etag(&mut self, now: &DateTime<Utc>) -> String {
        self.etag_counter += 1;
        let micros = u64::try_from(now.timestamp_micros()).unwrap_or_default();
        format!("\"0x8D{:X}{:04X}\"", micros, self.etag_counter & 0xFFFF)
    }

    /// Creates `container` if it does not exist yet.
    pub fn ensure_container(&mut self, container: &str, now: DateTime<Utc>) -> &mut Container {
        self.containers
            .entry(container.to_string())
            .or_insert_with(|| Container { blobs: BTreeMap::new(), created: Some(now) })
    }

    /// Writes a blob (creating the container if needed), replacing any previous one.
    pub fn put_blob(&mut self, container: &str, name: &str, bytes: Vec<u8>, content_type: &str, now: DateTime<Utc>) {
        let etag = self.next_etag(&now);
        let c = self.ensure_container(container, now);
        let created = c.blobs.get(name).map_or(now, |b| b.created);
        c.blobs.insert(
            name.to_string(),
            Blob { bytes, content_type: content_type.to_string(), created, last_modified: now, etag, copy: None },
        );
    }

    /// Lands the copies whose time is up; `dt` is real time since the last call.
    pub fn advance_copies(&mut self, dt: Duration, now: DateTime<Utc>) {
        let mut landed = Vec::new();
        self.pending.retain_mut(|p| {
            p.remaining = p.remaining.saturating_sub(dt);
            if p.remaining.is_zero() {
                landed.push(p.clone());
                false
            } else {
                true
            }
        });
        for p in landed {
            let etag = self.next_etag(&now);
            let Some(blob) = self.containers.get_mut(&p.container).and_then(|c| c.blobs.get_mut(&p.blob)) else {
                continue;
            };
            let Some(copy) = blob.copy.as_mut().filter(|c| c.id == p.id) else {
                continue;
            };
            copy.status = CopyStatus::Success;
            copy.completion_time = Some(now);
            blob.bytes = p.bytes;
            blob.content_type = p.content_type;
            blob.last_modified = now;
            blob.etag = etag;
            self.counters.copies_completed += 1;
        }
    }

    /// A container SAS query string (without `?`) signed with key `key_index`.
    pub fn container_sas(
        &self,
        container: &str,
        permissions: &str,
        expiry: &DateTime<Utc>,
        key_index: usize,
    ) -> String {
        let fields = SasFields {
            permissions: permissions.to_string(),
            start: String::new(),
            expiry: expiry.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
            version: SAS_VERSION.to_string(),
            resource: "c".to_string(),
        };
        let key = &self.keys[key_index.min(1)];
        let sig = fields.sign(key, &self.canonical_resource(container, None));
        let mut q = url::form_urlencoded::Serializer::new(String::new());
        q.append_pair("sv", &fields.version)
            .append_pair("se", &fields.expiry)
            .append_pair("sr", &fields.resource)
            .append_pair("sp", &fields.permissions)
            .append_pair("sig", &sig);
        q.finish()
    }

    fn canonical_resource(&self, container: &str, blob: Option<&str>) -> String {
        match blob {
            Some(b) => format!("/blob/{}/{container}/{b}", self.name),
            None => format!("/blob/{}/{container}", self.name),
        }
    }

    /// An account SAS query string (without `?`) for the blob service, signed with the first key: what an
    /// operator would configure a client with to reach every container of the account. The expiry is fixed
    /// and far away and the keys derive from the name, so the token is the same on every run.
    pub fn account_sas(&self, permissions: &str, expiry: &str) -> String {
        let fields = AccountSasFields {
            permissions: permissions.to_string(),
            services: "b".to_string(),
            resource_types: "sco".to_string(),
            start: String::new(),
            expiry: expiry.to_string(),
            ip: String::new(),
            protocol: String::new(),
            version: SAS_VERSION.to_string(),
        };
        let sig = sign_with(&self.keys[0], &fields.string_to_sign(&self.name));
        let mut q = url::form_urlencoded::Serializer::new(String::new());
        q.append_pair("sv", &fields.version)
            .append_pair("ss", &fields.services)
            .append_pair("srt", &fields.resource_types)
            .append_pair("sp", &fields.permissions)
            .append_pair("se", &fields.expiry)
            .append_pair("sig", &sig);
        q.finish()
    }

    /// A user delegation key (Get User Delegation Key) valid from `start` to `expiry`, for service version
    /// `version`. The key's value derives from the account key and the key's own fields, so a SAS signed
    /// with it can be checked later without remembering the key, as the service does.
    pub fn user_delegation_key(&self, start: &str, expiry: &str, version: &str) -> UserDelegationKey {
        let mut key = UserDelegationKey {
            oid: DELEGATION_OID.to_owned(),
            tid: DELEGATION_TID.to_owned(),
            start: start.to_owned(),
            expiry: expiry.to_owned(),
            service: "b".to_owned(),
            version: version.to_owned(),
            value: String::new(),
        };
        key.value = B64.encode(self.delegation_key_value(&key));
        key
    }

    fn delegation_key_value(&self, key: &UserDelegationKey) -> Vec<u8> {
        let text = ["userdelegationkey", &key.oid, &key.tid, &key.start, &key.expiry, &key.service, &key.version];
        let mut mac = mac_for(&self.keys[0]);
        mac.update(text.join("\n").as_bytes());
        mac.finalize().into_bytes().to_vec()
    }

    /// Checks a user-delegation service SAS (one with `skoid`): the key it names must be one this account
    /// issues (the same derivation), valid now and for the blob service, and the signature must be over the
    /// string-to-sign of service version 2025-07-05 and later.
    fn check_user_delegation(
        &self,
        get: &dyn Fn(&str) -> Option<String>,
        canonical_resource: &str,
        now: &DateTime<Utc>,
    ) -> Result<(), SasError> {
        let fail = |m: &str| SasError::AuthenticationFailed(m.to_string());
        let field = |k: &str| get(k).ok_or_else(|| fail(&format!("Signature fields not well formed: {k} is missing.")));
        let version = field("sv")?;
        if version.as_str() < "2025-07-05" {
            return Err(fail("The emulator checks user delegation SAS of version 2025-07-05 and later only."));
        }
        let key = UserDelegationKey {
            oid: field("skoid")?,
            tid: field("sktid")?,
            start: field("skt")?,
            expiry: field("ske")?,
            service: field("sks")?,
            version: field("skv")?,
            value: String::new(),
        };
        if !key.service.contains('b') {
            return Err(fail("The user delegation key is not for the blob service (sks)."));
        }
        let key_start = parse_sas_time(&key.start).ok_or_else(|| fail("Signature fields not well formed: skt."))?;
        let key_expiry = parse_sas_time(&key.expiry).ok_or_else(|| fail("Signature fields not well formed: ske."))?;
        if *now < key_start || *now >= key_expiry {
            return Err(fail("The user delegation key is not valid at the current time."));
        }
        verify_user_delegation(get, canonical_resource, &self.delegation_key_value(&key))
    }

    /// Checks that `query` carries a SAS of this account that grants `needed`
    /// (any one of them) on `container` (and `blob`, for blob-scoped tokens) at `now`.
    ///
    /// Service SAS (`sr=c` or `sr=b`) and account SAS (`ss`/`srt`, no `sr`) are both accepted. An account
    /// SAS must name the blob service and the resource type the call touches: `o` for a blob, `c` for a
    /// container-level call (`blob` is `None`).
    pub fn check_sas(
        &self,
        query: &[(String, String)],
        container: &str,
        blob: Option<&str>,
        needed: &[Permission],
        now: &DateTime<Utc>,
    ) -> Result<(), SasError> {
        let get = |k: &str| query.iter().find(|(qk, _)| qk == k).map(|(_, v)| v.as_str());
        let fail = |m: &str| SasError::AuthenticationFailed(m.to_string());
        let sig = get("sig").ok_or_else(|| fail("The request carries no shared access signature (sig)."))?;
        let permissions = get("sp").unwrap_or("").to_string();
        let start = get("st").unwrap_or("").to_string();
        let expiry = get("se").ok_or_else(|| fail("Signature fields not well formed: se is missing."))?.to_string();
        let version = get("sv").ok_or_else(|| fail("Signature fields not well formed: sv is missing."))?.to_string();
        match (get("sr"), get("ss")) {
            (None, Some(services)) => {
                let resource_types =
                    get("srt").ok_or_else(|| fail("Signature fields not well formed: srt is missing."))?;
                let fields = AccountSasFields {
                    permissions: permissions.clone(),
                    services: services.to_string(),
                    resource_types: resource_types.to_string(),
                    start: start.clone(),
                    expiry: expiry.clone(),
                    ip: get("sip").unwrap_or("").to_string(),
                    protocol: get("spr").unwrap_or("").to_string(),
                    version: version.clone(),
                };
                self.verify(sig, &fields.string_to_sign(&self.name))?;
                if !services.contains('b') {
                    return Err(SasError::ResourceTypeMismatch);
                }
                let needed_type = if blob.is_some() { 'o' } else { 'c' };
                if !resource_types.contains(needed_type) {
                    return Err(SasError::ResourceTypeMismatch);
                }
            }
            (sr, _) => {
                let fields = SasFields {
                    permissions: permissions.clone(),
                    start: start.clone(),
                    expiry: expiry.clone(),
                    version,
                    resource: sr.ok_or_else(|| fail("Signature fields not well formed: sr is missing."))?.to_string(),
                };
                let resource = match fields.resource.as_str() {
                    "c" => self.canonical_resource(container, None),
                    "b" => self.canonical_resource(container, Some(blob.unwrap_or(""))),
                    other => {
                        return Err(fail(&format!("Signature fields not well formed: sr={other} is not supported.")))
                    }
                };
                if get("skoid").is_some() {
                    let owned = |k: &str| get(k).map(str::to_owned);
                    self.check_user_delegation(&owned, &resource, now)?;
                } else {
                    self.verify(sig, &fields.string_to_sign(&resource))?;
                }
            }
        }
        let expiry_at = parse_sas_time(&expiry).ok_or_else(|| fail("Signature fields not well formed: se."))?;
        let start_at = match start.as_str() {
            "" => None,
            s => Some(parse_sas_time(s).ok_or_else(|| fail("Signature fields not well formed: st."))?),
        };
        if *now >= expiry_at || start_at.is_some_and(|s| *now < s) {
            return Err(fail(&format!(
                "Signed expiry time [{}] must be after the current time [{}]: the signature is not valid in this time frame.",
                expiry,
                now.format("%a, %d %b %Y %H:%M:%S GMT")
            )));
        }
        if !permissions.chars().all(|c| "racwdxyltmeopi".contains(c)) {
            return Err(fail("Signature fields not well formed: sp has unknown permissions."));
        }
        if needed.iter().any(|p| permissions.contains(p.letter())) {
            Ok(())
        } else {
            Err(SasError::PermissionMismatch)
        }
    }

    /// Checks `sig` against `string_to_sign` with either key.
    fn verify(&self, sig: &str, string_to_sign: &str) -> Result<(), SasError> {
        let fail = |m: &str| SasError::AuthenticationFailed(m.to_string());
        let given = B64.decode(sig).map_err(|_| fail("Signature fields not well formed: sig is not base64."))?;
        let matches = self.keys.iter().any(|key| {
            let mut mac = mac_for(key);
            mac.update(string_to_sign.as_bytes());
            mac.verify_slice(&given).is_ok()
        });
        if matches {
            Ok(())
        } else {
            Err(fail(&format!(
                "Signature did not match. String to sign used was {}",
                string_to_sign.replace('\n', "\\n")
            )))
        }
    }
}

type HmacSha256 = Hmac<Sha256>;

fn mac_for(key: &[u8]) -> HmacSha256 {
    // HMAC takes keys of any length, so this cannot fail; the fallback keeps the signature path panic-free.
    HmacSha256::new_from_slice(key).unwrap_or_else(|_| HmacSha256::new(&Default::default()))
}

/// Checks the `sig` of a user-delegation service SAS against `key_value` over the string-to-sign of service
/// version 2025-07-05 and later (checked against signatures Microsoft's Python SDK makes, see the tests).
fn verify_user_delegation(
    get: &dyn Fn(&str) -> Option<String>,
    canonical_resource: &str,
    key_value: &[u8],
) -> Result<(), SasError> {
    let fail = |m: &str| SasError::AuthenticationFailed(m.to_string());
    let opt = |k: &str| get(k).unwrap_or_default();
    let string_to_sign = [
        opt("sp"),
        opt("st"),
        opt("se"),
        canonical_resource.to_owned(),
        opt("skoid"),
        opt("sktid"),
        opt("skt"),
        opt("ske"),
        opt("sks"),
        opt("skv"),
        opt("saoid"),
        opt("suoid"),
        opt("scid"),
        opt("skdutid"),
        opt("sduoid"),
        opt("sip"),
        opt("spr"),
        opt("sv"),
        opt("sr"),
        String::new(),
        opt("ses"),
        opt("srh"),
        opt("srq"),
        opt("rscc"),
        opt("rscd"),
        opt("rsce"),
        opt("rscl"),
        opt("rsct"),
    ]
    .join("\n");
    let given = B64.decode(opt("sig")).map_err(|_| fail("Signature fields not well formed: sig is not base64."))?;
    let mut mac = mac_for(key_value);
    mac.update(string_to_sign.as_bytes());
    mac.verify_slice(&given)
        .map_err(|_| fail("Signature did not match. The user delegation SAS was not signed with the key it names."))
}

/// The signed fields of a service SAS the emulator uses; the others are empty.
struct SasFields {
    permissions: String,
    start: String,
    expiry: String,
    version: String,
    resource: String,
}

impl SasFields {
    /// Service SAS string-to-sign, version 2020-12-06 layout: sp, st, se,
    /// canonicalized resource, si, sip, spr, sv, sr, snapshot time,
    /// encryption scope and the five rsc* overrides.
    fn string_to_sign(&self, canonical_resource: &str) -> String {
        [
            self.permissions.as_str(),
            self.start.as_str(),
            self.expiry.as_str(),
            canonical_resource,
            "",
            "",
            "",
            self.version.as_str(),
            self.resource.as_str(),
            "",
            "",
            "",
            "",
            "",
            "",
            "",
        ]
        .join("\n")
    }

    fn sign(&self, key: &[u8], canonical_resource: &str) -> String {
        sign_with(key, &self.string_to_sign(canonical_resource))
    }
}

/// Base64 HMAC-SHA256 of `text` with `key`.
fn sign_with(key: &[u8], text: &str) -> String {
    let mut mac = mac_for(key);
    mac.update(text.as_bytes());
    B64.encode(mac.finalize().into_bytes())
}

/// The signed fields of an account SAS.
struct AccountSasFields {
    permissions: String,
    services: String,
    resource_types: String,
    start: String,
    expiry: String,
    ip: String,
    protocol: String,
    version: String,
}

impl AccountSasFields {
    /// Account SAS string-to-sign, version 2020-12-06 layout: account name, sp, ss, srt, st, se, sip, spr,
    /// sv, encryption scope, and a final newline.
    fn string_to_sign(&self, account: &str) -> String {
        [
            account,
            self.permissions.as_str(),
            self.services.as_str(),
            self.resource_types.as_str(),
            self.start.as_str(),
            self.expiry.as_str(),
            self.ip.as_str(),
            self.protocol.as_str(),
            self.version.as_str(),
            "",
            "",
        ]
        .join("\n")
    }
}

/// SAS times are ISO 8601 UTC, with or without seconds, or a bare date.
fn parse_sas_time(s: &str) -> Option<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    if let Ok(t) = chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%MZ") {
        return Some(t.and_utc());
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d").ok().and_then(|d| d.and_hms_opt(0, 0, 0)).map(|t| t.and_utc())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(sas: &str) -> Vec<(String, String)> {
        url::form_urlencoded::parse(sas.as_bytes()).into_owned().collect()
    }

    /// A SAS Microsoft's Python SDK (azure-storage-blob 12.31.1) signed for a known key: the handler's
    /// `tests/vectors/user_delegation_sas.py` prints it.
    const SDK_SAS: &str = "st=2026-12-03T01%3A00%3A00Z&se=2026-12-03T09%3A00%3A00Z&sp=rcwl&spr=https&sv=2026-04-06&sr=c&skoid=11111111-2222-3333-4444-555555555555&sktid=66666666-7777-8888-9999-000000000000&skt=2026-12-03T00%3A00%3A00Z&ske=2026-12-04T00%3A00%3A00Z&sks=b&skv=2026-04-06&sig=OO%2Bu%2BO6dBsCcSiboZqnAW2SMzT6bqz8fHQ/sodHYjvU%3D";

    fn lookup(q: &[(String, String)]) -> impl Fn(&str) -> Option<String> + '_ {
        move |k| q.iter().find(|(qk, _)| qk == k).map(|(_, v)| v.clone())
    }

    #[test]
    fn the_user_delegation_string_to_sign_is_the_one_microsofts_sdk_signs() {
        let key = B64.decode("dGhpcyBpcyBhIHRlc3Qga2V5IG9mIDMyIGJ5dGVzISE=").expect("base64");
        let q = query(SDK_SAS);
        assert_eq!(verify_user_delegation(&lookup(&q), "/blob/stvodeast/mkio-asset-1", &key), Ok(()));
        let other = verify_user_delegation(&lookup(&q), "/blob/stvodeast/another", &key);
        assert!(other.is_err(), "the signature binds the container");
        let mut widened = q.clone();
        widened.iter_mut().filter(|(k, _)| k == "sp").for_each(|(_, v)| *v = "racwdl".into());
        assert!(verify_user_delegation(&lookup(&widened), "/blob/stvodeast/mkio-asset-1", &key).is_err());
    }

    /// A user-delegation container SAS signed as a client signs it, with the key the account issued.
    fn delegated_sas(s: &Storage, key: &UserDelegationKey, container: &str, sp: &str, se: &str) -> String {
        let mut q = url::form_urlencoded::Serializer::new(String::new());
        q.append_pair("sv", "2026-04-06").append_pair("sr", "c").append_pair("sp", sp).append_pair("se", se);
        q.append_pair("skoid", &key.oid).append_pair("sktid", &key.tid).append_pair("skt", &key.start);
        q.append_pair("ske", &key.expiry).append_pair("sks", &key.service).append_pair("skv", &key.version);
        let unsigned = q.finish();
        let pairs = query(&unsigned);
        let fields = lookup(&pairs);
        let opt = |k: &str| fields(k).unwrap_or_default();
        let resource = s.canonical_resource(container, None);
        let mut parts = vec![opt("sp"), String::new(), opt("se"), resource];
        parts.extend(["skoid", "sktid", "skt", "ske", "sks", "skv"].map(opt));
        parts.extend(std::iter::repeat_n(String::new(), 7));
        parts.extend([opt("sv"), opt("sr")]);
        parts.extend(std::iter::repeat_n(String::new(), 9));
        let value = B64.decode(&key.value).expect("base64");
        let sig: String =
            url::form_urlencoded::byte_serialize(sign_with(&value, &parts.join("\n")).as_bytes()).collect();
        format!("{unsigned}&sig={sig}")
    }

    #[test]
    fn a_user_delegation_sas_works_while_its_key_is_valid_and_only_with_a_key_the_account_issued() {
        let s = Storage::new("mkwestore");
        let now = Utc::now();
        let t = |h: i64| (now + chrono::Duration::hours(h)).format("%Y-%m-%dT%H:%M:%SZ").to_string();
        let key = s.user_delegation_key(&t(-1), &t(24), "2026-04-06");
        let sas = query(&delegated_sas(&s, &key, "c1", "rl", &t(8)));
        assert_eq!(s.check_sas(&sas, "c1", None, &[Permission::List], &now), Ok(()));
        assert_eq!(s.check_sas(&sas, "c1", None, &[Permission::Write], &now), Err(SasError::PermissionMismatch));
        assert!(s.check_sas(&sas, "c2", None, &[Permission::List], &now).is_err(), "bound to its container");
        let later = now + chrono::Duration::hours(25);
        assert!(s.check_sas(&sas, "c1", None, &[Permission::List], &later).is_err(), "not after the key expires");
        let forged = UserDelegationKey { value: B64.encode([7u8; 32]), ..key.clone() };
        let sas = query(&delegated_sas(&s, &forged, "c1", "rl", &t(8)));
        assert!(s.check_sas(&sas, "c1", None, &[Permission::List], &now).is_err(), "a key it did not issue");
        let elsewhere = Storage::new("otherstore").user_delegation_key(&t(-1), &t(24), "2026-04-06");
        let sas = query(&delegated_sas(&s, &elsewhere, "c1", "rl", &t(8)));
        assert!(s.check_sas(&sas, "c1", None, &[Permission::List], &now).is_err(), "another account's key");
    }

    #[test]
    fn a_container_sas_grants_its_permissions_until_it_expires() {
        let s = Storage::new("eaststorage");
        let now = Utc::now();
        let sas = query(&s.container_sas("c1", "rl", &(now + chrono::Duration::hours(1)), 0));
        assert_eq!(s.check_sas(&sas, "c1", Some("x"), &[Permission::Read], &now), Ok(()));
        assert_eq!(s.check_sas(&sas, "c1", None, &[Permission::List], &now), Ok(()));
        assert_eq!(
            s.check_sas(&sas, "c1", Some("x"), &[Permission::Write, Permission::Create], &now),
            Err(SasError::PermissionMismatch)
        );
        let later = now + chrono::Duration::hours(2);
        assert!(matches!(
            s.check_sas(&sas, "c1", None, &[Permission::List], &later),
            Err(SasError::AuthenticationFailed(_))
        ));
    }

    #[test]
    fn a_sas_is_bound_to_its_container_account_and_fields() {
        let s = Storage::new("eaststorage");
        let now = Utc::now();
        let raw = s.container_sas("c1", "rl", &(now + chrono::Duration::hours(1)), 1);
        let auth_failed = |r| matches!(r, Err(SasError::AuthenticationFailed(_)));
        assert!(auth_failed(s.check_sas(&query(&raw), "c2", None, &[Permission::List], &now)));
        assert!(auth_failed(Storage::new("weststorage").check_sas(
            &query(&raw),
            "c1",
            None,
            &[Permission::List],
            &now
        )));
        let widened = query(&raw.replace("sp=rl", "sp=rwl"));
        assert!(auth_failed(s.check_sas(&widened, "c1", None, &[Permission::Write], &now)));
        let unsigned: Vec<(String, String)> = query(&raw).into_iter().filter(|(k, _)| k != "sig").collect();
        assert!(auth_failed(s.check_sas(&unsigned, "c1", None, &[Permission::List], &now)));
    }

    #[test]
    fn an_account_sas_reaches_every_container_for_the_resource_types_it_names() {
        let s = Storage::new("eaststorage");
        let now = Utc::now();
        let sas = query(&s.account_sas("rl", "2099-12-31T00:00:00Z"));
        assert_eq!(s.check_sas(&sas, "any", Some("x/y.mp4"), &[Permission::Read], &now), Ok(()));
        assert_eq!(s.check_sas(&sas, "other", None, &[Permission::List], &now), Ok(()));
        assert_eq!(s.check_sas(&sas, "any", Some("x"), &[Permission::Write], &now), Err(SasError::PermissionMismatch));
        assert!(matches!(
            Storage::new("weststorage").check_sas(&sas, "any", None, &[Permission::List], &now),
            Err(SasError::AuthenticationFailed(_))
        ));
        let objects_only: Vec<(String, String)> = sas
            .iter()
            .map(|(k, v)| if k == "srt" { (k.clone(), "o".into()) } else { (k.clone(), v.clone()) })
            .collect();
        assert!(
            matches!(
                s.check_sas(&objects_only, "any", None, &[Permission::List], &now),
                Err(SasError::AuthenticationFailed(_))
            ),
            "srt is signed"
        );
    }

    #[test]
    fn copies_land_after_their_delay_unless_the_blob_was_replaced() {
        let mut s = Storage::new("a");
        let now = Utc::now();
        for (blob, id) in [("kept", "1"), ("replaced", "2")] {
            s.put_blob("c", blob, Vec::new(), "application/octet-stream", now);
            if let Some(b) = s.containers.get_mut("c").and_then(|c| c.blobs.get_mut(blob)) {
                b.copy = Some(CopyInfo {
                    id: id.into(),
                    status: CopyStatus::Pending,
                    source: "src".into(),
                    total: 3,
                    completion_time: None,
                });
            }
            s.pending.push(PendingCopy {
                container: "c".into(),
                blob: blob.into(),
                id: id.into(),
                bytes: b"abc".to_vec(),
                content_type: "video/mp4".into(),
                remaining: Duration::from_millis(10),
            });
        }
        s.put_blob("c", "replaced", b"new".to_vec(), "text/plain", now);
        s.advance_copies(Duration::from_millis(5), now);
        assert_eq!(s.containers["c"].blobs["kept"].copy.as_ref().map(|c| c.status), Some(CopyStatus::Pending));
        s.advance_copies(Duration::from_millis(5), now);
        let kept = &s.containers["c"].blobs["kept"];
        assert_eq!(
            (kept.bytes.as_slice(), kept.copy.as_ref().map(|c| c.progress())),
            (&b"abc"[..], Some("3/3".into()))
        );
        assert_eq!(s.containers["c"].blobs["replaced"].bytes, b"new");
        assert_eq!(s.counters.copies_completed, 1);
    }
}
