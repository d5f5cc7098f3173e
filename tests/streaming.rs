//! Video-on-demand publication across regions against the emulator: a finished job is published where it
//! was encoded and then in the other region with the same locator id, content key ids and values and
//! paths; drifted definitions are repaired by the sweep; a region that was down catches up without
//! copying anything twice; and no content key value ever reaches a table row or a log line.
//!
//! Everything is checked through the emulator's own ARM, Blob and key delivery endpoints, not through the
//! product's client. Every account is on the provider `TEST_PROVIDER` names (`ams` when unset).

mod support;

use anyhow::{bail, ensure, Context};
use base64::Engine;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::time::Duration;
use support::{eventually, job_body, provider_options, Stack, StackOptions};
use testkit::stack::{Logs, TEST_TOKEN_SIGNING_KEY};

const LIMIT: Duration = Duration::from_secs(60);
const A: &str = "amswesteurope";
const B: &str = "amsnortheurope";

fn publishing() -> StackOptions {
    provider_options().with_publication()
}

fn on_mkio(stack: &Stack) -> bool {
    stack.options.provider_of(A) == "mkio"
}

/// One call of an account's media API in the emulator: status and JSON body (`Null` when empty). `path` is
/// written as for ARM; MK.IO takes the same path without the api-version.
async fn arm(
    stack: &Stack,
    method: reqwest::Method,
    account: &str,
    path: &str,
    body: Option<Value>,
) -> anyhow::Result<(u16, Value)> {
    let path = if stack.options.provider_of(account) == "mkio" { path.split('?').next().unwrap_or(path) } else { path };
    let (status, value) = stack.media_call(method, account, path, body.as_ref()).await?;
    Ok((status.as_u16(), value))
}

/// The preset the encode transform has in the definitions for the suite's provider.
fn encode_preset(stack: &Stack) -> &'static str {
    if on_mkio(stack) {
        "H264MultipleBitrate1080p"
    } else {
        "AdaptiveStreaming"
    }
}

/// A SAS URL of an asset's container: from listContainerSas on Media Services, from the project's storage
/// and the configured SAS on MK.IO (which has no listContainerSas).
async fn container_url(stack: &Stack, account: &str, asset: &str) -> anyhow::Result<url::Url> {
    if let (Some(mkio), true) = (&stack.mkio, stack.options.provider_of(account) == "mkio") {
        let live = arm_ok(stack, reqwest::Method::GET, account, &format!("assets/{asset}"), None).await?;
        let container = live["properties"]["container"].as_str().context("no container")?;
        let (_, _, blob_url, sas) = mkio.storages.iter().find(|s| s.0 == account).context("no storage")?;
        return Ok(url::Url::parse(&format!("{blob_url}/{container}{sas}"))?);
    }
    let expiry = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let sas = arm_ok(
        stack,
        reqwest::Method::POST,
        account,
        &format!("assets/{asset}/listContainerSas?api-version=2023-01-01"),
        Some(json!({"permissions": "Read", "expiryTime": expiry})),
    )
    .await?;
    Ok(url::Url::parse(sas["assetContainerSasUrls"][0].as_str().context("no SAS URL")?)?)
}

async fn arm_ok(
    stack: &Stack,
    method: reqwest::Method,
    account: &str,
    path: &str,
    body: Option<Value>,
) -> anyhow::Result<Value> {
    let (status, value) = arm(stack, method.clone(), account, path, body).await?;
    ensure!((200..300).contains(&status), "{method} {account}/{path} answered {status}: {value}");
    Ok(value)
}

/// The job once it is Finished.
async fn finished(stack: &Stack, id: &str) -> anyhow::Result<Value> {
    eventually(LIMIT, "the job to finish", || async {
        let job = stack.get_job(id).await?.1;
        Ok((job["state"] == "Finished").then_some(job))
    })
    .await
}

/// The job's publication in `account`, as GetJob shows it.
fn publication<'a>(job: &'a Value, account: &str) -> &'a Value {
    job["publications"].as_array().and_then(|p| p.iter().find(|x| x["account"] == account)).unwrap_or(&Value::Null)
}

