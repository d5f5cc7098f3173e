//! Job lifecycle and the events it raises.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::common::{Emulator, Receiver, RG, SUB};

fn is_event_time(s: &str) -> bool {
    // 2018-10-12T16:12:18.0839935: seven fraction digits, no zone.
    let b = s.as_bytes();
    s.len() == 27
        && b[4] == b'-'
        && b[10] == b'T'
        && b[19] == b'.'
        && s[20..].bytes().all(|c| c.is_ascii_digit())
        && !s.ends_with('Z')
}

fn count_types(events: &[Value]) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for e in events {
        *m.entry(e["eventType"].as_str().unwrap().to_string()).or_default() += 1;
    }
    m
}

#[tokio::test]
async fn a_job_runs_through_every_state_to_finished() {
    let rx = Receiver::start().await;
    let emu = Emulator::start_fast(&["--event-endpoint", &rx.url]).await;
    assert_eq!(emu.submit("east", "encode", "job-1").await.status, 201);
    emu.wait_for_state("east", "job-1", "Finished").await;

    let got = emu.get(&emu.job_url("east", "encode", "job-1")).await;
    assert_eq!(got.status, 200);
    let p = &got.body["properties"];
    assert_eq!(p["state"], "Finished");
    assert!(p["startTime"].is_string() && p["endTime"].is_string());
    assert_eq!(p["outputs"][0]["state"], "Finished");
    assert_eq!(p["outputs"][0]["progress"], 100);
    assert!(p["outputs"][0]["startTime"].is_string() && p["outputs"][0]["endTime"].is_string());
    assert!(p["outputs"][0].get("error").is_none());

    let jobs = emu.get(&format!("{}/_emulator/jobs", emu.base)).await.body;
    let job = &jobs[0];
    assert_eq!(job["account"], "east");
    assert_eq!(job["transform"], "encode");
    assert_eq!(job["correlationData"], json!({"jobId": "job-1"}));
    let history: Vec<&str> = job["history"].as_array().unwrap().iter().map(|h| h["state"].as_str().unwrap()).collect();
    assert_eq!(history, ["Queued", "Scheduled", "Processing", "Finished"]);
    assert!(job["history"][0]["at"].is_string());

    let accounts = emu.get(&format!("{}/_emulator/accounts", emu.base)).await.body;
    assert_eq!(accounts[0]["name"], "east");
    assert_eq!(accounts[0]["region"], "eastus");
    assert_eq!(accounts[0]["jobs"]["Finished"], 1);
    assert_eq!(accounts[0]["jobs"]["Queued"], 0);
    assert_eq!(accounts[0]["fault"], json!({"mode": "healthy"}));
    assert!(accounts[0]["armCalls"].as_u64().unwrap() >= 4);
    assert_eq!(accounts[1]["armCalls"], 0);
}

#[tokio::test]
async fn events_arrive_in_the_event_grid_envelope_with_notification_headers() {
    let rx = Receiver::start().await;
    let emu = Emulator::start_fast(&[]).await;
    // Subscribing through the control API works like the CLI flag.
    let settings = emu.set_events(json!({"endpoint": rx.url})).await;
    assert_eq!(settings.status, 200);
    assert_eq!(settings.body["endpoint"], rx.url.as_str());

    assert_eq!(emu.submit("west", "encode", "job-7").await.status, 201);
    rx.wait_for_type("Microsoft.Media.JobFinished", 1).await;
    emu.wait_deliveries_settled().await;

    for d in rx.deliveries() {
        assert_eq!(d.header("aeg-event-type"), "Notification");
        assert_eq!(d.header("content-type"), "application/json; charset=utf-8");
        assert_eq!(d.header("aeg-delivery-count"), "0");
        let e = d.event();
        assert_eq!(
            e["topic"],
            format!("/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.Media/mediaservices/west")
        );
        assert_eq!(e["subject"], "transforms/encode/jobs/job-7");
        assert_eq!(e["dataVersion"], "1.0");
        assert_eq!(e["metadataVersion"], "1");
        assert!(is_event_time(e["eventTime"].as_str().unwrap()), "{}", e["eventTime"]);
        assert_eq!(e["id"].as_str().unwrap().len(), 36);
        assert_eq!(e.as_object().unwrap().len(), 8, "no extra envelope fields: {e}");
    }

    let events = rx.accepted_events();
    let ids: std::collections::BTreeSet<&str> = events.iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), events.len(), "every event has its own id");
    let expected: BTreeMap<String, usize> = [
        ("Microsoft.Media.JobStateChange", 3),
        ("Microsoft.Media.JobScheduled", 1),
        ("Microsoft.Media.JobProcessing", 1),
        ("Microsoft.Media.JobFinished", 1),
        ("Microsoft.Media.JobOutputStateChange", 3),
        ("Microsoft.Media.JobOutputScheduled", 1),
        ("Microsoft.Media.JobOutputProcessing", 1),
        ("Microsoft.Media.JobOutputFinished", 1),
        ("Microsoft.Media.JobOutputProgress", 1),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    assert_eq!(count_types(&events), expected);

    let finished = &rx.accepted_of_type("Microsoft.Media.JobFinished")[0];
    assert_eq!(
        finished["data"],
        json!({
            "previousState": "Processing",
            "state": "Finished",
            "correlationData": {"jobId": "job-7"},
            "outputs": [{"@odata.type": "#Microsoft.Media.JobOutputAsset", "assetName": "out-job-7",
                         "error": null, "label": "BuiltInStandardEncoderPreset_0",
                         "progress": 100, "state": "Finished"}]
        })
    );
    let scheduled = &rx.accepted_of_type("Microsoft.Media.JobScheduled")[0];
    assert_eq!(
        scheduled["data"],
        json!({"previousState": "Queued", "state": "Scheduled", "correlationData": {"jobId": "job-7"}})
    );
    let out_finished = &rx.accepted_of_type("Microsoft.Media.JobOutputFinished")[0];
    assert_eq!(out_finished["data"]["previousState"], "Processing");
    assert_eq!(out_finished["data"]["output"]["state"], "Finished");
    assert_eq!(out_finished["data"]["jobCorrelationData"], json!({"jobId": "job-7"}));
    assert!(out_finished["data"].get("state").is_none());
    let progress = &rx.accepted_of_type("Microsoft.Media.JobOutputProgress")[0];
    assert_eq!(progress["data"]["label"], "BuiltInStandardEncoderPreset_0");
    assert_eq!(progress["data"]["jobCorrelationData"], json!({"jobId": "job-7"}));
    let pct = progress["data"]["progress"].as_u64().unwrap();
    assert!((50..100).contains(&pct), "{pct}");

    let counters = emu.event_counters().await;
    assert_eq!(counters["delivered"], 13);
    assert_eq!(counters["failed_attempts"], 0);
}

