//! Entities on the wire: ETags, conversions between caller types and the
//! flat JSON objects of the Table service, URL encoding of keys, OData literals.
//!
//! Supported property values are strings, bools, doubles and 32-bit integers.
//! 64-bit integers, GUIDs, binary and dates would need `@odata.type`
//! annotations; the client does not add them and refuses integers outside the
//! 32-bit range instead of letting the service guess (callers store such
//! values as strings). Nested objects and arrays are refused as well.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::TableError;

/// An entity version as returned by the service; opaque, compare for equality only.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ETag(pub String);

impl ETag {
    /// The raw header value.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for ETag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A stored entity together with the version it was read at.
#[derive(Clone, Debug, PartialEq)]
pub struct Entity<T> {
    /// The entity, deserialized from all of its properties (including
    /// `PartitionKey`, `RowKey` and `Timestamp`).
    pub value: T,
    /// Version to pass back in [`IfMatch::ETag`] for optimistic concurrency.
    pub etag: ETag,
}

/// Condition for updates and deletes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IfMatch {
    /// Apply whatever version is stored (`If-Match: *`).
    Any,
    /// Apply only if the stored version is still this one.
    ETag(ETag),
}

impl IfMatch {
    /// The `If-Match` header value.
    pub(crate) fn header_value(&self) -> &str {
        match self {
            IfMatch::Any => "*",
            IfMatch::ETag(e) => &e.0,
        }
    }
}

impl From<ETag> for IfMatch {
    fn from(e: ETag) -> Self {
        IfMatch::ETag(e)
    }
}

