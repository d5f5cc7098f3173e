//! Media Services over ARM REST: the only place that talks to Media Services.

pub mod arm;

pub use arm::{AmsJob, AmsJobOutput, JobSpec, MediaClient, MediaError};
