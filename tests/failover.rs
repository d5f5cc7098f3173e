//! Regional failover against the emulator's faults (stall, outage, fail-jobs, dropped events) at a short
//! time scale, with the sweep run explicitly through the host's admin endpoint, with every account on the
//! provider `TEST_PROVIDER` names (`ams` when unset). A test needing a capability the provider lacks says so
//! and skips itself.

mod support;

use futures_util::future::join_all;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::Duration;
use support::{eventually, job_body, provider_options, Stack, StackOptions};

const LIMIT: Duration = Duration::from_secs(60);
const A: &str = "amswesteurope";
const B: &str = "amsnortheurope";

/// Two accounts, thresholds in seconds instead of minutes.
fn failover(settings: &[(&str, &str)]) -> StackOptions {
    let mut opts = provider_options();
    let mut all: BTreeMap<String, String> = [
        ("STUCK_AFTER", "2s"),
        ("RECONCILE_AFTER", "1h"),
        ("COOLDOWN", "3s"),
        ("COOLDOWN_MAX", "20s"),
        ("SUBMIT_FAILURES_TO_REMOVE", "3"),
        ("ALERT_REPEAT", "1h"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    all.extend(settings.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    opts.settings = all.into_iter().collect();
    opts
}

/// Submits jobs `{prefix}-{i}` until `want` of them landed on `account`; returns every id submitted.
async fn submit_until_on(stack: &Stack, prefix: &str, account: &str, want: usize) -> anyhow::Result<Vec<String>> {
    let mut ids = Vec::new();
    let mut on_account = 0;
    for i in 0..60 {
        let id = format!("{prefix}-{i}");
        let (status, body, _) = stack.submit(&job_body(&id)).await?;
        anyhow::ensure!(status == 202, "SubmitJob answered {status}: {body}");
        ids.push(id);
        if body["account"] == account {
            on_account += 1;
            if on_account == want {
                return Ok(ids);
            }
        }
    }
    anyhow::bail!("fewer than {want} of 60 jobs landed on {account}")
}

async fn job(stack: &Stack, id: &str) -> anyhow::Result<Value> {
    Ok(stack.get_job(id).await?.1)
}

async fn wait_finished(stack: &Stack, ids: &[String]) -> anyhow::Result<Vec<Value>> {
    eventually(LIMIT, "every job to finish", || async {
        let mut jobs = Vec::new();
        for id in ids {
            let job = job(stack, id).await?;
            if job["state"] != "Finished" {
                return Ok(None);
            }
            jobs.push(job);
        }
        Ok(Some(jobs))
    })
    .await
}

fn account_status<'a>(status: &'a Value, name: &str) -> &'a Value {
    status["accounts"].as_array().and_then(|a| a.iter().find(|x| x["name"] == name)).unwrap_or(&Value::Null)
}

fn alerts_of(stack: &Stack, kind: &str) -> Vec<Value> {
    stack.alerts().into_iter().filter(|a| a["type"] == kind).collect()
}

/// One logical job, one result: exactly one attempt Finished, every other one closed without a result.
fn assert_one_result(job: &Value) {
    let finished = job["attempts"].as_array().map_or(0, |a| a.iter().filter(|t| t["state"] == "Finished").count());
    assert_eq!(finished, 1, "a job completes exactly once: {job}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stalled_region_is_removed_and_its_stuck_jobs_finish_elsewhere() -> anyhow::Result<()> {
    let stack = Stack::start(failover(&[])).await?;
    stack.fault(A, json!({"mode": "stall"})).await?;
    let ids = submit_until_on(&stack, "stall", A, 2).await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(stack.sweep().await?, "the sweep failed");

    let status = stack.status().await?;
    let a = account_status(&status, A);
    assert_eq!(a["inRotation"], false, "{a}");
    assert!(a["removed"]["reason"].as_str().is_some_and(|r| r.contains("waited longer")), "{a}");
    let removed = alerts_of(&stack, "RegionRemoved");
    assert_eq!(removed.len(), 1, "{removed:?}");
    assert_eq!((removed[0]["account"].as_str(), removed[0]["region"].as_str()), (Some(A), Some("westeurope")));
    assert!(removed[0]["counts"]["stuckJobs"].as_u64() >= Some(2));

    for job in wait_finished(&stack, &ids).await? {
        assert_one_result(&job);
        assert_eq!(job["account"], B, "{job}");
        if job["attempts"].as_array().map_or(0, Vec::len) == 2 {
            assert_eq!(job["attempts"][0]["state"], "Superseded", "{job}");
        }
    }
    // The stuck Media Services jobs were cancelled in the stalled region.
    let cancelled =
        stack.emulator_jobs().await?.into_iter().filter(|j| j["account"] == A && j["state"] == "Canceled").count();
    assert!(cancelled >= 2, "stuck jobs are cancelled where they were stuck");
    stack.assert_counters_exact().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_the_wait_policy_stuck_jobs_get_a_grace_before_they_move() -> anyhow::Result<()> {
    let stack = Stack::start(failover(&[("STUCK_POLICY", "wait"), ("STUCK_GRACE", "4s")])).await?;
    stack.fault(A, json!({"mode": "stall"})).await?;
    let ids = submit_until_on(&stack, "grace", A, 1).await?;
    let stuck = ids.last().cloned().unwrap_or_default();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(stack.sweep().await?);
    assert_eq!(account_status(&stack.status().await?, A)["inRotation"], false, "removed at once");
    assert_eq!(job(&stack, &stuck).await?["attempts"].as_array().map(Vec::len), Some(1), "but the job waits");
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(stack.sweep().await?);
    let moved = wait_finished(&stack, &[stuck]).await?;
    assert_eq!(moved[0]["attempts"].as_array().map(Vec::len), Some(2), "{}", moved[0]);
    stack.assert_counters_exact().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_removed_region_comes_back_after_its_cooldown_and_fails_again_into_a_longer_one() -> anyhow::Result<()> {
    // A 4 s cool-down: "soon after coming back" is then 8 s, which leaves room for a slow machine.
    let stack = Stack::start(failover(&[("COOLDOWN", "4s")])).await?;
    stack.fault(A, json!({"mode": "stall"})).await?;
    submit_until_on(&stack, "back", A, 1).await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(stack.sweep().await?);
    let first = account_status(&stack.status().await?, A)["removed"].clone();
    assert_eq!(first["cooldownSecs"], 4, "{first}");

    // Still broken at the end of the cool-down: the probe succeeds (ARM answers), it comes back, fails again.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(stack.sweep().await?);
    assert_eq!(account_status(&stack.status().await?, A)["inRotation"], true);
    assert_eq!(alerts_of(&stack, "RegionReadmitted").len(), 1);
    submit_until_on(&stack, "again", A, 1).await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(stack.sweep().await?);
    let second = account_status(&stack.status().await?, A)["removed"].clone();
    assert_eq!(second["cooldownSecs"], 8, "failing again soon doubles the cool-down: {second}");

    // Outage: the probe fails, so the account stays out after its cool-down.
    stack.fault(A, json!({"mode": "outage"})).await?;
    tokio::time::sleep(Duration::from_secs(9)).await;
    assert!(stack.sweep().await?);
    assert_eq!(account_status(&stack.status().await?, A)["inRotation"], false, "a failed probe keeps it out");
    stack.fault(A, json!({"mode": "healthy"})).await?;
    assert!(stack.sweep().await?);
    assert_eq!(account_status(&stack.status().await?, A)["inRotation"], true);
    assert_eq!(alerts_of(&stack, "RegionReadmitted").len(), 2);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn consecutive_submission_failures_remove_an_account_without_waiting_for_stuck_jobs() -> anyhow::Result<()> {
    let stack = Stack::start(failover(&[])).await?;
    stack.fault(A, json!({"mode": "outage"})).await?;
    let mut i = 0;
    let status = eventually(LIMIT, "the failing account to be removed", || {
        i += 1;
        let id = format!("api-{i}");
        let stack = &stack;
        async move {
            let (status, body, _) = stack.submit(&job_body(&id)).await?;
            anyhow::ensure!(status == 202 && body["account"] == B, "every job lands on the healthy account: {body}");
            let status = stack.status().await?;
            Ok((account_status(&status, A)["inRotation"] == false).then_some(status))
        }
    })
    .await?;
    let reason = account_status(&status, A)["removed"]["reason"].as_str().unwrap_or_default().to_owned();
    assert!(reason.contains("3 submissions in a row failed"), "{reason}");
    assert_eq!(alerts_of(&stack, "RegionRemoved").len(), 1);
    stack.assert_counters_exact().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn jobs_whose_events_were_lost_are_read_back_from_media_services() -> anyhow::Result<()> {
    let stack = Stack::start(failover(&[("RECONCILE_AFTER", "1s"), ("STUCK_AFTER", "1h")])).await?;
    stack.events(json!({"drop": 1.0})).await?;
    let ids: Vec<String> = (0..4).map(|i| format!("lost-{i}")).collect();
    for id in &ids {
        stack.submit(&job_body(id)).await?;
    }
    // The emulator finishes them, but no event arrives.
    eventually(LIMIT, "the emulator to finish the jobs", || async {
        Ok(stack.emulator_jobs().await?.iter().all(|j| j["state"] == "Finished").then_some(()))
    })
    .await?;
    assert_eq!(job(&stack, &ids[0]).await?["state"], "Queued");
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert!(stack.sweep().await?);
    for job in wait_finished(&stack, &ids).await? {
        assert_one_result(&job);
    }
    assert_eq!(stack.status().await?["accounts"].as_array().map(|a| a.iter().all(|x| x["inFlight"] == 0)), Some(true));
    stack.assert_counters_exact().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn retriable_errors_are_retried_elsewhere_and_final_errors_fail_the_job_with_an_alert() -> anyhow::Result<()> {
    let stack = Stack::start(failover(&[("MAX_ATTEMPTS", "2")])).await?;
    stack.fault(A, json!({"mode": "fail-jobs", "retry": "MayRetry"})).await?;
    stack.fault(B, json!({"mode": "fail-jobs", "retry": "DoNotRetry", "code": "ContentMalformed"})).await?;
    let ids = submit_until_on(&stack, "err", A, 1).await?;
    let on_a = ids.last().cloned().unwrap_or_default();
    // A's MayRetry error puts the job back to Pending; the sweep sends it to B, which fails it for good.
    let pending = eventually(LIMIT, "the error on A", || async {
        let job = job(&stack, &on_a).await?;
        Ok((job["state"] == "Pending").then_some(job))
    })
    .await?;
    assert_eq!(pending["lastError"]["retry"], "MayRetry");
    assert!(stack.sweep().await?);
    let failed = eventually(LIMIT, "the final error", || async {
        let job = job(&stack, &on_a).await?;
        Ok((job["state"] == "Error").then_some(job))
    })
    .await?;
    assert_eq!(failed["attempts"].as_array().map(Vec::len), Some(2));
    assert_eq!(failed["attempts"][1]["account"], B, "the retry goes to another account");
    assert_eq!(failed["lastError"]["code"], "ContentMalformed", "{failed}");
    stack.wait_alerts("JobFailed", |a| a["jobId"] == on_a.as_str()).await?;
    stack.assert_counters_exact().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_job_accepted_while_no_account_could_take_it_runs_once_an_account_is_back() -> anyhow::Result<()> {
    let stack = Stack::start(failover(&[])).await?;
    stack.fault(A, json!({"mode": "outage"})).await?;
    stack.fault(B, json!({"mode": "outage"})).await?;
    let (_, body, _) = stack.submit(&job_body("waiting")).await?;
    assert_eq!(body["state"], "Pending");
    assert!(stack.sweep().await?);
    assert_eq!(job(&stack, "waiting").await?["state"], "Pending", "still nowhere to go");
    stack.fault(B, json!({"mode": "healthy"})).await?;
    assert!(stack.sweep().await?);
    let done = wait_finished(&stack, &["waiting".to_owned()]).await?;
    assert_eq!(done[0]["account"], B);
    stack.assert_counters_exact().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_late_result_from_a_superseded_attempt_does_not_complete_the_job_twice() -> anyhow::Result<()> {
    // The stuck job cannot be cancelled (its region is down), then the region recovers and finishes it anyway.
    let mut opts = failover(&[]);
    opts.time_scale = 10.0;
    let stack = Stack::start(opts).await?;
    stack.fault(A, json!({"mode": "stall"})).await?;
    let ids = submit_until_on(&stack, "late", A, 1).await?;
    let late = ids.last().cloned().unwrap_or_default();
    stack.fault(A, json!({"mode": "outage"})).await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(stack.sweep().await?);
    stack.fault(A, json!({"mode": "healthy"})).await?;
    let done = wait_finished(&stack, std::slice::from_ref(&late)).await?;
    eventually(LIMIT, "the superseded job to finish in its region too", || async {
        let ams = stack.emulator_jobs().await?;
        Ok(ams.iter().any(|j| j["name"] == format!("{late}-a1") && j["state"] == "Finished").then_some(()))
    })
    .await?;
    // Let its events arrive, then check nothing changed.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = job(&stack, &late).await?;
    assert_one_result(&after);
    assert_eq!(after["attempts"][0]["state"], "Superseded");
    assert_eq!(after["outputs"], done[0]["outputs"], "the outputs are the current attempt's");
    stack.assert_counters_exact().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_sweeps_at_once_never_move_a_job_twice() -> anyhow::Result<()> {
    let stack = Stack::start(failover(&[])).await?;
    stack.fault(A, json!({"mode": "stall"})).await?;
    let ids = submit_until_on(&stack, "twice", A, 4).await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let results = join_all((0..3).map(|_| stack.sweep())).await;
    for result in results {
        assert!(result?, "a sweep failed");
    }
    let jobs = wait_finished(&stack, &ids).await?;
    let ams = stack.emulator_jobs().await?;
    for job in &jobs {
        assert_one_result(job);
        let attempts = job["attempts"].as_array().map_or(0, Vec::len);
        let id = job["jobId"].as_str().unwrap_or_default();
        let created = ams.iter().filter(|j| j["correlationData"]["jobId"] == id).count();
        assert_eq!(attempts, created, "every attempt made exactly one Media Services job: {job}");
        assert!(attempts <= 2, "moved at most once: {job}");
    }
    assert_eq!(alerts_of(&stack, "RegionRemoved").len(), 1, "removed once, alerted once");
    stack.assert_counters_exact().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_managed_account_saturated_at_its_mru_maximum_is_not_removed() -> anyhow::Result<()> {
    if !support::runs_on_test_provider(|c| c.reserved_units, "reserved units") {
        return Ok(());
    }
    let mut opts = failover(&[]);
    // Reserved units exist only on Media Services itself, whatever provider the suite runs on.
    opts.providers.clear();
    opts.accounts = vec![(A, "westeurope")];
    opts.managed = vec![(A, 1)];
    // Each job processes for 5 s (real), longer than STUCK_AFTER: the others wait their turn in Scheduled.
    opts.time_scale = 10.0;
    opts.phases_ms = (500, 500, 50_000);
    let stack = Stack::start(opts).await?;
    let ids: Vec<String> = (0..3).map(|i| format!("busy-{i}")).collect();
    for id in &ids {
        stack.submit(&job_body(id)).await?;
    }
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(stack.sweep().await?);
    let status = stack.status().await?;
    let a = account_status(&status, A);
    assert_eq!(a["inRotation"], true, "waiting for a free unit is not a broken region: {a}");
    // The last job has waited in Scheduled longer than STUCK_AFTER by now, behind the one Processing (how
    // many are still waiting depends on how fast the machine submitted them).
    assert!(a["activeByState"]["Scheduled"].as_u64() >= Some(1), "{a}");
    assert_eq!(a["activeByState"]["Processing"], 1, "{a}");
    assert_eq!(a["mru"]["saturated"], true, "{a}");
    assert!(alerts_of(&stack, "RegionRemoved").is_empty());
    let jobs = wait_finished(&stack, &ids).await?;
    assert!(jobs.iter().all(|j| j["attempts"].as_array().map(Vec::len) == Some(1)), "nothing was moved");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_every_account_failing_one_alert_says_how_many_jobs_wait_however_many_are_submitted() -> anyhow::Result<()>
{
    let stack = Stack::start(failover(&[("COOLDOWN", "1h"), ("COOLDOWN_MAX", "2h")])).await?;
    stack.fault(A, json!({"mode": "outage"})).await?;
    stack.fault(B, json!({"mode": "outage"})).await?;
    // Failing API calls are evidence: three failed submissions take each account out.
    for i in 0..10 {
        let (status, body, _) = stack.submit(&job_body(&format!("nowhere-{i}"))).await?;
        assert_eq!(status, 202, "{body}");
        assert_eq!(body["state"], "Pending", "{body}");
        assert!(
            body.get("account").is_none() && body.get("region").is_none(),
            "a Pending job names no account: {body}"
        );
    }
    for _ in 0..3 {
        assert!(stack.sweep().await?);
    }
    let status = stack.status().await?;
    assert_eq!(status["accountsInRotation"], 0);
    assert_eq!(status["lastSweep"]["pending"], 10, "{status}");
    let alerts = alerts_of(&stack, "NoHealthyAccount");
    assert_eq!(alerts.len(), 1, "one alert per ALERT_REPEAT, not one per job or sweep: {alerts:?}");
    assert!(alerts[0]["counts"]["pendingJobs"].as_u64() >= Some(1), "{}", alerts[0]);
    // Once the regions heal and come back, every job is placed.
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_slow_last_account_stays_in_rotation_and_operators_are_told_it_is_the_last() -> anyhow::Result<()> {
    let stack = Stack::start(failover(&[("STUCK_MIN_JOBS", "1"), ("COOLDOWN", "1h"), ("COOLDOWN_MAX", "2h")])).await?;
    // A fails its API calls and is removed; B is merely slow: one job waits longer than STUCK_AFTER.
    stack.fault(A, json!({"mode": "outage"})).await?;
    stack.fault(B, json!({"mode": "stall"})).await?;
    let mut ids = Vec::new();
    while account_status(&stack.status().await?, A)["inRotation"] == true {
        anyhow::ensure!(ids.len() < 30, "A was never removed");
        let id = format!("slow-{}", ids.len());
        let (status, body, _) = stack.submit(&job_body(&id)).await?;
        assert_eq!((status.as_u16(), &body["account"]), (202, &json!(B)), "{body}");
        ids.push(id);
    }
    tokio::time::sleep(Duration::from_millis(2500)).await;
    for _ in 0..3 {
        assert!(stack.sweep().await?);
    }
    let status = stack.status().await?;
    assert_eq!(account_status(&status, B)["inRotation"], true, "nothing better to move to: {status}");
    assert!(alerts_of(&stack, "RegionRemoved").iter().all(|a| a["account"] == A));
    let last = alerts_of(&stack, "LastAccountInRotation");
    assert_eq!(last.len(), 1, "said once: {last:?}");
    assert_eq!(last[0]["account"], B);
    // The slow region catches up, and its jobs finish where they are.
    stack.fault(B, json!({"mode": "healthy"})).await?;
    let jobs = wait_finished(&stack, &ids).await?;
    let superseded = jobs.iter().flat_map(|j| j["attempts"].as_array().cloned().unwrap_or_default());
    assert!(superseded.into_iter().all(|a| a["state"] != "Superseded"), "nothing was moved: {jobs:?}");
    stack.assert_counters_exact().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn jobs_waiting_to_start_on_a_removed_region_move_at_once_without_waiting_to_be_stuck() -> anyhow::Result<()> {
    let stack = Stack::start(failover(&[("STUCK_AFTER", "3s")])).await?;
    stack.fault(A, json!({"mode": "stall"})).await?;
    let old = submit_until_on(&stack, "old", A, 1).await?;
    tokio::time::sleep(Duration::from_secs(4)).await;
    // Lands on A just before the sweep: it has not waited long enough to be stuck itself.
    let fresh = submit_until_on(&stack, "fresh", A, 1).await?;
    let fresh_id = fresh.last().cloned().unwrap_or_default();
    assert!(stack.sweep().await?);
    assert_eq!(account_status(&stack.status().await?, A)["inRotation"], false);
    let moved = job(&stack, &fresh_id).await?;
    assert_eq!(moved["attempts"].as_array().map(Vec::len), Some(2), "moved with the stuck ones: {moved}");
    assert!(
        moved["attempts"][0]["error"]["message"].as_str().is_some_and(|m| m.contains("out of rotation")),
        "{moved}"
    );
    wait_finished(&stack, &[old, fresh].concat()).await?;
    stack.assert_counters_exact().await?;
    Ok(())
}

/// `POST /api/accounts/{account}/{action}` with a reason: status and body.
async fn control(stack: &Stack, account: &str, action: &str, reason: &str) -> anyhow::Result<(u16, Value)> {
    let url = format!("{}/api/accounts/{account}/{action}", stack.devhost.url);
    let response = stack.http.post(url).json(&json!({"reason": reason, "by": "ops@example.com"})).send().await?;
    let status = response.status().as_u16();
    Ok((status, response.json().await?))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_operator_drains_a_region_with_evacuation_and_readmits_it_before_its_cool_down() -> anyhow::Result<()> {
    // Nothing is judged stuck and a removal would last an hour: only the operator moves anything.
    let stack = Stack::start(failover(&[("STUCK_AFTER", "1h"), ("COOLDOWN", "1h"), ("COOLDOWN_MAX", "2h")])).await?;
    // Jobs on A wait there (never scheduled); the drain must move them.
    stack.fault(A, json!({"mode": "stall"})).await?;
    let ids = submit_until_on(&stack, "drain", A, 2).await?;

    let (status, body) = control(&stack, A, "drain?evacuate=true", "maintenance window").await?;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["movedJobs"], 2, "{body}");
    let status_page = stack.status().await?;
    let a =
        status_page["accounts"].as_array().and_then(|l| l.iter().find(|x| x["name"] == A)).cloned().unwrap_or_default();
    assert_eq!(a["inRotation"], false, "{a}");
    assert_eq!(a["removed"]["drained"]["by"], "ops@example.com", "{a}");
    assert_eq!(a["operator"]["reason"], "maintenance window", "{a}");
    let drained = stack.wait_alerts("RegionDrained", |x| x["account"] == A).await?;
    assert_eq!(drained.len(), 1, "one alert per drain: {drained:?}");
    assert!(drained[0]["reason"].as_str().is_some_and(|r| r.contains("ops@example.com")), "{drained:?}");
    let (again, body) = control(&stack, A, "drain", "still").await?;
    assert_eq!((again, body["alreadyDrained"].as_bool()), (200, Some(true)), "{body}");

    // Every job finishes on B; none is left on A.
    stack.fault(A, json!({"mode": "healthy"})).await?;
    eventually(Duration::from_secs(90), "every job to finish on B", || async {
        for id in &ids {
            let (_, job) = stack.get_job(id).await?;
            if job["state"] != "Finished" {
                return Ok(None);
            }
            anyhow::ensure!(job["account"] == B, "{id} finished on {}", job["account"]);
        }
        Ok(Some(()))
    })
    .await?;
    // A sweep does not bring a drained account back, whatever its probe says.
    stack.sweep().await?;
    let (_, body, _) = stack.submit(&job_body("after-drain")).await?;
    assert_eq!(body["account"], B, "{body}");

    // Bad requests change nothing.
    assert_eq!(control(&stack, "nosuchaccount", "readmit", "x").await?.0, 404);
    let no_reason = stack.http.post(format!("{}/api/accounts/{A}/readmit", stack.devhost.url)).send().await?;
    assert_eq!(no_reason.status().as_u16(), 400);

    let (status, body) = control(&stack, A, "readmit", "maintenance done").await?;
    assert_eq!((status, body["inRotation"].as_bool()), (200, Some(true)), "{body}");
    let readmitted = stack.wait_alerts("RegionReadmitted", |x| x["account"] == A).await?;
    assert!(readmitted[0]["reason"].as_str().is_some_and(|r| r.contains("ops@example.com")), "{readmitted:?}");
    let status_page = stack.status().await?;
    let a =
        status_page["accounts"].as_array().and_then(|l| l.iter().find(|x| x["name"] == A)).cloned().unwrap_or_default();
    assert_eq!((a["inRotation"].as_bool(), a["operator"]["action"].as_str()), (Some(true), Some("readmit")), "{a}");
    stack.assert_counters_exact().await?;
    Ok(())
}
