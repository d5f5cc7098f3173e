//! A minimal Blob service REST subset for the emulator's storage accounts,
//! under `http://127.0.0.1:PORT/blob/{storageAccount}/{container}/{blob}`:
//! Get/Head/Put/Delete Blob, List Blobs, Create Container and asynchronous
//! Copy Blob, all authorised by SAS (service or account SAS) only. Errors use Azure's XML error shape and the
//! `x-ms-error-code` header, so storage clients parse them as they would Azure's.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State as AxumState;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};

use crate::arm::{percent_decode, query_pairs};
use crate::state::{Emulator, State};
use crate::storage::{Blob, CopyInfo, CopyStatus, PendingCopy, Permission, SasError, Storage};
use crate::timefmt::http_time;

/// Path prefix of the blob service.
pub const PREFIX: &str = "/blob/";
/// `x-ms-version` answered when the request names none.
const SERVICE_VERSION: &str = "2023-11-03";

/// URL of a container (no SAS) in the emulator's blob service.
pub fn container_url(base_url: &str, storage: &str, container: &str) -> String {
    format!("{base_url}{PREFIX}{storage}/{container}")
}

/// A refused blob request, as Azure Storage reports it.
#[derive(Debug)]
pub struct BlobError {
    status: StatusCode,
    code: &'static str,
    message: String,
    detail: Option<String>,
}

impl BlobError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> BlobError {
        BlobError { status, code, message: message.into(), detail: None }
    }

    fn from_sas(e: SasError) -> BlobError {
        match e {
            SasError::AuthenticationFailed(detail) => BlobError {
                status: StatusCode::FORBIDDEN,
                code: "AuthenticationFailed",
                message: "Server failed to authenticate the request. Make sure the value of Authorization header is \
                          formed correctly including the signature."
                    .into(),
                detail: Some(detail),
            },
            SasError::PermissionMismatch => {
                BlobError::new(StatusCode::FORBIDDEN, "AuthorizationPermissionMismatch", e.to_string())
            }
            SasError::ResourceTypeMismatch => {
                BlobError::new(StatusCode::FORBIDDEN, "AuthorizationResourceTypeMismatch", e.to_string())
            }
        }
    }

    /// The copy source could not be read: Azure reports the source's failure under one code.
    fn copy_source(status: StatusCode, message: impl Into<String>) -> BlobError {
        BlobError::new(status, "CannotVerifyCopySource", message)
    }

    fn into_response(self, head: bool) -> Response {
        let request_id = uuid::Uuid::new_v4();
        let mut xml = format!(
            "<?xml version=\"1.0\" encoding=\"utf-8\"?><Error><Code>{}</Code><Message>{}\nRequestId:{request_id}\nTime:{}</Message>",
            self.code,
            xml_escape(&self.message),
            crate::timefmt::arm_time(&Utc::now()),
        );
        if let Some(d) = &self.detail {
            xml.push_str(&format!("<AuthenticationErrorDetail>{}</AuthenticationErrorDetail>", xml_escape(d)));
        }
        xml.push_str("</Error>");
        let body = if head { String::new() } else { xml };
        let mut resp = (self.status, body).into_response();
        let h = resp.headers_mut();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/xml"));
        insert(h, "x-ms-error-code", self.code);
        insert(h, "x-ms-request-id", &request_id.to_string());
        resp
    }
}

fn insert(h: &mut HeaderMap, name: &'static str, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        h.insert(HeaderName::from_static(name), v);
    }
}

/// Escapes text for XML element content and attributes.
pub fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

/// A parsed `/blob/{storage}/{container}[/{blob}]` path.
#[derive(Debug, PartialEq)]
struct BlobPath {
    storage: String,
    container: String,
    blob: Option<String>,
}

fn parse_path(path: &str) -> Option<BlobPath> {
    let rest = path.strip_prefix(PREFIX)?;
    let mut parts = rest.splitn(3, '/');
    let storage = percent_decode(parts.next()?).to_ascii_lowercase();
    let container = percent_decode(parts.next().filter(|c| !c.is_empty())?);
    let blob =
        parts.next().filter(|b| !b.is_empty()).map(|b| b.split('/').map(percent_decode).collect::<Vec<_>>().join("/"));
    (!storage.is_empty()).then_some(BlobPath { storage, container, blob })
}

