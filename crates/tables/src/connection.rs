//! Parsing of storage connection strings into an endpoint and a shared key.
//!
//! Supports the forms the product meets: `UseDevelopmentStorage=true`,
//! account name + key + endpoint suffix, and an explicit `TableEndpoint`
//! (including Azurite's path-style `http://127.0.0.1:PORT/devstoreaccount1`).

use base64::Engine as _;
use url::Url;

use crate::TableError;

/// Azurite's fixed development account.
pub const DEV_ACCOUNT_NAME: &str = "devstoreaccount1";
/// Azurite's well-known development account key (public, not a secret).
pub const DEV_ACCOUNT_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";
/// Azurite's default table endpoint.
pub const DEV_TABLE_ENDPOINT: &str = "http://127.0.0.1:10002/devstoreaccount1";

/// What a connection string resolves to.
#[derive(Clone, PartialEq, Eq)]
pub struct ConnectionInfo {
    /// Base URL of the table service, without a trailing slash in its path.
    pub endpoint: Url,
    /// Storage account name, used in the shared key signature.
    pub account: String,
    /// Decoded account key.
    pub key: Vec<u8>,
}

impl std::fmt::Debug for ConnectionInfo {
    // The key is a secret: keep it out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectionInfo")
            .field("endpoint", &self.endpoint.as_str())
            .field("account", &self.account)
            .finish_non_exhaustive()
    }
}

/// Parses a storage connection string.
pub fn parse_connection_string(cs: &str) -> Result<ConnectionInfo, TableError> {
    let mut protocol = None;
    let mut account = None;
    let mut key = None;
    let mut suffix = None;
    let mut table_endpoint = None;
    let mut dev = false;

    for part in cs.split(';').map(str::trim).filter(|p| !p.is_empty()) {
        let Some((name, value)) = part.split_once('=') else {
            return Err(TableError::Config(format!(
                "connection string part `{}` is not of the form Name=Value",
                redact(part)
            )));
        };
        let value = value.trim();
        match name.trim().to_ascii_lowercase().as_str() {
            "defaultendpointsprotocol" => protocol = Some(value.to_string()),
            "accountname" => account = Some(value.to_string()),
            "accountkey" => key = Some(value.to_string()),
            "endpointsuffix" => suffix = Some(value.to_string()),
            "tableendpoint" => table_endpoint = Some(value.to_string()),
            "usedevelopmentstorage" => dev = value.eq_ignore_ascii_case("true"),
            "sharedaccesssignature" => {
                return Err(TableError::Config(
                    "connection strings with SharedAccessSignature are not supported; use an account key or a token credential".into(),
                ))
            }
            // Endpoints of other services and proxy settings do not concern tables.
            _ => {}
        }
    }

    if dev {
        return Ok(ConnectionInfo {
            endpoint: parse_endpoint(DEV_TABLE_ENDPOINT)?,
            account: DEV_ACCOUNT_NAME.to_string(),
            key: decode_key(DEV_ACCOUNT_KEY)?,
        });
    }

    let account = account
        .filter(|a| !a.is_empty())
        .ok_or_else(|| TableError::Config("connection string has no AccountName".into()))?;
    let key = key
        .filter(|k| !k.is_empty())
        .ok_or_else(|| TableError::Config("connection string has no AccountKey".into()))?;
    let key = decode_key(&key)?;

    let endpoint = match table_endpoint {
        Some(e) => parse_endpoint(&e)?,
        None => {
            let protocol = protocol.unwrap_or_else(|| "https".to_string());
            if protocol != "https" && protocol != "http" {
                return Err(TableError::Config(format!(
                    "DefaultEndpointsProtocol must be http or https, not `{protocol}`"
                )));
            }
            let suffix = suffix.unwrap_or_else(|| "core.windows.net".to_string());
            parse_endpoint(&format!("{protocol}://{account}.table.{suffix}"))?
        }
    };
    Ok(ConnectionInfo { endpoint, account, key })
}

/// Parses an endpoint URL and strips a trailing `/`, so paths can be appended.
pub(crate) fn parse_endpoint(raw: &str) -> Result<Url, TableError> {
    let mut url =
        Url::parse(raw).map_err(|e| TableError::Config(format!("table endpoint `{raw}` is not a URL: {e}")))?;
    if url.scheme() != "http" && url.scheme() != "https" {
        return Err(TableError::Config(format!("table endpoint `{raw}` must use http or https")));
    }
    if url.cannot_be_a_base() || url.host_str().is_none() {
        return Err(TableError::Config(format!("table endpoint `{raw}` has no host")));
    }
    let path = url.path().trim_end_matches('/').to_string();
    url.set_path(&path);
    url.set_query(None);
    url.set_fragment(None);
    Ok(url)
}

