//! VOD publication (contracts 4.3-4.5): streaming policies, content key
//! policies and streaming locators over ARM, plus the per-account key
//! delivery endpoint that hands out locator content keys.
//!
//! Locator paths are built from the locator id and the asset's `.ism` and
//! media blobs only, so the same locator id over the same asset contents
//! yields the same paths in every account.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State as AxumState};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use chrono::{DateTime, Utc};
use rand::RngCore;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::arm::{
    apply_fault, created_response, error_response, optional_string, parse_body, properties, query_value, system_data,
    unknown_account, ArmError,
};
use crate::model::Account;
use crate::state::Emulator;
use crate::timefmt::arm_time;

/// Default `endTime` of a locator.
const FOREVER: &str = "9999-12-31T23:59:59.9999999Z";

/// Names of the built-in streaming policies; they cannot be created or deleted.
pub const PREDEFINED_POLICIES: [&str; 6] = [
    "Predefined_DownloadOnly",
    "Predefined_ClearStreamingOnly",
    "Predefined_DownloadAndClearStreaming",
    "Predefined_ClearKey",
    "Predefined_MultiDrmCencStreaming",
    "Predefined_MultiDrmStreaming",
];

/// An encryption scheme section of a streaming policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// `noEncryption`.
    Clear,
    /// `envelopeEncryption` (AES-128, keys from key delivery).
    Envelope,
    /// `commonEncryptionCenc` (PlayReady, Widevine).
    Cenc,
    /// `commonEncryptionCbcs` (FairPlay).
    Cbcs,
}

impl Scheme {
    /// Every scheme, in the order paths are listed.
    const ALL: [Scheme; 4] = [Scheme::Clear, Scheme::Envelope, Scheme::Cenc, Scheme::Cbcs];

    /// Property name in the policy.
    fn property(self) -> &'static str {
        match self {
            Scheme::Clear => "noEncryption",
            Scheme::Envelope => "envelopeEncryption",
            Scheme::Cenc => "commonEncryptionCenc",
            Scheme::Cbcs => "commonEncryptionCbcs",
        }
    }

    /// `encryptionScheme` in listPaths, also the content key `type` for encrypting schemes.
    fn wire_name(self) -> &'static str {
        match self {
            Scheme::Clear => "NoEncryption",
            Scheme::Envelope => "EnvelopeEncryption",
            Scheme::Cenc => "CommonEncryptionCenc",
            Scheme::Cbcs => "CommonEncryptionCbcs",
        }
    }

    /// Label used when the policy names none (the labels of the ARM samples).
    fn default_label(self) -> &'static str {
        match self {
            Scheme::Clear => "",
            Scheme::Envelope => "aesDefaultKey",
            Scheme::Cenc => "cencDefaultKey",
            Scheme::Cbcs => "cbcsDefaultKey",
        }
    }

    /// The `encryption=` manifest argument per protocol, as the ARM samples show it.
    fn manifest_arg(self, protocol: Protocol) -> Option<&'static str> {
        match (self, protocol) {
            (Scheme::Clear, _) => None,
            (Scheme::Envelope, _) => Some("cbc"),
            (Scheme::Cenc, _) => Some("cenc"),
            (Scheme::Cbcs, Protocol::Hls) => Some("cbcs-aapl"),
            (Scheme::Cbcs, _) => Some("cbcs"),
        }
    }
}

/// Streaming protocols with manifests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Protocol {
    Hls,
    Dash,
    SmoothStreaming,
}

impl Protocol {
    const ALL: [Protocol; 3] = [Protocol::Hls, Protocol::Dash, Protocol::SmoothStreaming];

    fn flag(self) -> &'static str {
        match self {
            Protocol::Hls => "hls",
            Protocol::Dash => "dash",
            Protocol::SmoothStreaming => "smoothStreaming",
        }
    }

    fn wire_name(self) -> &'static str {
        match self {
            Protocol::Hls => "Hls",
            Protocol::Dash => "Dash",
            Protocol::SmoothStreaming => "SmoothStreaming",
        }
    }

    fn format(self) -> Option<&'static str> {
        match self {
            Protocol::Hls => Some("m3u8-aapl"),
            Protocol::Dash => Some("mpd-time-csf"),
            Protocol::SmoothStreaming => None,
        }
    }
}

/// A user-created streaming policy.
#[derive(Debug, Clone)]
pub struct StreamingPolicy {
    /// Name as given.
    pub name: String,
    /// `properties` as stored (normalised, without `created`).
    pub properties: Map<String, Value>,
    /// Creation time.
    pub created: DateTime<Utc>,
}

/// A content key policy; `options` keep their secrets.
#[derive(Debug, Clone)]
pub struct ContentKeyPolicy {
    /// Name as given.
    pub name: String,
    /// `policyId`.
    pub policy_id: uuid::Uuid,
    /// `description`.
    pub description: Option<String>,
    /// Options with `policyOptionId`, secrets included.
    pub options: Vec<Value>,
    /// Creation time.
    pub created: DateTime<Utc>,
    /// Last update.
    pub last_modified: DateTime<Utc>,
}

