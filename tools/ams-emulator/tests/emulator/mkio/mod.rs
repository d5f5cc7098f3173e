//! MK.IO mode: accounts started with the `mkio` provider answer as MK.IO projects. Helpers shared by the
//! MK.IO tests; the tests themselves are in the submodules.

mod api;
mod publish;
mod webhooks;

use reqwest::Method;
use serde_json::{json, Value};

use crate::common::{Emulator, Reply, WAIT};

/// Two projects (`east`, `west`) at scale 200, plus `extra` flags.
pub async fn start(extra: &[&str]) -> Emulator {
    let mut args = vec![
        "--account",
        "east:eastus:automatic:mkio",
        "--account",
        "west:westus:automatic:mkio",
        "--time-scale",
        "200",
    ];
    args.extend_from_slice(extra);
    Emulator::start(&args).await
}

/// A token from the control API, valid for `ttl` seconds (negative: already expired).
pub async fn token(emu: &Emulator, ttl: i64) -> String {
    let r = emu.post(&format!("{}/_emulator/mkio/token?ttl={ttl}", emu.base), None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.body["token"].as_str().expect("token").to_string()
}

/// `{base}/api/v1/projects/{project}/{rest}`.
pub fn url(emu: &Emulator, project: &str, rest: &str) -> String {
    format!("{}/api/v1/projects/{project}/{rest}", emu.base)
}

/// `{base}/api/v1/projects/{project}/media/{rest}`.
pub fn media(emu: &Emulator, project: &str, rest: &str) -> String {
    url(emu, project, &format!("media/{rest}"))
}

/// Sends with `Authorization: Bearer {token}` when a token is given.
pub async fn call(emu: &Emulator, method: Method, url: &str, token: Option<&str>, body: Option<Value>) -> Reply {
    let mut req = emu.http.request(method, url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = tokio::time::timeout(WAIT, req.send()).await.expect("answer within the timeout").expect("sent");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let text = resp.text().await.expect("body readable");
    let body = if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap_or(Value::String(text)) };
    Reply { status, headers, body }
}

/// Asserts MK.IO's error body with this status and code.
pub fn assert_mkio_error(r: &Reply, status: u16, code: &str) {
    assert_eq!(r.status, status, "body: {}", r.body);
    assert_eq!(r.body["status"], status, "body: {}", r.body);
    assert_eq!(r.body["error"]["code"], code, "body: {}", r.body);
    assert!(r.body["error"]["detail"].as_str().is_some_and(|d| !d.is_empty()), "body: {}", r.body);
    assert!(r.body["error"]["extraDetail"].is_object(), "body: {}", r.body);
    assert!(r.body["ref"].as_str().is_some_and(|x| !x.is_empty()), "body: {}", r.body);
    assert!(r.body["error"].get("message").is_none(), "not ARM's shape: {}", r.body);
}

/// An authenticated client of the emulator's MK.IO projects.
pub struct Client<'a> {
    pub emu: &'a Emulator,
    pub token: String,
}

impl<'a> Client<'a> {
    pub async fn new(emu: &'a Emulator) -> Client<'a> {
        let token = token(emu, 3600).await;
        Client { emu, token }
    }

    pub async fn send(&self, method: Method, url: &str, body: Option<Value>) -> Reply {
        call(self.emu, method, url, Some(&self.token), body).await
    }

    pub async fn get(&self, project: &str, rest: &str) -> Reply {
        self.send(Method::GET, &media(self.emu, project, rest), None).await
    }

    pub async fn put(&self, project: &str, rest: &str, body: Value) -> Reply {
        self.send(Method::PUT, &media(self.emu, project, rest), Some(body)).await
    }

    pub async fn post(&self, project: &str, rest: &str, body: Option<Value>) -> Reply {
        self.send(Method::POST, &media(self.emu, project, rest), body).await
    }

    /// PUTs transform `name` with MK.IO's 720p ladder.
    pub async fn transform(&self, project: &str, name: &str) -> Reply {
        self.put(
            project,
            &format!("transforms/{name}"),
            json!({"properties": {"outputs": [{"preset": {
                "@odata.type": "#Microsoft.Media.BuiltInStandardEncoderPreset",
                "presetName": "H264MultipleBitrate720p"}}]}}),
        )
        .await
    }

    /// Submits job `job` of transform `encode` (created if needed) from an HTTP input into asset `out-{job}`,
    /// which need not exist.
    pub async fn submit(&self, project: &str, job: &str) -> Reply {
        let t = self.transform(project, "encode").await;
        assert!(t.status == 200 || t.status == 201, "transform: {}", t.body);
        self.put(project, &format!("transforms/encode/jobs/{job}"), job_body(&format!("out-{job}"))).await
    }

    /// The project's `mkio` view in `GET /_emulator/accounts`.
    pub async fn view(&self, project: &str) -> Value {
        let all = self.emu.get(&format!("{}/_emulator/accounts", self.emu.base)).await;
        all.body
            .as_array()
            .expect("accounts")
            .iter()
            .find(|a| a["name"] == project)
            .map(|a| a["mkio"].clone())
            .unwrap_or_else(|| panic!("no account {project}"))
    }
}

/// A job from an HTTP input into `asset`.
pub fn job_body(asset: &str) -> Value {
    json!({"properties": {
        "input": {"@odata.type": "#Microsoft.Media.JobInputHttp",
                  "baseUri": "https://example.blob.core.windows.net/in/", "files": ["video.mp4?sv=1&sig=x"]},
        "outputs": [{"@odata.type": "#Microsoft.Media.JobOutputAsset", "assetName": asset}],
        "correlationData": {"jobId": asset}
    }})
}
