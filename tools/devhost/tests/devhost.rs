//! End-to-end tests: the real devhost binary runs the `echo-handler` test
//! binary on a temporary function app, and the tests check what the handler
//! received and what callers got back.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(30);

/// A temporary function app directory, removed on drop.
struct TestApp {
    root: PathBuf,
}

impl TestApp {
    fn new() -> Self {
        let root = std::env::temp_dir().join(format!("devhost-test-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&root).unwrap();
        let app = TestApp { root };
        app.host(json!({
            "version": "2.0",
            "customHandler": {
                "description": {
                    "defaultExecutablePath": env!("CARGO_BIN_EXE_echo-handler"),
                    "arguments": ["--flag", "%ARG_SETTING%"]
                }
            }
        }));
        app.responses(json!({}));
        app
    }

    fn host(&self, v: Value) -> &Self {
        std::fs::write(self.root.join("host.json"), v.to_string()).unwrap();
        self
    }

    fn function(&self, name: &str, bindings: Value) -> &Self {
        let dir = self.root.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("function.json"), json!({ "bindings": bindings }).to_string()).unwrap();
        self
    }

    fn settings(&self, values: Value) -> &Self {
        std::fs::write(
            self.root.join("local.settings.json"),
            json!({"IsEncrypted": false, "Values": values}).to_string(),
        )
        .unwrap();
        self
    }

    /// What the echo handler answers per function (read on every request).
    fn responses(&self, v: Value) -> &Self {
        std::fs::write(self.root.join("responses.json"), v.to_string()).unwrap();
        self
    }

    fn record_file(&self) -> PathBuf {
        self.root.join("record.jsonl")
    }

    fn records(&self) -> Vec<Value> {
        std::fs::read_to_string(self.record_file())
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Requests the handler got at `/{path}`.
    fn requests_to(&self, path: &str) -> Vec<Value> {
        self.records().into_iter().filter(|r| r["kind"] == "request" && r["path"] == path).collect()
    }

    fn output_lines(&self, target: &str) -> Vec<String> {
        std::fs::read_to_string(self.root.join(".local/outputs").join(format!("{target}.jsonl")))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    fn standard(&self) -> &Self {
        self.function(
            "SubmitJob",
            json!([
                {"type": "httpTrigger", "direction": "in", "name": "req", "authLevel": "function", "methods": ["post"], "route": "jobs"},
                {"type": "http", "direction": "out", "name": "res"},
                {"type": "serviceBus", "direction": "out", "name": "alert", "queueName": "job-submitted", "connection": "ServiceBusConnection"}
            ]),
        )
        .function(
            "GetJob",
            json!([
                {"type": "httpTrigger", "direction": "in", "name": "req", "methods": ["get"], "route": "jobs/{id:int}"},
                {"type": "http", "direction": "out", "name": "res"}
            ]),
        )
        .function(
            "Echo",
            json!([
                {"type": "httpTrigger", "direction": "in", "name": "req"},
                {"type": "http", "direction": "out", "name": "$return"}
            ]),
        )
        .function(
            "OnJobStateChange",
            json!([
                {"type": "eventGridTrigger", "direction": "in", "name": "eventGridEvent"},
                {"type": "serviceBus", "direction": "out", "name": "alert", "queueName": "job-alerts", "connection": "ServiceBusConnection"}
            ]),
        )
        .function(
            "SweepStuckJobs",
            json!([
                {"type": "timerTrigger", "direction": "in", "name": "myTimer", "schedule": "%SWEEP_SCHEDULE%", "runOnStartup": false, "useMonitor": true},
                {"type": "serviceBus", "direction": "out", "name": "alert", "topicName": "alerts", "connection": "ServiceBusConnection"}
            ]),
        )
        .settings(json!({
            "FUNCTIONS_WORKER_RUNTIME": "custom",
            "SWEEP_SCHEDULE": "0 0 0 1 1 *",
            "ARG_SETTING": "expanded-arg"
        }))
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// A running devhost process.
struct Devhost {
    child: Child,
    port: u16,
    stderr: Arc<Mutex<String>>,
    client: reqwest::Client,
}

/// Starts devhost and returns its first stdout line or the captured stderr on failure.
fn launch(app: &TestApp, extra_args: &[&str], env: &[(&str, &str)]) -> Result<Devhost, (Child, String)> {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_devhost"));
    cmd.arg("--app-root")
        .arg(&app.root)
        .args(["--port", "0"])
        .args(extra_args)
        .env("ECHO_RECORD_FILE", app.record_file())
        .env("ECHO_RESPONSES", app.root.join("responses.json"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let stderr = Arc::new(Mutex::new(String::new()));
    let err_pipe = child.stderr.take().unwrap();
    let sink = stderr.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(err_pipe).lines().map_while(Result::ok) {
            let mut s = sink.lock().unwrap();
            s.push_str(&line);
            s.push('\n');
        }
    });
    let out_pipe = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out_pipe).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    match rx.recv_timeout(WAIT) {
        Ok(line) => {
            let port = line
                .strip_prefix("devhost listening on http://127.0.0.1:")
                .and_then(|p| p.parse().ok())
                .unwrap_or_else(|| panic!("unexpected first stdout line: {line}"));
            Ok(Devhost { child, port, stderr, client: reqwest::Client::builder().no_proxy().build().unwrap() })
        }
        Err(_) => {
            // Give the stderr reader a moment to collect the failure message.
            let deadline = Instant::now() + WAIT;
            while child.try_wait().unwrap().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            std::thread::sleep(Duration::from_millis(200));
            let text = stderr.lock().unwrap().clone();
            Err((child, text))
        }
    }
}

fn start(app: &TestApp) -> Devhost {
    start_with(app, &[], &[])
}

fn start_with(app: &TestApp, args: &[&str], env: &[(&str, &str)]) -> Devhost {
    match launch(app, args, env) {
        Ok(d) => d,
        Err((mut child, err)) => {
            let _ = child.kill();
            panic!("devhost did not start:\n{err}");
        }
    }
}

impl Devhost {
    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{}", self.port, path)
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    async fn wait_stderr(&self, needle: &str) -> String {
        wait_until(|| self.stderr().contains(needle).then(|| self.stderr()), &format!("stderr to contain {needle:?}"))
            .await
    }

    async fn event_grid(&self, function: &str, event_type: Option<&str>, body: &Value) -> reqwest::Response {
        let mut req = self
            .client
            .post(self.url(&format!("/runtime/webhooks/EventGrid?functionName={function}")))
            .header("content-type", "application/json")
            .body(body.to_string());
        if let Some(t) = event_type {
            req = req.header("aeg-event-type", t);
        }
        req.send().await.unwrap()
    }
}

impl Drop for Devhost {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `f` every 50 ms until it yields a value, failing after [`WAIT`].
async fn wait_until<T>(mut f: impl FnMut() -> Option<T>, what: &str) -> T {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn wait_requests(app: &TestApp, path: &str, n: usize) -> Vec<Value> {
    wait_until(
        || {
            let r = app.requests_to(path);
            (r.len() >= n).then_some(r)
        },
        &format!("{n} request(s) to {path}"),
    )
    .await
}

fn keys(v: &Value) -> Vec<String> {
    let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
    k.sort();
    k
}

fn pid_alive(pid: u64) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // A zombie has exited; only its parent has not collected it yet.
        Ok(stat) => !stat.rsplit(')').next().unwrap_or("").trim_start().starts_with('Z'),
        Err(_) => false,
    }
}

// ---------------------------------------------------------------- HTTP

#[tokio::test]
async fn an_http_post_reaches_the_handler_with_the_exact_request_shape() {
    let app = TestApp::new();
    app.standard();
    let dh = start(&app);
    let body = r#"{"inputUrl":"https://example.com/in.mp4","label":"x"}"#;
    let resp = dh
        .client
        .post(dh.url("/api/jobs?priority=High&tag=a&tag=b"))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/plain; charset=utf-8");
    assert_eq!(resp.text().await.unwrap(), "ok");

    let rec = &wait_requests(&app, "/SubmitJob", 1).await[0];
    assert_eq!(rec["method"], "POST");
    let h = &rec["headers"];
    assert_eq!(h["content-type"], "application/json; charset=utf-8");
    assert_eq!(h["x-azure-functions-hostversion"], "4.1037.0");
    assert_eq!(h["user-agent"], "Azure-Functions-Host/4.1037.0");
    assert!(uuid::Uuid::parse_str(h["x-azure-functions-invocationid"].as_str().unwrap()).is_ok());

    let payload = &rec["body"];
    assert_eq!(keys(payload), vec!["Data", "Metadata"]);
    assert_eq!(keys(&payload["Data"]), vec!["req"]);
    let req = &payload["Data"]["req"];
    assert_eq!(keys(req), vec!["Body", "Headers", "Identities", "Method", "Query", "Url"]);
    assert_eq!(req["Url"], format!("http://127.0.0.1:{}/api/jobs?priority=High&tag=a&tag=b", dh.port));
    assert_eq!(req["Method"], "POST");
    assert_eq!(req["Query"], json!({"priority": "High", "tag": "a,b"}));
    assert_eq!(req["Headers"]["Content-Type"], json!(["application/json"]));
    assert_eq!(req["Headers"]["Content-Length"], json!([body.len().to_string()]));
    assert_eq!(req["Body"], body);
    let identity = &req["Identities"][0];
    assert_eq!(identity["AuthenticationType"], "WebJobsAuthLevel");
    assert_eq!(identity["IsAuthenticated"], true);
    assert_eq!(req["Identities"].as_array().unwrap().len(), 1);

    let meta = &payload["Metadata"];
    assert_eq!(meta["Query"], json!({"priority": "High", "tag": "a,b"}));
    assert_eq!(meta["sys"]["MethodName"], "SubmitJob");
    assert!(meta["sys"]["UtcNow"].as_str().unwrap().ends_with('Z'));
    assert!(uuid::Uuid::parse_str(meta["sys"]["RandGuid"].as_str().unwrap()).is_ok());

    let err = dh.wait_stderr("[SubmitJob] echo").await;
    assert!(err.contains("Executed 'Functions.SubmitJob' (Succeeded"), "{err}");
}

#[tokio::test]
async fn a_get_without_a_body_has_no_body_key_and_carries_route_params() {
    let app = TestApp::new();
    app.standard();
    let dh = start(&app);
    let resp = dh.client.get(dh.url("/API/Jobs/42")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let rec = &wait_requests(&app, "/GetJob", 1).await[0];
    let req = &rec["body"]["Data"]["req"];
    assert!(req.get("Body").is_none(), "{req}");
    assert_eq!(req["Params"], json!({"id": "42"}));
    assert_eq!(req["Query"], json!({}));
    assert_eq!(req["Method"], "GET");
    // Route values are binding-data strings, which the host JSON-encodes again.
    assert_eq!(rec["body"]["Metadata"]["id"], "\"42\"");
}

#[tokio::test]
async fn routes_without_params_omit_params_and_unknown_routes_or_methods_answer_404() {
    let app = TestApp::new();
    app.standard();
    let dh = start(&app);
    let resp = dh.client.post(dh.url("/api/jobs/42")).send().await.unwrap();
    assert_eq!(resp.status(), 404);
    let resp = dh.client.get(dh.url("/api/nothing")).send().await.unwrap();
    assert_eq!(resp.status(), 404);
    let resp = dh.client.post(dh.url("/api/jobs")).body("").send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let rec = &wait_requests(&app, "/SubmitJob", 1).await[0];
    assert!(rec["body"]["Data"]["req"].get("Params").is_none());
    assert!(rec["body"]["Data"]["req"].get("Body").is_none());
    assert!(app.requests_to("/GetJob").is_empty());
}

#[tokio::test]
async fn octet_stream_bodies_are_sent_as_base64() {
    let app = TestApp::new();
    app.standard();
    let dh = start(&app);
    dh.client
        .post(dh.url("/api/Echo"))
        .header("content-type", "application/octet-stream")
        .body(vec![0u8, 1, 2, 255])
        .send()
        .await
        .unwrap();
    let rec = &wait_requests(&app, "/Echo", 1).await[0];
    assert_eq!(rec["body"]["Data"]["req"]["Body"], "AAEC/w==");
}

// ---------------------------------------------------------------- response mapping

#[tokio::test]
async fn a_string_status_code_headers_and_body_are_passed_to_the_caller() {
    let app = TestApp::new();
    app.standard().responses(json!({"SubmitJob": {"body": {"Outputs": {"res": {
        "statusCode": "201",
        "headers": {"Content-Type": "application/json", "X-Job": "j1"},
        "body": "{\"id\":\"j1\"}"
    }}}}}));
    let dh = start(&app);
    let resp = dh.client.post(dh.url("/api/jobs")).body("{}").send().await.unwrap();
    assert_eq!(resp.status(), 201);
    assert_eq!(resp.headers()["content-type"], "application/json");
    assert_eq!(resp.headers()["x-job"], "j1");
    assert_eq!(resp.text().await.unwrap(), r#"{"id":"j1"}"#);
}

#[tokio::test]
async fn object_bodies_missing_res_and_ignored_status_map_like_the_host() {
    let app = TestApp::new();
    app.standard();
    let dh = start(&app);
    let post = || dh.client.post(dh.url("/api/jobs")).body("{}").send();

    app.responses(json!({"SubmitJob": {"body": {"Outputs": {"res": {"statusCode": 202, "body": {"a": 1}}}}}}));
    let resp = post().await.unwrap();
    assert_eq!(resp.status(), 202);
    assert_eq!(resp.headers()["content-type"], "text/plain; charset=utf-8");
    assert_eq!(resp.text().await.unwrap(), "{\n  \"a\": 1\n}");

    app.responses(json!({"SubmitJob": {"body": {"Outputs": {}}}}));
    let resp = post().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().await.unwrap(), "{}");

    app.responses(json!({"SubmitJob": {"body": {"outputs": {"res": {"status": 404, "body": "x"}}}}}));
    let resp = post().await.unwrap();
    assert_eq!(resp.status(), 200, "status is ignored and top-level keys are case-insensitive");
    assert_eq!(resp.text().await.unwrap(), "x");
}

#[tokio::test]
async fn failed_invocations_give_the_caller_500() {
    let app = TestApp::new();
    app.standard();
    let dh = start(&app);
    let cases = [
        json!({"contentType": "text/plain", "body": "{\"Outputs\":{}}"}),
        json!({"body": "{not json"}),
        json!({"status": 500, "body": {"Outputs": {"res": {"statusCode": 200}}}}),
        json!({"body": {"Outputs": {"res": "hello"}}}),
    ];
    for case in cases {
        app.responses(json!({ "SubmitJob": case }));
        let resp = dh.client.post(dh.url("/api/jobs")).body("{}").send().await.unwrap();
        assert_eq!(resp.status(), 500, "case {case}");
    }
    dh.wait_stderr("Executed 'Functions.SubmitJob' (Failed").await;
}

#[tokio::test]
async fn return_value_answers_for_dollar_return_bindings() {
    let app = TestApp::new();
    app.standard().responses(json!({"Echo": {"body": {"ReturnValue": {"statusCode": 202, "body": "accepted"}}}}));
    let dh = start(&app);
    let resp = dh.client.get(dh.url("/api/echo")).send().await.unwrap();
    assert_eq!(resp.status(), 202);
    assert_eq!(resp.text().await.unwrap(), "accepted");
}

// ---------------------------------------------------------------- outputs

#[tokio::test]
async fn service_bus_outputs_land_one_line_per_message() {
    let app = TestApp::new();
    app.standard();
    let dh = start(&app);
    let post = || dh.client.post(dh.url("/api/jobs")).body("{}").send();

    app.responses(json!({"SubmitJob": {"body": {"Outputs": {"alert": [{"jobId": "a"}, {"jobId": "b"}], "res": {"statusCode": 202}}}}}));
    assert_eq!(post().await.unwrap().status(), 202);
    assert_eq!(app.output_lines("job-submitted"), vec![r#"{"jobId":"a"}"#, r#"{"jobId":"b"}"#]);

    app.responses(json!({"SubmitJob": {"body": {"Outputs": {"alert": "{ \"jobId\": \"c\" }"}}}}));
    post().await.unwrap();
    app.responses(json!({"SubmitJob": {"body": {"Outputs": {"alert": "[1, \"two\"]"}}}}));
    post().await.unwrap();
    app.responses(json!({"SubmitJob": {"body": {"Outputs": {"Alert": {"ignored": true}, "alert": null}}}}));
    post().await.unwrap();
    app.responses(json!({"SubmitJob": {"body": {"Outputs": {"alert": "aGVsbG8="}}}}));
    post().await.unwrap();
    assert_eq!(
        app.output_lines("job-submitted"),
        vec![r#"{"jobId":"a"}"#, r#"{"jobId":"b"}"#, r#"{"jobId":"c"}"#, "1", r#""two""#, r#""hello""#]
    );
    dh.wait_stderr("valid base64").await;
}

#[tokio::test]
async fn concurrent_invocations_never_interleave_output_lines() {
    let app = TestApp::new();
    app.standard().responses(json!({"SubmitJob": {"body": {"Outputs": {
        "alert": (0..20).map(|i| json!({"n": i, "pad": "x".repeat(200)})).collect::<Vec<_>>()
    }}}}));
    let dh = start(&app);
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..10 {
        let req = dh.client.post(dh.url("/api/jobs")).body("{}");
        set.spawn(async move { req.send().await.unwrap().status() });
    }
    while let Some(s) = set.join_next().await {
        assert_eq!(s.unwrap(), 200);
    }
    let lines = app.output_lines("job-submitted");
    assert_eq!(lines.len(), 200);
    for l in lines {
        let v: Value = serde_json::from_str(&l).unwrap();
        assert!(v["n"].is_number());
    }
}

// ---------------------------------------------------------------- Event Grid

fn event(id: &str, state: &str) -> Value {
    json!({
        "topic": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Media/mediaservices/acc",
        "subject": "transforms/T/jobs/job-1",
        "eventType": "Microsoft.Media.JobStateChange",
        "eventTime": "2018-10-12T16:25:56.4115495",
        "id": id,
        "data": {"previousState": "Scheduled", "state": state, "correlationData": {"requestId": "abc"}},
        "dataVersion": "1.0",
        "metadataVersion": "1"
    })
}

#[tokio::test]
async fn event_grid_notifications_invoke_once_per_event_with_the_event_as_an_object() {
    let app = TestApp::new();
    app.standard().responses(json!({"OnJobStateChange": {"body": {"Outputs": {"alert": {"kind": "state"}}}}}));
    let dh = start(&app);
    let events = json!([event("e1", "Processing"), event("e2", "Finished")]);
    let resp = dh.event_grid("OnJobStateChange", Some("Notification"), &events).await;
    assert_eq!(resp.status(), 202);
    let recs = wait_requests(&app, "/OnJobStateChange", 2).await;
    assert_eq!(recs.len(), 2);
    for rec in &recs {
        let payload = &rec["body"];
        assert_eq!(keys(&payload["Data"]), vec!["eventGridEvent"]);
        let ev = &payload["Data"]["eventGridEvent"];
        assert!(ev.is_object());
        let expected = if ev["id"] == "e1" { &events[0] } else { &events[1] };
        assert_eq!(ev, expected);
        assert_eq!(keys(&payload["Metadata"]), vec!["data", "sys"]);
        assert_eq!(payload["Metadata"]["data"], expected["data"]);
        assert_eq!(payload["Metadata"]["sys"]["MethodName"], "OnJobStateChange");
    }
    assert_eq!(app.output_lines("job-alerts"), vec![r#"{"kind":"state"}"#; 2]);

    let resp = dh.event_grid("onjobstatechange", Some("Notification"), &event("e3", "Error")).await;
    assert_eq!(resp.status(), 202, "a single object is one event");
    wait_requests(&app, "/OnJobStateChange", 3).await;
}

#[tokio::test]
async fn the_validation_handshake_is_answered_without_invoking_the_handler() {
    let app = TestApp::new();
    app.standard();
    let dh = start(&app);
    let body = json!([{
        "id": "2d1781af", "topic": "/subscriptions/x", "subject": "",
        "data": {"validationCode": "512d38b6-c7b8-40c8-89fe-f46f9e9622b6", "validationUrl": "https://example/validate"},
        "eventType": "Microsoft.EventGrid.SubscriptionValidationEvent",
        "eventTime": "2018-01-25T22:12:19.4556811Z", "metadataVersion": "1", "dataVersion": "1"
    }]);
    let resp = dh.event_grid("OnJobStateChange", Some("SubscriptionValidation"), &body).await;
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v, json!({"validationResponse": "512d38b6-c7b8-40c8-89fe-f46f9e9622b6"}));
    assert!(app.requests_to("/OnJobStateChange").is_empty());
}

#[tokio::test]
async fn event_grid_answers_400_404_202_and_500_like_the_extension() {
    let app = TestApp::new();
    app.standard();
    let dh = start(&app);
    let ev = json!([event("e1", "Finished")]);
    assert_eq!(dh.event_grid("OnJobStateChange", None, &ev).await.status(), 400);
    assert_eq!(dh.event_grid("OnJobStateChange", Some("Bogus"), &ev).await.status(), 400);
    assert_eq!(dh.event_grid("Nope", Some("Notification"), &ev).await.status(), 404);
    assert_eq!(dh.event_grid("SubmitJob", Some("Notification"), &ev).await.status(), 404);
    assert_eq!(dh.event_grid("OnJobStateChange", Some("Unsubscribe"), &ev).await.status(), 202);
    assert!(app.requests_to("/OnJobStateChange").is_empty());

    // One failing event out of two fails the whole delivery.
    app.responses(json!({"OnJobStateChange": {"status": 500, "body": "boom"}}));
    let two = json!([event("e1", "Finished"), event("e2", "Error")]);
    let resp = dh.event_grid("OnJobStateChange", Some("Notification"), &two).await;
    assert_eq!(resp.status(), 500);
    assert!(resp.text().await.unwrap().contains("OnJobStateChange"));

    let resp = dh
        .client
        .request(reqwest::Method::OPTIONS, dh.url("/runtime/webhooks/eventgrid?functionName=OnJobStateChange"))
        .header("WebHook-Request-Origin", "eventgrid.azure.net")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["webhook-allowed-origin"], "eventgrid.azure.net");
}

// ---------------------------------------------------------------- timers and admin

#[tokio::test]
async fn a_run_on_startup_timer_with_the_monitor_gets_a_schedule_status() {
    let app = TestApp::new();
    app.function(
        "Sweep",
        json!([{"type": "timerTrigger", "direction": "in", "name": "myTimer", "schedule": "%SWEEP_SCHEDULE%", "runOnStartup": true}]),
    )
    .settings(json!({"SWEEP_SCHEDULE": "0 0 0 1 1 *", "ARG_SETTING": "a"}));
    let dh = start(&app);
    let rec = &wait_requests(&app, "/Sweep", 1).await[0];
    let payload = &rec["body"];
    let info = &payload["Data"]["myTimer"];
    assert_eq!(keys(info), vec!["IsPastDue", "Schedule", "ScheduleStatus"]);
    assert_eq!(info["Schedule"], json!({"AdjustForDST": true}));
    assert_eq!(info["IsPastDue"], false);
    let status = &info["ScheduleStatus"];
    assert_eq!(keys(status), vec!["Last", "LastUpdated", "Next"]);
    assert_eq!(status["Last"], "0001-01-01T00:00:00");
    assert!(status["Next"].as_str().unwrap().ends_with("-01-01T00:00:00+00:00"), "{status}");
    assert_eq!(keys(&payload["Metadata"]), vec!["sys"]);
    assert_eq!(payload["Metadata"]["sys"]["MethodName"], "Sweep");
    dh.wait_stderr("Executed 'Functions.Sweep' (Succeeded").await;
}

#[tokio::test]
async fn a_sub_minute_schedule_fires_by_itself_without_a_schedule_status() {
    let app = TestApp::new();
    app.function(
        "Fast",
        json!([{"type": "timerTrigger", "direction": "in", "name": "t", "schedule": "* * * * * *", "useMonitor": true}]),
    );
    let _dh = start(&app);
    let rec = &wait_requests(&app, "/Fast", 1).await[0];
    assert_eq!(rec["body"]["Data"]["t"]["ScheduleStatus"], Value::Null);
}

#[tokio::test]
async fn a_timer_never_overlaps_itself() {
    let app = TestApp::new();
    app.function("Slow", json!([{"type": "timerTrigger", "direction": "in", "name": "t", "schedule": "* * * * * *"}]))
        .responses(json!({"Slow": {"delayMs": 2500, "body": {}}}));
    let dh = start(&app);
    dh.wait_stderr("previous run is still in progress").await;
}

#[tokio::test]
async fn admin_invoke_runs_non_http_functions_and_reports_the_outcome() {
    let app = TestApp::new();
    app.standard();
    let dh = start(&app);
    let admin =
        |name: &str, body: Value| dh.client.post(dh.url(&format!("/admin/functions/{name}"))).json(&body).send();

    let resp = admin("SweepStuckJobs", json!({"input": ""})).await.unwrap();
    assert_eq!(resp.status(), 202);
    assert_eq!(resp.headers()["x-devhost-invocation"], "succeeded");
    let rec = &app.requests_to("/SweepStuckJobs")[0];
    assert!(rec["body"]["Data"]["myTimer"]["ScheduleStatus"].is_object());

    let ev = event("admin-1", "Finished");
    let resp = admin("OnJobStateChange", json!({"input": ev.to_string()})).await.unwrap();
    assert_eq!(resp.headers()["x-devhost-invocation"], "succeeded");
    let rec = &app.requests_to("/OnJobStateChange")[0];
    assert_eq!(rec["body"]["Data"]["eventGridEvent"], ev);
    assert_eq!(rec["body"]["Metadata"]["data"], ev["data"]);

    app.responses(json!({"SweepStuckJobs": {"status": 500, "body": "boom"}}));
    let resp = admin("SweepStuckJobs", json!({"input": ""})).await.unwrap();
    assert_eq!(resp.status(), 202);
    assert_eq!(resp.headers()["x-devhost-invocation"], "failed");

    let resp = admin("OnJobStateChange", json!({"input": "not json"})).await.unwrap();
    assert_eq!(resp.headers()["x-devhost-invocation"], "failed");

    assert_eq!(admin("Missing", json!({"input": ""})).await.unwrap().status(), 404);
}

// ---------------------------------------------------------------- forwarding

#[tokio::test]
async fn forwarding_sends_the_raw_request_to_the_original_path() {
    let app = TestApp::new();
    app.standard().host(json!({
        "version": "2.0",
        "customHandler": {
            "description": {"defaultExecutablePath": env!("CARGO_BIN_EXE_echo-handler")},
            "enableForwardingHttpRequest": true
        }
    }));
    app.responses(json!({"*forward*": {"status": 418, "contentType": "text/plain", "body": "teapot"}}));
    let dh = start(&app);
    let resp = dh.client.put(dh.url("/api/jobs/7?q=1&q=2")).header("x-custom", "v").body("raw body").send().await;
    // GetJob only allows GET; a PUT is a 404 even when forwarded.
    assert_eq!(resp.unwrap().status(), 404);
    let resp = dh.client.get(dh.url("/api/jobs/7?q=1&q=2")).header("x-custom", "v").send().await.unwrap();
    assert_eq!(resp.status(), 418);
    assert_eq!(resp.headers()["x-echo"], "1");
    assert_eq!(resp.text().await.unwrap(), "teapot");
    let rec = &wait_requests(&app, "/api/jobs/7", 1).await[0];
    assert_eq!(rec["method"], "GET");
    assert_eq!(rec["query"], "q=1&q=2");
    assert_eq!(rec["headers"]["x-custom"], "v");
    assert_eq!(rec["headers"]["x-azure-functions-hostversion"], "4.1037.0");

    // SubmitJob has a Service Bus output too, so it keeps the default protocol.
    let resp = dh.client.post(dh.url("/api/jobs")).body("{}").send().await.unwrap();
    assert_eq!(resp.status(), 200);
    wait_requests(&app, "/SubmitJob", 1).await;
}

// ---------------------------------------------------------------- start-up and process

#[tokio::test]
async fn settings_and_host_variables_reach_the_handler_and_the_environment_wins() {
    let app = TestApp::new();
    app.standard().settings(json!({
        "SWEEP_SCHEDULE": "0 0 0 1 1 *",
        "ARG_SETTING": "expanded-arg",
        "FROM_LOCAL": "local-value",
        "BOTH": "from-local"
    }));
    let dh = start_with(&app, &[], &[("BOTH", "from-env")]);
    let startup = wait_until(|| app.records().into_iter().find(|r| r["kind"] == "startup"), "handler start-up").await;
    let env = &startup["env"];
    assert_eq!(env["FROM_LOCAL"], "local-value");
    assert_eq!(env["BOTH"], "from-env");
    let port = env["FUNCTIONS_CUSTOMHANDLER_PORT"].as_str().unwrap();
    assert!(port.parse::<u16>().is_ok());
    assert_eq!(env["FUNCTIONS_HTTPWORKER_PORT"], port);
    assert!(uuid::Uuid::parse_str(env["FUNCTIONS_CUSTOMHANDLER_WORKER_ID"].as_str().unwrap()).is_ok());
    assert_eq!(env["FUNCTIONS_HTTPWORKER_ID"], env["FUNCTIONS_CUSTOMHANDLER_WORKER_ID"]);
    let root = std::fs::canonicalize(&app.root).unwrap();
    assert_eq!(env["FUNCTIONS_APP_ROOT_PATH"], root.display().to_string());
    assert_eq!(startup["cwd"], root.display().to_string());
    assert_eq!(startup["args"], json!(["--flag", "expanded-arg"]));
    let err = dh.wait_stderr("[handler] echo-handler listening on").await;
    assert!(
        err.contains(
            "Skipping 'BOTH' from local.settings.json as it's already defined in current environment variables"
        ),
        "{err}"
    );
    assert!(!err.contains("Skipping 'FROM_LOCAL'"));
    dh.wait_stderr("[handler] echo-handler stderr check").await;
    assert!(err.contains("SubmitJob: [POST] http://127.0.0.1:"), "{err}");
}

#[tokio::test]
async fn the_handler_flag_overrides_host_json() {
    let app = TestApp::new();
    app.standard().host(json!({"customHandler": {"description": {"defaultExecutablePath": "does-not-exist"}}}));
    let dh = start_with(&app, &["--handler", env!("CARGO_BIN_EXE_echo-handler")], &[]);
    let resp = dh.client.get(dh.url("/api/jobs/1")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
}

fn expect_start_failure(app: &TestApp) -> String {
    match launch(app, &[], &[]) {
        Ok(_) => panic!("devhost started although the app is invalid"),
        Err((mut child, err)) => {
            let status = child.wait().unwrap();
            assert!(!status.success());
            err
        }
    }
}

#[tokio::test]
async fn a_missing_schedule_setting_stops_start_up_with_a_clear_message() {
    let app = TestApp::new();
    app.standard().settings(json!({"ARG_SETTING": "a"}));
    let err = expect_start_failure(&app);
    assert!(err.contains("SWEEP_SCHEDULE") && err.contains("function.json"), "{err}");
}

#[tokio::test]
async fn a_bad_function_json_stops_start_up_naming_the_file() {
    let app = TestApp::new();
    app.standard();
    std::fs::write(app.root.join("GetJob/function.json"), "{ not json").unwrap();
    let err = expect_start_failure(&app);
    assert!(err.contains(&Path::new("GetJob").join("function.json").display().to_string()), "{err}");

    let app = TestApp::new();
    app.host(json!({"version": "2.0"}));
    let err = expect_start_failure(&app);
    assert!(err.contains("host.json") && err.contains("customHandler"), "{err}");
}

#[tokio::test]
async fn devhost_exits_non_zero_when_the_handler_exits() {
    let app = TestApp::new();
    app.standard();
    let mut dh = start_with(&app, &[], &[("ECHO_EXIT_ON_REQUEST", "1")]);
    let _ = dh.client.get(dh.url("/api/jobs/1")).send().await;
    let status = wait_until(|| dh.child.try_wait().unwrap(), "devhost to exit").await;
    assert!(!status.success());
    dh.wait_stderr("handler process exited").await;
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn the_handler_dies_with_devhost_even_on_sigkill() {
    let app = TestApp::new();
    app.standard();
    let mut dh = start(&app);
    let startup = wait_until(|| app.records().into_iter().find(|r| r["kind"] == "startup"), "handler start-up").await;
    let pid = startup["pid"].as_u64().unwrap();
    assert!(pid_alive(pid));
    dh.child.kill().unwrap();
    dh.child.wait().unwrap();
    wait_until(|| (!pid_alive(pid)).then_some(()), "the handler to exit").await;
}

#[cfg(unix)]
#[tokio::test]
async fn sigterm_stops_devhost_and_the_handler() {
    let app = TestApp::new();
    app.standard();
    let mut dh = start(&app);
    let startup = wait_until(|| app.records().into_iter().find(|r| r["kind"] == "startup"), "handler start-up").await;
    let pid = startup["pid"].as_u64().unwrap();
    // SAFETY: plain kill(2) on a child we own.
    unsafe {
        libc::kill(dh.child.id() as libc::pid_t, libc::SIGTERM);
    }
    let status = wait_until(|| dh.child.try_wait().unwrap(), "devhost to exit").await;
    assert!(status.success());
    wait_until(|| (!pid_alive(pid)).then_some(()), "the handler to exit").await;
}

#[tokio::test]
async fn outputs_go_to_the_outputs_dir_and_a_failed_write_fails_the_invocation() {
    let app = TestApp::new();
    app.standard().responses(json!({"OnJobStateChange": {"body": {"Outputs": {"alert": {"a": 1}}}}}));
    let custom = app.root.join("custom-out");
    let dh = start_with(&app, &["--outputs-dir", custom.to_str().unwrap()], &[]);
    let ev = json!([event("e1", "Finished")]);
    assert_eq!(dh.event_grid("OnJobStateChange", Some("Notification"), &ev).await.status(), 202);
    let written = std::fs::read_to_string(custom.join("job-alerts.jsonl")).unwrap();
    assert_eq!(written, "{\"a\":1}\n");
    drop(dh);

    // A regular file where the directory should be makes every write fail.
    let blocked = app.root.join("blocked");
    std::fs::write(&blocked, "not a directory").unwrap();
    let dh = start_with(&app, &["--outputs-dir", blocked.to_str().unwrap()], &[]);
    assert_eq!(dh.event_grid("OnJobStateChange", Some("Notification"), &ev).await.status(), 500);
    app.responses(json!({"SubmitJob": {"body": {"Outputs": {"alert": {"a": 1}, "res": {"statusCode": 201}}}}}));
    let resp = dh.client.post(dh.url("/api/jobs")).body("{}").send().await.unwrap();
    assert_eq!(resp.status(), 500);
    dh.wait_stderr("output binding 'alert' failed").await;
}

/// The product's own HTTP functions, as deployed: their function.json files from the repository root.
fn product_functions(app: &TestApp) {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    for name in ["SubmitJob", "GetJob", "GetStatus", "OnMkioEvent"] {
        let text = std::fs::read_to_string(repo.join(name).join("function.json")).unwrap();
        app.function(name, serde_json::from_str::<Value>(&text).unwrap()["bindings"].clone());
    }
}

#[tokio::test]
async fn with_keys_a_client_key_opens_the_client_api_but_not_the_operator_api() {
    let app = TestApp::new();
    product_functions(&app);
    app.settings(json!({"FUNCTIONS_WORKER_RUNTIME": "custom"}));
    // The keys infra creates: `client` on the client functions, `operator` on the operator ones.
    let keys = app.root.join("keys.json");
    std::fs::write(
        &keys,
        json!({"masterKey": "master-1", "functionKeys": {
            "SubmitJob": {"client": "client-1"}, "GetJob": {"client": "client-1"}, "GetStatus": {"operator": "op-1"}}})
        .to_string(),
    )
    .unwrap();
    let dh = start_with(&app, &["--keys", keys.to_str().unwrap()], &[]);
    let status = |r: reqwest::Response| r.status().as_u16();
    let get = |path: &str, key: Option<&str>| {
        let mut req = dh.client.get(dh.url(path));
        if let Some(k) = key {
            req = req.header("x-functions-key", k);
        }
        req.send()
    };
    assert_eq!(status(get("/api/status", Some("client-1")).await.unwrap()), 401, "client key on GetStatus");
    assert_eq!(status(get("/api/status", None).await.unwrap()), 401, "no key");
    assert_eq!(status(get("/api/status", Some("op-1")).await.unwrap()), 200);
    assert_eq!(status(get("/api/status?code=master-1", None).await.unwrap()), 200, "the master key opens all");
    assert_eq!(status(get("/api/jobs/j1?code=client-1", None).await.unwrap()), 200);
    assert_eq!(status(get("/api/jobs/j1", Some("op-1")).await.unwrap()), 401, "operator key on GetJob");
    let post = dh.client.post(dh.url("/api/jobs?code=client-1")).body("{}").send().await.unwrap();
    assert_eq!(post.status(), 200);
    let webhook = dh.client.post(dh.url("/api/events/mkio")).body("{}").send().await.unwrap();
    assert_eq!(webhook.status(), 200, "OnMkioEvent is anonymous: it checks its own shared secret");
    let admin = dh.client.post(dh.url("/admin/functions/GetStatus")).body("{}").send().await.unwrap();
    assert_eq!(admin.status(), 401, "the admin API takes the master key only");
    // Refused calls never reached the handler.
    assert_eq!(app.requests_to("/GetStatus").len(), 2);
    assert_eq!(app.requests_to("/GetJob").len(), 1);
}
