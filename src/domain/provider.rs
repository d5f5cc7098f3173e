//! Which service an account runs on, and what that service can do.
//!
//! Azure Media Services was retired in 2024; its successors keep its API shapes but not all of its features.
//! The rules elsewhere ask an account's [`Capabilities`] (does it have reserved units, does it say when a job
//! is Scheduled, can it sign a container URL) instead of asking which provider it is, so a new provider is a
//! new row here and a new wire in `media/`, not a branch in every rule.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// The service behind one account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    /// Azure Media Services over ARM, authenticated with Entra ID (the retired service; also any endpoint that
    /// speaks exactly its API, such as the local emulator).
    #[default]
    Ams,
    /// Ravnur Media Services: the ARM API of AMS at the instance's own endpoint, with its own token.
    Rms,
    /// MediaKind MK.IO: AMS shapes under `/api/v1/projects/{project}/media`, webhooks instead of Event Grid.
    Mkio,
}

/// What a provider can do, as the rules need to know it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities {
    /// Media Reserved Units exist and may be scaled (AMS only; Ravnur and MK.IO document none).
    pub reserved_units: bool,
    /// The service reports the Scheduled state, so "time in Scheduled" is what makes a job stuck. Without it a
    /// job is stuck when it was accepted and never reported started.
    pub scheduled_events: bool,
    /// `listContainerSas` signs an asset container URL, so assets are copied container to container; without
    /// it the product copies at the storage layer with its own credentials.
    pub container_sas: bool,
    /// A job's output asset must exist before the job is created (AMS and Ravnur); MK.IO's job makes it.
    pub output_asset_before_job: bool,
    /// Job state changes arrive through Event Grid (AMS system topic, Ravnur custom topic) rather than
    /// webhooks.
    pub event_grid: bool,
}

impl Provider {
    /// Every provider, in the order settings and documentation list them.
    pub const ALL: [Provider; 3] = [Provider::Ams, Provider::Rms, Provider::Mkio];

    /// What this provider can do.
    pub fn capabilities(self) -> Capabilities {
        match self {
            Provider::Ams => Capabilities {
                reserved_units: true,
                scheduled_events: true,
                container_sas: true,
                output_asset_before_job: true,
                event_grid: true,
            },
            Provider::Rms => Capabilities {
                reserved_units: false,
                scheduled_events: true,
                container_sas: true,
                output_asset_before_job: true,
                event_grid: true,
            },
            Provider::Mkio => Capabilities {
                reserved_units: false,
                scheduled_events: false,
                container_sas: false,
                output_asset_before_job: false,
                event_grid: false,
            },
        }
    }

    /// The name settings use.
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Ams => "ams",
            Provider::Rms => "rms",
            Provider::Mkio => "mkio",
        }
    }
}

impl fmt::Display for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A provider name that is none of [`Provider::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown provider {0:?}: expected ams, rms or mkio")]
pub struct UnknownProvider(pub String);

impl FromStr for Provider {
    type Err = UnknownProvider;

    fn from_str(s: &str) -> Result<Provider, UnknownProvider> {
        Provider::ALL.into_iter().find(|p| p.as_str().eq_ignore_ascii_case(s)).ok_or_else(|| UnknownProvider(s.into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_names_read_back_case_insensitively_and_unknown_ones_are_named() {
        for p in Provider::ALL {
            assert_eq!(p.as_str().to_uppercase().parse::<Provider>(), Ok(p));
        }
        assert_eq!("bitmovin".parse::<Provider>(), Err(UnknownProvider("bitmovin".into())));
    }

    #[test]
    fn only_media_services_itself_has_reserved_units() {
        let with_mru: Vec<Provider> = Provider::ALL.into_iter().filter(|p| p.capabilities().reserved_units).collect();
        assert_eq!(with_mru, [Provider::Ams]);
    }

    #[test]
    fn the_providers_without_container_sas_also_lack_scheduled_events_and_event_grid() {
        let mkio = Provider::Mkio.capabilities();
        assert!(!mkio.container_sas && !mkio.scheduled_events && !mkio.event_grid && !mkio.output_asset_before_job);
    }
}
