//! The sweep's judgement of one account's active attempts: which are stuck, which have gone quiet and
//! should be read from Media Services, and whether the account should leave rotation. Pure: the rows and
//! `now` in, decisions out.
//!
//! The rule for saturated accounts: a job waiting in Scheduled is evidence of a broken region unless its
//! account is *saturated* — a managed account with more units in flight than MRUs while at least one of its
//! jobs is Processing. Then the encoders are busy and the wait is the account's own queue, not a failure. A
//! stalled region has nothing Processing (its running jobs finish, no new one starts), so it is not excused.
//!
//! Providers that never report Scheduled (MK.IO: its webhooks say only "started" and "finished") cannot show
//! time spent in Scheduled. There a job is stuck when it was accepted and has not started within the
//! threshold, and since the only word of a start may be a lost webhook, only once a read of the job after
//! the threshold still found it waiting: until then the verdict is [`Verdict::Confirm`].

use super::records::{AccountCounters, AttemptRecord};
use super::state::JobState;
use chrono::{DateTime, Utc};
use std::time::Duration;

/// What the sweep knows about one account.
#[derive(Debug, Clone)]
pub struct AccountView<'a> {
    /// Its MRUs are managed by the product (and so gate how many jobs run).
    pub managed: bool,
    /// Its counters.
    pub counters: AccountCounters,
    /// Its MRUs as cached, if ever read.
    pub mru_current: Option<u32>,
    /// Its stuck threshold.
    pub stuck_after: Duration,
    /// Its provider reports the Scheduled state (see the module docs for those that do not).
    pub scheduled_events: bool,
    /// Reading its jobs failed in this sweep (an outage, a refused token): a job that never started there
    /// counts as stuck without the read that would otherwise confirm it.
    pub unreachable: bool,
    /// Its active attempts.
    pub attempts: &'a [AttemptRecord],
}

/// The thresholds that are the same for every account.
#[derive(Debug, Clone, Copy)]
pub struct Thresholds {
    /// Stuck attempts that take an account out of rotation.
    pub stuck_min_jobs: u32,
    /// `Some(grace)` under `STUCK_POLICY=wait`: stuck attempts are resubmitted only after this much more.
    pub wait_grace: Option<Duration>,
    /// Silence after which an attempt is read from Media Services.
    pub reconcile_after: Duration,
}

/// The verdict on one attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Nothing to do.
    Fine,
    /// Waiting too long; `resubmit` says whether to move it now (false while a wait grace runs).
    Stuck {
        /// Move it now.
        resubmit: bool,
    },
    /// Heard nothing for a while: read it from Media Services.
    Quiet,
    /// Past the threshold without having started, on a provider without Scheduled events, and not read
    /// since: read it, and judge it on what the read says.
    Confirm,
}

/// What the sweep should do about one account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountPlan {
    /// Stuck attempts to move now.
    pub resubmit: Vec<AttemptRecord>,
    /// How many attempts are stuck (moved now or later).
    pub stuck: usize,
    /// Attempts to read from Media Services because they went quiet.
    pub reconcile: Vec<AttemptRecord>,
    /// Attempts to read to confirm they never started (see [`Verdict::Confirm`]).
    pub confirm: Vec<AttemptRecord>,
    /// Why the account should leave rotation, if it should.
    pub remove_because: Option<String>,
}

/// Jobs to move off an account that is out of rotation, under `STUCK_POLICY=resubmit`: every one still
/// waiting to start (Queued or Scheduled), whether or not it has waited `STUCK_AFTER` yet — the account is
/// already known to be broken, and each minute they wait there is a minute lost and a job that may later
/// run twice. Jobs Processing there are left to finish (or to be read back when quiet); a `Submitting`
/// attempt may be a placement still under way, so it is left to the stuck rule.
pub fn evacuate(view: &AccountView<'_>) -> Vec<AttemptRecord> {
    view.attempts.iter().filter(|a| matches!(a.state, JobState::Queued | JobState::Scheduled)).cloned().collect()
}

/// Whether the account's Scheduled waits are its own queue rather than a failure (see the module docs).
pub fn saturated(view: &AccountView<'_>) -> bool {
    view.managed && view.counters.processing > 0 && view.counters.units > view.mru_current.unwrap_or(0)
}

