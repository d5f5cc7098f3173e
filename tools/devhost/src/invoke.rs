//! Sends invocation requests to the custom handler and processes its answers
//! per the default-mode contract (contracts 1.3 and 1.5).

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use serde_json::{json, Map, Value};
use uuid::Uuid;

use crate::config::FunctionDef;
use crate::outputs::{self, OutputWriter};

/// The host version devhost claims to be.
pub const HOST_VERSION: &str = "4.1037.0";

/// Why an invocation failed.
#[derive(Debug, thiserror::Error)]
pub enum InvocationError {
    /// The request did not reach the handler or no answer came back.
    #[error("request to the handler failed: {0}")]
    Transport(String),
    /// The handler answered with a non-2xx status.
    #[error("the handler answered HTTP {status}: {body}")]
    Status {
        /// Status code.
        status: u16,
        /// Start of the body.
        body: String,
    },
    /// The handler's answer is not `application/json`.
    #[error("the handler answered with content type '{0}', expected application/json")]
    ContentType(String),
    /// The handler's answer is not valid JSON or not an invoke response.
    #[error("invalid response from the handler: {0}")]
    InvalidResponse(String),
    /// The trigger input could not be turned into `Data`.
    #[error("invalid trigger input: {0}")]
    Input(String),
    /// An output binding failed.
    #[error("output binding '{binding}' failed: {message}")]
    Output {
        /// Binding name.
        binding: String,
        /// What happened.
        message: String,
    },
}

/// The parsed `{Outputs, Logs, ReturnValue}` answer.
#[derive(Debug, Clone, Default)]
pub struct InvokeResult {
    /// `Outputs`, keys as sent.
    pub outputs: Map<String, Value>,
    /// `ReturnValue`.
    pub return_value: Option<Value>,
}

impl InvokeResult {
    /// The value for a binding name (`$return` reads `ReturnValue`).
    pub fn output(&self, binding: &str) -> Option<&Value> {
        if binding == "$return" {
            self.return_value.as_ref()
        } else {
            self.outputs.get(binding)
        }
    }
}

/// Calls the handler; shared by every trigger.
#[derive(Debug)]
pub struct Invoker {
    /// HTTP client with redirects, proxies and cookies off, as the host's.
    pub client: reqwest::Client,
    /// `FUNCTIONS_CUSTOMHANDLER_PORT`.
    pub handler_port: u16,
    /// Where output bindings go.
    pub writer: OutputWriter,
}

/// The `sys` metadata object.
pub fn sys_metadata(function: &str) -> Value {
    json!({
        "MethodName": function,
        "UtcNow": utc_now_7(),
        "RandGuid": Uuid::new_v4().to_string(),
    })
}

/// Now as .NET's round-trip format: seven fractional digits and `Z`.
fn utc_now_7() -> String {
    let now = Utc::now();
    format!("{}.{:07}Z", now.format("%Y-%m-%dT%H:%M:%S"), now.timestamp_subsec_nanos() / 100)
}

/// Starts an invocation log entry and returns its id and start time.
pub fn log_start(function: &str, reason: &str) -> (Uuid, Instant) {
    let id = Uuid::new_v4();
    eprintln!("Executing 'Functions.{function}' (Reason='{reason}', Id={id})");
    (id, Instant::now())
}

/// Ends an invocation log entry.
pub fn log_end(function: &str, id: Uuid, started: Instant, failure: Option<&dyn std::fmt::Display>) {
    let ms = started.elapsed().as_millis();
    match failure {
        None => eprintln!("Executed 'Functions.{function}' (Succeeded, Id={id}, Duration={ms}ms)"),
        Some(e) => {
            eprintln!("Executed 'Functions.{function}' (Failed, Id={id}, Duration={ms}ms): {e}")
        }
    }
}

fn find_key<'a>(obj: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    // Newtonsoft matches property names case-insensitively; the last one wins.
    obj.iter().filter(|(k, _)| k.eq_ignore_ascii_case(key)).map(|(_, v)| v).next_back()
}

/// Parses the handler's answer body into an [`InvokeResult`], printing `Logs`.
pub fn parse_response(
    function: &str,
    content_type: Option<&str>,
    body: &[u8],
) -> Result<InvokeResult, InvocationError> {
    let media =
        content_type.and_then(|c| c.split(';').next()).map(|m| m.trim().to_ascii_lowercase()).unwrap_or_default();
    if media != "application/json" && media != "text/json" {
        return Err(InvocationError::ContentType(content_type.unwrap_or("(none)").to_string()));
    }
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(InvokeResult::default());
    }
    let value: Value = serde_json::from_slice(body).map_err(|e| InvocationError::InvalidResponse(e.to_string()))?;
    let obj = match value {
        Value::Null => return Ok(InvokeResult::default()),
        Value::Object(o) => o,
        other => {
            return Err(InvocationError::InvalidResponse(format!("expected a JSON object, got {}", kind_of(&other))))
        }
    };
    match find_key(&obj, "Logs") {
        None | Some(Value::Null) => {}
        Some(Value::Array(lines)) => {
            for l in lines {
                match l {
                    Value::String(s) => eprintln!("[{function}] {s}"),
                    Value::Null => eprintln!("[{function}] "),
                    Value::Object(_) | Value::Array(_) => {
                        return Err(InvocationError::InvalidResponse("Logs must be an array of strings".into()))
                    }
                    other => eprintln!("[{function}] {other}"),
                }
            }
        }
        Some(_) => return Err(InvocationError::InvalidResponse("Logs must be an array of strings".into())),
    }
    let outputs = match find_key(&obj, "Outputs") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(o)) => o.clone(),
        Some(_) => return Err(InvocationError::InvalidResponse("Outputs must be a JSON object".into())),
    };
    let return_value = find_key(&obj, "ReturnValue").filter(|v| !v.is_null()).cloned();
    Ok(InvokeResult { outputs, return_value })
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

