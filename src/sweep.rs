//! The periodic pass (SweepStuckJobs), following the guidance's "separate process that periodically looks
//! at your records of the jobs", and going further: it re-admits accounts whose cool-down has passed once a
//! probe succeeds, reads quiet attempts back from Media Services, takes accounts with stuck jobs out of
//! rotation, moves stuck jobs elsewhere, places pending jobs, lowers MRUs in periodic mode, and says so
//! when no account is left. Then it keeps the accounts' definitions in line, moves video-on-demand
//! publications on (`crate::publish`), and delivers outcome notifications still due (`crate::notify`).
//!
//! It is safe beside itself and beside events: every decision is a pure function of rows it just read and
//! `now`, and every change is a compare-and-swap, so of two sweeps only one removes an account, moves a job
//! or places it, and only that one sends the alert.

use crate::config::{AccountConfig, ScaleDown, StuckPolicy};
use crate::domain::credential::CredentialStatus;
use crate::domain::sweep::{evacuate, plan_account, removable_for_stuck, AccountPlan, AccountView, Thresholds};
use crate::domain::{Alert, AttemptRecord, HealthRecord, JobState};
use crate::store::{StoreError, SweepSummary};
use crate::workflow::{
    cooldown, place_job, read_back, reconcile, repair_job, resubmit_stuck, Repair, ORPHAN_INDEX_AGE,
};
use crate::{notify, publish, scaling, App};
use chrono::{DateTime, Utc};
use std::collections::BTreeSet;
use tracing::{info, warn};

/// What one sweep did.
#[derive(Debug, Default)]
pub struct SweepReport {
    /// Alerts to send.
    pub alerts: Vec<Alert>,
    /// One line per thing done, for the invocation's log.
    pub log: Vec<String>,
    /// Open jobs found without an active attempt or a pending marker, and repaired.
    pub repaired: u32,
    /// Open jobs in the index when the sweep read it.
    pub open: u32,
}