/// Runs sweeps until every region's publication of the job is Published; the job as GetJob shows it then.
async fn published_everywhere(stack: &Stack, id: &str) -> anyhow::Result<Value> {
    eventually(LIMIT, "the job to be published in every region", || async {
        ensure!(stack.sweep().await?, "the sweep failed");
        let job = stack.get_job(id).await?.1;
        let states: Vec<&Value> = [A, B].iter().map(|a| &publication(&job, a)["state"]).collect();
        ensure!(!states.iter().any(|s| *s == "Conflict"), "a publication is in Conflict: {job}");
        Ok(states.iter().all(|s| *s == "Published").then_some(job))
    })
    .await
}

/// A container's blobs, name to bytes, read with a SAS URL of the container.
async fn blobs(stack: &Stack, account: &str, asset: &str) -> anyhow::Result<Vec<(String, Vec<u8>)>> {
    let container = container_url(stack, account, asset).await?;
    let mut list = container.clone();
    list.query_pairs_mut().append_pair("restype", "container").append_pair("comp", "list");
    let xml = stack.http.get(list).send().await?.text().await?;
    let mut found = Vec::new();
    for part in xml.split("<Name>").skip(1) {
        let name = part.split("</Name>").next().unwrap_or_default().replace("&amp;", "&");
        let mut url = container.clone();
        url.path_segments_mut().map_err(|_| anyhow::anyhow!("not a base URL"))?.extend(name.split('/'));
        let response = stack.http.get(url).send().await?;
        ensure!(response.status() == 200, "reading {name} from {account} answered {}", response.status());
        found.push((name, response.bytes().await?.to_vec()));
    }
    found.sort();
    Ok(found)
}

/// The base64 content key values of a locator, by key id.
async fn key_values(stack: &Stack, account: &str, locator: &str) -> anyhow::Result<Vec<(String, String)>> {
    let keys = arm_ok(
        stack,
        reqwest::Method::POST,
        account,
        &format!("streamingLocators/{locator}/listContentKeys?api-version=2023-01-01"),
        None,
    )
    .await?;
    let mut found: Vec<(String, String)> = keys["contentKeys"]
        .as_array()
        .context("no contentKeys")?
        .iter()
        .map(|k| (k["id"].as_str().unwrap_or_default().to_owned(), k["value"].as_str().unwrap_or_default().to_owned()))
        .collect();
    found.sort();
    Ok(found)
}

/// Syncs the definitions into every account, submits a job and waits for it to finish: its id, the account
/// that encoded it and its (single) output asset, which is also the locator name.
async fn finish_a_job(stack: &Stack, id: &str) -> anyhow::Result<(String, String)> {
    ensure!(stack.sweep().await?, "the first sweep failed");
    let (status, body, _) = stack.submit(&job_body(id)).await?;
    ensure!(status == 202, "SubmitJob answered {status}: {body}");
    let job = finished(stack, id).await?;
    let source = job["account"].as_str().context("no account")?.to_owned();
    let asset = job["outputs"][0].as_str().context("no output")?.to_owned();
    Ok((source, asset))
}

