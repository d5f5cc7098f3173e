//! HTTP triggers: builds `Data.<req>` from the incoming request (contracts
//! 1.4(a)), maps `Outputs.res` back to an HTTP response (1.5), or forwards the
//! raw request when forwarding is on (1.6).

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde_json::{json, Map, Value};

use crate::config::FunctionDef;
use crate::invoke::{self, InvocationError, InvokeResult, Invoker, HOST_VERSION};

/// The parts of a received request an invocation needs.
#[derive(Debug)]
pub struct IncomingRequest {
    /// Method.
    pub method: Method,
    /// URI as received (path and query).
    pub uri: Uri,
    /// Headers.
    pub headers: HeaderMap,
    /// The whole body.
    pub body: Bytes,
}

/// Title-cases a lower-case header name (`content-type` → `Content-Type`),
/// approximating the casing Kestrel reports.
pub fn header_display_name(name: &str) -> String {
    name.split('-')
        .map(|part| {
            let mut c = part.chars();
            match c.next() {
                Some(f) => f.to_ascii_uppercase().to_string() + c.as_str(),
                None => String::new(),
            }
        })
        .collect::<Vec<_>>()
        .join("-")
}

/// Query parameters as ASP.NET exposes them: keys case-insensitive, repeated
/// values joined with `,`.
pub fn query_object(query: Option<&str>) -> Map<String, Value> {
    let mut order: Vec<(String, Vec<String>)> = Vec::new();
    for (k, v) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        match order.iter_mut().find(|(key, _)| key.eq_ignore_ascii_case(&k)) {
            Some((_, vals)) => vals.push(v.into_owned()),
            None => order.push((k.into_owned(), vec![v.into_owned()])),
        }
    }
    order.into_iter().map(|(k, v)| (k, Value::String(v.join(",")))).collect()
}

fn headers_grouped(headers: &HeaderMap) -> Vec<(String, Vec<String>)> {
    let mut out: Vec<(String, Vec<String>)> = Vec::new();
    for name in headers.keys() {
        let values = headers.get_all(name).iter().map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned()).collect();
        out.push((header_display_name(name.as_str()), values));
    }
    out
}

/// The identity the host attaches; locally every caller has admin level
/// because keys are not enforced.
fn local_identity() -> Value {
    json!({
        "AuthenticationType": "WebJobsAuthLevel",
        "IsAuthenticated": true,
        "Actor": null,
        "BootstrapContext": null,
        "Claims": [{
            "Issuer": "LOCAL AUTHORITY",
            "OriginalIssuer": "LOCAL AUTHORITY",
            "Properties": {},
            "Type": "http://schemas.microsoft.com/2017/07/functions/claims/authlevel",
            "Value": "Admin",
            "ValueType": "http://www.w3.org/2001/XMLSchema#string"
        }],
        "Label": null,
        "Name": null,
        "NameClaimType": "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/name",
        "RoleClaimType": "http://schemas.microsoft.com/ws/2008/06/identity/claims/role"
    })
}

fn content_length(headers: &HeaderMap) -> u64 {
    headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse().ok()).unwrap_or(0)
}

/// Builds `Data.<trigger>` and the HTTP `Metadata` for one request.
pub fn request_data(
    req: &IncomingRequest,
    params: &[(String, String)],
    fallback_host: &str,
    function: &str,
) -> (Value, Map<String, Value>) {
    let host = req.headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or(fallback_host);
    let path_query = req.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let query = query_object(req.uri.query());
    let grouped = headers_grouped(&req.headers);
    let mut headers = Map::new();
    let mut flat_headers = Map::new();
    for (k, v) in &grouped {
        flat_headers.insert(k.clone(), Value::String(v.join(",")));
        headers.insert(k.clone(), json!(v));
    }
    let mut obj = Map::new();
    obj.insert("Url".into(), json!(format!("http://{host}{path_query}")));
    obj.insert("Method".into(), json!(req.method.as_str()));
    obj.insert("Query".into(), Value::Object(query.clone()));
    obj.insert("Headers".into(), Value::Object(headers));
    if !params.is_empty() {
        let p: Map<String, Value> = params.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
        obj.insert("Params".into(), Value::Object(p));
    }
    obj.insert("Identities".into(), json!([local_identity()]));
    // The host reads the body only when Content-Length says there is one.
    if content_length(&req.headers) > 0 {
        let media =
            req.headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_ascii_lowercase();
        let body = if media.starts_with("application/octet-stream") || media.starts_with("multipart/") {
            base64::engine::general_purpose::STANDARD.encode(&req.body)
        } else {
            String::from_utf8_lossy(&req.body).into_owned()
        };
        obj.insert("Body".into(), Value::String(body));
    }
    let mut metadata = Map::new();
    metadata.insert("Query".into(), Value::Object(query));
    metadata.insert("Headers".into(), Value::Object(flat_headers));
    for (k, v) in params {
        // Binding-data strings are JSON-encoded once more by the host (contracts 1.3).
        metadata.insert(k.clone(), Value::String(Value::String(v.clone()).to_string()));
    }
    metadata.insert("sys".into(), invoke::sys_metadata(function));
    (Value::Object(obj), metadata)
}