/// Runs one sweep.
pub async fn sweep(app: &App, now: DateTime<Utc>) -> Result<SweepReport, StoreError> {
    let mut report = SweepReport::default();
    readmit(app, now, &mut report).await?;
    // Lost events first, so what follows judges the attempts as they really are.
    let mut judged = Vec::with_capacity(app.settings.accounts.len());
    let mut reconciled = false;
    let mut unreachable = BTreeSet::new();
    for account in &app.settings.accounts {
        let read = plan(app, account, now, false).await?;
        reconciled |= reconcile_account(app, account, &read.plan.reconcile, now, &mut report).await?;
        let (confirmed, down) = confirm_account(app, account, &read.plan.confirm, now, &mut report).await?;
        reconciled |= confirmed;
        if down {
            unreachable.insert(account.name.clone());
        }
        judged.push(read);
    }
    // Reconciling can change attempts on any account (a vanished job is placed elsewhere): read again then.
    if reconciled || !unreachable.is_empty() {
        judged.clear();
        for account in &app.settings.accounts {
            judged.push(plan(app, account, now, unreachable.contains(&account.name)).await?);
        }
    }
    // Every open job is accounted for by an active attempt or a pending marker; repair those that are not.
    let active: BTreeSet<&str> = judged.iter().flat_map(|j| j.active_jobs.iter().map(String::as_str)).collect();
    let pending = repair_open_jobs(app, &active, now, &mut report).await?;
    // Every account's verdict before any job moves, so no job is moved onto an account this sweep removes.
    let kept = remove_stuck(app, &judged, now, &mut report).await?;
    let health = app.store.health().await?;
    let plans: Vec<_> = app
        .settings
        .accounts
        .iter()
        .zip(judged)
        // An account kept despite stuck jobs is the best there is: its jobs would only move onto it again.
        .map(|(account, read)| {
            let moves = if kept.contains(&account.name) { vec![] } else { moves(app, account, read, &health) };
            (account, moves)
        })
        .collect();
    for (account, resubmit) in plans {
        for (attempt, reason) in &resubmit {
            report.alerts.extend(resubmit_stuck(app, account, attempt, reason, now).await?);
        }
        if !resubmit.is_empty() {
            report.log.push(format!("{}: moved {} stuck job(s)", account.name, resubmit.len()));
        }
        // A safety net: an increase a submission gave up on (contention, an unreachable MRU endpoint) is made
        // here; with nothing missing this is one read of the counter row.
        scaling::scale_up_for(app, account, 0, now).await?;
        if app.settings.mru.scale_down == ScaleDown::Periodic {
            scaling::scale_down_account(app, account).await?;
        }
    }
    let pending = place_pending(app, pending, now, &mut report).await?;

    let names: Vec<&str> = app.settings.accounts.iter().map(|a| a.name.as_str()).collect();
    let repeat = app.settings.failover.alert_repeat;
    // Both alerts' memories in one write of the health row (one read when neither is due).
    let (health, alerted) = app
        .store
        .update_health(|h| {
            let empty = h.alert_empty(names.iter().copied(), now, repeat);
            match empty.as_ref().unwrap_or(h).alert_last_account(names.iter().copied()) {
                Some((next, last)) => Some((next, (empty.is_some(), last))),
                None => empty.map(|next| (next, (true, None))),
            }
        })
        .await?;
    let (empty, last) = alerted.unwrap_or((false, None));
    if empty {
        warn!(pending, "no account is in rotation");
        report.alerts.push(Alert::rotation_empty(names.len(), pending, now));
    }
    if let Some(account) = last.and_then(|name| app.settings.account(&name)) {
        warn!(account = %account.name, region = %account.region, "only one account is left in rotation");
        report.alerts.push(Alert::last_account(&account.name, &account.region, names.len(), now));
    }
    // Publication last, so it never delays failover: definitions first (locators need their policies).
    // Both take the rotation from the health row as just read or written.
    let in_rotation: BTreeSet<&str> = health.in_rotation(names.iter().copied()).into_iter().collect();
    publish::sync_definitions(app, &in_rotation, now, &mut report).await?;
    publish::advance_publications(app, &in_rotation, now, &mut report).await?;
    // After every call of the sweep, so a refusal any of them met is reported in this sweep.
    check_credentials(app, now, &mut report).await?;
    // Notifications after that: a caller's slow callback never delays failover or publication, and a
    // publication ended above gets its Published message in this sweep.
    let (alerts, notifications) = notify::drain(app, now).await?;
    report.alerts.extend(alerts);
    if notifications > 0 {
        report.log.push(format!("{notifications} job(s) with notifications still to deliver"));
    }
    let summary = SweepSummary {
        at: now,
        repaired: report.repaired,
        open: report.open,
        pending: u32::try_from(pending).unwrap_or(u32::MAX),
        notifications: u32::try_from(notifications).unwrap_or(u32::MAX),
    };
    app.store.record_sweep(&summary).await?;
    Ok(report)
}

/// Tells operators, once per credential, about an account whose own API token has expired or was refused:
/// its calls fail over to other regions, but only a person can fix it, and it should not look like a
/// region that merely went quiet.
async fn check_credentials(app: &App, now: DateTime<Utc>, report: &mut SweepReport) -> Result<(), StoreError> {
    for account in &app.settings.accounts {
        let Some(mkio) = &account.mkio else { continue };
        let refused = app.media.take_token_refusal(account);
        let problem = match (CredentialStatus::at(mkio.token.expires_at, now), refused) {
            (status @ CredentialStatus::Expired { .. }, _) => status.warning(&mkio.token.setting),
            (_, Some(refusal)) => Some(format!(
                "MK.IO refused the API token in {} with {}: {}",
                mkio.token.setting, refusal.status, refusal.message
            )),
            _ => None,
        };
        let Some(problem) = problem else { continue };
        let (_, alerted) = app
            .store
            .update_health(|h| h.alert_credential(&account.name, &mkio.token.fingerprint).map(|n| (n, ())))
            .await?;
        if alerted.is_some() {
            warn!(account = %account.name, region = %account.region, %problem, "the account's API token does not work");
            report.log.push(format!("{}: {problem}", account.name));
            report.alerts.push(Alert::credential_refused(
                &account.name,
                &account.region,
                &mkio.token.setting,
                &problem,
                now,
            ));
        }
    }
    Ok(())
}

