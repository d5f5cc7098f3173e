//! Command line and the validated configuration derived from it.

use std::time::Duration;

use clap::Parser;
use serde::Serialize;
use thiserror::Error;

use crate::events::EventType;
use crate::mkio::config::{MkioArgs, MkioConfig, MkioConfigError};

/// Command line of the `ams-emulator` binary.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "ams-emulator",
    version,
    about = "Azure Media Services emulator: ARM transforms/assets/jobs, Event Grid delivery, fault injection"
)]
pub struct Cli {
    /// TCP port on 127.0.0.1 (0 picks a free port).
    #[arg(long, default_value_t = 0)]
    pub port: u16,
    /// A media account as NAME:REGION[:managed|automatic[:ams|rms|mkio]]; repeat for several accounts.
    /// `managed` accounts have reserved units (MRUs) that gate concurrency; `automatic` (the default) scale alone.
    /// The last part is the provider the account speaks as: Azure Media Services (`ams`, the default), Ravnur
    /// Media Services (`rms`) or MediaKind MK.IO (`mkio`).
    #[arg(long = "account", value_name = "NAME:REGION[:MODE[:PROVIDER]]", required = true)]
    pub accounts: Vec<String>,
    /// Most reserved units a managed account may set (`MaxReservableUnits`; 25 is the documented default quota).
    #[arg(long, default_value_t = 25)]
    pub max_mru: u32,
    /// Subscription id the ARM paths must carry.
    #[arg(long, default_value = "00000000-0000-0000-0000-000000000000")]
    pub subscription: String,
    /// Resource group the ARM paths must carry.
    #[arg(long, default_value = "media-rg")]
    pub resource_group: String,
    /// Where events are POSTed (can also be set through `POST /_emulator/events`).
    #[arg(long, value_name = "URL")]
    pub event_endpoint: Option<String>,
    /// Emulated durations are divided by this (60 makes a minute pass in a second).
    #[arg(long, default_value_t = 1.0)]
    pub time_scale: f64,
    /// Emulated milliseconds a job stays Queued.
    #[arg(long, default_value_t = 1000)]
    pub queued_ms: u64,
    /// Emulated milliseconds a job stays Scheduled.
    #[arg(long, default_value_t = 2000)]
    pub scheduled_ms: u64,
    /// Emulated milliseconds a job stays Processing.
    #[arg(long, default_value_t = 10000)]
    pub processing_ms: u64,
    /// Emulated milliseconds a cancelled job stays Canceling.
    #[arg(long, default_value_t = 1000)]
    pub canceling_ms: u64,
    /// Emulated milliseconds a server-side Copy Blob takes before its bytes land.
    #[arg(long, default_value_t = 2000)]
    pub copy_ms: u64,
    /// Most jobs per list page; more come through `@odata.nextLink`.
    #[arg(long, default_value_t = 50)]
    pub page_size: usize,
    /// Status answered to a create-only PUT (job, streaming locator, streaming policy) whose name is taken:
    /// 409 or 400. The specs document only 201 and a default error, so clients must cope with either.
    #[arg(long, default_value_t = 409)]
    pub duplicate_create_status: u16,
    /// Comma-separated event types to deliver (full `Microsoft.Media.X` or short `X`); default all.
    #[arg(long, value_name = "LIST")]
    pub event_types: Option<String>,
    /// Settings of the accounts that speak as MK.IO.
    #[command(flatten)]
    pub mkio: MkioArgs,
}

/// One configured account.
#[derive(Debug, Clone, PartialEq)]
pub struct AccountSpec {
    /// Account name as given.
    pub name: String,
    /// Region label.
    pub region: String,
    /// How the account's encoding concurrency is governed.
    pub mru_mode: MruMode,
    /// The service the account speaks as.
    pub provider: Provider,
}

/// The service an emulated account speaks as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    /// Azure Media Services: ARM paths, no token check (local only), Event Grid system-topic events.
    #[default]
    Ams,
    /// Ravnur Media Services: the same ARM paths, a token endpoint, events as an Event Grid custom topic.
    Rms,
    /// MediaKind MK.IO: its own paths, tokens, errors, rate limits and webhooks.
    Mkio,
}

impl Provider {
    /// Parses the optional fourth part of `--account`.
    fn parse(s: &str) -> Option<Provider> {
        [("ams", Provider::Ams), ("rms", Provider::Rms), ("mkio", Provider::Mkio)]
            .into_iter()
            .find(|(name, _)| s.eq_ignore_ascii_case(name))
            .map(|(_, p)| p)
    }
}

/// Whether an account has reserved units to manage (contracts 5.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MruMode {
    /// Created before the 2020-05-01 API: MRUs are set through the v2 endpoint and gate concurrency.
    Managed,
    /// Created with 2020-05-01 or later: the system scales by itself, the v2 MRU calls are refused.
    Automatic,
}

