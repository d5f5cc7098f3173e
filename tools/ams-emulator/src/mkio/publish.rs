//! MK.IO publication: streaming policies, content key policies and streaming locators. The resources
//! and their validation are the Media Services ones (`streaming`); this module adds MK.IO's differences:
//! - content key policies are created with PUT only (a taken name is refused) and changed with PATCH;
//! - every create-only PUT on a taken name answers MK.IO's "already exists" error;
//! - lists use MK.IO's pagination, and the policy list includes the predefined policies ("To get the list
//!   of valid policy options use the GET .../streamingPolicies endpoint", media-api.json);
//! - listPaths adds a `drm` map of licence acquisition URLs, pointing at the emulator's key delivery so a
//!   test can fetch the explicit keys it gave.

use axum::http::Method;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Map, Value};

use super::lists;
use super::{check_name, parse_body, Ctx, MkioError};
use crate::model::Account;
use crate::streaming::{self, Scheme, StreamingPolicy, PREDEFINED_POLICIES};

/// Routes publication calls under `.../media/`; everything else is a 404.
pub fn route(
    ctx: &Ctx,
    account: &mut Account,
    method: &Method,
    rest: &[&str],
    body: &[u8],
) -> Result<Response, MkioError> {
    let is = |s: &str, lit: &str| s.eq_ignore_ascii_case(lit);
    let wrong = || Err(MkioError::method_not_allowed(method.as_str()));
    let media = ctx.media_path();
    let now = ctx.now;
    let duplicate = ctx.emulator.config.mkio.duplicate_status;
    match rest {
        [p] if is(p, "streamingPolicies") => match *method {
            Method::GET => list_policies(ctx, account),
            _ => wrong(),
        },
        [p, name] if is(p, "streamingPolicies") => match *method {
            Method::PUT => {
                check_name("streaming policy", name)?;
                if account.streaming.policies.contains_key(&name.to_ascii_lowercase()) {
                    return Err(MkioError::already_exists(duplicate, "streaming policy", name));
                }
                Ok(streaming::put_policy(&media, account, name, body, now, duplicate)?)
            }
            Method::GET => Ok(streaming::get_policy(&media, account, name)?),
            Method::DELETE => Ok(streaming::delete_policy(account, name)?),
            _ => wrong(),
        },
        [c] if is(c, "contentKeyPolicies") => match *method {
            Method::GET => list_ckp(ctx, account),
            _ => wrong(),
        },
        [c, name] if is(c, "contentKeyPolicies") => match *method {
            // media-api.json: PUT "Create a Content Key Policy" answers 201 or 409; updates are PATCH.
            Method::PUT => {
                check_name("content key policy", name)?;
                if account.streaming.content_key_policies.contains_key(&name.to_ascii_lowercase()) {
                    return Err(MkioError::already_exists(duplicate, "content key policy", name));
                }
                Ok(streaming::put_ckp(&media, account, name, body, now)?)
            }
            Method::PATCH => patch_ckp(ctx, account, name, body),
            Method::GET => Ok(streaming::get_ckp(&media, account, name)?),
            Method::DELETE => Ok(streaming::delete_ckp(account, name)?),
            _ => wrong(),
        },
        [c, name, action] if is(c, "contentKeyPolicies") && is(action, "getPolicyPropertiesWithSecrets") => {
            match *method {
                Method::POST => Ok(streaming::ckp_with_secrets(account, name)?),
                _ => wrong(),
            }
        }
        [l] if is(l, "streamingLocators") => match *method {
            Method::GET => list_locators(ctx, account),
            _ => wrong(),
        },
        [l, name] if is(l, "streamingLocators") => match *method {
            Method::PUT => {
                check_name("streaming locator", name)?;
                if account.streaming.locators.contains_key(&name.to_ascii_lowercase()) {
                    return Err(MkioError::already_exists(duplicate, "streaming locator", name));
                }
                Ok(streaming::put_locator(&media, account, name, body, now, duplicate)?)
            }
            Method::GET => Ok(streaming::get_locator(&media, account, name)?),
            Method::DELETE => Ok(streaming::delete_locator(account, name)?),
            _ => wrong(),
        },
        [l, name, action] if is(l, "streamingLocators") && is(action, "listContentKeys") => match *method {
            Method::POST => Ok(streaming::list_content_keys(account, name)?),
            _ => wrong(),
        },
        [l, name, action] if is(l, "streamingLocators") && is(action, "listPaths") => match *method {
            Method::POST => list_paths(ctx, account, name),
            _ => wrong(),
        },
        [a, name, action] if is(a, "assets") && is(action, "listStreamingLocators") => match *method {
            Method::POST => Ok(streaming::asset_locators(account, name)?),
            _ => wrong(),
        },
        _ => Err(MkioError::new(
            axum::http::StatusCode::NOT_FOUND,
            "NotFound",
            format!("No route matches {method} {}.", ctx.path),
        )),
    }
}

