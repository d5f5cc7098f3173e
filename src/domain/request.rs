//! SubmitJob's body, validated once into types that cannot hold bad input (DESIGN invariant 6).

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;
use url::{Host, Url};

/// The largest SubmitJob body accepted. The request is stored in one Table property, which holds at most
/// 32K UTF-16 characters, so the limit stays well below that.
pub const MAX_BODY_BYTES: usize = 16 * 1024;
/// Media Services limits each input file entry to 4000 characters.
const MAX_FILE_CHARS: usize = 4000;
const MAX_FILES: usize = 100;
const MAX_CORRELATION_ENTRIES: usize = 20;
const MAX_CORRELATION_CHARS: usize = 512;
/// Correlation keys the product sets on every Media Services job; callers may not use them.
pub const RESERVED_CORRELATION_KEYS: [&str; 2] = ["jobId", "attempt"];
/// Longest callback URL accepted.
const MAX_CALLBACK_CHARS: usize = 2048;

/// What a SubmitJob body is checked against, from the settings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rules {
    /// Transforms that exist in every account.
    pub transforms: BTreeSet<String>,
    /// Callbacks can be signed (`CALLBACK_SIGNING_KEY` is set); without that, `callbackUrl` is refused
    /// rather than called unsigned.
    pub callbacks: bool,
    /// Also accept `http://127.0.0.1` callback URLs: local tests only (`CALLBACK_ALLOW_HTTP_LOOPBACK`).
    pub loopback_http_callbacks: bool,
}

impl Rules {
    /// Rules for these transforms, with callbacks off.
    pub fn new(transforms: BTreeSet<String>) -> Rules {
        Rules { transforms, callbacks: false, loopback_http_callbacks: false }
    }
}

/// Why a request was refused: an HTTP status, a stable machine-readable code and a sentence for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadRequest {
    /// HTTP status to answer with.
    pub status: u16,
    /// Stable error code, e.g. `invalid_job_id`.
    pub code: &'static str,
    /// What was wrong and how to fix it.
    pub message: String,
}

impl BadRequest {
    fn new(code: &'static str, message: impl Into<String>) -> Self {
        BadRequest { status: 400, code, message: message.into() }
    }
}

impl fmt::Display for BadRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.message, self.code)
    }
}

/// A job id safe as a Table key, in a URL path and inside a Media Services resource name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub struct JobId(String);

impl TryFrom<String> for JobId {
    type Error = BadRequest;

    fn try_from(s: String) -> Result<Self, BadRequest> {
        JobId::parse(&s)
    }
}

impl From<JobId> for String {
    fn from(id: JobId) -> String {
        id.0
    }
}

impl JobId {
    /// Longest id accepted; leaves room for the attempt suffix in Media Services names.
    pub const MAX_LEN: usize = 100;

    /// Validates an id given by a caller (letters, digits, `-` and `_`).
    pub fn parse(s: &str) -> Result<JobId, BadRequest> {
        let ok_chars = s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if s.is_empty() || s.len() > Self::MAX_LEN || !ok_chars {
            return Err(BadRequest::new(
                "invalid_job_id",
                format!(
                    "jobId must be 1 to {} characters of letters, digits, '-' and '_' (got {:?})",
                    Self::MAX_LEN,
                    truncate(s, 120)
                ),
            ));
        }
        Ok(JobId(s.to_owned()))
    }

    /// A fresh id for a request that did not bring one.
    pub fn generate(rng: &mut impl rand::Rng) -> JobId {
        JobId(uuid::Builder::from_random_bytes(rng.random()).into_uuid().to_string())
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Media Services job priority.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(expecting = "a priority: Low, Normal or High")]
pub enum Priority {
    /// Low.
    Low,
    /// The service default.
    #[default]
    Normal,
    /// High.
    High,
}

/// Where the source video is read from (`JobInputHttp`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobInput {
    /// An https base URL the files are relative to, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_uri: Option<String>,
    /// File names (relative to `base_uri`) or absolute https URLs.
    pub files: Vec<String>,
}

/// A validated SubmitJob request. Its JSON form is stored with the job and compared on retries, so it is
/// canonical: fields in a fixed order, maps sorted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SubmitRequest {
    /// The caller's id, or a generated one.
    pub job_id: JobId,
    /// Transform name, one of the configured transforms.
    pub transform: String,
    /// Source files.
    pub input: JobInput,
    /// Media Services priority.
    pub priority: Priority,
    /// Caller's key/value pairs, echoed in events.
    pub correlation_data: BTreeMap<String, String>,
    /// Where the outcome notification is also POSTed, signed. Left out of the canonical JSON when absent,
    /// so requests stored before callbacks existed still compare equal to their retries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub callback_url: Option<String>,
}

