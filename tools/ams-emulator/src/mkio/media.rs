//! MK.IO's media API for encoding: transforms, jobs, assets as pointers into registered storage, and the
//! storage registrations themselves. Publication (policies, locators) is in `publish`.
//!
//! Where MK.IO differs from Media Services, and this module follows MK.IO:
//! - a transform has exactly one output and uses MK.IO's built-in preset names;
//! - a job's input is one `JobInputHttp` or `JobInputAsset` (no `JobInputs`), and GET shows it as given;
//! - a job's output asset need not exist: the job creates it in the project's default storage;
//! - `JobError` has no `details`;
//! - an asset names a registered storage and a container; a missing container is created.

use std::collections::BTreeMap;

use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};

use super::lists;
use super::project::RegisteredStorage;
use super::{check_name, deleted, optional_str, parse_body, system_data, Ctx, MkioError};
use crate::blob::valid_container_name;
use crate::filter::Filter;
use crate::lifecycle;
use crate::model::{
    Account, Asset, Job, JobOutput, JobState, Transform, JOB_INPUT_ASSET, JOB_INPUT_HTTP, JOB_OUTPUT_ASSET,
};
use crate::storage::Permission;
use crate::timefmt::arm_time;

/// `presetName`s of `#Microsoft.Media.BuiltInStandardEncoderPreset` MK.IO lists (media-api.json
/// `BuiltInStandardEncoderPreset`; the docs' transforms-and-jobs guide).
pub const ENCODER_PRESETS: [&str; 13] = [
    "H264SingleBitrateSD",
    "H264SingleBitrate720p",
    "H264SingleBitrate1080p",
    "H264MultipleBitrateSD",
    "H264MultipleBitrate720p",
    "H264MultipleBitrate1080p",
    "H264MultipleBitrateSDWithCVQ",
    "H264MultipleBitrate720pWithCVQ",
    "H264MultipleBitrate1080pWithCVQ",
    "H265SingleBitrate720p",
    "H265SingleBitrate1080p",
    "H265SingleBitrate4K",
    "AACGoodQualityAudio",
];

/// `presetName`s of `BuiltInAssetConverterPreset` (media-api.json).
pub const CONVERTER_PRESETS: [&str; 3] =
    ["CopyTopBitrateInterleaved", "CopyAllBitrateNonInterleaved", "CopyAllBitrateInterleaved"];

/// Preset `@odata.type`s a transform output may use (media-api.json `TransformOutput.preset`).
const PRESET_TYPES: [&str; 7] = [
    "#Microsoft.Media.BuiltInStandardEncoderPreset",
    "#Microsoft.Media.BuiltInAssetConverterPreset",
    "#MediaKind.BuiltInAssetConverterPreset",
    "#MediaKind.EncoderPreset",
    "#MediaKind.ThumbnailGeneratorPreset",
    "#MediaKind.TrackInserterPreset",
    "#MediaKind.AIPipelinePreset",
];

/// Routes `/api/v1/projects/{p}/media/...`.
pub fn route(
    ctx: &Ctx,
    account: &mut Account,
    method: &Method,
    rest: &[&str],
    body: &[u8],
) -> Result<Response, MkioError> {
    let is = |s: &str, lit: &str| s.eq_ignore_ascii_case(lit);
    let wrong = || Err(MkioError::method_not_allowed(method.as_str()));
    match rest {
        [t] if is(t, "transforms") => match *method {
            Method::GET => list_transforms(ctx, account),
            _ => wrong(),
        },
        [t, name] if is(t, "transforms") => match *method {
            Method::PUT => put_transform(ctx, account, name, body),
            Method::GET => Ok(Json(transform_json(ctx, find_transform(account, name)?)).into_response()),
            Method::DELETE => delete_transform(account, name),
            _ => wrong(),
        },
        [j] if is(j, "jobs") => match *method {
            Method::GET => list_jobs(ctx, account, None),
            _ => wrong(),
        },
        [t, transform, j] if is(t, "transforms") && is(j, "jobs") => match *method {
            Method::GET => list_jobs(ctx, account, Some(transform)),
            _ => wrong(),
        },
        [t, transform, j, name] if is(t, "transforms") && is(j, "jobs") => match *method {
            Method::PUT => put_job(ctx, account, transform, name, body),
            Method::GET => Ok(Json(job_json(&ctx.media_path(), find_job(account, transform, name)?)).into_response()),
            Method::PATCH => patch_job(ctx, account, transform, name, body),
            Method::DELETE => delete_job(account, transform, name),
            _ => wrong(),
        },
        [t, transform, j, name, action] if is(t, "transforms") && is(j, "jobs") && is(action, "cancelJob") => {
            match *method {
                Method::POST => cancel_job(ctx, account, transform, name),
                _ => wrong(),
            }
        }
        [t, transform, j, name, s] if is(t, "transforms") && is(j, "jobs") && is(s, "state") => match *method {
            // media-api.json: `GET .../state` answers `{"status": {"state"}}`.
            Method::GET => {
                let job = find_job(account, transform, name)?;
                Ok(Json(json!({"status": {"state": job.state.as_str()}})).into_response())
            }
            _ => wrong(),
        },
        [a] if is(a, "assets") => match *method {
            Method::GET => list_assets(ctx, account),
            _ => wrong(),
        },
        [a, name] if is(a, "assets") => match *method {
            Method::PUT => put_asset(ctx, account, name, body),
            Method::GET => {
                let asset = find_asset(account, name)?;
                Ok(Json(asset_json(ctx, account, asset)).into_response())
            }
            Method::DELETE => delete_asset(account, name),
            _ => wrong(),
        },
        [s] if is(s, "storage") => match *method {
            Method::GET => list_storage(ctx, account),
            _ => wrong(),
        },
        [s, name] if is(s, "storage") => match *method {
            Method::PUT => put_storage(ctx, account, name, body),
            Method::GET => {
                let p = project(account)?;
                let st =
                    p.storages.get(&name.to_ascii_lowercase()).ok_or_else(|| MkioError::not_found("storage", name))?;
                Ok(Json(storage_json(&account.region, st)).into_response())
            }
            Method::DELETE => delete_storage(account, name),
            _ => wrong(),
        },
        _ => super::publish::route(ctx, account, method, rest, body),
    }
}

