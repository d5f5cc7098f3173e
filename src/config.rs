//! Settings from the environment (Azure app settings, or `local.settings.json` Values under a Functions
//! host), read and validated once at start-up. A bad setting stops the handler with a message that names it.

use crate::domain::definitions::{transform_mismatches, Definitions, MEDIA_DEFINITIONS};
use crate::domain::notification::{default_callback_retry, DEFAULT_TOPIC};
use crate::domain::publication::RetrySchedule;
use crate::domain::request::Rules;
use crate::domain::Provider;
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::Duration;
use url::Url;

pub mod mkio;

pub use mkio::{MkioAccount, Secret, StorageCredential, WebhookSettings};

/// The ARM endpoint of the public Azure cloud.
pub const DEFAULT_ARM_ENDPOINT: &str = "https://management.azure.com";

/// Whether the handler needs a setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Start-up fails without it.
    Required,
    /// Exactly one setting of the named group must be set.
    OneOf(&'static str),
    /// Has a default.
    Optional,
    /// Only for tests of debug builds; never deployed.
    TestOnly,
    /// Set by the Functions platform in Azure, never by the deployment.
    Platform,
}

/// One setting the handler reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Setting {
    /// Environment variable (app setting) name.
    pub name: &'static str,
    /// Whether it must be set.
    pub need: Need,
    /// What it means, and its default.
    pub doc: &'static str,
}

/// What `handler --help` prints: what the binary is, how it is started, and every setting it reads.
pub fn help() -> String {
    let mut text = String::from(
        "handler: the Azure Functions custom handler of ams-failover (SubmitJob, GetJob, GetStatus, \
         OnJobStateChange, OnMkioEvent, SweepStuckJobs).\n\n\
         The Functions host (or tools/devhost locally) starts it with no arguments and the app settings in the \
         environment; it serves the function routes on 127.0.0.1:$FUNCTIONS_CUSTOMHANDLER_PORT (default 3000).\n\n\
         Settings:\n",
    );
    for setting in SETTINGS {
        let need = match setting.need {
            Need::Required => "required".to_owned(),
            Need::OneOf(group) => format!("one of the {group} settings"),
            Need::Optional => "optional".to_owned(),
            Need::TestOnly => "tests only".to_owned(),
            Need::Platform => "set by the platform in Azure".to_owned(),
        };
        text.push_str(&format!("  {} ({need})\n      {}\n", setting.name, setting.doc));
    }
    text
}

/// Every setting the handler reads. The deployment template and the README are checked against this list
/// by tests, so a new setting cannot be forgotten in either.
pub const SETTINGS: &[Setting] = &[
    Setting {
        name: "MEDIA_ACCOUNTS",
        need: Need::Required,
        doc: "JSON array of accounts: name, region, provider (ams, default; rms; or mkio), subscriptionId, resourceGroup, armEndpoint (default https://management.azure.com; rms: required, the instance's API endpoint), mruMode (managed|automatic, default automatic; managed only where the provider has reserved units, so never on rms), maxMru (default 10), mruEndpoint (default: discovered from ARM), stuckAfter (default STUCK_AFTER); rms accounts also: apiKeySetting (the app setting holding the instance's API key, a Key Vault reference in Azure; default RMS_API_KEY_<NAME>, the account name in capitals) and eventTopic (required: resource id of the instance's Event Grid custom topic eg-topic-<suffix>, by which events are matched to the account); mkio accounts: project (default: the name), mkioEndpoint (default https://app.mk.io), tokenSetting (default MKIO_TOKEN_<NAME>), storage {name, url, sasSetting (default MKIO_STORAGE_SAS_<NAME>; when that default is unset the product signs user-delegation SAS with its identity, which needs Storage Blob Data Contributor on the storage)}, writesPerMinute (default 900), readsPerMinute (default 1800); no subscriptionId or resourceGroup",
    },
    Setting {
        name: "MKIO_WEBHOOK_URL",
        need: Need::Optional,
        doc: "with mkio accounts: the public URL of OnMkioEvent (https://<app>/api/events/mkio) that each project's webhook rule delivers to; default https://$WEBSITE_HOSTNAME/api/events/mkio",
    },
    Setting {
        name: "WEBSITE_HOSTNAME",
        need: Need::Platform,
        doc: "the app's default host name, which Azure sets; gives MKIO_WEBHOOK_URL its default",
    },
    Setting {
        name: "MKIO_WEBHOOK_SECRET",
        need: Need::Optional,
        doc: "with mkio accounts: the shared secret (16 characters or more) the webhook rule sends in x-mkio-webhook-secret (a Key Vault reference in Azure)",
    },
    Setting {
        name: "TABLES_CONNECTION_STRING",
        need: Need::OneOf("storage"),
        doc: "Table Storage connection string (UseDevelopmentStorage=true for Azurite)",
    },
    Setting {
        name: "TABLES_ENDPOINT",
        need: Need::OneOf("storage"),
        doc: "Table endpoint (https://<account>.table.core.windows.net) used with the managed identity",
    },
    Setting { name: "TABLE_PREFIX", need: Need::Optional, doc: "prefix of every table name (default amsfo)" },
    Setting {
        name: "TRANSFORMS",
        need: Need::Required,
        doc: "comma-separated transforms that exist in every account, each NAME or NAME:OUTPUTS (default 1 output)",
    },
    Setting {
        name: "ARM_AUTH",
        need: Need::Optional,
        doc: "managed-identity (default) or none (local emulator only); also used for Table Storage with TABLES_ENDPOINT",
    },
    Setting { name: "AZURE_CLIENT_ID", need: Need::Optional, doc: "client id of a user-assigned managed identity" },
    Setting { name: "ARM_TIMEOUT", need: Need::Optional, doc: "timeout of one ARM call (default 30s)" },
    Setting {
        name: "MRU_CACHE_TTL",
        need: Need::Optional,
        doc: "how long the MRU value cached in the account's counter row is trusted (default 60s)",
    },
    Setting {
        name: "MRU_SCALE_DOWN",
        need: Need::Optional,
        doc: "on-final (default: lower MRUs as jobs end) or periodic (lower them on each sweep, against thrashing)",
    },
    Setting { name: "MRU_FLOOR", need: Need::Optional, doc: "MRUs never go below this (default 0)" },
    Setting {
        name: "STUCK_AFTER",
        need: Need::Optional,
        doc: "time in Scheduled (or submitted and never heard from) before a job is stuck (default 10m; per account: stuckAfter in MEDIA_ACCOUNTS)",
    },
    Setting {
        name: "STUCK_MIN_JOBS",
        need: Need::Optional,
        doc: "stuck jobs on one account that take it out of rotation (default 1)",
    },
    Setting {
        name: "STUCK_POLICY",
        need: Need::Optional,
        doc: "resubmit (default: cancel stuck jobs and submit them elsewhere) or wait (give them STUCK_GRACE more first)",
    },
    Setting { name: "STUCK_GRACE", need: Need::Optional, doc: "extra time stuck jobs get with STUCK_POLICY=wait (default 10m)" },
    Setting {
        name: "COOLDOWN",
        need: Need::Optional,
        doc: "how long a removed account stays out before a probe may bring it back (default 30m)",
    },
    Setting {
        name: "COOLDOWN_MAX",
        need: Need::Optional,
        doc: "longest cool-down; it doubles for an account that fails again soon after coming back (default 4h)",
    },
    Setting {
        name: "SUBMIT_FAILURES_TO_REMOVE",
        need: Need::Optional,
        doc: "consecutive transient submission failures that remove an account at once (default 3)",
    },
    Setting {
        name: "RECONCILE_AFTER",
        need: Need::Optional,
        doc: "silence after which an active job is read from Media Services, for lost events (default 5m)",
    },
    Setting { name: "MAX_ATTEMPTS", need: Need::Optional, doc: "attempts a job gets for errors marked MayRetry (default 3)" },
    Setting {
        name: "ALERT_REPEAT",
        need: Need::Optional,
        doc: "how often the alert about an empty rotation may repeat (default 15m)",
    },
    Setting { name: "FAIL_POINT", need: Need::TestOnly, doc: "debug builds only: abort at a named point, to test crash repair" },
    Setting {
        name: "PUBLISH_STREAMING",
        need: Need::Optional,
        doc: "on: publish every finished job for streaming in every region (locators with the same ids and keys); off (default)",
    },
    Setting {
        name: "STREAMING_POLICY",
        need: Need::Optional,
        doc: "streaming policy of published locators: one of definitions/media.json or a Predefined_* one (default: the file's defaultStreamingPolicy)",
    },
    Setting {
        name: "DEFINITIONS_CHECK_EVERY",
        need: Need::Optional,
        doc: "how often the sweep compares each account's transforms and policies with definitions/media.json (default 15m; 0s = every sweep)",
    },
    Setting {
        name: "PUBLISH_RETRY",
        need: Need::Optional,
        doc: "comma-separated waits after each failed try of one region's publication; the last repeats (default 30s,1m,2m,5m,10m,30m,1h)",
    },
    Setting {
        name: "TOKEN_SIGNING_KEY",
        need: Need::Optional,
        doc: "base64 symmetric key that verifies viewer tokens in the content key policy; required with PUBLISH_STREAMING=on",
    },
    Setting {
        name: "TRAFFIC_MANAGER_HOST",
        need: Need::Optional,
        doc: "host name of key delivery through Traffic Manager; becomes the streaming policy's custom key acquisition URL",
    },
    Setting {
        name: "STREAMING_TRAFFIC_MANAGER_HOST",
        need: Need::Optional,
        doc: "host name of the streaming endpoints through Traffic Manager; GetJob gives https URLs on it",
    },
    Setting {
        name: "SERVICE_BUS_ENDPOINT",
        need: Need::Optional,
        doc: "https://<namespace>.servicebus.windows.net: outcome notifications go to its JOB_EVENTS_TOPIC with the managed identity (ARM_AUTH); without it none are sent there",
    },
    Setting {
        name: "JOB_EVENTS_TOPIC",
        need: Need::Optional,
        doc: "Service Bus topic of outcome notifications (default job-events; it needs duplicate detection on)",
    },
    Setting {
        name: "CALLBACK_SIGNING_KEY",
        need: Need::Optional,
        doc: "key (at least 32 characters) that signs callbacks with HMAC-SHA256; without it SubmitJob refuses callbackUrl (a Key Vault reference in Azure)",
    },
    Setting {
        name: "CALLBACK_RETRY",
        need: Need::Optional,
        doc: "comma-separated waits after each failed callback; after the last the callback is given up with an alert (default 5s,5m,30m,2h,5h,10h,10h)",
    },
    Setting {
        name: "CALLBACK_ALLOW_HTTP_LOOPBACK",
        need: Need::TestOnly,
        doc: "debug builds only: on also accepts http://127.0.0.1 callback URLs, for local tests",
    },
    Setting {
        name: "SWEEP_SCHEDULE",
        need: Need::Required,
        doc: "six-field NCRONTAB schedule of SweepStuckJobs, read by the Functions host (every minute: 0 */1 * * * *)",
    },
];

