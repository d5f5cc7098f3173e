//! The records the product keeps, and the pure rules that move them: attempts follow Media Services
//! events, the logical job follows its current attempt, and each account's counters follow its active
//! attempts.

use super::request::SubmitRequest;
use super::state::JobState;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// How many attempts a job row remembers; older ones stay in the Attempts table.
pub const MAX_ATTEMPT_HISTORY: usize = 10;

/// A Media Services job error, as events and the job resource report it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorInfo {
    /// For example `ServiceError` or `DownloadNotAccessible`.
    pub code: String,
    /// The service's message.
    #[serde(default)]
    pub message: String,
    /// For example `Service` or `Download`.
    #[serde(default)]
    pub category: String,
    /// `MayRetry` or `DoNotRetry`.
    #[serde(default)]
    pub retry: String,
}

/// One try of a logical job on one account: one Media Services job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AttemptRecord {
    /// The logical job.
    pub job_id: String,
    /// 1 for the first attempt, then 2, 3...
    pub number: u32,
    /// Media Services account name.
    pub account: String,
    /// The account's region.
    pub region: String,
    /// Deterministic Media Services job name, so a retry finds the same job instead of making a second.
    pub ams_job_name: String,
    /// Transform the job runs under.
    pub transform: String,
    /// Output asset names, one per transform output.
    pub output_assets: Vec<String>,
    /// Where the attempt stands.
    pub state: JobState,
    /// When the attempt row was written.
    pub submitted_at: DateTime<Utc>,
    /// When Media Services reported Scheduled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduled_at: Option<DateTime<Utc>>,
    /// When Media Services reported Processing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub processing_at: Option<DateTime<Utc>>,
    /// When the attempt reached a final state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<DateTime<Utc>>,
    /// When we last learnt anything about the attempt (write, event or poll).
    pub last_heard_at: DateTime<Utc>,
    /// The error, for attempts that ended in Error or could not be submitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorInfo>,
    /// Submitted while its managed account was at its MRU maximum: it may wait in Scheduled for a free
    /// unit, which is not a sign of a broken region.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub mru_saturated: bool,
    /// Its job was asked to be cancelled: whoever next holds the attempt while it runs (the placement that
    /// just created it, a sweep reading it back) cancels its Media Services job.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub cancel_requested: bool,
}

impl AttemptRecord {
    /// The Media Services job name of attempt `number` of `job_id`.
    pub fn ams_job_name_for(job_id: &str, number: u32) -> String {
        format!("{job_id}-a{number}")
    }

    /// The name of output asset `index` of attempt `number` of `job_id`.
    pub fn output_asset_for(job_id: &str, number: u32, index: usize) -> String {
        format!("{job_id}-a{number}-out{index}")
    }

    /// The attempt after Media Services reported `state` at `at`, or `None` when the report changes
    /// nothing (older, repeated, or after a final state).
    pub fn observe(
        &self,
        state: JobState,
        at: DateTime<Utc>,
        error: Option<ErrorInfo>,
        now: DateTime<Utc>,
    ) -> Option<AttemptRecord> {
        let Some(state) = self.state.advance(state) else {
            // A Scheduled event that arrives after Processing still tells when the wait began.
            let late_schedule = state == JobState::Scheduled && self.scheduled_at.is_none() && self.is_active();
            return late_schedule.then(|| AttemptRecord { scheduled_at: Some(at), last_heard_at: now, ..self.clone() });
        };
        let mut next = self.clone();
        next.state = state;
        next.last_heard_at = now;
        match state {
            JobState::Scheduled => next.scheduled_at = Some(at),
            JobState::Processing => next.processing_at = Some(at),
            s if s.is_final() => {
                next.finished_at = Some(at);
                next.error = error.or(next.error);
            }
            _ => {}
        }
        Some(next)
    }

    /// Whether the attempt still counts as in flight on its account.
    pub fn is_active(&self) -> bool {
        !self.state.is_final()
    }

    /// The attempt's state if it is active, as the counters see it.
    pub fn active_state(&self) -> Option<JobState> {
        self.is_active().then_some(self.state)
    }