/// One content key of a locator.
#[derive(Debug, Clone)]
pub struct LocatorKey {
    /// Key id.
    pub id: uuid::Uuid,
    /// Scheme the key encrypts.
    pub scheme: Scheme,
    /// `labelReferenceInStreamingPolicy`.
    pub label: String,
    /// The 16 key bytes.
    pub value: Vec<u8>,
    /// `policyName`: the content key policy that governs delivery.
    pub policy_name: Option<String>,
}

/// A streaming locator.
#[derive(Debug, Clone)]
pub struct StreamingLocator {
    /// Name as given.
    pub name: String,
    /// Asset published.
    pub asset_name: String,
    /// Streaming policy name as given.
    pub policy_name: String,
    /// `streamingLocatorId`.
    pub locator_id: uuid::Uuid,
    /// `startTime` as given.
    pub start_time: Option<String>,
    /// `endTime` as given or the default.
    pub end_time: String,
    /// `defaultContentKeyPolicyName`.
    pub default_content_key_policy: Option<String>,
    /// `alternativeMediaId`.
    pub alternative_media_id: Option<String>,
    /// `filters`.
    pub filters: Vec<Value>,
    /// Content keys, one per encrypting scheme of the policy.
    pub keys: Vec<LocatorKey>,
    /// Creation time.
    pub created: DateTime<Utc>,
}

/// Everything streaming-related in one account; maps are keyed by lowercase name.
#[derive(Debug, Default)]
pub struct Streaming {
    /// Streaming policies.
    pub policies: BTreeMap<String, StreamingPolicy>,
    /// Content key policies.
    pub content_key_policies: BTreeMap<String, ContentKeyPolicy>,
    /// Streaming locators.
    pub locators: BTreeMap<String, StreamingLocator>,
}

impl Streaming {
    /// The raw bytes of the content key `kid` in any locator.
    pub fn key_value(&self, kid: &uuid::Uuid) -> Option<&[u8]> {
        self.locators.values().flat_map(|l| &l.keys).find(|k| k.id == *kid).map(|k| k.value.as_slice())
    }
}

/// Definition of a predefined policy, or `None` for other names.
fn predefined(name: &str) -> Option<Map<String, Value>> {
    let protocols = |download: bool, stream: bool| json!({"download": download, "dash": stream, "hls": stream, "smoothStreaming": stream});
    let keys = |label: &str| json!({"defaultKey": {"label": label}, "keyToTrackMappings": []});
    let canonical = PREDEFINED_POLICIES.iter().find(|p| p.eq_ignore_ascii_case(name))?;
    let v = match *canonical {
        "Predefined_DownloadOnly" => json!({"noEncryption": {"enabledProtocols": protocols(true, false)}}),
        "Predefined_ClearStreamingOnly" => json!({"noEncryption": {"enabledProtocols": protocols(false, true)}}),
        "Predefined_DownloadAndClearStreaming" => json!({"noEncryption": {"enabledProtocols": protocols(true, true)}}),
        "Predefined_ClearKey" => json!({"envelopeEncryption": {
            "enabledProtocols": protocols(false, true), "clearTracks": [], "contentKeys": keys("aesDefaultKey")}}),
        "Predefined_MultiDrmCencStreaming" => json!({"commonEncryptionCenc": {
            "enabledProtocols": {"download": false, "dash": true, "hls": false, "smoothStreaming": true},
            "clearTracks": [], "contentKeys": keys("cencDefaultKey"), "drm": {"playReady": {}, "widevine": {}}}}),
        _ => json!({
            "commonEncryptionCenc": {
                "enabledProtocols": {"download": false, "dash": true, "hls": false, "smoothStreaming": true},
                "clearTracks": [], "contentKeys": keys("cencDefaultKey"), "drm": {"playReady": {}, "widevine": {}}},
            "commonEncryptionCbcs": {
                "enabledProtocols": {"download": false, "dash": false, "hls": true, "smoothStreaming": false},
                "clearTracks": [], "contentKeys": keys("cbcsDefaultKey"), "drm": {"fairPlay": {"allowPersistentLicense": false}}}
        }),
    };
    match v {
        Value::Object(m) => Some(m),
        _ => None,
    }
}

/// The properties of a policy the account can use: its own or a predefined one.
pub(crate) fn policy_properties(account: &Account, name: &str) -> Option<(String, Map<String, Value>)> {
    if let Some(p) = account.streaming.policies.get(&name.to_ascii_lowercase()) {
        return Some((p.name.clone(), p.properties.clone()));
    }
    let canonical = PREDEFINED_POLICIES.iter().find(|p| p.eq_ignore_ascii_case(name))?;
    predefined(canonical).map(|m| (canonical.to_string(), m))
}

fn protocol_enabled(props: &Map<String, Value>, scheme: Scheme, flag: &str) -> bool {
    props.get(scheme.property()).and_then(|s| s.pointer(&format!("/enabledProtocols/{flag}"))).and_then(Value::as_bool)
        == Some(true)
}

fn encrypting_schemes(props: &Map<String, Value>) -> Vec<Scheme> {
    [Scheme::Envelope, Scheme::Cenc, Scheme::Cbcs].into_iter().filter(|s| props.contains_key(s.property())).collect()
}

