//! CancelJob (HTTP `POST /api/jobs/{jobId}/cancel`): ends a job as `Canceled`. A job waiting for an account
//! ends at once (200); a running one has its Media Services job cancelled and ends when the service reports
//! it (202, `cancelRequestedAt` set); a job that already ended answers 409 with its state, except one a
//! cancel ended, which answers 200 again. The outcome notification says `Canceled`.

use crate::domain::JobId;
use crate::invoke::{HttpRequestData, HttpResponseData, InvokeRequest, InvokeResponse};
use crate::store::StoreError;
use crate::workflow::{self, Cancelled};
use crate::App;
use serde_json::json;
use std::future::Future;
use std::pin::Pin;

/// Runs one CancelJob invocation.
pub fn run(
    app: &App,
    req: InvokeRequest,
) -> Pin<Box<dyn Future<Output = Result<InvokeResponse, StoreError>> + Send + '_>> {
    Box::pin(async move {
        let http = HttpRequestData::from_invocation(&req, "req").unwrap_or_default();
        let res = match JobId::parse(http.param("jobId").unwrap_or_default()) {
            Err(bad) => HttpResponseData::error(bad.status, bad.code, &bad.message),
            Ok(id) => match workflow::cancel_job(app, id.as_str(), chrono::Utc::now()).await? {
                None => HttpResponseData::error(404, "job_not_found", &format!("no job {id}")),
                Some(Cancelled::AlreadyEnded(crate::domain::JobState::Canceled)) => {
                    HttpResponseData::json(200, &json!({ "jobId": id.as_str(), "state": "Canceled" }))
                }
                Some(Cancelled::AlreadyEnded(state)) => HttpResponseData::json(
                    409,
                    &json!({
                        "error": { "code": "job_ended", "message": format!("job {id} already ended as {state}; there is nothing to cancel") },
                        "jobId": id.as_str(), "state": state,
                    }),
                ),
                Some(Cancelled::Ended(job)) => HttpResponseData::json(
                    200,
                    &json!({ "jobId": job.job_id, "state": job.state, "cancelRequestedAt": job.cancel_requested_at }),
                ),
                Some(Cancelled::Requested(job)) => HttpResponseData::json(
                    202,
                    &json!({
                        "jobId": job.job_id, "state": job.state, "cancelRequestedAt": job.cancel_requested_at,
                        "account": job.account, "region": job.region,
                    }),
                )
                .header("Location", format!("/api/jobs/{}", job.job_id)),
            },
        };
        Ok(InvokeResponse::default().output("res", res.to_value()))
    })
}
