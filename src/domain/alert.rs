//! Alerts for operators: what happened, where, and what to do about it. Sent as JSON on the `alerts`
//! Service Bus queue through the Functions output binding, and logged one per line for Azure Monitor.
//!
//! Each thing is said once: the account, region and job are fields, so `reason` does not repeat them, and
//! [`Alert::summary`] puts them together for a person. Times are to the second.

use super::health::Removal;
use super::records::{ErrorInfo, JobRecord};
use super::time::seconds;
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::collections::BTreeMap;

/// One alert message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Alert {
    /// What kind of event this is: `RegionRemoved`, `RegionReadmitted`, `NoHealthyAccount`, `JobFailed`,
    /// `CredentialRefused`, ...
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The account concerned, if one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    /// Its region.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// The job concerned, if one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub job_id: Option<String>,
    /// Numbers behind the alert (for example stuck and in-flight jobs).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub counts: BTreeMap<&'static str, u64>,
    /// What was seen.
    pub reason: String,
    /// What an operator should do.
    pub action: String,
    /// When.
    #[serde(serialize_with = "super::time::serialize")]
    pub time: DateTime<Utc>,
}

impl Alert {
    fn new(kind: &'static str, reason: String, action: &str, now: DateTime<Utc>) -> Alert {
        Alert {
            kind,
            account: None,
            region: None,
            job_id: None,
            counts: BTreeMap::new(),
            reason,
            action: action.to_owned(),
            time: now,
        }
    }

    fn at(mut self, account: &str, region: &str) -> Alert {
        self.account = Some(account.to_owned());
        self.region = Some(region.to_owned());
        self
    }

    /// One line for a person: type, where, which job, and the reason, each once.
    pub fn summary(&self) -> String {
        let mut line = self.kind.to_owned();
        if let Some(account) = &self.account {
            line.push(' ');
            line.push_str(account);
            if let Some(region) = &self.region {
                line.push_str(&format!(" ({region})"));
            }
        }
        if let Some(job) = &self.job_id {
            line.push_str(&format!(" job {job}"));
        }
        line.push_str(": ");
        line.push_str(&self.reason);
        line
    }

    /// No account could take a job: it is kept as Pending, with `pending` jobs waiting in all. Sent once per
    /// `ALERT_REPEAT`, not once per job.
    pub fn job_pending(job_id: &str, tried: &[String], pending: usize, now: DateTime<Utc>) -> Alert {
        let reason = if tried.is_empty() {
            format!("no Media Services account is in rotation; {pending} job(s) are kept as Pending")
        } else {
            format!(
                "every account in rotation failed to take the job ({}); {pending} job(s) are kept as Pending",
                tried.join(", ")
            )
        };
        let mut alert = Alert::new(
            "NoHealthyAccount",
            reason,
            "Check the Media Services accounts and their regions (GET /api/status); pending jobs are submitted as soon as an account takes work again.",
            now,
        );
        alert.job_id = Some(job_id.to_owned());
        alert.counts.insert("pendingJobs", pending as u64);
        alert
    }

    /// Only one of several accounts is left in rotation: one more failure and nothing can be encoded.
    pub fn last_account(account: &str, region: &str, configured: usize, now: DateTime<Utc>) -> Alert {
        let mut alert = Alert::new(
            "LastAccountInRotation",
            format!("the only one of {configured} Media Services accounts left in rotation"),
            "Every new job goes to this one region. Check GET /api/status for why the others were removed; they come back by themselves after their cool-down once a probe succeeds.",
            now,
        )
        .at(account, region);
        alert.counts.insert("configured", configured as u64);
        alert
    }

    /// No account is in rotation at all.
    pub fn rotation_empty(configured: usize, pending: usize, now: DateTime<Utc>) -> Alert {
        let mut alert = Alert::new(
            "NoHealthyAccount",
            format!("none of the {configured} Media Services accounts is in rotation; new jobs are kept as Pending"),
            "Check the regions' Azure status and GET /api/status for why each account was removed. Accounts come back by themselves after their cool-down once a probe succeeds.",
            now,
        );
        alert.counts.insert("pendingJobs", pending as u64);
        alert
    }

    /// An account was taken out of rotation.
    pub fn region_removed(account: &str, region: &str, removal: &Removal, stuck: usize, in_flight: u32) -> Alert {
        let mut alert = Alert::new(
            "RegionRemoved",
            format!("taken out of rotation: {}", removal.reason),
            &format!(
                "New jobs go to the other accounts and its stuck jobs are moved. Check Media Services in that region; the account is probed again after {} (cool-down {}s).",
                seconds(&removal.until),
                removal.cooldown_secs
            ),
            removal.since,
        )
        .at(account, region);
        alert.counts.insert("stuckJobs", stuck as u64);
        alert.counts.insert("inFlight", u64::from(in_flight));
        alert
    }

