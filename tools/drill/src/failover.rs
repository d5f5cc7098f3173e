//! `drill` (the default command): a failover drill on the local stack.
//!
//! Three Media Services accounts in three regions take a steady stream of jobs. One region first **stalls**
//! (its jobs stop leaving Scheduled), the sweep notices the stuck jobs, takes the region out of rotation and
//! moves them; then the region goes **down** (every Media Services call fails), which changes nothing for new
//! jobs because it is already out; then it **recovers**, and once its cool-down has passed a probe succeeds,
//! the region is back in rotation and jobs land there again.
//!
//! While it runs, the drill samples `GET /api/status` every 250 ms, reads the handler's alerts as devhost
//! writes them and watches the emulator's jobs for moves, printing a live timeline. At the end it reads every
//! job (`GET /api/jobs/{id}`) and the emulator's jobs and prints a summary: jobs submitted, finished, lost
//! (accepted but not Finished) and completed twice (more than one Finished attempt), jobs encoded twice
//! (wasted work, for information), time from the fault to the removal, time until every stuck job was
//! running elsewhere, and time from the recovery to the re-admission. It writes `report.html` (summary,
//! chart, timeline), `summary.json` and the stack's log `stack.log` to `--out`, and exits non-zero if a job
//! was lost or completed twice, or if the region was not removed or not readmitted.
//!
//! Everything is minutes scaled down to seconds: the handler's thresholds are a few seconds and a job takes
//! about four.

use crate::mru_bench::SplitMix64;
use crate::report::{self, Line, Marker, RegionSample, Report, Sample};
use anyhow::{bail, Context};
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;
use testkit::stack::{job_body, Logs, Stack, StackOptions};
use tokio::task::JoinSet;
use tokio::time::{Instant, MissedTickBehavior};

/// One region of the drill's fleet: its account and the provider the account speaks as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
struct Region {
    account: &'static str,
    region: &'static str,
    /// `ams`, `rms` or `mkio`, as `MEDIA_ACCOUNTS` and the emulator spell it.
    provider: &'static str,
}

impl Region {
    const fn new(account: &'static str, region: &'static str, provider: &'static str) -> Region {
        Region { account, region, provider }
    }

    /// The provider's name as a reader knows it.
    fn provider_label(&self) -> &'static str {
        match self.provider {
            "rms" => "Ravnur RMS",
            "mkio" => "MK.IO",
            _ => "AMS",
        }
    }

    /// `westeurope (MK.IO)`: the region and its provider, as the timeline and the report name it.
    fn label(&self) -> String {
        format!("{} ({})", self.region, self.provider_label())
    }
}

/// Which providers the drill's three regions speak as.
#[derive(clap::ValueEnum, Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Fleet {
    /// Three Azure Media Services accounts.
    #[default]
    Ams,
    /// One region on each provider: AMS, MK.IO and Ravnur RMS. With the default seed the MK.IO region fails,
    /// so its jobs move to the other two providers.
    Mixed,
}

impl Fleet {
    /// The drill's folder under the workspace root, one per fleet so neither run overwrites the other.
    fn default_out(self) -> PathBuf {
        PathBuf::from(match self {
            Fleet::Ams => ".local/drill",
            Fleet::Mixed => ".local/drill-mixed",
        })
    }

    /// The regions, one account each. With the default seed the second one fails.
    fn regions(self) -> &'static [Region; 3] {
        const AMS: [Region; 3] = [
            Region::new("amsnortheurope", "northeurope", "ams"),
            Region::new("amswesteurope", "westeurope", "ams"),
            Region::new("amsfrancecentral", "francecentral", "ams"),
        ];
        const MIXED: [Region; 3] = [
            Region::new("amsnortheurope", "northeurope", "ams"),
            Region::new("mkiowesteurope", "westeurope", "mkio"),
            Region::new("rmsfrancecentral", "francecentral", "rms"),
        ];
        match self {
            Fleet::Ams => &AMS,
            Fleet::Mixed => &MIXED,
        }
    }
}

/// Emulated phases (queued, scheduled, processing) in emulated ms, at [`TIME_SCALE`]: a healthy job spends
/// 0.5 s queued, 0.5 s scheduled and 3 s processing.
const PHASES_MS: (u64, u64, u64) = (1_000, 1_000, 6_000);
/// Emulated time runs this many times faster than real time.
const TIME_SCALE: f64 = 2.0;
/// `STUCK_AFTER`: eight times a healthy job's 0.5 s in Scheduled, so events delayed on a busy machine do not
/// make a healthy region look stuck, yet a stalled region is noticed within about five seconds.
const STUCK_AFTER_SECS: u64 = 4;
/// `RECONCILE_AFTER`: longer than `STUCK_AFTER`, so a stalled job is judged stuck rather than merely quiet.
const RECONCILE_AFTER_SECS: u64 = 5;
/// `COOLDOWN_MAX`: the drill removes the region once, so this only has to be above the cool-down.
const COOLDOWN_MAX_SECS: u64 = 40;

/// How often GetStatus is sampled.
const SAMPLE_EVERY: Duration = Duration::from_millis(250);
/// How often alerts and the emulator's jobs are read.
const WATCH_EVERY: Duration = Duration::from_millis(500);
/// How often the terminal gets a line with the in-flight jobs per region.
const TICK_EVERY_SECS: f64 = 3.0;

// The limits below are many times what the drill needs on an idle machine (removal in about 5 s,
// re-admission within a sweep or two, a drain of a few seconds), so a loaded CI machine still finishes; they
// only bound how long a broken product keeps the drill waiting.
/// From the stall to the removal.
const REMOVAL_LIMIT: Duration = Duration::from_secs(90);
/// From the recovery to the re-admission.
const READMISSION_LIMIT: Duration = Duration::from_secs(COOLDOWN_MAX_SECS + 90);
/// From the end of the stream until every accepted job has ended.
const DRAIN_LIMIT: Duration = Duration::from_secs(180);
/// Then until the emulator has no active job and no event to deliver.
const IDLE_LIMIT: Duration = Duration::from_secs(60);

