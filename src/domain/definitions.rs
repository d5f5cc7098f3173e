//! The media definitions every account must hold (transforms, content key policies, streaming policies),
//! declared once in `definitions/media.json` and compiled into the handler, and the comparison of a live
//! resource with its definition.
//!
//! Secrets never live in the file: a value `{"setting": "NAME"}` is replaced by the app setting `NAME` when
//! the handler starts, and `{"setting": "NAME", "format": "https://{}/x", "optional": true}` puts the setting
//! into a template, or drops the field when the setting is not set.

use super::provider::Provider;
use serde::Deserialize;
use serde_json::{Map, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// The definitions file as compiled into the handler.
pub const MEDIA_DEFINITIONS: &str = include_str!("../../definitions/media.json");

/// Names AMS gives its built-in streaming policies; they exist in every account and are never synced.
pub const PREDEFINED_STREAMING_POLICIES: [&str; 6] = [
    "Predefined_DownloadOnly",
    "Predefined_ClearStreamingOnly",
    "Predefined_DownloadAndClearStreaming",
    "Predefined_ClearKey",
    "Predefined_MultiDrmCencStreaming",
    "Predefined_MultiDrmStreaming",
];

/// Fields the service adds to a stored resource; they never count as drift.
const SERVER_FIELDS: [&str; 5] = ["created", "lastModified", "policyId", "policyOptionId", "provisioningState"];

/// Fields that hold bytes (`format: byte` in the specs): the service keeps the bytes and answers canonical
/// base64, so two texts that decode to the same bytes are the same value.
const BYTE_FIELDS: [&str; 3] = ["keyValue", "ask", "fairPlayPfx"];

/// Fields the service may leave out when it reads a resource back although they were sent: a content key
/// policy option's `name`. Left out is not drift; a different value still is.
const UNECHOED_FIELDS: [&str; 1] = ["name"];

/// Defaults the service fills in when a definition leaves them out (transform outputs).
const SERVER_DEFAULTS: [(&str, &str); 2] = [("onError", "StopProcessingJob"), ("relativePriority", "Normal")];

/// A definitions file that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DefinitionsError {
    /// Not the expected JSON shape.
    #[error("the definitions file is not valid: {0}")]
    Malformed(String),
    /// A definition refers to something the file does not define.
    #[error("the definitions file is inconsistent: {0}")]
    Inconsistent(String),
}

/// The definitions as written in the file, setting references included.
#[derive(Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Definitions {
    /// Bumped whenever a definition changes, so every account is checked again at the next sweep.
    pub version: u32,
    /// Transform name to ARM body (`{"properties": {...}}`).
    #[serde(default)]
    pub transforms: BTreeMap<String, Value>,
    /// Content key policy name to ARM body.
    #[serde(default)]
    pub content_key_policies: BTreeMap<String, Value>,
    /// Streaming policy name to ARM body.
    #[serde(default)]
    pub streaming_policies: BTreeMap<String, Value>,
    /// Transforms whose body differs by provider (MK.IO names its built-in presets its own way): provider
    /// name, then transform name, to body. A transform not listed for a provider uses its `transforms` entry;
    /// one that is listed must exist there too, with as many outputs, so a job can fail over between
    /// providers under the same transform name.
    #[serde(default)]
    pub provider_transforms: BTreeMap<String, BTreeMap<String, Value>>,
    /// The streaming policy new locators use unless `STREAMING_POLICY` names another.
    pub default_streaming_policy: String,
}

// The resolved definitions hold secrets (token signing keys): never print their bodies.
impl fmt::Debug for Definitions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Definitions")
            .field("version", &self.version)
            .field("transforms", &self.transforms.keys().collect::<Vec<_>>())
            .field("content_key_policies", &self.content_key_policies.keys().collect::<Vec<_>>())
            .field("streaming_policies", &self.streaming_policies.keys().collect::<Vec<_>>())
            .field("provider_transforms", &self.provider_transforms.keys().collect::<Vec<_>>())
            .field("default_streaming_policy", &self.default_streaming_policy)
            .finish()
    }
}

