//! The Media Services ARM client: output assets (api-version 2023-01-01) and jobs (2022-07-01), for Azure
//! Media Services and for Ravnur Media Services, which serves the same API at its own endpoint. Each account's
//! calls carry its own bearer: an Entra ID token for Media Services, the instance's API-key token for Ravnur
//! ([`super::rms`]).
//!
//! Failures are sorted so callers can choose: a fault of the request (a body the service refuses) fails the
//! same way on any account; a fault of the account (401/403, a 404 for the account itself, a 409 when it
//! cannot reach its storage) or a transient one (429, 5xx, timeout, connection error) may succeed on another
//! account or later.

use super::rms::TokenSource;
use crate::config::{AccountConfig, ArmAuth};
use crate::domain::{ErrorInfo, JobState, Provider};
use azure_core::credentials::TokenCredential;
use chrono::{DateTime, Utc};
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

const JOBS_API: &str = "2022-07-01";
const ASSETS_API: &str = "2023-01-01";
const ARM_SCOPE: &str = "https://management.azure.com/.default";
/// Throttled calls are retried on the same account only while the service asks for a short wait; a longer
/// `Retry-After` is returned to the caller, which fails over to another account instead of blocking.
const THROTTLE_RETRIES: usize = 2;
const MAX_RETRY_AFTER: Duration = Duration::from_secs(5);
const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(1);

/// A failed Media Services call, sorted by what the caller can do about it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MediaError {
    /// The resource (account, transform, asset or job) does not exist.
    #[error("not found: {code}: {message}")]
    NotFound {
        /// ARM error code.
        code: String,
        /// ARM error message.
        message: String,
    },
    /// The request was refused as wrong (a 4xx other than 404 and 429): retrying will not help.
    #[error("rejected with {status}: {code}: {message}")]
    Rejected {
        /// HTTP status.
        status: u16,
        /// ARM error code.
        code: String,
        /// ARM error message.
        message: String,
    },
    /// 429: try later, or elsewhere.
    #[error("throttled (retry after {retry_after:?})")]
    Throttled {
        /// What the service asked for.
        retry_after: Option<Duration>,
    },
    /// 5xx, a timeout, a connection error or an unreadable answer: may work later or elsewhere.
    #[error("transient failure: {0}")]
    Transient(String),
    /// Not sent: the product's own request budget for the account (MK.IO's per-project rate limits) has no
    /// room within a short wait. Later or elsewhere will do, and nothing is wrong with the account, so it
    /// does not count towards removing it.
    #[error("not sent, over the request budget: {0}")]
    OverBudget(String),
    /// The account refused or is not there as configured: 401/403 (credentials, role assignments), a 404
    /// whose code says the subscription, resource group or account itself is missing, or a 409 on an asset
    /// PUT (the account cannot reach its storage). Another account may take the same request.
    #[error("refused by the account with {status}: {code}: {message}")]
    Account {
        /// HTTP status.
        status: u16,
        /// ARM error code.
        code: String,
        /// ARM error message.
        message: String,
    },
}

impl MediaError {
    /// Whether another try (later, or on another account) may succeed because the trouble is passing.
    pub fn is_transient(&self) -> bool {
        matches!(self, MediaError::Throttled { .. } | MediaError::Transient(_) | MediaError::OverBudget(_))
    }

    /// Whether the failure belongs to the account rather than to the request: it counts against the
    /// account, and the same request may succeed on another one. Transient failures belong to the account
    /// too; only [`MediaError::Rejected`] (the service would refuse the request everywhere) and
    /// [`MediaError::NotFound`] of a child resource do not, nor does [`MediaError::OverBudget`]: the call
    /// never reached the account.
    pub fn is_account_fault(&self) -> bool {
        matches!(self, MediaError::Throttled { .. } | MediaError::Transient(_) | MediaError::Account { .. })
    }

    /// The answer to a job create whose output asset is missing: real Media Services says 400 BadRequest
    /// "Asset '...' is not found under account '...' when creating job." (MicrosoftDocs/azure-docs#29409),
    /// not 404. Repairable: create the asset and try again.
    pub fn is_missing_asset(&self) -> bool {
        matches!(self, MediaError::Rejected { status: 400, message, .. }
            if message.starts_with("Asset '") && message.contains("' is not found under account '"))
    }

