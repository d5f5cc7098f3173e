//! Several instances of the function app on one Azurite and one table prefix, behind a front door, the way
//! Azure Functions runs a scaled-out app: each instance is a devhost running its own handler process, the
//! front door spreads requests (client calls and Event Grid deliveries alike) over the instances that are
//! up, and any instance's handler can be killed with SIGKILL and the instance started again on its port.

use crate::servicebus::ServiceBus;
use crate::stack::{handler_settings, spawn_listening, start_emulator, Process, StackOptions};
use crate::Azurite;
use anyhow::{bail, Context};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// One instance: a devhost on a fixed port, with its own output-binding folder.
pub struct Instance {
    /// The running devhost, `None` while it is down.
    pub devhost: Option<Process>,
    /// Its port, kept across restarts so the front door finds it again.
    pub port: u16,
    /// Where its output bindings are written.
    pub outputs: PathBuf,
}

impl Instance {
    /// Its base URL.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

/// The running cluster.
pub struct Cluster {
    /// Table Storage shared by every instance.
    pub azurite: Azurite,
    /// The Media Services emulator.
    pub emulator: Process,
    /// The instances.
    pub instances: Vec<Instance>,
    /// The front door's base URL.
    pub front_door: String,
    /// The shared table prefix.
    pub prefix: String,
    /// How it was started.
    pub options: StackOptions,
    /// The Service Bus namespace every instance sends outcome notifications to.
    pub service_bus: ServiceBus,
    devhost_bin: PathBuf,
    _outputs_dir: tempfile::TempDir,
    _front: tokio::task::JoinHandle<()>,
}

#[derive(Clone)]
struct FrontDoor {
    ports: Arc<Vec<u16>>,
    next: Arc<AtomicUsize>,
    http: reqwest::Client,
}

/// Forwards a request to the next instance that answers, round robin; 503 when none does (Event Grid then
/// retries, as it would against a real app with no instance up).
async fn forward(State(door): State<FrontDoor>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let path = uri.path_and_query().map(|p| p.as_str().to_owned()).unwrap_or_default();
    let start = door.next.fetch_add(1, Ordering::Relaxed);
    for offset in 0..door.ports.len() {
        let port = door.ports[(start + offset) % door.ports.len()];
        let mut request = door.http.request(method.clone(), format!("http://127.0.0.1:{port}{path}"));
        for (name, value) in &headers {
            if name != "host" && name != "content-length" {
                request = request.header(name, value);
            }
        }
        match request.body(body.clone()).send().await {
            Ok(answer) => {
                let status = answer.status();
                let mut out = HeaderMap::new();
                for (name, value) in answer.headers() {
                    if name != "content-length" && name != "transfer-encoding" {
                        out.insert(name.clone(), value.clone());
                    }
                }
                match answer.bytes().await {
                    Ok(bytes) => return (status, out, bytes).into_response(),
                    // The instance died while answering: the caller sees a broken call, as it would in Azure.
                    Err(_) => return StatusCode::BAD_GATEWAY.into_response(),
                }
            }
            // Not up: try the next instance. Anything sent may have reached a dying one; that is the caller's
            // to retry, exactly as with a real front end.
            Err(e) if e.is_connect() => continue,
            Err(_) => return StatusCode::BAD_GATEWAY.into_response(),
        }
    }
    StatusCode::SERVICE_UNAVAILABLE.into_response()
}

impl Cluster {
    /// Starts Azurite, the emulator (the transform in every account), `instances` devhosts running the
    /// handler on one prefix, and the front door; the emulator's events go to the front door.
    pub async fn start(options: StackOptions, instances: usize) -> anyhow::Result<Cluster> {
        let emulator_bin = crate::try_workspace_bin("ams-emulator")?;
        let devhost_bin = crate::try_workspace_bin("devhost")?;
        let azurite = Azurite::start().await?;
        let emulator = start_emulator(&emulator_bin, &options)?;
        let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build()?;
        crate::stack::create_transforms(&http, &emulator.url, &options).await?;
        let outputs_dir = tempfile::tempdir()?;
        let service_bus = ServiceBus::start(&outputs_dir.path().join("servicebus")).await?;
        let mut list = Vec::with_capacity(instances);
        for i in 0..instances {
            let outputs = outputs_dir.path().join(format!("instance{i}"));
            std::fs::create_dir_all(&outputs)?;
            list.push(Instance { devhost: None, port: crate::try_free_port()?, outputs });
        }
        let door = FrontDoor {
            ports: Arc::new(list.iter().map(|i| i.port).collect()),
            next: Arc::default(),
            http: reqwest::Client::builder().timeout(Duration::from_secs(60)).build()?,
        };
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let front_door = format!("http://{}", listener.local_addr()?);
        let app = axum::Router::new().fallback(forward).with_state(door);
        let front = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        let mut cluster = Cluster {
            azurite,
            emulator,
            instances: list,
            front_door,
            prefix: crate::unique_prefix(),
            options,
            service_bus,
            devhost_bin,
            _outputs_dir: outputs_dir,
            _front: front,
        };
        for i in 0..instances {
            cluster.start_instance(i)?;
        }
        let endpoint = format!("{}/runtime/webhooks/EventGrid?functionName=OnJobStateChange", cluster.front_door);
        let status = http
            .post(format!("{}/_emulator/events", cluster.emulator.url))
            .json(&json!({"endpoint": endpoint}))
            .send()
            .await?
            .status();
        if !status.is_success() {
            bail!("pointing the emulator's events at the front door answered {status}");
        }
        Ok(cluster)
    }

