//! The Media Services v2 REST endpoint for Media Reserved Units (contracts 5.1, 5.2).
//!
//! Clients discover it through ARM (`properties.apiEndpoints` of the account,
//! api-version 2015-10-01) and then speak OData v3 to
//! `{base}/mru/{account}/api/EncodingReservedUnitTypes`. Errors use the v2
//! OData shape `{"odata.error":{"code","message":{"lang","value"}}}` rather
//! than ARM's, because that is what azure-cli reads (`error.message.value`).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State as AxumState;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Map, Value};
use thiserror::Error;

use crate::arm::{apply_fault, percent_decode, query_pairs, query_value, ArmError};
use crate::config::MruMode;
use crate::model::Account;
use crate::state::Emulator;

/// Path prefix of every account's v2 endpoint.
pub const PREFIX: &str = "/mru/";
/// The one entity set served.
const ENTITY_SET: &str = "EncodingReservedUnitTypes";
/// Content type of every v2 answer with a body.
const ODATA_JSON: &str = "application/json;odata=minimalmetadata;streaming=true;charset=utf-8";
/// What azure-cli tells the user for accounts that scale by themselves (contracts 5.1).
const AUTOMATIC_MESSAGE: &str = "The media reserved unit operation failed as the Media Services account was created \
with the 2020-05-01 version of the API or later. Accounts created this way no longer need to set media reserved units \
as the system will automatically scale up and down based on load.";

/// The v2 endpoint of `account` as ARM advertises it, with its trailing slash.
pub fn endpoint(base_url: &str, account: &str) -> String {
    format!("{base_url}{PREFIX}{account}/api/")
}

/// A refused v2 call.
#[derive(Debug, Error)]
pub enum MruError {
    /// Unknown account, path or entity key.
    #[error("{0}")]
    NotFound(String),
    /// Known entity set, unsupported method.
    #[error("The HTTP method '{0}' is not supported on this resource.")]
    MethodNotAllowed(String),
    /// Neither `api-version` nor `x-ms-version`.
    #[error("The request must carry the api-version query parameter or the x-ms-version header (e.g. 2.19).")]
    MissingVersion,
    /// Validation failure, or an account whose units are automatic.
    #[error("{0}")]
    BadRequest(String),
    /// `outage` or `throttle` fault.
    #[error(transparent)]
    Fault(ArmError),
}

impl MruError {
    fn status(&self) -> StatusCode {
        match self {
            MruError::NotFound(_) => StatusCode::NOT_FOUND,
            MruError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            MruError::MissingVersion | MruError::BadRequest(_) => StatusCode::BAD_REQUEST,
            MruError::Fault(e) => e.status(),
        }
    }

    fn code(&self) -> &str {
        match self {
            MruError::NotFound(_) => "ResourceNotFound",
            MruError::MethodNotAllowed(_) => "MethodNotAllowed",
            MruError::MissingVersion => "MissingApiVersion",
            MruError::BadRequest(_) => "BadRequest",
            MruError::Fault(e) => e.code(),
        }
    }
}