/// Options of the failover drill.
#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// Jobs submitted per second, with jitter (default 2, or 1.5 with --quick).
    #[arg(long)]
    pub jobs_per_second: Option<f64>,
    /// Keep the job stream going for at least this many seconds; it also runs until a few seconds after the
    /// region is back (default 30, or 15 with --quick).
    #[arg(long)]
    pub duration: Option<u64>,
    /// Where report.html, summary.json, the stack's log and the alerts go (relative to the workspace root, found
    /// from the current directory; default `.local/drill`, or `.local/drill-mixed` with `--fleet mixed`).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Shorter everything: a shorter warm-up, cool-down and tail, for tests.
    #[arg(long)]
    pub quick: bool,
    /// Seed of the arrival jitter; it also picks the failing region (1 = westeurope).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// `ams`: three Azure Media Services accounts; `mixed`: one region each on AMS, MK.IO and Ravnur RMS.
    #[arg(long, value_enum, default_value_t = Fleet::Ams)]
    pub fleet: Fleet,
}

/// The drill's timing, from the options.
#[derive(Debug, Clone)]
struct Plan {
    /// Jobs per second.
    rate: f64,
    /// Healthy time before the stall.
    warmup: Duration,
    /// The stream runs at least this long.
    min_stream: Duration,
    /// The handler's `COOLDOWN`.
    cooldown: Duration,
    /// The outage starts this long after the removal, so the sweep can cancel the stuck jobs first.
    outage_after_removal: Duration,
    /// The recovery comes this long after the cool-down has passed, so at least one probe fails first.
    recovery_past_cooldown: Duration,
    /// The stream goes on this long after the re-admission, so jobs land on the region again.
    tail: Duration,
}

impl Plan {
    fn new(args: &Args) -> anyhow::Result<Plan> {
        let (rate, warmup, duration, cooldown, tail) =
            if args.quick { (1.5, 5, 15, 6, 5) } else { (2.0, 8, 30, 10, 8) };
        let rate = args.jobs_per_second.unwrap_or(rate);
        if !(rate.is_finite() && rate > 0.0 && rate <= 50.0) {
            bail!("--jobs-per-second must be above 0 and at most 50, not {rate}");
        }
        Ok(Plan {
            rate,
            warmup: Duration::from_secs(warmup),
            min_stream: Duration::from_secs(args.duration.unwrap_or(duration)),
            cooldown: Duration::from_secs(cooldown),
            outage_after_removal: Duration::from_secs(2),
            recovery_past_cooldown: Duration::from_secs(if args.quick { 2 } else { 3 }),
            tail: Duration::from_secs(tail),
        })
    }

    /// The handler's settings: the product's thresholds, scaled from minutes to seconds.
    fn settings(&self) -> Vec<(String, String)> {
        [
            ("STUCK_AFTER", format!("{STUCK_AFTER_SECS}s")),
            ("RECONCILE_AFTER", format!("{RECONCILE_AFTER_SECS}s")),
            ("COOLDOWN", format!("{}s", self.cooldown.as_secs())),
            ("COOLDOWN_MAX", format!("{COOLDOWN_MAX_SECS}s")),
            ("SUBMIT_FAILURES_TO_REMOVE", "3".to_owned()),
            ("SWEEP_SCHEDULE", "*/1 * * * * *".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }
}

/// How one submission went.
#[derive(Debug, Clone)]
enum Outcome {
    /// 202, with the account it landed on (none while Pending) and its state.
    Accepted { account: Option<String>, state: String },
    /// Anything else, or no answer.
    NotAccepted(String),
}

/// One submission.
#[derive(Debug, Clone)]
struct Submission {
    id: String,
    outcome: Outcome,
}

/// What the drill has seen so far.
#[derive(Default)]
struct State {
    timeline: Vec<Line>,
    samples: Vec<Sample>,
    submissions: Vec<Submission>,
    alerts: Vec<Value>,
    stall_at: Option<f64>,
    outage_at: Option<f64>,
    recovery_at: Option<f64>,
    /// The RegionRemoved alert's time for the failing account.
    removed_alert_at: Option<f64>,
    /// The first sample that showed it out.
    removed_sample_at: Option<f64>,
    /// The RegionReadmitted alert's time for it.
    readmitted_alert_at: Option<f64>,
    /// The first sample that showed it back.
    readmitted_sample_at: Option<f64>,
    /// When a job first landed on it again after the removal.
    first_back_at: Option<f64>,
    /// When the emulator first showed every stuck job running elsewhere.
    all_moved_at: Option<f64>,
    sample_errors: usize,
}

impl State {
    // GetStatus samples come first: they are at most a sample period late, while an alert's time is to the
    // second (truncated), up to a second early.
    fn removed_at(&self) -> Option<f64> {
        self.removed_sample_at.or(self.removed_alert_at)
    }

    fn readmitted_at(&self) -> Option<f64> {
        self.readmitted_sample_at.or(self.readmitted_alert_at)
    }
}

/// State shared by the drill's tasks, and its clock.
struct Shared {
    started: Instant,
    started_utc: DateTime<Utc>,
    regions: &'static [Region; 3],
    faulty: usize,
    state: Mutex<State>,
}

impl Shared {
    fn new(regions: &'static [Region; 3], faulty: usize) -> Shared {
        Shared {
            started: Instant::now(),
            started_utc: Utc::now(),
            regions,
            faulty,
            state: Mutex::new(State::default()),
        }
    }

    /// The state; a task that panicked while holding it left nothing half-written that matters here.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Seconds since the start.
    fn t(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    /// Seconds since the start of a time the handler or the emulator reported (same machine, same clock).
    fn t_of(&self, at: DateTime<Utc>) -> f64 {
        (at - self.started_utc).num_milliseconds() as f64 / 1000.0
    }

    /// The instant `secs` after the start.
    fn at(&self, secs: f64) -> Instant {
        self.started + Duration::from_secs_f64(secs.max(0.0))
    }

    fn faulty_account(&self) -> &'static str {
        self.regions[self.faulty].account
    }

    fn faulty_region(&self) -> &'static str {
        self.regions[self.faulty].region
    }

    /// The region of `account` with its provider, or the account's name when it is not one of the drill's.
    fn label_of(&self, account: &str) -> String {
        self.regions.iter().find(|r| r.account == account).map_or_else(|| account.to_owned(), Region::label)
    }

    /// Prints a timeline line and keeps it for the report.
    fn log(&self, kind: &str, text: String) {
        let t = self.t();
        println!("{t:>7.2}s  {kind:<6} {text}");
        self.lock().timeline.push(Line { t, kind: kind.to_owned(), text });
    }
}

fn text(v: &Value) -> String {
    v.as_str().unwrap_or("-").to_owned()
}

fn time(v: &Value) -> Option<DateTime<Utc>> {
    v.as_str().and_then(|s| DateTime::parse_from_rfc3339(s).ok()).map(|d| d.with_timezone(&Utc))
}

/// Runs the drill.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let plan = Plan::new(&args)?;
    let root = testkit::workspace_root()?;
    let out = root.join(args.out.clone().unwrap_or_else(|| args.fleet.default_out()));
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let log_path = out.join("stack.log");
    // A fresh log per run; a missing file is fine.
    let _ = std::fs::remove_file(&log_path);
    let fleet = args.fleet.regions();
    let faulty = usize::try_from(args.seed % fleet.len() as u64).unwrap_or(0);

