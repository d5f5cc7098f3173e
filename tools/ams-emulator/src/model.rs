//! Media Services resources as the emulator keeps them: accounts, transforms,
//! assets and jobs, plus the fault an account is currently subjected to.
//!
//! Wire shapes (ARM bodies, event payloads) are rendered from these types in
//! `arm` and `events`; nothing here knows about HTTP.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::config::MruMode;
use crate::storage::Storage;
use crate::streaming::Streaming;
use crate::timefmt::arm_time;

/// `@odata.type` of the only job output kind the emulator supports.
pub const JOB_OUTPUT_ASSET: &str = "#Microsoft.Media.JobOutputAsset";
/// `@odata.type` of an HTTP job input.
pub const JOB_INPUT_HTTP: &str = "#Microsoft.Media.JobInputHttp";
/// `@odata.type` of an asset job input.
pub const JOB_INPUT_ASSET: &str = "#Microsoft.Media.JobInputAsset";
/// `@odata.type` of a list of job inputs (what GET returns in the ARM samples).
pub const JOB_INPUTS: &str = "#Microsoft.Media.JobInputs";

/// AMS `JobState`; also used for job outputs, which share the enum.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum JobState {
    /// Accepted, waiting for resources.
    Queued,
    /// Resources assigned, waiting to start.
    Scheduled,
    /// Encoding.
    Processing,
    /// Cancel requested, winding down.
    Canceling,
    /// Done successfully (final).
    Finished,
    /// Failed (final).
    Error,
    /// Cancelled (final).
    Canceled,
}

impl JobState {
    /// Every state, in lifecycle order; used for per-state counters.
    pub const ALL: [JobState; 7] = [
        JobState::Queued,
        JobState::Scheduled,
        JobState::Processing,
        JobState::Canceling,
        JobState::Finished,
        JobState::Error,
        JobState::Canceled,
    ];

    /// The name as it appears on the wire (`Queued`, `Error`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "Queued",
            JobState::Scheduled => "Scheduled",
            JobState::Processing => "Processing",
            JobState::Canceling => "Canceling",
            JobState::Finished => "Finished",
            JobState::Error => "Error",
            JobState::Canceled => "Canceled",
        }
    }

    /// Parses a state name case-insensitively, as the `$filter` literal allows.
    pub fn parse_loose(s: &str) -> Option<JobState> {
        JobState::ALL.into_iter().find(|st| st.as_str().eq_ignore_ascii_case(s))
    }

    /// Finished, Error and Canceled never change again.
    pub fn is_final(self) -> bool {
        matches!(self, JobState::Finished | JobState::Error | JobState::Canceled)
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether AMS tells the caller a failed job may succeed when resubmitted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum RetryHint {
    /// Resubmitting will fail the same way.
    #[default]
    DoNotRetry,
    /// Transient failure; resubmitting may succeed.
    MayRetry,
}

/// AMS `JobError` (same shape in ARM bodies and in events).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct JobError {
    /// Error code, e.g. `ServiceError`.
    pub code: String,
    /// Human-readable text.
    pub message: String,
    /// Category derived from the code (`Service`, `Download`, ...).
    pub category: String,
    /// Retry hint.
    pub retry: RetryHint,
    /// Detail list, one entry mirroring the code.
    pub details: Vec<JobErrorDetail>,
}

/// One entry of `JobError.details`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct JobErrorDetail {
    /// Detail code.
    pub code: String,
    /// Detail text.
    pub message: String,
}

impl JobError {
    /// Builds the error a failed job output carries, with the category AMS
    /// assigns to `code` (contracts section 3).
    pub fn new(code: &str, retry: RetryHint) -> JobError {
        let message = match code {
            "DownloadNotAccessible" => "While trying to download the input files, the files were not accessible.",
            "DownloadTransientError" => "A transient error occurred while downloading the input files.",
            "UploadNotAccessible" => "Unable to upload the output files to the output container.",
            "UploadTransientError" => "A transient error occurred while uploading the output files.",
            "ConfigurationUnsupported" => "The transform configuration is not supported for this input.",
            "ContentMalformed" => "The input content is malformed.",
            "ContentUnsupported" => "The input content is not supported.",
            "IdentityUnsupported" => "The account identity configuration is not supported.",
            "ServiceTransientError" => "A transient service error occurred.",
            _ => "An internal service error occurred while encoding.",
        };
        JobError {
            code: code.to_string(),
            message: message.to_string(),
            category: error_category(code).to_string(),
            retry,
            details: vec![JobErrorDetail { code: code.to_string(), message: message.to_string() }],
        }
    }
}