fn scheme_label(props: &Map<String, Value>, scheme: Scheme) -> String {
    props
        .get(scheme.property())
        .and_then(|s| s.pointer("/contentKeys/defaultKey/label"))
        .and_then(Value::as_str)
        .filter(|l| !l.is_empty())
        .unwrap_or(scheme.default_label())
        .to_string()
}

fn not_found(kind: &'static str, name: &str) -> ArmError {
    ArmError::NotFound { kind, name: name.to_string() }
}

fn deleted(existed: bool) -> Response {
    if existed {
        StatusCode::OK.into_response()
    } else {
        StatusCode::NO_CONTENT.into_response()
    }
}

// ---------------------------------------------------------------- streaming policies

pub(crate) fn policy_json(account_id: &str, p: &StreamingPolicy) -> Value {
    let mut props = Map::new();
    props.insert("created".into(), arm_time(&p.created).into());
    props.extend(p.properties.clone());
    json!({
        "name": p.name,
        "id": format!("{account_id}/streamingPolicies/{}", p.name),
        "type": "Microsoft.Media/mediaservices/streamingPolicies",
        "properties": props,
        "systemData": system_data(&p.created, &p.created),
    })
}

/// `PUT .../streamingPolicies/{name}`: create only (201); an existing name is a 409.
pub fn put_policy(
    account_id: &str,
    account: &mut Account,
    name: &str,
    body: &[u8],
    now: DateTime<Utc>,
    duplicate_status: u16,
) -> Result<Response, ArmError> {
    if PREDEFINED_POLICIES.iter().any(|p| p.eq_ignore_ascii_case(name)) {
        return Err(ArmError::BadRequest(format!("'{name}' is a predefined streaming policy name and is reserved.")));
    }
    let key = name.to_ascii_lowercase();
    if account.streaming.policies.contains_key(&key) {
        return Err(ArmError::Duplicate {
            status: duplicate_status,
            message: format!("A streaming policy named '{name}' already exists; streaming policies cannot be updated."),
        });
    }
    let body = parse_body(body)?;
    let mut props = properties(&body)?.clone();
    props.remove("created");
    let mut any_scheme = false;
    for scheme in Scheme::ALL {
        let Some(section) = props.get_mut(scheme.property()) else {
            continue;
        };
        let Value::Object(section) = section else {
            return Err(ArmError::BadRequest(format!("'{}' must be an object.", scheme.property())));
        };
        let protocols = section
            .get("enabledProtocols")
            .and_then(Value::as_object)
            .ok_or_else(|| ArmError::BadRequest(format!("'{}' requires 'enabledProtocols'.", scheme.property())))?;
        for flag in ["download", "dash", "hls", "smoothStreaming"] {
            if !protocols.get(flag).is_some_and(Value::is_boolean) {
                return Err(ArmError::BadRequest(format!(
                    "'{}.enabledProtocols.{flag}' must be true or false.",
                    scheme.property()
                )));
            }
        }
        if scheme != Scheme::Clear {
            // AMS fills these in on the stored policy (see the list sample).
            section.entry("clearTracks").or_insert_with(|| json!([]));
            let keys = section.entry("contentKeys").or_insert_with(|| json!({}));
            if let Value::Object(k) = keys {
                k.entry("keyToTrackMappings").or_insert_with(|| json!([]));
            }
        }
        any_scheme = true;
    }
    if !any_scheme {
        return Err(ArmError::BadRequest(
            "A streaming policy needs one of noEncryption, envelopeEncryption, commonEncryptionCenc, commonEncryptionCbcs."
                .into(),
        ));
    }
    if let Some(ckp) = optional_string(&props, "defaultContentKeyPolicyName")? {
        if !account.streaming.content_key_policies.contains_key(&ckp.to_ascii_lowercase()) {
            return Err(not_found("content key policy", &ckp));
        }
    }
    let p = StreamingPolicy { name: name.to_string(), properties: props, created: now };
    let out = policy_json(account_id, &p);
    account.streaming.policies.insert(key, p);
    Ok((StatusCode::CREATED, Json(out)).into_response())
}

/// `GET .../streamingPolicies/{name}`; predefined names answer with their definition.
pub fn get_policy(account_id: &str, account: &Account, name: &str) -> Result<Response, ArmError> {
    if let Some(p) = account.streaming.policies.get(&name.to_ascii_lowercase()) {
        return Ok(Json(policy_json(account_id, p)).into_response());
    }
    let (canonical, props) = policy_properties(account, name).ok_or_else(|| not_found("streaming policy", name))?;
    let epoch = DateTime::<Utc>::UNIX_EPOCH;
    Ok(Json(policy_json(account_id, &StreamingPolicy { name: canonical, properties: props, created: epoch }))
        .into_response())
}

/// `DELETE .../streamingPolicies/{name}`: 200, or 204 when there was nothing to delete.
pub fn delete_policy(account: &mut Account, name: &str) -> Result<Response, ArmError> {
    if PREDEFINED_POLICIES.iter().any(|p| p.eq_ignore_ascii_case(name)) {
        return Err(ArmError::BadRequest(format!("The predefined streaming policy '{name}' cannot be deleted.")));
    }
    Ok(deleted(account.streaming.policies.remove(&name.to_ascii_lowercase()).is_some()))
}

