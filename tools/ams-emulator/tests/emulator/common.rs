//! Test harness: runs the real `ams-emulator` binary on a free port and an
//! axum webhook that records what Event Grid delivery sends it.

use std::collections::VecDeque;
use std::future::Future;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use reqwest::header::HeaderMap as ReqHeaders;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStdout, Command};

/// Upper bound for any wait in these tests; generous because builds share the machine.
pub const WAIT: Duration = Duration::from_secs(20);
pub const SUB: &str = "00000000-0000-0000-0000-000000000000";
pub const RG: &str = "media-rg";

/// A running emulator process, killed when dropped.
pub struct Emulator {
    _child: Child,
    _stdout: tokio::io::Lines<BufReader<ChildStdout>>,
    pub base: String,
    pub http: reqwest::Client,
}

/// An HTTP answer: status, headers and the body parsed as JSON (Null when empty).
pub struct Reply {
    pub status: u16,
    pub headers: ReqHeaders,
    pub body: Value,
}

impl Reply {
    /// Asserts an ARM error with this status and code, served as JSON.
    pub fn assert_arm_error(&self, status: u16, code: &str) {
        assert_eq!(self.status, status, "body: {}", self.body);
        assert_eq!(self.body["error"]["code"], code, "body: {}", self.body);
        assert!(self.body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()));
        let ct = self.headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("");
        assert!(ct.starts_with("application/json"), "content-type {ct}");
    }
}

impl Emulator {
    /// Starts the binary with `args` (plus `--port 0`) and waits for its listening line.
    pub async fn start(args: &[&str]) -> Emulator {
        let mut child = Command::new(env!("CARGO_BIN_EXE_ams-emulator"))
            .arg("--port")
            .arg("0")
            .args(args)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("emulator binary starts");
        let stdout = child.stdout.take().expect("stdout is piped");
        let mut lines = BufReader::new(stdout).lines();
        let line = tokio::time::timeout(WAIT, lines.next_line())
            .await
            .expect("listening line within the timeout")
            .expect("stdout readable")
            .expect("a line before EOF");
        let base = line
            .strip_prefix("ams-emulator listening on ")
            .unwrap_or_else(|| panic!("unexpected first line: {line}"))
            .to_string();
        assert!(base.starts_with("http://127.0.0.1:"), "{base}");
        Emulator { _child: child, _stdout: lines, base, http: reqwest::Client::new() }
    }

    /// Starts with two accounts (`east`, `west`), fast phases and `extra` arguments.
    pub async fn start_fast(extra: &[&str]) -> Emulator {
        let mut args = vec!["--account", "east:eastus", "--account", "west:westus", "--time-scale", "200"];
        args.extend_from_slice(extra);
        Emulator::start(&args).await
    }

    /// ARM base URL of an account.
    pub fn account_url(&self, account: &str) -> String {
        format!(
            "{}/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.Media/mediaServices/{account}",
            self.base
        )
    }

    pub fn job_url(&self, account: &str, transform: &str, job: &str) -> String {
        format!("{}/transforms/{transform}/jobs/{job}?api-version=2022-07-01", self.account_url(account))
    }