/// A setting that is missing or wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("setting {setting}: {problem}")]
pub struct ConfigError {
    /// The setting's name.
    pub setting: &'static str,
    /// What is wrong with it, and what a good value looks like.
    pub problem: String,
}

fn bad(setting: &'static str, problem: impl Into<String>) -> ConfigError {
    ConfigError { setting, problem: problem.into() }
}

/// How an account's Media Reserved Units are handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MruMode {
    /// Accounts created before API 2020-05-01: the product scales MRUs through the v2 endpoint.
    Managed,
    /// Newer accounts scale by themselves; the MRU endpoint is never called.
    Automatic,
}

impl fmt::Display for MruMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MruMode::Managed => "managed",
            MruMode::Automatic => "automatic",
        })
    }
}

/// One Media Services account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountConfig {
    /// Account name, unique across the configuration (compared case-insensitively).
    pub name: String,
    /// Azure region, e.g. `westeurope`.
    pub region: String,
    /// The service behind the account (`ams` unless set).
    pub provider: Provider,
    /// Subscription id.
    pub subscription_id: String,
    /// Resource group.
    pub resource_group: String,
    /// ARM endpoint, `https://management.azure.com` unless pointed elsewhere (the emulator).
    pub arm_endpoint: Url,
    /// MRU handling.
    pub mru_mode: MruMode,
    /// Most MRUs the product will provision.
    pub max_mru: u32,
    /// The v2 REST endpoint for MRUs; discovered from ARM when not given.
    pub mru_endpoint: Option<Url>,
    /// How long a job may wait in Scheduled here before it counts as stuck (`STUCK_AFTER` unless set).
    pub stuck_after: Duration,
    /// The Event Grid topic the account's events come from when it is not the account itself: Ravnur
    /// publishes to a custom topic in its own resource group (`eventTopic`).
    pub event_topic: Option<String>,
    /// The API key the account's token is requested with (Ravnur), read from the setting it names.
    pub api_key: Option<ApiKey>,
    /// The MK.IO project behind the account (`Some` exactly for provider `mkio`).
    pub mkio: Option<MkioAccount>,
}

impl AccountConfig {
    /// The ARM resource path of the account, without endpoint or api-version.
    pub fn resource_path(&self) -> String {
        format!(
            "/subscriptions/{}/resourceGroups/{}/providers/Microsoft.Media/mediaServices/{}",
            self.subscription_id, self.resource_group, self.name
        )
    }

    /// The `topic` of this account's events: its custom topic when it has one, else the account's own
    /// resource id (the Media Services system topic).
    pub fn events_topic(&self) -> String {
        self.event_topic.clone().unwrap_or_else(|| self.resource_path())
    }

    /// Whether the product scales this account's reserved units: it asked for that (`mruMode: managed`)
    /// and the provider has reserved units at all. Start-up refuses the first without the second; this
    /// check keeps the rules right even for an account built some other way.
    pub fn scales_mru(&self) -> bool {
        self.mru_mode == MruMode::Managed && self.provider.capabilities().reserved_units
    }
}

/// An API key and the setting it was read from. The key never prints.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey {
    /// The app setting that holds it (in Azure a Key Vault reference), for messages.
    pub setting: String,
    value: String,
}

impl ApiKey {
    /// A key read from `setting`.
    pub fn new(setting: impl Into<String>, value: impl Into<String>) -> ApiKey {
        ApiKey { setting: setting.into(), value: value.into() }
    }

    /// The key itself, for the one request that sends it.
    pub fn expose(&self) -> &str {
        &self.value
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ApiKey({}: <redacted>)", self.setting)
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawAccount {
    name: String,
    region: String,
    provider: Option<String>,
    // MK.IO projects have neither; the check below requires them for the other providers.
    #[serde(default)]
    subscription_id: String,
    #[serde(default)]
    resource_group: String,
    arm_endpoint: Option<String>,
    mru_mode: Option<MruMode>,
    max_mru: Option<u32>,
    mru_endpoint: Option<String>,
    stuck_after: Option<String>,
    api_key_setting: Option<String>,
    event_topic: Option<String>,
    project: Option<String>,
    mkio_endpoint: Option<String>,
    token_setting: Option<String>,
    storage: Option<mkio::RawStorage>,
    writes_per_minute: Option<u32>,
    reads_per_minute: Option<u32>,
}

/// Where the Table Storage state lives.
#[derive(Clone, PartialEq, Eq)]
pub enum StorageConfig {
    /// A connection string (`UseDevelopmentStorage=true` included).
    ConnectionString(String),
    /// A table endpoint used with the app's managed identity.
    Endpoint(Url),
}

impl fmt::Debug for StorageConfig {
    // The connection string holds an account key; never print it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StorageConfig::ConnectionString(_) => f.write_str("ConnectionString(<redacted>)"),
            StorageConfig::Endpoint(url) => write!(f, "Endpoint({url})"),
        }
    }
}

/// How calls to ARM authenticate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArmAuth {
    /// Bearer tokens from the app's managed identity (optionally a user-assigned one by client id).
    ManagedIdentity {
        /// Client id of a user-assigned identity.
        client_id: Option<String>,
    },
    /// No token: for the local emulator only.
    None,
}

/// Everything the handler reads from its environment.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Media Services accounts, in configuration order.
    pub accounts: Vec<AccountConfig>,
    /// Table Storage.
    pub storage: StorageConfig,
    /// Prefix of every table name, so several deployments or tests can share one storage account.
    pub table_prefix: String,
    /// Transforms that exist in every account, with how many outputs each produces.
    pub transforms: BTreeMap<String, usize>,
    /// ARM authentication.
    pub arm_auth: ArmAuth,
    /// Timeout of one ARM call.
    pub arm_timeout: Duration,
    /// Media Reserved Unit handling for managed accounts.
    pub mru: MruSettings,
    /// Stuck-region detection, resubmission and re-admission.
    pub failover: FailoverSettings,
    /// Debug builds only: the name of a point where the handler aborts, to test crash repair.
    pub fail_point: Option<String>,
    /// The media definitions with their settings filled in (transforms only while publication is off).
    pub definitions: Definitions,
    /// Video-on-demand publication across regions.
    pub publish: PublishSettings,
    /// Outcome notifications: the topic and callbacks.
    pub notify: NotifySettings,
    /// The MK.IO webhook (set when an account is an MK.IO project).
    pub mkio_webhook: Option<WebhookSettings>,
}

