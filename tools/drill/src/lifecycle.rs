//! `drill lifecycle`: the small lifecycle demo. Azurite, the Media Services emulator with two accounts, and
//! devhost running the handler; it submits jobs through the HTTP API, prints each state change as Event Grid
//! reports it, and ends with a summary; it exits non-zero unless every job finished.

use anyhow::{bail, Context};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use testkit::stack::{job_body, Logs, Stack, StackOptions};

/// Options of `drill lifecycle`.
#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// How many jobs to submit.
    #[arg(long, default_value_t = 6)]
    jobs: usize,
    /// Emulated time runs this many times faster than real time.
    #[arg(long, default_value_t = 10.0)]
    time_scale: f64,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 120)]
    timeout_secs: u64,
    /// Where the stack's log and the alerts go (relative to the workspace root, found from the current
    /// directory); its own folder, so the failover drill's files stay as they were.
    #[arg(long, default_value = ".local/lifecycle")]
    out: PathBuf,
}

/// Submits the jobs and watches them run.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let root = testkit::workspace_root()?;
    let out = root.join(&args.out);
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let log_path = out.join("stack.log");
    let _ = std::fs::remove_file(&log_path);

    let mut options = StackOptions::new(testkit::try_workspace_bin("handler")?, root.clone());
    options.time_scale = args.time_scale;
    options.logs = Logs::file(&log_path)?;
    options.outputs_dir = Some(out.clone());
    println!(
        "Starting Azurite, the Media Services emulator and devhost with the handler (logs: {}, alerts: {})",
        log_path.display(),
        out.join("alerts.jsonl").display()
    );
    let stack = Stack::start(options).await?;
    println!("  functions  {}/api", stack.devhost.url);
    println!("  emulator   {}", stack.emulator.url);
    for (name, region) in &stack.options.accounts {
        println!("  account    {name} ({region})");
    }
    println!();

    let started = Instant::now();
    let stamp = |at: Instant| format!("{:>7.2}s", at.duration_since(started).as_secs_f64());
    let mut last: BTreeMap<String, (String, Option<String>)> = BTreeMap::new();
    for i in 1..=args.jobs {
        let id = format!("demo-{i}");
        let (status, body, _) = stack.submit(&job_body(&id)).await?;
        if status != 202 {
            bail!("SubmitJob answered {status}: {body}");
        }
        let account = body["account"].as_str().map(str::to_owned);
        println!("{} {id:<8} submitted, {:<10} on {}", stamp(Instant::now()), text(&body["state"]), place(&body));
        last.insert(id, (text(&body["state"]), account));
    }

    let deadline = Duration::from_secs(args.timeout_secs);
    let mut jobs: BTreeMap<String, Value> = BTreeMap::new();
    while started.elapsed() < deadline {
        for (id, seen) in last.iter_mut() {
            let (_, job) = stack.get_job(id).await?;
            let state = text(&job["state"]);
            if state != seen.0 {
                println!("{} {id:<8} {:<10} -> {:<10} on {}", stamp(Instant::now()), seen.0, state, place(&job));
                seen.0 = state;
            }
            jobs.insert(id.clone(), job);
        }
        if jobs.values().all(|j| is_final(&j["state"])) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let status = stack.status().await?;
    println!("\nSummary after {:.1}s", started.elapsed().as_secs_f64());
    println!("  {:<8} {:<10} {:<16} {:<12} {:>8}", "job", "state", "account", "region", "attempts");
    for (id, job) in &jobs {
        let attempts = job["attempts"].as_array().map_or(0, Vec::len);
        println!(
            "  {id:<8} {:<10} {:<16} {:<12} {attempts:>8}",
            text(&job["state"]),
            text(&job["account"]),
            text(&job["region"])
        );
    }
    for account in status["accounts"].as_array().into_iter().flatten() {
        println!(
            "  {} ({}): in rotation {}, in flight {}",
            text(&account["name"]),
            text(&account["region"]),
            account["inRotation"],
            account["inFlight"]
        );
    }
    let finished = jobs.values().filter(|j| j["state"] == "Finished").count();
    println!("  {finished} of {} jobs finished", args.jobs);
    if finished != args.jobs {
        bail!("{} jobs did not finish", args.jobs - finished);
    }
    Ok(())
}

fn text(v: &Value) -> String {
    v.as_str().unwrap_or("-").to_owned()
}

fn place(job: &Value) -> String {
    format!("{} ({})", text(&job["account"]), text(&job["region"]))
}

fn is_final(state: &Value) -> bool {
    matches!(state.as_str(), Some("Finished" | "Error" | "Canceled"))
}
