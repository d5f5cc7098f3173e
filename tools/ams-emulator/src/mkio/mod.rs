//! MediaKind MK.IO, for accounts started with the `mkio` provider: the account is an MK.IO *project*
//! (project name = account name, `location` = its region) served under `/api/v1/projects/{project}/...`.
//!
//! MK.IO keeps the Azure Media Services v3 shapes for transforms, jobs, assets and publication, so the
//! resources live on the same `Account` as in the ARM mode and the same lifecycle ticker, fault modes,
//! encoding outputs, blob storage and key delivery serve them. What differs is the wire around them, and
//! that is this module: paths, bearer tokens (`auth`), the error body (`error`), per-project rate limits
//! (`ratelimit`), list pagination (`lists`), storage registration and assets as pointers (`media`),
//! publication (`publish`), webhook rules and CloudEvents deliveries (`webhooks`) and the control API
//! additions (`control`). Sources, and which behaviours are guesses, are in the README's MK.IO section.
//!
//! Every request to a project, whatever its fate, is counted first; then come the token check, the rate
//! limit, the account's fault, and the route.

pub mod auth;
pub mod config;
pub mod control;
pub mod error;
pub mod lists;
pub mod media;
pub mod project;
pub mod publish;
pub mod ratelimit;
pub mod webhooks;

use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::State as AxumState;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use crate::arm::{apply_fault, operation_id, percent_decode, query_pairs};
use crate::model::{stable_guid, Account, Fault};
use crate::state::Emulator;
use crate::timefmt::arm_time;

pub use error::MkioError;
pub use project::Project;
pub use webhooks::Webhooks;

/// Path prefix of every MK.IO project call.
pub const PREFIX: &str = "/api/v1/projects/";

/// What a handler needs besides the account.
pub struct Ctx<'a> {
    /// The emulator (configuration, base URL).
    pub emulator: &'a Emulator,
    /// Project name as configured.
    pub project: String,
    /// Project id (`supplemental.subscription.id`).
    pub project_id: uuid::Uuid,
    /// Request path, for `@odata.nextLink`.
    pub path: String,
    /// Decoded query parameters, in order.
    pub query: Vec<(String, String)>,
    /// Time of the request.
    pub now: DateTime<Utc>,
}

impl Ctx<'_> {
    /// `/api/v1/projects/{project}/media`: the prefix of resource ids.
    pub fn media_path(&self) -> String {
        media_path(&self.project)
    }

    /// The first value of query parameter `key` (case-insensitive, as OData options are).
    pub fn query_value(&self, key: &str) -> Option<&str> {
        self.query.iter().find(|(k, _)| k.eq_ignore_ascii_case(key)).map(|(_, v)| v.as_str())
    }
}

/// `/api/v1/projects/{project}/media`.
pub fn media_path(project: &str) -> String {
    format!("{PREFIX}{project}/media")
}

/// `systemData` as MK.IO renders it: ARM's fields plus an `internalId` (media-api.json `SystemDataSchema`).
pub fn system_data(id_seed: &str, created: &DateTime<Utc>, modified: &DateTime<Utc>) -> Value {
    json!({
        "createdAt": arm_time(created),
        "createdBy": "ams-emulator",
        "createdByType": "Application",
        "internalId": stable_guid(&format!("ams-emulator/mkio/internal/{id_seed}")).to_string(),
        "lastModifiedAt": arm_time(modified),
        "lastModifiedBy": "ams-emulator",
        "lastModifiedByType": "Application",
    })
}

/// MK.IO resource names: 1-260 characters, none of `^ ' < > % & : \ ? / * +` (media-api.json, `name`).
pub fn valid_name(name: &str) -> bool {
    (1..=260).contains(&name.chars().count()) && !name.chars().any(|c| "^'<>%&:\\?/*+".contains(c))
}