/// Brings back accounts whose cool-down has passed, once an ARM probe succeeds.
async fn readmit(app: &App, now: DateTime<Utc>, report: &mut SweepReport) -> Result<(), StoreError> {
    let health = app.store.health().await?;
    for name in health.due_for_readmission(now) {
        let Some(account) = app.settings.account(&name) else { continue };
        if let Err(error) = crate::workflow::probe(app, account).await {
            info!(account = %account.name, region = %account.region, %error, "probe failed; the account stays out of rotation");
            report.log.push(format!("{}: probe failed ({error}); still out", account.name));
            continue;
        }
        let out_since = health.removed.get(&name).map_or(now, |r| r.since);
        let (_, readmitted) = app.store.update_health(|h| h.readmit(&name, now).map(|n| (n, ()))).await?;
        if readmitted.is_some() {
            info!(account = %account.name, region = %account.region, "account back in rotation");
            report.log.push(format!("{}: back in rotation", account.name));
            report.alerts.push(Alert::region_readmitted(&account.name, &account.region, out_since, now));
            // It may have lost or missed definitions while it was out: check it in this sweep.
            publish::definitions_due(app, account).await?;
        }
    }
    Ok(())
}

fn thresholds(app: &App) -> Thresholds {
    let failover = &app.settings.failover;
    Thresholds {
        stuck_min_jobs: failover.stuck_min_jobs,
        wait_grace: (failover.stuck_policy == StuckPolicy::Wait).then_some(failover.stuck_grace),
        reconcile_after: failover.reconcile_after,
    }
}

/// One account's rows as the sweep judged them.
struct Judged {
    /// The verdict on its active attempts.
    plan: AccountPlan,
    /// Its jobs still waiting to start (moved if it is out of rotation).
    waiting: Vec<AttemptRecord>,
    /// Its jobs in flight, for the removal alert.
    in_flight: u32,
    /// The jobs its active attempts belong to.
    active_jobs: Vec<String>,
}

/// Reads the account's counter row and active attempts, and judges them; `unreachable` if reading its jobs
/// failed in this sweep.
async fn plan(app: &App, account: &AccountConfig, now: DateTime<Utc>, unreachable: bool) -> Result<Judged, StoreError> {
    let row = app.store.account(&account.name).await?;
    let attempts = app.store.active_attempts(&account.name).await?;
    let view = AccountView {
        managed: account.scales_mru(),
        counters: row.counters,
        mru_current: row.mru.as_ref().map(|m| m.current),
        stuck_after: account.stuck_after,
        scheduled_events: account.provider.capabilities().scheduled_events,
        unreachable,
        attempts: &attempts,
    };
    Ok(Judged {
        plan: plan_account(&view, &thresholds(app), now),
        waiting: evacuate(&view),
        in_flight: row.counters.in_flight(),
        active_jobs: attempts.iter().map(|a| a.job_id.clone()).collect(),
    })
}

/// Reads quiet attempts back from Media Services; whether there were any.
async fn reconcile_account(
    app: &App,
    account: &AccountConfig,
    quiet: &[AttemptRecord],
    now: DateTime<Utc>,
    report: &mut SweepReport,
) -> Result<bool, StoreError> {
    for attempt in quiet {
        report.alerts.extend(reconcile(app, account, attempt, now).await?);
        // A lost Finished event: the job's publication starts here instead.
        report.alerts.extend(publish::after_reconcile(app, account, attempt, now).await?);
    }
    if !quiet.is_empty() {
        report.log.push(format!("{}: read {} quiet job(s) from Media Services", account.name, quiet.len()));
    }
    Ok(!quiet.is_empty())
}