impl IntoResponse for MruError {
    fn into_response(self) -> Response {
        let body =
            json!({"odata.error": {"code": self.code(), "message": {"lang": "en-US", "value": self.to_string()}}});
        let mut resp = (self.status(), odata_body(&body)).into_response();
        if let MruError::Fault(ArmError::Throttled(secs)) = self {
            resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        resp
    }
}

fn odata_body(body: &Value) -> Response {
    let mut resp = body.to_string().into_response();
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(ODATA_JSON));
    resp.headers_mut().insert("DataServiceVersion", HeaderValue::from_static("3.0;"));
    resp
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
            tracing::debug!(%method, %uri, code = e.code(), "v2 MRU error");
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
) -> Result<Response, MruError> {
    let not_found = || MruError::NotFound(format!("Resource not found for the segment '{}'.", uri.path()));
    let rest = uri.path().strip_prefix(PREFIX).ok_or_else(not_found)?;
    let segs: Vec<String> = rest.split('/').map(percent_decode).collect();
    let (account_name, resource) = match segs.as_slice() {
        [a, api, r] if api.eq_ignore_ascii_case("api") => (a.as_str(), r.as_str()),
        _ => return Err(not_found()),
    };
    let mut state = emulator.lock();
    let account = state
        .account_mut(account_name)
        .ok_or_else(|| MruError::NotFound(format!("The account '{account_name}' is not configured.")))?;
    account.mru.calls += 1;
    apply_fault(account).map_err(MruError::Fault)?;
    let query = query_pairs(uri);
    let has_version = query_value(&query, "api-version").is_some_and(|v| !v.is_empty())
        || headers.get("x-ms-version").is_some_and(|v| !v.is_empty());
    if !has_version {
        return Err(MruError::MissingVersion);
    }
    let key = parse_resource(resource).ok_or_else(not_found)?;
    if account.mru.mode == MruMode::Automatic {
        return Err(MruError::BadRequest(AUTOMATIC_MESSAGE.to_string()));
    }
    let base = endpoint(&emulator.base_url, &account.name);
    match (method.as_str(), key) {
        ("GET", Key::None) => Ok(odata_body(&json!({
            "odata.metadata": format!("{base}$metadata#{ENTITY_SET}"),
            "value": [entity(account)],
        }))),
        ("GET", Key::Guid(id)) => {
            check_key(account, &id)?;
            let mut e = entity(account);
            e["odata.metadata"] = format!("{base}$metadata#{ENTITY_SET}/@Element").into();
            Ok(odata_body(&e))
        }
        ("PUT" | "PATCH" | "MERGE", Key::Guid(id)) => {
            check_key(account, &id)?;
            update(account, body)?;
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        ("GET", Key::Malformed(k)) | ("PUT" | "PATCH" | "MERGE", Key::Malformed(k)) => {
            Err(MruError::BadRequest(format!("Bad Request - Error in query syntax: the key '{k}' is not guid'...'.")))
        }
        (m, _) => Err(MruError::MethodNotAllowed(m.to_string())),
    }
}

/// The entity key part of the path.
#[derive(Debug, PartialEq)]
enum Key {
    /// The whole entity set.
    None,
    /// `(guid'...')`.
    Guid(String),
    /// Parentheses with something else inside.
    Malformed(String),
}

fn parse_resource(resource: &str) -> Option<Key> {
    if resource.eq_ignore_ascii_case(ENTITY_SET) {
        return Some(Key::None);
    }
    let head = resource.get(..ENTITY_SET.len()).filter(|h| h.eq_ignore_ascii_case(ENTITY_SET))?;
    let inner = resource[head.len()..].strip_prefix('(')?.strip_suffix(')')?;
    let guid = inner
        .get(..5)
        .filter(|p| p.eq_ignore_ascii_case("guid'"))
        .and_then(|_| inner[5..].strip_suffix('\''))
        .filter(|g| uuid::Uuid::parse_str(g).is_ok());
    Some(match guid {
        Some(g) => Key::Guid(g.to_string()),
        None => Key::Malformed(inner.to_string()),
    })
}

fn check_key(account: &Account, id: &str) -> Result<(), MruError> {
    match uuid::Uuid::parse_str(id) {
        Ok(u) if u == account.media_service_id => Ok(()),
        _ => Err(MruError::NotFound(format!("No EncodingReservedUnitType with AccountId '{id}' exists."))),
    }
}

fn entity(account: &Account) -> Value {
    json!({
        "AccountId": account.media_service_id.to_string(),
        "ReservedUnitType": account.mru.reserved_unit_type,
        "MaxReservableUnits": account.mru.max,
        "CurrentReservedUnits": account.mru.current,
    })
}

/// Applies an update body; a missing field keeps its value.
fn update(account: &mut Account, body: &[u8]) -> Result<(), MruError> {
    let fields = parse_update_body(body)?;
    let int_field = |name: &str| -> Result<Option<i64>, MruError> {
        match fields.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => {
                v.as_i64().map(Some).ok_or_else(|| MruError::BadRequest(format!("'{name}' must be an integer.")))
            }
        }
    };
    let unit_type = match int_field("ReservedUnitType")? {
        None => account.mru.reserved_unit_type,
        Some(t @ 0..=2) => t as u8,
        Some(t) => {
            return Err(MruError::BadRequest(format!(
                "ReservedUnitType {t} is not valid; use 0 (S1), 1 (S2) or 2 (S3)."
            )))
        }
    };
    let max = account.mru.max;
    let current = match int_field("CurrentReservedUnits")? {
        None => account.mru.current,
        Some(n) if n < 0 => {
            return Err(MruError::BadRequest(format!("CurrentReservedUnits must not be negative, got {n}.")))
        }
        Some(n) => u32::try_from(n).ok().filter(|n| *n <= max).ok_or_else(|| {
            MruError::BadRequest(format!(
                "CurrentReservedUnits {n} exceeds MaxReservableUnits {max}. Request a quota increase to reserve more units."
            ))
        })?,
    };
    if (unit_type, current) != (account.mru.reserved_unit_type, account.mru.current) {
        account.mru.updates += 1;
        tracing::info!(account = %account.name, from = account.mru.current, to = current, unit_type, "reserved units set");
    }
    account.mru.reserved_unit_type = unit_type;
    account.mru.current = current;
    Ok(())
}

