//! Job lifecycle: one ticker advances every job of every account.
//!
//! Queued →(queued-ms) Scheduled →(scheduled-ms) Processing →(processing-ms)
//! Finished (or Error under the `fail-jobs` fault); a cancel moves a running job
//! to Canceling and, after canceling-ms, to Canceled. Time in a phase is
//! accumulated per tick only while the account lets the job progress, so a job
//! paused by an outage or stall resumes where it stopped.
//!
//! The functions here are synchronous and take `now`/`dt` as arguments so they
//! can be driven directly in tests.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::config::Config;
use crate::events::{EventGridEvent, EventSource};
use crate::mkio;
use crate::model::{Account, Fault, Job, JobError, JobState};
use crate::outputs;
use crate::state::Emulator;

/// Real-time period of the ticker.
pub const TICK: Duration = Duration::from_millis(5);

/// Key of a job inside an account: (lowercase transform, lowercase job).
pub type JobKey = (String, String);

/// Real time a job spends in `state` before moving on; `None` for final states.
pub fn phase_duration(cfg: &Config, state: JobState) -> Option<Duration> {
    let ms = match state {
        JobState::Queued => cfg.queued_ms,
        JobState::Scheduled => cfg.scheduled_ms,
        JobState::Processing => cfg.processing_ms,
        JobState::Canceling => cfg.canceling_ms,
        JobState::Finished | JobState::Error | JobState::Canceled => return None,
    };
    Some(cfg.scaled_ms(ms))
}

/// The single gate between Scheduled and Processing.
///
/// A stall or outage holds every job. A managed account runs at most
/// `max(CurrentReservedUnits, 1)` jobs at once; the jobs waiting for a unit
/// start in order of priority (High first), then creation, then name, so a
/// freed unit always goes to the job AMS v2 would have picked. Lowering the
/// units never stops a running job: only starts are gated here.
pub fn may_start_processing(cfg: &Config, account: &Account, job: &JobKey) -> bool {
    if matches!(account.fault, Fault::Stall | Fault::Outage) {
        return false;
    }
    let Some(limit) = account.mru.concurrency_limit() else {
        return true;
    };
    let free = limit.saturating_sub(account.processing_jobs());
    if free == 0 {
        return false;
    }
    let due = phase_duration(cfg, JobState::Scheduled).unwrap_or(Duration::ZERO);
    let mut waiting: Vec<(&JobKey, &Job)> =
        account.jobs.iter().filter(|(_, j)| j.state == JobState::Scheduled && j.phase_elapsed >= due).collect();
    waiting.sort_by(|(ka, a), (kb, b)| {
        priority_rank(&b.priority).cmp(&priority_rank(&a.priority)).then(a.created.cmp(&b.created)).then(ka.cmp(kb))
    });
    waiting.iter().take(free).any(|(k, _)| *k == job)
}

/// Start order of a job priority: High before Normal before Low.
fn priority_rank(priority: &str) -> u8 {
    match priority {
        "High" => 2,
        "Low" => 0,
        _ => 1,
    }
}

/// Moves `job` to `to` at `now`, updating outputs, times and history, and
/// returns the events the change raises (output events first, as AMS sends them).
pub fn transition(
    job: &mut Job,
    to: JobState,
    now: DateTime<Utc>,
    source: &EventSource,
    error: Option<&JobError>,
) -> Vec<EventGridEvent> {
    let previous = job.state;
    job.state = to;
    job.last_modified = now;
    job.phase_elapsed = Duration::ZERO;
    job.history.push((to, now));
    if to == JobState::Processing {
        job.start_time = Some(now);
    }
    if to.is_final() {
        job.end_time = Some(now);
    }
    let mut events = Vec::new();
    for i in 0..job.outputs.len() {
        let out_previous = job.outputs[i].state;
        if out_previous.is_final() {
            continue;
        }
        let out = &mut job.outputs[i];
        out.state = to;
        match to {
            JobState::Processing => out.start_time = Some(now),
            JobState::Finished => out.progress = 100,
            JobState::Error => out.error = error.cloned(),
            _ => {}
        }
        if to.is_final() {
            out.end_time = Some(now);
        }
        let out = job.outputs[i].clone();
        events.extend(source.output_state_events(job, &out, out_previous, &now));
    }
    events.extend(source.job_state_events(job, previous, &now));
    events
}

