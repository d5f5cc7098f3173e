//! Media Services ARM calls for video-on-demand publication (api-version 2023-01-01 for assets, locators
//! and policies; 2022-07-01 for transforms): definitions (transforms, content key policies, streaming
//! policies), container SAS URLs, streaming locators, their paths and their content keys.
//!
//! Secrets stay out of `Debug` output: SAS URLs and content key values print as `<redacted>`.

use super::arm::{base, ArmClient, Request};
use super::MediaError;
use crate::config::AccountConfig;
use crate::domain::publication::{ContentKeyRef, LiveLocator, LocatorPaths};
use chrono::{DateTime, SecondsFormat, Utc};
use reqwest::Method;
use serde::Deserialize;
use serde_json::{json, Value};
use std::fmt;
use url::Url;

const TRANSFORMS_API: &str = "2022-07-01";
const METADATA_API: &str = "2023-01-01";
const ARM_SCOPE: &str = "https://management.azure.com/.default";

/// A container URL with its SAS token: a secret, never printed or stored.
#[derive(Clone, PartialEq, Eq)]
pub struct SasUrl(pub(super) Url);

impl fmt::Debug for SasUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SasUrl({}{}?<redacted>)", self.0.origin().ascii_serialization(), self.0.path())
    }
}

/// What a container SAS allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SasPermissions {
    /// List and read.
    Read,
    /// List, read and write.
    ReadWrite,
}

/// A content key with its value, read from a locator to publish the same key elsewhere. Never stored.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContentKey {
    /// Key id.
    pub id: String,
    /// `labelReferenceInStreamingPolicy`.
    #[serde(default, rename = "labelReferenceInStreamingPolicy")]
    pub label: String,
    /// Base64 key bytes.
    pub value: String,
}

impl fmt::Debug for ContentKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ContentKey").field("id", &self.id).field("label", &self.label).finish_non_exhaustive()
    }
}

/// A streaming locator to create.
#[derive(Debug, Clone)]
pub struct LocatorSpec<'a> {
    /// Its asset.
    pub asset_name: &'a str,
    /// Its streaming policy.
    pub streaming_policy_name: &'a str,
    /// Its id.
    pub streaming_locator_id: &'a str,
    /// Content keys to use (with values) instead of letting the service generate them.
    pub content_keys: &'a [ContentKey],
}

impl LocatorSpec<'_> {
    /// The create body, the same on every wire that has locators (Media Services, Ravnur, MK.IO).
    pub(super) fn body(&self) -> Value {
        let mut properties = json!({
            "assetName": self.asset_name,
            "streamingPolicyName": self.streaming_policy_name,
            "streamingLocatorId": self.streaming_locator_id,
        });
        if !self.content_keys.is_empty() {
            let keys: Vec<Value> = self
                .content_keys
                .iter()
                .map(|k| json!({ "id": k.id, "labelReferenceInStreamingPolicy": k.label, "value": k.value }))
                .collect();
            properties["contentKeys"] = Value::Array(keys);
        }
        json!({ "properties": properties })
    }
}

/// The outcome of creating a locator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LocatorCreated {
    /// Created now.
    Created(LiveLocator),
    /// A locator of that name was already there (locators cannot be updated), as it reads back.
    Existing(LiveLocator),
    /// Refused with no locator of that name, e.g. the `streamingLocatorId` is used by another locator.
    Refused(MediaError),
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawLocatorProperties {
    asset_name: String,
    streaming_locator_id: String,
    streaming_policy_name: String,
    #[serde(default)]
    content_keys: Vec<RawKey>,
}

#[derive(Deserialize)]
struct RawKey {
    id: String,
    #[serde(default, rename = "labelReferenceInStreamingPolicy")]
    label: String,
}

pub(super) fn parse_locator(value: &Value) -> Result<LiveLocator, MediaError> {
    let props = value.get("properties").cloned().unwrap_or(Value::Null);
    let raw: RawLocatorProperties = serde_json::from_value(props)
        .map_err(|e| MediaError::Transient(format!("unreadable streaming locator: {e}")))?;
    Ok(LiveLocator {
        asset_name: raw.asset_name,
        streaming_locator_id: raw.streaming_locator_id.to_ascii_lowercase(),
        streaming_policy_name: raw.streaming_policy_name,
        content_keys: raw
            .content_keys
            .into_iter()
            .map(|k| ContentKeyRef { id: k.id.to_ascii_lowercase(), label: k.label })
            .collect(),
    })
}