fn storage_mut<'a>(state: &'a mut State, name: &str) -> Option<&'a mut Storage> {
    state.accounts.values_mut().map(|a| &mut a.storage).find(|s| s.name == name)
}

/// Entry point for everything under [`PREFIX`].
pub async fn handle(
    AxumState(emulator): AxumState<Arc<Emulator>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let head = method == Method::HEAD;
    let version = headers.get("x-ms-version").and_then(|v| v.to_str().ok()).unwrap_or(SERVICE_VERSION).to_string();
    // Storage answers a client's request id back on every response, errors included, so a client can match
    // its logs to the service's; Microsoft's SDKs send one with every call.
    let client_request_id = headers.get("x-ms-client-request-id").cloned();
    let mut resp = match route(&emulator, &method, &uri, &headers, body) {
        Ok(r) => r,
        Err(e) => {
            tracing::debug!(%method, %uri, code = e.code, "blob error");
            e.into_response(head)
        }
    };
    let h = resp.headers_mut();
    insert(h, "x-ms-version", &version);
    if !h.contains_key("x-ms-request-id") {
        insert(h, "x-ms-request-id", &uuid::Uuid::new_v4().to_string());
    }
    insert(h, "date", &http_time(&Utc::now()));
    if let Some(id) = client_request_id {
        h.insert(HeaderName::from_static("x-ms-client-request-id"), id);
    }
    resp
}

fn route(
    emulator: &Emulator,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: Bytes,
) -> Result<Response, BlobError> {
    if let Some(storage) = service_path(uri.path()) {
        let query = query_pairs(uri);
        let qv = |k: &str| query.iter().find(|(qk, _)| qk == k).map(|(_, v)| v.as_str());
        if method == Method::POST && qv("restype") == Some("service") && qv("comp") == Some("userdelegationkey") {
            let version = headers.get("x-ms-version").and_then(|v| v.to_str().ok()).unwrap_or(SERVICE_VERSION);
            return user_delegation_key(&mut emulator.lock(), &storage, &body, version, Utc::now());
        }
    }
    let path = parse_path(uri.path()).ok_or_else(|| {
        BlobError::new(
            StatusCode::BAD_REQUEST,
            "InvalidUri",
            "The requested URI does not represent any resource on the server.",
        )
    })?;
    let query = query_pairs(uri);
    let now = Utc::now();
    let mut state = emulator.lock();
    let qv = |k: &str| query.iter().find(|(qk, _)| qk == k).map(|(_, v)| v.as_str());
    match (&path.blob, method.as_str()) {
        (None, "GET") if qv("restype") == Some("container") && qv("comp") == Some("list") => {
            let storage = find(&mut state, &path.storage)?;
            storage.check_sas(&query, &path.container, None, &[Permission::List], &now).map_err(BlobError::from_sas)?;
            let version = headers.get("x-ms-version").and_then(|v| v.to_str().ok());
            list_blobs(emulator, storage, &path.container, &query, version)
        }
        (None, "PUT") if qv("restype") == Some("container") && qv("comp").is_none() => {
            create_container(&mut state, &path, &query, now)
        }
        (None, _) => Err(BlobError::new(
            StatusCode::BAD_REQUEST,
            "UnsupportedHttpVerb",
            "Only List Blobs (GET ?restype=container&comp=list) and Create Container (PUT ?restype=container) \
             are supported on a container.",
        )),
        (Some(blob), "GET" | "HEAD") => {
            let storage = find(&mut state, &path.storage)?;
            storage
                .check_sas(&query, &path.container, Some(blob), &[Permission::Read], &now)
                .map_err(BlobError::from_sas)?;
            let b = existing_blob(storage, &path.container, blob)?;
            Ok(blob_response(b))
        }
        (Some(blob), "PUT") => match headers.get("x-ms-copy-source") {
            Some(source) => {
                let source = source.to_str().map_err(|_| invalid_header("x-ms-copy-source"))?.to_string();
                copy_blob(emulator, &mut state, &path, blob, &query, &source, now)
            }
            None => put_blob(&mut state, &path, blob, &query, headers, body, now),
        },
        (Some(blob), "DELETE") => {
            let storage = find(&mut state, &path.storage)?;
            storage
                .check_sas(&query, &path.container, Some(blob), &[Permission::Delete], &now)
                .map_err(BlobError::from_sas)?;
            existing_blob(storage, &path.container, blob)?;
            if let Some(c) = storage.containers.get_mut(&path.container) {
                c.blobs.remove(blob);
            }
            storage.pending.retain(|p| !(p.container == path.container && p.blob == *blob));
            Ok(StatusCode::ACCEPTED.into_response())
        }
        (Some(_), m) => Err(BlobError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "UnsupportedHttpVerb",
            format!("The resource doesn't support the specified HTTP verb {m}."),
        )),
    }
}

