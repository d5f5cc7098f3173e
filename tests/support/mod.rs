//! The local stack for integration tests: a real Azurite, the Media Services emulator, devhost and the
//! real handler binary, each test on its own ports and table prefix so tests run in parallel.
#![allow(dead_code)]

use ams_failover::domain::AccountCounters;
use ams_failover::store::Store;
use anyhow::{anyhow, bail, Context};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tables::TableService;
use testkit::Azurite;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// Subscription and resource group the emulator serves.
pub const SUBSCRIPTION: &str = "00000000-0000-0000-0000-000000000000";
pub const RESOURCE_GROUP: &str = "media-rg";
pub const TRANSFORM: &str = "encode";

/// How the stack is started.
#[derive(Clone, Debug)]
pub struct StackOptions {
    /// Accounts as (name, region).
    pub accounts: Vec<(&'static str, &'static str)>,
    /// Emulator time scale.
    pub time_scale: f64,
    /// Emulated phase durations in ms: queued, scheduled, processing.
    pub phases_ms: (u64, u64, u64),
}

impl Default for StackOptions {
    fn default() -> Self {
        StackOptions {
            accounts: vec![("amswesteurope", "westeurope"), ("amsnortheurope", "northeurope")],
            time_scale: 20.0,
            phases_ms: (1000, 2000, 6000),
        }
    }
}

/// A running child whose output is copied to the test's output, killed on drop.
pub struct Process {
    pub child: Child,
    pub url: String,
}

/// Starts `program`, waits (bounded) for its `... listening on URL` line, and keeps draining its output.
pub async fn spawn_listening(name: &'static str, mut command: Command) -> anyhow::Result<Process> {
    command.stdout(Stdio::piped()).stderr(Stdio::piped()).stdin(Stdio::null()).kill_on_drop(true);
    let mut child = command.spawn().with_context(|| format!("starting {name}"))?;
    let stdout = child.stdout.take().ok_or_else(|| anyhow!("{name}: no stdout"))?;
    let stderr = child.stderr.take().ok_or_else(|| anyhow!("{name}: no stderr"))?;
    tokio::spawn(async move {
        let mut lines = BufReader::new(stderr).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            eprintln!("[{name}] {line}");
        }
    });
    let mut lines = BufReader::new(stdout).lines();
    let url = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(line) = lines.next_line().await? {
            eprintln!("[{name}] {line}");
            if let Some((_, url)) = line.split_once("listening on ") {
                return Ok(url.trim().to_owned());
            }
        }
        bail!("{name} exited before listening")
    })
    .await
    .map_err(|_| anyhow!("{name} did not start listening within 60 s"))??;
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            eprintln!("[{name}] {line}");
        }
    });
    Ok(Process { child, url })
}

/// The whole local stack.
pub struct Stack {
    pub azurite: Azurite,
    pub emulator: Process,
    pub devhost: Process,
    pub prefix: String,
    pub outputs: tempfile::TempDir,
    pub http: reqwest::Client,
    pub options: StackOptions,
    pub store: Store,
}

/// The repository root: the function app.
pub fn app_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `MEDIA_ACCOUNTS` for accounts served by the emulator at `arm`.
pub fn accounts_setting(accounts: &[(&str, &str)], arm: &str) -> String {
    let list: Vec<Value> = accounts
        .iter()
        .map(|(name, region)| {
            json!({"name": name, "region": region, "subscriptionId": SUBSCRIPTION, "resourceGroup": RESOURCE_GROUP,
                   "armEndpoint": arm, "mruMode": "automatic"})
        })
        .collect();
    Value::Array(list).to_string()
}

/// Settings the handler gets in tests, on top of `local.settings.json`.
pub fn handler_env(azurite: &Azurite, prefix: &str, accounts: &[(&str, &str)], arm: &str) -> Vec<(String, String)> {
    vec![
        ("MEDIA_ACCOUNTS".into(), accounts_setting(accounts, arm)),
        ("TABLES_CONNECTION_STRING".into(), azurite.connection_string()),
        ("TABLE_PREFIX".into(), prefix.to_owned()),
        ("TRANSFORMS".into(), TRANSFORM.into()),
        ("ARM_AUTH".into(), "none".into()),
        ("ARM_TIMEOUT".into(), "5s".into()),
        // Far away, so timers never fire on their own during a test; tests run the sweep explicitly.
        ("SWEEP_SCHEDULE".into(), "0 0 0 1 1 *".into()),
        ("RUST_LOG".into(), "info".into()),
    ]
}

pub async fn start_emulator(options: &StackOptions) -> anyhow::Result<Process> {
    let mut cmd = Command::new(testkit::workspace_bin("ams-emulator"));
    cmd.args(["--port", "0", "--time-scale", &options.time_scale.to_string()])
        .args(["--queued-ms", &options.phases_ms.0.to_string()])
        .args(["--scheduled-ms", &options.phases_ms.1.to_string()])
        .args(["--processing-ms", &options.phases_ms.2.to_string()]);
    for (name, region) in &options.accounts {
        cmd.args(["--account", &format!("{name}:{region}")]);
    }
    spawn_listening("ams-emulator", cmd).await
}

