//! Ravnur Media Services accounts end to end, through devhost against Azurite and the emulator's `rms`
//! mode: the API-key token is refreshed once when the instance stops taking it, a refused key is the
//! account's fault, and events are matched to accounts by the custom topic they come from.

mod support;

use serde_json::{json, Value};
use std::time::Duration;
use support::{eventually, job_body, options, Stack, StackOptions};
use testkit::stack::rms_event_topic;

const A: &str = "rmswesteurope";
const B: &str = "rmsnortheurope";
const LIMIT: Duration = Duration::from_secs(60);

/// Every account on rms; `accounts` as (name, region).
fn on_rms(accounts: &[(&'static str, &'static str)]) -> StackOptions {
    StackOptions { accounts: accounts.to_vec(), ..options() }.on_provider("rms")
}

/// Slow phases, so a job is still waiting to start when a test sends its own events.
fn slow(options: StackOptions) -> StackOptions {
    StackOptions { time_scale: 1.0, phases_ms: (60_000, 60_000, 60_000), ..options }
}

async fn attempt_state(stack: &Stack, id: &str) -> anyhow::Result<Value> {
    Ok(stack.get_job(id).await?.1["attempts"][0]["state"].clone())
}

/// An Event Grid delivery of one job event from `topic`.
fn delivery(topic: &str, job: &str, state: &str) -> Value {
    json!([{
        "topic": topic,
        "subject": format!("transforms/encode/jobs/{job}"),
        "eventType": "Microsoft.Media.JobStateChange", "eventTime": "2024-01-01T00:00:00", "id": format!("forged-{job}-{state}"),
        "data": {"previousState": "Queued", "state": state},
        "dataVersion": "1.0", "metadataVersion": "1"
    }])
}

/// Posts `body` to devhost's Event Grid webhook; the status it answers.
async fn deliver(stack: &Stack, body: &Value) -> anyhow::Result<u16> {
    let webhook = format!("{}/runtime/webhooks/EventGrid?functionName=OnJobStateChange", stack.devhost.url);
    Ok(stack.http.post(&webhook).header("aeg-event-type", "Notification").json(body).send().await?.status().as_u16())
}