/// `/blob/{storage}` or `/blob/{storage}/`: the service itself.
fn service_path(path: &str) -> Option<String> {
    let name = path.strip_prefix(PREFIX)?.trim_end_matches('/');
    (!name.is_empty() && !name.contains('/')).then(|| percent_decode(name).to_ascii_lowercase())
}

/// The text of the first `<tag>...</tag>` in `xml`.
fn element<'a>(xml: &'a str, tag: &str) -> Option<&'a str> {
    let start = xml.find(&format!("<{tag}>"))? + tag.len() + 2;
    let end = start + xml[start..].find(&format!("</{tag}>"))?;
    Some(xml[start..end].trim())
}

/// Get User Delegation Key: `<KeyInfo><Start/><Expiry/></KeyInfo>` in, `<UserDelegationKey>` out. The
/// service needs an Entra ID bearer token and answers 403 without one; the emulator takes the call without
/// one, as it takes ARM calls without one, so the local stack runs with `ARM_AUTH=none`. Start and expiry
/// follow the service's rules: both given, expiry after start, at most seven days from now.
fn user_delegation_key(
    state: &mut State,
    storage: &str,
    body: &[u8],
    version: &str,
    now: DateTime<Utc>,
) -> Result<Response, BlobError> {
    let storage = find(state, storage)?;
    let invalid = |m: &str| BlobError::new(StatusCode::BAD_REQUEST, "InvalidXmlNodeValue", m.to_owned());
    let xml = std::str::from_utf8(body).map_err(|_| invalid("The request body is not UTF-8."))?;
    let (Some(start), Some(expiry)) = (element(xml, "Start"), element(xml, "Expiry")) else {
        return Err(invalid("KeyInfo needs Start and Expiry."));
    };
    let parse = |t: &str| chrono::DateTime::parse_from_rfc3339(t).map(|t| t.with_timezone(&Utc));
    let (Ok(from), Ok(until)) = (parse(start), parse(expiry)) else {
        return Err(invalid("Start and Expiry must be ISO 8601 UTC times."));
    };
    if until <= from || until > now + chrono::Duration::days(7) {
        return Err(invalid("Expiry must be after Start and at most seven days from now."));
    }
    let key = storage.user_delegation_key(start, expiry, version);
    let xml = format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?><UserDelegationKey><SignedOid>{}</SignedOid><SignedTid>{}</SignedTid>\
         <SignedStart>{}</SignedStart><SignedExpiry>{}</SignedExpiry><SignedService>{}</SignedService>\
         <SignedVersion>{}</SignedVersion><Value>{}</Value></UserDelegationKey>",
        key.oid,
        key.tid,
        xml_escape(&key.start),
        xml_escape(&key.expiry),
        key.service,
        xml_escape(&key.version),
        key.value
    );
    let mut resp = (StatusCode::OK, xml).into_response();
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/xml"));
    Ok(resp)
}