    /// Sorts an ARM error answer.
    fn from_status(status: StatusCode, code: String, message: String, retry_after: Option<Duration>) -> MediaError {
        match status {
            StatusCode::TOO_MANY_REQUESTS => MediaError::Throttled { retry_after },
            StatusCode::NOT_FOUND if account_missing(&code, &message) => {
                MediaError::Account { status: 404, code, message }
            }
            StatusCode::NOT_FOUND => MediaError::NotFound { code, message },
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                MediaError::Account { status: status.as_u16(), code, message }
            }
            StatusCode::REQUEST_TIMEOUT => MediaError::Transient(format!("408 {code}: {message}")),
            s if s.is_server_error() => MediaError::Transient(format!("{} {code}: {message}", s.as_u16())),
            s => MediaError::Rejected { status: s.as_u16(), code, message },
        }
    }
}

/// Whether a 404 is about the account (or what holds it) rather than a child resource. ARM answers
/// `SubscriptionNotFound` and `ResourceGroupNotFound` for those scopes, and `ResourceNotFound` naming the
/// missing parent, "The Resource 'Microsoft.Media/mediaServices/{account}' under resource group ... was not
/// found.", when the account itself is gone.
fn account_missing(code: &str, message: &str) -> bool {
    if code.eq_ignore_ascii_case("SubscriptionNotFound") || code.eq_ignore_ascii_case("ResourceGroupNotFound") {
        return true;
    }
    if !code.eq_ignore_ascii_case("ResourceNotFound") {
        return false;
    }
    const TYPE: &str = "'microsoft.media/mediaservices/";
    let lower = message.to_ascii_lowercase();
    match lower.find(TYPE) {
        // The named resource is the account when nothing follows its name but the closing quote.
        Some(at) => lower[at + TYPE.len()..].split('\'').next().is_some_and(|name| !name.contains('/')),
        None => false,
    }
}

/// What to run: everything of a job that does not depend on the account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobSpec {
    /// `JobInputHttp.baseUri`.
    pub base_uri: Option<String>,
    /// `JobInputHttp.files`.
    pub files: Vec<String>,
    /// Output asset names, one per transform output.
    pub output_assets: Vec<String>,
    /// `Low`, `Normal` or `High`.
    pub priority: String,
    /// Correlation data, including the product's own job id.
    pub correlation_data: BTreeMap<String, String>,
}

/// A Media Services job as ARM reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AmsJob {
    /// The job's name.
    pub name: String,
    /// Its state.
    pub state: JobState,
    /// Its outputs.
    pub outputs: Vec<AmsJobOutput>,
    /// Correlation data as stored.
    pub correlation_data: BTreeMap<String, String>,
    /// Last change, if reported.
    pub last_modified: Option<DateTime<Utc>>,
}

impl AmsJob {
    /// The first output error, which is the job's error for single-output transforms.
    pub fn error(&self) -> Option<ErrorInfo> {
        self.outputs.iter().find_map(|o| o.error.clone())
    }
}

/// One output of a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AmsJobOutput {
    /// Output asset name.
    pub asset_name: Option<String>,
    /// Output state.
    pub state: Option<JobState>,
    /// Output error.
    pub error: Option<ErrorInfo>,
}

