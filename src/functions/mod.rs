//! One thin adapter per function folder: read the invocation, call the workflow or store, write outputs.
//! The router answers the host's readiness probe on `/` and one `POST /{FunctionName}` per function.

pub mod cancel_job;
pub mod drain_account;
pub mod get_job;
pub mod get_status;
pub mod list_jobs;
pub mod on_job_state_change;
pub mod on_mkio_event;
pub mod readmit_account;
pub mod status_page;
pub mod submit_job;
pub mod sweep_stuck_jobs;

use crate::domain::Alert;
use crate::invoke::{HttpResponseData, InvokeRequest, InvokeResponse};
use crate::store::StoreError;
use crate::App;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::Value;
use std::future::Future;
use std::pin::Pin;
use tracing::Instrument;

/// The handler's routes.
pub fn router(app: App) -> Router {
    Router::new()
        .route("/", get(|| async { "ready" }))
        .route(
            "/SubmitJob",
            post(|s: State<App>, h: HeaderMap, b: Bytes| invoke(s, h, b, "SubmitJob", Kind::Http, submit_job::run)),
        )
        .route(
            "/GetJob",
            post(|s: State<App>, h: HeaderMap, b: Bytes| invoke(s, h, b, "GetJob", Kind::Http, get_job::run)),
        )
        .route(
            "/ListJobs",
            post(|s: State<App>, h: HeaderMap, b: Bytes| invoke(s, h, b, "ListJobs", Kind::Http, list_jobs::run)),
        )
        .route(
            "/CancelJob",
            post(|s: State<App>, h: HeaderMap, b: Bytes| invoke(s, h, b, "CancelJob", Kind::Http, cancel_job::run)),
        )
        .route(
            "/DrainAccount",
            post(|s: State<App>, h: HeaderMap, b: Bytes| {
                invoke(s, h, b, "DrainAccount", Kind::Http, drain_account::run)
            }),
        )
        .route(
            "/ReadmitAccount",
            post(|s: State<App>, h: HeaderMap, b: Bytes| {
                invoke(s, h, b, "ReadmitAccount", Kind::Http, readmit_account::run)
            }),
        )
        .route(
            "/GetStatus",
            post(|s: State<App>, h: HeaderMap, b: Bytes| invoke(s, h, b, "GetStatus", Kind::Http, get_status::run)),
        )
        .route(
            "/OnJobStateChange",
            post(|s: State<App>, h: HeaderMap, b: Bytes| {
                invoke(s, h, b, "OnJobStateChange", Kind::Event, on_job_state_change::run)
            }),
        )
        .route(
            "/OnMkioEvent",
            post(|s: State<App>, h: HeaderMap, b: Bytes| {
                invoke(s, h, b, "OnMkioEvent", Kind::Http, on_mkio_event::run)
            }),
        )
        .route(
            "/SweepStuckJobs",
            post(|s: State<App>, h: HeaderMap, b: Bytes| {
                invoke(s, h, b, "SweepStuckJobs", Kind::Timer, sweep_stuck_jobs::run)
            }),
        )
        .with_state(app)
}

/// How a function's failures reach the host.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// HTTP trigger: always 200 to the host; the caller's status goes inside `res`.
    Http,
    /// Event Grid trigger: 500 to the host only when a retry can help, so Event Grid redelivers.
    Event,
    /// Timer: a failure is logged; the next tick runs anyway.
    Timer,
}

type Run =
    for<'a> fn(&'a App, InvokeRequest) -> Pin<Box<dyn Future<Output = Result<InvokeResponse, StoreError>> + Send + 'a>>;

async fn invoke(
    State(app): State<App>,
    headers: HeaderMap,
    body: Bytes,
    function: &'static str,
    kind: Kind,
    run: Run,
) -> Response {
    let invocation_id =
        headers.get("x-azure-functions-invocationid").and_then(|v| v.to_str().ok()).unwrap_or("-").to_owned();
    let span = tracing::info_span!("invocation", function, invocation_id = %invocation_id);
    async move {
        let request: InvokeRequest = match serde_json::from_slice(&body) {
            Ok(request) => request,
            Err(e) => {
                tracing::warn!(error = %e, "the host sent an invocation that is not JSON");
                let response = InvokeResponse::default().log(format!("invalid invocation payload: {e}"));
                let response = match kind {
                    Kind::Http => response.output(
                        "res",
                        HttpResponseData::error(400, "invalid_invocation", "the invocation payload is not JSON")
                            .to_value(),
                    ),
                    _ => response,
                };
                return (StatusCode::OK, Json(response)).into_response();
            }
        };
        match run(&app, request).await {
            Ok(response) => (StatusCode::OK, Json(response)).into_response(),
            Err(error) => failure(kind, &error),
        }
    }
    .instrument(span)
    .await
}