    let mut options = StackOptions::new(testkit::try_workspace_bin("handler")?, root.clone());
    options.accounts = fleet.iter().map(|r| (r.account, r.region)).collect();
    options.providers = fleet.iter().map(|r| (r.account, r.provider)).collect();
    options.time_scale = TIME_SCALE;
    options.phases_ms = PHASES_MS;
    options.settings = plan.settings();
    options.logs = Logs::file(&log_path).with_context(|| format!("opening {}", log_path.display()))?;
    options.outputs_dir = Some(out.clone());
    println!(
        "Failover drill: three regions, a steady stream of jobs; {} stalls, goes down and recovers.",
        fleet[faulty].label()
    );
    println!(
        "Starting Azurite, the Media Services emulator and devhost with the handler (logs: {}, alerts: {})",
        log_path.display(),
        out.join("alerts.jsonl").display()
    );
    let settings: Vec<String> = options.settings.iter().map(|(k, v)| format!("{k}={v}")).collect();
    println!("  handler    {}", settings.join(" "));
    println!(
        "  emulator   time scale {TIME_SCALE}, phases {:?} emulated ms (a job takes about {:.1}s)",
        PHASES_MS,
        (PHASES_MS.0 + PHASES_MS.1 + PHASES_MS.2) as f64 / 1000.0 / TIME_SCALE
    );
    let stack = Arc::new(Stack::start(options).await.context("starting the local stack")?);
    println!("  functions  {}/api", stack.devhost.url);
    println!("  emulator   {}", stack.emulator.url);
    for (i, r) in fleet.iter().enumerate() {
        println!("  account    {} in {}{}", r.account, r.label(), if i == faulty { "  <- fails" } else { "" });
    }
    println!();

    let shared = Arc::new(Shared::new(fleet, faulty));
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = tokio::spawn(sample_status(stack.clone(), shared.clone()));
    let watcher = tokio::spawn(watch(stack.clone(), shared.clone()));
    let submitter = tokio::spawn(submit_stream(stack.clone(), shared.clone(), plan.rate, args.seed, stop.clone()));
    shared.log("PHASE", format!("steady stream of about {} jobs/s over three regions, all healthy", plan.rate));

    let story = story(&stack, &shared, &plan).await;
    if let Err(error) = &story {
        shared.log("PHASE", format!("the drill did not go as planned: {error:#}"));
        // Let the region work again so the jobs can still finish and be counted.
        if let Err(e) = stack.fault(shared.faulty_account(), json!({"mode": "healthy"})).await {
            shared.log("PHASE", format!("could not heal {}: {e:#}", shared.faulty_account()));
        }
    }
    stop.store(true, Ordering::SeqCst);
    if submitter.await.is_err() {
        shared.log("PHASE", "the submitting task failed".to_owned());
    }
    let accepted: Vec<String> = shared
        .lock()
        .submissions
        .iter()
        .filter(|s| matches!(s.outcome, Outcome::Accepted { .. }))
        .map(|s| s.id.clone())
        .collect();
    shared.log("PHASE", format!("stream stopped after {} accepted jobs; waiting for them to finish", accepted.len()));
    drain(&stack, &shared, &accepted).await;
    wait_idle(&stack, &shared).await;

    let mut jobs = BTreeMap::new();
    for id in &accepted {
        match stack.get_job(id).await {
            Ok((status, job)) if status == 200 => {
                jobs.insert(id.clone(), job);
            }
            Ok((status, job)) => shared.log("JOB", format!("{id}: GetJob answered {status}: {job}")),
            Err(e) => shared.log("JOB", format!("{id}: GetJob failed: {e:#}")),
        }
    }
    let ams = stack.emulator_jobs().await.unwrap_or_default();
    sampler.abort();
    watcher.abort();

    let summary = summarize(&shared, &plan, &accepted, &jobs, &ams, story.err().map(|e| format!("{e:#}")));
    print_summary(&summary);
    write_outputs(&out, &shared, &summary)?;
    println!("\nReport: {}", out.join("report.html").display());
    if !summary.passed {
        bail!("the failover drill failed: {}", summary.failures.join("; "));
    }
    Ok(())
}

