//! AMS events in the Event Grid schema, and their delivery to a webhook the way
//! Event Grid delivers them: one event per POST (an array of one), at least
//! once, unordered, retried on the documented schedule.
//!
//! Chaos settings (duplicate, reorder, drop, extra delay) let tests exercise the
//! guarantees Event Grid does *not* give.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use chrono::{DateTime, Utc};
use rand::Rng;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::model::{Job, JobOutput, JobState};
use crate::timefmt::event_time;

/// The AMS job event types the emulator emits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventType {
    /// Any job state change.
    JobStateChange,
    /// Job entered Scheduled.
    JobScheduled,
    /// Job entered Processing.
    JobProcessing,
    /// Job entered Canceling.
    JobCanceling,
    /// Job finished.
    JobFinished,
    /// Job was cancelled.
    JobCanceled,
    /// Job failed.
    JobErrored,
    /// Any job output state change.
    JobOutputStateChange,
    /// Output entered Scheduled.
    JobOutputScheduled,
    /// Output entered Processing.
    JobOutputProcessing,
    /// Output entered Canceling.
    JobOutputCanceling,
    /// Output finished.
    JobOutputFinished,
    /// Output was cancelled.
    JobOutputCanceled,
    /// Output failed.
    JobOutputErrored,
    /// Output progress heartbeat.
    JobOutputProgress,
}

impl EventType {
    /// Every type, the default subscription filter.
    pub const ALL: [EventType; 15] = [
        EventType::JobStateChange,
        EventType::JobScheduled,
        EventType::JobProcessing,
        EventType::JobCanceling,
        EventType::JobFinished,
        EventType::JobCanceled,
        EventType::JobErrored,
        EventType::JobOutputStateChange,
        EventType::JobOutputScheduled,
        EventType::JobOutputProcessing,
        EventType::JobOutputCanceling,
        EventType::JobOutputFinished,
        EventType::JobOutputCanceled,
        EventType::JobOutputErrored,
        EventType::JobOutputProgress,
    ];

    /// The `eventType` string, e.g. `Microsoft.Media.JobFinished`.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::JobStateChange => "Microsoft.Media.JobStateChange",
            EventType::JobScheduled => "Microsoft.Media.JobScheduled",
            EventType::JobProcessing => "Microsoft.Media.JobProcessing",
            EventType::JobCanceling => "Microsoft.Media.JobCanceling",
            EventType::JobFinished => "Microsoft.Media.JobFinished",
            EventType::JobCanceled => "Microsoft.Media.JobCanceled",
            EventType::JobErrored => "Microsoft.Media.JobErrored",
            EventType::JobOutputStateChange => "Microsoft.Media.JobOutputStateChange",
            EventType::JobOutputScheduled => "Microsoft.Media.JobOutputScheduled",
            EventType::JobOutputProcessing => "Microsoft.Media.JobOutputProcessing",
            EventType::JobOutputCanceling => "Microsoft.Media.JobOutputCanceling",
            EventType::JobOutputFinished => "Microsoft.Media.JobOutputFinished",
            EventType::JobOutputCanceled => "Microsoft.Media.JobOutputCanceled",
            EventType::JobOutputErrored => "Microsoft.Media.JobOutputErrored",
            EventType::JobOutputProgress => "Microsoft.Media.JobOutputProgress",
        }
    }

    /// Parses a full (`Microsoft.Media.JobFinished`) or short (`JobFinished`) name, case-insensitively.
    pub fn parse(s: &str) -> Option<EventType> {
        let short = s.get(..16).filter(|p| p.eq_ignore_ascii_case("Microsoft.Media.")).map_or(s, |_| &s[16..]);
        EventType::ALL.into_iter().find(|t| t.as_str()[16..].eq_ignore_ascii_case(short))
    }

    /// The specific job event for entering `state` (none for Queued, which is never entered).
    pub fn for_job_state(state: JobState) -> Option<EventType> {
        Some(match state {
            JobState::Queued => return None,
            JobState::Scheduled => EventType::JobScheduled,
            JobState::Processing => EventType::JobProcessing,
            JobState::Canceling => EventType::JobCanceling,
            JobState::Finished => EventType::JobFinished,
            JobState::Canceled => EventType::JobCanceled,
            JobState::Error => EventType::JobErrored,
        })
    }

    /// The specific output event for entering `state`.
    pub fn for_output_state(state: JobState) -> Option<EventType> {
        Some(match state {
            JobState::Queued => return None,
            JobState::Scheduled => EventType::JobOutputScheduled,
            JobState::Processing => EventType::JobOutputProcessing,
            JobState::Canceling => EventType::JobOutputCanceling,
            JobState::Finished => EventType::JobOutputFinished,
            JobState::Canceled => EventType::JobOutputCanceled,
            JobState::Error => EventType::JobOutputErrored,
        })
    }
}

