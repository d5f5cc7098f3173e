//! Outcome notifications end to end: every job's outcome reaches the `job-events` topic exactly once per
//! message id (Service Bus duplicate detection, as the test namespace emulates it, drops what is sent
//! again), with events duplicated and reordered, with two instances, with the topic down for a while, and
//! with publication on (`Published` follows `Finished`); a callback is retried after a 500 and signed with
//! the key.

mod support;

use anyhow::{ensure, Context};
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::{eventually, job_body, options, Stack, StackOptions, RESOURCE_GROUP, SUBSCRIPTION};
use testkit::cluster::Cluster;
use testkit::servicebus::ServiceBus;

const LIMIT: Duration = Duration::from_secs(90);
const TOPIC: &str = "job-events";
const CALLBACK_KEY: &str = "test-callback-signing-key-0123456789abcdef";

/// What the topic kept, by message id; fails if a message id was kept twice, or if two sends of one id
/// carried different bodies (a repeat must be the same message).
fn kept_once(bus: &ServiceBus) -> anyhow::Result<BTreeMap<String, Value>> {
    let mut kept = BTreeMap::new();
    for (id, body) in bus.delivered(TOPIC) {
        ensure!(kept.insert(id.clone(), body).is_none(), "the topic kept {id} twice");
    }
    for send in bus.sends(TOPIC) {
        let id = send["messageId"].as_str().unwrap_or_default();
        ensure!(send.get("assignedId").is_none(), "a message went out without a message id: {send}");
        ensure!(kept.get(id) == Some(&send["body"]), "a repeat of {id} differs from the first send: {send}");
    }
    Ok(kept)
}

/// Waits until the topic holds exactly `expected` message ids.
async fn topic_holds(bus: &ServiceBus, expected: &BTreeSet<String>) -> anyhow::Result<BTreeMap<String, Value>> {
    eventually(LIMIT, "every outcome on the topic", || async {
        let kept = kept_once(bus)?;
        let ids: BTreeSet<String> = kept.keys().cloned().collect();
        ensure!(ids.is_subset(expected), "unexpected messages: {:?}", ids.difference(expected).collect::<Vec<_>>());
        Ok((ids == *expected).then_some(kept))
    })
    .await
}

async fn wait_state(stack: &Stack, id: &str, state: &str) -> anyhow::Result<Value> {
    eventually(LIMIT, &format!("{id} to be {state}"), || async {
        let job = stack.get_job(id).await?.1;
        Ok((job["state"] == state).then_some(job))
    })
    .await
}

