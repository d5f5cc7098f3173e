//! ARM resources, validation and error shapes, job lists.

use serde_json::{json, Value};

use crate::common::{Emulator, RG, SUB};

fn names(body: &Value) -> Vec<String> {
    let mut n: Vec<String> = body["value"]
        .as_array()
        .expect("value array")
        .iter()
        .map(|j| j["name"].as_str().unwrap().to_string())
        .collect();
    n.sort();
    n
}

#[tokio::test]
async fn transforms_are_created_then_updated_and_read_back() {
    let emu = Emulator::start_fast(&[]).await;
    let first = emu.create_transform("east", "encode").await;
    assert_eq!(first.status, 201, "{}", first.body);
    assert_eq!(first.body["name"], "encode");
    assert_eq!(first.body["type"], "Microsoft.Media/mediaservices/transforms");
    assert_eq!(
        first.body["id"],
        format!(
            "/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.Media/mediaservices/east/transforms/encode"
        )
    );
    assert!(first.body["properties"]["created"].as_str().unwrap().ends_with('Z'));
    assert!(first.body["properties"]["lastModified"].is_string());
    assert_eq!(first.body["properties"]["outputs"][0]["preset"]["presetName"], "AdaptiveStreaming");

    let again = emu.create_transform("east", "encode").await;
    assert_eq!(again.status, 200);
    assert_eq!(again.body["properties"]["created"], first.body["properties"]["created"]);

    let url = format!("{}/transforms/encode?api-version=2022-07-01", emu.account_url("east"));
    let got = emu.get(&url).await;
    assert_eq!(got.status, 200);
    assert_eq!(got.body["name"], "encode");

    let missing = emu.get(&format!("{}/transforms/nope?api-version=2022-07-01", emu.account_url("east"))).await;
    missing.assert_arm_error(404, "NotFound");
}

#[tokio::test]
async fn a_transform_without_outputs_is_a_bad_request() {
    let emu = Emulator::start_fast(&[]).await;
    let url = format!("{}/transforms/empty?api-version=2022-07-01", emu.account_url("east"));
    emu.put(&url, json!({"properties": {"outputs": []}})).await.assert_arm_error(400, "BadRequest");
    emu.put(&url, json!({"properties": {}})).await.assert_arm_error(400, "BadRequest");
}

#[tokio::test]
async fn assets_get_an_id_and_a_default_container() {
    let emu = Emulator::start_fast(&[]).await;
    let created = emu.create_asset("east", "in-1").await;
    assert_eq!(created.status, 201, "{}", created.body);
    let props = &created.body["properties"];
    let asset_id = props["assetId"].as_str().unwrap();
    assert!(uuid_like(asset_id), "{asset_id}");
    assert_eq!(props["container"], format!("asset-{asset_id}"));
    assert_eq!(props["storageEncryptionFormat"], "None");
    assert!(props["storageAccountName"].is_string());
    assert!(props["created"].is_string() && props["lastModified"].is_string());
    assert_eq!(created.body["type"], "Microsoft.Media/mediaservices/assets");

    let updated = emu.create_asset("east", "in-1").await;
    assert_eq!(updated.status, 200);
    assert_eq!(updated.body["properties"]["assetId"], asset_id);

    let url = format!("{}/assets/in-1?api-version=2023-01-01", emu.account_url("east"));
    assert_eq!(emu.get(&url).await.status, 200);
    let other = format!("{}/assets/in-1?api-version=2023-01-01", emu.account_url("west"));
    emu.get(&other).await.assert_arm_error(404, "NotFound");
}

fn uuid_like(s: &str) -> bool {
    s.len() == 36 && s.chars().filter(|c| *c == '-').count() == 4
}

#[tokio::test]
async fn a_job_is_created_queued_with_its_request_echoed() {
    let emu = Emulator::start_fast(&["--processing-ms", "600000"]).await;
    let r = emu.submit("east", "encode", "job-1").await;
    assert_eq!(r.status, 201, "{}", r.body);
    let b = &r.body;
    assert_eq!(b["name"], "job-1");
    assert_eq!(b["type"], "Microsoft.Media/mediaservices/transforms/jobs");
    assert_eq!(
        b["id"],
        format!("/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.Media/mediaservices/east/transforms/encode/jobs/job-1")
    );
    let p = &b["properties"];
    assert_eq!(p["state"], "Queued");
    assert_eq!(p["priority"], "Normal");
    assert_eq!(p["correlationData"], json!({"jobId": "job-1"}));
    assert_eq!(p["input"]["files"], json!(["video.mp4?sv=1"]));
    assert_eq!(p["input"]["@odata.type"], "#Microsoft.Media.JobInputHttp");
    assert!(p["created"].is_string() && p["lastModified"].is_string());
    assert_eq!(
        p["outputs"],
        json!([{"@odata.type": "#Microsoft.Media.JobOutputAsset", "assetName": "out-job-1",
                "label": "BuiltInStandardEncoderPreset_0", "progress": 0, "state": "Queued"}])
    );
}

