//! Media Services events as Event Grid delivers them (azure-contracts sections 2 and 3), read into what
//! the product acts on. Parsing is lenient where the service varies (topic case, a leading `/` in the
//! subject, `eventTime` with or without a zone) and strict about what identifies a job.
//!
//! The topic is kept as sent and matched to an account by the configuration: Media Services publishes to the
//! account's own system topic (`.../Microsoft.Media/mediaservices/{account}`), while Ravnur publishes the
//! same events to an Event Grid custom topic (`.../Microsoft.EventGrid/topics/{name}`) that names no account.

use super::records::ErrorInfo;
use super::state::JobState;
use chrono::{DateTime, NaiveDateTime, Utc};
use serde_json::Value;

/// A Media Services job event the product applies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobEvent {
    /// The Event Grid topic as sent: an account's system topic or a custom topic.
    pub topic: String,
    /// Transform from the subject.
    pub transform: String,
    /// Media Services job name from the subject.
    pub job_name: String,
    /// The new state.
    pub state: JobState,
    /// When the service says it happened, if readable.
    pub event_time: Option<DateTime<Utc>>,
    /// The first output error, on errored jobs.
    pub error: Option<ErrorInfo>,
    /// Event Grid's event id, for logs.
    pub id: String,
}

/// What an incoming event is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    /// A job state change to apply.
    Job(Box<JobEvent>),
    /// A valid event the product does not act on (job output changes, progress, other types).
    Ignored {
        /// Its type.
        event_type: String,
    },
}

/// Why an event cannot be used. Such events are logged and acknowledged, never retried.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unusable event: {0}")]
pub struct Unusable(pub String);

impl Incoming {
    /// Reads an Event Grid event (Event Grid schema).
    pub fn parse(event: &Value) -> Result<Incoming, Unusable> {
        let text = |name: &str| event.get(name).and_then(Value::as_str);
        let event_type = text("eventType").ok_or_else(|| Unusable("no eventType".into()))?;
        let job_types = [
            "Microsoft.Media.JobStateChange",
            "Microsoft.Media.JobScheduled",
            "Microsoft.Media.JobProcessing",
            "Microsoft.Media.JobCanceling",
            "Microsoft.Media.JobFinished",
            "Microsoft.Media.JobCanceled",
            "Microsoft.Media.JobErrored",
        ];
        if !job_types.iter().any(|t| t.eq_ignore_ascii_case(event_type)) {
            return Ok(Incoming::Ignored { event_type: event_type.to_owned() });
        }
        let topic = text("topic").ok_or_else(|| Unusable("no topic".into()))?;
        check_topic(topic)?;
        let subject = text("subject").ok_or_else(|| Unusable("no subject".into()))?;
        let (transform, job_name) = parse_subject(subject)?;
        let data = event.get("data").ok_or_else(|| Unusable("no data".into()))?;
        let state_text = data.get("state").and_then(Value::as_str).ok_or_else(|| Unusable("no data.state".into()))?;
        let state = JobState::from_media_services(state_text)
            .ok_or_else(|| Unusable(format!("unknown job state {state_text:?}")))?;
        let error = data
            .get("outputs")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .find_map(|o| o.get("error").filter(|e| !e.is_null()))
            .and_then(|e| serde_json::from_value::<ErrorInfo>(e.clone()).ok());
        Ok(Incoming::Job(Box::new(JobEvent {
            topic: topic.to_owned(),
            transform,
            job_name,
            state,
            event_time: text("eventTime").and_then(parse_event_time),
            error,
            id: text("id").unwrap_or_default().to_owned(),
        })))
    }
}