/// PATCH merges `properties.description` and `properties.options` into the stored policy; option ids are
/// kept for options whose name stays the same, as on a Media Services update.
fn patch_ckp(ctx: &Ctx, account: &mut Account, name: &str, body: &[u8]) -> Result<Response, MkioError> {
    let existing = account
        .streaming
        .content_key_policies
        .get(&name.to_ascii_lowercase())
        .ok_or_else(|| MkioError::not_found("content key policy", name))?;
    let patch = parse_body(body)?;
    let props = match patch.get("properties") {
        Some(Value::Object(p)) => p.clone(),
        Some(_) => return Err(MkioError::bad_request("'properties' must be an object.")),
        None => Map::new(),
    };
    let mut merged = Map::new();
    let description = props.get("description").cloned().or_else(|| existing.description.clone().map(Value::String));
    if let Some(d) = description {
        merged.insert("description".into(), d);
    }
    let options = props.get("options").cloned().unwrap_or_else(|| Value::Array(existing.options.clone()));
    merged.insert("options".into(), options);
    let body = serde_json::to_vec(&json!({ "properties": merged }))
        .map_err(|e| MkioError::bad_request(format!("The patched policy does not serialize: {e}")))?;
    Ok(streaming::put_ckp(&ctx.media_path(), account, name, &body, ctx.now)?)
}

fn list_policies(ctx: &Ctx, account: &Account) -> Result<Response, MkioError> {
    lists::refuse_unsupported(ctx, &["$filter", "$orderby"])?;
    let media = ctx.media_path();
    let epoch = chrono::DateTime::<chrono::Utc>::UNIX_EPOCH;
    let predefined = PREDEFINED_POLICIES.iter().filter_map(|name| {
        streaming::policy_properties(account, name).map(|(name, properties)| {
            streaming::policy_json(&media, &StreamingPolicy { name, properties, created: epoch })
        })
    });
    let own = account.streaming.policies.values().map(|p| streaming::policy_json(&media, p));
    lists::page(ctx, "StreamingPolicy", "streaming policies", predefined.chain(own).collect())
}

fn list_ckp(ctx: &Ctx, account: &Account) -> Result<Response, MkioError> {
    lists::refuse_unsupported(ctx, &["$filter", "$orderby"])?;
    let media = ctx.media_path();
    let items = account.streaming.content_key_policies.values().map(|p| streaming::ckp_json(&media, p)).collect();
    lists::page(ctx, "ContentKeyPolicy", "content key policies", items)
}

fn list_locators(ctx: &Ctx, account: &Account) -> Result<Response, MkioError> {
    lists::refuse_unsupported(ctx, &["$filter", "$orderby"])?;
    let media = ctx.media_path();
    let items = account.streaming.locators.values().map(|l| streaming::locator_json(&media, l)).collect();
    lists::page(ctx, "StreamingLocator", "streaming locators", items)
}

/// listPaths with MK.IO's `drm` map. The map's keys are a guess (MK.IO documents the entry shape,
/// `StreamingLocatorDrm {licenseAcquisitionUrl, certificateUrl?}`, not the keys; no FairPlay certificate
/// is emulated, so `certificateUrl` is left out): `clearKey` for envelope
/// keys, `playReady` and `widevine` for CENC, `fairPlay` for CBCS. Every URL is the emulator's key
/// delivery for the scheme's key id, which answers the raw key bytes (no licences are made).
fn list_paths(ctx: &Ctx, account: &Account, name: &str) -> Result<Response, MkioError> {
    let mut body = streaming::paths_json(account, name)?;
    let locator = account
        .streaming
        .locators
        .get(&name.to_ascii_lowercase())
        .ok_or_else(|| MkioError::not_found("streaming locator", name))?;
    let delivery = streaming::key_delivery_url(&ctx.emulator.base_url, &account.name);
    let mut drm = Map::new();
    for key in &locator.keys {
        let url = format!("{delivery}?kid={}", key.id);
        let names: &[&str] = match key.scheme {
            Scheme::Envelope => &["clearKey"],
            Scheme::Cenc => &["playReady", "widevine"],
            Scheme::Cbcs => &["fairPlay"],
            Scheme::Clear => &[],
        };
        for n in names {
            drm.insert((*n).to_string(), json!({"licenseAcquisitionUrl": url}));
        }
    }
    body["drm"] = Value::Object(drm);
    Ok(Json(body).into_response())
}
