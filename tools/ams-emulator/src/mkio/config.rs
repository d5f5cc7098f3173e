//! Command-line settings of the MK.IO mode, flattened into the emulator's `Cli` so every MK.IO knob
//! sits in one place and the shared command line only gains one line.

use std::time::Duration;

use clap::Args;
use thiserror::Error;

/// MK.IO flags of the `ams-emulator` command line.
#[derive(Debug, Clone, Args)]
pub struct MkioArgs {
    /// GET requests a project admits per rate window (MK.IO documents 2,000 a minute).
    #[arg(long, default_value_t = 2000)]
    pub mkio_reads_per_minute: u32,
    /// DELETE/PATCH/POST/PUT requests a project admits per rate window (MK.IO documents 1,000 a minute).
    #[arg(long, default_value_t = 1000)]
    pub mkio_writes_per_minute: u32,
    /// Length of the sliding rate window in real milliseconds (not divided by --time-scale: clients budget
    /// against the wall clock).
    #[arg(long, default_value_t = 60_000)]
    pub mkio_rate_window_ms: u64,
    /// Status of a create-only PUT on a taken name: 400 (what MK.IO clients meet) or 409 (what the spec lists).
    #[arg(long, default_value_t = 400)]
    pub mkio_duplicate_status: u16,
    /// Status of a list with no items: 404 (what MK.IO clients meet) or 200 with an empty `value`.
    #[arg(long, default_value_t = 404)]
    pub mkio_empty_list_status: u16,
    /// Start every project without registered storage (by default each project has its own storage
    /// account registered under the storage account's name, as an operator would have done).
    #[arg(long)]
    pub mkio_no_default_storage: bool,
}

/// Validated MK.IO settings.
#[derive(Debug, Clone, PartialEq)]
pub struct MkioConfig {
    /// Reads admitted per window and project.
    pub reads_per_window: u32,
    /// Writes admitted per window and project.
    pub writes_per_window: u32,
    /// Real length of the sliding window.
    pub window: Duration,
    /// Status of a duplicate create (400 or 409).
    pub duplicate_status: u16,
    /// Status of an empty list (404 or 200).
    pub empty_list_status: u16,
    /// Whether projects start with their own storage registered.
    pub default_storage: bool,
}

impl Default for MkioConfig {
    fn default() -> MkioConfig {
        MkioConfig {
            reads_per_window: 2000,
            writes_per_window: 1000,
            window: Duration::from_secs(60),
            duplicate_status: 400,
            empty_list_status: 404,
            default_storage: true,
        }
    }
}

/// Why the MK.IO flags cannot be used.
#[derive(Debug, Error, PartialEq)]
pub enum MkioConfigError {
    /// `--mkio-duplicate-status` other than 400 or 409.
    #[error("--mkio-duplicate-status must be 400 or 409, not {0}")]
    BadDuplicateStatus(u16),
    /// `--mkio-empty-list-status` other than 200 or 404.
    #[error("--mkio-empty-list-status must be 200 or 404, not {0}")]
    BadEmptyListStatus(u16),
    /// A zero window would make every request its own minute.
    #[error("--mkio-rate-window-ms must be at least 1")]
    BadWindow,
}

impl MkioArgs {
    /// Validates the flags.
    pub fn validate(&self) -> Result<MkioConfig, MkioConfigError> {
        if ![400, 409].contains(&self.mkio_duplicate_status) {
            return Err(MkioConfigError::BadDuplicateStatus(self.mkio_duplicate_status));
        }
        if ![200, 404].contains(&self.mkio_empty_list_status) {
            return Err(MkioConfigError::BadEmptyListStatus(self.mkio_empty_list_status));
        }
        if self.mkio_rate_window_ms == 0 {
            return Err(MkioConfigError::BadWindow);
        }
        Ok(MkioConfig {
            reads_per_window: self.mkio_reads_per_minute,
            writes_per_window: self.mkio_writes_per_minute,
            window: Duration::from_millis(self.mkio_rate_window_ms),
            duplicate_status: self.mkio_duplicate_status,
            empty_list_status: self.mkio_empty_list_status,
            default_storage: !self.mkio_no_default_storage,
        })
    }
}