/// Maps a `JobErrorCode` to its `JobErrorCategory`; unknown codes count as service errors.
pub fn error_category(code: &str) -> &'static str {
    if code.starts_with("Download") {
        "Download"
    } else if code.starts_with("Upload") {
        "Upload"
    } else if code.starts_with("Configuration") {
        "Configuration"
    } else if code.starts_with("Content") {
        "Content"
    } else if code.starts_with("Identity") {
        "Account"
    } else {
        "Service"
    }
}

/// The fault an account is subjected to; also the JSON body of the fault control call.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Default)]
#[serde(tag = "mode", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Fault {
    /// Normal service.
    #[default]
    Healthy,
    /// Every ARM call fails with 503 and nothing progresses.
    Outage,
    /// ARM works but no job leaves Scheduled.
    Stall,
    /// Jobs end in Error at the end of processing.
    FailJobs {
        /// Retry hint on the job error.
        #[serde(default)]
        retry: RetryHint,
        /// Job error code; its category follows from it.
        #[serde(default = "default_error_code")]
        code: String,
    },
    /// ARM answers 429 for the next `count` calls (all calls when absent).
    Throttle {
        /// `Retry-After` header value.
        #[serde(default = "default_retry_after", rename = "retryAfterSeconds", alias = "retry_after_seconds")]
        retry_after_seconds: u64,
        /// Calls still to be throttled; `None` means until healed.
        #[serde(default)]
        count: Option<u64>,
    },
    /// One operation (by its REST spec operation id, e.g. `Jobs_Create`, or `*` for every ARM call) answers
    /// `status` with `code`; everything else works. Models account-local refusals: a 403 from a revoked role
    /// assignment, a 409 on an asset PUT when the account cannot reach its storage.
    Refuse {
        /// Operation id, or `*`.
        operation: String,
        /// HTTP status (400-599).
        #[serde(deserialize_with = "error_status")]
        status: u16,
        /// ARM error code.
        code: String,
        /// ARM error message; a generic one when absent.
        #[serde(default)]
        message: Option<String>,
    },
}

fn error_status<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u16, D::Error> {
    let status = <u16 as serde::Deserialize>::deserialize(d)?;
    if (400..600).contains(&status) {
        Ok(status)
    } else {
        Err(serde::de::Error::custom(format!("status must be 400-599, not {status}")))
    }
}

fn default_error_code() -> String {
    "ServiceError".to_string()
}

fn default_retry_after() -> u64 {
    1
}

impl Fault {
    /// True when the account's jobs must not move at all.
    pub fn freezes_jobs(&self) -> bool {
        matches!(self, Fault::Outage)
    }
}

/// A transform: only its outputs matter to job validation.
#[derive(Clone, Debug)]
pub struct Transform {
    /// Name as first given by the caller.
    pub name: String,
    /// `properties.outputs` as given.
    pub outputs: Vec<Value>,
    /// `properties.description`.
    pub description: Option<String>,
    /// Creation time.
    pub created: DateTime<Utc>,
    /// Last update time.
    pub last_modified: DateTime<Utc>,
}

/// An asset. Only metadata is kept; a later blob-backed mode can hang storage off `container`.
#[derive(Clone, Debug)]
pub struct Asset {
    /// Name as first given.
    pub name: String,
    /// Server-assigned id.
    pub asset_id: uuid::Uuid,
    /// Blob container name.
    pub container: String,
    /// Storage account name.
    pub storage_account_name: String,
    /// `properties.description`.
    pub description: Option<String>,
    /// `properties.alternateId`.
    pub alternate_id: Option<String>,
    /// Creation time.
    pub created: DateTime<Utc>,
    /// Last update time.
    pub last_modified: DateTime<Utc>,
}

/// One job output (`#Microsoft.Media.JobOutputAsset`).
#[derive(Clone, Debug)]
pub struct JobOutput {
    /// Target asset.
    pub asset_name: String,
    /// Label (default `BuiltInStandardEncoderPreset_{i}`).
    pub label: String,
    /// Output state, mirrors the job's.
    pub state: JobState,
    /// 0..=100.
    pub progress: u8,
    /// Set when processing starts.
    pub start_time: Option<DateTime<Utc>>,
    /// Set on a final state.
    pub end_time: Option<DateTime<Utc>>,
    /// Set when the output ended in Error.
    pub error: Option<JobError>,
}

impl JobOutput {
    /// The output as ARM and the control API render it.
    pub fn to_arm_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("@odata.type".into(), JOB_OUTPUT_ASSET.into());
        m.insert("state".into(), self.state.as_str().into());
        m.insert("progress".into(), self.progress.into());
        m.insert("label".into(), self.label.clone().into());
        m.insert("assetName".into(), self.asset_name.clone().into());
        if let Some(t) = &self.start_time {
            m.insert("startTime".into(), arm_time(t).into());
        }
        if let Some(t) = &self.end_time {
            m.insert("endTime".into(), arm_time(t).into());
        }
        if let Some(e) = &self.error {
            m.insert("error".into(), serde_json::to_value(e).unwrap_or(Value::Null));
        }
        Value::Object(m)
    }

    /// The output as events render it (`MediaJobOutput`: `error` always present, possibly null).
    pub fn to_event_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("@odata.type".into(), JOB_OUTPUT_ASSET.into());
        m.insert("assetName".into(), self.asset_name.clone().into());
        m.insert("error".into(), self.error.as_ref().and_then(|e| serde_json::to_value(e).ok()).unwrap_or(Value::Null));
        m.insert("label".into(), self.label.clone().into());
        m.insert("progress".into(), self.progress.into());
        m.insert("state".into(), self.state.as_str().into());
        Value::Object(m)
    }
}

