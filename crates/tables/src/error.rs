//! The error type of the client and the mapping from HTTP responses to it.
//!
//! Callers branch on the *kind* of failure (conflict, missing, throttled...),
//! never on message text, so every response status is classified here once.

use std::time::Duration;

use reqwest::header::HeaderMap;

/// What went wrong with a Table Storage call.
#[derive(thiserror::Error, Debug)]
pub enum TableError {
    /// The entity or table does not exist (HTTP 404).
    #[error("not found")]
    NotFound,
    /// The entity or table already exists (HTTP 409).
    #[error("already exists")]
    AlreadyExists,
    /// The `If-Match` ETag did not match the stored entity (HTTP 412).
    #[error("precondition failed: the entity was changed by someone else")]
    PreconditionFailed,
    /// The service asked us to slow down (HTTP 429, or 503 `ServerBusy`).
    #[error("throttled by the table service (retry after {retry_after:?})")]
    Throttled {
        /// The delay from the `Retry-After` header, when the service sent one.
        retry_after: Option<Duration>,
    },
    /// A failure that may go away on its own: other 5xx statuses, timeouts,
    /// connection errors, and a table that is still being deleted.
    #[error("transient table service failure: {0}")]
    Transient(String),
    /// The service refused the request as malformed or unauthorized (other 4xx).
    ///
    /// `status` is 0 when the client refused the request before sending it
    /// (an entity that is not a flat JSON object, more than 100 operations in a
    /// transaction), and is the HTTP status with code `InvalidResponseBody`
    /// when a response could not be decoded into the caller's type.
    #[error("table service rejected the request: {status} {code}: {message}")]
    Rejected {
        /// HTTP status, or 0 for a request refused locally.
        status: u16,
        /// The service's error code, e.g. `InvalidInput`, `AuthenticationFailed`.
        code: String,
        /// The service's error message.
        message: String,
    },
    /// One operation of an entity group transaction failed; nothing was applied.
    #[error("operation {index} of the transaction failed: {source}")]
    Batch {
        /// Zero-based index of the failing operation in the submitted list.
        index: usize,
        /// How that operation failed.
        source: Box<TableError>,
    },
    /// The client is configured wrongly (connection string, table name, credential).
    #[error("table client configuration: {0}")]
    Config(String),
}

impl TableError {
    /// Whether repeating the same call later may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            TableError::Throttled { .. } | TableError::Transient(_) => true,
            TableError::Batch { source, .. } => source.is_retryable(),
            _ => false,
        }
    }

    /// The delay the service asked for, if this is a throttling error.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            TableError::Throttled { retry_after } => *retry_after,
            TableError::Batch { source, .. } => source.retry_after(),
            _ => None,
        }
    }

    /// Builds a local refusal (status 0) for requests that cannot be sent.
    pub(crate) fn local(code: &str, message: impl Into<String>) -> Self {
        TableError::Rejected { status: 0, code: code.to_string(), message: message.into() }
    }
}

impl From<reqwest::Error> for TableError {
    fn from(e: reqwest::Error) -> Self {
        if e.is_builder() {
            return TableError::Config(format!("cannot build request: {e}"));
        }
        // Timeouts, refused connections and cut-off bodies are all "the
        // network or the service had a bad moment": the caller may retry.
        TableError::Transient(format!("{e}"))
    }
}

/// The `odata.error` part of an error response body.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct ServiceError {
    pub code: String,
    pub message: String,
}

/// Reads `{"odata.error":{"code":..,"message":{"value":..}}}`; Azure sends XML
/// for some failures (e.g. authentication), so fall back to the raw text.
pub(crate) fn parse_error_body(body: &str) -> ServiceError {
    if let Ok(v) = serde_json::from_str::<serde_json::Value>(body) {
        if let Some(err) = v.get("odata.error") {
            let code = err.get("code").and_then(|c| c.as_str()).unwrap_or_default().to_string();
            let message = err
                .get("message")
                .and_then(|m| m.get("value").or(Some(m)))
                .and_then(|m| m.as_str())
                .unwrap_or_default()
                .to_string();
            return ServiceError { code, message };
        }
    }
    // XML errors: <Error><Code>X</Code><Message>Y</Message></Error>
    let between = |open: &str, close: &str| {
        let start = body.find(open)? + open.len();
        let end = body[start..].find(close)? + start;
        Some(body[start..end].to_string())
    };
    ServiceError {
        code: between("<Code>", "</Code>").unwrap_or_default(),
        message: between("<Message>", "</Message>").unwrap_or_else(|| body.trim().to_string()),
    }
}