#[tokio::test]
async fn cancelling_a_running_job_goes_through_canceling_to_canceled() {
    let rx = Receiver::start().await;
    let emu = Emulator::start_fast(&["--processing-ms", "600000", "--event-endpoint", &rx.url]).await;
    assert_eq!(emu.submit("east", "encode", "long").await.status, 201);
    emu.wait_for_state("east", "long", "Processing").await;

    let cancel = format!("{}/transforms/encode/jobs/long/cancelJob?api-version=2022-07-01", emu.account_url("east"));
    let r = emu.post(&cancel, None).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body, Value::Null, "cancelJob answers with an empty body");
    emu.wait_for_state("east", "long", "Canceled").await;

    let canceling = rx.wait_for_type("Microsoft.Media.JobCanceling", 1).await;
    assert_eq!(canceling[0]["data"]["previousState"], "Processing");
    assert_eq!(canceling[0]["data"]["state"], "Canceling");
    let canceled = rx.wait_for_type("Microsoft.Media.JobCanceled", 1).await;
    assert_eq!(canceled[0]["data"]["previousState"], "Canceling");
    assert_eq!(canceled[0]["data"]["outputs"][0]["state"], "Canceled");
    rx.wait_for_type("Microsoft.Media.JobOutputCanceled", 1).await;

    let got = emu.get(&emu.job_url("east", "encode", "long")).await;
    assert_eq!(got.body["properties"]["state"], "Canceled");
    assert!(got.body["properties"]["endTime"].is_string());

    // Cancelling a final job changes nothing.
    assert_eq!(emu.post(&cancel, None).await.status, 200);
    emu.wait_deliveries_settled().await;
    assert_eq!(rx.accepted_of_type("Microsoft.Media.JobCanceling").len(), 1);
    assert_eq!(emu.control_state("east", "long").await, "Canceled");

    let unknown = format!("{}/transforms/encode/jobs/ghost/cancelJob?api-version=2022-07-01", emu.account_url("east"));
    emu.post(&unknown, None).await.assert_arm_error(404, "NotFound");
}

#[tokio::test]
async fn a_queued_job_can_be_cancelled_before_it_is_scheduled() {
    let emu = Emulator::start_fast(&["--queued-ms", "600000"]).await;
    assert_eq!(emu.submit("east", "encode", "waiting").await.status, 201);
    let cancel = format!("{}/transforms/encode/jobs/waiting/cancelJob?api-version=2022-07-01", emu.account_url("east"));
    assert_eq!(emu.post(&cancel, None).await.status, 200);
    emu.wait_for_state("east", "waiting", "Canceled").await;
}

#[tokio::test]
async fn the_event_types_flag_restricts_what_is_delivered() {
    let rx = Receiver::start().await;
    let emu =
        Emulator::start_fast(&["--event-endpoint", &rx.url, "--event-types", "Microsoft.Media.JobFinished,JobErrored"])
            .await;
    assert_eq!(emu.submit("east", "encode", "only-final").await.status, 201);
    emu.wait_for_state("east", "only-final", "Finished").await;
    rx.wait_for_type("Microsoft.Media.JobFinished", 1).await;
    emu.wait_deliveries_settled().await;
    assert_eq!(count_types(&rx.accepted_events()), BTreeMap::from([("Microsoft.Media.JobFinished".to_string(), 1)]));
}
