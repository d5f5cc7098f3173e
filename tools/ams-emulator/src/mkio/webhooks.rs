//! MK.IO webhook rules and the CloudEvents they deliver.
//!
//! Rules live per project at `/api/v1/projects/{p}/webhook/rules/{name}` (management-api.json, "Webhook
//! Rules"): PUT creates or replaces the whole spec, GET shows it with the `authentication` values masked
//! (docs: "those values appear as asterisks"), DELETE removes it, and `.../events` lists what was sent with
//! status `Pending`, `Retrying`, `Failed` or `Sent`.
//!
//! The lifecycle ticker reports job state changes; for MK.IO projects they become `MediaKind.JobStarted`
//! (the job enters Processing: "leaves the queue and begins processing") and `MediaKind.JobFinished` (a
//! final state) CloudEvents 1.0 whose `data.resource` is the job as GET returns it. Nothing is sent for
//! Scheduled or for job outputs: MK.IO has no such events.
//!
//! MK.IO documents no retry policy, ordering or timeout. The emulator treats deliveries as at-least-once:
//! every non-2xx answer, connection error or timeout is retried on [`RETRY_SCHEDULE_SECS`] (scaled by
//! `--time-scale`) and then given up as `Failed`. Chaos settings (`duplicate`, `reorder`, `drop`,
//! `max_delay_ms`, as for Event Grid) let tests meet duplicated, late, reordered and lost webhooks.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, SecondsFormat, Utc};
use rand::Rng;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use super::media::job_json;
use super::project::{DeliveryRecord, DeliveryStatus, WebhookRule};
use super::{check_name, deleted, lists, media_path, parse_body, Ctx, MkioError};
use crate::events::EventGridEvent;
use crate::model::{Account, JobState};
use crate::state::Emulator;
use crate::timefmt::arm_time;

/// A job left the queue and began processing.
pub const JOB_STARTED: &str = "MediaKind.JobStarted";
/// A job reached a final state (Finished, Error or Canceled).
pub const JOB_FINISHED: &str = "MediaKind.JobFinished";
/// Event types a rule may subscribe to (management-api.json `WebhookRuleSpecSchema.events`). Only the two
/// job events are ever raised by the emulator.
pub const EVENT_TYPES: [&str; 10] = [
    JOB_STARTED,
    JOB_FINISHED,
    "MediaKind.StreamingLocatorCreated",
    "MediaKind.ChannelInstanceStarted",
    "MediaKind.ChannelInstanceStopped",
    "MediaKind.ChannelInstanceError",
    "MediaKind.ScheduledOperationAccepted",
    "MediaKind.ScheduledOperationCompleted",
    "MediaKind.ScheduledOperationError",
    "MediaKind.ScheduledOperationOngoing",
];
/// Waits after the 1st, 2nd, ... failed attempt, in emulated seconds (divided by `--time-scale`). After
/// the last one fails the delivery is `Failed`: eight attempts over a little more than an hour and a half.
pub const RETRY_SCHEDULE_SECS: [u64; 7] = [10, 30, 60, 300, 600, 1800, 3600];
/// How long one attempt may take (real time) before it counts as failed.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
/// What a masked `authentication` value reads back as.
pub const MASK: &str = "********";
/// Hold-back of a reordered delivery when `max_delay_ms` is 0.
const DEFAULT_REORDER_HOLD_MS: u64 = 250;

/// Chaos settings of webhook delivery (all projects).
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct WebhookSettings {
    /// Probability that a delivery is sent a second time (same CloudEvent id).
    pub duplicate: f64,
    /// Probability that a delivery is held back half to all of `max_delay_ms` (250 ms if 0).
    pub reorder: f64,
    /// Probability that a delivery is lost: never sent, yet recorded as `Sent` as the service believes.
    pub drop: f64,
    /// A random extra 0..n ms before every delivery.
    pub max_delay_ms: u64,
}

/// Body of `POST /_emulator/mkio/webhooks`: only the fields given change.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSettingsPatch {
    /// See [`WebhookSettings::duplicate`].
    pub duplicate: Option<f64>,
    /// See [`WebhookSettings::reorder`].
    pub reorder: Option<f64>,
    /// See [`WebhookSettings::drop`].
    pub drop: Option<f64>,
    /// See [`WebhookSettings::max_delay_ms`].
    pub max_delay_ms: Option<u64>,
}

