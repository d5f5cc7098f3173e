//! `drill mru-bench`: how the two ways of lowering Media Reserved Units compare on the same work.
//!
//! A bursty job trace, deterministic from a seed, is replayed on two local stacks at once, one with
//! `MRU_SCALE_DOWN=on-final` and one with `MRU_SCALE_DOWN=periodic`, each with a single managed account. Both
//! run SweepStuckJobs every `--sweep-every` emulated seconds (it lowers MRUs only in periodic mode). When every
//! job has ended and the MRUs are back down (or a few sweeps later), the emulator's accounting and job
//! histories give: MRU-seconds provisioned per MRU-second busy, MRU updates per job, the median and peak wait
//! in Scheduled, and how many jobs finished, plus how late the submissions landed (the handler's latency, in
//! emulated seconds). The result is printed side by side and written as JSON.

use anyhow::{bail, Context};
use chrono::{DateTime, FixedOffset};
use serde::Serialize;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use testkit::stack::{job_body, Logs, Stack, StackOptions};
use tokio::task::JoinSet;
use tokio::time::{Instant, MissedTickBehavior};

/// The only account of each stack, managed by the product.
const ACCOUNT: &str = "amswesteurope";
/// Its region.
const REGION: &str = "westeurope";
/// Emulated phase lengths in ms (queued, scheduled, processing): a realistic encode of three minutes.
const PHASES_MS: (u64, u64, u64) = (5_000, 10_000, 180_000);
/// Jobs per burst, inclusive.
const BURST_JOBS: (usize, usize) = (5, 20);
/// A burst's jobs arrive within this many emulated seconds.
const BURST_SPAN_SECS: f64 = 5.0;
/// Quiet emulated seconds between the end of a burst and the start of the next, inclusive range.
const GAP_SECS: (f64, f64) = (120.0, 300.0);
/// How often each stack prints a progress line: a replay runs for minutes, and silence looks like a hang.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);
/// Sweeps to wait, once every job has ended, for the MRUs to come down before measuring anyway.
const SETTLE_SWEEPS: u32 = 3;

/// Options of `drill mru-bench`.
#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// Jobs in the trace.
    #[arg(long, default_value_t = 40)]
    pub jobs: usize,
    /// Emulated time runs this many times faster than real time. The handler's own latency grows by the same
    /// factor in emulated time; at 30 its contention under a burst smears the bursts over minutes.
    #[arg(long, default_value_t = 10.0)]
    pub time_scale: f64,
    /// Seed of the trace; the same seed gives the same trace.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Run SweepStuckJobs every this many emulated seconds (in both modes).
    #[arg(long, default_value_t = 60)]
    pub sweep_every: u64,
    /// `maxMru` of the managed account.
    #[arg(long, default_value_t = 10)]
    pub max_mru: u32,
    /// Give up waiting for the jobs after this many real seconds (what ran so far is still measured).
    #[arg(long, default_value_t = 300)]
    pub timeout_secs: u64,
    /// Where the result (result.json), each mode's emulator jobs, the stacks' logs and each mode's alerts
    /// (`{mode}/alerts.jsonl`) go, relative to the workspace root found from the current directory.
    #[arg(long, default_value = ".local/mru-bench")]
    pub out: PathBuf,
}

/// One job of the trace.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Arrival {
    /// When it is submitted, in emulated seconds from the start of the replay.
    pub at: f64,
    /// The burst it belongs to, from 0.
    pub burst: usize,
}

/// SplitMix64: a tiny, well-mixed generator, so the trace depends on the seed alone.
pub(crate) struct SplitMix64(pub(crate) u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in [lo, hi].
    pub(crate) fn between(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.unit()
    }

    /// Uniform whole number in [lo, hi].
    fn count(&mut self, lo: usize, hi: usize) -> usize {
        lo + (self.next_u64() % (hi - lo + 1) as u64) as usize
    }
}

/// The bursty trace of `jobs` jobs for `seed`, in submission order: bursts of 5-20 jobs arriving within 5
/// emulated seconds, separated by 2-5 quiet emulated minutes. The last burst may be smaller.
pub fn trace(jobs: usize, seed: u64) -> Vec<Arrival> {
    let mut rng = SplitMix64(seed);
    let mut arrivals = Vec::with_capacity(jobs);
    let mut start = 0.0;
    let mut burst = 0;
    while arrivals.len() < jobs {
        let size = rng.count(BURST_JOBS.0, BURST_JOBS.1).min(jobs - arrivals.len());
        let mut times: Vec<f64> = (0..size).map(|_| start + rng.between(0.0, BURST_SPAN_SECS)).collect();
        times.sort_by(f64::total_cmp);
        let end = times.last().copied().unwrap_or(start);
        arrivals.extend(times.into_iter().map(|at| Arrival { at, burst }));
        start = end + rng.between(GAP_SECS.0, GAP_SECS.1);
        burst += 1;
    }
    arrivals
}