    /// An account came back into rotation after a successful probe.
    pub fn region_readmitted(account: &str, region: &str, out_since: DateTime<Utc>, now: DateTime<Utc>) -> Alert {
        Alert::new(
            "RegionReadmitted",
            format!("back in rotation after a successful probe; out since {}", seconds(&out_since)),
            "Nothing to do. If it is removed again soon, its next cool-down is longer.",
            now,
        )
        .at(account, region)
    }

    /// An operator drained an account: out of rotation until an operator readmits it.
    pub fn region_drained(account: &str, region: &str, removal: &Removal, moved: usize, in_flight: u32) -> Alert {
        let (by, why, at) = match &removal.drained {
            Some(d) => (d.by.as_str(), d.reason.as_str(), d.at),
            None => ("an operator", removal.reason.as_str(), removal.since),
        };
        let mut alert = Alert::new(
            "RegionDrained",
            format!("drained by {by}: {why}"),
            &format!("New jobs go to the other accounts. It stays out, whatever probes say, until an operator readmits it (POST /api/accounts/{account}/readmit)."),
            at,
        )
        .at(account, region);
        alert.counts.insert("movedJobs", moved as u64);
        alert.counts.insert("inFlight", u64::from(in_flight));
        alert
    }

    /// An operator brought an account back into rotation after a successful probe, before its cool-down.
    pub fn region_readmitted_by(account: &str, region: &str, by: &str, why: &str, now: DateTime<Utc>) -> Alert {
        Alert::new(
            "RegionReadmitted",
            format!("readmitted by {by} after a successful probe: {why}"),
            "Nothing to do. If it fails again soon, it is taken out again with a longer cool-down.",
            now,
        )
        .at(account, region)
    }

    /// An account's own API credential (an MK.IO token) has expired or is refused: every call to the account
    /// fails until an operator replaces it. Sent once per credential.
    pub fn credential_refused(account: &str, region: &str, setting: &str, problem: &str, now: DateTime<Utc>) -> Alert {
        Alert::new(
            "CredentialRefused",
            format!("{account} ({region}) cannot be used: {problem}"),
            &format!(
                "Create a new API token for the project (restricted to it, as long-lived as policy allows) and put it in {setting} (the Key Vault secret it references, in Azure); the app reads it at start-up, so restart it. Until then jobs go to the other regions and this one leaves rotation when its calls fail."
            ),
            now,
        )
        .at(account, region)
    }

    /// A job ended in Error and will not be retried.
    pub fn job_failed(job: &JobRecord, error: Option<&ErrorInfo>, now: DateTime<Utc>) -> Alert {
        let detail = error.map_or_else(
            || "no error details".to_owned(),
            |e| format!("{} ({}, {}): {}", e.code, e.category, e.retry, e.message),
        );
        let mut alert = Alert::new(
            "JobFailed",
            format!("failed after {} attempt(s): {detail}", job.attempt),
            "Check the job's input and transform (GET /api/jobs/{jobId}); resubmit it under a new jobId once fixed.",
            now,
        );
        if let (Some(account), Some(region)) = (&job.account, &job.region) {
            alert = alert.at(account, region);
        }
        alert.job_id = Some(job.job_id.clone());
        alert
    }

    /// A streaming policy in an account differs from its definition; policies cannot be updated in place.
    pub fn policy_drift(
        account: &str,
        region: &str,
        policy: &str,
        differences: &[String],
        now: DateTime<Utc>,
    ) -> Alert {
        Alert::new(
            "PolicyDrift",
            format!("streaming policy {policy} differs from definitions/media.json: {}", differences.join("; ")),
            "Streaming policies cannot be updated, and locators keep the policy they were created with. If no locator uses the policy in this account, delete it there and the next sweep recreates it from the definitions; otherwise give the changed definition a new name (and STREAMING_POLICY if it is the one in use).",
            now,
        )
        .at(account, region)
    }

    /// A region already holds a different streaming locator under the name a job's publication uses.
    pub fn publication_conflict(job_id: &str, account: &str, region: &str, reason: &str, now: DateTime<Utc>) -> Alert {
        let mut alert = Alert::new(
            "PublicationConflict",
            format!("publication blocked: {reason}"),
            "Nothing was overwritten. Compare the locator of that name in the account with the job's publication (GET /api/jobs/{jobId}) and remove the stray one if it is not needed; the region stays in Conflict for this job.",
            now,
        )
        .at(account, region);
        alert.job_id = Some(job_id.to_owned());
        alert
    }

