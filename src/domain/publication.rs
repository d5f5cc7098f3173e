//! Video-on-demand publication of a finished job in every region, as the guidance describes it: publish
//! where the job was encoded, copy the outputs to each other region, and publish there under the same
//! locator names, locator ids, content key ids and values, and streaming policy.
//!
//! Each region has its own record (its own Table row) moving through
//! `Pending → Copying → Publishing → Published`, or to `Conflict` when the target already holds a different
//! locator of that name. The region where the job was encoded starts at `Publishing`. A failed step leaves
//! the state where it was and sets a retry time from the [`RetrySchedule`], so one region's trouble never
//! holds up another's. Everything here is pure: `now` comes in as an argument.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::fmt;
use std::time::Duration;

/// Failures after which an alert says a region's publication keeps failing (it keeps being retried).
pub const ALERT_AFTER_FAILURES: u32 = 5;

/// Where one region's publication stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PublicationState {
    /// Nothing done in this region yet (a copy waits for its source to be published first).
    Pending,
    /// The asset exists here and its blobs are being copied from the source region.
    Copying,
    /// The content is here; the streaming locators are being created.
    Publishing,
    /// Every locator exists, with its paths recorded.
    Published,
    /// A locator of the same name exists here with other values; an operator must decide.
    Conflict,
}

impl PublicationState {
    /// Whether nothing more will happen to the record (it lives in the done range).
    pub fn is_final(self) -> bool {
        matches!(self, PublicationState::Published | PublicationState::Conflict)
    }
}

impl fmt::Display for PublicationState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// Whether the region encoded the job or receives a copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// The job was encoded here.
    Source,
    /// The outputs are copied here from the source region.
    Copy,
}

/// A content key as stored: its id and its label in the streaming policy. Never its value.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContentKeyRef {
    /// The content key id (a GUID, lowercase).
    pub id: String,
    /// `labelReferenceInStreamingPolicy`.
    #[serde(default)]
    pub label: String,
}

/// One protocol's streaming paths, as `listPaths` reports them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StreamingPath {
    /// `Hls`, `Dash`, `SmoothStreaming` or `Download`.
    pub streaming_protocol: String,
    /// `NoEncryption`, `EnvelopeEncryption`, `CommonEncryptionCenc` or `CommonEncryptionCbcs`.
    pub encryption_scheme: String,
    /// Paths relative to the streaming endpoint's host.
    pub paths: Vec<String>,
}

/// What `listPaths` reports for a locator.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LocatorPaths {
    /// Streaming manifests per protocol.
    #[serde(default)]
    pub streaming_paths: Vec<StreamingPath>,
    /// Downloadable files.
    #[serde(default)]
    pub download_paths: Vec<String>,
}

/// One output asset's publication in a region.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AssetPublication {
    /// The asset, named the same in every region.
    pub asset: String,
    /// The streaming locator's name, the same in every region.
    pub locator_name: String,
    /// `streamingLocatorId`, the same in every region (lowercase GUID).
    pub streaming_locator_id: String,
    /// The locator's content keys, once it exists.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub content_keys: Vec<ContentKeyRef>,
    /// Its paths, recorded when it is published so reads never call Media Services.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paths: Option<LocatorPaths>,
}

/// One region's publication of one job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PublicationRecord {
    /// The logical job.
    pub job_id: String,
    /// The account published to.
    pub account: String,
    /// Its region.
    pub region: String,
    /// Source or copy.
    pub role: Role,
    /// The account that encoded the job.
    pub source_account: String,
    /// Its region.
    pub source_region: String,
    /// The streaming policy of every locator of this job.
    pub streaming_policy: String,
    /// The job's output assets.
    pub assets: Vec<AssetPublication>,
    /// Where it stands.
    pub state: PublicationState,
    /// Failed tries since the last progress.
    #[serde(default)]
    pub failures: u32,
    /// No try before this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_at: Option<DateTime<Utc>>,
    /// The last failure or the conflict found.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// When the record was written.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
    /// When it reached Published.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub published_at: Option<DateTime<Utc>>,
}

/// What to do next for one region's publication.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Published or in conflict: nothing.
    Nothing,
    /// A failed try is waiting for its retry time.
    WaitUntil(DateTime<Utc>),
    /// A copy waits for the source region to be published (its keys are read from there).
    WaitForSource,
    /// Make sure the asset exists here and every blob is copied or being copied.
    SyncContent,
    /// Create (or find) the streaming locators and record their paths.
    CreateLocators,
}