/// Checks that the topic can carry job events: a Media Services account
/// (`/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Media/mediaservices/{account}`) or an
/// Event Grid custom topic (`.../providers/Microsoft.EventGrid/topics/{name}`, also under a domain), matched
/// case-insensitively. Which account it belongs to is the configuration's business.
fn check_topic(topic: &str) -> Result<(), Unusable> {
    let parts: Vec<&str> = topic.trim_matches('/').split('/').collect();
    let shape = |expected: &[&str]| {
        parts.len() == expected.len()
            && parts.iter().zip(expected).all(|(part, want)| {
                if want.is_empty() {
                    !part.is_empty()
                } else {
                    part.eq_ignore_ascii_case(want)
                }
            })
    };
    const SCOPE: [&str; 5] = ["subscriptions", "", "resourcegroups", "", "providers"];
    let media = [&SCOPE[..], &["microsoft.media", "mediaservices", ""]].concat();
    let custom = [&SCOPE[..], &["microsoft.eventgrid", "topics", ""]].concat();
    let domain_topic = [&SCOPE[..], &["microsoft.eventgrid", "domains", "", "topics", ""]].concat();
    if shape(&media) || shape(&custom) || shape(&domain_topic) {
        Ok(())
    } else {
        Err(Unusable(format!("topic {topic:?} is neither a Media Services account nor an Event Grid topic")))
    }
}

/// Whether two ARM resource ids name the same resource: ARM compares them case-insensitively, and Event Grid
/// does not keep the case an account was created with; a leading or trailing `/` does not matter.
pub fn same_resource_id(a: &str, b: &str) -> bool {
    a.trim_matches('/').eq_ignore_ascii_case(b.trim_matches('/'))
}

/// `transforms/{transform}/jobs/{job}`, with or without a leading `/`.
fn parse_subject(subject: &str) -> Result<(String, String), Unusable> {
    let parts: Vec<&str> = subject.trim_start_matches('/').split('/').collect();
    match parts.as_slice() {
        [t, transform, j, job]
            if t.eq_ignore_ascii_case("transforms") && j.eq_ignore_ascii_case("jobs") && !job.is_empty() =>
        {
            if !is_storable_name(job) {
                // It cannot be a job this product submitted (its names are Table keys), and trying to look it
                // up would fail the same way on every delivery.
                return Err(Unusable(format!("job name {job:?} cannot be a job this product submitted")));
            }
            Ok(((*transform).to_owned(), (*job).to_owned()))
        }
        _ => Err(Unusable(format!("subject {subject:?} does not name a job"))),
    }
}

/// Whether a Media Services job name can be part of a Table key (`a|{name}`): none of `/ \ # ?`, no
/// control characters, and short enough (keys are at most 1 KiB; ours are far shorter).
pub(crate) fn is_storable_name(name: &str) -> bool {
    name.len() <= 512 && !name.chars().any(|c| matches!(c, '/' | '\\' | '#' | '?') || c.is_control())
}

