//! The ARM subset of Microsoft.Media: transforms, assets and jobs under
//! `/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Media/mediaServices/{account}/`.
//!
//! Routing is done by hand rather than with axum's router because ARM matches
//! the fixed path segments (and resource names) case-insensitively, and every
//! miss must still answer in ARM's error shape.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State as AxumState;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};
use thiserror::Error;

use crate::config::MruMode;
use crate::events::EventGridEvent;
use crate::filter::Filter;
use crate::lifecycle;
use crate::model::{
    Account, Asset, Fault, Job, JobOutput, JobState, Transform, JOB_INPUTS, JOB_INPUT_ASSET, JOB_INPUT_HTTP,
    JOB_OUTPUT_ASSET,
};
use crate::mru;
use crate::state::Emulator;
use crate::timefmt::arm_time;
use crate::{blob, streaming};

/// An ARM failure, rendered as `{"error":{"code","message"}}` with its status.
#[derive(Debug, Error)]
pub enum ArmError {
    /// No such route.
    #[error("No route matches {method} {path}.")]
    NoRoute {
        /// Request method.
        method: String,
        /// Request path.
        path: String,
    },
    /// Known path, unsupported method.
    #[error("The requested method '{0}' is not supported on this resource.")]
    MethodNotAllowed(String),
    /// `api-version` missing.
    #[error("The api-version query parameter (?api-version=) is required for all requests.")]
    MissingApiVersion,
    /// Another subscription.
    #[error("The subscription '{0}' could not be found.")]
    SubscriptionNotFound(String),
    /// Another resource group.
    #[error("Resource group '{0}' could not be found.")]
    ResourceGroupNotFound(String),
    /// Unknown account.
    #[error(
        "The Resource 'Microsoft.Media/mediaServices/{account}' under resource group '{resource_group}' was not found."
    )]
    AccountNotFound {
        /// Account name from the path.
        account: String,
        /// Resource group.
        resource_group: String,
    },
    /// Unknown transform, asset, job, streaming policy, content key policy or streaming locator.
    #[error("The {kind} '{name}' was not found.")]
    NotFound {
        /// `transform`, `asset`, `job`, `streaming policy`, ...
        kind: &'static str,
        /// Name from the request.
        name: String,
    },
    /// Body not JSON.
    #[error("The request content was invalid and could not be deserialized: {0}")]
    InvalidContent(String),
    /// Validation failure.
    #[error("{0}")]
    BadRequest(String),
    /// Name already taken.
    #[error("{0}")]
    Conflict(String),
    /// `outage` fault.
    #[error("The service is temporarily unavailable in region '{0}'. Please retry later.")]
    ServiceUnavailable(String),
    /// `throttle` fault.
    #[error("The request was throttled. Retry after {0} seconds.")]
    Throttled(u64),
    /// A create-only PUT (job, streaming locator, streaming policy) on a name that is taken. The specs
    /// document only 201 and a default error, so the status is a setting (`--duplicate-create-status`).
    #[error("{message}")]
    Duplicate {
        /// 409 or 400.
        status: u16,
        /// What is taken.
        message: String,
    },
    /// `refuse` fault: the status and code chosen for one operation of one account.
    #[error("{message}")]
    Refused {
        /// HTTP status.
        status: u16,
        /// ARM error code.
        code: String,
        /// ARM error message.
        message: String,
    },
}

impl ArmError {
    /// HTTP status for the error.
    pub fn status(&self) -> StatusCode {
        match self {
            ArmError::NoRoute { .. }
            | ArmError::SubscriptionNotFound(_)
            | ArmError::ResourceGroupNotFound(_)
            | ArmError::AccountNotFound { .. }
            | ArmError::NotFound { .. } => StatusCode::NOT_FOUND,
            ArmError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ArmError::MissingApiVersion | ArmError::InvalidContent(_) | ArmError::BadRequest(_) => {
                StatusCode::BAD_REQUEST
            }
            ArmError::Conflict(_) => StatusCode::CONFLICT,
            ArmError::ServiceUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ArmError::Throttled(_) => StatusCode::TOO_MANY_REQUESTS,
            ArmError::Duplicate { status, .. } | ArmError::Refused { status, .. } => {
                StatusCode::from_u16(*status).unwrap_or(StatusCode::BAD_REQUEST)
            }
        }
    }

    /// ARM error code.
    pub fn code(&self) -> &str {
        match self {
            ArmError::NoRoute { .. } | ArmError::NotFound { .. } => "NotFound",
            ArmError::MethodNotAllowed(_) => "MethodNotAllowed",
            ArmError::MissingApiVersion => "MissingApiVersionParameter",
            ArmError::SubscriptionNotFound(_) => "SubscriptionNotFound",
            ArmError::ResourceGroupNotFound(_) => "ResourceGroupNotFound",
            ArmError::AccountNotFound { .. } => "ResourceNotFound",
            ArmError::InvalidContent(_) => "InvalidRequestContent",
            ArmError::BadRequest(_) => "BadRequest",
            ArmError::Conflict(_) => "Conflict",
            ArmError::ServiceUnavailable(_) => "ServiceUnavailable",
            ArmError::Throttled(_) => "TooManyRequests",
            ArmError::Duplicate { status: 409, .. } => "Conflict",
            ArmError::Duplicate { .. } => "BadRequest",
            ArmError::Refused { code, .. } => code,
        }
    }
}

/// The 404 for an account the emulator was not started with.
pub fn unknown_account(name: &str) -> Response {
    error_response(StatusCode::NOT_FOUND, "ResourceNotFound", &format!("The account '{name}' is not configured."))
}

