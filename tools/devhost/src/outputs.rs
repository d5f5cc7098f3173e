//! Output bindings (Service Bus, queue, event hub) recorded as JSON lines in
//! `{outputs-dir}/{queueOrTopic}.jsonl`, converted the way the host converts
//! `Outputs` values into messages (contracts 1.5).

use std::path::{Path, PathBuf};

use base64::Engine;
use serde_json::Value;
use tokio::io::AsyncWriteExt;

/// Writing an output file failed.
#[derive(Debug, thiserror::Error)]
#[error("cannot write output file {path}: {source}")]
pub struct OutputError {
    /// The file.
    pub path: PathBuf,
    /// The I/O error.
    pub source: std::io::Error,
}

/// Appends messages to per-target files; one lock serializes all appends so
/// lines of concurrent invocations never interleave.
#[derive(Debug)]
pub struct OutputWriter {
    dir: PathBuf,
    lock: tokio::sync::Mutex<()>,
}

/// .NET's `Convert.FromBase64String`: whitespace ignored, length a multiple of
/// four, padding allowed, non-zero trailing bits tolerated.
fn dotnet_base64(s: &str) -> Option<Vec<u8>> {
    let cleaned: String = s.chars().filter(|c| !matches!(c, ' ' | '\t' | '\r' | '\n')).collect();
    if !cleaned.len().is_multiple_of(4) {
        return None;
    }
    let engine = base64::engine::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_allow_trailing_bits(true)
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
    );
    engine.decode(cleaned).ok()
}

/// Text of one message for an element of the output value (`JToken.ToString()`).
fn element_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        Value::Object(_) | Value::Array(_) => serde_json::to_string_pretty(v).unwrap_or_default(),
        other => other.to_string(),
    }
}

/// Converts an `Outputs` value into message texts. `warn` receives a note when
/// a string was treated as base64, which the real host does silently.
pub fn messages(value: Option<&Value>, binary: bool, mut warn: impl FnMut(String)) -> Vec<String> {
    match value {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(s)) => {
            if !binary {
                if let Some(bytes) = dotnet_base64(s) {
                    warn(format!(
                        "the string {s:?} is valid base64, so the real host would decode it and send its bytes; send JSON text or an object instead"
                    ));
                    return vec![String::from_utf8_lossy(&bytes).into_owned()];
                }
            }
            if s.trim_start().starts_with('[') {
                if let Ok(Value::Array(items)) = serde_json::from_str::<Value>(s) {
                    return items.iter().map(element_text).collect();
                }
            }
            vec![s.clone()]
        }
        Some(Value::Array(items)) => items.iter().map(element_text).collect(),
        Some(other) => vec![element_text(other)],
    }
}

/// One file line for a message: compact JSON when the text is JSON, else a JSON string.
pub fn to_line(text: &str) -> String {
    match serde_json::from_str::<Value>(text) {
        Ok(v) => v.to_string(),
        Err(_) => Value::String(text.to_string()).to_string(),
    }
}

impl OutputWriter {
    /// A writer for `dir`, created on first write.
    pub fn new(dir: PathBuf) -> Self {
        OutputWriter { dir, lock: tokio::sync::Mutex::new(()) }
    }

    /// The directory the files go to.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Appends `lines` (already one JSON value each) to `{target}.jsonl`.
    pub async fn append(&self, target: &str, lines: &[String]) -> Result<(), OutputError> {
        if lines.is_empty() {
            return Ok(());
        }
        let path = self.dir.join(format!("{target}.jsonl"));
        let err = |source| OutputError { path: path.clone(), source };
        let mut buf = String::new();
        for l in lines {
            buf.push_str(l);
            buf.push('\n');
        }
        let _guard = self.lock.lock().await;
        tokio::fs::create_dir_all(&self.dir).await.map_err(err)?;
        let mut file = tokio::fs::OpenOptions::new().create(true).append(true).open(&path).await.map_err(err)?;
        file.write_all(buf.as_bytes()).await.map_err(err)?;
        file.flush().await.map_err(err)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn msgs(v: Value) -> Vec<String> {
        messages(Some(&v), false, |_| {}).iter().map(|m| to_line(m)).collect()
    }

    #[test]
    fn an_array_becomes_one_message_per_element() {
        assert_eq!(msgs(json!([{"a": 1}, "text", 3])), vec![r#"{"a":1}"#, r#""text""#, "3"]);
    }

    #[test]
    fn a_string_holding_a_json_array_is_split_too() {
        assert_eq!(msgs(json!("[{\"a\":1},{\"b\":2}]")), vec![r#"{"a":1}"#, r#"{"b":2}"#]);
    }

    #[test]
    fn an_object_or_json_text_is_one_compacted_message() {
        assert_eq!(msgs(json!({"jobId": "j1", "n": [1, 2]})), vec![r#"{"jobId":"j1","n":[1,2]}"#]);
        assert_eq!(msgs(json!("{ \"jobId\": \"j1\" }")), vec![r#"{"jobId":"j1"}"#]);
    }

    #[test]
    fn null_or_missing_values_send_nothing() {
        assert!(messages(None, false, |_| {}).is_empty());
        assert!(msgs(Value::Null).is_empty());
    }

    #[test]
    fn a_valid_base64_string_is_decoded_with_a_warning() {
        let mut warned = false;
        let m = messages(Some(&json!("aGVsbG8=")), false, |_| warned = true);
        assert_eq!(m, vec!["hello"]);
        assert!(warned);
        let kept = messages(Some(&json!("aGVsbG8=")), true, |_| panic!("no warning for binary"));
        assert_eq!(kept, vec!["aGVsbG8="]);
    }

    #[test]
    fn plain_text_that_is_not_base64_is_kept_as_a_json_string() {
        assert_eq!(msgs(json!("hello world")), vec![r#""hello world""#]);
    }
}