/// One event in the Event Grid schema (contracts 2.1); field order follows the AMS samples.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct EventGridEvent {
    /// `/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Media/mediaservices/{account}`.
    pub topic: String,
    /// `transforms/{t}/jobs/{j}`.
    pub subject: String,
    /// `Microsoft.Media.*`.
    pub event_type: String,
    /// UTC, seven fractional digits, no zone.
    pub event_time: String,
    /// Fresh uuid.
    pub id: String,
    /// Type-specific payload.
    pub data: Value,
    /// `"1.0"` for AMS.
    pub data_version: String,
    /// `"1"`, stamped by Event Grid.
    pub metadata_version: String,
}

/// Where a job's events come from: the account's topic and the job's subject.
#[derive(Clone, Debug)]
pub struct EventSource {
    /// Event Grid topic of the account.
    pub topic: String,
    /// Subject naming the job.
    pub subject: String,
}

impl EventSource {
    /// Source for `job` in `account`.
    pub fn new(subscription: &str, resource_group: &str, account: &str, job: &Job) -> EventSource {
        EventSource {
            topic: format!(
                "/subscriptions/{subscription}/resourceGroups/{resource_group}/providers/Microsoft.Media/mediaservices/{account}"
            ),
            subject: format!("transforms/{}/jobs/{}", job.transform, job.name),
        }
    }

    fn event(&self, kind: EventType, now: &DateTime<Utc>, data: Value) -> EventGridEvent {
        EventGridEvent {
            topic: self.topic.clone(),
            subject: self.subject.clone(),
            event_type: kind.as_str().to_string(),
            event_time: event_time(now),
            id: uuid::Uuid::new_v4().to_string(),
            data,
            data_version: "1.0".to_string(),
            metadata_version: "1".to_string(),
        }
    }

    /// `JobStateChange` plus the specific job event for the job's (new) state.
    /// Final-state specific events carry `outputs`, as `MediaJobFinishedEventData` etc. do.
    pub fn job_state_events(&self, job: &Job, previous: JobState, now: &DateTime<Utc>) -> Vec<EventGridEvent> {
        let base = json!({
            "previousState": previous.as_str(),
            "state": job.state.as_str(),
            "correlationData": job.correlation_json(),
        });
        let mut events = vec![self.event(EventType::JobStateChange, now, base.clone())];
        if let Some(kind) = EventType::for_job_state(job.state) {
            let mut data = base;
            if job.state.is_final() {
                data["outputs"] = Value::Array(job.outputs.iter().map(JobOutput::to_event_json).collect());
            }
            events.push(self.event(kind, now, data));
        }
        events
    }

    /// `JobOutputStateChange` plus the specific output event for `output`'s (new) state.
    pub fn output_state_events(
        &self,
        job: &Job,
        output: &JobOutput,
        previous: JobState,
        now: &DateTime<Utc>,
    ) -> Vec<EventGridEvent> {
        let data = json!({
            "previousState": previous.as_str(),
            "output": output.to_event_json(),
            "jobCorrelationData": job.correlation_json(),
        });
        let mut events = vec![self.event(EventType::JobOutputStateChange, now, data.clone())];
        if let Some(kind) = EventType::for_output_state(output.state) {
            events.push(self.event(kind, now, data));
        }
        events
    }

    /// `JobOutputProgress` for `output`.
    pub fn output_progress_event(&self, job: &Job, output: &JobOutput, now: &DateTime<Utc>) -> EventGridEvent {
        self.event(
            EventType::JobOutputProgress,
            now,
            json!({
                "jobCorrelationData": job.correlation_json(),
                "label": output.label,
                "progress": output.progress,
            }),
        )
    }
}

