//! VOD publication: job outputs in storage, streaming policies, content key
//! policies, streaming locators, paths and key delivery.

use base64::Engine;
use reqwest::Method;
use serde_json::{json, Value};

use crate::blob::{account_entry, blob_url, container_sas, in_hours, list_url, raw};
use crate::common::Emulator;

const FILES: [&str; 5] = ["video_1000kbps.mp4", "video_2000kbps.mp4", "video.ism", "video.ismc", "thumbnail.jpg"];

fn url(emu: &Emulator, account: &str, rest: &str) -> String {
    format!("{}/{rest}?api-version=2023-01-01", emu.account_url(account))
}

/// Runs the same job in `account` and returns the output files' bytes.
async fn encode(emu: &Emulator, account: &str, job: &str) -> Vec<Vec<u8>> {
    assert_eq!(emu.submit(account, "encode", job).await.status, 201);
    emu.wait_for_state(account, job, "Finished").await;
    let sas = container_sas(emu, account, &format!("out-{job}"), "Read", &in_hours(1)).await;
    let list = raw(emu, Method::GET, &list_url(&sas[0]), &[], None).await.text();
    let mut files = Vec::new();
    for f in FILES {
        assert!(list.contains(&format!("<Name>{f}</Name>")), "{f} in {list}");
        let got = raw(emu, Method::GET, &blob_url(&sas[0], f), &[], None).await;
        assert_eq!(got.status, 200);
        files.push(got.body);
    }
    files
}

#[tokio::test]
async fn the_same_encode_in_two_regions_writes_identical_outputs() {
    let emu = Emulator::start_fast(&[]).await;
    let east = encode(&emu, "east", "job-a").await;
    let west = encode(&emu, "west", "job-b").await;
    assert_eq!(east, west, "outputs depend on input and preset only");
    assert!(east[0].len() > 1000 && east[0][4..8] == *b"ftyp");
    assert!(String::from_utf8_lossy(&east[2]).contains("video_2000kbps.mp4"));
}

#[tokio::test]
async fn clear_locators_list_the_same_paths_in_every_account_and_serve_downloads() {
    let emu = Emulator::start_fast(&[]).await;
    encode(&emu, "east", "job-1").await;
    encode(&emu, "west", "job-1").await;
    let id = "90000000-0000-0000-0000-00000000000A";
    let body = json!({"properties": {"assetName": "out-job-1", "streamingPolicyName": "Predefined_DownloadAndClearStreaming",
                                     "streamingLocatorId": id}});
    let mut paths = Vec::new();
    for account in ["east", "west"] {
        let r = emu.put(&url(&emu, account, "streamingLocators/loc"), body.clone()).await;
        assert_eq!(r.status, 201, "{}", r.body);
        let p = &r.body["properties"];
        assert_eq!(p["streamingLocatorId"], id.to_lowercase(), "echoed lowercase");
        assert_eq!(p["endTime"], "9999-12-31T23:59:59.9999999Z");
        assert_eq!(p["contentKeys"], json!([]));
        assert_eq!(r.body["type"], "Microsoft.Media/mediaservices/streamingLocators");
        let listed = emu.post(&url(&emu, account, "streamingLocators/loc/listPaths"), None).await;
        assert_eq!(listed.status, 200);
        paths.push(listed.body);
    }
    assert_eq!(paths[0], paths[1]);
    let lid = id.to_lowercase();
    assert_eq!(
        paths[0]["streamingPaths"],
        json!([
            {"streamingProtocol": "Hls", "encryptionScheme": "NoEncryption", "paths": [format!("/{lid}/video.ism/manifest(format=m3u8-aapl)")]},
            {"streamingProtocol": "Dash", "encryptionScheme": "NoEncryption", "paths": [format!("/{lid}/video.ism/manifest(format=mpd-time-csf)")]},
            {"streamingProtocol": "SmoothStreaming", "encryptionScheme": "NoEncryption", "paths": [format!("/{lid}/video.ism/manifest")]}
        ])
    );
    assert_eq!(
        paths[0]["downloadPaths"],
        json!([
            format!("/{lid}/thumbnail.jpg"),
            format!("/{lid}/video_1000kbps.mp4"),
            format!("/{lid}/video_2000kbps.mp4")
        ])
    );

    // The emulated streaming endpoint serves download paths.
    let entry = account_entry(&emu, "west").await;
    assert_eq!(entry["streamingHost"], "west-westus.streaming.media.azure.net");
    let streaming_url = entry["streamingUrl"].as_str().unwrap();
    let got = raw(&emu, Method::GET, &format!("{streaming_url}/{lid}/video_1000kbps.mp4"), &[], None).await;
    assert_eq!(got.status, 200);
    assert_eq!(&got.body[4..8], b"ftyp");

    // A streaming-only policy has no download paths.
    let clear =
        json!({"properties": {"assetName": "out-job-1", "streamingPolicyName": "Predefined_ClearStreamingOnly"}});
    let r = emu.put(&url(&emu, "east", "streamingLocators/clear"), clear).await;
    assert_eq!(r.status, 201);
    let generated = r.body["properties"]["streamingLocatorId"].as_str().unwrap();
    assert_eq!(generated, generated.to_lowercase());
    let listed = emu.post(&url(&emu, "east", "streamingLocators/clear/listPaths"), None).await.body;
    assert_eq!(listed["downloadPaths"], json!([]));
    assert_eq!(listed["streamingPaths"].as_array().unwrap().len(), 3);
}

