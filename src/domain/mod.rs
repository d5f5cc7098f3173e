//! Pure decisions, no I/O and no clock: every function takes `now` (and a random source where it chooses)
//! as an argument, so the rules can be tested with plain unit and property tests.

pub mod alert;
pub mod choice;
pub mod cloud_event;
pub mod credential;
pub mod definitions;
pub mod event;
pub mod health;
pub mod mru;
pub mod notification;
pub mod provider;
pub mod publication;
pub mod records;
pub mod request;
pub mod state;
pub mod sweep;
pub mod time;

pub use alert::Alert;
pub use choice::rotation_order;
pub use event::{Incoming, JobEvent, Unusable};
pub use health::{Cooldown, HealthRecord, Removal};
pub use mru::MruCache;
pub use provider::{Capabilities, Provider};
pub use records::{AccountCounters, AttemptRecord, Cancel, ErrorInfo, JobRecord};
pub use request::{BadRequest, JobId, Rules, SubmitRequest};
pub use state::JobState;