/// Where outcome notifications go.
#[derive(Clone, PartialEq, Eq)]
pub struct NotifySettings {
    /// The Service Bus namespace endpoint, if notifications go to a topic.
    pub service_bus: Option<Url>,
    /// The topic.
    pub topic: String,
    /// The key callbacks are signed with; `None` refuses `callbackUrl`.
    pub callback_key: Option<String>,
    /// Waits after failed callbacks; then they are given up.
    pub callback_retry: RetrySchedule,
    /// Debug builds only: accept `http://127.0.0.1` callback URLs.
    pub allow_http_loopback: bool,
}

impl fmt::Debug for NotifySettings {
    // The signing key is a secret; never print it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NotifySettings")
            .field("service_bus", &self.service_bus.as_ref().map(Url::as_str))
            .field("topic", &self.topic)
            .field("callback_key", &self.callback_key.as_ref().map(|_| "<redacted>"))
            .field("callback_retry", &self.callback_retry)
            .field("allow_http_loopback", &self.allow_http_loopback)
            .finish()
    }
}

/// Video-on-demand publication: streaming locators in every region, and the definitions sync.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishSettings {
    /// Whether finished jobs are published (`PUBLISH_STREAMING=on`).
    pub enabled: bool,
    /// The streaming policy of new locators.
    pub streaming_policy: String,
    /// How often each account's definitions are compared with the file (0 = on every sweep).
    pub definitions_check_every: Duration,
    /// Host name viewers stream from (Traffic Manager in front of the streaming endpoints).
    pub streaming_host: Option<String>,
    /// Host name of key delivery (Traffic Manager in front of each region's key delivery).
    pub key_delivery_host: Option<String>,
    /// Waits between failed tries of one region's publication.
    pub retry: RetrySchedule,
}

/// What happens to jobs stuck in a broken region.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StuckPolicy {
    /// Cancel them and submit them on another account at once.
    Resubmit,
    /// Give them `STUCK_GRACE` more before resubmitting.
    Wait,
}

/// Failover thresholds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailoverSettings {
    /// Default time in Scheduled (or submitted and never heard from) before an attempt is stuck.
    pub stuck_after: Duration,
    /// Stuck attempts on one account that take it out of rotation.
    pub stuck_min_jobs: u32,
    /// What happens to stuck attempts.
    pub stuck_policy: StuckPolicy,
    /// Extra time stuck attempts get under `StuckPolicy::Wait`.
    pub stuck_grace: Duration,
    /// How long a removed account stays out before a probe may bring it back.
    pub cooldown: Duration,
    /// The longest cool-down after repeated removals.
    pub cooldown_max: Duration,
    /// Consecutive transient submission failures that remove an account at once.
    pub submit_failures_to_remove: u32,
    /// Silence after which an active attempt is read from Media Services.
    pub reconcile_after: Duration,
    /// Attempts a job gets for errors marked `MayRetry`.
    pub max_attempts: u32,
    /// How often the same alert about an empty rotation may repeat.
    pub alert_repeat: Duration,
}

/// When MRUs come down after work drains.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScaleDown {
    /// As each job ends (the guidance's first recipe).
    OnFinal,
    /// On each sweep (the guidance's remedy for thrashing).
    Periodic,
}

/// Media Reserved Unit settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MruSettings {
    /// How long the MRU value cached in the counter row is trusted before it is read from the service again.
    pub cache_ttl: Duration,
    /// When MRUs come down.
    pub scale_down: ScaleDown,
    /// MRUs never go below this.
    pub floor: u32,
}

impl Settings {
    /// Reads the process environment.
    pub fn from_env() -> Result<Settings, ConfigError> {
        Settings::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads settings through `lookup`, so tests need not touch the process environment.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Settings, ConfigError> {
        let get = |name: &str| lookup(name).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());

        let duration = |name: &'static str, default: Duration| -> Result<Duration, ConfigError> {
            match get(name) {
                Some(v) => parse_duration(&v).map_err(|p| bad(name, p)),
                None => Ok(default),
            }
        };
        let number = |name: &'static str, default: u32, min: u32| -> Result<u32, ConfigError> {
            match get(name) {
                Some(v) => v
                    .parse::<u32>()
                    .ok()
                    .filter(|n| *n >= min)
                    .ok_or_else(|| bad(name, format!("{v:?} is not a whole number of at least {min}"))),
                None => Ok(default),
            }
        };
        let failover = FailoverSettings {
            stuck_after: duration("STUCK_AFTER", Duration::from_secs(600))?,
            stuck_min_jobs: number("STUCK_MIN_JOBS", 1, 1)?,
            stuck_policy: match get("STUCK_POLICY").as_deref() {
                None | Some("resubmit") => StuckPolicy::Resubmit,
                Some("wait") => StuckPolicy::Wait,
                Some(other) => return Err(bad("STUCK_POLICY", format!("{other:?} is not one of resubmit, wait"))),
            },
            stuck_grace: duration("STUCK_GRACE", Duration::from_secs(600))?,
            cooldown: duration("COOLDOWN", Duration::from_secs(1800))?,
            cooldown_max: duration("COOLDOWN_MAX", Duration::from_secs(4 * 3600))?,
            submit_failures_to_remove: number("SUBMIT_FAILURES_TO_REMOVE", 3, 1)?,
            reconcile_after: duration("RECONCILE_AFTER", Duration::from_secs(300))?,
            max_attempts: number("MAX_ATTEMPTS", 3, 1)?,
            alert_repeat: duration("ALERT_REPEAT", Duration::from_secs(900))?,
        };
        if failover.cooldown_max < failover.cooldown {
            return Err(bad("COOLDOWN_MAX", "must not be shorter than COOLDOWN"));
        }

        let accounts = parse_accounts(
            &get("MEDIA_ACCOUNTS").ok_or_else(|| {
                bad("MEDIA_ACCOUNTS", r#"missing; a JSON array like [{"name":"amswe","region":"westeurope","subscriptionId":"...","resourceGroup":"media"}]"#)
            })?,
            failover.stuck_after,
            &get,
        )?;
        let mkio_webhook = mkio::webhook(&get, accounts.iter().any(|a| a.mkio.is_some()))?;
        mkio::distinct_projects(&accounts)?;

        let storage = match (get("TABLES_CONNECTION_STRING"), get("TABLES_ENDPOINT")) {
            (Some(cs), None) => StorageConfig::ConnectionString(cs),
            (None, Some(endpoint)) => StorageConfig::Endpoint(
                parse_url(&endpoint).map_err(|p| bad("TABLES_ENDPOINT", p))?,
            ),
            (Some(_), Some(_)) => {
                return Err(bad("TABLES_CONNECTION_STRING", "set either it or TABLES_ENDPOINT, not both"))
            }
            (None, None) => {
                return Err(bad(
                    "TABLES_CONNECTION_STRING",
                    "missing; set it (UseDevelopmentStorage=true for Azurite) or TABLES_ENDPOINT (https://<account>.table.core.windows.net, used with the managed identity)",
                ))
            }
        };

        let table_prefix = get("TABLE_PREFIX").unwrap_or_else(|| "amsfo".to_owned());
        if table_prefix.len() > 40
            || !table_prefix.chars().all(|c| c.is_ascii_alphanumeric())
            || !table_prefix.starts_with(|c: char| c.is_ascii_alphabetic())
        {
            return Err(bad("TABLE_PREFIX", "must start with a letter and hold at most 40 letters and digits"));
        }

        let transforms = parse_transforms(&get("TRANSFORMS").ok_or_else(|| {
            bad("TRANSFORMS", "missing; a comma-separated list of transform names that exist in every account, each optionally NAME:OUTPUTS")
        })?)?;

        let arm_auth = match get("ARM_AUTH").as_deref() {
            None | Some("managed-identity") => ArmAuth::ManagedIdentity { client_id: get("AZURE_CLIENT_ID") },
            Some("none") => ArmAuth::None,
            Some(other) => return Err(bad("ARM_AUTH", format!("{other:?} is not one of managed-identity, none"))),
        };

        let arm_timeout = match get("ARM_TIMEOUT") {
            Some(v) => parse_duration(&v).map_err(|p| bad("ARM_TIMEOUT", p))?,
            None => Duration::from_secs(30),
        };

        let mru = MruSettings {
            cache_ttl: match get("MRU_CACHE_TTL") {
                Some(v) => parse_duration(&v).map_err(|p| bad("MRU_CACHE_TTL", p))?,
                None => Duration::from_secs(60),
            },
            scale_down: match get("MRU_SCALE_DOWN").as_deref() {
                None | Some("on-final") => ScaleDown::OnFinal,
                Some("periodic") => ScaleDown::Periodic,
                Some(other) => {
                    return Err(bad("MRU_SCALE_DOWN", format!("{other:?} is not one of on-final, periodic")))
                }
            },
            floor: match get("MRU_FLOOR") {
                Some(v) => v.parse().map_err(|_| bad("MRU_FLOOR", format!("{v:?} is not a whole number")))?,
                None => 0,
            },
        };

        // A test-only crash point; ignored by release builds.
        let fail_point = if cfg!(debug_assertions) { get("FAIL_POINT") } else { None };

        let (definitions, publish) = publication(&get, &transforms)?;
        let notify = notify_settings(&get)?;
        for name in ["TOKEN_SIGNING_KEY", "CALLBACK_SIGNING_KEY"] {
            if get(name).is_some_and(|v| v.starts_with("@Microsoft.KeyVault(")) {
                // The platform leaves the reference text in place when it cannot resolve it.
                return Err(bad(
                    name,
                    "is a Key Vault reference the platform could not resolve; check that the app's identity has Key Vault Secrets User on the vault and that the secret exists (the portal shows each reference's status)",
                ));
            }
        }

        Ok(Settings {
            accounts,
            storage,
            table_prefix,
            transforms,
            arm_auth,
            arm_timeout,
            mru,
            failover,
            fail_point,
            definitions,
            publish,
            notify,
            mkio_webhook,
        })
    }

    /// The configured account with this name (case-insensitive, as Event Grid topics vary in case).
    pub fn account(&self, name: &str) -> Option<&AccountConfig> {
        self.accounts.iter().find(|a| a.name.eq_ignore_ascii_case(name))
    }

    /// The configured account whose events come from `topic` (resource ids compared case-insensitively, as
    /// Event Grid does not keep their case).
    pub fn account_for_topic(&self, topic: &str) -> Option<&AccountConfig> {
        self.accounts.iter().find(|a| crate::domain::event::same_resource_id(&a.events_topic(), topic))
    }

    /// The names of the configured transforms.
    pub fn transform_names(&self) -> BTreeSet<String> {
        self.transforms.keys().cloned().collect()
    }

    /// What SubmitJob bodies are checked against.
    pub fn request_rules(&self) -> Rules {
        Rules {
            transforms: self.transform_names(),
            callbacks: self.notify.callback_key.is_some(),
            loopback_http_callbacks: self.notify.allow_http_loopback,
        }
    }
}

