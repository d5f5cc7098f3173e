//! The Blob REST calls that copy an asset between regions, authorised by container SAS URLs from
//! `listContainerSas`: List Blobs, Copy Blob (server to server, `x-ms-copy-source`) and Get Blob Properties.
//! No blob bytes pass through the handler.
//!
//! SAS URLs are secrets: errors carry the storage error code and the blob name, never a URL.

use super::streaming::SasUrl;
use super::{MediaClient, MediaError};
use reqwest::{Method, StatusCode};
use url::Url;

/// The storage service version the calls speak.
const STORAGE_VERSION: &str = "2022-11-02";

/// Where a blob's last copy stands (`x-ms-copy-status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CopyStatus {
    /// Still copying.
    Pending,
    /// Landed.
    Success,
    /// Aborted or failed: copy again.
    Failed,
}

impl CopyStatus {
    fn parse(s: &str) -> CopyStatus {
        match s {
            "pending" => CopyStatus::Pending,
            "success" => CopyStatus::Success,
            _ => CopyStatus::Failed,
        }
    }
}

/// One blob as List Blobs or HEAD reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobItem {
    /// Blob name (may contain `/`).
    pub name: String,
    /// Bytes.
    pub length: u64,
    /// The last copy into this blob, if it came from one.
    pub copy_status: Option<CopyStatus>,
    /// Where that copy came from, without its query string.
    pub copy_source: Option<String>,
}

/// The URL of `blob` in the container of `container` (SAS included).
pub fn blob_url(container: &SasUrl, blob: &str) -> Url {
    let mut url = container.0.clone();
    if let Ok(mut segments) = url.path_segments_mut() {
        segments.pop_if_empty().extend(blob.split('/'));
    }
    url
}

/// A blob URL without its query string, as `x-ms-copy-source` is reported back.
pub fn without_query(url: &Url) -> String {
    let mut plain = url.clone();
    plain.set_query(None);
    plain.to_string()
}

impl MediaClient {
    async fn storage(
        &self,
        method: Method,
        url: Url,
        headers: &[(&str, &str)],
        what: &str,
    ) -> Result<reqwest::Response, MediaError> {
        let mut request = self.http.request(method, url).timeout(self.timeout).header("x-ms-version", STORAGE_VERSION);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        // `without_url`: reqwest's errors quote the URL, and the URL carries the signature.
        let response = request.send().await.map_err(|e| {
            let kind = if e.is_timeout() { "timed out" } else { "failed" };
            MediaError::Transient(format!("storage call for {what} {kind}: {}", e.without_url()))
        })?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        // Only the error code is kept: messages may quote the string that was signed.
        let code =
            response.headers().get("x-ms-error-code").and_then(|v| v.to_str().ok()).unwrap_or("Unknown").to_owned();
        let message = format!("storage answered {} {code} for {what}", status.as_u16());
        Err(match status {
            StatusCode::NOT_FOUND => MediaError::NotFound { code, message },
            StatusCode::TOO_MANY_REQUESTS => MediaError::Throttled { retry_after: None },
            s if s.is_server_error() || s == StatusCode::REQUEST_TIMEOUT => MediaError::Transient(message),
            s => MediaError::Rejected { status: s.as_u16(), code, message },
        })
    }

