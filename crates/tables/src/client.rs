//! The service and table handles: request construction, signing, status
//! mapping, read retries and continuation-token paging.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use azure_core::credentials::TokenCredential;
use reqwest::header::{HeaderMap, HeaderValue, CONTENT_TYPE};
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use url::Url;

use crate::auth::{http_date, Auth};
use crate::batch::{build_batch, interpret, parse_batch_response, BatchOp, MAX_BATCH_OPERATIONS};
use crate::connection::{parse_connection_string, parse_endpoint};
use crate::entity::{
    check_key, check_table_name, encode_component, entity_segment, from_body, to_body, ETag, Entity, IfMatch,
};
use crate::error::{error_from_status, parse_retry_after};
use crate::TableError;

/// Service version sent with every request; 2019-02-02 is what Azurite and
/// all public Azure regions accept for JSON tables.
const API_VERSION: &str = "2019-02-02";
const DATA_SERVICE_VERSION: &str = "3.0;NetFx";
const ACCEPT_JSON: &str = "application/json;odata=minimalmetadata";
const JSON: &str = "application/json";

/// Default per-request timeout. Table calls are small; a call that has not
/// answered in this time is better reported than waited for.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Back-off before each retry of a read or a table creation. Writes are never
/// retried here: a write that timed out may have been applied, and only the
/// caller knows whether repeating it is safe.
pub const READ_RETRY_BACKOFF: [Duration; 3] =
    [Duration::from_millis(200), Duration::from_millis(800), Duration::from_millis(2000)];

/// Longest `Retry-After` honored inside a read retry; beyond that the error
/// is returned so the caller can decide.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(10);

struct Inner {
    http: reqwest::Client,
    endpoint: Url,
    auth: Auth,
    timeout: Duration,
}

/// Where the next page of a query starts: the service's
/// `x-ms-continuation-NextPartitionKey` and `-NextRowKey` headers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Continuation {
    pub partition_key: String,
    pub row_key: Option<String>,
}

/// One page of a query: its entities and, unless it is the last page, where
/// the next one starts.
#[derive(Debug)]
pub struct Page<T> {
    pub entities: Vec<Entity<T>>,
    pub next: Option<Continuation>,
}

/// A Table Storage account (or Azurite). Cheap to clone; all clones and all
/// [`Table`] handles share one HTTP client.
#[derive(Clone)]
pub struct TableService {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for TableService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TableService")
            .field("endpoint", &self.inner.endpoint.as_str())
            .field("auth", &self.inner.auth)
            .finish()
    }
}

/// One table of a [`TableService`]. Cheap to create and clone.
#[derive(Clone, Debug)]
pub struct Table {
    service: TableService,
    name: String,
}

/// A request before signing: signing happens per attempt because the
/// signature covers the date.
struct Req<'a> {
    method: Method,
    url: Url,
    content_type: Option<&'a str>,
    body: Option<Vec<u8>>,
    headers: Vec<(&'static str, String)>,
}

impl<'a> Req<'a> {
    fn new(method: Method, url: Url) -> Self {
        Req { method, url, content_type: None, body: None, headers: Vec::new() }
    }

    fn json(mut self, body: &Value) -> Self {
        self.content_type = Some(JSON);
        self.body = Some(body.to_string().into_bytes());
        self.headers.push(("Prefer", "return-no-content".into()));
        self
    }

    fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }
}

fn merge_method() -> Method {
    match Method::from_bytes(b"MERGE") {
        Ok(m) => m,
        Err(_) => unreachable!("MERGE is a valid method token"),
    }
}

impl TableService {
    /// Builds a client from a storage connection string: `UseDevelopmentStorage=true`,
    /// `DefaultEndpointsProtocol=..;AccountName=..;AccountKey=..;EndpointSuffix=..`,
    /// or with an explicit `TableEndpoint=..` (Azurite's path-style endpoints included).
    pub fn from_connection_string(cs: &str, http: reqwest::Client) -> Result<Self, TableError> {
        let info = parse_connection_string(cs)?;
        Ok(Self::build(info.endpoint, Auth::SharedKey { account: info.account, key: info.key }, http))
    }

