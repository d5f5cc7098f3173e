//! SubmitJob (HTTP `POST /api/jobs`): validate, record the job durably, place it on an account, answer 202.

use super::with_alerts;
use crate::domain::{JobRecord, JobState, SubmitRequest};
use crate::invoke::{HttpRequestData, HttpResponseData, InvokeRequest, InvokeResponse};
use crate::store::StoreError;
use crate::workflow::place_job;
use crate::App;
use chrono::{DateTime, Utc};
use serde_json::json;
use std::future::Future;
use std::pin::Pin;
use tracing::Instrument;

/// Runs one SubmitJob invocation.
pub fn run(
    app: &App,
    req: InvokeRequest,
) -> Pin<Box<dyn Future<Output = Result<InvokeResponse, StoreError>> + Send + '_>> {
    Box::pin(async move {
        let http = HttpRequestData::from_invocation(&req, "req").unwrap_or_default();
        let now = Utc::now();
        let request = match SubmitRequest::parse(http.body.as_deref(), &app.settings.request_rules(), &mut rand::rng())
        {
            Ok(request) => request,
            Err(bad) => {
                tracing::info!(code = bad.code, "refused a job request");
                let res = HttpResponseData::error(bad.status, bad.code, &bad.message);
                return Ok(InvokeResponse::default().output("res", res.to_value()).log(format!("refused: {bad}")));
            }
        };
        let job = JobRecord::accept(&request, now);
        let span = tracing::info_span!("job", job_id = %job.job_id);
        accept(app, job, now).instrument(span).await
    })
}

/// Records the job durably, then places it. The job is indexed as open and pending before its row is
/// written, so a job whose placement is interrupted is found and placed by the sweep.
async fn accept(app: &App, job: JobRecord, now: DateTime<Utc>) -> Result<InvokeResponse, StoreError> {
    app.store.index_new_job(&job.job_id, now).await?;
    let Some(etag) = app.store.insert_job(&job).await? else {
        // A retry, or a different request reusing the id.
        let existing = app
            .store
            .get_job(&job.job_id)
            .await?
            .ok_or_else(|| StoreError::Unavailable(format!("job {} exists but cannot be read yet", job.job_id)))?
            .value;
        if existing.state != JobState::Pending {
            app.store.unmark_pending(&job.job_id).await?;
        }
        app.store.close_job(&existing).await?;
        let res = if existing.request == job.request {
            accepted(&existing)
        } else {
            HttpResponseData::error(
                409,
                "job_id_conflict",
                &format!("job {} already exists with a different request; use another jobId", job.job_id),
            )
        };
        return Ok(InvokeResponse::default()
            .output("res", res.to_value())
            .log(format!("job {} already known", job.job_id)));
    };

    let placement = place_job(app, job, Some(etag), now).await?;
    let response = InvokeResponse::default()
        .output("res", accepted(&placement.job).to_value())
        .log(format!("job {} accepted as {}", placement.job.job_id, placement.job.state));
    Ok(with_alerts(response, &placement.alerts))
}

/// The 202 answer. A Pending job is on no account, so it names none (the account it last tried is not a
/// placement).
fn accepted(job: &JobRecord) -> HttpResponseData {
    let body = if job.state == JobState::Pending {
        json!({ "jobId": job.job_id, "state": job.state })
    } else {
        json!({ "jobId": job.job_id, "state": job.state, "account": job.account, "region": job.region })
    };
    HttpResponseData::json(202, &body).header("Location", format!("/api/jobs/{}", job.job_id))
}
