//! Loads the function app the way the Functions host does: `host.json`, one
//! `function.json` per function folder, and `local.settings.json` `Values`.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

use crate::ncrontab::Schedule;
use crate::route::RouteTemplate;

/// A configuration problem; every variant names the file it concerns.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid JSON or has the wrong shape.
    #[error("{path} is not valid: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The JSON error.
        source: serde_json::Error,
    },
    /// The file parses but its content is not acceptable.
    #[error("{path}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

fn invalid(path: &Path, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { path: path.to_path_buf(), message: message.into() }
}

/// App settings: `local.settings.json` `Values` with devhost's own environment
/// taking precedence, as in Core Tools.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    local: BTreeMap<String, String>,
    process: HashMap<String, String>,
}

impl Settings {
    /// Builds settings from local values and a snapshot of the process environment.
    pub fn new(local: BTreeMap<String, String>, process: HashMap<String, String>) -> Self {
        Settings { local, process }
    }

    /// Looks a setting up: the process environment first, then local values.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.process.get(name).or_else(|| self.local.get(name)).map(String::as_str)
    }

    /// Local values to add to the handler's environment, and the names skipped
    /// because the environment already defines them.
    pub fn handler_env(&self) -> (Vec<(String, String)>, Vec<String>) {
        let mut add = Vec::new();
        let mut skipped = Vec::new();
        for (k, v) in &self.local {
            if self.process.contains_key(k) {
                skipped.push(k.clone());
            } else {
                add.push((k.clone(), v.clone()));
            }
        }
        (add, skipped)
    }

    /// Replaces every `%NAME%` with the setting's value; unknown names are
    /// reported through `Err` with the first missing name.
    pub fn expand(&self, text: &str) -> Result<String, String> {
        let mut out = String::new();
        let mut rest = text;
        while let Some(start) = rest.find('%') {
            let after = &rest[start + 1..];
            let Some(end) = after.find('%') else { break };
            let name = &after[..end];
            out.push_str(&rest[..start]);
            if name.is_empty() {
                // `%%` stays a literal percent sign.
                out.push('%');
            } else {
                out.push_str(self.get(name).ok_or_else(|| name.to_string())?);
            }
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }
}

/// The `customHandler` part of host.json plus the HTTP settings devhost needs.
#[derive(Debug, Clone)]
pub struct HostConfig {
    /// `customHandler.description.defaultExecutablePath` as written.
    pub executable: String,
    /// `customHandler.description.workingDirectory` as written (may be empty).
    pub working_directory: String,
    /// `customHandler.description.arguments` with `%SETTING%` expanded.
    pub arguments: Vec<String>,
    /// `customHandler.enableForwardingHttpRequest`.
    pub enable_forwarding: bool,
    /// `extensions.http.routePrefix` (default `api`).
    pub route_prefix: String,
    /// Top-level `functionTimeout`, if set.
    pub function_timeout: Option<Duration>,
}

/// An HTTP trigger's `authLevel`: which key a caller must present ([`crate::keys`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthLevel {
    /// No key.
    Anonymous,
    /// A key of this function, a host key or the master key.
    Function,
    /// The master key.
    Admin,
}

/// What starts a function.
#[derive(Debug, Clone)]
pub enum Trigger {
    /// `httpTrigger`.
    Http {
        /// Full route template including the prefix.
        route: RouteTemplate,
        /// Allowed methods in upper case; `None` allows all.
        methods: Option<Vec<String>>,
        /// `authLevel` (default `function`, as in the host).
        auth_level: AuthLevel,
    },
    /// `eventGridTrigger`.
    EventGrid,
    /// `timerTrigger`.
    Timer {
        /// The resolved expression.
        expression: String,
        /// The parsed schedule.
        schedule: Schedule,
        /// `runOnStartup`.
        run_on_startup: bool,
        /// `useMonitor`, already forced off for sub-minute schedules.
        use_monitor: bool,
    },
    /// Any other trigger type; such functions can only be run through the admin API.
    Other {
        /// The binding type as written.
        kind: String,
    },
}

/// A non-http output binding whose messages devhost records in a file.
#[derive(Debug, Clone)]
pub struct OutputBinding {
    /// Binding name (key in `Outputs`, or `$return`).
    pub name: String,
    /// Binding type as written (`serviceBus`, `queue`, `eventHub`).
    pub kind: String,
    /// Queue, topic or event hub name; also the output file's stem.
    pub target: String,
    /// `dataType: binary` switches off the base64 gotcha.
    pub binary: bool,
}