/// Reads the jobs that have not started past the threshold on an account without Scheduled events, and
/// applies what the reads say. Returns whether any was read, and whether a read failed for a reason of the
/// account's (not the product's own budget): then those jobs count as stuck without confirmation.
async fn confirm_account(
    app: &App,
    account: &AccountConfig,
    waiting: &[AttemptRecord],
    now: DateTime<Utc>,
    report: &mut SweepReport,
) -> Result<(bool, bool), StoreError> {
    let mut down = false;
    for attempt in waiting {
        let (alerts, failed) = read_back(app, account, attempt, now).await?;
        report.alerts.extend(alerts);
        down |= failed.is_some_and(|e| e.is_account_fault());
        // It may have run and finished with both webhooks lost: its publication starts here then.
        report.alerts.extend(publish::after_reconcile(app, account, attempt, now).await?);
    }
    if !waiting.is_empty() {
        report.log.push(format!("{}: read {} job(s) that had not started", account.name, waiting.len()));
    }
    Ok((!waiting.is_empty(), down))
}

/// Takes accounts with enough stuck jobs out of rotation, as long as another account in rotation is not
/// stuck (`removable_for_stuck`): a region is judged against the others, and the last ones stay. Returns
/// the accounts kept in rotation despite stuck jobs.
async fn remove_stuck(
    app: &App,
    judged: &[Judged],
    now: DateTime<Utc>,
    report: &mut SweepReport,
) -> Result<BTreeSet<String>, StoreError> {
    let mut kept = BTreeSet::new();
    let stuck: Vec<&str> = app
        .settings
        .accounts
        .iter()
        .zip(judged)
        .filter(|(_, read)| read.plan.remove_because.is_some())
        .map(|(account, _)| account.name.as_str())
        .collect();
    if stuck.is_empty() {
        return Ok(kept);
    }
    let health = app.store.health().await?;
    let in_rotation = health.in_rotation(app.settings.accounts.iter().map(|a| a.name.as_str()));
    let removable = removable_for_stuck(&in_rotation, &stuck);
    for (account, read) in app.settings.accounts.iter().zip(judged) {
        if removable.contains(&account.name.as_str()) {
            remove_if_stuck(app, account, read, now, report).await?;
        } else if in_rotation.contains(&account.name.as_str()) && stuck.contains(&account.name.as_str()) {
            warn!(account = %account.name, region = %account.region, stuck = read.plan.stuck, "jobs look stuck, but no other account in rotation is doing better; the account stays in rotation");
            report.log.push(format!(
                "{}: {} stuck job(s), kept: no other account in rotation is doing better",
                account.name, read.plan.stuck
            ));
            kept.insert(account.name.clone());
        }
    }
    Ok(kept)
}

/// Takes the account out of rotation for its stuck jobs.
async fn remove_if_stuck(
    app: &App,
    account: &AccountConfig,
    read: &Judged,
    now: DateTime<Utc>,
    report: &mut SweepReport,
) -> Result<(), StoreError> {
    let Some(reason) = &read.plan.remove_because else { return Ok(()) };
    let (_, removal) = app.store.update_health(|h| h.remove(&account.name, reason, now, cooldown(app))).await?;
    if let Some(removal) = removal {
        warn!(account = %account.name, region = %account.region, %reason, until = %removal.until, "account removed from rotation");
        report.log.push(format!("{}: removed ({reason})", account.name));
        report.alerts.push(Alert::region_removed(
            &account.name,
            &account.region,
            &removal,
            read.plan.stuck,
            read.in_flight,
        ));
    }
    Ok(())
}

