//! Media Reserved Units: the v2 client against the emulator's v2 endpoint, scale-up under concurrent
//! submissions, both scale-down modes, and automatic accounts left alone.

mod support;

use ams_failover::config::{AccountConfig, ArmAuth, MruMode};
use ams_failover::media::{MediaClient, MediaError};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use support::{eventually, job_body, options, start_emulator, Stack, StackOptions, RESOURCE_GROUP, SUBSCRIPTION};

const LIMIT: Duration = Duration::from_secs(90);

fn account(name: &str, arm: &str) -> anyhow::Result<AccountConfig> {
    Ok(AccountConfig {
        name: name.to_owned(),
        region: "westeurope".to_owned(),
        provider: Default::default(),
        subscription_id: SUBSCRIPTION.to_owned(),
        resource_group: RESOURCE_GROUP.to_owned(),
        arm_endpoint: arm.parse()?,
        mru_mode: MruMode::Managed,
        max_mru: 10,
        mru_endpoint: None,
        stuck_after: Duration::from_secs(600),
        event_topic: None,
        api_key: None,
        mkio: None,
    })
}

fn managed(max: u32, settings: &[(&str, &str)]) -> StackOptions {
    let mut options = options();
    options.managed = vec![("amswesteurope", max)];
    options.accounts = vec![("amswesteurope", "westeurope")];
    options.settings = settings.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    options
}