/// Minimum length of `CALLBACK_SIGNING_KEY`: 32 characters of a random string carry enough entropy for
/// HMAC-SHA256, and a short one is more likely a placeholder than a key.
const MIN_CALLBACK_KEY_CHARS: usize = 32;

fn notify_settings(get: &impl Fn(&str) -> Option<String>) -> Result<NotifySettings, ConfigError> {
    let service_bus = match get("SERVICE_BUS_ENDPOINT") {
        Some(v) => Some(parse_url(&v).map_err(|p| bad("SERVICE_BUS_ENDPOINT", p))?),
        None => None,
    };
    let topic = get("JOB_EVENTS_TOPIC").unwrap_or_else(|| DEFAULT_TOPIC.to_owned());
    let topic_ok = topic.len() <= 260
        && topic.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && topic.starts_with(|c: char| c.is_ascii_alphanumeric());
    if !topic_ok {
        return Err(bad("JOB_EVENTS_TOPIC", format!("{topic:?} is not a Service Bus topic name")));
    }
    let callback_key = get("CALLBACK_SIGNING_KEY");
    if callback_key.as_ref().is_some_and(|k| k.chars().count() < MIN_CALLBACK_KEY_CHARS && !k.starts_with('@')) {
        return Err(bad(
            "CALLBACK_SIGNING_KEY",
            format!("must be at least {MIN_CALLBACK_KEY_CHARS} characters, e.g. `openssl rand -hex 32`"),
        ));
    }
    let callback_retry = match get("CALLBACK_RETRY") {
        None => default_callback_retry(),
        Some(list) => RetrySchedule {
            delays: list
                .split(',')
                .map(|d| parse_duration(d).map_err(|p| bad("CALLBACK_RETRY", p)))
                .collect::<Result<Vec<_>, _>>()?,
        },
    };
    let allow_http_loopback = match get("CALLBACK_ALLOW_HTTP_LOOPBACK").as_deref() {
        None | Some("off") => false,
        Some("on") => cfg!(debug_assertions),
        Some(other) => return Err(bad("CALLBACK_ALLOW_HTTP_LOOPBACK", format!("{other:?} is not one of on, off"))),
    };
    Ok(NotifySettings { service_bus, topic, callback_key, callback_retry, allow_http_loopback })
}

/// Reads the publication settings and the compiled-in definitions, resolving the settings they refer to.
fn publication(
    get: &impl Fn(&str) -> Option<String>,
    transforms: &BTreeMap<String, usize>,
) -> Result<(Definitions, PublishSettings), ConfigError> {
    // The file is compiled in, so a bad file is a build mistake; it still stops start-up with a clear message.
    let definitions = Definitions::parse(MEDIA_DEFINITIONS).map_err(|e| bad("TRANSFORMS", e.to_string()))?;
    let mismatches = transform_mismatches(&definitions, transforms);
    if !mismatches.is_empty() {
        return Err(bad(
            "TRANSFORMS",
            format!(
                "must list exactly the transforms of definitions/media.json (version {}) with their output counts: {}",
                definitions.version,
                mismatches.join("; ")
            ),
        ));
    }
    let enabled = match get("PUBLISH_STREAMING").as_deref() {
        None | Some("off") => false,
        Some("on") => true,
        Some(other) => return Err(bad("PUBLISH_STREAMING", format!("{other:?} is not one of on, off"))),
    };
    let host = |name: &'static str| -> Result<Option<String>, ConfigError> {
        match get(name) {
            None => Ok(None),
            Some(h) => {
                let valid = h.len() <= 253
                    && h.split(':').next().is_some_and(|n| !n.is_empty())
                    && h.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | ':'));
                if valid {
                    Ok(Some(h.to_ascii_lowercase()))
                } else {
                    Err(bad(name, format!("{h:?} is not a host name (like media.example.com, without https://)")))
                }
            }
        }
    };
    let streaming_host = host("STREAMING_TRAFFIC_MANAGER_HOST")?;
    let key_delivery_host = host("TRAFFIC_MANAGER_HOST")?;
    let streaming_policy = get("STREAMING_POLICY").unwrap_or_else(|| definitions.default_streaming_policy.clone());
    if !definitions.has_streaming_policy(&streaming_policy) {
        return Err(bad(
            "STREAMING_POLICY",
            format!("{streaming_policy:?} is neither in definitions/media.json nor a Predefined_* policy"),
        ));
    }
    let definitions_check_every = match get("DEFINITIONS_CHECK_EVERY") {
        Some(v) => parse_duration(&v).map_err(|p| bad("DEFINITIONS_CHECK_EVERY", p))?,
        None => Duration::from_secs(900),
    };
    // Every referenced setting is read, so the registry test sees them all, but they are needed only when
    // the policies are wanted: with publication off only transforms are synced.
    let referenced = definitions.referenced_settings();
    let values: BTreeMap<String, Option<String>> = referenced
        .keys()
        .map(|name| {
            // A host name as validated above (lowercase), not as typed.
            let value = if name == "TRAFFIC_MANAGER_HOST" { key_delivery_host.clone() } else { get(name) };
            (name.clone(), value)
        })
        .collect();
    let wanted = if enabled { definitions } else { definitions.transforms_only() };
    let resolved = wanted.resolve(|name| values.get(name).cloned().flatten()).map_err(|missing| {
        let name = SETTINGS.iter().find(|s| s.name == missing).map_or("PUBLISH_STREAMING", |s| s.name);
        bad(name, format!("missing; definitions/media.json needs {missing} when PUBLISH_STREAMING=on"))
    })?;
    let retry = match get("PUBLISH_RETRY") {
        None => RetrySchedule::default(),
        Some(list) => RetrySchedule {
            delays: list
                .split(',')
                .map(|d| parse_duration(d).map_err(|p| bad("PUBLISH_RETRY", p)))
                .collect::<Result<Vec<_>, _>>()?,
        },
    };
    let publish = PublishSettings {
        enabled,
        streaming_policy,
        definitions_check_every,
        streaming_host,
        key_delivery_host,
        retry,
    };
    Ok((resolved, publish))
}