/// Submits `{prefix}-{i}` until one job has landed on each of `accounts`; the job id on each, in order.
async fn one_job_on_each(stack: &Stack, prefix: &str, accounts: &[&str]) -> anyhow::Result<Vec<String>> {
    let mut found: Vec<Option<String>> = vec![None; accounts.len()];
    for i in 0..60 {
        let id = format!("{prefix}-{i}");
        let (status, body, _) = stack.submit(&job_body(&id)).await?;
        anyhow::ensure!(status == 202, "SubmitJob answered {status}: {body}");
        if let Some(slot) = accounts.iter().position(|a| body["account"] == *a) {
            found[slot].get_or_insert(id);
        }
        if found.iter().all(Option::is_some) {
            return Ok(found.into_iter().flatten().collect());
        }
    }
    anyhow::bail!("60 jobs did not reach every one of {accounts:?}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_token_the_instance_stops_taking_is_refreshed_once_and_the_call_retried() -> anyhow::Result<()> {
    let stack = Stack::start(on_rms(&[(A, "westeurope")])).await?;
    let (status, first, _) = stack.submit(&job_body("before")).await?;
    assert_eq!((status.as_u16(), first["account"].as_str()), (202, Some(A)), "{first}");
    let before = stack.rms_tokens().await?;
    assert_eq!(before["unauthorizedCalls"], 0, "the cached token was taken until now: {before}");

    stack.expire_rms_tokens().await?;
    let (status, second, _) = stack.submit(&job_body("after")).await?;
    assert_eq!((status.as_u16(), second["account"].as_str()), (202, Some(A)), "placed, not pending: {second}");

    let after = stack.rms_tokens().await?;
    let delta = |field: &str| after[field].as_u64().unwrap_or(0) - before[field].as_u64().unwrap_or(0);
    assert_eq!(delta("unauthorizedCalls"), 1, "one call met the expired token: {after}");
    assert_eq!(delta("tokensIssued"), 1, "one new token, then the cache again: {after}");
    let (_, job) = stack.get_job("after").await?;
    assert_eq!(job["attempts"].as_array().map(Vec::len), Some(1), "no attempt failed over the refresh: {job}");
    for id in ["before", "after"] {
        eventually(LIMIT, &format!("{id} to finish through the custom topic's events"), || async {
            Ok((stack.get_job(id).await?.1["state"] == "Finished").then_some(()))
        })
        .await?;
    }
    stack.assert_counters_exact().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_refused_api_key_is_the_accounts_fault_so_the_job_waits_instead_of_failing() -> anyhow::Result<()> {
    let mut opts = on_rms(&[(A, "westeurope")]);
    opts.settings.push((testkit::stack::rms_api_key_setting(A), "not-the-key".to_owned()));
    let stack = Stack::start(opts).await?;
    let (status, body, _) = stack.submit(&job_body("locked-out")).await?;
    assert_eq!((status.as_u16(), body["state"].as_str()), (202, Some("Pending")), "{body}");
    let tokens = stack.rms_tokens().await?;
    assert!(tokens["tokenRefusals"].as_u64() >= Some(1), "{tokens}");
    assert_eq!(tokens["unauthorizedCalls"], 0, "no ARM call leaves without a token: {tokens}");
    stack.wait_alerts("NoHealthyAccount", |_| true).await?;
    assert!(stack.emulator_jobs().await?.is_empty());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn events_from_each_custom_topic_land_on_their_own_account() -> anyhow::Result<()> {
    let stack = Stack::start(slow(on_rms(&[(A, "westeurope"), (B, "northeurope")]))).await?;
    for account in [A, B] {
        let view = stack.emulator_account(account).await?;
        assert_eq!(view["eventTopic"], rms_event_topic(account).as_str(), "the handler was given the topic: {view}");
    }
    let ids = one_job_on_each(&stack, "topic", &[A, B]).await?;
    let (on_a, on_b) = (&ids[0], &ids[1]);
    let job_name = |id: &str| format!("{id}-a1");

    // B's job named under A's topic is not A's job, so nothing changes.
    assert_eq!(deliver(&stack, &delivery(&rms_event_topic(A), &job_name(on_b), "Processing")).await?, 202);
    assert_eq!(attempt_state(&stack, on_b).await?, "Queued");
    // Under B's topic (in another case, as Event Grid may send it) it is applied to B's job.
    let shouted = rms_event_topic(B).to_ascii_uppercase();
    assert_eq!(deliver(&stack, &delivery(&shouted, &job_name(on_b), "Processing")).await?, 202);
    assert_eq!(attempt_state(&stack, on_b).await?, "Processing");
    assert_eq!(attempt_state(&stack, on_a).await?, "Queued");
    stack.assert_counters_exact().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_event_from_a_topic_no_account_is_mapped_to_is_acknowledged_and_changes_nothing() -> anyhow::Result<()> {
    let stack = Stack::start(slow(on_rms(&[(A, "westeurope")]))).await?;
    let (_, body, _) = stack.submit(&job_body("unmapped")).await?;
    assert_eq!(body["account"], A, "{body}");
    let elsewhere = rms_event_topic("another-instance");
    // An rms account's events never come from its own resource id, so that topic is not mapped either.
    let own_id = format!(
        "/subscriptions/{}/resourceGroups/{}/providers/Microsoft.Media/mediaservices/{A}",
        support::SUBSCRIPTION,
        support::RESOURCE_GROUP
    );
    for topic in [elsewhere.as_str(), own_id.as_str()] {
        let status = deliver(&stack, &delivery(topic, "unmapped-a1", "Finished")).await?;
        assert_eq!(status, 202, "acknowledged, so Event Grid does not retry it: {topic}");
    }
    assert_eq!(attempt_state(&stack, "unmapped").await?, "Queued");
    stack.assert_counters_exact().await?;
    Ok(())
}
