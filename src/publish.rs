//! Video-on-demand publication across regions (the guidance's "How to build video-on-demand cross region
//! streaming"), and keeping every account's transforms and policies identical to `definitions/media.json`.
//!
//! - When a job finishes, [`on_job_finished`] writes one publication row per configured account and
//!   publishes at once in the account that encoded it, within a time budget well under Event Grid's 30 s.
//! - Each sweep, [`advance_publications`] moves every open row one step: copy the asset's blobs server to
//!   server, wait for the copies, then create the locator with the source's locator id and content keys.
//! - Each sweep, [`sync_definitions`] compares accounts that are due with the definitions and repairs them.
//!
//! Every step can run twice: assets are created or reused, blobs already copied from the same source are
//! left alone, and an existing locator is reused when it is the one we meant and reported as a conflict
//! when it is not. Content key values are read from the source locator when a region needs them and go
//! straight into the request; they are never stored or logged.

use crate::config::AccountConfig;
use crate::domain::definitions::differences;
use crate::domain::publication::{
    locator_mismatch, next_step, AssetPublication, ExpectedLocator, PublicationRecord, PublicationState, Role, Step,
    ALERT_AFTER_FAILURES,
};
use crate::domain::{Alert, AttemptRecord, JobRecord, JobState};
use crate::media::blob::{BlobItem, CopyStatus};
use crate::media::streaming::{ContentKey, LocatorCreated, LocatorSpec, SasPermissions};
use crate::media::MediaError;
use crate::store::{DefinitionsCheck, StoreError};
use crate::sweep::SweepReport;
use crate::App;
use chrono::{DateTime, Utc};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;
use tracing::{info, warn};

/// How long OnJobStateChange may spend publishing in the encoding region. Event Grid gives a delivery 30 s;
/// what does not fit is finished by the next sweep.
const EVENT_BUDGET: Duration = Duration::from_secs(10);

/// How long the SAS URLs used for one pass of copies stay valid (the service allows less than 24 h); long
/// enough for a large copy to land, since Azure reads the source while the copy runs.
const SAS_LIFETIME: chrono::Duration = chrono::Duration::hours(8);

