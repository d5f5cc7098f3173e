//! MK.IO's webhook deliveries, read into what the product acts on. MK.IO sends CloudEvents 1.0 (structured
//! JSON): `{"specversion": "1.0", "id", "type", "source": "<object url>", "time", "data": {"projectName",
//! "previousState", "state", "resource": <the object as a GET returns it>}}` (docs.mediakind.com, Webhooks).
//! Of its event types only `MediaKind.JobStarted` (a job left the queue) and `MediaKind.JobFinished` (a job
//! reached a final state) concern jobs; there is no Scheduled event.
//!
//! Deliveries are treated as at-least-once and unordered (MK.IO documents neither), and their payload as a
//! hint: a final state is confirmed by reading the job before it is applied.

use super::event::{parse_event_time, Unusable};
use super::state::JobState;
use chrono::{DateTime, Utc};
use serde_json::Value;

/// Which job event MK.IO sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MkioJobEventKind {
    /// `MediaKind.JobStarted`.
    Started,
    /// `MediaKind.JobFinished`.
    Finished,
}

/// A job event from an MK.IO project.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MkioJobEvent {
    /// The CloudEvent id, for logs (at-least-once deliveries repeat it).
    pub id: String,
    /// Started or finished.
    pub kind: MkioJobEventKind,
    /// The project that sent it.
    pub project: String,
    /// The job's transform.
    pub transform: String,
    /// The job's name.
    pub job_name: String,
    /// The state the payload claims (`data.state`, else the resource's), if readable.
    pub state: Option<JobState>,
    /// When MK.IO says it happened.
    pub time: Option<DateTime<Utc>>,
}

/// What a delivery is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MkioIncoming {
    /// A job event to apply.
    Job(Box<MkioJobEvent>),
    /// A valid event of another type (locators, live channels): nothing to do.
    Ignored {
        /// Its type.
        event_type: String,
    },
}

/// `.../projects/{project}/media/transforms/{transform}/jobs/{job}` anywhere in a URL or resource id: the
/// project (if present), transform and job.
fn job_path(text: &str) -> Option<(Option<String>, String, String)> {
    let path = text.split(['?', '#']).next().unwrap_or_default();
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    let at = parts.iter().rposition(|p| p.eq_ignore_ascii_case("jobs"))?;
    let (Some(job), Some(transform)) = (parts.get(at + 1), at.checked_sub(1).and_then(|i| parts.get(i))) else {
        return None;
    };
    if at < 2 || !parts[at - 2].eq_ignore_ascii_case("transforms") {
        return None;
    }
    let project = parts.iter().position(|p| p.eq_ignore_ascii_case("projects")).and_then(|i| parts.get(i + 1));
    Some((project.map(|p| (*p).to_owned()), (*transform).to_owned(), (*job).to_owned()))
}