#[tokio::test]
async fn locators_are_created_once_and_validate_their_references() {
    let emu = Emulator::start_fast(&[]).await;
    emu.create_asset("east", "a").await;
    let loc = |name: &str| url(&emu, "east", &format!("streamingLocators/{name}"));
    let body = |asset: &str, policy: &str| json!({"properties": {"assetName": asset, "streamingPolicyName": policy}});

    assert_eq!(emu.put(&loc("l1"), body("a", "Predefined_ClearStreamingOnly")).await.status, 201);
    emu.put(&loc("L1"), body("a", "Predefined_ClearStreamingOnly")).await.assert_arm_error(409, "Conflict");
    emu.put(&loc("l2"), body("ghost", "Predefined_ClearStreamingOnly")).await.assert_arm_error(404, "NotFound");
    emu.put(&loc("l3"), body("a", "noSuchPolicy")).await.assert_arm_error(404, "NotFound");
    emu.put(&loc("l4"), json!({"properties": {"streamingPolicyName": "Predefined_ClearKey"}}))
        .await
        .assert_arm_error(400, "BadRequest");
    emu.put(&loc("l5"), json!({"properties": {"assetName": "a"}})).await.assert_arm_error(400, "BadRequest");
    let mut bad_id = body("a", "Predefined_ClearStreamingOnly");
    bad_id["properties"]["streamingLocatorId"] = json!("not-a-guid");
    emu.put(&loc("l6"), bad_id).await.assert_arm_error(400, "BadRequest");
    let mut keys_on_clear = body("a", "Predefined_ClearStreamingOnly");
    keys_on_clear["properties"]["contentKeys"] = json!([{"id": "60000000-0000-0000-0000-000000000001"}]);
    emu.put(&loc("l7"), keys_on_clear).await.assert_arm_error(400, "BadRequest");

    let got = emu.get(&loc("L1")).await;
    assert_eq!(got.status, 200);
    assert_eq!(got.body["name"], "l1");
    let list = emu.get(&url(&emu, "east", "streamingLocators")).await;
    assert_eq!(list.body["value"].as_array().unwrap().len(), 1);
    let by_asset = emu.post(&url(&emu, "east", "assets/a/listStreamingLocators"), None).await;
    assert_eq!(by_asset.body["streamingLocators"][0]["name"], "l1");
    assert_eq!(emu.send(Method::DELETE, &loc("l1"), None).await.status, 200);
    assert_eq!(emu.send(Method::DELETE, &loc("l1"), None).await.status, 204);
    emu.get(&loc("l1")).await.assert_arm_error(404, "NotFound");
}

fn token_policy() -> Value {
    json!({"properties": {"description": "ArmPolicyDescription", "options": [{
        "name": "ClearKeyOption",
        "configuration": {"@odata.type": "#Microsoft.Media.ContentKeyPolicyClearKeyConfiguration"},
        "restriction": {
            "@odata.type": "#Microsoft.Media.ContentKeyPolicyTokenRestriction",
            "issuer": "urn:issuer", "audience": "urn:audience",
            "primaryVerificationKey": {"@odata.type": "#Microsoft.Media.ContentKeyPolicySymmetricTokenKey",
                                       "keyValue": "AAAAAAAAAAAAAAAAAAAAAA=="},
            "restrictionTokenType": "Swt"}}]}})
}