/// The body as callers send it, before validation. The `expecting` texts replace serde's default
/// "expected struct RawRequest", so an error message describes the body, not this type.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, expecting = "a JSON object with transform and input")]
struct RawRequest {
    job_id: Option<String>,
    transform: Option<String>,
    input: Option<RawInput>,
    priority: Option<Priority>,
    correlation_data: Option<BTreeMap<String, String>>,
    callback_url: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, expecting = "an input object with files and optionally baseUri")]
struct RawInput {
    base_uri: Option<String>,
    files: Option<Vec<String>>,
}

impl SubmitRequest {
    /// Validates a SubmitJob body against `rules` (the transforms that exist in every account, whether
    /// callbacks are on); `rng` supplies a job id when the body has none.
    pub fn parse(body: Option<&str>, rules: &Rules, rng: &mut impl rand::Rng) -> Result<SubmitRequest, BadRequest> {
        let transforms = &rules.transforms;
        let body = body.filter(|b| !b.trim().is_empty()).ok_or_else(|| {
            BadRequest::new("missing_body", "the request needs a JSON body with at least transform and input")
        })?;
        if body.len() > MAX_BODY_BYTES {
            return Err(BadRequest {
                status: 413,
                code: "body_too_large",
                message: format!("the body is {} bytes; at most {MAX_BODY_BYTES} are accepted", body.len()),
            });
        }
        let raw: RawRequest = serde_json::from_str(body)
            .map_err(|e| BadRequest::new("malformed_json", format!("the body is not a valid job request: {e}")))?;

        let job_id = match raw.job_id {
            Some(id) => JobId::parse(&id)?,
            None => JobId::generate(rng),
        };
        let transform = raw
            .transform
            .filter(|t| !t.is_empty())
            .ok_or_else(|| BadRequest::new("missing_transform", "transform is required"))?;
        if !transforms.contains(&transform) {
            let known: Vec<&str> = transforms.iter().map(String::as_str).collect();
            return Err(BadRequest::new(
                "unknown_transform",
                format!(
                    "transform {:?} is not configured; known transforms: {}",
                    truncate(&transform, 120),
                    known.join(", ")
                ),
            ));
        }
        let input = validate_input(raw.input.ok_or_else(|| BadRequest::new("missing_input", "input is required"))?)?;
        let correlation_data = validate_correlation(raw.correlation_data.unwrap_or_default())?;
        let callback_url = match raw.callback_url {
            Some(url) => Some(validate_callback(url, rules)?),
            None => None,
        };

        Ok(SubmitRequest {
            job_id,
            transform,
            input,
            priority: raw.priority.unwrap_or_default(),
            correlation_data,
            callback_url,
        })
    }

    /// The canonical JSON stored with the job, compared on idempotent retries.
    pub fn canonical_json(&self) -> String {
        // Serializing plain structs and BTreeMaps cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }
}

fn validate_input(raw: RawInput) -> Result<JobInput, BadRequest> {
    let files = raw.files.unwrap_or_default();
    if files.is_empty() || files.len() > MAX_FILES {
        return Err(BadRequest::new("invalid_input", format!("input.files must list 1 to {MAX_FILES} files")));
    }
    for file in &files {
        if file.is_empty() || file.chars().count() > MAX_FILE_CHARS || file.chars().any(char::is_control) {
            return Err(BadRequest::new(
                "invalid_input",
                format!("each input file must be 1 to {MAX_FILE_CHARS} characters without control characters"),
            ));
        }
    }
    match &raw.base_uri {
        Some(base) => require_https(base, "input.baseUri")?,
        None => {
            for file in &files {
                require_https(file, "input.files (without baseUri, each file must be a full URL)")?;
            }
        }
    }
    Ok(JobInput { base_uri: raw.base_uri, files })
}

fn require_https(s: &str, field: &str) -> Result<(), BadRequest> {
    match Url::parse(s) {
        Ok(url) if url.scheme() == "https" && url.host().is_some() => Ok(()),
        _ => {
            Err(BadRequest::new("invalid_input", format!("{field} must be an https URL (got {:?})", truncate(s, 120))))
        }
    }
}

/// An https URL on a public host. IP literals of loopback, private, link-local and other non-public ranges
/// are refused, so a caller cannot aim the product's signed POSTs at the instance's own network (the
/// managed identity endpoint among others); `http://127.0.0.1` only when the rules allow it for tests.
/// Redirects are never followed when calling it, so a public URL cannot bounce there either.
fn validate_callback(raw: String, rules: &Rules) -> Result<String, BadRequest> {
    let bad = |why: &str| {
        BadRequest::new("invalid_callback_url", format!("callbackUrl {why} (got {:?})", truncate(&raw, 120)))
    };
    if !rules.callbacks {
        return Err(BadRequest::new(
            "callbacks_not_enabled",
            "callbackUrl is not accepted: this deployment has no CALLBACK_SIGNING_KEY to sign callbacks with",
        ));
    }
    if raw.chars().count() > MAX_CALLBACK_CHARS || raw.chars().any(char::is_control) {
        return Err(bad(&format!("must be at most {MAX_CALLBACK_CHARS} characters without control characters")));
    }
    let url = Url::parse(&raw).map_err(|_| bad("must be an https URL"))?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad("must not carry credentials; authenticate the callback by its signature"));
    }
    if url.fragment().is_some() {
        return Err(bad("must not have a #fragment"));
    }
    let loopback_http = rules.loopback_http_callbacks
        && url.scheme() == "http"
        && url.host() == Some(Host::Ipv4(std::net::Ipv4Addr::LOCALHOST));
    if loopback_http {
        return Ok(raw);
    }
    if url.scheme() != "https" {
        return Err(bad("must be an https URL"));
    }
    match url.host() {
        None => Err(bad("must be an https URL")),
        Some(Host::Domain(name)) => {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            if name == "localhost" || name.ends_with(".localhost") {
                Err(bad("must name a public host"))
            } else {
                Ok(raw)
            }
        }
        Some(Host::Ipv4(ip)) if !is_public(IpAddr::V4(ip)) => Err(bad("must name a public host")),
        Some(Host::Ipv6(ip)) if !is_public(IpAddr::V6(ip)) => Err(bad("must name a public host")),
        Some(_) => Ok(raw),
    }
}