/// One reference to an app setting inside a definition.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Reference {
    setting: String,
    format: Option<String>,
    optional: bool,
}

fn as_reference(value: &Value) -> Option<Reference> {
    let object = value.as_object()?;
    let setting = object.get("setting")?.as_str()?.to_owned();
    if object.keys().any(|k| !matches!(k.as_str(), "setting" | "format" | "optional")) {
        return None;
    }
    Some(Reference {
        setting,
        format: object.get("format").and_then(Value::as_str).map(str::to_owned),
        optional: object.get("optional").and_then(Value::as_bool).unwrap_or(false),
    })
}

impl Definitions {
    /// Parses and checks a definitions file.
    pub fn parse(text: &str) -> Result<Definitions, DefinitionsError> {
        let definitions: Definitions =
            serde_json::from_str(text).map_err(|e| DefinitionsError::Malformed(e.to_string()))?;
        for (kind, map) in [
            ("transform", &definitions.transforms),
            ("content key policy", &definitions.content_key_policies),
            ("streaming policy", &definitions.streaming_policies),
        ] {
            for (name, body) in map {
                if !body.get("properties").is_some_and(Value::is_object) {
                    return Err(DefinitionsError::Malformed(format!("{kind} {name:?} has no \"properties\" object")));
                }
                let valid = !name.is_empty()
                    && name.len() <= 260
                    && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
                if !valid {
                    return Err(DefinitionsError::Malformed(format!("{kind} name {name:?} is not valid")));
                }
            }
        }
        let outputs = definitions.transform_outputs();
        for (provider, transforms) in &definitions.provider_transforms {
            provider
                .parse::<Provider>()
                .map_err(|e| DefinitionsError::Malformed(format!("providerTransforms: {e}")))?;
            for (name, body) in transforms {
                let Some(wanted) = outputs.get(name) else {
                    return Err(DefinitionsError::Inconsistent(format!(
                        "providerTransforms.{provider} defines {name:?}, which is not in transforms"
                    )));
                };
                let count = body.pointer("/properties/outputs").and_then(Value::as_array).map(Vec::len);
                if count != Some(*wanted) {
                    return Err(DefinitionsError::Inconsistent(format!(
                        "providerTransforms.{provider}.{name} must have {wanted} output(s), like transforms.{name}"
                    )));
                }
            }
        }
        for (name, body) in &definitions.streaming_policies {
            if let Some(ckp) = body.pointer("/properties/defaultContentKeyPolicyName").and_then(Value::as_str) {
                if !definitions.content_key_policies.contains_key(ckp) {
                    return Err(DefinitionsError::Inconsistent(format!(
                        "streaming policy {name:?} uses content key policy {ckp:?}, which is not defined"
                    )));
                }
            }
        }
        if !definitions.has_streaming_policy(&definitions.default_streaming_policy) {
            return Err(DefinitionsError::Inconsistent(format!(
                "defaultStreamingPolicy {:?} is neither defined nor predefined",
                definitions.default_streaming_policy
            )));
        }
        Ok(definitions)
    }

    /// Whether locators may use this streaming policy: one of the file's or a predefined one.
    pub fn has_streaming_policy(&self, name: &str) -> bool {
        self.streaming_policies.contains_key(name) || PREDEFINED_STREAMING_POLICIES.contains(&name)
    }

    /// The body of transform `name` for accounts of `provider`: the provider's own if it has one.
    pub fn transform_for(&self, name: &str, provider: Provider) -> Option<&Value> {
        self.provider_transforms
            .get(provider.as_str())
            .and_then(|transforms| transforms.get(name))
            .or_else(|| self.transforms.get(name))
    }

