//! Whether an account's API credential still works, as far as the product can tell without calling the
//! service: MK.IO tokens are long-lived JWTs (at most a year) that an operator renews by hand, so the product
//! says ahead of time when one is about to expire, and says once, clearly, when one has expired or the
//! service refuses it, rather than letting the region go quiet.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sha2::{Digest, Sha256};

/// How long before expiry GetStatus starts warning.
pub const EXPIRY_WARNING: chrono::Duration = chrono::Duration::days(30);

/// What the product knows about a credential at `now`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "camelCase")]
pub enum CredentialStatus {
    /// Valid for longer than [`EXPIRY_WARNING`] (or without an expiry).
    #[serde(rename_all = "camelCase")]
    Valid {
        /// When it expires, if it does.
        #[serde(skip_serializing_if = "Option::is_none")]
        expires_at: Option<DateTime<Utc>>,
    },
    /// Expires within [`EXPIRY_WARNING`]: renew it.
    #[serde(rename_all = "camelCase")]
    ExpiresSoon {
        /// When it expires.
        expires_at: DateTime<Utc>,
    },
    /// Past its expiry: every call will be refused.
    #[serde(rename_all = "camelCase")]
    Expired {
        /// When it expired.
        expires_at: DateTime<Utc>,
    },
}

impl CredentialStatus {
    /// The status of a credential that expires at `expires_at`.
    pub fn at(expires_at: Option<DateTime<Utc>>, now: DateTime<Utc>) -> CredentialStatus {
        match expires_at {
            None => CredentialStatus::Valid { expires_at: None },
            Some(t) if t <= now => CredentialStatus::Expired { expires_at: t },
            Some(t) if t - now <= EXPIRY_WARNING => CredentialStatus::ExpiresSoon { expires_at: t },
            Some(t) => CredentialStatus::Valid { expires_at: Some(t) },
        }
    }

    /// A line for operators, when there is something to do.
    pub fn warning(&self, setting: &str) -> Option<String> {
        match self {
            CredentialStatus::Valid { .. } => None,
            CredentialStatus::ExpiresSoon { expires_at } => Some(format!(
                "the API token in {setting} expires at {}; create a new one and update the setting before then",
                expires_at.to_rfc3339()
            )),
            CredentialStatus::Expired { expires_at } => Some(format!(
                "the API token in {setting} expired at {}; every call is refused until the setting holds a new one",
                expires_at.to_rfc3339()
            )),
        }
    }
}

/// A short digest of a secret, stored so the product can tell a new credential from the one it already
/// alerted about; the secret itself cannot be recovered from it.
pub fn fingerprint(secret: &str) -> String {
    Sha256::digest(secret.as_bytes()).iter().take(6).map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(days: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + days * 86_400, 0).unwrap_or_default()
    }

    #[test]
    fn a_token_is_flagged_thirty_days_before_it_expires_and_refused_after() {
        assert_eq!(CredentialStatus::at(Some(t(31)), t(0)), CredentialStatus::Valid { expires_at: Some(t(31)) });
        assert_eq!(CredentialStatus::at(Some(t(30)), t(0)), CredentialStatus::ExpiresSoon { expires_at: t(30) });
        assert_eq!(CredentialStatus::at(Some(t(0)), t(0)), CredentialStatus::Expired { expires_at: t(0) });
        assert_eq!(CredentialStatus::at(None, t(0)), CredentialStatus::Valid { expires_at: None });
        assert!(CredentialStatus::at(Some(t(1)), t(0))
            .warning("MKIO_TOKEN_X")
            .is_some_and(|w| w.contains("MKIO_TOKEN_X")));
    }

    #[test]
    fn a_fingerprint_differs_between_tokens_and_does_not_contain_them() {
        assert_ne!(fingerprint("token-a"), fingerprint("token-b"));
        assert!(!fingerprint("token-a").contains("token"));
        assert_eq!(fingerprint("token-a").len(), 12);
    }
}