fn parse_accounts(
    json: &str,
    default_stuck_after: Duration,
    get: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<AccountConfig>, ConfigError> {
    const S: &str = "MEDIA_ACCOUNTS";
    let raw: Vec<RawAccount> =
        serde_json::from_str(json).map_err(|e| bad(S, format!("not a valid JSON array of accounts: {e}")))?;
    if raw.is_empty() {
        return Err(bad(S, "lists no account; at least one is needed"));
    }
    let mut seen = BTreeSet::new();
    raw.into_iter()
        .map(|mut a| {
            let valid_name = (3..=24).contains(&a.name.len())
                && a.name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
            if !valid_name {
                return Err(bad(S, format!("account name {:?} must be 3 to 24 lowercase letters and digits", a.name)));
            }
            if !seen.insert(a.name.clone()) {
                return Err(bad(S, format!("account {:?} is listed twice", a.name)));
            }
            let provider = match &a.provider {
                Some(p) => p.parse::<Provider>().map_err(|e| bad(S, format!("account {:?}: {e}", a.name)))?,
                None => Provider::Ams,
            };
            // An MK.IO project is not an ARM resource: it has no subscription or resource group.
            let arm_scoped = provider != Provider::Mkio;
            for (field, value, needed) in [
                ("region", &a.region, true),
                ("subscriptionId", &a.subscription_id, arm_scoped),
                ("resourceGroup", &a.resource_group, arm_scoped),
            ] {
                if (needed && value.is_empty()) || value.contains(['/', '?', '#']) {
                    return Err(bad(
                        S,
                        format!("account {:?}: {field} must be non-empty and hold no '/', '?' or '#'", a.name),
                    ));
                }
            }
            let mru_mode = a.mru_mode.unwrap_or(MruMode::Automatic);
            if mru_mode == MruMode::Managed && !provider.capabilities().reserved_units {
                return Err(bad(
                    S,
                    format!(
                        "account {:?}: mruMode managed needs reserved units, which provider {provider} does not have; \
                         leave mruMode out (or set automatic)",
                        a.name
                    ),
                ));
            }
            let (api_key, event_topic) = provider_fields(&a, provider, get)?;
            if provider == Provider::Rms && a.arm_endpoint.is_none() {
                return Err(bad(
                    S,
                    format!(
                        "account {:?}: provider rms needs armEndpoint, the instance's API endpoint (like \
                         https://rms.<unique>.ravnur.net)",
                        a.name
                    ),
                ));
            }
            let raw_mkio = mkio::RawMkio {
                project: a.project.clone(),
                mkio_endpoint: a.mkio_endpoint.clone(),
                token_setting: a.token_setting.clone(),
                storage: a.storage.take(),
                writes_per_minute: a.writes_per_minute,
                reads_per_minute: a.reads_per_minute,
            };
            let mkio = match provider {
                Provider::Mkio => Some(mkio::parse_account(&a.name, raw_mkio, get)?),
                _ if raw_mkio.any() => {
                    return Err(bad(
                        S,
                        format!("account {:?}: project, mkioEndpoint, tokenSetting, storage, writesPerMinute and readsPerMinute are for provider mkio", a.name),
                    ))
                }
                _ => None,
            };
            // An MK.IO account's API is its MK.IO endpoint; nothing ARM is called for it.
            let arm_default = mkio.as_ref().map_or(DEFAULT_ARM_ENDPOINT, |m| m.endpoint.as_str());
            let arm_endpoint = parse_url(a.arm_endpoint.as_deref().unwrap_or(arm_default))
                .map_err(|p| bad(S, format!("account {:?}: armEndpoint {p}", a.name)))?;
            let mru_endpoint = match &a.mru_endpoint {
                Some(url) => {
                    Some(parse_url(url).map_err(|p| bad(S, format!("account {:?}: mruEndpoint {p}", a.name)))?)
                }
                None => None,
            };
            let stuck_after = match &a.stuck_after {
                Some(d) => parse_duration(d).map_err(|p| bad(S, format!("account {:?}: stuckAfter {p}", a.name)))?,
                None => default_stuck_after,
            };
            Ok(AccountConfig {
                stuck_after,
                mru_endpoint,
                name: a.name,
                region: a.region,
                provider,
                subscription_id: a.subscription_id,
                resource_group: a.resource_group,
                arm_endpoint,
                mru_mode,
                max_mru: a.max_mru.unwrap_or(10),
                event_topic,
                api_key,
                mkio,
            })
        })
        .collect::<Result<Vec<_>, _>>()
        .and_then(distinct_event_topics)
}

/// Refuses two accounts whose events come from one topic: a job event's subject names the transform and the
/// job but not the account, so events of a custom topic shared by two accounts (one Ravnur instance serving
/// both) could not be told apart.
fn distinct_event_topics(accounts: Vec<AccountConfig>) -> Result<Vec<AccountConfig>, ConfigError> {
    for (i, a) in accounts.iter().enumerate() {
        let topic = a.events_topic();
        if let Some(b) =
            accounts[..i].iter().find(|b| crate::domain::event::same_resource_id(&b.events_topic(), &topic))
        {
            return Err(bad(
                "MEDIA_ACCOUNTS",
                format!(
                    "accounts {:?} and {:?} have the same eventTopic {topic:?}: their events could not be told \
                     apart, so give each account its own RMS instance (and topic)",
                    b.name, a.name
                ),
            ));
        }
    }
    Ok(accounts)
}

/// The fields only some providers take: Ravnur's API key (from the setting `apiKeySetting` names) and the
/// custom topic its events come from. Both are required for rms and refused elsewhere, so a misplaced
/// field is a clear error instead of being silently unused.
fn provider_fields(
    a: &RawAccount,
    provider: Provider,
    get: &dyn Fn(&str) -> Option<String>,
) -> Result<(Option<ApiKey>, Option<String>), ConfigError> {
    const S: &str = "MEDIA_ACCOUNTS";
    if provider != Provider::Rms {
        for (field, set) in [("apiKeySetting", a.api_key_setting.is_some()), ("eventTopic", a.event_topic.is_some())] {
            if set {
                return Err(bad(S, format!("account {:?}: {field} is for rms accounts, not {provider}", a.name)));
            }
        }
        return Ok((None, None));
    }
    let setting = match &a.api_key_setting {
        Some(name) => name.trim().to_owned(),
        None => format!("RMS_API_KEY_{}", a.name.to_ascii_uppercase()),
    };
    if setting.is_empty() || !setting.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')) {
        return Err(bad(S, format!("account {:?}: apiKeySetting {setting:?} is not a setting name", a.name)));
    }
    let Some(value) = get(&setting) else {
        return Err(bad(
            S,
            format!(
                "account {:?}: the API key setting {setting} is missing or empty; set it to the instance's API key \
                 (in Azure, a Key Vault reference)",
                a.name
            ),
        ));
    };
    let topic = a.event_topic.as_deref().map(str::trim).unwrap_or_default();
    let parts: Vec<&str> = topic.trim_matches('/').split('/').collect();
    let resource_id = topic.starts_with('/')
        && parts.len() >= 8
        && parts[0].eq_ignore_ascii_case("subscriptions")
        && parts[2].eq_ignore_ascii_case("resourceGroups")
        && parts.iter().all(|p| !p.is_empty())
        && !topic.contains(['?', '#']);
    if !resource_id {
        return Err(bad(
            S,
            format!(
                "account {:?}: provider rms needs eventTopic, the resource id of the instance's Event Grid custom \
                 topic (/subscriptions/<sub>/resourceGroups/<rg>/providers/Microsoft.EventGrid/topics/eg-topic-<suffix>), \
                 got {topic:?}",
                a.name
            ),
        ));
    }
    Ok((Some(ApiKey::new(setting, value)), Some(topic.to_owned())))
}