/// Renders any ARM-style error body; the control API uses it too.
pub fn error_response(status: StatusCode, code: &str, message: &str) -> Response {
    (status, Json(json!({"error": {"code": code, "message": message}}))).into_response()
}

impl IntoResponse for ArmError {
    fn into_response(self) -> Response {
        let mut resp = error_response(self.status(), self.code(), &self.to_string());
        if let ArmError::Throttled(secs) = self {
            resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        resp
    }
}

/// Decodes `%XX` escapes in one path segment; malformed escapes are kept as they are.
pub(crate) fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned()
}

/// The parts of an ARM path under a Media Services account.
#[derive(Debug, PartialEq)]
struct ArmPath {
    subscription: String,
    resource_group: String,
    account: String,
    rest: Vec<String>,
}

fn parse_arm_path(path: &str) -> Option<ArmPath> {
    let segs: Vec<String> = path.split('/').filter(|s| !s.is_empty()).map(percent_decode).collect();
    let fixed = |i: usize, lit: &str| segs.get(i).is_some_and(|s| s.eq_ignore_ascii_case(lit));
    if segs.len() < 8
        || !fixed(0, "subscriptions")
        || !fixed(2, "resourceGroups")
        || !fixed(4, "providers")
        || !fixed(5, "Microsoft.Media")
        || !fixed(6, "mediaServices")
    {
        return None;
    }
    Some(ArmPath {
        subscription: segs[1].clone(),
        resource_group: segs[3].clone(),
        account: segs[7].clone(),
        rest: segs[8..].to_vec(),
    })
}

/// The decoded query parameters, in order.
pub(crate) fn query_pairs(uri: &Uri) -> Vec<(String, String)> {
    url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes()).into_owned().collect()
}

/// The first value of `key` (case-insensitive).
pub(crate) fn query_value<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs.iter().find(|(k, _)| k.eq_ignore_ascii_case(key)).map(|(_, v)| v.as_str())
}