/// `GET .../streamingPolicies`: the account's own policies, by name.
pub fn list_policies(account_id: &str, account: &Account) -> Result<Response, ArmError> {
    let value: Vec<Value> = account.streaming.policies.values().map(|p| policy_json(account_id, p)).collect();
    Ok(Json(json!({"value": value})).into_response())
}

// ---------------------------------------------------------------- content key policies

/// Secret fields blanked in ordinary responses.
const SECRET_FIELDS: [&str; 4] = ["keyValue", "ask", "fairPlayPfx", "fairPlayPfxPassword"];

fn redact(v: &mut Value) {
    match v {
        Value::Object(m) => {
            for (k, x) in m.iter_mut() {
                if SECRET_FIELDS.contains(&k.as_str()) && x.is_string() {
                    *x = "".into();
                } else {
                    redact(x);
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(redact),
        _ => {}
    }
}

fn ckp_properties(p: &ContentKeyPolicy, with_secrets: bool) -> Value {
    let mut options = p.options.clone();
    if !with_secrets {
        options.iter_mut().for_each(redact);
    }
    let mut props = Map::new();
    props.insert("policyId".into(), p.policy_id.to_string().into());
    props.insert("created".into(), arm_time(&p.created).into());
    props.insert("lastModified".into(), arm_time(&p.last_modified).into());
    if let Some(d) = &p.description {
        props.insert("description".into(), d.clone().into());
    }
    props.insert("options".into(), Value::Array(options));
    Value::Object(props)
}

pub(crate) fn ckp_json(account_id: &str, p: &ContentKeyPolicy) -> Value {
    json!({
        "name": p.name,
        "id": format!("{account_id}/contentKeyPolicies/{}", p.name),
        "type": "Microsoft.Media/mediaservices/contentKeyPolicies",
        "properties": ckp_properties(p, false),
        "systemData": system_data(&p.created, &p.last_modified),
    })
}

/// `PUT .../contentKeyPolicies/{name}`: create (201) or replace (200).
pub fn put_ckp(
    account_id: &str,
    account: &mut Account,
    name: &str,
    body: &[u8],
    now: DateTime<Utc>,
) -> Result<Response, ArmError> {
    let body = parse_body(body)?;
    let props = properties(&body)?;
    let description = optional_string(props, "description")?;
    let raw = match props.get("options") {
        Some(Value::Array(o)) if !o.is_empty() => o,
        _ => return Err(ArmError::BadRequest("A content key policy needs at least one option in 'options'.".into())),
    };
    let key = name.to_ascii_lowercase();
    let previous = account.streaming.content_key_policies.get(&key);
    let mut options = Vec::with_capacity(raw.len());
    for (i, o) in raw.iter().enumerate() {
        let Value::Object(o) = o else {
            return Err(ArmError::BadRequest(format!("Option {i} must be an object.")));
        };
        let mut o = o.clone();
        for part in ["configuration", "restriction"] {
            if !o.get(part).and_then(|c| c.get("@odata.type")).is_some_and(Value::is_string) {
                return Err(ArmError::BadRequest(format!("Option {i} needs a '{part}' with an '@odata.type'.")));
            }
        }
        if let Some(Value::Object(r)) = o.get_mut("restriction") {
            if r.get("@odata.type").and_then(Value::as_str) == Some("#Microsoft.Media.ContentKeyPolicyTokenRestriction")
            {
                r.entry("alternateVerificationKeys").or_insert_with(|| json!([]));
                r.entry("requiredClaims").or_insert_with(|| json!([]));
                canonical_key_values(r).map_err(|m| ArmError::BadRequest(format!("Option {i}: {m}")))?;
            }
        }
        // An option keeps its id across updates when its name stays the same.
        let option_name = o.get("name").and_then(Value::as_str).map(str::to_string);
        let kept = previous.and_then(|p| {
            p.options
                .iter()
                .find(|po| option_name.is_some() && po.get("name").and_then(Value::as_str) == option_name.as_deref())
        });
        let id = kept
            .and_then(|po| po.get("policyOptionId").cloned())
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string().into());
        let mut with_id = Map::new();
        with_id.insert("policyOptionId".into(), id);
        with_id.extend(o);
        options.push(Value::Object(with_id));
    }
    let created = previous.is_none();
    let (policy_id, created_at) = previous.map_or((uuid::Uuid::new_v4(), now), |p| (p.policy_id, p.created));
    let p = ContentKeyPolicy {
        name: previous.map_or_else(|| name.to_string(), |p| p.name.clone()),
        policy_id,
        description,
        options,
        created: created_at,
        last_modified: now,
    };
    let out = ckp_json(account_id, &p);
    account.streaming.content_key_policies.insert(key, p);
    Ok(created_response(created, out))
}

/// A symmetric token key's `keyValue` is `format: byte` in ContentKeyPolicies.json: the service keeps the
/// bytes, so it answers canonical padded base64 whatever form was sent (unpadded, URL-safe alphabet).
fn canonical_key_values(restriction: &mut Map<String, Value>) -> Result<(), String> {
    use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
    let mut keys: Vec<&mut Value> = Vec::new();
    for (name, value) in restriction.iter_mut() {
        match (name.as_str(), value) {
            ("primaryVerificationKey", key) => keys.push(key),
            ("alternateVerificationKeys", Value::Array(alternates)) => keys.extend(alternates.iter_mut()),
            _ => {}
        }
    }
    for key in keys {
        let Some(Value::String(text)) = key.get_mut("keyValue") else { continue };
        let trimmed = text.trim().trim_end_matches('=');
        let bytes = STANDARD_NO_PAD
            .decode(trimmed)
            .or_else(|_| URL_SAFE_NO_PAD.decode(trimmed))
            .map_err(|_| "'keyValue' is not base64.".to_string())?;
        *text = B64.encode(bytes);
    }
    Ok(())
}

fn find_ckp<'a>(account: &'a Account, name: &str) -> Result<&'a ContentKeyPolicy, ArmError> {
    account
        .streaming
        .content_key_policies
        .get(&name.to_ascii_lowercase())
        .ok_or_else(|| not_found("content key policy", name))
}