fn project(account: &Account) -> Result<&super::Project, MkioError> {
    account.mkio.as_ref().ok_or_else(|| MkioError::not_found("project", &account.name))
}

fn project_mut(account: &mut Account) -> Result<&mut super::Project, MkioError> {
    let name = account.name.clone();
    account.mkio.as_mut().ok_or_else(|| MkioError::not_found("project", &name))
}

fn properties(body: &Value) -> Result<&Map<String, Value>, MkioError> {
    match body.get("properties") {
        Some(Value::Object(p)) => Ok(p),
        Some(_) => Err(MkioError::bad_request("'properties' must be an object.")),
        None => Err(MkioError::bad_request("The request body must contain 'properties'.")),
    }
}

fn prop_str(props: &Map<String, Value>, key: &str) -> Result<Option<String>, MkioError> {
    match props.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(MkioError::bad_request(format!("'properties.{key}' must be a string."))),
    }
}

// ---------------------------------------------------------------- transforms

fn transform_json(ctx: &Ctx, t: &Transform) -> Value {
    let mut props = Map::new();
    props.insert("created".into(), arm_time(&t.created).into());
    if let Some(d) = &t.description {
        props.insert("description".into(), d.clone().into());
    }
    props.insert("lastModified".into(), arm_time(&t.last_modified).into());
    props.insert("outputs".into(), Value::Array(t.outputs.clone()));
    let id = format!("{}/transforms/{}", ctx.media_path(), t.name);
    json!({
        "name": t.name,
        "id": id,
        "type": "Microsoft.Media/mediaservices/transforms",
        "properties": props,
        "systemData": system_data(&id.to_ascii_lowercase(), &t.created, &t.last_modified),
    })
}

/// Checks one transform output's preset against what MK.IO lists.
fn check_preset(i: usize, preset: Option<&Value>) -> Result<(), MkioError> {
    let kind = preset.and_then(|p| p.get("@odata.type")).and_then(Value::as_str).ok_or_else(|| {
        MkioError::bad_request(format!("Transform output {i} must have a 'preset' with an '@odata.type'."))
    })?;
    if !PRESET_TYPES.contains(&kind) {
        return Err(MkioError::bad_request(format!(
            "The preset type '{kind}' is not supported; use one of {}.",
            PRESET_TYPES.join(", ")
        )));
    }
    let name = preset.and_then(|p| p.get("presetName")).and_then(Value::as_str);
    let allowed: &[&str] = match kind {
        "#Microsoft.Media.BuiltInStandardEncoderPreset" => &ENCODER_PRESETS,
        "#Microsoft.Media.BuiltInAssetConverterPreset" | "#MediaKind.BuiltInAssetConverterPreset" => &CONVERTER_PRESETS,
        _ => return Ok(()),
    };
    match name {
        Some(n) if allowed.iter().any(|a| a.eq_ignore_ascii_case(n)) => Ok(()),
        Some(n) => Err(MkioError::bad_request(format!(
            "The preset name '{n}' is not an MK.IO built-in preset; use one of {}.",
            allowed.join(", ")
        ))),
        None => Err(MkioError::bad_request(format!("Transform output {i} requires 'preset.presetName'."))),
    }
}