    /// Starts instance `i` (again) on its port.
    pub fn start_instance(&mut self, i: usize) -> anyhow::Result<()> {
        let instance = &self.instances[i];
        let mut cmd = Command::new(&self.devhost_bin);
        cmd.arg("--app-root")
            .arg(&self.options.app_root)
            .args(["--port", &instance.port.to_string(), "--handler"])
            .arg(&self.options.handler)
            .arg("--outputs-dir")
            .arg(&instance.outputs);
        cmd.envs(handler_settings(&self.azurite, &self.prefix, &self.options, &self.emulator.url));
        cmd.env("SERVICE_BUS_ENDPOINT", &self.service_bus.url);
        cmd.envs(self.options.settings.iter().cloned());
        let devhost = spawn_listening("devhost", cmd, &self.options.logs).with_context(|| format!("instance {i}"))?;
        self.instances[i].devhost = Some(devhost);
        Ok(())
    }

    /// Kills instance `i`'s handler with SIGKILL, wherever it is in its work, and waits until its devhost
    /// has gone down with it (as the Functions host does when its worker dies). Returns false if the
    /// instance was not up.
    pub async fn kill_handler(&mut self, i: usize) -> anyhow::Result<bool> {
        let Some(devhost) = self.instances[i].devhost.as_mut() else { return Ok(false) };
        let pid = devhost.pid();
        let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
        let mut killed = false;
        for child in children.split_whitespace() {
            killed |= Command::new("kill").args(["-9", child]).status().is_ok_and(|s| s.success());
        }
        if !killed {
            bail!("instance {i} (devhost {pid}) has no handler process to kill");
        }
        for _ in 0..300 {
            if devhost.exited() {
                self.instances[i].devhost = None;
                return Ok(true);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        bail!("instance {i}'s devhost did not exit after its handler was killed")
    }

    /// Output-binding messages of every instance on `queue` (for example `alerts`).
    pub fn outputs(&self, queue: &str) -> Vec<serde_json::Value> {
        self.instances
            .iter()
            .flat_map(|i| crate::stack::read_jsonl(&i.outputs.join(format!("{queue}.jsonl"))))
            .collect()
    }
}