#[tokio::test]
async fn a_job_finished_in_one_region_is_published_in_both_with_the_same_ids_keys_paths_and_blobs() -> anyhow::Result<()>
{
    let stack = Stack::start(publishing()).await?;
    let (source, asset) = finish_a_job(&stack, "vod-both").await?;
    let job = published_everywhere(&stack, "vod-both").await?;
    assert_eq!(publication(&job, &source)["role"], "source");

    let mut locators = Vec::new();
    let mut paths = Vec::new();
    let mut keys = Vec::new();
    for account in [A, B] {
        let locator = arm_ok(
            &stack,
            reqwest::Method::GET,
            account,
            &format!("streamingLocators/{asset}?api-version=2023-01-01"),
            None,
        )
        .await?;
        locators.push(locator["properties"].clone());
        paths.push(
            arm_ok(
                &stack,
                reqwest::Method::POST,
                account,
                &format!("streamingLocators/{asset}/listPaths?api-version=2023-01-01"),
                None,
            )
            .await?,
        );
        keys.push(key_values(&stack, account, &asset).await?);
    }
    assert_eq!(locators[0]["streamingLocatorId"], locators[1]["streamingLocatorId"]);
    assert_eq!(locators[0]["assetName"], locators[1]["assetName"]);
    assert_eq!(locators[0]["streamingPolicyName"], locators[1]["streamingPolicyName"]);
    assert!(!keys[0].is_empty(), "the default streaming policy encrypts, so the locator has content keys");
    assert_eq!(keys[0], keys[1], "the same content key ids and values in both regions");
    // MK.IO adds a `drm` map naming each region's own licence server; the streaming policy's custom key
    // acquisition URL (TRAFFIC_MANAGER_HOST) is what players use across regions, so it is not compared.
    for answer in &mut paths {
        if let Some(map) = answer.as_object_mut() {
            map.remove("drm");
        }
    }
    assert_eq!(paths[0], paths[1], "listPaths is identical in both regions");
    assert!(paths[0]["streamingPaths"].as_array().is_some_and(|p| !p.is_empty()), "{}", paths[0]);

    // GetJob shows the paths recorded at publication, the same in both regions, without asking ARM.
    let shown: Vec<&Value> = [A, B].iter().map(|a| &publication(&job, a)["locators"][0]["streamingPaths"]).collect();
    assert_eq!(shown[0], shown[1]);
    assert_eq!(
        publication(&job, A)["locators"][0]["contentKeyIds"],
        json!(keys[0].iter().map(|(id, _)| id).collect::<Vec<_>>())
    );

    // Key delivery in either region hands out the same bytes for the same key id.
    let accounts = stack.emulator_accounts().await?;
    for (id, value) in &keys[0] {
        let mut delivered = BTreeSet::new();
        for account in &accounts {
            let url = format!("{}?kid={id}", account["keyDeliveryUrl"].as_str().context("no keyDeliveryUrl")?);
            let response = stack.http.get(url).send().await?;
            ensure!(response.status() == 200, "key delivery answered {}", response.status());
            delivered.insert(response.bytes().await?.to_vec());
        }
        assert_eq!(delivered.len(), 1, "both regions deliver the same key");
        let expected = base64::engine::general_purpose::STANDARD.decode(value)?;
        assert_eq!(delivered.into_iter().next(), Some(expected));
    }

    // Every blob is in the other region with identical content.
    let (a_blobs, b_blobs) = (blobs(&stack, A, &asset).await?, blobs(&stack, B, &asset).await?);
    assert!(a_blobs.len() >= 5, "the encode wrote its outputs: {:?}", a_blobs.iter().map(|b| &b.0).collect::<Vec<_>>());
    assert_eq!(a_blobs, b_blobs);
    Ok(())
}