fn put_transform(ctx: &Ctx, account: &mut Account, name: &str, body: &[u8]) -> Result<Response, MkioError> {
    check_name("transform", name)?;
    let body = parse_body(body)?;
    let props = properties(&body)?;
    let outputs = match props.get("outputs") {
        Some(Value::Array(o)) => o.clone(),
        _ => return Err(MkioError::bad_request("A transform requires 'properties.outputs'.")),
    };
    // media-api.json: "An array of TransformOutputs ... Currently limited to one."
    if outputs.len() != 1 {
        return Err(MkioError::bad_request(format!(
            "A transform must have exactly one output; {} were given.",
            outputs.len()
        )));
    }
    let mut normalized = Vec::with_capacity(1);
    for (i, out) in outputs.into_iter().enumerate() {
        let Value::Object(mut out) = out else {
            return Err(MkioError::bad_request(format!("Transform output {i} must be an object.")));
        };
        check_preset(i, out.get("preset"))?;
        out.entry("onError").or_insert_with(|| "StopProcessingJob".into());
        out.entry("relativePriority").or_insert_with(|| "Normal".into());
        normalized.push(Value::Object(out));
    }
    let description = prop_str(props, "description")?;
    let key = name.to_ascii_lowercase();
    let created = !account.transforms.contains_key(&key);
    let now = ctx.now;
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
    let out = transform_json(ctx, t);
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(out)).into_response())
}

fn find_transform<'a>(account: &'a Account, name: &str) -> Result<&'a Transform, MkioError> {
    account.transforms.get(&name.to_ascii_lowercase()).ok_or_else(|| MkioError::not_found("transform", name))
}

fn delete_transform(account: &mut Account, name: &str) -> Result<Response, MkioError> {
    let key = name.to_ascii_lowercase();
    let existed = account.transforms.remove(&key).is_some();
    // A transform's jobs go with it: they cannot be reached without it.
    account.jobs.retain(|(t, _), _| *t != key);
    Ok(deleted(existed))
}

fn list_transforms(ctx: &Ctx, account: &Account) -> Result<Response, MkioError> {
    lists::refuse_unsupported(ctx, &["$filter", "$orderby"])?;
    let items = account.transforms.values().map(|t| transform_json(ctx, t)).collect();
    lists::page(ctx, "Transform", "transforms", items)
}

// ---------------------------------------------------------------- jobs

/// The input as MK.IO shows it: as given, except that `baseUri` loses its query string (a SAS is a secret).
fn shown_input(input: &Value) -> Value {
    let mut shown = input.clone();
    if let Some(base) = shown.get_mut("baseUri") {
        if let Some(plain) = base.as_str().map(|s| s.split('?').next().unwrap_or(s).to_string()) {
            *base = Value::String(plain);
        }
    }
    shown
}

/// One job output; `error` has no `details` (media-api.json `JobError`).
fn output_json(o: &JobOutput) -> Value {
    let mut m = Map::new();
    m.insert("@odata.type".into(), JOB_OUTPUT_ASSET.into());
    m.insert("assetName".into(), o.asset_name.clone().into());
    m.insert("label".into(), o.label.clone().into());
    m.insert("state".into(), o.state.as_str().into());
    m.insert("progress".into(), o.progress.into());
    if let Some(t) = &o.start_time {
        m.insert("startTime".into(), arm_time(t).into());
    }
    if let Some(t) = &o.end_time {
        m.insert("endTime".into(), arm_time(t).into());
    }
    if let Some(e) = &o.error {
        let retry = serde_json::to_value(e.retry).unwrap_or(Value::Null);
        m.insert("error".into(), json!({"category": e.category, "code": e.code, "message": e.message, "retry": retry}));
    }
    Value::Object(m)
}

/// The job as MK.IO's GET returns it; webhook events carry the same object.
pub fn job_json(media_path: &str, job: &Job) -> Value {
    let mut props = Map::new();
    props.insert("correlationData".into(), job.correlation_json());
    props.insert("created".into(), arm_time(&job.created).into());
    if let Some(d) = &job.description {
        props.insert("description".into(), d.clone().into());
    }
    if let Some(t) = &job.end_time {
        props.insert("endTime".into(), arm_time(t).into());
    }
    props.insert("input".into(), shown_input(&job.input));
    props.insert("lastModified".into(), arm_time(&job.last_modified).into());
    props.insert("outputs".into(), Value::Array(job.outputs.iter().map(output_json).collect()));
    props.insert("priority".into(), job.priority.clone().into());
    if let Some(t) = &job.start_time {
        props.insert("startTime".into(), arm_time(t).into());
    }
    props.insert("state".into(), job.state.as_str().into());
    let id = format!("{media_path}/transforms/{}/jobs/{}", job.transform, job.name);
    json!({
        "name": job.name,
        "id": id,
        "type": "Microsoft.Media/mediaservices/transforms/jobs",
        "properties": props,
        "systemData": system_data(&id.to_ascii_lowercase(), &job.created, &job.last_modified),
    })
}

fn find_job<'a>(account: &'a Account, transform: &str, name: &str) -> Result<&'a Job, MkioError> {
    find_transform(account, transform)?;
    account
        .jobs
        .get(&(transform.to_ascii_lowercase(), name.to_ascii_lowercase()))
        .ok_or_else(|| MkioError::not_found("job", name))
}

