//! MK.IO's error body, `{"error":{"code","detail","extraDetail"},"status":N,"ref":"..."}`, for every failure
//! of an MK.IO project (media-api.json and management-api.json, schemas `Error` and `ErrorDetail`; the
//! docs' error-handling guide). The handlers shared with the ARM mode report `ArmError`s; they are
//! translated here so an MK.IO client only ever sees MK.IO's shape.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Map, Value};

use crate::arm::ArmError;

/// One MK.IO failure.
#[derive(Debug, Clone, PartialEq)]
pub struct MkioError {
    /// HTTP status, repeated in the body.
    pub status: StatusCode,
    /// `error.code`, for programmatic branching.
    pub code: String,
    /// `error.detail`, the human-readable message.
    pub detail: String,
}

impl MkioError {
    /// An error with an explicit status and code.
    pub fn new(status: StatusCode, code: &str, detail: impl Into<String>) -> MkioError {
        MkioError { status, code: code.to_string(), detail: detail.into() }
    }

    /// 400 `BadRequest`.
    pub fn bad_request(detail: impl Into<String>) -> MkioError {
        MkioError::new(StatusCode::BAD_REQUEST, "BadRequest", detail)
    }

    /// 404 `NotFound` for a named resource.
    pub fn not_found(kind: &str, name: &str) -> MkioError {
        MkioError::new(StatusCode::NOT_FOUND, "NotFound", format!("The {kind} '{name}' was not found."))
    }

    /// 405 for a known path with an unsupported method.
    pub fn method_not_allowed(method: &str) -> MkioError {
        MkioError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            format!("The method '{method}' is not supported on this resource."),
        )
    }

    /// A create-only PUT on a taken name. MK.IO clients have met 400 where the spec lists 409, so the status
    /// is a setting; the detail always contains " already exists." because that is what clients match on.
    pub fn already_exists(status: u16, kind: &str, name: &str) -> MkioError {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
        let code = if status == StatusCode::CONFLICT { "Conflict" } else { "BadRequest" };
        MkioError::new(status, code, format!("The {kind} '{name}' already exists."))
    }

    /// The body MK.IO sends, with a fresh request reference.
    pub fn body(&self) -> Value {
        json!({
            "error": {"code": self.code, "detail": self.detail, "extraDetail": Value::Object(Map::new())},
            "status": self.status.as_u16(),
            "ref": uuid::Uuid::new_v4().simple().to_string(),
        })
    }
}

impl IntoResponse for MkioError {
    fn into_response(self) -> Response {
        // No Retry-After, even on 429: MK.IO documents none (rate-limits guide), so clients back off on
        // their own schedule.
        (self.status, Json(self.body())).into_response()
    }
}

impl From<ArmError> for MkioError {
    fn from(e: ArmError) -> MkioError {
        let code = match &e {
            ArmError::NoRoute { .. } | ArmError::NotFound { .. } | ArmError::AccountNotFound { .. } => "NotFound",
            ArmError::MethodNotAllowed(_) => "MethodNotAllowed",
            ArmError::InvalidContent(_) | ArmError::BadRequest(_) | ArmError::MissingApiVersion => "BadRequest",
            ArmError::SubscriptionNotFound(_) | ArmError::ResourceGroupNotFound(_) => "NotFound",
            ArmError::Conflict(_) => "Conflict",
            ArmError::ServiceUnavailable(_) => "ServiceUnavailable",
            ArmError::Throttled(_) => "TooManyRequests",
            ArmError::Duplicate { status: 409, .. } => "Conflict",
            ArmError::Duplicate { .. } => "BadRequest",
            ArmError::Refused { code, .. } => code.as_str(),
        }
        .to_string();
        let detail = match &e {
            ArmError::ServiceUnavailable(_) => {
                "The service is temporarily unavailable. Please retry later.".to_string()
            }
            ArmError::Throttled(_) => "Too many requests. Please slow down.".to_string(),
            other => other.to_string(),
        };
        MkioError { status: e.status(), code, detail }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_body_carries_code_detail_extra_detail_status_and_a_fresh_ref() {
        let e = MkioError::not_found("job", "j1");
        let (a, b) = (e.body(), e.body());
        assert_eq!(a["error"]["code"], "NotFound");
        assert_eq!(a["error"]["detail"], "The job 'j1' was not found.");
        assert_eq!(a["error"]["extraDetail"], json!({}));
        assert_eq!(a["status"], 404);
        assert!(a["ref"].as_str().is_some_and(|r| !r.is_empty()));
        assert_ne!(a["ref"], b["ref"]);
    }

    #[test]
    fn a_duplicate_says_already_exists_with_the_chosen_status() {
        let e = MkioError::already_exists(400, "job", "j1");
        assert_eq!((e.status, e.code.as_str()), (StatusCode::BAD_REQUEST, "BadRequest"));
        assert!(e.detail.contains(" already exists."));
        assert_eq!(MkioError::already_exists(409, "job", "j1").code, "Conflict");
    }

    #[test]
    fn arm_errors_keep_their_status_and_get_mkio_codes() {
        let e = MkioError::from(ArmError::Throttled(3));
        assert_eq!((e.status, e.code.as_str()), (StatusCode::TOO_MANY_REQUESTS, "TooManyRequests"));
        let e = MkioError::from(ArmError::Refused { status: 403, code: "Forbidden".into(), message: "no".into() });
        assert_eq!((e.status, e.code.as_str(), e.detail.as_str()), (StatusCode::FORBIDDEN, "Forbidden", "no"));
    }
}
