//! MK.IO's request surface: tokens, the error body, rate limits, list quirks, transforms, jobs, storage
//! registration and assets as pointers, and fault injection on MK.IO projects.

use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};

use super::{assert_mkio_error, call, job_body, media, start, token, Client};
use crate::common::eventually;

#[tokio::test]
async fn a_call_without_a_bearer_token_is_refused_with_mkio_error_body() {
    let emu = start(&[]).await;
    let r = call(&emu, Method::GET, &media(&emu, "east", "transforms/encode"), None, None).await;
    assert_mkio_error(&r, 401, "Unauthorized");
    assert!(r
        .headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.starts_with("application/json")));
    let bogus = call(&emu, Method::GET, &media(&emu, "east", "transforms/encode"), Some("not-a-jwt"), None).await;
    assert_mkio_error(&bogus, 401, "Unauthorized");
}

#[tokio::test]
async fn an_expired_token_is_refused_as_expired_and_a_fresh_one_is_accepted() {
    let emu = start(&[]).await;
    let expired = token(&emu, -60).await;
    let r = call(&emu, Method::GET, &media(&emu, "east", "jobs"), Some(&expired), None).await;
    assert_mkio_error(&r, 401, "TokenExpired");
    // Any JWT with a future exp is accepted: signatures are not checked.
    let fresh = token(&emu, 600).await;
    let r = call(&emu, Method::GET, &media(&emu, "east", "jobs"), Some(&fresh), None).await;
    assert_ne!(r.status, 401, "{}", r.body);
    let counts = Client::new(&emu).await.view("east").await;
    assert_eq!(counts["requests"]["unauthorized"], 1);
}

#[tokio::test]
async fn every_error_carries_code_detail_status_and_a_fresh_ref() {
    let emu = start(&[]).await;
    let c = Client::new(&emu).await;
    let a = c.get("east", "transforms/nope").await;
    let b = c.get("east", "transforms/nope").await;
    assert_mkio_error(&a, 404, "NotFound");
    assert_ne!(a.body["ref"], b.body["ref"]);
    assert_mkio_error(&c.put("east", "transforms/bad", json!({"properties": {}})).await, 400, "BadRequest");
    assert_mkio_error(&c.send(Method::POST, &media(&emu, "east", "transforms/x"), None).await, 405, "MethodNotAllowed");
    assert_mkio_error(&c.get("nowhere", "jobs").await, 404, "NotFound");
}

#[tokio::test]
async fn an_empty_list_answers_404_and_a_full_one_pages_with_a_next_link_only_while_more_remain() {
    let emu = start(&["--page-size", "2"]).await;
    let c = Client::new(&emu).await;
    assert_mkio_error(&c.get("east", "jobs").await, 404, "NotFound");
    for j in ["j1", "j2", "j3"] {
        assert_eq!(c.submit("east", j).await.status, 201);
    }
    let first = c.get("east", "jobs").await;
    assert_eq!(first.status, 200, "{}", first.body);
    assert_eq!(first.body["value"].as_array().map(Vec::len), Some(2));
    let pagination = &first.body["supplemental"]["pagination"];
    assert_eq!(
        (pagination["start"].clone(), pagination["end"].clone(), pagination["total"].clone()),
        (json!(0), json!(2), json!(3))
    );
    assert_eq!(first.body["supplemental"]["kind"], "Job");
    assert_eq!(first.body["supplemental"]["subscription"]["name"], "east");
    let next = first.body["@odata.nextLink"].as_str().expect("a next page exists");
    assert!(next.starts_with("/api/v1/projects/east/media/jobs?"), "{next}");
    let second = c.send(Method::GET, &format!("{}{next}", emu.base), None).await;
    assert_eq!(second.status, 200, "{}", second.body);
    assert_eq!(second.body["value"][0]["name"], "j3");
    assert!(second.body.get("@odata.nextLink").is_none(), "{}", second.body);
    // Per transform, with MK.IO's filter vocabulary.
    let filtered = c.get("east", "transforms/encode/jobs?$filter=name eq 'j2' and transform eq 'encode'").await;
    assert_eq!(filtered.status, 200, "{}", filtered.body);
    assert_eq!(filtered.body["value"].as_array().map(Vec::len), Some(1));
    assert_mkio_error(&c.get("east", "jobs?$filter=name eq 'none'").await, 404, "NotFound");
}

#[tokio::test]
async fn an_empty_list_can_answer_200_when_configured() {
    let emu = start(&["--mkio-empty-list-status", "200"]).await;
    let c = Client::new(&emu).await;
    let r = c.get("east", "jobs").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["value"], json!([]));
    assert_eq!(r.body["supplemental"]["pagination"]["total"], 0);
}

