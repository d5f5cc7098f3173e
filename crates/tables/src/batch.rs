//! Entity group transactions: building the `multipart/mixed` request body and
//! reading the multipart response.
//!
//! The service answers a failed transaction with HTTP 202 like a successful
//! one; the failure is only visible in the inner response (status, and an
//! `index:` prefix in the error message), so the inner responses are always
//! parsed and checked.

use serde_json::Value;

use crate::entity::{entity_segment, prepare_body, ETag, IfMatch};
use crate::error::error_from_status;
use crate::TableError;

/// Most operations one transaction may hold (service limit).
pub const MAX_BATCH_OPERATIONS: usize = 100;

/// One operation of an entity group transaction. The partition key is given
/// once for the whole transaction; bodies are JSON objects prepared like
/// single-entity writes (keys set by the client, metadata dropped).
#[derive(Clone, Debug, PartialEq)]
pub enum BatchOp {
    /// Insert; the transaction fails with `AlreadyExists` if the row exists.
    Insert {
        /// Row key.
        rk: String,
        /// Entity properties.
        body: Value,
    },
    /// Replace an existing row.
    Replace {
        /// Row key.
        rk: String,
        /// Entity properties.
        body: Value,
        /// Required version.
        if_match: IfMatch,
    },
    /// Merge properties into an existing row.
    Merge {
        /// Row key.
        rk: String,
        /// Properties to set.
        body: Value,
        /// Required version.
        if_match: IfMatch,
    },
    /// Insert or replace.
    Upsert {
        /// Row key.
        rk: String,
        /// Entity properties.
        body: Value,
    },
    /// Delete an existing row.
    Delete {
        /// Row key.
        rk: String,
        /// Required version.
        if_match: IfMatch,
    },
}

impl BatchOp {
    fn rk(&self) -> &str {
        match self {
            BatchOp::Insert { rk, .. }
            | BatchOp::Replace { rk, .. }
            | BatchOp::Merge { rk, .. }
            | BatchOp::Upsert { rk, .. }
            | BatchOp::Delete { rk, .. } => rk,
        }
    }
}

/// A built request: its `Content-Type` (with boundary) and body.
pub(crate) struct BatchRequest {
    pub content_type: String,
    pub body: String,
}

/// Builds the `$batch` body. `base` is the table service endpoint without a
/// trailing slash; operation URLs must be absolute.
pub(crate) fn build_batch(base: &str, table: &str, pk: &str, ops: &[BatchOp]) -> Result<BatchRequest, TableError> {
    let batch = format!("batch_{}", uuid::Uuid::new_v4());
    let changeset = format!("changeset_{}", uuid::Uuid::new_v4());
    let mut body = String::new();
    body.push_str(&format!("--{batch}\r\n"));
    body.push_str(&format!("Content-Type: multipart/mixed; boundary={changeset}\r\n\r\n"));
    for (i, op) in ops.iter().enumerate() {
        let entity_url = format!("{base}/{}", entity_segment(table, pk, op.rk()));
        let (method, url, if_match, json) = match op {
            BatchOp::Insert { rk, body } => {
                ("POST", format!("{base}/{table}"), None, Some(prepare_body(pk, rk, body.clone())?))
            }
            BatchOp::Replace { rk, body, if_match } => {
                ("PUT", entity_url, Some(if_match), Some(prepare_body(pk, rk, body.clone())?))
            }
            BatchOp::Merge { rk, body, if_match } => {
                ("MERGE", entity_url, Some(if_match), Some(prepare_body(pk, rk, body.clone())?))
            }
            BatchOp::Upsert { rk, body } => ("PUT", entity_url, None, Some(prepare_body(pk, rk, body.clone())?)),
            BatchOp::Delete { rk, if_match } => {
                crate::entity::check_key("RowKey", rk)?;
                ("DELETE", entity_url, Some(if_match), None)
            }
        };
        body.push_str(&format!("--{changeset}\r\n"));
        body.push_str("Content-Type: application/http\r\n");
        body.push_str("Content-Transfer-Encoding: binary\r\n\r\n");
        body.push_str(&format!("{method} {url} HTTP/1.1\r\n"));
        body.push_str(&format!("Content-ID: {}\r\n", i + 1));
        body.push_str("Accept: application/json;odata=minimalmetadata\r\n");
        if let Some(m) = if_match {
            body.push_str(&format!("If-Match: {}\r\n", m.header_value()));
        }
        body.push_str("DataServiceVersion: 3.0;\r\n");
        match json {
            Some(json) => {
                body.push_str("Content-Type: application/json\r\n");
                body.push_str("Prefer: return-no-content\r\n\r\n");
                // One line: Azurite finds the body with a single-line pattern.
                body.push_str(&json.to_string());
                body.push_str("\r\n");
            }
            None => body.push_str("\r\n"),
        }
    }
    body.push_str(&format!("--{changeset}--\r\n"));
    body.push_str(&format!("--{batch}--\r\n"));
    Ok(BatchRequest { content_type: format!("multipart/mixed; boundary={batch}"), body })
}