/// Create Container: needs a SAS granting `c` or `w` at container level (an account SAS with `srt` including
/// `c`; a service SAS for that container works too). 201, or 409 `ContainerAlreadyExists`. Clients copying
/// blobs into a fresh container create it this way first.
fn create_container(
    state: &mut State,
    path: &BlobPath,
    query: &[(String, String)],
    now: DateTime<Utc>,
) -> Result<Response, BlobError> {
    let storage = find(state, &path.storage)?;
    storage
        .check_sas(query, &path.container, None, &[Permission::Create, Permission::Write], &now)
        .map_err(BlobError::from_sas)?;
    if !valid_container_name(&path.container) {
        return Err(BlobError::new(
            StatusCode::BAD_REQUEST,
            "InvalidResourceName",
            "The specified resource name contains invalid characters.",
        ));
    }
    if storage.containers.contains_key(&path.container) {
        return Err(BlobError::new(
            StatusCode::CONFLICT,
            "ContainerAlreadyExists",
            "The specified container already exists.",
        ));
    }
    storage.ensure_container(&path.container, now);
    tracing::info!(storage = %storage.name, container = %path.container, "container created");
    let etag = storage.next_etag(&now);
    let mut resp = StatusCode::CREATED.into_response();
    let h = resp.headers_mut();
    insert(h, "etag", &etag);
    insert(h, "last-modified", &http_time(&now));
    Ok(resp)
}

/// Azure's container name rule: 3-63 lowercase letters, digits and single hyphens, no leading or trailing hyphen.
pub fn valid_container_name(c: &str) -> bool {
    (3..=63).contains(&c.len())
        && c.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !c.starts_with('-')
        && !c.ends_with('-')
        && !c.contains("--")
}

fn invalid_header(name: &str) -> BlobError {
    BlobError::new(StatusCode::BAD_REQUEST, "InvalidHeaderValue", format!("The value for header '{name}' is invalid."))
}

fn find<'a>(state: &'a mut State, storage: &str) -> Result<&'a mut Storage, BlobError> {
    storage_mut(state, storage).ok_or_else(|| {
        BlobError::new(
            StatusCode::NOT_FOUND,
            "ResourceNotFound",
            format!("The storage account '{storage}' does not exist."),
        )
    })
}

fn existing_blob<'a>(storage: &'a Storage, container: &str, blob: &str) -> Result<&'a Blob, BlobError> {
    let c = storage.containers.get(container).ok_or_else(|| {
        BlobError::new(StatusCode::NOT_FOUND, "ContainerNotFound", "The specified container does not exist.")
    })?;
    c.blobs
        .get(blob)
        .ok_or_else(|| BlobError::new(StatusCode::NOT_FOUND, "BlobNotFound", "The specified blob does not exist."))
}

fn blob_headers(h: &mut HeaderMap, b: &Blob) {
    insert(h, "etag", &b.etag);
    insert(h, "last-modified", &http_time(&b.last_modified));
    if let Some(copy) = &b.copy {
        copy_headers(h, copy);
    }
}

fn copy_headers(h: &mut HeaderMap, copy: &CopyInfo) {
    insert(h, "x-ms-copy-id", &copy.id);
    insert(h, "x-ms-copy-status", copy.status.as_str());
    insert(h, "x-ms-copy-source", &copy.source);
    insert(h, "x-ms-copy-progress", &copy.progress());
    if let Some(t) = &copy.completion_time {
        insert(h, "x-ms-copy-completion-time", &http_time(t));
    }
}

fn blob_response(b: &Blob) -> Response {
    let mut resp = (StatusCode::OK, b.bytes.clone()).into_response();
    let h = resp.headers_mut();
    insert(h, "content-type", &b.content_type);
    insert(h, "x-ms-blob-type", "BlockBlob");
    insert(h, "x-ms-creation-time", &http_time(&b.created));
    insert(h, "x-ms-server-encrypted", "true");
    insert(h, "accept-ranges", "bytes");
    blob_headers(h, b);
    resp
}