fn elapsed(since: DateTime<Utc>, now: DateTime<Utc>) -> Duration {
    (now - since).to_std().unwrap_or_default()
}

/// Judges one attempt.
pub fn assess(attempt: &AttemptRecord, view: &AccountView<'_>, thresholds: &Thresholds, now: DateTime<Utc>) -> Verdict {
    let waiting_since = match attempt.state {
        JobState::Scheduled if saturated(view) => None,
        // Without Scheduled events the wait to start counts from acceptance, whatever a read called it.
        JobState::Scheduled if !view.scheduled_events => Some(attempt.submitted_at),
        JobState::Scheduled => Some(attempt.scheduled_at.unwrap_or(attempt.submitted_at)),
        // Submitted but never heard from.
        JobState::Submitting | JobState::Queued => Some(attempt.submitted_at),
        _ => None,
    };
    if let Some(since) = waiting_since {
        let waited = elapsed(since, now);
        if waited >= view.stuck_after {
            let read_after_threshold = elapsed(since, attempt.last_heard_at) >= view.stuck_after;
            if !view.scheduled_events && !read_after_threshold && !view.unreachable {
                return Verdict::Confirm;
            }
            let resubmit = thresholds.wait_grace.is_none_or(|grace| waited >= view.stuck_after + grace);
            return Verdict::Stuck { resubmit };
        }
    }
    if elapsed(attempt.last_heard_at, now) >= thresholds.reconcile_after {
        return Verdict::Quiet;
    }
    Verdict::Fine
}

/// Judges every active attempt of one account.
pub fn plan_account(view: &AccountView<'_>, thresholds: &Thresholds, now: DateTime<Utc>) -> AccountPlan {
    let mut plan = AccountPlan { resubmit: vec![], stuck: 0, reconcile: vec![], confirm: vec![], remove_because: None };
    for attempt in view.attempts {
        match assess(attempt, view, thresholds, now) {
            Verdict::Fine => {}
            Verdict::Quiet => plan.reconcile.push(attempt.clone()),
            Verdict::Confirm => plan.confirm.push(attempt.clone()),
            Verdict::Stuck { resubmit } => {
                plan.stuck += 1;
                if resubmit {
                    plan.resubmit.push(attempt.clone());
                }
            }
        }
    }
    if plan.stuck >= usize::try_from(thresholds.stuck_min_jobs).unwrap_or(usize::MAX) {
        plan.remove_because = Some(format!(
            "{} job(s) waited longer than {}s in Scheduled or without word from Media Services",
            plan.stuck,
            view.stuck_after.as_secs()
        ));
    }
    plan
}

