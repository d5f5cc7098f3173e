//! Fault injection through the control API.

use std::time::Duration;

use serde_json::json;

use crate::common::{Emulator, Receiver};

/// Long enough (real time) for many emulated phases to pass at the test time scale.
const PAUSE: Duration = Duration::from_millis(300);

#[tokio::test]
async fn an_outage_answers_503_and_freezes_jobs_until_healthy() {
    let rx = Receiver::start().await;
    // 200 s of processing at scale 200 is a second of real time: the job is surely still running when frozen.
    let emu = Emulator::start_fast(&["--processing-ms", "200000", "--event-endpoint", &rx.url]).await;
    assert_eq!(emu.submit("east", "encode", "frozen").await.status, 201);
    emu.wait_for_state("east", "frozen", "Processing").await;

    let r = emu.set_fault("EAST", json!({"mode": "outage"})).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["fault"], json!({"mode": "outage"}));
    emu.wait_deliveries_settled().await;
    let delivered_before = rx.deliveries().len();

    emu.get(&emu.job_url("east", "encode", "frozen")).await.assert_arm_error(503, "ServiceUnavailable");
    emu.put(&emu.job_url("east", "encode", "during-outage"), Emulator::job_body("out-frozen", json!({})))
        .await
        .assert_arm_error(503, "ServiceUnavailable");
    tokio::time::sleep(PAUSE).await;
    assert_eq!(emu.control_state("east", "frozen").await, "Processing");
    assert_eq!(rx.deliveries().len(), delivered_before, "no events during an outage");
    // The other account is unaffected.
    assert_eq!(emu.submit("west", "encode", "elsewhere").await.status, 201);
    emu.wait_for_state("west", "elsewhere", "Finished").await;

    let healed = emu.set_fault("east", json!({"mode": "healthy"})).await;
    assert_eq!(healed.body["fault"], json!({"mode": "healthy"}));
    emu.wait_for_state("east", "frozen", "Finished").await;
    assert_eq!(emu.get(&emu.job_url("east", "encode", "frozen")).await.status, 200);
}

#[tokio::test]
async fn a_stall_keeps_jobs_in_scheduled_until_healthy() {
    let emu = Emulator::start_fast(&[]).await;
    assert_eq!(emu.set_fault("east", json!({"mode": "stall"})).await.status, 200);
    assert_eq!(emu.submit("east", "encode", "stuck").await.status, 201);
    emu.wait_for_state("east", "stuck", "Scheduled").await;
    tokio::time::sleep(PAUSE).await;
    assert_eq!(emu.control_state("east", "stuck").await, "Scheduled");
    // ARM keeps answering during a stall.
    let got = emu.get(&emu.job_url("east", "encode", "stuck")).await;
    assert_eq!(got.status, 200);
    assert_eq!(got.body["properties"]["state"], "Scheduled");

    emu.set_fault("east", json!({"mode": "healthy"})).await;
    emu.wait_for_state("east", "stuck", "Finished").await;
}

#[tokio::test]
async fn failing_jobs_end_in_error_with_the_requested_code_and_retry_hint() {
    let rx = Receiver::start().await;
    let emu = Emulator::start_fast(&["--event-endpoint", &rx.url]).await;
    let r =
        emu.set_fault("east", json!({"mode": "fail-jobs", "retry": "MayRetry", "code": "DownloadNotAccessible"})).await;
    assert_eq!(r.body["fault"], json!({"mode": "fail-jobs", "retry": "MayRetry", "code": "DownloadNotAccessible"}));
    assert_eq!(emu.set_fault("west", json!({"mode": "fail-jobs"})).await.status, 200);

    assert_eq!(emu.submit("east", "encode", "bad-input").await.status, 201);
    assert_eq!(emu.submit("west", "encode", "bad-service").await.status, 201);
    emu.wait_for_state("east", "bad-input", "Error").await;
    emu.wait_for_state("west", "bad-service", "Error").await;

    let got = emu.get(&emu.job_url("east", "encode", "bad-input")).await;
    let err = &got.body["properties"]["outputs"][0]["error"];
    assert_eq!(got.body["properties"]["outputs"][0]["state"], "Error");
    assert_eq!(err["code"], "DownloadNotAccessible");
    assert_eq!(err["category"], "Download");
    assert_eq!(err["retry"], "MayRetry");
    assert!(err["message"].is_string());
    assert_eq!(err["details"][0]["code"], "DownloadNotAccessible");

    let got = emu.get(&emu.job_url("west", "encode", "bad-service")).await;
    let err = &got.body["properties"]["outputs"][0]["error"];
    assert_eq!(err["code"], "ServiceError");
    assert_eq!(err["category"], "Service");
    assert_eq!(err["retry"], "DoNotRetry");

    let errored = rx.wait_for_type("Microsoft.Media.JobErrored", 2).await;
    let east = errored.iter().find(|e| e["subject"] == "transforms/encode/jobs/bad-input").unwrap();
    assert_eq!(east["data"]["previousState"], "Processing");
    assert_eq!(east["data"]["state"], "Error");
    assert_eq!(east["data"]["outputs"][0]["error"]["retry"], "MayRetry");
    rx.wait_for_type("Microsoft.Media.JobOutputErrored", 2).await;
    assert!(rx.accepted_of_type("Microsoft.Media.JobFinished").is_empty());
}