impl MruMode {
    /// Parses the optional third part of `--account`.
    fn parse(s: &str) -> Option<MruMode> {
        if s.eq_ignore_ascii_case("managed") {
            Some(MruMode::Managed)
        } else if s.eq_ignore_ascii_case("automatic") {
            Some(MruMode::Automatic)
        } else {
            None
        }
    }
}

/// Why the command line cannot be used.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// `--account` without `NAME:REGION[:managed|automatic[:ams|rms|mkio]]`.
    #[error("--account expects NAME:REGION[:managed|automatic[:ams|rms|mkio]], got '{0}'")]
    BadAccount(String),
    /// The same account twice (names are case-insensitive).
    #[error("account '{0}' is given twice")]
    DuplicateAccount(String),
    /// No account at all.
    #[error("at least one --account is required")]
    NoAccount,
    /// `--time-scale` must be a positive finite number.
    #[error("--time-scale must be a positive number, got {0}")]
    BadTimeScale(f64),
    /// `--page-size` must be at least 1.
    #[error("--page-size must be at least 1")]
    BadPageSize,
    /// `--event-endpoint` is not an http(s) URL.
    #[error("--event-endpoint is not an http(s) URL: {0}")]
    BadEndpoint(String),
    /// Unknown name in `--event-types`.
    #[error("unknown event type '{0}'")]
    BadEventType(String),
    /// `--duplicate-create-status` other than 400 or 409.
    #[error("--duplicate-create-status must be 400 or 409, not {0}")]
    BadDuplicateStatus(u16),
    /// An MK.IO flag is out of range.
    #[error(transparent)]
    Mkio(#[from] MkioConfigError),
}

/// Validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Accounts in the order given.
    pub accounts: Vec<AccountSpec>,
    /// Subscription id.
    pub subscription: String,
    /// Resource group name.
    pub resource_group: String,
    /// Initial event endpoint.
    pub event_endpoint: Option<String>,
    /// Divisor for every emulated duration.
    pub time_scale: f64,
    /// Emulated ms in Queued.
    pub queued_ms: u64,
    /// Emulated ms in Scheduled.
    pub scheduled_ms: u64,
    /// Emulated ms in Processing.
    pub processing_ms: u64,
    /// Emulated ms in Canceling.
    pub canceling_ms: u64,
    /// Emulated ms a Copy Blob stays pending.
    pub copy_ms: u64,
    /// Jobs per list page.
    pub page_size: usize,
    /// Status of a create-only PUT whose name is taken (409 or 400).
    pub duplicate_create_status: u16,
    /// Event types delivered.
    pub event_types: Vec<EventType>,
    /// `MaxReservableUnits` of managed accounts.
    pub max_mru: u32,
    /// Settings of the MK.IO accounts.
    pub mkio: MkioConfig,
}

impl Config {
    /// Validates a parsed command line.
    pub fn from_cli(cli: &Cli) -> Result<Config, ConfigError> {
        let mut accounts: Vec<AccountSpec> = Vec::new();
        for raw in &cli.accounts {
            let parts: Vec<&str> = raw.split(':').map(str::trim).collect();
            let (name, region, mru_mode, provider) = match parts.as_slice() {
                [n, r] => (*n, *r, Some(MruMode::Automatic), Some(Provider::Ams)),
                [n, r, m] => (*n, *r, MruMode::parse(m), Some(Provider::Ams)),
                [n, r, m, p] => (*n, *r, MruMode::parse(m), Provider::parse(p)),
                _ => ("", "", None, None),
            };
            let (mru_mode, provider) = mru_mode
                .zip(provider)
                .filter(|_| !name.is_empty() && !region.is_empty())
                .ok_or_else(|| ConfigError::BadAccount(raw.clone()))?;
            if accounts.iter().any(|a| a.name.eq_ignore_ascii_case(name)) {
                return Err(ConfigError::DuplicateAccount(name.to_string()));
            }
            accounts.push(AccountSpec { name: name.to_string(), region: region.to_string(), mru_mode, provider });
        }
        if accounts.is_empty() {
            return Err(ConfigError::NoAccount);
        }
        if !(cli.time_scale.is_finite() && cli.time_scale > 0.0) {
            return Err(ConfigError::BadTimeScale(cli.time_scale));
        }
        if cli.page_size == 0 {
            return Err(ConfigError::BadPageSize);
        }
        if ![400, 409].contains(&cli.duplicate_create_status) {
            return Err(ConfigError::BadDuplicateStatus(cli.duplicate_create_status));
        }
        if let Some(e) = &cli.event_endpoint {
            validate_endpoint(e).map_err(|_| ConfigError::BadEndpoint(e.clone()))?;
        }
        let event_types = match &cli.event_types {
            None => EventType::ALL.to_vec(),
            Some(list) => list
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| EventType::parse(s).ok_or_else(|| ConfigError::BadEventType(s.to_string())))
                .collect::<Result<Vec<_>, _>>()?,
        };
        Ok(Config {
            accounts,
            subscription: cli.subscription.clone(),
            resource_group: cli.resource_group.clone(),
            event_endpoint: cli.event_endpoint.clone(),
            time_scale: cli.time_scale,
            queued_ms: cli.queued_ms,
            scheduled_ms: cli.scheduled_ms,
            processing_ms: cli.processing_ms,
            canceling_ms: cli.canceling_ms,
            copy_ms: cli.copy_ms,
            page_size: cli.page_size,
            duplicate_create_status: cli.duplicate_create_status,
            event_types,
            max_mru: cli.max_mru,
            mkio: cli.mkio.validate()?,
        })
    }

    /// Real time that corresponds to an emulated duration.
    pub fn scaled(&self, emulated: Duration) -> Duration {
        Duration::from_secs_f64(emulated.as_secs_f64() / self.time_scale)
    }

    /// Real time that corresponds to emulated milliseconds.
    pub fn scaled_ms(&self, emulated_ms: u64) -> Duration {
        self.scaled(Duration::from_millis(emulated_ms))
    }
}