    /// Whether the attempt ended in an error Media Services marks as worth retrying.
    pub fn may_retry(&self) -> bool {
        self.state == JobState::Error && self.error.as_ref().is_some_and(|e| e.retry.eq_ignore_ascii_case("MayRetry"))
    }

    /// The attempt heard from (polled) at `now` without a state change.
    pub fn heard(&self, now: DateTime<Utc>) -> AttemptRecord {
        AttemptRecord { last_heard_at: now, ..self.clone() }
    }

    /// The attempt closed because it is stuck in a broken region, or `None` if it already ended.
    pub fn supersede(&self, reason: &str, now: DateTime<Utc>) -> Option<AttemptRecord> {
        let error = ErrorInfo {
            code: "Stuck".to_owned(),
            message: reason.to_owned(),
            category: "Account".to_owned(),
            retry: "MayRetry".to_owned(),
        };
        self.is_active().then(|| AttemptRecord {
            state: JobState::Superseded,
            finished_at: Some(now),
            last_heard_at: now,
            error: Some(error),
            ..self.clone()
        })
    }

    /// Whether this snapshot of an attempt says more than `known`, an earlier-or-later snapshot of the same
    /// attempt. The attempt row only moves forward, so a snapshot in a higher state is newer; one in the
    /// same state is newer only if it differs and was heard no earlier. A snapshot that says less (a late or
    /// repeated delivery, or one re-applied after a lost race) is older and must change nothing.
    pub fn is_newer_than(&self, known: &AttemptRecord) -> bool {
        match self.state.rank().cmp(&known.state.rank()) {
            std::cmp::Ordering::Greater => true,
            std::cmp::Ordering::Less => false,
            std::cmp::Ordering::Equal => {
                self.state == known.state && self.last_heard_at >= known.last_heard_at && self != known
            }
        }
    }

    /// Media Reserved Units the attempt needs: one per output.
    pub fn units(&self) -> u32 {
        u32::try_from(self.output_assets.len()).unwrap_or(u32::MAX)
    }
}

/// The logical job: what the caller asked for and where it stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobRecord {
    /// The job id.
    pub job_id: String,
    /// Canonical JSON of the accepted request, compared on idempotent retries.
    pub request: String,
    /// Transform name.
    pub transform: String,
    /// The current attempt's state, `Pending` while no attempt runs.
    pub state: JobState,
    /// The current attempt number, 0 before the first.
    pub attempt: u32,
    /// The current attempt's account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    /// The current attempt's region.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Every attempt, newest last, at most [`MAX_ATTEMPT_HISTORY`].
    pub attempts: Vec<AttemptRecord>,
    /// Output asset names of the attempt that finished.
    pub outputs: Vec<String>,
    /// The most recent error of any attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<ErrorInfo>,
    /// When the job was accepted.
    pub created_at: DateTime<Utc>,
    /// When the job last changed.
    pub updated_at: DateTime<Utc>,
    /// When a caller asked to cancel the job (CancelJob); it then ends `Canceled` instead of being retried.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cancel_requested_at: Option<DateTime<Utc>>,
}

/// What a cancel request does to a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cancel {
    /// The job ended before: nothing to cancel (`Canceled` when an earlier request already ended it).
    Ended(JobState),
    /// The job waited for an account: it ends `Canceled` at once.
    Now(JobRecord),
    /// The job runs on an attempt: the request is recorded and the attempt's Media Services job must be
    /// cancelled; the job ends when the attempt does.
    Requested(JobRecord),
    /// A cancel of the running attempt was already requested.
    AlreadyRequested,
}

impl JobRecord {
    /// A newly accepted job, not yet on any account.
    pub fn accept(request: &SubmitRequest, now: DateTime<Utc>) -> JobRecord {
        JobRecord {
            job_id: request.job_id.to_string(),
            request: request.canonical_json(),
            transform: request.transform.clone(),
            state: JobState::Pending,
            attempt: 0,
            account: None,
            region: None,
            attempts: Vec::new(),
            outputs: Vec::new(),
            last_error: None,
            created_at: now,
            updated_at: now,
            cancel_requested_at: None,
        }
    }