/// The next step for `record`, given its source region's record (`None` if unknown) and `now`.
pub fn next_step(record: &PublicationRecord, source: Option<&PublicationRecord>, now: DateTime<Utc>) -> Step {
    if record.state.is_final() {
        return Step::Nothing;
    }
    if let Some(at) = record.retry_at.filter(|at| *at > now) {
        return Step::WaitUntil(at);
    }
    match (record.role, record.state) {
        (Role::Source, _) | (Role::Copy, PublicationState::Publishing) => Step::CreateLocators,
        (Role::Copy, _) if source.is_some_and(|s| s.state == PublicationState::Published) => Step::SyncContent,
        (Role::Copy, _) => Step::WaitForSource,
    }
}

/// How long to wait after each failure: the n-th failure waits `delays[n-1]`, and the last delay repeats.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetrySchedule {
    /// The waits, in order.
    pub delays: Vec<Duration>,
}

impl Default for RetrySchedule {
    /// 30 s, 1 min, 2 min, 5 min, 10 min, 30 min, then every hour: quick for blips, patient for outages.
    fn default() -> Self {
        RetrySchedule { delays: [30, 60, 120, 300, 600, 1800, 3600].into_iter().map(Duration::from_secs).collect() }
    }
}

impl RetrySchedule {
    /// The wait after `failures` failures (1 for the first).
    pub fn delay(&self, failures: u32) -> Duration {
        let index = (failures.max(1) as usize - 1).min(self.delays.len().saturating_sub(1));
        self.delays.get(index).copied().unwrap_or_default()
    }
}

impl PublicationRecord {
    /// The record for the region that encoded the job: its locators are created there first.
    pub fn source(
        job_id: &str,
        account: &str,
        region: &str,
        streaming_policy: &str,
        assets: Vec<AssetPublication>,
        now: DateTime<Utc>,
    ) -> PublicationRecord {
        PublicationRecord {
            job_id: job_id.to_owned(),
            account: account.to_owned(),
            region: region.to_owned(),
            role: Role::Source,
            source_account: account.to_owned(),
            source_region: region.to_owned(),
            streaming_policy: streaming_policy.to_owned(),
            assets,
            state: PublicationState::Publishing,
            failures: 0,
            retry_at: None,
            last_error: None,
            created_at: now,
            updated_at: now,
            published_at: None,
        }
    }

    /// The record for another region, with the same locator names, ids and policy as `source`.
    pub fn copy_of(source: &PublicationRecord, account: &str, region: &str, now: DateTime<Utc>) -> PublicationRecord {
        PublicationRecord {
            account: account.to_owned(),
            region: region.to_owned(),
            role: Role::Copy,
            state: PublicationState::Pending,
            assets: source
                .assets
                .iter()
                .map(|a| AssetPublication { content_keys: vec![], paths: None, ..a.clone() })
                .collect(),
            failures: 0,
            retry_at: None,
            last_error: None,
            created_at: now,
            updated_at: now,
            published_at: None,
            ..source.clone()
        }
    }

    /// After a step made progress to `state` (failures are forgotten).
    pub fn progressed(&self, state: PublicationState, now: DateTime<Utc>) -> Option<PublicationRecord> {
        (!self.state.is_final() && (self.state != state || self.failures > 0)).then(|| PublicationRecord {
            state,
            failures: 0,
            retry_at: None,
            last_error: None,
            updated_at: now,
            ..self.clone()
        })
    }

    /// Every locator exists here: the record with the locators' keys and paths.
    pub fn published(&self, assets: Vec<AssetPublication>, now: DateTime<Utc>) -> Option<PublicationRecord> {
        (!self.state.is_final()).then(|| PublicationRecord {
            state: PublicationState::Published,
            assets,
            failures: 0,
            retry_at: None,
            last_error: None,
            updated_at: now,
            published_at: Some(now),
            ..self.clone()
        })
    }

