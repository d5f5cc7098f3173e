//! Media Services and its successors, and the asset containers' blob calls (through `azure_storage_blob`):
//! the only place that talks to a media service and its storage.
//!
//! [`MediaClient`] is the one interface the rest of the product uses. Each account names its provider, and
//! the client hands the call to the wire that provider speaks: [`arm::ArmClient`] for Azure Media Services
//! and Ravnur (the same ARM API, different tokens; [`rms`] holds Ravnur's token). `workflow`, `sweep` and `publish` never ask which one it
//! is; where providers differ in what they can do, the rules read [`crate::domain::Capabilities`].

pub mod arm;
pub mod blob;
pub mod mru;
pub mod rms;
pub mod streaming;

pub use arm::{AmsJob, AmsJobOutput, ArmClient, JobSpec, MediaError};
pub use mru::ReservedUnits;

use crate::config::{AccountConfig, ArmAuth};
use crate::domain::publication::{LiveLocator, LocatorPaths};
use crate::domain::Provider;
use chrono::{DateTime, Utc};
use serde_json::Value;
use std::time::Duration;
use streaming::{ContentKey, LocatorCreated, LocatorSpec, SasPermissions, SasUrl};
use url::Url;

/// Every media call of the product, routed to the wire of the account's provider.
#[derive(Clone, Debug)]
pub struct MediaClient {
    pub(super) http: reqwest::Client,
    pub(super) timeout: Duration,
    arm: ArmClient,
}

impl MediaClient {
    /// A client whose ARM calls authenticate per `auth`, each call given `timeout`.
    pub fn new(http: reqwest::Client, auth: &ArmAuth, timeout: Duration) -> azure_core::Result<Self> {
        let arm = ArmClient::new(http.clone(), auth, timeout)?;
        Ok(MediaClient { http, timeout, arm })
    }

    /// The wire the account's provider speaks.
    fn wire(&self, account: &AccountConfig) -> &ArmClient {
        match account.provider {
            Provider::Ams | Provider::Rms | Provider::Mkio => &self.arm,
        }
    }

    /// Creates the output asset if it does not exist (an existing one is fine: names are deterministic).
    pub async fn ensure_asset(&self, account: &AccountConfig, asset: &str) -> Result<(), MediaError> {
        self.wire(account).ensure_asset(account, asset).await
    }

    /// Creates the job, or returns the same job if a retry finds it already there.
    pub async fn create_job(
        &self,
        account: &AccountConfig,
        transform: &str,
        name: &str,
        spec: &JobSpec,
    ) -> Result<AmsJob, MediaError> {
        self.wire(account).create_job(account, transform, name, spec).await
    }

    /// Checks that the account's API answers.
    pub async fn probe(&self, account: &AccountConfig, transform: &str) -> Result<(), MediaError> {
        self.wire(account).probe(account, transform).await
    }

    /// Reads a job; `None` if it does not exist.
    pub async fn get_job(
        &self,
        account: &AccountConfig,
        transform: &str,
        name: &str,
    ) -> Result<Option<AmsJob>, MediaError> {
        self.wire(account).get_job(account, transform, name).await
    }

    /// Asks the service to cancel a job (a no-op for a job that has ended).
    pub async fn cancel_job(&self, account: &AccountConfig, transform: &str, name: &str) -> Result<(), MediaError> {
        self.wire(account).cancel_job(account, transform, name).await
    }

    /// Lists a transform's jobs matching an OData `$filter`, following every page.
    pub async fn list_jobs(
        &self,
        account: &AccountConfig,
        transform: &str,
        filter: Option<&str>,
    ) -> Result<Vec<AmsJob>, MediaError> {
        self.wire(account).list_jobs(account, transform, filter).await
    }

    /// A transform's `properties`, or `None` if it does not exist.
    pub async fn transform_properties(&self, account: &AccountConfig, name: &str) -> Result<Option<Value>, MediaError> {
        self.wire(account).transform_properties(account, name).await
    }

    /// Creates or replaces a transform.
    pub async fn put_transform(&self, account: &AccountConfig, name: &str, body: &Value) -> Result<(), MediaError> {
        self.wire(account).put_transform(account, name, body).await
    }

    /// A content key policy's properties with its secrets, or `None` if it does not exist.
    pub async fn content_key_policy_with_secrets(
        &self,
        account: &AccountConfig,
        name: &str,
    ) -> Result<Option<Value>, MediaError> {
        self.wire(account).content_key_policy_with_secrets(account, name).await
    }

    /// Creates or replaces a content key policy.
    pub async fn put_content_key_policy(
        &self,
        account: &AccountConfig,
        name: &str,
        body: &Value,
    ) -> Result<(), MediaError> {
        self.wire(account).put_content_key_policy(account, name, body).await
    }

    /// A streaming policy's properties, or `None` if it does not exist.
    pub async fn streaming_policy_properties(
        &self,
        account: &AccountConfig,
        name: &str,
    ) -> Result<Option<Value>, MediaError> {
        self.wire(account).streaming_policy_properties(account, name).await
    }

    /// Creates a streaming policy; `false` if one of that name was already there.
    pub async fn create_streaming_policy(
        &self,
        account: &AccountConfig,
        name: &str,
        body: &Value,
    ) -> Result<bool, MediaError> {
        self.wire(account).create_streaming_policy(account, name, body).await
    }

    /// A signed URL of the asset's container.
    pub async fn container_sas(
        &self,
        account: &AccountConfig,
        asset: &str,
        permissions: SasPermissions,
        expiry: DateTime<Utc>,
    ) -> Result<SasUrl, MediaError> {
        self.wire(account).container_sas(account, asset, permissions, expiry).await
    }

    /// Creates a streaming locator with the given id and keys.
    pub async fn create_locator(
        &self,
        account: &AccountConfig,
        name: &str,
        spec: &LocatorSpec<'_>,
    ) -> Result<LocatorCreated, MediaError> {
        self.wire(account).create_locator(account, name, spec).await
    }

    /// A streaming locator as it is, or `None` if it does not exist.
    pub async fn get_locator(&self, account: &AccountConfig, name: &str) -> Result<Option<LiveLocator>, MediaError> {
        self.wire(account).get_locator(account, name).await
    }

    /// A locator's content keys with their values.
    pub async fn list_content_keys(&self, account: &AccountConfig, name: &str) -> Result<Vec<ContentKey>, MediaError> {
        self.wire(account).list_content_keys(account, name).await
    }

    /// A locator's streaming paths.
    pub async fn list_paths(&self, account: &AccountConfig, name: &str) -> Result<LocatorPaths, MediaError> {
        self.wire(account).list_paths(account, name).await
    }

    /// The account's v2 endpoint for reserved units.
    pub async fn mru_endpoint(&self, account: &AccountConfig) -> Result<Url, MediaError> {
        self.wire(account).mru_endpoint(account).await
    }

    /// Reads the account's reserved units.
    pub async fn get_reserved_units(&self, account: &AccountConfig) -> Result<ReservedUnits, MediaError> {
        self.wire(account).get_reserved_units(account).await
    }

    /// Sets the account's reserved units to `count`, keeping the unit type.
    pub async fn set_reserved_units(
        &self,
        account: &AccountConfig,
        account_id: &str,
        unit_type: u8,
        count: u32,
    ) -> Result<(), MediaError> {
        self.wire(account).set_reserved_units(account, account_id, unit_type, count).await
    }
}