    /// What cancelling the job at `now` does (see [`Cancel`]).
    pub fn cancel(&self, now: DateTime<Utc>) -> Cancel {
        if self.state.is_final() {
            return Cancel::Ended(self.state);
        }
        if self.cancel_requested_at.is_some() {
            return Cancel::AlreadyRequested;
        }
        let mut job = JobRecord { cancel_requested_at: Some(now), updated_at: now, ..self.clone() };
        if self.state == JobState::Pending {
            job.state = JobState::Canceled;
            Cancel::Now(job)
        } else {
            Cancel::Requested(job)
        }
    }

    /// The job with a new attempt on `account`, and that attempt. `outputs` is how many output assets the
    /// transform produces.
    pub fn begin_attempt(
        &self,
        account: &str,
        region: &str,
        outputs: usize,
        now: DateTime<Utc>,
    ) -> (JobRecord, AttemptRecord) {
        let number = self.attempt + 1;
        let attempt = AttemptRecord {
            job_id: self.job_id.clone(),
            number,
            account: account.to_owned(),
            region: region.to_owned(),
            ams_job_name: AttemptRecord::ams_job_name_for(&self.job_id, number),
            transform: self.transform.clone(),
            output_assets: (0..outputs.max(1))
                .map(|i| AttemptRecord::output_asset_for(&self.job_id, number, i))
                .collect(),
            state: JobState::Submitting,
            submitted_at: now,
            scheduled_at: None,
            processing_at: None,
            finished_at: None,
            last_heard_at: now,
            error: None,
            mru_saturated: false,
            cancel_requested: false,
        };
        let mut job = self.clone();
        job.attempt = number;
        job.state = JobState::Submitting;
        job.account = Some(account.to_owned());
        job.region = Some(region.to_owned());
        job.updated_at = now;
        job.record_attempt(&attempt);
        (job, attempt)
    }

    /// The job after its attempt changed, or `None` when that changes nothing: the attempt is not the
    /// current one (a superseded attempt never moves the job), the job already ended, or the snapshot is
    /// not newer than what the job already knows of the attempt (a stale snapshot never moves a job back).
    ///
    /// The job follows its current attempt, except when the attempt ended without a result the job can keep:
    /// an attempt that could not be submitted or was superseded, or an error marked `MayRetry` while fewer
    /// than `max_attempts` were made, puts the job back to `Pending`, to be submitted again.
    pub fn observe_attempt(&self, attempt: &AttemptRecord, max_attempts: u32, now: DateTime<Utc>) -> Option<JobRecord> {
        if attempt.number != self.attempt || self.state.is_final() {
            return None;
        }
        if self.attempts.iter().any(|known| known.number == attempt.number && !attempt.is_newer_than(known)) {
            return None;
        }
        let mut job = self.clone();
        job.record_attempt(attempt);
        let cancelled = self.cancel_requested_at.is_some();
        job.state = match attempt.state {
            // A job its caller cancelled is not placed again: where it would be retried, it ends.
            JobState::SubmitFailed | JobState::Superseded if cancelled => JobState::Canceled,
            JobState::SubmitFailed | JobState::Superseded => JobState::Pending,
            JobState::Error if attempt.may_retry() && self.attempt < max_attempts && !cancelled => JobState::Pending,
            s => s,
        };
        if attempt.state == JobState::Finished {
            job.outputs = attempt.output_assets.clone();
        }
        if attempt.error.is_some() {
            job.last_error = attempt.error.clone();
        }
        if job == *self {
            return None;
        }
        job.updated_at = now;
        Some(job)
    }

    /// The job ended in Error without running, because Media Services refused the request itself; `None` if
    /// the job already ended.
    pub fn fail(&self, error: ErrorInfo, now: DateTime<Utc>) -> Option<JobRecord> {
        (!self.state.is_final()).then(|| JobRecord {
            state: JobState::Error,
            last_error: Some(error),
            updated_at: now,
            ..self.clone()
        })
    }

    fn record_attempt(&mut self, attempt: &AttemptRecord) {
        match self.attempts.iter_mut().find(|a| a.number == attempt.number) {
            Some(slot) => *slot = attempt.clone(),
            None => self.attempts.push(attempt.clone()),
        }
        let excess = self.attempts.len().saturating_sub(MAX_ATTEMPT_HISTORY);
        self.attempts.drain(..excess);
    }
}

