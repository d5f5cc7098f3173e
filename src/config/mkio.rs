//! The MK.IO part of an account's settings: the project, its API endpoint, the API token (from a setting of
//! its own, a Key Vault reference in Azure), the storage registered in the project with the product's own
//! credential for it, and the project's request budget; plus the settings of the MK.IO webhook.
//!
//! Secrets (the token, the storage SAS, the webhook secret) are kept in [`Secret`], which never prints.

use super::{bad, parse_url, ConfigError};
use base64::Engine;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use std::fmt;
use url::Url;

/// MK.IO's public API host; an account points elsewhere only for the local emulator.
pub const DEFAULT_MKIO_ENDPOINT: &str = "https://app.mk.io";

/// MK.IO documents 1,000 writes and 2,000 reads a minute per project; the product keeps 10% below them, so a
/// clock difference or a call from elsewhere (the portal, another tool) does not tip the project over.
pub const DEFAULT_WRITES_PER_MINUTE: u32 = 900;
/// See [`DEFAULT_WRITES_PER_MINUTE`].
pub const DEFAULT_READS_PER_MINUTE: u32 = 1800;

/// A secret value read from a setting: never printed, compared or logged.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The value, for the one place that must send it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// The storage account registered in an MK.IO project, as the product reaches it for blob copies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MkioStorage {
    /// The name the storage is registered under in the project (assets' `storageAccountName`).
    pub name: String,
    /// Its blob endpoint, `https://<account>.blob.core.windows.net`.
    pub url: Url,
    /// The setting the SAS came from, for messages.
    pub sas_setting: String,
    /// How the product signs its access to that storage.
    pub credential: StorageCredential,
}

/// The product's own credential for an MK.IO project's registered storage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StorageCredential {
    /// An account SAS (query string without `?`) allowing list, read, write and create on blobs and
    /// containers.
    Sas(Secret),
    /// User-delegation SAS the product signs with its own identity ([`crate::media::delegation`]), for the
    /// storage account the URL names.
    UserDelegation {
        /// The storage account name, as signed into each SAS.
        account: String,
    },
}

/// The API token of a project, with what the product learnt from it without verifying it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MkioToken {
    /// The setting it came from, for messages.
    pub setting: String,
    /// The token itself.
    pub value: Secret,
    /// Its `exp` claim, if it has one.
    pub expires_at: Option<DateTime<Utc>>,
    /// A short digest of the token, so an alert about it is sent once per token, not once per sweep.
    pub fingerprint: String,
}

/// What an MK.IO account adds to [`super::AccountConfig`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MkioAccount {
    /// The project name in `/api/v1/projects/{project}/...`.
    pub project: String,
    /// The API host (`https://app.mk.io`).
    pub endpoint: Url,
    /// The bearer token.
    pub token: MkioToken,
    /// The project's registered storage, for copies between projects.
    pub storage: MkioStorage,
    /// The client-side budget of writes (PUT, POST, PATCH, DELETE) per minute for this project.
    pub writes_per_minute: u32,
    /// The client-side budget of reads (GET) per minute for this project.
    pub reads_per_minute: u32,
}

/// The MK.IO fields of one `MEDIA_ACCOUNTS` entry, as written.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct RawMkio {
    pub(super) project: Option<String>,
    pub(super) mkio_endpoint: Option<String>,
    pub(super) token_setting: Option<String>,
    pub(super) storage: Option<RawStorage>,
    pub(super) writes_per_minute: Option<u32>,
    pub(super) reads_per_minute: Option<u32>,
}

impl RawMkio {
    /// Whether any MK.IO field is set (they are refused on accounts of other providers).
    pub(super) fn any(&self) -> bool {
        self.project.is_some()
            || self.mkio_endpoint.is_some()
            || self.token_setting.is_some()
            || self.storage.is_some()
            || self.writes_per_minute.is_some()
            || self.reads_per_minute.is_some()
    }
}

/// `storage` as written.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct RawStorage {
    name: String,
    url: String,
    sas_setting: Option<String>,
}

/// The setting name for an account's secret when the entry does not name one: `MKIO_TOKEN_AMSWE` for
/// account `amswe` (account names are lowercase letters and digits, so the result is a valid setting name).
fn default_setting(prefix: &str, account: &str) -> String {
    format!("{prefix}_{}", account.to_ascii_uppercase())
}

