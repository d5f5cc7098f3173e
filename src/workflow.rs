//! The steps that combine the store and Media Services under the domain's rules, shared by the functions:
//! placing a job on an account, applying what Media Services reports about an attempt, moving a stuck
//! attempt elsewhere, and reading a quiet attempt back from Media Services.

use crate::config::AccountConfig;
use crate::domain::{rotation_order, Alert, AttemptRecord, Cooldown, ErrorInfo, JobRecord, JobState, SubmitRequest};
use crate::media::{JobSpec, MediaError};
use crate::scaling;
use crate::store::{AttemptChange, Changed, StoreError, Versioned};
use crate::App;
use chrono::{DateTime, Utc};
use std::collections::BTreeMap;
use tables::ETag;
use tracing::{info, warn};

/// Where a placement left the job.
#[derive(Debug)]
pub struct Placement {
    /// The job as stored afterwards.
    pub job: JobRecord,
    /// Alerts to send.
    pub alerts: Vec<Alert>,
}

/// Test-only (debug builds, `FAIL_POINT`): dies here, the way an instance recycled in the middle of an
/// invocation does, so tests can show that every write boundary leaves rows the sweep can finish from.
pub fn fail_point(app: &App, at: &str) {
    if app.settings.fail_point.as_deref() == Some(at) {
        tracing::error!(fail_point = at, "aborting at a fail point");
        std::process::abort();
    }
}

/// The fail points, in the order a job passes them.
pub const FAIL_POINTS: [&str; 8] = [
    "after-claim",
    "after-attempt-row",
    "after-output-assets",
    "after-media-job",
    "before-final-job-update",
    "after-final-job-update",
    "move-after-supersede",
    "repair-after-open",
];

/// After a write that made a job final: its outcome goes out (the store wrote the outbox pointer before that
/// write and the delivery state with it, so a crash here still gets it delivered, by the sweep). A job with
/// nothing to announce got neither, and nothing is started.
fn ended(app: &App, job: &Changed<JobRecord>) {
    if job.changed && job.value.state.is_final() {
        fail_point(app, "after-final-job-update");
        if app.store.announces(&job.value) {
            crate::notify::deliver_soon(app, &job.value.job_id);
        }
    }
}

/// The cool-down rule from the settings.
pub fn cooldown(app: &App) -> Cooldown {
    Cooldown { base: app.settings.failover.cooldown, max: app.settings.failover.cooldown_max }
}