/// Reads `eventTime` with any number of fractional digits, with `Z`, an offset, or no zone (the AMS
/// samples have none; it is UTC).
pub fn parse_event_time(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .ok()
        .or_else(|| NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f").ok().map(|t| t.and_utc()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(event_type: &str, data: Value) -> Value {
        json!({
            "topic": "/subscriptions/sub/resourceGroups/rg/providers/Microsoft.Media/mediaservices/amswe",
            "subject": "transforms/encode/jobs/j-a1",
            "eventType": event_type,
            "eventTime": "2018-10-12T16:25:56.4115495",
            "id": "e1",
            "data": data,
            "dataVersion": "1.0",
            "metadataVersion": "1"
        })
    }

    #[test]
    fn a_finished_event_from_the_documentation_is_read() {
        let e = event(
            "Microsoft.Media.JobFinished",
            json!({"previousState": "Processing", "state": "Finished", "outputs": []}),
        );
        let Ok(Incoming::Job(job)) = Incoming::parse(&e) else { panic!("expected a job event") };
        assert_eq!(job.topic, "/subscriptions/sub/resourceGroups/rg/providers/Microsoft.Media/mediaservices/amswe");
        assert_eq!((job.job_name.as_str(), job.state), ("j-a1", JobState::Finished));
        assert_eq!(job.event_time.map(|t| t.to_rfc3339()), Some("2018-10-12T16:25:56.411549500+00:00".to_owned()));
    }

    #[test]
    fn an_event_whose_job_name_cannot_be_a_table_key_is_unusable_not_an_error_to_retry() {
        let long = format!("transforms/encode/jobs/{}", "x".repeat(1100));
        for subject in [
            "transforms/encode/jobs/a?b",
            "transforms/encode/jobs/a#b",
            "transforms/encode/jobs/a\\b",
            "transforms/encode/jobs/a\u{1}b",
            long.as_str(),
        ] {
            let mut e = event("Microsoft.Media.JobFinished", json!({"state": "Finished", "outputs": []}));
            e["subject"] = json!(subject);
            assert!(Incoming::parse(&e).is_err(), "{subject:?} must be unusable");
        }
    }

    #[test]
    fn an_errored_event_keeps_code_category_and_retry_hint() {
        let e = event(
            "Microsoft.Media.JobErrored",
            json!({"state": "Error", "outputs": [{"error": {"code": "ServiceError", "message": "m", "category": "Service", "retry": "MayRetry", "details": []}}]}),
        );
        let Ok(Incoming::Job(job)) = Incoming::parse(&e) else { panic!("expected a job event") };
        assert_eq!(
            job.error.map(|e| (e.code, e.category, e.retry)),
            Some(("ServiceError".into(), "Service".into(), "MayRetry".into()))
        );
    }

    #[test]
    fn output_and_progress_events_are_acknowledged_without_action() {
        let e = event("Microsoft.Media.JobOutputProgress", json!({"progress": 50}));
        assert_eq!(
            Incoming::parse(&e),
            Ok(Incoming::Ignored { event_type: "Microsoft.Media.JobOutputProgress".into() })
        );
    }

    #[test]
    fn events_that_do_not_name_a_job_are_unusable() {
        let mut e = event("Microsoft.Media.JobScheduled", json!({"state": "Scheduled"}));
        e["subject"] = json!("liveEvent/mle1");
        assert!(Incoming::parse(&e).is_err());
        let mut e = event("Microsoft.Media.JobScheduled", json!({"state": "Scheduled"}));
        e["topic"] = json!("/subscriptions/sub/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/x");
        assert!(Incoming::parse(&e).is_err());
        assert!(Incoming::parse(&event("Microsoft.Media.JobScheduled", json!({"state": "Bogus"}))).is_err());
        assert!(Incoming::parse(&json!("not an object")).is_err());
    }

    #[test]
    fn an_event_from_an_event_grid_custom_topic_is_read_with_its_topic_as_sent() {
        let mut e =
            event("Microsoft.Media.JobProcessing", json!({"previousState": "Scheduled", "state": "Processing"}));
        let custom = "/subscriptions/sub/resourceGroups/rms-rg/providers/Microsoft.EventGrid/topics/eg-topic-abc123";
        e["topic"] = json!(custom);
        let Ok(Incoming::Job(job)) = Incoming::parse(&e) else { panic!("expected a job event") };
        assert_eq!((job.topic.as_str(), job.job_name.as_str()), (custom, "j-a1"));
        e["topic"] = json!("/subscriptions/sub/resourceGroups/rg/providers/Microsoft.EventGrid/domains/d/topics/t");
        assert!(Incoming::parse(&e).is_ok(), "a domain topic is a topic too");
        e["topic"] = json!("/subscriptions/sub/resourceGroups/rg/providers/Microsoft.EventGrid/topics/");
        assert!(Incoming::parse(&e).is_err(), "a topic needs a name");
    }

    #[test]
    fn resource_ids_are_the_same_whatever_their_case_and_surrounding_slashes() {
        let id = "/subscriptions/S/resourceGroups/RG/providers/Microsoft.EventGrid/topics/eg-topic-x";
        assert!(same_resource_id(
            id,
            "subscriptions/s/resourcegroups/rg/providers/microsoft.eventgrid/topics/EG-TOPIC-X/"
        ));
        assert!(!same_resource_id(
            id,
            "/subscriptions/S/resourceGroups/RG/providers/Microsoft.EventGrid/topics/eg-topic-y"
        ));
    }

    #[test]
    fn event_times_parse_with_or_without_a_zone() {
        for s in [
            "2018-10-12T16:12:18.0839935",
            "2018-10-12T16:12:18Z",
            "2018-10-12T18:12:18+02:00",
            "2018-10-12T16:12:18.08Z",
        ] {
            assert_eq!(parse_event_time(s).map(|t| t.timestamp()), Some(1_539_360_738), "{s}");
        }
    }
}
