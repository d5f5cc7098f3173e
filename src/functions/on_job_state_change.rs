//! OnJobStateChange (Event Grid): applies Media Services job events to the attempt, its account's counters
//! and the logical job. Every event is safe to receive twice, late, or out of order. Events that cannot be
//! used are logged and acknowledged, so Event Grid does not retry them for a day.

use super::with_alerts;
use crate::config::AccountConfig;
use crate::domain::{Incoming, JobEvent};
use crate::invoke::{InvokeRequest, InvokeResponse};
use crate::store::StoreError;
use crate::workflow::{apply_report, Report};
use crate::App;
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
    let report = Report {
        job_name: event.job_name.clone(),
        transform: event.transform.clone(),
        state: event.state,
        at: event.event_time,
        error: event.error.clone(),
    };
    let (job, alerts) = apply_report(app, account, report, Utc::now()).await?;
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