fn validate_input(account: &Account, input: &Value) -> Result<(), MkioError> {
    match input.get("@odata.type").and_then(Value::as_str).unwrap_or("") {
        JOB_INPUT_HTTP => {
            let files = input.get("files").and_then(Value::as_array);
            if files.is_some_and(|f| !f.is_empty() && f.iter().all(|x| x.as_str().is_some_and(|s| !s.is_empty()))) {
                Ok(())
            } else {
                Err(MkioError::bad_request("A JobInputHttp requires at least one file in 'files'."))
            }
        }
        JOB_INPUT_ASSET => {
            let name = input
                .get("assetName")
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .ok_or_else(|| MkioError::bad_request("A JobInputAsset requires 'assetName'."))?;
            find_asset(account, name).map(|_| ())
        }
        "" => Err(MkioError::bad_request("The job input requires '@odata.type'.")),
        other => Err(MkioError::bad_request(format!(
            "The job input type '{other}' is not supported; use {JOB_INPUT_HTTP} or {JOB_INPUT_ASSET}."
        ))),
    }
}

fn priority(props: &Map<String, Value>) -> Result<Option<String>, MkioError> {
    match props.get("priority") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(p)) => ["Low", "Normal", "High"]
            .into_iter()
            .find(|x| x.eq_ignore_ascii_case(p))
            .map(|x| Some(x.to_string()))
            .ok_or_else(|| MkioError::bad_request(format!("Unknown priority '{p}'; use High, Normal or Low."))),
        Some(_) => Err(MkioError::bad_request("'priority' must be a string.")),
    }
}

fn correlation(props: &Map<String, Value>) -> Result<Option<BTreeMap<String, String>>, MkioError> {
    match props.get("correlationData") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(m)) => m
            .iter()
            .map(|(k, v)| match v {
                Value::String(s) => Ok((k.clone(), s.clone())),
                _ => Err(MkioError::bad_request(format!("correlationData '{k}' must be a string."))),
            })
            .collect::<Result<_, _>>()
            .map(Some),
        Some(_) => Err(MkioError::bad_request("'correlationData' must be an object.")),
    }
}

/// Creates `name` as a pointer into the project's default storage, for a job whose output asset does not
/// exist yet (docs: the job creates it).
fn create_output_asset(account: &mut Account, name: &str, now: DateTime<Utc>) -> Result<(), MkioError> {
    let project_name = account.name.clone();
    let p = project(account)?;
    let storage = p
        .default_storage
        .as_ref()
        .and_then(|k| p.storages.get(k))
        .map(|s| s.name.clone())
        .ok_or_else(|| {
            MkioError::bad_request(format!(
                "The output asset '{name}' does not exist and project '{project_name}' has no storage registered to create it in."
            ))
        })?;
    let asset_id = uuid::Uuid::new_v4();
    let container = format!("asset-{asset_id}");
    account.storage.ensure_container(&container, now);
    account.assets.insert(
        name.to_ascii_lowercase(),
        Asset {
            name: name.to_string(),
            asset_id,
            container,
            storage_account_name: storage,
            description: None,
            alternate_id: None,
            created: now,
            last_modified: now,
        },
    );
    tracing::info!(project = %project_name, asset = name, "output asset created by the job");
    Ok(())
}

fn put_job(ctx: &Ctx, account: &mut Account, transform: &str, name: &str, body: &[u8]) -> Result<Response, MkioError> {
    let t = find_transform(account, transform)?;
    let transform_name = t.name.clone();
    let presets: Vec<String> = t
        .outputs
        .iter()
        .map(|o| o.pointer("/preset/presetName").and_then(Value::as_str).unwrap_or("Preset").to_string())
        .collect();
    check_name("job", name)?;
    let key = (transform.to_ascii_lowercase(), name.to_ascii_lowercase());
    if account.jobs.contains_key(&key) {
        return Err(MkioError::already_exists(ctx.emulator.config.mkio.duplicate_status, "job", name));
    }
    let body = parse_body(body)?;
    let props = properties(&body)?;
    let input = props
        .get("input")
        .filter(|v| v.is_object())
        .ok_or_else(|| MkioError::bad_request("The job requires an 'input' object."))?
        .clone();
    validate_input(account, &input)?;
    let raw_outputs = match props.get("outputs") {
        Some(Value::Array(o)) if !o.is_empty() => o.clone(),
        _ => return Err(MkioError::bad_request("The job requires at least one output.")),
    };
    if raw_outputs.len() != presets.len() {
        return Err(MkioError::bad_request(format!(
            "The job has {} outputs but transform '{transform_name}' has {}; they must match.",
            raw_outputs.len(),
            presets.len()
        )));
    }
    let priority = priority(props)?.unwrap_or_else(|| "Normal".into());
    let correlation_data = correlation(props)?.unwrap_or_default();
    let description = prop_str(props, "description")?;
    // Validate every output before creating any asset, so a refused job leaves nothing behind.
    let mut wanted = Vec::with_capacity(raw_outputs.len());
    for (i, out) in raw_outputs.iter().enumerate() {
        if out.get("@odata.type").and_then(Value::as_str) != Some(JOB_OUTPUT_ASSET) {
            return Err(MkioError::bad_request(format!("Job output {i} must be of type '{JOB_OUTPUT_ASSET}'.")));
        }
        let asset_name = out
            .get("assetName")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| MkioError::bad_request(format!("Job output {i} requires 'assetName'.")))?;
        check_name("asset", asset_name)?;
        let label = match out.get("label") {
            Some(Value::String(l)) if !l.is_empty() => l.clone(),
            None | Some(Value::Null) | Some(Value::String(_)) => format!("{}_{i}", presets[i]),
            Some(_) => return Err(MkioError::bad_request(format!("Job output {i} 'label' must be a string."))),
        };
        wanted.push((asset_name.to_string(), label));
    }
    if wanted.iter().any(|(a, _)| !account.assets.contains_key(&a.to_ascii_lowercase()))
        && project(account)?.default_storage.is_none()
    {
        let missing = wanted.iter().find(|(a, _)| !account.assets.contains_key(&a.to_ascii_lowercase()));
        let name = missing.map_or("", |(a, _)| a.as_str());
        return Err(MkioError::bad_request(format!(
            "The output asset '{name}' does not exist and project '{}' has no storage registered to create it in.",
            account.name
        )));
    }
    let mut outputs = Vec::with_capacity(wanted.len());
    for (asset_name, label) in wanted {
        if !account.assets.contains_key(&asset_name.to_ascii_lowercase()) {
            create_output_asset(account, &asset_name, ctx.now)?;
        }
        outputs.push(JobOutput {
            asset_name,
            label,
            state: JobState::Queued,
            progress: 0,
            start_time: None,
            end_time: None,
            error: None,
        });
    }
    let job =
        Job { input, outputs, priority, description, correlation_data, ..Job::queued(transform_name, name, ctx.now) };
    let out = job_json(&ctx.media_path(), &job);
    tracing::info!(project = %account.name, transform = %job.transform, job = %job.name, "job created");
    account.jobs.insert(key, job);
    Ok((StatusCode::CREATED, Json(out)).into_response())
}