/// Entry point for every request that is not a control-API call.
pub async fn handle(
    AxumState(emulator): AxumState<Arc<Emulator>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (result, events) = {
        let mut events = Vec::new();
        let r = route(&emulator, &method, &uri, &headers, &body, &mut events);
        (r, events)
    };
    if !events.is_empty() {
        emulator.dispatcher.publish(events);
    }
    match result {
        Ok(resp) => resp,
        Err(e) => {
            tracing::debug!(%method, %uri, code = e.code(), "ARM error");
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
    events: &mut Vec<EventGridEvent>,
) -> Result<Response, ArmError> {
    let no_route = || ArmError::NoRoute { method: method.to_string(), path: uri.path().to_string() };
    let path = parse_arm_path(uri.path()).ok_or_else(no_route)?;
    let query = query_pairs(uri);
    if query_value(&query, "api-version").is_none_or(str::is_empty) {
        return Err(ArmError::MissingApiVersion);
    }
    let cfg = &emulator.config;
    if !path.subscription.eq_ignore_ascii_case(&cfg.subscription) {
        return Err(ArmError::SubscriptionNotFound(path.subscription));
    }
    if !path.resource_group.eq_ignore_ascii_case(&cfg.resource_group) {
        return Err(ArmError::ResourceGroupNotFound(path.resource_group));
    }
    let mut state = emulator.lock();
    // An MK.IO project is not a Media Services account: it answers only on MK.IO's paths.
    let account = state.account_mut(&path.account).filter(|a| a.mkio.is_none()).ok_or_else(|| {
        ArmError::AccountNotFound { account: path.account.clone(), resource_group: path.resource_group.clone() }
    })?;
    account.arm_calls += 1;
    apply_fault(account)?;

    let rest: Vec<&str> = path.rest.iter().map(String::as_str).collect();
    if let Fault::Refuse { operation, status, code, message } = &account.fault {
        let this = operation_id(method, &rest);
        if operation == "*" || this.is_some_and(|op| op.eq_ignore_ascii_case(operation)) {
            return Err(ArmError::Refused {
                status: *status,
                code: code.clone(),
                message: message.clone().unwrap_or_else(|| format!("The request was refused with {code}.")),
            });
        }
    }
    let ctx = Ctx { emulator, headers, uri, query: &query };
    let account_id = ctx.account_id(account);
    let now = Utc::now();
    let is = |s: &str, lit: &str| s.eq_ignore_ascii_case(lit);
    match rest.as_slice() {
        [] => match *method {
            Method::GET => Ok(Json(account_json(&ctx, account)).into_response()),
            _ => Err(ArmError::MethodNotAllowed(method.to_string())),
        },
        [t, name] if is(t, "transforms") => match *method {
            Method::PUT => put_transform(&ctx, account, name, body, now),
            Method::GET => get_transform(&ctx, account, name),
            _ => Err(ArmError::MethodNotAllowed(method.to_string())),
        },
        [a, name] if is(a, "assets") => match *method {
            Method::PUT => put_asset(&ctx, account, name, body, now),
            Method::GET => get_asset(&ctx, account, name),
            _ => Err(ArmError::MethodNotAllowed(method.to_string())),
        },
        [a, name, action] if is(a, "assets") && is(action, "listContainerSas") => match *method {
            Method::POST => list_container_sas(&ctx, account, name, body, now),
            _ => Err(ArmError::MethodNotAllowed(method.to_string())),
        },
        [a, name, action] if is(a, "assets") && is(action, "listStreamingLocators") => match *method {
            Method::POST => streaming::asset_locators(account, name),
            _ => Err(ArmError::MethodNotAllowed(method.to_string())),
        },
        [p] if is(p, "streamingPolicies") => match *method {
            Method::GET => streaming::list_policies(&account_id, account),
            _ => Err(ArmError::MethodNotAllowed(method.to_string())),
        },
        [p, name] if is(p, "streamingPolicies") => match *method {
            Method::PUT => streaming::put_policy(&account_id, account, name, body, now, cfg.duplicate_create_status),
            Method::GET => streaming::get_policy(&account_id, account, name),
            Method::DELETE => streaming::delete_policy(account, name),
            _ => Err(ArmError::MethodNotAllowed(method.to_string())),
        },
        [p] if is(p, "contentKeyPolicies") => match *method {
            Method::GET => streaming::list_ckp(&account_id, account),
            _ => Err(ArmError::MethodNotAllowed(method.to_string())),
        },
        [p, name] if is(p, "contentKeyPolicies") => match *method {
            Method::PUT => streaming::put_ckp(&account_id, account, name, body, now),
            Method::GET => streaming::get_ckp(&account_id, account, name),
            Method::DELETE => streaming::delete_ckp(account, name),
            _ => Err(ArmError::MethodNotAllowed(method.to_string())),
        },
        [p, name, action] if is(p, "contentKeyPolicies") && is(action, "getPolicyPropertiesWithSecrets") => {
            match *method {
                Method::POST => streaming::ckp_with_secrets(account, name),
                _ => Err(ArmError::MethodNotAllowed(method.to_string())),
            }
        }
        [l] if is(l, "streamingLocators") => match *method {
            Method::GET => streaming::list_locators(&account_id, account, &query),
            _ => Err(ArmError::MethodNotAllowed(method.to_string())),
        },
        [l, name] if is(l, "streamingLocators") => match *method {
            Method::PUT => streaming::put_locator(&account_id, account, name, body, now, cfg.duplicate_create_status),
            Method::GET => streaming::get_locator(&account_id, account, name),
            Method::DELETE => streaming::delete_locator(account, name),
            _ => Err(ArmError::MethodNotAllowed(method.to_string())),
        },
        [l, name, action] if is(l, "streamingLocators") && is(action, "listPaths") => match *method {
            Method::POST => streaming::list_paths(account, name),
            _ => Err(ArmError::MethodNotAllowed(method.to_string())),
        },
        [l, name, action] if is(l, "streamingLocators") && is(action, "listContentKeys") => match *method {
            Method::POST => streaming::list_content_keys(account, name),
            _ => Err(ArmError::MethodNotAllowed(method.to_string())),
        },
        [t, transform, j] if is(t, "transforms") && is(j, "jobs") => match *method {
            Method::GET => list_jobs(&ctx, account, transform),
            _ => Err(ArmError::MethodNotAllowed(method.to_string())),
        },
        [t, transform, j, name] if is(t, "transforms") && is(j, "jobs") => match *method {
            Method::PUT => put_job(&ctx, account, transform, name, body, now),
            Method::GET => get_job(&ctx, account, transform, name),
            _ => Err(ArmError::MethodNotAllowed(method.to_string())),
        },
        [t, transform, j, name, action] if is(t, "transforms") && is(j, "jobs") && is(action, "cancelJob") => {
            match *method {
                Method::POST => cancel_job(&ctx, account, transform, name, now, events),
                _ => Err(ArmError::MethodNotAllowed(method.to_string())),
            }
        }
        _ => Err(no_route()),
    }
}

/// The operation id the REST specs give a call (`Jobs_Create`, `Assets_CreateOrUpdate`, ...), which is what
/// the `refuse` fault names.
pub(crate) fn operation_id(method: &Method, rest: &[&str]) -> Option<&'static str> {
    let is = |s: &str, lit: &str| s.eq_ignore_ascii_case(lit);
    let m = method.as_str();
    Some(match (m, rest) {
        ("GET", []) => "Mediaservices_Get",
        ("PUT", [t, _]) if is(t, "transforms") => "Transforms_CreateOrUpdate",
        ("GET", [t, _]) if is(t, "transforms") => "Transforms_Get",
        ("PUT", [a, _]) if is(a, "assets") => "Assets_CreateOrUpdate",
        ("GET", [a, _]) if is(a, "assets") => "Assets_Get",
        ("POST", [a, _, x]) if is(a, "assets") && is(x, "listContainerSas") => "Assets_ListContainerSas",
        ("POST", [a, _, x]) if is(a, "assets") && is(x, "listStreamingLocators") => "Assets_ListStreamingLocators",
        ("GET", [p]) if is(p, "streamingPolicies") => "StreamingPolicies_List",
        ("PUT", [p, _]) if is(p, "streamingPolicies") => "StreamingPolicies_Create",
        ("GET", [p, _]) if is(p, "streamingPolicies") => "StreamingPolicies_Get",
        ("DELETE", [p, _]) if is(p, "streamingPolicies") => "StreamingPolicies_Delete",
        ("GET", [p]) if is(p, "contentKeyPolicies") => "ContentKeyPolicies_List",
        ("PUT", [p, _]) if is(p, "contentKeyPolicies") => "ContentKeyPolicies_CreateOrUpdate",
        ("GET", [p, _]) if is(p, "contentKeyPolicies") => "ContentKeyPolicies_Get",
        ("DELETE", [p, _]) if is(p, "contentKeyPolicies") => "ContentKeyPolicies_Delete",
        ("POST", [p, _, _]) if is(p, "contentKeyPolicies") => "ContentKeyPolicies_GetPolicyPropertiesWithSecrets",
        ("GET", [l]) if is(l, "streamingLocators") => "StreamingLocators_List",
        ("PUT", [l, _]) if is(l, "streamingLocators") => "StreamingLocators_Create",
        ("GET", [l, _]) if is(l, "streamingLocators") => "StreamingLocators_Get",
        ("DELETE", [l, _]) if is(l, "streamingLocators") => "StreamingLocators_Delete",
        ("POST", [l, _, x]) if is(l, "streamingLocators") && is(x, "listPaths") => "StreamingLocators_ListPaths",
        ("POST", [l, _, x]) if is(l, "streamingLocators") && is(x, "listContentKeys") => {
            "StreamingLocators_ListContentKeys"
        }
        ("GET", [t, _, j]) if is(t, "transforms") && is(j, "jobs") => "Jobs_List",
        ("PUT", [t, _, j, _]) if is(t, "transforms") && is(j, "jobs") => "Jobs_Create",
        ("GET", [t, _, j, _]) if is(t, "transforms") && is(j, "jobs") => "Jobs_Get",
        ("POST", [t, _, j, _, x]) if is(t, "transforms") && is(j, "jobs") && is(x, "cancelJob") => "Jobs_CancelJob",
        _ => return None,
    })
}

/// Applies an account's fault to the current call (ARM and the v2 MRU endpoint share it).
pub(crate) fn apply_fault(account: &mut Account) -> Result<(), ArmError> {
    match &mut account.fault {
        Fault::Outage => Err(ArmError::ServiceUnavailable(account.region.clone())),
        Fault::Throttle { retry_after_seconds, count } => {
            let secs = *retry_after_seconds;
            match count {
                Some(0) => {
                    account.fault = Fault::Healthy;
                    Ok(())
                }
                Some(n) => {
                    *n -= 1;
                    if *n == 0 {
                        // The last throttled call heals the account for the next one.
                        account.fault = Fault::Healthy;
                    }
                    Err(ArmError::Throttled(secs))
                }
                None => Err(ArmError::Throttled(secs)),
            }
        }
        Fault::Healthy | Fault::Stall | Fault::FailJobs { .. } | Fault::Refuse { .. } => Ok(()),
    }
}

struct Ctx<'a> {
    emulator: &'a Emulator,
    headers: &'a HeaderMap,
    uri: &'a Uri,
    query: &'a [(String, String)],
}