    /// Builds a client that authorizes with Entra ID tokens for
    /// `https://storage.azure.com/.default` (e.g. a managed identity from
    /// `azure_identity`). Tokens are cached until five minutes before expiry.
    pub fn with_token_credential(endpoint: Url, cred: Arc<dyn TokenCredential>, http: reqwest::Client) -> Self {
        // Normalise like connection strings do; a URL that cannot be a table
        // endpoint surfaces on the first request as a Config/Transient error.
        let endpoint = parse_endpoint(endpoint.as_str()).unwrap_or(endpoint);
        Self::build(endpoint, Auth::Bearer { credential: cred, cache: tokio::sync::Mutex::new(None) }, http)
    }

    fn build(endpoint: Url, auth: Auth, http: reqwest::Client) -> Self {
        TableService { inner: Arc::new(Inner { http, endpoint, auth, timeout: DEFAULT_TIMEOUT }) }
    }

    /// Returns a copy of this service whose requests time out after `timeout`.
    pub fn with_timeout(&self, timeout: Duration) -> Self {
        TableService {
            inner: Arc::new(Inner {
                http: self.inner.http.clone(),
                endpoint: self.inner.endpoint.clone(),
                auth: match &self.inner.auth {
                    Auth::SharedKey { account, key } => Auth::SharedKey { account: account.clone(), key: key.clone() },
                    Auth::Bearer { credential, .. } => {
                        Auth::Bearer { credential: credential.clone(), cache: tokio::sync::Mutex::new(None) }
                    }
                },
                timeout,
            }),
        }
    }

    /// The table service endpoint.
    pub fn endpoint(&self) -> &Url {
        &self.inner.endpoint
    }

    /// A handle on one table. The name is validated when the handle is used.
    pub fn table(&self, name: &str) -> Table {
        Table { service: self.clone(), name: name.to_string() }
    }

