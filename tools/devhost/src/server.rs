//! devhost's own HTTP server: dispatches HTTP triggers, the Event Grid webhook
//! and the admin API, and prints the function list.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde_json::{json, Map, Value};

use crate::config::{AppConfig, FunctionDef, Trigger};
use crate::eventgrid;
use crate::http::{self, IncomingRequest};
use crate::invoke::{InvocationError, Invoker, HOST_VERSION};
use crate::keys::{self, Keys};
use crate::timer::{self, TimerState};

/// Largest request body devhost reads (the host's limit is about 100 MB).
const MAX_BODY: usize = 100 * 1024 * 1024;

/// Shared state of the running host.
#[derive(Debug)]
pub struct App {
    /// The loaded app.
    pub config: AppConfig,
    /// Calls into the handler.
    pub invoker: Arc<Invoker>,
    /// Indexes of HTTP functions, most specific route first.
    http_order: Vec<usize>,
    /// Timer state by function name.
    pub timers: HashMap<String, Arc<TimerState>>,
    /// `host:port` used in `Url` when a request has no Host header.
    pub fallback_host: String,
    /// Function keys to enforce (`--keys`); `None` checks none.
    pub keys: Option<Keys>,
}

impl App {
    /// Builds the state; `port` is devhost's own listening port.
    pub fn new(config: AppConfig, invoker: Arc<Invoker>, port: u16) -> Self {
        let mut http_order: Vec<usize> = config
            .functions
            .iter()
            .enumerate()
            .filter(|(_, f)| matches!(f.trigger, Trigger::Http { .. }))
            .map(|(i, _)| i)
            .collect();
        http_order.sort_by(|a, b| match (&config.functions[*a].trigger, &config.functions[*b].trigger) {
            (Trigger::Http { route: ra, .. }, Trigger::Http { route: rb, .. }) => ra.precedence(rb),
            _ => std::cmp::Ordering::Equal,
        });
        let now = chrono::Utc::now();
        let timers = config
            .functions
            .iter()
            .filter_map(|f| match &f.trigger {
                Trigger::Timer { schedule, .. } => Some((f.name.clone(), Arc::new(TimerState::new(schedule, now)))),
                _ => None,
            })
            .collect();
        App { config, invoker, http_order, timers, fallback_host: format!("127.0.0.1:{port}"), keys: None }
    }

    /// The same app, enforcing `keys`.
    pub fn with_keys(self, keys: Option<Keys>) -> Self {
        App { keys, ..self }
    }

    /// Looks a function up by name, case-insensitively like the host.
    pub fn function(&self, name: &str) -> Option<&FunctionDef> {
        self.config.functions.iter().find(|f| f.name.eq_ignore_ascii_case(name))
    }

    /// The function list Core Tools prints at start-up.
    pub fn function_list(&self, port: u16) -> String {
        let mut out = String::from("\nFunctions:\n\n");
        for f in &self.config.functions {
            match &f.trigger {
                Trigger::Http { route, methods, .. } => {
                    let m = methods.as_ref().map(|m| format!("[{}] ", m.join(","))).unwrap_or_default();
                    let fwd = if f.forwarded { " (forwarded)" } else { "" };
                    out.push_str(&format!("\t{}: {m}http://127.0.0.1:{port}/{}{fwd}\n\n", f.name, route.display()));
                }
                Trigger::EventGrid => out.push_str(&format!(
                    "\t{}: eventGridTrigger (POST http://127.0.0.1:{port}/runtime/webhooks/EventGrid?functionName={})\n\n",
                    f.name, f.name
                )),
                Trigger::Timer { expression, .. } => {
                    out.push_str(&format!("\t{}: timerTrigger ({expression})\n\n", f.name))
                }
                Trigger::Other { kind } => out.push_str(&format!("\t{}: {kind} (admin API only)\n\n", f.name)),
            }
        }
        out
    }

    /// Starts the timer tasks.
    pub fn start_timers(self: &Arc<Self>) {
        for f in &self.config.functions {
            if let Some(state) = self.timers.get(&f.name) {
                tokio::spawn(timer::drive(self.clone(), f.clone(), state.clone()));
            }
        }
    }
}

/// The router: everything goes through one dispatcher because paths are
/// matched case-insensitively and against user-defined route templates.
pub fn router(app: Arc<App>) -> Router {
    Router::new().fallback(dispatch).with_state(app)
}