impl Ctx<'_> {
    fn account_id(&self, account: &Account) -> String {
        let cfg = &self.emulator.config;
        format!(
            "/subscriptions/{}/resourceGroups/{}/providers/Microsoft.Media/mediaservices/{}",
            cfg.subscription, cfg.resource_group, account.name
        )
    }
}

/// The account resource. `apiEndpoints` is what clients use to find the v2
/// MRU endpoint (api-version 2015-10-01); `encryption` is present only on
/// accounts that scale by themselves, which is how azure-cli tells them apart.
fn account_json(ctx: &Ctx, account: &Account) -> Value {
    let cfg = &ctx.emulator.config;
    let storage_id = format!(
        "/subscriptions/{}/resourceGroups/{}/providers/Microsoft.Storage/storageAccounts/{}",
        cfg.subscription,
        cfg.resource_group,
        default_storage_account(account)
    );
    let mut props = Map::new();
    props.insert("mediaServiceId".into(), account.media_service_id.to_string().into());
    props.insert(
        "apiEndpoints".into(),
        json!([{"endpoint": mru::endpoint(&ctx.emulator.base_url, &account.name), "majorVersion": "2"}]),
    );
    props.insert("storageAccounts".into(), json!([{"id": storage_id, "type": "Primary", "isPrimary": true}]));
    if account.mru.mode == MruMode::Automatic {
        props.insert("encryption".into(), json!({"type": "SystemKey"}));
    }
    props.insert("provisioningState".into(), "Succeeded".into());
    json!({
        "id": ctx.account_id(account),
        "name": account.name,
        "type": "Microsoft.Media/mediaservices",
        "location": account.region,
        "tags": {},
        "properties": props,
    })
}

pub(crate) fn system_data(created: &DateTime<Utc>, modified: &DateTime<Utc>) -> Value {
    json!({
        "createdBy": "ams-emulator",
        "createdByType": "Application",
        "createdAt": arm_time(created),
        "lastModifiedBy": "ams-emulator",
        "lastModifiedByType": "Application",
        "lastModifiedAt": arm_time(modified),
    })
}

pub(crate) fn parse_body(body: &[u8]) -> Result<Value, ArmError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(json!({}));
    }
    let v: Value = serde_json::from_slice(body).map_err(|e| ArmError::InvalidContent(e.to_string()))?;
    if !v.is_object() {
        return Err(ArmError::InvalidContent("the body must be a JSON object".into()));
    }
    Ok(v)
}

pub(crate) fn properties(body: &Value) -> Result<&Map<String, Value>, ArmError> {
    match body.get("properties") {
        Some(Value::Object(p)) => Ok(p),
        Some(_) => Err(ArmError::BadRequest("'properties' must be an object.".into())),
        None => Err(ArmError::BadRequest("The request body must contain 'properties'.".into())),
    }
}

pub(crate) fn optional_string(props: &Map<String, Value>, key: &str) -> Result<Option<String>, ArmError> {
    match props.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(ArmError::BadRequest(format!("'{key}' must be a string."))),
    }
}

pub(crate) fn created_response(created: bool, body: Value) -> Response {
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    (status, Json(body)).into_response()
}

// ---------------------------------------------------------------- transforms

fn transform_json(ctx: &Ctx, account: &Account, t: &Transform) -> Value {
    let mut props = Map::new();
    props.insert("created".into(), arm_time(&t.created).into());
    if let Some(d) = &t.description {
        props.insert("description".into(), d.clone().into());
    }
    props.insert("lastModified".into(), arm_time(&t.last_modified).into());
    props.insert("outputs".into(), Value::Array(t.outputs.clone()));
    json!({
        "name": t.name,
        "id": format!("{}/transforms/{}", ctx.account_id(account), t.name),
        "type": "Microsoft.Media/mediaservices/transforms",
        "properties": props,
        "systemData": system_data(&t.created, &t.last_modified),
    })
}