    /// A step failed: count it and wait per `schedule`. `None` if the record has already ended.
    pub fn failed(&self, error: &str, schedule: &RetrySchedule, now: DateTime<Utc>) -> Option<PublicationRecord> {
        let failures = self.failures + 1;
        let wait = chrono::Duration::from_std(schedule.delay(failures)).unwrap_or(chrono::Duration::hours(1));
        (!self.state.is_final()).then(|| PublicationRecord {
            failures,
            retry_at: Some(now + wait),
            last_error: Some(error.to_owned()),
            updated_at: now,
            ..self.clone()
        })
    }

    /// The target holds a different locator under our name: stop and say why.
    pub fn conflict(&self, reason: &str, now: DateTime<Utc>) -> Option<PublicationRecord> {
        (!self.state.is_final()).then(|| PublicationRecord {
            state: PublicationState::Conflict,
            retry_at: None,
            last_error: Some(reason.to_owned()),
            updated_at: now,
            ..self.clone()
        })
    }
}

/// A streaming locator as Media Services reports it (key values are never part of it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveLocator {
    /// The asset it publishes.
    pub asset_name: String,
    /// `streamingLocatorId`.
    pub streaming_locator_id: String,
    /// `streamingPolicyName`.
    pub streaming_policy_name: String,
    /// Content key ids and labels.
    pub content_keys: Vec<ContentKeyRef>,
}

/// What a locator must be to count as ours.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpectedLocator<'a> {
    /// Its asset.
    pub asset_name: &'a str,
    /// Its id.
    pub streaming_locator_id: &'a str,
    /// Its policy.
    pub streaming_policy_name: &'a str,
    /// Its content key ids, when they are known (a copy must have the source's).
    pub content_key_ids: Option<BTreeSet<String>>,
}