/// Parses `Retry-After` as delta-seconds or an HTTP date.
pub(crate) fn parse_retry_after(headers: &HeaderMap) -> Option<Duration> {
    let raw = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = raw.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = chrono::DateTime::parse_from_rfc2822(raw).ok()?;
    let delta = when.with_timezone(&chrono::Utc) - chrono::Utc::now();
    Some(delta.to_std().unwrap_or(Duration::ZERO))
}

/// Classifies a non-success status and its body into a [`TableError`].
pub(crate) fn error_from_status(status: u16, retry_after: Option<Duration>, body: &str) -> TableError {
    let ServiceError { code, message } = parse_error_body(body);
    match status {
        404 => TableError::NotFound,
        // Azure keeps a deleted table's name reserved for a while and answers
        // 409 TableBeingDeleted; that clears up by itself, so it is transient.
        409 if code == "TableBeingDeleted" => TableError::Transient(format!("{code}: {message}")),
        409 => TableError::AlreadyExists,
        412 => TableError::PreconditionFailed,
        429 | 503 => TableError::Throttled { retry_after },
        408 => TableError::Transient(format!("408 {code}: {message}")),
        500..=599 => TableError::Transient(format!("{status} {code}: {message}")),
        _ => TableError::Rejected { status, code, message },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_error_bodies_yield_code_and_message() {
        let body = r#"{"odata.error":{"code":"EntityAlreadyExists","message":{"lang":"en-US","value":"1:The specified entity already exists."}}}"#;
        assert_eq!(
            parse_error_body(body),
            ServiceError {
                code: "EntityAlreadyExists".into(),
                message: "1:The specified entity already exists.".into()
            }
        );
    }

    #[test]
    fn xml_error_bodies_yield_code_and_message() {
        let body = "<?xml version=\"1.0\"?><Error><Code>AuthenticationFailed</Code><Message>nope</Message></Error>";
        let e = parse_error_body(body);
        assert_eq!(e.code, "AuthenticationFailed");
        assert_eq!(e.message, "nope");
    }

    #[test]
    fn statuses_map_to_kinds() {
        assert!(matches!(error_from_status(404, None, ""), TableError::NotFound));
        assert!(matches!(error_from_status(409, None, ""), TableError::AlreadyExists));
        assert!(matches!(error_from_status(412, None, ""), TableError::PreconditionFailed));
        assert!(matches!(
            error_from_status(503, Some(Duration::from_secs(2)), ""),
            TableError::Throttled {
                retry_after: Some(d)
            } if d == Duration::from_secs(2)
        ));
        assert!(error_from_status(500, None, "").is_retryable());
        let rejected = error_from_status(
            403,
            None,
            r#"{"odata.error":{"code":"AuthenticationFailed","message":{"value":"bad"}}}"#,
        );
        assert!(
            matches!(rejected, TableError::Rejected { status: 403, ref code, .. } if code == "AuthenticationFailed")
        );
        assert!(!rejected.is_retryable());
    }

    #[test]
    fn a_table_being_deleted_is_transient() {
        let body = r#"{"odata.error":{"code":"TableBeingDeleted","message":{"value":"wait"}}}"#;
        assert!(error_from_status(409, None, body).is_retryable());
    }

    #[test]
    fn retryability_looks_inside_batch_errors() {
        let e = TableError::Batch { index: 3, source: Box::new(TableError::Throttled { retry_after: None }) };
        assert!(e.is_retryable());
        let e = TableError::Batch { index: 3, source: Box::new(TableError::PreconditionFailed) };
        assert!(!e.is_retryable());
    }

    #[test]
    fn retry_after_accepts_seconds_and_dates() {
        let mut h = HeaderMap::new();
        h.insert(reqwest::header::RETRY_AFTER, "7".parse().unwrap());
        assert_eq!(parse_retry_after(&h), Some(Duration::from_secs(7)));
        h.insert(reqwest::header::RETRY_AFTER, "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap());
        assert_eq!(parse_retry_after(&h), Some(Duration::ZERO));
    }
}