/// PATCH changes only `description`, `priority` and `correlationData` (media-api.json, "Update a Job").
fn patch_job(
    ctx: &Ctx,
    account: &mut Account,
    transform: &str,
    name: &str,
    body: &[u8],
) -> Result<Response, MkioError> {
    find_job(account, transform, name)?;
    let body = parse_body(body)?;
    let props = properties(&body)?;
    let priority = priority(props)?;
    let correlation_data = correlation(props)?;
    let description = prop_str(props, "description")?;
    let key = (transform.to_ascii_lowercase(), name.to_ascii_lowercase());
    let job = account.jobs.get_mut(&key).ok_or_else(|| MkioError::not_found("job", name))?;
    if let Some(p) = priority {
        job.priority = p;
    }
    if let Some(c) = correlation_data {
        job.correlation_data = c;
    }
    if description.is_some() {
        job.description = description;
    }
    job.last_modified = ctx.now;
    Ok(Json(job_json(&ctx.media_path(), job)).into_response())
}

fn delete_job(account: &mut Account, transform: &str, name: &str) -> Result<Response, MkioError> {
    find_transform(account, transform)?;
    let existed = account.jobs.remove(&(transform.to_ascii_lowercase(), name.to_ascii_lowercase())).is_some();
    Ok(deleted(existed))
}

fn cancel_job(ctx: &Ctx, account: &mut Account, transform: &str, name: &str) -> Result<Response, MkioError> {
    let source = ctx.emulator.event_source(account, find_job(account, transform, name)?);
    if let Some(job) = account.jobs.get_mut(&(transform.to_ascii_lowercase(), name.to_ascii_lowercase())) {
        // The Event Grid events the shared lifecycle raises are not MK.IO's; webhooks come from the ticker.
        let _ = lifecycle::cancel(job, ctx.now, &source);
    }
    Ok(StatusCode::OK.into_response())
}

/// Sort key for `$orderby` on job lists.
fn order_jobs(jobs: &mut [&Job], orderby: Option<&str>) -> Result<(), MkioError> {
    let Some(spec) = orderby.map(str::trim).filter(|s| !s.is_empty()) else {
        // MK.IO documents no default order; oldest first keeps offsets stable while jobs are added.
        jobs.sort_by(|a, b| (a.created, &a.transform, &a.name).cmp(&(b.created, &b.transform, &b.name)));
        return Ok(());
    };
    let mut parts = spec.split_whitespace();
    let field = parts.next().unwrap_or("").to_ascii_lowercase();
    let desc = match parts.next().map(str::to_ascii_lowercase).as_deref() {
        None | Some("asc") => false,
        Some("desc") => true,
        Some(other) => return Err(MkioError::bad_request(format!("Unknown $orderby direction '{other}'."))),
    };
    match field.as_str() {
        "name" => jobs.sort_by_key(|j| j.name.to_ascii_lowercase()),
        "created" | "properties/created" => jobs.sort_by_key(|j| j.created),
        "updated" | "properties/lastmodified" => jobs.sort_by_key(|j| j.last_modified),
        "properties/state" => jobs.sort_by_key(|j| j.state.as_str()),
        other => return Err(MkioError::bad_request(format!("$orderby on '{other}' is not supported."))),
    }
    if desc {
        jobs.reverse();
    }
    Ok(())
}