/// Places a Pending job on an account in rotation. Accounts this job has not tried yet come first, each
/// group in random order (the guidance's random choice); transient failures move on to the next account and
/// count towards removing it. When none takes it the job stays Pending (its pending marker stays too, so the
/// sweep tries again) and an alert says so. If another writer changed the job meanwhile (a concurrent retry
/// or sweep), that writer owns the placement and the job is returned as it stands. `etag` is the version the
/// caller holds `job` at, if it holds one: each write then starts from the version the previous one returned
/// instead of reading the row again (a stale one costs a read, never a lost update).
pub async fn place_job(
    app: &App,
    mut job: JobRecord,
    etag: Option<ETag>,
    now: DateTime<Utc>,
) -> Result<Placement, StoreError> {
    let mut known = etag;
    let request = request_of(&job)?;
    let health = app.store.health().await?;
    let names: Vec<&str> = app.settings.accounts.iter().map(|a| a.name.as_str()).collect();
    let (fresh, tried_before): (Vec<&str>, Vec<&str>) =
        health.in_rotation(names).into_iter().partition(|name| !job.attempts.iter().any(|a| a.account == *name));
    let order = {
        let mut rng = rand::rng();
        [rotation_order(&fresh, &mut rng), rotation_order(&tried_before, &mut rng)].concat()
    };
    let outputs = app.settings.transforms.get(&job.transform).copied().unwrap_or(1);
    let mut tried = Vec::new();
    let mut busy = 0;
    let mut alerts = Vec::new();

    for name in order {
        let Some(account) = app.settings.account(name) else { continue };
        if job.state != JobState::Pending {
            break;
        }
        if !app.media.has_room(account) {
            // Its request budget is spent for now: nothing is wrong with it, and an attempt that cannot
            // even be sent is not worth a row. The job waits for the next free slot here or elsewhere.
            busy += 1;
            continue;
        }
        let expected_attempt = job.attempt;
        let (claimed, attempt) = job.begin_attempt(&account.name, &account.region, outputs, now);
        let held = known.take().map(|etag| Versioned { value: job.clone(), etag });
        let stored = app
            .store
            .update_job_from(&job.job_id, held, |current| {
                (current.state == JobState::Pending && current.attempt == expected_attempt).then(|| claimed.clone())
            })
            .await?
            .ok_or_else(|| StoreError::Corrupt(format!("job {} vanished during placement", job.job_id)))?;
        if !stored.changed {
            return Ok(Placement { job: stored.value, alerts });
        }
        fail_point(app, "after-claim");
        app.store.open_attempt(&attempt).await?;
        fail_point(app, "after-attempt-row");
        tried.push(account.name.clone());
        let saturated = scaling::scale_up_for(app, account, attempt.units(), now).await?;

        match create_in_media_services(app, account, &attempt, &request).await {
            Ok(()) => {
                fail_point(app, "after-media-job");
                info!(job_id = %job.job_id, account = %account.name, region = %account.region, ams_job = %attempt.ams_job_name, saturated, "job submitted");
                if health.accounts.get(&account.name).is_some_and(|a| a.submit_failures > 0) {
                    app.store.update_health(|h| h.submit_succeeded(&account.name).map(|n| (n, ()))).await?;
                }
                let change = app
                    .store
                    .change_attempt(&account.name, &attempt.ams_job_name, |a| {
                        // An event may already have moved the attempt past Queued; then only the flag changes.
                        let mut next = a.observe(JobState::Queued, now, None, now).unwrap_or_else(|| a.clone());
                        next.mru_saturated = saturated;
                        (next != *a).then_some(next)
                    })
                    .await?;
                let (job, more) = sync_job(app, change, now).await?;
                alerts.extend(more);
                let job = job.unwrap_or(claimed);
                if job.cancel_requested_at.is_some() && !job.state.is_final() {
                    // Cancelled while this placement was creating the job: the request's own cancel may have
                    // come before the job existed, so cancel it now that it does.
                    cancel_in_media_services(app, account, &attempt).await;
                }
                if job.state != JobState::Pending {
                    app.store.unmark_pending(&job.job_id).await?;
                }
                return Ok(Placement { job, alerts });
            }
            Err(error) => {
                warn!(job_id = %job.job_id, account = %account.name, region = %account.region, %error, "submission failed");
                if matches!(error, MediaError::OverBudget(_)) {
                    // Found busy after all (another submission took the last slot first).
                    busy += 1;
                }
                if error.is_account_fault() {
                    let reason = error.to_string();
                    let threshold = app.settings.failover.submit_failures_to_remove;
                    let (_, removal) = app
                        .store
                        .update_health(|h| h.submit_failed(&account.name, &reason, threshold, now, cooldown(app)))
                        .await?;
                    if let Some(Some(removal)) = removal {
                        warn!(account = %account.name, region = %account.region, reason = %removal.reason, "account removed from rotation");
                        let in_flight = app.store.counters(&account.name).await?.in_flight();
                        alerts.push(Alert::region_removed(&account.name, &account.region, &removal, 0, in_flight));
                    }
                }
                let info = ErrorInfo {
                    code: "SubmitFailed".to_owned(),
                    message: error.to_string(),
                    category: "Account".to_owned(),
                    retry: if error.is_account_fault() || error.is_transient() { "MayRetry" } else { "DoNotRetry" }
                        .to_owned(),
                };
                let change = app
                    .store
                    .change_attempt(&account.name, &attempt.ams_job_name, |a| {
                        (a.state == JobState::Submitting).then(|| AttemptRecord {
                            state: JobState::SubmitFailed,
                            finished_at: Some(now),
                            last_heard_at: now,
                            error: Some(info.clone()),
                            ..a.clone()
                        })
                    })
                    .await?;
                if error.is_account_fault() {
                    // The create may have reached the service before the failure; cancel any job it made so it does
                    // not run unaccounted for. Best effort: the attempt is already closed either way.
                    let _ = app.media.cancel_job(account, &attempt.transform, &attempt.ams_job_name).await;
                }
                let (after, more) = sync_job(app, change, now).await?;
                alerts.extend(more);
                let Some(after) = after else { break };
                job = after;
                if let MediaError::Rejected { .. } = error {
                    // The service refused the request itself: it would fail the same way everywhere.
                    let failed = app.store.update_job(&job.job_id, |j| j.fail(info.clone(), now)).await?;
                    if let Some(failed) = &failed {
                        ended(app, failed);
                    }
                    if let Some(failed) = failed.filter(|f| f.changed) {
                        alerts.push(Alert::job_failed(&failed.value, failed.value.last_error.as_ref(), now));
                        app.store.unmark_pending(&job.job_id).await?;
                        return Ok(Placement { job: failed.value, alerts });
                    }
                }
            }
        }
    }

    if job.state == JobState::Pending && busy > 0 {
        // An account that is only busy takes the job at a later sweep: not a reason to alert anyone.
        tracing::debug!(job_id = %job.job_id, tried = ?tried, busy, "accounts are at their request budget; kept as Pending");
    } else if job.state == JobState::Pending {
        // Logged per job only at debug: a sweep retrying many waiting jobs says so in one summary line.
        tracing::debug!(job_id = %job.job_id, tried = ?tried, "no account could take the job; kept as Pending");
        let repeat = app.settings.failover.alert_repeat;
        let (_, alert_due) = app.store.update_health(|h| h.alert_no_account(now, repeat).map(|n| (n, ()))).await?;
        if alert_due.is_some() {
            let pending = app.store.pending_jobs().await?.len();
            warn!(job_id = %job.job_id, tried = ?tried, pending, "no account could take the job; jobs are kept as Pending");
            alerts.push(Alert::job_pending(&job.job_id, &tried, pending, now));
        }
    }
    Ok(Placement { job, alerts })
}

