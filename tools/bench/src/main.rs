//! `./dev bench`: the handler's speed on the local stack, every figure next to a reference measured in the
//! same run on the same machine, so the ratios mean something wherever it runs.
//!
//! Phases, each printed as it runs: raw Azurite transaction rates (the reference for throughput); the floor
//! of a SubmitJob made directly (the reference for its latency and round trips); SubmitJob sequential and
//! at 1, 4, 16 and 32 concurrent clients on one and on two accounts; OnJobStateChange at 1, 8 and 32;
//! the sweep with no history and with a long one; cold start against a minimal axum server. Round trips and
//! ETag conflicts are counted by proxies in front of Azurite and the emulator. After every phase the
//! counters must equal the active attempt rows, or the run fails. Results go to `.local/bench/` as JSON and
//! an HTML page with the plots.

mod floor;
mod proxy;
mod report;
mod run;

use ams_failover::store::Store;
use anyhow::Context;
use clap::Parser;
use proxy::Proxy;
use run::{counters_exact, load, median, Handler, Load};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tables::{BatchOp, TableService};
use testkit::stack::{handler_settings, StackOptions, RESOURCE_GROUP, SUBSCRIPTION};
use testkit::Azurite;

#[derive(Parser)]
#[command(about = "Measure the handler on the local stack against references taken in the same run")]
struct Args {
    /// Fewer jobs per phase and a shorter history (a quick look, not the published figures).
    #[arg(long)]
    quick: bool,
    /// Finished jobs written before the second sweep measurement (10,000; 2,000 with --quick). Azurite's
    /// writes into one partition slow down as the partition grows, so 100,000 takes it a long while.
    #[arg(long)]
    history: Option<usize>,
    /// Where the JSON and the HTML page go.
    #[arg(long, default_value = ".local/bench")]
    out: PathBuf,
    /// Serve `GET /` on FUNCTIONS_CUSTOMHANDLER_PORT and nothing else: the cold-start reference.
    #[arg(long, hide = true, env = "BENCH_FLOOR_SERVER")]
    floor_server: bool,
}

const ONE: [(&str, &str); 1] = [("amswesteurope", "westeurope")];
const TWO: [(&str, &str); 2] = [("amswesteurope", "westeurope"), ("amsnortheurope", "northeurope")];
const CONCURRENCY: [usize; 4] = [1, 4, 16, 32];
const EVENT_CONCURRENCY: [usize; 3] = [1, 8, 32];
const RAW_CONCURRENCY: [usize; 5] = [1, 4, 8, 16, 32];

