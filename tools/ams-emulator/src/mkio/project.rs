//! What an MK.IO project holds beyond the media resources it shares with the other modes (transforms,
//! assets, jobs and publication live on the `Account` as for Media Services): its location, registered
//! storage, webhook rules with their delivery history, and its request meter.

use std::collections::{BTreeMap, VecDeque};

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::config::MkioConfig;
use super::ratelimit::RequestMeter;
use crate::blob;
use crate::model::{stable_guid, Account};

/// Expiry of the configured SAS the control API hands out: fixed, so the same string works on every run.
pub const CONFIGURED_SAS_EXPIRY: &str = "2099-12-31T00:00:00Z";
/// Permissions of the configured SAS: everything a client needs to copy assets between projects.
pub const CONFIGURED_SAS_PERMISSIONS: &str = "racwdl";
/// Delivery records kept per project (oldest dropped first), so a long demo does not grow without bound.
pub const DELIVERIES_KEPT: usize = 10_000;

/// A storage registration (`PUT .../media/storage/{name}`): MK.IO's record of a customer's storage.
#[derive(Debug, Clone)]
pub struct RegisteredStorage {
    /// Name as first given.
    pub name: String,
    /// `metadata.id`.
    pub id: uuid::Uuid,
    /// `spec.url` as given.
    pub url: String,
    /// The emulator storage account the URL names.
    pub storage_account: String,
    /// `spec.description`.
    pub description: Option<String>,
    /// `spec.credential.sasToken` as given (with its leading `?`).
    pub sas_token: String,
    /// `se` of the SAS.
    pub signed_expiry: String,
    /// `st` of the SAS, if any.
    pub signed_start: Option<String>,
    /// `status.activeCredentialId`.
    pub credential_id: uuid::Uuid,
    /// Creation time.
    pub created: DateTime<Utc>,
    /// Last update.
    pub updated: DateTime<Utc>,
}

/// A webhook rule (`PUT .../webhook/rules/{name}`, management-api.json `WebhookRuleSpecSchema`).
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookRule {
    /// Name as first given.
    pub name: String,
    /// `metadata.id`.
    pub id: uuid::Uuid,
    /// `spec.enabled`.
    pub enabled: bool,
    /// `spec.url`.
    pub url: String,
    /// `spec.events`.
    pub events: Vec<String>,
    /// `spec.headers`.
    pub headers: BTreeMap<String, String>,
    /// `spec.queryParams`.
    pub query_params: BTreeMap<String, String>,
    /// `spec.authentication.headers` (write-only).
    pub auth_headers: BTreeMap<String, String>,
    /// `spec.authentication.queryParams` (write-only).
    pub auth_query_params: BTreeMap<String, String>,
}

/// Send status of one delivery, as `GET .../webhook/rules/{name}/events` spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum DeliveryStatus {
    /// Not attempted yet.
    Pending,
    /// Failed at least once, another attempt is scheduled.
    Retrying,
    /// Given up.
    Failed,
    /// Accepted by the receiver with a 2xx.
    Sent,
}

/// One delivery of one event to one rule.
#[derive(Debug, Clone)]
pub struct DeliveryRecord {
    /// Emulator-wide sequence number of the delivery.
    pub seq: u64,
    /// Lowercase rule name.
    pub rule: String,
    /// CloudEvent `id`.
    pub event_id: String,
    /// CloudEvent `type`.
    pub event_type: String,
    /// CloudEvent `source`.
    pub source: String,
    /// When the event was raised.
    pub created: DateTime<Utc>,
    /// Send status.
    pub status: DeliveryStatus,
    /// Attempts made.
    pub attempts: u32,
    /// Status or error of the last attempt.
    pub last_result: Option<String>,
}