/// Advances every job of `account` by `dt` of real time; returns the events raised.
pub fn advance(
    cfg: &Config,
    account: &mut Account,
    dt: Duration,
    now: DateTime<Utc>,
    source_for: &dyn Fn(&Account, &Job) -> EventSource,
) -> Vec<EventGridEvent> {
    let mut events = Vec::new();
    // Units stay reserved (and running jobs occupy them) even while the account is frozen.
    let processing = account.processing_jobs();
    account.mru.accrue(dt.mul_f64(cfg.time_scale), processing);
    // Storage is a separate service: copies land even while Media Services is down.
    account.storage.advance_copies(dt, now);
    if account.fault.freezes_jobs() {
        return events;
    }
    let active: Vec<JobKey> =
        account.jobs.iter().filter(|(_, j)| !j.state.is_final()).map(|(k, _)| k.clone()).collect();
    // Time passes for every job before any moves, so the start gate sees all
    // jobs that became ready in this tick and can pick among them by priority.
    for key in &active {
        if let Some(job) = account.jobs.get_mut(key) {
            job.phase_elapsed += dt;
        }
    }
    for key in active {
        let (state, due) = {
            let Some(job) = account.jobs.get(&key) else {
                continue;
            };
            let Some(total) = phase_duration(cfg, job.state) else {
                continue;
            };
            (job.state, job.phase_elapsed >= total)
        };
        if state == JobState::Processing {
            let Some(job) = account.jobs.get(&key) else {
                continue;
            };
            let progress_events = report_progress(cfg, job, &source_for(account, job));
            if let Some(job) = account.jobs.get_mut(&key) {
                update_progress(cfg, job);
                if !progress_events.is_empty() {
                    job.progress_reported = true;
                }
            }
            events.extend(progress_events);
        }
        if !due {
            continue;
        }
        let (to, error) = match state {
            JobState::Queued => (JobState::Scheduled, None),
            JobState::Scheduled if may_start_processing(cfg, account, &key) => (JobState::Processing, None),
            JobState::Scheduled => continue,
            JobState::Processing => match &account.fault {
                Fault::FailJobs { retry, code } => (JobState::Error, Some(JobError::new(code, *retry))),
                _ => (JobState::Finished, None),
            },
            JobState::Canceling => (JobState::Canceled, None),
            JobState::Finished | JobState::Error | JobState::Canceled => continue,
        };
        let Some(job) = account.jobs.get(&key) else {
            continue;
        };
        let source = source_for(account, job);
        if to == JobState::Finished {
            // Outputs are in place before the Finished event goes out, as AMS guarantees.
            let job = job.clone();
            outputs::write_job_outputs(account, &job, now);
        }
        if let Some(job) = account.jobs.get_mut(&key) {
            events.extend(transition(job, to, now, &source, error.as_ref()));
        }
    }
    events
}

fn progress_percent(cfg: &Config, job: &Job) -> u8 {
    let total = cfg.scaled_ms(cfg.processing_ms).as_secs_f64();
    if total <= 0.0 {
        return 99;
    }
    // Capped below 100: only Finished reports 100.
    ((job.phase_elapsed.as_secs_f64() / total) * 100.0).clamp(0.0, 99.0) as u8
}

fn update_progress(cfg: &Config, job: &mut Job) {
    let p = progress_percent(cfg, job);
    for out in job.outputs.iter_mut().filter(|o| o.state == JobState::Processing) {
        out.progress = p;
    }
}