fn progress(text: &str) {
    eprintln!("[bench {}] {text}", chrono::Utc::now().format("%H:%M:%S"));
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.floor_server {
        return floor::serve().await;
    }
    let started = Instant::now();
    let scale = if args.quick { 1 } else { 3 };
    let history = args.history.unwrap_or(if args.quick { 2_000 } else { 10_000 });
    let handler_bin = testkit::try_workspace_bin("handler")?;
    anyhow::ensure!(
        !cfg!(debug_assertions) || std::env::var_os("BENCH_ALLOW_DEBUG").is_some(),
        "run the release build (./dev bench); a debug build measures the compiler, not the product"
    );

    progress("starting Azurite, the emulator and the counting proxies");
    let azurite = Azurite::start().await?;
    std::fs::create_dir_all(&args.out)?;
    let mut options = StackOptions::new(handler_bin.clone(), testkit::workspace_root()?);
    // The emulator logs every job it creates: to a file, so the progress stays readable.
    options.logs = testkit::stack::Logs::file(&args.out.join("stack.log"))?;
    // The handlers' warnings and errors: where a refused submission says why.
    let handler_log = args.out.join("handlers.log");
    let _ = std::fs::remove_file(&handler_log);
    let emulator = testkit::stack::start_emulator(
        &testkit::try_workspace_bin("ams-emulator")?,
        &StackOptions {
            // Jobs stay queued: the benchmark delivers their events itself.
            phases_ms: (3_600_000, 3_600_000, 3_600_000),
            time_scale: 1.0,
            ..options.clone()
        },
    )?;
    let http = reqwest::Client::new();
    testkit::stack::create_transforms(&http, &emulator.url, &options).await?;
    let azurite_base = format!("http://127.0.0.1:{}", azurite.table_port());
    let tables = Proxy::start(&azurite_base).await?;
    let arm = Proxy::start(&emulator.url).await?;
    let service = TableService::from_connection_string(&azurite.connection_string(), http.clone())?;
    let settings = |prefix: &str, accounts: &[(&'static str, &'static str)], proxied: bool| {
        let mut options = options.clone();
        options.accounts = accounts.to_vec();
        let arm_url = if proxied { arm.url.as_str() } else { emulator.url.as_str() };
        let mut all = handler_settings(&azurite, prefix, &options, arm_url);
        for (key, value) in all.iter_mut() {
            if key == "TABLES_CONNECTION_STRING" && proxied {
                *value = value.replace(&azurite_base, &tables.url);
            }
            if key == "RUST_LOG" {
                "warn".clone_into(value);
            }
        }
        all
    };
    let mut results = report::Results { machine: report::machine(), history, ..Default::default() };

    // ---- references: raw Azurite ----
    progress("reference: entity group transactions straight to Azurite, one partition, no conflicts");
    let raw_table = format!("{}Raw", testkit::unique_prefix());
    service.create_table_if_missing(&raw_table).await?;
    for c in RAW_CONCURRENCY {
        let table = service.table(&raw_table);
        let n = 100 * scale + 10 * c;
        let level = c;
        let result = load(n, c, move |i| {
            let table = table.clone();
            async move {
                let ops = vec![
                    BatchOp::Insert { rk: format!("c{level:02}-{i:07}"), body: json!({"N": i}) },
                    BatchOp::Upsert { rk: format!("w{level:02}-{}", i % level), body: json!({"N": i}) },
                ];
                table.transaction("p", ops).await.is_ok()
            }
        })
        .await;
        progress(&format!("  raw transactions, {c:>2} concurrent: {:.0}/s, p99 {:.1} ms", result.rate, result.p99_ms));
        results.raw.push(result);
    }

    // ---- reference: the floor of one SubmitJob, made directly ----
    progress("reference: the floor of one SubmitJob (its calls made directly, sequentially)");
    let floor_prefix = testkit::unique_prefix();
    let floor = floor::Floor::new(&service, &floor_prefix, &http, &emulator.url).await?;
    let n = 60 * scale;
    let mut times = Vec::with_capacity(n);
    for i in 0..n {
        let t = Instant::now();
        floor.submit(&format!("floor-{i:05}")).await?;
        times.push(t.elapsed());
    }
    results.floor = Load {
        n,
        concurrency: 1,
        rate: n as f64 / times.iter().map(Duration::as_secs_f64).sum::<f64>(),
        p50_ms: run::percentile(&mut times, 0.5),
        p99_ms: run::percentile(&mut times, 0.99),
        failures: 0,
    };
    results.floor_calls = floor::CALLS.iter().map(|(what, why)| json!({"call": what, "why": why})).collect();
    progress(&format!(
        "  floor: {} calls, p50 {:.1} ms, p99 {:.1} ms",
        floor::CALLS.len(),
        results.floor.p50_ms,
        results.floor.p99_ms
    ));

    // ---- SubmitJob sequential ----
    progress("SubmitJob, sequential, two accounts");
    let two_prefix = testkit::unique_prefix();
    let (two, _) = Handler::start(&handler_bin, &settings(&two_prefix, &TWO, true), Some(&handler_log)).await?;
    // One job to warm the connection pools and create the counter shards it touches.
    anyhow::ensure!(two.submit("warm-0").await? == 202, "the warm-up job was not accepted");
    tables.take();
    arm.take();
    let two = Arc::new(two);
    let n = 60 * scale;
    let handler = two.clone();
    results.sequential = load(n, 1, move |i| {
        let handler = handler.clone();
        async move { handler.submit(&format!("seq-{i:05}")).await.is_ok_and(|s| s == 202) }
    })
    .await;
    let (t, a) = (tables.take(), arm.take());
    results.round_trips = report::RoundTrips {
        table: t.requests as f64 / n as f64,
        arm: a.requests as f64 / n as f64,
        conflicts: t.conflicts as f64 / n as f64,
    };
    progress(&format!(
        "  p50 {:.1} ms, p99 {:.1} ms, {:.1} Table + {:.1} ARM round trips per job",
        results.sequential.p50_ms, results.sequential.p99_ms, results.round_trips.table, results.round_trips.arm
    ));
    let two_store = Store::with_service(service.clone(), &two_prefix);
    counters_exact(&two_store, &names(&TWO)).await.context("after SubmitJob sequential")?;

    // ---- SubmitJob under concurrency, one and two accounts ----
    let one_prefix = testkit::unique_prefix();
    let (one, _) = Handler::start(&handler_bin, &settings(&one_prefix, &ONE, true), Some(&handler_log)).await?;
    anyhow::ensure!(one.submit("warm-1").await? == 202, "the warm-up job was not accepted");
    let one = Arc::new(one);
    let one_store = Store::with_service(service.clone(), &one_prefix);
    let mut one_ids: Vec<String> = Vec::new();
    for (label, handler, store, accounts) in
        [("one account", &one, &one_store, &ONE[..]), ("two accounts", &two, &two_store, &TWO[..])]
    {
        progress(&format!("SubmitJob, {label}, at 1, 4, 16 and 32 concurrent clients"));
        for c in CONCURRENCY {
            let n = (20 * scale).max(c * 2 * scale);
            let tag = if accounts.len() == 1 { "one" } else { "two" };
            let ids: Vec<String> = (0..n).map(|i| format!("{tag}-c{c:02}-{i:05}")).collect();
            tables.take();
            let h = handler.clone();
            let batch = Arc::new(ids.clone());
            let result = load(n, c, move |i| {
                let (h, batch) = (h.clone(), batch.clone());
                async move { h.submit(&batch[i]).await.is_ok_and(|s| s == 202) }
            })
            .await;
            let conflicts = tables.take().conflicts as f64 / n as f64;
            let in_flight =
                counters_exact(store, &names(accounts)).await.with_context(|| format!("after {c} on {label}"))?;
            progress(&format!(
                "  {c:>2} concurrent: {:.0} jobs/s, p99 {:.0} ms, {conflicts:.2} 412s per job, {} refused; {in_flight} in flight, counters exact",
                result.rate, result.p99_ms, result.failures
            ));
            results.submit.push(report::SubmitLevel {
                accounts: accounts.len(),
                load: result,
                conflicts_per_job: conflicts,
            });
            if accounts.len() == 1 {
                one_ids.extend(ids);
            }
        }
    }

    // ---- OnJobStateChange ----
    progress(
        "OnJobStateChange at 1, 8 and 32 concurrent deliveries, one account (Scheduled, Processing, Finished per job)",
    );
    let mut offset = 0;
    for c in EVENT_CONCURRENCY {
        let jobs = (10 * scale).max(c * scale);
        let slice: Vec<String> = one_ids.iter().skip(offset).take(jobs).cloned().collect();
        offset += slice.len();
        let mut names_of = Vec::with_capacity(slice.len());
        for id in &slice {
            let job = one_store.get_job(id).await?.with_context(|| format!("job {id} is missing"))?.value;
            let attempt = job.attempts.last().with_context(|| format!("job {id} has no attempt"))?;
            names_of.push((attempt.account.clone(), attempt.ams_job_name.clone()));
        }
        let events: Arc<Vec<Value>> =
            Arc::new(names_of.iter().flat_map(|(account, name)| job_events(account, name)).collect());
        let h = one.clone();
        let n = events.len();
        tables.take();
        // Each job's three events in order on one worker, as one subscription delivers them, jobs in parallel.
        let result = load(n / 3, c, move |j| {
            let (h, events) = (h.clone(), events.clone());
            async move {
                let mut ok = true;
                for event in &events[j * 3..j * 3 + 3] {
                    let payload = json!({"Data": {"eventGridEvent": event}, "Metadata": {}});
                    ok &= h.invoke("OnJobStateChange", &payload).await.is_ok_and(|(s, _)| s == 200);
                }
                ok
            }
        })
        .await;
        let counted = tables.take();
        let conflicts = counted.conflicts as f64 / n as f64;
        let round_trips = counted.requests as f64 / n as f64;
        // Three events per operation: rates and latencies per event.
        let result =
            Load { n, rate: result.rate * 3.0, p50_ms: result.p50_ms / 3.0, p99_ms: result.p99_ms / 3.0, ..result };
        let in_flight = counters_exact(&one_store, &names(&ONE)).await.with_context(|| format!("after {c} events"))?;
        for id in &slice {
            let state = one_store.get_job(id).await?.map(|j| j.value.state);
            anyhow::ensure!(
                state == Some(ams_failover::domain::JobState::Finished),
                "job {id} is {state:?} after its JobFinished event"
            );
        }
        progress(&format!(
            "  {c:>2} concurrent: {:.0} events/s, p99 {:.1} ms per event, {round_trips:.1} Table round trips and {conflicts:.2} 412s per event; {in_flight} in flight, counters exact",
            result.rate, result.p99_ms
        ));
        results.events.push(report::EventLevel { load: result, conflicts_per_event: conflicts, round_trips });
    }

    // ---- the sweep against history ----
    progress("SweepStuckJobs with no history");
    let sweep_prefix = testkit::unique_prefix();
    let (sweeper, _) = Handler::start(&handler_bin, &settings(&sweep_prefix, &TWO, true), Some(&handler_log)).await?;
    results.sweep_empty = sweeps(&sweeper, &tables, &arm).await?;
    progress(&format!(
        "  {:.1} ms, {:.0} Table and {:.0} ARM requests",
        results.sweep_empty.ms, results.sweep_empty.table, results.sweep_empty.arm
    ));
    progress(&format!("writing {history} finished jobs into the sweep's tables"));
    floor::write_history(&service, &sweep_prefix, history, &names(&TWO), progress).await?;
    results.sweep_history = sweeps(&sweeper, &tables, &arm).await?;
    progress(&format!(
        "  with {history} finished jobs: {:.1} ms, {:.0} Table and {:.0} ARM requests",
        results.sweep_history.ms, results.sweep_history.table, results.sweep_history.arm
    ));
    let sweep_store = Store::with_service(service.clone(), &sweep_prefix);
    counters_exact(&sweep_store, &names(&TWO)).await.context("after the sweeps")?;
    drop(sweeper);

    // ---- cold start ----
    progress("cold start: exec to the first answer on GET /, handler against a minimal axum server");
    let runs = 5 * scale;
    let floor_bin = std::env::current_exe()?;
    let mut handler_ms = Vec::new();
    let mut floor_ms = Vec::new();
    let restart = settings(&sweep_prefix, &TWO, false);
    for _ in 0..runs {
        let (h, ready) = Handler::start(&handler_bin, &restart, None).await?;
        handler_ms.push(ready.as_secs_f64() * 1000.0);
        drop(h);
        let floor_args = [("BENCH_FLOOR_SERVER".to_owned(), "true".to_owned())];
        let (f, ready) = Handler::start(&floor_bin, &floor_args, None).await?;
        floor_ms.push(ready.as_secs_f64() * 1000.0);
        drop(f);
    }
    tables.take();
    let (counted, _) = Handler::start(&handler_bin, &settings(&sweep_prefix, &TWO, true), None).await?;
    drop(counted);
    results.cold_start = report::ColdStart {
        handler_p50_ms: median(&mut handler_ms),
        floor_p50_ms: median(&mut floor_ms),
        start_table_calls: tables.take().requests,
    };
    progress(&format!(
        "  handler {:.1} ms, axum alone {:.1} ms, {} Table calls at start",
        results.cold_start.handler_p50_ms, results.cold_start.floor_p50_ms, results.cold_start.start_table_calls
    ));

    results.seconds = started.elapsed().as_secs_f64();
    let table = report::table(&results);
    println!("{table}");
    std::fs::create_dir_all(&args.out)?;
    std::fs::write(args.out.join("bench.json"), serde_json::to_string_pretty(&results)?)?;
    std::fs::write(args.out.join("index.html"), report::html(&results, &table))?;
    progress(&format!("wrote {}/bench.json and index.html", args.out.display()));
    Ok(())
}

