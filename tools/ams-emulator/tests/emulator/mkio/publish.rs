//! MK.IO publication: content key policies (PUT creates, PATCH changes), locators with explicit ids and
//! keys, listContentKeys, listPaths with its `drm` map, key delivery, and replicating an asset to a second
//! project by copying its blobs between the projects' storage accounts.

use base64::Engine;
use reqwest::Method;
use serde_json::{json, Value};

use super::{assert_mkio_error, media, start, Client};
use crate::common::{eventually, Emulator};

const KEY_ID: &str = "0c9a3ad6-3a4b-4c5d-9e8f-112233445566";
const LOCATOR_ID: &str = "7f2d1c0b-aaaa-4bbb-8ccc-0123456789ab";

fn policy() -> Value {
    json!({"properties": {"description": "open", "options": [{
        "name": "open",
        "configuration": {"@odata.type": "#Microsoft.Media.ContentKeyPolicyClearKeyConfiguration"},
        "restriction": {"@odata.type": "#Microsoft.Media.ContentKeyPolicyOpenRestriction"}}]}})
}

fn key_value() -> String {
    base64::engine::general_purpose::STANDARD.encode([7u8; 16])
}

fn locator(asset: &str) -> Value {
    json!({"properties": {
        "assetName": asset,
        "streamingPolicyName": "Predefined_ClearKey",
        "defaultContentKeyPolicyName": "ckp",
        "streamingLocatorId": LOCATOR_ID,
        "contentKeys": [{"id": KEY_ID, "labelReferenceInStreamingPolicy": "aesDefaultKey", "value": key_value()}]
    }})
}

/// Encodes `job` in `project` and waits for it.
async fn encoded(emu: &Emulator, c: &Client<'_>, project: &str, job: &str) {
    assert_eq!(c.submit(project, job).await.status, 201);
    emu.wait_for_state(project, job, "Finished").await;
}

#[tokio::test]
async fn a_content_key_policy_is_created_by_put_once_and_changed_by_patch() {
    let emu = start(&["--mkio-duplicate-status", "409"]).await;
    let c = Client::new(&emu).await;
    let created = c.put("east", "contentKeyPolicies/ckp", policy()).await;
    assert_eq!(created.status, 201, "{}", created.body);
    let again = c.put("east", "contentKeyPolicies/ckp", policy()).await;
    assert_mkio_error(&again, 409, "Conflict");
    assert!(again.body["error"]["detail"].as_str().is_some_and(|d| d.contains(" already exists.")));
    let patched = c
        .send(
            Method::PATCH,
            &media(&emu, "east", "contentKeyPolicies/ckp"),
            Some(json!({"properties": {"description": "changed"}})),
        )
        .await;
    assert_eq!(patched.status, 200, "{}", patched.body);
    assert_eq!(patched.body["properties"]["description"], "changed");
    assert_eq!(
        patched.body["properties"]["options"][0]["policyOptionId"],
        created.body["properties"]["options"][0]["policyOptionId"],
        "an option keeps its id"
    );
    let missing = c.send(Method::PATCH, &media(&emu, "east", "contentKeyPolicies/nope"), Some(json!({}))).await;
    assert_mkio_error(&missing, 404, "NotFound");
}

#[tokio::test]
async fn a_locator_with_explicit_keys_lists_them_with_values_and_key_delivery_serves_them() {
    let emu = start(&[]).await;
    let c = Client::new(&emu).await;
    encoded(&emu, &c, "east", "j1").await;
    assert_eq!(c.put("east", "contentKeyPolicies/ckp", policy()).await.status, 201);
    let created = c.put("east", "streamingLocators/loc", locator("out-j1")).await;
    assert_eq!(created.status, 201, "{}", created.body);
    assert_eq!(created.body["properties"]["streamingLocatorId"], LOCATOR_ID);
    assert!(created.body["properties"]["contentKeys"][0].get("value").is_none(), "values only through listContentKeys");
    let dup = c.put("east", "streamingLocators/loc", locator("out-j1")).await;
    assert_mkio_error(&dup, 400, "BadRequest");
    let keys = c.post("east", "streamingLocators/loc/listContentKeys", None).await;
    assert_eq!(keys.status, 200, "{}", keys.body);
    assert_eq!(keys.body["contentKeys"][0]["id"], KEY_ID);
    assert_eq!(keys.body["contentKeys"][0]["value"], key_value());
    assert_eq!(keys.body["contentKeys"][0]["type"], "EnvelopeEncryption");
    let paths = c.post("east", "streamingLocators/loc/listPaths", None).await;
    assert_eq!(paths.status, 200, "{}", paths.body);
    let hls = &paths.body["streamingPaths"][0];
    assert_eq!(hls["encryptionScheme"], "EnvelopeEncryption");
    assert_eq!(hls["paths"][0], format!("/{LOCATOR_ID}/video.ism/manifest(format=m3u8-aapl,encryption=cbc)"));
    let licence = paths.body["drm"]["clearKey"]["licenseAcquisitionUrl"].as_str().expect("drm map").to_string();
    let bytes = emu.http.get(&licence).send().await.expect("key delivery").bytes().await.expect("key");
    assert_eq!(bytes.as_ref(), [7u8; 16]);
    let listed = c.get("east", "streamingLocators").await;
    assert_eq!(listed.body["value"].as_array().map(Vec::len), Some(1));
    let policies = c.get("east", "streamingPolicies").await;
    assert!(
        policies.body["supplemental"]["pagination"]["total"].as_u64().is_some_and(|n| n >= 6),
        "predefined ones are listed"
    );
}

