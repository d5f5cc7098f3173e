//! A Service Bus namespace for tests: the REST Send Message operation (`POST /{entity}/messages`, message
//! properties in the `BrokerProperties` header) on a private port, with the duplicate detection of an
//! entity created with `requiresDuplicateDetection`: a message whose `MessageId` the entity already took is
//! answered `201` like any other and dropped.
//!
//! Every send is appended to `{dir}/{entity}.jsonl` as `{"messageId", "label", "duplicate", "body"}`, so a
//! test sees both what reached subscribers (`duplicate: false`) and how often the product sent. A message
//! without `MessageId` gets a random one, as the broker gives it, and `"assignedId": true`.

use axum::body::Bytes;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use serde_json::{json, Value};
use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

struct Namespace {
    dir: PathBuf,
    seen: Mutex<HashSet<(String, String)>>,
    failures_left: AtomicU32,
}

/// The running namespace; stopped on drop.
pub struct ServiceBus {
    /// Its endpoint, for `SERVICE_BUS_ENDPOINT`.
    pub url: String,
    namespace: Arc<Namespace>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for ServiceBus {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn send(
    State(ns): State<Arc<Namespace>>,
    UrlPath(entity): UrlPath<String>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    if ns.failures_left.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok() {
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    let properties: Value = headers
        .get("BrokerProperties")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| serde_json::from_str(v).ok())
        .unwrap_or(Value::Null);
    let given = properties["MessageId"].as_str().map(str::to_owned);
    let assigned = given.is_none();
    let id = given.unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let text = String::from_utf8_lossy(&body).into_owned();
    let body = serde_json::from_str::<Value>(&text).unwrap_or(Value::String(text));
    let Ok(mut seen) = ns.seen.lock() else { return StatusCode::INTERNAL_SERVER_ERROR };
    let duplicate = !seen.insert((entity.clone(), id.clone()));
    let mut line = json!({ "messageId": id, "label": properties["Label"], "duplicate": duplicate, "body": body });
    if assigned {
        line["assignedId"] = json!(true);
    }
    // Appended under the lock, so lines of concurrent sends never interleave.
    let path = ns.dir.join(format!("{entity}.jsonl"));
    let written =
        std::fs::OpenOptions::new().create(true).append(true).open(&path).and_then(|mut file| writeln!(file, "{line}"));
    drop(seen);
    match written {
        Ok(()) => StatusCode::CREATED,
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl ServiceBus {
    /// Starts a namespace on 127.0.0.1 that writes its entities' messages into `dir`.
    pub async fn start(dir: &Path) -> anyhow::Result<ServiceBus> {
        std::fs::create_dir_all(dir)?;
        let namespace =
            Arc::new(Namespace { dir: dir.to_path_buf(), seen: Mutex::default(), failures_left: AtomicU32::new(0) });
        let app = axum::Router::new().route("/{entity}/messages", post(send)).with_state(namespace.clone());
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let url = format!("http://{}", listener.local_addr()?);
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(ServiceBus { url, namespace, task })
    }

    /// Answers the next `n` sends with `503`, as a namespace in trouble does.
    pub fn fail_next(&self, n: u32) {
        self.namespace.failures_left.store(n, Ordering::SeqCst);
    }

    /// Every send to `entity`, duplicates included.
    pub fn sends(&self, entity: &str) -> Vec<Value> {
        crate::stack::read_jsonl(&self.namespace.dir.join(format!("{entity}.jsonl")))
    }

    /// The messages `entity` kept (duplicate detection dropped the rest), as `(messageId, body)`.
    pub fn delivered(&self, entity: &str) -> Vec<(String, Value)> {
        self.sends(entity)
            .into_iter()
            .filter(|m| m["duplicate"] == json!(false))
            .map(|m| (m["messageId"].as_str().unwrap_or_default().to_owned(), m["body"].clone()))
            .collect()
    }
}