/// Why a publication step did not complete.
#[derive(Debug, thiserror::Error)]
enum PublishError {
    /// Media Services or its storage failed: retried per the schedule.
    #[error(transparent)]
    Media(#[from] MediaError),
    /// The target holds a different locator under our name or id: reported, never overwritten.
    #[error("{0}")]
    Conflict(String),
}

/// Starts the publication of a finished job: one row per configured account, then the locators in the
/// account that encoded it. Safe to run again for the same job (repeated events, lost-event repair).
pub async fn on_job_finished(
    app: &App,
    job: &JobRecord,
    attempt: &AttemptRecord,
    now: DateTime<Utc>,
) -> Result<Vec<Alert>, StoreError> {
    let current = job.state == JobState::Finished
        && attempt.state == JobState::Finished
        && job.attempt == attempt.number
        && job.account.as_deref() == Some(attempt.account.as_str());
    if !app.settings.publish.enabled || !current || attempt.output_assets.is_empty() {
        return Ok(vec![]);
    }
    let Some(account) = app.settings.account(&attempt.account) else { return Ok(vec![]) };
    let assets = attempt
        .output_assets
        .iter()
        .map(|asset| AssetPublication {
            asset: asset.clone(),
            locator_name: asset.clone(),
            // Random, not derived from the job id, so streaming URLs cannot be guessed.
            streaming_locator_id: uuid::Uuid::new_v4().to_string(),
            content_keys: vec![],
            paths: None,
        })
        .collect();
    let policy = &app.settings.publish.streaming_policy;
    let candidate = PublicationRecord::source(&job.job_id, &account.name, &account.region, policy, assets, now);
    if app.store.insert_publication(&candidate).await? {
        info!(job_id = %job.job_id, account = %account.name, region = %account.region, "publication started");
    }
    // Of two concurrent deliveries, one row won: every region takes its ids from the stored one.
    let source =
        app.store.get_publication(&account.name, &job.job_id).await?.ok_or_else(|| {
            StoreError::Corrupt(format!("publication of {} in {} vanished", job.job_id, account.name))
        })?;
    ensure_copies(app, &source, now).await?;
    match tokio::time::timeout(EVENT_BUDGET, advance_one(app, source, now)).await {
        Ok(alerts) => alerts,
        Err(_) => {
            warn!(job_id = %job.job_id, account = %account.name, region = %account.region, "publishing took longer than the event allows; the sweep finishes it");
            Ok(vec![])
        }
    }
}

/// After the sweep read a quiet attempt back from Media Services: if that made the job Finished (its event
/// was lost), its publication starts here.
pub async fn after_reconcile(
    app: &App,
    account: &AccountConfig,
    attempt: &AttemptRecord,
    now: DateTime<Utc>,
) -> Result<Vec<Alert>, StoreError> {
    if !app.settings.publish.enabled {
        return Ok(vec![]);
    }
    let Some(current) = app.store.get_attempt(&account.name, &attempt.ams_job_name).await? else { return Ok(vec![]) };
    if current.state != JobState::Finished {
        return Ok(vec![]);
    }
    let Some(job) = app.store.get_job(&current.job_id).await? else { return Ok(vec![]) };
    on_job_finished(app, &job.value, &current, now).await
}

/// A row for every configured account other than the source (existing rows are kept).
async fn ensure_copies(app: &App, source: &PublicationRecord, now: DateTime<Utc>) -> Result<(), StoreError> {
    for other in app.settings.accounts.iter().filter(|a| a.name != source.account) {
        app.store.insert_publication(&PublicationRecord::copy_of(source, &other.name, &other.region, now)).await?;
    }
    Ok(())
}

/// Moves every open publication of every account in rotation one step. Accounts out of rotation are
/// skipped until they are back; then they catch up on what they missed.
pub async fn advance_publications(
    app: &App,
    in_rotation: &BTreeSet<&str>,
    now: DateTime<Utc>,
    report: &mut SweepReport,
) -> Result<(), StoreError> {
    if !app.settings.publish.enabled {
        return Ok(());
    }
    for account in app.settings.accounts.iter().filter(|a| in_rotation.contains(a.name.as_str())) {
        for record in app.store.open_publications(&account.name).await? {
            report.alerts.extend(advance_one(app, record, now).await?);
        }
    }
    Ok(())
}

/// One step of one region's publication, with its failure recorded in the row.
async fn advance_one(app: &App, record: PublicationRecord, now: DateTime<Utc>) -> Result<Vec<Alert>, StoreError> {
    let source = match record.role {
        Role::Copy => app.store.get_publication(&record.source_account, &record.job_id).await?,
        Role::Source => None,
    };
    let (Some(account), Some(source_account)) =
        (app.settings.account(&record.account), app.settings.account(&record.source_account))
    else {
        // An account removed from the configuration: nothing can be done for its rows.
        return Ok(vec![]);
    };
    let mut record = record;
    if next_step(&record, source.as_ref(), now) == Step::SyncContent {
        match sync_content(app, &record, source_account, account, now).await {
            Ok(landed) => {
                let state = if landed { PublicationState::Publishing } else { PublicationState::Copying };
                let stored =
                    app.store.update_publication(&account.name, &record.job_id, |r| r.progressed(state, now)).await?;
                match stored {
                    Some(stored) if landed => record = stored.value,
                    _ => return Ok(vec![]),
                }
            }
            Err(error) => return failed(app, &record, &error.to_string(), now).await,
        }
    }
    if next_step(&record, source.as_ref(), now) != Step::CreateLocators {
        return Ok(vec![]);
    }
    match create_locators(app, &record, source_account, account).await {
        Ok(assets) => {
            let stored = app
                .store
                .update_publication(&account.name, &record.job_id, |r| r.published(assets.clone(), now))
                .await?;
            if stored.as_ref().is_some_and(|s| s.changed) {
                // If this was the last region, the job's Published message can go.
                crate::notify::deliver_soon(app, &record.job_id);
                let ids: Vec<&str> = assets.iter().map(|a| a.streaming_locator_id.as_str()).collect();
                info!(job_id = %record.job_id, account = %account.name, region = %account.region, locators = ?ids, role = ?record.role, "published for streaming");
                if record.role == Role::Source {
                    if let Some(stored) = stored {
                        ensure_copies(app, &stored.value, now).await?;
                    }
                }
            }
            Ok(vec![])
        }
        Err(PublishError::Conflict(reason)) => {
            let stored =
                app.store.update_publication(&account.name, &record.job_id, |r| r.conflict(&reason, now)).await?;
            if !stored.is_some_and(|s| s.changed) {
                return Ok(vec![]);
            }
            // A conflict ends the region's publication too.
            crate::notify::deliver_soon(app, &record.job_id);
            warn!(job_id = %record.job_id, account = %account.name, region = %account.region, %reason, "publication conflict");
            Ok(vec![Alert::publication_conflict(&record.job_id, &account.name, &account.region, &reason, now)])
        }
        Err(PublishError::Media(error)) => failed(app, &record, &error.to_string(), now).await,
    }
}

async fn failed(
    app: &App,
    record: &PublicationRecord,
    error: &str,
    now: DateTime<Utc>,
) -> Result<Vec<Alert>, StoreError> {
    let schedule = &app.settings.publish.retry;
    let stored =
        app.store.update_publication(&record.account, &record.job_id, |r| r.failed(error, schedule, now)).await?;
    let Some(stored) = stored.filter(|s| s.changed).map(|s| s.value) else { return Ok(vec![]) };
    warn!(job_id = %stored.job_id, account = %stored.account, region = %stored.region, failures = stored.failures, retry_at = ?stored.retry_at, %error, "publication step failed");
    Ok(if stored.failures == ALERT_AFTER_FAILURES {
        vec![Alert::publication_failing(&stored.job_id, &stored.account, &stored.region, stored.failures, error, now)]
    } else {
        vec![]
    })
}

/// Makes sure the asset exists in the target and every blob of the source is copied or being copied there.
/// `true` once every copy has landed.
async fn sync_content(
    app: &App,
    record: &PublicationRecord,
    source: &AccountConfig,
    target: &AccountConfig,
    now: DateTime<Utc>,
) -> Result<bool, MediaError> {
    let expiry = now + SAS_LIFETIME;
    let mut landed = true;
    let mut started = 0;
    for asset in &record.assets {
        app.media.ensure_asset(target, &asset.asset).await?;
        let from = app.media.container_sas(source, &asset.asset, SasPermissions::Read, expiry).await?;
        let to = app.media.container_sas(target, &asset.asset, SasPermissions::ReadWrite, expiry).await?;
        let wanted = app.media.list_blobs(&from).await?;
        if wanted.is_empty() {
            return Err(MediaError::Transient(format!("asset {} has no blobs in {} yet", asset.asset, source.name)));
        }
        let present: BTreeMap<String, BlobItem> =
            app.media.list_blobs(&to).await?.into_iter().map(|b| (b.name.clone(), b)).collect();
        for blob in &wanted {
            let ours = |b: &&BlobItem| b.copied_from(&from, &blob.name);
            match present.get(&blob.name).filter(ours).map(|b| (b.copy_status, b.length)) {
                Some((Some(CopyStatus::Pending), _)) => landed = false,
                Some((Some(CopyStatus::Success), length)) if length == blob.length => {}
                // Missing, failed, from elsewhere or of another length: (re)copy, server to server.
                _ => {
                    app.media.start_copy(&from, &to, &blob.name).await?;
                    started += 1;
                    landed = false;
                }
            }
        }
    }
    if started > 0 {
        info!(job_id = %record.job_id, account = %target.name, region = %target.region, source = %source.name, copies = started, "copies started");
    }
    Ok(landed)
}

/// Creates (or finds) every locator of the record in its account; the locators as they now stand, with
/// their key ids and paths.
async fn create_locators(
    app: &App,
    record: &PublicationRecord,
    source: &AccountConfig,
    account: &AccountConfig,
) -> Result<Vec<AssetPublication>, PublishError> {
    let mut done = Vec::with_capacity(record.assets.len());
    for asset in &record.assets {
        // The same key ids and values as the source, read from it now and never kept.
        let keys: Vec<ContentKey> = match record.role {
            Role::Copy => app.media.list_content_keys(source, &asset.locator_name).await?,
            Role::Source => vec![],
        };
        let spec = LocatorSpec {
            asset_name: &asset.asset,
            streaming_policy_name: &record.streaming_policy,
            streaming_locator_id: &asset.streaming_locator_id,
            content_keys: &keys,
        };
        let live = match app.media.create_locator(account, &asset.locator_name, &spec).await? {
            LocatorCreated::Created(live) => live,
            LocatorCreated::Existing(live) => live,
            LocatorCreated::Refused(error) => {
                return Err(PublishError::Conflict(format!(
                    "streaming locator {} (streamingLocatorId {}) was refused in {}: {error}",
                    asset.locator_name, asset.streaming_locator_id, account.name
                )))
            }
        };
        let expected = ExpectedLocator {
            asset_name: &asset.asset,
            streaming_locator_id: &asset.streaming_locator_id,
            streaming_policy_name: &record.streaming_policy,
            content_key_ids: (record.role == Role::Copy).then(|| keys.iter().map(|k| k.id.clone()).collect()),
        };
        drop(keys);
        if let Some(reason) = locator_mismatch(&expected, &live) {
            return Err(PublishError::Conflict(format!(
                "streaming locator {} already exists in {}: {reason}",
                asset.locator_name, account.name
            )));
        }
        let paths = app.media.list_paths(account, &asset.locator_name).await?;
        done.push(AssetPublication { content_keys: live.content_keys, paths: Some(paths), ..asset.clone() });
    }
    Ok(done)
}

/// A job's publication in every configured account, as stored (GetJob reads these; no ARM calls).
pub async fn publications_of(app: &App, job_id: &str) -> Result<Vec<PublicationRecord>, StoreError> {
    let mut found = Vec::new();
    for account in &app.settings.accounts {
        if let Some(record) = app.store.get_publication(&account.name, job_id).await? {
            found.push(record);
        }
    }
    Ok(found)
}

// ---- definitions ----

/// Makes the account's definitions due at the next sweep (it just came back into rotation, and may have
/// missed a change or lost resources while it was out).
pub async fn definitions_due(app: &App, account: &AccountConfig) -> Result<(), StoreError> {
    app.store.forget_definitions_check(&account.name).await
}

/// A digest of the resolved definitions: a changed setting (a new signing key or key delivery host) makes
/// every account due at once. Only a truncated hash is stored, never a value.
fn definitions_digest(app: &App) -> String {
    let d = &app.settings.definitions;
    // The webhook's URL and (a digest of) its secret too: MK.IO never shows the secret back, so a new one is
    // noticed here and written to every project.
    let webhook = app
        .settings
        .mkio_webhook
        .as_ref()
        .map(|w| (w.url.as_str(), crate::domain::credential::fingerprint(w.secret.expose())));
    let text = serde_json::to_string(&(
        &d.transforms,
        &d.content_key_policies,
        &d.streaming_policies,
        &d.provider_transforms,
        webhook,
    ))
    .unwrap_or_default();
    Sha256::digest(text.as_bytes()).iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// Checks every account in rotation whose last check is older than `DEFINITIONS_CHECK_EVERY` (or that
/// was never checked, or checked against other definitions), and repairs what differs.
pub async fn sync_definitions(
    app: &App,
    in_rotation: &BTreeSet<&str>,
    now: DateTime<Utc>,
    report: &mut SweepReport,
) -> Result<(), StoreError> {
    let definitions = &app.settings.definitions;
    let every = app.settings.publish.definitions_check_every;
    let digest = definitions_digest(app);
    for account in app.settings.accounts.iter().filter(|a| in_rotation.contains(a.name.as_str())) {
        let last = app.store.definitions_check(&account.name).await?;
        // Something the service cannot show back may have changed (the webhook secret): rewrite what holds it.
        let changed = last.as_ref().is_none_or(|last| last.version != definitions.version || last.digest != digest);
        let due = changed
            || last.as_ref().is_some_and(|last| {
                now.signed_duration_since(last.checked_at).to_std().unwrap_or(Duration::ZERO) >= every
            });
        if !due {
            continue;
        }
        match sync_account(app, account, changed).await {
            Ok(outcome) => {
                for change in &outcome.repaired {
                    info!(account = %account.name, region = %account.region, %change, "definition repaired");
                }
                if !outcome.repaired.is_empty() {
                    report.log.push(format!("{}: {}", account.name, outcome.repaired.join(", ")));
                }
                for (policy, found) in &outcome.drifted {
                    warn!(account = %account.name, region = %account.region, policy, differences = ?found, "streaming policy differs from its definition");
                    report.alerts.push(Alert::policy_drift(&account.name, &account.region, policy, found, now));
                }
                let check = DefinitionsCheck { checked_at: now, version: definitions.version, digest: digest.clone() };
                app.store.record_definitions_check(&account.name, &check).await?;
            }
            Err(error) => {
                warn!(account = %account.name, region = %account.region, %error, "could not check the definitions; trying again next sweep");
                report.log.push(format!("{}: definitions not checked ({error})", account.name));
            }
        }
    }
    Ok(())
}

/// What checking one account found.
#[derive(Debug, Default)]
struct SyncOutcome {
    /// What was created or updated.
    repaired: Vec<String>,
    /// Streaming policies that differ and cannot be updated, with where.
    drifted: Vec<(String, Vec<String>)>,
}

fn properties(body: &Value) -> &Value {
    body.get("properties").unwrap_or(&Value::Null)
}

/// Brings one account in line with the definitions: transforms and content key policies are created or
/// updated; streaming policies are created when missing and reported when they differ.
async fn sync_account(app: &App, account: &AccountConfig, changed: bool) -> Result<SyncOutcome, MediaError> {
    let definitions = &app.settings.definitions;
    let media = &app.media;
    let mut outcome = SyncOutcome::default();
    for name in definitions.transforms.keys() {
        // The provider's own body where its presets are named differently.
        let Some(body) = definitions.transform_for(name, account.provider) else { continue };
        match media.transform_properties(account, name).await? {
            None => {
                media.put_transform(account, name, body).await?;
                outcome.repaired.push(format!("transform {name} created"));
            }
            Some(live) => {
                let found = differences(properties(body), &live);
                if !found.is_empty() {
                    media.put_transform(account, name, body).await?;
                    outcome.repaired.push(format!("transform {name} updated ({})", found.join("; ")));
                }
            }
        }
    }
    // Content key policies before streaming policies, which name them.
    for (name, body) in &definitions.content_key_policies {
        match media.content_key_policy_with_secrets(account, name).await? {
            None => {
                media.put_content_key_policy(account, name, body).await?;
                outcome.repaired.push(format!("content key policy {name} created"));
            }
            Some(live) => {
                let found = differences(properties(body), &live);
                if !found.is_empty() {
                    media.put_content_key_policy(account, name, body).await?;
                    outcome.repaired.push(format!("content key policy {name} updated ({})", found.join("; ")));
                }
            }
        }
    }
    for (name, body) in &definitions.streaming_policies {
        match media.streaming_policy_properties(account, name).await? {
            None => {
                if media.create_streaming_policy(account, name, body).await? {
                    outcome.repaired.push(format!("streaming policy {name} created"));
                }
            }
            Some(live) => {
                let found = differences(properties(body), &live);
                if !found.is_empty() {
                    outcome.drifted.push((name.clone(), found));
                }
            }
        }
    }
    sync_webhook_rule(app, account, changed, &mut outcome).await?;
    Ok(outcome)
}

/// Keeps the webhook rule of a provider whose job events come by webhook (MK.IO) as the settings say, so no
/// operator configures it by hand. A GET shows the URL, events and the names of the authentication headers
/// but masks their values: those are compared, and the rule is also written whenever the definitions digest
/// changed, which covers a new secret.
async fn sync_webhook_rule(
    app: &App,
    account: &AccountConfig,
    changed: bool,
    outcome: &mut SyncOutcome,
) -> Result<(), MediaError> {
    let (Some(webhook), false) = (&app.settings.mkio_webhook, account.provider.capabilities().event_grid) else {
        return Ok(());
    };
    use crate::media::mkio::{webhook_drift, webhook_rule_body, WEBHOOK_RULE};
    let wanted = webhook_rule_body(
        webhook.url.as_str(),
        crate::functions::on_mkio_event::SECRET_HEADER,
        webhook.secret.expose(),
    );
    let reason = match app.media.webhook_rule(account, WEBHOOK_RULE).await? {
        None => Some("created".to_owned()),
        Some(live) => {
            let found = webhook_drift(&wanted, &live);
            if !found.is_empty() {
                Some(format!("updated ({})", found.join("; ")))
            } else if changed {
                Some("rewritten (the webhook settings changed)".to_owned())
            } else {
                None
            }
        }
    };
    if let Some(reason) = reason {
        app.media.put_webhook_rule(account, WEBHOOK_RULE, &wanted).await?;
        outcome.repaired.push(format!("webhook rule {WEBHOOK_RULE} {reason}"));
    }
    Ok(())
}