fn put_transform(
    ctx: &Ctx,
    account: &mut Account,
    name: &str,
    body: &[u8],
    now: DateTime<Utc>,
) -> Result<Response, ArmError> {
    let body = parse_body(body)?;
    let props = properties(&body)?;
    let outputs = match props.get("outputs") {
        Some(Value::Array(o)) if !o.is_empty() => o.clone(),
        _ => return Err(ArmError::BadRequest("A transform must have at least one output.".into())),
    };
    let mut normalized = Vec::with_capacity(outputs.len());
    for (i, out) in outputs.into_iter().enumerate() {
        let Value::Object(mut out) = out else {
            return Err(ArmError::BadRequest(format!("Transform output {i} must be an object.")));
        };
        if !matches!(out.get("preset"), Some(Value::Object(p)) if p.get("@odata.type").is_some_and(Value::is_string)) {
            return Err(ArmError::BadRequest(format!(
                "Transform output {i} must have a 'preset' with an '@odata.type'."
            )));
        }
        // AMS fills these defaults in on the stored transform.
        out.entry("onError").or_insert_with(|| "StopProcessingJob".into());
        out.entry("relativePriority").or_insert_with(|| "Normal".into());
        normalized.push(Value::Object(out));
    }
    let description = optional_string(props, "description")?;
    let key = name.to_ascii_lowercase();
    let created = !account.transforms.contains_key(&key);
    let t = account.transforms.entry(key).or_insert_with(|| Transform {
        name: name.to_string(),
        outputs: Vec::new(),
        description: None,
        created: now,
        last_modified: now,
    });
    t.outputs = normalized;
    t.description = description;
    t.last_modified = now;
    let t = t.clone();
    Ok(created_response(created, transform_json(ctx, account, &t)))
}

fn get_transform(ctx: &Ctx, account: &Account, name: &str) -> Result<Response, ArmError> {
    let t = find_transform(account, name)?;
    Ok(Json(transform_json(ctx, account, t)).into_response())
}

fn find_transform<'a>(account: &'a Account, name: &str) -> Result<&'a Transform, ArmError> {
    account
        .transforms
        .get(&name.to_ascii_lowercase())
        .ok_or_else(|| ArmError::NotFound { kind: "transform", name: name.to_string() })
}

// ---------------------------------------------------------------- assets

fn asset_json(ctx: &Ctx, account: &Account, a: &Asset) -> Value {
    let mut props = Map::new();
    props.insert("assetId".into(), a.asset_id.to_string().into());
    props.insert("created".into(), arm_time(&a.created).into());
    props.insert("lastModified".into(), arm_time(&a.last_modified).into());
    if let Some(v) = &a.alternate_id {
        props.insert("alternateId".into(), v.clone().into());
    }
    if let Some(v) = &a.description {
        props.insert("description".into(), v.clone().into());
    }
    props.insert("container".into(), a.container.clone().into());
    props.insert("storageAccountName".into(), a.storage_account_name.clone().into());
    props.insert("storageEncryptionFormat".into(), "None".into());
    json!({
        "name": a.name,
        "id": format!("{}/assets/{}", ctx.account_id(account), a.name),
        "type": "Microsoft.Media/mediaservices/assets",
        "properties": props,
        "systemData": system_data(&a.created, &a.last_modified),
    })
}

/// Default storage account name for an account.
fn default_storage_account(account: &Account) -> String {
    account.storage.name.clone()
}

fn put_asset(
    ctx: &Ctx,
    account: &mut Account,
    name: &str,
    body: &[u8],
    now: DateTime<Utc>,
) -> Result<Response, ArmError> {
    let body = parse_body(body)?;
    let empty = Map::new();
    let props = match body.get("properties") {
        None => &empty,
        Some(_) => properties(&body)?,
    };
    let description = optional_string(props, "description")?;
    let alternate_id = optional_string(props, "alternateId")?;
    let container = optional_string(props, "container")?;
    let storage = optional_string(props, "storageAccountName")?;
    let key = name.to_ascii_lowercase();
    let default_storage = default_storage_account(account);
    if let Some(st) = &storage {
        if !st.eq_ignore_ascii_case(&default_storage) {
            return Err(ArmError::BadRequest(format!(
                "The storage account '{st}' is not attached to this Media Services account; use '{default_storage}'."
            )));
        }
    }
    let storage = storage.map(|s| s.to_ascii_lowercase());
    let created = !account.assets.contains_key(&key);
    if created {
        if let Some(c) = &container {
            if !valid_container_name(c) {
                return Err(ArmError::BadRequest(format!(
                    "'{c}' is not a valid container name: 3-63 lowercase letters, digits and single hyphens."
                )));
            }
            if account.assets.values().any(|a| a.container == *c) {
                return Err(ArmError::Conflict(format!("The container '{c}' already belongs to another asset.")));
            }
        }
    }
    let asset = account.assets.entry(key).or_insert_with(|| {
        let asset_id = uuid::Uuid::new_v4();
        Asset {
            name: name.to_string(),
            asset_id,
            container: container.clone().unwrap_or_else(|| format!("asset-{asset_id}")),
            storage_account_name: storage.clone().unwrap_or(default_storage),
            description: None,
            alternate_id: None,
            created: now,
            last_modified: now,
        }
    });
    // Container and storage account are fixed at creation, as in AMS.
    asset.description = description;
    asset.alternate_id = alternate_id;
    asset.last_modified = now;
    let asset = asset.clone();
    account.storage.ensure_container(&asset.container, now);
    Ok(created_response(created, asset_json(ctx, account, &asset)))
}

