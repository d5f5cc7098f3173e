//! The whole local stack on private ports: Azurite, the Media Services emulator, a Service Bus namespace
//! for the outcome notifications, and devhost running the handler, wired together (the emulator's events go
//! to devhost's Event Grid webhook). Used by the
//! integration tests and by the drill, so both exercise exactly the same setup.

use crate::process::spawn_tied;
use crate::servicebus::ServiceBus;
use crate::Azurite;
use anyhow::{anyhow, bail, Context};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

/// Subscription the emulator serves.
pub const SUBSCRIPTION: &str = "00000000-0000-0000-0000-000000000000";
/// Resource group the emulator serves.
pub const RESOURCE_GROUP: &str = "media-rg";
/// The transform every account gets.
pub const TRANSFORM: &str = "encode";

/// Where child processes' output goes.
#[derive(Clone)]
pub enum Logs {
    /// The current process's stderr, prefixed with the child's name (captured per test by the harness).
    Stderr,
    /// Appended to a file.
    File(Arc<Mutex<std::fs::File>>),
}

impl Logs {
    /// Output appended to `path`.
    pub fn file(path: &Path) -> anyhow::Result<Logs> {
        let file = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
        Ok(Logs::File(Arc::new(Mutex::new(file))))
    }

    fn line(&self, name: &str, line: &str) {
        match self {
            Logs::Stderr => eprintln!("[{name}] {line}"),
            Logs::File(file) => {
                if let Ok(mut file) = file.lock() {
                    let _ = writeln!(file, "[{name}] {line}");
                }
            }
        }
    }
}

/// A running child, killed (and reaped) on drop; it also dies with this process.
pub struct Process {
    child: Child,
    /// The URL it announced.
    pub url: String,
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Process {
    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether it has exited (and is reaped).
    pub fn exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    /// Stops it now.
    pub fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn drain(name: &'static str, stream: impl Read + Send + 'static, logs: Logs, found: Option<mpsc::Sender<String>>) {
    std::thread::spawn(move || {
        let mut found = found;
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            logs.line(name, &line);
            if let Some((_, url)) = line.split_once("listening on ") {
                if let Some(tx) = found.take() {
                    let _ = tx.send(url.trim().to_owned());
                }
            }
        }
    });
}

/// Starts `cmd`, waits (at most 60 s) for its `... listening on URL` line, and keeps draining its output.
pub fn spawn_listening(name: &'static str, mut cmd: Command, logs: &Logs) -> anyhow::Result<Process> {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).stdin(Stdio::null());
    let mut child = spawn_tied(cmd).with_context(|| format!("starting {name}"))?;
    let (tx, rx) = mpsc::channel();
    let stdout = child.stdout.take().ok_or_else(|| anyhow!("{name}: no stdout"))?;
    let stderr = child.stderr.take().ok_or_else(|| anyhow!("{name}: no stderr"))?;
    drain(name, stdout, logs.clone(), Some(tx));
    drain(name, stderr, logs.clone(), None);
    match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(url) => Ok(Process { child, url }),
        Err(_) => {
            let _ = child.kill();
            let status = child.wait().ok();
            bail!("{name} did not announce a listening URL within 60 s (exit: {status:?})")
        }
    }
}