#[tokio::test]
async fn content_key_policies_hide_secrets_unless_asked_for_them() {
    let emu = Emulator::start_fast(&[]).await;
    let ckp = url(&emu, "east", "contentKeyPolicies/PolicyWithClearKeyOptionAndTokenRestriction");
    let created = emu.put(&ckp, token_policy()).await;
    assert_eq!(created.status, 201, "{}", created.body);
    let p = &created.body["properties"];
    assert!(p["policyId"].is_string() && p["created"].is_string() && p["lastModified"].is_string());
    let option = &p["options"][0];
    assert!(option["policyOptionId"].is_string());
    assert_eq!(option["restriction"]["primaryVerificationKey"]["keyValue"], "");
    assert_eq!(option["restriction"]["alternateVerificationKeys"], json!([]));
    assert_eq!(option["restriction"]["requiredClaims"], json!([]));

    let updated = emu.put(&ckp, token_policy()).await;
    assert_eq!(updated.status, 200);
    assert_eq!(updated.body["properties"]["policyId"], p["policyId"]);
    assert_eq!(updated.body["properties"]["options"][0]["policyOptionId"], option["policyOptionId"]);

    let secrets = emu.post(&ckp.replace("?api", "/getPolicyPropertiesWithSecrets?api"), None).await;
    assert_eq!(secrets.status, 200);
    assert_eq!(
        secrets.body["options"][0]["restriction"]["primaryVerificationKey"]["keyValue"],
        "AAAAAAAAAAAAAAAAAAAAAA=="
    );

    let mut no_options = token_policy();
    no_options["properties"]["options"] = json!([]);
    emu.put(&url(&emu, "east", "contentKeyPolicies/empty"), no_options).await.assert_arm_error(400, "BadRequest");
    assert_eq!(emu.get(&url(&emu, "east", "contentKeyPolicies")).await.body["value"].as_array().unwrap().len(), 1);
    assert_eq!(emu.send(Method::DELETE, &ckp, None).await.status, 200);
    emu.get(&ckp).await.assert_arm_error(404, "NotFound");
}

