//! Outcome notifications: what an application hears when its job ends, without polling GetJob.
//!
//! Each job's outcome (`Finished`, `Error`, `Canceled`) is one message, and with publication on a second
//! one, `Published`, follows once every region has published (publication ends long after the encode).
//! A message has a deterministic id, `{jobId}:{type}`, and a body built only from rows that no longer
//! change (a final job, final publications), so every delivery of the same message carries the same id
//! and the same bytes: Service Bus duplicate detection drops repeats, and a callback receiver can too.
//!
//! Delivery is tracked per message and channel (the `job-events` topic, the caller's callback URL) in an
//! [`Outbox`], so one channel's trouble never holds up the other, and a retry schedule decides when a
//! failed delivery is tried again. Everything here is pure: `now` comes in as an argument.

use super::publication::{PublicationRecord, PublicationState, RetrySchedule};
use super::records::{ErrorInfo, JobRecord};
use super::request::SubmitRequest;
use super::state::JobState;
use super::time;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

/// The Service Bus topic outcome notifications go to unless `JOB_EVENTS_TOPIC` says otherwise.
pub const DEFAULT_TOPIC: &str = "job-events";

/// Header carrying the callback's signature, `sha256=<hex>`.
pub const SIGNATURE_HEADER: &str = "x-amsfo-signature";
/// Header carrying the Unix time (seconds) the signature was made at; it is part of what is signed.
pub const TIMESTAMP_HEADER: &str = "x-amsfo-timestamp";
/// Header carrying the message id, for receivers that drop repeats.
pub const MESSAGE_ID_HEADER: &str = "x-amsfo-message-id";

/// Which message: one per outcome, and `Published` after a `Finished` one when publication is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Kind {
    /// The job finished; its outputs are in the message.
    Finished,
    /// The job failed for good.
    Error,
    /// The job was cancelled.
    Canceled,
    /// Every region's publication of a finished job has ended; streaming paths and URLs are in the message.
    Published,
}

impl Kind {
    /// The message for a job that ended in `state`, if that state is an outcome.
    pub fn of_outcome(state: JobState) -> Option<Kind> {
        match state {
            JobState::Finished => Some(Kind::Finished),
            JobState::Error => Some(Kind::Error),
            JobState::Canceled => Some(Kind::Canceled),
            _ => None,
        }
    }

    /// The name, as in the message's `type` and the Service Bus label.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Finished => "Finished",
            Kind::Error => "Error",
            Kind::Canceled => "Canceled",
            Kind::Published => "Published",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The message id of `kind` for `job_id`: the same for every delivery, so duplicates can be dropped.
/// Job ids are at most 100 characters, so this stays under Service Bus's 128.
pub fn message_id(job_id: &str, kind: Kind) -> String {
    format!("{job_id}:{kind}")
}

/// One notification: the JSON that goes to the topic and, signed, to the callback URL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Notification {
    /// `Finished`, `Error`, `Canceled` or `Published`.
    #[serde(rename = "type")]
    pub kind: Kind,
    /// `{jobId}:{type}`.
    pub message_id: String,
    /// The job.
    pub job_id: String,
    /// The caller's correlation data, as submitted.
    pub correlation_data: BTreeMap<String, String>,
    /// The transform it ran.
    pub transform: String,
    /// The job's final state.
    pub state: JobState,
    /// The account of the job's last attempt (none if it never ran anywhere).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    /// Its region.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Attempts the job took.
    pub attempts: u32,
    /// When the outcome happened (for `Published`, when the last region finished publishing).
    #[serde(serialize_with = "time::serialize")]
    pub time: DateTime<Utc>,
    /// Output asset names (`Finished`, `Published`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub outputs: Vec<String>,
    /// What went wrong (`Error`): code, category, message and retry hint from Media Services.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorInfo>,
    /// `Finished` with publication on: a `Published` message follows once every region has published.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub publication_follows: bool,
    /// `Published`: every region's publication, with its streaming paths and URLs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub publications: Option<Vec<RegionPublication>>,
}