/// `GET .../contentKeyPolicies/{name}` (secrets blanked).
pub fn get_ckp(account_id: &str, account: &Account, name: &str) -> Result<Response, ArmError> {
    Ok(Json(ckp_json(account_id, find_ckp(account, name)?)).into_response())
}

/// `POST .../contentKeyPolicies/{name}/getPolicyPropertiesWithSecrets`: the properties, secrets included.
pub fn ckp_with_secrets(account: &Account, name: &str) -> Result<Response, ArmError> {
    Ok(Json(ckp_properties(find_ckp(account, name)?, true)).into_response())
}

/// `DELETE .../contentKeyPolicies/{name}`.
pub fn delete_ckp(account: &mut Account, name: &str) -> Result<Response, ArmError> {
    Ok(deleted(account.streaming.content_key_policies.remove(&name.to_ascii_lowercase()).is_some()))
}

/// `GET .../contentKeyPolicies`.
pub fn list_ckp(account_id: &str, account: &Account) -> Result<Response, ArmError> {
    let value: Vec<Value> = account.streaming.content_key_policies.values().map(|p| ckp_json(account_id, p)).collect();
    Ok(Json(json!({"value": value})).into_response())
}

// ---------------------------------------------------------------- streaming locators

fn key_json(k: &LocatorKey, with_value: bool) -> Value {
    let mut m = Map::new();
    m.insert("id".into(), k.id.to_string().into());
    m.insert("type".into(), k.scheme.wire_name().into());
    m.insert("labelReferenceInStreamingPolicy".into(), k.label.clone().into());
    if with_value {
        m.insert("value".into(), B64.encode(&k.value).into());
    }
    if let Some(p) = &k.policy_name {
        m.insert("policyName".into(), p.clone().into());
    }
    m.insert("tracks".into(), json!([]));
    Value::Object(m)
}

pub(crate) fn locator_json(account_id: &str, l: &StreamingLocator) -> Value {
    let mut props = Map::new();
    props.insert("assetName".into(), l.asset_name.clone().into());
    props.insert("created".into(), arm_time(&l.created).into());
    if let Some(t) = &l.start_time {
        props.insert("startTime".into(), t.clone().into());
    }
    props.insert("endTime".into(), l.end_time.clone().into());
    props.insert("streamingLocatorId".into(), l.locator_id.to_string().into());
    props.insert("streamingPolicyName".into(), l.policy_name.clone().into());
    if let Some(p) = &l.default_content_key_policy {
        props.insert("defaultContentKeyPolicyName".into(), p.clone().into());
    }
    props.insert("contentKeys".into(), l.keys.iter().map(|k| key_json(k, false)).collect());
    if let Some(a) = &l.alternative_media_id {
        props.insert("alternativeMediaId".into(), a.clone().into());
    }
    props.insert("filters".into(), Value::Array(l.filters.clone()));
    json!({
        "name": l.name,
        "id": format!("{account_id}/streamingLocators/{}", l.name),
        "type": "Microsoft.Media/mediaservices/streamingLocators",
        "properties": props,
        "systemData": system_data(&l.created, &l.created),
    })
}

fn optional_time(props: &Map<String, Value>, key: &str) -> Result<Option<String>, ArmError> {
    let v = optional_string(props, key)?;
    if let Some(t) = &v {
        DateTime::parse_from_rfc3339(t)
            .map_err(|_| ArmError::BadRequest(format!("'{key}' is not a valid UTC time.")))?;
    }
    Ok(v)
}