/// One function of the app.
#[derive(Debug, Clone)]
pub struct FunctionDef {
    /// Folder name.
    pub name: String,
    /// The trigger binding's name (key in `Data`).
    pub trigger_name: String,
    /// The trigger.
    pub trigger: Trigger,
    /// Name of the `http` output binding (`res` or `$return`), if any.
    pub http_output: Option<String>,
    /// Output bindings recorded to files.
    pub outputs: Vec<OutputBinding>,
    /// True when the HTTP request is forwarded raw (contracts 1.6).
    pub forwarded: bool,
}

/// The whole app.
#[derive(Debug, Clone)]
pub struct AppConfig {
    /// The app root directory.
    pub app_root: PathBuf,
    /// host.json settings.
    pub host: HostConfig,
    /// Functions sorted by name.
    pub functions: Vec<FunctionDef>,
    /// App settings.
    pub settings: Settings,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct RawHost {
    custom_handler: Option<RawCustomHandler>,
    http_worker: Option<RawCustomHandler>,
    extensions: Option<RawExtensions>,
    function_timeout: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct RawCustomHandler {
    description: Option<RawDescription>,
    #[serde(default)]
    enable_forwarding_http_request: bool,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct RawDescription {
    #[serde(default)]
    default_executable_path: String,
    #[serde(default)]
    working_directory: String,
    #[serde(default)]
    arguments: Vec<String>,
}

#[derive(Deserialize, Default)]
struct RawExtensions {
    http: Option<RawHttp>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct RawHttp {
    route_prefix: Option<String>,
}

#[derive(Deserialize)]
struct RawFunction {
    bindings: Vec<RawBinding>,
    #[serde(default)]
    disabled: bool,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawBinding {
    #[serde(rename = "type")]
    kind: Option<String>,
    direction: Option<String>,
    name: Option<String>,
    route: Option<String>,
    methods: Option<Vec<String>>,
    auth_level: Option<String>,
    schedule: Option<String>,
    #[serde(default)]
    run_on_startup: bool,
    use_monitor: Option<bool>,
    queue_name: Option<String>,
    topic_name: Option<String>,
    event_hub_name: Option<String>,
    data_type: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RawLocalSettings {
    #[serde(default)]
    values: BTreeMap<String, Value>,
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, ConfigError> {
    let text =
        std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_path_buf(), source })?;
    serde_json::from_str(&text).map_err(|source| ConfigError::Parse { path: path.to_path_buf(), source })
}

/// Reads `local.settings.json` `Values` (the file is optional).
pub fn load_local_settings(app_root: &Path) -> Result<BTreeMap<String, String>, ConfigError> {
    let path = app_root.join("local.settings.json");
    if !path.exists() {
        return Ok(BTreeMap::new());
    }
    let raw: RawLocalSettings = read_json(&path)?;
    let mut out = BTreeMap::new();
    for (k, v) in raw.values {
        let text = match v {
            Value::String(s) => s,
            Value::Null => continue,
            Value::Number(_) | Value::Bool(_) => v.to_string(),
            _ => return Err(invalid(&path, format!("Values.{k} must be a string"))),
        };
        out.insert(k, text);
    }
    Ok(out)
}

/// Parses a .NET `TimeSpan` such as `00:05:00` or `1.00:00:00`.
fn parse_timespan(text: &str) -> Option<Duration> {
    let (days, rest) = match text.split_once('.') {
        Some((d, r)) if r.contains(':') && !d.contains(':') => (d.parse::<u64>().ok()?, r),
        _ => (0, text),
    };
    let parts: Vec<&str> = rest.split(':').collect();
    if parts.len() != 3 {
        return None;
    }
    let h: u64 = parts[0].parse().ok()?;
    let m: u64 = parts[1].parse().ok()?;
    let s: f64 = parts[2].parse().ok()?;
    if !(0.0..60.0).contains(&s) {
        return None;
    }
    Some(Duration::from_secs((days * 24 + h) * 3600 + m * 60) + Duration::from_secs_f64(s))
}

fn load_host(app_root: &Path, settings: &Settings, handler_override: bool) -> Result<HostConfig, ConfigError> {
    let path = app_root.join("host.json");
    let raw: RawHost = read_json(&path)?;
    if raw.custom_handler.is_some() && raw.http_worker.is_some() {
        eprintln!("warning: host.json has both 'customHandler' and the deprecated 'httpWorker'; using 'customHandler'");
    }
    let section = raw.custom_handler.or(raw.http_worker);
    if section.is_none() && !handler_override {
        return Err(invalid(&path, "no 'customHandler' section"));
    }
    let section = section.unwrap_or_default();
    let desc = section.description.unwrap_or_default();
    if desc.default_executable_path.trim().is_empty() && !handler_override {
        return Err(invalid(&path, "customHandler.description.defaultExecutablePath is missing or empty"));
    }
    let arguments = desc
        .arguments
        .iter()
        // Unknown settings are left as written, like environment expansion does.
        .map(|a| settings.expand(a).unwrap_or_else(|_| a.clone()))
        .collect();
    let function_timeout = match raw.function_timeout {
        None => None,
        Some(t) => Some(
            parse_timespan(&t)
                .ok_or_else(|| invalid(&path, format!("functionTimeout '{t}' is not a time span like 00:05:00")))?,
        ),
    };
    let route_prefix =
        raw.extensions.and_then(|e| e.http).and_then(|h| h.route_prefix).unwrap_or_else(|| "api".to_string());
    Ok(HostConfig {
        executable: desc.default_executable_path,
        working_directory: desc.working_directory,
        arguments,
        enable_forwarding: section.enable_forwarding_http_request,
        route_prefix: route_prefix.trim_matches('/').to_string(),
        function_timeout,
    })
}

fn valid_target(t: &str) -> bool {
    !t.is_empty() && t != "." && t != ".." && !t.contains(['/', '\\', '\0'])
}

fn load_function(
    path: &Path,
    name: &str,
    host: &HostConfig,
    settings: &Settings,
) -> Result<Option<FunctionDef>, ConfigError> {
    let raw: RawFunction = read_json(path)?;
    if raw.disabled {
        eprintln!("Function '{name}' is disabled in function.json; skipping it");
        return Ok(None);
    }
    let mut trigger: Option<(String, Trigger)> = None;
    let mut http_output = None;
    let mut outputs = Vec::new();
    let (mut inputs, mut outs, mut http_in, mut http_out) = (0, 0, 0, 0);
    for (i, b) in raw.bindings.iter().enumerate() {
        let kind = b.kind.clone().ok_or_else(|| invalid(path, format!("binding {i} has no 'type'")))?;
        let bname = b.name.clone().ok_or_else(|| invalid(path, format!("binding {i} ({kind}) has no 'name'")))?;
        let direction = b
            .direction
            .clone()
            .ok_or_else(|| invalid(path, format!("binding '{bname}' has no 'direction'")))?
            .to_ascii_lowercase();
        let lkind = kind.to_ascii_lowercase();
        match direction.as_str() {
            "in" | "inout" => inputs += 1,
            "out" => outs += 1,
            other => {
                return Err(invalid(path, format!("binding '{bname}' has unknown direction '{other}'")));
            }
        }
        if direction == "out" {
            if lkind == "http" {
                http_out += 1;
                http_output = Some(bname);
                continue;
            }
            let target = match lkind.as_str() {
                "servicebus" => b.queue_name.clone().or_else(|| b.topic_name.clone()),
                "queue" => b.queue_name.clone(),
                "eventhub" => b.event_hub_name.clone(),
                _ => {
                    eprintln!("warning: {}: output binding '{bname}' of type '{kind}' is not emulated; its outputs are ignored", path.display());
                    continue;
                }
            };
            let target = target.ok_or_else(|| {
                invalid(path, format!("output binding '{bname}' ({kind}) needs queueName, topicName or eventHubName"))
            })?;
            let target = settings.expand(&target).map_err(|missing| {
                invalid(path, format!("output binding '{bname}' refers to setting '{missing}', which is not defined"))
            })?;
            if !valid_target(&target) {
                return Err(invalid(path, format!("output binding '{bname}' has an unusable name '{target}'")));
            }
            outputs.push(OutputBinding {
                name: bname,
                kind,
                target,
                binary: b.data_type.as_deref().is_some_and(|d| d.eq_ignore_ascii_case("binary")),
            });
            continue;
        }
        if !lkind.ends_with("trigger") {
            eprintln!("warning: {}: input binding '{bname}' of type '{kind}' is not emulated", path.display());
            continue;
        }
        if trigger.is_some() {
            return Err(invalid(path, "more than one trigger binding"));
        }
        let t = match lkind.as_str() {
            "httptrigger" => {
                http_in += 1;
                let route_text = b.route.clone().unwrap_or_else(|| name.to_string());
                let route = RouteTemplate::parse(&host.route_prefix, &route_text)
                    .map_err(|e| invalid(path, format!("route '{route_text}': {e}")))?;
                let methods = b
                    .methods
                    .as_ref()
                    .filter(|m| !m.is_empty())
                    .map(|m| m.iter().map(|x| x.to_ascii_uppercase()).collect());
                let auth_level = match b.auth_level.as_deref().map(str::to_ascii_lowercase).as_deref() {
                    None | Some("function") => AuthLevel::Function,
                    Some("anonymous") => AuthLevel::Anonymous,
                    Some("admin") => AuthLevel::Admin,
                    Some(other) => {
                        return Err(invalid(
                            path,
                            format!("authLevel '{other}' is not one of anonymous, function, admin"),
                        ))
                    }
                };
                Trigger::Http { route, methods, auth_level }
            }
            "eventgridtrigger" => Trigger::EventGrid,
            "timertrigger" => {
                let written = b
                    .schedule
                    .clone()
                    .ok_or_else(|| invalid(path, format!("timer binding '{bname}' has no 'schedule'")))?;
                let expression = settings.expand(&written).map_err(|missing| {
                    invalid(
                        path,
                        format!("schedule '{written}' refers to app setting '{missing}', which is not defined"),
                    )
                })?;
                let schedule =
                    Schedule::parse(&expression).map_err(|e| invalid(path, format!("schedule '{expression}': {e}")))?;
                let use_monitor = b.use_monitor.unwrap_or(true) && !schedule.fires_more_than_once_a_minute();
                Trigger::Timer { expression, schedule, run_on_startup: b.run_on_startup, use_monitor }
            }
            _ => Trigger::Other { kind: kind.clone() },
        };
        trigger = Some((bname, t));
    }
    let (trigger_name, trigger) =
        trigger.ok_or_else(|| invalid(path, "no trigger binding (a binding whose type ends in 'Trigger')"))?;
    let forwarded = host.enable_forwarding && inputs == 1 && outs == 1 && http_in == 1 && http_out == 1;
    Ok(Some(FunctionDef { name: name.to_string(), trigger_name, trigger, http_output, outputs, forwarded }))
}

/// Loads the whole app. `handler_override` relaxes the host.json executable checks.
pub fn load(
    app_root: &Path,
    process_env: HashMap<String, String>,
    handler_override: bool,
) -> Result<AppConfig, ConfigError> {
    let local = load_local_settings(app_root)?;
    let settings = Settings::new(local, process_env);
    let host = load_host(app_root, &settings, handler_override)?;
    let entries =
        std::fs::read_dir(app_root).map_err(|source| ConfigError::Read { path: app_root.to_path_buf(), source })?;
    let mut functions = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| ConfigError::Read { path: app_root.to_path_buf(), source })?;
        let fpath = entry.path().join("function.json");
        if !fpath.is_file() {
            continue;
        }
        let name = entry.file_name().to_string_lossy().into_owned();
        let disabled_key = format!("AzureWebJobs.{name}.Disabled");
        if settings.get(&disabled_key).is_some_and(|v| v.eq_ignore_ascii_case("true") || v == "1") {
            eprintln!("Function '{name}' is disabled by setting '{disabled_key}'; skipping it");
            continue;
        }
        if let Some(f) = load_function(&fpath, &name, &host, &settings)? {
            functions.push(f);
        }
    }
    functions.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(AppConfig { app_root: app_root.to_path_buf(), host, functions, settings })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(local: &[(&str, &str)], env: &[(&str, &str)]) -> Settings {
        Settings::new(
            local.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect(),
            env.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect(),
        )
    }

    #[test]
    fn the_process_environment_wins_over_local_settings() {
        let s = settings(&[("A", "local"), ("B", "local")], &[("A", "env")]);
        assert_eq!(s.get("A"), Some("env"));
        assert_eq!(s.get("B"), Some("local"));
        let (add, skipped) = s.handler_env();
        assert_eq!(add, vec![("B".to_string(), "local".to_string())]);
        assert_eq!(skipped, vec!["A".to_string()]);
    }

    #[test]
    fn percent_names_expand_to_settings() {
        let s = settings(&[("Sched", "0 * * * * *")], &[]);
        assert_eq!(s.expand("%Sched%").unwrap(), "0 * * * * *");
        assert_eq!(s.expand("a%%b").unwrap(), "a%b");
        assert_eq!(s.expand("%Nope%").unwrap_err(), "Nope");
    }

    #[test]
    fn time_spans_parse_like_dotnet() {
        assert_eq!(parse_timespan("00:05:00"), Some(Duration::from_secs(300)));
        assert_eq!(parse_timespan("1.00:00:01"), Some(Duration::from_secs(86401)));
        assert_eq!(parse_timespan("5 minutes"), None);
    }
}