#[tokio::test]
async fn creating_the_same_job_twice_is_a_conflict() {
    let emu = Emulator::start_fast(&[]).await;
    assert_eq!(emu.submit("east", "encode", "dup").await.status, 201);
    emu.put(&emu.job_url("east", "encode", "DUP"), Emulator::job_body("out-dup", json!({})))
        .await
        .assert_arm_error(409, "Conflict");
}

#[tokio::test]
async fn a_duplicate_create_answers_the_status_the_emulator_was_started_with() {
    let emu = Emulator::start_fast(&["--duplicate-create-status", "400"]).await;
    assert_eq!(emu.submit("east", "encode", "dup").await.status, 201);
    emu.put(&emu.job_url("east", "encode", "dup"), Emulator::job_body("out-dup", json!({})))
        .await
        .assert_arm_error(400, "BadRequest");
    let locator = format!("{}/streamingLocators/l?api-version=2023-01-01", emu.account_url("east"));
    let body = json!({"properties": {"assetName": "out-dup", "streamingPolicyName": "Predefined_ClearStreamingOnly"}});
    assert_eq!(emu.put(&locator, body.clone()).await.status, 201);
    emu.put(&locator, body).await.assert_arm_error(400, "BadRequest");
}

#[tokio::test]
async fn a_job_read_back_has_its_input_wrapped_and_the_base_uri_query_string_removed() {
    let emu = Emulator::start_fast(&["--processing-ms", "600000"]).await;
    emu.create_transform("east", "encode").await;
    emu.create_asset("east", "out").await;
    let mut body = Emulator::job_body("out", json!({}));
    body["properties"]["input"]["baseUri"] = json!("https://example.blob.core.windows.net/in/?sv=2022&sig=secret");
    let created = emu.put(&emu.job_url("east", "encode", "w"), body).await;
    assert_eq!(created.status, 201, "{}", created.body);
    let plain = json!({"@odata.type": "#Microsoft.Media.JobInputHttp",
        "baseUri": "https://example.blob.core.windows.net/in/", "files": ["video.mp4?sv=1"]});
    assert_eq!(created.body["properties"]["input"], plain, "the create answer echoes the input unwrapped");
    let wrapped = json!({"@odata.type": "#Microsoft.Media.JobInputs", "inputs": [plain]});
    assert_eq!(emu.get(&emu.job_url("east", "encode", "w")).await.body["properties"]["input"], wrapped);
    let list = emu.get(&format!("{}/transforms/encode/jobs?api-version=2022-07-01", emu.account_url("east"))).await;
    assert_eq!(list.body["value"][0]["properties"]["input"], wrapped);
}

