//! MK.IO webhooks: rules (masked authentication, whole-spec PUT), CloudEvents deliveries of JobStarted and
//! JobFinished with the rule's headers and query parameters, retries, the delivery history and the chaos
//! settings.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::routing::post;
use axum::Router;
use reqwest::Method;
use serde_json::{json, Value};

use super::{assert_mkio_error, url, Client};
use crate::common::{eventually, Emulator};

/// One POST the receiver got.
#[derive(Clone, Debug)]
struct Hit {
    uri: Uri,
    headers: HeaderMap,
    body: Value,
    answered: u16,
}

#[derive(Default)]
struct Inbox {
    hits: Vec<Hit>,
    script: VecDeque<u16>,
    always: Option<u16>,
}

/// A webhook receiver that records URI, headers and body, answering a script of statuses then 200 (or
/// always the same status).
struct Receiver {
    url: String,
    inbox: Arc<Mutex<Inbox>>,
    _task: tokio::task::JoinHandle<()>,
}

async fn receive(State(inbox): State<Arc<Mutex<Inbox>>>, uri: Uri, headers: HeaderMap, body: Bytes) -> StatusCode {
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let mut inbox = inbox.lock().unwrap();
    let answered = inbox.script.pop_front().or(inbox.always).unwrap_or(200);
    inbox.hits.push(Hit { uri, headers, body, answered });
    StatusCode::from_u16(answered).unwrap()
}