/// Event Grid's retry delays after the 1st, 2nd, ... failed attempt (contracts 2.3), in emulated time.
pub const RETRY_SCHEDULE: &[Duration] = &[
    Duration::from_secs(10),
    Duration::from_secs(30),
    Duration::from_secs(60),
    Duration::from_secs(5 * 60),
    Duration::from_secs(10 * 60),
    Duration::from_secs(30 * 60),
    Duration::from_secs(60 * 60),
    Duration::from_secs(3 * 60 * 60),
    Duration::from_secs(6 * 60 * 60),
];
/// Delay between attempts once `RETRY_SCHEDULE` is used up.
pub const RETRY_AFTER_SCHEDULE: Duration = Duration::from_secs(12 * 60 * 60);
/// An event is abandoned once its retries would go past this (the default 1440-minute TTL).
pub const RETRY_WINDOW: Duration = Duration::from_secs(24 * 60 * 60);
/// Response codes Event Grid counts as delivered.
pub const SUCCESS_STATUSES: &[u16] = &[200, 201, 202, 203, 204];
/// Webhook responses Event Grid does not retry (dead-lettered or dropped at once).
pub const NON_RETRIED_STATUSES: &[u16] = &[400, 401, 403, 413];
/// How long Event Grid waits for a webhook's answer (real time, not scaled).
pub const RESPONSE_TIMEOUT: Duration = Duration::from_secs(30);
/// Hold-back bound for reordered events when `max_delay_ms` is 0.
pub const DEFAULT_REORDER_HOLD_MS: u64 = 250;

/// Emulated delay before the next attempt after `failed_attempts` failures, with
/// `waited` emulated time already spent on retries; `None` once the TTL would pass.
pub fn retry_delay(failed_attempts: usize, waited: Duration) -> Option<Duration> {
    let delay =
        failed_attempts.checked_sub(1).and_then(|i| RETRY_SCHEDULE.get(i)).copied().unwrap_or(RETRY_AFTER_SCHEDULE);
    (waited + delay <= RETRY_WINDOW).then_some(delay)
}

/// Delivery settings, changeable at run time through the control API.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct DeliverySettings {
    /// Webhook URL; events raised while it is unset are not delivered (no subscription).
    pub endpoint: Option<String>,
    /// Probability an event is delivered twice.
    pub duplicate: f64,
    /// Probability an event is held back so later ones overtake it.
    pub reorder: f64,
    /// Probability an event is never delivered.
    pub drop: f64,
    /// Upper bound of a random real-time delay added to every delivery.
    pub max_delay_ms: u64,
    /// Event types delivered (the subscription filter).
    pub event_types: Vec<String>,
}

/// A partial update of [`DeliverySettings`]; absent fields keep their value.
#[derive(Clone, Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct DeliverySettingsPatch {
    /// New endpoint; an empty string unsets it.
    pub endpoint: Option<String>,
    /// New duplicate probability.
    pub duplicate: Option<f64>,
    /// New reorder probability.
    pub reorder: Option<f64>,
    /// New drop probability.
    pub drop: Option<f64>,
    /// New extra delay bound.
    pub max_delay_ms: Option<u64>,
}

/// Why a settings patch was refused.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// A probability outside 0..=1.
    #[error("'{0}' must be a probability between 0 and 1")]
    BadProbability(&'static str),
    /// The endpoint is not an http(s) URL.
    #[error("endpoint is not an http(s) URL: {0}")]
    BadEndpoint(String),
}

/// Delivery counters, as `GET /_emulator/events` reports them.
#[derive(Clone, Debug, Serialize, Default, PartialEq)]
pub struct DeliveryCounters {
    /// Events handed to delivery (after the type filter, before chaos).
    pub published: u64,
    /// Successful deliveries (a duplicate counts twice).
    pub delivered: u64,
    /// Attempts that failed (non-2xx, connection error, timeout).
    pub failed_attempts: u64,
    /// Events dropped by the `drop` setting.
    pub dropped: u64,
    /// Events sent an extra time by the `duplicate` setting.
    pub duplicated: u64,
    /// Events held back by the `reorder` setting.
    pub reordered: u64,
    /// Events given up after a non-retried status (400, 401, 403, 413).
    pub dead_lettered: u64,
    /// Events given up after the 24 h retry window.
    pub expired: u64,
    /// Events raised while no endpoint was set.
    pub unsubscribed: u64,
    /// Deliveries still in progress or waiting for a retry.
    pub pending: u64,
}

