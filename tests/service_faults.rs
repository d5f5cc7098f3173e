//! The whole stack against the emulator answering as the real services do where the product once assumed
//! otherwise: an account that refuses job creates with 403 is removed and its jobs finish elsewhere;
//! copies that take several sweeps are each started once and every region is published (List Blobs tells
//! copy state only with `include=copy`); a duplicate create answered with 400 is read back and taken; and a
//! definitions check against a service that stores its own form of a key makes no PUT the second time.

mod support;

use ams_failover::domain::AttemptRecord;
use anyhow::{ensure, Context};
use serde_json::{json, Value};
use std::time::Duration;
use support::{eventually, job_body, options, Stack, StackOptions, RESOURCE_GROUP, SUBSCRIPTION};

const LIMIT: Duration = Duration::from_secs(60);
const A: &str = "amswesteurope";
const B: &str = "amsnortheurope";

fn with_settings(mut opts: StackOptions, settings: &[(&str, &str)]) -> StackOptions {
    opts.settings.extend(settings.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    opts
}

fn account_status<'a>(status: &'a Value, name: &str) -> &'a Value {
    status["accounts"].as_array().and_then(|a| a.iter().find(|x| x["name"] == name)).unwrap_or(&Value::Null)
}

fn publication<'a>(job: &'a Value, account: &str) -> &'a Value {
    job["publications"].as_array().and_then(|p| p.iter().find(|x| x["account"] == account)).unwrap_or(&Value::Null)
}