impl Receiver {
    async fn start(script: &[u16], always: Option<u16>) -> Receiver {
        let inbox = Arc::new(Mutex::new(Inbox { hits: Vec::new(), script: script.iter().copied().collect(), always }));
        let app = Router::new().route("/hook", post(receive)).with_state(inbox.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Receiver { url, inbox, _task: task }
    }

    fn hits(&self) -> Vec<Hit> {
        self.inbox.lock().unwrap().hits.clone()
    }

    fn accepted(&self, event_type: &str) -> Vec<Hit> {
        self.hits().into_iter().filter(|h| h.answered < 300 && h.body["type"] == event_type).collect()
    }

    async fn wait_accepted(&self, event_type: &str, n: usize) -> Vec<Hit> {
        eventually(&format!("{n} {event_type} accepted"), || async { self.accepted(event_type).len() >= n }).await;
        self.accepted(event_type)
    }
}

fn rule(url: &str) -> Value {
    json!({"spec": {
        "enabled": true,
        "url": url,
        "events": ["MediaKind.JobStarted", "MediaKind.JobFinished"],
        "headers": {"X-Source": "mkio"},
        "queryParams": {"process": "123456"},
        "authentication": {"headers": {"X-Webhook-Secret": "s3cret"}, "queryParams": {"code": "fn-key"}}
    }})
}

async fn put_rule(c: &Client<'_>, project: &str, name: &str, body: Value) -> crate::common::Reply {
    c.send(Method::PUT, &url(c.emu, project, &format!("webhook/rules/{name}")), Some(body)).await
}

async fn webhook_counters(emu: &Emulator) -> Value {
    emu.get(&format!("{}/_emulator/mkio/webhooks", emu.base)).await.body["counters"].clone()
}

async fn settle(emu: &Emulator) {
    eventually("webhook deliveries settle", || async { webhook_counters(emu).await["pending"] == 0 }).await;
}

#[tokio::test]
async fn a_webhook_rule_reads_back_with_its_authentication_masked_and_put_replaces_the_whole_spec() {
    let emu = super::start(&[]).await;
    let c = Client::new(&emu).await;
    let created = put_rule(&c, "east", "jobs", rule("https://example.com/hook")).await;
    assert_eq!(created.status, 201, "{}", created.body);
    let got = c.send(Method::GET, &url(&emu, "east", "webhook/rules/jobs"), None).await;
    assert_eq!(got.status, 200);
    assert_eq!(got.body["metadata"]["name"], "jobs");
    assert_eq!(got.body["metadata"]["id"], created.body["metadata"]["id"]);
    assert_eq!(got.body["spec"]["headers"], json!({"X-Source": "mkio"}));
    assert_eq!(got.body["spec"]["authentication"]["headers"]["X-Webhook-Secret"], "********");
    assert!(!got.body.to_string().contains("s3cret") && !got.body.to_string().contains("fn-key"), "{}", got.body);
    let replaced = put_rule(
        &c,
        "east",
        "jobs",
        json!({"spec": {"enabled": false, "url": "https://example.com/other", "events": ["MediaKind.JobFinished"]}}),
    )
    .await;
    assert_eq!(replaced.status, 200);
    assert_eq!(replaced.body["spec"]["authentication"], json!({"headers": {}, "queryParams": {}}));
    assert_eq!(replaced.body["spec"]["headers"], json!({}));
    let bad = put_rule(
        &c,
        "east",
        "x",
        json!({"spec": {"enabled": true, "url": "https://e/", "events": ["MediaKind.JobScheduled"]}}),
    )
    .await;
    assert_mkio_error(&bad, 400, "BadRequest");
    let listed = c.send(Method::GET, &url(&emu, "east", "webhook/rules"), None).await;
    assert_eq!(listed.body["value"].as_array().map(Vec::len), Some(1));
    assert_eq!(c.send(Method::DELETE, &url(&emu, "east", "webhook/rules/jobs"), None).await.status, 200);
    assert_eq!(c.send(Method::DELETE, &url(&emu, "east", "webhook/rules/jobs"), None).await.status, 204);
    assert_mkio_error(&c.send(Method::GET, &url(&emu, "east", "webhook/rules/jobs"), None).await, 404, "NotFound");
}

#[tokio::test]
async fn job_events_arrive_as_cloud_events_with_the_rule_headers_and_a_500_is_retried() {
    let rx = Receiver::start(&[500], None).await;
    // Scale 1000: the 10 s retry takes 10 ms.
    let emu = Emulator::start(&["--account", "east:eastus:automatic:mkio", "--time-scale", "1000"]).await;
    let c = Client::new(&emu).await;
    assert_eq!(put_rule(&c, "east", "jobs", rule(&rx.url)).await.status, 201);
    assert_eq!(c.submit("east", "j1").await.status, 201);
    let started = rx.wait_accepted("MediaKind.JobStarted", 1).await;
    let finished = rx.wait_accepted("MediaKind.JobFinished", 1).await;
    settle(&emu).await;

    let e = &finished[0].body;
    assert_eq!(e["specversion"], "1.0");
    assert_eq!(e["datacontenttype"], "application/json");
    assert!(e["time"].as_str().is_some_and(|t| chrono::DateTime::parse_from_rfc3339(t).is_ok()), "{e}");
    assert_eq!(e["source"], format!("{}/api/v1/projects/east/media/transforms/encode/jobs/j1", emu.base));
    assert_eq!(e["data"]["projectName"], "east");
    assert_eq!(e["data"]["previousState"], "Processing");
    assert_eq!(e["data"]["state"], "Finished");
    let resource = &e["data"]["resource"];
    assert_eq!(resource["name"], "j1");
    assert_eq!(resource["properties"]["state"], "Finished");
    assert_eq!(resource, &c.get("east", "transforms/encode/jobs/j1").await.body, "the job as GET returns it");
    assert_eq!(started[0].body["data"]["state"], "Processing");
    assert_eq!(started[0].body["data"]["resource"]["properties"]["state"], "Processing");

    let hit = &finished[0];
    assert_eq!(hit.headers.get("x-source").and_then(|v| v.to_str().ok()), Some("mkio"));
    assert_eq!(hit.headers.get("x-webhook-secret").and_then(|v| v.to_str().ok()), Some("s3cret"));
    let query: BTreeMap<String, String> =
        url::form_urlencoded::parse(hit.uri.query().unwrap_or("").as_bytes()).into_owned().collect();
    assert_eq!(query.get("process").map(String::as_str), Some("123456"));
    assert_eq!(query.get("code").map(String::as_str), Some("fn-key"));

    // The first delivery was answered 500 and sent again with the same CloudEvent id.
    let hits = rx.hits();
    assert_eq!(hits.len(), 3, "{hits:?}");
    assert_eq!(hits[0].answered, 500);
    let resent: Vec<&Hit> = hits.iter().filter(|h| h.body["id"] == hits[0].body["id"]).collect();
    assert_eq!(resent.iter().map(|h| h.answered).collect::<Vec<_>>(), [500, 200]);
    let counters = webhook_counters(&emu).await;
    assert_eq!((counters["delivered"].clone(), counters["failed_attempts"].clone()), (json!(2), json!(1)));
    let history = c.send(Method::GET, &url(&emu, "east", "webhook/rules/jobs/events"), None).await;
    assert_eq!(history.status, 200, "{}", history.body);
    let statuses: Vec<&str> =
        history.body["value"].as_array().unwrap().iter().filter_map(|d| d["status"].as_str()).collect();
    assert_eq!(statuses, ["Sent", "Sent"]);
    assert_eq!(history.body["value"][0]["type"], "MediaKind.JobStarted");
    let records = emu.get(&format!("{}/_emulator/mkio/projects/east/deliveries", emu.base)).await.body;
    assert_eq!(records[0]["attempts"], 2, "{records}");
}

#[tokio::test]
async fn a_delivery_that_keeps_failing_is_retried_on_the_schedule_then_failed() {
    let rx = Receiver::start(&[], Some(503)).await;
    // Scale 100000: the whole schedule (6300 s) takes 63 ms.
    let emu = Emulator::start(&["--account", "east:eastus:automatic:mkio", "--time-scale", "100000"]).await;
    let c = Client::new(&emu).await;
    let finished_only = json!({"spec": {"enabled": true, "url": rx.url, "events": ["MediaKind.JobFinished"]}});
    assert_eq!(put_rule(&c, "east", "done", finished_only).await.status, 201);
    assert_eq!(c.submit("east", "j1").await.status, 201);
    eventually("the delivery is given up", || async { webhook_counters(&emu).await["failed"] == 1 }).await;
    assert_eq!(rx.hits().len(), 8, "one attempt and seven retries");
    let history = c.send(Method::GET, &url(&emu, "east", "webhook/rules/done/events"), None).await;
    assert_eq!(history.body["value"][0]["status"], "Failed");
}

#[tokio::test]
async fn duplicated_deliveries_share_an_id_and_dropped_ones_never_arrive() {
    let rx = Receiver::start(&[], None).await;
    let emu = super::start(&[]).await;
    let c = Client::new(&emu).await;
    assert_eq!(put_rule(&c, "east", "jobs", rule(&rx.url)).await.status, 201);
    let set = emu.post(&format!("{}/_emulator/mkio/webhooks", emu.base), Some(json!({"duplicate": 1.0}))).await;
    assert_eq!(set.status, 200, "{}", set.body);
    assert_eq!(set.body["duplicate"], 1.0);
    assert_eq!(c.submit("east", "twice").await.status, 201);
    let finished = rx.wait_accepted("MediaKind.JobFinished", 2).await;
    assert_eq!(finished[0].body["id"], finished[1].body["id"]);
    settle(&emu).await;
    assert_eq!(webhook_counters(&emu).await["duplicated"], 2);

    emu.post(&format!("{}/_emulator/mkio/webhooks", emu.base), Some(json!({"duplicate": 0.0, "drop": 1.0}))).await;
    let before = rx.hits().len();
    assert_eq!(c.submit("east", "lost").await.status, 201);
    emu.wait_for_state("east", "lost", "Finished").await;
    settle(&emu).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(rx.hits().len(), before, "lost webhooks never arrive");
    assert_eq!(webhook_counters(&emu).await["dropped"], 2);
    let bad = emu.post(&format!("{}/_emulator/mkio/webhooks", emu.base), Some(json!({"reorder": 2.0}))).await;
    assert_eq!(bad.status, 400);
}

#[tokio::test]
async fn a_stalled_project_sends_no_job_started_until_it_heals() {
    let rx = Receiver::start(&[], None).await;
    let emu = super::start(&[]).await;
    let c = Client::new(&emu).await;
    assert_eq!(put_rule(&c, "east", "jobs", rule(&rx.url)).await.status, 201);
    emu.set_fault("east", json!({"mode": "stall"})).await;
    assert_eq!(c.submit("east", "stuck").await.status, 201);
    emu.wait_for_state("east", "stuck", "Scheduled").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(rx.hits().is_empty(), "no event for Queued or Scheduled");
    emu.set_fault("east", json!({"mode": "healthy"})).await;
    rx.wait_accepted("MediaKind.JobStarted", 1).await;
    rx.wait_accepted("MediaKind.JobFinished", 1).await;
}

#[tokio::test]
async fn reordered_and_delayed_deliveries_all_still_arrive() {
    let rx = Receiver::start(&[], None).await;
    let emu = super::start(&[]).await;
    let c = Client::new(&emu).await;
    assert_eq!(put_rule(&c, "east", "jobs", rule(&rx.url)).await.status, 201);
    let set = emu
        .post(&format!("{}/_emulator/mkio/webhooks", emu.base), Some(json!({"reorder": 1.0, "max_delay_ms": 40})))
        .await;
    assert_eq!((set.body["reorder"].clone(), set.body["max_delay_ms"].clone()), (json!(1.0), json!(40)));
    for j in ["a", "b"] {
        assert_eq!(c.submit("east", j).await.status, 201);
    }
    rx.wait_accepted("MediaKind.JobFinished", 2).await;
    settle(&emu).await;
    assert_eq!(rx.accepted("MediaKind.JobStarted").len(), 2);
    assert_eq!(webhook_counters(&emu).await["reordered"], 4);
}
