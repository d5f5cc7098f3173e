//! Media Services over ARM REST: the only place that talks to Media Services.

pub mod arm;
pub mod mru;

pub use arm::{AmsJob, AmsJobOutput, JobSpec, MediaClient, MediaError};
pub use mru::ReservedUnits;