/// `{blobUrl}/{container}` and the configured SAS of `project`.
async fn storage(c: &Client<'_>, project: &str) -> (String, String) {
    let view = c.view(project).await;
    (
        view["storage"]["blobUrl"].as_str().expect("blobUrl").to_string(),
        view["storage"]["sas"].as_str().expect("sas").to_string(),
    )
}

fn blob_names(xml: &str) -> Vec<String> {
    xml.split("<Name>").skip(1).filter_map(|s| s.split("</Name>").next()).map(str::to_string).collect()
}

#[tokio::test]
async fn an_asset_is_replicated_by_copying_blobs_between_projects_and_published_with_the_same_ids() {
    let emu = start(&[]).await;
    let c = Client::new(&emu).await;
    encoded(&emu, &c, "east", "j1").await;
    let source = c.get("east", "assets/out-j1").await;
    let container = source.body["properties"]["container"].as_str().expect("container").to_string();
    let (east_url, east_sas) = storage(&c, "east").await;
    let (west_url, west_sas) = storage(&c, "west").await;

    // The client creates the target container and copies every blob server-side with its configured SAS.
    let target = "replica-j1";
    let created =
        emu.http.put(format!("{west_url}/{target}{west_sas}&restype=container")).send().await.expect("create");
    assert_eq!(created.status(), 201);
    let list = emu
        .http
        .get(format!("{east_url}/{container}{east_sas}&restype=container&comp=list"))
        .send()
        .await
        .expect("list")
        .text()
        .await
        .expect("xml");
    let names = blob_names(&list);
    assert!(names.contains(&"video.ism".to_string()), "{list}");
    for name in &names {
        let copy = emu
            .http
            .put(format!("{west_url}/{target}/{name}{west_sas}"))
            .header("x-ms-copy-source", format!("{east_url}/{container}/{name}{east_sas}"))
            .send()
            .await
            .expect("copy");
        assert_eq!(copy.status(), 202, "{name}");
    }
    eventually("the copies land", || async {
        let all: Value = emu.get(&format!("{}/_emulator/accounts", emu.base)).await.body;
        let west = all.as_array().and_then(|a| a.iter().find(|x| x["name"] == "west").cloned()).unwrap_or_default();
        west["copies"]["copiesCompleted"] == names.len()
    })
    .await;

    // Then the asset in the target project points at the copied container, and the locator keeps its ids.
    let asset = c
        .put("west", "assets/out-j1", json!({"properties": {"storageAccountName": "weststorage", "container": target}}))
        .await;
    assert_eq!(asset.status, 201, "{}", asset.body);
    let mut paths = Vec::new();
    for project in ["east", "west"] {
        assert_eq!(c.put(project, "contentKeyPolicies/ckp", policy()).await.status, 201);
        let l = c.put(project, "streamingLocators/loc", locator("out-j1")).await;
        assert_eq!(l.status, 201, "{project}: {}", l.body);
        let mut p = c.post(project, "streamingLocators/loc/listPaths", None).await.body;
        p.as_object_mut().map(|m| m.remove("drm"));
        paths.push(p);
        let keys = c.post(project, "streamingLocators/loc/listContentKeys", None).await;
        assert_eq!(keys.body["contentKeys"][0]["value"], key_value());
    }
    assert_eq!(paths[0], paths[1], "same locator id over the same blobs gives the same paths");
    assert!(paths[0]["streamingPaths"].as_array().is_some_and(|p| !p.is_empty()));
}