fn parse_transforms(list: &str) -> Result<BTreeMap<String, usize>, ConfigError> {
    const S: &str = "TRANSFORMS";
    list.split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(|entry| {
            let (name, outputs) = match entry.split_once(':') {
                Some((name, n)) => (
                    name,
                    n.parse::<usize>()
                        .ok()
                        .filter(|n| (1..=20).contains(n))
                        .ok_or_else(|| bad(S, format!("{entry:?}: OUTPUTS must be a number from 1 to 20")))?,
                ),
                None => (entry, 1),
            };
            let ok = name.len() <= 260 && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
            if !ok {
                return Err(bad(S, format!("{name:?} is not a valid transform name (letters, digits, '-' and '_')")));
            }
            Ok((name.to_owned(), outputs))
        })
        .collect::<Result<BTreeMap<_, _>, _>>()
        .and_then(|m| if m.is_empty() { Err(bad(S, "lists no transform")) } else { Ok(m) })
}

fn parse_url(s: &str) -> Result<Url, String> {
    let url = Url::parse(s).map_err(|e| format!("{s:?} is not a URL: {e}"))?;
    match url.scheme() {
        "https" | "http" if url.host().is_some() => Ok(url),
        _ => Err(format!("{s:?} must be an http(s) URL")),
    }
}