    pub async fn send(&self, method: reqwest::Method, url: &str, body: Option<Value>) -> Reply {
        let mut req = self.http.request(method, url);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp =
            tokio::time::timeout(WAIT, req.send()).await.expect("answer within the timeout").expect("request succeeds");
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = resp.text().await.expect("body readable");
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or_else(|_| panic!("JSON body, got: {text}"))
        };
        Reply { status, headers, body }
    }

    pub async fn get(&self, url: &str) -> Reply {
        self.send(reqwest::Method::GET, url, None).await
    }

    pub async fn put(&self, url: &str, body: Value) -> Reply {
        self.send(reqwest::Method::PUT, url, Some(body)).await
    }

    pub async fn post(&self, url: &str, body: Option<Value>) -> Reply {
        self.send(reqwest::Method::POST, url, body).await
    }

    pub async fn create_transform(&self, account: &str, name: &str) -> Reply {
        let url = format!("{}/transforms/{name}?api-version=2022-07-01", self.account_url(account));
        self.put(
            &url,
            json!({"properties": {"outputs": [{"preset": {
                "@odata.type": "#Microsoft.Media.BuiltInStandardEncoderPreset",
                "presetName": "AdaptiveStreaming"}}]}}),
        )
        .await
    }

    pub async fn create_asset(&self, account: &str, name: &str) -> Reply {
        let url = format!("{}/assets/{name}?api-version=2023-01-01", self.account_url(account));
        self.put(&url, json!({"properties": {}})).await
    }

    pub fn job_body(asset: &str, correlation: Value) -> Value {
        json!({"properties": {
            "input": {"@odata.type": "#Microsoft.Media.JobInputHttp",
                      "baseUri": "https://example.blob.core.windows.net/in/",
                      "files": ["video.mp4?sv=1"]},
            "outputs": [{"@odata.type": "#Microsoft.Media.JobOutputAsset", "assetName": asset}],
            "correlationData": correlation
        }})
    }

    /// Creates transform `t` (idempotent), asset `out-{job}` and the job; returns the PUT reply.
    pub async fn submit(&self, account: &str, transform: &str, job: &str) -> Reply {
        let t = self.create_transform(account, transform).await;
        assert!(t.status == 200 || t.status == 201, "transform: {}", t.body);
        let asset = format!("out-{job}");
        let a = self.create_asset(account, &asset).await;
        assert!(a.status == 200 || a.status == 201, "asset: {}", a.body);
        self.put(&self.job_url(account, transform, job), Emulator::job_body(&asset, json!({"jobId": job}))).await
    }

    /// Current job state through the control API (never touches ARM, so faults do not interfere).
    pub async fn control_state(&self, account: &str, job: &str) -> String {
        let jobs = self.get(&format!("{}/_emulator/jobs?account={account}", self.base)).await;
        jobs.body
            .as_array()
            .expect("job list")
            .iter()
            .find(|j| j["name"] == job)
            .and_then(|j| j["state"].as_str())
            .unwrap_or_else(|| panic!("job {job} not listed"))
            .to_string()
    }

    pub async fn wait_for_state(&self, account: &str, job: &str, state: &str) {
        eventually(&format!("{job} reaches {state}"), || async { self.control_state(account, job).await == state })
            .await;
    }

    pub async fn set_fault(&self, account: &str, fault: Value) -> Reply {
        self.post(&format!("{}/_emulator/accounts/{account}/fault", self.base), Some(fault)).await
    }

    pub async fn set_events(&self, settings: Value) -> Reply {
        self.post(&format!("{}/_emulator/events", self.base), Some(settings)).await
    }

    pub async fn event_counters(&self) -> Value {
        self.get(&format!("{}/_emulator/events", self.base)).await.body["counters"].clone()
    }

    /// Waits until no delivery is in progress or waiting for a retry.
    pub async fn wait_deliveries_settled(&self) {
        eventually("deliveries settle", || async { self.event_counters().await["pending"] == 0 }).await;
    }
}

/// Polls `check` until it holds, failing the test after [`WAIT`].
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if check().await {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// One POST the webhook received.
#[derive(Clone, Debug)]
pub struct Delivery {
    pub headers: HeaderMap,
    pub body: Value,
    pub answered: u16,
}

impl Delivery {
    pub fn header(&self, name: &str) -> &str {
        self.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
    }

    /// The single event of the delivered array.
    pub fn event(&self) -> &Value {
        let arr = self.body.as_array().expect("delivery body is an array");
        assert_eq!(arr.len(), 1, "one event per delivery");
        &arr[0]
    }
}

#[derive(Default)]
struct Inbox {
    deliveries: Vec<Delivery>,
    /// Statuses to answer with before falling back to 200.
    script: VecDeque<u16>,
}

/// A webhook recording every delivery.
pub struct Receiver {
    pub url: String,
    inbox: Arc<Mutex<Inbox>>,
    _task: tokio::task::JoinHandle<()>,
}

async fn receive(State(inbox): State<Arc<Mutex<Inbox>>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let mut inbox = inbox.lock().unwrap();
    let answered = inbox.script.pop_front().unwrap_or(200);
    inbox.deliveries.push(Delivery { headers, body, answered });
    StatusCode::from_u16(answered).unwrap()
}

impl Receiver {
    /// A webhook answering 200 to everything.
    pub async fn start() -> Receiver {
        Receiver::start_scripted(&[]).await
    }

    /// A webhook answering `script` in order, then 200.
    pub async fn start_scripted(script: &[u16]) -> Receiver {
        let inbox = Arc::new(Mutex::new(Inbox { deliveries: Vec::new(), script: script.iter().copied().collect() }));
        let app = Router::new().route("/", post(receive)).with_state(inbox.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Receiver { url, inbox, _task: task }
    }

    pub fn deliveries(&self) -> Vec<Delivery> {
        self.inbox.lock().unwrap().deliveries.clone()
    }

    /// Events from deliveries that were answered with success.
    pub fn accepted_events(&self) -> Vec<Value> {
        self.deliveries().iter().filter(|d| d.answered < 300).map(|d| d.event().clone()).collect()
    }

    pub fn accepted_of_type(&self, event_type: &str) -> Vec<Value> {
        self.accepted_events().into_iter().filter(|e| e["eventType"] == event_type).collect()
    }

    pub async fn wait_for_type(&self, event_type: &str, count: usize) -> Vec<Value> {
        eventually(&format!("{count} {event_type} event(s) arrive"), || async {
            self.accepted_of_type(event_type).len() >= count
        })
        .await;
        self.accepted_of_type(event_type)
    }
}
