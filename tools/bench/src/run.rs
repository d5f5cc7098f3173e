//! The pieces a benchmark phase is made of: handler instances started the way the Functions host starts
//! them, invocations, load at a fixed concurrency, percentiles, and the counter check.

use ams_failover::domain::AccountCounters;
use ams_failover::store::Store;
use serde_json::{json, Value};
use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::process::{Child, Command};

/// A handler process on its own port.
pub struct Handler {
    _child: Child,
    /// Its base URL.
    pub url: String,
    http: reqwest::Client,
}

impl Handler {
    /// Starts `binary` with `settings` and waits until `GET /` answers; also returns how long that took from
    /// the exec. Its warnings and errors are appended to `log`, if given.
    pub async fn start(
        binary: &Path,
        settings: &[(String, String)],
        log: Option<&Path>,
    ) -> anyhow::Result<(Handler, Duration)> {
        let port = testkit::free_port();
        let stderr = match log {
            Some(path) => Stdio::from(std::fs::OpenOptions::new().create(true).append(true).open(path)?),
            None => Stdio::null(),
        };
        let mut cmd = Command::new(binary);
        cmd.env("FUNCTIONS_CUSTOMHANDLER_PORT", port.to_string())
            .envs(settings.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(stderr)
            .stdin(Stdio::null())
            .kill_on_drop(true);
        let url = format!("http://127.0.0.1:{port}");
        let started = Instant::now();
        let child = cmd.spawn()?;
        let ready = first_answer(port, started).await?;
        let http = reqwest::Client::builder().pool_max_idle_per_host(64).build()?;
        Ok((Handler { _child: child, url, http }, ready))
    }

    /// Invokes a function the way the host does; the host-facing status and body.
    pub async fn invoke(&self, function: &str, payload: &Value) -> anyhow::Result<(u16, Value)> {
        let response = self
            .http
            .post(format!("{}/{function}", self.url))
            .header("Content-Type", "application/json; charset=utf-8")
            .header("X-Azure-Functions-InvocationId", uuid::Uuid::new_v4().to_string())
            .json(payload)
            .send()
            .await?;
        let status = response.status().as_u16();
        Ok((status, response.json().await.unwrap_or(Value::Null)))
    }

    /// Submits job `id`; the status inside the HTTP output (202 when accepted).
    pub async fn submit(&self, id: &str) -> anyhow::Result<u16> {
        let body = testkit::stack::job_body(id).to_string();
        let payload = testkit::stack::http_request("POST", "http://localhost:7071/api/jobs", json!({}), Some(&body));
        let (status, answer) = self.invoke("SubmitJob", &payload).await?;
        anyhow::ensure!(status == 200, "SubmitJob invocation answered {status}: {answer}");
        Ok(answer["Outputs"]["res"]["statusCode"].as_u64().unwrap_or(0) as u16)
    }
}

/// Polls `127.0.0.1:port` with a new connection each time until `GET /` is answered; the time since
/// `started`.
pub async fn first_answer(port: u16, started: Instant) -> anyhow::Result<Duration> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    while started.elapsed() < Duration::from_secs(30) {
        if let Ok(mut stream) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
            let request = b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
            if stream.write_all(request).await.is_ok() {
                let mut first = [0u8; 12];
                if stream.read_exact(&mut first).await.is_ok() && first.starts_with(b"HTTP/1.1 200") {
                    return Ok(started.elapsed());
                }
            }
        }
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
    anyhow::bail!("nothing answered GET / on port {port} within 30 s")
}

/// What a run of `n` operations at a fixed concurrency measured.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Load {
    /// Operations.
    pub n: usize,
    /// Concurrent workers.
    pub concurrency: usize,
    /// Operations per second over the whole run.
    pub rate: f64,
    /// Median latency, ms.
    pub p50_ms: f64,
    /// 99th percentile latency, ms.
    pub p99_ms: f64,
    /// Operations that failed.
    pub failures: usize,
}

/// Runs `op(i)` for `i` in `0..n` on `concurrency` workers; each `op` says whether it succeeded.
pub async fn load<F, Fut>(n: usize, concurrency: usize, op: F) -> Load
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let next = Arc::new(AtomicUsize::new(0));
    let op = Arc::new(op);
    let started = Instant::now();
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let (next, op) = (next.clone(), op.clone());
            tokio::spawn(async move {
                let mut times = Vec::new();
                let mut failures = 0;
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    if i >= n {
                        return (times, failures);
                    }
                    let t = Instant::now();
                    if !op(i).await {
                        failures += 1;
                    }
                    times.push(t.elapsed());
                }
            })
        })
        .collect();
    let mut times = Vec::with_capacity(n);
    let mut failures = 0;
    for worker in workers {
        if let Ok((t, f)) = worker.await {
            times.extend(t);
            failures += f;
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    Load {
        n,
        concurrency,
        rate: n as f64 / elapsed.max(1e-9),
        p50_ms: percentile(&mut times, 0.50),
        p99_ms: percentile(&mut times, 0.99),
        failures,
    }
}

/// The `q` quantile of `times`, in ms (nearest rank).
pub fn percentile(times: &mut [Duration], q: f64) -> f64 {
    if times.is_empty() {
        return 0.0;
    }
    times.sort();
    let rank = ((q * times.len() as f64).ceil() as usize).clamp(1, times.len());
    times[rank - 1].as_secs_f64() * 1000.0
}

/// The median of `values`.
pub fn median(values: &mut [f64]) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}

/// Checks that every account's counters (the sum of its shards) equal its active attempt rows by state.
pub async fn counters_exact(store: &Store, accounts: &[&str]) -> anyhow::Result<u32> {
    let mut in_flight = 0;
    for account in accounts {
        let counters = store.account(account).await?.counters;
        let mut derived = AccountCounters::default();
        for attempt in store.active_attempts(account).await? {
            derived = derived.moved(None, Some(attempt.state), attempt.units())?;
        }
        anyhow::ensure!(
            counters == derived,
            "{account}: counters say {counters:?} but the active rows give {derived:?}"
        );
        in_flight += counters.in_flight();
    }
    Ok(in_flight)
}