/// How the stack is started.
#[derive(Clone)]
pub struct StackOptions {
    /// Accounts as (name, region).
    pub accounts: Vec<(&'static str, &'static str)>,
    /// Accounts (by name) whose MRUs the product manages, with the most it may provision; the others
    /// scale automatically.
    pub managed: Vec<(&'static str, u32)>,
    /// Emulator time scale (60 = a minute passes in a second).
    pub time_scale: f64,
    /// Emulated phase durations in ms: queued, scheduled, processing.
    pub phases_ms: (u64, u64, u64),
    /// The handler binary.
    pub handler: PathBuf,
    /// The function app (host.json and function folders).
    pub app_root: PathBuf,
    /// Settings added to (or overriding) the handler's.
    pub settings: Vec<(String, String)>,
    /// Where the children's output goes.
    pub logs: Logs,
    /// Where devhost writes the output binding messages (`alerts.jsonl`); a temporary folder when `None`.
    /// A demo points it at its own folder, so its alerts stay next to its report.
    pub outputs_dir: Option<PathBuf>,
    /// Extra emulator arguments (e.g. `--copy-ms`, `--duplicate-create-status`).
    pub emulator_args: Vec<String>,
    /// Accounts (by name) that speak as another provider than Azure Media Services (`rms`, `mkio`).
    pub providers: Vec<(&'static str, &'static str)>,
    /// The handler's request budget of each MK.IO project, (reads, writes) per minute; its default when
    /// `None`.
    pub mkio_budget: Option<(u32, u32)>,
    /// Extra devhost arguments (e.g. `--keys FILE`).
    pub devhost_args: Vec<String>,
}

impl StackOptions {
    /// Two accounts in two regions, short phases, the given handler and app.
    pub fn new(handler: PathBuf, app_root: PathBuf) -> StackOptions {
        StackOptions {
            accounts: vec![("amswesteurope", "westeurope"), ("amsnortheurope", "northeurope")],
            managed: Vec::new(),
            time_scale: 20.0,
            phases_ms: (1000, 2000, 6000),
            handler,
            app_root,
            settings: Vec::new(),
            logs: Logs::Stderr,
            outputs_dir: None,
            emulator_args: Vec::new(),
            providers: Vec::new(),
            mkio_budget: None,
            devhost_args: Vec::new(),
        }
    }

    /// The provider account `name` speaks as (`ams` unless [`StackOptions::providers`] says otherwise).
    pub fn provider_of(&self, name: &str) -> &'static str {
        self.providers.iter().find(|(n, _)| *n == name).map_or("ams", |(_, p)| p)
    }

    /// The same stack with every account speaking as `provider`.
    pub fn on_provider(mut self, provider: &'static str) -> StackOptions {
        self.providers = self.accounts.iter().map(|(name, _)| (*name, provider)).collect();
        self
    }
}

/// The provider the provider-parameterised suites (lifecycle, failover, streaming) run on: `TEST_PROVIDER`,
/// `ams` when unset. `./dev test` runs those suites once per provider.
pub fn test_provider() -> &'static str {
    match std::env::var("TEST_PROVIDER").as_deref() {
        Ok("rms") => "rms",
        Ok("mkio") => "mkio",
        _ => "ams",
    }
}

/// The API key the emulator's rms accounts accept by default (its `--rms-api-key`; a test value).
pub const RMS_API_KEY: &str = "rms-emulator-key";

/// The Event Grid custom topic an rms account's events come from in the emulator (its README: `eg-topic-`
/// and the account name, in the emulated resource group; its control API shows it as `eventTopic`).
pub fn rms_event_topic(account: &str) -> String {
    format!(
        "/subscriptions/{SUBSCRIPTION}/resourceGroups/{RESOURCE_GROUP}/providers/Microsoft.EventGrid/topics/eg-topic-{}",
        account.to_ascii_lowercase()
    )
}

/// The setting that holds an rms account's API key when `apiKeySetting` is not given.
pub fn rms_api_key_setting(account: &str) -> String {
    format!("RMS_API_KEY_{}", account.to_ascii_uppercase())
}

/// The token signing key stacks with publication give the handler (a test value, not a secret).
pub const TEST_TOKEN_SIGNING_KEY: &str = "dGVzdC1zaWduaW5nLWtleS0zMi1ieXRlcy1sb25nISE=";

impl StackOptions {
    /// The same stack with video-on-demand publication on: a test signing key, definitions checked on every
    /// sweep, and failed publication steps retried after 200 ms, so tests drive everything with sweeps.
    pub fn with_publication(mut self) -> StackOptions {
        for (name, value) in [
            ("PUBLISH_STREAMING", "on"),
            ("TOKEN_SIGNING_KEY", TEST_TOKEN_SIGNING_KEY),
            ("DEFINITIONS_CHECK_EVERY", "0s"),
            ("PUBLISH_RETRY", "200ms"),
        ] {
            self.settings.push((name.to_owned(), value.to_owned()));
        }
        self
    }
}