/// `PUT .../streamingLocators/{name}`: create only (201). Locators are
/// immutable in AMS, so an existing name, or a `streamingLocatorId` already
/// used in this account, is a 409.
pub fn put_locator(
    account_id: &str,
    account: &mut Account,
    name: &str,
    body: &[u8],
    now: DateTime<Utc>,
    duplicate_status: u16,
) -> Result<Response, ArmError> {
    let key = name.to_ascii_lowercase();
    if account.streaming.locators.contains_key(&key) {
        return Err(ArmError::Duplicate {
            status: duplicate_status,
            message: format!("A streaming locator named '{name}' already exists."),
        });
    }
    let body = parse_body(body)?;
    let props = properties(&body)?;
    let asset_name = optional_string(props, "assetName")?
        .filter(|s| !s.is_empty())
        .ok_or_else(|| ArmError::BadRequest("The streaming locator requires 'assetName'.".into()))?;
    let asset = account.assets.get(&asset_name.to_ascii_lowercase()).ok_or_else(|| not_found("asset", &asset_name))?;
    let asset_name = asset.name.clone();
    let policy_name = optional_string(props, "streamingPolicyName")?
        .filter(|s| !s.is_empty())
        .ok_or_else(|| ArmError::BadRequest("The streaming locator requires 'streamingPolicyName'.".into()))?;
    let (policy_name, policy) =
        policy_properties(account, &policy_name).ok_or_else(|| not_found("streaming policy", &policy_name))?;
    let locator_id = match optional_string(props, "streamingLocatorId")? {
        Some(s) => uuid::Uuid::parse_str(&s)
            .map_err(|_| ArmError::BadRequest("'streamingLocatorId' must be a GUID.".into()))?,
        None => uuid::Uuid::new_v4(),
    };
    if account.streaming.locators.values().any(|l| l.locator_id == locator_id) {
        return Err(ArmError::Conflict(format!(
            "The streamingLocatorId '{locator_id}' is already used in this account."
        )));
    }
    let default_ckp = optional_string(props, "defaultContentKeyPolicyName")?;
    if let Some(c) = &default_ckp {
        find_ckp(account, c)?;
    }
    let start_time = optional_time(props, "startTime")?;
    let end_time = optional_time(props, "endTime")?.unwrap_or_else(|| FOREVER.to_string());
    let alternative_media_id = optional_string(props, "alternativeMediaId")?;
    let filters = match props.get("filters") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(f)) => f.clone(),
        Some(_) => return Err(ArmError::BadRequest("'filters' must be an array.".into())),
    };

    let schemes = encrypting_schemes(&policy);
    let policy_name_for_keys = default_ckp
        .clone()
        .or_else(|| policy.get("defaultContentKeyPolicyName").and_then(Value::as_str).map(str::to_string));
    let mut given: BTreeMap<String, (uuid::Uuid, Option<Vec<u8>>)> = BTreeMap::new();
    if let Some(keys) = props.get("contentKeys").filter(|v| !v.is_null()) {
        let keys = keys.as_array().ok_or_else(|| ArmError::BadRequest("'contentKeys' must be an array.".into()))?;
        if !keys.is_empty() && schemes.is_empty() {
            return Err(ArmError::BadRequest(format!(
                "The streaming policy '{policy_name}' does not encrypt; it takes no content keys."
            )));
        }
        for (i, k) in keys.iter().enumerate() {
            let id = k
                .get("id")
                .and_then(Value::as_str)
                .and_then(|s| uuid::Uuid::parse_str(s).ok())
                .ok_or_else(|| ArmError::BadRequest(format!("Content key {i} requires an 'id' GUID.")))?;
            let label = match k.get("labelReferenceInStreamingPolicy").and_then(Value::as_str) {
                Some(l) => l.to_string(),
                None if schemes.len() == 1 => scheme_label(&policy, schemes[0]),
                None => {
                    return Err(ArmError::BadRequest(format!(
                        "Content key {i} needs 'labelReferenceInStreamingPolicy': the policy has several keys."
                    )))
                }
            };
            if !schemes.iter().any(|s| scheme_label(&policy, *s) == label) {
                return Err(ArmError::BadRequest(format!(
                    "Content key {i} refers to the label '{label}', which the streaming policy '{policy_name}' does not define."
                )));
            }
            let value = match k.get("value").and_then(Value::as_str) {
                None => None,
                Some(v) => Some(B64.decode(v).ok().filter(|b| b.len() == 16).ok_or_else(|| {
                    ArmError::BadRequest(format!("Content key {i} 'value' must be 16 bytes in base64."))
                })?),
            };
            if given.insert(label.clone(), (id, value)).is_some() {
                return Err(ArmError::BadRequest(format!("The label '{label}' is given twice.")));
            }
        }
    }
    let keys: Vec<LocatorKey> = schemes
        .iter()
        .map(|s| {
            let label = scheme_label(&policy, *s);
            let (id, value) = given.remove(&label).unwrap_or((uuid::Uuid::new_v4(), None));
            let value = value.unwrap_or_else(|| {
                let mut b = vec![0u8; 16];
                rand::rng().fill_bytes(&mut b);
                b
            });
            LocatorKey { id, scheme: *s, label, value, policy_name: policy_name_for_keys.clone() }
        })
        .collect();
    let l = StreamingLocator {
        name: name.to_string(),
        asset_name,
        policy_name,
        locator_id,
        start_time,
        end_time,
        default_content_key_policy: default_ckp,
        alternative_media_id,
        filters,
        keys,
        created: now,
    };
    let out = locator_json(account_id, &l);
    tracing::info!(account = %account.name, locator = %l.name, id = %l.locator_id, "streaming locator created");
    account.streaming.locators.insert(key, l);
    Ok((StatusCode::CREATED, Json(out)).into_response())
}

fn find_locator<'a>(account: &'a Account, name: &str) -> Result<&'a StreamingLocator, ArmError> {
    account.streaming.locators.get(&name.to_ascii_lowercase()).ok_or_else(|| not_found("streaming locator", name))
}