impl ArmClient {
    async fn arm(
        &self,
        account: &AccountConfig,
        method: Method,
        url: &str,
        body: Option<&Value>,
    ) -> Result<Value, MediaError> {
        self.send(&Request { account, method, url, body, scope: ARM_SCOPE, headers: &[] }).await
    }

    /// `GET` that answers `None` for 404.
    async fn arm_get(&self, account: &AccountConfig, url: &str) -> Result<Option<Value>, MediaError> {
        match self.arm(account, Method::GET, url, None).await {
            Ok(v) => Ok(Some(v)),
            Err(MediaError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// A transform's `properties`, or `None` if it does not exist.
    pub async fn transform_properties(&self, account: &AccountConfig, name: &str) -> Result<Option<Value>, MediaError> {
        let url = format!("{}/transforms/{name}?api-version={TRANSFORMS_API}", base(account));
        Ok(self.arm_get(account, &url).await?.map(|v| v.get("properties").cloned().unwrap_or(Value::Null)))
    }

    /// Creates or replaces a transform (`body` is `{"properties": ...}`).
    pub async fn put_transform(&self, account: &AccountConfig, name: &str, body: &Value) -> Result<(), MediaError> {
        let url = format!("{}/transforms/{name}?api-version={TRANSFORMS_API}", base(account));
        self.arm(account, Method::PUT, &url, Some(body)).await.map(drop)
    }

    /// A content key policy's properties with its secrets (`getPolicyPropertiesWithSecrets`), or `None`.
    pub async fn content_key_policy_with_secrets(
        &self,
        account: &AccountConfig,
        name: &str,
    ) -> Result<Option<Value>, MediaError> {
        let url = format!(
            "{}/contentKeyPolicies/{name}/getPolicyPropertiesWithSecrets?api-version={METADATA_API}",
            base(account)
        );
        match self.arm(account, Method::POST, &url, None).await {
            Ok(v) => Ok(Some(v)),
            Err(MediaError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Creates or replaces a content key policy.
    pub async fn put_content_key_policy(
        &self,
        account: &AccountConfig,
        name: &str,
        body: &Value,
    ) -> Result<(), MediaError> {
        let url = format!("{}/contentKeyPolicies/{name}?api-version={METADATA_API}", base(account));
        self.arm(account, Method::PUT, &url, Some(body)).await.map(drop)
    }

    /// A streaming policy's properties, or `None`.
    pub async fn streaming_policy_properties(
        &self,
        account: &AccountConfig,
        name: &str,
    ) -> Result<Option<Value>, MediaError> {
        let url = format!("{}/streamingPolicies/{name}?api-version={METADATA_API}", base(account));
        Ok(self.arm_get(account, &url).await?.map(|v| v.get("properties").cloned().unwrap_or(Value::Null)))
    }

    /// Creates a streaming policy (create-only in Media Services). `false` if one of that name exists.
    pub async fn create_streaming_policy(
        &self,
        account: &AccountConfig,
        name: &str,
        body: &Value,
    ) -> Result<bool, MediaError> {
        let url = format!("{}/streamingPolicies/{name}?api-version={METADATA_API}", base(account));
        match self.arm(account, Method::PUT, &url, Some(body)).await {
            Ok(_) => Ok(true),
            // Only 201 and a default error are documented for a create, so a policy of that name may come
            // back as any 4xx: it exists if it reads back (the caller compares it).
            Err(error @ MediaError::Rejected { .. }) => match self.streaming_policy_properties(account, name).await? {
                Some(_) => Ok(false),
                None => Err(error),
            },
            Err(e) => Err(e),
        }
    }

    /// A SAS URL for an asset's container, valid until `expiry` (less than 24 h ahead).
    pub async fn container_sas(
        &self,
        account: &AccountConfig,
        asset: &str,
        permissions: SasPermissions,
        expiry: DateTime<Utc>,
    ) -> Result<SasUrl, MediaError> {
        let url = format!("{}/assets/{asset}/listContainerSas?api-version={METADATA_API}", base(account));
        let permissions = match permissions {
            SasPermissions::Read => "Read",
            SasPermissions::ReadWrite => "ReadWrite",
        };
        let body =
            json!({ "permissions": permissions, "expiryTime": expiry.to_rfc3339_opts(SecondsFormat::Secs, true) });
        let answer = self.arm(account, Method::POST, &url, Some(&body)).await?;
        let first = answer
            .get("assetContainerSasUrls")
            .and_then(Value::as_array)
            .and_then(|urls| urls.first())
            .and_then(Value::as_str)
            .ok_or_else(|| MediaError::Transient(format!("listContainerSas of {asset} returned no URL")))?;
        // The error names the asset only: the URL carries the signature.
        Url::parse(first)
            .map(SasUrl)
            .map_err(|_| MediaError::Transient(format!("listContainerSas of {asset} returned an unusable URL")))
    }

    /// Creates a streaming locator (create-only in Media Services).
    pub async fn create_locator(
        &self,
        account: &AccountConfig,
        name: &str,
        spec: &LocatorSpec<'_>,
    ) -> Result<LocatorCreated, MediaError> {
        let url = format!("{}/streamingLocators/{name}?api-version={METADATA_API}", base(account));
        match self.arm(account, Method::PUT, &url, Some(&spec.body())).await {
            Ok(created) => parse_locator(&created).map(LocatorCreated::Created),
            // Only 201 and a default error are documented for a create: after any 4xx, a locator that reads
            // back under the name is the existing one (the caller compares it); otherwise the refusal stands.
            Err(error @ MediaError::Rejected { .. }) => match self.get_locator(account, name).await? {
                Some(live) => Ok(LocatorCreated::Existing(live)),
                None => Ok(LocatorCreated::Refused(error)),
            },
            Err(e) => Err(e),
        }
    }

    /// A streaming locator, or `None`.
    pub async fn get_locator(&self, account: &AccountConfig, name: &str) -> Result<Option<LiveLocator>, MediaError> {
        let url = format!("{}/streamingLocators/{name}?api-version={METADATA_API}", base(account));
        match self.arm_get(account, &url).await? {
            Some(v) => parse_locator(&v).map(Some),
            None => Ok(None),
        }
    }

    /// A locator's content keys with their values (`listContentKeys`).
    pub async fn list_content_keys(&self, account: &AccountConfig, name: &str) -> Result<Vec<ContentKey>, MediaError> {
        let url = format!("{}/streamingLocators/{name}/listContentKeys?api-version={METADATA_API}", base(account));
        let answer = self.arm(account, Method::POST, &url, None).await?;
        let keys = answer.get("contentKeys").cloned().unwrap_or_else(|| json!([]));
        // The parse error is not shown: it could quote a key value.
        serde_json::from_value(keys).map_err(|_| MediaError::Transient(format!("unreadable content keys of {name}")))
    }

    /// A locator's streaming and download paths (`listPaths`).
    pub async fn list_paths(&self, account: &AccountConfig, name: &str) -> Result<LocatorPaths, MediaError> {
        let url = format!("{}/streamingLocators/{name}/listPaths?api-version={METADATA_API}", base(account));
        let answer = self.arm(account, Method::POST, &url, None).await?;
        serde_json::from_value(answer).map_err(|e| MediaError::Transient(format!("unreadable paths of {name}: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_print() {
        let sas = SasUrl(Url::parse("http://127.0.0.1:1/blob/s/c?sv=1&sig=SECRET").expect("url"));
        assert!(!format!("{sas:?}").contains("SECRET"));
        let key = ContentKey { id: "k".into(), label: "l".into(), value: "SECRETVALUE".into() };
        assert!(!format!("{key:?}").contains("SECRETVALUE"));
    }

    #[test]
    fn a_locator_resource_parses_with_lowercase_ids() {
        let v = json!({"name": "l", "properties": {"assetName": "a", "streamingLocatorId": "90000000-0000-0000-0000-00000000000A",
            "streamingPolicyName": "p", "contentKeys": [{"id": "60000000-0000-0000-0000-00000000000B", "type": "EnvelopeEncryption",
            "labelReferenceInStreamingPolicy": "aesDefaultKey", "tracks": []}]}});
        let l = parse_locator(&v).expect("parses");
        assert_eq!(l.streaming_locator_id, "90000000-0000-0000-0000-00000000000a");
        assert_eq!(l.content_keys[0].id, "60000000-0000-0000-0000-00000000000b");
    }
}