fn find_key<'a>(obj: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    obj.iter().find(|(k, _)| k.eq_ignore_ascii_case(key)).map(|(_, v)| v)
}

fn bad(msg: impl Into<String>) -> InvocationError {
    InvocationError::InvalidResponse(msg.into())
}

/// Turns an `{statusCode, headers, body}` object into a response.
fn response_object(binding: &str, obj: &Map<String, Value>) -> Result<Response, InvocationError> {
    let status = match find_key(obj, "statusCode") {
        None | Some(Value::Null) => 200,
        Some(Value::Number(n)) => n
            .as_u64()
            .and_then(|n| u16::try_from(n).ok())
            .ok_or_else(|| bad(format!("{binding}.statusCode {n} is not a status code")))?,
        Some(Value::String(s)) => {
            s.trim().parse::<u16>().map_err(|_| bad(format!("{binding}.statusCode '{s}' is not a number")))?
        }
        Some(other) => return Err(bad(format!("{binding}.statusCode must be a number, got {other}"))),
    };
    let status =
        StatusCode::from_u16(status).map_err(|_| bad(format!("{binding}.statusCode {status} is out of range")))?;
    let mut builder = Response::builder().status(status);
    let mut has_content_type = false;
    match find_key(obj, "headers") {
        None | Some(Value::Null) => {}
        Some(Value::Object(h)) => {
            for (k, v) in h {
                let text = match v {
                    Value::String(s) => s.clone(),
                    Value::Null => return Err(bad(format!("{binding}.headers.{k} is null"))),
                    other => other.to_string(),
                };
                let name =
                    HeaderName::from_bytes(k.as_bytes()).map_err(|_| bad(format!("invalid header name '{k}'")))?;
                let value = HeaderValue::from_str(&text).map_err(|_| bad(format!("invalid value for header '{k}'")))?;
                has_content_type |= name == header::CONTENT_TYPE;
                builder = builder.header(name, value);
            }
        }
        Some(_) => return Err(bad(format!("{binding}.headers must be an object"))),
    }
    let body = match find_key(obj, "body") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        // The host writes JToken.ToString(), i.e. indented JSON.
        Some(v @ (Value::Object(_) | Value::Array(_))) => serde_json::to_string_pretty(v).unwrap_or_default(),
        Some(other) => other.to_string(),
    };
    if !has_content_type && !body.is_empty() {
        builder = builder.header(header::CONTENT_TYPE, "text/plain; charset=utf-8");
    }
    builder.body(Body::from(body)).map_err(|e| bad(e.to_string()))
}

fn empty_object_response() -> Response {
    (StatusCode::OK, [(header::CONTENT_TYPE, "application/json; charset=utf-8")], "{}").into_response()
}

fn looks_like_response(obj: &Map<String, Value>) -> bool {
    ["statusCode", "status", "body", "headers"].iter().any(|k| find_key(obj, k).is_some())
}

/// Maps the http output binding's value to the caller's response.
pub fn map_http_output(binding: &str, result: &InvokeResult) -> Result<Response, InvocationError> {
    let value = result.output(binding);
    if binding == "$return" {
        return match value {
            None | Some(Value::Null) => Ok(empty_object_response()),
            Some(Value::Object(o)) if looks_like_response(o) => response_object(binding, o),
            Some(Value::String(s)) => match serde_json::from_str::<Value>(s) {
                Ok(Value::Object(o)) if looks_like_response(&o) => response_object(binding, &o),
                _ => response_object(binding, &Map::from_iter([("body".to_string(), json!(s))])),
            },
            Some(other) => {
                Ok((StatusCode::OK, [(header::CONTENT_TYPE, "application/json; charset=utf-8")], other.to_string())
                    .into_response())
            }
        };
    }
    match value {
        None | Some(Value::Null) => Ok(empty_object_response()),
        Some(Value::Object(o)) => response_object(binding, o),
        Some(other) => {
            Err(bad(format!("Outputs.{binding} must be a JSON object with statusCode, headers and body, got {other}")))
        }
    }
}