/// Median and peak of a set of durations (waits, lags).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct WaitStats {
    /// The middle value (the mean of the two middle ones for an even count).
    pub median: f64,
    /// The largest value.
    pub peak: f64,
}

/// Median and peak of `values`; `None` when there are none.
pub fn wait_stats(values: &[f64]) -> Option<WaitStats> {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    let peak = *sorted.last()?;
    let median = if n % 2 == 1 { sorted[n / 2] } else { (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0 };
    Some(WaitStats { median, peak })
}

/// Emulated seconds a job spent between entering Scheduled and entering Processing, from the emulator's
/// `history` (stamped in real time); `None` if it never reached both.
pub fn scheduled_wait(job: &Value, time_scale: f64) -> Option<f64> {
    let entered = |state: &str| -> Option<DateTime<FixedOffset>> {
        job["history"]
            .as_array()?
            .iter()
            .find(|h| h["state"] == state)
            .and_then(|h| h["at"].as_str().and_then(|at| DateTime::parse_from_rfc3339(at).ok()))
    };
    let real = (entered("Processing")? - entered("Scheduled")?).to_std().ok()?;
    Some(real.as_secs_f64() * time_scale)
}

/// How MRUs come down: the value of `MRU_SCALE_DOWN`.
#[derive(Debug, Clone, Copy)]
enum Mode {
    OnFinal,
    Periodic,
}

impl Mode {
    fn setting(self) -> &'static str {
        match self {
            Mode::OnFinal => "on-final",
            Mode::Periodic => "periodic",
        }
    }
}

/// What one mode did with the trace.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ModeResult {
    /// `MRU_SCALE_DOWN`.
    pub mode: &'static str,
    /// Jobs in the trace.
    pub jobs: usize,
    /// Jobs SubmitJob accepted (202).
    pub accepted: usize,
    /// Jobs that ended Finished in the emulator.
    pub finished: usize,
    /// Integral of the account's MRUs over emulated time.
    pub provisioned_mru_seconds: f64,
    /// Integral of min(Processing jobs, MRUs) over emulated time.
    pub busy_mru_seconds: f64,
    /// Provisioned over busy (1 is perfect); `None` if nothing was busy.
    pub provisioned_per_busy: Option<f64>,
    /// MRU writes that changed the value.
    pub mru_updates: u64,
    /// `mru_updates` per job in the trace.
    pub updates_per_job: f64,
    /// Every call to the MRU endpoint, reads included.
    pub mru_calls: u64,
    /// Emulated seconds from Scheduled to Processing, over the jobs that got there.
    pub wait_in_scheduled: Option<WaitStats>,
    /// Emulated seconds from a job's time in the trace to SubmitJob's answer: how much the handler's own
    /// latency spread the bursts out (real latency grows by the time scale).
    pub submit_lag: Option<WaitStats>,
    /// The account's MRUs when measured.
    pub mru_at_end: u64,
    /// Sweeps that ran, and how many of them failed.
    pub sweeps: u32,
    /// Sweeps the host reported as failed.
    pub failed_sweeps: u32,
    /// Whether every job ended before `--timeout-secs`.
    pub completed: bool,
    /// Real seconds from the first submission to the measurement.
    pub real_secs: f64,
}

/// Everything `drill mru-bench` measured, as written to `result.json`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BenchResult {
    /// The trace's seed.
    pub seed: u64,
    /// Jobs in the trace.
    pub jobs: usize,
    /// Jobs in each burst of the trace, in order.
    pub burst_sizes: Vec<usize>,
    /// Emulated seconds from the first to the last submission.
    pub trace_span_secs: f64,
    /// Emulator time scale.
    pub time_scale: f64,
    /// Emulated phase lengths in seconds: queued, scheduled, processing.
    pub phases_secs: [f64; 3],
    /// Emulated seconds between sweeps.
    pub sweep_every_secs: u64,
    /// `maxMru` of the managed account.
    pub max_mru: u32,
    /// One result per mode: on-final, then periodic.
    pub modes: Vec<ModeResult>,
}

