//! Media Reserved Units through the Media Services v2 REST endpoint (azure-contracts section 5), the way
//! azure-cli's `az ams account mru` does it: the endpoint is discovered from the account's ARM resource
//! (api-version 2015-10-01, `apiEndpoints` with major version 2), calls carry a token for
//! `https://rest.media.azure.net`, and updates PUT the whole `EncodingReservedUnitType`.

use super::arm::{base, ArmClient, Request};
use super::MediaError;
use crate::config::AccountConfig;
use reqwest::Method;
use serde::Deserialize;
use serde_json::{json, Value};
use url::Url;

const ACCOUNT_API: &str = "2015-10-01";
const V2_API: &str = "2.19";
const MEDIA_SCOPE: &str = "https://rest.media.azure.net/.default";
const ARM_SCOPE: &str = "https://management.azure.com/.default";
const V2_READ_HEADERS: [(&str, &str); 5] = [
    ("Accept", "application/json;odata=minimalmetadata"),
    ("Accept-Charset", "UTF-8"),
    ("DataServiceVersion", "3.0;NetFx"),
    ("MaxDataServiceVersion", "3.0;NetFx"),
    ("x-ms-version", V2_API),
];

/// An account's reserved units as the v2 endpoint reports them.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ReservedUnits {
    /// The account's v2 id, needed to update it.
    pub account_id: String,
    /// 0 = S1, 1 = S2, 2 = S3.
    pub reserved_unit_type: u8,
    /// Units provisioned now.
    pub current_reserved_units: u32,
    /// The most the account may have.
    #[serde(default = "default_max")]
    pub max_reservable_units: u32,
}

/// "By default, every Media Services account can scale to up to 25 encoding units."
fn default_max() -> u32 {
    25
}

impl ArmClient {
    /// The account's v2 endpoint (ending in `/`): the configured one, else discovered once from ARM.
    pub async fn mru_endpoint(&self, account: &AccountConfig) -> Result<Url, MediaError> {
        if let Some(url) = &account.mru_endpoint {
            return Ok(with_trailing_slash(url.clone()));
        }
        if let Some(url) = self.mru_endpoints.lock().ok().and_then(|m| m.get(&account.name).cloned()) {
            return Ok(url);
        }
        let url = format!("{}?api-version={ACCOUNT_API}", base(account));
        let resource = self
            .send(&Request { account, method: Method::GET, url: &url, body: None, scope: ARM_SCOPE, headers: &[] })
            .await?;
        let endpoints =
            resource.pointer("/properties/apiEndpoints").and_then(Value::as_array).cloned().unwrap_or_default();
        let chosen = endpoints
            .iter()
            .find(|e| e.get("majorVersion").and_then(Value::as_str) == Some("2"))
            .or_else(|| endpoints.first())
            .and_then(|e| e.get("endpoint"))
            .and_then(Value::as_str)
            .ok_or_else(|| MediaError::Rejected {
                status: 200,
                code: "NoApiEndpoint".to_owned(),
                message: format!(
                    "account {} advertises no v2 endpoint; is it an automatic (2020-05-01+) account?",
                    account.name
                ),
            })?;
        let url = Url::parse(chosen).map_err(|e| MediaError::Transient(format!("bad v2 endpoint {chosen:?}: {e}")))?;
        let url = with_trailing_slash(url);
        if let Ok(mut cache) = self.mru_endpoints.lock() {
            cache.insert(account.name.clone(), url.clone());
        }
        Ok(url)
    }

    /// Reads the account's reserved units.
    pub async fn get_reserved_units(&self, account: &AccountConfig) -> Result<ReservedUnits, MediaError> {
        let endpoint = self.mru_endpoint(account).await?;
        let url = format!("{endpoint}EncodingReservedUnitTypes?api-version={V2_API}");
        let answer = self
            .send(&Request {
                account,
                method: Method::GET,
                url: &url,
                body: None,
                scope: MEDIA_SCOPE,
                headers: &V2_READ_HEADERS,
            })
            .await?;
        let first = answer.get("value").and_then(Value::as_array).and_then(|v| v.first()).cloned().unwrap_or(answer);
        serde_json::from_value(first)
            .map_err(|e| MediaError::Transient(format!("unreadable EncodingReservedUnitType: {e}")))
    }

    /// Sets the account's reserved units to `count`, keeping the unit type.
    pub async fn set_reserved_units(
        &self,
        account: &AccountConfig,
        account_id: &str,
        unit_type: u8,
        count: u32,
    ) -> Result<(), MediaError> {
        let endpoint = self.mru_endpoint(account).await?;
        let url = format!("{endpoint}EncodingReservedUnitTypes(guid'{account_id}')?api-version={V2_API}");
        let body = json!({ "ReservedUnitType": unit_type, "CurrentReservedUnits": count });
        let mut headers = V2_READ_HEADERS.to_vec();
        headers.push(("Content-Type", "application/json;odata=minimalmetadata"));
        self.send(&Request {
            account,
            method: Method::PUT,
            url: &url,
            body: Some(&body),
            scope: MEDIA_SCOPE,
            headers: &headers,
        })
        .await
        .map(drop)
    }
}

fn with_trailing_slash(mut url: Url) -> Url {
    if !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    url
}