/// Runs a default-mode HTTP invocation and produces the caller's response.
pub async fn invoke_http(
    invoker: &Arc<Invoker>,
    function: &FunctionDef,
    req: IncomingRequest,
    params: Vec<(String, String)>,
    fallback_host: &str,
) -> Response {
    let (data_value, metadata) = request_data(&req, &params, fallback_host, &function.name);
    let mut data = Map::new();
    data.insert(function.trigger_name.clone(), data_value);
    let binding = function.http_output.clone();
    let reason = "This function was programmatically called via the host APIs.";
    let result = invoker
        .invoke(function, reason, Ok(data), metadata, |r| match &binding {
            Some(b) => map_http_output(b, r).map(Some),
            None => Ok(None),
        })
        .await;
    match result {
        Ok(Some(resp)) => resp,
        // An HTTP function without an http output binding has nothing to say.
        Ok(None) => StatusCode::OK.into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

fn hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "transfer-encoding"
            | "te"
            | "trailer"
            | "upgrade"
            | "content-length"
    )
}

/// Forwards the raw request to the handler at the original path (contracts 1.6).
pub async fn forward(invoker: &Arc<Invoker>, function: &FunctionDef, req: IncomingRequest) -> Response {
    let (id, started) = invoke::log_start(&function.name, "Forwarded HTTP request");
    let path_query = req.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let url = format!("http://127.0.0.1:{}{}", invoker.handler_port, path_query);
    let mut headers = HeaderMap::new();
    for (name, value) in &req.headers {
        if !hop_by_hop(name) && name != header::USER_AGENT {
            headers.append(name.clone(), value.clone());
        }
    }
    // The host appends its product token to the caller's User-Agent.
    let ua = match req.headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok()) {
        Some(orig) => format!("{orig} Azure-Functions-Host/{HOST_VERSION}"),
        None => format!("Azure-Functions-Host/{HOST_VERSION}"),
    };
    let mut builder = invoker
        .client
        .request(req.method.clone(), url)
        .headers(headers)
        .header(header::USER_AGENT, ua)
        .header("X-Azure-Functions-InvocationId", id.to_string())
        .header("X-Azure-Functions-HostVersion", HOST_VERSION);
    if content_length(&req.headers) > 0 {
        builder = builder.body(req.body);
    }
    let outcome = async {
        let resp = builder.send().await.map_err(|e| InvocationError::Transport(e.to_string()))?;
        let status = resp.status();
        let mut out = Response::builder().status(status);
        for (name, value) in resp.headers() {
            if !hop_by_hop(name) {
                out = out.header(name, value);
            }
        }
        let body = resp.bytes().await.map_err(|e| InvocationError::Transport(e.to_string()))?;
        out.body(Body::from(body)).map_err(|e| InvocationError::Transport(e.to_string()))
    }
    .await;
    invoke::log_end(&function.name, id, started, outcome.as_ref().err().map(|e| e as &dyn std::fmt::Display));
    outcome.unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(outputs: Value) -> InvokeResult {
        InvokeResult { outputs: outputs.as_object().cloned().unwrap_or_default(), return_value: None }
    }

    #[test]
    fn repeated_query_keys_are_joined_with_commas() {
        let q = query_object(Some("a=1&A=2&b=x%20y"));
        assert_eq!(Value::Object(q), json!({"a": "1,2", "b": "x y"}));
    }

    #[test]
    fn header_names_are_title_cased() {
        assert_eq!(header_display_name("content-type"), "Content-Type");
        assert_eq!(header_display_name("x-ms-client-request-id"), "X-Ms-Client-Request-Id");
    }

    #[test]
    fn a_string_status_code_is_accepted() {
        let r = map_http_output("res", &result(json!({"res": {"statusCode": "201", "body": "x"}}))).unwrap();
        assert_eq!(r.status(), StatusCode::CREATED);
        assert_eq!(r.headers()[header::CONTENT_TYPE], "text/plain; charset=utf-8");
    }

    #[test]
    fn a_string_res_fails_the_invocation() {
        assert!(map_http_output("res", &result(json!({"res": "hello"}))).is_err());
        assert!(map_http_output("res", &result(json!({"res": {"statusCode": "abc"}}))).is_err());
    }

    #[test]
    fn status_alone_is_ignored() {
        let r = map_http_output("res", &result(json!({"res": {"status": 404}}))).unwrap();
        assert_eq!(r.status(), StatusCode::OK);
    }
}