/// Runs the benchmark: both modes at once, then the table and `result.json`.
pub async fn run(args: Args) -> anyhow::Result<()> {
    if args.jobs == 0 {
        bail!("--jobs must be at least 1");
    }
    if !(args.time_scale.is_finite() && args.time_scale > 0.0) {
        bail!("--time-scale must be a positive number");
    }
    if args.sweep_every == 0 || args.max_mru == 0 {
        bail!("--sweep-every and --max-mru must be at least 1");
    }
    let root = testkit::workspace_root()?;
    let out = root.join(&args.out);
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let handler = testkit::try_workspace_bin("handler")?;

    let arrivals = trace(args.jobs, args.seed);
    let bursts = arrivals.last().map_or(0, |a| a.burst + 1);
    let burst_sizes: Vec<usize> = (0..bursts).map(|b| arrivals.iter().filter(|a| a.burst == b).count()).collect();
    let span = arrivals.last().map_or(0.0, |a| a.at);
    println!(
        "Replaying {} jobs in {bursts} bursts ({burst_sizes:?}) over {span:.0} emulated s (seed {}), at {}x, on two stacks: \
         MRU_SCALE_DOWN=on-final and =periodic, maxMru {}, sweep every {} emulated s (logs in {})",
        args.jobs,
        args.seed,
        args.time_scale,
        args.max_mru,
        args.sweep_every,
        out.display()
    );
    let (on_final, periodic) = tokio::try_join!(
        replay(Mode::OnFinal, &args, &arrivals, &handler, &root, &out),
        replay(Mode::Periodic, &args, &arrivals, &handler, &root, &out)
    )?;

    let result = BenchResult {
        seed: args.seed,
        jobs: args.jobs,
        burst_sizes,
        trace_span_secs: span,
        time_scale: args.time_scale,
        phases_secs: [PHASES_MS.0, PHASES_MS.1, PHASES_MS.2].map(|ms| ms as f64 / 1000.0),
        sweep_every_secs: args.sweep_every,
        max_mru: args.max_mru,
        modes: vec![on_final, periodic],
    };
    println!();
    print!("{}", table(&result.modes));
    let path = out.join("result.json");
    let json = serde_json::to_string_pretty(&result)?;
    std::fs::write(&path, json + "\n").with_context(|| format!("writing {}", path.display()))?;
    println!("\nWritten to {}", path.display());
    Ok(())
}