/// Whether an address is on the public internet: not loopback, private, link-local, shared (CGNAT),
/// unspecified, multicast, broadcast or documentation space.
fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_multicast()
                || v4.is_broadcast()
                || v4.is_documentation()
                || a == 0
                || (a == 100 && (64..128).contains(&b)))
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00 // unique local
                || (first & 0xffc0) == 0xfe80) // link-local
        }
    }
}

fn validate_correlation(data: BTreeMap<String, String>) -> Result<BTreeMap<String, String>, BadRequest> {
    if data.len() > MAX_CORRELATION_ENTRIES {
        return Err(BadRequest::new(
            "invalid_correlation_data",
            format!("correlationData holds at most {MAX_CORRELATION_ENTRIES} entries"),
        ));
    }
    for (key, value) in &data {
        if RESERVED_CORRELATION_KEYS.contains(&key.as_str()) {
            return Err(BadRequest::new(
                "invalid_correlation_data",
                format!("correlationData key {key:?} is reserved; the product sets it on every job"),
            ));
        }
        let bad = |s: &str| s.chars().count() > MAX_CORRELATION_CHARS || s.chars().any(char::is_control);
        if key.is_empty() || bad(key) || bad(value) {
            return Err(BadRequest::new(
                "invalid_correlation_data",
                format!("correlationData keys and values must be non-empty keys of at most {MAX_CORRELATION_CHARS} characters without control characters"),
            ));
        }
    }
    Ok(data)
}

