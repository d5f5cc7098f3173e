//! MK.IO's error answers sorted into the product's [`MediaError`] classes.
//!
//! The body is `{"error": {"code", "detail", "extraDetail"}, "status", "ref"}` (media-api.json, `Error`);
//! `ref` names the request in MediaKind's logs, so it goes into every message (and so into every log line
//! and alert that shows the error). Two answers differ from Media Services: an existing resource may be
//! refused with 400 and a detail ending " already exists." instead of 409 (hmcts/pre-api
//! `FeignErrorDecoder`), and a list may answer 404 when it is empty (the callers handle that).

use crate::media::MediaError;
use reqwest::StatusCode;
use serde_json::Value;
use std::time::Duration;

/// What an MK.IO error body says.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MkioErrorBody {
    /// `error.code`.
    pub code: String,
    /// `error.detail`.
    pub detail: String,
    /// `ref`: the request's reference at MediaKind.
    pub reference: Option<String>,
}

impl MkioErrorBody {
    /// Reads an error answer; anything that is not the documented shape is kept (shortened) as the detail.
    pub fn parse(text: &str) -> MkioErrorBody {
        let parsed: Option<Value> = serde_json::from_str(text).ok();
        let error = parsed.as_ref().and_then(|v| v.get("error"));
        let field =
            |v: Option<&Value>, name: &str| v.and_then(|e| e.get(name)).and_then(Value::as_str).map(str::to_owned);
        let detail = field(error, "detail").or_else(|| field(error, "message"));
        MkioErrorBody {
            code: field(error, "code").unwrap_or_else(|| "Unknown".to_owned()),
            detail: detail.unwrap_or_else(|| text.chars().take(300).collect()),
            reference: field(parsed.as_ref(), "ref"),
        }
    }

    /// The detail with the reference, as every message about the failure shows it.
    pub fn message(&self) -> String {
        match &self.reference {
            Some(r) => format!("{} (ref {r})", self.detail),
            None => self.detail.clone(),
        }
    }

    /// Whether the service says the resource is already there (409, or 400 with " already exists.").
    fn already_exists(&self, status: StatusCode) -> bool {
        status == StatusCode::CONFLICT
            || (status == StatusCode::BAD_REQUEST && self.detail.contains(" already exists."))
    }
}

/// The status a refusal "already exists" is given, whichever of 400 and 409 MK.IO answered, so callers
/// read it back the way they do for Media Services.
pub const ALREADY_EXISTS: u16 = 409;

/// Sorts an MK.IO error answer.
pub fn classify(status: StatusCode, body: &MkioErrorBody, retry_after: Option<Duration>) -> MediaError {
    let code = body.code.clone();
    let message = body.message();
    match status {
        StatusCode::TOO_MANY_REQUESTS => MediaError::Throttled { retry_after },
        // The token or its permissions: nothing else will work on this project until an operator acts.
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
            MediaError::Account { status: status.as_u16(), code, message }
        }
        StatusCode::NOT_FOUND => MediaError::NotFound { code, message },
        s if body.already_exists(s) => MediaError::Rejected { status: ALREADY_EXISTS, code, message },
        StatusCode::REQUEST_TIMEOUT => MediaError::Transient(format!("408 {code}: {message}")),
        s if s.is_server_error() => MediaError::Transient(format!("{} {code}: {message}", s.as_u16())),
        s => MediaError::Rejected { status: s.as_u16(), code, message },
    }
}

/// Whether a failure is MK.IO saying the resource already exists.
pub fn is_already_exists(error: &MediaError) -> bool {
    matches!(error, MediaError::Rejected { status: ALREADY_EXISTS, .. })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sorted(status: u16, body: &str) -> MediaError {
        let status = StatusCode::from_u16(status).expect("status");
        classify(status, &MkioErrorBody::parse(body), None)
    }

    fn body(code: &str, detail: &str) -> String {
        serde_json::json!({"error": {"code": code, "detail": detail, "extraDetail": {}}, "status": 400, "ref": "r-123"})
            .to_string()
    }

    #[test]
    fn the_reference_of_a_failed_call_is_in_its_message() {
        let error = sorted(500, &body("InternalError", "boom"));
        assert!(error.to_string().contains("(ref r-123)"), "{error}");
        assert!(error.is_transient());
    }

    #[test]
    fn a_refused_token_or_permission_is_the_accounts_fault() {
        for status in [401, 403] {
            let error = sorted(status, &body("Unauthorized", "token expired"));
            assert!(matches!(error, MediaError::Account { .. }) && error.is_account_fault(), "{error:?}");
            assert!(!error.is_transient());
        }
    }

    #[test]
    fn already_exists_is_the_same_answer_whether_it_comes_as_400_or_409() {
        let as_400 = sorted(400, &body("BadRequest", "Live event 'x' already exists."));
        let as_409 = sorted(409, &body("Conflict", "exists"));
        assert!(is_already_exists(&as_400) && is_already_exists(&as_409), "{as_400:?} {as_409:?}");
        let other = sorted(400, &body("BadRequest", "The job requires at least one output."));
        assert!(matches!(other, MediaError::Rejected { status: 400, .. }) && !is_already_exists(&other));
    }

    #[test]
    fn throttling_not_found_and_unreadable_bodies_are_sorted_too() {
        assert!(matches!(
            sorted(429, &body("TooManyRequests", "slow down")),
            MediaError::Throttled { retry_after: None }
        ));
        assert!(matches!(sorted(404, &body("NotFound", "no such job")), MediaError::NotFound { .. }));
        let html = MkioErrorBody::parse("<html>bad gateway</html>");
        assert_eq!(
            (html.code.as_str(), html.detail.as_str(), html.reference),
            ("Unknown", "<html>bad gateway</html>", None)
        );
    }
}