impl Notification {
    /// The body as sent: compact JSON.
    pub fn body(&self) -> String {
        // Plain structs, strings and maps of strings: serializing cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// One region's publication in a `Published` message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RegionPublication {
    /// The account.
    pub account: String,
    /// Its region.
    pub region: String,
    /// `Published`, or `Conflict` when a different locator of that name was already there (operators are
    /// alerted; the region has no paths for this job).
    pub state: PublicationState,
    /// When the region published.
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "time::serialize_option")]
    pub published_at: Option<DateTime<Utc>>,
    /// The locators, one per output asset.
    pub locators: Vec<LocatorView>,
    /// Why the region is in conflict.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One streaming locator of a published region.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LocatorView {
    /// The output asset.
    pub asset: String,
    /// The locator's name, the same in every region.
    pub name: String,
    /// `streamingLocatorId`, the same in every region.
    pub streaming_locator_id: String,
    /// Content key ids, the same in every region.
    pub content_key_ids: Vec<String>,
    /// Manifests per protocol.
    pub streaming_paths: Vec<PathView>,
    /// Downloadable files, relative to the streaming host.
    pub download_paths: Vec<String>,
    /// The same through the streaming Traffic Manager host, when one is configured.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub download_urls: Vec<String>,
}

/// One protocol's manifests.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PathView {
    /// `Hls`, `Dash`, `SmoothStreaming`.
    pub protocol: String,
    /// The encryption scheme.
    pub encryption_scheme: String,
    /// Paths relative to the streaming host (every region serves the same ones).
    pub paths: Vec<String>,
    /// The same through the streaming Traffic Manager host, when one is configured.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub urls: Vec<String>,
}

/// The outcome message of a final job; `None` while the job is not final. `publication_follows` says
/// whether a `Published` message will follow (publication is on and the job has outputs).
pub fn outcome(job: &JobRecord, request: &SubmitRequest, publication_follows: bool) -> Option<Notification> {
    let kind = Kind::of_outcome(job.state)?;
    let mut message = base(job, request, kind, job.updated_at);
    match kind {
        Kind::Finished => {
            message.outputs = job.outputs.clone();
            message.publication_follows = publication_follows;
        }
        Kind::Error => message.error = job.last_error.clone(),
        Kind::Canceled | Kind::Published => {}
    }
    Some(message)
}

/// The `Published` message of a finished job, once every region's publication has ended (`records` holds
/// one per configured account); `None` before that. URLs use `streaming_host` when one is configured.
pub fn published(
    job: &JobRecord,
    request: &SubmitRequest,
    records: &[PublicationRecord],
    expected_regions: usize,
    streaming_host: Option<&str>,
) -> Option<Notification> {
    if job.state != JobState::Finished || !publication_complete(records, expected_regions) {
        return None;
    }
    // The latest change among final records: they never change again, so the time is stable too.
    let at = records.iter().map(|r| r.published_at.unwrap_or(r.updated_at)).max()?;
    let mut message = base(job, request, Kind::Published, at);
    message.outputs = job.outputs.clone();
    let url = |path: &str| streaming_host.map(|host| format!("https://{host}{path}"));
    let mut regions: Vec<RegionPublication> = records
        .iter()
        .map(|r| RegionPublication {
            account: r.account.clone(),
            region: r.region.clone(),
            state: r.state,
            published_at: r.published_at,
            locators: r
                .assets
                .iter()
                .filter(|_| r.state == PublicationState::Published)
                .map(|a| {
                    let paths = a.paths.clone().unwrap_or_default();
                    LocatorView {
                        asset: a.asset.clone(),
                        name: a.locator_name.clone(),
                        streaming_locator_id: a.streaming_locator_id.clone(),
                        content_key_ids: a.content_keys.iter().map(|k| k.id.clone()).collect(),
                        streaming_paths: paths
                            .streaming_paths
                            .iter()
                            .map(|p| PathView {
                                protocol: p.streaming_protocol.clone(),
                                encryption_scheme: p.encryption_scheme.clone(),
                                paths: p.paths.clone(),
                                urls: p.paths.iter().filter_map(|x| url(x)).collect(),
                            })
                            .collect(),
                        download_urls: paths.download_paths.iter().filter_map(|x| url(x)).collect(),
                        download_paths: paths.download_paths,
                    }
                })
                .collect(),
            error: (r.state == PublicationState::Conflict).then(|| r.last_error.clone()).flatten(),
        })
        .collect();
    // Stable order, whatever order the records were read in.
    regions.sort_by(|a, b| a.account.cmp(&b.account));
    message.publications = Some(regions);
    Some(message)
}