fn failure(kind: Kind, error: &StoreError) -> Response {
    tracing::error!(%error, retryable = error.is_retryable(), "invocation failed");
    match kind {
        Kind::Http => {
            let res = HttpResponseData::error(
                503,
                "storage_unavailable",
                &format!("the job store is unavailable; retry later ({error})"),
            )
            .header("Retry-After", "5");
            (StatusCode::OK, Json(InvokeResponse::default().output("res", res.to_value()).log(error.to_string())))
                .into_response()
        }
        // A corrupt record will not heal by redelivery: acknowledge it (it is logged as an error above).
        Kind::Event if matches!(error, StoreError::Corrupt(_)) => {
            (StatusCode::OK, Json(InvokeResponse::default().log(error.to_string()))).into_response()
        }
        Kind::Event | Kind::Timer => {
            (StatusCode::INTERNAL_SERVER_ERROR, Json(serde_json::json!({ "error": error.to_string() }))).into_response()
        }
    }
}

/// The `alerts` output binding value: a JSON array, which the host sends as one message per element.
pub(crate) fn alerts_output(alerts: &[Alert]) -> Option<Value> {
    (!alerts.is_empty()).then(|| serde_json::to_value(alerts).unwrap_or(Value::Null))
}

/// How each alert starts as an invocation log line. The host writes those lines to Application Insights,
/// where the scheduled query rule of `infra/modules/alerting.bicep` looks for this prefix and notifies the
/// action group: that is how an alert reaches a person, while the `alerts` queue serves programs.
pub const ALERT_LOG_PREFIX: &str = "amsfo-alert ";

/// The response with the alerts on the `alerts` output binding and each one logged: as a structured
/// tracing line, and as an invocation log line `amsfo-alert {json}` with a one-line summary.
pub(crate) fn with_alerts(mut response: InvokeResponse, alerts: &[Alert]) -> InvokeResponse {
    for alert in alerts {
        tracing::warn!(alert = alert.kind, account = ?alert.account, region = ?alert.region, job_id = ?alert.job_id, reason = %alert.reason, "alert raised");
        let mut line = serde_json::to_value(alert).unwrap_or(Value::Null);
        line["summary"] = Value::String(alert.summary());
        response = response.log(format!("{ALERT_LOG_PREFIX}{line}"));
    }
    match alerts_output(alerts) {
        Some(value) => response.output("alerts", value),
        None => response,
    }
}

/// The account, who and why of an operator's region control: the `{account}` route parameter (404 if not
/// configured), `reason` from the JSON body (required), and who: the Entra principal App Service
/// Authentication names (`X-MS-CLIENT-PRINCIPAL-NAME`), else the body's `by`, else `operator`.
pub(crate) fn operator_request<'a>(
    app: &'a App,
    http: &crate::invoke::HttpRequestData,
) -> Result<(&'a crate::config::AccountConfig, String, String), HttpResponseData> {
    let name = http.param("account").unwrap_or_default();
    let Some(account) = app.settings.account(name) else {
        return Err(HttpResponseData::error(404, "account_not_found", &format!("no account {name:?} is configured")));
    };
    let body: Value = match http.body.as_deref().map(serde_json::from_str::<Value>) {
        Some(Ok(body @ Value::Object(_))) => body,
        None => Value::Null,
        Some(_) => {
            return Err(HttpResponseData::error(
                400,
                "malformed_json",
                "the body must be a JSON object {\"reason\": \"...\", \"by\": \"...\"}",
            ))
        }
    };
    let text = |field: &str| body.get(field).and_then(Value::as_str).map(str::trim).filter(|s| !s.is_empty());
    let Some(reason) = text("reason").filter(|r| r.len() <= 500) else {
        return Err(HttpResponseData::error(
            400,
            "missing_reason",
            "say why in the body: {\"reason\": \"...\"} (at most 500 characters)",
        ));
    };
    let principal = http
        .headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("x-ms-client-principal-name"))
        .and_then(|(_, v)| v.first())
        .map(String::as_str);
    let by = principal.or(text("by")).unwrap_or("operator").chars().take(200).collect();
    Ok((account, by, reason.to_owned()))
}
