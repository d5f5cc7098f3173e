//! Event Grid delivery semantics: retries, non-retried statuses and chaos settings.

use std::collections::BTreeMap;

use serde_json::json;

use crate::common::{Emulator, Receiver};

#[tokio::test]
async fn a_receiver_answering_500_gets_the_event_again_with_a_higher_delivery_count() {
    let rx = Receiver::start_scripted(&[500, 503]).await;
    // Scale 1000: the 10 s and 30 s retries take 10 ms and 30 ms.
    let emu = Emulator::start(&[
        "--account",
        "east:eastus",
        "--time-scale",
        "1000",
        "--event-endpoint",
        &rx.url,
        "--event-types",
        "JobFinished",
    ])
    .await;
    assert_eq!(emu.submit("east", "encode", "retried").await.status, 201);
    rx.wait_for_type("Microsoft.Media.JobFinished", 1).await;
    emu.wait_deliveries_settled().await;

    let deliveries = rx.deliveries();
    let answers: Vec<(u16, &str)> = deliveries.iter().map(|d| (d.answered, d.header("aeg-delivery-count"))).collect();
    assert_eq!(answers, [(500, "0"), (503, "1"), (200, "2")]);
    let ids: Vec<&str> = deliveries.iter().map(|d| d.event()["id"].as_str().unwrap()).collect();
    assert!(ids.iter().all(|id| *id == ids[0]), "a retry resends the same event");
    let counters = emu.event_counters().await;
    assert_eq!(counters["failed_attempts"], 2);
    assert_eq!(counters["delivered"], 1);
}

#[tokio::test]
async fn a_400_from_the_receiver_is_not_retried() {
    let rx = Receiver::start_scripted(&[400]).await;
    let emu = Emulator::start(&[
        "--account",
        "east:eastus",
        "--time-scale",
        "1000",
        "--event-endpoint",
        &rx.url,
        "--event-types",
        "JobFinished",
    ])
    .await;
    assert_eq!(emu.submit("east", "encode", "refused").await.status, 201);
    emu.wait_for_state("east", "refused", "Finished").await;
    emu.wait_deliveries_settled().await;
    assert_eq!(rx.deliveries().len(), 1);
    assert_eq!(emu.event_counters().await["dead_lettered"], 1);
}

#[tokio::test]
async fn dropped_events_are_never_delivered() {
    let rx = Receiver::start().await;
    let emu = Emulator::start_fast(&["--event-endpoint", &rx.url]).await;
    let s = emu.set_events(json!({"drop": 1.0})).await;
    assert_eq!(s.status, 200);
    assert_eq!(s.body["drop"], 1.0);
    assert_eq!(s.body["endpoint"], rx.url.as_str(), "unchanged settings are kept");
    assert_eq!(emu.submit("east", "encode", "silent").await.status, 201);
    emu.wait_for_state("east", "silent", "Finished").await;
    emu.wait_deliveries_settled().await;
    assert!(rx.deliveries().is_empty());
    let counters = emu.event_counters().await;
    assert_eq!(counters["dropped"], 13);
    assert_eq!(counters["delivered"], 0);
}

#[tokio::test]
async fn duplicated_events_arrive_twice_with_the_same_id() {
    let rx = Receiver::start().await;
    let emu = Emulator::start_fast(&["--event-endpoint", &rx.url]).await;
    emu.set_events(json!({"duplicate": 1.0})).await;
    assert_eq!(emu.submit("east", "encode", "twice").await.status, 201);
    emu.wait_for_state("east", "twice", "Finished").await;
    rx.wait_for_type("Microsoft.Media.JobFinished", 2).await;
    emu.wait_deliveries_settled().await;

    let mut per_id: BTreeMap<String, usize> = BTreeMap::new();
    for e in rx.accepted_events() {
        *per_id.entry(e["id"].as_str().unwrap().to_string()).or_default() += 1;
    }
    assert_eq!(per_id.len(), 13);
    assert!(per_id.values().all(|n| *n == 2), "{per_id:?}");
    let counters = emu.event_counters().await;
    assert_eq!(counters["duplicated"], 13);
    assert_eq!(counters["delivered"], 26);
}

#[tokio::test]
async fn reordered_and_delayed_events_all_still_arrive() {
    let rx = Receiver::start().await;
    let emu = Emulator::start_fast(&["--event-endpoint", &rx.url]).await;
    let s = emu.set_events(json!({"reorder": 1.0, "max_delay_ms": 40})).await;
    assert_eq!(s.body["reorder"], 1.0);
    assert_eq!(s.body["max_delay_ms"], 40);
    assert_eq!(emu.submit("east", "encode", "shuffled").await.status, 201);
    emu.wait_for_state("east", "shuffled", "Finished").await;
    rx.wait_for_type("Microsoft.Media.JobFinished", 1).await;
    emu.wait_deliveries_settled().await;
    assert_eq!(rx.accepted_events().len(), 13);
    assert_eq!(emu.event_counters().await["reordered"], 13);
}

#[tokio::test]
async fn invalid_event_settings_are_refused_and_change_nothing() {
    let emu = Emulator::start_fast(&[]).await;
    emu.set_events(json!({"drop": 1.5})).await.assert_arm_error(400, "BadRequest");
    emu.set_events(json!({"endpoint": "ftp://example"})).await.assert_arm_error(400, "BadRequest");
    emu.set_events(json!({"dorp": 0.5})).await.assert_arm_error(400, "BadRequest");
    let now = emu.get(&format!("{}/_emulator/events", emu.base)).await.body;
    assert_eq!(now["drop"], 0.0);
    assert_eq!(now["endpoint"], serde_json::Value::Null);
    assert_eq!(now["counters"]["delivered"], 0);
}

#[tokio::test]
async fn events_raised_without_an_endpoint_are_not_delivered_later() {
    let rx = Receiver::start().await;
    let emu = Emulator::start_fast(&[]).await;
    assert_eq!(emu.submit("east", "encode", "early").await.status, 201);
    emu.wait_for_state("east", "early", "Finished").await;
    emu.set_events(json!({"endpoint": rx.url})).await;
    assert_eq!(emu.submit("east", "encode", "late").await.status, 201);
    rx.wait_for_type("Microsoft.Media.JobFinished", 1).await;
    emu.wait_deliveries_settled().await;
    assert!(rx.accepted_events().iter().all(|e| e["subject"] == "transforms/encode/jobs/late"));
    assert_eq!(emu.event_counters().await["unsubscribed"], 13);
}
