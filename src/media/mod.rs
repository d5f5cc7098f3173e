//! Media Services over ARM REST, and the asset containers' blob calls through `azure_storage_blob`: the only
//! place that talks to Media Services and its storage.

pub mod arm;
pub mod blob;
pub mod mru;
pub mod streaming;

pub use arm::{AmsJob, AmsJobOutput, JobSpec, MediaClient, MediaError};
pub use mru::ReservedUnits;
