//! The job state machine shared by logical jobs and their attempts.
//!
//! States only move forward (DESIGN invariant 2): an event for an older or equal state changes nothing, and
//! a final state is terminal. That single rule is what makes duplicated, reordered and late Event Grid
//! deliveries harmless.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Where a job or one of its attempts stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
pub enum JobState {
    /// Accepted, but no account could take it yet (logical jobs only).
    Pending,
    /// The attempt row is written; the Media Services job may or may not exist yet.
    Submitting,
    /// Media Services accepted the job.
    Queued,
    /// Waiting for an encoder (this is where a broken region's jobs sit).
    Scheduled,
    /// Encoding.
    Processing,
    /// A cancel was requested.
    Canceling,
    /// Done, outputs written.
    Finished,
    /// Media Services reported an error.
    Error,
    /// Cancelled.
    Canceled,
    /// The job could never be created in Media Services on this attempt (attempts only).
    SubmitFailed,
    /// The attempt was stuck in a broken region; it was cancelled there and the job moved on (attempts only).
    Superseded,
}

impl JobState {
    /// Position in the forward-only order. Final states share the top rank: once one is reached no other
    /// state, final or not, may replace it.
    pub fn rank(self) -> u8 {
        match self {
            JobState::Pending => 0,
            JobState::Submitting => 1,
            JobState::Queued => 2,
            JobState::Scheduled => 3,
            JobState::Processing => 4,
            JobState::Canceling => 5,
            JobState::Finished
            | JobState::Error
            | JobState::Canceled
            | JobState::SubmitFailed
            | JobState::Superseded => 6,
        }
    }

    /// True for states that never change again.
    pub fn is_final(self) -> bool {
        self.rank() == 6
    }

    /// The state to move to when `incoming` is reported while in `self`, or `None` when the report is old,
    /// repeated, or arrives after a final state.
    pub fn advance(self, incoming: JobState) -> Option<JobState> {
        (!self.is_final() && incoming.rank() > self.rank()).then_some(incoming)
    }

    /// The states Media Services itself reports.
    pub const MEDIA_SERVICES: [JobState; 7] = [
        JobState::Queued,
        JobState::Scheduled,
        JobState::Processing,
        JobState::Canceling,
        JobState::Finished,
        JobState::Error,
        JobState::Canceled,
    ];

    /// Parses a Media Services `JobState` (case-insensitive, as the service models it as an extensible
    /// string). Only the states Media Services itself reports are accepted.
    pub fn from_media_services(s: &str) -> Option<JobState> {
        Self::MEDIA_SERVICES.into_iter().find(|state| state.as_str().eq_ignore_ascii_case(s))
    }

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Pending => "Pending",
            JobState::Submitting => "Submitting",
            JobState::Queued => "Queued",
            JobState::Scheduled => "Scheduled",
            JobState::Processing => "Processing",
            JobState::Canceling => "Canceling",
            JobState::Finished => "Finished",
            JobState::Error => "Error",
            JobState::Canceled => "Canceled",
            JobState::SubmitFailed => "SubmitFailed",
            JobState::Superseded => "Superseded",
        }
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for JobState {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "Pending" => Ok(JobState::Pending),
            "Submitting" => Ok(JobState::Submitting),
            "SubmitFailed" => Ok(JobState::SubmitFailed),
            "Superseded" => Ok(JobState::Superseded),
            other => JobState::from_media_services(other).ok_or_else(|| format!("unknown job state {other:?}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_only_move_forward() {
        assert_eq!(JobState::Queued.advance(JobState::Scheduled), Some(JobState::Scheduled));
        assert_eq!(JobState::Processing.advance(JobState::Scheduled), None);
        assert_eq!(JobState::Scheduled.advance(JobState::Scheduled), None);
    }

    #[test]
    fn a_final_state_is_never_replaced_even_by_another_final_state() {
        assert_eq!(JobState::Finished.advance(JobState::Error), None);
        assert_eq!(JobState::Canceled.advance(JobState::Finished), None);
    }

    #[test]
    fn media_services_states_parse_case_insensitively_and_ours_do_not_leak_in() {
        assert_eq!(JobState::from_media_services("finished"), Some(JobState::Finished));
        assert_eq!(JobState::from_media_services("Pending"), None);
        assert_eq!("SubmitFailed".parse::<JobState>(), Ok(JobState::SubmitFailed));
    }
}