    /// A job's callback failed on every try of `CALLBACK_RETRY` and is given up; the topic still has the
    /// message.
    pub fn callback_failed(
        job_id: &str,
        kind: &str,
        host: &str,
        attempts: u32,
        error: &str,
        now: DateTime<Utc>,
    ) -> Alert {
        let mut alert = Alert::new(
            "CallbackFailed",
            format!("the {kind} callback to {host} failed {attempts} times and is given up; last: {error}"),
            "The job's outcome is still on the job-events topic and in GET /api/jobs/{jobId}. Tell the caller their callback endpoint did not answer 2xx.",
            now,
        );
        alert.job_id = Some(job_id.to_owned());
        alert.counts.insert("attempts", u64::from(attempts));
        alert
    }

    /// A region's publication of a job keeps failing; it is still retried.
    pub fn publication_failing(
        job_id: &str,
        account: &str,
        region: &str,
        failures: u32,
        error: &str,
        now: DateTime<Utc>,
    ) -> Alert {
        let mut alert = Alert::new(
            "PublicationFailing",
            format!("publication failed {failures} times in a row: {error}"),
            "It is retried with back-off (PUBLISH_RETRY) and the other regions are not held up. Check Media Services and its storage in that region.",
            now,
        )
        .at(account, region);
        alert.job_id = Some(job_id.to_owned());
        alert.counts.insert("failures", u64::from(failures));
        alert
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(secs: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_714_566_600 + secs, 123_456_789).single().expect("valid")
    }

    fn removal() -> Removal {
        Removal {
            since: at(0),
            until: at(600),
            reason: "2 job(s) waited longer than 600s in Scheduled or without word from Media Services".to_owned(),
            cooldown_secs: 600,
            drained: None,
        }
    }

    fn count(haystack: &str, needle: &str) -> usize {
        haystack.matches(needle).count()
    }

    #[test]
    fn a_removal_names_the_account_and_region_once() {
        let alert = Alert::region_removed("amswesteurope", "westeurope", &removal(), 2, 5);
        let summary = alert.summary();
        assert_eq!(
            summary,
            "RegionRemoved amswesteurope (westeurope): taken out of rotation: 2 job(s) waited longer than 600s in Scheduled or without word from Media Services"
        );
        let whole = format!("{summary} {}", alert.action);
        assert_eq!(count(&whole, "amswesteurope"), 1, "{whole}");
        assert_eq!(count(&whole, "westeurope"), 2, "the account name contains the region once: {whole}");
    }

    #[test]
    fn alert_times_are_to_the_second() {
        let alert = Alert::region_removed("amswesteurope", "westeurope", &removal(), 2, 5);
        let json = serde_json::to_value(&alert).expect("json");
        assert_eq!(json["time"], "2024-05-01T12:30:00Z");
        assert!(alert.action.contains("after 2024-05-01T12:40:00Z (cool-down 600s)"), "{}", alert.action);
        let back = Alert::region_readmitted("amswesteurope", "westeurope", at(0), at(900));
        assert!(back.reason.ends_with("out since 2024-05-01T12:30:00Z"), "{}", back.reason);
        assert!(!serde_json::to_string(&back).unwrap_or_default().contains(".123"), "no fraction of a second anywhere");
    }

    #[test]
    fn job_alerts_name_the_job_once() {
        let pending = Alert::job_pending("movie-42", &["amswesteurope".to_owned()], 3, at(0));
        assert_eq!(count(&pending.summary(), "movie-42"), 1, "{}", pending.summary());
        let conflict =
            Alert::publication_conflict("movie-42", "amsnortheurope", "northeurope", "another locator", at(0));
        assert_eq!(
            conflict.summary(),
            "PublicationConflict amsnortheurope (northeurope) job movie-42: publication blocked: another locator"
        );
        let failing = Alert::publication_failing("movie-42", "amsnortheurope", "northeurope", 5, "503", at(0));
        assert_eq!(count(&failing.summary(), "amsnortheurope"), 1);
        let last = Alert::last_account("amswesteurope", "westeurope", 3, at(0));
        assert_eq!(last.summary(), "LastAccountInRotation amswesteurope (westeurope): the only one of 3 Media Services accounts left in rotation");
        let drift = Alert::policy_drift("amswesteurope", "westeurope", "clear", &["x differs".to_owned()], at(0));
        assert_eq!(count(&format!("{} {}", drift.summary(), drift.action), "amswesteurope"), 1);
    }
}