/// Creates the output assets and the job in one account. Names are deterministic, so running this twice
/// finds the same assets and job instead of making new ones.
async fn create_in_media_services(
    app: &App,
    account: &AccountConfig,
    attempt: &AttemptRecord,
    request: &SubmitRequest,
) -> Result<(), MediaError> {
    // Media Services needs the output assets first; MK.IO's job makes its own.
    if account.provider.capabilities().output_asset_before_job {
        for asset in &attempt.output_assets {
            app.media.ensure_asset(account, asset).await?;
        }
    }
    fail_point(app, "after-output-assets");
    let mut correlation_data: BTreeMap<String, String> = request.correlation_data.clone();
    correlation_data.insert("jobId".to_owned(), attempt.job_id.clone());
    correlation_data.insert("attempt".to_owned(), attempt.number.to_string());
    let spec = JobSpec {
        base_uri: request.input.base_uri.clone(),
        files: request.input.files.clone(),
        output_assets: attempt.output_assets.clone(),
        priority: format!("{:?}", request.priority),
        correlation_data,
    };
    app.media.create_job(account, &attempt.transform, &attempt.ams_job_name, &spec).await.map(drop)
}

/// Brings the logical job in line with one of its attempts after a change. Returns the job as stored (or
/// `None` when the attempt is unknown) and the alerts its change calls for. Runs even when the attempt
/// itself did not change, so a crash between the two writes is repaired by the next delivery of the same
/// event (or by the sweep's repair). When the attempt's end sends the job back to Pending, the store writes
/// the pending marker first, so the sweep cannot miss it.
pub async fn sync_job(
    app: &App,
    change: Option<AttemptChange>,
    now: DateTime<Utc>,
) -> Result<(Option<JobRecord>, Vec<Alert>), StoreError> {
    let attempt = match change {
        Some(AttemptChange::Applied { after, .. }) => after,
        Some(AttemptChange::Unchanged(current)) => current,
        None => return Ok((None, vec![])),
    };
    let max_attempts = app.settings.failover.max_attempts;
    if !attempt.is_active() {
        fail_point(app, "before-final-job-update");
    }
    let Some(job) =
        app.store.update_job(&attempt.job_id, |job| job.observe_attempt(&attempt, max_attempts, now)).await?
    else {
        return Ok((None, vec![]));
    };
    ended(app, &job);
    let mut alerts = vec![];
    if job.changed && job.value.state == JobState::Error {
        alerts.push(Alert::job_failed(&job.value, job.value.last_error.as_ref(), now));
    }
    Ok((Some(job.value), alerts))
}