/// Whether an existing locator is the one we meant to create (then it is reused), or why not. Names and
/// ids compare case-insensitively: ARM names are, and the service echoes ids in lowercase.
pub fn locator_mismatch(expected: &ExpectedLocator<'_>, live: &LiveLocator) -> Option<String> {
    if !live.asset_name.eq_ignore_ascii_case(expected.asset_name) {
        return Some(format!("it publishes asset {}, not {}", live.asset_name, expected.asset_name));
    }
    if !live.streaming_locator_id.eq_ignore_ascii_case(expected.streaming_locator_id) {
        return Some(format!(
            "its streamingLocatorId is {}, not {}",
            live.streaming_locator_id, expected.streaming_locator_id
        ));
    }
    if !live.streaming_policy_name.eq_ignore_ascii_case(expected.streaming_policy_name) {
        return Some(format!(
            "it uses streaming policy {}, not {}",
            live.streaming_policy_name, expected.streaming_policy_name
        ));
    }
    if let Some(want) = &expected.content_key_ids {
        let have: BTreeSet<String> = live.content_keys.iter().map(|k| k.id.to_ascii_lowercase()).collect();
        let want: BTreeSet<String> = want.iter().map(|k| k.to_ascii_lowercase()).collect();
        if have != want {
            return Some("its content key ids differ from the source region's".to_owned());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + secs, 0).unwrap_or_default()
    }

    fn asset(name: &str) -> AssetPublication {
        AssetPublication {
            asset: name.to_owned(),
            locator_name: name.to_owned(),
            streaming_locator_id: "90000000-0000-0000-0000-00000000000a".to_owned(),
            content_keys: vec![],
            paths: None,
        }
    }

    fn source() -> PublicationRecord {
        PublicationRecord::source("movie", "amswe", "westeurope", "vod", vec![asset("movie-a1-out0")], t(0))
    }

    #[test]
    fn the_encoding_region_publishes_at_once() {
        assert_eq!(next_step(&source(), None, t(0)), Step::CreateLocators);
    }

    #[test]
    fn a_copy_waits_for_its_source_then_copies_then_publishes() {
        let mut src = source();
        let copy = PublicationRecord::copy_of(&src, "amsne", "northeurope", t(1));
        assert_eq!(copy.assets[0].streaming_locator_id, src.assets[0].streaming_locator_id);
        assert_eq!(next_step(&copy, Some(&src), t(1)), Step::WaitForSource);
        assert_eq!(next_step(&copy, None, t(1)), Step::WaitForSource);
        src = src.published(src.assets.clone(), t(2)).expect("publishes");
        assert_eq!(next_step(&copy, Some(&src), t(2)), Step::SyncContent);
        let copying = copy.progressed(PublicationState::Copying, t(3)).expect("moves");
        assert_eq!(next_step(&copying, Some(&src), t(3)), Step::SyncContent);
        let publishing = copying.progressed(PublicationState::Publishing, t(4)).expect("moves");
        assert_eq!(next_step(&publishing, Some(&src), t(4)), Step::CreateLocators);
        let done = publishing.published(publishing.assets.clone(), t(5)).expect("publishes");
        assert_eq!(next_step(&done, Some(&src), t(6)), Step::Nothing);
        assert_eq!(done.published_at, Some(t(5)));
    }

    #[test]
    fn a_failure_waits_per_the_schedule_and_progress_forgets_it() {
        let schedule = RetrySchedule { delays: vec![Duration::from_secs(10), Duration::from_secs(60)] };
        let failed = source().failed("503", &schedule, t(0)).expect("counts");
        assert_eq!(next_step(&failed, None, t(5)), Step::WaitUntil(t(10)));
        assert_eq!(next_step(&failed, None, t(10)), Step::CreateLocators);
        let again = failed.failed("503", &schedule, t(10)).expect("counts");
        assert_eq!((again.failures, again.retry_at), (2, Some(t(70))));
        let third = again.failed("503", &schedule, t(70)).expect("counts");
        assert_eq!(third.retry_at, Some(t(130)), "the last delay repeats");
        let progressed = third.progressed(PublicationState::Publishing, t(200)).expect("clears");
        assert_eq!((progressed.failures, progressed.retry_at, progressed.last_error), (0, None, None));
    }

    #[test]
    fn the_default_schedule_grows_and_then_repeats_hourly() {
        let schedule = RetrySchedule::default();
        assert_eq!(schedule.delay(1), Duration::from_secs(30));
        assert!(schedule.delay(3) > schedule.delay(2));
        assert_eq!(schedule.delay(50), Duration::from_secs(3600));
        assert_eq!(RetrySchedule { delays: vec![] }.delay(3), Duration::ZERO);
    }

    #[test]
    fn final_records_never_change_again() {
        let schedule = RetrySchedule::default();
        let conflict = source().conflict("different asset", t(1)).expect("stops");
        assert_eq!(conflict.state, PublicationState::Conflict);
        assert_eq!(next_step(&conflict, None, t(2)), Step::Nothing);
        assert!(conflict.failed("x", &schedule, t(2)).is_none());
        assert!(conflict.published(vec![], t(2)).is_none());
        assert!(conflict.progressed(PublicationState::Copying, t(2)).is_none());
        assert!(source().progressed(PublicationState::Publishing, t(2)).is_none(), "no change, no write");
    }

    #[test]
    fn an_existing_locator_is_reused_only_when_it_is_the_one_we_meant() {
        let live = LiveLocator {
            asset_name: "Movie-a1-out0".into(),
            streaming_locator_id: "90000000-0000-0000-0000-00000000000a".into(),
            streaming_policy_name: "vod".into(),
            content_keys: vec![ContentKeyRef { id: "60000000-0000-0000-0000-000000000001".into(), label: "a".into() }],
        };
        let expected = ExpectedLocator {
            asset_name: "movie-a1-out0",
            streaming_locator_id: "90000000-0000-0000-0000-00000000000A",
            streaming_policy_name: "vod",
            content_key_ids: Some(["60000000-0000-0000-0000-000000000001".to_owned()].into()),
        };
        assert_eq!(locator_mismatch(&expected, &live), None);
        let other_asset = ExpectedLocator { asset_name: "other", ..expected.clone() };
        assert!(locator_mismatch(&other_asset, &live).is_some_and(|r| r.contains("asset")));
        let other_id =
            ExpectedLocator { streaming_locator_id: "90000000-0000-0000-0000-00000000000b", ..expected.clone() };
        assert!(locator_mismatch(&other_id, &live).is_some_and(|r| r.contains("streamingLocatorId")));
        let other_keys = ExpectedLocator { content_key_ids: Some(BTreeSet::new()), ..expected.clone() };
        assert!(locator_mismatch(&other_keys, &live).is_some_and(|r| r.contains("content key")));
        let keys_unknown = ExpectedLocator { content_key_ids: None, ..expected };
        assert_eq!(locator_mismatch(&keys_unknown, &live), None);
    }
}