/// Container names: 3-63 characters, lowercase letters, digits and hyphens,
/// starting and ending with a letter or digit, no double hyphens.
fn valid_container_name(c: &str) -> bool {
    (3..=63).contains(&c.len())
        && c.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !c.starts_with('-')
        && !c.ends_with('-')
        && !c.contains("--")
}

/// `POST .../assets/{name}/listContainerSas`: two container SAS URLs, one per storage key.
fn list_container_sas(
    ctx: &Ctx,
    account: &Account,
    name: &str,
    body: &[u8],
    now: DateTime<Utc>,
) -> Result<Response, ArmError> {
    let a = account
        .assets
        .get(&name.to_ascii_lowercase())
        .ok_or_else(|| ArmError::NotFound { kind: "asset", name: name.to_string() })?;
    let body = parse_body(body)?;
    let permissions = match body.get("permissions").and_then(Value::as_str) {
        Some(p) if p.eq_ignore_ascii_case("Read") => "rl",
        Some(p) if p.eq_ignore_ascii_case("ReadWrite") => "rwl",
        Some(p) if p.eq_ignore_ascii_case("ReadWriteDelete") => "rwdl",
        Some(p) => {
            return Err(ArmError::BadRequest(format!(
                "Unknown permissions '{p}'; use Read, ReadWrite or ReadWriteDelete."
            )))
        }
        None => return Err(ArmError::BadRequest("'permissions' is required.".into())),
    };
    let expiry = body
        .get("expiryTime")
        .and_then(Value::as_str)
        .ok_or_else(|| ArmError::BadRequest("'expiryTime' is required.".into()))?;
    let expiry = DateTime::parse_from_rfc3339(expiry)
        .map_err(|_| ArmError::BadRequest(format!("'expiryTime' is not a valid UTC time: {expiry}")))?
        .with_timezone(&Utc);
    if expiry >= now + chrono::Duration::hours(24) {
        return Err(ArmError::BadRequest(
            "The SAS URL expiration time must be less than 24 hours from the current time.".into(),
        ));
    }
    let base = blob::container_url(&ctx.emulator.base_url, &account.storage.name, &a.container);
    let urls: Vec<String> = (0..2)
        .map(|k| format!("{base}?{}", account.storage.container_sas(&a.container, permissions, &expiry, k)))
        .collect();
    Ok(Json(json!({"assetContainerSasUrls": urls})).into_response())
}

fn get_asset(ctx: &Ctx, account: &Account, name: &str) -> Result<Response, ArmError> {
    let a = account
        .assets
        .get(&name.to_ascii_lowercase())
        .ok_or_else(|| ArmError::NotFound { kind: "asset", name: name.to_string() })?;
    Ok(Json(asset_json(ctx, account, a)).into_response())
}

// ---------------------------------------------------------------- jobs

/// How a job's input is shown: the create response echoes it as given, GET and list wrap it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InputForm {
    /// As the create request gave it (`examples/jobs-create.json`).
    AsGiven,
    /// Wrapped in `#Microsoft.Media.JobInputs` even for one input (`examples/jobs-get-by-name.json`).
    Wrapped,
}

/// A job input as responses show it: `JobInputHttp.baseUri` loses its query string (Encoding.json: "the
/// query strings will not be returned in service responses to prevent sensitive data exposure"), nested
/// inputs likewise. `files` are echoed as given: the spec says nothing of them.
fn shown_input(input: &Value) -> Value {
    let mut shown = input.clone();
    if let Some(base) = shown.get_mut("baseUri") {
        if let Some(plain) = base.as_str().map(|s| s.split('?').next().unwrap_or(s).to_string()) {
            *base = Value::String(plain);
        }
    }
    if let Some(inputs) = shown.get_mut("inputs").and_then(Value::as_array_mut) {
        for i in inputs.iter_mut() {
            *i = shown_input(i);
        }
    }
    shown
}

/// The job as ARM renders it (contracts 4.1), its input as `form` says.
pub fn job_json(account_id: &str, job: &Job, form: InputForm) -> Value {
    let mut props = Map::new();
    props.insert("created".into(), arm_time(&job.created).into());
    props.insert("state".into(), job.state.as_str().into());
    if let Some(d) = &job.description {
        props.insert("description".into(), d.clone().into());
    }
    let input = shown_input(&job.input);
    let input = match form {
        InputForm::Wrapped if input.get("@odata.type").and_then(Value::as_str) != Some(JOB_INPUTS) => {
            json!({ "@odata.type": JOB_INPUTS, "inputs": [input] })
        }
        _ => input,
    };
    props.insert("input".into(), input);
    props.insert("lastModified".into(), arm_time(&job.last_modified).into());
    props.insert("outputs".into(), Value::Array(job.outputs.iter().map(JobOutput::to_arm_json).collect()));
    props.insert("priority".into(), job.priority.clone().into());
    props.insert("correlationData".into(), job.correlation_json());
    if let Some(t) = &job.start_time {
        props.insert("startTime".into(), arm_time(t).into());
    }
    if let Some(t) = &job.end_time {
        props.insert("endTime".into(), arm_time(t).into());
    }
    json!({
        "name": job.name,
        "id": format!("{account_id}/transforms/{}/jobs/{}", job.transform, job.name),
        "type": "Microsoft.Media/mediaservices/transforms/jobs",
        "properties": props,
        "systemData": system_data(&job.created, &job.last_modified),
    })
}