#[tokio::test]
async fn invalid_jobs_are_refused_with_arm_errors() {
    let emu = Emulator::start_fast(&[]).await;
    emu.create_transform("east", "encode").await;
    emu.create_asset("east", "out").await;
    emu.create_asset("east", "in").await;
    let url = |j: &str| emu.job_url("east", "encode", j);

    emu.put(&emu.job_url("east", "nope", "j"), Emulator::job_body("out", json!({})))
        .await
        .assert_arm_error(404, "NotFound");
    // As the service answers a missing output asset (MicrosoftDocs/azure-docs#29409): 400, not 404.
    let missing = emu.put(&url("j1"), Emulator::job_body("missing-asset", json!({}))).await;
    missing.assert_arm_error(400, "BadRequest");
    assert_eq!(
        missing.body["error"]["message"],
        "Asset 'missing-asset' is not found under account 'east' when creating job."
    );

    let mut wrong_type = Emulator::job_body("out", json!({}));
    wrong_type["properties"]["outputs"][0]["@odata.type"] = json!("#Microsoft.Media.JobOutputSomething");
    emu.put(&url("j2"), wrong_type).await.assert_arm_error(400, "BadRequest");

    let mut two_outputs = Emulator::job_body("out", json!({}));
    two_outputs["properties"]["outputs"] = json!([
        {"@odata.type": "#Microsoft.Media.JobOutputAsset", "assetName": "out"},
        {"@odata.type": "#Microsoft.Media.JobOutputAsset", "assetName": "in"}
    ]);
    emu.put(&url("j3"), two_outputs).await.assert_arm_error(400, "BadRequest");

    let mut no_files = Emulator::job_body("out", json!({}));
    no_files["properties"]["input"]["files"] = json!([]);
    emu.put(&url("j4"), no_files).await.assert_arm_error(400, "BadRequest");

    let mut missing_input_asset = Emulator::job_body("out", json!({}));
    missing_input_asset["properties"]["input"] =
        json!({"@odata.type": "#Microsoft.Media.JobInputAsset", "assetName": "ghost"});
    emu.put(&url("j5"), missing_input_asset).await.assert_arm_error(404, "NotFound");

    let mut bad_priority = Emulator::job_body("out", json!({}));
    bad_priority["properties"]["priority"] = json!("Urgent");
    emu.put(&url("j6"), bad_priority).await.assert_arm_error(400, "BadRequest");

    let raw =
        emu.http.put(url("j7")).header("content-type", "application/json").body("{not json").send().await.unwrap();
    assert_eq!(raw.status(), 400);
    let body: Value = raw.json().await.unwrap();
    assert_eq!(body["error"]["code"], "InvalidRequestContent");

    // None of the refused jobs exists.
    let list = emu.get(&format!("{}/transforms/encode/jobs?api-version=2022-07-01", emu.account_url("east"))).await;
    assert_eq!(names(&list.body), Vec::<String>::new());

    // An asset input naming an existing asset is fine.
    let mut asset_input = Emulator::job_body("out", json!({}));
    asset_input["properties"]["input"] = json!({"@odata.type": "#Microsoft.Media.JobInputAsset", "assetName": "in"});
    let ok = emu.put(&url("j8"), asset_input).await;
    assert_eq!(ok.status, 201, "{}", ok.body);
}

#[tokio::test]
async fn unknown_scopes_routes_and_missing_api_versions_get_arm_errors() {
    let emu = Emulator::start_fast(&[]).await;
    let tail = "transforms/t?api-version=2022-07-01";
    emu.get(&format!("{}/{tail}", emu.account_url("north"))).await.assert_arm_error(404, "ResourceNotFound");
    emu.get(&format!(
        "{}/subscriptions/11111111-1111-1111-1111-111111111111/resourceGroups/{RG}/providers/Microsoft.Media/mediaServices/east/{tail}",
        emu.base
    ))
    .await
    .assert_arm_error(404, "SubscriptionNotFound");
    emu.get(&format!(
        "{}/subscriptions/{SUB}/resourceGroups/other-rg/providers/Microsoft.Media/mediaServices/east/{tail}",
        emu.base
    ))
    .await
    .assert_arm_error(404, "ResourceGroupNotFound");
    emu.get(&format!("{}/transforms/t", emu.account_url("east")))
        .await
        .assert_arm_error(400, "MissingApiVersionParameter");
    emu.get(&format!("{}/whatever", emu.base)).await.assert_arm_error(404, "NotFound");
    emu.get(&format!("{}/liveEvents/x?api-version=2022-07-01", emu.account_url("east")))
        .await
        .assert_arm_error(404, "NotFound");
    emu.send(reqwest::Method::DELETE, &format!("{}/_emulator/accounts", emu.base), None)
        .await
        .assert_arm_error(405, "MethodNotAllowed");
    emu.get(&format!("{}/_emulator/nothing", emu.base)).await.assert_arm_error(404, "NotFound");
}