fn decode_key(key: &str) -> Result<Vec<u8>, TableError> {
    base64::engine::general_purpose::STANDARD
        .decode(key)
        .map_err(|e| TableError::Config(format!("AccountKey is not valid base64: {e}")))
}

/// Hides the value of a malformed part in case it is (part of) a key.
fn redact(part: &str) -> String {
    let shown: String = part.chars().take(16).collect();
    if shown.len() < part.len() {
        format!("{shown}…")
    } else {
        shown
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "a2V5LWJ5dGVz"; // "key-bytes"

    #[test]
    fn development_storage_points_at_local_azurite() {
        let info = parse_connection_string("UseDevelopmentStorage=true").unwrap();
        assert_eq!(info.endpoint.as_str(), DEV_TABLE_ENDPOINT);
        assert_eq!(info.account, DEV_ACCOUNT_NAME);
        assert_eq!(info.key.len(), 64);
    }

    #[test]
    fn account_and_suffix_build_the_public_endpoint() {
        let cs =
            format!("DefaultEndpointsProtocol=https;AccountName=acct;AccountKey={KEY};EndpointSuffix=core.windows.net");
        let info = parse_connection_string(&cs).unwrap();
        assert_eq!(info.endpoint.as_str(), "https://acct.table.core.windows.net/");
        assert_eq!(info.account, "acct");
        assert_eq!(info.key, b"key-bytes");
    }

    #[test]
    fn missing_protocol_and_suffix_default_to_public_azure_over_https() {
        let cs = format!("AccountName=acct;AccountKey={KEY}");
        let info = parse_connection_string(&cs).unwrap();
        assert_eq!(info.endpoint.as_str(), "https://acct.table.core.windows.net/");
    }

    #[test]
    fn an_explicit_path_style_table_endpoint_is_kept() {
        let cs = format!(
            "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey={DEV_ACCOUNT_KEY};TableEndpoint=http://127.0.0.1:41234/devstoreaccount1/;"
        );
        let info = parse_connection_string(&cs).unwrap();
        assert_eq!(info.endpoint.as_str(), "http://127.0.0.1:41234/devstoreaccount1");
        assert_eq!(info.account, "devstoreaccount1");
    }

    #[test]
    fn keys_are_case_insensitive_and_values_may_contain_equals_signs() {
        let cs = "accountname=acct;ACCOUNTKEY=YWJjZA==;endpointsuffix=core.chinacloudapi.cn";
        let info = parse_connection_string(cs).unwrap();
        assert_eq!(info.key, b"abcd");
        assert_eq!(info.endpoint.as_str(), "https://acct.table.core.chinacloudapi.cn/");
    }

    #[test]
    fn missing_account_name_is_named_in_the_error() {
        let err = parse_connection_string(&format!("AccountKey={KEY}")).unwrap_err();
        assert!(err.to_string().contains("AccountName"), "{err}");
    }

    #[test]
    fn missing_account_key_is_named_in_the_error() {
        let err = parse_connection_string("AccountName=acct").unwrap_err();
        assert!(err.to_string().contains("AccountKey"), "{err}");
    }

    #[test]
    fn a_key_that_is_not_base64_is_rejected() {
        let err = parse_connection_string("AccountName=acct;AccountKey=not base64!").unwrap_err();
        assert!(err.to_string().contains("base64"), "{err}");
    }

    #[test]
    fn a_malformed_part_is_rejected_without_echoing_secrets() {
        let err = parse_connection_string("AccountName=acct;SomeVeryLongSecretLookingThing").unwrap_err();
        let text = err.to_string();
        assert!(text.contains("Name=Value"), "{text}");
        assert!(!text.contains("SomeVeryLongSecretLookingThing"), "{text}");
    }

    #[test]
    fn a_table_endpoint_that_is_not_a_url_is_rejected() {
        let cs = format!("AccountName=acct;AccountKey={KEY};TableEndpoint=127.0.0.1:10002");
        let err = parse_connection_string(&cs).unwrap_err();
        assert!(err.to_string().contains("TableEndpoint") || err.to_string().contains("endpoint"));
    }

    #[test]
    fn debug_output_hides_the_key() {
        let info = parse_connection_string("UseDevelopmentStorage=true").unwrap();
        let text = format!("{info:?}");
        assert!(!text.contains("key:"), "{text}");
    }
}