/// An ARM call to the emulator for `account`: the JSON answer of a 2xx.
async fn arm_ok(stack: &Stack, method: reqwest::Method, account: &str, path: &str) -> anyhow::Result<Value> {
    let url = format!(
        "{}/subscriptions/{SUBSCRIPTION}/resourceGroups/{RESOURCE_GROUP}/providers/Microsoft.Media/mediaServices/{account}/{path}",
        stack.emulator.url
    );
    let response = stack.http.request(method, url).header("content-length", "0").send().await?;
    let status = response.status();
    let text = response.text().await?;
    ensure!(status.is_success(), "{path} answered {status}: {text}");
    Ok(if text.trim().is_empty() { Value::Null } else { serde_json::from_str(&text)? })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_account_refusing_job_creates_with_403_is_removed_after_the_failure_limit_and_its_jobs_finish_elsewhere(
) -> anyhow::Result<()> {
    let stack =
        Stack::start(with_settings(options(), &[("SUBMIT_FAILURES_TO_REMOVE", "3"), ("COOLDOWN", "1h")])).await?;
    stack
        .fault(A, json!({"mode": "refuse", "operation": "Jobs_Create", "status": 403, "code": "AuthorizationFailed"}))
        .await?;
    let mut ids = Vec::new();
    let status = eventually(LIMIT, "the refusing account to be removed", || {
        let id = format!("forbidden-{}", ids.len());
        ids.push(id.clone());
        let stack = &stack;
        async move {
            let (status, body, _) = stack.submit(&job_body(&id)).await?;
            ensure!(status == 202 && body["account"] == B, "every job lands on the other account: {body}");
            let status = stack.status().await?;
            Ok((account_status(&status, A)["inRotation"] == false).then_some(status))
        }
    })
    .await?;
    let reason = account_status(&status, A)["removed"]["reason"].as_str().unwrap_or_default().to_owned();
    assert!(reason.contains("3 submissions in a row failed") && reason.contains("403"), "{reason}");
    let removed = stack.wait_alerts("RegionRemoved", |a| a["account"] == A).await?;
    assert_eq!(removed.len(), 1, "{removed:?}");

    for id in &ids {
        let job = eventually(LIMIT, "the job to finish", || async {
            let job = stack.get_job(id).await?.1;
            ensure!(job["state"] != "Error", "a refusal of one account failed the job: {job}");
            Ok((job["state"] == "Finished").then_some(job))
        })
        .await?;
        assert_eq!(job["account"], B, "{job}");
        for attempt in job["attempts"].as_array().context("no attempts")? {
            if attempt["account"] == A {
                assert_eq!(attempt["state"], "SubmitFailed", "{job}");
            }
        }
    }
    assert!(stack.emulator_jobs().await?.iter().all(|j| j["account"] == B), "no job was created in A");
    stack.assert_counters_exact().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn copies_that_take_several_sweeps_are_each_started_once_and_every_region_is_published() -> anyhow::Result<()> {
    // 60 emulated seconds at scale 20: each copy stays pending for 3 s of sweeps run back to back.
    let opts = StackOptions { emulator_args: vec!["--copy-ms".into(), "60000".into()], ..options().with_publication() };
    let stack = Stack::start(opts).await?;
    ensure!(stack.sweep().await?, "the first sweep failed");
    let (status, body, _) = stack.submit(&job_body("slow-copy")).await?;
    ensure!(status == 202, "SubmitJob answered {status}: {body}");
    let job = eventually(LIMIT, "the job to finish", || async {
        let job = stack.get_job("slow-copy").await?.1;
        Ok((job["state"] == "Finished").then_some(job))
    })
    .await?;
    let source = job["account"].as_str().context("no account")?.to_owned();
    let target = if source == A { B } else { A };

    let sweeps_while_pending = std::cell::Cell::new(0);
    let job = eventually(LIMIT, "every region to be published", || {
        let stack = &stack;
        let counted = &sweeps_while_pending;
        async move {
            ensure!(stack.sweep().await?, "a sweep failed");
            let job = stack.get_job("slow-copy").await?.1;
            let pending = stack.emulator_account(target).await?["storage"]["pendingCopies"].as_u64().unwrap_or(0);
            if pending > 0 {
                counted.set(counted.get() + 1);
            }
            let states: Vec<&Value> = [A, B].iter().map(|a| &publication(&job, a)["state"]).collect();
            Ok(states.iter().all(|s| *s == "Published").then_some(job))
        }
    })
    .await?;
    let spanned = sweeps_while_pending.get();
    assert!(spanned >= 3, "the copies spanned {spanned} sweeps");
    assert_eq!(publication(&job, target)["failures"].as_u64().unwrap_or(0), 0, "no try failed: {job}");

    let blobs = stack.emulator_account(&source).await?["storage"]["blobs"].as_u64().context("no blob count")?;
    let copies = stack.emulator_account(target).await?["copies"].clone();
    assert!(blobs > 0);
    assert_eq!(copies["copies"], json!(blobs), "each blob copied exactly once: {copies}");
    assert_eq!(copies["copiesCompleted"], json!(blobs));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_job_already_created_under_its_name_is_taken_when_the_duplicate_create_answers_400() -> anyhow::Result<()> {
    let opts = StackOptions {
        emulator_args: vec!["--duplicate-create-status".into(), "400".into()],
        // Two real seconds in Queued: the product takes the job over before its first event.
        phases_ms: (40_000, 1000, 2000),
        ..options()
    };
    let stack = Stack::start(opts).await?;
    // The job as the product would create it, already in both accounts: as if an earlier create's answer
    // was lost (names and correlation data are deterministic).
    let name = AttemptRecord::ams_job_name_for("taken", 1);
    let output = AttemptRecord::output_asset_for("taken", 1, 0);
    for account in [A, B] {
        let asset = format!("assets/{output}?api-version=2023-01-01");
        let url = |path: &str| {
            format!(
                "{}/subscriptions/{SUBSCRIPTION}/resourceGroups/{RESOURCE_GROUP}/providers/Microsoft.Media/mediaServices/{account}/{path}",
                stack.emulator.url
            )
        };
        let put = stack.http.put(url(&asset)).json(&json!({"properties": {}})).send().await?;
        ensure!(put.status().is_success(), "asset: {}", put.status());
        let body = json!({"properties": {
            "input": {"@odata.type": "#Microsoft.Media.JobInputHttp", "baseUri": "https://media.example/in/", "files": ["movie.mp4"]},
            "outputs": [{"@odata.type": "#Microsoft.Media.JobOutputAsset", "assetName": output}],
            "priority": "Normal", "correlationData": {"jobId": "taken", "attempt": "1"}}});
        let put = stack
            .http
            .put(url(&format!("transforms/encode/jobs/{name}?api-version=2022-07-01")))
            .json(&body)
            .send()
            .await?;
        ensure!(put.status() == 201, "job: {}", put.status());
    }
    let (status, body, _) = stack.submit(&job_body("taken")).await?;
    ensure!(status == 202, "SubmitJob answered {status}: {body}");
    let job = eventually(LIMIT, "the job to finish", || async {
        let job = stack.get_job("taken").await?.1;
        ensure!(job["state"] != "Error", "the duplicate create failed the job: {job}");
        Ok((job["state"] == "Finished").then_some(job))
    })
    .await?;
    assert_eq!(job["attempts"].as_array().map(Vec::len), Some(1), "the existing job was taken: {job}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_definitions_check_followed_by_a_second_check_makes_no_put_when_the_service_keeps_its_own_key_form(
) -> anyhow::Result<()> {
    // Valid base64 without its padding: the service stores the bytes and answers canonical base64.
    let unpadded = testkit::stack::TEST_TOKEN_SIGNING_KEY.trim_end_matches('=');
    let opts = with_settings(options().with_publication(), &[("TOKEN_SIGNING_KEY", unpadded)]);
    let stack = Stack::start(opts).await?;
    ensure!(stack.sweep().await?, "the first sweep failed");
    let path = "contentKeyPolicies/vod-token?api-version=2023-01-01";
    let mut modified = Vec::new();
    for account in [A, B] {
        modified.push(arm_ok(&stack, reqwest::Method::GET, account, path).await?["properties"]["lastModified"].clone());
    }
    for _ in 0..2 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        ensure!(stack.sweep().await?, "a later sweep failed");
    }
    for (account, before) in [A, B].into_iter().zip(modified) {
        let after = arm_ok(&stack, reqwest::Method::GET, account, path).await?["properties"]["lastModified"].clone();
        assert_eq!(after, before, "the content key policy in {account} was written again");
    }
    Ok(())
}
