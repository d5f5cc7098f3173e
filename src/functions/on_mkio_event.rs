//! OnMkioEvent (HTTP `POST /api/events/mkio`): MK.IO's webhook deliveries of `MediaKind.JobStarted` and
//! `MediaKind.JobFinished`, applied through the same path as Event Grid's job events.
//!
//! - **Authenticity**: MK.IO signs nothing; the only proof a delivery comes from the rule the product made is
//!   the secret header that rule sets (`x-mkio-webhook-secret`). It is compared in constant time before
//!   anything else is read; without it the answer is 401 and nothing changes. The function is anonymous
//!   (no function key): MK.IO could send a key only as another static header, so one secret the handler
//!   checks gives the same protection with one value to rotate.
//! - **Repeats and order**: deliveries are at-least-once and unordered. No event id needs remembering: an
//!   attempt only moves forward and a job never follows a stale snapshot, so a repeated or late event
//!   changes nothing.
//! - **Trust**: a JobStarted may move an attempt to Processing as it claims (nothing final follows from it);
//!   a JobFinished is confirmed by reading the job from MK.IO, and what the read says is applied.
//! - Deliveries that cannot be used (not a job event, a project not configured, a job this product did not
//!   submit) are logged and acknowledged with 200, so MK.IO does not retry them; a confirmation that cannot
//!   be read right now answers 503, and the sweep's reading of quiet jobs catches up if MK.IO gives up.

use super::with_alerts;
use crate::config::AccountConfig;
use crate::domain::cloud_event::{MkioIncoming, MkioJobEvent, MkioJobEventKind};
use crate::domain::JobState;
use crate::invoke::{HttpRequestData, HttpResponseData, InvokeRequest, InvokeResponse};
use crate::store::StoreError;
use crate::workflow::{apply_report, Report};
use crate::App;
use chrono::Utc;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::future::Future;
use std::pin::Pin;
use subtle::ConstantTimeEq;
use tracing::{info, warn, Instrument};

/// The header each project's webhook rule sets to the shared secret.
pub const SECRET_HEADER: &str = "x-mkio-webhook-secret";

/// Whether `given` is the secret. Both sides are hashed first, so the comparison takes the same time
/// whatever the length or content of what was sent.
fn secret_matches(given: &str, secret: &str) -> bool {
    let (a, b) = (Sha256::digest(given.as_bytes()), Sha256::digest(secret.as_bytes()));
    a.as_slice().ct_eq(b.as_slice()).into()
}

fn answer(status: u16, body: Value) -> HttpResponseData {
    HttpResponseData::json(status, &body)
}

/// Runs one OnMkioEvent invocation.
pub fn run(
    app: &App,
    req: InvokeRequest,
) -> Pin<Box<dyn Future<Output = Result<InvokeResponse, StoreError>> + Send + '_>> {
    Box::pin(async move {
        let http = HttpRequestData::from_invocation(&req, "req").unwrap_or_default();
        let given =
            http.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(SECRET_HEADER)).and_then(|(_, v)| v.first());
        let authentic = match (&app.settings.mkio_webhook, given) {
            (Some(webhook), Some(given)) => secret_matches(given, webhook.secret.expose()),
            _ => false,
        };
        if !authentic {
            warn!("refused an MK.IO delivery without the webhook secret");
            let res = HttpResponseData::error(401, "unauthorized", &format!("missing or wrong {SECRET_HEADER} header"));
            return Ok(InvokeResponse::default().output("res", res.to_value()).log("refused: no webhook secret"));
        }
        let event: Option<Value> = http.body.as_deref().and_then(|b| serde_json::from_str(b).ok());
        let parsed = match &event {
            Some(event) => MkioIncoming::parse(event),
            None => Err(crate::domain::Unusable("the body is not JSON".into())),
        };
        let event = match parsed {
            Err(unusable) => {
                warn!(%unusable, "acknowledged an MK.IO delivery that cannot be used");
                let res = answer(200, json!({"status": "ignored", "reason": unusable.to_string()}));
                return Ok(InvokeResponse::default().output("res", res.to_value()).log(unusable.to_string()));
            }
            Ok(MkioIncoming::Ignored { event_type }) => {
                let res = answer(200, json!({"status": "ignored", "reason": format!("{event_type}: nothing to do")}));
                return Ok(InvokeResponse::default().output("res", res.to_value()));
            }
            Ok(MkioIncoming::Job(event)) => *event,
        };
        let configured = app
            .settings
            .accounts
            .iter()
            .find(|a| a.mkio.as_ref().is_some_and(|m| m.project.eq_ignore_ascii_case(&event.project)));
        let Some(account) = configured else {
            warn!(project = %event.project, mkio_event = %event.id, "MK.IO delivery from a project that is not configured; acknowledged");
            let res = answer(200, json!({"status": "ignored", "reason": "project not configured"}));
            return Ok(InvokeResponse::default().output("res", res.to_value()));
        };
        let span = tracing::info_span!("event", account = %account.name, region = %account.region, ams_job = %event.job_name, event_id = %event.id);
        apply(app, account, event).instrument(span).await
    })
}