#[tokio::test]
async fn definitions_that_drift_in_one_account_are_repaired_by_the_next_sweep() -> anyhow::Result<()> {
    let stack = Stack::start(publishing()).await?;
    ensure!(stack.sweep().await?, "the first sweep failed");
    let ckp = "contentKeyPolicies/vod-token";
    let with_secrets = format!("{ckp}/getPolicyPropertiesWithSecrets?api-version=2023-01-01");
    let key_of = |v: &Value| v["options"][0]["restriction"]["primaryVerificationKey"]["keyValue"].clone();
    let before = arm_ok(&stack, reqwest::Method::POST, B, &with_secrets, None).await?;
    assert_eq!(key_of(&before), json!(TEST_TOKEN_SIGNING_KEY), "the key comes from the setting");

    // Someone deletes the content key policy in B, changes the transform in A and deletes a streaming policy
    // in B; and replaces a streaming policy in A with a different one, which cannot be repaired in place.
    arm_ok(&stack, reqwest::Method::DELETE, B, &format!("{ckp}?api-version=2023-01-01"), None).await?;
    let other = json!({"properties": {"outputs": [{"preset": {"@odata.type": "#Microsoft.Media.BuiltInStandardEncoderPreset", "presetName": "H264SingleBitrate720p"}}]}});
    arm_ok(&stack, reqwest::Method::PUT, A, "transforms/encode?api-version=2022-07-01", Some(other)).await?;
    arm_ok(&stack, reqwest::Method::DELETE, B, "streamingPolicies/vod-clear-v1?api-version=2023-01-01", None).await?;
    arm_ok(&stack, reqwest::Method::DELETE, A, "streamingPolicies/vod-clear-v1?api-version=2023-01-01", None).await?;
    let drifted = json!({"properties": {"noEncryption": {"enabledProtocols": {"download": false, "dash": true, "hls": true, "smoothStreaming": true}}}});
    arm_ok(&stack, reqwest::Method::PUT, A, "streamingPolicies/vod-clear-v1?api-version=2023-01-01", Some(drifted))
        .await?;

    ensure!(stack.sweep().await?, "the repairing sweep failed");

    let after = arm_ok(&stack, reqwest::Method::POST, B, &with_secrets, None).await?;
    assert_eq!(key_of(&after), json!(TEST_TOKEN_SIGNING_KEY));
    assert_eq!(after["options"][0]["restriction"]["issuer"], before["options"][0]["restriction"]["issuer"]);
    let transform = arm_ok(&stack, reqwest::Method::GET, A, "transforms/encode?api-version=2022-07-01", None).await?;
    assert_eq!(transform["properties"]["outputs"][0]["preset"]["presetName"], encode_preset(&stack));
    let recreated =
        arm_ok(&stack, reqwest::Method::GET, B, "streamingPolicies/vod-clear-v1?api-version=2023-01-01", None).await?;
    assert_eq!(recreated["properties"]["noEncryption"]["enabledProtocols"]["download"], true);

    // The changed streaming policy is reported with what to do, and left as it is.
    let kept =
        arm_ok(&stack, reqwest::Method::GET, A, "streamingPolicies/vod-clear-v1?api-version=2023-01-01", None).await?;
    assert_eq!(kept["properties"]["noEncryption"]["enabledProtocols"]["download"], false);
    let drift: Vec<Value> = stack.alerts().into_iter().filter(|a| a["type"] == "PolicyDrift").collect();
    assert!(
        drift.iter().any(|a| a["account"] == A
            && a["reason"].as_str().is_some_and(|r| r.contains("vod-clear-v1") && r.contains("download"))),
        "{drift:?}"
    );
    assert!(drift.iter().all(|a| a["action"].as_str().is_some_and(|t| t.contains("delete"))), "{drift:?}");
    Ok(())
}

#[tokio::test]
async fn a_region_that_was_down_during_publication_catches_up_without_copying_anything_twice() -> anyhow::Result<()> {
    let stack = Stack::start(publishing()).await?;
    ensure!(stack.sweep().await?, "the first sweep failed");
    stack.fault(B, json!({"mode": "outage"})).await?;
    let (status, body, _) = stack.submit(&job_body("vod-outage")).await?;
    ensure!(status == 202, "SubmitJob answered {status}: {body}");
    let job = finished(&stack, "vod-outage").await?;
    assert_eq!(job["account"], A, "B is down, so the job ran in A");
    let asset = job["outputs"][0].as_str().context("no output")?.to_owned();

    // A is published at once (by the Finished event); B's tries fail and wait for their retry.
    let job = eventually(LIMIT, "A to be published and B to have failed", || async {
        ensure!(stack.sweep().await?, "the sweep failed");
        let job = stack.get_job("vod-outage").await?.1;
        let b = publication(&job, B);
        Ok((publication(&job, A)["state"] == "Published" && b["failures"].as_u64().is_some_and(|f| f >= 2))
            .then_some(job))
    })
    .await?;
    assert_ne!(publication(&job, B)["state"], "Published");
    assert!(publication(&job, B)["lastError"].as_str().is_some_and(|e| !e.is_empty()), "{job}");

    stack.fault(B, json!({"mode": "healthy"})).await?;
    let job = published_everywhere(&stack, "vod-outage").await?;
    assert_eq!(publication(&job, B)["state"], "Published");
    for _ in 0..3 {
        ensure!(stack.sweep().await?, "a later sweep failed");
    }

    let blob_count = blobs(&stack, A, &asset).await?.len() as u64;
    let b = stack.emulator_account(B).await?;
    assert_eq!(b["copies"]["copies"], json!(blob_count), "each blob copied exactly once: {}", b["copies"]);
    assert_eq!(b["copies"]["copiesCompleted"], json!(blob_count));
    assert_eq!(stack.emulator_account(A).await?["copies"]["copies"], json!(0), "nothing is copied into the source");
    assert_eq!(blobs(&stack, A, &asset).await?, blobs(&stack, B, &asset).await?);
    Ok(())
}

