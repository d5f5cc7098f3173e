//! Crash repair at every write boundary. Each test-only fail point (`FAIL_POINT`, honoured by debug builds)
//! aborts the handler there, the way an instance recycled in the middle of an invocation dies; a new
//! instance's sweeps then finish the work from the rows left behind: the job ends final, under one Media
//! Services job per attempt, with exact counters and nothing left in the open-jobs index.

mod support;

use ams_failover::domain::JobState;
use ams_failover::store::{JobSummary, Store};
use ams_failover::workflow::FAIL_POINTS;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::time::Duration;
use support::{
    assert_counters_exact, assert_no_open_work, eventually, http_request, job_body, options, start_emulator,
    timer_request, Handler, RESOURCE_GROUP, SUBSCRIPTION,
};
use tables::TableService;
use testkit::servicebus::ServiceBus;
use testkit::stack::Process;
use testkit::Azurite;

const ACCOUNTS: [&str; 2] = ["amswesteurope", "amsnortheurope"];

/// Azurite, the emulator with the transform in both accounts, and a store on a fresh prefix. Events are
/// not delivered: sweeps read jobs back from Media Services, so nothing but the sweep repairs anything.
struct Bench {
    azurite: Azurite,
    emulator: Process,
    prefix: String,
    store: Store,
    http: reqwest::Client,
}

impl Bench {
    async fn start() -> anyhow::Result<Bench> {
        let azurite = Azurite::start().await?;
        let emulator = start_emulator(&testkit::workspace_bin("ams-emulator"), &options())?;
        let http = reqwest::Client::new();
        for account in ACCOUNTS {
            let url = format!(
                "{}/subscriptions/{SUBSCRIPTION}/resourceGroups/{RESOURCE_GROUP}/providers/Microsoft.Media/mediaServices/{account}/transforms/encode?api-version=2022-07-01",
                emulator.url
            );
            let transform = json!({"properties": {"outputs": [{"preset": {"@odata.type": "#Microsoft.Media.BuiltInStandardEncoderPreset", "presetName": "AdaptiveStreaming"}}]}});
            http.put(url).json(&transform).send().await?.error_for_status()?;
        }
        let prefix = testkit::unique_prefix();
        let service = TableService::from_connection_string(&azurite.connection_string(), http.clone())?;
        let store = Store::with_service(service, &prefix);
        Ok(Bench { azurite, emulator, prefix, store, http })
    }

    async fn handler(&self, settings: &[(&str, &str)]) -> anyhow::Result<Handler> {
        Handler::start(&self.azurite, &self.emulator.url, &self.prefix, settings).await
    }

    async fn fault(&self, account: &str, fault: Value) -> anyhow::Result<()> {
        let url = format!("{}/_emulator/accounts/{account}/fault", self.emulator.url);
        self.http.post(url).json(&fault).send().await?.error_for_status()?;
        Ok(())
    }

    async fn emulator_jobs(&self) -> anyhow::Result<Vec<Value>> {
        Ok(self.http.get(format!("{}/_emulator/jobs", self.emulator.url)).send().await?.json().await?)
    }

    /// Submits `id` to a healthy handler; the 202 body.
    async fn submit(&self, handler: &Handler, id: &str) -> anyhow::Result<Value> {
        let body = job_body(id).to_string();
        let req = http_request("POST", "http://localhost/api/jobs", json!({}), Some(&body));
        let (status, _, answer) = handler.invoke("SubmitJob", &req).await?;
        anyhow::ensure!(status == 200, "SubmitJob invocation answered {status}: {answer}");
        Ok(serde_json::from_str(answer["Outputs"]["res"]["body"].as_str().unwrap_or("null"))?)
    }

    /// Runs `invoke` on a handler with `FAIL_POINT=point` and checks that it died there without answering.
    async fn die_at(
        &self,
        point: &str,
        settings: &[(&str, &str)],
        function: &str,
        payload: &Value,
    ) -> anyhow::Result<()> {
        let mut all = vec![("FAIL_POINT", point)];
        all.extend_from_slice(settings);
        let mut doomed = self.handler(&all).await?;
        let answer = doomed.invoke(function, payload).await;
        anyhow::ensure!(answer.is_err(), "the handler must die at {point} before answering: {answer:?}");
        anyhow::ensure!(!doomed.exited().await?.success(), "the handler must abort at {point}");
        Ok(())
    }

    /// A new instance sweeps until `id` is final; then every invariant must hold.
    async fn settles(&self, id: &str) -> anyhow::Result<Value> {
        self.settles_with(id, &[]).await
    }

