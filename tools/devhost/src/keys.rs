//! Function keys, checked the way the Functions host checks them: an HTTP function's `authLevel` says which
//! keys open it. `anonymous` needs none; `function` takes a key of that function, a host key or the master
//! key; `admin` (and the admin API, `/admin/...`) takes the master key only. A caller presents the key in
//! the `code` query parameter or the `x-functions-key` header; a missing or wrong key is answered 401 with
//! an empty body, and the handler is never called.
//!
//! Keys come from the JSON file given with `--keys`; without one, nothing is checked (as Core Tools does
//! locally). The file names keys the way the host does, by kind:
//!
//! ```json
//! { "masterKey": "...",
//!   "hostKeys": { "default": "..." },
//!   "functionKeys": { "GetStatus": { "operator": "..." }, "SubmitJob": { "client": "..." } } }
//! ```

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use crate::config::{AuthLevel, ConfigError};

/// The keys of one app.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Keys {
    /// Opens everything, the admin API included.
    #[serde(default)]
    master_key: Option<String>,
    /// Open every function of level `function`, by key name.
    #[serde(default)]
    host_keys: BTreeMap<String, String>,
    /// Per function (folder name, any case), its own keys by key name.
    #[serde(default)]
    function_keys: BTreeMap<String, BTreeMap<String, String>>,
}

/// Compares without stopping at the first difference, so the time taken says nothing about a key.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Keys {
    /// Reads a keys file; every key must be non-empty.
    pub fn load(path: &Path) -> Result<Keys, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_path_buf(), source })?;
        let keys: Keys =
            serde_json::from_str(&text).map_err(|source| ConfigError::Parse { path: path.to_path_buf(), source })?;
        let empty = keys.master_key.as_deref() == Some("")
            || keys.host_keys.values().any(String::is_empty)
            || keys.function_keys.values().flat_map(BTreeMap::values).any(String::is_empty);
        if empty {
            return Err(ConfigError::Invalid { path: path.to_path_buf(), message: "a key is empty".into() });
        }
        Ok(keys)
    }

    /// The functions the file gives keys to, as written.
    pub fn functions(&self) -> impl Iterator<Item = &str> {
        self.function_keys.keys().map(String::as_str)
    }

    fn is_master(&self, presented: &str) -> bool {
        self.master_key.as_deref().is_some_and(|m| same(m, presented))
    }

    /// Whether `presented` opens `function`, whose trigger has `level`.
    pub fn opens(&self, function: &str, level: AuthLevel, presented: Option<&str>) -> bool {
        let Some(presented) = presented else {
            return level == AuthLevel::Anonymous;
        };
        match level {
            AuthLevel::Anonymous => true,
            AuthLevel::Admin => self.is_master(presented),
            AuthLevel::Function => {
                let own = self
                    .function_keys
                    .iter()
                    .filter(|(name, _)| name.eq_ignore_ascii_case(function))
                    .flat_map(|(_, keys)| keys.values());
                self.is_master(presented)
                    || self.host_keys.values().any(|k| same(k, presented))
                    || own.into_iter().any(|k| same(k, presented))
            }
        }
    }

    /// Whether `presented` opens the admin API.
    pub fn opens_admin(&self, presented: Option<&str>) -> bool {
        presented.is_some_and(|p| self.is_master(p))
    }
}

/// The key a request presents: the `x-functions-key` header, else the `code` query parameter.
pub fn presented(headers: &axum::http::HeaderMap, uri: &axum::http::Uri) -> Option<String> {
    if let Some(v) = headers.get("x-functions-key").and_then(|v| v.to_str().ok()) {
        return Some(v.to_owned());
    }
    let query = uri.query()?;
    url::form_urlencoded::parse(query.as_bytes()).find(|(k, _)| k == "code").map(|(_, v)| v.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> Keys {
        serde_json::from_str(
            r#"{"masterKey":"m","hostKeys":{"default":"h"},
                "functionKeys":{"GetStatus":{"operator":"op"},"SubmitJob":{"client":"cl"},"GetJob":{"client":"cl"}}}"#,
        )
        .expect("keys")
    }

    #[test]
    fn a_function_key_opens_only_its_own_functions() {
        let k = keys();
        assert!(k.opens("SubmitJob", AuthLevel::Function, Some("cl")));
        assert!(k.opens("getjob", AuthLevel::Function, Some("cl")), "function names match in any case");
        assert!(!k.opens("GetStatus", AuthLevel::Function, Some("cl")), "a client key is refused on GetStatus");
        assert!(k.opens("GetStatus", AuthLevel::Function, Some("op")));
        assert!(!k.opens("SubmitJob", AuthLevel::Function, Some("op")));
    }

    #[test]
    fn host_and_master_keys_open_every_function_and_only_the_master_key_opens_admin_level() {
        let k = keys();
        for key in ["h", "m"] {
            assert!(k.opens("GetStatus", AuthLevel::Function, Some(key)));
        }
        assert!(k.opens("X", AuthLevel::Admin, Some("m")));
        assert!(!k.opens("X", AuthLevel::Admin, Some("h")));
        assert!(k.opens_admin(Some("m")) && !k.opens_admin(Some("h")) && !k.opens_admin(None));
    }

    #[test]
    fn no_key_opens_only_anonymous_functions() {
        let k = keys();
        assert!(k.opens("OnMkioEvent", AuthLevel::Anonymous, None));
        assert!(!k.opens("SubmitJob", AuthLevel::Function, None));
        assert!(!k.opens("SubmitJob", AuthLevel::Function, Some("")));
    }

    #[test]
    fn the_key_comes_from_the_header_or_the_code_parameter() {
        let uri: axum::http::Uri = "/api/status?code=a%2Bb".parse().expect("uri");
        let mut headers = axum::http::HeaderMap::new();
        assert_eq!(presented(&headers, &uri).as_deref(), Some("a+b"));
        headers.insert("x-functions-key", "hdr".parse().expect("header"));
        assert_eq!(presented(&headers, &uri).as_deref(), Some("hdr"));
    }
}