/// Checks a job input; asset inputs must name an existing asset.
fn validate_input(account: &Account, input: &Value, depth: usize) -> Result<(), ArmError> {
    let kind = input.get("@odata.type").and_then(Value::as_str).unwrap_or("");
    match kind {
        JOB_INPUT_HTTP => {
            let files = input.get("files").and_then(Value::as_array);
            let ok =
                files.is_some_and(|f| !f.is_empty() && f.iter().all(|x| x.as_str().is_some_and(|s| !s.is_empty())));
            if ok {
                Ok(())
            } else {
                Err(ArmError::BadRequest("A JobInputHttp must list at least one file in 'files'.".into()))
            }
        }
        JOB_INPUT_ASSET => {
            let name = input
                .get("assetName")
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .ok_or_else(|| ArmError::BadRequest("A JobInputAsset requires 'assetName'.".into()))?;
            if account.assets.contains_key(&name.to_ascii_lowercase()) {
                Ok(())
            } else {
                Err(ArmError::NotFound { kind: "asset", name: name.to_string() })
            }
        }
        // The wrapped form GET returns; accepted so a job body can be replayed.
        JOB_INPUTS if depth == 0 => {
            let inputs = input
                .get("inputs")
                .and_then(Value::as_array)
                .filter(|i| !i.is_empty())
                .ok_or_else(|| ArmError::BadRequest("A JobInputs requires a non-empty 'inputs'.".into()))?;
            inputs.iter().try_for_each(|i| validate_input(account, i, depth + 1))
        }
        "" => Err(ArmError::BadRequest("The job input requires '@odata.type'.".into())),
        other => Err(ArmError::BadRequest(format!("The job input type '{other}' is not supported."))),
    }
}

fn put_job(
    ctx: &Ctx,
    account: &mut Account,
    transform: &str,
    name: &str,
    body: &[u8],
    now: DateTime<Utc>,
) -> Result<Response, ArmError> {
    let t = find_transform(account, transform)?;
    let transform_name = t.name.clone();
    let presets: Vec<String> = t
        .outputs
        .iter()
        .map(|o| {
            o.pointer("/preset/@odata.type")
                .and_then(Value::as_str)
                .map(|s| s.trim_start_matches("#Microsoft.Media.").to_string())
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| "BuiltInStandardEncoderPreset".to_string())
        })
        .collect();
    let key = (transform.to_ascii_lowercase(), name.to_ascii_lowercase());
    if account.jobs.contains_key(&key) {
        return Err(ArmError::Duplicate {
            status: ctx.emulator.config.duplicate_create_status,
            message: format!("A job with the name '{name}' already exists under transform '{transform_name}'."),
        });
    }
    let body = parse_body(body)?;
    let props = properties(&body)?;

    let input = props
        .get("input")
        .filter(|v| v.is_object())
        .ok_or_else(|| ArmError::BadRequest("The job requires an 'input' object.".into()))?;
    validate_input(account, input, 0)?;

    let raw_outputs = match props.get("outputs") {
        Some(Value::Array(o)) if !o.is_empty() => o,
        _ => return Err(ArmError::BadRequest("The job requires at least one output.".into())),
    };
    let mut outputs = Vec::with_capacity(raw_outputs.len());
    for (i, out) in raw_outputs.iter().enumerate() {
        if out.get("@odata.type").and_then(Value::as_str) != Some(JOB_OUTPUT_ASSET) {
            return Err(ArmError::BadRequest(format!("Job output {i} must be of type '{JOB_OUTPUT_ASSET}'.")));
        }
        let asset_name = out
            .get("assetName")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| ArmError::BadRequest(format!("Job output {i} requires 'assetName'.")))?;
        if !account.assets.contains_key(&asset_name.to_ascii_lowercase()) {
            // As the service answers (MicrosoftDocs/azure-docs#29409): 400, not 404.
            return Err(ArmError::BadRequest(format!(
                "Asset '{asset_name}' is not found under account '{}' when creating job.",
                account.name
            )));
        }
        let label = match out.get("label") {
            Some(Value::String(l)) if !l.is_empty() => l.clone(),
            None | Some(Value::Null) | Some(Value::String(_)) => {
                format!("{}_{i}", presets.get(i).map_or("BuiltInStandardEncoderPreset", String::as_str))
            }
            Some(_) => return Err(ArmError::BadRequest(format!("Job output {i} 'label' must be a string."))),
        };
        outputs.push(JobOutput {
            asset_name: asset_name.to_string(),
            label,
            state: JobState::Queued,
            progress: 0,
            start_time: None,
            end_time: None,
            error: None,
        });
    }
    if outputs.len() != presets.len() {
        return Err(ArmError::BadRequest(format!(
            "The job has {} outputs but transform '{transform_name}' has {}; they must match.",
            outputs.len(),
            presets.len()
        )));
    }

    let priority = match props.get("priority") {
        None | Some(Value::Null) => "Normal".to_string(),
        Some(Value::String(p)) => ["Low", "Normal", "High"]
            .into_iter()
            .find(|x| x.eq_ignore_ascii_case(p))
            .ok_or_else(|| ArmError::BadRequest(format!("Unknown priority '{p}'.")))?
            .to_string(),
        Some(_) => return Err(ArmError::BadRequest("'priority' must be a string.".into())),
    };
    let correlation_data = match props.get("correlationData") {
        None | Some(Value::Null) => BTreeMap::new(),
        Some(Value::Object(m)) => m
            .iter()
            .map(|(k, v)| match v {
                Value::String(s) => Ok((k.clone(), s.clone())),
                _ => Err(ArmError::BadRequest(format!("correlationData '{k}' must be a string."))),
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(ArmError::BadRequest("'correlationData' must be an object.".into())),
    };
    let description = optional_string(props, "description")?;

    let job = Job {
        input: input.clone(),
        outputs,
        priority,
        description,
        correlation_data,
        ..Job::queued(transform_name, name, now)
    };
    let body = job_json(&ctx.account_id(account), &job, InputForm::AsGiven);
    tracing::info!(account = %account.name, transform = %job.transform, job = %job.name, "job created");
    account.jobs.insert(key, job);
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

fn find_job<'a>(account: &'a Account, transform: &str, name: &str) -> Result<&'a Job, ArmError> {
    find_transform(account, transform)?;
    account
        .jobs
        .get(&(transform.to_ascii_lowercase(), name.to_ascii_lowercase()))
        .ok_or_else(|| ArmError::NotFound { kind: "job", name: name.to_string() })
}