/// A job and the bookkeeping that drives its lifecycle.
#[derive(Clone, Debug)]
pub struct Job {
    /// Owning transform's name (as stored on the transform).
    pub transform: String,
    /// Job name as given.
    pub name: String,
    /// `properties.input` echoed as given.
    pub input: Value,
    /// Outputs.
    pub outputs: Vec<JobOutput>,
    /// `Low|Normal|High`.
    pub priority: String,
    /// `properties.description`.
    pub description: Option<String>,
    /// Caller key/value pairs returned in events.
    pub correlation_data: BTreeMap<String, String>,
    /// Current state.
    pub state: JobState,
    /// Creation time.
    pub created: DateTime<Utc>,
    /// Time of the last change.
    pub last_modified: DateTime<Utc>,
    /// Set when processing starts.
    pub start_time: Option<DateTime<Utc>>,
    /// Set on a final state.
    pub end_time: Option<DateTime<Utc>>,
    /// Every state the job entered, with the time.
    pub history: Vec<(JobState, DateTime<Utc>)>,
    /// Real time spent in the current state while the account allowed progress.
    /// Accumulated by the ticker, so pausing (outage, stall) resumes where it left off.
    pub phase_elapsed: Duration,
    /// Whether the mid-processing progress event went out.
    pub progress_reported: bool,
}

impl Job {
    /// A job of `transform` named `name`, just created at `now`: Queued, with no input or outputs yet,
    /// Normal priority and no correlation data.
    pub fn queued(transform: impl Into<String>, name: impl Into<String>, now: DateTime<Utc>) -> Job {
        Job {
            transform: transform.into(),
            name: name.into(),
            input: Value::Null,
            outputs: vec![],
            priority: "Normal".into(),
            description: None,
            correlation_data: BTreeMap::new(),
            state: JobState::Queued,
            created: now,
            last_modified: now,
            start_time: None,
            end_time: None,
            history: vec![(JobState::Queued, now)],
            phase_elapsed: Duration::ZERO,
            progress_reported: false,
        }
    }

    /// The `correlationData` object.
    pub fn correlation_json(&self) -> Value {
        Value::Object(self.correlation_data.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect())
    }
}

/// An account's Media Reserved Units and their accounting (contracts section 5).
///
/// Accounting runs in emulated seconds so numbers do not depend on `--time-scale`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Mru {
    /// Managed accounts are gated by `current`; automatic ones are not.
    pub mode: MruMode,
    /// `ReservedUnitType`: 0 = S1, 1 = S2, 2 = S3.
    pub reserved_unit_type: u8,
    /// `CurrentReservedUnits`.
    pub current: u32,
    /// `MaxReservableUnits`.
    pub max: u32,
    /// Integral of `current` over emulated time.
    pub provisioned_mru_seconds: f64,
    /// Integral of `min(processing jobs, current)` over emulated time: reserved units actually used.
    /// With 0 MRUs the one job allowed runs on the shared, unreserved pool and adds nothing.
    pub busy_mru_seconds: f64,
    /// v2 updates that changed the type or the count.
    pub updates: u64,
    /// Every v2 call (GET, PUT, PATCH, MERGE), including refused ones.
    pub calls: u64,
}

impl Mru {
    /// A fresh account: no units reserved yet, as v2 accounts started.
    pub fn new(mode: MruMode, max: u32) -> Mru {
        Mru {
            mode,
            reserved_unit_type: 0,
            current: 0,
            max,
            provisioned_mru_seconds: 0.0,
            busy_mru_seconds: 0.0,
            updates: 0,
            calls: 0,
        }
    }

    /// Most jobs that may be Processing at once; `None` means no limit.
    /// A managed account with 0 MRUs still runs one job at a time, as v2 did on its shared pool.
    pub fn concurrency_limit(&self) -> Option<usize> {
        match self.mode {
            MruMode::Managed => Some(self.current.max(1) as usize),
            MruMode::Automatic => None,
        }
    }

    /// Adds `emulated` time with `processing` jobs running to the integrals (managed accounts only).
    pub fn accrue(&mut self, emulated: Duration, processing: usize) {
        if self.mode != MruMode::Managed {
            return;
        }
        let secs = emulated.as_secs_f64();
        let current = f64::from(self.current);
        self.provisioned_mru_seconds += current * secs;
        self.busy_mru_seconds += current.min(processing as f64) * secs;
    }
}