/// What a media service reported about one of its jobs (an event, or a read of the job).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// The service's job name.
    pub job_name: String,
    /// Its transform.
    pub transform: String,
    /// The state reported.
    pub state: JobState,
    /// When the service says it happened, if it says.
    pub at: Option<DateTime<Utc>>,
    /// The first output error, on errored jobs.
    pub error: Option<ErrorInfo>,
}

/// Applies a report about a job of `account` to its attempt, the account's counters and the logical job,
/// then scales MRUs down and starts publication as the change calls for. The one path for every event
/// source (Event Grid, MK.IO webhooks): safe to receive twice, late, or out of order, since an attempt only
/// moves forward and a job never follows a stale snapshot. Returns the job as stored (`None` for a job
/// this product did not submit) and the alerts to send.
pub async fn apply_report(
    app: &App,
    account: &AccountConfig,
    report: Report,
    now: DateTime<Utc>,
) -> Result<(Option<JobRecord>, Vec<Alert>), StoreError> {
    // A clock-skewed or missing event time must not put the record in the future.
    let at = report.at.filter(|t| *t <= now).unwrap_or(now);
    // `JobStateChange` events carry no outputs, so an Error may arrive without its code and retry hint,
    // which decide whether the job is retried. Read them from the job itself then (best effort).
    let error = match (&report.error, report.state) {
        (None, JobState::Error) => {
            app.media.get_job(account, &report.transform, &report.job_name).await.ok().flatten().and_then(|j| j.error())
        }
        (error, _) => error.clone(),
    };
    let change = app
        .store
        .change_attempt(&account.name, &report.job_name, |attempt| {
            attempt.observe(report.state, at, error.clone(), now)
        })
        .await?;
    let ended = matches!(&change, Some(AttemptChange::Applied { after, .. }) if !after.is_active());
    let finished = match &change {
        Some(AttemptChange::Applied { after, .. } | AttemptChange::Unchanged(after))
            if after.state == JobState::Finished =>
        {
            Some(after.clone())
        }
        _ => None,
    };
    let (job, mut alerts) = sync_job(app, change, now).await?;
    if ended && app.settings.mru.scale_down == crate::config::ScaleDown::OnFinal {
        scaling::scale_down_account(app, account).await?;
    }
    // After the MRU change, which must not wait on it. Publish where encoded and open the other regions'
    // rows; a repeated event finds them there.
    if let (Some(job), Some(attempt)) = (&job, &finished) {
        alerts.extend(crate::publish::on_job_finished(app, job, attempt, now).await?);
    }
    Ok((job, alerts))
}

/// What a cancel request found and did.
#[derive(Debug)]
pub enum Cancelled {
    /// The job had ended before, in this state (`Canceled` when an earlier request ended it).
    AlreadyEnded(JobState),
    /// The job waited for an account and is now `Canceled`.
    Ended(JobRecord),
    /// The job runs: its Media Services job was asked to cancel, and the job ends `Canceled` when the
    /// service reports it (or when the attempt is closed for any other reason than finishing).
    Requested(JobRecord),
}