/// Parses the update body. The v2 reference shows `{CurrentReservedUnits:1}`
/// with a bare key, which the v2 service accepted, so bare keys are quoted
/// before parsing when strict JSON fails.
fn parse_update_body(body: &[u8]) -> Result<Map<String, Value>, MruError> {
    let text = String::from_utf8_lossy(body);
    let parsed =
        serde_json::from_str::<Value>(&text).or_else(|_| serde_json::from_str::<Value>(&quote_bare_keys(&text)));
    match parsed {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(MruError::BadRequest("The request body must be a JSON object.".into())),
        Err(e) => Err(MruError::BadRequest(format!("The request body is not valid JSON: {e}"))),
    }
}

/// Quotes identifiers that directly follow `{` or `,` (outside strings) and precede `:`.
fn quote_bare_keys(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    let mut chars = text.chars().peekable();
    let mut in_string = false;
    let mut expect_key = false;
    while let Some(c) = chars.next() {
        if in_string {
            out.push(c);
            if c == '\\' {
                if let Some(n) = chars.next() {
                    out.push(n);
                }
            } else if c == '"' {
                in_string = false;
            }
            continue;
        }
        match c {
            '"' => {
                in_string = true;
                expect_key = false;
                out.push(c);
            }
            '{' | ',' => {
                expect_key = true;
                out.push(c);
            }
            c if expect_key && (c.is_ascii_alphabetic() || c == '_') => {
                let mut ident = String::from(c);
                while let Some(&n) = chars.peek() {
                    if n.is_ascii_alphanumeric() || n == '_' {
                        ident.push(n);
                        chars.next();
                    } else {
                        break;
                    }
                }
                out.push('"');
                out.push_str(&ident);
                out.push('"');
                expect_key = false;
            }
            c if c.is_whitespace() => out.push(c),
            _ => {
                expect_key = false;
                out.push(c);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entity_keys_are_parsed_from_the_odata_path() {
        assert_eq!(parse_resource("EncodingReservedUnitTypes"), Some(Key::None));
        let g = "61318ce3-0629-4400-8a1b-e716bc501314";
        assert_eq!(parse_resource(&format!("EncodingReservedUnitTypes(guid'{g}')")), Some(Key::Guid(g.into())));
        assert_eq!(parse_resource("EncodingReservedUnitTypes(42)"), Some(Key::Malformed("42".into())));
        assert_eq!(parse_resource("Assets"), None);
    }

    #[test]
    fn bare_keys_from_the_reference_example_are_quoted() {
        assert_eq!(quote_bare_keys("{CurrentReservedUnits:1}"), r#"{"CurrentReservedUnits":1}"#);
        assert_eq!(
            quote_bare_keys(r#"{ReservedUnitType: 0, "CurrentReservedUnits": 2}"#),
            r#"{"ReservedUnitType": 0, "CurrentReservedUnits": 2}"#
        );
        assert_eq!(quote_bare_keys(r#"{"a":"x,y:z"}"#), r#"{"a":"x,y:z"}"#);
    }

    #[test]
    fn updates_keep_missing_fields_and_count_only_changes() {
        let mut a = Account::with_mru("a", "r", crate::model::Mru::new(MruMode::Managed, 5));
        update(&mut a, br#"{"ReservedUnitType":1,"CurrentReservedUnits":3}"#).unwrap();
        update(&mut a, b"{CurrentReservedUnits:3}").unwrap();
        assert_eq!((a.mru.reserved_unit_type, a.mru.current, a.mru.updates), (1, 3, 1));
        update(&mut a, br#"{"ReservedUnitType":2}"#).unwrap();
        assert_eq!((a.mru.reserved_unit_type, a.mru.current, a.mru.updates), (2, 3, 2));
        assert!(update(&mut a, br#"{"CurrentReservedUnits":6}"#).is_err());
        assert!(update(&mut a, br#"{"CurrentReservedUnits":-1}"#).is_err());
        assert!(update(&mut a, br#"{"ReservedUnitType":3}"#).is_err());
        assert!(update(&mut a, br#"{"CurrentReservedUnits":"2"}"#).is_err());
        assert_eq!(a.mru.current, 3);
    }
}