    /// The number of outputs of each defined transform.
    pub fn transform_outputs(&self) -> BTreeMap<String, usize> {
        self.transforms
            .iter()
            .map(|(name, body)| {
                let outputs = body.pointer("/properties/outputs").and_then(Value::as_array).map_or(0, Vec::len);
                (name.clone(), outputs)
            })
            .collect()
    }

    /// Every app setting the definitions refer to, and whether each is required (not `optional`).
    pub fn referenced_settings(&self) -> BTreeMap<String, bool> {
        let mut found = BTreeMap::new();
        for body in self.bodies() {
            collect_references(body, &mut found);
        }
        found
    }

    /// The definitions with every setting reference replaced by its value. `Err` names a required setting
    /// that `lookup` does not have.
    pub fn resolve(&self, lookup: impl Fn(&str) -> Option<String>) -> Result<Definitions, String> {
        let mut resolved = self.clone();
        for map in [&mut resolved.transforms, &mut resolved.content_key_policies, &mut resolved.streaming_policies]
            .into_iter()
            .chain(resolved.provider_transforms.values_mut())
        {
            for body in map.values_mut() {
                substitute(body, &lookup)?;
            }
        }
        Ok(resolved)
    }

    /// The definitions without content key and streaming policies (publication turned off: the policies,
    /// and the secrets they need, are not wanted).
    pub fn transforms_only(&self) -> Definitions {
        Definitions { content_key_policies: BTreeMap::new(), streaming_policies: BTreeMap::new(), ..self.clone() }
    }

    fn bodies(&self) -> impl Iterator<Item = &Value> {
        self.transforms
            .values()
            .chain(self.content_key_policies.values())
            .chain(self.streaming_policies.values())
            .chain(self.provider_transforms.values().flat_map(BTreeMap::values))
    }
}

fn collect_references(value: &Value, found: &mut BTreeMap<String, bool>) {
    if let Some(reference) = as_reference(value) {
        let required = found.entry(reference.setting).or_insert(false);
        *required |= !reference.optional;
        return;
    }
    match value {
        Value::Object(map) => map.values().for_each(|v| collect_references(v, found)),
        Value::Array(items) => items.iter().for_each(|v| collect_references(v, found)),
        _ => {}
    }
}

