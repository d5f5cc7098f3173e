//! GetJob (HTTP `GET /api/jobs/{jobId}`): the job's state, attempts, outputs and last error, and with
//! publication on, each region's publication with the paths recorded when it was published (no ARM call).

use crate::config::PublishSettings;
use crate::domain::publication::PublicationRecord;
use crate::domain::{JobId, JobState};
use crate::invoke::{HttpRequestData, HttpResponseData, InvokeRequest, InvokeResponse};
use crate::store::StoreError;
use crate::App;
use serde_json::{json, Value};
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
                    // A Pending job is on no account; the one it last tried is in its attempts.
                    let placed = job.state != JobState::Pending;
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
                    let mut body = json!({
                        "jobId": job.job_id, "state": job.state, "transform": job.transform, "account": placed.then_some(&job.account), "region": placed.then_some(&job.region),
                        "attempt": job.attempt, "attempts": attempts, "outputs": job.outputs, "lastError": job.last_error,
                        "createdAt": job.created_at, "updatedAt": job.updated_at,
                    });
                    if let Some(at) = job.cancel_requested_at {
                        body["cancelRequestedAt"] = json!(at);
                    }
                    if app.settings.publish.enabled {
                        let records = crate::publish::publications_of(app, &job.job_id).await?;
                        body["publications"] = publications_view(&records, &app.settings.publish);
                        body["streaming"] = json!({
                            "host": app.settings.publish.streaming_host,
                            "keyDeliveryHost": app.settings.publish.key_delivery_host,
                        });
                    }
                    HttpResponseData::json(200, &body)
                }
            },
        };
        Ok(InvokeResponse::default().output("res", res.to_value()))
    })
}

/// Each region's publication: state, locators, key ids, paths, and URLs through the streaming Traffic
/// Manager host when one is configured (every region serves the same paths, so one URL reaches any).
fn publications_view(records: &[PublicationRecord], publish: &PublishSettings) -> Value {
    let url = |path: &str| publish.streaming_host.as_ref().map(|host| format!("https://{host}{path}"));
    let regions: Vec<Value> = records
        .iter()
        .map(|r| {
            let locators: Vec<Value> = r
                .assets
                .iter()
                .map(|a| {
                    let paths = a.paths.clone().unwrap_or_default();
                    let streaming: Vec<Value> = paths
                        .streaming_paths
                        .iter()
                        .map(|p| {
                            let mut entry = json!({"protocol": p.streaming_protocol, "encryptionScheme": p.encryption_scheme, "paths": p.paths});
                            if publish.streaming_host.is_some() {
                                entry["urls"] = json!(p.paths.iter().filter_map(|x| url(x)).collect::<Vec<_>>());
                            }
                            entry
                        })
                        .collect();
                    let mut locator = json!({
                        "asset": a.asset, "name": a.locator_name, "streamingLocatorId": a.streaming_locator_id,
                        "contentKeyIds": a.content_keys.iter().map(|k| &k.id).collect::<Vec<_>>(),
                        "streamingPaths": streaming, "downloadPaths": paths.download_paths,
                    });
                    if publish.streaming_host.is_some() {
                        locator["downloadUrls"] = json!(paths.download_paths.iter().filter_map(|x| url(x)).collect::<Vec<_>>());
                    }
                    locator
                })
                .collect();
            json!({
                "account": r.account, "region": r.region, "role": r.role, "state": r.state, "streamingPolicy": r.streaming_policy,
                "locators": locators, "failures": r.failures, "nextTryAt": r.retry_at, "lastError": r.last_error,
                "publishedAt": r.published_at, "updatedAt": r.updated_at,
            })
        })
        .collect();
    Value::Array(regions)
}