impl Invoker {
    /// Builds the client. `timeout` is the host's `functionTimeout + 1 minute`.
    pub fn new(
        handler_port: u16,
        writer: OutputWriter,
        function_timeout: Option<Duration>,
    ) -> Result<Self, reqwest::Error> {
        let mut builder = reqwest::Client::builder().no_proxy().redirect(reqwest::redirect::Policy::none());
        if let Some(t) = function_timeout {
            builder = builder.timeout(t + Duration::from_secs(60));
        }
        Ok(Invoker { client: builder.build()?, handler_port, writer })
    }

    /// Runs one default-mode invocation: logs it, posts `{Data, Metadata}`,
    /// parses the answer, lets `finish` map the http output (its failure fails
    /// the invocation), then writes the other output bindings.
    pub async fn invoke<T>(
        self: &Arc<Self>,
        function: &FunctionDef,
        reason: &str,
        data: Result<Map<String, Value>, InvocationError>,
        metadata: Map<String, Value>,
        finish: impl FnOnce(&InvokeResult) -> Result<T, InvocationError>,
    ) -> Result<T, InvocationError> {
        let (id, started) = log_start(&function.name, reason);
        let result = async {
            let data = data?;
            let result = self.call(&function.name, id, data, metadata).await?;
            let mapped = finish(&result)?;
            self.write_outputs(function, &result).await?;
            Ok(mapped)
        }
        .await;
        log_end(&function.name, id, started, result.as_ref().err().map(|e| e as &dyn std::fmt::Display));
        result
    }

    async fn call(
        &self,
        function: &str,
        id: Uuid,
        data: Map<String, Value>,
        metadata: Map<String, Value>,
    ) -> Result<InvokeResult, InvocationError> {
        let body = json!({ "Data": data, "Metadata": metadata }).to_string();
        let url = format!("http://127.0.0.1:{}/{}", self.handler_port, function);
        let resp = self
            .client
            .post(url)
            .header("Content-Type", "application/json; charset=utf-8")
            .header("X-Azure-Functions-InvocationId", id.to_string())
            .header("X-Azure-Functions-HostVersion", HOST_VERSION)
            .header("User-Agent", format!("Azure-Functions-Host/{HOST_VERSION}"))
            .body(body)
            .send()
            .await
            .map_err(|e| InvocationError::Transport(e.to_string()))?;
        let status = resp.status();
        let content_type =
            resp.headers().get(reqwest::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::to_string);
        let bytes = resp.bytes().await.map_err(|e| InvocationError::Transport(e.to_string()))?;
        if !status.is_success() {
            let text = String::from_utf8_lossy(&bytes);
            return Err(InvocationError::Status { status: status.as_u16(), body: text.chars().take(300).collect() });
        }
        parse_response(function, content_type.as_deref(), &bytes)
    }

    async fn write_outputs(&self, function: &FunctionDef, result: &InvokeResult) -> Result<(), InvocationError> {
        for b in &function.outputs {
            let msgs = outputs::messages(result.output(&b.name), b.binary, |w| {
                eprintln!("warning: [{}] output '{}': {w}", function.name, b.name)
            });
            let lines: Vec<String> = msgs.iter().map(|m| outputs::to_line(m)).collect();
            self.writer
                .append(&b.target, &lines)
                .await
                .map_err(|e| InvocationError::Output { binding: b.name.clone(), message: e.to_string() })?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_level_keys_are_matched_case_insensitively() {
        let r = parse_response("F", Some("application/json"), br#"{"outputs":{"res":1},"returnvalue":"x"}"#).unwrap();
        assert_eq!(r.outputs.get("res"), Some(&json!(1)));
        assert_eq!(r.return_value, Some(json!("x")));
    }

    #[test]
    fn output_keys_stay_case_sensitive() {
        let r = parse_response("F", Some("application/json; charset=utf-8"), br#"{"Outputs":{"Res":1}}"#).unwrap();
        assert_eq!(r.output("res"), None);
    }

    #[test]
    fn non_json_answers_fail() {
        assert!(matches!(parse_response("F", Some("text/plain"), b"{}"), Err(InvocationError::ContentType(_))));
        assert!(matches!(parse_response("F", None, b"{}"), Err(InvocationError::ContentType(_))));
        assert!(matches!(
            parse_response("F", Some("application/json"), b"{nope"),
            Err(InvocationError::InvalidResponse(_))
        ));
        assert!(matches!(
            parse_response("F", Some("application/json"), b"[1]"),
            Err(InvocationError::InvalidResponse(_))
        ));
    }
}