async fn mru(stack: &Stack) -> anyhow::Result<Value> {
    Ok(stack.emulator_account("amswesteurope").await?["mru"].clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_v2_client_discovers_reads_and_sets_reserved_units_and_sorts_errors() -> anyhow::Result<()> {
    let mut opts = options();
    opts.managed = vec![("amswesteurope", 10)];
    let emulator = start_emulator(&testkit::workspace_bin("ams-emulator"), &opts)?;
    let client = MediaClient::new(reqwest::Client::new(), &ArmAuth::None, Duration::from_secs(5))?;
    let managed = account("amswesteurope", &emulator.url)?;

    let endpoint = client.mru_endpoint(&managed).await?;
    assert!(endpoint.as_str().ends_with('/'), "{endpoint}");
    let units = client.get_reserved_units(&managed).await?;
    assert_eq!((units.current_reserved_units, units.max_reservable_units, units.reserved_unit_type), (0, 25, 0));
    client.set_reserved_units(&managed, &units.account_id, units.reserved_unit_type, 3).await?;
    assert_eq!(client.get_reserved_units(&managed).await?.current_reserved_units, 3);

    // Above the service's maximum: the service refuses, and that is a caller fault, not a transient one.
    let too_many = client.set_reserved_units(&managed, &units.account_id, 0, 26).await;
    assert!(matches!(too_many, Err(MediaError::Rejected { status: 400, .. })), "{too_many:?}");
    // The wrong account id.
    let wrong = client.set_reserved_units(&managed, "00000000-0000-0000-0000-00000000dead", 0, 1).await;
    assert!(matches!(wrong, Err(MediaError::NotFound { .. })), "{wrong:?}");
    // An account that scales by itself has no MRUs to manage.
    let automatic = client.get_reserved_units(&account("amsnortheurope", &emulator.url)?).await;
    assert!(matches!(automatic, Err(MediaError::Rejected { .. })), "{automatic:?}");

    // Outage: transient, so callers may try again later.
    let http = reqwest::Client::new();
    http.post(format!("{}/_emulator/accounts/amswesteurope/fault", emulator.url))
        .json(&json!({"mode": "outage"}))
        .send()
        .await?;
    let down = client.get_reserved_units(&managed).await;
    assert!(matches!(down, Err(MediaError::Transient(_))), "{down:?}");
    // Throttling with a long Retry-After is handed back rather than waited out.
    http.post(format!("{}/_emulator/accounts/amswesteurope/fault", emulator.url))
        .json(&json!({"mode": "throttle", "retryAfterSeconds": 30}))
        .send()
        .await?;
    let throttled = client.get_reserved_units(&managed).await;
    assert!(matches!(throttled, Err(MediaError::Throttled { .. })), "{throttled:?}");
    // A short Retry-After is waited out and the call succeeds.
    http.post(format!("{}/_emulator/accounts/amswesteurope/fault", emulator.url))
        .json(&json!({"mode": "throttle", "retryAfterSeconds": 1, "count": 1}))
        .send()
        .await?;
    assert_eq!(client.get_reserved_units(&managed).await?.current_reserved_units, 3);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_submissions_raise_mrus_to_the_maximum_without_overshoot_and_few_calls() -> anyhow::Result<()>
{
    // Long phases: every job is still in flight when the MRUs are checked.
    let mut opts = managed(10, &[("MRU_CACHE_TTL", "10m")]);
    opts.time_scale = 1.0;
    opts.phases_ms = (600_000, 600_000, 600_000);
    let stack = Stack::start(opts).await?;

    let peak = Arc::new(AtomicU64::new(0));
    let watcher = {
        let (http, url, peak) = (stack.http.clone(), stack.emulator.url.clone(), peak.clone());
        tokio::spawn(async move {
            loop {
                if let Ok(r) = http.get(format!("{url}/_emulator/accounts")).send().await {
                    if let Ok(accounts) = r.json::<Vec<Value>>().await {
                        let current = accounts.iter().filter_map(|a| a["mru"]["current"].as_u64()).max().unwrap_or(0);
                        peak.fetch_max(current, Ordering::SeqCst);
                    }
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };
    stack.submit_all(&(0..50).map(|i| format!("mru-{i}")).collect::<Vec<_>>()).await?;
    let units = mru(&stack).await?;
    watcher.abort();
    assert_eq!(units["current"], 10, "MRUs end at min(max, needed): {units}");
    assert!(peak.load(Ordering::SeqCst) <= 10, "MRUs went above the maximum: {}", peak.load(Ordering::SeqCst));
    let calls = units["calls"].as_u64().unwrap_or(u64::MAX);
    // Without the cache every submission would read the MRUs (50 GETs) before deciding.
    assert!(calls <= 20, "{calls} MRU calls for 50 submissions: {units}");
    eprintln!("50 submissions, max 10: {calls} MRU calls, {} updates", units["updates"]);

    let status = stack.status().await?;
    let account = &status["accounts"][0];
    assert_eq!(account["mru"]["current"], 10, "{account}");
    assert_eq!(account["mru"]["saturated"], true, "50 jobs on 10 MRUs wait for units: {account}");
    let (_, job) = stack.get_job("mru-49").await?;
    assert!(job["attempts"][0]["mruSaturatedAtSubmission"].is_boolean(), "{job}");
    stack.assert_counters_exact().await?;
    Ok(())
}

async fn drain_to_floor(mode: &str) -> anyhow::Result<()> {
    // Slow enough that the whole burst is in flight together.
    let mut opts = managed(5, &[("MRU_SCALE_DOWN", mode), ("MRU_FLOOR", "1")]);
    opts.time_scale = 2.0;
    let stack = Stack::start(opts).await?;
    stack.submit_all(&(0..5).map(|i| format!("{mode}-{i}")).collect::<Vec<_>>()).await?;
    assert_eq!(mru(&stack).await?["current"], 5, "raised for the burst");
    eventually(LIMIT, "every job to finish", || async {
        for i in 0..5 {
            if stack.get_job(&format!("{mode}-{i}")).await?.1["state"] != "Finished" {
                return Ok(None);
            }
        }
        Ok(Some(()))
    })
    .await?;
    if mode == "periodic" {
        assert_eq!(mru(&stack).await?["current"], 5, "periodic mode leaves scale-down to the sweep");
        assert!(stack.sweep().await?, "the sweep failed");
    }
    let units = eventually(LIMIT, "MRUs to drain to the floor", || async {
        let units = mru(&stack).await?;
        Ok((units["current"] == 1).then_some(units))
    })
    .await?;
    eprintln!("{mode}: {units}");
    stack.assert_counters_exact().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn on_final_scale_down_drains_mrus_to_the_floor_as_jobs_end() -> anyhow::Result<()> {
    drain_to_floor("on-final").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn periodic_scale_down_drains_mrus_to_the_floor_on_the_sweep() -> anyhow::Result<()> {
    drain_to_floor("periodic").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn automatic_accounts_never_get_an_mru_call() -> anyhow::Result<()> {
    let mut opts = options();
    opts.settings = vec![("MRU_SCALE_DOWN".into(), "periodic".into())];
    let stack = Stack::start(opts).await?;
    for i in 0..6 {
        stack.submit(&job_body(&format!("auto-{i}"))).await?;
    }
    eventually(LIMIT, "every job to finish", || async {
        for i in 0..6 {
            if stack.get_job(&format!("auto-{i}")).await?.1["state"] != "Finished" {
                return Ok(None);
            }
        }
        Ok(Some(()))
    })
    .await?;
    assert!(stack.sweep().await?);
    for account in stack.emulator_accounts().await? {
        assert_eq!(account["mru"]["calls"], 0, "{account}");
    }
    Ok(())
}