/// Whether every one of `expected` regions has a publication record and each has ended.
pub fn publication_complete(records: &[PublicationRecord], expected: usize) -> bool {
    expected > 0 && records.len() >= expected && records.iter().all(|r| r.state.is_final())
}

fn base(job: &JobRecord, request: &SubmitRequest, kind: Kind, at: DateTime<Utc>) -> Notification {
    Notification {
        kind,
        message_id: message_id(&job.job_id, kind),
        job_id: job.job_id.clone(),
        correlation_data: request.correlation_data.clone(),
        transform: job.transform.clone(),
        state: job.state,
        account: job.account.clone(),
        region: job.region.clone(),
        attempts: job.attempt,
        time: at,
        outputs: vec![],
        error: None,
        publication_follows: false,
        publications: None,
    }
}

// ---- delivery ----

/// Where a message goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Channel {
    /// The Service Bus topic (`job-events`).
    Topic,
    /// The `callbackUrl` of the request.
    Callback,
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Channel::Topic => "topic",
            Channel::Callback => "callback",
        })
    }
}

/// Where one message stands on one channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeliveryState {
    /// Not delivered yet.
    Pending,
    /// Accepted by the topic, or answered 2xx by the callback URL.
    Delivered,
    /// The callback failed on every try of the schedule; operators were alerted.
    GaveUp,
}

/// One message on one channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Delivery {
    /// Which message.
    pub kind: Kind,
    /// Which channel.
    pub channel: Channel,
    /// Where it stands.
    pub state: DeliveryState,
    /// Tries so far.
    #[serde(default)]
    pub attempts: u32,
    /// No try before this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_try_at: Option<DateTime<Utc>>,
    /// The last failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// How long a claim on an outbox row lasts: longer than every delivery of one row together (at most four
/// deliveries, each bounded by its timeout), so only one instance delivers at a time, and short enough that
/// a claim left by an instance that died is picked up by the next sweep or so.
pub const LEASE: Duration = Duration::from_secs(60);

/// Waits between failed tries on the topic. It is the product's own infrastructure: it is retried for as long
/// as it takes, never given up.
pub fn topic_retry() -> RetrySchedule {
    RetrySchedule { delays: [10, 30, 60, 300].into_iter().map(Duration::from_secs).collect() }
}

/// The default callback schedule, after the first try: 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h (about a
/// day in all), then the callback is given up with an alert.
pub fn default_callback_retry() -> RetrySchedule {
    RetrySchedule {
        delays: [5, 300, 1800, 7200, 18_000, 36_000, 36_000].into_iter().map(Duration::from_secs).collect(),
    }
}

/// The delivery state of one job's messages: the `outbox` row in the job's partition.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Outbox {
    /// Each message on each channel.
    #[serde(default)]
    pub deliveries: Vec<Delivery>,
    /// Claimed by an instance that is delivering until then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_until: Option<DateTime<Utc>>,
}