fn names<'a>(accounts: &[(&'a str, &'a str)]) -> Vec<&'a str> {
    accounts.iter().map(|(name, _)| *name).collect()
}

/// The Event Grid events Media Services sends for job `name` on `account` as it runs to the end.
fn job_events(account: &str, name: &str) -> Vec<Value> {
    let topic = format!(
        "/subscriptions/{SUBSCRIPTION}/resourceGroups/{RESOURCE_GROUP}/providers/Microsoft.Media/mediaservices/{account}"
    );
    [("JobScheduled", "Queued", "Scheduled"), ("JobProcessing", "Scheduled", "Processing"), ("JobFinished", "Processing", "Finished")]
        .iter()
        .map(|(kind, previous, state)| {
            let mut data = json!({"previousState": previous, "state": state});
            if *state == "Finished" {
                data["outputs"] = json!([{"@odata.type": "#Microsoft.Media.JobOutputAsset", "assetName": format!("{name}-out0"),
                    "state": "Finished", "progress": 100, "label": "out0"}]);
            }
            json!({"topic": topic, "subject": format!("transforms/encode/jobs/{name}"), "eventType": format!("Microsoft.Media.{kind}"),
                "eventTime": chrono::Utc::now().to_rfc3339(), "id": uuid::Uuid::new_v4().to_string(), "data": data,
                "dataVersion": "1.0", "metadataVersion": "1"})
        })
        .collect()
}

/// Five sweeps: the median time and the requests of one.
async fn sweeps(handler: &Handler, tables: &Proxy, arm: &Proxy) -> anyhow::Result<report::Sweep> {
    let mut ms = Vec::new();
    let (mut table, mut arm_calls) = (0, 0);
    for _ in 0..5 {
        tables.take();
        arm.take();
        let t = Instant::now();
        let (status, body) = handler.invoke("SweepStuckJobs", &testkit::stack::timer_request()).await?;
        ms.push(t.elapsed().as_secs_f64() * 1000.0);
        anyhow::ensure!(status == 200, "the sweep failed: {body}");
        table = tables.take().requests;
        arm_calls = arm.take().requests;
    }
    Ok(report::Sweep { ms: median(&mut ms), table: table as f64, arm: arm_calls as f64 })
}