/// Refuses a name MK.IO would refuse.
pub fn check_name(kind: &str, name: &str) -> Result<(), MkioError> {
    if valid_name(name) {
        Ok(())
    } else {
        Err(MkioError::bad_request(format!(
            "The {kind} name '{name}' is invalid: use 1-260 characters and none of ^ ' < > % & : \\ ? / * +."
        )))
    }
}

/// Entry point for everything under [`PREFIX`].
pub async fn handle(
    AxumState(emulator): AxumState<Arc<Emulator>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match route(&emulator, &method, &uri, &headers, &body) {
        Ok(resp) => resp,
        Err(e) => {
            tracing::debug!(%method, %uri, code = %e.code, status = e.status.as_u16(), "MK.IO error");
            e.into_response()
        }
    }
}

fn route(
    emulator: &Emulator,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, MkioError> {
    let no_route =
        || MkioError::new(StatusCode::NOT_FOUND, "NotFound", format!("No route matches {method} {}.", uri.path()));
    let rest = uri.path().strip_prefix(PREFIX).ok_or_else(no_route)?;
    let segs: Vec<String> = rest.split('/').filter(|s| !s.is_empty()).map(percent_decode).collect();
    let Some((project, rest)) = segs.split_first() else {
        return Err(no_route());
    };
    let now = Utc::now();
    let instant = Instant::now();
    let mut state = emulator.lock();
    let account = state.account_mut(project).filter(|a| a.mkio.is_some()).ok_or_else(|| {
        MkioError::new(StatusCode::NOT_FOUND, "NotFound", format!("The project '{project}' was not found."))
    })?;
    let class = ratelimit::Class::of(method);
    let Some(p) = account.mkio.as_mut() else {
        return Err(no_route());
    };
    p.meter.record(class, instant, now);
    if let Err(failure) = auth::check(headers, now) {
        p.meter.record_unauthorized();
        return Err(failure.into());
    }
    if !p.meter.admit(class, instant, now) {
        let kind = if class == ratelimit::Class::Read { "GET" } else { "DELETE, PATCH, POST and PUT" };
        return Err(MkioError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "TooManyRequests",
            format!("Rate limit exceeded for {kind} requests in project '{}'.", account.name),
        ));
    }
    let ctx = Ctx {
        emulator,
        project: account.name.clone(),
        project_id: p.id,
        path: uri.path().to_string(),
        query: query_pairs(uri),
        now,
    };
    apply_fault(account).map_err(MkioError::from)?;
    let rest: Vec<&str> = rest.iter().map(String::as_str).collect();
    if let Fault::Refuse { operation, status, code, message } = &account.fault {
        let this = mkio_operation_id(method, &rest);
        if operation == "*" || this.is_some_and(|op| op.eq_ignore_ascii_case(operation)) {
            let status = StatusCode::from_u16(*status).unwrap_or(StatusCode::BAD_REQUEST);
            let detail = message.clone().unwrap_or_else(|| format!("The request was refused with {code}."));
            return Err(MkioError::new(status, code, detail));
        }
    }
    match rest.as_slice() {
        ["media", media @ ..] => media::route(&ctx, account, method, media, body),
        ["webhook", "rules", rules @ ..] => webhooks::route(&ctx, account, method, rules, body),
        _ => Err(no_route()),
    }
}

/// The operation id a `refuse` fault names for an MK.IO call: the id of the Media Services operation it
/// corresponds to (`Jobs_Create`, `Assets_CreateOrUpdate`, ...), so one fault body works for every provider,
/// and MK.IO-only ids for calls AMS does not have.
pub fn mkio_operation_id(method: &Method, rest: &[&str]) -> Option<&'static str> {
    let is = |s: &str, lit: &str| s.eq_ignore_ascii_case(lit);
    match rest {
        ["media", media @ ..] => operation_id(method, media).or_else(|| media_only_operation_id(method, media)),
        ["webhook", "rules", rules @ ..] => Some(match (method.as_str(), rules) {
            ("GET", []) => "WebhookRules_List",
            ("PUT", [_]) => "WebhookRules_CreateOrUpdate",
            ("GET", [_]) => "WebhookRules_Get",
            ("DELETE", [_]) => "WebhookRules_Delete",
            ("GET", [_, e]) if is(e, "events") => "WebhookRules_ListEvents",
            _ => return None,
        }),
        _ => None,
    }
}

