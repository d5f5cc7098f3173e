//! Outcome notifications on their way out: the `job-events` topic and the caller's callback URL, from the
//! delivery state the store writes with the write that makes a job final (`store::outbox`).
//!
//! - Right after an invocation makes a job final (or ends its last region's publication), [`deliver_soon`]
//!   makes the first tries in a spawned task:
//!   the invocation never waits on Service Bus or on a caller's server.
//! - Each sweep, [`drain`] tries again whatever is due, with the back-off of the schedule, and starts a
//!   finished job's publication if nothing did (so its `Published` message is not waited for in vain).
//! - An instance holds a job's delivery state under a short lease while it delivers, so two instances (or a sweep and
//!   a spawned task) do not both call a callback. Should one die mid-way, the lease runs out and the next
//!   sweep goes on; a message sent twice carries the same id, and the topic's duplicate detection drops it.
//!
//! A row is removed only after every delivery it tracks has succeeded (or a callback was given up), so each
//! outcome is delivered at least once, whatever dies where.

use crate::bus::Bus;
use crate::config::Settings;
use crate::domain::notification::{
    outcome, plan, publication_complete, published, sign, topic_retry, Channel, DeliveryState, Kind, Notification,
    Outbox, LEASE, MESSAGE_ID_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER,
};
use crate::domain::{Alert, JobRecord, SubmitRequest};
use crate::store::{JobOutbox, StoreError};
use crate::workflow::ORPHAN_INDEX_AGE;
use crate::{publish, App};
use chrono::{DateTime, Utc};
use std::time::{Duration, Instant};
use tracing::{info, warn};

/// One callback's timeout: a receiver should answer at once and do its work afterwards.
const CALLBACK_TIMEOUT: Duration = Duration::from_secs(10);
/// How many jobs' messages a sweep delivers at once: a slow receiver holds up only its own job.
const SWEEP_PARALLELISM: usize = 8;
/// How long a sweep goes on starting deliveries; the rest waits for the next sweep, so callbacks never
/// delay failover.
const SWEEP_BUDGET: Duration = Duration::from_secs(20);
/// A finished job whose publication has not started this long after it ended is started by the sweep (the
/// invocation that finished it may have died first).
const PUBLICATION_START_GRACE: chrono::Duration = chrono::Duration::minutes(2);

/// The channels: Service Bus when configured, and an HTTP client for callbacks.
#[derive(Clone, Debug)]
pub struct Notifier {
    bus: Option<Bus>,
    callbacks: reqwest::Client,
}