fn list_jobs(ctx: &Ctx, account: &Account, transform: Option<&str>) -> Result<Response, MkioError> {
    if let Some(t) = transform {
        find_transform(account, t)?;
    }
    let filter = match ctx.query_value("$filter").filter(|f| !f.trim().is_empty()) {
        Some(f) => Some(Filter::parse_mkio(f).map_err(|e| MkioError::bad_request(format!("Invalid $filter: {e}")))?),
        None => None,
    };
    let mut jobs: Vec<&Job> = account
        .jobs
        .iter()
        .filter(|((tk, _), _)| transform.is_none_or(|t| t.eq_ignore_ascii_case(tk)))
        .map(|(_, j)| j)
        .filter(|j| filter.as_ref().is_none_or(|f| f.matches(j)))
        .collect();
    order_jobs(&mut jobs, ctx.query_value("$orderby"))?;
    let media = ctx.media_path();
    let items = jobs.into_iter().map(|j| job_json(&media, j)).collect();
    lists::page(ctx, "Job", "jobs", items)
}

// ---------------------------------------------------------------- assets

fn find_asset<'a>(account: &'a Account, name: &str) -> Result<&'a Asset, MkioError> {
    account.assets.get(&name.to_ascii_lowercase()).ok_or_else(|| MkioError::not_found("asset", name))
}

fn asset_json(ctx: &Ctx, account: &Account, a: &Asset) -> Value {
    let mut props = Map::new();
    if let Some(v) = &a.alternate_id {
        props.insert("alternateId".into(), v.clone().into());
    }
    props.insert("assetId".into(), a.asset_id.to_string().into());
    props.insert("container".into(), a.container.clone().into());
    if let Some(policy) = account.mkio.as_ref().and_then(|p| p.deletion_policies.get(&a.name.to_ascii_lowercase())) {
        props.insert("containerDeletionPolicy".into(), policy.clone().into());
    }
    props.insert("created".into(), arm_time(&a.created).into());
    if let Some(v) = &a.description {
        props.insert("description".into(), v.clone().into());
    }
    props.insert("lastModified".into(), arm_time(&a.last_modified).into());
    props.insert("storageAccountName".into(), a.storage_account_name.clone().into());
    props.insert("storageEncryptionFormat".into(), "None".into());
    let id = format!("{}/assets/{}", ctx.media_path(), a.name);
    json!({
        "name": a.name,
        "id": id,
        "type": "Microsoft.Media/mediaservices/assets",
        "labels": {},
        "properties": props,
        "systemData": system_data(&id.to_ascii_lowercase(), &a.created, &a.last_modified),
    })
}

fn put_asset(ctx: &Ctx, account: &mut Account, name: &str, body: &[u8]) -> Result<Response, MkioError> {
    check_name("asset", name)?;
    let body = parse_body(body)?;
    let props = properties(&body)?;
    let storage = prop_str(props, "storageAccountName")?
        .filter(|s| !s.is_empty())
        .ok_or_else(|| MkioError::bad_request("An asset requires 'properties.storageAccountName'."))?;
    let container = prop_str(props, "container")?;
    let description = prop_str(props, "description")?;
    let alternate_id = prop_str(props, "alternateId")?;
    let policy = match prop_str(props, "containerDeletionPolicy")? {
        None => None,
        Some(p) if p == "Delete" || p == "Retain" => Some(p),
        Some(p) => {
            return Err(MkioError::bad_request(format!("Unknown containerDeletionPolicy '{p}'; use Delete or Retain.")))
        }
    };
    let registered =
        project(account)?.storages.get(&storage.to_ascii_lowercase()).map(|s| s.name.clone()).ok_or_else(|| {
            MkioError::bad_request(format!("The storage '{storage}' is not registered in project '{}'.", account.name))
        })?;
    let key = name.to_ascii_lowercase();
    if let Some(existing) = account.assets.get_mut(&key) {
        // media-api.json: "When updating an asset, only the description column can be updated."
        let moved = !existing.storage_account_name.eq_ignore_ascii_case(&registered)
            || container.as_ref().is_some_and(|c| *c != existing.container);
        if moved {
            return Err(MkioError::bad_request(format!(
                "The asset '{name}' already points at '{}/{}'; only its description can be updated.",
                existing.storage_account_name, existing.container
            )));
        }
        existing.description = description;
        existing.last_modified = ctx.now;
        if let Some(p) = policy {
            project_mut(account)?.deletion_policies.insert(key.clone(), p);
        }
        let asset = find_asset(account, name)?;
        return Ok(Json(asset_json(ctx, account, asset)).into_response());
    }
    if let Some(c) = &container {
        if !valid_container_name(c) {
            return Err(MkioError::bad_request(format!(
                "'{c}' is not a valid container name: 3-63 lowercase letters, digits and single hyphens."
            )));
        }
        // media-api.json: an asset "needs to have a unique container & storage account within the project".
        if let Some(owner) = account.assets.values().find(|a| a.container == *c) {
            return Err(MkioError::new(
                StatusCode::CONFLICT,
                "Conflict",
                format!("The container '{c}' is already used by asset '{}'.", owner.name),
            ));
        }
    }
    let asset_id = uuid::Uuid::new_v4();
    let container = container.unwrap_or_else(|| format!("asset-{asset_id}"));
    // An asset is a pointer: an existing container (say, one a client copied blobs into) is used as it is,
    // a missing one is created.
    account.storage.ensure_container(&container, ctx.now);
    account.assets.insert(
        key.clone(),
        Asset {
            name: name.to_string(),
            asset_id,
            container,
            storage_account_name: registered,
            description,
            alternate_id,
            created: ctx.now,
            last_modified: ctx.now,
        },
    );
    if let Some(p) = policy {
        project_mut(account)?.deletion_policies.insert(key, p);
    }
    let asset = find_asset(account, name)?;
    Ok((StatusCode::CREATED, Json(asset_json(ctx, account, asset))).into_response())
}

