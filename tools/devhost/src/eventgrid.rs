//! The Event Grid extension's webhook, `/runtime/webhooks/EventGrid?functionName=X`
//! (contracts 1.4(b), 1.7, 2.2 and 2.4).

use std::sync::Arc;

use axum::body::Bytes;
use axum::http::{header, HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Map, Value};

use crate::config::{FunctionDef, Trigger};
use crate::invoke::{self, InvocationError};
use crate::server::App;

/// Origins the extension echoes in `WebHook-Allowed-Origin`.
const KNOWN_ORIGINS: [&str; 3] = ["eventgrid.azure.net", "eventgrid.azure.us", "eventgrid.azure.cn"];

fn function_name(uri: &Uri) -> Option<String> {
    url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
        .find(|(k, _)| k.eq_ignore_ascii_case("functionName"))
        .map(|(_, v)| v.into_owned())
}

/// Builds `Data` and `Metadata` for one event.
pub fn event_payload(function: &FunctionDef, event: Value) -> (Map<String, Value>, Map<String, Value>) {
    let mut metadata = Map::new();
    metadata.insert("data".into(), event.get("data").cloned().unwrap_or(Value::Null));
    metadata.insert("sys".into(), invoke::sys_metadata(&function.name));
    let mut data = Map::new();
    data.insert(function.trigger_name.clone(), event);
    (data, metadata)
}

/// Runs the function for one event; used by the webhook and the admin API.
pub async fn invoke_event(
    app: &Arc<App>,
    function: &FunctionDef,
    event: Result<Value, InvocationError>,
    reason: &str,
) -> Result<(), InvocationError> {
    let (data, metadata) = match event {
        Ok(ev) => {
            let (d, m) = event_payload(function, ev);
            (Ok(d), m)
        }
        Err(e) => (Err(e), Map::new()),
    };
    app.invoker.invoke(function, reason, data, metadata, |_| Ok(())).await
}

/// Handles a request to the webhook path.
pub async fn handle(app: Arc<App>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    if method == Method::OPTIONS {
        // CloudEvents abuse protection: allow the Event Grid origin that asked.
        let origin = headers
            .get("webhook-request-origin")
            .and_then(|v| v.to_str().ok())
            .filter(|o| KNOWN_ORIGINS.iter().any(|k| k.eq_ignore_ascii_case(o)))
            .unwrap_or(KNOWN_ORIGINS[0])
            .to_string();
        return (StatusCode::OK, [("WebHook-Allowed-Origin", origin)]).into_response();
    }
    if method != Method::POST {
        return StatusCode::METHOD_NOT_ALLOWED.into_response();
    }
    let name = function_name(&uri).unwrap_or_default();
    let Some(function) = app.function(&name).filter(|f| matches!(f.trigger, Trigger::EventGrid)).cloned() else {
        eprintln!("Event Grid: cannot find function '{name}'");
        return StatusCode::NOT_FOUND.into_response();
    };
    let event_type = headers.get("aeg-event-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let parsed = || serde_json::from_slice::<Value>(&body);
    if event_type.eq_ignore_ascii_case("SubscriptionValidation") {
        let code = match parsed() {
            Ok(v) => {
                let first = if v.is_array() { v.get(0).cloned() } else { Some(v) };
                first.and_then(|e| e.get("data").and_then(|d| d.get("validationCode")).cloned())
            }
            Err(_) => None,
        };
        let Some(code) = code else {
            return (StatusCode::BAD_REQUEST, "SubscriptionValidation body has no data.validationCode").into_response();
        };
        eprintln!("Event Grid: performing handshake for function '{}'", function.name);
        return (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
            json!({ "validationResponse": code }).to_string(),
        )
            .into_response();
    }
    if event_type.eq_ignore_ascii_case("Unsubscribe") {
        return StatusCode::ACCEPTED.into_response();
    }
    if !event_type.eq_ignore_ascii_case("Notification") {
        return (StatusCode::BAD_REQUEST, "missing or unknown aeg-event-type header").into_response();
    }
    let events = match parsed() {
        Ok(Value::Array(items)) => items,
        Ok(obj @ Value::Object(_)) => vec![obj],
        Ok(_) => {
            return (StatusCode::BAD_REQUEST, "the body must be a JSON array of events or one event object")
                .into_response()
        }
        Err(e) => return (StatusCode::BAD_REQUEST, format!("the body is not valid JSON: {e}")).into_response(),
    };
    // One invocation per event, all at once, as the extension's single dispatch does.
    let mut set = tokio::task::JoinSet::new();
    for event in events {
        let app = app.clone();
        let function = function.clone();
        set.spawn(async move {
            let id = event.get("id").and_then(Value::as_str).unwrap_or("").to_string();
            let event = if event.is_object() {
                Ok(event)
            } else {
                Err(InvocationError::Input("an event must be a JSON object".into()))
            };
            invoke_event(&app, &function, event, "EventGrid trigger fired")
                .await
                .map_err(|e| format!("event '{id}': {e}"))
        });
    }
    let mut failures = Vec::new();
    while let Some(joined) = set.join_next().await {
        match joined {
            Ok(Ok(())) => {}
            Ok(Err(e)) => failures.push(e),
            Err(e) => failures.push(format!("invocation task failed: {e}")),
        }
    }
    if failures.is_empty() {
        StatusCode::ACCEPTED.into_response()
    } else {
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("Exception while executing function: Functions.{}: {}", function.name, failures.join("; ")),
        )
            .into_response()
    }
}
