//! OnJobStateChange (Event Grid): applies Media Services job events to the attempt, its account's counters
//! and the logical job. Every event is safe to receive twice, late, or out of order. Events that cannot be
//! used are logged and acknowledged, so Event Grid does not retry them for a day.

use super::with_alerts;
use crate::config::{AccountConfig, ScaleDown};
use crate::domain::{Incoming, JobEvent, JobState};
use crate::invoke::{InvokeRequest, InvokeResponse};
use crate::store::{AttemptChange, StoreError};
use crate::workflow::sync_job;
use crate::App;
use crate::{publish, scaling};
use chrono::Utc;
use std::future::Future;
use std::pin::Pin;
use tracing::{info, warn, Instrument};

/// Runs one OnJobStateChange invocation.
pub fn run(
    app: &App,
    req: InvokeRequest,
) -> Pin<Box<dyn Future<Output = Result<InvokeResponse, StoreError>> + Send + '_>> {
    Box::pin(async move {
        let Some(event) = req.input("eventGridEvent") else {
            warn!("invocation without an eventGridEvent input; acknowledged");
            return Ok(InvokeResponse::default().log("no eventGridEvent input; ignored"));
        };
        match Incoming::parse(&event) {
            Err(unusable) => {
                warn!(%unusable, "acknowledged an event that cannot be used");
                Ok(InvokeResponse::default().log(unusable.to_string()))
            }
            Ok(Incoming::Ignored { event_type }) => {
                Ok(InvokeResponse::default().log(format!("{event_type}: nothing to do")))
            }
            Ok(Incoming::Job(event)) => apply(app, *event).await,
        }
    })
}

async fn apply(app: &App, event: JobEvent) -> Result<InvokeResponse, StoreError> {
    // The topic names the account for Media Services (its system topic) and, for Ravnur, is the custom topic
    // configured as the account's `eventTopic`. A topic no account is mapped to may be another deployment's
    // or a misrouted subscription: retrying it would not help, so it is acknowledged.
    let Some(account) = app.settings.account_for_topic(&event.topic) else {
        warn!(topic = %event.topic, ams_job = %event.job_name, event_id = %event.id, "event from a topic no configured account is mapped to; acknowledged");
        return Ok(InvokeResponse::default().log(format!("topic {} is not mapped to an account; ignored", event.topic)));
    };
    let span = tracing::info_span!("event", account = %account.name, region = %account.region, ams_job = %event.job_name, event_id = %event.id);
    apply_to_account(app, account, event).instrument(span).await
}

async fn apply_to_account(app: &App, account: &AccountConfig, event: JobEvent) -> Result<InvokeResponse, StoreError> {
    let now = Utc::now();
    // A clock-skewed or missing event time must not put the record in the future.
    let at = event.event_time.filter(|t| *t <= now).unwrap_or(now);
    // `JobStateChange` events carry no outputs, so an Error may arrive without its code and retry hint,
    // which decide whether the job is retried. Read them from the job itself then (best effort).
    let error = match (&event.error, event.state) {
        (None, JobState::Error) => {
            app.media.get_job(account, &event.transform, &event.job_name).await.ok().flatten().and_then(|j| j.error())
        }
        (error, _) => error.clone(),
    };
    let change = app
        .store
        .change_attempt(&account.name, &event.job_name, |attempt| attempt.observe(event.state, at, error.clone(), now))
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
    if ended && app.settings.mru.scale_down == ScaleDown::OnFinal {
        scaling::scale_down_account(app, account).await?;
    }
    // After the MRU change, which must not wait on it. Publish where encoded and open the other regions'
    // rows; a repeated event finds them there.
    if let (Some(job), Some(attempt)) = (&job, &finished) {
        alerts.extend(publish::on_job_finished(app, job, attempt, now).await?);
    }
    let response = match job {
        None => {
            warn!(state = %event.state, "event for a job this product did not submit; acknowledged");
            InvokeResponse::default().log(format!("unknown job {} on {}; ignored", event.job_name, account.name))
        }
        Some(job) => {
            info!(job_id = %job.job_id, state = %event.state, job_state = %job.state, "event applied");
            InvokeResponse::default().log(format!("job {}: {} reported, job is {}", job.job_id, event.state, job.state))
        }
    };
    Ok(with_alerts(response, &alerts))
}