#[derive(Default)]
struct Counters {
    published: AtomicU64,
    delivered: AtomicU64,
    failed_attempts: AtomicU64,
    dropped: AtomicU64,
    duplicated: AtomicU64,
    reordered: AtomicU64,
    dead_lettered: AtomicU64,
    expired: AtomicU64,
    unsubscribed: AtomicU64,
    pending: AtomicU64,
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

struct DispatcherInner {
    client: reqwest::Client,
    settings: Mutex<DeliverySettings>,
    enabled: Vec<EventType>,
    time_scale: f64,
    counters: Counters,
}

/// Delivers events to the configured webhook, one task per event.
#[derive(Clone)]
pub struct Dispatcher {
    inner: Arc<DispatcherInner>,
}

/// Keeps the `pending` counter right however a delivery task ends.
struct PendingGuard(Arc<DispatcherInner>);

impl Drop for PendingGuard {
    fn drop(&mut self) {
        self.0.counters.pending.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Dispatcher {
    /// A dispatcher delivering `enabled` event types, with retry back-off divided by `time_scale`.
    pub fn new(endpoint: Option<String>, enabled: Vec<EventType>, time_scale: f64) -> Dispatcher {
        let settings = DeliverySettings {
            endpoint,
            duplicate: 0.0,
            reorder: 0.0,
            drop: 0.0,
            max_delay_ms: 0,
            event_types: enabled.iter().map(|t| t.as_str().to_string()).collect(),
        };
        Dispatcher {
            inner: Arc::new(DispatcherInner {
                // Redirects are not followed by Event Grid either.
                client: reqwest::Client::builder()
                    .redirect(reqwest::redirect::Policy::none())
                    .build()
                    .unwrap_or_default(),
                settings: Mutex::new(settings),
                enabled,
                time_scale,
                counters: Counters::default(),
            }),
        }
    }

    fn settings(&self) -> MutexGuard<'_, DeliverySettings> {
        // A poisoned lock only means a panic elsewhere; the settings are still valid data.
        self.inner.settings.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Current settings.
    pub fn current_settings(&self) -> DeliverySettings {
        self.settings().clone()
    }

    /// Applies a patch; nothing changes if any field is invalid.
    pub fn update(&self, patch: DeliverySettingsPatch) -> Result<DeliverySettings, SettingsError> {
        for (name, p) in [("duplicate", patch.duplicate), ("reorder", patch.reorder), ("drop", patch.drop)] {
            if let Some(p) = p {
                if !(0.0..=1.0).contains(&p) {
                    return Err(SettingsError::BadProbability(name));
                }
            }
        }
        if let Some(e) = patch.endpoint.as_deref().filter(|e| !e.is_empty()) {
            crate::config::validate_endpoint(e).map_err(|_| SettingsError::BadEndpoint(e.to_string()))?;
        }
        let mut s = self.settings();
        if let Some(e) = patch.endpoint {
            s.endpoint = (!e.is_empty()).then_some(e);
        }
        if let Some(p) = patch.duplicate {
            s.duplicate = p;
        }
        if let Some(p) = patch.reorder {
            s.reorder = p;
        }
        if let Some(p) = patch.drop {
            s.drop = p;
        }
        if let Some(ms) = patch.max_delay_ms {
            s.max_delay_ms = ms;
        }
        Ok(s.clone())
    }

    /// Counter snapshot.
    pub fn counters(&self) -> DeliveryCounters {
        let c = &self.inner.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        DeliveryCounters {
            published: get(&c.published),
            delivered: get(&c.delivered),
            failed_attempts: get(&c.failed_attempts),
            dropped: get(&c.dropped),
            duplicated: get(&c.duplicated),
            reordered: get(&c.reordered),
            dead_lettered: get(&c.dead_lettered),
            expired: get(&c.expired),
            unsubscribed: get(&c.unsubscribed),
            pending: get(&c.pending),
        }
    }

    /// Hands events to delivery. Must be called inside a Tokio runtime; returns at once.
    pub fn publish(&self, events: Vec<EventGridEvent>) {
        for event in events {
            let enabled = self.inner.enabled.iter().any(|t| t.as_str() == event.event_type);
            if !enabled {
                continue;
            }
            self.publish_one(event);
        }
    }

    fn publish_one(&self, event: EventGridEvent) {
        let c = &self.inner.counters;
        bump(&c.published);
        let settings = self.current_settings();
        if settings.endpoint.is_none() {
            bump(&c.unsubscribed);
            return;
        }
        // All randomness is drawn here: the thread-local generator must not live across an await.
        let mut rng = rand::rng();
        if rng.random_bool(settings.drop) {
            bump(&c.dropped);
            tracing::debug!(id = %event.id, event_type = %event.event_type, "event dropped by chaos setting");
            return;
        }
        let copies = if rng.random_bool(settings.duplicate) {
            bump(&c.duplicated);
            2
        } else {
            1
        };
        let body = match serde_json::to_vec(&[&event]) {
            Ok(b) => Arc::<[u8]>::from(b),
            Err(e) => {
                tracing::error!(error = %e, "event does not serialize");
                return;
            }
        };
        for _ in 0..copies {
            let mut hold = Duration::from_millis(rng.random_range(0..=settings.max_delay_ms));
            if rng.random_bool(settings.reorder) {
                bump(&c.reordered);
                let bound = if settings.max_delay_ms > 0 { settings.max_delay_ms } else { DEFAULT_REORDER_HOLD_MS };
                hold += Duration::from_millis(rng.random_range(bound / 2..=bound));
            }
            bump(&c.pending);
            let guard = PendingGuard(self.inner.clone());
            let inner = self.inner.clone();
            let body = body.clone();
            let id = event.id.clone();
            let event_type = event.event_type.clone();
            tokio::spawn(async move {
                let _guard = guard;
                if !hold.is_zero() {
                    tokio::time::sleep(hold).await;
                }
                deliver(&inner, body, &id, &event_type).await;
            });
        }
    }
}

/// Outcome of one POST.
enum Attempt {
    Delivered,
    Retry(String),
    GiveUp(u16),
}

async fn attempt(inner: &DispatcherInner, body: &[u8], delivery_count: usize) -> Attempt {
    let endpoint = inner.settings.lock().unwrap_or_else(|p| p.into_inner()).endpoint.clone();
    let Some(endpoint) = endpoint else {
        return Attempt::Retry("no endpoint set".into());
    };
    let result = inner
        .client
        .post(&endpoint)
        .header("aeg-event-type", "Notification")
        .header("Content-Type", "application/json; charset=utf-8")
        .header("aeg-delivery-count", delivery_count.to_string())
        .header("aeg-subscription-name", "AMS-EMULATOR")
        .header("aeg-data-version", "1.0")
        .header("aeg-metadata-version", "1")
        .body(body.to_vec())
        .timeout(RESPONSE_TIMEOUT)
        .send()
        .await;
    match result {
        Ok(resp) => {
            let status = resp.status().as_u16();
            if SUCCESS_STATUSES.contains(&status) {
                Attempt::Delivered
            } else if NON_RETRIED_STATUSES.contains(&status) {
                Attempt::GiveUp(status)
            } else {
                Attempt::Retry(format!("status {status}"))
            }
        }
        Err(e) => Attempt::Retry(e.to_string()),
    }
}

async fn deliver(inner: &DispatcherInner, bytes: Arc<[u8]>, id: &str, event_type: &str) {
    let c = &inner.counters;
    let mut failures = 0usize;
    let mut waited = Duration::ZERO;
    loop {
        match attempt(inner, &bytes, failures).await {
            Attempt::Delivered => {
                bump(&c.delivered);
                return;
            }
            Attempt::GiveUp(status) => {
                bump(&c.failed_attempts);
                bump(&c.dead_lettered);
                tracing::warn!(%id, %event_type, status, "webhook refused the event; not retried");
                return;
            }
            Attempt::Retry(why) => {
                bump(&c.failed_attempts);
                failures += 1;
                let Some(delay) = retry_delay(failures, waited) else {
                    bump(&c.expired);
                    tracing::warn!(%id, %event_type, "event expired after the retry window");
                    return;
                };
                waited += delay;
                tracing::debug!(%id, %event_type, %why, attempt = failures, "delivery failed; will retry");
                tokio::time::sleep(Duration::from_secs_f64(delay.as_secs_f64() / inner.time_scale)).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::JOB_OUTPUT_ASSET;
    use chrono::TimeZone;
    use std::collections::BTreeMap;

    fn job(state: JobState) -> Job {
        let t = Utc.with_ymd_and_hms(2018, 10, 12, 16, 12, 18).unwrap();
        Job {
            outputs: vec![JobOutput {
                asset_name: "output-7640689F".into(),
                label: "VideoAnalyzerPreset_0".into(),
                state,
                progress: 100,
                start_time: None,
                end_time: None,
                error: None,
            }],
            correlation_data: BTreeMap::from([("testKey1".to_string(), "testValue1".to_string())]),
            state,
            history: vec![],
            ..Job::queued("VideoAnalyzerTransform", "job-1", t)
        }
    }

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2018, 10, 12, 16, 25, 56).unwrap() + chrono::Duration::nanoseconds(411_549_500)
    }

    fn source(j: &Job) -> EventSource {
        EventSource::new("sub-1", "rg-1", "acct", j)
    }

    #[test]
    fn a_finished_job_yields_state_change_and_finished_events_with_outputs() {
        let j = job(JobState::Finished);
        let events = source(&j).job_state_events(&j, JobState::Processing, &now());
        assert_eq!(events.len(), 2);
        let v = serde_json::to_value(&events[1]).unwrap();
        assert_eq!(v["topic"], "/subscriptions/sub-1/resourceGroups/rg-1/providers/Microsoft.Media/mediaservices/acct");
        assert_eq!(v["subject"], "transforms/VideoAnalyzerTransform/jobs/job-1");
        assert_eq!(v["eventType"], "Microsoft.Media.JobFinished");
        assert_eq!(v["eventTime"], "2018-10-12T16:25:56.4115495");
        assert_eq!(v["dataVersion"], "1.0");
        assert_eq!(v["metadataVersion"], "1");
        assert!(uuid::Uuid::parse_str(v["id"].as_str().unwrap()).is_ok());
        assert_eq!(
            v["data"],
            json!({
                "previousState": "Processing",
                "state": "Finished",
                "correlationData": {"testKey1": "testValue1"},
                "outputs": [{
                    "@odata.type": JOB_OUTPUT_ASSET,
                    "assetName": "output-7640689F",
                    "error": null,
                    "label": "VideoAnalyzerPreset_0",
                    "progress": 100,
                    "state": "Finished"
                }]
            })
        );
        let generic = serde_json::to_value(&events[0]).unwrap();
        assert_eq!(generic["eventType"], "Microsoft.Media.JobStateChange");
        assert!(generic["data"].get("outputs").is_none());
        assert_ne!(generic["id"], v["id"]);
    }

    #[test]
    fn envelope_fields_come_in_the_documented_order() {
        let j = job(JobState::Scheduled);
        let events = source(&j).job_state_events(&j, JobState::Queued, &now());
        let text = serde_json::to_string(&events[0]).unwrap();
        let keys = [
            "\"topic\"",
            "\"subject\"",
            "\"eventType\"",
            "\"eventTime\"",
            "\"id\"",
            "\"data\"",
            "\"dataVersion\"",
            "\"metadataVersion\"",
        ];
        let positions: Vec<usize> = keys.iter().map(|k| text.find(k).unwrap()).collect();
        assert!(positions.windows(2).all(|w| w[0] < w[1]), "{text}");
    }

    #[test]
    fn output_events_carry_the_state_inside_output_only() {
        let j = job(JobState::Finished);
        let events = source(&j).output_state_events(&j, &j.outputs[0], JobState::Processing, &now());
        assert_eq!(events[0].event_type, "Microsoft.Media.JobOutputStateChange");
        assert_eq!(events[1].event_type, "Microsoft.Media.JobOutputFinished");
        assert!(events[0].data.get("state").is_none());
        assert_eq!(events[0].data["output"]["state"], "Finished");
        assert_eq!(events[0].data["jobCorrelationData"]["testKey1"], "testValue1");
        assert_eq!(events[0].data["previousState"], "Processing");
    }

    #[test]
    fn progress_events_carry_label_and_progress() {
        let j = job(JobState::Processing);
        let e = source(&j).output_progress_event(&j, &j.outputs[0], &now());
        assert_eq!(e.event_type, "Microsoft.Media.JobOutputProgress");
        assert_eq!(
            e.data,
            json!({"jobCorrelationData": {"testKey1": "testValue1"}, "label": "VideoAnalyzerPreset_0", "progress": 100})
        );
    }

    #[test]
    fn the_retry_schedule_follows_event_grid_then_stops_after_a_day() {
        let mut waited = Duration::ZERO;
        let mut delays = vec![];
        let mut n = 1;
        while let Some(d) = retry_delay(n, waited) {
            delays.push(d.as_secs());
            waited += d;
            n += 1;
        }
        assert_eq!(delays, vec![10, 30, 60, 300, 600, 1800, 3600, 10800, 21600, 43200]);
        assert!(waited <= RETRY_WINDOW);
    }

    #[test]
    fn event_type_names_parse_short_or_full() {
        assert_eq!(EventType::parse("jobfinished"), Some(EventType::JobFinished));
        assert_eq!(EventType::parse("Microsoft.Media.JobOutputProgress"), Some(EventType::JobOutputProgress));
        assert_eq!(EventType::parse("Microsoft.Media.Nope"), None);
        assert_eq!(EventType::parse("Job"), None);
    }
}
