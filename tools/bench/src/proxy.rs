//! A counting proxy: forwards every request to one upstream unchanged and counts requests and 412s, so the
//! benchmark knows how many round trips an invocation made without trusting the handler to say.
//!
//! Table Storage's Shared Key signature covers the path, not the host, so a proxy in front of Azurite is
//! transparent to the handler.

use axum::body::{to_bytes, Body};
use axum::extract::{Request, State};
use axum::http::{header, HeaderName, StatusCode};
use axum::response::{IntoResponse, Response};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// What the proxy has counted since the last [`Proxy::take`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Requests forwarded.
    pub requests: u64,
    /// Of those, answered 412 Precondition Failed (a lost ETag race), directly or inside a batch answer.
    pub conflicts: u64,
}

struct Shared {
    upstream: String,
    http: reqwest::Client,
    requests: AtomicU64,
    conflicts: AtomicU64,
}

/// A running proxy.
pub struct Proxy {
    /// Its base URL (`http://127.0.0.1:port`).
    pub url: String,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    /// Starts a proxy to `upstream` (scheme, host and port) on a free port.
    pub async fn start(upstream: &str) -> anyhow::Result<Proxy> {
        let shared = Arc::new(Shared {
            upstream: upstream.trim_end_matches('/').to_owned(),
            http: reqwest::Client::builder().pool_max_idle_per_host(64).build()?,
            requests: AtomicU64::new(0),
            conflicts: AtomicU64::new(0),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let app = axum::Router::new().fallback(forward).with_state(shared.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Proxy { url, shared, task })
    }

    /// The counts so far, resetting them.
    pub fn take(&self) -> Counts {
        Counts {
            requests: self.shared.requests.swap(0, Ordering::SeqCst),
            conflicts: self.shared.conflicts.swap(0, Ordering::SeqCst),
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Hop-by-hop headers, and the length the client library sets again.
fn passes(name: &HeaderName) -> bool {
    ![header::HOST, header::CONNECTION, header::TRANSFER_ENCODING, header::CONTENT_LENGTH].contains(name)
        && name.as_str() != "keep-alive"
}

async fn forward(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    shared.requests.fetch_add(1, Ordering::Relaxed);
    let (parts, body) = request.into_parts();
    let Ok(body) = to_bytes(body, 64 << 20).await else { return StatusCode::BAD_REQUEST.into_response() };
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let mut outgoing = shared.http.request(parts.method, format!("{}{path}", shared.upstream)).body(body);
    for (name, value) in parts.headers.iter().filter(|(n, _)| passes(n)) {
        outgoing = outgoing.header(name, value);
    }
    let answer = match outgoing.send().await {
        Ok(answer) => answer,
        Err(e) => return (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
    };
    let status = answer.status();
    let headers = answer.headers().clone();
    let bytes = answer.bytes().await.unwrap_or_default();
    // A batch is answered 202 with each operation's status inside; a failed batch names the failed one.
    let batch_conflict = status == StatusCode::ACCEPTED
        && headers.get(header::CONTENT_TYPE).is_some_and(|v| v.as_bytes().starts_with(b"multipart/mixed"))
        && bytes.windows(16).any(|w| w == b"HTTP/1.1 412 Pre");
    if status == StatusCode::PRECONDITION_FAILED || batch_conflict {
        shared.conflicts.fetch_add(1, Ordering::Relaxed);
    }
    let mut response = Response::new(Body::from(bytes));
    *response.status_mut() = status;
    for (name, value) in headers.iter().filter(|(n, _)| passes(n)) {
        response.headers_mut().append(name, value.clone());
    }
    response
}