/// The shared secret stacks give the MK.IO webhook (a test value, not a secret).
pub const TEST_WEBHOOK_SECRET: &str = "test-webhook-secret-0123456789";

/// An unsigned JWT expiring at `exp` (seconds since the epoch): what the emulator's MK.IO projects accept
/// until then (they check the shape and `exp`, not a signature), and what the handler reads the expiry of.
pub fn mkio_token(exp: i64) -> String {
    use base64::Engine;
    let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
    format!("{}.{}.", b64(r#"{"alg":"none","typ":"JWT"}"#), b64(&format!(r#"{{"sub":"testkit","exp":{exp}}}"#)))
}

/// The setting holding account `name`'s MK.IO token (the handler's default name).
pub fn mkio_token_setting(name: &str) -> String {
    format!("MKIO_TOKEN_{}", name.to_ascii_uppercase())
}

/// What the handler needs to reach the emulator's MK.IO projects: a token, each project's storage (as the
/// emulator's control API shows it: account name, blob URL, an account SAS), and where webhooks go.
#[derive(Clone, Debug, Default)]
pub struct MkioWiring {
    /// A token every project accepts for a year (as long as MK.IO lets one live).
    pub token: String,
    /// Per account: storage name, blob URL, SAS (with its leading `?`).
    pub storages: Vec<(String, String, String, String)>,
    /// OnMkioEvent's URL on devhost.
    pub webhook_url: String,
}

impl MkioWiring {
    /// Reads each MK.IO account's storage from the emulator at `arm`; webhooks will go to devhost at
    /// `devhost`.
    pub async fn read(http: &reqwest::Client, arm: &str, devhost: &str) -> anyhow::Result<MkioWiring> {
        let accounts: Vec<Value> = http.get(format!("{arm}/_emulator/accounts")).send().await?.json().await?;
        let storages = accounts
            .iter()
            .filter_map(|a| {
                let storage = a.pointer("/mkio/storage")?;
                Some((
                    a["name"].as_str()?.to_owned(),
                    storage["storageAccount"].as_str()?.to_owned(),
                    storage["blobUrl"].as_str()?.to_owned(),
                    storage["sas"].as_str()?.to_owned(),
                ))
            })
            .collect();
        let exp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs() + 365 * 86_400;
        Ok(MkioWiring {
            token: mkio_token(i64::try_from(exp)?),
            storages,
            webhook_url: format!("{devhost}/api/events/mkio"),
        })
    }

    /// The handler's settings for the MK.IO accounts: each token, the webhook URL and secret, and the
    /// storage SAS of every other account. The others get none, so the handler signs user-delegation SAS
    /// for them, as it does in Azure with its identity: a copy between two projects uses both credentials.
    pub fn settings(&self) -> Vec<(String, String)> {
        let mut settings = vec![
            ("MKIO_WEBHOOK_URL".to_owned(), self.webhook_url.clone()),
            ("MKIO_WEBHOOK_SECRET".to_owned(), TEST_WEBHOOK_SECRET.to_owned()),
        ];
        for (i, (name, _, _, sas)) in self.storages.iter().enumerate() {
            settings.push((mkio_token_setting(name), self.token.clone()));
            if i % 2 == 0 {
                settings.push((format!("MKIO_STORAGE_SAS_{}", name.to_ascii_uppercase()), sas.clone()));
            }
        }
        settings
    }
}

/// `MEDIA_ACCOUNTS` for `options`' accounts served by the emulator at `arm`.
pub fn accounts_setting(options: &StackOptions, arm: &str) -> String {
    accounts_setting_wired(options, arm, None)
}

/// `MEDIA_ACCOUNTS` for `options`' accounts served by the emulator at `arm`, MK.IO projects wired per
/// `mkio` (without it they name a storage the emulator has not shown, and only the configuration is right).
pub fn accounts_setting_wired(options: &StackOptions, arm: &str, mkio: Option<&MkioWiring>) -> String {
    let list: Vec<Value> = options
        .accounts
        .iter()
        .map(|(name, region)| {
            let mut account = json!({"name": name, "region": region, "subscriptionId": SUBSCRIPTION,
                   "resourceGroup": RESOURCE_GROUP, "armEndpoint": arm, "mruMode": "automatic"});
            let provider = options.provider_of(name);
            if provider != "ams" {
                account["provider"] = json!(provider);
            }
            if provider == "rms" {
                // The key comes from the default setting (RMS_API_KEY_<NAME>, see `handler_settings`).
                account["eventTopic"] = json!(rms_event_topic(name));
            }
            if provider == "mkio" {
                // A project is not an ARM resource; the emulator serves it under its own API paths.
                account = json!({"name": name, "region": region, "provider": "mkio", "mkioEndpoint": arm,
                    "mruMode": "automatic", "storage": {"name": name, "url": format!("{arm}/blob/{name}")}});
                if let Some((_, storage, url, _)) = mkio.and_then(|m| m.storages.iter().find(|s| s.0 == *name)) {
                    account["storage"] = json!({"name": storage, "url": url});
                }
                if let Some((reads, writes)) = options.mkio_budget {
                    account["readsPerMinute"] = json!(reads);
                    account["writesPerMinute"] = json!(writes);
                }
            }
            if let Some((_, max)) = options.managed.iter().find(|(m, _)| m == name) {
                account["mruMode"] = json!("managed");
                account["maxMru"] = json!(max);
            }
            account
        })
        .collect();
    Value::Array(list).to_string()
}

/// The handler's settings for a stack on `azurite` and the emulator at `arm`, on top of `local.settings.json`.
pub fn handler_settings(azurite: &Azurite, prefix: &str, options: &StackOptions, arm: &str) -> Vec<(String, String)> {
    let rms_keys = options
        .accounts
        .iter()
        .filter(|(name, _)| options.provider_of(name) == "rms")
        .map(|(name, _)| (rms_api_key_setting(name), RMS_API_KEY.to_owned()));
    let mut settings = vec![
        ("MEDIA_ACCOUNTS".into(), accounts_setting(options, arm)),
        ("TABLES_CONNECTION_STRING".into(), azurite.connection_string()),
        ("TABLE_PREFIX".into(), prefix.to_owned()),
        ("TRANSFORMS".into(), TRANSFORM.into()),
        ("ARM_AUTH".into(), "none".into()),
        ("ARM_TIMEOUT".into(), "5s".into()),
        // Far away, so the timer never fires on its own; callers run the sweep explicitly.
        ("SWEEP_SCHEDULE".into(), "0 0 0 1 1 *".into()),
        ("RUST_LOG".into(), "info".into()),
    ];
    settings.extend(rms_keys);
    settings
}

/// Starts the emulator with `options`' accounts and phases.
pub fn start_emulator(emulator: &Path, options: &StackOptions) -> anyhow::Result<Process> {
    let mut cmd = Command::new(emulator);
    cmd.args(["--port", "0", "--time-scale", &options.time_scale.to_string()])
        .args(["--queued-ms", &options.phases_ms.0.to_string()])
        .args(["--scheduled-ms", &options.phases_ms.1.to_string()])
        .args(["--processing-ms", &options.phases_ms.2.to_string()]);
    for (name, region) in &options.accounts {
        let mode = if options.managed.iter().any(|(m, _)| m == name) { "managed" } else { "automatic" };
        let provider = options.provider_of(name);
        cmd.args(["--account", &format!("{name}:{region}:{mode}:{provider}")]);
    }
    cmd.args(&options.emulator_args);
    spawn_listening("ams-emulator", cmd, &options.logs)
}

/// The running stack.
pub struct Stack {
    /// Table Storage.
    pub azurite: Azurite,
    /// The Media Services emulator.
    pub emulator: Process,
    /// The Functions host running the handler.
    pub devhost: Process,
    /// This stack's table prefix.
    pub prefix: String,
    /// Where devhost writes output binding messages.
    pub outputs: PathBuf,
    /// The Service Bus namespace the handler sends outcome notifications to (`job-events.jsonl` in
    /// `outputs`).
    pub service_bus: ServiceBus,
    _outputs_dir: Option<tempfile::TempDir>,
    /// An HTTP client for callers.
    pub http: reqwest::Client,
    /// How it was started.
    pub options: StackOptions,
    /// How the handler reaches the emulator's MK.IO projects, when it has any.
    pub mkio: Option<MkioWiring>,
}

/// Creates the test transform in every MK.IO project of the emulator at `arm`, with MK.IO's preset name.
pub async fn create_mkio_transforms(
    http: &reqwest::Client,
    arm: &str,
    options: &StackOptions,
    token: &str,
) -> anyhow::Result<()> {
    for (name, _) in options.accounts.iter().filter(|(name, _)| options.provider_of(name) == "mkio") {
        let url = format!("{arm}/api/v1/projects/{name}/media/transforms/{TRANSFORM}");
        let body = json!({"properties": {"outputs": [{"preset": {"@odata.type": "#Microsoft.Media.BuiltInStandardEncoderPreset", "presetName": "H264MultipleBitrate1080p"}}]}});
        let status = http.put(url).bearer_auth(token).json(&body).send().await?.status();
        if !status.is_success() {
            bail!("creating the transform in project {name} answered {status}");
        }
    }
    Ok(())
}

/// A token of the emulator at `arm` for its rms accounts, as the product gets one.
pub async fn rms_token(http: &reqwest::Client, arm: &str) -> anyhow::Result<String> {
    let response = http
        .post(format!("{arm}/auth/token"))
        .json(&json!({"subscriptionId": SUBSCRIPTION, "apiKey": RMS_API_KEY}))
        .send()
        .await?;
    let status = response.status();
    let text = response.text().await?;
    if !status.is_success() {
        bail!("the emulator's token endpoint answered {status}: {text}");
    }
    Ok(text.trim().to_owned())
}

/// `request` to the ARM API of `account`, with the bearer the account's provider wants (rms accounts need
/// their token; the emulator's ams accounts need none).
pub async fn authorized(
    http: &reqwest::Client,
    arm: &str,
    options: &StackOptions,
    account: &str,
    request: reqwest::RequestBuilder,
) -> anyhow::Result<reqwest::RequestBuilder> {
    Ok(match options.provider_of(account) {
        "rms" => request.bearer_auth(rms_token(http, arm).await?),
        _ => request,
    })
}

/// Creates the test transform in every account of `options` on the emulator at `arm`.
pub async fn create_transforms(http: &reqwest::Client, arm: &str, options: &StackOptions) -> anyhow::Result<()> {
    // MK.IO projects get theirs through their own API (`create_mkio_transforms`).
    for (name, _) in options.accounts.iter().filter(|(name, _)| options.provider_of(name) != "mkio") {
        let url = format!(
            "{arm}/subscriptions/{SUBSCRIPTION}/resourceGroups/{RESOURCE_GROUP}/providers/Microsoft.Media/mediaServices/{name}/transforms/{TRANSFORM}?api-version=2022-07-01"
        );
        let body = json!({"properties": {"outputs": [{"preset": {"@odata.type": "#Microsoft.Media.BuiltInStandardEncoderPreset", "presetName": "AdaptiveStreaming"}}]}});
        let request = authorized(http, arm, options, name, http.put(url).json(&body)).await?;
        let status = request.send().await?.status();
        if !status.is_success() {
            bail!("creating the transform in {name} answered {status}");
        }
    }
    Ok(())
}

impl Stack {
    /// Starts Azurite, the emulator (with the transform in every account) and devhost running the handler,
    /// and points the emulator's events at devhost.
    pub async fn start(options: StackOptions) -> anyhow::Result<Stack> {
        let emulator_bin = crate::try_workspace_bin("ams-emulator")?;
        let devhost_bin = crate::try_workspace_bin("devhost")?;
        let azurite = Azurite::start().await?;
        let emulator = start_emulator(&emulator_bin, &options)?;
        let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build()?;
        create_transforms(&http, &emulator.url, &options).await?;
        // MK.IO projects deliver webhooks to a URL the handler writes into their rules at start-up, so
        // devhost's port must be known before it starts.
        let any_mkio = options.accounts.iter().any(|(name, _)| options.provider_of(name) == "mkio");
        let port = if any_mkio { crate::try_free_port()? } else { 0 };
        let mkio = if any_mkio {
            let wiring = MkioWiring::read(&http, &emulator.url, &format!("http://127.0.0.1:{port}")).await?;
            create_mkio_transforms(&http, &emulator.url, &options, &wiring.token).await?;
            Some(wiring)
        } else {
            None
        };

        let prefix = crate::unique_prefix();
        let (outputs, outputs_dir) = match &options.outputs_dir {
            Some(dir) => {
                std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
                // devhost appends; a demo run again starts with no alerts or notifications of the last run.
                let _ = std::fs::remove_file(dir.join("alerts.jsonl"));
                let _ = std::fs::remove_file(dir.join("job-events.jsonl"));
                (dir.clone(), None)
            }
            None => {
                let dir = tempfile::tempdir()?;
                (dir.path().to_path_buf(), Some(dir))
            }
        };
        let service_bus = ServiceBus::start(&outputs).await?;
        let mut cmd = Command::new(devhost_bin);
        cmd.arg("--app-root")
            .arg(&options.app_root)
            .args(["--port", &port.to_string(), "--handler"])
            .arg(&options.handler)
            .arg("--outputs-dir")
            .arg(&outputs)
            .args(&options.devhost_args);
        cmd.envs(handler_settings(&azurite, &prefix, &options, &emulator.url));
        if let Some(wiring) = &mkio {
            cmd.env("MEDIA_ACCOUNTS", accounts_setting_wired(&options, &emulator.url, Some(wiring)));
            cmd.envs(wiring.settings());
        }
        cmd.env("SERVICE_BUS_ENDPOINT", &service_bus.url);
        cmd.envs(options.settings.iter().cloned());
        let devhost = spawn_listening("devhost", cmd, &options.logs)?;

        let stack = Stack {
            azurite,
            emulator,
            devhost,
            prefix,
            outputs,
            service_bus,
            _outputs_dir: outputs_dir,
            http,
            options,
            mkio,
        };
        let endpoint = format!("{}/runtime/webhooks/EventGrid?functionName=OnJobStateChange", stack.devhost.url);
        stack.events(json!({ "endpoint": endpoint })).await?;
        if stack.mkio.is_some() {
            // The first sweep writes every project's webhook rule (the definitions sync does), as the first
            // timer tick would in Azure; before it no MK.IO event reaches the handler.
            if !stack.sweep().await? {
                bail!("the first sweep of a stack with MK.IO projects failed");
            }
        }
        Ok(stack)
    }

    /// The URL of `path` (`transforms/encode`, `streamingLocators/x`) in account `account`'s media API,
    /// ARM or MK.IO as the account's provider speaks.
    pub fn media_url(&self, account: &str, path: &str) -> String {
        let base = &self.emulator.url;
        if self.options.provider_of(account) == "mkio" {
            format!("{base}/api/v1/projects/{account}/media/{path}")
        } else {
            let version = match (path.contains("api-version="), path.contains('?')) {
                (true, _) => "",
                (false, true) => "&api-version=2023-01-01",
                (false, false) => "?api-version=2023-01-01",
            };
            format!(
                "{base}/subscriptions/{SUBSCRIPTION}/resourceGroups/{RESOURCE_GROUP}/providers/Microsoft.Media/mediaServices/{account}/{path}{version}"
            )
        }
    }

    /// One call of account `account`'s media API (with the MK.IO token where needed): status and JSON body
    /// (`Null` when empty).
    pub async fn media_call(
        &self,
        method: reqwest::Method,
        account: &str,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<(StatusCode, Value)> {
        let mut request = self.http.request(method, self.media_url(account, path));
        if let (Some(mkio), "mkio") = (&self.mkio, self.options.provider_of(account)) {
            request = request.bearer_auth(&mkio.token);
        }
        request = self.authorized(account, request).await?;
        request = match body {
            Some(body) => request.json(body),
            None => request.header("content-length", "0"),
        };
        let response = request.send().await?;
        let status = response.status();
        let text = response.text().await?;
        Ok((status, if text.trim().is_empty() { Value::Null } else { serde_json::from_str(&text)? }))
    }

    /// The emulator's request counts of MK.IO project `account` (`requests` of its control view).
    pub async fn mkio_requests(&self, account: &str) -> anyhow::Result<Value> {
        Ok(self.emulator_account(account).await?.pointer("/mkio/requests").cloned().unwrap_or(Value::Null))
    }

    /// `POST /api/events/mkio` with `headers`: status and JSON body.
    pub async fn post_mkio_event(&self, body: &Value, secret: Option<&str>) -> anyhow::Result<(StatusCode, Value)> {
        let mut request = self.http.post(format!("{}/api/events/mkio", self.devhost.url)).json(body);
        if let Some(secret) = secret {
            request = request.header("x-mkio-webhook-secret", secret);
        }
        let response = request.send().await?;
        let status = response.status();
        Ok((status, response.json().await.unwrap_or(Value::Null)))
    }

    /// `POST /api/jobs`: status, JSON body, Location header.
    pub async fn submit(&self, body: &Value) -> anyhow::Result<(StatusCode, Value, Option<String>)> {
        let response = self.http.post(format!("{}/api/jobs", self.devhost.url)).json(body).send().await?;
        let status = response.status();
        let location = response.headers().get("location").and_then(|v| v.to_str().ok()).map(str::to_owned);
        Ok((status, response.json().await.context("SubmitJob answered no JSON")?, location))
    }

    /// `POST /api/jobs` with a raw body: status, content type, text.
    pub async fn submit_raw(&self, body: String) -> anyhow::Result<(StatusCode, Option<String>, String)> {
        let response = self
            .http
            .post(format!("{}/api/jobs", self.devhost.url))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await?;
        let status = response.status();
        let content_type = response.headers().get("content-type").and_then(|v| v.to_str().ok()).map(str::to_owned);
        Ok((status, content_type, response.text().await?))
    }

    /// `GET /api/jobs/{id}`.
    pub async fn get_job(&self, id: &str) -> anyhow::Result<(StatusCode, Value)> {
        let response = self.http.get(format!("{}/api/jobs/{id}", self.devhost.url)).send().await?;
        Ok((response.status(), response.json().await.context("GetJob answered no JSON")?))
    }

    /// `GET /api/status`.
    pub async fn status(&self) -> anyhow::Result<Value> {
        let response = self.http.get(format!("{}/api/status", self.devhost.url)).send().await?;
        if response.status() != StatusCode::OK {
            bail!("GetStatus answered {}", response.status());
        }
        Ok(response.json().await?)
    }

    /// Runs SweepStuckJobs now through the host's admin endpoint; true if it succeeded.
    pub async fn sweep(&self) -> anyhow::Result<bool> {
        let response = self
            .http
            .post(format!("{}/admin/functions/SweepStuckJobs", self.devhost.url))
            .json(&json!({"input": ""}))
            .send()
            .await?;
        Ok(response.headers().get("x-devhost-invocation").is_some_and(|v| v == "succeeded"))
    }

    /// Sets an emulator fault on an account.
    pub async fn fault(&self, account: &str, fault: Value) -> anyhow::Result<()> {
        self.control(&format!("/_emulator/accounts/{account}/fault"), fault).await
    }

    /// `request` to `account`'s ARM API with the bearer its provider wants.
    pub async fn authorized(
        &self,
        account: &str,
        request: reqwest::RequestBuilder,
    ) -> anyhow::Result<reqwest::RequestBuilder> {
        authorized(&self.http, &self.emulator.url, &self.options, account, request).await
    }

    /// The emulator's rms token view (`GET /_emulator/rms`): tokens issued, refused, calls refused for want
    /// of a valid token.
    pub async fn rms_tokens(&self) -> anyhow::Result<Value> {
        Ok(self.http.get(format!("{}/_emulator/rms", self.emulator.url)).send().await?.json().await?)
    }

    /// Makes every rms token the emulator has issued so far expired.
    pub async fn expire_rms_tokens(&self) -> anyhow::Result<()> {
        self.control("/_emulator/rms/expire-tokens", json!({})).await
    }

    /// Changes the emulator's event delivery: Event Grid's, and MK.IO's webhooks with the same knobs.
    pub async fn events(&self, settings: Value) -> anyhow::Result<()> {
        if self.mkio.is_some() {
            let mut webhooks = settings.clone();
            if let Some(map) = webhooks.as_object_mut() {
                map.remove("endpoint");
                if !map.is_empty() {
                    self.control("/_emulator/mkio/webhooks", webhooks).await?;
                }
            }
        }
        self.control("/_emulator/events", settings).await
    }

    async fn control(&self, path: &str, body: Value) -> anyhow::Result<()> {
        let status = self.http.post(format!("{}{path}", self.emulator.url)).json(&body).send().await?.status();
        if !status.is_success() {
            bail!("POST {path} answered {status}");
        }
        Ok(())
    }

    /// Every job the emulator knows.
    pub async fn emulator_jobs(&self) -> anyhow::Result<Vec<Value>> {
        Ok(self.http.get(format!("{}/_emulator/jobs", self.emulator.url)).send().await?.json().await?)
    }

    /// The emulator's view of one account.
    pub async fn emulator_account(&self, name: &str) -> anyhow::Result<Value> {
        self.emulator_accounts()
            .await?
            .into_iter()
            .find(|a| a["name"] == name)
            .ok_or_else(|| anyhow!("the emulator does not know {name}"))
    }

    /// The emulator's accounts view.
    pub async fn emulator_accounts(&self) -> anyhow::Result<Vec<Value>> {
        Ok(self.http.get(format!("{}/_emulator/accounts", self.emulator.url)).send().await?.json().await?)
    }

    /// Messages the handler sent on the `alerts` queue.
    pub fn alerts(&self) -> Vec<Value> {
        read_jsonl(&self.outputs.join("alerts.jsonl"))
    }

    /// Outcome notifications the `job-events` topic kept, as `(messageId, body)`.
    pub fn job_events(&self) -> Vec<(String, Value)> {
        self.service_bus.delivered("job-events")
    }

    /// Alerts of type `kind`, once one of them satisfies `wanted`.
    ///
    /// An Event Grid invocation writes its job row before it answers, and the host appends the alert only
    /// after the answer; so an alert raised by an event can trail the job state a test just observed.
    pub async fn wait_alerts(&self, kind: &str, wanted: impl Fn(&Value) -> bool) -> anyhow::Result<Vec<Value>> {
        eventually(Duration::from_secs(30), &format!("a {kind} alert"), || async {
            let alerts: Vec<Value> = self.alerts().into_iter().filter(|a| a["type"] == kind).collect();
            Ok(alerts.iter().any(&wanted).then_some(alerts))
        })
        .await
    }
}

/// Reads a JSON-lines file; a missing file means no lines.
pub fn read_jsonl(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// Polls `check` until it yields `Some`, for at most `limit`.
pub async fn eventually<T, F, Fut>(limit: Duration, what: &str, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Option<T>>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(value) = check().await? {
            return Ok(value);
        }
        if tokio::time::Instant::now() > deadline {
            bail!("timed out after {limit:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A valid SubmitJob body.
pub fn job_body(job_id: &str) -> Value {
    json!({"jobId": job_id, "transform": TRANSFORM, "input": {"baseUri": "https://media.example/in/", "files": ["movie.mp4"]}})
}

/// The host's payload for an HTTP trigger named `req`.
pub fn http_request(method: &str, url: &str, params: Value, body: Option<&str>) -> Value {
    let mut req = json!({
        "Url": url, "Method": method, "Query": {}, "Headers": {"Content-Type": ["application/json"], "Host": ["localhost:7071"]},
        "Params": params,
        "Identities": [{"AuthenticationType": "WebJobsAuthLevel", "IsAuthenticated": true, "Claims": []}],
    });
    if let Some(body) = body {
        req["Body"] = json!(body);
    }
    json!({"Data": {"req": req}, "Metadata": {"sys": {"MethodName": "x", "UtcNow": "2024-01-01T00:00:00Z", "RandGuid": "00000000-0000-0000-0000-000000000000"}}})
}

/// The host's payload for the timer trigger.
pub fn timer_request() -> Value {
    json!({"Data": {"timer": {"Schedule": {"AdjustForDST": true}, "ScheduleStatus": null, "IsPastDue": false}}, "Metadata": {"sys": {}}})
}