/// Of the accounts in rotation, the ones whose stuck jobs may take them out: stuck jobs are evidence
/// against a region only while another region in rotation is not stuck. When every account in rotation
/// looks stuck at once (the last one left, or all of them slow together), the likelier cause is load or
/// something shared, and removing them would stop all encoding: they stay, and only failing API calls
/// (`SUBMIT_FAILURES_TO_REMOVE`) can take them out.
pub fn removable_for_stuck<'a>(in_rotation: &[&'a str], stuck: &[&'a str]) -> Vec<&'a str> {
    let stuck_in_rotation: Vec<&str> = in_rotation.iter().copied().filter(|a| stuck.contains(a)).collect();
    if stuck_in_rotation.len() < in_rotation.len() {
        stuck_in_rotation
    } else {
        Vec::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::records::sample_job;
    use proptest::prelude::*;

    fn t(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + secs, 0).unwrap_or_default()
    }

    fn attempt(state: JobState, submitted: i64, scheduled: Option<i64>, heard: i64) -> AttemptRecord {
        let job = sample_job(t(0));
        let (_, mut a) = job.begin_attempt("a", "r", 1, t(submitted));
        a.state = state;
        a.scheduled_at = scheduled.map(t);
        a.last_heard_at = t(heard);
        a
    }

    const TH: Thresholds =
        Thresholds { stuck_min_jobs: 1, wait_grace: None, reconcile_after: Duration::from_secs(300) };

    fn view(attempts: &[AttemptRecord]) -> AccountView<'_> {
        AccountView {
            managed: false,
            counters: AccountCounters::default(),
            mru_current: None,
            stuck_after: Duration::from_secs(600),
            scheduled_events: true,
            unreachable: false,
            attempts,
        }
    }

    #[test]
    fn without_scheduled_events_a_job_that_never_started_is_stuck_once_a_read_after_the_threshold_agrees() {
        let without = |attempts| AccountView { scheduled_events: false, ..view(attempts) };
        let queued = [attempt(JobState::Queued, 0, None, 590)];
        assert_eq!(assess(&queued[0], &without(&queued), &TH, t(599)), Verdict::Fine);
        assert_eq!(
            assess(&queued[0], &without(&queued), &TH, t(600)),
            Verdict::Confirm,
            "its start may be a lost webhook"
        );
        let plan = plan_account(&without(&queued), &TH, t(600));
        assert_eq!((plan.stuck, plan.confirm.len(), plan.remove_because), (0, 1, None));
        // A region that could not even answer for it is not given the benefit of the doubt.
        let unreachable = AccountView { unreachable: true, ..without(&queued) };
        assert_eq!(assess(&queued[0], &unreachable, &TH, t(600)), Verdict::Stuck { resubmit: true });
        // Read at 600 s and still waiting: stuck, and its account may leave rotation.
        let confirmed = [attempt(JobState::Queued, 0, None, 600)];
        assert_eq!(assess(&confirmed[0], &without(&confirmed), &TH, t(601)), Verdict::Stuck { resubmit: true });
        // A read that calls it Scheduled does not restart the clock: only starting does.
        let scheduled = [attempt(JobState::Scheduled, 0, Some(590), 600)];
        assert_eq!(assess(&scheduled[0], &without(&scheduled), &TH, t(601)), Verdict::Stuck { resubmit: true });
        // Started: never stuck, only read back when quiet.
        let started = [attempt(JobState::Processing, 0, None, 10)];
        assert_eq!(assess(&started[0], &without(&started), &TH, t(601)), Verdict::Quiet);
    }

    #[test]
    fn a_job_in_scheduled_past_the_threshold_is_stuck_and_removes_its_account() {
        let attempts = [attempt(JobState::Scheduled, 0, Some(10), 10)];
        assert_eq!(assess(&attempts[0], &view(&attempts), &TH, t(609)), Verdict::Quiet);
        assert_eq!(assess(&attempts[0], &view(&attempts), &TH, t(610)), Verdict::Stuck { resubmit: true });
        let plan = plan_account(&view(&attempts), &TH, t(700));
        assert_eq!((plan.resubmit.len(), plan.remove_because.is_some()), (1, true));
    }

    #[test]
    fn a_job_submitted_and_never_heard_from_is_stuck_too() {
        let attempts = [attempt(JobState::Queued, 0, None, 0)];
        assert_eq!(assess(&attempts[0], &view(&attempts), &TH, t(600)), Verdict::Stuck { resubmit: true });
    }

    #[test]
    fn processing_jobs_are_never_stuck_but_are_polled_when_quiet() {
        let attempts = [attempt(JobState::Processing, 0, Some(1), 2)];
        assert_eq!(assess(&attempts[0], &view(&attempts), &TH, t(301)), Verdict::Fine);
        assert_eq!(assess(&attempts[0], &view(&attempts), &TH, t(302)), Verdict::Quiet);
        assert_eq!(assess(&attempts[0], &view(&attempts), &TH, t(100_000)), Verdict::Quiet);
    }

    #[test]
    fn the_wait_policy_gives_stuck_jobs_a_grace_before_moving_them() {
        let th = Thresholds { wait_grace: Some(Duration::from_secs(120)), ..TH };
        let attempts = [attempt(JobState::Scheduled, 0, Some(0), 0)];
        assert_eq!(assess(&attempts[0], &view(&attempts), &th, t(650)), Verdict::Stuck { resubmit: false });
        assert_eq!(assess(&attempts[0], &view(&attempts), &th, t(720)), Verdict::Stuck { resubmit: true });
        let plan = plan_account(&view(&attempts), &th, t(650));
        assert!(plan.resubmit.is_empty() && plan.remove_because.is_some(), "the account leaves rotation at once");
    }

    #[test]
    fn a_saturated_managed_account_is_not_removed_for_jobs_waiting_their_turn() {
        let attempts = [attempt(JobState::Scheduled, 0, Some(0), 0), attempt(JobState::Processing, 0, Some(0), 0)];
        let counters = AccountCounters { scheduled: 1, processing: 1, units: 2, ..Default::default() };
        let saturated = AccountView { managed: true, counters, mru_current: Some(1), ..view(&attempts) };
        let plan = plan_account(&saturated, &TH, t(5000));
        assert_eq!((plan.stuck, plan.remove_because), (0, None));
        // Nothing processing: the encoders are not busy, the region is stalled.
        let stalled_counters = AccountCounters { scheduled: 2, units: 2, ..Default::default() };
        let stalled =
            AccountView { managed: true, counters: stalled_counters, mru_current: Some(1), ..view(&attempts) };
        assert!(plan_account(&stalled, &TH, t(5000)).remove_because.is_some());
        // Enough MRUs for everything: a wait is not the queue.
        let roomy = AccountView { managed: true, counters, mru_current: Some(2), ..view(&attempts) };
        assert!(plan_account(&roomy, &TH, t(5000)).remove_because.is_some());
    }

    #[test]
    fn a_removed_account_is_evacuated_of_jobs_waiting_to_start_but_not_of_running_ones() {
        let attempts = [
            attempt(JobState::Submitting, 0, None, 0),
            attempt(JobState::Queued, 0, None, 0),
            attempt(JobState::Scheduled, 0, Some(1), 1),
            attempt(JobState::Processing, 0, Some(1), 1),
        ];
        let moved: Vec<JobState> = evacuate(&view(&attempts)).into_iter().map(|a| a.state).collect();
        assert_eq!(moved, vec![JobState::Queued, JobState::Scheduled]);
    }

    #[test]
    fn an_account_needs_the_minimum_number_of_stuck_jobs_to_leave_rotation() {
        let th = Thresholds { stuck_min_jobs: 2, ..TH };
        let attempts = [attempt(JobState::Scheduled, 0, Some(0), 0), attempt(JobState::Scheduled, 0, Some(500), 500)];
        assert_eq!(plan_account(&view(&attempts), &th, t(700)).remove_because, None);
        assert!(plan_account(&view(&attempts), &th, t(1100)).remove_because.is_some());
    }

    proptest! {
        /// Whatever the rows, a decision never resubmits a job that is not stuck, never resubmits twice, and
        /// reconciles only attempts it does not resubmit.
        #[test]
        fn plans_are_consistent(specs in prop::collection::vec((0u8..5, 0i64..2000, 0i64..2000), 0..12), now in 0i64..4000) {
            let states = [JobState::Submitting, JobState::Queued, JobState::Scheduled, JobState::Processing, JobState::Canceling];
            let attempts: Vec<AttemptRecord> = specs.iter().enumerate().map(|(i, (s, sub, heard))| {
                let mut a = attempt(states[usize::from(*s)], *sub, Some(*sub), *heard);
                a.ams_job_name = format!("j-a{i}");
                a
            }).collect();
            let v = view(&attempts);
            let plan = plan_account(&v, &TH, t(now));
            for a in &plan.resubmit {
                prop_assert_eq!(assess(a, &v, &TH, t(now)), Verdict::Stuck { resubmit: true });
                prop_assert!(!plan.reconcile.iter().any(|r| r.ams_job_name == a.ams_job_name));
            }
            prop_assert!(plan.resubmit.len() <= plan.stuck);
            prop_assert_eq!(plan.remove_because.is_some(), plan.stuck >= 1);
        }
    }

    #[test]
    fn stuck_accounts_leave_rotation_only_while_another_account_is_not_stuck() {
        assert_eq!(removable_for_stuck(&["a", "b", "c"], &["a"]), vec!["a"]);
        assert_eq!(removable_for_stuck(&["a", "b", "c"], &["a", "b"]), vec!["a", "b"]);
        assert!(removable_for_stuck(&["a", "b"], &["a", "b"]).is_empty(), "all slow together: keep them");
        assert!(removable_for_stuck(&["b"], &["b"]).is_empty(), "the last account stays");
        assert!(removable_for_stuck(&["b"], &["a"]).is_empty(), "already out");
    }
}