/// Checks that an event endpoint is an absolute http(s) URL.
pub fn validate_endpoint(s: &str) -> Result<url::Url, url::ParseError> {
    let u = url::Url::parse(s)?;
    if matches!(u.scheme(), "http" | "https") {
        Ok(u)
    } else {
        Err(url::ParseError::RelativeUrlWithoutBase)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cli(args: &[&str]) -> Cli {
        let mut all = vec!["ams-emulator"];
        all.extend_from_slice(args);
        Cli::parse_from(all)
    }

    #[test]
    fn accounts_are_split_into_name_and_region() {
        let c = Config::from_cli(&cli(&["--account", "east:eastus", "--account", "west:westus"])).unwrap();
        assert_eq!(
            c.accounts[1],
            AccountSpec {
                name: "west".into(),
                region: "westus".into(),
                mru_mode: MruMode::Automatic,
                provider: Provider::Ams
            }
        );
        assert_eq!(c.event_types.len(), EventType::ALL.len());
    }

    #[test]
    fn an_account_may_name_its_mru_mode_and_defaults_to_automatic() {
        let c = Config::from_cli(&cli(&["--account", "a:r:managed", "--account", "b:r:AUTOMATIC", "--account", "c:r"]))
            .unwrap();
        let modes: Vec<MruMode> = c.accounts.iter().map(|a| a.mru_mode).collect();
        assert_eq!(modes, [MruMode::Managed, MruMode::Automatic, MruMode::Automatic]);
        assert_eq!(c.max_mru, 25);
        assert!(Config::from_cli(&cli(&["--account", "a:r:sometimes"])).is_err());
    }

    #[test]
    fn an_account_may_name_its_provider_after_its_mode_and_defaults_to_media_services() {
        let c = Config::from_cli(&cli(&[
            "--account",
            "a:r:automatic:mkio",
            "--account",
            "b:r:managed:RMS",
            "--account",
            "c:r",
        ]))
        .unwrap();
        let providers: Vec<Provider> = c.accounts.iter().map(|a| a.provider).collect();
        assert_eq!(providers, [Provider::Mkio, Provider::Rms, Provider::Ams]);
        assert!(Config::from_cli(&cli(&["--account", "a:r:automatic:bitmovin"])).is_err());
        assert!(Config::from_cli(&cli(&["--account", "a:r:managed:x"])).is_err());
        assert!(Config::from_cli(&cli(&["--account", "a::managed"])).is_err());
    }

    #[test]
    fn duplicate_accounts_differing_in_case_are_rejected() {
        let r = Config::from_cli(&cli(&["--account", "east:eastus", "--account", "EAST:westus"]));
        assert!(matches!(r, Err(ConfigError::DuplicateAccount(_))));
    }

    #[test]
    fn bad_time_scales_and_event_types_are_rejected() {
        assert!(Config::from_cli(&cli(&["--account", "a:b", "--time-scale", "0"])).is_err());
        assert!(Config::from_cli(&cli(&["--account", "a:b", "--event-types", "JobFinished,Nope"])).is_err());
        assert!(Config::from_cli(&cli(&["--account", "nocolon"])).is_err());
    }

    #[test]
    fn event_types_accept_short_and_full_names() {
        let c =
            Config::from_cli(&cli(&["--account", "a:b", "--event-types", "JobFinished, Microsoft.Media.JobErrored"]))
                .unwrap();
        assert_eq!(c.event_types, vec![EventType::JobFinished, EventType::JobErrored]);
    }
}
