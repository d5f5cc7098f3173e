//! The MK.IO wire: the AMS v3 shapes at `{mkioEndpoint}/api/v1/projects/{project}/media/...`, no
//! api-version, `Authorization: Bearer <token>`, MK.IO's error body ([`error`]), its per-project rate limits
//! kept on the client side ([`budget`]), and the webhook rules that replace Event Grid.
//!
//! What differs from Media Services, and how the calls here answer the facade the same way:
//! - a job creates its own output asset, so `ensure_asset` is only used for copies between projects, where
//!   the asset points at a container of the project's registered storage;
//! - there is no `listContainerSas`: [`MkioClient::container_sas`] reads the asset's container and signs it
//!   with the product's own credential for that storage: a SAS configured per account, or a user-delegation
//!   SAS signed with the product's identity ([`super::delegation`]);
//! - content key policies are created with PUT and changed with PATCH;
//! - an existing resource may be refused with 400 "... already exists.", and an empty list may be 404;
//! - there are no reserved units.
//!
//! Every failed call is logged with MK.IO's `ref`, and the `ref` is part of the error's message.

pub mod budget;
pub mod error;

use super::arm::{parse_job, retry_after, same_job, send_failed, AmsJob, JobSpec, MediaError};
use super::delegation::{self, DelegationKeys};
use super::mru::ReservedUnits;
use super::streaming::{parse_locator, ContentKey, LocatorCreated, LocatorSpec, SasPermissions, SasUrl};
use crate::config::{AccountConfig, MkioAccount, StorageCredential};
use crate::domain::credential::CredentialStatus;
use crate::domain::publication::{LiveLocator, LocatorPaths};
use budget::{CallKind, ProjectBudget, Refusal};
use chrono::{DateTime, Utc};
use error::{classify, is_already_exists, MkioErrorBody};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use url::Url;

/// The longest a call waits for its turn (budget or back-off) before it is refused: a submission then moves
/// to another region rather than holding its invocation, and the sweep is not held up either.
pub const MAX_WAIT: Duration = Duration::from_secs(2);

/// Tries of one call when MK.IO answers 429 and the back-off is short enough to wait out.
const THROTTLE_TRIES: usize = 2;

/// A refusal of the token (401/403) the sweep has not reported yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRefusal {
    /// HTTP status.
    pub status: u16,
    /// What MK.IO said, with its `ref`.
    pub message: String,
}

/// The MK.IO client. Cheap to clone; the budgets are shared by every call of this instance.
#[derive(Clone, Debug)]
pub struct MkioClient {
    http: reqwest::Client,
    timeout: Duration,
    /// Per project (endpoint and project name), so two accounts naming one project share its limits.
    budgets: Arc<Mutex<HashMap<String, ProjectBudget>>>,
    /// The last refusal of each account's token, until the sweep takes it to alert.
    refusals: Arc<Mutex<HashMap<String, TokenRefusal>>>,
    /// User delegation keys for the registered storages that have no configured SAS.
    delegation: DelegationKeys,
}

fn project_of(account: &AccountConfig) -> Result<&MkioAccount, MediaError> {
    account.mkio.as_ref().ok_or_else(|| MediaError::Rejected {
        status: 400,
        code: "NotAnMkioAccount".to_owned(),
        message: format!("account {} has no MK.IO project configured", account.name),
    })
}

/// The container an asset copied into this project's storage lives in: deterministic (a retry finds the
/// same one), valid for MK.IO and Azure (lowercase letters, digits and single dashes, at most 63), and
/// distinct per asset even when two projects share one storage account.
pub fn container_for(asset: &str) -> String {
    let digest: String = Sha256::digest(asset.as_bytes()).iter().take(16).map(|b| format!("{b:02x}")).collect();
    format!("asset-{digest}")
}

/// The name of the webhook rule the product keeps in each MK.IO project.
pub const WEBHOOK_RULE: &str = "ams-failover-jobs";

/// The job events the rule subscribes to: the only two MK.IO has for jobs.
pub const WEBHOOK_EVENTS: [&str; 2] = ["MediaKind.JobStarted", "MediaKind.JobFinished"];