/// One `JobOutputProgress` per output once processing passes half way.
fn report_progress(cfg: &Config, job: &Job, source: &EventSource) -> Vec<EventGridEvent> {
    let p = progress_percent(cfg, job);
    if job.progress_reported || p < 50 {
        return Vec::new();
    }
    let now = Utc::now();
    job.outputs
        .iter()
        .filter(|o| o.state == JobState::Processing)
        .map(|o| {
            let mut o = o.clone();
            o.progress = p;
            source.output_progress_event(job, &o, &now)
        })
        .collect()
}

/// Requests cancellation: a running job goes to Canceling (the ticker finishes
/// it); Canceling or final jobs are left alone. Returns the events raised.
pub fn cancel(job: &mut Job, now: DateTime<Utc>, source: &EventSource) -> Vec<EventGridEvent> {
    if job.state.is_final() || job.state == JobState::Canceling {
        return Vec::new();
    }
    transition(job, JobState::Canceling, now, source, None)
}

/// Starts the ticker that drives every job; it runs until the runtime stops.
pub fn spawn_ticker(emulator: Arc<Emulator>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(TICK);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last = tokio::time::Instant::now();
        loop {
            interval.tick().await;
            let instant = tokio::time::Instant::now();
            let dt = instant.duration_since(last);
            last = instant;
            let now = Utc::now();
            let (events, webhooks) = {
                let mut state = emulator.lock();
                let mut events = Vec::new();
                let mut webhooks = Vec::new();
                for account in state.accounts.values_mut() {
                    let raised = advance(&emulator.config, account, dt, now, &|a, j| emulator.event_source(a, j));
                    // MK.IO projects send webhooks, not Event Grid events.
                    if account.mkio.is_some() {
                        webhooks.extend(mkio::webhooks::job_events(&emulator, account, &raised));
                    } else {
                        events.extend(raised);
                    }
                }
                (events, webhooks)
            };
            if !events.is_empty() {
                emulator.dispatcher.publish(events);
            }
            if !webhooks.is_empty() {
                mkio::webhooks::publish(&emulator, webhooks);
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Cli;
    use crate::model::{JobOutput, RetryHint};
    use clap::Parser;

    /// Scale 1 and round phase lengths, so `dt` values below read as plain milliseconds.
    fn config() -> Config {
        let cli = Cli::parse_from([
            "ams-emulator",
            "--account",
            "a:r",
            "--queued-ms",
            "100",
            "--scheduled-ms",
            "100",
            "--processing-ms",
            "1000",
            "--canceling-ms",
            "100",
        ]);
        Config::from_cli(&cli).unwrap()
    }

    fn account_with_job() -> (Account, JobKey) {
        let mut account = Account::new("a", "r");
        let key = add_job(&mut account, "j", "Normal", Utc::now());
        (account, key)
    }

    fn add_job(account: &mut Account, name: &str, priority: &str, now: DateTime<Utc>) -> JobKey {
        let key = ("t".to_string(), name.to_string());
        account.jobs.insert(
            key.clone(),
            Job {
                outputs: vec![JobOutput {
                    asset_name: "out".into(),
                    label: "BuiltInStandardEncoderPreset_0".into(),
                    state: JobState::Queued,
                    progress: 0,
                    start_time: None,
                    end_time: None,
                    error: None,
                }],
                priority: priority.into(),
                ..Job::queued("t", name, now)
            },
        );
        key
    }

    fn managed(current: u32) -> Account {
        let mut mru = crate::model::Mru::new(crate::config::MruMode::Managed, 25);
        mru.current = current;
        Account::with_mru("a", "r", mru)
    }

    fn processing(account: &Account) -> Vec<String> {
        account.jobs.values().filter(|j| j.state == JobState::Processing).map(|j| j.name.clone()).collect()
    }

    fn step(cfg: &Config, account: &mut Account, ms: u64) -> Vec<String> {
        let source = |a: &Account, j: &Job| EventSource::new("s", "rg", &a.name, j);
        advance(cfg, account, Duration::from_millis(ms), Utc::now(), &source)
            .into_iter()
            .map(|e| e.event_type)
            .collect()
    }

    fn state(account: &Account, key: &JobKey) -> JobState {
        account.jobs[key].state
    }

    #[test]
    fn a_paused_phase_resumes_where_it_stopped() {
        let cfg = config();
        let (mut account, key) = account_with_job();
        step(&cfg, &mut account, 60);
        account.fault = Fault::Outage;
        assert!(step(&cfg, &mut account, 10_000).is_empty());
        assert_eq!(state(&account, &key), JobState::Queued);
        account.fault = Fault::Healthy;
        // 60 ms were already spent; 40 more complete the 100 ms phase.
        let events = step(&cfg, &mut account, 40);
        assert_eq!(state(&account, &key), JobState::Scheduled);
        assert!(events.contains(&"Microsoft.Media.JobScheduled".to_string()));
    }

    #[test]
    fn a_stall_holds_scheduled_jobs_at_the_gate() {
        let cfg = config();
        let (mut account, key) = account_with_job();
        account.fault = Fault::Stall;
        step(&cfg, &mut account, 100);
        assert_eq!(state(&account, &key), JobState::Scheduled);
        for _ in 0..10 {
            step(&cfg, &mut account, 1000);
        }
        assert_eq!(state(&account, &key), JobState::Scheduled);
        account.fault = Fault::Healthy;
        step(&cfg, &mut account, 1);
        assert_eq!(state(&account, &key), JobState::Processing);
        assert!(account.jobs[&key].start_time.is_some());
    }

    #[test]
    fn a_managed_account_runs_no_more_jobs_than_its_reserved_units() {
        let cfg = config();
        let mut account = managed(2);
        let t0 = Utc::now();
        for (i, name) in ["j1", "j2", "j3", "j4"].into_iter().enumerate() {
            add_job(&mut account, name, "Normal", t0 + chrono::Duration::milliseconds(i as i64));
        }
        step(&cfg, &mut account, 100);
        step(&cfg, &mut account, 100);
        assert_eq!(processing(&account), ["j1", "j2"]);
        account.mru.current = 3;
        step(&cfg, &mut account, 1);
        assert_eq!(processing(&account), ["j1", "j2", "j3"]);
        // Lowering the units stops nothing that runs.
        account.mru.current = 0;
        step(&cfg, &mut account, 1);
        assert_eq!(processing(&account).len(), 3);
    }

    #[test]
    fn a_freed_unit_goes_to_the_highest_priority_then_the_oldest_job() {
        let cfg = config();
        let mut account = managed(0);
        let t0 = Utc::now();
        let at = |ms: i64| t0 + chrono::Duration::milliseconds(ms);
        add_job(&mut account, "first", "Low", at(0));
        step(&cfg, &mut account, 100);
        step(&cfg, &mut account, 100);
        assert_eq!(processing(&account), ["first"], "0 units still run one job");
        add_job(&mut account, "a-low", "Low", at(1));
        add_job(&mut account, "b-normal-old", "Normal", at(2));
        add_job(&mut account, "c-normal-new", "Normal", at(3));
        add_job(&mut account, "d-high", "High", at(4));
        let mut order = Vec::new();
        // Five one-second jobs in a row, in 100 ms steps.
        for _ in 0..60 {
            step(&cfg, &mut account, 100);
            for name in processing(&account) {
                if !order.contains(&name) {
                    order.push(name);
                }
            }
        }
        assert_eq!(order, ["first", "d-high", "b-normal-old", "c-normal-new", "a-low"]);
    }

    #[test]
    fn reserved_units_are_accounted_in_emulated_seconds() {
        let cfg = config();
        let mut account = managed(2);
        add_job(&mut account, "j", "Normal", Utc::now());
        step(&cfg, &mut account, 100);
        step(&cfg, &mut account, 100);
        assert_eq!(account.processing_jobs(), 1);
        step(&cfg, &mut account, 500);
        // 700 ms with 2 units provisioned; one of them busy for the 500 ms after the start.
        assert!((account.mru.provisioned_mru_seconds - 1.4).abs() < 1e-9, "{:?}", account.mru);
        assert!((account.mru.busy_mru_seconds - 0.5).abs() < 1e-9, "{:?}", account.mru);
        let mut auto = Account::new("b", "r");
        add_job(&mut auto, "j", "Normal", Utc::now());
        step(&cfg, &mut auto, 300);
        assert_eq!((auto.mru.provisioned_mru_seconds, auto.mru.busy_mru_seconds), (0.0, 0.0));
    }

    #[test]
    fn exactly_one_progress_event_is_raised_past_half_way() {
        let cfg = config();
        let (mut account, key) = account_with_job();
        step(&cfg, &mut account, 100);
        step(&cfg, &mut account, 100);
        assert_eq!(state(&account, &key), JobState::Processing);
        let progress = "Microsoft.Media.JobOutputProgress".to_string();
        assert!(!step(&cfg, &mut account, 400).contains(&progress));
        assert_eq!(account.jobs[&key].outputs[0].progress, 40);
        assert!(step(&cfg, &mut account, 200).contains(&progress));
        assert!(!step(&cfg, &mut account, 200).contains(&progress));
        let last = step(&cfg, &mut account, 200);
        assert!(!last.contains(&progress));
        assert_eq!(state(&account, &key), JobState::Finished);
        assert_eq!(account.jobs[&key].outputs[0].progress, 100);
    }

    #[test]
    fn fail_jobs_turns_the_end_of_processing_into_an_error() {
        let cfg = config();
        let (mut account, key) = account_with_job();
        step(&cfg, &mut account, 100);
        step(&cfg, &mut account, 100);
        account.fault = Fault::FailJobs { retry: RetryHint::MayRetry, code: "ContentMalformed".into() };
        let events = step(&cfg, &mut account, 1000);
        assert_eq!(state(&account, &key), JobState::Error);
        assert!(events.contains(&"Microsoft.Media.JobErrored".to_string()));
        assert!(events.contains(&"Microsoft.Media.JobOutputErrored".to_string()));
        let err = account.jobs[&key].outputs[0].error.clone().unwrap();
        assert_eq!(err.category, "Content");
        assert_eq!(err.retry, RetryHint::MayRetry);
        assert!(account.jobs[&key].end_time.is_some());
    }

    #[test]
    fn cancel_moves_through_canceling_and_ignores_final_jobs() {
        let cfg = config();
        let (mut account, key) = account_with_job();
        let source = EventSource::new("s", "rg", "a", &account.jobs[&key]);
        let Some(job) = account.jobs.get_mut(&key) else { unreachable!() };
        let events = cancel(job, Utc::now(), &source);
        let types: Vec<&str> = events.iter().map(|e| e.event_type.as_str()).collect();
        assert_eq!(
            types,
            [
                "Microsoft.Media.JobOutputStateChange",
                "Microsoft.Media.JobOutputCanceling",
                "Microsoft.Media.JobStateChange",
                "Microsoft.Media.JobCanceling"
            ]
        );
        assert!(cancel(job, Utc::now(), &source).is_empty(), "already canceling");
        step(&cfg, &mut account, 100);
        assert_eq!(state(&account, &key), JobState::Canceled);
        let Some(job) = account.jobs.get_mut(&key) else { unreachable!() };
        assert!(cancel(job, Utc::now(), &source).is_empty(), "final");
        let history: Vec<JobState> = job.history.iter().map(|(s, _)| *s).collect();
        assert_eq!(history, [JobState::Queued, JobState::Canceling, JobState::Canceled]);
    }
}