impl MkioIncoming {
    /// Reads one CloudEvent.
    pub fn parse(event: &Value) -> Result<MkioIncoming, Unusable> {
        let text = |name: &str| event.get(name).and_then(Value::as_str);
        if text("specversion") != Some("1.0") {
            return Err(Unusable("not a CloudEvents 1.0 event".into()));
        }
        let event_type = text("type").ok_or_else(|| Unusable("no type".into()))?;
        let kind = match event_type {
            "MediaKind.JobStarted" => MkioJobEventKind::Started,
            "MediaKind.JobFinished" => MkioJobEventKind::Finished,
            other => return Ok(MkioIncoming::Ignored { event_type: other.to_owned() }),
        };
        let id = text("id").filter(|id| !id.is_empty()).ok_or_else(|| Unusable("no id".into()))?.to_owned();
        let data = event.get("data").ok_or_else(|| Unusable("no data".into()))?;
        let resource = data.get("resource");
        // The job is named by the object URL (`source`) or, failing that, by the resource's own id.
        let located = text("source")
            .and_then(job_path)
            .or_else(|| resource.and_then(|r| r.get("id")).and_then(Value::as_str).and_then(job_path))
            .ok_or_else(|| Unusable("neither source nor data.resource.id names a job".into()))?;
        let (path_project, transform, job_name) = located;
        let project = data
            .get("projectName")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .or(path_project)
            .filter(|p| !p.is_empty())
            .ok_or_else(|| Unusable("no data.projectName".into()))?;
        if let Some(name) = resource.and_then(|r| r.get("name")).and_then(Value::as_str) {
            if name != job_name {
                return Err(Unusable(format!("data.resource is job {name:?} but source names {job_name:?}")));
            }
        }
        if !super::event::is_storable_name(&job_name) {
            return Err(Unusable(format!("job name {job_name:?} cannot be a job this product submitted")));
        }
        let state = data
            .get("state")
            .and_then(Value::as_str)
            .or_else(|| resource.and_then(|r| r.pointer("/properties/state")).and_then(Value::as_str))
            .and_then(JobState::from_media_services);
        Ok(MkioIncoming::Job(Box::new(MkioJobEvent {
            id,
            kind,
            project,
            transform,
            job_name,
            state,
            time: text("time").and_then(parse_event_time),
        })))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn delivery(event_type: &str, state: &str) -> Value {
        json!({
            "specversion": "1.0", "id": "9f1c", "type": event_type,
            "source": "https://app.mk.io/api/v1/projects/mkwe/media/transforms/encode/jobs/movie-a1",
            "time": "2025-05-01T10:00:00Z", "datacontenttype": "application/json",
            "data": {"projectName": "mkwe", "previousState": "Processing", "state": state,
                     "resource": {"name": "movie-a1", "properties": {"state": state, "outputs": []}}}
        })
    }

    #[test]
    fn a_finished_job_event_names_its_project_transform_job_and_claimed_state() {
        let Ok(MkioIncoming::Job(e)) = MkioIncoming::parse(&delivery("MediaKind.JobFinished", "Finished")) else {
            panic!("a job event")
        };
        assert_eq!((e.project.as_str(), e.transform.as_str(), e.job_name.as_str()), ("mkwe", "encode", "movie-a1"));
        assert_eq!((e.kind, e.state, e.id.as_str()), (MkioJobEventKind::Finished, Some(JobState::Finished), "9f1c"));
        assert!(e.time.is_some());
    }

    #[test]
    fn the_job_is_found_from_the_resource_id_when_the_source_is_not_its_url() {
        let mut e = delivery("MediaKind.JobStarted", "Processing");
        e["source"] = json!("mkio");
        e["data"]["resource"]["id"] = json!("/api/v1/projects/mkwe/media/transforms/encode/jobs/movie-a1");
        assert!(matches!(MkioIncoming::parse(&e), Ok(MkioIncoming::Job(j)) if j.kind == MkioJobEventKind::Started));
    }

    #[test]
    fn other_event_types_are_acknowledged_and_broken_ones_are_unusable() {
        let locator = delivery("MediaKind.StreamingLocatorCreated", "x");
        assert!(matches!(MkioIncoming::parse(&locator), Ok(MkioIncoming::Ignored { .. })));
        let mut no_id = delivery("MediaKind.JobFinished", "Finished");
        no_id["id"] = json!("");
        assert!(MkioIncoming::parse(&no_id).is_err());
        let mut mismatched = delivery("MediaKind.JobFinished", "Finished");
        mismatched["data"]["resource"]["name"] = json!("other-a1");
        assert!(MkioIncoming::parse(&mismatched).is_err());
        let mut bad_name = delivery("MediaKind.JobFinished", "Finished");
        bad_name["source"] = json!("https://app.mk.io/api/v1/projects/mkwe/media/transforms/encode/jobs/a\\b");
        bad_name["data"]["resource"]["name"] = json!("a\\b");
        assert!(MkioIncoming::parse(&bad_name).is_err(), "no job of this product has a backslash in its name");
        assert!(MkioIncoming::parse(&json!({"specversion": "0.3", "type": "MediaKind.JobFinished"})).is_err());
        assert!(MkioIncoming::parse(&json!([1, 2])).is_err());
    }
}