/// The webhook rule delivering job events to `url` with the shared secret in `secret_header` (under
/// `authentication`, which MK.IO keeps write-only).
pub fn webhook_rule_body(url: &str, secret_header: &str, secret: &str) -> Value {
    json!({ "spec": {
        "enabled": true,
        "url": url,
        "events": WEBHOOK_EVENTS,
        "headers": {},
        "queryParams": {},
        "authentication": { "headers": { secret_header: secret }, "queryParams": {} },
    }})
}

/// Whether `live` (a webhook rule as GET returns it) differs from `wanted` (the rule the product PUTs) in
/// what a GET shows: url, enabled, events, and the names of the authentication headers. Their values are
/// write-only (read back masked), so a changed secret is caught by the definitions digest instead.
pub fn webhook_drift(wanted: &Value, live: &Value) -> Vec<String> {
    let spec = |v: &Value, p: &str| v.pointer(&format!("/spec/{p}")).cloned().unwrap_or(Value::Null);
    let mut found = Vec::new();
    for field in ["url", "enabled"] {
        if spec(wanted, field) != spec(live, field) {
            found.push(format!("spec.{field}"));
        }
    }
    let events = |v: &Value| {
        let mut list: Vec<String> =
            spec(v, "events").as_array().into_iter().flatten().filter_map(Value::as_str).map(str::to_owned).collect();
        list.sort();
        list
    };
    if events(wanted) != events(live) {
        found.push("spec.events".to_owned());
    }
    let header_names = |v: &Value| {
        let mut names: Vec<String> = spec(v, "authentication/headers")
            .as_object()
            .map(|m| m.keys().map(|k| k.to_ascii_lowercase()).collect())
            .unwrap_or_default();
        names.sort();
        names
    };
    if header_names(wanted) != header_names(live) {
        found.push("spec.authentication.headers".to_owned());
    }
    found
}

impl MkioClient {
    /// A client sharing `http`, giving each call `timeout`.
    /// A client whose storage calls without a configured SAS get user delegation keys with `credential`.
    pub fn new(
        http: reqwest::Client,
        timeout: Duration,
        credential: Option<Arc<dyn azure_core::credentials::TokenCredential>>,
    ) -> MkioClient {
        let delegation = DelegationKeys::new(http.clone(), credential, timeout);
        MkioClient { http, timeout, budgets: Arc::default(), refusals: Arc::default(), delegation }
    }

    fn media_url(mkio: &MkioAccount, path: &str) -> String {
        format!("{}/api/v1/projects/{}/media/{path}", mkio.endpoint.as_str().trim_end_matches('/'), mkio.project)
    }

    fn webhook_url(mkio: &MkioAccount, name: &str) -> String {
        format!(
            "{}/api/v1/projects/{}/webhook/rules/{name}",
            mkio.endpoint.as_str().trim_end_matches('/'),
            mkio.project
        )
    }

    /// Waits for the call's turn in its project's budget, or refuses it.
    async fn admit(&self, account: &AccountConfig, mkio: &MkioAccount, kind: CallKind) -> Result<(), MediaError> {
        let key = format!("{}|{}", mkio.endpoint, mkio.project);
        let admitted = {
            let mut budgets = self.budgets.lock().map_err(|_| MediaError::Transient("budget lock poisoned".into()))?;
            let now = Instant::now();
            budgets
                .entry(key)
                .or_insert_with(|| ProjectBudget::new(mkio.reads_per_minute, mkio.writes_per_minute, now))
                .admit(kind, now, MAX_WAIT)
        };
        match admitted {
            Ok(wait) => {
                if !wait.is_zero() {
                    tokio::time::sleep(wait).await;
                }
                Ok(())
            }
            Err(refusal) => {
                let reason = match refusal {
                    Refusal::Budget { kind, wait } => format!(
                        "{:?} budget of project {} is spent for the next {:.1}s",
                        kind,
                        mkio.project,
                        wait.as_secs_f64()
                    ),
                    Refusal::BackingOff { wait } => format!(
                        "project {} answered 429; backing off for {:.1}s more",
                        mkio.project,
                        wait.as_secs_f64()
                    ),
                };
                tracing::debug!(account = %account.name, region = %account.region, %reason, "MK.IO call not sent");
                Err(MediaError::OverBudget(reason))
            }
        }
    }