/// Delivery counters (all projects).
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct WebhookCounters {
    /// Job events raised by MK.IO projects (before matching rules).
    pub raised: u64,
    /// Deliveries created: one per matching rule, two when duplicated.
    pub deliveries: u64,
    /// Deliveries the receiver accepted with a 2xx.
    pub delivered: u64,
    /// Attempts that failed (non-2xx, connection error, timeout).
    pub failed_attempts: u64,
    /// Deliveries given up after the retry schedule.
    pub failed: u64,
    /// Deliveries lost by the `drop` setting.
    pub dropped: u64,
    /// Deliveries doubled by the `duplicate` setting.
    pub duplicated: u64,
    /// Deliveries held back by the `reorder` setting.
    pub reordered: u64,
    /// Deliveries in progress or waiting to retry.
    pub pending: u64,
}

#[derive(Default)]
struct Counters {
    raised: AtomicU64,
    deliveries: AtomicU64,
    delivered: AtomicU64,
    failed_attempts: AtomicU64,
    failed: AtomicU64,
    dropped: AtomicU64,
    duplicated: AtomicU64,
    reordered: AtomicU64,
    pending: AtomicU64,
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// Webhook delivery of every MK.IO project: settings, counters and the HTTP client.
pub struct Webhooks {
    client: reqwest::Client,
    settings: Mutex<WebhookSettings>,
    counters: Arc<Counters>,
    time_scale: f64,
    seq: AtomicU64,
}

/// Keeps `pending` right however a delivery task ends.
struct PendingGuard(Arc<Counters>);

impl Drop for PendingGuard {
    fn drop(&mut self) {
        self.0.pending.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Webhooks {
    /// Delivery with retry waits divided by `time_scale`.
    pub fn new(time_scale: f64) -> Webhooks {
        Webhooks {
            // Redirects are not followed: a receiver must answer at the URL it registered.
            client: reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap_or_default(),
            settings: Mutex::new(WebhookSettings::default()),
            counters: Arc::new(Counters::default()),
            time_scale,
            seq: AtomicU64::new(0),
        }
    }

    fn settings(&self) -> MutexGuard<'_, WebhookSettings> {
        // A poisoned lock only means a panic elsewhere; the settings are still valid data.
        self.settings.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Current chaos settings.
    pub fn current_settings(&self) -> WebhookSettings {
        self.settings().clone()
    }

    /// Applies a patch; nothing changes if a probability is out of range.
    pub fn update(&self, patch: WebhookSettingsPatch) -> Result<WebhookSettings, String> {
        for (name, p) in [("duplicate", patch.duplicate), ("reorder", patch.reorder), ("drop", patch.drop)] {
            if p.is_some_and(|p| !(0.0..=1.0).contains(&p)) {
                return Err(format!("'{name}' must be a probability between 0 and 1"));
            }
        }
        let mut s = self.settings();
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
    pub fn counters(&self) -> WebhookCounters {
        let c = &self.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        WebhookCounters {
            raised: get(&c.raised),
            deliveries: get(&c.deliveries),
            delivered: get(&c.delivered),
            failed_attempts: get(&c.failed_attempts),
            failed: get(&c.failed),
            dropped: get(&c.dropped),
            duplicated: get(&c.duplicated),
            reordered: get(&c.reordered),
            pending: get(&c.pending),
        }
    }
}

/// A job event of one project, ready to deliver to its rules.
#[derive(Debug, Clone)]
pub struct RaisedEvent {
    /// Project (account) name.
    pub project: String,
    /// CloudEvent `type`.
    pub event_type: &'static str,
    /// CloudEvent `id`.
    pub id: String,
    /// CloudEvent `source`.
    pub source: String,
    /// When it was raised.
    pub time: DateTime<Utc>,
    /// The serialized CloudEvent.
    pub body: Arc<[u8]>,
}

/// The CloudEvent type for a job entering `state`, if MK.IO raises one.
fn event_type_for(state: JobState) -> Option<&'static str> {
    match state {
        JobState::Processing => Some(JOB_STARTED),
        s if s.is_final() => Some(JOB_FINISHED),
        _ => None,
    }
}

/// Translates the lifecycle's job state changes of an MK.IO project into the CloudEvents MK.IO sends. The
/// job is rendered now, right after the change, so `data.resource` matches `data.state`.
pub fn job_events(emulator: &Emulator, account: &Account, events: &[EventGridEvent]) -> Vec<RaisedEvent> {
    let media = media_path(&account.name);
    let mut raised = Vec::new();
    for e in events.iter().filter(|e| e.event_type == "Microsoft.Media.JobStateChange") {
        let state = e.data.get("state").and_then(Value::as_str).and_then(JobState::parse_loose);
        let Some(event_type) = state.and_then(event_type_for) else {
            continue;
        };
        let Some((transform, job)) = e.subject.strip_prefix("transforms/").and_then(|s| s.split_once("/jobs/")) else {
            continue;
        };
        let Some(job) = account.jobs.get(&(transform.to_ascii_lowercase(), job.to_ascii_lowercase())) else {
            continue;
        };
        let id = uuid::Uuid::new_v4().to_string();
        let source = format!("{}{media}/transforms/{}/jobs/{}", emulator.base_url, job.transform, job.name);
        let time = Utc::now();
        let cloud_event = json!({
            "specversion": "1.0",
            "id": id,
            "type": event_type,
            "source": source,
            "time": time.to_rfc3339_opts(SecondsFormat::Micros, true),
            "datacontenttype": "application/json",
            "data": {
                "projectName": account.name,
                "previousState": e.data.get("previousState").cloned().unwrap_or(Value::Null),
                "state": job.state.as_str(),
                "resource": job_json(&media, job),
            },
        });
        let body = match serde_json::to_vec(&cloud_event) {
            Ok(b) => Arc::<[u8]>::from(b),
            Err(err) => {
                tracing::error!(error = %err, "CloudEvent does not serialize");
                continue;
            }
        };
        raised.push(RaisedEvent { project: account.name.clone(), event_type, id, source, time, body });
    }
    raised
}

/// Hands raised events to every enabled rule of their project that subscribes to them. Must be called
/// inside a Tokio runtime without the state lock held; returns at once.
pub fn publish(emulator: &Arc<Emulator>, raised: Vec<RaisedEvent>) {
    let hooks = &emulator.mkio;
    let c = &hooks.counters;
    let mut tasks = Vec::new();
    {
        let mut state = emulator.lock();
        for event in raised {
            bump(&c.raised);
            let Some(project) = state.account_mut(&event.project).and_then(|a| a.mkio.as_mut()) else {
                continue;
            };
            let rules: Vec<String> = project
                .rules
                .iter()
                .filter(|(_, r)| r.enabled && r.events.iter().any(|t| t == event.event_type))
                .map(|(k, _)| k.clone())
                .collect();
            let settings = hooks.current_settings();
            // All randomness is drawn here: the thread-local generator must not live across an await.
            let mut rng = rand::rng();
            for rule in rules {
                let copies = if rng.random_bool(settings.duplicate) {
                    bump(&c.duplicated);
                    2
                } else {
                    1
                };
                for _ in 0..copies {
                    bump(&c.deliveries);
                    let seq = hooks.seq.fetch_add(1, Ordering::Relaxed);
                    let mut record = DeliveryRecord {
                        seq,
                        rule: rule.clone(),
                        event_id: event.id.clone(),
                        event_type: event.event_type.to_string(),
                        source: event.source.clone(),
                        created: event.time,
                        status: DeliveryStatus::Pending,
                        attempts: 0,
                        last_result: None,
                    };
                    if rng.random_bool(settings.drop) {
                        bump(&c.dropped);
                        record.status = DeliveryStatus::Sent;
                        record.attempts = 1;
                        record.last_result = Some("lost on the way (drop setting)".into());
                        project.push_delivery(record);
                        continue;
                    }
                    let mut hold = Duration::from_millis(rng.random_range(0..=settings.max_delay_ms));
                    if rng.random_bool(settings.reorder) {
                        bump(&c.reordered);
                        let bound =
                            if settings.max_delay_ms > 0 { settings.max_delay_ms } else { DEFAULT_REORDER_HOLD_MS };
                        hold += Duration::from_millis(rng.random_range(bound / 2..=bound));
                    }
                    project.push_delivery(record);
                    tasks.push((event.project.clone(), rule.clone(), seq, event.body.clone(), hold));
                }
            }
        }
    }
    for (project, rule, seq, body, hold) in tasks {
        bump(&c.pending);
        let guard = PendingGuard(c.clone());
        let emulator = emulator.clone();
        tokio::spawn(async move {
            let _guard = guard;
            if !hold.is_zero() {
                tokio::time::sleep(hold).await;
            }
            deliver(&emulator, &project, &rule, seq, &body).await;
        });
    }
}

/// Where and how to send, read from the rule at each attempt (a PUT between retries takes effect).
struct Target {
    url: reqwest::Url,
    headers: Vec<(String, String)>,
}

/// Updates the delivery record and reads the rule for the next attempt; `None` when the rule is gone or
/// disabled, which ends the delivery.
fn begin_attempt(emulator: &Emulator, project: &str, rule: &str, seq: u64) -> Option<Target> {
    let mut state = emulator.lock();
    let p = state.account_mut(project).and_then(|a| a.mkio.as_mut())?;
    let target = p.rules.get(rule).filter(|r| r.enabled).and_then(|r| {
        let mut url = reqwest::Url::parse(&r.url).ok()?;
        {
            let mut q = url.query_pairs_mut();
            for (k, v) in r.query_params.iter().chain(&r.auth_query_params) {
                q.append_pair(k, v);
            }
        }
        let headers = r.headers.iter().chain(&r.auth_headers).map(|(k, v)| (k.clone(), v.clone())).collect();
        Some(Target { url, headers })
    });
    if let Some(d) = p.delivery_mut(seq) {
        match &target {
            Some(_) => d.attempts += 1,
            None => {
                d.status = DeliveryStatus::Failed;
                d.last_result = Some("the rule was deleted or disabled".into());
            }
        }
    }
    target
}

fn finish_attempt(emulator: &Emulator, project: &str, seq: u64, status: DeliveryStatus, result: String) {
    let mut state = emulator.lock();
    if let Some(d) = state.account_mut(project).and_then(|a| a.mkio.as_mut()).and_then(|p| p.delivery_mut(seq)) {
        d.status = status;
        d.last_result = Some(result);
    }
}

async fn deliver(emulator: &Emulator, project: &str, rule: &str, seq: u64, body: &[u8]) {
    let hooks = &emulator.mkio;
    let c = &hooks.counters;
    let mut failures = 0usize;
    loop {
        let Some(target) = begin_attempt(emulator, project, rule, seq) else {
            bump(&c.failed);
            return;
        };
        let mut req = hooks
            .client
            .post(target.url)
            .header("Content-Type", "application/json")
            .body(body.to_vec())
            .timeout(ATTEMPT_TIMEOUT);
        for (k, v) in &target.headers {
            req = req.header(k.as_str(), v.as_str());
        }
        let result = match req.send().await {
            Ok(resp) if resp.status().is_success() => Ok(resp.status().as_u16()),
            Ok(resp) => Err(format!("status {}", resp.status().as_u16())),
            Err(e) => Err(e.to_string()),
        };
        match result {
            Ok(status) => {
                bump(&c.delivered);
                finish_attempt(emulator, project, seq, DeliveryStatus::Sent, format!("status {status}"));
                return;
            }
            Err(why) => {
                bump(&c.failed_attempts);
                failures += 1;
                match RETRY_SCHEDULE_SECS.get(failures - 1) {
                    Some(secs) => {
                        tracing::debug!(project, rule, seq, %why, attempt = failures, "webhook delivery failed; will retry");
                        finish_attempt(emulator, project, seq, DeliveryStatus::Retrying, why);
                        tokio::time::sleep(Duration::from_secs_f64(*secs as f64 / hooks.time_scale)).await;
                    }
                    None => {
                        tracing::warn!(project, rule, seq, %why, "webhook delivery given up");
                        bump(&c.failed);
                        finish_attempt(emulator, project, seq, DeliveryStatus::Failed, why);
                        return;
                    }
                }
            }
        }
    }
}

// ---------------------------------------------------------------- rules API

/// Routes `/api/v1/projects/{p}/webhook/rules/...`.
pub fn route(
    ctx: &Ctx,
    account: &mut Account,
    method: &Method,
    rest: &[&str],
    body: &[u8],
) -> Result<Response, MkioError> {
    let wrong = || Err(MkioError::method_not_allowed(method.as_str()));
    let project = account.mkio.as_mut().ok_or_else(|| MkioError::not_found("project", &ctx.project))?;
    match rest {
        [] => match *method {
            // WebhookRuleListResponseSchema has only `value`: no pagination, and no 404 when empty.
            Method::GET => {
                let value: Vec<Value> = project.rules.values().map(rule_json).collect();
                Ok(Json(json!({ "value": value })).into_response())
            }
            _ => wrong(),
        },
        [name] => match *method {
            Method::PUT => {
                check_name("webhook rule", name)?;
                let key = name.to_ascii_lowercase();
                let existing = project.rules.get(&key);
                let rule = parse_rule(name, existing.map(|r| (r.id, r.name.clone())), body)?;
                let created = existing.is_none();
                let out = rule_json(&rule);
                project.rules.insert(key, rule);
                let status = if created { StatusCode::CREATED } else { StatusCode::OK };
                Ok((status, Json(out)).into_response())
            }
            Method::GET => {
                let rule = project
                    .rules
                    .get(&name.to_ascii_lowercase())
                    .ok_or_else(|| MkioError::not_found("webhook rule", name))?;
                Ok(Json(rule_json(rule)).into_response())
            }
            Method::DELETE => Ok(deleted(project.rules.remove(&name.to_ascii_lowercase()).is_some())),
            _ => wrong(),
        },
        [name, e] if e.eq_ignore_ascii_case("events") => match *method {
            Method::GET => {
                let key = name.to_ascii_lowercase();
                if !project.rules.contains_key(&key) {
                    return Err(MkioError::not_found("webhook rule", name));
                }
                let items = project.deliveries.iter().filter(|d| d.rule == key).map(event_json).collect();
                lists::page(ctx, "WebhookEvent", "webhook events", items)
            }
            _ => wrong(),
        },
        _ => Err(MkioError::new(StatusCode::NOT_FOUND, "NotFound", format!("No route matches {method} {}.", ctx.path))),
    }
}

/// One delivery as the events list shows it (management-api.json `WebhookEventBriefSchema`).
fn event_json(d: &DeliveryRecord) -> Value {
    json!({"created": arm_time(&d.created), "source": d.source, "status": d.status, "type": d.event_type})
}

fn masked(m: &BTreeMap<String, String>) -> Value {
    Value::Object(m.keys().map(|k| (k.clone(), Value::String(MASK.into()))).collect())
}

fn plain(m: &BTreeMap<String, String>) -> Value {
    Value::Object(m.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect())
}

/// A rule as GET shows it: `authentication` values masked.
fn rule_json(r: &WebhookRule) -> Value {
    json!({
        "metadata": {"id": r.id.to_string(), "name": r.name},
        "spec": {
            "enabled": r.enabled,
            "url": r.url,
            "events": r.events,
            "headers": plain(&r.headers),
            "queryParams": plain(&r.query_params),
            "authentication": {"headers": masked(&r.auth_headers), "queryParams": masked(&r.auth_query_params)},
        },
    })
}

fn string_map(v: Option<&Value>, what: &str) -> Result<BTreeMap<String, String>, MkioError> {
    match v {
        None | Some(Value::Null) => Ok(BTreeMap::new()),
        Some(Value::Object(m)) => m
            .iter()
            .map(|(k, v)| match v {
                Value::String(s) => Ok((k.clone(), s.clone())),
                _ => Err(MkioError::bad_request(format!("'{what}.{k}' must be a string."))),
            })
            .collect(),
        Some(_) => Err(MkioError::bad_request(format!("'{what}' must be an object of strings."))),
    }
}

/// Parses a PUT body; the whole spec is replaced, so anything left out is cleared.
fn parse_rule(name: &str, existing: Option<(uuid::Uuid, String)>, body: &[u8]) -> Result<WebhookRule, MkioError> {
    let body = parse_body(body)?;
    let spec = match body.get("spec") {
        Some(Value::Object(s)) => s,
        _ => return Err(MkioError::bad_request("The request body must contain a 'spec' object.")),
    };
    let enabled = spec
        .get("enabled")
        .and_then(Value::as_bool)
        .ok_or_else(|| MkioError::bad_request("'spec.enabled' is required and must be true or false."))?;
    let url =
        spec.get("url").and_then(Value::as_str).ok_or_else(|| MkioError::bad_request("'spec.url' is required."))?;
    if crate::config::validate_endpoint(url).is_err() {
        return Err(MkioError::bad_request(format!("'spec.url' is not an http(s) URL: {url}")));
    }
    let events = spec
        .get("events")
        .and_then(Value::as_array)
        .ok_or_else(|| MkioError::bad_request("'spec.events' is required and must be an array."))?;
    let mut types = Vec::with_capacity(events.len());
    for e in events {
        let t = e.as_str().ok_or_else(|| MkioError::bad_request("'spec.events' must hold strings."))?;
        if !EVENT_TYPES.contains(&t) {
            return Err(MkioError::bad_request(format!(
                "Unknown event type '{t}'; use one of {}.",
                EVENT_TYPES.join(", ")
            )));
        }
        types.push(t.to_string());
    }
    let empty = Map::new();
    let auth = match spec.get("authentication") {
        None | Some(Value::Null) => &empty,
        Some(Value::Object(a)) => a,
        Some(_) => return Err(MkioError::bad_request("'spec.authentication' must be an object.")),
    };
    let (id, name) = existing.unwrap_or_else(|| (uuid::Uuid::new_v4(), name.to_string()));
    Ok(WebhookRule {
        name,
        id,
        enabled,
        url: url.to_string(),
        events: types,
        headers: string_map(spec.get("headers"), "spec.headers")?,
        query_params: string_map(spec.get("queryParams"), "spec.queryParams")?,
        auth_headers: string_map(auth.get("headers"), "spec.authentication.headers")?,
        auth_query_params: string_map(auth.get("queryParams"), "spec.authentication.queryParams")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rule_reads_back_with_its_authentication_masked() {
        let body = json!({"spec": {"enabled": true, "url": "https://example.com/hook", "events": [JOB_STARTED],
            "headers": {"X-Source": "mkio"}, "authentication": {"headers": {"X-Secret": "s3cret"}, "queryParams": {"code": "k"}}}});
        let rule = parse_rule("r", None, body.to_string().as_bytes()).unwrap();
        let shown = rule_json(&rule);
        assert_eq!(shown["spec"]["headers"]["X-Source"], "mkio");
        assert_eq!(shown["spec"]["authentication"]["headers"]["X-Secret"], MASK);
        assert_eq!(shown["spec"]["authentication"]["queryParams"]["code"], MASK);
        assert!(!shown.to_string().contains("s3cret"));
    }

    #[test]
    fn a_rule_needs_enabled_url_and_known_events() {
        let parse = |v: Value| parse_rule("r", None, v.to_string().as_bytes());
        assert!(parse(json!({"spec": {"url": "https://x/", "events": []}})).is_err());
        assert!(parse(json!({"spec": {"enabled": true, "url": "ftp://x/", "events": []}})).is_err());
        assert!(parse(json!({"spec": {"enabled": true, "url": "https://x/", "events": ["MediaKind.JobScheduled"]}}))
            .is_err());
        assert!(parse(json!({"spec": {"enabled": false, "url": "https://x/", "events": [JOB_FINISHED]}})).is_ok());
    }

    #[test]
    fn only_processing_and_final_states_raise_events() {
        assert_eq!(event_type_for(JobState::Scheduled), None);
        assert_eq!(event_type_for(JobState::Canceling), None);
        assert_eq!(event_type_for(JobState::Processing), Some(JOB_STARTED));
        assert_eq!(event_type_for(JobState::Error), Some(JOB_FINISHED));
        assert_eq!(event_type_for(JobState::Canceled), Some(JOB_FINISHED));
    }

    #[test]
    fn the_retry_schedule_ends_in_under_two_hours() {
        let total: u64 = RETRY_SCHEDULE_SECS.iter().sum();
        assert!(total < 2 * 3600, "{total}");
    }
}