/// Cancels a Media Services job directly in the emulator, as someone in the portal would.
async fn cancel_in_media_services(stack: &Stack, account: &str, name: &str) -> anyhow::Result<()> {
    let url = format!(
        "{}/subscriptions/{SUBSCRIPTION}/resourceGroups/{RESOURCE_GROUP}/providers/Microsoft.Media/mediaServices/{account}/transforms/encode/jobs/{name}/cancelJob?api-version=2022-07-01",
        stack.emulator.url
    );
    stack.http.post(url).header("content-length", "0").send().await?.error_for_status()?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn each_outcome_reaches_the_topic_once_under_its_own_id_while_events_are_duplicated() -> anyhow::Result<()> {
    let stack = Stack::start(options()).await?;
    stack.events(json!({"duplicate": 0.6, "reorder": 0.3, "max_delay_ms": 100})).await?;

    // A job cancelled in Media Services while it waits: both accounts stall so it stays in Scheduled.
    for account in ["amswesteurope", "amsnortheurope"] {
        stack.fault(account, json!({"mode": "stall"})).await?;
    }
    let (status, answer, _) = stack.submit(&job_body("cancelled")).await?;
    ensure!(status == 202, "{answer}");
    wait_state(&stack, "cancelled", "Scheduled").await?;
    let account = answer["account"].as_str().context("placed")?.to_owned();
    cancel_in_media_services(&stack, &account, "cancelled-a1").await?;
    wait_state(&stack, "cancelled", "Canceled").await?;

    // Jobs that finish, one of them with correlation data.
    for account in ["amswesteurope", "amsnortheurope"] {
        stack.fault(account, json!({"mode": "healthy"})).await?;
    }
    let mut body = job_body("tagged");
    body["correlationData"] = json!({"tenant": "acme", "order": "42"});
    ensure!(stack.submit(&body).await?.0 == 202);
    let ids: Vec<String> = (0..6).map(|i| format!("done-{i}")).collect();
    stack.submit_all(&ids).await?;
    for id in ids.iter().chain([&"tagged".to_owned()]) {
        wait_state(&stack, id, "Finished").await?;
    }

    // A job that fails for good.
    for account in ["amswesteurope", "amsnortheurope"] {
        stack.fault(account, json!({"mode": "fail-jobs", "retry": "DoNotRetry", "code": "ContentMalformed"})).await?;
    }
    ensure!(stack.submit(&job_body("broken")).await?.0 == 202);
    wait_state(&stack, "broken", "Error").await?;

    let mut expected: BTreeSet<String> = ids.iter().map(|id| format!("{id}:Finished")).collect();
    expected.extend(["tagged:Finished", "cancelled:Canceled", "broken:Error"].map(str::to_owned));
    let kept = topic_holds(&stack.service_bus, &expected).await?;

    let tagged = &kept["tagged:Finished"];
    assert_eq!(tagged["type"], "Finished");
    assert_eq!(tagged["jobId"], "tagged");
    assert_eq!(tagged["correlationData"], json!({"tenant": "acme", "order": "42"}));
    assert_eq!(tagged["outputs"], json!(["tagged-a1-out0"]));
    assert!(tagged["account"].is_string() && tagged["region"].is_string(), "{tagged}");
    let broken = &kept["broken:Error"];
    assert_eq!(
        (broken["error"]["code"].as_str(), broken["error"]["category"].as_str()),
        (Some("ContentMalformed"), Some("Content")),
        "{broken}"
    );
    assert!(broken["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{broken}");
    assert_eq!(kept["cancelled:Canceled"]["state"], "Canceled");
    for message in kept.values() {
        let time = message["time"].as_str().unwrap_or_default();
        assert!(time.len() == 20 && time.ends_with('Z'), "times are to the second: {time}");
    }

    // Nothing is left to deliver, and sweeps send nothing again.
    let sends = stack.service_bus.sends(TOPIC).len();
    eventually(LIMIT, "the outbox to empty", || async {
        Ok(stack.store.index().await?.outbox.is_empty().then_some(()))
    })
    .await?;
    ensure!(stack.sweep().await? && stack.sweep().await?);
    assert_eq!(stack.service_bus.sends(TOPIC).len(), sends, "a delivered outcome is never sent again");
    eprintln!("{} sends for {} messages", sends, expected.len());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_publish_each_outcome_once_though_events_arrive_twice_and_one_instance_dies() -> anyhow::Result<()>
{
    let mut cluster = Cluster::start(options(), 2).await?;
    let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build()?;
    let events = json!({"duplicate": 0.7, "reorder": 0.4, "max_delay_ms": 200});
    http.post(format!("{}/_emulator/events", cluster.emulator.url)).json(&events).send().await?.error_for_status()?;
    let ids: Vec<String> = (0..12).map(|i| format!("pair-{i}")).collect();
    for (n, id) in ids.iter().enumerate() {
        // Like a client, retry a call that hit the instance while it died.
        eventually(LIMIT, "the job to be accepted", || async {
            let sent = http.post(format!("{}/api/jobs", cluster.front_door)).json(&job_body(id)).send().await;
            Ok(sent.ok().filter(|r| r.status() == 202).map(|_| ()))
        })
        .await?;
        if n == 5 {
            cluster.kill_handler(0).await?;
        }
        if n == 8 {
            cluster.start_instance(0)?;
        }
    }
    // Sweeps on both instances, as the timer would run them, until every job is final.
    let urls: Vec<String> = cluster.instances.iter().map(|i| i.url()).collect();
    eventually(LIMIT, "every job to finish", || async {
        for url in &urls {
            let _ = http.post(format!("{url}/admin/functions/SweepStuckJobs")).json(&json!({"input": ""})).send().await;
        }
        for id in &ids {
            let job: Value = http.get(format!("{}/api/jobs/{id}", cluster.front_door)).send().await?.json().await?;
            if job["state"] != "Finished" {
                return Ok(None);
            }
        }
        Ok(Some(()))
    })
    .await?;
    // A delivery the killed instance had claimed waits out its lease, then a sweep makes it: keep sweeping.
    let expected: BTreeSet<String> = ids.iter().map(|id| format!("{id}:Finished")).collect();
    eventually(Duration::from_secs(150), "every outcome on the topic", || async {
        let ids: BTreeSet<String> = kept_once(&cluster.service_bus)?.into_keys().collect();
        if ids == expected {
            return Ok(Some(()));
        }
        for url in &urls {
            let _ = http.post(format!("{url}/admin/functions/SweepStuckJobs")).json(&json!({"input": ""})).send().await;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        Ok(None)
    })
    .await?;
    topic_holds(&cluster.service_bus, &expected).await?;
    eprintln!("{} sends for {} messages", cluster.service_bus.sends(TOPIC).len(), expected.len());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_outcome_waits_out_a_topic_outage_and_is_delivered_by_the_sweep() -> anyhow::Result<()> {
    let stack = Stack::start(options()).await?;
    stack.service_bus.fail_next(u32::MAX);
    ensure!(stack.submit(&job_body("patient")).await?.0 == 202);
    wait_state(&stack, "patient", "Finished").await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(stack.service_bus.sends(TOPIC).is_empty(), "the namespace refused everything so far");
    let waiting = stack.store.index().await?.outbox;
    assert_eq!(waiting.iter().map(|(id, _)| id.as_str()).collect::<Vec<_>>(), ["patient"]);

    stack.service_bus.fail_next(0);
    // The failed first try waits 10 s before the sweep tries again.
    let expected = BTreeSet::from(["patient:Finished".to_owned()]);
    eventually(LIMIT, "the sweep to deliver", || async {
        ensure!(stack.sweep().await?, "the sweep failed");
        Ok((kept_once(&stack.service_bus)?.len() == 1).then_some(()))
    })
    .await?;
    topic_holds(&stack.service_bus, &expected).await?;
    let status = stack.status().await?;
    assert_eq!(status["lastSweep"]["notifications"], 0, "{status}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn published_follows_finished_once_every_region_has_published() -> anyhow::Result<()> {
    let stack = Stack::start(options().with_publication()).await?;
    ensure!(stack.submit(&job_body("vod")).await?.0 == 202);
    wait_state(&stack, "vod", "Finished").await?;
    let expected = BTreeSet::from(["vod:Finished".to_owned(), "vod:Published".to_owned()]);
    let kept = eventually(LIMIT, "both messages", || async {
        ensure!(stack.sweep().await?, "the sweep failed");
        let kept = kept_once(&stack.service_bus)?;
        Ok((kept.keys().cloned().collect::<BTreeSet<_>>() == expected).then_some(kept))
    })
    .await?;
    assert_eq!(kept["vod:Finished"]["publicationFollows"], true);
    let published = &kept["vod:Published"];
    let regions = published["publications"].as_array().context("regions")?;
    assert_eq!(regions.len(), 2, "{published}");
    let ids: BTreeSet<&str> = regions.iter().filter_map(|r| r["locators"][0]["streamingLocatorId"].as_str()).collect();
    assert_eq!(ids.len(), 1, "the same locator id in every region: {published}");
    for region in regions {
        assert_eq!(region["state"], "Published", "{region}");
        let paths = region["locators"][0]["streamingPaths"].as_array().map(Vec::len).unwrap_or(0);
        assert!(paths > 0, "streaming paths per region: {region}");
    }
    Ok(())
}

/// What the test's callback endpoint received: headers and body of each request.
type Received = Arc<Mutex<Vec<(BTreeMap<String, String>, String)>>>;

/// A callback endpoint that answers 500 to the first request and 200 to the others.
async fn receiver() -> anyhow::Result<(String, Received, tokio::task::JoinHandle<()>)> {
    let received: Received = Arc::default();
    let state = received.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: axum::http::HeaderMap, body: String| {
            let state = state.clone();
            async move {
                let headers = headers
                    .iter()
                    .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or_default().to_owned()))
                    .collect();
                let mut seen = state.lock().unwrap_or_else(|e| e.into_inner());
                seen.push((headers, body));
                if seen.len() == 1 {
                    axum::http::StatusCode::INTERNAL_SERVER_ERROR
                } else {
                    axum::http::StatusCode::OK
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
    let url = format!("http://{}/hook", listener.local_addr()?);
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok((url, received, task))
}

/// The signature as the receiver documentation says to compute it: HMAC-SHA256 with the key over
/// `{timestamp}.{body}`, hex, after `sha256=`.
fn expected_signature(timestamp: &str, body: &str) -> anyhow::Result<String> {
    let mut mac = Hmac::<Sha256>::new_from_slice(CALLBACK_KEY.as_bytes())?;
    mac.update(format!("{timestamp}.{body}").as_bytes());
    Ok(format!("sha256={}", mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect::<String>()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_callback_that_answers_500_is_retried_by_the_sweep_and_every_try_is_signed() -> anyhow::Result<()> {
    let (url, received, _server) = receiver().await?;
    let mut opts: StackOptions = options();
    for (k, v) in
        [("CALLBACK_SIGNING_KEY", CALLBACK_KEY), ("CALLBACK_ALLOW_HTTP_LOOPBACK", "on"), ("CALLBACK_RETRY", "1s")]
    {
        opts.settings.push((k.to_owned(), v.to_owned()));
    }
    let stack = Stack::start(opts).await?;
    let mut body = job_body("called-back");
    body["callbackUrl"] = json!(url);
    body["correlationData"] = json!({"tenant": "acme"});
    let (status, answer, _) = stack.submit(&body).await?;
    ensure!(status == 202, "{answer}");
    wait_state(&stack, "called-back", "Finished").await?;

    // The first try comes right after the job ends (and gets the 500); the sweep makes the second.
    eventually(LIMIT, "the first try", || async {
        Ok((received.lock().map(|r| r.len()).unwrap_or(0) >= 1).then_some(()))
    })
    .await?;
    eventually(LIMIT, "the retry", || async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        ensure!(stack.sweep().await?, "the sweep failed");
        Ok((received.lock().map(|r| r.len()).unwrap_or(0) >= 2).then_some(()))
    })
    .await?;
    eventually(LIMIT, "the outbox to empty", || async {
        Ok(stack.store.index().await?.outbox.is_empty().then_some(()))
    })
    .await?;
    ensure!(stack.sweep().await?);
    let requests = received.lock().map(|r| r.clone()).unwrap_or_default();
    assert_eq!(requests.len(), 2, "retried once after the 500, then never again");

    let topic = topic_holds(&stack.service_bus, &BTreeSet::from(["called-back:Finished".to_owned()])).await?;
    for (headers, text) in &requests {
        assert_eq!(headers.get("content-type").map(String::as_str), Some("application/json"));
        assert_eq!(headers.get("x-amsfo-message-id").map(String::as_str), Some("called-back:Finished"));
        let timestamp = headers.get("x-amsfo-timestamp").context("a timestamp header")?;
        let age = chrono::Utc::now().timestamp() - timestamp.parse::<i64>()?;
        assert!((0..300).contains(&age), "a fresh timestamp: {timestamp}");
        assert_eq!(
            headers.get("x-amsfo-signature"),
            Some(&expected_signature(timestamp, text)?),
            "signed with the key"
        );
        let callback: Value = serde_json::from_str(text)?;
        assert_eq!(callback, topic["called-back:Finished"], "the callback gets the same JSON as the topic");
        assert_eq!(callback["correlationData"]["tenant"], "acme");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_callback_url_is_refused_unless_it_is_https_and_callbacks_can_be_signed() -> anyhow::Result<()> {
    let stack = Stack::start(options()).await?;
    let mut body = job_body("no-key");
    body["callbackUrl"] = json!("https://hooks.example.com/ams");
    let (status, answer, _) = stack.submit(&body).await?;
    assert_eq!((status.as_u16(), answer["error"]["code"].as_str()), (400, Some("callbacks_not_enabled")), "{answer}");
    drop(stack);

    let mut opts = options();
    opts.settings.push(("CALLBACK_SIGNING_KEY".to_owned(), CALLBACK_KEY.to_owned()));
    let stack = Stack::start(opts).await?;
    for url in ["http://hooks.example.com/ams", "https://169.254.169.254/metadata", "http://127.0.0.1:9/hook"] {
        let mut body = job_body("bad-url");
        body["callbackUrl"] = json!(url);
        let (status, answer, _) = stack.submit(&body).await?;
        assert_eq!(
            (status.as_u16(), answer["error"]["code"].as_str()),
            (400, Some("invalid_callback_url")),
            "{url}: {answer}"
        );
    }
    assert_eq!(stack.get_job("bad-url").await?.0, 404, "nothing was written");
    Ok(())
}