#[tokio::test]
async fn throttling_answers_429_with_retry_after_for_the_given_number_of_calls() {
    let emu = Emulator::start_fast(&[]).await;
    let r = emu.set_fault("east", json!({"mode": "throttle", "retryAfterSeconds": 7, "count": 2})).await;
    assert_eq!(r.body["fault"]["mode"], "throttle");
    let url = format!("{}/transforms/t?api-version=2022-07-01", emu.account_url("east"));
    for _ in 0..2 {
        let t = emu.get(&url).await;
        t.assert_arm_error(429, "TooManyRequests");
        assert_eq!(t.headers.get("retry-after").unwrap(), "7");
    }
    emu.get(&url).await.assert_arm_error(404, "NotFound");
    let accounts = emu.get(&format!("{}/_emulator/accounts", emu.base)).await.body;
    assert_eq!(accounts[0]["fault"], json!({"mode": "healthy"}));
    assert_eq!(accounts[0]["armCalls"], 3);

    // Without a count, throttling lasts until healed; Retry-After defaults to 1.
    emu.set_fault("west", json!({"mode": "throttle"})).await;
    let west = format!("{}/transforms/t?api-version=2022-07-01", emu.account_url("west"));
    for _ in 0..3 {
        let t = emu.get(&west).await;
        t.assert_arm_error(429, "TooManyRequests");
        assert_eq!(t.headers.get("retry-after").unwrap(), "1");
    }
    emu.set_fault("west", json!({"mode": "healthy"})).await;
    emu.get(&west).await.assert_arm_error(404, "NotFound");
}

#[tokio::test]
async fn a_refuse_fault_answers_its_status_and_code_for_one_operation_of_one_account_only() {
    let emu = Emulator::start_fast(&[]).await;
    let fault = json!({"mode": "refuse", "operation": "Jobs_Create", "status": 403, "code": "AuthorizationFailed"});
    assert_eq!(emu.set_fault("east", fault).await.body["fault"]["mode"], "refuse");
    emu.submit("east", "encode", "j1").await.assert_arm_error(403, "AuthorizationFailed");
    // The transform and asset PUTs of `submit` went through; so do reads, and the other account.
    let transform = format!("{}/transforms/encode?api-version=2022-07-01", emu.account_url("east"));
    assert_eq!(emu.get(&transform).await.status, 200);
    assert_eq!(emu.submit("west", "encode", "j1").await.status, 201);

    let storage = json!({"mode": "refuse", "operation": "Assets_CreateOrUpdate", "status": 409, "code": "Conflict",
        "message": "Media Services cannot reach the storage account."});
    emu.set_fault("west", storage).await;
    let refused = emu.create_asset("west", "a2").await;
    refused.assert_arm_error(409, "Conflict");
    assert_eq!(refused.body["error"]["message"], "Media Services cannot reach the storage account.");
    emu.set_fault(
        "west",
        json!({"mode": "refuse", "operation": "*", "status": 401, "code": "InvalidAuthenticationToken"}),
    )
    .await;
    emu.get(&transform.replace("/east/", "/west/")).await.assert_arm_error(401, "InvalidAuthenticationToken");
    emu.set_fault("east", json!({"mode": "refuse", "operation": "x", "status": 200, "code": "Ok"}))
        .await
        .assert_arm_error(400, "BadRequest");
}

#[tokio::test]
async fn fault_requests_for_unknown_accounts_or_modes_are_refused() {
    let emu = Emulator::start_fast(&[]).await;
    emu.set_fault("north", json!({"mode": "outage"})).await.assert_arm_error(404, "ResourceNotFound");
    emu.set_fault("east", json!({"mode": "sideways"})).await.assert_arm_error(400, "BadRequest");
    emu.set_fault("east", json!({"mode": "fail-jobs", "retry": "Sometimes"})).await.assert_arm_error(400, "BadRequest");
    let accounts = emu.get(&format!("{}/_emulator/accounts", emu.base)).await.body;
    assert_eq!(accounts[0]["fault"], json!({"mode": "healthy"}));
}
