//! MK.IO projects end to end: the handler binary under devhost against Azurite and the emulator in MK.IO
//! mode, for what only MK.IO has: the webhook and its secret, CloudEvents delivered more than once and out
//! of order, regions judged without Scheduled events, the client-side rate budget, and the API token.

mod support;

use serde_json::{json, Value};
use std::time::Duration;
use support::{eventually, job_body, options, Stack, StackOptions};
use testkit::stack::{mkio_token, mkio_token_setting, TEST_WEBHOOK_SECRET};

const LIMIT: Duration = Duration::from_secs(90);
const A: &str = "amswesteurope";
const B: &str = "amsnortheurope";

/// Two MK.IO projects, with `settings` on top.
fn mkio(settings: &[(&str, &str)]) -> StackOptions {
    let mut opts = options().on_provider("mkio");
    opts.settings = settings.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    opts
}

async fn job(stack: &Stack, id: &str) -> anyhow::Result<Value> {
    Ok(stack.get_job(id).await?.1)
}

async fn wait_finished(stack: &Stack, ids: &[String]) -> anyhow::Result<()> {
    eventually(LIMIT, "every job to finish", || async {
        for id in ids {
            if job(stack, id).await?["state"] != "Finished" {
                return Ok(None);
            }
        }
        Ok(Some(()))
    })
    .await
}

fn account_status<'a>(status: &'a Value, name: &str) -> &'a Value {
    status["accounts"].as_array().and_then(|a| a.iter().find(|x| x["name"] == name)).unwrap_or(&Value::Null)
}