/// `GET .../streamingLocators/{name}`.
pub fn get_locator(account_id: &str, account: &Account, name: &str) -> Result<Response, ArmError> {
    Ok(Json(locator_json(account_id, find_locator(account, name)?)).into_response())
}

/// `DELETE .../streamingLocators/{name}`.
pub fn delete_locator(account: &mut Account, name: &str) -> Result<Response, ArmError> {
    Ok(deleted(account.streaming.locators.remove(&name.to_ascii_lowercase()).is_some()))
}

/// `GET .../streamingLocators[?$top=n]`, by name. `$filter` and `$orderby` are refused rather than ignored.
pub fn list_locators(account_id: &str, account: &Account, query: &[(String, String)]) -> Result<Response, ArmError> {
    if query_value(query, "$filter").is_some() || query_value(query, "$orderby").is_some() {
        return Err(ArmError::BadRequest(
            "The emulator does not support $filter or $orderby on streaming locators.".into(),
        ));
    }
    let top = match query_value(query, "$top") {
        None => usize::MAX,
        Some(t) => t.parse().map_err(|_| ArmError::BadRequest("$top must be a non-negative integer.".into()))?,
    };
    let value: Vec<Value> =
        account.streaming.locators.values().take(top).map(|l| locator_json(account_id, l)).collect();
    Ok(Json(json!({"value": value})).into_response())
}

/// `POST .../streamingLocators/{name}/listContentKeys`.
pub fn list_content_keys(account: &Account, name: &str) -> Result<Response, ArmError> {
    let l = find_locator(account, name)?;
    Ok(Json(json!({"contentKeys": l.keys.iter().map(|k| key_json(k, true)).collect::<Vec<_>>()})).into_response())
}

/// `POST .../streamingLocators/{name}/listPaths`.
///
/// Streaming paths exist only when the asset holds a `.ism` manifest; there
/// is one entry per (scheme, protocol) the policy enables, in the order of
/// the ARM sample. Download paths list every other blob of the asset when the
/// policy enables download for any scheme.
pub fn list_paths(account: &Account, name: &str) -> Result<Response, ArmError> {
    Ok(Json(paths_json(account, name)?).into_response())
}

/// The listPaths answer as JSON (the MK.IO mode adds its `drm` map to it).
pub(crate) fn paths_json(account: &Account, name: &str) -> Result<Value, ArmError> {
    let l = find_locator(account, name)?;
    let (_, policy) =
        policy_properties(account, &l.policy_name).ok_or_else(|| not_found("streaming policy", &l.policy_name))?;
    let blobs: Vec<String> = account
        .assets
        .get(&l.asset_name.to_ascii_lowercase())
        .and_then(|a| account.storage.containers.get(&a.container))
        .map(|c| c.blobs.keys().cloned().collect())
        .unwrap_or_default();
    let id = l.locator_id;
    let manifests: Vec<&String> = blobs.iter().filter(|b| b.ends_with(".ism")).collect();
    let mut streaming_paths = Vec::new();
    if !manifests.is_empty() {
        for scheme in Scheme::ALL {
            for protocol in Protocol::ALL {
                if !protocol_enabled(&policy, scheme, protocol.flag()) {
                    continue;
                }
                let args: Vec<String> = protocol
                    .format()
                    .map(|f| format!("format={f}"))
                    .into_iter()
                    .chain(scheme.manifest_arg(protocol).map(|e| format!("encryption={e}")))
                    .collect();
                let suffix = if args.is_empty() { String::new() } else { format!("({})", args.join(",")) };
                let paths: Vec<String> = manifests.iter().map(|m| format!("/{id}/{m}/manifest{suffix}")).collect();
                streaming_paths.push(json!({
                    "streamingProtocol": protocol.wire_name(),
                    "encryptionScheme": scheme.wire_name(),
                    "paths": paths,
                }));
            }
        }
    }
    let download = Scheme::ALL.iter().any(|s| protocol_enabled(&policy, *s, "download"));
    let download_paths: Vec<String> = if download {
        blobs.iter().filter(|b| !b.ends_with(".ism") && !b.ends_with(".ismc")).map(|b| format!("/{id}/{b}")).collect()
    } else {
        Vec::new()
    };
    Ok(json!({"streamingPaths": streaming_paths, "downloadPaths": download_paths}))
}

/// `POST .../assets/{name}/listStreamingLocators`.
pub fn asset_locators(account: &Account, asset: &str) -> Result<Response, ArmError> {
    let a = account.assets.get(&asset.to_ascii_lowercase()).ok_or_else(|| not_found("asset", asset))?;
    let list: Vec<Value> = account
        .streaming
        .locators
        .values()
        .filter(|l| l.asset_name.eq_ignore_ascii_case(&a.name))
        .map(|l| {
            let mut m = Map::new();
            m.insert("name".into(), l.name.clone().into());
            m.insert("assetName".into(), l.asset_name.clone().into());
            m.insert("created".into(), arm_time(&l.created).into());
            if let Some(t) = &l.start_time {
                m.insert("startTime".into(), t.clone().into());
            }
            m.insert("endTime".into(), l.end_time.clone().into());
            m.insert("streamingLocatorId".into(), l.locator_id.to_string().into());
            m.insert("streamingPolicyName".into(), l.policy_name.clone().into());
            if let Some(p) = &l.default_content_key_policy {
                m.insert("defaultContentKeyPolicyName".into(), p.clone().into());
            }
            Value::Object(m)
        })
        .collect();
    Ok(Json(json!({"streamingLocators": list})).into_response())
}