/// DELETE removes the record; the container goes too only under `containerDeletionPolicy: Delete`
/// (media-api.json: "If left blank, the default behavior of the system will be to retain content").
fn delete_asset(account: &mut Account, name: &str) -> Result<Response, MkioError> {
    let key = name.to_ascii_lowercase();
    let Some(asset) = account.assets.remove(&key) else {
        return Ok(deleted(false));
    };
    let policy = project_mut(account)?.deletion_policies.remove(&key);
    if policy.as_deref() == Some("Delete") {
        account.storage.containers.remove(&asset.container);
        account.storage.pending.retain(|p| p.container != asset.container);
    }
    Ok(deleted(true))
}

fn list_assets(ctx: &Ctx, account: &Account) -> Result<Response, MkioError> {
    lists::refuse_unsupported(ctx, &["$filter", "$orderby"])?;
    let items = account.assets.values().map(|a| asset_json(ctx, account, a)).collect();
    lists::page(ctx, "Asset", "assets", items)
}

// ---------------------------------------------------------------- storage registration

/// A SAS with its secret signature masked, as GET shows a credential ("secret data will be sanitized").
fn masked_sas(sas: &str) -> String {
    let query = sas.trim_start_matches('?');
    let parts: Vec<String> = url::form_urlencoded::parse(query.as_bytes())
        .map(|(k, v)| if k == "sig" { format!("{k}=********") } else { format!("{k}={v}") })
        .collect();
    format!("?{}", parts.join("&"))
}

fn storage_json(location: &str, s: &RegisteredStorage) -> Value {
    json!({
        "kind": "StorageAccount",
        "metadata": {
            "id": s.id.to_string(),
            "name": s.name,
            "created": arm_time(&s.created),
            "updated": arm_time(&s.updated),
        },
        "spec": {
            "type": "Microsoft.Storage",
            "url": s.url,
            "description": s.description,
            "region": location,
            "credential": {
                "sasToken": masked_sas(&s.sas_token),
                "signedStart": s.signed_start,
                "signedExpiry": s.signed_expiry,
            },
        },
        "status": {"activeCredentialId": s.credential_id.to_string()},
    })
}

/// The emulator storage account a registration URL names: `{base}/blob/{storage}[/]`.
fn storage_of_url(ctx: &Ctx, raw: &str) -> Option<String> {
    let url = url::Url::parse(raw).ok()?;
    let ours = url::Url::parse(&ctx.emulator.base_url).ok()?;
    if url.port_or_known_default() != ours.port_or_known_default()
        || !matches!(url.host_str(), Some("127.0.0.1" | "localhost"))
    {
        return None;
    }
    let rest = url.path().strip_prefix(crate::blob::PREFIX)?.trim_end_matches('/');
    (!rest.is_empty() && !rest.contains('/')).then(|| rest.to_ascii_lowercase())
}