fn truncate(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn transforms() -> BTreeSet<String> {
        ["encode".to_owned()].into()
    }

    fn parse(body: &str) -> Result<SubmitRequest, BadRequest> {
        SubmitRequest::parse(Some(body), &Rules::new(transforms()), &mut rand::rngs::StdRng::seed_from_u64(7))
    }

    fn with_callback(url: &str, loopback: bool) -> Result<SubmitRequest, BadRequest> {
        let body = serde_json::json!({"transform": "encode", "input": {"files": ["https://x/a"]}, "callbackUrl": url});
        let rules = Rules { callbacks: true, loopback_http_callbacks: loopback, ..Rules::new(transforms()) };
        SubmitRequest::parse(Some(&body.to_string()), &rules, &mut rand::rngs::StdRng::seed_from_u64(7))
    }

    const GOOD: &str =
        r#"{"jobId":"j-1","transform":"encode","input":{"baseUri":"https://in.example/v/","files":["a.mp4"]}}"#;

    #[test]
    fn a_well_formed_request_parses_with_defaults() {
        let req = parse(GOOD).expect("valid");
        assert_eq!(req.job_id.as_str(), "j-1");
        assert_eq!(req.priority, Priority::Normal);
    }

    #[test]
    fn the_canonical_form_ignores_whitespace_and_key_order() {
        let other = r#"{ "input": {"files":["a.mp4"], "baseUri":"https://in.example/v/"}, "transform":"encode", "jobId":"j-1" }"#;
        assert_eq!(parse(GOOD).map(|r| r.canonical_json()), parse(other).map(|r| r.canonical_json()));
    }

    #[test]
    fn every_kind_of_bad_input_is_refused_with_its_own_code() {
        let cases = [
            ("{", "malformed_json"),
            (r#"{"transform":"encode"}"#, "missing_input"),
            (r#"{"input":{"files":["https://x/a"]}}"#, "missing_transform"),
            (r#"{"transform":"nope","input":{"files":["https://x/a"]}}"#, "unknown_transform"),
            (r#"{"transform":"encode","input":{"files":["http://x/a"]}}"#, "invalid_input"),
            (r#"{"transform":"encode","input":{"baseUri":"ftp://x/","files":["a"]}}"#, "invalid_input"),
            (r#"{"transform":"encode","input":{"files":[]}}"#, "invalid_input"),
            (r#"{"jobId":"a/b","transform":"encode","input":{"files":["https://x/a"]}}"#, "invalid_job_id"),
            (r#"{"jobId":"a#b","transform":"encode","input":{"files":["https://x/a"]}}"#, "invalid_job_id"),
            (r#"{"jobId":"a\u0001","transform":"encode","input":{"files":["https://x/a"]}}"#, "invalid_job_id"),
            (r#"{"transform":"encode","input":{"files":["https://x/a"]},"extra":1}"#, "malformed_json"),
            (
                r#"{"transform":"encode","input":{"files":["https://x/a"]},"correlationData":{"jobId":"x"}}"#,
                "invalid_correlation_data",
            ),
        ];
        for (body, code) in cases {
            assert_eq!(parse(body).map_err(|e| e.code), Err(code), "body {body}");
        }
    }

    #[test]
    fn a_body_of_the_wrong_shape_is_described_without_naming_internal_types() {
        for body in [
            "[]",
            "42",
            r#"{"transform":"encode","input":[]}"#,
            r#"{"transform":"encode","input":{"files":["https://x/a"]},"priority":1}"#,
        ] {
            let error = parse(body).expect_err(body);
            assert_eq!(error.code, "malformed_json", "body {body}");
            for internal in ["RawRequest", "RawInput", "struct", "enum Priority"] {
                assert!(!error.message.contains(internal), "body {body}: {}", error.message);
            }
        }
        let error = parse("[]").expect_err("an array is not a job request");
        assert!(error.message.contains("a JSON object with transform and input"), "{}", error.message);
    }

    #[test]
    fn a_missing_or_oversize_body_is_refused() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        assert_eq!(
            SubmitRequest::parse(None, &Rules::new(transforms()), &mut rng).map_err(|e| e.code),
            Err("missing_body")
        );
        let big =
            format!(r#"{{"transform":"encode","input":{{"files":["https://x/{}"]}}}}"#, "a".repeat(MAX_BODY_BYTES));
        assert_eq!(parse(&big).map_err(|e| e.status), Err(413));
    }

    #[test]
    fn a_callback_url_must_be_https_on_a_public_host() {
        assert_eq!(
            with_callback("https://hooks.example.com/ams?tenant=acme", false).map(|r| r.callback_url),
            Ok(Some("https://hooks.example.com/ams?tenant=acme".to_owned()))
        );
        for url in [
            "http://hooks.example.com/",
            "ftp://hooks.example.com/",
            "https://user:pw@hooks.example.com/",
            "https://hooks.example.com/#x",
            "https://localhost/",
            "https://127.0.0.1/",
            "https://10.0.0.4/",
            "https://169.254.169.254/metadata",
            "https://[::1]/",
            "https://[fd00::1]/",
            "http://127.0.0.1:8080/",
            "not a url",
        ] {
            assert_eq!(with_callback(url, false).map_err(|e| e.code), Err("invalid_callback_url"), "{url}");
        }
    }

    #[test]
    fn plain_http_to_127_0_0_1_is_accepted_only_when_the_setting_allows_it() {
        assert!(with_callback("http://127.0.0.1:8080/hook", true).is_ok());
        assert!(with_callback("http://127.0.0.2:8080/hook", true).is_err());
        assert!(with_callback("http://localhost:8080/hook", true).is_err());
    }

    #[test]
    fn a_callback_url_is_refused_when_callbacks_cannot_be_signed() {
        let body =
            r#"{"transform":"encode","input":{"files":["https://x/a"]},"callbackUrl":"https://hooks.example.com/"}"#;
        assert_eq!(parse(body).map_err(|e| e.code), Err("callbacks_not_enabled"));
    }

    #[test]
    fn a_request_without_a_callback_keeps_the_canonical_form_it_always_had() {
        let req = parse(GOOD).expect("valid");
        assert!(!req.canonical_json().contains("callbackUrl"), "{}", req.canonical_json());
    }
}