#[tokio::test]
async fn a_content_key_value_never_reaches_a_table_row_or_a_log_line() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let log = dir.path().join("stack.log");
    let stack = Stack::start(StackOptions { logs: Logs::file(&log)?, ..publishing() }).await?;
    let (_, asset) = finish_a_job(&stack, "vod-secret").await?;
    published_everywhere(&stack, "vod-secret").await?;

    let mut values = BTreeSet::new();
    for account in [A, B] {
        values.extend(key_values(&stack, account, &asset).await?.into_iter().map(|(_, v)| v));
    }
    ensure!(!values.is_empty(), "the locator has content keys");

    let service = tables::TableService::from_connection_string(&stack.azurite.connection_string(), stack.http.clone())?;
    let mut rows = 0;
    for table in ["Jobs", "Attempts", "Health", "Publications"] {
        let found: Vec<tables::Entity<Value>> =
            service.table(&format!("{}{table}", stack.prefix)).query("PartitionKey ne ''").await?;
        for row in &found {
            let text = row.value.to_string();
            for value in &values {
                if text.contains(value.as_str()) {
                    bail!("a content key value is stored in {table}: {text}");
                }
            }
        }
        rows += found.len();
    }
    ensure!(rows > 0, "the tables hold rows");

    let text = std::fs::read_to_string(&log)?;
    ensure!(text.contains("published for streaming"), "the log file holds the handler's lines");
    for value in &values {
        ensure!(!text.contains(value.as_str()), "a content key value is in the logs");
    }
    Ok(())
}

#[tokio::test]
async fn a_locator_name_already_used_for_another_asset_is_reported_as_a_conflict_and_left_alone() -> anyhow::Result<()>
{
    let stack = Stack::start(publishing()).await?;
    ensure!(stack.sweep().await?, "the first sweep failed");
    // B is down while the job runs, so it runs in A and B's publication waits for the next sweeps.
    stack.fault(B, json!({"mode": "outage"})).await?;
    let (status, body, _) = stack.submit(&job_body("vod-conflict")).await?;
    ensure!(status == 202, "SubmitJob answered {status}: {body}");
    let asset = finished(&stack, "vod-conflict").await?["outputs"][0].as_str().context("no output")?.to_owned();
    stack.fault(B, json!({"mode": "healthy"})).await?;

    // Meanwhile someone created a locator of that name in B for another asset.
    // An MK.IO asset is a pointer into a registered storage, which it must name.
    let stray_asset = match stack.mkio.as_ref().and_then(|m| m.storages.iter().find(|s| s.0 == B)) {
        Some((_, storage, _, _)) if on_mkio(&stack) => json!({"properties": {"storageAccountName": storage}}),
        _ => json!({"properties": {}}),
    };
    arm_ok(&stack, reqwest::Method::PUT, B, "assets/stray?api-version=2023-01-01", Some(stray_asset)).await?;
    let stray = json!({"properties": {"assetName": "stray", "streamingPolicyName": "Predefined_ClearStreamingOnly"}});
    let path = format!("streamingLocators/{asset}?api-version=2023-01-01");
    arm_ok(&stack, reqwest::Method::PUT, B, &path, Some(stray)).await?;

    let job = eventually(LIMIT, "B's publication to be in conflict", || async {
        ensure!(stack.sweep().await?, "the sweep failed");
        let job = stack.get_job("vod-conflict").await?.1;
        Ok((publication(&job, B)["state"] == "Conflict").then_some(job))
    })
    .await?;
    assert_eq!(publication(&job, A)["state"], "Published", "A is not held up by B");
    assert!(publication(&job, B)["lastError"].as_str().is_some_and(|e| e.contains("stray")), "{job}");
    let locator = arm_ok(&stack, reqwest::Method::GET, B, &path, None).await?;
    assert_eq!(locator["properties"]["assetName"], "stray", "the existing locator is not overwritten");
    let conflicts = stack.wait_alerts("PublicationConflict", |_| true).await?;
    assert_eq!(conflicts.len(), 1, "{conflicts:?}");
    assert_eq!((&conflicts[0]["account"], &conflicts[0]["jobId"]), (&json!(B), &json!("vod-conflict")));
    Ok(())
}