/// An account's active attempts counted by state; in flight is their sum. Kept in one Table row and
/// changed only in the same transaction as the attempt rows, so it is exact (DESIGN invariant 1).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AccountCounters {
    /// Attempts written but not yet confirmed by Media Services.
    pub submitting: u32,
    /// Queued in Media Services.
    pub queued: u32,
    /// Scheduled.
    pub scheduled: u32,
    /// Processing.
    pub processing: u32,
    /// Canceling.
    pub canceling: u32,
    /// Media Reserved Units the active attempts need (one per job output).
    #[serde(default)]
    pub units: u32,
}

/// The counters would go below zero: the rows and counters disagree, which must never happen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the {0} count would go below zero")]
pub struct CounterUnderflow(pub JobState);

impl AccountCounters {
    /// Jobs in flight on the account.
    pub fn in_flight(&self) -> u32 {
        self.submitting + self.queued + self.scheduled + self.processing + self.canceling
    }

    /// The counters after an attempt needing `units` MRUs moved from `from` to `to` (`None`: not active).
    pub fn moved(
        &self,
        from: Option<JobState>,
        to: Option<JobState>,
        units: u32,
    ) -> Result<AccountCounters, CounterUnderflow> {
        let mut next = *self;
        match (from.is_some(), to.is_some()) {
            (false, true) => next.units += units,
            (true, false) => next.units = next.units.checked_sub(units).ok_or(CounterUnderflow(JobState::Pending))?,
            _ => {}
        }
        if let Some(slot) = from.and_then(|s| next.slot(s)) {
            *slot = slot.checked_sub(1).ok_or(CounterUnderflow(from.unwrap_or(JobState::Pending)))?;
        }
        if let Some(slot) = to.and_then(|s| next.slot(s)) {
            *slot += 1;
        }
        Ok(next)
    }

    /// The counts of two shards added up.
    pub fn plus(&self, other: &AccountCounters) -> AccountCounters {
        AccountCounters {
            submitting: self.submitting + other.submitting,
            queued: self.queued + other.queued,
            scheduled: self.scheduled + other.scheduled,
            processing: self.processing + other.processing,
            canceling: self.canceling + other.canceling,
            units: self.units + other.units,
        }
    }

    /// The counts as a map from state name, for operators.
    pub fn by_state(&self) -> BTreeMap<&'static str, u32> {
        [
            (JobState::Submitting, self.submitting),
            (JobState::Queued, self.queued),
            (JobState::Scheduled, self.scheduled),
            (JobState::Processing, self.processing),
            (JobState::Canceling, self.canceling),
        ]
        .into_iter()
        .map(|(s, n)| (s.as_str(), n))
        .collect()
    }

    fn slot(&mut self, state: JobState) -> Option<&mut u32> {
        match state {
            JobState::Submitting => Some(&mut self.submitting),
            JobState::Queued => Some(&mut self.queued),
            JobState::Scheduled => Some(&mut self.scheduled),
            JobState::Processing => Some(&mut self.processing),
            JobState::Canceling => Some(&mut self.canceling),
            _ => None,
        }
    }
}