fn put_storage(ctx: &Ctx, account: &mut Account, name: &str, body: &[u8]) -> Result<Response, MkioError> {
    check_name("storage", name)?;
    let body = parse_body(body)?;
    let spec = body
        .get("spec")
        .filter(|s| s.is_object())
        .ok_or_else(|| MkioError::bad_request("The request body must contain 'spec'."))?;
    match optional_str(spec, "type")?.as_deref() {
        Some("Microsoft.Storage") => {}
        Some(t @ ("AWS.S3" | "Google.Storage")) => {
            return Err(MkioError::bad_request(format!("The emulator only emulates Microsoft.Storage, not {t}.")))
        }
        Some(t) => return Err(MkioError::bad_request(format!("Unknown storage type '{t}'."))),
        None => return Err(MkioError::bad_request("'spec.type' is required.")),
    }
    let url = optional_str(spec, "url")?.ok_or_else(|| MkioError::bad_request("'spec.url' is required."))?;
    let description = optional_str(spec, "description")?;
    let sas = match spec.get("credential") {
        None | Some(Value::Null) => None,
        Some(c) => Some(
            optional_str(c, "sasToken")?
                .ok_or_else(|| MkioError::bad_request("'spec.credential.sasToken' is required."))?,
        ),
    };
    let key = name.to_ascii_lowercase();
    let existing = project(account)?.storages.get(&key).cloned();
    if let Some(e) = &existing {
        // media-api.json: type and url "cannot be modified, only set during creation".
        if e.url.trim_end_matches('/') != url.trim_end_matches('/') {
            return Err(MkioError::bad_request(format!("The url of storage '{name}' cannot be changed.")));
        }
    }
    let storage_account = storage_of_url(ctx, &url).ok_or_else(|| {
        MkioError::bad_request(format!("The storage URL '{url}' is not a blob endpoint of this emulator."))
    })?;
    // MK.IO requires storage in the project's location; each emulated project has one storage account in
    // its region, so that is the only one it may register.
    if storage_account != account.storage.name {
        return Err(MkioError::bad_request(format!(
            "The storage account '{storage_account}' is not in the project's location '{}'; register '{}'.",
            account.region, account.storage.name
        )));
    }
    let sas = match (sas, &existing) {
        (Some(s), _) => s,
        (None, Some(e)) => e.sas_token.clone(),
        (None, None) => return Err(MkioError::bad_request("'spec.credential' is required when registering storage.")),
    };
    if !sas.starts_with('?') {
        return Err(MkioError::bad_request("'spec.credential.sasToken' must start with '?'."));
    }
    let query: Vec<(String, String)> = url::form_urlencoded::parse(&sas.as_bytes()[1..]).into_owned().collect();
    // MK.IO reads and writes the containers itself, so the credential must at least read blobs.
    account.storage.check_sas(&query, "", Some(""), &[Permission::Read], &ctx.now).map_err(|e| {
        MkioError::bad_request(format!("The SAS token does not grant access to the storage account: {e}"))
    })?;
    let get = |k: &str| query.iter().find(|(qk, _)| qk == k).map(|(_, v)| v.clone());
    let record = RegisteredStorage {
        name: existing.as_ref().map_or_else(|| name.to_string(), |e| e.name.clone()),
        id: existing.as_ref().map_or_else(uuid::Uuid::new_v4, |e| e.id),
        url,
        storage_account,
        description: description.or_else(|| existing.as_ref().and_then(|e| e.description.clone())),
        signed_expiry: get("se").unwrap_or_default(),
        signed_start: get("st"),
        credential_id: existing
            .as_ref()
            .filter(|e| e.sas_token == sas)
            .map_or_else(uuid::Uuid::new_v4, |e| e.credential_id),
        sas_token: sas,
        created: existing.as_ref().map_or(ctx.now, |e| e.created),
        updated: ctx.now,
    };
    let out = storage_json(&account.region, &record);
    project_mut(account)?.register(record);
    let status = if existing.is_some() { StatusCode::OK } else { StatusCode::CREATED };
    Ok((status, Json(out)).into_response())
}

/// DELETE fails while assets point into the storage (media-api.json, "Delete Storage instance").
fn delete_storage(account: &mut Account, name: &str) -> Result<Response, MkioError> {
    let key = name.to_ascii_lowercase();
    if !project(account)?.storages.contains_key(&key) {
        return Err(MkioError::not_found("storage", name));
    }
    if let Some(a) = account.assets.values().find(|a| a.storage_account_name.eq_ignore_ascii_case(name)) {
        return Err(MkioError::new(
            StatusCode::CONFLICT,
            "Conflict",
            format!("The storage '{name}' is used by asset '{}'.", a.name),
        ));
    }
    project_mut(account)?.unregister(&key);
    Ok(StatusCode::NO_CONTENT.into_response())
}

fn list_storage(ctx: &Ctx, account: &Account) -> Result<Response, MkioError> {
    lists::refuse_unsupported(ctx, &["$filter", "$orderby"])?;
    let items = project(account)?.storages.values().map(|s| storage_json(&account.region, s)).collect();
    lists::page(ctx, "StorageAccount", "storage accounts", items)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_masked_sas_keeps_its_fields_but_not_its_signature() {
        let m = masked_sas("?sv=2022-11-02&ss=b&srt=sco&sp=rl&se=2099-12-31T00%3A00%3A00Z&sig=abc%2Bdef");
        assert!(m.starts_with("?sv=2022-11-02&"));
        assert!(m.contains("sig=********"));
        assert!(!m.contains("abc"));
    }

    #[test]
    fn presets_must_be_mkio_built_ins() {
        let p =
            |name: &str| json!({"@odata.type": "#Microsoft.Media.BuiltInStandardEncoderPreset", "presetName": name});
        assert!(check_preset(0, Some(&p("H264MultipleBitrate720p"))).is_ok());
        assert!(check_preset(0, Some(&p("AdaptiveStreaming"))).is_err());
        assert!(check_preset(0, Some(&json!({"@odata.type": "#Microsoft.Media.StandardEncoderPreset"}))).is_err());
        assert!(check_preset(0, Some(&json!({"@odata.type": "#MediaKind.ThumbnailGeneratorPreset"}))).is_ok());
    }
}