/// Replays `arrivals` on a fresh stack in `mode` and measures it.
async fn replay(
    mode: Mode,
    args: &Args,
    arrivals: &[Arrival],
    handler: &Path,
    root: &Path,
    out: &Path,
) -> anyhow::Result<ModeResult> {
    let name = mode.setting();
    let log_path = out.join(format!("{name}.log"));
    let _ = std::fs::remove_file(&log_path);
    let mut options = StackOptions::new(handler.to_path_buf(), root.to_path_buf());
    options.accounts = vec![(ACCOUNT, REGION)];
    options.managed = vec![(ACCOUNT, args.max_mru)];
    options.time_scale = args.time_scale;
    options.phases_ms = PHASES_MS;
    options.settings = vec![("MRU_SCALE_DOWN".to_owned(), name.to_owned())];
    options.logs = Logs::file(&log_path).with_context(|| format!("opening {}", log_path.display()))?;
    options.outputs_dir = Some(out.join(name));
    let stack = Arc::new(Stack::start(options).await.with_context(|| format!("starting the {name} stack"))?);
    println!("  [{name}] stack up, replaying");

    let scale = args.time_scale;
    let real = move |emulated: f64| Duration::from_secs_f64(emulated / scale);
    let started = Instant::now();
    let mut submissions = JoinSet::new();
    for (i, arrival) in arrivals.iter().enumerate() {
        let stack = Arc::clone(&stack);
        let at = started + real(arrival.at);
        submissions.spawn(async move {
            tokio::time::sleep_until(at).await;
            let id = format!("bench-{:03}", i + 1);
            let (status, body, _) = stack.submit(&job_body(&id)).await?;
            if status != 202 {
                bail!("SubmitJob answered {status} for {id}: {body}");
            }
            Ok(at.elapsed())
        });
    }

    let period = real(args.sweep_every as f64);
    let mut ticker = tokio::time::interval_at(started + period, period);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let deadline = started + Duration::from_secs(args.timeout_secs);
    let (mut accepted, mut sweeps, mut failed_sweeps, mut settling) = (0, 0, 0, 0);
    let mut last_progress: Option<Instant> = None;
    let mut lags = Vec::with_capacity(arrivals.len());
    let completed = loop {
        ticker.tick().await;
        if stack.sweep().await? {
            sweeps += 1;
        } else {
            failed_sweeps += 1;
        }
        while let Some(joined) = submissions.try_join_next() {
            match joined {
                Ok(Ok(lag)) => {
                    accepted += 1;
                    lags.push(lag.as_secs_f64() * scale);
                }
                Ok(Err(error)) => eprintln!("  [{name}] {error:#}"),
                Err(error) => eprintln!("  [{name}] a submission did not complete: {error}"),
            }
        }
        if last_progress.is_none_or(|at| at.elapsed() >= PROGRESS_EVERY) {
            last_progress = Some(Instant::now());
            let jobs = stack.emulator_jobs().await?;
            let ended = jobs.iter().filter(|j| is_final(&j["state"])).count();
            let mru = stack.emulator_account(ACCOUNT).await?["mru"]["current"].as_u64().unwrap_or(0);
            println!(
                "  [{name}] {:>5.0} s: {accepted}/{} submitted, {ended} ended, {mru} MRUs, {sweeps} sweeps",
                started.elapsed().as_secs_f64(),
                arrivals.len()
            );
        }
        if submissions.is_empty() {
            let jobs = stack.emulator_jobs().await?;
            if jobs.len() >= accepted && jobs.iter().all(|j| is_final(&j["state"])) {
                if settling == 0 {
                    println!("  [{name}] every job ended after {:.1} s", started.elapsed().as_secs_f64());
                }
                settling += 1;
                let mru = &stack.emulator_account(ACCOUNT).await?["mru"];
                if mru["current"].as_u64() == Some(0) || settling > SETTLE_SWEEPS {
                    break true;
                }
            }
        }
        if Instant::now() >= deadline {
            eprintln!("  [{name}] not every job ended within {} s; measuring what ran", args.timeout_secs);
            break false;
        }
    };
    submissions.abort_all();
    let real_secs = started.elapsed().as_secs_f64();

    let account = stack.emulator_account(ACCOUNT).await?;
    let jobs = stack.emulator_jobs().await?;
    let mru = &account["mru"];
    let provisioned = mru["provisionedMruSeconds"].as_f64().unwrap_or(0.0);
    let busy = mru["busyMruSeconds"].as_f64().unwrap_or(0.0);
    let updates = mru["updates"].as_u64().unwrap_or(0);
    let waits: Vec<f64> = jobs.iter().filter_map(|j| scheduled_wait(j, scale)).collect();
    let jobs_path = out.join(format!("{name}-jobs.json"));
    std::fs::write(&jobs_path, serde_json::to_string_pretty(&jobs)? + "\n")
        .with_context(|| format!("writing {}", jobs_path.display()))?;
    Ok(ModeResult {
        mode: name,
        jobs: arrivals.len(),
        accepted,
        finished: jobs.iter().filter(|j| j["state"] == "Finished").count(),
        provisioned_mru_seconds: provisioned,
        busy_mru_seconds: busy,
        provisioned_per_busy: (busy > 0.0).then(|| provisioned / busy),
        mru_updates: updates,
        updates_per_job: updates as f64 / arrivals.len() as f64,
        mru_calls: mru["calls"].as_u64().unwrap_or(0),
        wait_in_scheduled: wait_stats(&waits),
        submit_lag: wait_stats(&lags),
        mru_at_end: mru["current"].as_u64().unwrap_or(0),
        sweeps,
        failed_sweeps,
        completed,
        real_secs,
    })
}

fn is_final(state: &Value) -> bool {
    matches!(state.as_str(), Some("Finished" | "Error" | "Canceled"))
}

