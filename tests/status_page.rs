//! The status page end to end: GetStatus on the local stack with one region taken out by failing
//! submissions and jobs in flight on the other, asked for by headless Chromium (which sends
//! `Accept: text/html` as every browser does). The page Chromium renders names both regions, the removal
//! reason and the jobs in flight; a phone-sized screenshot goes to `.local/status-page/status.png`. JSON
//! stays the answer for callers that do not ask for HTML.

mod support;

use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::{eventually, job_body, options, Stack};

const A: &str = "amswesteurope";
const B: &str = "amsnortheurope";
/// A phone screen in CSS pixels.
const PHONE: (u32, u32) = (390, 844);
/// How long one Chromium run may take on a loaded machine before it counts as hung.
const CHROMIUM_LIMIT: Duration = Duration::from_secs(90);

/// `$CHROMIUM`, else `chromium` on PATH (`scripts/ensure-chromium.sh` installs it).
fn chromium() -> PathBuf {
    if let Some(path) = std::env::var_os("CHROMIUM") {
        return PathBuf::from(path);
    }
    std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .map(|dir| dir.join("chromium"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!("no chromium on PATH: run scripts/ensure-chromium.sh (./dev test does) or set CHROMIUM")
        })
}

/// Runs headless Chromium on `url` with `extra` arguments and a fresh profile; its stdout.
fn run_chromium(url: &str, extra: &[String]) -> String {
    let profile = tempfile::tempdir().expect("profile dir");
    let mut child = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!("--window-size={},{}", PHONE.0, PHONE.1))
        .args(extra)
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting chromium");
    let stdout = child.stdout.take().expect("stdout");
    let stderr = child.stderr.take().expect("stderr");
    let read = |mut pipe: Box<dyn std::io::Read + Send>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = pipe.read_to_string(&mut text);
            text
        })
    };
    let (out, err) = (read(Box::new(stdout)), read(Box::new(stderr)));
    let deadline = Instant::now() + CHROMIUM_LIMIT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting for chromium") {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let (out, err) = (out.join().unwrap_or_default(), err.join().unwrap_or_default());
    let status = status.unwrap_or_else(|| panic!("chromium did not finish within {CHROMIUM_LIMIT:?}\n{err}"));
    assert!(status.success(), "chromium failed ({status}):\n{err}");
    out
}

/// Width and height of a PNG file, from its IHDR chunk.
fn png_size(path: &Path) -> (u32, u32) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    assert!(bytes.len() > 24 && bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "{} is a PNG", path.display());
    let be = |at: usize| u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
    (be(16), be(20))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_status_page_renders_in_chromium_with_the_removed_region_its_reason_and_the_jobs_in_flight(
) -> anyhow::Result<()> {
    let mut opts = options();
    // Real time and a long encode, so the jobs on the healthy region are still in flight when the page is read.
    opts.time_scale = 1.0;
    opts.phases_ms = (500, 500, 120_000);
    for (name, value) in [("SUBMIT_FAILURES_TO_REMOVE", "1"), ("COOLDOWN", "1h"), ("STUCK_AFTER", "1h")] {
        opts.settings.push((name.to_owned(), value.to_owned()));
    }
    let stack = Stack::start(opts).await?;
    stack.fault(A, json!({"mode": "outage"})).await?;
    let mut i = 0;
    eventually(Duration::from_secs(60), "the failing region to be removed", || {
        i += 1;
        let id = format!("page-{i}");
        let stack = &stack;
        async move {
            let (status, body, _) = stack.submit(&job_body(&id)).await?;
            anyhow::ensure!(status == 202, "SubmitJob answered {status}: {body}");
            let status = stack.status().await?;
            let a = status["accounts"].as_array().and_then(|l| l.iter().find(|a| a["name"] == A)).cloned();
            Ok(a.filter(|a| a["inRotation"] == false).map(|_| ()))
        }
    })
    .await?;
    for id in ["page-b1", "page-b2"] {
        let (status, body, _) = stack.submit(&job_body(id)).await?;
        anyhow::ensure!(status == 202 && body["account"] == B, "{body}");
    }

    // JSON stays the default, and is what a caller asking for JSON gets.
    let url = format!("{}/api/status", stack.devhost.url);
    for accept in [None, Some("application/json"), Some("*/*")] {
        let mut request = stack.http.get(&url);
        if let Some(accept) = accept {
            request = request.header("accept", accept);
        }
        let response = request.send().await?;
        let content_type = response.headers().get("content-type").and_then(|v| v.to_str().ok()).map(str::to_owned);
        assert_eq!(content_type.as_deref(), Some("application/json"), "Accept {accept:?}");
        let status: serde_json::Value = response.json().await?;
        assert_eq!(status["accountsInRotation"], 1);
    }
    let status = stack.status().await?;
    let reason = status["accounts"]
        .as_array()
        .and_then(|l| l.iter().find(|a| a["name"] == A))
        .and_then(|a| a["removed"]["reason"].as_str())
        .unwrap_or_default()
        .to_owned();
    assert!(!reason.is_empty(), "{status}");

    // What a browser gets and renders.
    let dom = {
        let url = url.clone();
        tokio::task::spawn_blocking(move || run_chromium(&url, &["--dump-dom".to_owned()])).await?
    };
    assert!(dom.contains("1 of 2 accounts in rotation"), "{dom}");
    for (name, region) in [(A, "westeurope"), (B, "northeurope")] {
        assert!(dom.contains(&format!("data-account=\"{name}\"")) && dom.contains(region), "{name}: {dom}");
    }
    assert!(dom.contains("out of rotation") && dom.contains(&reason), "the removal and its reason: {dom}");
    let in_flight_b = status["accounts"][1]["inFlight"].as_u64().unwrap_or(0);
    assert!(in_flight_b >= 2, "{status}");
    assert!(dom.contains(&format!("in flight <b>{in_flight_b}</b>")), "{dom}");

    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(".local/status-page");
    std::fs::create_dir_all(&dir)?;
    let shot = dir.join("status.png");
    let _ = std::fs::remove_file(&shot);
    let arg = format!("--screenshot={}", shot.display());
    tokio::task::spawn_blocking(move || run_chromium(&url, &[arg])).await?;
    assert_eq!(png_size(&shot), PHONE, "a phone-sized screenshot at {}", shot.display());
    Ok(())
}