    /// [`Bench::settles`] with more settings for the new instance.
    async fn settles_with(&self, id: &str, extra: &[(&str, &str)]) -> anyhow::Result<Value> {
        let mut settings = vec![("RECONCILE_AFTER", "1s"), ("STUCK_AFTER", "1h")];
        settings.extend_from_slice(extra);
        let handler = self.handler(&settings).await?;
        let job = eventually(Duration::from_secs(60), "the repaired job to end", || async {
            tokio::time::sleep(Duration::from_millis(1100)).await;
            let (status, _, _) = handler.invoke("SweepStuckJobs", &timer_request()).await?;
            anyhow::ensure!(status == 200, "the sweep failed");
            let job = self.store.get_job(id).await?.map(|j| j.value);
            Ok(job.filter(|j| j.state.is_final()))
        })
        .await?;
        assert_eq!(job.state.as_str(), "Finished", "{job:?}");
        assert_counters_exact(&self.store, &ACCOUNTS).await?;
        // One more sweep may still be needed to drop index rows of a job that just ended.
        handler.invoke("SweepStuckJobs", &timer_request()).await?;
        assert_no_open_work(&self.store).await?;
        let ams = self.emulator_jobs().await?;
        let names: Vec<&str> = ams.iter().filter_map(|j| j["name"].as_str()).collect();
        let unique: BTreeSet<&str> = names.iter().copied().collect();
        assert_eq!(names.len(), unique.len(), "one Media Services job per attempt: {names:?}");
        let finished = ams.iter().filter(|j| j["state"] == "Finished").count();
        assert_eq!(finished, 1, "the job ran to the end exactly once: {ams:?}");
        Ok(serde_json::to_value(job)?)
    }
}

fn submit_payload(id: &str) -> Value {
    let body = job_body(id).to_string();
    http_request("POST", "http://localhost/api/jobs", json!({}), Some(&body))
}

async fn a_crash_during_submission_at(point: &str) -> anyhow::Result<()> {
    let bench = Bench::start().await?;
    bench.die_at(point, &[], "SubmitJob", &submit_payload("crashed")).await?;
    bench.settles("crashed").await?;
    Ok(())
}