/// The faults, in order, each once the product has done what the previous one should make it do.
async fn story(stack: &Stack, shared: &Shared, plan: &Plan) -> anyhow::Result<()> {
    let (account, region) = (shared.faulty_account(), shared.faulty_region());
    tokio::time::sleep_until(shared.started + plan.warmup).await;
    stack.fault(account, json!({"mode": "stall"})).await?;
    let stall_at = shared.t();
    shared.lock().stall_at = Some(stall_at);
    shared.log("PHASE", format!("stall: {region} ({account}) still answers, but no job there starts processing"));

    let Some(removed_at) = wait_for(shared, REMOVAL_LIMIT, State::removed_at).await else {
        bail!("{region} was not taken out of rotation within {}s of the stall", REMOVAL_LIMIT.as_secs());
    };
    tokio::time::sleep_until(shared.at(removed_at) + plan.outage_after_removal).await;
    stack.fault(account, json!({"mode": "outage"})).await?;
    let outage_at = shared.t();
    shared.lock().outage_at = Some(outage_at);
    shared.log(
        "PHASE",
        format!("outage: every Media Services call to {account} fails with 503; it is out of rotation, so no job is sent there"),
    );

    let cooldown_end = removed_at + plan.cooldown.as_secs_f64();
    let recover_at = (cooldown_end + plan.recovery_past_cooldown.as_secs_f64()).max(outage_at + 3.0);
    tokio::time::sleep_until(shared.at(recover_at)).await;
    stack.fault(account, json!({"mode": "healthy"})).await?;
    shared.lock().recovery_at = Some(shared.t());
    shared.log(
        "PHASE",
        format!("recovery: {region} answers again; a successful probe after its cool-down brings it back"),
    );

    let Some(back_at) = wait_for(shared, READMISSION_LIMIT, State::readmitted_at).await else {
        bail!("{region} was not back in rotation within {}s of the recovery", READMISSION_LIMIT.as_secs());
    };
    let end = (shared.started + plan.min_stream).max(shared.at(back_at) + plan.tail);
    tokio::time::sleep_until(end).await;
    Ok(())
}

/// Polls the shared state until `get` yields a value, for at most `limit`.
async fn wait_for(shared: &Shared, limit: Duration, get: impl Fn(&State) -> Option<f64>) -> Option<f64> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = get(&shared.lock()) {
            return Some(v);
        }
        if Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Submits jobs until `stop`, at about `rate` per second. Each submission runs on its own task, so a slow