    /// Whether a write to the account's project would be sent within [`MAX_WAIT`] now.
    pub fn has_room(&self, account: &AccountConfig) -> bool {
        let Some(mkio) = account.mkio.as_ref() else { return true };
        let key = format!("{}|{}", mkio.endpoint, mkio.project);
        let Ok(mut budgets) = self.budgets.lock() else { return true };
        let now = Instant::now();
        budgets
            .entry(key)
            .or_insert_with(|| ProjectBudget::new(mkio.reads_per_minute, mkio.writes_per_minute, now))
            .has_room(CallKind::Write, now, MAX_WAIT)
    }

    fn backoff(&self, mkio: &MkioAccount, outcome: Result<(), Option<Duration>>) -> Duration {
        let key = format!("{}|{}", mkio.endpoint, mkio.project);
        let Ok(mut budgets) = self.budgets.lock() else { return Duration::MAX };
        let Some(budget) = budgets.get_mut(&key) else { return Duration::ZERO };
        match outcome {
            Ok(()) => {
                budget.backoff.succeeded();
                Duration::ZERO
            }
            Err(retry_after) => budget.backoff.throttled(Instant::now(), retry_after),
        }
    }

    /// One call with the budget, the back-off after 429, and the token check. Returns the JSON body
    /// (`Null` when empty).
    async fn call(
        &self,
        account: &AccountConfig,
        method: Method,
        url: &str,
        body: Option<&Value>,
    ) -> Result<Value, MediaError> {
        let mkio = project_of(account)?;
        if let CredentialStatus::Expired { expires_at } = CredentialStatus::at(mkio.token.expires_at, Utc::now()) {
            // MK.IO would refuse it: say why without spending a call, and as the account's fault, so the
            // region leaves rotation and the sweep alerts.
            return Err(MediaError::Account {
                status: 401,
                code: "TokenExpired".to_owned(),
                message: format!(
                    "the MK.IO token in {} expired at {}; put a new token in the setting",
                    mkio.token.setting,
                    expires_at.to_rfc3339()
                ),
            });
        }
        let kind = if method == Method::GET { CallKind::Read } else { CallKind::Write };
        let mut tries = 0;
        loop {
            self.admit(account, mkio, kind).await?;
            match self.send_once(account, mkio, &method, url, body).await {
                Err(MediaError::Throttled { retry_after }) => {
                    tries += 1;
                    let wait = self.backoff(mkio, Err(retry_after));
                    tracing::warn!(account = %account.name, region = %account.region, %url, ?wait, "MK.IO answered 429; backing off");
                    // The next try waits out the back-off in `admit` if it is short; otherwise the caller
                    // hears of the throttling now and moves on.
                    if tries >= THROTTLE_TRIES || wait > MAX_WAIT {
                        return Err(MediaError::Throttled { retry_after: Some(wait) });
                    }
                }
                other => {
                    if other.is_ok() {
                        self.backoff(mkio, Ok(()));
                    }
                    return other;
                }
            }
        }
    }