/// One `application/http` response inside the multipart answer.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct InnerResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl InnerResponse {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// Extracts `boundary=` from a `multipart/mixed` content type.
pub(crate) fn boundary_of(content_type: &str) -> Option<String> {
    content_type.split(';').find_map(|p| {
        let (k, v) = p.trim().split_once('=')?;
        k.trim().eq_ignore_ascii_case("boundary").then(|| v.trim().trim_matches('"').to_string())
    })
}

/// Splits `text` at `--boundary` delimiters and returns the parts' contents.
fn split_parts<'a>(text: &'a str, boundary: &str) -> Vec<&'a str> {
    let delim = format!("--{boundary}");
    let mut parts = Vec::new();
    let mut rest = match text.find(&delim) {
        Some(i) => &text[i + delim.len()..],
        None => return parts,
    };
    loop {
        if rest.starts_with("--") {
            break; // closing delimiter
        }
        let end = rest.find(&delim).unwrap_or(rest.len());
        let part = &rest[..end];
        // Drop the rest of the delimiter line and the CRLF that belongs to the next delimiter.
        let part = part.split_once('\n').map_or("", |(_, p)| p);
        let part = part.strip_suffix("\r\n").or_else(|| part.strip_suffix('\n')).unwrap_or(part);
        parts.push(part);
        if end == rest.len() {
            break;
        }
        rest = &rest[end + delim.len()..];
    }
    parts
}

/// Splits a header block from its body at the first empty line.
fn split_head(part: &str) -> (&str, &str) {
    let crlf = part.find("\r\n\r\n").map(|i| (i, 4));
    let lf = part.find("\n\n").map(|i| (i, 2));
    let cut = match (crlf, lf) {
        (Some(a), Some(b)) => Some(if a.0 <= b.0 { a } else { b }),
        (a, b) => a.or(b),
    };
    match cut {
        Some((i, n)) => (&part[..i], &part[i + n..]),
        None => (part, ""),
    }
}

fn parse_headers(block: &str) -> Vec<(String, String)> {
    block
        .lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(':')?;
            Some((k.trim().to_string(), v.trim().to_string()))
        })
        .collect()
}

/// Parses a multipart batch response into its inner HTTP responses, descending
/// into the changeset.
pub(crate) fn parse_batch_response(content_type: &str, body: &str) -> Result<Vec<InnerResponse>, String> {
    let boundary = boundary_of(content_type)
        .ok_or_else(|| format!("batch response content type `{content_type}` has no boundary"))?;
    let mut out = Vec::new();
    collect(body, &boundary, &mut out, 0)?;
    Ok(out)
}

fn collect(text: &str, boundary: &str, out: &mut Vec<InnerResponse>, depth: usize) -> Result<(), String> {
    if depth > 2 {
        return Err("batch response nests multiparts too deeply".into());
    }
    for part in split_parts(text, boundary) {
        let (head, content) = split_head(part);
        let headers = parse_headers(head);
        let ctype = headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("content-type"))
            .map(|(_, v)| v.as_str())
            .unwrap_or_default();
        if ctype.to_ascii_lowercase().starts_with("multipart/") {
            let inner = boundary_of(ctype).ok_or("changeset part without boundary")?;
            collect(content, &inner, out, depth + 1)?;
        } else {
            out.push(parse_http_response(content)?);
        }
    }
    Ok(())
}

fn parse_http_response(text: &str) -> Result<InnerResponse, String> {
    let text = text.trim_start_matches(['\r', '\n']);
    let (status_line, rest) = text.split_once('\n').unwrap_or((text, ""));
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| format!("bad status line in batch response: `{}`", status_line.trim()))?;
    // A response without a body may end right after its headers; split_head
    // then returns everything as the header block.
    let (head, body) = split_head(rest);
    Ok(InnerResponse { status, headers: parse_headers(head), body: body.trim_end().to_string() })
}

/// Turns the inner responses into per-operation ETags, or the failing
/// operation's error.
pub(crate) fn interpret(ops: &[BatchOp], responses: Vec<InnerResponse>) -> Result<Vec<Option<ETag>>, TableError> {
    if let Some((pos, failed)) = responses.iter().enumerate().find(|(_, r)| !(200..300).contains(&r.status)) {
        let retry_after =
            failed.header("Retry-After").and_then(|v| v.trim().parse::<u64>().ok()).map(std::time::Duration::from_secs);
        let source = error_from_status(failed.status, retry_after, &failed.body);
        let message = crate::error::parse_error_body(&failed.body).message;
        let index = index_prefix(&message)
            .or_else(|| {
                failed.header("Content-ID").and_then(|v| v.parse::<usize>().ok()).and_then(|n| n.checked_sub(1))
            })
            .unwrap_or(if responses.len() == ops.len() { pos } else { 0 });
        return Err(TableError::Batch { index: index.min(ops.len().saturating_sub(1)), source: Box::new(source) });
    }
    if responses.len() != ops.len() {
        return Err(TableError::Rejected {
            status: 202,
            code: "InvalidResponseBody".into(),
            message: format!("transaction answered {} responses for {} operations", responses.len(), ops.len()),
        });
    }
    Ok(ops
        .iter()
        .zip(responses)
        .map(|(op, r)| match op {
            BatchOp::Delete { .. } => None,
            _ => r.header("ETag").map(|e| ETag(e.to_string())),
        })
        .collect())
}