fn put_blob(
    state: &mut State,
    path: &BlobPath,
    blob: &str,
    query: &[(String, String)],
    headers: &HeaderMap,
    body: Bytes,
    now: DateTime<Utc>,
) -> Result<Response, BlobError> {
    let storage = find(state, &path.storage)?;
    let exists = storage.containers.get(&path.container).is_some_and(|c| c.blobs.contains_key(blob));
    // Creating a blob needs c or w; replacing one needs w.
    let needed: &[Permission] = if exists { &[Permission::Write] } else { &[Permission::Create, Permission::Write] };
    storage.check_sas(query, &path.container, Some(blob), needed, &now).map_err(BlobError::from_sas)?;
    match headers.get("x-ms-blob-type").and_then(|v| v.to_str().ok()) {
        None => {
            return Err(BlobError::new(
                StatusCode::BAD_REQUEST,
                "MissingRequiredHeader",
                "An HTTP header that's mandatory for this request is not specified: x-ms-blob-type.",
            ))
        }
        Some("BlockBlob") => {}
        Some(_) => return Err(invalid_header("x-ms-blob-type")),
    }
    if !storage.containers.contains_key(&path.container) {
        return Err(BlobError::new(
            StatusCode::NOT_FOUND,
            "ContainerNotFound",
            "The specified container does not exist.",
        ));
    }
    let content_type = ["x-ms-blob-content-type", "content-type"]
        .iter()
        .find_map(|h| headers.get(*h).and_then(|v| v.to_str().ok()))
        .unwrap_or("application/octet-stream")
        .to_string();
    storage.put_blob(&path.container, blob, body.to_vec(), &content_type, now);
    storage.pending.retain(|p| !(p.container == path.container && p.blob == blob));
    let b = existing_blob(storage, &path.container, blob)?;
    let mut resp = StatusCode::CREATED.into_response();
    let h = resp.headers_mut();
    insert(h, "etag", &b.etag);
    insert(h, "last-modified", &http_time(&b.last_modified));
    insert(h, "x-ms-request-server-encrypted", "true");
    Ok(resp)
}

/// Copy Blob: the destination is authorised by its SAS (c or w), the source
/// by the read SAS inside `x-ms-copy-source`. The source bytes are taken now
/// and land after `--copy-ms` (scaled), driven by the ticker.
fn copy_blob(
    emulator: &Emulator,
    state: &mut State,
    path: &BlobPath,
    blob: &str,
    query: &[(String, String)],
    source: &str,
    now: DateTime<Utc>,
) -> Result<Response, BlobError> {
    {
        let dest = find(state, &path.storage)?;
        let exists = dest.containers.get(&path.container).is_some_and(|c| c.blobs.contains_key(blob));
        let needed: &[Permission] =
            if exists { &[Permission::Write] } else { &[Permission::Create, Permission::Write] };
        dest.check_sas(query, &path.container, Some(blob), needed, &now).map_err(BlobError::from_sas)?;
        if !dest.containers.contains_key(&path.container) {
            return Err(BlobError::new(
                StatusCode::NOT_FOUND,
                "ContainerNotFound",
                "The specified container does not exist.",
            ));
        }
        // Storage refuses a second copy onto a destination whose copy has not landed (Copy Blob; Blob service
        // error codes: 409 PendingCopyOperation); a client that restarts copies must be seen to fail.
        let pending =
            dest.containers.get(&path.container).and_then(|c| c.blobs.get(blob)).and_then(|b| b.copy.as_ref());
        if pending.is_some_and(|c| c.status == CopyStatus::Pending) {
            return Err(BlobError::new(
                StatusCode::CONFLICT,
                "PendingCopyOperation",
                "There is currently a pending copy operation.",
            ));
        }
    }
    let (bytes, content_type, source_url) = read_copy_source(emulator, state, source, &now)?;
    let dest = find(state, &path.storage)?;
    let id = uuid::Uuid::new_v4().to_string();
    let total = bytes.len();
    dest.put_blob(&path.container, blob, Vec::new(), &content_type, now);
    dest.pending.retain(|p| !(p.container == path.container && p.blob == blob));
    let copy =
        CopyInfo { id: id.clone(), status: CopyStatus::Pending, source: source_url, total, completion_time: None };
    if let Some(b) = dest.containers.get_mut(&path.container).and_then(|c| c.blobs.get_mut(blob)) {
        b.copy = Some(copy);
    }
    dest.pending.push(PendingCopy {
        container: path.container.clone(),
        blob: blob.to_string(),
        id,
        bytes,
        content_type,
        remaining: emulator.config.scaled_ms(emulator.config.copy_ms),
    });
    dest.counters.copies += 1;
    dest.counters.copied_bytes += total as u64;
    tracing::info!(storage = %dest.name, container = %path.container, blob, "copy started");
    let b = existing_blob(dest, &path.container, blob)?;
    let mut resp = StatusCode::ACCEPTED.into_response();
    blob_headers(resp.headers_mut(), b);
    Ok(resp)
}

