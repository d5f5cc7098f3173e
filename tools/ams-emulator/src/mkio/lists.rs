//! MK.IO list answers: `{"value": [...], "supplemental": {...}, "@odata.nextLink"?}`.
//!
//! - `supplemental` carries `kind`, `count`, `operation: "list"`, `pagination {start, end, records, total}`
//!   and the project (`subscription {id, name}`) (media-api.json `ListResponseSupplementalSchema`; the
//!   docs' pagination guide).
//! - `$skiptoken` is a start offset and the next page starts at `pagination.end` (docs: "sets the start
//!   offset for the next page"; hmcts/pre-api pages with `supplemental.pagination.end`).
//! - `@odata.nextLink` is present only when another page exists (media-api.json, `$skiptoken`), and it is
//!   a path relative to the host (microsoft/MK.IO's client prefixes it with its base URL).
//! - A list with nothing on the page answers 404 rather than an empty `value`, as MK.IO clients have met
//!   (hmcts/pre-api); `--mkio-empty-list-status 200` turns that off.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use super::{Ctx, MkioError};

/// `$top`, capped by the configured page size.
fn page_size(ctx: &Ctx) -> Result<usize, MkioError> {
    let configured = ctx.emulator.config.page_size;
    match ctx.query_value("$top") {
        None => Ok(configured),
        Some(t) => t
            .trim()
            .parse::<usize>()
            .map(|n| n.min(configured))
            .map_err(|_| MkioError::bad_request("$top must be a non-negative integer.")),
    }
}

/// `$skiptoken`, a start offset taken from a previous answer.
fn start(ctx: &Ctx) -> Result<usize, MkioError> {
    match ctx.query_value("$skiptoken") {
        None => Ok(0),
        Some(t) => t
            .trim()
            .parse::<usize>()
            .map_err(|_| MkioError::bad_request("$skiptoken must be taken from a previous answer's nextLink.")),
    }
}

/// Percent-encodes a query key or value, keeping OData punctuation literal and spaces as `%20`.
fn encode(s: &str) -> String {
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

/// The relative link to the page starting at `next`, keeping every other query parameter.
fn next_link(ctx: &Ctx, next: usize) -> String {
    let mut query: Vec<String> = ctx
        .query
        .iter()
        .filter(|(k, _)| !k.eq_ignore_ascii_case("$skiptoken"))
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect();
    query.push(format!("$skiptoken={next}"));
    format!("{}?{}", ctx.path, query.join("&"))
}

/// Answers one page of `items` (already filtered and ordered) as MK.IO does. `kind` is the item kind
/// (`Job`, `Asset`, ...), `plural` how the 404 names them.
pub fn page(ctx: &Ctx, kind: &str, plural: &str, items: Vec<Value>) -> Result<Response, MkioError> {
    let size = page_size(ctx)?;
    let from = start(ctx)?;
    let total = items.len();
    let value: Vec<Value> = items.into_iter().skip(from).take(size).collect();
    if value.is_empty() && ctx.emulator.config.mkio.empty_list_status == 404 {
        return Err(MkioError::new(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("No {plural} were found in project '{}'.", ctx.project),
        ));
    }
    let end = from + value.len();
    let mut body = json!({
        "value": value,
        "supplemental": {
            "kind": kind,
            "count": value.len(),
            "operation": "list",
            "pagination": {"start": from, "end": end, "records": value.len(), "total": total},
            "subscription": {"id": ctx.project_id.to_string(), "name": ctx.project},
        },
    });
    if end < total {
        body["@odata.nextLink"] = next_link(ctx, end).into();
    }
    Ok(Json(body).into_response())
}

/// Refuses query options a list does not emulate rather than ignoring them, so a client relying on them
/// notices.
pub fn refuse_unsupported(ctx: &Ctx, options: &[&str]) -> Result<(), MkioError> {
    for o in options {
        if ctx.query_value(o).is_some() {
            return Err(MkioError::bad_request(format!("The emulator does not support {o} on this list.")));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_parts_keep_odata_punctuation_and_encode_spaces() {
        assert_eq!(encode("properties/state eq 'Queued'"), "properties/state%20eq%20'Queued'");
        assert_eq!(encode("a&b=c"), "a%26b%3Dc");
    }
}
