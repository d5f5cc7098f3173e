//! The custom-handler invocation protocol (azure-contracts section 1): what the Functions host POSTs to
//! `/{FunctionName}` and what it expects back. Parsing is lenient where the host's encoding varies
//! (double-encoded strings, query as a string, a timer's null `ScheduleStatus`); answers are exact.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// The host's request body: one `Data` entry per input binding, and trigger metadata.
#[derive(Debug, Default, Deserialize)]
pub struct InvokeRequest {
    /// Input bindings by name.
    #[serde(rename = "Data", alias = "data", default)]
    pub data: Map<String, Value>,
    /// Trigger metadata; parsed leniently and not relied upon.
    #[serde(rename = "Metadata", alias = "metadata", default)]
    pub metadata: Map<String, Value>,
}

impl InvokeRequest {
    /// The input binding `name`, with string-encoded JSON decoded: the host JSON-encodes string inputs, so
    /// an object may arrive as a string, or as a string of a string.
    pub fn input(&self, name: &str) -> Option<Value> {
        let mut value = self.data.get(name)?.clone();
        for _ in 0..2 {
            match value {
                Value::String(ref s) => match serde_json::from_str::<Value>(s) {
                    Ok(inner) => value = inner,
                    Err(_) => break,
                },
                _ => break,
            }
        }
        Some(value)
    }
}

/// An HTTP trigger's request as the host sends it (non-forwarded mode).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct HttpRequestData {
    /// The URL the caller used.
    #[serde(default)]
    pub url: String,
    /// The HTTP method.
    #[serde(default)]
    pub method: String,
    /// Query parameters (an object today; older hosts sent the string "{}").
    #[serde(default, deserialize_with = "lenient_map")]
    pub query: BTreeMap<String, String>,
    /// Headers, name to values.
    #[serde(default, deserialize_with = "lenient_headers")]
    pub headers: BTreeMap<String, Vec<String>>,
    /// Route parameters, present only when the route has some.
    #[serde(default, deserialize_with = "lenient_map")]
    pub params: BTreeMap<String, String>,
    /// The raw body text, present only when the request had a non-empty body.
    #[serde(default)]
    pub body: Option<String>,
}

impl HttpRequestData {
    /// Reads the HTTP trigger input `name` from an invocation.
    pub fn from_invocation(req: &InvokeRequest, name: &str) -> Option<HttpRequestData> {
        req.data.get(name).and_then(|v| serde_json::from_value(v.clone()).ok())
    }

    /// A route parameter, case-insensitively, as route values are.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

fn lenient_map<'de, D: serde::Deserializer<'de>>(d: D) -> Result<BTreeMap<String, String>, D::Error> {
    let value = Value::deserialize(d)?;
    let object = match value {
        Value::Object(map) => map,
        Value::String(s) => serde_json::from_str::<Map<String, Value>>(&s).unwrap_or_default(),
        _ => Map::new(),
    };
    Ok(object
        .into_iter()
        .map(|(k, v)| {
            let v = match v {
                Value::String(s) => s,
                other => other.to_string(),
            };
            (k, v)
        })
        .collect())
}

fn lenient_headers<'de, D: serde::Deserializer<'de>>(d: D) -> Result<BTreeMap<String, Vec<String>>, D::Error> {
    let value = Value::deserialize(d)?;
    let Value::Object(map) = value else { return Ok(BTreeMap::new()) };
    Ok(map
        .into_iter()
        .map(|(k, v)| {
            let values = match v {
                Value::Array(items) => items.into_iter().filter_map(|i| i.as_str().map(str::to_owned)).collect(),
                Value::String(s) => vec![s],
                _ => vec![],
            };
            (k, values)
        })
        .collect())
}

/// What the handler answers to the host. Always sent as `200 application/json`; the caller's status goes
/// inside `Outputs.res`.
#[derive(Debug, Default, Serialize)]
pub struct InvokeResponse {
    /// Output bindings by name (case-sensitive on the host side).
    #[serde(rename = "Outputs")]
    pub outputs: Map<String, Value>,
    /// Lines the host logs against this invocation.
    #[serde(rename = "Logs")]
    pub logs: Vec<String>,
    /// Unused (no `$return` bindings), sent as null.
    #[serde(rename = "ReturnValue")]
    pub return_value: Value,
}

impl InvokeResponse {
    /// Sets output binding `name`.
    pub fn output(mut self, name: &str, value: Value) -> Self {
        self.outputs.insert(name.to_owned(), value);
        self
    }