/// Reads the copy source, which must be a blob of this emulator readable with the SAS in its URL.
fn read_copy_source(
    emulator: &Emulator,
    state: &mut State,
    source: &str,
    now: &DateTime<Utc>,
) -> Result<(Vec<u8>, String, String), BlobError> {
    let url = url::Url::parse(source).map_err(|_| invalid_header("x-ms-copy-source"))?;
    let ours = url::Url::parse(&emulator.base_url).ok();
    let same_server = ours.is_some_and(|o| {
        url.port_or_known_default() == o.port_or_known_default()
            && matches!(url.host_str(), Some("127.0.0.1" | "localhost"))
    });
    let src = parse_path(url.path()).filter(|_| same_server).ok_or_else(|| {
        BlobError::copy_source(StatusCode::BAD_REQUEST, "Only blobs served by this emulator can be copied.")
    })?;
    let src_blob = src.blob.clone().ok_or_else(|| invalid_header("x-ms-copy-source"))?;
    let src_query: Vec<(String, String)> = url.query_pairs().into_owned().collect();
    let storage = storage_mut(state, &src.storage)
        .ok_or_else(|| BlobError::copy_source(StatusCode::NOT_FOUND, "The source storage account does not exist."))?;
    storage.check_sas(&src_query, &src.container, Some(&src_blob), &[Permission::Read], now).map_err(|e| match e {
        SasError::AuthenticationFailed(d) => BlobError::copy_source(
            StatusCode::FORBIDDEN,
            format!("Server failed to authenticate the request to the copy source. {d}"),
        ),
        SasError::PermissionMismatch | SasError::ResourceTypeMismatch => {
            BlobError::copy_source(StatusCode::FORBIDDEN, e.to_string())
        }
    })?;
    let b = existing_blob(storage, &src.container, &src_blob)
        .map_err(|e| BlobError::copy_source(StatusCode::NOT_FOUND, e.message))?;
    let mut plain = url.clone();
    plain.set_query(None);
    Ok((b.bytes.clone(), b.content_type.clone(), plain.to_string()))
}