/// An instance dies at `point` while placing a job; the job is cancelled before any sweep repairs it. The
/// repair then makes no Media Services job and the job ends Canceled, with exact counters.
async fn a_job_cancelled_after_a_crash_at(point: &str) -> anyhow::Result<()> {
    let bench = Bench::start().await?;
    bench.die_at(point, &[], "SubmitJob", &submit_payload("crash-cancel")).await?;
    let handler = bench.handler(&[("RECONCILE_AFTER", "1s"), ("STUCK_AFTER", "1h")]).await?;
    let req =
        http_request("POST", "http://localhost/api/jobs/crash-cancel/cancel", json!({"jobId": "crash-cancel"}), None);
    let (status, _, answer) = handler.invoke("CancelJob", &req).await?;
    anyhow::ensure!(status == 200, "CancelJob invocation answered {status}: {answer}");
    assert_eq!(answer["Outputs"]["res"]["statusCode"], 202, "{answer}");
    let job = eventually(Duration::from_secs(60), "the cancelled job to end", || async {
        tokio::time::sleep(Duration::from_millis(1100)).await;
        handler.invoke("SweepStuckJobs", &timer_request()).await?;
        Ok(bench.store.get_job("crash-cancel").await?.map(|j| j.value).filter(|j| j.state.is_final()))
    })
    .await?;
    assert_eq!(job.state.as_str(), "Canceled", "{job:?}");
    assert_counters_exact(&bench.store, &ACCOUNTS).await?;
    handler.invoke("SweepStuckJobs", &timer_request()).await?;
    assert_no_open_work(&bench.store).await?;
    let ams = bench.emulator_jobs().await?;
    assert!(ams.iter().all(|j| j["state"] != "Processing" && j["state"] != "Finished"), "nothing ran: {ams:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_cancelled_after_a_crash_between_claim_and_attempt_row_is_never_created() -> anyhow::Result<()> {
    a_job_cancelled_after_a_crash_at("after-claim").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_cancelled_after_a_crash_before_its_media_job_ends_canceled() -> anyhow::Result<()> {
    a_job_cancelled_after_a_crash_at("after-output-assets").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_after_the_job_claim_is_repaired_by_the_next_sweep() -> anyhow::Result<()> {
    a_crash_during_submission_at("after-claim").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_after_the_attempt_row_is_repaired_by_the_next_sweep() -> anyhow::Result<()> {
    a_crash_during_submission_at("after-attempt-row").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_after_the_output_assets_is_repaired_by_the_next_sweep() -> anyhow::Result<()> {
    a_crash_during_submission_at("after-output-assets").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_after_the_media_services_job_is_repaired_by_the_next_sweep() -> anyhow::Result<()> {
    a_crash_during_submission_at("after-media-job").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_while_the_sweep_places_a_pending_job_is_repaired_by_the_next_sweep() -> anyhow::Result<()> {
    let bench = Bench::start().await?;
    for account in ACCOUNTS {
        bench.fault(account, json!({"mode": "outage"})).await?;
    }
    let healthy = bench.handler(&[]).await?;
    let answer = bench.submit(&healthy, "waited").await?;
    assert_eq!(answer["state"], "Pending", "{answer}");
    drop(healthy);
    for account in ACCOUNTS {
        bench.fault(account, json!({"mode": "healthy"})).await?;
    }
    bench.die_at("after-claim", &[], "SweepStuckJobs", &timer_request()).await?;
    let job = bench.settles("waited").await?;
    assert!(job["attempts"].as_array().is_some_and(|a| a.iter().any(|t| t["state"] == "SubmitFailed")), "{job}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_before_the_final_job_update_is_repaired_by_the_next_sweep() -> anyhow::Result<()> {
    let bench = Bench::start().await?;
    let healthy = bench.handler(&[]).await?;
    bench.submit(&healthy, "ending").await?;
    drop(healthy);
    eventually(Duration::from_secs(30), "the Media Services job to finish", || async {
        let jobs = bench.emulator_jobs().await?;
        Ok(jobs.iter().any(|j| j["state"] == "Finished").then_some(()))
    })
    .await?;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    // The sweep reads the finished job back, closes the attempt, and dies before the job row follows.
    bench.die_at("before-final-job-update", &[("RECONCILE_AFTER", "1s")], "SweepStuckJobs", &timer_request()).await?;
    let job = bench.store.get_job("ending").await?.map(|j| j.value.state.as_str().to_owned());
    assert_ne!(job.as_deref(), Some("Finished"), "the job row was left behind");
    bench.settles("ending").await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_right_after_the_job_went_final_still_gets_its_outcome_announced() -> anyhow::Result<()> {
    let bench = Bench::start().await?;
    let outputs = tempfile::tempdir()?;
    let bus = ServiceBus::start(outputs.path()).await?;
    let topic = [("SERVICE_BUS_ENDPOINT", bus.url.as_str())];
    let healthy = bench.handler(&topic).await?;
    bench.submit(&healthy, "announced").await?;
    drop(healthy);
    eventually(Duration::from_secs(30), "the Media Services job to finish", || async {
        let jobs = bench.emulator_jobs().await?;
        Ok(jobs.iter().any(|j| j["state"] == "Finished").then_some(()))
    })
    .await?;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    // The sweep reads the finished job back, makes the job final, and dies before anything is sent.
    let settings = [("RECONCILE_AFTER", "1s"), ("SERVICE_BUS_ENDPOINT", bus.url.as_str())];
    bench.die_at("after-final-job-update", &settings, "SweepStuckJobs", &timer_request()).await?;
    let job = bench.store.get_job("announced").await?.map(|j| j.value.state.as_str().to_owned());
    assert_eq!(job.as_deref(), Some("Finished"), "the job went final before the crash");
    assert!(bus.sends("job-events").is_empty(), "nothing was sent before the crash");
    bench.settles_with("announced", &topic).await?;
    let delivered = bus.delivered("job-events");
    let ids: Vec<&str> = delivered.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(ids, ["announced:Finished"], "the next instance's sweep announced it, once");
    assert!(bench.store.index().await?.outbox.is_empty(), "and cleared the outbox");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_while_the_sweep_moves_a_stuck_job_is_repaired_by_the_next_sweep() -> anyhow::Result<()> {
    let bench = Bench::start().await?;
    let healthy = bench.handler(&[]).await?;
    let answer = bench.submit(&healthy, "stuck").await?;
    drop(healthy);
    let account = answer["account"].as_str().unwrap_or_default().to_owned();
    bench.fault(&account, json!({"mode": "stall"})).await?;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    bench.die_at("move-after-supersede", &[("STUCK_AFTER", "1s")], "SweepStuckJobs", &timer_request()).await?;
    let job = bench.settles("stuck").await?;
    let states: Vec<&str> =
        job["attempts"].as_array().into_iter().flatten().filter_map(|a| a["state"].as_str()).collect();
    assert_eq!(states, ["Superseded", "Finished"], "{job}");
    assert_ne!(job["account"], json!(account), "finished on the other account: {job}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_while_the_sweep_repairs_a_job_is_repaired_by_the_next_sweep() -> anyhow::Result<()> {
    let bench = Bench::start().await?;
    bench.die_at("after-claim", &[], "SubmitJob", &submit_payload("twice")).await?;
    bench.die_at("repair-after-open", &[], "SweepStuckJobs", &timer_request()).await?;
    bench.settles("twice").await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_that_went_final_without_its_ended_index_row_gets_it_from_the_next_sweep() -> anyhow::Result<()> {
    let bench = Bench::start().await?;
    let healthy = bench.handler(&[]).await?;
    bench.submit(&healthy, "unlisted").await?;
    drop(healthy);
    bench.settles("unlisted").await?;
    let (ended, _) = bench.store.ended_page(JobState::Finished, None, 10, None).await?;
    assert_eq!(ended.iter().map(|j| j.job_id.as_str()).collect::<Vec<_>>(), ["unlisted"]);

    // What an instance that died between the final job write and the ended-index write leaves: the job
    // final, still in the open-jobs index, in no ended index.
    let jobs = TableService::from_connection_string(&bench.azurite.connection_string(), bench.http.clone())?
        .table(&format!("{}Jobs", bench.prefix));
    let rows: Vec<tables::Entity<Value>> =
        jobs.query("PartitionKey ge '~ended|' and PartitionKey lt '~ended}'").await?;
    assert_eq!(rows.len(), 1, "{rows:?}");
    let key = |name: &str| rows[0].value[name].as_str().unwrap_or_default().to_owned();
    jobs.delete(&key("PartitionKey"), &key("RowKey"), tables::IfMatch::Any).await?;
    jobs.upsert("~index", "o|unlisted", &json!({"Since": chrono::Utc::now().to_rfc3339()})).await?;
    assert!(bench.store.ended_page(JobState::Finished, None, 10, None).await?.0.is_empty());

    let handler = bench.handler(&[]).await?;
    let (status, _, _) = handler.invoke("SweepStuckJobs", &timer_request()).await?;
    assert_eq!(status, 200);
    let (ended, _) = bench.store.ended_page(JobState::Finished, None, 10, None).await?;
    assert_eq!(ended, vec![JobSummary::from(&bench.store.get_job("unlisted").await?.expect("the job").value)]);
    assert_no_open_work(&bench.store).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_that_died_before_its_ready_row_creates_what_is_missing_and_a_restart_reads_only_that_row(
) -> anyhow::Result<()> {
    let bench = Bench::start().await?;
    let service = TableService::from_connection_string(&bench.azurite.connection_string(), bench.http.clone())?;
    let publications = format!("{}Publications", bench.prefix);
    let health = service.table(&format!("{}Health", bench.prefix));
    let ready = |rows: &[tables::Entity<Value>]| {
        rows.iter().any(|r| r.value["RowKey"].as_str().is_some_and(|k| k.starts_with("ready|")))
    };
    bench.store.ensure_ready().await?;
    let rows: Vec<tables::Entity<Value>> = health.query("PartitionKey eq 'health'").await?;
    assert!(ready(&rows), "the ready row is written last: {rows:?}");

    // A start that died after some tables: one missing, no ready row.
    service.delete_table(&publications).await?;
    for row in rows.iter().filter(|r| ready(std::slice::from_ref(*r))) {
        health.delete("health", row.value["RowKey"].as_str().unwrap_or_default(), tables::IfMatch::Any).await?;
    }
    bench.store.ensure_ready().await?;
    assert!(service.table(&publications).query::<Value>("").await.is_ok(), "the missing table was created");

    // With the ready row there, a start reads it and nothing else: a table deleted by hand stays deleted.
    service.delete_table(&publications).await?;
    bench.store.ensure_ready().await?;
    assert!(service.table(&publications).query::<Value>("").await.is_err());
    Ok(())
}

#[test]
fn every_fail_point_has_a_test_here() {
    let source = include_str!("crash.rs");
    for point in FAIL_POINTS {
        assert!(source.contains(&format!("\"{point}\"")), "no test aborts at {point}");
    }
}
