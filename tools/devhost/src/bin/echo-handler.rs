//! Fake custom handler for devhost's integration tests. It appends every
//! request it receives as one JSON line to `$ECHO_RECORD_FILE`, and answers
//! per `$ECHO_RESPONSES` (a JSON file read on every request mapping a function
//! name, or `*forward*` for forwarded requests, to
//! `{"status": 200, "contentType": "application/json", "body": <string or JSON>}`).
//! With `$ECHO_EXIT_ON_REQUEST` set it exits on the first invocation.
//! Without an entry it answers `{"Outputs":{"res":{"statusCode":200,"body":"ok"}},"Logs":["echo"]}`.

use std::io::Write;

use axum::body::Bytes;
use axum::extract::Request;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

fn record(line: &Value) {
    if let Ok(path) = std::env::var("ECHO_RECORD_FILE") {
        if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(path) {
            // One write per line: `writeln!` may split a line into several writes, and concurrent
            // invocations would then interleave their records.
            let _ = f.write_all(format!("{line}\n").as_bytes());
        }
    }
}

fn spec_for(key: &str) -> Option<Value> {
    let path = std::env::var("ECHO_RESPONSES").ok()?;
    let text = std::fs::read_to_string(path).ok()?;
    let all: Value = serde_json::from_str(&text).ok()?;
    all.get(key).cloned()
}

async fn handle(req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let body: Bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap_or_default();
    let headers: serde_json::Map<String, Value> = parts
        .headers
        .iter()
        .map(|(k, v)| (k.as_str().to_string(), json!(String::from_utf8_lossy(v.as_bytes()))))
        .collect();
    let text = String::from_utf8_lossy(&body).into_owned();
    let path = parts.uri.path().to_string();
    record(&json!({
        "kind": "request",
        "method": parts.method.as_str(),
        "path": path,
        "query": parts.uri.query(),
        "headers": headers,
        "body": serde_json::from_str::<Value>(&text).unwrap_or(Value::String(text.clone())),
    }));
    if parts.method == axum::http::Method::GET && path == "/" {
        return StatusCode::NOT_FOUND.into_response();
    }
    if std::env::var_os("ECHO_EXIT_ON_REQUEST").is_some() {
        // Lets tests see how devhost reacts to a handler that goes away.
        std::process::exit(3);
    }
    let function = path.trim_start_matches('/');
    let key = if function.contains('/') { "*forward*" } else { function };
    let spec = spec_for(key)
        .unwrap_or_else(|| json!({"body": {"Outputs": {"res": {"statusCode": 200, "body": "ok"}}, "Logs": ["echo"]}}));
    if let Some(ms) = spec.get("delayMs").and_then(Value::as_u64) {
        tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
    }
    let status = spec.get("status").and_then(Value::as_u64).unwrap_or(200) as u16;
    let content_type = spec.get("contentType").and_then(Value::as_str).unwrap_or("application/json").to_string();
    let body = match spec.get("body") {
        Some(Value::String(s)) => s.clone(),
        Some(v) => v.to_string(),
        None => String::new(),
    };
    Response::builder()
        .status(StatusCode::from_u16(status).unwrap_or(StatusCode::OK))
        .header("content-type", content_type)
        .header("x-echo", "1")
        .body(axum::body::Body::from(body))
        .unwrap_or_default()
}

#[tokio::main]
async fn main() {
    let port: u16 = std::env::var("FUNCTIONS_CUSTOMHANDLER_PORT").ok().and_then(|p| p.parse().ok()).unwrap_or(3000);
    let env: serde_json::Map<String, Value> = std::env::vars().map(|(k, v)| (k, json!(v))).collect();
    let cwd = std::env::current_dir().map(|p| p.display().to_string()).unwrap_or_default();
    record(
        &json!({"kind": "startup", "pid": std::process::id(), "cwd": cwd, "args": std::env::args().skip(1).collect::<Vec<_>>(), "env": env}),
    );
    let listener = match tokio::net::TcpListener::bind(("127.0.0.1", port)).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("echo-handler cannot bind {port}: {e}");
            std::process::exit(2);
        }
    };
    println!("echo-handler listening on {port}");
    eprintln!("echo-handler stderr check");
    let app = axum::Router::new().fallback(handle);
    let _ = axum::serve(listener, app).await;
}