fn substitute(value: &mut Value, lookup: &impl Fn(&str) -> Option<String>) -> Result<(), String> {
    match value {
        Value::Object(map) => {
            let mut drop = Vec::new();
            for (key, item) in map.iter_mut() {
                match as_reference(item) {
                    Some(reference) => match lookup(&reference.setting) {
                        Some(v) => {
                            let text = match &reference.format {
                                Some(format) => format.replacen("{}", &v, 1),
                                None => v,
                            };
                            *item = Value::String(text);
                        }
                        None if reference.optional => drop.push(key.clone()),
                        None => return Err(reference.setting),
                    },
                    None => substitute(item, lookup)?,
                }
            }
            for key in drop {
                map.remove(&key);
            }
        }
        Value::Array(items) => {
            for item in items {
                substitute(item, lookup)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// Where a live resource differs from its definition, as JSON paths (`outputs[0].preset.presetName`).
/// Both are `properties` objects. Fields the service adds, defaults it fills in and empty values it adds
/// are ignored; any other difference counts. Paths only, never values: definitions hold secrets.
pub fn differences(desired: &Value, live: &Value) -> Vec<String> {
    let mut found = Vec::new();
    diff(desired, live, "", &mut found);
    found
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

fn is_empty(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        _ => false,
    }
}

fn ignorable(key: &str, value: &Value) -> bool {
    SERVER_FIELDS.contains(&key)
        || is_empty(value)
        || SERVER_DEFAULTS.iter().any(|(k, v)| *k == key && value.as_str() == Some(v))
}

fn diff(desired: &Value, live: &Value, path: &str, found: &mut Vec<String>) {
    match (desired, live) {
        (Value::Object(want), Value::Object(have)) => diff_objects(want, have, path, found),
        (Value::Array(want), Value::Array(have)) => {
            if want.len() != have.len() {
                found.push(format!("{} has {} entries, not {}", display(path), have.len(), want.len()));
                return;
            }
            for (i, (w, h)) in want.iter().zip(have).enumerate() {
                diff(w, h, &format!("{path}[{i}]"), found);
            }
        }
        (w, h) if w == h => {}
        (Value::String(w), Value::String(h)) if BYTE_FIELDS.contains(&last_key(path)) && same_bytes(w, h) => {}
        _ => found.push(format!("{} differs", display(path))),
    }
}

fn diff_objects(want: &Map<String, Value>, have: &Map<String, Value>, path: &str, found: &mut Vec<String>) {
    for (key, w) in want {
        match have.get(key) {
            Some(h) => diff(w, h, &join(path, key), found),
            None if is_empty(w) => {}
            None if UNECHOED_FIELDS.contains(&key.as_str()) && !path.is_empty() => {}
            None => found.push(format!("{} is missing", join(path, key))),
        }
    }
    for (key, h) in have {
        if !want.contains_key(key) && !ignorable(key, h) {
            found.push(format!("{} is not in the definition", join(path, key)));
        }
    }
}

/// The last field name of a path such as `options[0].restriction.primaryVerificationKey.keyValue`.
fn last_key(path: &str) -> &str {
    path.rsplit('.').next().unwrap_or(path)
}

/// Whether two base64 texts (padded or not, standard or URL-safe alphabet) decode to the same bytes.
fn same_bytes(a: &str, b: &str) -> bool {
    use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
    use base64::Engine;
    let decode = |s: &str| {
        let s = s.trim().trim_end_matches('=');
        STANDARD_NO_PAD.decode(s).or_else(|_| URL_SAFE_NO_PAD.decode(s)).ok()
    };
    matches!((decode(a), decode(b)), (Some(x), Some(y)) if x == y)
}

fn display(path: &str) -> &str {
    if path.is_empty() {
        "the resource"
    } else {
        path
    }
}

/// The transform names of the definitions that are not configured, and the configured ones that are not
/// defined, or whose output count differs: empty when they agree.
pub fn transform_mismatches(definitions: &Definitions, configured: &BTreeMap<String, usize>) -> Vec<String> {
    let defined = definitions.transform_outputs();
    let names: BTreeSet<&String> = defined.keys().chain(configured.keys()).collect();
    names
        .into_iter()
        .filter_map(|name| match (defined.get(name), configured.get(name)) {
            (Some(d), Some(c)) if d == c => None,
            (Some(d), Some(c)) => Some(format!("{name} has {d} output(s) in the definitions but {c} in TRANSFORMS")),
            (Some(_), None) => Some(format!("{name} is defined but not listed in TRANSFORMS")),
            (None, _) => Some(format!("{name} is listed in TRANSFORMS but not defined")),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_policy_read_back_in_another_form_has_no_differences() {
        let desired = json!({"options": [{"name": "clear-key-token", "restriction": {"primaryVerificationKey": {
            "@odata.type": "#Microsoft.Media.ContentKeyPolicySymmetricTokenKey",
            "keyValue": "dGVzdC1zaWduaW5nLWtleS0zMi1ieXRlcy1sb25nISE"}}}]});
        // No option name, canonical padded base64, a server-assigned option id.
        let live = json!({"options": [{"policyOptionId": "x", "restriction": {"primaryVerificationKey": {
            "@odata.type": "#Microsoft.Media.ContentKeyPolicySymmetricTokenKey",
            "keyValue": "dGVzdC1zaWduaW5nLWtleS0zMi1ieXRlcy1sb25nISE="}}}]});
        assert_eq!(differences(&desired, &live), Vec::<String>::new());
        let other_key = json!({"options": [{"restriction": {"primaryVerificationKey": {
            "@odata.type": "#Microsoft.Media.ContentKeyPolicySymmetricTokenKey", "keyValue": "b3RoZXI="}}}]});
        assert_eq!(
            differences(&desired, &other_key),
            vec!["options[0].restriction.primaryVerificationKey.keyValue differs".to_owned()]
        );
        let renamed = json!({"options": [{"name": "other", "restriction": live["options"][0]["restriction"]}]});
        assert_eq!(differences(&desired, &renamed), vec!["options[0].name differs".to_owned()]);
    }

    #[test]
    fn the_compiled_definitions_parse_and_name_their_secrets() {
        let definitions = Definitions::parse(MEDIA_DEFINITIONS).expect("the shipped definitions are valid");
        let referenced = definitions.referenced_settings();
        assert_eq!(referenced.get("TOKEN_SIGNING_KEY"), Some(&true));
        assert_eq!(referenced.get("TRAFFIC_MANAGER_HOST"), Some(&false));
        assert!(definitions.has_streaming_policy(&definitions.default_streaming_policy));
    }

    #[test]
    fn resolving_fills_in_settings_and_drops_optional_fields_that_are_not_set() {
        let definitions = Definitions::parse(MEDIA_DEFINITIONS).expect("valid");
        let resolved = definitions
            .resolve(|name| (name == "TOKEN_SIGNING_KEY").then(|| "c2VjcmV0".to_owned()))
            .expect("the key is set");
        let text = serde_json::to_string(&resolved.content_key_policies).expect("json");
        assert!(text.contains("c2VjcmV0") && !text.contains("\"setting\""));
        let envelope = &resolved.streaming_policies["vod-envelope-v1"];
        assert!(envelope.pointer("/properties/envelopeEncryption/customKeyAcquisitionUrlTemplate").is_none());

        let with_host = definitions
            .resolve(|name| Some(if name == "TRAFFIC_MANAGER_HOST" { "keys.example".into() } else { "k".into() }))
            .expect("set");
        assert_eq!(
            with_host.streaming_policies["vod-envelope-v1"]
                .pointer("/properties/envelopeEncryption/customKeyAcquisitionUrlTemplate"),
            Some(&json!("https://keys.example/?kid={ContentKeyId}"))
        );
        assert_eq!(definitions.resolve(|_| None), Err("TOKEN_SIGNING_KEY".to_owned()));
    }

    #[test]
    fn the_resolved_definitions_never_print_their_secrets() {
        let resolved =
            Definitions::parse(MEDIA_DEFINITIONS).expect("valid").resolve(|_| Some("top-secret".into())).expect("set");
        assert!(!format!("{resolved:?}").contains("top-secret"));
    }

    #[test]
    fn fields_the_service_adds_are_not_drift() {
        let desired = json!({"outputs": [{"preset": {"@odata.type": "#X", "presetName": "AdaptiveStreaming"}}]});
        let live = json!({"created": "t", "lastModified": "t", "outputs": [{"onError": "StopProcessingJob",
            "relativePriority": "Normal", "preset": {"@odata.type": "#X", "presetName": "AdaptiveStreaming"}}]});
        assert!(differences(&desired, &live).is_empty());

        let policy = json!({"envelopeEncryption": {"enabledProtocols": {"hls": true}, "contentKeys": {"defaultKey": {"label": "a"}}}});
        let stored = json!({"created": "t", "envelopeEncryption": {"enabledProtocols": {"hls": true}, "clearTracks": [],
            "contentKeys": {"defaultKey": {"label": "a"}, "keyToTrackMappings": []}}});
        assert!(differences(&policy, &stored).is_empty());
    }

    #[test]
    fn a_changed_missing_or_extra_field_is_drift_named_by_path_without_its_value() {
        let desired = json!({"options": [{"name": "o", "restriction": {"keyValue": "secret-a"}}]});
        let changed =
            json!({"options": [{"policyOptionId": "1", "name": "o", "restriction": {"keyValue": "secret-b"}}]});
        let found = differences(&desired, &changed);
        assert_eq!(found, vec!["options[0].restriction.keyValue differs".to_owned()]);
        assert!(!found.concat().contains("secret"));

        assert_eq!(differences(&desired, &json!({"options": []})), vec!["options has 0 entries, not 1".to_owned()]);
        let extra =
            json!({"options": [{"name": "o", "restriction": {"keyValue": "secret-a"}}], "onError": "ContinueJob"});
        assert_eq!(differences(&desired, &extra), vec!["onError is not in the definition".to_owned()]);
        assert_eq!(differences(&json!({"a": 1}), &json!({})), vec!["a is missing".to_owned()]);
    }

    #[test]
    fn transforms_must_agree_with_the_transforms_setting() {
        let definitions = Definitions::parse(MEDIA_DEFINITIONS).expect("valid");
        let configured = |pairs: &[(&str, usize)]| pairs.iter().map(|(n, o)| (n.to_string(), *o)).collect();
        assert!(transform_mismatches(&definitions, &configured(&[("encode", 1)])).is_empty());
        assert_eq!(transform_mismatches(&definitions, &configured(&[("encode", 2)])).len(), 1);
        assert_eq!(transform_mismatches(&definitions, &configured(&[("encode", 1), ("thumbs", 1)])).len(), 1);
    }

    #[test]
    fn mkio_accounts_get_the_encode_transform_with_mkios_own_preset_name() {
        let definitions = Definitions::parse(MEDIA_DEFINITIONS).expect("valid");
        let preset = |p: Provider| {
            definitions
                .transform_for("encode", p)
                .and_then(|b| b.pointer("/properties/outputs/0/preset/presetName"))
                .cloned()
        };
        assert_eq!(preset(Provider::Ams), Some(json!("AdaptiveStreaming")));
        assert_eq!(preset(Provider::Mkio), Some(json!("H264MultipleBitrate1080p")));
        assert_eq!(definitions.transform_for("nope", Provider::Mkio), None);
    }

    #[test]
    fn a_provider_transform_must_match_a_transform_and_its_output_count() {
        let base = r#""transforms": {"t": {"properties": {"outputs": [{}]}}}, "defaultStreamingPolicy": "Predefined_ClearKey""#;
        let with =
            |extra: &str| Definitions::parse(&format!(r#"{{"version": 1, {base}, "providerTransforms": {extra}}}"#));
        assert!(with(r#"{"mkio": {"t": {"properties": {"outputs": [{"x": 1}]}}}}"#).is_ok());
        assert!(matches!(
            with(r#"{"mkio": {"u": {"properties": {"outputs": [{}]}}}}"#),
            Err(DefinitionsError::Inconsistent(_))
        ));
        assert!(matches!(
            with(r#"{"mkio": {"t": {"properties": {"outputs": [{}, {}]}}}}"#),
            Err(DefinitionsError::Inconsistent(_))
        ));
        assert!(matches!(with(r#"{"bitmovin": {}}"#), Err(DefinitionsError::Malformed(_))));
    }

    #[test]
    fn a_streaming_policy_must_use_a_defined_content_key_policy() {
        let text = r#"{"version": 1, "streamingPolicies": {"p": {"properties": {"defaultContentKeyPolicyName": "nope",
            "envelopeEncryption": {}}}}, "defaultStreamingPolicy": "p"}"#;
        assert!(matches!(Definitions::parse(text), Err(DefinitionsError::Inconsistent(_))));
        let unknown_default = r#"{"version": 1, "defaultStreamingPolicy": "missing"}"#;
        assert!(matches!(Definitions::parse(unknown_default), Err(DefinitionsError::Inconsistent(_))));
        assert!(Definitions::parse(r#"{"version": 1, "defaultStreamingPolicy": "Predefined_ClearKey"}"#).is_ok());
    }
}
