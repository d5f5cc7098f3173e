//! A private Azurite emulator per test: in-memory, on a port of its own,
//! killed when the handle is dropped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _};

use crate::process::{spawn_tied, workspace_root};

/// Azurite's fixed development account.
pub const DEV_ACCOUNT_NAME: &str = "devstoreaccount1";
/// Azurite's well-known development account key (public, not a secret).
pub const DEV_ACCOUNT_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// How long an emulator may take to answer HTTP after being spawned. Node
/// starts Azurite in about a second; a loaded CI machine may take far longer.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// Attempts with a fresh port when another process grabbed ours first.
const PORT_ATTEMPTS: usize = 4;

/// One running emulator process.
struct Service {
    child: Child,
    port: u16,
}

/// A running Azurite (table service, optionally blob service too).
///
/// Each instance uses in-memory storage and its own port, so tests can run
/// in parallel without sharing state. The processes are killed on drop, and
/// on Linux also when the test process dies.
pub struct Azurite {
    table: Service,
    blob: Option<Service>,
    dir: PathBuf,
}

impl std::fmt::Debug for Azurite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Azurite")
            .field("table_port", &self.table.port)
            .field("blob_port", &self.blob.as_ref().map(|b| b.port))
            .field("dir", &self.dir)
            .finish()
    }
}

impl Azurite {
    /// Starts an Azurite table service and waits until it answers HTTP.
    ///
    /// The binary is `$AZURITE_BIN` (the binary itself or the directory
    /// holding the azurite binaries), else `node_modules/.bin/azurite-table`
    /// under the workspace root (`npm ci`), else `azurite-table` on `PATH`.
    pub async fn start() -> anyhow::Result<Azurite> {
        Self::start_services(false).await
    }

    /// Like [`Azurite::start`], plus a blob service (`azurite-blob`) whose
    /// endpoint is added to the connection string.
    pub async fn start_with_blob() -> anyhow::Result<Azurite> {
        Self::start_services(true).await
    }

    async fn start_services(with_blob: bool) -> anyhow::Result<Azurite> {
        let dir = std::env::temp_dir().join(format!(
            "testkit-azurite-{}-{}",
            std::process::id(),
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let table = match start_service("table", &dir).await {
            Ok(s) => s,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dir);
                return Err(e);
            }
        };
        // Built before the blob service starts so a failure there still
        // cleans up the table process through Drop.
        let mut azurite = Azurite { table, blob: None, dir };
        if with_blob {
            azurite.blob = Some(start_service("blob", &azurite.dir).await?);
        }
        Ok(azurite)
    }

    /// Port of the table service on 127.0.0.1.
    pub fn table_port(&self) -> u16 {
        self.table.port
    }

    /// Path-style table endpoint, e.g. `http://127.0.0.1:PORT/devstoreaccount1`.
    pub fn table_endpoint(&self) -> String {
        format!("http://127.0.0.1:{}/{DEV_ACCOUNT_NAME}", self.table.port)
    }

    /// Path-style blob endpoint, if started with [`Azurite::start_with_blob`].
    pub fn blob_endpoint(&self) -> Option<String> {
        self.blob.as_ref().map(|b| format!("http://127.0.0.1:{}/{DEV_ACCOUNT_NAME}", b.port))
    }

    /// Connection string for the development account with explicit endpoints.
    pub fn connection_string(&self) -> String {
        let mut cs = format!(
            "DefaultEndpointsProtocol=http;AccountName={DEV_ACCOUNT_NAME};AccountKey={DEV_ACCOUNT_KEY};TableEndpoint={};",
            self.table_endpoint()
        );
        if let Some(blob) = self.blob_endpoint() {
            cs.push_str(&format!("BlobEndpoint={blob};"));
        }
        cs
    }

    /// Folder holding the emulator logs (`table.log`, `blob.log`).
    pub fn log_dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for Azurite {
    fn drop(&mut self) {
        for s in std::iter::once(&mut self.table).chain(self.blob.as_mut()) {
            let _ = s.child.kill();
            let _ = s.child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Locates `azurite-<service>`; see [`Azurite::start`] for the order.
fn find_binary(service: &str) -> anyhow::Result<PathBuf> {
    let name = format!("azurite-{service}");
    let mut tried = Vec::new();
    if let Some(raw) = std::env::var_os("AZURITE_BIN") {
        let p = PathBuf::from(raw);
        let candidate = if p.is_dir() {
            p.join(&name)
        } else if p.file_name().is_some_and(|f| f == name.as_str()) {
            p
        } else {
            // AZURITE_BIN names another azurite binary: look beside it.
            p.with_file_name(&name)
        };
        if candidate.is_file() {
            return Ok(candidate);
        }
        tried.push(format!("$AZURITE_BIN → {}", candidate.display()));
    }
    if let Ok(root) = workspace_root() {
        let candidate = root.join("node_modules/.bin").join(&name);
        if candidate.is_file() {
            return Ok(candidate);
        }
        tried.push(candidate.display().to_string());
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let candidate = dir.join(&name);
            if candidate.is_file() {
                return Ok(candidate);
            }
        }
        tried.push(format!("{name} on PATH"));
    }
    bail!("{name} not found (tried {}); run `npm ci` at the workspace root or set AZURITE_BIN", tried.join(", "))
}

async fn start_service(service: &str, dir: &Path) -> anyhow::Result<Service> {
    let bin = find_binary(service)?;
    let log_path = dir.join(format!("{service}.log"));
    let mut last_err = anyhow!("no attempt made");
    for _ in 0..PORT_ATTEMPTS {
        // Azurite takes port 0 but does not say which port it got, so pick
        // one here; another process may grab it first, hence the retries.
        let port = crate::try_free_port().context("finding a free port")?;
        let log = std::fs::File::create(&log_path).with_context(|| format!("creating {}", log_path.display()))?;
        let mut cmd = Command::new(&bin);
        cmd.current_dir(dir)
            .args([format!("--{service}Host"), "127.0.0.1".into(), format!("--{service}Port"), port.to_string()])
            .args(["--inMemoryPersistence", "--skipApiVersionCheck", "--disableTelemetry", "--loose"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().context("duplicating log handle")?)
            .stderr(log);
        let child = spawn_tied(cmd).with_context(|| format!("spawning {}", bin.display()))?;
        let mut svc = Service { child, port };
        match wait_ready(&mut svc, &log_path).await {
            Ok(()) => return Ok(svc),
            Err(e) => {
                let _ = svc.child.kill();
                let _ = svc.child.wait();
                let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                let port_taken = log.contains("EADDRINUSE");
                last_err = e.context(format!("azurite-{service} log:\n{log}"));
                if !port_taken {
                    break;
                }
            }
        }
    }
    Err(last_err)
}

/// Polls until the service answers any HTTP response, the process exits, or
/// [`READY_TIMEOUT`] passes.
async fn wait_ready(svc: &mut Service, log_path: &Path) -> anyhow::Result<()> {
    let http = reqwest::Client::builder().timeout(Duration::from_secs(2)).build().context("building HTTP client")?;
    let url = format!("http://127.0.0.1:{}/{DEV_ACCOUNT_NAME}", svc.port);
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        if let Some(status) = svc.child.try_wait().context("checking azurite")? {
            bail!("azurite exited with {status} before answering (log: {})", log_path.display());
        }
        if http.get(&url).send().await.is_ok() {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("azurite did not answer on port {} within {READY_TIMEOUT:?}", svc.port);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