/// Cancels a job at a caller's request (CancelJob). Idempotent: a second request finds the first one's
/// mark and only asks Media Services again. `None` if there is no such job.
///
/// The request is written on the job before anything is cancelled, so every writer that could start or
/// restart work sees it: a placement that creates the Media Services job after the cancel below cancels it
/// itself, the sweep's repair makes no job for a cancelled claim, and the sweep asks again when a cancel
/// did not take.
pub async fn cancel_job(app: &App, job_id: &str, now: DateTime<Utc>) -> Result<Option<Cancelled>, StoreError> {
    use crate::domain::Cancel;
    let decide = |job: &JobRecord| match job.cancel(now) {
        Cancel::Now(next) | Cancel::Requested(next) => Some(next),
        Cancel::Ended(_) | Cancel::AlreadyRequested => None,
    };
    let Some(stored) = app.store.update_job(job_id, decide).await? else { return Ok(None) };
    ended(app, &stored);
    let job = stored.value;
    if job.state.is_final() {
        if !stored.changed {
            return Ok(Some(Cancelled::AlreadyEnded(job.state)));
        }
        info!(job_id, "cancelled while waiting for an account");
        app.store.unmark_pending(job_id).await?;
        return Ok(Some(Cancelled::Ended(job)));
    }
    let Some(current) = job.attempts.iter().find(|a| a.number == job.attempt).cloned() else {
        return Err(StoreError::Corrupt(format!("job {job_id} has no record of its attempt {}", job.attempt)));
    };
    let Some(account) = app.settings.account(&current.account) else {
        warn!(job_id, account = %current.account, "the job's account is no longer configured; its cancel is recorded only");
        return Ok(Some(Cancelled::Requested(job)));
    };
    // Marked on the attempt too, so a sweep that reads the attempt back asks again if this cancel fails.
    let marked = app
        .store
        .change_attempt(&account.name, &current.ams_job_name, |a| {
            (!a.cancel_requested).then(|| AttemptRecord { cancel_requested: true, ..a.clone() })
        })
        .await?;
    let attempt = match marked {
        Some(AttemptChange::Applied { after, .. } | AttemptChange::Unchanged(after)) => after,
        // Claimed, its row not written yet: the placement under way (or the sweep's repair) sees the mark.
        None => current,
    };
    if attempt.is_active() {
        info!(job_id, account = %account.name, region = %account.region, ams_job = %attempt.ams_job_name, "cancelling at the caller's request");
        cancel_in_media_services(app, account, &attempt).await;
    }
    Ok(Some(Cancelled::Requested(job)))
}

/// Asks the service to cancel an attempt's job; a failure is logged, and the sweep asks again.
async fn cancel_in_media_services(app: &App, account: &AccountConfig, attempt: &AttemptRecord) {
    if let Err(error) = app.media.cancel_job(account, &attempt.transform, &attempt.ams_job_name).await {
        warn!(job_id = %attempt.job_id, account = %account.name, region = %account.region, %error, "could not cancel the job in Media Services yet; the sweep asks again");
    }
}

/// What draining an account did.
#[derive(Debug)]
pub struct Drained {
    /// The account's removal as stored afterwards.
    pub removal: Option<crate::domain::health::Removal>,
    /// False when it was drained already.
    pub newly: bool,
    /// Jobs moved off it (with evacuation).
    pub moved: usize,
    /// Alerts to send.
    pub alerts: Vec<Alert>,
}

