//! Media Services and its successors, and the asset containers' blob calls (through `azure_storage_blob`):
//! the only place that talks to a media service and its storage.
//!
//! [`MediaClient`] is the one interface the rest of the product uses. Each account names its provider, and
//! the client hands the call to the wire that provider speaks: [`arm::ArmClient`] for Azure Media Services
//! and Ravnur (the same ARM API, different tokens; [`rms`] holds Ravnur's token), [`mkio::MkioClient`] for
//! MK.IO. `workflow`, `sweep` and `publish` never ask which one it is; where providers differ in what they
//! can do, the rules read [`crate::domain::Capabilities`].

pub mod arm;
pub mod blob;
pub mod delegation;
pub mod mkio;
pub mod mru;
pub mod rms;
pub mod streaming;

pub use arm::{AmsJob, AmsJobOutput, ArmClient, JobSpec, MediaError};
pub use mkio::MkioClient;
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
    mkio: MkioClient,
}

/// One provider's wire.
enum Wire<'a> {
    /// Azure Media Services and Ravnur.
    Arm(&'a ArmClient),
    /// MK.IO.
    Mkio(&'a MkioClient),
}

/// Calls `method` on the account's wire; every wire has the same method for each facade call.
macro_rules! route {
    ($self:ident, $account:ident, $method:ident($($arg:expr),*)) => {
        match $self.wire($account) {
            Wire::Arm(wire) => wire.$method($account, $($arg),*).await,
            Wire::Mkio(wire) => wire.$method($account, $($arg),*).await,
        }
    };
}

impl MediaClient {
    /// A client whose ARM calls authenticate per `auth`, each call given `timeout`.
    pub fn new(http: reqwest::Client, auth: &ArmAuth, timeout: Duration) -> azure_core::Result<Self> {
        let arm = ArmClient::new(http.clone(), auth, timeout)?;
        // The managed identity also signs MK.IO storages' user-delegation SAS.
        let mkio = MkioClient::new(http.clone(), timeout, arm.credential.clone());
        Ok(MediaClient { http, timeout, arm, mkio })
    }

    /// The wire the account's provider speaks.
    fn wire(&self, account: &AccountConfig) -> Wire<'_> {
        match account.provider {
            Provider::Ams | Provider::Rms => Wire::Arm(&self.arm),
            Provider::Mkio => Wire::Mkio(&self.mkio),
        }
    }

    /// The project's webhook rule `name` as the service shows it, or `None`; accounts whose events come
    /// through Event Grid have none.
    pub async fn webhook_rule(&self, account: &AccountConfig, name: &str) -> Result<Option<Value>, MediaError> {
        match self.wire(account) {
            Wire::Mkio(wire) => wire.webhook_rule(account, name).await,
            Wire::Arm(_) => Ok(None),
        }
    }

    /// Creates or replaces the project's webhook rule `name`; nothing for Event Grid accounts.
    pub async fn put_webhook_rule(&self, account: &AccountConfig, name: &str, body: &Value) -> Result<(), MediaError> {
        match self.wire(account) {
            Wire::Mkio(wire) => wire.put_webhook_rule(account, name, body).await,
            Wire::Arm(_) => Ok(()),
        }
    }

    /// Whether the account can take a new job's calls now: `false` only while the product's own request
    /// budget for it (MK.IO's rate limits) is spent, so placement tries another account, or waits, without
    /// recording a failed attempt.
    pub fn has_room(&self, account: &AccountConfig) -> bool {
        match self.wire(account) {
            Wire::Mkio(wire) => wire.has_room(account),
            Wire::Arm(_) => true,
        }
    }

    /// A refusal of the account's own API token (401/403) seen since the last call of this, if any: the
    /// sweep alerts about it. Accounts authenticated by the app's identity have none to report here.
    pub fn take_token_refusal(&self, account: &AccountConfig) -> Option<mkio::TokenRefusal> {
        match self.wire(account) {
            Wire::Mkio(wire) => wire.take_refusal(account),
            Wire::Arm(_) => None,
        }
    }

    /// Creates the output asset if it does not exist (an existing one is fine: names are deterministic).
    pub async fn ensure_asset(&self, account: &AccountConfig, asset: &str) -> Result<(), MediaError> {
        route!(self, account, ensure_asset(asset))
    }

    /// Creates the job, or returns the same job if a retry finds it already there.
    pub async fn create_job(
        &self,
        account: &AccountConfig,
        transform: &str,
        name: &str,
        spec: &JobSpec,
    ) -> Result<AmsJob, MediaError> {
        route!(self, account, create_job(transform, name, spec))
    }

    /// Checks that the account's API answers.
    pub async fn probe(&self, account: &AccountConfig, transform: &str) -> Result<(), MediaError> {
        route!(self, account, probe(transform))
    }

    /// Reads a job; `None` if it does not exist.
    pub async fn get_job(
        &self,
        account: &AccountConfig,
        transform: &str,
        name: &str,
    ) -> Result<Option<AmsJob>, MediaError> {
        route!(self, account, get_job(transform, name))
    }

    /// Asks the service to cancel a job (a no-op for a job that has ended).
    pub async fn cancel_job(&self, account: &AccountConfig, transform: &str, name: &str) -> Result<(), MediaError> {
        route!(self, account, cancel_job(transform, name))
    }

    /// Lists a transform's jobs matching an OData `$filter`, following every page.
    pub async fn list_jobs(
        &self,
        account: &AccountConfig,
        transform: &str,
        filter: Option<&str>,
    ) -> Result<Vec<AmsJob>, MediaError> {
        route!(self, account, list_jobs(transform, filter))
    }

    /// A transform's `properties`, or `None` if it does not exist.
    pub async fn transform_properties(&self, account: &AccountConfig, name: &str) -> Result<Option<Value>, MediaError> {
        route!(self, account, transform_properties(name))
    }

    /// Creates or replaces a transform.
    pub async fn put_transform(&self, account: &AccountConfig, name: &str, body: &Value) -> Result<(), MediaError> {
        route!(self, account, put_transform(name, body))
    }

    /// A content key policy's properties with its secrets, or `None` if it does not exist.
    pub async fn content_key_policy_with_secrets(
        &self,
        account: &AccountConfig,
        name: &str,
    ) -> Result<Option<Value>, MediaError> {
        route!(self, account, content_key_policy_with_secrets(name))
    }

    /// Creates or replaces a content key policy.
    pub async fn put_content_key_policy(
        &self,
        account: &AccountConfig,
        name: &str,
        body: &Value,
    ) -> Result<(), MediaError> {
        route!(self, account, put_content_key_policy(name, body))
    }

    /// A streaming policy's properties, or `None` if it does not exist.
    pub async fn streaming_policy_properties(
        &self,
        account: &AccountConfig,
        name: &str,
    ) -> Result<Option<Value>, MediaError> {
        route!(self, account, streaming_policy_properties(name))
    }

    /// Creates a streaming policy; `false` if one of that name was already there.
    pub async fn create_streaming_policy(
        &self,
        account: &AccountConfig,
        name: &str,
        body: &Value,
    ) -> Result<bool, MediaError> {
        route!(self, account, create_streaming_policy(name, body))
    }

    /// A signed URL of the asset's container.
    pub async fn container_sas(
        &self,
        account: &AccountConfig,
        asset: &str,
        permissions: SasPermissions,
        expiry: DateTime<Utc>,
    ) -> Result<SasUrl, MediaError> {
        route!(self, account, container_sas(asset, permissions, expiry))
    }

    /// Creates a streaming locator with the given id and keys.
    pub async fn create_locator(
        &self,
        account: &AccountConfig,
        name: &str,
        spec: &LocatorSpec<'_>,
    ) -> Result<LocatorCreated, MediaError> {
        route!(self, account, create_locator(name, spec))
    }

    /// A streaming locator as it is, or `None` if it does not exist.
    pub async fn get_locator(&self, account: &AccountConfig, name: &str) -> Result<Option<LiveLocator>, MediaError> {
        route!(self, account, get_locator(name))
    }

    /// A locator's content keys with their values.
    pub async fn list_content_keys(&self, account: &AccountConfig, name: &str) -> Result<Vec<ContentKey>, MediaError> {
        route!(self, account, list_content_keys(name))
    }

    /// A locator's streaming paths.
    pub async fn list_paths(&self, account: &AccountConfig, name: &str) -> Result<LocatorPaths, MediaError> {
        route!(self, account, list_paths(name))
    }

    /// The account's v2 endpoint for reserved units.
    pub async fn mru_endpoint(&self, account: &AccountConfig) -> Result<Url, MediaError> {
        route!(self, account, mru_endpoint())
    }

    /// Reads the account's reserved units.
    pub async fn get_reserved_units(&self, account: &AccountConfig) -> Result<ReservedUnits, MediaError> {
        route!(self, account, get_reserved_units())
    }

    /// Sets the account's reserved units to `count`, keeping the unit type.
    pub async fn set_reserved_units(
        &self,
        account: &AccountConfig,
        account_id: &str,
        unit_type: u8,
        count: u32,
    ) -> Result<(), MediaError> {
        route!(self, account, set_reserved_units(account_id, unit_type, count))
    }
}