/// Quotes a string as an OData literal for `$filter`: wraps it in `'…'` and
/// doubles every `'` inside, so values cannot break out of the literal.
pub fn filter_string_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// Percent-encodes everything but RFC 3986 unreserved characters, so keys and
/// query values reach the service byte for byte (spaces as `%20`, never `+`).
pub(crate) fn encode_component(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The path segment addressing one entity: `table(PartitionKey='..',RowKey='..')`.
pub(crate) fn entity_segment(table: &str, pk: &str, rk: &str) -> String {
    format!(
        "{table}(PartitionKey='{}',RowKey='{}')",
        encode_component(&pk.replace('\'', "''")),
        encode_component(&rk.replace('\'', "''"))
    )
}

/// Validates a key: the service forbids `/ \ # ?` and control characters.
pub(crate) fn check_key(which: &str, key: &str) -> Result<(), TableError> {
    if key.chars().any(|c| matches!(c, '/' | '\\' | '#' | '?') || c.is_control()) {
        return Err(TableError::local(
            "InvalidKey",
            format!("{which} `{key}` contains a character the table service forbids (/ \\ # ? or a control character)"),
        ));
    }
    if key.len() > 1024 {
        return Err(TableError::local("InvalidKey", format!("{which} is longer than 1 KiB")));
    }
    Ok(())
}

/// Whether a property is service metadata rather than entity data.
fn is_metadata(name: &str) -> bool {
    name.starts_with("odata.") || name.contains("@odata.")
}

/// Turns a caller value into the JSON object sent to the service.
pub(crate) fn to_body<T: Serialize>(pk: &str, rk: &str, e: &T) -> Result<Value, TableError> {
    let v = serde_json::to_value(e)
        .map_err(|err| TableError::local("InvalidEntity", format!("cannot serialize: {err}")))?;
    prepare_body(pk, rk, v)
}

/// Sets the keys, drops metadata, `Timestamp` (owned by the service) and
/// nulls (the service does not store them), and refuses unsupported values.
pub(crate) fn prepare_body(pk: &str, rk: &str, v: Value) -> Result<Value, TableError> {
    check_key("PartitionKey", pk)?;
    check_key("RowKey", rk)?;
    let Value::Object(map) = v else {
        return Err(TableError::local("InvalidEntity", "an entity must serialize to a JSON object"));
    };
    let mut out = Map::with_capacity(map.len() + 2);
    for (name, value) in map {
        if is_metadata(&name) || name == "Timestamp" || name == "PartitionKey" || name == "RowKey" || value.is_null() {
            continue;
        }
        match &value {
            Value::Object(_) | Value::Array(_) => {
                return Err(TableError::local(
                    "UnsupportedValue",
                    format!("property `{name}` is an object or array; table entities are flat"),
                ))
            }
            Value::Number(n) if !n.is_f64() && n.as_i64().and_then(|i| i32::try_from(i).ok()).is_none() => {
                return Err(TableError::local(
                    "UnsupportedValue",
                    format!("property `{name}` = {n} does not fit a 32-bit integer; store it as a string"),
                ))
            }
            _ => {}
        }
        out.insert(name, value);
    }
    out.insert("PartitionKey".into(), Value::String(pk.to_string()));
    out.insert("RowKey".into(), Value::String(rk.to_string()));
    Ok(Value::Object(out))
}

/// Turns one JSON entity from the service into an [`Entity`], taking the ETag
/// from `odata.etag` unless the response header gave one.
pub(crate) fn from_body<T: DeserializeOwned>(
    mut map: Map<String, Value>,
    header_etag: Option<ETag>,
    status: u16,
) -> Result<Entity<T>, TableError> {
    let body_etag = match map.get("odata.etag") {
        Some(Value::String(s)) => Some(ETag(s.clone())),
        _ => None,
    };
    let etag = header_etag.or(body_etag).ok_or_else(|| TableError::Rejected {
        status,
        code: "InvalidResponseBody".into(),
        message: "entity has no ETag (neither header nor odata.etag)".into(),
    })?;
    map.retain(|k, _| !is_metadata(k));
    let value = serde_json::from_value(Value::Object(map)).map_err(|e| TableError::Rejected {
        status,
        code: "InvalidResponseBody".into(),
        message: format!("entity does not match the expected type: {e}"),
    })?;
    Ok(Entity { value, etag })
}

/// Table names: alphanumeric, starting with a letter, 3 to 63 characters,
/// and not the reserved name `tables`.
pub(crate) fn check_table_name(name: &str) -> Result<(), TableError> {
    let ok = (3..=63).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name.chars().all(|c| c.is_ascii_alphanumeric())
        && !name.eq_ignore_ascii_case("tables");
    if ok {
        Ok(())
    } else {
        Err(TableError::Config(format!(
            "invalid table name `{name}`: use 3-63 letters and digits, starting with a letter"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn filter_literals_double_single_quotes() {
        assert_eq!(filter_string_literal("plain"), "'plain'");
        assert_eq!(filter_string_literal("it's"), "'it''s'");
        assert_eq!(filter_string_literal("''"), "''''''");
        assert_eq!(filter_string_literal(""), "''");
    }

    #[test]
    fn entity_segments_quote_and_encode_keys() {
        assert_eq!(entity_segment("jobs", "a b", "it's"), "jobs(PartitionKey='a%20b',RowKey='it%27%27s')");
        assert_eq!(entity_segment("jobs", "é", "x"), "jobs(PartitionKey='%C3%A9',RowKey='x')");
    }

    #[test]
    fn bodies_get_keys_and_lose_metadata_timestamps_and_nulls() {
        let v = json!({
            "odata.etag": "W/\"x\"",
            "Timestamp": "2024-01-01T00:00:00Z",
            "Timestamp@odata.type": "Edm.DateTime",
            "PartitionKey": "stale",
            "Name": "n",
            "Gone": null,
            "Count": 5,
            "Ratio": 0.5,
            "On": true
        });
        let body = prepare_body("p", "r", v).unwrap();
        assert_eq!(
            body,
            json!({"PartitionKey": "p", "RowKey": "r", "Name": "n", "Count": 5, "Ratio": 0.5, "On": true})
        );
    }

    #[test]
    fn sixty_four_bit_integers_are_refused() {
        let err = prepare_body("p", "r", json!({"Big": 1i64 << 40})).unwrap_err();
        assert!(matches!(err, TableError::Rejected { status: 0, ref code, .. } if code == "UnsupportedValue"));
        assert!(prepare_body("p", "r", json!({"Max": i32::MAX, "Min": i32::MIN})).is_ok());
    }

    #[test]
    fn nested_values_and_non_objects_are_refused() {
        assert!(prepare_body("p", "r", json!({"List": [1]})).is_err());
        assert!(prepare_body("p", "r", json!({"Obj": {}})).is_err());
        assert!(prepare_body("p", "r", json!("text")).is_err());
    }

    #[test]
    fn keys_with_forbidden_characters_are_refused() {
        assert!(prepare_body("a/b", "r", json!({})).is_err());
        assert!(prepare_body("p", "what?", json!({})).is_err());
        assert!(prepare_body("p", "tab\there", json!({})).is_err());
    }

    #[test]
    fn read_bodies_keep_keys_and_take_the_body_etag() {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Row {
            #[serde(rename = "PartitionKey")]
            pk: String,
            #[serde(rename = "RowKey")]
            rk: String,
            #[serde(rename = "Timestamp")]
            ts: String,
            n: i32,
        }
        let Value::Object(map) = json!({
            "odata.metadata": "x",
            "odata.etag": "W/\"1\"",
            "PartitionKey": "p",
            "RowKey": "r",
            "Timestamp": "t",
            "Timestamp@odata.type": "Edm.DateTime",
            "n": 3
        }) else {
            unreachable!()
        };
        let e: Entity<Row> = from_body(map, None, 200).unwrap();
        assert_eq!(e.etag, ETag("W/\"1\"".into()));
        assert_eq!((e.value.pk.as_str(), e.value.rk.as_str(), e.value.ts.as_str(), e.value.n), ("p", "r", "t", 3));
    }

    #[test]
    fn table_names_follow_the_service_rules() {
        assert!(check_table_name("jobs").is_ok());
        assert!(check_table_name("t1a2b3").is_ok());
        assert!(check_table_name(&"a".repeat(63)).is_ok());
        assert!(check_table_name("ab").is_err());
        assert!(check_table_name(&"a".repeat(64)).is_err());
        assert!(check_table_name("1abc").is_err());
        assert!(check_table_name("has-dash").is_err());
        assert!(check_table_name("Tables").is_err());
    }
}