#[tokio::test]
async fn path_segments_and_account_names_match_case_insensitively() {
    let emu = Emulator::start_fast(&[]).await;
    let odd = format!(
        "{}/SUBSCRIPTIONS/{SUB}/resourcegroups/{RG}/PROVIDERS/microsoft.media/MediaServices/EAST/transforms/t?api-version=2022-07-01",
        emu.base
    );
    let created = emu
        .put(
            &odd,
            json!({"properties": {"outputs": [{"preset": {"@odata.type": "#Microsoft.Media.BuiltInStandardEncoderPreset"}}]}}),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    // Resource ids use the configured account name and lowercase `mediaservices`.
    assert!(created.body["id"]
        .as_str()
        .unwrap()
        .contains("/providers/Microsoft.Media/mediaservices/east/transforms/t"));
    let got = emu.get(&format!("{}/transforms/T?api-version=2022-07-01", emu.account_url("East"))).await;
    assert_eq!(got.status, 200);
}

/// Three jobs in transform `encode`: `a` and `c` keep processing, `b` is cancelled.
async fn three_jobs(emu: &Emulator) {
    for j in ["a", "b", "c"] {
        assert_eq!(emu.submit("east", "encode", j).await.status, 201);
    }
    let cancel = format!("{}/transforms/encode/jobs/b/cancelJob?api-version=2022-07-01", emu.account_url("east"));
    assert_eq!(emu.post(&cancel, None).await.status, 200);
    emu.wait_for_state("east", "b", "Canceled").await;
}

#[tokio::test]
async fn job_lists_filter_by_state_and_name() {
    let emu = Emulator::start_fast(&["--processing-ms", "600000"]).await;
    three_jobs(&emu).await;
    let list = |filter: &str| {
        let url = reqwest::Url::parse_with_params(
            &format!("{}/transforms/encode/jobs", emu.account_url("east")),
            &[("api-version", "2022-07-01"), ("$filter", filter)],
        )
        .unwrap();
        let emu = &emu;
        async move { emu.get(url.as_str()).await }
    };
    let all = emu.get(&format!("{}/transforms/encode/jobs?api-version=2022-07-01", emu.account_url("east"))).await;
    assert_eq!(names(&all.body), ["a", "b", "c"]);
    assert!(all.body.get("@odata.nextLink").is_none());

    let canceled = list("properties/state eq Microsoft.Media.JobState'canceled'").await;
    assert_eq!(names(&canceled.body), ["b"]);
    assert_eq!(canceled.body["value"][0]["properties"]["state"], "Canceled");
    let not_canceled = list("properties/state ne Microsoft.Media.JobState'Canceled'").await;
    assert_eq!(names(&not_canceled.body), ["a", "c"]);
    let a_or_c = list("name eq 'a' or name eq 'c'").await;
    assert_eq!(names(&a_or_c.body), ["a", "c"]);
    let none = list("name eq 'a' and properties/state eq Microsoft.Media.JobState'Canceled'").await;
    assert_eq!(names(&none.body), Vec::<String>::new());
    let either = list(
        "properties/state eq Microsoft.Media.JobState'Canceled' or name eq 'c' and properties/state ne Microsoft.Media.JobState'Canceled'",
    )
    .await;
    assert_eq!(names(&either.body), ["b", "c"]);
    list("properties/priority eq 'High'").await.assert_arm_error(400, "BadRequest");
    list("properties/state eq Microsoft.Media.JobState'Done'").await.assert_arm_error(400, "BadRequest");
}

#[tokio::test]
async fn job_lists_page_with_a_next_link_that_keeps_the_filter() {
    let emu = Emulator::start_fast(&["--processing-ms", "600000", "--page-size", "2"]).await;
    three_jobs(&emu).await;
    for j in ["d", "e", "f"] {
        assert_eq!(emu.submit("east", "encode", j).await.status, 201);
    }
    let first = reqwest::Url::parse_with_params(
        &format!("{}/transforms/encode/jobs", emu.account_url("east")),
        &[("api-version", "2022-07-01"), ("$filter", "properties/state ne Microsoft.Media.JobState'Canceled'")],
    )
    .unwrap();
    let mut next = Some(first.to_string());
    let mut pages = Vec::new();
    while let Some(url) = next {
        let page = emu.get(&url).await;
        assert_eq!(page.status, 200, "{}", page.body);
        next = page.body["@odata.nextLink"].as_str().map(str::to_string);
        if let Some(link) = &next {
            assert!(link.starts_with(&emu.base), "{link}");
            assert!(link.contains("$skiptoken="), "{link}");
            assert!(link.contains("$filter="), "{link}");
            assert!(!link.contains('+') && !link.contains(' '), "{link}");
        }
        pages.push(names(&page.body));
        assert!(pages.len() <= 5, "paging does not end");
    }
    assert_eq!(pages, vec![vec!["a", "c"], vec!["d", "e"], vec!["f"]]);
}