/// A stable GUID derived from `seed`, so an account keeps its id across restarts.
pub fn stable_guid(seed: &str) -> uuid::Uuid {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(seed.as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_random_bytes(bytes).into_uuid()
}

/// The storage account attached to a Media Services account: lowercase
/// alphanumerics of the account name plus `storage`, at most 24 characters
/// (Azure's rule for storage account names).
pub fn storage_account_name(account_name: &str) -> String {
    let mut s: String =
        account_name.chars().filter(char::is_ascii_alphanumeric).map(|c| c.to_ascii_lowercase()).collect();
    s.push_str("storage");
    s.truncate(24);
    s
}

/// One Media Services account with everything in it.
#[derive(Debug)]
pub struct Account {
    /// Name as configured.
    pub name: String,
    /// Azure region label.
    pub region: String,
    /// `properties.mediaServiceId`, also the v2 `AccountId`.
    pub media_service_id: uuid::Uuid,
    /// Reserved units and their accounting.
    pub mru: Mru,
    /// Current fault.
    pub fault: Fault,
    /// ARM calls received for this account (including rejected ones).
    pub arm_calls: u64,
    /// Transforms keyed by lowercase name.
    pub transforms: BTreeMap<String, Transform>,
    /// Assets keyed by lowercase name.
    pub assets: BTreeMap<String, Asset>,
    /// Jobs keyed by (lowercase transform, lowercase job).
    pub jobs: BTreeMap<(String, String), Job>,
    /// The attached blob storage account.
    pub storage: Storage,
    /// Streaming policies, locators and content key policies.
    pub streaming: Streaming,
    /// The MK.IO project this account is, when it speaks as MK.IO.
    pub mkio: Option<crate::mkio::Project>,
}

impl Account {
    /// A new empty, healthy account that scales automatically.
    pub fn new(name: &str, region: &str) -> Account {
        Account::with_mru(name, region, Mru::new(MruMode::Automatic, 25))
    }

    /// A new empty, healthy account with the given reserved units.
    pub fn with_mru(name: &str, region: &str, mru: Mru) -> Account {
        Account {
            name: name.to_string(),
            region: region.to_string(),
            media_service_id: stable_guid(&format!("ams-emulator/account/{}", name.to_ascii_lowercase())),
            mru,
            fault: Fault::Healthy,
            arm_calls: 0,
            transforms: BTreeMap::new(),
            assets: BTreeMap::new(),
            jobs: BTreeMap::new(),
            storage: Storage::new(&storage_account_name(name)),
            streaming: Streaming::default(),
            mkio: None,
        }
    }

    /// Jobs currently Processing.
    pub fn processing_jobs(&self) -> usize {
        self.jobs.values().filter(|j| j.state == JobState::Processing).count()
    }

    /// Number of jobs per state, every state present.
    pub fn job_counts(&self) -> BTreeMap<&'static str, usize> {
        let mut counts: BTreeMap<&'static str, usize> = JobState::ALL.iter().map(|s| (s.as_str(), 0)).collect();
        for job in self.jobs.values() {
            *counts.entry(job.state.as_str()).or_default() += 1;
        }
        counts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_categories_follow_the_code_prefix() {
        assert_eq!(error_category("ServiceError"), "Service");
        assert_eq!(error_category("ServiceTransientError"), "Service");
        assert_eq!(error_category("DownloadNotAccessible"), "Download");
        assert_eq!(error_category("UploadTransientError"), "Upload");
        assert_eq!(error_category("ConfigurationUnsupported"), "Configuration");
        assert_eq!(error_category("ContentMalformed"), "Content");
        assert_eq!(error_category("IdentityUnsupported"), "Account");
    }

    #[test]
    fn fault_bodies_parse_with_defaults() {
        let f: Fault = serde_json::from_str(r#"{"mode":"fail-jobs"}"#).unwrap();
        assert_eq!(f, Fault::FailJobs { retry: RetryHint::DoNotRetry, code: "ServiceError".into() });
        let f: Fault = serde_json::from_str(r#"{"mode":"throttle","count":2}"#).unwrap();
        assert_eq!(f, Fault::Throttle { retry_after_seconds: 1, count: Some(2) });
        assert!(serde_json::from_str::<Fault>(r#"{"mode":"sideways"}"#).is_err());
    }

    #[test]
    fn job_states_parse_case_insensitively() {
        assert_eq!(JobState::parse_loose("finished"), Some(JobState::Finished));
        assert_eq!(JobState::parse_loose("PROCESSING"), Some(JobState::Processing));
        assert_eq!(JobState::parse_loose("Done"), None);
    }
}