#[tokio::test]
async fn envelope_locators_keep_key_values_for_list_content_keys_and_key_delivery() {
    let emu = Emulator::start_fast(&[]).await;
    encode(&emu, "east", "job-1").await;
    let ckp_name = "PolicyWithClearKeyOptionAndTokenRestriction";
    assert_eq!(
        emu.put(&url(&emu, "east", &format!("contentKeyPolicies/{ckp_name}")), token_policy()).await.status,
        201
    );
    let policy = json!({"properties": {
        "defaultContentKeyPolicyName": ckp_name,
        "envelopeEncryption": {
            "enabledProtocols": {"download": false, "dash": true, "hls": true, "smoothStreaming": true},
            "contentKeys": {"defaultKey": {"label": "aesDefaultKey"}},
            "customKeyAcquisitionUrlTemplate": "https://contoso.com/{AssetAlternativeId}/envelope/{ContentKeyId}"}}});
    let sp = url(&emu, "east", "streamingPolicies/envelope");
    let created = emu.put(&sp, policy.clone()).await;
    assert_eq!(created.status, 201, "{}", created.body);
    assert_eq!(created.body["properties"]["envelopeEncryption"]["clearTracks"], json!([]));
    assert!(created.body["properties"]["created"].is_string());
    emu.put(&sp, policy).await.assert_arm_error(409, "Conflict");
    emu.put(&url(&emu, "east", "streamingPolicies/none"), json!({"properties": {}}))
        .await
        .assert_arm_error(400, "BadRequest");
    assert_eq!(emu.get(&url(&emu, "east", "streamingPolicies/Predefined_ClearKey")).await.status, 200);

    let key_id = "60000000-0000-0000-0000-000000000001";
    let value = "1UqLohAfWsEGkULYxHjYZg==";
    let body = json!({"properties": {"assetName": "out-job-1", "streamingPolicyName": "envelope", "contentKeys": [
        {"labelReferenceInStreamingPolicy": "aesDefaultKey", "id": key_id, "value": value}]}});
    let loc = emu.put(&url(&emu, "east", "streamingLocators/secure"), body).await;
    assert_eq!(loc.status, 201, "{}", loc.body);
    assert_eq!(
        loc.body["properties"]["contentKeys"],
        json!([{"id": key_id, "type": "EnvelopeEncryption", "labelReferenceInStreamingPolicy": "aesDefaultKey",
                "policyName": ckp_name, "tracks": []}]),
        "no value in the response"
    );
    let keys = emu.post(&url(&emu, "east", "streamingLocators/secure/listContentKeys"), None).await;
    assert_eq!(keys.body["contentKeys"][0]["value"], value);

    let lid = loc.body["properties"]["streamingLocatorId"].as_str().unwrap();
    let paths = emu.post(&url(&emu, "east", "streamingLocators/secure/listPaths"), None).await.body;
    assert_eq!(paths["streamingPaths"][0]["encryptionScheme"], "EnvelopeEncryption");
    assert_eq!(
        paths["streamingPaths"][0]["paths"][0],
        format!("/{lid}/video.ism/manifest(format=m3u8-aapl,encryption=cbc)")
    );
    assert_eq!(paths["downloadPaths"], json!([]));

    let delivery = account_entry(&emu, "east").await["keyDeliveryUrl"].as_str().unwrap().to_string();
    let got = raw(&emu, Method::GET, &format!("{delivery}?kid={key_id}"), &[], None).await;
    assert_eq!(got.status, 200);
    assert_eq!(got.header("content-type"), "application/octet-stream");
    assert_eq!(got.body, base64::engine::general_purpose::STANDARD.decode(value).unwrap());
    let unknown = raw(&emu, Method::GET, &format!("{delivery}?kid={}", uuid::Uuid::new_v4()), &[], None).await;
    assert_eq!(unknown.status, 404);
    let west = account_entry(&emu, "west").await["keyDeliveryUrl"].as_str().unwrap().to_string();
    assert_eq!(
        raw(&emu, Method::GET, &format!("{west}?kid={key_id}"), &[], None).await.status,
        404,
        "keys stay in their account"
    );

    let bad_value = json!({"properties": {"assetName": "out-job-1", "streamingPolicyName": "envelope", "contentKeys": [
        {"labelReferenceInStreamingPolicy": "aesDefaultKey", "id": key_id, "value": "c2hvcnQ="}]}});
    emu.put(&url(&emu, "east", "streamingLocators/bad"), bad_value).await.assert_arm_error(400, "BadRequest");
    let bad_label = json!({"properties": {"assetName": "out-job-1", "streamingPolicyName": "envelope", "contentKeys": [
        {"labelReferenceInStreamingPolicy": "nope", "id": key_id}]}});
    emu.put(&url(&emu, "east", "streamingLocators/bad"), bad_label).await.assert_arm_error(400, "BadRequest");
}

#[tokio::test]
async fn multi_drm_locators_get_one_generated_key_per_scheme() {
    let emu = Emulator::start_fast(&[]).await;
    encode(&emu, "east", "job-1").await;
    let body = json!({"properties": {"assetName": "out-job-1", "streamingPolicyName": "Predefined_MultiDrmStreaming"}});
    let loc = emu.put(&url(&emu, "east", "streamingLocators/drm"), body).await;
    assert_eq!(loc.status, 201, "{}", loc.body);
    let types: Vec<&str> =
        loc.body["properties"]["contentKeys"].as_array().unwrap().iter().map(|k| k["type"].as_str().unwrap()).collect();
    assert_eq!(types, ["CommonEncryptionCenc", "CommonEncryptionCbcs"]);
    let keys = emu.post(&url(&emu, "east", "streamingLocators/drm/listContentKeys"), None).await.body;
    for k in keys["contentKeys"].as_array().unwrap() {
        let bytes = base64::engine::general_purpose::STANDARD.decode(k["value"].as_str().unwrap()).unwrap();
        assert_eq!(bytes.len(), 16);
    }
    let paths = emu.post(&url(&emu, "east", "streamingLocators/drm/listPaths"), None).await.body;
    let schemes: Vec<(String, String)> = paths["streamingPaths"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["streamingProtocol"].as_str().unwrap().into(), p["encryptionScheme"].as_str().unwrap().into()))
        .collect();
    assert_eq!(
        schemes,
        [
            ("Dash".to_string(), "CommonEncryptionCenc".to_string()),
            ("SmoothStreaming".into(), "CommonEncryptionCenc".into()),
            ("Hls".into(), "CommonEncryptionCbcs".into())
        ]
    );
    assert!(paths["streamingPaths"][2]["paths"][0]
        .as_str()
        .unwrap()
        .ends_with("(format=m3u8-aapl,encryption=cbcs-aapl)"));
}