    /// Creates the table; an existing table is fine. Retries throttling and
    /// transient failures (creation is idempotent).
    pub async fn create_table_if_missing(&self, name: &str) -> Result<(), TableError> {
        check_table_name(name)?;
        let body = serde_json::json!({ "TableName": name });
        let result = retrying(|| async {
            let req = Req::new(Method::POST, self.url("Tables")).json(&body);
            let resp = self.send(req).await?;
            expect_success(resp).await.map(drop)
        })
        .await;
        match result {
            Ok(()) | Err(TableError::AlreadyExists) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Deletes the table and everything in it; `NotFound` if it does not exist.
    pub async fn delete_table(&self, name: &str) -> Result<(), TableError> {
        check_table_name(name)?;
        let url = self.url(&format!("Tables('{name}')"));
        let resp = self.send(Req::new(Method::DELETE, url)).await?;
        expect_success(resp).await.map(drop)
    }

    /// `{endpoint}/{path}`; `path` must already be encoded.
    fn url(&self, path: &str) -> Url {
        let mut url = self.inner.endpoint.clone();
        let base = url.path().trim_end_matches('/').to_string();
        url.set_path(&format!("{base}/{path}"));
        url
    }

    fn base_str(&self) -> String {
        self.inner.endpoint.as_str().trim_end_matches('/').to_string()
    }

    /// Signs and sends one attempt.
    async fn send(&self, req: Req<'_>) -> Result<reqwest::Response, TableError> {
        let date = http_date(chrono::Utc::now());
        let content_type = req.content_type.unwrap_or("");
        let authorization = self.inner.auth.authorization(req.method.as_str(), &req.url, content_type, &date).await?;
        let mut headers = HeaderMap::new();
        let mut put = |name: &'static str, value: &str| -> Result<(), TableError> {
            let v = HeaderValue::from_str(value)
                .map_err(|_| TableError::local("InvalidHeader", format!("{name} value is not a valid header")))?;
            headers.insert(name, v);
            Ok(())
        };
        put("x-ms-date", &date)?;
        put("x-ms-version", API_VERSION)?;
        put("DataServiceVersion", DATA_SERVICE_VERSION)?;
        put("MaxDataServiceVersion", DATA_SERVICE_VERSION)?;
        put("Accept", ACCEPT_JSON)?;
        put("Authorization", &authorization)?;
        if let Some(ct) = req.content_type {
            put("Content-Type", ct)?;
        }
        for (name, value) in &req.headers {
            put(name, value)?;
        }
        let mut builder =
            self.inner.http.request(req.method.clone(), req.url.clone()).headers(headers).timeout(self.inner.timeout);
        if let Some(body) = req.body {
            builder = builder.body(body);
        } else if req.method == Method::POST || req.method == Method::PUT {
            builder = builder.header(reqwest::header::CONTENT_LENGTH, "0");
        }
        let resp = builder.send().await?;
        tracing::trace!(method = %req.method, url = %req.url, status = resp.status().as_u16(), "table request");
        Ok(resp)
    }
}

/// Maps a non-2xx response to its error; passes successes through.
async fn expect_success(resp: reqwest::Response) -> Result<reqwest::Response, TableError> {
    let status = resp.status();
    if status.is_success() {
        return Ok(resp);
    }
    let retry_after = parse_retry_after(resp.headers());
    let body = resp.text().await.unwrap_or_default();
    let err = error_from_status(status.as_u16(), retry_after, &body);
    tracing::debug!(status = status.as_u16(), error = %err, "table request failed");
    Err(err)
}

fn etag_header(resp: &reqwest::Response) -> Option<ETag> {
    resp.headers().get(reqwest::header::ETAG).and_then(|v| v.to_str().ok()).map(|s| ETag(s.to_string()))
}

fn require_etag(resp: &reqwest::Response) -> Result<ETag, TableError> {
    etag_header(resp).ok_or_else(|| TableError::Rejected {
        status: resp.status().as_u16(),
        code: "InvalidResponseBody".into(),
        message: "write succeeded but the response has no ETag".into(),
    })
}

async fn read_json(resp: reqwest::Response) -> Result<Value, TableError> {
    let status = resp.status().as_u16();
    let bytes = resp.bytes().await?;
    serde_json::from_slice(&bytes).map_err(|e| TableError::Rejected {
        status,
        code: "InvalidResponseBody".into(),
        message: format!("response is not JSON: {e}"),
    })
}

/// Runs `op` and retries it after [`READ_RETRY_BACKOFF`] delays while it fails
/// with a retryable error. Only for idempotent calls.
async fn retrying<T, F, Fut>(mut op: F) -> Result<T, TableError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, TableError>>,
{
    let mut attempt = 0;
    loop {
        match op().await {
            Err(e) if e.is_retryable() && attempt < READ_RETRY_BACKOFF.len() => {
                let mut delay = READ_RETRY_BACKOFF[attempt];
                if let Some(after) = e.retry_after() {
                    if after > MAX_RETRY_AFTER {
                        return Err(e);
                    }
                    delay = delay.max(after);
                }
                tracing::debug!(error = %e, ?delay, attempt, "retrying table read");
                tokio::time::sleep(delay).await;
                attempt += 1;
            }
            other => return other,
        }
    }
}

impl Table {
    /// The table name.
    pub fn name(&self) -> &str {
        &self.name
    }

    fn entity_url(&self, pk: &str, rk: &str) -> Result<Url, TableError> {
        check_table_name(&self.name)?;
        check_key("PartitionKey", pk)?;
        check_key("RowKey", rk)?;
        Ok(self.service.url(&entity_segment(&self.name, pk, rk)))
    }

