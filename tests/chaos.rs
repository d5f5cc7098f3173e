//! The chaos soak: the product run the way Azure runs it. Two function app instances share one Azurite and
//! one table prefix behind a front door that spreads client calls and Event Grid deliveries over them; the
//! emulator duplicates, reorders, drops and delays events; one account fails jobs with `MayRetry`, one
//! stalls, then every account goes down and comes back; both instances sweep every second; and handlers are
//! killed with SIGKILL at random moments (during a burst of submissions, while jobs move, and while a sweep
//! places the jobs kept pending during the outage), their instances started again. After a quiet period,
//! every job that was accepted must be final, no attempt may have finished twice, no Media Services job may
//! exist twice or unaccounted for, every counter must equal its active rows, no open work may be left, and
//! every outcome must have reached the job-events topic exactly once.
//!
//! Seeded: `CHAOS_SEED=n` replays a run (the seed is printed first).

mod support;

use ams_failover::store::Store;
use futures_util::future::join_all;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;
use support::{assert_counters_exact, assert_no_open_work, eventually, job_body, options};
use tables::TableService;
use testkit::cluster::Cluster;
use testkit::stack::Logs;
use tokio::sync::Mutex;

const A: &str = "amswesteurope";
const B: &str = "amsnortheurope";
const C: &str = "amsfrancecentral";

struct Soak {
    cluster: Mutex<Cluster>,
    front_door: String,
    emulator: String,
    http: reqwest::Client,
    accepted: Mutex<BTreeSet<String>>,
    kills: Mutex<u32>,
}