async fn apply(app: &App, account: &AccountConfig, event: MkioJobEvent) -> Result<InvokeResponse, StoreError> {
    let now = Utc::now();
    let Some(attempt) = app.store.get_attempt(&account.name, &event.job_name).await? else {
        // Not read from MK.IO: nothing this product submitted is behind it, and reading costs budget.
        warn!(kind = ?event.kind, "MK.IO event for a job this product did not submit; acknowledged");
        let res = answer(200, json!({"status": "ignored", "reason": "unknown job"}));
        return Ok(InvokeResponse::default().output("res", res.to_value()));
    };
    let report = match event.kind {
        // Started: the job left the queue. Processing is what that means, whatever state the payload adds.
        MkioJobEventKind::Started => Report {
            job_name: event.job_name.clone(),
            transform: event.transform.clone(),
            state: event.state.filter(|s| !s.is_final()).unwrap_or(JobState::Processing),
            at: event.time,
            error: None,
        },
        // A repeat for an attempt already ended needs no read: the same path repairs the job if a crash
        // interrupted the first delivery.
        MkioJobEventKind::Finished if !attempt.is_active() => Report {
            job_name: event.job_name.clone(),
            transform: attempt.transform.clone(),
            state: attempt.state,
            at: attempt.finished_at,
            error: attempt.error.clone(),
        },
        MkioJobEventKind::Finished => match app.media.get_job(account, &attempt.transform, &event.job_name).await {
            Ok(Some(job)) => Report {
                job_name: event.job_name.clone(),
                transform: attempt.transform.clone(),
                state: job.state,
                at: job.last_modified,
                error: job.error(),
            },
            Ok(None) => {
                warn!(job_id = %attempt.job_id, "MK.IO says a job finished that it cannot find; the sweep will move it");
                let res = answer(200, json!({"status": "ignored", "reason": "job not found in MK.IO"}));
                return Ok(InvokeResponse::default().output("res", res.to_value()));
            }
            Err(error) => {
                warn!(job_id = %attempt.job_id, %error, "could not confirm a finished job; asking MK.IO to deliver again");
                let res = HttpResponseData::error(
                    503,
                    "confirmation_unavailable",
                    "the job could not be read back; deliver again later",
                )
                .header("Retry-After", "30");
                return Ok(InvokeResponse::default().output("res", res.to_value()).log(error.to_string()));
            }
        },
    };
    let claimed = event.state;
    let confirmed = report.state;
    let (job, alerts) = apply_report(app, account, report, now).await?;
    let body = match &job {
        Some(job) => {
            info!(job_id = %job.job_id, kind = ?event.kind, ?claimed, state = %confirmed, job_state = %job.state, "MK.IO event applied");
            json!({"status": "applied", "jobId": job.job_id, "state": confirmed.as_str(), "jobState": job.state.as_str()})
        }
        None => json!({"status": "ignored", "reason": "unknown job"}),
    };
    let response = InvokeResponse::default().output("res", answer(200, body).to_value());
    Ok(with_alerts(response, &alerts))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_exact_secret_matches() {
        assert!(secret_matches("a-long-enough-shared-secret", "a-long-enough-shared-secret"));
        assert!(!secret_matches("a-long-enough-shared-secreT", "a-long-enough-shared-secret"));
        assert!(!secret_matches("", "a-long-enough-shared-secret"));
    }
}