/// Takes `account` out of rotation at an operator's request and keeps it out until an operator readmits
/// it. With `evacuate`, its jobs that are still waiting (not yet Processing) are moved elsewhere as stuck
/// jobs are; the ones already encoding finish there. Idempotent: draining again only evacuates again.
pub async fn drain_account(
    app: &App,
    account: &AccountConfig,
    by: &str,
    reason: &str,
    evacuate: bool,
    now: DateTime<Utc>,
) -> Result<Drained, StoreError> {
    let (health, drained) = app.store.update_health(|h| h.drain(&account.name, by, reason, now)).await?;
    let mut alerts = Vec::new();
    let mut moved = 0;
    if evacuate {
        let why = format!("drained by {by}: {reason}");
        for attempt in app.store.active_attempts(&account.name).await? {
            if matches!(attempt.state, JobState::Submitting | JobState::Queued | JobState::Scheduled) {
                alerts.extend(resubmit_stuck(app, account, &attempt, &why, now).await?);
                moved += 1;
            }
        }
    }
    if let Some(removal) = &drained {
        warn!(account = %account.name, region = %account.region, by, reason, moved, "account drained by an operator");
        let in_flight = app.store.counters(&account.name).await?.in_flight();
        alerts.insert(0, Alert::region_drained(&account.name, &account.region, removal, moved, in_flight));
    }
    let removal = health.removed.get(&account.name).cloned();
    Ok(Drained { removal, newly: drained.is_some(), moved, alerts })
}

/// Brings `account` back into rotation at an operator's request, cool-down or drain notwithstanding, once
/// a probe answers. `Ok(Err(why))` when the probe failed (it stays out); `Ok(Ok(None))` when it was in
/// rotation already.
pub async fn readmit_account(
    app: &App,
    account: &AccountConfig,
    by: &str,
    reason: &str,
    now: DateTime<Utc>,
) -> Result<Result<Option<Vec<Alert>>, MediaError>, StoreError> {
    if let Err(error) = probe(app, account).await {
        info!(account = %account.name, region = %account.region, %error, "operator readmit: the probe failed; the account stays out");
        return Ok(Err(error));
    }
    let (_, readmitted) =
        app.store.update_health(|h| h.readmit_by_operator(&account.name, by, reason, now).map(|n| (n, ()))).await?;
    if readmitted.is_none() {
        return Ok(Ok(None));
    }
    info!(account = %account.name, region = %account.region, by, reason, "account readmitted by an operator");
    // It may have lost or missed definitions while it was out: the next sweep checks it.
    crate::publish::definitions_due(app, account).await?;
    Ok(Ok(Some(vec![Alert::region_readmitted_by(&account.name, &account.region, by, reason, now)])))
}

/// Whether an account answers: a read of one of the transforms every account has.
pub async fn probe(app: &App, account: &AccountConfig) -> Result<(), MediaError> {
    let transform = app.settings.transforms.keys().next().map(String::as_str).unwrap_or_default();
    app.media.probe(account, transform).await
}

/// The request a job was accepted with.
fn request_of(job: &JobRecord) -> Result<SubmitRequest, StoreError> {
    serde_json::from_str(&job.request)
        .map_err(|e| StoreError::Corrupt(format!("job {}: unreadable request: {e}", job.job_id)))
}

/// Moves a stuck attempt elsewhere: closes it as superseded (only one sweep can win that), cancels its
/// Media Services job on a best-effort basis, and places the job again on another account.
pub async fn resubmit_stuck(
    app: &App,
    account: &AccountConfig,
    attempt: &AttemptRecord,
    reason: &str,
    now: DateTime<Utc>,
) -> Result<Vec<Alert>, StoreError> {
    // The marker goes first: if the process dies after the attempt is closed, the sweep still finds the job.
    app.store.mark_pending(&attempt.job_id, now).await?;
    let change = app.store.change_attempt(&account.name, &attempt.ams_job_name, |a| a.supersede(reason, now)).await?;
    if !matches!(change, Some(AttemptChange::Applied { .. })) {
        // Another sweep (or an event) got there first; it owns what happens next.
        return Ok(vec![]);
    }
    fail_point(app, "move-after-supersede");
    info!(job_id = %attempt.job_id, account = %account.name, region = %account.region, ams_job = %attempt.ams_job_name, reason, "moving a stuck job");
    if let Err(error) = app.media.cancel_job(account, &attempt.transform, &attempt.ams_job_name).await {
        warn!(job_id = %attempt.job_id, account = %account.name, region = %account.region, %error, "could not cancel the stuck job; it is superseded anyway");
    }
    let (job, mut alerts) = sync_job(app, change, now).await?;
    if let Some(job) = job.filter(|j| j.state == JobState::Pending) {
        alerts.extend(place_job(app, job, None, now).await?.alerts);
    }
    Ok(alerts)
}