    /// Reads one entity; `None` if it does not exist. A missing table is
    /// `Err(NotFound)`, so a misconfigured table name does not look like an empty one.
    pub async fn get<T: DeserializeOwned>(&self, pk: &str, rk: &str) -> Result<Option<Entity<T>>, TableError> {
        let url = self.entity_url(pk, rk)?;
        retrying(|| async {
            let resp = self.service.send(Req::new(Method::GET, url.clone())).await?;
            if resp.status() == StatusCode::NOT_FOUND {
                let body = resp.text().await.unwrap_or_default();
                let code = crate::error::parse_error_body(&body).code;
                return if code == "TableNotFound" { Err(TableError::NotFound) } else { Ok(None) };
            }
            let resp = expect_success(resp).await?;
            let status = resp.status().as_u16();
            let etag = etag_header(&resp);
            match read_json(resp).await? {
                Value::Object(map) => from_body(map, etag, status).map(Some),
                _ => Err(TableError::Rejected {
                    status,
                    code: "InvalidResponseBody".into(),
                    message: "entity response is not a JSON object".into(),
                }),
            }
        })
        .await
    }

    /// Inserts a new entity; `AlreadyExists` if the row exists.
    pub async fn insert<T: Serialize>(&self, pk: &str, rk: &str, e: &T) -> Result<ETag, TableError> {
        check_table_name(&self.name)?;
        let body = to_body(pk, rk, e)?;
        let req = Req::new(Method::POST, self.service.url(&self.name)).json(&body);
        let resp = expect_success(self.service.send(req).await?).await?;
        require_etag(&resp)
    }

    /// Replaces an existing entity; `NotFound` if missing, `PreconditionFailed`
    /// if the ETag no longer matches.
    pub async fn replace<T: Serialize>(
        &self,
        pk: &str,
        rk: &str,
        e: &T,
        if_match: IfMatch,
    ) -> Result<ETag, TableError> {
        self.write(Method::PUT, pk, rk, e, Some(if_match)).await
    }

    /// Merges the given properties into an existing entity (other properties
    /// are kept); errors as for [`Table::replace`].
    pub async fn merge<T: Serialize>(&self, pk: &str, rk: &str, e: &T, if_match: IfMatch) -> Result<ETag, TableError> {
        self.write(merge_method(), pk, rk, e, Some(if_match)).await
    }

    /// Inserts the entity or replaces it whatever its version.
    pub async fn upsert<T: Serialize>(&self, pk: &str, rk: &str, e: &T) -> Result<ETag, TableError> {
        self.write(Method::PUT, pk, rk, e, None).await
    }

    async fn write<T: Serialize>(
        &self,
        method: Method,
        pk: &str,
        rk: &str,
        e: &T,
        if_match: Option<IfMatch>,
    ) -> Result<ETag, TableError> {
        let url = self.entity_url(pk, rk)?;
        let body = to_body(pk, rk, e)?;
        let mut req = Req::new(method, url).json(&body);
        if let Some(m) = if_match {
            req = req.header("If-Match", m.header_value());
        }
        let resp = expect_success(self.service.send(req).await?).await?;
        require_etag(&resp)
    }

    /// Deletes an entity; `NotFound` if missing, `PreconditionFailed` if the
    /// ETag no longer matches.
    pub async fn delete(&self, pk: &str, rk: &str, if_match: IfMatch) -> Result<(), TableError> {
        let url = self.entity_url(pk, rk)?;
        let req = Req::new(Method::DELETE, url).header("If-Match", if_match.header_value());
        expect_success(self.service.send(req).await?).await.map(drop)
    }

    /// Returns every entity matching the OData `filter` (empty: all entities),
    /// following continuation tokens until the last page. Build string
    /// literals with [`crate::filter_string_literal`].
    pub async fn query<T: DeserializeOwned>(&self, filter: &str) -> Result<Vec<Entity<T>>, TableError> {
        let mut out = Vec::new();
        let mut next = None;
        loop {
            let page = self.query_page(filter, None, next.as_ref()).await?;
            out.extend(page.entities);
            match page.next {
                Some(c) => next = Some(c),
                None => return Ok(out),
            }
        }
    }