/// Reads the `N:` prefix the service puts in front of a failing operation's message.
fn index_prefix(message: &str) -> Option<usize> {
    let (n, _) = message.split_once(':')?;
    n.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn built_batches_hold_one_changeset_with_each_operation() {
        let ops = vec![
            BatchOp::Insert { rk: "a".into(), body: json!({"x": 1}) },
            BatchOp::Delete { rk: "b".into(), if_match: IfMatch::Any },
        ];
        let req = build_batch("http://h/acct", "t", "p", &ops).unwrap();
        let boundary = boundary_of(&req.content_type).unwrap();
        assert!(boundary.starts_with("batch_"));
        assert!(req.body.starts_with(&format!("--{boundary}\r\n")));
        assert!(req.body.ends_with(&format!("--{boundary}--\r\n")));
        assert!(req.body.contains("POST http://h/acct/t HTTP/1.1\r\n"));
        assert!(req.body.contains("DELETE http://h/acct/t(PartitionKey='p',RowKey='b') HTTP/1.1\r\n"));
        assert!(req.body.contains("If-Match: *\r\n"));
        assert!(
            req.body.contains(r#"{"PartitionKey":"p","RowKey":"a","x":1}"#) || req.body.contains(r#""RowKey":"a""#)
        );
    }

    const OK: &str = "--batchresponse_1\r\nContent-Type: multipart/mixed; boundary=changesetresponse_2\r\n\r\n--changesetresponse_2\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n\r\nHTTP/1.1 204 No Content\r\nX-Content-Type-Options: nosniff\r\nETag: W/\"datetime'1'\"\r\n\r\n\r\n--changesetresponse_2\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n\r\nHTTP/1.1 204 No Content\r\nDataServiceVersion: 1.0;\r\n\r\n\r\n--changesetresponse_2--\r\n--batchresponse_1--\r\n";

    #[test]
    fn successful_responses_yield_etags_in_order_and_none_for_deletes() {
        let rs = parse_batch_response("multipart/mixed; boundary=batchresponse_1", OK).unwrap();
        assert_eq!(rs.len(), 2);
        let ops = vec![
            BatchOp::Upsert { rk: "a".into(), body: json!({}) },
            BatchOp::Delete { rk: "b".into(), if_match: IfMatch::Any },
        ];
        let etags = interpret(&ops, rs).unwrap();
        assert_eq!(etags, vec![Some(ETag("W/\"datetime'1'\"".into())), None]);
    }

    #[test]
    fn a_failed_transaction_names_the_operation_from_the_message_prefix() {
        let body = "--batchresponse_1\nContent-Type: multipart/mixed; boundary=changesetresponse_2\n\n--changesetresponse_2\nContent-Type: application/http\nContent-Transfer-Encoding: binary\n\nHTTP/1.1 412 Precondition Failed\nContent-Type: application/json;odata=minimalmetadata;charset=utf-8\n\n{\"odata.error\":{\"code\":\"UpdateConditionNotSatisfied\",\"message\":{\"lang\":\"en-US\",\"value\":\"2:The update condition specified in the request was not satisfied.\"}}}\n--changesetresponse_2--\n--batchresponse_1--\n";
        let rs = parse_batch_response("multipart/mixed; boundary=batchresponse_1", body).unwrap();
        let ops: Vec<BatchOp> = (0..3).map(|i| BatchOp::Delete { rk: i.to_string(), if_match: IfMatch::Any }).collect();
        match interpret(&ops, rs) {
            Err(TableError::Batch { index, source }) => {
                assert_eq!(index, 2);
                assert!(matches!(*source, TableError::PreconditionFailed));
            }
            other => panic!("expected a batch error, got {other:?}"),
        }
    }

    #[test]
    fn a_failure_without_prefix_falls_back_to_content_id() {
        let r = InnerResponse {
            status: 409,
            headers: vec![("Content-ID".into(), "2".into())],
            body: r#"{"odata.error":{"code":"EntityAlreadyExists","message":{"value":"exists"}}}"#.into(),
        };
        let ops: Vec<BatchOp> = (0..3).map(|i| BatchOp::Delete { rk: i.to_string(), if_match: IfMatch::Any }).collect();
        assert!(matches!(
            interpret(&ops, vec![r]),
            Err(TableError::Batch { index: 1, ref source }) if matches!(**source, TableError::AlreadyExists)
        ));
    }

    #[test]
    fn quoted_boundaries_are_understood() {
        assert_eq!(boundary_of("multipart/mixed; boundary=\"abc\"").as_deref(), Some("abc"));
        assert_eq!(boundary_of("application/json"), None);
    }
}
