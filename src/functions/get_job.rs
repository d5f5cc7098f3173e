//! GetJob (HTTP `GET /api/jobs/{jobId}`): the job's state, attempts, outputs and last error.

use crate::domain::{JobId, JobState};
use crate::invoke::{HttpRequestData, HttpResponseData, InvokeRequest, InvokeResponse};
use crate::store::StoreError;
use crate::App;
use serde_json::json;
use std::future::Future;
use std::pin::Pin;

/// Runs one GetJob invocation.
pub fn run(
    app: &App,
    req: InvokeRequest,
) -> Pin<Box<dyn Future<Output = Result<InvokeResponse, StoreError>> + Send + '_>> {
    Box::pin(async move {
        let http = HttpRequestData::from_invocation(&req, "req").unwrap_or_default();
        let raw_id = http.param("jobId").unwrap_or_default();
        let res = match JobId::parse(raw_id) {
            Err(bad) => HttpResponseData::error(bad.status, bad.code, &bad.message),
            Ok(id) => match app.store.get_job(id.as_str()).await? {
                None => HttpResponseData::error(404, "job_not_found", &format!("no job {id}")),
                Some(job) => {
                    let job = job.value;
                    let attempts: Vec<_> = job
                        .attempts
                        .iter()
                        .map(|a| {
                            json!({
                                "attempt": a.number, "account": a.account, "region": a.region, "amsJobName": a.ams_job_name,
                                "state": a.state, "submittedAt": a.submitted_at, "scheduledAt": a.scheduled_at,
                                "processingAt": a.processing_at, "finishedAt": a.finished_at, "outputs": a.output_assets, "error": a.error,
                                "waitingForMru": a.mru_saturated && a.state == JobState::Scheduled, "mruSaturatedAtSubmission": a.mru_saturated,
                            })
                        })
                        .collect();
                    HttpResponseData::json(
                        200,
                        &json!({
                            "jobId": job.job_id, "state": job.state, "transform": job.transform, "account": job.account, "region": job.region,
                            "attempt": job.attempt, "attempts": attempts, "outputs": job.outputs, "lastError": job.last_error,
                            "createdAt": job.created_at, "updatedAt": job.updated_at,
                        }),
                    )
                }
            },
        };
        Ok(InvokeResponse::default().output("res", res.to_value()))
    })
}