/// answer does not hold up the stream.
async fn submit_stream(stack: Arc<Stack>, shared: Arc<Shared>, rate: f64, seed: u64, stop: Arc<AtomicBool>) {
    let mut rng = SplitMix64(seed);
    let mut tasks = JoinSet::new();
    let mut next = Instant::now();
    let mut n = 0u32;
    while !stop.load(Ordering::SeqCst) {
        n += 1;
        tasks.spawn(submit_one(stack.clone(), shared.clone(), format!("drill-{n:04}")));
        // Jitter, so arrivals do not line up with the once-a-second sweep.
        next += Duration::from_secs_f64(rng.between(0.5, 1.5) / rate);
        // After a stall of the drill itself, carry on at the rate rather than catching up in a burst.
        next = next.max(Instant::now() - Duration::from_millis(500));
        tokio::time::sleep_until(next).await;
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
}

async fn submit_one(stack: Arc<Stack>, shared: Arc<Shared>, id: String) {
    let outcome = match stack.submit(&job_body(&id)).await {
        Ok((status, body, _)) if status == 202 => {
            Outcome::Accepted { account: body["account"].as_str().map(str::to_owned), state: text(&body["state"]) }
        }
        Ok((status, body, _)) => Outcome::NotAccepted(format!("SubmitJob answered {status}: {body}")),
        Err(e) => Outcome::NotAccepted(format!("no answer from SubmitJob: {e:#}")),
    };
    match &outcome {
        Outcome::NotAccepted(why) => shared.log("JOB", format!("{id} was not accepted: {why}")),
        Outcome::Accepted { state, .. } if state == "Pending" => {
            shared.log("JOB", format!("{id} accepted but kept Pending: no account took it"))
        }
        Outcome::Accepted { account: Some(account), .. } if account == shared.faulty_account() => {
            let t = shared.t();
            let first_back = {
                let mut state = shared.lock();
                let first = state.removed_at().is_some() && state.first_back_at.is_none();
                if first {
                    state.first_back_at = Some(t);
                }
                first
            };
            if first_back {
                shared.log("JOB", format!("{id} lands on {} ({account}) again", shared.faulty_region()));
            }
        }
        Outcome::Accepted { .. } => {}
    }
    shared.lock().submissions.push(Submission { id, outcome });
}

/// Samples GetStatus, noting each change of rotation, and prints the in-flight jobs now and then.
async fn sample_status(stack: Arc<Stack>, shared: Arc<Shared>) {
    let mut every = tokio::time::interval(SAMPLE_EVERY);
    every.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut previous: Option<Vec<bool>> = None;
    let mut cooldown_noted: BTreeSet<String> = BTreeSet::new();
    let mut last_tick = f64::NEG_INFINITY;
    loop {
        every.tick().await;
        let status = match stack.status().await {
            Ok(status) => status,
            Err(_) => {
                shared.lock().sample_errors += 1;
                continue;
            }
        };
        let t = shared.t();
        let listed = status["accounts"].as_array().cloned().unwrap_or_default();
        let mut regions = Vec::with_capacity(shared.regions.len());
        for (i, r) in shared.regions.iter().enumerate() {
            let (name, region) = (r.account, r.label());
            let account = listed.iter().find(|a| a["name"] == *name).cloned().unwrap_or(Value::Null);
            let in_rotation = account["inRotation"].as_bool().unwrap_or(true);
            regions.push(RegionSample { in_flight: account["inFlight"].as_u64().unwrap_or(0), in_rotation });
            let was_in = previous.as_ref().is_none_or(|p| p[i]);
            let removed = &account["removed"];
            if was_in && !in_rotation {
                shared.log(
                    "STATUS",
                    format!(
                        "{name} in {region} out of rotation, cool-down {}s: {}",
                        removed["cooldownSecs"],
                        text(&removed["reason"])
                    ),
                );
                let mut state = shared.lock();
                if i == shared.faulty && state.stall_at.is_some() {
                    state.removed_sample_at.get_or_insert(t);
                }
            } else if !was_in && in_rotation {
                shared.log("STATUS", format!("{name} in {region} back in rotation"));
                let mut state = shared.lock();
                if i == shared.faulty && state.removed_at().is_some() {
                    state.readmitted_sample_at.get_or_insert(t);
                }
            }
            // A cool-down that ended more than a sweep ago with the region still out: its probe failed.
            if let (false, Some(until)) = (in_rotation, time(&removed["until"])) {
                let key = text(&removed["since"]);
                if Utc::now() - until > chrono::Duration::milliseconds(1500) && cooldown_noted.insert(key) {
                    shared.log(
                        "STATUS",
                        format!(
                            "{region}: its cool-down ended at {:.1}s and it is still out (the probe needs Media Services to answer)",
                            shared.t_of(until)
                        ),
                    );
                }
            }
        }
        if t - last_tick >= TICK_EVERY_SECS {
            last_tick = t;
            let parts: Vec<String> = shared
                .regions
                .iter()
                .zip(&regions)
                .map(|(region, r)| {
                    format!("{} {}{}", region.label(), r.in_flight, if r.in_rotation { "" } else { " (out)" })
                })
                .collect();
            // Terminal only: the report's chart shows these.
            println!("{t:>7.2}s         in flight: {}", parts.join(" | "));
        }
        previous = Some(regions.iter().map(|r| r.in_rotation).collect());
        shared.lock().samples.push(Sample { t, regions });
    }
}

/// Reads new alerts and the emulator's jobs: prints each alert, each job that moves to another region, and
/// when every job stuck on the failing region is running elsewhere.
async fn watch(stack: Arc<Stack>, shared: Arc<Shared>) {
    let mut every = tokio::time::interval(WATCH_EVERY);
    every.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut seen_alerts = 0;
    let mut seen_jobs: BTreeSet<String> = BTreeSet::new();
    loop {
        every.tick().await;
        let alerts = stack.alerts();
        for alert in alerts.iter().skip(seen_alerts) {
            on_alert(&shared, alert);
        }
        seen_alerts = seen_alerts.max(alerts.len());
        if let Ok(jobs) = stack.emulator_jobs().await {
            note_moves(&shared, &jobs, &mut seen_jobs);
            note_all_moved(&shared, &jobs);
        }
    }
}

fn on_alert(shared: &Shared, alert: &Value) {
    let kind = text(&alert["type"]);
    let at = time(&alert["time"]).map(|t| shared.t_of(t));
    let account = text(&alert["account"]);
    let line = match kind.as_str() {
        "RegionRemoved" => format!(
            "RegionRemoved {account} ({}): {} [stuck {}, in flight {}]",
            text(&alert["region"]),
            text(&alert["reason"]),
            alert["counts"]["stuckJobs"],
            alert["counts"]["inFlight"]
        ),
        "RegionReadmitted" => {
            format!("RegionReadmitted {account} ({}): {}", text(&alert["region"]), text(&alert["reason"]))
        }
        "JobFailed" => format!("JobFailed {}: {}", text(&alert["jobId"]), text(&alert["reason"])),
        "NoHealthyAccount" if alert["jobId"].is_string() => {
            format!("NoHealthyAccount for {}: {}", text(&alert["jobId"]), text(&alert["reason"]))
        }
        _ => format!("{kind}: {}", text(&alert["reason"])),
    };
    {
        let mut state = shared.lock();
        // Only what follows the stall is the drill's story: a removal before it (a busy machine delaying
        // events past STUCK_AFTER) is shown in the timeline but measured as nothing.
        let after_stall = at.zip(state.stall_at).is_some_and(|(at, stall)| at >= stall);
        if account == shared.faulty_account() && after_stall {
            if kind == "RegionRemoved" && state.removed_alert_at.is_none() {
                state.removed_alert_at = at;
            }
            if kind == "RegionReadmitted" && state.readmitted_alert_at.is_none() && state.removed_at().is_some() {
                state.readmitted_alert_at = at;
            }
        }
        state.alerts.push(alert.clone());
    }
    shared.log("ALERT", line);
}

/// `{jobId}-a{n}` → (jobId, n).
fn attempt_of(ams_name: &str) -> Option<(&str, u32)> {
    let (id, n) = ams_name.rsplit_once("-a")?;
    Some((id, n.parse().ok()?))
}

fn note_moves(shared: &Shared, jobs: &[Value], seen: &mut BTreeSet<String>) {
    let by_name: BTreeMap<&str, &Value> = jobs.iter().filter_map(|j| Some((j["name"].as_str()?, j))).collect();
    for (name, job) in &by_name {
        if !seen.insert((*name).to_owned()) {
            continue;
        }
        let Some((id, n)) = attempt_of(name) else { continue };
        if n < 2 {
            continue;
        }
        let to = shared.label_of(job["account"].as_str().unwrap_or("?"));
        let previous = by_name.get(format!("{id}-a{}", n - 1).as_str());
        let from = match previous {
            Some(p) => format!(
                "{} (attempt {} {} there)",
                shared.label_of(p["account"].as_str().unwrap_or("?")),
                n - 1,
                text(&p["state"])
            ),
            None => format!("attempt {} (never created in Media Services)", n - 1),
        };
        shared.log("MOVE", format!("{id}: {from} -> {to} as attempt {n}"));
    }
}

/// Logs once, after the removal and before the re-admission, when every job that stalled on the failing
/// region has a later attempt Processing or Finished elsewhere (the emulator's view; the summary recomputes
/// it from GetJob).
fn note_all_moved(shared: &Shared, jobs: &[Value]) {
    {
        let state = shared.lock();
        if state.all_moved_at.is_some() || state.removed_at().is_none() || state.readmitted_at().is_some() {
            return;
        }
    }
    let faulty = shared.faulty_account();
    let stuck: BTreeMap<&str, u32> = jobs
        .iter()
        .filter(|j| j["account"] == faulty && j["state"] != "Finished" && j["state"] != "Processing")
        .filter_map(|j| attempt_of(j["name"].as_str()?))
        .collect();
    if stuck.is_empty() {
        return;
    }
    let running_elsewhere = |id: &str, after: u32| {
        jobs.iter().any(|j| {
            j["account"] != faulty
                && (j["state"] == "Processing" || j["state"] == "Finished")
                && j["name"].as_str().and_then(attempt_of).is_some_and(|(other, n)| other == id && n > after)
        })
    };
    if stuck.iter().all(|(id, n)| running_elsewhere(id, *n)) {
        shared.lock().all_moved_at = Some(shared.t());
        shared.log(
            "STATUS",
            format!("all {} jobs stuck on {} are running elsewhere", stuck.len(), shared.faulty_region()),
        );
    }
}

/// Waits until every accepted job has ended (Finished, Error or Canceled), reading only those still going.
async fn drain(stack: &Stack, shared: &Shared, ids: &[String]) {
    let deadline = Instant::now() + DRAIN_LIMIT;
    let mut open: Vec<String> = ids.to_vec();
    loop {
        let mut still = Vec::new();
        for id in open {
            let ended = match stack.get_job(&id).await {
                Ok((_, job)) => matches!(job["state"].as_str(), Some("Finished" | "Error" | "Canceled")),
                Err(_) => false,
            };
            if !ended {
                still.push(id);
            }
        }
        open = still;
        if open.is_empty() {
            shared.log("PHASE", format!("all {} jobs have ended", ids.len()));
            return;
        }
        if Instant::now() > deadline {
            shared.log(
                "PHASE",
                format!("{} jobs still not ended after {}s: {}", open.len(), DRAIN_LIMIT.as_secs(), open.join(", ")),
            );
            return;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Waits until the emulator has no active job and no event left to deliver, so late results of superseded
/// attempts have arrived before the jobs are read for the summary.
async fn wait_idle(stack: &Stack, shared: &Shared) {
    let deadline = Instant::now() + IDLE_LIMIT;
    let events_url = format!("{}/_emulator/events", stack.emulator.url);
    loop {
        let jobs = stack.emulator_jobs().await.unwrap_or_default();
        let active =
            jobs.iter().filter(|j| !matches!(j["state"].as_str(), Some("Finished" | "Error" | "Canceled"))).count();
        let pending = match stack.http.get(&events_url).send().await {
            Ok(response) => response.json::<Value>().await.ok().and_then(|v| v["counters"]["pending"].as_u64()),
            Err(_) => None,
        };
        if active == 0 && pending == Some(0) {
            return;
        }
        if Instant::now() > deadline {
            shared
                .log("PHASE", format!("the emulator still has {active} active jobs and {pending:?} events to deliver"));
            return;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The drill's result.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
struct Summary {
    /// The regions, each with its account and provider.
    regions: Vec<Region>,
    faulty_account: String,
    faulty_region: String,
    /// The failing region's provider (`ams`, `rms`, `mkio`).
    faulty_provider: String,
    seconds: f64,
    submitted: usize,
    accepted: usize,
    not_accepted: usize,
    finished: usize,
    lost: Vec<String>,
    completed_twice: Vec<String>,
    encoded_twice: Vec<String>,
    moved: Vec<String>,
    /// Jobs that ran on more than one provider (only a mixed fleet has any).
    moved_across_providers: Vec<String>,
    /// Where each job's first attempt went, by region: the handler's random choice over the stream.
    first_placed: BTreeMap<String, usize>,
    stuck_jobs: Vec<String>,
    /// Attempts created on the failing region while it was out of rotation.
    placed_while_out: Vec<String>,
    removed: bool,
    readmitted: bool,
    landed_again: bool,
    stall_at_secs: Option<f64>,
    outage_at_secs: Option<f64>,
    recovery_at_secs: Option<f64>,
    removal_at_secs: Option<f64>,
    readmission_at_secs: Option<f64>,
    time_to_removal_secs: Option<f64>,
    time_until_stuck_jobs_elsewhere_secs: Option<f64>,
    readmission_secs: Option<f64>,
    cooldown_secs: u64,
    alerts: BTreeMap<String, usize>,
    status_samples: usize,
    status_sample_errors: usize,
    passed: bool,
    failures: Vec<String>,
}

fn attempts(job: &Value) -> &[Value] {
    job["attempts"].as_array().map_or(&[], Vec::as_slice)
}

fn summarize(
    shared: &Shared,
    plan: &Plan,
    accepted: &[String],
    jobs: &BTreeMap<String, Value>,
    ams: &[Value],
    story_error: Option<String>,
) -> Summary {
    let state = shared.lock();
    let faulty = shared.faulty_account();
    let at = |secs: Option<f64>| secs.map(|s| shared.started_utc + chrono::Duration::milliseconds((s * 1000.0) as i64));
    let stall_utc = at(state.stall_at);
    let removed_utc = at(state.removed_at());
    let recovery_utc = at(state.recovery_at);
    let back_utc = at(state.readmitted_at());
    // The earliest sign of the readmission: a status sample shows it up to a sampling period after the health
    // write (and a placement in between is right), while the alert carries the sweep's start, to the second.
    let back_earliest = at(match (state.readmitted_alert_at, state.readmitted_sample_at) {
        (Some(alert), Some(sample)) => Some(alert.min(sample)),
        (alert, sample) => alert.or(sample),
    });

    let lost: Vec<String> =
        accepted.iter().filter(|id| jobs.get(*id).is_none_or(|j| j["state"] != "Finished")).cloned().collect();
    let finished = accepted.len() - lost.len();
    let completed_twice: Vec<String> = jobs
        .iter()
        .filter(|(_, j)| attempts(j).iter().filter(|a| a["state"] == "Finished").count() > 1)
        .map(|(id, _)| id.clone())
        .collect();
    let mut encoded: BTreeMap<String, usize> = BTreeMap::new();
    for job in ams.iter().filter(|j| j["state"] == "Finished") {
        if let Some((id, _)) = job["name"].as_str().and_then(attempt_of) {
            *encoded.entry(id.to_owned()).or_default() += 1;
        }
    }
    let encoded_twice: Vec<String> = encoded.into_iter().filter(|(_, n)| *n > 1).map(|(id, _)| id).collect();
    let moved: Vec<String> = jobs.iter().filter(|(_, j)| attempts(j).len() > 1).map(|(id, _)| id.clone()).collect();
    // Jobs whose attempts ran on more than one provider: failover across providers.
    let provider_of = |account: &Value| shared.regions.iter().find(|r| *account == r.account).map(|r| r.provider);
    let moved_across_providers: Vec<String> = jobs
        .iter()
        .filter(|(_, j)| {
            attempts(j).iter().filter_map(|a| provider_of(&a["account"])).collect::<BTreeSet<_>>().len() > 1
        })
        .map(|(id, _)| id.clone())
        .collect();
    let mut first_placed: BTreeMap<String, usize> = shared.regions.iter().map(|r| (r.region.to_owned(), 0)).collect();
    for job in jobs.values() {
        if let Some(region) = attempts(job).first().and_then(|a| a["region"].as_str()) {
            *first_placed.entry(region.to_owned()).or_default() += 1;
        }
    }

    // Jobs with an attempt on the failing region that was active at or after the fault (and began before the
    // recovery) and did not finish there: when did each have a later attempt Processing or Finished elsewhere?
    let mut stuck_jobs = Vec::new();
    let mut latest_elsewhere: Option<DateTime<Utc>> = None;
    let mut never_elsewhere = false;
    if let Some(stall) = stall_utc {
        for (id, job) in jobs {
            let stuck_attempt = attempts(job).iter().find(|a| {
                a["account"] == faulty
                    && a["state"] != "Finished"
                    && time(&a["finishedAt"]).is_none_or(|f| f >= stall)
                    && recovery_utc.is_none_or(|r| time(&a["submittedAt"]).is_some_and(|s| s < r))
            });
            let Some(stuck) = stuck_attempt else { continue };
            stuck_jobs.push(id.clone());
            let number = stuck["attempt"].as_u64().unwrap_or(0);
            let elsewhere = attempts(job)
                .iter()
                .filter(|a| a["account"] != faulty && a["attempt"].as_u64().unwrap_or(0) > number)
                .filter_map(|a| {
                    time(&a["processingAt"])
                        .or_else(|| (a["state"] == "Finished").then(|| time(&a["finishedAt"])).flatten())
                })
                .min();
            match elsewhere {
                Some(t) => latest_elsewhere = latest_elsewhere.max(Some(t)),
                None => never_elsewhere = true,
            }
        }
    }
    let placed_while_out: Vec<String> = match removed_utc {
        Some(removed) => jobs
            .iter()
            .filter(|(_, j)| {
                attempts(j).iter().any(|a| {
                    a["account"] == faulty
                        && time(&a["submittedAt"]).is_some_and(|s| s > removed && back_earliest.is_none_or(|b| s < b))
                })
            })
            .map(|(id, _)| id.clone())
            .collect(),
        None => Vec::new(),
    };
    let landed_again = back_utc.is_some_and(|back| {
        jobs.values().any(|j| {
            attempts(j).iter().any(|a| a["account"] == faulty && time(&a["submittedAt"]).is_some_and(|s| s >= back))
        })
    });

    let mut alerts: BTreeMap<String, usize> = BTreeMap::new();
    for alert in &state.alerts {
        *alerts.entry(text(&alert["type"])).or_default() += 1;
    }
    let time_to_removal = state.removed_at().zip(state.stall_at).map(|(r, s)| r - s);
    let readmission = state.readmitted_at().zip(state.recovery_at).map(|(b, r)| b - r);
    let time_until_elsewhere = match (never_elsewhere, latest_elsewhere, state.stall_at) {
        (false, Some(latest), Some(stall)) => Some(shared.t_of(latest) - stall),
        _ => None,
    };

    let mut failures = Vec::new();
    if !lost.is_empty() {
        failures.push(format!("{} job(s) lost: {}", lost.len(), lost.join(", ")));
    }
    if !completed_twice.is_empty() {
        failures.push(format!("{} job(s) completed twice: {}", completed_twice.len(), completed_twice.join(", ")));
    }
    if state.removed_at().is_none() {
        failures.push(format!("{} was never taken out of rotation", shared.faulty_region()));
    }
    if state.readmitted_at().is_none() {
        failures.push(format!("{} was never back in rotation", shared.faulty_region()));
    }
    if let Some(error) = story_error {
        if failures.is_empty() {
            failures.push(error);
        }
    }
    let submissions = &state.submissions;
    Summary {
        regions: shared.regions.to_vec(),
        faulty_account: faulty.to_owned(),
        faulty_region: shared.faulty_region().to_owned(),
        faulty_provider: shared.regions[shared.faulty].provider.to_owned(),
        seconds: shared.t(),
        submitted: submissions.len(),
        accepted: accepted.len(),
        not_accepted: submissions.len() - accepted.len(),
        finished,
        lost,
        completed_twice,
        encoded_twice,
        moved,
        moved_across_providers,
        first_placed,
        stuck_jobs,
        placed_while_out,
        removed: state.removed_at().is_some(),
        readmitted: state.readmitted_at().is_some(),
        landed_again,
        stall_at_secs: state.stall_at,
        outage_at_secs: state.outage_at,
        recovery_at_secs: state.recovery_at,
        removal_at_secs: state.removed_at(),
        readmission_at_secs: state.readmitted_at(),
        time_to_removal_secs: time_to_removal,
        time_until_stuck_jobs_elsewhere_secs: time_until_elsewhere,
        readmission_secs: readmission,
        cooldown_secs: plan.cooldown.as_secs(),
        alerts,
        status_samples: state.samples.len(),
        status_sample_errors: state.sample_errors,
        passed: failures.is_empty(),
        failures,
    }
}

fn secs(v: Option<f64>) -> String {
    v.map_or_else(|| "never".to_owned(), |s| format!("{s:.1} s"))
}

/// The summary as (label, value) rows, for the terminal and the report alike.
fn summary_rows(s: &Summary) -> Vec<(String, String)> {
    let list = |ids: &[String]| if ids.is_empty() { String::new() } else { format!(" ({})", ids.join(", ")) };
    let alerts: Vec<String> = s.alerts.iter().map(|(k, n)| format!("{k} {n}")).collect();
    let placed: Vec<String> = s.first_placed.iter().map(|(region, n)| format!("{region} {n}")).collect();
    let regions: Vec<String> = s.regions.iter().map(|r| format!("{} {}", r.region, r.provider_label())).collect();
    vec![
        ("regions".into(), regions.join(", ")),
        ("failing region".into(), format!("{} ({})", s.faulty_region, s.faulty_account)),
        (
            "jobs submitted".into(),
            format!("{} ({} accepted, {} not accepted)", s.submitted, s.accepted, s.not_accepted),
        ),
        ("jobs finished".into(), s.finished.to_string()),
        ("jobs lost".into(), format!("{}{}", s.lost.len(), list(&s.lost))),
        ("jobs completed twice".into(), format!("{}{}", s.completed_twice.len(), list(&s.completed_twice))),
        (
            "jobs encoded twice (wasted work, not a failure)".into(),
            format!("{}{}", s.encoded_twice.len(), list(&s.encoded_twice)),
        ),
        ("jobs moved to another region".into(), s.moved.len().to_string()),
        ("jobs moved to another provider".into(), s.moved_across_providers.len().to_string()),
        ("first attempts per region".into(), placed.join(", ")),
        ("fault -> region removed".into(), secs(s.time_to_removal_secs)),
        (
            "fault -> every stuck job running elsewhere".into(),
            format!("{} ({} stuck jobs)", secs(s.time_until_stuck_jobs_elsewhere_secs), s.stuck_jobs.len()),
        ),
        (
            "recovery -> back in rotation".into(),
            format!("{} (cool-down {} s from the removal)", secs(s.readmission_secs), s.cooldown_secs),
        ),
        (
            "jobs placed on the region while it was out".into(),
            format!("{}{}", s.placed_while_out.len(), list(&s.placed_while_out)),
        ),
        ("jobs landed on the region again".into(), if s.landed_again { "yes" } else { "no" }.into()),
        ("alerts".into(), if alerts.is_empty() { "none".into() } else { alerts.join(", ") }),
        ("drill length".into(), format!("{:.1} s", s.seconds)),
    ]
}

fn print_summary(s: &Summary) {
    println!("\nSummary");
    for (label, value) in summary_rows(s) {
        println!("  {label:<48} {value}");
    }
    if s.passed {
        println!("\nPASSED: no job lost, none completed twice; {} was removed and readmitted.", s.faulty_region);
    } else {
        println!("\nFAILED: {}", s.failures.join("; "));
    }
}

/// Writes report.html and summary.json.
fn write_outputs(out: &Path, shared: &Shared, summary: &Summary) -> anyhow::Result<()> {
    let state = shared.lock();
    let mut markers = Vec::new();
    for (t, label) in [
        (state.stall_at, "stall (fault)"),
        (state.removed_at(), "removal"),
        (state.outage_at, "outage"),
        (state.recovery_at, "recovery"),
        (state.readmitted_at(), "re-admission"),
    ] {
        if let Some(t) = t {
            markers.push(Marker { t, label: label.to_owned() });
        }
    }
    let verdict = if summary.passed {
        format!("Passed: no job lost, none completed twice; {} was removed and readmitted.", summary.faulty_region)
    } else {
        format!("Failed: {}", summary.failures.join("; "))
    };
    let report = Report {
        title: format!("Failover drill: {} stalls, goes down and recovers", summary.faulty_region),
        subtitle: format!(
            "Three regions on the local stack ({}), {} jobs submitted over {:.0} s, run at {}. Times are real seconds (the product's minutes scaled down).",
            summary.regions.iter().map(Region::label).collect::<Vec<_>>().join(", "),
            summary.submitted,
            summary.seconds,
            shared.started_utc.format("%Y-%m-%d %H:%M:%S UTC")
        ),
        verdict: (summary.passed, verdict),
        regions: shared.regions.iter().map(Region::label).collect(),
        faulty: shared.faulty,
        samples: state.samples.clone(),
        markers,
        summary: summary_rows(summary),
        timeline: state.timeline.clone(),
    };
    drop(state);
    let html_path = out.join("report.html");
    std::fs::write(&html_path, report::render(&report)).with_context(|| format!("writing {}", html_path.display()))?;
    let json_path = out.join("summary.json");
    std::fs::write(&json_path, serde_json::to_string_pretty(summary)?)
        .with_context(|| format!("writing {}", json_path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attempt_names_split_into_job_and_number() {
        assert_eq!(attempt_of("drill-0001-a2"), Some(("drill-0001", 2)));
        assert_eq!(attempt_of("drill-a-b-a10"), Some(("drill-a-b", 10)));
        assert_eq!(attempt_of("drill-0001"), None);
    }

    #[test]
    fn quick_mode_shortens_the_drill_but_keeps_the_stuck_threshold() {
        let args = |quick| Args { jobs_per_second: None, duration: None, out: None, quick, seed: 1, fleet: Fleet::Ams };
        let (quick, full) = (Plan::new(&args(true)).expect("valid"), Plan::new(&args(false)).expect("valid"));
        assert!(quick.min_stream < full.min_stream && quick.cooldown < full.cooldown);
        for plan in [quick, full] {
            assert!(plan.settings().contains(&("STUCK_AFTER".to_owned(), "4s".to_owned())));
        }
    }

    #[test]
    fn a_rate_of_zero_is_refused() {
        let args =
            Args { jobs_per_second: Some(0.0), duration: None, out: None, quick: false, seed: 1, fleet: Fleet::Ams };
        assert!(Plan::new(&args).is_err());
    }
}