/// Reads a quiet attempt back from Media Services and applies what it says: a lost event is made up for,
/// and an attempt whose Media Services job was never created (the process died between the two writes) is
/// created again under the same name. An attempt whose job has vanished after being created is closed and
/// its job placed again.
pub async fn reconcile(
    app: &App,
    account: &AccountConfig,
    attempt: &AttemptRecord,
    now: DateTime<Utc>,
) -> Result<Vec<Alert>, StoreError> {
    Ok(read_back(app, account, attempt, now).await?.0)
}

/// [`reconcile`], also telling why the job could not be read, if it could not: the sweep takes a region
/// that cannot even answer for a job it never reported started as evidence against it.
pub async fn read_back(
    app: &App,
    account: &AccountConfig,
    attempt: &AttemptRecord,
    now: DateTime<Utc>,
) -> Result<(Vec<Alert>, Option<MediaError>), StoreError> {
    if attempt.cancel_requested {
        // A cancel that did not take (the service was unreachable, or the request came first): ask again.
        cancel_in_media_services(app, account, attempt).await;
    }
    let found = match app.media.get_job(account, &attempt.transform, &attempt.ams_job_name).await {
        Ok(found) => found,
        Err(error) => {
            warn!(job_id = %attempt.job_id, account = %account.name, region = %account.region, %error, "could not read a quiet job; trying again next sweep");
            return Ok((vec![], Some(error)));
        }
    };
    Ok((apply_read(app, account, attempt, found, now).await?, None))
}

/// Applies what a read of the attempt's job found (see [`reconcile`]).
async fn apply_read(
    app: &App,
    account: &AccountConfig,
    attempt: &AttemptRecord,
    found: Option<crate::media::AmsJob>,
    now: DateTime<Utc>,
) -> Result<Vec<Alert>, StoreError> {
    let change = match found {
        Some(ams) => {
            let at = ams.last_modified.filter(|t| *t <= now).unwrap_or(now);
            let error = ams.error();
            app.store
                .change_attempt(&account.name, &attempt.ams_job_name, |a| {
                    Some(a.observe(ams.state, at, error.clone(), now).unwrap_or_else(|| a.heard(now)))
                })
                .await?
        }
        None if attempt.state == JobState::Submitting => {
            let Some(job) = app.store.get_job(&attempt.job_id).await?.map(|j| j.value) else { return Ok(vec![]) };
            if job.cancel_requested_at.is_some() {
                // Cancelled before its Media Services job was made: make none, and end the attempt (its job
                // then ends Canceled).
                let reason = "cancelled before its Media Services job was created";
                let change = app
                    .store
                    .change_attempt(&account.name, &attempt.ams_job_name, |a| a.supersede(reason, now))
                    .await?;
                return Ok(sync_job(app, change, now).await?.1);
            }
            let request = request_of(&job)?;
            info!(job_id = %attempt.job_id, account = %account.name, region = %account.region, ams_job = %attempt.ams_job_name, "creating a job that was recorded but never created");
            if let Err(error) = create_in_media_services(app, account, attempt, &request).await {
                warn!(job_id = %attempt.job_id, account = %account.name, region = %account.region, %error, "could not create the recorded job; trying again next sweep");
                return Ok(vec![]);
            }
            app.store
                .change_attempt(&account.name, &attempt.ams_job_name, |a| {
                    Some(a.observe(JobState::Queued, now, None, now).unwrap_or_else(|| a.heard(now)))
                })
                .await?
        }
        None => return resubmit_stuck(app, account, attempt, "its Media Services job no longer exists", now).await,
    };
    let ended = matches!(&change, Some(AttemptChange::Applied { after, .. }) if !after.is_active());
    let (job, mut alerts) = sync_job(app, change, now).await?;
    if ended && app.settings.mru.scale_down == crate::config::ScaleDown::OnFinal {
        scaling::scale_down_account(app, account).await?;
    }
    if let Some(job) = job.filter(|j| j.state == JobState::Pending) {
        alerts.extend(place_job(app, job, None, now).await?.alerts);
    }
    Ok(alerts)
}