    /// Returns one page of the entities matching `filter`: at most `top` of
    /// them (the service caps a page at 1,000), starting at `from` (the
    /// previous page's [`Page::next`]). A page may hold fewer than `top`
    /// entities and still have a next page: the service stops at partition
    /// and time boundaries, so only `next == None` means the end.
    pub async fn query_page<T: DeserializeOwned>(
        &self,
        filter: &str,
        top: Option<u32>,
        from: Option<&Continuation>,
    ) -> Result<Page<T>, TableError> {
        check_table_name(&self.name)?;
        let mut query = Vec::new();
        if !filter.is_empty() {
            query.push(format!("$filter={}", encode_component(filter)));
        }
        if let Some(top) = top {
            query.push(format!("$top={}", top.clamp(1, 1000)));
        }
        if let Some(from) = from {
            query.push(format!("NextPartitionKey={}", encode_component(&from.partition_key)));
            if let Some(nrk) = &from.row_key {
                query.push(format!("NextRowKey={}", encode_component(nrk)));
            }
        }
        let mut url = self.service.url(&format!("{}()", self.name));
        if !query.is_empty() {
            url.set_query(Some(&query.join("&")));
        }
        let (json, next, status) = retrying(|| async {
            let resp = self.service.send(Req::new(Method::GET, url.clone())).await?;
            let resp = expect_success(resp).await?;
            let header = |name: &str| resp.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
            let next = header("x-ms-continuation-NextPartitionKey")
                .map(|partition_key| Continuation { partition_key, row_key: header("x-ms-continuation-NextRowKey") });
            let status = resp.status().as_u16();
            let json = read_json(resp).await?;
            Ok((json, next, status))
        })
        .await?;
        let rows = match json {
            Value::Object(mut map) => match map.remove("value") {
                Some(Value::Array(rows)) => rows,
                _ => Vec::new(),
            },
            _ => Vec::new(),
        };
        let mut entities = Vec::with_capacity(rows.len());
        for row in rows {
            match row {
                Value::Object(map) => entities.push(from_body::<T>(map, None, status)?),
                _ => {
                    return Err(TableError::Rejected {
                        status,
                        code: "InvalidResponseBody".into(),
                        message: "query result row is not a JSON object".into(),
                    })
                }
            }
        }
        Ok(Page { entities, next })
    }

    /// Applies up to 100 operations on one partition atomically. Returns each
    /// operation's new ETag in order (`None` for deletes). If one operation
    /// fails nothing is applied and the error is
    /// [`TableError::Batch`] with that operation's index and failure kind.
    pub async fn transaction(&self, pk: &str, ops: Vec<BatchOp>) -> Result<Vec<Option<ETag>>, TableError> {
        check_table_name(&self.name)?;
        check_key("PartitionKey", pk)?;
        if ops.is_empty() {
            return Ok(Vec::new());
        }
        if ops.len() > MAX_BATCH_OPERATIONS {
            return Err(TableError::local(
                "TooManyOperations",
                format!("a transaction holds at most {MAX_BATCH_OPERATIONS} operations, got {}", ops.len()),
            ));
        }
        let batch = build_batch(&self.service.base_str(), &self.name, pk, &ops)?;
        let mut req = Req::new(Method::POST, self.service.url("$batch"));
        req.content_type = Some(&batch.content_type);
        req.body = Some(batch.body.into_bytes());
        let resp = expect_success(self.service.send(req).await?).await?;
        let status = resp.status().as_u16();
        let content_type =
            resp.headers().get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
        let body = resp.text().await?;
        let responses = parse_batch_response(&content_type, &body).map_err(|message| TableError::Rejected {
            status,
            code: "InvalidResponseBody".into(),
            message,
        })?;
        interpret(&ops, responses)
    }
}
