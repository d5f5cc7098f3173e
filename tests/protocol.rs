//! The custom-handler protocol against the real handler binary on a real port: every payload shape of
//! azure-contracts section 1.4 is accepted and every answer follows section 1.5.

mod support;

use reqwest::StatusCode;
use serde_json::{json, Value};
use support::{http_request, options, start_emulator, Handler};
use testkit::Azurite;

/// Checks the section 1.5 shape of an HTTP function's answer and returns (status, parsed body).
fn http_answer(status: StatusCode, content_type: &str, body: &Value) -> (u64, Value) {
    assert_eq!(status, StatusCode::OK, "the host must always get 200 from an HTTP function: {body}");
    assert!(content_type.starts_with("application/json"), "{content_type}");
    let res = &body["Outputs"]["res"];
    assert!(res.get("status").is_none(), "use statusCode, never status: {res}");
    assert_eq!(res["headers"]["Content-Type"], "application/json");
    let text = res["body"].as_str().unwrap_or_else(|| panic!("body must be a JSON string: {res}"));
    assert!(body["Logs"].is_array());
    (res["statusCode"].as_u64().unwrap_or(0), serde_json::from_str(text).unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_payload_shape_of_the_host_is_accepted_and_answered_per_the_contract() -> anyhow::Result<()> {
    let azurite = Azurite::start().await?;
    let emulator = start_emulator(&testkit::workspace_bin("ams-emulator"), &options())?;
    let handler = Handler::start(&azurite, &emulator.url, &testkit::unique_prefix(), &[]).await?;

    // The readiness probe: any answer counts.
    assert!(handler.http.get(format!("{}/", handler.url)).send().await.is_ok());

    // HTTP without Body (no Content-Length): a clear 400 inside res.
    let (status, ct, body) =
        handler.invoke("SubmitJob", &http_request("POST", "http://localhost:7071/api/jobs", json!({}), None)).await?;
    let (code, error) = http_answer(status, &ct, &body);
    assert_eq!((code, error["error"]["code"].clone()), (400, json!("missing_body")));

    // HTTP with route parameters, and the older host's Query sent as a string.
    let mut get = http_request("GET", "http://localhost:7071/api/jobs/nope", json!({"jobId": "nope"}), None);
    get["Data"]["req"]["Query"] = json!("{}");
    let (status, ct, body) = handler.invoke("GetJob", &get).await?;
    let (code, error) = http_answer(status, &ct, &body);
    assert_eq!((code, error["error"]["code"].clone()), (404, json!("job_not_found")));

    let (status, ct, body) =
        handler.invoke("GetStatus", &http_request("GET", "http://localhost:7071/api/status", json!({}), None)).await?;
    let (code, report) = http_answer(status, &ct, &body);
    assert_eq!(code, 200);
    assert_eq!(report["accounts"].as_array().map(Vec::len), Some(2));

    // An Event Grid event as an object, as a JSON string, and as a string of a string.
    let event = json!({
        "topic": "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/media-rg/providers/Microsoft.Media/mediaservices/amswesteurope",
        "subject": "transforms/encode/jobs/unknown-a1", "eventType": "Microsoft.Media.JobScheduled",
        "eventTime": "2018-10-12T16:12:18.0839935", "id": "e1",
        "data": {"previousState": "Queued", "state": "Scheduled", "correlationData": {}}, "dataVersion": "1.0", "metadataVersion": "1"
    });
    let as_string = Value::String(event.to_string());
    let as_string_twice = Value::String(as_string.to_string());
    for shape in [event.clone(), as_string, as_string_twice] {
        let payload = json!({"Data": {"eventGridEvent": shape}, "Metadata": {"data": event["data"], "sys": {}}});
        let (status, ct, body) = handler.invoke("OnJobStateChange", &payload).await?;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert!(ct.starts_with("application/json"));
        assert!(body["Logs"].as_array().is_some_and(|l| !l.is_empty()), "{body}");
    }

    // A timer whose ScheduleStatus is null, and one with a full status.
    for timer in [
        json!({"Schedule": {}, "ScheduleStatus": null, "IsPastDue": false}),
        json!({"Schedule": {"AdjustForDST": true}, "ScheduleStatus": {"Last": "0001-01-01T00:00:00", "Next": "2024-01-01T00:01:00+00:00", "LastUpdated": "2024-01-01T00:00:00"}, "IsPastDue": true}),
    ] {
        let (status, ct, body) =
            handler.invoke("SweepStuckJobs", &json!({"Data": {"timer": timer}, "Metadata": {"sys": {}}})).await?;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert!(ct.starts_with("application/json"));
    }

    // A payload that is not JSON at all: HTTP functions still answer 200 with a 400 inside res.
    let response = handler.http.post(format!("{}/SubmitJob", handler.url)).body("garbage").send().await?;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await?;
    assert_eq!(body["Outputs"]["res"]["statusCode"], 400);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_storage_unreachable_events_ask_for_a_retry_and_http_callers_get_503() -> anyhow::Result<()> {
    let azurite = Azurite::start().await?;
    let emulator = start_emulator(&testkit::workspace_bin("ams-emulator"), &options())?;
    let handler = Handler::start(&azurite, &emulator.url, &testkit::unique_prefix(), &[]).await?;
    drop(azurite);

    let event = json!({
        "topic": "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/media-rg/providers/Microsoft.Media/mediaservices/amswesteurope",
        "subject": "transforms/encode/jobs/j-a1", "eventType": "Microsoft.Media.JobFinished", "eventTime": "2024-01-01T00:00:00Z", "id": "e",
        "data": {"previousState": "Processing", "state": "Finished", "outputs": []}, "dataVersion": "1.0", "metadataVersion": "1"
    });
    let (status, ct, _) =
        handler.invoke("OnJobStateChange", &json!({"Data": {"eventGridEvent": event}, "Metadata": {}})).await?;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "a retry can help, so Event Grid must redeliver");
    assert!(ct.starts_with("application/json"));

    // An unusable event is still acknowledged: no storage is needed to know it is useless.
    let junk = json!({"Data": {"eventGridEvent": {"eventType": "Microsoft.Media.JobFinished"}}, "Metadata": {}});
    let (status, _, _) = handler.invoke("OnJobStateChange", &junk).await?;
    assert_eq!(status, StatusCode::OK);

    let body = support::job_body("while-down").to_string();
    let (status, ct, answer) = handler
        .invoke("SubmitJob", &http_request("POST", "http://localhost:7071/api/jobs", json!({}), Some(&body)))
        .await?;
    let (code, error) = http_answer(status, &ct, &answer);
    assert_eq!((code, error["error"]["code"].clone()), (503, json!("storage_unavailable")));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_whose_job_name_cannot_be_a_table_key_is_acknowledged_not_retried_for_a_day() -> anyhow::Result<()> {
    let azurite = Azurite::start().await?;
    let emulator = start_emulator(&testkit::workspace_bin("ams-emulator"), &options())?;
    let handler = Handler::start(&azurite, &emulator.url, &testkit::unique_prefix(), &[]).await?;
    let long = "x".repeat(1100);
    for job in ["a?b", "a#b", "a\\b", "a\u{7}b", long.as_str()] {
        let event = json!({
            "topic": "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/media-rg/providers/Microsoft.Media/mediaservices/amswesteurope",
            "subject": format!("transforms/encode/jobs/{job}"), "eventType": "Microsoft.Media.JobFinished", "eventTime": "2024-01-01T00:00:00Z",
            "id": "poison", "data": {"previousState": "Processing", "state": "Finished", "outputs": []}, "dataVersion": "1.0", "metadataVersion": "1"
        });
        let (status, _, body) =
            handler.invoke("OnJobStateChange", &json!({"Data": {"eventGridEvent": event}, "Metadata": {}})).await?;
        assert_eq!(status, StatusCode::OK, "acknowledged, so Event Grid does not redeliver it: {job:?} {body}");
        assert!(body["Logs"].to_string().contains("unusable event"), "and logged: {body}");
    }
    Ok(())
}