fn get_job(ctx: &Ctx, account: &Account, transform: &str, name: &str) -> Result<Response, ArmError> {
    let job = find_job(account, transform, name)?;
    Ok(Json(job_json(&ctx.account_id(account), job, InputForm::Wrapped)).into_response())
}

fn cancel_job(
    ctx: &Ctx,
    account: &mut Account,
    transform: &str,
    name: &str,
    now: DateTime<Utc>,
    events: &mut Vec<EventGridEvent>,
) -> Result<Response, ArmError> {
    let source = {
        let job = find_job(account, transform, name)?;
        ctx.emulator.event_source(account, job)
    };
    let key = (transform.to_ascii_lowercase(), name.to_ascii_lowercase());
    if let Some(job) = account.jobs.get_mut(&key) {
        events.extend(lifecycle::cancel(job, now, &source));
    }
    Ok(StatusCode::OK.into_response())
}

fn list_jobs(ctx: &Ctx, account: &Account, transform: &str) -> Result<Response, ArmError> {
    let t = find_transform(account, transform)?;
    let filter = match query_value(ctx.query, "$filter").filter(|f| !f.trim().is_empty()) {
        Some(f) => Some(Filter::parse(f).map_err(|e| ArmError::BadRequest(e.to_string()))?),
        None => None,
    };
    let skip_after = query_value(ctx.query, "$skiptoken").map(str::to_string);
    let transform_key = t.name.to_ascii_lowercase();
    let page_size = ctx.emulator.config.page_size;
    let account_id = ctx.account_id(account);
    // Pages are ordered by lowercase job name and the skip token is the last
    // name of the previous page, so jobs created between pages never shift them.
    let mut matching = account
        .jobs
        .range((transform_key.clone(), String::new())..)
        .take_while(|((tk, _), _)| *tk == transform_key)
        .filter(|((_, jk), _)| skip_after.as_ref().is_none_or(|after| jk > after))
        .filter(|(_, job)| filter.as_ref().is_none_or(|f| f.matches(job)));
    let page: Vec<(&String, &Job)> = matching.by_ref().take(page_size).map(|((_, jk), job)| (jk, job)).collect();
    let more = matching.next().is_some();
    let mut body = json!({
        "value": page.iter().map(|(_, job)| job_json(&account_id, job, InputForm::Wrapped)).collect::<Vec<_>>(),
    });
    if more {
        if let Some((last, _)) = page.last() {
            body["@odata.nextLink"] = next_link(ctx, last).into();
        }
    }
    Ok(Json(body).into_response())
}

fn next_link(ctx: &Ctx, last: &str) -> String {
    let host = ctx.headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("127.0.0.1");
    let mut query: Vec<String> = ctx
        .query
        .iter()
        .filter(|(k, _)| !k.eq_ignore_ascii_case("$skiptoken"))
        .map(|(k, v)| format!("{}={}", encode_query_part(k), encode_query_part(v)))
        .collect();
    query.push(format!("$skiptoken={}", encode_query_part(last)));
    format!("http://{host}{}?{}", ctx.uri.path(), query.join("&"))
}

/// Percent-encodes a query key or value the way ARM links read: `$filter`,
/// quotes and slashes stay literal, spaces become `%20` (never `+`).
fn encode_query_part(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/:@!$'()*,;".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arm_paths_match_fixed_segments_case_insensitively() {
        let p = parse_arm_path(
            "/subscriptions/s/RESOURCEGROUPS/rg/Providers/microsoft.media/mediaservices/Acct/transforms/t%20x",
        )
        .unwrap();
        assert_eq!(p.subscription, "s");
        assert_eq!(p.resource_group, "rg");
        assert_eq!(p.account, "Acct");
        assert_eq!(p.rest, vec!["transforms".to_string(), "t x".to_string()]);
        assert!(parse_arm_path("/subscriptions/s/resourceGroups/rg/providers/Microsoft.Storage/x/y").is_none());
        assert!(parse_arm_path("/").is_none());
    }

    #[test]
    fn query_parts_keep_odata_punctuation_and_encode_spaces() {
        assert_eq!(
            encode_query_part("properties/state eq Microsoft.Media.JobState'X'"),
            "properties/state%20eq%20Microsoft.Media.JobState'X'"
        );
        assert_eq!(encode_query_part("a+b&c=d"), "a%2Bb%26c%3Dd");
        assert_eq!(encode_query_part("$skiptoken"), "$skiptoken");
    }

    #[test]
    fn percent_decoding_keeps_malformed_escapes() {
        assert_eq!(percent_decode("a%2Fb"), "a/b");
        assert_eq!(percent_decode("a%zz"), "a%zz");
        assert_eq!(percent_decode("50%"), "50%");
    }

    #[test]
    fn fault_throttle_counts_down_and_heals() {
        let mut a = Account::new("a", "r");
        a.fault = Fault::Throttle { retry_after_seconds: 3, count: Some(2) };
        assert!(matches!(apply_fault(&mut a), Err(ArmError::Throttled(3))));
        assert!(matches!(apply_fault(&mut a), Err(ArmError::Throttled(3))));
        assert!(apply_fault(&mut a).is_ok());
        assert_eq!(a.fault, Fault::Healthy);
    }
}