#[derive(Deserialize)]
struct RawJob {
    name: String,
    properties: RawJobProperties,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawJobProperties {
    state: String,
    #[serde(default)]
    outputs: Vec<RawOutput>,
    #[serde(default)]
    correlation_data: Option<BTreeMap<String, String>>,
    #[serde(default)]
    last_modified: Option<DateTime<Utc>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawOutput {
    #[serde(default)]
    asset_name: Option<String>,
    #[serde(default)]
    state: Option<String>,
    #[serde(default)]
    error: Option<ErrorInfo>,
}

impl TryFrom<RawJob> for AmsJob {
    type Error = MediaError;

    fn try_from(raw: RawJob) -> Result<Self, MediaError> {
        let state = JobState::from_media_services(&raw.properties.state).ok_or_else(|| {
            MediaError::Transient(format!("job {} has unknown state {:?}", raw.name, raw.properties.state))
        })?;
        Ok(AmsJob {
            name: raw.name,
            state,
            outputs: raw
                .properties
                .outputs
                .into_iter()
                .map(|o| AmsJobOutput {
                    asset_name: o.asset_name,
                    state: o.state.as_deref().and_then(JobState::from_media_services),
                    error: o.error,
                })
                .collect(),
            correlation_data: raw.properties.correlation_data.unwrap_or_default(),
            last_modified: raw.properties.last_modified,
        })
    }
}

/// The ARM client. Cheap to clone; one HTTP connection pool for all accounts.
#[derive(Clone, Debug)]
pub struct ArmClient {
    pub(super) http: reqwest::Client,
    /// Entra ID, for Media Services accounts (`None` with `ARM_AUTH=none`, the local emulator).
    pub(super) credential: Option<Arc<dyn TokenCredential>>,
    pub(super) timeout: Duration,
    /// v2 MRU endpoints discovered from ARM, by account; they never change for an account.
    pub(super) mru_endpoints: Arc<std::sync::Mutex<BTreeMap<String, url::Url>>>,
    /// Ravnur accounts' token sources, by account, made on first use.
    rms_tokens: Arc<std::sync::Mutex<BTreeMap<String, Arc<TokenSource>>>>,
}

/// How one account's calls are authorised.
enum Bearer {
    /// An Entra ID token for the call's scope (Media Services).
    Entra(Arc<dyn TokenCredential>),
    /// The instance's token for the account's API key (Ravnur).
    RmsApiKey(Arc<TokenSource>),
    /// No token: the local emulator as Media Services (`ARM_AUTH=none`).
    None,
}

impl ArmClient {
    /// A client that authenticates Media Services accounts per `auth` and gives each call `timeout`. Ravnur
    /// accounts always use their API key, whatever `auth` says.
    pub fn new(http: reqwest::Client, auth: &ArmAuth, timeout: Duration) -> azure_core::Result<Self> {
        let credential = match auth {
            ArmAuth::ManagedIdentity { client_id } => Some(crate::identity::managed_identity(client_id.as_deref())?),
            ArmAuth::None => None,
        };
        Ok(ArmClient { http, credential, timeout, mru_endpoints: Arc::default(), rms_tokens: Arc::default() })
    }

    /// The bearer the account's calls carry.
    fn bearer(&self, account: &AccountConfig) -> Result<Bearer, MediaError> {
        match account.provider {
            Provider::Rms => {
                let mut sources = self.rms_tokens.lock().unwrap_or_else(|p| p.into_inner());
                if let Some(source) = sources.get(&account.name) {
                    return Ok(Bearer::RmsApiKey(source.clone()));
                }
                let source = Arc::new(TokenSource::for_account(account)?);
                sources.insert(account.name.clone(), source.clone());
                Ok(Bearer::RmsApiKey(source))
            }
            Provider::Ams | Provider::Mkio => Ok(self.credential.clone().map_or(Bearer::None, Bearer::Entra)),
        }
    }

    /// Creates the output asset if it does not exist (an existing one is fine: names are deterministic).
    pub async fn ensure_asset(&self, account: &AccountConfig, asset: &str) -> Result<(), MediaError> {
        let url = format!("{}/assets/{asset}?api-version={ASSETS_API}", base(account));
        let body = json!({ "properties": { "description": "encoding output" } });
        match self.call(account, Method::PUT, &url, Some(&body)).await {
            Ok(_) => Ok(()),
            // Names are deterministic and a PUT creates or updates, so a conflict here is not about the name:
            // Media Services answers 409 when the account cannot reach its storage (MicrosoftDocs/azure-docs
            // #82473), which is the account's fault.
            Err(MediaError::Rejected { status: 409, code, message }) => {
                Err(MediaError::Account { status: 409, code, message })
            }
            Err(e) => Err(e),
        }
    }

    /// Creates the job. A job of that name already there (a retry after a lost answer, or a repair after a
    /// crash) is returned as it is, so a retry never makes a second job.
    pub async fn create_job(
        &self,
        account: &AccountConfig,
        transform: &str,
        name: &str,
        spec: &JobSpec,
    ) -> Result<AmsJob, MediaError> {
        let url = job_url(account, transform, name);
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
        let mut answer = self.call(account, Method::PUT, &url, Some(&body)).await;
        if answer.as_ref().is_err_and(MediaError::is_missing_asset) {
            // The output asset went missing between its PUT and the job's (or was never made): make it and
            // try once more.
            for asset in &spec.output_assets {
                self.ensure_asset(account, asset).await?;
            }
            answer = self.call(account, Method::PUT, &url, Some(&body)).await;
        }
        match answer {
            Ok(value) => parse_job(value),
            // The specs document only 201 and a default error for a create, so a job of that name already
            // there may come back as any 4xx: read it back, and take it only if it is this job.
            Err(error @ MediaError::Rejected { .. }) => match self.get_job(account, transform, name).await? {
                Some(existing) if same_job(&existing, spec) => Ok(existing),
                _ => Err(error),
            },
            Err(e) => Err(e),
        }
    }

    /// Checks that the account's ARM API answers: reads a transform. A missing transform still proves the
    /// API works (the definitions sync repairs it); throttling, 5xx and timeouts do not.
    pub async fn probe(&self, account: &AccountConfig, transform: &str) -> Result<(), MediaError> {
        let url = format!("{}/transforms/{transform}?api-version={JOBS_API}", base(account));
        match self.call(account, Method::GET, &url, None).await {
            Ok(_) | Err(MediaError::NotFound { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Reads a job; `None` if it does not exist.
    pub async fn get_job(
        &self,
        account: &AccountConfig,
        transform: &str,
        name: &str,
    ) -> Result<Option<AmsJob>, MediaError> {
        match self.call(account, Method::GET, &job_url(account, transform, name), None).await {
            Ok(value) => parse_job(value).map(Some),
            Err(MediaError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Asks Media Services to cancel a job. Cancelling a job that has ended is a no-op for the service.
    pub async fn cancel_job(&self, account: &AccountConfig, transform: &str, name: &str) -> Result<(), MediaError> {
        let url = format!("{}/transforms/{transform}/jobs/{name}/cancelJob?api-version={JOBS_API}", base(account));
        self.call(account, Method::POST, &url, None).await.map(drop)
    }

    /// Lists a transform's jobs matching an OData `$filter` (e.g.
    /// `properties/state eq Microsoft.Media.JobState'Scheduled'`), following every page.
    pub async fn list_jobs(
        &self,
        account: &AccountConfig,
        transform: &str,
        filter: Option<&str>,
    ) -> Result<Vec<AmsJob>, MediaError> {
        let mut url = url::Url::parse(&format!("{}/transforms/{transform}/jobs", base(account)))
            .map_err(|e| MediaError::Transient(format!("bad ARM URL: {e}")))?;
        url.query_pairs_mut().append_pair("api-version", JOBS_API);
        if let Some(filter) = filter {
            url.query_pairs_mut().append_pair("$filter", filter);
        }
        let mut next = Some(url.to_string());
        let mut jobs = Vec::new();
        while let Some(page_url) = next.take() {
            let page = self.call(account, Method::GET, &page_url, None).await?;
            let items = page.get("value").and_then(Value::as_array).cloned().unwrap_or_default();
            for item in items {
                jobs.push(parse_job(item)?);
            }
            next = page.get("@odata.nextLink").and_then(Value::as_str).map(str::to_owned);
        }
        Ok(jobs)
    }

    /// One ARM call with the throttling retries described on [`THROTTLE_RETRIES`]. Returns the JSON body
    /// (`Null` when empty).
    async fn call(
        &self,
        account: &AccountConfig,
        method: Method,
        url: &str,
        body: Option<&Value>,
    ) -> Result<Value, MediaError> {
        self.send(&Request { account, method, url, body, scope: ARM_SCOPE, headers: &[] }).await
    }

    /// Sends `request`, waiting out short throttling as described on [`THROTTLE_RETRIES`].
    pub(super) async fn send(&self, request: &Request<'_>) -> Result<Value, MediaError> {
        let url = request.url;
        let mut tries = 0;
        loop {
            match self.send_authorised(request).await {
                Err(MediaError::Throttled { retry_after }) if tries < THROTTLE_RETRIES => {
                    let wait = retry_after.unwrap_or(DEFAULT_RETRY_AFTER);
                    if wait > MAX_RETRY_AFTER {
                        return Err(MediaError::Throttled { retry_after });
                    }
                    tries += 1;
                    tracing::debug!(%url, ?wait, "ARM throttled the call; waiting as asked");
                    tokio::time::sleep(wait).await;
                }
                other => return other,
            }
        }
    }

    /// One call with the account's bearer. An API-key token the instance refuses with 401 (it expired early,
    /// was revoked, or the clocks disagree) is replaced once and the call sent once more; a second 401 is the
    /// account's fault like any other.
    async fn send_authorised(&self, req: &Request<'_>) -> Result<Value, MediaError> {
        match self.bearer(req.account)? {
            Bearer::RmsApiKey(source) => {
                let token = source.token(&self.http, self.timeout, Utc::now()).await?;
                match self.send_once(req, Some(&token)).await {
                    Err(MediaError::Account { status: 401, code, .. }) => {
                        tracing::info!(account = %req.account.name, region = %req.account.region, %code,
                            "the RMS instance refused its token; fetching a new one and retrying once");
                        let fresh = source.refresh(&self.http, self.timeout, &token, Utc::now()).await?;
                        self.send_once(req, Some(&fresh)).await
                    }
                    other => other,
                }
            }
            Bearer::Entra(credential) => {
                let token = credential
                    .get_token(&[req.scope], None)
                    .await
                    .map_err(|e| MediaError::Transient(format!("could not get a token for {}: {e}", req.scope)))?;
                self.send_once(req, Some(token.token.secret())).await
            }
            Bearer::None => self.send_once(req, None).await,
        }
    }

    async fn send_once(&self, req: &Request<'_>, bearer: Option<&str>) -> Result<Value, MediaError> {
        let mut request = self.http.request(req.method.clone(), req.url).timeout(self.timeout);
        if let Some(token) = bearer {
            request = request.bearer_auth(token);
        }
        for (name, value) in req.headers {
            request = request.header(*name, *value);
        }
        request = match req.body {
            // The body is set as bytes so a Content-Type given in `headers` is kept.
            Some(body) => request.body(body.to_string()),
            None => request.header(reqwest::header::CONTENT_LENGTH, "0"),
        };
        if req.body.is_some() && !req.headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("content-type")) {
            request = request.header(reqwest::header::CONTENT_TYPE, "application/json");
        }
        let response = request.send().await.map_err(|e| send_failed("ARM call", &e))?;
        let status = response.status();
        let retry_after = retry_after(response.headers());
        let text =
            response.text().await.map_err(|e| MediaError::Transient(format!("reading the ARM answer failed: {e}")))?;
        if status.is_success() {
            return if text.trim().is_empty() {
                Ok(Value::Null)
            } else {
                serde_json::from_str(&text)
                    .map_err(|e| MediaError::Transient(format!("ARM answered {status} with invalid JSON: {e}")))
            };
        }
        let (code, message) = arm_error(&text);
        Err(MediaError::from_status(status, code, message, retry_after))
    }
}

/// One call: the account it is for (which decides its bearer), method, absolute URL, JSON body, Entra token
/// scope and extra headers.
pub(super) struct Request<'a> {
    pub(super) account: &'a AccountConfig,
    pub(super) method: Method,
    pub(super) url: &'a str,
    pub(super) body: Option<&'a Value>,
    pub(super) scope: &'a str,
    pub(super) headers: &'a [(&'a str, &'a str)],
}

/// The account's ARM URL: endpoint plus resource path.
pub(super) fn base(account: &AccountConfig) -> String {
    format!("{}{}", account.arm_endpoint.as_str().trim_end_matches('/'), account.resource_path())
}

fn job_url(account: &AccountConfig, transform: &str, name: &str) -> String {
    format!("{}/transforms/{transform}/jobs/{name}?api-version={JOBS_API}", base(account))
}

/// Whether a job found under the name is the one `spec` describes: same correlation data (which carries
/// the product's job id and attempt number) and same output assets.
pub(super) fn same_job(existing: &AmsJob, spec: &JobSpec) -> bool {
    let assets: Vec<&str> = existing.outputs.iter().filter_map(|o| o.asset_name.as_deref()).collect();
    let wanted: Vec<&str> = spec.output_assets.iter().map(String::as_str).collect();
    existing.correlation_data == spec.correlation_data && assets == wanted
}

pub(super) fn parse_job(value: Value) -> Result<AmsJob, MediaError> {
    let raw: RawJob =
        serde_json::from_value(value).map_err(|e| MediaError::Transient(format!("unreadable job resource: {e}")))?;
    raw.try_into()
}

/// A request that got no answer (timeout, connection error): transient, worded the same for every wire.
pub(super) fn send_failed(what: &str, e: &reqwest::Error) -> MediaError {
    let kind = if e.is_timeout() { "timed out" } else { "failed" };
    MediaError::Transient(format!("{what} {kind}: {e}"))
}

pub(super) fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    headers
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs)
}

/// ARM's error shape `{"error":{"code","message"}}`, or the v2 OData shape
/// `{"odata.error":{"code","message":{"value"}}}`; anything else is kept as the message.
pub(super) fn arm_error(text: &str) -> (String, String) {
    let parsed: Option<Value> = serde_json::from_str(text).ok();
    let error = parsed.as_ref().and_then(|v| v.get("error").or_else(|| v.get("odata.error")));
    let code = error.and_then(|e| e.get("code")).and_then(Value::as_str).map(str::to_owned);
    let message = error
        .and_then(|e| e.get("message"))
        .and_then(|m| m.as_str().or_else(|| m.get("value").and_then(Value::as_str)));
    (
        code.unwrap_or_else(|| "Unknown".to_owned()),
        message.map_or_else(|| text.chars().take(300).collect(), str::to_owned),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_arm_error_shape_is_read_and_other_bodies_are_kept_as_text() {
        assert_eq!(arm_error(r#"{"error":{"code":"NotFound","message":"no"}}"#), ("NotFound".into(), "no".into()));
        assert_eq!(arm_error("<html>"), ("Unknown".into(), "<html>".into()));
        let v2 = r#"{"odata.error":{"code":"BadRequest","message":{"lang":"en-US","value":"too many"}}}"#;
        assert_eq!(arm_error(v2), ("BadRequest".into(), "too many".into()));
    }

    #[test]
    fn a_job_resource_with_wrapped_or_plain_input_parses() {
        let job = json!({"name": "j-a1", "properties": {"state": "Scheduled", "input": {"@odata.type": "#Microsoft.Media.JobInputs", "inputs": []},
            "outputs": [{"@odata.type": "#Microsoft.Media.JobOutputAsset", "assetName": "o", "state": "Scheduled", "progress": 0}],
            "correlationData": {"jobId": "j"}, "lastModified": "2022-10-17T23:14:33.6140749Z"}});
        let parsed = parse_job(job).expect("parses");
        assert_eq!((parsed.state, parsed.outputs[0].asset_name.as_deref()), (JobState::Scheduled, Some("o")));
    }

    fn sorted(status: u16, code: &str, message: &str) -> MediaError {
        let status = StatusCode::from_u16(status).expect("status");
        MediaError::from_status(status, code.to_owned(), message.to_owned(), None)
    }

    #[test]
    fn refusals_of_the_account_are_its_fault_and_refusals_of_the_request_are_not() {
        for (status, code) in [(401, "InvalidAuthenticationToken"), (403, "AuthorizationFailed")] {
            let error = sorted(status, code, "no");
            assert!(error.is_account_fault() && !error.is_transient(), "{error:?}");
        }
        let bad_body = sorted(400, "BadRequest", "The job requires at least one output.");
        assert!(!bad_body.is_account_fault());
        assert!(matches!(bad_body, MediaError::Rejected { status: 400, .. }));
        assert!(sorted(503, "ServiceUnavailable", "").is_account_fault());
    }

    #[test]
    fn a_404_for_the_account_or_its_scope_is_the_accounts_fault_and_one_for_a_child_is_not_found() {
        let gone = "The Resource 'Microsoft.Media/mediaServices/amswest' under resource group 'rg' was not found.";
        for (code, message) in
            [("SubscriptionNotFound", "x"), ("ResourceGroupNotFound", "x"), ("ResourceNotFound", gone)]
        {
            assert!(matches!(sorted(404, code, message), MediaError::Account { status: 404, .. }), "{code}");
        }
        let child = "The Resource 'Microsoft.Media/mediaServices/amswest/transforms/encode' was not found.";
        assert!(matches!(sorted(404, "ResourceNotFound", child), MediaError::NotFound { .. }));
        assert!(matches!(sorted(404, "NotFound", "The job 'j' was not found."), MediaError::NotFound { .. }));
    }

    #[test]
    fn the_services_missing_output_asset_answer_is_recognised() {
        let missing = sorted(400, "BadRequest", "Asset 'out-1' is not found under account 'ams' when creating job.");
        assert!(missing.is_missing_asset());
        assert!(!sorted(400, "BadRequest", "The job requires at least one output.").is_missing_asset());
    }

    #[test]
    fn only_throttling_and_server_trouble_count_as_transient() {
        assert!(MediaError::Throttled { retry_after: None }.is_transient());
        assert!(MediaError::Transient("503".into()).is_transient());
        assert!(!MediaError::Rejected { status: 400, code: "BadRequest".into(), message: String::new() }.is_transient());
        assert!(!MediaError::NotFound { code: String::new(), message: String::new() }.is_transient());
    }
}