/// Reads the MK.IO part of account `name`, looking its secrets up through `lookup`.
pub(super) fn parse_account(
    name: &str,
    raw: RawMkio,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<MkioAccount, ConfigError> {
    const S: &str = "MEDIA_ACCOUNTS";
    let project = raw.project.unwrap_or_else(|| name.to_owned());
    let project_ok = !project.is_empty()
        && project.len() <= 63
        && project.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !project_ok {
        return Err(bad(S, format!("account {name:?}: project {project:?} must be letters, digits, '-' and '_'")));
    }
    let endpoint = parse_url(raw.mkio_endpoint.as_deref().unwrap_or(DEFAULT_MKIO_ENDPOINT))
        .map_err(|p| bad(S, format!("account {name:?}: mkioEndpoint {p}")))?;
    let token_setting = raw.token_setting.unwrap_or_else(|| default_setting("MKIO_TOKEN", name));
    let token = read_token(name, &token_setting, lookup)?;
    let Some(storage) = raw.storage else {
        return Err(bad(
            S,
            format!(
                "account {name:?}: mkio accounts need \"storage\": {{\"name\", \"url\", \"sasSetting\"}}, the storage registered in the project, for copies to other regions"
            ),
        ));
    };
    let url = parse_url(&storage.url).map_err(|p| bad(S, format!("account {name:?}: storage.url {p}")))?;
    // A named sasSetting must be set; without one, an unset default setting means the product signs
    // user-delegation SAS with its identity (ARM_AUTH: the managed identity in Azure).
    let named = storage.sas_setting.is_some();
    let sas_setting = storage.sas_setting.unwrap_or_else(|| default_setting("MKIO_STORAGE_SAS", name));
    let sas = lookup(&sas_setting).map(|v| v.trim().trim_start_matches('?').to_owned()).filter(|v| !v.is_empty());
    if sas.is_none() && named {
        return Err(bad(S, format!("account {name:?}: the storage SAS setting {sas_setting} is not set")));
    }
    let credential = match sas {
        Some(sas) if !sas.split('&').any(|pair| pair.starts_with("sig=")) => {
            return Err(bad(S, format!("account {name:?}: {sas_setting} is not a SAS token (no sig=)")));
        }
        Some(sas) => StorageCredential::Sas(Secret(sas)),
        None => match crate::media::delegation::storage_account_name(&url) {
            Some(account) => StorageCredential::UserDelegation { account },
            None => return Err(bad(S, format!("account {name:?}: storage.url {url} names no storage account"))),
        },
    };
    let per_minute = |field: &str, value: Option<u32>, default: u32| -> Result<u32, ConfigError> {
        match value {
            None => Ok(default),
            Some(n) if n >= 1 => Ok(n),
            Some(_) => Err(bad(S, format!("account {name:?}: {field} must be at least 1"))),
        }
    };
    Ok(MkioAccount {
        project,
        endpoint,
        token,
        storage: MkioStorage { name: storage.name, url, sas_setting, credential },
        writes_per_minute: per_minute("writesPerMinute", raw.writes_per_minute, DEFAULT_WRITES_PER_MINUTE)?,
        reads_per_minute: per_minute("readsPerMinute", raw.reads_per_minute, DEFAULT_READS_PER_MINUTE)?,
    })
}

fn read_token(account: &str, setting: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<MkioToken, ConfigError> {
    const S: &str = "MEDIA_ACCOUNTS";
    let value = lookup(setting).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
    let Some(value) = value else {
        return Err(bad(S, format!("account {account:?}: the MK.IO token setting {setting} is not set")));
    };
    if value.starts_with("@Microsoft.KeyVault(") {
        // The host resolves Key Vault references before the handler starts; seeing one means it could not.
        return Err(bad(
            S,
            format!("account {account:?}: {setting} is an unresolved Key Vault reference (check the app's access to the vault)"),
        ));
    }
    // An expired token does not stop start-up: the sweep alerts about it, and the other accounts keep working.
    let expires_at = jwt_expiry(&value)
        .map_err(|problem| bad(S, format!("account {account:?}: {setting} is not an MK.IO API token: {problem}")))?;
    let fingerprint = crate::domain::credential::fingerprint(&value);
    Ok(MkioToken { setting: setting.to_owned(), value: Secret(value), expires_at, fingerprint })
}

/// Why a token is not a readable JWT.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    /// Not three dot-separated parts.
    #[error("not a JWT (header.payload.signature)")]
    Shape,
    /// The payload is not base64url JSON.
    #[error("its payload is not base64url-encoded JSON")]
    Payload,
    /// `exp` is there but not a number of seconds.
    #[error("its exp claim is not a number of seconds")]
    Exp,
}

/// The `exp` claim of a JWT, read without verifying the signature: the product only needs to know when the
/// token stops working, and MK.IO verifies it on every call. `None` when the token has no `exp`.
pub fn jwt_expiry(token: &str) -> Result<Option<DateTime<Utc>>, JwtError> {
    let parts: Vec<&str> = token.split('.').collect();
    let [_, payload, _] = parts.as_slice() else { return Err(JwtError::Shape) };
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .map_err(|_| JwtError::Payload)?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).map_err(|_| JwtError::Payload)?;
    match claims.get("exp") {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(exp) => {
            let secs = exp.as_i64().or_else(|| exp.as_f64().map(|f| f as i64)).ok_or(JwtError::Exp)?;
            DateTime::from_timestamp(secs, 0).map(Some).ok_or(JwtError::Exp)
        }
    }
}

