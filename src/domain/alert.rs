//! Alerts for operators: what happened, where, and what to do about it. Sent as JSON on the `alerts`
//! Service Bus queue through the Functions output binding.

use chrono::{DateTime, Utc};
use serde::Serialize;

/// One alert message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Alert {
    /// What kind of event this is, e.g. `NoHealthyAccount`.
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
    /// What was seen.
    pub reason: String,
    /// What an operator should do.
    pub action: String,
    /// When.
    pub time: DateTime<Utc>,
}

impl Alert {
    /// No account could take a job: it is kept as Pending.
    pub fn job_pending(job_id: &str, tried: &[String], now: DateTime<Utc>) -> Alert {
        let reason = if tried.is_empty() {
            "no Media Services account is in rotation; the job is kept as Pending".to_owned()
        } else {
            format!("every account in rotation failed to take the job ({}); it is kept as Pending", tried.join(", "))
        };
        Alert {
            kind: "NoHealthyAccount",
            account: None,
            region: None,
            job_id: Some(job_id.to_owned()),
            reason,
            action: "Check the Media Services accounts and their regions (GET /api/status); pending jobs are submitted as soon as an account takes work again.".to_owned(),
            time: now,
        }
    }
}