// ---------------------------------------------------------------- key delivery

/// Path prefix of the key delivery service.
pub const KEY_DELIVERY_PREFIX: &str = "/keydelivery/";

/// Key delivery URL of an account.
pub fn key_delivery_url(base_url: &str, account: &str) -> String {
    format!("{base_url}{KEY_DELIVERY_PREFIX}{account}")
}

/// Query of the key delivery call.
#[derive(Debug, Deserialize)]
pub struct KidQuery {
    kid: Option<String>,
}

/// `GET /keydelivery/{account}?kid={id}`: the 16 raw bytes of that content key
/// as AES-128 envelope players fetch them. Content key policy restrictions
/// (tokens) are not enforced. An `outage` makes it answer 503 like the rest of
/// the region.
pub async fn key_delivery(
    AxumState(emulator): AxumState<Arc<Emulator>>,
    Path(account): Path<String>,
    Query(q): Query<KidQuery>,
) -> Response {
    let mut state = emulator.lock();
    let Some(a) = state.account_mut(&account) else {
        return unknown_account(&account);
    };
    if let Err(e @ ArmError::ServiceUnavailable(_)) = apply_fault_outage_only(a) {
        return e.into_response();
    }
    let Some(kid) = q.kid.as_deref().and_then(|k| uuid::Uuid::parse_str(k.trim_matches(['{', '}'])).ok()) else {
        return error_response(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "The 'kid' query parameter must be a content key GUID.",
        );
    };
    match a.streaming.key_value(&kid) {
        Some(bytes) => {
            let mut resp = bytes.to_vec().into_response();
            resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
            resp
        }
        None => error_response(
            StatusCode::NOT_FOUND,
            "NotFound",
            &format!("No content key with id '{kid}' exists in this account."),
        ),
    }
}

/// Key delivery shares the region's outages but not the ARM throttle budget.
fn apply_fault_outage_only(account: &mut Account) -> Result<(), ArmError> {
    if account.fault.freezes_jobs() {
        apply_fault(account)
    } else {
        Ok(())
    }
}

// ---------------------------------------------------------------- streaming endpoint (downloads)

/// Path prefix of the emulated streaming endpoints.
pub const STREAM_PREFIX: &str = "/stream/";

/// `GET /stream/{account}/{streamingLocatorId}/{file}`: serves the download
/// paths of a locator whose policy enables download, while the locator is
/// within its start/end window. Manifests are not packaged (501), since no
/// client under test plays media.
pub async fn stream(
    AxumState(emulator): AxumState<Arc<Emulator>>,
    Path((account, rest)): Path<(String, String)>,
) -> Response {
    let not_found = |m: &str| error_response(StatusCode::NOT_FOUND, "NotFound", m);
    let mut state = emulator.lock();
    let Some(a) = state.account_mut(&account) else {
        return not_found(&format!("The account '{account}' is not configured."));
    };
    if let Err(e @ ArmError::ServiceUnavailable(_)) = apply_fault_outage_only(a) {
        return e.into_response();
    }
    let Some((id, file)) = rest.split_once('/') else {
        return not_found("Expected /{streamingLocatorId}/{file}.");
    };
    let Some(l) =
        uuid::Uuid::parse_str(id).ok().and_then(|id| a.streaming.locators.values().find(|l| l.locator_id == id))
    else {
        return not_found(&format!("No streaming locator with id '{id}'."));
    };
    let now = Utc::now();
    let parse = |t: &str| DateTime::parse_from_rfc3339(t).ok().map(|t| t.with_timezone(&Utc));
    let started = l.start_time.as_deref().and_then(parse).is_none_or(|s| s <= now);
    let not_ended = parse(&l.end_time).is_none_or(|e| now < e);
    if !(started && not_ended) {
        return not_found("The streaming locator is outside its start and end time.");
    }
    if file.contains(".ism/") {
        return error_response(
            StatusCode::NOT_IMPLEMENTED,
            "NotImplemented",
            "The emulator does not package streaming manifests; use listPaths to compare them.",
        );
    }
    let download = policy_properties(a, &l.policy_name)
        .is_some_and(|(_, p)| Scheme::ALL.iter().any(|s| protocol_enabled(&p, *s, "download")));
    if !download || file.ends_with(".ism") || file.ends_with(".ismc") {
        return not_found("The streaming policy does not allow downloading this file.");
    }
    let blob = a
        .assets
        .get(&l.asset_name.to_ascii_lowercase())
        .and_then(|asset| a.storage.containers.get(&asset.container))
        .and_then(|c| c.blobs.get(file));
    match blob {
        Some(b) => {
            let mut resp = b.bytes.clone().into_response();
            if let Ok(ct) = HeaderValue::from_str(&b.content_type) {
                resp.headers_mut().insert(header::CONTENT_TYPE, ct);
            }
            resp
        }
        None => not_found(&format!("The asset has no file '{file}'.")),
    }
}