    async fn send_once(
        &self,
        account: &AccountConfig,
        mkio: &MkioAccount,
        method: &Method,
        url: &str,
        body: Option<&Value>,
    ) -> Result<Value, MediaError> {
        let mut request = self
            .http
            .request(method.clone(), url)
            .timeout(self.timeout)
            .bearer_auth(mkio.token.value.expose())
            .header(reqwest::header::ACCEPT, "application/json");
        request = match body {
            Some(body) => request.header(reqwest::header::CONTENT_TYPE, "application/json").body(body.to_string()),
            None => request.header(reqwest::header::CONTENT_LENGTH, "0"),
        };
        let response = request.send().await.map_err(|e| send_failed("MK.IO call", &e))?;
        let status = response.status();
        let retry_after = retry_after(response.headers());
        let text = response
            .text()
            .await
            .map_err(|e| MediaError::Transient(format!("reading the MK.IO answer failed: {e}")))?;
        if status.is_success() {
            return if text.trim().is_empty() {
                Ok(Value::Null)
            } else {
                serde_json::from_str(&text)
                    .map_err(|e| MediaError::Transient(format!("MK.IO answered {status} with invalid JSON: {e}")))
            };
        }
        let answer = MkioErrorBody::parse(&text);
        let error = classify(status, &answer, retry_after);
        let mkio_ref = answer.reference.as_deref().unwrap_or("-");
        if status == StatusCode::NOT_FOUND {
            tracing::debug!(account = %account.name, region = %account.region, %method, %url, mkio_ref, code = %answer.code, "MK.IO answered 404");
        } else {
            tracing::warn!(account = %account.name, region = %account.region, %method, %url, status = status.as_u16(), mkio_ref, code = %answer.code, detail = %answer.detail, "MK.IO call failed");
        }
        if matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) {
            if let Ok(mut refusals) = self.refusals.lock() {
                refusals.insert(
                    account.name.clone(),
                    TokenRefusal { status: status.as_u16(), message: format!("{}: {}", answer.code, answer.message()) },
                );
            }
        }
        Err(error)
    }

    /// `GET` that answers `None` for 404.
    async fn get_opt(&self, account: &AccountConfig, url: &str) -> Result<Option<Value>, MediaError> {
        match self.call(account, Method::GET, url, None).await {
            Ok(v) => Ok(Some(v)),
            Err(MediaError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The refusal of the account's token since the last time it was taken, if any.
    pub fn take_refusal(&self, account: &AccountConfig) -> Option<TokenRefusal> {
        self.refusals.lock().ok().and_then(|mut r| r.remove(&account.name))
    }

    /// Creates the asset of a copy from another project: it points at [`container_for`] in the project's
    /// registered storage, which MK.IO creates if missing. An asset of that name already there is fine (a
    /// retry), as long as it points at that container.
    pub async fn ensure_asset(&self, account: &AccountConfig, asset: &str) -> Result<(), MediaError> {
        let mkio = project_of(account)?;
        let url = Self::media_url(mkio, &format!("assets/{asset}"));
        let container = container_for(asset);
        let body = json!({ "properties": {
            "storageAccountName": mkio.storage.name,
            "container": container,
            "description": "copy of an encoding output from another region",
        }});
        match self.call(account, Method::PUT, &url, Some(&body)).await {
            Ok(_) => Ok(()),
            Err(error @ MediaError::Rejected { .. }) => {
                let live = self.get_opt(account, &url).await?;
                match live.as_ref().and_then(|v| v.pointer("/properties/container")).and_then(Value::as_str) {
                    Some(found) if found == container => Ok(()),
                    _ => Err(error),
                }
            }
            Err(e) => Err(e),
        }
    }

    /// Creates the job (its output asset is made by MK.IO). A job of that name already there is returned
    /// if it is this job, so a retry never makes a second one.
    pub async fn create_job(
        &self,
        account: &AccountConfig,
        transform: &str,
        name: &str,
        spec: &JobSpec,
    ) -> Result<AmsJob, MediaError> {
        let mkio = project_of(account)?;
        let url = Self::media_url(mkio, &format!("transforms/{transform}/jobs/{name}"));
        let mut input = json!({ "@odata.type": "#Microsoft.Media.JobInputHttp", "files": spec.files });
        if let Some(base_uri) = &spec.base_uri {
            input["baseUri"] = json!(base_uri);
        }
        let outputs: Vec<Value> = spec
            .output_assets
            .iter()
            .map(|asset| json!({ "@odata.type": "#Microsoft.Media.JobOutputAsset", "assetName": asset }))
            .collect();
        let body = json!({ "properties": {
            "input": input,
            "outputs": outputs,
            "priority": spec.priority,
            "correlationData": spec.correlation_data,
        }});
        match self.call(account, Method::PUT, &url, Some(&body)).await {
            Ok(value) => parse_job(value),
            // MK.IO may refuse an existing name with 400 or 409: read it back, and take it only if it is ours.
            Err(error @ MediaError::Rejected { .. }) => match self.get_job(account, transform, name).await? {
                Some(existing) if same_job(&existing, spec) => Ok(existing),
                _ => Err(error),
            },
            Err(e) => Err(e),
        }
    }

    /// Checks that the project's API answers (and takes the token): reads a transform. A missing transform
    /// still proves it (the definitions sync repairs it).
    pub async fn probe(&self, account: &AccountConfig, transform: &str) -> Result<(), MediaError> {
        let url = Self::media_url(project_of(account)?, &format!("transforms/{transform}"));
        self.get_opt(account, &url).await.map(drop)
    }

    /// Reads a job; `None` if it does not exist.
    pub async fn get_job(
        &self,
        account: &AccountConfig,
        transform: &str,
        name: &str,
    ) -> Result<Option<AmsJob>, MediaError> {
        let url = Self::media_url(project_of(account)?, &format!("transforms/{transform}/jobs/{name}"));
        match self.get_opt(account, &url).await? {
            Some(value) => parse_job(value).map(Some),
            None => Ok(None),
        }
    }

    /// Asks MK.IO to cancel a job.
    pub async fn cancel_job(&self, account: &AccountConfig, transform: &str, name: &str) -> Result<(), MediaError> {
        let url = Self::media_url(project_of(account)?, &format!("transforms/{transform}/jobs/{name}/cancelJob"));
        self.call(account, Method::POST, &url, None).await.map(drop)
    }

    /// Lists a transform's jobs matching an OData `$filter`, following `@odata.nextLink`. MK.IO answers 404
    /// for a list with nothing in it: that is an empty list.
    pub async fn list_jobs(
        &self,
        account: &AccountConfig,
        transform: &str,
        filter: Option<&str>,
    ) -> Result<Vec<AmsJob>, MediaError> {
        let mkio = project_of(account)?;
        let mut url = Url::parse(&Self::media_url(mkio, &format!("transforms/{transform}/jobs")))
            .map_err(|e| MediaError::Transient(format!("bad MK.IO URL: {e}")))?;
        if let Some(filter) = filter {
            url.query_pairs_mut().append_pair("$filter", filter);
        }
        let mut next = Some(url.to_string());
        let mut jobs = Vec::new();
        while let Some(page_url) = next.take() {
            let Some(page) = self.get_opt(account, &page_url).await? else { break };
            for item in page.get("value").and_then(Value::as_array).cloned().unwrap_or_default() {
                jobs.push(parse_job(item)?);
            }
            next = page.get("@odata.nextLink").and_then(Value::as_str).map(|link| {
                // The link may be absolute or relative to the host.
                Url::parse(link)
                    .or_else(|_| mkio.endpoint.join(link))
                    .map_or_else(|_| link.to_owned(), |u| u.to_string())
            });
        }
        Ok(jobs)
    }

    /// A transform's `properties`, or `None`.
    pub async fn transform_properties(&self, account: &AccountConfig, name: &str) -> Result<Option<Value>, MediaError> {
        let url = Self::media_url(project_of(account)?, &format!("transforms/{name}"));
        Ok(self.get_opt(account, &url).await?.map(|v| v.get("properties").cloned().unwrap_or(Value::Null)))
    }

    /// Creates or replaces a transform.
    pub async fn put_transform(&self, account: &AccountConfig, name: &str, body: &Value) -> Result<(), MediaError> {
        let url = Self::media_url(project_of(account)?, &format!("transforms/{name}"));
        self.call(account, Method::PUT, &url, Some(body)).await.map(drop)
    }

    /// A content key policy's properties with its secrets, or `None`.
    pub async fn content_key_policy_with_secrets(
        &self,
        account: &AccountConfig,
        name: &str,
    ) -> Result<Option<Value>, MediaError> {
        let url =
            Self::media_url(project_of(account)?, &format!("contentKeyPolicies/{name}/getPolicyPropertiesWithSecrets"));
        match self.call(account, Method::POST, &url, None).await {
            // The answer may be the policy or its properties alone; the comparison wants the properties.
            Ok(v) => Ok(Some(v.get("properties").cloned().unwrap_or(v))),
            Err(MediaError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Creates a content key policy, or changes it: MK.IO's PUT only creates (409 when it exists), and
    /// PATCH updates.
    pub async fn put_content_key_policy(
        &self,
        account: &AccountConfig,
        name: &str,
        body: &Value,
    ) -> Result<(), MediaError> {
        let url = Self::media_url(project_of(account)?, &format!("contentKeyPolicies/{name}"));
        match self.call(account, Method::PUT, &url, Some(body)).await {
            Ok(_) => Ok(()),
            Err(error) if is_already_exists(&error) => {
                self.call(account, Method::PATCH, &url, Some(body)).await.map(drop)
            }
            Err(e) => Err(e),
        }
    }

    /// A streaming policy's properties, or `None`.
    pub async fn streaming_policy_properties(
        &self,
        account: &AccountConfig,
        name: &str,
    ) -> Result<Option<Value>, MediaError> {
        let url = Self::media_url(project_of(account)?, &format!("streamingPolicies/{name}"));
        Ok(self.get_opt(account, &url).await?.map(|v| v.get("properties").cloned().unwrap_or(Value::Null)))
    }

    /// Creates a streaming policy; `false` if one of that name exists.
    pub async fn create_streaming_policy(
        &self,
        account: &AccountConfig,
        name: &str,
        body: &Value,
    ) -> Result<bool, MediaError> {
        let url = Self::media_url(project_of(account)?, &format!("streamingPolicies/{name}"));
        match self.call(account, Method::PUT, &url, Some(body)).await {
            Ok(_) => Ok(true),
            Err(error @ MediaError::Rejected { .. }) => match self.get_opt(account, &url).await? {
                Some(_) => Ok(false),
                None => Err(error),
            },
            Err(e) => Err(e),
        }
    }

    /// The asset's container in the project's registered storage, signed with the product's own credential
    /// for that storage (MK.IO has no `listContainerSas`): the configured SAS, whose permissions and expiry
    /// apply (it must allow list, read, write and create), or else a user-delegation SAS for this container
    /// with `permissions` until `expiry` (at most until the key expires).
    pub async fn container_sas(
        &self,
        account: &AccountConfig,
        asset: &str,
        permissions: SasPermissions,
        expiry: DateTime<Utc>,
    ) -> Result<SasUrl, MediaError> {
        let mkio = project_of(account)?;
        let url = Self::media_url(mkio, &format!("assets/{asset}"));
        let Some(live) = self.get_opt(account, &url).await? else {
            return Err(MediaError::NotFound {
                code: "AssetNotFound".into(),
                message: format!("asset {asset} is not in project {}", mkio.project),
            });
        };
        let properties = live.get("properties").cloned().unwrap_or(Value::Null);
        let storage = properties.get("storageAccountName").and_then(Value::as_str).unwrap_or_default();
        if !storage.eq_ignore_ascii_case(&mkio.storage.name) {
            // The product holds a credential for the configured storage only.
            return Err(MediaError::Rejected {
                status: 400,
                code: "StorageNotConfigured".into(),
                message: format!(
                    "asset {asset} in project {} is in storage {storage:?}, but account {} is configured with storage {:?}",
                    mkio.project, account.name, mkio.storage.name
                ),
            });
        }
        let container =
            properties.get("container").and_then(Value::as_str).filter(|c| !c.is_empty()).ok_or_else(|| {
                MediaError::Transient(format!("asset {asset} in project {} names no container yet", mkio.project))
            })?;
        let mut signed = mkio.storage.url.clone();
        if let Ok(mut segments) = signed.path_segments_mut() {
            segments.pop_if_empty().push(container);
        }
        match &mkio.storage.credential {
            StorageCredential::Sas(sas) => signed.set_query(Some(sas.expose())),
            StorageCredential::UserDelegation { account: storage_account } => {
                let now = Utc::now();
                let key = self.delegation.key(&mkio.storage.url, now).await?;
                let letters = match permissions {
                    SasPermissions::Read => "rl",
                    SasPermissions::ReadWrite => "rcwl",
                };
                let https = mkio.storage.url.scheme() == "https";
                // Start a little in the past: the storage's clock may be behind ours.
                let start = now - chrono::Duration::minutes(5);
                let query = delegation::container_sas(
                    &key,
                    storage_account,
                    container,
                    letters,
                    start,
                    expiry.min(key.expires_at()),
                    https,
                );
                signed.set_query(Some(&query));
            }
        }
        Ok(SasUrl(signed))
    }

    /// Creates a streaming locator with the given id and explicit keys (MK.IO pushes explicit keys to its
    /// key and licence servers, which is what lets every region serve the same keys).
    pub async fn create_locator(
        &self,
        account: &AccountConfig,
        name: &str,
        spec: &LocatorSpec<'_>,
    ) -> Result<LocatorCreated, MediaError> {
        let url = Self::media_url(project_of(account)?, &format!("streamingLocators/{name}"));
        match self.call(account, Method::PUT, &url, Some(&spec.body())).await {
            Ok(created) => parse_locator(&created).map(LocatorCreated::Created),
            Err(error @ MediaError::Rejected { .. }) => match self.get_locator(account, name).await? {
                Some(live) => Ok(LocatorCreated::Existing(live)),
                None => Ok(LocatorCreated::Refused(error)),
            },
            Err(e) => Err(e),
        }
    }

    /// A streaming locator, or `None`.
    pub async fn get_locator(&self, account: &AccountConfig, name: &str) -> Result<Option<LiveLocator>, MediaError> {
        let url = Self::media_url(project_of(account)?, &format!("streamingLocators/{name}"));
        match self.get_opt(account, &url).await? {
            Some(v) => parse_locator(&v).map(Some),
            None => Ok(None),
        }
    }

    /// A locator's content keys with their values.
    pub async fn list_content_keys(&self, account: &AccountConfig, name: &str) -> Result<Vec<ContentKey>, MediaError> {
        let url = Self::media_url(project_of(account)?, &format!("streamingLocators/{name}/listContentKeys"));
        let answer = self.call(account, Method::POST, &url, None).await?;
        let keys = answer.get("contentKeys").cloned().unwrap_or_else(|| json!([]));
        serde_json::from_value(keys).map_err(|_| MediaError::Transient(format!("unreadable content keys of {name}")))
    }

    /// A locator's streaming paths (MK.IO adds a `drm` map, which is not needed here).
    pub async fn list_paths(&self, account: &AccountConfig, name: &str) -> Result<LocatorPaths, MediaError> {
        let url = Self::media_url(project_of(account)?, &format!("streamingLocators/{name}/listPaths"));
        let answer = self.call(account, Method::POST, &url, None).await?;
        serde_json::from_value(answer).map_err(|e| MediaError::Transient(format!("unreadable paths of {name}: {e}")))
    }

    /// The project's webhook rule `name` as GET returns it (authentication values masked), or `None`.
    pub async fn webhook_rule(&self, account: &AccountConfig, name: &str) -> Result<Option<Value>, MediaError> {
        let url = Self::webhook_url(project_of(account)?, name);
        self.get_opt(account, &url).await
    }

    /// Creates or replaces the project's webhook rule `name` (PUT replaces the whole spec).
    pub async fn put_webhook_rule(&self, account: &AccountConfig, name: &str, body: &Value) -> Result<(), MediaError> {
        let url = Self::webhook_url(project_of(account)?, name);
        self.call(account, Method::PUT, &url, Some(body)).await.map(drop)
    }

    fn no_reserved_units(account: &AccountConfig) -> MediaError {
        MediaError::Rejected {
            status: 400,
            code: "NoReservedUnits".into(),
            message: format!("{} is an MK.IO project, which has no reserved units", account.name),
        }
    }

    /// MK.IO has no reserved units.
    pub async fn mru_endpoint(&self, account: &AccountConfig) -> Result<Url, MediaError> {
        Err(Self::no_reserved_units(account))
    }

    /// MK.IO has no reserved units.
    pub async fn get_reserved_units(&self, account: &AccountConfig) -> Result<ReservedUnits, MediaError> {
        Err(Self::no_reserved_units(account))
    }

    /// MK.IO has no reserved units.
    pub async fn set_reserved_units(
        &self,
        account: &AccountConfig,
        _account_id: &str,
        _unit_type: u8,
        _count: u32,
    ) -> Result<(), MediaError> {
        Err(Self::no_reserved_units(account))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_containers_are_valid_names_stable_per_asset_and_distinct_between_assets() {
        let a = container_for("movie-42-a1-out0");
        assert_eq!(a, container_for("movie-42-a1-out0"));
        assert_ne!(a, container_for("movie-42-a2-out0"));
        assert!(a.len() <= 63 && a.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'));
    }

    #[test]
    fn a_webhook_rule_read_back_with_masked_secrets_is_not_drift_but_another_url_is() {
        let wanted = json!({"spec": {"enabled": true, "url": "https://app/api/events/mkio",
            "events": ["MediaKind.JobStarted", "MediaKind.JobFinished"],
            "authentication": {"headers": {"x-mkio-webhook-secret": "s3cret-s3cret-s3cret"}}}});
        let live = json!({"metadata": {"name": "r"}, "spec": {"enabled": true, "url": "https://app/api/events/mkio",
            "events": ["MediaKind.JobFinished", "MediaKind.JobStarted"], "headers": {}, "queryParams": {},
            "authentication": {"headers": {"X-MKIO-Webhook-Secret": "********"}, "queryParams": {}}}});
        assert!(webhook_drift(&wanted, &live).is_empty(), "{:?}", webhook_drift(&wanted, &live));
        let mut moved = live.clone();
        moved["spec"]["url"] = json!("https://old/api/events/mkio");
        moved["spec"]["authentication"]["headers"] = json!({});
        assert_eq!(webhook_drift(&wanted, &moved), ["spec.url", "spec.authentication.headers"]);
    }
}
