//! The steps that combine the store and Media Services under the domain's rules, shared by the functions:
//! placing a job on an account, and applying what Media Services reports about an attempt.

use crate::config::AccountConfig;
use crate::domain::{rotation_order, Alert, AttemptRecord, ErrorInfo, JobRecord, JobState, SubmitRequest};
use crate::media::{JobSpec, MediaError};
use crate::scaling;
use crate::store::{AttemptChange, StoreError};
use crate::App;
use chrono::{DateTime, Utc};
use std::collections::BTreeMap;
use tracing::{info, warn};

/// Where a placement left the job.
#[derive(Debug)]
pub struct Placement {
    /// The job as stored afterwards.
    pub job: JobRecord,
    /// Alerts to send.
    pub alerts: Vec<Alert>,
}

/// Places a Pending job on an account in rotation, trying them in random order; transient failures move on
/// to the next account. When none takes it the job stays Pending and an alert says so. If another writer
/// changed the job meanwhile (a concurrent retry or sweep), that writer owns the placement and the job is
/// returned as it stands.
pub async fn place_job(app: &App, mut job: JobRecord, now: DateTime<Utc>) -> Result<Placement, StoreError> {
    let request: SubmitRequest = serde_json::from_str(&job.request)
        .map_err(|e| StoreError::Corrupt(format!("job {}: unreadable request: {e}", job.job_id)))?;
    let health = app.store.health().await?;
    let names: Vec<&str> = app.settings.accounts.iter().map(|a| a.name.as_str()).collect();
    let order = rotation_order(&health.in_rotation(names), &mut rand::rng());
    let outputs = app.settings.transforms.get(&job.transform).copied().unwrap_or(1);
    let mut tried = Vec::new();

    for name in order {
        let Some(account) = app.settings.account(name) else { continue };
        if job.state != JobState::Pending {
            break;
        }
        let expected_attempt = job.attempt;
        let (claimed, attempt) = job.begin_attempt(&account.name, &account.region, outputs, now);
        let stored = app
            .store
            .update_job(&job.job_id, |current| {
                (current.state == JobState::Pending && current.attempt == expected_attempt).then(|| claimed.clone())
            })
            .await?
            .ok_or_else(|| StoreError::Corrupt(format!("job {} vanished during placement", job.job_id)))?;
        if stored != claimed {
            return Ok(Placement { job: stored, alerts: vec![] });
        }
        app.store.open_attempt(&attempt).await?;
        tried.push(account.name.clone());
        let saturated = scaling::scale_up_for(app, account, attempt.units(), now).await?;

        match create_in_media_services(app, account, &attempt, &request).await {
            Ok(()) => {
                info!(job_id = %job.job_id, account = %account.name, region = %account.region, ams_job = %attempt.ams_job_name, saturated, "job submitted");
                let change = app
                    .store
                    .change_attempt(&account.name, &attempt.ams_job_name, |a| {
                        // An event may already have moved the attempt past Queued; then only the flag changes.
                        let mut next = a.observe(JobState::Queued, now, None, now).unwrap_or_else(|| a.clone());
                        next.mru_saturated = saturated;
                        (next != *a).then_some(next)
                    })
                    .await?;
                let job = sync_job(app, change, now).await?.unwrap_or(claimed);
                return Ok(Placement { job, alerts: vec![] });
            }
            Err(error) => {
                warn!(job_id = %job.job_id, account = %account.name, region = %account.region, %error, "submission failed");
                let info = ErrorInfo {
                    code: "SubmitFailed".to_owned(),
                    message: error.to_string(),
                    category: "Account".to_owned(),
                    retry: if error.is_transient() { "MayRetry" } else { "DoNotRetry" }.to_owned(),
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
                if error.is_transient() {
                    // The create may have reached the service before the failure; cancel any job it made so it does
                    // not run unaccounted for. Best effort: the attempt is already closed either way.
                    let _ = app.media.cancel_job(account, &attempt.transform, &attempt.ams_job_name).await;
                }
                let Some(after) = sync_job(app, change, now).await? else { break };
                job = after;
                if let MediaError::Rejected { .. } = error {
                    // The service refused the request itself: it would fail the same way everywhere.
                    let failed = app.store.update_job(&job.job_id, |j| j.fail(info.clone(), now)).await?;
                    return Ok(Placement { job: failed.unwrap_or(job), alerts: vec![] });
                }
            }
        }
    }

    let alerts = if job.state == JobState::Pending {
        warn!(job_id = %job.job_id, tried = ?tried, "no account could take the job; kept as Pending");
        vec![Alert::job_pending(&job.job_id, &tried, now)]
    } else {
        vec![]
    };
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
    for asset in &attempt.output_assets {
        app.media.ensure_asset(account, asset).await?;
    }
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

/// Brings the logical job in line with one of its attempts after a change. Returns the job as stored, or
/// `None` when the attempt is unknown. Runs even when the attempt itself did not change, so a crash between
/// the two writes is repaired by the next delivery of the same event.
pub async fn sync_job(
    app: &App,
    change: Option<AttemptChange>,
    now: DateTime<Utc>,
) -> Result<Option<JobRecord>, StoreError> {
    let attempt = match change {
        Some(AttemptChange::Applied { after, .. }) => after,
        Some(AttemptChange::Unchanged(current)) => current,
        None => return Ok(None),
    };
    app.store.update_job(&attempt.job_id, |job| job.observe_attempt(&attempt, now)).await
}
