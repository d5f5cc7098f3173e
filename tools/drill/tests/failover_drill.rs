//! Runs the real `drill` binary (the failover drill, `--quick`) on its own local stack and checks what it
//! reports: exit status, summary and the HTML report. Nothing here asserts how long anything took; the
//! drill's own waits are generous, and this test only bounds the whole run.

use serde_json::Value;
use std::io::Read;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The whole drill, stack start-up and any binaries it builds included. A quick drill takes well under a
/// minute on an idle machine; this is for a loaded CI machine, and only stops a hung run.
const LIMIT: Duration = Duration::from_secs(600);

/// Reads a child's pipe to the end on a thread, so a chatty child never blocks on a full pipe.
fn collect(mut pipe: impl Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut text = String::new();
        let _ = pipe.read_to_string(&mut text);
        text
    })
}

/// Waits for the child, killing it after `limit`; the exit status (None if killed).
fn wait_bounded(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("waiting for the drill") {
            return Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// What one run of the drill left: its summary, its terminal output, and the folder it wrote.
struct Run {
    summary: Value,
    stdout: String,
    out: PathBuf,
}

/// Runs `drill --quick` with `args` into a folder of its own, and fails the test if the drill did.
fn run_quick_drill(name: &str, args: &[&str]) -> Run {
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let mut child = Command::new(env!("CARGO_BIN_EXE_drill"))
        .arg("--quick")
        .args(args)
        .arg("--out")
        .arg(&out)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting the drill");
    let stdout = collect(child.stdout.take().expect("stdout"));
    let stderr = collect(child.stderr.take().expect("stderr"));
    let status = wait_bounded(&mut child, LIMIT);
    let stdout = stdout.join().unwrap_or_default();
    let stderr = stderr.join().unwrap_or_default();
    let context = format!("stdout:\n{stdout}\nstderr:\n{stderr}\nstack log: {}", out.join("stack.log").display());

    let status = status.unwrap_or_else(|| panic!("the drill did not end within {LIMIT:?}\n{context}"));
    assert!(status.success(), "the drill failed ({status})\n{context}");
    let summary: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).expect("summary.json"))
            .expect("summary.json is JSON");
    Run { summary, stdout, out }
}

/// What every passing drill shows, whatever its fleet: no job lost or completed twice, the failing region
/// removed and readmitted, nothing placed on it while out.
fn assert_the_drill_passed(summary: &Value) {
    assert_eq!(summary["passed"], true, "{summary:#}");
    assert!(summary["accepted"].as_u64() > Some(0), "{summary:#}");
    assert_eq!(summary["finished"], summary["accepted"], "{summary:#}");
    assert_eq!(summary["lost"], serde_json::json!([]), "{summary:#}");
    assert_eq!(summary["completedTwice"], serde_json::json!([]), "{summary:#}");
    assert_eq!(summary["removed"], true, "{summary:#}");
    assert_eq!(summary["readmitted"], true, "{summary:#}");
    assert_eq!(summary["placedWhileOut"], serde_json::json!([]), "nothing lands on a removed region: {summary:#}");
    assert!(summary["alerts"]["RegionRemoved"].as_u64() >= Some(1), "{summary:#}");
    assert!(summary["alerts"]["RegionReadmitted"].as_u64() >= Some(1), "{summary:#}");
}

#[test]
fn the_quick_failover_drill_loses_no_job_completes_none_twice_and_reports_the_removal_and_readmission() {
    let Run { summary, stdout, out } = run_quick_drill("failover-drill", &[]);
    assert_the_drill_passed(&summary);
    assert_eq!(summary["faultyProvider"], "ams", "{summary:#}");
    assert_eq!(summary["movedAcrossProviders"], serde_json::json!([]), "one provider only: {summary:#}");
    assert!(stdout.contains("jobs lost") && stdout.contains("jobs completed twice"), "{stdout}");
    assert!(stdout.contains("RegionRemoved") && stdout.contains("RegionReadmitted"), "{stdout}");

    let alerts = std::fs::read_to_string(out.join("alerts.jsonl")).expect("the drill keeps its alerts in its folder");
    assert!(alerts.contains("\"RegionRemoved\"") && alerts.contains("\"RegionReadmitted\""), "{alerts}");

    let html = std::fs::read_to_string(out.join("report.html")).expect("report.html");
    assert!(html.contains("<svg id=\"chart\""), "the report has the chart");
    for marker in ["stall (fault)", "removal", "outage", "recovery", "re-admission"] {
        assert!(html.contains(&format!("data-marker=\"{marker}\"")), "the chart marks the {marker}");
    }
    assert!(!html.contains("<script src") && !html.contains("<link"), "the report fetches nothing");
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn the_quick_drill_on_a_mixed_fleet_moves_the_failing_mk_io_regions_jobs_to_the_other_providers() {
    let Run { summary, stdout, out } = run_quick_drill("failover-drill-mixed", &["--fleet", "mixed"]);
    assert_the_drill_passed(&summary);
    let providers: Vec<&str> =
        summary["regions"].as_array().into_iter().flatten().filter_map(|r| r["provider"].as_str()).collect();
    assert_eq!(providers, ["ams", "mkio", "rms"], "one region on each provider: {summary:#}");
    assert_eq!(summary["faultyProvider"], "mkio", "{summary:#}");
    // The region is removed for its stuck jobs, and each of those can only move to another provider.
    assert!(
        !summary["movedAcrossProviders"].as_array().is_none_or(Vec::is_empty),
        "stuck jobs moved from MK.IO to AMS or RMS: {summary:#}"
    );
    assert!(stdout.contains("westeurope (MK.IO)") && stdout.contains("francecentral (Ravnur RMS)"), "{stdout}");
    let html = std::fs::read_to_string(out.join("report.html")).expect("report.html");
    assert!(html.contains("westeurope (MK.IO)"), "the report names each region's provider");
    let _ = std::fs::remove_dir_all(&out);
}