    /// Every blob of the container, following `NextMarker`.
    pub async fn list_blobs(&self, container: &SasUrl) -> Result<Vec<BlobItem>, MediaError> {
        let mut blobs = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            let mut url = container.0.clone();
            // Copy state is in a listing only when asked for (List Blobs: `include=copy`); without it every
            // blob would look uncopied and every sweep would start its copy again.
            url.query_pairs_mut()
                .append_pair("restype", "container")
                .append_pair("comp", "list")
                .append_pair("include", "copy");
            if let Some(m) = &marker {
                url.query_pairs_mut().append_pair("marker", m);
            }
            let response = self.storage(Method::GET, url, &[], "a container listing").await?;
            let xml = response.text().await.map_err(|e| {
                MediaError::Transient(format!("reading a container listing failed: {}", e.without_url()))
            })?;
            let (page, next) = parse_listing(&xml);
            blobs.extend(page);
            match next {
                Some(next) => marker = Some(next),
                None => return Ok(blobs),
            }
        }
    }

    /// Starts a server-side copy of `blob` from the `source` container into the `target` container.
    pub async fn start_copy(&self, source: &SasUrl, target: &SasUrl, blob: &str) -> Result<(), MediaError> {
        let source_url = blob_url(source, blob);
        let headers = [("x-ms-copy-source", source_url.as_str()), ("content-length", "0")];
        self.storage(Method::PUT, blob_url(target, blob), &headers, &format!("copying {blob}")).await.map(drop)
    }

    /// A blob's length and copy status (Get Blob Properties), or `None` if it does not exist.
    pub async fn head_blob(&self, container: &SasUrl, blob: &str) -> Result<Option<BlobItem>, MediaError> {
        let response = match self.storage(Method::HEAD, blob_url(container, blob), &[], blob).await {
            Ok(r) => r,
            Err(MediaError::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        let header = |name: &str| response.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
        Ok(Some(BlobItem {
            name: blob.to_owned(),
            length: header("content-length").and_then(|v| v.parse().ok()).unwrap_or(0),
            copy_status: header("x-ms-copy-status").as_deref().map(CopyStatus::parse),
            copy_source: header("x-ms-copy-source").and_then(|s| Url::parse(&s).ok()).map(|u| without_query(&u)),
        }))
    }
}

/// Reads Azure's `EnumerationResults` XML: the blobs and the next marker. A tiny reader for the few
/// elements used; unknown elements are skipped.
fn parse_listing(xml: &str) -> (Vec<BlobItem>, Option<String>) {
    let mut blobs = Vec::new();
    let mut rest = xml;
    while let Some(start) = rest.find("<Blob>") {
        let after = &rest[start + "<Blob>".len()..];
        let Some(end) = after.find("</Blob>") else { break };
        let item = &after[..end];
        if let Some(name) = blob_name(item) {
            blobs.push(BlobItem {
                name,
                length: element(item, "Content-Length").and_then(|v| v.parse().ok()).unwrap_or(0),
                copy_status: element(item, "CopyStatus").as_deref().map(CopyStatus::parse),
                copy_source: element(item, "CopySource").and_then(|s| Url::parse(&s).ok()).map(|u| without_query(&u)),
            });
        }
        rest = &after[end + "</Blob>".len()..];
    }
    let next = element(rest, "NextMarker").filter(|m| !m.is_empty());
    (blobs, next)
}

/// A listed blob's name. From 2021-02-12 a name XML cannot carry comes as `<Name Encoded="true">` with the
/// name percent-encoded.
fn blob_name(item: &str) -> Option<String> {
    if let Some(name) = element(item, "Name") {
        return Some(name);
    }
    let open = "<Name Encoded=\"true\">";
    let start = item.find(open)? + open.len();
    let end = start + item[start..].find("</Name>")?;
    Some(percent_encoding::percent_decode_str(&unescape(&item[start..end])).decode_utf8_lossy().into_owned())
}

/// The unescaped text of the first `<tag>...</tag>` in `xml`.
fn element(xml: &str, tag: &str) -> Option<String> {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let start = xml.find(&open)? + open.len();
    let end = start + xml[start..].find(&close)?;
    Some(unescape(&xml[start..end]))
}

fn unescape(text: &str) -> String {
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listing_gives_names_lengths_copy_state_and_the_next_marker() {
        let xml = r#"<?xml version="1.0" encoding="utf-8"?><EnumerationResults ServiceEndpoint="x" ContainerName="c"><Blobs>
            <Blob><Name>dir/a&amp;b.mp4</Name><Properties><Content-Length>12</Content-Length><CopyStatus>pending</CopyStatus>
            <CopySource>http://127.0.0.1:1/blob/s/c/dir/a%26b.mp4</CopySource></Properties></Blob>
            <Blob><Name>video.ism</Name><Properties><Content-Length>3</Content-Length></Properties></Blob>
            <Blob><Name Encoded="true">a%01b</Name><Properties><Content-Length>1</Content-Length></Properties></Blob></Blobs>
            <NextMarker>video.ismc</NextMarker></EnumerationResults>"#;
        let (blobs, next) = parse_listing(xml);
        assert_eq!(blobs.len(), 3);
        assert_eq!(blobs[2].name, "a\u{1}b", "an encoded name is decoded");
        assert_eq!(
            (blobs[0].name.as_str(), blobs[0].length, blobs[0].copy_status),
            ("dir/a&b.mp4", 12, Some(CopyStatus::Pending))
        );
        assert_eq!(blobs[1].copy_status, None);
        assert_eq!(next.as_deref(), Some("video.ismc"));
        assert_eq!(parse_listing("<EnumerationResults><Blobs /><NextMarker /></EnumerationResults>").1, None);
    }

    #[test]
    fn blob_urls_keep_the_sas_and_encode_each_name_segment() {
        let container = SasUrl(Url::parse("http://127.0.0.1:1/blob/s/asset-1?sv=1&sig=x").expect("url"));
        let url = blob_url(&container, "dir/a b.mp4");
        assert_eq!(url.as_str(), "http://127.0.0.1:1/blob/s/asset-1/dir/a%20b.mp4?sv=1&sig=x");
        assert_eq!(without_query(&url), "http://127.0.0.1:1/blob/s/asset-1/dir/a%20b.mp4");
    }
}