#[tokio::test]
async fn past_a_small_budget_requests_get_429_without_retry_after_and_the_counts_show_it() {
    let emu = start(&["--mkio-reads-per-minute", "3", "--mkio-writes-per-minute", "2"]).await;
    let c = Client::new(&emu).await;
    let mut statuses = Vec::new();
    for _ in 0..5 {
        let r = c.get("east", "transforms/none").await;
        if r.status == 429 {
            assert_mkio_error(&r, 429, "TooManyRequests");
            assert!(r.headers.get("retry-after").is_none(), "MK.IO documents no Retry-After");
        }
        statuses.push(r.status);
    }
    assert_eq!(statuses, [404, 404, 404, 429, 429]);
    // Writes have their own budget, and the other project its own.
    assert_eq!(c.transform("east", "t").await.status, 201);
    assert_eq!(c.get("west", "transforms/none").await.status, 404);
    let view = c.view("east").await;
    let req = &view["requests"];
    assert_eq!(
        (req["reads"].clone(), req["throttledReads"].clone(), req["peakReads"].clone()),
        (json!(5), json!(2), json!(5))
    );
    assert_eq!(
        (req["writes"].clone(), req["readsPerWindow"].clone(), req["windowMs"].clone()),
        (json!(1), json!(3), json!(60000))
    );
    assert_eq!(
        req["perMinute"].as_array().map(|m| m.iter().map(|x| x["throttled"].as_u64().unwrap_or(0)).sum::<u64>()),
        Some(2)
    );
    // Budgets can be changed at run time.
    let raised = emu
        .post(&format!("{}/_emulator/mkio/projects/east/limits", emu.base), Some(json!({"readsPerWindow": 100})))
        .await;
    assert_eq!(raised.status, 200, "{}", raised.body);
    assert_eq!(c.get("east", "transforms/none").await.status, 404);
}

#[tokio::test]
async fn the_rate_window_slides_so_the_budget_comes_back() {
    let emu = start(&["--mkio-reads-per-minute", "1", "--mkio-rate-window-ms", "300"]).await;
    let c = Client::new(&emu).await;
    assert_eq!(c.get("east", "transforms/none").await.status, 404);
    assert_eq!(c.get("east", "transforms/none").await.status, 429);
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert_eq!(c.get("east", "transforms/none").await.status, 404);
}

#[tokio::test]
async fn a_transform_takes_one_output_with_an_mkio_preset_name() {
    let emu = start(&[]).await;
    let c = Client::new(&emu).await;
    let created = c.transform("east", "abr").await;
    assert_eq!(created.status, 201, "{}", created.body);
    assert_eq!(created.body["id"], "/api/v1/projects/east/media/transforms/abr");
    assert_eq!(created.body["properties"]["outputs"][0]["onError"], "StopProcessingJob");
    assert!(created.body["systemData"]["internalId"].is_string());
    assert_eq!(c.transform("east", "abr").await.status, 200);
    let ams_name = json!({"properties": {"outputs": [{"preset": {
        "@odata.type": "#Microsoft.Media.BuiltInStandardEncoderPreset", "presetName": "AdaptiveStreaming"}}]}});
    assert_mkio_error(&c.put("east", "transforms/ams", ams_name).await, 400, "BadRequest");
    let preset =
        json!({"@odata.type": "#Microsoft.Media.BuiltInStandardEncoderPreset", "presetName": "H264SingleBitrateSD"});
    let two = json!({"properties": {"outputs": [{"preset": preset}, {"preset": preset}]}});
    assert_mkio_error(&c.put("east", "transforms/two", two).await, 400, "BadRequest");
}

#[tokio::test]
async fn a_job_creates_its_output_asset_in_the_default_storage_and_finishes_with_outputs() {
    let emu = start(&[]).await;
    let c = Client::new(&emu).await;
    let r = c.submit("east", "job-1").await;
    assert_eq!(r.status, 201, "{}", r.body);
    let p = &r.body["properties"];
    assert_eq!(p["state"], "Queued");
    assert_eq!(p["input"]["@odata.type"], "#Microsoft.Media.JobInputHttp", "shown as given, not wrapped");
    assert_eq!(p["input"]["baseUri"], "https://example.blob.core.windows.net/in/");
    let asset = c.get("east", "assets/out-job-1").await;
    assert_eq!(asset.status, 200, "{}", asset.body);
    assert_eq!(asset.body["properties"]["storageAccountName"], "eaststorage");
    let container = asset.body["properties"]["container"].as_str().expect("container").to_string();
    emu.wait_for_state("east", "job-1", "Finished").await;
    let done = c.get("east", "transforms/encode/jobs/job-1").await;
    assert_eq!(done.body["properties"]["state"], "Finished");
    assert_eq!(done.body["properties"]["outputs"][0]["progress"], 100);
    let state = c.get("east", "transforms/encode/jobs/job-1/state").await;
    assert_eq!(state.body, json!({"status": {"state": "Finished"}}));
    // The outputs landed in the asset's container, readable with the configured SAS.
    let view = c.view("east").await;
    let list = format!(
        "{}/{container}{}&restype=container&comp=list",
        view["storage"]["blobUrl"].as_str().unwrap_or(""),
        view["storage"]["sas"].as_str().unwrap_or("")
    );
    let listed = emu.http.get(&list).send().await.expect("list").text().await.expect("xml");
    assert!(listed.contains("<Name>video.ism</Name>"), "{listed}");
}