async fn dispatch(State(app): State<Arc<App>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let body = match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(b) => b,
        Err(e) => return (StatusCode::PAYLOAD_TOO_LARGE, e.to_string()).into_response(),
    };
    let path = parts.uri.path().to_string();
    let lower = path.to_ascii_lowercase();
    let lower = lower.trim_end_matches('/');
    if lower == "/runtime/webhooks/eventgrid" {
        return eventgrid::handle(app, parts.method, parts.uri, parts.headers, body).await;
    }
    let presented = keys::presented(&parts.headers, &parts.uri);
    if lower.starts_with("/admin/") {
        if let Some(k) = &app.keys {
            if !k.opens_admin(presented.as_deref()) {
                return StatusCode::UNAUTHORIZED.into_response();
            }
        }
    }
    if let Some(name) = lower.strip_prefix("/admin/functions/") {
        if parts.method == Method::POST {
            let name = crate::route::percent_decode(name);
            return admin_invoke(app, &name, &body).await;
        }
    }
    if lower == "/admin/host/status" && parts.method == Method::GET {
        return axum::Json(json!({"state": "Running", "version": HOST_VERSION})).into_response();
    }
    let mut path_matched = false;
    for &i in &app.http_order {
        let f = &app.config.functions[i];
        let Trigger::Http { route, methods, auth_level } = &f.trigger else {
            continue;
        };
        let Some(params) = route.matches(&path) else {
            continue;
        };
        path_matched = true;
        if let Some(m) = methods {
            if !m.iter().any(|x| x == parts.method.as_str()) {
                continue;
            }
        }
        if let Some(k) = &app.keys {
            if !k.opens(&f.name, *auth_level, presented.as_deref()) {
                return StatusCode::UNAUTHORIZED.into_response();
            }
        }
        let f = f.clone();
        let incoming = IncomingRequest { method: parts.method, uri: parts.uri, headers: parts.headers, body };
        if f.forwarded {
            return http::forward(&app.invoker, &f, incoming).await;
        }
        return http::invoke_http(&app.invoker, &f, incoming, params, &app.fallback_host).await;
    }
    if !path_matched && path == "/" && parts.method == Method::GET {
        return (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            "Your Functions 4.0 app is up and running (devhost)\n",
        )
            .into_response();
    }
    StatusCode::NOT_FOUND.into_response()
}

/// `POST /admin/functions/{name}`: runs a non-HTTP function and answers 202
/// after it completed, with `x-devhost-invocation: succeeded|failed`.
async fn admin_invoke(app: Arc<App>, name: &str, body: &[u8]) -> Response {
    let Some(function) = app.function(name).cloned() else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let input = if body.iter().all(u8::is_ascii_whitespace) {
        Value::String(String::new())
    } else {
        match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(o)) => o.get("input").cloned().unwrap_or(Value::String(String::new())),
            _ => {
                return (StatusCode::BAD_REQUEST, "body must be a JSON object like {\"input\": \"...\"}")
                    .into_response()
            }
        }
    };
    let reason = "This function was programmatically called via the host APIs.";
    let outcome: Result<(), InvocationError> = match &function.trigger {
        Trigger::Http { .. } => {
            return (
                StatusCode::BAD_REQUEST,
                format!("'{}' is an HTTP function; call its route instead", function.name),
            )
                .into_response();
        }
        Trigger::Timer { .. } => match app.timers.get(&function.name) {
            Some(state) => timer::invoke_timer(&app, &function, state, reason).await,
            None => Err(InvocationError::Input("timer state missing".into())),
        },
        Trigger::EventGrid => {
            let event = match input {
                Value::Object(_) => Ok(input),
                Value::String(s) => match serde_json::from_str::<Value>(&s) {
                    Ok(v @ Value::Object(_)) => Ok(v),
                    Ok(_) => Err(InvocationError::Input("the input must be one Event Grid event object".into())),
                    Err(e) => Err(InvocationError::Input(format!("the input is not JSON: {e}"))),
                },
                _ => Err(InvocationError::Input("the input must be one Event Grid event object".into())),
            };
            eventgrid::invoke_event(&app, &function, event, reason).await
        }
        Trigger::Other { .. } => {
            // Other triggers get the input as a string, which the host JSON-encodes again.
            let text = match input {
                Value::String(s) => s,
                other => other.to_string(),
            };
            let mut data = Map::new();
            data.insert(function.trigger_name.clone(), Value::String(Value::String(text).to_string()));
            let mut metadata = Map::new();
            metadata.insert("sys".into(), crate::invoke::sys_metadata(&function.name));
            app.invoker.invoke(&function, reason, Ok(data), metadata, |_| Ok(())).await
        }
    };
    let flag = if outcome.is_ok() { "succeeded" } else { "failed" };
    Response::builder()
        .status(StatusCode::ACCEPTED)
        .header("x-devhost-invocation", flag)
        .body(Body::empty())
        .unwrap_or_else(|_| StatusCode::ACCEPTED.into_response())
}
