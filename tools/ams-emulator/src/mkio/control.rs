//! Control API additions for MK.IO projects, under `/_emulator/mkio/`: tokens for tests, webhook delivery
//! settings and counters, per-project budgets and delivery records, and the `mkio` part of each account
//! in `GET /_emulator/accounts`. Errors use the control API's (ARM) shape like the rest of `/_emulator/`.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::Utc;
use serde::Deserialize;
use serde_json::{json, Value};

use super::project::{blob_url, configured_sas};
use super::webhooks::WebhookSettingsPatch;
use super::{auth, media_path};
use crate::arm::{error_response, unknown_account};
use crate::model::Account;
use crate::state::Emulator;
use crate::timefmt::arm_time;

/// Routes of the MK.IO control API.
pub fn router() -> Router<Arc<Emulator>> {
    Router::new()
        .route("/_emulator/mkio/token", post(token))
        .route("/_emulator/mkio/webhooks", get(get_webhooks).post(set_webhooks))
        .route("/_emulator/mkio/projects/{name}/limits", post(set_limits))
        .route("/_emulator/mkio/projects/{name}/deliveries", get(deliveries))
}

fn bad_request(message: &str) -> Response {
    error_response(StatusCode::BAD_REQUEST, "BadRequest", message)
}

/// The `mkio` object of an account in `GET /_emulator/accounts`: what a client must be configured with
/// (API base, storage URL and SAS) and what it did (request counts against the budget).
pub fn account_view(emulator: &Emulator, account: &Account) -> Option<Value> {
    let project = account.mkio.as_ref()?;
    let mut meter = project.meter.clone();
    let storage = &account.storage.name;
    Some(json!({
        "project": account.name,
        "location": account.region,
        "projectId": project.id.to_string(),
        "apiBase": format!("{}{}", emulator.base_url, media_path(&account.name)),
        "storage": {
            "storageAccount": storage,
            "blobUrl": blob_url(&emulator.base_url, storage),
            "sas": format!("?{}", configured_sas(account)),
            "registered": project.storages.values().map(|s| s.name.clone()).collect::<Vec<_>>(),
            "default": project.default_storage.as_ref().and_then(|k| project.storages.get(k)).map(|s| s.name.clone()),
        },
        "requests": meter.view(Instant::now()),
        "webhookRules": project.rules.len(),
        "deliveries": project.deliveries.len(),
    }))
}

/// Query of `POST /_emulator/mkio/token`.
#[derive(Debug, Deserialize)]
struct TokenQuery {
    /// Seconds until expiry; negative for a token that has already expired.
    ttl: Option<i64>,
}

/// `POST /_emulator/mkio/token[?ttl=SECONDS]`: an unsigned JWT any MK.IO project accepts until it expires
/// (default one hour).
async fn token(Query(q): Query<TokenQuery>) -> Response {
    let now = Utc::now();
    let ttl = q.ttl.unwrap_or(3600);
    let Some(exp) = now.checked_add_signed(chrono::Duration::seconds(ttl)) else {
        return bad_request("ttl is out of range");
    };
    Json(json!({"token": auth::mint(exp, now), "exp": exp.timestamp(), "expires": arm_time(&exp)})).into_response()
}

fn webhooks_json(emulator: &Emulator) -> Value {
    let mut v = serde_json::to_value(emulator.mkio.current_settings()).unwrap_or_else(|_| json!({}));
    v["counters"] = serde_json::to_value(emulator.mkio.counters()).unwrap_or_else(|_| json!({}));
    v
}

async fn get_webhooks(State(emulator): State<Arc<Emulator>>) -> Json<Value> {
    Json(webhooks_json(&emulator))
}

async fn set_webhooks(State(emulator): State<Arc<Emulator>>, body: Bytes) -> Response {
    let patch: WebhookSettingsPatch = match serde_json::from_slice(&body) {
        Ok(p) => p,
        Err(e) => return bad_request(&format!("invalid webhook settings: {e}")),
    };
    match emulator.mkio.update(patch) {
        Ok(settings) => {
            tracing::info!(?settings, "MK.IO webhook delivery settings changed");
            Json(webhooks_json(&emulator)).into_response()
        }
        Err(e) => bad_request(&e),
    }
}

/// Body of `POST /_emulator/mkio/projects/{name}/limits`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct LimitsBody {
    reads_per_window: Option<u32>,
    writes_per_window: Option<u32>,
}

fn mkio_account<'a>(state: &'a mut crate::state::State, name: &str) -> Result<&'a mut Account, Box<Response>> {
    match state.account_mut(name) {
        Some(a) if a.mkio.is_some() => Ok(a),
        Some(a) => Err(Box::new(bad_request(&format!("The account '{}' does not speak as MK.IO.", a.name)))),
        None => Err(Box::new(unknown_account(name))),
    }
}

/// Changes a project's budgets at run time, so a test can provoke 429s without restarting.
async fn set_limits(State(emulator): State<Arc<Emulator>>, Path(name): Path<String>, body: Bytes) -> Response {
    let limits: LimitsBody = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => return bad_request(&format!("invalid limits: {e}")),
    };
    let mut state = emulator.lock();
    let account = match mkio_account(&mut state, &name) {
        Ok(a) => a,
        Err(resp) => return *resp,
    };
    let Some(project) = account.mkio.as_mut() else {
        return unknown_account(&name);
    };
    project.meter.set_budget(limits.reads_per_window, limits.writes_per_window);
    Json(account_view(&emulator, account)).into_response()
}

/// Every delivery of the project with its attempts and last result, newest last (more than the MK.IO
/// events list shows, for tests that check retries).
async fn deliveries(State(emulator): State<Arc<Emulator>>, Path(name): Path<String>) -> Response {
    let mut state = emulator.lock();
    let account = match mkio_account(&mut state, &name) {
        Ok(a) => a,
        Err(resp) => return *resp,
    };
    let Some(project) = account.mkio.as_ref() else {
        return unknown_account(&name);
    };
    let list: Vec<Value> = project
        .deliveries
        .iter()
        .map(|d| {
            json!({
                "seq": d.seq,
                "rule": project.rules.get(&d.rule).map_or(d.rule.clone(), |r| r.name.clone()),
                "eventId": d.event_id,
                "type": d.event_type,
                "source": d.source,
                "created": arm_time(&d.created),
                "status": d.status,
                "attempts": d.attempts,
                "lastResult": d.last_result,
            })
        })
        .collect();
    Json(Value::Array(list)).into_response()
}
