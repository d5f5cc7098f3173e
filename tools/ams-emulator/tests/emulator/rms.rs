//! `rms` accounts: Ravnur's token endpoint, the bearer every ARM call must carry, the knob that expires
//! tokens early, and events published as an Event Grid custom topic would publish them.

use serde_json::{json, Value};

use crate::common::{Emulator, Receiver, RG, SUB};

const KEY: &str = "rms-emulator-key";

/// `POST /auth/token` with `body`: status, content type and text.
async fn token_request(emu: &Emulator, body: Value) -> (u16, String, String) {
    let resp = emu.http.post(format!("{}/auth/token", emu.base)).json(&body).send().await.expect("token request");
    let status = resp.status().as_u16();
    let ct = resp.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    (status, ct, resp.text().await.expect("body"))
}

async fn token(emu: &Emulator) -> String {
    let (status, _, token) = token_request(emu, json!({"subscriptionId": SUB, "apiKey": KEY})).await;
    assert_eq!(status, 200, "{token}");
    token
}

/// A PUT of the transform `encode` with `bearer`: status and JSON body.
async fn put_transform(emu: &Emulator, account: &str, bearer: Option<&str>) -> (u16, Value) {
    let url = format!("{}/transforms/encode?api-version=2022-07-01", emu.account_url(account));
    let body = json!({"properties": {"outputs": [{"preset": {"@odata.type": "#Microsoft.Media.BuiltInStandardEncoderPreset", "presetName": "AdaptiveStreaming"}}]}});
    let mut req = emu.http.put(url).json(&body);
    if let Some(token) = bearer {
        req = req.bearer_auth(token);
    }
    let resp = req.send().await.expect("ARM call");
    (resp.status().as_u16(), resp.json().await.unwrap_or(Value::Null))
}

async fn rms_emulator(extra: &[&str]) -> Emulator {
    let mut args =
        vec!["--account", "rmswest:westeurope:automatic:rms", "--account", "amseast:eastus", "--time-scale", "200"];
    args.extend_from_slice(extra);
    Emulator::start(&args).await
}

#[tokio::test]
async fn the_token_endpoint_answers_a_plain_text_jwt_for_the_right_key_in_either_casing_and_401_otherwise() {
    let emu = rms_emulator(&["--rms-token-ttl-secs", "120"]).await;
    let (status, ct, token) = token_request(&emu, json!({"subscriptionId": SUB, "apiKey": KEY})).await;
    assert_eq!(status, 200);
    assert!(ct.starts_with("text/plain"), "{ct}");
    assert_eq!(token.split('.').count(), 3, "a JWT: {token}");
    let claims: Value = serde_json::from_slice(
        &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, token.split('.').nth(1).unwrap())
            .unwrap(),
    )
    .unwrap();
    let lifetime = claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap();
    assert_eq!(lifetime, 120, "{claims}");
    // Ravnur's C# samples send Newtonsoft's PascalCase names.
    assert_eq!(token_request(&emu, json!({"SubscriptionId": SUB, "ApiKey": KEY})).await.0, 200);
    let (status, _, body) = token_request(&emu, json!({"subscriptionId": SUB, "apiKey": "wrong"})).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(token_request(&emu, json!({"subscriptionId": "other", "apiKey": KEY})).await.0, 401);
    let view = emu.get(&format!("{}/_emulator/rms", emu.base)).await.body;
    assert_eq!((view["tokensIssued"].as_u64(), view["tokenRefusals"].as_u64()), (Some(2), Some(2)), "{view}");
}

#[tokio::test]
async fn an_rms_account_refuses_calls_without_its_token_and_an_ams_account_on_the_same_emulator_does_not() {
    let emu = rms_emulator(&[]).await;
    let (status, body) = put_transform(&emu, "rmswest", None).await;
    assert_eq!((status, body["error"]["code"].as_str()), (401, Some("AuthenticationFailed")), "{body}");
    let (status, body) = put_transform(&emu, "rmswest", Some("not.a.token")).await;
    assert_eq!((status, body["error"]["code"].as_str()), (401, Some("InvalidAuthenticationToken")), "{body}");
    assert_eq!(put_transform(&emu, "amseast", None).await.0, 201);
    let token = token(&emu).await;
    assert_eq!(put_transform(&emu, "rmswest", Some(&token)).await.0, 201);
}

#[tokio::test]
async fn expiring_tokens_early_makes_the_old_token_fail_with_401_and_a_new_one_work() {
    let emu = rms_emulator(&[]).await;
    let old = token(&emu).await;
    assert_eq!(put_transform(&emu, "rmswest", Some(&old)).await.0, 201);
    let view = emu.post(&format!("{}/_emulator/rms/expire-tokens", emu.base), None).await.body;
    assert_eq!(view["generation"], 1);
    let (status, body) = put_transform(&emu, "rmswest", Some(&old)).await;
    assert_eq!((status, body["error"]["code"].as_str()), (401, Some("ExpiredAuthenticationToken")), "{body}");
    let fresh = token(&emu).await;
    assert_eq!(put_transform(&emu, "rmswest", Some(&fresh)).await.0, 200);
    let view = emu.get(&format!("{}/_emulator/rms", emu.base)).await.body;
    assert_eq!(view["unauthorizedCalls"], 1, "{view}");
}

#[tokio::test]
async fn rms_events_come_from_the_accounts_custom_topic_with_the_usual_subject() {
    let rx = Receiver::start().await;
    let emu = Emulator::start(&[
        "--account",
        "rmswest:westeurope:automatic:rms",
        "--time-scale",
        "1000",
        "--event-endpoint",
        &rx.url,
        "--event-types",
        "JobFinished",
    ])
    .await;
    let token = token(&emu).await;
    let base = emu.account_url("rmswest");
    let authed = |req: reqwest::RequestBuilder| req.bearer_auth(&token);
    assert_eq!(put_transform(&emu, "rmswest", Some(&token)).await.0, 201);
    let asset = authed(emu.http.put(format!("{base}/assets/out-j1?api-version=2023-01-01")))
        .json(&json!({"properties": {}}))
        .send()
        .await
        .unwrap();
    assert!(asset.status().is_success());
    let job = authed(emu.http.put(emu.job_url("rmswest", "encode", "j1")))
        .json(&Emulator::job_body("out-j1", json!({"jobId": "j1"})))
        .send()
        .await
        .unwrap();
    assert_eq!(job.status().as_u16(), 201);
    let events = rx.wait_for_type("Microsoft.Media.JobFinished", 1).await;
    let topic =
        format!("/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.EventGrid/topics/eg-topic-rmswest");
    assert_eq!(events[0]["topic"], topic.as_str());
    assert_eq!(events[0]["subject"], "transforms/encode/jobs/j1");
    let accounts = emu.get(&format!("{}/_emulator/accounts", emu.base)).await.body;
    assert_eq!(accounts[0]["eventTopic"], topic.as_str(), "the control API tells tests the topic");
    assert_eq!(accounts[0]["provider"], "rms");
}