/// Parses `500ms`, `30s`, `10m`, `2h`, `1d`, or a plain number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let value: f64 = number.parse().map_err(|_| format!("{s:?} is not a duration like 30s, 10m or 2h"))?;
    let scale = match unit.trim() {
        // A bare number is refused: `10` could mean seconds or minutes, and a wrong guess is a silent
        // factor of 60 in how soon a region leaves rotation.
        "" => return Err(format!("{s:?} has no unit; write it as {number}s, {number}m or {number}h")),
        "ms" => 0.001,
        "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        "d" => 86_400.0,
        other => return Err(format!("{s:?}: unknown unit {other:?}; use ms, s, m, h or d")),
    };
    Duration::try_from_secs_f64(value * scale).map_err(|_| format!("{s:?} is out of range"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn settings(pairs: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        let map: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Settings::from_lookup(|k| map.get(k).cloned())
    }

    const ACCOUNTS: &str = r#"[{"name":"amswe","region":"westeurope","subscriptionId":"s","resourceGroup":"rg","armEndpoint":"http://127.0.0.1:9000","mruMode":"managed","maxMru":5}]"#;

    #[test]
    fn a_complete_environment_is_read_with_defaults() {
        let s = settings(&[
            ("MEDIA_ACCOUNTS", ACCOUNTS),
            ("TABLES_CONNECTION_STRING", "UseDevelopmentStorage=true"),
            ("TRANSFORMS", " encode:1 "),
        ])
        .expect("valid");
        assert_eq!(s.accounts[0].mru_mode, MruMode::Managed);
        assert_eq!(s.transforms.get("encode"), Some(&1));
        assert!(!s.publish.enabled);
        assert!(
            s.definitions.content_key_policies.is_empty(),
            "no policies (nor their secrets) while publication is off"
        );
        assert_eq!(s.publish.definitions_check_every, Duration::from_secs(900));
        assert_eq!(s.table_prefix, "amsfo");
        assert_eq!(s.arm_auth, ArmAuth::ManagedIdentity { client_id: None });
        assert_eq!(s.account("AMSWE").map(|a| a.region.as_str()), Some("westeurope"));
    }

    #[test]
    fn each_bad_setting_is_named_in_the_error() {
        let base = [
            ("MEDIA_ACCOUNTS", ACCOUNTS),
            ("TABLES_CONNECTION_STRING", "UseDevelopmentStorage=true"),
            ("TRANSFORMS", "encode"),
        ];
        let with = |k: &'static str, v: &'static str| {
            let mut pairs: Vec<(&str, &str)> = base.iter().copied().filter(|(name, _)| *name != k).collect();
            pairs.push((k, v));
            settings(&pairs).err().map(|e| e.setting)
        };
        assert_eq!(with("MEDIA_ACCOUNTS", "[]"), Some("MEDIA_ACCOUNTS"));
        assert_eq!(
            with("MEDIA_ACCOUNTS", r#"[{"name":"Bad_Name","region":"r","subscriptionId":"s","resourceGroup":"g"}]"#),
            Some("MEDIA_ACCOUNTS")
        );
        assert_eq!(with("TRANSFORMS", "a:0"), Some("TRANSFORMS"));
        assert_eq!(with("TABLE_PREFIX", "1abc"), Some("TABLE_PREFIX"));
        assert_eq!(with("ARM_AUTH", "keys"), Some("ARM_AUTH"));
        assert_eq!(with("ARM_TIMEOUT", "soon"), Some("ARM_TIMEOUT"));
        assert_eq!(with("MRU_SCALE_DOWN", "sometimes"), Some("MRU_SCALE_DOWN"));
        assert_eq!(with("MRU_FLOOR", "-1"), Some("MRU_FLOOR"));
        assert_eq!(with("MRU_CACHE_TTL", "forever"), Some("MRU_CACHE_TTL"));
        assert_eq!(with("STUCK_POLICY", "panic"), Some("STUCK_POLICY"));
        assert_eq!(with("STUCK_MIN_JOBS", "0"), Some("STUCK_MIN_JOBS"));
        assert_eq!(with("COOLDOWN_MAX", "1m"), Some("COOLDOWN_MAX"));
        assert_eq!(with("MAX_ATTEMPTS", "x"), Some("MAX_ATTEMPTS"));
        assert_eq!(with("TABLES_ENDPOINT", "https://x.table.core.windows.net"), Some("TABLES_CONNECTION_STRING"));
        assert_eq!(settings(&[("TRANSFORMS", "x")]).err().map(|e| e.setting), Some("MEDIA_ACCOUNTS"));
        assert_eq!(with("TRANSFORMS", "encode, thumbs:2"), Some("TRANSFORMS"), "thumbs is not in the definitions");
        assert_eq!(with("TRANSFORMS", "encode:2"), Some("TRANSFORMS"), "encode has one output in the definitions");
        assert_eq!(with("PUBLISH_STREAMING", "yes"), Some("PUBLISH_STREAMING"));
        assert_eq!(with("PUBLISH_STREAMING", "on"), Some("TOKEN_SIGNING_KEY"));
        assert_eq!(with("STREAMING_POLICY", "nope"), Some("STREAMING_POLICY"));
        assert_eq!(with("DEFINITIONS_CHECK_EVERY", "often"), Some("DEFINITIONS_CHECK_EVERY"));
        assert_eq!(with("PUBLISH_RETRY", "1s,soon"), Some("PUBLISH_RETRY"));
        assert_eq!(with("STREAMING_TRAFFIC_MANAGER_HOST", "https://x/"), Some("STREAMING_TRAFFIC_MANAGER_HOST"));
        assert_eq!(with("SERVICE_BUS_ENDPOINT", "sb://x"), Some("SERVICE_BUS_ENDPOINT"));
        assert_eq!(with("JOB_EVENTS_TOPIC", "job events"), Some("JOB_EVENTS_TOPIC"));
        assert_eq!(with("CALLBACK_SIGNING_KEY", "short"), Some("CALLBACK_SIGNING_KEY"));
        assert_eq!(with("CALLBACK_RETRY", "5s,later"), Some("CALLBACK_RETRY"));
        assert_eq!(with("CALLBACK_ALLOW_HTTP_LOOPBACK", "yes"), Some("CALLBACK_ALLOW_HTTP_LOOPBACK"));
        assert_eq!(
            with("CALLBACK_SIGNING_KEY", "@Microsoft.KeyVault(SecretUri=https://kv.vault.azure.net/secrets/x/)"),
            Some("CALLBACK_SIGNING_KEY"),
            "an unresolved Key Vault reference is named, not used as the key"
        );
    }

    #[test]
    fn notifications_default_to_the_job_events_topic_and_the_callback_key_is_never_printed() {
        let key = "0123456789abcdef0123456789abcdef";
        let s = settings(&[
            ("MEDIA_ACCOUNTS", ACCOUNTS),
            ("TABLES_CONNECTION_STRING", "UseDevelopmentStorage=true"),
            ("TRANSFORMS", "encode"),
            ("SERVICE_BUS_ENDPOINT", "https://sb-x.servicebus.windows.net"),
            ("CALLBACK_SIGNING_KEY", key),
        ])
        .expect("valid");
        assert_eq!(s.notify.topic, "job-events");
        assert_eq!(s.notify.service_bus.as_ref().map(Url::as_str), Some("https://sb-x.servicebus.windows.net/"));
        assert!(s.request_rules().callbacks);
        assert_eq!(s.notify.callback_retry.delays.len(), 7);
        assert!(!format!("{s:?}").contains(key));
    }

    #[test]
    fn publication_on_resolves_the_signing_key_and_the_traffic_manager_hosts() {
        let s = settings(&[
            ("MEDIA_ACCOUNTS", ACCOUNTS),
            ("TABLES_CONNECTION_STRING", "UseDevelopmentStorage=true"),
            ("TRANSFORMS", "encode"),
            ("PUBLISH_STREAMING", "on"),
            ("TOKEN_SIGNING_KEY", "AAAAAAAAAAAAAAAAAAAAAA=="),
            ("TRAFFIC_MANAGER_HOST", "Keys.Example.com"),
            ("STREAMING_TRAFFIC_MANAGER_HOST", "media.example.com"),
            ("PUBLISH_RETRY", "1s, 2m"),
        ])
        .expect("valid");
        assert!(s.publish.enabled);
        assert_eq!(s.publish.streaming_policy, s.definitions.default_streaming_policy);
        assert_eq!(s.publish.key_delivery_host.as_deref(), Some("keys.example.com"));
        assert_eq!(s.publish.retry.delays, vec![Duration::from_secs(1), Duration::from_secs(120)]);
        let policies = serde_json::to_string(&s.definitions.streaming_policies).expect("json");
        assert!(policies.contains("https://keys.example.com/?kid={ContentKeyId}"));
        assert!(!format!("{s:?}").contains("AAAAAAAAAAAAAAAAAAAAAA=="), "settings never print the signing key");
    }

    #[test]
    fn durations_accept_the_usual_units() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("45s"), Ok(Duration::from_secs(45)));
        assert!(parse_duration("10 minutes").is_err());
    }

    #[test]
    fn a_duration_without_a_unit_is_refused_with_a_message_that_names_the_setting() {
        let error = settings(&[
            ("MEDIA_ACCOUNTS", ACCOUNTS),
            ("TABLES_CONNECTION_STRING", "UseDevelopmentStorage=true"),
            ("TRANSFORMS", "encode"),
            ("STUCK_AFTER", "10"),
        ])
        .expect_err("a bare number is not a duration")
        .to_string();
        assert!(error.contains("STUCK_AFTER") && error.contains("no unit") && error.contains("10s"), "{error}");
    }

    const RMS_TOPIC: &str = "/subscriptions/s/resourceGroups/rms-rg/providers/Microsoft.EventGrid/topics/eg-topic-abc";

    fn rms_account(extra: &str) -> String {
        format!(
            r#"[{{"name":"rmswe","region":"westeurope","provider":"rms","subscriptionId":"s","resourceGroup":"rg","armEndpoint":"https://rms.abc.ravnur.net"{extra}}}]"#
        )
    }

    fn with_accounts(accounts: &str, extra: &[(&'static str, &'static str)]) -> Result<Settings, ConfigError> {
        let mut pairs = vec![
            ("MEDIA_ACCOUNTS", accounts),
            ("TABLES_CONNECTION_STRING", "UseDevelopmentStorage=true"),
            ("TRANSFORMS", "encode"),
        ];
        pairs.extend_from_slice(extra);
        settings(&pairs)
    }

    /// A JWT whose payload is `{"exp": exp}` (unsigned: the handler never verifies it).
    fn token_expiring(exp: i64) -> String {
        use base64::Engine;
        let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        format!("{}.{}.c2ln", b64(r#"{"alg":"none"}"#), b64(&format!(r#"{{"exp":{exp}}}"#)))
    }

    fn mkio_settings(account: &str, extra: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        let token = token_expiring(4_102_444_800);
        let mut pairs = vec![
            ("MEDIA_ACCOUNTS", account),
            ("TABLES_CONNECTION_STRING", "UseDevelopmentStorage=true"),
            ("TRANSFORMS", "encode"),
            ("MKIO_TOKEN_MKWE", token.as_str()),
            ("MKIO_STORAGE_SAS_MKWE", "?sv=2022-11-02&ss=b&srt=co&sp=rwlac&sig=abc"),
            ("MKIO_WEBHOOK_URL", "https://app.example/api/events/mkio"),
            ("MKIO_WEBHOOK_SECRET", "a-long-enough-shared-secret"),
        ];
        pairs.extend_from_slice(extra);
        settings(&pairs)
    }

    #[test]
    fn an_rms_account_reads_its_api_key_from_the_default_setting_and_maps_its_custom_topic() {
        let accounts = rms_account(&format!(r#","eventTopic":"{RMS_TOPIC}""#));
        let s = with_accounts(&accounts, &[("RMS_API_KEY_RMSWE", "k3y")]).expect("valid");
        let account = &s.accounts[0];
        assert_eq!(account.provider, Provider::Rms);
        assert_eq!(
            account.api_key.as_ref().map(|k| (k.setting.as_str(), k.expose())),
            Some(("RMS_API_KEY_RMSWE", "k3y"))
        );
        assert_eq!(account.events_topic(), RMS_TOPIC);
        let shouted = RMS_TOPIC.to_ascii_uppercase();
        assert_eq!(s.account_for_topic(&shouted).map(|a| a.name.as_str()), Some("rmswe"), "ids ignore case");
        assert!(s.account_for_topic(&account.resource_path()).is_none(), "an rms account's events come from its topic");
        assert!(!format!("{s:?}").contains("k3y"), "settings never print the key");
    }

    #[test]
    fn an_rms_account_may_name_the_setting_that_holds_its_key() {
        let accounts = rms_account(&format!(r#","eventTopic":"{RMS_TOPIC}","apiKeySetting":"RavnurKey""#));
        let s = with_accounts(&accounts, &[("RavnurKey", "k")]).expect("valid");
        assert_eq!(s.accounts[0].api_key.as_ref().map(|k| k.setting.as_str()), Some("RavnurKey"));
    }

    #[test]
    fn a_missing_api_key_stops_start_up_with_a_message_that_names_its_setting() {
        let accounts = rms_account(&format!(r#","eventTopic":"{RMS_TOPIC}""#));
        let error = with_accounts(&accounts, &[]).expect_err("no key").to_string();
        assert!(error.contains("MEDIA_ACCOUNTS") && error.contains("RMS_API_KEY_RMSWE"), "{error}");
    }

    #[test]
    fn rms_accounts_need_their_endpoint_and_custom_topic_and_cannot_have_managed_mrus() {
        let key = [("RMS_API_KEY_RMSWE", "k")];
        let problem = |accounts: String| with_accounts(&accounts, &key).expect_err("refused").to_string();
        let no_topic = problem(rms_account(""));
        assert!(no_topic.contains("eventTopic"), "{no_topic}");
        let not_an_id = problem(rms_account(r#","eventTopic":"eg-topic-abc""#));
        assert!(not_an_id.contains("eventTopic"), "{not_an_id}");
        let managed = problem(rms_account(&format!(r#","eventTopic":"{RMS_TOPIC}","mruMode":"managed""#)));
        assert!(managed.contains("mruMode managed") && managed.contains("reserved units"), "{managed}");
        let no_endpoint = problem(format!(
            r#"[{{"name":"rmswe","region":"r","provider":"rms","subscriptionId":"s","resourceGroup":"rg","eventTopic":"{RMS_TOPIC}"}}]"#
        ));
        assert!(no_endpoint.contains("armEndpoint"), "{no_endpoint}");
    }

    #[test]
    fn two_accounts_cannot_share_one_custom_topic() {
        let account = |name: &str, topic: &str| {
            format!(
                r#"{{"name":"{name}","region":"r","provider":"rms","subscriptionId":"s","resourceGroup":"rg","armEndpoint":"https://rms.abc.ravnur.net","eventTopic":"{topic}"}}"#
            )
        };
        let accounts =
            format!("[{},{}]", account("rmsone", RMS_TOPIC), account("rmstwo", &RMS_TOPIC.to_ascii_uppercase()));
        let error = with_accounts(&accounts, &[("RMS_API_KEY_RMSONE", "k"), ("RMS_API_KEY_RMSTWO", "k")])
            .expect_err("one topic, two accounts")
            .to_string();
        assert!(error.contains("rmsone") && error.contains("rmstwo") && error.contains("same eventTopic"), "{error}");
    }

    #[test]
    fn fields_of_rms_accounts_are_refused_on_other_providers() {
        let ams = format!(
            r#"[{{"name":"amswe","region":"r","subscriptionId":"s","resourceGroup":"g","eventTopic":"{RMS_TOPIC}"}}]"#
        );
        let error = with_accounts(&ams, &[]).expect_err("refused").to_string();
        assert!(error.contains("eventTopic is for rms accounts"), "{error}");
    }

    #[test]
    fn an_ams_account_keeps_its_own_resource_id_as_its_events_topic_and_scales_mrus_only_when_managed() {
        let s = with_accounts(ACCOUNTS, &[]).expect("valid");
        let account = &s.accounts[0];
        assert_eq!(account.events_topic(), account.resource_path());
        let topic = "/subscriptions/S/resourceGroups/RG/providers/Microsoft.Media/mediaservices/AMSWE";
        assert_eq!(s.account_for_topic(topic).map(|a| a.name.as_str()), Some("amswe"));
        assert!(account.scales_mru());
        let rms = AccountConfig { provider: Provider::Rms, ..account.clone() };
        assert!(!rms.scales_mru(), "no reserved units, whatever mruMode says");
    }

    const MKIO_ACCOUNT: &str = r#"[{"name":"mkwe","region":"westeurope","provider":"mkio","storage":{"name":"mkwestore","url":"https://mkwestore.blob.core.windows.net"}}]"#;

    #[test]
    fn an_mkio_account_needs_no_subscription_and_takes_its_defaults() {
        let s = mkio_settings(MKIO_ACCOUNT, &[]).expect("valid");
        let mkio = s.accounts[0].mkio.as_ref().expect("an mkio account");
        assert_eq!((mkio.project.as_str(), mkio.endpoint.as_str()), ("mkwe", "https://app.mk.io/"));
        assert_eq!((mkio.writes_per_minute, mkio.reads_per_minute), (900, 1800));
        assert_eq!(mkio.token.setting, "MKIO_TOKEN_MKWE");
        assert_eq!(mkio.token.expires_at.map(|t| t.timestamp()), Some(4_102_444_800));
        assert!(
            matches!(&mkio.storage.credential, StorageCredential::Sas(sas) if sas.expose() == "sv=2022-11-02&ss=b&srt=co&sp=rwlac&sig=abc"),
            "{:?}",
            mkio.storage.credential
        );
        assert!(s.mkio_webhook.is_some());
        let printed = format!("{s:?}");
        assert!(!printed.contains("sig=abc") && !printed.contains("a-long-enough"), "secrets never print");
    }

    #[test]
    fn an_mkio_storage_without_a_sas_is_reached_with_user_delegation_sas_unless_it_names_its_setting() {
        let s = mkio_settings(MKIO_ACCOUNT, &[("MKIO_STORAGE_SAS_MKWE", "")]).expect("valid");
        let storage = &s.accounts[0].mkio.as_ref().expect("an mkio account").storage;
        assert_eq!(
            storage.credential,
            StorageCredential::UserDelegation { account: "mkwestore".to_owned() },
            "no SAS: the product signs user-delegation SAS for the account the URL names"
        );
        let named = r#"[{"name":"mkwe","region":"westeurope","provider":"mkio","storage":{"name":"s","url":"https://s.blob.core.windows.net","sasSetting":"MY_SAS"}}]"#;
        let e = mkio_settings(named, &[]).expect_err("a named setting must be set");
        assert!(e.to_string().contains("MY_SAS is not set"), "{e}");
    }

    #[test]
    fn each_bad_mkio_setting_stops_start_up_with_a_message_naming_it() {
        let problem = |account: &str, extra: &[(&str, &str)]| match mkio_settings(account, extra) {
            Ok(_) => String::from("accepted"),
            Err(e) => e.to_string(),
        };
        assert!(problem(MKIO_ACCOUNT, &[("MKIO_TOKEN_MKWE", "not-a-jwt")]).contains("MKIO_TOKEN_MKWE"));
        assert!(problem(MKIO_ACCOUNT, &[("MKIO_TOKEN_MKWE", "@Microsoft.KeyVault(SecretUri=x)")])
            .contains("unresolved Key Vault reference"));
        assert!(problem(MKIO_ACCOUNT, &[("MKIO_STORAGE_SAS_MKWE", "sv=1")]).contains("MKIO_STORAGE_SAS_MKWE"));
        assert!(problem(MKIO_ACCOUNT, &[("MKIO_WEBHOOK_SECRET", "short")]).contains("MKIO_WEBHOOK_SECRET"));
        let no_storage = r#"[{"name":"mkwe","region":"westeurope","provider":"mkio"}]"#;
        assert!(problem(no_storage, &[]).contains("storage"));
        let managed = r#"[{"name":"mkwe","region":"r","provider":"mkio","mruMode":"managed","storage":{"name":"s","url":"https://s.blob.core.windows.net"}}]"#;
        assert!(problem(managed, &[]).contains("reserved units"));
        let twice = r#"[{"name":"mkwe","region":"r","provider":"mkio","project":"p","storage":{"name":"s","url":"https://s.blob.core.windows.net"}},
            {"name":"mkne","region":"r","provider":"mkio","project":"P","tokenSetting":"MKIO_TOKEN_MKWE","storage":{"name":"s","url":"https://s.blob.core.windows.net","sasSetting":"MKIO_STORAGE_SAS_MKWE"}}]"#;
        assert!(problem(twice, &[]).contains("same MK.IO project"));
        let project_on_ams =
            r#"[{"name":"amswe","region":"r","subscriptionId":"s","resourceGroup":"g","project":"p"}]"#;
        assert!(problem(project_on_ams, &[]).contains("for provider mkio"));
        let no_subscription = r#"[{"name":"amswe","region":"r","resourceGroup":"g"}]"#;
        assert!(problem(no_subscription, &[]).contains("subscriptionId"));
    }

    #[test]
    fn the_webhook_settings_are_needed_only_with_an_mkio_account() {
        let e = mkio_settings(MKIO_ACCOUNT, &[("MKIO_WEBHOOK_URL", "")]).expect_err("needs the URL");
        assert_eq!(e.setting, "MKIO_WEBHOOK_URL");
        let s = settings(&[
            ("MEDIA_ACCOUNTS", ACCOUNTS),
            ("TABLES_CONNECTION_STRING", "UseDevelopmentStorage=true"),
            ("TRANSFORMS", "encode"),
        ])
        .expect("valid");
        assert!(s.mkio_webhook.is_none());
    }

    #[test]
    fn in_azure_the_webhook_url_defaults_to_the_apps_own_host() {
        let s = mkio_settings(
            MKIO_ACCOUNT,
            &[("MKIO_WEBHOOK_URL", ""), ("WEBSITE_HOSTNAME", "func-abc.azurewebsites.net")],
        )
        .expect("the platform's host name is enough");
        let url = s.mkio_webhook.map(|w| w.url.to_string());
        assert_eq!(url.as_deref(), Some("https://func-abc.azurewebsites.net/api/events/mkio"));
        let s = mkio_settings(MKIO_ACCOUNT, &[("WEBSITE_HOSTNAME", "func-abc.azurewebsites.net")]).expect("valid");
        let url = s.mkio_webhook.map(|w| w.url.to_string());
        assert_eq!(url.as_deref(), Some("https://app.example/api/events/mkio"), "a set MKIO_WEBHOOK_URL wins");
    }

    #[test]
    fn an_expired_token_does_not_stop_start_up_so_the_sweep_can_say_so() {
        let expired = token_expiring(1_000_000_000);
        let s = mkio_settings(MKIO_ACCOUNT, &[("MKIO_TOKEN_MKWE", expired.as_str())]).expect("still starts");
        assert_eq!(
            s.accounts[0].mkio.as_ref().and_then(|m| m.token.expires_at).map(|t| t.timestamp()),
            Some(1_000_000_000)
        );
    }

    #[test]
    fn the_connection_string_is_never_printed() {
        let s = StorageConfig::ConnectionString("AccountKey=secret".into());
        assert!(!format!("{s:?}").contains("secret"));
    }
}

#[cfg(test)]
mod registry_tests {
    use super::*;

    /// Every name the reader asks for is in [`SETTINGS`], so the template and README checks cover it.
    #[test]
    fn every_setting_the_reader_asks_for_is_registered() {
        let asked = std::cell::RefCell::new(BTreeSet::new());
        let _ = Settings::from_lookup(|name| {
            asked.borrow_mut().insert(name.to_owned());
            match name {
                "MEDIA_ACCOUNTS" => {
                    Some(r#"[{"name":"amswe","region":"r","subscriptionId":"s","resourceGroup":"g"}]"#.into())
                }
                "TABLES_CONNECTION_STRING" => Some("UseDevelopmentStorage=true".into()),
                "TRANSFORMS" => Some("encode".into()),
                _ => None,
            }
        });
        let registered: BTreeSet<String> = SETTINGS.iter().map(|s| s.name.to_owned()).collect();
        let missing: Vec<_> = asked.into_inner().difference(&registered).cloned().collect();
        assert!(missing.is_empty(), "settings read but not registered: {missing:?}");
    }
}