/// A pending job with no attempt yet, for tests.
#[cfg(test)]
pub(crate) fn sample_job(now: DateTime<Utc>) -> JobRecord {
    JobRecord {
        job_id: "j".into(),
        request: "{}".into(),
        transform: "encode".into(),
        state: JobState::Pending,
        attempt: 0,
        account: None,
        region: None,
        attempts: vec![],
        outputs: vec![],
        last_error: None,
        created_at: now,
        updated_at: now,
        cancel_requested_at: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn t(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + secs, 0).unwrap_or_default()
    }

    fn job() -> JobRecord {
        sample_job(t(0))
    }

    #[test]
    fn a_pending_job_is_cancelled_at_once_and_a_final_one_not_at_all() {
        let Cancel::Now(cancelled) = job().cancel(t(5)) else { panic!("a pending job ends at once") };
        assert_eq!((cancelled.state, cancelled.cancel_requested_at), (JobState::Canceled, Some(t(5))));
        assert_eq!(cancelled.cancel(t(6)), Cancel::Ended(JobState::Canceled), "a second request changes nothing");
        let finished = JobRecord { state: JobState::Finished, ..job() };
        assert_eq!(finished.cancel(t(6)), Cancel::Ended(JobState::Finished));
    }

    #[test]
    fn a_running_job_records_the_request_once_and_ends_canceled_where_it_would_have_been_retried() {
        let (running, attempt) = job().begin_attempt("a", "r", 1, t(1));
        let Cancel::Requested(requested) = running.cancel(t(5)) else { panic!("a running job waits for its attempt") };
        assert_eq!((requested.state, requested.cancel_requested_at), (JobState::Submitting, Some(t(5))));
        assert_eq!(requested.cancel(t(6)), Cancel::AlreadyRequested);
        let at = |state: JobState, error: Option<ErrorInfo>| AttemptRecord {
            state,
            error,
            last_heard_at: t(9),
            ..attempt.clone()
        };
        let retryable =
            ErrorInfo { code: "E".into(), message: String::new(), category: String::new(), retry: "MayRetry".into() };
        for (ended, expected) in [
            (at(JobState::Canceled, None), JobState::Canceled),
            (at(JobState::Superseded, None), JobState::Canceled),
            (at(JobState::SubmitFailed, None), JobState::Canceled),
            (at(JobState::Error, Some(retryable.clone())), JobState::Error),
            (at(JobState::Finished, None), JobState::Finished),
        ] {
            let after = requested.observe_attempt(&ended, 3, t(10)).expect("the attempt ended");
            assert_eq!(after.state, expected, "{:?}", ended.state);
        }
        // Without a cancel request the same ends are retried.
        assert_eq!(
            running.observe_attempt(&at(JobState::Superseded, None), 3, t(10)).map(|j| j.state),
            Some(JobState::Pending)
        );
        assert_eq!(
            running.observe_attempt(&at(JobState::Error, Some(retryable)), 3, t(10)).map(|j| j.state),
            Some(JobState::Pending)
        );
    }

    #[test]
    fn an_attempt_records_when_it_was_scheduled_and_processed() {
        let (_, a) = job().begin_attempt("acct", "westeurope", 1, t(0));
        let a = a.observe(JobState::Scheduled, t(5), None, t(6)).expect("advances");
        let a = a.observe(JobState::Processing, t(9), None, t(10)).expect("advances");
        assert_eq!((a.scheduled_at, a.processing_at, a.last_heard_at), (Some(t(5)), Some(t(9)), t(10)));
        assert_eq!(a.observe(JobState::Scheduled, t(7), None, t(11)), None);
    }

    #[test]
    fn a_scheduled_event_overtaken_by_processing_still_records_when_the_wait_began() {
        let (_, a) = job().begin_attempt("acct", "westeurope", 1, t(0));
        let a = a.observe(JobState::Processing, t(9), None, t(10)).expect("advances");
        let a = a.observe(JobState::Scheduled, t(5), None, t(11)).expect("fills in the time");
        assert_eq!((a.state, a.scheduled_at), (JobState::Processing, Some(t(5))));
        assert_eq!(a.observe(JobState::Scheduled, t(6), None, t(12)), None, "only once");
    }

    #[test]
    fn a_superseded_attempt_never_moves_the_job() {
        let (j1, a1) = job().begin_attempt("a", "r1", 1, t(0));
        let (j2, _a2) = j1.begin_attempt("b", "r2", 1, t(1));
        let finished = a1.observe(JobState::Finished, t(2), None, t(2)).expect("advances");
        assert_eq!(j2.observe_attempt(&finished, 3, t(3)), None);
    }

    #[test]
    fn a_failed_submission_puts_the_job_back_to_pending() {
        let (j1, a1) = job().begin_attempt("a", "r1", 1, t(0));
        let failed = AttemptRecord { state: JobState::SubmitFailed, ..a1 };
        assert_eq!(j1.observe_attempt(&failed, 3, t(1)).map(|j| j.state), Some(JobState::Pending));
    }

    #[test]
    fn a_retriable_error_puts_the_job_back_to_pending_until_attempts_run_out() {
        let error = ErrorInfo {
            code: "ServiceError".into(),
            message: String::new(),
            category: "Service".into(),
            retry: "MayRetry".into(),
        };
        let (j1, a1) = job().begin_attempt("a", "r1", 1, t(0));
        let errored = a1.observe(JobState::Error, t(1), Some(error.clone()), t(1)).expect("advances");
        assert_eq!(j1.observe_attempt(&errored, 3, t(2)).map(|j| j.state), Some(JobState::Pending));
        assert_eq!(j1.observe_attempt(&errored, 1, t(2)).map(|j| j.state), Some(JobState::Error));
        let final_error = ErrorInfo { retry: "DoNotRetry".into(), ..error };
        let errored = a1.observe(JobState::Error, t(1), Some(final_error), t(1)).expect("advances");
        assert_eq!(j1.observe_attempt(&errored, 3, t(2)).map(|j| j.state), Some(JobState::Error));
    }

    #[test]
    fn the_attempt_history_is_bounded() {
        let mut j = job();
        for i in 0..(MAX_ATTEMPT_HISTORY as i64 + 5) {
            j = j.begin_attempt("a", "r", 1, t(i)).0;
        }
        assert_eq!(j.attempts.len(), MAX_ATTEMPT_HISTORY);
        assert_eq!(j.attempts.last().map(|a| a.number), Some(j.attempt));
    }

    #[test]
    fn counters_refuse_to_go_negative() {
        let c = AccountCounters::default();
        assert_eq!(c.moved(Some(JobState::Queued), None, 0), Err(CounterUnderflow(JobState::Queued)));
        let one = c.moved(None, Some(JobState::Queued), 2).expect("fits");
        assert_eq!((one.in_flight(), one.units), (1, 2));
        assert_eq!(one.moved(Some(JobState::Queued), Some(JobState::Processing), 2).map(|c| c.units), Ok(2));
        assert_eq!(one.moved(Some(JobState::Queued), None, 2), Ok(AccountCounters::default()));
    }

    #[test]
    fn a_stale_snapshot_of_an_attempt_that_sent_the_job_back_to_pending_changes_nothing() {
        let error = ErrorInfo {
            code: "ServiceError".into(),
            message: String::new(),
            category: "Service".into(),
            retry: "MayRetry".into(),
        };
        let (j, a) = job().begin_attempt("a", "r1", 1, t(0));
        let scheduled = a.observe(JobState::Scheduled, t(1), None, t(1)).expect("advances");
        let errored = scheduled.observe(JobState::Error, t(2), Some(error), t(2)).expect("advances");
        let pending = j.observe_attempt(&errored, 3, t(3)).expect("goes back to pending");
        assert_eq!(pending.state, JobState::Pending);
        assert_eq!(pending.observe_attempt(&scheduled, 3, t(4)), None, "the older Scheduled snapshot is stale");
        let superseded = scheduled.supersede("stuck", t(5)).expect("active");
        let moved = j.observe_attempt(&superseded, 3, t(5)).expect("goes back to pending");
        assert_eq!(moved.observe_attempt(&scheduled, 3, t(6)), None);
    }

    /// The forward chain of snapshots one attempt's row goes through, ending in `end`.
    fn chain(job: &JobRecord, account: &str, start: i64, end: JobState, retry: &str) -> Vec<AttemptRecord> {
        let (_, submitting) = job.begin_attempt(account, "r", 1, t(start));
        let mut chain = vec![submitting];
        let error =
            ErrorInfo { code: "E".into(), message: String::new(), category: "Service".into(), retry: retry.into() };
        let steps: Vec<JobState> = match end {
            JobState::SubmitFailed | JobState::Superseded => vec![JobState::Queued, JobState::Scheduled],
            _ => vec![JobState::Queued, JobState::Scheduled, JobState::Processing, end],
        };
        for (i, state) in steps.into_iter().enumerate() {
            let last = chain.last().cloned().unwrap_or_else(|| unreachable!());
            let at = t(start + 10 * (i as i64 + 1));
            if let Some(next) = last.observe(state, at, Some(error.clone()), at) {
                chain.push(next);
            }
        }
        if matches!(end, JobState::Superseded) {
            let last = chain.last().cloned().unwrap_or_else(|| unreachable!());
            chain.extend(last.supersede("stuck", t(start + 100)));
        }
        chain
    }

    /// How far the job's knowledge of its current attempt has got; it must never go down.
    fn progress(job: &JobRecord) -> (u32, u8, Option<DateTime<Utc>>) {
        let known = job.attempts.iter().find(|a| a.number == job.attempt);
        (job.attempt, known.map_or(0, |a| a.state.rank()), known.map(|a| a.last_heard_at))
    }

    fn any_end() -> impl Strategy<Value = (JobState, &'static str)> {
        prop::sample::select(vec![
            (JobState::Finished, ""),
            (JobState::Error, "MayRetry"),
            (JobState::Error, "DoNotRetry"),
            (JobState::Canceled, ""),
            (JobState::Superseded, ""),
        ])
    }

    proptest! {
        /// Event Grid and racing writers hand the job snapshots of its attempts in any order, stale and
        /// fresh, repeated: the job's state never moves backwards, and it ends where the newest snapshot of
        /// its newest attempt says.
        #[test]
        fn any_interleaving_of_attempt_snapshots_only_moves_the_job_forward(
            (first_end, first_retry) in any_end(),
            (second_end, second_retry) in any_end(),
            order in prop::collection::vec((any::<bool>(), 0usize..8, any::<bool>()), 1..60),
        ) {
            let unplaced = job();
            let first = chain(&unplaced, "a", 0, first_end, first_retry);
            let mut job = unplaced.begin_attempt("a", "r", 1, t(0)).0;
            let mut second: Vec<AttemptRecord> = vec![];
            let mut newest: Option<AttemptRecord> = None;
            for (pick_second, index, place) in order {
                // A second attempt exists only once the first has sent the job back to Pending, and the
                // placement may come late: stale snapshots of the first can arrive before it.
                if place && job.state == JobState::Pending && job.attempt == 1 && second.is_empty() {
                    second = chain(&job, "b", 200, second_end, second_retry);
                    job = job.begin_attempt("b", "r", 1, t(200)).0;
                    newest = second.first().cloned();
                }
                let source = if pick_second && !second.is_empty() { &second } else { &first };
                let snapshot = &source[index % source.len()];
                let before = job.clone();
                if let Some(next) = job.observe_attempt(snapshot, 3, t(300)) {
                    job = next;
                }
                prop_assert!(progress(&job) >= progress(&before), "moved back: {:?} -> {:?}", before.state, job.state);
                if before.state.is_final() {
                    prop_assert_eq!(&job, &before);
                }
                if snapshot.number == job.attempt && newest.as_ref().is_none_or(|n| snapshot.is_newer_than(n)) {
                    newest = Some(snapshot.clone());
                }
            }
            // The job says what the newest snapshot of its current attempt says.
            if let Some(newest) = newest.filter(|n| n.number == job.attempt) {
                let expected = match newest.state {
                    JobState::SubmitFailed | JobState::Superseded => JobState::Pending,
                    JobState::Error if newest.may_retry() && job.attempt < 3 => JobState::Pending,
                    s => s,
                };
                prop_assert_eq!(job.state, expected);
            }
        }
    }

    fn any_media_state() -> impl Strategy<Value = JobState> {
        prop::sample::select(JobState::MEDIA_SERVICES.to_vec())
    }

    proptest! {
        /// Event Grid may duplicate and reorder: whatever the order, the attempt ends in the first final
        /// state it saw (or the highest state otherwise), the counters return to zero exactly when that
        /// state is final, and they never go negative on the way.
        #[test]
        fn any_order_of_events_with_duplicates_keeps_counters_exact(events in prop::collection::vec(any_media_state(), 0..20)) {
            let (_, mut attempt) = job().begin_attempt("a", "r", 1, t(0));
            let mut counters = AccountCounters::default().moved(None, Some(JobState::Submitting), attempt.units()).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let mut expected = JobState::Submitting;
            for (i, state) in events.iter().enumerate() {
                if let Some(next) = expected.advance(*state) { expected = next; }
                if let Some(next) = attempt.observe(*state, t(i as i64), None, t(i as i64)) {
                    counters = counters.moved(attempt.active_state(), next.active_state(), attempt.units()).map_err(|e| TestCaseError::fail(e.to_string()))?;
                    attempt = next;
                }
                prop_assert_eq!(counters.in_flight(), u32::from(attempt.is_active()));
                prop_assert_eq!(counters.units, if attempt.is_active() { attempt.units() } else { 0 });
            }
            prop_assert_eq!(attempt.state, expected);
        }
    }
}