/// The attempts to move off the account now, with why: its stuck ones, and, under `STUCK_POLICY=resubmit`,
/// every job still waiting to start if it is out of rotation.
fn moves(app: &App, account: &AccountConfig, read: Judged, health: &HealthRecord) -> Vec<(AttemptRecord, String)> {
    let mut moves: Vec<(AttemptRecord, String)> = read
        .plan
        .resubmit
        .into_iter()
        .map(|a| {
            let reason =
                format!("waited longer than {}s in {} on {}", account.stuck_after.as_secs(), a.state, account.name);
            (a, reason)
        })
        .collect();
    let evacuate =
        app.settings.failover.stuck_policy == StuckPolicy::Resubmit && health.removed.contains_key(&account.name);
    if evacuate {
        for attempt in read.waiting {
            if !moves.iter().any(|(m, _)| m.ams_job_name == attempt.ams_job_name) {
                let reason = format!("{} is out of rotation and the job had not started there", account.name);
                moves.push((attempt, reason));
            }
        }
    }
    moves
}

/// Repairs the open jobs that neither an active attempt (`active`, as this sweep read them) nor a pending
/// marker accounts for. The index and the attempts are read at different moments, so a job that moved on
/// in between looks suspect too; `repair_job` reads it and finds it sound. The cost follows open work.
/// Returns the pending markers, with those the repair wrote, for placement.
async fn repair_open_jobs(
    app: &App,
    active: &BTreeSet<&str>,
    now: DateTime<Utc>,
    report: &mut SweepReport,
) -> Result<Vec<(String, Option<DateTime<Utc>>)>, StoreError> {
    let index = app.store.index().await?;
    let mut marked = Vec::new();
    let pending: BTreeSet<&str> = index.pending.iter().map(|(id, _)| id.as_str()).collect();
    for (job_id, since) in &index.open {
        if active.contains(job_id.as_str()) || pending.contains(job_id.as_str()) {
            continue;
        }
        let (repair, alerts) = repair_job(app, job_id, *since, now).await?;
        report.alerts.extend(alerts);
        if repair.repaired() {
            report.repaired += 1;
            report.log.push(format!("{job_id}: repaired ({repair:?})"));
        }
        if repair == Repair::Marked {
            marked.push((job_id.clone(), Some(now)));
        }
    }
    report.open = u32::try_from(index.open.len()).unwrap_or(u32::MAX);
    Ok(index.pending.into_iter().chain(marked).collect())
}

/// Places every job marked pending (as the sweep read the markers; one marked since is placed by the next
/// sweep); removes markers whose job no longer needs one, once it has checked that the job is accounted
/// for. Returns how many jobs are still waiting.
async fn place_pending(
    app: &App,
    pending: Vec<(String, Option<DateTime<Utc>>)>,
    now: DateTime<Utc>,
    report: &mut SweepReport,
) -> Result<usize, StoreError> {
    let (mut placed, mut waiting) = (0, 0);
    for (job_id, since) in pending {
        match app.store.get_job(&job_id).await? {
            Some(job) if job.value.state == JobState::Pending => {
                let placement = place_job(app, job.value, Some(job.etag), now).await?;
                if placement.job.state == JobState::Pending {
                    waiting += 1;
                } else {
                    placed += 1;
                }
                report.alerts.extend(placement.alerts);
            }
            Some(_) => {
                // Claimed, perhaps by an instance that died before recording the attempt: check the job as
                // soon as its marker is gone, so removing the marker never strands it. (If the job went back to
                // Pending meanwhile, the check marks it again; a crash in between is caught by the index.)
                app.store.unmark_pending(&job_id).await?;
                let (repair, alerts) = repair_job(app, &job_id, since, now).await?;
                report.alerts.extend(alerts);
                if repair.repaired() {
                    report.repaired += 1;
                    report.log.push(format!("{job_id}: repaired ({repair:?})"));
                }
            }
            None if since.is_none_or(|s| now - s > ORPHAN_INDEX_AGE) => app.store.unmark_pending(&job_id).await?,
            None => {}
        }
    }
    if placed > 0 {
        report.log.push(format!("placed {placed} pending job(s)"));
    }
    if waiting > 0 {
        warn!(waiting, placed, "jobs are still waiting for an account");
        report.log.push(format!("{waiting} job(s) still waiting for an account"));
    }
    Ok(waiting)
}