fn list_blobs(
    emulator: &Emulator,
    storage: &Storage,
    container: &str,
    query: &[(String, String)],
    version: Option<&str>,
) -> Result<Response, BlobError> {
    let c = storage.containers.get(container).ok_or_else(|| {
        BlobError::new(StatusCode::NOT_FOUND, "ContainerNotFound", "The specified container does not exist.")
    })?;
    let qv = |k: &str| query.iter().find(|(qk, _)| qk == k).map(|(_, v)| v.as_str());
    // List Blobs reports copies only when asked (`include=copy`; the parameter is a comma list).
    let include_copy = qv("include").is_some_and(|i| i.split(',').any(|x| x.trim().eq_ignore_ascii_case("copy")));
    // From 2021-02-12 a name that is not valid XML is sent percent-encoded with `Encoded="true"`; version
    // strings are dates, so they compare as text. A request without a version is served as the newest.
    let encode_names = version.is_none_or(|v| v >= "2021-02-12");
    let prefix = qv("prefix").unwrap_or("");
    let marker = qv("marker").unwrap_or("");
    let max = match qv("maxresults") {
        None => 5000,
        Some(m) => m.parse::<usize>().ok().filter(|m| (1..=5000).contains(m)).ok_or_else(|| {
            BlobError::new(
                StatusCode::BAD_REQUEST,
                "OutOfRangeQueryParameterValue",
                "maxresults must be between 1 and 5000.",
            )
        })?,
    };
    let mut matching = c.blobs.iter().filter(|(n, _)| n.starts_with(prefix) && n.as_str() >= marker);
    let page: Vec<(&String, &Blob)> = matching.by_ref().take(max).collect();
    let next = matching.next().map(|(n, _)| n.clone());
    let endpoint = format!("{}{PREFIX}{}/", emulator.base_url, storage.name);
    let mut xml = format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?><EnumerationResults ServiceEndpoint=\"{}\" ContainerName=\"{}\">",
        xml_escape(&endpoint),
        xml_escape(container)
    );
    for (k, v) in [("prefix", "Prefix"), ("marker", "Marker"), ("maxresults", "MaxResults")] {
        if let Some(val) = qv(k) {
            xml.push_str(&format!("<{v}>{}</{v}>", xml_escape(val)));
        }
    }
    xml.push_str("<Blobs>");
    for (name, b) in page {
        xml.push_str(&format!(
            "<Blob>{}<Properties><Creation-Time>{}</Creation-Time><Last-Modified>{}</Last-Modified>\
             <Etag>{}</Etag><Content-Length>{}</Content-Length><Content-Type>{}</Content-Type><Content-Encoding />\
             <Content-Language /><Content-CRC64 /><Content-MD5 /><Cache-Control /><Content-Disposition />\
             <BlobType>BlockBlob</BlobType><AccessTier>Hot</AccessTier><AccessTierInferred>true</AccessTierInferred>\
             <LeaseStatus>unlocked</LeaseStatus><LeaseState>available</LeaseState><ServerEncrypted>true</ServerEncrypted>",
            name_element(name, encode_names),
            http_time(&b.created),
            http_time(&b.last_modified),
            xml_escape(b.etag.trim_matches('"')),
            b.bytes.len(),
            xml_escape(&b.content_type),
        ));
        if let Some(copy) = b.copy.as_ref().filter(|_| include_copy) {
            xml.push_str(&format!(
                "<CopyId>{}</CopyId><CopySource>{}</CopySource><CopyStatus>{}</CopyStatus><CopyProgress>{}</CopyProgress>",
                copy.id,
                xml_escape(&copy.source),
                copy.status.as_str(),
                copy.progress()
            ));
            if let Some(t) = &copy.completion_time {
                xml.push_str(&format!("<CopyCompletionTime>{}</CopyCompletionTime>", http_time(t)));
            }
        }
        xml.push_str("</Properties><OrMetadata /></Blob>");
    }
    xml.push_str("</Blobs>");
    match next {
        Some(n) => xml.push_str(&format!("<NextMarker>{}</NextMarker>", xml_escape(&n))),
        None => xml.push_str("<NextMarker />"),
    }
    xml.push_str("</EnumerationResults>");
    let mut resp = (StatusCode::OK, xml).into_response();
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/xml"));
    Ok(resp)
}

/// The `<Name>` of a listed blob: escaped text, or percent-encoded with `Encoded="true"` when the name has
/// characters XML 1.0 cannot carry (control characters other than tab, CR and LF, U+FFFE, U+FFFF).
fn name_element(name: &str, encode: bool) -> String {
    let invalid =
        |c: char| matches!(c, '\u{0}'..='\u{8}' | '\u{b}' | '\u{c}' | '\u{e}'..='\u{1f}' | '\u{fffe}' | '\u{ffff}');
    if encode && name.chars().any(invalid) {
        let encoded = percent_encoding::utf8_percent_encode(name, percent_encoding::NON_ALPHANUMERIC);
        format!("<Name Encoded=\"true\">{encoded}</Name>")
    } else {
        format!("<Name>{}</Name>", xml_escape(name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blob_paths_keep_slashes_in_blob_names() {
        assert_eq!(
            parse_path("/blob/EastStorage/asset-1/dir/a%20b.mp4"),
            Some(BlobPath {
                storage: "eaststorage".into(),
                container: "asset-1".into(),
                blob: Some("dir/a b.mp4".into())
            })
        );
        assert_eq!(parse_path("/blob/s/c"), Some(BlobPath { storage: "s".into(), container: "c".into(), blob: None }));
        assert_eq!(parse_path("/blob/s/"), None);
    }

    #[test]
    fn names_that_xml_cannot_carry_are_percent_encoded_and_flagged() {
        assert_eq!(name_element("a&b.mp4", true), "<Name>a&amp;b.mp4</Name>");
        assert_eq!(name_element("a\u{1}b", true), "<Name Encoded=\"true\">a%01b</Name>");
        assert_eq!(name_element("a\u{1}b", false), "<Name>a\u{1}b</Name>");
    }

    #[test]
    fn xml_text_is_escaped() {
        assert_eq!(xml_escape("a<b&\"c'"), "a&lt;b&amp;&quot;c&apos;");
    }
}