/// Refuses two accounts naming one MK.IO project: its webhook deliveries name the project only, so they
/// could not be told apart, and the two would split one rate budget without knowing it.
pub(super) fn distinct_projects(accounts: &[super::AccountConfig]) -> Result<(), ConfigError> {
    let mut seen: Vec<(&str, &str)> = Vec::new();
    for account in accounts {
        let Some(mkio) = &account.mkio else { continue };
        if let Some((other, _)) = seen.iter().find(|(_, p)| p.eq_ignore_ascii_case(&mkio.project)) {
            return Err(bad(
                "MEDIA_ACCOUNTS",
                format!("accounts {other:?} and {:?} name the same MK.IO project {:?}", account.name, mkio.project),
            ));
        }
        seen.push((&account.name, &mkio.project));
    }
    Ok(())
}

/// The MK.IO webhook: where MK.IO should deliver job events, and the secret it must send with them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookSettings {
    /// OnMkioEvent's public URL (`https://<app>.azurewebsites.net/api/events/mkio`).
    pub url: Url,
    /// The value of the `x-mkio-webhook-secret` header the rule sets.
    pub secret: Secret,
}

/// OnMkioEvent's route, as its function.json declares it under the host's `/api` prefix.
const WEBHOOK_PATH: &str = "/api/events/mkio";

/// The webhook settings, required as soon as one account is an MK.IO project.
pub(super) fn webhook(
    get: &impl Fn(&str) -> Option<String>,
    any_mkio: bool,
) -> Result<Option<WebhookSettings>, ConfigError> {
    // In Azure the platform names the app's host, so the deployment need not know it before the app exists.
    let url =
        get("MKIO_WEBHOOK_URL").or_else(|| get("WEBSITE_HOSTNAME").map(|host| format!("https://{host}{WEBHOOK_PATH}")));
    let secret = get("MKIO_WEBHOOK_SECRET");
    if !any_mkio {
        return Ok(None);
    }
    let url = url.ok_or_else(|| {
        bad(
            "MKIO_WEBHOOK_URL",
            "missing; MK.IO accounts need the public URL of OnMkioEvent (https://<app>/api/events/mkio), \
             which defaults to one on WEBSITE_HOSTNAME only in Azure",
        )
    })?;
    let url = parse_url(&url).map_err(|p| bad("MKIO_WEBHOOK_URL", p))?;
    let secret = secret.ok_or_else(|| {
        bad(
            "MKIO_WEBHOOK_SECRET",
            "missing; MK.IO accounts need a shared secret the webhook rule sends with each event",
        )
    })?;
    if secret.starts_with("@Microsoft.KeyVault(") {
        return Err(bad(
            "MKIO_WEBHOOK_SECRET",
            "is an unresolved Key Vault reference (check the app's access to the vault)",
        ));
    }
    // The secret is all that authenticates a delivery; a short one could be guessed.
    if secret.len() < 16 {
        return Err(bad("MKIO_WEBHOOK_SECRET", "must be at least 16 characters"));
    }
    Ok(Some(WebhookSettings { url, secret: Secret(secret) }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwt(payload: &str) -> String {
        let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        format!("{}.{}.c2ln", b64(r#"{"alg":"HS256","typ":"JWT"}"#), b64(payload))
    }

    #[test]
    fn the_expiry_of_a_token_is_read_from_its_exp_claim_without_verifying_it() {
        assert_eq!(jwt_expiry(&jwt(r#"{"sub":"u","exp":1767225600}"#)), Ok(DateTime::from_timestamp(1_767_225_600, 0)));
        assert_eq!(jwt_expiry(&jwt(r#"{"sub":"u"}"#)), Ok(None), "a token without exp never expires");
        assert_eq!(jwt_expiry("not-a-token"), Err(JwtError::Shape));
        assert_eq!(jwt_expiry("a.%%%.c"), Err(JwtError::Payload));
        assert_eq!(jwt_expiry(&jwt(r#"{"exp":"soon"}"#)), Err(JwtError::Exp));
    }

    #[test]
    fn secrets_never_print() {
        assert_eq!(format!("{:?}", Secret::new("hunter2")), "<redacted>");
    }

    #[test]
    fn secret_settings_default_to_names_derived_from_the_account() {
        assert_eq!(default_setting("MKIO_TOKEN", "mkwe1"), "MKIO_TOKEN_MKWE1");
    }
}