    /// Adds a log line.
    pub fn log(mut self, line: impl Into<String>) -> Self {
        self.logs.push(line.into());
        self
    }
}

/// An HTTP output binding value: `statusCode` (never `status`, which the host ignores), the body as a
/// JSON string, and a Content-Type header so the host does not serve it as text/plain.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HttpResponseData {
    /// Status for the caller.
    #[serde(rename = "statusCode")]
    pub status_code: u16,
    /// Headers, string values only.
    pub headers: BTreeMap<String, String>,
    /// Pre-serialized JSON text.
    pub body: String,
}

impl HttpResponseData {
    /// A JSON answer with this status.
    pub fn json(status_code: u16, body: &impl Serialize) -> Self {
        let body = serde_json::to_string(body).unwrap_or_else(|_| "{}".to_owned());
        let headers = BTreeMap::from([("Content-Type".to_owned(), "application/json".to_owned())]);
        HttpResponseData { status_code, headers, body }
    }

    /// An HTML page with this status.
    pub fn html(status_code: u16, body: String) -> Self {
        let headers = BTreeMap::from([("Content-Type".to_owned(), "text/html; charset=utf-8".to_owned())]);
        HttpResponseData { status_code, headers, body }
    }

    /// A JSON error answer: `{"error": {"code", "message"}}`.
    pub fn error(status_code: u16, code: &str, message: &str) -> Self {
        Self::json(status_code, &serde_json::json!({ "error": { "code": code, "message": message } }))
    }

    /// Adds a header.
    pub fn header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.insert(name.to_owned(), value.into());
        self
    }

    /// The value for `Outputs.res`.
    pub fn to_value(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}

/// A timer trigger's input. Only `IsPastDue` is used; `ScheduleStatus` may be null.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct TimerInfo {
    /// Whether the run is later than scheduled.
    #[serde(default)]
    pub is_past_due: bool,
    /// Last/next run times, or null when the host does not monitor the schedule.
    #[serde(default)]
    pub schedule_status: Option<Value>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_event_sent_as_a_string_or_a_string_of_a_string_is_decoded() {
        let event = json!({"id": "1"});
        let once = json!({"Data": {"e": event.to_string()}});
        let twice = json!({"Data": {"e": serde_json::to_string(&event.to_string()).unwrap_or_default()}});
        for body in [json!({"Data": {"e": event}}), once, twice] {
            let req: InvokeRequest = serde_json::from_value(body).unwrap_or_default();
            assert_eq!(req.input("e"), Some(json!({"id": "1"})));
        }
    }

    #[test]
    fn an_http_request_without_body_and_with_a_string_query_parses() {
        let req: InvokeRequest = serde_json::from_value(json!({"Data": {"req": {"Url": "http://h/api/jobs/x", "Method": "GET", "Query": "{}", "Headers": {"Host": ["h"]}, "Params": {"jobId": "x"}}}, "Metadata": {}})).unwrap_or_default();
        let http = HttpRequestData::from_invocation(&req, "req").expect("parses");
        assert_eq!((http.body.as_deref(), http.param("JOBID")), (None, Some("x")));
        assert!(http.query.is_empty());
    }

    #[test]
    fn a_timer_with_null_schedule_status_parses() {
        let t: TimerInfo = serde_json::from_value(json!({"Schedule": {}, "ScheduleStatus": null, "IsPastDue": true}))
            .unwrap_or_default();
        assert!(t.is_past_due && t.schedule_status.is_none());
    }

    #[test]
    fn responses_use_status_code_and_a_json_string_body() {
        let res = HttpResponseData::error(404, "not_found", "no such job").to_value();
        assert_eq!(res["statusCode"], json!(404));
        assert!(res.get("status").is_none());
        assert_eq!(res["headers"]["Content-Type"], json!("application/json"));
        assert!(res["body"].is_string());
        let out = serde_json::to_value(InvokeResponse::default().output("res", res)).unwrap_or_default();
        assert_eq!(out["ReturnValue"], Value::Null);
    }
}