impl Notifier {
    /// The channels the settings configure. Callbacks get their own client that follows no redirect, so a
    /// public callback URL cannot send the product's request on to an address it would refuse.
    pub fn new(settings: &Settings, http: reqwest::Client) -> anyhow::Result<Notifier> {
        let bus = match &settings.notify.service_bus {
            Some(endpoint) => Some(Bus::new(http, endpoint.clone(), &settings.arm_auth)?),
            None => None,
        };
        let callbacks = crate::tls::client_builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(CALLBACK_TIMEOUT)
            .user_agent(concat!("ams-failover/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Notifier { bus, callbacks })
    }
}

/// Which deliveries a pass makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pass {
    /// Right after the job ended (or its publication did): first tries only; retries are the sweep's.
    FirstTries,
    /// The sweep: everything that is due.
    Sweep,
}

/// Starts the first deliveries of a job that just ended, or whose publication just ended, without waiting
/// for them. The delivery state stays the source of truth: if this instance dies, the sweep delivers.
pub fn deliver_soon(app: &App, job_id: &str) {
    let app = app.clone();
    let job_id = job_id.to_owned();
    tokio::spawn(async move {
        match deliver(&app, &job_id, Utc::now(), Pass::FirstTries).await {
            Ok(alerts) if alerts.is_empty() => {}
            Ok(alerts) => {
                warn!(job_id, alerts = alerts.len(), "a first delivery raised alerts; the sweep reports them")
            }
            Err(error) => warn!(job_id, %error, "could not deliver the job's notifications yet; the sweep retries"),
        }
    });
}

/// Delivers what is due of every job the index points to, a few at a time and within a time budget.
/// Returns the alerts (callbacks given up) and how many rows still wait.
pub async fn drain(app: &App, now: DateTime<Utc>) -> Result<(Vec<Alert>, usize), StoreError> {
    let rows = app.store.index().await?.outbox;
    let started = Instant::now();
    let mut alerts = Vec::new();
    for chunk in rows.chunks(SWEEP_PARALLELISM) {
        if started.elapsed() > SWEEP_BUDGET {
            info!(left = rows.len(), "notifications left for the next sweep");
            break;
        }
        let mut tasks = tokio::task::JoinSet::new();
        for (job_id, _) in chunk {
            let (app, job_id) = (app.clone(), job_id.clone());
            tasks.spawn(async move { deliver(&app, &job_id, now, Pass::Sweep).await });
        }
        while let Some(done) = tasks.join_next().await {
            match done {
                Ok(Ok(more)) => alerts.extend(more),
                // One row's trouble (a corrupt row, storage for a moment) must not stop the others.
                Ok(Err(error)) => warn!(%error, "could not deliver a job's notifications; trying again next sweep"),
                Err(error) => warn!(%error, "a delivery task failed"),
            }
        }
    }
    // With nothing pointed to when this sweep looked, nothing is counted as waiting; a job that ended since
    // is on its first tries, and the next sweep sees it.
    let waiting = if rows.is_empty() { 0 } else { app.store.index().await?.outbox.len() };
    Ok((alerts, waiting))
}

/// Delivers what is due of one job's messages at `now`, under a lease. Returns the alerts to send.
///
/// The first tries right after this instance ended the job start from the rows as that write left them;
/// should another writer have moved the delivery state on since, they read it and go on from there.
pub async fn deliver(app: &App, job_id: &str, now: DateTime<Utc>, pass: Pass) -> Result<Vec<Alert>, StoreError> {
    if pass == Pass::FirstTries {
        if let Some(held) = app.store.ended_here(job_id) {
            if let Some(alerts) = deliver_from(app, job_id, held, now, pass).await? {
                return Ok(alerts);
            }
        }
    }
    let read = app.store.job_outbox(job_id).await?;
    Ok(deliver_from(app, job_id, read, now, pass).await?.unwrap_or_default())
}

/// [`deliver`] from the rows given. `None` when the delivery state was not at the version given: another
/// writer changed it first.
async fn deliver_from(
    app: &App,
    job_id: &str,
    JobOutbox { job, outbox: row }: JobOutbox,
    now: DateTime<Utc>,
    pass: Pass,
) -> Result<Option<Vec<Alert>>, StoreError> {
    let Some(job) = job.map(|j| j.value) else {
        // The pointer goes before a final write, which needs the job row: a pointer without one is damage,
        // and old enough, it goes.
        if let Some(since) = app.store.outbox_pointer(job_id).await? {
            if since.is_none_or(|since| now - since > ORPHAN_INDEX_AGE) {
                app.store.forget_outbox_pointer(job_id).await?;
            }
        }
        return Ok(Some(vec![]));
    };
    if !job.state.is_final() {
        // A pointer written by a writer that then lost its race, or died before its write; the job's own
        // final write will find it and use it.
        return Ok(Some(vec![]));
    }
    let Some(row) = row else {
        // The final write creates the delivery state and delivery removes it: everything went out, and
        // this pointer was left behind (or written again by a writer that lost its race).
        app.store.forget_outbox_pointer(job_id).await?;
        return Ok(Some(vec![]));
    };
    if row.value.leased(now) {
        return Ok(Some(vec![]));
    }
    let request: SubmitRequest = serde_json::from_str(&job.request)
        .map_err(|e| StoreError::Corrupt(format!("job {job_id}: unreadable request: {e}")))?;
    let callback = request.callback_url.clone().zip(app.settings.notify.callback_key.clone());
    let publish = app.settings.publish.enabled;
    let planned = plan(&job, app.notifier.bus.is_some(), callback.is_some(), publish);
    let mut outbox = row.value.clone().planned(&planned);

    let records = if outbox.waits_for_publication() { publish::publications_of(app, job_id).await? } else { vec![] };
    let ready = publication_complete(&records, app.settings.accounts.len());
    let due = outbox.due(now, ready, pass == Pass::FirstTries);
    if due.is_empty() {
        if outbox.finished() {
            return Ok(app.store.close_outbox(job_id, row.etag).await?.then(Vec::new));
        } else if pass == Pass::Sweep && outbox.waits_for_publication() && records.is_empty() {
            return start_publication(app, &job, now).await.map(Some);
        }
        return Ok(Some(vec![]));
    }

    let claim =
        Outbox { lease_until: Some(now + chrono::Duration::from_std(LEASE).unwrap_or_default()), ..outbox.clone() };
    let Some(etag) = app.store.replace_outbox(job_id, &claim, row.etag).await? else {
        // Another instance claimed it first: it delivers.
        return Ok(None);
    };
    let follows =
        planned.contains(&(Kind::Published, Channel::Topic)) || planned.contains(&(Kind::Published, Channel::Callback));
    let mut alerts = Vec::new();
    for (kind, channel) in due {
        let message = match kind {
            Kind::Published => published(
                &job,
                &request,
                &records,
                app.settings.accounts.len(),
                app.settings.publish.streaming_host.as_deref(),
            ),
            _ => outcome(&job, &request, follows),
        };
        let Some(message) = message else { continue };
        let result = match (channel, &callback) {
            (Channel::Topic, _) => send_to_topic(app, &message).await,
            (Channel::Callback, Some((url, key))) => send_callback(app, url, key, &message).await,
            (Channel::Callback, None) => continue,
        };
        let at = Utc::now();
        let (schedule, give_up) = match channel {
            Channel::Topic => (topic_retry(), false),
            Channel::Callback => (app.settings.notify.callback_retry.clone(), true),
        };
        let state = outbox.record(kind, channel, result.clone(), at, &schedule, give_up);
        let host = callback
            .as_ref()
            .and_then(|(url, _)| url::Url::parse(url).ok())
            .and_then(|u| u.host_str().map(str::to_owned));
        let target = match channel {
            Channel::Topic => app.settings.notify.topic.clone(),
            Channel::Callback => host.clone().unwrap_or_default(),
        };
        match (state, result) {
            (Some(DeliveryState::Delivered), _) => {
                info!(job_id, account = ?job.account, region = ?job.region, message_id = %message.message_id, %channel, %target, "notification delivered")
            }
            (Some(DeliveryState::GaveUp), Err(error)) => {
                warn!(job_id, account = ?job.account, region = ?job.region, message_id = %message.message_id, %channel, %target, %error, "callback given up");
                let attempts =
                    outbox.deliveries.iter().find(|d| d.kind == kind && d.channel == channel).map_or(0, |d| d.attempts);
                alerts.push(Alert::callback_failed(job_id, kind.as_str(), &target, attempts, &error, at));
            }
            (_, Err(error)) => {
                let next = outbox
                    .deliveries
                    .iter()
                    .find(|d| d.kind == kind && d.channel == channel)
                    .and_then(|d| d.next_try_at);
                warn!(job_id, account = ?job.account, region = ?job.region, message_id = %message.message_id, %channel, %target, %error, next_try_at = ?next, "notification not delivered; it is retried");
            }
            _ => {}
        }
    }
    outbox.lease_until = None;
    if outbox.finished() {
        app.store.close_outbox(job_id, etag).await?;
    } else {
        app.store.replace_outbox(job_id, &outbox, etag).await?;
    }
    Ok(Some(alerts))
}

/// A finished job's publication that never started (the invocation that finished the job died before it
/// could begin): begin it now, so the `Published` message it waits for can come.
async fn start_publication(app: &App, job: &JobRecord, now: DateTime<Utc>) -> Result<Vec<Alert>, StoreError> {
    if now - job.updated_at < PUBLICATION_START_GRACE {
        return Ok(vec![]);
    }
    let Some(snapshot) = job.attempts.iter().find(|a| a.number == job.attempt) else { return Ok(vec![]) };
    let Some(attempt) = app.store.get_attempt(&snapshot.account, &snapshot.ams_job_name).await? else {
        return Ok(vec![]);
    };
    info!(job_id = %job.job_id, account = %attempt.account, region = %attempt.region, "starting the publication of a finished job that never began");
    publish::on_job_finished(app, job, &attempt, now).await
}

async fn send_to_topic(app: &App, message: &Notification) -> Result<(), String> {
    let Some(bus) = &app.notifier.bus else { return Err("no Service Bus endpoint is configured".to_owned()) };
    bus.send(&app.settings.notify.topic, &message.message_id, message.kind.as_str(), &message.body())
        .await
        .map_err(|e| e.to_string())
}

/// POSTs the message, signed, to the caller's URL. Only a 2xx answer counts as delivered.
async fn send_callback(app: &App, url: &str, key: &str, message: &Notification) -> Result<(), String> {
    let body = message.body();
    let timestamp = Utc::now().timestamp();
    let response = app
        .notifier
        .callbacks
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header(SIGNATURE_HEADER, sign(key.as_bytes(), timestamp, &body))
        .header(TIMESTAMP_HEADER, timestamp.to_string())
        .header(MESSAGE_ID_HEADER, &message.message_id)
        .body(body)
        .send()
        .await
        // The URL is left out: its query may carry the caller's own token.
        .map_err(|e| format!("the callback could not be reached: {}", e.without_url()))?;
    let status = response.status();
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("the callback answered {status}"))
    }
}