#[tokio::test]
async fn without_registered_storage_a_job_cannot_create_its_output_asset() {
    let emu = start(&["--mkio-no-default-storage"]).await;
    let c = Client::new(&emu).await;
    let r = c.submit("east", "job-1").await;
    assert_mkio_error(&r, 400, "BadRequest");
    assert_mkio_error(&c.get("east", "assets/out-job-1").await, 404, "NotFound");
}

#[tokio::test]
async fn a_failed_job_reports_an_error_without_details() {
    let emu = start(&[]).await;
    let c = Client::new(&emu).await;
    emu.set_fault("east", json!({"mode": "fail-jobs", "retry": "MayRetry", "code": "ContentMalformed"})).await;
    assert_eq!(c.submit("east", "bad").await.status, 201);
    emu.wait_for_state("east", "bad", "Error").await;
    let err = c.get("east", "transforms/encode/jobs/bad").await.body["properties"]["outputs"][0]["error"].clone();
    assert_eq!(
        err,
        json!({"category": "Content", "code": "ContentMalformed", "message": err["message"], "retry": "MayRetry"})
    );
    assert!(err.get("details").is_none());
}

#[tokio::test]
async fn a_taken_name_is_refused_with_already_exists_as_400_or_409() {
    let emu = start(&[]).await;
    let c = Client::new(&emu).await;
    assert_eq!(c.submit("east", "twice").await.status, 201);
    let again = c.submit("east", "twice").await;
    assert_mkio_error(&again, 400, "BadRequest");
    assert!(again.body["error"]["detail"].as_str().is_some_and(|d| d.contains(" already exists.")), "{}", again.body);
    let strict = start(&["--mkio-duplicate-status", "409"]).await;
    let c = Client::new(&strict).await;
    assert_eq!(c.submit("east", "twice").await.status, 201);
    assert_mkio_error(&c.submit("east", "twice").await, 409, "Conflict");
}

#[tokio::test]
async fn a_job_can_be_cancelled_patched_listed_per_project_and_deleted() {
    let emu = start(&["--processing-ms", "600000"]).await;
    let c = Client::new(&emu).await;
    assert_eq!(c.submit("east", "long").await.status, 201);
    let patched = c
        .send(
            Method::PATCH,
            &media(&emu, "east", "transforms/encode/jobs/long"),
            Some(json!({"properties": {"priority": "High", "description": "urgent"}})),
        )
        .await;
    assert_eq!(patched.status, 200, "{}", patched.body);
    assert_eq!(patched.body["properties"]["priority"], "High");
    let cancel = c.post("east", "transforms/encode/jobs/long/cancelJob", None).await;
    assert_eq!(cancel.status, 200);
    emu.wait_for_state("east", "long", "Canceled").await;
    let listed = c.get("east", "jobs?$filter=properties/state eq 'Canceled'").await;
    assert_eq!(listed.body["value"][0]["name"], "long", "{}", listed.body);
    let gone = c.send(Method::DELETE, &media(&emu, "east", "transforms/encode/jobs/long"), None).await;
    assert_eq!(gone.status, 200);
    let again = c.send(Method::DELETE, &media(&emu, "east", "transforms/encode/jobs/long"), None).await;
    assert_eq!(again.status, 204);
}