/// The results side by side, one column per mode.
fn table(modes: &[ModeResult]) -> String {
    let cells = |cell: &dyn Fn(&ModeResult) -> String| modes.iter().map(cell).collect::<Vec<_>>();
    let or_dash = |v: Option<f64>, digits: usize| v.map_or("-".to_owned(), |v| format!("{v:.digits$}"));
    let rows: Vec<(&str, Vec<String>)> = vec![
        ("MRU_SCALE_DOWN", cells(&|m| m.mode.to_owned())),
        ("jobs finished", cells(&|m| format!("{}/{}", m.finished, m.jobs))),
        ("MRU-s provisioned / busy", cells(&|m| or_dash(m.provisioned_per_busy, 2))),
        ("  MRU-s provisioned", cells(&|m| format!("{:.0}", m.provisioned_mru_seconds))),
        ("  MRU-s busy", cells(&|m| format!("{:.0}", m.busy_mru_seconds))),
        ("MRU updates per job", cells(&|m| format!("{:.2}", m.updates_per_job))),
        ("  MRU updates", cells(&|m| m.mru_updates.to_string())),
        ("wait in Scheduled, median (s)", cells(&|m| or_dash(m.wait_in_scheduled.map(|w| w.median), 1))),
        ("wait in Scheduled, peak (s)", cells(&|m| or_dash(m.wait_in_scheduled.map(|w| w.peak), 1))),
        ("submit lag, median (s)", cells(&|m| or_dash(m.submit_lag.map(|w| w.median), 1))),
        ("submit lag, peak (s)", cells(&|m| or_dash(m.submit_lag.map(|w| w.peak), 1))),
        ("MRUs at the end", cells(&|m| m.mru_at_end.to_string())),
        ("sweeps (failed)", cells(&|m| format!("{} ({})", m.sweeps, m.failed_sweeps))),
        ("real seconds", cells(&|m| format!("{:.1}", m.real_secs))),
    ];
    let label_width = rows.iter().map(|(label, _)| label.len()).max().unwrap_or(0);
    let mut text = String::new();
    for (label, values) in &rows {
        text.push_str(&format!("{label:<label_width$}"));
        for value in values {
            text.push_str(&format!("  {value:>10}"));
        }
        text.push('\n');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_same_seed_gives_the_same_trace_and_another_seed_another() {
        assert_eq!(trace(60, 7), trace(60, 7));
        assert_ne!(trace(60, 7), trace(60, 8));
        assert_eq!(trace(60, 7).len(), 60);
        assert_eq!(trace(1, 7).len(), 1);
    }

    #[test]
    fn the_trace_comes_in_bursts_of_five_to_twenty_jobs_separated_by_quiet_minutes() {
        for seed in 0..20 {
            let arrivals = trace(100, seed);
            assert!(arrivals.windows(2).all(|w| w[0].at <= w[1].at), "in submission order");
            let bursts = arrivals.last().map_or(0, |a| a.burst + 1);
            assert!(bursts >= 5, "100 jobs need at least 5 bursts, got {bursts}");
            let mut previous_end = None;
            for b in 0..bursts {
                let jobs: Vec<f64> = arrivals.iter().filter(|a| a.burst == b).map(|a| a.at).collect();
                assert!(jobs.len() <= 20, "burst {b} of seed {seed} has {} jobs", jobs.len());
                if b + 1 < bursts {
                    assert!(jobs.len() >= 5, "burst {b} of seed {seed} has {} jobs", jobs.len());
                }
                let (first, last) = (jobs[0], jobs[jobs.len() - 1]);
                assert!(last - first <= BURST_SPAN_SECS, "burst {b} spreads over {} s", last - first);
                if let Some(end) = previous_end {
                    let gap = first - end;
                    assert!((GAP_SECS.0..=GAP_SECS.1 + BURST_SPAN_SECS).contains(&gap), "gap of {gap} s");
                }
                previous_end = Some(last);
            }
        }
    }

    #[test]
    fn the_median_is_the_middle_wait_and_the_peak_the_longest() {
        assert_eq!(wait_stats(&[]), None);
        assert_eq!(wait_stats(&[4.0]), Some(WaitStats { median: 4.0, peak: 4.0 }));
        assert_eq!(wait_stats(&[30.0, 10.0, 20.0]), Some(WaitStats { median: 20.0, peak: 30.0 }));
        assert_eq!(wait_stats(&[10.0, 40.0, 20.0, 30.0]), Some(WaitStats { median: 25.0, peak: 40.0 }));
    }

    #[test]
    fn the_wait_runs_from_scheduled_to_processing_in_emulated_seconds() {
        let job = json!({"history": [
            {"state": "Queued", "at": "2024-01-01T00:00:00.0000000Z"},
            {"state": "Scheduled", "at": "2024-01-01T00:00:01.0000000Z"},
            {"state": "Processing", "at": "2024-01-01T00:00:01.5000000Z"},
            {"state": "Finished", "at": "2024-01-01T00:00:09.0000000Z"}
        ]});
        assert_eq!(scheduled_wait(&job, 30.0), Some(15.0));
        let waiting = json!({"history": [{"state": "Scheduled", "at": "2024-01-01T00:00:01.0000000Z"}]});
        assert_eq!(scheduled_wait(&waiting, 30.0), None);
    }
}
