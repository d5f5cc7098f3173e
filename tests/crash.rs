//! A crash between writing the attempt row and creating the Media Services job (the test-only fail point
//! `FAIL_POINT=after-attempt-row`, honoured by debug builds) is repaired by the next sweep: the job is
//! created under the same deterministic name, runs, and its counters stay exact.

mod support;

use ams_failover::store::Store;
use serde_json::{json, Value};
use std::time::Duration;
use support::{
    eventually, http_request, job_body, options, start_emulator, timer_request, Handler, RESOURCE_GROUP, SUBSCRIPTION,
};
use tables::TableService;
use testkit::Azurite;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_between_the_attempt_row_and_the_media_services_job_is_repaired_by_the_next_sweep() -> anyhow::Result<()>
{
    let azurite = Azurite::start().await?;
    let emulator = start_emulator(&testkit::workspace_bin("ams-emulator"), &options())?;
    let http = reqwest::Client::new();
    for account in ["amswesteurope", "amsnortheurope"] {
        let url = format!(
            "{}/subscriptions/{SUBSCRIPTION}/resourceGroups/{RESOURCE_GROUP}/providers/Microsoft.Media/mediaServices/{account}/transforms/encode?api-version=2022-07-01",
            emulator.url
        );
        let transform = json!({"properties": {"outputs": [{"preset": {"@odata.type": "#Microsoft.Media.BuiltInStandardEncoderPreset", "presetName": "AdaptiveStreaming"}}]}});
        http.put(url).json(&transform).send().await?.error_for_status()?;
    }
    let prefix = testkit::unique_prefix();
    let store =
        Store::with_service(TableService::from_connection_string(&azurite.connection_string(), http.clone())?, &prefix);

    // The first handler dies right after recording the attempt.
    let mut doomed = Handler::start(&azurite, &emulator.url, &prefix, &[("FAIL_POINT", "after-attempt-row")]).await?;
    let body = job_body("crashed").to_string();
    let answer =
        doomed.invoke("SubmitJob", &http_request("POST", "http://localhost/api/jobs", json!({}), Some(&body))).await;
    assert!(answer.is_err(), "the handler must die before answering: {answer:?}");
    assert!(!doomed.exited().await?.success());

    let job = store.get_job("crashed").await?.expect("the job row was written before the crash").value;
    assert_eq!(job.state.as_str(), "Submitting");
    let account = job.account.clone().unwrap_or_default();
    let active = store.active_attempts(&account).await?;
    assert_eq!(active.len(), 1);
    assert_eq!(store.counters(&account).await?.value.in_flight(), 1, "counted in flight with its row");
    let ams: Vec<Value> = http.get(format!("{}/_emulator/jobs", emulator.url)).send().await?.json().await?;
    assert!(ams.is_empty(), "no Media Services job was created");

    // A new instance's sweep finds the attempt that never heard from Media Services and creates its job.
    let handler =
        Handler::start(&azurite, &emulator.url, &prefix, &[("RECONCILE_AFTER", "1s"), ("STUCK_AFTER", "1h")]).await?;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let (status, _, _) = handler.invoke("SweepStuckJobs", &timer_request()).await?;
    assert_eq!(status, 200);
    let ams: Vec<Value> = http.get(format!("{}/_emulator/jobs", emulator.url)).send().await?.json().await?;
    assert_eq!(ams.len(), 1);
    assert_eq!(ams[0]["name"], "crashed-a1", "the same deterministic name, not a second job");

    // No event endpoint here: later sweeps read the job back as it runs to the end.
    eventually(Duration::from_secs(60), "the repaired job to finish", || async {
        tokio::time::sleep(Duration::from_millis(1100)).await;
        handler.invoke("SweepStuckJobs", &timer_request()).await?;
        let job = store.get_job("crashed").await?.map(|j| j.value);
        Ok(job.filter(|j| j.state.as_str() == "Finished"))
    })
    .await?;
    assert_eq!(store.counters(&account).await?.value.in_flight(), 0);
    assert!(store.active_attempts(&account).await?.is_empty());
    Ok(())
}