/// The MK.IO side of an account.
#[derive(Debug, Clone)]
pub struct Project {
    /// `supplemental.subscription.id` and `systemData` ids derive from it.
    pub id: uuid::Uuid,
    /// Registered storage by lowercase name.
    pub storages: BTreeMap<String, RegisteredStorage>,
    /// Lowercase name of the storage jobs create their output assets in: the first registered.
    pub default_storage: Option<String>,
    /// `containerDeletionPolicy` of assets that set one, by lowercase asset name.
    pub deletion_policies: BTreeMap<String, String>,
    /// Webhook rules by lowercase name.
    pub rules: BTreeMap<String, WebhookRule>,
    /// Deliveries, oldest first.
    pub deliveries: VecDeque<DeliveryRecord>,
    /// Request accounting and rate limits.
    pub meter: RequestMeter,
}

impl Project {
    /// The project of `account`, with the account's own storage registered unless the configuration says not.
    pub fn new(cfg: &MkioConfig, account: &Account, base_url: &str, now: DateTime<Utc>) -> Project {
        let mut project = Project {
            id: stable_guid(&format!("ams-emulator/mkio/project/{}", account.name.to_ascii_lowercase())),
            storages: BTreeMap::new(),
            default_storage: None,
            deletion_policies: BTreeMap::new(),
            rules: BTreeMap::new(),
            deliveries: VecDeque::new(),
            meter: RequestMeter::new(cfg.reads_per_window, cfg.writes_per_window, cfg.window),
        };
        if cfg.default_storage {
            let name = account.storage.name.clone();
            project.register(RegisteredStorage {
                name: name.clone(),
                id: stable_guid(&format!("ams-emulator/mkio/storage/{name}")),
                url: blob_url(base_url, &name),
                storage_account: name,
                description: Some("Registered by the emulator at start-up.".into()),
                sas_token: format!("?{}", configured_sas(account)),
                signed_expiry: CONFIGURED_SAS_EXPIRY.into(),
                signed_start: None,
                credential_id: uuid::Uuid::new_v4(),
                created: now,
                updated: now,
            });
        }
        project
    }

    /// Adds or replaces a registration; the first one registered becomes the default.
    pub fn register(&mut self, storage: RegisteredStorage) {
        let key = storage.name.to_ascii_lowercase();
        if self.default_storage.is_none() {
            self.default_storage = Some(key.clone());
        }
        self.storages.insert(key, storage);
    }

    /// Removes a registration; the oldest remaining one becomes the default.
    pub fn unregister(&mut self, name: &str) -> Option<RegisteredStorage> {
        let removed = self.storages.remove(&name.to_ascii_lowercase())?;
        if self.default_storage.as_deref() == Some(name.to_ascii_lowercase().as_str()) {
            self.default_storage =
                self.storages.values().min_by_key(|s| (s.created, s.name.clone())).map(|s| s.name.to_ascii_lowercase());
        }
        Some(removed)
    }

    /// Appends a delivery record, dropping the oldest past [`DELIVERIES_KEPT`].
    pub fn push_delivery(&mut self, record: DeliveryRecord) {
        self.deliveries.push_back(record);
        while self.deliveries.len() > DELIVERIES_KEPT {
            self.deliveries.pop_front();
        }
    }

    /// The delivery with sequence number `seq`.
    pub fn delivery_mut(&mut self, seq: u64) -> Option<&mut DeliveryRecord> {
        self.deliveries.iter_mut().rev().find(|d| d.seq == seq)
    }
}

/// `http://127.0.0.1:PORT/blob/{storage}`: the blob endpoint of an emulator storage account, as a
/// registration's `spec.url` names it.
pub fn blob_url(base_url: &str, storage: &str) -> String {
    format!("{base_url}{}{storage}", blob::PREFIX)
}

/// The account SAS a client is configured with for `account`'s storage (blob service, every container).
pub fn configured_sas(account: &Account) -> String {
    account.storage.account_sas(CONFIGURED_SAS_PERMISSIONS, CONFIGURED_SAS_EXPIRY)
}