#[tokio::test]
async fn storage_is_registered_with_a_sas_and_assets_point_into_it() {
    let emu = start(&["--mkio-no-default-storage"]).await;
    let c = Client::new(&emu).await;
    let view = c.view("east").await;
    let blob_url = view["storage"]["blobUrl"].as_str().expect("blobUrl").to_string();
    let sas = view["storage"]["sas"].as_str().expect("sas").to_string();
    assert!(sas.starts_with("?sv=") && sas.contains("ss=b") && sas.contains("srt=sco"), "{sas}");
    let spec = |url: &str, sas: &str| json!({"spec": {"type": "Microsoft.Storage", "url": url, "credential": {"sasToken": sas}}});
    let created = c.put("east", "storage/primary", spec(&blob_url, &sas)).await;
    assert_eq!(created.status, 201, "{}", created.body);
    assert_eq!(created.body["spec"]["region"], "eastus");
    assert!(!created.body.to_string().contains(&sas), "the SAS signature is not echoed");
    let got = c.get("east", "storage/primary").await;
    assert_eq!(got.status, 200);
    assert_eq!(got.body["spec"]["url"], blob_url.as_str());
    assert_eq!(c.put("east", "storage/primary", spec(&blob_url, &sas)).await.status, 200);
    // Another region's storage, or a SAS that does not verify, is refused.
    let west = c.view("west").await;
    let west_url = west["storage"]["blobUrl"].as_str().unwrap_or("");
    assert_mkio_error(&c.put("east", "storage/far", spec(west_url, &sas)).await, 400, "BadRequest");
    let forged = sas.replace("sig=", "sig=AAAA");
    assert_mkio_error(&c.put("east", "storage/forged", spec(&blob_url, &forged)).await, 400, "BadRequest");
    // An asset names the registered storage; a missing container is created.
    let asset = c
        .put("east", "assets/a1", json!({"properties": {"storageAccountName": "primary", "container": "media-a1"}}))
        .await;
    assert_eq!(asset.status, 201, "{}", asset.body);
    assert_eq!(asset.body["properties"]["container"], "media-a1");
    let list = format!("{blob_url}/media-a1{sas}&restype=container&comp=list");
    assert_eq!(emu.http.get(&list).send().await.expect("list").status(), 200);
    assert_mkio_error(
        &c.put("east", "assets/a1", json!({"properties": {"storageAccountName": "primary", "container": "other"}}))
            .await,
        400,
        "BadRequest",
    );
    assert_mkio_error(
        &c.put("east", "assets/a2", json!({"properties": {"storageAccountName": "primary", "container": "media-a1"}}))
            .await,
        409,
        "Conflict",
    );
    assert_mkio_error(
        &c.put("east", "assets/a3", json!({"properties": {"storageAccountName": "unregistered"}})).await,
        400,
        "BadRequest",
    );
    // Storage in use cannot be unregistered.
    assert_mkio_error(&c.send(Method::DELETE, &media(&emu, "east", "storage/primary"), None).await, 409, "Conflict");
    let listed = c.get("east", "storage").await;
    assert_eq!(listed.body["value"].as_array().map(Vec::len), Some(1), "{}", listed.body);
}

#[tokio::test]
async fn an_mkio_project_is_not_served_on_arm_paths() {
    let emu = start(&[]).await;
    emu.get(&format!("{}?api-version=2023-01-01", emu.account_url("east")))
        .await
        .assert_arm_error(404, "ResourceNotFound");
}

#[tokio::test]
async fn faults_apply_to_mkio_projects_in_mkio_shape() {
    let emu = start(&[]).await;
    let c = Client::new(&emu).await;
    emu.set_fault("east", json!({"mode": "outage"})).await;
    assert_mkio_error(&c.get("east", "jobs").await, 503, "ServiceUnavailable");
    emu.set_fault("east", json!({"mode": "throttle", "count": 1})).await;
    let throttled = c.get("east", "jobs").await;
    assert_mkio_error(&throttled, 429, "TooManyRequests");
    assert!(throttled.headers.get("retry-after").is_none());
    emu.set_fault("east", json!({"mode": "refuse", "operation": "Jobs_Create", "status": 403, "code": "Forbidden"}))
        .await;
    assert_mkio_error(&c.submit("east", "refused").await, 403, "Forbidden");
    emu.set_fault("east", json!({"mode": "stall"})).await;
    let stuck = c.put("east", "transforms/encode/jobs/stuck", job_body("out-stuck")).await;
    assert_eq!(stuck.status, 201, "{}", stuck.body);
    emu.wait_for_state("east", "stuck", "Scheduled").await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let got = c.get("east", "transforms/encode/jobs/stuck").await;
    assert_eq!(got.body["properties"]["state"], "Scheduled", "MK.IO's GET reports Scheduled");
    emu.set_fault("east", json!({"mode": "healthy"})).await;
    emu.wait_for_state("east", "stuck", "Finished").await;
    eventually("the project serves again", || async { c.get("east", "jobs").await.status == 200 }).await;
    let all: Value = c.get("east", "jobs").await.body;
    assert_eq!(all["value"].as_array().map(Vec::len), Some(1));
}
