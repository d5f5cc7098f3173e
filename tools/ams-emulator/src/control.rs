//! The emulator's own control API under `/_emulator/`: inspect accounts and
//! jobs, inject faults, and steer event delivery. Errors use the ARM error
//! shape so clients need one error parser.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::arm::{error_response, unknown_account};
use crate::config::MruMode;
use crate::events::DeliverySettingsPatch;
use crate::model::{Account, Fault, JobOutput};
use crate::state::Emulator;
use crate::timefmt::arm_time;
use crate::{blob, streaming};

/// Routes of the control API.
pub fn router() -> Router<Arc<Emulator>> {
    Router::new()
        .route("/_emulator/accounts", get(list_accounts))
        .route("/_emulator/accounts/{name}/fault", post(set_fault))
        .route("/_emulator/accounts/{name}/mru", post(set_mru))
        .route("/_emulator/jobs", get(list_jobs))
        .route("/_emulator/events", get(get_events).post(set_events))
        .method_not_allowed_fallback(method_not_allowed)
}

async fn method_not_allowed(method: axum::http::Method) -> Response {
    error_response(
        StatusCode::METHOD_NOT_ALLOWED,
        "MethodNotAllowed",
        &format!("The method '{method}' is not supported on this control resource."),
    )
}

fn bad_request(message: &str) -> Response {
    error_response(StatusCode::BAD_REQUEST, "BadRequest", message)
}

fn account_json(emulator: &Emulator, a: &Account) -> Value {
    let mut v = json!({
        "name": a.name,
        "region": a.region,
        "fault": a.fault,
        "jobs": a.job_counts(),
        "armCalls": a.arm_calls,
        "mediaServiceId": a.media_service_id.to_string(),
        "mru": a.mru,
        "storage": {
            "name": a.storage.name,
            "blobEndpoint": format!("{}{}{}/", emulator.base_url, blob::PREFIX, a.storage.name),
            "containers": a.storage.containers.len(),
            "blobs": a.storage.containers.values().map(|c| c.blobs.len()).sum::<usize>(),
            "pendingCopies": a.storage.pending.len(),
        },
        "copies": a.storage.counters,
        "streamingHost": streaming_host(a),
        "streamingUrl": format!("{}{}{}", emulator.base_url, streaming::STREAM_PREFIX, a.name),
        "keyDeliveryUrl": streaming::key_delivery_url(&emulator.base_url, &a.name),
        "streamingLocators": a.streaming.locators.len(),
    });
    if let Some(view) = crate::mkio::control::account_view(emulator, a) {
        v["mkio"] = view;
    }
    v
}

/// The host name AMS would give the account's default streaming endpoint
/// (`{account}-{region}.streaming.media.azure.net`); paths from listPaths go after it.
fn streaming_host(a: &Account) -> String {
    format!("{}-{}.streaming.media.azure.net", a.name.to_ascii_lowercase(), a.region.to_ascii_lowercase())
}

async fn list_accounts(State(emulator): State<Arc<Emulator>>) -> Json<Value> {
    let state = emulator.lock();
    // Configuration order, which is how operators think of them.
    let list: Vec<Value> = emulator
        .config
        .accounts
        .iter()
        .filter_map(|spec| state.accounts.get(&spec.name.to_ascii_lowercase()))
        .map(|a| account_json(&emulator, a))
        .collect();
    Json(Value::Array(list))
}

async fn set_fault(State(emulator): State<Arc<Emulator>>, Path(name): Path<String>, body: Bytes) -> Response {
    let fault: Fault = match serde_json::from_slice(&body) {
        Ok(f) => f,
        Err(e) => return bad_request(&format!("invalid fault: {e}")),
    };
    let mut state = emulator.lock();
    let Some(account) = state.account_mut(&name) else {
        return unknown_account(&name);
    };
    tracing::info!(account = %account.name, ?fault, "fault set");
    account.fault = fault;
    Json(account_json(&emulator, account)).into_response()
}

/// Body of `POST /_emulator/accounts/{name}/mru`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MruBody {
    current: u32,
}

/// Sets a managed account's reserved units directly, without counting a v2 update,
/// so tests can arrange concurrency without going through the client under test.
async fn set_mru(State(emulator): State<Arc<Emulator>>, Path(name): Path<String>, body: Bytes) -> Response {
    let wanted: MruBody = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => return bad_request(&format!("invalid MRU body: {e}")),
    };
    let mut state = emulator.lock();
    let Some(account) = state.account_mut(&name) else {
        return unknown_account(&name);
    };
    if account.mru.mode != MruMode::Managed {
        return bad_request(&format!("The account '{}' scales automatically and has no reserved units.", account.name));
    }
    if wanted.current > account.mru.max {
        return bad_request(&format!("current {} exceeds the maximum of {}.", wanted.current, account.mru.max));
    }
    tracing::info!(account = %account.name, current = wanted.current, "reserved units set through the control API");
    account.mru.current = wanted.current;
    Json(account_json(&emulator, account)).into_response()
}

/// Query of `GET /_emulator/jobs`.
#[derive(Debug, Deserialize)]
struct JobsQuery {
    account: Option<String>,
}

async fn list_jobs(State(emulator): State<Arc<Emulator>>, Query(q): Query<JobsQuery>) -> Response {
    let state = emulator.lock();
    let wanted = q.account.as_deref().map(str::to_ascii_lowercase);
    if let Some(w) = &wanted {
        if !state.accounts.contains_key(w) {
            return unknown_account(w);
        }
    }
    let mut jobs = Vec::new();
    for (key, account) in &state.accounts {
        if wanted.as_ref().is_some_and(|w| w != key) {
            continue;
        }
        for job in account.jobs.values() {
            jobs.push(json!({
                "account": account.name,
                "region": account.region,
                "transform": job.transform,
                "name": job.name,
                "state": job.state,
                "priority": job.priority,
                "correlationData": job.correlation_json(),
                "created": arm_time(&job.created),
                "lastModified": arm_time(&job.last_modified),
                "startTime": job.start_time.as_ref().map(arm_time),
                "endTime": job.end_time.as_ref().map(arm_time),
                "history": job.history.iter().map(|(s, at)| json!({"state": s, "at": arm_time(at)})).collect::<Vec<_>>(),
                "outputs": job.outputs.iter().map(JobOutput::to_arm_json).collect::<Vec<_>>(),
            }));
        }
    }
    Json(Value::Array(jobs)).into_response()
}

fn events_json(emulator: &Emulator) -> Value {
    let mut v = serde_json::to_value(emulator.dispatcher.current_settings()).unwrap_or_else(|_| json!({}));
    v["counters"] = serde_json::to_value(emulator.dispatcher.counters()).unwrap_or_else(|_| json!({}));
    v
}

async fn get_events(State(emulator): State<Arc<Emulator>>) -> Json<Value> {
    Json(events_json(&emulator))
}

async fn set_events(State(emulator): State<Arc<Emulator>>, body: Bytes) -> Response {
    let patch: DeliverySettingsPatch = match serde_json::from_slice(&body) {
        Ok(p) => p,
        Err(e) => return bad_request(&format!("invalid event settings: {e}")),
    };
    match emulator.dispatcher.update(patch) {
        Ok(settings) => {
            tracing::info!(?settings, "event delivery settings changed");
            Json(events_json(&emulator)).into_response()
        }
        Err(e) => bad_request(&e.to_string()),
    }
}