/// Ids of media calls Media Services has no operation for.
fn media_only_operation_id(method: &Method, media: &[&str]) -> Option<&'static str> {
    let is = |s: &str, lit: &str| s.eq_ignore_ascii_case(lit);
    Some(match (method.as_str(), media) {
        ("GET", [j]) if is(j, "jobs") => "Jobs_ListByProject",
        ("DELETE", [t, _, j, _]) if is(t, "transforms") && is(j, "jobs") => "Jobs_Delete",
        ("PATCH", [t, _, j, _]) if is(t, "transforms") && is(j, "jobs") => "Jobs_Update",
        ("GET", [t, _, j, _, s]) if is(t, "transforms") && is(j, "jobs") && is(s, "state") => "Jobs_GetState",
        ("GET", [t]) if is(t, "transforms") => "Transforms_List",
        ("DELETE", [t, _]) if is(t, "transforms") => "Transforms_Delete",
        ("GET", [a]) if is(a, "assets") => "Assets_List",
        ("DELETE", [a, _]) if is(a, "assets") => "Assets_Delete",
        ("PATCH", [c, _]) if is(c, "contentKeyPolicies") => "ContentKeyPolicies_Update",
        ("GET", [s]) if is(s, "storage") => "Storage_List",
        ("PUT", [s, _]) if is(s, "storage") => "Storage_CreateOrUpdate",
        ("GET", [s, _]) if is(s, "storage") => "Storage_Get",
        ("DELETE", [s, _]) if is(s, "storage") => "Storage_Delete",
        _ => return None,
    })
}

/// Parses a JSON request body (an empty body reads as `{}`).
pub fn parse_body(body: &[u8]) -> Result<Value, MkioError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(json!({}));
    }
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| MkioError::bad_request(format!("The request body is not valid JSON: {e}")))?;
    if v.is_object() {
        Ok(v)
    } else {
        Err(MkioError::bad_request("The request body must be a JSON object."))
    }
}

/// An optional string member of `obj`.
pub fn optional_str(obj: &Value, key: &str) -> Result<Option<String>, MkioError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(MkioError::bad_request(format!("'{key}' must be a string."))),
    }
}

/// 200 if something was deleted, 204 when there was nothing to delete (MK.IO's DELETE answers).
pub fn deleted(existed: bool) -> Response {
    if existed {
        StatusCode::OK.into_response()
    } else {
        StatusCode::NO_CONTENT.into_response()
    }
}

/// Sets up the MK.IO side of an account started with the `mkio` provider.
pub fn init_account(emulator_config: &crate::config::Config, account: &mut Account, base_url: &str) {
    account.mkio = Some(Project::new(&emulator_config.mkio, account, base_url, Utc::now()));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_spec_pattern() {
        assert!(valid_name("job-1 final_v2.mp4"));
        assert!(!valid_name(""));
        assert!(!valid_name("a/b"));
        assert!(!valid_name("it's"));
        assert!(!valid_name(&"x".repeat(261)));
    }

    #[test]
    fn mkio_calls_name_the_media_services_operation_they_correspond_to() {
        let id = |m: Method, rest: &[&str]| mkio_operation_id(&m, rest);
        assert_eq!(id(Method::PUT, &["media", "transforms", "t", "jobs", "j"]), Some("Jobs_Create"));
        assert_eq!(id(Method::GET, &["media", "jobs"]), Some("Jobs_ListByProject"));
        assert_eq!(id(Method::PUT, &["media", "storage", "s"]), Some("Storage_CreateOrUpdate"));
        assert_eq!(id(Method::GET, &["webhook", "rules", "r", "events"]), Some("WebhookRules_ListEvents"));
        assert_eq!(id(Method::GET, &["media", "nope"]), None);
    }
}