/// A `MediaKind.*` CloudEvent for job `job` of project `project`, as MK.IO delivers it.
fn cloud_event(id: &str, kind: &str, project: &str, job: &str, state: &str) -> Value {
    json!({
        "specversion": "1.0", "id": id, "type": kind,
        "source": format!("https://app.mk.io/api/v1/projects/{project}/media/transforms/encode/jobs/{job}"),
        "time": "2025-05-01T10:00:00Z", "datacontenttype": "application/json",
        "data": {"projectName": project, "previousState": "Queued", "state": state,
                 "resource": {"name": job, "properties": {"state": state, "outputs": []}}}
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_webhook_without_the_secret_gets_401_and_changes_nothing() -> anyhow::Result<()> {
    let stack = Stack::start(mkio(&[])).await?;
    // Stalled: the job stays Queued, so only what this test sends could move it.
    for (account, _) in &stack.options.accounts {
        stack.fault(account, json!({"mode": "stall"})).await?;
    }
    let (status, body, _) = stack.submit(&job_body("forged")).await?;
    assert_eq!(status, 202, "{body}");
    let account = body["account"].as_str().unwrap_or_default().to_owned();
    let before = job(&stack, "forged").await?;
    let forged = cloud_event("e-1", "MediaKind.JobFinished", &account, "forged-a1", "Finished");

    for secret in [None, Some("wrong-secret-of-some-length"), Some("")] {
        let (status, answer) = stack.post_mkio_event(&forged, secret).await?;
        assert_eq!(status, 401, "{secret:?}: {answer}");
        assert_eq!(answer["error"]["code"], "unauthorized", "{answer}");
    }
    assert_eq!(job(&stack, "forged").await?, before, "a refused delivery changes nothing");

    // With the secret, a final state it claims is still confirmed by reading the job: MK.IO says Queued.
    let (status, answer) = stack.post_mkio_event(&forged, Some(TEST_WEBHOOK_SECRET)).await?;
    assert_eq!(status, 200, "{answer}");
    let after = job(&stack, "forged").await?;
    let waiting = |job: &Value| matches!(job["attempts"][0]["state"].as_str(), Some("Queued" | "Scheduled"));
    assert!(waiting(&after), "an unconfirmed final state is not applied, the read one is: {after}");
    stack.assert_counters_exact().await?;

    // Deliveries that cannot be used are acknowledged without touching anything.
    let unknown_project = cloud_event("e-2", "MediaKind.JobFinished", "elsewhere", "forged-a1", "Finished");
    let unknown_job = cloud_event("e-3", "MediaKind.JobStarted", &account, "not-ours-a1", "Processing");
    let locator = json!({"specversion": "1.0", "id": "e-4", "type": "MediaKind.StreamingLocatorCreated", "data": {}});
    for body in [unknown_project, unknown_job, locator, json!("not an event")] {
        let (status, answer) = stack.post_mkio_event(&body, Some(TEST_WEBHOOK_SECRET)).await?;
        assert_eq!(status, 200, "{body}: {answer}");
        assert_eq!(answer["status"], "ignored", "{answer}");
    }
    assert!(waiting(&job(&stack, "forged").await?));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn duplicated_and_reordered_cloud_events_leave_every_counter_exact() -> anyhow::Result<()> {
    let stack = Stack::start(StackOptions { time_scale: 50.0, ..mkio(&[]) }).await?;
    stack.events(json!({"duplicate": 0.5, "reorder": 0.5, "max_delay_ms": 200})).await?;
    let ids: Vec<String> = (0..40).map(|i| format!("dup-{i}")).collect();
    for chunk in ids.chunks(10) {
        stack.submit_all(chunk).await?;
        stack.assert_counters_exact().await?;
    }
    wait_finished(&stack, &ids).await?;
    // Late and repeated deliveries after the end: a JobStarted after JobFinished, a JobFinished twice.
    for (i, id) in ids.iter().take(10).enumerate() {
        let account = job(&stack, id).await?["account"].as_str().unwrap_or_default().to_owned();
        let name = format!("{id}-a1");
        for event in [
            cloud_event(&format!("late-{i}"), "MediaKind.JobStarted", &account, &name, "Processing"),
            cloud_event(&format!("again-{i}"), "MediaKind.JobFinished", &account, &name, "Finished"),
            cloud_event(&format!("again-{i}"), "MediaKind.JobFinished", &account, &name, "Finished"),
        ] {
            let (status, answer) = stack.post_mkio_event(&event, Some(TEST_WEBHOOK_SECRET)).await?;
            assert_eq!(status, 200, "{answer}");
        }
        assert_eq!(job(&stack, id).await?["state"], "Finished");
    }
    stack.assert_counters_exact().await?;
    let status = eventually(LIMIT, "nothing in flight", || async {
        let status = stack.status().await?;
        let idle = status["accounts"].as_array().is_some_and(|a| a.iter().all(|x| x["inFlight"] == 0));
        Ok(idle.then_some(status))
    })
    .await?;
    assert_eq!(status["accountsInRotation"], 2, "{status}");
    for id in &ids {
        let finished = job(&stack, id).await?["attempts"]
            .as_array()
            .map_or(0, |a| a.iter().filter(|t| t["state"] == "Finished").count());
        assert_eq!(finished, 1, "{id} completes once");
    }
    let deliveries: Value =
        stack.http.get(format!("{}/_emulator/mkio/webhooks", stack.emulator.url)).send().await?.json().await?;
    eprintln!("webhook delivery: {deliveries}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_project_whose_jobs_never_start_is_removed_within_stuck_after_plus_one_sweep() -> anyhow::Result<()> {
    let stack = Stack::start(mkio(&[("STUCK_AFTER", "3s"), ("RECONCILE_AFTER", "1h"), ("COOLDOWN", "1h")])).await?;
    stack.fault(A, json!({"mode": "stall"})).await?;
    let mut ids = Vec::new();
    for i in 0..40 {
        let id = format!("never-{i}");
        let (status, body, _) = stack.submit(&job_body(&id)).await?;
        assert_eq!(status, 202, "{body}");
        ids.push(id);
        if body["account"] == A {
            break;
        }
    }
    let on_a = ids.last().cloned().unwrap_or_default();
    assert_eq!(job(&stack, &on_a).await?["account"], A, "a job landed on the stalled project");
    // No Scheduled event exists: only the absence of JobStarted, past STUCK_AFTER, tells.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(stack.sweep().await?, "the sweep failed");
    let status = stack.status().await?;
    let a = account_status(&status, A);
    assert_eq!(a["inRotation"], false, "one sweep after STUCK_AFTER the project is out: {a}");
    let removed = stack.wait_alerts("RegionRemoved", |a| a["account"] == A).await?;
    assert_eq!(removed.len(), 1, "{removed:?}");
    // Its job was read back first (its start might have been a lost webhook), then moved and finished.
    wait_finished(&stack, std::slice::from_ref(&on_a)).await?;
    let moved = job(&stack, &on_a).await?;
    assert_eq!((moved["account"].as_str(), moved["attempts"][0]["state"].as_str()), (Some(B), Some("Superseded")));
    stack.assert_counters_exact().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_rate_budget_is_never_exceeded_under_a_burst_of_two_hundred_submissions() -> anyhow::Result<()> {
    // The emulator refuses past 100 writes and 200 reads in any minute of a project; the handler keeps 90%
    // of that, so a hundred jobs per project take more than a minute to place.
    let mut opts = mkio(&[("RECONCILE_AFTER", "1h")]);
    opts.emulator_args =
        ["--mkio-writes-per-minute", "100", "--mkio-reads-per-minute", "200"].map(str::to_owned).to_vec();
    opts.mkio_budget = Some((180, 90));
    opts.time_scale = 60.0;
    let stack = Stack::start(opts).await?;
    let ids: Vec<String> = (0..200).map(|i| format!("burst-{i}")).collect();
    // As fast as the local Table Storage takes them: 25 at a time, back to back, within a few seconds.
    for chunk in ids.chunks(25) {
        stack.submit_all(chunk).await?;
    }
    // What did not fit in the budget waits as Pending, and the sweeps place it as the budget refills.
    eventually(Duration::from_secs(240), "every job placed", || async {
        // A sweep places jobs as fast as the budget refills, which may take longer than a client's timeout.
        let sweep = stack
            .http
            .post(format!("{}/admin/functions/SweepStuckJobs", stack.devhost.url))
            .timeout(Duration::from_secs(300))
            .json(&json!({"input": ""}))
            .send()
            .await?;
        assert!(sweep.headers().get("x-devhost-invocation").is_some_and(|v| v == "succeeded"), "the sweep failed");
        let index = stack.store.index().await?;
        Ok(index.pending.is_empty().then_some(()))
    })
    .await?;
    for (account, _) in &stack.options.accounts {
        let requests = stack.mkio_requests(account).await?;
        eprintln!("{account}: {requests}");
        assert_eq!(requests["throttledWrites"], 0, "{account} never answered 429: {requests}");
        assert_eq!(requests["throttledReads"], 0, "{account} never answered 429: {requests}");
        assert!(requests["peakWrites"].as_u64().is_some_and(|p| p <= 90), "{account}: {requests}");
        assert!(requests["peakReads"].as_u64().is_some_and(|p| p <= 180), "{account}: {requests}");
        for minute in requests["perMinute"].as_array().into_iter().flatten() {
            assert!(minute["writes"].as_u64().unwrap_or(0) <= 90, "{account}: {minute}");
        }
    }
    // Nothing was lost on the way, and no job was counted twice; a busy budget is not an outage.
    stack.assert_counters_exact().await?;
    assert!(
        stack.alerts().iter().all(|a| a["type"] != "NoHealthyAccount" && a["type"] != "RegionRemoved"),
        "{:?}",
        stack.alerts()
    );
    let accounted = futures_util::future::join_all(ids.iter().map(|id| job(&stack, id))).await;
    for job in accounted {
        let job = job?;
        assert_ne!(job["state"], "Pending", "{job}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_expired_token_gives_a_clear_alert_not_a_silent_stop() -> anyhow::Result<()> {
    let expired = mkio_token(1_000_000_000);
    let setting = mkio_token_setting(A);
    let stack = Stack::start(mkio(&[(setting.as_str(), expired.as_str())])).await?;
    // The start-up sweep already met it; later sweeps do not repeat the alert.
    assert!(stack.sweep().await? && stack.sweep().await?, "the sweeps failed");
    let alerts = stack.wait_alerts("CredentialRefused", |a| a["account"] == A).await?;
    assert_eq!(alerts.len(), 1, "once per token: {alerts:?}");
    let reason = alerts[0]["reason"].as_str().unwrap_or_default();
    assert!(reason.contains(&setting) && reason.contains("expired"), "{reason}");
    assert!(alerts[0]["action"].as_str().is_some_and(|a| a.contains(&setting)), "{:?}", alerts[0]);

    // GetStatus says so too, and jobs go to the project whose token works.
    let status = stack.status().await?;
    let a = account_status(&status, A);
    assert_eq!(a["credential"]["status"]["state"], "expired", "{a}");
    assert!(a["credential"]["warning"].as_str().is_some_and(|w| w.contains("expired")), "{a}");
    assert_eq!(account_status(&status, B)["credential"]["status"]["state"], "valid");
    for i in 0..4 {
        let (status, body, _) = stack.submit(&job_body(&format!("token-{i}"))).await?;
        assert_eq!(status, 202, "{body}");
        assert_eq!(body["account"], B, "{body}");
    }
    // Nothing was sent with the expired token.
    assert_eq!(stack.mkio_requests(A).await?["unauthorized"], 0);
    assert_eq!(stack.alerts().iter().filter(|a| a["type"] == "CredentialRefused").count(), 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn each_project_gets_its_webhook_rule_from_the_handler_and_a_changed_one_is_put_back() -> anyhow::Result<()> {
    let stack = Stack::start(mkio(&[("DEFINITIONS_CHECK_EVERY", "0s")])).await?;
    let token = stack.mkio.as_ref().map(|m| m.token.clone()).unwrap_or_default();
    let rule_url =
        |account: &str| format!("{}/api/v1/projects/{account}/webhook/rules/ams-failover-jobs", stack.emulator.url);
    let read = |account: &str| {
        let request = stack.http.get(rule_url(account)).bearer_auth(&token);
        async move { anyhow::Ok(request.send().await?.json::<Value>().await?) }
    };
    let webhook = format!("{}/api/events/mkio", stack.devhost.url);
    for account in [A, B] {
        let rule = read(account).await?;
        assert_eq!(rule["spec"]["url"], webhook, "{rule}");
        assert_eq!(rule["spec"]["enabled"], true);
        let events: Vec<&str> =
            rule["spec"]["events"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
        assert!(events.contains(&"MediaKind.JobStarted") && events.contains(&"MediaKind.JobFinished"), "{rule}");
        let secret = &rule["spec"]["authentication"]["headers"]["x-mkio-webhook-secret"];
        assert!(secret.is_string() && *secret != TEST_WEBHOOK_SECRET, "the secret is set and read back masked: {rule}");
    }
    // Someone points A's rule elsewhere and drops the secret.
    let moved = json!({"spec": {"enabled": true, "url": "https://elsewhere.example/hook", "events": ["MediaKind.JobFinished"]}});
    let status = stack.http.put(rule_url(A)).bearer_auth(&token).json(&moved).send().await?.status();
    assert!(status.is_success(), "{status}");
    assert!(stack.sweep().await?, "the sweep failed");
    let repaired = read(A).await?;
    assert_eq!(repaired["spec"]["url"], webhook, "{repaired}");
    assert!(repaired["spec"]["authentication"]["headers"]["x-mkio-webhook-secret"].is_string(), "{repaired}");
    // And A's events reach the handler again.
    stack.fault(B, json!({"mode": "outage"})).await?;
    let (status, body, _) = stack.submit(&job_body("after-repair")).await?;
    assert_eq!((status.as_u16(), body["account"].as_str()), (202, Some(A)), "{body}");
    wait_finished(&stack, &["after-repair".to_owned()]).await?;
    Ok(())
}