impl Soak {
    /// Submits `id` through the front door like a client that retries the same request until it gets an
    /// answer; true once it was accepted.
    async fn submit(&self, id: &str) -> anyhow::Result<bool> {
        for _ in 0..8 {
            let sent = self.http.post(format!("{}/api/jobs", self.front_door)).json(&job_body(id)).send().await;
            if let Ok(answer) = sent {
                if answer.status() == 202 {
                    self.accepted.lock().await.insert(id.to_owned());
                    return Ok(true);
                }
                anyhow::ensure!(answer.status().is_server_error(), "SubmitJob refused {id}: {}", answer.status());
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        Ok(false)
    }

    /// Kills one instance's handler after `delay`, and starts the instance again after `down`.
    async fn kill_after(&self, instance: usize, delay: Duration, down: Duration) -> anyhow::Result<()> {
        tokio::time::sleep(delay).await;
        if self.cluster.lock().await.kill_handler(instance).await? {
            *self.kills.lock().await += 1;
        }
        tokio::time::sleep(down).await;
        self.cluster.lock().await.start_instance(instance)
    }

    async fn control(&self, path: &str, body: Value) -> anyhow::Result<()> {
        self.http.post(format!("{}{path}", self.emulator)).json(&body).send().await?.error_for_status()?;
        Ok(())
    }

    async fn fault(&self, account: &str, fault: Value) -> anyhow::Result<()> {
        self.control(&format!("/_emulator/accounts/{account}/fault"), fault).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_accepted_job_ends_final_with_exact_counters_whatever_instances_die_where() -> anyhow::Result<()> {
    let seed: u64 = std::env::var("CHAOS_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(rand::random);
    eprintln!("chaos seed {seed} (CHAOS_SEED={seed} replays it)");
    let mut rng = StdRng::seed_from_u64(seed);
    let log = std::env::temp_dir().join(format!("chaos-{seed}.log"));
    let mut opts = options();
    opts.accounts = vec![(A, "westeurope"), (B, "northeurope"), (C, "francecentral")];
    opts.logs = Logs::file(&log)?;
    opts.settings = [
        ("STUCK_AFTER", "3s"),
        ("RECONCILE_AFTER", "2s"),
        ("COOLDOWN", "3s"),
        ("COOLDOWN_MAX", "6s"),
        ("SUBMIT_FAILURES_TO_REMOVE", "3"),
        ("ALERT_REPEAT", "1h"),
        ("SWEEP_SCHEDULE", "* * * * * *"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let cluster = Cluster::start(opts, 2).await?;
    let service = TableService::from_connection_string(&cluster.azurite.connection_string(), reqwest::Client::new())?;
    let store = Store::with_service(service.clone(), &cluster.prefix);
    let soak = Soak {
        front_door: cluster.front_door.clone(),
        emulator: cluster.emulator.url.clone(),
        cluster: Mutex::new(cluster),
        http: reqwest::Client::builder().timeout(Duration::from_secs(30)).build()?,
        accepted: Mutex::default(),
        kills: Mutex::default(),
    };
    soak.control("/_emulator/events", json!({"duplicate": 0.4, "reorder": 0.4, "drop": 0.1, "max_delay_ms": 800}))
        .await?;
    soak.fault(C, json!({"mode": "fail-jobs", "retry": "MayRetry"})).await?;

    // A burst of submissions, with one instance killed in the middle of it.
    let burst = join_all((0..24).map(|i| soak.submit_owned(format!("burst-{i}"))));
    let kill = soak.kill_after(rng.random_range(0..2), ms(rng.random_range(20..400)), ms(rng.random_range(200..800)));
    let (submitted, killed) = tokio::join!(burst, kill);
    submitted.into_iter().collect::<anyhow::Result<Vec<_>>>()?;
    killed?;

    // A stalls while jobs keep coming; an instance dies while stuck jobs are being moved.
    soak.fault(A, json!({"mode": "stall"})).await?;
    let trickle = async {
        for i in 0..16 {
            soak.submit(&format!("stall-{i}")).await?;
            tokio::time::sleep(ms(250)).await;
        }
        anyhow::Ok(())
    };
    let kill =
        soak.kill_after(rng.random_range(0..2), ms(rng.random_range(2500..4000)), ms(rng.random_range(200..800)));
    let (trickled, killed) = tokio::join!(trickle, kill);
    trickled?;
    killed?;

    // Every region down: jobs are kept pending. Then they heal, and an instance dies while sweeps place them.
    for account in [A, B, C] {
        soak.fault(account, json!({"mode": "outage"})).await?;
    }
    for i in 0..8 {
        soak.submit(&format!("outage-{i}")).await?;
    }
    tokio::time::sleep(ms(1000)).await;
    soak.fault(A, json!({"mode": "healthy"})).await?;
    soak.fault(B, json!({"mode": "healthy"})).await?;
    soak.fault(C, json!({"mode": "fail-jobs", "retry": "MayRetry"})).await?;
    soak.kill_after(rng.random_range(0..2), ms(rng.random_range(0..1200)), ms(rng.random_range(200..800))).await?;
    // One more, anywhere.
    soak.kill_after(rng.random_range(0..2), ms(rng.random_range(0..1500)), ms(rng.random_range(200..800))).await?;

    // A quiet period: events delivered plainly, every account healthy, plain sweeps.
    soak.control("/_emulator/events", json!({"duplicate": 0.0, "reorder": 0.0, "drop": 0.0, "max_delay_ms": 0}))
        .await?;
    soak.fault(C, json!({"mode": "healthy"})).await?;
    let accepted: Vec<String> = soak.accepted.lock().await.iter().cloned().collect();
    let http = soak.http.clone();
    let front_door = soak.front_door.clone();
    let jobs = eventually(Duration::from_secs(150), "every accepted job to end", || async {
        let mut jobs = BTreeMap::new();
        for id in &accepted {
            let job: Value = http.get(format!("{front_door}/api/jobs/{id}")).send().await?.json().await?;
            if !matches!(job["state"].as_str(), Some("Finished" | "Error" | "Canceled")) {
                return Ok(None);
            }
            jobs.insert(id.clone(), job);
        }
        Ok(Some(jobs))
    })
    .await?;

    // No attempt finished twice, and a Finished job has exactly one finished attempt.
    let mut finished_attempts: BTreeMap<String, u32> = BTreeMap::new();
    let mut attempt_names = BTreeSet::new();
    let prefix = soak.cluster.lock().await.prefix.clone();
    for account in [A, B, C] {
        let filter = format!("PartitionKey eq {}", tables::filter_string_literal(account));
        let rows: Vec<tables::Entity<Value>> = service.table(&format!("{prefix}Attempts")).query(&filter).await?;
        for row in rows {
            let key = row.value["RowKey"].as_str().unwrap_or_default().to_owned();
            if let Some(name) = key.strip_prefix("c|") {
                attempt_names.insert((account, name.to_owned()));
            }
            if key.starts_with("d|") && row.value["State"] == "Finished" {
                let record: Value = serde_json::from_str(row.value["Record"].as_str().unwrap_or("{}"))?;
                *finished_attempts.entry(record["jobId"].as_str().unwrap_or_default().to_owned()).or_default() += 1;
            }
        }
    }
    for (id, job) in &jobs {
        let finished = finished_attempts.get(id).copied().unwrap_or(0);
        let expected = u32::from(job["state"] == "Finished");
        assert_eq!(finished, expected, "{id} has {finished} finished attempt(s): {job}");
    }
    // Every Media Services job belongs to one recorded attempt, and none was created twice.
    let ams: Vec<Value> = soak.http.get(format!("{}/_emulator/jobs", soak.emulator)).send().await?.json().await?;
    let mut seen = BTreeSet::new();
    for job in &ams {
        let (account, name) = (job["account"].as_str().unwrap_or_default(), job["name"].as_str().unwrap_or_default());
        assert!(seen.insert(name.to_owned()), "Media Services job {name} exists twice");
        let recorded = attempt_names.iter().any(|(a, n)| a.eq_ignore_ascii_case(account) && n == name);
        assert!(recorded, "Media Services job {name} on {account} belongs to no recorded attempt");
    }
    // Every outcome reached the topic exactly once, under its own id, however often it was sent.
    let expected: BTreeSet<String> =
        jobs.iter().map(|(id, job)| format!("{id}:{}", job["state"].as_str().unwrap_or_default())).collect();
    let bus = soak.cluster.lock().await.service_bus.url.clone();
    let notified = eventually(Duration::from_secs(60), "every outcome on the topic", || async {
        let cluster = soak.cluster.lock().await;
        let mut kept = BTreeMap::new();
        for (id, body) in cluster.service_bus.delivered("job-events") {
            assert!(kept.insert(id.clone(), body).is_none(), "the topic kept {id} twice");
        }
        let ids: BTreeSet<String> = kept.keys().cloned().collect();
        assert!(ids.is_subset(&expected), "unexpected messages: {:?}", ids.difference(&expected).collect::<Vec<_>>());
        Ok((ids == expected).then_some(cluster.service_bus.sends("job-events").len()))
    })
    .await?;
    eprintln!("notifications: {} kept, {notified} sent to {bus}", expected.len());
    assert_counters_exact(&store, &[A, B, C]).await?;
    eventually(Duration::from_secs(10), "the open-jobs index to empty", || async {
        Ok(assert_no_open_work(&store).await.ok())
    })
    .await?;
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let repaired = text.lines().filter(|l| l.contains(": repaired (")).count();
    let finished = jobs.values().filter(|j| j["state"] == "Finished").count();
    eprintln!(
        "chaos seed {seed}: accepted {}, final {} ({finished} Finished, {} Error), repaired {repaired}, kills {}, log {}",
        jobs.len(),
        jobs.len(),
        jobs.len() - finished,
        soak.kills.lock().await,
        log.display()
    );
    assert!(*soak.kills.lock().await >= 4, "every planned kill happened");
    let _ = std::fs::remove_file(&log);
    Ok(())
}

impl Soak {
    async fn submit_owned(&self, id: String) -> anyhow::Result<bool> {
        self.submit(&id).await
    }
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}
