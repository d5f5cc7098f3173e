//! Media Reserved Unit scaling for managed accounts whose provider has reserved units, around the account's
//! counter row.
//!
//! One query reads the units in flight (the sum of the account's counter shards) and the cached MRU value,
//! so one read answers "does this job fit?". A change is first claimed in the `mru` row (guarded by its ETag,
//! so concurrent claims serialise and none loses an increase), then sent to the service. Whoever sends a value reads the row again afterwards and
//! sends the row's value if it moved meanwhile, so the service always converges to the last claim even when
//! two updates arrive out of order. A failed update marks the cache stale, so the next caller reads the real
//! value instead of trusting a claim the service never got.

use crate::config::AccountConfig;
use crate::domain::mru::{saturated, scale_down, scale_up};
use crate::domain::MruCache;
use crate::store::{backoff, StoreError};
use crate::App;
use chrono::{DateTime, Utc};
use tracing::{info, warn};

/// Rounds of claim-and-retry before giving up on scaling for this call (the job is submitted anyway).
const ROUNDS: u32 = 30;

/// Makes room for a job already counted in flight on `account`, per the guidance. Returns whether the
/// account is saturated: at its MRU maximum with more units in flight than MRUs, so the job will wait in
/// Scheduled for a free unit. Failing to reach the MRU endpoint does not stop the submission.
pub async fn scale_up_for(
    app: &App,
    account: &AccountConfig,
    need: u32,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    // Off unless the account is managed and its provider has reserved units (Ravnur and MK.IO have none).
    if !account.scales_mru() {
        return Ok(false);
    }
    for round in 0..ROUNDS {
        let row = app.store.account(&account.name).await?;
        let cache = match row.mru {
            Some(cache) if cache.is_fresh(app.settings.mru.cache_ttl, now) => cache,
            _ => {
                // One reader per instance: the others wait here and then find the fresh value in the row.
                let _reading = app.mru_refresh.lock().await;
                if !refresh_cache(app, account, now).await? {
                    return Ok(false);
                }
                continue;
            }
        };
        let units = row.counters.units;
        let ceiling = cache.ceiling(account.max_mru);
        let Some(target) = scale_up(units, need, cache.current, ceiling) else {
            return Ok(saturated(units, cache.current, ceiling));
        };
        let claimed = MruCache { current: target, ..cache.clone() };
        if app.store.set_mru_cache(&account.name, &claimed, row.mru_etag).await? {
            info!(account = %account.name, region = %account.region, from = cache.current, to = target, units_in_flight = units, "raising MRUs");
            converge(app, account, &claimed).await?;
            return Ok(saturated(units, target, ceiling));
        }
        backoff(round).await;
    }
    warn!(account = %account.name, "MRU scale-up gave up after repeated concurrent changes");
    Ok(false)
}

/// Lowers a managed account's MRUs to what is in flight, never below `MRU_FLOOR`. Used after a job ends
/// (`MRU_SCALE_DOWN=on-final`) or by the sweep (`periodic`). Uses the cached value; an account whose MRUs
/// were never read has nothing to lower.
pub async fn scale_down_account(app: &App, account: &AccountConfig) -> Result<(), StoreError> {
    if !account.scales_mru() {
        return Ok(());
    }
    for round in 0..ROUNDS {
        let row = app.store.account(&account.name).await?;
        let Some(cache) = row.mru else { return Ok(()) };
        let units = row.counters.units;
        let Some(target) = scale_down(units, cache.current, app.settings.mru.floor) else { return Ok(()) };
        let claimed = MruCache { current: target, ..cache.clone() };
        if app.store.set_mru_cache(&account.name, &claimed, row.mru_etag).await? {
            info!(account = %account.name, region = %account.region, from = cache.current, to = target, units_in_flight = units, "lowering MRUs");
            converge(app, account, &claimed).await?;
            // A job counted after the units were read does not move the `mru` row, so this claim cannot see
            // it: check again, and raise what the lower claim took from a job that has just been counted.
            scale_up_for(app, account, 0, Utc::now()).await?;
            return Ok(());
        }
        backoff(round).await;
    }
    warn!(account = %account.name, "MRU scale-down gave up after repeated concurrent changes");
    Ok(())
}

/// Sends `claimed` to the service, then keeps sending the row's value until the last value sent is the
/// row's (another caller claimed a different value meanwhile).
async fn converge(app: &App, account: &AccountConfig, claimed: &MruCache) -> Result<(), StoreError> {
    let mut sent = claimed.current;
    for _ in 0..ROUNDS {
        if let Err(error) = app.media.set_reserved_units(account, &claimed.account_id, claimed.unit_type, sent).await {
            warn!(account = %account.name, region = %account.region, %error, mru = sent, "could not set MRUs; the cached value is marked stale");
            return invalidate(app, account).await;
        }
        let row = app.store.account(&account.name).await?;
        match row.mru {
            Some(cache) if cache.current != sent => sent = cache.current,
            _ => return Ok(()),
        }
    }
    Ok(())
}

/// Makes the cached value fresh, reading the service at most once: the counter row changes with every
/// attempt transaction, so under a burst the write may lose several ETag races, and each is retried with the
/// value already read rather than by reading the service again. `false` if the service cannot be reached.
async fn refresh_cache(app: &App, account: &AccountConfig, now: DateTime<Utc>) -> Result<bool, StoreError> {
    let mut fresh = None;
    for round in 0..ROUNDS {
        let row = app.store.account(&account.name).await?;
        if row.mru.as_ref().is_some_and(|c| c.is_fresh(app.settings.mru.cache_ttl, now)) {
            return Ok(true);
        }
        if fresh.is_none() {
            fresh = read_service(app, account, now).await;
        }
        let Some(value) = &fresh else { return Ok(false) };
        if app.store.set_mru_cache(&account.name, value, row.mru_etag).await? {
            return Ok(true);
        }
        backoff(round).await;
    }
    Ok(true)
}

/// Reads the service's value into a fresh cache entry; `None` (logged) if the endpoint cannot be reached.
async fn read_service(app: &App, account: &AccountConfig, now: DateTime<Utc>) -> Option<MruCache> {
    match app.media.get_reserved_units(account).await {
        Ok(units) => Some(MruCache {
            current: units.current_reserved_units,
            max_reservable: units.max_reservable_units,
            account_id: units.account_id,
            unit_type: units.reserved_unit_type,
            read_at: now,
        }),
        Err(error) => {
            warn!(account = %account.name, region = %account.region, %error, "could not read MRUs; submitting without scaling");
            None
        }
    }
}

/// Marks the cached value stale, so the next caller reads the service. Best effort: if the row changed
/// meanwhile, the writer that changed it decides.
async fn invalidate(app: &App, account: &AccountConfig) -> Result<(), StoreError> {
    let row = app.store.account(&account.name).await?;
    if let Some(cache) = row.mru {
        let stale = MruCache { read_at: DateTime::UNIX_EPOCH, ..cache };
        app.store.set_mru_cache(&account.name, &stale, row.mru_etag).await?;
    }
    Ok(())
}