impl Stack {
    /// Starts Azurite, the emulator (with the transform in every account), and devhost running the handler.
    pub async fn start(options: StackOptions) -> anyhow::Result<Stack> {
        let azurite = Azurite::start().await?;
        let emulator = start_emulator(&options).await?;
        let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build()?;
        for (name, _) in &options.accounts {
            let url = format!(
                "{}/subscriptions/{SUBSCRIPTION}/resourceGroups/{RESOURCE_GROUP}/providers/Microsoft.Media/mediaServices/{name}/transforms/{TRANSFORM}?api-version=2022-07-01",
                emulator.url
            );
            let body = json!({"properties": {"outputs": [{"preset": {"@odata.type": "#Microsoft.Media.BuiltInStandardEncoderPreset", "presetName": "AdaptiveStreaming"}}]}});
            let status = http.put(url).json(&body).send().await?.status();
            if !status.is_success() {
                bail!("creating the transform in {name} answered {status}");
            }
        }

        let prefix = testkit::unique_prefix();
        let outputs = tempfile::tempdir()?;
        let mut cmd = Command::new(testkit::workspace_bin("devhost"));
        cmd.arg("--app-root")
            .arg(app_root())
            .args(["--port", "0", "--handler"])
            .arg(env!("CARGO_BIN_EXE_handler"))
            .arg("--outputs-dir")
            .arg(outputs.path());
        for (k, v) in handler_env(&azurite, &prefix, &options.accounts, &emulator.url) {
            cmd.env(k, v);
        }
        let devhost = spawn_listening("devhost", cmd).await?;

        let endpoint = format!("{}/runtime/webhooks/EventGrid?functionName=OnJobStateChange", devhost.url);
        let status = http
            .post(format!("{}/_emulator/events", emulator.url))
            .json(&json!({"endpoint": endpoint}))
            .send()
            .await?
            .status();
        if !status.is_success() {
            bail!("pointing the emulator's events at devhost answered {status}");
        }
        let service = TableService::from_connection_string(&azurite.connection_string(), reqwest::Client::new())?;
        let store = Store::with_service(service, &prefix);
        Ok(Stack { azurite, emulator, devhost, prefix, outputs, http, options, store })
    }

    /// POST /api/jobs.
    pub async fn submit(&self, body: &Value) -> anyhow::Result<(StatusCode, Value, Option<String>)> {
        let response = self.http.post(format!("{}/api/jobs", self.devhost.url)).json(body).send().await?;
        let status = response.status();
        let location = response.headers().get("location").and_then(|v| v.to_str().ok()).map(str::to_owned);
        Ok((status, response.json().await.context("SubmitJob answered no JSON")?, location))
    }

    /// POST /api/jobs with a raw body and content type.
    pub async fn submit_raw(
        &self,
        body: impl Into<reqwest::Body>,
    ) -> anyhow::Result<(StatusCode, Option<String>, String)> {
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

    /// GET /api/jobs/{id}.
    pub async fn get_job(&self, id: &str) -> anyhow::Result<(StatusCode, Value)> {
        let response = self.http.get(format!("{}/api/jobs/{id}", self.devhost.url)).send().await?;
        Ok((response.status(), response.json().await.context("GetJob answered no JSON")?))
    }

    /// GET /api/status.
    pub async fn status(&self) -> anyhow::Result<Value> {
        let response = self.http.get(format!("{}/api/status", self.devhost.url)).send().await?;
        if response.status() != StatusCode::OK {
            bail!("GetStatus answered {}", response.status());
        }
        Ok(response.json().await?)
    }

    /// Sets an emulator fault on an account.
    pub async fn fault(&self, account: &str, fault: Value) -> anyhow::Result<()> {
        let url = format!("{}/_emulator/accounts/{account}/fault", self.emulator.url);
        let status = self.http.post(url).json(&fault).send().await?.status();
        if !status.is_success() {
            bail!("setting a fault answered {status}");
        }
        Ok(())
    }

    /// Changes the emulator's event delivery.
    pub async fn events(&self, settings: Value) -> anyhow::Result<()> {
        let status =
            self.http.post(format!("{}/_emulator/events", self.emulator.url)).json(&settings).send().await?.status();
        if !status.is_success() {
            bail!("changing event delivery answered {status}");
        }
        Ok(())
    }

    /// Every job the emulator knows.
    pub async fn emulator_jobs(&self) -> anyhow::Result<Vec<Value>> {
        Ok(self.http.get(format!("{}/_emulator/jobs", self.emulator.url)).send().await?.json().await?)
    }

    /// Messages the handler sent on the `alerts` queue.
    pub fn alerts(&self) -> Vec<Value> {
        read_jsonl(&self.outputs.path().join("alerts.jsonl"))
    }

    /// How many rows a table holds.
    pub async fn count_rows(&self, table: &str) -> anyhow::Result<usize> {
        let service = TableService::from_connection_string(&self.azurite.connection_string(), self.http.clone())?;
        let rows: Vec<tables::Entity<Value>> = service.table(table).query("PartitionKey ne ''").await?;
        Ok(rows.len())
    }

    /// Checks invariant 1 for every account: the counter row equals the active attempt rows by state.
    pub async fn assert_counters_exact(&self) -> anyhow::Result<()> {
        for (account, _) in &self.options.accounts {
            // A consistent snapshot: every change of counts rewrites the counter row in the same transaction as
            // the attempt rows, so rows read between two reads of an unchanged counter row match it.
            let (counters, derived) =
                eventually(Duration::from_secs(30), "a quiet moment to read counters", || async {
                    let before = self.store.counters(account).await?;
                    let mut derived = AccountCounters::default();
                    for attempt in self.store.active_attempts(account).await? {
                        derived = derived.moved(None, Some(attempt.state))?;
                    }
                    let after = self.store.counters(account).await?;
                    Ok((before.etag == after.etag).then_some((before.value, derived)))
                })
                .await?;
            if counters != derived {
                bail!("{account}: counter row {counters:?} but active rows give {derived:?}");
            }
        }
        Ok(())
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