/// Whether a job that has just ended has anything to announce: its outcome goes to the topic when one is
/// configured (`topic`), and to the job's own callback URL when its request gave one. A job with neither gets
/// no delivery state at all, which spares its final write the outbox rows (the channels a job has are fixed
/// when it ends; configuring a topic later does not announce jobs that ended before). A request that cannot
/// be read counts as announcing, so the delivery reports it instead of the job going quiet.
pub fn announces(job: &JobRecord, topic: bool) -> bool {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Callback {
        callback_url: Option<String>,
    }
    Kind::of_outcome(job.state).is_some()
        && (topic || serde_json::from_str::<Callback>(&job.request).map_or(true, |r| r.callback_url.is_some()))
}

/// The messages a final job gets, on the channels it has: its outcome, and `Published` after `Finished`
/// when `publish` is on. Empty while the job is not final.
pub fn plan(job: &JobRecord, topic: bool, callback: bool, publish: bool) -> Vec<(Kind, Channel)> {
    let Some(outcome) = Kind::of_outcome(job.state) else { return vec![] };
    let mut kinds = vec![outcome];
    if publish && outcome == Kind::Finished && !job.outputs.is_empty() {
        kinds.push(Kind::Published);
    }
    let channels: Vec<Channel> = [(topic, Channel::Topic), (callback, Channel::Callback)]
        .into_iter()
        .filter(|(on, _)| *on)
        .map(|(_, c)| c)
        .collect();
    kinds.into_iter().flat_map(|k| channels.iter().map(move |c| (k, *c))).collect()
}

impl Outbox {
    /// The outbox with every planned delivery it does not track yet, as pending. Deliveries are never
    /// dropped, so a delivered message stays delivered whatever the plan says later.
    pub fn planned(mut self, wanted: &[(Kind, Channel)]) -> Outbox {
        for (kind, channel) in wanted {
            if !self.deliveries.iter().any(|d| d.kind == *kind && d.channel == *channel) {
                self.deliveries.push(Delivery {
                    kind: *kind,
                    channel: *channel,
                    state: DeliveryState::Pending,
                    attempts: 0,
                    next_try_at: None,
                    last_error: None,
                });
            }
        }
        self
    }

    /// Whether another instance holds the row at `now`.
    pub fn leased(&self, now: DateTime<Utc>) -> bool {
        self.lease_until.is_some_and(|until| until > now)
    }

    /// The deliveries to try at `now`: pending, past their retry time, and for `Published` only once
    /// `published_ready`. With `first_only`, only those never tried (retries are the sweep's).
    pub fn due(&self, now: DateTime<Utc>, published_ready: bool, first_only: bool) -> Vec<(Kind, Channel)> {
        self.deliveries
            .iter()
            .filter(|d| d.state == DeliveryState::Pending)
            .filter(|d| d.next_try_at.is_none_or(|at| at <= now))
            .filter(|d| d.kind != Kind::Published || published_ready)
            .filter(|d| !first_only || d.attempts == 0)
            .map(|d| (d.kind, d.channel))
            .collect()
    }

    /// Whether a `Published` delivery still waits.
    pub fn waits_for_publication(&self) -> bool {
        self.deliveries.iter().any(|d| d.kind == Kind::Published && d.state == DeliveryState::Pending)
    }

    /// Records a try of `kind` on `channel` at `now`. A failure waits per `schedule`; with `give_up`, a
    /// failure after the schedule's last wait gives the delivery up. Returns the delivery's new state.
    pub fn record(
        &mut self,
        kind: Kind,
        channel: Channel,
        result: Result<(), String>,
        now: DateTime<Utc>,
        schedule: &RetrySchedule,
        give_up: bool,
    ) -> Option<DeliveryState> {
        let delivery = self.deliveries.iter_mut().find(|d| d.kind == kind && d.channel == channel)?;
        delivery.attempts += 1;
        match result {
            Ok(()) => {
                delivery.state = DeliveryState::Delivered;
                delivery.next_try_at = None;
                delivery.last_error = None;
            }
            Err(error) => {
                delivery.last_error = Some(error);
                let retries = u32::try_from(schedule.delays.len()).unwrap_or(u32::MAX);
                if give_up && delivery.attempts > retries {
                    delivery.state = DeliveryState::GaveUp;
                    delivery.next_try_at = None;
                } else {
                    let wait =
                        chrono::Duration::from_std(schedule.delay(delivery.attempts)).unwrap_or(chrono::Duration::MAX);
                    delivery.next_try_at = Some(now.checked_add_signed(wait).unwrap_or(now));
                }
            }
        }
        Some(delivery.state)
    }