/// An index row without its job row is removed only after this long: the job insert may be under way.
pub const ORPHAN_INDEX_AGE: chrono::Duration = chrono::Duration::minutes(5);

/// What the sweep's repair did to one open job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Repair {
    /// Nothing was wrong (the job moved on between the sweep's reads).
    Sound,
    /// A final job left in the open-jobs index: the index row was removed.
    Closed,
    /// A Pending job without its marker: the marker was written.
    Marked,
    /// The job's current attempt had ended but the job did not say so: the job was brought in line.
    Resynced,
    /// The job was claimed for an attempt whose row was never written: the row was written and the job
    /// created in Media Services under its deterministic name.
    Reopened,
}

impl Repair {
    /// Whether something was actually broken.
    pub fn repaired(self) -> bool {
        !matches!(self, Repair::Sound | Repair::Closed)
    }
}

/// Repairs an open job the sweep found with neither an active attempt nor a pending marker (DESIGN
/// invariant 6), from its own rows: a final job leaves the index, a Pending one gets its marker back, a job
/// whose attempt ended follows it, and a claim whose attempt row is missing (the instance died between
/// the two writes) gets the row it would have written. Every step is idempotent and guarded, so several
/// sweeps, or a placement still under way, may run it at once.
pub async fn repair_job(
    app: &App,
    job_id: &str,
    indexed_since: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Result<(Repair, Vec<Alert>), StoreError> {
    let Some(job) = app.store.get_job(job_id).await?.map(|j| j.value) else {
        // Indexed before its insert, which may still be under way; long after, the insert never happened (the
        // caller got no answer), and the index row goes.
        if indexed_since.is_none_or(|since| now - since > ORPHAN_INDEX_AGE) {
            app.store.forget_open(job_id).await?;
            return Ok((Repair::Closed, vec![]));
        }
        return Ok((Repair::Sound, vec![]));
    };
    if job.state.is_final() {
        app.store.close_job(&job).await?;
        return Ok((Repair::Closed, vec![]));
    }
    if job.state == JobState::Pending {
        app.store.mark_pending(job_id, now).await?;
        return Ok((Repair::Marked, vec![]));
    }
    let Some(claimed) = job.attempts.iter().find(|a| a.number == job.attempt).cloned() else {
        return Err(StoreError::Corrupt(format!("job {job_id} has no record of its attempt {}", job.attempt)));
    };
    let Some(account) = app.settings.account(&claimed.account) else {
        warn!(job_id, account = %claimed.account, "the job's account is no longer configured; it cannot be repaired");
        return Ok((Repair::Sound, vec![]));
    };
    match app.store.get_attempt(&account.name, &claimed.ams_job_name).await? {
        Some(attempt) if attempt.is_active() => Ok((Repair::Sound, vec![])),
        Some(ended) => {
            info!(job_id, account = %account.name, region = %account.region, state = %ended.state, "bringing a job in line with its ended attempt");
            let (job, mut alerts) = sync_job(app, Some(AttemptChange::Unchanged(ended)), now).await?;
            if let Some(job) = job.filter(|j| j.state == JobState::Pending) {
                alerts.extend(place_job(app, job, None, now).await?.alerts);
            }
            Ok((Repair::Resynced, alerts))
        }
        None => {
            warn!(job_id, account = %account.name, region = %account.region, ams_job = %claimed.ams_job_name, "the job was claimed but its attempt was never recorded; recording it now");
            app.store.open_attempt(&claimed).await?;
            fail_point(app, "repair-after-open");
            let alerts = reconcile(app, account, &claimed, now).await?;
            Ok((Repair::Reopened, alerts))
        }
    }
}
