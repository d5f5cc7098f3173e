//! The job lifecycle end to end: SubmitJob, Event Grid delivery and GetJob/GetStatus through devhost,
//! against a real Azurite and the Media Services emulator. The suite runs on the provider `TEST_PROVIDER`
//! names (its events come as webhooks on MK.IO), except the check of foreign Event Grid events.

mod support;

use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::time::Duration;
use support::{eventually, job_body, options, provider_options, Stack, StackOptions};

const LIMIT: Duration = Duration::from_secs(90);

async fn wait_all_finished(stack: &Stack, ids: &[String]) -> anyhow::Result<Vec<Value>> {
    eventually(LIMIT, "every job to finish", || async {
        let mut jobs = Vec::new();
        for id in ids {
            let (_, job) = stack.get_job(id).await?;
            if job["state"] != "Finished" {
                return Ok(None);
            }
            jobs.push(job);
        }
        Ok(Some(jobs))
    })
    .await
}

async fn wait_nothing_in_flight(stack: &Stack) -> anyhow::Result<Value> {
    eventually(LIMIT, "every in-flight count back at 0", || async {
        let status = stack.status().await?;
        let idle = status["accounts"].as_array().is_some_and(|a| a.iter().all(|acct| acct["inFlight"] == 0));
        Ok(idle.then_some(status))
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_jobs_submitted_through_the_host_all_finish_on_both_accounts() -> anyhow::Result<()> {
    let stack = Stack::start(provider_options()).await?;
    let mut ids = Vec::new();
    for i in 0..20 {
        let id = format!("life-{i}");
        let (status, body, location) = stack.submit(&job_body(&id)).await?;
        assert_eq!(status, 202, "{body}");
        assert_eq!(body["jobId"], id);
        assert_eq!(location.as_deref(), Some(format!("/api/jobs/{id}").as_str()));
        assert!(body["account"].is_string() && body["region"].is_string(), "{body}");
        ids.push(id);
    }

    let jobs = wait_all_finished(&stack, &ids).await?;
    let accounts: BTreeSet<&str> = jobs.iter().filter_map(|j| j["account"].as_str()).collect();
    assert_eq!(accounts.len(), 2, "both accounts should get jobs: {accounts:?}");
    for job in &jobs {
        let attempts = job["attempts"].as_array().map(Vec::len);
        assert_eq!(attempts, Some(1), "{job}");
        assert_eq!(job["attempts"][0]["state"], "Finished");
        // Scheduled and Processing may be overtaken by the final event (deliveries race, and a final state is
        // terminal); the end is always known.
        assert!(job["attempts"][0]["finishedAt"].is_string(), "{job}");
        assert_eq!(job["outputs"], json!([format!("{}-a1-out0", job["jobId"].as_str().unwrap_or_default())]));
    }

    // The emulator agrees: every job it ran is Finished and carries our job id.
    let emulated = stack.emulator_jobs().await?;
    assert_eq!(emulated.len(), 20);
    assert!(emulated.iter().all(|j| j["state"] == "Finished" && j["correlationData"]["jobId"].is_string()));

    let status = wait_nothing_in_flight(&stack).await?;
    assert_eq!(status["accountsInRotation"], 2);
    stack.assert_counters_exact().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hundred_jobs_finish_with_exact_counters_while_events_are_duplicated_reordered_and_delayed(
) -> anyhow::Result<()> {
    let stack = Stack::start(StackOptions { time_scale: 50.0, ..provider_options() }).await?;
    stack.events(json!({"duplicate": 0.3, "reorder": 0.3, "max_delay_ms": 150})).await?;
    let ids: Vec<String> = (0..100).map(|i| format!("chaos-{i}")).collect();
    for chunk in ids.chunks(10) {
        stack.submit_all(chunk).await?;
        stack.assert_counters_exact().await?;
    }
    wait_all_finished(&stack, &ids).await?;
    wait_nothing_in_flight(&stack).await?;
    stack.assert_counters_exact().await?;
    let delivered: Value =
        stack.http.get(format!("{}/_emulator/events", stack.emulator.url)).send().await?.json().await?;
    eprintln!("event delivery: {delivered}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_submissions_keep_every_counter_equal_to_its_active_attempts() -> anyhow::Result<()> {
    // Long phases, so the jobs are still in flight when the counters are checked.
    let stack =
        Stack::start(StackOptions { time_scale: 1.0, phases_ms: (60_000, 60_000, 60_000), ..provider_options() })
            .await?;
    stack.submit_all(&(0..50).map(|i| format!("burst-{i}")).collect::<Vec<_>>()).await?;
    stack.assert_counters_exact().await?;
    let status = stack.status().await?;
    let total: u64 = status["accounts"].as_array().into_iter().flatten().filter_map(|a| a["inFlight"].as_u64()).sum();
    assert_eq!(total, 50, "{status}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_job_lands_on_the_other_account_when_one_answers_503() -> anyhow::Result<()> {
    let stack = Stack::start(provider_options()).await?;
    stack.fault("amswesteurope", json!({"mode": "outage"})).await?;
    for i in 0..6 {
        let (status, body, _) = stack.submit(&job_body(&format!("outage-{i}"))).await?;
        assert_eq!(status, 202, "{body}");
        assert_eq!(body["account"], "amsnortheurope", "{body}");
    }
    wait_all_finished(&stack, &(0..6).map(|i| format!("outage-{i}")).collect::<Vec<_>>()).await?;
    stack.assert_counters_exact().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_every_account_down_the_job_is_kept_pending_and_an_alert_is_sent() -> anyhow::Result<()> {
    let stack = Stack::start(provider_options()).await?;
    for (account, _) in &stack.options.accounts {
        stack.fault(account, json!({"mode": "outage"})).await?;
    }
    let (status, body, _) = stack.submit(&job_body("nowhere")).await?;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["state"], "Pending");
    let (_, job) = stack.get_job("nowhere").await?;
    assert_eq!(job["state"], "Pending");
    assert!(job["attempts"].as_array().is_some_and(|a| a.iter().all(|t| t["state"] == "SubmitFailed")), "{job}");
    let alerts = stack.alerts();
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(alerts[0]["type"], "NoHealthyAccount");
    assert_eq!(alerts[0]["jobId"], "nowhere");
    stack.assert_counters_exact().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn resubmitting_the_same_job_is_idempotent_and_a_different_body_conflicts() -> anyhow::Result<()> {
    let stack = Stack::start(provider_options()).await?;
    let (first_status, first, _) = stack.submit(&job_body("same")).await?;
    let (again_status, again, _) = stack.submit(&job_body("same")).await?;
    assert_eq!((first_status.as_u16(), again_status.as_u16()), (202, 202));
    assert_eq!((&first["jobId"], &first["account"]), (&again["jobId"], &again["account"]));
    let mut other = job_body("same");
    other["priority"] = json!("High");
    let (status, conflict, _) = stack.submit(&other).await?;
    assert_eq!(status, 409);
    assert_eq!(conflict["error"]["code"], "job_id_conflict");
    assert_eq!(stack.emulator_jobs().await?.len(), 1, "only one Media Services job for one logical job");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_input_gets_a_clear_4xx_with_a_json_error_and_writes_nothing() -> anyhow::Result<()> {
    let stack = Stack::start(provider_options()).await?;
    let oversize = format!(r#"{{"transform":"encode","input":{{"files":["https://x/{}"]}}}}"#, "a".repeat(40_000));
    let cases: Vec<(String, u16, &str)> = vec![
        ("{not json".into(), 400, "malformed_json"),
        ("".into(), 400, "missing_body"),
        (r#"{"input":{"files":["https://x/a.mp4"]}}"#.into(), 400, "missing_transform"),
        (r#"{"transform":"encode"}"#.into(), 400, "missing_input"),
        (oversize, 413, "body_too_large"),
        (r#"{"jobId":"a/b","transform":"encode","input":{"files":["https://x/a"]}}"#.into(), 400, "invalid_job_id"),
        (r#"{"jobId":"a\\b","transform":"encode","input":{"files":["https://x/a"]}}"#.into(), 400, "invalid_job_id"),
        (r#"{"jobId":"a#b","transform":"encode","input":{"files":["https://x/a"]}}"#.into(), 400, "invalid_job_id"),
        (r#"{"jobId":"a?b","transform":"encode","input":{"files":["https://x/a"]}}"#.into(), 400, "invalid_job_id"),
        (
            r#"{"jobId":"a\u0007b","transform":"encode","input":{"files":["https://x/a"]}}"#.into(),
            400,
            "invalid_job_id",
        ),
        (r#"{"transform":"encode","input":{"files":["http://x/a.mp4"]}}"#.into(), 400, "invalid_input"),
        (r#"{"transform":"encode","input":{"baseUri":"http://x/","files":["a.mp4"]}}"#.into(), 400, "invalid_input"),
        (r#"{"transform":"nope","input":{"files":["https://x/a.mp4"]}}"#.into(), 400, "unknown_transform"),
    ];
    for (body, want_status, want_code) in cases {
        let (status, content_type, text) = stack.submit_raw(body.clone()).await?;
        assert_eq!(status.as_u16(), want_status, "body {body:.80}: {text}");
        assert_eq!(content_type.as_deref(), Some("application/json"), "body {body:.80}");
        let error: Value = serde_json::from_str(&text)?;
        assert_eq!(error["error"]["code"], want_code, "body {body:.80}");
        assert!(error["error"]["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    let (status, missing) = stack.get_job("never-submitted").await?;
    assert_eq!(status, 404);
    assert_eq!(missing["error"]["code"], "job_not_found");
    let jobs_table = stack.count_rows(&format!("{}Jobs", stack.prefix)).await?;
    assert_eq!(jobs_table, 0, "nothing may be written for bad input");
    assert!(stack.emulator_jobs().await?.is_empty());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn events_for_unknown_accounts_or_jobs_are_acknowledged_and_change_nothing() -> anyhow::Result<()> {
    // Slow phases: the real job must still be running when the foreign events arrive.
    let stack =
        Stack::start(StackOptions { time_scale: 1.0, phases_ms: (60_000, 60_000, 60_000), ..options() }).await?;
    let (_, before, _) = stack.submit(&job_body("known")).await?;
    let webhook = format!("{}/runtime/webhooks/EventGrid?functionName=OnJobStateChange", stack.devhost.url);
    let event = |topic_account: &str, job: &str| {
        json!([{
            "topic": format!("/subscriptions/{}/resourceGroups/{}/providers/Microsoft.Media/mediaservices/{topic_account}", support::SUBSCRIPTION, support::RESOURCE_GROUP),
            "subject": format!("transforms/encode/jobs/{job}"),
            "eventType": "Microsoft.Media.JobFinished", "eventTime": "2024-01-01T00:00:00", "id": "x",
            "data": {"previousState": "Processing", "state": "Finished", "outputs": []},
            "dataVersion": "1.0", "metadataVersion": "1"
        }])
    };
    let account = before["account"].as_str().unwrap_or_default().to_owned();
    for body in [
        event("someoneelse", "known-a1"),
        event(&account, "not-ours"),
        json!([{"eventType": "Microsoft.Media.JobFinished"}]),
        json!([{"eventType": "Microsoft.Storage.BlobCreated", "data": {}}]),
    ] {
        let status =
            stack.http.post(&webhook).header("aeg-event-type", "Notification").json(&body).send().await?.status();
        assert_eq!(status, 202, "{body}");
    }
    let (_, job) = stack.get_job("known").await?;
    assert_ne!(job["attempts"][0]["state"], "Finished", "a foreign event must not finish our job early: {job}");
    stack.assert_counters_exact().await?;
    Ok(())
}

/// `POST /api/jobs/{id}/cancel`: status and body.
async fn cancel(stack: &Stack, id: &str) -> anyhow::Result<(u16, Value)> {
    let response = stack.http.post(format!("{}/api/jobs/{id}/cancel", stack.devhost.url)).send().await?;
    let status = response.status().as_u16();
    Ok((status, response.json().await?))
}

async fn wait_state(stack: &Stack, id: &str, state: &str) -> anyhow::Result<Value> {
    eventually(LIMIT, &format!("{id} to be {state}"), || async {
        let (_, job) = stack.get_job(id).await?;
        Ok((job["state"] == state).then_some(job))
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_pending_a_queued_and_a_processing_job_are_cancelled_with_exact_counters_and_one_notification_each(
) -> anyhow::Result<()> {
    // A long queue and a longer encode, so the jobs are still where the test cancels them.
    let stack =
        Stack::start(StackOptions { phases_ms: (4000, 500, 120_000), time_scale: 1.0, ..provider_options() }).await?;
    assert_eq!(cancel(&stack, "no-such-job").await?.0, 404);

    let (status, body, _) = stack.submit(&job_body("cancel-queued")).await?;
    assert_eq!(status, 202, "{body}");
    let (status, body) = cancel(&stack, "cancel-queued").await?;
    assert_eq!(status, 202, "a running job is cancelled in Media Services: {body}");
    assert!(body["cancelRequestedAt"].is_string(), "{body}");

    let (status, body, _) = stack.submit(&job_body("cancel-processing")).await?;
    assert_eq!(status, 202, "{body}");
    wait_state(&stack, "cancel-processing", "Processing").await?;
    assert_eq!(cancel(&stack, "cancel-processing").await?.0, 202);
    assert_eq!(cancel(&stack, "cancel-processing").await?.0, 202, "asking twice is the same request");

    for (account, _) in &stack.options.accounts {
        stack.fault(account, json!({"mode": "outage"})).await?;
    }
    let (_, body, _) = stack.submit(&job_body("cancel-pending")).await?;
    assert_eq!(body["state"], "Pending", "{body}");
    let (status, body) = cancel(&stack, "cancel-pending").await?;
    assert_eq!((status, body["state"].as_str()), (200, Some("Canceled")), "a Pending job ends at once: {body}");
    for (account, _) in &stack.options.accounts {
        stack.fault(account, json!({"mode": "healthy"})).await?;
    }

    for id in ["cancel-queued", "cancel-processing", "cancel-pending"] {
        let job = wait_state(&stack, id, "Canceled").await?;
        assert!(job["cancelRequestedAt"].is_string(), "{job}");
        let (status, body) = cancel(&stack, id).await?;
        assert_eq!((status, body["state"].as_str()), (200, Some("Canceled")), "idempotent once ended: {body}");
    }
    // The sweep places nothing that was cancelled.
    stack.sweep().await?;
    let (_, pending) = stack.get_job("cancel-pending").await?;
    assert_eq!(pending["state"], "Canceled");
    wait_nothing_in_flight(&stack).await?;
    stack.assert_counters_exact().await?;
    let outcomes = eventually(LIMIT, "one Canceled notification per job", || async {
        let events = stack.job_events();
        let canceled: Vec<_> = events.iter().filter(|(_, e)| e["type"] == "Canceled").collect();
        Ok((canceled.len() >= 3).then_some(events))
    })
    .await?;
    let ids: BTreeSet<&str> = outcomes.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(ids.len(), outcomes.len(), "each outcome once: {outcomes:?}");
    for id in ["cancel-queued", "cancel-processing", "cancel-pending"] {
        assert!(ids.contains(format!("{id}:Canceled").as_str()), "{id}: {outcomes:?}");
    }
    Ok(())
}

/// Every page of `GET /api/jobs?{query}` until the last: the job ids in order, and how many pages.
async fn list_all(stack: &Stack, query: &str, page_size: usize) -> anyhow::Result<(Vec<String>, usize)> {
    let mut ids = Vec::new();
    let mut pages = 0;
    let mut url = format!("{}/api/jobs?{query}&pageSize={page_size}", stack.devhost.url);
    loop {
        let response = stack.http.get(&url).send().await?;
        anyhow::ensure!(response.status() == 200, "{url} answered {}", response.status());
        let page: Value = response.json().await?;
        let jobs = page["jobs"].as_array().cloned().unwrap_or_default();
        anyhow::ensure!(jobs.len() <= page_size, "a page holds at most pageSize jobs: {page}");
        ids.extend(jobs.iter().filter_map(|j| j["jobId"].as_str().map(str::to_owned)));
        pages += 1;
        match page["continuationToken"].as_str() {
            Some(token) => {
                url = format!("{}/api/jobs?continuationToken={token}&pageSize={page_size}", stack.devhost.url)
            }
            None => return Ok((ids, pages)),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn listings_page_through_more_jobs_than_a_page_from_the_open_and_the_ended_indexes() -> anyhow::Result<()> {
    let stack = Stack::start(provider_options()).await?;
    let ids = |prefix: &str, n: usize| (0..n).map(|i| format!("{prefix}-{i:02}")).collect::<Vec<_>>();

    let finished = ids("list-done", 7);
    stack.submit_all(&finished).await?;
    wait_all_finished(&stack, &finished).await?;

    for (account, _) in &stack.options.accounts {
        stack.fault(account, json!({"mode": "fail-jobs", "retry": "DoNotRetry"})).await?;
    }
    let failed = ids("list-failed", 5);
    let before_failures = chrono::Utc::now();
    stack.submit_all(&failed).await?;
    for id in &failed {
        wait_state(&stack, id, "Error").await?;
    }

    for (account, _) in &stack.options.accounts {
        stack.fault(account, json!({"mode": "outage"})).await?;
    }
    let pending = ids("list-pending", 6);
    for id in &pending {
        let (status, body, _) = stack.submit(&job_body(id)).await?;
        assert_eq!((status.as_u16(), body["state"].as_str()), (202, Some("Pending")), "{body}");
    }

    let (listed, pages) = list_all(&stack, "state=pending", 4).await?;
    assert_eq!(listed, pending, "every pending job once, in id order");
    assert!(pages >= 2, "six jobs in pages of four take two pages at least");
    let (listed, _) = list_all(&stack, "", 4).await?;
    assert_eq!(listed, pending, "open is the default, and only the pending jobs are still open");

    // Ended jobs come oldest first, so compare as sets.
    let set = |v: &[String]| v.iter().cloned().collect::<BTreeSet<_>>();
    let (listed, pages) = list_all(&stack, "state=failed", 2).await?;
    assert_eq!((listed.len(), set(&listed)), (failed.len(), set(&failed)), "every failed job once: {listed:?}");
    assert!(pages >= 3);
    let (listed, _) = list_all(&stack, "state=finished", 3).await?;
    assert_eq!((listed.len(), set(&listed)), (finished.len(), set(&finished)));
    let since = before_failures.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let (listed, _) = list_all(&stack, &format!("state=finished&since={since}"), 3).await?;
    assert!(listed.is_empty(), "every finished job ended before {since}: {listed:?}");
    let (listed, _) = list_all(&stack, &format!("state=failed&since={since}"), 50).await?;
    assert_eq!(set(&listed), set(&failed));

    let page: Value =
        stack.http.get(format!("{}/api/jobs?state=failed&pageSize=1", stack.devhost.url)).send().await?.json().await?;
    let job = &page["jobs"][0];
    assert_eq!(
        (job["state"].as_str(), job["lastError"]["code"].as_str()),
        (Some("Error"), Some("ServiceError")),
        "{page}"
    );
    let token = page["continuationToken"].as_str().unwrap_or_default();
    for (query, code) in [
        ("state=running".to_owned(), "invalid_state"),
        ("since=yesterday".to_owned(), "invalid_since"),
        ("pageSize=1000".to_owned(), "invalid_page_size"),
        ("continuationToken=garbage".to_owned(), "invalid_continuation_token"),
        (format!("state=open&continuationToken={token}"), "invalid_continuation_token"),
    ] {
        let response = stack.http.get(format!("{}/api/jobs?{query}", stack.devhost.url)).send().await?;
        assert_eq!(response.status(), 400, "{query}");
        let body: Value = response.json().await?;
        assert_eq!(body["error"]["code"], code, "{query}: {body}");
    }
    Ok(())
}