    /// Whether nothing is left to deliver, so the row can go.
    pub fn finished(&self) -> bool {
        self.deliveries.iter().all(|d| d.state != DeliveryState::Pending)
    }
}

/// The signature of a callback: HMAC-SHA256 with `key` over `{timestamp}.{body}`, as `sha256=<hex>`. The
/// timestamp is signed with the body, so a captured request cannot be replayed later under a fresh time.
pub fn sign(key: &[u8], timestamp: i64, body: &str) -> String {
    let mut mac = match Hmac::<Sha256>::new_from_slice(key) {
        Ok(mac) => mac,
        // HMAC takes keys of any length; this branch cannot be reached.
        Err(_) => return String::new(),
    };
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body.as_bytes());
    let digest = mac.finalize().into_bytes();
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::publication::{AssetPublication, LocatorPaths, Role, StreamingPath};
    use chrono::TimeZone;
    use rand::SeedableRng;

    fn at(secs: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_714_566_600 + secs, 987_654_321).single().expect("valid")
    }

    fn request() -> SubmitRequest {
        let body = r#"{"jobId":"movie-42","transform":"encode","input":{"baseUri":"https://in.example/","files":["a.mp4"]},"correlationData":{"tenant":"acme"}}"#;
        let transforms = ["encode".to_owned()].into();
        SubmitRequest::parse(
            Some(body),
            &crate::domain::request::Rules::new(transforms),
            &mut rand::rngs::StdRng::seed_from_u64(1),
        )
        .expect("valid")
    }

    fn finished_job() -> JobRecord {
        let mut job = JobRecord::accept(&request(), at(0));
        let (claimed, mut attempt) = job.begin_attempt("amswesteurope", "westeurope", 1, at(1));
        job = claimed;
        attempt.state = JobState::Finished;
        attempt.finished_at = Some(at(30));
        attempt.last_heard_at = at(30);
        job.observe_attempt(&attempt, 3, at(31)).expect("finishes")
    }

    #[test]
    fn the_outcome_of_a_finished_job_carries_its_outputs_and_the_callers_correlation_data() {
        let job = finished_job();
        let message = outcome(&job, &request(), true).expect("final");
        assert_eq!(message.message_id, "movie-42:Finished");
        let body: serde_json::Value = serde_json::from_str(&message.body()).expect("json");
        assert_eq!(body["type"], "Finished");
        assert_eq!(body["correlationData"]["tenant"], "acme");
        assert_eq!(body["outputs"], serde_json::json!(["movie-42-a1-out0"]));
        assert_eq!(body["publicationFollows"], true);
        assert_eq!(body["time"], "2024-05-01T12:30:31Z", "to the second");
        assert!(body.get("error").is_none());
    }

    #[test]
    fn an_ended_job_announces_on_the_topic_or_its_callback_and_otherwise_has_nothing_to_send() {
        let job = finished_job();
        assert!(announces(&job, true), "the topic hears every outcome");
        assert!(!announces(&job, false), "no topic and no callback: nothing to send");
        let with_callback = JobRecord {
            request: r#"{"jobId":"movie-42","callbackUrl":"https://app.example/hook"}"#.into(),
            ..job.clone()
        };
        assert!(announces(&with_callback, false), "the caller's callback hears it");
        let unreadable = JobRecord { request: "not json".into(), ..job.clone() };
        assert!(announces(&unreadable, false), "an unreadable request is reported by the delivery, not dropped");
        let open = JobRecord { state: JobState::Processing, ..with_callback };
        assert!(!announces(&open, true), "an open job has no outcome yet");
    }

    #[test]
    fn the_same_outcome_always_gives_the_same_id_and_the_same_bytes() {
        let job = finished_job();
        let first = outcome(&job, &request(), false).expect("final");
        let again = outcome(&job.clone(), &request(), false).expect("final");
        assert_eq!((&first.message_id, first.body()), (&again.message_id, again.body()));
    }

    #[test]
    fn an_error_carries_code_category_and_message_and_an_open_job_has_no_outcome() {
        let mut job = finished_job();
        job.state = JobState::Error;
        job.last_error = Some(ErrorInfo {
            code: "DownloadNotAccessible".into(),
            message: "the input is gone".into(),
            category: "Download".into(),
            retry: "DoNotRetry".into(),
        });
        let body: serde_json::Value =
            serde_json::from_str(&outcome(&job, &request(), true).expect("final").body()).expect("json");
        assert_eq!(body["type"], "Error");
        assert_eq!(body["error"]["code"], "DownloadNotAccessible");
        assert_eq!(body["error"]["category"], "Download");
        assert_eq!(body["error"]["message"], "the input is gone");
        assert!(body.get("publicationFollows").is_none(), "only a finished job is published");
        job.state = JobState::Processing;
        assert!(outcome(&job, &request(), false).is_none());
    }

    fn record(account: &str, state: PublicationState, published: i64) -> PublicationRecord {
        PublicationRecord {
            job_id: "movie-42".into(),
            account: account.into(),
            region: format!("{account}-region"),
            role: Role::Copy,
            source_account: "amswesteurope".into(),
            source_region: "westeurope".into(),
            streaming_policy: "Predefined_ClearStreamingOnly".into(),
            assets: vec![AssetPublication {
                asset: "movie-42-a1-out0".into(),
                locator_name: "movie-42-a1-out0".into(),
                streaming_locator_id: "0f0e0d0c-0000-4000-8000-000000000001".into(),
                content_keys: vec![],
                paths: Some(LocatorPaths {
                    streaming_paths: vec![StreamingPath {
                        streaming_protocol: "Hls".into(),
                        encryption_scheme: "NoEncryption".into(),
                        paths: vec!["/0f0e/movie.ism/manifest(format=m3u8-cmaf)".into()],
                    }],
                    download_paths: vec![],
                }),
            }],
            state,
            failures: 0,
            retry_at: None,
            last_error: (state == PublicationState::Conflict).then(|| "another locator".to_owned()),
            created_at: at(40),
            updated_at: at(published),
            published_at: (state == PublicationState::Published).then(|| at(published)),
        }
    }

    #[test]
    fn published_goes_out_only_once_every_region_has_ended_and_lists_urls_per_region() {
        let job = finished_job();
        let done = [
            record("amswesteurope", PublicationState::Published, 50),
            record("amsnortheurope", PublicationState::Published, 70),
        ];
        let open = [
            record("amswesteurope", PublicationState::Published, 50),
            record("amsnortheurope", PublicationState::Copying, 60),
        ];
        assert!(published(&job, &request(), &open, 2, None).is_none(), "a region is still copying");
        assert!(published(&job, &request(), &done[..1], 2, None).is_none(), "a region has no record yet");
        let message = published(&job, &request(), &done, 2, Some("media.example.com")).expect("complete");
        assert_eq!(message.message_id, "movie-42:Published");
        let body: serde_json::Value = serde_json::from_str(&message.body()).expect("json");
        assert_eq!(body["time"], "2024-05-01T12:31:10Z", "when the last region published");
        let regions = body["publications"].as_array().expect("regions");
        assert_eq!(regions[0]["account"], "amsnortheurope", "sorted by account");
        assert_eq!(
            regions[1]["locators"][0]["streamingPaths"][0]["urls"][0],
            "https://media.example.com/0f0e/movie.ism/manifest(format=m3u8-cmaf)"
        );
    }

    #[test]
    fn a_region_in_conflict_ends_the_publication_without_paths() {
        let job = finished_job();
        let records = [
            record("amswesteurope", PublicationState::Published, 50),
            record("amsnortheurope", PublicationState::Conflict, 55),
        ];
        let body: serde_json::Value =
            serde_json::from_str(&published(&job, &request(), &records, 2, None).expect("complete").body())
                .expect("json");
        let conflict = &body["publications"][0];
        assert_eq!(
            (conflict["state"].as_str(), conflict["error"].as_str()),
            (Some("Conflict"), Some("another locator"))
        );
        assert_eq!(conflict["locators"], serde_json::json!([]));
    }

    #[test]
    fn a_finished_job_with_publication_and_a_callback_plans_four_deliveries() {
        let job = finished_job();
        assert_eq!(plan(&job, true, true, true).len(), 4);
        assert_eq!(plan(&job, true, false, false), vec![(Kind::Finished, Channel::Topic)]);
        let mut open = job.clone();
        open.state = JobState::Queued;
        assert!(plan(&open, true, true, true).is_empty());
    }

    #[test]
    fn a_failed_callback_waits_per_schedule_and_is_given_up_after_the_last_wait() {
        let schedule = RetrySchedule { delays: vec![Duration::from_secs(5), Duration::from_secs(60)] };
        let mut outbox = Outbox::default().planned(&[(Kind::Finished, Channel::Callback)]);
        assert_eq!(outbox.due(at(0), false, true), vec![(Kind::Finished, Channel::Callback)]);
        let failed =
            |o: &mut Outbox, t| o.record(Kind::Finished, Channel::Callback, Err("500".into()), at(t), &schedule, true);
        assert_eq!(failed(&mut outbox, 0), Some(DeliveryState::Pending));
        assert!(outbox.due(at(4), false, false).is_empty(), "waits 5 s");
        assert!(outbox.due(at(5), false, true).is_empty(), "a retry is not a first try");
        assert_eq!(outbox.due(at(5), false, false).len(), 1);
        assert_eq!(failed(&mut outbox, 5), Some(DeliveryState::Pending));
        assert_eq!(outbox.deliveries[0].next_try_at, Some(at(65)), "then 60 s");
        assert_eq!(failed(&mut outbox, 65), Some(DeliveryState::GaveUp));
        assert!(outbox.finished());
    }

    #[test]
    fn the_topic_is_never_given_up_and_published_waits_for_the_regions() {
        let mut outbox =
            Outbox::default().planned(&[(Kind::Finished, Channel::Topic), (Kind::Published, Channel::Topic)]);
        assert_eq!(outbox.due(at(0), false, false), vec![(Kind::Finished, Channel::Topic)]);
        for t in 0..20 {
            outbox.record(Kind::Finished, Channel::Topic, Err("503".into()), at(t * 1000), &topic_retry(), false);
        }
        assert_eq!(outbox.deliveries[0].state, DeliveryState::Pending);
        outbox.record(Kind::Finished, Channel::Topic, Ok(()), at(30_000), &topic_retry(), false);
        assert!(outbox.waits_for_publication() && !outbox.finished());
        assert_eq!(outbox.due(at(30_000), true, false), vec![(Kind::Published, Channel::Topic)]);
        let again = outbox.clone().planned(&[(Kind::Finished, Channel::Topic)]);
        assert_eq!(again.deliveries[0].state, DeliveryState::Delivered, "planning again keeps what was delivered");
    }

    #[test]
    fn the_signature_covers_the_timestamp_and_the_body() {
        // HMAC-SHA256("key", "1700000000.{}"), computed independently with Python's hmac module.
        assert_eq!(
            sign(b"key", 1_700_000_000, "{}"),
            "sha256=9d713ed406bb7076d4123f0dc2c39d2df5c654ed4b0cd56b52c8b4c940bd63ae"
        );
        assert_ne!(sign(b"key", 1_700_000_001, "{}"), sign(b"key", 1_700_000_000, "{}"));
    }
}
